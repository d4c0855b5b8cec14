//! `alba container push|ls`: multi-arch OCI images.

use std::path::PathBuf;

use anyhow::Result;

use super::Global;
use crate::bail_input;
use crate::platform::Platform;
use crate::report::Report;
use crate::target::Target;
use crate::ui::Ui;

/// Publishes images under every tag to every target.
#[allow(clippy::too_many_arguments)]
pub async fn publish_all(
    _global: &Global,
    _ui: &Ui,
    _name: &str,
    _tags: &[String],
    _images: &[(Platform, PathBuf)],
    _targets: &[Target],
    _dry_run: bool,
    _report: &mut Report,
) -> Result<()> {
    bail_input!("container publishing is not available yet")
}
