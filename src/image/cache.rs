//! The image caches under alba's cache folder ([`crate::cache`] knows where they are): work
//! done once need not be done again.
//!
//! - `layers/<settings>/<size>-<diff hex>.json`: a layer's uncompressed size and digest +
//!   compression settings → its compressed digest and size. A re-run builds manifests from
//!   here and compresses nothing unless a target lacks the blob. The size in the name lets a
//!   reader tell, before knowing a layer's digest, that it cannot be cached (no cached layer
//!   has its size), and so compress it on the first pass.
//! - `archives/v1/<identity hex>.json`: what an input archive holds (manifest.json, config, layer
//!   sizes), keyed by the file's identity (path, device, inode, size, mtime). Nix store paths
//!   never change, so a re-run need not even decompress the archive or run the stream script
//!   to learn its diff_ids; lazily compressed layers are still checked against them.
//!
//! One small JSON file per key, written atomically (temp file + rename) so concurrent alba runs
//! never see half a file. The cache is only an optimisation: unreadable entries are misses and
//! write failures are warnings.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::layer::Compression;
use crate::digest::{is_digest, is_sha256_hex};

/// A cached compression result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// `sha256:<hex>` of the compressed blob.
    pub digest: String,
    /// Size of the compressed blob.
    pub size: u64,
}

/// What an archive holds, enough to build its manifest without reading it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ArchiveIndex {
    /// The config's entry name.
    pub config_name: String,
    /// The layers' entry names, as `manifest.json` lists them.
    pub layers: Vec<String>,
    /// The config, verbatim (its digest is the config blob's).
    pub config: String,
    /// Size of each layer entry, by entry name.
    pub sizes: BTreeMap<String, u64>,
}

/// The cache for one compression setting; a no-op when there is no cache folder.
#[derive(Debug, Clone)]
pub(crate) struct Cache {
    layers: Option<PathBuf>,
    archives: Option<PathBuf>,
}

impl Cache {
    /// The cache under `root` (`$XDG_CACHE_HOME/alba`) for layers compressed by `compression`.
    pub(crate) fn new(root: Option<&Path>, compression: Compression) -> Cache {
        Cache {
            layers: root.map(|r| crate::cache::layers_dir(r, &compression.settings_key())),
            archives: root.map(crate::cache::archives_dir),
        }
    }

    /// The cached result for a layer of `size` uncompressed bytes, if any.
    pub(crate) fn get(&self, diff_id: &str, size: u64) -> Option<Entry> {
        read_json(&self.layer_file(diff_id, size)?).filter(|e: &Entry| is_digest(&e.digest))
    }

    /// Records a result; failures only warn (the next run compresses again).
    pub(crate) fn put(&self, diff_id: &str, size: u64, entry: &Entry) {
        if let Some(file) = self.layer_file(diff_id, size) {
            write_json(&file, entry);
        }
    }

    /// The uncompressed sizes of all cached layers (one folder listing).
    pub(crate) fn sizes(&self) -> HashSet<u64> {
        let Some(entries) = self.layers.as_ref().and_then(|d| std::fs::read_dir(d).ok()) else {
            return HashSet::new();
        };
        let names = entries.filter_map(|e| e.ok()?.file_name().into_string().ok());
        names
            .filter_map(|n| n.split_once('-')?.0.parse().ok())
            .collect()
    }

    fn layer_file(&self, diff_id: &str, size: u64) -> Option<PathBuf> {
        let hex = diff_id
            .strip_prefix("sha256:")
            .filter(|h| is_sha256_hex(h))?;
        Some(self.layers.as_ref()?.join(format!("{size}-{hex}.json")))
    }

    /// What the archive with this identity held when last read.
    pub(crate) fn archive(&self, identity: &str) -> Option<ArchiveIndex> {
        read_json(&file(&self.archives, identity)?)
    }

    /// Records what an archive holds.
    pub(crate) fn put_archive(&self, identity: &str, index: &ArchiveIndex) {
        if let Some(file) = file(&self.archives, identity) {
            write_json(&file, index);
        }
    }

    /// Drops what was recorded about an archive, found to be wrong.
    pub(crate) fn forget_archive(&self, identity: &str) {
        if let Some(file) = file(&self.archives, identity) {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// The file for a key; `None` without a cache or for a malformed key (keys are hex digests;
/// diff_ids come from the image config: never let one name a path outside the cache).
fn file(dir: &Option<PathBuf>, key: &str) -> Option<PathBuf> {
    is_sha256_hex(key).then(|| dir.as_ref().map(|d| d.join(format!("{key}.json"))))?
}

fn read_json<T: DeserializeOwned>(file: &Path) -> Option<T> {
    let bytes = std::fs::read(file).ok()?;
    let parsed = serde_json::from_slice(&bytes);
    if parsed.is_err() {
        tracing::warn!("ignoring the unreadable cache entry {}", file.display());
    }
    parsed.ok()
}

fn write_json<T: Serialize>(file: &Path, value: &T) {
    if let Err(e) = write_atomically(file, value) {
        tracing::warn!("cannot write the cache entry {}: {e:#}", file.display());
    }
}

fn write_atomically<T: Serialize>(file: &Path, value: &T) -> anyhow::Result<()> {
    crate::cache::write_atomically(file, &serde_json::to_vec(value)?)
}
