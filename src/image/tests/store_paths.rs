//! The store paths an image holds ([`PlatformImage::store_paths`]), whichever way its layers
//! were learned: compressed now, known from the cache, or known from a target.

use tempfile::TempDir;

use super::*;

const HASHES: &str = "0123456789abcdfghijklmnpqrsvwxyz";

/// A buildLayeredImage-shaped image: one store path per layer, plus a customisation layer
/// of symlinks into them (which names no store path of its own).
fn layered(count: usize) -> (Vec<Vec<u8>>, Vec<String>) {
    let mut layers = Vec::new();
    let mut paths = Vec::new();
    for n in 0..count {
        let hash: String = HASHES.chars().cycle().skip(n).take(32).collect();
        let path = format!("nix/store/{hash}-pkg{n}-1.{n}");
        let file = format!("{path}/lib/libpkg{n}.so");
        layers.push(layer_tar(&[(&file, &code_like(3000 + n, n as u64))]));
        paths.push(format!("/{path}"));
    }
    layers.push(layer_tar(&[("etc/os-release", b"NAME=test\n")]));
    paths.sort();
    (layers, paths)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_store_path_of_the_layers_is_listed_however_the_layers_were_learned() {
    let (layers, paths) = layered(24);
    let dir = TempDir::new().expect("tempdir");
    let tar = archive_tar("linux", "amd64", &layers, Order::ManifestLast);
    let plain = write(dir.path(), "plain.tar", &tar);
    let gz = write(dir.path(), "image.tar.gz", &wrap(&tar, Wrap::Gzip));
    let cache = TempDir::new().expect("cache");
    let cold = load(vec![(amd64(), gz.clone())], &opts(2, Some(cache.path())))
        .await
        .expect("cold");
    assert_eq!(cold.images[0].store_paths, paths, "cold");
    let warm = load(vec![(amd64(), gz.clone())], &opts(2, Some(cache.path())))
        .await
        .expect("warm");
    assert_eq!(warm.layers_compressed, 0);
    assert_eq!(warm.images[0].store_paths, paths, "warm, from the cache");
    // A runner with an empty cache, the layers known from a target: read, not compressed.
    let known = taught(&cold, Compression::Gzip).await;
    for input in [&gz, &plain] {
        let empty = TempDir::new().expect("cache");
        let with_known = LoadOptions {
            known: known.clone(),
            ..opts(2, Some(empty.path()))
        };
        let set = load(vec![(amd64(), input.clone())], &with_known)
            .await
            .expect("known");
        assert_eq!(set.layers_compressed, 0, "{}", input.display());
        assert_eq!(set.images[0].store_paths, paths, "{}", input.display());
    }
    let none = LoadOptions {
        compression: Compression::None,
        ..opts(2, None)
    };
    let set = load(vec![(amd64(), plain)], &none).await.expect("none");
    assert_eq!(set.images[0].store_paths, paths, "uncompressed, no cache");
}
