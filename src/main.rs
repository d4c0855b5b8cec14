//! alba: publish what a Nix flake builds.
//!
//! Data flows one way: config → nix → artifact set → publishers → report.

mod artifact;
mod cli;
mod config;
mod digest;
mod error;
mod image;
mod names;
mod nix;
mod platform;
mod publish;
mod report;
mod store;
mod target;
mod ui;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(error) = runtime.block_on(cli::run(cli)) {
        eprintln!("error: {error:#}");
        std::process::exit(error::exit_code(&error));
    }
}
