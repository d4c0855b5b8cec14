//! What a release carries besides its binaries and images, checked with independent tools:
//! `sha256sum -c` on a tree downloaded through Garage's website endpoint, Debian's
//! `minisign -V`, PyPI's cyclonedx-python-lib (CycloneDX JSON schema), and `skopeo inspect`
//! for OCI annotations and semver alias tags.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::fixtures::{self, nix_str};
use common::{Garage, alba, nix_available};
use serde_json::Value;

/// A git flake (one commit) releasing `albatros` for two systems: binaries that reference a
/// library store path (so the closure has two paths), and images under `legacyPackages`.
pub(crate) fn metadata_flake(dir: &Path, static_targets: &[String], container: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    let systems = ["x86_64-linux", "armv6l-linux"];
    let mut packages = String::new();
    let mut legacy = String::new();
    for system in systems {
        let bytes = fixtures::fake_binary("albatros", system, "meta");
        std::fs::write(dir.join(format!("bin-{system}")), &bytes).expect("write binary");
        let image = dir.join(format!("image-{system}.tar"));
        let files = std::collections::BTreeMap::from([("albatros".to_string(), bytes)]);
        fixtures::docker_archive(&image, system, "albatros", &files);
        let s = nix_str(system);
        packages.push_str(&format!(
            "    {s}.albatros = derivation {{ system = {s}; name = \"albatros-0.9\"; builder = \"/bin/sh\"; \
             args = [ \"-c\" \"/bin/cat ${{./bin-{system}}} > $out; echo ${{lib {s}}} >> $out\" ]; }};\n"
        ));
        legacy.push_str(&format!(
            "    {s}.docker.albatros = derivation {{ system = {s}; name = \"albatros-image.tar\"; builder = \"/bin/sh\"; \
             args = [ \"-c\" \"/bin/cat ${{./image-{system}.tar}} > $out\" ]; }};\n"
        ));
    }
    let targets: Vec<String> = static_targets.iter().map(|t| nix_str(t)).collect();
    let flake = format!(
        "{{\n  outputs = {{ self }}: let\n    lib = system: derivation {{ inherit system; name = \"libalba-1.2\"; builder = \"/bin/sh\"; args = [ \"-c\" \"echo lib > $out\" ]; }};\n  in {{\n\
         release = {{ name = \"albatros\"; systems = [ \"x86_64-linux\" \"armv6l-linux\" ]; source = \"https://git.example.org/albatros\";\n\
         static.targets = [ {} ];\n    container = {container};\n    }};\n\
         packages = {{\n{packages}  }};\n  legacyPackages = {{\n{legacy}  }};\n  }};\n}}\n",
        targets.join(" ")
    );
    std::fs::write(dir.join("flake.nix"), flake).expect("write flake.nix");
    common::git_commit_all(dir, "release fixture");
    dir.to_path_buf()
}

/// Downloads `rel` below the tag through the website endpoint into `into`.
fn download(garage: &Garage, tag_url: &str, rel: &str, into: &Path) -> Vec<u8> {
    let (status, _, body) = garage.web_get("download", &format!("{tag_url}/{rel}"));
    assert_eq!(status, 200, "GET {tag_url}/{rel}");
    let path = into.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, &body).expect("write download");
    body
}

fn sha256sum_check(dir: &Path) -> bool {
    Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(dir)
        .output()
        .expect("sha256sum runs")
        .status
        .success()
}

fn minisign_verify(dir: &Path, public: &Path) -> bool {
    Command::new("minisign")
        .args(["-V", "-m", "SHA256SUMS", "-p"])
        .arg(public)
        .current_dir(dir)
        .output()
        .expect("minisign runs")
        .status
        .success()
}

/// Validates CycloneDX JSON with cyclonedx-python-lib (strict schema, offline).
pub(crate) fn cyclonedx_valid(path: &Path) -> Result<(), String> {
    let script = "import sys\nfrom cyclonedx.validation.json import JsonStrictValidator\nfrom cyclonedx.schema import SchemaVersion\n\
                  e = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())\n\
                  print(e if e else 'valid')\nsys.exit(1 if e else 0)\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("python3 runs");
    if out.status.success() {
        return Ok(());
    }
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if said.contains("No module named") {
        common::missing(
            "cyclonedx-python-lib",
            "pip install 'cyclonedx-python-lib[json-validation]'",
        );
    }
    Err(said)
}

#[test]
fn static_release_carries_checksums_signature_and_closure_sboms() {
    if !nix_available() {
        return;
    }
    let Some(_) = common::require_program("minisign", "apt-get install minisign") else {
        return;
    };
    let Some(garage) = Garage::try_start() else {
        return;
    };
    garage.create_bucket("download");
    let work = tempfile::tempdir().expect("tempdir");
    let flake = metadata_flake(
        &work.path().join("flake"),
        &[garage.s3_url("download")],
        "{ }",
    );
    let (public, secret) = common::minisign_key(work.path(), "alba");
    let flake_ref = format!("git+file://{}", flake.display());
    let output = alba()
        .envs(garage.envs())
        .args([
            "--flake",
            &flake_ref,
            "release",
            "0.9",
            "--only",
            "static",
            "--sign-key",
        ])
        .arg(&secret)
        .run_expect(0);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let key_text = std::fs::read_to_string(&secret).expect("key");
    let key_line = key_text.lines().nth(1).expect("key line");
    assert!(
        !stderr.contains(key_line),
        "the secret key appears in the output"
    );

    // Download the tag as a user would, then check it with coreutils and minisign.
    let down = work.path().join("download");
    let tag_url = "/df-dist-v1/albatros/0.9";
    let (_, _, doc) = garage.web_get("download", tag_url);
    let doc: Value = serde_json::from_slice(&doc).expect("tag document");
    assert_eq!(doc["checksums"], "SHA256SUMS");
    assert_eq!(doc["signature"], "SHA256SUMS.minisig");
    let sums = download(&garage, tag_url, "SHA256SUMS", &down);
    download(&garage, tag_url, "SHA256SUMS.minisig", &down);
    let sums = String::from_utf8(sums).expect("SHA256SUMS is text");
    let listed: Vec<&str> = sums.lines().map(|l| &l[66..]).collect();
    assert_eq!(listed, ["linux/amd64/albatros", "linux/arm/albatros"]);
    for rel in &listed {
        download(&garage, tag_url, rel, &down);
    }
    assert!(
        sha256sum_check(&down),
        "sha256sum -c SHA256SUMS fails on the download"
    );
    assert!(minisign_verify(&down, &public), "minisign -V fails");
    // Tampering is noticed by both.
    std::fs::write(down.join("linux/arm/albatros"), b"tampered").expect("tamper");
    assert!(
        !sha256sum_check(&down),
        "sha256sum -c accepts a tampered binary"
    );
    let mut forged = sums.clone();
    forged.push_str(&format!("{}  linux/evil\n", "0".repeat(64)));
    std::fs::write(down.join("SHA256SUMS"), forged).expect("forge");
    assert!(
        !minisign_verify(&down, &public),
        "minisign -V accepts a forged SHA256SUMS"
    );

    // Each flavor's SBOM: valid CycloneDX 1.5, its closure's store paths as components.
    for flavor in doc["flavors"].as_array().expect("flavors") {
        let rel = flavor["sbom"].as_str().expect("sbom field");
        let bytes = download(&garage, tag_url, rel, &down);
        cyclonedx_valid(&down.join(rel)).expect("a valid CycloneDX document");
        let sbom: Value = serde_json::from_slice(&bytes).expect("JSON");
        let root = sbom["metadata"]["component"]["bom-ref"]
            .as_str()
            .expect("root");
        assert!(
            root.starts_with("/nix/store/") && root.ends_with("-albatros-0.9"),
            "{root}"
        );
        let components: Vec<&str> = sbom["components"]
            .as_array()
            .expect("components")
            .iter()
            .filter_map(|c| c["bom-ref"].as_str())
            .collect();
        assert_eq!(components.len(), 1, "{components:?}");
        assert!(components[0].ends_with("-libalba-1.2"), "{components:?}");
        assert_eq!(sbom["components"][0]["name"], "libalba");
        assert_eq!(sbom["components"][0]["version"], "1.2");
        let deps = &sbom["dependencies"];
        assert!(deps.to_string().contains(components[0]), "{deps}");
    }

    // A re-run sends nothing: the signature that still verifies is kept.
    let output = alba()
        .envs(garage.envs())
        .args([
            "--json",
            "--flake",
            &flake_ref,
            "release",
            "0.9",
            "--only",
            "static",
            "--sign-key",
        ])
        .arg(&secret)
        .run_expect(0);
    let report: Value = serde_json::from_slice(&output.stdout).expect("report");
    assert_eq!(report["bytes_sent"], 0, "{report}");
    assert_eq!(
        report["flake"]["revision"],
        common::git(&flake, &["rev-parse", "HEAD"])
    );
}

#[test]
fn bad_signing_keys_are_clear_errors_and_write_nothing() {
    if !nix_available() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("out");
    let target = format!("file:{}", out.display());
    let flake = metadata_flake(&work.path().join("flake"), &[target], "{ }");
    let flake_ref = format!("git+file://{}", flake.display());
    // An encrypted key (made with the minisign crate: Debian's minisign asks on a terminal).
    let pair = minisign::KeyPair::generate_encrypted_keypair(Some("correct horse".into()))
        .expect("key pair");
    let encrypted = work.path().join("enc.key");
    std::fs::write(&encrypted, pair.sk.to_box(None).expect("box").into_string()).expect("key");
    let garbage = work.path().join("garbage.key");
    std::fs::write(&garbage, "untrusted comment: x\nnot a key\n").expect("key");
    let release = |extra: &[&str], stdin: Option<&str>, code: i32| {
        let mut alba = alba();
        alba.args(["--flake", &flake_ref, "release", "0.9", "--only", "static"])
            .args(extra);
        let output = match stdin {
            Some(text) => alba.run_with_stdin(text.as_bytes(), code),
            None => alba.run_expect(code),
        };
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    };
    let enc = encrypted.to_str().expect("utf-8 path");
    let said = release(&["--sign-key", enc], None, 2);
    assert!(
        said.contains("encrypted") && said.contains("--sign-password-stdin"),
        "{said}"
    );
    let said = release(
        &["--sign-key", enc, "--sign-password-stdin"],
        Some("wrong horse\n"),
        2,
    );
    assert!(
        said.contains("password") && !said.contains("wrong horse"),
        "{said}"
    );
    let said = release(&["--sign-key", garbage.to_str().expect("utf-8")], None, 2);
    assert!(said.contains("minisign secret key"), "{said}");
    assert!(!out.exists(), "a refused release writes nothing");
    let said = release(
        &["--sign-key", enc, "--sign-password-stdin"],
        Some("correct horse\n"),
        0,
    );
    assert!(!said.contains("correct horse"), "{said}");
    assert!(
        out.join("df-dist-v1/albatros/0.9/SHA256SUMS.minisig")
            .is_file()
    );
}

/// The raw manifest at `reference` (`NAME:TAG` or `NAME@DIGEST`) on both image targets, read
/// by skopeo; both must serve the same bytes.
fn inspect_both(garage: &Garage, registry: &common::Registry, reference: &str) -> Value {
    let web = format!("docker://{}", garage.web_registry_ref(reference));
    let from_web = common::skopeo_inspect_raw(&web, false);
    let from_registry = common::skopeo_inspect_raw(&registry.url(reference), false);
    assert_eq!(
        from_web, from_registry,
        "{reference}: the two targets differ"
    );
    serde_json::from_slice(&from_web).expect("a manifest is JSON")
}

/// A Garage whose bucket `localhost` serves a static registry at `localhost:<web port>`, and
/// a registry; `None` (reported) when either is missing.
pub(crate) fn image_targets() -> Option<(Garage, common::Registry)> {
    let garage = Garage::try_start()?;
    let registry = common::Registry::try_start()?;
    garage.create_bucket("localhost");
    Some((garage, registry))
}

#[test]
fn images_carry_annotations_semver_aliases_and_sbom_referrers() {
    if !nix_available() || !common::skopeo_available() {
        return;
    }
    let Some((garage, registry)) = image_targets() else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let container = format!(
        "{{ targets = [ {} {} ]; aliases = true; annotations = {{ \"org.example.team\" = \"birds\"; }}; }}",
        nix_str(&garage.s3_url("localhost")),
        nix_str(&registry.url("albatros"))
    );
    let flake = metadata_flake(&work.path().join("flake"), &[], &container);
    let flake_ref = format!("git+file://{}", flake.display());
    let release = |version: &str, code: i32| {
        alba()
            .envs(garage.envs())
            .args([
                "--flake",
                &flake_ref,
                "release",
                version,
                "--only",
                "container",
            ])
            .run_expect(code)
    };
    // Not semver: refused before anything is built or written.
    let refused = release("0.9", 2);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("semver"));
    assert!(garage.list_keys("localhost").is_empty());
    // A release sequence: a newer minor, an older patch after it, a prerelease.
    for version in ["1.2.3", "1.3.0", "1.2.4", "2.0.0-rc.1"] {
        release(version, 0);
    }
    let (_, _, list) = garage.web_get("localhost", "/v2/albatros/tags/list");
    let list: Value = serde_json::from_slice(&list).expect("tags/list");
    assert_eq!(
        list["tags"],
        serde_json::json!([
            "1",
            "1.2",
            "1.2.3",
            "1.2.4",
            "1.3",
            "1.3.0",
            "2.0.0-rc.1",
            "latest"
        ])
    );
    let version_of = |tag: &str| {
        let index = inspect_both(&garage, &registry, &format!("albatros:{tag}"));
        index["annotations"]["org.opencontainers.image.version"]
            .as_str()
            .expect("version annotation")
            .to_string()
    };
    for (alias, version) in [
        ("1.2", "1.2.4"),
        ("1.3", "1.3.0"),
        ("1", "1.3.0"),
        ("latest", "1.3.0"),
    ] {
        assert_eq!(version_of(alias), version, "alias {alias}");
    }

    // Annotations on the index and on every platform manifest.
    let index = inspect_both(&garage, &registry, "albatros:1.3.0");
    let revision = common::git(&flake, &["rev-parse", "HEAD"]);
    let commit_time = common::git(&flake, &["log", "-1", "--format=%ct"]);
    let created = time::OffsetDateTime::from_unix_timestamp(commit_time.parse().expect("seconds"))
        .expect("time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    for (key, value) in [
        ("org.opencontainers.image.version", "1.3.0"),
        ("org.opencontainers.image.revision", revision.as_str()),
        ("org.opencontainers.image.created", created.as_str()),
        (
            "org.opencontainers.image.source",
            "https://git.example.org/albatros",
        ),
        ("org.example.team", "birds"),
    ] {
        assert_eq!(index["annotations"][key], value, "index annotation {key}");
    }
    for entry in index["manifests"].as_array().expect("manifests") {
        let digest = entry["digest"].as_str().expect("digest");
        let manifest = inspect_both(&garage, &registry, &format!("albatros@{digest}"));
        assert_eq!(manifest["annotations"], index["annotations"], "{digest}");

        // Its SBOM, through the referrers tag schema, and on the bucket as a referrers file.
        let tag = digest.replace("sha256:", "sha256-");
        let referrers = inspect_both(&garage, &registry, &format!("albatros:{tag}"));
        let artifact = &referrers["manifests"][0];
        assert_eq!(artifact["artifactType"], "application/vnd.cyclonedx+json");
        let artifact_digest = artifact["digest"].as_str().expect("artifact digest");
        let sbom_manifest =
            inspect_both(&garage, &registry, &format!("albatros@{artifact_digest}"));
        assert_eq!(sbom_manifest["subject"]["digest"], digest);
        let (status, headers, body) =
            garage.web_get("localhost", &format!("/v2/albatros/referrers/{digest}"));
        assert_eq!(status, 200);
        assert_eq!(
            headers["content-type"],
            "application/vnd.oci.image.index.v1+json"
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&body).expect("JSON"),
            referrers
        );
        let layer = sbom_manifest["layers"][0]["digest"]
            .as_str()
            .expect("sbom blob");
        let (status, _, sbom) = garage.web_get("localhost", &format!("/v2/albatros/blobs/{layer}"));
        assert_eq!(status, 200);
        assert_eq!(format!("sha256:{}", common::sha256_hex(&sbom)), layer);
        let path = work.path().join(format!("{tag}.cdx.json"));
        std::fs::write(&path, &sbom).expect("write sbom");
        cyclonedx_valid(&path).expect("a valid CycloneDX document");
        let sbom: Value = serde_json::from_slice(&sbom).expect("JSON");
        assert_eq!(sbom["metadata"]["component"]["type"], "container");
    }

    // gc counts releases, not aliases; aliases and SBOMs go with the image they point at.
    let old_index = inspect_both(&garage, &registry, "albatros:1.2.4");
    let old_manifest = old_index["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let s3 = garage.s3_url("localhost");
    alba()
        .envs(garage.envs())
        .args([
            "container",
            "gc",
            "-t",
            "albatros",
            "--keep",
            "2",
            "--grace",
            "0s",
            &s3,
        ])
        .run_expect(0);
    let (_, _, list) = garage.web_get("localhost", "/v2/albatros/tags/list");
    let list: Value = serde_json::from_slice(&list).expect("tags/list");
    assert_eq!(
        list["tags"],
        serde_json::json!(["1", "1.3", "1.3.0", "2.0.0-rc.1", "latest"])
    );
    for gone in [
        format!("/v2/albatros/referrers/{old_manifest}"),
        format!("/v2/albatros/manifests/{}", old_manifest.replace(':', "-")),
        format!("/v2/albatros/manifests/{old_manifest}"),
    ] {
        assert_eq!(garage.web_get("localhost", &gone).0, 404, "{gone} is left");
    }
    for entry in index["manifests"].as_array().expect("manifests") {
        let digest = entry["digest"].as_str().expect("digest");
        let kept = format!("/v2/albatros/referrers/{digest}");
        assert_eq!(garage.web_get("localhost", &kept).0, 200, "{kept} is gone");
    }
    let oci = work.path().join("oci");
    common::skopeo_copy_all(
        &format!("docker://{}", garage.web_registry_ref("albatros:1")),
        &oci,
    );
    common::verify_oci_layout(&oci);
}
