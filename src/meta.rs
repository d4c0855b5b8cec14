//! What a release says about itself: the version, the flake's revision and time, the project's
//! source. OCI annotations are made of it, and so are SBOMs' metadata.
//!
//! Everything here comes from the flake (its lock and its release description), never from the
//! clock: the same commit gives the same bytes, so a repeated release stays a no-op.

use std::collections::BTreeMap;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::nix::Flake;

/// `org.opencontainers.image.*` keys alba sets.
pub const VERSION: &str = "org.opencontainers.image.version";
/// The git revision the release was built from.
pub const REVISION: &str = "org.opencontainers.image.revision";
/// When the source was last modified (RFC 3339, UTC).
pub const CREATED: &str = "org.opencontainers.image.created";
/// The project's URL.
pub const SOURCE: &str = "org.opencontainers.image.source";

/// The metadata of one release (or one `push`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseMeta {
    /// The version published (the release's tag).
    pub version: String,
    /// The flake's git revision, when it has one.
    pub revision: Option<String>,
    /// The flake's `lastModified`, RFC 3339 UTC.
    pub created: Option<String>,
    /// The project's URL.
    pub source: Option<String>,
    /// The release description's `container.annotations`.
    pub extra: BTreeMap<String, String>,
}

impl ReleaseMeta {
    /// Metadata of a publish that has no flake behind it (a `DIR` push): the version alone.
    pub fn version_only(version: &str) -> ReleaseMeta {
        ReleaseMeta {
            version: version.to_string(),
            ..ReleaseMeta::default()
        }
    }

    /// Metadata of a release from `flake` (given as `flake_ref` by the user).
    pub fn from_flake(
        version: &str,
        flake: &Flake,
        flake_ref: &str,
        source: Option<&str>,
        extra: &BTreeMap<String, String>,
    ) -> ReleaseMeta {
        let source = source
            .map(str::to_string)
            .or_else(|| source_of(&flake.url))
            .or_else(|| source_of(flake_ref));
        ReleaseMeta {
            version: version.to_string(),
            revision: flake.revision.clone(),
            // Only a commit pins the time: a `path:` flake's lastModified moves with any
            // file touched in it (a folder target inside it, even), which would change every
            // digest of a re-run.
            created: flake
                .last_modified
                .filter(|_| flake.revision.is_some())
                .and_then(rfc3339),
            source,
            extra: extra.clone(),
        }
    }

    /// The annotations of the index and every platform manifest: the release description's
    /// own first, then alba's (which win: they say what was built).
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let mut out = self.extra.clone();
        out.insert(VERSION.into(), self.version.clone());
        let optional = [
            (REVISION, &self.revision),
            (CREATED, &self.created),
            (SOURCE, &self.source),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                out.insert(key.into(), value.clone());
            }
        }
        out
    }
}

/// Seconds since the epoch as RFC 3339 UTC (`2026-11-30T12:00:00Z`).
pub fn rfc3339(seconds: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp(seconds)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

/// A web URL for a `github:OWNER/REPO[/REV]` or `git+https://…` flake reference, without
/// any credentials it carries (CI clones as `https://gitlab-ci-token:TOKEN@host/…`).
fn source_of(flake_url: &str) -> Option<String> {
    let no_query = flake_url.split(['?', '#']).next()?;
    if let Some(rest) = no_query.strip_prefix("github:") {
        let mut parts = rest.split('/');
        let (owner, repo) = (parts.next()?, parts.next()?);
        return Some(format!("https://github.com/{owner}/{repo}"));
    }
    let https = no_query.strip_prefix("git+")?;
    let mut url = url::Url::parse(https)
        .ok()
        .filter(|u| u.scheme() == "https")?;
    url.set_username("").ok()?;
    url.set_password(None).ok()?;
    Some(
        url.as_str()
            .trim_end_matches('/')
            .trim_end_matches(".git")
            .to_string(),
    )
}

/// A flake URL fit to show and report: user and password removed.
pub fn without_credentials(flake_url: &str) -> String {
    let Some((scheme, rest)) = flake_url.split_once("://") else {
        return flake_url.to_string();
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://{host}/{path}"),
        None => flake_url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flake(url: &str, revision: Option<&str>) -> Flake {
        Flake {
            url: url.into(),
            revision: revision.map(str::to_string),
            dirty: false,
            last_modified: Some(1_764_504_000),
            description: None,
            local_git: None,
            resolved: Vec::new(),
        }
    }

    #[test]
    fn annotations_from_the_flake() {
        let extra = BTreeMap::from([
            ("org.example.team".to_string(), "ops".to_string()),
            (VERSION.to_string(), "ignored".to_string()),
        ]);
        let meta = ReleaseMeta::from_flake(
            "0.9",
            &flake("github:dxflrs/albatros/abc", Some("abc")),
            ".",
            None,
            &extra,
        );
        let a = meta.annotations();
        assert_eq!(a[VERSION], "0.9");
        assert_eq!(a[REVISION], "abc");
        assert_eq!(a[CREATED], "2025-11-30T12:00:00Z");
        assert_eq!(a[SOURCE], "https://github.com/dxflrs/albatros");
        assert_eq!(a["org.example.team"], "ops");
    }

    #[test]
    fn sources_and_absent_fields() {
        assert_eq!(
            source_of("git+https://git.deuxfleurs.fr/Deuxfleurs/albatros.git?ref=main"),
            Some("https://git.deuxfleurs.fr/Deuxfleurs/albatros".into())
        );
        assert_eq!(source_of("path:/src?narHash=x"), None);
        assert_eq!(
            source_of("git+https://gitlab-ci-token:s3cret@git.example.org/a/b.git?rev=1"),
            Some("https://git.example.org/a/b".into())
        );
        assert_eq!(
            without_credentials("git+https://gitlab-ci-token:s3cret@git.example.org/a/b?rev=1"),
            "git+https://git.example.org/a/b?rev=1"
        );
        assert_eq!(without_credentials("path:/src"), "path:/src");
        let meta = ReleaseMeta::from_flake(
            "1.0",
            &flake("path:/src", None),
            "/src",
            Some("https://example.org/p"),
            &BTreeMap::new(),
        );
        let a = meta.annotations();
        assert!(!a.contains_key(REVISION));
        assert_eq!(a[SOURCE], "https://example.org/p");
        assert_eq!(ReleaseMeta::version_only("2").annotations().len(), 1);
    }
}
