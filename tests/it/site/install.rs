//! install.sh as users run it: dash and busybox sh against Garage's website, the platform
//! faked through a `uname` shim on PATH, tampered files refused.

use super::Released;
use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A folder with a `uname` that answers `-s` with `os` and `-m` with `machine`.
fn uname_shim(dir: &Path, os: &str, machine: &str) -> PathBuf {
    let shim = dir.join(format!("shim-{machine}"));
    std::fs::create_dir_all(&shim).expect("shim dir");
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in -s) echo {os} ;; -m) echo {machine} ;; *) echo {os} ;; esac\n"
    );
    let path = shim.join("uname");
    std::fs::write(&path, script).expect("uname shim");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    shim
}

/// Runs `shell script args…` with the shim first on PATH.
fn run(shell: &[&str], script: &Path, args: &[&str], shim: &Path, home: &Path) -> Output {
    let path = format!(
        "{}:{}",
        shim.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(shell[0])
        .args(&shell[1..])
        .arg(script)
        .args(args)
        .env("PATH", path)
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .expect("run install.sh")
}

/// Asserts `out` succeeded and `dir/albatros` holds `expected`, executable.
fn installed(out: &Output, dir: &Path, expected: &[u8]) {
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "install.sh failed: {said}");
    let path = dir.join("albatros");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; {said}", path.display()));
    assert!(
        bytes == expected,
        "{} is the right binary ({said})",
        path.display()
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "executable");
    let names: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
}

/// Asserts `out` failed saying `why`, with nothing in `dir`.
fn refused(out: &Output, dir: &Path, why: &str) {
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "install.sh should fail ({why}): {said}"
    );
    assert!(said.contains(why), "says {why:?}: {said}");
    let left = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "nothing installed in {}", dir.display());
}

pub fn check_install(site: &Released) {
    for program in ["dash", "busybox", "shellcheck", "curl"] {
        if common::require_program(program, &format!("apt-get install {program}")).is_none() {
            return;
        }
    }
    let work = tempfile::tempdir().expect("tempdir");
    let (w, home) = (work.path(), work.path().join("home"));
    let url = format!("{}/df-dist-v1/albatros/install.sh", site.web);
    let script = w.join("install.sh");
    let body = common::http_client()
        .get(&url)
        .send()
        .and_then(|r| r.bytes())
        .expect("GET install.sh");
    std::fs::write(&script, &body).expect("write install.sh");
    let check = Command::new("shellcheck")
        .args(["-s", "sh"])
        .arg(&script)
        .output()
        .expect("shellcheck");
    assert!(
        check.status.success(),
        "shellcheck: {}",
        String::from_utf8_lossy(&check.stdout)
    );

    let files = |version: &str, system: &str| site.files[version][system].clone();
    let amd64 = uname_shim(w, "Linux", "x86_64");
    let arm64 = uname_shim(w, "Linux", "aarch64");
    let armv6 = uname_shim(w, "Linux", "armv6l");
    let sparc = uname_shim(w, "Linux", "sparc64");

    // The latest stable version into ~/.local/bin, signature checked.
    let out = run(&["dash"], &script, &["--require-signature"], &amd64, &home);
    installed(
        &out,
        &home.join(".local/bin"),
        &files("1.0", "x86_64-linux"),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("signature of SHA256SUMS checked"));
    let to = w.join("arm64");
    let out = run(
        &["busybox", "sh"],
        &script,
        &["--to", to.to_str().expect("utf-8")],
        &arm64,
        &home,
    );
    installed(&out, &to, &files("1.0", "aarch64-linux"));
    let to = w.join("armv6");
    let out = run(
        &["dash"],
        &script,
        &["--to", to.to_str().expect("utf-8")],
        &armv6,
        &home,
    );
    installed(&out, &to, &files("1.0", "armv6l-linux"));
    // Another version: found from its SHA256SUMS.
    let to = w.join("v6-0.9");
    let args = ["--version", "0.9", "--to", to.to_str().expect("utf-8")];
    installed(
        &run(&["busybox", "sh"], &script, &args, &armv6, &home),
        &to,
        &files("0.9", "armv6l-linux"),
    );
    piped(site, &url, w, &arm64);
    other_tools(site, &script, w, &amd64);

    let to = w.join("none");
    let to_arg = to.to_str().expect("utf-8");
    let out = run(&["dash"], &script, &["--to", to_arg], &sparc, &home);
    refused(&out, &to, "has no binary for linux/sparc64");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("linux/amd64"),
        "lists the published platforms"
    );

    // A tampered binary, then SHA256SUMS rewritten to match it: the signature catches that.
    let key = "df-dist-v1/albatros/0.9/linux/amd64/albatros";
    let evil = b"#!/bin/sh\necho evil\n";
    site.garage
        .s3_put("localhost", key, evil, "application/octet-stream");
    let args = ["--version", "0.9", "--to", to_arg];
    refused(
        &run(&["dash"], &script, &args, &amd64, &home),
        &to,
        "checksum mismatch",
    );
    let sums_key = "df-dist-v1/albatros/0.9/SHA256SUMS";
    let (_, _, sums) = site.garage.s3_get("localhost", sums_key);
    let good = common::sha256_hex(&files("0.9", "x86_64-linux"));
    let forged = String::from_utf8(sums)
        .expect("text")
        .replace(&good, &common::sha256_hex(evil));
    site.garage
        .s3_put("localhost", sums_key, forged.as_bytes(), "text/plain");
    let args = ["--version", "0.9", "--require-signature", "--to", to_arg];
    refused(
        &run(&["busybox", "sh"], &script, &args, &amd64, &home),
        &to,
        "bad signature",
    );
}

/// A PATH of `uname` (the shim) and only `tools`, linked from the system's.
fn only_tools(w: &Path, shim: &Path, tools: &[&str]) -> PathBuf {
    let dir = w.join(format!("tools-{}", tools.join("-")));
    std::fs::create_dir_all(&dir).expect("tools dir");
    for tool in tools {
        let real = which::which(tool).unwrap_or_else(|e| panic!("{tool}: {e}"));
        let _ = std::os::unix::fs::symlink(real, dir.join(tool));
    }
    std::fs::copy(shim.join("uname"), dir.join("uname")).expect("uname");
    dir
}

/// Without curl, sha256sum and minisign: wget and `shasum -a 256` do, the signature is said to
/// be unchecked, and `--require-signature` refuses.
fn other_tools(site: &Released, script: &Path, w: &Path, shim: &Path) {
    let base = [
        "cat", "cut", "mktemp", "rm", "mkdir", "cp", "chmod", "mv", "tr", "sort", "perl",
    ];
    let tools: Vec<&str> = base.iter().copied().chain(["wget", "shasum"]).collect();
    let path = only_tools(w, shim, &tools);
    let to = w.join("wget");
    let to_arg = to.to_str().expect("utf-8");
    let run = |args: &[&str]| {
        Command::new("/usr/bin/dash")
            .arg(script)
            .args(args)
            .env("PATH", &path)
            .env("HOME", w)
            .output()
            .expect("dash")
    };
    let out = run(&["--require-signature", "--to", to_arg]);
    refused(&out, &to, "--require-signature: minisign is not installed");
    let out = run(&["--to", to_arg]);
    installed(&out, &to, &site.files["1.0"]["x86_64-linux"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("the signature was not checked"));
}

/// `curl -fsSL …/install.sh | sh -s -- --to DIR`, as the page says.
fn piped(site: &Released, url: &str, w: &Path, shim: &Path) {
    let to = w.join("piped");
    let path = format!(
        "{}:{}",
        shim.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let line = format!("curl -fsSL {url} | dash -s -- --to {}", to.display());
    let out = Command::new("sh")
        .args(["-c", &line])
        .env("PATH", path)
        .env("HOME", w)
        .output()
        .expect("sh -c");
    installed(&out, &to, &site.files["1.0"]["aarch64-linux"]);
}
