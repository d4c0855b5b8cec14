//! containerd with its own root, state and socket, used as a pull client through `ctr`.

use super::process::Service;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// How to get containerd, for skip/fail messages.
pub const HOW_TO_INSTALL: &str = "apt-get install containerd (needs root)";

/// A running containerd; killed on drop.
pub struct Containerd {
    /// The gRPC socket (`ctr -a <socket>`).
    pub socket: PathBuf,
    service: Service,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Starts containerd, or reports it missing and returns `None`.
    pub fn try_start() -> Option<Containerd> {
        super::require_program("containerd", HOW_TO_INSTALL)?;
        super::require_program("ctr", HOW_TO_INSTALL)?;
        Some(Self::launch())
    }

    /// Starts containerd; panics if it is missing.
    pub fn start() -> Containerd {
        Self::try_start().expect("containerd is not installed (see the SKIP line above)")
    }

    /// Writes a config in a short temp dir under /tmp and waits until `ctr version` answers.
    fn launch() -> Containerd {
        // A unix socket path must stay under ~100 bytes: keep the dir short, under /tmp.
        let dir = tempfile::Builder::new()
            .prefix("ctrd")
            .tempdir_in("/tmp")
            .expect("could not create containerd's temp dir");
        let socket = dir.path().join("c.sock");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, config_text(dir.path(), &socket))
            .expect("could not write containerd's config.toml");
        let mut command = Command::new("containerd");
        command.arg("--config").arg(&config);
        let mut service = Service::spawn("containerd", command, &dir.path().join("containerd.log"));
        let probe = socket.clone();
        service.wait_until("ctr version", Duration::from_secs(30), || {
            ctr(&probe)
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
        Containerd {
            socket,
            service,
            dir,
        }
    }

    /// A `ctr -a <socket>` command.
    pub fn ctr(&self) -> Command {
        ctr(&self.socket)
    }

    /// `ctr image pull [--plain-http] --platform <platform> <image_ref>` (native snapshotter).
    ///
    /// `image_ref` has no transport prefix: `127.0.0.1:5000/name:tag`.
    pub fn pull(&self, image_ref: &str, platform: &str, plain_http: bool) -> Output {
        let mut command = self.ctr();
        command.args(["image", "pull", "--snapshotter", "native"]);
        if plain_http {
            command.arg("--plain-http");
        }
        command.args(["--platform", platform, image_ref]);
        command
            .output()
            .unwrap_or_else(|e| panic!("could not run `{}`: {e}", super::describe(&command)))
    }

    /// Like [`Containerd::pull`] with basic auth (`--user user:password`).
    pub fn pull_with_user(
        &self,
        image_ref: &str,
        platform: &str,
        plain_http: bool,
        user: &str,
    ) -> Output {
        let mut command = self.ctr();
        command.args(["image", "pull", "--snapshotter", "native", "--user", user]);
        if plain_http {
            command.arg("--plain-http");
        }
        command.args(["--platform", platform, image_ref]);
        command
            .output()
            .unwrap_or_else(|e| panic!("could not run `{}`: {e}", super::describe(&command)))
    }

    /// The server log so far.
    pub fn log_text(&self) -> String {
        self.service.log_text()
    }

    /// containerd's temp dir (config, root, state, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// `ctr -a <socket>`, never picking up a `CONTAINERD_*` setting from the caller.
fn ctr(socket: &Path) -> Command {
    let mut command = Command::new("ctr");
    for name in [
        "CONTAINERD_ADDRESS",
        "CONTAINERD_NAMESPACE",
        "CONTAINERD_SNAPSHOTTER",
    ] {
        command.env_remove(name);
    }
    command.arg("-a").arg(socket);
    command
}

/// containerd 1.6 config (version 2): everything under `dir`, CRI and exotic snapshotters off.
fn config_text(dir: &Path, socket: &Path) -> String {
    let d = dir.display();
    let s = socket.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{s}"

[ttrpc]
  address = "{s}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#
    )
}
