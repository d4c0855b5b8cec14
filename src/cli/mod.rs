//! Command-line arguments and dispatch: one module per command.

mod build;
mod container;
mod lifecycle;
mod push_args;
mod release;
mod static_cmd;

use std::path::PathBuf;

use anyhow::Result;
use clap::{ArgAction, Args, Parser, Subcommand};

use crate::nix::Nix;
use crate::report::Report;
use crate::ui::Ui;

/// alba publishes what a Nix flake builds: static binaries and multi-arch OCI images.
#[derive(Debug, Parser)]
#[command(name = "alba", version, about, long_about = None)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The flake to read (`.`, `path:…`, `github:…`).
    #[arg(long, global = true, default_value = ".")]
    pub flake: String,
    /// The flake output holding the release description.
    #[arg(
        long = "config",
        global = true,
        default_value = "release",
        value_name = "ATTR"
    )]
    pub config_attr: String,
    /// Print one machine-readable JSON report on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// More detail (repeat for more).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    /// Less output.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub quiet: u8,
    /// Uploads at once (default 8).
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: Option<u16>,
    /// The nix binary to run (default: `nix` on PATH).
    #[arg(long = "nix", global = true, value_name = "PATH")]
    pub nix_bin: Option<PathBuf>,
    /// A Nix option passed to every nix call, e.g. `--nix-option max-jobs 4`.
    #[arg(long = "nix-option", global = true, num_args = 2, value_names = ["NAME", "VALUE"], action = ArgAction::Append)]
    pub nix_options: Vec<String>,
    /// How image layers are compressed: gzip (default), zstd or none.
    #[arg(
        long,
        global = true,
        default_value = "gzip",
        value_name = "gzip|zstd|none"
    )]
    pub compression: crate::image::Compression,
    /// User name for docker:// registries (with --registry-password-stdin); otherwise
    /// ~/.docker/config.json ($DOCKER_CONFIG) and its credential helpers are used.
    #[arg(long, global = true, value_name = "USER")]
    pub registry_user: Option<String>,
    /// Read the registry password for --registry-user from stdin (never give it as an argument).
    #[arg(long, global = true)]
    pub registry_password_stdin: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build every platform with one `nix build` and publish to every configured target.
    Release(release::ReleaseArgs),
    /// Evaluate and build the release; print the artifact set (platform → store path).
    Build(build::BuildArgs),
    /// Static binaries in the df-dist-v1 layout.
    #[command(subcommand)]
    Static(static_cmd::StaticCommand),
    /// Multi-arch OCI images: static registries on buckets and folders, and registries.
    #[command(subcommand)]
    Container(container::ContainerCommand),
}

impl Global {
    /// The UI for these flags.
    pub fn ui(&self) -> Ui {
        Ui::new(self.verbose as i8 - self.quiet as i8)
    }

    /// alba's cache folder: `$XDG_CACHE_HOME/alba`, else `~/.cache/alba`.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("alba"))
    }

    /// Uploads at once.
    pub fn jobs(&self) -> usize {
        self.jobs.map(usize::from).unwrap_or(8)
    }

    /// Finds Nix with the pass-through options.
    pub fn nix(&self) -> Result<Nix> {
        let options = self
            .nix_options
            .chunks(2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect();
        let mut nix = Nix::find(self.nix_bin.as_deref(), options)?;
        nix.show_progress = self.verbose as i8 - self.quiet as i8 >= 0;
        Ok(nix)
    }

    /// The registry credentials given on the command line.
    pub fn registry_credentials(&self) -> crate::publish::credentials::CliCredentials {
        crate::publish::credentials::CliCredentials {
            user: self.registry_user.clone(),
            password_stdin: self.registry_password_stdin,
        }
    }

    /// Prints the report as JSON when `--json` was given.
    pub fn print_report(&self, report: &Report) -> Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(report)?);
        }
        Ok(())
    }
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Release(args) => release::run(&cli.global, args).await,
        Command::Build(args) => build::run(&cli.global, args).await,
        Command::Static(cmd) => static_cmd::run(&cli.global, cmd).await,
        Command::Container(cmd) => container::run(&cli.global, cmd).await,
    }
}
