//! Layers known from the cache or a target, compressed from their archive only when a sink
//! first asks for the bytes of one of them (all of the archive's in one pass), and checked
//! then against the digest the manifest already names.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;

use super::Shared;
use super::check_diff_id;
use super::plan::{Expected, compress_entries};
use crate::image::flight::Claim;
use crate::image::input::Input;
use crate::image::layer::Spooled;

/// The layers of one archive whose compressed digest came from the cache: compressed all at
/// once, in one pass, the first time a sink needs one of them.
pub(crate) struct Lazy {
    pub(super) input: Input,
    pub(super) shared: Arc<Shared>,
    /// The archive's identity, if its index is cached: forgotten if the archive disagrees.
    pub(super) identity: Option<String>,
    pub(super) expected: HashMap<String, Expected>,
    pub(super) done: tokio::sync::OnceCell<HashMap<String, Spooled>>,
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
