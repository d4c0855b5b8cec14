//! The push side of a registry: [`OciSink`] for [`RegistrySink`], and one blob upload session.

use anyhow::{Result, anyhow};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::Stream;
use oci_client::RegistryOperation;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{RequestBuilder, StatusCode};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::failure::Failed;
use super::{PULL_TYPES, RegistrySink, object};
use crate::image::Blob;
use crate::publish::oci::OciSink;
use crate::store::Body;
use crate::ui::human_size;

/// Bytes read from a spooled layer per chunk of the upload stream.
const CHUNK: usize = 256 * 1024;

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
}

impl RegistrySink {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
