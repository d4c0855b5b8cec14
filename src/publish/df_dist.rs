//! Static binaries on an object store, in the `df-dist-v1` layout the Go tool wrote.
//!
//! ```text
//! df-dist-v1/<name>/<tag>/<os>/<arch>/<file>   the binary
//! df-dist-v1/<name>/<tag>                      {"flavors":[{"resources":[{"path":..}],"platform":{..}}]}
//! df-dist-v1/<name>                            {"name":..,"tags":[newest first]}
//! ```
//! Every platform's binaries sit at `<os>/<arch>/`, arm included, because download pages build
//! URLs from `os`, `architecture` and the resource `path`. Only when two flavors of one release
//! share os and arch (armv6l and armv7l together) does the variant become a level, written into
//! the resource path itself (`"path":"v6/albatros"`), so those pages still find every file.
//! Write order (the phases of the plan [`plan`] makes): binaries, then SBOMs, `SHA256SUMS`
//! and its signature, then the tag document, then the name document, so a reader never
//! follows a listed tag to a missing file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::derived::DerivedList;
use super::layout::DfDistLayout;
use super::pages::{self, Extras};
use crate::artifact::StaticFile;
use crate::digest::sha256_store_file;
use crate::plan::{Address, Content, LeaseSpec, Phase, Plan, Planner, Step};
use crate::platform::Platform;
use crate::report::Status;
use crate::sign::Signer;
use crate::store::ObjectStore;

const JSON: &str = "application/json";
const BINARY: &str = "application/octet-stream";

/// The tag document: one flavor per platform.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TagDocument {
    /// One entry per platform.
    pub flavors: Vec<Flavor>,
    /// `SHA256SUMS`, relative to the tag folder (an addition readers may ignore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksums: Option<String>,
    /// `SHA256SUMS.minisig`, when the release was signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The release's description, for its pages (an addition readers may ignore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The minisign public key (base64) of `signature`, for the pages' `minisign -Vm -P`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minisign_public_key: Option<String>,
    /// Images published with the release, for the pages' pull lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<super::page::ImageRef>,
    /// The binaries' SLSA provenance (a DSSE envelope), when an ECDSA key signed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<String>,
}

/// The files of one platform.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Flavor {
    /// The files.
    pub resources: Vec<Resource>,
    /// The platform, `architecture` before `os` as the Go tool wrote it.
    pub platform: DfPlatform,
    /// The CycloneDX SBOM of the flavor's Nix closure, relative to the tag folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom: Option<String>,
}

/// One file of a flavor; `size` and `sha256` are additions readers may ignore.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Resource {
    /// Path relative to `<tag>/<os>/<arch>/`: the file name, or `<variant>/<file name>`.
    pub path: String,
    /// Size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Hex sha256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A platform in df-dist-v1 documents.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct DfPlatform {
    /// CPU architecture.
    pub architecture: String,
    /// Operating system.
    pub os: String,
    /// CPU variant, where the platform has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl DfPlatform {
    /// `os/arch[/variant]`, as people and pull clients write a platform.
    pub fn label(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// The resource path of `file` (relative to `<tag>/<os>/<arch>/`): its name, or
/// `<variant>/<name>` when another flavor of the release has the same os and arch.
fn resource_path(file: &StaticFile, all: &[HashedFile]) -> String {
    let p = &file.platform;
    let shared = all.iter().any(|o| {
        let q = &o.file.platform;
        q != p && q.os == p.os && q.architecture == p.architecture
    });
    match (&p.variant, shared) {
        (Some(variant), true) => format!("{variant}/{}", file.file_name),
        _ => file.file_name.clone(),
    }
}

/// What to publish: a name, a tag and the files.
pub struct StaticRelease<'a> {
    /// Release name.
    pub name: &'a str,
    /// Tag.
    pub tag: &'a str,
    /// The binaries, hashed once for every tag and target ([`hash_files`]).
    pub files: &'a [HashedFile],
    /// Signs `SHA256SUMS` when given.
    pub signer: Option<&'a Signer>,
    /// A CycloneDX SBOM per platform, published beside its binaries.
    pub sboms: &'a BTreeMap<Platform, Bytes>,
    /// What the pages show beyond the files, and whether to write them.
    pub extras: &'a Extras,
    /// The target's public address (`web=`), for the pages' links.
    pub web: Option<&'a str>,
    /// Signs the binaries' provenance when given.
    pub attester: Option<&'a crate::provenance::Attester>,
}

/// The checksum file of a tag, beside its `<os>/` folders.
pub const CHECKSUMS: &str = "SHA256SUMS";
/// Its minisign signature.
pub const SIGNATURE: &str = "SHA256SUMS.minisig";
const TEXT: &str = "text/plain; charset=utf-8";
/// CycloneDX JSON.
pub const CYCLONEDX: &str = "application/vnd.cyclonedx+json";

/// A binary with its size and sha256.
pub struct HashedFile {
    /// The binary.
    pub file: StaticFile,
    /// Size in bytes.
    pub size: u64,
    /// Hex sha256.
    pub sha256: String,
}

/// A binary, its resource path and its key in this release.
struct Prepared<'a> {
    file: &'a StaticFile,
    path: String,
    key: String,
    size: u64,
    sha256: &'a str,
}

impl Prepared<'_> {
    /// The binary's path below the tag folder (`linux/amd64/albatros`).
    fn tag_path(&self) -> String {
        format!(
            "{}{}",
            DfDistLayout::flavor_dir(&self.file.platform),
            self.path
        )
    }
}

/// A static release's push to one store, as a planner: its lease names the tag and every
/// key it writes; its one plan has the phases — binaries, then SBOMs, checksums and signature
/// (committing: a gc that ran meanwhile is waited for and what it took is put back), then the
/// tag document, then the name document.
pub struct Push<'a> {
    store: Arc<dyn ObjectStore>,
    release: StaticRelease<'a>,
    planned: usize,
}

impl<'a> Push<'a> {
    /// The push of `release` to `store`.
    pub fn new(store: Arc<dyn ObjectStore>, release: StaticRelease<'a>) -> Push<'a> {
        Push {
            store,
            release,
            planned: 0,
        }
    }
}

#[async_trait]
impl Planner for Push<'_> {
    async fn prepare(&mut self) -> Result<()> {
        self.store.check().await
    }

    fn lease(&self) -> Option<LeaseSpec> {
        let layout = DfDistLayout::new(self.release.name);
        let tag = self.release.tag;
        let files = prepare(&layout, &self.release).into_iter().map(|p| p.key);
        let page = (!self.release.extras.no_pages).then(|| layout.tag_file(tag, pages::INDEX));
        let keys = files.chain(page).chain([layout.tag_key(tag)]).collect();
        Some(LeaseSpec {
            name: self.release.name.to_string(),
            tags: vec![tag.to_string()],
            keys,
            ..LeaseSpec::default()
        })
    }

    async fn next(&mut self, applied: bool) -> Result<Option<Plan>> {
        self.planned += 1;
        let (store, release) = (&*self.store, &self.release);
        match self.planned {
            1 => plan(store, release).await.map(Some),
            // The pages again from the name document as it was settled (a concurrent push's
            // tag included); written only where they changed.
            2 if applied && !release.extras.no_pages => {
                let layout = DfDistLayout::new(release.name);
                pages::healed(store, &layout, release.web).await.map(Some)
            }
            _ => Ok(None),
        }
    }
}

/// Plans a static release on one store: reads what it holds and returns the phases.
pub async fn plan(store: &dyn ObjectStore, release: &StaticRelease<'_>) -> Result<Plan> {
    let layout = DfDistLayout::new(release.name);
    let prepared = prepare(&layout, release);
    // Collected first: a lazy `map` over borrows trips the compiler's Send check of the
    // planner's boxed future.
    let reads: Vec<_> = prepared.iter().map(|p| binary_step(store, p)).collect();
    let binaries: Vec<Step> = futures::stream::iter(reads)
        .buffered(super::oci::READS_AT_ONCE)
        .try_collect()
        .await?;
    let sboms = sbom_paths(release, &prepared);
    let mut documents = sbom_steps(store, &layout, release, &sboms).await?;
    let (checksums, signed) = checksum_steps(store, &layout, release, &prepared).await?;
    documents.extend(checksums);
    let subjects: Vec<(String, &str)> = prepared.iter().map(|p| (p.tag_path(), p.sha256)).collect();
    let provenance = super::attest::static_step(store, &layout, release, &subjects).await?;
    let attested = provenance.is_some();
    documents.extend(provenance);
    let tag_key = layout.tag_key(release.tag);
    let tag_doc = tag_document(&prepared, &sboms, (signed, attested), release)?;
    let with_pages = !release.extras.no_pages;
    if with_pages {
        let page = pages::tag_page_step(store, &layout, release.web, release.tag, &tag_doc);
        documents.push(page.await?);
    }
    let tag_doc_step = document_step(store, &tag_key, tag_doc.clone(), JSON).await?;
    let name_doc = name_document_step(store, &layout, release.tag).await?;
    let tags = pages::planned_tags(&name_doc).to_vec();
    let mut phases = vec![
        Phase::new("binaries", binaries).parallel(),
        Phase::new("checksums and SBOMs", documents).committing(),
        Phase::new("tag document", vec![tag_doc_step]),
        Phase::new("name document", vec![name_doc]),
    ];
    if with_pages {
        let this = Some((release.tag, &tag_doc[..]));
        let steps = pages::name_steps(store, &layout, release.web, &tags, this).await?;
        phases.push(Phase::new("pages", steps));
    }
    Ok(Plan {
        phases,
        ..Plan::default()
    })
}

/// Hashes every binary (in parallel, off the async threads); /nix/store binaries' digests
/// are remembered in `cache_dir`.
pub async fn hash_files(files: &[StaticFile], cache_dir: Option<&Path>) -> Result<Vec<HashedFile>> {
    let tasks = files.iter().cloned().map(|file| {
        let cache_dir = cache_dir.map(Path::to_path_buf);
        tokio::task::spawn_blocking(move || -> Result<HashedFile> {
            let size = std::fs::metadata(&file.path)
                .with_context(|| format!("reading {}", file.path.display()))?
                .len();
            let sha256 = sha256_store_file(&file.path, cache_dir.as_deref())?;
            Ok(HashedFile { file, size, sha256 })
        })
    });
    let mut out = Vec::new();
    for task in futures::future::join_all(tasks).await {
        out.push(task??);
    }
    Ok(out)
}

/// The release's binaries with their keys.
fn prepare<'a>(layout: &DfDistLayout, release: &StaticRelease<'a>) -> Vec<Prepared<'a>> {
    let files: &'a [HashedFile] = release.files;
    files
        .iter()
        .map(|h| {
            let path = resource_path(&h.file, files);
            Prepared {
                file: &h.file,
                key: layout.file_key(release.tag, &h.file.platform, &path),
                path,
                size: h.size,
                sha256: &h.sha256,
            }
        })
        .collect()
}

/// A binary's upload: `exists` when the store holds the same bytes (size and sha256).
async fn binary_step(store: &dyn ObjectStore, p: &Prepared<'_>) -> Result<Step> {
    let mut status = Status::New;
    if let Some(info) = store.head(&p.key).await?
        && info.size == p.size
    {
        let stored = match info.sha256 {
            Some(sha256) => Some(sha256),
            None => store.sha256(&p.key).await?,
        };
        if stored.as_deref() == Some(p.sha256) {
            status = Status::Exists;
        }
    }
    let content = Content::File(p.file.path.clone());
    let address = Address::Key(p.key.clone());
    let step = Step::write(address, &p.key, content, BINARY, p.sha256);
    Ok(step
        .labelled(format!("{} -> {}", p.file.path.display(), p.key))
        .with_status(status)
        .sized(p.size, Some(format!("sha256:{}", p.sha256))))
}

/// `SHA256SUMS` (coreutils format, paths relative to the tag folder, so `sha256sum -c` works
/// in a download of the tree), sorted by path.
pub fn checksums(prepared_paths: &[(String, &str)]) -> String {
    let mut sorted: Vec<&(String, &str)> = prepared_paths.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted
        .iter()
        .map(|(path, sha256)| format!("{sha256}  {path}\n"))
        .collect()
}

/// The trusted comment of a tag's signature: what it vouches for.
pub fn trusted_comment(name: &str, tag: &str) -> String {
    format!("{CHECKSUMS} of {name} {tag}")
}

/// `SHA256SUMS` and, with a signer, its signature; and whether it is signed.
async fn checksum_steps(
    store: &dyn ObjectStore,
    layout: &DfDistLayout,
    release: &StaticRelease<'_>,
    prepared: &[Prepared<'_>],
) -> Result<(Vec<Step>, bool)> {
    let paths: Vec<(String, &str)> = prepared.iter().map(|p| (p.tag_path(), p.sha256)).collect();
    let sums = Bytes::from(checksums(&paths));
    let sums_key = layout.tag_file(release.tag, CHECKSUMS);
    let mut steps = vec![document_step(store, &sums_key, sums.clone(), TEXT).await?];
    let Some(signer) = release.signer else {
        return Ok((steps, false));
    };
    let key = layout.tag_file(release.tag, SIGNATURE);
    let trusted = trusted_comment(release.name, release.tag);
    // Signatures are randomized: keep a published one that still holds, so a re-run sends nothing.
    let kept = store.get(&key).await?.filter(|old| {
        std::str::from_utf8(old).is_ok_and(|old| signer.verifies(&sums, old, &trusted))
    });
    let signature = match kept {
        Some(old) => old,
        None => Bytes::from(signer.sign(&sums, &trusted)?),
    };
    steps.push(document_step(store, &key, signature, TEXT).await?);
    Ok((steps, true))
}

/// Each flavor's SBOM path below the tag folder, beside its first binary.
fn sbom_paths(
    release: &StaticRelease<'_>,
    prepared: &[Prepared<'_>],
) -> BTreeMap<Platform, String> {
    let mut paths = BTreeMap::new();
    for p in prepared {
        let platform = &p.file.platform;
        if release.sboms.contains_key(platform) && !paths.contains_key(platform) {
            let dir = DfDistLayout::flavor_dir(platform);
            paths.insert(platform.clone(), format!("{dir}{}.cdx.json", p.path));
        }
    }
    paths
}

/// The SBOM writes, one per flavor that has one.
async fn sbom_steps(
    store: &dyn ObjectStore,
    layout: &DfDistLayout,
    release: &StaticRelease<'_>,
    paths: &BTreeMap<Platform, String>,
) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    for (platform, path) in paths {
        let Some(sbom) = release.sboms.get(platform) else {
            continue;
        };
        let key = layout.tag_file(release.tag, path);
        steps.push(document_step(store, &key, sbom.clone(), CYCLONEDX).await?);
    }
    Ok(steps)
}

/// The tag document for the prepared binaries, flavors sorted by platform.
fn tag_document(
    prepared: &[Prepared<'_>],
    sboms: &BTreeMap<Platform, String>,
    (signed, attested): (bool, bool),
    release: &StaticRelease<'_>,
) -> Result<Bytes> {
    let mut by_platform: BTreeMap<&Platform, Vec<Resource>> = BTreeMap::new();
    for p in prepared {
        by_platform
            .entry(&p.file.platform)
            .or_default()
            .push(Resource {
                path: p.path.clone(),
                size: Some(p.size),
                sha256: Some(p.sha256.to_string()),
            });
    }
    let flavors = by_platform
        .into_iter()
        .map(|(platform, resources)| Flavor {
            resources,
            platform: DfPlatform {
                architecture: platform.architecture.clone(),
                os: platform.os.clone(),
                variant: platform.variant.clone(),
            },
            sbom: sboms.get(platform).cloned(),
        })
        .collect();
    let doc = TagDocument {
        flavors,
        checksums: Some(CHECKSUMS.to_string()),
        signature: signed.then(|| SIGNATURE.to_string()),
        description: release.extras.description.clone(),
        minisign_public_key: release.signer.map(Signer::public_key_base64),
        images: release.extras.images.clone(),
        provenance: attested.then(|| super::attest::PROVENANCE.to_string()),
    };
    Ok(Bytes::from(serde_json::to_vec(&doc)?))
}

/// A small document's write: `exists` when the store holds exactly these bytes.
pub async fn document_step(
    store: &dyn ObjectStore,
    key: &str,
    bytes: Bytes,
    media_type: &str,
) -> Result<Step> {
    let status = match store.get(key).await? {
        Some(old) if old == bytes => Status::Exists,
        Some(_) => Status::Updated,
        None => Status::New,
    };
    let step = Step::bytes(Address::Key(key.to_string()), key, bytes, media_type);
    Ok(step.labelled(format!("document {key}")).with_status(status))
}

/// The name document's update with `tag` in front (counted even before its tag document
/// exists: a dry run never writes it); rebuilt from the store when the step runs.
async fn name_document_step(
    store: &dyn ObjectStore,
    layout: &DfDistLayout,
    tag: &str,
) -> Result<Step> {
    let list = DerivedList::Names(layout.clone());
    list.step(store, vec![tag.to_string()], BTreeSet::new(), true)
        .await
}

#[cfg(test)]
#[path = "df_dist_tests.rs"]
mod tests;
