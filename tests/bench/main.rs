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
//! 7. scale: `ls`, `gc --keep 10 --dry-run`, `verify --quick` and a push over histories of 20,
//!    200 and 1,000 tags, static and images, in requests and seconds, on loopback and behind
//!    30 ms per request (`BENCH_SCALE_BEFORE=/path/to/alba` adds another build, side by side).
//!
//! Each cold measurement runs `BENCH_ROUNDS` times (default 3) on fresh targets and caches
//! (skopeo's blob-info cache cleared), alternating which tool goes first; the table shows medians.
//!
//! One module per job: [`inputs`] writes the inputs, [`tools`] runs alba and its peers under
//! `/usr/bin/time -v`, [`outputs`] reads back what they wrote, one module per measurement
//! ([`static_push`], [`folder`], [`registry`], [`memory`], [`layered`], [`shared`]) and
//! [`summary`] prints the table.

#[path = "../common/mod.rs"]
mod common;

mod folder;
mod inputs;
mod layered;
mod memory;
mod outputs;
mod registry;
mod scale;
mod shared;
mod static_push;
mod summary;
mod tools;

use folder::bench_folder;
use inputs::{elf_files, image_dir};
use layered::bench_layered;
use memory::bench_memory;
use registry::bench_registry;
use scale::bench_scale;
use shared::bench_shared;
use static_push::bench_static;
use summary::{Summary, mib};

/// A mebibyte.
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

/// Rounds of each cold measurement: `BENCH_ROUNDS`, 3 by default.
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

/// The 1, 5 and 15 minute load averages: timings only mean something on an idle machine.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Every measurement in one run; `BENCH_ONLY=static,folder,registry,memory,layered,shared,scale`
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
    if wanted("scale") {
        bench_scale(work.path(), &mut summary);
    }

    println!(
        "\n== summary (medians of {} rounds; load average at start {start_load}, at end {}) ==",
        rounds(),
        load_average()
    );
    summary.print();
}
