//! `--web URL`: reading through the public website endpoint, as browsers and pull clients
//! do, and naming the classic Garage website mistakes with their fix.
//!
//! Garage's website endpoint picks the bucket by the `Host` header (a global alias equal to
//! the host name, port stripped). Checked against Garage 2.5: a bucket without website access
//! and a host no alias names both answer a bare `404 Not Found` page for every key, while a
//! reachable bucket's 404 names the S3 error (`Code: NoSuchKey`). `/v2/` is served from
//! `v2/index.html` only when the bucket's index document is `index.html`.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use anyhow::{Result, anyhow};
use async_trait::async_trait;
use futures::TryStreamExt;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use super::{Findings, Object, Source};
use crate::bail_input;
use crate::error::root_cause;
use crate::store::ObjectStore;
use crate::transport::{Failure, Kind, by_status};

/// A [`Source`] reading `URL/KEY` over HTTP(S).
pub struct WebSource {
    base: String,
    /// `base` without user and password, for messages.
    shown: String,
    host: String,
    http: reqwest::Client,
}

/// One raw answer: status and (a bounded part of) the body.
struct Answer {
    status: StatusCode,
    body: String,
}

impl WebSource {
    /// A source for the website at `url` (`http://` or `https://`), whose root is the
    /// target's root. Bad URLs are input errors.
    pub fn new(url: &str) -> Result<WebSource> {
        let parsed = url::Url::parse(url).map_err(|e| {
            crate::error::input(format!(
                "--web {url:?} is not a URL ({e}); write e.g. --web https://download.example.org"
            ))
        })?;
        let Some(host) = parsed
            .host_str()
            .filter(|_| matches!(parsed.scheme(), "http" | "https"))
        else {
            bail_input!("--web {url:?}: give an http:// or https:// URL with a host name");
        };
        let http = reqwest::Client::builder()
            .user_agent(concat!("alba/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| anyhow!("cannot set up the HTTP client: {e}"))?;
        let base = url.trim_end_matches('/').to_string();
        Ok(WebSource {
            shown: crate::meta::without_credentials(&base),
            base,
            host: host.to_string(),
            http,
        })
    }

    /// The host name, which Garage takes for the bucket's alias.
    pub fn host(&self) -> &str {
        &self.host
    }

    fn url(&self, key: &str) -> String {
        format!("{}/{key}", self.base)
    }

    /// [`WebSource::url`] as messages show it: no credentials.
    fn shown_url(&self, key: &str) -> String {
        format!("{}/{key}", self.shown)
    }

    /// Sends `GET` (or `HEAD`) for `key`, retrying connection trouble and transient answers
    /// (5xx, 429) under the run's policy; any other answer is returned, and so is the last
    /// transient one when the policy is spent (the caller words what it means).
    async fn send(&self, method: reqwest::Method, key: &str) -> Result<reqwest::Response> {
        let url = self.url(key);
        let shown = self.shown_url(key);
        // The last transient answer, kept so that it (not an error) is what a spent policy gives.
        let last = std::sync::Mutex::new(None);
        let retries = AtomicU64::new(0);
        let policy = crate::transport::policy();
        let what = format!("{method} {shown}");
        let result = crate::transport::run(&policy, &retries, &what, || async {
            let response = match self.http.request(method.clone(), &url).send().await {
                Ok(response) => response,
                Err(e) if e.is_builder() => return Err(Failure::fatal(root_cause(&e))),
                Err(e) => return Err(Failure::transient(root_cause(&e))),
            };
            let status = response.status().as_u16();
            if by_status(status) != Kind::Transient {
                return Ok(response);
            }
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| crate::transport::retry_after(v, SystemTime::now()));
            *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(response);
            Err(Failure {
                status: Some(status),
                retry_after,
                ..Failure::transient(format!("HTTP {status}"))
            })
        })
        .await;
        match result {
            Ok(response) => Ok(response),
            Err(gave_up) => match last.into_inner().unwrap_or_else(|e| e.into_inner()) {
                Some(response) if gave_up.last.status.is_some() => Ok(response),
                _ => Err(anyhow!("{method} {shown}: {}", gave_up.last.detail)),
            },
        }
    }

    /// The raw answer for `key` (status and the start of the body), for diagnosis.
    async fn answer(&self, key: &str) -> Result<Answer> {
        let response = self.send(reqwest::Method::GET, key).await?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        Ok(Answer {
            status,
            body: body.chars().take(2000).collect(),
        })
    }

    /// An error for an answer that is neither success nor 404.
    async fn refused(&self, key: &str, response: reqwest::Response) -> anyhow::Error {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        anyhow!(
            "GET {}: HTTP {status} {}",
            self.shown_url(key),
            crate::error::one_line(&body)
        )
    }
}

#[async_trait]
impl Source for WebSource {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn is_web(&self) -> bool {
        true
    }

    async fn get(&self, key: &str) -> Result<Option<Object>> {
        let response = self.send(reqwest::Method::GET, key).await?;
        match response.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            s if !s.is_success() => return Err(self.refused(key, response).await),
            _ => {}
        }
        let content_type = content_type(&response);
        let bytes = response.bytes().await.map_err(|e| {
            anyhow!(
                "GET {}: {}",
                self.shown_url(key),
                crate::error::root_cause(&e)
            )
        })?;
        Ok(Some(Object {
            bytes,
            content_type: Some(content_type),
        }))
    }

    async fn hash(&self, key: &str) -> Result<Option<(u64, String)>> {
        let response = self.send(reqwest::Method::GET, key).await?;
        match response.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            s if !s.is_success() => return Err(self.refused(key, response).await),
            _ => {}
        }
        let (mut hasher, mut size) = (Sha256::new(), 0u64);
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.try_next().await.map_err(|e| {
            anyhow!(
                "GET {}: {}",
                self.shown_url(key),
                crate::error::root_cause(&e)
            )
        })? {
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok(Some((size, hex::encode(hasher.finalize()))))
    }

    async fn size(&self, key: &str) -> Result<Option<u64>> {
        let response = self.send(reqwest::Method::HEAD, key).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if !s.is_success() => Err(self.refused(key, response).await),
            _ => Ok(Some(content_length(&response))),
        }
    }
}

/// Checks that the website serves the target's objects at all, before anything else: probes
/// the first of `keys` the store holds. Returns false (after recording the one problem that
/// explains every failure to come) when the website serves nothing of the target.
pub async fn website_serves(
    web: &WebSource,
    store: Option<&dyn ObjectStore>,
    bucket: Option<&str>,
    keys: &[String],
    findings: &mut Findings,
) -> Result<bool> {
    let Some(probe) = first_stored(store, keys).await else {
        return Ok(true);
    };
    let answer = web.answer(&probe).await?;
    if answer.status.is_success() {
        return Ok(true);
    }
    let object = format!("{} ({probe})", web.url(&probe));
    let (problem, fix) = match bucket {
        Some(bucket) => garage_mistake(&answer, bucket, web.host()),
        None => (
            format!(
                "the web server answers HTTP {} for an object the folder holds",
                answer.status.as_u16()
            ),
            "serve the folder with its generated fragment: `include FOLDER/.alba/nginx.conf;` inside the server block".to_string(),
        ),
    };
    findings.problem(object, problem, fix);
    Ok(false)
}

/// What a Garage website answer that is not a success says about the bucket's setup, and
/// the fix: (problem, fix).
fn garage_mistake(answer: &Answer, bucket: &str, host: &str) -> (String, String) {
    let status = answer.status.as_u16();
    let reached_a_bucket = answer.body.contains("NoSuchKey");
    match (answer.status, reached_a_bucket) {
        (StatusCode::NOT_FOUND, true) => (
            format!(
                "the website answers 404 NoSuchKey for an object the bucket holds: the host {host} names another bucket than {bucket}"
            ),
            format!(
                "point the alias at this bucket: `garage bucket unalias OTHER-BUCKET {host}`, then `garage bucket alias {bucket} {host}`"
            ),
        ),
        (StatusCode::NOT_FOUND | StatusCode::FORBIDDEN, false) if bucket == host => (
            format!(
                "the website answers {status} for every key: website access is not enabled for bucket {bucket}"
            ),
            format!("run `garage bucket website --allow {bucket}`"),
        ),
        (StatusCode::NOT_FOUND | StatusCode::FORBIDDEN, false) => (
            format!(
                "the website answers {status} for every key: no bucket is served for the host {host} (Garage picks the bucket whose global alias equals the host name), or website access is not enabled for {bucket}"
            ),
            format!(
                "run `garage bucket alias {bucket} {host}` and `garage bucket website --allow {bucket}`"
            ),
        ),
        (status, _) => (
            format!(
                "the website answers HTTP {status}: {}",
                crate::error::one_line(&answer.body)
            ),
            "check the website endpoint's URL and that it is up".to_string(),
        ),
    }
}

/// The first of `keys` the store holds (the first key at all when there is no store).
async fn first_stored(store: Option<&dyn ObjectStore>, keys: &[String]) -> Option<String> {
    let Some(store) = store else {
        return keys.first().cloned();
    };
    for key in keys {
        if let Ok(Some(_)) = store.head(key).await {
            return Some(key.clone());
        }
    }
    None
}

/// The fix when `GET /v2/` is not answered from `v2/index.html`.
pub fn index_document_fix(bucket: Option<&str>, folder: bool) -> String {
    match bucket {
        Some(b) => format!(
            "make index.html the bucket's index document: `garage bucket website --allow --index-document index.html {b}`"
        ),
        None if folder => {
            "serve /v2/ from v2/index.html: include the folder's .alba/nginx.conf in the server block".to_string()
        }
        None => "make the web server answer GET /v2/ with v2/index.html".to_string(),
    }
}

/// The `Content-Length` header of an answer (a HEAD answer has no body to measure).
pub fn content_length(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The `Content-Type` of an answer (empty when it has none).
pub fn content_type(response: &reqwest::Response) -> String {
    let value = response.headers().get(reqwest::header::CONTENT_TYPE);
    value
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    /// Answers `/busy` always and `/flaky` twice with 503 (`Retry-After: 0`, so the test does
    /// not wait), anything else with 200; counts the requests.
    async fn serve(listener: TcpListener, count: Arc<AtomicU64>) {
        let mut flaky = 0;
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::Relaxed);
            let mut reader = BufReader::new(socket);
            let (mut request, mut line) = (String::new(), String::new());
            while reader.read_line(&mut line).await.is_ok_and(|n| n > 2) {
                if request.is_empty() {
                    request = line.clone();
                }
                line.clear();
            }
            let busy = request.contains("/busy ")
                || (request.contains("/flaky ") && {
                    flaky += 1;
                    flaky <= 2
                });
            let answer = if busy {
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            };
            let _ = reader.get_mut().write_all(answer.as_bytes()).await;
        }
    }

    #[tokio::test]
    async fn transient_answers_are_retried_and_the_last_one_is_returned() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = Arc::new(AtomicU64::new(0));
        tokio::spawn(serve(listener, count.clone()));
        let web = WebSource::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let flaky = web.send(reqwest::Method::GET, "flaky").await.unwrap();
        assert_eq!(flaky.status(), StatusCode::OK);
        assert_eq!(count.swap(0, Ordering::Relaxed), 3);
        // A policy spent on transient answers gives the last one, for the caller to word.
        let busy = web.send(reqwest::Method::GET, "busy").await.unwrap();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        let attempts = crate::transport::policy().attempts as u64;
        assert_eq!(count.load(Ordering::Relaxed), attempts);
    }
}
