//! Static binaries end to end: a fixture flake built by real Nix, published by alba to a
//! real Garage node and to a folder, read back through Garage's website endpoint.

use crate::common;
use crate::nix_tests;

use std::collections::BTreeMap;
use std::path::Path;

use common::fixtures::{self, Expected, FlakeFixture, SYSTEMS};
use common::{Garage, NixVersion, alba, nix_available};
use serde_json::{Value, json};

mod errors;
mod git;

/// Starts Garage with a `download` bucket, or returns `None` (SKIP with `ALBA_ALLOW_SKIP=1`).
fn garage_and_nix() -> Option<Garage> {
    if !nix_available() {
        return None;
    }
    download_garage()
}

/// Starts Garage with a `download` bucket, or returns `None` (SKIP with `ALBA_ALLOW_SKIP=1`); for tests
/// run per Nix version (`nix_tests!` checks that Nix).
fn download_garage() -> Option<Garage> {
    let garage = Garage::try_start()?;
    garage.create_bucket("download");
    Some(garage)
}

/// The df-dist-v1 path of a platform: the Go tool's `<os>/<arch>`, arm included
/// (`linux/arm`), as download pages build it.
fn platform_path(system: &str) -> String {
    let (os, arch, _) = fixtures::platform(system);
    format!("{os}/{arch}")
}

/// A tag document without the fields alba adds beside the Go tool's (checksums, signature,
/// SBOMs), after checking that they name files of the tag as DESIGN.md lays them out.
fn without_additions(doc: &Value) -> Value {
    let mut doc = doc.clone();
    assert_eq!(doc["checksums"], "SHA256SUMS", "{doc}");
    let top = doc.as_object_mut().expect("a tag document is an object");
    top.remove("checksums");
    top.remove("signature");
    // What the download pages show: the flake's description (and, signed, the public key).
    if let Some(description) = top.remove("description") {
        assert_eq!(description, "alba test fixture");
    }
    top.remove("minisign_public_key");
    for flavor in doc["flavors"].as_array_mut().into_iter().flatten() {
        let file = flavor["resources"][0]["path"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let (os, arch) = (
            &flavor["platform"]["os"],
            &flavor["platform"]["architecture"],
        );
        let expected_sbom = format!(
            "{}/{}/{file}.cdx.json",
            os.as_str().unwrap_or(""),
            arch.as_str().unwrap_or("")
        );
        if let Some(sbom) = flavor.as_object_mut().and_then(|f| f.remove("sbom")) {
            assert_eq!(sbom, expected_sbom.as_str());
        }
    }
    doc
}

/// The tag document DESIGN.md specifies for `expected`, flavors in platform order.
fn expected_tag_document(expected: &Expected) -> Value {
    let mut flavors: Vec<(String, Value)> = expected
        .iter()
        .map(|(system, files)| {
            let (os, arch, variant) = fixtures::platform(system);
            let mut platform = json!({ "architecture": arch, "os": os });
            if let Some(v) = variant {
                platform["variant"] = json!(v);
            }
            let resources: Vec<Value> = files
                .iter()
                .map(|(name, bytes)| json!({ "path": name, "size": bytes.len(), "sha256": common::sha256_hex(bytes) }))
                .collect();
            (platform_path(system), json!({ "resources": resources, "platform": platform }))
        })
        .collect();
    flavors.sort_by(|a, b| a.0.cmp(&b.0));
    json!({ "flavors": flavors.into_iter().map(|f| f.1).collect::<Vec<_>>() })
}

/// Checks every binary and both documents through the website endpoint of `bucket`.
fn check_website(
    garage: &Garage,
    bucket: &str,
    name: &str,
    tag: &str,
    expected: &Expected,
    tags: &[&str],
) {
    for (system, files) in expected {
        for (file, bytes) in files {
            let path = format!("/df-dist-v1/{name}/{tag}/{}/{file}", platform_path(system));
            let (status, headers, body) = garage.web_get(bucket, &path);
            assert_eq!(status, 200, "GET {path}");
            assert!(
                &body == bytes,
                "{path}: the bytes differ from the store path's ({system})"
            );
            assert_eq!(
                headers["content-type"], "application/octet-stream",
                "{path}"
            );
        }
    }
    let (status, headers, body) = garage.web_get(bucket, &format!("/df-dist-v1/{name}/{tag}"));
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    let doc: Value = serde_json::from_slice(&body).expect("tag document is JSON");
    assert_eq!(without_additions(&doc), expected_tag_document(expected));
    let (status, headers, body) = garage.web_get(bucket, &format!("/df-dist-v1/{name}"));
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        String::from_utf8_lossy(&body),
        json!({ "name": name, "tags": tags }).to_string()
    );
}

/// Checks the folder target: binaries, and documents stored as `K/index.json`.
fn check_folder(root: &Path, name: &str, tag: &str, expected: &Expected, tags: &[&str]) {
    for (system, files) in expected {
        for (file, bytes) in files {
            let path = root.join(format!(
                "df-dist-v1/{name}/{tag}/{}/{file}",
                platform_path(system)
            ));
            assert!(
                &std::fs::read(&path).expect("binary in folder") == bytes,
                "{}",
                path.display()
            );
        }
    }
    let tag_doc: Value = serde_json::from_slice(
        &std::fs::read(root.join(format!("df-dist-v1/{name}/{tag}/index.json")))
            .expect("tag document"),
    )
    .expect("JSON");
    assert_eq!(without_additions(&tag_doc), expected_tag_document(expected));
    let name_doc = std::fs::read_to_string(root.join(format!("df-dist-v1/{name}/index.json")))
        .expect("name document");
    assert_eq!(name_doc, json!({ "name": name, "tags": tags }).to_string());
    assert!(
        root.join(".alba/nginx.conf").is_file(),
        "the nginx fragment is written"
    );
}

fn json_report(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "--json printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn release_to_garage_and_folder_then_second_tag_and_rerun(nix: NixVersion) {
    let Some(garage) = download_garage() else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("out");
    let s3 = garage.s3_url("download");
    let folder = format!("file:{}", out.display());
    let flake = FlakeFixture::new("albatros", &SYSTEMS)
        .static_targets(&[&s3, &folder])
        .write(&work.path().join("flake"));

    let output = nix
        .alba()
        .envs(garage.envs())
        .args(["--json", "--flake"])
        .arg(&flake.dir)
        .args(["release", "0.9"])
        .run_expect(0);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("-> df-dist-v1/albatros/0.9/linux/amd64/albatros"),
        "{stderr}"
    );
    assert!(stderr.contains("✅ push succeeded"), "{stderr}");
    let report = json_report(&output);
    assert!(report["bytes_sent"].as_u64().unwrap_or(0) > 0);
    check_website(
        &garage,
        "download",
        "albatros",
        "0.9",
        &flake.expected,
        &["0.9"],
    );
    check_folder(&out, "albatros", "0.9", &flake.expected, &["0.9"]);

    // Another tag keeps the first in the name document, newest first.
    nix.alba()
        .envs(garage.envs())
        .arg("--flake")
        .arg(&flake.dir)
        .args(["release", "1.0"])
        .run_expect(0);
    check_website(
        &garage,
        "download",
        "albatros",
        "1.0",
        &flake.expected,
        &["1.0", "0.9"],
    );
    check_website(
        &garage,
        "download",
        "albatros",
        "0.9",
        &flake.expected,
        &["1.0", "0.9"],
    );
    check_folder(&out, "albatros", "1.0", &flake.expected, &["1.0", "0.9"]);

    // The same release again uploads nothing: the report says 0 bytes, and Garage's objects
    // keep their Last-Modified (checked independently of alba's word).
    let key = "df-dist-v1/albatros/1.0/linux/amd64/albatros";
    let before = garage.s3().head("download", key).1["last-modified"].clone();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let output = nix
        .alba()
        .envs(garage.envs())
        .args(["--json", "--flake"])
        .arg(&flake.dir)
        .args(["release", "1.0"])
        .run_expect(0);
    assert_eq!(
        json_report(&output)["bytes_sent"],
        0,
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(garage.s3().head("download", key).1["last-modified"], before);
    for name_key in ["df-dist-v1/albatros", "df-dist-v1/albatros/1.0"] {
        let (status, _, _) = garage.s3().head("download", name_key);
        assert_eq!(status, 200);
    }

    // static ls lists both tags with platforms and sizes.
    let output = nix
        .alba()
        .envs(garage.envs())
        .args(["static", "ls", "-t", "albatros"])
        .arg(&s3)
        .run_expect(0);
    let listing = String::from_utf8_lossy(&output.stdout);
    let first = listing.find("1.0").expect("1.0 listed");
    let second = listing.find("0.9").expect("0.9 listed");
    assert!(first < second, "newest first:\n{listing}");
    assert!(listing.contains("linux/arm/v6"), "{listing}");
    let size = flake.expected["x86_64-linux"]["albatros"].len();
    assert!(listing.contains(&format!("{size} B")), "{listing}");
}
nix_tests!(release_to_garage_and_folder_then_second_tag_and_rerun);

fn folder_packages_publish_their_bin_files(nix: NixVersion) {
    let Some(garage) = download_garage() else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let flake = FlakeFixture::new("tool", &["x86_64-linux", "aarch64-linux"])
        .folder()
        .salt("folder")
        .static_targets(&[&garage.s3_url("download")])
        .write(&work.path().join("flake"));
    nix.alba()
        .envs(garage.envs())
        .arg("--flake")
        .arg(&flake.dir)
        .args(["release", "2.0"])
        .run_expect(0);
    check_website(
        &garage,
        "download",
        "tool",
        "2.0",
        &flake.expected,
        &["2.0"],
    );
    assert_eq!(
        flake.expected["x86_64-linux"].len(),
        2,
        "bin/tool and bin/tool-helper"
    );
}
nix_tests!(folder_packages_publish_their_bin_files);

#[test]
fn seed_dir_form_and_dry_run() {
    let Some(garage) = garage_and_nix() else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let df = work.path().join("df");
    let expected = fixtures::static_dir(
        &df,
        "albatros",
        &["x86_64-linux", "i686-linux", "aarch64-linux"],
    );
    let s3 = garage.s3_url("download");

    // --dry-run lists every object as new and writes nothing.
    let output = alba()
        .envs(garage.envs())
        .args([
            "--json",
            "static",
            "push",
            "--dry-run",
            "-t",
            "albatros:0.9",
        ])
        .arg(&df)
        .arg(&s3)
        .run_expect(0);
    let report = json_report(&output);
    let objects = report["targets"][0]["objects"]
        .as_array()
        .expect("objects")
        .clone();
    assert_eq!(
        objects.len(),
        3 + 1 + 2 + 4,
        "three binaries, SHA256SUMS, two documents and the site (tag page, name page, install.sh, root page)"
    );
    assert!(objects.iter().all(|o| o["status"] == "new"), "{objects:?}");
    assert!(
        garage.list_keys("download").is_empty(),
        "a dry run writes nothing"
    );

    alba()
        .envs(garage.envs())
        .args(["static", "push", "-t", "albatros:0.9"])
        .arg(&df)
        .arg(&s3)
        .run_expect(0);
    check_website(&garage, "download", "albatros", "0.9", &expected, &["0.9"]);

    // A dry run against a target that holds it says "exists" for every binary.
    let output = alba()
        .envs(garage.envs())
        .args([
            "--json",
            "static",
            "push",
            "--dry-run",
            "-t",
            "albatros:0.9",
        ])
        .arg(&df)
        .arg(&s3)
        .run_expect(0);
    let report = json_report(&output);
    let statuses: Vec<&str> = report["targets"][0]["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| o["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(statuses, ["exists"; 10]);
}

fn build_prints_the_artifact_set_matched_by_drv_path(nix: NixVersion) {
    let work = tempfile::tempdir().expect("tempdir");
    let flake = FlakeFixture::new("albatros", &SYSTEMS)
        .salt("build")
        .write(&work.path().join("flake"));
    let output = nix
        .alba()
        .args(["--json", "--flake"])
        .arg(&flake.dir)
        .arg("build")
        .run_expect(0);
    let set = json_report(&output);
    assert_eq!(set["name"], "albatros");
    let artifacts = set["artifacts"].as_array().expect("artifacts");
    assert_eq!(artifacts.len(), SYSTEMS.len());
    for artifact in artifacts {
        let system = artifact["system"].as_str().expect("system");
        let path = artifact["path"].as_str().expect("store path");
        assert!(path.starts_with("/nix/store/"), "{path}");
        // Each platform's fixture has different bytes: a position mix-up would show here.
        let bytes = std::fs::read(nix.host_path(path)).expect("read the store path");
        assert!(
            bytes == flake.expected[system]["albatros"],
            "{system}: {path} holds another platform's bytes"
        );
        let (os, arch, variant) = fixtures::platform(system);
        assert_eq!(artifact["platform"]["os"], os);
        assert_eq!(artifact["platform"]["architecture"], arch);
        assert_eq!(artifact["platform"]["variant"].as_str(), variant);
    }
    let plain = nix
        .alba()
        .arg("--flake")
        .arg(&flake.dir)
        .arg("build")
        .run_expect(0);
    let text = String::from_utf8_lossy(&plain.stdout);
    assert!(
        text.contains("linux/arm/v6") && text.contains("/nix/store/"),
        "{text}"
    );
}
nix_tests!(build_prints_the_artifact_set_matched_by_drv_path);

/// `static push` without DIR builds the flake's release and publishes it to the TARGET given.
fn static_push_without_dir_builds_the_flake(nix: NixVersion) {
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("out");
    let flake = FlakeFixture::new("albatros", &["x86_64-linux", "armv6l-linux"])
        .salt("push-flake")
        .write(&work.path().join("flake"));
    nix.alba()
        .arg("--flake")
        .arg(&flake.dir)
        .args(["static", "push", "-t", "albatros:0.9"])
        .arg(format!("file:{}", out.display()))
        .run_expect(0);
    check_folder(&out, "albatros", "0.9", &flake.expected, &["0.9"]);
}
nix_tests!(static_push_without_dir_builds_the_flake);

/// Writes `bytes` as `df/<rel>` (the seed's DIR form).
fn dir_file(df: &Path, rel: &str, bytes: &[u8]) {
    let path = df.join(rel);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(&path, bytes).expect("write");
}

/// Reads a tag document through the website and checks that a download page building
/// `<tag>/<os>/<arch>/<path>` (as the Go tool's pages do) gets every binary; returns
/// `os/arch[/variant] path` per flavor.
fn flavors_as_a_page_reads_them(
    garage: &Garage,
    tag: &str,
    bytes: &BTreeMap<&str, Vec<u8>>,
) -> Vec<String> {
    let (status, _, body) = garage.web_get("download", &format!("/df-dist-v1/albatros/{tag}"));
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_slice(&body).expect("tag document is JSON");
    let mut seen = Vec::new();
    for flavor in doc["flavors"].as_array().expect("flavors") {
        let p = &flavor["platform"];
        let (os, arch) = (
            p["os"].as_str().expect("os"),
            p["architecture"].as_str().expect("arch"),
        );
        let path = flavor["resources"][0]["path"].as_str().expect("path");
        let url = format!("/df-dist-v1/albatros/{tag}/{os}/{arch}/{path}");
        let (status, _, body) = garage.web_get("download", &url);
        assert_eq!(status, 200, "GET {url}");
        let platform = match p["variant"].as_str() {
            Some(v) => format!("{os}/{arch}/{v}"),
            None => format!("{os}/{arch}"),
        };
        assert_eq!(&body, &bytes[platform.as_str()], "{url}");
        seen.push(format!("{platform} {path}"));
    }
    seen
}

#[test]
fn arm_binaries_sit_at_the_go_tools_paths_with_variant_levels_only_on_a_clash() {
    let Some(garage) = garage_and_nix() else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let s3 = garage.s3_url("download");
    let bytes: BTreeMap<&str, Vec<u8>> = [
        ("linux/amd64", b"amd64 binary".to_vec()),
        ("linux/arm", b"arm binary (seed form)".to_vec()),
        ("linux/arm/v6", b"armv6l binary".to_vec()),
        ("linux/arm/v7", b"armv7l binary".to_vec()),
    ]
    .into();
    let push = |df: &Path, tag: &str| {
        alba()
            .envs(garage.envs())
            .args(["static", "push", "-t", &format!("albatros:{tag}")])
            .arg(df)
            .arg(&s3)
            .run_expect(0);
    };

    // The seed's `df/linux/arm/albatros` publishes at the Go tool's `linux/arm/albatros`.
    let seed = work.path().join("seed");
    dir_file(&seed, "linux/amd64/albatros", &bytes["linux/amd64"]);
    dir_file(&seed, "linux/arm/albatros", &bytes["linux/arm"]);
    push(&seed, "1.0");
    assert_eq!(
        flavors_as_a_page_reads_them(&garage, "1.0", &bytes),
        ["linux/amd64 albatros", "linux/arm albatros"]
    );

    // One arm flavor with a variant: still `linux/arm/albatros`, the variant an extra field.
    let one = work.path().join("one");
    dir_file(&one, "linux/amd64/albatros", &bytes["linux/amd64"]);
    dir_file(&one, "linux/arm/v6/albatros", &bytes["linux/arm/v6"]);
    push(&one, "1.1");
    assert_eq!(
        flavors_as_a_page_reads_them(&garage, "1.1", &bytes),
        ["linux/amd64 albatros", "linux/arm/v6 albatros"]
    );
    let (status, _, body) =
        garage.web_get("download", "/df-dist-v1/albatros/1.1/linux/arm/albatros");
    assert_eq!((status, body), (200, bytes["linux/arm/v6"].clone()));

    // armv6l and armv7l together share linux/arm: the variant becomes a level of their paths.
    let clash = work.path().join("clash");
    dir_file(&clash, "linux/amd64/albatros", &bytes["linux/amd64"]);
    dir_file(&clash, "linux/arm/v6/albatros", &bytes["linux/arm/v6"]);
    dir_file(&clash, "linux/arm/v7/albatros", &bytes["linux/arm/v7"]);
    push(&clash, "2.0");
    assert_eq!(
        flavors_as_a_page_reads_them(&garage, "2.0", &bytes),
        [
            "linux/amd64 albatros",
            "linux/arm/v6 v6/albatros",
            "linux/arm/v7 v7/albatros"
        ]
    );

    // ls shows both shapes; rm removes the variant levels with their tag.
    let listing = alba()
        .envs(garage.envs())
        .args(["static", "ls", "-t", "albatros", &s3])
        .run_expect(0);
    let listing = String::from_utf8_lossy(&listing.stdout).to_string();
    assert!(
        listing.contains("linux/arm/v7") && listing.contains("1.0"),
        "{listing}"
    );
    alba()
        .envs(garage.envs())
        .args(["static", "rm", "-t", "albatros:2.0", &s3])
        .run_expect(0);
    let left: Vec<String> = garage
        .list_keys("download")
        .into_iter()
        .filter(|k| k.contains("/2.0"))
        .collect();
    assert!(left.is_empty(), "rm left {left:?}");
}
