//! Static binaries end to end: a fixture flake built by real Nix, published by alba to a
//! real Garage node and to a folder, read back through Garage's website endpoint.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::fixtures::{self, Expected, FlakeFixture, SYSTEMS};
use common::{Garage, alba, nix_available};
use serde_json::{Value, json};

/// Starts Garage with a `download` bucket, or returns `None` (SKIP outside CI).
fn garage_and_nix() -> Option<Garage> {
    if !nix_available() {
        common::fail_under_ci("Nix (nix-bin)", "apt-get install nix-bin");
        return None;
    }
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
    assert_eq!(doc, expected_tag_document(expected));
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
    assert_eq!(tag_doc, expected_tag_document(expected));
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

#[test]
fn release_to_garage_and_folder_then_second_tag_and_rerun() {
    let Some(garage) = garage_and_nix() else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("out");
    let s3 = garage.s3_url("download");
    let folder = format!("file:{}", out.display());
    let flake = FlakeFixture::new("albatros", &SYSTEMS)
        .static_targets(&[&s3, &folder])
        .write(&work.path().join("flake"));

    let output = alba()
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
    alba()
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
    let output = alba()
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
    let output = alba()
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

#[test]
fn folder_packages_publish_their_bin_files() {
    let Some(garage) = garage_and_nix() else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let flake = FlakeFixture::new("tool", &["x86_64-linux", "aarch64-linux"])
        .folder()
        .salt("folder")
        .static_targets(&[&garage.s3_url("download")])
        .write(&work.path().join("flake"));
    alba()
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
    assert_eq!(objects.len(), 3 + 2, "three binaries and two documents");
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
    assert_eq!(statuses, ["exists"; 5]);
}

/// Runs alba expecting `code`, and checks stderr names the problem; returns stderr.
fn expect_error(alba: &mut common::Alba, code: i32, needles: &[&str]) -> String {
    let output = alba.run_expect(code);
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "stderr should mention {needle:?}:\n{stderr}"
        );
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn bad_inputs_are_clear_errors_and_write_nothing() {
    let Some(garage) = garage_and_nix() else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let s3 = garage.s3_url("download");
    let flake = FlakeFixture::new("albatros", &["x86_64-linux"])
        .static_targets(&[&s3])
        .write(&work.path().join("flake"));
    let release = |alba: &mut common::Alba| {
        alba.envs(garage.envs()).arg("--flake").arg(&flake.dir);
    };

    // Nix missing.
    let mut cmd = alba();
    release(&mut cmd);
    cmd.env("PATH", "/nonexistent").args(["release", "0.9"]);
    expect_error(&mut cmd, 2, &["nix was not found", "--nix"]);
    let mut cmd = alba();
    release(&mut cmd);
    cmd.args(["--nix", "/nonexistent/nix", "release", "0.9"]);
    expect_error(&mut cmd, 2, &["/nonexistent/nix"]);

    // A tag with '/', '..' or spaces.
    for tag in ["a/b", "..", "0 9"] {
        let mut cmd = alba();
        release(&mut cmd);
        cmd.args(["release", tag]);
        expect_error(&mut cmd, 2, &["is not valid"]);
    }

    // A malformed target URL.
    let mut cmd = alba();
    release(&mut cmd);
    cmd.args(["release", "0.9", "--target", "s3://download?endpont=x"]);
    expect_error(&mut cmd, 2, &["endpont", "known:"]);

    // An unreachable endpoint: a closed port.
    let closed = format!(
        "s3://download?endpoint=http://127.0.0.1:{}&region=garage&s3ForcePathStyle=true",
        common::free_port()
    );
    let mut cmd = alba();
    release(&mut cmd);
    cmd.args(["release", "0.9", "--target", &closed]);
    expect_error(&mut cmd, 1, &["could not reach the endpoint"]);

    // Wrong credentials: the secret never appears.
    let mut cmd = alba();
    release(&mut cmd);
    cmd.env("AWS_SECRET_ACCESS_KEY", "wrong-secret-0123456789")
        .args(["release", "0.9"]);
    let stderr = expect_error(&mut cmd, 1, &["access denied", "AWS_ACCESS_KEY_ID"]);
    assert!(
        !stderr.contains("wrong-secret-0123456789"),
        "the secret leaked:\n{stderr}"
    );

    // A DIR that is not in the df/<os>/<arch>/<file> layout.
    let bad_dir = work.path().join("bad-df");
    std::fs::create_dir_all(bad_dir.join("linux")).expect("mkdir");
    std::fs::write(bad_dir.join("linux/albatros"), b"x").expect("write");
    let mut cmd = alba();
    cmd.envs(garage.envs())
        .args(["static", "push", "-t", "albatros:0.9"])
        .arg(&bad_dir)
        .arg(&s3);
    expect_error(&mut cmd, 2, &["df/linux/amd64/albatros"]);

    // A name with a slash.
    let mut cmd = alba();
    cmd.envs(garage.envs())
        .args(["static", "push", "-t", "alba/tros:0.9"])
        .arg(&bad_dir)
        .arg(&s3);
    expect_error(&mut cmd, 2, &["alba/tros"]);

    assert!(
        garage.list_keys("download").is_empty(),
        "nothing was written: {:?}",
        garage.list_keys("download")
    );
}

#[test]
fn bad_release_descriptions_and_failing_builds() {
    if !nix_available() {
        common::fail_under_ci("Nix (nix-bin)", "apt-get install nix-bin");
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("out");
    let cases: BTreeMap<&str, (&str, &[&str])> = BTreeMap::from([
        (
            "unknown-key",
            (
                r#"release = { name = "a"; systems = [ "x86_64-linux" ]; static = { tagets = [ ]; }; };"#,
                &["tagets"][..],
            ),
        ),
        (
            "wrong-type",
            (
                r#"release = { name = "a"; systems = "x86_64-linux"; static = { }; };"#,
                &["invalid type"][..],
            ),
        ),
        (
            "failing-build",
            (
                r#"release = { name = "a"; systems = [ "x86_64-linux" ]; static = { }; };
                   packages.x86_64-linux.a = derivation { system = "x86_64-linux"; name = "a"; builder = "/bin/sh"; args = [ "-c" "echo the-build-broke >&2; exit 3" ]; };"#,
                &["nix build failed", "the-build-broke"][..],
            ),
        ),
        (
            "missing-attr",
            (
                r#"release = { name = "a"; systems = [ "x86_64-linux" ]; static = { }; };"#,
                &["packages.x86_64-linux.a"][..],
            ),
        ),
    ]);
    for (case, (body, needles)) in cases {
        let dir = work.path().join(case);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("flake.nix"),
            format!("{{ outputs = {{ self }}: {{ {body} }}; }}"),
        )
        .expect("write");
        let mut cmd = alba();
        cmd.arg("--flake")
            .arg(&dir)
            .args(["release", "0.9", "--target"])
            .arg(format!("file:{}", out.display()));
        expect_error(&mut cmd, 2, needles);
    }
    assert!(!out.exists(), "nothing was written");
}

#[test]
fn build_prints_the_artifact_set_matched_by_drv_path() {
    if !nix_available() {
        common::fail_under_ci("Nix (nix-bin)", "apt-get install nix-bin");
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let flake = FlakeFixture::new("albatros", &SYSTEMS)
        .salt("build")
        .write(&work.path().join("flake"));
    let output = alba()
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
        let bytes = std::fs::read(path).expect("read the store path");
        assert!(
            bytes == flake.expected[system]["albatros"],
            "{system}: {path} holds another platform's bytes"
        );
        let (os, arch, variant) = fixtures::platform(system);
        assert_eq!(artifact["platform"]["os"], os);
        assert_eq!(artifact["platform"]["architecture"], arch);
        assert_eq!(artifact["platform"]["variant"].as_str(), variant);
    }
    let plain = alba()
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
