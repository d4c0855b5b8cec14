//! The one image push plan every sink shares (go-containerregistry's lesson), and the sink
//! that carries it out.
//!
//! Write order is the integrity rule, and the order of the plan's phases: blobs, then platform
//! manifests, then their SBOM artifacts and referrers indexes, then the index by digest, then
//! (with a signing key) the cosign signature manifests of the index and every platform
//! manifest, then each tag, then the semver aliases, then (on static registries) `tags/list`.
//! A reader never sees a tag whose content is missing, nor, on a signed push, a tag whose
//! signatures are missing, whatever moment a push dies at.

use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use bytes::Bytes;

use futures::{StreamExt, TryStreamExt};

use super::aliases;
use crate::digest::oci_digest;
use crate::image::{Blob, INDEX_MEDIA_TYPE, ImageSet, MANIFEST_MEDIA_TYPE};
use crate::plan::{self, Address, Content, LeaseSpec, Phase, Plan, Step};
use crate::report::Status;
use crate::store::{Body, ObjectStore};

/// Where images go: a static registry on an object store, or an OCI registry. Planners use
/// its reads (`has_blob`, `manifest_digest`, `tags`, …); its writes (`put_*`) are called only by
/// the executor, through [`ImageSink`].
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
    /// The steps after the tags: derived lists and what pull clients need besides
    /// (static registries); none for registries.
    async fn list_steps(&self, _tags: &[String]) -> Result<Vec<Step>> {
        Ok(Vec::new())
    }
    /// The repository name, for leases and messages.
    fn name(&self) -> String {
        String::new()
    }
    /// The object store under the sink (static registries), for leases and lists.
    fn store(&self) -> Option<&Arc<dyn ObjectStore>> {
        None
    }
    /// Requests retried so far after transient faults, for the report.
    fn retries(&self) -> u64 {
        0
    }
}

/// HEAD requests at once while planning (the executor bounds the writes by `--jobs`).
pub const READS_AT_ONCE: usize = 8;

/// How to push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Also tag `X.Y`, `X` and `latest` where this version is the greatest ([`aliases`]).
    pub aliases: Option<semver::Version>,
    /// Blobs this run uploaded already while compressing the others (`new`, no HEAD again).
    pub uploaded: std::collections::BTreeSet<String>,
    /// Attests the images' SLSA provenance (`.att` and referrers) with this attester.
    pub attester: Option<Arc<crate::provenance::Attester>>,
    /// Sign the index and every platform manifest (cosign's format) with this key.
    pub signing: Option<super::signatures::Signing>,
}

/// An image set's push to one sink under its tags, as a planner: its lease names every
/// digest it references; its one plan has the phases in the write order above.
pub struct Push<'a> {
    sink: Arc<dyn OciSink>,
    images: &'a ImageSet,
    tags: Vec<String>,
    opts: PushOptions,
    planned: bool,
}

impl<'a> Push<'a> {
    /// The push of `images` to `sink` under `tags`.
    pub fn new(
        sink: Arc<dyn OciSink>,
        images: &'a ImageSet,
        tags: &[String],
        opts: PushOptions,
    ) -> Push<'a> {
        Push {
            sink,
            images,
            tags: tags.to_vec(),
            opts,
            planned: false,
        }
    }
}

#[async_trait]
impl plan::Planner for Push<'_> {
    async fn prepare(&mut self) -> Result<()> {
        self.sink.check().await
    }

    /// The version tags (aliases are decided when planning: a gc keeps an alias's release
    /// anyway, and the tags are written after any running gc is done).
    fn lease(&self) -> Option<LeaseSpec> {
        let mut spec = lease_spec(self.images, &self.tags, self.sink.name());
        if let Some(signing) = &self.opts.signing {
            let subjects = signed_subjects(self.images);
            let digests = super::signatures::lease_digests(signing, &subjects);
            spec.digests.extend(digests.unwrap_or_default());
            spec.digests.sort();
            spec.digests.dedup();
        }
        if let Some(attester) = &self.opts.attester {
            spec.digests
                .extend(super::attest::lease_digests(self.images, attester));
            spec.digests.sort();
            spec.digests.dedup();
        }
        Some(spec)
    }

    async fn next(&mut self, _applied: bool) -> Result<Option<Plan>> {
        if std::mem::replace(&mut self.planned, true) {
            return Ok(None);
        }
        let plan = plan(&*self.sink, self.images, &self.tags, &self.opts);
        plan.await.map(Some)
    }
}

/// Plans pushing an image set under every tag, in the write order above.
pub async fn plan(
    sink: &dyn OciSink,
    images: &ImageSet,
    tags: &[String],
    opts: &PushOptions,
) -> Result<Plan> {
    let mut plan = Plan::default();
    let mut tags = tags.to_vec();
    if let Some(version) = &opts.aliases {
        // Decided from what the target holds before this push writes anything.
        let moved = aliases::aliases(version, &sink.tags().await?);
        let said = match moved.is_empty() {
            true => "none (a newer release holds them)".into(),
            false => moved.join(", "),
        };
        plan.notes.push(format!("aliases: {said}").into());
        for alias in moved {
            if !tags.contains(&alias) {
                tags.push(alias);
            }
        }
        plan.tags = Some(tags.clone());
    }
    let mut blobs = blob_steps(sink, images, opts).await?;
    let attested = super::attest::image_steps(sink, images, opts.attester.as_deref()).await?;
    blobs.extend(attested.blobs);
    let signatures = match &opts.signing {
        Some(signing) => signature_steps(sink, images, signing, &mut blobs).await?,
        None => Vec::new(),
    };
    let mut manifests = Vec::new();
    for image in &images.images {
        let label = format!("manifest {} ({})", image.manifest_digest, image.platform);
        let (digest, bytes) = (&image.manifest_digest, &image.manifest);
        manifests.push(manifest_step(sink, digest, bytes, MANIFEST_MEDIA_TYPE, label).await?);
    }
    let (sboms, referrers) = referrer_steps(sink, images, &attested.referrers).await?;
    let label = format!("index {}", images.index_digest);
    let index = &images.index;
    let index_step = manifest_step(sink, &images.index_digest, index, INDEX_MEDIA_TYPE, label);
    let mut tag_steps = Vec::new();
    // The version tags first, then the aliases (their order in `tags`).
    for tag in &tags {
        let label = format!("tag {tag}");
        tag_steps.push(manifest_step(sink, tag, index, INDEX_MEDIA_TYPE, label).await?);
    }
    plan.phases = vec![
        Phase::new("blobs", blobs).parallel(),
        Phase::new("manifests", manifests),
        Phase::new("sboms", sboms),
        Phase::new("attestations", attested.manifests),
        Phase::new("referrers", referrers),
        Phase::new("index", vec![index_step.await?]).committing(),
        Phase::new("signatures", signatures),
        Phase::new("tags", tag_steps),
        Phase::new("lists", sink.list_steps(&tags).await?),
    ];
    plan.index_digest = Some(images.index_digest.clone());
    Ok(plan)
}

/// The manifests a signed push signs, as `cosign sign --recursive`: the index, then each
/// platform manifest.
fn signed_subjects(images: &ImageSet) -> Vec<&str> {
    let manifests = images.images.iter().map(|i| i.manifest_digest.as_str());
    std::iter::once(images.index_digest.as_str())
        .chain(manifests)
        .collect()
}

/// The signature manifests (at `sha256-<hex>.sig`, merged with what the target holds there),
/// their new blobs added to `blobs`.
async fn signature_steps(
    sink: &dyn OciSink,
    images: &ImageSet,
    signing: &super::signatures::Signing,
    blobs: &mut Vec<Step>,
) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    for subject in signed_subjects(images) {
        let tag = super::signatures::attachment_tag(subject, super::signatures::SIG_SUFFIX);
        let existing = sink.manifest(&tag).await?;
        let a = super::signatures::attachment(signing, subject, existing.as_deref())?;
        for blob in &a.blobs {
            let step = blob_step(blob);
            blobs.push(match sink.has_blob(blob).await? {
                true => step.with_status(Status::Exists),
                false => step,
            });
        }
        let label = format!("signature {tag}");
        steps.push(manifest_step(sink, &tag, &a.manifest, MANIFEST_MEDIA_TYPE, label).await?);
    }
    Ok(steps)
}

/// What the push references, for a concurrent gc.
fn lease_spec(images: &ImageSet, tags: &[String], name: String) -> LeaseSpec {
    let manifests = images.images.iter().map(|i| i.manifest_digest.clone());
    let manifests = manifests.chain(images.referrers.iter().map(|r| r.digest.clone()));
    let blobs = distinct_blobs(images).into_iter().map(|b| b.digest.clone());
    let mut digests: Vec<String> = blobs.chain(manifests).collect();
    digests.push(images.index_digest.clone());
    digests.sort();
    digests.dedup();
    LeaseSpec {
        name,
        tags: tags.to_vec(),
        digests,
        keys: Vec::new(),
    }
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

/// Each distinct blob: `exists` where the sink has it, `new` (and done) where this run
/// uploaded it while compressing.
async fn blob_steps(
    sink: &dyn OciSink,
    images: &ImageSet,
    opts: &PushOptions,
) -> Result<Vec<Step>> {
    let blobs = distinct_blobs(images);
    // Collected first: a lazy `map` over borrows trips the compiler's Send check of the
    // planner's boxed future.
    let reads: Vec<_> = blobs
        .iter()
        .map(|blob| has_blob(sink, opts, blob))
        .collect();
    let present: Vec<Option<bool>> = futures::stream::iter(reads)
        .buffered(READS_AT_ONCE)
        .try_collect()
        .await?;
    let steps = blobs.into_iter().zip(present).map(|(blob, present)| {
        let step = blob_step(blob);
        match present {
            Some(true) => step.with_status(Status::Exists),
            Some(false) => step,
            None => Step { done: true, ..step },
        }
    });
    Ok(steps.collect())
}

/// Whether the sink has `blob`; `None` when this run uploaded it already while compressing.
async fn has_blob(sink: &dyn OciSink, opts: &PushOptions, blob: &Blob) -> Result<Option<bool>> {
    match opts.uploaded.contains(&blob.digest) {
        true => Ok(None),
        false => sink.has_blob(blob).await.map(Some),
    }
}

/// A blob's upload.
pub fn blob_step(blob: &Blob) -> Step {
    let what = match blob.media_type.as_str() {
        t if t.contains("cyclonedx") => "sbom",
        t if t.contains("simplesigning") => "signature",
        t if t.contains("dsse") => "provenance",
        t if t.contains("config") => "config",
        t if t.contains("empty") => "artifact config",
        _ => "layer",
    };
    let key = format!("blobs/{}", blob.digest);
    let address = Address::Blob(blob.digest.clone());
    let content = Content::Blob(blob.clone());
    Step::write(address, key, content, &blob.media_type, blob.hex())
        .labelled(format!("{what} {}", blob.digest))
        .sized(blob.size, Some(blob.digest.clone()))
}

/// The SBOM artifact manifests (after their subjects), then each subject's referrers index
/// (listing its SBOM and the `attested` referrers), merged with what the target lists there
/// already.
async fn referrer_steps(
    sink: &dyn OciSink,
    images: &ImageSet,
    attested: &[crate::image::Referrer],
) -> Result<(Vec<Step>, Vec<Step>)> {
    let (mut sboms, mut referrers) = (Vec::new(), Vec::new());
    for r in &images.referrers {
        let label = format!("sbom {} (of {})", r.digest, r.subject);
        sboms.push(manifest_step(sink, &r.digest, &r.manifest, MANIFEST_MEDIA_TYPE, label).await?);
    }
    let mut by_subject: std::collections::BTreeMap<&str, Vec<&crate::image::Referrer>> =
        Default::default();
    for r in images.referrers.iter().chain(attested) {
        by_subject.entry(r.subject.as_str()).or_default().push(r);
    }
    for (subject, ours) in by_subject {
        let tag = subject.replacen(':', "-", 1);
        let existing = sink.manifest(&tag).await?;
        let index = crate::image::referrers_index(existing.as_deref(), &ours)?;
        let digest = oci_digest(&index);
        let status = status_against(existing.map(|old| oci_digest(&old)), &digest);
        let key = format!("manifests/{tag}");
        let address = Address::Referrers(subject.to_string());
        let step = Step::bytes(address, key, index, INDEX_MEDIA_TYPE);
        referrers.push(
            step.labelled(format!("referrers {tag}"))
                .with_status(status),
        );
    }
    Ok((sboms, referrers))
}

/// What writing `digest` over a reference that resolves to `current` is.
fn status_against(current: Option<String>, digest: &str) -> Status {
    match current {
        Some(d) if d == digest => Status::Exists,
        Some(_) => Status::Updated,
        None => Status::New,
    }
}

/// A manifest's write under a digest or tag, `exists` where it resolves to these bytes.
pub(crate) async fn manifest_step(
    sink: &dyn OciSink,
    reference: &str,
    bytes: &Bytes,
    media_type: &str,
    label: String,
) -> Result<Step> {
    let status = status_against(sink.manifest_digest(reference).await?, &oci_digest(bytes));
    let key = format!("manifests/{reference}");
    let step = Step::bytes(
        Address::Manifest(reference.to_string()),
        key,
        bytes.clone(),
        media_type,
    );
    Ok(step.labelled(label).with_status(status))
}

/// True when the index `stored` lists every manifest the index `planned` lists (the
/// referrers this push merged in are still there).
fn lists_all(stored: &[u8], planned: &[u8]) -> bool {
    let digests = |bytes: &[u8]| -> std::collections::BTreeSet<String> {
        let index = serde_json::from_slice::<serde_json::Value>(bytes).unwrap_or_default();
        let entries = index["manifests"].as_array().cloned().unwrap_or_default();
        let digests = entries.iter().filter_map(|e| e["digest"].as_str());
        digests.map(str::to_string).collect()
    };
    digests(planned).is_subset(&digests(stored))
}

/// Plans run on an image sink: image addresses go to the sink, keys to its store.
pub struct ImageSink(pub Arc<dyn OciSink>);

#[async_trait]
impl plan::Sink for ImageSink {
    async fn write(&self, step: &Step) -> Result<()> {
        let plan::Action::Write {
            content,
            media_type,
            ..
        } = &step.action
        else {
            anyhow::bail!("{} is not a write (alba bug)", step.key);
        };
        match (&step.address, content) {
            (Address::Blob(_), Content::Blob(blob)) => {
                self.0.put_blob(blob, blob.materialize().await?).await
            }
            (Address::Manifest(reference), Content::Bytes(bytes)) => {
                self.0.put_manifest(reference, bytes, media_type).await
            }
            (Address::Referrers(subject), Content::Bytes(bytes)) => {
                self.0.put_referrers(subject, bytes).await
            }
            (Address::Key(_), _) => match self.0.store() {
                Some(store) => store.put(&plan::put_of(step).await?).await,
                None => anyhow::bail!("{} has no key {} (alba bug)", self.0.name(), step.key),
            },
            _ => anyhow::bail!("cannot write {} here (alba bug)", step.key),
        }
    }

    async fn delete(&self, step: &Step) -> Result<bool> {
        match self.0.store() {
            Some(store) => plan::Sink::delete(store, step).await,
            None => anyhow::bail!("cannot delete {} here (alba bug)", step.key),
        }
    }

    async fn exists(&self, step: &Step) -> Result<bool> {
        let plan::Action::Write { content, .. } = &step.action else {
            return Ok(true);
        };
        match (&step.address, content) {
            (Address::Blob(_), Content::Blob(blob)) => self.0.has_blob(blob).await,
            // A tag must still point at this index, not merely exist.
            (Address::Manifest(reference), _) => {
                let current = self.0.manifest_digest(reference).await?;
                Ok(current.is_some() && current == step.digest)
            }
            (Address::Referrers(subject), Content::Bytes(planned)) => {
                let tag = subject.replacen(':', "-", 1);
                let stored = self.0.manifest(&tag).await?;
                Ok(stored.is_some_and(|stored| lists_all(&stored, planned)))
            }
            (Address::Key(_), _) => match self.0.store() {
                Some(store) => plan::Sink::exists(store, step).await,
                None => Ok(true),
            },
            _ => Ok(true),
        }
    }

    fn store(&self) -> Option<&Arc<dyn ObjectStore>> {
        self.0.store()
    }

    fn retries(&self) -> u64 {
        self.0.retries()
    }
}
