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
//! The keys are [`V2Layout`]'s; `tags/list` is a [`DerivedList`].

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use bytes::Bytes;

use super::derived::DerivedList;
use super::layout::{V2_INDEX, V2Layout};
use super::oci::OciSink;
use crate::digest::oci_digest;
use crate::image::{Blob, INDEX_MEDIA_TYPE};
use crate::plan::{Address, Step};
use crate::store::{Body, ObjectStore, Put};

const JSON: &str = "application/json";

/// An [`OciSink`] writing the v2 layout to an object store.
pub struct StaticRegistry {
    store: Arc<dyn ObjectStore>,
    layout: V2Layout,
}

impl StaticRegistry {
    /// The static registry for repository `name` on `store`.
    pub fn new(store: Arc<dyn ObjectStore>, name: &str) -> StaticRegistry {
        StaticRegistry {
            store,
            layout: V2Layout::new(name),
        }
    }

    /// Its keys.
    pub fn layout(&self) -> &V2Layout {
        &self.layout
    }

    /// Its `tags/list`.
    pub fn tag_list(&self) -> DerivedList {
        DerivedList::Tags(self.layout.clone())
    }

    async fn put_bytes(&self, key: &str, bytes: &Bytes, content_type: &str) -> Result<()> {
        self.store
            .put(&Put::bytes(key, bytes.clone(), content_type))
            .await
    }
}

#[async_trait]
impl OciSink for StaticRegistry {
    async fn check(&self) -> Result<()> {
        self.store.check().await
    }

    async fn has_blob(&self, blob: &Blob) -> Result<bool> {
        Ok(self
            .store
            .head(&self.layout.blob_key(&blob.digest))
            .await?
            .is_some_and(|i| i.size == blob.size))
    }

    async fn put_blob(&self, blob: &Blob, body: Body) -> Result<()> {
        let put = Put {
            key: self.layout.blob_key(&blob.digest),
            body,
            content_type: "application/octet-stream".into(),
            sha256: blob.hex().to_string(),
        };
        self.store.put(&put).await
    }

    async fn manifest_digest(&self, reference: &str) -> Result<Option<String>> {
        let key = self.layout.manifest_key(reference);
        if reference.starts_with("sha256:") {
            // Content-addressed: present means identical.
            let exists = self.store.head(&key).await?.is_some();
            return Ok(exists.then(|| reference.to_string()));
        }
        Ok(self.store.get(&key).await?.map(|b| oci_digest(&b)))
    }

    async fn tags(&self) -> Result<Vec<String>> {
        Ok(self
            .tag_list()
            .present(&*self.store)
            .await?
            .into_iter()
            .collect())
    }

    async fn manifest(&self, reference: &str) -> Result<Option<Bytes>> {
        self.store.get(&self.layout.manifest_key(reference)).await
    }

    async fn small_blob(&self, digest: &str, _size: u64) -> Result<Option<Bytes>> {
        self.store.get(&self.layout.blob_key(digest)).await
    }

    async fn put_referrers(&self, subject: &str, bytes: &Bytes) -> Result<()> {
        // A file server has no referrers API: serve its answer as a file too, beside the
        // referrers tag that clients fall back to.
        let tag = subject.replacen(':', "-", 1);
        let key = self.layout.manifest_key(&tag);
        self.put_bytes(&key, bytes, INDEX_MEDIA_TYPE).await?;
        let key = self.layout.referrers_key(subject);
        self.put_bytes(&key, bytes, INDEX_MEDIA_TYPE).await
    }

    async fn put_manifest(&self, reference: &str, bytes: &Bytes, media_type: &str) -> Result<()> {
        let key = self.layout.manifest_key(reference);
        self.put_bytes(&key, bytes, media_type).await
    }

    /// `tags/list` with the pushed tags, then `v2/index.html` where it is missing.
    async fn list_steps(&self, tags: &[String]) -> Result<Vec<Step>> {
        let list = self.tag_list();
        let store = &*self.store;
        let add = tags.to_vec();
        let mut steps = vec![list.step(store, add, BTreeSet::new(), true).await?];
        // GET /v2/ must answer 200 for pull clients; the bucket's index document serves it.
        if self.store.head(V2_INDEX).await?.is_none() {
            let bytes = Bytes::from_static(b"{}");
            let step = Step::bytes(Address::Key(V2_INDEX.into()), V2_INDEX, bytes, JSON);
            steps.push(step.labelled(format!("document {V2_INDEX}")));
        }
        Ok(steps)
    }

    fn name(&self) -> String {
        self.layout.name().to_string()
    }

    fn store(&self) -> Option<&Arc<dyn ObjectStore>> {
        Some(&self.store)
    }

    fn retries(&self) -> u64 {
        self.store.retries()
    }
}
