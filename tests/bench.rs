//! Speed and memory benchmark: alba against its peer tools, in one run, on one machine state.
//!
//! Not a timed test: every test here is `#[ignore]`, so `cargo test` skips it. Run it with
//! `bench/run.sh` (a release build; see there for the knobs). It prints each run, then a
//! summary table with the ratios and whether each target of the design is met. It fails only
//! when alba misbehaves (a warm run that sends bytes, a broken image), never on a slow figure.
//!
//! Inputs are real machine code: ELF files from `/usr/bin`, `/usr/lib/x86_64-linux-gnu` and the
//! Garage binary, dealt round-robin into one stream per platform (different content each) and
//! streamed to disk, so no input is ever held in memory whole, the 2 GiB layer included.
//!
//! 1. static: 4 × 64 MiB binaries to Garage, `alba static push` against `rclone copy`; then a
//!    warm re-run (0 bytes sent: alba's report and the objects' Last-Modified).
//! 2. folder: 4 images with a 64 MiB layer each (uncompressed docker archives), `alba container
//!    push DIR file:OUT` against `skopeo copy --dest-compress … oci:OUT:<tag>` × 4; compressed
//!    bytes of both; then warm runs (alba with its cache, skopeo again).
//! 3. registry: the same images to Debian's docker-registry, against `skopeo copy … docker://` × 4,
//!    cold and warm; warm blob uploads counted in the registry's access log.
//! 4. memory: peak RSS of alba pushing an image with a 2 GiB layer to a folder.
//! 5. layered: one image shaped like `buildLayeredImage` output (100 layers, 300 MiB of machine
//!    code, log-normal sizes) to a registry: (a) cold against `skopeo copy`; (b) its next version
//!    (one ~170 KiB layer changed) with v1 already on the registry and both tools' caches empty
//!    (alba must compress and write only that layer and the config); (a) again with
//!    `--compression zstd`, time and bytes against gzip.
//! 6. shared: (c) 4 platforms × 64 MiB sharing one 32 MiB base layer, cold, to a registry.
//!
//! Each cold measurement runs `BENCH_ROUNDS` times (default 3) on fresh targets and caches
//! (skopeo's blob-info cache cleared), alternating which tool goes first; the table shows medians.

mod common;

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use common::{Garage, Registry};

const MIB: u64 = 1024 * 1024;
/// Size of each static binary and of each image's layer content.
const SIZE: u64 = 64 * MIB;
/// Size of the big layer of the memory measurement.
const BIG: u64 = 2048 * MIB;
/// Peak RSS target of the memory measurement.
const RSS_TARGET: u64 = 256 * MIB;

/// The four platforms: static DIR folder, image file stem, config architecture, skopeo tag.
const PLATFORMS: [(&str, &str, &str, &str); 4] = [
    ("linux/amd64", "linux.amd64", "amd64", "linux-amd64"),
    ("linux/386", "linux.386", "386", "linux-386"),
    ("linux/arm64", "linux.arm64", "arm64", "linux-arm64"),
    ("linux/arm/v6", "linux.arm.v6", "arm", "linux-arm-v6"),
];

// ---------------------------------------------------------------------------------------------
// Inputs: real machine code, streamed.

/// Every ELF file directly in `/usr/bin` and `/usr/lib/x86_64-linux-gnu` (regular files of at
/// least 4 KiB), plus the Garage binary, sorted by path.
fn elf_files() -> Vec<PathBuf> {
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

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// `limit` bytes of machine code: the files of one share of the ELF list, concatenated, cycled.
struct MachineCode {
    files: Vec<PathBuf>,
    next: usize,
    current: Option<File>,
    remaining: u64,
}

impl MachineCode {
    /// Share `part` of `parts` (files whose index is `part` modulo `parts`), `limit` bytes long.
    fn new(all: &[PathBuf], part: usize, parts: usize, limit: u64) -> MachineCode {
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
fn write_image(path: &Path, arch: &str, size: u64, code: impl Read + 'static) {
    write_layers(path, arch, vec![("bin/bench".into(), size, Box::new(code))]);
}

/// One layer of [`write_layers`]: the path of its one file, its size and its content.
type LayerSource = (String, u64, Box<dyn Read>);

/// Writes an uncompressed docker archive at `path` as nixpkgs' `dockerTools` does: the layer
/// tars (`<diff hex>/layer.tar`, bottom first), then the config, then `manifest.json`. Each
/// layer streams through a temporary file next to `path`; nothing is held in memory.
fn write_layers(path: &Path, arch: &str, layers: Vec<LayerSource>) {
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
fn static_dir(root: &Path, elf: &[PathBuf]) -> PathBuf {
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
fn image_dir(root: &Path, elf: &[PathBuf]) -> PathBuf {
    let dir = root.join("images");
    std::fs::create_dir_all(&dir).expect("create the image DIR");
    for (part, (_, stem, arch, _)) in PLATFORMS.iter().enumerate() {
        let code = MachineCode::new(elf, part, PLATFORMS.len(), SIZE);
        write_image(&dir.join(format!("{stem}.tar")), arch, SIZE, code);
    }
    dir
}

// ---------------------------------------------------------------------------------------------
// Running and measuring.

/// One finished run: wall time, CPU time, peak RSS (from `/usr/bin/time -v`) and its output.
struct Run {
    wall: Duration,
    cpu: Duration,
    rss: u64,
    stdout: Vec<u8>,
}

/// Runs `command` under `/usr/bin/time -v`, panicking with its output unless it succeeds.
fn run(command: &Command) -> Run {
    let report = tempfile::NamedTempFile::new().expect("a temp file for /usr/bin/time");
    // BENCH_ALBA=/path/to/alba measures another build of alba (e.g. a variant to compare).
    let program = match std::env::var_os("BENCH_ALBA") {
        Some(other) if command.get_program() == Path::new(env!("CARGO_BIN_EXE_alba")) => other,
        _ => command.get_program().to_os_string(),
    };
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-v")
        .arg("-o")
        .arg(report.path())
        .arg(&program)
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => timed.env(key, value),
            None => timed.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        timed.current_dir(dir);
    }
    let start = Instant::now();
    let output = timed
        .output()
        .unwrap_or_else(|e| panic!("could not run /usr/bin/time ({e}); apt-get install time"));
    let wall = start.elapsed();
    assert!(
        output.status.success(),
        "`{}` failed with {}\n--- stdout\n{}\n--- stderr\n{}",
        common::describe(command),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    let text = std::fs::read_to_string(report.path()).unwrap_or_default();
    let field = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(name)?
                    .trim()
                    .strip_prefix(':')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("/usr/bin/time -v printed no {name:?}:\n{text}"))
    };
    let cpu =
        Duration::from_secs_f64(field("User time (seconds)") + field("System time (seconds)"));
    let rss = field("Maximum resident set size (kbytes)") as u64 * 1024;
    Run {
        wall,
        cpu,
        rss,
        stdout: output.stdout,
    }
}

/// Runs alba (its `--json` report parsed).
fn run_alba(command: &Command) -> (Run, Value) {
    let run = run(command);
    let report = serde_json::from_slice(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "alba --json printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&run.stdout)
        )
    });
    (run, report)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

fn line(tool: &str, what: &str, run: &Run) {
    println!(
        "  {tool:<7} {what:<6} {:>7.2} s wall  {:>6.2} s cpu  {:>9} peak RSS",
        secs(run.wall),
        secs(run.cpu),
        mib(run.rss)
    );
}

fn rounds() -> usize {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(3)
}

/// True when `BENCH_ONLY` (comma-separated) is unset or names `what`.
fn wanted(what: &str) -> bool {
    match std::env::var("BENCH_ONLY") {
        Ok(only) => only.split(',').any(|w| w.trim() == what),
        Err(_) => true,
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Lines of the summary table.
#[derive(Default)]
struct Summary {
    rows: Vec<[String; 6]>,
}

impl Summary {
    fn row(
        &mut self,
        what: &str,
        alba: String,
        peer: String,
        ratio: String,
        target: &str,
        met: Option<bool>,
    ) {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        self.rows
            .push([what.into(), alba, peer, ratio, target.into(), met.into()]);
    }

    /// A timing row: medians of both, their ratio, met if the ratio is at most `target`.
    fn times(&mut self, what: &str, alba: &[f64], peer: &[f64], target: Option<f64>) {
        let (a, p) = (median(alba), median(peer));
        let ratio = a / p;
        let label = target.map_or("-".to_string(), |t| format!("≤ {t:.2}×"));
        self.row(
            what,
            format!("{a:.2} s"),
            format!("{p:.2} s"),
            format!("{ratio:.3}×"),
            &label,
            target.map(|t| ratio <= t),
        );
    }

    fn print(&self) {
        let header = ["measurement", "alba", "peer", "ratio", "target", "met"].map(String::from);
        let mut widths = [0usize; 6];
        for row in std::iter::once(&header).chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for (i, row) in std::iter::once(&header).chain(&self.rows).enumerate() {
            for (n, (w, cell)) in widths.iter().zip(row).enumerate() {
                let pad = w - cell.chars().count();
                if n == 0 {
                    let _ = write!(out, "{cell}{}", " ".repeat(pad));
                } else {
                    let _ = write!(out, "  {}{cell}", " ".repeat(pad));
                }
            }
            out.push('\n');
            if i == 0 {
                out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * 5));
                out.push('\n');
            }
        }
        print!("{out}");
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Static binaries to Garage: alba against rclone.

fn rclone(garage: &Garage, scratch: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("rclone");
    // The AWS SDK inside rclone reads these too (AWS_CA_BUNDLE even breaks it on plain HTTP).
    for name in [
        "AWS_CA_BUNDLE",
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
    ] {
        command.env_remove(name);
    }
    command
        .args(args)
        .env("RCLONE_CONFIG", scratch.join("no-rclone.conf"))
        .env("RCLONE_S3_PROVIDER", "Other")
        .env("RCLONE_S3_ENDPOINT", garage.s3_endpoint())
        .env("RCLONE_S3_ACCESS_KEY_ID", &garage.key_id)
        .env("RCLONE_S3_SECRET_ACCESS_KEY", &garage.secret)
        .env("RCLONE_S3_REGION", &garage.region)
        .env("RCLONE_S3_FORCE_PATH_STYLE", "true");
    command
}

/// Last-Modified of every binary of the release in `bucket`.
fn binaries_last_modified(garage: &Garage, bucket: &str) -> Vec<(String, String)> {
    let s3 = garage.s3();
    let keys: Vec<String> = s3
        .list_keys(bucket, "df-dist-v1/bench/1/")
        .into_iter()
        .filter(|k| k.ends_with("/bench"))
        .collect();
    assert_eq!(
        keys.len(),
        PLATFORMS.len(),
        "one binary per platform in {bucket}: {keys:?}"
    );
    keys.into_iter()
        .map(|k| {
            let (status, headers, _) = s3.head(bucket, &k);
            assert_eq!(status, 200, "HEAD {bucket}/{k}");
            let modified = headers["last-modified"]
                .to_str()
                .unwrap_or_default()
                .to_string();
            (k, modified)
        })
        .collect()
}

fn bench_static(work: &Path, elf: &[PathBuf], summary: &mut Summary) {
    println!("\n== 1. static: 4 × 64 MiB binaries to Garage, alba static push vs rclone copy ==");
    let Some(garage) = Garage::try_start() else {
        return;
    };
    common::require_program("rclone", "apt-get install rclone");
    let dir = static_dir(work, elf);
    let scratch = tempfile::tempdir().expect("tempdir");
    let (mut cold, mut warm) = ((vec![], vec![]), (vec![], vec![]));
    for round in 0..rounds() {
        let (alba_bucket, rclone_bucket) = (format!("alba-{round}"), format!("rclone-{round}"));
        garage.create_bucket(&alba_bucket);
        garage.create_bucket(&rclone_bucket);
        let mut alba = common::alba();
        alba.envs(garage.envs())
            .args(["--json", "static", "push", "-t", "bench:1"])
            .arg(&dir)
            .arg(garage.s3_url(&alba_bucket));
        let dest = format!(":s3:{rclone_bucket}/df-dist-v1/bench/1");
        let rclone = rclone(
            &garage,
            scratch.path(),
            &["copy", dir.to_str().expect("UTF-8 path"), &dest],
        );

        println!("round {}: cold (load {})", round + 1, load_average());
        let run_alba_cold = || {
            let (r, report) = run_alba(&alba);
            assert!(
                report["bytes_sent"].as_u64().unwrap_or(0) >= 4 * SIZE,
                "a cold push sends every binary: {report:#}"
            );
            line("alba", "cold", &r);
            r
        };
        let run_rclone = |what: &str| {
            let r = run(&rclone);
            line("rclone", what, &r);
            r
        };
        let (a, r) = if round % 2 == 0 {
            let a = run_alba_cold();
            (a, run_rclone("cold"))
        } else {
            let r = run_rclone("cold");
            (run_alba_cold(), r)
        };
        cold.0.push(secs(a.wall));
        cold.1.push(secs(r.wall));
        let rclone_keys = garage.s3().list_keys(&rclone_bucket, "").len();
        assert_eq!(
            rclone_keys,
            PLATFORMS.len(),
            "rclone copied the four binaries"
        );

        // Warm: the same push again sends nothing (alba's report, and the objects' dates).
        let before = binaries_last_modified(&garage, &alba_bucket);
        std::thread::sleep(Duration::from_millis(1100));
        let (a, report) = run_alba(&alba);
        line("alba", "warm", &a);
        assert_eq!(
            report["bytes_sent"], 0,
            "a warm push sends 0 bytes: {report:#}"
        );
        assert_eq!(
            binaries_last_modified(&garage, &alba_bucket),
            before,
            "a warm push rewrites no binary"
        );
        let r = run_rclone("warm");
        warm.0.push(secs(a.wall));
        warm.1.push(secs(r.wall));
        println!("  warm alba: bytes_sent 0, Last-Modified of the 4 binaries unchanged");
    }
    summary.times(
        "static cold: 4×64 MiB → Garage (vs rclone)",
        &cold.0,
        &cold.1,
        Some(1.0),
    );
    summary.times("static warm (vs rclone)", &warm.0, &warm.1, None);
    summary.row(
        "static warm bytes sent (report + Last-Modified)",
        "0".into(),
        "-".into(),
        "-".into(),
        "= 0",
        Some(true),
    );
    std::fs::remove_dir_all(&dir).expect("remove the static DIR");
}

// ---------------------------------------------------------------------------------------------
// 2. and 3. Images: alba against skopeo, to a folder and to a registry.

/// `skopeo copy` of each image of `images` to `dest(tag)`, one after another; total time.
fn skopeo_all(images: &Path, extra: &[&str], dest: impl Fn(&str) -> String, what: &str) -> Run {
    let mut total = Run {
        wall: Duration::ZERO,
        cpu: Duration::ZERO,
        rss: 0,
        stdout: Vec::new(),
    };
    if what == "cold" {
        clear_skopeo_cache();
    }
    for (_, stem, _, tag) in PLATFORMS {
        let mut command = common::skopeo::skopeo();
        command.args(["copy", "--quiet"]).args(extra);
        command
            .arg(format!(
                "docker-archive:{}",
                images.join(format!("{stem}.tar")).display()
            ))
            .arg(dest(tag));
        let r = run(&command);
        total.wall += r.wall;
        total.cpu += r.cpu;
        total.rss = total.rss.max(r.rss);
    }
    line("skopeo", what, &total);
    total
}

/// Empties skopeo's blob-info cache (root's, and a rootless user's), so a cold skopeo run
/// compresses as a fresh CI runner's would, like alba with its empty cache.
fn clear_skopeo_cache() {
    let mut dirs = vec![PathBuf::from("/var/lib/containers/cache")];
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".local/share/containers/cache"));
    }
    for dir in dirs {
        for name in ["blob-info-cache-v1.boltdb", "blob-info-cache-v1.sqlite"] {
            let _ = std::fs::remove_file(dir.join(name));
        }
    }
}

/// One `skopeo copy` of the docker archive `archive` to `dest`.
fn skopeo_one(archive: &Path, dest: &str, what: &str) -> Run {
    let mut command = common::skopeo::skopeo();
    command
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(dest);
    let r = run(&command);
    line("skopeo", what, &r);
    r
}

/// Sum of the layer sizes of the manifests an index lists; `read(digest)` gives a manifest.
fn layer_bytes(index: &[u8], read: impl Fn(&str) -> Vec<u8>, platforms: usize) -> u64 {
    let index: Value = serde_json::from_slice(index).expect("index JSON");
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), platforms, "one manifest per platform");
    manifests
        .iter()
        .map(|m| {
            let manifest: Value =
                serde_json::from_slice(&read(m["digest"].as_str().expect("digest")))
                    .expect("manifest JSON");
            manifest["layers"]
                .as_array()
                .expect("layers")
                .iter()
                .map(|l| l["size"].as_u64().expect("layer size"))
                .sum::<u64>()
        })
        .sum()
}

/// Compressed layer bytes in alba's static registry folder.
fn alba_layer_bytes(out: &Path, platforms: usize) -> u64 {
    let manifests = out.join("v2/bench/manifests");
    let index = std::fs::read(manifests.join("1")).expect("alba's tag manifest");
    layer_bytes(
        &index,
        |digest| std::fs::read(manifests.join(digest)).expect("a manifest"),
        platforms,
    )
}

/// Compressed layer bytes in skopeo's OCI layout.
fn skopeo_layer_bytes(out: &Path) -> u64 {
    let index = std::fs::read(out.join("index.json")).expect("skopeo's index.json");
    layer_bytes(
        &index,
        |digest| {
            let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
            std::fs::read(out.join("blobs/sha256").join(hex)).expect("a manifest blob")
        },
        PLATFORMS.len(),
    )
}

/// Modification times of every blob file of alba's folder.
fn blob_mtimes(out: &Path) -> Vec<(PathBuf, std::time::SystemTime)> {
    let mut files: Vec<_> = std::fs::read_dir(out.join("v2/bench/blobs"))
        .expect("alba's blobs folder")
        .flatten()
        .map(|e| {
            (
                e.path(),
                e.metadata().and_then(|m| m.modified()).expect("mtime"),
            )
        })
        .collect();
    files.sort();
    files
}

fn alba_push(cache: &Path, images: &Path, target: &str) -> Command {
    alba_push_as(cache, images, target, "bench:1", &[])
}

/// `alba --json [flags] container push -t NAME_TAG DIR TARGET` with its cache at `cache`.
fn alba_push_as(
    cache: &Path,
    images: &Path,
    target: &str,
    name_tag: &str,
    flags: &[&str],
) -> Command {
    let mut alba = common::alba_with_cache(cache);
    alba.arg("--json")
        .args(flags)
        .args(["container", "push", "-t", name_tag])
        .arg(images)
        .arg(target);
    // The scratch dir of `Alba` only holds paths that must not exist: the Command is enough.
    std::mem::replace(&mut *alba, Command::new("true"))
}

fn bench_folder(work: &Path, images: &Path, summary: &mut Summary) {
    println!(
        "\n== 2. images to a folder: 4 × 64 MiB layers, alba container push file: vs skopeo copy oci: =="
    );
    if !common::skopeo_available() {
        return;
    }
    let (mut cold, mut warm, mut bytes) = ((vec![], vec![]), (vec![], vec![]), (vec![], vec![]));
    for round in 0..rounds() {
        let root = work.join(format!("folder-{round}"));
        let cache = root.join("cache");
        std::fs::create_dir_all(&cache).expect("create alba's cache");
        let (alba_out, skopeo_out) = (root.join("alba"), root.join("skopeo"));
        let alba = alba_push(&cache, images, &format!("file:{}", alba_out.display()));
        let gzip = ["--dest-compress", "--dest-compress-format", "gzip"];
        let oci = |tag: &str| format!("oci:{}:{tag}", skopeo_out.display());

        println!("round {}: cold (load {})", round + 1, load_average());
        let run_alba = |what: &str| {
            let (r, report) = run_alba(&alba);
            line("alba", what, &r);
            (r, report)
        };
        let (a, s) = if round % 2 == 0 {
            let a = run_alba("cold");
            (a, skopeo_all(images, &gzip, oci, "cold"))
        } else {
            let s = skopeo_all(images, &gzip, oci, "cold");
            (run_alba("cold"), s)
        };
        cold.0.push(secs(a.0.wall));
        cold.1.push(secs(s.wall));
        let (alba_bytes, skopeo_bytes) = (
            alba_layer_bytes(&alba_out, PLATFORMS.len()),
            skopeo_layer_bytes(&skopeo_out),
        );
        println!(
            "  compressed layers: alba {} ({alba_bytes} B), skopeo {} ({skopeo_bytes} B)",
            mib(alba_bytes),
            mib(skopeo_bytes)
        );
        bytes.0.push(alba_bytes as f64);
        bytes.1.push(skopeo_bytes as f64);
        common::verify_oci_layout(&skopeo_out);

        let before = blob_mtimes(&alba_out);
        std::thread::sleep(Duration::from_millis(1100));
        let (a, report) = run_alba("warm");
        assert_eq!(
            report["bytes_sent"], 0,
            "a warm push sends 0 bytes: {report:#}"
        );
        assert_eq!(
            blob_mtimes(&alba_out),
            before,
            "a warm push rewrites no blob"
        );
        let s = skopeo_all(images, &gzip, oci, "warm");
        warm.0.push(secs(a.wall));
        warm.1.push(secs(s.wall));
        println!("  warm alba: bytes_sent 0, blob files untouched");
        std::fs::remove_dir_all(&root).expect("remove the round's folders");
    }
    summary.times(
        "folder cold: 4 images → file: (vs skopeo oci: ×4)",
        &cold.0,
        &cold.1,
        Some(0.5),
    );
    let (a, s) = (median(&bytes.0), median(&bytes.1));
    summary.row(
        "folder compressed layer bytes (vs skopeo)",
        mib(a as u64),
        mib(s as u64),
        format!("{:.3}×", a / s),
        "≤ 1.05×",
        Some(a / s <= 1.05),
    );
    summary.times("folder warm (vs skopeo again)", &warm.0, &warm.1, Some(0.5));
    summary.row(
        "folder warm bytes sent (report + blob mtimes)",
        "0".into(),
        "-".into(),
        "-".into(),
        "= 0",
        Some(true),
    );
}

/// Blob upload requests (`POST`/`PATCH`/`PUT` under `/blobs/uploads/`) for `repo` so far.
fn uploads(registry: &Registry, repo: &str) -> usize {
    let prefix = format!("/v2/{repo}/blobs/uploads/");
    registry
        .access_log()
        .iter()
        .filter(|l| {
            matches!(l.method.as_str(), "POST" | "PATCH" | "PUT") && l.path.starts_with(&prefix)
        })
        .count()
}

fn bench_registry(work: &Path, images: &Path, summary: &mut Summary) {
    println!(
        "\n== 3. images to a registry: alba container push docker:// vs skopeo copy docker:// ×4 =="
    );
    if !common::skopeo_available() {
        return;
    }
    let (mut cold, mut warm) = ((vec![], vec![]), (vec![], vec![]));
    let mut warm_uploads = (0, 0);
    for round in 0..rounds() {
        let Some(registry) = Registry::try_start() else {
            return;
        };
        let cache = work.join(format!("registry-cache-{round}"));
        std::fs::create_dir_all(&cache).expect("create alba's cache");
        let alba = alba_push(&cache, images, &registry.url("bench"));
        let tls = ["--dest-tls-verify=false"];
        let dest = |tag: &str| registry.url(&format!("bench-skopeo:{tag}"));

        println!("round {}: cold (load {})", round + 1, load_average());
        let run_alba = |what: &str| {
            let (r, report) = run_alba(&alba);
            line("alba", what, &r);
            (r, report)
        };
        let (a, s) = if round % 2 == 0 {
            let a = run_alba("cold");
            (a, skopeo_all(images, &tls, dest, "cold"))
        } else {
            let s = skopeo_all(images, &tls, dest, "cold");
            (run_alba("cold"), s)
        };
        cold.0.push(secs(a.0.wall));
        cold.1.push(secs(s.wall));
        let (alba_before, skopeo_before) = (
            uploads(&registry, "bench"),
            uploads(&registry, "bench-skopeo"),
        );
        assert!(
            alba_before > 0 && skopeo_before > 0,
            "both uploaded blobs cold"
        );

        let (a, report) = run_alba("warm");
        let s = skopeo_all(images, &tls, dest, "warm");
        assert_eq!(
            report["bytes_sent"], 0,
            "a warm push sends 0 bytes: {report:#}"
        );
        let (alba_warm, skopeo_warm) = (
            uploads(&registry, "bench") - alba_before,
            uploads(&registry, "bench-skopeo") - skopeo_before,
        );
        println!(
            "  warm blob upload requests (access log): alba {alba_warm}, skopeo {skopeo_warm}"
        );
        assert_eq!(alba_warm, 0, "a warm alba push uploads no blob");
        warm_uploads.0 += alba_warm;
        warm_uploads.1 += skopeo_warm;
        warm.0.push(secs(a.wall));
        warm.1.push(secs(s.wall));
        std::fs::remove_dir_all(&cache).expect("remove alba's cache");
    }
    summary.times(
        "registry cold: 4 images → docker:// (vs skopeo ×4)",
        &cold.0,
        &cold.1,
        Some(0.5),
    );
    summary.times(
        "registry warm (vs skopeo again)",
        &warm.0,
        &warm.1,
        Some(0.5),
    );
    summary.row(
        "registry warm blob uploads (access log)",
        warm_uploads.0.to_string(),
        warm_uploads.1.to_string(),
        "-".into(),
        "alba = 0",
        Some(warm_uploads.0 == 0),
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Memory: one image with a 2 GiB layer to a folder.

fn bench_memory(work: &Path, elf: &[PathBuf], summary: &mut Summary) {
    println!("\n== 4. memory: alba container push of an image with a 2 GiB layer to a folder ==");
    let root = work.join("memory");
    let images = root.join("images");
    std::fs::create_dir_all(&images).expect("create the big image DIR");
    let start = Instant::now();
    write_image(
        &images.join("linux.amd64.tar"),
        "amd64",
        BIG,
        MachineCode::new(elf, 0, 1, BIG),
    );
    println!("  wrote the 2 GiB image in {:.1} s", secs(start.elapsed()));
    let cache = root.join("cache");
    std::fs::create_dir_all(&cache).expect("create alba's cache");
    let out = root.join("out");
    println!("  load {}", load_average());
    let (r, report) = run_alba(&alba_push(
        &cache,
        &images,
        &format!("file:{}", out.display()),
    ));
    line("alba", "2 GiB", &r);
    let layers = alba_layer_bytes(&out, 1);
    println!(
        "  {} in, {} compressed layer out, {:.0} MB/s; bytes_sent {}",
        mib(BIG),
        mib(layers),
        BIG as f64 / 1e6 / secs(r.wall),
        report["bytes_sent"]
    );
    summary.row(
        "memory: peak RSS, 2 GiB layer → file:",
        mib(r.rss),
        "-".into(),
        "-".into(),
        "< 256 MiB",
        Some(r.rss < RSS_TARGET),
    );
    summary.row(
        "memory: wall / cpu time of that push",
        format!("{:.1} s", secs(r.wall)),
        "-".into(),
        "-".into(),
        &format!("cpu {:.1} s", secs(r.cpu)),
        None,
    );
    std::fs::remove_dir_all(&root).expect("remove the big image");
}

// ---------------------------------------------------------------------------------------------
// 5. and 6. Images as Nix builds them: many layers, layers shared by platforms.

/// Layers of the `buildLayeredImage`-shaped image, and their total size.
const LAYERED_COUNT: usize = 100;
const LAYERED_TOTAL: u64 = 300 * MIB;

/// Sizes of the layers of a closure: log-normal (σ = 2.2), scaled to [`LAYERED_TOTAL`] and
/// kept between 4 KiB and 40 MiB: a few layers of tens of MiB, many of a few KiB. Fixed seed.
fn layered_sizes() -> Vec<u64> {
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
fn changed_layer(sizes: &[u64]) -> usize {
    let target = 170 * 1024;
    (0..sizes.len())
        .min_by_key(|&n| sizes[n].abs_diff(target))
        .expect("layers")
}

/// The layered image's DIR (`linux.amd64.tar`) for v1, or for v2 with one layer changed.
fn layered_dir(root: &Path, elf: &[PathBuf], sizes: &[u64], v2: bool) -> PathBuf {
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

/// Blobs an alba push wrote (`new` in its report).
fn new_blobs(report: &Value) -> usize {
    report["targets"][0]["objects"]
        .as_array()
        .map_or(0, |objects| {
            objects
                .iter()
                .filter(|o| o["key"].as_str().is_some_and(|k| k.starts_with("blobs/")))
                .filter(|o| o["status"] == "new")
                .count()
        })
}

/// Compressed layer bytes of a tag on the registry (an index, or a single manifest).
fn registry_layer_bytes(registry: &Registry, repo: &str, tag: &str) -> u64 {
    let accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
                  application/vnd.docker.distribution.manifest.v2+json";
    let get = |reference: &str| {
        let (status, _, body) = registry.get(&format!("/v2/{repo}/manifests/{reference}"), accept);
        assert_eq!(status, 200, "{repo}:{reference} on the registry");
        body
    };
    let top = get(tag);
    let doc: Value = serde_json::from_slice(&top).expect("manifest JSON");
    if doc["manifests"].is_array() {
        let n = doc["manifests"].as_array().map_or(0, Vec::len);
        return layer_bytes(&top, get, n);
    }
    doc["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["size"].as_u64().expect("layer size"))
        .sum()
}

fn bench_layered(work: &Path, elf: &[PathBuf], summary: &mut Summary) {
    println!(
        "\n== 5. a buildLayeredImage-shaped image ({LAYERED_COUNT} layers, {}) to a registry: \
         (a) cold, (b) its next version (one layer changed, v1 on the registry), empty caches ==",
        mib(LAYERED_TOTAL)
    );
    if !common::skopeo_available() {
        return;
    }
    let sizes = layered_sizes();
    let changed = changed_layer(&sizes);
    let mut sorted = sizes.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    println!(
        "  layers: {} in all, largest {}, {}, {}, smallest {} KiB; v2 changes layer {changed} ({} KiB)",
        mib(sizes.iter().sum()),
        mib(sorted[0]),
        mib(sorted[1]),
        mib(sorted[2]),
        sorted[LAYERED_COUNT - 1] / 1024,
        sizes[changed] / 1024
    );
    let (v1, v2) = (
        layered_dir(work, elf, &sizes, false),
        layered_dir(work, elf, &sizes, true),
    );
    let (mut cold, mut next, mut zstd) = ((vec![], vec![]), (vec![], vec![]), vec![]);
    let (mut bytes, mut zstd_bytes, mut next_blobs) = ((vec![], vec![]), vec![], vec![]);
    for round in 0..rounds() {
        let Some(registry) = Registry::try_start() else {
            return;
        };
        let root = work.join(format!("layered-{round}"));
        let cache = |name: &str| {
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).expect("create a cache");
            dir
        };
        let target = registry.url("bench");
        println!("round {}: (a) cold (load {})", round + 1, load_average());
        let alba_v1 = alba_push_as(&cache("a"), &v1, &target, "bench:1", &[]);
        let skopeo_v1 = || {
            clear_skopeo_cache();
            let dest = registry.url("bench-skopeo:1");
            skopeo_one(&v1.join("linux.amd64.tar"), &dest, "cold")
        };
        let (a, s) = if round % 2 == 0 {
            let a = run_alba(&alba_v1).0;
            line("alba", "cold", &a);
            (a, skopeo_v1())
        } else {
            let s = skopeo_v1();
            let a = run_alba(&alba_v1).0;
            line("alba", "cold", &a);
            (a, s)
        };
        cold.0.push(secs(a.wall));
        cold.1.push(secs(s.wall));
        let (alba_bytes, skopeo_bytes) = (
            registry_layer_bytes(&registry, "bench", "1"),
            registry_layer_bytes(&registry, "bench-skopeo", "1"),
        );
        println!(
            "  compressed layers: alba {}, skopeo {}",
            mib(alba_bytes),
            mib(skopeo_bytes)
        );
        bytes.0.push(alba_bytes as f64);
        bytes.1.push(skopeo_bytes as f64);

        println!(
            "round {}: (b) next version, empty caches (load {})",
            round + 1,
            load_average()
        );
        let alba_v2 = alba_push_as(&cache("b"), &v2, &target, "bench:2", &[]);
        let skopeo_v2 = || {
            clear_skopeo_cache();
            let dest = registry.url("bench-skopeo:2");
            skopeo_one(&v2.join("linux.amd64.tar"), &dest, "next")
        };
        let ((a, report), s) = if round % 2 == 0 {
            let a = run_alba(&alba_v2);
            (a, skopeo_v2())
        } else {
            let s = skopeo_v2();
            (run_alba(&alba_v2), s)
        };
        line("alba", "next", &a);
        let written = new_blobs(&report);
        println!("  alba wrote {written} blobs (the changed layer and the config)");
        next.0.push(secs(a.wall));
        next.1.push(secs(s.wall));
        next_blobs.push(written);

        let flags = ["--compression", "zstd"];
        let alba_zstd = alba_push_as(
            &cache("z"),
            &v1,
            &registry.url("bench-zstd"),
            "bench-zstd:1",
            &flags,
        );
        let z = run_alba(&alba_zstd).0;
        line("alba", "zstd", &z);
        zstd.push(secs(z.wall));
        zstd_bytes.push(registry_layer_bytes(&registry, "bench-zstd", "1") as f64);
        std::fs::remove_dir_all(&root).expect("remove the round's caches");
    }
    summary.times(
        "(a) 100 layers, 300 MiB, cold → docker:// (vs skopeo)",
        &cold.0,
        &cold.1,
        Some(0.5),
    );
    let (a, s) = (median(&bytes.0), median(&bytes.1));
    summary.row(
        "(a) compressed layer bytes (vs skopeo)",
        mib(a as u64),
        mib(s as u64),
        format!("{:.3}×", a / s),
        "≤ 1.05×",
        Some(a / s <= 1.05),
    );
    summary.times(
        "(b) next version, v1 on the registry, empty caches",
        &next.0,
        &next.1,
        Some(0.25),
    );
    summary.row(
        "(b) blobs alba wrote (changed layer + config)",
        format!("{}", next_blobs.iter().max().unwrap_or(&0)),
        "-".into(),
        "-".into(),
        "= 2",
        Some(next_blobs.iter().all(|&n| n == 2)),
    );
    let (z, zb) = (median(&zstd), median(&zstd_bytes));
    summary.row(
        "(a) with --compression zstd: time, layer bytes",
        format!("{z:.2} s, {}", mib(zb as u64)),
        format!("gzip {:.2} s, {}", median(&cold.0), mib(a as u64)),
        format!("{:.3}×, {:.3}×", z / median(&cold.0), zb / a),
        "-",
        None,
    );
    std::fs::remove_dir_all(&v1).expect("remove v1");
    std::fs::remove_dir_all(&v2).expect("remove v2");
}

/// The DIR of 4 images of 64 MiB each: a 32 MiB base layer all share, and 32 MiB of their own.
fn shared_dir(root: &Path, elf: &[PathBuf]) -> PathBuf {
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

fn bench_shared(work: &Path, elf: &[PathBuf], summary: &mut Summary) {
    println!(
        "\n== 6. (c) 4 platforms × 64 MiB sharing a 32 MiB base layer, cold, to a registry (vs skopeo ×4) =="
    );
    if !common::skopeo_available() {
        return;
    }
    let images = shared_dir(work, elf);
    let mut cold = (vec![], vec![]);
    for round in 0..rounds() {
        let Some(registry) = Registry::try_start() else {
            return;
        };
        let cache = work.join(format!("shared-cache-{round}"));
        std::fs::create_dir_all(&cache).expect("create alba's cache");
        let alba = alba_push(&cache, &images, &registry.url("bench"));
        let tls = ["--dest-tls-verify=false"];
        let dest = |tag: &str| registry.url(&format!("bench-skopeo:{tag}"));
        println!("round {}: cold (load {})", round + 1, load_average());
        let (a, s) = if round % 2 == 0 {
            let a = run_alba(&alba).0;
            line("alba", "cold", &a);
            (a, skopeo_all(&images, &tls, dest, "cold"))
        } else {
            let s = skopeo_all(&images, &tls, dest, "cold");
            let a = run_alba(&alba).0;
            line("alba", "cold", &a);
            (a, s)
        };
        cold.0.push(secs(a.wall));
        cold.1.push(secs(s.wall));
        std::fs::remove_dir_all(&cache).expect("remove alba's cache");
    }
    summary.times(
        "(c) 4 × 64 MiB sharing a 32 MiB base, cold → docker://",
        &cold.0,
        &cold.1,
        Some(0.67),
    );
    std::fs::remove_dir_all(&images).expect("remove the images");
}

// ---------------------------------------------------------------------------------------------

/// Every measurement in one run; `BENCH_ONLY=static,folder,registry,memory,layered,shared`
/// picks some.
#[test]
#[ignore = "a benchmark: run bench/run.sh"]
fn bench() {
    let start_load = load_average();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "alba bench: {} rounds, {cores} cores, load average {start_load}",
        rounds()
    );
    if cfg!(debug_assertions) {
        println!("WARNING: a debug build; run bench/run.sh for the release figures");
    }
    let elf = elf_files();
    let total: u64 = elf
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    println!("machine code: {} ELF files, {}", elf.len(), mib(total));
    let work = tempfile::Builder::new()
        .prefix("alba-bench")
        .tempdir()
        .expect("tempdir");
    let mut summary = Summary::default();

    if wanted("static") {
        bench_static(work.path(), &elf, &mut summary);
    }
    if wanted("folder") || wanted("registry") {
        let images = image_dir(work.path(), &elf);
        if wanted("folder") {
            bench_folder(work.path(), &images, &mut summary);
        }
        if wanted("registry") {
            bench_registry(work.path(), &images, &mut summary);
        }
        std::fs::remove_dir_all(&images).expect("remove the images");
    }
    if wanted("memory") {
        bench_memory(work.path(), &elf, &mut summary);
    }
    if wanted("layered") {
        bench_layered(work.path(), &elf, &mut summary);
    }
    if wanted("shared") {
        bench_shared(work.path(), &elf, &mut summary);
    }

    println!(
        "\n== summary (medians of {} rounds; load average at start {start_load}, at end {}) ==",
        rounds(),
        load_average()
    );
    summary.print();
}
