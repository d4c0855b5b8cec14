//! Where provenance is published: for a tag's binaries the DSSE envelope
//! `df-dist-v1/<name>/<tag>/provenance.intoto.jsonl` (one envelope, one line), named by the
//! tag document's `"provenance"` field and written with the checksums before it; for images
//! cosign's `.att` attestations and OCI referrers ([`crate::image::attestation`]), written
//! with the SBOM artifacts, before the index and its tags.

use anyhow::Result;
use bytes::Bytes;

use super::df_dist::{StaticRelease, document_step};
use super::layout::DfDistLayout;
use super::oci::{OciSink, blob_step, manifest_step};
use crate::image::{ImageSet, MANIFEST_MEDIA_TYPE, Referrer, attestation};
use crate::plan::Step;
use crate::provenance::{Attester, Subject, dsse};
use crate::report::Status;
use crate::store::ObjectStore;

/// The provenance file of a tag, beside `SHA256SUMS`.
pub const PROVENANCE: &str = "provenance.intoto.jsonl";

/// The write of a tag's provenance (`None` without an attester); subjects are the binaries'
/// paths below the tag folder and their sha256. A published envelope that still holds is
/// kept ([`crate::provenance::Attester::keeps`]).
pub async fn static_step(
    store: &dyn ObjectStore,
    layout: &DfDistLayout,
    release: &StaticRelease<'_>,
    binaries: &[(String, &str)],
) -> Result<Option<Step>> {
    let Some(attester) = release.attester else {
        return Ok(None);
    };
    let mut subjects: Vec<Subject> = binaries
        .iter()
        .map(|(name, sha256)| Subject {
            name: name.clone(),
            sha256: sha256.to_string(),
        })
        .collect();
    subjects.sort_by(|a, b| a.name.cmp(&b.name));
    let key = layout.tag_file(release.tag, PROVENANCE);
    let published = store.get(&key).await?;
    let envelope = attester.envelope_keeping(published, &subjects);
    Ok(Some(
        document_step(store, &key, envelope, dsse::MEDIA_TYPE).await?,
    ))
}

/// What a push writes for an image set's provenance on one sink.
#[derive(Default)]
pub struct ImageSteps {
    /// The envelope and config uploads.
    pub blobs: Vec<Step>,
    /// The `.att` manifests and the referrer manifests.
    pub manifests: Vec<Step>,
    /// The referrers to list in their subjects' referrers indexes.
    pub referrers: Vec<Referrer>,
}

/// The provenance writes of `images` on `sink` (none without an attester): a published
/// envelope that still holds is kept, so a re-run writes nothing.
pub async fn image_steps(
    sink: &dyn OciSink,
    images: &ImageSet,
    attester: Option<&Attester>,
) -> Result<ImageSteps> {
    let Some(attester) = attester else {
        return Ok(ImageSteps::default());
    };
    let subjects = attestation::statement_subjects(images);
    let index_tag = attestation::attachment_tag(&images.index_digest, attestation::ATT_SUFFIX);
    let published = published_envelope(sink, &index_tag).await?;
    let envelope = attester.envelope_keeping(published, &subjects);
    let a = attestation::attestation(images, envelope)?;
    let mut steps = ImageSteps::default();
    for blob in &a.blobs {
        let step = blob_step(blob);
        steps.blobs.push(match sink.has_blob(blob).await? {
            true => step.with_status(Status::Exists),
            false => step,
        });
    }
    for r in &a.referrers {
        let label = format!("provenance {} (of {})", r.digest, r.subject);
        let step = manifest_step(sink, &r.digest, &r.manifest, MANIFEST_MEDIA_TYPE, label);
        steps.manifests.push(step.await?);
    }
    for (tag, manifest) in &a.tags {
        let label = format!("attestation {tag}");
        let step = manifest_step(sink, tag, manifest, MANIFEST_MEDIA_TYPE, label);
        steps.manifests.push(step.await?);
    }
    steps.referrers = a.referrers;
    Ok(steps)
}

/// The SLSA envelope the sink holds at `tag` (a `.att` manifest), if any.
async fn published_envelope(sink: &dyn OciSink, tag: &str) -> Result<Option<Bytes>> {
    let Some(manifest) = sink.manifest(tag).await? else {
        return Ok(None);
    };
    let Some((digest, size)) = attestation::envelope_layer(&manifest) else {
        return Ok(None);
    };
    let bytes = sink.small_blob(&digest, size).await?;
    Ok(bytes.filter(|b| crate::digest::oci_digest(b) == digest))
}

/// The digests a push writes for the provenance of `images` when no published envelope is
/// kept (signing is deterministic, so these are the ones it writes), for its lease: a gc
/// running meanwhile keeps them. A kept envelope is referenced by its subject's `.att` already.
pub fn lease_digests(images: &ImageSet, attester: &Attester) -> Vec<String> {
    let envelope = attester.envelope(&attestation::statement_subjects(images));
    let Ok(a) = attestation::attestation(images, envelope) else {
        return Vec::new();
    };
    let blobs = a.blobs.iter().map(|b| b.digest.clone());
    let referrers = a.referrers.iter().map(|r| r.digest.clone());
    let tags = a.tags.iter().map(|(_, m)| crate::digest::oci_digest(m));
    blobs.chain(referrers).chain(tags).collect()
}
