//! `alba container rm|gc` on an OCI registry (`docker://`).
//!
//! A registry deletes a manifest by digest (`DELETE /v2/<repo>/manifests/<digest>`, 202), and
//! with it every tag pointing at it; its blobs are left to the registry's own garbage
//! collector (distribution: `registry garbage-collect`). Deletion must be enabled there
//! (distribution: `storage.delete.enabled: true`); a registry that refuses says 405 or
//! `UNSUPPORTED`, and alba says so. oci-client has no DELETE, so it goes out through the
//! registry client's own requests, signed in with the `delete` scope from the registry's
//! bearer challenge, and retried under the run's transport policy like every registry
//! request; tags and digests are read through the same [`RegistrySink`].
//!
//! Because deleting by digest removes every tag of that manifest, `rm` of a tag that shares its
//! manifest with other tags deletes by tag instead (OCI distribution 1.1), and stops with a
//! clear message where the registry cannot; `gc` keeps such aliases of kept tags.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow};
use futures::StreamExt;
use oci_client::RegistryOperation;
use reqwest::Response;

use super::RegistrySink;
use super::failure::Failed;
use crate::error::one_line;
use crate::publish::credentials::Credentials;
use crate::publish::oci::OciSink;
use crate::target::RegistryTarget;
use crate::transport::{Kind, by_status};

/// A repository on a registry, for deleting.
pub struct RegistryRepo {
    sink: RegistrySink,
    /// Tags whose digest is asked at once.
    reads: usize,
}

/// What the registry answered to a DELETE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Deleted,
    /// 404: gone already.
    Gone,
}

impl RegistryRepo {
    /// The repository of `target`, with `credentials`. Nothing is sent yet.
    pub fn new(target: &RegistryTarget, credentials: Credentials) -> Result<RegistryRepo> {
        Ok(RegistryRepo {
            sink: RegistrySink::new(target, credentials)?,
            reads: crate::store::many::DEFAULT_READS,
        })
    }

    /// Asks up to `at_once` tags' digests at once (default [`crate::store::many::DEFAULT_READS`]).
    pub fn reading(mut self, at_once: usize) -> RegistryRepo {
        self.reads = at_once;
        self
    }

    /// The registry host, for messages.
    pub fn host(&self) -> &str {
        &self.sink.host
    }

    /// Requests retried so far after transient faults, for the report.
    pub fn retry_count(&self) -> u64 {
        self.sink.retry_count()
    }

    /// The repository, for messages.
    pub fn repository(&self) -> &str {
        &self.sink.repository
    }

    /// Every tag of the repository and the digest it points at.
    pub async fn tag_digests(&self) -> Result<BTreeMap<String, String>> {
        self.sink.sign_in(RegistryOperation::Pull).await?;
        let mut digests = BTreeMap::new();
        let tags = self.sink.list_tags().await?;
        let asked: Vec<_> = tags
            .iter()
            .map(|tag| self.sink.manifest_digest(tag))
            .collect();
        let answers = futures::stream::iter(asked).buffered(self.reads.max(1));
        for (tag, digest) in tags.iter().zip(answers.collect::<Vec<_>>().await) {
            // A tag deleted since it was listed is simply not there any more.
            if let Some(digest) = digest? {
                digests.insert(tag.clone(), digest);
            }
        }
        Ok(digests)
    }

    /// The bytes a manifest reference resolves to, if any (an index, to find what it lists).
    pub async fn manifest(&self, reference: &str) -> Result<Option<bytes::Bytes>> {
        crate::publish::oci::OciSink::manifest(&self.sink, reference).await
    }

    /// `DELETE /v2/<repo>/manifests/<reference>`, retrying transient failures (connection
    /// trouble, 5xx, 429) under the run's transport policy; any other answer is judged by
    /// `RegistryRepo::outcome`.
    pub async fn delete(&self, reference: &str) -> Result<Outcome> {
        let url = self.sink.url(&format!("manifests/{reference}"));
        let what = format!("DELETE of manifest {reference}");
        let response = self
            .sink
            .retrying(&what, || async {
                let response = self
                    .sink
                    .send_for_delete(|| Ok(self.sink.http.delete(&url)))
                    .await?;
                if by_status(response.status().as_u16()) == Kind::Transient {
                    return Err(Failed::answer(response).await);
                }
                Ok(response)
            })
            .await?;
        self.outcome(reference, response).await
    }

    /// Turns the final answer into an outcome, or an error that names the fix.
    async fn outcome(&self, reference: &str, response: Response) -> Result<Outcome> {
        let host = &self.sink.host;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(Outcome::Deleted);
        }
        if status == 404 {
            return Ok(Outcome::Gone);
        }
        let credentials = &self.sink.credentials;
        let body = credentials.redact(&one_line(&response.text().await.unwrap_or_default()));
        Err(match status {
            405 => anyhow!(
                "registry {host} refuses to delete manifests (405 Method Not Allowed: deletion is disabled there); enable it (distribution: storage.delete.enabled: true) or delete {reference} with the registry's own tools; nothing was deleted"
            ),
            _ if body.contains("UNSUPPORTED") => anyhow!(
                "registry {host} does not support deleting {reference} (status {status}: {body}); with distribution, enable storage.delete.enabled: true; nothing was deleted"
            ),
            401 | 403 => anyhow!(
                "registry {host} refused to delete {reference} in {} (status {status}); credentials from {} need delete rights there",
                self.sink.repository,
                credentials.source
            ),
            _ => anyhow!(
                "registry {host}: DELETE of manifest {reference} failed with status {status}: {body}"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::credentials::{Auth, Secret};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    /// A registry that wants a bearer token for deleting: it answers DELETE without one with
    /// a challenge, hands out `t1` at `/token`, answers the first good DELETE of `sha256:aa`
    /// with 503, `gone` with 404 and `off` with 405. Each request line (and its `Bearer`
    /// token, if any) goes to `seen`.
    async fn serve(listener: TcpListener, seen: Arc<Mutex<Vec<String>>>) {
        let port = listener.local_addr().unwrap().port();
        let mut busy_once = true;
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let mut reader = BufReader::new(socket);
            let (mut request, mut bearer, mut line) = (String::new(), None, String::new());
            while reader.read_line(&mut line).await.is_ok_and(|n| n > 2) {
                if request.is_empty() {
                    request = line.trim().to_string();
                } else if let Some(token) = line.trim().strip_prefix("authorization: Bearer ") {
                    bearer = Some(token.to_string());
                }
                line.clear();
            }
            seen.lock()
                .unwrap()
                .push(format!("{request} {}", bearer.as_deref().unwrap_or("-")));
            let (status, headers, body) = if request.starts_with("GET /token") {
                ("200 OK", String::new(), r#"{"token":"t1"}"#)
            } else if bearer.as_deref() != Some("t1") {
                let challenge = format!(
                    "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"reg\"\r\n"
                );
                ("401 Unauthorized", challenge, "")
            } else if request.contains("sha256:aa") && std::mem::take(&mut busy_once) {
                ("503 Service Unavailable", "Retry-After: 0\r\n".into(), "")
            } else if request.contains("sha256:aa") {
                ("202 Accepted", String::new(), "")
            } else if request.contains("/off ") {
                ("405 Method Not Allowed", String::new(), "")
            } else {
                ("404 Not Found", String::new(), "")
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = reader.get_mut().write_all(answer.as_bytes()).await;
        }
    }

    #[tokio::test]
    async fn deletes_answer_the_bearer_challenge_once_and_retry_transient_answers() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(serve(listener, seen.clone()));
        let target = RegistryTarget {
            host: format!("127.0.0.1:{port}"),
            repository: "a/b".into(),
            tag: None,
            insecure: true,
        };
        let credentials = Credentials {
            auth: Auth::Basic("u".into(), Secret::new("hunter22")),
            source: "--registry-user u".into(),
        };
        let repo = RegistryRepo::new(&target, credentials).unwrap();
        assert_eq!(repo.delete("sha256:aa").await.unwrap(), Outcome::Deleted);
        let requests = std::mem::take(&mut *seen.lock().unwrap());
        assert_eq!(requests.len(), 4, "{requests:#?}");
        assert!(requests[0].starts_with("DELETE /v2/a/b/manifests/sha256:aa "));
        assert!(
            requests[1].starts_with("GET /token?scope=repository%3Aa%2Fb%3Adelete&service=reg"),
            "{requests:#?}"
        );
        assert!(requests[2].ends_with(" t1") && requests[3].ends_with(" t1"));
        assert_eq!(repo.sink.retry_count(), 1, "the 503 was retried");
        // The token is kept: the next DELETE needs no new challenge.
        assert_eq!(repo.delete("gone").await.unwrap(), Outcome::Gone);
        assert_eq!(seen.lock().unwrap().len(), 1);
        let refused = repo.delete("off").await.unwrap_err().to_string();
        assert!(
            refused.contains("refuses to delete manifests")
                && refused.contains("nothing was deleted"),
            "{refused}"
        );
    }
}
