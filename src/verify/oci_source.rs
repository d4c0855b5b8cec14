//! Where verify reads images from: a static registry's v2 layout through a [`Source`], or a
//! registry's API ([`RegistryImages`]). [`super::oci_check`] checks either the same way.

use anyhow::Result;
use async_trait::async_trait;
use futures::TryStreamExt;
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};

use super::{Findings, Object, Source};
use crate::image::{INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::publish::layout::{V2_INDEX, V2Layout};
use crate::publish::registry::RegistrySink;

/// Media types asked for when reading a manifest from a registry.
const ACCEPT: &[&str] = &[
    INDEX_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Read access to one image repository, as a pull client has it.
#[async_trait]
pub trait Images: Send + Sync {
    /// Where the images are read from, for messages.
    fn describe(&self) -> String;
    /// How messages name a manifest (`v2/NAME/manifests/REF` or `docker://…@REF`).
    fn manifest_name(&self, reference: &str) -> String;
    /// How messages name a blob.
    fn blob_name(&self, digest: &str) -> String;
    /// How messages name the tag list.
    fn tags_name(&self) -> String;
    /// Checks that `GET /v2/` answers 200 (or would, for a store read directly); records
    /// what is wrong.
    async fn ping(&self, findings: &mut Findings, fix_index: &str) -> Result<()>;
    /// The tags, `None` when there is no tag list.
    async fn tags(&self) -> Result<Option<Vec<String>>>;
    /// A manifest by tag or digest, with the content type it is served with.
    async fn manifest(&self, reference: &str) -> Result<Option<Object>>;
    /// A blob's size and (unless `quick`) the hex sha256 of its downloaded bytes.
    async fn blob(&self, digest: &str, quick: bool) -> Result<Option<(u64, Option<String>)>>;
    /// The referrers of `digest` from the referrers API or, on a static registry, the file
    /// `v2/NAME/referrers/DIGEST`; `None` where there is none.
    async fn referrers(&self, digest: &str) -> Result<Option<Object>>;
    /// The bytes of a small blob (a signature payload, an envelope); the caller checks them.
    async fn small_blob(&self, digest: &str) -> Result<Option<bytes::Bytes>>;
}

/// A static registry (the v2 layout) read through a [`Source`].
pub struct StaticImages<'a> {
    source: &'a dyn Source,
    layout: V2Layout,
}

impl<'a> StaticImages<'a> {
    /// The repository `name` on `source`.
    pub fn new(source: &'a dyn Source, name: &str) -> StaticImages<'a> {
        StaticImages {
            source,
            layout: V2Layout::new(name),
        }
    }

    /// Key of the `tags/list` document.
    pub fn tags_key(&self) -> String {
        self.layout.tags_key()
    }
}

#[async_trait]
impl Images for StaticImages<'_> {
    fn describe(&self) -> String {
        self.source.describe()
    }

    fn manifest_name(&self, reference: &str) -> String {
        self.layout.manifest_key(reference)
    }

    fn blob_name(&self, digest: &str) -> String {
        self.layout.blob_key(digest)
    }

    fn tags_name(&self) -> String {
        self.tags_key()
    }

    async fn ping(&self, findings: &mut Findings, fix_index: &str) -> Result<()> {
        const INDEX: &str = V2_INDEX;
        if self.source.is_web() {
            if self.source.get("v2/").await?.is_some() {
                findings.checked("v2/");
                return Ok(());
            }
            if self.source.size(INDEX).await?.is_some() {
                findings.problem(
                    "v2/",
                    "GET /v2/ answers 404 while v2/index.html exists: pull clients fail with \"pinging container registry … 404\"",
                    fix_index,
                );
                return Ok(());
            }
        } else if self.source.size(INDEX).await?.is_some() {
            findings.checked(INDEX);
            return Ok(());
        }
        findings.problem(
            INDEX,
            "is missing, so GET /v2/ does not answer 200 and pull clients refuse the registry",
            format!(
                "push any image again (`alba container push -t {}:TAG DIR TARGET`): it writes v2/index.html",
                self.layout.name()
            ),
        );
        Ok(())
    }

    async fn tags(&self) -> Result<Option<Vec<String>>> {
        let Some(object) = self.source.get(&self.tags_key()).await? else {
            return Ok(None);
        };
        let list: serde_json::Value = serde_json::from_slice(&object.bytes)
            .map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", self.tags_key()))?;
        Ok(Some(string_list(&list["tags"])))
    }

    async fn manifest(&self, reference: &str) -> Result<Option<Object>> {
        self.source.get(&self.manifest_name(reference)).await
    }

    async fn blob(&self, digest: &str, quick: bool) -> Result<Option<(u64, Option<String>)>> {
        let key = self.blob_name(digest);
        if quick {
            return Ok(self.source.size(&key).await?.map(|size| (size, None)));
        }
        let hashed = self.source.hash(&key).await?;
        Ok(hashed.map(|(size, hex)| (size, Some(hex))))
    }

    async fn referrers(&self, digest: &str) -> Result<Option<Object>> {
        let key = self.layout.referrers_key(digest);
        self.source.get(&key).await
    }

    async fn small_blob(&self, digest: &str) -> Result<Option<bytes::Bytes>> {
        let object = self.source.get(&self.blob_name(digest)).await?;
        Ok(object.map(|o| o.bytes))
    }
}

/// The strings of a JSON array (anything else is empty).
fn string_list(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect()
}

/// A registry repository read through its API.
pub struct RegistryImages {
    registry: RegistrySink,
    /// `docker://HOST/REPO`, for messages.
    url: String,
}

impl RegistryImages {
    /// Reads `registry`, named `url` in messages.
    pub fn new(registry: RegistrySink, url: String) -> RegistryImages {
        RegistryImages { registry, url }
    }

    /// A `GET` of `path`, `None` on 404, an error for any other failure.
    async fn get(&self, path: &str, accept: &str) -> Result<Option<reqwest::Response>> {
        let response = self.registry.read(Method::GET, path, accept).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(response)),
            s => anyhow::bail!("{}: GET {path} answered HTTP {s}", self.url),
        }
    }
}

/// The object of a successful answer: body and `Content-Type`.
async fn object_of(response: reqwest::Response) -> Result<Object> {
    let content_type = super::web::content_type(&response);
    Ok(Object {
        bytes: response.bytes().await?,
        content_type: Some(content_type),
    })
}

#[async_trait]
impl Images for RegistryImages {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn manifest_name(&self, reference: &str) -> String {
        let sep = if reference.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        format!("{}{sep}{reference}", self.url)
    }

    fn blob_name(&self, digest: &str) -> String {
        format!("{} blob {digest}", self.url)
    }

    fn tags_name(&self) -> String {
        format!("{} tags/list", self.url)
    }

    async fn ping(&self, findings: &mut Findings, _fix_index: &str) -> Result<()> {
        match self.registry.ping().await? {
            200 => findings.checked(format!("{} /v2/", self.url)),
            status => findings.problem(
                format!("{} /v2/", self.url),
                format!("GET /v2/ answers HTTP {status}, not 200"),
                "check the registry URL and credentials (--registry-user, ~/.docker/config.json)",
            ),
        }
        Ok(())
    }

    async fn tags(&self) -> Result<Option<Vec<String>>> {
        let tags = self.registry.list_tags().await?;
        Ok((!tags.is_empty()).then_some(tags))
    }

    async fn manifest(&self, reference: &str) -> Result<Option<Object>> {
        let path = format!("manifests/{reference}");
        match self.get(&path, &ACCEPT.join(", ")).await? {
            Some(response) => Ok(Some(object_of(response).await?)),
            None => Ok(None),
        }
    }

    async fn blob(&self, digest: &str, quick: bool) -> Result<Option<(u64, Option<String>)>> {
        let path = format!("blobs/{digest}");
        if quick {
            let response = self.registry.read(Method::HEAD, &path, "*/*").await?;
            return Ok(match response.status() {
                StatusCode::NOT_FOUND => None,
                s if s.is_success() => Some((super::web::content_length(&response), None)),
                s => anyhow::bail!("{}: HEAD {path} answered HTTP {s}", self.url),
            });
        }
        let Some(response) = self.get(&path, "*/*").await? else {
            return Ok(None);
        };
        let (mut hasher, mut size) = (Sha256::new(), 0u64);
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.try_next().await? {
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok(Some((size, Some(hex::encode(hasher.finalize())))))
    }

    async fn referrers(&self, digest: &str) -> Result<Option<Object>> {
        // Registries without the referrers API (distribution 2.8) answer 404: nothing to compare.
        match self
            .get(&format!("referrers/{digest}"), INDEX_MEDIA_TYPE)
            .await
        {
            Ok(Some(response)) => Ok(Some(object_of(response).await?)),
            Ok(None) | Err(_) => Ok(None),
        }
    }

    async fn small_blob(&self, digest: &str) -> Result<Option<bytes::Bytes>> {
        match self.get(&format!("blobs/{digest}"), "*/*").await? {
            Some(response) => Ok(Some(response.bytes().await?)),
            None => Ok(None),
        }
    }
}
