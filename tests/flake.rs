//! The project's own `flake.nix` and `examples/flake.nix`, checked with the Nix of this
//! machine, which cannot fetch nixpkgs (no network).
//!
//! Both flakes parse (`nix-instantiate --parse`). To check the project flake's *outputs*,
//! it is evaluated with its `nixpkgs` input replaced by a small stub flake
//! (`--override-input nixpkgs path:<stub> --no-write-lock-file`, see [`STUB`]): the stub's
//! `legacyPackages.<system>` has just the attributes the flake touches (`callPackage`,
//! `rustPlatform`, `mkShell`, `runCommand`, `dockerTools`, `pkgsStatic`, `pkgsCross`, a few
//! `lib` functions and placeholder packages), each package a `derivation` that is never
//! built. Everything the flake does not force stays unevaluated, exactly as with the real
//! nixpkgs, so `nix flake show`, `nix flake check --no-build` and `nix eval` of single
//! outputs run in well under a second. The flake is copied (with the files it reads) into
//! a temp folder and used as `path:`, because a `git+file:` flake would only see files
//! already committed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::nix::nix;
use serde_json::{Value, json};

/// A stand-in for nixpkgs: `legacyPackages.<system>` for the four systems of the flake.
/// `@RUSTC@` is the rustc version its `rustPlatform` claims to have.
const STUB: &str = r#"{
  description = "stub nixpkgs for alba's flake tests (tests/flake.rs)";
  outputs = { self }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      lib = {
        versionAtLeast = a: b: builtins.compareVersions a b >= 0;
        fileset = { toSource = { root, fileset }: root; unions = paths: paths; };
        licenses = { mit.spdxId = "MIT"; asl20.spdxId = "Apache-2.0"; };
        platforms.unix = [ ];
        meta.availableOn = platform: package: true;
      };
      mkPkgs = system:
        let
          drv = name: extra:
            derivation { inherit system name; builder = "/bin/sh"; args = [ "-c" "echo stub > $out" ]; } // extra;
          pkgs = {
            inherit lib;
            stdenv.hostPlatform = { inherit system; };
            callPackage = fn: overrides:
              let f = if builtins.isFunction fn then fn else import fn;
              in f (builtins.intersectAttrs (builtins.functionArgs f) pkgs // overrides);
            rustPlatform = {
              rust.rustc.version = "@RUSTC@";
              buildRustPackage = args:
                drv "${args.pname}-${args.version}" { inherit (args) pname version meta cargoTestFlags; };
            };
            mkShell = args: drv "nix-shell" { packageNames = map (p: p.name) (args.packages or [ ]); };
            runCommand = name: env: script: drv name { };
            dockerTools.buildLayeredImage = args:
              drv "${args.name}.tar.gz" { inherit (args) architecture; contentNames = map (p: p.name) args.contents; };
            pkgsStatic = pkgs // { isStatic = true; };
            pkgsCross = {
              gnu32.pkgsStatic = pkgs;
              aarch64-multiplatform.pkgsStatic = pkgs;
              raspberryPi.pkgsStatic = pkgs;
            };
          } // builtins.listToAttrs (map (name: { inherit name; value = drv name { }; }) [
            "cmake" "cargo" "rustc" "clippy" "rustfmt" "nix" "garage_2" "skopeo" "containerd"
            "docker-distribution" "nginx" "rclone" "nixfmt" "cacert"
          ]);
        in pkgs;
    in {
      legacyPackages = builtins.listToAttrs (map (system: { name = system; value = mkPkgs system; }) systems);
    };
}
"#;

/// The four systems the project flake builds alba for.
const SYSTEMS: [&str; 4] = [
    "x86_64-linux",
    "aarch64-linux",
    "x86_64-darwin",
    "aarch64-darwin",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).expect("readable folder") {
        let entry = entry.expect("folder entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("copy {}: {e}", entry.path().display()));
        }
    }
}

/// Stub nixpkgs, a copy of the project flake (with what it reads), and a copy of examples/.
struct Flakes {
    _dir: tempfile::TempDir,
    stub: PathBuf,
    project: PathBuf,
    example: PathBuf,
}

impl Flakes {
    fn new(rustc_version: &str) -> Flakes {
        let dir = tempfile::tempdir().expect("tempdir");
        let stub = dir.path().join("stub");
        std::fs::create_dir_all(&stub).expect("stub folder");
        std::fs::write(
            stub.join("flake.nix"),
            STUB.replace("@RUSTC@", rustc_version),
        )
        .expect("stub flake.nix");
        let project = dir.path().join("alba");
        std::fs::create_dir_all(&project).expect("project folder");
        for file in ["flake.nix", "flake.lock", "Cargo.toml", "Cargo.lock"] {
            std::fs::copy(root().join(file), project.join(file))
                .unwrap_or_else(|e| panic!("copy {file}: {e}"));
        }
        copy_dir(&root().join("nix"), &project.join("nix"));
        copy_dir(&root().join("src"), &project.join("src"));
        let example = dir.path().join("example");
        copy_dir(&root().join("examples"), &example);
        Flakes {
            _dir: dir,
            stub,
            project,
            example,
        }
    }

    /// `nix <args> --no-write-lock-file --override-input nixpkgs path:<stub> path:<project><suffix>`.
    fn nix(&self, args: &[&str], suffix: &str) -> Command {
        let mut command = nix();
        command
            .args(args)
            .args(["--no-write-lock-file", "--override-input", "nixpkgs"])
            .arg(format!("path:{}", self.stub.display()))
            .arg(format!("path:{}{suffix}", self.project.display()));
        command
    }

    /// `nix eval --json` of one output of the project flake.
    fn eval(&self, attr: &str) -> Value {
        let stdout = common::run_ok(&mut self.nix(&["eval", "--json"], &format!("#{attr}")));
        serde_json::from_slice(&stdout).expect("nix eval --json printed JSON")
    }
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", common::describe(command)))
}

fn nix_instantiate() -> Option<PathBuf> {
    common::require_program("nix-instantiate", common::nix::HOW_TO_INSTALL)
}

#[test]
fn flakes_and_nix_files_parse() {
    let Some(nix_instantiate) = nix_instantiate() else {
        return;
    };
    for file in [
        "flake.nix",
        "examples/flake.nix",
        "nix/package.nix",
        "nix/lib.nix",
        "nix/tests.nix",
    ] {
        let output = run(Command::new(&nix_instantiate)
            .args(["--parse"])
            .arg(root().join(file)));
        assert!(
            output.status.success(),
            "{file} does not parse:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn lock_file_pins_nixpkgs() {
    let lock: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("flake.lock")).expect("flake.lock"),
    )
    .expect("flake.lock is JSON");
    assert_eq!(lock["version"], 7);
    assert_eq!(
        lock["nodes"]["root"]["inputs"],
        json!({ "nixpkgs": "nixpkgs" })
    );
    let locked = &lock["nodes"]["nixpkgs"]["locked"];
    assert_eq!(locked["type"], "github");
    assert_eq!(locked["owner"], "NixOS");
    assert_eq!(locked["repo"], "nixpkgs");
    let rev = locked["rev"].as_str().expect("rev");
    assert!(
        rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit()),
        "{rev}"
    );
    let nar_hash = locked["narHash"].as_str().expect("narHash");
    assert!(
        nar_hash.starts_with("sha256-") && nar_hash.len() == 51 && nar_hash.ends_with('='),
        "{nar_hash}"
    );
    assert!(locked["lastModified"].as_u64().is_some());
    let original = &lock["nodes"]["nixpkgs"]["original"];
    let flake = std::fs::read_to_string(root().join("flake.nix")).expect("flake.nix");
    let url = format!(
        "github:{}/{}/{}",
        original["owner"].as_str().unwrap_or_default(),
        original["repo"].as_str().unwrap_or_default(),
        original["ref"].as_str().unwrap_or_default()
    );
    assert!(
        flake.contains(&format!("inputs.nixpkgs.url = \"{url}\"")),
        "flake.lock's original ({url}) is not flake.nix's nixpkgs url"
    );
}

#[test]
fn project_flake_lists_its_outputs() {
    if !common::nix_available() {
        return;
    }
    let flakes = Flakes::new("1.97.1");
    let stdout = common::run_ok(&mut flakes.nix(&["flake", "show", "--json"], ""));
    let show: Value = serde_json::from_slice(&stdout).expect("nix flake show --json");
    let name = format!("alba-{}", cargo_version());
    for system in SYSTEMS {
        for package in ["alba", "default"] {
            let p = &show["packages"][system][package];
            assert_eq!(
                p["type"], "derivation",
                "packages.{system}.{package}: {show:#}"
            );
            assert_eq!(p["name"], name.as_str(), "packages.{system}.{package}");
            assert!(
                p["description"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("Publish what a Nix flake builds")),
                "{p}"
            );
            assert_eq!(
                show["apps"][system][package]["type"], "app",
                "apps.{system}.{package}"
            );
        }
        assert_eq!(show["checks"][system]["alba"]["name"], name.as_str());
        assert_eq!(show["checks"][system]["lib"]["name"], "alba-lib-tests");
        assert_eq!(show["devShells"][system]["default"]["type"], "derivation");
        assert_eq!(show["formatter"][system]["type"], "derivation");
    }
    assert_eq!(show["overlays"]["default"]["type"], "nixpkgs-overlay");
    for output in ["lib", "release", "dist"] {
        assert!(show.get(output).is_some(), "no `{output}` output: {show:#}");
    }

    // Nix's own structural checks (app and overlay shapes, derivations), without building.
    let output = run(&mut flakes.nix(&["flake", "check", "--no-build"], ""));
    assert!(
        output.status.success(),
        "nix flake check --no-build:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The version in Cargo.toml.
fn cargo_version() -> String {
    let toml = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let line = toml
        .lines()
        .find(|l| l.starts_with("version = "))
        .expect("version in Cargo.toml");
    line.trim_start_matches("version = ")
        .trim_matches('"')
        .to_string()
}

#[test]
fn project_flake_outputs_evaluate() {
    if !common::nix_available() {
        return;
    }
    let flakes = Flakes::new("1.97.1");
    let name = format!("alba-{}", cargo_version());

    let program = flakes.eval("apps.x86_64-linux.default.program");
    let program = program.as_str().expect("a string");
    assert!(
        program.starts_with("/nix/store/") && program.ends_with(&format!("{name}/bin/alba")),
        "{program}"
    );

    let package = flakes.eval("packages.aarch64-darwin.alba.meta");
    assert_eq!(package["mainProgram"], "alba");
    assert_eq!(
        package["license"],
        json!([{ "spdxId": "MIT" }, { "spdxId": "Apache-2.0" }])
    );
    assert_eq!(
        flakes.eval("packages.x86_64-linux.alba.cargoTestFlags"),
        json!(["--bins"])
    );

    let shell = flakes.eval("devShells.x86_64-linux.default.packageNames");
    for tool in [
        "cargo",
        "rustc",
        "clippy",
        "rustfmt",
        "nix",
        "garage_2",
        "skopeo",
        "containerd",
        "docker-distribution",
        "nginx",
        "rclone",
    ] {
        assert!(
            shell.as_array().is_some_and(|a| a.contains(&json!(tool))),
            "{tool} missing from the dev shell: {shell}"
        );
    }

    // overlays.default adds pkgs.alba (applied to the stub's package set).
    let apply = format!(
        "overlay: let pkgs = (builtins.getFlake \"path:{}\").legacyPackages.x86_64-linux; \
         in (overlay pkgs pkgs).alba.name",
        flakes.stub.display()
    );
    let stdout = common::run_ok(
        flakes
            .nix(&["eval", "--json", "--impure"], "#overlays.default")
            .args(["--apply", &apply]),
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&stdout).expect("JSON"),
        json!(name)
    );

    // `lib` is nix/lib.nix.
    assert_eq!(
        flakes.eval("lib.platforms.armv6l-linux"),
        json!({ "os": "linux", "architecture": "arm", "variant": "v6" })
    );

    // alba releases itself: static binaries and images for four Linux platforms.
    let release = flakes.eval("release");
    assert_eq!(
        release,
        json!({
            "name": "alba",
            "systems": ["x86_64-linux", "i686-linux", "aarch64-linux", "armv6l-linux"],
            "static": { "attr": "dist.{system}.alba", "attrs": {}, "targets": ["file:dist"] },
            "container": { "attr": "dist.{system}.docker.alba", "attrs": {}, "targets": ["file:dist"] },
        })
    );
    for (system, architecture) in [
        ("x86_64-linux", "amd64"),
        ("i686-linux", "386"),
        ("aarch64-linux", "arm64"),
        ("armv6l-linux", "arm"),
    ] {
        assert_eq!(
            flakes.eval(&format!("dist.{system}.alba.name")),
            json!(name)
        );
        assert_eq!(
            flakes.eval(&format!("dist.{system}.docker.alba.contentNames")),
            json!([name, "cacert"]),
            "{system}"
        );
        assert_eq!(
            flakes.eval(&format!("dist.{system}.docker.alba.architecture")),
            json!(architecture),
            "{system}"
        );
    }
}

#[test]
fn package_refuses_a_too_old_rustc() {
    if !common::nix_available() {
        return;
    }
    let flakes = Flakes::new("1.80.0");
    let output = run(&mut flakes.nix(&["eval", "--raw"], "#packages.x86_64-linux.alba.name"));
    assert!(
        !output.status.success(),
        "a nixpkgs with rustc 1.80.0 was accepted"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("alba needs rustc >= 1.94.1 (rust-version in Cargo.toml); this nixpkgs ships rustc 1.80.0"),
        "{stderr}"
    );
}

#[test]
fn example_flake_release_is_valid_for_alba() {
    if !common::nix_available() {
        return;
    }
    let flakes = Flakes::new("1.97.1");
    // The example's inputs are nixpkgs and alba: replace both (alba by the project copy,
    // whose own nixpkgs follows the example's, i.e. the stub).
    let mut command = nix();
    command
        .args(["eval", "--json", "--no-write-lock-file"])
        .args(["--override-input", "nixpkgs"])
        .arg(format!("path:{}", flakes.stub.display()))
        .args(["--override-input", "alba"])
        .arg(format!("path:{}", flakes.project.display()))
        .arg(format!("path:{}#release", flakes.example.display()));
    let release: Value = serde_json::from_slice(&common::run_ok(&mut command)).expect("JSON");
    assert_eq!(release["name"], "albatros");
    assert_eq!(
        release["systems"],
        json!([
            "aarch64-linux",
            "armv6l-linux",
            "i686-linux",
            "x86_64-linux"
        ])
    );
    assert_eq!(release["static"]["attr"], "packages.{system}.albatros");
    assert_eq!(
        release["container"]["attr"],
        "packages.{system}.docker.albatros"
    );
    assert_eq!(
        release["container"]["targets"].as_array().map(Vec::len),
        Some(2)
    );
}
