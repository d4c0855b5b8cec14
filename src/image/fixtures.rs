//! Synthetic docker archives, for tests and benches only: alba's unit tests and the
//! integration tests (`tests/common/images.rs`) build their images here, so the layout they
//! test against is written in one place. Not part of alba's interface; it panics on any error.
//!
//! The layout is what nixpkgs' `dockerTools` writes: uncompressed layer tars named
//! `<diff hex>/layer.tar`, a config named `<config hex>.json` with `rootfs.diff_ids` and no
//! `variant`, and `manifest.json` — last, as `buildLayeredImage`/`streamLayeredImage` write it,
//! or first with `./`-prefixed names, as `tar -C image -c .` does.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::digest::{oci_digest, sha256_hex};

/// Deterministic data that compresses like code: random bytes mixed with repeated runs.
pub fn code_like(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        if state.is_multiple_of(3) && out.len() > 64 {
            let back = (state >> 8) as usize % out.len().min(4096) + 1;
            let start = out.len() - back;
            for i in 0..(state >> 20) as usize % 48 + 4 {
                out.push(out[start + i % back]);
            }
        } else {
            out.extend_from_slice(&state.to_le_bytes()[..(state >> 61) as usize + 1]);
        }
    }
    out.truncate(len);
    out
}

/// A tar holding the given files (mode 0644, mtime 0): a layer's content, or a whole archive.
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

/// The config of an image whose layers are the given layer tars: `os`, `architecture` and
/// their diff_ids (no `variant`, like nixpkgs), compact JSON.
pub fn image_config(arch: &str, os: &str, layers: &[Vec<u8>]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| oci_digest(l)).collect();
    let config = serde_json::json!({
        "architecture": arch,
        "os": os,
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    serde_json::to_vec(&config).expect("config json")
}

/// The same config as [`image_config`], from the diff_ids, pretty-printed: a test that finds
/// it again byte for byte proves alba keeps configs verbatim.
pub fn config_json(os: &str, arch: &str, diff_ids: &[String]) -> Vec<u8> {
    let doc = serde_json::json!({
        "architecture": arch, "os": os, "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    serde_json::to_vec_pretty(&doc).expect("config json")
}

/// Where `manifest.json` goes in an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// First, entries named `./…` (`tar -C image -c .`).
    ManifestFirst,
    /// Last, after the layers and the config (`buildLayeredImage`, `streamLayeredImage`).
    ManifestLast,
}

/// The uncompressed docker-archive tar of an image with this config whose layers are the
/// given layer tars.
pub fn archive_tar(config: &[u8], layers: &[Vec<u8>], order: Order) -> Vec<u8> {
    let config_name = format!("{}.json", sha256_hex(config));
    let names: Vec<String> = layers
        .iter()
        .map(|l| format!("{}/layer.tar", sha256_hex(l)))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": config_name, "RepoTags": ["test:latest"], "Layers": names}
    ]))
    .expect("manifest json");
    let mut entries: Vec<(String, Vec<u8>)> = vec![
        ("manifest.json".into(), manifest),
        (config_name, config.to_vec()),
    ];
    let layer_entries = names.into_iter().zip(layers.iter().cloned());
    match order {
        Order::ManifestFirst => entries.extend(layer_entries.map(|(n, l)| (format!("./{n}"), l))),
        Order::ManifestLast => {
            entries.reverse();
            entries.splice(0..0, layer_entries);
        }
    }
    let files: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    layer_tar(&files)
}

/// The uncompressed docker-archive tar of an image whose layers are the given layer tars,
/// with [`image_config`]'s config, manifest last.
pub fn docker_archive_tar(arch: &str, os: &str, layers: &[Vec<u8>]) -> Vec<u8> {
    let config = image_config(arch, os, layers);
    archive_tar(&config, layers, Order::ManifestLast)
}

/// How an archive file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrap {
    /// Not at all.
    Plain,
    /// Gzip (fast level).
    Gzip,
    /// Zstandard (level 1).
    Zstd,
}

/// The tar compressed as `how` says.
pub fn wrap(tar: &[u8], how: Wrap) -> Vec<u8> {
    match how {
        Wrap::Plain => tar.to_vec(),
        Wrap::Gzip => gzip(tar, flate2::Compression::fast()),
        Wrap::Zstd => zstd::encode_all(tar, 1).expect("zstd"),
    }
}

fn gzip(bytes: &[u8], level: flate2::Compression) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), level);
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// Writes [`docker_archive_tar`]'s archive to `path`: gzip-compressed at the default level
/// (`buildImage`'s default) or plain.
pub fn docker_archive(path: &Path, arch: &str, os: &str, layers: &[Vec<u8>], gzip: bool) {
    let tar = docker_archive_tar(arch, os, layers);
    let bytes = match gzip {
        true => self::gzip(&tar, flate2::Compression::default()),
        false => tar,
    };
    std::fs::write(path, bytes).expect("write the docker archive");
}

/// Writes an executable `/bin/sh` script running `body` to `path`.
pub fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("write the script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .expect("chmod the script");
}

/// Writes a `streamLayeredImage`-like script to `path` that prints the tar at `tar`.
pub fn stream_script(path: &Path, tar: &Path) {
    script(path, &format!("exec cat '{}'", tar.display()));
}
