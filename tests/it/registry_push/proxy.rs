//! The fault proxy of the registry tests: a TCP proxy between alba and the registry that
//! answers 503 or 429 to chosen requests, or kills the registry and cuts every connection at a
//! chosen request, and records when each request came.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What the proxy does with a request, decided from its request line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Action {
    /// Pass it on to the registry.
    Forward,
    /// Answer `503 Service Unavailable` (`Retry-After: 1`) without bothering the registry.
    Answer503,
    /// Answer `429 Too Many Requests` (`Retry-After: 2`) without bothering the registry.
    Answer429,
    /// Kill the registry and cut every connection, now and later.
    Cut,
}

type Decide = Box<dyn FnMut(&str) -> Action + Send>;

/// A request the proxy saw: when, its request line and what the proxy did with it.
#[derive(Clone, Debug)]
pub(super) struct Seen {
    pub(super) at: Instant,
    pub(super) line: String,
    pub(super) action: Action,
}

/// A TCP proxy in front of the registry that injects faults per request (see [`Action`]).
/// Requests are recognised at the start of a read: alba's HTTP client sends one request at
/// a time per connection and writes its head in one go.
pub(super) struct Proxy {
    pub(super) port: u16,
    state: Arc<ProxyState>,
}

struct ProxyState {
    upstream: u16,
    decide: Mutex<Decide>,
    on_cut: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    cut: AtomicBool,
    stop: AtomicBool,
    streams: Mutex<Vec<TcpStream>>,
    seen: Mutex<Vec<Seen>>,
}

impl Proxy {
    /// Starts the proxy for the registry on `upstream`; `on_cut` runs once at the first cut.
    pub(super) fn start(
        upstream: u16,
        decide: impl FnMut(&str) -> Action + Send + 'static,
        on_cut: impl FnOnce() + Send + 'static,
    ) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let state = Arc::new(ProxyState {
            upstream,
            decide: Mutex::new(Box::new(decide)),
            on_cut: Mutex::new(Some(Box::new(on_cut))),
            cut: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            streams: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
        });
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                if shared.cut.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || shared.serve(client));
            }
        });
        Proxy { port, state }
    }

    /// The `docker://` URL of `repo` through the proxy.
    pub(super) fn url(&self, repo: &str) -> String {
        format!("docker://127.0.0.1:{}/{repo}", self.port)
    }

    /// Every request so far, in the order they came.
    pub(super) fn seen(&self) -> Vec<Seen> {
        self.state
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wakes the accept loop
    }
}

impl ProxyState {
    /// Relays one client connection, applying [`Action`]s to its requests.
    fn serve(&self, mut client: TcpStream) {
        let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", self.upstream)) else {
            return;
        };
        if let (Ok(c), Ok(u)) = (client.try_clone(), upstream.try_clone()) {
            self.streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend([c, u]);
        }
        let (Ok(mut back_from), Ok(mut back_to)) = (upstream.try_clone(), client.try_clone())
        else {
            return;
        };
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut back_from, &mut back_to);
            let _ = back_to.shutdown(Shutdown::Write);
        });
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            let action = request_line(chunk).map_or(Action::Forward, |line| {
                let at = Instant::now();
                let action = (self.decide.lock().unwrap_or_else(|e| e.into_inner()))(line);
                self.seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Seen {
                        at,
                        line: line.to_string(),
                        action,
                    });
                action
            });
            match action {
                Action::Forward => {
                    if upstream.write_all(chunk).is_err() {
                        break;
                    }
                }
                Action::Answer503 => {
                    let answer = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n";
                    if client.write_all(answer).is_err() {
                        break;
                    }
                }
                Action::Answer429 => {
                    let answer = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\nContent-Length: 0\r\n\r\n";
                    if client.write_all(answer).is_err() {
                        break;
                    }
                }
                Action::Cut => {
                    self.cut_all();
                    break;
                }
            }
        }
        let _ = upstream.shutdown(Shutdown::Write);
    }

    /// Kills the registry (once) and shuts every relayed connection.
    fn cut_all(&self) {
        self.cut.store(true, Ordering::SeqCst);
        if let Some(on_cut) = self.on_cut.lock().unwrap_or_else(|e| e.into_inner()).take() {
            on_cut();
        }
        for stream in self
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// `POST /v2/albatros/blobs/uploads/ HTTP/1.1` when a read starts with a request line.
fn request_line(chunk: &[u8]) -> Option<&str> {
    let end = chunk.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&chunk[..end]).ok()?;
    let methods = ["GET ", "HEAD ", "POST ", "PUT ", "PATCH ", "DELETE "];
    (methods.iter().any(|m| line.starts_with(m)) && line.contains(" /v2/")).then_some(line)
}

/// True for a blob upload request with this method (`POST` starts a session, `PUT` ends it).
pub(super) fn is_upload(line: &str, method: &str) -> bool {
    line.starts_with(method)
        && line.as_bytes().get(method.len()) == Some(&b' ')
        && line.contains("/blobs/uploads/")
}
