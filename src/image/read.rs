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
//! skipped: a warm run with every layer cached reads nothing but that cache.
//!
//! Trust: a cached layer's diff_id comes from the config and is not re-hashed on a warm run
//! (that is the point of the cache); every layer actually compressed is checked against its
//! diff_id, and a lazily compressed layer against the digest the manifest already names. A
//! disagreement drops the cache entries involved, so the next run starts from the archive.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;

use super::cache::{self, Cache};
use super::docker::{self, MANIFEST, Spec};
use super::input::Input;
use super::layer::{self, Compressing, Compression, PumpError, Spooled};
use super::oci::{self, CONFIG_MEDIA_TYPE, Descriptor};
use super::pool::Pool;
use super::spool_dir::SpoolDir;
use super::{Blob, PlatformImage, Source};
use crate::platform::Platform;

/// JSON entries larger than this are not kept in memory (configs are a few KiB).
const SMALL_LIMIT: u64 = 16 << 20;

/// What every image of a load shares.
pub(crate) struct Shared {
    pub compression: Compression,
    pub cache: Cache,
    /// The uncompressed sizes of the cached layers, listed once when the load starts.
    pub cached_sizes: HashSet<u64>,
    pub pool: Arc<Pool>,
    /// This run's folder for compressed layers.
    pub spool_dir: Arc<SpoolDir>,
}

/// Reads one input; also returns how many layers it compressed.
pub(crate) fn read_image(
    shared: &Arc<Shared>,
    platform: Platform,
    path: &Path,
) -> Result<(PlatformImage, usize)> {
    let input = Input::open(path)?;
    let identity = input.identity();
    let recalled = identity
        .as_deref()
        .and_then(|id| recall(&input, shared, id));
    let from_cache = recalled.is_some();
    let result = build(shared, &input, platform, identity.clone(), recalled);
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
    let image = assemble(platform, &spec, &blobs)?;
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

/// The first pass: learns manifest and config, compresses the layers it can identify.
fn scan(
    input: &Input,
    shared: &Shared,
    platform: &Platform,
) -> Result<(Spec, Sizes, HashMap<String, Spooled>)> {
    let mut scan = Scan::new(input, shared, platform);
    input.walk(&mut |name, size, data| scan.visit(name, size, data))?;
    let spec = match scan.spec.take() {
        Some(spec) => spec,
        None => scan.finish_spec()?,
    };
    let Scan {
        sizes, compressing, ..
    } = scan;
    Ok((spec, sizes, finish_all(input, compressing)?))
}

/// What the archive index cache knows about an input (`None` if nothing usable).
fn recall(input: &Input, shared: &Shared, identity: &str) -> Option<(Spec, Sizes)> {
    let index = shared.cache.archive(identity)?;
    let manifest = docker::Manifest {
        config: index.config_name,
        layers: index.layers,
    };
    let spec = docker::parse_spec(input, manifest, Bytes::from(index.config)).ok()?;
    Some((spec, index.sizes.into_iter().collect()))
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

/// The state of a first pass.
struct Scan<'a> {
    input: &'a Input,
    shared: &'a Shared,
    platform: &'a Platform,
    small: HashMap<String, Bytes>,
    sizes: HashMap<String, u64>,
    spec: Option<Spec>,
    /// entry name → diff_id, once the spec is known.
    layers: HashMap<String, String>,
    compressing: HashMap<String, Compressing>,
}

impl<'a> Scan<'a> {
    fn new(input: &'a Input, shared: &'a Shared, platform: &'a Platform) -> Self {
        Scan {
            input,
            shared,
            platform,
            small: HashMap::new(),
            sizes: HashMap::new(),
            spec: None,
            layers: HashMap::new(),
            compressing: HashMap::new(),
        }
    }

    fn visit(&mut self, name: &str, size: u64, data: &mut dyn Read) -> Result<()> {
        self.sizes.insert(name.to_string(), size);
        if self.is_small(name, size) {
            let bytes = read_small(self.input, name, size, data)?;
            self.small.insert(name.to_string(), bytes);
            return self.try_spec();
        }
        let wanted = match self.layers.get(name) {
            Some(diff_id) => needs_compression(self.shared, diff_id, size),
            None => self.spec.is_none() && self.surely_uncached(name, size),
        };
        if wanted && !self.compressing.contains_key(name) {
            let compressing = compress_entry(self.input, self.shared, name, data)?;
            self.compressing.insert(name.to_string(), compressing);
        }
        Ok(())
    }

    /// Before manifest and config are known (nixpkgs writes them last), a layer-like entry
    /// whose size no cached layer has cannot be in the cache: compressing it right away saves
    /// a second pass over the archive (a second decompression, or a second run of the script).
    fn surely_uncached(&self, name: &str, size: u64) -> bool {
        let layer_like = name.ends_with(".tar") || name.starts_with("blobs/");
        layer_like
            && self.shared.compression != Compression::None
            && !self.shared.cached_sizes.contains(&size)
    }

    /// manifest.json, the config, and any other JSON entry of reasonable size.
    fn is_small(&self, name: &str, size: u64) -> bool {
        let config = self.spec.as_ref().map(|s| s.manifest.config.as_str());
        name == MANIFEST || Some(name) == config || (name.ends_with(".json") && size <= SMALL_LIMIT)
    }

    /// Parses manifest and config as soon as both went by, to compress the layers after them
    /// on the fly and to refuse a wrong platform early.
    fn try_spec(&mut self) -> Result<()> {
        if self.spec.is_some() {
            return Ok(());
        }
        let Some(manifest) = self.small.get(MANIFEST) else {
            return Ok(());
        };
        let manifest = docker::parse_manifest(self.input, manifest)?;
        let Some(config) = self.small.get(&manifest.config).cloned() else {
            return Ok(());
        };
        let spec = docker::parse_spec(self.input, manifest, config)?;
        docker::check_platform(self.input, &spec, self.platform)?;
        for (name, diff_id) in spec.manifest.layers.iter().zip(&spec.diff_ids) {
            self.layers
                .entry(name.clone())
                .or_insert_with(|| diff_id.clone());
        }
        self.spec = Some(spec);
        Ok(())
    }

    /// The spec after the pass, when manifest or config came late or not at all.
    fn finish_spec(&mut self) -> Result<Spec> {
        let shown = self.input.path.display();
        let Some(manifest) = self.small.get(MANIFEST) else {
            crate::bail_input!(
                "the image {shown} has no {MANIFEST}: it is not a docker archive \
                 (as dockerTools.buildImage or streamLayeredImage write them)"
            );
        };
        let manifest = docker::parse_manifest(self.input, manifest)?;
        if !self.small.contains_key(&manifest.config) {
            self.fetch_config(&manifest.config)?;
        }
        self.try_spec()?;
        self.spec.take().context("the image spec was not parsed")
    }

    /// A config named without `.json` (docker's newer `blobs/sha256/…` names) that went by
    /// before the manifest: read it in one more pass.
    fn fetch_config(&mut self, config: &str) -> Result<()> {
        let Some(&size) = self.sizes.get(config) else {
            crate::bail_input!(
                "the image {} has no config: {MANIFEST} names {config}, which the archive does not contain",
                self.input.path.display()
            );
        };
        let (input, mut found) = (self.input, None);
        input.walk(&mut |name, _, data| {
            if name == config && found.is_none() {
                found = Some(read_small(input, name, size, data)?);
            }
            Ok(())
        })?;
        let bytes =
            found.with_context(|| format!("{config} disappeared from {}", input.path.display()))?;
        self.small.insert(config.to_string(), bytes);
        Ok(())
    }
}

/// True when a layer must be compressed now: it is not in the cache (uncompressed layers need
/// no cache: their digest is the diff_id).
fn needs_compression(shared: &Shared, diff_id: &str, size: u64) -> bool {
    shared.compression != Compression::None && shared.cache.get(diff_id, size).is_none()
}

fn read_small(input: &Input, name: &str, size: u64, data: &mut dyn Read) -> Result<Bytes> {
    if size > SMALL_LIMIT {
        crate::bail_input!(
            "{name} in the image {} is too large ({size} bytes) for a JSON document",
            input.path.display()
        );
    }
    let mut bytes = Vec::with_capacity(size as usize);
    data.read_to_end(&mut bytes)
        .map_err(|e| input.corrupt(format!("{name}: {e}")))?;
    Ok(Bytes::from(bytes))
}

fn compress_entry(
    input: &Input,
    shared: &Shared,
    name: &str,
    data: &mut dyn Read,
) -> Result<Compressing> {
    layer::compress(data, shared.compression, &shared.pool, &shared.spool_dir).map_err(
        |e| match e {
            PumpError::Read(e) => input.corrupt(format!("{name}: {e}")),
            PumpError::Write(e) => compress_failed(input, name, e),
        },
    )
}

fn compress_failed(input: &Input, name: &str, error: anyhow::Error) -> anyhow::Error {
    error.context(format!(
        "cannot compress the layer {name} of the image {}",
        input.path.display()
    ))
}

/// Waits for the layers of a pass to finish compressing.
fn finish_all(
    input: &Input,
    compressing: HashMap<String, Compressing>,
) -> Result<HashMap<String, Spooled>> {
    let mut spooled = HashMap::new();
    for (name, layer) in compressing {
        let done = layer.wait().map_err(|e| compress_failed(input, &name, e))?;
        tracing::debug!(
            "compressed {name} of {}: {} → {}",
            input.path.display(),
            done.diff_id,
            done.digest
        );
        spooled.insert(name, done);
    }
    Ok(spooled)
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

/// The digest and size a lazy layer will have.
#[derive(Debug, Clone)]
pub(crate) struct Expected {
    diff_id: String,
    digest: String,
    size: u64,
}

/// For each distinct layer entry: done, known (lazy), or to compress.
struct Plan {
    ready: HashMap<String, Spooled>,
    lazy: HashMap<String, Expected>,
    todo: HashMap<String, String>,
}

impl Plan {
    fn new(
        input: &Input,
        shared: &Shared,
        spec: &Spec,
        sizes: &HashMap<String, u64>,
        mut spooled: HashMap<String, Spooled>,
    ) -> Result<Plan> {
        let mut plan = Plan {
            ready: HashMap::new(),
            lazy: HashMap::new(),
            todo: HashMap::new(),
        };
        for (name, diff_id) in spec.manifest.layers.iter().zip(&spec.diff_ids) {
            let Some(&size) = sizes.get(name) else {
                crate::bail_input!(
                    "the image {} is incomplete: {MANIFEST} names the layer {name}, which the archive does not contain",
                    input.path.display()
                );
            };
            if let Some(done) = plan.ready.get(name).or(spooled.get(name)) {
                check_diff_id(input, name, &done.diff_id, diff_id)?;
                if let Some(done) = spooled.remove(name) {
                    shared.remember(&done);
                    plan.ready.insert(name.clone(), done);
                }
            } else if let Some(expected) = plan.lazy.get(name) {
                check_diff_id(input, name, &expected.diff_id, diff_id)?;
            } else if let Some(entry) = known(shared, diff_id, size) {
                plan.lazy.insert(
                    name.clone(),
                    Expected {
                        diff_id: diff_id.clone(),
                        digest: entry.digest,
                        size: entry.size,
                    },
                );
            } else {
                plan.todo
                    .entry(name.clone())
                    .or_insert_with(|| diff_id.clone());
            }
        }
        Ok(plan)
    }

    /// Compresses what is left to do in a second pass; returns the blob of each layer entry.
    fn complete(
        mut self,
        input: &Input,
        shared: &Arc<Shared>,
        identity: Option<String>,
        compressed: &mut usize,
    ) -> Result<HashMap<String, Blob>> {
        if !self.todo.is_empty() {
            let spooled = compress_entries(input, shared, &self.todo.keys().cloned().collect())?;
            for (name, diff_id) in &self.todo {
                let done = spooled
                    .get(name)
                    .with_context(|| format!("{name} disappeared from {}", input.path.display()))?;
                check_diff_id(input, name, &done.diff_id, diff_id)?;
                shared.remember(done);
            }
            *compressed += spooled.len();
            self.ready.extend(spooled);
        }
        let media_type = shared.compression.layer_media_type();
        let mut blobs: HashMap<String, Blob> = self
            .ready
            .into_iter()
            .map(|(name, s)| {
                (
                    name,
                    Blob::new(
                        media_type,
                        s.digest.clone(),
                        s.size,
                        Source::Spooled(s.path),
                    ),
                )
            })
            .collect();
        if self.lazy.is_empty() {
            return Ok(blobs);
        }
        let lazy = Arc::new(Lazy {
            input: input.clone(),
            shared: Arc::clone(shared),
            identity,
            expected: self.lazy,
            done: Default::default(),
        });
        for (name, expected) in &lazy.expected {
            let source = Source::Lazy(Arc::clone(&lazy), name.clone());
            blobs.insert(
                name.clone(),
                Blob::new(media_type, expected.digest.clone(), expected.size, source),
            );
        }
        Ok(blobs)
    }
}

impl Shared {
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

/// The digest and size of a layer without compressing it, from the cache (or, uncompressed,
/// from the diff_id and the tar entry's size).
fn known(shared: &Shared, diff_id: &str, size: u64) -> Option<cache::Entry> {
    match shared.compression {
        Compression::None => Some(cache::Entry {
            digest: diff_id.to_string(),
            size,
        }),
        _ => shared.cache.get(diff_id, size),
    }
}

/// One pass compressing the named entries.
fn compress_entries(
    input: &Input,
    shared: &Shared,
    wanted: &HashSet<String>,
) -> Result<HashMap<String, Spooled>> {
    let mut compressing = HashMap::new();
    input.walk(&mut |name, _, data| {
        if wanted.contains(name) && !compressing.contains_key(name) {
            compressing.insert(name.to_string(), compress_entry(input, shared, name, data)?);
        }
        Ok(())
    })?;
    finish_all(input, compressing)
}

/// Builds the image's blobs and manifest (serialized once).
fn assemble(
    platform: Platform,
    spec: &Spec,
    blobs: &HashMap<String, Blob>,
) -> Result<PlatformImage> {
    let config_bytes = docker::config_for(&spec.config, &platform)?;
    let config = Blob::new(
        CONFIG_MEDIA_TYPE,
        oci::digest(&config_bytes),
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
    let manifest = oci::manifest(descriptor(&config), layers.iter().map(descriptor).collect())?;
    let manifest_digest = oci::digest(&manifest);
    Ok(PlatformImage {
        platform,
        config,
        layers,
        manifest,
        manifest_digest,
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

/// The layers of one archive whose compressed digest came from the cache: compressed all at
/// once, in one pass, the first time a sink needs one of them.
pub(crate) struct Lazy {
    input: Input,
    shared: Arc<Shared>,
    /// The archive's identity, if its index is cached: forgotten if the archive disagrees.
    identity: Option<String>,
    expected: HashMap<String, Expected>,
    done: tokio::sync::OnceCell<HashMap<String, Spooled>>,
}

impl Lazy {
    /// The compressed layer `name`, checked against the digest its manifest names.
    pub(crate) async fn get(self: &Arc<Self>, name: &str) -> Result<Spooled> {
        let result = self.compress(name).await;
        if let (Err(_), Some(id)) = (&result, &self.identity) {
            self.shared.cache.forget_archive(id);
        }
        result
    }

    async fn compress(self: &Arc<Self>, name: &str) -> Result<Spooled> {
        let me = Arc::clone(self);
        let done = self
            .done
            .get_or_try_init(|| async move {
                let wanted = me.expected.keys().cloned().collect();
                tokio::task::spawn_blocking(move || {
                    compress_entries(&me.input, &me.shared, &wanted)
                })
                .await?
            })
            .await?;
        let (Some(spooled), Some(expected)) = (done.get(name), self.expected.get(name)) else {
            crate::bail_input!(
                "the image {} changed while alba ran: its layer {name} is gone",
                self.input.path.display()
            );
        };
        check_diff_id(&self.input, name, &spooled.diff_id, &expected.diff_id)?;
        if spooled.digest != expected.digest || spooled.size != expected.size {
            // The manifest already names the cached digest: it cannot be fixed in this run.
            self.shared.remember(spooled);
            anyhow::bail!(
                "the layer {name} of the image {} compressed to {} ({} bytes), not to {} ({} bytes) as the \
                 layer cache said; the cache entry is corrected now: run alba again",
                self.input.path.display(),
                spooled.digest,
                spooled.size,
                expected.digest,
                expected.size
            );
        }
        Ok(spooled.clone())
    }

    /// True once the layers have been compressed.
    #[cfg(test)]
    pub(crate) fn is_done(&self) -> bool {
        self.done.initialized()
    }

    /// The archive these layers come from.
    pub(crate) fn path(&self) -> &Path {
        &self.input.path
    }
}
