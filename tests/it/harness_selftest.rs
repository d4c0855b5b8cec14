//! Proves the test harness in `tests/common` works: every real service starts, answers,
//! and the fixture flakes build with Debian's Nix for the four release systems.

use crate::common;
use crate::nix_tests;

use common::fixtures::{self, FlakeFixture, SYSTEMS};
use common::{Containerd, Garage, Nginx, NixVersion, Registry};
use std::collections::BTreeMap;
use std::path::Path;

/// The SigV4 date helper turns day counts into calendar dates.
#[test]
fn sigv4_dates_are_civil() {
    assert_eq!(common::s3::civil_from_days(0), (1970, 1, 1));
    assert_eq!(common::s3::civil_from_days(20_513), (2026, 3, 1));
    assert_eq!(common::s3::civil_from_days(-1), (1969, 12, 31));
}

/// The `alba` command runs with a fresh cache dir and the Nix settings.
#[test]
fn alba_command_is_isolated() {
    let mut alba = common::alba();
    assert!(alba.cache_home().is_dir(), "XDG_CACHE_HOME exists");
    let envs: BTreeMap<_, _> = alba
        .get_envs()
        .map(|(k, v)| (k.to_os_string(), v.map(|v| v.to_os_string())))
        .collect();
    assert!(envs.contains_key(std::ffi::OsStr::new("NIX_CONFIG")));
    assert_eq!(
        envs[std::ffi::OsStr::new("AWS_ACCESS_KEY_ID")],
        None,
        "removed"
    );
    alba.arg("--help").run_expect(0);
}

/// Garage starts; a bucket is empty, misses are 404, a `localhost` bucket serves `/v2/`.
#[test]
fn garage_serves_buckets_over_s3_and_website() {
    let Some(garage) = Garage::try_start() else {
        return;
    };
    garage.create_bucket("demo");
    garage.create_bucket("localhost");
    assert!(garage.list_keys("demo").is_empty(), "a new bucket is empty");
    let (status, _, _) = garage.web_get("demo", "/missing");
    assert_eq!(status, 404, "a missing key is 404 on the website endpoint");

    garage.s3_put("localhost", "v2/index.html", b"{}", "application/json");
    let blob = "v2/demo/blobs/sha256:0123";
    garage.s3_put("localhost", blob, b"blob bytes", "application/octet-stream");
    let host = format!("localhost:{}", garage.web_port);
    let (status, headers, body) = garage.web_get(&host, "/v2/");
    assert_eq!(
        (status, body.as_slice()),
        (200, b"{}".as_slice()),
        "GET /v2/ via index.html"
    );
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(garage.web_get(&host, &format!("/{blob}")).2, b"blob bytes");
    assert_eq!(
        garage.list_keys("localhost"),
        vec![blob.to_string(), "v2/index.html".into()]
    );
    assert_eq!(garage.s3_get("localhost", blob).2, b"blob bytes");
    assert_eq!(
        garage.s3_url("demo"),
        format!(
            "s3://demo?endpoint=http://127.0.0.1:{}&region=garage&s3ForcePathStyle=true",
            garage.s3_port
        )
    );
    let envs: BTreeMap<String, String> = garage.envs().into_iter().collect();
    assert_eq!(envs["AWS_ACCESS_KEY_ID"], garage.key_id);
}

/// Garage's website endpoint is a registry for skopeo once the static layout is in a bucket.
#[test]
fn garage_website_is_a_static_registry_for_skopeo() {
    if !common::skopeo_available() {
        return;
    }
    let Some(garage) = Garage::try_start() else {
        return;
    };
    garage.create_bucket("localhost");
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let media = "application/vnd.oci.image.manifest.v1+json";
    garage.s3_put("localhost", "v2/index.html", b"{}", "application/json");
    garage.s3_put("localhost", "v2/demo/manifests/1.0", manifest, media);
    let reference = format!("docker://{}", garage.web_registry_ref("demo:1.0"));
    assert_eq!(
        common::skopeo_inspect_raw(&reference, false),
        manifest.to_vec()
    );
}

/// The registry answers `/v2/`, with and without htpasswd auth.
#[test]
fn registry_answers_v2_with_and_without_auth() {
    let Some(open) = Registry::try_start() else {
        return;
    };
    assert_eq!(open.get("/v2/", "*/*").0, 200);
    assert!(open.url("demo:1").starts_with("docker://127.0.0.1:"));
    assert!(
        open.count_requests("GET", "/v2/") >= 2,
        "readiness probe + our GET are logged"
    );

    let Some(mut locked) = Registry::try_start_with_auth("alice", "s3cret") else {
        return;
    };
    assert_eq!(locked.get("/v2/", "*/*").0, 200, "with credentials");
    locked.credentials = None;
    assert_eq!(locked.get("/v2/", "*/*").0, 401, "without credentials");
    locked.kill();
    locked.restart();
    locked.credentials = Some(("alice".into(), "s3cret".into()));
    assert_eq!(locked.get("/v2/", "*/*").0, 200, "after a restart");
}

/// nginx serves a server-level fragment with `root` and `location` blocks.
#[test]
fn nginx_serves_a_fragment() {
    let site = tempfile::tempdir().expect("temp dir for the site");
    let doc = site.path().join("df-dist-v1/demo/1.0");
    std::fs::create_dir_all(&doc).expect("site folders");
    std::fs::write(doc.join("index.json"), br#"{"flavors":[]}"#).expect("document");
    let fragment = site.path().join("nginx.conf");
    let text = format!(
        "root {};\nlocation / {{ try_files $uri $uri/index.json =404; }}\n",
        site.path().display()
    );
    std::fs::write(&fragment, text).expect("fragment");
    let Some(nginx) = Nginx::try_start(&fragment) else {
        return;
    };
    let (status, headers, body) = nginx.get("/df-dist-v1/demo/1.0");
    assert_eq!(status, 200, "{}", nginx.error_log());
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body, br#"{"flavors":[]}"#);
    assert_eq!(nginx.get("/nothing").0, 404);
}

/// containerd pulls, over plain HTTP, an image skopeo pushed into the registry;
/// skopeo copies it back into a valid OCI layout.
#[test]
fn containerd_and_skopeo_pull_from_the_registry() {
    if !common::skopeo_available() {
        return;
    }
    let Some(registry) = Registry::try_start() else {
        return;
    };
    let Some(containerd) = Containerd::try_start() else {
        return;
    };
    common::run_ok(containerd.ctr().arg("version"));
    let work = tempfile::tempdir().expect("temp dir");
    let images = fixtures::docker_dir(&work.path().join("docker"), "demo", &["aarch64-linux"]);
    let target = registry.url("demo:1.0");
    let mut copy = common::skopeo::skopeo();
    copy.args(["copy", "--dest-tls-verify=false"])
        .arg(format!(
            "docker-archive:{}",
            images["aarch64-linux"].display()
        ))
        .arg(&target);
    common::run_ok(&mut copy);
    assert!(
        registry.blob_upload_requests() >= 2,
        "config and layer uploads are logged"
    );

    let pulled = containerd.pull(
        &format!("{}/demo:1.0", registry.host()),
        "linux/arm64",
        true,
    );
    assert!(
        pulled.status.success(),
        "ctr pull: {}",
        String::from_utf8_lossy(&pulled.stderr)
    );

    let raw = common::skopeo_inspect_raw(&target, false);
    let manifest: serde_json::Value = serde_json::from_slice(&raw).expect("manifest JSON");
    assert_eq!(manifest["schemaVersion"], 2);
    let layout = work.path().join("oci");
    common::skopeo_copy_all(&target, &layout);
    assert_eq!(
        common::verify_oci_layout(&layout),
        3,
        "manifest, config and layer"
    );
}

/// containerd pulls over plain HTTP from a `localhost` bucket holding a static v2 layout
/// (uploaded by hand here from an OCI layout skopeo made of a fixture docker-archive).
#[test]
fn containerd_pulls_from_a_garage_static_registry() {
    if !common::skopeo_available() {
        return;
    }
    let Some(garage) = Garage::try_start() else {
        return;
    };
    let Some(containerd) = Containerd::try_start() else {
        return;
    };
    let work = tempfile::tempdir().expect("temp dir");
    let images = fixtures::docker_dir(&work.path().join("docker"), "demo", &["armv6l-linux"]);
    let layout = work.path().join("oci");
    let mut copy = common::skopeo::skopeo();
    copy.arg("copy")
        .arg(format!(
            "docker-archive:{}",
            images["armv6l-linux"].display()
        ))
        .arg(format!("oci:{}:1.0", layout.display()));
    common::run_ok(&mut copy);

    garage.create_bucket("localhost");
    garage.s3_put("localhost", "v2/index.html", b"{}", "application/json");
    let blobs = layout.join("blobs/sha256");
    for entry in std::fs::read_dir(&blobs).expect("layout blobs") {
        let path = entry.expect("blob entry").path();
        let hex = path.file_name().expect("blob name").to_string_lossy();
        let bytes = std::fs::read(&path).expect("blob bytes");
        let key = format!("v2/demo/blobs/sha256:{hex}");
        garage.s3_put("localhost", &key, &bytes, "application/octet-stream");
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json"))
            .expect("index.json is JSON");
    let manifest = &index["manifests"][0];
    let digest = manifest["digest"].as_str().expect("manifest digest");
    let media = manifest["mediaType"].as_str().expect("manifest media type");
    let bytes = std::fs::read(blobs.join(&digest["sha256:".len()..])).expect("manifest");
    for reference in [digest, "1.0"] {
        let key = format!("v2/demo/manifests/{reference}");
        garage.s3_put("localhost", &key, &bytes, media);
    }

    let image = garage.web_registry_ref("demo:1.0");
    let pulled = containerd.pull(&image, "linux/arm/v6", true);
    let stderr = String::from_utf8_lossy(&pulled.stderr);
    assert!(pulled.status.success(), "ctr pull {image}: {stderr}");
}

/// Nix builds the fixture flakes for all four systems, with different bytes per system.
fn nix_builds_fixture_flakes_for_four_systems(nix: NixVersion) {
    let work = tempfile::tempdir().expect("temp dir");
    let file = FlakeFixture::new("demo", &SYSTEMS)
        .salt("selftest")
        .write(&work.path().join("file"));
    let outputs = build_all(nix, &file.dir, "demo");
    for system in SYSTEMS {
        let out = nix.host_path(&outputs[system]);
        assert_eq!(
            &std::fs::read(out).expect("built file"),
            &file.expected[system]["demo"]
        );
    }
    let distinct: std::collections::BTreeSet<_> = file.expected.values().collect();
    assert_eq!(distinct.len(), 4, "each system has its own bytes");

    let folder = FlakeFixture::new("demo", &SYSTEMS)
        .folder()
        .container(&["docker://127.0.0.1:1/demo"])
        .salt("selftest")
        .write(&work.path().join("folder"));
    let outputs = build_all(nix, &folder.dir, "demo");
    for system in SYSTEMS {
        for (name, bytes) in &folder.expected[system] {
            let built = nix.host_path(&outputs[system]).join("bin").join(name);
            assert_eq!(&std::fs::read(built).expect("built bin file"), bytes);
        }
    }
    let image = format!("{}#packages.armv6l-linux.docker.demo", folder.dir.display());
    let image = nix.nix_build(&[image]);
    let image = nix.host_path(image.values().next().expect("one image"));
    assert_eq!(
        std::fs::read(image).ok(),
        std::fs::read(&folder.images["armv6l-linux"]).ok()
    );

    let release = nix.nix_eval_raw(&format!("{}#release.name", folder.dir.display()));
    assert_eq!(release, "demo");
}
nix_tests!(nix_builds_fixture_flakes_for_four_systems);

/// alba runs with each Nix: in the chroot it sees the host's temp folder at the same path and
/// finds the chroot's own Nix on PATH.
fn alba_runs_with_each_nix(nix: NixVersion) {
    let work = tempfile::tempdir().expect("temp dir");
    let flake = FlakeFixture::new("demo", &["x86_64-linux"])
        .salt("selftest-alba")
        .write(&work.path().join("flake"));
    let output = nix
        .alba()
        .args(["--json", "--flake"])
        .arg(&flake.dir)
        .arg("build")
        .run_expect(0);
    let set: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let path = set["artifacts"][0]["path"].as_str().expect("a store path");
    assert_eq!(
        std::fs::read(nix.host_path(path)).expect("the built file"),
        flake.expected["x86_64-linux"]["demo"]
    );
    let version = nix.nix().arg("--version").output().expect("nix --version");
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    let wanted = match nix {
        NixVersion::Host => "nix (Nix) 2.8",
        NixVersion::Chroot => "nix (Nix) 2.26",
    };
    assert!(version.starts_with(wanted), "{nix}: {version}");

    // The chroot command keeps the isolation of `common::alba()`.
    let alba = nix.alba();
    let envs: BTreeMap<_, _> = alba
        .get_envs()
        .map(|(k, v)| (k.to_os_string(), v.map(|v| v.to_os_string())))
        .collect();
    assert!(envs.contains_key(std::ffi::OsStr::new("NIX_CONFIG")));
    assert_eq!(envs[std::ffi::OsStr::new("AWS_ACCESS_KEY_ID")], None);

    // The mounts lived in the commands' own mount namespaces: none is left on the host.
    let mounts = std::fs::read_to_string("/proc/mounts").expect("/proc/mounts");
    let root = common::nix_chroot::root();
    assert!(
        !mounts.contains(&*root.to_string_lossy()),
        "mounts left under {}:\n{mounts}",
        root.display()
    );
}
nix_tests!(alba_runs_with_each_nix);

/// Builds `packages.<system>.<name>` for the four systems in one call; system → out path,
/// matched by `drvPath` (Nix orders its JSON by derivation path, not by installable).
fn build_all(nix: common::NixVersion, flake: &Path, name: &str) -> BTreeMap<&'static str, String> {
    let installable = |system: &str| format!("{}#packages.{system}.{name}", flake.display());
    let built = nix.nix_build(&SYSTEMS.map(installable));
    SYSTEMS
        .iter()
        .map(|system| {
            let drv = nix.nix_eval_raw(&format!("{}.drvPath", installable(system)));
            (*system, built[&drv].clone())
        })
        .collect()
}
