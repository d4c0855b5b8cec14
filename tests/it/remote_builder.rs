//! Nix remote builders: `alba release` where one system (aarch64-linux) is built by a remote
//! builder over `ssh-ng://` to a local sshd whose Nix has its own store, and the other
//! (x86_64-linux) on this machine; Nix copies the output back and alba publishes it. A builder
//! that is down fails the release with Nix's own words, and nothing is written.
//!
//! The client is Debian 12's Nix 2.8 and the trixie chroot's 2.26 (`nix_tests!`); the builder's
//! daemon is the host's Nix 2.8 with `--store` in the harness's temp folder
//! (`tests/common/remote_builder.rs`).

use crate::common;
use crate::nix_tests;

use std::path::Path;

use common::NixVersion;
use common::fixtures::{self, FlakeFixture};
use common::remote_builder::{REMOTE_SYSTEM, RemoteBuilder};

const NAME: &str = "albatros";
const LOCAL_SYSTEM: &str = "x86_64-linux";

/// A flake for both systems, salted so no earlier run left its outputs in a store.
fn flake(dir: &Path) -> fixtures::WrittenFlake {
    let salt = dir.display().to_string();
    FlakeFixture::new(NAME, &[LOCAL_SYSTEM, REMOTE_SYSTEM])
        .salt(&salt)
        .write(dir)
}

/// `nix eval --raw <flake>#packages.<system>.<NAME>.outPath` (evaluating builds nothing).
fn out_path(nix: NixVersion, dir: &Path, system: &str) -> String {
    nix.nix_eval_raw(&format!(
        "path:{}#packages.{system}.{NAME}.outPath",
        dir.display()
    ))
}

/// `alba release 0.1` of the flake in `dir` to `file:<out>` with `nix`, the builder configured.
fn release(
    nix: NixVersion,
    builder: &RemoteBuilder,
    dir: &Path,
    out: &Path,
) -> std::process::Output {
    let mut alba = nix.alba();
    if nix == NixVersion::Chroot {
        alba.env("PATH", builder.chroot_path());
    }
    alba.envs(builder.env())
        .arg("--flake")
        .arg(dir)
        .args(builder.nix_options())
        .args(["release", "0.1", "--target"])
        .arg(format!("file:{}", out.display()))
        .run()
}

fn text(output: &std::process::Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// One system built remotely, one here: the builder's store holds the remote output (and not
/// the local one), and the folder target holds both systems' bytes.
fn one_system_is_built_by_a_remote_builder_and_published(nix: NixVersion) {
    let Some(builder) = RemoteBuilder::try_start() else {
        return;
    };
    let work = tempfile::tempdir().expect("temp dir");
    let written = flake(&work.path().join("flake"));
    let out = work.path().join("out");
    let output = release(nix, &builder, &written.dir, &out);
    assert!(
        output.status.success(),
        "release failed\n{}\n--- sshd\n{}",
        text(&output),
        builder.log_text()
    );
    let remote = out_path(nix, &written.dir, REMOTE_SYSTEM);
    let built_there = std::fs::read(builder.host_path(&remote))
        .unwrap_or_else(|e| panic!("the builder's store has no {remote} ({e})"));
    assert_eq!(built_there, written.expected[REMOTE_SYSTEM][NAME]);
    let local = out_path(nix, &written.dir, LOCAL_SYSTEM);
    assert!(
        !builder.host_path(&local).exists(),
        "{local} was built here, not on the builder"
    );
    assert!(
        builder.log_text().contains("Accepted publickey for root"),
        "{}",
        builder.log_text()
    );
    for system in [LOCAL_SYSTEM, REMOTE_SYSTEM] {
        let (os, arch, _) = fixtures::platform(system);
        let path = out.join(format!("df-dist-v1/{NAME}/0.1/{os}/{arch}/{NAME}"));
        let published = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{} was not published ({e})", path.display()));
        assert!(
            published == written.expected[system][NAME],
            "{system}: published bytes differ"
        );
    }
}

/// The builder is down: the release fails, quoting Nix's last lines (the system it could not
/// build), and the target folder stays empty.
fn a_builder_that_is_down_fails_the_release_and_writes_nothing(nix: NixVersion) {
    let Some(mut builder) = RemoteBuilder::try_start() else {
        return;
    };
    builder.stop();
    let work = tempfile::tempdir().expect("temp dir");
    let written = flake(&work.path().join("flake"));
    let out = work.path().join("out");
    let output = release(nix, &builder, &written.dir, &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(stderr.contains("nix build failed"), "{stderr}");
    assert!(stderr.contains("Nix said:"), "{stderr}");
    assert!(
        stderr.contains("A remote builder could not build it: check"),
        "says what to check: {stderr}"
    );
    assert!(
        stderr.contains(&format!("'{REMOTE_SYSTEM}'")),
        "Nix's own last line, naming the system, is quoted: {stderr}"
    );
    assert!(
        stderr.contains("127.0.0.1"),
        "the builder is named: {stderr}"
    );
    let written_files = std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0);
    assert_eq!(written_files, 0, "nothing is written to {}", out.display());
}
nix_tests!(
    one_system_is_built_by_a_remote_builder_and_published,
    a_builder_that_is_down_fails_the_release_and_writes_nothing
);
