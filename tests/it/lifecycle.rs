//! `alba static rm|gc` and `alba container rm|gc` against real stores: Garage (binaries and a
//! static registry read back through its website endpoint with skopeo), a folder (a randomized
//! sequence of pushes, removals and interrupted runs) and Debian's `docker-registry`.

use crate::common;
use crate::common::images;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use common::fixtures::{self, base_layer, image_dir};
use common::{Garage, Registry, alba};
use serde_json::Value;

mod folder;
mod registry;

const NAME: &str = "albatros";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// The keys a `--json` report says were (or would be) deleted.
fn deleted_keys(report: &Value) -> BTreeSet<String> {
    let objects = report["targets"][0]["objects"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    objects
        .iter()
        .filter(|o| o["status"] == "deleted")
        .map(|o| {
            assert!(
                o["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "a deletion without reason: {o}"
            );
            o["key"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Static binaries on Garage
// ---------------------------------------------------------------------------------------

fn static_cmd(garage: &Garage, args: &[&str]) -> common::Alba {
    let mut cmd = alba();
    cmd.envs(garage.envs()).args(args);
    cmd
}

/// The name document's tags, read through the website endpoint.
fn name_tags(garage: &Garage) -> Vec<String> {
    let (status, _, body) = garage.web_get("download", &format!("/df-dist-v1/{NAME}"));
    assert_eq!(status, 200, "GET the name document");
    serde_json::from_value(json(&body)["tags"].clone()).expect("tags is a list of strings")
}

/// Every binary of `tag` comes back through the website endpoint with the pushed bytes.
fn assert_tag_intact(garage: &Garage, tag: &str, expected: &fixtures::Expected) {
    for (system, files) in expected {
        for (file, bytes) in files {
            let path = format!(
                "/df-dist-v1/{NAME}/{tag}/{}/{file}",
                fixtures::platform_string(system)
            );
            let (status, _, body) = garage.web_get("download", &path);
            assert_eq!(status, 200, "GET {path}");
            assert!(&body == bytes, "{path}: bytes differ");
        }
    }
    let (status, _, _) = garage.web_get("download", &format!("/df-dist-v1/{NAME}/{tag}"));
    assert_eq!(status, 200, "tag document of {tag}");
}

/// Keys of the bucket that belong to `tag` (its tag document and binaries).
fn tag_keys(keys: &[String], tag: &str) -> Vec<String> {
    let doc = format!("df-dist-v1/{NAME}/{tag}");
    keys.iter()
        .filter(|k| **k == doc || k.starts_with(&format!("{doc}/")))
        .cloned()
        .collect()
}

/// Five tags on Garage; rm of an unknown tag and dry runs change nothing; `gc --keep 2
/// --keep-releases` keeps releases too; `gc --keep 2` leaves the two newest, intact.
#[test]
fn static_gc_keeps_the_newest_tags_and_releases_on_garage() {
    let Some(garage) = Garage::try_start() else {
        return;
    };
    garage.create_bucket("download");
    let target = garage.s3_url("download");
    let work = tempfile::tempdir().expect("temp dir");
    let df = work.path().join("df");
    let expected = fixtures::static_dir(&df, NAME, &["x86_64-linux", "aarch64-linux"]);
    // Push order is age: oldest first.
    for tag in ["1.0.0", COMMIT, "1.1.0", "feature-x", "1.2.0"] {
        static_cmd(&garage, &["static", "push", "-t", &format!("{NAME}:{tag}")])
            .arg(&df)
            .arg(&target)
            .run_expect(0);
    }
    assert_eq!(
        name_tags(&garage),
        ["1.2.0", "feature-x", "1.1.0", COMMIT, "1.0.0"]
    );
    let before = garage.list_keys("download");

    let out = static_cmd(
        &garage,
        &["static", "rm", "-t", &format!("{NAME}:9.9"), &target],
    )
    .run_expect(1);
    assert!(
        stderr(&out).contains("albatros:9.9 does not exist"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("nothing was deleted"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        garage.list_keys("download"),
        before,
        "rm of an unknown tag deletes nothing"
    );

    let args = [
        "--json",
        "static",
        "gc",
        "-t",
        NAME,
        "--keep",
        "2",
        "--keep-releases",
        "--dry-run",
        &target,
    ];
    let out = static_cmd(&garage, &args).run_expect(0);
    assert_eq!(
        garage.list_keys("download"),
        before,
        "a dry run deletes nothing"
    );
    let would = deleted_keys(&json(&out.stdout));
    assert_eq!(
        would,
        tag_keys(&before, COMMIT).into_iter().collect(),
        "the dry run names the commit tag's objects"
    );
    assert!(
        stderr(&out).contains(&format!("would delete df-dist-v1/{NAME}/{COMMIT}")),
        "{}",
        stderr(&out)
    );

    static_cmd(
        &garage,
        &[
            "static",
            "gc",
            "-t",
            NAME,
            "--keep",
            "2",
            "--keep-releases",
            &target,
        ],
    )
    .run_expect(0);
    assert_eq!(name_tags(&garage), ["1.2.0", "feature-x", "1.1.0", "1.0.0"]);
    assert!(tag_keys(&garage.list_keys("download"), COMMIT).is_empty());

    let out = static_cmd(
        &garage,
        &["--json", "static", "gc", "-t", NAME, "--keep", "2", &target],
    )
    .run_expect(0);
    assert_eq!(
        json(&out.stdout)["targets"][0]["tags"],
        serde_json::json!(["1.1.0", "1.0.0"])
    );
    assert_eq!(name_tags(&garage), ["1.2.0", "feature-x"]);
    let keys = garage.list_keys("download");
    for gone in ["1.0.0", "1.1.0", COMMIT] {
        assert!(
            tag_keys(&keys, gone).is_empty(),
            "{gone} left {:?}",
            tag_keys(&keys, gone)
        );
        let (status, _, _) = garage.web_get("download", &format!("/df-dist-v1/{NAME}/{gone}"));
        assert_eq!(status, 404, "tag document of {gone}");
    }
    for kept in ["1.2.0", "feature-x"] {
        assert_tag_intact(&garage, kept, &expected);
    }
    let files: usize = expected.values().map(|f| f.len()).sum();
    assert_eq!(
        keys.len(),
        1 + 2 * (1 + 1 + 1 + files) + 3,
        "name document, two tag documents with their SHA256SUMS, tag pages and files, the name page, install.sh and the root page: {keys:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Static registries: reading the v2 layout back
// ---------------------------------------------------------------------------------------

/// What a static registry holds for one repository, and what its tags reach.
#[derive(Debug, Default)]
struct Layout {
    listed: Vec<String>,
    /// Tag → digest of its tag object.
    tags: BTreeMap<String, String>,
    manifests: BTreeSet<String>,
    blobs: BTreeSet<String>,
}

impl Layout {
    /// Reads the layout from `keys` (all keys of the store) with `get`.
    fn read(keys: &[String], get: &dyn Fn(&str) -> Option<Vec<u8>>) -> Layout {
        let mut layout = Layout::default();
        let prefix = format!("v2/{NAME}/");
        if let Some(bytes) = get(&format!("{prefix}tags/list")) {
            layout.listed =
                serde_json::from_value(json(&bytes)["tags"].clone()).expect("tags/list");
        }
        for key in keys {
            let Some(rest) = key.strip_prefix(&prefix) else {
                continue;
            };
            if let Some(reference) = rest.strip_prefix("manifests/") {
                if reference.starts_with("sha256:") {
                    layout.manifests.insert(reference.to_string());
                } else {
                    let bytes = get(key).expect("a listed tag object");
                    layout
                        .tags
                        .insert(reference.to_string(), images::sha256_digest(&bytes));
                }
            } else if let Some(digest) = rest.strip_prefix("blobs/") {
                layout.blobs.insert(digest.to_string());
            }
        }
        layout
    }

    /// Walks a tag: every manifest and blob exists, hashes to its digest and has its size.
    /// Returns the manifests and blobs it reaches.
    fn walk(
        &self,
        tag: &str,
        get: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> (BTreeSet<String>, BTreeSet<String>) {
        let (mut manifests, mut blobs) = (BTreeSet::new(), BTreeSet::new());
        let index_digest = &self.tags[tag];
        let mut todo = vec![(index_digest.clone(), None)];
        while let Some((digest, size)) = todo.pop() {
            let bytes = get(&format!("v2/{NAME}/manifests/{digest}"))
                .unwrap_or_else(|| panic!("tag {tag}: manifest {digest} is missing"));
            assert_eq!(
                images::sha256_digest(&bytes),
                digest,
                "tag {tag}: manifest {digest} hashes wrong"
            );
            if let Some(size) = size {
                assert_eq!(bytes.len() as u64, size, "tag {tag}: size of {digest}");
            }
            manifests.insert(digest.clone());
            let doc = json(&bytes);
            for entry in doc["manifests"].as_array().into_iter().flatten() {
                todo.push((
                    entry["digest"].as_str().expect("digest").to_string(),
                    entry["size"].as_u64(),
                ));
            }
            let config = doc.get("config").into_iter();
            for descriptor in config.chain(doc["layers"].as_array().into_iter().flatten()) {
                let digest = descriptor["digest"].as_str().expect("digest").to_string();
                let blob = get(&format!("v2/{NAME}/blobs/{digest}"))
                    .unwrap_or_else(|| panic!("tag {tag}: blob {digest} is missing"));
                assert_eq!(
                    images::sha256_digest(&blob),
                    digest,
                    "tag {tag}: blob {digest} hashes wrong"
                );
                assert_eq!(
                    Some(blob.len() as u64),
                    descriptor["size"].as_u64(),
                    "tag {tag}: size of {digest}"
                );
                blobs.insert(digest);
            }
        }
        (manifests, blobs)
    }

    /// Every listed tag is complete, the list matches the tag objects, and no manifest or
    /// blob is left that no tag reaches.
    fn assert_consistent(&self, get: &dyn Fn(&str) -> Option<Vec<u8>>, context: &str) {
        let objects: Vec<String> = self.tags.keys().cloned().collect();
        assert_eq!(
            self.listed, objects,
            "{context}: tags/list and the tag objects differ"
        );
        let (mut manifests, mut blobs) = (BTreeSet::new(), BTreeSet::new());
        for tag in self.tags.keys() {
            let (m, b) = self.walk(tag, get);
            manifests.extend(m);
            blobs.extend(b);
        }
        assert_eq!(
            self.manifests, manifests,
            "{context}: manifests no tag reaches are left (or reached ones missing)"
        );
        assert_eq!(
            self.blobs, blobs,
            "{context}: blobs no tag reaches are left (or reached ones missing)"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Containers on Garage
// ---------------------------------------------------------------------------------------

/// Three tags sharing a base layer; `gc --keep 1` keeps the base and the newest tag, which
/// skopeo still copies through the website endpoint with verified digests.
#[test]
fn container_gc_on_garage_keeps_shared_layers_and_the_newest_tag_pulls() {
    if !common::skopeo_available() {
        return;
    }
    let Some(garage) = Garage::try_start() else {
        return;
    };
    garage.create_bucket("localhost");
    let target = garage.s3_url("localhost");
    let work = tempfile::tempdir().expect("temp dir");
    let base = base_layer("ID=albatros\n");
    for tag in ["1.0", "1.1", "1.2"] {
        let dir = image_dir(work.path(), tag, &base, &["amd64", "arm64"]);
        static_cmd(
            &garage,
            &["container", "push", "-t", &format!("{NAME}:{tag}")],
        )
        .arg(&dir)
        .arg(&target)
        .run_expect(0);
    }
    let get = |key: &str| {
        let (status, _, body) = garage.s3_get("localhost", key);
        (status == 200).then_some(body)
    };
    let before_keys = garage.list_keys("localhost");
    let before = Layout::read(&before_keys, &get);
    before.assert_consistent(&get, "after the pushes");
    let reach: BTreeMap<&str, (BTreeSet<String>, BTreeSet<String>)> = ["1.0", "1.1", "1.2"]
        .into_iter()
        .map(|t| (t, before.walk(t, &get)))
        .collect();
    let shared: BTreeSet<String> = reach["1.0"]
        .1
        .intersection(&reach["1.2"].1)
        .cloned()
        .collect();
    assert_eq!(
        shared.len(),
        1,
        "exactly the base layer is shared: {shared:?}"
    );

    let out = static_cmd(
        &garage,
        &[
            "--json",
            "container",
            "gc",
            "-t",
            NAME,
            "--keep",
            "1",
            "--dry-run",
            &target,
        ],
    )
    .run_expect(0);
    assert_eq!(
        garage.list_keys("localhost"),
        before_keys,
        "a dry run deletes nothing"
    );
    let would = deleted_keys(&json(&out.stdout));

    let out = static_cmd(
        &garage,
        &[
            "--json",
            "container",
            "gc",
            "-t",
            NAME,
            "--keep",
            "1",
            &target,
        ],
    )
    .run_expect(0);
    assert_eq!(
        deleted_keys(&json(&out.stdout)),
        would,
        "the dry run announced exactly what gc deleted"
    );
    let after = Layout::read(&garage.list_keys("localhost"), &get);
    after.assert_consistent(&get, "after gc");
    assert_eq!(after.listed, ["1.2"]);
    assert!(
        after.blobs.is_superset(&shared),
        "the shared base layer survives"
    );
    for old in ["1.0", "1.1"] {
        let own_blobs: BTreeSet<&String> = reach[old].1.difference(&reach["1.2"].1).collect();
        assert!(!own_blobs.is_empty());
        for blob in own_blobs {
            assert!(
                !after.blobs.contains(blob),
                "{old}'s own blob {blob} is gone"
            );
            assert!(
                would.contains(&format!("v2/{NAME}/blobs/{blob}")),
                "the report names {blob}"
            );
        }
        assert!(
            after.manifests.is_disjoint(&reach[old].0),
            "{old}'s manifests are gone"
        );
    }
    let oci = work.path().join("oci");
    common::skopeo_copy_all(
        &format!(
            "docker://{}",
            garage.web_registry_ref(&format!("{NAME}:1.2"))
        ),
        &oci,
    );
    assert_eq!(
        common::verify_oci_layout(&oci),
        reach["1.2"].0.len() + reach["1.2"].1.len()
    );
}
