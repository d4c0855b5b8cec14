//! Uploads ahead of the plan: layers the targets lack go up as soon as each is compressed
//! (and every input validated), while the load compresses the others; the plan made
//! afterwards reports them as `new` without sending them again.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::Result;

use crate::image::Blob;
use crate::plan::Sink;

/// What each target received while the load compressed: the blobs it lacked, uploaded as
/// soon as each was compressed (and every input validated), and the first upload error.
pub type Early = (BTreeSet<String>, Option<anyhow::Error>);

/// Uploads the blobs `ready` yields to every reachable sink (`None`: unreachable), at most
/// `jobs` at once, each only where the sink lacks it: the plan made afterwards reports them
/// as `new` without sending them again.
pub async fn upload_ahead(
    sinks: Vec<Option<Arc<dyn Sink>>>,
    mut ready: tokio::sync::mpsc::UnboundedReceiver<Blob>,
    jobs: usize,
) -> Vec<Early> {
    let mut early: Vec<Early> = sinks.iter().map(|_| Default::default()).collect();
    let mut running = tokio::task::JoinSet::new();
    while let Some(blob) = ready.recv().await {
        for (n, sink) in sinks.iter().enumerate() {
            let Some(sink) = sink else { continue };
            while running.len() >= jobs.max(1) {
                if let Some(Ok(done)) = running.join_next().await {
                    record_early(&mut early, done);
                }
            }
            running.spawn(upload_one(n, Arc::clone(sink), blob.clone()));
        }
    }
    while let Some(done) = running.join_next().await {
        if let Ok(done) = done {
            record_early(&mut early, done);
        }
    }
    early
}

/// Uploads one blob to sink `n` unless it is there: true when it was uploaded.
async fn upload_one(n: usize, sink: Arc<dyn Sink>, blob: Blob) -> (usize, String, Result<bool>) {
    let step = crate::publish::oci::blob_step(&blob);
    let uploaded = async {
        if sink.exists(&step).await? {
            return Ok(false);
        }
        sink.write(&step).await?;
        Ok(true)
    };
    (n, blob.digest.clone(), uploaded.await)
}

fn record_early(early: &mut [Early], (n, digest, result): (usize, String, Result<bool>)) {
    match result {
        Ok(true) => {
            early[n].0.insert(digest);
        }
        Ok(false) => {}
        Err(e) => {
            early[n].1.get_or_insert(e);
        }
    }
}
