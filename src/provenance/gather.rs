//! The facts of a statement, asked of Nix once per release: its version, the NAR hash of
//! every artifact (one `nix path-info` call), and what the lock and the build told already.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use super::{Attester, Built, Facts, ci};
use crate::artifact::ArtifactSet;
use crate::config::Kind;
use crate::nix::{Flake, Nix};

/// The facts of each kind's statement in `kinds`.
pub async fn facts(
    nix: &Nix,
    flake: &Flake,
    set: &ArtifactSet,
    kinds: &[Kind],
    version: &str,
) -> Result<BTreeMap<Kind, Facts>> {
    let paths: Vec<PathBuf> = set.artifacts.iter().map(|a| a.path.clone()).collect();
    let infos = nix.known_path_infos(&paths).await?;
    let nar: BTreeMap<&str, &str> = infos
        .iter()
        .map(|i| (i.path.as_str(), i.nar_hash.as_str()))
        .collect();
    let nix_version = nix.version().await?;
    let run = ci::from_env();
    let mut out = BTreeMap::new();
    for kind in kinds {
        let built = set
            .of(*kind)
            .filter_map(|a| {
                let b = a.built.as_ref()?;
                let out_path = b.out.display().to_string();
                Some(Built {
                    system: a.system.clone().unwrap_or_default(),
                    attribute: b.attr.clone(),
                    drv_path: b.drv.clone(),
                    nar_hash: nar.get(out_path.as_str()).map(|h| h.to_string()),
                    out_path,
                })
            })
            .collect();
        let facts = Facts {
            flake: crate::meta::without_credentials(&flake.url),
            version: version.to_string(),
            kind: match kind {
                Kind::Static => "static",
                Kind::Container => "container",
            }
            .to_string(),
            built,
            resolved: flake.resolved.clone(),
            nix_version: nix_version.clone(),
            builder_id: run.builder_id.clone(),
            invocation_id: run.invocation_id.clone(),
        };
        out.insert(*kind, facts);
    }
    Ok(out)
}

/// The attester of each kind of `set`, signing with `key` (none without a key: nothing is
/// asked of Nix then).
pub async fn attesters(
    nix: &Nix,
    flake: &Flake,
    set: &ArtifactSet,
    kinds: &[Kind],
    version: &str,
    key: Option<Arc<crate::sign::ecdsa::EcdsaKey>>,
) -> Result<BTreeMap<Kind, Arc<Attester>>> {
    let Some(key) = key else {
        return Ok(BTreeMap::new());
    };
    let facts = facts(nix, flake, set, kinds, version).await?;
    Ok(facts
        .into_iter()
        .map(|(kind, facts)| {
            let key: Arc<dyn super::EnvelopeKey> = key.clone();
            (kind, Arc::new(Attester { key, facts }))
        })
        .collect())
}
