//! Layers handed out for upload while the load still compresses others ([`super::LoadOptions`]
//! `ready_layers`), but only once every input is known to be good: each archive's
//! `manifest.json`, config and architecture checked. Until then finished layers wait here; if
//! an input fails, nothing more leaves (what left before is unreferenced, for gc).

use std::sync::Mutex;

use tokio::sync::mpsc::UnboundedSender;

use super::Blob;

/// The gate of one load.
pub(crate) struct Gate {
    state: Mutex<State>,
}

struct State {
    /// Inputs not validated yet.
    waiting: usize,
    /// Where ready layers go; `None` without a receiver, after a failure, or after the load.
    sender: Option<UnboundedSender<Blob>>,
    queued: Vec<Blob>,
}

impl Gate {
    /// A gate for `inputs` inputs sending to `sender`.
    pub(crate) fn new(inputs: usize, sender: Option<UnboundedSender<Blob>>) -> Gate {
        Gate {
            state: Mutex::new(State {
                waiting: inputs,
                sender,
                queued: Vec::new(),
            }),
        }
    }

    /// One input's manifest, config and platform were checked (call once per input).
    pub(crate) fn validated(&self) {
        let mut state = self.lock();
        state.waiting = state.waiting.saturating_sub(1);
        if state.waiting == 0 {
            let queued = std::mem::take(&mut state.queued);
            for blob in queued {
                state.send(blob);
            }
        }
    }

    /// A compressed layer, checked against its diff_id, is ready for upload.
    pub(crate) fn ready(&self, blob: Blob) {
        let mut state = self.lock();
        if state.sender.is_none() {
            return;
        }
        match state.waiting {
            0 => state.send(blob),
            _ => state.queued.push(blob),
        }
    }

    /// An input failed, or the load is over: nothing more leaves, and the receiver sees the end.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.sender = None;
        state.queued.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state half-updated.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn send(&mut self, blob: Blob) {
        if let Some(sender) = &self.sender
            && sender.send(blob).is_err()
        {
            // The receiver is gone: stop queueing for it.
            self.sender = None;
        }
    }
}
