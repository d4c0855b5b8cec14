//! CycloneDX SBOMs of Nix closures: every store path a published artifact needs at run time,
//! from `nix path-info --json --recursive`, with its NAR hash and its references.
//!
//! alba writes the JSON itself (serde_json, sorted keys) rather than through `cyclonedx-bom`:
//! the document is small and fixed, and it must be deterministic — no random serial number,
//! no clock — so that the same store paths always give the same bytes and a repeated release
//! sends nothing. The serial number is derived from the content; the timestamp is the flake's.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use std::path::PathBuf;

use crate::artifact::ArtifactSet;
use crate::config::Kind;
use crate::meta::ReleaseMeta;
use crate::nix::{Nix, PathInfo};
use crate::platform::Platform;

/// The CycloneDX spec version alba writes.
pub const SPEC_VERSION: &str = "1.5";

/// What the published artifact is, for `metadata.component.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A static binary (or a folder of them).
    Application,
    /// A container image.
    Container,
}

/// The SBOM of the closure of `root` (a store path in `infos`), as JSON bytes.
pub fn cyclonedx(root: &str, infos: &[PathInfo], subject: Subject, meta: &ReleaseMeta) -> Bytes {
    let by_path: BTreeMap<&str, &PathInfo> = infos.iter().map(|i| (i.path.as_str(), i)).collect();
    let closure = closure(root, &by_path);
    let kind = match subject {
        Subject::Application => "application",
        Subject::Container => "container",
    };
    let root_info = by_path.get(root).copied();
    let mut root_component = component(root, root_info, kind);
    if let Some(version) = Some(&meta.version).filter(|v| !v.is_empty()) {
        root_component["version"] = json!(version);
    }
    let components: Vec<Value> = closure
        .iter()
        .filter(|p| **p != root)
        .map(|p| component(p, by_path.get(p).copied(), "library"))
        .collect();
    let dependencies: Vec<Value> = closure
        .iter()
        .map(|p| {
            let refs = by_path
                .get(p)
                .map(|i| i.references.clone())
                .unwrap_or_default();
            json!({ "ref": p, "dependsOn": refs })
        })
        .collect();
    let mut metadata = json!({
        "tools": { "components": [ { "type": "application", "name": "alba", "version": env!("CARGO_PKG_VERSION") } ] },
        "component": root_component,
    });
    if let Some(created) = &meta.created {
        metadata["timestamp"] = json!(created);
    }
    let doc = json!({
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "version": 1,
        "metadata": metadata,
        "components": components,
        "dependencies": dependencies,
    });
    // Derived from everything else, so the same closure gives the same serial number.
    with_serial_number(doc)
}

/// The SBOM of each artifact of `kind` in `set`, by platform: one `nix path-info` call for all.
pub async fn for_artifacts(
    nix: &Nix,
    set: &ArtifactSet,
    kind: Kind,
    meta: &ReleaseMeta,
) -> anyhow::Result<BTreeMap<Platform, Bytes>> {
    let roots: Vec<(Platform, PathBuf)> = set
        .of(kind)
        .map(|a| (a.platform.clone(), a.path.clone()))
        .collect();
    let paths: Vec<PathBuf> = roots.iter().map(|(_, p)| p.clone()).collect();
    let infos = nix.path_infos(&paths).await?;
    let subject = match kind {
        Kind::Static => Subject::Application,
        Kind::Container => Subject::Container,
    };
    Ok(roots
        .into_iter()
        .map(|(platform, path)| {
            let root = path.display().to_string();
            (platform, cyclonedx(&root, &infos, subject, meta))
        })
        .collect())
}

/// The image SBOMs `sboms` (by platform), each completed with the store paths found in its
/// image's layers (`contents`, by platform): a buildLayeredImage tarball references nothing,
/// so its closure alone lists nothing a scanner can use. NAR hash and references come from
/// one `nix path-info` call for the paths the local store knows; the others get name and
/// version only.
pub async fn with_image_contents(
    nix: &Nix,
    sboms: &BTreeMap<Platform, Bytes>,
    contents: &BTreeMap<Platform, Vec<String>>,
) -> anyhow::Result<BTreeMap<Platform, Bytes>> {
    let all: BTreeSet<&String> = contents.values().flatten().collect();
    let paths: Vec<PathBuf> = all.iter().map(PathBuf::from).collect();
    let infos = match nix.known_path_infos(&paths).await {
        Ok(infos) => infos,
        Err(e) => {
            tracing::warn!("the image SBOMs list store paths without NAR hashes: {e:#}");
            Vec::new()
        }
    };
    let by_path: BTreeMap<&str, &PathInfo> = infos.iter().map(|i| (i.path.as_str(), i)).collect();
    let mut out = BTreeMap::new();
    for (platform, sbom) in sboms {
        let paths = contents
            .get(platform)
            .map(Vec::as_slice)
            .unwrap_or_default();
        out.insert(platform.clone(), add_contents(sbom, paths, &by_path)?);
    }
    Ok(out)
}

/// One SBOM with `paths` added as components the root depends on (those it lists already
/// are kept as they are), components and dependencies sorted, the serial number renewed.
fn add_contents(
    sbom: &Bytes,
    paths: &[String],
    infos: &BTreeMap<&str, &PathInfo>,
) -> anyhow::Result<Bytes> {
    let mut doc: Value = serde_json::from_slice(sbom)?;
    let root = doc["metadata"]["component"]["bom-ref"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut components: BTreeMap<String, Value> = take_array(&mut doc, "components", "bom-ref");
    let mut dependencies: BTreeMap<String, Value> = take_array(&mut doc, "dependencies", "ref");
    for path in paths.iter().filter(|p| **p != root) {
        let info = infos.get(path.as_str()).copied();
        components
            .entry(path.clone())
            .or_insert_with(|| component(path, info, "library"));
        let refs = info.map(|i| i.references.clone()).unwrap_or_default();
        dependencies
            .entry(path.clone())
            .or_insert_with(|| json!({ "ref": path, "dependsOn": refs }));
    }
    let root_deps = dependencies
        .entry(root.clone())
        .or_insert_with(|| json!({ "ref": root, "dependsOn": [] }));
    let mut on: BTreeSet<String> =
        serde_json::from_value(root_deps["dependsOn"].take()).unwrap_or_default();
    on.extend(paths.iter().filter(|p| **p != root).cloned());
    root_deps["dependsOn"] = json!(on);
    doc["components"] = Value::Array(components.into_values().collect());
    doc["dependencies"] = Value::Array(dependencies.into_values().collect());
    Ok(with_serial_number(doc))
}

/// The entries of the array `key` of `doc`, by their `id` field.
fn take_array(doc: &mut Value, key: &str, id: &str) -> BTreeMap<String, Value> {
    let items = match doc[key].take() {
        Value::Array(items) => items,
        _ => Vec::new(),
    };
    items
        .into_iter()
        .filter_map(|v| Some((v[id].as_str()?.to_string(), v)))
        .collect()
}

/// The document's bytes with a serial number derived from everything else, so the same
/// content gives the same serial number.
fn with_serial_number(mut doc: Value) -> Bytes {
    if let Some(map) = doc.as_object_mut() {
        map.remove("serialNumber");
    }
    let digest = Sha256::digest(doc.to_string().as_bytes());
    doc["serialNumber"] = json!(uuid_urn(&digest));
    Bytes::from(doc.to_string())
}

/// Every store path `root` reaches through references, itself included, sorted.
fn closure<'a>(root: &'a str, by_path: &BTreeMap<&'a str, &'a PathInfo>) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::from([root]);
    let mut todo = vec![root];
    while let Some(path) = todo.pop() {
        for r in by_path.get(path).into_iter().flat_map(|i| &i.references) {
            if let Some((key, _)) = by_path.get_key_value(r.as_str())
                && seen.insert(key)
            {
                todo.push(key);
            }
        }
    }
    seen
}

/// One store path as a CycloneDX component.
fn component(path: &str, info: Option<&PathInfo>, kind: &str) -> Value {
    let (name, version) = name_and_version(path);
    let mut c = json!({ "type": kind, "bom-ref": path, "name": name });
    if let Some(v) = version {
        c["version"] = json!(v);
    }
    let mut properties = vec![json!({ "name": "nix:store_path", "value": path })];
    if let Some(info) = info {
        if let Some(hex) = nar_hash_hex(&info.nar_hash) {
            c["hashes"] = json!([{ "alg": "SHA-256", "content": hex }]);
        }
        properties.push(json!({ "name": "nix:nar_hash", "value": info.nar_hash }));
        properties.push(json!({ "name": "nix:nar_size", "value": info.nar_size.to_string() }));
    }
    c["properties"] = Value::Array(properties);
    c
}

/// A store path's package name and version, split as Nix's `parseDrvName` does: the version
/// starts at the first `-` followed by something other than a letter.
pub fn name_and_version(path: &str) -> (String, Option<String>) {
    let base = path.rsplit('/').next().unwrap_or(path);
    let name = base.split_once('-').map_or(base, |(_, rest)| rest);
    let bytes = name.as_bytes();
    let split = (0..bytes.len())
        .find(|&i| bytes[i] == b'-' && bytes.get(i + 1).is_some_and(|c| !c.is_ascii_alphabetic()));
    match split {
        Some(i) => (name[..i].to_string(), Some(name[i + 1..].to_string())),
        None => (name.to_string(), None),
    }
}

/// A sha256 NAR hash as hex, from any spelling Nix uses: `sha256:<nix32>`, `sha256:<hex>`,
/// `sha256-<base64>` (SRI).
pub fn nar_hash_hex(hash: &str) -> Option<String> {
    if let Some(b64) = hash.strip_prefix("sha256-") {
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        return (bytes.len() == 32).then(|| hex::encode(bytes));
    }
    let text = hash.strip_prefix("sha256:")?;
    match text.len() {
        64 if text.bytes().all(|b| b.is_ascii_hexdigit()) => Some(text.to_ascii_lowercase()),
        52 => nix32_decode(text).map(hex::encode),
        _ => None,
    }
}

/// Nix's base-32 (alphabet without e, o, u, t; least significant digit last).
fn nix32_decode(text: &str) -> Option<[u8; 32]> {
    const ALPHABET: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";
    let mut out = [0u8; 32];
    for (n, c) in text.bytes().rev().enumerate() {
        let digit = ALPHABET.iter().position(|&a| a == c)? as u16;
        let (i, j) = (n * 5 / 8, n * 5 % 8);
        let spread = digit << j;
        out[i] |= (spread & 0xff) as u8;
        let high = (spread >> 8) as u8;
        if high != 0 {
            *out.get_mut(i + 1)? |= high;
        }
    }
    Some(out)
}

/// `urn:uuid:…` from the first 16 bytes of a digest (version 8: custom).
fn uuid_urn(digest: &[u8]) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(path: &str, refs: &[&str]) -> PathInfo {
        PathInfo {
            path: path.into(),
            nar_hash: "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".into(),
            nar_size: 7,
            references: refs.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn names_versions_and_hashes() {
        assert_eq!(
            name_and_version("/nix/store/abc-hello-2.12.1"),
            ("hello".into(), Some("2.12.1".into()))
        );
        assert_eq!(
            name_and_version("/nix/store/abc-glibc-2.40-66"),
            ("glibc".into(), Some("2.40-66".into()))
        );
        assert_eq!(
            name_and_version("/nix/store/abc-albatros"),
            ("albatros".into(), None)
        );
        assert_eq!(
            name_and_version("/nix/store/abc-xz-utils-5.6.3-bin"),
            ("xz-utils".into(), Some("5.6.3-bin".into()))
        );
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        // sha256 of nothing, in the three spellings.
        assert_eq!(
            nar_hash_hex("sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=").unwrap(),
            empty
        );
        assert_eq!(nar_hash_hex(&format!("sha256:{empty}")).unwrap(), empty);
        assert_eq!(
            nar_hash_hex("sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73").unwrap(),
            empty
        );
    }

    #[test]
    fn closure_document_is_deterministic_and_complete() {
        let infos = vec![
            info(
                "/nix/store/aaa-albatros-0.9",
                &["/nix/store/bbb-glibc-2.40"],
            ),
            info("/nix/store/bbb-glibc-2.40", &["/nix/store/ccc-libidn2-2.3"]),
            info("/nix/store/ccc-libidn2-2.3", &[]),
            info("/nix/store/ddd-unrelated-1", &[]),
        ];
        let meta = ReleaseMeta {
            version: "0.9".into(),
            created: Some("2026-11-30T00:00:00Z".into()),
            ..ReleaseMeta::default()
        };
        let a = cyclonedx(
            "/nix/store/aaa-albatros-0.9",
            &infos,
            Subject::Application,
            &meta,
        );
        assert_eq!(
            a,
            cyclonedx(
                "/nix/store/aaa-albatros-0.9",
                &infos,
                Subject::Application,
                &meta
            )
        );
        let doc: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(
            doc["metadata"]["component"]["bom-ref"],
            "/nix/store/aaa-albatros-0.9"
        );
        let refs: Vec<&str> = doc["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["bom-ref"].as_str().unwrap())
            .collect();
        assert_eq!(
            refs,
            ["/nix/store/bbb-glibc-2.40", "/nix/store/ccc-libidn2-2.3"]
        );
        assert_eq!(doc["dependencies"].as_array().unwrap().len(), 3);
        assert!(
            doc["serialNumber"]
                .as_str()
                .unwrap()
                .starts_with("urn:uuid:")
        );
    }
}
