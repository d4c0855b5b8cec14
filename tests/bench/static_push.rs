//! Measurement 1, static: 4 × 64 MiB binaries to Garage, `alba static push` against `rclone copy`,
//! cold; then warm (alba must send 0 bytes: its report and the objects' Last-Modified).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{self, Garage};
use crate::inputs::static_dir;
use crate::outputs::binaries_last_modified;
use crate::summary::{Summary, secs};
use crate::tools::{line, rclone, run, run_alba};
use crate::{PLATFORMS, SIZE, load_average, rounds};

/// The static measurement; its rows go to `summary`.
pub(crate) fn bench_static(work: &Path, elf: &[PathBuf], summary: &mut Summary) {
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
