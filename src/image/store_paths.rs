//! The Nix store paths an image layer holds: the top-level `/nix/store/<hash>-<name>` trees
//! that buildImage, buildLayeredImage and streamLayeredImage put into their layer tars, found
//! by reading the tar headers as the layer's bytes stream by on their way to the compressor
//! (so no layer is read again for it), and cached by diff_id for the runs that do not read a
//! layer at all.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::digest::is_sha256_hex;

const BLOCK: usize = 512;
/// Long-name and PAX records larger than this are skipped (a path is at most a few KiB).
const RECORD_LIMIT: u64 = 64 << 10;

/// A streaming reader of tar headers: fed the bytes of a tar in any chunks, it collects the
/// store paths its entries live in.
#[derive(Debug, Default)]
pub(crate) struct StorePaths {
    found: BTreeSet<String>,
    header: Vec<u8>,
    /// Bytes of the current entry's data (and padding) still to skip or capture.
    remaining: u64,
    /// Set while capturing a GNU long name (`L`) or PAX (`x`) record.
    record: Option<(u8, Vec<u8>)>,
    /// A name a long-name or PAX record gave for the next entry.
    next_name: Option<String>,
    ended: bool,
}

impl StorePaths {
    /// Reads the next bytes of the tar.
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.ended {
            if self.remaining > 0 {
                let n = data
                    .len()
                    .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                if let Some((_, bytes)) = &mut self.record {
                    bytes.extend_from_slice(&data[..n]);
                }
                self.remaining -= n as u64;
                data = &data[n..];
                if self.remaining == 0 {
                    self.end_record();
                }
                continue;
            }
            let n = (BLOCK - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.header.len() == BLOCK {
                let header = std::mem::take(&mut self.header);
                self.read_header(&header);
            }
        }
    }

    /// The store paths found, sorted.
    pub(crate) fn into_paths(self) -> Vec<String> {
        self.found.into_iter().collect()
    }

    fn read_header(&mut self, h: &[u8]) {
        if h.iter().all(|&b| b == 0) {
            // End of archive (two zero blocks; one is enough to stop looking).
            self.ended = true;
            return;
        }
        let Some(size) = octal(&h[124..136]) else {
            self.ended = true;
            return;
        };
        // A crafted size near u64::MAX must end the scan, not overflow.
        let Some(padded) = size.checked_next_multiple_of(BLOCK as u64) else {
            self.ended = true;
            return;
        };
        let kind = h[156];
        if matches!(kind, b'L' | b'x') && size <= RECORD_LIMIT {
            self.record = Some((kind, Vec::with_capacity(size as usize)));
        } else if kind != b'g' {
            let name = self.next_name.take().unwrap_or_else(|| header_name(h));
            if let Some(path) = store_path_of(&name) {
                self.found.insert(path);
            }
        }
        self.remaining = padded;
        if padded == 0 {
            self.end_record();
        }
    }

    fn end_record(&mut self) {
        let Some((kind, bytes)) = self.record.take() else {
            return;
        };
        let name = match kind {
            b'L' => Some(
                String::from_utf8_lossy(&bytes)
                    .trim_end_matches('\0')
                    .to_string(),
            ),
            _ => pax_path(&bytes),
        };
        if name.is_some() {
            self.next_name = name;
        }
    }
}

/// The name of a ustar header (prefix + name).
fn header_name(h: &[u8]) -> String {
    let field = |b: &[u8]| {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    let name = field(&h[..100]);
    let prefix = if &h[257..262] == b"ustar" {
        field(&h[345..500])
    } else {
        String::new()
    };
    match prefix.is_empty() {
        true => name,
        false => format!("{prefix}/{name}"),
    }
}

/// The `path` of a PAX extended header's records (`<len> path=<value>\n`).
fn pax_path(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    text.lines().find_map(|line| {
        let (_, record) = line.split_once(' ')?;
        record.strip_prefix("path=").map(str::to_string)
    })
}

/// An octal (or GNU base-256) tar number.
fn octal(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let tail = &field[field.len() - 8..];
        return Some(tail.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b)));
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    match text.is_empty() {
        true => Some(0),
        false => u64::from_str_radix(text, 8).ok(),
    }
}

/// `/nix/store/<hash>-<name>` for an entry inside (or being) such a store path.
pub(crate) fn store_path_of(name: &str) -> Option<String> {
    let rest = name.trim_start_matches("./").trim_start_matches('/');
    let top = rest.strip_prefix("nix/store/")?.split('/').next()?;
    let valid = top.len() > 33
        && top.as_bytes()[32] == b'-'
        && top[..32]
            .bytes()
            .all(|b| b"0123456789abcdfghijklmnpqrsvwxyz".contains(&b));
    valid.then(|| format!("/nix/store/{top}"))
}

/// Where the store paths of layers are cached: `store-paths/<diff hex>.json` under the cache
/// folder (a layer's content, so its paths, depend on its diff_id alone).
#[derive(Debug, Clone, Default)]
pub(crate) struct PathsCache {
    dir: Option<PathBuf>,
}

impl PathsCache {
    /// The cache under `root` (`$XDG_CACHE_HOME/alba`); a no-op without one.
    pub(crate) fn new(root: Option<&Path>) -> PathsCache {
        PathsCache {
            dir: root.map(crate::cache::store_paths_dir),
        }
    }

    /// The store paths of the layer `diff_id`, if recorded.
    pub(crate) fn get(&self, diff_id: &str) -> Option<Vec<String>> {
        let bytes = std::fs::read(self.file(diff_id)?).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Records the store paths of a layer; failures only warn.
    pub(crate) fn put(&self, diff_id: &str, paths: &[String]) {
        let Some(file) = self.file(diff_id) else {
            return;
        };
        let written = serde_json::to_vec(paths)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| crate::cache::write_atomically(&file, &bytes));
        if let Err(e) = written {
            tracing::warn!("cannot write the cache entry {}: {e:#}", file.display());
        }
    }

    fn file(&self, diff_id: &str) -> Option<PathBuf> {
        let hex = diff_id
            .strip_prefix("sha256:")
            .filter(|h| is_sha256_hex(h))?;
        Some(self.dir.as_ref()?.join(format!("{hex}.json")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0123456789abcdfghijklmnpqrsvwxyz";

    fn layer(names: &[&str]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for name in names {
            let mut header = tar::Header::new_gnu();
            header.set_size(3);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, &b"abc"[..]).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn finds_top_level_store_paths_in_any_chunks() {
        let long = format!("nix/store/{HASH}-long/{}", "d/".repeat(120) + "file");
        let bytes = layer(&[
            &format!("nix/store/{HASH}-hello-2.12/bin/hello"),
            &format!("./nix/store/{HASH}-glibc-2.40/lib/libc.so"),
            &long,
            "etc/passwd",
            "nix/store/short-name/x",
        ]);
        for chunk in [1, 7, 512, 100_000] {
            let mut paths = StorePaths::default();
            for part in bytes.chunks(chunk) {
                paths.feed(part);
            }
            assert_eq!(
                paths.into_paths(),
                [
                    format!("/nix/store/{HASH}-glibc-2.40"),
                    format!("/nix/store/{HASH}-hello-2.12"),
                    format!("/nix/store/{HASH}-long"),
                ],
                "chunks of {chunk}"
            );
        }
    }
}
