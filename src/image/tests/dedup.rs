//! Never compressing a layer twice: layers shared by platforms, held by a target, or lied
//! about, and layers leaving for upload as soon as every input is valid.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::*;

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
