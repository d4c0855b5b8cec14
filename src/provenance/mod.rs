//! SLSA v1 provenance from what Nix knows: an in-toto Statement v1 (`predicateType`
//! `https://slsa.dev/provenance/v1`) per published set (a tag's binaries, an image index),
//! signed as a DSSE envelope with the release's ECDSA key.
//!
//! The predicate (buildType [`BUILD_TYPE`]):
//! - `buildDefinition.externalParameters`: `flake` (the URL without credentials), `version`,
//!   `kind` (`static` or `container`) and `artifacts` (per Nix `system`, its `attribute`);
//! - `buildDefinition.internalParameters`: `nix` (`nix --version`) and `alba` (its version);
//! - `buildDefinition.resolvedDependencies`: the flake itself (name `self`) and every locked
//!   input of `nix flake metadata --json` ([`lock`]);
//! - `runDetails.builder.id`, `runDetails.metadata.invocationId`: from the CI ([`ci`]);
//! - `runDetails.byproducts`: per artifact its store path (`uri`), NAR hash (`digest.narHash`,
//!   hex), and `annotations` `drvPath`, `outPath`, `narHash` (as Nix prints it).
//!
//! Re-running a release keeps a published envelope that verifies with the key and states the
//! same subjects and dependencies ([`Attester::keeps`]): a CI re-run has another invocation
//! id, yet nothing new was built.

pub mod ci;
pub mod dsse;
pub mod gather;
pub mod lock;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};

pub use dsse::{EnvelopeKey, EnvelopeVerifier};
pub use lock::Locked;

/// The in-toto Statement v1 type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The SLSA provenance v1 predicate type.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// The build type of alba's provenance (the predicate's shape, described above).
pub const BUILD_TYPE: &str = "urn:alba:nix-flake-release:v1";

/// One attested artifact: a file's path in the release, or an image manifest's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// Its name (`linux/amd64/albatros`, `index`, `linux/arm/v6`).
    pub name: String,
    /// Its hex SHA-256.
    pub sha256: String,
}

/// One built artifact as Nix knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Built {
    /// The Nix system it was built for.
    pub system: String,
    /// The flake attribute built.
    pub attribute: String,
    /// Its derivation.
    pub drv_path: String,
    /// Its output store path.
    pub out_path: String,
    /// Its NAR hash as Nix prints it, when the store knows it.
    pub nar_hash: Option<String>,
}

/// Everything a statement says but its subjects.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The flake URL, without credentials.
    pub flake: String,
    /// The version released.
    pub version: String,
    /// `static` or `container`.
    pub kind: String,
    /// What was built.
    pub built: Vec<Built>,
    /// The flake and its locked inputs.
    pub resolved: Vec<Locked>,
    /// `nix --version`.
    pub nix_version: String,
    /// Who ran it.
    pub builder_id: String,
    /// Which run it was.
    pub invocation_id: Option<String>,
}

/// The statement about `subjects`, as JSON bytes (sorted keys: the same facts give the same
/// bytes).
pub fn statement(facts: &Facts, subjects: &[Subject]) -> Bytes {
    let subject: Vec<Value> = subjects
        .iter()
        .map(|s| json!({ "name": s.name, "digest": { "sha256": s.sha256 } }))
        .collect();
    let artifacts: Vec<Value> = facts
        .built
        .iter()
        .map(|b| json!({ "system": b.system, "attribute": b.attribute }))
        .collect();
    let byproducts: Vec<Value> = facts.built.iter().map(byproduct).collect();
    let mut run = json!({ "builder": { "id": facts.builder_id }, "byproducts": byproducts });
    if let Some(id) = &facts.invocation_id {
        run["metadata"] = json!({ "invocationId": id });
    }
    let doc = json!({
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "flake": facts.flake,
                    "version": facts.version,
                    "kind": facts.kind,
                    "artifacts": artifacts,
                },
                "internalParameters": {
                    "nix": facts.nix_version,
                    "alba": env!("CARGO_PKG_VERSION"),
                },
                "resolvedDependencies": facts.resolved.iter().map(Locked::descriptor).collect::<Vec<_>>(),
            },
            "runDetails": run,
        },
    });
    Bytes::from(doc.to_string())
}

fn byproduct(b: &Built) -> Value {
    let mut annotations = json!({ "drvPath": b.drv_path, "outPath": b.out_path });
    let mut d = json!({ "name": b.attribute, "uri": b.out_path });
    if let Some(hash) = &b.nar_hash {
        annotations["narHash"] = json!(hash);
        if let Some(hex) = crate::sbom::nar_hash_hex(hash) {
            d["digest"] = json!({ "narHash": hex });
        }
    }
    d["annotations"] = annotations;
    d
}

/// True when `a` and `b` state the same subjects (in any order) and dependencies.
pub fn same_release(a: &Value, b: &Value) -> bool {
    let subjects = |v: &Value| {
        let mut s: Vec<String> = v["subject"]
            .as_array()
            .into_iter()
            .flatten()
            .map(Value::to_string)
            .collect();
        s.sort();
        s
    };
    let deps = |v: &Value| v["predicate"]["buildDefinition"]["resolvedDependencies"].clone();
    a["predicateType"] == b["predicateType"] && subjects(a) == subjects(b) && deps(a) == deps(b)
}

/// Makes and checks the signed provenance of one release's artifacts of one kind.
#[derive(Clone)]
pub struct Attester {
    /// Signs the envelopes.
    pub key: Arc<dyn EnvelopeKey>,
    /// What the statements say.
    pub facts: Facts,
}

impl std::fmt::Debug for Attester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attester")
            .field("facts", &self.facts)
            .finish()
    }
}

impl Attester {
    /// The signed envelope of the statement about `subjects`.
    pub fn envelope(&self, subjects: &[Subject]) -> Bytes {
        dsse::seal(self.key.as_ref(), &statement(&self.facts, subjects))
    }

    /// True when `published` is an envelope this key signed about the same subjects and
    /// dependencies as a new one would be: a re-run keeps it.
    pub fn keeps(&self, published: &[u8], subjects: &[Subject]) -> bool {
        let Ok(old) = dsse::open(published, self.key.as_ref()) else {
            return false;
        };
        let new: Value =
            serde_json::from_slice(&statement(&self.facts, subjects)).unwrap_or_default();
        same_release(&old, &new)
    }

    /// The envelope to publish where `published` is (if anything): the published one when it
    /// still holds ([`Attester::keeps`]), else a new one.
    pub fn envelope_keeping(&self, published: Option<Bytes>, subjects: &[Subject]) -> Bytes {
        match published {
            Some(old) if self.keeps(&old, subjects) => old,
            _ => self.envelope(subjects),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::dsse::tests::TestKey;
    use super::*;

    fn facts(invocation: &str) -> Facts {
        Facts {
            flake: "git+https://git.example.org/a/b?rev=abc".into(),
            version: "0.9".into(),
            kind: "static".into(),
            built: vec![Built {
                system: "x86_64-linux".into(),
                attribute: "packages.x86_64-linux.albatros".into(),
                drv_path: "/nix/store/aaa-albatros.drv".into(),
                out_path: "/nix/store/bbb-albatros".into(),
                nar_hash: Some("sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".into()),
            }],
            resolved: vec![Locked {
                name: "self".into(),
                url: "git+https://git.example.org/a/b?rev=abc".into(),
                rev: Some("abc".into()),
                nar_hash: None,
            }],
            nix_version: "nix (Nix) 2.8.0".into(),
            builder_id: ci::LOCAL_BUILDER.into(),
            invocation_id: Some(invocation.into()),
        }
    }

    fn subjects() -> Vec<Subject> {
        vec![Subject {
            name: "linux/amd64/albatros".into(),
            sha256: "ab".repeat(32),
        }]
    }

    #[test]
    fn statement_fields_are_slsa_v1_s() {
        let doc: Value = serde_json::from_slice(&statement(&facts("run-1"), &subjects())).unwrap();
        assert_eq!(doc["_type"], STATEMENT_TYPE);
        assert_eq!(doc["predicateType"], PREDICATE_TYPE);
        assert_eq!(doc["subject"][0]["digest"]["sha256"], "ab".repeat(32));
        let p = &doc["predicate"];
        assert_eq!(
            p["buildDefinition"]["externalParameters"]["artifacts"][0]["system"],
            "x86_64-linux"
        );
        assert_eq!(
            p["buildDefinition"]["resolvedDependencies"][0]["digest"]["gitCommit"],
            "abc"
        );
        assert_eq!(
            p["buildDefinition"]["internalParameters"]["nix"],
            "nix (Nix) 2.8.0"
        );
        assert_eq!(p["runDetails"]["builder"]["id"], ci::LOCAL_BUILDER);
        assert_eq!(p["runDetails"]["metadata"]["invocationId"], "run-1");
        let by = &p["runDetails"]["byproducts"][0];
        assert_eq!(by["annotations"]["drvPath"], "/nix/store/aaa-albatros.drv");
        assert_eq!(
            by["digest"]["narHash"],
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_rerun_keeps_a_valid_envelope_of_the_same_release_only() {
        let first = Attester {
            key: Arc::new(TestKey(1)),
            facts: facts("run-1"),
        };
        let published = first.envelope(&subjects());
        let rerun = Attester {
            key: Arc::new(TestKey(1)),
            facts: facts("run-2"),
        };
        assert_eq!(
            rerun.envelope_keeping(Some(published.clone()), &subjects()),
            published
        );
        let other_key = Attester {
            key: Arc::new(TestKey(2)),
            facts: facts("run-1"),
        };
        assert!(!other_key.keeps(&published, &subjects()));
        let other = vec![Subject {
            name: "x".into(),
            sha256: "cd".repeat(32),
        }];
        assert!(!rerun.keeps(&published, &other));
        let mut moved = facts("run-1");
        moved.resolved[0].rev = Some("def".into());
        let moved = Attester {
            key: Arc::new(TestKey(1)),
            facts: moved,
        };
        assert!(!moved.keeps(&published, &subjects()));
    }
}
