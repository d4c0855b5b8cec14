//! Flakes in git repositories: a dirty tree is refused unless allowed, and a flake in a
//! subfolder reports its revision and its changes.

use super::*;

/// A flake in a git repository with one commit, then an uncommitted change.
fn dirty_git_flake(dir: &Path, target: &str) -> common::fixtures::WrittenFlake {
    let flake = FlakeFixture::new("albatros", &["x86_64-linux"])
        .static_targets(&[target])
        .write(dir);
    common::git_commit_all(dir, "fixture");
    std::fs::write(dir.join("flake.nix"), {
        let text = std::fs::read_to_string(dir.join("flake.nix")).expect("flake.nix");
        format!("{text}\n# an uncommitted change\n")
    })
    .expect("edit flake.nix");
    flake
}

/// The refusal comes before any target is touched, so the target is a folder (no service).
fn a_dirty_git_tree_is_refused_unless_allowed(nix: NixVersion) {
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("out");
    let dir = work.path().join("flake");
    dirty_git_flake(&dir, &format!("file:{}", out.display()));
    let flake_ref = format!("git+file://{}", dir.display());

    let output = nix
        .alba()
        .args(["--flake", &flake_ref, "release", "0.9"])
        .run_expect(2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("uncommitted changes")
            && stderr.contains("flake.nix")
            && stderr.contains("--allow-dirty"),
        "{stderr}"
    );
    assert!(!out.exists(), "refused, nothing written");

    // Nix warns "Git tree … is dirty" on every call; alba shows it once per run.
    let warn_dirty = format!("{}warn-dirty = true\n", common::nix::NIX_CONFIG);
    let output = nix
        .alba()
        .env("NIX_CONFIG", &warn_dirty)
        .args([
            "--json",
            "--flake",
            &flake_ref,
            "release",
            "0.9",
            "--allow-dirty",
        ])
        .run_expect(0);
    let report = json_report(&output);
    assert_eq!(report["flake"]["dirty"], true, "{report}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.matches("' is dirty").count(),
        1,
        "Nix's warning once per run: {stderr}"
    );
    assert!(
        out.join("df-dist-v1/albatros/0.9/linux/amd64/albatros")
            .is_file(),
        "released with --allow-dirty"
    );
}
nix_tests!(a_dirty_git_tree_is_refused_unless_allowed);

/// A flake in a subfolder of a git repository (Nix locks it as `git+file:…?dir=sub`, which
/// 2.8 and 2.26 spell differently): a clean tree releases and reports its commit; a change to
/// a tracked file is refused and named.
fn a_git_subflake_reports_its_revision_and_its_changes(nix: NixVersion) {
    let work = tempfile::tempdir().expect("tempdir");
    let repo = work.path().join("repo");
    let out = work.path().join("out");
    let flake = FlakeFixture::new("albatros", &["x86_64-linux"])
        .salt("git-subflake")
        .write(&repo.join("sub"));
    common::git_commit_all(&repo, "fixture");
    let head = common::git(&repo, &["rev-parse", "HEAD"]);
    let release = |tag: &str| {
        let mut alba = nix.alba();
        alba.args(["--json", "--flake"])
            .arg(&flake.dir)
            .args(["release", tag, "--target"])
            .arg(format!("file:{}", out.display()));
        alba
    };

    let report = json_report(&release("1.0").run_expect(0));
    assert_eq!(report["flake"]["revision"], head.trim(), "{report}");
    assert_eq!(report["flake"]["dirty"], false, "{report}");
    let url = report["flake"]["url"].as_str().unwrap_or_default();
    assert!(
        url.starts_with("git+file://") && url.contains("dir=sub"),
        "{url}"
    );
    check_folder(&out, "albatros", "1.0", &flake.expected, &["1.0"]);

    std::fs::write(flake.dir.join("bin-x86_64-linux"), b"changed").expect("edit");
    let output = release("1.1").run_expect(2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("sub/bin-x86_64-linux") && stderr.contains("--allow-dirty"),
        "{stderr}"
    );
    assert!(!out.join("df-dist-v1/albatros/1.1").exists(), "refused");
}
nix_tests!(a_git_subflake_reports_its_revision_and_its_changes);
