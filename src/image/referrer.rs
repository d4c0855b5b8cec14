//! SBOMs attached to images as OCI artifacts: one manifest per platform whose `subject` is
//! that platform's manifest, found by clients through the referrers API where a registry has
//! one, and everywhere through the referrers tag schema (`sha256-<hex>` → an image index of
//! the artifacts; OCI distribution spec 1.1, "Referrers tag schema").

use std::collections::BTreeMap;

use anyhow::Result;
use bytes::Bytes;
use serde_json::{Value, json};

use super::{Blob, ImageSet, MANIFEST_MEDIA_TYPE, Source, oci};
use crate::digest::oci_digest;
use crate::platform::Platform;

/// The artifact type of a CycloneDX SBOM (and its layer's media type).
pub const CYCLONEDX: &str = "application/vnd.cyclonedx+json";
/// The OCI 1.1 empty config of artifacts.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY: &[u8] = b"{}";

/// One artifact manifest and what it refers to.
#[derive(Debug, Clone)]
pub struct Referrer {
    /// The digest of the platform manifest it describes (its `subject`).
    pub subject: String,
    /// The empty config and the SBOM.
    pub blobs: Vec<Blob>,
    /// The artifact manifest, exactly the bytes to upload.
    pub manifest: Bytes,
    /// `sha256:<hex>` of [`Referrer::manifest`].
    pub digest: String,
}

impl Referrer {
    /// The referrers tag of the subject: `sha256-<hex>`.
    pub fn tag(&self) -> String {
        self.subject.replacen(':', "-", 1)
    }
}

impl ImageSet {
    /// Attaches each platform's SBOM as an artifact whose subject is that platform's manifest.
    pub fn attach_sboms(&mut self, sboms: &BTreeMap<Platform, Bytes>) -> Result<()> {
        let mut referrers = Vec::new();
        for image in &self.images {
            let Some(sbom) = sboms.get(&image.platform) else {
                continue;
            };
            let subject = oci::Descriptor {
                media_type: MANIFEST_MEDIA_TYPE,
                digest: &image.manifest_digest,
                size: image.manifest.len() as u64,
                platform: None,
            };
            referrers.push(artifact(subject, sbom, &self.annotations)?);
        }
        self.referrers = referrers;
        Ok(())
    }
}

/// The artifact manifest of one SBOM (serialized once, through a sorted map).
fn artifact(
    subject: oci::Descriptor<'_>,
    sbom: &Bytes,
    annotations: &BTreeMap<String, String>,
) -> Result<Referrer> {
    let layer = memory_blob(CYCLONEDX, sbom.clone());
    artifact_of(subject, (CYCLONEDX, layer, json!({})), annotations)
}

/// The referrer whose subject is the manifest `subject` (`digest`, `size`, `media_type`) and
/// whose one layer is `layer` (annotated with `layer_annotations`), of `artifact_type`: how
/// attestations are also found through the referrers API.
pub fn referrer_of(
    (digest, size, media_type): (&str, u64, &str),
    artifact_type: &str,
    layer: &Blob,
    layer_annotations: &BTreeMap<String, String>,
) -> Result<Referrer> {
    let subject = oci::Descriptor {
        media_type,
        digest,
        size,
        platform: None,
    };
    let annotations = json!(layer_annotations);
    artifact_of(
        subject,
        (artifact_type, layer.clone(), annotations),
        &BTreeMap::new(),
    )
}

fn artifact_of(
    subject: oci::Descriptor<'_>,
    (artifact_type, layer, layer_annotations): (&str, Blob, Value),
    annotations: &BTreeMap<String, String>,
) -> Result<Referrer> {
    let empty = memory_blob(EMPTY_MEDIA_TYPE, Bytes::from_static(EMPTY));
    let mut layer_doc = descriptor(&layer);
    if layer_annotations.as_object().is_some_and(|m| !m.is_empty()) {
        layer_doc["annotations"] = layer_annotations;
    }
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": artifact_type,
        "config": descriptor(&empty),
        "layers": [layer_doc],
        "subject": subject,
    });
    if !annotations.is_empty() {
        manifest["annotations"] = json!(annotations);
    }
    let manifest = Bytes::from(serde_json::to_vec(&manifest)?);
    Ok(Referrer {
        subject: subject.digest.to_string(),
        digest: oci_digest(&manifest),
        blobs: vec![empty, layer],
        manifest,
    })
}

fn memory_blob(media_type: &str, bytes: Bytes) -> Blob {
    Blob::new(
        media_type,
        oci_digest(&bytes),
        bytes.len() as u64,
        Source::Memory(bytes),
    )
}

fn descriptor(blob: &Blob) -> Value {
    json!({ "mediaType": blob.media_type, "digest": blob.digest, "size": blob.size })
}

/// The referrers index of one subject: what `existing` (the index found under the referrers
/// tag, if any) lists, with `ours` added once. Other tools' artifacts (signatures, …) stay.
pub fn referrers_index(existing: Option<&[u8]>, ours: &[&Referrer]) -> Result<Bytes> {
    let mut entries: Vec<Value> = existing
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .and_then(|v| v["manifests"].as_array().cloned())
        .unwrap_or_default();
    for r in ours {
        if entries.iter().any(|e| e["digest"] == r.digest.as_str()) {
            continue;
        }
        let manifest = serde_json::from_slice::<Value>(&r.manifest).unwrap_or_default();
        let artifact_type = manifest["artifactType"].as_str().unwrap_or(CYCLONEDX);
        let mut entry = json!({
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": r.digest,
            "size": r.manifest.len(),
            "artifactType": artifact_type,
        });
        if let Some(annotations) = manifest.get("annotations").cloned() {
            entry["annotations"] = annotations;
        }
        entries.push(entry);
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": super::INDEX_MEDIA_TYPE,
        "manifests": entries,
    });
    Ok(Bytes::from(serde_json::to_vec(&index)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> (String, Bytes) {
        let manifest = Bytes::from_static(br#"{"schemaVersion":2}"#);
        (oci_digest(&manifest), manifest)
    }

    #[test]
    fn artifact_manifest_points_at_its_subject() {
        let (digest, manifest) = subject();
        let descriptor = oci::Descriptor {
            media_type: MANIFEST_MEDIA_TYPE,
            digest: &digest,
            size: manifest.len() as u64,
            platform: None,
        };
        let r = artifact(
            descriptor,
            &Bytes::from_static(b"{\"bomFormat\":\"CycloneDX\"}"),
            &BTreeMap::new(),
        )
        .unwrap();
        let doc: Value = serde_json::from_slice(&r.manifest).unwrap();
        assert_eq!(doc["artifactType"], CYCLONEDX);
        assert_eq!(doc["subject"]["digest"], digest.as_str());
        assert_eq!(
            doc["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(doc["layers"][0]["mediaType"], CYCLONEDX);
        assert_eq!(r.tag(), digest.replace("sha256:", "sha256-"));
        // Merged once, others kept.
        let other = br#"{"manifests":[{"digest":"sha256:other","mediaType":"x","size":1}]}"#;
        let index = referrers_index(Some(other), &[&r]).unwrap();
        let again = referrers_index(Some(&index), &[&r]).unwrap();
        assert_eq!(index, again);
        let doc: Value = serde_json::from_slice(&index).unwrap();
        assert_eq!(doc["manifests"].as_array().unwrap().len(), 2);
    }
}
