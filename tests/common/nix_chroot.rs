//! A current Nix (Debian trixie's `nix-bin`, 2.26) in a debootstrap chroot made by tests/run.sh.
//!
//! Every command runs as `unshare --mount` → `chroot`: the mounts Nix 2.26 needs (`/proc`, and
//! `/dev` with `/dev/pts`, else "opening pseudoterminal master: No such device") live in a
//! private mount namespace that the kernel tears down when the command exits. Nothing is
//! mounted on the host, so concurrent tests need no lock or reference count, a killed test
//! leaves no mount behind, and no unmount can ever touch the host's `/dev`.
//!
//! The host's temp folder is bound at the same path inside, so fixture flakes, folder targets
//! and alba's `XDG_CACHE_HOME` (all under it) have one path on both sides; only store paths
//! differ: the chroot has its own `/nix` ([`host_path`]). The alba binary under test is bound
//! onto `/usr/local/bin/alba`: no copy of the 100 MB debug binary per run. The chroot shares
//! the host's network namespace, so services on loopback are reachable from inside.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where tests/run.sh creates the chroot when `ALBA_NIX_CHROOT` is unset (below `$HOME`).
const CACHED: &str = ".cache/alba-nix-trixie";

/// Where the alba binary under test appears inside the chroot.
pub const ALBA_INSIDE: &str = "/usr/local/bin/alba";

/// `PATH` of the programs run inside (alba's default for finding `nix`).
const INNER_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/// How to get the chroot, for skip/fail messages.
pub const HOW_TO_INSTALL: &str = "tests/run.sh (it runs `debootstrap --variant=minbase \
     --include=nix-bin,git,ca-certificates trixie ~/.cache/alba-nix-trixie` once, as root; \
     or set ALBA_NIX_CHROOT to such a chroot)";

/// Mounts what Nix needs in the (already private) namespace, binds the temp folder and alba,
/// then execs the program inside. Arguments: root, temp folder, alba binary, then the program
/// and its arguments. The program gets the caller's PATH, but the shell uses a fixed one: a
/// test may set `PATH=/nonexistent` for alba (the "Nix missing" case).
const SCRIPT: &str = r#"set -e
unset ALBA_NIX_CHROOT_SCRIPT
root=$1 tmp=$2 alba=$3
shift 3
inner_path=$PATH
PATH=/usr/sbin:/usr/bin:/sbin:/bin
cwd=$(pwd)
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mkdir -p "$root$tmp"
mount --rbind "$tmp" "$root$tmp"
[ -e "$root/usr/local/bin/alba" ] || : > "$root/usr/local/bin/alba"
mount --bind "$alba" "$root/usr/local/bin/alba"
exec chroot "$root" /bin/sh -c 'cd "$1" 2>/dev/null || cd /; PATH=$2; shift 2; exec "$@"' \
  sh "$cwd" "$inner_path" "$@"
"#;

/// The chroot folder: `$ALBA_NIX_CHROOT`, else `~/.cache/alba-nix-trixie`.
pub fn root() -> PathBuf {
    if let Some(dir) = std::env::var_os("ALBA_NIX_CHROOT") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(CACHED)
}

/// The `nix --version` line from inside the chroot, checked once per test process;
/// `Err` says why the chroot is unusable.
fn probe() -> &'static Result<String, String> {
    static PROBE: OnceLock<Result<String, String>> = OnceLock::new();
    PROBE.get_or_init(|| {
        let root = root();
        if !root.join("usr/bin/nix").is_file() {
            return Err(format!("no chroot with nix-bin at {}", root.display()));
        }
        if !is_root() {
            return Err("the Nix chroot needs root (unshare --mount, chroot)".into());
        }
        let output = command("nix")
            .arg("--version")
            .output()
            .map_err(|e| format!("could not run unshare/chroot: {e}"))?;
        let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if output.status.success() && text.starts_with("nix (Nix) 2.") {
            Ok(text)
        } else {
            Err(format!(
                "`nix --version` in {} failed: {}{}",
                root.display(),
                text,
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    })
}

/// True when running as root (unshare and chroot need it).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// True if the chroot's Nix runs; otherwise reports it via [`super::missing`].
pub fn available() -> bool {
    match probe() {
        Ok(_) => true,
        Err(why) => {
            super::missing(&format!("the Nix 2.26 chroot ({why})"), HOW_TO_INSTALL);
            false
        }
    }
}

/// The chroot's `nix --version` line (e.g. `nix (Nix) 2.26.3`), if it runs.
pub fn version() -> Option<&'static str> {
    probe().as_ref().ok().map(String::as_str)
}

/// A command running `program` (a path inside the chroot, or a name on [`INNER_PATH`]) in
/// the chroot, in the caller's current directory (the chroot's `/` if that is outside the
/// temp folder). Arguments and environment added to it reach `program`.
pub fn command(program: &str) -> Command {
    let tmp = std::env::temp_dir();
    let tmp = tmp.canonicalize().unwrap_or(tmp);
    let mut command = Command::new("/usr/bin/unshare");
    command
        .args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
        .arg(r#"eval "$ALBA_NIX_CHROOT_SCRIPT""#)
        .arg("alba-nix-chroot")
        .arg(root())
        .arg(tmp)
        .arg(env!("CARGO_BIN_EXE_alba"))
        .arg(program)
        .env("PATH", INNER_PATH)
        // In the environment, not the arguments: failure messages print the command line.
        .env("ALBA_NIX_CHROOT_SCRIPT", SCRIPT);
    command
}

/// The host path of a path inside the chroot (a store path `alba build` printed, say).
pub fn host_path(inside: &Path) -> PathBuf {
    let relative = inside.strip_prefix("/").unwrap_or(inside);
    root().join(relative)
}
