//! Reads many small objects at once: `ls`, `gc` and `verify` read one document per tag, and
//! against a store across a network each read waits a round trip, so reading them one at a
//! time costs the latency once per tag.
//!
//! Reads are bounded by the run's `--jobs`, scaled: `--jobs` bounds uploads, which share the
//! bandwidth, while a read of a document is a few hundred bytes that wait on latency, so
//! [`READS_PER_JOB`] of them run per upload slot (32 with the default `--jobs 8`).

use std::future::Future;

use anyhow::Result;
use bytes::Bytes;
use futures::StreamExt;

use super::ObjectStore;

/// Reads of small documents run at once per `--jobs` slot.
pub const READS_PER_JOB: usize = 4;

/// Reads at once, with the default `--jobs` (8): what a planner uses unless told otherwise.
pub const DEFAULT_READS: usize = 8 * READS_PER_JOB;

/// Reads at once for a run with `--jobs jobs`.
pub fn reads(jobs: usize) -> usize {
    jobs.max(1) * READS_PER_JOB
}

/// Runs `read` on every item, up to `at_once` at a time; the results come in the order of
/// `items`, so output and plans do not depend on which answer came first.
pub async fn in_order<T, R, F, Fut>(
    items: impl IntoIterator<Item = T>,
    at_once: usize,
    read: F,
) -> Vec<R>
where
    F: FnMut(T) -> Fut,
    Fut: Future<Output = R>,
{
    futures::stream::iter(items)
        .map(read)
        .buffered(at_once.max(1))
        .collect()
        .await
}

/// The content of each key (`None` where it does not exist), in the order of `keys`.
pub async fn get_all(
    store: &dyn ObjectStore,
    keys: &[String],
    at_once: usize,
) -> Vec<Result<Option<Bytes>>> {
    // Not through `in_order`: a closure over `&String` there is not general enough for the
    // `Send` futures of `async_trait` planners.
    let reads: Vec<_> = keys.iter().map(|key| store.get(key)).collect();
    futures::stream::iter(reads)
        .buffered(at_once.max(1))
        .collect()
        .await
}
