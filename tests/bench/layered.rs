//! Measurement 5, layered: one image shaped like `buildLayeredImage` output (100 layers, 300 MiB of
//! machine code, log-normal sizes) to a registry: (a) cold against `skopeo copy`; (b) its next
//! version (one ~170 KiB layer changed) with v1 already on the registry and both tools' caches
//! empty (alba must write only that layer and the config); (a) again with `--compression zstd`,
//! time and bytes against gzip.

use std::path::{Path, PathBuf};

use crate::common::{self, Registry};
use crate::inputs::{LAYERED_COUNT, LAYERED_TOTAL, changed_layer, layered_dir, layered_sizes};
use crate::outputs::{new_blobs, registry_layer_bytes};
use crate::summary::{Summary, median, mib, secs};
use crate::tools::{alba_push_as, clear_skopeo_cache, line, run_alba, skopeo_one};
use crate::{load_average, rounds};

/// The layered measurement; its rows go to `summary`.
pub(crate) fn bench_layered(work: &Path, elf: &[PathBuf], summary: &mut Summary) {
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
