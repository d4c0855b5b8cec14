//! Real pull clients on a released multi-arch image: docker (a private dockerd) and podman pull
//! every platform (linux/amd64, linux/386, linux/arm/v6, linux/arm64) of a four-platform image
//! that alba published to a static registry on Garage (website endpoint), to a folder served by
//! nginx with alba's fragment, and to Debian's docker-registry. Each pulled image's ID must be
//! the config digest the index's platform manifest names, podman must record the index
//! digest, and the arm/v6 config must say `"variant":"v6"` so that podman does not warn that
//! the image "does not match the expected platform" (podman 4.3, Debian 12's, warns for every
//! OCI image with a variant; see [`platform_warning`]).
//!
//! The image is the seed's DIR form (`<os>.<arch>[.<variant>].tar`); each test uses its own
//! image name, so its layers differ from the other tests' and no pull is served by blobs that
//! another source left in the shared docker or podman store.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use common::fixtures::{SYSTEMS, docker_dir, platform_string};
use common::s3::HttpResponse;
use common::{Docker, Garage, Nginx, Podman, Registry, alba, run_ok, sha256_hex};
use serde_json::Value;

const TAG: &str = "0.9";

/// Accept header for manifests and indexes (the registry negotiates on it).
const MANIFEST_TYPES: &str =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";

/// What podman prints when an image's config disagrees with the platform asked for.
const PLATFORM_WARNING: &str = "does not match the expected platform";

/// The pull clients, shared by the tests that run at the same time.
struct Clients {
    docker: Arc<Docker>,
    podman: Arc<Podman>,
}

/// docker and podman, or `None` (SKIP with `ALBA_ALLOW_SKIP=1`) when one is missing.
fn clients() -> Option<Clients> {
    let docker = Docker::shared()?;
    let podman = Podman::shared()?;
    Some(Clients { docker, podman })
}

/// One published image as its source serves it.
struct Published {
    /// `host:port/name:tag`: what the clients pull.
    reference: String,
    index_digest: String,
    /// platform (`linux/arm/v6`) → its manifest's config digest.
    configs: BTreeMap<String, String>,
}

/// Writes the DIR form of `name` (four platforms) and pushes it to `target`; returns the
/// index digest alba reports.
fn push(work: &Path, name: &str, target: &str, envs: &[(String, String)]) -> String {
    let dir = work.join(format!("docker-{name}"));
    docker_dir(&dir, name, &SYSTEMS);
    let output = alba()
        .envs(envs.iter().cloned())
        .args([
            "--json",
            "container",
            "push",
            "-t",
            &format!("{name}:{TAG}"),
        ])
        .arg(&dir)
        .arg(target)
        .run_expect(0);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "--json printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    report["targets"][0]["index_digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no index digest in the report: {report:#}"))
        .to_string()
}

/// Reads the index (checking its digest) and each platform's manifest through `get` (an HTTP
/// GET of a path on the source): platform → config digest.
fn read_configs(
    get: &dyn Fn(&str) -> HttpResponse,
    name: &str,
    index_digest: &str,
) -> BTreeMap<String, String> {
    let index = get_json(get, &format!("/v2/{name}/manifests/{TAG}"), index_digest);
    let mut configs = BTreeMap::new();
    for entry in index["manifests"].as_array().expect("index has manifests") {
        let p = &entry["platform"];
        let mut platform = format!("{}/{}", str_of(&p["os"]), str_of(&p["architecture"]));
        if let Some(variant) = p["variant"].as_str() {
            platform = format!("{platform}/{variant}");
        }
        let digest = str_of(&entry["digest"]);
        let manifest = get_json(get, &format!("/v2/{name}/manifests/{digest}"), &digest);
        configs.insert(platform, str_of(&manifest["config"]["digest"]));
    }
    let mut platforms: Vec<String> = SYSTEMS.iter().map(|s| platform_string(s)).collect();
    platforms.sort();
    assert_eq!(
        configs.keys().cloned().collect::<Vec<_>>(),
        platforms,
        "the index names the four platforms"
    );
    configs
}

/// GETs `path`, checks status 200 and that the body hashes to `digest`, parses it.
fn get_json(get: &dyn Fn(&str) -> HttpResponse, path: &str, digest: &str) -> Value {
    let (status, _, body) = get(path);
    assert_eq!(
        status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        format!("sha256:{}", sha256_hex(&body)),
        digest,
        "GET {path}"
    );
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}"))
}

fn str_of(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value}"))
        .to_string()
}

/// The arm/v6 config as served says `"variant":"v6"` (what podman and containerd compare).
fn check_variant_in_config(
    get: &dyn Fn(&str) -> HttpResponse,
    name: &str,
    published: &Published,
) -> Vec<String> {
    let digest = &published.configs["linux/arm/v6"];
    let config = get_json(get, &format!("/v2/{name}/blobs/{digest}"), digest);
    if config["variant"] == "v6" {
        return Vec::new();
    }
    vec![format!(
        "the linux/arm/v6 config {digest} has variant {} (expected \"v6\"): {config}",
        config["variant"]
    )]
}

/// Formats a failed pull.
fn pull_failure(what: &str, output: &std::process::Output) -> String {
    format!(
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Pulls every platform with docker, checking each image ID; returns failures.
///
/// (Not `RepoDigests`: docker maps `name@<index digest>` to one image only, the first
/// platform pulled.)
fn docker_pulls(docker: &Docker, published: &Published) -> Vec<String> {
    let reference = &published.reference;
    let mut failures = Vec::new();
    for (platform, config) in &published.configs {
        let output = docker.pull(reference, platform);
        if !output.status.success() {
            let what = format!("docker pull --platform {platform} {reference}");
            failures.push(pull_failure(&what, &output));
            continue;
        }
        // Inspect right away: the next platform's pull moves the tag to another image.
        let image = docker.inspect(reference);
        if image["Id"] != config.as_str() {
            failures.push(format!(
                "docker pulled {platform} of {reference} as Id {}; the index names config {config}",
                image["Id"]
            ));
        }
    }
    failures
}

/// Pulls every platform with podman, checking the printed and inspected image ID, the
/// recorded index digest, and that podman prints no platform warning; returns failures.
fn podman_pulls(podman: &Podman, published: &Published) -> Vec<String> {
    let reference = &published.reference;
    let mut failures = Vec::new();
    for (platform, config) in &published.configs {
        let output = podman.pull(reference, platform);
        if !output.status.success() {
            let what = format!("podman pull {platform} {reference}");
            failures.push(pull_failure(&what, &output));
            continue;
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        if let Some(line) = stderr.lines().find(|l| l.contains(PLATFORM_WARNING)) {
            failures.extend(platform_warning(podman, platform, reference, line));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let printed = stdout.lines().last().unwrap_or("").trim();
        let image = podman.inspect(reference);
        let hex = config.trim_start_matches("sha256:");
        if printed != hex || image["Id"] != hex || image["Digest"] != *published.index_digest {
            failures.push(format!(
                "podman pulled {platform} of {reference} as {printed} (Id {}, Digest {}); the \
                 index is {} and names config {config}",
                image["Id"], image["Digest"], published.index_digest
            ));
        }
    }
    failures
}

/// A platform warning is alba's fault, unless the platform has a variant and this podman
/// warns for every OCI image with a variant: podman 4.3 (Debian 12) reads `variant` only
/// from docker-schema2 configs and warns for OCI arm/v6 images whatever their config says
/// (its c/image's OCI inspect has no variant). [`podman_reads_oci_variants`] finds out which
/// podman this is; [`check_variant_in_config`] checks alba's part directly.
fn platform_warning(podman: &Podman, platform: &str, reference: &str, line: &str) -> Vec<String> {
    let has_variant = platform.split('/').count() == 3;
    if !has_variant || podman_reads_oci_variants(podman) {
        return vec![format!("podman pull {platform} {reference} warns: {line}")];
    }
    eprintln!(
        "NOTE: podman warns for {platform} of {reference} as it does for any OCI image with a \
         variant (it ignores an OCI config's variant; the config check stands in): {line}"
    );
    Vec::new()
}

/// Whether podman takes the variant of an OCI image config into account: pulls a control
/// image (not made by alba: skopeo converts a docker-archive whose config says
/// `"variant":"v6"` to OCI) from a registry of its own and looks for the platform warning.
/// Found out once per test binary; without skopeo or a registry (reported) every warning counts.
fn podman_reads_oci_variants(podman: &Podman) -> bool {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    *ANSWER.get_or_init(|| {
        if !common::skopeo_available() {
            return true;
        }
        let Some(registry) = Registry::try_start() else {
            return true;
        };
        let work = tempfile::tempdir().expect("tempdir");
        let archive = work.path().join("control.tar");
        std::fs::write(&archive, control_archive()).expect("write the control archive");
        let reference = format!("{}/control:v6", registry.host());
        run_ok(common::skopeo::skopeo().args([
            "copy",
            "--quiet",
            "--format",
            "oci",
            "--dest-tls-verify=false",
            &format!("docker-archive:{}", archive.display()),
            &format!("docker://{reference}"),
        ]));
        let output = podman.pull(&reference, "linux/arm/v6");
        assert!(
            output.status.success(),
            "{}",
            pull_failure("control pull", &output)
        );
        let warns = String::from_utf8_lossy(&output.stderr).contains(PLATFORM_WARNING);
        eprintln!(
            "podman {} OCI config variants",
            if warns { "ignores" } else { "reads" }
        );
        !warns
    })
}

/// A one-layer linux/arm/v6 docker-archive whose config carries `"variant":"v6"`.
fn control_archive() -> Vec<u8> {
    let layer = tar_of(&[("control", b"podman variant control")]);
    let diff_id = format!("sha256:{}", sha256_hex(&layer));
    let config = serde_json::json!({
        "architecture": "arm", "variant": "v6", "os": "linux", "config": {},
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    });
    let config = serde_json::to_vec(&config).expect("config JSON");
    let config_name = format!("{}.json", sha256_hex(&config));
    let manifest = serde_json::json!([{
        "Config": config_name, "RepoTags": ["control:v6"], "Layers": ["layer/layer.tar"],
    }]);
    let manifest = serde_json::to_vec(&manifest).expect("manifest JSON");
    tar_of(&[
        (config_name.as_str(), config.as_slice()),
        ("layer/layer.tar", layer.as_slice()),
        ("manifest.json", manifest.as_slice()),
    ])
}

/// A tar of regular files (mode 0644, mtime 1).
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut archive = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_mtime(1);
        header.set_size(bytes.len() as u64);
        archive
            .append_data(&mut header, path, *bytes)
            .expect("append to a tar");
    }
    archive.into_inner().expect("finish a tar")
}

/// Reads the index through `get`, then pulls all platforms with both clients; panics listing
/// every failure at once (so one run shows all that is wrong).
fn check_source(
    clients: &Clients,
    get: &dyn Fn(&str) -> HttpResponse,
    host: &str,
    name: &str,
    index_digest: &str,
) {
    let published = Published {
        reference: format!("{host}/{name}:{TAG}"),
        index_digest: index_digest.to_string(),
        configs: read_configs(get, name, index_digest),
    };
    let mut failures = check_variant_in_config(get, name, &published);
    failures.extend(docker_pulls(&clients.docker, &published));
    failures.extend(podman_pulls(&clients.podman, &published));
    assert!(
        failures.is_empty(),
        "{} problem(s) pulling {}:\n- {}",
        failures.len(),
        published.reference,
        failures.join("\n- ")
    );
}

#[test]
fn docker_and_podman_pull_every_platform_from_the_registry() {
    let Some(clients) = clients() else { return };
    let Some(registry) = Registry::try_start() else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let name = "albatros-registry";
    let target = format!("docker://{}/{name}", registry.host());
    let index_digest = push(work.path(), name, &target, &[]);
    let get = |path: &str| registry.get(path, MANIFEST_TYPES);
    check_source(&clients, &get, &registry.host(), name, &index_digest);
}

#[test]
fn docker_and_podman_pull_every_platform_from_a_folder_served_by_nginx() {
    let Some(clients) = clients() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let name = "albatros-folder";
    let out = work.path().join("registry");
    let index_digest = push(work.path(), name, &format!("file:{}", out.display()), &[]);
    let Some(nginx) = Nginx::try_start(&out.join(".alba/nginx.conf")) else {
        return;
    };
    let get = |path: &str| nginx.get(path);
    let host = format!("127.0.0.1:{}", nginx.port);
    check_source(&clients, &get, &host, name, &index_digest);
}

#[test]
fn docker_and_podman_pull_every_platform_from_garage_website() {
    let Some(clients) = clients() else { return };
    let Some(garage) = Garage::try_start() else {
        return;
    };
    // Garage's website picks the bucket from the Host header: `localhost:<port>` is the
    // bucket `localhost`, a name every client sends for `localhost:<port>/name:tag`.
    garage.create_bucket("localhost");
    let work = tempfile::tempdir().expect("tempdir");
    let name = "albatros-garage";
    let index_digest = push(
        work.path(),
        name,
        &garage.s3_url("localhost"),
        &garage.envs(),
    );
    let get = |path: &str| garage.web_get("localhost", path);
    let host = format!("localhost:{}", garage.web_port);
    check_source(&clients, &get, &host, name, &index_digest);
}
