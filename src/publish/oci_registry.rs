//! An OCI registry (`docker://HOST/REPO`) as an [`OciSink`].
//!
//! The shared push algorithm ([`super::oci::push`]) decides what to write and in which order;
//! this sink only speaks the distribution API:
//! - blobs: `HEAD` to skip what is there, then one upload session per blob — `POST` then a
//!   monolithic `PUT` of the spooled file with its known size, streamed in chunks so memory
//!   stays bounded whatever the layer size;
//! - manifests: `PUT` of the exact bytes that were digested, with their media type as
//!   `Content-Type`;
//! - what a reference points at: `HEAD` of the manifest (`Docker-Content-Digest`), `None` on 404.
//!
//! These write-path requests go out on reqwest directly, because oci-client does not show
//! response headers; sign-in (bearer tokens from the registry's token service, or basic auth)
//! and the pull-side calls of `ls` (tag list, tag manifest) stay on oci-client. A 401 in the
//! middle of a push (an expired token) signs in again once and repeats the request.
//!
//! Retries: connection failures, 5xx and 429 are retried under the run's shared policy
//! ([`crate::transport`]: attempts and total time bounded, the answer's `Retry-After` honoured
//! up to a cap, else exponential backoff with jitter), the same policy S3 buckets use. A blob
//! retry opens a new upload session and re-reads the file from its start. The final error
//! names the registry, the object, the attempts and the last status.
//!
//! Transport: TLS, except for registries the target marks insecure (loopback, or
//! `?insecure=true`), which get plain HTTP (oci-client through
//! `ClientProtocol::HttpsExcept([host:port])`, reqwest through an `http://` base URL).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Result, anyhow};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::Stream;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::{RequestBuilder, Response, StatusCode};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::credentials::{Auth, Credentials};
use super::oci::OciSink;
use crate::error::{one_line, root_cause};
use crate::image::{Blob, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::report::TargetReport;
use crate::store::Body;
use crate::target::RegistryTarget;
// How a failed request is handled: the shared policy's kinds (transient, auth, fatal).
use crate::transport::Kind;
use crate::ui::{Ui, human_size};

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
    http: reqwest::Client,
    /// `http[s]://host[:port]` of the registry's API (Docker Hub: `registry-1.docker.io`).
    base_url: String,
    credentials: Credentials,
    auth: RegistryAuth,
    host: String,
    repository: String,
    insecure: bool,
    /// Any reference of the repository: what blob calls and the token cache are keyed by.
    base: Reference,
    /// What sign-in gave, per operation (pull, push): `Some(None)` when it gave no bearer
    /// token (basic auth or anonymous), `None` before sign-in.
    tokens: tokio::sync::Mutex<[Option<Option<String>>; 2]>,
    /// Requests retried so far, for the report.
    retries: AtomicU64,
}

/// One failed attempt of a request.
#[derive(Debug)]
struct Failed {
    kind: Kind,
    /// The HTTP status, when there was an answer.
    status: Option<u16>,
    /// The status and the registry's words, or the connection trouble; not yet redacted.
    detail: String,
    /// The answer's `Retry-After`, capped by the retry policy.
    retry_after: Option<Duration>,
}

impl Failed {
    /// A failure of an oci-client call.
    fn oci(error: &OciDistributionError) -> Failed {
        let (kind, status) = classify(error);
        Failed {
            kind,
            status,
            detail: describe(error, status),
            retry_after: None,
        }
    }

    /// A request that got no answer (or could not be built).
    fn transport(error: &reqwest::Error) -> Failed {
        // Building the request or following redirects fails the same way every time;
        // connection refused or reset, timeouts and bodies cut short are worth another try.
        let kind = if error.is_builder() || error.is_redirect() {
            Kind::Fatal
        } else {
            Kind::Transient
        };
        Failed {
            kind,
            status: None,
            detail: transport_detail(error),
            retry_after: None,
        }
    }

    /// An answer with an unexpected status.
    async fn answer(response: Response) -> Failed {
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers(), SystemTime::now());
        let body = response.text().await.unwrap_or_default();
        Failed {
            kind: by_status(status),
            status: Some(status),
            detail: status_detail(status, &body),
            retry_after,
        }
    }

    /// Something that will not get better by trying again.
    fn fatal(detail: String) -> Failed {
        Failed {
            kind: Kind::Fatal,
            status: None,
            detail,
            retry_after: None,
        }
    }
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
        let registry = base.resolve_registry().to_string();
        let protocol = if target.insecure {
            // oci-client compares this list with the registry's host[:port] exactly.
            ClientProtocol::HttpsExcept(vec![registry.clone()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(300)),
            user_agent: concat!("alba/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let setup = |e: &dyn std::fmt::Display| {
            anyhow!("cannot set up the HTTP client for {}: {e}", target.host)
        };
        let client = Client::try_from(config).map_err(|e| setup(&e))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("alba/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            // Per read, not per request: a large layer may take long to send.
            .read_timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| setup(&e))?;
        let scheme = if target.insecure { "http" } else { "https" };
        let auth = credentials.registry_auth();
        Ok(RegistrySink {
            client,
            http,
            base_url: format!("{scheme}://{registry}"),
            credentials,
            auth,
            host: target.host.clone(),
            repository: target.repository.clone(),
            insecure: target.insecure,
            base,
            tokens: tokio::sync::Mutex::new([None, None]),
            retries: AtomicU64::new(0),
        })
    }

    /// Authenticates for `operation` (a bearer token where the registry hands them out,
    /// basic auth otherwise). oci-client's low-level calls need this first.
    pub async fn sign_in(&self, operation: RegistryOperation) -> Result<()> {
        let what = match operation {
            RegistryOperation::Pull => format!("sign-in (pull) for {}", self.repository),
            RegistryOperation::Push => format!("sign-in (push) for {}", self.repository),
        };
        self.retrying(&what, || self.renew_token(operation, None))
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

    /// `GET /v2/` (the API version check every pull client makes first): its status.
    pub async fn ping(&self) -> Result<u16> {
        let url = format!("{}/v2/", self.base_url);
        self.retrying("GET /v2/", || async {
            let response = self
                .send(RegistryOperation::Pull, || Ok(self.http.get(&url)))
                .await?;
            match response.status().as_u16() {
                status if by_status(status) == Kind::Transient => {
                    Err(Failed::answer(response).await)
                }
                status => Ok(status),
            }
        })
        .await
    }

    /// A pull-side request (`GET` or `HEAD`) of `…/v2/<repository>/<path>`, as readers such as
    /// `alba verify` make it: signed in for pull, transient answers retried under the run's
    /// policy, any other answer (404 included) returned for the caller to judge.
    pub async fn read(
        &self,
        method: reqwest::Method,
        path: &str,
        accept: &str,
    ) -> Result<Response> {
        let url = self.url(path);
        self.retrying(&format!("{method} of {path}"), || async {
            let response = self
                .send(RegistryOperation::Pull, || {
                    Ok(self
                        .http
                        .request(method.clone(), &url)
                        .header(ACCEPT, accept))
                })
                .await?;
            if by_status(response.status().as_u16()) == Kind::Transient {
                return Err(Failed::answer(response).await);
            }
            Ok(response)
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

    /// `…/v2/<repository>/<path>` on the registry.
    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base_url, self.repository)
    }

    /// The token of the last sign-in for `operation`, signing in if there was none.
    async fn token(&self, operation: RegistryOperation) -> Result<Option<String>, Failed> {
        if let Some(token) = &self.tokens.lock().await[slot(operation)] {
            return Ok(token.clone());
        }
        self.renew_token(operation, None).await
    }

    /// Signs in for `operation` again and keeps what it gives. With `used` (the token a
    /// request was refused with), a token another request renewed since is taken instead.
    async fn renew_token(
        &self,
        operation: RegistryOperation,
        used: Option<&Option<String>>,
    ) -> Result<Option<String>, Failed> {
        let mut tokens = self.tokens.lock().await;
        let slot = &mut tokens[slot(operation)];
        if let (Some(cached), Some(used)) = (&*slot, used)
            && cached != used
        {
            return Ok(cached.clone());
        }
        let token = self
            .client
            .auth(&self.base, &self.auth, operation)
            .await
            .map_err(|e| Failed::oci(&e))?;
        *slot = Some(token.clone());
        Ok(token)
    }

    /// Sends the request `build` makes, authorized for `operation`; after a 401 (an expired
    /// token), signs in again once and sends a new one.
    async fn send(
        &self,
        operation: RegistryOperation,
        build: impl Fn() -> Result<RequestBuilder, Failed>,
    ) -> Result<Response, Failed> {
        let token = self.token(operation).await?;
        let response = authorize(build()?, token.as_deref(), &self.credentials)
            .send()
            .await
            .map_err(|e| Failed::transport(&e))?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let token = self.renew_token(operation, Some(&token)).await?;
        authorize(build()?, token.as_deref(), &self.credentials)
            .send()
            .await
            .map_err(|e| Failed::transport(&e))
    }

    /// One upload session: `POST` for a location, then a monolithic `PUT` of the whole blob
    /// read from its first byte.
    async fn upload(&self, blob: &Blob, body: &Body, size: u64) -> Result<(), Failed> {
        let start = self.url("blobs/uploads/");
        let response = self
            .send(RegistryOperation::Push, || {
                Ok(self.http.post(&start).header(CONTENT_LENGTH, 0))
            })
            .await?;
        if !response.status().is_success() {
            return Err(Failed::answer(response).await);
        }
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Failed::fatal(format!(
                    "status {} without a Location for the upload",
                    response.status().as_u16()
                ))
            })?;
        let url = upload_url(&self.base_url, location, &blob.digest)?;
        let response = self
            .send(RegistryOperation::Push, || {
                let body = match body {
                    Body::Bytes(bytes) => reqwest::Body::from(bytes.clone()),
                    Body::File(path) => {
                        let file = std::fs::File::open(path).map_err(|e| {
                            Failed::fatal(format!("cannot read {}: {e}", path.display()))
                        })?;
                        reqwest::Body::wrap_stream(file_stream(tokio::fs::File::from_std(file)))
                    }
                };
                Ok(self
                    .http
                    .put(url.clone())
                    .header(CONTENT_LENGTH, size)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(body))
            })
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(Failed::answer(response).await)
        }
    }

    /// Runs `op` until it succeeds, fails for good, or the retry policy's attempts or total
    /// time are spent; waits what the answer's `Retry-After` asks, else the policy's backoff.
    async fn retrying<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failed>>,
    {
        let label = format!("{}: {what}", self.host);
        let policy = crate::transport::policy();
        let result = crate::transport::run(&policy, &self.retries, &label, || {
            let attempt = op();
            async move {
                attempt.await.map_err(|f| crate::transport::Failure {
                    kind: f.kind,
                    status: f.status,
                    retry_after: f.retry_after,
                    // Redacted before it reaches a log line.
                    detail: self.redact(f.detail),
                })
            }
        })
        .await;
        result.map_err(|gave_up| {
            let last = gave_up.last;
            let failed = Failed {
                kind: last.kind,
                status: last.status,
                detail: last.detail,
                retry_after: last.retry_after,
            };
            self.failure(what, &failed, gave_up.attempts)
        })
    }

    /// Requests retried so far (transient faults ridden out), for the report.
    pub fn retry_count(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// [`RegistrySink::retrying`] for an oci-client call.
    async fn with_retries<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = oci_client::errors::Result<T>>,
    {
        self.retrying(what, || {
            let attempt = op();
            async move { attempt.await.map_err(|e| Failed::oci(&e)) }
        })
        .await
    }

    /// The final error of `what`: names the registry, the object and the last status.
    fn failure(&self, what: &str, failed: &Failed, attempts: u32) -> anyhow::Error {
        let detail = self.redact(failed.detail.clone());
        let host = &self.host;
        if failed.kind == Kind::Auth {
            let fix = self.auth_fix();
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
        if !self.insecure && failed.status.is_none() && looks_like_plain_http(&detail) {
            message.push_str(
                "; if this registry speaks plain HTTP, add ?insecure=true to the target URL",
            );
        }
        anyhow!(message)
    }

    /// What to do about refused credentials.
    fn auth_fix(&self) -> String {
        let host = &self.host;
        if self.credentials.is_anonymous() {
            return format!(
                "no credentials were found for {host}: give --registry-user USER --registry-password-stdin, or run `docker login {host}`"
            );
        }
        format!(
            "check the credentials from {} (or `docker login {host}`) and that they grant access to {}",
            self.credentials.source, self.repository
        )
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
    fn retries(&self) -> u64 {
        self.retry_count()
    }

    async fn check(&self) -> Result<()> {
        // Pull calls (HEAD) use the pull token, writes the push token: get both up front so a
        // token service that refuses the credentials fails here, before any upload.
        self.sign_in(RegistryOperation::Pull).await?;
        self.sign_in(RegistryOperation::Push).await?;
        // With Basic auth a sign-in sends nothing: ask /v2/ with the credentials, so a wrong
        // password fails here, before this target (or, in a release, any target) is written.
        if !self.credentials.is_anonymous() && self.ping().await? == 401 {
            anyhow::bail!(
                "authentication failed at registry {}: GET /v2/ was refused (status 401 Unauthorized); {}",
                self.host,
                self.auth_fix()
            );
        }
        Ok(())
    }

    async fn has_blob(&self, blob: &Blob) -> Result<bool> {
        let what = format!("HEAD of blob {}", blob.digest);
        let url = self.url(&format!("blobs/{}", blob.digest));
        self.retrying(&what, || async {
            let response = self
                .send(RegistryOperation::Pull, || Ok(self.http.head(&url)))
                .await?;
            match response.status() {
                s if s.is_success() => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                _ => Err(Failed::answer(response).await),
            }
        })
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
        // Each attempt is a new upload session reading the blob from its first byte.
        self.retrying(&what, || self.upload(blob, &body, size))
            .await
    }

    async fn manifest_digest(&self, reference: &str) -> Result<Option<String>> {
        let url = self.url(&format!("manifests/{reference}"));
        let accept = PULL_TYPES.join(", ");
        let request = |head: bool| -> Result<RequestBuilder, Failed> {
            let request = if head {
                self.http.head(&url)
            } else {
                self.http.get(&url)
            };
            Ok(request.header(ACCEPT, &accept))
        };
        self.retrying(&format!("HEAD of {}", object(reference)), || async {
            let response = self.send(RegistryOperation::Pull, || request(true)).await?;
            match response.status() {
                StatusCode::NOT_FOUND => return Ok(None),
                s if !s.is_success() => return Err(Failed::answer(response).await),
                _ => {}
            }
            let header = response
                .headers()
                .get("Docker-Content-Digest")
                .and_then(|v| v.to_str().ok());
            if let Some(digest) = header {
                return Ok(Some(digest.to_string()));
            }
            if reference.starts_with("sha256:") {
                return Ok(Some(reference.to_string()));
            }
            // No digest header: hash what a GET answers.
            let response = self
                .send(RegistryOperation::Pull, || request(false))
                .await?;
            match response.status() {
                StatusCode::NOT_FOUND => return Ok(None),
                s if !s.is_success() => return Err(Failed::answer(response).await),
                _ => {}
            }
            let bytes = response.bytes().await.map_err(|e| Failed::transport(&e))?;
            Ok(Some(format!(
                "sha256:{}",
                hex::encode(Sha256::digest(&bytes))
            )))
        })
        .await
    }

    async fn tags(&self) -> Result<Vec<String>> {
        self.list_tags().await
    }

    async fn manifest(&self, reference: &str) -> Result<Option<Bytes>> {
        Ok(self.tag_manifest(reference).await?.map(|(bytes, _)| bytes))
    }

    async fn small_blob(&self, digest: &str, size: u64) -> Result<Option<Bytes>> {
        let url = self.url(&format!("blobs/{digest}"));
        self.retrying(&format!("GET of blob {digest}"), || async {
            let response = self
                .send(RegistryOperation::Pull, || Ok(self.http.get(&url)))
                .await?;
            match response.status() {
                StatusCode::NOT_FOUND => Ok(None),
                s if s.is_success() && response.content_length().is_some_and(|n| n > size) => {
                    Ok(None)
                }
                s if s.is_success() => {
                    let bytes = response.bytes().await.map_err(|e| Failed::transport(&e))?;
                    // More than the manifest said: not the config it names.
                    Ok((bytes.len() as u64 == size).then_some(bytes))
                }
                _ => Err(Failed::answer(response).await),
            }
        })
        .await
    }

    async fn put_manifest(&self, reference: &str, bytes: &Bytes, media_type: &str) -> Result<()> {
        let url = self.url(&format!("manifests/{reference}"));
        let what = format!("push of {}", object(reference));
        self.retrying(&what, || async {
            let response = self
                .send(RegistryOperation::Push, || {
                    Ok(self
                        .http
                        .put(&url)
                        .header(CONTENT_TYPE, media_type)
                        .body(bytes.clone()))
                })
                .await?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(Failed::answer(response).await)
            }
        })
        .await
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

/// Adds the bearer `token` sign-in gave, or else the credentials as they are (basic auth,
/// an identity token, or nothing when anonymous).
pub(super) fn authorize(
    request: RequestBuilder,
    token: Option<&str>,
    credentials: &Credentials,
) -> RequestBuilder {
    match (token, &credentials.auth) {
        (Some(token), _) => request.bearer_auth(token),
        (None, Auth::Basic(user, password)) => request.basic_auth(user, Some(password.expose())),
        (None, Auth::Token(token)) => request.bearer_auth(token.expose()),
        (None, Auth::Anonymous) => request,
    }
}

/// The index of `operation` in [`RegistrySink::tokens`].
fn slot(operation: RegistryOperation) -> usize {
    match operation {
        RegistryOperation::Pull => 0,
        RegistryOperation::Push => 1,
    }
}

/// The monolithic `PUT` URL of an upload session: its `Location` (relative to the registry
/// or absolute, query kept) with `digest=` added.
fn upload_url(base_url: &str, location: &str, digest: &str) -> Result<url::Url, Failed> {
    let invalid = |e: url::ParseError| Failed::fatal(format!("upload Location {location:?}: {e}"));
    let mut url = url::Url::parse(base_url)
        .map_err(invalid)?
        .join(location)
        .map_err(invalid)?;
    url.query_pairs_mut().append_pair("digest", digest);
    Ok(url)
}

/// The wait a `Retry-After` header asks for (delta-seconds or an HTTP-date, relative to
/// `now`), capped by the retry policy; `None` without a readable one.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    crate::transport::retry_after(value, now)
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
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures::stream::try_unfold(file, |mut file| async move {
        let mut chunk = BytesMut::with_capacity(CHUNK);
        let read = file.read_buf(&mut chunk).await?;
        Ok((read > 0).then(|| (chunk.freeze(), file)))
    })
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
        OciDistributionError::RequestError(e) => match &status_text {
            Some(_) => String::new(),
            None => transport_detail(e),
        },
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

/// What went wrong with a request that got no answer: the root cause of the failure.
fn transport_detail(error: &reqwest::Error) -> String {
    let cause = root_cause(error);
    if error.is_connect() {
        format!("cannot connect: {cause}")
    } else if error.is_timeout() {
        format!("timed out: {cause}")
    } else {
        format!("connection failed: {cause}")
    }
}

/// `status 503 Service Unavailable`, then what the registry said in its body, if anything:
/// the codes and messages of an OCI error envelope, or the text on one line.
fn status_detail(status: u16, body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: String,
        #[serde(default)]
        message: String,
    }
    let words = match serde_json::from_str::<Envelope>(body) {
        Ok(envelope) if !envelope.errors.is_empty() => envelope
            .errors
            .iter()
            .map(|e| one_line(&format!("{}: {}", e.code, e.message)))
            .collect::<Vec<_>>()
            .join("; "),
        _ => one_line(body),
    };
    let status_text = format!("status {status}{}", reason(status));
    if words.is_empty() {
        status_text
    } else {
        format!("{status_text}: {words}")
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
        let e = Failed {
            kind: Kind::Transient,
            status: Some(503),
            detail: status_detail(503, "no hunter22 here"),
            retry_after: None,
        };
        let text = sink.failure("upload of blob sha256:ab", &e, 5).to_string();
        assert!(
            text.contains("reg.example.org") && text.contains("sha256:ab") && text.contains("503"),
            "{text}"
        );
        assert!(
            text.contains("after 5 attempts") && !text.contains("hunter22"),
            "{text}"
        );
        let auth = sink
            .failure("HEAD of blob x", &Failed::oci(&server_error(401)), 1)
            .to_string();
        assert!(
            auth.starts_with("authentication failed at registry reg.example.org"),
            "{auth}"
        );
        assert!(auth.contains("--registry-user u"), "{auth}");
        assert!(auth.contains("(status 401 Unauthorized"), "{auth}");
    }

    #[test]
    fn status_details_name_the_status_and_the_registry_words() {
        assert_eq!(status_detail(503, ""), "status 503 Service Unavailable");
        assert_eq!(
            status_detail(
                400,
                r#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match"}]}"#
            ),
            "status 400 Bad Request: DIGEST_INVALID: provided digest did not match"
        );
        assert_eq!(
            status_detail(502, "<html>\n  bad\n gateway</html>"),
            "status 502 Bad Gateway: <html> bad gateway</html>"
        );
    }

    #[test]
    fn retry_after_takes_seconds_or_dates_capped() {
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, value.parse().unwrap());
            headers
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_770);
        assert_eq!(
            retry_after(&headers("2"), now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&headers("3600"), now),
            Some(crate::transport::Policy::default().max_retry_after)
        );
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:49:37 GMT"), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers("Sat, 05 Nov 1994 08:49:37 GMT"), now),
            Some(Duration::ZERO),
            "a date in the past: go now"
        );
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn upload_urls_keep_the_location_query() {
        let base = "http://127.0.0.1:5000";
        assert_eq!(
            upload_url(base, "/v2/a/blobs/uploads/u1?_state=xy", "sha256:ab")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:5000/v2/a/blobs/uploads/u1?_state=xy&digest=sha256%3Aab"
        );
        assert_eq!(
            upload_url(base, "https://other.example/up/u2", "sha256:ab")
                .unwrap()
                .as_str(),
            "https://other.example/up/u2?digest=sha256%3Aab"
        );
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
