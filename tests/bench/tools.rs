//! Running the tools: every run under `/usr/bin/time -v` ([`run`]: wall, CPU, peak RSS), and
//! the commands of alba and its peers (rclone for static binaries, skopeo for images).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::PLATFORMS;
use crate::common::{self, Garage};
use crate::summary::{mib, secs};

/// One finished run: wall time, CPU time, peak RSS (from `/usr/bin/time -v`) and its output.
pub(crate) struct Run {
    pub(crate) wall: Duration,
    pub(crate) cpu: Duration,
    pub(crate) rss: u64,
    pub(crate) stdout: Vec<u8>,
}

/// Runs `command` under `/usr/bin/time -v`, panicking with its output unless it succeeds.
pub(crate) fn run(command: &Command) -> Run {
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
pub(crate) fn run_alba(command: &Command) -> (Run, Value) {
    let run = run(command);
    let report = serde_json::from_slice(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "alba --json printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&run.stdout)
        )
    });
    (run, report)
}

/// Prints one run: wall time, CPU time, peak RSS.
pub(crate) fn line(tool: &str, what: &str, run: &Run) {
    println!(
        "  {tool:<7} {what:<6} {:>7.2} s wall  {:>6.2} s cpu  {:>9} peak RSS",
        secs(run.wall),
        secs(run.cpu),
        mib(run.rss)
    );
}

/// `rclone ARGS` against Garage, configured by environment only (no rclone.conf, no AWS_*).
pub(crate) fn rclone(garage: &Garage, scratch: &Path, args: &[&str]) -> Command {
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

/// `skopeo copy` of each image of `images` to `dest(tag)`, one after another; total time.
pub(crate) fn skopeo_all(
    images: &Path,
    extra: &[&str],
    dest: impl Fn(&str) -> String,
    what: &str,
) -> Run {
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
pub(crate) fn clear_skopeo_cache() {
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
pub(crate) fn skopeo_one(archive: &Path, dest: &str, what: &str) -> Run {
    let mut command = common::skopeo::skopeo();
    command
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(dest);
    let r = run(&command);
    line("skopeo", what, &r);
    r
}
/// `alba --json container push -t bench:1 DIR TARGET` with its cache at `cache`.
pub(crate) fn alba_push(cache: &Path, images: &Path, target: &str) -> Command {
    alba_push_as(cache, images, target, "bench:1", &[])
}

/// `alba --json [flags] container push -t NAME_TAG DIR TARGET` with its cache at `cache`.
pub(crate) fn alba_push_as(
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
