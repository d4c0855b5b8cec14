//! An OCI registry (`docker://HOST/REPO`): pushing to it ([`OciSink`]), reading it (`ls`,
//! `alba verify`) and deleting from it ([`delete`], planned by [`removal`]: `container rm|gc`).
//!
//! The shared push plan ([`super::oci::plan`]) decides what to write and in which order, and
//! the executor writes it; the sink (`sink.rs`) only speaks the distribution API:
//! - blobs: `HEAD` to skip what is there, then one upload session per blob — `POST` then a
//!   monolithic `PUT` of the spooled file with its known size, streamed in chunks so memory
//!   stays bounded whatever the layer size;
//! - manifests: `PUT` of the exact bytes that were digested, with their media type as
//!   `Content-Type`;
//! - what a reference points at: `HEAD` of the manifest (`Docker-Content-Digest`), `None` on
//!   404.
//!
//! These write-path requests go out on reqwest directly, because oci-client does not show
//! response headers; sign-in (bearer tokens from the registry's token service, or basic auth)
//! and the pull-side calls of `ls` (tag list, tag manifest) stay on oci-client. A 401 in the
//! middle of a push (an expired token) signs in again once and repeats the request. oci-client
//! has no DELETE and asks tokens only for pull and push; deletes answer the registry's bearer
//! challenge themselves with the `delete` scope (in `client`).
//!
//! Retries: connection failures, 5xx and 429 are retried under the run's shared policy
//! ([`crate::transport`]: attempts and total time bounded, the answer's `Retry-After` honoured
//! up to a cap, else exponential backoff with jitter), the same policy S3 buckets use; pushes,
//! reads and deletes all go through one wrapper (`RegistrySink::retrying`). A blob retry opens
//! a new upload session and re-reads the file from its start. The final error names the
//! registry, the object, the attempts and the last status, with the secret scrubbed out.
//!
//! Transport: TLS, except for registries the target marks insecure (loopback, or
//! `?insecure=true`), which get plain HTTP (oci-client through
//! `ClientProtocol::HttpsExcept([host:port])`, reqwest through an `http://` base URL).
//!
//! Files by job: this one holds the type, its constructor and the pull-side reads; `client`
//! signs in, sends, retries and words the final error; `failure` reads and classifies one
//! failed attempt; `sink` is the push side; [`delete`] is `rm` and `gc`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::{Result, anyhow};
use bytes::Bytes;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use reqwest::Response;
use reqwest::header::ACCEPT;

use super::credentials::Credentials;
#[cfg(doc)]
use super::oci::OciSink;
use crate::image::{INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::target::RegistryTarget;
use crate::transport::{Kind, by_status};
use failure::{Failed, is_not_found};

mod client;
pub mod delete;
mod failure;
pub mod removal;
mod sink;

/// Tags asked for per `tags/list` page.
const TAGS_PAGE: usize = 1000;

/// Manifest media types `ls` accepts for a tag.
const PULL_TYPES: &[&str] = &[
    INDEX_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// An [`OciSink`] pushing to one repository of an OCI registry.
pub struct RegistrySink {
    client: Client,
    http: reqwest::Client,
    /// `http[s]://host[:port]` of the registry's API (Docker Hub: `registry-1.docker.io`).
    base_url: String,
    credentials: Credentials,
    auth: RegistryAuth,
    host: String,
    repository: String,
    insecure: bool,
    /// Any reference of the repository: what blob calls and the token cache are keyed by.
    base: Reference,
    /// What sign-in gave, per operation (pull, push): `Some(None)` when it gave no bearer
    /// token (basic auth or anonymous), `None` before sign-in.
    tokens: tokio::sync::Mutex<[Option<Option<String>>; 2]>,
    /// The bearer token the registry's challenge gave for deleting, once a DELETE needed one.
    delete_token: tokio::sync::Mutex<Option<String>>,
    /// Requests retried so far, for the report.
    retries: AtomicU64,
}

impl RegistrySink {
    /// A sink for `target`'s repository, authenticating with `credentials`. Nothing is sent
    /// before [`RegistrySink::sign_in`] (or [`OciSink::check`]).
    pub fn new(target: &RegistryTarget, credentials: Credentials) -> Result<RegistrySink> {
        let base = Reference::with_tag(
            target.host.clone(),
            target.repository.clone(),
            "latest".into(),
        );
        let registry = base.resolve_registry().to_string();
        let protocol = if target.insecure {
            // oci-client compares this list with the registry's host[:port] exactly.
            ClientProtocol::HttpsExcept(vec![registry.clone()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(300)),
            user_agent: concat!("alba/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let setup = |e: &dyn std::fmt::Display| {
            anyhow!("cannot set up the HTTP client for {}: {e}", target.host)
        };
        let client = Client::try_from(config).map_err(|e| setup(&e))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("alba/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            // Per read, not per request: a large layer may take long to send.
            .read_timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| setup(&e))?;
        let scheme = if target.insecure { "http" } else { "https" };
        let auth = credentials.registry_auth();
        Ok(RegistrySink {
            client,
            http,
            base_url: format!("{scheme}://{registry}"),
            credentials,
            auth,
            host: target.host.clone(),
            repository: target.repository.clone(),
            insecure: target.insecure,
            base,
            tokens: tokio::sync::Mutex::new([None, None]),
            delete_token: tokio::sync::Mutex::new(None),
            retries: AtomicU64::new(0),
        })
    }

    /// Authenticates for `operation` (a bearer token where the registry hands them out,
    /// basic auth otherwise). oci-client's low-level calls need this first.
    pub async fn sign_in(&self, operation: RegistryOperation) -> Result<()> {
        let what = match operation {
            RegistryOperation::Pull => format!("sign-in (pull) for {}", self.repository),
            RegistryOperation::Push => format!("sign-in (push) for {}", self.repository),
        };
        self.retrying(&what, || self.renew_token(operation, None))
            .await?;
        Ok(())
    }

    /// Every tag of the repository in lexical order (empty for an unknown repository).
    pub async fn list_tags(&self) -> Result<Vec<String>> {
        let mut tags = std::collections::BTreeSet::new();
        let mut last: Option<String> = None;
        loop {
            let what = format!("tag list of {}", self.repository);
            let page = self
                .with_retries(&what, || async {
                    match self
                        .client
                        .list_tags(&self.base, &self.auth, Some(TAGS_PAGE), last.as_deref())
                        .await
                    {
                        Ok(page) => Ok(page.tags),
                        Err(e) if is_not_found(&e) => Ok(Vec::new()),
                        Err(e) => Err(e),
                    }
                })
                .await?;
            // Registries page as they like: some cap `n`, some (distribution 2.8) ignore `n`
            // and `last` and answer everything in storage order. Stop at a page with nothing new.
            let before = tags.len();
            last = page.last().cloned();
            tags.extend(page);
            if tags.len() == before {
                return Ok(tags.into_iter().collect());
            }
        }
    }

    /// The manifest a tag points at, with its digest; `None` when the tag does not exist.
    pub async fn tag_manifest(&self, tag: &str) -> Result<Option<(Bytes, String)>> {
        let reference = self.reference(tag);
        self.with_retries(&format!("GET of tag {tag}"), || async {
            match self
                .client
                .pull_manifest_raw(&reference, &self.auth, PULL_TYPES)
                .await
            {
                Ok(found) => Ok(Some(found)),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// `GET /v2/` (the API version check every pull client makes first): its status.
    pub async fn ping(&self) -> Result<u16> {
        let url = format!("{}/v2/", self.base_url);
        self.retrying("GET /v2/", || async {
            let response = self
                .send(RegistryOperation::Pull, || Ok(self.http.get(&url)))
                .await?;
            match response.status().as_u16() {
                status if by_status(status) == Kind::Transient => {
                    Err(Failed::answer(response).await)
                }
                status => Ok(status),
            }
        })
        .await
    }

    /// A pull-side request (`GET` or `HEAD`) of `…/v2/<repository>/<path>`, as readers such as
    /// `alba verify` make it: signed in for pull, transient answers retried under the run's
    /// policy, any other answer (404 included) returned for the caller to judge.
    pub async fn read(
        &self,
        method: reqwest::Method,
        path: &str,
        accept: &str,
    ) -> Result<Response> {
        let url = self.url(path);
        self.retrying(&format!("{method} of {path}"), || async {
            let response = self
                .send(RegistryOperation::Pull, || {
                    Ok(self
                        .http
                        .request(method.clone(), &url)
                        .header(ACCEPT, accept))
                })
                .await?;
            if by_status(response.status().as_u16()) == Kind::Transient {
                return Err(Failed::answer(response).await);
            }
            Ok(response)
        })
        .await
    }

    /// The reference of a manifest by digest or tag.
    fn reference(&self, reference: &str) -> Reference {
        if reference.starts_with("sha256:") {
            // The digest doubles as the tag: oci-client builds a by-digest URL from the digest,
            // and on a registry that answers a manifest PUT without `Location` (ECR) it strips
            // the tag from that URL and panics if it is not its suffix.
            Reference::with_tag_and_digest(
                self.host.clone(),
                self.repository.clone(),
                reference.into(),
                reference.into(),
            )
        } else {
            Reference::with_tag(self.host.clone(), self.repository.clone(), reference.into())
        }
    }

    /// `…/v2/<repository>/<path>` on the registry.
    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base_url, self.repository)
    }
}

/// `tag 0.9` or `manifest sha256:…`, for messages.
fn object(reference: &str) -> String {
    if reference.starts_with("sha256:") {
        format!("manifest {reference}")
    } else {
        format!("tag {reference}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::credentials::Auth;

    #[test]
    fn digest_references_keep_their_digest() {
        let target = RegistryTarget {
            host: "docker.io".into(),
            repository: "library/a".into(),
            tag: None,
            insecure: false,
        };
        let credentials = Credentials {
            auth: Auth::Anonymous,
            source: "anonymous".into(),
        };
        let sink = RegistrySink::new(&target, credentials).unwrap();
        let r = sink.reference("sha256:00");
        assert_eq!(
            (r.digest(), r.resolve_registry()),
            (Some("sha256:00"), "index.docker.io")
        );
        assert_eq!(sink.reference("0.9").tag(), Some("0.9"));
        assert_eq!(object("0.9"), "tag 0.9");
    }
}
