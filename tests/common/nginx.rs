//! Debian's nginx in the foreground, serving one server block that includes a fragment.

use super::process::{Service, free_port};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// How to get nginx, for skip/fail messages.
pub const HOW_TO_INSTALL: &str = "apt-get install nginx";

/// A running nginx; killed on drop.
pub struct Nginx {
    /// Port on 127.0.0.1.
    pub port: u16,
    service: Service,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx with `server { listen 127.0.0.1:PORT; include <fragment>; }`,
    /// or reports nginx missing and returns `None`.
    pub fn try_start(fragment: &Path) -> Option<Nginx> {
        Self::try_start_on(fragment, free_port())
    }

    /// Like [`Nginx::try_start`], on `port`: for a folder whose public address (`web=`, which
    /// signatures name) must be known before the fragment exists.
    pub fn try_start_on(fragment: &Path, port: u16) -> Option<Nginx> {
        let binary = super::require_program("nginx", HOW_TO_INSTALL)?;
        Some(Self::launch(&binary, fragment, port))
    }

    /// Starts nginx including `fragment`; panics if nginx is missing.
    pub fn start(fragment: &Path) -> Nginx {
        Self::try_start(fragment).expect("nginx is not installed (see the SKIP line above)")
    }

    /// Writes nginx.conf in a fresh temp dir, checks it with `nginx -t`, starts and waits.
    fn launch(binary: &Path, fragment: &Path, port: u16) -> Nginx {
        let dir = tempfile::Builder::new()
            .prefix("nginx")
            .tempdir()
            .expect("could not create nginx's temp dir");
        let fragment = fragment
            .canonicalize()
            .unwrap_or_else(|e| panic!("nginx fragment {}: {e}", fragment.display()));
        let config = dir.path().join("nginx.conf");
        std::fs::write(&config, config_text(dir.path(), port, &fragment))
            .expect("could not write nginx.conf");
        let command = || {
            let mut c = Command::new(binary);
            c.arg("-p").arg(dir.path()).arg("-c").arg(&config);
            c.arg("-e").arg(dir.path().join("error.log"));
            c
        };
        super::run_ok(command().arg("-t"));
        let mut service = Service::spawn("nginx", command(), &dir.path().join("nginx.out"));
        service.wait_for_port(port, Duration::from_secs(20));
        Nginx { port, service, dir }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// GET `path` (starting with `/`): `(status, headers, bytes)`.
    pub fn get(&self, path: &str) -> super::s3::HttpResponse {
        let url = format!("{}{path}", self.base_url());
        let response = super::http_client()
            .get(&url)
            .send()
            .unwrap_or_else(|e| panic!("GET {url} failed: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().expect("could not read nginx's response");
        (status, headers, body.to_vec())
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

/// A single-process nginx config: no daemon, no user switch (the process keeps the
/// caller's user, so it can read 0700 temp dirs), all paths under `dir`.
fn config_text(dir: &Path, port: u16, fragment: &Path) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        include {fragment};
    }}
}}
"#,
        fragment = fragment.display()
    )
}
