//! `alba container rm|gc` on a static registry (the v2 layout on a bucket or folder).
//!
//! Blobs are shared between tags (a base layer, an unchanged platform), so nothing is deleted
//! by age: a run first untags — `tags/list` rewritten without the tags, then the tag objects
//! deleted — and then marks and sweeps: it walks every remaining tag's index → manifests →
//! config and layers, and deletes only the manifests (by digest) and then the blobs that no
//! remaining tag refers to. That order keeps every kept tag complete at every moment, and the
//! sweep is computed from what the store holds (not from what the run deleted), so a run that
//! died half-way is finished by the next one.
//!
//! Object stores keep no reliable push order for tags, so `gc` ranks tags by version
//! ([`lifecycle::newest_first_by_version`]), and keeps every tag that points at the same index
//! as a kept one (`latest`). A push uploads blobs before its tag exists: gc keeps whatever a
//! live push lease names ([`crate::execute::lease`]), never removes a tag a push is writing, and keeps
//! manifests and blobs that no tag references while they are younger than `--grace`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Result, bail};
use async_trait::async_trait;
use serde_json::Value;

use super::derived::{DerivedList, attached_subject, is_attached_tag, is_referrers_tag};
use super::df_dist_gc::keep_leased;
use super::layout::{V2Key, V2Layout};
use super::lifecycle::{self, Decision, Removing, Selection};
use crate::digest::oci_digest;
use crate::execute::lease::{self, Protected};
use crate::plan::{Address, Note, Phase, Plan, Planner, Step};
use crate::store::{ObjectStore, many};

/// How deep indexes may nest before a walk stops (alba writes depth 1).
const MAX_DEPTH: usize = 8;

/// A blob's size and kind (`config` or `layer`), from a descriptor that names it.
type BlobInfo = (u64, &'static str);

/// What one manifest (index or image manifest) refers to.
#[derive(Debug, Clone, Default)]
struct Node {
    /// `index` or `manifest`, for messages.
    kind: &'static str,
    /// Its size in bytes.
    size: u64,
    /// Child manifests (index entries).
    manifests: Vec<String>,
    /// Config and layers.
    blobs: Vec<String>,
}

/// What the store holds for one repository.
#[derive(Debug, Default)]
struct Snapshot {
    /// `tags/list` as stored.
    listed: Vec<String>,
    /// Tag → digest of its tag object (tags whose object exists).
    tags: BTreeMap<String, String>,
    /// Manifest digest → node, for every manifest stored by digest or reached from a tag.
    graph: BTreeMap<String, Node>,
    /// Manifests stored by digest.
    manifest_keys: BTreeSet<String>,
    /// Blob digest → (size, `config` or `layer`) from the descriptors that name it.
    blob_info: BTreeMap<String, BlobInfo>,
    /// Blobs stored.
    blob_keys: BTreeSet<String>,
    /// When each stored manifest (by digest) and blob was last written, where the store tells.
    modified: BTreeMap<String, SystemTime>,
}

impl Snapshot {
    /// Reads tags, manifests and blob keys, `reads` documents at once; manifests already in
    /// `previous` are not read again (content-addressed: they cannot have changed), and
    /// neither is an index a tag object holds a copy of.
    async fn read(
        store: &dyn ObjectStore,
        layout: &V2Layout,
        previous: Option<&Snapshot>,
        reads: usize,
    ) -> Result<Snapshot> {
        let list = DerivedList::Tags(layout.clone());
        let mut snap = Snapshot {
            listed: list.stored(store).await?.tags,
            ..Snapshot::default()
        };
        let (mut tags, mut by_digest) = (Vec::new(), Vec::new());
        for listed in store.list_detailed(&layout.manifest_key("")).await? {
            let key = listed.key;
            let reference = match layout.parse(&key) {
                Some(V2Key::ManifestDigest(r) | V2Key::Tag(r)) => r.to_string(),
                _ => continue,
            };
            if !reference.starts_with("sha256:") {
                tags.push((reference, key));
                continue;
            }
            snap.manifest_keys.insert(reference.clone());
            if let Some(time) = listed.modified {
                snap.modified.insert(reference.clone(), time);
            }
            match previous.and_then(|p| p.graph.get(&reference)) {
                Some(node) => {
                    snap.graph.insert(reference, node.clone());
                }
                None => by_digest.push((reference, key)),
            }
        }
        // Tag objects first: each is a copy of the index it names, which then is not read
        // again by its digest.
        for (tag, bytes) in snap.read_manifests(store, &tags, reads).await? {
            snap.tags.insert(tag, oci_digest(&bytes));
        }
        by_digest.retain(|(digest, _)| !snap.graph.contains_key(digest));
        snap.read_manifests(store, &by_digest, reads).await?;
        if let Some(p) = previous {
            for (digest, info) in &p.blob_info {
                snap.blob_info.entry(digest.clone()).or_insert(*info);
            }
        }
        for listed in store.list_detailed(&layout.blob_key("")).await? {
            let Some(V2Key::Blob(digest)) = layout.parse(&listed.key) else {
                continue;
            };
            snap.blob_keys.insert(digest.to_string());
            if let Some(time) = listed.modified {
                snap.modified.insert(digest.to_string(), time);
            }
        }
        Ok(snap)
    }

    /// Reads the manifests at `(reference, key)`, `reads` at once, into the graph; returns the
    /// bytes of those still there (a manifest deleted since it was listed simply is not).
    async fn read_manifests(
        &mut self,
        store: &dyn ObjectStore,
        keys: &[(String, String)],
        reads: usize,
    ) -> Result<Vec<(String, bytes::Bytes)>> {
        let just_keys: Vec<String> = keys.iter().map(|(_, key)| key.clone()).collect();
        let mut found = Vec::new();
        for ((reference, _), bytes) in keys
            .iter()
            .zip(many::get_all(store, &just_keys, reads).await)
        {
            let Some(bytes) = bytes? else {
                continue;
            };
            let (node, blobs) = parse(&bytes);
            self.blob_info.extend(blobs);
            self.graph.entry(oci_digest(&bytes)).or_insert(node);
            found.push((reference.clone(), bytes));
        }
        Ok(found)
    }
}

/// Parses a manifest: its node, and the size and kind of each blob it names. Unreadable
/// bytes give an empty node (nothing is kept on their account, and a warning says so later).
fn parse(bytes: &[u8]) -> (Node, Vec<(String, BlobInfo)>) {
    let mut node = Node {
        kind: "manifest",
        size: bytes.len() as u64,
        ..Node::default()
    };
    let mut blobs = Vec::new();
    let Ok(doc) = serde_json::from_slice::<Value>(bytes) else {
        return (node, blobs);
    };
    if let Some(entries) = doc["manifests"].as_array() {
        node.kind = "index";
        node.manifests = entries
            .iter()
            .filter_map(|e| e["digest"].as_str())
            .map(str::to_string)
            .collect();
    }
    let config = doc.get("config").into_iter().map(|c| (c, "config"));
    let layers = doc["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| (l, "layer"));
    for (descriptor, kind) in config.chain(layers) {
        if let Some(digest) = descriptor["digest"].as_str() {
            node.blobs.push(digest.to_string());
            blobs.push((
                digest.to_string(),
                (descriptor["size"].as_u64().unwrap_or(0), kind),
            ));
        }
    }
    (node, blobs)
}

/// Manifests and blobs reachable from some tags.
#[derive(Debug, Default)]
struct Reach {
    manifests: BTreeSet<String>,
    blobs: BTreeSet<String>,
    /// Manifests named but not stored: the tags that need them are incomplete.
    missing: BTreeSet<String>,
}

/// Marks everything the given tags refer to.
fn mark(snap: &Snapshot, tags: &[String]) -> Reach {
    let mut reach = Reach::default();
    for tag in tags {
        if let Some(digest) = snap.tags.get(tag) {
            walk(snap, digest, 0, &mut reach);
        }
    }
    reach
}

fn walk(snap: &Snapshot, digest: &str, depth: usize, reach: &mut Reach) {
    if depth > MAX_DEPTH || !reach.manifests.insert(digest.to_string()) {
        return;
    }
    let Some(node) = snap.graph.get(digest) else {
        reach.missing.insert(digest.to_string());
        return;
    };
    reach.blobs.extend(node.blobs.iter().cloned());
    for child in &node.manifests {
        walk(snap, child, depth + 1, reach);
    }
}

/// Where a removal is: untagging planned next, then the sweep, then the heal, then done.
enum Stage {
    Untag,
    Sweep(Box<Untagged>),
    Heal,
    Done,
}

/// What the untagging plan decided, for the sweep after it.
struct Untagged {
    snap: Snapshot,
    removed: BTreeSet<String>,
    owners: BTreeMap<String, Vec<String>>,
    protected: Protected,
    grace: Duration,
}

/// `alba container rm` and `gc` on a static registry, as a planner: untag (the list, then the
/// tag objects), then — planned from what the store holds once that ran — sweep manifests and
/// blobs nothing kept refers to, then heal the list.
pub struct Removal {
    store: Arc<dyn ObjectStore>,
    layout: V2Layout,
    what: Removing,
    /// Manifests read at once.
    reads: usize,
    stage: Stage,
    /// What gc selected (rm: the one tag), once planned.
    pub selection: Selection,
    /// What the store held when rm checked its tag, before the gc marker.
    read: Option<Snapshot>,
}

impl Removal {
    /// `alba container rm` or `gc` of repository `name` on a static registry on `store`:
    /// gc keeps the newest tags (by version), their aliases and, if asked, releases.
    pub fn new(store: Arc<dyn ObjectStore>, name: &str, what: Removing) -> Removal {
        Removal {
            store,
            layout: V2Layout::new(name),
            what,
            reads: many::DEFAULT_READS,
            stage: Stage::Untag,
            selection: Selection::default(),
            read: None,
        }
    }

    /// Reads up to `at_once` manifests at once (default [`many::DEFAULT_READS`]).
    pub fn reading(mut self, at_once: usize) -> Removal {
        self.reads = at_once;
        self
    }

    /// The tags to remove, with the lines that explain the choice.
    async fn select(
        &mut self,
        snap: &Snapshot,
        protected: &Protected,
    ) -> Result<(Vec<Decision>, Plan)> {
        let mut plan = Plan::default();
        let name = self.layout.name().to_string();
        match &self.what {
            Removing::Tag(tag) => {
                self.selection.remove = vec![Decision {
                    tag: tag.clone(),
                    reason: "removed by rm".to_string(),
                }];
            }
            Removing::Old(opts) => {
                let tags = user_tags(snap);
                let digest_of = |t: &str| snap.tags.get(t).cloned();
                let mut selection = lifecycle::select_container_tags(&tags, opts, digest_of);
                keep_leased(&mut selection, protected, &name);
                plan.warnings
                    .extend(lifecycle::unversioned_warning(&selection));
                plan.notes = selection.notes();
                self.selection = selection;
            }
        }
        Ok((self.selection.remove.clone(), plan))
    }

    /// rm's check, before the gc marker: the tag must be there.
    async fn check_tag(&mut self, tag: &str) -> Result<()> {
        let snap = Snapshot::read(&*self.store, &self.layout, None, self.reads).await?;
        if !snap.tags.contains_key(tag) && !snap.listed.iter().any(|t| t == tag) {
            bail!(
                "{}:{tag} does not exist on {} (tags there: {}); nothing was deleted",
                self.layout.name(),
                self.store.describe(),
                lifecycle::tag_list(&user_tags(&snap))
            );
        }
        self.read = Some(snap);
        Ok(())
    }

    /// Untags: `tags/list` without the removed tags, then their tag objects.
    async fn untag(&mut self) -> Result<Plan> {
        let grace = self.what.grace();
        let protected = Protected::read(&*self.store).await?;
        let snap = match self.read.take() {
            Some(snap) => snap,
            None => Snapshot::read(&*self.store, &self.layout, None, self.reads).await?,
        };
        let (removal, mut plan) = self.select(&snap, &protected).await?;
        let removal = with_orphan_referrers(&snap, &removal, &protected);
        let removed: BTreeSet<String> = removal.iter().map(|d| d.tag.clone()).collect();
        let owners = owners(&snap, &removal);
        let list = DerivedList::Tags(self.layout.clone());
        let rewrite = list.step(&*self.store, Vec::new(), removed.clone(), false);
        plan.phases = vec![
            Phase::new("tags/list", vec![rewrite.await?]),
            Phase::new("tags", self.tag_deletions(&snap, &removal)),
        ];
        self.stage = Stage::Sweep(Box::new(Untagged {
            snap,
            removed,
            owners,
            protected,
            grace,
        }));
        Ok(plan)
    }

    /// The tag objects of the removed tags (a referrers tag's `referrers/` file first).
    fn tag_deletions(&self, snap: &Snapshot, removal: &[Decision]) -> Vec<Step> {
        let mut steps = Vec::new();
        for d in removal {
            let Some(digest) = snap.tags.get(&d.tag) else {
                continue;
            };
            let size = snap.graph.get(digest).map_or(0, |n| n.size);
            let reason = format!("tag {}: {}", d.tag, d.reason);
            let mut keys = Vec::new();
            if is_referrers_tag(&d.tag) {
                // The referrers API's file of the same index goes first, like a list.
                keys.push(self.layout.referrers_key(&d.tag.replacen('-', ":", 1)));
            }
            keys.push(self.layout.manifest_key(&d.tag));
            for key in keys {
                let step = Step::delete(Address::Key(key.clone()), key, reason.clone());
                steps.push(step.sized(size, Some(digest.clone())));
            }
        }
        steps
    }

    /// The sweep, from what the store holds now (`applied` false, a dry run: as it would hold).
    async fn sweep(&mut self, untagged: Untagged, applied: bool) -> Result<Plan> {
        let Untagged {
            snap,
            removed,
            owners,
            mut protected,
            grace,
        } = untagged;
        let fresh;
        let (after, kept) = if !applied {
            let kept = snap.tags.keys().filter(|t| !removed.contains(*t));
            (&snap, kept.cloned().collect::<Vec<_>>())
        } else {
            fresh = Snapshot::read(&*self.store, &self.layout, Some(&snap), self.reads).await?;
            (&fresh, fresh.tags.keys().cloned().collect())
        };
        // Leases written since the first read count too.
        protected.extend(Protected::read(&*self.store).await?);
        let sweep = Sweep {
            layout: &self.layout,
            snap: after,
            owners: &owners,
            protected: &protected,
            grace,
        };
        let plan = sweep.plan(&kept);
        if applied && !removed.is_empty() {
            self.stage = Stage::Heal;
        }
        Ok(plan)
    }

    /// A concurrent push may have written a removed tag back into the list meanwhile, or lost
    /// its tag to this run's rewrite: the list is rebuilt from the tag objects.
    async fn heal(&self) -> Result<Plan> {
        let list = DerivedList::Tags(self.layout.clone());
        let heal = list.step(&*self.store, Vec::new(), BTreeSet::new(), false);
        Ok(Plan {
            phases: vec![Phase::new("tags/list, healed", vec![heal.await?])],
            ..Plan::default()
        })
    }
}

#[async_trait]
impl Planner for Removal {
    async fn prepare(&mut self) -> Result<()> {
        self.store.check().await?;
        match &self.what {
            Removing::Tag(tag) => self.check_tag(&tag.clone()).await,
            Removing::Old(_) => Ok(()),
        }
    }

    async fn next(&mut self, applied: bool) -> Result<Option<Plan>> {
        match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Untag => Ok(Some(self.untag().await?)),
            Stage::Sweep(untagged) => Ok(Some(self.sweep(*untagged, applied).await?)),
            Stage::Heal => Ok(Some(self.heal().await?)),
            Stage::Done => Ok(None),
        }
    }

    fn sweeps(&self) -> Option<String> {
        Some(self.layout.name().to_string())
    }
}

/// The tags users push: every tag object but those attached to a manifest (referrers tags
/// `sha256-<hex>`, signatures `sha256-<hex>.sig`, …), which live and go with their subjects.
fn user_tags(snap: &Snapshot) -> Vec<String> {
    snap.tags
        .keys()
        .filter(|t| !is_attached_tag(t))
        .cloned()
        .collect()
}

/// `removal` plus the attached tags whose subjects no remaining tag reaches: the SBOMs and
/// signatures of a removed image go with it — unless a live lease names the subject (a push writes its SBOMs
/// before its tags).
fn with_orphan_referrers(
    snap: &Snapshot,
    removal: &[Decision],
    protected: &Protected,
) -> Vec<Decision> {
    let removed: BTreeSet<&str> = removal.iter().map(|d| d.tag.as_str()).collect();
    let remaining: Vec<String> = user_tags(snap)
        .into_iter()
        .filter(|t| !removed.contains(t.as_str()))
        .collect();
    let reach = mark(snap, &remaining);
    let orphans = snap.tags.keys().filter(|t| {
        attached_subject(t).is_some_and(|subject| {
            !reach.manifests.contains(&subject) && protected.holder(&subject).is_none()
        })
    });
    let orphans = orphans.map(|t| Decision {
        tag: t.clone(),
        reason: match is_referrers_tag(t) {
            true => "the SBOM referrers of an image no kept tag uses".to_string(),
            false => "the signatures of an image no kept tag uses".to_string(),
        },
    });
    removal.iter().cloned().chain(orphans).collect()
}

/// For each manifest and blob a removed tag reaches, the removed tags that reach it.
fn owners(snap: &Snapshot, removal: &[Decision]) -> BTreeMap<String, Vec<String>> {
    let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in removal {
        let reach = mark(snap, std::slice::from_ref(&d.tag));
        for digest in reach.manifests.into_iter().chain(reach.blobs) {
            owners.entry(digest).or_default().push(d.tag.clone());
        }
    }
    owners
}

/// What a sweep must respect.
struct Sweep<'a> {
    layout: &'a V2Layout,
    snap: &'a Snapshot,
    owners: &'a BTreeMap<String, Vec<String>>,
    protected: &'a Protected,
    grace: Duration,
}

impl Sweep<'_> {
    /// Why an unreferenced object goes.
    fn why(&self, digest: &str, what: &str) -> String {
        match self.owners.get(digest) {
            Some(tags) => format!("{what} only used by removed tag {}", tags.join(", ")),
            None => format!("{what} referenced by no tag (left over)"),
        }
    }

    /// What a live lease names, and what no tag references but is young, stays: the line
    /// that says so.
    fn spared(&self, digest: &str, key: String) -> Option<Note> {
        let reason = match self.protected.holder(digest) {
            Some(id) => format!("named by the lease of a push in flight ({id})"),
            None if !self.owners.contains_key(digest)
                && lease::within_grace(self.snap.modified.get(digest).copied(), self.grace) =>
            {
                "referenced by no tag, but younger than --grace (a push may be uploading it)".into()
            }
            None => return None,
        };
        Some(lifecycle::kept_line(&key, &reason))
    }

    /// Unreferenced manifests (indexes before the manifests they list: a half-swept store
    /// never holds an index whose entries are gone, even for a pull by digest), then
    /// unreferenced blobs.
    fn plan(&self, kept: &[String]) -> Plan {
        let (snap, layout) = (self.snap, self.layout);
        let mut plan = Plan::default();
        let mut reach = mark(snap, kept);
        for digest in &reach.missing {
            plan.warnings.push(format!(
                "a kept tag of {} refers to manifest {digest}, which is missing: push that tag again",
                layout.name()
            ));
        }
        let mut unreferenced = Vec::new();
        for digest in snap
            .manifest_keys
            .iter()
            .filter(|d| !reach.manifests.contains(*d))
        {
            match self.spared(digest, layout.manifest_key(digest)) {
                Some(line) => plan.notes.push(line),
                None => unreferenced.push(digest),
            }
        }
        // A manifest that stays keeps what it references: a push's manifest must not lose its
        // blobs to the sweep that spared it.
        let spared: Vec<&String> = snap
            .manifest_keys
            .iter()
            .filter(|d| !reach.manifests.contains(*d) && !unreferenced.contains(d))
            .collect();
        for digest in spared {
            walk(snap, digest, 0, &mut reach);
        }
        unreferenced.sort_by_key(|d| snap.graph.get(*d).is_none_or(|n| n.kind != "index"));
        let manifests = unreferenced.into_iter().map(|d| {
            let node = snap.graph.get(d);
            let reason = self.why(d, node.map_or("manifest", |n| n.kind));
            let key = layout.manifest_key(d);
            let step = Step::delete(Address::Key(key.clone()), key, reason);
            step.sized(node.map_or(0, |n| n.size), Some(d.clone()))
        });
        let mut blobs = Vec::new();
        for d in snap.blob_keys.iter().filter(|d| !reach.blobs.contains(*d)) {
            if let Some(line) = self.spared(d, layout.blob_key(d)) {
                plan.notes.push(line);
                continue;
            }
            let (size, kind) = snap.blob_info.get(d).copied().unwrap_or((0, "blob"));
            let key = layout.blob_key(d);
            let step = Step::delete(Address::Key(key.clone()), key, self.why(d, kind));
            blobs.push(step.sized(size, Some(d.clone())));
        }
        plan.phases = vec![
            Phase::new("manifests", manifests.collect()),
            Phase::new("blobs", blobs),
        ];
        plan
    }
}

#[cfg(test)]
#[path = "oci_gc_tests.rs"]
mod tests;
