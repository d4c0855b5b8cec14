//! Tests of the image model on synthetic docker archives ([`super::fixtures`]), stream
//! scripts and real `gzip`, one file per job: `compression` (parallel gzip, pinned output),
//! `loading` (formats, orders, caches, the DIR form), `bad_inputs` (each an input error),
//! `dedup` (never compressing a layer twice) and `reading_less` (what is not read at all).
//! This file holds the helpers they share.

mod attestation;
mod bad_inputs;
mod compression;
mod dedup;
mod loading;
mod reading_less;
mod store_paths;

use std::io::Read;
use std::path::{Path, PathBuf};

use super::fixtures::{self, Order, Wrap, code_like, config_json, layer_tar, wrap};
use super::*;
use crate::digest::oci_digest as sha;
use crate::store::Body;

/// A docker archive's tar as nixpkgs writes it, its config [`config_json`]'s (pretty-printed,
/// to prove it is kept byte for byte).
fn archive_tar(os: &str, arch: &str, layers: &[Vec<u8>], order: Order) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    fixtures::archive_tar(&config_json(os, arch, &diff_ids), layers, order)
}

const MANIFEST_NAME: &str = "manifest.json";

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    path
}

/// A streamLayeredImage-like script that `cat`s a tar.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    fixtures::script(&path, body);
    path
}

fn amd64() -> Platform {
    Platform::parse("linux/amd64").expect("platform")
}

fn two_layers() -> Vec<Vec<u8>> {
    let big = code_like(2 * gzip::BLOCK + 12345, 1);
    vec![
        layer_tar(&[("bin/app", &big)]),
        layer_tar(&[("etc/hello", b"hello\n")]),
    ]
}

fn opts(jobs: usize, cache: Option<&Path>) -> LoadOptions {
    LoadOptions {
        compression: Compression::Gzip,
        cache_dir: cache.map(Path::to_path_buf),
        jobs,
        annotations: Default::default(),
        known: Vec::new(),
        ready_layers: None,
        progress: None,
    }
}

async fn bytes_of(blob: &Blob) -> Vec<u8> {
    match blob.materialize().await.expect("materialize") {
        Body::Bytes(b) => b.to_vec(),
        Body::File(p) => std::fs::read(p).expect("read blob"),
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    // GzDecoder (not Multi…) reads only the first member: one member must hold everything.
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

fn input_error_message(result: Result<impl std::fmt::Debug>) -> String {
    let error = result.expect_err("an error");
    assert_eq!(
        crate::error::exit_code(&error),
        2,
        "not an input error: {error:#}"
    );
    format!("{error:#}")
}

/// What a target holding `set` teaches, read as [`crate::publish::oci_known`] reads it.
async fn taught(set: &ImageSet, compression: Compression) -> Vec<KnownLayer> {
    let mut known = Vec::new();
    for image in &set.images {
        let Some(published) = published(&image.manifest, compression) else {
            continue;
        };
        known.extend(known_layers(&published, &bytes_of(&image.config).await));
    }
    known
}
