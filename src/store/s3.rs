//! An S3 bucket through aws-sdk-s3 (Garage, MinIO, AWS), with the Go CDK URL parameters.
//!
//! Every request goes through the shared retry policy ([`crate::transport`]) rather than the
//! SDK's own retries, which are turned off: one policy (attempts, total time, backoff, a capped
//! `Retry-After`) for buckets and registries alike, retries counted for the report, and errors
//! classified by HTTP status first — a reverse proxy's HTML 502 makes the SDK fail with "error
//! parsing XML: no root element", which its classifier does not retry but the status does.
//! Multipart uploads retry single parts and abort the upload on failure, and also when the
//! upload's future is dropped (another upload of the push failed): [`AbortOnDrop`].

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::{Body, Listed, ObjectInfo, ObjectStore, Put};
use crate::target::S3Target;
use crate::transport::{self, Failure, GaveUp, Kind, Policy};

/// Objects at least this large go up as parallel multipart uploads.
const MULTIPART_THRESHOLD: u64 = 64 * 1024 * 1024;
/// Size of one multipart part (S3 needs at least 5 MiB).
const PART_SIZE: u64 = 16 * 1024 * 1024;
/// Parts of one object uploaded at once; memory stays bounded as parts stream from disk.
const PART_CONCURRENCY: usize = 4;
/// The metadata key holding the content's sha256.
const SHA256_META: &str = "sha256";
/// Attempts of the first request (`check`) when no connection can be made at all: an endpoint
/// that refuses connections (or does not resolve) when a run starts is most likely a wrong
/// `endpoint=`, which must not take minutes to report. Answers such as 503 get the full policy.
const CHECK_ATTEMPTS: u32 = 3;

/// Cleanups still running: aborts of multipart uploads whose futures were dropped, and the
/// lease deletes of failed pushes ([`defer`]).
static PENDING_ABORTS: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

/// Registers a cleanup task that [`finish_aborts`] waits for before the run exits.
pub fn defer(task: tokio::task::JoinHandle<()>) {
    PENDING_ABORTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(task);
}

/// Waits (at most `limit`) for the pending cleanups (aborts of cancelled multipart uploads,
/// lease deletes of failed pushes), so a run that fails does not exit before they are sent.
pub async fn finish_aborts(limit: Duration) {
    let pending: Vec<_> =
        std::mem::take(&mut *PENDING_ABORTS.lock().unwrap_or_else(|e| e.into_inner()));
    let _ = tokio::time::timeout(limit, futures::future::join_all(pending)).await;
}

/// True when the failure is a connection that could not be made (refused, no such host).
fn is_refused(failed: &Failure) -> bool {
    failed.status.is_none()
        && [
            "refused",
            "dns error",
            "failed to lookup",
            "Name or service not known",
        ]
        .iter()
        .any(|s| failed.detail.contains(s))
}

type SdkFailure<E> = SdkError<E, aws_sdk_s3::config::http::HttpResponse>;

/// An [`ObjectStore`] on an S3 bucket.
pub struct S3Store {
    client: Client,
    target: S3Target,
    retries: Arc<AtomicU64>,
}

impl S3Store {
    /// Connects (lazily) to the bucket; credentials come from the standard AWS chain.
    pub async fn new(target: &S3Target) -> Result<S3Store> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(profile) = &target.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &target.region {
            // Used verbatim: Garage checks the region in every signature.
            loader = loader.region(Region::new(region.clone()));
        }
        let shared = loader.load().await;
        let mut conf = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(target.force_path_style)
            // aws-sdk-s3 ≥ 1.69 adds CRC32 trailers by default, which Garage and others refuse.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            // Retries are the shared policy's (see the module docs), not the SDK's.
            .retry_config(RetryConfig::disabled())
            // A stalled connection counts as a transient failure instead of hanging the run.
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(Duration::from_secs(60))
                    .build(),
            );
        if shared.region().is_none() {
            conf = conf.region(Region::new("us-east-1"));
        }
        if let Some(endpoint) = &target.endpoint {
            conf = conf.endpoint_url(endpoint);
        }
        Ok(S3Store {
            client: Client::from_conf(conf.build()),
            target: target.clone(),
            retries: Arc::new(AtomicU64::new(0)),
        })
    }

    fn full_key(&self, key: &str) -> String {
        if self.target.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.target.prefix)
        }
    }

    /// One `HeadObject` of a full key: `None` when it does not exist.
    async fn head_object(
        &self,
        full: &str,
    ) -> Result<Option<aws_sdk_s3::operation::head_object::HeadObjectOutput>, Failure> {
        let sent = (self.client.head_object())
            .bucket(&self.target.bucket)
            .key(full)
            .send()
            .await;
        found(sent)
    }

    /// One `GetObject` of a full key (the body still to read): `None` when it does not exist.
    async fn get_object(
        &self,
        full: &str,
    ) -> Result<Option<aws_sdk_s3::operation::get_object::GetObjectOutput>, Failure> {
        let sent = (self.client.get_object())
            .bucket(&self.target.bucket)
            .key(full)
            .send()
            .await;
        found(sent)
    }

    fn where_(&self) -> String {
        let endpoint = self.target.endpoint.as_deref().unwrap_or("AWS");
        format!("bucket {:?} at {endpoint}", self.target.bucket)
    }

    /// Runs one request under the run's retry policy; the final error names the bucket, the
    /// object, the attempts, the last error and the fix.
    async fn call<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        self.call_with(&transport::policy(), what, op).await
    }

    async fn call_with<T, F, Fut>(&self, policy: &Policy, what: &str, op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let label = format!("{what} on {}", self.where_());
        transport::run(policy, &self.retries, &label, op)
            .await
            .map_err(|gave_up| self.gave_up(what, &gave_up))
    }

    fn gave_up(&self, what: &str, gave_up: &GaveUp) -> anyhow::Error {
        let last = &gave_up.last;
        let hint = match (last.kind, last.status) {
            (Kind::Auth, _) => {
                "access denied: check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or profile= in the URL) and the key's rights on the bucket"
            }
            (_, Some(404)) => "the bucket does not exist: create it or fix the bucket name",
            _ if last.detail.contains("no providers in chain")
                || last.detail.contains("credentials") =>
            {
                "no credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE / profile= in the URL"
            }
            _ if is_refused(last) => {
                "could not reach the endpoint: check endpoint= in the URL and that the service is running"
            }
            (Kind::Transient, None) => {
                "could not reach the endpoint: check endpoint= in the URL and that the service is running"
            }
            (Kind::Transient, Some(_)) => {
                "the store kept failing: try again later, or give more --retries / --retry-time"
            }
            _ => "the store refused the request",
        };
        anyhow!(
            "{what} on {}: {}\n  {hint}",
            self.where_(),
            gave_up.summary()
        )
    }

    async fn put_small(&self, put: &Put, size: u64) -> Result<()> {
        let key = self.full_key(&put.key);
        self.call(&format!("writing {}", put.key), || async {
            let body = body_of(&put.body).await?;
            self.client
                .put_object()
                .bucket(&self.target.bucket)
                .key(&key)
                .content_type(&put.content_type)
                .content_length(size as i64)
                .metadata(SHA256_META, &put.sha256)
                .body(body)
                .send()
                .await
                .map_err(|e| failure(&e))?;
            Ok(())
        })
        .await
    }

    async fn put_multipart(&self, put: &Put, path: &Path, size: u64) -> Result<()> {
        let key = self.full_key(&put.key);
        let created = self
            .call(&format!("starting upload of {}", put.key), || async {
                self.client
                    .create_multipart_upload()
                    .bucket(&self.target.bucket)
                    .key(&key)
                    .content_type(&put.content_type)
                    .metadata(SHA256_META, &put.sha256)
                    .send()
                    .await
                    .map_err(|e| failure(&e))
            })
            .await?;
        let upload_id = created
            .upload_id()
            .context("S3 gave no upload id")?
            .to_string();
        let mut guard = AbortOnDrop::new(self, &key, &upload_id);
        let result = self
            .upload_parts(&put.key, &key, &upload_id, path, size)
            .await;
        let parts = match result {
            Ok(parts) => parts,
            Err(e) => {
                // Leave no half upload behind; the error that matters is the first one.
                guard.abort().await;
                return Err(e);
            }
        };
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        let done = self
            .call(&format!("completing upload of {}", put.key), || async {
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.target.bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .multipart_upload(completed.clone())
                    .send()
                    .await
                    .map_err(|e| failure(&e))
            })
            .await;
        match done {
            Ok(_) => guard.disarm(),
            Err(e) => {
                guard.abort().await;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn upload_parts(
        &self,
        name: &str,
        key: &str,
        upload_id: &str,
        path: &Path,
        size: u64,
    ) -> Result<Vec<CompletedPart>> {
        let count = size.div_ceil(PART_SIZE);
        let parts = futures::stream::iter(0..count)
            .map(|i| self.upload_part(name, key, upload_id, path, i, size))
            .buffered(PART_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(parts)
    }

    /// Uploads one part, retried on its own (re-read from the file at each attempt).
    async fn upload_part(
        &self,
        name: &str,
        key: &str,
        upload_id: &str,
        path: &Path,
        index: u64,
        size: u64,
    ) -> Result<CompletedPart> {
        let offset = index * PART_SIZE;
        let length = PART_SIZE.min(size - offset);
        let number = (index + 1) as i32;
        let what = format!("uploading part {number} of {name}");
        let out = self
            .call(&what, || async {
                let body = ByteStream::read_from()
                    .path(path)
                    .offset(offset)
                    .length(Length::Exact(length))
                    .build()
                    .await
                    .map_err(|e| Failure::fatal(format!("reading {}: {e}", path.display())))?;
                self.client
                    .upload_part()
                    .bucket(&self.target.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .content_length(length as i64)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| failure(&e))
            })
            .await?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag)
            .build())
    }
}

/// The body of one attempt: a file is opened again for every attempt.
async fn body_of(body: &Body) -> Result<ByteStream, Failure> {
    match body {
        Body::Bytes(b) => Ok(ByteStream::from(b.clone())),
        Body::File(path) => ByteStream::from_path(path)
            .await
            .map_err(|e| Failure::fatal(format!("opening {}: {e}", path.display()))),
    }
}

/// Aborts a multipart upload unless disarmed: explicitly ([`AbortOnDrop::abort`]) on
/// failure, and from `Drop` when the upload's future is dropped half-way (another upload of
/// the same push failed, or the run was cancelled) — a dropped future runs no more code of its
/// own, so the abort goes to a spawned task. Without it the bucket keeps the parts (and bills
/// for them) until a lifecycle rule cleans up.
struct AbortOnDrop {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    armed: bool,
}

impl AbortOnDrop {
    fn new(store: &S3Store, key: &str, upload_id: &str) -> AbortOnDrop {
        AbortOnDrop {
            client: store.client.clone(),
            bucket: store.target.bucket.clone(),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
            armed: true,
        }
    }

    /// The upload completed: nothing to abort.
    fn disarm(&mut self) {
        self.armed = false;
    }

    /// Aborts now and waits for it (best effort: the upload's own error is the one to report).
    async fn abort(&mut self) {
        self.armed = false;
        abort_upload(&self.client, &self.bucket, &self.key, &self.upload_id).await;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (client, bucket) = (self.client.clone(), std::mem::take(&mut self.bucket));
        let (key, upload_id) = (
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.upload_id),
        );
        tracing::debug!("upload of {key} cancelled: aborting it");
        let task =
            runtime.spawn(async move { abort_upload(&client, &bucket, &key, &upload_id).await });
        defer(task);
    }
}

/// `AbortMultipartUpload`, retried a few times; failures are only logged.
async fn abort_upload(client: &Client, bucket: &str, key: &str, upload_id: &str) {
    let policy = Policy {
        attempts: 3,
        ..transport::policy()
    };
    let counter = AtomicU64::new(0);
    let result = transport::run(&policy, &counter, "aborting an upload", || async {
        client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| failure(&e))
    })
    .await;
    if let Err(gave_up) = result {
        tracing::warn!(
            "could not abort the multipart upload of {key}: {}",
            gave_up.summary()
        );
    }
}

/// Classifies one failed SDK call: by HTTP status when there was an answer (whatever its
/// body: XML, HTML or nothing), by the S3 error code (`SlowDown`), else by the kind of
/// connection trouble.
fn failure<E>(err: &SdkFailure<E>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = short(&DisplayErrorContext(err).to_string());
    let raw = err.raw_response();
    let status = raw.map(|r| r.status().as_u16());
    let retry_after = raw
        .and_then(|r| r.headers().get("retry-after"))
        .and_then(|v| transport::retry_after(v, SystemTime::now()));
    let code = err.as_service_error().and_then(|e| e.code());
    let kind = match (err, status) {
        _ if matches!(
            code,
            Some("SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable")
        ) =>
        {
            Kind::Transient
        }
        (SdkError::ConstructionFailure(_), _) => Kind::Fatal,
        (SdkError::DispatchFailure(d), _) if d.is_user() => Kind::Fatal,
        (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _) => Kind::Transient,
        // An answer whose body was cut short or could not be read (a dropped connection).
        (SdkError::ResponseError(_), Some(200..=299)) => Kind::Transient,
        (_, Some(status)) => transport::by_status(status),
        (SdkError::ResponseError(_), None) => Kind::Transient,
        _ => Kind::Fatal,
    };
    // The store's own words: its error code and message, else (an HTML page from a proxy,
    // which the SDK cannot parse) the start of the body, else the SDK's description.
    let words = match err.as_service_error().and_then(|e| e.code()) {
        Some(code) => {
            let message = err.as_service_error().and_then(|e| e.message());
            Some(format!("{code}: {}", message.unwrap_or_default()))
        }
        None => raw
            .and_then(|r| r.body().bytes())
            .map(|b| crate::error::one_line(&String::from_utf8_lossy(b)))
            .filter(|b| !b.is_empty())
            .map(|b| {
                format!(
                    "{detail}; the answer: {}",
                    b.chars().take(160).collect::<String>()
                )
            }),
    };
    // Without an answer the SDK says "io error: client error"; the root cause says what
    // happened (connection refused, reset, no such host).
    let detail = match (words, status) {
        (Some(words), _) => words,
        (None, None) => format!("{detail}: {}", crate::error::root_cause(err)),
        (None, Some(_)) => detail,
    };
    let detail = match status {
        Some(s) => format!("HTTP {s}: {detail}"),
        None => detail,
    };
    Failure {
        kind,
        status,
        retry_after,
        detail,
    }
}

/// The SDK's error chain ends in a `Debug` dump of the raw response: keep the readable start.
fn short(detail: &str) -> String {
    crate::error::one_line(detail.split(" (").next().unwrap_or(detail))
}

/// True when the SDK error is a 404 (HEAD answers with no body, GET with `NoSuchKey`).
/// An answer as "found" (`Some`), "not there" (a 404: `None`) or a failure to classify.
fn found<T, E>(
    sent: std::result::Result<T, SdkFailure<E>>,
) -> std::result::Result<Option<T>, Failure>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match sent {
        Ok(out) => Ok(Some(out)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(failure(&e)),
    }
}

/// A response body that broke off: worth another attempt.
fn cut_short(e: &(impl std::error::Error + 'static)) -> Failure {
    Failure::transient(format!("body cut short: {}", crate::error::root_cause(e)))
}

fn is_not_found<E>(err: &SdkFailure<E>) -> bool {
    err.raw_response()
        .is_some_and(|r| r.status().as_u16() == 404)
}

#[async_trait]
impl ObjectStore for S3Store {
    fn describe(&self) -> String {
        self.where_()
    }

    async fn check(&self) -> Result<()> {
        let refused = std::sync::atomic::AtomicU32::new(0);
        self.call("checking access", || async {
            let result = self
                .client
                .head_bucket()
                .bucket(&self.target.bucket)
                .send()
                .await;
            result.map_err(|e| {
                let mut failed = failure(&e);
                // Answers (5xx, 429) get the whole policy; no connection at all, only a few.
                if is_refused(&failed)
                    && refused.fetch_add(1, Ordering::Relaxed) + 1 >= CHECK_ATTEMPTS
                {
                    failed.kind = Kind::Fatal;
                }
                failed
            })
        })
        .await?;
        Ok(())
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
        let full = self.full_key(key);
        self.call(&format!("checking {key}"), || async {
            Ok(self.head_object(&full).await?.map(|out| ObjectInfo {
                size: out.content_length().unwrap_or(0).max(0) as u64,
                sha256: out.metadata().and_then(|m| m.get(SHA256_META)).cloned(),
                modified: out
                    .last_modified()
                    .and_then(|t| SystemTime::try_from(*t).ok()),
            }))
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let full = self.full_key(key);
        self.call(&format!("reading {key}"), || async {
            let Some(out) = self.get_object(&full).await? else {
                return Ok(None);
            };
            // A connection dropped in the middle of the body is worth another attempt too.
            let body = out.body.collect().await.map_err(|e| cut_short(&e))?;
            Ok(Some(body.into_bytes()))
        })
        .await
    }

    async fn content_type(&self, key: &str) -> Result<Option<String>> {
        let full = self.full_key(key);
        self.call(&format!("checking {key}"), || async {
            Ok(self
                .head_object(&full)
                .await?
                .map(|out| out.content_type().unwrap_or_default().to_string()))
        })
        .await
    }

    async fn hash_content(&self, key: &str) -> Result<Option<(u64, String)>> {
        use sha2::Digest;
        let full = self.full_key(key);
        self.call(&format!("reading {key}"), || async {
            let Some(mut out) = self.get_object(&full).await? else {
                return Ok(None);
            };
            // Chunk by chunk: a layer of gigabytes is hashed without being held in memory.
            let (mut hasher, mut size) = (sha2::Sha256::new(), 0u64);
            while let Some(chunk) = out.body.try_next().await.map_err(|e| cut_short(&e))? {
                size += chunk.len() as u64;
                hasher.update(&chunk);
            }
            Ok(Some((size, hex::encode(hasher.finalize()))))
        })
        .await
    }

    async fn put(&self, put: &Put) -> Result<()> {
        let size = put
            .body
            .size()
            .with_context(|| format!("reading the content of {}", put.key))?;
        match &put.body {
            Body::File(path) if size >= MULTIPART_THRESHOLD => {
                self.put_multipart(put, path, size).await
            }
            _ => self.put_small(put, size).await,
        }
    }

    async fn list_detailed(&self, prefix: &str) -> Result<Vec<Listed>> {
        let full = self.full_key(prefix);
        let strip = if self.target.prefix.is_empty() {
            0
        } else {
            self.target.prefix.len() + 1
        };
        let mut listed = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // One page per request, each retried on its own.
            let page = self
                .call(&format!("listing {prefix}"), || async {
                    self.client
                        .list_objects_v2()
                        .bucket(&self.target.bucket)
                        .prefix(&full)
                        .set_continuation_token(token.clone())
                        .send()
                        .await
                        .map_err(|e| failure(&e))
                })
                .await?;
            listed.extend(page.contents().iter().filter_map(|o| {
                Some(Listed {
                    key: o.key()?.get(strip..)?.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    modified: o
                        .last_modified()
                        .and_then(|t| SystemTime::try_from(*t).ok()),
                })
            }));
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() || page.is_truncated() != Some(true) {
                break;
            }
        }
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listed)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let full = self.full_key(key);
        self.call(&format!("deleting {key}"), || async {
            self.client
                .delete_object()
                .bucket(&self.target.bucket)
                .key(&full)
                .send()
                .await
                .map_err(|e| failure(&e))
        })
        .await?;
        Ok(())
    }

    fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    //! A cancelled multipart upload is a fault the test proxy cannot make (it needs the
    //! upload's future dropped half-way inside alba), so this unit test plays a minimal S3
    //! server on a loopback socket: it starts the upload, never answers the part, and
    //! records the `AbortMultipartUpload` that the dropped future must still send.
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    fn store(port: u16) -> S3Store {
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(Region::new("garage"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "key", "secret", None, None, "test",
            ))
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .force_path_style(true)
            .retry_config(RetryConfig::disabled())
            .build();
        let target = S3Target {
            bucket: "b".into(),
            prefix: String::new(),
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            region: Some("garage".into()),
            force_path_style: true,
            profile: None,
        };
        S3Store {
            client: Client::from_conf(conf),
            target,
            retries: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Answers `CreateMultipartUpload`, holds every part forever, and sends the request line
    /// of each `DELETE` to `aborts`.
    async fn serve(listener: TcpListener, aborts: tokio::sync::mpsc::UnboundedSender<String>) {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let aborts = aborts.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(socket);
                let mut request = String::new();
                let mut line = String::new();
                while reader.read_line(&mut line).await.is_ok_and(|n| n > 2) {
                    if request.is_empty() {
                        request = line.clone();
                    }
                    line.clear();
                }
                let socket = reader.get_mut();
                if request.starts_with("POST") {
                    let body = "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>u1</UploadId></InitiateMultipartUploadResult>";
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                } else if request.starts_with("DELETE") {
                    let _ = aborts.send(request);
                    let answer = "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
                    let _ = socket.write_all(answer.as_bytes()).await;
                } else {
                    // A part: never answered, so the upload is in flight when it is dropped.
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
            });
        }
    }

    #[tokio::test]
    async fn a_dropped_multipart_upload_is_aborted() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, mut aborts) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(serve(listener, tx));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("layer");
        std::fs::write(&file, vec![7u8; 4096]).unwrap();
        let store = store(port);
        let put = Put {
            key: "k".into(),
            body: Body::File(file.clone()),
            content_type: "application/octet-stream".into(),
            sha256: String::new(),
        };
        // Cancelled the way a failing sibling upload cancels it: its future is dropped.
        let upload = store.put_multipart(&put, &file, 4096);
        let timed_out = tokio::time::timeout(Duration::from_millis(500), upload).await;
        assert!(timed_out.is_err(), "the part was never answered");
        let abort = tokio::time::timeout(Duration::from_secs(10), aborts.recv())
            .await
            .expect("no AbortMultipartUpload within 10 s of the cancellation")
            .unwrap();
        assert!(abort.contains("uploadId=u1"), "{abort}");
    }
}
