//! Nix settings that make Debian's nix-bin (2.8, single-user, as root) build the fixtures,
//! and the two Nix versions tests run alba with ([`NixVersion`], [`nix_tests!`]).
//!
//! `NIX_CONFIG` is honoured by Nix 2.8 (checked with `nix show-config`) and 2.26, so no
//! `/etc/nix/nix.conf` edit is needed: every nix call of the tests, and of alba under
//! test, gets these settings from the environment.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::nix_chroot;

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

/// True if `nix` runs here; otherwise reports it via [`super::missing`].
pub fn nix_available() -> bool {
    let runs = super::require_program("nix", HOW_TO_INSTALL).is_some()
        && Command::new("nix")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !runs && which::which("nix").is_ok() {
        super::missing("a working `nix --version`", HOW_TO_INSTALL);
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
    build_results(&mut nix(), installables)
}

/// Runs `nix build --json --no-link` on `command` (a `nix` command); out path by `drvPath`.
/// Nix 2.26 adds `startTime`/`stopTime` to each result; only `drvPath` and `outputs` are read.
fn build_results(
    command: &mut Command,
    installables: &[String],
) -> std::collections::BTreeMap<String, String> {
    command
        .args(["build", "--json", "--no-link"])
        .args(installables);
    let stdout = super::run_ok(command);
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

/// A Nix that tests run alba with: users run 2.18 to 2.3x, Debian 12 ships 2.8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NixVersion {
    /// Debian 12's `nix-bin` (2.8) on the host.
    Host,
    /// Debian trixie's `nix-bin` (2.26) in the chroot of [`nix_chroot`].
    Chroot,
}

/// Both versions, oldest first.
pub const NIX_VERSIONS: [NixVersion; 2] = [NixVersion::Host, NixVersion::Chroot];

impl std::fmt::Display for NixVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NixVersion::Host => write!(f, "Nix 2.8 (host)"),
            NixVersion::Chroot => write!(f, "Nix 2.26 (trixie chroot)"),
        }
    }
}

impl NixVersion {
    /// True if this Nix runs here; otherwise reports it via [`super::missing`].
    pub fn available(self) -> bool {
        match self {
            NixVersion::Host => nix_available(),
            NixVersion::Chroot => nix_chroot::available(),
        }
    }

    /// A command running `program` where this Nix is: on the host, or inside the chroot
    /// (`program` is then a path or `PATH` name inside it).
    pub fn command(self, program: &str) -> Command {
        match self {
            NixVersion::Host => Command::new(program),
            NixVersion::Chroot => nix_chroot::command(program),
        }
    }

    /// A `nix` command with [`nix_env`] applied.
    pub fn nix(self) -> Command {
        let mut command = self.command("nix");
        command.envs(nix_env());
        command
    }

    /// The `alba` binary under test running with this Nix (see [`super::alba`]).
    pub fn alba(self) -> super::Alba {
        self.wrap(super::alba())
    }

    /// [`NixVersion::alba`] with `XDG_CACHE_HOME=cache` (see [`super::alba_with_cache`]).
    pub fn alba_with_cache(self, cache: &Path) -> super::Alba {
        self.wrap(super::alba_with_cache(cache))
    }

    /// Moves a host alba command into the chroot, keeping its environment.
    fn wrap(self, mut alba: super::Alba) -> super::Alba {
        if self == NixVersion::Host {
            return alba;
        }
        let mut command = nix_chroot::command(nix_chroot::ALBA_INSIDE);
        for (key, value) in alba.command.get_envs() {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        alba.command = command;
        alba
    }

    /// Where the host reads a path this Nix printed (a store path: the chroot has its own
    /// `/nix`); paths under the temp folder are the same on both sides.
    pub fn host_path(self, path: impl AsRef<Path>) -> PathBuf {
        match self {
            NixVersion::Host => path.as_ref().to_path_buf(),
            NixVersion::Chroot => nix_chroot::host_path(path.as_ref()),
        }
    }

    /// `nix build --json --no-link <installables>` with this Nix: see [`nix_build`].
    pub fn nix_build(self, installables: &[String]) -> std::collections::BTreeMap<String, String> {
        build_results(&mut self.nix(), installables)
    }

    /// `nix eval --raw <installable>` with this Nix.
    pub fn nix_eval_raw(self, installable: &str) -> String {
        let mut command = self.nix();
        command.args(["eval", "--raw", installable]);
        String::from_utf8(super::run_ok(&mut command)).expect("nix printed non-UTF-8")
    }
}

/// Makes `fn NAME(nix: NixVersion)` a test per Nix version: `NAME::nix_2_8` (host) and
/// `NAME::nix_2_26` (chroot), each failing when its Nix is missing (skipping with
/// `ALBA_ALLOW_SKIP=1`).
/// Filter one version with `cargo test nix_2_26`.
///
/// ```ignore
/// fn builds(nix: NixVersion) {
///     nix.alba().arg("build").run_expect(0);
/// }
/// nix_tests!(builds);
/// ```
#[macro_export]
macro_rules! nix_tests {
    ($($name:ident),+ $(,)?) => {$(
        // A module and a function may share a name: they live in different namespaces.
        mod $name {
            #[test]
            fn nix_2_8() {
                $crate::common::nix::run_with(super::$name, $crate::common::nix::NixVersion::Host);
            }

            #[test]
            fn nix_2_26() {
                $crate::common::nix::run_with(super::$name, $crate::common::nix::NixVersion::Chroot);
            }
        }
    )+};
}

/// Runs a test body with `nix` if it is available (see [`nix_tests!`]).
pub fn run_with(test: fn(NixVersion), nix: NixVersion) {
    if nix.available() {
        eprintln!("running with {nix}");
        test(nix);
    }
}
