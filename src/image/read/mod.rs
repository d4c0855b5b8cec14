//! Reading one image input into a [`PlatformImage`].
//!
//! A first pass over the tar keeps the small JSON entries in memory and compresses, as they
//! stream by, the layers it knows are not in the layer cache: either manifest and config came
//! first and name the layer's diff_id, or (nixpkgs writes `manifest.json` *last*) no cached
//! layer has the entry's size. Other layers are skipped; once the config's `rootfs.diff_ids`
//! are known, the cache gives each one's compressed digest and size, and a second pass
//! compresses only those it lacks (rare: a size shared with a cached layer). Layers known
//! from the cache become lazy blobs: compressed (once, all of an archive's lazy layers in one
//! pass) only if a sink asks for their bytes.
//!
//! When the archive index cache knows the input (same file, unchanged), even the first pass is
//! skipped: a warm run with every layer cached reads nothing but that cache. An uncompressed
//! tar skips it too: [`prepare`] seeks through it for its spec first, which validates every
//! such input before any layer is compressed; each layer then leaves for upload through the
//! [`Gate`] as soon as it is compressed, once every input is validated.
//!
//! Layers known from a target ([`Shared::learned`], what alba published there before) are
//! treated like cached ones, and merged into the layer cache once an archive tells their size.
//! A layer is compressed at most once per load ([`super::flight`]): before the spec is known,
//! a layer entry's name (`<diff hex>/layer.tar`, `blobs/sha256/<hex>`) tells its likely
//! diff_id, which is claimed before compressing; every other image sharing it waits for it.
//!
//! Trust: a cached layer's diff_id comes from the config and is not re-hashed on a warm run
//! (that is the point of the cache), nor is a layer another image of the load compressed;
//! every layer actually compressed is checked against its diff_id, and a lazily compressed
//! layer against the digest the manifest already names. A disagreement drops the cache
//! entries involved, so the next run starts from the archive.
//!
//! By job: this file prepares and reads an input and assembles its image; `scan` is the first
//! pass over an archive, `plan` decides per layer and runs the compressing passes, `lazy`
//! compresses cached layers when a sink first asks for their bytes.

mod lazy;
mod paths;
mod plan;
mod scan;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;

use super::cache::{self, Cache};
use super::docker::{self, MANIFEST, Spec};
use super::flight::Flights;
use super::gate::Gate;
use super::input::{Format, Input};
use super::layer::{Compression, Spooled};
use super::oci::{self, CONFIG_MEDIA_TYPE, Descriptor};
use super::pool::Pool;
use super::spool_dir::SpoolDir;
use super::{Blob, PlatformImage, Source};
use crate::digest::oci_digest;
use crate::platform::Platform;

pub(crate) use lazy::Lazy;
pub(crate) use paths::LayerPaths;
use plan::Plan;
use scan::{Scan, scan};

/// JSON entries larger than this are not kept in memory (configs are a few KiB).
const SMALL_LIMIT: u64 = 16 << 20;

/// What every image of a load shares.
pub(crate) struct Shared {
    pub compression: Compression,
    pub cache: Cache,
    /// The uncompressed sizes of the cached layers, listed once when the load starts.
    pub cached_sizes: HashSet<u64>,
    /// diff_id → compressed descriptor of the layers the targets hold (sizes unknown).
    pub learned: HashMap<String, cache::Entry>,
    /// The layers being compressed or compressed in this load, by diff_id.
    pub flights: Flights,
    /// Where compressed layers leave for upload once every input is validated.
    pub gate: Gate,
    /// Counts uncompressed bytes: the total to compress, and how many went by.
    pub progress: Option<indicatif::ProgressBar>,
    pub pool: Arc<Pool>,
    /// This run's folder for compressed layers.
    pub spool_dir: Arc<SpoolDir>,
    /// Annotations of every platform manifest.
    pub annotations: std::collections::BTreeMap<String, String>,
    /// The store paths of the layers, by diff_id.
    pub store_paths: LayerPaths,
}

/// An input opened and, where that is cheap, validated before any layer is compressed.
pub(crate) struct Prepared {
    platform: Platform,
    input: Input,
    identity: Option<String>,
    /// Spec and entry sizes, when known already; true when from the archive index cache.
    known: Option<(Spec, Sizes, bool)>,
}

/// Opens an input and validates it where that costs little: an archive the archive index
/// cache knows, or an uncompressed tar (its layers are seeked over, not read). Other inputs
/// (compressed, scripts) are validated by their first pass, which also compresses.
pub(crate) fn prepare(shared: &Shared, platform: Platform, path: &Path) -> Result<Prepared> {
    let input = Input::open(path)?;
    let identity = input.identity();
    let recalled = identity
        .as_deref()
        .and_then(|id| recall(&input, &shared.cache, id));
    let known = match recalled {
        Some((spec, sizes)) => {
            docker::check_platform(&input, &spec, &platform)?;
            shared.gate.validated();
            Some((spec, sizes, true))
        }
        None if input.format == Format::Tar => {
            let mut scan = Scan::new(&input, shared, &platform, false);
            input.walk(&mut |name, size, data| scan.visit(name, size, data))?;
            let spec = match scan.spec.take() {
                Some(spec) => spec,
                None => scan.finish_spec()?,
            };
            check_complete(&input, &spec, &scan.sizes)?;
            Some((spec, scan.sizes, false))
        }
        None => None,
    };
    Ok(Prepared {
        platform,
        input,
        identity,
        known,
    })
}

/// Reads one input; also returns how many layers it compressed.
pub(crate) fn read_image(
    shared: &Arc<Shared>,
    prepared: Prepared,
) -> Result<(PlatformImage, usize)> {
    let Prepared {
        platform,
        input,
        identity,
        known,
    } = prepared;
    let from_cache = matches!(known, Some((_, _, true)));
    let known = known.map(|(spec, sizes, _)| (spec, sizes));
    let result = build(shared, &input, platform, identity.clone(), known);
    if result.is_err() {
        // Nothing more leaves for upload: this input is bad.
        shared.gate.close();
    }
    if let Some(id) = identity.as_deref() {
        match &result {
            Ok(done) if !from_cache => {
                if let Some(index) = index_of(done) {
                    shared.cache.put_archive(id, &index);
                }
            }
            // Whatever went wrong, the next run reads the archive itself.
            Err(_) if from_cache => shared.cache.forget_archive(id),
            _ => {}
        }
    }
    result.map(|done| (done.image, done.compressed))
}

/// The size of each regular file of an archive, by entry name.
type Sizes = HashMap<String, u64>;

/// What reading an input produced.
struct Done {
    image: PlatformImage,
    compressed: usize,
    spec: Spec,
    sizes: Sizes,
}

fn build(
    shared: &Arc<Shared>,
    input: &Input,
    platform: Platform,
    identity: Option<String>,
    recalled: Option<(Spec, Sizes)>,
) -> Result<Done> {
    let (spec, sizes, spooled) = match recalled {
        Some((spec, sizes)) => {
            docker::check_platform(input, &spec, &platform)?;
            (spec, sizes, HashMap::new())
        }
        None => scan(input, shared, &platform)?,
    };
    let mut compressed = spooled.len();
    let plan = Plan::new(input, shared, &spec, &sizes, spooled)?;
    let blobs = plan.complete(input, shared, identity, &mut compressed)?;
    let mut image = assemble(platform, &spec, &blobs, &shared.annotations)?;
    image.store_paths = paths::of_image(input, shared, &spec)?;
    tracing::debug!(
        "{}: {} layers, {compressed} compressed",
        input.path.display(),
        spec.diff_ids.len()
    );
    Ok(Done {
        image,
        compressed,
        spec,
        sizes,
    })
}

/// What the archive index cache knows about an input (`None` if nothing usable).
fn recall(input: &Input, cache: &Cache, identity: &str) -> Option<(Spec, Sizes)> {
    let index = cache.archive(identity)?;
    let manifest = docker::Manifest {
        config: index.config_name,
        layers: index.layers,
    };
    let spec = docker::parse_spec(input, manifest, Bytes::from(index.config)).ok()?;
    Some((spec, index.sizes.into_iter().collect()))
}

/// True when the caches alone describe the input at `path`: the archive index cache knows it
/// and the layer cache every layer of it.
pub(crate) fn fully_cached(cache: &Cache, path: &Path) -> bool {
    let Ok(input) = Input::open(path) else {
        return false;
    };
    let recalled = input.identity().and_then(|id| recall(&input, cache, &id));
    let Some((spec, sizes)) = recalled else {
        return false;
    };
    let layers = spec.manifest.layers.iter().zip(&spec.diff_ids);
    layers.into_iter().all(|(name, diff_id)| {
        sizes
            .get(name)
            .is_some_and(|&size| cache.get(diff_id, size).is_some())
    })
}

/// What to remember about an input that was read.
fn index_of(done: &Done) -> Option<cache::ArchiveIndex> {
    let spec = &done.spec;
    let sizes = spec
        .manifest
        .layers
        .iter()
        .filter_map(|n| Some((n.clone(), *done.sizes.get(n)?)))
        .collect();
    Some(cache::ArchiveIndex {
        config_name: spec.manifest.config.clone(),
        layers: spec.manifest.layers.clone(),
        // Kept verbatim; a config that is not UTF-8 (JSON always is) is read again next time.
        config: String::from_utf8(spec.config.to_vec()).ok()?,
        sizes,
    })
}

/// An input error when a layer's bytes do not hash to its diff_id.
fn check_diff_id(input: &Input, name: &str, actual: &str, expected: &str) -> Result<()> {
    if actual != expected {
        crate::bail_input!(
            "the image {} is inconsistent: the layer {name} has digest {actual} but its config says \
             {expected} (rootfs.diff_ids)",
            input.path.display()
        );
    }
    Ok(())
}

/// An input error unless the archive holds every layer its manifest names.
fn check_complete(input: &Input, spec: &Spec, sizes: &Sizes) -> Result<()> {
    if let Some(name) = spec
        .manifest
        .layers
        .iter()
        .find(|n| !sizes.contains_key(*n))
    {
        crate::bail_input!(
            "the image {} is incomplete: {MANIFEST} names the layer {name}, which the archive does not contain",
            input.path.display()
        );
    }
    Ok(())
}

impl Shared {
    /// Adds `size` bytes to compress to the progress bar's total.
    fn plan(&self, size: u64) {
        if let Some(bar) = &self.progress {
            bar.inc_length(size);
        }
    }

    /// The blob of a compressed layer.
    fn blob(&self, spooled: &Spooled) -> Blob {
        let source = Source::Spooled(Arc::clone(&spooled.path));
        let media_type = self.compression.layer_media_type();
        Blob::new(media_type, spooled.digest.clone(), spooled.size, source)
    }

    /// Records a compressed layer in the cache (uncompressed layers need no entry).
    fn remember(&self, done: &Spooled) {
        if self.compression != Compression::None {
            let entry = cache::Entry {
                digest: done.digest.clone(),
                size: done.size,
            };
            self.cache.put(&done.diff_id, done.raw_size, &entry);
        }
    }
}

/// The digest and size of a layer without compressing it, from the cache or a target (or,
/// uncompressed, from the diff_id and the tar entry's size).
fn known(shared: &Shared, diff_id: &str, size: u64) -> Option<cache::Entry> {
    match shared.compression {
        Compression::None => Some(cache::Entry {
            digest: diff_id.to_string(),
            size,
        }),
        _ => shared
            .cache
            .get(diff_id, size)
            .or_else(|| shared.learned.get(diff_id).cloned()),
    }
}

/// [`known`], merging what a target taught into the layer cache now that the archive told
/// the layer's uncompressed size (the cache's key): the next run needs no target to know it.
fn known_and_kept(shared: &Shared, diff_id: &str, size: u64) -> Option<cache::Entry> {
    let entry = known(shared, diff_id, size)?;
    if shared.compression != Compression::None && shared.cache.get(diff_id, size).is_none() {
        shared.cache.put(diff_id, size, &entry);
    }
    Some(entry)
}

/// Builds the image's blobs and manifest (serialized once).
fn assemble(
    platform: Platform,
    spec: &Spec,
    blobs: &HashMap<String, Blob>,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<PlatformImage> {
    let config_bytes = docker::config_for(&spec.config, &platform)?;
    let config = Blob::new(
        CONFIG_MEDIA_TYPE,
        oci_digest(&config_bytes),
        config_bytes.len() as u64,
        Source::Memory(config_bytes),
    );
    let layers = spec
        .manifest
        .layers
        .iter()
        .map(|name| {
            blobs
                .get(name)
                .cloned()
                .with_context(|| format!("no blob for the layer {name}"))
        })
        .collect::<Result<Vec<Blob>>>()?;
    let manifest = oci::manifest(
        descriptor(&config),
        layers.iter().map(descriptor).collect(),
        annotations,
    )?;
    let manifest_digest = oci_digest(&manifest);
    Ok(PlatformImage {
        platform,
        config,
        layers,
        manifest,
        manifest_digest,
        store_paths: Vec::new(),
    })
}

fn descriptor(blob: &Blob) -> Descriptor<'_> {
    Descriptor {
        media_type: &blob.media_type,
        digest: &blob.digest,
        size: blob.size,
        platform: None,
    }
}
