//! Leases: how a push and a gc of the same target run side by side (containerd's model).
//!
//! A push first writes a *lease* (`.alba/leases/<id>.json`): the name, tags, digests and keys
//! it is about to reference, and when the lease expires. A background task rewrites it while
//! the push runs, so only a killed push's lease ever expires. The push deletes it once its tags
//! and lists are written. gc marks from every tag *and* every live lease.
//!
//! That alone leaves one race: a gc that read the leases just before a push wrote its own may
//! still delete an old blob the push found present and did not upload again. So gc, too,
//! announces itself first (`.alba/gc/<id>.json`, rewritten while it runs, with a short TTL) and
//! only then reads the leases; and a push, after its uploads and before it writes its index and
//! tags, waits until no gc is running ([`Lease::settle`]), then checks that everything it
//! references exists and uploads again what vanished. Every gc either started after the
//! push's lease was written (and sees it) or has ended before the push's check. A gc stops
//! deleting when it could not renew its own marker in time, so an expired marker never hides a
//! gc that still deletes. This holds on stores that list what was written before (Garage, S3,
//! folders) and for clocks within [`SWEEP_MARGIN`] of each other.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, bail};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::store::{ObjectStore, Put};
use crate::ui::Ui;

/// Where push leases live, relative to the target's root.
pub const LEASES: &str = ".alba/leases/";
/// Where running gcs announce themselves.
pub const SWEEPS: &str = ".alba/gc/";
/// How long a push lease lives without renewal (renewed every third of it while the push runs).
pub const LEASE_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a gc marker lives without renewal.
pub const SWEEP_TTL: Duration = Duration::from_secs(60);
/// A gc renews its marker this often.
const SWEEP_RENEW: Duration = Duration::from_secs(15);
/// A gc deletes nothing once its last renewal is older than `SWEEP_TTL - SWEEP_MARGIN`: a
/// push that sees the marker expired must be able to trust that no deletion follows.
pub const SWEEP_MARGIN: Duration = Duration::from_secs(20);
/// The longest a push waits for running gcs before giving up.
const SETTLE_LIMIT: Duration = Duration::from_secs(10 * 60);

/// The content of a lease or gc marker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct LeaseDoc {
    /// Unique id (also the file name).
    pub id: String,
    /// `push` or `gc`.
    pub kind: String,
    /// The release or repository name.
    pub name: String,
    /// When it was written, seconds since the epoch.
    pub created: u64,
    /// When it expires unless renewed, seconds since the epoch.
    pub expires: u64,
    /// Tags the push writes.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Digests (`sha256:…`) of blobs and manifests the push references.
    #[serde(default)]
    pub digests: Vec<String>,
    /// Object keys the push writes (static binaries, documents).
    #[serde(default)]
    pub keys: Vec<String>,
    /// Who holds it, for people reading the bucket: host and process id.
    #[serde(default)]
    pub holder: String,
}

impl LeaseDoc {
    /// True while it has not expired.
    pub fn is_live(&self, now: SystemTime) -> bool {
        self.expires > epoch_seconds(now)
    }
}

fn epoch_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh id: time, process and a random part (two runs on one machine never clash).
fn new_id(kind: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let random = crate::transport::jitter(u64::MAX);
    format!("{kind}-{nanos:x}-{}-{random:016x}", std::process::id())
}

fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!(
        "alba {} on {host} (pid {})",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    )
}

async fn write(
    store: &dyn ObjectStore,
    key: &str,
    doc: &mut LeaseDoc,
    ttl: Duration,
) -> Result<()> {
    let now = SystemTime::now();
    doc.expires = epoch_seconds(now + ttl);
    let bytes = Bytes::from(serde_json::to_vec(doc)?);
    store.put(&Put::bytes(key, bytes, "application/json")).await
}

/// The live documents under `prefix` (expired or unreadable ones are skipped: a killed run's).
pub async fn read_all(store: &dyn ObjectStore, prefix: &str) -> Result<Vec<LeaseDoc>> {
    let now = SystemTime::now();
    let mut docs = Vec::new();
    for key in store.list(prefix).await? {
        let Some(bytes) = store.get(&key).await? else {
            continue;
        };
        match serde_json::from_slice::<LeaseDoc>(&bytes) {
            Ok(doc) if doc.is_live(now) => docs.push(doc),
            Ok(_) => {}
            Err(e) => tracing::warn!("{key} is not a lease ({e}); ignored"),
        }
    }
    Ok(docs)
}

/// Deletes leases and gc markers that expired over an hour ago (killed runs'; the hour leaves
/// room for clocks that disagree). Only logged when it fails: nothing depends on it.
pub async fn remove_expired(store: &dyn ObjectStore, ui: &Ui) {
    let long_ago = SystemTime::now() - Duration::from_secs(3600);
    for prefix in [LEASES, SWEEPS] {
        let Ok(keys) = store.list(prefix).await else {
            continue;
        };
        for key in keys {
            let doc = match store.get(&key).await {
                Ok(Some(bytes)) => serde_json::from_slice::<LeaseDoc>(&bytes).ok(),
                _ => continue,
            };
            if doc.is_some_and(|d| !d.is_live(long_ago)) {
                match store.delete(&key).await {
                    Ok(()) => ui.detail(format!("removed {key}: expired (a killed run's)")),
                    Err(e) => ui.warn(format!("could not remove the expired {key}: {e:#}")),
                }
            }
        }
    }
}

/// A push's lease; renewed in the background until released.
pub struct Lease {
    store: Arc<dyn ObjectStore>,
    key: String,
    doc: LeaseDoc,
    renewal: tokio::task::JoinHandle<()>,
    released: bool,
}

impl Lease {
    /// Writes the lease of a push of `name` (before it checks or uploads anything).
    pub async fn take(
        store: Arc<dyn ObjectStore>,
        name: &str,
        tags: &[String],
        digests: Vec<String>,
        keys: Vec<String>,
    ) -> Result<Lease> {
        let id = new_id("push");
        let created = epoch_seconds(SystemTime::now());
        let mut doc = LeaseDoc {
            id: id.clone(),
            kind: "push".into(),
            name: name.to_string(),
            created,
            expires: 0,
            tags: tags.to_vec(),
            digests,
            keys,
            holder: holder(),
        };
        let key = format!("{LEASES}{id}.json");
        write(&*store, &key, &mut doc, LEASE_TTL).await?;
        let renewal = tokio::spawn(renew(store.clone(), key.clone(), doc.clone()));
        Ok(Lease {
            store,
            key,
            doc,
            renewal,
            released: false,
        })
    }

    /// Waits until no gc is running on the store (see the module docs), so that what the push
    /// checks next stays there. Bounded: a killed gc's marker expires within [`SWEEP_TTL`].
    pub async fn settle(&self, ui: &Ui) -> Result<()> {
        // Renewed here as well: should the background renewals have failed, the lease a gc
        // reads from now on is live again, or this push fails before it writes a tag.
        write(&*self.store, &self.key, &mut self.doc.clone(), LEASE_TTL).await?;
        let started = Instant::now();
        let mut said = false;
        loop {
            let running = read_all(&*self.store, SWEEPS).await?;
            if running.is_empty() {
                return Ok(());
            }
            if !said {
                ui.line(format!(
                    "a gc is running on {} ({}): waiting for it before writing tags",
                    self.store.describe(),
                    running[0].holder
                ));
                said = true;
            }
            if started.elapsed() > SETTLE_LIMIT {
                bail!(
                    "a gc has been running on {} for over {} min ({}): push again once it is done",
                    self.store.describe(),
                    SETTLE_LIMIT.as_secs() / 60,
                    running[0].id
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Deletes the lease (after the tags and lists are written).
    pub async fn release(mut self) -> Result<()> {
        self.released = true;
        self.renewal.abort();
        self.store.delete(&self.key).await
    }
}

impl Drop for Lease {
    /// A failed push releases its lease too (best effort, from a spawned task the run waits
    /// for before it exits); a killed one leaves it to expire.
    fn drop(&mut self) {
        self.renewal.abort();
        if self.released {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, key) = (self.store.clone(), self.key.clone());
            let task = runtime.spawn(async move {
                if let Err(e) = store.delete(&key).await {
                    tracing::warn!("could not delete the lease {key}: {e:#}");
                }
            });
            crate::store::s3::defer(task);
        }
    }
}

/// Rewrites a push lease every third of its TTL.
async fn renew(store: Arc<dyn ObjectStore>, key: String, mut doc: LeaseDoc) {
    loop {
        tokio::time::sleep(LEASE_TTL / 3).await;
        if let Err(e) = write(&*store, &key, &mut doc, LEASE_TTL).await {
            tracing::warn!("could not renew the lease {key}: {e:#}");
        }
    }
}

/// A running gc's marker: written before the gc reads any lease, renewed alongside the gc's
/// work every `SWEEP_RENEW` (15 s), removed when it ends.
pub struct Sweep {
    key: String,
    doc: LeaseDoc,
    /// When the last successful renewal was sent.
    renewed: std::sync::Mutex<Instant>,
}

impl Sweep {
    /// Runs `body` as a gc of `name`: with a marker on the store (none in a dry run), removed
    /// afterwards whatever the outcome. `body` calls [`Sweep::check`] before each deletion.
    pub async fn run<T>(
        store: &dyn ObjectStore,
        name: &str,
        dry_run: bool,
        ui: &Ui,
        body: impl AsyncFnOnce(Option<&Sweep>) -> Result<T>,
    ) -> Result<T> {
        if dry_run {
            return body(None).await;
        }
        let sweep = Sweep::start(store, name).await?;
        let result = {
            let work = std::pin::pin!(body(Some(&sweep)));
            let renewal = std::pin::pin!(sweep.renew(store));
            match futures::future::select(work, renewal).await {
                futures::future::Either::Left((result, _)) => result,
                futures::future::Either::Right((never, _)) => match never {},
            }
        };
        if let Err(e) = store.delete(&sweep.key).await {
            ui.warn(format!("could not remove gc's marker {}: {e:#}", sweep.key));
        }
        result
    }

    async fn start(store: &dyn ObjectStore, name: &str) -> Result<Sweep> {
        let id = new_id("gc");
        let mut doc = LeaseDoc {
            id: id.clone(),
            kind: "gc".into(),
            name: name.to_string(),
            created: epoch_seconds(SystemTime::now()),
            holder: holder(),
            ..LeaseDoc::default()
        };
        let key = format!("{SWEEPS}{id}.json");
        let renewed = Instant::now();
        write(store, &key, &mut doc, SWEEP_TTL).await?;
        Ok(Sweep {
            key,
            doc,
            renewed: std::sync::Mutex::new(renewed),
        })
    }

    /// Rewrites the marker every [`SWEEP_RENEW`], for as long as the gc runs.
    async fn renew(&self, store: &dyn ObjectStore) -> std::convert::Infallible {
        let mut doc = self.doc.clone();
        loop {
            tokio::time::sleep(SWEEP_RENEW).await;
            let attempt = Instant::now();
            match write(store, &self.key, &mut doc, SWEEP_TTL).await {
                Ok(()) => *self.renewed.lock().unwrap_or_else(|e| e.into_inner()) = attempt,
                Err(e) => tracing::warn!("could not renew gc's marker {}: {e:#}", self.key),
            }
        }
    }

    /// How long deletions may still run before the marker may have expired.
    pub fn time_left(&self) -> Duration {
        let renewed = *self.renewed.lock().unwrap_or_else(|e| e.into_inner());
        (SWEEP_TTL - SWEEP_MARGIN).saturating_sub(renewed.elapsed())
    }

    /// Called before each deletion: refuses to go on once the marker may have expired (a push
    /// may then be trusting that no gc runs).
    pub fn check(&self) -> Result<()> {
        let renewed = *self.renewed.lock().unwrap_or_else(|e| e.into_inner());
        if renewed.elapsed() > SWEEP_TTL - SWEEP_MARGIN {
            bail!(
                "gc could not renew its marker {} in time; stopped deleting (run gc again)",
                self.key
            );
        }
        Ok(())
    }
}

/// What live leases protect, and which lease protects it.
#[derive(Debug, Default, Clone)]
pub struct Protected {
    /// Digest or key → the lease holding it.
    pub by: std::collections::BTreeMap<String, String>,
    /// `(name, tag)` → the lease of the push writing it.
    pub tags: std::collections::BTreeMap<(String, String), String>,
}

impl Protected {
    /// Reads every live push lease of the store.
    pub async fn read(store: &dyn ObjectStore) -> Result<Protected> {
        let mut protected = Protected::default();
        for doc in read_all(store, LEASES).await? {
            for item in doc.digests.iter().chain(&doc.keys) {
                protected.by.insert(item.clone(), doc.id.clone());
            }
            for tag in &doc.tags {
                let name = (doc.name.clone(), tag.clone());
                protected.tags.insert(name, doc.id.clone());
            }
        }
        Ok(protected)
    }

    /// Adds what `other` protects.
    pub fn extend(&mut self, other: Protected) {
        self.by.extend(other.by);
        self.tags.extend(other.tags);
    }

    /// The lease protecting a digest or key, if any.
    pub fn holder(&self, item: &str) -> Option<&str> {
        self.by.get(item).map(String::as_str)
    }

    /// The lease of a push writing `name:tag`, if any.
    pub fn tag_holder(&self, name: &str, tag: &str) -> Option<&str> {
        self.tags
            .get(&(name.to_string(), tag.to_string()))
            .map(String::as_str)
    }
}

/// True when an object last written at `modified` is younger than `grace` (an object of
/// unknown age counts as old: the store would not say).
pub fn within_grace(modified: Option<SystemTime>, grace: Duration) -> bool {
    !grace.is_zero()
        && modified.is_some_and(|m| {
            SystemTime::now()
                .duration_since(m)
                .map_or(true, |age| age < grace)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fs::FolderStore;

    #[tokio::test]
    async fn leases_and_sweeps_round_trip_on_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(FolderStore::new(dir.path()).unwrap());
        let tags = vec!["1.0".to_string()];
        let lease = Lease::take(
            store.clone(),
            "a",
            &tags,
            vec!["sha256:aa".into()],
            vec!["df-dist-v1/a/1.0".into()],
        )
        .await
        .unwrap();
        let protected = Protected::read(&*store).await.unwrap();
        assert!(protected.holder("sha256:aa").is_some());
        assert!(protected.holder("df-dist-v1/a/1.0").is_some());
        assert!(protected.tag_holder("a", "1.0").is_some());
        assert!(protected.tag_holder("a", "2.0").is_none());
        // Layouts never list alba's own folder.
        assert!(store.list("").await.unwrap().is_empty());
        lease.settle(&Ui::silent()).await.unwrap();
        let ui = Ui::silent();
        let running = Sweep::run(&*store, "a", false, &ui, async |sweep| {
            sweep.expect("a marker").check()?;
            read_all(&*store, SWEEPS).await.map(|docs| docs.len())
        });
        assert_eq!(running.await.unwrap(), 1);
        assert!(read_all(&*store, SWEEPS).await.unwrap().is_empty());
        lease.release().await.unwrap();
        assert!(Protected::read(&*store).await.unwrap().by.is_empty());
    }

    #[tokio::test]
    async fn gc_removes_leases_that_expired_long_ago() {
        let dir = tempfile::tempdir().unwrap();
        let store = FolderStore::new(dir.path()).unwrap();
        let put = |key: &str, expires: u64| {
            let doc = LeaseDoc {
                expires,
                ..LeaseDoc::default()
            };
            let bytes = Bytes::from(serde_json::to_vec(&doc).unwrap());
            Put::bytes(key, bytes, "application/json")
        };
        let soon = epoch_seconds(SystemTime::now()) + 600;
        store.put(&put(".alba/leases/old.json", 10)).await.unwrap();
        store.put(&put(".alba/gc/old.json", 10)).await.unwrap();
        store
            .put(&put(".alba/leases/live.json", soon))
            .await
            .unwrap();
        remove_expired(&store, &Ui::silent()).await;
        assert_eq!(
            store.list(".alba/").await.unwrap(),
            [".alba/leases/live.json"]
        );
    }

    #[test]
    fn expired_leases_are_dead_and_grace_is_by_age() {
        let doc = LeaseDoc {
            expires: 10,
            ..LeaseDoc::default()
        };
        assert!(!doc.is_live(SystemTime::now()));
        let hour = Duration::from_secs(3600);
        assert!(within_grace(Some(SystemTime::now()), hour));
        assert!(!within_grace(Some(SystemTime::now() - 2 * hour), hour));
        assert!(!within_grace(None, hour));
        assert!(!within_grace(Some(SystemTime::now()), Duration::ZERO));
    }
}
