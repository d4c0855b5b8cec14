//! Debian's `docker-registry` (distribution 2.8) on a loopback port, filesystem storage.

use super::process::{Service, free_port};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How to get the registry, for skip/fail messages.
pub const HOW_TO_INSTALL: &str = "apt-get install docker-registry apache2-utils";

/// A running registry; killed on drop. Its log (including the access log) is in a file.
pub struct Registry {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// `(user, password)` when htpasswd auth is on.
    pub credentials: Option<(String, String)>,
    service: Service,
    config: PathBuf,
    dir: tempfile::TempDir,
}

/// One line of the registry's access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLine {
    pub method: String,
    pub path: String,
    pub status: u16,
}

impl Registry {
    /// Starts a registry without auth, or reports it missing and returns `None`.
    pub fn try_start() -> Option<Registry> {
        super::require_program("docker-registry", HOW_TO_INSTALL)?;
        Some(Self::launch(None))
    }

    /// Starts a registry requiring HTTP basic auth, or reports a missing tool and returns `None`.
    pub fn try_start_with_auth(user: &str, password: &str) -> Option<Registry> {
        super::require_program("docker-registry", HOW_TO_INSTALL)?;
        super::require_program("htpasswd", HOW_TO_INSTALL)?;
        Some(Self::launch(Some((user.into(), password.into()))))
    }

    /// Starts a registry without auth; panics if it is missing.
    pub fn start() -> Registry {
        Self::try_start().expect("docker-registry is not installed (see the SKIP line above)")
    }

    /// Starts a registry with htpasswd (bcrypt) auth for one user; panics if tools are missing.
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Self::try_start_with_auth(user, password)
            .expect("docker-registry or htpasswd is not installed (see the SKIP line above)")
    }

    /// Writes the config (and htpasswd file) in a fresh temp dir and starts the server.
    fn launch(credentials: Option<(String, String)>) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("registry")
            .tempdir()
            .expect("could not create the registry's temp dir");
        let port = free_port();
        let auth = credentials
            .as_ref()
            .map(|(user, password)| write_htpasswd(dir.path(), user, password));
        let config = dir.path().join("config.yml");
        std::fs::write(&config, config_text(dir.path(), port, auth.as_deref()))
            .expect("could not write the registry config");
        let service = spawn(&config, dir.path(), port);
        Registry {
            port,
            credentials,
            service,
            config,
            dir,
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `docker://127.0.0.1:<port>/<repo>` (repo may carry `:tag`).
    pub fn url(&self, repo: &str) -> String {
        format!("docker://{}/{repo}", self.host())
    }

    /// `GET http://127.0.0.1:<port><path>` with the registry's credentials, if any.
    pub fn get(&self, path: &str, accept: &str) -> super::s3::HttpResponse {
        let url = format!("http://{}{path}", self.host());
        let mut request = super::http_client().get(&url).header("accept", accept);
        if let Some((user, password)) = &self.credentials {
            request = request.basic_auth(user, Some(password));
        }
        let response = request
            .send()
            .unwrap_or_else(|e| panic!("GET {url} failed: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .expect("could not read the registry response");
        (status, headers, body.to_vec())
    }

    /// The whole server log so far (application log and access log interleaved).
    pub fn log_text(&self) -> String {
        self.service.log_text()
    }

    /// The access log lines so far (combined log format lines of the log).
    pub fn access_log(&self) -> Vec<AccessLine> {
        self.log_text()
            .lines()
            .filter_map(parse_access_line)
            .collect()
    }

    /// How many requests with `method` on a path containing `path_part` were logged.
    pub fn count_requests(&self, method: &str, path_part: &str) -> usize {
        self.access_log()
            .iter()
            .filter(|l| l.method == method && l.path.contains(path_part))
            .count()
    }

    /// Blob upload requests so far (`PUT`/`PATCH`/`POST` under `/blobs/uploads/`).
    pub fn blob_upload_requests(&self) -> usize {
        self.access_log()
            .iter()
            .filter(|l| {
                matches!(l.method.as_str(), "PUT" | "PATCH" | "POST")
                    && l.path.contains("/blobs/uploads/")
            })
            .count()
    }

    /// Kills the server now (SIGKILL), e.g. to interrupt a push.
    pub fn kill(&mut self) {
        self.service.kill();
    }

    /// Starts the server again on the same port and storage (after [`Registry::kill`]).
    pub fn restart(&mut self) {
        self.service.kill();
        self.service = spawn(&self.config, self.dir.path(), self.port);
    }

    /// The storage root (`<tmp>/data`).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// Spawns `docker-registry serve <config>` and waits until `/v2/` answers.
fn spawn(config: &Path, dir: &Path, port: u16) -> Service {
    let mut command = Command::new("docker-registry");
    command.arg("serve").arg(config);
    for name in ["REGISTRY_HTTP_ADDR", "REGISTRY_STORAGE", "REGISTRY_AUTH"] {
        command.env_remove(name);
    }
    let mut service = Service::spawn("docker-registry", command, &dir.join("registry.log"));
    service.wait_until("GET /v2/", Duration::from_secs(30), || {
        super::http_client()
            .get(format!("http://127.0.0.1:{port}/v2/"))
            .send()
            .is_ok_and(|r| r.status().as_u16() == 200 || r.status().as_u16() == 401)
    });
    service
}

/// Writes `<dir>/htpasswd` with a bcrypt entry (`htpasswd -Bbn`) and returns its path.
fn write_htpasswd(dir: &Path, user: &str, password: &str) -> PathBuf {
    let line = super::run_ok(Command::new("htpasswd").args(["-Bbn", user, password]));
    let path = dir.join("htpasswd");
    std::fs::write(&path, line).expect("could not write the htpasswd file");
    path
}

/// The registry's config.yml: filesystem storage, deletes on, access log on, optional auth.
fn config_text(dir: &Path, port: u16, htpasswd: Option<&Path>) -> String {
    let mut text = format!(
        "version: 0.1\n\
         log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n",
        dir.join("data").display()
    );
    if let Some(path) = htpasswd {
        text.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: alba-test\n    path: {}\n",
            path.display()
        ));
    }
    text
}

/// Parses `127.0.0.1 - - [date] "PUT /v2/... HTTP/1.1" 201 0 "" "agent"`.
fn parse_access_line(line: &str) -> Option<AccessLine> {
    let (_, rest) = line.split_once("] \"")?;
    let (request, rest) = rest.split_once('"')?;
    let mut parts = request.split(' ');
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let status = rest.split_whitespace().next()?.parse().ok()?;
    Some(AccessLine {
        method,
        path,
        status,
    })
}
