//! podman (Debian's 4.3) with a store of its own, used as a pull client.
//!
//! podman has no daemon: a [`Podman`] is a temp folder holding the store (`--root`,
//! `--runroot`, vfs) and config files that keep every podman setting off the host's
//! (containers.conf, storage.conf, registries.conf, policy.json, auth file). Left outside it,
//! by podman itself: an empty `/run/containers/networks`, c/image's blob info cache in
//! `/var/lib/containers/cache` and the lock table `/dev/shm/libpod_lock` (no setting moves
//! them in podman 4.3; pulls allocate no locks).

use super::docker::{inspect_first, run_bounded};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How to get podman, for skip/fail messages.
pub const HOW_TO_INSTALL: &str = "apt-get install podman";

/// How long one `podman pull` may take.
pub const PULL_TIMEOUT: Duration = Duration::from_secs(120);

/// The store shared by the tests of one binary while any of them holds it.
static SHARED: Mutex<Weak<Podman>> = Mutex::new(Weak::new());

/// A podman store in a temp folder, removed on drop.
pub struct Podman {
    binary: PathBuf,
    dir: tempfile::TempDir,
}

impl Podman {
    /// Sets up a store, or reports podman missing and returns `None`.
    pub fn try_new() -> Option<Podman> {
        let binary = super::require_program("podman", HOW_TO_INSTALL)?;
        let dir = tempfile::Builder::new()
            .prefix("podman")
            .tempdir()
            .expect("could not create podman's temp dir");
        write_configs(dir.path());
        Some(Podman { binary, dir })
    }

    /// One store for the tests of the binary that run while another holds it.
    pub fn shared() -> Option<Arc<Podman>> {
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(podman) = slot.upgrade() {
            return Some(podman);
        }
        let podman = Arc::new(Self::try_new()?);
        *slot = Arc::downgrade(&podman);
        Some(podman)
    }

    /// `podman --root R --runroot RR --storage-driver vfs` with this store's config files.
    pub fn podman(&self) -> Command {
        let d = self.dir.path();
        let mut command = Command::new(&self.binary);
        for name in [
            "CONTAINER_HOST",
            "CONTAINER_CONNECTION",
            "CONTAINERS_CONF_OVERRIDE",
            "http_proxy",
            "https_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "no_proxy",
            "NO_PROXY",
        ] {
            command.env_remove(name);
        }
        command
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", d.join("registries.conf"))
            .env("REGISTRY_AUTH_FILE", d.join("auth.json"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .args(["--storage-driver", "vfs"]);
        command
    }

    /// `podman pull --os OS --arch ARCH [--variant V] --tls-verify=false <image_ref>`, bounded.
    ///
    /// `platform` is `os/arch[/variant]`. stdout ends with the image ID; warnings go to stderr.
    pub fn pull(&self, image_ref: &str, platform: &str) -> Output {
        let mut parts = platform.split('/');
        let (os, arch) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let mut command = self.podman();
        command.arg("pull").arg("--signature-policy");
        command.arg(self.dir.path().join("policy.json"));
        command.args(["--tls-verify=false", "--os", os, "--arch", arch]);
        if let Some(variant) = parts.next() {
            command.args(["--variant", variant]);
        }
        command.arg(image_ref);
        run_bounded(&mut command, PULL_TIMEOUT)
    }

    /// `podman image inspect <image_ref>` as JSON (the first and only entry).
    pub fn inspect(&self, image_ref: &str) -> serde_json::Value {
        let mut command = self.podman();
        command.args(["image", "inspect", image_ref]);
        inspect_first(&mut command)
    }

    /// The temp folder holding the store and config files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Writes containers.conf, storage.conf, registries.conf, policy.json and an empty auth file.
///
/// cgroupfs and file events: there is no systemd or journald here.
fn write_configs(dir: &Path) {
    let d = dir.display();
    let files = [
        (
            "containers.conf",
            format!(
                "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 tmp_dir = \"{d}/tmp\"\nstatic_dir = \"{d}/root/libpod\"\n\
                 volume_path = \"{d}/root/volumes\"\n\n\
                 [network]\nnetwork_config_dir = \"{d}/networks\"\n"
            ),
        ),
        (
            "storage.conf",
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{d}/run\"\ngraphroot = \"{d}/root\"\n"
            ),
        ),
        // Only fully qualified references: no search registries, no short-name aliases.
        (
            "registries.conf",
            "unqualified-search-registries = []\nshort-name-mode = \"disabled\"\n".to_string(),
        ),
        (
            "policy.json",
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#.to_string(),
        ),
        // podman refuses a REGISTRY_AUTH_FILE that does not exist.
        ("auth.json", "{}".to_string()),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text)
            .unwrap_or_else(|e| panic!("could not write podman's {name}: {e}"));
    }
}
