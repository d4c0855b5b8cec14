//! The target as a layer cache: what the manifests and configs alba published before say about
//! layers, so a runner with an empty local cache compresses only the layers a target lacks.
//!
//! alba's compression is deterministic, so a layer's compressed descriptor depends only on its
//! diff_id and the compression settings. Every platform manifest alba writes names those
//! settings in the [`LAYERS_COMPRESSION`] annotation; a manifest without it, or with other
//! settings (another level, backend or alba version), teaches nothing. Fetching (and checking
//! digests) is the sinks' business ([`crate::publish::oci_known`]); here the documents are read.

use serde::Deserialize;

use super::layer::Compression;
use super::oci::MANIFEST_MEDIA_TYPE;
use crate::digest::is_digest;

/// The manifest (and index) annotation naming how alba compressed the layers: the
/// compression's settings key, e.g. `gzip-l2-b1048576-<backend fingerprint>-v1`,
/// `zstd-l3-<fingerprint>-v1` or `none-v1`.
pub const LAYERS_COMPRESSION: &str = "org.alba.layers.compression";

/// A layer some target holds: its uncompressed digest and its compressed descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownLayer {
    /// `sha256:<hex>` of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: String,
    /// `sha256:<hex>` of the compressed blob.
    pub digest: String,
    /// Size of the compressed blob.
    pub size: u64,
}

/// What a platform manifest published with the same settings says, before its config is read.
#[derive(Debug, Clone)]
pub struct Published {
    /// The config's digest and size.
    pub config: (String, u64),
    /// Each layer's digest and size, bottom first.
    pub layers: Vec<(String, u64)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Desc>,
    config: Option<Desc>,
    #[serde(default)]
    layers: Vec<Desc>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Desc {
    media_type: String,
    digest: String,
    size: u64,
}

#[derive(Deserialize)]
struct Config {
    rootfs: Option<RootFs>,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// The platform manifests an index names (nothing for a manifest or a malformed document:
/// a tag naming a platform manifest directly is read with [`published`]).
pub fn manifest_digests(document: &[u8]) -> Vec<String> {
    let Ok(doc) = serde_json::from_slice::<Doc>(document) else {
        return Vec::new();
    };
    doc.manifests
        .into_iter()
        .filter(|m| m.media_type == MANIFEST_MEDIA_TYPE && is_digest(&m.digest))
        .map(|m| m.digest)
        .collect()
}

/// The descriptors of a platform manifest whose layers were compressed with `compression`'s
/// exact settings; `None` for any other document.
pub fn published(manifest: &[u8], compression: Compression) -> Option<Published> {
    let doc: Doc = serde_json::from_slice(manifest).ok()?;
    let settings = compression.settings_key();
    let same = doc.annotations.get(LAYERS_COMPRESSION) == Some(&settings);
    if doc.media_type.as_deref() != Some(MANIFEST_MEDIA_TYPE) || !same {
        return None;
    }
    let media_type = compression.layer_media_type();
    let fine = |d: &Desc| is_digest(&d.digest);
    let config = doc.config.filter(fine)?;
    if !doc
        .layers
        .iter()
        .all(|l| fine(l) && l.media_type == media_type)
    {
        return None;
    }
    Some(Published {
        config: (config.digest, config.size),
        layers: doc.layers.into_iter().map(|l| (l.digest, l.size)).collect(),
    })
}

/// Pairs a published manifest's layers with its config's diff_ids (the config's digest already
/// checked by the caller); nothing if they disagree in number.
pub fn known_layers(published: &Published, config: &[u8]) -> Vec<KnownLayer> {
    let diff_ids = serde_json::from_slice::<Config>(config)
        .ok()
        .and_then(|c| c.rootfs)
        .map(|r| r.diff_ids)
        .unwrap_or_default();
    if diff_ids.len() != published.layers.len() || !diff_ids.iter().all(|d| is_digest(d)) {
        return Vec::new();
    }
    diff_ids
        .into_iter()
        .zip(&published.layers)
        .map(|(diff_id, (digest, size))| KnownLayer {
            diff_id,
            digest: digest.clone(),
            size: *size,
        })
        .collect()
}
