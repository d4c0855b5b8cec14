//! A single-node Garage 2.x (sqlite) with its S3 API and website endpoint on loopback.

use super::process::{Service, free_port};
use super::s3::{HttpResponse, S3Client};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Where `cargo install garage --locked --version 2.5.0 --root ~/.cache/garage-2.5.0` puts it.
const CACHED: &str = ".cache/garage-2.5.0/bin/garage";

/// How to get Garage, for skip/fail messages.
pub const HOW_TO_INSTALL: &str = "cargo install garage --locked --version 2.5.0 --root ~/.cache/garage-2.5.0 \
     (or set ALBA_GARAGE to a garage 2.x binary)";

/// Region configured on the S3 API (Garage checks it in signatures).
pub const REGION: &str = "garage";

/// A running Garage node with one access key; killed on drop.
pub struct Garage {
    /// S3 API port on 127.0.0.1.
    pub s3_port: u16,
    /// Website endpoint port on 127.0.0.1.
    pub web_port: u16,
    /// RPC port on 127.0.0.1.
    pub rpc_port: u16,
    /// S3 region ("garage").
    pub region: String,
    /// Access key id of the test key (owner of every bucket made by [`Garage::create_bucket`]).
    pub key_id: String,
    /// Secret of the test key.
    pub secret: String,
    config: PathBuf,
    service: Service,
    dir: tempfile::TempDir,
}

impl Garage {
    /// The garage binary: `$ALBA_GARAGE`, else `~/.cache/garage-2.5.0/bin/garage`, else `PATH`.
    pub fn binary() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("ALBA_GARAGE") {
            return Some(PathBuf::from(path)).filter(|p| p.is_file());
        }
        let cached = std::env::var_os("HOME").map(|h| Path::new(&h).join(CACHED));
        cached
            .filter(|p| p.is_file())
            .or_else(|| which::which("garage").ok())
    }

    /// Starts Garage, or reports it missing via [`super::missing`] and returns `None`.
    pub fn try_start() -> Option<Garage> {
        let Some(binary) = Self::binary() else {
            super::missing("Garage 2.x", HOW_TO_INSTALL);
            return None;
        };
        Some(Self::start_with(&binary))
    }

    /// Starts Garage; panics if it is missing (prefer [`Garage::try_start`] in tests).
    pub fn start() -> Garage {
        Self::try_start().expect("Garage is not installed (see the SKIP line above)")
    }

    /// Starts the node from `binary`, retrying with new ports if one was taken meanwhile.
    fn start_with(binary: &Path) -> Garage {
        for attempt in 1..=3 {
            let mut garage = Self::spawn(binary, 1, None);
            if garage.wait_for_rpc() {
                garage.setup();
                return garage;
            }
            eprintln!(
                "garage attempt {attempt} exited early:\n{}",
                garage.service.log_tail()
            );
        }
        panic!("Garage did not start in 3 attempts (see the logs above)");
    }

    /// Writes the config and spawns `garage server` in a fresh temp dir: `replication` copies
    /// of each object, and `rpc_secret` shared with the other nodes of a cluster (else its own).
    pub(super) fn spawn(binary: &Path, replication: u8, rpc_secret: Option<&str>) -> Garage {
        let dir = tempfile::Builder::new()
            .prefix("garage")
            .tempdir()
            .expect("could not create Garage's temp dir");
        let (rpc_port, s3_port, web_port) = (free_port(), free_port(), free_port());
        let config = dir.path().join("garage.toml");
        let secret = rpc_secret.map_or_else(|| own_secret(dir.path()), str::to_string);
        let ports = (rpc_port, s3_port, web_port);
        let text = config_text(dir.path(), ports, replication, &secret);
        std::fs::write(&config, text).expect("could not write garage.toml");
        let service = server(binary, &config, dir.path());
        Garage {
            s3_port,
            web_port,
            rpc_port,
            region: REGION.to_string(),
            key_id: String::new(),
            secret: String::new(),
            config,
            service,
            dir,
        }
    }

    /// Polls `garage status` until it answers; false if the server exited first.
    pub(super) fn wait_for_rpc(&mut self) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if !self.service.is_running() {
                return false;
            }
            let status = self.cli().arg("status").output();
            if status.is_ok_and(|o| o.status.success()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "garage did not answer `garage status` within 60 s\n--- log\n{}",
            self.service.log_tail()
        );
    }

    /// Assigns and applies the one-node layout, creates the test key, waits for both APIs.
    fn setup(&mut self) {
        let id = self.node_id();
        self.cli_ok(&["layout", "assign", "-z", "dc1", "-c", "1G", &id]);
        self.cli_ok(&["layout", "apply", "--version", "1"]);
        self.create_key();
        self.wait_for_apis();
    }

    /// The node's id (`garage node id -q`, without its address).
    pub fn node_id(&self) -> String {
        let id = self.cli_ok(&["node", "id", "-q"]);
        let id = id.trim().split('@').next().unwrap_or_default().to_string();
        assert!(!id.is_empty(), "`garage node id -q` printed no node id");
        id
    }

    /// Creates the test key (`alba-test`) and keeps its id and secret.
    pub(super) fn create_key(&mut self) {
        let key = self.cli_ok(&["json-api", "CreateKey", r#"{"name":"alba-test"}"#]);
        let key: serde_json::Value =
            serde_json::from_str(&key).expect("`garage json-api CreateKey` did not print JSON");
        let field = |name: &str| {
            key[name]
                .as_str()
                .unwrap_or_else(|| panic!("CreateKey reply has no {name}: {key}"))
                .to_string()
        };
        self.key_id = field("accessKeyId");
        self.secret = field("secretAccessKey");
    }

    /// Waits until the S3 API and the website endpoint accept connections.
    pub(super) fn wait_for_apis(&mut self) {
        let (s3, web) = (self.s3_port, self.web_port);
        self.service.wait_for_port(s3, Duration::from_secs(30));
        self.service.wait_for_port(web, Duration::from_secs(30));
    }

    /// A `garage -c <config>` command for admin operations on this node.
    pub fn cli(&self) -> Command {
        let binary = Self::binary().expect("the garage binary disappeared");
        garage_command(&binary, &self.config)
    }

    /// Runs `garage <args>` and returns stdout; panics with its output on failure.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let stdout = super::run_ok(self.cli().args(args));
        String::from_utf8(stdout).expect("garage printed non-UTF-8 output")
    }

    /// Creates `name`, gives the test key read/write/owner on it and enables website access
    /// (index document `index.html`). Waits until the S3 API lists it.
    pub fn create_bucket(&self, name: &str) {
        self.create_bucket_without_website(name);
        self.cli_ok(&[
            "bucket",
            "website",
            "--allow",
            "--index-document",
            "index.html",
            name,
        ]);
    }

    /// Like [`Garage::create_bucket`], but leaves website access off (Garage's default), as a
    /// user who forgot `garage bucket website --allow` has it.
    pub fn create_bucket_without_website(&self, name: &str) {
        self.cli_ok(&["bucket", "create", name]);
        self.cli_ok(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            name,
            "--key",
            &self.key_id,
        ]);
        let s3 = self.s3();
        for _ in 0..100 {
            let (status, _, _) = s3.request("GET", name, "", &[("list-type", "2")], b"", &[]);
            if status == 200 {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("bucket {name} was created but S3 ListObjectsV2 never answered 200");
    }

    /// `http://127.0.0.1:<s3 port>`.
    pub fn s3_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The alba target URL of `bucket` (Go CDK parameters).
    pub fn s3_url(&self, bucket: &str) -> String {
        format!(
            "s3://{bucket}?endpoint={}&region={}&s3ForcePathStyle=true",
            self.s3_endpoint(),
            self.region
        )
    }

    /// AWS credentials of the test key plus an environment isolated from `~/.aws`.
    pub fn envs(&self) -> Vec<(String, String)> {
        let mut envs = super::isolation_env(self.dir.path());
        envs.push(("AWS_ACCESS_KEY_ID".into(), self.key_id.clone()));
        envs.push(("AWS_SECRET_ACCESS_KEY".into(), self.secret.clone()));
        envs
    }

    /// A signed S3 client for the test key.
    pub fn s3(&self) -> S3Client {
        S3Client {
            endpoint: self.s3_endpoint(),
            region: self.region.clone(),
            key_id: self.key_id.clone(),
            secret: self.secret.clone(),
        }
    }

    /// GET `bucket/key` through the S3 API: `(status, headers, bytes)`.
    pub fn s3_get(&self, bucket: &str, key: &str) -> HttpResponse {
        self.s3().get(bucket, key)
    }

    /// PUT `bucket/key` through the S3 API with a content type.
    pub fn s3_put(&self, bucket: &str, key: &str, body: &[u8], content_type: &str) {
        self.s3().put(bucket, key, body, content_type)
    }

    /// Every object key in `bucket`, sorted.
    pub fn list_keys(&self, bucket: &str) -> Vec<String> {
        self.s3().list_keys(bucket, "")
    }

    /// GET `path` (starting with `/`) from the website endpoint with `Host: <host>`.
    ///
    /// Garage picks the bucket from the host name (port stripped): `host` is a bucket name,
    /// or `localhost:<web port>` for a bucket named `localhost`.
    pub fn web_get(&self, host: &str, path: &str) -> HttpResponse {
        let url = format!("http://127.0.0.1:{}{path}", self.web_port);
        let response = super::http_client()
            .get(&url)
            .header(reqwest::header::HOST, host)
            .send()
            .unwrap_or_else(|e| panic!("GET {url} (Host: {host}) failed: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .expect("could not read the website response");
        (status, headers, body.to_vec())
    }

    /// `localhost:<web port>/<name>`: an image reference served by a bucket named `localhost`.
    pub fn web_registry_ref(&self, name_and_tag: &str) -> String {
        format!("localhost:{}/{name_and_tag}", self.web_port)
    }

    /// The server log so far.
    pub fn log_text(&self) -> String {
        self.service.log_text()
    }

    /// The temp dir holding config, metadata, data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id while it runs (for SIGSTOP/SIGCONT).
    pub fn pid(&self) -> Option<u32> {
        self.service.pid()
    }

    /// Kills the server (SIGKILL): a node that is down. Its data stays for [`Garage::restart`].
    pub fn kill(&mut self) {
        self.service.kill();
    }

    /// Starts the server again on the same config, ports and data (after [`Garage::kill`]);
    /// returns once its RPC answers and its ports accept connections (serving reads may take
    /// longer: see the cluster's wait).
    pub fn restart(&mut self) {
        self.service.kill();
        let binary = Self::binary().expect("the garage binary disappeared");
        self.service = server(&binary, &self.config, self.dir.path());
        assert!(
            self.wait_for_rpc(),
            "garage did not come back\n{}",
            self.service.log_tail()
        );
        self.wait_for_apis();
    }
}

/// Spawns `garage server` on `config`, its output appended to `dir/garage.log`.
fn server(binary: &Path, config: &Path, dir: &Path) -> Service {
    let mut command = garage_command(binary, config);
    command.arg("server").env("RUST_LOG", "garage=info");
    Service::spawn("garage", command, &dir.join("garage.log"))
}

/// `garage -c <config>` with no inherited `GARAGE_*` overrides.
fn garage_command(binary: &Path, config: &Path) -> Command {
    let mut command = Command::new(binary);
    for name in [
        "GARAGE_RPC_HOST",
        "GARAGE_RPC_SECRET",
        "GARAGE_RPC_SECRET_FILE",
        "GARAGE_ADMIN_TOKEN",
        "GARAGE_ADMIN_TOKEN_FILE",
        "GARAGE_METRICS_TOKEN",
        "GARAGE_METRICS_TOKEN_FILE",
        "GARAGE_CONFIG_FILE",
    ] {
        command.env_remove(name);
    }
    command.arg("-c").arg(config);
    command
}

/// An RPC secret of a node of its own (any 32 bytes in hex).
fn own_secret(dir: &Path) -> String {
    super::sha256_hex(format!("{}{}", dir.display(), std::process::id()).as_bytes())
}

/// The garage.toml of a sqlite node in `dir` (no compression); `ports` are RPC, S3, web.
fn config_text(dir: &Path, ports: (u16, u16, u16), replication: u8, secret: &str) -> String {
    let (rpc_port, s3_port, web_port) = ports;
    format!(
        r#"metadata_dir = "{dir}/meta"
data_dir = "{dir}/data"
db_engine = "sqlite"
replication_factor = {replication}
compression_level = "none"
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"

[s3_web]
bind_addr = "127.0.0.1:{web_port}"
root_domain = ".web.garage.localhost"
"#,
        dir = dir.display()
    )
}
