//! Image checks, as a pull client meets them: `GET /v2/`, `tags/list`, each tag's index and
//! manifests (Content-Type equal to their mediaType), every manifest, config and layer by
//! digest and size, alias tags against the release they name, and SBOM referrers (the
//! `sha256-<hex>` tag schema, the referrers file or API) where present.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;

use anyhow::Result;
use serde_json::Value;

use super::oci_source::Images;
use super::{Findings, Object, Options};
use crate::digest::oci_digest;
use crate::image::INDEX_MEDIA_TYPE;
use crate::publish::derived::is_attached_tag;
use crate::store::many;

/// The annotation holding the release version (the tag an index was published for).
const VERSION: &str = "org.opencontainers.image.version";

/// A content descriptor, as an index or manifest names another object.
#[derive(Debug, Clone)]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
}

impl Descriptor {
    fn parse(value: &Value) -> Option<Descriptor> {
        Some(Descriptor {
            media_type: value["mediaType"].as_str().unwrap_or_default().to_string(),
            digest: value["digest"].as_str()?.to_string(),
            size: value["size"].as_u64()?,
        })
    }
}

/// What a checked tag points at: its index digest and the version its annotations name.
#[derive(Debug, Clone, PartialEq)]
struct Pointed {
    digest: String,
    version: Option<String>,
}

/// One run over one repository.
struct Checker<'a> {
    images: &'a dyn Images,
    opts: &'a Options,
    name: &'a str,
    findings: &'a mut Findings,
    /// Digests checked already (shared layers, one index under several tags), shared by the
    /// tags checked at once.
    seen: &'a Mutex<HashSet<String>>,
    /// The tag being checked, for fixes.
    tag: String,
}

/// Checks the images of `name` (every tag, or `tag`).
pub async fn check(
    images: &dyn Images,
    name: &str,
    tag: Option<&str>,
    opts: &Options,
    findings: &mut Findings,
) -> Result<()> {
    let fix_index = super::web::index_document_fix(opts.bucket.as_deref(), opts.bucket.is_none());
    if let Err(e) = images.ping(findings, &fix_index).await {
        findings.unreadable("/v2/", &e);
    }
    let seen = Mutex::new(HashSet::new());
    let mut checker = Checker {
        images,
        opts,
        name,
        findings: &mut *findings,
        seen: &seen,
        tag: tag.unwrap_or("TAG").to_string(),
    };
    let Some(tags) = checker.tag_list().await else {
        return Ok(());
    };
    let wanted: Vec<String> = match tag {
        Some(t) => {
            if !tags.iter().any(|l| l == t) {
                let fix = checker.republish();
                let object = images.tags_name();
                checker
                    .findings
                    .problem(object, format!("does not list the tag {t}"), fix);
            }
            vec![t.to_string()]
        }
        None => tags
            .iter()
            // Referrers, signature and attestation tags are checked with their subjects.
            .filter(|t| !is_attached_tag(t))
            .cloned()
            .collect(),
    };
    // Tags are checked `opts.reads` at once, each into findings of its own, taken in the
    // order of the tags; what one tag checked (a shared layer) the others skip.
    let checked = many::in_order(&wanted, opts.reads, |t| {
        let seen = &seen;
        async move {
            let mut found = Findings::default();
            let mut checker = Checker {
                images,
                opts,
                name,
                findings: &mut found,
                seen,
                tag: t.clone(),
            };
            let pointed = checker.check_tag(t).await;
            (pointed, found)
        }
    });
    let mut pointed = BTreeMap::new();
    for (t, (p, found)) in wanted.iter().zip(checked.await) {
        findings.absorb(found);
        if let Some(p) = p {
            pointed.insert(t.clone(), p);
        }
    }
    let mut checker = Checker {
        images,
        opts,
        name,
        findings,
        seen: &seen,
        tag: tag.unwrap_or("TAG").to_string(),
    };
    checker.check_aliases(&tags, &pointed).await;
    Ok(())
}

/// The media type of a `Content-Type` value, without parameters.
fn bare(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or_default().trim()
}

impl Checker<'_> {
    fn republish(&self) -> String {
        self.opts.republish("container", self.name, &self.tag)
    }

    /// True the first time any tag's check meets `digest` (it checks it; the others skip it).
    fn first(&self, digest: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert(digest.to_string())
    }

    fn replace(&self, object: &str) -> String {
        self.opts.replace(object, "container", self.name, &self.tag)
    }

    /// The tag list, or `None` (with the problem recorded) when it is missing or unreadable.
    async fn tag_list(&mut self) -> Option<Vec<String>> {
        let object = self.images.tags_name();
        match self.images.tags().await {
            Ok(Some(tags)) => {
                self.findings.checked(object);
                Some(tags)
            }
            Ok(None) => {
                let fix = self.republish();
                self.findings
                    .problem(object, "is missing or lists no tags", fix);
                None
            }
            Err(e) => {
                self.findings.unreadable(&object, &e);
                None
            }
        }
    }

    /// Reads a manifest; a missing or unreadable one is recorded.
    async fn fetch(&mut self, reference: &str, missing: &str) -> Option<Object> {
        let object = self.images.manifest_name(reference);
        match self.images.manifest(reference).await {
            Ok(Some(found)) => Some(found),
            Ok(None) => {
                let fix = self.republish();
                self.findings.problem(object, missing, fix);
                None
            }
            Err(e) => {
                self.findings.unreadable(&object, &e);
                None
            }
        }
    }

    /// Checks one tag: its index (or single manifest), by tag and by digest, and everything
    /// below it. Returns what it points at.
    async fn check_tag(&mut self, tag: &str) -> Option<Pointed> {
        let object = self.images.manifest_name(tag);
        let found = self
            .fetch(tag, "is missing: a pull of this tag fails")
            .await?;
        let digest = oci_digest(&found.bytes);
        let json = self.parse_manifest(&object, &found, None)?;
        self.findings.checked(&object);
        let version = json["annotations"][VERSION].as_str().map(str::to_string);
        if !self.first(&digest) {
            return Some(Pointed { digest, version });
        }
        self.check_by_digest(&digest, &found).await;
        match json["mediaType"].as_str() {
            Some(INDEX_MEDIA_TYPE)
            | Some("application/vnd.docker.distribution.manifest.list.v2+json") => {
                for entry in json["manifests"].as_array().into_iter().flatten() {
                    self.check_entry(&object, entry).await;
                }
                if let Some(check) = &self.opts.ecdsa {
                    super::attestations::check_image(
                        self.images,
                        check,
                        &digest,
                        &json,
                        self.findings,
                    )
                    .await;
                }
            }
            _ => {
                self.check_manifest_body(&object, &json).await;
                self.check_referrers(&digest).await;
            }
        }
        Some(Pointed { digest, version })
    }

    /// The tag's bytes must also be served by digest (clients pull platform manifests and
    /// often the index by digest).
    async fn check_by_digest(&mut self, digest: &str, by_tag: &Object) {
        let object = self.images.manifest_name(digest);
        let Some(found) = self
            .fetch(
                digest,
                "is missing: the tag's index is not served by its digest",
            )
            .await
        else {
            return;
        };
        if found.bytes != by_tag.bytes {
            let fix = self.replace(&object);
            self.findings.problem(
                &object,
                format!(
                    "differs from the tag's bytes (its content has digest {})",
                    oci_digest(&found.bytes)
                ),
                fix,
            );
        } else {
            self.findings.checked(object);
        }
    }

    /// Parses a manifest and checks its Content-Type against its mediaType (or the
    /// descriptor's); `None` when it is not JSON.
    fn parse_manifest(
        &mut self,
        object: &str,
        found: &Object,
        expected: Option<&str>,
    ) -> Option<Value> {
        let json: Value = match serde_json::from_slice(&found.bytes) {
            Ok(json) => json,
            Err(e) => {
                let fix = self.replace(object);
                self.findings
                    .problem(object, format!("is not a JSON manifest ({e})"), fix);
                return None;
            }
        };
        let media_type = json["mediaType"]
            .as_str()
            .or(expected)
            .unwrap_or_default()
            .to_string();
        if let Some(served) = &found.content_type
            && !media_type.is_empty()
            && bare(served) != media_type
        {
            let fix = self.content_type_fix(&media_type);
            self.findings.problem(
                object,
                format!("is served as Content-Type {served:?}, its mediaType is {media_type}: pull clients refuse it"),
                fix,
            );
        }
        Some(json)
    }

    fn content_type_fix(&self, media_type: &str) -> String {
        format!(
            "serve it with Content-Type {media_type}: {} (alba sets it on upload; a folder's .alba/nginx.conf names it)",
            self.republish()
        )
    }

    /// Checks one index entry: the platform manifest it names, then its referrers.
    async fn check_entry(&mut self, index: &str, entry: &Value) {
        let Some(desc) = Descriptor::parse(entry) else {
            let fix = self.replace(index);
            self.findings
                .problem(index, "has an entry without digest or size", fix);
            return;
        };
        if !self.first(&desc.digest) {
            return;
        }
        if let Some(json) = self.check_described(&desc).await {
            let object = self.images.manifest_name(&desc.digest);
            self.check_manifest_body(&object, &json).await;
            self.check_referrers(&desc.digest).await;
        }
    }

    /// Reads the manifest a descriptor names and checks its digest, size and Content-Type.
    async fn check_described(&mut self, desc: &Descriptor) -> Option<Value> {
        let object = self.images.manifest_name(&desc.digest);
        let found = self
            .fetch(&desc.digest, "is missing: an index names it")
            .await?;
        let actual = oci_digest(&found.bytes);
        if actual != desc.digest || found.bytes.len() as u64 != desc.size {
            let fix = self.replace(&object);
            self.findings.problem(
                &object,
                format!(
                    "holds other bytes than its digest says ({} bytes with digest {actual}, {} bytes expected)",
                    found.bytes.len(),
                    desc.size
                ),
                fix,
            );
            return None;
        }
        let json = self.parse_manifest(&object, &found, Some(&desc.media_type))?;
        self.findings.checked(object);
        Some(json)
    }

    /// Checks a platform or artifact manifest's config and layers.
    async fn check_manifest_body(&mut self, object: &str, json: &Value) {
        let blobs =
            std::iter::once(&json["config"]).chain(json["layers"].as_array().into_iter().flatten());
        for blob in blobs {
            match Descriptor::parse(blob) {
                Some(desc) => self.check_blob(&desc).await,
                None => {
                    let fix = self.replace(object);
                    self.findings.problem(
                        object,
                        "names a config or layer without digest or size",
                        fix,
                    );
                }
            }
        }
    }

    /// Checks a blob's size and (unless `--quick`) its digest.
    async fn check_blob(&mut self, desc: &Descriptor) {
        if !self.first(&desc.digest) {
            return;
        }
        let object = self.images.blob_name(&desc.digest);
        let (size, hex) = match self.images.blob(&desc.digest, self.opts.quick).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                let fix = self.republish();
                self.findings
                    .problem(object, "is missing: a manifest names it", fix);
                return;
            }
            Err(e) => return self.findings.unreadable(&object, &e),
        };
        let digest_wrong = hex.is_some_and(|h| format!("sha256:{h}") != desc.digest);
        if digest_wrong || size != desc.size {
            let fix = self.replace(&object);
            self.findings.problem(
                &object,
                format!(
                    "holds other bytes than its digest says ({size} bytes, {} expected{})",
                    desc.size,
                    if digest_wrong { ", sha256 differs" } else { "" }
                ),
                fix,
            );
        } else {
            self.findings.checked(object);
        }
    }
}

impl Checker<'_> {
    /// Checks the SBOM referrers of `subject` where present: the `sha256-<hex>` index, each
    /// artifact manifest in it (its `subject` must be `subject`) and its blobs, and that the
    /// referrers file or API lists the same artifacts.
    async fn check_referrers(&mut self, subject: &str) {
        let Some(hex) = subject.strip_prefix("sha256:") else {
            return;
        };
        let tag = format!("sha256-{hex}");
        let object = self.images.manifest_name(&tag);
        let found = match self.images.manifest(&tag).await {
            Ok(Some(found)) => found,
            Ok(None) => return,
            Err(e) => return self.findings.unreadable(&object, &e),
        };
        let Some(json) = self.parse_manifest(&object, &found, Some(INDEX_MEDIA_TYPE)) else {
            return;
        };
        self.findings.checked(&object);
        let mut listed = BTreeSet::new();
        for entry in json["manifests"].as_array().into_iter().flatten() {
            let Some(desc) = Descriptor::parse(entry) else {
                continue;
            };
            listed.insert(desc.digest.clone());
            if !self.first(&desc.digest) {
                continue;
            }
            let Some(artifact) = self.check_described(&desc).await else {
                continue;
            };
            let artifact_object = self.images.manifest_name(&desc.digest);
            if artifact["subject"]["digest"].as_str() != Some(subject) {
                let fix = self.replace(&artifact_object);
                self.findings.problem(
                    &artifact_object,
                    format!(
                        "is listed as a referrer of {subject} but its subject is {}",
                        artifact["subject"]["digest"]
                    ),
                    fix,
                );
            }
            self.check_manifest_body(&artifact_object, &artifact).await;
        }
        self.compare_referrers(subject, &listed).await;
    }

    /// The referrers file (static registries) or API (registries that have one) must list
    /// the artifacts the tag schema index lists.
    async fn compare_referrers(&mut self, subject: &str, listed: &BTreeSet<String>) {
        let object = format!("referrers of {subject} ({})", self.images.describe());
        let other = match self.images.referrers(subject).await {
            Ok(Some(found)) => found,
            Ok(None) => return,
            Err(e) => return self.findings.unreadable(&object, &e),
        };
        let Some(json) = self.parse_manifest(&object, &other, Some(INDEX_MEDIA_TYPE)) else {
            return;
        };
        let answered: BTreeSet<String> = json["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["digest"].as_str().map(str::to_string))
            .collect();
        if let Some(missing) = listed.difference(&answered).next() {
            let fix = self.republish();
            self.findings.problem(
                object,
                format!("does not list {missing}, which the sha256-… tag schema index lists"),
                fix,
            );
        } else {
            self.findings.checked(object);
        }
    }
}

/// The release an alias tag must point at: the greatest stable `X.Y.Z` of its line among
/// `tags` (`X.Y`: same major and minor; `X`: same major; `latest`: all).
fn alias_release(alias: &str, tags: &[String]) -> Option<String> {
    let parse = |t: &str| semver::Version::parse(t.strip_prefix('v').unwrap_or(t)).ok();
    let parts: Vec<u64> = if alias == "latest" {
        Vec::new()
    } else {
        let parts: Option<Vec<u64>> = alias.split('.').map(|p| p.parse().ok()).collect();
        parts.filter(|p| (1..=2).contains(&p.len()))?
    };
    tags.iter()
        .filter_map(|t| parse(t).map(|v| (v, t)))
        .filter(|(v, _)| v.pre.is_empty())
        .filter(|(v, _)| parts.first().is_none_or(|m| *m == v.major))
        .filter(|(v, _)| parts.get(1).is_none_or(|m| *m == v.minor))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, t)| t.clone())
}

impl Checker<'_> {
    /// Alias tags (`X.Y`, `X`, `latest` whose index names another version) must point at the
    /// same index as the greatest release of their line.
    async fn check_aliases(&mut self, tags: &[String], pointed: &BTreeMap<String, Pointed>) {
        for (alias, at) in pointed {
            let Some(version) = at.version.as_deref().filter(|v| *v != alias.as_str()) else {
                continue;
            };
            let Some(release) = alias_release(alias, tags) else {
                continue;
            };
            let release_digest = match pointed.get(&release) {
                Some(p) => Some(p.digest.clone()),
                None => self
                    .images
                    .manifest(&release)
                    .await
                    .ok()
                    .flatten()
                    .map(|o| oci_digest(&o.bytes)),
            };
            if release_digest.as_deref() == Some(at.digest.as_str()) {
                self.findings.checked(format!("alias {alias} → {release}"));
                continue;
            }
            self.findings.problem(
                self.images.manifest_name(alias),
                format!("is an alias pointing at {version} ({}), but the greatest release of its line is {release}", at.digest),
                format!("publish {release} again with --aliases (`alba release {release} --aliases`), or remove the stale alias"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn aliases_name_the_greatest_release_of_their_line() {
        let t = tags(&[
            "1.2.3",
            "1.2.4",
            "1.3.0",
            "2.0.0-rc.1",
            "1.2",
            "1",
            "latest",
            "0.9",
        ]);
        assert_eq!(alias_release("1.2", &t).as_deref(), Some("1.2.4"));
        assert_eq!(alias_release("1", &t).as_deref(), Some("1.3.0"));
        assert_eq!(alias_release("latest", &t).as_deref(), Some("1.3.0"));
        assert_eq!(alias_release("0.9", &t), None);
        assert_eq!(alias_release("nightly", &t), None);
        assert_eq!(alias_release("2", &t), None, "prereleases move nothing");
    }

    #[test]
    fn referrers_tags_and_content_types() {
        assert!(is_attached_tag(&format!("sha256-{}", "0".repeat(64))));
        assert!(!is_attached_tag("sha256-12"));
        assert_eq!(bare("application/json; charset=utf-8"), "application/json");
    }
}
