//! Races: `gc` beside running pushes, pushes SIGKILLed at random moments, and two releases
//! at once to one bucket, all through the fault proxy.

use super::*;

// ---------------------------------------------------------------------------------------
// gc beside a running push
// ---------------------------------------------------------------------------------------

/// A spawned alba with its output captured (its temp cache lives as long as this value).
struct Running {
    child: Child,
    _alba: common::Alba,
}

fn spawn(mut cmd: common::Alba) -> Running {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start alba");
    Running { child, _alba: cmd }
}

impl Running {
    fn wait(self) -> Output {
        self.child.wait_with_output().expect("wait for alba")
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one interleaving test pushes to and checks.
#[derive(Clone, Copy)]
enum Layout {
    StaticRegistry,
    DfDist,
}

impl Layout {
    fn problems(self, garage: &Garage, bucket: &str) -> Vec<String> {
        match self {
            Layout::StaticRegistry => static_registry_problems(garage, bucket),
            Layout::DfDist => df_dist_problems(garage, bucket),
        }
    }

    fn has_tag(self, garage: &Garage, bucket: &str, tag: &str) -> bool {
        let key = match self {
            Layout::StaticRegistry => format!("v2/{NAME}/manifests/{tag}"),
            Layout::DfDist => format!("df-dist-v1/{NAME}/{tag}"),
        };
        get(garage, bucket, &key).is_some()
    }

    fn kind(self) -> &'static str {
        match self {
            Layout::StaticRegistry => "container",
            Layout::DfDist => "static",
        }
    }

    /// The DIR of push number `step`: images share one of three base layers (so a push
    /// reuses blobs a gc may be removing with an old tag); binaries differ per step.
    fn input(self, work: &Path, step: usize, rng: &mut Lcg) -> PathBuf {
        match self {
            Layout::StaticRegistry => {
                let base = base_layer(&format!("ID=base{}\n", rng.below(3)));
                image_dir(work, &format!("{step}"), &base, &["amd64", "arm64"])
            }
            Layout::DfDist => {
                let dir = work.join(format!("df-{step}"));
                for arch in ["amd64", "arm64"] {
                    let folder = dir.join("linux").join(arch);
                    std::fs::create_dir_all(&folder).expect("df dir");
                    let bytes = fixtures::fake_binary(NAME, arch, &format!("{step}"));
                    std::fs::write(folder.join(NAME), bytes).expect("binary");
                }
                dir
            }
        }
    }
}

/// [`alba_on`], or `ALBA_FAULT_BIN` with its default retries (to show an older alba fails here).
fn alba_or_other(garage: &Garage) -> common::Alba {
    let Some(bin) = std::env::var_os("ALBA_FAULT_BIN") else {
        return alba_on(garage);
    };
    let mut cmd = alba();
    *cmd = std::process::Command::new(bin);
    cmd.envs(garage.envs());
    cmd
}

/// Seeded interleavings of a push and a `gc --keep N --grace 0s` of the same name, writes
/// slowed to 0.1 s each: after each step every listed tag and tag object is complete, and the
/// push (which exits 0) left its tag.
fn push_beside_gc(layout: Layout, base_seed: u64, steps: usize) {
    let seed = seed(base_seed);
    let Some(garage) = Garage::try_start() else {
        return;
    };
    let bucket = "race";
    garage.create_bucket(bucket);
    let proxy = FaultProxy::start(garage.s3_port, 0.0, seed);
    proxy.set_write_latency(Duration::from_millis(100));
    let target = via(&proxy, bucket);
    let work = tempfile::tempdir().expect("temp dir");
    let mut rng = Lcg(seed);
    let kind = layout.kind();
    let (mut leased, mut waited) = (0, 0);
    for step in 0..steps {
        let tag = format!("0.{}", step + 1);
        let dir = layout.input(work.path(), step, &mut rng);
        let mut push = alba_or_other(&garage);
        push.args([kind, "push", "-t", &format!("{NAME}:{tag}")])
            .arg(&dir)
            .arg(&target);
        let push = spawn(push);
        std::thread::sleep(Duration::from_millis(rng.below(1500) as u64));
        let keep = (1 + rng.below(2)).to_string();
        let mut gc = alba_or_other(&garage);
        gc.args([kind, "gc", "-t", NAME, "--keep", &keep]);
        if std::env::var_os("ALBA_FAULT_BIN").is_none() {
            gc.args(["--grace", "0s"]);
        }
        gc.arg(&target);
        let gc = spawn(gc).wait();
        let push = push.wait();
        let context = format!("step {step}: push {tag} beside gc --keep {keep}");
        assert!(
            push.status.success(),
            "{context}: the push failed\n{}",
            text(&push)
        );
        assert!(gc.status.success(), "{context}: gc failed\n{}", text(&gc));
        let problems = layout.problems(&garage, bucket);
        assert!(
            problems.is_empty(),
            "{context}: {problems:#?}\n--- gc\n{}\n--- push\n{}",
            text(&gc),
            text(&push)
        );
        leased += String::from_utf8_lossy(&gc.stderr).contains("in flight") as usize;
        waited += String::from_utf8_lossy(&push.stderr).contains("a gc is running") as usize;
        assert!(
            layout.has_tag(&garage, bucket, &tag),
            "{context}: the push exited 0 but {tag} is gone\n{}",
            text(&gc)
        );
    }
    // The interleavings did overlap: gc saw leases, pushes waited for gc.
    eprintln!(
        "{kind}: {steps} steps, gc kept leased content in {leased}, the push waited for gc in {waited}"
    );
    assert!(leased + waited > 0, "no step overlapped");
}

#[test]
fn gc_beside_image_pushes_on_a_garage_static_registry() {
    push_beside_gc(Layout::StaticRegistry, 0x6c_0001, 20);
}

#[test]
fn gc_beside_static_pushes_on_df_dist() {
    push_beside_gc(Layout::DfDist, 0x6c_0002, 20);
}

/// A re-push of a tag that a running gc removes: the push plans with everything present,
/// finds the gc's marker before its committing phase and waits; meanwhile the gc (played by
/// the test, deleting what `gc` deletes, in gc's order, through the real S3 API) removes the
/// tag. Once the marker goes, the push must write back the tag's documents, objects and list
/// entry it had planned as present, not report success over a missing tag.
#[test]
fn a_re_push_of_a_tag_a_running_gc_removes_ends_complete() {
    let Some(garage) = Garage::try_start() else {
        return;
    };
    let bucket = "repush";
    garage.create_bucket(bucket);
    let target = garage.s3_url(bucket);
    let work = tempfile::tempdir().expect("temp dir");
    let mut rng = Lcg(seed(0x7e_0001));
    for layout in [Layout::DfDist, Layout::StaticRegistry] {
        let dir = layout.input(work.path(), 1, &mut rng);
        let push = |cmd: &mut common::Alba| {
            cmd.args([layout.kind(), "push", "-t", &format!("{NAME}:1.0")])
                .arg(&dir)
                .arg(&target);
        };
        let mut first = alba_on(&garage);
        push(&mut first);
        first.run_expect(0);
        let before: BTreeSet<String> = garage.list_keys(bucket).into_iter().collect();
        let marker = ".alba/gc/gc-test.json";
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let doc = serde_json::json!({
            "id": "gc-test", "kind": "gc", "name": NAME, "created": now, "expires": now + 60,
            "holder": "the test",
        });
        garage.s3_put(
            bucket,
            marker,
            doc.to_string().as_bytes(),
            "application/json",
        );
        let mut again = alba_or_other(&garage);
        push(&mut again);
        let running = spawn(again);
        // The push is waiting once its lease is there and it had time to plan (a few HEADs).
        let waiting = Instant::now();
        while !garage
            .list_keys(bucket)
            .iter()
            .any(|k| k.starts_with(".alba/leases/"))
        {
            assert!(
                waiting.elapsed() < Duration::from_secs(60),
                "no lease appeared"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(2000));
        remove_tag_as_gc_would(&garage, bucket, layout);
        let s3 = garage.s3();
        s3.delete(bucket, marker);
        let output = running.wait();
        let context = format!("{} re-push of 1.0 beside a gc removing it", layout.kind());
        assert!(output.status.success(), "{context}: {}", text(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("a gc is running"),
            "{context}: the push did not wait for the gc\n{}",
            text(&output)
        );
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("vanished during the push"),
            "{context}: the push did not see what the gc took\n{}",
            text(&output)
        );
        assert!(
            layout.has_tag(&garage, bucket, "1.0"),
            "{context}: 1.0 is gone"
        );
        let problems = layout.problems(&garage, bucket);
        assert!(
            problems.is_empty(),
            "{context}: {problems:#?}\n{}",
            text(&output)
        );
        let after: BTreeSet<String> = garage.list_keys(bucket).into_iter().collect();
        assert_eq!(
            after, before,
            "{context}: every object is back, nothing else"
        );
    }
}

/// Deletes tag 1.0 of `layout` the way gc does: the list first (rewritten without it), then
/// the tag's own objects, then what only it referenced.
fn remove_tag_as_gc_would(garage: &Garage, bucket: &str, layout: Layout) {
    let s3 = garage.s3();
    let keys = garage.list_keys(bucket);
    let (list, list_body, tag_prefix) = match layout {
        Layout::DfDist => (
            format!("df-dist-v1/{NAME}"),
            serde_json::json!({"name": NAME, "tags": []}),
            format!("df-dist-v1/{NAME}/1.0"),
        ),
        Layout::StaticRegistry => (
            format!("v2/{NAME}/tags/list"),
            serde_json::json!({"name": NAME, "tags": []}),
            format!("v2/{NAME}/manifests/"),
        ),
    };
    garage.s3_put(
        bucket,
        &list,
        list_body.to_string().as_bytes(),
        "application/json",
    );
    let doomed = keys.iter().filter(|k| match layout {
        Layout::DfDist => k.starts_with(&tag_prefix),
        // The tag, then the manifests by digest, then the blobs: everything of the image.
        Layout::StaticRegistry => {
            k.starts_with(&tag_prefix) || k.starts_with(&format!("v2/{NAME}/blobs/"))
        }
    });
    let mut doomed: Vec<&String> = doomed.collect();
    // Tag objects and documents first, content after (gc's order).
    doomed.sort_by_key(|k| (k.contains("sha256:"), k.len()));
    for key in doomed {
        s3.delete(bucket, key);
    }
}

// ---------------------------------------------------------------------------------------
// SIGKILL
// ---------------------------------------------------------------------------------------

/// Pushes killed at random moments (writes slowed so a push takes about a second): no listed
/// tag ever lacks content, and the re-run completes.
#[test]
fn pushes_killed_at_random_moments_leave_no_broken_tag() {
    let Some(garage) = Garage::try_start() else {
        return;
    };
    let bucket = "killed";
    garage.create_bucket(bucket);
    let proxy = FaultProxy::start(garage.s3_port, 0.0, 0x9);
    proxy.set_write_latency(Duration::from_millis(60));
    let target = via(&proxy, bucket);
    let work = tempfile::tempdir().expect("temp dir");
    let mut rng = Lcg(seed(0x4b11));
    for round in 0..20 {
        let layout = if round % 2 == 0 {
            Layout::StaticRegistry
        } else {
            Layout::DfDist
        };
        let tag = format!("2.{round}");
        let dir = layout.input(work.path(), 100 + round, &mut rng);
        let push = |cmd: &mut common::Alba| {
            cmd.args([layout.kind(), "push", "-t", &format!("{NAME}:{tag}")])
                .arg(&dir)
                .arg(&target);
        };
        let mut first = alba_on(&garage);
        push(&mut first);
        let running = spawn(first);
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(rng.below(1200) as u64));
        running.kill();
        let context = format!(
            "round {round}: {} push of {tag} killed after {:?}",
            layout.kind(),
            started.elapsed()
        );
        for l in [Layout::StaticRegistry, Layout::DfDist] {
            let problems = l.problems(&garage, bucket);
            assert!(problems.is_empty(), "{context}: {problems:#?}");
        }
        let mut again = alba_on(&garage);
        push(&mut again);
        again.run_expect(0);
        assert!(
            layout.has_tag(&garage, bucket, &tag),
            "{context}: the re-run left no tag"
        );
        assert!(
            layout.problems(&garage, bucket).is_empty(),
            "{context}: after the re-run"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Two releases at once
// ---------------------------------------------------------------------------------------

/// Two static pushes and two image pushes of different tags at once to one bucket, through
/// 20 % faults and slowed writes: all four tags are listed afterwards, complete.
#[test]
fn two_releases_at_once_to_one_bucket_are_both_listed_under_faults() {
    let Some(garage) = Garage::try_start() else {
        return;
    };
    let bucket = "both";
    garage.create_bucket(bucket);
    let proxy = FaultProxy::start(garage.s3_port, 0.2, 0x2);
    proxy.set_write_latency(Duration::from_millis(50));
    let target = via(&proxy, bucket);
    let work = tempfile::tempdir().expect("temp dir");
    let mut rng = Lcg(0x22);
    for round in 0..3 {
        let (a, b) = (format!("3.{round}.0"), format!("3.{round}.1"));
        let mut running = Vec::new();
        for layout in [Layout::StaticRegistry, Layout::DfDist] {
            for tag in [&a, &b] {
                let dir = layout.input(work.path(), 200 + running.len() + 10 * round, &mut rng);
                let mut cmd = alba_on(&garage);
                cmd.args([layout.kind(), "push", "-t", &format!("{NAME}:{tag}")])
                    .arg(&dir)
                    .arg(&target);
                running.push(spawn(cmd));
            }
        }
        for r in running {
            let out = r.wait();
            assert!(
                out.status.success(),
                "round {round}: ({})\n{}",
                proxy.summary(),
                text(&out)
            );
        }
        let images = listed_image_tags(&garage, bucket);
        let binaries = listed_static_tags(&garage, bucket);
        for tag in [&a, &b] {
            assert!(
                images.contains(tag),
                "round {round}: tags/list {images:?} lacks {tag}"
            );
            assert!(
                binaries.contains(tag),
                "round {round}: name document {binaries:?} lacks {tag}"
            );
        }
        assert!(static_registry_problems(&garage, bucket).is_empty());
        assert!(df_dist_problems(&garage, bucket).is_empty());
    }
}
