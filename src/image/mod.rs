//! Images: Nix-built docker archives and stream scripts in, OCI manifests, index and blobs out.
//!
//! One model, many sources (go-containerregistry's lesson): an [`ImageSet`] holds one
//! [`PlatformImage`] per platform, each a config and layers as [`Blob`]s — descriptors whose
//! bytes are produced on demand — plus its manifest's exact bytes, and the index's exact bytes.
//! Sinks (publishers) only see this model, whatever the input was.
//!
//! Inputs ([`load`]): docker-archive tarballs as `dockerTools.buildImage`/`buildLayeredImage`
//! write them (gzip, zstd or plain, told apart by magic bytes), and `streamLayeredImage`
//! scripts (run, their stdout read as the tar). Memory stays bounded whatever the layer size:
//! layers stream through a parallel compressor into temp files. [`scan_dir`] reads the Go
//! tool's `DIR` form.

pub mod attestation;
mod cache;
mod docker;
/// Synthetic docker archives, for alba's unit tests and its integration tests and benches
/// (`tests/common/images.rs`, through the `fixtures` feature that the dev-dependency on alba
/// itself turns on); not part of alba's interface, and not in the shipped binary.
#[cfg(any(test, feature = "fixtures"))]
#[doc(hidden)]
pub mod fixtures;
mod flight;
mod gate;
mod gzip;
mod input;
mod known;
mod layer;
mod oci;
mod pool;
mod read;
mod referrer;
mod spool_dir;
mod store_paths;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use crate::digest::oci_digest;
use crate::error;
use crate::platform::Platform;
use crate::store::Body;

pub use known::{
    KnownLayer, LAYERS_COMPRESSION, Published, known_layers, manifest_digests, published,
};
pub use layer::Compression;
pub use oci::{CONFIG_MEDIA_TYPE, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
pub use referrer::{Referrer, referrer_of, referrers_index};

/// A blob of an image: its config or one of its layers, described by media type, digest and
/// size, its bytes produced on demand by [`Blob::materialize`]. Cloning is cheap.
#[derive(Clone)]
pub struct Blob {
    /// The OCI media type (config, or layer with its compression).
    pub media_type: String,
    /// `sha256:<hex>` of the bytes.
    pub digest: String,
    /// Size of the bytes.
    pub size: u64,
    source: Source,
}

/// Where a blob's bytes are.
#[derive(Clone)]
enum Source {
    /// Small content in memory (the config).
    Memory(Bytes),
    /// A compressed layer spooled to a temp file, deleted with the last clone of the blob.
    Spooled(Arc<spool_dir::SpoolFile>),
    /// A layer known from the cache, compressed from its archive when first asked for.
    Lazy(Arc<read::Lazy>, String),
}

impl Blob {
    fn new(media_type: &str, digest: String, size: u64, source: Source) -> Blob {
        Blob {
            media_type: media_type.to_string(),
            digest,
            size,
            source,
        }
    }

    /// The blob's bytes: in memory for a config, a temp file for a layer. A layer known only
    /// from the cache is compressed now (with the other such layers of its archive, in one
    /// pass) and checked against [`Blob::digest`]. A file stays on disk as long as any clone
    /// of this blob lives: keep the blob until the upload is done.
    pub async fn materialize(&self) -> Result<Body> {
        match &self.source {
            Source::Memory(bytes) => Ok(Body::Bytes(bytes.clone())),
            Source::Spooled(path) => Ok(Body::File(path.to_path_buf())),
            Source::Lazy(lazy, name) => Ok(Body::File(lazy.get(name).await?.path.to_path_buf())),
        }
    }

    /// True when [`Blob::materialize`] has nothing to compute (in memory or already spooled).
    #[cfg(test)]
    pub fn is_ready(&self) -> bool {
        match &self.source {
            Source::Lazy(lazy, _) => lazy.is_done(),
            _ => true,
        }
    }

    /// A small blob held in memory (a signature payload, an artifact's config).
    pub fn in_memory(media_type: &str, bytes: Bytes) -> Blob {
        let digest = oci_digest(&bytes);
        Blob::new(
            media_type,
            digest,
            bytes.len() as u64,
            Source::Memory(bytes),
        )
    }

    /// The hex part of the digest (what registries and the static layout put in paths).
    pub fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::Memory(_) => "memory".to_string(),
            Source::Spooled(path) => path.display().to_string(),
            Source::Lazy(lazy, name) => format!("{name} in {} (lazy)", lazy.path().display()),
        };
        f.debug_struct("Blob")
            .field("media_type", &self.media_type)
            .field("digest", &self.digest)
            .field("size", &self.size)
            .field("source", &source)
            .finish()
    }
}

/// The image of one platform, in OCI form.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    /// The platform it was given for (its config agrees).
    pub platform: Platform,
    /// The config, byte for byte as in the input (`application/vnd.oci.image.config.v1+json`).
    pub config: Blob,
    /// The layers, bottom first, compressed as asked.
    pub layers: Vec<Blob>,
    /// The OCI image manifest, exactly the bytes to upload.
    pub manifest: Bytes,
    /// `sha256:<hex>` of [`PlatformImage::manifest`].
    pub manifest_digest: String,
    /// The `/nix/store/<hash>-<name>` paths found in the layers, sorted (for the SBOM).
    pub store_paths: Vec<String>,
}

/// Every platform's image plus the OCI image index that ties them together.
#[derive(Debug, Clone)]
pub struct ImageSet {
    /// One image per platform, sorted by platform (the index's order).
    pub images: Vec<PlatformImage>,
    /// The OCI image index, exactly the bytes to upload (`application/vnd.oci.image.index.v1+json`).
    pub index: Bytes,
    /// `sha256:<hex>` of [`ImageSet::index`].
    pub index_digest: String,
    /// How many layers [`load`] compressed (the others came from the layer cache, the targets,
    /// or another platform sharing them), for the load trace ("3 of 8 layers compressed").
    pub layers_compressed: usize,
    /// The release's annotations: SBOM artifacts carry them; the index and manifests carry
    /// them plus [`LAYERS_COMPRESSION`].
    pub annotations: BTreeMap<String, String>,
    /// SBOM artifacts whose subjects are platform manifests ([`ImageSet::attach_sboms`]).
    pub referrers: Vec<Referrer>,
}

/// How [`load`] works.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// How layers are compressed (gzip by default).
    pub compression: Compression,
    /// The cache folder (`$XDG_CACHE_HOME/alba`); `None` disables the layer cache.
    pub cache_dir: Option<PathBuf>,
    /// How many compression threads and images at once; 0 means one per core.
    pub jobs: usize,
    /// Annotations of the index and of every platform manifest.
    pub annotations: BTreeMap<String, String>,
    /// Layers the targets hold already, learned from what alba published there before with
    /// the same compression settings ([`published`]): not compressed unless a sink asks.
    pub known: Vec<KnownLayer>,
    /// Where each compressed layer goes as soon as it is ready (and every input has been
    /// validated), so its upload overlaps the compression of the others.
    pub ready_layers: Option<tokio::sync::mpsc::UnboundedSender<Blob>>,
    /// A bar counting uncompressed bytes: its length grows by each layer to compress (from
    /// its tar header), its position by the bytes compressed.
    pub progress: Option<indicatif::ProgressBar>,
}

/// Reads each `(platform, path)` input and builds the OCI manifests and index.
///
/// Images are read concurrently (at most `jobs` at once) and their layers compressed on a
/// shared pool of `jobs` threads. Every input error (unreadable or inconsistent archive,
/// platform contradicting the config, failing script, duplicate platform) is an
/// [`crate::error::InputError`] naming the file and the problem.
pub async fn load(inputs: Vec<(Platform, PathBuf)>, opts: &LoadOptions) -> Result<ImageSet> {
    check_platforms(&inputs)?;
    let jobs = match opts.jobs {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let cache = cache::Cache::new(opts.cache_dir.as_deref(), opts.compression);
    // The index and every manifest say how the layers were compressed, so a later run can
    // reuse them from the target (see `known`).
    let mut annotations = opts.annotations.clone();
    annotations.insert(LAYERS_COMPRESSION.into(), opts.compression.settings_key());
    let learned = opts.known.iter().map(|k| {
        let entry = cache::Entry {
            digest: k.digest.clone(),
            size: k.size,
        };
        (k.diff_id.clone(), entry)
    });
    let shared = Arc::new(read::Shared {
        compression: opts.compression,
        cached_sizes: cache.sizes(),
        cache,
        learned: learned.collect(),
        flights: flight::Flights::default(),
        gate: gate::Gate::new(inputs.len(), opts.ready_layers.clone()),
        progress: opts.progress.clone(),
        pool: Arc::new(pool::Pool::new(jobs)?),
        spool_dir: Arc::new(spool_dir::SpoolDir::new(opts.cache_dir.as_deref())?),
        annotations: annotations.clone(),
        store_paths: read::LayerPaths::new(opts.cache_dir.as_deref()),
    });
    let read = read_all(&shared, inputs, jobs).await;
    // Whatever happened, no layer leaves after the load, and the receiver sees the end.
    shared.gate.close();
    let mut read = read?;
    read.sort_by(|a, b| a.0.platform.cmp(&b.0.platform));
    let layers_compressed = read.iter().map(|(_, n)| n).sum();
    let images: Vec<PlatformImage> = read.into_iter().map(|(image, _)| image).collect();
    let index = oci::index(images.iter().map(index_entry).collect(), &annotations)?;
    let index_digest = oci_digest(&index);
    Ok(ImageSet {
        images,
        index,
        index_digest,
        layers_compressed,
        annotations: opts.annotations.clone(),
        referrers: Vec::new(),
    })
}

/// Validates every input (cheaply where it can: an uncompressed tar is seeked through, a known
/// archive is recalled from the cache), then reads and compresses them.
async fn read_all(
    shared: &Arc<read::Shared>,
    inputs: Vec<(Platform, PathBuf)>,
    jobs: usize,
) -> Result<Vec<(PlatformImage, usize)>> {
    let prepare = futures::stream::iter(inputs).map(|(platform, path)| {
        let shared = Arc::clone(shared);
        async move {
            tokio::task::spawn_blocking(move || read::prepare(&shared, platform, &path)).await?
        }
    });
    let prepared: Vec<read::Prepared> = prepare.buffered(jobs).try_collect().await?;
    let read =
        futures::stream::iter(prepared).map(|prepared| {
            let shared = Arc::clone(shared);
            async move {
                tokio::task::spawn_blocking(move || read::read_image(&shared, prepared)).await?
            }
        });
    read.buffer_unordered(jobs).try_collect().await
}

/// True when the local cache alone describes every layer of `inputs` (each archive known to
/// the archive index cache, each of its layers to the layer cache): reading what the targets
/// hold would teach nothing then, and a warm run skips it.
pub fn fully_cached(
    inputs: &[(Platform, PathBuf)],
    compression: Compression,
    cache_dir: Option<&Path>,
) -> bool {
    let cache = cache::Cache::new(cache_dir, compression);
    compression == Compression::None
        || inputs
            .iter()
            .all(|(_, path)| read::fully_cached(&cache, path))
}

fn index_entry(image: &PlatformImage) -> oci::Descriptor<'_> {
    oci::Descriptor {
        media_type: MANIFEST_MEDIA_TYPE,
        digest: &image.manifest_digest,
        size: image.manifest.len() as u64,
        platform: Some((&image.platform).into()),
    }
}

fn check_platforms(inputs: &[(Platform, PathBuf)]) -> Result<()> {
    if inputs.is_empty() {
        crate::bail_input!("no container images to publish");
    }
    let mut seen = BTreeSet::new();
    for (platform, path) in inputs {
        if !seen.insert(platform) {
            crate::bail_input!(
                "two images are given for {platform} (the second is {})",
                path.display()
            );
        }
    }
    Ok(())
}

/// The Go tool's `DIR` form: `<os>.<arch>[.<variant>].tar[.gz|.zst]` files, e.g.
/// `linux.arm.v6.tar.gz` → (`linux/arm/v6`, path), sorted by platform. Anything else in the
/// folder (another name, a subfolder) is an input error: a typo must not drop a platform
/// silently. The extension does not decide how a file is read: its content does.
pub fn scan_dir(dir: &Path) -> Result<Vec<(Platform, PathBuf)>> {
    let shown = dir.display();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| error::input(format!("cannot read the image folder {shown}: {e}")))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry
            .map_err(|e| error::input(format!("cannot read the image folder {shown}: {e}")))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let platform = dir_platform(&name).filter(|_| path.is_file()).ok_or_else(|| {
            error::input(format!(
                "unexpected {} in the image folder {shown}: it may only hold files named \
                 <os>.<arch>[.<variant>].tar[.gz|.zst], such as linux.amd64.tar.gz or linux.arm.v6.tar",
                path.display()
            ))
        })?;
        found.push((platform, path));
    }
    if found.is_empty() {
        crate::bail_input!(
            "the image folder {shown} holds no images (<os>.<arch>[.<variant>].tar[.gz|.zst])"
        );
    }
    found.sort();
    check_platforms(&found)?;
    Ok(found)
}

/// `linux.arm.v6.tar.gz` → `linux/arm/v6`.
fn dir_platform(name: &str) -> Option<Platform> {
    let stem = [".tar.gz", ".tar.zst", ".tar"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))?;
    Platform::parse(stem).filter(|_| !stem.contains('/'))
}
