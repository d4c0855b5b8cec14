//! Reading back what the tools wrote: compressed layer bytes (alba's folder, skopeo's OCI
//! layout, a registry), blob mtimes and objects' Last-Modified (a warm run must rewrite
//! nothing), blob uploads in the registry's access log, and the blobs an alba report names new.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::PLATFORMS;
use crate::common::{Garage, Registry};

/// Last-Modified of every binary of the release in `bucket`.
pub(crate) fn binaries_last_modified(garage: &Garage, bucket: &str) -> Vec<(String, String)> {
    let s3 = garage.s3();
    let keys: Vec<String> = s3
        .list_keys(bucket, "df-dist-v1/bench/1/")
        .into_iter()
        .filter(|k| k.ends_with("/bench"))
        .collect();
    assert_eq!(
        keys.len(),
        PLATFORMS.len(),
        "one binary per platform in {bucket}: {keys:?}"
    );
    keys.into_iter()
        .map(|k| {
            let (status, headers, _) = s3.head(bucket, &k);
            assert_eq!(status, 200, "HEAD {bucket}/{k}");
            let modified = headers["last-modified"]
                .to_str()
                .unwrap_or_default()
                .to_string();
            (k, modified)
        })
        .collect()
}

/// Sum of the layer sizes of the manifests an index lists; `read(digest)` gives a manifest.
fn layer_bytes(index: &[u8], read: impl Fn(&str) -> Vec<u8>, platforms: usize) -> u64 {
    let index: Value = serde_json::from_slice(index).expect("index JSON");
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), platforms, "one manifest per platform");
    manifests
        .iter()
        .map(|m| {
            let manifest: Value =
                serde_json::from_slice(&read(m["digest"].as_str().expect("digest")))
                    .expect("manifest JSON");
            manifest["layers"]
                .as_array()
                .expect("layers")
                .iter()
                .map(|l| l["size"].as_u64().expect("layer size"))
                .sum::<u64>()
        })
        .sum()
}

/// Compressed layer bytes in alba's static registry folder.
pub(crate) fn alba_layer_bytes(out: &Path, platforms: usize) -> u64 {
    let manifests = out.join("v2/bench/manifests");
    let index = std::fs::read(manifests.join("1")).expect("alba's tag manifest");
    layer_bytes(
        &index,
        |digest| std::fs::read(manifests.join(digest)).expect("a manifest"),
        platforms,
    )
}

/// Compressed layer bytes in skopeo's OCI layout.
pub(crate) fn skopeo_layer_bytes(out: &Path) -> u64 {
    let index = std::fs::read(out.join("index.json")).expect("skopeo's index.json");
    layer_bytes(
        &index,
        |digest| {
            let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
            std::fs::read(out.join("blobs/sha256").join(hex)).expect("a manifest blob")
        },
        PLATFORMS.len(),
    )
}

/// Modification times of every blob file of alba's folder.
pub(crate) fn blob_mtimes(out: &Path) -> Vec<(PathBuf, std::time::SystemTime)> {
    let mut files: Vec<_> = std::fs::read_dir(out.join("v2/bench/blobs"))
        .expect("alba's blobs folder")
        .flatten()
        .map(|e| {
            (
                e.path(),
                e.metadata().and_then(|m| m.modified()).expect("mtime"),
            )
        })
        .collect();
    files.sort();
    files
}
/// Blob upload requests (`POST`/`PATCH`/`PUT` under `/blobs/uploads/`) for `repo` so far.
pub(crate) fn uploads(registry: &Registry, repo: &str) -> usize {
    let prefix = format!("/v2/{repo}/blobs/uploads/");
    registry
        .access_log()
        .iter()
        .filter(|l| {
            matches!(l.method.as_str(), "POST" | "PATCH" | "PUT") && l.path.starts_with(&prefix)
        })
        .count()
}

/// Blobs an alba push wrote (`new` in its report).
pub(crate) fn new_blobs(report: &Value) -> usize {
    report["targets"][0]["objects"]
        .as_array()
        .map_or(0, |objects| {
            objects
                .iter()
                .filter(|o| o["key"].as_str().is_some_and(|k| k.starts_with("blobs/")))
                .filter(|o| o["status"] == "new")
                .count()
        })
}

/// Compressed layer bytes of a tag on the registry (an index, or a single manifest).
pub(crate) fn registry_layer_bytes(registry: &Registry, repo: &str, tag: &str) -> u64 {
    let accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
                  application/vnd.docker.distribution.manifest.v2+json";
    let get = |reference: &str| {
        let (status, _, body) = registry.get(&format!("/v2/{repo}/manifests/{reference}"), accept);
        assert_eq!(status, 200, "{repo}:{reference} on the registry");
        body
    };
    let top = get(tag);
    let doc: Value = serde_json::from_slice(&top).expect("manifest JSON");
    if doc["manifests"].is_array() {
        let n = doc["manifests"].as_array().map_or(0, Vec::len);
        return layer_bytes(&top, get, n);
    }
    doc["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["size"].as_u64().expect("layer size"))
        .sum()
}
