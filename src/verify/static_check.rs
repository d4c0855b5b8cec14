//! df-dist-v1 checks, as a download page and a careful user meet them: the name document,
//! each tag document, every file's size and sha256, `SHA256SUMS` against the files, the
//! signature with `--sign-pub`, and each flavor's CycloneDX SBOM.

use std::collections::BTreeMap;

use anyhow::Result;

use super::{Findings, Options, Source};
use crate::publish::derived::NameDocument;
use crate::publish::df_dist::TagDocument;
use crate::publish::layout::DfDistLayout;
use crate::store::many;

/// One tag being checked.
struct TagCheck<'a> {
    source: &'a dyn Source,
    opts: &'a Options,
    name: &'a str,
    tag: &'a str,
    findings: &'a mut Findings,
    /// Files whose bytes differ from their resource, with the documented sha256: a
    /// `SHA256SUMS` line that agrees with the document is not reported again.
    bad_files: BTreeMap<String, Option<String>>,
}

/// Checks the df-dist-v1 release `name` (every tag of its name document, or `tag`).
pub async fn check(
    source: &dyn Source,
    name: &str,
    tag: Option<&str>,
    opts: &Options,
    findings: &mut Findings,
) -> Result<()> {
    let Some(listed) = name_document(source, name, tag, opts, findings).await else {
        return Ok(());
    };
    let tags: Vec<&str> = match tag {
        Some(t) => {
            if !listed.iter().any(|l| l == t) {
                findings.problem(
                    DfDistLayout::new(name).name_key(),
                    format!("does not list the tag {t}, so download pages do not offer it"),
                    opts.republish("static", name, t),
                );
            }
            vec![t]
        }
        None => listed.iter().map(String::as_str).collect(),
    };
    // Tags are checked `opts.reads` at once, each into findings of its own, which are then
    // taken in the order of the tags: the report does not depend on which answer came first.
    let checked = many::in_order(tags, opts.reads, |tag| async move {
        let mut found = Findings::default();
        let mut check = TagCheck {
            source,
            opts,
            name,
            tag,
            findings: &mut found,
            bad_files: BTreeMap::new(),
        };
        check.run().await;
        found
    });
    for found in checked.await {
        findings.absorb(found);
    }
    Ok(())
}

/// Reads and parses the name document; returns its tags.
async fn name_document(
    source: &dyn Source,
    name: &str,
    tag: Option<&str>,
    opts: &Options,
    findings: &mut Findings,
) -> Option<Vec<String>> {
    let key = DfDistLayout::new(name).name_key();
    let fix = opts.republish("static", name, tag.unwrap_or("TAG"));
    let object = match source.get(&key).await {
        Ok(Some(object)) => object,
        Ok(None) => {
            findings.problem(&key, "is missing", fix);
            return None;
        }
        Err(e) => {
            findings.unreadable(&key, &e);
            return None;
        }
    };
    check_json_type(&key, object.content_type.as_deref(), &fix, findings);
    match serde_json::from_slice::<NameDocument>(&object.bytes) {
        Ok(doc) if doc.name == name => {
            findings.checked(&key);
            Some(doc.tags)
        }
        Ok(doc) => {
            findings.problem(&key, format!("names {:?}, not {name:?}", doc.name), fix);
            None
        }
        Err(e) => {
            findings.problem(&key, format!("is not a name document ({e})"), fix);
            None
        }
    }
}

/// A JSON document should be served as `application/json` (pages `fetch` and parse it).
fn check_json_type(key: &str, served: Option<&str>, fix: &str, findings: &mut Findings) {
    if let Some(served) = served
        && !served.starts_with("application/json")
    {
        findings.problem(
            key,
            format!("is served as Content-Type {served:?}, not application/json"),
            fix,
        );
    }
}

/// `<hex>  <path>` lines of a `SHA256SUMS` (path → hex); malformed lines are returned apart.
fn parse_sums(text: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let mut sums = BTreeMap::new();
    let mut bad = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        // `<hex>  <path>` (text mode) or `<hex> *<path>` (binary mode), as coreutils reads them.
        let parsed = line.split_once(' ').and_then(|(hex, rest)| {
            let path = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('*'))?;
            let valid = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
            valid.then(|| (path.to_string(), hex.to_ascii_lowercase()))
        });
        match parsed {
            Some((path, hex)) => {
                sums.insert(path, hex);
            }
            None => bad.push(line.to_string()),
        }
    }
    (sums, bad)
}

impl TagCheck<'_> {
    fn key(&self, relative: &str) -> String {
        format!(
            "{}/{relative}",
            DfDistLayout::new(self.name).tag_key(self.tag)
        )
    }

    fn republish(&self) -> String {
        self.opts.republish("static", self.name, self.tag)
    }

    fn replace(&self, key: &str) -> String {
        self.opts.replace(key, "static", self.name, self.tag)
    }

    async fn run(&mut self) {
        let Some(doc) = self.tag_document().await else {
            return;
        };
        // Path below the tag folder → sha256 as read (or as documented, with --quick).
        let mut files = BTreeMap::new();
        for flavor in &doc.flavors {
            let p = &flavor.platform;
            let dir = DfDistLayout::flavor_dir_of(&p.os, &p.architecture);
            for resource in &flavor.resources {
                let path = format!("{dir}{}", resource.path);
                let hex = self
                    .check_file(&path, resource.size, resource.sha256.as_deref())
                    .await;
                files.insert(path, hex);
            }
            if let Some(sbom) = &flavor.sbom {
                self.check_sbom(sbom).await;
            }
        }
        let sums = match &doc.checksums {
            Some(file) => self.check_sums(file, &files).await,
            None => None,
        };
        self.check_signature(&doc, sums.as_deref()).await;
        self.check_provenance(&doc, &files).await;
    }

    /// With an ECDSA `--sign-pub`: the provenance must exist, verify, and name the binaries.
    async fn check_provenance(
        &mut self,
        doc: &TagDocument,
        files: &BTreeMap<String, Option<String>>,
    ) {
        let Some(check) = &self.opts.ecdsa else {
            return;
        };
        let Some(file) = &doc.provenance else {
            let key = DfDistLayout::new(self.name).tag_key(self.tag);
            let fix = format!(
                "release again with the secret key of {}: `alba release {} --sign-key KEY`",
                check.file, self.tag
            );
            return self
                .findings
                .problem(key, "names no provenance: the tag is not attested", fix);
        };
        let key = self.key(file);
        let envelope = match self.source.get(&key).await {
            Ok(Some(object)) => object.bytes,
            Ok(None) => {
                let fix = self.republish();
                return self
                    .findings
                    .problem(&key, "is missing: the tag document names it", fix);
            }
            Err(e) => return self.findings.unreadable(&key, &e),
        };
        let subjects = files.values().flatten().cloned().collect();
        super::attestations::check_envelope(&key, &envelope, check, &subjects, self.findings);
    }

    async fn tag_document(&mut self) -> Option<TagDocument> {
        let key = DfDistLayout::new(self.name).tag_key(self.tag);
        let fix = self.republish();
        let object = match self.source.get(&key).await {
            Ok(Some(object)) => object,
            Ok(None) => {
                self.findings
                    .problem(&key, "is missing: the name document lists the tag", fix);
                return None;
            }
            Err(e) => {
                self.findings.unreadable(&key, &e);
                return None;
            }
        };
        check_json_type(&key, object.content_type.as_deref(), &fix, self.findings);
        match serde_json::from_slice::<TagDocument>(&object.bytes) {
            Ok(doc) => {
                self.findings.checked(&key);
                Some(doc)
            }
            Err(e) => {
                self.findings
                    .problem(&key, format!("is not a tag document ({e})"), fix);
                None
            }
        }
    }

    /// Checks one file against its resource's size and sha256; returns the sha256 it has
    /// (downloaded), or with `--quick` the documented one.
    async fn check_file(
        &mut self,
        path: &str,
        size: Option<u64>,
        sha256: Option<&str>,
    ) -> Option<String> {
        let key = self.key(path);
        let read = if self.opts.quick {
            self.source.size(&key).await.map(|s| s.map(|s| (s, None)))
        } else {
            let hashed = self.source.hash(&key).await;
            hashed.map(|h| h.map(|(s, hex)| (s, Some(hex))))
        };
        let (actual_size, actual_hex) = match read {
            Ok(Some(found)) => found,
            Ok(None) => {
                let fix = self.republish();
                self.findings
                    .problem(&key, "is missing: the tag document lists it", fix);
                return None;
            }
            Err(e) => {
                self.findings.unreadable(&key, &e);
                return None;
            }
        };
        let size_wrong = size.is_some_and(|s| s != actual_size);
        let hex_wrong = matches!((&actual_hex, sha256), (Some(a), Some(e)) if a != e);
        if size_wrong || hex_wrong {
            self.bad_files
                .insert(path.to_string(), sha256.map(str::to_string));
            let fix = self.replace(&key);
            let expected = sha256.unwrap_or("?");
            self.findings.problem(
                &key,
                format!(
                    "holds other bytes than the tag document says ({actual_size} bytes{}, expected {} bytes, sha256 {expected})",
                    actual_hex.as_deref().map(|h| format!(", sha256 {h}")).unwrap_or_default(),
                    size.map_or("?".to_string(), |s| s.to_string()),
                ),
                fix,
            );
        } else {
            self.findings.checked(&key);
        }
        actual_hex.or_else(|| sha256.map(str::to_string))
    }

    /// Checks `SHA256SUMS` against the files; returns its text for the signature check.
    async fn check_sums(
        &mut self,
        file: &str,
        files: &BTreeMap<String, Option<String>>,
    ) -> Option<Vec<u8>> {
        let key = self.key(file);
        let fix = self.republish();
        let object = match self.source.get(&key).await {
            Ok(Some(object)) => object,
            Ok(None) => {
                self.findings
                    .problem(&key, "is missing: the tag document names it", fix);
                return None;
            }
            Err(e) => {
                self.findings.unreadable(&key, &e);
                return None;
            }
        };
        let text = String::from_utf8_lossy(&object.bytes);
        let (sums, bad) = parse_sums(&text);
        let problems_before = self.findings.problems.len();
        for line in bad {
            self.findings.problem(
                &key,
                format!("has a line `sha256sum -c` cannot read: {line:?}"),
                &fix,
            );
        }
        for (path, hex) in &sums {
            self.check_sum_line(&key, path, hex, files).await;
        }
        for path in files.keys().filter(|p| !sums.contains_key(*p)) {
            self.findings.problem(
                &key,
                format!("does not list {path}, a file of the tag"),
                &fix,
            );
        }
        if self.findings.problems.len() == problems_before {
            self.findings.checked(&key);
        }
        Some(object.bytes.to_vec())
    }

    /// One `SHA256SUMS` line: the file must have that sha256.
    async fn check_sum_line(
        &mut self,
        sums_key: &str,
        path: &str,
        hex: &str,
        files: &BTreeMap<String, Option<String>>,
    ) {
        let actual = match files.get(path) {
            Some(known) => known.clone(),
            // Not a resource of the tag: `sha256sum -c` checks it all the same.
            None => match self.source.hash(&self.key(path)).await {
                Ok(found) => found.map(|(_, h)| h),
                Err(e) => return self.findings.unreadable(&self.key(path), &e),
            },
        };
        match actual {
            Some(actual) if actual == hex => {}
            Some(_)
                if self
                    .bad_files
                    .get(path)
                    .is_some_and(|d| d.as_deref() == Some(hex)) => {}
            Some(actual) => {
                let fix = self.replace(&self.key(path));
                self.findings.problem(
                    self.key(path),
                    format!("has sha256 {actual}, {sums_key} says {hex}: `sha256sum -c` fails"),
                    fix,
                );
            }
            None if files.contains_key(path) => {} // missing: recorded with the file
            None => {
                let fix = self.republish();
                self.findings
                    .problem(sums_key, format!("lists {path}, which does not exist"), fix);
            }
        }
    }

    /// With `--sign-pub`: the signature must exist and verify `SHA256SUMS`.
    async fn check_signature(&mut self, doc: &TagDocument, sums: Option<&[u8]>) {
        let Some((public, file)) = &self.opts.sign_pub else {
            return;
        };
        let sign_fix = format!(
            "sign the release: `alba release {} --sign-key FILE` (the secret key of {file})",
            self.tag
        );
        let (Some(signature), Some(sums)) = (&doc.signature, sums) else {
            let key = DfDistLayout::new(self.name).tag_key(self.tag);
            let what = if doc.checksums.is_none() {
                "SHA256SUMS"
            } else {
                "signature"
            };
            self.findings.problem(
                key,
                format!("names no {what}: the tag is not signed"),
                sign_fix,
            );
            return;
        };
        let key = self.key(signature);
        let text = match self.source.get(&key).await {
            Ok(Some(object)) => String::from_utf8_lossy(&object.bytes).to_string(),
            Ok(None) => {
                self.findings
                    .problem(&key, "is missing: the tag document names it", sign_fix);
                return;
            }
            Err(e) => return self.findings.unreadable(&key, &e),
        };
        if crate::sign::verify_with(public, sums, &text) {
            self.findings.checked(key);
        } else {
            self.findings.problem(
                key,
                format!("does not verify SHA256SUMS with the public key {file}: signed with another key, or SHA256SUMS changed since"),
                format!("check that {file} is the release's public key; otherwise {sign_fix}"),
            );
        }
    }

    /// A flavor's SBOM must exist and be CycloneDX JSON.
    async fn check_sbom(&mut self, path: &str) {
        let key = self.key(path);
        let fix = self.republish();
        let object = match self.source.get(&key).await {
            Ok(Some(object)) => object,
            Ok(None) => {
                return self.findings.problem(
                    &key,
                    "is missing: the tag document names it as an SBOM",
                    fix,
                );
            }
            Err(e) => return self.findings.unreadable(&key, &e),
        };
        let format = serde_json::from_slice::<serde_json::Value>(&object.bytes)
            .ok()
            .and_then(|v| v["bomFormat"].as_str().map(str::to_string));
        if format.as_deref() == Some("CycloneDX") {
            self.findings.checked(key);
        } else {
            let fix = self.replace(&key);
            self.findings.problem(
                key,
                "is not a CycloneDX JSON document (no \"bomFormat\":\"CycloneDX\")",
                fix,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_coreutils_sums() {
        let a = "a".repeat(64);
        let text = format!("{a}  linux/amd64/albatros\n{a} *linux/arm/albatros\nnonsense\n");
        let (sums, bad) = parse_sums(&text);
        assert_eq!(sums.get("linux/amd64/albatros"), Some(&a));
        assert_eq!(sums.get("linux/arm/albatros"), Some(&a), "binary mode");
        assert_eq!(bad, ["nonsense"]);
    }
}
