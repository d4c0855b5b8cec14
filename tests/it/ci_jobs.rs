//! The release jobs of `examples/ci/` (Woodpecker, GitHub/Forgejo Actions, GitLab CI), run as
//! written.
//!
//! Each file is parsed with a YAML parser; the test picks the jobs its CI would start for a
//! tag `v0.9` and for a manual run on a branch (reading the file's own `when`, `on`/`if` and
//! `rules`), takes their shell steps out with the environment the file declares, and runs them
//! with bash the way that CI does (Woodpecker: its `$${…}` escape undone, `set -e`, each
//! command echoed; Actions: `bash --noprofile --norc -eo pipefail`; GitLab: one bash with
//! `set -eo pipefail`), in a "checkout": a git repository at the tag holding a fixture flake.
//!
//! Swapped for this machine, and nothing else:
//! - **the project**: a fixture flake (tests/common/fixtures.rs) that releases static binaries
//!   and images for four systems; its `release` description lists the test's Garage bucket and
//!   its htpasswd registry as targets, so the job files (which hold no URL) publish there;
//! - **`.#alba`**: the fixture cannot build alba (no nixpkgs offline), so its
//!   `apps.x86_64-linux.alba` is a store path built by `/bin/sh` holding a two-line script
//!   that execs the alba binary under test (`CARGO_BIN_EXE_alba`); `nix run` runs it as it
//!   runs any flake app;
//! - **secrets**: the Garage test key and the registry's user and password, given where each
//!   CI puts them (Woodpecker `from_secret`, `${{ secrets.X }}`, GitLab CI/CD variables);
//! - **Nix**: Debian 12's Nix 2.8 on the host and Nix 2.26 in the trixie chroot (closer to
//!   the current Nix of the `nixos/nix` image and install-nix-action), each test once with
//!   both (`nix_tests!`); settings: the job's `NIX_CONFIG` plus tests/common/nix.rs's
//!   (offline, no build users, no sandbox, extra platforms);
//! - **the CI's own variables** (`CI_COMMIT_TAG`, `GITHUB_REF_NAME`, …), set as the CI sets
//!   them. Steps that are actions (`uses:` checkout, install-nix-action, upload-artifact) are
//!   not run; the test checks that they are there and keep the report.
//!
//! Each CI's test asserts: the release is published (binaries read back through Garage's
//! website endpoint, the image index with skopeo), the JSON report exists and parses, the
//! password is nowhere in the log or report; with a wrong password the step fails, the log
//! says authentication failed, and no tag reaches the registry; the dry run writes nothing.

use crate::common;
use crate::nix_tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::fixtures::{self, FlakeFixture, WrittenFlake};
use common::{Garage, NixVersion, Registry};
use serde_json::Value as Json;
use serde_yaml_ng::{Mapping, Value};

mod runner;
use runner::{JobRun, Runner};

const USER: &str = "releaser";
const PASSWORD: &str = "ci-secret-9f3b7c";
const WRONG_PASSWORD: &str = "not-the-secret-4d1e";
const NAME: &str = "albatros";
const REPORT: &str = "alba-report.json";
/// Upper bound for one step (a release here takes seconds).
const STEP_TIMEOUT_SECS: &str = "300";

/// The CI systems with a job file in examples/ci/.
#[derive(Clone, Copy, Debug)]
enum Ci {
    Woodpecker,
    Actions,
    GitLab,
}

/// What starts a pipeline.
#[derive(Clone, Debug)]
enum Event {
    /// A pushed tag, e.g. `v0.9`.
    Tag(String),
    /// A manual run on branch `main`, with the version asked for.
    Manual { version: String },
}

/// One shell step, as its CI runs it.
struct Step {
    /// The step's or job's name.
    name: String,
    /// How the CI starts the shell; the script file is the last argument.
    shell: Vec<&'static str>,
    /// The script, after the CI's own pre-processing.
    script: String,
    /// The environment the file declares for it, secrets resolved.
    env: Vec<(String, String)>,
}

/// The shell steps a CI runs for one event: `steps` in order until one fails, then `always`.
struct Job {
    steps: Vec<Step>,
    always: Vec<Step>,
}

/// The secrets of the project, by the environment name the job files give them.
struct Secrets(BTreeMap<String, String>);

impl Secrets {
    fn new(garage: &Garage, password: &str) -> Secrets {
        Secrets(BTreeMap::from([
            ("AWS_ACCESS_KEY_ID".into(), garage.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), garage.secret.clone()),
            ("REGISTRY_USER".into(), USER.into()),
            ("REGISTRY_PASSWORD".into(), password.into()),
        ]))
    }

    /// A secret by name; secret stores match names case-insensitively (Woodpecker's are
    /// lower case).
    fn get(&self, name: &str) -> String {
        self.0
            .get(&name.to_ascii_uppercase())
            .unwrap_or_else(|| panic!("the job asks for a secret `{name}` the test has not"))
            .clone()
    }
}

impl Ci {
    fn file(self) -> PathBuf {
        let name = match self {
            Ci::Woodpecker => "woodpecker.yml",
            Ci::Actions => "github-actions.yml",
            Ci::GitLab => "gitlab-ci.yml",
        };
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/ci")
            .join(name)
    }

    fn parse(self) -> Value {
        let path = self.file();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
    }

    /// The shell steps this CI runs for `event`.
    fn job(self, event: &Event, secrets: &Secrets) -> Job {
        let doc = self.parse();
        match self {
            Ci::Woodpecker => woodpecker::job(&doc, event, secrets),
            Ci::Actions => actions::job(&doc, event, secrets),
            Ci::GitLab => gitlab::job(&doc, event, secrets),
        }
    }

    /// The variables the CI itself sets for `event` (the part the job files read).
    fn predefined(self, event: &Event) -> Vec<(String, String)> {
        let pairs: Vec<(&str, String)> = match (self, event) {
            (Ci::Woodpecker, Event::Tag(tag)) => vec![
                ("CI", "woodpecker".into()),
                ("CI_PIPELINE_EVENT", "tag".into()),
                ("CI_COMMIT_TAG", tag.clone()),
                ("CI_COMMIT_REF", format!("refs/tags/{tag}")),
            ],
            // A variable given in "Run pipeline" reaches every step's environment.
            (Ci::Woodpecker, Event::Manual { version }) => vec![
                ("CI", "woodpecker".into()),
                ("CI_PIPELINE_EVENT", "manual".into()),
                ("CI_COMMIT_BRANCH", "main".into()),
                ("CI_COMMIT_REF", "refs/heads/main".into()),
                ("VERSION", version.clone()),
            ],
            (Ci::Actions, Event::Tag(tag)) => vec![
                ("CI", "true".into()),
                ("GITHUB_ACTIONS", "true".into()),
                ("GITHUB_EVENT_NAME", "push".into()),
                ("GITHUB_REF", format!("refs/tags/{tag}")),
                ("GITHUB_REF_NAME", tag.clone()),
                ("GITHUB_REF_TYPE", "tag".into()),
            ],
            (Ci::Actions, Event::Manual { .. }) => vec![
                ("CI", "true".into()),
                ("GITHUB_ACTIONS", "true".into()),
                ("GITHUB_EVENT_NAME", "workflow_dispatch".into()),
                ("GITHUB_REF", "refs/heads/main".into()),
                ("GITHUB_REF_NAME", "main".into()),
                ("GITHUB_REF_TYPE", "branch".into()),
            ],
            (Ci::GitLab, Event::Tag(tag)) => vec![
                ("CI", "true".into()),
                ("GITLAB_CI", "true".into()),
                ("CI_PIPELINE_SOURCE", "push".into()),
                ("CI_COMMIT_TAG", tag.clone()),
                ("CI_COMMIT_REF_NAME", tag.clone()),
            ],
            (Ci::GitLab, Event::Manual { .. }) => vec![
                ("CI", "true".into()),
                ("GITLAB_CI", "true".into()),
                ("CI_PIPELINE_SOURCE", "push".into()),
                ("CI_COMMIT_BRANCH", "main".into()),
                ("CI_COMMIT_REF_NAME", "main".into()),
            ],
        };
        pairs.into_iter().map(|(k, v)| (k.into(), v)).collect()
    }
}

/// A YAML string, or a panic naming `what`.
fn string<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value:?}"))
}

/// A YAML mapping, or a panic naming `what`.
fn mapping<'a>(value: &'a Value, what: &str) -> &'a Mapping {
    value
        .as_mapping()
        .unwrap_or_else(|| panic!("{what} is not a mapping: {value:?}"))
}

/// A string or a list of strings as a list.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(items) => items
            .iter()
            .map(|i| string(i, "a list item").into())
            .collect(),
        Value::Null => Vec::new(),
        other => panic!("expected a string or a list of strings: {other:?}"),
    }
}

/// A mapping's entries as (string key, value).
fn entries(map: &Mapping) -> impl Iterator<Item = (&str, &Value)> {
    map.iter().map(|(k, v)| (string(k, "a key"), v))
}

/// `'text'`, quoted for the shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Woodpecker: `steps` with `when` (event, ref, status), `environment` with `from_secret`.
mod woodpecker;

/// GitHub/Forgejo Actions: `on`, jobs with `if: github.event_name == '…'`, `run` steps with
/// `env` whose values are `${{ secrets.X }}` or `${{ inputs.X }}`.
mod actions;

/// GitLab CI: jobs with `extends`, `rules` (`if: $VAR` / `$VAR =~ /^prefix/`, `when:
/// manual`), `variables`, `script`, `artifacts`; CI/CD variables reach every job.
mod gitlab;

/// The test's services and the checkout of the project at tag v0.9.
struct World {
    nix: NixVersion,
    garage: Garage,
    registry: Registry,
    flake: WrittenFlake,
    _dir: tempfile::TempDir,
}

impl World {
    fn start(nix: NixVersion) -> Option<World> {
        if !common::skopeo_available() {
            return None;
        }
        common::require_program("git", "apt-get install git")?;
        let garage = Garage::try_start()?;
        let registry = Registry::try_start_with_auth(USER, PASSWORD)?;
        garage.create_bucket("download");
        let dir = tempfile::Builder::new()
            .prefix("alba-ci")
            .tempdir()
            .expect("temp dir");
        let flake = checkout(&dir.path().join("checkout"), &garage, &registry, nix);
        Some(World {
            nix,
            garage,
            registry,
            flake,
            _dir: dir,
        })
    }

    /// Runs `ci`'s jobs for `event` with `password` as the registry secret.
    fn run(&self, ci: Ci, event: &Event, password: &str) -> JobRun {
        let secrets = Secrets::new(&self.garage, password);
        let job = ci.job(event, &secrets);
        assert!(
            !job.steps.is_empty(),
            "{ci:?} runs a shell step for {event:?}"
        );
        let runner = Runner {
            checkout: self.flake.dir.clone(),
            scratch: tempfile::tempdir().expect("temp dir"),
            ci,
            nix: self.nix,
        };
        let _ = std::fs::remove_file(self.flake.dir.join(REPORT));
        let run = runner.run(&job, event);
        let which = if password == PASSWORD {
            "right"
        } else {
            "wrong"
        };
        let nix = self.nix;
        eprintln!(
            "--- {ci:?} {event:?} {nix} ({which} password)\n{}",
            run.log()
        );
        run
    }

    /// The report the job left, parsed; checks it holds no secret and, on Woodpecker (no
    /// artifact store), that the last step printed it into the log.
    fn report(&self, ci: Ci, run: &JobRun) -> Json {
        let path = self.flake.dir.join(REPORT);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("the job left no {REPORT}: {e}\n{}", run.log()));
        assert_no_secret(&text, &self.garage, "the report");
        if let Ci::Woodpecker = ci {
            let (_, last) = run.outputs.last().expect("a step ran");
            let shown = String::from_utf8_lossy(&last.stdout);
            assert!(
                shown.contains(&text),
                "the last step shows the report:\n{}",
                run.log()
            );
        }
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{REPORT} is not JSON: {e}\n{text}\n{}", run.log()))
    }

    /// HTTP status of the registry's manifest for `tag`.
    fn registry_tag(&self, tag: &str) -> u16 {
        let accept = "application/vnd.oci.image.index.v1+json";
        self.registry
            .get(&format!("/v2/{NAME}/manifests/{tag}"), accept)
            .0
    }
}

/// Writes the project: the fixture flake with its targets, the `alba` app, one git commit
/// tagged v0.9.
fn checkout(dir: &Path, garage: &Garage, registry: &Registry, nix: NixVersion) -> WrittenFlake {
    let flake = FlakeFixture::new(NAME, &fixtures::SYSTEMS)
        .static_targets(&[&garage.s3_url("download")])
        .container(&[&registry.url(NAME)])
        .write(dir);
    let alba = match nix {
        NixVersion::Host => env!("CARGO_BIN_EXE_alba"),
        NixVersion::Chroot => common::nix_chroot::ALBA_INSIDE,
    };
    add_alba_app(dir, alba);
    common::git_commit_all(dir, "release me");
    common::git(dir, &["tag", "v0.9"]);
    flake
}

/// Gives the fixture flake `apps.x86_64-linux.alba`: a store copy of a script that execs
/// `alba`, the binary under test (a flake app's program must be in the store).
fn add_alba_app(dir: &Path, alba: &str) {
    let script = format!("#!/bin/sh\nexec {} \"$@\"\n", shell_quote(alba));
    let path = dir.join("alba-app");
    std::fs::write(&path, script).expect("could not write the app script");
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&path, mode).expect("chmod the app script");
    let app = concat!(
        "    apps.x86_64-linux.alba = { type = \"app\"; program = \"${derivation {\n",
        "      system = \"x86_64-linux\"; name = \"alba\"; builder = \"/bin/sh\";\n",
        "      args = [ \"-c\" \"/bin/cp ${./alba-app} $out\" ];\n",
        "    }}\"; };\n",
    );
    let flake_nix = dir.join("flake.nix");
    let text = std::fs::read_to_string(&flake_nix).expect("read flake.nix");
    let anchor = "outputs = { self }: {\n";
    assert!(
        text.contains(anchor),
        "the fixture's flake.nix changed shape:\n{text}"
    );
    let text = text.replacen(anchor, &format!("{anchor}{app}"), 1);
    std::fs::write(&flake_nix, text).expect("write flake.nix");
}

/// Panics if a secret (registry passwords, the S3 secret key) is in `text`.
fn assert_no_secret(text: &str, garage: &Garage, what: &str) {
    for secret in [PASSWORD, WRONG_PASSWORD, garage.secret.as_str()] {
        assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
    }
}

/// The binaries of `version`, read through Garage's website as a download page does.
fn assert_static_published(world: &World, version: &str) {
    let (status, _, body) = world
        .garage
        .web_get("download", &format!("/df-dist-v1/{NAME}"));
    assert_eq!(status, 200, "the name document is served");
    let doc: Json = serde_json::from_slice(&body).expect("the name document is JSON");
    assert!(
        doc["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .any(|t| t == version),
        "{version} is listed: {doc}"
    );
    let tag_url = format!("/df-dist-v1/{NAME}/{version}");
    let (status, _, body) = world.garage.web_get("download", &tag_url);
    assert_eq!(status, 200, "GET {tag_url}");
    let doc: Json = serde_json::from_slice(&body).expect("the tag document is JSON");
    let flavors = doc["flavors"].as_array().expect("flavors");
    assert_eq!(flavors.len(), fixtures::SYSTEMS.len(), "{doc}");
    for system in fixtures::SYSTEMS {
        let (os, arch, _) = fixtures::platform(system);
        let url = format!("{tag_url}/{os}/{arch}/{NAME}");
        let (status, _, body) = world.garage.web_get("download", &url);
        assert_eq!(status, 200, "GET {url}");
        assert_eq!(body, world.flake.expected[system][NAME], "{url}");
    }
}

/// The image index of `version`, read with skopeo (with the registry's credentials).
fn assert_image_published(world: &World, version: &str) {
    let reference = format!("docker://{}/{NAME}:{version}", world.registry.host());
    let mut command = common::skopeo::skopeo();
    command.args(["inspect", "--raw", "--tls-verify=false"]);
    command.args(["--creds", &format!("{USER}:{PASSWORD}"), &reference]);
    let raw = common::run_ok(&mut command);
    let index: Json = serde_json::from_slice(&raw).expect("the index is JSON");
    let expected: BTreeSet<String> = fixtures::SYSTEMS
        .iter()
        .map(|s| fixtures::platform_string(s))
        .collect();
    assert_eq!(common::index_platforms(&index), expected, "{index}");
}

/// The whole story for one CI: release on tag v0.9, a failing release on v1.0 with a wrong
/// password, and a manual dry run.
fn release_dry_run_and_wrong_password(ci: Ci, nix: NixVersion) {
    let Some(world) = World::start(nix) else {
        return;
    };
    releases_on_a_tag(&world, ci);
    fails_with_a_wrong_password(&world, ci);
    dry_run_writes_nothing(&world, ci);
}

/// Tag v0.9: everything is published, the log ends with the outcome, no secret shows.
fn releases_on_a_tag(world: &World, ci: Ci) {
    let run = world.run(ci, &Event::Tag("v0.9".into()), PASSWORD);
    let log = run.log();
    assert!(run.ok, "{ci:?}: the release job failed\n{log}");
    assert_no_secret(&log, &world.garage, "the job log");
    assert!(
        log.contains("✅ released albatros 0.9 to 2 targets"),
        "{log}"
    );
    let report = world.report(ci, &run);
    let targets = report["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 2, "{report}");
    assert!(report["error"].is_null(), "{report}");
    assert_static_published(world, "0.9");
    assert_image_published(world, "0.9");
}

/// Tag v1.0 with a wrong registry password: the job fails and says why, no tag is written.
fn fails_with_a_wrong_password(world: &World, ci: Ci) {
    let run = world.run(ci, &Event::Tag("v1.0".into()), WRONG_PASSWORD);
    let log = run.log();
    assert!(!run.ok, "{ci:?}: a wrong password must fail the job\n{log}");
    assert_no_secret(&log, &world.garage, "the failed job's log");
    assert!(
        log.contains("authentication failed"),
        "names the problem:\n{log}"
    );
    assert!(
        log.contains(&world.registry.host()),
        "names the registry:\n{log}"
    );
    assert!(log.contains("❌ release of albatros 1.0 failed"), "{log}");
    let report = world.report(ci, &run);
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("authentication failed"),
        "the report says why: {report}"
    );
    assert_eq!(
        world.registry_tag("1.0"),
        404,
        "no tag after a failed login"
    );
    // Every target is checked before anything is written: the binaries did not go out either.
    let (status, _, _) = world
        .garage
        .web_get("download", &format!("/df-dist-v1/{NAME}/1.0"));
    assert_eq!(status, 404, "a refused login writes no binaries");
    assert_eq!(world.registry_tag("0.9"), 200, "the earlier release stays");
}

/// A manual run for version 2.0: the plan is printed and reported, nothing is written.
fn dry_run_writes_nothing(world: &World, ci: Ci) {
    let dry = Event::Manual {
        version: "2.0".into(),
    };
    let run = world.run(ci, &dry, PASSWORD);
    let log = run.log();
    assert!(run.ok, "{ci:?}: the dry run failed\n{log}");
    assert_no_secret(&log, &world.garage, "the dry run's log");
    assert!(
        log.contains("✅ dry run of albatros 2.0 on 2 targets"),
        "{log}"
    );
    let report = world.report(ci, &run);
    for target in report["targets"].as_array().expect("targets") {
        assert_eq!(target["dry_run"], true, "{report}");
        assert_eq!(target["tags"][0], "2.0", "the version asked for: {report}");
    }
    assert_eq!(world.registry_tag("2.0"), 404, "a dry run writes no tag");
    let tag_document = format!("/df-dist-v1/{NAME}/2.0");
    let (status, _, _) = world.garage.web_get("download", &tag_document);
    assert_eq!(status, 404, "a dry run writes no tag document");
}

fn woodpecker_release_job_publishes_and_fails_on_a_wrong_password(nix: NixVersion) {
    release_dry_run_and_wrong_password(Ci::Woodpecker, nix);
}

fn actions_release_workflow_publishes_and_fails_on_a_wrong_password(nix: NixVersion) {
    release_dry_run_and_wrong_password(Ci::Actions, nix);
}

fn gitlab_release_job_publishes_and_fails_on_a_wrong_password(nix: NixVersion) {
    release_dry_run_and_wrong_password(Ci::GitLab, nix);
}

nix_tests!(
    woodpecker_release_job_publishes_and_fails_on_a_wrong_password,
    actions_release_workflow_publishes_and_fails_on_a_wrong_password,
    gitlab_release_job_publishes_and_fails_on_a_wrong_password,
);

/// README's "alba in CI" shows GitLab's release script, character for character.
#[test]
fn readme_shows_the_gitlab_release_script() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let section = readme
        .split("## alba in CI\n")
        .nth(1)
        .expect("README has an \"alba in CI\" section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("  ```").next())
        .expect("a shell block in it");
    let shown: String = block
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
        .collect();
    let doc = Ci::GitLab.parse();
    let script = strings(&doc["alba-release"]["script"]).join("\n");
    assert_eq!(
        shown, script,
        "README's script differs from examples/ci/gitlab-ci.yml"
    );
}
