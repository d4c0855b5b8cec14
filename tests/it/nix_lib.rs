//! `nix/lib.nix` evaluated by real Nix (`nix-instantiate --eval --strict --json`): the
//! defaults `mkRelease` fills in, each of its evaluation-time errors, the platform table
//! (one file, `nix/platforms.json`, read by both Nix and the Rust code), the pure-Nix tests
//! in `nix/tests.nix`, and a fixture flake whose `release` is written with `mkRelease`,
//! released end to end by alba to a folder and to Garage.

// The Rust side of the table: the very module the binary uses.
use crate::common;
use alba::platform;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use common::fixtures::{FlakeFixture, SYSTEMS};
use common::{Garage, alba, nix_env};
use serde_json::{Value, json};

/// The repository root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `nix-instantiate`, or `None` after a SKIP line (only with `ALBA_ALLOW_SKIP=1`; otherwise a
/// missing one fails the test).
fn nix_instantiate() -> Option<PathBuf> {
    common::require_program("nix-instantiate", common::nix::HOW_TO_INSTALL)
}

/// Evaluates `body` with `lib` bound to `import nix/lib.nix`; JSON on success, stderr on failure.
fn eval_lib(body: &str) -> Result<Value, String> {
    let nix_instantiate = nix_instantiate().expect("checked by the caller");
    let lib = root().join("nix/lib.nix");
    let expr = format!("{{ libPath }}: let lib = import (/. + libPath); in {body}");
    let output = Command::new(nix_instantiate)
        .envs(nix_env())
        .args(["--eval", "--strict", "--json", "--argstr", "libPath"])
        .arg(&lib)
        .args(["--expr", &expr])
        .output()
        .expect("could not run nix-instantiate");
    if output.status.success() {
        Ok(serde_json::from_slice(&output.stdout).expect("nix-instantiate --json printed JSON"))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn eval_ok(body: &str) -> Value {
    eval_lib(body).unwrap_or_else(|stderr| panic!("evaluating {body} failed:\n{stderr}"))
}

/// mkRelease fills in `attrs` and `targets` but no `attr`: without one, alba resolves the
/// default attribute itself (packages.<system>, then legacyPackages.<system>).
#[test]
fn mk_release_fills_the_defaults() {
    if nix_instantiate().is_none() {
        return;
    }
    let release = eval_ok(
        r#"lib.mkRelease {
             name = "albatros";
             systems = [ "x86_64-linux" "armv6l-linux" ];
             static = { };
             container.targets = [ "docker://registry.example.org/albatros" ];
           }"#,
    );
    assert_eq!(
        release,
        json!({
            "name": "albatros",
            "systems": ["x86_64-linux", "armv6l-linux"],
            "static": { "attrs": {}, "targets": [] },
            "container": {
                "attrs": {},
                "targets": ["docker://registry.example.org/albatros"],
            },
        })
    );

    // What the user wrote is kept; an absent section stays absent.
    let release = eval_ok(
        r#"lib.mkRelease {
             name = "albatros";
             systems = [ "x86_64-linux" "armv6l-linux" ];
             static = { attr = "dist.{system}.albatros"; attrs.armv6l-linux = "legacy.arm"; targets = [ "file:out" ]; };
             sign.keys = [ "minisign.key" "cosign.key" ];
           }"#,
    );
    assert_eq!(
        release,
        json!({
            "name": "albatros",
            "systems": ["x86_64-linux", "armv6l-linux"],
            "static": {
                "attr": "dist.{system}.albatros",
                "attrs": { "armv6l-linux": "legacy.arm" },
                "targets": ["file:out"],
            },
            "sign": { "keys": ["minisign.key", "cosign.key"] },
        })
    );
}

#[test]
fn mk_release_fails_at_evaluation_with_clear_messages() {
    if nix_instantiate().is_none() {
        return;
    }
    let cases: &[(&str, &[&str])] = &[
        (
            r#"{ name = "a"; systems = [ "x86_64-linux" ]; statc = { }; }"#,
            &[
                r#"unknown key "statc"; known keys: name, systems, source, static, container, sign"#,
                "nothing to publish",
            ],
        ),
        (
            r#"{ name = "a"; systems = [ "x86_64-linux" ]; static.tagets = [ ]; }"#,
            &[
                r#"unknown key "tagets" in `static`; known keys: attr, attrs, targets, sbom, annotations, aliases"#,
            ],
        ),
        (
            r#"{ name = "a"; systems = [ "x86_64-linux" ]; container = { atr = "x"; }; }"#,
            &[
                r#"unknown key "atr" in `container`; known keys: attr, attrs, targets, sbom, annotations, aliases"#,
            ],
        ),
        (
            r#"{ name = "a"; systems = [ "x86_64-linux" "mips-linux" ]; static = { }; }"#,
            &[
                r#"unknown system "mips-linux"; known systems: aarch64-darwin, aarch64-linux, armv6l-linux"#,
                "x86_64-linux",
            ],
        ),
        (
            r#"{ systems = [ "x86_64-linux" ]; static = { }; }"#,
            &["missing `name`: the release name, e.g. name = \"albatros\";"],
        ),
        (r#"{ name = "a"; static = { }; }"#, &["missing `systems`"]),
        (
            r#"{ name = "a/b"; systems = [ "x86_64-linux" ]; static = { }; }"#,
            &[r#"name "a/b" is not valid"#],
        ),
        (
            r#"{ name = "a"; systems = [ "x86_64-linux" ]; static.attrs.i686-linux = "x"; }"#,
            &[r#"`static.attrs` names "i686-linux", which is not in `systems`"#],
        ),
        (
            r#"{ name = "a"; systems = [ ]; static = { }; }"#,
            &["`systems` is empty"],
        ),
        (
            r#"{ name = "a"; systems = [ "x86_64-linux" ]; static = { }; sign.key = [ ]; }"#,
            &[r#"unknown key "key" in `sign`; known keys: keys"#],
        ),
        (
            r#"{ name = "a"; systems = [ "x86_64-linux" ]; static = { }; sign.keys = [ ./cosign.key ]; }"#,
            &["copies the secret key into the world-readable Nix store"],
        ),
    ];
    for (description, needles) in cases {
        // Forcing only the name is enough: an invalid description never yields a value.
        let stderr = eval_lib(&format!("(lib.mkRelease {description}).name"))
            .expect_err(&format!("mkRelease accepted {description}"));
        assert!(
            stderr.contains("alba.lib.mkRelease: the release description"),
            "{description}:\n{stderr}"
        );
        for needle in *needles {
            assert!(
                stderr.contains(needle),
                "{description}: no {needle:?} in\n{stderr}"
            );
        }
        // checkRelease lists the same problems without throwing.
        let problems = eval_ok(&format!("lib.checkRelease {description}"));
        let problems = problems.as_array().expect("a list");
        assert!(!problems.is_empty(), "{description}");
    }
}

#[test]
fn platforms_are_the_json_file_and_match_the_rust_table() {
    if nix_instantiate().is_none() {
        return;
    }
    let from_nix = eval_ok("lib.platforms");
    let file = std::fs::read_to_string(root().join("nix/platforms.json")).expect("platforms.json");
    let from_file: Value = serde_json::from_str(&file).expect("platforms.json is JSON");
    assert_eq!(from_nix, from_file, "lib.platforms is nix/platforms.json");

    // The ten rows of DESIGN.md's table.
    let rows = [
        ("x86_64-linux", "linux/amd64"),
        ("i686-linux", "linux/386"),
        ("aarch64-linux", "linux/arm64"),
        ("armv6l-linux", "linux/arm/v6"),
        ("armv7l-linux", "linux/arm/v7"),
        ("riscv64-linux", "linux/riscv64"),
        ("powerpc64le-linux", "linux/ppc64le"),
        ("s390x-linux", "linux/s390x"),
        ("x86_64-darwin", "darwin/amd64"),
        ("aarch64-darwin", "darwin/arm64"),
    ];
    let table = from_nix.as_object().expect("an attribute set");
    assert_eq!(table.len(), rows.len(), "{table:?}");
    let strings = eval_ok(
        "builtins.listToAttrs (map (s: { name = s; value = lib.platformString s; }) lib.systems)",
    );
    for (system, expected) in rows {
        assert_eq!(strings[system], expected, "lib.platformString {system}");
        // The Rust table (src/platform.rs) gives the same platform, field by field.
        let rust = platform::Platform::from_nix_system(system)
            .unwrap_or_else(|| panic!("the Rust table lacks {system}"));
        assert_eq!(rust.to_string(), expected, "Rust's {system}");
        let rust_json = serde_json::to_value(&rust).expect("Platform serializes");
        assert_eq!(
            rust_json, table[system],
            "Rust and Nix disagree on {system}"
        );
    }
    let mut nix_systems: Vec<String> = eval_ok("lib.systems")
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect();
    nix_systems.sort();
    let mut rust_systems = platform::Platform::known_systems();
    rust_systems.sort();
    assert_eq!(nix_systems, rust_systems);
}

#[test]
fn nix_tests_file_passes() {
    let Some(nix_instantiate) = nix_instantiate() else {
        return;
    };
    let output = Command::new(nix_instantiate)
        .envs(nix_env())
        .args(["--eval", "--strict", "--json"])
        .arg(root().join("nix/tests.nix"))
        .output()
        .expect("could not run nix-instantiate");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(result["failures"], json!([]), "nix/tests.nix failures");
    assert!(result["passed"].as_u64().unwrap_or(0) >= 19, "{result}");
}

/// Every file under `dir` with its size and mtime: a dry run must change none of them.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).expect("readable folder") {
            let entry = entry.expect("folder entry");
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                let relative = entry
                    .path()
                    .strip_prefix(dir)
                    .expect("under dir")
                    .to_path_buf();
                files.insert(relative, (meta.len(), meta.modified().expect("mtime")));
            }
        }
    }
    files
}

fn json_report(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "--json printed no JSON ({e}):\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Every object of every target in a dry-run report says "exists".
fn assert_all_exist(report: &Value, kinds: usize) {
    let targets = report["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), kinds, "{report:#}");
    for target in targets {
        assert_eq!(target["dry_run"], true, "{target:#}");
        let objects = target["objects"].as_array().expect("objects");
        assert!(!objects.is_empty(), "{target:#}");
        for object in objects {
            assert_eq!(object["status"], "exists", "{}: {object}", target["target"]);
        }
    }
    assert_eq!(report["bytes_sent"], 0, "{report:#}");
}

/// A fixture flake whose `release` is `(import ./alba/lib.nix).mkRelease { ... }`, with the
/// project's lib.nix and platforms.json copied beside it: pure flake evaluation cannot read
/// an absolute path outside the flake (`access to absolute path ... is forbidden`).
fn mk_release_fixture(dir: &Path, folder_target: &str) -> common::fixtures::WrittenFlake {
    let flake = FlakeFixture::new("albalib", &SYSTEMS)
        .salt("nix-lib")
        .static_targets(&[folder_target])
        .container(&[folder_target])
        .write(dir);
    let text = std::fs::read_to_string(dir.join("flake.nix")).expect("fixture flake.nix");
    assert!(text.contains("release = {"), "{text}");
    let text = text.replacen(
        "release = {",
        "release = (import ./alba/lib.nix).mkRelease {",
        1,
    );
    std::fs::write(dir.join("flake.nix"), text).expect("rewrite flake.nix");
    std::fs::create_dir_all(dir.join("alba")).expect("alba/");
    for file in ["lib.nix", "platforms.json"] {
        std::fs::copy(root().join("nix").join(file), dir.join("alba").join(file))
            .unwrap_or_else(|e| panic!("copy nix/{file}: {e}"));
    }
    flake
}

#[test]
fn release_written_with_mk_release_publishes_end_to_end() {
    if nix_instantiate().is_none() || !common::nix_available() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("out");
    let folder = format!("file:{}", out.display());
    let flake = mk_release_fixture(&work.path().join("flake"), &folder);

    // What alba reads is mkRelease's output, defaults filled in.
    let mut eval = common::nix::nix();
    eval.arg("eval")
        .arg("--json")
        .arg(format!("path:{}#release", flake.dir.display()));
    let release: Value = serde_json::from_slice(&common::run_ok(&mut eval)).expect("JSON");
    // No attr: alba finds packages.<system>.albalib and packages.<system>.docker.albalib.
    assert_eq!(release["static"].get("attr"), None, "{release:#}");
    assert_eq!(release["container"].get("attr"), None, "{release:#}");
    assert_eq!(release["container"]["targets"], json!([folder]));

    // Release to the folder: binaries, documents and the static registry.
    let output = alba()
        .args(["--json", "--flake"])
        .arg(&flake.dir)
        .args(["release", "0.9"])
        .run_expect(0);
    let report = json_report(&output);
    assert_eq!(
        report["targets"].as_array().map(Vec::len),
        Some(2),
        "{report:#}"
    );
    assert!(report["bytes_sent"].as_u64().unwrap_or(0) > 0, "{report:#}");
    for (system, files) in &flake.expected {
        // The Go tool's <os>/<arch>/<file>: one arm flavor here, so no variant level.
        let (os, architecture, _) = common::fixtures::platform(system);
        for (file, bytes) in files {
            let path = out.join(format!("df-dist-v1/albalib/0.9/{os}/{architecture}/{file}"));
            assert!(
                &std::fs::read(&path).expect("binary in the folder") == bytes,
                "{}",
                path.display()
            );
        }
    }
    let names: Value = serde_json::from_slice(
        &std::fs::read(out.join("df-dist-v1/albalib/index.json")).expect("name document"),
    )
    .expect("JSON");
    assert_eq!(names, json!({ "name": "albalib", "tags": ["0.9"] }));
    let tags: Value = serde_json::from_slice(
        &std::fs::read(out.join("v2/albalib/tags/list")).expect("tags/list"),
    )
    .expect("JSON");
    assert_eq!(tags, json!({ "name": "albalib", "tags": ["0.9"] }));
    assert!(out.join("v2/albalib/manifests/0.9").is_file());

    // A dry run against the folder that holds it: every object "exists", nothing written.
    let before = snapshot(&out);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let output = alba()
        .args(["--json", "--flake"])
        .arg(&flake.dir)
        .args(["release", "0.9", "--dry-run"])
        .run_expect(0);
    assert_all_exist(&json_report(&output), 2);
    assert_eq!(snapshot(&out), before, "a dry run wrote to the folder");

    // The same with Garage: release, then a dry run that finds everything there.
    let Some(garage) = Garage::try_start() else {
        return;
    };
    garage.create_bucket("nixlib");
    let s3 = garage.s3_url("nixlib");
    alba()
        .envs(garage.envs())
        .args(["--json", "--flake"])
        .arg(&flake.dir)
        .args(["release", "0.9", "--target", &s3])
        .run_expect(0);
    let keys = garage.list_keys("nixlib");
    assert!(
        keys.contains(&"df-dist-v1/albalib/0.9/linux/arm/albalib".to_string()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"v2/albalib/manifests/0.9".to_string()),
        "{keys:?}"
    );
    let last_modified = |keys: &[String]| -> BTreeMap<String, String> {
        keys.iter()
            .map(|k| {
                let (status, headers, _) = garage.s3().head("nixlib", k);
                assert_eq!(status, 200, "HEAD {k}");
                let modified = headers["last-modified"].to_str().expect("ASCII header");
                (k.clone(), modified.to_string())
            })
            .collect()
    };
    let before = last_modified(&keys);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let output = alba()
        .envs(garage.envs())
        .args(["--json", "--flake"])
        .arg(&flake.dir)
        .args(["release", "0.9", "--dry-run", "--target", &s3])
        .run_expect(0);
    assert_all_exist(&json_report(&output), 2);
    assert_eq!(
        garage.list_keys("nixlib"),
        keys,
        "a dry run added or removed objects"
    );
    assert_eq!(last_modified(&keys), before, "a dry run rewrote objects");
}
