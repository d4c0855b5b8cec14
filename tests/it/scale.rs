//! At scale: `ls`, `gc` and `verify` over a long history read each tag's documents once (and
//! at once, bounded by `--jobs`), and a push stays O(1) in the history.
//!
//! A history of [`TAGS`] tags is one tag pushed by alba and copies made through the S3 API
//! (`common::history`). Every alba command runs through the harness's proxy
//! (`common::fault_proxy`, no faults), which counts the requests; the tests assert those
//! counts, never times (the times are measured by the bench, `BENCH_ONLY=scale bench/run.sh`).
//! What the commands print is checked too: every tag listed, the right tags removed, the
//! store verified whole afterwards.

use crate::common;

use std::process::Output;

use common::fault_proxy::FaultProxy;
use common::fixtures::{self, base_layer, image_dir};
use common::{Garage, alba, history};
use serde_json::Value;

const NAME: &str = "albatros";
/// Tags in the history.
const TAGS: usize = 200;
/// Tags `gc` keeps.
const KEEP: usize = 10;
/// Requests beyond the per-tag ones: the bucket check, the list, listings, leases.
const SLACK: u64 = 25;

/// `--jobs` of every run: reads go [`READS`] at once.
const JOBS: &str = "2";
/// Reads at once with `--jobs 2` (4 per job).
const READS: u64 = 8;

/// Runs alba on `target` through `proxy`; returns the JSON report and the requests it made.
fn counted(garage: &Garage, proxy: &FaultProxy, args: &[&str]) -> (Value, u64) {
    proxy.reset_requests();
    let out = alba()
        .envs(garage.envs())
        .args(["--json", "--jobs", JOBS])
        .args(args)
        .run();
    let requests = proxy.requests();
    assert!(out.status.success(), "alba {args:?} failed\n{}", text(&out));
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("alba {args:?}: not JSON ({e})\n{}", text(&out)));
    let at_once = proxy.max_in_flight();
    eprintln!(
        "alba {}: {requests} requests, {at_once} at most at once",
        args[..2].join(" ")
    );
    (report, requests)
}

/// The last run read concurrently, and no more than `--jobs` allows.
fn concurrent(proxy: &FaultProxy, what: &str) {
    let at_once = proxy.max_in_flight();
    assert!(
        (READS / 2..=READS).contains(&at_once),
        "{what}: {at_once} requests at once, with --jobs {JOBS} (up to {READS} reads at once)"
    );
}

fn text(output: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Garage with bucket `scale`, and a counting proxy in front of its S3 API; the target URL
/// through the proxy.
fn store() -> Option<(Garage, FaultProxy, String)> {
    let garage = Garage::try_start()?;
    garage.create_bucket("scale");
    let proxy = FaultProxy::start(garage.s3_port, 0.0, 1);
    // A little latency, so concurrent requests overlap at the proxy on any machine.
    proxy.set_latency(std::time::Duration::from_millis(5));
    let target = format!(
        "s3://scale?endpoint={}&region={}&s3ForcePathStyle=true",
        proxy.endpoint(),
        common::garage::REGION
    );
    Some((garage, proxy, target))
}

/// The tags a report says were removed.
fn removed(report: &Value) -> Vec<String> {
    let tags = report["targets"][0]["tags"].as_array();
    let tags = tags.unwrap_or_else(|| panic!("no removed tags in {report}"));
    tags.iter()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect()
}

/// The oldest `TAGS - KEEP` tags of the history (`0.1.0` the template, then `history::tags`).
fn oldest(all: &[String]) -> Vec<String> {
    let mut old: Vec<String> = all[..TAGS - KEEP].to_vec();
    old.sort();
    old
}

#[test]
fn static_ls_gc_and_verify_read_each_tag_once_and_a_push_stays_o1() {
    let Some((garage, proxy, target)) = store() else {
        return;
    };
    let work = tempfile::tempdir().expect("temp dir");
    let df = work.path().join("df");
    fixtures::static_dir(&df, NAME, &["x86_64-linux"]);
    let df = df.to_str().expect("utf-8 path");
    let push = |tag: &str| {
        counted(
            &garage,
            &proxy,
            &[
                "static",
                "push",
                "-t",
                &format!("{NAME}:{tag}"),
                df,
                &target,
            ],
        )
        .1
    };
    push("0.1.0");
    let small = push("0.0.9");
    // The history, 0.0.9 dropped again so the tags are 0.1.0 … 0.1.199 in push order.
    let s3 = garage.s3();
    for key in s3.list_keys("scale", &format!("df-dist-v1/{NAME}/0.0.9")) {
        s3.delete("scale", &key);
    }
    let more = history::tags(TAGS - 1);
    history::copy_static_tags(&s3, "scale", NAME, "0.1.0", &more);
    let mut all = vec!["0.1.0".to_string()];
    all.extend(more);
    let per_tag = s3
        .list_keys("scale", &format!("df-dist-v1/{NAME}/0.1.0"))
        .len() as u64;

    let (listing, requests) = counted(&garage, &proxy, &["static", "ls", "-t", NAME, &target]);
    concurrent(&proxy, "static ls");
    let tags = listing["tags"].as_array().expect("tags");
    assert_eq!(tags.len(), TAGS);
    assert!(
        tags.iter()
            .all(|t| t["flavors"][0]["resources"][0]["path"] == NAME)
    );
    assert!(
        requests <= TAGS as u64 + SLACK,
        "static ls: {requests} requests for {TAGS} tags"
    );

    let gc = ["static", "gc", "-t", NAME, "--keep", "10", "--grace", "0s"];
    let dry: Vec<&str> = gc.iter().copied().chain(["--dry-run", &target]).collect();
    let (report, requests) = counted(&garage, &proxy, &dry);
    concurrent(&proxy, "static gc --dry-run");
    assert_eq!(sorted(removed(&report)), oldest(&all));
    assert!(
        requests <= TAGS as u64 + SLACK,
        "static gc --dry-run: {requests} requests for {TAGS} tags"
    );

    let verify = ["verify", "--quick", "-t", NAME, &target];
    let (report, requests) = counted(&garage, &proxy, &verify);
    concurrent(&proxy, "verify --quick");
    assert_eq!(report["ok"], true, "{report}");
    // Each object of each tag once: the tag document, then HEADs of its files and SHA256SUMS.
    assert!(
        requests <= per_tag * TAGS as u64 + SLACK,
        "verify --quick: {requests} requests for {TAGS} tags of {per_tag} objects"
    );

    let large = push("0.2.0");
    assert!(
        large <= small + 2,
        "a push at {TAGS} tags made {large} requests, at 2 tags {small}"
    );

    let wet: Vec<&str> = gc.iter().copied().chain([target.as_str()]).collect();
    let (report, requests) = counted(&garage, &proxy, &wet);
    let deleted = (TAGS - KEEP + 1) as u64 * per_tag;
    assert_eq!(removed(&report).len(), TAGS - KEEP + 1);
    assert!(
        requests <= TAGS as u64 + deleted + SLACK,
        "static gc: {requests} requests, {deleted} objects deleted"
    );
    let (listing, _) = counted(&garage, &proxy, &["static", "ls", "-t", NAME, &target]);
    let left: Vec<&str> = listing["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t["tag"].as_str())
        .collect();
    let mut expected: Vec<&str> = vec!["0.2.0"];
    expected.extend(all.iter().rev().take(KEEP - 1).map(String::as_str));
    assert_eq!(left, expected);
    assert_eq!(counted(&garage, &proxy, &verify).0["ok"], true);
}

#[test]
fn container_ls_gc_and_verify_read_each_manifest_once_and_a_push_stays_o1() {
    let Some((garage, proxy, target)) = store() else {
        return;
    };
    let work = tempfile::tempdir().expect("temp dir");
    let images = image_dir(work.path(), "scale", &base_layer("scale"), &["amd64"]);
    let images = images.to_str().expect("utf-8 path");
    let push = |tag: &str| {
        counted(
            &garage,
            &proxy,
            &[
                "container",
                "push",
                "-t",
                &format!("{NAME}:{tag}"),
                images,
                &target,
            ],
        )
        .1
    };
    push("0.1.0");
    let small = push("0.0.9");
    let s3 = garage.s3();
    s3.delete("scale", &format!("v2/{NAME}/manifests/0.0.9"));
    let more = history::tags(TAGS - 1);
    history::copy_image_tags(&s3, "scale", NAME, "0.1.0", &more);
    let mut all = vec!["0.1.0".to_string()];
    all.extend(more);

    let (listing, requests) = counted(&garage, &proxy, &["container", "ls", "-t", NAME, &target]);
    concurrent(&proxy, "container ls");
    let tags = listing["tags"].as_array().expect("tags");
    assert_eq!(tags.len(), TAGS);
    assert!(
        tags.iter()
            .all(|t| t["platforms"][0] == "linux/amd64" && t["digest"].is_string())
    );
    assert!(
        requests <= TAGS as u64 + SLACK,
        "container ls: {requests} requests for {TAGS} tags"
    );

    let gc = [
        "container",
        "gc",
        "-t",
        NAME,
        "--keep",
        "10",
        "--grace",
        "0s",
    ];
    let dry: Vec<&str> = gc.iter().copied().chain(["--dry-run", &target]).collect();
    let (report, requests) = counted(&garage, &proxy, &dry);
    concurrent(&proxy, "container gc --dry-run");
    assert_eq!(sorted(removed(&report)), oldest(&all));
    // Each tag's index (its tag object, not again by digest), and each platform manifest
    // once: those of the removed tags are deleted.
    let manifests = 2 * TAGS as u64;
    assert!(
        requests <= manifests + SLACK,
        "container gc --dry-run: {requests} requests for {TAGS} tags"
    );

    let verify = ["verify", "--quick", "-t", NAME, &target];
    let (report, requests) = counted(&garage, &proxy, &verify);
    concurrent(&proxy, "verify --quick");
    assert_eq!(report["ok"], true, "{report}");
    // Each object once: the tag object, the index by digest, the manifest, its config and the
    // lookup of its referrers tag; the layers, shared, once in all.
    assert!(
        requests <= 5 * TAGS as u64 + SLACK,
        "verify --quick: {requests} requests for {TAGS} tags"
    );

    let large = push("0.2.0");
    // The push reads the newest 8 tags' indexes, manifests and configs (what layers the
    // target holds), whatever the history's length: at most 3 × 8 more than at 2 tags.
    assert!(
        large <= small + 24,
        "a push at {TAGS} tags made {large} requests, at 2 tags {small}"
    );

    let wet: Vec<&str> = gc.iter().copied().chain([target.as_str()]).collect();
    let (report, requests) = counted(&garage, &proxy, &wet);
    let gone = (TAGS - KEEP + 1) as u64;
    assert_eq!(removed(&report).len(), gone as usize);
    // Reads as above plus the kept tags again; deletes: per removed tag its tag object,
    // index, manifest and config; then the executor's own (leases, the marker, the heal).
    assert!(
        requests <= manifests + 4 * gone + 2 * SLACK,
        "container gc: {requests} requests"
    );
    let left = s3.list_keys("scale", &format!("v2/{NAME}/manifests/"));
    assert_eq!(left.len(), 3 * KEEP, "{left:?}");
    let (report, _) = counted(&garage, &proxy, &verify);
    assert_eq!(report["ok"], true, "{report}");
}

fn sorted(mut tags: Vec<String>) -> Vec<String> {
    tags.sort();
    tags
}
