//! What to do with each layer of an input once its spec is known ([`Plan`]): take it from an
//! earlier pass or another image, trust the cache or a target (a lazy blob), wait for the
//! image compressing it, or compress it in one more pass over the archive ([`Pass`]).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::lazy::Lazy;
use super::scan::{compress_entry, finish_one};
use super::{Shared, check_complete, check_diff_id, known_and_kept};
use crate::image::docker::Spec;
use crate::image::flight::{Claim, Flight, Owner};
use crate::image::input::Input;
use crate::image::layer::{Compressing, Spooled};
use crate::image::{Blob, Source};

/// The digest and size a lazy layer will have.
#[derive(Debug, Clone)]
pub(crate) struct Expected {
    pub(super) diff_id: String,
    pub(super) digest: String,
    pub(super) size: u64,
}

/// For each distinct layer entry: done, known (lazy), to compress, or compressed by another
/// image of this load (waiting).
pub(super) struct Plan {
    ready: HashMap<String, Spooled>,
    lazy: HashMap<String, Expected>,
    todo: HashMap<String, String>,
    /// The flights claimed for `todo`, by entry name.
    owners: HashMap<String, Owner>,
    /// entry name → (diff_id, the flight of the image compressing it).
    waiting: HashMap<String, (String, Arc<Flight>)>,
}

impl Plan {
    pub(super) fn new(
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
    pub(super) fn complete(
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

/// One pass compressing the entries of `todo` (entry name → expected diff_id); `owners` are
/// the flights claimed for them. Each layer, as soon as it is compressed, finishes its flight
/// and, if it has its diff_id, goes to the gate for upload while the pass goes on.
pub(super) fn compress_entries(
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
            let owner = self.owners.remove(&name);
            let done = finish_one(self.input, self.shared, &name, layer, owner)?;
            if self.todo.get(&name) == Some(&done.diff_id) {
                self.shared.gate.ready(self.shared.blob(&done));
            }
            self.done.insert(name, done);
        }
        Ok(())
    }
}
