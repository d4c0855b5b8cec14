//! OCI documents: image manifests and the image index.
//!
//! Each document is serialized exactly once, from structs whose field order is fixed (no hash
//! maps: oci-spec keeps annotations in a HashMap, whose order can differ between two
//! serializations; here they are a sorted BTreeMap), and those very bytes are digested, kept
//! and uploaded.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Serialize;

use crate::platform::Platform;

/// Media type of an OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// A content descriptor: what a manifest says about a blob or a manifest.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor<'a> {
    pub media_type: &'a str,
    pub digest: &'a str,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformDoc<'a>>,
}

/// The platform of an index entry; `variant` only where the platform has one.
#[derive(Serialize)]
pub(crate) struct PlatformDoc<'a> {
    pub architecture: &'a str,
    pub os: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<&'a str>,
}

impl<'a> From<&'a Platform> for PlatformDoc<'a> {
    fn from(p: &'a Platform) -> Self {
        PlatformDoc {
            architecture: &p.architecture,
            os: &p.os,
            variant: p.variant.as_deref(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestDoc<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: Descriptor<'a>,
    layers: Vec<Descriptor<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexDoc<'a> {
    schema_version: u32,
    media_type: &'a str,
    manifests: Vec<Descriptor<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

/// An image manifest's bytes.
pub(crate) fn manifest(
    config: Descriptor<'_>,
    layers: Vec<Descriptor<'_>>,
    annotations: &BTreeMap<String, String>,
) -> serde_json::Result<Bytes> {
    let doc = ManifestDoc {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE,
        config,
        layers,
        annotations,
    };
    serde_json::to_vec(&doc).map(Bytes::from)
}

/// An image index's bytes; `manifests` in the order they should appear.
pub(crate) fn index(
    manifests: Vec<Descriptor<'_>>,
    annotations: &BTreeMap<String, String>,
) -> serde_json::Result<Bytes> {
    let doc = IndexDoc {
        schema_version: 2,
        media_type: INDEX_MEDIA_TYPE,
        manifests,
        annotations,
    };
    serde_json::to_vec(&doc).map(Bytes::from)
}
