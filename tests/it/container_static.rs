//! Multi-arch images to a static registry: on Garage (served by its website endpoint) and in a
//! folder (served by nginx with the generated fragment), pulled by skopeo and containerd.

use crate::common;
use crate::common::images;
use crate::nix_tests;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::fixtures::{FlakeFixture, SYSTEMS};
use common::{
    Containerd, Garage, Nginx, NixVersion, alba, nix_available, skopeo_available, skopeo_copy_all,
    skopeo_inspect_raw, verify_oci_layout,
};
use serde_json::Value;

/// Everything the pull checks need; `None` (SKIP with `ALBA_ALLOW_SKIP=1`) when something is missing.
fn services() -> Option<(Garage, Containerd)> {
    if !nix_available() {
        return None;
    }
    if !skopeo_available() {
        return None;
    }
    let containerd = Containerd::try_start()?;
    let garage = Garage::try_start()?;
    garage.create_bucket("localhost");
    Some((garage, containerd))
}

/// The pull clients without Garage, for tests run per Nix version (`nix_tests!` checks Nix).
fn pull_clients() -> Option<Containerd> {
    if !skopeo_available() {
        return None;
    }
    Containerd::try_start()
}

/// The Nix that reruns a release: the chroot's 2.26 when the first run used the host's 2.8,
/// so a rerun that is a no-op proves both Nix versions build the same release. A missing
/// chroot fails the test; with `ALBA_ALLOW_SKIP=1` the rerun falls back to the host's Nix.
fn rerun_nix() -> NixVersion {
    if NixVersion::Chroot.available() {
        NixVersion::Chroot
    } else {
        NixVersion::Host
    }
}

/// Gzips a file in place: buildImage's default output is a gzipped docker archive.
fn gzip_in_place(path: &Path) {
    let tar = std::fs::read(path).expect("read image");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&tar).expect("gzip");
    std::fs::write(path, encoder.finish().expect("gzip")).expect("write image");
}

/// A four-platform container fixture flake with gzipped docker archives.
fn container_flake(dir: &Path, targets: &[&str], salt: &str) -> PathBuf {
    let flake = FlakeFixture::new("albatros", &SYSTEMS)
        .no_static()
        .container(targets)
        .salt(salt)
        .write(dir);
    for image in flake.images.values() {
        gzip_in_place(image);
    }
    flake.dir
}

fn report(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "--json printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Checks the raw index skopeo sees: OCI index, four platforms, arm with variant v6.
fn check_index(reference: &str, expected_digest: &str) {
    let raw = skopeo_inspect_raw(reference, false);
    assert_eq!(
        images::sha256_digest(&raw),
        expected_digest,
        "skopeo sees the index alba reported"
    );
    let index: Value = serde_json::from_slice(&raw).expect("index JSON");
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries = index["manifests"].as_array().expect("manifests");
    assert_eq!(entries.len(), 4, "one entry per platform");
    for entry in entries {
        assert_eq!(
            entry["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
    }
    let platforms: Vec<String> = common::index_platforms(&index).into_iter().collect();
    assert_eq!(
        platforms,
        ["linux/386", "linux/amd64", "linux/arm/v6", "linux/arm64"]
    );
}

/// Copies every platform with skopeo and re-hashes every blob.
fn check_copy(reference: &str) {
    let out = tempfile::tempdir().expect("tempdir");
    let layout = out.path().join("oci");
    skopeo_copy_all(reference, &layout);
    let blobs = verify_oci_layout(&layout);
    assert!(
        blobs >= 1 + 4 + 4 + 4,
        "index, 4 manifests, 4 configs, 4+ layers: got {blobs}"
    );
}

/// Pulls one platform with containerd over plain HTTP.
fn check_ctr(containerd: &Containerd, reference: &str, platform: &str) {
    let output = containerd.pull(reference, platform, true);
    assert!(
        output.status.success(),
        "ctr pull {reference} --platform {platform} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn release_to_garage_website_pulls_and_reruns_are_noops() {
    let Some((garage, containerd)) = services() else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let s3 = garage.s3_url("localhost");
    let flake = container_flake(&work.path().join("flake"), &[&s3], "garage");

    let first = alba()
        .envs(garage.envs())
        .args(["--json", "--flake"])
        .arg(&flake)
        .args(["release", "0.9"])
        .run_expect(0);
    let first = report(&first);
    let index_digest = first["targets"][0]["index_digest"]
        .as_str()
        .expect("index digest")
        .to_string();
    let reference = garage.web_registry_ref("albatros:0.9");
    check_index(&format!("docker://{reference}"), &index_digest);
    check_copy(&format!("docker://{reference}"));
    check_ctr(&containerd, &reference, "linux/arm64");
    check_ctr(&containerd, &reference, "linux/arm/v6");

    // The same release again, with the other Nix (2.26): same index digest, no blob bytes
    // sent (checked against the bucket too: the blob objects keep their Last-Modified). A
    // fresh layer cache each run. Both Nix versions build the same bytes, so this pins them.
    let nix = rerun_nix();
    let blob_key = garage
        .list_keys("localhost")
        .into_iter()
        .find(|k| k.contains("/blobs/"))
        .expect("a blob");
    let before = garage.s3().head("localhost", &blob_key).1["last-modified"].clone();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = nix
        .alba()
        .envs(garage.envs())
        .args(["--json", "--flake"])
        .arg(&flake)
        .args(["release", "0.9"])
        .run_expect(0);
    let second = report(&second);
    assert_eq!(second["targets"][0]["index_digest"], index_digest.as_str());
    assert_eq!(second["bytes_sent"], 0, "{second:#}");
    assert_eq!(
        garage.s3().head("localhost", &blob_key).1["last-modified"],
        before
    );

    // A second tag keeps the first in tags/list.
    nix.alba()
        .envs(garage.envs())
        .arg("--flake")
        .arg(&flake)
        .args(["release", "1.0"])
        .run_expect(0);
    let (status, headers, body) = garage.web_get("localhost", "/v2/albatros/tags/list");
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        String::from_utf8_lossy(&body),
        r#"{"name":"albatros","tags":["0.9","1.0"]}"#
    );
    let (status, _, body) = garage.web_get("localhost", "/v2/");
    assert_eq!((status, body.as_slice()), (200, &b"{}"[..]));

    // container ls lists both tags with the index digest and the platforms.
    let output = alba()
        .envs(garage.envs())
        .args(["container", "ls", "-t", "albatros"])
        .arg(&s3)
        .run_expect(0);
    let listing = String::from_utf8_lossy(&output.stdout);
    assert!(
        listing.contains("0.9") && listing.contains("1.0") && listing.contains(&index_digest),
        "{listing}"
    );
    assert!(listing.contains("linux/arm/v6"), "{listing}");
}

fn folder_target_served_by_nginx(nix: NixVersion) {
    let Some(containerd) = pull_clients() else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("registry");
    let target = format!("file:{}", out.display());
    let flake = container_flake(&work.path().join("flake"), &[&target], "folder");
    let output = nix
        .alba()
        .args(["--json", "--flake"])
        .arg(&flake)
        .args(["release", "0.9"])
        .run_expect(0);
    let index_digest = report(&output)["targets"][0]["index_digest"]
        .as_str()
        .expect("digest")
        .to_string();

    let Some(nginx) = Nginx::try_start(&out.join(".alba/nginx.conf")) else {
        return;
    };
    let reference = format!("127.0.0.1:{}/albatros:0.9", nginx.port);
    check_index(&format!("docker://{reference}"), &index_digest);
    check_copy(&format!("docker://{reference}"));
    check_ctr(&containerd, &reference, "linux/386");
    let (status, headers, _) = nginx.get("/v2/albatros/manifests/0.9");
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-type"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(headers["docker-content-digest"], index_digest.as_str());
}
nix_tests!(folder_target_served_by_nginx);

fn stream_layered_image_scripts_are_run(nix: NixVersion) {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("flake");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let layer = images::layer_tar(&[("etc/stream", b"streamed layer")]);
    images::docker_archive(
        &dir.join("image.tar"),
        "amd64",
        "linux",
        std::slice::from_ref(&layer),
        false,
    );
    let flake = r#"{ outputs = { self }: {
      release = { name = "streamed"; systems = [ "x86_64-linux" ]; container = { attr = "stream"; }; };
      stream = derivation { system = "x86_64-linux"; name = "stream-streamed"; builder = "/bin/sh";
        args = [ "-c" "echo '#!/bin/sh' > $out; echo 'exec /bin/cat ${./image.tar}' >> $out; /bin/chmod +x $out" ]; };
    }; }"#;
    std::fs::write(dir.join("flake.nix"), flake).expect("write flake");
    let out = work.path().join("out");
    nix.alba()
        .arg("--flake")
        .arg(&dir)
        .args(["release", "0.1", "--target"])
        .arg(format!("file:{}", out.display()))
        .run_expect(0);
    let index: Value =
        serde_json::from_slice(&std::fs::read(out.join("v2/streamed/manifests/0.1")).expect("tag"))
            .expect("JSON");
    let manifest_digest = index["manifests"][0]["digest"].as_str().expect("digest");
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(out.join(format!("v2/streamed/manifests/{manifest_digest}")))
            .expect("manifest"),
    )
    .expect("JSON");
    let layer_digest = manifest["layers"][0]["digest"].as_str().expect("layer");
    let blob =
        std::fs::read(out.join(format!("v2/streamed/blobs/{layer_digest}"))).expect("layer blob");
    let mut plain = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(blob.as_slice()),
        &mut plain,
    )
    .expect("gunzip");
    assert_eq!(
        plain, layer,
        "the layer is the streamed one, gzip-compressed"
    );
}
nix_tests!(stream_layered_image_scripts_are_run);

/// `container push` without DIR builds the flake's images and publishes them to its targets.
fn container_push_without_dir_builds_the_flake(nix: NixVersion) {
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("registry");
    let target = format!("file:{}", out.display());
    let flake = container_flake(&work.path().join("flake"), &[&target], "push-flake");
    nix.alba()
        .arg("--flake")
        .arg(&flake)
        .args(["container", "push", "-t", "albatros:0.9"])
        .run_expect(0);
    let index: Value = serde_json::from_slice(
        &std::fs::read(out.join("v2/albatros/manifests/0.9")).expect("the tag"),
    )
    .expect("index JSON");
    let platforms: Vec<String> = common::index_platforms(&index).into_iter().collect();
    assert_eq!(
        platforms,
        ["linux/386", "linux/amd64", "linux/arm/v6", "linux/arm64"]
    );
}
nix_tests!(container_push_without_dir_builds_the_flake);

/// One bad docker/ folder: each case writes `linux.amd64.tar[.gz]` into its own DIR.
fn bad_dir(root: &Path, case: &str, write: impl FnOnce(&Path)) -> PathBuf {
    let dir = root.join(case);
    std::fs::create_dir_all(&dir).expect("mkdir");
    write(&dir);
    dir
}

#[test]
fn bad_images_are_clear_errors_and_publish_nothing() {
    let work = tempfile::tempdir().expect("tempdir");
    let root = work.path();
    let layer = images::layer_tar(&[("a", b"a")]);
    let good = images::docker_archive_tar("amd64", "linux", std::slice::from_ref(&layer));
    let truncated = bad_dir(root, "truncated", |d| {
        images::docker_archive(
            &d.join("linux.amd64.tar.gz"),
            "amd64",
            "linux",
            std::slice::from_ref(&layer),
            true,
        );
        let bytes = std::fs::read(d.join("linux.amd64.tar.gz")).expect("read");
        std::fs::write(d.join("linux.amd64.tar.gz"), &bytes[..bytes.len() / 2]).expect("truncate");
    });
    let no_manifest = bad_dir(root, "no-manifest", |d| {
        std::fs::write(
            d.join("linux.amd64.tar"),
            images::layer_tar(&[("abc/layer.tar", &layer)]),
        )
        .expect("write");
    });
    let missing_layer = bad_dir(root, "missing-layer", |d| {
        let config = images::image_config("amd64", "linux", std::slice::from_ref(&layer));
        let manifest = br#"[{"Config":"c.json","RepoTags":[],"Layers":["missing/layer.tar"]}]"#;
        std::fs::write(
            d.join("linux.amd64.tar"),
            images::layer_tar(&[("c.json", &config), ("manifest.json", manifest)]),
        )
        .expect("write");
    });
    let wrong_arch = bad_dir(root, "wrong-arch", |d| {
        std::fs::write(d.join("linux.arm64.tar"), &good).expect("write")
    });
    let fine = bad_dir(root, "fine", |d| {
        std::fs::write(d.join("linux.amd64.tar"), &good).expect("write")
    });
    let cases: [(&PathBuf, &str, &[&str]); 5] = [
        (&truncated, "0.9", &["linux.amd64.tar.gz"]),
        (&no_manifest, "0.9", &["manifest.json"]),
        (&missing_layer, "0.9", &["missing/layer.tar"]),
        (&wrong_arch, "0.9", &["amd64", "arm64"]),
        (&fine, "0.9+feat", &["0.9+feat", "OCI tag"]),
    ];
    for (dir, tag, needles) in cases {
        let out = root.join("out");
        let output = alba()
            .args(["container", "push", "-t", &format!("albatros:{tag}")])
            .arg(dir)
            .arg(format!("file:{}", out.display()))
            .run_expect(2);
        let stderr = String::from_utf8_lossy(&output.stderr);
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{}: stderr should mention {needle:?}:\n{stderr}",
                dir.display()
            );
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!out.exists(), "{}: nothing is published", dir.display());
    }
}

fn failing_stream_script_is_a_clear_error(nix: NixVersion) {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("flake");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let flake = r#"{ outputs = { self }: {
      release = { name = "broken"; systems = [ "x86_64-linux" ]; container = { attr = "stream"; }; };
      stream = derivation { system = "x86_64-linux"; name = "stream-broken"; builder = "/bin/sh";
        args = [ "-c" "echo '#!/bin/sh' > $out; echo 'echo the-script-broke >&2; exit 7' >> $out; /bin/chmod +x $out" ]; };
    }; }"#;
    std::fs::write(dir.join("flake.nix"), flake).expect("write flake");
    let out = work.path().join("out");
    let output = nix
        .alba()
        .arg("--flake")
        .arg(&dir)
        .args(["release", "0.1", "--target"])
        .arg(format!("file:{}", out.display()))
        .run_expect(2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the-script-broke"), "{stderr}");
    assert!(!out.exists());
}
nix_tests!(failing_stream_script_is_a_clear_error);

/// A push where some blobs exist and others are new reports each blob with its own status
/// (uploads finish in any order), and bytes_sent counts exactly the new blobs.
#[test]
fn mixed_push_reports_each_blob_with_its_own_status() {
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("registry");
    let target = format!("file:{}", out.display());
    let first = work.path().join("first");
    let both = work.path().join("both");
    std::fs::create_dir_all(&first).expect("mkdir");
    std::fs::create_dir_all(&both).expect("mkdir");
    let amd64 = images::layer_tar(&[("bin/amd64", &[7u8; 300_000][..])]);
    let arm64 = images::layer_tar(&[("bin/arm64", b"small")]);
    images::docker_archive(
        &first.join("linux.amd64.tar"),
        "amd64",
        "linux",
        std::slice::from_ref(&amd64),
        false,
    );
    std::fs::copy(first.join("linux.amd64.tar"), both.join("linux.amd64.tar")).expect("copy");
    images::docker_archive(
        &both.join("linux.arm64.tar"),
        "arm64",
        "linux",
        &[arm64],
        false,
    );
    alba()
        .args(["container", "push", "-t", "mixed:1"])
        .arg(&first)
        .arg(&target)
        .run_expect(0);
    let existing: std::collections::BTreeSet<String> =
        std::fs::read_dir(out.join("v2/mixed/blobs"))
            .expect("blobs")
            .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
            .collect();

    let output = alba()
        .args([
            "--json",
            "--jobs",
            "4",
            "container",
            "push",
            "-t",
            "mixed:2",
        ])
        .arg(&both)
        .arg(&target)
        .run_expect(0);
    let report = report(&output);
    let mut new_bytes = 0;
    let mut blobs = 0;
    for object in report["targets"][0]["objects"].as_array().expect("objects") {
        let Some(digest) = object["key"]
            .as_str()
            .and_then(|k| k.strip_prefix("blobs/"))
        else {
            continue;
        };
        blobs += 1;
        let expected = if existing.contains(digest) {
            "exists"
        } else {
            "new"
        };
        assert_eq!(object["status"], expected, "{digest}: {report:#}");
        if expected == "new" {
            new_bytes += object["size"].as_u64().expect("size");
        }
    }
    assert_eq!(blobs, 4, "two configs and two layers");
    assert_eq!(
        report["bytes_sent"].as_u64(),
        Some(new_bytes + manifest_bytes(&report))
    );
}

/// Bytes of the manifests, index and lists a report says it wrote.
fn manifest_bytes(report: &Value) -> u64 {
    report["targets"][0]["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter(|o| !o["key"].as_str().unwrap_or("").starts_with("blobs/"))
        .filter(|o| o["status"] == "new" || o["status"] == "updated")
        .map(|o| o["size"].as_u64().unwrap_or(0))
        .sum()
}
