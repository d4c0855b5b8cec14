//! `alba verify -t NAME[:TAG] TARGET [--web URL] [--quick] [--sign-pub FILE]...`: reads back
//! what was published, the way download pages and pull clients do, and checks it.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::Global;
use crate::bail_input;
use crate::publish::layout::{DfDistLayout, V2_INDEX, V2Layout};
use crate::publish::registry::RegistrySink;
use crate::target::{self, Target};
use crate::verify::oci_source::RegistryImages;
use crate::verify::web::WebSource;
use crate::verify::{self, Findings, Options, Source, StoreSource};

/// Arguments of `alba verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// NAME (every tag) or NAME:TAG (one tag), e.g. albatros:0.9.
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub name_tag: String,
    /// The target URL: s3://…, file:… or docker://….
    pub target: String,
    /// Read through this public website URL (e.g. Garage's website endpoint) instead of the
    /// S3 API; its root is the target's root.
    #[arg(long, value_name = "URL")]
    pub web: Option<String>,
    /// HEAD and size only: no whole downloads, no digests of binaries and layers.
    #[arg(long)]
    pub quick: bool,
    /// A public key (repeatable; its kind read from the file): a minisign key checks
    /// SHA256SUMS.minisig, an ECDSA P-256 PEM key (`-----BEGIN PUBLIC KEY-----`) checks the
    /// images' cosign signatures and the SLSA provenance of images and binaries.
    #[arg(long, value_name = "FILE")]
    pub sign_pub: Vec<PathBuf>,
}

/// Runs `alba verify`: exit 0 when everything holds, 1 with one line per problem.
pub async fn run(global: &Global, args: VerifyArgs) -> Result<()> {
    let (name, tag) = match args.name_tag.split_once(':') {
        Some((name, tag)) => (name.to_string(), Some(tag.to_string())),
        None => (args.name_tag.clone(), None),
    };
    crate::names::check_name(&name)?;
    if let Some(tag) = &tag {
        crate::names::check_static_tag(tag)?;
    }
    let t = target::parse(&args.target)?;
    let (sign_pub, ecdsa) = public_keys(global, &args.sign_pub, &t, &name).await?;
    let web = args.web.as_deref().map(WebSource::new).transpose()?;
    let bucket = match &t {
        Target::S3(s3) => Some(s3.bucket.clone()),
        _ => None,
    };
    let opts = Options {
        quick: args.quick,
        sign_pub,
        ecdsa,
        target_text: shell_word(&args.target),
        bucket,
        reads: global.read_jobs(),
    };
    let mut findings = Findings::default();
    let read_through = match &t {
        Target::Registry(r) => {
            if web.is_some() {
                bail_input!(
                    "--web reads a bucket's website; a docker:// registry is read through its API already"
                );
            }
            let tag = r.tag.clone().or(tag.clone());
            let registry = registry(global, r).await?;
            let images = RegistryImages::new(registry, t.to_string());
            verify::oci_check::check(&images, &name, tag.as_deref(), &opts, &mut findings).await?;
            t.to_string()
        }
        _ => verify_store(&t, web, &name, tag.as_deref(), &opts, &mut findings).await?,
    };
    report(
        global,
        &args.target,
        &read_through,
        &name,
        tag.as_deref(),
        &findings,
    )
}

/// The `--sign-pub` keys by kind: a PEM public key is ECDSA (with the repository signatures
/// must name on this target, and, when `--flake` is given, that flake's lock), anything else
/// minisign. Two keys of one kind are refused.
async fn public_keys(
    global: &Global,
    files: &[PathBuf],
    t: &Target,
    name: &str,
) -> Result<(
    Option<(minisign::PublicKey, String)>,
    Option<crate::verify::attestations::EcdsaCheck>,
)> {
    let (mut minisign, mut ecdsa) = (None, None);
    for file in files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let shown = file.display().to_string();
        if text.contains("-----BEGIN PUBLIC KEY-----") {
            if ecdsa.is_some() {
                bail_input!("--sign-pub {shown}: a second ECDSA public key; give one");
            }
            ecdsa = Some(crate::verify::attestations::EcdsaCheck {
                key: crate::sign::ecdsa::load_public_ecdsa(file)?,
                file: shown,
                reference: crate::publish::signatures::docker_reference(
                    t,
                    &name.to_ascii_lowercase(),
                )
                .ok(),
                lock: None,
            });
        } else {
            if minisign.is_some() {
                bail_input!("--sign-pub {shown}: a second minisign public key; give one");
            }
            minisign = Some((crate::sign::load_public(file)?, shown));
        }
    }
    if let Some(check) = ecdsa.as_mut().filter(|_| flake_given()) {
        let nix = global.nix()?;
        check.lock = Some(nix.lock(&global.flake).await?.resolved);
    }
    Ok((minisign, ecdsa))
}

/// True when `--flake` is on the command line (its default `.` is not a request to compare
/// provenance with the current folder's flake).
fn flake_given() -> bool {
    std::env::args().any(|a| a == "--flake" || a.starts_with("--flake="))
}

/// The registry client for a docker:// target, with the run's credentials.
async fn registry(global: &Global, r: &target::RegistryTarget) -> Result<RegistrySink> {
    let registry = global.registry_sink(r)?;
    registry
        .sign_in(oci_client::RegistryOperation::Pull)
        .await?;
    Ok(registry)
}

/// Checks a bucket or folder, through the store or (with `--web`) its website; returns what
/// was read through.
async fn verify_store(
    t: &Target,
    web: Option<WebSource>,
    name: &str,
    tag: Option<&str>,
    opts: &Options,
    findings: &mut Findings,
) -> Result<String> {
    let store = crate::store::open(t).await?;
    let Some(web) = web else {
        let source = StoreSource::new(store);
        verify::check_store(&source, name, tag, opts, findings).await?;
        return Ok(source.describe());
    };
    let probes = [
        DfDistLayout::new(name).name_key(),
        V2Layout::new(&name.to_ascii_lowercase()).tags_key(),
        V2_INDEX.to_string(),
    ];
    let serves = verify::web::website_serves(
        &web,
        Some(&*store),
        opts.bucket.as_deref(),
        &probes,
        findings,
    )
    .await?;
    if serves {
        verify::check_store(&web, name, tag, opts, findings).await?;
    }
    Ok(web.describe())
}

/// Prints the report (JSON with `--json`, else one line per problem) and fails with exit 1
/// when there are problems.
fn report(
    global: &Global,
    target: &str,
    read_through: &str,
    name: &str,
    tag: Option<&str>,
    findings: &Findings,
) -> Result<()> {
    let problems = &findings.problems;
    if global.json {
        let report = verify::Report {
            target,
            read_through: read_through.to_string(),
            name,
            tag,
            ok: problems.is_empty(),
            objects_checked: findings.checked.len(),
            problems,
            checked: &findings.checked,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for p in problems {
            println!("✗ {}: {} — fix: {}", p.object, p.problem, p.fix);
        }
        if problems.is_empty() && global.quiet == 0 {
            println!(
                "✅ {name}{} on {read_through}: {} objects checked, no problems",
                tag.map(|t| format!(":{t}")).unwrap_or_default(),
                findings.checked.len()
            );
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "verify found {} problem(s) with {name} on {read_through}",
        problems.len()
    )
}

/// `text` quoted for a shell command line when it needs it (target URLs hold `?` and `&`).
fn shell_word(text: &str) -> String {
    if text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/:._-@".contains(&b))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}
