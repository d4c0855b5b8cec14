//! sha256 helpers, the only ones in alba: hex digests and OCI digests (`sha256:<hex>`) of
//! bytes, of bytes streaming by ([`Hasher`]) and of files, and their validation.

use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// The hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The OCI digest (`sha256:<hex>`) of some bytes.
pub fn oci_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// True for 64 lowercase hex digits (the hex of a sha256, as alba writes it).
pub fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// True for `sha256:` followed by 64 lowercase hex digits.
pub fn is_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(is_sha256_hex)
}

/// A sha256 computed piece by piece, for bytes that stream by (layers, files).
#[derive(Debug, Clone, Default)]
pub struct Hasher(Sha256);

impl Hasher {
    /// A hasher that has seen nothing yet.
    pub fn new() -> Hasher {
        Hasher::default()
    }

    /// Hashes the next piece.
    pub fn update(&mut self, bytes: impl AsRef<[u8]>) {
        self.0.update(bytes);
    }

    /// The hex sha256 of everything seen.
    pub fn hex(self) -> String {
        hex::encode(self.0.finalize())
    }

    /// The OCI digest (`sha256:<hex>`) of everything seen.
    pub fn oci_digest(self) -> String {
        format!("sha256:{}", self.hex())
    }
}

/// The hex sha256 of a file, read in 1 MiB pieces (never whole into memory).
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut hasher = Hasher::new();
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.hex())
}

/// The hex sha256 of a file in /nix/store, remembered in `cache_dir/sha256/` so a repeated
/// release does not read every binary again. Store paths never change while they exist; the
/// key still holds the inode, size and mtime, so a path garbage-collected and rebuilt with
/// other bytes is hashed anew. Files outside /nix/store are always hashed.
pub fn sha256_store_file(path: &Path, cache_dir: Option<&Path>) -> Result<String> {
    sha256_cached(path, cache_dir.filter(|_| path.starts_with("/nix/store/")))
}

/// The hex sha256 of a file that does not change, remembered in `cache_dir/sha256/`.
fn sha256_cached(path: &Path, cache_dir: Option<&Path>) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let entry = match cache_dir {
        Some(dir) => {
            let meta =
                std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
            let identity = format!(
                "{}\0{}\0{}\0{}\0{}",
                path.display(),
                meta.dev(),
                meta.ino(),
                meta.len(),
                meta.mtime()
            );
            Some(crate::cache::sha256_dir(dir).join(sha256_hex(identity.as_bytes())))
        }
        None => None,
    };
    if let Some(cached) = entry
        .as_deref()
        .and_then(|e| std::fs::read_to_string(e).ok())
        && cached.len() == 64
        && cached.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Ok(cached);
    }
    let hex = sha256_file(path)?;
    if let Some(entry) = entry {
        // A cache that cannot be written only costs the next run a re-hash.
        let _ = crate::cache::write_atomically(&entry, hex.as_bytes());
    }
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_hashes_are_reused_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (file, cache) = (dir.path().join("bin"), dir.path().join("cache"));
        std::fs::write(&file, b"abc").unwrap();
        let real = sha256_cached(&file, Some(&cache)).unwrap();
        assert_eq!(real, sha256_hex(b"abc"));
        // Prove the second call reads the cache: plant another (valid-looking) hash there.
        let entry = std::fs::read_dir(cache.join("sha256"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::write(&entry, "0".repeat(64)).unwrap();
        assert_eq!(sha256_cached(&file, Some(&cache)).unwrap(), "0".repeat(64));
        // Another size is another identity: hashed anew.
        std::fs::write(&file, b"abcd").unwrap();
        assert_eq!(
            sha256_cached(&file, Some(&cache)).unwrap(),
            sha256_hex(b"abcd")
        );
        // Outside /nix/store nothing is cached.
        assert_eq!(
            sha256_store_file(&file, Some(&dir.path().join("c2"))).unwrap(),
            sha256_hex(b"abcd")
        );
        assert!(!dir.path().join("c2").exists());
    }
}
