//! `alba container push … docker://` against a real registry (Debian's `docker-registry`),
//! checked with real clients (skopeo, containerd) and the registry's own access log.
//!
//! Faults are injected by a small TCP proxy of these tests ([`Proxy`]) that sits between alba
//! and the registry: it answers 503 or 429 to chosen requests, or kills the registry and cuts
//! every connection at a chosen request, and records when each request came.

use crate::common;
use crate::common::images;
use crate::nix_tests;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Containerd, NixVersion, Registry, index_platforms};

mod proxy;
use proxy::{Action, Proxy, is_upload};

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const USER: &str = "alice";
const PASSWORD: &str = "correct-horse-battery";

/// Four docker archives (gzip, as `buildImage` writes them) in the seed's DIR form: one
/// layer shared by all, one per platform. 4 configs + 5 layers = 9 distinct blobs.
fn image_dir(root: &Path) -> PathBuf {
    let dir = root.join("docker");
    std::fs::create_dir_all(&dir).expect("create the image DIR");
    let shared = images::layer_tar(&[("etc/os-release", b"ID=albatros\n")]);
    for (file, arch) in [
        ("linux.amd64", "amd64"),
        ("linux.386", "386"),
        ("linux.arm64", "arm64"),
        ("linux.arm.v6", "arm"),
    ] {
        let own = images::layer_tar(&[("bin/albatros", format!("binary for {arch}").as_bytes())]);
        images::docker_archive(
            &dir.join(format!("{file}.tar.gz")),
            arch,
            "linux",
            &[shared.clone(), own],
            true,
        );
    }
    dir
}

const DISTINCT_BLOBS: usize = 9;

/// `alba container push -t albatros:<tag> DIR TARGET` with extra global flags first.
fn push(dir: &Path, target: &str, tag: &str, flags: &[&str]) -> common::Alba {
    let mut alba = common::alba();
    alba.args(flags)
        .args(["container", "push", "-t", &format!("albatros:{tag}")])
        .arg(dir)
        .arg(target);
    alba
}

/// Runs `alba` with `stdin` piped in.
fn run_with_stdin(alba: &mut common::Alba, stdin: &str) -> Output {
    let mut child = alba
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("could not start alba");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes())
        .expect("write the password to alba");
    child.wait_with_output().expect("alba did not finish")
}

fn text(output: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn expected_platforms() -> BTreeSet<String> {
    ["linux/386", "linux/amd64", "linux/arm/v6", "linux/arm64"]
        .map(String::from)
        .into()
}

/// HTTP status of `GET /v2/albatros/manifests/<tag>` (with the registry's credentials).
fn tag_status(registry: &Registry, tag: &str) -> u16 {
    registry
        .get(&format!("/v2/albatros/manifests/{tag}"), INDEX)
        .0
}

/// Blob uploads the registry completed (`PUT …/blobs/uploads/… 201`).
fn completed_uploads(registry: &Registry) -> usize {
    registry
        .access_log()
        .iter()
        .filter(|l| l.method == "PUT" && l.path.contains("/blobs/uploads/") && l.status == 201)
        .count()
}

/// The release lands as one OCI index with four platforms that skopeo copies with verified
/// digests and containerd pulls; `ls` lists it; a second push sends no blob and no manifest.
#[test]
fn pushes_four_platforms_that_clients_pull_and_repeats_as_a_no_op() {
    if !common::skopeo_available() {
        return;
    }
    let Some(registry) = Registry::try_start() else {
        return;
    };
    let Some(containerd) = Containerd::try_start() else {
        return;
    };
    let work = tempfile::tempdir().expect("temp dir");
    let dir = image_dir(work.path());
    let target = registry.url("albatros");

    let out = push(&dir, &target, "0.9", &["--json"]).run_expect(0);
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("--json prints a report");
    let reported = report["targets"][0]["index_digest"]
        .as_str()
        .expect("the report names the index")
        .to_string();

    let reference = format!("docker://{}/albatros:0.9", registry.host());
    let raw = common::skopeo_inspect_raw(&reference, false);
    assert_eq!(
        common::sha256_hex(&raw),
        reported.trim_start_matches("sha256:"),
        "the tag holds the bytes alba digested"
    );
    let index: serde_json::Value = serde_json::from_slice(&raw).expect("index JSON");
    assert_eq!(index["mediaType"], INDEX);
    assert_eq!(index_platforms(&index), expected_platforms());

    let layout = work.path().join("oci");
    common::skopeo_copy_all(&reference, &layout);
    assert_eq!(
        common::verify_oci_layout(&layout),
        1 + 4 + DISTINCT_BLOBS,
        "index, 4 manifests, 9 blobs"
    );

    let pulled = containerd.pull(
        &format!("{}/albatros:0.9", registry.host()),
        "linux/386",
        true,
    );
    assert!(pulled.status.success(), "ctr pull: {}", text(&pulled));

    let ls = common::alba()
        .args(["container", "ls", "-t", "albatros", &target])
        .run_expect(0);
    let listed = String::from_utf8_lossy(&ls.stdout);
    assert!(
        listed.contains("0.9") && listed.contains(&reported) && listed.contains("linux/arm/v6"),
        "{listed}"
    );

    // Again, with a cold layer cache: every blob and manifest is found by HEAD, nothing is sent.
    let uploads = registry.blob_upload_requests();
    let manifest_puts = registry.count_requests("PUT", "/manifests/");
    let heads = registry.count_requests("HEAD", "/blobs/");
    assert_eq!(
        uploads,
        DISTINCT_BLOBS * 2,
        "one POST and one monolithic PUT per blob"
    );
    let again = push(&dir, &target, "0.9", &["--json"]).run_expect(0);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).expect("report");
    assert_eq!(
        registry.blob_upload_requests(),
        uploads,
        "no blob upload on the second push (registry access log)"
    );
    assert_eq!(
        registry.count_requests("PUT", "/manifests/"),
        manifest_puts,
        "no manifest rewritten"
    );
    assert_eq!(
        registry.count_requests("HEAD", "/blobs/"),
        heads + DISTINCT_BLOBS,
        "each blob checked once"
    );
    assert_eq!(again["bytes_sent"], 0);

    // A tag in the URL wins over -t.
    push(&dir, &format!("{target}:edge"), "0.9", &[]).run_expect(0);
    assert_eq!(tag_status(&registry, "edge"), 200);
    assert_eq!(
        registry.blob_upload_requests(),
        uploads,
        "a new tag of the same images sends no blob"
    );
    let ls = common::alba()
        .args(["--json", "container", "ls", "-t", "albatros", &target])
        .run_expect(0);
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).expect("ls --json");
    let tags: Vec<&str> = ls["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t["tag"].as_str())
        .collect();
    assert_eq!(tags, ["0.9", "edge"]);
}

/// base64 (standard alphabet, padded), for a Docker config's `auth` field.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// htpasswd (bcrypt) auth: credentials from a Docker config and from stdin work; a wrong
/// password or none fails with exit 1, says authentication failed, never prints the
/// password, and creates no tag.
#[test]
fn pushes_with_docker_config_or_stdin_credentials_and_refuses_wrong_ones() {
    assert_eq!(base64(b"alice:pw"), "YWxpY2U6cHc=");
    let Some(registry) = Registry::try_start_with_auth(USER, PASSWORD) else {
        return;
    };
    let work = tempfile::tempdir().expect("temp dir");
    let dir = image_dir(work.path());
    let target = registry.url("albatros");

    let config = work.path().join("docker-config");
    std::fs::create_dir(&config).expect("DOCKER_CONFIG dir");
    let auth = base64(format!("{USER}:{PASSWORD}").as_bytes());
    let json = format!(
        r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
        registry.host()
    );
    std::fs::write(config.join("config.json"), json).expect("config.json");
    push(&dir, &target, "0.9", &[])
        .env("DOCKER_CONFIG", &config)
        .run_expect(0);
    assert_eq!(
        tag_status(&registry, "0.9"),
        200,
        "pushed with the Docker config's credentials"
    );

    let mut alba = push(
        &dir,
        &target,
        "1.0",
        &["--registry-user", USER, "--registry-password-stdin"],
    );
    let out = run_with_stdin(&mut alba, &format!("{PASSWORD}\n"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        tag_status(&registry, "1.0"),
        200,
        "pushed with --registry-password-stdin"
    );

    let wrong = "wrong-password-xyzzy";
    let mut alba = push(
        &dir,
        &target,
        "2.0",
        &["--registry-user", USER, "--registry-password-stdin"],
    );
    let out = run_with_stdin(&mut alba, wrong);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("authentication failed"), "{shown}");
    assert!(
        shown.contains(&registry.host()),
        "names the registry: {shown}"
    );
    assert!(
        !shown.contains(wrong),
        "the password is never printed: {shown}"
    );
    assert!(
        !registry.log_text().contains(wrong),
        "nor sent anywhere the registry logs it"
    );
    assert_eq!(
        tag_status(&registry, "2.0"),
        404,
        "no tag after failed authentication"
    );

    let out = push(&dir, &target, "3.0", &[]).run_expect(1);
    let shown = text(&out);
    assert!(
        shown.contains("authentication failed") && shown.contains("no credentials"),
        "{shown}"
    );
    assert_eq!(tag_status(&registry, "3.0"), 404);

    // The flags only work together, and bad usage is exit 2.
    push(&dir, &target, "4.0", &["--registry-user", USER]).run_expect(2);
}

/// The registry dies after the first blob: alba fails naming the registry and the blob, the
/// restarted registry has no tag (write order), and a re-run completes without re-sending
/// the blob that made it.
#[test]
fn a_registry_killed_after_the_first_blob_leaves_no_tag_and_a_rerun_completes() {
    if !common::skopeo_available() {
        return;
    }
    let Some(registry) = Registry::try_start() else {
        return;
    };
    let port = registry.port;
    let registry = Arc::new(Mutex::new(registry));
    let work = tempfile::tempdir().expect("temp dir");
    let dir = image_dir(work.path());

    let mut finished = 0;
    let decide = move |line: &str| {
        if is_upload(line, "PUT") {
            finished += 1;
        }
        if is_upload(line, "POST") && finished >= 1 {
            Action::Cut
        } else {
            Action::Forward
        }
    };
    let victim = Arc::clone(&registry);
    let proxy = Proxy::start(port, decide, move || {
        victim.lock().unwrap_or_else(|e| e.into_inner()).kill()
    });

    // One upload at a time, so "after the first blob" is one exact point.
    let out = push(
        &dir,
        &proxy.url("albatros"),
        "0.9",
        &["--jobs", "1", "--retries", "5"],
    )
    .run_expect(1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("registry 127.0.0.1:{}", proxy.port)),
        "names the registry: {stderr}"
    );
    assert!(
        stderr.contains("blob sha256:") && stderr.contains("after 5 attempts"),
        "names the blob: {stderr}"
    );

    let mut registry = Arc::try_unwrap(registry)
        .ok()
        .expect("the proxy is done with the registry")
        .into_inner()
        .expect("lock");
    drop(proxy);
    registry.restart();
    assert_eq!(
        completed_uploads(&registry),
        1,
        "exactly one blob reached the registry"
    );
    assert_eq!(
        tag_status(&registry, "0.9"),
        404,
        "no tag before every blob and manifest is there"
    );
    assert_eq!(
        registry.count_requests("PUT", "/manifests/"),
        0,
        "no manifest written"
    );

    let target = registry.url("albatros");
    push(&dir, &target, "0.9", &[]).run_expect(0);
    assert_eq!(
        completed_uploads(&registry),
        DISTINCT_BLOBS,
        "the re-run sends only the missing blobs"
    );
    let reference = format!("docker://{}/albatros:0.9", registry.host());
    let layout = work.path().join("oci");
    common::skopeo_copy_all(&reference, &layout);
    assert_eq!(common::verify_oci_layout(&layout), 1 + 4 + DISTINCT_BLOBS);
}

/// 503s are retried after their `Retry-After` (a new upload session each time); a registry that keeps
/// answering 503 fails the push after its attempts (`--retries 5`) with the registry, blob and
/// status named.
#[test]
fn upload_503s_are_retried_then_reported() {
    let Some(registry) = Registry::try_start() else {
        return;
    };
    let work = tempfile::tempdir().expect("temp dir");
    let dir = image_dir(work.path());

    let mut refusals = 2;
    let flaky = Proxy::start(
        registry.port,
        move |line: &str| {
            if is_upload(line, "POST") && refusals > 0 {
                refusals -= 1;
                Action::Answer503
            } else {
                Action::Forward
            }
        },
        || {},
    );
    push(&dir, &flaky.url("albatros"), "0.9", &["--jobs", "1"]).run_expect(0);
    assert_eq!(completed_uploads(&registry), DISTINCT_BLOBS);
    assert_eq!(tag_status(&registry, "0.9"), 200);

    let broken = Proxy::start(
        registry.port,
        |line: &str| {
            if is_upload(line, "POST") {
                Action::Answer503
            } else {
                Action::Forward
            }
        },
        || {},
    );
    let work2 = tempfile::tempdir().expect("temp dir");
    let other = work2.path().join("docker");
    std::fs::create_dir_all(&other).expect("DIR");
    let layer = images::layer_tar(&[("bin/other", b"not pushed yet")]);
    images::docker_archive(
        &other.join("linux.amd64.tar.gz"),
        "amd64",
        "linux",
        &[layer],
        true,
    );
    let out = push(
        &other,
        &broken.url("albatros"),
        "1.0",
        &["--jobs", "1", "--retries", "5"],
    )
    .run_expect(1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("registry 127.0.0.1:{}", broken.port)),
        "{stderr}"
    );
    assert!(
        stderr.contains("upload of blob sha256:") && stderr.contains("after 5 attempts"),
        "{stderr}"
    );
    assert!(stderr.contains("status 503"), "{stderr}");
    assert_eq!(tag_status(&registry, "1.0"), 404);
}

/// A 429 with `Retry-After: 2` on the first upload session is waited out: the push succeeds,
/// and the next upload session starts at least 2 s after the refusal (the proxy's clock).
#[test]
fn a_429_upload_waits_for_its_retry_after() {
    let Some(registry) = Registry::try_start() else {
        return;
    };
    let work = tempfile::tempdir().expect("temp dir");
    let dir = image_dir(work.path());

    let mut refused = false;
    let proxy = Proxy::start(
        registry.port,
        move |line: &str| {
            if is_upload(line, "POST") && !refused {
                refused = true;
                Action::Answer429
            } else {
                Action::Forward
            }
        },
        || {},
    );
    push(&dir, &proxy.url("albatros"), "0.9", &["--jobs", "1"]).run_expect(0);
    assert_eq!(completed_uploads(&registry), DISTINCT_BLOBS);
    assert_eq!(tag_status(&registry, "0.9"), 200);

    let seen = proxy.seen();
    let refusal = seen
        .iter()
        .position(|r| r.action == Action::Answer429)
        .expect("the proxy refused one upload");
    let retry = seen[refusal + 1..]
        .iter()
        .find(|r| is_upload(&r.line, "POST"))
        .expect("a new upload session after the 429");
    let waited = retry.at.duration_since(seen[refusal].at);
    assert!(
        waited >= Duration::from_secs(2),
        "the retry came {waited:?} after the 429 that asked for 2 s"
    );
}

/// `alba release` pushes the flake's images to its `docker://` target beside a folder target.
fn release_pushes_to_a_registry_beside_a_folder(nix: NixVersion) {
    if !common::skopeo_available() {
        return;
    }
    let Some(registry) = Registry::try_start() else {
        return;
    };
    let work = tempfile::tempdir().expect("temp dir");
    let folder = work.path().join("site");
    let targets = [
        registry.url("albatros"),
        format!("file://{}", folder.display()),
    ];
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    let flake = common::fixtures::FlakeFixture::new("albatros", &common::fixtures::SYSTEMS)
        .no_static()
        .container(&targets)
        .salt("registry-release")
        .write(&work.path().join("flake"));
    nix.alba()
        .arg("--flake")
        .arg(&flake.dir)
        .args(["release", "0.9"])
        .run_expect(0);

    let raw =
        common::skopeo_inspect_raw(&format!("docker://{}/albatros:0.9", registry.host()), false);
    let index: serde_json::Value = serde_json::from_slice(&raw).expect("index JSON");
    assert_eq!(index_platforms(&index), expected_platforms());
    let in_folder = std::fs::read(folder.join("v2/albatros/manifests/0.9"))
        .expect("the folder target has the tag too");
    assert_eq!(in_folder, raw, "both targets hold the same index bytes");
}
nix_tests!(release_pushes_to_a_registry_beside_a_folder);
