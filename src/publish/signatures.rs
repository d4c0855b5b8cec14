//! cosign "simple signing" image signatures, as `cosign sign --recursive` stores them and
//! containers/image (skopeo, podman, CRI-O) verifies them with a `sigstoreSigned` policy.
//!
//! For each signed manifest (the index and every platform manifest) with digest
//! `sha256:<hex>`: the payload
//! `{"critical":{"identity":{"docker-reference":REPO},"image":{"docker-manifest-digest":DIGEST},"type":"cosign container image signature"},"optional":null}`
//! (cosign's exact bytes: its struct's field order, no optional claims, so the same image gives
//! the same payload), signed with ECDSA P-256 (deterministic), is the one layer of an OCI image
//! manifest tagged `sha256-<hex>.sig`, media type [`SIMPLE_SIGNING`], annotated with the
//! base64 DER signature ([`SIGNATURE_ANNOTATION`]). Its config is the one containers/image
//! writes for its own sigstore attachments (an empty image whose rootfs lists the payloads).

use std::sync::Arc;

use anyhow::Result;
use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::bail_input;
use crate::digest::oci_digest;
use crate::image::{Blob, CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::sign::EcdsaKey;
use crate::target::Target;

/// The media type of a signature payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub use crate::image::attestation::{SIGNATURE_ANNOTATION, attachment_tag};
/// The tag suffix of cosign's signatures.
pub const SIG_SUFFIX: &str = ".sig";

/// Signing the images pushed to one target: the key, and the repository the signatures name.
#[derive(Debug, Clone)]
pub struct Signing {
    /// The ECDSA P-256 key.
    pub key: Arc<EcdsaKey>,
    /// The `docker-reference` of the payloads ([`docker_reference`]).
    pub reference: String,
}

/// One signed manifest's signature manifest, as the push writes it at [`Attachment::tag`].
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The signed manifest's digest.
    pub subject: String,
    /// `sha256-<hex>.sig`.
    pub tag: String,
    /// The blobs it adds: this key's payload and the config.
    pub blobs: Vec<Blob>,
    /// The signature manifest, exactly the bytes to upload.
    pub manifest: Bytes,
}

/// cosign's payload for `digest` in `reference` (its struct's field order, which a sorted map
/// also gives; no optional claims, so a re-run signs the same bytes).
pub fn payload(reference: &str, digest: &str) -> Bytes {
    let payload = json!({
        "critical": {
            "identity": { "docker-reference": reference },
            "image": { "docker-manifest-digest": digest },
            "type": "cosign container image signature",
        },
        "optional": null,
    });
    Bytes::from(payload.to_string())
}

/// The signature manifest of `subject`: the layers of `existing` (the manifest stored at its
/// `.sig` tag, if any: other keys' signatures stay, as cosign appends) with this key's
/// signature added once.
pub fn attachment(signing: &Signing, subject: &str, existing: Option<&[u8]>) -> Result<Attachment> {
    let payload = payload(&signing.reference, subject);
    let signature = base64::engine::general_purpose::STANDARD.encode(signing.key.sign(&payload));
    let layer_blob = Blob::in_memory(SIMPLE_SIGNING, payload);
    let ours = json!({
        "mediaType": SIMPLE_SIGNING,
        "digest": layer_blob.digest,
        "size": layer_blob.size,
        "annotations": { SIGNATURE_ANNOTATION: signature },
    });
    let mut layers: Vec<Value> = existing
        .and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok())
        .and_then(|m| m["layers"].as_array().cloned())
        .unwrap_or_default();
    if !layers.contains(&ours) {
        layers.push(ours);
    }
    // The config containers/image writes for its own sigstore attachments: an empty image
    // whose rootfs lists the payloads.
    let diff_ids: Vec<&Value> = layers.iter().map(|l| &l["digest"]).collect();
    let config = json!({
        "architecture": "",
        "config": {},
        "os": "",
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    let config = Blob::in_memory(CONFIG_MEDIA_TYPE, Bytes::from(config.to_string()));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": { "mediaType": CONFIG_MEDIA_TYPE, "digest": config.digest, "size": config.size },
        "layers": layers,
    });
    Ok(Attachment {
        subject: subject.to_string(),
        tag: attachment_tag(subject, SIG_SUFFIX),
        blobs: vec![config, layer_blob],
        manifest: Bytes::from(serde_json::to_vec(&manifest)?),
    })
}

/// The digests a push that signs `subjects` references (for its lease, before it reads the
/// target): each payload and the config of a fresh signature manifest.
pub fn lease_digests(signing: &Signing, subjects: &[&str]) -> Result<Vec<String>> {
    let mut digests = Vec::new();
    for subject in subjects {
        let a = attachment(signing, subject, None)?;
        digests.extend(a.blobs.iter().map(|b| b.digest.clone()));
        digests.push(oci_digest(&a.manifest));
    }
    Ok(digests)
}

/// The repository people pull `name` from on `target`, as a signature's `docker-reference`
/// names it and a `matchRepository` policy compares it: the registry's `host/repository`
/// (Docker Hub as `docker.io/...`, as containers/image normalizes it), or for a bucket or folder
/// its public `web=` address's `host[:port]` and `/<name>`. A static registry without `web=`
/// cannot be signed: nothing says where people pull it from.
pub fn docker_reference(target: &Target, name: &str) -> Result<String> {
    if let Target::Registry(r) = target {
        let host = match r.host.as_str() {
            "index.docker.io" => "docker.io",
            host => host,
        };
        let one_segment = host == "docker.io" && !r.repository.contains('/');
        let library = if one_segment { "library/" } else { "" };
        return Ok(format!("{host}/{library}{}", r.repository));
    }
    let Some(web) = target.web() else {
        bail_input!(
            "{target}: signing images on a bucket or folder needs its public address, the one people pull from: add web=https://HOST[:PORT] to the target URL (e.g. '…?web=https://registry.example.org')"
        );
    };
    let url = url::Url::parse(web)
        .map_err(|e| crate::error::input(format!("{target}: web={web:?}: {e}")))?;
    let host = url.host_str().unwrap_or_default();
    if url.path() != "/" && !url.path().is_empty() {
        bail_input!(
            "{target}: web={web:?} has a path, but pull clients reach a registry at the root of its host (/v2/): serve the bucket at the root of a host and give web=http[s]://HOST[:PORT]"
        );
    }
    Ok(match url.port() {
        Some(port) => format!("{host}:{port}/{name}"),
        None => format!("{host}/{name}"),
    })
}

/// Refuses, before anything is built or written, a target whose images cannot be signed.
pub fn check_target(target: &Target) -> Result<()> {
    docker_reference(target, "name").map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_cosigns_and_attachments_append_once() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            payload("localhost:5000/app", &d),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"localhost:5000/app"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature"}},"optional":null}}"#
            )
        );
        let pem = crate::sign::ecdsa::tests::pkcs8_pem();
        let key = EcdsaKey::from_pem(std::path::Path::new("k"), &pem, None).unwrap();
        let signing = Signing {
            key: Arc::new(key),
            reference: "h/app".into(),
        };
        let first = attachment(&signing, &d, None).unwrap();
        assert_eq!(first.tag, format!("sha256-{}.sig", "a".repeat(64)));
        let again = attachment(&signing, &d, Some(&first.manifest)).unwrap();
        assert_eq!(again.manifest, first.manifest, "a re-run adds nothing");
        let manifest: Value = serde_json::from_slice(&first.manifest).unwrap();
        let layer = &manifest["layers"][0];
        assert_eq!(layer["mediaType"], SIMPLE_SIGNING);
        let sig = layer["annotations"][SIGNATURE_ANNOTATION].as_str().unwrap();
        let der = base64::engine::general_purpose::STANDARD
            .decode(sig)
            .unwrap();
        let public = signing.key.public();
        assert!(crate::sign::ecdsa::verify(
            &public,
            &payload("h/app", &d),
            &der
        ));
        // Another key's signature stays, ours is added after it.
        let other = Signing {
            reference: "h/other".into(),
            ..signing.clone()
        };
        let both = attachment(&other, &d, Some(&first.manifest)).unwrap();
        let both: Value = serde_json::from_slice(&both.manifest).unwrap();
        assert_eq!(both["layers"].as_array().unwrap().len(), 2);
        assert_eq!(both["layers"][0], *layer);
    }

    fn reference(url: &str) -> Result<String> {
        docker_reference(&crate::target::parse(url).unwrap(), "albatros")
    }

    #[test]
    fn names_the_repository_people_pull_from() {
        for (url, want) in [
            (
                "docker://127.0.0.1:5000/team/app",
                "127.0.0.1:5000/team/app",
            ),
            ("docker://docker.io/alpine", "docker.io/library/alpine"),
            ("docker://index.docker.io/dxflrs/a", "docker.io/dxflrs/a"),
            (
                "file:out?web=http://localhost:8080",
                "localhost:8080/albatros",
            ),
            (
                "s3://reg?endpoint=h&web=https://registry.example.org/",
                "registry.example.org/albatros",
            ),
        ] {
            assert_eq!(reference(url).unwrap(), want, "{url}");
        }
        for (url, needle) in [
            ("file:out", "add web="),
            (
                "s3://reg?endpoint=h&web=https://h.org/sub",
                "root of its host",
            ),
        ] {
            let e = reference(url).unwrap_err();
            assert_eq!(crate::error::exit_code(&e), 2);
            assert!(e.to_string().contains(needle), "{e}");
        }
    }
}
