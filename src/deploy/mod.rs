//! The deploy verbs against a cluster (deploy, rollback, plan, history), each a fixed order of steps: validate, lock, record, perform, record the outcome — with automatic rollback of every resource when a rollout fails.
//!
//! Design note: Helm's actions taught the order; its stuck "pending" releases taught the lock
//! that expires. Every step that can fail leaves a release record saying what happened, and
//! the record of the last good release is never removed, so the next run (or a person) can
//! always tell what is running. The cluster is reached only through [`crate::adapters::kube`].

pub mod apply;
pub mod preflight;
pub mod statefulsets;
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
    /// How long the environment lock lasts without renewal (`lock-lease-duration`).
    pub lease_duration: Duration,
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

    async fn take_lock(&self) -> Result<store::HeldLock, store::LockError> {
        let runner = self.runner;
        store::lock(
            self.cluster.clone(),
            &self.location(),
            &store::LockTerms {
                me: self.me.clone(),
                duration: self.settings.lease_duration,
                timeout: self.settings.lock_timeout,
            },
            self.cancel,
            |holder| {
                runner.info(&format!(
                    "waiting for the environment lock held by {holder} (up to {}s)",
                    self.settings.lock_timeout.as_secs()
                ))
            },
        )
        .await
    }

    /// Takes the lock, or says why not: the failure reason and message.
    async fn lock_or_fail(&self) -> Result<store::HeldLock, (&'static str, String)> {
        match self.take_lock().await {
            Ok(lock) => {
                if let Some(previous) = &lock.taken_over_from {
                    self.runner.warning(&format!(
                        "took over the environment lock from {previous}, which stopped renewing it"
                    ));
                }
                Ok(lock)
            }
            Err(err @ store::LockError::Invalid { .. }) => Err(("lock-invalid", err.to_string())),
            Err(err) => Err(("locked", err.to_string())),
        }
    }

    /// Hands the lock back; when the fence refused a write meanwhile, the verb's outcome
    /// becomes `lock-lost` (it could not finish, and wrote nothing after losing the lock).
    async fn release_lock(&self, lock: store::HeldLock, outcome: Outcome) -> Outcome {
        let lost = lock.fence.refused();
        if let Err(err) = lock.release().await {
            self.runner.warning(&format!(
                "could not release the environment lock (it expires by itself in {}s): {err}",
                self.settings.lease_duration.as_secs()
            ));
        }
        if !lost {
            return outcome;
        }
        let what = match &outcome.ending {
            Ending::Succeeded => String::new(),
            Ending::RolledBack { message, .. } | Ending::Failed { message, .. } => {
                format!(" ({message})")
            }
        };
        let number = outcome
            .facts
            .release
            .map(|n| format!("release {n}"))
            .unwrap_or_else(|| "the release".into());
        let mut outcome = outcome;
        outcome.changed = true;
        outcome.failed(
            "lock-lost",
            format!(
                "the environment lock was lost while {number} was in progress, so this run stopped writing{what}; the run that holds the lock now recovers the environment (an interrupted release is restored to the last good one)"
            ),
        )
    }

    /// Brings the environment back to a consistent release after killed runs: releases left
    /// `pending` are undone (their objects that the last good release lacks are deleted and
    /// the last good release re-applied), or, for an interrupted `rollback` command, finished;
    /// each is recorded with what happened. Also repairs a run killed between recording a new
    /// release deployed and the old one superseded. Returns the history as it now is.
    async fn recover(
        &self,
        mut history: Vec<Release>,
        records: &store::Records,
        facts: &mut DeployFacts,
    ) -> Result<Vec<Release>, String> {
        // Two `deployed` records: the newer is current (it was recorded healthy first) and a
        // run stopped between recording it and superseding the older one, maybe mid-prune.
        if let Some(current) = release::last_deployed(&history).cloned() {
            let older_deployed = history
                .iter()
                .any(|r| r.status == ReleaseStatus::Deployed && r.number != current.number);
            if older_deployed && !current.prune_pending.is_empty() {
                self.runner.warning(&format!(
                    "release {} was recorded healthy but its run stopped while pruning; finishing the prune",
                    current.number
                ));
                let (deleted, errors) =
                    apply::delete_all(&self.cluster, &current.prune_pending).await;
                facts.pruned.extend(deleted);
                if let Some(error) = errors.first() {
                    return Err(format!(
                        "could not finish pruning after release {}: {error}",
                        current.number
                    ));
                }
            }
            for record in history.iter_mut() {
                if record.status == ReleaseStatus::Deployed && record.number != current.number {
                    record.status = ReleaseStatus::Superseded;
                    record.updated = now();
                    records.save(&self.cluster, record).await?;
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
                    removal: release::removal(&leaving, &rollback.manifests),
                }
            }
            (None, Some(good)) => RollbackPlan::Restore {
                to: good.number,
                reapply: good.manifests.clone(),
                removal: release::removal(&leaving, &good.manifests),
            },
            (None, None) => RollbackPlan::RemoveAll {
                removal: release::removal(&leaving, &[]),
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
            records.save(&self.cluster, record).await?;
        }
        if let (Some(finished), Some(good)) = (&finishing_rollback, &last_good) {
            if let Some(record) = history.iter_mut().find(|r| r.number == good.number) {
                if record.number != finished.number {
                    record.status = ReleaseStatus::Superseded;
                    record.updated = now();
                    records.save(&self.cluster, record).await?;
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
        for note in deferred {
            self.runner.info(&note);
            notes.push(note);
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
        let lock = match self.lock_or_fail().await {
            Ok(lock) => lock,
            Err((reason, message)) => return outcome.failed(reason, message),
        };
        let outcome = self.deploy_locked(objects, origin, outcome).await;
        self.release_lock(lock, outcome).await
    }

    async fn deploy_locked(
        &self,
        objects: Vec<Value>,
        origin: &Origin,
        mut outcome: Outcome,
    ) -> Outcome {
        let (history, records) = match self.load_history(&mut outcome.facts).await {
            Ok(found) => found,
            Err((reason, message)) => return outcome.failed(reason, message),
        };
        let history = match self.recover(history, &records, &mut outcome.facts).await {
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
            prune_pending: Vec::new(),
            previous_digest: chain_link(&history),
        };
        // The pending record goes first: a run killed from here on is recognised.
        if let Err(err) = records.save(&self.cluster, &record).await {
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
        outcome.facts.replaced = applied.replaced.clone();
        for change in &applied.changes {
            self.runner
                .info(&format!("{} {}", change.object, change.action.as_str()));
        }
        for object in &applied.replaced {
            self.runner.warning(&format!(
                "{object} was deleted and created again before the release was proven healthy (a field of it cannot change; annotated {}: \"true\")",
                release::REPLACE_ANNOTATION
            ));
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
            tracking_failure(number, &tracked, self.settings.rollout_timeout)
        };

        let Some((reason, message, evidence)) = failure else {
            // Healthy: only now is anything of the previous release deleted. The record says
            // what is still to prune, so a run killed mid-prune is finished by the next one.
            let mut previous: Vec<Value> = last_good
                .as_ref()
                .map(|r| r.manifests.clone())
                .unwrap_or_default();
            previous.extend(leftovers.iter().cloned());
            let removal = if self.settings.prune {
                self.with_live_opt_ins(release::removal(&previous, &objects))
                    .await
            } else {
                release::Removal::default()
            };
            crash_point("before-deployed-record");
            record.status = ReleaseStatus::Deployed;
            record.updated = now();
            record.description = "deployed".into();
            record.prune_pending = removal.delete.clone();
            if let Err(err) = records.save(&self.cluster, &record).await {
                return outcome.failed(
                    "record-failed",
                    format!(
                        "release {number} is healthy but its record could not be written: {err}"
                    ),
                );
            }
            crash_point("before-prune");
            let (deleted, errors) = apply::delete_all(&self.cluster, &removal.delete).await;
            for object in &deleted {
                self.runner.info(&format!("{object} pruned"));
            }
            outcome.facts.pruned = deleted;
            for error in errors {
                self.runner.warning(&format!("prune: {error}"));
            }
            outcome.facts.kept = removal.keep.iter().map(ToString::to_string).collect();
            for object in &outcome.facts.kept {
                self.runner.info(&format!(
                    "{object} is no longer in the release and is kept (it holds data or other objects; annotate it {}: \"true\" to let gantry delete it)",
                    release::ALLOW_DELETE_ANNOTATION
                ));
            }
            crash_point("before-superseded-record");
            if let Some(mut previous) = last_good {
                previous.status = ReleaseStatus::Superseded;
                previous.updated = now();
                if let Err(err) = records.save(&self.cluster, &previous).await {
                    self.runner.warning(&format!(
                        "could not mark release {} superseded: {err}",
                        previous.number
                    ));
                }
            }
            self.trim_history(&records).await;
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
            let saved = records.save(&self.cluster, &record).await;
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
        if let Err(err) = records.save(&self.cluster, &record).await {
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

    /// The HorizontalPodAutoscalers that may target objects of `objects`: those in the
    /// release, and those live in its namespaces (an HPA someone added by hand counts too).
    async fn autoscalers(&self, objects: &[Value]) -> Vec<Value> {
        let mut found: Vec<Value> = objects
            .iter()
            .filter(|o| o.get("kind").and_then(Value::as_str) == Some("HorizontalPodAutoscaler"))
            .cloned()
            .collect();
        let namespaces: std::collections::BTreeSet<String> = objects
            .iter()
            .filter_map(ObjectRef::of)
            .filter_map(|r| r.namespace)
            .collect();
        for namespace in namespaces {
            match self
                .cluster
                .list("autoscaling/v2", "HorizontalPodAutoscaler", Some(&namespace), None)
                .await
            {
                Ok(live) => found.extend(live),
                Err(err) => self.runner.warning(&format!(
                    "could not list the HorizontalPodAutoscalers of namespace {namespace} ({err}); the rollback restores spec.replicas as recorded"
                )),
            }
        }
        found
    }

    /// Protected objects that opted in to deletion on the live object (the annotation was set
    /// with kubectl rather than in the release) move from `keep` to `delete`.
    async fn with_live_opt_ins(&self, mut removal: release::Removal) -> release::Removal {
        let mut keep = Vec::new();
        for reference in std::mem::take(&mut removal.keep) {
            match self.cluster.get(&reference).await {
                Ok(Some(live)) if release::allows_delete(&live) => removal.delete.push(reference),
                Ok(None) => {}
                _ => keep.push(reference),
            }
        }
        removal.keep = keep;
        release::delete_order(&mut removal.delete);
        removal
    }

    /// Re-applies the last good release and deletes what the failed release added (or
    /// removes a failed first release), then waits for the restored release to be healthy.
    async fn execute_rollback(&self, plan: RollbackPlan, from: Option<u64>) -> RollbackFacts {
        let mut facts = RollbackFacts {
            from_release: from,
            ..RollbackFacts::default()
        };
        let (reapply, removal) = match plan {
            RollbackPlan::Restore {
                to,
                reapply,
                removal,
            } => {
                facts.to_release = Some(to);
                self.runner.info(&format!("rolling back to release {to}"));
                (reapply, removal)
            }
            RollbackPlan::RemoveAll { removal } => {
                self.runner.info(
                    "removing the failed first release (there is no earlier release to restore)",
                );
                (Vec::new(), removal)
            }
        };
        let removal = self.with_live_opt_ins(removal).await;
        facts.kept = removal.keep.iter().map(ToString::to_string).collect();
        for object in &facts.kept {
            self.runner.info(&format!(
                "{object} was added by the failed release and is kept (it holds data or other objects)"
            ));
        }
        let delete = removal.delete;
        let mut errors = Vec::new();
        if !reapply.is_empty() {
            // What autoscalers manage stays theirs; any other field the restored release sets
            // is taken back from whoever changed it, and named.
            let autoscalers = self.autoscalers(&reapply).await;
            let (restore, left) = release::leave_to_autoscalers(&reapply, &autoscalers);
            facts.left_to_controllers = left;
            let applied = apply::apply_all_with(
                &self.cluster,
                &restore,
                ApplyOptions::default(),
                apply::Conflicts::TakeOver,
                self.settings.apply_concurrency,
                "rollback",
            )
            .await;
            for taken in &applied.taken_over {
                self.runner
                    .warning(&format!("the rollback took fields back: {taken}"));
            }
            facts.taken_over = applied.taken_over;
            facts.restored = applied.changes.iter().map(|c| c.object.clone()).collect();
            errors.extend(applied.errors.iter().map(|e| e.to_string()));
        }
        crash_point("mid-rollback");
        let (deleted, delete_errors) = apply::delete_all(&self.cluster, &delete).await;
        facts.deleted = deleted;
        errors.extend(delete_errors.iter().map(|e| e.to_string()));
        if errors.is_empty() {
            let (pods, pod_errors) = statefulsets::delete_stuck_pods(&self.cluster, &reapply).await;
            for pod in &pods {
                self.runner.info(&format!(
                    "{pod} of the failed revision deleted: its StatefulSet recreates it from the restored template"
                ));
            }
            facts.pods_deleted = pods;
            errors.extend(pod_errors.iter().map(|e| e.to_string()));
        }
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

    async fn trim_history(&self, records: &store::Records) {
        let at = self.location();
        if let Ok(history) = store::history(&self.cluster, &at).await {
            let drop = release::records_to_drop(&history.releases, self.settings.history_max);
            if let Err(err) = records.drop_records(&self.cluster, &drop).await {
                self.runner
                    .warning(&format!("could not trim old release records: {err}"));
            }
        }
    }

    /// Reads the records under the lock: unreadable ones reported, ones gantry did not write
    /// refused (the failure reason and message), records of gantry 0.1 adopted into the chain.
    async fn load_history(
        &self,
        facts: &mut DeployFacts,
    ) -> Result<(Vec<Release>, store::Records), (&'static str, String)> {
        let at = self.location();
        let history = self.read_history().await?;
        let records = store::Records::new(&at, &history);
        if history.needs_adoption() {
            let adopted = records
                .adopt(&self.cluster, &history)
                .await
                .map_err(|err| ("record-failed", err))?;
            let note = format!(
                "adopted {adopted} release record{} written by gantry 0.1 into the record chain (index: Lease {} in namespace {}); from now on a record gantry did not write is refused",
                if adopted == 1 { "" } else { "s" },
                release::records::index_name(&at.environment),
                at.namespace
            );
            self.runner.warning(&note);
            facts.preflight.push(note);
        }
        Ok((history.releases, records))
    }

    /// Reads and checks the records without writing: warnings reported, untrusted records a
    /// failure that names them.
    async fn read_history(&self) -> Result<store::History, (&'static str, String)> {
        let history = store::history(&self.cluster, &self.location())
            .await
            .map_err(|err| ("cluster-error", err.to_string()))?;
        for warning in &history.warnings {
            self.runner.warning(warning);
        }
        if !history.untrusted.is_empty() {
            return Err((
                "untrusted-record",
                format!(
                    "refusing to act on release records gantry did not write ({}); nothing was applied. Find out who wrote them, delete them, and run again",
                    history.untrusted.join("; ")
                ),
            ));
        }
        Ok(history)
    }

    /// `rollback`: restores a chosen (or the previous good) release as a new release.
    pub async fn rollback(&self, chosen: Option<u64>, origin: &Origin) -> Outcome {
        let mut outcome = Outcome::new();
        // The target is checked before anything is written (the lock is a write).
        match self.read_history().await {
            Ok(history) => {
                if let Err(err) = release::rollback_target(&history.releases, chosen) {
                    return outcome.failed("no-release", err);
                }
            }
            Err((reason, message)) => return outcome.failed(reason, message),
        }
        let lock = match self.lock_or_fail().await {
            Ok(lock) => lock,
            Err((reason, message)) => return outcome.failed(reason, message),
        };
        let (history, records) = match self.load_history(&mut outcome.facts).await {
            Ok(found) => found,
            Err((reason, message)) => {
                let outcome = outcome.failed(reason, message);
                return self.release_lock(lock, outcome).await;
            }
        };
        let result = async {
            let history = self
                .recover(history, &records, &mut outcome.facts)
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
                prune_pending: Vec::new(),
                previous_digest: chain_link(&history),
                ..target.clone()
            };
            records
                .save(&self.cluster, &record)
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
                removal: release::removal(&leaving, &target.manifests),
            };
            let rolled = self
                .execute_rollback(plan, current.as_ref().map(|r| r.number))
                .await;
            outcome.facts.rollback = Some(rolled.clone());
            if let Some(err) = rolled.error {
                record.status = ReleaseStatus::Failed;
                record.updated = now();
                record.description = format!("rollback to release {} failed: {err}", target.number);
                let _ = records.save(&self.cluster, &record).await;
                return Err(("rollback-failed", record.description.clone()));
            }
            record.status = ReleaseStatus::Deployed;
            record.updated = now();
            records
                .save(&self.cluster, &record)
                .await
                .map_err(|err| ("record-failed", err))?;
            if let Some(mut previous) = current {
                previous.status = ReleaseStatus::Superseded;
                previous.updated = now();
                let _ = records.save(&self.cluster, &previous).await;
            }
            outcome.facts.rendered_manifests = Some(audit_yaml(&target.manifests));
            self.runner.info(&format!(
                "release {number} restores release {} and is healthy",
                target.number
            ));
            Ok(())
        }
        .await;
        self.trim_history(&records).await;
        let outcome = match result {
            Ok(()) => outcome,
            Err((reason, message)) => outcome.failed(reason, message),
        };
        self.release_lock(lock, outcome).await
    }

    /// `plan`: a server-side dry run of every object, compared with what is live, plus what
    /// would be pruned. Writes nothing.
    pub async fn plan(&self, objects: &[Value]) -> Outcome {
        let mut outcome = Outcome::new();
        let mut changes = Vec::new();
        let mut errors = Vec::new();
        let defined_by_release = preflight::kinds_defined_by_crds(objects);
        for object in objects {
            let Some(reference) = ObjectRef::of(object) else {
                continue;
            };
            let key = (reference.api_version.clone(), reference.kind.clone());
            let live = match self.cluster.get(&reference).await {
                Ok(live) => live,
                Err(KubeError::NotFound { .. }) => None,
                Err(KubeError::UnknownKind { .. }) if defined_by_release.contains(&key) => None,
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
                // A namespace the release itself creates does not exist yet for the dry run,
                // nor does a kind whose CustomResourceDefinition comes with the release.
                (None, Err(KubeError::UnknownKind { api_version, kind }))
                    if defined_by_release.contains(&(api_version.clone(), kind.clone())) =>
                {
                    changes.push(PlannedChange {
                        object: reference.to_string(),
                        action: PlannedAction::Create,
                        fields: vec!["(not dry-run checked: its CustomResourceDefinition is in this release)".into()],
                    })
                }
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
                (Some(_), Err(KubeError::Immutable { fields, .. }))
                    if release::allows_replace(object) =>
                {
                    changes.push(PlannedChange {
                        object: reference.to_string(),
                        action: PlannedAction::Replace,
                        fields,
                    })
                }
                (_, Err(err)) => errors.push(err.to_string()),
            }
        }
        match self.read_history().await {
            Ok(history) => {
                let history = history.releases;
                outcome.facts.previous_release = release::last_deployed(&history).map(|r| r.number);
                // Exactly what a deploy would prune and keep: the last good release and
                // whatever failed or cancelled releases after it left behind.
                let mut previous: Vec<Value> = release::last_deployed(&history)
                    .map(|r| r.manifests.clone())
                    .unwrap_or_default();
                previous.extend(release::applied_since_last_good(&history));
                for (from, to) in release::moved(&previous, objects) {
                    let note = format!(
                        "moved from namespace {} (created here, deleted there once healthy)",
                        from.namespace.as_deref().unwrap_or("-")
                    );
                    if let Some(change) = changes.iter_mut().find(|c| c.object == to.to_string()) {
                        change.fields.push(note);
                    }
                }
                if self.settings.prune {
                    let removal = self
                        .with_live_opt_ins(release::removal(&previous, objects))
                        .await;
                    for (references, action) in [
                        (&removal.delete, PlannedAction::Prune),
                        (&removal.keep, PlannedAction::Keep),
                    ] {
                        for reference in references {
                            changes.push(PlannedChange {
                                object: reference.to_string(),
                                action,
                                fields: Vec::new(),
                            });
                        }
                    }
                }
            }
            Err((_, message)) => errors.push(message),
        }
        for change in &changes {
            self.runner.info(&format!(
                "{} would be {}{}",
                change.object,
                match change.action {
                    PlannedAction::Create => "created",
                    PlannedAction::Change => "changed",
                    PlannedAction::Prune => "pruned (once the release is healthy)",
                    PlannedAction::Keep =>
                        "kept: no longer in the release, but it holds data or other objects",
                    PlannedAction::Replace =>
                        "deleted and created again (a field of it cannot change)",
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

    /// `unlock`: breaks the environment lock whoever holds it (a run known to be gone), and
    /// records that in the history. The run that held it, if it still lives, stops writing at
    /// its next renewal (it finds another state of the Lease).
    pub async fn unlock(&self, origin: &Origin) -> Outcome {
        let mut outcome = Outcome::new();
        let at = self.location();
        match store::unlock(&self.cluster, &at).await {
            Ok(store::Unlocked::WasFree) => {
                self.runner
                    .info("the environment lock is not held: nothing to unlock");
                outcome
            }
            Ok(store::Unlocked::Broken { holder, renewed }) => {
                let sentence = format!(
                    "lock broken by {} ({}): it was held by {holder}, last renewed {}",
                    origin.actor.as_deref().unwrap_or("a local run"),
                    origin.run_url.as_deref().unwrap_or("gantry unlock"),
                    renewed.as_deref().unwrap_or("never")
                );
                self.runner.warning(&sentence);
                outcome.changed = true;
                let time = k8s_openapi::jiff::Timestamp::now();
                if let Err(err) = store::save_lock_event(&self.cluster, &at, &time, &sentence).await
                {
                    self.runner.warning(&format!(
                        "the lock is broken, but recording that in the history failed: {err}"
                    ));
                }
                outcome.facts.lock_events = vec![format!("{time}: {sentence}")];
                outcome
            }
            Err(err) => outcome.failed("cluster-error", err.to_string()),
        }
    }

    /// `history`: the environment's releases, newest first.
    pub async fn history(&self) -> Outcome {
        let mut outcome = Outcome::new();
        match store::lock_events(&self.cluster, &self.location()).await {
            Ok(events) => {
                for event in &events {
                    self.runner.info(event);
                }
                outcome.facts.lock_events = events;
            }
            Err(err) => self
                .runner
                .warning(&format!("could not read the lock events: {err}")),
        }
        match store::history(&self.cluster, &self.location()).await {
            Ok(found) => {
                for warning in found.warnings.iter().chain(&found.untrusted) {
                    self.runner.warning(warning);
                }
                if found.needs_adoption() {
                    self.runner.info("these records were written by gantry 0.1; the next run that takes the lock adopts them into the record chain");
                }
                let history = found.releases;
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

/// The chain link of the next record: the content digest of the newest recorded release.
fn chain_link(history: &[Release]) -> Option<String> {
    history
        .iter()
        .max_by_key(|r| r.number)
        .map(release::records::content_digest)
}

/// How tracking ended, as a failure (`None` when healthy): the reason, the message and the
/// rollout evidence (with the failing pod's namespace) when a workload failed.
fn tracking_failure(
    number: u64,
    tracked: &track::Tracked,
    timeout: Duration,
) -> Option<RunFailure> {
    if tracked.healthy() {
        None
    } else if tracked.cancelled {
        Some((
            "cancelled".into(),
            format!("the run was cancelled while release {number} was rolling out"),
            None,
        ))
    } else if let Some((namespace, failure)) = &tracked.failure {
        Some((
            failure_reason_of(&failure.reason).into(),
            format!(
                "release {number}: {} failed: {}: {}",
                failure.object, failure.reason, failure.message
            ),
            Some((namespace.clone(), failure.clone())),
        ))
    } else {
        Some((
            "rollout-timeout".into(),
            format!(
                "release {number} did not become healthy within rollout-timeout ({}s)",
                timeout.as_secs()
            ),
            None,
        ))
    }
}

/// The `failure-reason` of a workload failure: a paused Deployment is not a broken release.
fn failure_reason_of(kubernetes_reason: &str) -> &'static str {
    match kubernetes_reason {
        crate::rollout::DEPLOYMENT_PAUSED => "rollout-paused",
        _ => "rollout-failed",
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
