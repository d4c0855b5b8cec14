//! Docker archives as nixpkgs `dockerTools` writes them, for tests.
//!
//! Layout as `buildLayeredImage`/`streamLayeredImage` write it: the uncompressed layer tars
//! (`<diff hex>/layer.tar`) first, then the config (`<config hex>.json`, with `rootfs.diff_ids`
//! and no `variant`, like nixpkgs), then `manifest.json` last.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A tar holding the given files (mode 0644, mtime 0): a layer's content.
pub fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        builder
            .append_data(&mut header, name, *data)
            .expect("append to tar");
    }
    builder.into_inner().expect("finish tar")
}

/// The config of an image: `os`, `architecture` and the layers' diff_ids (no `variant`).
pub fn image_config(arch: &str, os: &str, layers: &[Vec<u8>]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
    let config = serde_json::json!({
        "architecture": arch,
        "os": os,
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    serde_json::to_vec(&config).expect("config json")
}

/// The uncompressed docker-archive tar of an image whose layers are the given layer tars.
pub fn docker_archive_tar(arch: &str, os: &str, layers: &[Vec<u8>]) -> Vec<u8> {
    let config = image_config(arch, os, layers);
    let config_name = format!("{}.json", hex::encode(Sha256::digest(&config)));
    let layer_names: Vec<String> = layers
        .iter()
        .map(|l| format!("{}/layer.tar", hex::encode(Sha256::digest(l))))
        .collect();
    let manifest = serde_json::json!([
        {"Config": config_name, "RepoTags": ["test:latest"], "Layers": layer_names}
    ]);
    let manifest = serde_json::to_vec(&manifest).expect("manifest json");
    let mut files: Vec<(&str, &[u8])> = layer_names
        .iter()
        .map(String::as_str)
        .zip(layers.iter().map(Vec::as_slice))
        .collect();
    files.push((&config_name, &config));
    files.push(("manifest.json", &manifest));
    layer_tar(&files)
}

/// Writes a docker archive to `path`: gzip-compressed (`buildImage`'s default) or plain.
pub fn docker_archive(path: &Path, arch: &str, os: &str, layers: &[Vec<u8>], gzip: bool) {
    let tar = docker_archive_tar(arch, os, layers);
    let bytes = if gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&tar).expect("gzip");
        encoder.finish().expect("gzip")
    } else {
        tar
    };
    std::fs::write(path, bytes).expect("write the docker archive");
}

/// Writes a `streamLayeredImage`-like executable script to `path` that prints the tar at `tar`.
pub fn stream_script(path: &Path, tar: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\nexec cat '{}'\n", tar.display()))
        .expect("write the script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .expect("chmod the script");
}
