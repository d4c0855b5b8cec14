//! `alba static rm|gc` and `alba container rm|gc`: removing published tags.
//!
//! The work is in [`crate::publish::df_dist_gc`], [`crate::publish::oci_gc`] (static
//! registries) and [`crate::publish::registry::delete`] (registries); this module parses the
//! arguments, opens the target and prints the report.

use anyhow::Result;
use clap::Args;

use super::Global;
use crate::bail_input;
use crate::names;
use crate::publish::credentials;
use crate::publish::df_dist_gc;
use crate::publish::lifecycle::GcOptions;
use crate::publish::registry::delete::{self as oci_delete, RegistryRepo};
use crate::publish::oci_gc;
use crate::report::{Report, TargetReport};
use crate::store;
use crate::target::{self, RegistryTarget, Target};
use crate::ui::Ui;

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
            dry_run: self.dry_run,
            grace: self.grace,
        }
    }
}

/// `alba static rm`.
pub async fn static_rm(global: &Global, args: RmArgs) -> Result<()> {
    let nt = names::parse_name_tag(&args.name_tag)?;
    let t = object_store_target(&args.target)?;
    let ui = global.ui();
    ui.section(format!(
        "remove {}:{} from {t}{}",
        nt.name,
        nt.tag,
        dry(args.dry_run)
    ));
    let mut report = TargetReport::new(
        &t.to_string(),
        "static",
        &nt.name,
        std::slice::from_ref(&nt.tag),
        args.dry_run,
    );
    let result = match store::open(&t).await {
        Ok(store) => {
            let result =
                df_dist_gc::rm(&*store, &nt.name, &nt.tag, args.dry_run, &ui, &mut report).await;
            report.retries = store.retries();
            result
        }
        Err(e) => Err(e),
    };
    finish(global, &ui, report, result, args.dry_run)
}

/// `alba static gc`.
pub async fn static_gc(global: &Global, args: GcArgs) -> Result<()> {
    names::check_name(&args.name)?;
    let t = object_store_target(&args.target)?;
    let ui = global.ui();
    ui.section(format!(
        "keep the {} newest tags of {} on {t}{}",
        args.keep,
        args.name,
        dry(args.dry_run)
    ));
    let mut report = TargetReport::new(&t.to_string(), "static", &args.name, &[], args.dry_run);
    let result = match store::open(&t).await {
        Ok(store) => {
            let opts = args.options();
            let result = df_dist_gc::gc(&*store, &args.name, &opts, &ui, &mut report).await;
            report.retries = store.retries();
            result
        }
        Err(e) => Err(e),
    };
    let result = result.map(|selection| report.tags = selection.removed());
    finish(global, &ui, report, result, args.dry_run)
}

/// `alba container rm`.
pub async fn container_rm(global: &Global, args: RmArgs) -> Result<()> {
    let nt = names::parse_name_tag(&args.name_tag)?;
    names::check_oci_tag(&nt.tag)?;
    let t = target::parse(&args.target)?;
    let ui = global.ui();
    ui.section(format!(
        "remove {}:{} from {t}{}",
        nt.name,
        nt.tag,
        dry(args.dry_run)
    ));
    let result = match &t {
        Target::Registry(r) => {
            let tag = registry_tag(r, &nt.tag)?;
            let mut report = TargetReport::new(
                &t.to_string(),
                "container",
                &r.repository,
                std::slice::from_ref(&tag),
                args.dry_run,
            );
            let result = match registry_repo(global, r) {
                Ok(repo) => oci_delete::rm(&repo, &tag, args.dry_run, &ui, &mut report).await,
                Err(e) => Err(e),
            };
            (report, result)
        }
        _ => {
            let repository = repository(&nt.name)?;
            let mut report = TargetReport::new(
                &t.to_string(),
                "container",
                &repository,
                std::slice::from_ref(&nt.tag),
                args.dry_run,
            );
            let result = match store::open(&t).await {
                Ok(store) => {
                    let retried = store.clone();
                    let result =
                        oci_gc::rm(store, &repository, &nt.tag, args.dry_run, &ui, &mut report);
                    let result = result.await;
                    report.retries = retried.retries();
                    result
                }
                Err(e) => Err(e),
            };
            (report, result)
        }
    };
    finish(global, &ui, result.0, result.1, args.dry_run)
}

/// `alba container gc`.
pub async fn container_gc(global: &Global, args: GcArgs) -> Result<()> {
    names::check_name(&args.name)?;
    let t = target::parse(&args.target)?;
    let ui = global.ui();
    ui.section(format!(
        "keep the {} newest tags of {} on {t}{}",
        args.keep,
        args.name,
        dry(args.dry_run)
    ));
    let opts = args.options();
    let (mut report, result) = match &t {
        Target::Registry(r) => {
            if let Some(tag) = &r.tag {
                bail_input!(
                    "gc works on a whole repository: drop the tag :{tag} from the target URL"
                );
            }
            let mut report = TargetReport::new(
                &t.to_string(),
                "container",
                &r.repository,
                &[],
                args.dry_run,
            );
            let result = match registry_repo(global, r) {
                Ok(repo) => oci_delete::gc(&repo, &opts, &ui, &mut report).await,
                Err(e) => Err(e),
            };
            (report, result)
        }
        _ => {
            let repository = repository(&args.name)?;
            let mut report =
                TargetReport::new(&t.to_string(), "container", &repository, &[], args.dry_run);
            let result = match store::open(&t).await {
                Ok(store) => {
                    let retried = store.clone();
                    let result = oci_gc::gc(store, &repository, &opts, &ui, &mut report).await;
                    report.retries = retried.retries();
                    result
                }
                Err(e) => Err(e),
            };
            (report, result)
        }
    };
    let result = result.map(|selection| report.tags = selection.removed());
    finish(global, &ui, report, result, args.dry_run)
}

/// Parses a target for binaries: a bucket or folder, not a registry.
fn object_store_target(text: &str) -> Result<Target> {
    let t = target::parse(text)?;
    if matches!(t, Target::Registry(_)) {
        bail_input!("{t} is a registry; static binaries live on s3:// or file: targets");
    }
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
    RegistryRepo::new(r, credentials)
}

fn dry(dry_run: bool) -> &'static str {
    if dry_run { " (dry run)" } else { "" }
}

/// Prints the JSON report (also after a failure) and the closing line.
fn finish(
    global: &Global,
    ui: &Ui,
    target_report: TargetReport,
    result: Result<()>,
    dry_run: bool,
) -> Result<()> {
    let mut report = Report::default();
    report.push(target_report);
    global.print_report(&report)?;
    match &result {
        Ok(()) => ui.line(if dry_run {
            "✅ dry run done, nothing deleted"
        } else {
            "✅ done"
        }),
        Err(_) => ui.line("❌ failed"),
    }
    result
}
