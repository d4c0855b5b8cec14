//! An S3 bucket through aws-sdk-s3 (Garage, MinIO, AWS), with the Go CDK URL parameters.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::{Body, ObjectInfo, ObjectStore, Put};
use crate::target::S3Target;

/// Objects at least this large go up as parallel multipart uploads.
const MULTIPART_THRESHOLD: u64 = 64 * 1024 * 1024;
/// Size of one multipart part (S3 needs at least 5 MiB).
const PART_SIZE: u64 = 16 * 1024 * 1024;
/// Parts of one object uploaded at once; memory stays bounded as parts stream from disk.
const PART_CONCURRENCY: usize = 4;
/// The metadata key holding the content's sha256.
const SHA256_META: &str = "sha256";

/// An [`ObjectStore`] on an S3 bucket.
pub struct S3Store {
    client: Client,
    target: S3Target,
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
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if shared.region().is_none() {
            conf = conf.region(Region::new("us-east-1"));
        }
        if let Some(endpoint) = &target.endpoint {
            conf = conf.endpoint_url(endpoint);
        }
        Ok(S3Store {
            client: Client::from_conf(conf.build()),
            target: target.clone(),
        })
    }

    fn full_key(&self, key: &str) -> String {
        if self.target.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.target.prefix)
        }
    }

    fn where_(&self) -> String {
        let endpoint = self.target.endpoint.as_deref().unwrap_or("AWS");
        format!("bucket {:?} at {endpoint}", self.target.bucket)
    }

    /// Turns an SDK error into a message that names the bucket, the object and the fix.
    fn error<E>(
        &self,
        what: &str,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> anyhow::Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let detail = short(&DisplayErrorContext(&err).to_string());
        let hint = match (&err, status) {
            (_, Some(401 | 403)) => {
                "access denied: check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or profile= in the URL) and the key's rights on the bucket"
            }
            (_, Some(404)) => "the bucket does not exist: create it or fix the bucket name",
            _ if detail.contains("no providers in chain") || detail.contains("credentials") => {
                "no credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE / profile= in the URL"
            }
            (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _) => {
                "could not reach the endpoint: check endpoint= in the URL and that the service is running"
            }
            _ => "the store refused the request",
        };
        let status = status.map(|s| format!(" (HTTP {s})")).unwrap_or_default();
        anyhow!(
            "{what} on {}{status}: {hint}\n  detail: {detail}",
            self.where_()
        )
    }

    async fn put_small(&self, put: &Put, body: ByteStream, size: u64) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.target.bucket)
            .key(self.full_key(&put.key))
            .content_type(&put.content_type)
            .content_length(size as i64)
            .metadata(SHA256_META, &put.sha256)
            .body(body)
            .send()
            .await
            .map_err(|e| self.error(&format!("writing {}", put.key), e))?;
        Ok(())
    }

    async fn put_multipart(&self, put: &Put, path: &Path, size: u64) -> Result<()> {
        let key = self.full_key(&put.key);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.target.bucket)
            .key(&key)
            .content_type(&put.content_type)
            .metadata(SHA256_META, &put.sha256)
            .send()
            .await
            .map_err(|e| self.error(&format!("starting upload of {}", put.key), e))?;
        let upload_id = created
            .upload_id()
            .context("S3 gave no upload id")?
            .to_string();
        let result = self.upload_parts(&key, &upload_id, path, size).await;
        let parts = match result {
            Ok(parts) => parts,
            Err(e) => {
                // Leave no half upload behind; the error that matters is the first one.
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.target.bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                return Err(e);
            }
        };
        self.client
            .complete_multipart_upload()
            .bucket(&self.target.bucket)
            .key(&key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.error(&format!("completing upload of {}", put.key), e))?;
        Ok(())
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        path: &Path,
        size: u64,
    ) -> Result<Vec<CompletedPart>> {
        let count = size.div_ceil(PART_SIZE);
        let parts = futures::stream::iter(0..count)
            .map(|i| self.upload_part(key, upload_id, path, i, size))
            .buffered(PART_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(parts)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        path: &Path,
        index: u64,
        size: u64,
    ) -> Result<CompletedPart> {
        let offset = index * PART_SIZE;
        let length = PART_SIZE.min(size - offset);
        let body = ByteStream::read_from()
            .path(path)
            .offset(offset)
            .length(Length::Exact(length))
            .build()
            .await?;
        let number = (index + 1) as i32;
        let out = self
            .client
            .upload_part()
            .bucket(&self.target.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(length as i64)
            .body(body)
            .send()
            .await
            .map_err(|e| self.error(&format!("uploading part {number} of {key}"), e))?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag)
            .build())
    }
}

/// The SDK's error chain ends in a `Debug` dump of the raw response: keep the readable start.
fn short(detail: &str) -> String {
    crate::error::one_line(detail.split(" (").next().unwrap_or(detail))
}

#[async_trait]
impl ObjectStore for S3Store {
    fn describe(&self) -> String {
        self.where_()
    }

    async fn check(&self) -> Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.target.bucket)
            .send()
            .await
            .map_err(|e| self.error("checking access", e))?;
        Ok(())
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
        let result = self
            .client
            .head_object()
            .bucket(&self.target.bucket)
            .key(self.full_key(key))
            .send()
            .await;
        match result {
            Ok(out) => Ok(Some(ObjectInfo {
                size: out.content_length().unwrap_or(0).max(0) as u64,
                sha256: out.metadata().and_then(|m| m.get(SHA256_META)).cloned(),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(self.error(&format!("checking {key}"), e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let result = self
            .client
            .get_object()
            .bucket(&self.target.bucket)
            .key(self.full_key(key))
            .send()
            .await;
        match result {
            Ok(out) => Ok(Some(
                out.body
                    .collect()
                    .await
                    .with_context(|| format!("reading {key}"))?
                    .into_bytes(),
            )),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(self.error(&format!("reading {key}"), e)),
        }
    }

    async fn put(&self, put: &Put) -> Result<()> {
        match &put.body {
            Body::Bytes(b) => {
                self.put_small(put, ByteStream::from(b.clone()), b.len() as u64)
                    .await
            }
            Body::File(path) => {
                let size = std::fs::metadata(path)
                    .with_context(|| format!("reading {}", path.display()))?
                    .len();
                if size >= MULTIPART_THRESHOLD {
                    return self.put_multipart(put, path, size).await;
                }
                let body = ByteStream::from_path(path)
                    .await
                    .with_context(|| format!("opening {}", path.display()))?;
                self.put_small(put, body, size).await
            }
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let full = self.full_key(prefix);
        let strip = if self.target.prefix.is_empty() {
            0
        } else {
            self.target.prefix.len() + 1
        };
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.target.bucket)
            .prefix(&full)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error(&format!("listing {prefix}"), e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .map(|k| k[strip..].to_string()),
            );
        }
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.target.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.error(&format!("deleting {key}"), e))?;
        Ok(())
    }
}
