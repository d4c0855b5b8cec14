//! What a reader finds: the checks run straight against Garage, not through the fault proxy.

use super::*;

pub(crate) fn get(garage: &Garage, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let (status, _, body) = garage.s3_get(bucket, key);
    (status == 200).then_some(body)
}

/// Problems of a static registry: a listed tag or tag object whose index, manifests, config or
/// layers are missing (or differ from their descriptors). Empty when every tag is complete.
pub(crate) fn static_registry_problems(garage: &Garage, bucket: &str) -> Vec<String> {
    let keys: BTreeSet<String> = garage.list_keys(bucket).into_iter().collect();
    let prefix = format!("v2/{NAME}/manifests/");
    let mut tags: BTreeSet<String> = keys
        .iter()
        .filter_map(|k| k.strip_prefix(&prefix))
        .filter(|r| !r.starts_with("sha256:") && !r.contains('/'))
        .map(str::to_string)
        .collect();
    if let Some(list) = get(garage, bucket, &format!("v2/{NAME}/tags/list")) {
        let listed: Vec<String> =
            serde_json::from_value(json(&list)["tags"].clone()).expect("tags/list has tags");
        tags.extend(listed);
    }
    let mut problems = Vec::new();
    for tag in &tags {
        let Some(index) = get(garage, bucket, &format!("{prefix}{tag}")) else {
            problems.push(format!("tag {tag} is listed but has no tag object"));
            continue;
        };
        check_descriptors(garage, bucket, &json(&index), tag, &mut problems);
    }
    problems
}

fn check_descriptors(
    garage: &Garage,
    bucket: &str,
    doc: &Value,
    tag: &str,
    problems: &mut Vec<String>,
) {
    let manifests = doc["manifests"].as_array().into_iter().flatten();
    for m in manifests {
        let digest = m["digest"].as_str().unwrap_or_default();
        match get(garage, bucket, &format!("v2/{NAME}/manifests/{digest}")) {
            Some(bytes) if common::sha256_hex(&bytes) == digest[7..] => {
                check_descriptors(garage, bucket, &json(&bytes), tag, problems)
            }
            Some(_) => problems.push(format!("{tag}: manifest {digest} has other bytes")),
            None => problems.push(format!("{tag}: manifest {digest} is missing")),
        }
    }
    let blobs = doc
        .get("config")
        .into_iter()
        .chain(doc["layers"].as_array().into_iter().flatten());
    for b in blobs {
        let digest = b["digest"].as_str().unwrap_or_default();
        match get(garage, bucket, &format!("v2/{NAME}/blobs/{digest}")) {
            Some(bytes) if common::sha256_hex(&bytes) == digest[7..] => {}
            Some(_) => problems.push(format!("{tag}: blob {digest} has other bytes")),
            None => problems.push(format!("{tag}: blob {digest} is missing")),
        }
    }
}

/// Problems of df-dist-v1: a listed tag or tag document whose binaries are missing or differ.
pub(crate) fn df_dist_problems(garage: &Garage, bucket: &str) -> Vec<String> {
    let keys = garage.list_keys(bucket);
    let prefix = format!("df-dist-v1/{NAME}/");
    let mut tags: BTreeSet<String> = keys
        .iter()
        .filter_map(|k| k.strip_prefix(&prefix))
        .filter(|r| !r.contains('/'))
        // The download page and install.sh sit beside the tag documents.
        .filter(|r| !["index.html", "install.sh"].contains(r))
        .map(str::to_string)
        .collect();
    if let Some(doc) = get(garage, bucket, &format!("df-dist-v1/{NAME}")) {
        let listed: Vec<String> =
            serde_json::from_value(json(&doc)["tags"].clone()).expect("name document tags");
        tags.extend(listed);
    }
    let mut problems = Vec::new();
    for tag in &tags {
        let Some(doc) = get(garage, bucket, &format!("{prefix}{tag}")) else {
            problems.push(format!("tag {tag} is listed but has no tag document"));
            continue;
        };
        for flavor in json(&doc)["flavors"].as_array().into_iter().flatten() {
            let p = &flavor["platform"];
            let dir = format!(
                "{prefix}{tag}/{}/{}",
                p["os"].as_str().unwrap_or("?"),
                p["architecture"].as_str().unwrap_or("?")
            );
            for r in flavor["resources"].as_array().into_iter().flatten() {
                let key = format!("{dir}/{}", r["path"].as_str().unwrap_or("?"));
                match get(garage, bucket, &key) {
                    Some(bytes)
                        if Some(common::sha256_hex(&bytes).as_str()) == r["sha256"].as_str() => {}
                    Some(_) => problems.push(format!("{tag}: {key} has other bytes")),
                    None => problems.push(format!("{tag}: {key} is missing")),
                }
            }
        }
    }
    problems
}

/// The tags of a static registry's `tags/list`.
pub(crate) fn listed_image_tags(garage: &Garage, bucket: &str) -> Vec<String> {
    let list = get(garage, bucket, &format!("v2/{NAME}/tags/list")).expect("tags/list");
    serde_json::from_value(json(&list)["tags"].clone()).expect("tags")
}

/// The tags of df-dist-v1's name document.
pub(crate) fn listed_static_tags(garage: &Garage, bucket: &str) -> Vec<String> {
    let doc = get(garage, bucket, &format!("df-dist-v1/{NAME}")).expect("name document");
    serde_json::from_value(json(&doc)["tags"].clone()).expect("tags")
}

/// Pulls `reference` with `skopeo copy --all` and checks every digest; returns the index digest.
pub(crate) fn pull_all(reference: &str, work: &Path, label: &str) -> String {
    let oci = work.join(format!("oci-{label}"));
    let _ = std::fs::remove_dir_all(&oci);
    common::skopeo_copy_all(reference, &oci);
    assert!(common::verify_oci_layout(&oci) > 0);
    let index = json(&std::fs::read(oci.join("index.json")).expect("index.json"));
    index["manifests"][0]["digest"]
        .as_str()
        .expect("a digest")
        .to_string()
}
