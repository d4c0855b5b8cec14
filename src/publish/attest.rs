//! Where provenance is published: for a tag's binaries the DSSE envelope
//! `df-dist-v1/<name>/<tag>/provenance.intoto.jsonl` (one envelope, one line), named by the
//! tag document's `"provenance"` field and written with the checksums before it.

use anyhow::Result;

use super::df_dist::{StaticRelease, document_step};
use super::layout::DfDistLayout;
use crate::plan::Step;
use crate::provenance::{Subject, dsse};
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
