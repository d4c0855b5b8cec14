//! The flake and its locked inputs as SLSA `resolvedDependencies`, from `nix flake metadata
//! --json`: the flake itself (`locked`: its rev and narHash) and every node of its lock
//! (`locks.nodes`, the root excepted: transitive inputs included), each with its URL (no
//! credentials), git revision and NAR hash.

use serde_json::{Value, json};

use crate::meta::without_credentials;
use crate::sbom::nar_hash_hex;

/// One locked source: the flake or one of its inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locked {
    /// The input's name in the lock (`self` for the flake itself).
    pub name: String,
    /// Where it comes from, as a flake URL without credentials.
    pub url: String,
    /// Its git revision, if it has one.
    pub rev: Option<String>,
    /// Its NAR hash as the lock writes it (`sha256-<base64>`).
    pub nar_hash: Option<String>,
}

/// The flake itself and its locked inputs, the flake first, inputs by name.
pub fn resolved(metadata: &Value) -> Vec<Locked> {
    let mut out = Vec::new();
    let url = metadata["url"].as_str().map(without_credentials);
    let mut me = from_locked("self", &metadata["locked"]);
    if let Some(url) = url {
        me.url = url;
    }
    if me.rev.is_none() {
        me.rev = metadata["revision"].as_str().map(str::to_string);
    }
    out.push(me);
    let locks = &metadata["locks"];
    let root = locks["root"].as_str().unwrap_or("root");
    if let Some(nodes) = locks["nodes"].as_object() {
        let mut inputs: Vec<Locked> = nodes
            .iter()
            .filter(|(name, node)| *name != root && node.get("locked").is_some())
            .map(|(name, node)| from_locked(name, &node["locked"]))
            .collect();
        inputs.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(inputs);
    }
    out
}

/// A `locked` attribute set (`type`, `url`/`path`/`owner`+`repo`, `rev`, `narHash`).
fn from_locked(name: &str, locked: &Value) -> Locked {
    let s = |k: &str| locked[k].as_str().map(str::to_string);
    let url = match s("type").as_deref() {
        Some("path") => format!("path:{}", s("path").unwrap_or_default()),
        Some(kind @ ("github" | "gitlab" | "sourcehut")) => format!(
            "{kind}:{}/{}",
            s("owner").unwrap_or_default(),
            s("repo").unwrap_or_default()
        ),
        Some(kind @ ("git" | "hg")) => format!("{kind}+{}", s("url").unwrap_or_default()),
        Some(_) | None => s("url").unwrap_or_default(),
    };
    Locked {
        name: name.to_string(),
        url: without_credentials(&url),
        rev: s("rev"),
        nar_hash: s("narHash"),
    }
}

impl Locked {
    /// As an in-toto ResourceDescriptor: `digest` holds `gitCommit` (the revision) and
    /// `narHash` (the hex SHA-256 of the source's NAR); `annotations.narHash` is the hash as
    /// the lock writes it, to compare with `flake.lock` directly.
    pub fn descriptor(&self) -> Value {
        let mut digest = serde_json::Map::new();
        if let Some(rev) = &self.rev {
            digest.insert("gitCommit".into(), json!(rev));
        }
        if let Some(hex) = self.nar_hash.as_deref().and_then(nar_hash_hex) {
            digest.insert("narHash".into(), json!(hex));
        }
        let mut d = json!({ "name": self.name, "uri": self.url, "digest": digest });
        if let Some(nar_hash) = &self.nar_hash {
            d["annotations"] = json!({ "narHash": nar_hash });
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flake_and_every_locked_input() {
        let metadata = json!({
            "url": "git+https://ci-token:s3cret@git.example.org/a/b?rev=abc",
            "revision": "abc",
            "locked": { "type": "git", "url": "https://ci-token:s3cret@git.example.org/a/b", "rev": "abc",
                        "narHash": "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=" },
            "locks": { "root": "root", "version": 7, "nodes": {
                "root": { "inputs": { "lib": "lib" } },
                "lib": { "locked": { "type": "path", "path": "/src/lib", "narHash": "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=" } },
                "nixpkgs": { "locked": { "type": "github", "owner": "NixOS", "repo": "nixpkgs", "rev": "def" } }
            } }
        });
        let r = resolved(&metadata);
        assert_eq!(
            r.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            ["self", "lib", "nixpkgs"]
        );
        assert_eq!(r[0].url, "git+https://git.example.org/a/b?rev=abc");
        assert_eq!(r[1].url, "path:/src/lib");
        assert_eq!(r[2].url, "github:NixOS/nixpkgs");
        let d = r[0].descriptor();
        assert_eq!(d["digest"]["gitCommit"], "abc");
        assert_eq!(
            d["digest"]["narHash"],
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(!d.to_string().contains("s3cret"));
    }
}
