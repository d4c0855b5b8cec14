//! alba's cache folder, `$XDG_CACHE_HOME/alba` (else `~/.cache/alba`): the one place that
//! knows where it is and how it is laid out. Every cache asks here for its folder.
//!
//! - `sha256/<identity hex>`: the sha256 of a /nix/store file, keyed by its identity (path,
//!   device, inode, size, mtime): a repeated release does not read every binary again
//!   ([`crate::digest::sha256_store_file`]).
//! - `layers/<settings>/<size>-<diff hex>.json`: a layer's compressed digest and size, by its
//!   uncompressed size and diff_id and the compression settings (the image layer cache).
//! - `archives/v1/<identity hex>.json`: what an input image archive holds (the archive index
//!   cache), so a warm run need not read the archive at all.
//! - `store-paths/<diff hex>.json`: the `/nix/store` paths a layer holds, by its diff_id.
//! - `tmp/run-XXXXXX/`: each run's spooled compressed layers, locked while the run lives and
//!   swept by a later run once it is gone.
//!
//! The layout is what existing users' caches hold: a folder changes its name only when what
//! it holds changes its meaning (hence `archives/v1`), never to tidy up. The cache is only an
//! optimisation: entries are written atomically ([`write_atomically`]) so concurrent runs never
//! see half a file, and whoever reads one treats an unreadable entry as a miss.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The cache folder: `$XDG_CACHE_HOME/alba`, else `~/.cache/alba`; `None` without either
/// variable (then nothing is cached and spools go to the system temp folder).
pub fn root() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("alba"))
}

/// The folder of the /nix/store file sha256 cache under `root`.
pub fn sha256_dir(root: &Path) -> PathBuf {
    root.join("sha256")
}

/// The folder of the layer cache under `root` for one compression setting (its
/// `settings_key`: other settings give other digests, so they never share entries).
pub fn layers_dir(root: &Path, settings: &str) -> PathBuf {
    root.join("layers").join(settings)
}

/// The folder of the archive index cache under `root`.
pub fn archives_dir(root: &Path) -> PathBuf {
    root.join("archives").join("v1")
}

/// The folder of the layer store-path cache under `root` (`<diff hex>.json`: the
/// `/nix/store` paths a layer holds, so an SBOM lists them on runs that read no layer).
pub fn store_paths_dir(root: &Path) -> PathBuf {
    root.join("store-paths")
}

/// The folder below which each run spools its compressed layers, under `root`.
pub fn tmp_dir(root: &Path) -> PathBuf {
    root.join("tmp")
}

/// Writes a cache entry atomically (temp file in the same folder, then rename), creating its
/// folder: a concurrent run reads the old entry or the new one, never half of one.
pub fn write_atomically(file: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = file
        .parent()
        .ok_or_else(|| anyhow::anyhow!("no parent folder"))?;
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(bytes)?;
    temp.persist(file)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Existing users' caches must keep working: the layout is part of alba's interface.
    #[test]
    fn the_layout_is_stable() {
        let root = Path::new("/c/alba");
        assert_eq!(sha256_dir(root), Path::new("/c/alba/sha256"));
        assert_eq!(
            layers_dir(root, "gzip-x"),
            Path::new("/c/alba/layers/gzip-x")
        );
        assert_eq!(archives_dir(root), Path::new("/c/alba/archives/v1"));
        assert_eq!(tmp_dir(root), Path::new("/c/alba/tmp"));
    }

    #[test]
    fn entries_are_written_with_their_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a/b/entry");
        write_atomically(&file, b"one").unwrap();
        write_atomically(&file, b"two").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");
    }
}
