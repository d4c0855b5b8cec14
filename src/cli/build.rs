//! `alba build`: evaluate and build the release, print the artifact set.

use anyhow::Result;
use clap::Args;

use super::Global;
use crate::artifact;
use crate::config::Kind;

/// Arguments of `alba build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build only static binaries or only images.
    #[arg(long, value_enum)]
    pub only: Option<Kind>,
}

/// Runs `alba build`.
pub async fn run(global: &Global, args: BuildArgs) -> Result<()> {
    let nix = global.nix()?;
    let flake = nix.lock(&global.flake).await?.url;
    let release = artifact::load_release(&nix, &flake, &global.config_attr).await?;
    let kinds: Vec<Kind> = match args.only {
        Some(k) => vec![k],
        None => release.sections().into_iter().map(|(k, _)| k).collect(),
    };
    let set = artifact::build(&nix, &flake, &release, &kinds).await?;
    if global.json {
        println!("{}", serde_json::to_string_pretty(&set)?);
        return Ok(());
    }
    for a in &set.artifacts {
        let kind = match a.kind {
            Kind::Static => "static",
            Kind::Container => "container",
        };
        println!(
            "{kind:9} {:14} {}",
            a.platform.to_string(),
            a.path.display()
        );
    }
    Ok(())
}
