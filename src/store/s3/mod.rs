//! An S3 bucket through aws-sdk-s3 (Garage, MinIO, AWS), with the Go CDK URL parameters.
//!
//! Every request goes through the shared retry policy ([`crate::transport`]) rather than the
//! SDK's own retries, which are turned off: one policy (attempts, total time, backoff, a capped
//! `Retry-After`) for buckets and registries alike, retries counted for the report, and errors
//! classified by HTTP status first — a reverse proxy's HTML 502 makes the SDK fail with "error
//! parsing XML: no root element", which its classifier does not retry but the status does.
//! Multipart uploads retry single parts and abort the upload on failure, and also when the
//! upload's future is dropped (another upload of the push failed): `multipart::AbortOnDrop`.
//!
//! This file holds the store and its [`ObjectStore`] implementation; `config` builds the SDK
//! client from the URL parameters, `errors` classifies failures and words the final message,
//! `multipart` uploads large files and cleans up cancelled uploads.

mod config;
mod errors;
mod multipart;

pub use multipart::{defer, finish_aborts};

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use anyhow::{Context, Result};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use super::{Body, Listed, ObjectInfo, ObjectStore, Put};
use crate::target::S3Target;
use crate::transport::{self, Failure, Kind, Policy};
use errors::{cut_short, failure, found, is_refused};
use multipart::MULTIPART_THRESHOLD;

/// The metadata key holding the content's sha256.
const SHA256_META: &str = "sha256";
/// Attempts of the first request (`check`) when no connection can be made at all: an endpoint
/// that refuses connections (or does not resolve) when a run starts is most likely a wrong
/// `endpoint=`, which must not take minutes to report. Answers such as 503 get the full policy.
const CHECK_ATTEMPTS: u32 = 3;

/// An [`ObjectStore`] on an S3 bucket.
pub struct S3Store {
    client: Client,
    target: S3Target,
    retries: Arc<AtomicU64>,
}

impl S3Store {
    /// Connects (lazily) to the bucket; credentials come from the standard AWS chain.
    pub async fn new(target: &S3Target) -> Result<S3Store> {
        Ok(S3Store {
            client: config::client(target).await,
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
        Ok(self.get_typed(key).await?.map(|(bytes, _)| bytes))
    }

    async fn get_typed(&self, key: &str) -> Result<Option<(Bytes, Option<String>)>> {
        let full = self.full_key(key);
        self.call(&format!("reading {key}"), || async {
            let Some(out) = self.get_object(&full).await? else {
                return Ok(None);
            };
            let content_type = out.content_type().unwrap_or_default().to_string();
            // A connection dropped in the middle of the body is worth another attempt too.
            let body = out.body.collect().await.map_err(|e| cut_short(&e))?;
            Ok(Some((body.into_bytes(), Some(content_type))))
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
