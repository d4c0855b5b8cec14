//! The one executor: runs any [`Plan`] on any [`Sink`].
//!
//! Phases run strictly in order; steps inside a parallel phase run up to `--jobs` at once
//! under one bytes bar. Every step gives one progress line and one report entry, in plan order.
//! A job's checks ([`Planner::prepare`]) run before anything is written. A push's lease is
//! written before its plan is made and released after it ran; before the phase that commits
//! the earlier ones (an index, a tag document) the executor waits for running gcs, puts back
//! whatever of the earlier phases vanished and writes after all what it had planned as
//! present but a gc took since ([`lease`]). Deletes of a gc run under its marker. `--dry-run` prints the plan and runs nothing. Publishers never print, and
//! never write: this module does both. Layers compressed while the load still runs are
//! uploaded ahead of their plan by [`early`].

pub mod early;
pub mod lease;

use anyhow::Result;
use futures::{StreamExt, TryStreamExt};

use crate::plan::{Action, Note, OnFailure, Phase, Plan, Planner, Sink, Step};
use crate::report::{Status, TargetReport};
use crate::ui::{Ui, human_size};
use lease::{Lease, Sweep};

/// Where one job's plans run: the sink, the gc's marker its deletes run under and the push's
/// lease (each `None` where the job has none, and in a dry run).
#[derive(Clone, Copy)]
struct On<'a> {
    sink: &'a dyn Sink,
    sweep: Option<&'a Sweep>,
    /// The push's lease, settled before a committing phase.
    lease: Option<&'a Lease>,
}

/// How plans run.
pub struct Executor<'a> {
    /// Where progress goes.
    pub ui: &'a Ui,
    /// Steps at once inside a parallel phase.
    pub jobs: usize,
    /// Print the plan, run nothing.
    pub dry_run: bool,
}

impl Executor<'_> {
    /// Runs every plan `planner` makes on `sink`, recording each step in `report`.
    pub async fn run(
        &self,
        sink: &dyn Sink,
        planner: &mut dyn Planner,
        report: &mut TargetReport,
    ) -> Result<()> {
        let result = self.run_job(sink, planner, report).await;
        report.retries = sink.retries();
        result
    }

    /// The job's checks, then its lease (pushes) or gc marker (rm, gc), then its plans.
    async fn run_job(
        &self,
        sink: &dyn Sink,
        planner: &mut dyn Planner,
        report: &mut TargetReport,
    ) -> Result<()> {
        // Reachability and what an rm needs, before anything is written: a wrong target
        // fails fast and leaves nothing behind (no lease, no marker).
        planner.prepare().await?;
        let lease = match (planner.lease(), sink.store(), self.dry_run) {
            (Some(spec), Some(store), false) => {
                let (tags, digests, keys) = (&spec.tags, spec.digests, spec.keys);
                Some(Lease::take(store.clone(), &spec.name, tags, digests, keys).await?)
            }
            _ => None,
        };
        let on = On {
            sink,
            sweep: None,
            lease: lease.as_ref(),
        };
        match (planner.sweeps(), sink.store()) {
            (Some(name), Some(store)) => {
                let store = store.clone();
                Sweep::run(&*store, &name, self.dry_run, self.ui, async |sweep| {
                    self.plans(On { sweep, ..on }, planner, report).await?;
                    if sweep.is_some() {
                        lease::remove_expired(&*store, self.ui).await;
                    }
                    Ok(())
                })
                .await?
            }
            _ => self.plans(on, planner, report).await?,
        }
        if let Some(lease) = lease {
            lease.release().await?;
        }
        Ok(())
    }

    async fn plans(
        &self,
        on: On<'_>,
        planner: &mut dyn Planner,
        report: &mut TargetReport,
    ) -> Result<()> {
        loop {
            // Planning reads the target (a HEAD per blob, listings): show that it is busy.
            let spinner = self.ui.spinner("reading what the target holds");
            let plan = planner.next(!self.dry_run).await;
            spinner.finish_and_clear();
            let Some(plan) = plan? else {
                break;
            };
            for refused in self.run_plan(on, &plan, report).await? {
                planner.refused(&refused);
            }
        }
        if let (false, Some(store)) = (self.dry_run, on.sink.store()) {
            store.finish().await?;
        }
        Ok(())
    }

    /// Runs one plan: notes, then the phases in order. Returns the steps whose tolerated
    /// failure the planner must hear of.
    async fn run_plan(
        &self,
        on: On<'_>,
        plan: &Plan,
        report: &mut TargetReport,
    ) -> Result<Vec<Step>> {
        let sink = on.sink;
        self.say_notes(plan);
        if let Some(tags) = &plan.tags {
            report.tags.clone_from(tags);
        }
        // Statuses may change at the committing phase: what a gc took since planning.
        let mut phases = plan.phases.clone();
        let mut refused = Vec::new();
        for n in 0..phases.len() {
            if let (true, Some(lease)) = (phases[n].commit, on.lease) {
                lease.settle(self.ui).await?;
                self.recheck(sink, &mut phases, n).await?;
            }
            let phase = &phases[n];
            let writes_only = phase
                .steps
                .iter()
                .all(|s| matches!(s.action, Action::Write { .. }));
            match phase.parallel && writes_only {
                true => self.run_parallel(sink, phase, report).await?,
                false => refused.extend(self.run_sequential(on, phase, report).await?),
            }
            if phase.commit && plan.index_digest.is_some() {
                report.index_digest.clone_from(&plan.index_digest);
            }
        }
        Ok(refused)
    }

    /// The plan's notes and warnings: what the planner decided, before any step runs.
    fn say_notes(&self, plan: &Plan) {
        let verb = if self.dry_run {
            "would delete"
        } else {
            "delete"
        };
        for note in &plan.notes {
            match note {
                Note::Line(line) => self.ui.line(line),
                Note::Removes { tag, reason } => {
                    self.ui.line(format!("{verb} tag {tag}: {reason}"))
                }
            }
        }
        for warning in &plan.warnings {
            self.ui.warn(warning);
        }
    }

    /// A phase whose steps run one by one, in order; returns the steps whose failure was
    /// tolerated.
    async fn run_sequential(
        &self,
        on: On<'_>,
        phase: &Phase,
        report: &mut TargetReport,
    ) -> Result<Vec<Step>> {
        let mut refused = Vec::new();
        for step in &phase.steps {
            let Err(e) = self.run_step(on, step, report).await else {
                continue;
            };
            match &step.on_failure {
                OnFailure::Stop => return Err(e),
                OnFailure::Explain(why) => anyhow::bail!("{why} ({e:#}); nothing was deleted"),
                OnFailure::Tolerate(warning) => {
                    self.ui.warn(format!("{warning} ({e:#})"));
                    refused.push(step.clone());
                }
            }
        }
        Ok(refused)
    }

    /// Right before the committing phase `commit` (once running gcs are done), what a gc
    /// took since it was checked: written again now where its phase ran already, and written
    /// after all where a later phase planned it as present (the push re-publishes a tag the gc
    /// was removing).
    async fn recheck(&self, sink: &dyn Sink, phases: &mut [Phase], commit: usize) -> Result<()> {
        for (n, phase) in phases.iter_mut().enumerate() {
            let ran = n < commit;
            for step in &mut phase.steps {
                let planned_present = step.status == Status::Exists || step.done;
                let is_write = matches!(step.action, Action::Write { .. });
                if !is_write || !(ran || planned_present) || sink.exists(step).await? {
                    continue;
                }
                let key = &step.key;
                self.ui.warn(format!(
                    "{key} vanished during the push (a gc?): writing it again"
                ));
                match ran {
                    true => sink.write(step).await?,
                    false => (step.status, step.done) = (Status::New, false),
                }
            }
        }
        Ok(())
    }

    /// A phase whose steps run at once (blobs, binaries), reported in plan order.
    async fn run_parallel(
        &self,
        sink: &dyn Sink,
        phase: &Phase,
        report: &mut TargetReport,
    ) -> Result<()> {
        let total = phase.steps.iter().map(|s| s.size).sum();
        let bar = self.ui.bytes_bar(total, &phase.name);
        let done: Vec<(usize, Status)> = futures::stream::iter(phase.steps.iter().enumerate())
            .map(|(n, step)| {
                let bar = bar.clone();
                async move {
                    let status = self.write(sink, step).await?;
                    bar.inc(step.size);
                    bar.suspend(|| self.ui.line(line(step, status, true)));
                    anyhow::Ok((n, status))
                }
            })
            .buffer_unordered(self.jobs.max(1))
            .try_collect()
            .await?;
        bar.finish_and_clear();
        let mut statuses = vec![Status::Exists; phase.steps.len()];
        for (n, status) in done {
            statuses[n] = status;
        }
        for (step, status) in phase.steps.iter().zip(statuses) {
            report.record(&step.key, step.size, status, step.digest.clone());
        }
        Ok(())
    }

    /// Writes one step's content where it changes the target (not in a dry run).
    async fn write(&self, sink: &dyn Sink, step: &Step) -> Result<Status> {
        if let (Action::Write { content, .. }, true, false) =
            (&step.action, step.changes(), self.dry_run)
        {
            sink.write(step).await?;
            // Documents only (`-v`): manifests and SBOMs would bury the log.
            if let (crate::plan::Content::Bytes(bytes), crate::plan::Address::Key(_)) =
                (content, &step.address)
            {
                let text = String::from_utf8_lossy(bytes);
                let size = human_size(step.size);
                self.ui.detail(format!("{}: {text} ({size})", step.key));
            }
        }
        Ok(step.status)
    }

    /// Runs one step of a sequential phase.
    async fn run_step(&self, on: On<'_>, step: &Step, report: &mut TargetReport) -> Result<()> {
        let sink = on.sink;
        match &step.action {
            Action::Write { .. } => {
                let status = self.write(sink, step).await?;
                self.say(step, status, report);
            }
            Action::Delete => self.delete(on, step, report).await?,
            Action::List(update) => {
                let Some(store) = sink.store().filter(|_| !self.dry_run) else {
                    if step.status != Status::Exists || update.report_unchanged {
                        self.ui.line(list_line(step, step.status, &update.planned));
                        report.record(&step.key, step.size, step.status, step.digest.clone());
                    }
                    return Ok(());
                };
                self.settle_list(&**store, step, update, report).await?;
            }
        }
        Ok(())
    }

    /// One progress line and one report entry for a step of a sequential phase.
    fn say(&self, step: &Step, status: Status, report: &mut TargetReport) {
        self.ui.line(line(step, status, false));
        report.record(&step.key, step.size, status, step.digest.clone());
    }

    /// Deletes one object under the gc's marker: a delete retried through an outage must not
    /// outlive the marker, since a push that sees no gc running trusts what it checked stays.
    async fn delete(&self, on: On<'_>, step: &Step, report: &mut TargetReport) -> Result<()> {
        let (sink, sweep) = (on.sink, on.sweep);
        if let Some(sweep) = sweep {
            sweep.check()?;
        }
        let size = match step.size {
            0 => String::new(),
            size => format!(" ({})", human_size(size)),
        };
        let verb = if self.dry_run {
            "would delete"
        } else {
            "delete"
        };
        let reason = step.reason.as_deref().unwrap_or_default();
        self.ui.line(format!("{verb} {}{size}: {reason}", step.key));
        if !self.dry_run {
            let existed = match sweep {
                None => sink.delete(step).await?,
                Some(sweep) => {
                    let deleted = tokio::time::timeout(sweep.time_left(), sink.delete(step));
                    match deleted.await {
                        Ok(done) => done?,
                        Err(_) => anyhow::bail!(
                            "gc stopped: deleting {} took longer than its marker allows; run gc again",
                            step.key
                        ),
                    }
                }
            };
            if !existed {
                self.ui.line(format!("{} was already gone", step.key));
            }
        }
        report.record_deleted(&step.key, step.size, step.digest.clone(), reason);
        Ok(())
    }

    /// Rebuilds a derived list from the store, writes it where it differs, and reads it back
    /// (with the tag objects listed again) until it holds: a concurrent writer may have written
    /// its list from a listing made before our tag object existed.
    async fn settle_list(
        &self,
        store: &dyn crate::store::ObjectStore,
        step: &Step,
        update: &crate::plan::ListUpdate,
        report: &mut TargetReport,
    ) -> Result<()> {
        let key = update.list.key();
        for round_number in 0..4 {
            let round = update.list.read(store, &update.add, &update.remove).await?;
            if let Some(why) = &round.stored.unreadable {
                self.ui.warn(format!(
                    "{key} is not a valid list ({why}); rebuilding it from the store"
                ));
            }
            let bytes = round.bytes.clone();
            let digest = Some(crate::digest::oci_digest(&bytes));
            let size = bytes.len() as u64;
            if round.settled() {
                if round_number == 0 && update.report_unchanged {
                    self.ui.line(list_line(step, Status::Exists, &round.tags));
                    report.record(&key, size, Status::Exists, digest);
                }
                return Ok(());
            }
            let status = round.status();
            let put = crate::store::Put::bytes(key.clone(), bytes, "application/json");
            store.put(&put).await?;
            self.ui.line(list_line(step, status, &round.tags));
            report.record(&key, size, status, digest);
        }
        Ok(())
    }
}

/// The progress line of a derived list: its status and tags.
fn list_line(step: &Step, status: Status, tags: &[String]) -> String {
    let tags = crate::publish::lifecycle::tag_list(tags);
    format!("{} ({}): tags {tags}", step.label, status.word())
}

/// The progress line of a written (or skipped) step.
fn line(step: &Step, status: Status, sized: bool) -> String {
    match sized && step.size > 0 {
        true => format!(
            "{} ({}, {})",
            step.label,
            human_size(step.size),
            status.word()
        ),
        false => format!("{} ({})", step.label, status.word()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::plan::{Address, LeaseSpec, Once};
    use crate::store::ObjectStore;
    use crate::store::fs::FolderStore;

    fn write(key: &str, text: &'static str) -> Step {
        let bytes = Bytes::from_static(text.as_bytes());
        Step::bytes(Address::Key(key.into()), key, bytes, "text/plain").labelled(key)
    }

    /// A push that planned `a` and `c` as present (a gc took both since) and `b` as new.
    fn plan() -> Plan {
        let a = write("a", "A").with_status(Status::Exists);
        let c = write("c", "C").with_status(Status::Exists);
        Plan {
            phases: vec![
                Phase::new("first", vec![a]).parallel(),
                Phase::new("commit", vec![write("b", "B")]).committing(),
                Phase::new("last", vec![c]),
            ],
            ..Plan::default()
        }
    }

    fn lease() -> Option<LeaseSpec> {
        Some(LeaseSpec {
            name: "x".into(),
            ..LeaseSpec::default()
        })
    }

    async fn run(store: &Arc<dyn ObjectStore>, dry_run: bool) -> TargetReport {
        let ui = Ui::silent();
        let executor = Executor {
            ui: &ui,
            jobs: 2,
            dry_run,
        };
        let mut report = TargetReport::new("t", "static", "x", &[], dry_run);
        let mut planner = Once(Some(plan()), lease());
        executor
            .run(store, &mut planner, &mut report)
            .await
            .unwrap();
        report
    }

    #[tokio::test]
    async fn a_dry_run_reports_the_plan_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(FolderStore::new(dir.path()).unwrap());
        let report = run(&store, true).await;
        let statuses: Vec<_> = report
            .objects
            .iter()
            .map(|o| (o.key.as_str(), o.status))
            .collect();
        let expected = [
            ("a", Status::Exists),
            ("b", Status::New),
            ("c", Status::Exists),
        ];
        assert_eq!(statuses, expected);
        assert_eq!(report.bytes_sent, 0);
        assert!(store.list("").await.unwrap().is_empty(), "nothing written");
    }

    #[tokio::test]
    async fn the_committing_phase_puts_back_what_vanished_and_the_lease_goes() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(FolderStore::new(dir.path()).unwrap());
        let report = run(&store, false).await;
        assert_eq!(
            store.get("a").await.unwrap().unwrap(),
            "A",
            "restored before b"
        );
        assert_eq!(store.get("b").await.unwrap().unwrap(), "B");
        assert_eq!(report.bytes_sent, 2, "b and c, each 1 byte");
        assert!(
            store.list(lease::LEASES).await.unwrap().is_empty(),
            "lease released"
        );
    }
}
