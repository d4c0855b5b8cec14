//! `alba container rm|gc` on an OCI registry (`docker://`), as plans.
//!
//! A registry deletes a manifest by digest, and with it every tag pointing at it; its blobs
//! are left to the registry's own garbage collector. Because deleting by digest removes every
//! tag of that manifest, `rm` of a tag that shares its manifest with other tags deletes by tag
//! instead (OCI distribution 1.1), and stops with a clear message where the registry cannot;
//! `gc` keeps such aliases of kept tags, and a removed tag sharing a kept tag's manifest is
//! deleted by tag alone — or stays, with a warning, where the registry deletes only by digest.
//! What is attached to a removed manifest or the platform manifests it lists (cosign's
//! `sha256-<hex>.sig`, referrers tags `sha256-<hex>`) is deleted after it, by digest.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::{Result, bail};
use async_trait::async_trait;

use super::delete::{Outcome, RegistryRepo};
use crate::plan::{Address, Note, OnFailure, Phase, Plan, Planner, Sink, Step};
use crate::publish::derived::{attached_subject, is_attached_tag};
use crate::publish::lifecycle::{self, Decision, GcOptions, Removing, Selection};
use crate::store::ObjectStore;

/// `alba container rm` or `gc` on a registry: one plan of manifest deletes.
pub struct RegistryRemoval {
    repo: Arc<RegistryRepo>,
    what: Removing,
    planned: bool,
    /// What gc selected (rm: the one tag), once planned; tags the registry refused to delete
    /// move to the kept ones.
    pub selection: Selection,
}

impl RegistryRemoval {
    /// `alba container rm` (the tag's manifest by digest or, when other tags share it, the tag
    /// alone where the registry allows it) or `gc` (the manifests of old tags, by digest).
    pub fn new(repo: Arc<RegistryRepo>, what: Removing) -> RegistryRemoval {
        RegistryRemoval {
            repo,
            what,
            planned: false,
            selection: Selection::default(),
        }
    }

    fn plan_rm(&mut self, tag: &str, digests: &BTreeMap<String, String>) -> Result<Plan> {
        let repo = &self.repo;
        let Some(digest) = digests.get(tag).cloned() else {
            let tags: Vec<String> = digests.keys().cloned().collect();
            bail!(
                "tag {tag} does not exist in {} on registry {} (tags there: {}); nothing was deleted",
                repo.repository(),
                repo.host(),
                lifecycle::tag_list(&tags)
            );
        };
        self.selection.remove = vec![Decision {
            tag: tag.to_string(),
            reason: "removed by rm".to_string(),
        }];
        let sharing: Vec<String> = digests
            .iter()
            .filter(|(t, d)| *d == &digest && t.as_str() != tag)
            .map(|(t, _)| t.clone())
            .collect();
        let step = if sharing.is_empty() {
            let reason = format!(
                "tag {tag}: removed by rm (its manifest, by digest; the registry's garbage collector frees the blobs)"
            );
            delete(&digest, reason)
        } else {
            let shared = sharing.join(", ");
            let reason = format!(
                "tag {tag}: removed by rm (by tag: {shared} point at the same image and stay)"
            );
            let explain = format!(
                "tag {tag} points at the same image as {shared}, and deleting that image's manifest would remove {shared} too; alba tried to delete the tag alone, which registry {} refused",
                repo.host()
            );
            Step {
                on_failure: OnFailure::Explain(explain),
                ..delete(tag, reason)
            }
        };
        Ok(Plan {
            phases: vec![Phase::new("manifests", vec![step])],
            ..Plan::default()
        })
    }

    fn plan_gc(&mut self, opts: &GcOptions, digests: &BTreeMap<String, String>) -> Plan {
        // Referrers and signature tags (`sha256-<hex>[.sig]`) are no release's: they stay
        // with their subjects.
        let tags: Vec<String> = digests
            .keys()
            .filter(|t| !is_attached_tag(t))
            .cloned()
            .collect();
        let selection = lifecycle::select_container_tags(&tags, opts, |t| digests.get(t).cloned());
        let mut plan = Plan {
            warnings: lifecycle::unversioned_warning(&selection)
                .into_iter()
                .collect(),
            notes: selection.notes(),
            ..Plan::default()
        };
        // One DELETE per manifest: it removes every (removed) tag pointing at it. A manifest a
        // kept tag shares (1.1 and 1.2 from one commit) loses only the removed tag's name.
        let kept: BTreeSet<&String> = selection
            .keep
            .iter()
            .filter_map(|d| digests.get(&d.tag))
            .collect();
        let mut by_digest: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for d in &selection.remove {
            if let Some(digest) = digests.get(&d.tag) {
                by_digest
                    .entry(digest.clone())
                    .or_default()
                    .push(d.tag.clone());
            }
        }
        let mut steps = Vec::new();
        for (digest, tags) in by_digest {
            if !kept.contains(&digest) {
                let reason = format!("manifest of removed tag {}", tags.join(", "));
                steps.push(delete(&digest, reason));
                continue;
            }
            for tag in tags {
                let reason =
                    format!("tag {tag}: removed by gc (by tag: a kept tag shares its image)");
                let warning = format!(
                    "tag {tag} stays: it shares its image with a kept tag, and registry {} refused to delete the tag alone",
                    self.repo.host()
                );
                steps.push(Step {
                    on_failure: OnFailure::Tolerate(warning),
                    ..delete(&tag, reason)
                });
            }
        }
        if !selection.remove.is_empty() {
            let line = "blobs: the registry's own garbage collector frees them (distribution: `registry garbage-collect`)";
            plan.notes.push(Note::Line(line.into()));
        }
        self.selection = selection;
        plan.phases = vec![Phase::new("manifests", steps)];
        plan
    }
}

impl RegistryRemoval {
    /// The tags attached to the manifests `plan` deletes by digest and to the platform
    /// manifests those list — their signatures (`sha256-<hex>.sig`) and referrers indexes —
    /// deleted after them, by digest: they go with their subject, as on a static registry.
    async fn attached_steps(
        &self,
        plan: &Plan,
        digests: &BTreeMap<String, String>,
    ) -> Result<Vec<Step>> {
        let mut subjects = BTreeSet::new();
        for step in plan.phases.iter().flat_map(|p| &p.steps) {
            let Address::Manifest(reference) = &step.address else {
                continue;
            };
            if !reference.starts_with("sha256:") {
                continue;
            }
            subjects.insert(reference.clone());
            if let Some(bytes) = self.repo.manifest(reference).await? {
                subjects.extend(listed_manifests(&bytes));
            }
        }
        let attached = digests.iter().filter(|(tag, _)| {
            attached_subject(tag).is_some_and(|subject| subjects.contains(&subject))
        });
        let steps = attached.map(|(tag, digest)| {
            let reason = format!("tag {tag}: attached to a removed manifest");
            delete(digest, reason)
        });
        Ok(steps.collect())
    }
}

/// The manifest digests an index lists (none for a manifest or unreadable bytes).
fn listed_manifests(bytes: &[u8]) -> Vec<String> {
    let index = serde_json::from_slice::<serde_json::Value>(bytes).unwrap_or_default();
    let entries = index["manifests"].as_array().cloned().unwrap_or_default();
    let digests = entries.iter().filter_map(|e| e["digest"].as_str());
    digests.map(str::to_string).collect()
}

/// The delete of one manifest reference (a digest, or a tag alone).
fn delete(reference: &str, reason: String) -> Step {
    let digest = reference
        .starts_with("sha256:")
        .then(|| reference.to_string());
    let address = Address::Manifest(reference.to_string());
    Step::delete(address, format!("manifests/{reference}"), reason).sized(0, digest)
}

#[async_trait]
impl Planner for RegistryRemoval {
    async fn next(&mut self, _applied: bool) -> Result<Option<Plan>> {
        if std::mem::replace(&mut self.planned, true) {
            return Ok(None);
        }
        let digests = self.repo.tag_digests().await?;
        let mut plan = match &self.what {
            Removing::Tag(tag) => self.plan_rm(&tag.clone(), &digests)?,
            Removing::Old(opts) => self.plan_gc(&opts.clone(), &digests),
        };
        let attached = self.attached_steps(&plan, &digests).await?;
        plan.phases.push(Phase::new("attached", attached));
        Ok(Some(plan))
    }

    fn refused(&mut self, step: &Step) {
        let Address::Manifest(tag) = &step.address else {
            return;
        };
        let (stays, removed) = std::mem::take(&mut self.selection.remove)
            .into_iter()
            .partition(|d| &d.tag == tag);
        self.selection.remove = removed;
        self.selection.keep.extend(stays);
    }
}

/// A registry carries out manifest deletes.
#[async_trait]
impl Sink for RegistryRepo {
    async fn write(&self, step: &Step) -> Result<()> {
        bail!("{}: rm and gc write nothing here (alba bug)", step.key)
    }

    async fn delete(&self, step: &Step) -> Result<bool> {
        let Address::Manifest(reference) = &step.address else {
            bail!(
                "{}: only manifests are deleted on a registry (alba bug)",
                step.key
            );
        };
        Ok(RegistryRepo::delete(self, reference).await? != Outcome::Gone)
    }

    async fn exists(&self, _step: &Step) -> Result<bool> {
        Ok(true)
    }

    fn store(&self) -> Option<&Arc<dyn ObjectStore>> {
        None
    }

    fn retries(&self) -> u64 {
        self.retry_count()
    }
}
