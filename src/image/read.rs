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
//! (that is the point of the cache), nor is a layer another image of the load compressed; every layer actually compressed is checked against its
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
use super::flight::{Claim, Flight, Flights, Owner};
use super::gate::Gate;
use super::input::{Format, Input};
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
    let image = assemble(platform, &spec, &blobs, &shared.annotations)?;
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
    let mut scan = Scan::new(input, shared, platform, true);
    input.walk(&mut |name, size, data| scan.visit(name, size, data))?;
    let spec = match scan.spec.take() {
        Some(spec) => spec,
        None => scan.finish_spec()?,
    };
    let Scan {
        sizes,
        compressing,
        owners,
        ..
    } = scan;
    Ok((spec, sizes, finish_all(input, shared, compressing, owners)?))
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
    /// The flights this pass claimed, by entry name.
    owners: HashMap<String, Owner>,
    /// False for a pass that only learns the spec and the entry sizes.
    compress: bool,
}

impl<'a> Scan<'a> {
    fn new(input: &'a Input, shared: &'a Shared, platform: &'a Platform, compress: bool) -> Self {
        Scan {
            input,
            shared,
            platform,
            small: HashMap::new(),
            sizes: HashMap::new(),
            spec: None,
            layers: HashMap::new(),
            compressing: HashMap::new(),
            owners: HashMap::new(),
            compress,
        }
    }

    fn visit(&mut self, name: &str, size: u64, data: &mut dyn Read) -> Result<()> {
        self.sizes.insert(name.to_string(), size);
        if self.is_small(name, size) {
            let bytes = read_small(self.input, name, size, data)?;
            self.small.insert(name.to_string(), bytes);
            return self.try_spec();
        }
        if !self.compress || self.compressing.contains_key(name) {
            return Ok(());
        }
        let diff_id = match self.spec {
            Some(_) => self.layers.get(name).cloned(),
            None => named_diff_id(name),
        };
        let owner = match diff_id {
            Some(diff_id) if known(self.shared, &diff_id, size).is_none() => {
                match self.shared.flights.claim(&diff_id) {
                    Claim::Mine(owner) => Some(owner),
                    // Another image compresses it: this one takes its result later.
                    Claim::Theirs(_) => return Ok(()),
                }
            }
            Some(_) => return Ok(()),
            None if self.spec.is_none() && self.surely_uncached(name, size) => None,
            None => return Ok(()),
        };
        let compressing = compress_entry(self.input, self.shared, name, (size, false), data)?;
        self.compressing.insert(name.to_string(), compressing);
        if let Some(owner) = owner {
            self.owners.insert(name.to_string(), owner);
        }
        Ok(())
    }

    /// Before manifest and config are known (nixpkgs writes them last), a layer-like entry
    /// whose name tells no diff_id and whose size no cached layer has cannot be in the cache:
    /// compressing it right away saves a second pass over the archive (a second
    /// decompression, or a second run of the script). Layers learned from a target have no
    /// known size, so with any of them such an entry waits for the spec instead.
    fn surely_uncached(&self, name: &str, size: u64) -> bool {
        let layer_like = name.ends_with(".tar") || name.starts_with("blobs/");
        layer_like
            && self.shared.compression != Compression::None
            && self.shared.learned.is_empty()
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
        self.shared.gate.validated();
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

/// The diff_id a layer entry's name tells, as nixpkgs (`<diff hex>/layer.tar`) and docker's
/// OCI-style archives (`blobs/sha256/<hex>`) name layers. Only a guess, to claim the layer
/// before the config is read: the compressed layer is checked against the config anyway.
fn named_diff_id(name: &str) -> Option<String> {
    let hex = name
        .strip_suffix("/layer.tar")
        .or_else(|| name.strip_prefix("blobs/sha256/"))
        .filter(|hex| cache::is_sha256_hex(hex))?;
    Some(format!("sha256:{hex}"))
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

/// Starts compressing one layer entry of `size` bytes; `planned` when the progress bar counts
/// its bytes already (see [`Shared::plan`]).
fn compress_entry(
    input: &Input,
    shared: &Shared,
    name: &str,
    (size, planned): (u64, bool),
    data: &mut dyn Read,
) -> Result<Compressing> {
    if !planned {
        shared.plan(size);
    }
    let mut data = Counted {
        inner: data,
        progress: shared.progress.as_ref(),
    };
    layer::compress(
        &mut data,
        shared.compression,
        &shared.pool,
        &shared.spool_dir,
    )
    .map_err(|e| match e {
        PumpError::Read(e) => input.corrupt(format!("{name}: {e}")),
        PumpError::Write(e) => compress_failed(input, name, e),
    })
}

/// A layer's bytes on their way to the compressor, counted on the progress bar.
struct Counted<'a> {
    inner: &'a mut dyn Read,
    progress: Option<&'a indicatif::ProgressBar>,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(bar) = self.progress {
            bar.inc(n as u64);
        }
        Ok(n)
    }
}

fn compress_failed(input: &Input, name: &str, error: anyhow::Error) -> anyhow::Error {
    error.context(format!(
        "cannot compress the layer {name} of the image {}",
        input.path.display()
    ))
}

/// Waits for the layers of a pass to finish compressing, and hands each to the images waiting
/// for it (the claimed flights in `owners`, and any image read later).
fn finish_all(
    input: &Input,
    shared: &Shared,
    compressing: HashMap<String, Compressing>,
    mut owners: HashMap<String, Owner>,
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
        if let Some(owner) = owners.remove(&name) {
            owner.finish(&done);
        }
        shared.flights.offer(&done);
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

/// The digest and size a lazy layer will have.
#[derive(Debug, Clone)]
pub(crate) struct Expected {
    diff_id: String,
    digest: String,
    size: u64,
}

/// For each distinct layer entry: done, known (lazy), to compress, or compressed by another
/// image of this load (waiting).
struct Plan {
    ready: HashMap<String, Spooled>,
    lazy: HashMap<String, Expected>,
    todo: HashMap<String, String>,
    /// The flights claimed for `todo`, by entry name.
    owners: HashMap<String, Owner>,
    /// entry name → (diff_id, the flight of the image compressing it).
    waiting: HashMap<String, (String, Arc<Flight>)>,
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
            owners: HashMap::new(),
            waiting: HashMap::new(),
        };
        check_complete(input, spec, sizes)?;
        for (name, diff_id) in spec.manifest.layers.iter().zip(&spec.diff_ids) {
            let Some(&size) = sizes.get(name) else {
                continue;
            };
            if let Some(done) = plan.ready.get(name).or(spooled.get(name)) {
                check_diff_id(input, name, &done.diff_id, diff_id)?;
                if let Some(done) = spooled.remove(name) {
                    shared.remember(&done);
                    shared.gate.ready(shared.blob(&done));
                    plan.ready.insert(name.clone(), done);
                }
            } else if let Some(expected) = plan.lazy.get(name) {
                check_diff_id(input, name, &expected.diff_id, diff_id)?;
            } else if let Some((expected, _)) = plan.waiting.get(name) {
                check_diff_id(input, name, expected, diff_id)?;
            } else if let Some(todo) = plan.todo.get(name) {
                check_diff_id(input, name, todo, diff_id)?;
            } else {
                plan.place(shared, name, diff_id, size);
            }
        }
        Ok(plan)
    }

    /// Decides for a layer entry seen first: compressed by another image already, known from
    /// the cache or a target (lazy), compressed by another image right now, or to compress.
    fn place(&mut self, shared: &Shared, name: &str, diff_id: &str, size: u64) {
        if let Some(done) = shared.flights.done(diff_id) {
            self.ready.insert(name.to_string(), done);
        } else if let Some(entry) = known_and_kept(shared, diff_id, size) {
            let expected = Expected {
                diff_id: diff_id.to_string(),
                digest: entry.digest,
                size: entry.size,
            };
            self.lazy.insert(name.to_string(), expected);
        } else {
            match shared.flights.claim(diff_id) {
                Claim::Mine(owner) => {
                    self.todo.insert(name.to_string(), diff_id.to_string());
                    self.owners.insert(name.to_string(), owner);
                    // Counted now: the bar's total grows before the pass that reads it.
                    shared.plan(size);
                }
                Claim::Theirs(flight) => {
                    self.waiting
                        .insert(name.to_string(), (diff_id.to_string(), flight));
                }
            }
        }
    }

    /// Compresses what is left to do in a second pass, then takes what other images
    /// compressed; returns the blob of each layer entry.
    fn complete(
        mut self,
        input: &Input,
        shared: &Arc<Shared>,
        identity: Option<String>,
        compressed: &mut usize,
    ) -> Result<HashMap<String, Blob>> {
        let todo = std::mem::take(&mut self.todo);
        let owners = std::mem::take(&mut self.owners);
        self.compress(input, shared, todo, (owners, true), compressed)?;
        // Only now, with every flight of this image finished, wait for the others'.
        let mut again = HashMap::new();
        for (name, (diff_id, flight)) in std::mem::take(&mut self.waiting) {
            match flight.wait() {
                Some(done) if done.diff_id == diff_id => {
                    self.ready.insert(name, done);
                }
                // Its image failed: compress it here after all.
                _ => {
                    again.insert(name, diff_id);
                }
            }
        }
        self.compress(input, shared, again, (HashMap::new(), false), compressed)?;
        Ok(self.blobs(input, shared, identity))
    }

    /// One more pass over the archive, compressing the `todo` entries (nothing if none).
    fn compress(
        &mut self,
        input: &Input,
        shared: &Shared,
        todo: HashMap<String, String>,
        (owners, planned): (HashMap<String, Owner>, bool),
        compressed: &mut usize,
    ) -> Result<()> {
        if todo.is_empty() {
            return Ok(());
        }
        let spooled = compress_entries(input, shared, &todo, owners, planned)?;
        for (name, diff_id) in &todo {
            let done = spooled
                .get(name)
                .with_context(|| format!("{name} disappeared from {}", input.path.display()))?;
            check_diff_id(input, name, &done.diff_id, diff_id)?;
            shared.remember(done);
        }
        *compressed += spooled.len();
        self.ready.extend(spooled);
        Ok(())
    }

    /// The blobs: spooled layers, and lazy ones sharing one [`Lazy`].
    fn blobs(
        self,
        input: &Input,
        shared: &Arc<Shared>,
        identity: Option<String>,
    ) -> HashMap<String, Blob> {
        let media_type = shared.compression.layer_media_type();
        let mut blobs: HashMap<String, Blob> = self
            .ready
            .into_iter()
            .map(|(name, s)| (name, shared.blob(&s)))
            .collect();
        if self.lazy.is_empty() {
            return blobs;
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
        blobs
    }
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

/// One pass compressing the entries of `todo` (entry name → expected diff_id); `owners` are
/// the flights claimed for them. Each layer, as soon as it is compressed, finishes its flight
/// and, if it has its diff_id, goes to the gate for upload while the pass goes on.
fn compress_entries(
    input: &Input,
    shared: &Shared,
    todo: &HashMap<String, String>,
    owners: HashMap<String, Owner>,
    planned: bool,
) -> Result<HashMap<String, Spooled>> {
    let mut pass = Pass {
        input,
        shared,
        todo,
        owners,
        compressing: HashMap::new(),
        done: HashMap::new(),
    };
    input.walk(&mut |name, size, data| {
        let seen = pass.compressing.contains_key(name) || pass.done.contains_key(name);
        if todo.contains_key(name) && !seen {
            let layer = compress_entry(input, shared, name, (size, planned), data)?;
            pass.compressing.insert(name.to_string(), layer);
        }
        pass.harvest(false)
    })?;
    pass.harvest(true)?;
    Ok(pass.done)
}

/// The state of a compressing pass.
struct Pass<'a> {
    input: &'a Input,
    shared: &'a Shared,
    todo: &'a HashMap<String, String>,
    owners: HashMap<String, Owner>,
    compressing: HashMap<String, Compressing>,
    done: HashMap<String, Spooled>,
}

impl Pass<'_> {
    /// Takes the layers that finished compressing (all of them, waiting, if `all`).
    fn harvest(&mut self, all: bool) -> Result<()> {
        let finished: Vec<String> = self
            .compressing
            .iter()
            .filter(|(_, layer)| all || layer.is_finished())
            .map(|(name, _)| name.clone())
            .collect();
        for name in finished {
            let Some(layer) = self.compressing.remove(&name) else {
                continue;
            };
            let input = self.input;
            let done = layer.wait().map_err(|e| compress_failed(input, &name, e))?;
            tracing::debug!(
                "compressed {name} of {}: {} → {}",
                input.path.display(),
                done.diff_id,
                done.digest
            );
            if let Some(owner) = self.owners.remove(&name) {
                owner.finish(&done);
            }
            self.shared.flights.offer(&done);
            if self.todo.get(&name) == Some(&done.diff_id) {
                self.shared.gate.ready(self.shared.blob(&done));
            }
            self.done.insert(name, done);
        }
        Ok(())
    }
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
    let manifest = oci::manifest(
        descriptor(&config),
        layers.iter().map(descriptor).collect(),
        annotations,
    )?;
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
                tokio::task::spawn_blocking(move || me.compress_all()).await?
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

    /// Compresses this archive's lazy layers in one pass, but for those another image of the
    /// load compresses (or compressed): their result is taken instead.
    fn compress_all(&self) -> Result<HashMap<String, Spooled>> {
        let flights = &self.shared.flights;
        let (mut owners, mut waiting) = (HashMap::new(), Vec::new());
        for (name, expected) in &self.expected {
            match flights.claim(&expected.diff_id) {
                Claim::Mine(owner) => {
                    owners.insert(name.clone(), owner);
                }
                Claim::Theirs(flight) => waiting.push((name.clone(), flight)),
            }
        }
        let mut done = match owners.is_empty() {
            true => HashMap::new(),
            false => {
                let todo = self.todo(owners.keys());
                compress_entries(&self.input, &self.shared, &todo, owners, false)?
            }
        };
        // Only now, with this archive's flights finished, wait for the others'.
        let mut again = Vec::new();
        for (name, flight) in waiting {
            match flight.wait() {
                Some(spooled) => {
                    done.insert(name, spooled);
                }
                None => again.push(name),
            }
        }
        if !again.is_empty() {
            let todo = self.todo(again.iter());
            done.extend(compress_entries(
                &self.input,
                &self.shared,
                &todo,
                HashMap::new(),
                false,
            )?);
        }
        Ok(done)
    }

    /// Entry name → expected diff_id of the named lazy layers.
    fn todo<'n>(&self, names: impl Iterator<Item = &'n String>) -> HashMap<String, String> {
        names
            .filter_map(|n| Some((n.clone(), self.expected.get(n)?.diff_id.clone())))
            .collect()
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
