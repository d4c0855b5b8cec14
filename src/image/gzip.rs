//! Deterministic, parallel gzip: one gzip member, compressed in independent blocks (pigz style).
//!
//! Why: plain zlib at level 6 runs ~37 MB/s on one core, far slower than uploads; layers must
//! use every core (and a lower level, see [`LEVEL`]). Why one member: some decoders read only
//! the first member of a gzip file.
//!
//! How: the input is cut into [`BLOCK`]-sized blocks. Each block is raw-deflated on its own,
//! primed with the previous block's last 32 KiB as dictionary (so the ratio stays close to a
//! sequential stream) and ended with a sync flush (an empty stored block) so the pieces
//! concatenate into one valid deflate stream; the last block ends the stream. The gzip header
//! and trailer (CRC-32, length) are written here by hand.
//!
//! Determinism (digests must never change for the same layer): a block's output depends only
//! on its bytes, its dictionary, [`LEVEL`] and the flush mode — never on threads or timing —
//! and blocks are written in input order. The deflate backend is fixed: flate2 with zlib-rs,
//! pinned in Cargo.toml (`default-features = false, features = ["zlib-rs", "runtime_detection"]`)
//! and by Cargo.lock; another backend or zlib-rs version may produce other (equally valid)
//! bytes, which is why the layer cache key carries a fingerprint of the backend's output and a
//! golden test pins the digests. (zlib-rs 0.6 picks SIMD code at run time — with flate2's
//! `runtime_detection`, which enables zlib-rs's `std` — only for compare256 and slide_hash,
//! which compute the same results on every CPU, and for the CRC-32 of the trailer; its hash
//! function is plain arithmetic.) The header has mtime 0, no file name, XFL 0 and OS 255
//! ("unknown"), as Go's compress/gzip writes it.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, mpsc};

use flate2::{Compress, Crc, FlushCompress, Status};

use super::pool::Pool;

/// Uncompressed bytes per block: large enough that the per-block overhead (a 5-byte sync
/// marker, a restarted Huffman table) is negligible, small enough to keep memory low.
pub(crate) const BLOCK: usize = 1 << 20;
/// The deflate window: how much of the previous block primes the next one.
const WINDOW: usize = 32 * 1024;
/// The compression level, fixed: changing it changes every digest (and the cache key).
/// Measured on 4 × 64 MiB of machine code (2026-11-30, this machine, bench/run.sh): zlib-rs
/// level 2 is ~20 % faster than level 3 for 4 % more bytes than skopeo (Go's parallel gzip at
/// level 6); level 3 matches skopeo's size but left a cold push at ~0.67–0.75× skopeo's time,
/// level 6 is 3.5 % smaller than skopeo and twice as slow. The budget is ≤ 1.05× bytes
/// and ≤ 0.67× time, which only level 2 meets; layers are compressed once (then cached).
pub(crate) const LEVEL: u32 = 2;
/// Magic, deflate, no flags, mtime 0, XFL 0, OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

type Pending = mpsc::Receiver<io::Result<Vec<u8>>>;

/// A writer that gzips everything written to it into `out`, using the pool's threads.
/// Call [`ParGzEncoder::finish`] to end the stream; dropping it leaves `out` incomplete.
pub(crate) struct ParGzEncoder<W: Write> {
    out: W,
    block: Vec<u8>,
    dictionary: Vec<u8>,
    in_flight: InFlight,
    crc: Crc,
}

impl<W: Write> ParGzEncoder<W> {
    /// Starts a gzip stream on `out`.
    pub(crate) fn new(mut out: W, pool: Arc<Pool>) -> io::Result<Self> {
        out.write_all(&HEADER)?;
        Ok(ParGzEncoder {
            out,
            block: Vec::with_capacity(BLOCK),
            dictionary: Vec::new(),
            in_flight: InFlight {
                pool,
                pending: VecDeque::new(),
            },
            crc: Crc::new(),
        })
    }

    /// Compresses what is left, writes the trailer and returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        let block = std::mem::take(&mut self.block);
        self.submit(block, true)?;
        while self.write_oldest()? {}
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        // ISIZE is the length modulo 2^32 (RFC 1952); `amount` wraps the same way.
        trailer[4..].copy_from_slice(&self.crc.amount().to_le_bytes());
        self.out.write_all(&trailer)?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Hands a block to the pool, waiting for room first (oldest own block written out).
    fn submit(&mut self, block: Vec<u8>, last: bool) -> io::Result<()> {
        while !self.in_flight.pool.try_acquire() {
            if !self.write_oldest()? {
                // Holding no permit ourselves, so waiting cannot deadlock.
                self.in_flight.pool.acquire();
                break;
            }
        }
        let tail = block.len().saturating_sub(WINDOW);
        let next_dictionary = block[tail..].to_vec();
        let dictionary = std::mem::replace(&mut self.dictionary, next_dictionary);
        let (sender, receiver) = mpsc::sync_channel(1);
        self.in_flight.pool.spawn(move || {
            let _ = sender.send(deflate_block(&dictionary, &block, last));
        });
        self.in_flight.pending.push_back(receiver);
        Ok(())
    }

    /// Writes the oldest pending block out; false when nothing is pending.
    fn write_oldest(&mut self) -> io::Result<bool> {
        match self.in_flight.next()? {
            Some(compressed) => self.out.write_all(&compressed).map(|()| true),
            None => Ok(false),
        }
    }
}

impl<W: Write> Write for ParGzEncoder<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(BLOCK - self.block.len());
        self.block.extend_from_slice(&data[..n]);
        self.crc.update(&data[..n]);
        if self.block.len() == BLOCK {
            let block = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
            self.submit(block, false)?;
        }
        Ok(n)
    }

    /// Blocks are cut at fixed offsets whatever the flushes, so flushing only flushes `out`
    /// (the output must not depend on how callers chunk their writes).
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The blocks of one stream handed to the pool, oldest first, each holding a permit.
struct InFlight {
    pool: Arc<Pool>,
    pending: VecDeque<Pending>,
}

impl InFlight {
    /// Waits for the oldest block's output and gives its permit back.
    fn next(&mut self) -> io::Result<Option<Vec<u8>>> {
        let Some(receiver) = self.pending.pop_front() else {
            return Ok(None);
        };
        let result = receiver.recv();
        self.pool.release();
        let compressed = result.map_err(|_| io::Error::other("a compression thread failed"))??;
        Ok(Some(compressed))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // An abandoned stream still gives its permits back; its jobs end into closed channels.
        for _ in self.pending.drain(..) {
            self.pool.release();
        }
    }
}

/// Raw-deflates one block primed with `dictionary`; a sync flush ends a middle block on a
/// byte boundary, a finish ends the last one (and the deflate stream).
pub(crate) fn deflate_block(dictionary: &[u8], input: &[u8], last: bool) -> io::Result<Vec<u8>> {
    let mut deflate = Compress::new(flate2::Compression::new(LEVEL), false);
    if !dictionary.is_empty() {
        deflate
            .set_dictionary(dictionary)
            .map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    // zlib's deflateBound, plus room for the sync marker: usually one call does it all.
    let mut out = Vec::with_capacity(input.len() + (input.len() >> 12) + (input.len() >> 14) + 64);
    loop {
        let consumed = deflate.total_in() as usize;
        let status = deflate
            .compress_vec(&input[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = deflate.total_in() as usize == input.len();
        // zlib's rule: a flush is complete when output space is left over after the call.
        let done = match status {
            Status::StreamEnd => true,
            _ => !last && all_in && out.len() < out.capacity(),
        };
        if done {
            return Ok(out);
        }
        out.reserve(out.capacity().max(4096));
    }
}
