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
//! Write order: binaries, then the tag document, then the name document, so a reader never
//! follows a listed tag to a missing file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::lists::{self, Order};
use crate::artifact::StaticFile;
use crate::digest::{sha256_hex, sha256_store_file};
use crate::platform::Platform;
use crate::report::{Status, TargetReport};
use crate::sign::Signer;
use crate::store::{Body, ObjectStore, Put};
use crate::ui::{Ui, human_size};

/// The root of the layout.
pub const ROOT: &str = "df-dist-v1";
const JSON: &str = "application/json";
const BINARY: &str = "application/octet-stream";

/// The tag document: one flavor per platform.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct TagDocument {
    /// One entry per platform.
    pub flavors: Vec<Flavor>,
    /// `SHA256SUMS`, relative to the tag folder (an addition readers may ignore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksums: Option<String>,
    /// `SHA256SUMS.minisig`, when the release was signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
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

/// The name document: every tag, newest first.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct NameDocument {
    /// The release name.
    pub name: String,
    /// Tags, newest first.
    pub tags: Vec<String>,
}

/// Key of the name document.
pub fn name_key(name: &str) -> String {
    format!("{ROOT}/{name}")
}

/// Key of a tag document.
pub fn tag_key(name: &str, tag: &str) -> String {
    format!("{ROOT}/{name}/{tag}")
}

/// Key of a binary whose resource path (below `<os>/<arch>/`) is `path`.
pub fn file_key(name: &str, tag: &str, platform: &Platform, path: &str) -> String {
    format!(
        "{ROOT}/{name}/{tag}/{}/{}/{path}",
        platform.os, platform.architecture
    )
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
    /// Print and report, write nothing.
    pub dry_run: bool,
    /// Uploads at once.
    pub jobs: usize,
    /// Signs `SHA256SUMS` when given.
    pub signer: Option<&'a Signer>,
    /// A CycloneDX SBOM per platform, published beside its binaries.
    pub sboms: &'a BTreeMap<Platform, Bytes>,
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

/// Publishes a static release to one store.
pub async fn publish(
    store: Arc<dyn ObjectStore>,
    release: &StaticRelease<'_>,
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<()> {
    store.check().await?;
    let prepared = prepare(release);
    let lease = take_lease(&store, release, &prepared).await?;
    upload_binaries(&store, release, &prepared, ui, report).await?;
    ensure_binaries(&*store, release, &prepared, lease.as_ref(), ui).await?;
    // Checksums, signature and SBOMs after the binaries, before the tag document names them.
    let sboms = write_sboms(&*store, release, &prepared, ui, report).await?;
    let signed = write_checksums(&*store, release, &prepared, ui, report).await?;
    let tag_doc = tag_document(&prepared, &sboms, signed)?;
    write_document(
        &*store,
        &tag_key(release.name, release.tag),
        tag_doc,
        (release.dry_run, JSON),
        ui,
        report,
    )
    .await?;
    update_name_document(
        &*store,
        release.name,
        Some(release.tag),
        release.dry_run,
        ui,
        report,
    )
    .await?;
    if !release.dry_run {
        super::nginx::refresh(&*store).await?;
    }
    if let Some(lease) = lease {
        lease.release().await?;
    }
    Ok(())
}

/// Writes the push's lease (none in a dry run): gc keeps this tag and its binaries meanwhile.
async fn take_lease(
    store: &Arc<dyn ObjectStore>,
    release: &StaticRelease<'_>,
    prepared: &[Prepared<'_>],
) -> Result<Option<super::lease::Lease>> {
    if release.dry_run {
        return Ok(None);
    }
    let mut keys: Vec<String> = prepared.iter().map(|p| p.key.clone()).collect();
    keys.push(tag_key(release.name, release.tag));
    let tags = [release.tag.to_string()];
    let lease = super::lease::Lease::take(store.clone(), release.name, &tags, Vec::new(), keys);
    Ok(Some(lease.await?))
}

/// Right before the documents that name them: waits for a running gc, then uploads again any
/// binary that vanished meanwhile (see [`super::lease`]).
async fn ensure_binaries(
    store: &dyn ObjectStore,
    release: &StaticRelease<'_>,
    prepared: &[Prepared<'_>],
    lease: Option<&super::lease::Lease>,
    ui: &Ui,
) -> Result<()> {
    let Some(lease) = lease else {
        return Ok(());
    };
    lease.settle(ui).await?;
    for p in prepared {
        if store.head(&p.key).await?.is_some_and(|i| i.size == p.size) {
            continue;
        }
        ui.warn(format!(
            "{} vanished during the push (a gc?): uploading it again",
            p.key
        ));
        upload_one(store, p, release.dry_run).await?;
    }
    Ok(())
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
fn prepare<'a>(release: &StaticRelease<'a>) -> Vec<Prepared<'a>> {
    let files: &'a [HashedFile] = release.files;
    files
        .iter()
        .map(|h| {
            let path = resource_path(&h.file, files);
            Prepared {
                file: &h.file,
                key: file_key(release.name, release.tag, &h.file.platform, &path),
                path,
                size: h.size,
                sha256: &h.sha256,
            }
        })
        .collect()
}

async fn upload_binaries(
    store: &Arc<dyn ObjectStore>,
    release: &StaticRelease<'_>,
    prepared: &[Prepared<'_>],
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<()> {
    let total: u64 = prepared.iter().map(|p| p.size).sum();
    let bar = ui.bytes_bar(total, "binaries");
    let statuses: Vec<Status> = futures::stream::iter(prepared)
        .map(|p| {
            let (store, bar) = (store.clone(), bar.clone());
            async move {
                let status = upload_one(&*store, p, release.dry_run).await?;
                bar.inc(p.size);
                bar.suspend(|| {
                    ui.line(format!(
                        "{} -> {} ({}, {})",
                        p.file.path.display(),
                        p.key,
                        human_size(p.size),
                        status.word()
                    ))
                });
                anyhow::Ok(status)
            }
        })
        .buffered(release.jobs.max(1))
        .try_collect()
        .await?;
    bar.finish_and_clear();
    for (p, status) in prepared.iter().zip(statuses) {
        report.record(&p.key, p.size, status, Some(format!("sha256:{}", p.sha256)));
    }
    Ok(())
}

async fn upload_one(store: &dyn ObjectStore, p: &Prepared<'_>, dry_run: bool) -> Result<Status> {
    if let Some(info) = store.head(&p.key).await?
        && info.size == p.size
    {
        let stored = match info.sha256 {
            Some(sha256) => Some(sha256),
            None => store.sha256(&p.key).await?,
        };
        if stored.as_deref() == Some(p.sha256) {
            return Ok(Status::Exists);
        }
    }
    if !dry_run {
        let put = Put {
            key: p.key.clone(),
            body: Body::File(p.file.path.clone()),
            content_type: BINARY.into(),
            sha256: p.sha256.to_string(),
        };
        store.put(&put).await?;
    }
    Ok(Status::New)
}

/// A flavor's path prefix below the tag folder: `<os>/<arch>/`.
fn flavor_dir(platform: &Platform) -> String {
    format!("{}/{}/", platform.os, platform.architecture)
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

/// Writes `SHA256SUMS` and, with a signer, its signature; returns whether it was signed.
async fn write_checksums(
    store: &dyn ObjectStore,
    release: &StaticRelease<'_>,
    prepared: &[Prepared<'_>],
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<bool> {
    let paths: Vec<(String, &str)> = prepared
        .iter()
        .map(|p| {
            (
                format!("{}{}", flavor_dir(&p.file.platform), p.path),
                p.sha256,
            )
        })
        .collect();
    let sums = Bytes::from(checksums(&paths));
    let dir = tag_key(release.name, release.tag);
    let opts = (release.dry_run, TEXT);
    write_document(
        store,
        &format!("{dir}/{CHECKSUMS}"),
        sums.clone(),
        opts,
        ui,
        report,
    )
    .await?;
    let Some(signer) = release.signer else {
        return Ok(false);
    };
    let key = format!("{dir}/{SIGNATURE}");
    let trusted = trusted_comment(release.name, release.tag);
    // Signatures are randomized: keep a published one that still holds, so a re-run sends nothing.
    let kept = store.get(&key).await?.filter(|old| {
        std::str::from_utf8(old).is_ok_and(|old| signer.verifies(&sums, old, &trusted))
    });
    let signature = match kept {
        Some(old) => old,
        None => Bytes::from(signer.sign(&sums, &trusted)?),
    };
    write_document(store, &key, signature, opts, ui, report).await?;
    Ok(true)
}

/// Writes each flavor's SBOM beside its binaries; returns platform → path below the tag folder.
async fn write_sboms(
    store: &dyn ObjectStore,
    release: &StaticRelease<'_>,
    prepared: &[Prepared<'_>],
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<BTreeMap<Platform, String>> {
    let mut paths = BTreeMap::new();
    for p in prepared {
        let platform = &p.file.platform;
        let Some(sbom) = release.sboms.get(platform) else {
            continue;
        };
        if paths.contains_key(platform) {
            continue;
        }
        let path = format!("{}{}.cdx.json", flavor_dir(platform), p.path);
        let key = format!("{}/{path}", tag_key(release.name, release.tag));
        write_document(
            store,
            &key,
            sbom.clone(),
            (release.dry_run, CYCLONEDX),
            ui,
            report,
        )
        .await?;
        paths.insert(platform.clone(), path);
    }
    Ok(paths)
}

/// The tag document for the prepared binaries, flavors sorted by platform.
fn tag_document(
    prepared: &[Prepared<'_>],
    sboms: &BTreeMap<Platform, String>,
    signed: bool,
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
    };
    Ok(Bytes::from(serde_json::to_vec(&doc)?))
}

/// Writes a small document unless the store already holds exactly these bytes; `opts` is
/// (dry run, content type).
async fn write_document(
    store: &dyn ObjectStore,
    key: &str,
    bytes: Bytes,
    opts: (bool, &str),
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<()> {
    let (dry_run, content_type) = opts;
    let existing = store.get(key).await?;
    let status = match existing {
        Some(old) if old == bytes => Status::Exists,
        Some(_) => Status::Updated,
        None => Status::New,
    };
    let sha256 = sha256_hex(&bytes);
    if status != Status::Exists && !dry_run {
        let size = bytes.len() as u64;
        store
            .put(&Put::bytes(key, bytes.clone(), content_type))
            .await?;
        ui.detail(format!(
            "{key}: {} ({})",
            String::from_utf8_lossy(&bytes),
            human_size(size)
        ));
    }
    ui.line(format!("document {key} ({})", status.word()));
    report.record(
        key,
        bytes.len() as u64,
        status,
        Some(format!("sha256:{sha256}")),
    );
    Ok(())
}

/// The tags whose tag documents exist in the store.
pub async fn present_tags(store: &dyn ObjectStore, name: &str) -> Result<BTreeSet<String>> {
    let prefix = format!("{ROOT}/{name}/");
    let keys = store.list(&prefix).await?;
    Ok(keys
        .iter()
        .filter_map(|k| k.strip_prefix(&prefix))
        .filter(|rest| !rest.contains('/'))
        .map(str::to_string)
        .collect())
}

/// Reads the stored name document's tags (an unreadable document counts as empty: it is rebuilt).
pub async fn stored_tags(store: &dyn ObjectStore, name: &str, ui: &Ui) -> Result<Vec<String>> {
    let Some(bytes) = store.get(&name_key(name)).await? else {
        return Ok(Vec::new());
    };
    match serde_json::from_slice::<NameDocument>(&bytes) {
        Ok(doc) => Ok(doc.tags),
        Err(e) => {
            ui.warn(format!(
                "{} is not a valid name document ({e}); rebuilding it from the store",
                name_key(name)
            ));
            Ok(Vec::new())
        }
    }
}

/// Rebuilds the name document from the store (adding `new`), writes it if it changed, and
/// reads it back (and lists the tags again) to repair a concurrent writer's lost update.
pub async fn update_name_document(
    store: &dyn ObjectStore,
    name: &str,
    new: Option<&str>,
    dry_run: bool,
    ui: &Ui,
    report: &mut TargetReport,
) -> Result<()> {
    let key = name_key(name);
    let stored = stored_tags(store, name, ui).await?;
    let mut present = present_tags(store, name).await?;
    if let Some(tag) = new {
        // In a dry run the tag document is not there yet; count it as present.
        present.insert(tag.to_string());
    }
    let tags = lists::merge(&stored, &present, new, Order::NewestFirst);
    let doc = Bytes::from(serde_json::to_vec(&NameDocument {
        name: name.to_string(),
        tags: tags.clone(),
    })?);
    write_document(store, &key, doc.clone(), (dry_run, JSON), ui, report).await?;
    if dry_run {
        return Ok(());
    }
    // Read back, with the tag documents listed again: a concurrent release may have written
    // its own list meanwhile, from a listing made before our tag document existed (slow
    // stores and retries make that window seconds wide). Stable once the list holds every
    // tag document's tag.
    for _ in 0..3 {
        let again = stored_tags(store, name, ui).await?;
        let present = present_tags(store, name).await?;
        let merged = lists::merge(&again, &present, new, Order::NewestFirst);
        if merged == again {
            break;
        }
        let doc = Bytes::from(serde_json::to_vec(&NameDocument {
            name: name.to_string(),
            tags: merged,
        })?);
        write_document(store, &key, doc, (dry_run, JSON), ui, report).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fs::FolderStore;

    /// Publishes `files` as albatros:`tag` with no signer or SBOMs; returns the report.
    async fn publish_to(
        store: &Arc<dyn ObjectStore>,
        tag: &str,
        files: &[HashedFile],
    ) -> TargetReport {
        let release = StaticRelease {
            name: "albatros",
            tag,
            files,
            dry_run: false,
            jobs: 2,
            signer: None,
            sboms: &BTreeMap::new(),
        };
        let mut report = TargetReport::new("t", "static", "albatros", &[], false);
        publish(store.clone(), &release, &Ui::silent(), &mut report)
            .await
            .unwrap();
        report
    }

    fn file(dir: &std::path::Path, platform: &str, name: &str, content: &str) -> StaticFile {
        let path = dir.join(format!("{}-{name}", platform.replace('/', "_")));
        std::fs::write(&path, content).unwrap();
        StaticFile {
            platform: Platform::parse(platform).unwrap(),
            file_name: name.into(),
            path,
        }
    }

    #[tokio::test]
    async fn publishes_layout_and_merges_tags() {
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(FolderStore::new(out.path()).unwrap());
        let files = vec![
            file(src.path(), "linux/amd64", "albatros", "A"),
            file(src.path(), "linux/arm/v6", "albatros", "B"),
        ];
        let files = hash_files(&files, None).await.unwrap();
        for tag in ["0.9", "1.0"] {
            publish_to(&store, tag, &files).await;
        }
        let name_doc = store.get("df-dist-v1/albatros").await.unwrap().unwrap();
        assert_eq!(name_doc, r#"{"name":"albatros","tags":["1.0","0.9"]}"#);
        let tag_doc: serde_json::Value =
            serde_json::from_slice(&store.get("df-dist-v1/albatros/0.9").await.unwrap().unwrap())
                .unwrap();
        assert_eq!(
            tag_doc["flavors"][0]["platform"],
            serde_json::json!({"architecture":"amd64","os":"linux"})
        );
        assert_eq!(
            tag_doc["flavors"][1]["platform"],
            serde_json::json!({"architecture":"arm","os":"linux","variant":"v6"})
        );
        // The Go tool's path for arm too: a page builds it from os/arch and `path`.
        assert_eq!(
            store
                .get("df-dist-v1/albatros/0.9/linux/arm/albatros")
                .await
                .unwrap()
                .unwrap(),
            "B"
        );
        assert_eq!(tag_doc["flavors"][1]["resources"][0]["path"], "albatros");
        // Same release again: nothing sent.
        let report = publish_to(&store, "1.0", &files).await;
        assert_eq!(report.bytes_sent, 0);
    }

    #[tokio::test]
    async fn shared_os_arch_gets_a_variant_level() {
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(FolderStore::new(out.path()).unwrap());
        let files = vec![
            file(src.path(), "linux/amd64", "albatros", "A"),
            file(src.path(), "linux/arm/v6", "albatros", "B"),
            file(src.path(), "linux/arm/v7", "albatros", "C"),
        ];
        let files = hash_files(&files, None).await.unwrap();
        publish_to(&store, "1.0", &files).await;
        let get = |key: &'static str| {
            let store = store.clone();
            async move { store.get(key).await.unwrap() }
        };
        assert_eq!(
            get("df-dist-v1/albatros/1.0/linux/amd64/albatros")
                .await
                .unwrap(),
            "A"
        );
        assert_eq!(
            get("df-dist-v1/albatros/1.0/linux/arm/v6/albatros")
                .await
                .unwrap(),
            "B"
        );
        assert_eq!(
            get("df-dist-v1/albatros/1.0/linux/arm/v7/albatros")
                .await
                .unwrap(),
            "C"
        );
        let doc: serde_json::Value =
            serde_json::from_slice(&get("df-dist-v1/albatros/1.0").await.unwrap()).unwrap();
        let paths: Vec<_> = doc["flavors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["resources"][0]["path"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(paths, ["albatros", "v6/albatros", "v7/albatros"]);
    }
}
