//! The integration tests: one test binary (`it`) over one harness (`tests/common`), one module
//! per subject. One binary links the harness once instead of once per file, and every test
//! shares one pool of test threads. Only the benchmark (`tests/bench/`, all `#[ignore]`,
//! run in release mode by `bench/run.sh`) is a binary of its own.
//!
//! Run one subject with `cargo test --test it static_release::`, one test by its path, e.g.
//! `cargo test --test it static_release::bad_inputs_are_clear_errors_and_write_nothing`.
//!
//! A missing service (Garage, a registry, Nix…) fails its test, naming what to install
//! (`tests/run.sh` installs everything); `ALBA_ALLOW_SKIP=1` makes such a test print `SKIP`
//! and pass instead, except under `CI=true` (see `tests/common/mod.rs`).

#[path = "../common/mod.rs"]
mod common;

mod ci_jobs;
mod cluster;
mod container_static;
mod faults;
mod flake;
mod harness_selftest;
mod help;
mod lifecycle;
mod nix_lib;
mod provenance;
mod pull_clients;
mod readme;
mod registry_push;
mod release_metadata;
mod remote_builder;
mod scale;
mod signatures;
mod site;
mod speed;
mod static_release;
mod try_sh;
mod verify;
