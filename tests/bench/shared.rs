//! Measurement 6, shared: (c) 4 platforms × 64 MiB sharing one 32 MiB base layer, cold, to a
//! registry, against `skopeo copy` × 4.

use std::path::{Path, PathBuf};

use crate::common::{self, Registry};
use crate::inputs::shared_dir;
use crate::summary::{Summary, secs};
use crate::tools::{alba_push, line, run_alba, skopeo_all};
use crate::{load_average, rounds};

/// The shared measurement; its rows go to `summary`.
pub(crate) fn bench_shared(work: &Path, elf: &[PathBuf], summary: &mut Summary) {
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
