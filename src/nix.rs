//! The Nix command line: `flake metadata`, `eval --json` and one `build --json` call.
//!
//! Nix prints `nix build --json` results in its own order (2.8 sorts them by derivation
//! path), so results are matched to installables by `drvPath`, never by position.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::bail_input;
use crate::error::input;

/// How many of Nix's last stderr lines an error quotes.
const TAIL_LINES: usize = 20;

/// A way to run Nix: the binary and the `--option NAME VALUE` pairs to pass through.
#[derive(Debug, Clone)]
pub struct Nix {
    bin: PathBuf,
    options: Vec<(String, String)>,
    /// Forward Nix's own progress lines to stderr.
    pub show_progress: bool,
    /// Set once Nix's "Git tree … is dirty" warning was shown: every Nix call repeats it.
    dirty_warned: Arc<AtomicBool>,
}

/// A locked flake, from `nix flake metadata --json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Flake {
    /// The locked URL every later Nix call uses.
    pub url: String,
    /// The git revision; `None` for a dirty git tree or a source without one (`path:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// True for a git tree with uncommitted changes: what it builds matches no commit.
    pub dirty: bool,
    /// The source's `lastModified` (seconds since the epoch), where Nix knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<i64>,
    /// The flake's `description`, shown on download pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The local folder of a `git+file:` flake, for `git status`.
    #[serde(skip)]
    pub local_git: Option<PathBuf>,
    /// The flake itself and its locked inputs (for provenance).
    #[serde(skip)]
    pub resolved: Vec<crate::provenance::Locked>,
}

/// The fields of `nix flake metadata --json` alba reads. Nix 2.8 and 2.26 both give `url`,
/// `locked` and, for a clean git tree, `revision`; a dirty tree has no `revision` (2.26 adds
/// `dirtyRevision`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    url: String,
    revision: Option<String>,
    dirty_revision: Option<String>,
    last_modified: Option<i64>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    locked: serde_json::Value,
}

impl Flake {
    fn from_metadata(json: &str) -> Result<Flake> {
        let meta: Metadata =
            serde_json::from_str(json).context("parsing `nix flake metadata --json`")?;
        let is_git = meta.locked["type"].as_str() == Some("git");
        // Nix 2.8 keeps a subflake's `?dir=sub` in `locked.url`; 2.26 moves it to `locked.dir`.
        let local_git = meta.locked["url"]
            .as_str()
            .and_then(|u| u.strip_prefix("file://"))
            .and_then(|u| u.split('?').next())
            .filter(|_| is_git)
            .map(PathBuf::from);
        let whole: serde_json::Value =
            serde_json::from_str(json).context("parsing `nix flake metadata --json`")?;
        Ok(Flake {
            resolved: crate::provenance::lock::resolved(&whole),
            dirty: meta.dirty_revision.is_some() || (is_git && meta.revision.is_none()),
            url: meta.url,
            revision: meta.revision,
            last_modified: meta.last_modified,
            description: meta.description,
            local_git,
        })
    }
}

/// One built installable: the attribute found, its derivation, its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltPath {
    /// The attribute path built.
    pub attr: String,
    /// Its derivation.
    pub drv: String,
    /// Its output store path.
    pub out: PathBuf,
}

/// One result of `nix build --json`.
#[derive(Debug, Deserialize)]
struct BuildResult {
    #[serde(rename = "drvPath")]
    drv_path: String,
    outputs: BTreeMap<String, String>,
}

impl Nix {
    /// Finds `nix` (an explicit path, else on `PATH`); a missing Nix is an input error.
    pub fn find(explicit: Option<&Path>, options: Vec<(String, String)>) -> Result<Nix> {
        let bin = match explicit {
            Some(p) if p.is_file() => p.to_path_buf(),
            Some(p) => bail_input!("--nix {}: no such file; give the path of the nix binary", p.display()),
            None => which::which("nix").map_err(|_| {
                input("nix was not found on PATH: install Nix (Debian: apt-get install nix-bin) or pass --nix /path/to/nix")
            })?,
        };
        Ok(Nix {
            bin,
            options,
            show_progress: true,
            dirty_warned: Arc::default(),
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--extra-experimental-features", "nix-command flakes"]);
        for (name, value) in &self.options {
            cmd.args(["--option", name, value]);
        }
        cmd.args(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.kill_on_drop(true);
        cmd
    }

    /// Runs Nix, forwarding its stderr when asked, and returns stdout; a failure quotes the tail.
    async fn run(&self, what: &str, args: &[&str]) -> Result<String> {
        let mut child = self
            .command(args)
            .spawn()
            .with_context(|| format!("could not start {}", self.bin.display()))?;
        let stdout = child.stdout.take().context("nix stdout")?;
        let stderr = child.stderr.take().context("nix stderr")?;
        let forward = self.show_progress.then(|| Arc::clone(&self.dirty_warned));
        let tail = tokio::spawn(collect_tail(stderr, forward));
        let mut out = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut BufReader::new(stdout), &mut out).await?;
        let status = child.wait().await?;
        let tail = tail.await.unwrap_or_default();
        if !status.success() {
            bail_input!(
                "{what} failed ({status}). Nix said:\n{}{}",
                indent(&tail),
                hint(&tail)
            );
        }
        Ok(out)
    }

    /// Locks a flake reference (so every later call sees the same source) and says where its
    /// source stands: revision, time, and whether its git tree has uncommitted changes.
    pub async fn lock(&self, flake: &str) -> Result<Flake> {
        let out = self
            .run(
                &format!("reading flake {flake}"),
                &["flake", "metadata", "--json", flake],
            )
            .await?;
        Flake::from_metadata(&out)
    }

    /// Evaluates `<flake>#<attr>` to JSON text.
    pub async fn eval_json(&self, flake: &str, attr: &str) -> Result<String> {
        let installable = format!("{flake}#{attr}");
        self.run(
            &format!("evaluating {installable}"),
            &["eval", "--json", &installable],
        )
        .await
    }

    /// For each installable, the first of its candidate attribute paths that the flake has,
    /// and its derivation path, in one evaluation.
    pub async fn drv_paths(
        &self,
        flake_url: &str,
        candidates: &[Vec<String>],
    ) -> Result<Vec<(String, String)>> {
        let expr = drv_paths_expr(flake_url, candidates);
        let out = self
            .run(
                &format!("evaluating the release's attributes in {flake_url}"),
                &["eval", "--impure", "--json", "--expr", &expr],
            )
            .await?;
        let values: Vec<serde_json::Value> =
            serde_json::from_str(&out).context("parsing the drvPath evaluation")?;
        let mut found = Vec::new();
        for (tried, value) in candidates.iter().zip(values) {
            let shown = tried.join(" or ");
            let (Some(attr), drv) = (value["attr"].as_str(), &value["drv"]) else {
                bail_input!(
                    "the flake has no attribute {shown}; set `attr`/`attrs` in the release description or add the package"
                );
            };
            let Some(drv) = drv.as_str() else {
                bail_input!(
                    "the flake attribute {attr:?} is not a derivation; point `attr` at a package"
                );
            };
            found.push((attr.to_string(), drv.to_string()));
        }
        Ok(found)
    }

    /// Builds every installable in one `nix build --json --no-link` call; returns store paths
    /// in `candidates` order (each installable: its attribute paths to try, first found wins).
    pub async fn build(&self, flake_url: &str, candidates: &[Vec<String>]) -> Result<Vec<PathBuf>> {
        let built = self.build_all(flake_url, candidates).await?;
        Ok(built.into_iter().map(|b| b.out).collect())
    }

    /// [`Nix::build`], also telling each installable's attribute and derivation.
    pub async fn build_all(
        &self,
        flake_url: &str,
        candidates: &[Vec<String>],
    ) -> Result<Vec<BuiltPath>> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let found = self.drv_paths(flake_url, candidates).await?;
        let installables: Vec<String> = found
            .iter()
            .map(|(attr, _)| format!("{flake_url}#{attr}"))
            .collect();
        let mut args = vec!["build", "--json", "--no-link"];
        args.extend(installables.iter().map(String::as_str));
        let out = self.run("nix build", &args).await?;
        let results: Vec<BuildResult> =
            serde_json::from_str(&out).context("parsing `nix build --json`")?;
        let outs = match_results(&found, results)?;
        let built = found.into_iter().zip(outs);
        Ok(built
            .map(|((attr, drv), out)| BuiltPath { attr, drv, out })
            .collect())
    }

    /// `nix --version`'s line (`nix (Nix) 2.8.0`).
    pub async fn version(&self) -> Result<String> {
        let out = self.run("nix --version", &["--version"]).await?;
        Ok(out.trim().to_string())
    }
}

/// A Nix expression giving, per installable, `{ attr; drv; }` for the first candidate path the
/// flake has (`drv` is `false` when it is not a derivation), or `null` when it has none.
fn drv_paths_expr(flake_url: &str, candidates: &[Vec<String>]) -> String {
    let path = |a: &String| {
        let parts: Vec<String> = a.split('.').map(nix_string).collect();
        format!(
            "{{ attr = {}; path = [ {} ]; }}",
            nix_string(a),
            parts.join(" ")
        )
    };
    let lists: Vec<String> = candidates
        .iter()
        .map(|c| format!("[ {} ]", c.iter().map(path).collect::<Vec<_>>().join(" ")))
        .collect();
    format!(
        r#"let
  outputs = (builtins.getFlake {url}).outputs;
  step = a: n: if builtins.isAttrs a && a ? ${{n}} then a.${{n}} else null;
  get = c: builtins.foldl' step outputs c.path;
  info = c: v: {{ inherit (c) attr; drv = if builtins.isAttrs v && v ? drvPath then v.drvPath else false; }};
  first = cs: if cs == [ ] then null
    else let v = get (builtins.head cs); in
      if v == null then first (builtins.tail cs) else info (builtins.head cs) v;
in map first [ {lists} ]"#,
        url = nix_string(flake_url),
        lists = lists.join(" ")
    )
}

/// A Nix string literal (JSON escaping is valid Nix for these characters; `$` is escaped too).
fn nix_string(text: &str) -> String {
    serde_json::to_string(text)
        .unwrap_or_default()
        .replace('$', "\\$")
}

/// Matches build results to (attribute, derivation) pairs by derivation path.
fn match_results(found: &[(String, String)], results: Vec<BuildResult>) -> Result<Vec<PathBuf>> {
    let by_drv: BTreeMap<&str, &BuildResult> =
        results.iter().map(|r| (r.drv_path.as_str(), r)).collect();
    let mut paths = Vec::new();
    for (attr, drv) in found {
        let result = by_drv
            .get(drv.as_str())
            .with_context(|| format!("nix build gave no result for {attr} ({drv})"))?;
        let out = result
            .outputs
            .get("out")
            .or_else(|| result.outputs.values().next())
            .with_context(|| format!("nix build gave no output path for {attr}"))?;
        paths.push(PathBuf::from(out));
    }
    Ok(paths)
}

/// Reads Nix's stderr line by line, forwarding it when asked (`Some`: whether the dirty-tree
/// warning was shown already), keeping the last lines for errors.
async fn collect_tail(
    stderr: tokio::process::ChildStderr,
    forward: Option<Arc<AtomicBool>>,
) -> String {
    let mut lines = BufReader::new(stderr).lines();
    let mut tail = VecDeque::new();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(warned) = &forward {
            let repeated = is_dirty_warning(&line) && warned.swap(true, Ordering::Relaxed);
            if !repeated {
                eprintln!("nix: {line}");
            }
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    Vec::from(tail).join("\n")
}

/// Nix's `warning: Git tree '/src' is dirty` (any version, with or without colours).
fn is_dirty_warning(line: &str) -> bool {
    line.contains("Git tree '") && line.trim_end().ends_with("is dirty")
}

/// What to check, for the failures whose cause Nix's words leave to the reader: a remote
/// builder that could not be reached or used (Nix 2.8 and 2.26 both say these lines).
fn hint(tail: &str) -> &'static str {
    if tail.contains("Failed to find a machine for remote build")
        || tail.contains("cannot build on '")
    {
        return "\nA remote builder could not build it: check that the machine in `builders` \
                (--nix-option builders or nix.conf) is up and claims the system, and that `ssh` \
                reaches it without a prompt (its host key known; NIX_SSHOPTS for a port).";
    }
    ""
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One store path of a closure, from `nix path-info --json --recursive`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    /// The store path.
    pub path: String,
    /// Its NAR hash as Nix prints it (`sha256:<nix32>` in 2.8, `sha256-<base64>` in 2.19+).
    pub nar_hash: String,
    /// Its NAR size.
    pub nar_size: u64,
    /// The store paths it references (itself excluded).
    pub references: Vec<String>,
}

impl Nix {
    /// The runtime closures of `paths`: every store path they reach, with hashes and references.
    pub async fn path_infos(&self, paths: &[PathBuf]) -> Result<Vec<PathInfo>> {
        self.path_info_call(paths, true).await
    }

    /// What the local store knows of `paths` themselves (no closure), in one call; paths
    /// that are not on this machine are left out rather than failing the call.
    pub async fn known_path_infos(&self, paths: &[PathBuf]) -> Result<Vec<PathInfo>> {
        let present: Vec<PathBuf> = paths.iter().filter(|p| p.exists()).cloned().collect();
        self.path_info_call(&present, false).await
    }

    async fn path_info_call(&self, paths: &[PathBuf], recursive: bool) -> Result<Vec<PathInfo>> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec!["path-info".to_string(), "--json".into()];
        if recursive {
            args.push("--recursive".into());
        }
        args.extend(paths.iter().map(|p| p.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run("nix path-info", &args).await?;
        parse_path_infos(&out)
    }
}

/// Parses `nix path-info --json`: a list of objects with `path` (Nix 2.8–2.18) or an object
/// keyed by store path (Nix 2.19 and later).
fn parse_path_infos(json: &str) -> Result<Vec<PathInfo>> {
    let value: serde_json::Value =
        serde_json::from_str(json).context("parsing `nix path-info --json`")?;
    let entries: Vec<(String, &serde_json::Value)> = match &value {
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|i| Some((i["path"].as_str()?.to_string(), i)))
            .collect(),
        serde_json::Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
        _ => anyhow::bail!("`nix path-info --json` printed neither a list nor an object"),
    };
    let mut infos: Vec<PathInfo> = entries
        .into_iter()
        .map(|(path, v)| {
            let mut references: Vec<String> = v["references"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str())
                .map(|r| store_path(r, &path))
                .filter(|r| *r != path)
                .collect();
            references.sort();
            PathInfo {
                nar_hash: v["narHash"].as_str().unwrap_or_default().to_string(),
                nar_size: v["narSize"].as_u64().unwrap_or(0),
                references,
                path,
            }
        })
        .collect();
    infos.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(infos)
}

/// A reference as a full store path (some Nix versions print base names only).
fn store_path(reference: &str, beside: &str) -> String {
    if reference.starts_with('/') {
        return reference.to_string();
    }
    let dir = Path::new(beside)
        .parent()
        .unwrap_or(Path::new("/nix/store"));
    dir.join(reference).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_builder_failure_says_what_to_check() {
        let tail = "Failed to find a machine for remote build!\nerror: a 'aarch64-linux' with features {} is required";
        assert!(hint(tail).contains("--nix-option builders"));
        assert_eq!(hint("error: builder for '/nix/store/x.drv' failed"), "");
    }

    #[test]
    fn matches_by_drv_path_not_position() {
        let found = vec![
            ("a".to_string(), "/nix/store/zzz-a.drv".to_string()),
            ("b".to_string(), "/nix/store/aaa-b.drv".to_string()),
        ];
        let results = vec![
            BuildResult {
                drv_path: "/nix/store/aaa-b.drv".into(),
                outputs: [("out".into(), "/nix/store/b".into())].into(),
            },
            BuildResult {
                drv_path: "/nix/store/zzz-a.drv".into(),
                outputs: [("out".into(), "/nix/store/a".into())].into(),
            },
        ];
        let paths = match_results(&found, results).unwrap();
        assert_eq!(
            paths,
            [PathBuf::from("/nix/store/a"), PathBuf::from("/nix/store/b")]
        );
    }

    #[test]
    fn expression_quotes_attributes() {
        let e = drv_paths_expr(
            "path:/x",
            &[vec![
                "packages.x86_64-linux.a".into(),
                "legacyPackages.x86_64-linux.a".into(),
            ]],
        );
        assert!(e.contains(r#"[ "packages" "x86_64-linux" "a" ]"#), "{e}");
        assert!(
            e.contains(r#"[ "legacyPackages" "x86_64-linux" "a" ]"#),
            "{e}"
        );
        assert!(e.contains(r#"getFlake "path:/x""#));
    }

    #[test]
    fn reads_clean_dirty_and_path_metadata() {
        // Nix 2.8, clean git tree.
        let clean = Flake::from_metadata(
            r#"{"url":"git+file:///src?rev=abc","revision":"abc","lastModified":1700000000,
            "locked":{"type":"git","url":"file:///src","rev":"abc"}}"#,
        )
        .unwrap();
        assert!(!clean.dirty);
        assert_eq!(clean.revision.as_deref(), Some("abc"));
        assert_eq!(clean.last_modified, Some(1_700_000_000));
        // Nix 2.8, dirty: no revision.
        let dirty28 = Flake::from_metadata(
            r#"{"url":"git+file:///src","locked":{"type":"git","url":"file:///src"}}"#,
        )
        .unwrap();
        assert!(dirty28.dirty);
        assert_eq!(dirty28.local_git, Some(PathBuf::from("/src")));
        // Nix 2.26, dirty: dirtyRevision.
        let dirty226 = Flake::from_metadata(
            r#"{"url":"git+file:///src","dirtyRevision":"abc-dirty",
            "locked":{"type":"git","url":"file:///src","dirtyRev":"abc-dirty"}}"#,
        )
        .unwrap();
        assert!(dirty226.dirty);
        // A subflake (`?dir=sub`): 2.8 keeps the query in locked.url, 2.26 has locked.dir.
        let sub28 = Flake::from_metadata(
            r#"{"url":"git+file:///src?dir=sub","locked":{"type":"git","url":"file:///src?dir=sub","dir":"sub"}}"#,
        )
        .unwrap();
        assert_eq!(sub28.local_git, Some(PathBuf::from("/src")));
        // A path: flake has no git tree to be dirty.
        let path = Flake::from_metadata(
            r#"{"url":"path:/src?narHash=x","locked":{"type":"path","path":"/src"}}"#,
        )
        .unwrap();
        assert!(!path.dirty && path.revision.is_none());
    }

    #[test]
    fn recognises_the_dirty_warning() {
        assert!(is_dirty_warning("warning: Git tree '/src/alba' is dirty"));
        assert!(is_dirty_warning(
            "\u{1b}[35;1mwarning:\u{1b}[0m Git tree '/x' is dirty"
        ));
        assert!(!is_dirty_warning("building '/nix/store/x.drv'..."));
    }

    #[test]
    fn path_infos_of_both_json_shapes() {
        let old = r#"[{"path":"/nix/store/aaa-hello-2.12","narHash":"sha256:1abc","narSize":10,
            "references":["/nix/store/aaa-hello-2.12","/nix/store/bbb-glibc-2.40"]},
            {"path":"/nix/store/bbb-glibc-2.40","narHash":"sha256:1def","narSize":20,"references":[]}]"#;
        let new = r#"{"/nix/store/bbb-glibc-2.40":{"narHash":"sha256-3q2+7w==","narSize":20,"references":[]},
            "/nix/store/aaa-hello-2.12":{"narHash":"sha256-AAAA","narSize":10,
            "references":["/nix/store/aaa-hello-2.12","/nix/store/bbb-glibc-2.40"]}}"#;
        for json in [old, new] {
            let infos = parse_path_infos(json).unwrap();
            assert_eq!(infos.len(), 2);
            assert_eq!(infos[0].path, "/nix/store/aaa-hello-2.12");
            assert_eq!(infos[0].references, ["/nix/store/bbb-glibc-2.40"]);
            assert_eq!(infos[1].nar_size, 20);
        }
    }
}
