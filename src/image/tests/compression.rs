//! Parallel gzip: deterministic, one member, readable by `gzip`; compressed output pinned.

use std::io::Write;
use std::sync::Arc;

use tempfile::TempDir;

use super::*;

fn pargz(data: &[u8], threads: usize, chunk: usize) -> Vec<u8> {
    let pool = Arc::new(pool::Pool::new(threads).expect("pool"));
    let mut enc = gzip::ParGzEncoder::new(Vec::new(), pool).expect("encoder");
    for piece in data.chunks(chunk.max(1)) {
        enc.write_all(piece).expect("write");
    }
    enc.finish().expect("finish")
}

#[test]
fn parallel_gzip_is_deterministic_and_one_member() {
    let data = code_like(3 * gzip::BLOCK + 777, 7);
    let reference = pargz(&data, 1, 1 << 20);
    for (threads, chunk) in [(2, 4096), (4, 100_000), (3, 3 * gzip::BLOCK)] {
        assert!(
            pargz(&data, threads, chunk) == reference,
            "output changed with {threads} threads"
        );
    }
    assert_eq!(gunzip(&reference), data);
    assert_eq!(
        &reference[..10],
        &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255],
        "fixed header, mtime 0"
    );
    assert!(
        reference.len() < data.len() * 3 / 4,
        "barely compressed: {} of {}",
        reference.len(),
        data.len()
    );
}

/// Digests must never change unnoticed: a repeated release must stay a no-op across alba
/// versions. If this fails after a dependency update, the compressor's output changed: pin
/// the old version, or accept that every image gets new layer digests once.
#[test]
fn compressed_output_is_pinned() {
    let data = code_like(3 * gzip::BLOCK + 5, 42);
    assert_eq!(sha(&pargz(&data, 2, 1 << 16)), GOLDEN_GZIP);
    let pool = Arc::new(pool::Pool::new(1).expect("pool"));
    let dir = Arc::new(spool_dir::SpoolDir::new(None).expect("spool dir"));
    let spooled = layer::compress(&mut data.as_slice(), Compression::Zstd, &pool, &dir)
        .map_err(|_| "compress")
        .and_then(|c| c.wait().map_err(|_| "wait"))
        .expect("zstd");
    assert_eq!(spooled.digest, GOLDEN_ZSTD);
}

const GOLDEN_GZIP: &str = "sha256:a17fc56c41c8262f3e302bacc8ad810f9542b3eec286047ea2b9d73fb07335b6";
const GOLDEN_ZSTD: &str = "sha256:af0660089fe3a8258ee821a5841bff479e23466c978970b863dd37b8c1a8129f";

#[test]
fn parallel_gzip_edge_sizes() {
    for len in [0, 1, gzip::BLOCK - 1, gzip::BLOCK, 2 * gzip::BLOCK] {
        let data = code_like(len, len as u64);
        assert_eq!(gunzip(&pargz(&data, 2, 65536)), data, "length {len}");
    }
}

#[test]
fn system_gzip_reads_our_gzip() {
    let dir = TempDir::new().expect("tempdir");
    let data = code_like(2 * gzip::BLOCK + 99, 3);
    let path = write(dir.path(), "layer.gz", &pargz(&data, 2, 1 << 16));
    let test = std::process::Command::new("gzip")
        .arg("-t")
        .arg(&path)
        .status()
        .expect("gzip -t runs");
    assert!(test.success(), "gzip -t rejects our output");
    let out = std::process::Command::new("zcat")
        .arg(&path)
        .output()
        .expect("zcat runs");
    assert!(out.status.success());
    assert!(out.stdout == data, "zcat output differs");
}
