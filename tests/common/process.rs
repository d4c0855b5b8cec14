//! Child processes that die with their handle, free ports and readiness polling.

use std::collections::HashSet;
use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Ports already handed out in this test process (parallel tests must not share one).
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free TCP port on 127.0.0.1, never the same twice within one test process.
pub fn free_port() -> u16 {
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed = handed.get_or_insert_with(HashSet::new);
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("could not bind a loopback port");
        let port = listener
            .local_addr()
            .expect("could not read the bound port")
            .port();
        if handed.insert(port) {
            return port;
        }
    }
}

/// True when something accepts TCP connections on `127.0.0.1:port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// A running service process: killed and reaped on drop. Its stdout and stderr go to `log`.
pub struct Service {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Service {
    /// Spawns `command` with stdout and stderr appended to the file `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Service {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("could not create {name} log {}: {e}", log.display()));
        let err = out
            .try_clone()
            .expect("could not clone the log file handle");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not start {name} (`{}`): {e}",
                    super::describe(&command)
                )
            });
        Service {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    /// The process id, if it is still running under this handle.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log file holding the process's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log so far (lossy UTF-8; empty if it cannot be read).
    pub fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Panics with the log's tail if the process has exited.
    pub fn assert_running(&mut self) {
        let Some(child) = self.child.as_mut() else {
            panic!("{} was stopped", self.name);
        };
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{} exited early with {status}\n--- log\n{}",
                self.name,
                self.log_tail()
            );
        }
    }

    /// True while the process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Polls `ready` every 100 ms until it holds; panics if the process exits or after `timeout`.
    pub fn wait_until(&mut self, what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
        let start = Instant::now();
        loop {
            if ready() {
                return;
            }
            self.assert_running();
            assert!(
                start.elapsed() < timeout,
                "{}: {what} not ready after {timeout:?}\n--- log\n{}",
                self.name,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the process accepts connections on `port`.
    pub fn wait_for_port(&mut self, port: u16, timeout: Duration) {
        self.wait_until(&format!("port {port}"), timeout, || port_open(port));
    }

    /// Kills the process (SIGKILL) and reaps it; a no-op if already stopped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last 60 lines of the log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}
