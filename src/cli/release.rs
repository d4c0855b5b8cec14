//! `alba release VERSION`: one `nix build`, every kind, every configured target.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Args;

use super::Global;
use super::push_args::Publication;
use crate::artifact;
use crate::bail_input;
use crate::config::{Kind, Release};
use crate::meta::ReleaseMeta;
use crate::names;
use crate::nix::Flake;
use crate::platform::Platform;
use crate::publish::oci::OciSink;
use crate::publish::{aliases, credentials};
use crate::report::Report;
use crate::sign::SigningKeys;
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
    /// Semver aliases for images: X.Y.Z also tags X.Y and X when it is the greatest of that
    /// line on the target, and `latest` when it is the greatest stable release there
    /// (`container.aliases = true` in the release description does the same).
    #[arg(long)]
    pub aliases: bool,
    /// Also publish under these tags, e.g. `--also-tag latest` (repeatable).
    #[arg(long = "also-tag", value_name = "TAG")]
    pub also_tags: Vec<String>,
    /// Print every object that would be written, with exists/new; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// A signing key (repeatable; replaces the description's `sign.keys`), its kind read from
    /// the file: a minisign secret key (`minisign -G`) signs each tag's SHA256SUMS; an ECDSA
    /// P-256 key (`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`, or cosign's
    /// cosign.key) signs the images in cosign's format.
    #[arg(long, value_name = "FILE")]
    pub sign_key: Vec<std::path::PathBuf>,
    /// Read the password of the encrypted signing key(s) from stdin (never give it as an
    /// argument); one password for every encrypted key.
    #[arg(long)]
    pub sign_password_stdin: bool,
    /// Release even from a git tree with uncommitted changes (what is published then matches
    /// no commit; the report says so).
    #[arg(long)]
    pub allow_dirty: bool,
}

/// The kinds to publish and, for each, its targets.
struct Plan {
    kinds: Vec<(Kind, Vec<Target>)>,
    tags: Vec<String>,
    /// The version, parsed, when images take semver aliases.
    aliases: Option<semver::Version>,
    /// The signing keys, loaded (and their password checked) before anything is built.
    keys: SigningKeys,
}

/// Runs `alba release`.
pub async fn run(global: &Global, args: ReleaseArgs) -> Result<()> {
    let ui = global.ui();
    let nix = global.nix()?;
    let locked = nix.lock(&global.flake).await?;
    check_clean(&locked, args.allow_dirty, &ui).await?;
    let flake = locked.url.clone();
    let release = artifact::load_release(&nix, &flake, &global.config_attr).await?;
    let plan = plan(global, &release, &args)?;
    let mut report = Report {
        flake: Some(crate::nix::Flake {
            url: crate::meta::without_credentials(&locked.url),
            ..locked.clone()
        }),
        ..Report::default()
    };
    let job = Job {
        nix: &nix,
        release: &release,
        plan: &plan,
        flake: &locked,
        args: &args,
    };
    let result = build_and_publish(global, &job, &mut report).await;
    report.error = result.as_ref().err().map(|e| format!("{e:#}"));
    global.print_report(&report)?;
    summary(&ui, &release.name, &args.version, &report, args.dry_run);
    result
}

/// What one release works from, once planned.
struct Job<'a> {
    nix: &'a crate::nix::Nix,
    release: &'a Release,
    plan: &'a Plan,
    flake: &'a Flake,
    args: &'a ReleaseArgs,
}

/// Checks the targets, builds with one `nix build`, makes the SBOMs, publishes.
async fn build_and_publish(global: &Global, job: &Job<'_>, report: &mut Report) -> Result<()> {
    let (release, args) = (job.release, job.args);
    let kinds: Vec<Kind> = job.plan.kinds.iter().map(|(k, _)| *k).collect();
    check_targets(global, job.plan).await?;
    global
        .ui()
        .section(format!("build {} {} with nix", release.name, args.version));
    let flake = &job.flake.url;
    let set = artifact::build(job.nix, flake, release, &kinds).await?;
    let sboms = sboms(job.nix, &set, release, job.plan, job.flake, args).await?;
    let key = job.plan.keys.ecdsa.clone();
    let attesters =
        crate::provenance::gather::attesters(job.nix, job.flake, &set, &kinds, &args.version, key)
            .await?;
    publish(global, &set, job, (sboms, attesters), report).await
}

/// The last progress line, so that a long CI log ends with the outcome (on failure the
/// `error:` line follows it).
fn summary(ui: &Ui, name: &str, version: &str, report: &Report, dry_run: bool) {
    let targets = match report.targets.len() {
        1 => "1 target".to_string(),
        n => format!("{n} targets"),
    };
    let sent = crate::ui::human_size(report.bytes_sent);
    ui.line(match (&report.error, dry_run) {
        (None, false) => format!("✅ released {name} {version} to {targets} ({sent} sent)"),
        (None, true) => format!("✅ dry run of {name} {version} on {targets}: nothing written"),
        (Some(_), false) => format!("❌ release of {name} {version} failed; the error follows"),
        (Some(_), true) => format!("❌ dry run of {name} {version} failed; the error follows"),
    });
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
fn plan(global: &Global, release: &Release, args: &ReleaseArgs) -> Result<Plan> {
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
    let wants_aliases = args.aliases
        || release
            .container
            .as_ref()
            .is_some_and(|c| c.aliases == Some(true));
    let publishes_images = planned.iter().any(|(k, _)| *k == Kind::Container);
    let aliases = if wants_aliases && publishes_images {
        aliases::check(&args.version)?;
        Some(aliases::parse_release(&args.version)?)
    } else {
        None
    };
    let keys = load_keys(global, release, args)?;
    if keys.ecdsa.is_some() {
        for (_, targets) in planned.iter().filter(|(k, _)| *k == Kind::Container) {
            targets
                .iter()
                .try_for_each(crate::publish::signatures::check_target)?;
        }
    }
    Ok(Plan {
        kinds: planned,
        tags,
        aliases,
        keys,
    })
}

/// Loads the signing keys (`--sign-key`, else the description's `sign.keys`); their password
/// comes from stdin, which the registry password cannot share.
fn load_keys(global: &Global, release: &Release, args: &ReleaseArgs) -> Result<SigningKeys> {
    let files = match (&args.sign_key, &release.sign) {
        (given, _) if !given.is_empty() => given.clone(),
        (_, Some(sign)) => sign.key_files(),
        (_, None) => Vec::new(),
    };
    let password_stdin = args.sign_password_stdin;
    if password_stdin && files.is_empty() {
        bail_input!(
            "--sign-password-stdin without a key: add --sign-key FILE or sign.keys to the release description"
        );
    }
    if password_stdin && global.registry_password_stdin {
        bail_input!(
            "--sign-password-stdin and --registry-password-stdin both read stdin; give the registry credentials through ~/.docker/config.json (or a credential helper) instead"
        );
    }
    let password = if password_stdin {
        Some(credentials::stdin_secret("--sign-password-stdin")?)
    } else {
        None
    };
    SigningKeys::load(&files, password.as_ref())
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
        if kind == Kind::Static {
            for t in &parsed {
                target::holds_binaries(t).context("static.targets")?;
            }
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

/// Checks that every target answers and takes the credentials, before anything is built or
/// written: a wrong registry password must not leave a release's binaries published and its
/// images not (targets are written one after another).
async fn check_targets(global: &Global, plan: &Plan) -> Result<()> {
    for t in plan.kinds.iter().flat_map(|(_, targets)| targets) {
        match t {
            Target::Registry(r) => global.registry_sink(r)?.check().await?,
            _ => crate::store::open(t).await?.check().await?,
        }
    }
    Ok(())
}

/// The SBOMs of each kind whose section wants them (the default), by platform.
async fn sboms(
    nix: &crate::nix::Nix,
    set: &artifact::ArtifactSet,
    release: &Release,
    plan: &Plan,
    flake: &Flake,
    args: &ReleaseArgs,
) -> Result<BTreeMap<Kind, BTreeMap<Platform, Bytes>>> {
    let meta = ReleaseMeta::from_flake(
        &args.version,
        flake,
        "",
        release.source.as_deref(),
        &Default::default(),
    );
    let mut out = BTreeMap::new();
    for (kind, _) in &plan.kinds {
        if release.section(*kind).is_some_and(|s| s.wants_sbom()) {
            out.insert(
                *kind,
                crate::sbom::for_artifacts(nix, set, *kind, &meta).await?,
            );
        }
    }
    Ok(out)
}

/// Each kind's SBOMs, by platform.
type KindSboms = BTreeMap<Kind, BTreeMap<Platform, Bytes>>;
/// Each kind's provenance attester (with an ECDSA key).
type Attesters = BTreeMap<Kind, std::sync::Arc<crate::provenance::Attester>>;

async fn publish(
    global: &Global,
    set: &artifact::ArtifactSet,
    job: &Job<'_>,
    (mut sboms, attesters): (KindSboms, Attesters),
    report: &mut Report,
) -> Result<()> {
    let (plan, release, flake, args) = (job.plan, job.release, job.flake, job.args);
    let ui = global.ui();
    let mut failure = None;
    let kinds: Vec<Kind> = plan.kinds.iter().map(|(k, _)| *k).collect();
    // Each kind reports into its own part, so the report keeps the kinds' order.
    let mut parts: Vec<Report> = kinds.iter().map(|_| Report::default()).collect();
    let mut images = Vec::new();
    for i in super::release_pages::publish_order(&kinds) {
        let (kind, targets) = &plan.kinds[i];
        let part = &mut parts[i];
        let extra = match kind {
            Kind::Static => Default::default(),
            Kind::Container => release
                .container
                .as_ref()
                .map(|c| c.annotations.clone())
                .unwrap_or_default(),
        };
        let publication = Publication {
            name: set.name.clone(),
            tags: plan.tags.clone(),
            meta: ReleaseMeta::from_flake(
                &args.version,
                flake,
                &global.flake,
                release.source.as_deref(),
                &extra,
            ),
            dry_run: args.dry_run,
            aliases: match kind {
                Kind::Container => plan.aliases.clone(),
                Kind::Static => None,
            },
            signer: match kind {
                Kind::Static => plan.keys.minisign.clone(),
                Kind::Container => None,
            },
            image_signer: match kind {
                Kind::Static => None,
                Kind::Container => plan.keys.ecdsa.clone(),
            },
            sboms: sboms.remove(kind).unwrap_or_default(),
            extras: match kind {
                Kind::Static => super::release_pages::extras(release, flake, &images),
                Kind::Container => Default::default(),
            },
            attester: attesters.get(kind).cloned(),
        };
        let result = match kind {
            Kind::Static => {
                let files = set.static_files()?;
                super::static_cmd::publish_all(global, &ui, &publication, &files, targets, part)
                    .await
            }
            Kind::Container => {
                super::container::publish_all(
                    global,
                    &ui,
                    &publication,
                    &set.images(),
                    targets,
                    part,
                )
                .await
            }
        };
        if *kind == Kind::Container {
            let platforms: Vec<String> = set.images().iter().map(|(p, _)| p.to_string()).collect();
            let (name, version) = (&set.name, &args.version);
            images =
                super::release_pages::images(name, version, &platforms, targets, &part.targets);
        }
        if let Err(e) = result {
            failure.get_or_insert(e);
        }
    }
    for target in parts.into_iter().flat_map(|p| p.targets) {
        report.push(target);
    }
    failure.map_or(Ok(()), Err)
}
