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
    let Some(new_replica_set) = deployment_new_replica_set(deployment, replica_sets) else {
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

/// The Deployment's new ReplicaSet: owned by it, its `deployment.kubernetes.io/revision` the
/// Deployment's; `None` until the controller has observed the Deployment's generation.
pub fn deployment_new_replica_set<'a>(
    deployment: &Deployment,
    replica_sets: &'a [ReplicaSet],
) -> Option<&'a ReplicaSet> {
    let observed = deployment
        .status
        .as_ref()
        .and_then(|s| s.observed_generation);
    generation_observed(deployment.metadata.generation, observed).then_some(())?;
    let revision = annotation(&deployment.metadata, REVISION_ANNOTATION)?;
    let deployment_uid = deployment.metadata.uid.as_deref();
    replica_sets.iter().find(|rs| {
        owned_by(&rs.metadata, deployment_uid)
            && annotation(&rs.metadata, REVISION_ANNOTATION) == Some(revision)
    })
}

/// The StatefulSet's `status.updateRevision`, once the controller has observed its generation.
fn observed_update_revision(statefulset: &StatefulSet) -> Option<&str> {
    let status = statefulset.status.as_ref();
    generation_observed(
        statefulset.metadata.generation,
        status.and_then(|s| s.observed_generation),
    )
    .then_some(())?;
    status.and_then(|s| s.update_revision.as_deref())
}

/// Pods of the StatefulSet's update revision: `controller-revision-hash` equals
/// `status.updateRevision`, owned by the StatefulSet (or with no controller at all).
pub fn statefulset_new_pods<'a>(statefulset: &StatefulSet, pods: &'a [Pod]) -> Vec<&'a Pod> {
    let Some(update_revision) = observed_update_revision(statefulset) else {
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

/// Pods a StatefulSet does not replace by itself once its template was restored: owned by it,
/// of another revision than `status.updateRevision`, not being deleted, and not Ready. With
/// `OrderedReady` the controller waits for such a pod to become Ready before it touches it (it
/// never does: its template is the broken one), so a rollback deletes them and the controller
/// recreates them from the restored template (Kubernetes' documented "forced rollback"). Empty
/// until the controller has observed the restored generation.
pub fn statefulset_stuck_pods<'a>(statefulset: &StatefulSet, pods: &'a [Pod]) -> Vec<&'a Pod> {
    let Some(update_revision) = observed_update_revision(statefulset) else {
        return Vec::new();
    };
    let statefulset_uid = statefulset.metadata.uid.as_deref();
    pods.iter()
        .filter(|pod| {
            owned_by(&pod.metadata, statefulset_uid)
                && pod.metadata.deletion_timestamp.is_none()
                && label(&pod.metadata, CONTROLLER_REVISION_HASH_LABEL)
                    .is_some_and(|revision| revision != update_revision)
                && !pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|conditions| {
                        conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse<K: serde::de::DeserializeOwned>(value: serde_json::Value) -> K {
        serde_json::from_value(value).expect("valid object")
    }

    fn pod(name: &str, labels: serde_json::Value, owners: serde_json::Value) -> Pod {
        parse(json!({"metadata": {"name": name, "labels": labels, "ownerReferences": owners}}))
    }

    fn names(pods: Vec<&Pod>) -> Vec<&str> {
        pods.iter()
            .filter_map(|p| p.metadata.name.as_deref())
            .collect()
    }

    #[test]
    fn deployment_new_pods_match_by_owner_or_by_hash_only_without_a_controller() {
        let deployment: Deployment = parse(json!({
            "metadata": {"name": "api", "uid": "d", "generation": 2,
                         "annotations": {"deployment.kubernetes.io/revision": "2"}},
            "status": {"observedGeneration": 2}
        }));
        let owned_by_deployment = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "api", "uid": "d", "controller": true}]);
        let replica_set = |uid: &str, revision: &str, hash: &str| -> ReplicaSet {
            parse(
                json!({"metadata": {"name": format!("api-{hash}"), "uid": uid,
                "labels": {"pod-template-hash": hash},
                "annotations": {"deployment.kubernetes.io/revision": revision},
                "ownerReferences": owned_by_deployment}}),
            )
        };
        let replica_sets = [
            replica_set("rs-old", "1", "old"),
            replica_set("rs-new", "2", "new"),
        ];
        let controller = |uid: &str| json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x", "uid": uid, "controller": true}]);
        let pods = [
            pod(
                "owned-new",
                json!({"pod-template-hash": "new"}),
                controller("rs-new"),
            ),
            pod(
                "owned-old",
                json!({"pod-template-hash": "old"}),
                controller("rs-old"),
            ),
            pod(
                "orphan-new-hash",
                json!({"pod-template-hash": "new"}),
                json!([]),
            ),
            pod(
                "other-controller-new-hash",
                json!({"pod-template-hash": "new"}),
                controller("elsewhere"),
            ),
        ];
        assert_eq!(
            names(deployment_new_pods(&deployment, &replica_sets, &pods)),
            ["owned-new", "orphan-new-hash"]
        );
    }

    #[test]
    fn daemonset_revision_hash_falls_back_to_the_revision_name() {
        let daemonset: DaemonSet = parse(json!({
            "metadata": {"name": "agent", "uid": "ds", "generation": 2},
            "status": {"observedGeneration": 2, "currentNumberScheduled": 1, "desiredNumberScheduled": 1,
                       "numberMisscheduled": 0, "numberReady": 0}
        }));
        let owner = json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "ds", "controller": true}]);
        let revision = |name: &str, number: i64| -> ControllerRevision {
            parse(json!({"metadata": {"name": name, "ownerReferences": owner}, "revision": number}))
        };
        let revisions = [revision("agent-bbb", 2), revision("agent-aaa", 1)];
        let pods = [
            pod(
                "agent-new",
                json!({"controller-revision-hash": "bbb"}),
                owner.clone(),
            ),
            pod(
                "agent-old",
                json!({"controller-revision-hash": "aaa"}),
                owner.clone(),
            ),
        ];
        assert_eq!(
            names(daemonset_new_pods(&daemonset, &revisions, &pods)),
            ["agent-new"]
        );
    }

    #[test]
    fn job_pods_match_by_either_uid_label_or_owner() {
        let job: Job = parse(json!({"metadata": {"name": "migrate", "uid": "j"}}));
        let pods = [
            pod(
                "new-label",
                json!({"batch.kubernetes.io/controller-uid": "j"}),
                json!([]),
            ),
            pod("old-label", json!({"controller-uid": "j"}), json!([])),
            pod(
                "owned",
                json!({}),
                json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "migrate", "uid": "j"}]),
            ),
            pod("someone-else", json!({"controller-uid": "k"}), json!([])),
        ];
        assert_eq!(
            names(job_pods(&job, &pods)),
            ["new-label", "old-label", "owned"]
        );
    }
}
