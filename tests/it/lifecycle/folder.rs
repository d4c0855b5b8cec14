//! Randomized: a folder target (a sequence of pushes, removals and interrupted runs).

use super::*;
use crate::common::Lcg;

/// The folder target's keys, as a bucket would list them.
fn folder_keys(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, keys: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, root, keys);
            } else if let Ok(rel) = path.strip_prefix(root) {
                keys.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut keys = Vec::new();
    walk(&root.join("v2"), root, &mut keys);
    keys.sort();
    keys
}

/// Random pushes of tags with overlapping layers, random rm and gc, and interrupted runs
/// (a tag object deleted behind alba's back); after every step every listed tag is complete,
/// holds what was pushed under it, and nothing unreferenced is left.
#[test]
fn random_pushes_removals_and_interruptions_keep_every_listed_tag_complete() {
    let work = tempfile::tempdir().expect("temp dir");
    let root = work.path().join("registry");
    let target = format!("file:{}", root.display());
    let get = |key: &str| std::fs::read(root.join(key)).ok();
    let layers: Vec<Vec<u8>> = (0..4)
        .map(|i| base_layer(&format!("ID=base{i}\n")))
        .collect();
    let mut rng = Lcg(0x5eed_a1ba);
    // What each tag must point at: the index digest its push reported.
    let mut model: BTreeMap<String, String> = BTreeMap::new();
    let mut version = 0;
    for step in 0..40 {
        let tags: Vec<String> = model.keys().cloned().collect();
        let op = rng.below(20);
        let context = match op {
            0..=9 => {
                let tag = if rng.below(6) == 0 {
                    "latest".to_string()
                } else {
                    version += 1;
                    format!("0.{version}")
                };
                let platforms: &[&str] = if rng.below(2) == 0 {
                    &["amd64"]
                } else {
                    &["amd64", "arm64"]
                };
                let base = &layers[rng.below(layers.len())];
                let dir = image_dir(work.path(), &format!("{step}"), base, platforms);
                let out = alba()
                    .args([
                        "--json",
                        "container",
                        "push",
                        "-t",
                        &format!("{NAME}:{tag}"),
                    ])
                    .arg(&dir)
                    .arg(&target)
                    .run_expect(0);
                let digest = json(&out.stdout)["targets"][0]["index_digest"]
                    .as_str()
                    .expect("index digest")
                    .to_string();
                model.insert(tag.clone(), digest);
                format!("step {step}: push {tag}")
            }
            10..=12 if !tags.is_empty() => {
                let tag = &tags[rng.below(tags.len())];
                alba()
                    .args(["container", "rm", "-t", &format!("{NAME}:{tag}"), &target])
                    .run_expect(0);
                model.remove(tag);
                format!("step {step}: rm {tag}")
            }
            10..=12 => {
                let before = folder_keys(&root);
                alba()
                    .args(["container", "rm", "-t", &format!("{NAME}:0.999"), &target])
                    .run_expect(1);
                assert_eq!(
                    folder_keys(&root),
                    before,
                    "rm of an unknown tag deletes nothing"
                );
                format!("step {step}: rm of an unknown tag")
            }
            13..=16 => {
                let keep = 1 + rng.below(3);
                gc(&target, keep, &mut model);
                format!("step {step}: gc --keep {keep}")
            }
            17 if !tags.is_empty() => {
                // A run that died after untagging: the tag object is gone, its content stays.
                let tag = &tags[rng.below(tags.len())];
                std::fs::remove_file(root.join(format!("v2/{NAME}/manifests/{tag}")))
                    .expect("remove a tag object");
                model.remove(tag);
                gc(&target, 1000, &mut model);
                format!("step {step}: {tag} half removed, then gc finishes the job")
            }
            _ if !tags.is_empty() => {
                // A run that died right after rewriting tags/list: the tag object is the truth,
                // so the tag (complete) comes back into the list.
                let tag = &tags[rng.below(tags.len())];
                let rest: Vec<&String> = tags.iter().filter(|t| *t != tag).collect();
                let list = serde_json::json!({ "name": NAME, "tags": rest });
                std::fs::write(root.join(format!("v2/{NAME}/tags/list")), list.to_string())
                    .expect("rewrite tags/list");
                gc(&target, 1000, &mut model);
                format!("step {step}: {tag} unlisted, then gc lists it again")
            }
            _ => format!("step {step}: nothing"),
        };
        eprintln!("{context}");
        let layout = Layout::read(&folder_keys(&root), &get);
        layout.assert_consistent(&get, &context);
        assert_eq!(
            layout.tags, model,
            "{context}: tags point at what was pushed"
        );
    }
}

/// Runs `container gc --keep N --grace 0s` (checking its dry run first) and drops the removed
/// tags from the model. No grace period: what interrupted runs left goes at once.
fn gc(target: &str, keep: usize, model: &mut BTreeMap<String, String>) {
    let root = PathBuf::from(target.trim_start_matches("file:"));
    let before = folder_keys(&root);
    let keep = keep.to_string();
    alba()
        .args([
            "container",
            "gc",
            "-t",
            NAME,
            "--keep",
            &keep,
            "--grace",
            "0s",
            "--dry-run",
            target,
        ])
        .run_expect(0);
    assert_eq!(folder_keys(&root), before, "a dry run deletes nothing");
    let out = alba()
        .args([
            "--json",
            "container",
            "gc",
            "-t",
            NAME,
            "--keep",
            &keep,
            "--grace",
            "0s",
            target,
        ])
        .run_expect(0);
    let removed: Vec<String> =
        serde_json::from_value(json(&out.stdout)["targets"][0]["tags"].clone())
            .expect("removed tags");
    for tag in removed {
        model.remove(&tag);
    }
}

/// 1.0, 1.1 and 1.2 built from one commit share their layers and config, with the aliases
/// `latest` and `stable` of 1.2: `gc --keep 1` keeps 1.2 and the aliases, removes 1.0 and 1.1,
/// and its dry run says why each tag stays or goes.
#[test]
fn container_gc_counts_versions_of_one_image_toward_keep() {
    let work = tempfile::tempdir().expect("temp dir");
    let root = work.path().join("registry");
    let target = format!("file:{}", root.display());
    let dir = image_dir(
        work.path(),
        "one",
        &base_layer("one commit"),
        &["amd64", "arm64"],
    );
    for tag in ["1.0", "1.1", "1.2"] {
        alba()
            .args(["container", "push", "-t", &format!("{NAME}:{tag}")])
            .arg(&dir)
            .arg(&target)
            .run_expect(0);
    }
    // Aliases share the tag object's bytes (as `--aliases` writes them).
    let manifests = root.join(format!("v2/{NAME}/manifests"));
    for alias in ["latest", "stable"] {
        std::fs::copy(manifests.join("1.2"), manifests.join(alias)).expect("alias tag");
    }
    let dry = alba()
        .args([
            "container",
            "gc",
            "-t",
            NAME,
            "--keep",
            "1",
            "--dry-run",
            &target,
        ])
        .run_expect(0);
    let said = stderr(&dry);
    for needle in [
        "keep tag 1.2: among the 1 newest",
        "keep tag latest: not a version",
        "keep tag stable: not a version",
        "tag 1.1: a tag older than the 1 newest",
        "tag 1.0: a tag older than the 1 newest",
    ] {
        assert!(said.contains(needle), "dry run lacks {needle:?}: {said}");
    }
    alba()
        .args(["container", "gc", "-t", NAME, "--keep", "1", &target])
        .run_expect(0);
    let get = |key: &str| std::fs::read(root.join(key)).ok();
    let layout = Layout::read(&folder_keys(&root), &get);
    layout.assert_consistent(&get, "after gc --keep 1");
    let kept: Vec<&str> = layout.tags.keys().map(String::as_str).collect();
    assert_eq!(kept, ["1.2", "latest", "stable"]);
}
