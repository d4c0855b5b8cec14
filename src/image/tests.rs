//! Tests of the image model on synthetic docker archives, stream scripts and real `gzip`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tempfile::TempDir;

use super::*;
use crate::store::Body;

// ---------------------------------------------------------------------------------------------
// Fixtures (the same logic as tests/common/images.rs, kept minimal here).

/// Deterministic data that compresses like code: random bytes mixed with repeated runs.
fn code_like(len: usize, seed: u64) -> Vec<u8> {
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

/// A layer tar holding the given files.
fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        builder.append_data(&mut header, name, *data).expect("tar");
    }
    builder.into_inner().expect("tar")
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The config a fixture archive holds: pretty-printed, to prove it is kept byte for byte.
fn config_json(os: &str, arch: &str, diff_ids: &[String]) -> Vec<u8> {
    let doc = serde_json::json!({
        "architecture": arch, "os": os, "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    serde_json::to_vec_pretty(&doc).expect("json")
}

#[derive(Clone, Copy, PartialEq)]
enum Order {
    ManifestFirst,
    ManifestLast,
}

/// A docker archive's tar as nixpkgs writes it (`./`-prefixed names when the manifest is first,
/// like `tar -C image -c .`; manifest last, like streamLayeredImage).
fn archive_tar(os: &str, arch: &str, layers: &[Vec<u8>], order: Order) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    let config = config_json(os, arch, &diff_ids);
    let config_name = format!("{}.json", &sha(&config)[7..]);
    let names: Vec<String> = diff_ids
        .iter()
        .map(|d| format!("{}/layer.tar", &d[7..]))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": config_name, "RepoTags": ["test:latest"], "Layers": names}
    ]))
    .expect("json");
    let mut entries: Vec<(String, Vec<u8>)> =
        vec![(MANIFEST_NAME.into(), manifest), (config_name, config)];
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

const MANIFEST_NAME: &str = "manifest.json";

#[derive(Clone, Copy, Debug)]
enum Wrap {
    Plain,
    Gzip,
    Zstd,
}

fn wrap(tar: &[u8], how: Wrap) -> Vec<u8> {
    match how {
        Wrap::Plain => tar.to_vec(),
        Wrap::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(tar).expect("gzip");
            enc.finish().expect("gzip")
        }
        Wrap::Zstd => zstd::encode_all(tar, 1).expect("zstd"),
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    path
}

/// A streamLayeredImage-like script that `cat`s a tar.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = write(dir, name, format!("#!/bin/sh\n{body}\n").as_bytes());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
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

// ---------------------------------------------------------------------------------------------
// Parallel gzip.

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

// ---------------------------------------------------------------------------------------------
// Loading archives.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_and_order_gives_the_same_image() {
    let dir = TempDir::new().expect("tempdir");
    let layers = two_layers();
    let mut digests = Vec::new();
    for order in [Order::ManifestFirst, Order::ManifestLast] {
        let tar = archive_tar("linux", "amd64", &layers, order);
        for how in [Wrap::Plain, Wrap::Gzip, Wrap::Zstd] {
            let path = write(
                dir.path(),
                &format!("{how:?}-{}.img", order as u8),
                &wrap(&tar, how),
            );
            let set = load(vec![(amd64(), path)], &opts(2, None))
                .await
                .expect("load");
            let image = &set.images[0];
            assert_eq!(
                bytes_of(&image.config).await,
                config_json("linux", "amd64", &[sha(&layers[0]), sha(&layers[1])])
            );
            assert_eq!(image.config.media_type, oci::CONFIG_MEDIA_TYPE);
            for (blob, original) in image.layers.iter().zip(&layers) {
                let compressed = bytes_of(blob).await;
                assert_eq!(sha(&compressed), blob.digest);
                assert_eq!(compressed.len() as u64, blob.size);
                assert!(gunzip(&compressed) == *original);
                assert_eq!(
                    blob.media_type,
                    "application/vnd.oci.image.layer.v1.tar+gzip"
                );
            }
            assert_eq!(set.layers_compressed, 2);
            digests.push(set.index_digest.clone());
        }
    }
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "digests differ: {digests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_and_index_are_oci_and_stable_across_jobs() {
    let dir = TempDir::new().expect("tempdir");
    let layers = two_layers();
    let arm = Platform::from_nix_system("armv6l-linux").expect("platform");
    let inputs = vec![
        (
            arm.clone(),
            write(
                dir.path(),
                "arm",
                &archive_tar("linux", "arm", &layers, Order::ManifestLast),
            ),
        ),
        (
            amd64(),
            write(
                dir.path(),
                "amd",
                &archive_tar("linux", "amd64", &layers, Order::ManifestFirst),
            ),
        ),
    ];
    let one = load(inputs.clone(), &opts(1, None)).await.expect("load");
    let three = load(inputs, &opts(3, None)).await.expect("load");
    assert_eq!(one.index_digest, three.index_digest);
    assert_eq!(one.index_digest, oci::digest(&one.index));

    let index: serde_json::Value = serde_json::from_slice(&one.index).expect("index json");
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], INDEX_MEDIA_TYPE);
    let platforms: Vec<&serde_json::Value> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| &m["platform"])
        .collect();
    assert_eq!(
        platforms,
        [
            &serde_json::json!({"architecture": "amd64", "os": "linux"}),
            &serde_json::json!({"architecture": "arm", "os": "linux", "variant": "v6"}),
        ]
    );
    for (entry, image) in index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .zip(&one.images)
    {
        assert_eq!(entry["digest"], image.manifest_digest.as_str());
        assert_eq!(entry["size"], image.manifest.len());
        assert_eq!(entry["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(image.manifest_digest, oci::digest(&image.manifest));
        let manifest: serde_json::Value =
            serde_json::from_slice(&image.manifest).expect("manifest json");
        assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(manifest["config"]["digest"], image.config.digest.as_str());
        assert_eq!(manifest["layers"].as_array().expect("layers").len(), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_scripts_are_run_and_read() {
    let dir = TempDir::new().expect("tempdir");
    let layers = two_layers();
    let tar = write(
        dir.path(),
        "image.tar",
        &archive_tar("linux", "amd64", &layers, Order::ManifestLast),
    );
    let stream = script(
        dir.path(),
        "stream",
        &format!("echo building >&2\ncat '{}'", tar.display()),
    );
    let from_file = load(vec![(amd64(), tar)], &opts(2, None))
        .await
        .expect("load file");
    let from_script = load(vec![(amd64(), stream)], &opts(2, None))
        .await
        .expect("load script");
    assert_eq!(from_file.index_digest, from_script.index_digest);

    let failing = script(
        dir.path(),
        "failing",
        "echo 'error: no space left for the tarball' >&2\nexit 3",
    );
    let message = input_error_message(load(vec![(amd64(), failing)], &opts(2, None)).await);
    assert!(
        message.contains("no space left for the tarball") && message.contains("failing"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hits_avoid_compression() {
    let dir = TempDir::new().expect("tempdir");
    let cache = dir.path().join("cache");
    let layers = two_layers();
    for (order, name) in [
        (Order::ManifestLast, "last"),
        (Order::ManifestFirst, "first"),
    ] {
        let tar = archive_tar("linux", "amd64", &layers, order);
        let path = write(dir.path(), name, &wrap(&tar, Wrap::Gzip));
        let stream = script(
            dir.path(),
            &format!("{name}.sh"),
            &format!("gzip -dc '{}'", path.display()),
        );
        let _ = std::fs::remove_dir_all(&cache);
        let cold = load(vec![(amd64(), path.clone())], &opts(2, Some(&cache)))
            .await
            .expect("cold");
        assert_eq!(cold.layers_compressed, 2);
        for input in [path, stream] {
            let warm = load(vec![(amd64(), input)], &opts(2, Some(&cache)))
                .await
                .expect("warm");
            assert_eq!(warm.layers_compressed, 0, "a warm run compressed layers");
            assert_eq!(warm.index_digest, cold.index_digest);
            let image = &warm.images[0];
            assert!(
                image.layers.iter().all(|l| !l.is_ready()),
                "layers compressed before being asked for"
            );
            // Asking for one blob compresses the archive's lazy layers once, checked against the cache.
            let first = bytes_of(&image.layers[0]).await;
            assert!(image.layers.iter().all(Blob::is_ready));
            assert_eq!(sha(&first), image.layers[0].digest);
            assert!(gunzip(&first) == layers[0]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_script_runs_once_cold_or_warm() {
    let dir = TempDir::new().expect("tempdir");
    let cache = dir.path().join("cache");
    let runs = dir.path().join("runs");
    let stream = |name: &str, layers: &[Vec<u8>]| {
        let tar = write(
            dir.path(),
            &format!("{name}.tar"),
            &archive_tar("linux", "amd64", layers, Order::ManifestLast),
        );
        script(
            dir.path(),
            name,
            &format!("echo run >> '{}'\ncat '{}'", runs.display(), tar.display()),
        )
    };
    let count = || std::fs::read_to_string(&runs).map_or(0, |s| s.lines().count());
    let layers = two_layers();
    let first = stream("first", &layers);
    let cold = load(vec![(amd64(), first.clone())], &opts(2, Some(&cache)))
        .await
        .expect("cold");
    assert_eq!(
        (cold.layers_compressed, count()),
        (2, 1),
        "(layers compressed, script runs)"
    );
    let warm = load(vec![(amd64(), first)], &opts(2, Some(&cache)))
        .await
        .expect("warm");
    assert_eq!((warm.layers_compressed, count()), (0, 2));

    // A new layer of the very size of a cached one: its entry name (`<diff hex>/layer.tar`)
    // tells it is not the cached one, so the script still runs only once.
    let mut twin = layers[1].clone();
    let at = twin.iter().position(|&b| b == b'h').expect("an h in hello");
    twin[at] = b'j';
    let second = stream("second", &[layers[0].clone(), twin.clone()]);
    let next = load(vec![(amd64(), second)], &opts(2, Some(&cache)))
        .await
        .expect("twin");
    assert_eq!((next.layers_compressed, count()), (1, 3));
    assert!(gunzip(&bytes_of(&next.images[0].layers[1]).await) == twin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_run_does_not_read_an_unchanged_archive() {
    let dir = TempDir::new().expect("tempdir");
    let cache = dir.path().join("cache");
    let layers = two_layers();
    let gz = wrap(
        &archive_tar("linux", "amd64", &layers, Order::ManifestLast),
        Wrap::Gzip,
    );
    let path = write(dir.path(), "image.tar.gz", &gz);
    let cold = load(vec![(amd64(), path.clone())], &opts(2, Some(&cache)))
        .await
        .expect("cold");

    // Garble the middle in place, keeping size, inode and mtime: only reading could notice.
    let mtime = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .expect("mtime");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(gz.len() as u64 / 2)).expect("seek");
    file.write_all(&[0x55; 4096]).expect("garble");
    file.set_modified(mtime).expect("restore mtime");
    drop(file);

    let warm = load(vec![(amd64(), path.clone())], &opts(2, Some(&cache)))
        .await
        .expect("warm run reads nothing");
    assert_eq!(warm.index_digest, cold.index_digest);
    assert_eq!(warm.layers_compressed, 0);
    // Compressing the lazy layers does read it: the damage is found and the index forgotten.
    input_error_message(warm.images[0].layers[0].materialize().await);
    let message = input_error_message(load(vec![(amd64(), path)], &opts(2, Some(&cache))).await);
    assert!(message.contains("truncated or corrupt"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_cache_entry_is_caught_when_materializing() {
    let dir = TempDir::new().expect("tempdir");
    let cache_dir = dir.path().join("cache");
    let layers = vec![layer_tar(&[("a", b"a")])];
    let path = write(
        dir.path(),
        "img",
        &archive_tar("linux", "amd64", &layers, Order::ManifestLast),
    );
    let cache = cache::Cache::new(Some(&cache_dir), Compression::Gzip);
    let wrong = cache::Entry {
        digest: sha(b"not this"),
        size: 8,
    };
    cache.put(&sha(&layers[0]), layers[0].len() as u64, &wrong);
    let set = load(vec![(amd64(), path.clone())], &opts(1, Some(&cache_dir)))
        .await
        .expect("load");
    assert_eq!(set.images[0].layers[0].digest, wrong.digest);
    let error = set.images[0].layers[0]
        .materialize()
        .await
        .expect_err("stale cache");
    assert!(format!("{error:#}").contains("run alba again"), "{error:#}");
    let healed = load(vec![(amd64(), path)], &opts(1, Some(&cache_dir)))
        .await
        .expect("load");
    assert_eq!(
        bytes_of(&healed.images[0].layers[0]).await.len() as u64,
        healed.images[0].layers[0].size
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_and_uncompressed_layers() {
    let dir = TempDir::new().expect("tempdir");
    let layers = two_layers();
    let path = write(
        dir.path(),
        "img",
        &wrap(
            &archive_tar("linux", "amd64", &layers, Order::ManifestLast),
            Wrap::Gzip,
        ),
    );
    let zstd_opts = LoadOptions {
        compression: Compression::Zstd,
        ..opts(2, None)
    };
    let set = load(vec![(amd64(), path.clone())], &zstd_opts)
        .await
        .expect("zstd");
    let blob = &set.images[0].layers[0];
    assert_eq!(
        blob.media_type,
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert!(zstd::decode_all(bytes_of(blob).await.as_slice()).expect("unzstd") == layers[0]);

    let none_opts = LoadOptions {
        compression: Compression::None,
        ..opts(2, None)
    };
    let set = load(vec![(amd64(), path)], &none_opts).await.expect("none");
    assert_eq!(
        set.layers_compressed, 0,
        "uncompressed layers are copied only when asked for"
    );
    for (blob, original) in set.images[0].layers.iter().zip(&layers) {
        assert_eq!(blob.media_type, "application/vnd.oci.image.layer.v1.tar");
        assert_eq!(blob.digest, sha(original));
        assert!(bytes_of(blob).await == *original);
    }
}

// ---------------------------------------------------------------------------------------------
// Bad inputs: each an input error naming the file and the problem.

async fn load_error(path: PathBuf, platform: Platform) -> String {
    input_error_message(load(vec![(platform, path)], &opts(2, None)).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_gzip_is_refused() {
    let dir = TempDir::new().expect("tempdir");
    let gz = wrap(
        &archive_tar("linux", "amd64", &two_layers(), Order::ManifestFirst),
        Wrap::Gzip,
    );
    for cut in [gz.len() / 2, gz.len() - 4] {
        let path = write(dir.path(), "cut.tar.gz", &gz[..cut]);
        let message = load_error(path, amd64()).await;
        assert!(
            message.contains("cut.tar.gz") && message.contains("truncated or corrupt"),
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_missing_parts_are_refused() {
    let dir = TempDir::new().expect("tempdir");
    let no_manifest = write(
        dir.path(),
        "nomanifest.tar",
        &layer_tar(&[("x/layer.tar", b"x")]),
    );
    let message = load_error(no_manifest, amd64()).await;
    assert!(
        message.contains("nomanifest.tar") && message.contains("no manifest.json"),
        "{message}"
    );

    let layers = two_layers();
    let full = archive_tar("linux", "amd64", &layers, Order::ManifestLast);
    let mut archive = tar::Archive::new(full.as_slice());
    let mut kept: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read");
        kept.push((name, data));
    }
    let without = |pred: &dyn Fn(&str) -> bool| {
        let files: Vec<(&str, &[u8])> = kept
            .iter()
            .filter(|(n, _)| !pred(n))
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        layer_tar(&files)
    };
    let layer_name = kept[1].0.clone();
    let missing_layer = write(dir.path(), "nolayer.tar", &without(&|n| n == layer_name));
    let message = load_error(missing_layer, amd64()).await;
    assert!(
        message.contains("nolayer.tar")
            && message.contains(&layer_name)
            && message.contains("does not contain"),
        "{message}"
    );

    let no_config = write(
        dir.path(),
        "noconfig.tar",
        &without(&|n| n.ends_with(".json") && n != MANIFEST_NAME),
    );
    let message = load_error(no_config, amd64()).await;
    assert!(
        message.contains("noconfig.tar") && message.contains("has no config"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_contradicting_the_config_is_refused() {
    let dir = TempDir::new().expect("tempdir");
    for order in [Order::ManifestFirst, Order::ManifestLast] {
        let path = write(
            dir.path(),
            "arm64.tar",
            &archive_tar("linux", "arm64", &two_layers(), order),
        );
        let message = load_error(path, amd64()).await;
        assert!(
            message.contains("arm64.tar")
                && message.contains("built for linux/arm64")
                && message.contains("linux/amd64"),
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_not_matching_its_diff_id_is_refused() {
    let dir = TempDir::new().expect("tempdir");
    let layers = two_layers();
    let mut tar = archive_tar("linux", "amd64", &layers, Order::ManifestLast);
    // Flip a byte inside the first layer's data (after its 512-byte header): the config lies now.
    tar[512 + 600] ^= 0xff;
    let message = load_error(write(dir.path(), "lying.tar", &tar), amd64()).await;
    assert!(
        message.contains("lying.tar") && message.contains("rootfs.diff_ids"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_and_garbage_are_refused() {
    let dir = TempDir::new().expect("tempdir");
    let message = load_error(dir.path().to_path_buf(), amd64()).await;
    assert!(message.contains("is a folder"), "{message}");
    let garbage = write(dir.path(), "garbage", b"just some text, not an image");
    let message = load_error(garbage, amd64()).await;
    assert!(
        message.contains("garbage") && message.contains("neither a docker archive"),
        "{message}"
    );
    let twice = vec![
        (amd64(), dir.path().join("a")),
        (amd64(), dir.path().join("b")),
    ];
    let message = input_error_message(load(twice, &opts(1, None)).await);
    assert!(
        message.contains("two images are given for linux/amd64"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------------
// The DIR form.

#[test]
fn scan_dir_reads_the_go_layout() {
    let dir = TempDir::new().expect("tempdir");
    for name in [
        "linux.amd64.tar.gz",
        "linux.arm.v6.tar",
        "linux.arm64.tar.zst",
    ] {
        write(dir.path(), name, b"");
    }
    let found: Vec<String> = scan_dir(dir.path())
        .expect("scan")
        .iter()
        .map(|(p, _)| p.to_string())
        .collect();
    assert_eq!(found, ["linux/amd64", "linux/arm/v6", "linux/arm64"]);

    write(dir.path(), "README.md", b"");
    let message = input_error_message(scan_dir(dir.path()));
    assert!(message.contains("README.md"), "{message}");

    let empty = TempDir::new().expect("tempdir");
    assert!(input_error_message(scan_dir(empty.path())).contains("holds no images"));
}

// ---------------------------------------------------------------------------------------------
// Never compressing a layer twice.

/// Four platforms, each a shared base layer plus one of its own.
fn shared_base(dir: &Path, order: Order, how: Wrap) -> (Vec<u8>, Vec<(Platform, PathBuf)>) {
    let base = layer_tar(&[("lib/base", &code_like(3 << 20, 7))]);
    let platforms = [
        ("amd64", "linux/amd64"),
        ("386", "linux/386"),
        ("arm64", "linux/arm64"),
        ("arm", "linux/arm/v6"),
    ];
    let inputs = platforms
        .iter()
        .enumerate()
        .map(|(n, (arch, platform))| {
            let own = layer_tar(&[("bin/app", &code_like(1 << 20, 100 + n as u64))]);
            let tar = archive_tar("linux", arch, &[base.clone(), own], order);
            let path = write(dir, &format!("{arch}-{n}.tar"), &wrap(&tar, how));
            (Platform::parse(platform).expect("platform"), path)
        })
        .collect();
    (base, inputs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_shared_by_platforms_is_compressed_once() {
    let dir = TempDir::new().expect("tempdir");
    for (order, how) in [
        (Order::ManifestLast, Wrap::Plain),
        (Order::ManifestLast, Wrap::Gzip),
        (Order::ManifestFirst, Wrap::Zstd),
    ] {
        let (base, inputs) = shared_base(dir.path(), order, how);
        for jobs in [1, 2, 4] {
            let set = load(inputs.clone(), &opts(jobs, None)).await.expect("load");
            assert_eq!(set.layers_compressed, 5, "4 platforms, 5 distinct layers");
            let first = &set.images[0].layers[0];
            for image in &set.images {
                assert_eq!(image.layers[0].digest, first.digest);
                assert!(image.layers.iter().all(Blob::is_ready));
            }
            assert!(gunzip(&bytes_of(first).await) == base);
        }
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_a_target_holds_are_not_compressed_again() {
    let dir = TempDir::new().expect("tempdir");
    let layers = vec![
        layer_tar(&[("lib/a", &code_like(2 << 20, 1))]),
        layer_tar(&[("lib/b", &code_like(1 << 20, 2))]),
        layer_tar(&[("etc/version", b"1\n")]),
    ];
    let v1_path = write(
        dir.path(),
        "v1.tar",
        &archive_tar("linux", "amd64", &layers, Order::ManifestLast),
    );
    let v1 = load(
        vec![(amd64(), v1_path)],
        &opts(2, Some(&dir.path().join("c1"))),
    )
    .await
    .expect("v1");
    let manifest: serde_json::Value = serde_json::from_slice(&v1.images[0].manifest).expect("json");
    assert_eq!(
        manifest["annotations"][LAYERS_COMPRESSION],
        Compression::Gzip.settings_key()
    );
    let known = taught(&v1, Compression::Gzip).await;
    assert_eq!(known.len(), 3);
    assert!(
        taught(&v1, Compression::Zstd).await.is_empty(),
        "other settings teach nothing"
    );

    // The next version, one layer changed, on a runner with an empty cache.
    let mut next = layers.clone();
    next[2] = layer_tar(&[("etc/version", b"2\n")]);
    for (order, how) in [
        (Order::ManifestLast, Wrap::Plain),
        (Order::ManifestFirst, Wrap::Gzip),
    ] {
        let path = write(
            dir.path(),
            "v2.tar",
            &wrap(&archive_tar("linux", "amd64", &next, order), how),
        );
        let cache = TempDir::new().expect("cache");
        let with_known = LoadOptions {
            known: known.clone(),
            ..opts(2, Some(cache.path()))
        };
        let v2 = load(vec![(amd64(), path.clone())], &with_known)
            .await
            .expect("v2");
        assert_eq!(v2.layers_compressed, 1, "only the changed layer");
        let (old, new) = (&v1.images[0].layers, &v2.images[0].layers);
        for n in 0..2 {
            assert_eq!(new[n].digest, old[n].digest);
            assert!(
                !new[n].is_ready(),
                "a layer the target holds was compressed"
            );
        }
        assert_ne!(new[2].digest, old[2].digest);
        // Asked for anyway (another target lacks it), it compresses to what the target holds.
        assert_eq!(sha(&bytes_of(&new[0]).await), old[0].digest);
        // What the target taught is in the local cache now: no target needed next time.
        let again = load(vec![(amd64(), path)], &opts(2, Some(cache.path())))
            .await
            .expect("again");
        assert_eq!(
            (again.layers_compressed, again.index_digest.clone()),
            (0, v2.index_digest)
        );
    }
}

/// Shared layers are deduplicated by diff_id, trusted from the config like cache hits: an
/// archive whose copy of a shared layer lies is refused when its own bytes are read, and when
/// another image's (genuine) copy was compressed first its bytes are never read at all. Either
/// way no image waits forever, and no byte that contradicts a config is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_copy_of_a_shared_layer_is_never_published() {
    let dir = TempDir::new().expect("tempdir");
    let layers = two_layers();
    let good = write(
        dir.path(),
        "good.tar",
        &archive_tar("linux", "amd64", &layers, Order::ManifestLast),
    );
    // The same entry names (so the same claimed diff_ids), one layer's bytes changed.
    let mut tar = archive_tar("linux", "arm64", &layers, Order::ManifestLast);
    tar[512 + 600] ^= 0xff;
    let lying = write(dir.path(), "lying.tar", &tar);
    let arm64 = Platform::parse("linux/arm64").expect("platform");
    for jobs in [1, 2] {
        for (lying_first, inputs) in [
            (
                true,
                vec![(arm64.clone(), lying.clone()), (amd64(), good.clone())],
            ),
            (
                false,
                vec![(amd64(), good.clone()), (arm64.clone(), lying.clone())],
            ),
        ] {
            let loaded = tokio::time::timeout(
                std::time::Duration::from_secs(60),
                load(inputs, &opts(jobs, None)),
            )
            .await
            .expect("no image waits forever for another's layer");
            match loaded {
                Ok(set) => {
                    assert!(
                        !(lying_first && jobs == 1),
                        "the lying bytes were read first"
                    );
                    for image in &set.images {
                        for (blob, layer) in image.layers.iter().zip(&layers) {
                            assert!(gunzip(&bytes_of(blob).await) == *layer);
                        }
                    }
                }
                Err(e) => {
                    let message = input_error_message(Err::<(), _>(e));
                    assert!(
                        message.contains("lying.tar") && message.contains("rootfs.diff_ids"),
                        "{message}"
                    );
                }
            }
        }
    }
}

/// Loads with a `ready_layers` receiver; returns the load's result and the digests it sent.
async fn load_sending(inputs: Vec<(Platform, PathBuf)>) -> (Result<ImageSet>, Vec<String>) {
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let opts = LoadOptions {
        ready_layers: Some(sender),
        ..opts(2, None)
    };
    let loaded = load(inputs, &opts).await;
    drop(opts);
    let mut sent = Vec::new();
    while let Some(blob) = receiver.recv().await {
        assert!(blob.is_ready(), "a layer is sent once compressed");
        sent.push(blob.digest);
    }
    (loaded, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_layers_leave_for_upload_once_every_input_is_valid() {
    let dir = TempDir::new().expect("tempdir");
    for how in [Wrap::Plain, Wrap::Gzip] {
        let (_, inputs) = shared_base(dir.path(), Order::ManifestLast, how);
        let (loaded, mut sent) = load_sending(inputs.clone()).await;
        let set = loaded.expect("load");
        let mut layers: Vec<String> = set
            .images
            .iter()
            .flat_map(|i| i.layers.iter().map(|l| l.digest.clone()))
            .collect();
        layers.sort();
        layers.dedup();
        sent.sort();
        assert_eq!(sent, layers, "each distinct layer sent once");

        // One bad input (another architecture; or no manifest.json): nothing leaves.
        let wrong_arch = (
            Platform::parse("linux/s390x").expect("platform"),
            inputs[0].1.clone(),
        );
        let garbage = write(
            dir.path(),
            "no-manifest.tar",
            &wrap(&layer_tar(&[("abc/layer.tar", b"x")]), how),
        );
        for bad in [
            wrong_arch,
            (Platform::parse("linux/ppc64le").expect("platform"), garbage),
        ] {
            let mut with_bad = inputs.clone();
            with_bad.push(bad);
            let (loaded, sent) = load_sending(with_bad).await;
            input_error_message(loaded);
            assert!(
                sent.is_empty(),
                "{how:?}: layers sent before every input was valid"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fully_cached_tells_when_the_targets_need_not_be_read() {
    let dir = TempDir::new().expect("tempdir");
    let cache = dir.path().join("cache");
    let path = write(
        dir.path(),
        "img.tar",
        &archive_tar("linux", "amd64", &two_layers(), Order::ManifestLast),
    );
    let inputs = vec![(amd64(), path)];
    assert!(!fully_cached(&inputs, Compression::Gzip, Some(&cache)));
    load(inputs.clone(), &opts(2, Some(&cache)))
        .await
        .expect("cold");
    assert!(fully_cached(&inputs, Compression::Gzip, Some(&cache)));
    assert!(!fully_cached(&inputs, Compression::Zstd, Some(&cache)));
    assert!(!fully_cached(&inputs, Compression::Gzip, None));
    assert!(
        fully_cached(&inputs, Compression::None, None),
        "nothing to learn"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_counts_the_bytes_to_compress_and_compressed() {
    let dir = TempDir::new().expect("tempdir");
    for how in [Wrap::Plain, Wrap::Gzip] {
        let (base, inputs) = shared_base(dir.path(), Order::ManifestLast, how);
        let hidden = indicatif::ProgressDrawTarget::hidden();
        let bar = indicatif::ProgressBar::with_draw_target(Some(0), hidden);
        let with_bar = LoadOptions {
            progress: Some(bar.clone()),
            ..opts(2, None)
        };
        load(inputs, &with_bar).await.expect("load");
        // The base once, plus each platform's own layer (the same size for every platform).
        let own = layer_tar(&[("bin/app", &code_like(1 << 20, 100))]).len() as u64;
        let expected = base.len() as u64 + 4 * own;
        assert_eq!((bar.position(), bar.length()), (expected, Some(expected)));
    }
}

// ---------------------------------------------------------------------------------------------
// Reading less.

/// An image whose big layer a target holds (taught by its v1) and whose small layer changed.
async fn v1_known_and_v2(big: usize) -> (ImageSet, Vec<KnownLayer>, Vec<Vec<u8>>) {
    let dir = TempDir::new().expect("tempdir");
    let layers = vec![
        layer_tar(&[("lib/big", &code_like(big, 1))]),
        layer_tar(&[("etc/version", b"1\n")]),
    ];
    let tar = archive_tar("linux", "amd64", &layers, Order::ManifestLast);
    let v1_path = write(dir.path(), "v1.tar", &tar);
    let v1 = load(vec![(amd64(), v1_path)], &opts(2, None))
        .await
        .expect("v1");
    let known = taught(&v1, Compression::Gzip).await;
    let mut next = layers;
    next[1] = layer_tar(&[("etc/version", b"2\n")]);
    (v1, known, next)
}

/// A runner with an empty cache and v1 on the target does not read the layers the target
/// holds from an uncompressed archive: tar headers, JSON entries and the changed layer only.
/// A target lacking such a layer after all still gets it, compressed from the archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_a_target_holds_are_not_read_from_an_uncompressed_archive() {
    let big = 8 << 20;
    let (v1, known, next) = v1_known_and_v2(big).await;
    let dir = TempDir::new().expect("tempdir");
    for order in [Order::ManifestLast, Order::ManifestFirst] {
        let tar = archive_tar("linux", "amd64", &next, order);
        let path = write(dir.path(), "v2.tar", &tar);
        input::bytes_read(&path);
        let cache = TempDir::new().expect("cache");
        let with_known = LoadOptions {
            known: known.clone(),
            ..opts(2, Some(cache.path()))
        };
        let v2 = load(vec![(amd64(), path.clone())], &with_known)
            .await
            .expect("v2");
        assert_eq!(v2.layers_compressed, 1, "only the changed layer");
        let read = input::bytes_read(&path);
        assert!(
            read < 128 << 10,
            "read {read} bytes of a {} byte archive",
            tar.len()
        );
        let held = &v2.images[0].layers[0];
        assert!(!held.is_ready());
        assert_eq!(sha(&bytes_of(held).await), v1.images[0].layers[0].digest);
        assert!(input::bytes_read(&path) >= big as u64, "read when asked");
    }
}

/// A compressed archive is decompressed once per load, cold, with the target as a cache, or
/// with its layers in the local cache (read to its end each time: a truncated stream shows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_archive_is_decompressed_once() {
    let (_, known, next) = v1_known_and_v2(4 << 20).await;
    let dir = TempDir::new().expect("tempdir");
    for (order, how) in [
        (Order::ManifestLast, Wrap::Gzip),
        (Order::ManifestFirst, Wrap::Gzip),
        (Order::ManifestLast, Wrap::Zstd),
    ] {
        let bytes = wrap(&archive_tar("linux", "amd64", &next, order), how);
        let path = write(dir.path(), &format!("v2-{how:?}.tar"), &bytes);
        for known in [Vec::new(), known.clone()] {
            input::bytes_read(&path);
            let cache = TempDir::new().expect("cache");
            let with_known = LoadOptions {
                known,
                ..opts(2, Some(cache.path()))
            };
            load(vec![(amd64(), path.clone())], &with_known)
                .await
                .expect("v2");
            let read = input::bytes_read(&path);
            assert_eq!(read, bytes.len() as u64, "{how:?}: one pass");
        }
    }
}
