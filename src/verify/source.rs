//! Where verify reads objects from: an [`ObjectStore`] (the S3 API or a folder) or, with
//! `--web`, the public website endpoint ([`super::web::WebSource`]). Keys are the store's.

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

/// A [`Source`] over an object store: a folder answers media types from its nginx fragment.
pub struct StoreSource {
    store: Arc<dyn ObjectStore>,
}

impl StoreSource {
    /// Reads through `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> StoreSource {
        StoreSource { store }
    }
}

#[async_trait]
impl Source for StoreSource {
    fn describe(&self) -> String {
        self.store.describe()
    }

    async fn get(&self, key: &str) -> Result<Option<Object>> {
        let Some((bytes, content_type)) = self.store.get_typed(key).await? else {
            return Ok(None);
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
