//! Measurement 4, memory: peak RSS of alba pushing an image with a 2 GiB layer to a folder (needs
//! ~5 GiB free in `$TMPDIR`; removed afterwards).

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::inputs::{MachineCode, write_image};
use crate::outputs::alba_layer_bytes;
use crate::summary::{Summary, mib, secs};
use crate::tools::{alba_push, line, run_alba};
use crate::{BIG, RSS_TARGET, load_average};

/// The memory measurement; its rows go to `summary`.
pub(crate) fn bench_memory(work: &Path, elf: &[PathBuf], summary: &mut Summary) {
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
