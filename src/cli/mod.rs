//! Command-line arguments and dispatch: one module per command.

mod build;
mod completions;
mod container;
mod examples;
mod lifecycle;
mod push_args;
mod release;
mod release_pages;
mod static_cmd;
mod targets;
mod verify;

use std::path::PathBuf;

use anyhow::Result;
use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

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
    /// Uploads at once (default 8); ls, gc and verify read 4 small documents per job at once.
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
    /// Attempts per request to a bucket or registry before giving up (connection errors,
    /// timeouts, 429, 5xx and SlowDown are retried).
    #[arg(long, global = true, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub retries: u32,
    /// Longest time one request may take with its retries, e.g. 3m.
    #[arg(long, global = true, value_name = "DURATION", default_value = "3m", value_parser = crate::transport::parse_duration)]
    pub retry_time: std::time::Duration,
    /// First wait before a retry (doubling up to 15 s; a Retry-After answer wins, up to 60 s).
    #[arg(long, global = true, value_name = "DURATION", default_value = "500ms", value_parser = crate::transport::parse_duration)]
    pub retry_backoff: std::time::Duration,
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
    /// Read back what was published, as download pages and pull clients do, and check it.
    Verify(verify::VerifyArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff) on stdout.
    Man,
}

/// The clap command of alba, with every command's examples in its help (`cli/examples.rs`).
pub fn command() -> clap::Command {
    examples::add_to(Cli::command())
}

/// Parses the command line; a usage error also shows the command's first example.
pub fn parse() -> Cli {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut cmd = command();
    let parsed = cmd
        .try_get_matches_from_mut(&args)
        .and_then(|mut m| Cli::from_arg_matches_mut(&mut m));
    match parsed {
        Ok(cli) => cli,
        Err(error) => {
            let mut error = error.format(&mut cmd);
            examples::add_tip(&mut error, &cmd, &args);
            error.exit()
        }
    }
}

impl Global {
    /// Sets the run's retry policy from the flags (one policy for buckets and registries).
    pub fn configure_transport(&self) {
        let defaults = crate::transport::Policy::default();
        crate::transport::configure(crate::transport::Policy {
            attempts: self.retries,
            total: self.retry_time,
            backoff: self.retry_backoff,
            max_backoff: defaults.max_backoff.max(self.retry_backoff),
            ..defaults
        });
    }

    /// The UI for these flags.
    pub fn ui(&self) -> Ui {
        Ui::new(self.verbose as i8 - self.quiet as i8)
    }

    /// alba's cache folder: `$XDG_CACHE_HOME/alba`, else `~/.cache/alba`.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        crate::cache::root()
    }

    /// The executor of this run's plans: `--jobs`, and `dry_run` for this command.
    pub fn executor<'a>(&self, ui: &'a Ui, dry_run: bool) -> crate::execute::Executor<'a> {
        crate::execute::Executor {
            ui,
            jobs: self.jobs(),
            dry_run,
        }
    }

    /// Uploads at once.
    pub fn jobs(&self) -> usize {
        self.jobs.map(usize::from).unwrap_or(8)
    }

    /// Small documents read at once by ls, gc and verify ([`crate::store::many::reads`]).
    pub fn read_jobs(&self) -> usize {
        crate::store::many::reads(self.jobs())
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

    /// The registry client for a `docker://` target, with the run's credentials (flags, then
    /// the Docker config and its helpers, then anonymous).
    pub fn registry_sink(
        &self,
        r: &crate::target::RegistryTarget,
    ) -> Result<crate::publish::registry::RegistrySink> {
        let credentials =
            crate::publish::credentials::resolve(&r.host, &self.registry_credentials())?;
        crate::publish::registry::RegistrySink::new(r, credentials)
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
    cli.global.configure_transport();
    let result = dispatch(cli).await;
    // Cancelled multipart uploads are aborted, and failed pushes delete their leases, from
    // spawned tasks: let them finish first.
    crate::store::s3::finish_aborts(std::time::Duration::from_secs(15)).await;
    result
}

async fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Release(args) => release::run(&cli.global, args).await,
        Command::Build(args) => build::run(&cli.global, args).await,
        Command::Static(cmd) => static_cmd::run(&cli.global, cmd).await,
        Command::Container(cmd) => container::run(&cli.global, cmd).await,
        Command::Completions(args) => completions::completions(args),
        Command::Man => completions::man(),
        Command::Verify(args) => verify::run(&cli.global, args).await,
    }
}
