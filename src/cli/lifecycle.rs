//! `alba static rm|gc` and `alba container rm|gc`: removing published tags.
//!
//! The planners are [`crate::publish::df_dist_gc`], [`crate::publish::oci_gc`] (static
//! registries) and [`crate::publish::registry::removal`] (registries); this module parses the
//! arguments, opens the target, runs the planner with the executor and prints the report.

use std::sync::Arc;

use anyhow::Result;
use clap::Args;

use super::Global;
use super::targets::{self, Heading};
use crate::bail_input;
use crate::execute::Executor;
use crate::names;
use crate::plan::Sink;
use crate::publish::credentials;
use crate::publish::lifecycle::{GcOptions, Removing, Selection};
use crate::publish::registry::delete::RegistryRepo;
use crate::publish::registry::removal::RegistryRemoval;
use crate::publish::{df_dist_gc, oci_gc};
use crate::report::{Report, TargetReport};
use crate::store;
use crate::target::{self, RegistryTarget, Target};

/// Arguments of `rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// NAME:TAG to remove, e.g. albatros:0.9.
    #[arg(short = 't', long = "tag", value_name = "NAME:TAG")]
    pub name_tag: String,
    /// The target URL (s3://, file: or, for containers, docker://).
    pub target: String,
    /// Print what would be deleted and why; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Arguments of `gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// The name whose old tags to remove.
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub name: String,
    /// How many of the newest tags to keep. Binaries: newest as the name document orders them.
    /// Images: registries keep no push order, so newest is the greatest version (tags that are
    /// not versions rank last); tags sharing an image with a kept tag (latest) are kept too.
    #[arg(long, value_name = "N")]
    pub keep: usize,
    /// Also keep every tag that looks like a release (v?MAJOR.MINOR.PATCH, optionally .BUILD).
    #[arg(long)]
    pub keep_releases: bool,
    /// The target URL (s3://, file: or, for containers, docker://).
    pub target: String,
    /// Print what would be deleted and why; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Objects no tag references (left over, or a push's uploads before its tag) are deleted
    /// only once older than this, e.g. 30m, 1h, 2d.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = crate::transport::parse_duration)]
    pub grace: std::time::Duration,
}

impl GcArgs {
    fn options(&self) -> GcOptions {
        GcOptions {
            keep: self.keep,
            keep_releases: self.keep_releases,
            grace: self.grace,
        }
    }
}

/// A removal's planner on its sink: what `rm` and `gc` run.
enum Removal {
    Df(df_dist_gc::Removal, Arc<dyn store::ObjectStore>),
    Oci(oci_gc::Removal, Arc<dyn store::ObjectStore>),
    Registry(RegistryRemoval, Arc<RegistryRepo>),
}

impl Removal {
    /// Runs the removal; returns what it selected.
    async fn run(
        self,
        executor: &Executor<'_>,
        report: &mut TargetReport,
    ) -> (Selection, Result<()>) {
        match self {
            Removal::Df(mut planner, store) => {
                let result = executor.run(&store, &mut planner, report).await;
                (planner.selection, result)
            }
            Removal::Oci(mut planner, store) => {
                let result = executor.run(&store, &mut planner, report).await;
                (planner.selection, result)
            }
            Removal::Registry(mut planner, repo) => {
                let result = executor
                    .run(&*repo as &dyn Sink, &mut planner, report)
                    .await;
                (planner.selection, result)
            }
        }
    }
}

/// What one rm or gc run is: its target, the report's kind and name, and how to plan it.
struct Job {
    target: Target,
    kind: &'static str,
    name: String,
    /// The tag `rm` removes (the report names it before anything ran).
    tag: Option<String>,
    section: String,
    dry_run: bool,
}

impl Job {
    /// Opens the target, plans with `removal`, runs it and prints the report.
    async fn run(
        self,
        global: &Global,
        removal: impl AsyncFnOnce(&Target) -> Result<Removal>,
    ) -> Result<()> {
        let ui = global.ui();
        let executor = global.executor(&ui, self.dry_run);
        let heading = Heading {
            section: self.section,
            failed: "❌ failed".into(),
        };
        let (target, kind, dry_run) = (self.target, self.kind, self.dry_run);
        let tags: Vec<String> = self.tag.into_iter().collect();
        ui.section(&heading.section);
        let mut target_report =
            TargetReport::new(&target.to_string(), kind, &self.name, &tags, dry_run);
        let result = match removal(&target).await {
            Ok(removal) => {
                let (selection, result) = removal.run(&executor, &mut target_report).await;
                if tags.is_empty() {
                    target_report.tags = selection.removed();
                }
                result
            }
            Err(e) => Err(e),
        };
        let mut report = Report::default();
        report.push(target_report);
        let result = targets::said(&ui, dry_run, targets::REMOVED, &heading, result);
        global.print_report(&report)?;
        result
    }
}

/// `alba static rm`.
pub async fn static_rm(global: &Global, args: RmArgs) -> Result<()> {
    let nt = names::parse_name_tag(&args.name_tag)?;
    let t = object_store_target(&args.target)?;
    let job = Job {
        section: format!(
            "remove {}:{} from {t}{}",
            nt.name,
            nt.tag,
            targets::dry(args.dry_run)
        ),
        target: t,
        kind: "static",
        name: nt.name.clone(),
        tag: Some(nt.tag.clone()),
        dry_run: args.dry_run,
    };
    job.run(global, async |t| {
        let store = store::open(t).await?;
        Ok(Removal::Df(
            df_dist_gc::Removal::new(store.clone(), &nt.name, Removing::Tag(nt.tag.clone()))
                .with_web(t.web())
                .reading(global.read_jobs()),
            store,
        ))
    })
    .await
}

/// `alba static gc`.
pub async fn static_gc(global: &Global, args: GcArgs) -> Result<()> {
    names::check_name(&args.name)?;
    let t = object_store_target(&args.target)?;
    let opts = args.options();
    let job = Job {
        section: gc_section(&args, &t),
        target: t,
        kind: "static",
        name: args.name.clone(),
        tag: None,
        dry_run: args.dry_run,
    };
    job.run(global, async |t| {
        let store = store::open(t).await?;
        Ok(Removal::Df(
            df_dist_gc::Removal::new(store.clone(), &args.name, Removing::Old(opts))
                .with_web(t.web())
                .reading(global.read_jobs()),
            store,
        ))
    })
    .await
}

/// `alba container rm`.
pub async fn container_rm(global: &Global, args: RmArgs) -> Result<()> {
    let nt = names::parse_name_tag(&args.name_tag)?;
    names::check_oci_tag(&nt.tag)?;
    let t = target::parse(&args.target)?;
    let section = format!(
        "remove {}:{} from {t}{}",
        nt.name,
        nt.tag,
        targets::dry(args.dry_run)
    );
    let (name, tag) = match &t {
        Target::Registry(r) => (r.repository.clone(), registry_tag(r, &nt.tag)?),
        _ => (repository(&nt.name)?, nt.tag.clone()),
    };
    let job = Job {
        section,
        target: t,
        kind: "container",
        name: name.clone(),
        tag: Some(tag.clone()),
        dry_run: args.dry_run,
    };
    job.run(global, async |t| match t {
        Target::Registry(r) => {
            let repo = Arc::new(registry_repo(global, r)?);
            Ok(Removal::Registry(
                RegistryRemoval::new(repo.clone(), Removing::Tag(tag.clone())),
                repo,
            ))
        }
        _ => {
            let store = store::open(t).await?;
            Ok(Removal::Oci(
                oci_gc::Removal::new(store.clone(), &name, Removing::Tag(tag.clone()))
                    .reading(global.read_jobs()),
                store,
            ))
        }
    })
    .await
}

/// `alba container gc`.
pub async fn container_gc(global: &Global, args: GcArgs) -> Result<()> {
    names::check_name(&args.name)?;
    let t = target::parse(&args.target)?;
    let name = match &t {
        Target::Registry(r) => {
            if let Some(tag) = &r.tag {
                bail_input!(
                    "gc works on a whole repository: drop the tag :{tag} from the target URL"
                );
            }
            r.repository.clone()
        }
        _ => repository(&args.name)?,
    };
    let opts = args.options();
    let job = Job {
        section: gc_section(&args, &t),
        target: t,
        kind: "container",
        name: name.clone(),
        tag: None,
        dry_run: args.dry_run,
    };
    job.run(global, async |t| match t {
        Target::Registry(r) => {
            let repo = Arc::new(registry_repo(global, r)?);
            Ok(Removal::Registry(
                RegistryRemoval::new(repo.clone(), Removing::Old(opts)),
                repo,
            ))
        }
        _ => {
            let store = store::open(t).await?;
            Ok(Removal::Oci(
                oci_gc::Removal::new(store.clone(), &name, Removing::Old(opts))
                    .reading(global.read_jobs()),
                store,
            ))
        }
    })
    .await
}

/// The heading of a gc.
fn gc_section(args: &GcArgs, t: &Target) -> String {
    let dry = targets::dry(args.dry_run);
    format!(
        "keep the {} newest tags of {} on {t}{dry}",
        args.keep, args.name
    )
}

/// Parses a target for binaries: a bucket or folder, not a registry.
fn object_store_target(text: &str) -> Result<Target> {
    let t = target::parse(text)?;
    target::holds_binaries(&t)?;
    Ok(t)
}

/// The repository of a static registry for a release name (lowercase, as `push` writes it).
fn repository(name: &str) -> Result<String> {
    names::check_name(name)?;
    let repository = name.to_ascii_lowercase();
    names::check_repository(&repository)?;
    Ok(repository)
}

/// The tag to remove from a registry: `-t`'s, which a tag in the URL must not contradict.
fn registry_tag(r: &RegistryTarget, tag: &str) -> Result<String> {
    match &r.tag {
        Some(url_tag) if url_tag != tag => {
            bail_input!(
                "the target URL names tag {url_tag} but -t names {tag}: give the tag once, with -t"
            )
        }
        _ => Ok(tag.to_string()),
    }
}

fn registry_repo(global: &Global, r: &RegistryTarget) -> Result<RegistryRepo> {
    let credentials = credentials::resolve(&r.host, &global.registry_credentials())?;
    Ok(RegistryRepo::new(r, credentials)?.reading(global.read_jobs()))
}
