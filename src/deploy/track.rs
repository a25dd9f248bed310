//! Rollout tracking: every workload of a release watched concurrently (the workload, its ReplicaSets or ControllerRevisions, its pods), judged by the pure rules of [`crate::rollout`] on every watch event, failing fast on the first fatal pod problem, and the evidence (logs, events) gathered for the report.
//!
//! Design note: watches go through `kube::runtime::watcher`, which re-lists after a 410 Gone
//! and restarts dropped watches with backoff, so an expired watch never loses an update. The
//! verdict is re-evaluated on every event and on a 500 ms tick (time-based tolerances expire
//! without events); detection therefore happens within one watch event of the fatal change.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, FuturesUnordered};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::Value;

use crate::adapters::kube::Cluster;
use crate::adapters::runner::Runner;
use crate::pipeline::facts::{RolloutFailure, WorkloadFacts};
use crate::pipeline::Cancel;
use crate::release::ObjectRef;
use crate::rollout::{self, Tolerances, Verdict};

/// How often verdicts are re-evaluated without an event (tolerances are time-based).
const TICK: Duration = Duration::from_millis(500);

/// How tracking of the whole release ended.
#[derive(Debug, Default)]
pub struct Tracked {
    pub workloads: Vec<WorkloadFacts>,
    /// The first fatal failure (the others were stopped).
    pub failure: Option<(String, RolloutFailure)>,
    pub timed_out: bool,
    pub cancelled: bool,
}

impl Tracked {
    pub fn healthy(&self) -> bool {
        self.failure.is_none() && !self.timed_out && !self.cancelled
    }
}

enum End {
    Complete(WorkloadFacts),
    Failed(WorkloadFacts, String, RolloutFailure),
}

/// Tracks every workload in `objects` until all are complete, one fails, `timeout` passes,
/// or the run is cancelled.
pub async fn track_all(
    cluster: &Cluster,
    objects: &[Value],
    tolerances: &Tolerances,
    timeout: Duration,
    cancel: &Cancel,
    runner: &Runner,
) -> Tracked {
    let workloads: Vec<ObjectRef> = objects
        .iter()
        .filter_map(ObjectRef::of)
        .filter(|r| crate::release::tracked_kinds(&r.kind))
        .collect();
    let mut tracked = Tracked::default();
    if workloads.is_empty() {
        return tracked;
    }
    let latest: Arc<std::sync::Mutex<std::collections::BTreeMap<String, WorkloadFacts>>> =
        Arc::default();
    let mut running: FuturesUnordered<_> = workloads
        .iter()
        .map(|workload| track_one(cluster, workload, tolerances, runner, latest.clone()))
        .collect();
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = running.next() => match next {
                None => break,
                Some(End::Complete(facts)) => {
                    runner.info(&format!("{}: {}", facts.object, facts.message));
                    tracked.workloads.push(facts);
                }
                Some(End::Failed(facts, namespace, failure)) => {
                    runner.error(&format!("{}: {}: {}", facts.object, failure.reason, failure.message));
                    tracked.workloads.push(facts);
                    tracked.failure = Some((namespace, failure));
                    break;
                }
            },
            _ = &mut deadline => {
                tracked.timed_out = true;
                break;
            }
            _ = cancel.cancelled() => {
                tracked.cancelled = true;
                break;
            }
        }
    }
    drop(running);
    // Workloads still running when tracking stopped, with their last known state.
    let done: std::collections::BTreeSet<String> =
        tracked.workloads.iter().map(|w| w.object.clone()).collect();
    let latest = latest.lock().map(|l| l.clone()).unwrap_or_default();
    for workload in &workloads {
        let name = workload.to_string();
        if done.contains(&name) {
            continue;
        }
        let mut facts = latest.get(&name).cloned().unwrap_or(WorkloadFacts {
            object: name.clone(),
            status: "progressing".into(),
            replicas: None,
            message: "no status observed yet".into(),
        });
        facts.status = if tracked.failure.is_some() {
            "stopped".into()
        } else {
            "progressing".into()
        };
        tracked.workloads.push(facts);
    }
    tracked
}

fn label_selector(object: &Value) -> Option<String> {
    let selector = object.pointer("/spec/selector")?;
    let mut parts = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (key, value) in labels {
            parts.push(format!("{key}={}", value.as_str().unwrap_or_default()));
        }
    }
    if let Some(expressions) = selector.get("matchExpressions").and_then(Value::as_array) {
        for expression in expressions {
            let key = expression.get("key").and_then(Value::as_str)?;
            let values: Vec<&str> = expression
                .get("values")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match expression.get("operator").and_then(Value::as_str)? {
                "In" => parts.push(format!("{key} in ({})", values.join(","))),
                "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
                "Exists" => parts.push(key.to_string()),
                "DoesNotExist" => parts.push(format!("!{key}")),
                _ => return None,
            }
        }
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

fn watch<K>(api: Api<K>, config: watcher::Config) -> (Store<K>, BoxStream<'static, ()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config))
        .default_backoff()
        .map_ok(|_| ())
        .map(|_| ())
        .boxed();
    (reader, stream)
}

fn snapshot<K: Clone + kube::Resource<DynamicType = ()>>(store: &Store<K>) -> Vec<K> {
    store.state().iter().map(|k| (**k).clone()).collect()
}

async fn track_one(
    cluster: &Cluster,
    workload: &ObjectRef,
    tolerances: &Tolerances,
    runner: &Runner,
    latest: Arc<std::sync::Mutex<std::collections::BTreeMap<String, WorkloadFacts>>>,
) -> End {
    let name = workload.to_string();
    let namespace = workload
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let client = cluster.client().clone();
    let by_name = watcher::Config::default().fields(&format!("metadata.name={}", workload.name));
    // The selector of the live object (Jobs get a generated one).
    let live = cluster
        .get(workload)
        .await
        .ok()
        .flatten()
        .unwrap_or(Value::Null);
    let selector = label_selector(&live);
    let by_selector = || match &selector {
        Some(selector) => watcher::Config::default().labels(selector),
        None => watcher::Config::default().labels("gantry.dev/no-selector=true"),
    };
    let (pods, pod_events) =
        watch::<Pod>(Api::namespaced(client.clone(), &namespace), by_selector());
    let mut streams: Vec<BoxStream<'static, ()>> = vec![pod_events];
    let mut deployments = None;
    let mut replica_sets = None;
    let mut stateful_sets = None;
    let mut daemon_sets = None;
    let mut revisions = None;
    let mut jobs = None;
    match workload.kind.as_str() {
        "Deployment" => {
            let (store, events) =
                watch::<Deployment>(Api::namespaced(client.clone(), &namespace), by_name.clone());
            deployments = Some(store);
            streams.push(events);
            let (store, events) =
                watch::<ReplicaSet>(Api::namespaced(client.clone(), &namespace), by_selector());
            replica_sets = Some(store);
            streams.push(events);
        }
        "StatefulSet" => {
            let (store, events) =
                watch::<StatefulSet>(Api::namespaced(client.clone(), &namespace), by_name.clone());
            stateful_sets = Some(store);
            streams.push(events);
        }
        "DaemonSet" => {
            let (store, events) =
                watch::<DaemonSet>(Api::namespaced(client.clone(), &namespace), by_name.clone());
            daemon_sets = Some(store);
            streams.push(events);
            let (store, events) = watch::<ControllerRevision>(
                Api::namespaced(client.clone(), &namespace),
                by_selector(),
            );
            revisions = Some(store);
            streams.push(events);
        }
        _ => {
            let (store, events) =
                watch::<Job>(Api::namespaced(client.clone(), &namespace), by_name.clone());
            jobs = Some(store);
            streams.push(events);
        }
    }
    let mut events = futures::stream::select_all(streams);
    let mut tick = tokio::time::interval(TICK);
    let mut last_message = String::new();
    loop {
        tokio::select! {
            _ = events.next() => {}
            _ = tick.tick() => {}
        }
        let now = Timestamp::now();
        let current_pods = snapshot(&pods);
        let judged = if let Some(store) = &deployments {
            snapshot(store).first().map(|d| {
                let rs = replica_sets.as_ref().map(snapshot).unwrap_or_default();
                (
                    rollout::deployment_verdict(d),
                    Some(rollout::deployment_ready(d)),
                    rollout::deployment_new_pods(d, &rs, &current_pods)
                        .into_iter()
                        .cloned()
                        .collect::<Vec<Pod>>(),
                )
            })
        } else if let Some(store) = &stateful_sets {
            snapshot(store).first().map(|s| {
                (
                    rollout::statefulset_verdict(s),
                    Some(rollout::statefulset_ready(s)),
                    rollout::statefulset_new_pods(s, &current_pods)
                        .into_iter()
                        .cloned()
                        .collect(),
                )
            })
        } else if let Some(store) = &daemon_sets {
            snapshot(store).first().map(|d| {
                let crs = revisions.as_ref().map(snapshot).unwrap_or_default();
                (
                    rollout::daemonset_verdict(d),
                    Some(rollout::daemonset_ready(d)),
                    rollout::daemonset_new_pods(d, &crs, &current_pods)
                        .into_iter()
                        .cloned()
                        .collect(),
                )
            })
        } else if let Some(store) = &jobs {
            snapshot(store).first().map(|j| {
                (
                    rollout::job_verdict(j),
                    Some(rollout::job_ready(j)),
                    rollout::job_pods(j, &current_pods)
                        .into_iter()
                        .cloned()
                        .collect(),
                )
            })
        } else {
            None
        };
        let Some((verdict, replicas, new_pods)) = judged else {
            continue;
        };
        // Test hook: killed once the rollout has been observed.
        super::crash_point("during-tracking");
        let problems: Vec<rollout::PodProblem> = new_pods
            .iter()
            .filter_map(|pod| rollout::pod_problem(pod, now, tolerances))
            .collect();
        let status = match &verdict {
            Verdict::Complete(_) => "complete",
            Verdict::Failed { .. } => "failed",
            Verdict::Progressing(_) => "progressing",
        };
        let facts = WorkloadFacts {
            object: name.clone(),
            status: status.to_string(),
            replicas: replicas.clone(),
            message: verdict.message().to_string(),
        };
        if let Ok(mut latest) = latest.lock() {
            latest.insert(name.clone(), facts.clone());
        }
        match rollout::workload_decision(&verdict, &problems) {
            rollout::Decision::Done(message) => {
                return End::Complete(WorkloadFacts { message, ..facts })
            }
            rollout::Decision::Fail {
                reason,
                message,
                pod,
                container,
            } => {
                let facts = WorkloadFacts {
                    status: "failed".into(),
                    message: format!("{reason}: {message}"),
                    ..facts
                };
                // A failed verdict without a pod problem: name a new pod for the evidence.
                let pod = pod.or_else(|| new_pods.first().and_then(|p| p.metadata.name.clone()));
                return End::Failed(
                    facts,
                    namespace,
                    RolloutFailure {
                        object: name,
                        pod,
                        container,
                        reason,
                        message,
                        log_tail: Vec::new(),
                        events: Vec::new(),
                    },
                );
            }
            rollout::Decision::Wait(message) => {
                if message != last_message {
                    runner.info(&format!("{name}: {message}"));
                    last_message = message;
                }
            }
        }
    }
}

/// A container log worth reporting: not empty, and not the kubelet's note that the log file
/// is gone (`unable to retrieve container logs for containerd://...`, sent as the log text).
fn usable_log(log: Result<String, crate::adapters::kube::KubeError>) -> Option<String> {
    let text = log.ok()?;
    let trimmed = text.trim();
    (!trimmed.is_empty() && !trimmed.starts_with("unable to retrieve container logs for "))
        .then_some(text)
}

/// Adds the failing container's last log lines and the recent events to a failure.
pub async fn diagnose(cluster: &Cluster, namespace: &str, failure: &mut RolloutFailure) {
    let workload_name = failure
        .object
        .split_once('/')
        .map(|(_, rest)| rest.split(' ').next().unwrap_or(rest).to_string())
        .unwrap_or_default();
    if let Some(pod) = failure.pod.clone() {
        let crashed = failure.reason.contains("CrashLoop") || failure.reason.contains("Restart");
        let container = failure.container.as_deref();
        let mut log = usable_log(
            cluster
                .pod_logs(namespace, &pod, container, crashed, 20)
                .await,
        );
        // The kubelet keeps one dead instance per container and may already have removed
        // the one that crashed first; the running (or waiting) instance printed the same.
        if crashed && log.is_none() {
            log = usable_log(
                cluster
                    .pod_logs(namespace, &pod, container, false, 20)
                    .await,
            );
            if log.is_none() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                log = usable_log(
                    cluster
                        .pod_logs(namespace, &pod, container, false, 20)
                        .await,
                );
            }
        }
        if let Some(text) = log {
            failure.log_tail = text
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .map(str::to_string)
                .collect();
        }
    }
    let mut names = vec![workload_name.as_str()];
    if let Some(pod) = failure.pod.as_deref() {
        names.push(pod);
    }
    if let Ok(events) = cluster.events_for(namespace, &names).await {
        failure.events = events
            .iter()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .map(|event| {
                format!(
                    "{} {}/{}: {} {}{}",
                    event.type_.as_deref().unwrap_or("Normal"),
                    event.involved_object.kind.as_deref().unwrap_or("?"),
                    event.involved_object.name.as_deref().unwrap_or("?"),
                    event.reason.as_deref().unwrap_or(""),
                    event.message.as_deref().unwrap_or("").trim(),
                    match event.count {
                        Some(count) if count > 1 => format!(" (x{count})"),
                        _ => String::new(),
                    }
                )
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_become_label_selector_strings() {
        let object = json!({"spec": {"selector": {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "canary", "operator": "DoesNotExist"}
            ]
        }}});
        assert_eq!(
            label_selector(&object).unwrap(),
            "app=web,tier in (a,b),!canary"
        );
        assert_eq!(label_selector(&json!({"spec": {}})), None);
    }
}
