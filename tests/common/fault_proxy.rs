//! An HTTP proxy that injects faults between alba and a service (Garage's S3 API, a registry).
//!
//! Each request is either forwarded to the upstream port or, at the configured rate, answered
//! with a fault: 503 `SlowDown` (S3's XML), 500 with an HTML body (what a reverse proxy in front
//! of the store sends), 429 with `Retry-After: 1`, or a connection dropped without an answer.
//! Writes (PUT, POST, DELETE) can be delayed to widen race windows, and every request by a
//! fixed latency (a store across a network, for the scale tests and benchmarks). The faults come from a
//! seeded generator, so a failing run can be repeated (up to thread scheduling).
//!
//! It listens on loopback only, serves one request per connection (it answers with
//! `Connection: close`, so clients reconnect; that keeps request framing trivial), and every
//! socket has a timeout, so a stuck client or upstream cannot hang a test. Dropping the proxy
//! stops it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Socket timeout for every read and write of the proxy.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// What the proxy does, changeable while it runs.
struct Settings {
    /// Fault rate in millionths.
    rate_ppm: AtomicU64,
    /// Delay of each forwarded write, in milliseconds.
    write_latency_ms: AtomicU64,
    /// Delay of every request (reads too), in milliseconds.
    latency_ms: AtomicU64,
    rng: Mutex<u64>,
    /// Faults only for writes (PUT, POST, DELETE), reads always pass.
    writes_only: AtomicBool,
    stop: AtomicBool,
    /// Requests seen, and faults injected, by kind.
    requests: AtomicU64,
    faults: [AtomicU64; 4],
    /// Writes (PUT, POST, DELETE) seen, faulted or not.
    writes: AtomicU64,
    /// Requests being served now, and the most at once since the counter was reset.
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

/// A running fault proxy; stopped on drop.
pub struct FaultProxy {
    /// The port alba talks to (127.0.0.1).
    pub port: u16,
    settings: Arc<Settings>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Fault kinds, in the order of [`FaultProxy::faults`].
pub const KINDS: [&str; 4] = ["503 SlowDown", "500 HTML", "429 Retry-After", "dropped"];

impl FaultProxy {
    /// Starts a proxy in front of `127.0.0.1:upstream`, injecting faults at `rate` (0.0–1.0)
    /// from `seed`.
    pub fn start(upstream: u16, rate: f64, seed: u64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let settings = Arc::new(Settings {
            rate_ppm: AtomicU64::new((rate * 1e6) as u64),
            write_latency_ms: AtomicU64::new(0),
            latency_ms: AtomicU64::new(0),
            rng: Mutex::new(seed ^ 0x9E37_79B9_7F4A_7C15),
            writes_only: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            faults: Default::default(),
            writes: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
        });
        let shared = settings.clone();
        let thread = std::thread::spawn(move || accept_loop(listener, upstream, shared));
        FaultProxy {
            port,
            settings,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Changes the fault rate (0.0 turns faults off).
    pub fn set_rate(&self, rate: f64) {
        self.settings
            .rate_ppm
            .store((rate * 1e6) as u64, Ordering::Relaxed);
    }

    /// Delays every forwarded write (PUT, POST, DELETE) by `latency`.
    pub fn set_write_latency(&self, latency: Duration) {
        self.settings
            .write_latency_ms
            .store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    /// Delays every request (reads and writes) by `latency` before it is answered, as a
    /// store across a network would: each request waits a round trip.
    pub fn set_latency(&self, latency: Duration) {
        self.settings
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    /// Sets the request counter and [`FaultProxy::max_in_flight`] back to zero (faults are
    /// still counted since the start).
    pub fn reset_requests(&self) {
        self.settings.requests.store(0, Ordering::Relaxed);
        self.settings.max_in_flight.store(0, Ordering::Relaxed);
    }

    /// The most requests served at once since the start or [`FaultProxy::reset_requests`]:
    /// how many a client sent concurrently.
    pub fn max_in_flight(&self) -> u64 {
        self.settings.max_in_flight.load(Ordering::Relaxed)
    }

    /// Injects faults only into writes (PUT, POST, DELETE); reads always pass.
    pub fn set_writes_only(&self, writes_only: bool) {
        self.settings
            .writes_only
            .store(writes_only, Ordering::Relaxed);
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u64 {
        self.settings.requests.load(Ordering::Relaxed)
    }

    /// Writes (PUT, POST, DELETE) seen so far: a test acts "when the first upload is seen".
    pub fn writes(&self) -> u64 {
        self.settings.writes.load(Ordering::Relaxed)
    }

    /// Faults injected so far, by kind ([`KINDS`]).
    pub fn faults(&self) -> [u64; 4] {
        let f = &self.settings.faults;
        [0, 1, 2, 3].map(|i| f[i].load(Ordering::Relaxed))
    }

    /// `requests 120, faults: 503 SlowDown 7, …`, for test logs.
    pub fn summary(&self) -> String {
        let faults: Vec<String> = KINDS
            .iter()
            .zip(self.faults())
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        format!(
            "requests {}, faults: {}",
            self.requests(),
            faults.join(", ")
        )
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.settings.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop up.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: TcpListener, upstream: u16, settings: Arc<Settings>) {
    for stream in listener.incoming() {
        if settings.stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let settings = settings.clone();
        std::thread::spawn(move || {
            let _ = serve(stream, upstream, &settings);
        });
    }
}

/// A request head: the lines up to the empty one, and how its body is framed.
struct Head {
    method: String,
    lines: Vec<String>,
    content_length: u64,
    chunked: bool,
}

fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    let method = lines
        .first()
        .and_then(|l| l.split(' ').next())
        .unwrap_or_default()
        .to_string();
    let header = |name: &str| {
        lines.iter().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let content_length = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    Ok(Some(Head {
        method,
        lines,
        content_length,
        chunked,
    }))
}

/// Copies (or, with `to == None`, discards) the request body as its head frames it.
fn copy_body(
    head: &Head,
    from: &mut impl BufRead,
    mut to: Option<&mut TcpStream>,
) -> std::io::Result<()> {
    if !head.chunked {
        let mut limited = from.take(head.content_length);
        match to {
            Some(to) => std::io::copy(&mut limited, to)?,
            None => std::io::copy(&mut limited, &mut std::io::sink())?,
        };
        return Ok(());
    }
    loop {
        let mut size_line = String::new();
        from.read_line(&mut size_line)?;
        let size =
            u64::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        let mut chunk = Vec::new();
        // The chunk and its CRLF (the last chunk: trailers end with an empty line).
        from.take(size).read_to_end(&mut chunk)?;
        let mut crlf = String::new();
        from.read_line(&mut crlf)?;
        if let Some(to) = to.as_deref_mut() {
            to.write_all(size_line.as_bytes())?;
            to.write_all(&chunk)?;
            to.write_all(crlf.as_bytes())?;
        }
        if size == 0 {
            return Ok(());
        }
    }
}

impl Settings {
    /// The fault for the next request, if one is due.
    fn draw(&self) -> Option<usize> {
        let mut state = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let roll = (*state >> 33) % 1_000_000;
        let kind = ((*state >> 20) % 4) as usize;
        (roll < self.rate_ppm.load(Ordering::Relaxed)).then_some(kind)
    }
}

fn serve(client: TcpStream, upstream: u16, settings: &Settings) -> std::io::Result<()> {
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    client.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    settings.requests.fetch_add(1, Ordering::Relaxed);
    let now = settings.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
    settings.max_in_flight.fetch_max(now, Ordering::Relaxed);
    let answered = answer(&head, &mut reader, client, upstream, settings);
    settings.in_flight.fetch_sub(1, Ordering::Relaxed);
    answered
}

/// Answers one request: a fault when one is due, else (after the latency) the upstream's answer.
fn answer(
    head: &Head,
    reader: &mut BufReader<TcpStream>,
    client: TcpStream,
    upstream: u16,
    settings: &Settings,
) -> std::io::Result<()> {
    let mut client = client;
    let write = matches!(head.method.as_str(), "PUT" | "POST" | "DELETE");
    if write {
        settings.writes.fetch_add(1, Ordering::Relaxed);
    }
    let eligible = write || !settings.writes_only.load(Ordering::Relaxed);
    if let Some(kind) = settings.draw().filter(|_| eligible) {
        settings.faults[kind].fetch_add(1, Ordering::Relaxed);
        return fault(kind, head, reader, &mut client);
    }
    let mut ms = settings.latency_ms.load(Ordering::Relaxed);
    if write {
        ms += settings.write_latency_ms.load(Ordering::Relaxed);
    }
    std::thread::sleep(Duration::from_millis(ms));
    forward(head, reader, client, upstream)
}

/// Answers a request with fault `kind` (its body read first, so the client sees the answer).
fn fault(
    kind: usize,
    head: &Head,
    reader: &mut impl BufRead,
    client: &mut TcpStream,
) -> std::io::Result<()> {
    if kind == 3 {
        // Dropped: no answer at all, the connection just closes.
        return client.shutdown(Shutdown::Both);
    }
    copy_body(head, reader, None)?;
    let (status, extra, content_type, body) = match kind {
        0 => (
            "503 Service Unavailable",
            "",
            "application/xml",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
        ),
        1 => (
            "500 Internal Server Error",
            "",
            "text/html",
            "<html><head><title>500 Internal Server Error</title></head><body><center><h1>500 Internal Server Error</h1></center><hr><center>nginx</center></body></html>",
        ),
        _ => (
            "429 Too Many Requests",
            "Retry-After: 1\r\n",
            "text/plain",
            "too many requests",
        ),
    };
    // A HEAD answer carries no body (its Content-Length still says how long it would be).
    let body = if head.method == "HEAD" { "" } else { body };
    let answer = format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(answer.as_bytes())?;
    client.shutdown(Shutdown::Write)
}

/// Sends the request upstream with `Connection: close`, then relays the answer until the
/// upstream closes.
fn forward(
    head: &Head,
    reader: &mut impl BufRead,
    mut client: TcpStream,
    upstream: u16,
) -> std::io::Result<()> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.set_read_timeout(Some(IO_TIMEOUT))?;
    up.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut text = String::new();
    for line in &head.lines {
        let name = line.split(':').next().unwrap_or_default().trim();
        if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("Connection: close\r\n\r\n");
    up.write_all(text.as_bytes())?;
    copy_body(head, reader, Some(&mut up))?;
    std::io::copy(&mut up, &mut client)?;
    client.shutdown(Shutdown::Write)
}
