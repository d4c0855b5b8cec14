//! Where verify reads objects from: an [`ObjectStore`] (the S3 API or a folder) or, with
//! `--web`, the public website endpoint ([`super::web::WebSource`]). Keys are the store's.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use bytes::Bytes;

use crate::store::ObjectStore;

/// A small object as a reader gets it.
#[derive(Debug, Clone)]
pub struct Object {
    /// The content.
    pub bytes: Bytes,
    /// The `Content-Type` a web client would get, where the source can tell.
    pub content_type: Option<String>,
}

/// Read access to a target's objects by key.
#[async_trait]
pub trait Source: Send + Sync {
    /// A human description, e.g. `the S3 API of bucket "b"` or `https://…`.
    fn describe(&self) -> String;

    /// True when reading through a web server (`GET /v2/` is then a real request).
    fn is_web(&self) -> bool {
        false
    }

    /// The whole content of a small object (a document or manifest), `None` when missing.
    async fn get(&self, key: &str) -> Result<Option<Object>>;

    /// Size and hex sha256 of an object's bytes, downloaded as a stream; `None` when missing.
    async fn hash(&self, key: &str) -> Result<Option<(u64, String)>>;

    /// Size of an object from a HEAD request; `None` when missing.
    async fn size(&self, key: &str) -> Result<Option<u64>>;
}

/// A [`Source`] over an object store.
pub struct StoreSource {
    store: Arc<dyn ObjectStore>,
    /// For a folder: key → `Content-Type` of each manifest, from alba's nginx fragment.
    fragment: Option<BTreeMap<String, String>>,
}

impl StoreSource {
    /// Reads through `store`; for a folder, the media types its nginx fragment serves.
    pub fn new(store: Arc<dyn ObjectStore>) -> StoreSource {
        let fragment = store.folder().and_then(|root| {
            let text = std::fs::read_to_string(root.join(crate::publish::nginx::FRAGMENT)).ok()?;
            Some(fragment_types(&text))
        });
        StoreSource { store, fragment }
    }

    /// What nginx serves a folder's `key` as: the fragment's type for a manifest (or referrers
    /// index) it names,
    /// its `default_type` (application/octet-stream) for one it does not; `None` for other
    /// keys or without a fragment (nothing to check).
    fn folder_type(&self, key: &str) -> Option<String> {
        let types = self.fragment.as_ref()?;
        if !key.contains("/manifests/") && !key.contains("/referrers/") {
            return None;
        }
        Some(
            types
                .get(key)
                .cloned()
                .unwrap_or_else(|| "application/octet-stream".to_string()),
        )
    }
}

/// Key → media type of every `location = "/KEY" { types { } default_type TYPE; … }` line.
fn fragment_types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("location = \"/")?;
            let (key, rest) = rest.split_once('"')?;
            let (_, rest) = rest.split_once("default_type ")?;
            let (media_type, _) = rest.split_once(';')?;
            Some((key.to_string(), media_type.trim().to_string()))
        })
        .collect()
}

#[async_trait]
impl Source for StoreSource {
    fn describe(&self) -> String {
        self.store.describe()
    }

    async fn get(&self, key: &str) -> Result<Option<Object>> {
        let Some(bytes) = self.store.get(key).await? else {
            return Ok(None);
        };
        let content_type = match self.store.folder() {
            Some(_) => self.folder_type(key),
            None => self.store.content_type(key).await?,
        };
        Ok(Some(Object {
            bytes,
            content_type,
        }))
    }

    async fn hash(&self, key: &str) -> Result<Option<(u64, String)>> {
        self.store.hash_content(key).await
    }

    async fn size(&self, key: &str) -> Result<Option<u64>> {
        Ok(self.store.head(key).await?.map(|info| info.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fragment() {
        let text = "location / {\n}\nlocation = \"/v2/a/manifests/0.9\" { types { } default_type application/vnd.oci.image.index.v1+json; add_header Docker-Content-Digest sha256:ab always; }\n";
        let types = fragment_types(text);
        assert_eq!(
            types.get("v2/a/manifests/0.9").map(String::as_str),
            Some("application/vnd.oci.image.index.v1+json")
        );
        assert_eq!(types.len(), 1);
    }
}
