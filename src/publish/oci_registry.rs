//! An OCI registry (`docker://HOST/REPO`) as an [`OciSink`], on oci-client.
//!
//! The shared push algorithm ([`super::oci::push`]) decides what to write and in which order;
//! this sink only speaks the distribution API:
//! - blobs: `HEAD` to skip what is there, then one upload session per blob — `POST` then a
//!   monolithic `PUT` of the spooled file with its known size, streamed in chunks so memory
//!   stays bounded whatever the layer size;
//! - manifests: `PUT` of the exact bytes that were digested (`push_manifest_raw`; oci-client's
//!   `push_manifest_list` would re-serialize with the Docker media type);
//! - what a reference points at: `HEAD` of the manifest, `None` on 404.
//!
//! oci-client has no retries: [`RegistrySink`] retries connection failures, 5xx and 429 with
//! exponential backoff and jitter, at most [`MAX_ATTEMPTS`] times; a blob retry opens a new
//! upload session and re-reads the file from its start. The final error names the registry,
//! the object and the last status. oci-client does not expose response headers, so a
//! `Retry-After` cannot be seen; 429 waits start longer instead.
//!
//! Transport: TLS, except for registries the target marks insecure (loopback, or
//! `?insecure=true`), which get plain HTTP through `ClientProtocol::HttpsExcept([host:port])`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, anyhow};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::Stream;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use tokio::io::AsyncReadExt;

use super::credentials::Credentials;
use super::oci::OciSink;
use crate::error::{one_line, root_cause};
use crate::image::{Blob, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::report::TargetReport;
use crate::store::Body;
use crate::target::RegistryTarget;
use crate::ui::{Ui, human_size};

/// Attempts per request before giving up (the first try included).
pub const MAX_ATTEMPTS: u32 = 5;

/// Bytes read from a spooled layer per chunk of the upload stream.
const CHUNK: usize = 256 * 1024;

/// Tags asked for per `tags/list` page.
const TAGS_PAGE: usize = 1000;

/// Manifest media types `ls` accepts for a tag.
const PULL_TYPES: &[&str] = &[
    INDEX_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// An [`OciSink`] pushing to one repository of an OCI registry.
pub struct RegistrySink {
    client: Client,
    credentials: Credentials,
    auth: RegistryAuth,
    host: String,
    repository: String,
    insecure: bool,
    /// Any reference of the repository: what blob calls and the token cache are keyed by.
    base: Reference,
}

impl RegistrySink {
    /// A sink for `target`'s repository, authenticating with `credentials`. Nothing is sent
    /// before [`RegistrySink::sign_in`] (or [`OciSink::check`]).
    pub fn new(target: &RegistryTarget, credentials: Credentials) -> Result<RegistrySink> {
        let base = Reference::with_tag(
            target.host.clone(),
            target.repository.clone(),
            "latest".into(),
        );
        let protocol = if target.insecure {
            // oci-client compares this list with the registry's host[:port] exactly.
            ClientProtocol::HttpsExcept(vec![base.resolve_registry().to_string()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            use_monolithic_push: true,
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(300)),
            user_agent: concat!("alba/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config)
            .map_err(|e| anyhow!("cannot set up the HTTP client for {}: {e}", target.host))?;
        let auth = credentials.registry_auth();
        Ok(RegistrySink {
            client,
            credentials,
            auth,
            host: target.host.clone(),
            repository: target.repository.clone(),
            insecure: target.insecure,
            base,
        })
    }

    /// Authenticates for `operation` (a bearer token where the registry hands them out,
    /// basic auth otherwise). oci-client's low-level calls need this first.
    pub async fn sign_in(&self, operation: RegistryOperation) -> Result<()> {
        let what = match operation {
            RegistryOperation::Pull => format!("sign-in (pull) for {}", self.repository),
            RegistryOperation::Push => format!("sign-in (push) for {}", self.repository),
        };
        self.with_retries(&what, || {
            self.client.auth(&self.base, &self.auth, operation)
        })
        .await?;
        Ok(())
    }

    /// Every tag of the repository in lexical order (empty for an unknown repository).
    pub async fn list_tags(&self) -> Result<Vec<String>> {
        let mut tags = std::collections::BTreeSet::new();
        let mut last: Option<String> = None;
        loop {
            let what = format!("tag list of {}", self.repository);
            let page = self
                .with_retries(&what, || async {
                    match self
                        .client
                        .list_tags(&self.base, &self.auth, Some(TAGS_PAGE), last.as_deref())
                        .await
                    {
                        Ok(page) => Ok(page.tags),
                        Err(e) if is_not_found(&e) => Ok(Vec::new()),
                        Err(e) => Err(e),
                    }
                })
                .await?;
            // Registries page as they like: some cap `n`, some (distribution 2.8) ignore `n`
            // and `last` and answer everything in storage order. Stop at a page with nothing new.
            let before = tags.len();
            last = page.last().cloned();
            tags.extend(page);
            if tags.len() == before {
                return Ok(tags.into_iter().collect());
            }
        }
    }

    /// The manifest a tag points at, with its digest; `None` when the tag does not exist.
    pub async fn tag_manifest(&self, tag: &str) -> Result<Option<(Bytes, String)>> {
        let reference = self.reference(tag);
        self.with_retries(&format!("GET of tag {tag}"), || async {
            match self
                .client
                .pull_manifest_raw(&reference, &self.auth, PULL_TYPES)
                .await
            {
                Ok(found) => Ok(Some(found)),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// The reference of a manifest by digest or tag.
    fn reference(&self, reference: &str) -> Reference {
        if reference.starts_with("sha256:") {
            // The digest doubles as the tag: oci-client builds a by-digest URL from the digest,
            // and on a registry that answers a manifest PUT without `Location` (ECR) it strips
            // the tag from that URL and panics if it is not its suffix.
            Reference::with_tag_and_digest(
                self.host.clone(),
                self.repository.clone(),
                reference.into(),
                reference.into(),
            )
        } else {
            Reference::with_tag(self.host.clone(), self.repository.clone(), reference.into())
        }
    }

    /// Runs `op` until it succeeds, fails for good, or [`MAX_ATTEMPTS`] are spent.
    async fn with_retries<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = oci_client::errors::Result<T>>,
    {
        let mut attempt = 1;
        loop {
            let error = match op().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let (kind, status) = classify(&error);
            if kind != Kind::Transient || attempt >= MAX_ATTEMPTS {
                return Err(self.failure(what, kind, status, &error, attempt));
            }
            let wait = backoff(attempt, status);
            tracing::debug!(
                "{}: {what} failed ({}), retrying in {wait:?}",
                self.host,
                self.redact(describe(&error, status))
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// The final error of `what`: names the registry, the object and the last status.
    fn failure(
        &self,
        what: &str,
        kind: Kind,
        status: Option<u16>,
        error: &OciDistributionError,
        attempts: u32,
    ) -> anyhow::Error {
        let detail = self.redact(describe(error, status));
        let host = &self.host;
        if kind == Kind::Auth {
            let fix = if self.credentials.is_anonymous() {
                format!(
                    "no credentials were found for {host}: give --registry-user USER --registry-password-stdin, or run `docker login {host}`"
                )
            } else {
                format!(
                    "check the credentials from {} (or `docker login {host}`) and that they grant access to {}",
                    self.credentials.source, self.repository
                )
            };
            return anyhow!(
                "authentication failed at registry {host}: {what} was refused ({detail}); {fix}"
            );
        }
        let mut message = if attempts > 1 {
            format!(
                "registry {host}: {what} failed after {attempts} attempts; last error: {detail}"
            )
        } else {
            format!("registry {host}: {what} failed: {detail}")
        };
        if !self.insecure && status.is_none() && looks_like_plain_http(&detail) {
            message.push_str(
                "; if this registry speaks plain HTTP, add ?insecure=true to the target URL",
            );
        }
        anyhow!(message)
    }

    /// `text` without the secret in it (registries may echo what they were sent).
    fn redact(&self, text: String) -> String {
        match self.credentials.secret() {
            // Very short secrets would blank out ordinary words; they are not echoed whole anyway.
            Some(secret) if secret.len() >= 4 => text.replace(secret, "***"),
            _ => text,
        }
    }
}

#[async_trait]
impl OciSink for RegistrySink {
    async fn check(&self) -> Result<()> {
        // Pull calls (HEAD) use the pull token, writes the push token: get both up front so a
        // token service that refuses the credentials fails here, before any upload.
        self.sign_in(RegistryOperation::Pull).await?;
        self.sign_in(RegistryOperation::Push).await
    }

    async fn has_blob(&self, blob: &Blob) -> Result<bool> {
        let what = format!("HEAD of blob {}", blob.digest);
        self.with_retries(&what, || self.client.blob_exists(&self.base, &blob.digest))
            .await
    }

    async fn put_blob(&self, blob: &Blob, body: Body) -> Result<()> {
        let size = body
            .size()
            .map_err(|e| anyhow!("cannot read blob {}: {e}", blob.digest))?;
        if size != blob.size {
            anyhow::bail!(
                "blob {} has {size} bytes on disk, {} expected; remove alba's cache and retry",
                blob.digest,
                blob.size
            );
        }
        let what = format!("upload of blob {} ({})", blob.digest, human_size(size));
        self.with_retries(&what, || async {
            // Each attempt is a new upload session reading the blob from its first byte.
            match &body {
                Body::Bytes(bytes) => {
                    let stream = futures::stream::once(std::future::ready(Ok(bytes.clone())));
                    self.client
                        .push_blob_stream(&self.base, stream, &blob.digest, Some(size))
                        .await
                }
                Body::File(path) => {
                    let file = tokio::fs::File::open(path).await?;
                    self.client
                        .push_blob_stream(&self.base, file_stream(file), &blob.digest, Some(size))
                        .await
                }
            }
        })
        .await?;
        Ok(())
    }

    async fn manifest_digest(&self, reference: &str) -> Result<Option<String>> {
        let r = self.reference(reference);
        self.with_retries(&format!("HEAD of {}", object(reference)), || async {
            match self.client.fetch_manifest_digest(&r, &self.auth).await {
                Ok(digest) => Ok(Some(digest)),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn put_manifest(&self, reference: &str, bytes: &Bytes, media_type: &str) -> Result<()> {
        let r = self.reference(reference);
        let what = format!("push of {}", object(reference));
        self.with_retries(&what, || async {
            // Parsed here so the header type is inferred from oci-client (no direct `http` dependency).
            let invalid = || {
                OciDistributionError::GenericError(Some(format!(
                    "media type {media_type:?} is not a header value"
                )))
            };
            let content_type = media_type.parse().map_err(|_| invalid())?;
            self.client
                .push_manifest_raw(&r, bytes.clone(), content_type)
                .await
        })
        .await?;
        Ok(())
    }

    async fn finish(
        &self,
        _tags: &[String],
        _dry_run: bool,
        _ui: &Ui,
        _report: &mut TargetReport,
    ) -> Result<()> {
        // A registry keeps its own tag list.
        Ok(())
    }
}

/// `tag 0.9` or `manifest sha256:…`, for messages.
fn object(reference: &str) -> String {
    if reference.starts_with("sha256:") {
        format!("manifest {reference}")
    } else {
        format!("tag {reference}")
    }
}

/// The file's bytes as a stream of chunks of at most [`CHUNK`] bytes.
fn file_stream(
    file: tokio::fs::File,
) -> impl Stream<Item = oci_client::errors::Result<Bytes>> + Send + 'static {
    futures::stream::try_unfold(file, |mut file| async move {
        let mut chunk = BytesMut::with_capacity(CHUNK);
        let read = file
            .read_buf(&mut chunk)
            .await
            .map_err(OciDistributionError::IoError)?;
        Ok((read > 0).then(|| (chunk.freeze(), file)))
    })
}

/// How a failed request is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Worth another attempt: connection trouble, 5xx, 429.
    Transient,
    /// The registry refused the credentials (401, 403, token service).
    Auth,
    /// Anything else: retrying will not help.
    Fatal,
}

/// The kind of an oci-client error and the HTTP status behind it, when known.
fn classify(error: &OciDistributionError) -> (Kind, Option<u16>) {
    match error {
        OciDistributionError::RequestError(e) => match e.status() {
            Some(status) => (by_status(status.as_u16()), Some(status.as_u16())),
            // Building the request or following redirects fails the same way every time.
            None if e.is_builder() || e.is_redirect() => (Kind::Fatal, None),
            // Connection refused or reset, timeouts, a body cut short.
            None => (Kind::Transient, None),
        },
        OciDistributionError::ServerError { code, .. } => (by_status(*code), Some(*code)),
        OciDistributionError::UnauthorizedError { .. } => (Kind::Auth, Some(401)),
        OciDistributionError::AuthenticationFailure(_) => (Kind::Auth, None),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                (Kind::Auth, None)
            } else if codes.contains(&&OciErrorCode::Toomanyrequests) {
                (Kind::Transient, Some(429))
            } else {
                (Kind::Fatal, None)
            }
        }
        _ => (Kind::Fatal, None),
    }
}

/// The kind of an HTTP error status.
fn by_status(status: u16) -> Kind {
    match status {
        429 | 500..=599 => Kind::Transient,
        401 | 403 => Kind::Auth,
        _ => Kind::Fatal,
    }
}

/// True when the error says the manifest, blob or repository does not exist.
fn is_not_found(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::RequestError(e) => e.status().is_some_and(|s| s.as_u16() == 404),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => {
            !envelope.errors.is_empty()
                && envelope.errors.iter().all(|e| {
                    matches!(
                        e.code,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                            | OciErrorCode::BlobUnknown
                    )
                })
        }
        _ => false,
    }
}

/// A short description of an error: the status and the registry's words, or the root cause
/// of a connection failure. URLs are left out (upload URLs carry long session states).
fn describe(error: &OciDistributionError, status: Option<u16>) -> String {
    let status_text = status.map(|s| format!("status {s}{}", reason(s)));
    let text = match error {
        OciDistributionError::RequestError(e) => {
            let cause = root_cause(e);
            match &status_text {
                Some(_) => String::new(),
                None if e.is_connect() => format!("cannot connect: {cause}"),
                None if e.is_timeout() => format!("timed out: {cause}"),
                None => format!("connection failed: {cause}"),
            }
        }
        OciDistributionError::ServerError { message, .. } => one_line(message),
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .map(|e| format!("{:?}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        OciDistributionError::UnauthorizedError { .. } => String::new(),
        OciDistributionError::AuthenticationFailure(reason) => {
            format!("the token service said: {}", one_line(reason))
        }
        other => one_line(&other.to_string()),
    };
    match (status_text, text.is_empty()) {
        (Some(s), true) => s,
        (Some(s), false) => format!("{s}: {text}"),
        (None, _) => text,
    }
}

/// ` Unauthorized` for 401 and friends, empty for statuses without a well-known name here.
fn reason(status: u16) -> &'static str {
    match status {
        400 => " Bad Request",
        401 => " Unauthorized",
        403 => " Forbidden",
        404 => " Not Found",
        405 => " Method Not Allowed",
        413 => " Payload Too Large",
        429 => " Too Many Requests",
        500 => " Internal Server Error",
        502 => " Bad Gateway",
        503 => " Service Unavailable",
        504 => " Gateway Timeout",
        _ => "",
    }
}

/// True when a TLS failure looks like an HTTPS request to a plain-HTTP server.
fn looks_like_plain_http(detail: &str) -> bool {
    [
        "InvalidContentType",
        "corrupt message",
        "wrong version number",
    ]
    .iter()
    .any(|s| detail.contains(s))
}

/// The wait before attempt `attempt + 1`: exponential from 0.5 s (2 s after a 429, whose
/// Retry-After oci-client hides), capped at 30 s, with the upper half jittered so concurrent
/// uploads do not retry in lockstep.
fn backoff(attempt: u32, status: Option<u16>) -> Duration {
    let base_ms: u64 = if status == Some(429) { 2000 } else { 500 };
    let full = base_ms
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(30_000);
    Duration::from_millis(full / 2 + jitter(full / 2 + 1))
}

/// A pseudo-random number below `bound`, from the clock and a counter (no RNG crate needed
/// for spreading retries).
fn jitter(bound: u64) -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // splitmix64 finalizer: spreads nearby inputs over the whole range.
    let mut x = nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (x ^ (x >> 31)) % bound.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::credentials::{Auth, Secret};

    fn server_error(code: u16) -> OciDistributionError {
        OciDistributionError::ServerError {
            code,
            url: "http://h/v2/x/blobs/uploads/?_state=abc".into(),
            message: "busy".into(),
        }
    }

    #[test]
    fn classifies_statuses() {
        assert_eq!(classify(&server_error(503)), (Kind::Transient, Some(503)));
        assert_eq!(classify(&server_error(429)), (Kind::Transient, Some(429)));
        assert_eq!(classify(&server_error(401)), (Kind::Auth, Some(401)));
        assert_eq!(classify(&server_error(400)), (Kind::Fatal, Some(400)));
        assert_eq!(
            classify(&OciDistributionError::UnauthorizedError { url: "u".into() }).0,
            Kind::Auth
        );
        assert_eq!(
            classify(&OciDistributionError::SpecViolationError("x".into())).0,
            Kind::Fatal
        );
    }

    #[test]
    fn not_found_envelopes() {
        let envelope = |code: &str| {
            let json = format!(r#"{{"errors":[{{"code":"{code}","message":"m"}}]}}"#);
            OciDistributionError::RegistryError {
                envelope: serde_json::from_str(&json).unwrap(),
                url: "u".into(),
            }
        };
        assert!(is_not_found(&envelope("MANIFEST_UNKNOWN")));
        assert!(is_not_found(&envelope("NAME_UNKNOWN")));
        assert!(!is_not_found(&envelope("DENIED")));
        assert_eq!(classify(&envelope("DENIED")).0, Kind::Auth);
        assert_eq!(
            classify(&envelope("TOOMANYREQUESTS")),
            (Kind::Transient, Some(429))
        );
        assert!(is_not_found(&server_error(404)));
    }

    #[test]
    fn backoff_grows_jittered_and_bounded() {
        for attempt in 1..=4 {
            let full = 500u64 << (attempt - 1);
            let wait = backoff(attempt, Some(503)).as_millis() as u64;
            assert!(
                (full / 2..=full).contains(&wait),
                "attempt {attempt}: {wait} ms"
            );
        }
        assert!(backoff(1, Some(429)) >= Duration::from_secs(1));
        assert!(backoff(40, None) <= Duration::from_secs(30));
    }

    #[test]
    fn failures_name_registry_object_and_status_without_secrets() {
        let target = RegistryTarget {
            host: "reg.example.org".into(),
            repository: "a/b".into(),
            tag: None,
            insecure: false,
        };
        let credentials = Credentials {
            auth: Auth::Basic("u".into(), Secret::new("hunter22")),
            source: "--registry-user u".into(),
        };
        let sink = RegistrySink::new(&target, credentials).unwrap();
        let e = OciDistributionError::ServerError {
            code: 503,
            url: "u".into(),
            message: "no hunter22 here".into(),
        };
        let text = sink
            .failure(
                "upload of blob sha256:ab",
                Kind::Transient,
                Some(503),
                &e,
                5,
            )
            .to_string();
        assert!(
            text.contains("reg.example.org") && text.contains("sha256:ab") && text.contains("503"),
            "{text}"
        );
        assert!(
            text.contains("after 5 attempts") && !text.contains("hunter22"),
            "{text}"
        );
        let auth = sink
            .failure(
                "HEAD of blob x",
                Kind::Auth,
                Some(401),
                &server_error(401),
                1,
            )
            .to_string();
        assert!(
            auth.starts_with("authentication failed at registry reg.example.org"),
            "{auth}"
        );
        assert!(auth.contains("--registry-user u"), "{auth}");
    }

    #[test]
    fn digest_references_keep_their_digest() {
        let target = RegistryTarget {
            host: "docker.io".into(),
            repository: "library/a".into(),
            tag: None,
            insecure: false,
        };
        let credentials = Credentials {
            auth: Auth::Anonymous,
            source: "anonymous".into(),
        };
        let sink = RegistrySink::new(&target, credentials).unwrap();
        let r = sink.reference("sha256:00");
        assert_eq!(
            (r.digest(), r.resolve_registry()),
            (Some("sha256:00"), "index.docker.io")
        );
        assert_eq!(sink.reference("0.9").tag(), Some("0.9"));
        assert_eq!(object("0.9"), "tag 0.9");
    }
}
