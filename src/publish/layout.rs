//! The two object layouts alba writes on buckets and folders, each owning its keys both ways:
//! building a key from what it holds, and parsing a key back into what it is.
//!
//! ```text
//! df-dist-v1/<name>                            name document
//! df-dist-v1/<name>/<tag>                      tag document
//! df-dist-v1/<name>/<tag>/<os>/<arch>/<path>   a binary (or SHA256SUMS, an SBOM) of the tag
//!
//! v2/index.html                                {} — makes GET /v2/ answer 200
//! v2/<name>/blobs/sha256:<hex>                 configs and layers
//! v2/<name>/manifests/<digest or tag>          manifests, indexes, tag objects
//! v2/<name>/referrers/sha256:<hex>             the referrers answer of a subject
//! v2/<name>/tags/list                          the tag list
//! ```

use crate::platform::Platform;

/// The `df-dist-v1` layout of one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DfDistLayout {
    name: String,
}

/// What a key below a df-dist name is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DfDistKey<'a> {
    /// The name document.
    Name,
    /// A tag document.
    Tag(&'a str),
    /// A file of a tag: binaries, checksums, SBOMs (`rest` is below the tag folder).
    File {
        /// The tag.
        tag: &'a str,
        /// The path below `<tag>/`.
        rest: &'a str,
    },
}

/// The root of the df-dist layout.
pub const DF_DIST_ROOT: &str = "df-dist-v1";

impl DfDistLayout {
    /// The layout of `name`.
    pub fn new(name: &str) -> DfDistLayout {
        DfDistLayout {
            name: name.to_string(),
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key of the name document.
    pub fn name_key(&self) -> String {
        format!("{DF_DIST_ROOT}/{}", self.name)
    }

    /// The prefix of every tag document and file of the name.
    pub fn prefix(&self) -> String {
        format!("{DF_DIST_ROOT}/{}/", self.name)
    }

    /// Key of a tag document (also the tag's folder, without the `/`).
    pub fn tag_key(&self, tag: &str) -> String {
        format!("{}{tag}", self.prefix())
    }

    /// Key of a file of `tag` at `rest` below the tag folder.
    pub fn tag_file(&self, tag: &str, rest: &str) -> String {
        format!("{}/{rest}", self.tag_key(tag))
    }

    /// A platform's folder below the tag folder: `<os>/<arch>/`.
    pub fn flavor_dir(platform: &Platform) -> String {
        DfDistLayout::flavor_dir_of(&platform.os, &platform.architecture)
    }

    /// The folder of a flavor a tag document names by `os` and `architecture`.
    pub fn flavor_dir_of(os: &str, architecture: &str) -> String {
        format!("{os}/{architecture}/")
    }

    /// Key of a binary whose resource path (below `<os>/<arch>/`) is `path`.
    pub fn file_key(&self, tag: &str, platform: &Platform, path: &str) -> String {
        let dir = DfDistLayout::flavor_dir(platform);
        self.tag_file(tag, &format!("{dir}{path}"))
    }

    /// What `key` is, or `None` when it is not below this name.
    pub fn parse<'k>(&self, key: &'k str) -> Option<DfDistKey<'k>> {
        if key == self.name_key() {
            return Some(DfDistKey::Name);
        }
        let rest = key.strip_prefix(&self.prefix())?;
        Some(match rest.split_once('/') {
            Some((tag, rest)) => DfDistKey::File { tag, rest },
            None => DfDistKey::Tag(rest),
        })
    }
}

/// What makes `GET /v2/` answer 200 on a bucket's website (its index document) or a folder.
pub const V2_INDEX: &str = "v2/index.html";

/// The v2 (static registry) layout of one repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Layout {
    name: String,
}

/// What a key below a v2 repository is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V2Key<'a> {
    /// A blob, by digest.
    Blob(&'a str),
    /// A manifest by digest.
    ManifestDigest(&'a str),
    /// A tag object (a user tag or a referrers tag `sha256-<hex>`).
    Tag(&'a str),
    /// The referrers answer of a subject digest.
    Referrers(&'a str),
    /// `tags/list`.
    TagList,
}

impl V2Layout {
    /// The layout of repository `name`.
    pub fn new(name: &str) -> V2Layout {
        V2Layout {
            name: name.to_string(),
        }
    }

    /// The repository name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key of a blob by digest (`""`: the prefix of every blob).
    pub fn blob_key(&self, digest: &str) -> String {
        format!("v2/{}/blobs/{digest}", self.name)
    }

    /// Key of a manifest by digest or tag (`""`: the prefix of every manifest).
    pub fn manifest_key(&self, reference: &str) -> String {
        format!("v2/{}/manifests/{reference}", self.name)
    }

    /// Key of the referrers answer for a subject digest (`referrers/sha256:<hex>`).
    pub fn referrers_key(&self, subject: &str) -> String {
        format!("v2/{}/referrers/{subject}", self.name)
    }

    /// Key of `tags/list`.
    pub fn tags_key(&self) -> String {
        format!("v2/{}/tags/list", self.name)
    }

    /// What `key` is, or `None` when it is none of the above (or nested deeper).
    pub fn parse<'k>(&self, key: &'k str) -> Option<V2Key<'k>> {
        if key == self.tags_key() {
            return Some(V2Key::TagList);
        }
        let flat = |prefix: String| {
            key.strip_prefix(&prefix)
                .filter(|rest| !rest.is_empty() && !rest.contains('/'))
        };
        if let Some(digest) = flat(self.blob_key("")) {
            return Some(V2Key::Blob(digest));
        }
        if let Some(subject) = flat(self.referrers_key("")) {
            return Some(V2Key::Referrers(subject));
        }
        let reference = flat(self.manifest_key(""))?;
        Some(match reference.starts_with("sha256:") {
            true => V2Key::ManifestDigest(reference),
            false => V2Key::Tag(reference),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_dist_keys_round_trip() {
        let l = DfDistLayout::new("albatros");
        let p = Platform::parse("linux/arm/v6").unwrap();
        let key = l.file_key("1.0", &p, "albatros");
        assert_eq!(key, "df-dist-v1/albatros/1.0/linux/arm/albatros");
        assert_eq!(
            l.parse(&key),
            Some(DfDistKey::File {
                tag: "1.0",
                rest: "linux/arm/albatros"
            })
        );
        assert_eq!(l.parse(&l.tag_key("1.0")), Some(DfDistKey::Tag("1.0")));
        assert_eq!(l.parse("df-dist-v1/albatros"), Some(DfDistKey::Name));
        assert_eq!(l.parse("df-dist-v1/albatrosx/1.0"), None);
    }

    #[test]
    fn v2_keys_round_trip() {
        let l = V2Layout::new("a");
        let d = "sha256:00";
        assert_eq!(l.parse(&l.blob_key(d)), Some(V2Key::Blob(d)));
        assert_eq!(l.parse(&l.manifest_key(d)), Some(V2Key::ManifestDigest(d)));
        assert_eq!(l.parse(&l.manifest_key("1.0")), Some(V2Key::Tag("1.0")));
        assert_eq!(l.parse(&l.referrers_key(d)), Some(V2Key::Referrers(d)));
        assert_eq!(l.parse(&l.tags_key()), Some(V2Key::TagList));
        assert_eq!(l.parse("v2/a/manifests/x/y"), None);
        assert_eq!(l.parse("v2/b/blobs/sha256:00"), None);
    }
}
