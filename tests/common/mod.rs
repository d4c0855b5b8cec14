//! Test harness shared by the integration tests (`tests/it`) and the benchmark
//! (`tests/bench/`).
//!
//! Every service (Garage, a registry, containerd, nginx) starts in its own temporary
//! folder on free loopback ports and is killed when its handle is dropped. Where a
//! service binary is missing, [`missing`] fails the test, naming what is missing and how
//! to install it (`tests/run.sh` installs everything). Only with `ALBA_ALLOW_SKIP=1` (and
//! never under `CI=true`) does it print a `SKIP` line instead, so the test can return early:
//!
//! ```ignore
//! let Some(garage) = common::Garage::try_start() else { return };
//! ```
//!
//! A failure, not a skip, by default: `cargo test` captures a passing test's output, so a
//! `SKIP` line was never seen and a machine without the services ran all green.
//!
//! The benchmark (`tests/bench/`, its own binary) uses only part of this module, hence
//! the `allow`s below.
#![allow(dead_code, unused_imports)]

pub mod containerd;
pub mod docker;
pub mod fault_proxy;
pub mod fixtures;
pub mod garage;
pub mod garage_cluster;
pub mod history;
pub mod images;
pub mod nginx;
pub mod nix;
pub mod nix_chroot;
pub mod podman;
pub mod process;
pub mod registry;
pub mod remote_builder;
pub mod s3;
pub mod skopeo;

use std::ffi::OsString;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::Command;

pub use containerd::Containerd;
pub use docker::Docker;
pub use garage::Garage;
pub use nginx::Nginx;
pub use nix::{NIX_VERSIONS, NixVersion, nix_available, nix_env};
pub use podman::Podman;
pub use process::free_port;
pub use registry::Registry;
pub use skopeo::{
    index_platforms, skopeo_available, skopeo_copy_all, skopeo_inspect_raw, verify_oci_layout,
};

/// True when running under CI (`CI=true` or `CI=1`): a missing service fails there even with
/// `ALBA_ALLOW_SKIP=1`.
pub fn is_ci() -> bool {
    matches!(
        std::env::var("CI")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Ok("true" | "1" | "yes")
    )
}

/// True when `ALBA_ALLOW_SKIP=1` lets a test whose service is missing return early with a
/// `SKIP` line; never under CI ([`is_ci`]), where every test must really run.
pub fn skip_allowed() -> bool {
    !is_ci() && std::env::var("ALBA_ALLOW_SKIP").as_deref() == Ok("1")
}

/// A small linear congruential generator (Knuth's MMIX constants): reproducible, no crate.
pub struct Lcg(pub u64);

impl Lcg {
    /// The next number below `n` (0 for `n` = 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n.max(1) as u64) as usize
    }
}

/// Reports that `what` is missing: panics with what it is and how to install it, unless
/// [`skip_allowed`], where it prints a `SKIP` line and the caller returns early. The panic
/// names the caller's line (`track_caller`): the service, not this function.
#[track_caller]
pub fn missing(what: &str, how_to_install: &str) {
    let message = format!("{what} is not available here; install it with: {how_to_install}");
    if skip_allowed() {
        eprintln!("SKIP: {message}");
        return;
    }
    let why = if is_ci() {
        "CI=true, where nothing is skipped"
    } else {
        "set ALBA_ALLOW_SKIP=1 to skip the tests that need it instead"
    };
    panic!("{message} (tests/run.sh installs everything the tests need; {why})");
}

/// Finds `program` on `PATH`, or reports it [`missing`] and returns `None`.
#[track_caller]
pub fn require_program(program: &str, how_to_install: &str) -> Option<PathBuf> {
    match which::which(program) {
        Ok(path) => Some(path),
        Err(_) => {
            missing(&format!("`{program}`"), how_to_install);
            None
        }
    }
}

/// Runs git in `dir` with a fixed identity and no signing; panics on failure, returns stdout
/// without its final line break.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .args([
            "-c",
            "user.name=alba tests",
            "-c",
            "user.email=tests@alba.invalid",
        ])
        .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"])
        .args(args);
    let out = String::from_utf8_lossy(&run_ok(&mut command)).into_owned();
    out.trim_end_matches('\n').to_string()
}

/// A minisign key pair made by Debian's minisign: (public, secret).
pub fn minisign_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (public, secret) = (
        dir.join(format!("{name}.pub")),
        dir.join(format!("{name}.key")),
    );
    let mut command = Command::new("minisign");
    command
        .args(["-G", "-W", "-f", "-p"])
        .arg(&public)
        .arg("-s")
        .arg(&secret);
    run_ok(&mut command);
    (public, secret)
}

/// Makes `dir` a git repository whose one commit holds every file in it.
pub fn git_commit_all(dir: &Path, message: &str) {
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
}

/// Environment that keeps the user's own AWS and Docker settings out of a test run.
///
/// Points the AWS config/credentials files and `DOCKER_CONFIG` at paths under `scratch`
/// that do not exist, and disables the EC2 metadata lookup.
pub fn isolation_env(scratch: &Path) -> Vec<(String, String)> {
    let absent = |name: &str| scratch.join(name).to_string_lossy().into_owned();
    vec![
        ("AWS_CONFIG_FILE".into(), absent("no-aws-config")),
        (
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            absent("no-aws-credentials"),
        ),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ("DOCKER_CONFIG".into(), absent("no-docker-config")),
    ]
}

/// Variables removed from every `alba` run so the caller's environment cannot leak in.
const SCRUBBED_ENV: &[&str] = &[
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "REGISTRY_AUTH_FILE",
];

/// An `alba` command with the Nix settings of [`nix_env`], an isolated AWS/Docker
/// environment and a fresh `XDG_CACHE_HOME`; it derefs to [`Command`].
///
/// The temporary cache lives as long as this value.
pub struct Alba {
    command: Command,
    scratch: tempfile::TempDir,
    cache: PathBuf,
}

impl Alba {
    /// The `XDG_CACHE_HOME` given to alba (alba's own cache is `<this>/alba`).
    pub fn cache_home(&self) -> &Path {
        &self.cache
    }

    /// Adds one argument (chainable, keeps the [`Alba`] so `.run()` follows).
    pub fn arg(&mut self, arg: impl AsRef<std::ffi::OsStr>) -> &mut Self {
        self.command.arg(arg);
        self
    }

    /// Adds arguments (chainable).
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    /// Sets one environment variable (chainable).
    pub fn env(
        &mut self,
        key: impl AsRef<std::ffi::OsStr>,
        value: impl AsRef<std::ffi::OsStr>,
    ) -> &mut Self {
        self.command.env(key, value);
        self
    }

    /// Sets environment variables, e.g. [`Garage::envs`] (chainable).
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        self.command.envs(vars);
        self
    }

    /// Sets the working directory (chainable).
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.command.current_dir(dir);
        self
    }

    /// Runs the command and returns its output, panicking only if it cannot be started.
    pub fn run(&mut self) -> std::process::Output {
        self.command
            .output()
            .expect("could not run the alba binary")
    }

    /// Runs the command with `stdin` piped in; panics with its output unless it exits with `code`.
    pub fn run_with_stdin(&mut self, stdin: &[u8], code: i32) -> std::process::Output {
        use std::io::Write;
        use std::process::Stdio;
        let mut child = self
            .command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("could not start alba");
        if let Some(mut input) = child.stdin.take() {
            // alba may exit before reading (a refused input): a broken pipe is its answer.
            let _ = input.write_all(stdin);
        }
        let output = child.wait_with_output().expect("alba did not finish");
        self.check_code(&output, code);
        output
    }

    /// Runs the command and panics with its stdout/stderr unless it exits with `code`.
    pub fn run_expect(&mut self, code: i32) -> std::process::Output {
        let output = self.run();
        self.check_code(&output, code);
        output
    }

    fn check_code(&self, output: &std::process::Output, code: i32) {
        assert_eq!(
            output.status.code(),
            Some(code),
            "alba {:?} exited with {:?}, expected {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.command.get_args().collect::<Vec<_>>(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
    }
}

impl Deref for Alba {
    type Target = Command;
    fn deref(&self) -> &Command {
        &self.command
    }
}

impl DerefMut for Alba {
    fn deref_mut(&mut self) -> &mut Command {
        &mut self.command
    }
}

/// The `alba` binary under test, with a fresh `XDG_CACHE_HOME` (see [`Alba`]).
pub fn alba() -> Alba {
    let scratch = tempfile::Builder::new()
        .prefix("alba-run")
        .tempdir()
        .expect("could not create a temp dir for alba's cache");
    let cache = scratch.path().join("cache");
    std::fs::create_dir(&cache).expect("could not create alba's XDG_CACHE_HOME");
    alba_with_cache_in(scratch, cache)
}

/// The `alba` binary with `XDG_CACHE_HOME=cache`, for tests that run alba twice on one cache.
pub fn alba_with_cache(cache: &Path) -> Alba {
    let scratch = tempfile::Builder::new()
        .prefix("alba-run")
        .tempdir()
        .expect("could not create a temp dir for alba's environment");
    alba_with_cache_in(scratch, cache.to_path_buf())
}

/// Builds the [`Alba`] command around an existing scratch dir and cache dir.
fn alba_with_cache_in(scratch: tempfile::TempDir, cache: PathBuf) -> Alba {
    let mut command = Command::new(env!("CARGO_BIN_EXE_alba"));
    for name in SCRUBBED_ENV {
        command.env_remove(name);
    }
    command
        .envs(nix_env())
        .envs(isolation_env(scratch.path()))
        .env("XDG_CACHE_HOME", &cache)
        .env("NO_COLOR", "1");
    Alba {
        command,
        scratch,
        cache,
    }
}

/// Formats a command line for error messages.
pub fn describe(command: &Command) -> String {
    let mut parts: Vec<OsString> = vec![command.get_program().to_os_string()];
    parts.extend(command.get_args().map(|a| a.to_os_string()));
    parts
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `command`, panicking with its output unless it succeeds; returns stdout.
pub fn run_ok(command: &mut Command) -> Vec<u8> {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("could not run `{}`: {e}", describe(command)));
    assert!(
        output.status.success(),
        "`{}` failed with {}\n--- stdout\n{}\n--- stderr\n{}",
        describe(command),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    output.stdout
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A blocking HTTP client that never uses a proxy (all services are on loopback).
pub fn http_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("could not build the reqwest client")
}
