//! Where compressed layers are spooled: a folder per run under alba's cache folder
//! ([`crate::cache::tmp_dir`]).
//!
//! A run holds a lock on its own `<cache>/tmp/run-XXXXXX/lock` for as long as it lives; the
//! operating system releases the lock when the process ends, however it ends. Each new run
//! removes the folders whose lock it can take: the temp files of a killed run are reclaimed
//! at the next run, and a run going on beside this one keeps its files.

use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Runs' folders are named `run-…` below `<cache>/tmp`.
const PREFIX: &str = "run-";
/// A run folder without a lock file is left alone this long (its run may be creating it).
const UNLOCKED_GRACE: Duration = Duration::from_secs(600);
/// Any run folder is left alone this long: between creating its folder and locking it, a run
/// holds no lock yet.
const CREATE_GRACE: Duration = Duration::from_secs(5);

/// A spooled file: deleted when dropped, keeping its run folder (and lock) alive until then.
#[derive(Debug)]
pub(crate) struct SpoolFile {
    path: tempfile::TempPath,
    _dir: Arc<SpoolDir>,
}

impl SpoolFile {
    /// A temp file in `dir`, handed over as an open file and its owner.
    pub(crate) fn create(dir: &Arc<SpoolDir>, prefix: &str) -> io::Result<(File, SpoolFile)> {
        let (file, path) = tempfile::Builder::new()
            .prefix(prefix)
            .tempfile_in(&dir.path)?
            .into_parts();
        let spool = SpoolFile {
            path,
            _dir: Arc::clone(dir),
        };
        Ok((file, spool))
    }
}

impl std::ops::Deref for SpoolFile {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

/// This run's spool folder; removed when dropped.
#[derive(Debug)]
pub(crate) struct SpoolDir {
    path: PathBuf,
    /// Held for the run's lifetime; `None` for the system temp folder (no cache folder).
    lock: Option<File>,
}

impl SpoolDir {
    /// A new run folder below `<cache_dir>/tmp` (stale ones swept first), or the system temp
    /// folder when there is no cache folder.
    pub(crate) fn new(cache_dir: Option<&Path>) -> io::Result<SpoolDir> {
        let Some(cache_dir) = cache_dir else {
            return Ok(SpoolDir {
                path: std::env::temp_dir(),
                lock: None,
            });
        };
        let root = crate::cache::tmp_dir(cache_dir);
        fs::create_dir_all(&root)?;
        sweep(&root);
        let path = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir_in(&root)?
            .keep();
        let lock = File::create(path.join("lock"))?;
        lock.try_lock().map_err(io::Error::from)?;
        Ok(SpoolDir {
            path,
            lock: Some(lock),
        })
    }

    /// The folder temp files are created in.
    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SpoolDir {
    fn drop(&mut self) {
        if self.lock.is_some() {
            // Best effort: what is left is swept by the next run.
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Removes the run folders below `root` whose run is gone.
fn sweep(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let is_run = entry.file_name().to_string_lossy().starts_with(PREFIX);
        if is_run && is_stale(&entry.path()) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// True when nobody holds the folder's lock and it is older than a run needs to create and
/// lock it (a run going on beside this one may be between the two).
fn is_stale(dir: &Path) -> bool {
    let old = fs::metadata(dir)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > CREATE_GRACE);
    let unlocked = match File::open(dir.join("lock")) {
        Ok(file) => match file.try_lock() {
            Ok(()) => true,
            Err(TryLockError::WouldBlock | TryLockError::Error(_)) => false,
        },
        Err(_) => fs::metadata(dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > UNLOCKED_GRACE),
    };
    old && unlocked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reclaims_a_dead_runs_files_and_keeps_a_live_ones() {
        let cache = tempfile::tempdir().unwrap();
        let live = SpoolDir::new(Some(cache.path())).unwrap();
        fs::write(live.path().join("alba-layer-live"), b"x").unwrap();
        // What a killed run leaves: its folder with an unlocked lock file and a spool.
        let dead = cache.path().join("tmp/run-dead");
        fs::create_dir_all(&dead).unwrap();
        File::create(dead.join("lock")).unwrap();
        fs::write(dead.join("alba-layer-dead"), b"y").unwrap();
        let long_ago = SystemTime::now() - Duration::from_secs(60);
        File::open(&dead).unwrap().set_modified(long_ago).unwrap();

        let next = SpoolDir::new(Some(cache.path())).unwrap();
        assert!(!dead.exists(), "the dead run's folder is swept");
        assert!(
            live.path().join("alba-layer-live").exists(),
            "a live run keeps its files"
        );
        let live_path = live.path().to_path_buf();
        drop(live);
        assert!(!live_path.exists(), "a run removes its folder when it ends");
        assert!(next.path().starts_with(cache.path().join("tmp")));
    }
}
