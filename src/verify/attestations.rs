//! With an ECDSA public key (`--sign-pub`): image signatures and SLSA provenance.
//!
//! - Each tag's index and every platform manifest must carry a cosign signature
//!   (`sha256-<hex>.sig`) of this key whose payload names that very digest and, where the
//!   target says where people pull from, that repository (`docker-reference`).
//! - The index must carry the provenance (`sha256-<hex>.att`, a DSSE envelope of this key)
//!   whose subjects are exactly the index and its platform manifests; a tag document naming
//!   `provenance` likewise, its subjects exactly the tag's binaries (path and sha256).
//! - A statement's `resolvedDependencies` start with the flake itself and give each a digest;
//!   with `--flake` they must equal that flake's lock (`nix flake metadata`).
//!
//! A key given and a signature or provenance missing is a problem, as a wrong one is.

use std::collections::BTreeSet;

use base64::Engine;
use bytes::Bytes;
use serde_json::Value;

use super::Findings;
use super::oci_source::Images;
use crate::image::attestation::{ATT_SUFFIX, attachment_tag, envelope_layer};
use crate::provenance::{Locked, PREDICATE_TYPE, dsse};
use crate::publish::signatures::{SIG_SUFFIX, SIGNATURE_ANNOTATION, SIMPLE_SIGNING};

/// What `--sign-pub` with an ECDSA key checks against.
pub struct EcdsaCheck {
    /// The public key.
    pub key: p256::ecdsa::VerifyingKey,
    /// Its file, for messages.
    pub file: String,
    /// The repository signatures must name, where the target tells it.
    pub reference: Option<String>,
    /// The flake's lock, with `--flake`: dependencies must equal it.
    pub lock: Option<Vec<Locked>>,
}

impl EcdsaCheck {
    fn sign_fix(&self) -> String {
        format!(
            "release again with the secret key of {}: `alba release VERSION --sign-key KEY` signs and attests what is missing",
            self.file
        )
    }
}

/// The problems of a statement about `subjects` (hex sha256 digests), as sentences.
pub fn statement_problems(
    statement: &Value,
    subjects: &BTreeSet<String>,
    lock: Option<&[Locked]>,
) -> Vec<String> {
    let mut out = Vec::new();
    if statement["predicateType"] != PREDICATE_TYPE {
        out.push(format!("its predicateType is not {PREDICATE_TYPE}"));
    }
    let stated: BTreeSet<String> = statement["subject"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["digest"]["sha256"].as_str().map(str::to_string))
        .collect();
    if &stated != subjects {
        let missing = subjects.difference(&stated).count();
        let extra = stated.difference(subjects).count();
        out.push(format!(
            "its subjects are not what is published ({missing} published artifacts missing, {extra} not published)"
        ));
    }
    let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let no_digest = deps
        .iter()
        .any(|d| d["digest"].as_object().is_none_or(|m| m.is_empty()));
    if deps.first().is_none_or(|d| d["name"] != "self") || no_digest {
        out.push(
            "its resolvedDependencies do not start with the flake itself, each with a digest"
                .into(),
        );
    }
    if let Some(lock) = lock {
        let want: Vec<Value> = lock.iter().map(Locked::descriptor).collect();
        if deps != want {
            out.push("its resolvedDependencies differ from the flake's lock (--flake)".into());
        }
    }
    out
}

/// The signature and provenance checks of one image index (`index` its digest, `json` its
/// document).
pub async fn check_image(
    images: &dyn Images,
    check: &EcdsaCheck,
    index: &str,
    json: &Value,
    findings: &mut Findings,
) {
    let manifests: Vec<String> = json["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["digest"].as_str().map(str::to_string))
        .collect();
    for digest in std::iter::once(index.to_string()).chain(manifests.iter().cloned()) {
        check_signature(images, check, &digest, findings).await;
    }
    let subjects: BTreeSet<String> = std::iter::once(index)
        .chain(manifests.iter().map(String::as_str))
        .map(|d| d.trim_start_matches("sha256:").to_string())
        .collect();
    check_attestation(images, check, index, &subjects, findings).await;
}

/// `digest`'s `.sig` must hold a payload of this key naming `digest` (and the repository).
async fn check_signature(
    images: &dyn Images,
    check: &EcdsaCheck,
    digest: &str,
    findings: &mut Findings,
) {
    let tag = attachment_tag(digest, SIG_SUFFIX);
    let object = images.manifest_name(&tag);
    let Some(manifest) = read_manifest(images, &tag, findings).await else {
        let problem = format!("is missing: {digest} is not signed");
        return findings.problem(object, problem, check.sign_fix());
    };
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    for layer in layers.iter().filter(|l| l["mediaType"] == SIMPLE_SIGNING) {
        let Some(payload) = layer_bytes(images, layer, findings).await else {
            continue;
        };
        let signature = layer["annotations"][SIGNATURE_ANNOTATION]
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok());
        let signed =
            signature.is_some_and(|s| crate::sign::ecdsa::verify(&check.key, &payload, &s));
        if !signed {
            continue;
        }
        let doc: Value = serde_json::from_slice(&payload).unwrap_or_default();
        let critical = &doc["critical"];
        if critical["image"]["docker-manifest-digest"] != digest {
            let problem = format!("holds a signature of another digest than {digest}");
            return findings.problem(object, problem, check.sign_fix());
        }
        let named = critical["identity"]["docker-reference"]
            .as_str()
            .unwrap_or_default();
        if let Some(reference) = check.reference.as_deref().filter(|r| *r != named) {
            let problem = format!(
                "its signature names the repository {named}, not {reference} where people pull from: a matchRepository policy refuses it"
            );
            return findings.problem(object, problem, check.sign_fix());
        }
        return findings.checked(object);
    }
    let problem = format!(
        "holds no signature of {digest} that verifies with {}",
        check.file
    );
    findings.problem(object, problem, check.sign_fix());
}

/// The index's `.att` must hold this key's provenance about exactly `subjects`.
async fn check_attestation(
    images: &dyn Images,
    check: &EcdsaCheck,
    index: &str,
    subjects: &BTreeSet<String>,
    findings: &mut Findings,
) {
    let tag = attachment_tag(index, ATT_SUFFIX);
    let object = images.manifest_name(&tag);
    let found = match images.manifest(&tag).await {
        Ok(found) => found,
        Err(e) => return findings.unreadable(&object, &e),
    };
    let layer = found.and_then(|o| envelope_layer(&o.bytes));
    let Some((digest, size)) = layer else {
        let problem = format!("is missing or holds no SLSA provenance: {index} is not attested");
        return findings.problem(object, problem, check.sign_fix());
    };
    let layer = serde_json::json!({ "digest": digest, "size": size });
    let Some(envelope) = layer_bytes(images, &layer, findings).await else {
        return;
    };
    check_envelope(&object, &envelope, check, subjects, findings);
}

/// A tag document's provenance `envelope` (at `object`) about the binaries `subjects`.
pub fn check_envelope(
    object: &str,
    envelope: &[u8],
    check: &EcdsaCheck,
    subjects: &BTreeSet<String>,
    findings: &mut Findings,
) {
    match dsse::open(envelope, &check.key) {
        Err(broken) => {
            let problem = format!("{broken} ({})", check.file);
            findings.problem(object, problem, check.sign_fix());
        }
        Ok(statement) => {
            let problems = statement_problems(&statement, subjects, check.lock.as_deref());
            if problems.is_empty() {
                findings.checked(object);
            }
            for problem in problems {
                let fix = "publish the release again (`alba release VERSION --sign-key KEY`) from the commit it was built from";
                findings.problem(object, problem, fix);
            }
        }
    }
}

async fn read_manifest(
    images: &dyn Images,
    reference: &str,
    findings: &mut Findings,
) -> Option<Value> {
    match images.manifest(reference).await {
        Ok(Some(object)) => serde_json::from_slice(&object.bytes).ok(),
        Ok(None) => None,
        Err(e) => {
            findings.unreadable(&images.manifest_name(reference), &e);
            None
        }
    }
}

/// The bytes of a small blob a descriptor names, checked against its digest.
async fn layer_bytes(images: &dyn Images, layer: &Value, findings: &mut Findings) -> Option<Bytes> {
    let digest = layer["digest"].as_str()?;
    let object = images.blob_name(digest);
    match images.small_blob(digest).await {
        Ok(Some(bytes)) if crate::digest::oci_digest(&bytes) == digest => Some(bytes),
        Ok(Some(_)) => {
            findings.problem(
                object,
                "holds other bytes than its digest says",
                "publish the release again",
            );
            None
        }
        Ok(None) => {
            findings.problem(object, "is missing", "publish the release again");
            None
        }
        Err(e) => {
            findings.unreadable(&object, &e);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statements_must_name_what_is_published_and_the_lock() {
        let lock = vec![Locked {
            name: "self".into(),
            url: "git+file:///src".into(),
            rev: Some("abc".into()),
            nar_hash: None,
        }];
        let statement = json!({
            "predicateType": PREDICATE_TYPE,
            "subject": [ { "name": "a", "digest": { "sha256": "aa" } } ],
            "predicate": { "buildDefinition": { "resolvedDependencies": [ lock[0].descriptor() ] } },
        });
        let aa = BTreeSet::from(["aa".to_string()]);
        assert!(statement_problems(&statement, &aa, Some(&lock)).is_empty());
        let bb = BTreeSet::from(["bb".to_string()]);
        assert_eq!(statement_problems(&statement, &bb, None).len(), 1);
        let moved = vec![Locked {
            rev: Some("def".into()),
            ..lock[0].clone()
        }];
        assert_eq!(statement_problems(&statement, &aa, Some(&moved)).len(), 1);
    }
}
