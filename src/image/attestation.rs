//! An image set's SLSA provenance as cosign stores attestations and as an OCI referrer:
//!
//! - at tag `sha256-<hex>.att` of each subject (the index and every platform manifest), an OCI
//!   image manifest whose one layer is the DSSE envelope (`application/vnd.dsse.envelope.v1+json`,
//!   annotations `predicateType` and an empty `dev.cosignproject.cosign/signature`, as `cosign
//!   attest` writes them), its config the empty image config cosign writes (rootfs listing
//!   the layer);
//! - per subject, an artifact manifest (`artifactType` the DSSE media type, `subject` that
//!   manifest) listed in the subject's referrers index.

use std::collections::BTreeMap;

use anyhow::Result;
use bytes::Bytes;
use serde_json::json;

use super::oci::CONFIG_MEDIA_TYPE;
use super::{Blob, INDEX_MEDIA_TYPE, ImageSet, MANIFEST_MEDIA_TYPE, Referrer, referrer_of};
use crate::provenance::{PREDICATE_TYPE, Subject, dsse};

/// The suffix of cosign's attestation tags.
pub const ATT_SUFFIX: &str = ".att";
/// The annotation naming a layer's predicate type.
pub const PREDICATE_ANNOTATION: &str = "predicateType";
/// The annotation of a cosign layer that holds its base64 DER signature (empty on an
/// attestation's layer, whose envelope carries the signature).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// The tag cosign attaches to manifest `digest` with `suffix` (`.sig`, `.att`):
/// `sha256-<hex><suffix>`.
pub fn attachment_tag(digest: &str, suffix: &str) -> String {
    format!("{}{suffix}", digest.replacen(':', "-", 1))
}

/// What one push writes for an image set's provenance.
#[derive(Debug, Clone)]
pub struct Attestation {
    /// The envelope and the `.att` manifests' config.
    pub blobs: Vec<Blob>,
    /// `sha256-<hex>.att` tag → its manifest, per subject.
    pub tags: Vec<(String, Bytes)>,
    /// One referrer per subject.
    pub referrers: Vec<Referrer>,
}

/// The manifests a statement about `set` names, as (subject name, digest, size, media type):
/// the index first, then each platform manifest.
pub fn subjects(set: &ImageSet) -> Vec<(String, String, u64, &'static str)> {
    let index = (
        "index".to_string(),
        set.index_digest.clone(),
        set.index.len() as u64,
        INDEX_MEDIA_TYPE,
    );
    let manifests = set.images.iter().map(|i| {
        (
            i.platform.to_string(),
            i.manifest_digest.clone(),
            i.manifest.len() as u64,
            MANIFEST_MEDIA_TYPE,
        )
    });
    std::iter::once(index).chain(manifests).collect()
}

/// The statement subjects of `set`.
pub fn statement_subjects(set: &ImageSet) -> Vec<Subject> {
    subjects(set)
        .into_iter()
        .map(|(name, digest, _, _)| Subject {
            name,
            sha256: digest.trim_start_matches("sha256:").to_string(),
        })
        .collect()
}

/// The attestation of `set` holding `envelope`.
pub fn attestation(set: &ImageSet, envelope: Bytes) -> Result<Attestation> {
    let layer = Blob::in_memory(dsse::MEDIA_TYPE, envelope);
    let annotations = BTreeMap::from([
        (SIGNATURE_ANNOTATION.to_string(), String::new()),
        (PREDICATE_ANNOTATION.to_string(), PREDICATE_TYPE.to_string()),
    ]);
    // The config `cosign attest` writes (go-containerregistry's empty image plus the layer).
    let config = json!({
        "architecture": "", "config": {}, "created": "0001-01-01T00:00:00Z",
        "history": [ { "created": "0001-01-01T00:00:00Z" } ], "os": "",
        "rootfs": { "diff_ids": [ layer.digest ], "type": "layers" },
    });
    let config = Blob::in_memory(CONFIG_MEDIA_TYPE, Bytes::from(serde_json::to_vec(&config)?));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": { "mediaType": config.media_type, "digest": config.digest, "size": config.size },
        "layers": [ {
            "mediaType": layer.media_type, "digest": layer.digest, "size": layer.size,
            "annotations": annotations,
        } ],
    });
    let manifest = Bytes::from(serde_json::to_vec(&manifest)?);
    let mut tags = Vec::new();
    let mut referrers = Vec::new();
    for (_, digest, size, media_type) in subjects(set) {
        let tag = attachment_tag(&digest, ATT_SUFFIX);
        tags.push((tag, manifest.clone()));
        let only_type =
            BTreeMap::from([(PREDICATE_ANNOTATION.to_string(), PREDICATE_TYPE.to_string())]);
        let subject = (digest.as_str(), size, media_type);
        referrers.push(referrer_of(subject, dsse::MEDIA_TYPE, &layer, &only_type)?);
    }
    Ok(Attestation {
        blobs: vec![config, layer],
        tags,
        referrers,
    })
}

/// The SLSA envelope layer of a published `.att` manifest: its digest and size.
pub fn envelope_layer(manifest: &[u8]) -> Option<(String, u64)> {
    let doc: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    let layers = doc["layers"].as_array()?;
    layers.iter().find_map(|l| {
        let ours = l["mediaType"] == dsse::MEDIA_TYPE
            && l["annotations"][PREDICATE_ANNOTATION] == PREDICATE_TYPE;
        ours.then(|| Some((l["digest"].as_str()?.to_string(), l["size"].as_u64()?)))?
    })
}
