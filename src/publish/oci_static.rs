//! A static, read-only OCI registry on an object store: what a pull client needs from a
//! server that can only serve files (a bucket's website mode, or nginx on a folder).
//!
//! ```text
//! v2/index.html                       {}  — makes GET /v2/ answer 200
//! v2/<name>/blobs/sha256:<hex>        configs and layers
//! v2/<name>/manifests/sha256:<hex>    platform manifests and the index, Content-Type = mediaType
//! v2/<name>/manifests/<tag>           the same bytes as the index
//! v2/<name>/tags/list                 {"name":..,"tags":[..]}, lexical order
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::lists::{self, Order};
use super::oci::OciSink;
use crate::digest::oci_digest;
use crate::image::{Blob, INDEX_MEDIA_TYPE};
use crate::report::{Status, TargetReport};
use crate::store::{Body, ObjectStore, Put};
use crate::ui::Ui;

const JSON: &str = "application/json";

/// The `tags/list` document.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct TagList {
    /// Repository name.
    pub name: String,
    /// Tags, lexical order.
    pub tags: Vec<String>,
}

/// An [`OciSink`] writing the v2 layout to an object store.
pub struct StaticRegistry {
    store: Arc<dyn ObjectStore>,
    name: String,
}

impl StaticRegistry {
    /// The static registry for repository `name` on `store`.
    pub fn new(store: Arc<dyn ObjectStore>, name: &str) -> StaticRegistry {
        StaticRegistry {
            store,
            name: name.to_string(),
        }
    }

    /// Key of a blob (config or layer) by digest.
    pub fn blob_key(&self, digest: &str) -> String {
        format!("v2/{}/blobs/{digest}", self.name)
    }

    /// Key of a manifest by digest or tag.
    pub fn manifest_key(&self, reference: &str) -> String {
        format!("v2/{}/manifests/{reference}", self.name)
    }

    /// Key of the referrers answer for a subject digest (`referrers/sha256:<hex>`).
    pub fn referrers_key(&self, subject: &str) -> String {
        format!("v2/{}/referrers/{subject}", self.name)
    }

    /// Key of `tags/list`.
    pub fn tags_key(&self) -> String {
        format!("v2/{}/tags/list", self.name)
    }

    /// The tags whose tag objects exist.
    pub async fn present_tags(&self) -> Result<BTreeSet<String>> {
        let prefix = self.manifest_key("");
        let keys = self.store.list(&prefix).await?;
        Ok(keys
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter(|r| !r.starts_with("sha256:") && !r.contains('/') && !is_referrers_tag(r))
            .map(str::to_string)
            .collect())
    }

    /// The stored `tags/list` (empty when missing or unreadable: it is rebuilt).
    pub async fn stored_tags(&self) -> Result<Vec<String>> {
        let Some(bytes) = self.store.get(&self.tags_key()).await? else {
            return Ok(Vec::new());
        };
        Ok(serde_json::from_slice::<TagList>(&bytes)
            .map(|l| l.tags)
            .unwrap_or_default())
    }

    async fn put_bytes(&self, key: &str, bytes: &Bytes, content_type: &str) -> Result<()> {
        self.store
            .put(&Put::bytes(key, bytes.clone(), content_type))
            .await
    }

    /// Rebuilds `tags/list` from the tag objects (adding `new`), writes it if it changed, and
    /// reads it back (and lists the tags again) to repair a concurrent writer's lost update.
    pub async fn update_tag_list(
        &self,
        new: &[String],
        dry_run: bool,
        report: &mut TargetReport,
    ) -> Result<()> {
        // Each pass reads the list and lists the tag objects again: a concurrent push may have
        // written its list from a listing made before our tag object existed. Stable once the
        // list holds exactly the tags whose objects exist.
        for attempt in 0..4 {
            let stored = self.stored_tags().await?;
            let mut present = self.present_tags().await?;
            present.extend(new.iter().cloned());
            let tags = lists::merge(&stored, &present, None, Order::Lexical);
            let bytes = Bytes::from(serde_json::to_vec(&TagList {
                name: self.name.clone(),
                tags: tags.clone(),
            })?);
            let digest = Some(oci_digest(&bytes));
            if stored == tags {
                if attempt == 0 {
                    report.record(&self.tags_key(), bytes.len() as u64, Status::Exists, digest);
                }
                return Ok(());
            }
            report.record(
                &self.tags_key(),
                bytes.len() as u64,
                Status::Updated,
                digest,
            );
            if dry_run {
                return Ok(());
            }
            self.put_bytes(&self.tags_key(), &bytes, JSON).await?;
        }
        Ok(())
    }
}

/// True for a referrers tag (`sha256-<64 hex>`): the index of a manifest's artifacts, which
/// alba keeps out of `tags/list` and out of `--keep` counts (it lives and goes with its subject).
pub fn is_referrers_tag(reference: &str) -> bool {
    reference
        .strip_prefix("sha256-")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[async_trait]
impl OciSink for StaticRegistry {
    async fn check(&self) -> Result<()> {
        self.store.check().await
    }

    async fn has_blob(&self, blob: &Blob) -> Result<bool> {
        Ok(self
            .store
            .head(&self.blob_key(&blob.digest))
            .await?
            .is_some_and(|i| i.size == blob.size))
    }

    async fn put_blob(&self, blob: &Blob, body: Body) -> Result<()> {
        let put = Put {
            key: self.blob_key(&blob.digest),
            body,
            content_type: "application/octet-stream".into(),
            sha256: blob.hex().to_string(),
        };
        self.store.put(&put).await
    }

    async fn manifest_digest(&self, reference: &str) -> Result<Option<String>> {
        if reference.starts_with("sha256:") {
            // Content-addressed: present means identical.
            let exists = self
                .store
                .head(&self.manifest_key(reference))
                .await?
                .is_some();
            return Ok(exists.then(|| reference.to_string()));
        }
        Ok(self
            .store
            .get(&self.manifest_key(reference))
            .await?
            .map(|b| oci_digest(&b)))
    }

    async fn tags(&self) -> Result<Vec<String>> {
        Ok(self.present_tags().await?.into_iter().collect())
    }

    async fn manifest(&self, reference: &str) -> Result<Option<Bytes>> {
        self.store.get(&self.manifest_key(reference)).await
    }

    async fn small_blob(&self, digest: &str, _size: u64) -> Result<Option<Bytes>> {
        self.store.get(&self.blob_key(digest)).await
    }

    async fn put_referrers(&self, subject: &str, bytes: &Bytes) -> Result<()> {
        // A file server has no referrers API: serve its answer as a file too, beside the
        // referrers tag that clients fall back to.
        let tag = subject.replacen(':', "-", 1);
        self.put_bytes(&self.manifest_key(&tag), bytes, INDEX_MEDIA_TYPE)
            .await?;
        self.put_bytes(&self.referrers_key(subject), bytes, INDEX_MEDIA_TYPE)
            .await
    }

    async fn put_manifest(&self, reference: &str, bytes: &Bytes, media_type: &str) -> Result<()> {
        self.put_bytes(&self.manifest_key(reference), bytes, media_type)
            .await
    }

    async fn lease(
        &self,
        images: &crate::image::ImageSet,
        tags: &[String],
    ) -> Result<Option<super::lease::Lease>> {
        let blobs = images
            .images
            .iter()
            .flat_map(|i| i.layers.iter().chain([&i.config]));
        let artifacts = images.referrers.iter().flat_map(|r| &r.blobs);
        let blobs = blobs.chain(artifacts);
        let manifests = images.images.iter().map(|i| i.manifest_digest.clone());
        let manifests = manifests.chain(images.referrers.iter().map(|r| r.digest.clone()));
        let mut digests: Vec<String> = blobs.map(|b| b.digest.clone()).chain(manifests).collect();
        digests.push(images.index_digest.clone());
        digests.sort();
        digests.dedup();
        let lease =
            super::lease::Lease::take(self.store.clone(), &self.name, tags, digests, Vec::new());
        Ok(Some(lease.await?))
    }

    fn retries(&self) -> u64 {
        self.store.retries()
    }

    async fn finish(
        &self,
        tags: &[String],
        dry_run: bool,
        _ui: &Ui,
        report: &mut TargetReport,
    ) -> Result<()> {
        self.update_tag_list(tags, dry_run, report).await?;
        // GET /v2/ must answer 200 for pull clients; the bucket's index document serves it.
        if self.store.head("v2/index.html").await?.is_none() && !dry_run {
            self.put_bytes("v2/index.html", &Bytes::from_static(b"{}"), JSON)
                .await?;
        }
        if !dry_run {
            super::nginx::refresh(&*self.store).await?;
        }
        Ok(())
    }
}
