//! The first pass over an input: keeps the small JSON entries (manifest, config) in memory,
//! learns every entry's size, and compresses, as they stream by, the layers it can tell are
//! not cached (see the parent module). Also the helpers every pass shares: starting to
//! compress one entry, counting its bytes on the progress bar, collecting finished layers.

use std::collections::HashMap;
use std::io::Read;

use anyhow::{Context, Result};
use bytes::Bytes;

use super::{SMALL_LIMIT, Shared, Sizes, known};
use crate::image::docker::{self, MANIFEST, Spec};
use crate::image::flight::{Claim, Owner};
use crate::image::input::Input;
use crate::image::layer::{self, Compressing, Compression, PumpError, Spooled};
use crate::platform::Platform;

/// The first pass: learns manifest and config, compresses the layers it can identify.
pub(super) fn scan(
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
        sniffed,
        ..
    } = scan;
    for (name, diff_id) in spec.manifest.layers.iter().zip(&spec.diff_ids) {
        if let Some(paths) = sniffed.get(name) {
            shared.store_paths.note(diff_id, paths);
        }
    }
    Ok((spec, sizes, finish_all(input, shared, compressing, owners)?))
}

/// The state of a first pass.
pub(super) struct Scan<'a> {
    input: &'a Input,
    shared: &'a Shared,
    platform: &'a Platform,
    small: HashMap<String, Bytes>,
    pub(super) sizes: HashMap<String, u64>,
    pub(super) spec: Option<Spec>,
    /// entry name → diff_id, once the spec is known.
    layers: HashMap<String, String>,
    compressing: HashMap<String, Compressing>,
    /// The flights this pass claimed, by entry name.
    owners: HashMap<String, Owner>,
    /// False for a pass that only learns the spec and the entry sizes.
    compress: bool,
    /// The store paths of the layer entries read without compressing them, by name.
    sniffed: HashMap<String, Vec<String>>,
}

impl<'a> Scan<'a> {
    pub(super) fn new(
        input: &'a Input,
        shared: &'a Shared,
        platform: &'a Platform,
        compress: bool,
    ) -> Self {
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
            sniffed: HashMap::new(),
        }
    }

    pub(super) fn visit(&mut self, name: &str, size: u64, data: &mut dyn Read) -> Result<()> {
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
                    Claim::Theirs(_) => return self.sniff(name, data),
                }
            }
            Some(_) => return self.sniff(name, data),
            None if self.spec.is_none() && self.surely_uncached(name, size) => None,
            None => return self.sniff(name, data),
        };
        let compressing = compress_entry(self.input, self.shared, name, (size, false), data)?;
        self.compressing.insert(name.to_string(), compressing);
        if let Some(owner) = owner {
            self.owners.insert(name.to_string(), owner);
        }
        Ok(())
    }

    /// A layer this pass does not compress still streams by (the input is compressed or a
    /// script): its store paths are read from it now rather than in another pass.
    fn sniff(&mut self, name: &str, data: &mut dyn Read) -> Result<()> {
        let paths = super::paths::sniff(self.input, name, data)?;
        self.sniffed.insert(name.to_string(), paths);
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
    pub(super) fn finish_spec(&mut self) -> Result<Spec> {
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
        .filter(|hex| crate::digest::is_sha256_hex(hex))?;
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
pub(super) fn compress_entry(
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
        let done = finish_one(input, shared, &name, layer, owners.remove(&name))?;
        spooled.insert(name, done);
    }
    Ok(spooled)
}

/// Waits for one layer to finish compressing, hands it to the image that claimed its
/// flight (`owner`), and offers it to any image read later.
pub(super) fn finish_one(
    input: &Input,
    shared: &Shared,
    name: &str,
    layer: Compressing,
    owner: Option<Owner>,
) -> Result<Spooled> {
    let done = layer.wait().map_err(|e| compress_failed(input, name, e))?;
    tracing::debug!(
        "compressed {name} of {}: {} → {}",
        input.path.display(),
        done.diff_id,
        done.digest
    );
    shared.store_paths.note(&done.diff_id, &done.store_paths);
    if let Some(owner) = owner {
        owner.finish(&done);
    }
    shared.flights.offer(&done);
    Ok(done)
}
