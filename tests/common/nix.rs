//! Nix settings that make Debian's nix-bin (2.8, single-user, as root) build the fixtures.
//!
//! `NIX_CONFIG` is honoured by Nix 2.8 (checked with `nix show-config`), so no
//! `/etc/nix/nix.conf` edit is needed: every nix call of the tests, and of alba under
//! test, gets these settings from the environment.

use std::process::Command;

/// How to get Nix, for skip/fail messages.
pub const HOW_TO_INSTALL: &str = "apt-get install nix-bin";

/// The `NIX_CONFIG` text: flakes on, no build users, no substituters (offline), no sandbox,
/// and every test system buildable here with `/bin/sh`.
pub const NIX_CONFIG: &str = "experimental-features = nix-command flakes
build-users-group =
substituters =
sandbox = false
extra-platforms = aarch64-linux i686-linux armv6l-linux
flake-registry =
warn-dirty = false
";

/// Environment for running nix (or alba) against the fixture flakes.
pub fn nix_env() -> Vec<(String, String)> {
    vec![("NIX_CONFIG".into(), NIX_CONFIG.into())]
}

/// True if `nix` runs here; otherwise reports it via [`super::fail_under_ci`].
pub fn nix_available() -> bool {
    let runs = super::require_program("nix", HOW_TO_INSTALL).is_some()
        && Command::new("nix")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !runs && which::which("nix").is_ok() {
        super::fail_under_ci("a working `nix --version`", HOW_TO_INSTALL);
    }
    runs
}

/// A `nix` command with [`nix_env`] applied.
pub fn nix() -> Command {
    let mut command = Command::new("nix");
    command.envs(nix_env());
    command
}

/// `nix build --json --no-link <installables>`: the `out` path of each result, keyed by `drvPath`.
pub fn nix_build(installables: &[String]) -> std::collections::BTreeMap<String, String> {
    let mut command = nix();
    command
        .args(["build", "--json", "--no-link"])
        .args(installables);
    let stdout = super::run_ok(&mut command);
    let results: serde_json::Value =
        serde_json::from_slice(&stdout).expect("`nix build --json` did not print JSON");
    let results = results
        .as_array()
        .expect("`nix build --json` did not print a list");
    results
        .iter()
        .map(|r| {
            let drv = r["drvPath"].as_str().expect("result without drvPath");
            let out = r["outputs"]["out"].as_str().expect("result without out");
            (drv.to_string(), out.to_string())
        })
        .collect()
}

/// `nix eval --raw <installable>` (e.g. `<flake>#packages.x86_64-linux.demo.drvPath`).
pub fn nix_eval_raw(installable: &str) -> String {
    let mut command = nix();
    command.args(["eval", "--raw", installable]);
    String::from_utf8(super::run_ok(&mut command)).expect("nix printed non-UTF-8")
}
