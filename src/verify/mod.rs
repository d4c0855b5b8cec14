//! `alba verify`: reads back what was published the way clients do, and checks it.
//!
//! A download page reads df-dist-v1 documents and binaries; a pull client reads `/v2/`,
//! `tags/list`, manifests and blobs. Verify follows the same paths through a [`Source`]
//! (the S3 API, a folder, or the public website endpoint with `--web`) or a registry's API,
//! and collects every problem it meets as a [`Problem`] naming the object and the fix, rather
//! than stopping at the first: one run tells everything that is wrong.

pub mod attestations;
pub mod oci_check;
pub mod oci_source;
pub mod source;
pub mod static_check;
pub mod web;

use std::collections::BTreeSet;

use anyhow::Result;
use serde::Serialize;

pub use source::{Object, Source, StoreSource};

/// One thing that does not hold, with what to do about it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// The object concerned: a key, a path below the website URL, or a registry reference.
    pub object: String,
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub fix: String,
}

/// What a run found: problems, and every object it read.
#[derive(Debug, Default, Serialize)]
pub struct Findings {
    /// The problems, in the order they were found.
    pub problems: Vec<Problem>,
    /// Every object read and checked (each once).
    pub checked: BTreeSet<String>,
}

impl Findings {
    /// Records a problem.
    pub fn problem(
        &mut self,
        object: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.problems.push(Problem {
            object: object.into(),
            problem: problem.into(),
            fix: fix.into(),
        });
    }

    /// Takes over what another run found (one tag's check), after what this one holds.
    pub fn absorb(&mut self, other: Findings) {
        self.problems.extend(other.problems);
        self.checked.extend(other.checked);
    }

    /// Records that `object` was read and checked.
    pub fn checked(&mut self, object: impl Into<String>) {
        self.checked.insert(object.into());
    }

    /// Records a read that failed (network, permissions) as a problem of `object`.
    pub fn unreadable(&mut self, object: &str, error: &anyhow::Error) {
        self.problem(
            object,
            format!(
                "cannot be read: {}",
                crate::error::one_line(&format!("{error:#}"))
            ),
            "check the target URL, the credentials and that the server is up, then verify again",
        );
    }
}

/// How to check.
pub struct Options {
    /// HEAD and size only, no whole downloads.
    pub quick: bool,
    /// The public key `SHA256SUMS.minisig` must verify with.
    pub sign_pub: Option<(minisign::PublicKey, String)>,
    /// The ECDSA public key image signatures and provenance must verify with.
    pub ecdsa: Option<attestations::EcdsaCheck>,
    /// What to publish again with, in fixes (`alba static push -t NAME:TAG … TARGET`).
    pub target_text: String,
    /// The Garage bucket behind the target, for Garage fixes (`garage bucket website …`).
    pub bucket: Option<String>,
    /// Tags checked at once ([`crate::store::many::reads`] of `--jobs`).
    pub reads: usize,
}

impl Options {
    /// The fix for an object that is missing or wrong: publish the tag again.
    pub fn republish(&self, kind: &str, name: &str, tag: &str) -> String {
        format!(
            "publish the tag again: `alba {kind} push -t {name}:{tag} DIR {}` (or `alba release {tag}`) rewrites what is missing",
            self.target_text
        )
    }

    /// The fix for an object whose bytes are wrong: delete it, then publish again (a push
    /// skips objects that exist, so it would keep the bad copy).
    pub fn replace(&self, key: &str, kind: &str, name: &str, tag: &str) -> String {
        format!(
            "delete {key} from the target, then {}",
            self.republish(kind, name, tag)
        )
    }
}

/// The JSON report of `alba verify --json`.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    /// The target checked.
    pub target: &'a str,
    /// Where objects were read from (the S3 API, a folder, a website URL, a registry).
    pub read_through: String,
    /// The name checked.
    pub name: &'a str,
    /// The tag checked, or `None` for all.
    pub tag: Option<&'a str>,
    /// True when there are no problems.
    pub ok: bool,
    /// How many objects were read and checked.
    pub objects_checked: usize,
    /// The problems.
    pub problems: &'a [Problem],
    /// The objects read and checked.
    pub checked: &'a BTreeSet<String>,
}

/// Checks everything `name` has on an object store read through `source`: the df-dist-v1
/// release when its name document exists, the static registry when its `tags/list` exists.
pub async fn check_store(
    source: &dyn Source,
    name: &str,
    tag: Option<&str>,
    opts: &Options,
    findings: &mut Findings,
) -> Result<()> {
    let name_key = crate::publish::layout::DfDistLayout::new(name).name_key();
    let repository = name.to_ascii_lowercase();
    let images = oci_source::StaticImages::new(source, &repository);
    let has_static = exists(source, &name_key, findings).await;
    let has_images = exists(source, &images.tags_key(), findings).await;
    if has_static {
        static_check::check(source, name, tag, opts, findings).await?;
    }
    if has_images {
        oci_check::check(&images, name, tag, opts, findings).await?;
    }
    if !has_static && !has_images && findings.problems.is_empty() {
        findings.problem(
            name,
            format!(
                "nothing is published under this name on {}: neither {name_key} nor {} exists",
                source.describe(),
                images.tags_key()
            ),
            "check -t and the target URL, or publish first (`alba release VERSION`, `alba static push`, `alba container push`)",
        );
    }
    Ok(())
}

/// True when `key` exists; a failed read becomes a problem (and counts as absent).
async fn exists(source: &dyn Source, key: &str, findings: &mut Findings) -> bool {
    match source.size(key).await {
        Ok(size) => size.is_some(),
        Err(e) => {
            findings.unreadable(key, &e);
            false
        }
    }
}

/// True when `digest` is `sha256:` and 64 hex digits, a digest alba can check.
pub fn is_sha256_digest(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        assert!(is_sha256_digest(&format!("sha256:{}", "a".repeat(64))));
        assert!(!is_sha256_digest("sha256:abc"));
        assert!(!is_sha256_digest(&format!("sha512:{}", "a".repeat(64))));
    }

    #[test]
    fn findings_collect() {
        let mut f = Findings::default();
        f.checked("a");
        f.checked("a");
        f.problem("k", "is missing", "publish");
        assert_eq!(f.checked.len(), 1);
        assert_eq!(f.problems[0].object, "k");
    }
}
