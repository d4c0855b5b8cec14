//! A local folder laid out like a bucket.
//!
//! A folder cannot hold a file and a folder of the same name, but a bucket can hold a
//! document at `df-dist-v1/albatros/0.9` and binaries below it. So a key that is also a
//! prefix of other keys is stored as the file `K/index.json`, and the generated nginx
//! fragment serves `K` from it. No alba layout writes a real key named `index.json`.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use async_trait::async_trait;
use bytes::Bytes;

use super::{Body, Listed, ObjectInfo, ObjectStore, Put};
use crate::bail_input;

/// The file name that holds a document whose key is also a folder.
pub const DOCUMENT_FILE: &str = "index.json";

/// An [`ObjectStore`] on a local folder.
pub struct FolderStore {
    root: PathBuf,
}

impl FolderStore {
    /// A store rooted at `root` (created when first checked).
    pub fn new(root: &Path) -> Result<FolderStore> {
        let root = if root.is_absolute() {
            root.to_path_buf()
        } else {
            std::env::current_dir()?.join(root)
        };
        Ok(FolderStore { root })
    }

    fn path_of(&self, key: &str) -> Result<PathBuf> {
        let rel = Path::new(key);
        if key.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            bail_input!("object key {key:?} is not a plain relative path");
        }
        Ok(self.root.join(rel))
    }

    /// The file that holds `key`, if any.
    fn existing_file(&self, key: &str) -> Result<Option<PathBuf>> {
        let path = self.path_of(key)?;
        if path.is_dir() {
            let doc = path.join(DOCUMENT_FILE);
            return Ok(doc.is_file().then_some(doc));
        }
        Ok(path.is_file().then_some(path))
    }

    /// Makes sure every parent of `path` is a folder, moving documents into `index.json`.
    fn make_parents(&self, path: &Path) -> Result<()> {
        let parent = path.parent().context("object path has no parent")?;
        let mut current = self.root.clone();
        for part in parent.strip_prefix(&self.root)?.components() {
            current.push(part);
            if current.is_file() {
                let moved = current.with_extension("alba-moving");
                std::fs::rename(&current, &moved)?;
                std::fs::create_dir(&current)?;
                std::fs::rename(&moved, current.join(DOCUMENT_FILE))?;
            }
        }
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))
    }

    fn write(&self, key: &str, body: &Body) -> Result<()> {
        let mut path = self.path_of(key)?;
        self.make_parents(&path)?;
        if path.is_dir() {
            path.push(DOCUMENT_FILE);
        }
        let dir = path.parent().context("object path has no parent")?;
        // Write beside the target and rename, so a reader never sees half a file.
        let mut tmp = tempfile::Builder::new()
            .prefix(".alba-tmp-")
            .tempfile_in(dir)?;
        match body {
            Body::Bytes(b) => tmp.write_all(b)?,
            Body::File(src) => {
                let mut f = std::fs::File::open(src)
                    .with_context(|| format!("opening {}", src.display()))?;
                std::io::copy(&mut f, &mut tmp)?;
            }
        }
        set_readable(tmp.path())?;
        tmp.persist(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Collects the objects below `dir`. alba's own folder `.alba/` (leases) is walked only
    /// when `hidden` is set: layouts never list it.
    fn walk(&self, dir: &Path, hidden: bool, keys: &mut Vec<Listed>) -> Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        for entry in entries {
            let path = entry?.path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            if name.starts_with(".alba-") || !hidden && name.starts_with(".alba") && path.is_dir() {
                continue;
            }
            if path.is_dir() {
                self.walk(&path, hidden, keys)?;
                continue;
            }
            let key_path = if name == DOCUMENT_FILE {
                dir.to_path_buf()
            } else {
                path.clone()
            };
            if let Ok(rel) = key_path.strip_prefix(&self.root)
                && !rel.as_os_str().is_empty()
            {
                // A file deleted since the folder was read is simply not listed.
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                keys.push(Listed {
                    key: rel.to_string_lossy().replace('\\', "/"),
                    size: meta.len(),
                    modified: meta.modified().ok(),
                });
            }
        }
        Ok(())
    }

    /// Removes empty folders from `dir` up to (not including) the root.
    fn prune(&self, mut dir: PathBuf) {
        while dir != self.root && dir.starts_with(&self.root) && std::fs::remove_dir(&dir).is_ok() {
            if !dir.pop() {
                break;
            }
        }
    }
}

/// True when the error is a missing file or folder.
fn is_not_found(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::NotFound)
}

fn set_readable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    Ok(())
}

#[async_trait]
impl ObjectStore for FolderStore {
    fn describe(&self) -> String {
        format!("folder {}", self.root.display())
    }

    async fn check(&self) -> Result<()> {
        if self.root.exists() && !self.root.is_dir() {
            bail_input!(
                "{} exists and is not a folder; choose another file: target",
                self.root.display()
            );
        }
        Ok(())
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
        let Some(file) = self.existing_file(key)? else {
            return Ok(None);
        };
        let meta = std::fs::metadata(&file)?;
        // Hashing here would read every blob a push only checks for presence.
        Ok(Some(ObjectInfo {
            size: meta.len(),
            sha256: None,
            modified: meta.modified().ok(),
        }))
    }

    async fn sha256(&self, key: &str) -> Result<Option<String>> {
        let Some(file) = self.existing_file(key)? else {
            return Ok(None);
        };
        let sha256 =
            tokio::task::spawn_blocking(move || crate::digest::sha256_file(&file)).await??;
        Ok(Some(sha256))
    }

    async fn hash_content(&self, key: &str) -> Result<Option<(u64, String)>> {
        let Some(file) = self.existing_file(key)? else {
            return Ok(None);
        };
        let size = std::fs::metadata(&file)?.len();
        let sha256 =
            tokio::task::spawn_blocking(move || crate::digest::sha256_file(&file)).await??;
        Ok(Some((size, sha256)))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let Some(file) = self.existing_file(key)? else {
            return Ok(None);
        };
        Ok(Some(Bytes::from(
            std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?,
        )))
    }

    async fn put(&self, put: &Put) -> Result<()> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("creating {}", self.root.display()))?;
        let (key, body) = (put.key.clone(), put.body.clone());
        let store = FolderStore {
            root: self.root.clone(),
        };
        tokio::task::spawn_blocking(move || {
            // A concurrent delete prunes empty folders: one this write just created may be
            // gone before the file lands in it. Creating it again is all it takes.
            let mut attempt = 1;
            loop {
                match store.write(&key, &body) {
                    Err(e) if attempt < 3 && is_not_found(&e) => attempt += 1,
                    result => return result,
                }
            }
        })
        .await?
    }

    async fn list_detailed(&self, prefix: &str) -> Result<Vec<Listed>> {
        let mut keys = Vec::new();
        if prefix.starts_with(".alba/") {
            self.walk(&self.root.join(".alba"), true, &mut keys)?;
        } else {
            self.walk(&self.root, false, &mut keys)?;
        }
        keys.retain(|k| k.key.starts_with(prefix));
        keys.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        if let Some(file) = self.existing_file(key)? {
            std::fs::remove_file(&file).with_context(|| format!("deleting {}", file.display()))?;
            if let Some(parent) = file.parent() {
                self.prune(parent.to_path_buf());
            }
        }
        Ok(())
    }

    /// What nginx serves a manifest (or referrers index) as, per the fragment: its media type
    /// where the fragment names it, `default_type` (application/octet-stream) where it does
    /// not; `None` for other keys or without a fragment (nothing to check).
    async fn content_type(&self, key: &str) -> Result<Option<String>> {
        if !key.contains("/manifests/") && !key.contains("/referrers/") {
            return Ok(None);
        }
        let Ok(text) = std::fs::read_to_string(self.root.join(super::nginx::FRAGMENT)) else {
            return Ok(None);
        };
        let served = super::nginx::served_type(&text, key);
        Ok(Some(
            served.unwrap_or_else(|| "application/octet-stream".to_string()),
        ))
    }

    async fn finish(&self) -> Result<()> {
        // The fragment names every manifest with its media type and digest: what a bucket
        // keeps as metadata, a folder served by nginx needs written down after each change.
        super::nginx::write(&self.root, self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, text: &str) -> Put {
        Put {
            key: key.into(),
            body: Body::Bytes(Bytes::from(text.to_string())),
            content_type: "x".into(),
            sha256: String::new(),
        }
    }

    #[tokio::test]
    async fn documents_that_are_folders() {
        let dir = tempfile::tempdir().unwrap();
        let s = FolderStore::new(dir.path()).unwrap();
        s.put(&put("d/n/0.9/linux/amd64/a", "bin")).await.unwrap();
        s.put(&put("d/n/0.9", "tagdoc")).await.unwrap();
        s.put(&put("d/n", "namedoc")).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("d/n/0.9/index.json")).unwrap(),
            "tagdoc"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("d/n/index.json")).unwrap(),
            "namedoc"
        );
        assert_eq!(s.get("d/n").await.unwrap().unwrap(), "namedoc");
        assert_eq!(
            s.list("d/").await.unwrap(),
            ["d/n", "d/n/0.9", "d/n/0.9/linux/amd64/a"]
        );
        // A document written first, then a key below it: the document moves into index.json.
        s.put(&put("x", "doc")).await.unwrap();
        s.put(&put("x/y", "child")).await.unwrap();
        assert_eq!(s.get("x").await.unwrap().unwrap(), "doc");
        assert_eq!(s.head("x/y").await.unwrap().unwrap().size, 5);
        assert_eq!(s.head("x/y").await.unwrap().unwrap().sha256, None);
        assert_eq!(
            s.sha256("x/y").await.unwrap(),
            Some(crate::digest::sha256_hex(b"child"))
        );
        assert_eq!(s.sha256("x/missing").await.unwrap(), None);
        s.delete("x/y").await.unwrap();
        s.delete("x").await.unwrap();
        assert!(!dir.path().join("x").exists());
        assert!(s.get("missing").await.unwrap().is_none());
        assert!(s.path_of("../etc").is_err());
    }
}
