//! SLSA provenance and image SBOMs, checked with independent tools: PyPI's `securesystemslib`
//! verifies every DSSE envelope with the ECDSA public key (made by `openssl`); the statements'
//! subjects are compared with the sha256 of the published binaries and the digests of the
//! published manifests (read back from a folder, from Garage's website endpoint, and, through
//! `skopeo` and HTTP, from a registry); `resolvedDependencies` with the flake's `flake.lock`; the image SBOMs of a
//! buildLayeredImage-shaped image (one store path per layer) with the CycloneDX validator.
//! A second run of the same release, in another CI run, sends nothing.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use alba::image::fixtures::{docker_archive, layer_tar};
use common::fixtures::{fake_binary, nix_str};
use common::nix::NixVersion;
use serde_json::Value;

const SYSTEMS: [&str; 2] = ["x86_64-linux", "aarch64-linux"];
const HASHES: &str = "0123456789abcdfghijklmnpqrsvwxyz";

/// An ECDSA P-256 key pair made by openssl: (secret PKCS#8 PEM, public PEM).
pub fn ecdsa_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (secret, public) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.pub.pem")),
    );
    let mut genpkey = Command::new("openssl");
    genpkey
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-out"])
        .arg(&secret);
    common::run_ok(&mut genpkey);
    let mut pubout = Command::new("openssl");
    pubout
        .args(["pkey", "-pubout", "-in"])
        .arg(&secret)
        .arg("-out")
        .arg(&public);
    common::run_ok(&mut pubout);
    (secret, public)
}

/// The statement inside a DSSE envelope, verified by securesystemslib with `public`; `Err`
/// with what it said when the envelope does not verify.
pub fn dsse_verified(envelope: &[u8], public: &Path) -> Result<Value, String> {
    let script = "import sys, json\n\
        from cryptography.hazmat.primitives.serialization import load_pem_public_key\n\
        from securesystemslib.signer import SSlibKey\n\
        from securesystemslib.dsse import Envelope\n\
        k = SSlibKey.from_crypto(load_pem_public_key(open(sys.argv[1], 'rb').read()))\n\
        key = SSlibKey('', k.keytype, k.scheme, k.keyval)  # alba's envelopes carry keyid ''\n\
        env = Envelope.from_dict(json.load(sys.stdin))\n\
        env.verify([key], 1)\n\
        assert env.payload_type == 'application/vnd.in-toto+json', env.payload_type\n\
        sys.stdout.write(env.payload.decode())\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .arg(public)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use std::io::Write;
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(envelope).expect("write the envelope");
    drop(stdin);
    let out = child.wait_with_output().expect("python3 ends");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    if said.contains("No module named") {
        common::missing("securesystemslib", "pip install 'securesystemslib[crypto]'");
    }
    if !out.status.success() {
        return Err(said);
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("payload: {e}"))
}

/// The store path of a layer of the layered fixture image (`n`-th fake package).
fn fake_store_path(n: usize) -> String {
    let hash: String = HASHES.chars().cycle().skip(n + 3).take(32).collect();
    format!("/nix/store/{hash}-pkg{n}-1.{n}")
}

/// A git flake `albatros` with a `git+file:` input `helper` (locked in its committed
/// `flake.lock`), binaries for [`SYSTEMS`], and buildLayeredImage-shaped images: one layer per
/// store path, one of them the x86_64 binary's own (which the local store knows).
fn provenance_flake(nix: NixVersion, dir: &Path, targets: &[String]) -> (PathBuf, Vec<String>) {
    let helper = dir.join("helper");
    std::fs::create_dir_all(&helper).expect("mkdir");
    std::fs::write(
        helper.join("flake.nix"),
        "{ outputs = { self }: { text = \"from the helper\"; }; }\n",
    )
    .expect("write helper");
    common::git_commit_all(&helper, "helper");
    let flake = dir.join("flake");
    std::fs::create_dir_all(&flake).expect("mkdir");
    let mut packages = String::new();
    let mut legacy = String::new();
    for system in SYSTEMS {
        let bytes = fake_binary("albatros", system, "provenance");
        std::fs::write(flake.join(format!("bin-{system}")), &bytes).expect("write binary");
        let s = nix_str(system);
        packages.push_str(&format!(
            "    {s}.albatros = derivation {{ system = {s}; name = \"albatros-1.0.0\"; builder = \"/bin/sh\"; \
             args = [ \"-c\" \"/bin/cat ${{./bin-{system}}} > $out; echo ${{helper.text}} >> $out\" ]; }};\n"
        ));
        legacy.push_str(&format!(
            "    {s}.docker.albatros = derivation {{ system = {s}; name = \"albatros-image.tar\"; builder = \"/bin/sh\"; \
             args = [ \"-c\" \"/bin/cat ${{./image-{system}.tar}} > $out\" ]; }};\n"
        ));
    }
    let targets: Vec<String> = targets.iter().map(|t| nix_str(t)).collect();
    let text = format!(
        "{{\n  inputs.helper.url = {helper_url};\n  outputs = {{ self, helper }}: {{\n\
         release = {{ name = \"albatros\"; systems = [ {systems} ];\n\
         static.targets = [ {static_target} ];\n    container.targets = [ {containers} ];\n    }};\n\
         packages = {{\n{packages}  }};\n  legacyPackages = {{\n{legacy}  }};\n  }};\n}}\n",
        helper_url = nix_str(&format!("git+file://{}", helper.display())),
        systems = SYSTEMS.map(nix_str).join(" "),
        static_target = targets[0],
        containers = targets[1..].join(" "),
    );
    std::fs::write(flake.join("flake.nix"), text).expect("write flake.nix");
    // Placeholder images so the flake evaluates; the real ones need the binary's store path.
    for system in SYSTEMS {
        std::fs::write(flake.join(format!("image-{system}.tar")), b"").expect("write");
    }
    common::git_commit_all(&flake, "release fixture");
    let mut lock = nix.nix();
    lock.args(["flake", "lock"])
        .arg(format!("git+file://{}", flake.display()));
    common::run_ok(&mut lock);
    let installable = format!(
        "git+file://{}#packages.x86_64-linux.albatros",
        flake.display()
    );
    let built = nix.nix_build(&[installable]);
    let real = built.values().next().expect("a store path").clone();
    let mut paths: Vec<String> = (0..11).map(fake_store_path).collect();
    paths.push(real);
    paths.sort();
    for system in SYSTEMS {
        let (os, arch, _) = common::fixtures::platform(system);
        let mut layers: Vec<Vec<u8>> = paths
            .iter()
            .map(|p| {
                let file = format!("{}/share/README", p.trim_start_matches('/'));
                layer_tar(&[(file.as_str(), format!("{p}\n").as_bytes())])
            })
            .collect();
        layers.push(layer_tar(&[("etc/os-release", b"NAME=albatros\n")]));
        docker_archive(
            &flake.join(format!("image-{system}.tar")),
            arch,
            os,
            &layers,
            false,
        );
    }
    common::git(&flake, &["add", "-A"]);
    common::git(&flake, &["commit", "-q", "-m", "images and lock"]);
    (flake, paths)
}

/// The flake.lock's inputs as (name, locked url-ish fields).
fn lock_nodes(flake: &Path) -> Vec<(String, Value)> {
    let lock: Value =
        serde_json::from_slice(&std::fs::read(flake.join("flake.lock")).expect("flake.lock"))
            .expect("flake.lock is JSON");
    let root = lock["root"].as_str().expect("root").to_string();
    let nodes = lock["nodes"].as_object().expect("nodes");
    nodes
        .iter()
        .filter(|(name, _)| **name != root)
        .map(|(name, node)| (name.clone(), node["locked"].clone()))
        .collect()
}

/// Checks a statement's dependencies against the flake's commit and lock.
fn check_dependencies(statement: &Value, flake: &Path) {
    let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .expect("resolvedDependencies");
    let head = common::git(flake, &["rev-parse", "HEAD"]);
    assert_eq!(deps[0]["name"], "self");
    assert_eq!(deps[0]["digest"]["gitCommit"], head.as_str());
    let nodes = lock_nodes(flake);
    assert_eq!(
        deps.len(),
        nodes.len() + 1,
        "the flake and each input: {deps:?}"
    );
    for (name, locked) in nodes {
        let dep = deps
            .iter()
            .find(|d| d["name"] == name.as_str())
            .unwrap_or_else(|| panic!("input {name} missing"));
        assert_eq!(dep["digest"]["gitCommit"], locked["rev"], "{name}");
        assert_eq!(dep["annotations"]["narHash"], locked["narHash"], "{name}");
        let url = locked["url"].as_str().expect("git input url");
        assert_eq!(dep["uri"], format!("git+{url}"), "{name}");
    }
}

fn subject_digests(statement: &Value) -> BTreeSet<String> {
    statement["subject"]
        .as_array()
        .expect("subjects")
        .iter()
        .map(|s| s["digest"]["sha256"].as_str().expect("sha256").to_string())
        .collect()
}

/// The static release's provenance: subjects are the binaries downloaded from the folder.
fn check_static(dist: &Path, public: &Path, flake: &Path) -> Vec<u8> {
    let tag_dir = dist.join("df-dist-v1/albatros/1.0.0");
    let doc: Value =
        serde_json::from_slice(&std::fs::read(tag_dir.join("index.json")).expect("tag"))
            .expect("tag document");
    let file = doc["provenance"]
        .as_str()
        .expect("the tag document names the provenance");
    let envelope = std::fs::read(tag_dir.join(file)).expect("provenance file");
    let statement = dsse_verified(&envelope, public).expect("the envelope verifies");
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v1");
    let mut binaries = BTreeSet::new();
    for flavor in doc["flavors"].as_array().expect("flavors") {
        let (os, arch) = (
            &flavor["platform"]["os"],
            &flavor["platform"]["architecture"],
        );
        for r in flavor["resources"].as_array().expect("resources") {
            let rel = format!(
                "{}/{}/{}",
                os.as_str().unwrap(),
                arch.as_str().unwrap(),
                r["path"].as_str().unwrap()
            );
            binaries.insert(common::sha256_hex(
                &std::fs::read(tag_dir.join(&rel)).expect("binary"),
            ));
        }
    }
    assert_eq!(subject_digests(&statement), binaries);
    check_dependencies(&statement, flake);
    let build = &statement["predicate"]["buildDefinition"];
    assert_eq!(build["externalParameters"]["version"], "1.0.0");
    assert_eq!(
        build["externalParameters"]["artifacts"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let byproducts = statement["predicate"]["runDetails"]["byproducts"]
        .as_array()
        .expect("byproducts");
    assert!(byproducts.iter().all(|b| {
        b["annotations"]["drvPath"]
            .as_str()
            .is_some_and(|d| d.ends_with(".drv"))
    }));
    envelope
}

/// README's provenance check, as written there, run in the tag folder: `Err` with its output
/// when it fails.
fn readme_check(tag_dir: &Path, public: &Path) -> Result<String, String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let start = "cat > check-provenance.py <<'EOF'\n";
    let script = readme
        .split_once(start)
        .and_then(|(_, rest)| rest.split_once("\nEOF\n"))
        .map(|(script, _)| script)
        .expect("README shows check-provenance.py");
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(public)
        .arg("provenance.intoto.jsonl")
        .current_dir(tag_dir)
        .output()
        .expect("python3 runs");
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    match out.status.success() {
        true => Ok(said),
        false => Err(said),
    }
}

/// Reads a published image manifest or blob from the folder's static registry.
fn folder_get(dist: &Path, rel: &str) -> Vec<u8> {
    std::fs::read(dist.join("v2/albatros").join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The envelope of the `.att` manifest `att`, read with `blob`.
fn att_envelope(att: &[u8], blob: &dyn Fn(&str) -> Vec<u8>) -> Vec<u8> {
    let att: Value = serde_json::from_slice(att).expect("att manifest");
    let layer = &att["layers"][0];
    assert_eq!(layer["mediaType"], "application/vnd.dsse.envelope.v1+json");
    assert_eq!(
        layer["annotations"]["predicateType"],
        "https://slsa.dev/provenance/v1"
    );
    blob(layer["digest"].as_str().expect("digest"))
}

fn provenance_and_layered_sboms(nix: NixVersion) {
    let Some(registry) = common::Registry::try_start() else {
        return;
    };
    let Some(garage) = common::Garage::try_start() else {
        return;
    };
    if !common::skopeo_available() {
        return;
    }
    garage.create_bucket("localhost");
    let garage_host = format!("localhost:{}", garage.web_port);
    let work = tempfile::tempdir().expect("tempdir");
    let dist = work.path().join("dist");
    let folder = format!("file://{}?web=http://localhost:8080", dist.display());
    let targets = [
        format!("file://{}", dist.display()),
        folder,
        registry.url("albatros"),
        format!("{}&web=http://{garage_host}", garage.s3_url("localhost")),
    ];
    let (flake, store_paths) = provenance_flake(nix, work.path(), &targets);
    let (secret, public) = ecdsa_key(work.path(), "release");
    let flake_ref = format!("git+file://{}", flake.display());
    let release = |run: &str| {
        let out = nix
            .alba()
            .envs(garage.envs())
            .env("ALBA_INVOCATION_ID", run)
            .args([
                "--json",
                "--flake",
                &flake_ref,
                "release",
                "1.0.0",
                "--sign-key",
            ])
            .arg(&secret)
            .run_expect(0);
        serde_json::from_slice::<Value>(&out.stdout).expect("the --json report")
    };
    release("run-1");
    let static_envelope = check_static(&dist, &public, &flake);

    // Images: the folder's `.att` of the index, and the registry's, through skopeo and HTTP.
    let index = folder_get(&dist, "manifests/1.0.0");
    let index_digest = common::images::sha256_digest(&index);
    let index_doc: Value = serde_json::from_slice(&index).expect("index");
    let mut published: BTreeSet<String> = [index_digest.clone()].into();
    for m in index_doc["manifests"].as_array().expect("manifests") {
        published.insert(m["digest"].as_str().expect("digest").to_string());
    }
    let published_hex: BTreeSet<String> = published
        .iter()
        .map(|d| d.trim_start_matches("sha256:").to_string())
        .collect();
    let att_tag = format!("{}.att", index_digest.replace(':', "-"));
    let from_folder = att_envelope(&folder_get(&dist, &format!("manifests/{att_tag}")), &|d| {
        folder_get(&dist, &format!("blobs/{d}"))
    });
    let raw = common::skopeo_inspect_raw(&registry.url(&format!("albatros:{att_tag}")), false);
    let from_registry = att_envelope(&raw, &|d| {
        let (status, _, body) = registry.get(&format!("/v2/albatros/blobs/{d}"), "*/*");
        assert_eq!(status, 200, "blob {d}");
        body
    });
    // And Garage's, through its website endpoint as pull clients read it.
    let web = |path: &str| {
        let (status, _, body) = garage.web_get(&garage_host, &format!("/v2/albatros/{path}"));
        assert_eq!(status, 200, "GET {path} from Garage's website");
        body
    };
    let from_garage = att_envelope(&web(&format!("manifests/{att_tag}")), &|d| {
        web(&format!("blobs/{d}"))
    });
    assert_eq!(
        from_garage, from_folder,
        "one statement, one envelope everywhere"
    );
    for envelope in [&from_folder, &from_registry] {
        let statement = dsse_verified(envelope, &public).expect("the image envelope verifies");
        assert_eq!(subject_digests(&statement), published_hex);
        check_dependencies(&statement, &flake);
        assert_eq!(
            statement["predicate"]["runDetails"]["metadata"]["invocationId"],
            "run-1"
        );
    }
    // Another key does not verify it.
    let (_, other) = ecdsa_key(work.path(), "other");
    assert!(
        dsse_verified(&from_folder, &other).is_err(),
        "another key must not verify"
    );
    let tag_dir = dist.join("df-dist-v1/albatros/1.0.0");
    let said = readme_check(&tag_dir, &public).expect("README's check passes");
    assert!(
        said.contains("ok linux/amd64/albatros") && said.contains("helper"),
        "{said}"
    );
    readme_check(&tag_dir, &other).expect_err("README's check refuses another key");

    // Each platform manifest's referrers list its SBOM and the provenance; the SBOM lists
    // every store path of the layers, the one the store knows with its NAR hash.
    for digest in published.iter().filter(|d| **d != index_digest) {
        let referrers: Value = serde_json::from_slice(&folder_get(
            &dist,
            &format!("manifests/{}", digest.replace(':', "-")),
        ))
        .expect("referrers index");
        let types: BTreeSet<&str> = referrers["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .filter_map(|m| m["artifactType"].as_str())
            .collect();
        assert_eq!(
            types,
            BTreeSet::from([
                "application/vnd.cyclonedx+json",
                "application/vnd.dsse.envelope.v1+json"
            ])
        );
        let sbom_entry = referrers["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["artifactType"] == "application/vnd.cyclonedx+json")
            .expect("sbom referrer");
        let artifact: Value = serde_json::from_slice(&folder_get(
            &dist,
            &format!("manifests/{}", sbom_entry["digest"].as_str().unwrap()),
        ))
        .expect("sbom artifact");
        let sbom_digest = artifact["layers"][0]["digest"]
            .as_str()
            .expect("sbom layer");
        let sbom_path = dist.join("v2/albatros/blobs").join(sbom_digest);
        crate::release_metadata::cyclonedx_valid(&sbom_path).expect("a valid CycloneDX document");
        let sbom: Value =
            serde_json::from_slice(&std::fs::read(&sbom_path).expect("sbom")).expect("sbom JSON");
        let components = sbom["components"].as_array().expect("components");
        for path in &store_paths {
            let c = components
                .iter()
                .find(|c| c["bom-ref"] == path.as_str())
                .unwrap_or_else(|| panic!("{path} is not in the SBOM of {digest}"));
            let known = !path.contains("-pkg");
            assert_eq!(
                c["hashes"].is_array(),
                known,
                "{path}: NAR hash only where known"
            );
        }
        let pkg3 = components
            .iter()
            .find(|c| c["name"] == "pkg3")
            .expect("pkg3");
        assert_eq!(pkg3["version"], "1.3");
    }

    // alba verify with the public key: signatures, provenance (and, with --flake, the lock)
    // hold on the folder and the registry; another key is refused with one line per object.
    for target in &targets[1..] {
        let verify = |key: &Path, flake: Option<&str>, code: i32| {
            let mut alba = nix.alba();
            alba.envs(garage.envs());
            if let Some(flake) = flake {
                alba.args(["--flake", flake]);
            }
            alba.args(["verify", "-t", "albatros:1.0.0", "--sign-pub"])
                .arg(key)
                .arg(target)
                .run_expect(code)
        };
        verify(&public, None, 0);
        verify(&public, Some(&flake_ref), 0);
        let refused = verify(&other, None, 1);
        let said = String::from_utf8_lossy(&refused.stdout).to_string()
            + &String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains(".sig") && said.contains(".att"), "{said}");
    }

    // A re-run (another CI run) keeps every envelope and sends nothing.
    let report = release("run-2");
    assert_eq!(report["bytes_sent"], 0, "{report}");
    assert_eq!(check_static(&dist, &public, &flake), static_envelope);
    assert_eq!(
        folder_get(&dist, &format!("manifests/{att_tag}")),
        common::skopeo_inspect_raw(&registry.url(&format!("albatros:{att_tag}")), false),
    );

    // A release without the key: verify with the key finds it unsigned and unattested.
    nix.alba()
        .envs(garage.envs())
        .args(["--flake", &flake_ref, "release", "1.0.1"])
        .run_expect(0);
    let unsigned = nix
        .alba()
        .envs(garage.envs())
        .args(["verify", "-t", "albatros:1.0.1", "--sign-pub"])
        .arg(&public)
        .arg(&targets[1])
        .run_expect(1);
    let said = String::from_utf8_lossy(&unsigned.stdout).to_string()
        + &String::from_utf8_lossy(&unsigned.stderr);
    for expected in ["is not signed", "is not attested", "names no provenance"] {
        assert!(said.contains(expected), "{expected}: {said}");
    }

    // rm takes the attestations (and their envelope) with the release they attest.
    nix.alba()
        .envs(garage.envs())
        .args(["container", "rm", "-t", "albatros:1.0.0"])
        .arg(&targets[1])
        .run_expect(0);
    let manifests = std::fs::read_dir(dist.join("v2/albatros/manifests")).expect("manifests");
    let left: Vec<String> = manifests
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".att"))
        .collect();
    assert!(left.is_empty(), "attestations left after rm: {left:?}");
    let envelope_digest = common::images::sha256_digest(&from_folder);
    assert!(
        !dist
            .join("v2/albatros/blobs")
            .join(&envelope_digest)
            .exists(),
        "the envelope blob {envelope_digest} is left after rm"
    );
}

crate::nix_tests!(provenance_and_layered_sboms);
