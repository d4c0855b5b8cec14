//! Bad inputs: each an input error naming the file and the problem.

use std::io::Read;

use tempfile::TempDir;

use super::*;

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
