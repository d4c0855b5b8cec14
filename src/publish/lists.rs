//! Derived lists (a df-dist-v1 name document's tags, an OCI `tags/list`).
//!
//! Garage ignores conditional PUTs, so two releases at once can race on a list. Lists are
//! therefore rebuilt from what the store holds: the stored order is kept, tags present in
//! the store but missing from the list are added, tags whose objects are gone are dropped.

use std::collections::BTreeSet;

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
