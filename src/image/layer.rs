//! Compressing one layer: uncompressed bytes in, a spooled compressed temp file out, with the
//! sha256 of both sides (the diff_id and the blob digest) computed on the way.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::thread;

use crate::digest::{Hasher, sha256_hex};

use super::gzip::{self, ParGzEncoder};
use super::pool::Pool;
use super::spool_dir::{SpoolDir, SpoolFile};
use super::store_paths::StorePaths;

/// The zstd level, fixed: changing it changes every zstd digest (and the cache key).
/// Single-threaded libzstd, as bundled by zstd-sys (pinned by Cargo.lock), so the output
/// depends on nothing but the input.
const ZSTD_LEVEL: i32 = 3;

/// How alba compresses layers (`--compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Gzip, deterministic and parallel: the default, readable by every client.
    #[default]
    Gzip,
    /// Zstandard, deterministic, level 3: smaller and faster, needs recent clients.
    Zstd,
    /// Uncompressed tar layers.
    None,
}

impl Compression {
    /// The OCI media type of layers compressed this way.
    pub fn layer_media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
        }
    }

    /// Everything the compressed bytes depend on besides the input, so that a cache entry is
    /// only ever reused for identical settings: level, block size, and a fingerprint of the
    /// backend's actual output (an upgraded zlib-rs or libzstd may compress differently; the
    /// cache must then miss rather than promise digests the new code cannot reproduce). Bump
    /// the trailing version whenever the framing written here changes.
    pub(crate) fn settings_key(self) -> String {
        match self {
            Compression::Gzip => format!(
                "gzip-l{}-b{}-{}-v1",
                gzip::LEVEL,
                gzip::BLOCK,
                fingerprint(self)
            ),
            Compression::Zstd => format!("zstd-l{ZSTD_LEVEL}-{}-v1", fingerprint(self)),
            Compression::None => "none-v1".to_string(),
        }
    }
}

/// A short digest of what the backend makes of a fixed sample, computed once per process.
fn fingerprint(compression: Compression) -> &'static str {
    static GZIP: LazyLock<String> = LazyLock::new(|| sample_digest(Compression::Gzip));
    static ZSTD: LazyLock<String> = LazyLock::new(|| sample_digest(Compression::Zstd));
    match compression {
        Compression::Zstd => &ZSTD,
        _ => &GZIP,
    }
}

fn sample_digest(compression: Compression) -> String {
    // 96 KiB of text-like bytes with repeats, so matching, Huffman coding and the dictionary
    // all shape the output.
    let mut state: u32 = 0x2545_f491;
    let sample: Vec<u8> = (0..96 * 1024)
        .map(|i| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            if i % 7 < 4 {
                b"alba layer "[i % 11]
            } else {
                b'a' + (state >> 27) as u8
            }
        })
        .collect();
    let output = match compression {
        Compression::Zstd => zstd::stream::encode_all(sample.as_slice(), ZSTD_LEVEL),
        _ => gzip::deflate_block(&sample[..32 * 1024], &sample[32 * 1024..], false).and_then(
            |mut out| {
                gzip::deflate_block(&[], &sample, true).map(|end| {
                    out.extend(end);
                    out
                })
            },
        ),
    };
    match output {
        Ok(bytes) => sha256_hex(&bytes)[..12].to_string(),
        // Cannot happen with a working backend; a key of its own keeps the cache consistent.
        Err(_) => "unknown".to_string(),
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        })
    }
}

impl FromStr for Compression {
    type Err = anyhow::Error;

    /// Parses `gzip`, `zstd` or `none`.
    fn from_str(text: &str) -> anyhow::Result<Compression> {
        match text {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "none" => Ok(Compression::None),
            _ => Err(crate::error::input(format!(
                "unknown compression {text:?}: use gzip, zstd or none"
            ))),
        }
    }
}

/// A compressed layer in a temp file (deleted when the last reference goes).
#[derive(Debug, Clone)]
pub(crate) struct Spooled {
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// Size of the uncompressed tar.
    pub raw_size: u64,
    /// `sha256:<hex>` of the compressed file.
    pub digest: String,
    /// Size of the compressed file.
    pub size: u64,
    /// The compressed file.
    pub path: Arc<SpoolFile>,
    /// The `/nix/store` paths the layer holds, read from its tar headers on the way.
    pub store_paths: Vec<String>,
}

/// Where a layer read from an archive failed: reading (the input's fault) or writing (ours).
pub(crate) enum PumpError {
    /// Reading the layer failed: the archive is truncated or corrupt.
    Read(io::Error),
    /// Compressing or spooling failed: disk full, a compression thread died, …
    Write(anyhow::Error),
}

/// A layer whose input has been read; its last blocks may still be compressing.
pub(crate) enum Compressing {
    /// Finished on the reading thread.
    Done(anyhow::Result<Spooled>),
    /// Finishing on a thread of its own.
    Finishing(thread::JoinHandle<anyhow::Result<Spooled>>),
}

impl Compressing {
    /// True when [`Compressing::wait`] would not block.
    pub(crate) fn is_finished(&self) -> bool {
        match self {
            Compressing::Done(_) => true,
            Compressing::Finishing(handle) => handle.is_finished(),
        }
    }

    /// Waits for the compressed layer.
    pub(crate) fn wait(self) -> anyhow::Result<Spooled> {
        match self {
            Compressing::Done(result) => result,
            Compressing::Finishing(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a compression thread panicked"))),
        }
    }
}

/// Reads everything `input` yields and compresses it into a new temp file. The caller may
/// read the next layer while this one's last blocks compress: with many small layers
/// (buildLayeredImage) that keeps every core busy instead of one block at a time.
pub(crate) fn compress(
    input: &mut dyn Read,
    compression: Compression,
    pool: &Arc<Pool>,
    dir: &Arc<SpoolDir>,
) -> Result<Compressing, PumpError> {
    let mut writer = LayerWriter::new(compression, pool, dir).map_err(PumpError::Write)?;
    // Four deflate blocks per read keeps syscalls few and memory small.
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(PumpError::Read(e)),
        };
        writer
            .write_all(&buffer[..n])
            .map_err(|e| PumpError::Write(e.into()))?;
    }
    Ok(writer.finish_in_background())
}

/// Hashes the uncompressed bytes and feeds them to the compressor.
struct LayerWriter {
    uncompressed: Hasher,
    raw_size: u64,
    encoder: Encoder,
    store_paths: StorePaths,
}

enum Encoder {
    Gzip(ParGzEncoder<Spool>),
    Zstd(zstd::stream::write::Encoder<'static, Spool>),
    None(Spool),
}

impl LayerWriter {
    fn new(
        compression: Compression,
        pool: &Arc<Pool>,
        dir: &Arc<SpoolDir>,
    ) -> anyhow::Result<LayerWriter> {
        let spool = Spool::new(dir)?;
        let encoder = match compression {
            Compression::Gzip => Encoder::Gzip(ParGzEncoder::new(spool, Arc::clone(pool))?),
            Compression::Zstd => {
                Encoder::Zstd(zstd::stream::write::Encoder::new(spool, ZSTD_LEVEL)?)
            }
            Compression::None => Encoder::None(spool),
        };
        Ok(LayerWriter {
            uncompressed: Hasher::new(),
            raw_size: 0,
            encoder,
            store_paths: StorePaths::default(),
        })
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.uncompressed.update(data);
        self.raw_size += data.len() as u64;
        self.store_paths.feed(data);
        match &mut self.encoder {
            Encoder::Gzip(w) => w.write_all(data),
            Encoder::Zstd(w) => w.write_all(data),
            Encoder::None(w) => w.write_all(data),
        }
    }

    /// Gzip waits for the pool: that wait moves to a thread of its own.
    fn finish_in_background(self) -> Compressing {
        if !matches!(self.encoder, Encoder::Gzip(_)) {
            return Compressing::Done(self.finish());
        }
        match thread::Builder::new()
            .name("alba-layer-finish".into())
            .spawn(move || self.finish())
        {
            Ok(handle) => Compressing::Finishing(handle),
            Err(e) => {
                Compressing::Done(Err(anyhow::Error::new(e).context("cannot start a thread")))
            }
        }
    }

    fn finish(self) -> anyhow::Result<Spooled> {
        let spool = match self.encoder {
            Encoder::Gzip(w) => w.finish()?,
            Encoder::Zstd(w) => w.finish()?,
            Encoder::None(w) => w,
        };
        let (digest, size, path) = spool.finish()?;
        let diff_id = self.uncompressed.oci_digest();
        Ok(Spooled {
            diff_id,
            raw_size: self.raw_size,
            digest,
            size,
            path: Arc::new(path),
            store_paths: self.store_paths.into_paths(),
        })
    }
}

/// A temp file that hashes and counts what is written to it.
struct Spool {
    file: BufWriter<File>,
    path: SpoolFile,
    sha: Hasher,
    size: u64,
}

impl Spool {
    fn new(dir: &Arc<SpoolDir>) -> io::Result<Spool> {
        let (file, path) = SpoolFile::create(dir, "alba-layer-")?;
        Ok(Spool {
            file: BufWriter::with_capacity(256 * 1024, file),
            path,
            sha: Hasher::new(),
            size: 0,
        })
    }

    fn finish(mut self) -> io::Result<(String, u64, SpoolFile)> {
        self.file.flush()?;
        Ok((self.sha.oci_digest(), self.size, self.path))
    }
}

impl Write for Spool {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.file.write(data)?;
        self.sha.update(&data[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
