//! The per-target loop every publishing command shares: a section heading per target, its
//! report, a ✅ or ❌ line, and the first failure returned once every target was tried.

use anyhow::Result;

use crate::execute::Executor;
use crate::plan::{Planner, Sink};
use crate::report::{Report, TargetReport};
use crate::ui::Ui;

/// What the loop says of one target.
pub struct Heading {
    /// The section heading (`push to s3://…`).
    pub section: String,
    /// The line when it failed (`❌ push to s3://… failed`).
    pub failed: String,
}

/// What the loop says when a target is done.
#[derive(Clone, Copy)]
pub struct Done {
    /// After a real run (`✅ push succeeded`).
    pub ok: &'static str,
    /// After a dry run (`✅ dry run done, nothing written`).
    pub dry: &'static str,
}

/// The words of pushes.
pub const PUSHED: Done = Done {
    ok: "✅ push succeeded",
    dry: "✅ dry run done, nothing written",
};

/// The words of rm and gc.
pub const REMOVED: Done = Done {
    ok: "✅ done",
    dry: "✅ dry run done, nothing deleted",
};

/// ` (dry run)` or nothing, for headings.
pub fn dry(dry_run: bool) -> &'static str {
    if dry_run { " (dry run)" } else { "" }
}

/// The heading of a push to `target`.
pub fn push_heading(target: &impl std::fmt::Display, dry_run: bool) -> Heading {
    Heading {
        section: format!("push to {target}{}", dry(dry_run)),
        failed: format!("❌ push to {target} failed"),
    }
}

/// Runs `one` for each item in turn; every target is tried, the first failure is returned.
pub async fn each<T>(
    ui: &Ui,
    dry_run: bool,
    done: Done,
    items: Vec<(Heading, T)>,
    report: &mut Report,
    mut one: impl AsyncFnMut(T) -> (TargetReport, Result<()>),
) -> Result<()> {
    let mut failure = None;
    for (heading, item) in items {
        ui.section(&heading.section);
        let (target_report, result) = one(item).await;
        report.push(target_report);
        if let Err(e) = said(ui, dry_run, done, &heading, result) {
            failure.get_or_insert(e);
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Says how a target's run ended.
pub fn said(
    ui: &Ui,
    dry_run: bool,
    done: Done,
    heading: &Heading,
    result: Result<()>,
) -> Result<()> {
    match &result {
        Ok(()) => ui.line(if dry_run { done.dry } else { done.ok }),
        Err(_) => ui.line(&heading.failed),
    }
    result
}

/// Plans with `plan` on `sink` and runs the plans; the report gets the sink's retries even
/// when planning failed.
pub async fn run_on(
    executor: &Executor<'_>,
    sink: &dyn Sink,
    report: &mut TargetReport,
    planner: Result<Box<dyn Planner + '_>>,
) -> Result<()> {
    let result = match planner {
        Ok(mut planner) => executor.run(sink, &mut *planner, report).await,
        Err(e) => Err(e),
    };
    report.retries = sink.retries();
    result
}
