//! Derived lists: a df-dist-v1 name document's tags (newest first) and an OCI `tags/list`
//! (lexical). One type keeps both: add a tag, remove tags, heal from what the store holds,
//! read back.
//!
//! Garage ignores conditional PUTs, so two releases at once can race on a list. Lists are
//! therefore rebuilt from what the store holds: the stored order is kept, tags present in
//! the store but missing from the list are added, tags whose objects are gone are dropped.

use std::collections::BTreeSet;

use anyhow::Result;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::df_dist::TagDocument;
use super::layout::{DfDistKey, DfDistLayout, V2Key, V2Layout};
use crate::plan::{ListUpdate, Step};
use crate::report::Status;
use crate::store::ObjectStore;

/// The df-dist-v1 name document: every tag, newest first.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct NameDocument {
    /// The release name.
    pub name: String,
    /// Tags, newest first.
    pub tags: Vec<String>,
}

/// The `tags/list` document.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct TagList {
    /// Repository name.
    pub name: String,
    /// Tags, lexical order.
    pub tags: Vec<String>,
}

/// A list derived from the tag objects a store holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DerivedList {
    /// A df-dist name document: the tags whose tag documents exist, newest first.
    Names(DfDistLayout),
    /// A static registry's `tags/list`: the tags whose tag objects exist (referrers tags
    /// aside), lexical.
    Tags(V2Layout),
}

/// One reading of a list: what is stored, and what it should be.
#[derive(Debug, Clone)]
pub struct Round {
    /// What is stored.
    pub stored: Stored,
    /// The tags it should hold now.
    pub tags: Vec<String>,
    /// The document for them.
    pub bytes: Bytes,
}

impl Round {
    /// True when the stored list is what it should be, to the byte; a missing list that
    /// should be empty needs no write either.
    pub fn settled(&self) -> bool {
        match &self.stored.bytes {
            Some(stored) => *stored == self.bytes,
            None => self.tags.is_empty(),
        }
    }

    /// The stored object exists.
    pub fn existed(&self) -> bool {
        self.stored.bytes.is_some()
    }

    /// What writing the list now is: `exists` when settled, `updated` over a stored list,
    /// `new` where there was none.
    pub fn status(&self) -> Status {
        match (self.settled(), self.existed()) {
            (true, _) => Status::Exists,
            (false, true) => Status::Updated,
            (false, false) => Status::New,
        }
    }
}

/// A stored list, as read.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// Its tags (empty when missing or unreadable).
    pub tags: Vec<String>,
    /// Its bytes, `None` when missing.
    pub bytes: Option<Bytes>,
    /// Why it could not be read as a list, when it could not (it is rebuilt).
    pub unreadable: Option<String>,
}

impl DerivedList {
    /// The key of the list.
    pub fn key(&self) -> String {
        match self {
            DerivedList::Names(l) => l.name_key(),
            DerivedList::Tags(l) => l.tags_key(),
        }
    }

    /// The document for `tags`.
    pub fn encode(&self, tags: &[String]) -> Result<Bytes> {
        let tags = tags.to_vec();
        Ok(Bytes::from(match self {
            DerivedList::Names(l) => serde_json::to_vec(&NameDocument {
                name: l.name().to_string(),
                tags,
            })?,
            DerivedList::Tags(l) => serde_json::to_vec(&TagList {
                name: l.name().to_string(),
                tags,
            })?,
        }))
    }

    /// The stored list's tags, and whether it exists and could be read.
    pub async fn stored(&self, store: &dyn ObjectStore) -> Result<Stored> {
        let Some(bytes) = store.get(&self.key()).await? else {
            return Ok(Stored::default());
        };
        let tags = match self {
            DerivedList::Names(_) => serde_json::from_slice::<NameDocument>(&bytes).map(|d| d.tags),
            DerivedList::Tags(_) => serde_json::from_slice::<TagList>(&bytes).map(|d| d.tags),
        };
        let (tags, unreadable) = match tags {
            Ok(tags) => (tags, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        Ok(Stored {
            tags,
            bytes: Some(bytes),
            unreadable,
        })
    }

    /// The tags whose tag objects exist.
    pub async fn present(&self, store: &dyn ObjectStore) -> Result<BTreeSet<String>> {
        self.present_among(store, &[]).await
    }

    /// The tags whose tag objects exist; for a name document, `known` tags (listed already)
    /// are trusted by their key, other keys only when they hold a tag document.
    pub async fn present_among(
        &self,
        store: &dyn ObjectStore,
        known: &[String],
    ) -> Result<BTreeSet<String>> {
        let tags = match self {
            DerivedList::Names(l) => {
                let keys = store.list(&l.prefix()).await?;
                tag_documents(store, l, &keys, known).await?
            }
            DerivedList::Tags(l) => {
                let keys = store.list(&l.manifest_key("")).await?;
                keys.iter()
                    .filter_map(|k| match l.parse(k) {
                        Some(V2Key::Tag(tag)) if !is_attached_tag(tag) => Some(tag.to_string()),
                        _ => None,
                    })
                    .collect()
            }
        };
        Ok(tags)
    }

    /// Reads the list and the tag objects: what is stored and what it should be, with `add`
    /// counted as present (first, for a newest-first list) and `remove` dropped.
    pub async fn read(
        &self,
        store: &dyn ObjectStore,
        add: &[String],
        remove: &BTreeSet<String>,
    ) -> Result<Round> {
        let stored = self.stored(store).await?;
        // Tags being removed are dropped whatever their keys hold: trusting them as known
        // saves a GET each (an rm or gc reads its list back while their keys still exist).
        let mut known = stored.tags.clone();
        known.extend(remove.iter().cloned());
        let present = self.present_among(store, &known).await?;
        self.round(stored, &present, add, remove)
    }

    /// What the list should be, from a reading made already.
    pub fn round(
        &self,
        stored: Stored,
        present: &BTreeSet<String>,
        add: &[String],
        remove: &BTreeSet<String>,
    ) -> Result<Round> {
        let mut present: BTreeSet<String> = present.difference(remove).cloned().collect();
        present.extend(add.iter().cloned());
        let (order, new) = match self {
            DerivedList::Names(_) => (Order::NewestFirst, add.first().map(String::as_str)),
            DerivedList::Tags(_) => (Order::Lexical, None),
        };
        let tags = merge(&stored.tags, &present, new, order);
        let bytes = self.encode(&tags)?;
        Ok(Round {
            stored,
            tags,
            bytes,
        })
    }
}

impl DerivedList {
    /// A plan step bringing the list up to date: its status and content as they would be
    /// now (what a dry run shows); the executor rebuilds it from the store when it runs.
    /// `report_unchanged`: report the list even when it needs no write (pushes do; rm and
    /// gc say only what they change).
    pub async fn step(
        self,
        store: &dyn ObjectStore,
        add: Vec<String>,
        remove: BTreeSet<String>,
        report_unchanged: bool,
    ) -> Result<Step> {
        let round = self.read(store, &add, &remove).await?;
        self.step_from(round, add, remove, report_unchanged)
    }

    /// [`DerivedList::step`] from a reading made already (`round`, of the same `add` and
    /// `remove`): a planner that has read the list and the tag objects need not read them again.
    pub fn step_from(
        self,
        round: Round,
        add: Vec<String>,
        remove: BTreeSet<String>,
        report_unchanged: bool,
    ) -> Result<Step> {
        let status = round.status();
        let label = format!("document {}", self.key());
        let digest = Some(crate::digest::oci_digest(&round.bytes));
        let size = round.bytes.len() as u64;
        let update = ListUpdate {
            list: self,
            add,
            remove,
            report_unchanged,
            planned: round.tags,
        };
        Ok(Step::list(update)
            .labelled(label)
            .with_status(status)
            .sized(size, digest))
    }
}

/// The tags among `keys` (a listing below a df-dist name) whose tag documents exist: a key
/// directly below the name is a tag when `known` lists it, or else when it holds a tag
/// document (one GET per unknown key). Pages and foreign objects there are never tags.
pub async fn tag_documents(
    store: &dyn ObjectStore,
    layout: &DfDistLayout,
    keys: &[String],
    known: &[String],
) -> Result<BTreeSet<String>> {
    let mut tags = BTreeSet::new();
    for key in keys {
        let Some(DfDistKey::Tag(tag)) = layout.parse(key) else {
            continue;
        };
        if super::pages::is_page_file(tag) {
            continue;
        }
        let listed = known.iter().any(|t| t == tag);
        let document = || async {
            let bytes = store.get(key).await?;
            let parsed = bytes.map(|b| serde_json::from_slice::<TagDocument>(&b).is_ok());
            anyhow::Ok(parsed.unwrap_or(false))
        };
        if listed || document().await? {
            tags.insert(tag.to_string());
        }
    }
    Ok(tags)
}

/// True for a referrers tag (`sha256-<64 hex>`): the index of a manifest's artifacts, which
/// alba keeps out of `tags/list` and out of `--keep` counts (it lives and goes with its subject).
pub fn is_referrers_tag(reference: &str) -> bool {
    reference
        .strip_prefix("sha256-")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The subject of a tag attached to a manifest: a referrers tag `sha256-<hex>`, or a tag
/// `sha256-<hex>.<suffix>` (cosign's signatures `.sig` and attestations `.att`) gives
/// `sha256:<hex>`. Such tags are no release's: alba keeps them out of `tags/list` and out of
/// `--keep` counts, and removes them with their subject.
pub fn attached_subject(tag: &str) -> Option<String> {
    let (base, suffix) = match tag.split_once('.') {
        Some((base, suffix)) => (base, Some(suffix)),
        None => (tag, None),
    };
    let suffix_ok =
        suffix.is_none_or(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric()));
    (is_referrers_tag(base) && suffix_ok).then(|| base.replacen('-', ":", 1))
}

/// True for a tag attached to a manifest ([`attached_subject`]).
pub fn is_attached_tag(tag: &str) -> bool {
    attached_subject(tag).is_some()
}

/// How a list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Newest first (df-dist-v1): the new tag goes in front, the stored order is kept.
    NewestFirst,
    /// Lexical (OCI `tags/list`).
    Lexical,
}

/// Merges a stored list with the tags present in the store and the tag being published.
pub fn merge(
    stored: &[String],
    present: &BTreeSet<String>,
    new: Option<&str>,
    order: Order,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let push = |tag: &str, out: &mut Vec<String>| {
        if !out.iter().any(|t| t == tag) {
            out.push(tag.to_string());
        }
    };
    if let Some(tag) = new
        && !stored.iter().any(|t| t == tag)
    {
        push(tag, &mut out);
    }
    // Present but unlisted tags are most likely lost concurrent updates: recent, so in front.
    let mut missing: Vec<&String> = present.iter().filter(|t| !stored.contains(t)).collect();
    missing.sort_by(|a, b| version_cmp(b, a));
    for tag in missing {
        push(tag, &mut out);
    }
    for tag in stored {
        if present.contains(tag) || Some(tag.as_str()) == new {
            push(tag, &mut out);
        }
    }
    if order == Order::Lexical {
        out.sort();
    }
    out
}

/// Compares tags as versions where they look like versions (`0.10` after `0.9`).
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |s: &str| -> Vec<(u64, String)> {
        s.split(|c: char| !c.is_ascii_alphanumeric())
            .map(|p| (p.parse::<u64>().unwrap_or(0), p.to_string()))
            .collect()
    };
    key(a).cmp(&key(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn newest_first_keeps_order_adds_and_drops() {
        let stored = s(&["0.9", "0.8", "gone"]);
        let present: BTreeSet<String> = s(&["0.8", "0.9", "0.10", "0.11"]).into_iter().collect();
        let merged = merge(&stored, &present, Some("1.0"), Order::NewestFirst);
        assert_eq!(merged, s(&["1.0", "0.11", "0.10", "0.9", "0.8"]));
        // Re-publishing a listed tag keeps its place.
        let merged = merge(
            &s(&["0.9", "0.8"]),
            &present,
            Some("0.8"),
            Order::NewestFirst,
        );
        assert_eq!(merged[..], s(&["0.11", "0.10", "0.9", "0.8"])[..]);
    }

    #[test]
    fn attached_tags_name_their_subject() {
        let hex = "ab".repeat(32);
        let subject = Some(format!("sha256:{hex}"));
        for tag in [
            format!("sha256-{hex}"),
            format!("sha256-{hex}.sig"),
            format!("sha256-{hex}.att"),
        ] {
            assert_eq!(attached_subject(&tag), subject, "{tag}");
        }
        for tag in [
            format!("sha256-{hex}."),
            format!("sha256-{hex}.a.b"),
            "sha256-12.sig".into(),
            "1.2.3".into(),
        ] {
            assert!(!is_attached_tag(&tag), "{tag}");
        }
    }

    #[test]
    fn lexical() {
        let present: BTreeSet<String> = s(&["b", "a"]).into_iter().collect();
        assert_eq!(
            merge(&s(&["b"]), &present, Some("c"), Order::Lexical),
            s(&["a", "b", "c"])
        );
    }
}

#[cfg(test)]
mod round_tests {
    use super::*;
    use crate::store::fs::FolderStore;

    fn tags(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// rm and gc never create a list that would be empty; a push creates its list; a stored
    /// list with the right tags but other bytes is rewritten.
    #[tokio::test]
    async fn settled_means_the_stored_bytes_are_right() {
        let dir = tempfile::tempdir().unwrap();
        let store = FolderStore::new(dir.path()).unwrap();
        let list = DerivedList::Tags(V2Layout::new("a"));
        let none = BTreeSet::new();
        assert!(list.read(&store, &[], &none).await.unwrap().settled());
        let push = list.read(&store, &tags(&["1.0"]), &none).await.unwrap();
        assert!(!push.settled() && !push.existed());
        let loose = Bytes::from_static(br#"{ "name": "a", "tags": ["1.0"] }"#);
        let put = crate::store::Put::bytes(list.key(), loose, "application/json");
        store.put(&put).await.unwrap();
        let round = list.read(&store, &tags(&["1.0"]), &none).await.unwrap();
        assert_eq!(round.stored.tags, tags(&["1.0"]));
        assert!(!round.settled(), "rewritten in alba's own form");
    }
}
