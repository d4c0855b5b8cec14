//! Measurement 2, folder: 4 images with a 64 MiB layer each (uncompressed docker archives), `alba
//! container push DIR file:OUT` against `skopeo copy --dest-compress … oci:OUT:<tag>` × 4, cold and
//! warm; compressed layer bytes of both. A warm alba run must send 0 bytes and touch no blob file.

use std::path::Path;
use std::time::Duration;

use crate::common;
use crate::outputs::{alba_layer_bytes, blob_mtimes, skopeo_layer_bytes};
use crate::summary::{Summary, median, mib, secs};
use crate::tools::{alba_push, line, run_alba, skopeo_all};
use crate::{PLATFORMS, load_average, rounds};

/// The folder measurement; its rows go to `summary`.
pub(crate) fn bench_folder(work: &Path, images: &Path, summary: &mut Summary) {
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
