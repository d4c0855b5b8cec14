//! The benchmark's inputs: real machine code, streamed to disk. ELF files from `/usr/bin`,
//! `/usr/lib/x86_64-linux-gnu` and the Garage binary are dealt round-robin into one share per
//! platform or layer ([`MachineCode`]), so each input has its own content and none is ever
//! held in memory whole, the 2 GiB layer included.
//!
//! The docker archives are written here rather than with `alba::image::fixtures`: those build
//! archives in memory (no 2 GiB layer) and with other file modes and configs, which would
//! change the inputs the figures were taken on.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::common::Garage;
use crate::{MIB, PLATFORMS, SIZE};

/// Every ELF file directly in `/usr/bin` and `/usr/lib/x86_64-linux-gnu` (regular files of at
/// least 4 KiB), plus the Garage binary, sorted by path.
pub(crate) fn elf_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["/usr/bin", "/usr/lib/x86_64-linux-gnu"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_file() && meta.len() >= 4096 && is_elf(&path) {
                files.push(path);
            }
        }
    }
    files.extend(Garage::binary());
    files.sort();
    files.dedup();
    assert!(
        !files.is_empty(),
        "no ELF files found in /usr/bin or /usr/lib/x86_64-linux-gnu"
    );
    files
}

/// True when the file starts with the ELF magic.
fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// `limit` bytes of machine code: the files of one share of the ELF list, concatenated, cycled.
pub(crate) struct MachineCode {
    files: Vec<PathBuf>,
    next: usize,
    current: Option<File>,
    remaining: u64,
}

impl MachineCode {
    /// Share `part` of `parts` (files whose index is `part` modulo `parts`), `limit` bytes long.
    pub(crate) fn new(all: &[PathBuf], part: usize, parts: usize, limit: u64) -> MachineCode {
        let files: Vec<PathBuf> = all.iter().skip(part).step_by(parts).cloned().collect();
        assert!(
            !files.is_empty(),
            "no ELF files for share {part} of {parts}"
        );
        MachineCode {
            files,
            next: 0,
            current: None,
            remaining: limit,
        }
    }
}

impl Read for MachineCode {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let mut empty_in_a_row = 0;
        loop {
            if self.current.is_none() {
                let path = &self.files[self.next % self.files.len()];
                self.next += 1;
                self.current = Some(File::open(path)?);
            }
            let n = self
                .current
                .as_mut()
                .map_or(Ok(0), |f| f.read(&mut buf[..want]))?;
            if n > 0 {
                self.remaining -= n as u64;
                return Ok(n);
            }
            self.current = None;
            empty_in_a_row += 1;
            if empty_in_a_row > self.files.len() {
                return Err(io::Error::other("every ELF file of the share is empty"));
            }
        }
    }
}

/// A writer that hashes what goes through it.
struct Hashing<W: Write> {
    inner: W,
    sha: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.sha.update(&data[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A tar header for a file (mode 0755, mtime 0, owner 0).
fn header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o755);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    header
}

/// Writes an uncompressed docker archive at `path` as nixpkgs' `dockerTools` does (layer tar
/// first, then the config, then `manifest.json`), whose one layer holds `bin/bench`: `code`.
/// Streams through a temporary layer file next to `path`; nothing is held in memory.
pub(crate) fn write_image(path: &Path, arch: &str, size: u64, code: impl Read + 'static) {
    write_layers(path, arch, vec![("bin/bench".into(), size, Box::new(code))]);
}

/// One layer of [`write_layers`]: the path of its one file, its size and its content.
type LayerSource = (String, u64, Box<dyn Read>);

/// Writes an uncompressed docker archive at `path` as nixpkgs' `dockerTools` does: the layer
/// tars (`<diff hex>/layer.tar`, bottom first), then the config, then `manifest.json`. Each
/// layer streams through a temporary file next to `path`; nothing is held in memory.
pub(crate) fn write_layers(path: &Path, arch: &str, layers: Vec<LayerSource>) {
    let mut written = Vec::new();
    for (n, (file, size, code)) in layers.into_iter().enumerate() {
        let layer_path = path.with_extension(format!("layer{n}.tmp"));
        let mut layer = tar::Builder::new(Hashing {
            inner: BufWriter::with_capacity(
                MIB as usize,
                File::create(&layer_path).expect("create the layer"),
            ),
            sha: Sha256::new(),
        });
        layer
            .append_data(&mut header(size), &file, code)
            .expect("write the layer");
        let Hashing { mut inner, sha } = layer.into_inner().expect("finish the layer");
        inner.flush().expect("flush the layer");
        drop(inner);
        written.push((layer_path, hex::encode(sha.finalize())));
    }
    let diff_ids: Vec<String> = written.iter().map(|(_, h)| format!("sha256:{h}")).collect();
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Entrypoint": ["/bin/bench"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = serde_json::to_vec(&config).expect("config JSON");
    let config_name = format!("{}.json", hex::encode(Sha256::digest(&config)));
    let layer_names: Vec<String> = written
        .iter()
        .map(|(_, hex)| format!("{hex}/layer.tar"))
        .collect();
    let manifest = serde_json::json!([{"Config": config_name, "RepoTags": ["bench:latest"], "Layers": layer_names}]);
    let manifest = serde_json::to_vec(&manifest).expect("manifest JSON");

    let out = BufWriter::with_capacity(
        MIB as usize,
        File::create(path).expect("create the archive"),
    );
    let mut archive = tar::Builder::new(out);
    for ((layer_path, _), name) in written.iter().zip(&layer_names) {
        let layer_size = std::fs::metadata(layer_path).expect("layer size").len();
        let layer_file = File::open(layer_path).expect("open the layer");
        archive
            .append_data(&mut header(layer_size), name, layer_file)
            .expect("write the layer entry");
        std::fs::remove_file(layer_path).expect("remove the layer temp file");
    }
    archive
        .append_data(
            &mut header(config.len() as u64),
            &config_name,
            config.as_slice(),
        )
        .expect("write the config");
    archive
        .append_data(
            &mut header(manifest.len() as u64),
            "manifest.json",
            manifest.as_slice(),
        )
        .expect("write manifest.json");
    archive
        .into_inner()
        .expect("finish the archive")
        .flush()
        .expect("flush the archive");
}

/// The static DIR (`<os>/<arch>[/<variant>]/bench`), one 64 MiB binary per platform.
pub(crate) fn static_dir(root: &Path, elf: &[PathBuf]) -> PathBuf {
    let dir = root.join("df");
    for (part, (platform, ..)) in PLATFORMS.iter().enumerate() {
        let folder = dir.join(platform);
        std::fs::create_dir_all(&folder).expect("create the static DIR");
        let mut out = BufWriter::with_capacity(
            MIB as usize,
            File::create(folder.join("bench")).expect("create a binary"),
        );
        let copied = io::copy(
            &mut MachineCode::new(elf, part, PLATFORMS.len(), SIZE),
            &mut out,
        )
        .expect("write a binary");
        out.flush().expect("flush a binary");
        assert_eq!(copied, SIZE);
    }
    dir
}

/// The image DIR (`<os>.<arch>[.<variant>].tar`), one image with a 64 MiB layer per platform.
pub(crate) fn image_dir(root: &Path, elf: &[PathBuf]) -> PathBuf {
    let dir = root.join("images");
    std::fs::create_dir_all(&dir).expect("create the image DIR");
    for (part, (_, stem, arch, _)) in PLATFORMS.iter().enumerate() {
        let code = MachineCode::new(elf, part, PLATFORMS.len(), SIZE);
        write_image(&dir.join(format!("{stem}.tar")), arch, SIZE, code);
    }
    dir
}

/// Layers of the `buildLayeredImage`-shaped image.
pub(crate) const LAYERED_COUNT: usize = 100;
/// Total size of the layers of the `buildLayeredImage`-shaped image.
pub(crate) const LAYERED_TOTAL: u64 = 300 * MIB;

/// Sizes of the layers of a closure: log-normal (σ = 2.2), scaled to [`LAYERED_TOTAL`] and
/// kept between 4 KiB and 40 MiB: a few layers of tens of MiB, many of a few KiB. Fixed seed.
pub(crate) fn layered_sizes() -> Vec<u64> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let raw: Vec<f64> = (0..LAYERED_COUNT)
        .map(|_| {
            let z = (-2.0 * uniform().ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos();
            (2.2 * z).exp()
        })
        .collect();
    // Scale, clamp, and scale again what the clamping left free, until the total is right.
    let (low, high) = (4.0 * 1024.0, 40.0 * MIB as f64);
    let mut scale = LAYERED_TOTAL as f64 / raw.iter().sum::<f64>();
    for _ in 0..20 {
        let sizes = raw.iter().map(|r| (r * scale).clamp(low, high));
        let free: f64 = raw
            .iter()
            .filter(|r| (low..high).contains(&(*r * scale)))
            .map(|r| r * scale)
            .sum();
        let fixed: f64 = sizes.sum::<f64>() - free;
        if free <= 0.0 {
            break;
        }
        scale *= (LAYERED_TOTAL as f64 - fixed) / free;
    }
    raw.iter()
        .map(|r| (r * scale).clamp(low, high) as u64)
        .collect()
}

/// The layer of v2 that changed: the one closest to 170 KiB (a small package rebuilt).
pub(crate) fn changed_layer(sizes: &[u64]) -> usize {
    let target = 170 * 1024;
    (0..sizes.len())
        .min_by_key(|&n| sizes[n].abs_diff(target))
        .expect("layers")
}

/// The layered image's DIR (`linux.amd64.tar`) for v1, or for v2 with one layer changed.
pub(crate) fn layered_dir(root: &Path, elf: &[PathBuf], sizes: &[u64], v2: bool) -> PathBuf {
    let dir = root.join(if v2 { "layered-v2" } else { "layered-v1" });
    std::fs::create_dir_all(&dir).expect("create the layered image DIR");
    let changed = changed_layer(sizes);
    let layers = sizes
        .iter()
        .enumerate()
        .map(|(n, &size)| {
            // Each layer its own share of the machine code; v2's changed layer another share.
            let share = if v2 && n == changed { n + 1 } else { n };
            let code = MachineCode::new(elf, share % LAYERED_COUNT, LAYERED_COUNT, size);
            let file = format!("nix/store/{n:03}-bench-package/lib/code");
            (file, size, Box::new(code) as Box<dyn Read>)
        })
        .collect();
    write_layers(&dir.join("linux.amd64.tar"), "amd64", layers);
    dir
}

/// The DIR of 4 images of 64 MiB each: a 32 MiB base layer all share, and 32 MiB of their own.
pub(crate) fn shared_dir(root: &Path, elf: &[PathBuf]) -> PathBuf {
    let dir = root.join("shared");
    std::fs::create_dir_all(&dir).expect("create the shared-base image DIR");
    let parts = PLATFORMS.len() + 1;
    for (n, (_, stem, arch, _)) in PLATFORMS.iter().enumerate() {
        let layers: Vec<LayerSource> = vec![
            (
                "lib/base".into(),
                SIZE / 2,
                Box::new(MachineCode::new(elf, 0, parts, SIZE / 2)),
            ),
            (
                "bin/bench".into(),
                SIZE / 2,
                Box::new(MachineCode::new(elf, n + 1, parts, SIZE / 2)),
            ),
        ];
        write_layers(&dir.join(format!("{stem}.tar")), arch, layers);
    }
    dir
}
