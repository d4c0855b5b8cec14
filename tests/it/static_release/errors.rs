//! Mistakes: bad inputs (exit 2, against a folder: no service), errors of an S3 target,
//! bad release descriptions and failing builds, an unknown scheme. Each names the problem and
//! writes nothing.

use super::*;

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

/// Input errors, which alba reports before it touches a target: exit 2, the problem named,
/// nothing written. The target is a folder, so no service is needed.
fn bad_inputs_are_clear_errors_and_write_nothing(nix: NixVersion) {
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("out");
    let target = format!("file:{}", out.display());
    let flake = FlakeFixture::new("albatros", &["x86_64-linux"])
        .static_targets(&[&target])
        .write(&work.path().join("flake"));
    let release = |alba: &mut common::Alba| {
        alba.arg("--flake").arg(&flake.dir);
    };

    // Nix missing.
    let mut cmd = nix.alba();
    release(&mut cmd);
    cmd.env("PATH", "/nonexistent").args(["release", "0.9"]);
    expect_error(&mut cmd, 2, &["nix was not found", "--nix"]);
    let mut cmd = nix.alba();
    release(&mut cmd);
    cmd.args(["--nix", "/nonexistent/nix", "release", "0.9"]);
    expect_error(&mut cmd, 2, &["/nonexistent/nix"]);

    // A tag with '/', '..' or spaces.
    for tag in ["a/b", "..", "0 9"] {
        let mut cmd = nix.alba();
        release(&mut cmd);
        cmd.args(["release", tag]);
        expect_error(&mut cmd, 2, &["is not valid"]);
    }

    // A malformed target URL.
    let mut cmd = nix.alba();
    release(&mut cmd);
    cmd.args(["release", "0.9", "--target", "s3://download?endpont=x"]);
    expect_error(&mut cmd, 2, &["endpont", "known:"]);

    // A DIR that is not in the df/<os>/<arch>/<file> layout.
    let bad_dir = work.path().join("bad-df");
    std::fs::create_dir_all(bad_dir.join("linux")).expect("mkdir");
    std::fs::write(bad_dir.join("linux/albatros"), b"x").expect("write");
    let mut cmd = nix.alba();
    cmd.args(["static", "push", "-t", "albatros:0.9"])
        .arg(&bad_dir)
        .arg(&target);
    expect_error(&mut cmd, 2, &["df/linux/amd64/albatros"]);

    // A name with a slash.
    let mut cmd = nix.alba();
    cmd.args(["static", "push", "-t", "alba/tros:0.9"])
        .arg(&bad_dir)
        .arg(&target);
    expect_error(&mut cmd, 2, &["alba/tros"]);

    assert!(!out.exists(), "nothing was written");
}
nix_tests!(bad_inputs_are_clear_errors_and_write_nothing);

/// An S3 target that fails: a closed port names the endpoint, wrong credentials are refused
/// without showing the secret, and neither writes anything.
fn s3_target_errors_are_clear_and_write_nothing(nix: NixVersion) {
    let Some(garage) = download_garage() else {
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

    // An unreachable endpoint: a closed port.
    let closed = format!(
        "s3://download?endpoint=http://127.0.0.1:{}&region=garage&s3ForcePathStyle=true",
        common::free_port()
    );
    let mut cmd = nix.alba();
    release(&mut cmd);
    cmd.args(["release", "0.9", "--target", &closed]);
    expect_error(&mut cmd, 1, &["could not reach the endpoint"]);

    // Wrong credentials: the secret never appears.
    let mut cmd = nix.alba();
    release(&mut cmd);
    cmd.env("AWS_SECRET_ACCESS_KEY", "wrong-secret-0123456789")
        .args(["release", "0.9"]);
    let stderr = expect_error(&mut cmd, 1, &["access denied", "AWS_ACCESS_KEY_ID"]);
    assert!(
        !stderr.contains("wrong-secret-0123456789"),
        "the secret leaked:\n{stderr}"
    );

    assert!(
        garage.list_keys("download").is_empty(),
        "nothing was written: {:?}",
        garage.list_keys("download")
    );
}
nix_tests!(s3_target_errors_are_clear_and_write_nothing);

fn bad_release_descriptions_and_failing_builds(nix: NixVersion) {
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
        let mut cmd = nix.alba();
        cmd.arg("--flake")
            .arg(&dir)
            .args(["release", "0.9", "--target"])
            .arg(format!("file:{}", out.display()));
        expect_error(&mut cmd, 2, needles);
    }
    assert!(!out.exists(), "nothing was written");
}
nix_tests!(bad_release_descriptions_and_failing_builds);

#[test]
fn an_unknown_scheme_is_named_with_the_accepted_ones() {
    let work = tempfile::tempdir().expect("tempdir");
    let df = work.path().join("df");
    fixtures::static_dir(&df, "albatros", &["x86_64-linux"]);
    let output = alba()
        .args(["static", "push", "-t", "albatros:0.9"])
        .arg(&df)
        .arg("ftp://x")
        .run_expect(2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ftp://") && stderr.contains("s3://") && stderr.contains("docker://"),
        "{stderr}"
    );
    assert!(!stderr.contains("two folders"), "{stderr}");
}
