//! skopeo as an independent pull client, and a checker for OCI image layouts.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// How to get skopeo, for skip/fail messages.
pub const HOW_TO_INSTALL: &str = "apt-get install skopeo";

/// True if skopeo is installed; otherwise reports it via [`super::missing`].
pub fn skopeo_available() -> bool {
    super::require_program("skopeo", HOW_TO_INSTALL).is_some()
}

/// A `skopeo` command with an accept-anything policy and no user auth file.
pub fn skopeo() -> Command {
    let dir = std::env::temp_dir();
    let policy = dir.join("alba-test-skopeo-policy.json");
    if !policy.is_file() {
        let text = r#"{"default":[{"type":"insecureAcceptAnything"}]}"#;
        let unique = dir.join(format!("alba-test-skopeo-policy.{}", std::process::id()));
        std::fs::write(&unique, text).expect("could not write a skopeo policy file");
        std::fs::rename(&unique, &policy).expect("could not install the skopeo policy file");
    }
    let mut command = Command::new("skopeo");
    command.env("REGISTRY_AUTH_FILE", dir.join("alba-test-no-auth.json"));
    command.arg("--policy").arg(policy);
    command
}

/// `skopeo inspect --raw [--tls-verify=false] <reference>`: the manifest bytes exactly as served.
///
/// `reference` carries its transport: `docker://localhost:PORT/name:tag`.
pub fn skopeo_inspect_raw(reference: &str, tls_verify: bool) -> Vec<u8> {
    let mut command = skopeo();
    command.args([
        "inspect",
        "--raw",
        &format!("--tls-verify={tls_verify}"),
        reference,
    ]);
    super::run_ok(&mut command)
}

/// `skopeo copy --all --src-tls-verify=false <reference> oci:<oci_dir>`; panics on failure.
pub fn skopeo_copy_all(reference: &str, oci_dir: &Path) {
    let mut command = skopeo();
    command.args(["copy", "--all", "--src-tls-verify=false", reference]);
    command.arg(format!("oci:{}", oci_dir.display()));
    super::run_ok(&mut command);
}

/// Checks an OCI image layout: every blob's SHA-256 matches its file name, and every
/// descriptor reachable from `index.json` (indexes, manifests, configs, layers) is present
/// with its declared size. Returns the number of blobs checked.
pub fn verify_oci_layout(dir: &Path) -> usize {
    let blobs = dir.join("blobs/sha256");
    let mut present = BTreeSet::new();
    let entries = std::fs::read_dir(&blobs)
        .unwrap_or_else(|e| panic!("{} is not an OCI layout: {e}", blobs.display()));
    for entry in entries {
        let path = entry.expect("could not list blobs").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let bytes = std::fs::read(&path).expect("could not read a blob");
        let actual = super::sha256_hex(&bytes);
        assert_eq!(actual, name, "blob {} has SHA-256 {actual}", path.display());
        present.insert(name);
    }
    let index = std::fs::read(dir.join("index.json")).expect("OCI layout has no index.json");
    check_descriptors(dir, &json(&index, "index.json"), &present);
    present.len()
}

/// Checks the `manifests`, `config` and `layers` descriptors of one JSON document, recursively.
fn check_descriptors(dir: &Path, document: &serde_json::Value, present: &BTreeSet<String>) {
    let mut descriptors: Vec<&serde_json::Value> = Vec::new();
    for list in ["manifests", "layers"] {
        if let Some(items) = document[list].as_array() {
            descriptors.extend(items);
        }
    }
    if document["config"].is_object() {
        descriptors.push(&document["config"]);
    }
    for descriptor in descriptors {
        let digest = descriptor["digest"]
            .as_str()
            .expect("descriptor without digest");
        let hex = digest
            .strip_prefix("sha256:")
            .expect("digest is not sha256");
        assert!(present.contains(hex), "descriptor {digest} has no blob");
        let bytes = std::fs::read(dir.join("blobs/sha256").join(hex)).expect("blob unreadable");
        assert_eq!(
            descriptor["size"].as_u64(),
            Some(bytes.len() as u64),
            "size of {digest} differs from its descriptor"
        );
        let media_type = descriptor["mediaType"].as_str().unwrap_or_default();
        if media_type.contains("manifest") || media_type.contains("index") {
            check_descriptors(dir, &json(&bytes, digest), present);
        }
    }
}

/// Parses JSON, naming `what` on failure.
fn json(bytes: &[u8], what: &str) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{what} is not JSON: {e}"))
}

/// The platforms (`os/arch[/variant]`) of an OCI index.
pub fn index_platforms(index: &serde_json::Value) -> BTreeSet<String> {
    let entries = index["manifests"]
        .as_array()
        .expect("the index has manifests");
    entries
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap_or("?"),
                p["architecture"].as_str().unwrap_or("?")
            );
            if let Some(v) = p["variant"].as_str() {
                s.push('/');
                s.push_str(v);
            }
            s
        })
        .collect()
}
