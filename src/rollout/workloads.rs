//! Per-kind rollout verdicts and ready/desired summaries, following kubectl's status viewers.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;

use super::Verdict;

/// The Progressing condition reason the deployment controller sets when `progressDeadlineSeconds` passes.
const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
const ROLLING_UPDATE: &str = "RollingUpdate";
/// The reason of a Deployment whose controller cannot create pods.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// The usual causes of `ReplicaFailure`, named from the API's message.
fn replica_failure_cause(message: &str) -> &'static str {
    if message.contains("exceeded quota") {
        " because of a ResourceQuota"
    } else if message.contains("violates PodSecurity") {
        " because PodSecurity admission rejects them"
    } else if message.contains("serviceaccount") && message.contains("not found") {
        " because their ServiceAccount does not exist"
    } else {
        ""
    }
}
const ON_DELETE: &str = "OnDelete";

fn name_of(name: &Option<String>) -> &str {
    name.as_deref().unwrap_or("<unnamed>")
}

/// kubectl's `DeploymentStatusViewer`: generation observed, progress deadline exceeded (failure),
/// updated < desired, old replicas pending termination, available < updated, else complete.
/// The deadline message adds the controller's condition message to kubectl's sentence.
///
/// Two additions, both failures kubectl would wait on until its timeout:
/// - `ReplicaFailure=True` (the controller cannot create pods: a ResourceQuota, PodSecurity
///   admission, a missing ServiceAccount) fails at once with the API's message and its cause
///   named.
/// - A *paused* deployment whose new template is not rolled out fails with
///   [`DEPLOYMENT_PAUSED`](super::DEPLOYMENT_PAUSED): it never progresses (the controller
///   suspends its deadline) and the cluster still runs the previous template, so it is never
///   reported as rolled out. A paused deployment already running its template is complete.
pub fn deployment_verdict(deployment: &Deployment) -> Verdict {
    verdict_of_deployment(deployment, true)
}

/// [`deployment_verdict`] with the Deployment's ReplicaSets at hand: `ReplicaFailure` fails the
/// rollout only when the *new* ReplicaSet reports it. The controller copies an old ReplicaSet's
/// failure to the Deployment too: after a rollback, the failed release's ReplicaSet reports its
/// quota rejection until it is scaled down, and that is no failure of the restored template.
pub fn deployment_verdict_among(deployment: &Deployment, replica_sets: &[ReplicaSet]) -> Verdict {
    let new_fails = super::deployment_new_replica_set(deployment, replica_sets).is_some_and(|rs| {
        rs.status
            .as_ref()
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == REPLICA_FAILURE && c.status == "True")
    });
    verdict_of_deployment(deployment, new_fails)
}

/// The Deployment's verdict; its `ReplicaFailure` condition counts when `replica_failure_counts`.
fn verdict_of_deployment(deployment: &Deployment, replica_failure_counts: bool) -> Verdict {
    let name = name_of(&deployment.metadata.name);
    let generation = deployment.metadata.generation.unwrap_or(0);
    let status = deployment.status.clone().unwrap_or_default();
    if generation > status.observed_generation.unwrap_or(0) {
        return Verdict::Progressing("Waiting for deployment spec update to be observed...".into());
    }
    let conditions = status.conditions.as_deref().unwrap_or_default();
    if let Some(failure) = conditions
        .iter()
        .filter(|_| replica_failure_counts)
        .find(|c| c.type_ == REPLICA_FAILURE && c.status == "True")
    {
        let detail = failure.message.clone().unwrap_or_default();
        return Verdict::Failed {
            reason: REPLICA_FAILURE.into(),
            message: format!(
                "deployment {name:?} cannot create pods{} ({}): {detail}",
                replica_failure_cause(&detail),
                failure.reason.as_deref().unwrap_or("ReplicaFailure")
            ),
        };
    }
    let progressing = conditions.iter().find(|c| c.type_ == "Progressing");
    if let Some(condition) = progressing {
        if condition.reason.as_deref() == Some(PROGRESS_DEADLINE_EXCEEDED) {
            let mut message = format!("deployment {name:?} exceeded its progress deadline");
            if let Some(detail) = &condition.message {
                message.push_str(&format!(": {detail}"));
            }
            return Verdict::Failed {
                reason: PROGRESS_DEADLINE_EXCEEDED.into(),
                message,
            };
        }
    }
    let spec = deployment.spec.as_ref();
    let desired = spec.and_then(|s| s.replicas);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    // `spec.paused` is authoritative once the generation is observed (pausing and resuming
    // both bump the generation); the `DeploymentPaused` condition reason only echoes it.
    let paused = spec.and_then(|s| s.paused).unwrap_or(false);
    let rolled_out =
        desired.is_none_or(|d| updated >= d) && replicas <= updated && available >= updated;
    if paused && !rolled_out {
        let namespace = deployment
            .metadata
            .namespace
            .as_deref()
            .unwrap_or("default");
        return Verdict::Failed {
            reason: super::DEPLOYMENT_PAUSED.into(),
            message: format!(
                "deployment {name:?} is paused: its new template is not rolled out ({updated} of {} replicas updated) and the cluster still runs the previous one; resume it with `kubectl rollout resume deployment/{name} -n {namespace}` and deploy again",
                desired.unwrap_or(replicas)
            ),
        };
    }
    if let Some(desired) = desired {
        if updated < desired {
            return Verdict::Progressing(format!(
                "Waiting for deployment {name:?} rollout to finish: {updated} out of {desired} new replicas have been updated..."
            ));
        }
    }
    if replicas > updated {
        return Verdict::Progressing(format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
            replicas - updated
        ));
    }
    if available < updated {
        return Verdict::Progressing(format!(
            "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
        ));
    }
    Verdict::Complete(format!("deployment {name:?} successfully rolled out"))
}

/// kubectl's `StatefulSetStatusViewer`: generation observed, ready < desired, then the partition
/// rule (updated >= replicas - partition), else the current/update revision rule.
///
/// kubectl returns an error for the `OnDelete` strategy; gantry reports [`Verdict::Complete`] once
/// the spec is observed, explaining that pods are replaced only when someone deletes them, so
/// there is nothing to wait for.
pub fn statefulset_verdict(statefulset: &StatefulSet) -> Verdict {
    let name = name_of(&statefulset.metadata.name);
    let generation = statefulset.metadata.generation.unwrap_or(0);
    let status = statefulset.status.clone().unwrap_or_default();
    let observed = status.observed_generation.unwrap_or(0);
    if observed == 0 || generation > observed {
        return Verdict::Progressing(
            "Waiting for statefulset spec update to be observed...".into(),
        );
    }
    let spec = statefulset.spec.as_ref();
    let strategy = spec.and_then(|s| s.update_strategy.as_ref());
    let strategy_type = strategy
        .and_then(|s| s.type_.as_deref())
        .unwrap_or(ROLLING_UPDATE);
    let desired = spec.and_then(|s| s.replicas);
    let ready = status.ready_replicas.unwrap_or(0);
    if strategy_type == ON_DELETE {
        // No pod is replaced for a new template, so there is no rollout to wait for; but the
        // set must be up (its pods created and Ready, whatever template they run).
        if let Some(desired) = desired.filter(|d| ready < *d) {
            return Verdict::Progressing(format!(
                "Waiting for {} pods to be ready (statefulset {name:?} uses OnDelete: pods keep their template until deleted)...",
                desired - ready
            ));
        }
        return Verdict::Complete(format!(
            "statefulset {name:?} uses the OnDelete update strategy: its pods are Ready and are replaced only when they are deleted, so gantry does not wait for a new template to roll out"
        ));
    }
    let updated = status.updated_replicas.unwrap_or(0);
    if let Some(desired) = desired {
        if ready < desired {
            return Verdict::Progressing(format!(
                "Waiting for {} pods to be ready...",
                desired - ready
            ));
        }
    }
    if let Some(rolling_update) = strategy.and_then(|s| s.rolling_update.as_ref()) {
        if let (Some(desired), Some(partition)) = (desired, rolling_update.partition) {
            let to_update = desired - partition;
            if updated < to_update {
                return Verdict::Progressing(format!(
                    "Waiting for partitioned roll out to finish: {updated} out of {to_update} new pods have been updated..."
                ));
            }
        }
        return Verdict::Complete(format!(
            "partitioned roll out complete: {updated} new pods have been updated..."
        ));
    }
    let update_revision = status.update_revision.unwrap_or_default();
    let current_revision = status.current_revision.unwrap_or_default();
    if update_revision != current_revision {
        return Verdict::Progressing(format!(
            "waiting for statefulset rolling update to complete {updated} pods at revision {update_revision}..."
        ));
    }
    Verdict::Complete(format!(
        "statefulset rolling update complete {} pods at revision {current_revision}...",
        status.current_replicas.unwrap_or(0)
    ))
}

/// kubectl's `DaemonSetStatusViewer`: generation observed, updated < desired scheduled,
/// available < desired scheduled, else complete.
///
/// kubectl returns an error for the `OnDelete` strategy; gantry reports [`Verdict::Complete`] once
/// the spec is observed, explaining that pods are replaced only when deleted.
pub fn daemonset_verdict(daemonset: &DaemonSet) -> Verdict {
    let name = name_of(&daemonset.metadata.name);
    let generation = daemonset.metadata.generation.unwrap_or(0);
    let status = daemonset.status.clone().unwrap_or_default();
    if generation > status.observed_generation.unwrap_or(0) {
        return Verdict::Progressing("Waiting for daemon set spec update to be observed...".into());
    }
    let strategy_type = daemonset
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or(ROLLING_UPDATE);
    if strategy_type == ON_DELETE {
        let ready = status.number_ready;
        if ready < status.desired_number_scheduled {
            return Verdict::Progressing(format!(
                "Waiting for daemon set {name:?}: {ready} of {} pods are ready (OnDelete: pods keep their template until deleted)...",
                status.desired_number_scheduled
            ));
        }
        return Verdict::Complete(format!(
            "daemon set {name:?} uses the OnDelete update strategy: its pods are ready and are replaced only when they are deleted, so gantry does not wait for a new template to roll out"
        ));
    }
    let desired = status.desired_number_scheduled;
    let updated = status.updated_number_scheduled.unwrap_or(0);
    let available = status.number_available.unwrap_or(0);
    if updated < desired {
        return Verdict::Progressing(format!(
            "Waiting for daemon set {name:?} rollout to finish: {updated} out of {desired} new pods have been updated..."
        ));
    }
    if available < desired {
        return Verdict::Progressing(format!(
            "Waiting for daemon set {name:?} rollout to finish: {available} of {desired} updated pods are available..."
        ));
    }
    Verdict::Complete(format!("daemon set {name:?} successfully rolled out"))
}

/// A Job is complete when its `Complete` condition is true and failed when its `Failed` (or,
/// since Kubernetes 1.31, `FailureTarget`) condition is true, with the condition's reason (e.g.
/// `BackoffLimitExceeded`, `DeadlineExceeded`). kubectl has no Job viewer; this mirrors
/// `kubectl wait --for=condition=complete`.
pub fn job_verdict(job: &Job) -> Verdict {
    let name = name_of(&job.metadata.name);
    let status = job.status.clone().unwrap_or_default();
    let conditions = status.conditions.unwrap_or_default();
    let is_true = |kind: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == kind && c.status == "True")
    };
    if is_true("Complete").is_some() {
        return Verdict::Complete(format!(
            "job {name:?} completed: {} succeeded",
            status.succeeded.unwrap_or(0)
        ));
    }
    if let Some(failed) = is_true("Failed").or_else(|| is_true("FailureTarget")) {
        let reason = failed.reason.clone().unwrap_or_else(|| "Failed".into());
        let detail = failed.message.clone().unwrap_or_else(|| reason.clone());
        return Verdict::Failed {
            reason,
            message: format!("job {name:?} failed: {detail}"),
        };
    }
    let suspended = job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
    Verdict::Progressing(format!(
        "Waiting for job {name:?} to complete: {} active, {} succeeded, {} failed{}",
        status.active.unwrap_or(0),
        status.succeeded.unwrap_or(0),
        status.failed.unwrap_or(0),
        if suspended { " (suspended)" } else { "" }
    ))
}

/// Ready/desired replicas, like the READY column of `kubectl get deployment` (e.g. `"2/3"`).
pub fn deployment_ready(deployment: &Deployment) -> String {
    let ready = deployment
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    format!("{ready}/{desired}")
}

/// Ready/desired replicas, like the READY column of `kubectl get statefulset`.
pub fn statefulset_ready(statefulset: &StatefulSet) -> String {
    let ready = statefulset
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let desired = statefulset
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    format!("{ready}/{desired}")
}

/// Ready/desired pods, like the READY and DESIRED columns of `kubectl get daemonset`.
pub fn daemonset_ready(daemonset: &DaemonSet) -> String {
    let status = daemonset.status.as_ref();
    let ready = status.map(|s| s.number_ready).unwrap_or(0);
    let desired = status.map(|s| s.desired_number_scheduled).unwrap_or(0);
    format!("{ready}/{desired}")
}

/// Succeeded/completions, like the COMPLETIONS column of `kubectl get job`.
pub fn job_ready(job: &Job) -> String {
    let succeeded = job.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0);
    let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(1);
    format!("{succeeded}/{completions}")
}

/// The rollout verdict and ready count of a workload kind, as kubectl's status viewers give
/// them (each delegates to the kind's `*_verdict` and `*_ready`).
pub trait Workload {
    fn verdict(&self) -> Verdict;
    /// `ready/desired` (for a Job: `succeeded/completions`).
    fn ready(&self) -> String;
}

impl Workload for Deployment {
    fn verdict(&self) -> Verdict {
        deployment_verdict(self)
    }
    fn ready(&self) -> String {
        deployment_ready(self)
    }
}

impl Workload for StatefulSet {
    fn verdict(&self) -> Verdict {
        statefulset_verdict(self)
    }
    fn ready(&self) -> String {
        statefulset_ready(self)
    }
}

impl Workload for DaemonSet {
    fn verdict(&self) -> Verdict {
        daemonset_verdict(self)
    }
    fn ready(&self) -> String {
        daemonset_ready(self)
    }
}

impl Workload for Job {
    fn verdict(&self) -> Verdict {
        job_verdict(self)
    }
    fn ready(&self) -> String {
        job_ready(self)
    }
}
