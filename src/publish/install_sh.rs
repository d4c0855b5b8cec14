//! `df-dist-v1/<name>/install.sh`: a POSIX sh installer for the name's latest stable version
//! (or `--version X`), rewritten with the name page.
//!
//! The script (`install.sh` beside this file) has the values it needs embedded as sh
//! single-quoted words: the name, the site's address (`web=`, else `--base URL`), the latest
//! stable tag, the minisign public key and the latest tag's files by platform. Other versions
//! are found from their `SHA256SUMS`, which the script downloads to check the binary anyway.

use super::layout::DfDistLayout;
use super::page::PageTag;

const TEMPLATE: &str = include_str!("install.sh");

/// Quotes `text` as one sh word: single quotes, each `'` as `'\''`.
pub fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The install script of `name`; `latest` is the newest stable tag and its document.
pub fn render(name: &str, web: Option<&str>, latest: Option<(&str, &PageTag)>) -> String {
    let (tag, files, key) = match latest {
        Some((tag, doc)) => (tag, latest_files(doc), doc.minisign_public_key.clone()),
        None => ("", String::new(), None),
    };
    // The comment line takes the name as text: keep it on one line and free of quotes.
    let comment: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .collect();
    TEMPLATE
        .replace("@NAME_TEXT@", &comment)
        .replace("@NAME@", &sh_quote(name))
        .replace("@BASE@", &sh_quote(web.unwrap_or_default()))
        .replace("@LATEST@", &sh_quote(tag))
        .replace("@PUBKEY@", &sh_quote(key.as_deref().unwrap_or_default()))
        .replace("@LATEST_FILES@", &sh_quote(&files))
}

/// `<platform> <path below the tag folder>` per file of a tag, one a line.
fn latest_files(doc: &PageTag) -> String {
    let mut lines = Vec::new();
    for flavor in &doc.flavors {
        let p = &flavor.platform;
        let platform = p.label();
        let dir = DfDistLayout::flavor_dir_of(&p.os, &p.architecture);
        for r in &flavor.resources {
            lines.push(format!("{platform} {dir}{}", r.path));
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_survive_sh() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
        let script = render("albatros", Some("http://x/y"), None);
        assert!(script.contains("NAME='albatros'\n"));
        assert!(script.contains("BASE='http://x/y'\n"));
        assert!(script.contains("LATEST=''\n"));
        assert!(!script.contains('@'), "every placeholder is filled");
    }
}
