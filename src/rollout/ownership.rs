//! Which pods belong to a workload's new revision: only those may fail a rollout fast.
//!
//! Every function returns nothing while the controller has not yet observed the workload's
//! latest generation: until then the "current" revision recorded in the object is the old one,
//! and judging old pods could fail a rollout that is fixing them.

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Annotation the deployment controller copies onto the Deployment and its ReplicaSets.
const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Label the ReplicaSet controller puts on its pods (and on the ReplicaSet's selector).
const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// Label StatefulSet and DaemonSet controllers put on pods (and on ControllerRevisions).
const CONTROLLER_REVISION_HASH_LABEL: &str = "controller-revision-hash";
/// Labels the Job controller puts on its pods (the prefixed one since Kubernetes 1.27).
const JOB_CONTROLLER_UID_LABELS: [&str; 2] =
    ["batch.kubernetes.io/controller-uid", "controller-uid"];

fn label<'m>(meta: &'m ObjectMeta, key: &str) -> Option<&'m str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

fn annotation<'m>(meta: &'m ObjectMeta, key: &str) -> Option<&'m str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// True when `child` has an ownerReference to the object with `owner_uid`.
fn owned_by(child: &ObjectMeta, owner_uid: Option<&str>) -> bool {
    let Some(owner_uid) = owner_uid else {
        return false;
    };
    child
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|owner| owner.uid == owner_uid)
}

/// True when `child` has no controlling ownerReference at all (an orphan, or a hand-made object).
fn has_no_controller(child: &ObjectMeta) -> bool {
    !child
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|owner| owner.controller == Some(true))
}

fn generation_observed(generation: Option<i64>, observed: Option<i64>) -> bool {
    generation.unwrap_or(0) <= observed.unwrap_or(0)
}

/// Pods of the Deployment's new ReplicaSet: the ReplicaSet owned by the Deployment (by uid) whose
/// `deployment.kubernetes.io/revision` annotation equals the Deployment's. Its pods are those it
/// owns, or, for pods with no controller, those carrying its `pod-template-hash` label.
pub fn deployment_new_pods<'a>(
    deployment: &Deployment,
    replica_sets: &[ReplicaSet],
    pods: &'a [Pod],
) -> Vec<&'a Pod> {
    let observed = deployment
        .status
        .as_ref()
        .and_then(|s| s.observed_generation);
    if !generation_observed(deployment.metadata.generation, observed) {
        return Vec::new();
    }
    let Some(revision) = annotation(&deployment.metadata, REVISION_ANNOTATION) else {
        return Vec::new();
    };
    let deployment_uid = deployment.metadata.uid.as_deref();
    let Some(new_replica_set) = replica_sets.iter().find(|rs| {
        owned_by(&rs.metadata, deployment_uid)
            && annotation(&rs.metadata, REVISION_ANNOTATION) == Some(revision)
    }) else {
        return Vec::new();
    };
    let replica_set_uid = new_replica_set.metadata.uid.as_deref();
    let template_hash = label(&new_replica_set.metadata, POD_TEMPLATE_HASH_LABEL);
    pods.iter()
        .filter(|pod| {
            owned_by(&pod.metadata, replica_set_uid)
                || (has_no_controller(&pod.metadata)
                    && template_hash.is_some()
                    && label(&pod.metadata, POD_TEMPLATE_HASH_LABEL) == template_hash)
        })
        .collect()
}

/// Pods of the StatefulSet's update revision: `controller-revision-hash` equals
/// `status.updateRevision`, owned by the StatefulSet (or with no controller at all).
pub fn statefulset_new_pods<'a>(statefulset: &StatefulSet, pods: &'a [Pod]) -> Vec<&'a Pod> {
    let status = statefulset.status.as_ref();
    if !generation_observed(
        statefulset.metadata.generation,
        status.and_then(|s| s.observed_generation),
    ) {
        return Vec::new();
    }
    let Some(update_revision) = status.and_then(|s| s.update_revision.as_deref()) else {
        return Vec::new();
    };
    let statefulset_uid = statefulset.metadata.uid.as_deref();
    pods.iter()
        .filter(|pod| {
            label(&pod.metadata, CONTROLLER_REVISION_HASH_LABEL) == Some(update_revision)
                && (owned_by(&pod.metadata, statefulset_uid) || has_no_controller(&pod.metadata))
        })
        .collect()
}

/// Pods of the DaemonSet's newest ControllerRevision (highest `revision` among those it owns):
/// their `controller-revision-hash` label equals the revision's hash. The hash is read from the
/// revision's own `controller-revision-hash` label, or else from its name (`<daemonset>-<hash>`).
pub fn daemonset_new_pods<'a>(
    daemonset: &DaemonSet,
    revisions: &[ControllerRevision],
    pods: &'a [Pod],
) -> Vec<&'a Pod> {
    let observed = daemonset
        .status
        .as_ref()
        .and_then(|s| s.observed_generation);
    if !generation_observed(daemonset.metadata.generation, observed) {
        return Vec::new();
    }
    let daemonset_uid = daemonset.metadata.uid.as_deref();
    let Some(newest) = revisions
        .iter()
        .filter(|revision| owned_by(&revision.metadata, daemonset_uid))
        .max_by_key(|revision| revision.revision)
    else {
        return Vec::new();
    };
    let hash_from_name = || {
        let daemonset_name = daemonset.metadata.name.as_deref()?;
        newest
            .metadata
            .name
            .as_deref()?
            .strip_prefix(daemonset_name)?
            .strip_prefix('-')
    };
    let Some(hash) =
        label(&newest.metadata, CONTROLLER_REVISION_HASH_LABEL).or_else(hash_from_name)
    else {
        return Vec::new();
    };
    pods.iter()
        .filter(|pod| {
            label(&pod.metadata, CONTROLLER_REVISION_HASH_LABEL) == Some(hash)
                && (owned_by(&pod.metadata, daemonset_uid) || has_no_controller(&pod.metadata))
        })
        .collect()
}

/// Pods created by the Job: owned by it, or labelled with its uid
/// (`batch.kubernetes.io/controller-uid` or the older `controller-uid`).
pub fn job_pods<'a>(job: &Job, pods: &'a [Pod]) -> Vec<&'a Pod> {
    let Some(job_uid) = job.metadata.uid.as_deref() else {
        return Vec::new();
    };
    pods.iter()
        .filter(|pod| {
            owned_by(&pod.metadata, Some(job_uid))
                || JOB_CONTROLLER_UID_LABELS
                    .iter()
                    .any(|key| label(&pod.metadata, key) == Some(job_uid))
        })
        .collect()
}
