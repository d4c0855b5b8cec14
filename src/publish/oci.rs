//! The one image push algorithm every sink shares (go-containerregistry's lesson).
//!
//! Write order is the integrity rule: blobs, then platform manifests, then their SBOM
//! artifacts and referrers indexes, then the index by digest, then each tag, then the semver
//! aliases, then (on static registries) `tags/list`. A reader never sees a tag
//! whose content is missing, whatever moment a push dies at.

use anyhow::Result;
use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::aliases;
use crate::image::{Blob, INDEX_MEDIA_TYPE, ImageSet, MANIFEST_MEDIA_TYPE};
use crate::report::{Status, TargetReport};
use crate::store::Body;
use crate::ui::{Ui, human_size};

/// Where images go: a static registry on an object store, or an OCI registry.
#[async_trait]
pub trait OciSink: Send + Sync {
    /// Checks the sink is reachable and writable before anything is written.
    async fn check(&self) -> Result<()>;
    /// True when the blob is already there.
    async fn has_blob(&self, blob: &Blob) -> Result<bool>;
    /// Uploads a blob's bytes.
    async fn put_blob(&self, blob: &Blob, body: Body) -> Result<()>;
    /// The digest a manifest reference (digest or tag) currently resolves to, if any.
    async fn manifest_digest(&self, reference: &str) -> Result<Option<String>>;
    /// The tags the sink holds now (for semver aliases).
    async fn tags(&self) -> Result<Vec<String>>;
    /// The bytes a manifest reference (digest or tag) resolves to, if any.
    async fn manifest(&self, reference: &str) -> Result<Option<Bytes>>;
    /// The bytes of a small blob (an image config of `size` bytes), if the sink has it; the
    /// caller checks the digest. `None` by default: the sink teaches no layers then.
    async fn small_blob(&self, _digest: &str, _size: u64) -> Result<Option<Bytes>> {
        Ok(None)
    }
    /// Writes the referrers index of `subject` (a manifest digest) under the referrers tag
    /// schema's `sha256-<hex>`; static registries also serve it as `referrers/sha256:<hex>`.
    async fn put_referrers(&self, subject: &str, bytes: &Bytes) -> Result<()> {
        self.put_manifest(&subject.replacen(':', "-", 1), bytes, INDEX_MEDIA_TYPE)
            .await
    }
    /// Uploads a manifest (platform manifest or index) under a digest or tag, exactly these bytes.
    async fn put_manifest(&self, reference: &str, bytes: &Bytes, media_type: &str) -> Result<()>;
    /// After the tags: rebuild derived lists (static registries); nothing for registries.
    async fn finish(
        &self,
        tags: &[String],
        dry_run: bool,
        ui: &Ui,
        report: &mut TargetReport,
    ) -> Result<()>;
    /// Writes a lease naming what the push references, so a concurrent gc keeps it (static
    /// registries, [`super::lease`]); `None` where alba runs no gc of its own (registries).
    async fn lease(
        &self,
        _images: &ImageSet,
        _tags: &[String],
    ) -> Result<Option<super::lease::Lease>> {
        Ok(None)
    }
    /// Requests retried so far after transient faults, for the report.
    fn retries(&self) -> u64 {
        0
    }
}

/// How to push.
pub struct PushOptions {
    /// Blob uploads at once.
    pub jobs: usize,
    /// Print and report, write nothing.
    pub dry_run: bool,
    /// Also tag `X.Y`, `X` and `latest` where this version is the greatest ([`aliases`]).
    pub aliases: Option<semver::Version>,
    /// Blobs this run uploaded already while compressing the others (`new`, no HEAD again).
    pub uploaded: std::collections::BTreeSet<String>,
}

/// Pushes an image set under every tag, in the write order above.
pub async fn push(
    sink: &dyn OciSink,
    images: &ImageSet,
    tags: &[String],
    opts: &PushOptions,
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<()> {
    sink.check().await?;
    let mut tags = tags.to_vec();
    if let Some(version) = &opts.aliases {
        // Decided from what the target holds before this push writes anything.
        let moved = aliases::aliases(version, &sink.tags().await?);
        ui.line(format!(
            "aliases: {}",
            if moved.is_empty() {
                "none (a newer release holds them)".into()
            } else {
                moved.join(", ")
            }
        ));
        for alias in moved {
            if !tags.contains(&alias) {
                tags.push(alias);
            }
        }
        report.tags.clone_from(&tags);
    }
    let lease = match opts.dry_run {
        true => None,
        false => sink.lease(images, &tags).await?,
    };
    push_blobs(sink, images, opts, ui, report).await?;
    for image in &images.images {
        let label = format!("manifest {} ({})", image.manifest_digest, image.platform);
        put_manifest(
            sink,
            &image.manifest_digest,
            &image.manifest,
            MANIFEST_MEDIA_TYPE,
            &label,
            opts,
            ui,
            report,
        )
        .await?;
    }
    push_referrers(sink, images, opts, ui, report).await?;
    if let Some(lease) = &lease {
        ensure_complete(sink, images, lease, ui).await?;
    }
    let label = format!("index {}", images.index_digest);
    put_manifest(
        sink,
        &images.index_digest,
        &images.index,
        INDEX_MEDIA_TYPE,
        &label,
        opts,
        ui,
        report,
    )
    .await?;
    // The version tags first, then the aliases (their order in `tags`).
    for tag in &tags {
        put_manifest(
            sink,
            tag,
            &images.index,
            INDEX_MEDIA_TYPE,
            &format!("tag {tag}"),
            opts,
            ui,
            report,
        )
        .await?;
    }
    report.index_digest = Some(images.index_digest.clone());
    sink.finish(&tags, opts.dry_run, ui, report).await?;
    if let Some(lease) = lease {
        lease.release().await?;
    }
    Ok(())
}

/// Right before the index and tags: waits for a running gc, then uploads again any blob or
/// platform manifest that vanished meanwhile (see [`super::lease`]).
async fn ensure_complete(
    sink: &dyn OciSink,
    images: &ImageSet,
    lease: &super::lease::Lease,
    ui: &Ui,
) -> Result<()> {
    lease.settle(ui).await?;
    for blob in distinct_blobs(images) {
        if !sink.has_blob(blob).await? {
            ui.warn(format!(
                "blob {} vanished during the push (a gc?): uploading it again",
                blob.digest
            ));
            sink.put_blob(blob, blob.materialize().await?).await?;
        }
    }
    for image in &images.images {
        let digest = &image.manifest_digest;
        if sink.manifest_digest(digest).await?.is_none() {
            ui.warn(format!(
                "manifest {digest} vanished during the push (a gc?): uploading it again"
            ));
            sink.put_manifest(digest, &image.manifest, MANIFEST_MEDIA_TYPE)
                .await?;
        }
    }
    ensure_referrers(sink, images, ui).await
}

/// The SBOM artifacts and their referrers indexes, put back if a gc took them meanwhile (it
/// may have read the leases just before this push wrote its own).
async fn ensure_referrers(sink: &dyn OciSink, images: &ImageSet, ui: &Ui) -> Result<()> {
    for r in &images.referrers {
        if sink.manifest_digest(&r.digest).await?.is_none() {
            ui.warn(format!(
                "sbom {} vanished during the push (a gc?): uploading it again",
                r.digest
            ));
            sink.put_manifest(&r.digest, &r.manifest, MANIFEST_MEDIA_TYPE)
                .await?;
        }
        let existing = sink.manifest(&r.tag()).await?;
        let listed = existing.as_deref().is_some_and(|index| {
            serde_json::from_slice::<serde_json::Value>(index)
                .ok()
                .and_then(|v| v["manifests"].as_array().cloned())
                .is_some_and(|entries| entries.iter().any(|e| e["digest"] == r.digest.as_str()))
        });
        if !listed {
            ui.warn(format!(
                "the referrers of {} vanished during the push: writing them again",
                r.subject
            ));
            let index = crate::image::referrers_index(existing.as_deref(), &[r])?;
            sink.put_referrers(&r.subject, &index).await?;
        }
    }
    Ok(())
}

/// Every distinct blob of the set, configs first, the SBOM artifacts' last.
fn distinct_blobs(images: &ImageSet) -> Vec<&Blob> {
    let mut seen = std::collections::BTreeSet::new();
    let configs = images.images.iter().map(|i| &i.config);
    let layers = images.images.iter().flat_map(|i| &i.layers);
    let artifacts = images.referrers.iter().flat_map(|r| &r.blobs);
    configs
        .chain(layers)
        .chain(artifacts)
        .filter(|b| seen.insert(b.digest.as_str()))
        .collect()
}

/// The SBOM artifact manifests (after their subjects), then each subject's referrers index,
/// merged with what the target lists there already.
async fn push_referrers(
    sink: &dyn OciSink,
    images: &ImageSet,
    opts: &PushOptions,
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<()> {
    for r in &images.referrers {
        let label = format!("sbom {} (of {})", r.digest, r.subject);
        let media = MANIFEST_MEDIA_TYPE;
        put_manifest(
            sink,
            &r.digest,
            &r.manifest,
            media,
            &label,
            opts,
            ui,
            report,
        )
        .await?;
    }
    for r in &images.referrers {
        let tag = r.tag();
        let existing = sink.manifest(&tag).await?;
        let index = crate::image::referrers_index(existing.as_deref(), &[r])?;
        let digest = crate::digest::oci_digest(&index);
        let status = status_against(existing.map(|old| crate::digest::oci_digest(&old)), &digest);
        if status != Status::Exists && !opts.dry_run {
            sink.put_referrers(&r.subject, &index).await?;
        }
        let label = format!("referrers {tag}");
        record(&label, &tag, index.len(), status, digest, ui, report);
    }
    Ok(())
}

/// What writing `digest` over a reference that resolves to `current` is.
fn status_against(current: Option<String>, digest: &str) -> Status {
    match current {
        Some(d) if d == digest => Status::Exists,
        Some(_) => Status::Updated,
        None => Status::New,
    }
}

/// One progress line and one report entry for a manifest reference.
fn record(
    label: &str,
    reference: &str,
    size: usize,
    status: Status,
    digest: String,
    ui: &Ui,
    report: &mut TargetReport,
) {
    ui.line(format!("{label} ({})", status.word()));
    let key = format!("manifests/{reference}");
    report.record(&key, size as u64, status, Some(digest));
}

async fn push_blobs(
    sink: &dyn OciSink,
    images: &ImageSet,
    opts: &PushOptions,
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<()> {
    let blobs = distinct_blobs(images);
    let total = blobs.iter().map(|b| b.size).sum();
    let bar = ui.bytes_bar(total, "blobs");
    let finished: Vec<(usize, Status)> = futures::stream::iter(blobs.iter().enumerate())
        .map(|(position, blob)| {
            let bar = bar.clone();
            async move {
                let status = match opts.uploaded.contains(&blob.digest) {
                    true => Status::New,
                    false => push_blob(sink, blob, opts.dry_run).await?,
                };
                bar.inc(blob.size);
                let what = match blob.media_type.as_str() {
                    t if t.contains("cyclonedx") => "sbom",
                    t if t.contains("config") => "config",
                    t if t.contains("empty") => "artifact config",
                    _ => "layer",
                };
                bar.suspend(|| {
                    ui.line(format!(
                        "{what} {} ({}, {})",
                        blob.digest,
                        human_size(blob.size),
                        status.word()
                    ))
                });
                anyhow::Ok((position, status))
            }
        })
        .buffer_unordered(opts.jobs.max(1))
        .try_collect()
        .await?;
    bar.finish_and_clear();
    // Uploads finish in any order: report in the set's order, each blob with its own status.
    let mut statuses = vec![Status::Exists; blobs.len()];
    for (position, status) in finished {
        statuses[position] = status;
    }
    for (blob, status) in blobs.iter().zip(statuses) {
        report.record(
            &format!("blobs/{}", blob.digest),
            blob.size,
            status,
            Some(blob.digest.clone()),
        );
    }
    Ok(())
}

async fn push_blob(sink: &dyn OciSink, blob: &Blob, dry_run: bool) -> Result<Status> {
    if sink.has_blob(blob).await? {
        return Ok(Status::Exists);
    }
    if !dry_run {
        let body = blob.materialize().await?;
        sink.put_blob(blob, body).await?;
    }
    Ok(Status::New)
}

#[allow(clippy::too_many_arguments)]
async fn put_manifest(
    sink: &dyn OciSink,
    reference: &str,
    bytes: &Bytes,
    media_type: &str,
    label: &str,
    opts: &PushOptions,
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<()> {
    let digest = crate::digest::oci_digest(bytes);
    let status = status_against(sink.manifest_digest(reference).await?, &digest);
    if status != Status::Exists && !opts.dry_run {
        sink.put_manifest(reference, bytes, media_type).await?;
    }
    record(label, reference, bytes.len(), status, digest, ui, report);
    Ok(())
}
