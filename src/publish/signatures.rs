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

use anyhow::Result;

use crate::bail_input;
use crate::target::Target;

/// The media type of a signature payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation of a payload layer that holds the base64 DER signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

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
