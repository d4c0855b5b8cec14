//! `alba verify`: a good target passes; an object overwritten with other bytes (through the S3
//! API or in a folder) fails and is named; `--web` names Garage's website mistakes with their
//! fix; `--sign-pub` with the wrong key fails. Against real Garage, Debian's docker-registry and
//! folders, with what `alba static push`, `alba container push` and `alba release` published.

#![allow(dead_code)]

use crate::common;

use std::path::Path;

use common::fixtures::{self, FlakeFixture};
use common::{Garage, Registry, alba, nix_available};
use serde_json::Value;

/// Two platforms keep the runs short; arm variants are covered by the publish tests.
const SYSTEMS: [&str; 2] = ["x86_64-linux", "aarch64-linux"];
const AMD64: &str = "df-dist-v1/albatros/0.9/linux/amd64/albatros";

/// Publishes albatros:0.9 from staging folders, static and container, to `target`.
fn publish_dirs(work: &Path, target: &str, envs: &[(String, String)]) {
    let (df, docker) = (work.join("df"), work.join("docker"));
    fixtures::static_dir(&df, "albatros", &SYSTEMS);
    fixtures::docker_dir(&docker, "albatros", &SYSTEMS);
    for (kind, dir) in [("static", &df), ("container", &docker)] {
        alba()
            .envs(envs.iter().cloned())
            .args([kind, "push", "-t", "albatros:0.9"])
            .arg(dir)
            .arg(target)
            .run_expect(0);
    }
}

/// Runs `alba verify ARGS`; returns exit code and stdout + stderr.
fn verify(envs: &[(String, String)], args: &[&str]) -> (i32, String) {
    let output = alba()
        .envs(envs.iter().cloned())
        .arg("verify")
        .args(args)
        .run();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), said)
}

/// Runs `alba verify --json ARGS`, expecting exit `code`; returns the report.
fn verify_json(envs: &[(String, String)], args: &[&str], code: i32) -> Value {
    let output = alba()
        .envs(envs.iter().cloned())
        .args(["--json", "verify"])
        .args(args)
        .run_expect(code);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "--json printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The objects a report names as problems.
fn problem_objects(report: &Value) -> Vec<String> {
    report["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| p["object"].as_str().expect("object").to_string())
        .collect()
}

/// The first layer's digest of the first platform of `index` (read with `read(key)`).
fn first_layer(read: impl Fn(&str) -> Vec<u8>) -> String {
    let index: Value = serde_json::from_slice(&read("v2/albatros/manifests/0.9")).expect("index");
    let manifest = index["manifests"][0]["digest"].as_str().expect("digest");
    let key = format!("v2/albatros/manifests/{manifest}");
    let manifest: Value = serde_json::from_slice(&read(&key)).expect("manifest");
    manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer digest")
        .to_string()
}

/// The digest of the SBOM blob of the first platform's referrer artifact in a folder.
fn sbom_blob(out: &Path) -> String {
    let read = |key: &str| -> Value {
        let bytes = std::fs::read(out.join(key)).unwrap_or_else(|e| panic!("{key}: {e}"));
        serde_json::from_slice(&bytes).expect("JSON")
    };
    let index = read("v2/albatros/manifests/0.9");
    let subject = index["manifests"][0]["digest"].as_str().expect("digest");
    let hex = subject.trim_start_matches("sha256:");
    let referrers = read(&format!("v2/albatros/manifests/sha256-{hex}"));
    let artifact = referrers["manifests"][0]["digest"]
        .as_str()
        .expect("artifact");
    let artifact = read(&format!("v2/albatros/manifests/{artifact}"));
    assert_eq!(artifact["subject"]["digest"], subject);
    artifact["layers"][0]["digest"]
        .as_str()
        .expect("sbom digest")
        .to_string()
}

/// `bytes` with every byte flipped: other content, same size.
fn flipped(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|b| !b).collect()
}

#[test]
fn a_folder_verifies_then_names_a_tampered_binary_and_layer() {
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("out");
    let target = format!("file:{}", out.display());
    publish_dirs(work.path(), &target, &[]);

    let report = verify_json(&[], &["-t", "albatros", &target], 0);
    assert_eq!(report["ok"], true, "{report:#}");
    let checked: Vec<&str> = report["checked"]
        .as_array()
        .expect("checked")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for object in [
        "df-dist-v1/albatros",
        "df-dist-v1/albatros/0.9",
        AMD64,
        "df-dist-v1/albatros/0.9/SHA256SUMS",
        "v2/albatros/tags/list",
        "v2/albatros/manifests/0.9",
    ] {
        assert!(
            checked.contains(&object),
            "{object} not checked: {checked:?}"
        );
    }
    let blobs = checked.iter().filter(|c| c.contains("/blobs/")).count();
    assert_eq!(blobs, 4, "2 configs and 2 layers: {checked:?}");
    verify_json(&[], &["-t", "albatros:0.9", "--quick", &target], 0);

    // A layer with other bytes of the same size: found by digest, not by --quick's size check.
    let layer = first_layer(|key| std::fs::read(out.join(key)).expect("read"));
    let layer_path = out.join(format!("v2/albatros/blobs/{layer}"));
    std::fs::write(
        &layer_path,
        flipped(&std::fs::read(&layer_path).expect("layer")),
    )
    .expect("tamper");
    let report = verify_json(&[], &["-t", "albatros:0.9", &target], 1);
    assert_eq!(
        problem_objects(&report),
        [format!("v2/albatros/blobs/{layer}")],
        "{report:#}"
    );
    verify_json(&[], &["-t", "albatros:0.9", "--quick", &target], 0);

    let binary = out.join(AMD64);
    std::fs::write(&binary, b"not the published binary").expect("tamper");
    let (code, said) = verify(&[], &["-t", "albatros", &target]);
    assert_eq!(code, 1, "{said}");
    let line = said
        .lines()
        .find(|l| l.starts_with(&format!("✗ {AMD64}: holds other bytes")))
        .unwrap_or_else(|| panic!("no line names {AMD64}:\n{said}"));
    assert!(line.contains("fix: delete"), "{line}");
    assert_eq!(
        said.lines()
            .filter(|l| l.starts_with("✗ df-dist-v1/"))
            .count(),
        1,
        "one object, one line: {said}"
    );

    // A SHA256SUMS line that no longer matches its (intact) file.
    std::fs::write(
        &binary,
        fixtures::fake_binary("albatros", "x86_64-linux", "dir"),
    )
    .expect("restore");
    let sums = out.join("df-dist-v1/albatros/0.9/SHA256SUMS");
    let text = std::fs::read_to_string(&sums).expect("SHA256SUMS");
    let forged = format!("{}{}", "0".repeat(64), &text[64..]);
    std::fs::write(&sums, forged).expect("forge SHA256SUMS");
    let (code, said) = verify(&[], &["-t", "albatros", &target]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("`sha256sum -c` fails"), "{said}");
}

#[test]
fn bad_usage_exits_2() {
    for args in [
        &["-t", "albatros", "ftp://example.org/x"][..],
        &["file:/tmp/x"],
        &[
            "-t",
            "albatros",
            "--sign-pub",
            "/nonexistent/alba.pub",
            "file:/tmp/x",
        ],
        &["-t", "albatros", "--web", "not a url", "file:/tmp/x"],
    ] {
        let (code, said) = verify(&[], args);
        assert_eq!(code, 2, "alba verify {args:?}: {said}");
    }
    let (_, said) = verify(&[], &["-t", "albatros", "ftp://example.org/x"]);
    assert!(said.contains("s3://"), "names the accepted schemes: {said}");
}

/// A Garage with a bucket named `localhost` (website on or off), or `None` (SKIP with `ALBA_ALLOW_SKIP=1`).
fn garage_with_localhost(website: bool) -> Option<Garage> {
    let garage = Garage::try_start()?;
    if website {
        garage.create_bucket("localhost");
    } else {
        garage.create_bucket_without_website("localhost");
    }
    Some(garage)
}

#[test]
fn a_bucket_verifies_through_s3_and_web_then_names_an_overwritten_object() {
    let Some(garage) = garage_with_localhost(true) else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let target = garage.s3_url("localhost");
    let envs = garage.envs();
    publish_dirs(work.path(), &target, &envs);
    let web = format!("http://localhost:{}", garage.web_port);

    verify_json(&envs, &["-t", "albatros", &target], 0);
    let report = verify_json(&envs, &["-t", "albatros", "--web", &web, &target], 0);
    assert_eq!(report["read_through"], web.as_str(), "{report:#}");

    // The index with its own bytes but a wrong Content-Type: pull clients refuse it.
    let (_, _, index) = garage.s3_get("localhost", "v2/albatros/manifests/0.9");
    garage.s3_put(
        "localhost",
        "v2/albatros/manifests/0.9",
        &index,
        "application/octet-stream",
    );
    let report = verify_json(&envs, &["-t", "albatros:0.9", &target], 1);
    assert_eq!(
        problem_objects(&report),
        ["v2/albatros/manifests/0.9"],
        "{report:#}"
    );
    let problem = report["problems"][0]["problem"]
        .as_str()
        .unwrap_or_default();
    assert!(problem.contains("Content-Type"), "{problem}");
    garage.s3_put(
        "localhost",
        "v2/albatros/manifests/0.9",
        &index,
        "application/vnd.oci.image.index.v1+json",
    );

    garage.s3_put(
        "localhost",
        AMD64,
        b"other bytes",
        "application/octet-stream",
    );
    for args in [vec![], vec!["--web", web.as_str()]] {
        let mut all = vec!["-t", "albatros:0.9"];
        all.extend(args);
        all.push(&target);
        let (code, said) = verify(&envs, &all);
        assert_eq!(code, 1, "{said}");
        assert!(
            said.contains(&format!("✗ {AMD64}: holds other bytes")),
            "{said}"
        );
        assert!(!said.contains("✗ v2/"), "the images are intact: {said}");
    }
}

#[test]
fn garage_website_mistakes_are_named_with_their_fix() {
    let Some(garage) = garage_with_localhost(false) else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let target = garage.s3_url("localhost");
    let envs = garage.envs();
    publish_dirs(work.path(), &target, &envs);
    let web = format!("http://localhost:{}", garage.web_port);
    verify_json(&envs, &["-t", "albatros", &target], 0);

    let (code, said) = verify(&envs, &["-t", "albatros", "--web", &web, &target]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("website access is not enabled"), "{said}");
    assert!(
        said.contains("`garage bucket website --allow localhost`"),
        "{said}"
    );
    assert_eq!(
        said.lines().filter(|l| l.starts_with('✗')).count(),
        1,
        "one cause, one line: {said}"
    );

    let by_ip = format!("http://127.0.0.1:{}", garage.web_port);
    let (code, said) = verify(&envs, &["-t", "albatros", "--web", &by_ip, &target]);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("`garage bucket alias localhost 127.0.0.1`"),
        "{said}"
    );

    garage.cli_ok(&[
        "bucket",
        "website",
        "--allow",
        "--index-document",
        "other.html",
        "localhost",
    ]);
    let report = verify_json(&envs, &["-t", "albatros", "--web", &web, &target], 1);
    assert_eq!(problem_objects(&report), ["v2/"], "{report:#}");
    let fix = report["problems"][0]["fix"].as_str().unwrap_or_default();
    assert!(
        fix.contains("`garage bucket website --allow --index-document index.html localhost`"),
        "{fix}"
    );

    garage.cli_ok(&["bucket", "website", "--allow", "localhost"]);
    verify_json(&envs, &["-t", "albatros", "--web", &web, &target], 0);
}

#[test]
fn a_signed_release_verifies_with_its_key_and_not_with_another() {
    if !nix_available() {
        return;
    }
    let Some(_) = common::require_program("minisign", "apt-get install minisign") else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("out");
    let target = format!("file:{}", out.display());
    let flake = FlakeFixture::new("albatros", &SYSTEMS)
        .static_targets(&[&target])
        .container(&[&target])
        .write(&work.path().join("flake"));
    let (public, secret) = common::minisign_key(work.path(), "alba");
    let (other, _) = common::minisign_key(work.path(), "other");
    alba()
        .arg("--flake")
        .arg(&flake.dir)
        .args(["release", "0.9", "--sign-key"])
        .arg(&secret)
        .run_expect(0);

    let public = public.to_str().expect("utf-8");
    let report = verify_json(
        &[],
        &["-t", "albatros:0.9", "--sign-pub", public, &target],
        0,
    );
    let checked = report["checked"].to_string();
    assert!(checked.contains("SHA256SUMS.minisig"), "{checked}");
    assert!(
        checked.contains(".cdx.json"),
        "the SBOMs are checked: {checked}"
    );
    assert!(
        checked.contains("v2/albatros/manifests/sha256-"),
        "the image SBOM referrers are checked: {checked}"
    );
    assert!(checked.contains("referrers of sha256:"), "{checked}");

    // The same through nginx with the folder's generated fragment: Content-Types from HTTP.
    if let Some(nginx) = common::Nginx::try_start(&out.join(".alba/nginx.conf")) {
        let web = nginx.base_url();
        let report = verify_json(&[], &["-t", "albatros:0.9", "--web", &web, &target], 0);
        assert_eq!(report["read_through"], web.as_str(), "{report:#}");
        assert!(report["checked"].to_string().contains("v2/"), "{report:#}");
    }

    // An image SBOM (the referrer artifact's layer) with other bytes is named.
    let sbom = sbom_blob(&out);
    let path = out.join(format!("v2/albatros/blobs/{sbom}"));
    std::fs::write(&path, flipped(&std::fs::read(&path).expect("sbom blob"))).expect("tamper");
    let report = verify_json(&[], &["-t", "albatros:0.9", &target], 1);
    assert_eq!(
        problem_objects(&report),
        [format!("v2/albatros/blobs/{sbom}")],
        "{report:#}"
    );

    let other = other.to_str().expect("utf-8");
    let (code, said) = verify(&[], &["-t", "albatros:0.9", "--sign-pub", other, &target]);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("✗ df-dist-v1/albatros/0.9/SHA256SUMS.minisig: does not verify"),
        "{said}"
    );
}

#[test]
fn a_registry_verifies_and_a_missing_tag_is_named() {
    let Some(registry) = Registry::try_start() else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let docker = work.path().join("docker");
    fixtures::docker_dir(&docker, "albatros", &SYSTEMS);
    let target = registry.url("albatros");
    alba()
        .args(["container", "push", "-t", "albatros:0.9"])
        .arg(&docker)
        .arg(&target)
        .run_expect(0);

    let report = verify_json(&[], &["-t", "albatros", &target], 0);
    let blobs = report["checked"]
        .as_array()
        .expect("checked")
        .iter()
        .filter(|c| c.as_str().is_some_and(|c| c.contains(" blob sha256:")))
        .count();
    assert_eq!(blobs, 4, "2 configs and 2 layers: {report:#}");
    verify_json(&[], &["-t", "albatros:0.9", "--quick", &target], 0);

    let (code, said) = verify(&[], &["-t", "albatros:1.0", &target]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains(":1.0: is missing"), "{said}");
}

#[test]
fn stale_alias_tags_are_named() {
    if !nix_available() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("out");
    let target = format!("file:{}", out.display());
    let flake = FlakeFixture::new("albatros", &SYSTEMS)
        .no_static()
        .container(&[&target])
        .write(&work.path().join("flake"));
    let release = |version: &str, aliases: bool| {
        let mut command = alba();
        command
            .arg("--flake")
            .arg(&flake.dir)
            .args(["release", version]);
        if aliases {
            command.arg("--aliases");
        }
        command.run_expect(0);
    };
    release("1.2.3", true);
    let report = verify_json(&[], &["-t", "albatros", &target], 0);
    let checked = report["checked"].to_string();
    assert!(checked.contains("alias 1.2 → 1.2.3"), "{checked}");
    assert!(checked.contains("alias latest → 1.2.3"), "{checked}");

    // A newer patch release without --aliases leaves 1.2, 1 and latest behind.
    release("1.2.4", false);
    let report = verify_json(&[], &["-t", "albatros", &target], 1);
    let mut stale = problem_objects(&report);
    stale.sort();
    assert_eq!(
        stale,
        ["1", "1.2", "latest"].map(|t| format!("v2/albatros/manifests/{t}")),
        "{report:#}"
    );
    let fix = report["problems"][0]["fix"].as_str().unwrap_or_default();
    assert!(fix.contains("alba release 1.2.4 --aliases"), "{fix}");

    release("1.2.4", true);
    verify_json(&[], &["-t", "albatros", &target], 0);
}
