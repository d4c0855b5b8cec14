//! `alba static rm|gc`: removing tags from the df-dist-v1 layout, as plans.
//!
//! Removal runs the write order backwards — the name document first (rewritten without the
//! tags), then the tag documents, then the binaries — so a reader never follows a listed tag
//! to a missing file, whatever moment a run dies at.
//!
//! Everything is computed from what the store holds, not from what a run did: binaries left
//! below a tag whose tag document is gone (an interrupted `rm` or `gc`) are found and removed
//! by the next `gc`. Binaries a push is uploading, not yet described by its tag document,
//! look the same: they are kept while the push's lease lives ([`crate::execute::lease`]) and, whatever
//! wrote them, while they are younger than `--grace`. A tag a push is writing is never removed.
//! The planner reads the leases only once the executor has announced the gc (its marker).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Result, bail};
use async_trait::async_trait;

use super::derived::{DerivedList, Stored};
use super::df_dist::TagDocument;
use super::layout::{DfDistKey, DfDistLayout};
use super::lifecycle::{self, Decision, GcOptions, Removing, Selection};
use crate::digest::oci_digest;
use crate::execute::lease::{self, Protected};
use crate::plan::{Address, Note, Phase, Plan, Planner, Step};
use crate::store::{ObjectStore, many};

/// What the store holds for one name.
struct State {
    /// The name document as read (its rewrite is planned from this reading).
    read: Stored,
    /// The name document's tags, as stored.
    stored: Vec<String>,
    /// Why the name document could not be read, when it could not (it is rebuilt).
    unreadable: Option<String>,
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
    async fn read(store: &dyn ObjectStore, layout: &DfDistLayout) -> Result<State> {
        let list = DerivedList::Names(layout.clone());
        let read = list.stored(store).await?;
        let mut direct = Vec::new();
        let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut modified = BTreeMap::new();
        for listed in store.list_detailed(&layout.prefix()).await? {
            let key = listed.key;
            if let Some(time) = listed.modified {
                modified.insert(key.clone(), time);
            }
            match layout.parse(&key) {
                Some(DfDistKey::File { tag, .. }) => {
                    files.entry(tag.to_string()).or_default().push(key.clone())
                }
                Some(DfDistKey::Tag(_)) => direct.push(key.clone()),
                _ => {}
            }
        }
        let present = super::derived::tag_documents(store, layout, &direct, &read.tags).await?;
        let (stored, unreadable) = (read.tags.clone(), read.unreadable.clone());
        let tags = list
            .round(read.clone(), &present, &[], &BTreeSet::new())?
            .tags;
        Ok(State {
            read,
            stored,
            unreadable,
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

/// `alba static rm` and `gc` as a planner: one plan, made under the gc's marker.
pub struct Removal {
    store: Arc<dyn ObjectStore>,
    layout: DfDistLayout,
    what: Removing,
    /// Tag documents read at once.
    reads: usize,
    /// What gc selected (rm: the one tag), once planned.
    pub selection: Selection,
    /// Plans made so far: the removal, then the heal.
    planned: usize,
    /// What the store held when rm checked its tag, before the gc marker.
    read: Option<State>,
    /// The target's public address, for the pages it rewrites.
    web: Option<String>,
}

impl Removal {
    /// `alba static rm` or `gc` of `name` on `store`. Tags a push is writing (a live lease)
    /// stay, and so do left-over binaries younger than `--grace`.
    pub fn new(store: Arc<dyn ObjectStore>, name: &str, what: Removing) -> Removal {
        Removal {
            store,
            layout: DfDistLayout::new(name),
            what,
            reads: many::DEFAULT_READS,
            selection: Selection::default(),
            planned: 0,
            read: None,
            web: None,
        }
    }

    /// The same removal, its pages linking with the target's public address (`web=`).
    pub fn with_web(mut self, web: Option<&str>) -> Removal {
        self.web = web.map(str::to_string);
        self
    }

    /// The pages for the name document `step` plans, where the name has pages already.
    async fn page_steps(&self, step: &Step) -> Result<Vec<Step>> {
        let store = &*self.store;
        let page = format!("{}{}", self.layout.prefix(), super::pages::INDEX);
        if store.head(&page).await?.is_none() {
            return Ok(Vec::new());
        }
        let (web, tags) = (self.web.as_deref(), super::pages::planned_tags(step));
        let mut steps = super::pages::name_steps(store, &self.layout, web, tags, None).await?;
        // rm and gc say only what they change.
        steps.retain(Step::changes);
        Ok(steps)
    }

    /// Reads up to `at_once` tag documents at once (default [`many::DEFAULT_READS`]).
    pub fn reading(mut self, at_once: usize) -> Removal {
        self.reads = at_once;
        self
    }

    /// rm's check, before the gc marker: the tag must be there.
    async fn check_tag(&mut self, tag: &str) -> Result<()> {
        let store = &*self.store;
        let state = State::read(store, &self.layout).await?;
        if !state.has(tag) {
            bail!(
                "{}:{tag} does not exist on {} (tags there: {}); nothing was deleted",
                self.layout.name(),
                store.describe(),
                lifecycle::tag_list(&state.tags)
            );
        }
        self.read = Some(state);
        Ok(())
    }

    async fn plan_rm(&mut self, tag: &str) -> Result<Plan> {
        let state = match self.read.take() {
            Some(state) => state,
            None => State::read(&*self.store, &self.layout).await?,
        };
        let removal = vec![Decision {
            tag: tag.to_string(),
            reason: "removed by rm".to_string(),
        }];
        self.selection.remove.clone_from(&removal);
        self.removal_plan(&state, &removal, Vec::new()).await
    }

    async fn plan_gc(&mut self, opts: &GcOptions) -> Result<Plan> {
        let store = &*self.store;
        let name = self.layout.name().to_string();
        let protected = Protected::read(store).await?;
        let state = State::read(store, &self.layout).await?;
        let mut selection = lifecycle::select(&state.tags, opts);
        keep_leased(&mut selection, &protected, &name);
        let mut notes = selection.notes();
        let mut removal = selection.remove.clone();
        for tag in state.orphans() {
            let folder = format!("{}/", self.layout.tag_key(&tag));
            if let Some(id) = protected.tag_holder(&name, &tag) {
                let reason = format!("binaries of a push in flight (lease {id})");
                notes.push(lifecycle::kept_line(&folder, &reason));
            } else if state.has_young_files(&tag, opts.grace) {
                let reason = "binaries without a tag document, younger than --grace (a push may be uploading them)";
                notes.push(lifecycle::kept_line(&folder, reason));
            } else {
                let reason = "left over: binaries without a tag document (an interrupted rm or gc)"
                    .to_string();
                removal.push(Decision { tag, reason });
            }
        }
        if removal.is_empty() {
            notes.push(Note::Line(format!(
                "nothing to remove: {} tags, {} kept",
                state.tags.len(),
                selection.keep.len()
            )));
        }
        selection.remove.clone_from(&removal);
        self.selection = selection;
        let mut plan = self.removal_plan(&state, &removal, notes).await?;
        if let Some(why) = &state.unreadable {
            let key = self.layout.name_key();
            let warning =
                format!("{key} is not a valid name document ({why}); rebuilding it from the store");
            plan.warnings.push(warning);
        }
        Ok(plan)
    }

    /// Removes tags in the safe order: name document, tag documents, binaries; then the name
    /// document healed (a concurrent push may have written a removed tag back).
    async fn removal_plan(
        &self,
        state: &State,
        removal: &[Decision],
        notes: Vec<Note>,
    ) -> Result<Plan> {
        let mut plan = Plan {
            notes,
            ..Plan::default()
        };
        if removal.is_empty() {
            return Ok(plan);
        }
        let store = &*self.store;
        let removed: BTreeSet<String> = removal.iter().map(|d| d.tag.clone()).collect();
        let list = DerivedList::Names(self.layout.clone());
        let round = list.round(state.read.clone(), &state.present, &[], &removed)?;
        let rewrite = list.step_from(round, Vec::new(), removed.clone(), false)?;
        // The tag documents of the removed tags, read at once (their sizes for the report).
        let described: Vec<&Decision> = removal
            .iter()
            .filter(|d| state.present.contains(&d.tag))
            .collect();
        let keys: Vec<String> = described
            .iter()
            .map(|d| self.layout.tag_key(&d.tag))
            .collect();
        let mut read = BTreeMap::new();
        for (d, bytes) in described
            .iter()
            .zip(many::get_all(store, &keys, self.reads).await)
        {
            read.insert(d.tag.clone(), bytes?.unwrap_or_default());
        }
        let mut documents = Vec::new();
        let mut binaries = Vec::new();
        for decision in removal {
            let (doc, files) = self.tag_deletions(state, decision, read.get(&decision.tag));
            documents.extend(doc);
            binaries.extend(files);
        }
        let pages = self.page_steps(&rewrite).await?;
        plan.phases = vec![
            Phase::new("name document", vec![rewrite]),
            Phase::new("pages", pages),
            Phase::new("tag documents", documents),
            Phase::new("binaries", binaries),
        ];
        Ok(plan)
    }

    /// After the deletes: drops removed tags a concurrent push wrote back into the name
    /// document meanwhile (it saw their tag documents still there), and lists again a push's
    /// tag that the rewrite dropped (it read the list before the push wrote it).
    async fn heal(&self, removed: BTreeSet<String>) -> Result<Plan> {
        let list = DerivedList::Names(self.layout.clone());
        let heal = list.step(&*self.store, Vec::new(), removed, false).await?;
        let pages = self.page_steps(&heal).await?;
        Ok(Plan {
            phases: vec![
                Phase::new("name document, healed", vec![heal]),
                Phase::new("pages, healed", pages),
            ],
            ..Plan::default()
        })
    }

    /// The tag document and binaries of one removed tag, with their sizes where its tag
    /// document (`document`, as read) gives them.
    fn tag_deletions(
        &self,
        state: &State,
        decision: &Decision,
        document: Option<&bytes::Bytes>,
    ) -> (Option<Step>, Vec<Step>) {
        let tag = &decision.tag;
        let mut sizes = BTreeMap::new();
        let mut doc = None;
        if let Some(bytes) = document {
            let key = self.layout.tag_key(tag);
            sizes = file_sizes(&self.layout, tag, bytes);
            let reason = format!("tag document of {tag}: {}", decision.reason);
            let step = Step::delete(Address::Key(key.clone()), &key, reason);
            doc = Some(step.sized(bytes.len() as u64, Some(oci_digest(bytes))));
        }
        let files = state.files.get(tag).into_iter().flatten().map(|key| {
            let (size, digest) = sizes.get(key).cloned().unwrap_or_default();
            let reason = format!("file of {tag}: {}", decision.reason);
            Step::delete(Address::Key(key.clone()), key, reason).sized(size, digest)
        });
        (doc, files.collect())
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
        self.planned += 1;
        match self.planned {
            1 => {
                let plan = match &self.what {
                    Removing::Tag(tag) => self.plan_rm(&tag.clone()).await?,
                    Removing::Old(opts) => self.plan_gc(&opts.clone()).await?,
                };
                Ok(Some(plan))
            }
            // Nothing to heal where nothing was removed, or nothing ran (a dry run).
            2 if applied && !self.selection.remove.is_empty() => {
                let removed = self.selection.removed().into_iter().collect();
                Ok(Some(self.heal(removed).await?))
            }
            _ => Ok(None),
        }
    }

    fn sweeps(&self) -> Option<String> {
        Some(self.layout.name().to_string())
    }
}

/// Moves tags a push is writing right now (a live lease names them) to the kept ones.
pub fn keep_leased(selection: &mut Selection, protected: &Protected, name: &str) {
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

/// Key → size and digest of the binaries a tag document describes (empty when it cannot be read).
///
/// Both shapes alba has written count: `<os>/<arch>/<path>` (the Go tool's, today's) and
/// `<os>/<arch>/<variant>/<path>` (alba before 2026-12 put every variant there).
fn file_sizes(
    layout: &DfDistLayout,
    tag: &str,
    bytes: &[u8],
) -> BTreeMap<String, (u64, Option<String>)> {
    let Ok(doc) = serde_json::from_slice::<TagDocument>(bytes) else {
        return BTreeMap::new();
    };
    let mut sizes = BTreeMap::new();
    for flavor in &doc.flavors {
        let p = &flavor.platform;
        let dir = DfDistLayout::flavor_dir_of(&p.os, &p.architecture);
        for r in &flavor.resources {
            let digest = r.sha256.as_ref().map(|hex| format!("sha256:{hex}"));
            let entry = (r.size.unwrap_or(0), digest);
            if let Some(v) = &p.variant {
                let key = layout.tag_file(tag, &format!("{dir}{v}/{}", r.path));
                sizes.insert(key, entry.clone());
            }
            sizes.insert(layout.tag_file(tag, &format!("{dir}{}", r.path)), entry);
        }
    }
    sizes
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::publish::derived::NameDocument;
    use crate::report::TargetReport;
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

    /// Runs a removal with a real executor; returns the report.
    async fn run(store: &Arc<dyn ObjectStore>, mut removal: Removal) -> Result<TargetReport> {
        let mut report = TargetReport::new("t", "static", "a", &[], false);
        let ui = crate::ui::Ui::silent();
        let executor = crate::execute::Executor {
            ui: &ui,
            jobs: 2,
            dry_run: false,
        };
        executor.run(store, &mut removal, &mut report).await?;
        Ok(report)
    }

    async fn stored(store: &Arc<dyn ObjectStore>) -> Vec<String> {
        let list = DerivedList::Names(DfDistLayout::new("a"));
        list.stored(&**store).await.unwrap().tags
    }

    #[tokio::test]
    async fn rm_then_gc_with_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(FolderStore::new(dir.path()).unwrap());
        publish(&*store, &["0.1", "0.2", "0.3", "0.4"]).await;
        assert!(
            run(
                &store,
                Removal::new(store.clone(), "a", Removing::Tag("9.9".into()))
            )
            .await
            .is_err()
        );
        run(
            &store,
            Removal::new(store.clone(), "a", Removing::Tag("0.2".into())),
        )
        .await
        .unwrap();
        assert_eq!(stored(&store).await, ["0.4", "0.3", "0.1"]);
        assert!(store.list("df-dist-v1/a/0.2").await.unwrap().is_empty());
        // An interrupted run: the tag document is gone, a binary is left.
        store.delete("df-dist-v1/a/0.1").await.unwrap();
        let opts = GcOptions {
            keep: 1,
            keep_releases: false,
            grace: std::time::Duration::ZERO,
        };
        let mut gc = Removal::new(store.clone(), "a", Removing::Old(opts));
        let mut r = TargetReport::new("t", "static", "a", &[], false);
        let ui = crate::ui::Ui::silent();
        let executor = crate::execute::Executor {
            ui: &ui,
            jobs: 2,
            dry_run: false,
        };
        executor.run(&store, &mut gc, &mut r).await.unwrap();
        assert_eq!(gc.selection.removed(), ["0.3", "0.1"]);
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
