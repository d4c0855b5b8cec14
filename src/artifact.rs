//! The artifact set: what a release publishes, per platform, straight from /nix/store.
//!
//! It comes either from the flake (evaluate + one `nix build`) or from the Go tool's
//! staging folders (`df/<os>/<arch>/<file>`, `docker/<os>.<arch>.tar.gz`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::bail_input;
use crate::config::{Kind, Release};
use crate::nix::Nix;
use crate::platform::Platform;

/// One built artifact: a platform and the store path (or file) that holds it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Artifact {
    /// Static binary or container image.
    pub kind: Kind,
    /// The platform it runs on.
    pub platform: Platform,
    /// The Nix system it was built for, when it came from the flake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The store path (or staging file/folder).
    pub path: PathBuf,
    /// The flake attribute and derivation it was built from, when it came from the flake.
    #[serde(skip)]
    pub built: Option<crate::nix::BuiltPath>,
}

/// Everything a release publishes.
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactSet {
    /// The release name.
    pub name: String,
    /// Static binaries and images, sorted by kind then platform.
    pub artifacts: Vec<Artifact>,
}

/// A binary file to publish: platform, file name in df-dist-v1, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticFile {
    /// The platform.
    pub platform: Platform,
    /// The file name readers download (`albatros`).
    pub file_name: String,
    /// The file on disk.
    pub path: PathBuf,
}

impl ArtifactSet {
    /// The artifacts of one kind.
    pub fn of(&self, kind: Kind) -> impl Iterator<Item = &Artifact> {
        self.artifacts.iter().filter(move |a| a.kind == kind)
    }

    /// The static files to publish: a file store path under the release name, a folder's `bin/` files.
    pub fn static_files(&self) -> Result<Vec<StaticFile>> {
        let mut files = Vec::new();
        for a in self.of(Kind::Static) {
            files.extend(files_of(&self.name, &a.platform, &a.path)?);
        }
        Ok(files)
    }

    /// The images: (platform, store path) pairs.
    pub fn images(&self) -> Vec<(Platform, PathBuf)> {
        self.of(Kind::Container)
            .map(|a| (a.platform.clone(), a.path.clone()))
            .collect()
    }
}

/// Evaluates the flake's release description.
pub async fn load_release(nix: &Nix, flake_url: &str, attr: &str) -> Result<Release> {
    let json = nix.eval_json(flake_url, attr).await?;
    Release::from_json(&json, &format!("{flake_url}#{attr}"))
}

/// Builds the given kinds of a release with one `nix build` and returns the artifact set.
pub async fn build(
    nix: &Nix,
    flake_url: &str,
    release: &Release,
    kinds: &[Kind],
) -> Result<ArtifactSet> {
    let installables = release.installables(kinds);
    let candidates: Vec<Vec<String>> = installables.iter().map(|i| i.attrs.clone()).collect();
    let built = nix.build_all(flake_url, &candidates).await?;
    let artifacts = installables
        .into_iter()
        .zip(built)
        .map(|(i, built)| Artifact {
            kind: i.kind,
            platform: i.platform,
            system: Some(i.system),
            path: built.out.clone(),
            built: Some(built),
        })
        .collect();
    Ok(ArtifactSet {
        name: release.name.clone(),
        artifacts,
    })
}

/// The files a static store path publishes.
fn files_of(name: &str, platform: &Platform, path: &Path) -> Result<Vec<StaticFile>> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.is_file() {
        return Ok(vec![StaticFile {
            platform: platform.clone(),
            file_name: name.to_string(),
            path: path.to_path_buf(),
        }]);
    }
    let bin = path.join("bin");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&bin).with_context(|| {
        format!(
            "{} is a folder without bin/: point the static attr at a binary or a package with bin/",
            path.display()
        )
    })? {
        let entry = entry?;
        // Follow symlinks: Nix packages often link bin/ entries to their real files.
        if std::fs::metadata(entry.path())?.is_file() {
            let file_name = entry.file_name().to_string_lossy().to_string();
            files.push(StaticFile {
                platform: platform.clone(),
                file_name,
                path: entry.path(),
            });
        }
    }
    if files.is_empty() {
        bail_input!(
            "{} has no regular files: nothing to publish for {platform}",
            bin.display()
        );
    }
    files.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    Ok(files)
}

/// Reads the Go tool's `df/<os>/<arch>[/<variant>]/<file>` folder.
pub fn scan_static_dir(dir: &Path) -> Result<Vec<StaticFile>> {
    let layout = "expected DIR/<os>/<arch>/<file> (or DIR/<os>/<arch>/<variant>/<file>), e.g. df/linux/amd64/albatros";
    let mut files = Vec::new();
    for os in read_dir_sorted(dir, layout)? {
        for arch in read_dir_sorted(&os, layout)? {
            for entry in read_dir_sorted(&arch, layout)? {
                let segments = [&os, &arch, &entry].map(|p| {
                    p.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .to_string()
                });
                if entry.is_file() {
                    files.push(static_file(&segments[..2], entry)?);
                } else if entry.is_dir() && is_variant(&segments[2]) {
                    for file in read_dir_sorted(&entry, layout)? {
                        if !file.is_file() {
                            bail_input!("{} is not a file; {layout}", file.display());
                        }
                        files.push(static_file(&segments, file)?);
                    }
                } else {
                    bail_input!("{} is not a file; {layout}", entry.display());
                }
            }
        }
    }
    if files.is_empty() {
        bail_input!("{} holds no binaries; {layout}", dir.display());
    }
    Ok(files)
}

fn is_variant(segment: &str) -> bool {
    segment.len() >= 2
        && segment.starts_with('v')
        && segment[1..].chars().all(|c| c.is_ascii_digit())
}

fn static_file(segments: &[String], path: PathBuf) -> Result<StaticFile> {
    let text = segments.join("/");
    let Some(platform) = Platform::parse(&text) else {
        bail_input!(
            "{}: {text:?} is not an <os>/<arch> pair such as linux/amd64",
            path.display()
        );
    };
    let file_name = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    crate::names::check_name(&file_name)?;
    Ok(StaticFile {
        platform,
        file_name,
        path,
    })
}

fn read_dir_sorted(dir: &Path, layout: &str) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        bail_input!("{} is not a folder; {layout}", dir.display());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    entries.retain(|p| {
        !p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
    });
    entries.sort();
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_df_layout_with_variants() {
        let dir = tempfile::tempdir().unwrap();
        for p in ["linux/amd64/albatros", "linux/arm/v6/albatros"] {
            let f = dir.path().join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, p).unwrap();
        }
        let files = scan_static_dir(dir.path()).unwrap();
        let got: Vec<String> = files
            .iter()
            .map(|f| format!("{} {}", f.platform, f.file_name))
            .collect();
        assert_eq!(got, ["linux/amd64 albatros", "linux/arm/v6 albatros"]);
    }

    #[test]
    fn refuses_wrong_layouts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("albatros"), "x").unwrap();
        let err = scan_static_dir(dir.path()).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(err.to_string().contains("df/linux/amd64/albatros"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        assert!(scan_static_dir(empty.path()).is_err());
        assert!(scan_static_dir(&empty.path().join("missing")).is_err());
    }

    #[test]
    fn folder_store_path_publishes_bin() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/b"), "b").unwrap();
        std::fs::write(dir.path().join("bin/a"), "a").unwrap();
        let p = Platform::parse("linux/amd64").unwrap();
        let files = files_of("x", &p, dir.path()).unwrap();
        assert_eq!(
            files
                .iter()
                .map(|f| f.file_name.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        let file = dir.path().join("bin/a");
        assert_eq!(files_of("rel", &p, &file).unwrap()[0].file_name, "rel");
    }
}
