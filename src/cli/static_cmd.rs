//! `alba static push|ls`: static binaries in the df-dist-v1 layout.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::Global;
use crate::artifact::{self, StaticFile};
use crate::bail_input;
use crate::config::Kind;
use crate::names;
use crate::publish::df_dist::{self, StaticRelease};
use crate::report::{Report, TargetReport};
use crate::store;
use crate::target::{self, Target};
use crate::ui::{Ui, human_size};

/// `alba static …`
#[derive(Debug, Subcommand)]
pub enum StaticCommand {
    /// Publish binaries: from DIR (df/<os>/<arch>/<file>) or, without DIR, from the flake.
    Push(PushArgs),
    /// List the tags of a name, with platforms and sizes.
    Ls(LsArgs),
    /// Remove one tag: name document first, then tag document, then binaries.
    Rm(super::lifecycle::RmArgs),
    /// Keep the N newest tags of a name (and, with --keep-releases, releases); remove the rest.
    Gc(super::lifecycle::GcArgs),
}

/// Arguments of `alba static push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// NAME:TAG to publish, e.g. albatros:0.9.
    #[arg(short = 't', long = "tag", value_name = "NAME:TAG")]
    pub name_tag: String,
    /// [DIR] [TARGET]: a folder in the df/<os>/<arch>/<file> layout and/or a target URL.
    #[arg(value_name = "DIR|TARGET", num_args = 0..=2)]
    pub args: Vec<String>,
    /// Print every object that would be written; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Arguments of `alba static ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// The name whose tags to list.
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub name: String,
    /// The target URL.
    pub target: String,
}

/// Runs `alba static …`.
pub async fn run(global: &Global, cmd: StaticCommand) -> Result<()> {
    match cmd {
        StaticCommand::Push(args) => push(global, args).await,
        StaticCommand::Ls(args) => ls(global, args).await,
        StaticCommand::Rm(args) => super::lifecycle::static_rm(global, args).await,
        StaticCommand::Gc(args) => super::lifecycle::static_gc(global, args).await,
    }
}

/// Splits `[DIR] [TARGET]`: an argument with a URL scheme is the target, another the folder.
pub fn split_dir_target(args: &[String]) -> Result<(Option<PathBuf>, Option<String>)> {
    let (mut dir, mut target) = (None, None);
    for arg in args {
        if target::is_target_url(arg) {
            if target.replace(arg.clone()).is_some() {
                bail_input!(
                    "two targets given ({arg:?}); give one target per push, or use `alba release` for several"
                );
            }
        } else if dir.replace(PathBuf::from(arg)).is_some() {
            bail_input!(
                "two folders given ({arg:?}); give [DIR] [TARGET] where TARGET starts with s3://, file: or docker://"
            );
        }
    }
    Ok((dir, target))
}

async fn push(global: &Global, args: PushArgs) -> Result<()> {
    let nt = names::parse_name_tag(&args.name_tag)?;
    let (dir, target) = split_dir_target(&args.args)?;
    let ui = global.ui();
    // Targets and inputs are all checked before anything is built or written.
    let explicit: Vec<Target> = target
        .iter()
        .map(|t| target::parse(t))
        .collect::<Result<_>>()?;
    let (files, targets) = match dir {
        Some(dir) => {
            if explicit.is_empty() {
                bail_input!(
                    "no target given: add a TARGET such as file:out or s3://BUCKET?endpoint=…"
                );
            }
            (artifact::scan_static_dir(&dir)?, explicit)
        }
        None => from_flake(global, &ui, explicit).await?,
    };
    let mut report = Report::default();
    let result = publish_all(
        global,
        &ui,
        &nt.name,
        &nt.tag,
        &files,
        &targets,
        args.dry_run,
        &mut report,
    )
    .await;
    global.print_report(&report)?;
    result
}

/// The flake's static artifacts, and its configured static targets unless some were given.
async fn from_flake(
    global: &Global,
    ui: &Ui,
    explicit: Vec<Target>,
) -> Result<(Vec<StaticFile>, Vec<Target>)> {
    let nix = global.nix()?;
    let flake = nix.lock(&global.flake).await?;
    let release = artifact::load_release(&nix, &flake, &global.config_attr).await?;
    let Some(section) = release.section(Kind::Static) else {
        bail_input!("the release description has no `static` part; add one or give DIR");
    };
    let targets = if explicit.is_empty() {
        section
            .targets
            .iter()
            .map(|t| target::parse(t))
            .collect::<Result<Vec<_>>>()?
    } else {
        explicit
    };
    if targets.is_empty() {
        bail_input!(
            "no static target: add static.targets to the release description or give a TARGET"
        );
    }
    ui.section("build with nix");
    let set = artifact::build(&nix, &flake, &release, &[Kind::Static]).await?;
    Ok((set.static_files()?, targets))
}

/// Publishes static files to every target, in turn; returns the first failure after trying all.
#[allow(clippy::too_many_arguments)]
pub async fn publish_all(
    global: &Global,
    ui: &Ui,
    name: &str,
    tag: &str,
    files: &[StaticFile],
    targets: &[Target],
    dry_run: bool,
    report: &mut Report,
) -> Result<()> {
    names::check_name(name)?;
    names::check_static_tag(tag)?;
    for t in targets {
        if matches!(t, Target::Registry(_)) {
            bail_input!("{t} is a registry; static binaries go to s3:// or file: targets");
        }
    }
    let mut failure = None;
    for t in targets {
        ui.section(format!(
            "push to {t}{}",
            if dry_run { " (dry run)" } else { "" }
        ));
        let mut target_report =
            TargetReport::new(&t.to_string(), "static", name, &[tag.to_string()], dry_run);
        let release = StaticRelease {
            name,
            tag,
            files,
            dry_run,
            jobs: global.jobs(),
        };
        let result = match store::open(t).await {
            Ok(s) => df_dist::publish(s, &release, ui, &mut target_report).await,
            Err(e) => Err(e),
        };
        report.push(target_report);
        match result {
            Ok(()) => ui.line(if dry_run {
                "✅ dry run done, nothing written"
            } else {
                "✅ push succeeded"
            }),
            Err(e) => {
                ui.line(format!("❌ push to {t} failed"));
                failure.get_or_insert(e);
            }
        }
    }
    failure.map_or(Ok(()), Err)
}

async fn ls(global: &Global, args: LsArgs) -> Result<()> {
    names::check_name(&args.name)?;
    let t = target::parse(&args.target)?;
    let store = store::open(&t).await?;
    store.check().await?;
    let ui = global.ui();
    let tags = df_dist::stored_tags(&*store, &args.name, &ui).await?;
    let mut listing = Vec::new();
    for tag in &tags {
        let doc = match store.get(&df_dist::tag_key(&args.name, tag)).await? {
            Some(bytes) => serde_json::from_slice::<df_dist::TagDocument>(&bytes).ok(),
            None => None,
        };
        listing.push(serde_json::json!({ "tag": tag, "flavors": doc.map(|d| d.flavors) }));
    }
    if global.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "name": args.name, "tags": listing })
            )?
        );
        return Ok(());
    }
    if tags.is_empty() {
        println!("{}: no tags on {t}", args.name);
    }
    for entry in listing {
        println!("{}", entry["tag"].as_str().unwrap_or_default());
        for flavor in entry["flavors"].as_array().into_iter().flatten() {
            print_flavor(flavor);
        }
    }
    Ok(())
}

fn print_flavor(flavor: &serde_json::Value) {
    let p = &flavor["platform"];
    let mut platform = format!(
        "{}/{}",
        p["os"].as_str().unwrap_or("?"),
        p["architecture"].as_str().unwrap_or("?")
    );
    if let Some(v) = p["variant"].as_str() {
        platform = format!("{platform}/{v}");
    }
    for r in flavor["resources"].as_array().into_iter().flatten() {
        let size = r["size"]
            .as_u64()
            .map(human_size)
            .unwrap_or_else(|| "?".into());
        println!(
            "  {platform:14} {:24} {size}",
            r["path"].as_str().unwrap_or("?")
        );
    }
}
