//! README's quick start works as written: the shell block of "Your own flake" runs with
//! `alba` on PATH.

use crate::common;
use crate::nix_tests;

use std::path::Path;

use common::NixVersion;

/// The first ```sh block after the "### Your own flake" heading (the first block of "## Try it"
/// runs try.sh and tests/run.sh: tests/it/try_sh.rs runs try.sh).
fn quick_start(readme: &str) -> String {
    let section = readme
        .split("### Your own flake")
        .nth(1)
        .expect("README has a \"Your own flake\" section");
    let block = section.split("```sh\n").nth(1).expect("a shell block");
    block
        .split("```")
        .next()
        .expect("a closed block")
        .to_string()
}

/// The quick start, run by bash with `alba` on PATH and this Nix: on the host, or in the Nix
/// 2.26 chroot (its own bash, alba bound at /usr/local/bin/alba, the work dir at its path).
fn readme_quick_start_publishes_to_a_folder(nix: NixVersion) {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let script = quick_start(&readme);
    let work = tempfile::tempdir().expect("tempdir");
    let alba = Path::new(env!("CARGO_BIN_EXE_alba"));
    let mut bash = nix.command("bash");
    if nix == NixVersion::Host {
        let path = format!(
            "{}:{}",
            alba.parent().expect("bin dir").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        bash.env("PATH", path);
    }
    let output = bash
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(work.path())
        .env("XDG_CACHE_HOME", work.path().join("cache"))
        .envs(common::nix_env())
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the quick start failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(r#"{"name":"hello","tags":["0.1"]}"#),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#""platform":{"architecture":"arm64","os":"linux"}"#),
        "{stdout}"
    );
    let published = work
        .path()
        .join("hello/dist/df-dist-v1/hello/0.1/linux/arm64/hello");
    assert_eq!(
        std::fs::read_to_string(published).expect("the arm64 binary"),
        "hello from aarch64\n"
    );
}
nix_tests!(readme_quick_start_publishes_to_a_folder);
