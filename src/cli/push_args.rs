//! What `static push` and `container push` share: arguments, `[DIR] [TARGET]`, and taking
//! the artifacts and targets from the flake when no DIR is given.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::Global;
use crate::artifact::{self, ArtifactSet};
use crate::bail_input;
use crate::config::Kind;
use crate::meta::ReleaseMeta;
use crate::report::Report;
use crate::target::{self, Target};
use crate::ui::Ui;

/// One publish run: what goes out under which tags, with which metadata.
#[derive(Debug, Clone)]
pub struct Publication {
    /// The release name.
    pub name: String,
    /// The tags, the version first.
    pub tags: Vec<String>,
    /// Version, revision, time and source (annotations, SBOM metadata).
    pub meta: ReleaseMeta,
    /// Print the plan, write nothing.
    pub dry_run: bool,
    /// Semver aliases (`--aliases`): the version, parsed.
    pub aliases: Option<semver::Version>,
    /// Signs static checksums (`--sign-key`).
    pub signer: Option<std::sync::Arc<crate::sign::Signer>>,
    /// Signs images in cosign's format (`--sign-key` with an ECDSA P-256 key).
    pub image_signer: Option<std::sync::Arc<crate::sign::EcdsaKey>>,
    /// A CycloneDX SBOM per platform (of this kind's artifacts).
    pub sboms: std::collections::BTreeMap<crate::platform::Platform, bytes::Bytes>,
    /// What the download pages show beyond the files (static), and whether to write them.
    pub extras: crate::publish::pages::Extras,
    /// Signs this kind's SLSA provenance (a release with an ECDSA key).
    pub attester: Option<std::sync::Arc<crate::provenance::Attester>>,
}

impl Publication {
    /// What a `push` publishes: one tag, no aliases, no signature.
    pub fn push(
        nt: crate::names::NameTag,
        meta: ReleaseMeta,
        sboms: std::collections::BTreeMap<crate::platform::Platform, bytes::Bytes>,
        dry_run: bool,
    ) -> Publication {
        Publication {
            name: nt.name,
            tags: vec![nt.tag],
            meta,
            dry_run,
            aliases: None,
            signer: None,
            image_signer: None,
            sboms,
            extras: Default::default(),
            attester: None,
        }
    }
}

/// Arguments of `alba static push` and `alba container push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// NAME:TAG to publish, e.g. albatros:0.9.
    #[arg(short = 't', long = "tag", value_name = "NAME:TAG")]
    pub name_tag: String,
    /// [DIR] [TARGET]: a staging folder (static: df/<os>/<arch>/<file>; container:
    /// <os>.<arch>[.<variant>].tar[.gz]) and/or a target URL. Without DIR, the flake builds.
    #[arg(value_name = "DIR|TARGET", num_args = 0..=2)]
    pub args: Vec<String>,
    /// Print every object that would be written, with exists/new; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Arguments of `alba static ls` and `alba container ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// The name whose tags to list.
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub name: String,
    /// The target URL.
    pub target: String,
}

/// Splits `[DIR] [TARGET]`: an argument with a URL scheme is the target, another the folder.
pub fn split_dir_target(args: &[String]) -> Result<(Option<PathBuf>, Option<Target>)> {
    let (mut dir, mut target) = (None, None);
    for arg in args {
        if target::is_target_url(arg) {
            if target.replace(target::parse(arg)?).is_some() {
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

/// What a push takes from the flake: the artifacts, the targets and the release's metadata.
pub struct FromFlake {
    /// The artifacts built.
    pub set: ArtifactSet,
    /// The explicit target, else the configured ones.
    pub targets: Vec<Target>,
    /// Metadata for `tag`.
    pub meta: ReleaseMeta,
    /// The SBOM of each artifact, unless the section says `sbom = false`.
    pub sboms: std::collections::BTreeMap<crate::platform::Platform, bytes::Bytes>,
    /// The download pages' description and `static.page`.
    pub extras: crate::publish::pages::Extras,
}

/// Builds one kind of the flake's release; the targets are `explicit`, else the configured ones.
pub async fn from_flake(
    global: &Global,
    ui: &Ui,
    kind: Kind,
    explicit: Option<Target>,
    tag: &str,
) -> Result<FromFlake> {
    let part = match kind {
        Kind::Static => "static",
        Kind::Container => "container",
    };
    let nix = global.nix()?;
    let locked = nix.lock(&global.flake).await?;
    let flake = locked.url.clone();
    let release = artifact::load_release(&nix, &flake, &global.config_attr).await?;
    let Some(section) = release.section(kind) else {
        bail_input!("the release description has no `{part}` part; add one or give DIR");
    };
    let targets = match explicit {
        Some(t) => vec![t],
        None => section
            .targets
            .iter()
            .map(|t| target::parse(t))
            .collect::<Result<_>>()?,
    };
    if targets.is_empty() {
        bail_input!(
            "no {part} target: add {part}.targets to the release description or give a TARGET"
        );
    }
    ui.section("build with nix");
    let set = artifact::build(&nix, &flake, &release, &[kind]).await?;
    let meta = ReleaseMeta::from_flake(
        tag,
        &locked,
        &global.flake,
        release.source.as_deref(),
        &section.annotations,
    );
    let sboms = if section.wants_sbom() {
        crate::sbom::for_artifacts(&nix, &set, kind, &meta).await?
    } else {
        Default::default()
    };
    let extras = super::release_pages::extras(&release, &locked, &[]);
    Ok(FromFlake {
        set,
        targets,
        meta,
        sboms,
        extras,
    })
}

/// What a `push` publishes, from DIR or, without one, from the flake: the inputs (`from_dir`
/// reads a staging folder, `from_set` picks from the built artifacts), the targets and the
/// publication (one tag; metadata and SBOMs only from a flake).
/// `alba static|container push`: gathers the inputs and targets, publishes them with
/// `publish_all`, prints the report (also after a failure).
pub async fn push<T>(
    global: &Global,
    kind: Kind,
    args: &PushArgs,
    from_dir: impl FnOnce(&std::path::Path) -> Result<Vec<T>>,
    from_set: impl FnOnce(&ArtifactSet) -> Result<Vec<T>>,
    publish_all: impl AsyncFnOnce(
        &Global,
        &Ui,
        &Publication,
        &[T],
        &[Target],
        &mut Report,
    ) -> Result<()>,
) -> Result<()> {
    let ui = global.ui();
    let (inputs, targets, publication) =
        gather(global, &ui, kind, args, from_dir, from_set).await?;
    let mut report = Report::default();
    let result = publish_all(global, &ui, &publication, &inputs, &targets, &mut report).await;
    global.print_report(&report)?;
    result
}

/// The inputs (from DIR or built from the flake), the targets and what to publish.
pub async fn gather<T>(
    global: &Global,
    ui: &Ui,
    kind: Kind,
    args: &PushArgs,
    from_dir: impl FnOnce(&std::path::Path) -> Result<T>,
    from_set: impl FnOnce(&ArtifactSet) -> Result<T>,
) -> Result<(T, Vec<Target>, Publication)> {
    let nt = crate::names::parse_name_tag(&args.name_tag)?;
    if kind == Kind::Container {
        crate::names::check_oci_tag(&nt.tag)?;
    }
    let (dir, target) = split_dir_target(&args.args)?;
    // Targets and inputs are all checked before anything is built or written.
    let (inputs, targets, meta, sboms, extras) = match dir {
        Some(dir) => {
            let targets = required(target)?;
            let meta = ReleaseMeta::version_only(&nt.tag);
            let none = Default::default();
            (from_dir(&dir)?, targets, meta, none, Default::default())
        }
        None => {
            let built = from_flake(global, ui, kind, target, &nt.tag).await?;
            let set = from_set(&built.set)?;
            (set, built.targets, built.meta, built.sboms, built.extras)
        }
    };
    let publication = Publication {
        extras,
        ..Publication::push(nt, meta, sboms, args.dry_run)
    };
    Ok((inputs, targets, publication))
}

/// The target a DIR push needs: an error when none was given.
pub fn required(target: Option<Target>) -> Result<Vec<Target>> {
    match target {
        Some(t) => Ok(vec![t]),
        None => bail_input!(
            "no target given: add a TARGET such as file:out, s3://BUCKET?endpoint=… or docker://HOST/REPO"
        ),
    }
}
