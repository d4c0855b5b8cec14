//! Measurement 7, scale: `ls`, `gc --keep 10 --dry-run` and `verify --quick` over histories
//! of 20, 200 and 1,000 tags (`BENCH_SCALE_TAGS`), static binaries and images, each on a
//! bucket of one Garage; and a push of one more tag (O(1) in the history: the same requests
//! at every size). Every command runs through the harness's proxy (`common::fault_proxy`),
//! which counts its requests: on loopback, and with 30 ms added to each request, what a
//! Garage across a network costs.
//!
//! The histories are one tag pushed by alba and copies made through the S3 API
//! (`common::history`). `BENCH_SCALE_BEFORE=/path/to/alba` measures another build on the same
//! histories, side by side (the build before a change). The table is Markdown, for README.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::fault_proxy::FaultProxy;
use crate::common::fixtures::{self, base_layer, image_dir};
use crate::common::{self, Garage, history};
use crate::summary::Summary;

const NAME: &str = "albatros";
/// The latency of a store across a network, added to each request.
const LATENCY: Duration = Duration::from_millis(30);
/// The target of the issue: each command at 1,000 tags behind that latency.
const TARGET: f64 = 10.0;

/// Requests and seconds of one run.
type Cost = (u64, f64);

/// History sizes: `BENCH_SCALE_TAGS` (comma-separated), 20, 200 and 1,000 by default.
fn sizes() -> Vec<usize> {
    let text = std::env::var("BENCH_SCALE_TAGS").unwrap_or_else(|_| "20,200,1000".into());
    text.split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

/// The builds measured: this one (or `BENCH_ALBA`), and `BENCH_SCALE_BEFORE` first if set.
fn builds() -> Vec<(&'static str, OsString)> {
    let this = std::env::var_os("BENCH_ALBA").unwrap_or_else(|| env!("CARGO_BIN_EXE_alba").into());
    let mut builds = Vec::new();
    if let Some(before) = std::env::var_os("BENCH_SCALE_BEFORE") {
        builds.push(("before", before));
    }
    builds.push(("after", this));
    builds
}

/// `PROGRAM --json ARGS` with Garage's credentials and the harness's isolated environment.
fn command(program: &OsString, garage: &Garage, args: &[&str]) -> Command {
    let alba = common::alba();
    let mut command = Command::new(program);
    for (key, value) in alba.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command.envs(garage.envs()).arg("--json").args(args);
    command
}

/// Runs `command` through `proxy`: its requests and wall time.
fn cost(proxy: &FaultProxy, mut command: Command) -> Cost {
    proxy.reset_requests();
    let start = Instant::now();
    let output = command.output().expect("run alba");
    let seconds = start.elapsed().as_secs_f64();
    assert!(
        output.status.success(),
        "`{}` failed\n{}",
        common::describe(&command),
        String::from_utf8_lossy(&output.stderr)
    );
    (proxy.requests(), seconds)
}

/// One kind of history: how to publish its first tag, copy it, and the commands measured.
struct Kind {
    label: &'static str,
    /// The `static`/`container` subcommand.
    sub: &'static str,
    /// The DIR pushed.
    dir: String,
}

impl Kind {
    /// The read commands measured on `target`.
    fn reads(&self, target: &str) -> Vec<(String, Vec<String>)> {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        vec![
            (
                format!("{} ls", self.sub),
                args(&[self.sub, "ls", "-t", NAME, target]),
            ),
            (
                format!("{} gc --keep 10 --dry-run", self.sub),
                args(&[
                    self.sub,
                    "gc",
                    "-t",
                    NAME,
                    "--keep",
                    "10",
                    "--dry-run",
                    target,
                ]),
            ),
            (
                "verify --quick".into(),
                args(&["verify", "--quick", "-t", NAME, target]),
            ),
        ]
    }

    /// `push -t NAME:TAG DIR TARGET`.
    fn push(&self, tag: &str, target: &str) -> Vec<String> {
        let name_tag = format!("{NAME}:{tag}");
        [self.sub, "push", "-t", &name_tag, &self.dir, target]
            .map(String::from)
            .to_vec()
    }

    /// A bucket holding `tags` tags of this kind.
    fn history(&self, garage: &Garage, bucket: &str, tags: usize) {
        garage.create_bucket(bucket);
        let mut first = common::alba();
        first.envs(garage.envs());
        let push = self.push("0.1.0", &garage.s3_url(bucket));
        let out = first.args(&push).run();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let more = history::tags(tags - 1);
        let s3 = garage.s3();
        match self.sub {
            "static" => history::copy_static_tags(&s3, bucket, NAME, "0.1.0", &more),
            _ => history::copy_image_tags(&s3, bucket, NAME, "0.1.0", &more),
        }
    }
}

/// One row of the table: a command at a size, and its cost per build and latency.
struct Row {
    what: String,
    tags: usize,
    /// (build, latency in ms) → cost.
    costs: Vec<((&'static str, u64), Cost)>,
}

/// The scale measurement; the 1,000-tag figures behind the latency go to `summary`.
pub(crate) fn bench_scale(work: &Path, summary: &mut Summary) {
    println!("\n== 7. scale: ls, gc --dry-run, verify --quick and a push over long histories ==");
    let Some(garage) = Garage::try_start() else {
        return;
    };
    let df = work.join("scale-df");
    fixtures::static_dir(&df, NAME, &["x86_64-linux"]);
    let images = image_dir(work, "scale", &base_layer("scale"), &["amd64"]);
    let kinds = [
        Kind {
            label: "static",
            sub: "static",
            dir: df.display().to_string(),
        },
        Kind {
            label: "images",
            sub: "container",
            dir: images.display().to_string(),
        },
    ];
    let proxy = FaultProxy::start(garage.s3_port, 0.0, 7);
    let mut rows = Vec::new();
    for kind in &kinds {
        for tags in sizes() {
            rows.extend(measure(&garage, &proxy, kind, tags));
        }
    }
    print_table(&rows);
    summarize(&rows, summary);
}

/// Every command of `kind` at `tags` tags, per build, on loopback and behind the latency.
fn measure(garage: &Garage, proxy: &FaultProxy, kind: &Kind, tags: usize) -> Vec<Row> {
    let bucket = format!("scale-{}-{tags}", kind.label);
    let start = Instant::now();
    kind.history(garage, &bucket, tags);
    println!(
        "{} history of {tags} tags made in {:.1} s",
        kind.label,
        start.elapsed().as_secs_f64()
    );
    let target = format!(
        "s3://{bucket}?endpoint={}&region={}&s3ForcePathStyle=true",
        proxy.endpoint(),
        common::garage::REGION
    );
    let mut rows: Vec<Row> = kind
        .reads(&target)
        .into_iter()
        .map(|(what, _)| Row {
            what,
            tags,
            costs: Vec::new(),
        })
        .collect();
    rows.push(Row {
        what: format!("{} push of one more tag", kind.sub),
        tags,
        costs: Vec::new(),
    });
    // Reads first, so every build reads the same history; then one push per build and latency.
    for latency in [Duration::ZERO, LATENCY] {
        proxy.set_latency(latency);
        let ms = latency.as_millis() as u64;
        for (build, program) in builds() {
            for (row, (what, args)) in rows.iter_mut().zip(kind.reads(&target)) {
                let c = run(proxy, garage, &program, &args);
                println!(
                    "  {build:6} {what:32} {tags:5} tags {ms:2} ms: {:6} requests {:7.2} s",
                    c.0, c.1
                );
                row.costs.push(((build, ms), c));
            }
        }
    }
    let mut pushed = 0;
    for latency in [Duration::ZERO, LATENCY] {
        proxy.set_latency(latency);
        let ms = latency.as_millis() as u64;
        for (build, program) in builds() {
            pushed += 1;
            let c = run(
                proxy,
                garage,
                &program,
                &kind.push(&format!("0.2.{pushed}"), &target),
            );
            println!(
                "  {build:6} push {:27} {tags:5} tags {ms:2} ms: {:6} requests {:7.2} s",
                "", c.0, c.1
            );
            rows.last_mut()
                .expect("the push row")
                .costs
                .push(((build, ms), c));
        }
    }
    proxy.set_latency(Duration::ZERO);
    rows
}

/// Runs `program ARGS` through `proxy`: its cost.
fn run(proxy: &FaultProxy, garage: &Garage, program: &OsString, args: &[String]) -> Cost {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cost(proxy, command(program, garage, &args))
}

/// The table, in Markdown: requests and seconds per build, loopback and behind the latency.
fn print_table(rows: &[Row]) {
    let Some(first) = rows.first() else {
        return;
    };
    let columns: Vec<(&str, u64)> = first.costs.iter().map(|(k, _)| *k).collect();
    let header: Vec<String> = columns
        .iter()
        .map(|(build, ms)| match ms {
            0 => format!("{build}, loopback"),
            ms => format!("{build}, +{ms} ms/request"),
        })
        .collect();
    println!("\n| command | tags | {} |", header.join(" | "));
    println!("|---|---:|{}", "---:|".repeat(columns.len()));
    for row in rows {
        let cells: Vec<String> = row
            .costs
            .iter()
            .map(|(_, (requests, seconds))| format!("{requests} req, {seconds:.2} s"))
            .collect();
        println!("| {} | {} | {} |", row.what, row.tags, cells.join(" | "));
    }
}

/// Summary rows: each command of this build at the largest size behind the latency against
/// the 10 s target, and the push's requests at the smallest and the largest size.
fn summarize(rows: &[Row], summary: &mut Summary) {
    let ms = LATENCY.as_millis() as u64;
    let (Some(small), Some(large)) = (sizes().into_iter().min(), sizes().into_iter().max()) else {
        return;
    };
    let at = |row: &Row| {
        row.costs
            .iter()
            .find(|(k, _)| *k == ("after", ms))
            .map(|(_, c)| *c)
    };
    for row in rows
        .iter()
        .filter(|r| r.tags == large && !r.what.contains("push"))
    {
        if let Some((requests, seconds)) = at(row) {
            let what = format!("scale: {} at {large} tags, +{ms} ms", row.what);
            let cell = format!("{seconds:.2} s, {requests} req");
            summary.row(
                &what,
                cell,
                "-".into(),
                "-".into(),
                "< 10 s",
                Some(seconds < TARGET),
            );
        }
    }
    for push in rows
        .iter()
        .filter(|r| r.what.contains("push") && r.tags == small)
    {
        let Some(big) = rows.iter().find(|r| r.what == push.what && r.tags == large) else {
            continue;
        };
        if let (Some(a), Some(b)) = (at(push), at(big)) {
            let what = format!("scale: {} ({small} → {large} tags)", push.what);
            let cell = format!("{} → {} req", a.0, b.0);
            summary.row(
                &what,
                cell,
                "-".into(),
                "-".into(),
                "O(1)",
                Some(b.0 <= a.0 + 3),
            );
        }
    }
}
