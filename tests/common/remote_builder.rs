//! A Nix remote builder on loopback: Debian's OpenSSH server (key only, its own host key and
//! `authorized_keys`, `sshd -D -f CONFIG` in a temp folder) in front of a Nix with its own store.
//!
//! The builder is reached as `ssh-ng://root@127.0.0.1?remote-store=<dir>/store&remote-program=…`:
//! the remote side runs `nix-daemon --stdio --store <dir>/store`, a store rooted in the temp
//! folder (store paths stay `/nix/store/…`; Nix builds in a chroot there, so the builder's
//! `sandbox-paths` hold `/bin`, `/usr` and `/lib*` for the fixtures' `/bin/sh` builders). The
//! wrapper named by `remote-program` gives that daemon its own settings in `NIX_CONFIG`: it
//! claims `aarch64-linux`, which the client's settings of the tests leave out, so such a build
//! can only run there. `ssh` finds the port, the known-hosts file in the temp folder and no
//! prompt in `NIX_SSHOPTS` ([`RemoteBuilder::env`]); the user's `~/.ssh` is never read or
//! written.
//!
//! The trixie chroot's Nix 2.26 can be the client too: the chroot has no `ssh`, so
//! [`RemoteBuilder::chroot_path`] puts a copy of the host's (every library it links is in
//! trixie) on its `PATH`, in the temp folder, which the chroot sees at the same path.

use super::process::{Service, free_port};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How to get the OpenSSH server and client, for skip/fail messages.
pub const HOW_TO_INSTALL: &str = "apt-get install openssh-server openssh-client";

/// The system only the builder builds (the tests' client settings do not claim it).
pub const REMOTE_SYSTEM: &str = "aarch64-linux";

/// The builder daemon's `NIX_CONFIG`: offline, no build users, the fixtures' system.
const REMOTE_NIX_CONFIG: &str = "experimental-features = nix-command flakes
build-users-group =
substituters =
sandbox = false
extra-platforms = aarch64-linux
sandbox-paths = /bin /usr /lib /lib64
";

/// A running sshd whose Nix builds [`REMOTE_SYSTEM`] into its own store; killed on drop.
pub struct RemoteBuilder {
    /// The sshd port on 127.0.0.1.
    pub port: u16,
    service: Service,
    dir: tempfile::TempDir,
}

impl RemoteBuilder {
    /// Starts sshd, or reports OpenSSH missing via [`super::missing`] and returns `None`.
    pub fn try_start() -> Option<RemoteBuilder> {
        let sshd = Path::new("/usr/sbin/sshd");
        if !sshd.is_file() {
            super::missing("the OpenSSH server (/usr/sbin/sshd)", HOW_TO_INSTALL);
            return None;
        }
        super::require_program("ssh", HOW_TO_INSTALL)?;
        super::require_program("ssh-keygen", HOW_TO_INSTALL)?;
        let dir = tempfile::Builder::new()
            .prefix("remote-builder")
            .tempdir()
            .expect("could not create the builder's temp dir");
        let port = free_port();
        write_files(dir.path(), port);
        // sshd insists on its privilege separation folder (the Debian service makes it).
        std::fs::create_dir_all("/run/sshd").expect("could not create /run/sshd");
        let mut command = Command::new(sshd);
        command
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(dir.path().join("sshd_config"));
        let mut service = Service::spawn("sshd", command, &dir.path().join("sshd.log"));
        service.wait_for_port(port, Duration::from_secs(20));
        Some(RemoteBuilder { port, service, dir })
    }

    /// The builder's store URL (for `builders`, `nix copy --from`, `nix path-info --store`).
    pub fn store_url(&self) -> String {
        let dir = self.dir.path().display();
        format!("ssh-ng://root@127.0.0.1?remote-store={dir}/store&remote-program={dir}/nix-daemon")
    }

    /// The `builders` value: this machine for [`REMOTE_SYSTEM`], one job, the client key.
    pub fn builders(&self) -> String {
        let key = self.dir.path().join("client_key");
        format!("{} {REMOTE_SYSTEM} {} 1", self.store_url(), key.display())
    }

    /// `--nix-option` pairs that send [`REMOTE_SYSTEM`] builds to this builder.
    pub fn nix_options(&self) -> Vec<String> {
        let mut options = vec!["--nix-option".into(), "builders".into(), self.builders()];
        options.extend(["--nix-option", "builders-use-substitutes", "true"].map(String::from));
        options
    }

    /// The client's environment: `NIX_SSHOPTS` (port, the temp folder's ssh config: known
    /// hosts there, no prompts) and a `NIX_CONFIG` that claims no [`REMOTE_SYSTEM`].
    pub fn env(&self) -> Vec<(String, String)> {
        let config = self.dir.path().join("ssh_config");
        let local = super::nix::NIX_CONFIG.replace("aarch64-linux ", "");
        assert_ne!(
            local,
            super::nix::NIX_CONFIG,
            "NIX_CONFIG no longer claims aarch64-linux"
        );
        vec![
            (
                "NIX_SSHOPTS".into(),
                format!("-F {} -p {}", config.display(), self.port),
            ),
            ("NIX_CONFIG".into(), local),
        ]
    }

    /// A `PATH` for alba in the Nix chroot whose first folder holds a copy of the host's
    /// `ssh` (in the temp folder, bound into the chroot at the same path).
    pub fn chroot_path(&self) -> String {
        let bin = self.dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("could not create the ssh folder");
        let ssh = which::which("ssh").expect("ssh is on PATH (checked at start)");
        std::fs::copy(&ssh, bin.join("ssh")).expect("could not copy ssh");
        format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display())
    }

    /// Where the builder's store keeps `store_path` (a `/nix/store/…` path) on this machine.
    pub fn host_path(&self, store_path: &str) -> PathBuf {
        let relative = store_path.trim_start_matches('/');
        self.dir.path().join("store").join(relative)
    }

    /// Stops sshd (a builder that is down).
    pub fn stop(&mut self) {
        self.service.kill();
    }

    /// sshd's log so far (connections, authentication).
    pub fn log_text(&self) -> String {
        self.service.log_text()
    }
}

/// Host key, client key, `authorized_keys`, `sshd_config`, `ssh_config` and the remote
/// `nix-daemon` wrapper in `dir`.
fn write_files(dir: &Path, port: u16) {
    for key in ["host_key", "client_key"] {
        let mut keygen = Command::new("ssh-keygen");
        keygen
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join(key));
        super::run_ok(&mut keygen);
    }
    std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))
        .expect("could not write authorized_keys");
    let d = dir.display();
    let sshd_config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n\
         AuthorizedKeysFile {d}/authorized_keys\nAuthenticationMethods publickey\n\
         PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n"
    );
    write(dir, "sshd_config", &sshd_config, 0o644);
    let ssh_config = format!(
        "Host *\n  StrictHostKeyChecking no\n  UserKnownHostsFile {d}/known_hosts\n  \
         BatchMode yes\n  IdentitiesOnly yes\n"
    );
    write(dir, "ssh_config", &ssh_config, 0o644);
    let wrapper = format!(
        "#!/bin/sh\n# The builder's Nix: its own settings, its own store (--store from remote-store).\n\
         export NIX_CONFIG='{REMOTE_NIX_CONFIG}'\nexec nix-daemon \"$@\"\n"
    );
    write(dir, "nix-daemon", &wrapper, 0o755);
}

fn write(dir: &Path, name: &str, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("could not write {name}: {e}"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("could not chmod {name}: {e}"));
}
