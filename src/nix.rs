//! The Nix command line: `flake metadata`, `eval --json` and one `build --json` call.
//!
//! Nix prints `nix build --json` results in its own order (2.8 sorts them by derivation
//! path), so results are matched to installables by `drvPath`, never by position.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result};
use serde::Deserialize;
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
        let show = self.show_progress;
        let tail = tokio::spawn(collect_tail(stderr, show));
        let mut out = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut BufReader::new(stdout), &mut out).await?;
        let status = child.wait().await?;
        let tail = tail.await.unwrap_or_default();
        if !status.success() {
            bail_input!("{what} failed ({status}). Nix said:\n{}", indent(&tail));
        }
        Ok(out)
    }

    /// The locked URL of a flake reference, so every later call sees the same source.
    pub async fn lock(&self, flake: &str) -> Result<String> {
        #[derive(Deserialize)]
        struct Metadata {
            url: String,
        }
        let out = self
            .run(
                &format!("reading flake {flake}"),
                &["flake", "metadata", "--json", flake],
            )
            .await?;
        let meta: Metadata =
            serde_json::from_str(&out).context("parsing `nix flake metadata --json`")?;
        Ok(meta.url)
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

    /// The derivation path of each attribute path of a flake's outputs, in one evaluation.
    pub async fn drv_paths(&self, flake_url: &str, attrs: &[String]) -> Result<Vec<String>> {
        let expr = drv_paths_expr(flake_url, attrs);
        let out = self
            .run(
                &format!("evaluating the release's attributes in {flake_url}"),
                &["eval", "--impure", "--json", "--expr", &expr],
            )
            .await?;
        let values: Vec<serde_json::Value> =
            serde_json::from_str(&out).context("parsing the drvPath evaluation")?;
        let mut paths = Vec::new();
        for (attr, value) in attrs.iter().zip(values) {
            match value {
                serde_json::Value::String(s) => paths.push(s),
                serde_json::Value::Null => bail_input!(
                    "the flake has no attribute {attr:?}; set `attr`/`attrs` in the release description or add the package"
                ),
                _ => bail_input!(
                    "the flake attribute {attr:?} is not a derivation; point `attr` at a package"
                ),
            }
        }
        Ok(paths)
    }

    /// Builds every attribute in one `nix build --json --no-link` call; returns store paths in `attrs` order.
    pub async fn build(&self, flake_url: &str, attrs: &[String]) -> Result<Vec<PathBuf>> {
        if attrs.is_empty() {
            return Ok(Vec::new());
        }
        let drvs = self.drv_paths(flake_url, attrs).await?;
        let installables: Vec<String> = attrs.iter().map(|a| format!("{flake_url}#{a}")).collect();
        let mut args = vec!["build", "--json", "--no-link"];
        args.extend(installables.iter().map(String::as_str));
        let out = self.run("nix build", &args).await?;
        let results: Vec<BuildResult> =
            serde_json::from_str(&out).context("parsing `nix build --json`")?;
        match_results(attrs, &drvs, results)
    }
}

/// A Nix expression giving each attribute's `drvPath`, `null` when missing, `false` when not a derivation.
fn drv_paths_expr(flake_url: &str, attrs: &[String]) -> String {
    let paths: Vec<String> = attrs
        .iter()
        .map(|a| {
            let parts: Vec<String> = a.split('.').map(nix_string).collect();
            format!("[ {} ]", parts.join(" "))
        })
        .collect();
    format!(
        r#"let
  outputs = (builtins.getFlake {url}).outputs;
  step = a: n: if builtins.isAttrs a && a ? ${{n}} then a.${{n}} else null;
  info = v: if v == null then null else if builtins.isAttrs v && v ? drvPath then v.drvPath else false;
in map (p: info (builtins.foldl' step outputs p)) [ {paths} ]"#,
        url = nix_string(flake_url),
        paths = paths.join(" ")
    )
}

/// A Nix string literal (JSON escaping is valid Nix for these characters; `$` is escaped too).
fn nix_string(text: &str) -> String {
    serde_json::to_string(text)
        .unwrap_or_default()
        .replace('$', "\\$")
}

/// Matches build results to attributes by derivation path.
fn match_results(
    attrs: &[String],
    drvs: &[String],
    results: Vec<BuildResult>,
) -> Result<Vec<PathBuf>> {
    let by_drv: BTreeMap<&str, &BuildResult> =
        results.iter().map(|r| (r.drv_path.as_str(), r)).collect();
    let mut paths = Vec::new();
    for (attr, drv) in attrs.iter().zip(drvs) {
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

/// Reads Nix's stderr line by line, forwarding it when asked, keeping the last lines for errors.
async fn collect_tail(stderr: tokio::process::ChildStderr, show: bool) -> String {
    let mut lines = BufReader::new(stderr).lines();
    let mut tail = VecDeque::new();
    while let Ok(Some(line)) = lines.next_line().await {
        if show {
            eprintln!("nix: {line}");
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    Vec::from(tail).join("\n")
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_by_drv_path_not_position() {
        let attrs = vec!["a".to_string(), "b".to_string()];
        let drvs = vec![
            "/nix/store/zzz-a.drv".to_string(),
            "/nix/store/aaa-b.drv".to_string(),
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
        let paths = match_results(&attrs, &drvs, results).unwrap();
        assert_eq!(
            paths,
            [PathBuf::from("/nix/store/a"), PathBuf::from("/nix/store/b")]
        );
    }

    #[test]
    fn expression_quotes_attributes() {
        let e = drv_paths_expr("path:/x", &["packages.x86_64-linux.a".into()]);
        assert!(e.contains(r#"[ "packages" "x86_64-linux" "a" ]"#), "{e}");
        assert!(e.contains(r#"getFlake "path:/x""#));
    }
}
