//! `container rm` and `gc` on Debian's `docker-registry`.

use super::*;

/// Tags `to` with the exact bytes of `from` (as `crane tag` does, and as `--also-tag` and
/// `--aliases` write them): a separately pushed tag would carry its own version annotation.
fn retag_registry(registry: &Registry, from: &str, to: &str) {
    let (status, _, bytes) = registry.get(&format!("/v2/{NAME}/manifests/{from}"), INDEX);
    assert_eq!(status, 200, "GET tag {from}");
    let url = format!("http://{}/v2/{NAME}/manifests/{to}", registry.host());
    let response = common::http_client()
        .put(&url)
        .header("content-type", INDEX)
        .body(bytes)
        .send()
        .expect("PUT the alias tag");
    assert!(
        response.status().is_success(),
        "PUT {url}: {}",
        response.status()
    );
}

fn registry_tags(registry: &Registry) -> Vec<String> {
    let (status, _, body) = registry.get(&format!("/v2/{NAME}/tags/list"), "application/json");
    assert_eq!(status, 200);
    let mut tags: Vec<String> =
        serde_json::from_value(json(&body)["tags"].clone()).unwrap_or_default();
    tags.sort();
    tags
}

/// `container rm` deletes the tag's manifest on Debian's docker-registry (delete enabled):
/// the tag leaves tags/list, the other tag still resolves; dry runs and unknown tags send no
/// DELETE; a tag sharing its manifest with another is refused; `gc --keep 1` deletes the
/// older tags and keeps `latest`, an alias of the newest.
#[test]
fn container_rm_and_gc_on_a_registry() {
    let Some(registry) = Registry::try_start() else {
        return;
    };
    let work = tempfile::tempdir().expect("temp dir");
    let repo = registry.url(NAME);
    let base = base_layer("ID=albatros\n");
    for tag in ["1.0", "1.1", "1.2"] {
        let dir = image_dir(work.path(), tag, &base, &["amd64"]);
        alba()
            .args(["container", "push", "-t", &format!("{NAME}:{tag}")])
            .arg(&dir)
            .arg(&repo)
            .run_expect(0);
    }
    assert_eq!(registry_tags(&registry), ["1.0", "1.1", "1.2"]);

    let out = alba()
        .args([
            "--json",
            "container",
            "rm",
            "-t",
            &format!("{NAME}:1.0"),
            "--dry-run",
            &repo,
        ])
        .run_expect(0);
    assert_eq!(deleted_keys(&json(&out.stdout)).len(), 1);
    let out = alba()
        .args(["container", "rm", "-t", &format!("{NAME}:0.1"), &repo])
        .run_expect(1);
    assert!(
        stderr(&out).contains("tag 0.1 does not exist"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        registry.count_requests("DELETE", "/manifests/"),
        0,
        "dry runs and unknown tags delete nothing"
    );

    alba()
        .args(["container", "rm", "-t", &format!("{NAME}:1.0"), &repo])
        .run_expect(0);
    assert_eq!(registry_tags(&registry), ["1.1", "1.2"]);
    assert_eq!(
        registry.get(&format!("/v2/{NAME}/manifests/1.1"), INDEX).0,
        200
    );

    // `latest` shares 1.2's manifest: a DELETE by digest would take 1.2 along, and
    // distribution 2.8 cannot delete a tag alone, so rm refuses and deletes nothing.
    retag_registry(&registry, "1.2", "latest");
    let out = alba()
        .args(["container", "rm", "-t", &format!("{NAME}:latest"), &repo])
        .run_expect(1);
    assert!(
        stderr(&out).contains("points at the same image as 1.2"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("nothing was deleted"),
        "{}",
        stderr(&out)
    );
    assert_eq!(registry_tags(&registry), ["1.1", "1.2", "latest"]);

    // gc keeps the newest version and, as its alias, latest.
    alba()
        .args(["container", "gc", "-t", NAME, "--keep", "1", &repo])
        .run_expect(0);
    assert_eq!(registry_tags(&registry), ["1.2", "latest"]);
    assert_eq!(
        registry.get(&format!("/v2/{NAME}/manifests/1.2"), INDEX).0,
        200
    );
}

/// A registry with deletes disabled (distribution's default) answers 405: `rm` exits 1 and
/// says how to enable them.
#[test]
fn container_rm_on_a_registry_without_deletes_says_so() {
    if common::require_program("docker-registry", common::registry::HOW_TO_INSTALL).is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let port = common::free_port();
    let config = dir.path().join("config.yml");
    let text = format!(
        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
        dir.path().join("data").display()
    );
    std::fs::write(&config, text).expect("write the registry config");
    let mut command = std::process::Command::new("docker-registry");
    command.arg("serve").arg(&config);
    let mut service =
        common::process::Service::spawn("docker-registry", command, &dir.path().join("log"));
    service.wait_until("GET /v2/", std::time::Duration::from_secs(30), || {
        common::http_client()
            .get(format!("http://127.0.0.1:{port}/v2/"))
            .send()
            .is_ok_and(|r| r.status().is_success())
    });
    let repo = format!("docker://127.0.0.1:{port}/{NAME}");
    let images = image_dir(dir.path(), "1.0", &base_layer("ID=albatros\n"), &["amd64"]);
    alba()
        .args(["container", "push", "-t", &format!("{NAME}:1.0")])
        .arg(&images)
        .arg(&repo)
        .run_expect(0);
    let out = alba()
        .args(["container", "rm", "-t", &format!("{NAME}:1.0"), &repo])
        .run_expect(1);
    let text = stderr(&out);
    assert!(
        text.contains("refuses to delete manifests") && text.contains("storage.delete.enabled"),
        "{text}"
    );
    let manifest = common::http_client()
        .get(format!("http://127.0.0.1:{port}/v2/{NAME}/manifests/1.0"))
        .header("accept", INDEX)
        .send()
        .expect("GET the manifest");
    assert_eq!(manifest.status().as_u16(), 200, "the tag is still there");
}
