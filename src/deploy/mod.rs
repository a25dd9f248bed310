//! The deploy verbs against a cluster (deploy, rollback, plan, history), each a fixed order of steps: validate, lock, record, perform, record the outcome — with automatic rollback of every resource when a rollout fails.
//!
//! Design note: Helm's actions taught the order; its stuck "pending" releases taught the lock
//! that expires. Every step that can fail leaves a release record saying what happened, and
//! the record of the last good release is never removed, so the next run (or a person) can
//! always tell what is running. The cluster is reached only through [`crate::adapters::kube`].

pub mod apply;
pub mod preflight;
pub mod store;
pub mod track;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::adapters::kube::{ApplyOptions, Cluster, KubeError};
use crate::adapters::runner::Runner;
use crate::pipeline::facts::{
    ChangeAction, DeployFacts, PlannedAction, PlannedChange, RollbackFacts, RolloutFailure,
};
use crate::pipeline::Cancel;
use crate::release::{self, ObjectRef, Release, ReleaseStatus, RollbackPlan};
use crate::rollout::Tolerances;
use store::StoreLocation;

/// Settings of the deploy verbs (from the validated configuration).
#[derive(Debug, Clone)]
pub struct Settings {
    pub environment: String,
    /// Where release records and the lock live (the `namespace` input).
    pub namespace: String,
    pub rollout_timeout: Duration,
    pub rollback: bool,
    pub prune: bool,
    pub force_conflicts: bool,
    pub history_max: u32,
    pub lock_timeout: Duration,
    pub apply_concurrency: usize,
    pub tolerances: Tolerances,
}

/// Who runs this release and why, for the record.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub commit: Option<String>,
    pub images: std::collections::BTreeMap<String, String>,
    pub actor: Option<String>,
    pub run_url: Option<String>,
}

/// How a verb ended, for the phase result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Done and healthy (or, for plan/history, answered).
    Succeeded,
    /// Failed; the environment was restored to the last good release.
    RolledBack { reason: String, message: String },
    /// Failed; the environment may not be at a good release (said in `message`).
    Failed { reason: String, message: String },
}

/// One verb's result: how it ended, whether it wrote to the cluster, and the facts.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub ending: Ending,
    pub changed: bool,
    pub facts: DeployFacts,
}

impl Outcome {
    fn new() -> Self {
        Outcome {
            ending: Ending::Succeeded,
            changed: false,
            facts: DeployFacts::default(),
        }
    }

    fn failed(mut self, reason: &str, message: impl Into<String>) -> Self {
        self.ending = Ending::Failed {
            reason: reason.to_string(),
            message: message.into(),
        };
        self
    }
}

/// The deploy verbs bound to one cluster and environment.
pub struct Engine<'a> {
    pub cluster: Arc<Cluster>,
    pub settings: Settings,
    pub runner: &'a Runner,
    pub cancel: &'a Cancel,
    /// The lock holder identity of this run.
    pub me: String,
    /// How images are verified in the pre-flight (`None`: not checked, e.g. plan mode).
    pub images: Option<ImageVerification>,
}

/// The registry client and credentials the pre-flight image check uses.
pub struct ImageVerification {
    pub registry: crate::adapters::registry::Registry,
    pub credentials: preflight::HostCredentials,
}

/// Test hook: `GANTRY_TEST_CRASH_AT=<step>` kills the process at that step boundary the way
/// SIGKILL would (no cleanup, no lock release), so crash recovery is tested for real.
pub fn crash_point(step: &str) {
    if std::env::var("GANTRY_TEST_CRASH_AT").is_ok_and(|wanted| wanted == step) {
        eprintln!("gantry: crash point {step} reached (GANTRY_TEST_CRASH_AT)");
        std::process::abort();
    }
}

/// Why a deploy failed: the failure reason, the message, and the rollout evidence (with the
/// namespace of the failing pod) when a workload failed.
type RunFailure = (String, String, Option<(String, RolloutFailure)>);

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

impl Engine<'_> {
    fn location(&self) -> StoreLocation {
        StoreLocation {
            namespace: self.settings.namespace.clone(),
            environment: self.settings.environment.clone(),
        }
    }

    /// Makes sure the namespace holding records and the lock exists (created if missing).
    async fn ensure_home(&self) -> Result<bool, KubeError> {
        let namespace = ObjectRef {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: self.settings.namespace.clone(),
        };
        if self.cluster.get(&namespace).await?.is_some() {
            return Ok(false);
        }
        self.cluster
            .apply(
                &serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.settings.namespace}}),
                ApplyOptions::default(),
            )
            .await?;
        Ok(true)
    }

    async fn take_lock(&self) -> Result<store::HeldLock, String> {
        let runner = self.runner;
        store::lock(
            self.cluster.clone(),
            &self.location(),
            &self.me,
            self.settings.lock_timeout,
            self.cancel,
            |holder| {
                runner.info(&format!(
                    "waiting for the environment lock held by {holder} (up to {}s)",
                    self.settings.lock_timeout.as_secs()
                ))
            },
        )
        .await
        .map_err(|err| err.to_string())
    }

    async fn release_lock(&self, lock: store::HeldLock) {
        if let Err(err) = lock.release().await {
            self.runner.warning(&format!(
                "could not release the environment lock (it expires by itself in {}s): {err}",
                release::lease::LEASE_DURATION.as_secs()
            ));
        }
    }

    /// Brings the environment back to a consistent release after killed runs: releases left
    /// `pending` are undone (their objects that the last good release lacks are deleted and
    /// the last good release re-applied), or, for an interrupted `rollback` command, finished;
    /// each is recorded with what happened. Also repairs a run killed between recording a new
    /// release deployed and the old one superseded. Returns the history as it now is.
    async fn recover(
        &self,
        mut history: Vec<Release>,
        facts: &mut DeployFacts,
    ) -> Result<Vec<Release>, String> {
        let at = self.location();
        // Two `deployed` records: the newer is current (it was recorded healthy first).
        if let Some(current) = release::last_deployed(&history).map(|r| r.number) {
            for record in history.iter_mut() {
                if record.status == ReleaseStatus::Deployed && record.number != current {
                    record.status = ReleaseStatus::Superseded;
                    record.updated = now();
                    store::save(&self.cluster, &at, record).await?;
                }
            }
        }
        let pending: Vec<Release> = release::interrupted(&history)
            .into_iter()
            .cloned()
            .collect();
        if pending.is_empty() {
            return Ok(history);
        }
        let last_good = release::last_deployed(&history).cloned();
        let numbers: Vec<String> = pending.iter().map(|r| r.number.to_string()).collect();
        self.runner.warning(&format!(
            "release{} {} {} interrupted (the run that started {} stopped before recording an outcome); restoring a consistent release before this run's own work",
            if pending.len() == 1 { "" } else { "s" },
            numbers.join(", "),
            if pending.len() == 1 { "was" } else { "were" },
            if pending.len() == 1 { "it" } else { "them" },
        ));
        // An interrupted rollback command is finished: its target is what was wanted.
        let newest = pending.last().cloned();
        let finishing_rollback = newest
            .as_ref()
            .filter(|r| r.restored_from.is_some())
            .cloned();
        let mut leaving: Vec<Value> = Vec::new();
        for record in &pending {
            leaving.extend(record.manifests.iter().cloned());
        }
        let plan = match (&finishing_rollback, &last_good) {
            (Some(rollback), _) => {
                if let Some(good) = &last_good {
                    leaving.extend(good.manifests.iter().cloned());
                }
                RollbackPlan::Restore {
                    to: rollback.restored_from.unwrap_or(rollback.number),
                    reapply: rollback.manifests.clone(),
                    delete: release::objects_to_delete(&leaving, &rollback.manifests),
                }
            }
            (None, Some(good)) => RollbackPlan::Restore {
                to: good.number,
                reapply: good.manifests.clone(),
                delete: release::objects_to_delete(&leaving, &good.manifests),
            },
            (None, None) => RollbackPlan::RemoveAll {
                delete: release::objects_to_delete(&leaving, &[]),
            },
        };
        let restored = self
            .execute_rollback(plan, newest.as_ref().map(|r| r.number))
            .await;
        if let Some(err) = &restored.error {
            return Err(format!(
                "could not restore a consistent release after interrupted release {}: {err}",
                numbers.join(", ")
            ));
        }
        for record in history.iter_mut() {
            if record.status != ReleaseStatus::Pending {
                continue;
            }
            let finished = finishing_rollback
                .as_ref()
                .is_some_and(|r| r.number == record.number);
            if finished {
                record.status = ReleaseStatus::Deployed;
                record.description = format!(
                    "{} (interrupted, finished by the next run)",
                    record.description
                );
            } else {
                record.status = ReleaseStatus::Failed;
                record.description = match restored.to_release {
                    Some(to) => format!("interrupted; the next run restored release {to}"),
                    None => "interrupted; the next run removed it (no earlier release)".into(),
                };
                facts.interrupted.push(record.number);
            }
            record.updated = now();
            store::save(&self.cluster, &at, record).await?;
        }
        if let (Some(finished), Some(good)) = (&finishing_rollback, &last_good) {
            if let Some(record) = history.iter_mut().find(|r| r.number == good.number) {
                if record.number != finished.number {
                    record.status = ReleaseStatus::Superseded;
                    record.updated = now();
                    store::save(&self.cluster, &at, record).await?;
                }
            }
        }
        Ok(history)
    }

    /// Pre-flight before the first write: images resolve (and are pinned), the dry run passes,
    /// the identity may do everything the release needs. Every problem at once.
    pub async fn preflight(&self, objects: &mut [Value]) -> Result<Vec<String>, Vec<String>> {
        let mut problems = Vec::new();
        let mut notes = Vec::new();
        if let Some(images) = &self.images {
            let checked =
                preflight::check_images(objects, &images.registry, &images.credentials).await;
            for (object, container, from, to) in &checked.pinned {
                self.runner
                    .info(&format!("{object} {container}: {from} resolved to {to}"));
            }
            for unverified in &checked.unverified {
                self.runner.warning(unverified);
                notes.push(format!("unverified: {unverified}"));
            }
            problems.extend(checked.missing);
        }
        let (rejected, deferred) = preflight::dry_run(
            &self.cluster,
            objects,
            self.settings.force_conflicts,
            std::slice::from_ref(&self.settings.namespace),
        )
        .await;
        problems.extend(rejected.into_iter().map(|r| format!("dry run: {r}")));
        for object in deferred {
            notes.push(format!(
                "{object}: not dry-run checked (its namespace is created by this release)"
            ));
        }
        match self.access_needed(objects).await {
            Ok(needed) => match preflight::missing_access(&self.cluster, &needed).await {
                Ok(missing) => {
                    for access in missing {
                        problems.push(format!(
                            "{} may not {} {}{} (grant it with {})",
                            self.cluster.identity(),
                            access.verb,
                            access.resource,
                            access
                                .namespace
                                .as_deref()
                                .map(|n| format!(" in namespace {n}"))
                                .unwrap_or_default(),
                            access.rule()
                        ));
                    }
                }
                Err(err) => problems.push(format!("permission check: {err}")),
            },
            Err(err) => problems.push(format!("permission check: {err}")),
        }
        if problems.is_empty() {
            Ok(notes)
        } else {
            Err(problems)
        }
    }

    async fn access_needed(&self, objects: &[Value]) -> Result<Vec<preflight::Access>, KubeError> {
        let mut applied = Vec::new();
        let mut namespaces = std::collections::BTreeSet::new();
        for object in objects {
            let Some(reference) = ObjectRef::of(object) else {
                continue;
            };
            let resolved = self
                .cluster
                .resolve(&reference.api_version, &reference.kind)
                .await;
            let resolved = match resolved {
                Ok(resolved) => resolved,
                // Kinds of CRDs in this release: checked at apply time.
                Err(KubeError::UnknownKind { .. }) => continue,
                Err(err) => return Err(err),
            };
            if release::tracked_kinds(&reference.kind) {
                if let Some(namespace) = &reference.namespace {
                    namespaces.insert(namespace.clone());
                }
            }
            applied.push(preflight::ResourceInScope {
                group: resolved.resource.group.clone(),
                resource: resolved.resource.plural.clone(),
                namespace: if resolved.namespaced {
                    reference.namespace.clone()
                } else {
                    None
                },
            });
        }
        applied.sort();
        applied.dedup();
        let namespaces: Vec<String> = namespaces.into_iter().collect();
        Ok(preflight::required_access(
            &applied,
            &[],
            &namespaces,
            &self.settings.namespace,
        ))
    }

    /// `deploy`: applies `objects` (rendered, in apply order) as a new release, tracks it,
    /// prunes what the last release had and this one has not, rolls back on failure.
    pub async fn deploy(&self, mut objects: Vec<Value>, origin: &Origin) -> Outcome {
        let mut outcome = Outcome::new();
        match self.preflight(&mut objects).await {
            Ok(notes) => outcome.facts.preflight = notes,
            Err(problems) => {
                for problem in &problems {
                    self.runner.error(&format!("pre-flight: {problem}"));
                }
                outcome.facts.preflight = problems.clone();
                return outcome.failed(
                    "preflight-failed",
                    format!(
                        "pre-flight found {} problem{}; nothing was applied: {}",
                        problems.len(),
                        if problems.len() == 1 { "" } else { "s" },
                        problems.join("; ")
                    ),
                );
            }
        }
        match self.ensure_home().await {
            Ok(created) => outcome.changed |= created,
            Err(err) => return outcome.failed("cluster-error", err.to_string()),
        }
        let lock = match self.take_lock().await {
            Ok(lock) => lock,
            Err(err) => return outcome.failed("locked", err),
        };
        if let Some(previous) = &lock.taken_over_from {
            self.runner.warning(&format!(
                "took over the environment lock from {previous}, which stopped renewing it"
            ));
        }
        let outcome = self.deploy_locked(objects, origin, outcome).await;
        self.release_lock(lock).await;
        outcome
    }

    async fn deploy_locked(
        &self,
        objects: Vec<Value>,
        origin: &Origin,
        mut outcome: Outcome,
    ) -> Outcome {
        let at = self.location();
        let (history, warnings) = match store::history(&self.cluster, &at).await {
            Ok(found) => found,
            Err(err) => return outcome.failed("cluster-error", err.to_string()),
        };
        for warning in warnings {
            self.runner.warning(&warning);
        }
        let history = match self.recover(history, &mut outcome.facts).await {
            Ok(history) => history,
            Err(err) => {
                outcome.changed = true;
                return outcome.failed("recovery-failed", err);
            }
        };
        crash_point("before-pending-record");
        let last_good = release::last_deployed(&history).cloned();
        // Objects a failed or cancelled run after the last good release may have left.
        let leftovers = release::applied_since_last_good(&history);
        outcome.facts.previous_release = last_good.as_ref().map(|r| r.number);
        if let Some(current) = last_good.as_ref().filter(|r| r.manifests == objects) {
            if leftovers.is_empty() {
                return self.redeploy_current(current.clone(), outcome).await;
            }
        }
        let number = release::next_number(&history);
        outcome.facts.release = Some(number);
        let stamp = now();
        let mut record = Release {
            environment: self.settings.environment.clone(),
            number,
            status: ReleaseStatus::Pending,
            commit: origin.commit.clone(),
            images: origin.images.clone(),
            manifests: objects.clone(),
            created: stamp.clone(),
            updated: stamp,
            description: "applying".into(),
            actor: origin.actor.clone(),
            run_url: origin.run_url.clone(),
            restored_from: None,
        };
        // The pending record goes first: a run killed from here on is recognised.
        if let Err(err) = store::save(&self.cluster, &at, &record).await {
            return outcome.failed(
                "record-failed",
                format!("could not write the release record, nothing was applied: {err}"),
            );
        }
        outcome.changed = true;
        crash_point("after-pending-record");
        self.runner.info(&format!(
            "release {number}: applying {} objects{}",
            objects.len(),
            match &last_good {
                Some(good) => format!(" (last good release: {})", good.number),
                None => " (first release of this environment)".into(),
            }
        ));

        let applied = apply::apply_all(
            &self.cluster,
            &objects,
            ApplyOptions {
                dry_run: false,
                force: self.settings.force_conflicts,
            },
            self.settings.apply_concurrency,
            "apply",
        )
        .await;
        outcome.facts.applied = applied.changes.clone();
        for change in &applied.changes {
            self.runner
                .info(&format!("{} {}", change.object, change.action.as_str()));
        }
        let failure: Option<RunFailure> = if !applied.errors.is_empty() {
            Some((
                "apply-failed".into(),
                format!(
                    "applying release {number} failed: {}",
                    join(&applied.errors)
                ),
                None,
            ))
        } else {
            // Prune: what the last good release (or a failed or cancelled one after it) had,
            // this one has not.
            if self.settings.prune {
                let mut previous: Vec<Value> = last_good
                    .as_ref()
                    .map(|r| r.manifests.clone())
                    .unwrap_or_default();
                previous.extend(leftovers.iter().cloned());
                let gone = release::objects_to_delete(&previous, &objects);
                let (deleted, errors) = apply::delete_all(&self.cluster, &gone).await;
                for object in &deleted {
                    self.runner.info(&format!("{object} pruned"));
                }
                outcome.facts.pruned = deleted;
                for error in errors {
                    self.runner.warning(&format!("prune: {error}"));
                }
            }
            crash_point("before-tracking");
            let tracked = track::track_all(
                &self.cluster,
                &objects,
                &self.settings.tolerances,
                self.settings.rollout_timeout,
                self.cancel,
                self.runner,
            )
            .await;
            outcome.facts.workloads = tracked.workloads.clone();
            if tracked.healthy() {
                None
            } else if tracked.cancelled {
                Some((
                    "cancelled".into(),
                    format!("the run was cancelled while release {number} was rolling out"),
                    None,
                ))
            } else if let Some((namespace, failure)) = tracked.failure {
                Some((
                    "rollout-failed".into(),
                    format!(
                        "release {number}: {} failed: {}: {}",
                        failure.object, failure.reason, failure.message
                    ),
                    Some((namespace, failure)),
                ))
            } else {
                Some((
                    "rollout-timeout".into(),
                    format!(
                        "release {number} did not become healthy within rollout-timeout ({}s)",
                        self.settings.rollout_timeout.as_secs()
                    ),
                    None,
                ))
            }
        };

        let Some((reason, message, evidence)) = failure else {
            // Success: this release is current, the previous one superseded, old records trimmed.
            crash_point("before-deployed-record");
            record.status = ReleaseStatus::Deployed;
            record.updated = now();
            record.description = "deployed".into();
            if let Err(err) = store::save(&self.cluster, &at, &record).await {
                return outcome.failed(
                    "record-failed",
                    format!(
                        "release {number} is healthy but its record could not be written: {err}"
                    ),
                );
            }
            crash_point("before-superseded-record");
            if let Some(mut previous) = last_good {
                previous.status = ReleaseStatus::Superseded;
                previous.updated = now();
                if let Err(err) = store::save(&self.cluster, &at, &previous).await {
                    self.runner.warning(&format!(
                        "could not mark release {} superseded: {err}",
                        previous.number
                    ));
                }
            }
            self.trim_history().await;
            outcome.facts.rendered_manifests = Some(audit_yaml(&objects));
            return outcome;
        };

        // Failure: diagnose, then roll back (or not), then record both.
        let mut failure_facts = None;
        if let Some((namespace, mut failure)) = evidence {
            track::diagnose(&self.cluster, &namespace, &mut failure).await;
            failure_facts = Some(failure);
        }
        outcome.facts.failure = failure_facts;
        if !self.settings.rollback || reason == "cancelled" {
            record.status = ReleaseStatus::Failed;
            record.updated = now();
            record.description = message.clone();
            let saved = store::save(&self.cluster, &at, &record).await;
            let state = match (&last_good, reason.as_str()) {
                (_, "cancelled") => format!(
                    "the cluster is left with release {number} partly rolled out; the next run reconciles it"
                ),
                (Some(good), _) => format!(
                    "rollback is off: the cluster runs release {number} as applied, not the last good release {}",
                    good.number
                ),
                (None, _) => format!("rollback is off: release {number} stays as applied"),
            };
            let mut text = format!("{message}; {state}");
            if let Err(err) = saved {
                text.push_str(&format!("; its record could not be written: {err}"));
            }
            return outcome.failed(&reason, text);
        }
        crash_point("before-rollback");
        let mut failed_view = record.clone();
        failed_view.manifests.extend(leftovers.iter().cloned());
        let plan = release::rollback_plan(&failed_view, last_good.as_ref());
        let rolled = self.execute_rollback(plan, Some(number)).await;
        crash_point("before-rollback-record");
        let rollback_error = rolled.error.clone();
        outcome.facts.rollback = Some(rolled.clone());
        record.status = if rollback_error.is_none() {
            ReleaseStatus::RolledBack
        } else {
            ReleaseStatus::Failed
        };
        record.updated = now();
        record.description = match (&rollback_error, rolled.to_release) {
            (None, Some(to)) => format!("{message}; rolled back to release {to}"),
            (None, None) => format!("{message}; first release removed"),
            (Some(err), _) => format!("{message}; the rollback failed too: {err}"),
        };
        if let Err(err) = store::save(&self.cluster, &at, &record).await {
            self.runner
                .warning(&format!("could not record release {number}: {err}"));
        }
        match rollback_error {
            None => {
                if let Some(good) = &last_good {
                    outcome.facts.rendered_manifests = Some(audit_yaml(&good.manifests));
                }
                outcome.ending = Ending::RolledBack {
                    reason,
                    message: match rolled.to_release {
                        Some(to) => format!(
                            "{message}; rolled back: release {to} is restored and healthy"
                        ),
                        None => format!(
                            "{message}; the first release was removed entirely (nothing of it is left)"
                        ),
                    },
                };
                outcome
            }
            Some(err) => outcome.failed(
                "rollback-failed",
                format!(
                    "an error occurred while rolling back: {err}; original error: {message}. The environment may be between releases: run `gantry rollback` or fix and redeploy"
                ),
            ),
        }
    }

    /// A rerun of exactly the release that is deployed: re-applied (a no-op unless someone
    /// changed the objects, which this corrects) and verified healthy, without a new record.
    async fn redeploy_current(&self, current: Release, mut outcome: Outcome) -> Outcome {
        self.runner.info(&format!(
            "release {} is already deployed with exactly these manifests: re-applying to verify, no new release",
            current.number
        ));
        outcome.facts.release = Some(current.number);
        outcome.facts.previous_release = Some(current.number);
        let applied = apply::apply_all(
            &self.cluster,
            &current.manifests,
            ApplyOptions {
                dry_run: false,
                force: self.settings.force_conflicts,
            },
            self.settings.apply_concurrency,
            "apply",
        )
        .await;
        outcome.facts.applied = applied.changes.clone();
        outcome.changed = applied.wrote;
        let drifted: Vec<&str> = applied
            .changes
            .iter()
            .filter(|c| c.action != ChangeAction::Unchanged)
            .map(|c| c.object.as_str())
            .collect();
        if !drifted.is_empty() {
            self.runner.warning(&format!(
                "{} object{} had drifted from release {} and {} restored: {}",
                drifted.len(),
                if drifted.len() == 1 { "" } else { "s" },
                current.number,
                if drifted.len() == 1 { "was" } else { "were" },
                drifted.join(", ")
            ));
        }
        if !applied.errors.is_empty() {
            return outcome.failed(
                "apply-failed",
                format!(
                    "re-applying release {} failed: {}",
                    current.number,
                    join(&applied.errors)
                ),
            );
        }
        let tracked = track::track_all(
            &self.cluster,
            &current.manifests,
            &self.settings.tolerances,
            self.settings.rollout_timeout,
            self.cancel,
            self.runner,
        )
        .await;
        outcome.facts.workloads = tracked.workloads.clone();
        outcome.facts.rendered_manifests = Some(audit_yaml(&current.manifests));
        if tracked.healthy() {
            return outcome;
        }
        let reason = if tracked.cancelled {
            "cancelled"
        } else if tracked.failure.is_some() {
            "rollout-failed"
        } else {
            "rollout-timeout"
        };
        if let Some((namespace, mut failure)) = tracked.failure {
            track::diagnose(&self.cluster, &namespace, &mut failure).await;
            outcome.facts.failure = Some(failure);
        }
        outcome.failed(
            reason,
            format!(
                "release {} (deployed, unchanged) is not healthy; nothing older to roll back to was asked for: use the rollback command",
                current.number
            ),
        )
    }

    /// Re-applies the last good release and deletes what the failed release added (or
    /// removes a failed first release), then waits for the restored release to be healthy.
    async fn execute_rollback(&self, plan: RollbackPlan, from: Option<u64>) -> RollbackFacts {
        let mut facts = RollbackFacts {
            from_release: from,
            to_release: None,
            restored: Vec::new(),
            deleted: Vec::new(),
            error: None,
        };
        let (reapply, delete) = match plan {
            RollbackPlan::Restore {
                to,
                reapply,
                delete,
            } => {
                facts.to_release = Some(to);
                self.runner.info(&format!("rolling back to release {to}"));
                (reapply, delete)
            }
            RollbackPlan::RemoveAll { delete } => {
                self.runner.info(
                    "removing the failed first release (there is no earlier release to restore)",
                );
                (Vec::new(), delete)
            }
        };
        let mut errors = Vec::new();
        if !reapply.is_empty() {
            let applied = apply::apply_all(
                &self.cluster,
                &reapply,
                // The restored release takes its fields back from whoever changed them.
                ApplyOptions {
                    dry_run: false,
                    force: true,
                },
                self.settings.apply_concurrency,
                "rollback",
            )
            .await;
            facts.restored = applied.changes.iter().map(|c| c.object.clone()).collect();
            errors.extend(applied.errors.iter().map(|e| e.to_string()));
        }
        crash_point("mid-rollback");
        let (deleted, delete_errors) = apply::delete_all(&self.cluster, &delete).await;
        facts.deleted = deleted;
        errors.extend(delete_errors.iter().map(|e| e.to_string()));
        if errors.is_empty() && !reapply.is_empty() {
            // The restored release gets its own rollout-timeout; a cancel stops this wait too.
            let tracked = track::track_all(
                &self.cluster,
                &reapply,
                &self.settings.tolerances,
                self.settings.rollout_timeout,
                self.cancel,
                self.runner,
            )
            .await;
            if !tracked.healthy() {
                errors.push(match tracked.failure {
                    Some((_, failure)) => format!(
                        "the restored release is not healthy: {}: {}: {}",
                        failure.object, failure.reason, failure.message
                    ),
                    None if tracked.cancelled => {
                        "cancelled while waiting for the restored release".to_string()
                    }
                    None => format!(
                        "the restored release did not become healthy within {}s",
                        self.settings.rollout_timeout.as_secs()
                    ),
                });
            }
        }
        if !errors.is_empty() {
            facts.error = Some(errors.join("; "));
        }
        facts
    }

    async fn trim_history(&self) {
        let at = self.location();
        if let Ok((history, _)) = store::history(&self.cluster, &at).await {
            let drop = release::records_to_drop(&history, self.settings.history_max);
            if let Err(err) = store::drop_records(&self.cluster, &at, &drop).await {
                self.runner
                    .warning(&format!("could not trim old release records: {err}"));
            }
        }
    }

    /// `rollback`: restores a chosen (or the previous good) release as a new release.
    pub async fn rollback(&self, chosen: Option<u64>, origin: &Origin) -> Outcome {
        let mut outcome = Outcome::new();
        let at = self.location();
        // The target is checked before anything is written (the lock is a write).
        match store::history(&self.cluster, &at).await {
            Ok((history, _)) => {
                if let Err(err) = release::rollback_target(&history, chosen) {
                    return outcome.failed("no-release", err);
                }
            }
            Err(err) => return outcome.failed("cluster-error", err.to_string()),
        }
        let lock = match self.take_lock().await {
            Ok(lock) => lock,
            Err(err) => return outcome.failed("locked", err),
        };
        let result = async {
            let (history, warnings) = store::history(&self.cluster, &at)
                .await
                .map_err(|err| ("cluster-error", err.to_string()))?;
            for warning in warnings {
                self.runner.warning(&warning);
            }
            let history = self
                .recover(history, &mut outcome.facts)
                .await
                .map_err(|err| ("recovery-failed", err))?;
            let target = release::rollback_target(&history, chosen)
                .map_err(|err| ("no-release", err))?
                .clone();
            let current = release::last_deployed(&history).cloned();
            outcome.facts.previous_release = current.as_ref().map(|r| r.number);
            let number = release::next_number(&history);
            outcome.facts.release = Some(number);
            let stamp = now();
            let mut record = Release {
                number,
                status: ReleaseStatus::Pending,
                created: stamp.clone(),
                updated: stamp,
                description: format!("rollback to release {}", target.number),
                actor: origin.actor.clone(),
                run_url: origin.run_url.clone(),
                restored_from: Some(target.number),
                ..target.clone()
            };
            store::save(&self.cluster, &at, &record)
                .await
                .map_err(|err| ("record-failed", err))?;
            outcome.changed = true;
            let leaving: Vec<Value> = current
                .as_ref()
                .map(|r| r.manifests.clone())
                .unwrap_or_default();
            let plan = RollbackPlan::Restore {
                to: target.number,
                reapply: target.manifests.clone(),
                delete: release::objects_to_delete(&leaving, &target.manifests),
            };
            let rolled = self
                .execute_rollback(plan, current.as_ref().map(|r| r.number))
                .await;
            outcome.facts.rollback = Some(rolled.clone());
            if let Some(err) = rolled.error {
                record.status = ReleaseStatus::Failed;
                record.updated = now();
                record.description = format!("rollback to release {} failed: {err}", target.number);
                let _ = store::save(&self.cluster, &at, &record).await;
                return Err(("rollback-failed", record.description.clone()));
            }
            record.status = ReleaseStatus::Deployed;
            record.updated = now();
            store::save(&self.cluster, &at, &record)
                .await
                .map_err(|err| ("record-failed", err))?;
            if let Some(mut previous) = current {
                previous.status = ReleaseStatus::Superseded;
                previous.updated = now();
                let _ = store::save(&self.cluster, &at, &previous).await;
            }
            outcome.facts.rendered_manifests = Some(audit_yaml(&target.manifests));
            self.runner.info(&format!(
                "release {number} restores release {} and is healthy",
                target.number
            ));
            Ok(())
        }
        .await;
        self.trim_history().await;
        self.release_lock(lock).await;
        match result {
            Ok(()) => outcome,
            Err((reason, message)) => outcome.failed(reason, message),
        }
    }

    /// `plan`: a server-side dry run of every object, compared with what is live, plus what
    /// would be pruned. Writes nothing.
    pub async fn plan(&self, objects: &[Value]) -> Outcome {
        let mut outcome = Outcome::new();
        let mut changes = Vec::new();
        let mut errors = Vec::new();
        for object in objects {
            let Some(reference) = ObjectRef::of(object) else {
                continue;
            };
            let live = match self.cluster.get(&reference).await {
                Ok(live) => live,
                Err(KubeError::NotFound { .. }) => None,
                Err(err) => {
                    errors.push(err.to_string());
                    continue;
                }
            };
            let planned = self
                .cluster
                .apply(
                    object,
                    ApplyOptions {
                        dry_run: true,
                        force: self.settings.force_conflicts,
                    },
                )
                .await;
            match (live, planned) {
                (None, Ok(_)) => changes.push(PlannedChange {
                    object: reference.to_string(),
                    action: PlannedAction::Create,
                    fields: Vec::new(),
                }),
                // A namespace the release itself creates does not exist yet for the dry run.
                (None, Err(KubeError::NotFound { .. } | KubeError::NamespaceMissing { .. })) => {
                    changes.push(PlannedChange {
                        object: reference.to_string(),
                        action: PlannedAction::Create,
                        fields: Vec::new(),
                    })
                }
                (Some(live), Ok(planned)) => {
                    let fields = release::diff::changed_fields(&live, &planned);
                    changes.push(PlannedChange {
                        object: reference.to_string(),
                        action: if fields.is_empty() {
                            PlannedAction::Unchanged
                        } else {
                            PlannedAction::Change
                        },
                        fields,
                    });
                }
                (_, Err(err)) => errors.push(err.to_string()),
            }
        }
        if self.settings.prune {
            match store::history(&self.cluster, &self.location()).await {
                Ok((history, _)) => {
                    outcome.facts.previous_release =
                        release::last_deployed(&history).map(|r| r.number);
                    if let Some(current) = release::last_deployed(&history) {
                        for gone in release::objects_to_delete(&current.manifests, objects) {
                            changes.push(PlannedChange {
                                object: gone.to_string(),
                                action: PlannedAction::Prune,
                                fields: Vec::new(),
                            });
                        }
                    }
                }
                Err(err) => errors.push(err.to_string()),
            }
        }
        for change in &changes {
            self.runner.info(&format!(
                "{} would be {}{}",
                change.object,
                match change.action {
                    PlannedAction::Create => "created",
                    PlannedAction::Change => "changed",
                    PlannedAction::Prune => "pruned",
                    PlannedAction::Unchanged => "unchanged",
                },
                if change.fields.is_empty() {
                    String::new()
                } else {
                    format!(": {}", change.fields.join(", "))
                }
            ));
        }
        outcome.facts.dry_run = Some(changes);
        if !errors.is_empty() {
            return outcome.failed(
                "dry-run-rejected",
                format!(
                    "the server-side dry run rejected the release: {}",
                    errors.join("; ")
                ),
            );
        }
        outcome
    }

    /// `history`: the environment's releases, newest first.
    pub async fn history(&self) -> Outcome {
        let mut outcome = Outcome::new();
        match store::history(&self.cluster, &self.location()).await {
            Ok((history, warnings)) => {
                for warning in warnings {
                    self.runner.warning(&warning);
                }
                outcome.facts.history = history.iter().rev().map(release::summary).collect();
                outcome.facts.release = release::last_deployed(&history).map(|r| r.number);
                for line in &outcome.facts.history {
                    self.runner.info(&format!(
                        "{:>4}  {:<12} {:<12} {}  {}",
                        line.release,
                        line.status,
                        line.commit
                            .as_deref()
                            .map(|c| crate::context::char_prefix(c, 12))
                            .unwrap_or("-"),
                        line.created,
                        line.description
                    ));
                }
                outcome
            }
            Err(err) => outcome.failed("cluster-error", err.to_string()),
        }
    }
}

/// The release as the audit trail records it: multi-document YAML; Secret values are
/// replaced by a note (their keys stay), so no secret reaches the audit branch.
pub fn audit_yaml(objects: &[Value]) -> String {
    let mut out = String::new();
    for object in objects {
        let mut object = object.clone();
        if object.get("kind").and_then(Value::as_str) == Some("Secret") {
            for field in ["data", "stringData"] {
                if let Some(map) = object.get_mut(field).and_then(Value::as_object_mut) {
                    for value in map.values_mut() {
                        *value = Value::String("(redacted by gantry)".into());
                    }
                }
            }
        }
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&object).unwrap_or_default());
    }
    out
}
