//! What `rm` and `gc` share, for binaries and images: which tags a `gc --keep N` keeps, and
//! why. Deletions are plan steps ([`crate::plan::Step::delete`]) carrying their reason, so
//! `--dry-run` says what would go and why, and `--json` reports each one as a
//! [`crate::report::Status::Deleted`] object with its reason.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::time::Duration;

use super::derived::version_cmp;
use crate::plan::Note;

/// What `gc` keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcOptions {
    /// How many of the newest tags to keep.
    pub keep: usize,
    /// Also keep every tag that looks like a release ([`is_release_tag`]).
    pub keep_releases: bool,
    /// Objects no tag references are deleted only once they are older than this (a push
    /// may be uploading them); content of removed tags goes whatever its age.
    pub grace: Duration,
}

/// What an `rm` or `gc` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removing {
    /// One tag (`rm`); a tag the target does not hold is an error, nothing deleted.
    Tag(String),
    /// What `gc` selects: all but the newest tags (and releases, if asked), and what an
    /// interrupted run left.
    Old(GcOptions),
}

impl Removing {
    /// How young an object no tag references may be and still be kept.
    pub fn grace(&self) -> Duration {
        match self {
            Removing::Tag(_) => DEFAULT_GRACE,
            Removing::Old(opts) => opts.grace,
        }
    }
}

/// The default `--grace`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// One tag and the reason it is kept or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The tag.
    pub tag: String,
    /// Why, in words (`among the 2 newest`).
    pub reason: String,
}

/// The outcome of a `gc` selection: tags kept and tags to remove, both newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Tags that stay.
    pub keep: Vec<Decision>,
    /// Tags to remove.
    pub remove: Vec<Decision>,
}

impl Selection {
    /// The names of the tags to remove.
    pub fn removed(&self) -> Vec<String> {
        self.remove.iter().map(|d| d.tag.clone()).collect()
    }

    /// The names of the tags kept.
    #[cfg(test)]
    pub fn kept(&self) -> Vec<String> {
        self.keep.iter().map(|d| d.tag.clone()).collect()
    }

    /// One note per tag: what stays and what goes, with the reasons.
    pub fn notes(&self) -> Vec<Note> {
        let keep = self.keep.iter().map(|d| {
            let line = format!("keep tag {}: {}", d.tag, d.reason);
            Note::Line(line)
        });
        let remove = self.remove.iter().map(|d| Note::Removes {
            tag: d.tag.clone(),
            reason: d.reason.clone(),
        });
        keep.chain(remove).collect()
    }
}

/// True for tags that look like releases: `v?MAJOR.MINOR.PATCH`, optionally `.BUILD`.
pub fn is_release_tag(tag: &str) -> bool {
    let numbers = tag.strip_prefix('v').unwrap_or(tag);
    let parts: Vec<&str> = numbers.split('.').collect();
    (3..=4).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// True for tags that look like commit ids (40 hex digits).
pub fn is_commit_tag(tag: &str) -> bool {
    tag.len() == 40 && tag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// True for tags that start like a version (`0.9`, `v1.2.3`, `2024.01.05-1`).
pub fn looks_like_version(tag: &str) -> bool {
    let rest = tag.strip_prefix('v').unwrap_or(tag);
    rest.starts_with(|c: char| c.is_ascii_digit()) && !is_commit_tag(tag)
}

/// Container tags, newest first. Registries and static registries keep no push order
/// (`tags/list` is lexical, and not every store can tell an object's age), so "newest" means
/// "greatest version": versions compare part by part (`0.10` after `0.9`) and come before
/// every tag that is not a version (commit ids, branch names), which follow in reverse
/// lexical order.
pub fn newest_first_by_version(tags: &[String]) -> Vec<String> {
    let mut out = tags.to_vec();
    out.sort_by(|a, b| compare_newest_first(a, b));
    out.dedup();
    out
}

fn compare_newest_first(a: &str, b: &str) -> Ordering {
    match (looks_like_version(a), looks_like_version(b)) {
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (true, true) => version_cmp(without_v(b), without_v(a)).then_with(|| b.cmp(a)),
        (false, false) => b.cmp(a),
    }
}

fn without_v(tag: &str) -> &str {
    tag.strip_prefix('v').unwrap_or(tag)
}

/// Splits `newest_first` into the tags `gc` keeps and those it removes: the `keep` first ones,
/// plus release-looking tags when asked.
pub fn select(newest_first: &[String], opts: &GcOptions) -> Selection {
    let mut selection = Selection::default();
    for (i, tag) in newest_first.iter().enumerate() {
        let reason = if i < opts.keep {
            Some(format!("among the {} newest", opts.keep))
        } else if opts.keep_releases && is_release_tag(tag) {
            Some("a release (--keep-releases)".to_string())
        } else {
            None
        };
        let tag = tag.clone();
        match reason {
            Some(reason) => selection.keep.push(Decision { tag, reason }),
            None => {
                let kind = if is_commit_tag(&tag) {
                    "a commit tag"
                } else {
                    "a tag"
                };
                let reason = format!(
                    "{kind} older than the {} newest{}",
                    opts.keep,
                    releases_note(opts)
                );
                selection.remove.push(Decision { tag, reason });
            }
        }
    }
    selection
}

fn releases_note(opts: &GcOptions) -> &'static str {
    if opts.keep_releases {
        " and not a release"
    } else {
        ""
    }
}

/// Moves every removed tag that is not a version and points at the same content as a kept tag
/// (an alias such as `latest` or `stable`) to the kept ones: removing it would free nothing.
/// Version tags count toward `--keep` whatever they point at: `gc --keep 1` of 1.0, 1.1 and
/// 1.2 built from one commit keeps 1.2 alone. `digest_of` gives a tag's content digest.
pub fn keep_aliases(selection: &mut Selection, digest_of: impl Fn(&str) -> Option<String>) {
    let kept: BTreeSet<String> = selection
        .keep
        .iter()
        .filter_map(|d| digest_of(&d.tag))
        .collect();
    let is_alias = |d: &Decision| {
        !looks_like_version(&d.tag) && digest_of(&d.tag).is_some_and(|dg| kept.contains(&dg))
    };
    let (aliases, remove): (Vec<Decision>, Vec<Decision>) = std::mem::take(&mut selection.remove)
        .into_iter()
        .partition(is_alias);
    selection.remove = remove;
    for d in aliases {
        let reason = "not a version, and points at the same image as a kept tag".to_string();
        selection.keep.push(Decision { tag: d.tag, reason });
    }
}

/// The warning about removed container tags that are not versions: their rank is a guess.
pub fn unversioned_warning(selection: &Selection) -> Option<String> {
    let guessed: Vec<String> = selection
        .remove
        .iter()
        .filter(|d| !looks_like_version(&d.tag))
        .map(|d| d.tag.clone())
        .collect();
    let tags = match guessed.len() {
        0 => return None,
        1 => format!("tag {} is", guessed[0]),
        _ => format!("tags {} are", guessed.join(", ")),
    };
    Some(format!(
        "{tags} not versions: with no push dates to go by, they rank below every version"
    ))
}

/// The note saying that an object gc would have deleted stays, and why (a lease, the grace
/// period).
pub fn kept_line(key: &str, reason: &str) -> Note {
    Note::Line(format!("keep {key}: {reason}"))
}

/// `0.9, 0.8` or `none`, for messages.
pub fn tag_list(tags: &[String]) -> String {
    if tags.is_empty() {
        "none".to_string()
    } else {
        tags.join(", ")
    }
}

/// Which container tags `gc` keeps: releases ranked by version (semver aliases aside), the
/// newest `opts.keep` kept, then non-version aliases (`latest`) and semver aliases (`1.2`) of
/// a kept image kept with it. `digest_of` gives a tag's content digest.
pub fn select_container_tags(
    tags: &[String],
    opts: &GcOptions,
    digest_of: impl Fn(&str) -> Option<String> + Copy,
) -> Selection {
    let aliases = semver_aliases(tags, digest_of);
    let ranked: Vec<String> = tags
        .iter()
        .filter(|t| !aliases.contains(*t))
        .cloned()
        .collect();
    let mut selection = select(&newest_first_by_version(&ranked), opts);
    keep_aliases(&mut selection, digest_of);
    place_aliases(&mut selection, &aliases, digest_of);
    selection
}

/// The semver alias tags among `tags` (`1.2`, `1` written by `--aliases`): a tag `X` or
/// `X.Y` pointing at the same image as a release `X.Y.Z` of that line. They rank as no
/// version of their own: `gc --keep N` counts releases, and an alias lives and goes with the
/// release it points at ([`place_aliases`]).
pub fn semver_aliases(
    tags: &[String],
    digest_of: impl Fn(&str) -> Option<String>,
) -> BTreeSet<String> {
    let releases: Vec<(semver::Version, Option<String>)> = tags
        .iter()
        .filter_map(|t| {
            let v = semver::Version::parse(t.strip_prefix('v').unwrap_or(t)).ok()?;
            Some((v, digest_of(t)))
        })
        .collect();
    tags.iter()
        .filter(|alias| {
            let parts: Vec<&str> = alias.split('.').collect();
            let numbers: Option<Vec<u64>> = parts.iter().map(|p| p.parse().ok()).collect();
            let Some(numbers) = numbers.filter(|n| (1..=2).contains(&n.len())) else {
                return false;
            };
            let digest = digest_of(alias);
            releases.iter().any(|(v, d)| {
                let same_line =
                    v.major == numbers[0] && numbers.get(1).is_none_or(|m| v.minor == *m);
                same_line && digest.is_some() && *d == digest
            })
        })
        .cloned()
        .collect()
}

/// Puts each semver alias beside the release it points at: kept when that image is kept,
/// removed with it otherwise.
pub fn place_aliases(
    selection: &mut Selection,
    aliases: &BTreeSet<String>,
    digest_of: impl Fn(&str) -> Option<String>,
) {
    let kept: BTreeSet<String> = selection
        .keep
        .iter()
        .filter_map(|d| digest_of(&d.tag))
        .collect();
    for alias in aliases {
        let tag = alias.clone();
        if digest_of(alias).is_some_and(|d| kept.contains(&d)) {
            let reason = "a semver alias of a kept release".to_string();
            selection.keep.push(Decision { tag, reason });
        } else {
            let reason = "a semver alias of a removed release".to_string();
            selection.remove.push(Decision { tag, reason });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn release_and_commit_tags() {
        for t in ["1.2.3", "v1.2.3", "0.0.1.4", "v10.20.30.40"] {
            assert!(is_release_tag(t), "{t}");
        }
        for t in [
            "1.2",
            "1.2.3-rc1",
            "v1.2.3.4.5",
            "latest",
            "1..3",
            "vv1.2.3",
            "",
        ] {
            assert!(!is_release_tag(t), "{t}");
        }
        assert!(is_commit_tag("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit_tag("0123456789abcdef"));
    }

    #[test]
    fn selects_newest_and_releases() {
        let tags = s(&[
            "feat",
            "1.2.0",
            "0123456789abcdef0123456789abcdef01234567",
            "1.1.0",
            "0.9",
        ]);
        let opts = GcOptions {
            keep: 2,
            keep_releases: false,
            grace: DEFAULT_GRACE,
        };
        let sel = select(&tags, &opts);
        assert_eq!(sel.kept(), s(&["feat", "1.2.0"]));
        assert_eq!(
            sel.removed(),
            s(&["0123456789abcdef0123456789abcdef01234567", "1.1.0", "0.9"])
        );
        let sel = select(
            &tags,
            &GcOptions {
                keep_releases: true,
                ..opts
            },
        );
        assert_eq!(sel.kept(), s(&["feat", "1.2.0", "1.1.0"]));
        assert_eq!(
            sel.removed(),
            s(&["0123456789abcdef0123456789abcdef01234567", "0.9"])
        );
        assert!(
            select(&tags, &GcOptions { keep: 0, ..opts })
                .kept()
                .is_empty()
        );
    }

    #[test]
    fn version_order_and_aliases() {
        let tags = s(&["0.9", "latest", "0.10", "v0.11", "abc"]);
        assert_eq!(
            newest_first_by_version(&tags),
            s(&["v0.11", "0.10", "0.9", "latest", "abc"])
        );
        let mut sel = select(
            &newest_first_by_version(&tags),
            &GcOptions {
                keep: 1,
                keep_releases: false,
                grace: DEFAULT_GRACE,
            },
        );
        keep_aliases(&mut sel, |t| {
            Some(if t == "latest" || t == "v0.11" {
                "A".into()
            } else {
                t.into()
            })
        });
        assert_eq!(sel.kept(), s(&["v0.11", "latest"]));
        assert_eq!(sel.removed(), s(&["0.10", "0.9", "abc"]));
    }

    #[test]
    fn versions_of_one_image_count_toward_keep() {
        // 1.0, 1.1 and 1.2 built from the same commit: one image, three version tags.
        let tags = s(&["1.0", "1.1", "1.2", "latest", "stable", "abc"]);
        let mut sel = select(
            &newest_first_by_version(&tags),
            &GcOptions {
                keep: 1,
                keep_releases: false,
                grace: DEFAULT_GRACE,
            },
        );
        keep_aliases(&mut sel, |t| {
            Some(if t == "abc" { "B".into() } else { "A".into() })
        });
        assert_eq!(sel.kept(), s(&["1.2", "stable", "latest"]));
        assert_eq!(sel.removed(), s(&["1.1", "1.0", "abc"]));
        let reasons: Vec<&str> = sel.keep.iter().map(|d| d.reason.as_str()).collect();
        assert!(reasons[1].contains("not a version"), "{reasons:?}");
    }

    #[test]
    fn semver_aliases_follow_their_release() {
        let tags = s(&["1.2.3", "1.3.0", "1.3", "1", "1.2", "latest", "0.9"]);
        let digest = |t: &str| {
            Some(match t {
                "1.3.0" | "1.3" | "1" | "latest" => "B".to_string(),
                "1.2.3" | "1.2" => "A".to_string(),
                other => other.to_string(),
            })
        };
        let aliases = semver_aliases(&tags, digest);
        assert_eq!(
            aliases.into_iter().collect::<Vec<_>>(),
            s(&["1", "1.2", "1.3"])
        );
        let ranked: Vec<String> = tags
            .iter()
            .filter(|t| !semver_aliases(&tags, digest).contains(*t))
            .cloned()
            .collect();
        let mut sel = select(
            &newest_first_by_version(&ranked),
            &GcOptions {
                keep: 1,
                keep_releases: false,
                grace: DEFAULT_GRACE,
            },
        );
        keep_aliases(&mut sel, digest);
        place_aliases(&mut sel, &semver_aliases(&tags, digest), digest);
        let mut kept = sel.kept();
        kept.sort();
        assert_eq!(kept, s(&["1", "1.3", "1.3.0", "latest"]));
        let mut removed = sel.removed();
        removed.sort();
        assert_eq!(removed, s(&["0.9", "1.2", "1.2.3"]));
    }
}
