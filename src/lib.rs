//! alba: publish what a Nix flake builds.
//!
//! Data flows one way: config → nix → artifact set → publishers (plan) → executor → report.
//! The binary (`src/main.rs`) only parses arguments and maps errors to exit codes; everything
//! else lives here, one module per job.

#![warn(missing_docs)]

pub mod artifact;
pub mod cache;
pub mod cli;
pub mod config;
pub mod digest;
pub mod error;
pub mod execute;
pub mod image;
pub mod meta;
pub mod names;
pub mod nix;
pub mod plan;
pub mod platform;
pub mod provenance;
pub mod publish;
pub mod report;
pub mod sbom;
pub mod sign;
pub mod store;
pub mod target;
pub mod transport;
pub mod ui;
pub mod verify;
