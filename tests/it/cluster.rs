//! alba on a 3-node Garage cluster (`tests/common/garage_cluster.rs`: three zones,
//! `replication_factor = 3`), with nodes failing while it publishes:
//!
//! - a node killed during `alba release`: the release completes, and reads back whole through each
//!   remaining node's S3 API and website endpoint, and through the node once it is back;
//! - the endpoint node killed mid-release: alba fails naming the endpoint; nothing listed is
//!   missing through another node; a re-run through another node completes;
//! - the endpoint node paused (SIGSTOP) for 20 s during a release: it completes or fails
//!   clearly, and never lists a tag whose content is missing;
//! - `gc --keep N` through one node beside a push through another.
//!
//! "During" is when the first upload is seen: a fault proxy (no faults, writes slowed) in
//! front of the endpoint counts writes; the first is the push's lease, the second its first
//! upload. "Whole" is: every listed tag's content is there with its bytes (`alba verify`
//! through the node, the checks of `faults::reader` through its S3 API, and the website
//! endpoint read with an HTTP client or skopeo).
//!
//! The other scenarios push the DIR forms (`static push DIR`, `container push DIR`): the
//! publishers `alba release` runs, without a Nix build each.
//!
//! The scenarios share one cluster (starting one takes seconds), so they run one after the
//! other in one test: each starts from all nodes up and serving; a failed one is reported
//! after the others ran.

use crate::common;
use crate::faults::reader::{
    df_dist_problems, listed_image_tags, listed_static_tags, pull_all, static_registry_problems,
};

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::fault_proxy::FaultProxy;
use common::fixtures::{self, Expected, FlakeFixture, SYSTEMS, base_layer, image_dir};
use common::garage_cluster::GarageCluster;
use common::{Garage, alba};

const NAME: &str = "albatros";
/// Writes the proxy sees before the first upload: the push's lease.
const FIRST_UPLOAD: u64 = 2;
/// A short retry policy, so a push whose endpoint is gone fails within seconds.
const BOUNDED: [&str; 6] = [
    "--retries",
    "3",
    "--retry-time",
    "10s",
    "--retry-backoff",
    "100ms",
];
/// How long the paused node stays stopped.
const PAUSE: Duration = Duration::from_secs(20);

type Scenario = fn(&mut GarageCluster);

#[test]
fn a_release_survives_nodes_that_die_or_stall_and_gc_runs_beside_a_push() {
    if !common::nix_available() {
        return;
    }
    let Some(mut cluster) = GarageCluster::try_start() else {
        return;
    };
    let scenarios: [(&str, Scenario); 4] = [
        ("a node down during a release", node_down_during_a_release),
        (
            "the endpoint killed mid-release",
            endpoint_killed_mid_release,
        ),
        (
            "the endpoint paused for 20 s",
            endpoint_paused_during_a_release,
        ),
        ("gc beside a push, through two nodes", gc_beside_a_push),
    ];
    let mut failed = Vec::new();
    for (what, scenario) in scenarios {
        let start = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| scenario(&mut cluster)));
        let verdict = if result.is_ok() { "ok" } else { "FAILED" };
        eprintln!("cluster: {what}: {verdict} in {:.1?}", start.elapsed());
        if result.is_err() {
            failed.push(what);
        }
        let start = Instant::now();
        all_up(&mut cluster);
        eprintln!(
            "cluster: all nodes serving again after {:.1?}",
            start.elapsed()
        );
    }
    assert!(failed.is_empty(), "failed (panics above): {failed:?}");
}

/// Restarts what a scenario left down and waits until every node serves.
fn all_up(cluster: &mut GarageCluster) {
    for i in 0..cluster.nodes.len() {
        if cluster.node(i).pid().is_none() {
            cluster.restart(i);
        }
        cluster.wait_serving(i);
    }
}

/// Node 2 is killed at the first upload of `alba release` (a fixture flake built by Nix)
/// through node 0; the release completes and reads back whole through nodes 0 and 1, and
/// through node 2 once it is back.
fn node_down_during_a_release(cluster: &mut GarageCluster) {
    let bucket = "down";
    cluster.create_bucket(bucket);
    let work = tempfile::tempdir().expect("temp dir");
    let flake = FlakeFixture::new(NAME, &SYSTEMS)
        .salt("cluster")
        .write(&work.path().join("flake"));
    let expected = flake.expected;
    let proxy = slow_proxy(cluster.node(0));
    let mut release = alba();
    release
        .envs(cluster.node(0).envs())
        .arg("--flake")
        .arg(&flake.dir)
        .args(["release", "1.0", "--target", &via(&proxy, bucket)]);
    let out = during(release, &proxy, || cluster.kill(2));
    assert!(out.status.success(), "{}", text(&out));
    for i in [0, 1] {
        check_static(cluster.node(i), bucket, &["1.0"], &expected);
    }
    cluster.restart(2);
    check_static(cluster.node(2), bucket, &["1.0"], &expected);
}

/// Node 0, the endpoint, is killed at the first upload of 1.1: alba fails naming it; through
/// nodes 1 and 2 what is listed (1.0) is whole; pushing 1.1 again through node 1 completes.
fn endpoint_killed_mid_release(cluster: &mut GarageCluster) {
    let bucket = "endpoint";
    cluster.create_bucket(bucket);
    let work = tempfile::tempdir().expect("temp dir");
    let (df, expected) = static_input(work.path());
    let first = cluster.node(0).s3_url(bucket);
    let out = static_push(cluster.node(0), "1.0", &df, &first).run();
    assert!(out.status.success(), "{}", text(&out));
    let proxy = slow_proxy(cluster.node(0));
    let mut push = static_push(cluster.node(0), "1.1", &df, &via(&proxy, bucket));
    push.args(BOUNDED);
    let out = during(push, &proxy, || cluster.kill(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("the push whose endpoint died:\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let endpoint = format!("127.0.0.1:{}", proxy.port);
    assert!(stderr.contains(&endpoint), "names {endpoint}: {stderr}");
    // It died before its tag document: through the other nodes 1.0 alone is listed, whole.
    for i in [1, 2] {
        check_static(cluster.node(i), bucket, &["1.0"], &expected);
    }
    let again = cluster.node(1).s3_url(bucket);
    let out = static_push(cluster.node(1), "1.1", &df, &again).run();
    assert!(out.status.success(), "the re-run: {}", text(&out));
    for i in [1, 2] {
        check_static(cluster.node(i), bucket, &["1.0", "1.1"], &expected);
    }
    cluster.restart(0);
    check_static(cluster.node(0), bucket, &["1.0", "1.1"], &expected);
}

/// Node 0, the endpoint, is stopped for 20 s from the first upload of an image push: the
/// push completes or fails with a clear error, and every listed tag is whole through each node.
fn endpoint_paused_during_a_release(cluster: &mut GarageCluster) {
    let bucket = "paused";
    cluster.create_bucket(bucket);
    let work = tempfile::tempdir().expect("temp dir");
    let dir = image_dir(work.path(), "p", &base_layer("p"), &["amd64", "arm64"]);
    let proxy = slow_proxy(cluster.node(0));
    let mut push = image_push(cluster.node(0), "1.0", &dir, &via(&proxy, bucket));
    push.args(["--retry-time", "60s"]);
    let start = Instant::now();
    let mut paused = None;
    let out = during(push, &proxy, || {
        let guard = cluster.pause(0);
        let resume = std::thread::spawn(move || {
            std::thread::sleep(PAUSE);
            drop(guard);
        });
        paused = Some(resume);
    });
    if let Some(resume) = paused {
        resume.join().expect("the resume thread");
    }
    eprintln!(
        "paused push: {:?} after {:.1?}\n{}",
        out.status.code(),
        start.elapsed(),
        text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => assert!(start.elapsed() >= PAUSE, "it waited for the node"),
        Some(1) => assert!(stderr.contains("error:"), "a clear error: {stderr}"),
        other => panic!("exit {other:?}: {}", text(&out)),
    }
    let completed = out.status.success();
    for i in 0..cluster.nodes.len() {
        let node = cluster.node(i);
        assert_eq!(static_registry_problems(node, bucket), Vec::<String>::new());
        if completed {
            assert_eq!(listed_image_tags(node, bucket), ["1.0"], "node {i}");
            verify(node, bucket, None);
        }
    }
}

/// Six tags through node 0, then 1.6 pushed through node 0 while `gc --keep 2` runs through
/// node 1: both exit 0, 1.6 is listed, the oldest tags are gone, every listed tag pulls whole
/// through the website of nodes 1 and 2.
fn gc_beside_a_push(cluster: &mut GarageCluster) {
    // Named `localhost`: the website serves it at localhost:<web port>, a pull reference.
    let bucket = "localhost";
    cluster.create_bucket(bucket);
    let work = tempfile::tempdir().expect("temp dir");
    let base = base_layer("gc");
    let target = cluster.node(0).s3_url(bucket);
    for i in 0..6 {
        let tag = format!("1.{i}");
        let dir = image_dir(work.path(), &tag, &base, &["amd64", "arm64"]);
        let out = image_push(cluster.node(0), &tag, &dir, &target).run();
        assert!(out.status.success(), "{tag}: {}", text(&out));
    }
    let proxy = slow_proxy(cluster.node(0));
    let dir = image_dir(work.path(), "1.6", &base, &["amd64", "arm64"]);
    let push = image_push(cluster.node(0), "1.6", &dir, &via(&proxy, bucket));
    let gc_target = cluster.node(1).s3_url(bucket);
    let mut gc_out = None;
    let out = during(push, &proxy, || {
        let mut gc = alba();
        gc.envs(cluster.node(1).envs())
            .args(["container", "gc", "-t", NAME])
            .args(["--keep", "2", "--grace", "0s"])
            .arg(&gc_target);
        gc_out = Some(gc.run());
    });
    let gc_out = gc_out.expect("gc ran");
    assert!(out.status.success(), "the push: {}", text(&out));
    assert!(gc_out.status.success(), "the gc: {}", text(&gc_out));
    let listed: BTreeSet<String> = listed_image_tags(cluster.node(2), bucket)
        .into_iter()
        .collect();
    assert!(
        listed.contains("1.6"),
        "the push's tag is listed: {listed:?}"
    );
    for old in ["1.0", "1.1", "1.2", "1.3"] {
        assert!(!listed.contains(old), "gc removed {old}: {listed:?}");
    }
    for i in [1, 2] {
        let node = cluster.node(i);
        assert_eq!(static_registry_problems(node, bucket), Vec::<String>::new());
        verify(
            node,
            bucket,
            Some(&format!("http://localhost:{}", node.web_port)),
        );
        for tag in &listed {
            let reference = format!(
                "docker://{}",
                node.web_registry_ref(&format!("{NAME}:{tag}"))
            );
            pull_all(&reference, work.path(), &format!("{i}-{tag}"));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Pushes, and what a reader finds
// ---------------------------------------------------------------------------------------

/// A static `df/` folder of [`SYSTEMS`] and what it holds.
fn static_input(work: &Path) -> (std::path::PathBuf, Expected) {
    let df = work.join("df");
    let expected = fixtures::static_dir(&df, NAME, &SYSTEMS);
    (df, expected)
}

/// A proxy in front of `node`'s S3 API that delays every write by 200 ms (no faults), so a
/// release lasts long enough for something to happen during it.
fn slow_proxy(node: &Garage) -> FaultProxy {
    let proxy = FaultProxy::start(node.s3_port, 0.0, 0xc1u64);
    proxy.set_write_latency(Duration::from_millis(200));
    proxy
}

/// The alba target URL of `bucket` through `proxy`.
fn via(proxy: &FaultProxy, bucket: &str) -> String {
    format!(
        "s3://{bucket}?endpoint={}&region={}&s3ForcePathStyle=true",
        proxy.endpoint(),
        common::garage::REGION
    )
}

fn static_push(node: &Garage, tag: &str, df: &Path, target: &str) -> common::Alba {
    push("static", node, tag, df, target)
}

fn image_push(node: &Garage, tag: &str, dir: &Path, target: &str) -> common::Alba {
    push("container", node, tag, dir, target)
}

/// `alba <kind> push -t NAME:TAG DIR TARGET` with `node`'s credentials.
fn push(kind: &str, node: &Garage, tag: &str, dir: &Path, target: &str) -> common::Alba {
    let mut cmd = alba();
    cmd.envs(node.envs())
        .args([kind, "push", "-t", &format!("{NAME}:{tag}")])
        .arg(dir)
        .arg(target);
    cmd
}

/// Runs `cmd`, calls `act` once `proxy` has seen the first upload, and returns the output.
/// A failure on the way kills alba instead of leaving it running.
fn during(mut cmd: common::Alba, proxy: &FaultProxy, act: impl FnOnce()) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("could not start alba");
    let acted = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while proxy.writes() < FIRST_UPLOAD {
            let exited = child.try_wait().expect("alba's status").is_some();
            assert!(
                !exited,
                "alba exited before its first upload ({})",
                proxy.summary()
            );
            assert!(
                Instant::now() < deadline,
                "no upload within 120 s (a release builds with Nix first)"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        act();
    }));
    if let Err(panic) = acted {
        let _ = child.kill();
        let _ = child.wait();
        std::panic::resume_unwind(panic);
    }
    child.wait_with_output().expect("alba did not finish")
}

/// `tags` are listed through `node` and whole: `alba verify` through its S3 API, every tag
/// document's files there, and every file's bytes through its website endpoint.
fn check_static(node: &Garage, bucket: &str, tags: &[&str], expected: &Expected) {
    let listed: BTreeSet<String> = listed_static_tags(node, bucket).into_iter().collect();
    let wanted: BTreeSet<String> = tags.iter().map(|t| t.to_string()).collect();
    assert_eq!(listed, wanted, "listed through node {}", node.s3_port);
    assert_eq!(df_dist_problems(node, bucket), Vec::<String>::new());
    verify(node, bucket, None);
    for tag in tags {
        for (system, files) in expected {
            let (os, arch, _) = fixtures::platform(system);
            for (file, bytes) in files {
                let path = format!("/df-dist-v1/{NAME}/{tag}/{os}/{arch}/{file}");
                let (status, _, body) = node.web_get(bucket, &path);
                assert_eq!(status, 200, "GET {path} through web port {}", node.web_port);
                assert!(&body == bytes, "{path}: other bytes");
            }
        }
    }
}

/// `alba verify -t NAME` of `bucket` through `node`'s S3 API (or `web`) must pass.
fn verify(node: &Garage, bucket: &str, web: Option<&str>) {
    let mut cmd = alba();
    cmd.envs(node.envs()).args(["verify", "-t", NAME]);
    if let Some(web) = web {
        cmd.args(["--web", web]);
    }
    let out = cmd.arg(node.s3_url(bucket)).run();
    assert!(out.status.success(), "verify: {}", text(&out));
}

fn text(output: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
