//! `alba static push|ls`: static binaries in the df-dist-v1 layout.

use anyhow::Result;
use clap::Subcommand;

use super::Global;
use super::push_args::{self, LsArgs, Publication, PushArgs};
use super::targets;
use crate::artifact::ArtifactSet;
use crate::artifact::{self, StaticFile};
use crate::config::Kind;
use crate::names;
use crate::plan::Planner;
use crate::publish::derived::DerivedList;
use crate::publish::df_dist::{self, StaticRelease};
use crate::publish::layout::DfDistLayout;
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

/// Runs `alba static …`.
pub async fn run(global: &Global, cmd: StaticCommand) -> Result<()> {
    match cmd {
        StaticCommand::Push(args) => push(global, args).await,
        StaticCommand::Ls(args) => ls(global, args).await,
        StaticCommand::Rm(args) => super::lifecycle::static_rm(global, args).await,
        StaticCommand::Gc(args) => super::lifecycle::static_gc(global, args).await,
    }
}

async fn push(global: &Global, args: PushArgs) -> Result<()> {
    let select = |set: &ArtifactSet| set.static_files();
    push_args::push(
        global,
        Kind::Static,
        &args,
        artifact::scan_static_dir,
        select,
        publish_all,
    )
    .await
}

/// Publishes static files under every tag to every target, in turn (the binaries are hashed
/// once); returns the first failure after trying all.
pub async fn publish_all(
    global: &Global,
    ui: &Ui,
    publication: &Publication,
    files: &[StaticFile],
    targets: &[Target],
    report: &mut Report,
) -> Result<()> {
    let (name, tags, dry_run) = (
        publication.name.as_str(),
        publication.tags.as_slice(),
        publication.dry_run,
    );
    names::check_name(name)?;
    for tag in tags {
        names::check_static_tag(tag)?;
    }
    for t in targets {
        target::holds_binaries(t)?;
    }
    let files = df_dist::hash_files(files, global.cache_dir().as_deref()).await?;
    let executor = global.executor(ui, dry_run);
    let items = tags
        .iter()
        .flat_map(|tag| targets.iter().map(move |t| (tag, t)))
        .map(|(tag, t)| (targets::push_heading(t, dry_run), (tag, t)))
        .collect();
    targets::each(
        ui,
        dry_run,
        targets::PUSHED,
        items,
        report,
        async |(tag, t)| {
            let tags = [tag.to_string()];
            let mut target_report =
                TargetReport::new(&t.to_string(), "static", name, &tags, dry_run);
            let release = StaticRelease {
                name,
                tag,
                files: &files,
                signer: publication.signer.as_deref(),
                sboms: &publication.sboms,
                extras: &publication.extras,
                web: t.web(),
                attester: publication.attester.as_deref(),
            };
            let result = async {
                let store = store::open(t).await?;
                let planner: Box<dyn Planner> =
                    Box::new(df_dist::Push::new(store.clone(), release));
                targets::run_on(&executor, &store, &mut target_report, Ok(planner)).await
            };
            let result = result.await;
            (target_report, result)
        },
    )
    .await
}

async fn ls(global: &Global, args: LsArgs) -> Result<()> {
    names::check_name(&args.name)?;
    let t = target::parse(&args.target)?;
    let store = store::open(&t).await?;
    store.check().await?;
    let layout = DfDistLayout::new(&args.name);
    let stored = DerivedList::Names(layout.clone()).stored(&*store).await?;
    if let Some(why) = &stored.unreadable {
        let key = layout.name_key();
        global.ui().warn(format!(
            "{key} is not a valid name document ({why}); it lists no tags"
        ));
    }
    let tags = stored.tags;
    let keys: Vec<String> = tags.iter().map(|tag| layout.tag_key(tag)).collect();
    let documents = store::many::get_all(&*store, &keys, global.read_jobs()).await;
    let mut listing = Vec::new();
    for (tag, document) in tags.iter().zip(documents) {
        let doc = match document? {
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
