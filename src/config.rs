//! The flake's release description: schema, validation and defaults.
//!
//! Unknown keys are refused: a typo such as `tagets` must not silently publish nowhere.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Deserialize;

use crate::bail_input;
use crate::platform::Platform;

/// The `release` output of a flake, as written by the user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// The release name: df-dist-v1 name and default image repository name.
    pub name: String,
    /// Nix systems to build, e.g. `x86_64-linux`.
    pub systems: Vec<String>,
    /// The project's URL, for `org.opencontainers.image.source`.
    #[serde(default)]
    pub source: Option<String>,
    /// Static binaries, if the release has any.
    #[serde(rename = "static", default)]
    pub static_: Option<Section>,
    /// Container images, if the release has any.
    #[serde(default)]
    pub container: Option<Section>,
    /// Signing keys, like `--sign-key` (which replaces them when given).
    #[serde(default)]
    pub sign: Option<Sign>,
}

/// The `sign` part of a release description: `sign.keys = [ "minisign.key" "cosign.key" ];`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sign {
    /// Key files, as strings: relative to the directory alba runs in (as `--sign-key`), never
    /// Nix paths, which would copy a secret key into the world-readable store.
    #[serde(default)]
    pub keys: Vec<String>,
}

impl Sign {
    /// The key files.
    pub fn key_files(&self) -> Vec<std::path::PathBuf> {
        self.keys.iter().map(std::path::PathBuf::from).collect()
    }
}

/// The `static` or `container` part of a release description.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// Attribute path with `{system}` replaced per system.
    #[serde(default)]
    pub attr: Option<String>,
    /// Per-system attribute paths that override `attr`.
    #[serde(default)]
    pub attrs: BTreeMap<String, String>,
    /// Target URLs to publish to.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Publish a CycloneDX SBOM of each artifact's Nix closure (default true).
    #[serde(default)]
    pub sbom: Option<bool>,
    /// Extra OCI annotations on the index and every manifest (container only).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Semver alias tags X.Y, X and `latest` (container only), like `--aliases`.
    #[serde(default)]
    pub aliases: Option<bool>,
}

impl Section {
    /// True unless the section says `sbom = false`.
    pub fn wants_sbom(&self) -> bool {
        self.sbom.unwrap_or(true)
    }
}

/// The two kinds of artifacts a release publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Static binaries (df-dist-v1).
    Static,
    /// Container images (OCI).
    Container,
}

/// One thing to build: a kind, a system and the flake attribute that builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installable {
    /// Static or container.
    pub kind: Kind,
    /// The Nix system.
    pub system: String,
    /// The platform of that system.
    pub platform: Platform,
    /// The flake attribute paths to try, first found wins: the configured one, or the
    /// default under `packages.<system>` then `legacyPackages.<system>`, as Nix resolves an
    /// installable.
    pub attrs: Vec<String>,
}

impl Release {
    /// Parses and validates the JSON that `nix eval --json` printed.
    pub fn from_json(json: &str, source: &str) -> Result<Release> {
        let release: Release = serde_json::from_str(json).map_err(|e| {
            crate::error::input(format!(
                "the release description {source} is not valid: {e}\n  expected {{ name = \"...\"; systems = [ ... ]; static = {{ attr; attrs; targets; }}; container = {{ ... }}; }}"
            ))
        })?;
        release.validate(source)?;
        Ok(release)
    }

    fn validate(&self, source: &str) -> Result<()> {
        crate::names::check_name(&self.name)?;
        if self.systems.is_empty() {
            bail_input!(
                "{source}: `systems` is empty; list at least one, e.g. [ \"x86_64-linux\" ]"
            );
        }
        for system in &self.systems {
            if Platform::from_nix_system(system).is_none() {
                bail_input!(
                    "{source}: unknown system {system:?}; known systems: {}",
                    Platform::known_systems().join(", ")
                );
            }
        }
        for (kind, section) in self.sections() {
            for system in section.attrs.keys() {
                if !self.systems.contains(system) {
                    bail_input!(
                        "{source}: {kind:?} attrs names {system:?}, which is not in `systems`"
                    );
                }
            }
            if let Some(attr) = &section.attr
                && attr.trim().is_empty()
            {
                bail_input!("{source}: {kind:?} attr is empty; remove it to use the default");
            }
        }
        if let Some(s) = &self.static_
            && (!s.annotations.is_empty() || s.aliases.is_some())
        {
            bail_input!(
                "{source}: `annotations` and `aliases` belong in `container`, not in `static`"
            );
        }
        for key in self.sign.iter().flat_map(|s| &s.keys) {
            if key.starts_with("/nix/store/") {
                bail_input!(
                    "{source}: sign.keys names {key:?}, a key copied into the Nix store, where anyone can read it; write the file name as a string (\"cosign.key\", not ./cosign.key), keep the key out of the flake's source, and remove it from the store"
                );
            }
            if key.trim().is_empty() {
                bail_input!("{source}: sign.keys has an empty file name");
            }
        }
        if let Some(c) = &self.container {
            for key in c.annotations.keys() {
                if key.trim().is_empty() {
                    bail_input!("{source}: container.annotations has an empty key");
                }
            }
        }
        Ok(())
    }

    /// The sections present, with their kind.
    pub fn sections(&self) -> Vec<(Kind, &Section)> {
        let mut out = Vec::new();
        if let Some(s) = &self.static_ {
            out.push((Kind::Static, s));
        }
        if let Some(c) = &self.container {
            out.push((Kind::Container, c));
        }
        out
    }

    /// The section of one kind, if present.
    pub fn section(&self, kind: Kind) -> Option<&Section> {
        match kind {
            Kind::Static => self.static_.as_ref(),
            Kind::Container => self.container.as_ref(),
        }
    }

    /// Everything to build for the given kinds, in a stable order (kind, then system order).
    pub fn installables(&self, kinds: &[Kind]) -> Vec<Installable> {
        let mut out = Vec::new();
        for (kind, section) in self.sections() {
            if !kinds.contains(&kind) {
                continue;
            }
            for system in &self.systems {
                let Some(platform) = Platform::from_nix_system(system) else {
                    continue; // `validate` refused unknown systems already
                };
                out.push(Installable {
                    kind,
                    system: system.clone(),
                    platform,
                    attrs: section.attrs_for(kind, &self.name, system),
                });
            }
        }
        out
    }
}

impl Section {
    /// The attribute paths to try for one system: `attrs`, else `attr`, else the defaults
    /// (`packages.<system>.[docker.]<name>`, then `legacyPackages.<system>.[docker.]<name>`:
    /// `nix flake check` refuses an attribute set under `packages`, so clean flakes keep
    /// images under `legacyPackages`, while the seed's layout keeps working).
    pub fn attrs_for(&self, kind: Kind, name: &str, system: &str) -> Vec<String> {
        if let Some(a) = self.attrs.get(system) {
            return vec![a.clone()];
        }
        if let Some(a) = &self.attr {
            return vec![a.replace("{system}", system)];
        }
        let leaf = match kind {
            Kind::Static => name.to_string(),
            Kind::Container => format!("docker.{name}"),
        };
        ["packages", "legacyPackages"]
            .iter()
            .map(|top| format!("{top}.{system}.{leaf}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"{"name":"albatros","systems":["x86_64-linux","armv6l-linux"],
        "static":{"targets":["file:out"]},
        "container":{"attr":"packages.{system}.img","attrs":{"armv6l-linux":"legacy.arm"},"targets":[]}}"#;

    #[test]
    fn defaults_and_overrides() {
        let r = Release::from_json(FULL, "test").unwrap();
        let all = r.installables(&[Kind::Static, Kind::Container]);
        let attrs: Vec<_> = all.iter().map(|i| i.attrs.join(" ")).collect();
        assert_eq!(
            attrs,
            [
                "packages.x86_64-linux.albatros legacyPackages.x86_64-linux.albatros",
                "packages.armv6l-linux.albatros legacyPackages.armv6l-linux.albatros",
                "packages.x86_64-linux.img",
                "legacy.arm"
            ]
        );
        assert_eq!(r.installables(&[Kind::Container]).len(), 2);
        let c = Section::default();
        assert_eq!(
            c.attrs_for(Kind::Container, "a", "i686-linux"),
            [
                "packages.i686-linux.docker.a",
                "legacyPackages.i686-linux.docker.a"
            ]
        );
    }

    #[test]
    fn refuses_bad_descriptions() {
        for (bad, needle) in [
            (
                r#"{"name":"a","systems":["x86_64-linux"],"statc":{}}"#,
                "statc",
            ),
            (
                r#"{"name":"a","systems":["x86_64-linux"],"static":{"tagets":[]}}"#,
                "tagets",
            ),
            (r#"{"name":"a","systems":"x86_64-linux"}"#, "invalid type"),
            (r#"{"name":"a","systems":["mips-linux"]}"#, "mips-linux"),
            (r#"{"name":"a/b","systems":["x86_64-linux"]}"#, "a/b"),
            (r#"{"systems":["x86_64-linux"]}"#, "name"),
            (r#"{"name":"a","systems":[]}"#, "empty"),
            (
                r#"{"name":"a","systems":["x86_64-linux"],"sign":{"key":["k"]}}"#,
                "key",
            ),
            (
                r#"{"name":"a","systems":["x86_64-linux"],"sign":{"keys":["/nix/store/abc-cosign.key"]}}"#,
                "anyone can read",
            ),
            (
                r#"{"name":"a","systems":["x86_64-linux"],"static":{"attrs":{"i686-linux":"x"}}}"#,
                "i686-linux",
            ),
        ] {
            let err = Release::from_json(bad, "test").unwrap_err();
            assert_eq!(crate::error::exit_code(&err), 2);
            assert!(format!("{err:#}").contains(needle), "{bad}: {err:#}");
        }
    }
}
