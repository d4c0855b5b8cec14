//! Plans: what a publisher wants done on one target, and the sinks that carry it out.
//!
//! Publishers (df-dist, static registry, registry, rm, gc) only *read* the target and return a
//! [`Plan`]: ordered phases of steps, each step one object to write or delete, with its reason
//! and whether it exists already. The one executor ([`crate::execute`]) runs any plan on any
//! [`Sink`]: phases strictly in order, progress, the report, leases; `--dry-run` prints the
//! plan and runs nothing. The write order — blobs → manifests → index → tags → lists;
//! binaries → checksums → tag document → name document; deletes in reverse — is the order of
//! a plan's phases, so it is decided in one place per publisher and kept by one executor.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use bytes::Bytes;

use crate::image::Blob;
use crate::publish::derived::DerivedList;
use crate::report::Status;
use crate::store::{Body, ObjectStore};

/// Where a step's object lives on its sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// An object on a bucket or folder, by key.
    Key(String),
    /// An image blob (config or layer), by digest.
    Blob(String),
    /// An image manifest or index, by digest or tag.
    Manifest(String),
    /// The referrers index of a subject manifest (digest): the referrers tag schema's
    /// `sha256-<hex>` tag, and on a static registry also its `referrers/` file.
    Referrers(String),
}

/// The content of an object to write.
#[derive(Debug, Clone)]
pub enum Content {
    /// Small content held in memory (documents, manifests, lists).
    Bytes(Bytes),
    /// A file streamed from disk (binaries in /nix/store).
    File(PathBuf),
    /// An image blob, opened (compressed, spooled) only when it is written.
    Blob(Blob),
}

impl Content {
    /// The body to send, opening a blob only now.
    pub async fn open(&self) -> Result<Body> {
        Ok(match self {
            Content::Bytes(b) => Body::Bytes(b.clone()),
            Content::File(p) => Body::File(p.clone()),
            Content::Blob(blob) => blob.materialize().await?,
        })
    }
}

/// A derived list to bring up to date (a df-dist name document, an OCI `tags/list`): rebuilt
/// from what the store holds when the step runs, so a concurrent writer's update is kept.
#[derive(Debug, Clone)]
pub struct ListUpdate {
    /// The list.
    pub list: DerivedList,
    /// Tags to add (the tag this push writes, counted even where its object is not there yet).
    pub add: Vec<String>,
    /// Tags to drop (removed by this rm or gc).
    pub remove: BTreeSet<String>,
    /// Report the list even when it needs no write (pushes do; rm and gc report changes).
    pub report_unchanged: bool,
    /// The tags it would hold as planned (what a dry run shows).
    pub planned: Vec<String>,
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Writes the content (unless it exists already with the same content).
    Write {
        /// The bytes to send.
        content: Content,
        /// The `Content-Type` (media type) readers get.
        media_type: String,
        /// Hex sha256 of the content.
        sha256: String,
    },
    /// Deletes the object.
    Delete,
    /// Rebuilds a derived list from the store and writes it where it changed.
    List(ListUpdate),
}

/// One object to write or delete.
#[derive(Debug, Clone)]
pub struct Step {
    /// Where the object lives.
    pub address: Address,
    /// Its key in the report (a store key, or `blobs/…` / `manifests/…` on registries).
    pub key: String,
    /// What to do.
    pub action: Action,
    /// What it is, for the progress line (`layer sha256:…`, `document df-dist-v1/x`).
    pub label: String,
    /// What running the step is, as planned: `exists` steps are reported, never sent.
    pub status: Status,
    /// Size in bytes (0 where not known).
    pub size: u64,
    /// `sha256:<hex>` of the content, where known.
    pub digest: Option<String>,
    /// Why (deletes).
    pub reason: Option<String>,
    /// Written already by this run (a layer uploaded while the others compressed): reported
    /// as planned, not sent again.
    pub done: bool,
    /// What a failure of this step means.
    pub on_failure: OnFailure,
}

/// What a step's failure means for the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OnFailure {
    /// The run stops with the step's error.
    #[default]
    Stop,
    /// The run stops with this explanation, then the error.
    Explain(String),
    /// The run goes on: this warning (then the error) is shown, the step is not reported,
    /// and the planner is told ([`Planner::refused`]).
    Tolerate(String),
}

impl Step {
    /// A step doing `action` on `address`, planned as `new` until told otherwise.
    fn new(address: Address, key: impl Into<String>, action: Action) -> Step {
        Step {
            address,
            key: key.into(),
            action,
            label: String::new(),
            status: Status::New,
            size: 0,
            digest: None,
            reason: None,
            done: false,
            on_failure: OnFailure::Stop,
        }
    }

    /// A write of `content` (hex `sha256`, served as `media_type`) at `address`.
    pub fn write(
        address: Address,
        key: impl Into<String>,
        content: Content,
        media_type: &str,
        sha256: &str,
    ) -> Step {
        let action = Action::Write {
            content,
            media_type: media_type.to_string(),
            sha256: sha256.to_string(),
        };
        Step::new(address, key, action)
    }

    /// Small bytes to write with a media type; size and digest from them.
    pub fn bytes(address: Address, key: impl Into<String>, bytes: Bytes, media_type: &str) -> Step {
        let sha256 = crate::digest::sha256_hex(&bytes);
        let size = bytes.len() as u64;
        let step = Step::write(address, key, Content::Bytes(bytes), media_type, &sha256);
        step.sized(size, Some(format!("sha256:{sha256}")))
    }

    /// A deletion, with its reason.
    pub fn delete(address: Address, key: impl Into<String>, reason: impl Into<String>) -> Step {
        Step {
            status: Status::Deleted,
            reason: Some(reason.into()),
            ..Step::new(address, key, Action::Delete)
        }
    }

    /// A derived list's update at its key.
    pub fn list(update: ListUpdate) -> Step {
        let key = update.list.key();
        Step::new(Address::Key(key.clone()), key, Action::List(update))
    }

    /// Sets the progress label.
    pub fn labelled(mut self, label: impl Into<String>) -> Step {
        self.label = label.into();
        self
    }

    /// Sets the planned status.
    pub fn with_status(mut self, status: Status) -> Step {
        self.status = status;
        self
    }

    /// Sets size and digest.
    pub fn sized(mut self, size: u64, digest: Option<String>) -> Step {
        self.size = size;
        self.digest = digest;
        self
    }

    /// True when running the step changes the target.
    pub fn changes(&self) -> bool {
        self.status != Status::Exists && !self.done
    }
}

/// Steps that run together: a phase starts once every step of the one before has finished.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    /// What the phase does, for messages (`blobs`, `manifests`, `tags`).
    pub name: String,
    /// Its steps, in order.
    pub steps: Vec<Step>,
    /// Steps may run at once (up to `--jobs`), under one bytes bar; otherwise one by one, in order.
    pub parallel: bool,
    /// Before this phase (the first that makes the earlier ones reachable: an index, a tag
    /// document), wait for running gcs and put back whatever of the earlier phases vanished.
    pub commit: bool,
}

impl Phase {
    /// A phase of steps run one by one.
    pub fn new(name: &str, steps: Vec<Step>) -> Phase {
        Phase {
            name: name.to_string(),
            steps,
            ..Phase::default()
        }
    }

    /// The same phase, its steps run at once.
    pub fn parallel(mut self) -> Phase {
        self.parallel = true;
        self
    }

    /// The same phase, marked as the one that commits the earlier ones (see [`Phase::commit`]).
    pub fn committing(mut self) -> Phase {
        self.commit = true;
        self
    }
}

/// What a push references, for its lease ([`crate::execute::lease`]).
#[derive(Debug, Clone, Default)]
pub struct LeaseSpec {
    /// The release or repository name.
    pub name: String,
    /// Tags the push writes.
    pub tags: Vec<String>,
    /// Digests it references (images).
    pub digests: Vec<String>,
    /// Keys it references (binaries, the tag document).
    pub keys: Vec<String>,
}

/// A decision a plan explains before its steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A line as it is.
    Line(String),
    /// A tag the plan removes, and why: `delete tag T: why` (`would delete` in a dry run).
    Removes {
        /// The tag.
        tag: String,
        /// Why it goes.
        reason: String,
    },
}

impl From<String> for Note {
    fn from(line: String) -> Note {
        Note::Line(line)
    }
}

/// Everything a publisher wants done on one target, in order.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// What to say before the steps (decisions the planner made: aliases, kept tags).
    pub notes: Vec<Note>,
    /// Warnings to show before the steps.
    pub warnings: Vec<String>,
    /// The phases, in order.
    pub phases: Vec<Phase>,
    /// The tags the target gets, when the planner decided more than it was given (aliases).
    pub tags: Option<Vec<String>>,
    /// The image index digest, for the report.
    pub index_digest: Option<String>,
}

/// A publisher's job on a target, plan by plan: each plan is made from what the target holds
/// once the one before has run (gc sweeps what untagging left). Planners read; they never
/// write.
#[async_trait]
pub trait Planner: Send {
    /// Checks made before the job's lease or gc marker is written (reachability,
    /// credentials, that the tag an rm removes exists): a failure leaves nothing behind.
    async fn prepare(&mut self) -> Result<()> {
        Ok(())
    }

    /// What the push references, for its lease: written before the first plan is made (so
    /// a gc that starts meanwhile keeps it), released after the last plan ran.
    fn lease(&self) -> Option<LeaseSpec> {
        None
    }

    /// The next plan, or `None` when the job is done. `applied`: the plans made before were
    /// carried out (false in a dry run: make the next one as if they had been).
    async fn next(&mut self, applied: bool) -> Result<Option<Plan>>;

    /// For gc and rm: the name whose gc marker guards the deletes ([`crate::execute::lease::Sweep`]).
    fn sweeps(&self) -> Option<String> {
        None
    }

    /// Told when a step whose failure is tolerated ([`OnFailure::Tolerate`]) failed.
    fn refused(&mut self, _step: &Step) {}
}

/// A planner of one plan made up front (tests).
pub struct Once(pub Option<Plan>, pub Option<LeaseSpec>);

#[async_trait]
impl Planner for Once {
    fn lease(&self) -> Option<LeaseSpec> {
        self.1.clone()
    }

    async fn next(&mut self, _applied: bool) -> Result<Option<Plan>> {
        Ok(self.0.take())
    }
}

/// Where plans are carried out: a bucket or folder, a static registry on one, a registry.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Writes a step's object (a [`Action::Write`]); readers never see it partial.
    async fn write(&self, step: &Step) -> Result<()>;
    /// Deletes a step's object; a missing one is not an error: `false` says it was gone
    /// already (where the sink can tell).
    async fn delete(&self, step: &Step) -> Result<bool>;
    /// True when a step's object is there (blobs and binaries: with the step's size).
    async fn exists(&self, step: &Step) -> Result<bool>;
    /// The object store under the sink (leases, gc markers, derived lists); `None` for
    /// registries, where alba keeps no leases.
    fn store(&self) -> Option<&Arc<dyn ObjectStore>>;
    /// Requests retried so far after transient faults, for the report.
    fn retries(&self) -> u64;
}

/// A bucket or folder is a sink of keys.
#[async_trait]
impl Sink for Arc<dyn ObjectStore> {
    async fn write(&self, step: &Step) -> Result<()> {
        self.put(&put_of(step).await?).await
    }

    async fn delete(&self, step: &Step) -> Result<bool> {
        ObjectStore::delete(&**self, key_of(&step.address)?).await?;
        Ok(true)
    }

    async fn exists(&self, step: &Step) -> Result<bool> {
        let info = self.head(key_of(&step.address)?).await?;
        Ok(info.is_some_and(|i| step.size == 0 || i.size == step.size))
    }

    fn store(&self) -> Option<&Arc<dyn ObjectStore>> {
        Some(self)
    }

    fn retries(&self) -> u64 {
        ObjectStore::retries(&**self)
    }
}

/// The store write of a step at a key.
pub async fn put_of(step: &Step) -> Result<crate::store::Put> {
    let Action::Write {
        content,
        media_type,
        sha256,
    } = &step.action
    else {
        anyhow::bail!("{} is not a write (alba bug)", step.key);
    };
    Ok(crate::store::Put {
        key: key_of(&step.address)?.to_string(),
        body: content.open().await?,
        content_type: media_type.clone(),
        sha256: sha256.clone(),
    })
}

/// The key of a store address; an image address on a plain store is a planner's mistake.
pub fn key_of(address: &Address) -> Result<&str> {
    match address {
        Address::Key(key) => Ok(key),
        other => anyhow::bail!("{other:?} is not a key of a bucket or folder (alba bug)"),
    }
}
