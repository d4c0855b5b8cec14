//! The one image push algorithm every sink shares (go-containerregistry's lesson).
//!
//! Write order is the integrity rule: blobs, then platform manifests, then the index by
//! digest, then each tag, then (on static registries) `tags/list`. A reader never sees a tag
//! whose content is missing, whatever moment a push dies at.

use anyhow::Result;
use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

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
}

/// How to push.
pub struct PushOptions {
    /// Blob uploads at once.
    pub jobs: usize,
    /// Print and report, write nothing.
    pub dry_run: bool,
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
    for tag in tags {
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
    sink.finish(tags, opts.dry_run, ui, report).await
}

/// Every distinct blob of the set, configs first.
fn distinct_blobs(images: &ImageSet) -> Vec<&Blob> {
    let mut seen = std::collections::BTreeSet::new();
    let configs = images.images.iter().map(|i| &i.config);
    let layers = images.images.iter().flat_map(|i| &i.layers);
    configs
        .chain(layers)
        .filter(|b| seen.insert(b.digest.as_str()))
        .collect()
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
                let status = push_blob(sink, blob, opts.dry_run).await?;
                bar.inc(blob.size);
                let what = if blob.media_type.contains("config") {
                    "config"
                } else {
                    "layer"
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
    let status = match sink.manifest_digest(reference).await? {
        Some(d) if d == digest => Status::Exists,
        Some(_) => Status::Updated,
        None => Status::New,
    };
    if status != Status::Exists && !opts.dry_run {
        sink.put_manifest(reference, bytes, media_type).await?;
    }
    ui.line(format!("{label} ({})", status.word()));
    report.record(
        &format!("manifests/{reference}"),
        bytes.len() as u64,
        status,
        Some(digest),
    );
    Ok(())
}
