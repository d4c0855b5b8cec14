//! Measurement 3, registry: the folder measurement's images to Debian's docker-registry, against
//! `skopeo copy … docker://` × 4, cold and warm; warm blob uploads counted in the registry's access
//! log (alba's must be 0).

use std::path::Path;

use crate::common::{self, Registry};
use crate::outputs::uploads;
use crate::summary::{Summary, secs};
use crate::tools::{alba_push, line, run_alba, skopeo_all};
use crate::{load_average, rounds};

/// The registry measurement; its rows go to `summary`.
pub(crate) fn bench_registry(work: &Path, images: &Path, summary: &mut Summary) {
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
