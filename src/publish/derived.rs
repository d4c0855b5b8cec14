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

use super::layout::{DfDistKey, DfDistLayout, V2Key, V2Layout};
use crate::plan::{Action, Address, Content, ListUpdate, Step};
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
    /// The stored list's tags (empty when missing or unreadable).
    pub stored: Vec<String>,
    /// The stored object exists.
    pub existed: bool,
    /// The stored object could not be read as a list (it is rebuilt), and why.
    pub unreadable: Option<String>,
    /// The tags it should hold now.
    pub tags: Vec<String>,
}

impl Round {
    /// True when the stored list is what it should be.
    pub fn settled(&self) -> bool {
        self.existed && self.unreadable.is_none() && self.stored == self.tags
    }
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
    pub async fn stored(
        &self,
        store: &dyn ObjectStore,
    ) -> Result<(Vec<String>, bool, Option<String>)> {
        let Some(bytes) = store.get(&self.key()).await? else {
            return Ok((Vec::new(), false, None));
        };
        let tags = match self {
            DerivedList::Names(_) => serde_json::from_slice::<NameDocument>(&bytes).map(|d| d.tags),
            DerivedList::Tags(_) => serde_json::from_slice::<TagList>(&bytes).map(|d| d.tags),
        };
        Ok(match tags {
            Ok(tags) => (tags, true, None),
            Err(e) => (Vec::new(), true, Some(e.to_string())),
        })
    }

    /// The tags whose tag objects exist.
    pub async fn present(&self, store: &dyn ObjectStore) -> Result<BTreeSet<String>> {
        let tags = match self {
            DerivedList::Names(l) => {
                let keys = store.list(&l.prefix()).await?;
                keys.iter()
                    .filter_map(|k| match l.parse(k) {
                        Some(DfDistKey::Tag(tag)) => Some(tag.to_string()),
                        _ => None,
                    })
                    .collect()
            }
            DerivedList::Tags(l) => {
                let keys = store.list(&l.manifest_key("")).await?;
                keys.iter()
                    .filter_map(|k| match l.parse(k) {
                        Some(V2Key::Tag(tag)) if !is_referrers_tag(tag) => Some(tag.to_string()),
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
        let (stored, existed, unreadable) = self.stored(store).await?;
        let present = self.present(store).await?;
        Ok(self.round(stored, existed, unreadable, &present, add, remove))
    }

    /// What the list should be, from a reading made already.
    pub fn round(
        &self,
        stored: Vec<String>,
        existed: bool,
        unreadable: Option<String>,
        present: &BTreeSet<String>,
        add: &[String],
        remove: &BTreeSet<String>,
    ) -> Round {
        let mut present: BTreeSet<String> = present.difference(remove).cloned().collect();
        present.extend(add.iter().cloned());
        let (order, new) = match self {
            DerivedList::Names(_) => (Order::NewestFirst, add.first().map(String::as_str)),
            DerivedList::Tags(_) => (Order::Lexical, None),
        };
        let tags = merge(&stored, &present, new, order);
        Round {
            stored,
            existed,
            unreadable,
            tags,
        }
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
        let status = match (round.settled(), round.existed) {
            (true, _) => Status::Exists,
            (false, true) => Status::Updated,
            (false, false) => Status::New,
        };
        let bytes = self.encode(&round.tags)?;
        let key = self.key();
        let label = format!("document {key}");
        let digest = Some(crate::digest::oci_digest(&bytes));
        let size = bytes.len() as u64;
        let step = Step::write(Address::Key(key.clone()), &key, Content::Bytes(bytes));
        let update = ListUpdate {
            list: self,
            add,
            remove,
            report_unchanged,
            planned: round.tags,
        };
        Ok(Step {
            action: Action::List(update),
            ..step
        }
        .labelled(label)
        .with_status(status)
        .sized(size, digest))
    }
}

/// True for a referrers tag (`sha256-<64 hex>`): the index of a manifest's artifacts, which
/// alba keeps out of `tags/list` and out of `--keep` counts (it lives and goes with its subject).
pub fn is_referrers_tag(reference: &str) -> bool {
    reference
        .strip_prefix("sha256-")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
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
    fn lexical() {
        let present: BTreeSet<String> = s(&["b", "a"]).into_iter().collect();
        assert_eq!(
            merge(&s(&["b"]), &present, Some("c"), Order::Lexical),
            s(&["a", "b", "c"])
        );
    }
}
