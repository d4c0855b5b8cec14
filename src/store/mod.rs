//! Object stores: one trait, an S3 implementation and a folder implementation (with the nginx
//! fragment that serves the folder).
//!
//! Publishers only see [`ObjectStore`]; they never know whether they write to Garage or to
//! a folder. Keys are `/`-separated, without a leading `/`, relative to the target's prefix.

pub mod fs;
pub mod many;
pub mod nginx;
pub mod s3;

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Result;
use async_trait::async_trait;
use bytes::Bytes;

/// What a HEAD request tells about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Size in bytes.
    pub size: u64,
    /// The hex sha256 of the content, when a HEAD tells it (bucket metadata). Folders leave it
    /// `None` rather than read the file: ask [`ObjectStore::sha256`] when it matters.
    pub sha256: Option<String>,
    /// When the object was last written (the bucket's LastModified, the file's mtime): gc's
    /// grace period is measured from it.
    pub modified: Option<SystemTime>,
}

/// One listed object: its key, size and age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The key, relative to the store's prefix.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was last written, where the store tells.
    pub modified: Option<SystemTime>,
}

/// The content of an object to write.
#[derive(Debug, Clone)]
pub enum Body {
    /// Small content held in memory (documents, manifests, configs).
    Bytes(Bytes),
    /// A file streamed from disk (binaries in /nix/store, spooled layers).
    File(PathBuf),
}

impl Body {
    /// The size of the content in bytes.
    pub fn size(&self) -> std::io::Result<u64> {
        match self {
            Body::Bytes(b) => Ok(b.len() as u64),
            Body::File(p) => Ok(std::fs::metadata(p)?.len()),
        }
    }
}

/// One object to write: key, content, content type and the content's sha256.
#[derive(Debug, Clone)]
pub struct Put {
    /// The object's key.
    pub key: String,
    /// The object's content.
    pub body: Body,
    /// The `Content-Type` readers get.
    pub content_type: String,
    /// Hex sha256 of the content, kept as metadata so later runs can skip identical uploads.
    pub sha256: String,
}

impl Put {
    /// Small content held in memory; its sha256 is computed here.
    pub fn bytes(key: impl Into<String>, bytes: Bytes, content_type: &str) -> Put {
        Put {
            key: key.into(),
            sha256: crate::digest::sha256_hex(&bytes),
            body: Body::Bytes(bytes),
            content_type: content_type.to_string(),
        }
    }
}

/// A place objects are written to and read from: an S3 bucket or a folder.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// A human description of the store, for messages (never contains secrets).
    fn describe(&self) -> String;

    /// Checks the store is reachable and the credentials work, before anything is written.
    async fn check(&self) -> Result<()>;

    /// Size (and sha256 where cheap) of an object, `None` when it does not exist.
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>>;

    /// The hex sha256 of an object's content, `None` when it does not exist or the store does
    /// not know it. Buckets answer from metadata, as [`ObjectStore::head`] does; folders hash.
    async fn sha256(&self, key: &str) -> Result<Option<String>> {
        Ok(self.head(key).await?.and_then(|info| info.sha256))
    }

    /// The whole content of a small object, `None` when it does not exist.
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;

    /// The `Content-Type` a reader of the object gets, where the store says: a bucket's
    /// metadata, a folder's nginx fragment (manifests only); `None` where it does not know.
    async fn content_type(&self, _key: &str) -> Result<Option<String>> {
        Ok(None)
    }

    /// The content of a small object with the `Content-Type` a reader gets
    /// ([`ObjectStore::content_type`]), `None` when it does not exist. Buckets answer both with
    /// one GET; the default asks twice.
    async fn get_typed(&self, key: &str) -> Result<Option<(Bytes, Option<String>)>> {
        let Some(bytes) = self.get(key).await? else {
            return Ok(None);
        };
        Ok(Some((bytes, self.content_type(key).await?)))
    }

    /// Size and hex sha256 of an object's actual bytes (never its metadata), read as a
    /// stream so a large object is not held in memory; `None` when it does not exist.
    /// `alba verify` uses it to prove what readers download.
    async fn hash_content(&self, key: &str) -> Result<Option<(u64, String)>> {
        let bytes = self.get(key).await?;
        Ok(bytes.map(|b| (b.len() as u64, crate::digest::sha256_hex(&b))))
    }

    /// Writes an object; readers never see a partial object.
    async fn put(&self, put: &Put) -> Result<()>;

    /// Every key that starts with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self
            .list_detailed(prefix)
            .await?
            .into_iter()
            .map(|l| l.key)
            .collect())
    }

    /// Every object whose key starts with `prefix`, sorted by key, with size and age (what
    /// gc's grace period needs, in one listing).
    async fn list_detailed(&self, prefix: &str) -> Result<Vec<Listed>>;

    /// Deletes an object; deleting a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Called once by the executor after a plan that wrote to or deleted from the store has
    /// run (never after a dry run). Buckets have nothing to do; the folder store regenerates
    /// the files derived from its content, such as `.alba/nginx.conf` ([`nginx`]), which a
    /// bucket's metadata makes unnecessary.
    async fn finish(&self) -> Result<()> {
        Ok(())
    }

    /// Requests retried so far (transient faults ridden out), for the report.
    fn retries(&self) -> u64 {
        0
    }
}

/// Opens the object store behind a target URL (`s3://` or `file:`).
pub async fn open(target: &crate::target::Target) -> Result<std::sync::Arc<dyn ObjectStore>> {
    use crate::target::Target;
    match target {
        Target::S3(s3) => Ok(std::sync::Arc::new(s3::S3Store::new(s3).await?)),
        Target::Folder(folder) => Ok(std::sync::Arc::new(fs::FolderStore::new(&folder.path)?)),
        Target::Registry(_) => Err(crate::target::not_a_store(target)),
    }
}
