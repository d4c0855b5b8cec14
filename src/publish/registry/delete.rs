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

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, anyhow, bail};
use oci_client::RegistryOperation;
use reqwest::Response;

use super::RegistrySink;
use super::failure::Failed;
use crate::error::one_line;
use crate::publish::credentials::Credentials;
use crate::publish::lifecycle::{self, Deletion, GcOptions, Selection};
use crate::publish::oci::OciSink;
use crate::report::TargetReport;
use crate::target::RegistryTarget;
use crate::transport::{Kind, by_status};
use crate::ui::Ui;

/// A repository on a registry, for deleting.
pub struct RegistryRepo {
    sink: RegistrySink,
}

/// What the registry answered to a DELETE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
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
        })
    }

    /// Every tag of the repository and the digest it points at.
    async fn tag_digests(&self) -> Result<BTreeMap<String, String>> {
        self.sink.sign_in(RegistryOperation::Pull).await?;
        let mut digests = BTreeMap::new();
        for tag in self.sink.list_tags().await? {
            // A tag deleted since it was listed is simply not there any more.
            if let Some(digest) = self.sink.manifest_digest(&tag).await? {
                digests.insert(tag, digest);
            }
        }
        Ok(digests)
    }

    /// `DELETE /v2/<repo>/manifests/<reference>`, retrying transient failures (connection
    /// trouble, 5xx, 429) under the run's transport policy; any other answer is judged by
    /// [`RegistryRepo::outcome`].
    async fn delete(&self, reference: &str) -> Result<Outcome> {
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

/// `alba container rm` on a registry: deletes the tag's manifest by digest (or, when other
/// tags share it, the tag alone where the registry allows it). Unknown tag: error, nothing deleted.
pub async fn rm(
    repo: &RegistryRepo,
    tag: &str,
    dry_run: bool,
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<()> {
    let digests = repo.tag_digests().await?;
    let Some(digest) = digests.get(tag).cloned() else {
        let tags: Vec<String> = digests.keys().cloned().collect();
        bail!(
            "tag {tag} does not exist in {} on registry {} (tags there: {}); nothing was deleted",
            repo.sink.repository,
            repo.sink.host,
            lifecycle::tag_list(&tags)
        );
    };
    let sharing: Vec<String> = digests
        .iter()
        .filter(|(t, d)| *d == &digest && t.as_str() != tag)
        .map(|(t, _)| t.clone())
        .collect();
    if sharing.is_empty() {
        let reason = format!(
            "tag {tag}: removed by rm (its manifest, by digest; the registry's garbage collector frees the blobs)"
        );
        return delete_one(repo, &digest, reason, dry_run, ui, report).await;
    }
    let shared = sharing.join(", ");
    let reason =
        format!("tag {tag}: removed by rm (by tag: {shared} point at the same image and stay)");
    delete_one(repo, tag, reason, dry_run, ui, report).await.map_err(|e| {
        anyhow!(
            "tag {tag} points at the same image as {shared}, and deleting that image's manifest would remove {shared} too; alba tried to delete the tag alone, which registry {} refused ({e:#}); nothing was deleted",
            repo.sink.host
        )
    })
}

/// `alba container gc` on a registry: keeps the newest tags (by version), their aliases and,
/// if asked, releases; deletes the manifests of the others by digest.
pub async fn gc(
    repo: &RegistryRepo,
    opts: &GcOptions,
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<Selection> {
    let digests = repo.tag_digests().await?;
    // Referrers tags (`sha256-<hex>`) are no release's: they stay with their subjects.
    let tags: Vec<String> = digests
        .keys()
        .filter(|t| !crate::publish::oci_static::is_referrers_tag(t))
        .cloned()
        .collect();
    let mut selection = lifecycle::select_container_tags(&tags, opts, |t| digests.get(t).cloned());
    lifecycle::warn_unversioned(&selection, ui);
    selection.print(ui, opts.dry_run);
    // One DELETE per manifest: it removes every (removed) tag pointing at it. A manifest a
    // kept tag shares (1.1 and 1.2 from one commit) loses only the removed tag's name.
    let kept: BTreeSet<&String> = selection
        .keep
        .iter()
        .filter_map(|d| digests.get(&d.tag))
        .collect();
    let mut by_digest: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in &selection.remove {
        if let Some(digest) = digests.get(&d.tag) {
            by_digest
                .entry(digest.clone())
                .or_default()
                .push(d.tag.clone());
        }
    }
    let mut refused = Vec::new();
    for (digest, tags) in by_digest {
        if kept.contains(&digest) {
            for tag in tags {
                if !delete_shared_tag(repo, &tag, opts.dry_run, ui, report).await {
                    refused.push(tag);
                }
            }
            continue;
        }
        let reason = format!("manifest of removed tag {}", tags.join(", "));
        delete_one(repo, &digest, reason, opts.dry_run, ui, report).await?;
    }
    // What the registry refused to delete stays, and the report says so.
    let (stays, removed) = std::mem::take(&mut selection.remove)
        .into_iter()
        .partition(|d| refused.contains(&d.tag));
    selection.remove = removed;
    selection.keep.extend(stays);
    if !selection.remove.is_empty() {
        ui.line("blobs: the registry's own garbage collector frees them (distribution: `registry garbage-collect`)");
    }
    Ok(selection)
}

/// Deletes a removed tag whose manifest a kept tag shares, by tag alone. A registry that
/// deletes only by digest refuses; the tag then stays (with a warning): deleting the manifest
/// would take the kept tag with it.
async fn delete_shared_tag(
    repo: &RegistryRepo,
    tag: &str,
    dry_run: bool,
    ui: &Ui,
    report: &mut TargetReport,
) -> bool {
    let reason = format!("tag {tag}: removed by gc (by tag: a kept tag shares its image)");
    let Err(e) = delete_one(repo, tag, reason, dry_run, ui, report).await else {
        return true;
    };
    // `delete_one` recorded the deletion before the registry refused it.
    if report.objects.last().is_some_and(|o| o.key.ends_with(tag)) {
        report.objects.pop();
    }
    ui.warn(format!(
        "tag {tag} stays: it shares its image with a kept tag, and registry {} refused to delete the tag alone ({e:#})",
        repo.sink.host
    ));
    false
}

/// Announces, records and (outside a dry run) deletes one manifest reference.
async fn delete_one(
    repo: &RegistryRepo,
    reference: &str,
    reason: String,
    dry_run: bool,
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<()> {
    let digest = reference
        .starts_with("sha256:")
        .then(|| reference.to_string());
    let deletion = Deletion {
        key: format!("manifests/{reference}"),
        size: 0,
        digest,
        reason,
    };
    lifecycle::announce(&deletion, dry_run, ui, report);
    if !dry_run && repo.delete(reference).await? == Outcome::Gone {
        ui.line(format!("{reference} was already gone"));
    }
    Ok(())
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
