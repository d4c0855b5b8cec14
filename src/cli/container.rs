//! `alba container push|ls`: multi-arch OCI images.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use bytes::Bytes;
use clap::Subcommand;
use oci_client::RegistryOperation;

use super::Global;
use super::push_args::{self, LsArgs, Publication, PushArgs};
use super::targets;
use crate::artifact::ArtifactSet;
use crate::config::Kind;
use crate::execute;
use crate::image::{self, ImageSet, LoadOptions};
use crate::names;
use crate::plan::{Planner, Sink};
use crate::platform::Platform;
use crate::publish::oci::{self, ImageSink, OciSink, PushOptions};
use crate::publish::oci_known;
use crate::publish::oci_static::StaticRegistry;
use crate::publish::signatures::{self, Signing};
use crate::report::{Report, TargetReport};
use crate::store;
use crate::target::{self, RegistryTarget, Target};
use crate::ui::Ui;

/// `alba container …`
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Publish images: from DIR (<os>.<arch>[.<variant>].tar[.gz]) or, without DIR, from the flake.
    Push(PushArgs),
    /// List the tags of an image and the platforms of each.
    Ls(LsArgs),
    /// Remove one tag; then delete the manifests and blobs no remaining tag uses.
    Rm(super::lifecycle::RmArgs),
    /// Keep the N newest tags (by version); remove the rest and what only they used.
    Gc(super::lifecycle::GcArgs),
}

/// Runs `alba container …`.
pub async fn run(global: &Global, cmd: ContainerCommand) -> Result<()> {
    match cmd {
        ContainerCommand::Push(args) => push(global, args).await,
        ContainerCommand::Ls(args) => ls(global, args).await,
        ContainerCommand::Rm(args) => super::lifecycle::container_rm(global, args).await,
        ContainerCommand::Gc(args) => super::lifecycle::container_gc(global, args).await,
    }
}

async fn push(global: &Global, args: PushArgs) -> Result<()> {
    let select = |set: &ArtifactSet| Ok(set.images());
    push_args::push(
        global,
        Kind::Container,
        &args,
        image::scan_dir,
        select,
        publish_all,
    )
    .await
}

/// The publication's image SBOMs completed with the store paths found in the layers (none
/// without SBOMs: a `DIR` push has no flake to describe).
async fn image_sboms(
    global: &Global,
    publication: &Publication,
    set: &ImageSet,
) -> Result<BTreeMap<Platform, Bytes>> {
    if publication.sboms.is_empty() {
        return Ok(BTreeMap::new());
    }
    let contents = set
        .images
        .iter()
        .map(|i| (i.platform.clone(), i.store_paths.clone()))
        .collect();
    crate::sbom::with_image_contents(&global.nix()?, &publication.sboms, &contents).await
}

/// Loads the images once, then pushes them under every tag to every target.
pub async fn publish_all(
    global: &Global,
    ui: &Ui,
    publication: &Publication,
    images: &[(Platform, PathBuf)],
    targets: &[Target],
    report: &mut Report,
) -> Result<()> {
    let (name, tags, dry_run) = (
        publication.name.as_str(),
        publication.tags.as_slice(),
        publication.dry_run,
    );
    names::check_name(name)?;
    for tag in tags {
        names::check_oci_tag(tag)?;
    }
    let repository = name.to_ascii_lowercase();
    names::check_repository(&repository)?;
    ui.section("load docker archives");
    for (platform, path) in images {
        ui.line(format!("{platform} {}", path.display()));
    }
    let mut sinks = Vec::new();
    for t in targets {
        sinks.push(sink_for(global, t, &repository, tags).await?);
    }
    let signings = signings(publication, targets, &repository)?;
    let (mut set, mut uploaded, mut unreachable) =
        load_and_upload(global, ui, publication, images, targets, &sinks).await?;
    let sboms = image_sboms(global, publication, &set).await?;
    set.attach_sboms(&sboms)?;
    ui.section("merge system images");
    for image in &set.images {
        let size: u64 = image.layers.iter().map(|l| l.size).sum();
        let layers = image.layers.len();
        ui.line(format!(
            "{} {} ({layers} layers, {})",
            image.platform,
            image.manifest_digest,
            crate::ui::human_size(size)
        ));
    }
    let layers: usize = set.images.iter().map(|i| i.layers.len()).sum();
    ui.line(format!(
        "index {} ({} of {layers} layers compressed, the rest known from the cache, a target or another platform)",
        set.index_digest, set.layers_compressed
    ));
    let executor = global.executor(ui, dry_run);
    let items = targets
        .iter()
        .zip(sinks)
        .enumerate()
        .map(|(n, (t, sink))| (targets::push_heading(t, dry_run), (n, t, sink)))
        .collect();
    let set = &set;
    targets::each(
        ui,
        dry_run,
        targets::PUSHED,
        items,
        report,
        async |(n, t, (sink, target_tags))| {
            let mut target_report = TargetReport::new(
                &t.to_string(),
                "container",
                &repository,
                &target_tags,
                dry_run,
            );
            let (done, failed) = std::mem::take(&mut uploaded[n]);
            if let Some(e) = failed {
                // An early upload failed after its retries: the push would fail the same way.
                unreachable[n].get_or_insert(e);
            }
            let opts = PushOptions {
                aliases: publication.aliases.clone(),
                uploaded: done,
                attester: publication.attester.clone(),
                signing: signings[n].clone(),
            };
            // A target whose check failed before loading fails the same way now, without
            // waiting for its retries a second time.
            let planner = match unreachable[n].take() {
                Some(e) => Err(e),
                None => {
                    let push = oci::Push::new(sink.clone(), set, &target_tags, opts);
                    Ok(Box::new(push) as Box<dyn Planner>)
                }
            };
            let image_sink = ImageSink(sink);
            let result = targets::run_on(&executor, &image_sink, &mut target_report, planner).await;
            (target_report, result)
        },
    )
    .await
}

/// Per target, how its images are signed (with an ECDSA key): the repository each signature
/// names is the one people pull from there. Checked before anything is loaded or written.
fn signings(
    publication: &Publication,
    targets: &[Target],
    repository: &str,
) -> Result<Vec<Option<Signing>>> {
    let Some(key) = &publication.image_signer else {
        return Ok(vec![None; targets.len()]);
    };
    let signing = |t: &Target| -> Result<Option<Signing>> {
        Ok(Some(Signing {
            key: Arc::clone(key),
            reference: signatures::docker_reference(t, repository)?,
        }))
    };
    targets.iter().map(signing).collect()
}

/// Learns what the targets hold, then loads the images; while layers compress, those the
/// targets lack are uploaded (not on a dry run). Returns the image set, what each target got
/// early, and per target the error that fails its push before it starts.
async fn load_and_upload(
    global: &Global,
    ui: &Ui,
    publication: &Publication,
    images: &[(Platform, PathBuf)],
    targets: &[Target],
    sinks: &[(Arc<dyn OciSink>, Vec<String>)],
) -> Result<(
    image::ImageSet,
    Vec<execute::early::Early>,
    Vec<Option<anyhow::Error>>,
)> {
    let (known, unreachable) =
        match image::fully_cached(images, global.compression, global.cache_dir().as_deref()) {
            true => (Vec::new(), sinks.iter().map(|_| None).collect()),
            false => {
                let spinner = ui.spinner("reading what the targets hold");
                let learned = known_layers(ui, &spinner, targets, sinks, global.compression).await;
                spinner.finish_and_clear();
                learned
            }
        };
    // Bytes to compress and compressed so far (each layer's size from its tar header).
    let bar = ui.bytes_bar(0, "compressing layers");
    let (ready, early) = match publication.dry_run {
        true => (None, None),
        false => {
            let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
            let reachable: Vec<_> = sinks
                .iter()
                .zip(&unreachable)
                .map(|((sink, _), e)| {
                    let sink: Arc<dyn Sink> = Arc::new(ImageSink(Arc::clone(sink)));
                    e.is_none().then_some(sink)
                })
                .collect();
            let early = tokio::spawn(execute::early::upload_ahead(
                reachable,
                receiver,
                global.jobs(),
            ));
            (Some(sender), Some(early))
        }
    };
    let opts = LoadOptions {
        compression: global.compression,
        cache_dir: global.cache_dir(),
        jobs: 0,
        annotations: publication.meta.annotations(),
        known,
        ready_layers: ready,
        progress: Some(bar.clone()),
    };
    let loaded = image::load(images.to_vec(), &opts).await;
    drop(opts);
    let early = match (&loaded, early) {
        (Ok(_), Some(early)) => Some(early.await?),
        (Err(_), Some(early)) => {
            // What left already is unreferenced, for gc; do not upload more.
            early.abort();
            None
        }
        (_, None) => None,
    };
    bar.finish_and_clear();
    let set = loaded?;
    let mut uploaded = early.unwrap_or_default();
    uploaded.resize_with(sinks.len(), Default::default);
    Ok((set, uploaded, unreachable))
}

/// What the targets hold already of this image's layers (the target as a cache): read before
/// compressing, so a runner with an empty cache compresses only what they lack. Also returns,
/// per target, the error of its check (sign-in, reachability), which fails its push. A target
/// that cannot be read otherwise teaches nothing.
async fn known_layers(
    ui: &Ui,
    spinner: &indicatif::ProgressBar,
    targets: &[Target],
    sinks: &[(Arc<dyn OciSink>, Vec<String>)],
    compression: image::Compression,
) -> (Vec<image::KnownLayer>, Vec<Option<anyhow::Error>>) {
    let (mut known, mut unreachable) = (Vec::new(), Vec::new());
    for (t, (sink, _)) in targets.iter().zip(sinks) {
        if let Err(e) = sink.check().await {
            unreachable.push(Some(e));
            continue;
        }
        unreachable.push(None);
        match oci_known::known_layers(&**sink, compression).await {
            Ok(layers) => {
                if !layers.is_empty() {
                    let line = format!("{t}: {} layers published before", layers.len());
                    spinner.suspend(|| ui.line(line));
                }
                known.extend(layers);
            }
            Err(e) => tracing::debug!("cannot read the layers {t} holds: {e:#}"),
        }
    }
    (known, unreachable)
}

/// The sink for a target, and the tags to write there: a registry URL's own tag wins over
/// the given ones (`docker://HOST/REPO:TAG`).
async fn sink_for(
    global: &Global,
    t: &Target,
    repository: &str,
    tags: &[String],
) -> Result<(Arc<dyn OciSink>, Vec<String>)> {
    match t {
        Target::Registry(r) => {
            let tags = r.tag.clone().map_or_else(|| tags.to_vec(), |tag| vec![tag]);
            Ok((Arc::new(global.registry_sink(r)?), tags))
        }
        _ => {
            let store = store::open(t).await?;
            Ok((
                Arc::new(StaticRegistry::new(store, repository)),
                tags.to_vec(),
            ))
        }
    }
}

/// One line of `ls`: a tag, the digest of its index (`None` when its manifest is missing)
/// and the platforms in it.
type Listing = Vec<(String, Option<String>, Vec<String>)>;

async fn ls(global: &Global, args: LsArgs) -> Result<()> {
    names::check_name(&args.name)?;
    let t = target::parse(&args.target)?;
    let listing = match &t {
        Target::Registry(r) => registry_listing(global, r).await?,
        _ => static_listing(&t, &args.name, global.read_jobs()).await?,
    };
    if global.json {
        let tags: Vec<_> = listing
            .iter()
            .map(|(tag, digest, platforms)| serde_json::json!({ "tag": tag, "digest": digest, "platforms": platforms }))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "name": args.name, "tags": tags }))?
        );
        return Ok(());
    }
    if listing.is_empty() {
        println!("{}: no tags on {t}", args.name);
    }
    for (tag, digest, platforms) in &listing {
        println!(
            "{:16} {} {}",
            tag,
            digest.as_deref().unwrap_or("missing"),
            platforms.join(" ")
        );
    }
    Ok(())
}

/// The tags of a static registry on an object store, from its `tags/list`; the tag objects
/// are read `reads` at once.
async fn static_listing(t: &Target, name: &str, reads: usize) -> Result<Listing> {
    let store = store::open(t).await?;
    store.check().await?;
    let registry = StaticRegistry::new(store.clone(), &name.to_ascii_lowercase());
    let mut listing = Vec::new();
    let tags = registry.tag_list().stored(&*store).await?.tags;
    let keys: Vec<String> = tags
        .iter()
        .map(|tag| registry.layout().manifest_key(tag))
        .collect();
    let indexes = store::many::get_all(&*store, &keys, reads).await;
    for (tag, index) in tags.into_iter().zip(indexes) {
        let (digest, platforms) = match index? {
            Some(bytes) => (
                Some(crate::digest::oci_digest(&bytes)),
                index_platforms(&bytes),
            ),
            None => (None, Vec::new()),
        };
        listing.push((tag, digest, platforms));
    }
    Ok(listing)
}

/// The tags of a registry repository, through the registry API (`tags/list`, then each tag's
/// manifest for its digest and platforms).
async fn registry_listing(global: &Global, r: &RegistryTarget) -> Result<Listing> {
    let registry = global.registry_sink(r)?;
    registry.sign_in(RegistryOperation::Pull).await?;
    let mut listing = Vec::new();
    // Referrers and signature tags (`sha256-<hex>[.sig]`) belong to their subjects, as on
    // static registries, whose tags/list leaves them out.
    let tags: Vec<String> = registry
        .list_tags()
        .await?
        .into_iter()
        .filter(|t| !crate::publish::derived::is_attached_tag(t))
        .collect();
    let registry = &registry;
    let manifests = store::many::in_order(&tags, global.read_jobs(), |tag| async move {
        registry.tag_manifest(tag).await
    });
    for (tag, manifest) in tags.iter().cloned().zip(manifests.await) {
        let (digest, platforms) = match manifest? {
            Some((bytes, digest)) => (Some(digest), index_platforms(&bytes)),
            None => (None, Vec::new()),
        };
        listing.push((tag, digest, platforms));
    }
    Ok(listing)
}

/// `os/arch[/variant]` of every entry of an index.
fn index_platforms(bytes: &[u8]) -> Vec<String> {
    let Ok(index) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Vec::new();
    };
    index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| serde_json::from_value::<Platform>(m["platform"].clone()).ok())
        .map(|p| p.to_string())
        .collect()
}
