//! Reading less: what a target or the cache holds is not read from the archive.

use tempfile::TempDir;

use super::*;

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
