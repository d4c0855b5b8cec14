//! The store paths of an image's layers ([`LayerPaths`]): noted as each layer is compressed,
//! recalled from the cache for layers this run does not compress, and for the rest read from
//! the archive in one pass that only looks at those layers' tar headers.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Result;

use super::Shared;
use crate::image::docker::Spec;
use crate::image::input::Input;
use crate::image::store_paths::{PathsCache, StorePaths, store_path_of};

/// The store paths of every layer seen in a load, by diff_id, backed by the cache.
#[derive(Debug, Default)]
pub(crate) struct LayerPaths {
    seen: Mutex<HashMap<String, Vec<String>>>,
    cache: PathsCache,
}

impl LayerPaths {
    /// Store paths remembered in memory and under the cache folder `root`, if any.
    pub(crate) fn new(root: Option<&Path>) -> LayerPaths {
        LayerPaths {
            seen: Mutex::default(),
            cache: PathsCache::new(root),
        }
    }

    /// Records the store paths of a layer read in this run.
    pub(crate) fn note(&self, diff_id: &str, paths: &[String]) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(diff_id.to_string(), paths.to_vec());
        }
        if self.cache.get(diff_id).as_deref() != Some(paths) {
            self.cache.put(diff_id, paths);
        }
    }

    fn get(&self, diff_id: &str) -> Option<Vec<String>> {
        let seen = self.seen.lock().ok()?.get(diff_id).cloned();
        seen.or_else(|| self.cache.get(diff_id))
    }
}

/// The store paths of all layers of an image, sorted. Layers neither read in this run nor
/// cached are read now, their tar headers only (nothing is compressed).
pub(super) fn of_image(input: &Input, shared: &Shared, spec: &Spec) -> Result<Vec<String>> {
    let mut all = BTreeSet::new();
    let mut missing: HashMap<&str, &str> = HashMap::new();
    for (name, diff_id) in spec.manifest.layers.iter().zip(&spec.diff_ids) {
        match shared.store_paths.get(diff_id) {
            Some(paths) => all.extend(paths),
            None => {
                missing.insert(name, diff_id);
            }
        }
    }
    if missing.is_empty() {
        return Ok(all.into_iter().collect());
    }
    let found = read_missing(input, &missing)?;
    for (name, diff_id) in missing {
        let paths = found.get(name).cloned().unwrap_or_default();
        shared.store_paths.note(diff_id, &paths);
        all.extend(paths);
    }
    Ok(all.into_iter().collect())
}

/// The store paths of the layer entries `missing` (name → diff_id), by name: an uncompressed
/// archive is seeked through (tar headers only), any other input is read once more.
fn read_missing(
    input: &Input,
    missing: &HashMap<&str, &str>,
) -> Result<HashMap<String, Vec<String>>> {
    let mut found: HashMap<String, BTreeSet<String>> = HashMap::new();
    let wanted: HashSet<&str> = missing.keys().copied().collect();
    let mut note = |layer: &str, inner: &str| {
        let paths = found.entry(layer.to_string()).or_default();
        paths.extend(store_path_of(inner));
    };
    match input.inner_names(&wanted, &mut note) {
        Some(result) => result?,
        None => input.walk(&mut |name, _, data| {
            if wanted.contains(name) {
                let paths = sniff(input, name, data)?;
                found.entry(name.to_string()).or_default().extend(paths);
            }
            Ok(())
        })?,
    }
    Ok(found
        .into_iter()
        .map(|(name, paths)| (name, paths.into_iter().collect()))
        .collect())
}

/// Reads a layer entry to its end, collecting the store paths of its tar headers.
pub(super) fn sniff(input: &Input, name: &str, data: &mut dyn Read) -> Result<Vec<String>> {
    let mut reader = StorePaths::default();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = data
            .read(&mut buffer)
            .map_err(|e| input.corrupt(format!("{name}: {e}")))?;
        if n == 0 {
            return Ok(reader.into_paths());
        }
        reader.feed(&buffer[..n]);
    }
}
