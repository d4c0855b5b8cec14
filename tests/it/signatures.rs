//! cosign-format image signatures, verified the way podman and CRI-O verify them: Debian
//! trixie's skopeo 1.18 (containers/image with sigstore on; Debian 12's is built without) in
//! the Nix chroot, `copy` under a `sigstoreSigned` policy with `matchRepository` and
//! `use-sigstore-attachments: true`, from a registry, Garage's website endpoint and a folder
//! behind nginx with alba's fragment. Keys come from `openssl genpkey`, and a cosign.key is
//! made from one of them with Python (hashlib's scrypt, PyNaCl's secretbox) as cosign does.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::fixtures::nix_str;
use common::{Nginx, alba, nix_available, nix_chroot};
use serde_json::{Value, json};

/// An ECDSA P-256 key pair from openssl: (secret PKCS#8 PEM, public PEM).
fn openssl_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (secret, public) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.pub.pem")),
    );
    let genpkey = [
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
    ];
    common::run_ok(
        Command::new("openssl")
            .args(genpkey)
            .arg("-out")
            .arg(&secret),
    );
    let pubout = ["pkey", "-pubout", "-in"];
    common::run_ok(
        Command::new("openssl")
            .args(pubout)
            .arg(&secret)
            .arg("-out")
            .arg(&public),
    );
    (secret, public)
}

/// `secret` (PEM) as cosign's encrypted `cosign.key`, with `password`: scrypt (cosign's
/// parameters N=65536 r=8 p=1) and NaCl secretbox over the PKCS#8 DER, JSON in a PEM block.
fn cosign_key(secret: &Path, out: &Path, password: &str) {
    let script = r#"import base64, hashlib, json, os, subprocess, sys
import nacl.secret
pem, out, password = sys.argv[1], sys.argv[2], sys.argv[3].encode()
der = subprocess.run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", pem, "-outform", "DER"],
                     capture_output=True, check=True).stdout
salt, nonce = os.urandom(32), os.urandom(24)
key = hashlib.scrypt(password, salt=salt, n=65536, r=8, p=1, dklen=32, maxmem=256 << 20)
sealed = nacl.secret.SecretBox(key).encrypt(der, nonce).ciphertext
b64 = lambda b: base64.b64encode(b).decode()
doc = {"kdf": {"name": "scrypt", "params": {"N": 65536, "r": 8, "p": 1}, "salt": b64(salt)},
       "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)}, "ciphertext": b64(sealed)}
body = b64(json.dumps(doc).encode())
lines = [body[i:i + 64] for i in range(0, len(body), 64)]
label = "ENCRYPTED SIGSTORE PRIVATE KEY"
open(out, "w").write("-----BEGIN %s-----\n%s\n-----END %s-----\n" % (label, "\n".join(lines), label))
"#;
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(secret)
        .arg(out)
        .arg(password)
        .output()
        .expect("python3 runs");
    let said = String::from_utf8_lossy(&output.stderr);
    if said.contains("No module named 'nacl'") {
        common::missing("PyNaCl", "pip install pynacl");
    }
    assert!(output.status.success(), "making cosign.key failed: {said}");
}

/// True when the chroot holds trixie's skopeo; otherwise reports it missing.
fn chroot_skopeo() -> bool {
    if !nix_chroot::available() {
        return false;
    }
    let present = nix_chroot::root().join("usr/bin/skopeo").is_file();
    if !present {
        common::missing(
            "skopeo in the Nix 2.26 chroot",
            "tests/run.sh (install_chroot_skopeo)",
        );
    }
    present
}

/// A containers `policy.json` that accepts images from `hosts` only when signed with
/// `public`, for the repository they are pulled from, and a `registries.d` that reads
/// cosign's signature tags there.
struct Policy {
    file: PathBuf,
    registries_d: PathBuf,
}

impl Policy {
    fn new(dir: &Path, name: &str, public: &Path, hosts: &[String]) -> Policy {
        let rule = json!([{
            "type": "sigstoreSigned",
            "keyPath": public,
            "signedIdentity": { "type": "matchRepository" },
        }]);
        // Scoped to the repository, as README's example is.
        let scopes: serde_json::Map<String, Value> = hosts
            .iter()
            .map(|h| (format!("{h}/albatros"), rule.clone()))
            .collect();
        let policy = json!({
            "default": [{ "type": "reject" }],
            "transports": { "docker": scopes },
        });
        let file = dir.join(format!("{name}.policy.json"));
        std::fs::write(&file, policy.to_string()).expect("write policy.json");
        let registries_d = dir.join(format!("{name}.registries.d"));
        std::fs::create_dir_all(&registries_d).expect("mkdir registries.d");
        let entries: String = hosts
            .iter()
            .map(|h| format!("  \"{h}\":\n    use-sigstore-attachments: true\n"))
            .collect();
        std::fs::write(
            registries_d.join("alba.yaml"),
            format!("docker:\n{entries}"),
        )
        .expect("write registries.d");
        Policy { file, registries_d }
    }

    /// `skopeo copy [--all] --remove-signatures docker://<source> oci:<dir>` under this
    /// policy, in the chroot: `Err(stderr)` when refused.
    fn copy(&self, source: &str, all: bool, work: &Path) -> Result<(), String> {
        let dest = tempfile::tempdir_in(work).expect("tempdir");
        let mut skopeo = nix_chroot::command("/usr/bin/skopeo");
        skopeo
            .env("REGISTRY_AUTH_FILE", work.join("no-auth.json"))
            .arg("--policy")
            .arg(&self.file)
            .arg("--registries.d")
            .arg(&self.registries_d)
            .args(["copy", "--remove-signatures", "--src-tls-verify=false"]);
        if all {
            skopeo.arg("--all");
        }
        let output = skopeo
            .arg(format!("docker://{source}"))
            .arg(format!("oci:{}", dest.path().display()))
            .output()
            .expect("skopeo runs in the chroot");
        match output.status.success() {
            true => {
                assert!(
                    dest.path().join("index.json").is_file(),
                    "{source}: no OCI layout"
                );
                Ok(())
            }
            false => Err(String::from_utf8_lossy(&output.stderr).into_owned()),
        }
    }
}

/// What a run said on stdout and stderr.
fn said(output: &std::process::Output) -> String {
    let (out, err) = (&output.stdout, &output.stderr);
    format!(
        "{}{}",
        String::from_utf8_lossy(out),
        String::from_utf8_lossy(err)
    )
}

#[test]
fn signed_images_verify_with_skopeo_from_registry_garage_and_folder() {
    if !nix_available() || !chroot_skopeo() {
        return;
    }
    let Some((garage, registry)) = crate::release_metadata::image_targets() else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let work = work.path();
    let (secret, public) = openssl_key(work, "alba");
    let (_, other_public) = openssl_key(work, "other");
    let cosign = work.join("cosign.key");
    cosign_key(&secret, &cosign, "correct horse");

    let garage_host = format!("localhost:{}", garage.web_port);
    let nginx_port = common::process::free_port();
    let nginx_host = format!("127.0.0.1:{nginx_port}");
    let folder = work.join("folder");
    let garage_target = format!("{}&web=http://{garage_host}", garage.s3_url("localhost"));
    let targets = [
        registry.url("albatros"),
        garage_target.clone(),
        format!("file:{}?web=http://{nginx_host}", folder.display()),
    ];
    let targets: Vec<String> = targets.iter().map(|t| nix_str(t)).collect();
    // The description's `sign.keys`, beside `container` (metadata_flake writes the text as it
    // is): a file name relative to where alba runs, as `--sign-key`.
    let container = format!(
        "{{ targets = [ {} ]; }};\n    sign.keys = [ \"alba.pem\" ]",
        targets.join(" ")
    );
    let flake = crate::release_metadata::metadata_flake(&work.join("flake"), &[], &container);
    let flake_ref = format!("git+file://{}", flake.display());
    let release = |version: &str, extra: &[&str], stdin: Option<&str>, code: i32| {
        let mut alba = alba();
        alba.current_dir(work);
        let only = ["--only", "container"];
        alba.envs(garage.envs()).arg("--flake").arg(&flake_ref);
        alba.args(["release", version]).args(only).args(extra);
        match stdin {
            Some(text) => alba.run_with_stdin(text.as_bytes(), code),
            None => alba.run_expect(code),
        }
    };
    let cosign = cosign.to_str().expect("utf-8 path");
    let secret = secret.to_str().expect("utf-8 path");
    let (_, minisign) = common::minisign_key(work, "minisign");
    let minisign = minisign.to_str().expect("utf-8 path");

    // A wrong password, and a folder without web=: exit 2 before anything is written.
    let stdin = ["--sign-key", cosign, "--sign-password-stdin"];
    let refused = said(&release("1.0", &stdin, Some("Xq7-not-it\n"), 2));
    assert!(
        refused.contains("wrong password") && !refused.contains("Xq7"),
        "{refused}"
    );
    let no_web = format!("file:{}", work.join("no-web").display());
    let refused = said(&release(
        "1.0",
        &["--sign-key", secret, "--target", &no_web],
        None,
        2,
    ));
    assert!(refused.contains("add web="), "{refused}");
    assert!(garage.list_keys("localhost").is_empty() && !folder.exists());
    assert!(!work.join("no-web").exists());
    let (status, _, _) = registry.get("/v2/albatros/tags/list", "application/json");
    assert_eq!(status, 404, "nothing pushed to the registry");

    // Signed with the cosign key (--sign-key replaces sign.keys); then again with sign.keys'
    // alba.pem, the same key as openssl wrote it: the cosign key decrypted to that key, and
    // a re-run writes nothing new.
    release("1.0", &stdin, Some("correct horse\n"), 0);
    let again = release("1.0", &["--json"], None, 0);
    let report: Value = serde_json::from_slice(&again.stdout).expect("--json report");
    for target in report["targets"].as_array().expect("targets") {
        let objects = target["objects"].as_array().expect("objects");
        let signatures = objects
            .iter()
            .filter(|o| o["key"].as_str().is_some_and(|k| k.ends_with(".sig")));
        assert_eq!(
            signatures.count(),
            3,
            "sign.keys signed: {}",
            target["target"]
        );
        let written: Vec<&Value> = objects
            .iter()
            .filter(|o| o["status"] == "new" || o["status"] == "updated")
            .collect();
        assert!(
            written.is_empty(),
            "{}: a re-run wrote {written:?}",
            target["target"]
        );
    }
    // A minisign key in place of sign.keys signs no image: 0.9 is unsigned.
    release("0.9", &["--sign-key", minisign], None, 0);
    let Some(_nginx) = Nginx::try_start_on(&folder.join(".alba/nginx.conf"), nginx_port) else {
        return;
    };

    let hosts = [registry.host(), garage_host.clone(), nginx_host.clone()];
    let ours = Policy::new(work, "ours", &public, &hosts);
    let theirs = Policy::new(work, "theirs", &other_public, &hosts);
    for host in &hosts {
        let index = common::skopeo_inspect_raw(&format!("docker://{host}/albatros:1.0"), false);
        let index: Value = serde_json::from_slice(&index).expect("index");
        let tag = format!("{host}/albatros:1.0");
        ours.copy(&tag, true, work)
            .unwrap_or_else(|e| panic!("{tag} --all: {e}"));
        for entry in index["manifests"].as_array().expect("manifests") {
            let by_digest = format!("{host}/albatros@{}", entry["digest"].as_str().expect("d"));
            ours.copy(&by_digest, false, work)
                .unwrap_or_else(|e| panic!("{by_digest}: {e}"));
        }
        let e = theirs
            .copy(&tag, true, work)
            .expect_err("another key's policy accepted");
        assert!(e.contains("signature"), "{tag}, another key: {e}");
        let unsigned = format!("{host}/albatros:0.9");
        let e = ours
            .copy(&unsigned, true, work)
            .expect_err("an unsigned tag was accepted");
        assert!(e.contains("signature"), "{unsigned}: {e}");
    }
    check_signature_manifest(&registry, &registry.host());

    // Static registries list no signature tags; rm takes them with their subject.
    for list in [
        garage.web_get(&garage_host, "/v2/albatros/tags/list").2,
        common::http_client()
            .get(format!("http://{nginx_host}/v2/albatros/tags/list"))
            .send()
            .and_then(|r| r.bytes())
            .expect("tags/list from nginx")
            .to_vec(),
    ] {
        let list: Value = serde_json::from_slice(&list).expect("tags/list");
        assert_eq!(list["tags"], json!(["0.9", "1.0"]));
    }
    // alba's own read-back accepts the signature tags and lists none of them; gc keeps 1.0
    // with its signatures.
    let on_registry = registry.url("albatros");
    alba()
        .args(["verify", "-t", "albatros", &on_registry])
        .run_expect(0);
    let ls = alba()
        .args(["container", "ls", "-t", "albatros", &on_registry])
        .run_expect(0);
    let ls = said(&ls);
    assert!(ls.contains("1.0") && !ls.contains(".sig"), "{ls}");
    let folder_target = format!("file:{}", folder.display());
    alba()
        .args(["verify", "-t", "albatros", &folder_target])
        .run_expect(0);
    let gc = [
        "container",
        "gc",
        "-t",
        "albatros",
        "--keep",
        "1",
        &folder_target,
    ];
    alba().args(gc).run_expect(0);
    let manifests = std::fs::read_dir(folder.join("v2/albatros/manifests")).expect("manifests");
    let names: Vec<String> = manifests
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let kept_sigs = names.iter().filter(|n| n.ends_with(".sig")).count();
    assert_eq!(
        kept_sigs, 3,
        "gc --keep 1 counts no signature tag: {names:?}"
    );
    assert!(!names.iter().any(|n| n == "0.9"), "{names:?}");
    let sig_keys = || {
        let keys = garage.list_keys("localhost");
        keys.into_iter().filter(|k| k.ends_with(".sig")).count()
    };
    assert_eq!(sig_keys(), 3, "the index's and two platforms' signatures");
    let rm = ["container", "rm", "-t", "albatros:1.0", &garage_target];
    alba().envs(garage.envs()).args(rm).run_expect(0);
    assert_eq!(
        sig_keys(),
        0,
        "rm removes the signatures of what it removed"
    );
    // On the registry too: 1.0's three signatures and two SBOM referrers tags go with it;
    // 0.9's two referrers tags stay.
    let registry_tags = || {
        let (_, _, list) = registry.get("/v2/albatros/tags/list", "application/json");
        let list: Value = serde_json::from_slice(&list).expect("registry tags/list");
        let tags = list["tags"].as_array().cloned().unwrap_or_default();
        let attached = |suffix: &str| {
            let matching = tags.iter().filter_map(Value::as_str);
            matching
                .filter(|t| t.starts_with("sha256-") && t.ends_with(suffix))
                .count()
        };
        let (sig, att) = (attached(".sig"), attached(".att"));
        // The provenance (`.att`, tests/it/provenance.rs) is attached too, and is a referrer
        // of the index and of each platform manifest.
        (sig, att, attached("") - sig - att)
    };
    assert_eq!(
        registry_tags(),
        (3, 3, 5),
        "signatures, attestations and referrers tags"
    );
    alba()
        .args(["container", "rm", "-t", "albatros:1.0", &on_registry])
        .run_expect(0);
    assert_eq!(
        registry_tags(),
        (0, 0, 2),
        "what is attached to 1.0 went with it"
    );
}

/// The signature manifest of 1.0's index on the registry, read back raw: cosign's layout and
/// payload, naming the repository it was pushed to.
fn check_signature_manifest(registry: &common::Registry, host: &str) {
    let index = common::skopeo_inspect_raw(&format!("docker://{host}/albatros:1.0"), false);
    let digest = format!("sha256:{}", common::sha256_hex(&index));
    let tag = digest.replace("sha256:", "sha256-") + ".sig";
    let raw = common::skopeo_inspect_raw(&format!("docker://{host}/albatros:{tag}"), false);
    let manifest: Value = serde_json::from_slice(&raw).expect("signature manifest");
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "{manifest}");
    let layer = &layers[0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    assert!(layer["annotations"]["dev.cosignproject.cosign/signature"].is_string());
    let path = format!(
        "/v2/albatros/blobs/{}",
        layer["digest"].as_str().expect("digest")
    );
    let (status, _, payload) = registry.get(&path, "*/*");
    assert_eq!(status, 200);
    let want = json!({
        "critical": {
            "identity": { "docker-reference": format!("{host}/albatros") },
            "image": { "docker-manifest-digest": digest },
            "type": "cosign container image signature",
        },
        "optional": null,
    });
    assert_eq!(
        payload,
        want.to_string().into_bytes(),
        "cosign's payload, byte for byte"
    );
}
