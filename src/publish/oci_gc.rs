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
//! live push lease names ([`super::lease`]), never removes a tag a push is writing, and keeps
//! manifests and blobs that no tag references while they are younger than `--grace`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Result, bail};
use bytes::Bytes;
use serde_json::Value;

use super::lease::{self, Protected, Sweep};
use super::lifecycle::{self, Decision, Deletion, GcOptions, Selection};
use super::lists::{self, Order};
use super::oci_static::{StaticRegistry, TagList, is_referrers_tag};
use crate::digest::oci_digest;
use crate::report::TargetReport;
use crate::store::ObjectStore;
use crate::ui::Ui;

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

/// A repository on a static registry.
struct Repo {
    store: Arc<dyn ObjectStore>,
    registry: StaticRegistry,
    name: String,
}

impl Repo {
    fn new(store: Arc<dyn ObjectStore>, name: &str) -> Repo {
        Repo {
            registry: StaticRegistry::new(store.clone(), name),
            store,
            name: name.to_string(),
        }
    }

    /// Reads tags, manifests and blob keys; manifests already in `previous` are not read again
    /// (content-addressed: they cannot have changed).
    async fn snapshot(&self, previous: Option<&Snapshot>) -> Result<Snapshot> {
        let mut snap = Snapshot {
            listed: self.registry.stored_tags().await?,
            ..Snapshot::default()
        };
        let prefix = self.registry.manifest_key("");
        for listed in self.store.list_detailed(&prefix).await? {
            let key = listed.key;
            let Some(reference) = key.strip_prefix(&prefix) else {
                continue;
            };
            if reference.contains('/') {
                continue;
            }
            if reference.starts_with("sha256:") {
                snap.manifest_keys.insert(reference.to_string());
                if let Some(time) = listed.modified {
                    snap.modified.insert(reference.to_string(), time);
                }
                if let Some(node) = previous.and_then(|p| p.graph.get(reference)) {
                    snap.graph.insert(reference.to_string(), node.clone());
                    continue;
                }
            }
            // A manifest deleted since it was listed is simply not there any more.
            let Some(bytes) = self.store.get(&key).await? else {
                continue;
            };
            let digest = oci_digest(&bytes);
            if !reference.starts_with("sha256:") {
                snap.tags.insert(reference.to_string(), digest.clone());
            }
            let (node, blobs) = parse(&bytes);
            snap.blob_info.extend(blobs);
            snap.graph.entry(digest).or_insert(node);
        }
        if let Some(p) = previous {
            for (digest, info) in &p.blob_info {
                snap.blob_info.entry(digest.clone()).or_insert(*info);
            }
        }
        let blob_prefix = self.registry.blob_key("");
        for listed in self.store.list_detailed(&blob_prefix).await? {
            let Some(digest) = listed.key.strip_prefix(&blob_prefix) else {
                continue;
            };
            if digest.contains('/') {
                continue;
            }
            snap.blob_keys.insert(digest.to_string());
            if let Some(time) = listed.modified {
                snap.modified.insert(digest.to_string(), time);
            }
        }
        Ok(snap)
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

/// `alba container rm` on a static registry; a tag it does not hold is an error (nothing deleted).
pub async fn rm(
    store: Arc<dyn ObjectStore>,
    name: &str,
    tag: &str,
    dry_run: bool,
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<()> {
    store.check().await?;
    let repo = Repo::new(store, name);
    let snap = repo.snapshot(None).await?;
    if !snap.tags.contains_key(tag) && !snap.listed.iter().any(|t| t == tag) {
        let tags = user_tags(&snap);
        bail!(
            "{name}:{tag} does not exist on {} (tags there: {}); nothing was deleted",
            repo.store.describe(),
            lifecycle::tag_list(&tags)
        );
    }
    let removal = [Decision {
        tag: tag.to_string(),
        reason: "removed by rm".to_string(),
    }];
    let grace = lifecycle::DEFAULT_GRACE;
    Sweep::run(&*repo.store, &repo.name, dry_run, ui, async |sweep| {
        let ctx = Context::read(&repo, grace, sweep).await?;
        remove(&repo, &snap, &removal, ctx, ui, report).await
    })
    .await
}

/// What a sweep must respect, and the gc's marker (`None` in a dry run).
struct Context<'a> {
    protected: Protected,
    grace: Duration,
    sweep: Option<&'a Sweep>,
}

impl<'a> Context<'a> {
    async fn read(repo: &Repo, grace: Duration, sweep: Option<&'a Sweep>) -> Result<Self> {
        Ok(Context {
            protected: Protected::read(&*repo.store).await?,
            grace,
            sweep,
        })
    }

    fn dry_run(&self) -> bool {
        self.sweep.is_none()
    }
}

/// `alba container gc` on a static registry: keeps the newest tags (by version), their aliases
/// and, if asked, releases; removes the others, then sweeps. Returns the selection made.
pub async fn gc(
    store: Arc<dyn ObjectStore>,
    name: &str,
    opts: &GcOptions,
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<Selection> {
    store.check().await?;
    let repo = Repo::new(store, name);
    Sweep::run(&*repo.store, &repo.name, opts.dry_run, ui, async |sweep| {
        let sweep_is_real = sweep.is_some();
        let ctx = Context::read(&repo, opts.grace, sweep).await?;
        let snap = repo.snapshot(None).await?;
        let tags = user_tags(&snap);
        let mut selection =
            lifecycle::select_container_tags(&tags, opts, |t| snap.tags.get(t).cloned());
        keep_leased(&mut selection, &ctx.protected, name);
        lifecycle::warn_unversioned(&selection, ui);
        selection.print(ui, opts.dry_run);
        remove(&repo, &snap, &selection.remove, ctx, ui, report).await?;
        if sweep_is_real {
            lease::remove_expired(&*repo.store, ui).await;
        }
        Ok(selection)
    })
    .await
}

/// Moves tags a push is writing right now (a live lease names them) to the kept ones.
fn keep_leased(selection: &mut Selection, protected: &Protected, name: &str) {
    let (leased, remove): (Vec<Decision>, Vec<Decision>) = std::mem::take(&mut selection.remove)
        .into_iter()
        .partition(|d| protected.tag_holder(name, &d.tag).is_some());
    selection.remove = remove;
    for d in leased {
        let id = protected.tag_holder(name, &d.tag).unwrap_or_default();
        let reason = format!("a push of it is in flight (lease {id})");
        selection.keep.push(Decision { tag: d.tag, reason });
    }
}

/// Untags (list, then tag objects), then sweeps manifests and blobs nothing kept refers to.
async fn remove(
    repo: &Repo,
    snap: &Snapshot,
    removal: &[Decision],
    mut ctx: Context<'_>,
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<()> {
    let dry_run = ctx.dry_run();
    let removal = &with_orphan_referrers(snap, removal, &ctx.protected);
    let removed: BTreeSet<String> = removal.iter().map(|d| d.tag.clone()).collect();
    let owners = owners(snap, removal);
    rewrite_tag_list(repo, snap, &removed, dry_run, ui, report).await?;
    let mut tag_objects: Vec<Deletion> = Vec::new();
    for d in removal {
        let Some(digest) = snap.tags.get(&d.tag) else {
            continue;
        };
        let size = snap.graph.get(digest).map_or(0, |n| n.size);
        let reason = format!("tag {}: {}", d.tag, d.reason);
        if is_referrers_tag(&d.tag) {
            // The referrers API's file of the same index goes first, like a list.
            let subject = d.tag.replacen('-', ":", 1);
            tag_objects.push(Deletion {
                key: repo.registry.referrers_key(&subject),
                size,
                digest: Some(digest.clone()),
                reason: reason.clone(),
            });
        }
        tag_objects.push(Deletion {
            key: repo.registry.manifest_key(&d.tag),
            size,
            digest: Some(digest.clone()),
            reason,
        });
    }
    lifecycle::delete_all(&*repo.store, &tag_objects, ctx.sweep, ui, report).await?;
    // The sweep works from what the store holds now (a dry run: as it would hold).
    let fresh;
    let (after, kept) = if dry_run {
        (
            snap,
            snap.tags
                .keys()
                .filter(|t| !removed.contains(*t))
                .cloned()
                .collect::<Vec<_>>(),
        )
    } else {
        fresh = repo.snapshot(Some(snap)).await?;
        (&fresh, fresh.tags.keys().cloned().collect())
    };
    // Leases written since the first read count too.
    ctx.protected.extend(Protected::read(&*repo.store).await?);
    sweep(repo, after, &kept, &owners, ctx, ui, report).await?;
    if !dry_run {
        heal_tag_list(repo, &removed, report).await?;
        super::nginx::refresh(&*repo.store).await?;
    }
    Ok(())
}

/// The tags users push: every tag object but the referrers tags (`sha256-<hex>`), which live
/// and go with their subjects.
fn user_tags(snap: &Snapshot) -> Vec<String> {
    snap.tags
        .keys()
        .filter(|t| !is_referrers_tag(t))
        .cloned()
        .collect()
}

/// `removal` plus the referrers tags whose subjects no remaining tag reaches: the SBOMs of a
/// removed image go with it — unless a live lease names the subject (a push writes its SBOMs
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
    let orphans = snap
        .tags
        .keys()
        .filter(|t| is_referrers_tag(t))
        .filter(|t| {
            let subject = t.replacen('-', ":", 1);
            !reach.manifests.contains(&subject) && protected.holder(&subject).is_none()
        });
    let orphans = orphans.map(|t| Decision {
        tag: t.clone(),
        reason: "the SBOM referrers of an image no kept tag uses".to_string(),
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

/// Writes `tags/list` without the removed tags (before any object goes).
async fn rewrite_tag_list(
    repo: &Repo,
    snap: &Snapshot,
    removed: &BTreeSet<String>,
    dry_run: bool,
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<()> {
    let remaining: BTreeSet<String> = user_tags(snap)
        .into_iter()
        .filter(|t| !removed.contains(t))
        .collect();
    let tags = lists::merge(&snap.listed, &remaining, None, Order::Lexical);
    if tags == snap.listed {
        return Ok(());
    }
    let list = TagList {
        name: repo.name.clone(),
        tags,
    };
    let bytes = Bytes::from(serde_json::to_vec(&list)?);
    let key = repo.registry.tags_key();
    lifecycle::rewrite_list(&*repo.store, key, &list.tags, bytes, dry_run, ui, report).await
}

/// Deletes unreferenced manifests, then unreferenced blobs.
async fn sweep(
    repo: &Repo,
    snap: &Snapshot,
    kept: &[String],
    owners: &BTreeMap<String, Vec<String>>,
    ctx: Context<'_>,
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<()> {
    let mut reach = mark(snap, kept);
    for digest in &reach.missing {
        ui.warn(format!(
            "a kept tag of {} refers to manifest {digest}, which is missing: push that tag again",
            repo.name
        ));
    }
    let why = |digest: &str, what: &str| match owners.get(digest) {
        Some(tags) => format!("{what} only used by removed tag {}", tags.join(", ")),
        None => format!("{what} referenced by no tag (left over)"),
    };
    // Indexes before the manifests they list: a half-swept store never holds an index whose
    // entries are gone, even for a pull by digest.
    // What a live lease names, and what no tag references but is young, stays.
    let spared = |digest: &str, key: String| {
        let reason = match ctx.protected.holder(digest) {
            Some(id) => format!("named by the lease of a push in flight ({id})"),
            None if !owners.contains_key(digest)
                && lease::within_grace(snap.modified.get(digest).copied(), ctx.grace) =>
            {
                "referenced by no tag, but younger than --grace (a push may be uploading it)".into()
            }
            None => return false,
        };
        lifecycle::announce_kept(&key, &reason, ui);
        true
    };
    let (kept_young, mut unreferenced): (Vec<&String>, Vec<&String>) = snap
        .manifest_keys
        .iter()
        .filter(|d| !reach.manifests.contains(*d))
        .partition(|d| spared(d, repo.registry.manifest_key(d)));
    // A manifest that stays keeps what it references: a push's manifest must not lose its
    // blobs to the sweep that spared it.
    for digest in kept_young {
        walk(snap, digest, 0, &mut reach);
    }
    unreferenced.sort_by_key(|d| snap.graph.get(*d).is_none_or(|n| n.kind != "index"));
    let manifests: Vec<Deletion> = unreferenced
        .into_iter()
        .map(|d| {
            let node = snap.graph.get(d);
            let reason = why(d, node.map_or("manifest", |n| n.kind));
            Deletion {
                key: repo.registry.manifest_key(d),
                size: node.map_or(0, |n| n.size),
                digest: Some(d.clone()),
                reason,
            }
        })
        .collect();
    let blobs: Vec<Deletion> = snap
        .blob_keys
        .iter()
        .filter(|d| !reach.blobs.contains(*d))
        .filter(|d| !spared(d, repo.registry.blob_key(d)))
        .map(|d| {
            let (size, kind) = snap.blob_info.get(d).copied().unwrap_or((0, "blob"));
            Deletion {
                key: repo.registry.blob_key(d),
                size,
                digest: Some(d.clone()),
                reason: why(d, kind),
            }
        })
        .collect();
    let store = &*repo.store;
    lifecycle::delete_all(store, &manifests, ctx.sweep, ui, report).await?;
    lifecycle::delete_all(store, &blobs, ctx.sweep, ui, report).await
}

/// Rebuilds `tags/list` if a concurrent push wrote a removed tag back into it meanwhile.
async fn heal_tag_list(
    repo: &Repo,
    removed: &BTreeSet<String>,
    report: &mut TargetReport,
) -> Result<()> {
    let stored = repo.registry.stored_tags().await?;
    let present = repo.registry.present_tags().await?;
    // Also a push's tag that this gc's own rewrite dropped (it read the list before the push
    // wrote it) comes back here.
    let unlisted = present.iter().any(|t| !stored.contains(t));
    if unlisted || stored.iter().any(|t| removed.contains(t)) {
        repo.registry.update_tag_list(&[], false, report).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_indexes_and_manifests() {
        let index = br#"{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"sha256:m1","size":3}]}"#;
        let (node, blobs) = parse(index);
        assert_eq!(
            (node.kind, node.manifests.as_slice()),
            ("index", ["sha256:m1".to_string()].as_slice())
        );
        assert!(blobs.is_empty());
        let manifest = br#"{"config":{"digest":"sha256:c","size":2},"layers":[{"digest":"sha256:l","size":9}]}"#;
        let (node, blobs) = parse(manifest);
        assert_eq!(node.blobs, ["sha256:c", "sha256:l"]);
        assert_eq!(blobs[1], ("sha256:l".to_string(), (9, "layer")));
        assert!(parse(b"not json").0.blobs.is_empty());
    }
}
