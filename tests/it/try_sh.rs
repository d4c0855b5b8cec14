//! `./try.sh` works as written: it releases the committed example examples/hello to a folder
//! (static binaries and images), and a second run publishes nothing new.
//!
//! The test gives try.sh the alba under test (`ALBA=`) instead of a release build, and an
//! output folder of its own (`ALBA_TRY_OUT=`); everything else is what a user runs.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use common::fixtures;

/// The systems examples/hello builds.
const SYSTEMS: [&str; 3] = ["x86_64-linux", "aarch64-linux", "armv6l-linux"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What the example's `hello` derivation writes for `system` (its printf, byte for byte).
fn hello_script(system: &str) -> Vec<u8> {
    format!("#!/bin/sh\necho hello from {system}\n").into_bytes()
}

/// The docker-archive examples/hello/images/<system>.tar must hold: `bin/hello` = the script.
fn expected_image(system: &str, scratch: &Path) -> Vec<u8> {
    let path = scratch.join(format!("{system}.tar"));
    let files = BTreeMap::from([("hello".to_string(), hello_script(system))]);
    fixtures::docker_archive(&path, system, "hello", &files);
    std::fs::read(&path).expect("read the generated archive")
}

/// The committed images are what their description says; `ALBA_WRITE_EXAMPLE=1` rewrites them.
#[test]
fn committed_images_hold_the_example_binaries() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let images = repo().join("examples/hello/images");
    let write = std::env::var("ALBA_WRITE_EXAMPLE").is_ok_and(|v| v == "1");
    for system in SYSTEMS {
        let expected = expected_image(system, scratch.path());
        let committed = images.join(format!("{system}.tar"));
        if write {
            std::fs::write(&committed, &expected).expect("write the example image");
        }
        let actual =
            std::fs::read(&committed).unwrap_or_else(|e| panic!("{}: {e}", committed.display()));
        assert!(
            actual == expected,
            "{} differs from what tests/it/try_sh.rs generates; run ALBA_WRITE_EXAMPLE=1 cargo test --test it try_sh",
            committed.display()
        );
    }
}

/// Runs `./try.sh` with the alba under test and `out` as its output folder; returns stdout.
fn run_try(out: &Path, cache: &Path) -> String {
    let output = Command::new(repo().join("try.sh"))
        .current_dir(repo())
        .env("ALBA", env!("CARGO_BIN_EXE_alba"))
        .env("ALBA_TRY_OUT", out)
        .env("XDG_CACHE_HOME", cache)
        .env_remove("NIX_CONFIG")
        .output()
        .expect("run ./try.sh");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "./try.sh failed with {}\n--- stdout\n{stdout}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Every file under `dir`: relative path → (bytes, mtime).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).expect("list a published folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let meta = std::fs::metadata(&path).expect("stat");
            let relative = path.strip_prefix(dir).expect("under dir").to_path_buf();
            let bytes = std::fs::read(&path).expect("read a published file");
            files.insert(relative, (bytes, meta.modified().expect("mtime")));
        }
    }
    files
}

fn read_json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The df-dist-v1 documents and binaries of hello 0.1.
fn check_static(dist: &Path) {
    let root = dist.join("df-dist-v1/hello");
    assert_eq!(
        read_json(&root.join("index.json")),
        serde_json::json!({ "name": "hello", "tags": ["0.1"] })
    );
    let tag = read_json(&root.join("0.1/index.json"));
    let platforms: BTreeSet<String> = tag["flavors"]
        .as_array()
        .expect("flavors")
        .iter()
        .map(|f| {
            let p = &f["platform"];
            assert_eq!(f["resources"][0]["path"], "hello", "{f}");
            format!(
                "{}/{}",
                p["os"].as_str().unwrap_or("?"),
                p["architecture"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert_eq!(
        platforms,
        BTreeSet::from([
            "linux/amd64".into(),
            "linux/arm64".into(),
            "linux/arm".into()
        ])
    );
    for (system, path) in [
        ("x86_64-linux", "linux/amd64/hello"),
        ("aarch64-linux", "linux/arm64/hello"),
        ("armv6l-linux", "linux/arm/hello"),
    ] {
        let published = root.join("0.1").join(path);
        assert_eq!(
            std::fs::read(&published).unwrap_or_else(|e| panic!("{}: {e}", published.display())),
            hello_script(system)
        );
    }
}

/// The image, pulled by skopeo through nginx serving the folder with alba's fragment.
fn check_image(dist: &Path, scratch: &Path) {
    let tags = read_json(&dist.join("v2/hello/tags/list"));
    assert_eq!(
        tags,
        serde_json::json!({ "name": "hello", "tags": ["0.1"] })
    );
    // 3 layers and 3 configs at least, each named by the digest of its bytes.
    let blobs = std::fs::read_dir(dist.join("v2/hello/blobs")).expect("the image's blobs");
    let mut count = 0;
    for entry in blobs {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let bytes = std::fs::read(&path).expect("read a blob");
        assert_eq!(name, format!("sha256:{}", common::sha256_hex(&bytes)));
        count += 1;
    }
    assert!(count >= 6, "{count} blobs");
    if !common::skopeo_available() {
        return;
    }
    let Some(nginx) = common::Nginx::try_start(&dist.join(".alba/nginx.conf")) else {
        return;
    };
    let oci = scratch.join("oci");
    let reference = format!("docker://127.0.0.1:{}/hello:0.1", nginx.port);
    common::skopeo_copy_all(&reference, &oci);
    assert!(
        common::verify_oci_layout(&oci) >= 7,
        "index, 3 manifests, configs, layers"
    );
    let index = common::skopeo_inspect_raw(&reference, false);
    let index: serde_json::Value = serde_json::from_slice(&index).expect("the index is JSON");
    let platforms = common::index_platforms(&index);
    for platform in ["linux/amd64", "linux/arm64", "linux/arm/v6"] {
        assert!(
            platforms.contains(platform),
            "{platform} missing from {platforms:?}"
        );
    }
}

#[test]
fn try_sh_releases_the_example_and_a_second_run_changes_nothing() {
    if !common::nix_available() {
        return;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let out = scratch.path().join("out");
    let cache = scratch.path().join("cache");
    let stdout = run_try(&out, &cache);
    let dist = out.join("dist");
    for line in [
        format!("static ls -t hello file:{}", dist.display()),
        format!("container ls -t hello file:{}", dist.display()),
        format!("include {}/.alba/nginx.conf;", dist.display()),
        "the download page is then http://localhost:8080/df-dist-v1/hello/".to_string(),
    ] {
        assert!(
            stdout.contains(&line),
            "the summary lacks {line:?}:\n{stdout}"
        );
    }
    check_static(&dist);
    check_image(&dist, scratch.path());
    let page = std::fs::read_to_string(dist.join("df-dist-v1/hello/index.html")).expect("page");
    assert!(page.contains("<h1>hello</h1>"), "the download page: {page}");

    let before = snapshot(&dist);
    run_try(&out, &cache);
    let after = snapshot(&dist);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "a second run added or removed files"
    );
    for (path, (bytes, mtime)) in &before {
        let (bytes2, mtime2) = &after[path];
        assert!(
            bytes == bytes2,
            "{} changed on the second run",
            path.display()
        );
        // The nginx fragment is regenerated at every push (same bytes); data is not rewritten.
        if !path.starts_with(".alba") {
            assert_eq!(
                mtime,
                mtime2,
                "{} was rewritten on the second run",
                path.display()
            );
        }
    }
    let example = Command::new("git")
        .args(["status", "--porcelain", "--ignored", "--", "examples/hello"])
        .current_dir(repo())
        .output()
        .expect("git status");
    let changes = String::from_utf8_lossy(&example.stdout);
    assert!(
        !changes.lines().any(|l| l.starts_with("!!")),
        "try.sh wrote into examples/hello: {changes}"
    );
}

/// README's first section starts with the two commands: try.sh, then tests/run.sh.
#[test]
fn readme_try_it_starts_with_try_sh_and_run_sh() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("read README.md");
    let section = readme.split("\n## ").nth(1).expect("a first section");
    assert!(
        section.starts_with("Try it\n"),
        "the first section is not Try it"
    );
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a shell block");
    let commands: Vec<&str> = block
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(commands, ["./try.sh", "tests/run.sh"]);
}

/// `nix flake check` accepts the example (images live under legacyPackages for that reason).
#[test]
fn the_example_flake_checks() {
    if !common::nix_available() {
        return;
    }
    let example = repo().join("examples/hello");
    let mut command = common::nix::nix();
    command
        .args(["flake", "check"])
        .arg(format!("path:{}", example.display()));
    common::run_ok(&mut command);
}
