//! Loading archives: every format and order, stream scripts, the caches, zstd and
//! uncompressed layers, and the DIR form.

use std::io::Write;

use tempfile::TempDir;

use super::*;

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
    assert_eq!(one.index_digest, oci_digest(&one.index));

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
        assert_eq!(image.manifest_digest, oci_digest(&image.manifest));
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
