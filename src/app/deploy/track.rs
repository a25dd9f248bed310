//! Rollout tracking: every workload of a release watched concurrently (the workload, its ReplicaSets or ControllerRevisions, its pods), judged by the pure rules of [`crate::rollout`] on every watch event, failing fast on the first fatal pod problem, and the evidence (logs, events) gathered for the report.
//!
//! Design note: watches go through `kube::runtime::watcher`, which re-lists after a 410 Gone
//! and restarts dropped watches with backoff, so an expired watch never loses an update. The
//! verdict is re-evaluated on every event and on a 500 ms tick (time-based tolerances expire
//! without events); detection therefore happens within one watch event of the fatal change.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, FuturesUnordered, SelectAll};
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
use crate::cancel::Cancel;
use crate::pipeline::facts::{RolloutFailure, WorkloadFacts};
use crate::release::ObjectRef;
use crate::rollout::{self, Tolerances, Verdict, Workload};

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

/// The shared map of each workload's last observed facts (kept for workloads still running
/// when tracking stops).
type Latest = Arc<std::sync::Mutex<std::collections::BTreeMap<String, WorkloadFacts>>>;

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
    let latest: Latest = Arc::default();
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

/// The caches of what one workload's verdict reads, by kind.
enum WorkloadStores {
    Deployment {
        deployments: Store<Deployment>,
        replica_sets: Store<ReplicaSet>,
    },
    StatefulSet(Store<StatefulSet>),
    DaemonSet {
        daemon_sets: Store<DaemonSet>,
        revisions: Store<ControllerRevision>,
    },
    Job(Store<Job>),
}

/// One judgement of a workload: its verdict, its ready replicas, and the pods of its new revision.
type Judged = (Verdict, Option<String>, Vec<Pod>);

/// Everything watched for one workload: its pods and its kind's objects.
struct Watched {
    pods: Store<Pod>,
    workload: WorkloadStores,
}

impl Watched {
    /// Starts the watches of `workload` in `namespace`; returns their caches and their merged
    /// events. `selector` is the live object's pod selector.
    fn open(
        client: &kube::Client,
        workload: &ObjectRef,
        namespace: &str,
        selector: Option<&str>,
    ) -> (Watched, SelectAll<BoxStream<'static, ()>>) {
        let by_name =
            watcher::Config::default().fields(&format!("metadata.name={}", workload.name));
        let by_selector = || match selector {
            Some(selector) => watcher::Config::default().labels(selector),
            None => watcher::Config::default().labels("gantry.dev/no-selector=true"),
        };
        let mut watches = Watches {
            client,
            namespace,
            streams: Vec::new(),
        };
        let pods = watches.add::<Pod>(by_selector());
        let stores = match workload.kind.as_str() {
            "Deployment" => WorkloadStores::Deployment {
                deployments: watches.add(by_name),
                replica_sets: watches.add(by_selector()),
            },
            "StatefulSet" => WorkloadStores::StatefulSet(watches.add(by_name)),
            "DaemonSet" => WorkloadStores::DaemonSet {
                daemon_sets: watches.add(by_name),
                revisions: watches.add(by_selector()),
            },
            _ => WorkloadStores::Job(watches.add(by_name)),
        };
        let watched = Watched {
            pods,
            workload: stores,
        };
        (watched, futures::stream::select_all(watches.streams))
    }

    /// Judges the workload as currently cached; `None` until the workload itself is seen.
    fn judge(&self) -> Option<Judged> {
        let pods = snapshot(&self.pods);
        match &self.workload {
            WorkloadStores::Deployment {
                deployments,
                replica_sets,
            } => {
                let rs = snapshot(replica_sets);
                let found = snapshot(deployments);
                let deployment = found.first()?;
                Some((
                    rollout::deployment_verdict_among(deployment, &rs),
                    Some(deployment.ready()),
                    rollout::deployment_new_pods(deployment, &rs, &pods)
                        .into_iter()
                        .cloned()
                        .collect(),
                ))
            }
            WorkloadStores::StatefulSet(store) => judged(&snapshot(store), |s| {
                rollout::statefulset_new_pods(s, &pods)
            }),
            WorkloadStores::DaemonSet {
                daemon_sets,
                revisions,
            } => {
                let crs = snapshot(revisions);
                judged(&snapshot(daemon_sets), |d| {
                    rollout::daemonset_new_pods(d, &crs, &pods)
                })
            }
            WorkloadStores::Job(store) => judged(&snapshot(store), |j| rollout::job_pods(j, &pods)),
        }
    }
}

/// The verdict, ready count and new pods of the first (only) cached workload, if any.
fn judged<'p, W: Workload>(
    found: &[W],
    new_pods: impl FnOnce(&W) -> Vec<&'p Pod>,
) -> Option<Judged> {
    let workload = found.first()?;
    Some((
        workload.verdict(),
        Some(workload.ready()),
        new_pods(workload).into_iter().cloned().collect(),
    ))
}

/// The watches of one workload being started in its namespace, their event streams collected.
struct Watches<'a> {
    client: &'a kube::Client,
    namespace: &'a str,
    streams: Vec<BoxStream<'static, ()>>,
}

impl Watches<'_> {
    /// Starts watching the `K` objects that `config` selects; returns their cache.
    fn add<K>(&mut self, config: watcher::Config) -> Store<K>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Send
            + Sync
            + 'static,
    {
        let (store, events) =
            watch::<K>(Api::namespaced(self.client.clone(), self.namespace), config);
        self.streams.push(events);
        store
    }
}

/// The pod selector of the live object as a label selector (Jobs get a generated one). When
/// the object cannot be read (after the adapter's retries), says what is lost: its pods are not
/// watched, so a crash shows only in the workload's own status or at the deadline.
async fn live_selector(cluster: &Cluster, workload: &ObjectRef, runner: &Runner) -> Option<String> {
    match cluster.get(workload).await {
        Ok(live) => label_selector(&live.unwrap_or(Value::Null)),
        Err(err) => {
            runner.warning(&format!(
                "{workload}: could not read its pod selector ({err}); its pods are not watched, so a failing pod is found only through the workload's status or at the rollout deadline"
            ));
            None
        }
    }
}

/// One workload being tracked: what is watched, and what was last said about it.
struct Tracker<'a> {
    name: String,
    namespace: String,
    tolerances: &'a Tolerances,
    runner: &'a Runner,
    latest: Latest,
    watched: Watched,
    last_message: String,
}

impl Tracker<'_> {
    /// Judges the workload at `now`: `Some` once it is complete or has failed.
    fn evaluate(&mut self, now: Timestamp) -> Option<End> {
        let (verdict, replicas, new_pods) = self.watched.judge()?;
        // Test hook: killed once the rollout has been observed.
        super::crash_point("during-tracking");
        let problems: Vec<rollout::PodProblem> = new_pods
            .iter()
            .filter_map(|pod| rollout::pod_problem(pod, now, self.tolerances))
            .collect();
        let facts = self.observed(&verdict, replicas);
        match rollout::workload_decision(&verdict, &problems) {
            rollout::Decision::Done(message) => {
                Some(End::Complete(WorkloadFacts { message, ..facts }))
            }
            rollout::Decision::Fail {
                reason,
                message,
                pod,
                container,
            } => {
                // A failed verdict without a pod problem: name a new pod for the evidence.
                let pod = pod.or_else(|| new_pods.first().and_then(|p| p.metadata.name.clone()));
                Some(self.failed(
                    facts,
                    RolloutFailure {
                        object: self.name.clone(),
                        pod,
                        container,
                        reason,
                        message,
                        log_tail: Vec::new(),
                        events: Vec::new(),
                    },
                ))
            }
            rollout::Decision::Wait(message) => {
                if message != self.last_message {
                    self.runner.info(&format!("{}: {message}", self.name));
                    self.last_message = message;
                }
                None
            }
        }
    }

    /// The workload's facts for `verdict`, also kept as its latest known state.
    fn observed(&self, verdict: &Verdict, replicas: Option<String>) -> WorkloadFacts {
        let status = match verdict {
            Verdict::Complete(_) => "complete",
            Verdict::Failed { .. } => "failed",
            Verdict::Progressing(_) => "progressing",
        };
        let facts = WorkloadFacts {
            object: self.name.clone(),
            status: status.to_string(),
            replicas,
            message: verdict.message().to_string(),
        };
        if let Ok(mut latest) = self.latest.lock() {
            latest.insert(self.name.clone(), facts.clone());
        }
        facts
    }

    /// Ends tracking with `failure`, the workload's facts marked failed with its reason.
    fn failed(&self, facts: WorkloadFacts, failure: RolloutFailure) -> End {
        let facts = WorkloadFacts {
            status: "failed".into(),
            message: format!("{}: {}", failure.reason, failure.message),
            ..facts
        };
        End::Failed(facts, self.namespace.clone(), failure)
    }
}

/// Tracks one workload until it is complete or has failed, re-judging it on every watch event
/// and every tick; its latest facts are kept in `latest`.
async fn track_one(
    cluster: &Cluster,
    workload: &ObjectRef,
    tolerances: &Tolerances,
    runner: &Runner,
    latest: Latest,
) -> End {
    let namespace = workload
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let selector = live_selector(cluster, workload, runner).await;
    let (watched, mut events) =
        Watched::open(cluster.client(), workload, &namespace, selector.as_deref());
    let mut tracker = Tracker {
        name: workload.to_string(),
        namespace,
        tolerances,
        runner,
        latest,
        watched,
        last_message: String::new(),
    };
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = events.next() => {}
            _ = tick.tick() => {}
        }
        if let Some(end) = tracker.evaluate(Timestamp::now()) {
            return end;
        }
    }
}

/// A container log worth reporting: not empty, and not the kubelet's note that the log file
/// is gone (`unable to retrieve container logs for containerd://...`, sent as the log text).
fn usable_log(log: Result<String, crate::adapters::kube::KubeError>) -> Option<String> {
    let text = log.ok()?;
    let trimmed = text.trim();
    // The kubelet answers some failures as if they were the log (a dead instance whose file
    // it already removed).
    let kubelet_error = trimmed.starts_with("unable to retrieve container logs for ")
        || trimmed.starts_with("failed to try resolving symlinks in path ");
    (!trimmed.is_empty() && !kubelet_error).then_some(text)
}

/// How the crashed container's previous run ended, read again: the pod status that failed the
/// rollout can come before the kubelet reports the previous run's exit.
async fn last_exit_of(
    cluster: &Cluster,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
) -> Option<String> {
    let reference = ObjectRef {
        api_version: "v1".into(),
        kind: "Pod".into(),
        namespace: Some(namespace.into()),
        name: pod.into(),
    };
    let live: Pod = serde_json::from_value(cluster.get(&reference).await.ok()??).ok()?;
    let status = live.status?;
    let statuses = status
        .init_container_statuses
        .into_iter()
        .flatten()
        .chain(status.container_statuses.into_iter().flatten());
    let clause = statuses
        .filter(|s| container.is_none_or(|name| s.name == name))
        .map(|s| rollout::last_exit(&s))
        .find(|clause| !clause.is_empty())?;
    Some(clause)
}

/// Adds the failing container's last log lines and the recent events to a failure, and how a
/// crashed container last exited when the status that failed the rollout did not say yet.
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
        if crashed && !failure.message.contains("last exited") {
            if let Some(clause) = last_exit_of(cluster, namespace, &pod, container).await {
                failure.message.push_str(&clause);
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
