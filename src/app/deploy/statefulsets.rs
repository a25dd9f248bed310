//! The forced rollback of StatefulSets: once the restored template is observed, pods of the failed revision that are not Ready are deleted so the controller recreates them from it.
//!
//! Design note: with the default `OrderedReady` policy the StatefulSet controller waits for a
//! pod to be Running and Ready before it replaces it, and a pod of the broken template never
//! is, so restoring the template alone never completes (Kubernetes documents this "forced
//! rollback" step). Which pods to delete is decided by the pure
//! [`crate::rollout::statefulset_stuck_pods`]; Ready pods are left to the controller's own
//! rolling update. `OnDelete` StatefulSets get the same treatment for pods that are not Ready;
//! their Ready pods keep whatever template they were created with, as `OnDelete` means.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use crate::adapters::kube::{Cluster, KubeError};
use crate::release::ObjectRef;

/// How long the controller may take to observe the restored template.
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(30);

/// For every StatefulSet among `restored`, deletes the pods of the failed revision that are not
/// Ready; returns them as `Pod/name (namespace ns)`, and the errors.
pub async fn delete_stuck_pods(
    cluster: &Cluster,
    restored: &[Value],
) -> (Vec<String>, Vec<KubeError>) {
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for object in restored {
        let Some(reference) = ObjectRef::of(object).filter(|r| r.kind == "StatefulSet") else {
            continue;
        };
        match stuck_pods(cluster, &reference).await {
            Ok(pods) => {
                for pod in pods {
                    match cluster.delete(&pod).await {
                        Ok(_) => deleted.push(pod.to_string()),
                        Err(err) => errors.push(err),
                    }
                }
            }
            Err(err) => errors.push(err),
        }
    }
    (deleted, errors)
}

/// The stuck pods of one StatefulSet, once its controller observed the restored generation.
async fn stuck_pods(cluster: &Cluster, reference: &ObjectRef) -> Result<Vec<ObjectRef>, KubeError> {
    let started = Instant::now();
    let statefulset = loop {
        let Some(statefulset) = cluster.get_typed::<StatefulSet>(reference).await? else {
            return Ok(Vec::new());
        };
        let observed = statefulset
            .status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .unwrap_or(0);
        if observed >= statefulset.metadata.generation.unwrap_or(0)
            || started.elapsed() > OBSERVE_TIMEOUT
        {
            break statefulset;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let selector = statefulset
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let namespace = reference.namespace.as_deref();
    let pods: Vec<Pod> = cluster
        .list(
            "v1",
            "Pod",
            namespace,
            Some(&selector)
                .filter(|s| !s.is_empty())
                .map(String::as_str),
        )
        .await?
        .into_iter()
        .filter_map(|pod| serde_json::from_value(pod).ok())
        .collect();
    Ok(crate::rollout::statefulset_stuck_pods(&statefulset, &pods)
        .into_iter()
        .filter_map(|pod| {
            Some(ObjectRef {
                api_version: "v1".into(),
                kind: "Pod".into(),
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone()?,
            })
        })
        .collect())
}
