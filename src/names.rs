//! Validation of release names, tags and repository names.
//!
//! Names and tags become object keys and URL path segments: a `/`, `..` or space would
//! publish somewhere else than the user meant, so they are refused before anything is written.

use anyhow::Result;

use crate::bail_input;

/// A `NAME:TAG` reference as given with `-t`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTag {
    /// The release name (`albatros`).
    pub name: String,
    /// The tag (`0.9`).
    pub tag: String,
}

/// Checks a release name: letters, digits, `.`, `_`, `-`, not starting with `.`.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !ok {
        bail_input!(
            "name {name:?} is not valid: use letters, digits, '.', '_' and '-' (no '/', '..' or spaces), e.g. albatros"
        );
    }
    Ok(())
}

/// Checks a tag for static binaries: letters, digits, `.`, `_`, `+`, `-`, not starting with `.`.
pub fn check_static_tag(tag: &str) -> Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with('.')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
    if !ok {
        bail_input!(
            "tag {tag:?} is not valid: use letters, digits, '.', '_', '+' and '-' (no '/', '..' or spaces), e.g. 0.9"
        );
    }
    if crate::publish::pages::is_page_file(tag) {
        bail_input!(
            "tag {tag:?} is the name of a download page file beside the tags; choose another tag"
        );
    }
    Ok(())
}

/// Checks an OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn check_oci_tag(tag: &str) -> Result<()> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let ok = first_ok
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !ok {
        bail_input!(
            "tag {tag:?} is not a valid OCI tag: use letters, digits, '.', '_' and '-', not starting with '.' or '-' (e.g. 0.9-feat instead of 0.9+feat)"
        );
    }
    Ok(())
}

/// Checks an OCI repository name: lowercase components separated by `/`.
pub fn check_repository(repo: &str) -> Result<()> {
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
            && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
            && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
    };
    if repo.len() > 255 || !repo.split('/').all(component_ok) {
        bail_input!(
            "repository {repo:?} is not a valid OCI name: use lowercase letters, digits and '.', '_', '-' between them, components separated by '/'"
        );
    }
    Ok(())
}

/// Parses `-t NAME:TAG` (the tag is required).
pub fn parse_name_tag(text: &str) -> Result<NameTag> {
    let Some((name, tag)) = text.split_once(':') else {
        bail_input!("-t {text:?}: write NAME:TAG, e.g. -t albatros:0.9");
    };
    check_name(name)?;
    check_static_tag(tag)?;
    Ok(NameTag {
        name: name.to_string(),
        tag: tag.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tags() {
        assert!(check_name("albatros").is_ok());
        for bad in ["", "a/b", "..", ".hidden", "a b", "a:b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_static_tag("0.9+feat").is_ok());
        assert!(check_oci_tag("0.9+feat").is_err());
        assert!(check_oci_tag("0.9-feat").is_ok());
        assert!(check_oci_tag("-x").is_err());
        for bad in ["a/b", "..", "a b", ""] {
            assert!(check_static_tag(bad).is_err(), "{bad}");
        }
        assert!(check_repository("dxflrs/albatros").is_ok());
        assert!(check_repository("Dxflrs/albatros").is_err());
        assert!(check_repository("a//b").is_err());
    }

    #[test]
    fn name_tag() {
        let nt = parse_name_tag("albatros:0.9").unwrap();
        assert_eq!((nt.name.as_str(), nt.tag.as_str()), ("albatros", "0.9"));
        assert!(parse_name_tag("albatros").is_err());
        assert!(parse_name_tag("alba/tros:0.9").is_err());
    }
}
