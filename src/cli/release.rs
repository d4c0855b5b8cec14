//! `alba release VERSION`: one `nix build`, every kind, every configured target.

use anyhow::Result;
use clap::Args;

use super::Global;
use crate::artifact;
use crate::bail_input;
use crate::config::{Kind, Release};
use crate::names;
use crate::nix::Flake;
use crate::report::Report;
use crate::target::{self, Target};
use crate::ui::Ui;

/// Arguments of `alba release`.
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The version to publish, used as the tag (e.g. 0.9).
    pub version: String,
    /// Publish only static binaries or only container images.
    #[arg(long, value_enum)]
    pub only: Option<Kind>,
    /// Publish to these targets instead of the configured ones (repeatable).
    #[arg(long = "target", value_name = "URL")]
    pub targets: Vec<String>,
    /// Also publish under these tags, e.g. `--also-tag latest` (repeatable).
    #[arg(long = "also-tag", value_name = "TAG")]
    pub also_tags: Vec<String>,
    /// Print every object that would be written, with exists/new; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Release even from a git tree with uncommitted changes (what is published then matches
    /// no commit; the report says so).
    #[arg(long)]
    pub allow_dirty: bool,
}

/// The kinds to publish and, for each, its targets.
struct Plan {
    kinds: Vec<(Kind, Vec<Target>)>,
    tags: Vec<String>,
}

/// Runs `alba release`.
pub async fn run(global: &Global, args: ReleaseArgs) -> Result<()> {
    let ui = global.ui();
    let nix = global.nix()?;
    let locked = nix.lock(&global.flake).await?;
    check_clean(&locked, args.allow_dirty, &ui).await?;
    let flake = locked.url.clone();
    let release = artifact::load_release(&nix, &flake, &global.config_attr).await?;
    let plan = plan(&release, &args)?;
    let kinds: Vec<Kind> = plan.kinds.iter().map(|(k, _)| *k).collect();
    ui.section(format!("build {} {} with nix", release.name, args.version));
    let set = artifact::build(&nix, &flake, &release, &kinds).await?;
    let mut report = Report {
        flake: Some(locked),
        ..Report::default()
    };
    let result = publish(global, &set, &plan, args.dry_run, &mut report).await;
    global.print_report(&report)?;
    result
}

/// Refuses a release from a dirty git tree unless `--allow-dirty` is given (then it warns).
async fn check_clean(flake: &Flake, allow_dirty: bool, ui: &Ui) -> Result<()> {
    if !flake.dirty {
        return Ok(());
    }
    let changes = match &flake.local_git {
        Some(dir) => git_changes(dir).await,
        None => String::new(),
    };
    if allow_dirty {
        ui.warn(format!(
            "releasing from a git tree with uncommitted changes (--allow-dirty): what is published matches no commit{changes}"
        ));
        return Ok(());
    }
    bail_input!(
        "the flake's git tree has uncommitted changes, so this release would match no commit{changes}\n  commit or stash them, or pass --allow-dirty"
    )
}

/// `git status --short` of a folder, as indented lines after a colon (at most 10), or nothing
/// when git cannot tell.
async fn git_changes(dir: &std::path::Path) -> String {
    let out = tokio::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["status", "--short", "--untracked-files=no"])
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    let Some(out) = out.ok().filter(|o| o.status.success()) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return String::new();
    }
    let mut shown: Vec<String> = lines.iter().take(10).map(|l| format!("    {l}")).collect();
    if lines.len() > 10 {
        shown.push(format!("    … and {} more", lines.len() - 10));
    }
    format!(" in {}:\n{}", dir.display(), shown.join("\n"))
}

/// Checks tags and targets before anything is built or written.
fn plan(release: &Release, args: &ReleaseArgs) -> Result<Plan> {
    let kinds: Vec<Kind> = match args.only {
        Some(kind) if release.section(kind).is_none() => {
            bail_input!("--only {kind:?}: the release description has no such part")
        }
        Some(kind) => vec![kind],
        None => release.sections().into_iter().map(|(k, _)| k).collect(),
    };
    if kinds.is_empty() {
        bail_input!(
            "the release description has neither `static` nor `container`: nothing to publish"
        );
    }
    let tags: Vec<String> = std::iter::once(args.version.clone())
        .chain(args.also_tags.iter().cloned())
        .collect();
    let explicit: Vec<Target> = args
        .targets
        .iter()
        .map(|t| target::parse(t))
        .collect::<Result<_>>()?;
    let mut planned = Vec::new();
    for kind in kinds {
        for tag in &tags {
            match kind {
                Kind::Static => names::check_static_tag(tag)?,
                Kind::Container => names::check_oci_tag(tag)?,
            }
        }
        let targets = targets_for(release, kind, &explicit)?;
        planned.push((kind, targets));
    }
    Ok(Plan {
        kinds: planned,
        tags,
    })
}

/// The targets of one kind: `--target` ones that suit it, else the configured ones.
fn targets_for(release: &Release, kind: Kind, explicit: &[Target]) -> Result<Vec<Target>> {
    let suits = |t: &Target| kind == Kind::Container || !matches!(t, Target::Registry(_));
    let targets: Vec<Target> = if explicit.is_empty() {
        let section = release
            .section(kind)
            .map(|s| s.targets.clone())
            .unwrap_or_default();
        let parsed: Vec<Target> = section
            .iter()
            .map(|t| target::parse(t))
            .collect::<Result<_>>()?;
        if let Some(bad) = parsed.iter().find(|t| !suits(t)) {
            bail_input!(
                "static.targets lists {bad}, a registry; static binaries go to s3:// or file: targets"
            );
        }
        parsed
    } else {
        explicit.iter().filter(|t| suits(t)).cloned().collect()
    };
    if targets.is_empty() {
        let part = if kind == Kind::Static {
            "static"
        } else {
            "container"
        };
        bail_input!(
            "no {part} target: add {part}.targets to the release description or pass --target URL"
        );
    }
    Ok(targets)
}

async fn publish(
    global: &Global,
    set: &artifact::ArtifactSet,
    plan: &Plan,
    dry_run: bool,
    report: &mut Report,
) -> Result<()> {
    let ui = global.ui();
    let mut failure = None;
    for (kind, targets) in &plan.kinds {
        let result = match kind {
            Kind::Static => publish_static(global, set, targets, &plan.tags, dry_run, report).await,
            Kind::Container => {
                super::container::publish_all(
                    global,
                    &ui,
                    &set.name,
                    &plan.tags,
                    &set.images(),
                    targets,
                    dry_run,
                    report,
                )
                .await
            }
        };
        if let Err(e) = result {
            failure.get_or_insert(e);
        }
    }
    failure.map_or(Ok(()), Err)
}

async fn publish_static(
    global: &Global,
    set: &artifact::ArtifactSet,
    targets: &[Target],
    tags: &[String],
    dry_run: bool,
    report: &mut Report,
) -> Result<()> {
    let ui = global.ui();
    let files = set.static_files()?;
    super::static_cmd::publish_all(
        global, &ui, &set.name, tags, &files, targets, dry_run, report,
    )
    .await
}
