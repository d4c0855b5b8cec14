//! README's quick start works as written: its first shell block runs with `alba` on PATH.

mod common;

use std::path::Path;

/// The first ```sh block after the "## Try it" heading.
fn quick_start(readme: &str) -> String {
    let section = readme
        .split("## Try it")
        .nth(1)
        .expect("README has a Try it section");
    let block = section.split("```sh\n").nth(1).expect("a shell block");
    block
        .split("```")
        .next()
        .expect("a closed block")
        .to_string()
}

#[test]
fn readme_quick_start_publishes_to_a_folder() {
    if !common::nix_available() {
        common::fail_under_ci("Nix (nix-bin)", "apt-get install nix-bin");
        return;
    }
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let script = quick_start(&readme);
    let work = tempfile::tempdir().expect("tempdir");
    let alba = Path::new(env!("CARGO_BIN_EXE_alba"));
    let path = format!(
        "{}:{}",
        alba.parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(work.path())
        .env("PATH", path)
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
