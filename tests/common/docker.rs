//! A private `dockerd` (Debian's docker.io) with its own data root, exec root and socket,
//! used as a pull client through `docker -H unix://<socket>`.
//!
//! vfs storage, no iptables, no bridge: it touches nothing of the host's networking, and
//! `--insecure-registry 127.0.0.0/8` lets it pull over plain HTTP from loopback services
//! (`localhost:<port>` resolves into that range too). The one thing left outside the temp
//! folder is the empty `/run/docker/plugins` that dockerd always creates.

use super::process::Service;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How to get docker, for skip/fail messages.
pub const HOW_TO_INSTALL: &str = "apt-get install docker.io (dockerd runs as root)";

/// How long one `docker pull` may take (small vfs images pull in well under a second).
pub const PULL_TIMEOUT: Duration = Duration::from_secs(120);

/// The daemon shared by the tests of one binary while any of them holds it.
static SHARED: Mutex<Weak<Docker>> = Mutex::new(Weak::new());

/// A running dockerd; stopped (SIGTERM, then SIGKILL) and its folder removed on drop.
pub struct Docker {
    /// The API socket (`docker -H unix://<socket>`).
    pub socket: PathBuf,
    client: PathBuf,
    service: Service,
    dir: tempfile::TempDir,
}

impl Docker {
    /// Starts dockerd, or reports docker (or root) missing and returns `None`.
    pub fn try_start() -> Option<Docker> {
        super::require_program("dockerd", HOW_TO_INSTALL)?;
        let client = client_binary()?;
        if !is_root() {
            super::missing("dockerd (it needs root here)", "run the tests as root");
            return None;
        }
        Some(Self::launch(client))
    }

    /// One daemon for all tests of the binary that run while another holds it: cheaper than
    /// one each, and still stopped when the last holder drops it (statics never drop).
    pub fn shared() -> Option<Arc<Docker>> {
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(docker) = slot.upgrade() {
            return Some(docker);
        }
        let docker = Arc::new(Self::try_start()?);
        *slot = Arc::downgrade(&docker);
        Some(docker)
    }

    /// Starts dockerd in a short temp dir under /tmp and waits until `docker version` answers.
    fn launch(client: PathBuf) -> Docker {
        // Unix socket paths must stay under ~100 bytes, dockerd's containerd nests its own.
        let dir = tempfile::Builder::new()
            .prefix("dkd")
            .tempdir_in("/tmp")
            .expect("could not create dockerd's temp dir");
        let socket = dir.path().join("d.sock");
        let mut service = Service::spawn(
            "dockerd",
            dockerd_command(dir.path(), &socket),
            &dir.path().join("dockerd.log"),
        );
        service.wait_until("docker version", Duration::from_secs(60), || {
            docker_command(&client, &socket, dir.path())
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        Docker {
            socket,
            client,
            service,
            dir,
        }
    }

    /// A `docker -H unix://<socket>` command that ignores the caller's docker settings.
    pub fn docker(&self) -> Command {
        docker_command(&self.client, &self.socket, self.dir.path())
    }

    /// `docker pull --platform <platform> <image_ref>`, bounded by [`PULL_TIMEOUT`].
    pub fn pull(&self, image_ref: &str, platform: &str) -> Output {
        let mut command = self.docker();
        command.args(["pull", "--platform", platform, image_ref]);
        run_bounded(&mut command, PULL_TIMEOUT)
    }

    /// `docker image inspect <image_ref>` as JSON (the first and only entry); `Id` is
    /// `sha256:<config digest>`.
    pub fn inspect(&self, image_ref: &str) -> serde_json::Value {
        let mut command = self.docker();
        command.args(["image", "inspect", image_ref]);
        inspect_first(&mut command)
    }

    /// The daemon log so far.
    pub fn log_text(&self) -> String {
        self.service.log_text()
    }

    /// dockerd's temp dir (data root, exec root, socket, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGTERM, so dockerd stops the containerd it started; waits up to 20 s for it.
    fn stop_gracefully(&mut self) {
        let Some(pid) = self.service.pid() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.service.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        self.stop_gracefully();
        self.service.kill();
        // If dockerd had to be killed, its containerd is orphaned: kill it by its pid file.
        let pid_file = self.dir.path().join("exec/containerd/containerd.pid");
        if let Ok(pid) = std::fs::read_to_string(pid_file) {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
    }
}

/// The docker client: Debian's `/usr/bin/docker` (the daemon's own version) when present,
/// else `docker` on `PATH`.
fn client_binary() -> Option<PathBuf> {
    let debian = PathBuf::from("/usr/bin/docker");
    if debian.is_file() {
        return Some(debian);
    }
    super::require_program("docker", HOW_TO_INSTALL)
}

/// True when this process runs as root (`/proc/self` belongs to the effective uid).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `dockerd` with every path under `dir`, the flags of DESIGN.md, and a config file of its own
/// so neither /etc/docker/daemon.json nor /etc/docker/key.json is read or written.
fn dockerd_command(dir: &Path, socket: &Path) -> Command {
    let config = dir.join("daemon.json");
    let key = dir.join("key.json");
    let text = serde_json::json!({ "deprecated-key-path": key }).to_string();
    std::fs::write(&config, text).expect("could not write dockerd's daemon.json");
    let mut command = Command::new("dockerd");
    remove_proxy_and_docker_env(&mut command);
    command
        .arg("--config-file")
        .arg(&config)
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("dockerd.pid"))
        .arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .args([
            "--storage-driver=vfs",
            "--iptables=false",
            "--ip-masq=false",
            "--bridge=none",
            "--insecure-registry",
            "127.0.0.0/8",
        ]);
    command
}

/// `docker -H unix://<socket>` with `DOCKER_CONFIG` pointing at a missing folder in `dir`.
fn docker_command(client: &Path, socket: &Path, dir: &Path) -> Command {
    let mut command = Command::new(client);
    remove_proxy_and_docker_env(&mut command);
    command
        .env("DOCKER_CONFIG", dir.join("client-config"))
        .arg("-H")
        .arg(format!("unix://{}", socket.display()));
    command
}

/// Keeps the caller's proxies and docker settings away: every service here is on loopback.
fn remove_proxy_and_docker_env(command: &mut Command) {
    for name in [
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
        "DOCKER_CONFIG",
        "DOCKER_DEFAULT_PLATFORM",
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        command.env_remove(name);
    }
}

/// Runs an `image inspect` (bounded) and returns the first entry of the JSON list it prints.
pub fn inspect_first(command: &mut Command) -> serde_json::Value {
    let output = run_bounded(command, Duration::from_secs(30));
    assert!(
        output.status.success(),
        "`{}` failed:\n{}",
        super::describe(command),
        String::from_utf8_lossy(&output.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("`{}` printed no JSON: {e}", super::describe(command)));
    list[0].clone()
}

/// Runs `command` with piped output, killing it after `timeout` (then the output says so).
///
/// Shared by the docker and podman clients: a hung pull must fail the test, not stall it.
pub fn run_bounded(command: &mut Command, timeout: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run `{}`: {e}", super::describe(command)));
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let (status, timed_out) = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break (status, false);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break (child.wait().expect("could not reap a killed command"), true);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = stderr.join().unwrap_or_default();
    if timed_out {
        stderr.extend(format!("\n(killed by the test after {timeout:?})\n").into_bytes());
    }
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr,
    }
}

/// Reads a child's pipe to the end on its own thread (so a full pipe never blocks the child).
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}
