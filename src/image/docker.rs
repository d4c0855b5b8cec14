//! The docker-archive format: `manifest.json` and the image config, parsed and checked.

use bytes::Bytes;
use serde::Deserialize;

use super::input::{Input, normalize};
use crate::digest::is_digest;
use crate::error;
use crate::platform::Platform;

/// The file every docker archive holds.
pub(crate) const MANIFEST: &str = "manifest.json";

/// What `manifest.json` says: the config's and the layers' entry names.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    /// Entry name of the config.
    pub config: String,
    /// Entry names of the layers, bottom first (a name may repeat).
    pub layers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestItem {
    config: String,
    layers: Vec<String>,
}

/// The one image of an archive, with its config kept byte for byte.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// The manifest's entry names.
    pub manifest: Manifest,
    /// The config, exactly as in the archive.
    pub config: Bytes,
    /// `rootfs.diff_ids`: the sha256 of each uncompressed layer, in layer order.
    pub diff_ids: Vec<String>,
}

#[derive(Deserialize)]
struct ConfigDoc {
    architecture: Option<String>,
    os: Option<String>,
    variant: Option<String>,
    rootfs: Option<RootFs>,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// Parses `manifest.json`; alba wants exactly one image per archive (one per platform).
pub(crate) fn parse_manifest(input: &Input, bytes: &[u8]) -> anyhow::Result<Manifest> {
    let shown = input.path.display();
    let items: Vec<ManifestItem> = serde_json::from_slice(bytes).map_err(|e| {
        error::input(format!(
            "{MANIFEST} in the image {shown} is not a docker-archive manifest: {e}"
        ))
    })?;
    let [item] = <[ManifestItem; 1]>::try_from(items).map_err(|items| {
        error::input(format!(
            "{MANIFEST} in the image {shown} lists {} images; alba expects exactly one per archive",
            items.len()
        ))
    })?;
    Ok(Manifest {
        config: normalize(&item.config),
        layers: item.layers.iter().map(|l| normalize(l)).collect(),
    })
}

/// Parses the config and checks it against the manifest.
pub(crate) fn parse_spec(input: &Input, manifest: Manifest, config: Bytes) -> anyhow::Result<Spec> {
    let shown = input.path.display();
    let name = &manifest.config;
    let doc: ConfigDoc = serde_json::from_slice(&config).map_err(|e| {
        error::input(format!(
            "the config {name} in the image {shown} is not an image config: {e}"
        ))
    })?;
    let diff_ids = doc.rootfs.map(|r| r.diff_ids).unwrap_or_default();
    if diff_ids.len() != manifest.layers.len() {
        crate::bail_input!(
            "the image {shown} is inconsistent: its config {name} lists {} layer digests (rootfs.diff_ids) \
             but {MANIFEST} names {} layers",
            diff_ids.len(),
            manifest.layers.len()
        );
    }
    if let Some(bad) = diff_ids.iter().find(|d| !is_digest(d)) {
        crate::bail_input!(
            "the config {name} in the image {shown} has a malformed layer digest {bad:?}"
        );
    }
    Ok(Spec {
        manifest,
        config,
        diff_ids,
    })
}

/// Refuses an image whose config names another os/architecture/variant than its platform.
/// nixpkgs configs carry no variant: the platform's (e.g. `v6`) is then taken as is.
pub(crate) fn check_platform(
    input: &Input,
    spec: &Spec,
    platform: &Platform,
) -> anyhow::Result<()> {
    let shown = input.path.display();
    // Already parsed once in `parse_spec`; the config is small.
    let doc: ConfigDoc = serde_json::from_slice(&spec.config).map_err(|e| {
        error::input(format!(
            "the config of the image {shown} is not an image config: {e}"
        ))
    })?;
    let (Some(os), Some(architecture)) = (doc.os, doc.architecture) else {
        crate::bail_input!("the config of the image {shown} does not say its os and architecture");
    };
    let variant_clash = matches!((&doc.variant, &platform.variant), (Some(a), Some(b)) if a != b);
    if os != platform.os || architecture != platform.architecture || variant_clash {
        let said = Platform {
            os,
            architecture,
            variant: doc.variant,
        };
        crate::bail_input!(
            "the image {shown} is built for {said} (its config says so) but is given for {platform}: \
             build it for that system, or give it for {said}"
        );
    }
    Ok(())
}

/// The config to publish for `platform`: the archive's bytes, or — when the platform has a
/// variant the config does not state (nixpkgs writes none) — the config with `"variant"`
/// added, serialized once. podman and containerd compare the config's variant with the one
/// asked for; layers are untouched, so only the config's digest changes.
pub(crate) fn config_for(config: &Bytes, platform: &Platform) -> anyhow::Result<Bytes> {
    let Some(variant) = &platform.variant else {
        return Ok(config.clone());
    };
    let mut doc: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(config)
        .map_err(|e| error::input(format!("the image config is not a JSON object: {e}")))?;
    if doc.contains_key("variant") {
        return Ok(config.clone());
    }
    doc.insert("variant".into(), serde_json::Value::String(variant.clone()));
    Ok(Bytes::from(serde_json::to_vec(&doc)?))
}

#[cfg(test)]
mod variant_tests {
    use super::*;

    #[test]
    fn adds_the_platform_variant_once() {
        let arm = Platform::parse("linux/arm/v6").unwrap();
        let raw =
            Bytes::from_static(br#"{"architecture":"arm","os":"linux","rootfs":{"diff_ids":[]}}"#);
        let out = config_for(&raw, &arm).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc["variant"], "v6");
        assert_eq!(doc["architecture"], "arm");
        // Deterministic, and a config that already says it is kept byte for byte.
        assert_eq!(config_for(&raw, &arm).unwrap(), out);
        assert_eq!(config_for(&out, &arm).unwrap(), out);
        let amd64 = Platform::parse("linux/amd64").unwrap();
        assert_eq!(config_for(&raw, &amd64).unwrap(), raw);
    }
}
