//! `alba static rm|gc`: removing tags from the df-dist-v1 layout.
//!
//! Removal runs the write order backwards — the name document first (rewritten without the
//! tags), then the tag documents, then the binaries — so a reader never follows a listed tag
//! to a missing file, whatever moment a run dies at.
//!
//! Everything is computed from what the store holds, not from what a run did: binaries left
//! below a tag whose tag document is gone (an interrupted `rm` or `gc`) are found and removed
//! by the next `gc`. Binaries a push is uploading, not yet described by its tag document,
//! look the same: they are kept while the push's lease lives ([`super::lease`]) and, whatever
//! wrote them, while they are younger than `--grace`. A tag a push is writing is never removed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use anyhow::{Result, bail};
use bytes::Bytes;

use super::df_dist::{self, NameDocument, ROOT, TagDocument};
use super::lease::{self, Protected, Sweep};
use super::lifecycle::{self, Decision, Deletion, GcOptions, Selection};
use super::lists::{self, Order};
use crate::digest::oci_digest;
use crate::report::TargetReport;
use crate::store::ObjectStore;
use crate::ui::Ui;

/// What the store holds for one name.
struct State {
    /// The name document's tags, as stored.
    stored: Vec<String>,
    /// Tags whose tag document exists.
    present: BTreeSet<String>,
    /// The effective list, newest first: stored order, unlisted present tags in front.
    tags: Vec<String>,
    /// Every key below `<name>/<tag>/`, by tag (binaries).
    files: BTreeMap<String, Vec<String>>,
    /// When each binary was last written, where the store tells.
    modified: BTreeMap<String, SystemTime>,
}

impl State {
    async fn read(store: &dyn ObjectStore, name: &str, ui: &Ui) -> Result<State> {
        let stored = df_dist::stored_tags(store, name, ui).await?;
        let prefix = format!("{ROOT}/{name}/");
        let mut present = BTreeSet::new();
        let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut modified = BTreeMap::new();
        for listed in store.list_detailed(&prefix).await? {
            let key = listed.key;
            let Some(rest) = key.strip_prefix(&prefix) else {
                continue;
            };
            if let Some(time) = listed.modified {
                modified.insert(key.clone(), time);
            }
            match rest.split_once('/') {
                Some((tag, _)) => files.entry(tag.to_string()).or_default().push(key.clone()),
                None => {
                    present.insert(rest.to_string());
                }
            }
        }
        let tags = lists::merge(&stored, &present, None, Order::NewestFirst);
        Ok(State {
            stored,
            present,
            tags,
            files,
            modified,
        })
    }

    /// True when any binary of `tag` is younger than `grace`.
    fn has_young_files(&self, tag: &str, grace: std::time::Duration) -> bool {
        self.files
            .get(tag)
            .into_iter()
            .flatten()
            .any(|k| lease::within_grace(self.modified.get(k).copied(), grace))
    }

    /// True when anything of `tag` is in the store (listed, described, or files left).
    fn has(&self, tag: &str) -> bool {
        self.stored.iter().any(|t| t == tag)
            || self.present.contains(tag)
            || self.files.contains_key(tag)
    }

    /// Tags with binaries but no tag document (what an interrupted rm or gc leaves).
    fn orphans(&self) -> Vec<String> {
        self.files
            .keys()
            .filter(|t| !self.present.contains(*t))
            .cloned()
            .collect()
    }
}

/// `alba static rm`: removes one tag; a tag the store does not hold is an error (nothing deleted).
pub async fn rm(
    store: &dyn ObjectStore,
    name: &str,
    tag: &str,
    dry_run: bool,
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<()> {
    store.check().await?;
    let state = State::read(store, name, ui).await?;
    if !state.has(tag) {
        bail!(
            "{name}:{tag} does not exist on {} (tags there: {}); nothing was deleted",
            store.describe(),
            lifecycle::tag_list(&state.tags)
        );
    }
    let removal = [Decision {
        tag: tag.to_string(),
        reason: "removed by rm".to_string(),
    }];
    Sweep::run(store, name, dry_run, ui, async |sweep| {
        remove(store, name, &state, &removal, sweep, ui, report).await
    })
    .await
}

/// `alba static gc`: keeps the newest tags of the name document (and releases, if asked),
/// removes the others and whatever an interrupted run left. Tags a push is writing (a live
/// lease) stay, and so do left-over binaries younger than `--grace`. Returns the selection.
pub async fn gc(
    store: &dyn ObjectStore,
    name: &str,
    opts: &GcOptions,
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<Selection> {
    store.check().await?;
    // Announced before the leases are read: see `lease` for why the order matters.
    Sweep::run(store, name, opts.dry_run, ui, async |sweep| {
        let selection = collect(store, name, opts, sweep, ui, report).await?;
        if sweep.is_some() {
            lease::remove_expired(store, ui).await;
        }
        Ok(selection)
    })
    .await
}

async fn collect(
    store: &dyn ObjectStore,
    name: &str,
    opts: &GcOptions,
    sweep: Option<&Sweep>,
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<Selection> {
    let protected = Protected::read(store).await?;
    let state = State::read(store, name, ui).await?;
    let mut selection = lifecycle::select(&state.tags, opts);
    keep_leased(&mut selection, &protected, name);
    selection.print(ui, opts.dry_run);
    let mut removal = selection.remove.clone();
    for tag in state.orphans() {
        if let Some(id) = protected.tag_holder(name, &tag) {
            let reason = format!("binaries of a push in flight (lease {id})");
            lifecycle::announce_kept(&format!("{ROOT}/{name}/{tag}/"), &reason, ui);
        } else if state.has_young_files(&tag, opts.grace) {
            let reason = "binaries without a tag document, younger than --grace (a push may be uploading them)";
            lifecycle::announce_kept(&format!("{ROOT}/{name}/{tag}/"), reason, ui);
        } else {
            let reason =
                "left over: binaries without a tag document (an interrupted rm or gc)".to_string();
            removal.push(Decision { tag, reason });
        }
    }
    if removal.is_empty() {
        ui.line(format!(
            "nothing to remove: {} tags, {} kept",
            state.tags.len(),
            selection.keep.len()
        ));
    }
    remove(store, name, &state, &removal, sweep, ui, report).await?;
    selection.remove = removal;
    Ok(selection)
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

/// Removes tags in the safe order: name document, tag documents, binaries.
async fn remove(
    store: &dyn ObjectStore,
    name: &str,
    state: &State,
    removal: &[Decision],
    sweep: Option<&Sweep>,
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<()> {
    if removal.is_empty() {
        return Ok(());
    }
    let dry_run = sweep.is_none();
    let removed: BTreeSet<String> = removal.iter().map(|d| d.tag.clone()).collect();
    rewrite_name_document(
        store,
        name,
        &state.stored,
        &state.present,
        &removed,
        dry_run,
        ui,
        report,
    )
    .await?;
    let mut documents = Vec::new();
    let mut binaries = Vec::new();
    for decision in removal {
        let (doc, files) = tag_deletions(store, name, state, decision).await?;
        documents.extend(doc);
        binaries.extend(files);
    }
    lifecycle::delete_all(store, &documents, sweep, ui, report).await?;
    lifecycle::delete_all(store, &binaries, sweep, ui, report).await?;
    if dry_run {
        return Ok(());
    }
    heal_name_document(store, name, &removed, ui, report).await?;
    super::nginx::refresh(store).await
}

/// The tag document and binaries of one removed tag, with their sizes where the tag
/// document gives them.
async fn tag_deletions(
    store: &dyn ObjectStore,
    name: &str,
    state: &State,
    decision: &Decision,
) -> Result<(Option<Deletion>, Vec<Deletion>)> {
    let tag = &decision.tag;
    let mut sizes = BTreeMap::new();
    let mut doc = None;
    if state.present.contains(tag) {
        let key = df_dist::tag_key(name, tag);
        let bytes = store.get(&key).await?.unwrap_or_default();
        sizes = file_sizes(name, tag, &bytes);
        let reason = format!("tag document of {tag}: {}", decision.reason);
        doc = Some(Deletion {
            key,
            size: bytes.len() as u64,
            digest: Some(oci_digest(&bytes)),
            reason,
        });
    }
    let files = state.files.get(tag).into_iter().flatten().map(|key| {
        let (size, digest) = sizes.get(key).cloned().unwrap_or_default();
        Deletion {
            key: key.clone(),
            size,
            digest,
            reason: format!("binary of {tag}: {}", decision.reason),
        }
    });
    Ok((doc, files.collect()))
}

/// Key → size and digest of the binaries a tag document describes (empty when it cannot be read).
///
/// Both shapes alba has written count: `<os>/<arch>/<path>` (the Go tool's, today's) and
/// `<os>/<arch>/<variant>/<path>` (alba before 2026-12 put every variant there).
fn file_sizes(name: &str, tag: &str, bytes: &[u8]) -> BTreeMap<String, (u64, Option<String>)> {
    let Ok(doc) = serde_json::from_slice::<TagDocument>(bytes) else {
        return BTreeMap::new();
    };
    let mut sizes = BTreeMap::new();
    for flavor in &doc.flavors {
        let p = &flavor.platform;
        let dir = format!("{ROOT}/{name}/{tag}/{}/{}", p.os, p.architecture);
        for r in &flavor.resources {
            let digest = r.sha256.as_ref().map(|hex| format!("sha256:{hex}"));
            let entry = (r.size.unwrap_or(0), digest);
            if let Some(v) = &p.variant {
                sizes.insert(format!("{dir}/{v}/{}", r.path), entry.clone());
            }
            sizes.insert(format!("{dir}/{}", r.path), entry);
        }
    }
    sizes
}

/// Writes the name document without the removed tags (first, so no reader follows them).
#[allow(clippy::too_many_arguments)]
async fn rewrite_name_document(
    store: &dyn ObjectStore,
    name: &str,
    stored: &[String],
    present: &BTreeSet<String>,
    removed: &BTreeSet<String>,
    dry_run: bool,
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<()> {
    let remaining: BTreeSet<String> = present.difference(removed).cloned().collect();
    let tags = lists::merge(stored, &remaining, None, Order::NewestFirst);
    if tags == stored {
        return Ok(());
    }
    write_name_document(store, name, tags, dry_run, ui, report).await
}

/// Drops removed tags a concurrent push wrote back into the name document meanwhile (it saw
/// their tag documents still there; they are gone now), and lists again tags a concurrent push
/// wrote meanwhile: the list is rebuilt from the tag documents.
async fn heal_name_document(
    store: &dyn ObjectStore,
    name: &str,
    removed: &BTreeSet<String>,
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<()> {
    let stored = df_dist::stored_tags(store, name, ui).await?;
    let present = df_dist::present_tags(store, name).await?;
    let tags: Vec<String> = lists::merge(&stored, &present, None, Order::NewestFirst)
        .into_iter()
        .filter(|t| !removed.contains(t))
        .collect();
    // Also a push's tag that this gc's own rewrite dropped (it read the list before the push
    // wrote it) comes back here.
    if tags == stored {
        return Ok(());
    }
    write_name_document(store, name, tags, false, ui, report).await
}

async fn write_name_document(
    store: &dyn ObjectStore,
    name: &str,
    tags: Vec<String>,
    dry_run: bool,
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<()> {
    let document = NameDocument {
        name: name.to_string(),
        tags,
    };
    let bytes = Bytes::from(serde_json::to_vec(&document)?);
    let key = df_dist::name_key(name);
    lifecycle::rewrite_list(store, key, &document.tags, bytes, dry_run, ui, report).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fs::FolderStore;

    async fn put(store: &dyn ObjectStore, key: &str, text: &str) {
        let bytes = Bytes::from(text.to_string());
        let put = crate::store::Put::bytes(key, bytes, "x");
        store.put(&put).await.unwrap();
    }

    async fn publish(store: &dyn ObjectStore, tags: &[&str]) {
        for tag in tags {
            put(store, &format!("df-dist-v1/a/{tag}/linux/amd64/a"), tag).await;
            let doc = r#"{"flavors":[{"resources":[{"path":"a","size":3}],"platform":{"architecture":"amd64","os":"linux"}}]}"#;
            put(store, &format!("df-dist-v1/a/{tag}"), doc).await;
        }
        let list: Vec<String> = tags.iter().rev().map(|t| t.to_string()).collect();
        let doc = serde_json::to_string(&NameDocument {
            name: "a".into(),
            tags: list,
        })
        .unwrap();
        put(store, "df-dist-v1/a", &doc).await;
    }

    fn report() -> TargetReport {
        TargetReport::new("t", "static", "a", &[], false)
    }

    #[tokio::test]
    async fn rm_then_gc_with_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = FolderStore::new(dir.path()).unwrap();
        publish(&store, &["0.1", "0.2", "0.3", "0.4"]).await;
        let ui = Ui::silent();
        assert!(
            rm(&store, "a", "9.9", false, &ui, &mut report())
                .await
                .is_err()
        );
        rm(&store, "a", "0.2", false, &ui, &mut report())
            .await
            .unwrap();
        assert_eq!(
            df_dist::stored_tags(&store, "a", &ui).await.unwrap(),
            ["0.4", "0.3", "0.1"]
        );
        assert!(store.list("df-dist-v1/a/0.2").await.unwrap().is_empty());
        // An interrupted run: the tag document is gone, a binary is left.
        store.delete("df-dist-v1/a/0.1").await.unwrap();
        let opts = GcOptions {
            keep: 1,
            keep_releases: false,
            dry_run: false,
            grace: std::time::Duration::ZERO,
        };
        let mut r = report();
        let selection = gc(&store, "a", &opts, &ui, &mut r).await.unwrap();
        assert_eq!(selection.removed(), ["0.3", "0.1"]);
        assert_eq!(
            store.list("df-dist-v1/").await.unwrap(),
            [
                "df-dist-v1/a",
                "df-dist-v1/a/0.4",
                "df-dist-v1/a/0.4/linux/amd64/a"
            ]
        );
        assert!(
            r.objects
                .iter()
                .any(|o| o.key == "df-dist-v1/a/0.3/linux/amd64/a" && o.size == 3)
        );
    }
}
