//! Layers compressed during one load, by diff_id: whichever image needs a layer first
//! compresses it, every other image (platform) sharing it waits for that result instead of
//! compressing it again.
//!
//! No wait can deadlock: an image only waits for a flight once all the passes over its own
//! archive are over and every flight it owns is finished (or dropped, which fails it), so the
//! owner of a flight never waits for the waiter.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::layer::Spooled;

/// The flights of one load.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, Arc<Flight>>>,
}

/// One layer being compressed (or compressed) in this run.
pub(crate) struct Flight {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Clone)]
enum State {
    Running,
    Done(Spooled),
    /// The owner gave up (its input failed) or produced another layer: claim it anew.
    Failed,
}

/// What claiming a diff_id gives.
pub(crate) enum Claim {
    /// Nobody compresses it yet: the caller must, and finish the [`Owner`].
    Mine(Owner),
    /// Someone does or did: [`Flight::wait`] for it.
    Theirs(Arc<Flight>),
}

/// The duty to compress a layer; dropping it unfinished fails the flight, so waiters go on.
pub(crate) struct Owner {
    diff_id: String,
    flight: Arc<Flight>,
    finished: bool,
}

impl Flights {
    /// Claims the layer `diff_id` for this caller unless another image already has it.
    pub(crate) fn claim(&self, diff_id: &str) -> Claim {
        let mut map = lock(&self.map);
        if let Some(flight) = map.get(diff_id)
            && !matches!(*lock(&flight.state), State::Failed)
        {
            return Claim::Theirs(Arc::clone(flight));
        }
        let flight = Arc::new(Flight {
            state: Mutex::new(State::Running),
            changed: Condvar::new(),
        });
        map.insert(diff_id.to_string(), Arc::clone(&flight));
        Claim::Mine(Owner {
            diff_id: diff_id.to_string(),
            flight,
            finished: false,
        })
    }

    /// The finished layer `diff_id`, if this run compressed it already (never waits).
    pub(crate) fn done(&self, diff_id: &str) -> Option<Spooled> {
        let flight = lock(&self.map).get(diff_id).cloned()?;
        match &*lock(&flight.state) {
            State::Done(spooled) => Some(spooled.clone()),
            _ => None,
        }
    }

    /// Records a layer compressed without a claim (its diff_id was not known before), so
    /// images read later need not compress it again.
    pub(crate) fn offer(&self, spooled: &Spooled) {
        if let Claim::Mine(owner) = self.claim(&spooled.diff_id) {
            owner.finish(spooled);
        }
    }
}

impl Owner {
    /// Hands the compressed layer to every waiter. A layer that turned out to have another
    /// diff_id than claimed (the claim was guessed from its entry name) fails the flight
    /// instead, and is offered under its real diff_id.
    pub(crate) fn finish(mut self, spooled: &Spooled) {
        self.finished = true;
        let matches = spooled.diff_id == self.diff_id;
        self.flight.set(if matches {
            State::Done(spooled.clone())
        } else {
            State::Failed
        });
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        if !self.finished {
            self.flight.set(State::Failed);
        }
    }
}

impl Flight {
    fn set(&self, state: State) {
        *lock(&self.state) = state;
        self.changed.notify_all();
    }

    /// Waits for the layer; `None` if its owner failed (the caller compresses it itself).
    pub(crate) fn wait(&self) -> Option<Spooled> {
        let mut state = lock(&self.state);
        loop {
            match &*state {
                State::Running => {
                    state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                State::Done(spooled) => return Some(spooled.clone()),
                State::Failed => return None,
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave a state half-updated.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
