//! Work alba must not do twice: a layer shared by platforms is compressed once per run, and a
//! runner with an empty cache compresses only the layers the target does not hold yet (the
//! target as a cache: what alba published there before, with the same compression settings).
//! Checked from alba's load trace ("N of M layers compressed") and from what the target holds.

use crate::common;
use crate::common::images;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::Registry;
use serde_json::Value;

const PLATFORMS: [(&str, &str); 4] = [
    ("linux.amd64", "amd64"),
    ("linux.386", "386"),
    ("linux.arm64", "arm64"),
    ("linux.arm.v6", "arm"),
];

/// Deterministic bytes that compress somewhat, so compressed layers are not trivially small.
fn content(len: usize, seed: u8) -> Vec<u8> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            if i % 5 < 2 {
                b"\x7fELF"[i % 4]
            } else {
                state as u8
            }
        })
        .collect()
}

/// The image DIR of one version: per platform a shared base layer, a layer of its own and a
/// version layer. `changed` gives amd64's version layer other content (the next release).
/// Gzip archives with `manifest.json` last, as nixpkgs writes them.
fn image_dir(root: &Path, name: &str, changed: bool) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("create the image DIR");
    let base = images::layer_tar(&[("lib/libbase.so", &content(512 << 10, 1))]);
    for (n, (file, arch)) in PLATFORMS.iter().enumerate() {
        let own = images::layer_tar(&[("bin/app", &content(256 << 10, 10 + n as u8))]);
        let version = match changed && *arch == "amd64" {
            true => b"2.0 for amd64\n".to_vec(),
            false => format!("1.0 for {arch}\n").into_bytes(),
        };
        let version = images::layer_tar(&[("etc/version", &version)]);
        images::docker_archive(
            &dir.join(format!("{file}.tar.gz")),
            arch,
            "linux",
            &[base.clone(), own, version],
            true,
        );
    }
    dir
}

/// `alba --json container push -t albatros:<tag> DIR TARGET` with a fresh, empty cache.
fn push(dir: &Path, target: &str, tag: &str) -> (Value, String) {
    let output: Output = common::alba()
        .args([
            "--json",
            "container",
            "push",
            "-t",
            &format!("albatros:{tag}"),
        ])
        .arg(dir)
        .arg(target)
        .run_expect(0);
    let report = serde_json::from_slice(&output.stdout).expect("--json prints a report");
    let trace = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    (report, trace)
}

/// Asserts the trace says `n` of the 12 layers were compressed.
fn assert_compressed(trace: &str, n: usize) {
    let said = format!("{n} of 12 layers compressed");
    assert!(trace.contains(&said), "expected {said:?} in:\n{trace}");
}

/// The status the report gives each layer blob the push wrote or found.
fn layer_statuses(report: &Value) -> Vec<String> {
    let objects = report["targets"][0]["objects"].as_array().expect("objects");
    objects
        .iter()
        .filter(|o| o["key"].as_str().is_some_and(|k| k.starts_with("blobs/")))
        .filter_map(|o| o["status"].as_str().map(str::to_string))
        .collect()
}

/// The version pushed first, then its successor with one layer changed, each by a runner with
/// an empty cache: the second compresses that layer only, and writes only it and the configs.
fn next_version_compresses_only_the_changed_layer(target: &str, check: impl Fn(&str)) {
    let work = tempfile::tempdir().expect("tempdir");
    let v1 = image_dir(work.path(), "v1", false);
    let (_, trace) = push(&v1, target, "1.0");
    // 4 platforms × 3 layers, of which 9 are distinct (one base shared by all).
    assert_compressed(&trace, 9);
    check("1.0");

    let v2 = image_dir(work.path(), "v2", true);
    let (report, trace) = push(&v2, target, "2.0");
    assert_compressed(&trace, 1);
    check("2.0");
    let statuses = layer_statuses(&report);
    let new = statuses.iter().filter(|s| s.as_str() != "exists").count();
    // The changed layer and amd64's config (its diff_ids changed); the other configs differ
    // from v1 only if their manifests did, which they do not.
    assert_eq!(new, 2, "blobs written: {statuses:?}");
}

#[test]
fn a_folder_target_is_a_cache() {
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("registry");
    let target = format!("file:{}", out.display());
    next_version_compresses_only_the_changed_layer(&target, |tag| {
        // Every layer the tag's manifests name is there, with the digest it is named by.
        let repo = out.join("v2/albatros");
        let index: Value = read_json(&repo.join("manifests").join(tag));
        for entry in index["manifests"].as_array().expect("manifests") {
            let digest = entry["digest"].as_str().expect("digest");
            let manifest: Value = read_json(&repo.join("manifests").join(digest));
            let compression = &manifest["annotations"]["org.alba.layers.compression"];
            assert!(
                compression.as_str().is_some_and(|c| c.starts_with("gzip-")),
                "{manifest}"
            );
            for layer in manifest["layers"].as_array().expect("layers") {
                let digest = layer["digest"].as_str().expect("digest");
                let bytes = std::fs::read(repo.join("blobs").join(digest)).expect("layer blob");
                assert_eq!(format!("sha256:{}", common::sha256_hex(&bytes)), digest);
            }
        }
    });
}

#[test]
fn a_registry_is_a_cache() {
    let Some(registry) = Registry::try_start() else {
        return;
    };
    let target = registry.url("albatros");
    next_version_compresses_only_the_changed_layer(&target, |tag| {
        let raw = common::skopeo_inspect_raw(
            &format!("docker://{}/albatros:{tag}", registry.host()),
            false,
        );
        let index: Value = serde_json::from_slice(&raw).expect("index JSON");
        assert_eq!(index["manifests"].as_array().map(Vec::len), Some(4));
    });
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).expect("JSON")
}
