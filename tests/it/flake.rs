//! The project's own `flake.nix` and `examples/flake.nix`, checked with both Nix versions of
//! the test bed (the host's 2.8 and the trixie chroot's 2.26, [`nix_tests!`]; 2.26 gets
//! `--all-systems`, else it would show and check the current system's outputs only), on a
//! machine that cannot fetch nixpkgs (no network).
//!
//! Both flakes parse (`nix-instantiate --parse`). To check their *outputs*, they are
//! evaluated with the `nixpkgs` input replaced by a stand-in flake,
//! `tests/nixpkgs-stand-in/flake.nix` (`--override-input nixpkgs path:<stand-in>
//! --no-write-lock-file`; the example's `alba` input is the project copy). The stand-in has
//! only the attributes the flakes touch, but behaves like nixpkgs 26.11 where they depend on
//! it: `legacyPackages.x86_64-darwin` and the removed `docker-distribution` throw,
//! `lib.meta.availableOn` is nixpkgs' own, a package unavailable on its platform refuses to
//! give a drvPath, and `lib.fileset.toSource` really filters. The tests below check those
//! behaviours first (against facts from nixpkgs' sources, cited at each test), then run
//! `nix flake show` and `nix flake check --no-build` on both flakes, evaluate single
//! outputs, and check that the mistakes real nixpkgs refuses fail here too. Everything the
//! flakes do not force stays unevaluated, as with the real nixpkgs, and each package is a
//! `derivation` that is never built, so every Nix call takes well under a second. The
//! flakes are copied (with the files they read) into a temp folder and used as `path:`,
//! because a `git+file:` flake would only see files already committed.

use crate::common;
use crate::nix_tests;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::NixVersion;
use serde_json::{Value, json};

mod stand_in;

/// The nixpkgs stand-in. `@RUSTC@` is the rustc version its `rustPlatform` claims to ship.
const STAND_IN: &str = include_str!("../nixpkgs-stand-in/flake.nix");

/// The systems the project flake builds alba for (nixpkgs 26.11 has no x86_64-darwin).
const SYSTEMS: [&str; 3] = ["x86_64-linux", "aarch64-linux", "aarch64-darwin"];

/// The systems of the example's release, in `builtins.attrNames` order.
const EXAMPLE_SYSTEMS: [&str; 4] = [
    "aarch64-linux",
    "armv6l-linux",
    "i686-linux",
    "x86_64-linux",
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

/// Every regular file under `dir`, as paths relative to it.
fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).expect("readable folder") {
            let path = entry.expect("folder entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(dir).expect("under dir");
                files.insert(relative.to_string_lossy().into_owned());
            }
        }
    }
    files
}

/// The stand-in, a copy of the project flake (with what it reads, and a README and a test
/// file its package source must leave out), and a copy of examples/.
struct Flakes {
    _dir: tempfile::TempDir,
    nix: NixVersion,
    stand_in: PathBuf,
    project: PathBuf,
    example: PathBuf,
}

impl Flakes {
    fn new(nix: NixVersion, rustc_version: &str) -> Flakes {
        // Under the temp folder, which the Nix 2.26 chroot sees at the same path.
        let dir = tempfile::tempdir().expect("tempdir");
        let stand_in = dir.path().join("nixpkgs");
        std::fs::create_dir_all(&stand_in).expect("stand-in folder");
        std::fs::write(
            stand_in.join("flake.nix"),
            STAND_IN.replace("@RUSTC@", rustc_version),
        )
        .expect("stand-in flake.nix");
        let project = dir.path().join("alba");
        std::fs::create_dir_all(project.join("tests/it")).expect("project folder");
        for file in [
            "flake.nix",
            "flake.lock",
            "Cargo.toml",
            "Cargo.lock",
            "README.md",
            "tests/it/flake.rs",
        ] {
            std::fs::copy(root().join(file), project.join(file))
                .unwrap_or_else(|e| panic!("copy {file}: {e}"));
        }
        copy_dir(&root().join("nix"), &project.join("nix"));
        copy_dir(&root().join("src"), &project.join("src"));
        let example = dir.path().join("example");
        copy_dir(&root().join("examples"), &example);
        Flakes {
            _dir: dir,
            nix,
            stand_in,
            project,
            example,
        }
    }

    /// `nix <args> --no-write-lock-file --override-input nixpkgs path:<stand-in> path:<project><suffix>`.
    fn nix(&self, args: &[&str], suffix: &str) -> Command {
        let mut command = self.nix.nix();
        command
            .args(args)
            .args(["--no-write-lock-file", "--override-input", "nixpkgs"])
            .arg(format!("path:{}", self.stand_in.display()))
            .arg(format!("path:{}{suffix}", self.project.display()));
        command
    }

    /// The same for the example, whose `alba` input is the project copy (and whose nixpkgs
    /// the project's follows, i.e. the stand-in).
    fn nix_example(&self, args: &[&str], suffix: &str) -> Command {
        let mut command = self.nix.nix();
        command
            .args(args)
            .args(["--no-write-lock-file", "--override-input", "nixpkgs"])
            .arg(format!("path:{}", self.stand_in.display()))
            .args(["--override-input", "alba"])
            .arg(format!("path:{}", self.project.display()))
            .arg(format!("path:{}{suffix}", self.example.display()));
        command
    }

    /// `nix eval --json` of one output of the project flake.
    fn eval(&self, attr: &str) -> Value {
        json_of(&mut self.nix(&["eval", "--json"], &format!("#{attr}")))
    }

    /// `nix eval --json --apply FUNCTION` of one output of the project flake.
    fn eval_apply(&self, attr: &str, function: &str) -> Value {
        let mut command = self.nix(&["eval", "--json"], &format!("#{attr}"));
        json_of(command.args(["--apply", function]))
    }

    /// `nix eval --json --impure --expr '(nixpkgs: BODY) <the stand-in flake>'`.
    fn eval_stand_in(&self, body: &str) -> Result<Value, String> {
        let expr = format!(
            "(nixpkgs: {body}) (builtins.getFlake \"path:{}\")",
            self.stand_in.display()
        );
        let output = run(self
            .nix
            .nix()
            .args(["eval", "--json", "--impure", "--expr", &expr]));
        if output.status.success() {
            Ok(serde_json::from_slice(&output.stdout).expect("nix eval --json printed JSON"))
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    fn eval_stand_in_ok(&self, body: &str) -> Value {
        self.eval_stand_in(body)
            .unwrap_or_else(|stderr| panic!("evaluating {body} failed:\n{stderr}"))
    }

    /// Replaces `from` (which must be there) by `to` in a copied flake.nix.
    fn rewrite(&self, flake_dir: &Path, from: &str, to: &str) {
        let path = flake_dir.join("flake.nix");
        let text = std::fs::read_to_string(&path).expect("flake.nix");
        assert!(text.contains(from), "{from:?} is not in {}", path.display());
        std::fs::write(&path, text.replacen(from, to, 1)).expect("rewrite flake.nix");
    }
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", common::describe(command)))
}

fn json_of(command: &mut Command) -> Value {
    serde_json::from_slice(&common::run_ok(command)).expect("nix printed JSON")
}

/// Runs `command`, which must fail; returns its stderr.
fn stderr_of_failure(command: &mut Command) -> String {
    let output = run(command);
    assert!(
        !output.status.success(),
        "`{}` succeeded",
        common::describe(command)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `nix flake show` / `check` arguments for every system's outputs: Nix 2.19 and later
/// look at the current system's only, unless given `--all-systems`; 2.8 always looks at all.
fn all_systems(nix: NixVersion, args: &[&'static str]) -> Vec<&'static str> {
    let mut args = args.to_vec();
    if nix == NixVersion::Chroot {
        args.push("--all-systems");
    }
    args
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
        "tests/nixpkgs-stand-in/flake.nix",
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

fn project_flake_shows_and_checks(nix: NixVersion) {
    let flakes = Flakes::new(nix, "1.97.1");
    let show = json_of(&mut flakes.nix(&all_systems(nix, &["flake", "show", "--json"]), ""));
    let name = format!("alba-{}", cargo_version());
    for output in ["packages", "apps", "checks", "devShells", "formatter"] {
        let systems: Vec<&str> = show[output]
            .as_object()
            .unwrap_or_else(|| panic!("no `{output}`: {show:#}"))
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(systems, ["aarch64-darwin", "aarch64-linux", "x86_64-linux"]);
    }
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

    // Nix's own structural checks (app and overlay shapes, derivations), without building:
    // every drvPath is evaluated, so the dev shell's packages and the fileset source are too.
    common::run_ok(&mut flakes.nix(&all_systems(nix, &["flake", "check", "--no-build"]), ""));
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

fn project_flake_outputs_evaluate(nix: NixVersion) {
    let flakes = Flakes::new(nix, "1.97.1");
    let name = format!("alba-{}", cargo_version());

    let program = flakes.eval("apps.x86_64-linux.default.program");
    let program = program.as_str().expect("a string");
    assert!(
        program.starts_with("/nix/store/") && program.ends_with(&format!("{name}/bin/alba")),
        "{program}"
    );

    let package = flakes.eval("packages.aarch64-darwin.alba.meta");
    assert_eq!(package["mainProgram"], "alba");
    assert_eq!(package["available"], true);
    let licenses: Vec<&Value> = package["license"]
        .as_array()
        .expect("a list of licenses")
        .iter()
        .map(|l| &l["spdxId"])
        .collect();
    assert_eq!(licenses, [&json!("MIT"), &json!("Apache-2.0")]);
    assert_eq!(
        flakes.eval("packages.x86_64-linux.alba.cargoTestFlags"),
        json!(["--bins"])
    );

    // The dev shell keeps what is available on each system (real availableOn): containerd
    // is Linux-only, so the aarch64-darwin shell has everything but it.
    let pnames = "ps: map (p: p.pname) ps";
    let tools = [
        "cargo",
        "rustc",
        "clippy",
        "rustfmt",
        "nix",
        "garage",
        "skopeo",
        "containerd",
        "distribution",
        "nginx",
        "rclone",
    ];
    for system in ["x86_64-linux", "aarch64-linux"] {
        let shell = flakes.eval_apply(
            &format!("devShells.{system}.default.nativeBuildInputs"),
            pnames,
        );
        assert_eq!(shell, json!(tools), "{system}");
    }
    let shell = flakes.eval_apply("devShells.aarch64-darwin.default.nativeBuildInputs", pnames);
    let darwin_tools: Vec<&str> = tools.into_iter().filter(|t| *t != "containerd").collect();
    assert_eq!(shell, json!(darwin_tools));
    let garage = flakes.eval_apply(
        "devShells.x86_64-linux.default.nativeBuildInputs",
        "ps: (builtins.elemAt ps 5).version",
    );
    assert_eq!(garage, json!("2.3.0"), "the dev shell takes garage_2");

    // overlays.default adds pkgs.alba (applied to the stand-in's package set).
    let apply = format!(
        "overlay: let pkgs = (builtins.getFlake \"path:{}\").legacyPackages.x86_64-linux; \
         in (overlay pkgs pkgs).alba.name",
        flakes.stand_in.display()
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
            flakes.eval_apply(
                &format!("dist.{system}.docker.alba"),
                "i: { inherit (i) architecture imageName; contents = map (p: p.name) i.contents; }"
            ),
            json!({ "architecture": architecture, "imageName": "alba", "contents": [name, "nss-cacert-3.117"] }),
            "{system}"
        );
    }
}

/// nix/package.nix builds from `lib.fileset.toSource`: its source holds Cargo.toml,
/// Cargo.lock, src/ and nix/platforms.json, and nothing else of the checkout.
fn package_source_is_only_what_the_build_reads(nix: NixVersion) {
    let flakes = Flakes::new(nix, "1.97.1");
    let out = flakes.eval("packages.x86_64-linux.alba.src.outPath");
    let out = nix.host_path(out.as_str().expect("a store path"));
    let mut expected: BTreeSet<String> = files_under(&flakes.project.join("src"))
        .into_iter()
        .map(|f| format!("src/{f}"))
        .collect();
    expected.extend(["Cargo.toml", "Cargo.lock", "nix/platforms.json"].map(String::from));
    assert_eq!(files_under(&out), expected);
    assert!(!out.join("README.md").exists() && !out.join("tests").exists());
}

fn package_refuses_a_too_old_rustc(nix: NixVersion) {
    let flakes = Flakes::new(nix, "1.80.0");
    let stderr =
        stderr_of_failure(&mut flakes.nix(&["eval", "--raw"], "#packages.x86_64-linux.alba.name"));
    assert!(
        stderr.contains("alba needs rustc >= 1.94.1 (rust-version in Cargo.toml); this nixpkgs ships rustc 1.80.0"),
        "{stderr}"
    );
}

fn example_flake_shows_and_checks(nix: NixVersion) {
    let flakes = Flakes::new(nix, "1.97.1");
    let show =
        json_of(&mut flakes.nix_example(&all_systems(nix, &["flake", "show", "--json"]), ""));
    for system in EXAMPLE_SYSTEMS {
        let packages = show["packages"][system].as_object().expect("packages");
        assert_eq!(
            packages.keys().collect::<Vec<_>>(),
            ["albatros"],
            "{show:#}"
        );
        assert_eq!(packages["albatros"]["type"], "derivation", "{show:#}");
        assert_eq!(packages["albatros"]["name"], "albatros-0.9", "{show:#}");
        assert_eq!(
            packages["albatros"]["description"],
            "albatros, a small Go program released with alba"
        );
        assert!(show["legacyPackages"].get(system).is_some(), "{show:#}");
    }
    assert_eq!(show["apps"]["x86_64-linux"]["alba"]["type"], "app");
    common::run_ok(
        &mut flakes.nix_example(&all_systems(nix, &["flake", "check", "--no-build"]), ""),
    );
}

fn example_flake_release_is_valid_for_alba(nix: NixVersion) {
    let flakes = Flakes::new(nix, "1.97.1");
    let release = json_of(&mut flakes.nix_example(&["eval", "--json"], "#release"));
    assert_eq!(release["name"], "albatros");
    assert_eq!(release["systems"], json!(EXAMPLE_SYSTEMS));
    // No attr: alba's default lookup finds packages.{system}.albatros and, the images not
    // being under packages, legacyPackages.{system}.docker.albatros.
    assert_eq!(release["static"].get("attr"), None, "{release:#}");
    assert_eq!(release["container"].get("attr"), None, "{release:#}");
    assert_eq!(
        release["container"]["targets"].as_array().map(Vec::len),
        Some(2)
    );
    for (system, architecture) in [
        ("aarch64-linux", "arm64"),
        ("armv6l-linux", "arm"),
        ("i686-linux", "386"),
        ("x86_64-linux", "amd64"),
    ] {
        let mut command = flakes.nix_example(
            &["eval", "--json"],
            &format!("#legacyPackages.{system}.docker"),
        );
        let images = json_of(command.args([
            "--apply",
            "d: builtins.mapAttrs (n: i: { inherit (i) name architecture; \
             contents = map (p: p.name) i.contents; drv = builtins.isString i.drvPath; }) d",
        ]));
        assert_eq!(
            images,
            json!({
                "albatros": { "name": "albatros.tar.gz", "architecture": architecture,
                              "contents": ["albatros-0.9"], "drv": true },
                "albatros-stream": { "name": "stream-albatros", "architecture": architecture,
                                     "contents": ["albatros-0.9"], "drv": true },
            }),
            "{system}"
        );
        let static_bin = json_of(&mut flakes.nix_example(
            &["eval", "--json"],
            &format!("#packages.{system}.albatros.name"),
        ));
        assert_eq!(static_bin, json!("albatros-0.9"));
    }
}

nix_tests!(
    project_flake_shows_and_checks,
    project_flake_outputs_evaluate,
    package_source_is_only_what_the_build_reads,
    package_refuses_a_too_old_rustc,
    example_flake_shows_and_checks,
    example_flake_release_is_valid_for_alba,
);
