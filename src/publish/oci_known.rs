//! Reads what a target already holds under an image's name, so layers alba published there
//! before need not be compressed again (the target as a cache, see [`crate::image::published`]).
//!
//! Only small documents are read: the index of each of the newest tags, the platform
//! manifests it names and their configs. Every manifest and config is checked against the
//! digest that names it; anything unreadable, foreign or inconsistent is skipped. This is an
//! optimisation only: whatever goes wrong here, the push compresses what it must.

use std::collections::BTreeSet;

use anyhow::Result;
use futures::StreamExt;

use super::oci::OciSink;
use crate::digest::oci_digest;
use crate::image::{self, Compression, KnownLayer, Published};

/// How many of a target's tags are read (the newest versions first): a release shares most
/// layers with the one before it, rarely with one ten releases old.
const TAGS: usize = 8;
/// Configs larger than this are not read (they are a few KiB).
const CONFIG_LIMIT: u64 = 4 << 20;
/// Documents fetched at once.
const AT_ONCE: usize = 8;

/// The layers `sink` holds that were compressed with `compression`, from the manifests and
/// configs of its newest tags.
pub async fn known_layers(sink: &dyn OciSink, compression: Compression) -> Result<Vec<KnownLayer>> {
    if compression == Compression::None {
        // An uncompressed layer's digest is its diff_id: nothing to learn.
        return Ok(Vec::new());
    }
    let tags = newest(sink.tags().await?);
    let documents: Vec<_> = futures::stream::iter(&tags)
        .map(|tag| sink.manifest(tag))
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    // alba's tags name indexes; their entries are fetched (and checked) by digest.
    let manifests: BTreeSet<String> = documents
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|document| image::manifest_digests(&document))
        .collect();
    let fetched: Vec<_> = futures::stream::iter(manifests)
        .map(|digest| async move { verified_manifest(sink, &digest).await })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let published = fetched
        .into_iter()
        .flatten()
        .filter_map(|m| image::published(&m, compression));
    let published: Vec<Published> = published.collect();
    let learned: Vec<Vec<KnownLayer>> = futures::stream::iter(&published)
        .map(|p| learn(sink, p))
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let mut seen = BTreeSet::new();
    Ok(learned
        .into_iter()
        .flatten()
        .filter(|k| seen.insert(k.diff_id.clone()))
        .collect())
}

/// The newest tags: semver versions greatest first, then the other tags (`latest`, `1.3`,
/// dates, …) in reverse lexical order, which puts later ones first; never the referrers tags
/// (`sha256-<hex>`), which name SBOM indexes.
fn newest(tags: Vec<String>) -> Vec<String> {
    let version = |tag: &str| semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok();
    let mut tags: Vec<String> = tags
        .into_iter()
        .filter(|t| !t.starts_with("sha256-"))
        .collect();
    tags.sort_by(|a, b| match (version(a), version(b)) {
        (Some(a), Some(b)) => b.cmp(&a),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => b.cmp(a),
    });
    tags.truncate(TAGS);
    tags
}

/// A platform manifest by digest, if the sink has it and it hashes to that digest.
async fn verified_manifest(sink: &dyn OciSink, digest: &str) -> Option<bytes::Bytes> {
    let bytes = sink.manifest(digest).await.ok()??;
    (oci_digest(&bytes) == digest).then_some(bytes)
}

/// The layers of one published manifest, from its config (checked against its digest).
async fn learn(sink: &dyn OciSink, published: &Published) -> Vec<KnownLayer> {
    let (digest, size) = &published.config;
    if *size > CONFIG_LIMIT {
        return Vec::new();
    }
    match sink.small_blob(digest, *size).await {
        Ok(Some(config)) if oci_digest(&config) == *digest => {
            image::known_layers(published, &config)
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::newest;

    #[test]
    fn newest_tags_first_and_no_referrers_tags() {
        let tags = [
            "0.9.0",
            "1.10.0",
            "1.2.0",
            "latest",
            "1.3",
            "sha256-abc",
            "v2.0.0-rc.1",
        ];
        let mut many: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        many.extend((0..20).map(|n| format!("2026-01-{n:02}")));
        assert_eq!(
            newest(many)[..5],
            ["v2.0.0-rc.1", "1.10.0", "1.2.0", "0.9.0", "latest"].map(String::from)
        );
        let few = newest(tags.iter().map(|t| t.to_string()).collect());
        assert!(!few.iter().any(|t| t.starts_with("sha256-")));
        assert_eq!(few.len(), 6);
    }
}
