//! Multipart uploads of large files: parts uploaded a few at once and retried one by one,
//! and the upload aborted on failure or when its future is dropped ([`AbortOnDrop`]). Also
//! the registry of cleanups still running when a run ends ([`defer`], [`finish_aborts`]).

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures::{StreamExt, TryStreamExt};

use super::errors::failure;
use super::{S3Store, SHA256_META};
use crate::store::Put;
use crate::transport::{self, Failure, Policy};

/// Objects at least this large go up as parallel multipart uploads.
pub(super) const MULTIPART_THRESHOLD: u64 = 64 * 1024 * 1024;
/// Size of one multipart part (S3 needs at least 5 MiB).
const PART_SIZE: u64 = 16 * 1024 * 1024;
/// Parts of one object uploaded at once; memory stays bounded as parts stream from disk.
const PART_CONCURRENCY: usize = 4;

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

impl S3Store {
    /// Uploads a large file in parts; no half upload is left behind when it fails.
    pub(super) async fn put_multipart(&self, put: &Put, path: &Path, size: u64) -> Result<()> {
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

#[cfg(test)]
mod tests {
    //! A cancelled multipart upload is a fault the test proxy cannot make (it needs the
    //! upload's future dropped half-way inside alba), so this unit test plays a minimal S3
    //! server on a loopback socket: it starts the upload, never answers the part, and
    //! records the `AbortMultipartUpload` that the dropped future must still send.
    use super::*;
    use crate::store::Body;
    use crate::target::S3Target;
    use aws_sdk_s3::config::Region;
    use aws_sdk_s3::config::retry::RetryConfig;
    use std::sync::Arc;
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
            web: None,
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
