//! `alba container rm|gc` on an OCI registry (`docker://`).
//!
//! A registry deletes a manifest by digest (`DELETE /v2/<repo>/manifests/<digest>`, 202), and
//! with it every tag pointing at it; its blobs are left to the registry's own garbage
//! collector (distribution: `registry garbage-collect`). Deletion must be enabled there
//! (distribution: `storage.delete.enabled: true`); a registry that refuses says 405 or
//! `UNSUPPORTED`, and alba says so. oci-client has no DELETE, so this module sends it with
//! reqwest (already in the graph through oci-client), doing the registry's bearer-token dance
//! itself with the `delete` scope; tags and digests are read through [`RegistrySink`].
//!
//! Because deleting by digest removes every tag of that manifest, `rm` of a tag that shares its
//! manifest with other tags deletes by tag instead (OCI distribution 1.1), and stops with a
//! clear message where the registry cannot; `gc` keeps such aliases of kept tags.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use oci_client::{Reference, RegistryOperation};

use super::credentials::{Auth, Credentials};
use super::lifecycle::{self, Deletion, GcOptions, Selection};
use super::oci::OciSink;
use super::oci_registry::{self, RegistrySink};
use crate::error::{one_line, root_cause};
use crate::report::TargetReport;
use crate::target::RegistryTarget;
use crate::ui::Ui;

/// Attempts per DELETE (connection failures, 5xx and 429 are retried).
const ATTEMPTS: u32 = 3;

/// A repository on a registry, for deleting.
pub struct RegistryRepo {
    sink: RegistrySink,
    http: reqwest::Client,
    /// `http[s]://host[:port]`.
    base_url: String,
    host: String,
    repository: String,
    credentials: Credentials,
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
        let sink = RegistrySink::new(target, credentials.clone())?;
        let registry = Reference::with_tag(
            target.host.clone(),
            target.repository.clone(),
            "latest".into(),
        )
        .resolve_registry()
        .to_string();
        let scheme = if target.insecure { "http" } else { "https" };
        let http = reqwest::Client::builder()
            .user_agent(concat!("alba/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| anyhow!("cannot set up the HTTP client for {}: {e}", target.host))?;
        Ok(RegistryRepo {
            sink,
            http,
            base_url: format!("{scheme}://{registry}"),
            host: target.host.clone(),
            repository: target.repository.clone(),
            credentials,
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

    /// `DELETE /v2/<repo>/manifests/<reference>`, retrying transient failures.
    async fn delete(&self, reference: &str) -> Result<Outcome> {
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            self.base_url, self.repository
        );
        let mut attempt = 1;
        loop {
            let result = self.send_delete(&url).await;
            let transient = match &result {
                Ok(r) => r.status().is_server_error() || r.status().as_u16() == 429,
                Err(e) => e.is_connect() || e.is_timeout() || e.is_request(),
            };
            if !transient || attempt >= ATTEMPTS {
                return self.outcome(reference, result).await;
            }
            tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            attempt += 1;
        }
    }

    /// Sends the DELETE with the credentials; on a bearer challenge, gets a token with the
    /// `delete` scope and sends it again.
    async fn send_delete(&self, url: &str) -> reqwest::Result<reqwest::Response> {
        let first = self.authorized(self.http.delete(url), None).send().await?;
        if first.status().as_u16() != 401 {
            return Ok(first);
        }
        let challenge = first
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_bearer_challenge);
        let Some(challenge) = challenge else {
            return Ok(first);
        };
        match self.token(&challenge).await? {
            Some(token) => {
                self.authorized(self.http.delete(url), Some(&token))
                    .send()
                    .await
            }
            None => Ok(first),
        }
    }

    /// Adds the bearer `token`, or else the credentials as they are.
    fn authorized(
        &self,
        request: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        oci_registry::authorize(request, token, &self.credentials)
    }

    /// A token from the challenge's realm for deleting in this repository; `None` when the
    /// token service refuses (the 401 then speaks for itself).
    async fn token(&self, challenge: &BTreeMap<String, String>) -> reqwest::Result<Option<String>> {
        let Some(realm) = challenge.get("realm") else {
            return Ok(None);
        };
        let default_scope = format!("repository:{}:delete", self.repository);
        let scope = challenge.get("scope").cloned().unwrap_or(default_scope);
        let mut query = vec![("scope", scope)];
        if let Some(service) = challenge.get("service") {
            query.push(("service", service.clone()));
        }
        let mut request = self.http.get(realm).query(&query);
        if let Auth::Basic(user, password) = &self.credentials.auth {
            request = request.basic_auth(user, Some(password.expose()));
        }
        let response = request.send().await?;
        if !response.status().is_success() {
            return Ok(None);
        }
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        Ok(body["token"]
            .as_str()
            .or(body["access_token"].as_str())
            .map(str::to_string))
    }

    /// Turns the final answer into an outcome, or an error that names the fix.
    async fn outcome(
        &self,
        reference: &str,
        result: reqwest::Result<reqwest::Response>,
    ) -> Result<Outcome> {
        let host = &self.host;
        let response = result.map_err(|e| {
            anyhow!(
                "registry {host}: DELETE of manifest {reference} failed: {}",
                self.redact(&root_cause(&e))
            )
        })?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(Outcome::Deleted);
        }
        if status == 404 {
            return Ok(Outcome::Gone);
        }
        let body = self.redact(&one_line(&response.text().await.unwrap_or_default()));
        Err(match status {
            405 => anyhow!(
                "registry {host} refuses to delete manifests (405 Method Not Allowed: deletion is disabled there); enable it (distribution: storage.delete.enabled: true) or delete {reference} with the registry's own tools; nothing was deleted"
            ),
            _ if body.contains("UNSUPPORTED") => anyhow!(
                "registry {host} does not support deleting {reference} (status {status}: {body}); with distribution, enable storage.delete.enabled: true; nothing was deleted"
            ),
            401 | 403 => anyhow!(
                "registry {host} refused to delete {reference} in {} (status {status}); credentials from {} need delete rights there",
                self.repository,
                self.credentials.source
            ),
            _ => anyhow!(
                "registry {host}: DELETE of manifest {reference} failed with status {status}: {body}"
            ),
        })
    }

    /// `text` without the secret in it (registries may echo what they were sent).
    fn redact(&self, text: &str) -> String {
        match self.credentials.secret() {
            Some(secret) if secret.len() >= 4 => text.replace(secret, "***"),
            _ => text.to_string(),
        }
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
            repo.repository,
            repo.host,
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
            repo.host
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
        .filter(|t| !super::oci_static::is_referrers_tag(t))
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
        repo.host
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

/// The parameters of a `Bearer realm="…",service="…",scope="…"` challenge.
fn parse_bearer_challenge(header: &str) -> Option<BTreeMap<String, String>> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_once(',').map_or((after, ""), |(v, r)| (v, r)),
        };
        params.insert(key, value.to_string());
        rest = remaining.trim_start_matches([',', ' ']);
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let c = parse_bearer_challenge(r#"Bearer realm="https://auth.example.org/token",service="reg",scope="repository:a/b:delete,pull""#).unwrap();
        assert_eq!(c["realm"], "https://auth.example.org/token");
        assert_eq!(c["service"], "reg");
        assert_eq!(c["scope"], "repository:a/b:delete,pull");
        assert!(parse_bearer_challenge(r#"Basic realm="x""#).is_none());
        assert_eq!(
            parse_bearer_challenge("Bearer realm=x, service=y").unwrap()["service"],
            "y"
        );
    }
}
