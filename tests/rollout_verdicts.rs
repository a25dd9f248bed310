//! Rollout verdicts and pod fail-fast, replayed over watch events recorded from a real control plane.
//!
//! `tests/fixtures/k8s/<scenario>/*.jsonl` hold the watch events (`{"t", "type", "object"}`) a
//! watcher saw; [`Scenario`] folds them up to any time `t` into the current objects, and maps `t`
//! onto the recorded wall clock so pod tolerances are applied to the objects' own timestamps.
//! `tests/fixtures/rollout/` holds hand-made variants of single objects.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gantry::rollout::{
    daemonset_new_pods, daemonset_ready, daemonset_verdict, deployment_new_pods, deployment_ready,
    deployment_verdict, deployment_verdict_among, job_pods, job_ready, job_verdict, pod_problem,
    statefulset_new_pods, statefulset_ready, statefulset_verdict, workload_decision, Decision,
    PodProblem, Tolerances, Verdict,
};
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::de::DeserializeOwned;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------------------------

struct WatchEvent {
    t: f64,
    kind: String,
    object: Value,
}

/// One recorded scenario: every watched resource's events, in order.
struct Scenario {
    name: String,
    files: BTreeMap<String, Vec<WatchEvent>>,
    /// The wall-clock instant of `t = 0`, derived from the recorded objects.
    start: Timestamp,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

impl Scenario {
    fn load(name: &str) -> Scenario {
        let dir = fixtures_dir().join("k8s").join(name);
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).expect("scenario folder exists") {
            let path = entry.expect("readable entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("readable jsonl");
            let events = text
                .lines()
                .filter(|line| !line.trim().is_empty())
                .map(|line| {
                    let mut raw: Value =
                        serde_json::from_str(line).expect("one JSON event per line");
                    WatchEvent {
                        t: raw["t"].as_f64().expect("numeric t"),
                        kind: raw["type"].as_str().expect("event type").to_string(),
                        object: raw["object"].take(),
                    }
                })
                .collect();
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("utf-8 name");
            files.insert(stem.to_string(), events);
        }
        let start = Self::derive_start(&files);
        Scenario {
            name: name.to_string(),
            files,
            start,
        }
    }

    /// `creationTimestamp` is truncated to the second and an object is created no later than the
    /// watch event that reports it, so `creationTimestamp - t` is a lower bound of the start;
    /// the largest such bound over all ADDED events is the best estimate (within a second).
    fn derive_start(files: &BTreeMap<String, Vec<WatchEvent>>) -> Timestamp {
        files
            .values()
            .flatten()
            .filter(|event| event.kind == "ADDED")
            .filter_map(|event| {
                let created: Timestamp = event.object["metadata"]["creationTimestamp"]
                    .as_str()?
                    .parse()
                    .ok()?;
                let t = SignedDuration::from_secs_f64(event.t);
                created.checked_sub(t).ok()
            })
            .max()
            .expect("at least one ADDED event with a creationTimestamp")
    }

    /// The wall-clock instant of recorded time `t`.
    fn now(&self, t: f64) -> Timestamp {
        self.start
            .checked_add(SignedDuration::from_secs_f64(t))
            .expect("in range")
    }

    /// The objects of `resource` as a watcher holds them at time `t` (in creation order).
    fn objects_at<K: DeserializeOwned>(&self, resource: &str, t: f64) -> Vec<K> {
        let mut current: Vec<(String, Value)> = Vec::new();
        for event in self.files.get(resource).into_iter().flatten() {
            if event.t > t {
                break;
            }
            let uid = event.object["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let position = current.iter().position(|(known, _)| *known == uid);
            match (event.kind.as_str(), position) {
                ("DELETED", Some(index)) => {
                    current.remove(index);
                }
                ("DELETED", None) => {}
                (_, Some(index)) => current[index].1 = event.object.clone(),
                (_, None) => current.push((uid, event.object.clone())),
            }
        }
        current
            .into_iter()
            .map(|(_, object)| serde_json::from_value(object).expect("typed object"))
            .collect()
    }

    fn only<K: DeserializeOwned>(&self, resource: &str, t: f64) -> Option<K> {
        let mut objects = self.objects_at::<K>(resource, t);
        assert!(
            objects.len() <= 1,
            "{}: more than one {resource}",
            self.name
        );
        objects.pop()
    }

    /// Every recorded event time, plus a tick every half second, so fail-fast is evaluated the
    /// way a polling orchestrator would also evaluate it between events.
    fn instants(&self) -> Vec<f64> {
        let mut instants: Vec<f64> = self.files.values().flatten().map(|e| e.t).collect();
        let end = instants.iter().cloned().fold(0.0, f64::max);
        let mut tick = 0.0;
        while tick < end {
            instants.push(tick);
            tick += 0.5;
        }
        instants.sort_by(f64::total_cmp);
        instants.dedup();
        instants
    }

    /// The verdict, the new-revision pod problems and the decision for the scenario's workload at `t`.
    fn evaluate(&self, t: f64, tolerances: &Tolerances) -> Option<Evaluation> {
        let pods: Vec<Pod> = self.objects_at("pods", t);
        let (verdict, ready, new_pods): (Verdict, String, Vec<&Pod>) =
            if self.files.contains_key("deployments") {
                let deployment: Deployment = self.only("deployments", t)?;
                let replica_sets: Vec<ReplicaSet> = self.objects_at("replicasets", t);
                let new_pods = deployment_new_pods(&deployment, &replica_sets, &pods);
                (
                    deployment_verdict(&deployment),
                    deployment_ready(&deployment),
                    new_pods,
                )
            } else if self.files.contains_key("statefulsets") {
                let statefulset: StatefulSet = self.only("statefulsets", t)?;
                let new_pods = statefulset_new_pods(&statefulset, &pods);
                (
                    statefulset_verdict(&statefulset),
                    statefulset_ready(&statefulset),
                    new_pods,
                )
            } else if self.files.contains_key("daemonsets") {
                let daemonset: DaemonSet = self.only("daemonsets", t)?;
                let revisions: Vec<ControllerRevision> = self.objects_at("controllerrevisions", t);
                let new_pods = daemonset_new_pods(&daemonset, &revisions, &pods);
                (
                    daemonset_verdict(&daemonset),
                    daemonset_ready(&daemonset),
                    new_pods,
                )
            } else {
                let job: Job = self.only("jobs", t)?;
                let new_pods = job_pods(&job, &pods);
                (job_verdict(&job), job_ready(&job), new_pods)
            };
        let now = self.now(t);
        let new_pod_names = new_pods
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        let problems: Vec<PodProblem> = new_pods
            .iter()
            .filter_map(|pod| pod_problem(pod, now, tolerances))
            .collect();
        let all_pod_problems = pods
            .iter()
            .filter_map(|pod| pod_problem(pod, now, tolerances))
            .count();
        let decision = workload_decision(&verdict, &problems);
        Some(Evaluation {
            t,
            verdict,
            ready,
            new_pod_names,
            problems,
            all_pod_problems,
            decision,
        })
    }

    fn timeline(&self, tolerances: &Tolerances) -> Vec<Evaluation> {
        self.instants()
            .into_iter()
            .filter_map(|t| self.evaluate(t, tolerances))
            .collect()
    }

    /// When the scenario's v2 (or only) stage was applied.
    fn last_stage_applied_at(&self) -> f64 {
        let text = std::fs::read_to_string(
            fixtures_dir()
                .join("k8s")
                .join(&self.name)
                .join("scenario.json"),
        )
        .expect("scenario.json");
        let scenario: Value = serde_json::from_str(&text).expect("scenario JSON");
        scenario["stages"]
            .as_array()
            .and_then(|stages| stages.last())
            .and_then(|stage| stage["applied_at"].as_f64())
            .expect("stage applied_at")
    }
}

#[derive(Debug)]
#[allow(dead_code)] // fields are read through Debug in assertion messages
struct Evaluation {
    t: f64,
    verdict: Verdict,
    ready: String,
    new_pod_names: Vec<String>,
    problems: Vec<PodProblem>,
    all_pod_problems: usize,
    decision: Decision,
}

fn first_failure(timeline: &[Evaluation]) -> Option<&Evaluation> {
    timeline
        .iter()
        .find(|e| matches!(e.decision, Decision::Fail { .. }))
}

fn first_failed_verdict(timeline: &[Evaluation]) -> Option<&Evaluation> {
    timeline
        .iter()
        .find(|e| matches!(e.verdict, Verdict::Failed { .. }))
}

/// The distinct verdict kinds in order, collapsing repeats: e.g. `["P", "C", "P", "C"]`.
fn verdict_kinds(timeline: &[Evaluation]) -> Vec<&'static str> {
    let mut kinds: Vec<&'static str> = timeline
        .iter()
        .map(|e| match e.verdict {
            Verdict::Progressing(_) => "P",
            Verdict::Complete(_) => "C",
            Verdict::Failed { .. } => "F",
        })
        .collect();
    kinds.dedup();
    kinds
}

fn tolerances(pull_error_secs: u64, restart_threshold: u32) -> Tolerances {
    Tolerances {
        pull_error: Duration::from_secs(pull_error_secs),
        restart_threshold,
        unschedulable: Duration::from_secs(120),
    }
}

fn patient() -> Tolerances {
    tolerances(3600, 1000)
}

fn fail_parts(decision: &Decision) -> (&str, Option<&str>, Option<&str>, &str) {
    match decision {
        Decision::Fail {
            reason,
            message,
            pod,
            container,
        } => (
            reason.as_str(),
            pod.as_deref(),
            container.as_deref(),
            message.as_str(),
        ),
        other => panic!("expected Fail, got {other:?}"),
    }
}

fn last(timeline: &[Evaluation]) -> &Evaluation {
    timeline.last().expect("a non-empty timeline")
}

// ---------------------------------------------------------------------------------------------
// Deployments
// ---------------------------------------------------------------------------------------------

#[test]
fn deployment_rollout_ok_progresses_then_completes_twice_without_pod_problems() {
    let scenario = Scenario::load("deployment-rollout-ok");
    // Even with no tolerance at all, a healthy rollout shows no pod problem.
    let timeline = scenario.timeline(&tolerances(0, 0));
    assert_eq!(
        verdict_kinds(&timeline),
        ["P", "C", "P", "C"],
        "v1 rolls out, then v2"
    );
    assert!(timeline
        .iter()
        .all(|e| e.problems.is_empty() && e.all_pod_problems == 0));
    let messages: Vec<&str> = timeline.iter().map(|e| e.verdict.message()).collect();
    for expected in [
        "Waiting for deployment spec update to be observed...",
        "Waiting for deployment \"api\" rollout to finish: 1 out of 2 new replicas have been updated...",
        "Waiting for deployment \"api\" rollout to finish: 1 old replicas are pending termination...",
        "Waiting for deployment \"api\" rollout to finish: 1 of 2 updated replicas are available...",
    ] {
        assert!(messages.contains(&expected), "kubectl's message {expected:?} never shown");
    }
    let end = last(&timeline);
    assert_eq!(
        end.decision,
        Decision::Done("deployment \"api\" successfully rolled out".into())
    );
    assert_eq!(end.ready, "2/2");
    assert_eq!(end.new_pod_names.len(), 2);
    assert!(end
        .new_pod_names
        .iter()
        .all(|name| name.starts_with("api-5d9d8d9c47-")));
}

#[test]
fn deployment_image_missing_fails_fast_from_the_new_pod_before_the_progress_deadline() {
    let scenario = Scenario::load("deployment-image-missing");
    let timeline = scenario.timeline(&tolerances(5, 3));
    let deadline = first_failed_verdict(&timeline).expect("the controller reports the deadline");
    assert!(
        (23.7..23.8).contains(&deadline.t),
        "deadline at {}",
        deadline.t
    );

    let fail = first_failure(&timeline).expect("fail-fast fires");
    // The v2 pod is scheduled at 19:46:04 (recorded t ≈ 2.9 on the derived clock): 5 s later.
    assert!((7.9..8.1).contains(&fail.t), "fail-fast at {}", fail.t);
    assert!(fail.t < deadline.t);
    let (reason, pod, container, message) = fail_parts(&fail.decision);
    assert!(
        ["ErrImagePull", "ImagePullBackOff"].contains(&reason),
        "{reason}"
    );
    assert_eq!(pod, Some("api-6fbbc578cc-4q86t"));
    assert_eq!(container, Some("main"));
    assert!(
        message.contains("container \"main\" of pod \"api-6fbbc578cc-4q86t\""),
        "{message}"
    );
    assert!(
        message.contains("127.0.0.1:5001/shop/api:v404"),
        "{message}"
    );
    // Before that, and while v1 was rolling out, nothing failed.
    assert!(timeline
        .iter()
        .filter(|e| e.t < fail.t)
        .all(|e| !matches!(e.decision, Decision::Fail { .. })));
}

#[test]
fn deployment_image_missing_with_a_patient_tolerance_ends_on_progress_deadline_exceeded() {
    let scenario = Scenario::load("deployment-image-missing");
    for patience in [patient(), Tolerances::default()] {
        let timeline = scenario.timeline(&patience);
        let fail = first_failure(&timeline).expect("the deadline ends it");
        assert!((23.7..23.8).contains(&fail.t), "failed at {}", fail.t);
        let (reason, pod, container, message) = fail_parts(&fail.decision);
        assert_eq!(reason, "ProgressDeadlineExceeded");
        assert_eq!((pod, container), (None, None));
        assert_eq!(
            message,
            "deployment \"api\" exceeded its progress deadline: ReplicaSet \"api-6fbbc578cc\" has timed out progressing."
        );
    }
}

#[test]
fn deployment_crashloop_fails_fast_once_restarts_exceed_the_threshold() {
    let scenario = Scenario::load("deployment-crashloop");
    let deadline = first_failed_verdict(&scenario.timeline(&patient()))
        .expect("deadline")
        .t;

    // restartCount reaches 4 at t=18.081: the default threshold of 3 fires there.
    let timeline = scenario.timeline(&Tolerances::default());
    let fail = first_failure(&timeline).expect("fail-fast fires");
    assert_eq!(fail.t, 18.081);
    assert!(fail.t < deadline);
    let (reason, pod, container, message) = fail_parts(&fail.decision);
    assert_eq!(reason, "CrashLoopBackOff");
    assert_eq!(pod, Some("api-6fc6fbc97c-6xgxc"));
    assert_eq!(container, Some("main"));
    assert!(
        message.contains("restarted 4 times (more than the 3 allowed)"),
        "{message}"
    );
    assert!(
        message.contains("last exited with code 1 (Error)"),
        "{message}"
    );
    assert!(
        message.contains("back-off 16s restarting failed container=main"),
        "{message}"
    );

    // A stricter threshold fires earlier (restartCount 2 at t=6.044); the first crash alone does not.
    let strict = scenario.timeline(&tolerances(60, 1));
    assert_eq!(first_failure(&strict).expect("fires").t, 6.044);
}

#[test]
fn deployment_never_ready_is_failed_only_by_the_progress_deadline() {
    let scenario = Scenario::load("deployment-never-ready");
    // Running but not Ready is not a pod problem, however impatient gantry is.
    let timeline = scenario.timeline(&tolerances(0, 0));
    assert!(timeline.iter().all(|e| e.problems.is_empty()));
    let fail = first_failure(&timeline).expect("deadline");
    assert_eq!(fail.t, 24.193);
    assert_eq!(fail_parts(&fail.decision).0, "ProgressDeadlineExceeded");
    assert_eq!(verdict_kinds(&timeline), ["P", "C", "P", "F"]);
}

#[test]
fn deployment_first_install_with_missing_image_fails_fast_on_its_only_revision() {
    let scenario = Scenario::load("deployment-first-install-missing-image");
    let timeline = scenario.timeline(&tolerances(5, 3));
    let fail = first_failure(&timeline).expect("fail-fast fires");
    let deadline = first_failed_verdict(&timeline).expect("deadline").t;
    assert!(
        fail.t < deadline,
        "fail-fast {} before deadline {deadline}",
        fail.t
    );
    assert!(
        fail.t > scenario.last_stage_applied_at() + 3.0,
        "not before the tolerance: {}",
        fail.t
    );
    let (reason, pod, container, _) = fail_parts(&fail.decision);
    assert!(
        ["ErrImagePull", "ImagePullBackOff"].contains(&reason),
        "{reason}"
    );
    assert!(pod.is_some_and(|name| name.starts_with("api-")));
    assert_eq!(container, Some("main"));
    assert!(
        matches!(last(&scenario.timeline(&patient())).decision, Decision::Fail { ref reason, .. } if reason == "ProgressDeadlineExceeded")
    );
}

#[test]
fn no_new_pods_are_judged_while_the_new_generation_is_unobserved() {
    let scenario = Scenario::load("deployment-image-missing");
    // t=3.703: generation 2 applied, the controller still reports generation 1.
    let evaluation = scenario
        .evaluate(3.703, &tolerances(0, 0))
        .expect("deployment exists");
    assert_eq!(
        evaluation.verdict,
        Verdict::Progressing("Waiting for deployment spec update to be observed...".into())
    );
    assert!(evaluation.new_pod_names.is_empty());
}

/// A "fix" rollout (revision 3) over the crash-looping revision 2: the crash-looping pods now
/// belong to an OLD revision and must not fail the new rollout.
#[test]
fn old_revision_pods_with_problems_never_fail_the_new_rollout() {
    let scenario = Scenario::load("deployment-crashloop");
    let t = 20.0;
    let mut deployment: Deployment = scenario.only("deployments", t).expect("deployment");
    let mut replica_sets: Vec<ReplicaSet> = scenario.objects_at("replicasets", t);
    let pods: Vec<Pod> = scenario.objects_at("pods", t);
    let now = scenario.now(t);
    let strict = tolerances(0, 0);
    // Sanity: as recorded, the crash-looping revision 2 pod is new and fails the rollout.
    let recorded_new = deployment_new_pods(&deployment, &replica_sets, &pods);
    assert!(recorded_new
        .iter()
        .any(|pod| pod_problem(pod, now, &strict).is_some()));

    let mut fixed = replica_sets
        .iter()
        .find(|rs| {
            rs.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("deployment.kubernetes.io/revision"))
                .map(String::as_str)
                == Some("2")
        })
        .cloned()
        .expect("revision 2 replica set");
    fixed.metadata.uid = Some("fixed-replica-set-uid".into());
    fixed.metadata.name = Some("api-fixed".into());
    let set = |meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
               key: &str,
               value: &str| {
        meta.annotations
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
    };
    set(
        &mut fixed.metadata,
        "deployment.kubernetes.io/revision",
        "3",
    );
    fixed
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("pod-template-hash".into(), "fixed".into());
    replica_sets.push(fixed);
    set(
        &mut deployment.metadata,
        "deployment.kubernetes.io/revision",
        "3",
    );
    deployment.metadata.generation = Some(3);
    if let Some(status) = deployment.status.as_mut() {
        status.observed_generation = Some(3);
    }

    let new_pods = deployment_new_pods(&deployment, &replica_sets, &pods);
    assert!(new_pods.is_empty(), "no pod of revision 3 exists yet");
    let problems: Vec<PodProblem> = new_pods
        .iter()
        .filter_map(|pod| pod_problem(pod, now, &strict))
        .collect();
    let decision = workload_decision(&deployment_verdict(&deployment), &problems);
    assert!(matches!(decision, Decision::Wait(_)), "{decision:?}");
}

// ---------------------------------------------------------------------------------------------
// StatefulSets, DaemonSets, Jobs
// ---------------------------------------------------------------------------------------------

#[test]
fn statefulset_rollout_ok_completes_with_kubectl_messages() {
    let scenario = Scenario::load("statefulset-rollout-ok");
    let timeline = scenario.timeline(&tolerances(0, 0));
    assert_eq!(verdict_kinds(&timeline), ["P", "C", "P", "C"]);
    assert!(timeline.iter().all(|e| e.problems.is_empty()));
    let messages: Vec<&str> = timeline.iter().map(|e| e.verdict.message()).collect();
    assert!(messages.contains(
        &"Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated..."
    ));
    assert!(messages.contains(&"Waiting for 1 pods to be ready..."));
    let end = last(&timeline);
    assert_eq!(
        end.decision,
        Decision::Done("partitioned roll out complete: 2 new pods have been updated...".into())
    );
    assert_eq!(end.ready, "2/2");
    assert_eq!(
        end.new_pod_names,
        ["db-1", "db-0"],
        "both pods replaced, highest ordinal first"
    );
}

#[test]
fn statefulset_crashloop_has_no_deadline_so_only_fail_fast_ends_it() {
    let scenario = Scenario::load("statefulset-crashloop");
    let patient_timeline = scenario.timeline(&patient());
    assert!(
        first_failure(&patient_timeline).is_none(),
        "without fail-fast it would wait forever"
    );
    assert!(matches!(
        last(&patient_timeline).decision,
        Decision::Wait(_)
    ));

    let timeline = scenario.timeline(&Tolerances::default());
    let fail = first_failure(&timeline).expect("fail-fast fires");
    assert_eq!(fail.t, 19.3);
    let (reason, pod, container, _) = fail_parts(&fail.decision);
    assert_eq!(
        (reason, pod, container),
        ("CrashLoopBackOff", Some("db-1"), Some("main"))
    );
    // db-0 still runs the old revision: it is never a new pod.
    assert!(timeline
        .iter()
        .filter(|e| e.t > 4.9)
        .all(|e| !e.new_pod_names.contains(&"db-0".to_string())));
}

#[test]
fn daemonset_rollout_ok_completes() {
    let scenario = Scenario::load("daemonset-rollout-ok");
    let timeline = scenario.timeline(&tolerances(0, 0));
    assert_eq!(verdict_kinds(&timeline), ["P", "C", "P", "C"]);
    assert!(timeline.iter().all(|e| e.problems.is_empty()));
    let end = last(&timeline);
    assert_eq!(
        end.decision,
        Decision::Done("daemon set \"agent\" successfully rolled out".into())
    );
    assert_eq!(end.ready, "1/1");
    assert_eq!(end.new_pod_names.len(), 1);
}

#[test]
fn daemonset_image_missing_has_no_deadline_so_only_fail_fast_ends_it() {
    let scenario = Scenario::load("daemonset-image-missing");
    assert!(first_failure(&scenario.timeline(&patient())).is_none());
    let timeline = scenario.timeline(&tolerances(5, 3));
    let fail = first_failure(&timeline).expect("fail-fast fires");
    assert!((7.9..8.1).contains(&fail.t), "fail-fast at {}", fail.t);
    let (reason, pod, container, message) = fail_parts(&fail.decision);
    assert_eq!(
        (reason, pod, container),
        ("ErrImagePull", Some("agent-snn4k"), Some("main"))
    );
    assert!(message.contains("rpc error: code = NotFound"), "{message}");
    // The v1 pod (revision 757c544789) is never judged once v2 is observed.
    assert!(timeline
        .iter()
        .filter(|e| e.t > 3.78)
        .all(|e| !e.new_pod_names.contains(&"agent-n88hj".to_string())));
}

#[test]
fn job_complete_completes() {
    let scenario = Scenario::load("job-complete");
    let timeline = scenario.timeline(&tolerances(0, 0));
    assert_eq!(verdict_kinds(&timeline), ["P", "C"]);
    let end = last(&timeline);
    assert!(
        matches!(&end.decision, Decision::Done(message) if message.contains("1 succeeded")),
        "{:?}",
        end.decision
    );
    assert_eq!(end.ready, "1/1");
    assert!(!end.new_pod_names.is_empty());
}

#[test]
fn job_failed_is_failed_by_its_condition_not_by_its_failed_pods() {
    let scenario = Scenario::load("job-failed");
    let timeline = scenario.timeline(&tolerances(0, 0));
    // Failed pods of a Job are retries within backoffLimit: never a pod problem.
    assert!(timeline.iter().all(|e| e.problems.is_empty()));
    let fail = first_failure(&timeline).expect("the Job fails");
    assert_eq!(fail.t, 4.38);
    let (reason, pod, _, message) = fail_parts(&fail.decision);
    assert_eq!(reason, "BackoffLimitExceeded");
    assert_eq!(pod, None);
    assert_eq!(
        message,
        "job \"migrate\" failed: Job has reached the specified backoff limit"
    );
    assert_eq!(
        fail.new_pod_names.len(),
        2,
        "both attempts belong to the Job"
    );
}

// ---------------------------------------------------------------------------------------------
// Hand-made variants (tests/fixtures/rollout)
// ---------------------------------------------------------------------------------------------

fn variant<K: DeserializeOwned>(file: &str) -> K {
    let path = fixtures_dir().join("rollout").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The instant every hand-made pod is created at, plus `seconds`.
fn at(seconds: i64) -> Timestamp {
    let base: Timestamp = "2026-01-01T00:00:00Z".parse().expect("valid timestamp");
    base.checked_add(SignedDuration::from_secs(seconds))
        .expect("in range")
}

struct PodCase {
    file: &'static str,
    seconds_after_creation: i64,
    tolerances: Tolerances,
    /// `None`: no problem; else the reason, the container, and fragments the message must contain.
    expected: Option<(&'static str, Option<&'static str>, &'static [&'static str])>,
}

#[test]
fn pod_problems_follow_the_fail_fast_rules() {
    let defaults = Tolerances::default;
    let cases = [
        // Regression: a rollback's scale-down left pods of the restored revision terminating
        // with phase Failed, and the restored release was declared broken.
        PodCase {
            file: "pod-terminating-failed.yaml",
            seconds_after_creation: 5,
            tolerances: tolerances(0, 0),
            expected: None,
        },
        PodCase {
            file: "pod-unschedulable.yaml",
            seconds_after_creation: 120,
            tolerances: defaults(),
            expected: None,
        },
        PodCase {
            file: "pod-unschedulable.yaml",
            seconds_after_creation: 121,
            tolerances: defaults(),
            expected: Some((
                "Unschedulable",
                None,
                &[
                    "pod \"api-7d4b9c-x2k8p\" could not be scheduled for 121s",
                    "3 Insufficient cpu",
                ],
            )),
        },
        PodCase {
            file: "pod-create-container-config-error.yaml",
            seconds_after_creation: 30,
            tolerances: defaults(),
            expected: None,
        },
        PodCase {
            file: "pod-create-container-config-error.yaml",
            seconds_after_creation: 62,
            tolerances: defaults(),
            expected: Some((
                "CreateContainerConfigError",
                Some("main"),
                &[
                    "container \"main\" of pod \"api-7d4b9c-q9z7m\" cannot be created",
                    "secret \\\"api-credentials\\\" not found",
                ],
            )),
        },
        PodCase {
            file: "pod-init-crashloop.yaml",
            seconds_after_creation: 60,
            tolerances: defaults(),
            expected: Some((
                "CrashLoopBackOff",
                Some("migrate"),
                &[
                    "init container \"migrate\"",
                    "restarted 4 times",
                    "exited with code 2 (Error)",
                    "relation \\\"users\\\" does not exist",
                ],
            )),
        },
        PodCase {
            file: "pod-crashloop-below-threshold.yaml",
            seconds_after_creation: 30,
            tolerances: defaults(),
            expected: None,
        },
        PodCase {
            file: "pod-crashloop-below-threshold.yaml",
            seconds_after_creation: 30,
            tolerances: tolerances(60, 1),
            expected: Some((
                "CrashLoopBackOff",
                Some("main"),
                &["restarted 2 times (more than the 1 allowed)"],
            )),
        },
        PodCase {
            file: "pod-restarts-above-threshold-running.yaml",
            seconds_after_creation: 121,
            tolerances: defaults(),
            expected: Some((
                "RestartThresholdExceeded",
                Some("main"),
                &["restarted 5 times", "exited with code 137 (OOMKilled)"],
            )),
        },
        PodCase {
            file: "pod-invalid-image-name.yaml",
            seconds_after_creation: 1,
            tolerances: defaults(),
            expected: Some((
                "InvalidImageName",
                Some("main"),
                &[
                    "registry.example/API:v2",
                    "repository name must be lowercase",
                ],
            )),
        },
        PodCase {
            file: "pod-evicted.yaml",
            seconds_after_creation: 5,
            tolerances: defaults(),
            expected: Some((
                "Evicted",
                None,
                &[
                    "pod \"api-7d4b9c-e1v2c\" failed (Evicted)",
                    "The node was low on resource: memory",
                ],
            )),
        },
        PodCase {
            file: "pod-job-failed.yaml",
            seconds_after_creation: 5,
            tolerances: tolerances(0, 0),
            expected: None,
        },
        PodCase {
            file: "pod-pull-error-after-restart.yaml",
            seconds_after_creation: 600 + 60,
            tolerances: defaults(),
            expected: None,
        },
        PodCase {
            file: "pod-pull-error-after-restart.yaml",
            seconds_after_creation: 600 + 61,
            tolerances: defaults(),
            expected: Some((
                "ImagePullBackOff",
                Some("main"),
                &["for at least 61s, more than the 60s allowed"],
            )),
        },
        PodCase {
            file: "pod-minimal.yaml",
            seconds_after_creation: 10_000,
            tolerances: tolerances(0, 0),
            expected: None,
        },
    ];
    for case in cases {
        let pod: Pod = variant(case.file);
        let label = format!("{} at +{}s", case.file, case.seconds_after_creation);
        let problem = pod_problem(&pod, at(case.seconds_after_creation), &case.tolerances);
        match (problem, case.expected) {
            (None, None) => {}
            (Some(problem), Some((reason, container, fragments))) => {
                assert_eq!(problem.reason, reason, "{label}");
                assert_eq!(problem.container.as_deref(), container, "{label}");
                assert_eq!(
                    Some(problem.pod.as_str()),
                    pod.metadata.name.as_deref(),
                    "{label}"
                );
                for fragment in fragments {
                    assert!(
                        problem.message.contains(fragment),
                        "{label}: {:?} lacks {fragment:?}",
                        problem.message
                    );
                }
            }
            (problem, expected) => panic!("{label}: got {problem:?}, expected {expected:?}"),
        }
    }
}

#[test]
fn statefulset_on_delete_waits_for_ready_pods_not_for_a_new_template() {
    let statefulset: StatefulSet = variant("statefulset-ondelete.yaml");
    let verdict = statefulset_verdict(&statefulset);
    assert!(
        matches!(&verdict, Verdict::Complete(m) if m.contains("OnDelete") && m.contains("gantry does not wait")),
        "{verdict:?}"
    );
    // Its pods not all Ready yet (a first deploy): it waits for them.
    let mut starting = statefulset.clone();
    starting.status.as_mut().unwrap().ready_replicas = Some(1);
    assert!(
        matches!(statefulset_verdict(&starting), Verdict::Progressing(m) if m.contains("Waiting for 1 pods to be ready")),
    );
    // Until the controller observes the new generation, it still waits.
    let mut unobserved = statefulset.clone();
    unobserved.metadata.generation = Some(3);
    assert_eq!(
        statefulset_verdict(&unobserved),
        Verdict::Progressing("Waiting for statefulset spec update to be observed...".into())
    );
}

#[test]
fn statefulset_partition_counts_only_the_replicas_above_it() {
    let statefulset: StatefulSet = variant("statefulset-partitioned.yaml");
    assert_eq!(
        statefulset_verdict(&statefulset),
        Verdict::Complete("partitioned roll out complete: 1 new pods have been updated...".into())
    );
    assert_eq!(statefulset_ready(&statefulset), "3/3");
    let mut pending = statefulset.clone();
    if let Some(status) = pending.status.as_mut() {
        status.updated_replicas = Some(0);
    }
    assert_eq!(
        statefulset_verdict(&pending),
        Verdict::Progressing(
            "Waiting for partitioned roll out to finish: 0 out of 1 new pods have been updated..."
                .into()
        )
    );
    let mut unready = statefulset.clone();
    if let Some(status) = unready.status.as_mut() {
        status.ready_replicas = Some(2);
    }
    assert_eq!(
        statefulset_verdict(&unready),
        Verdict::Progressing("Waiting for 1 pods to be ready...".into())
    );
}

#[test]
fn statefulset_without_rolling_update_parameters_compares_revisions() {
    let mut statefulset: StatefulSet = variant("statefulset-partitioned.yaml");
    if let Some(strategy) = statefulset
        .spec
        .as_mut()
        .and_then(|s| s.update_strategy.as_mut())
    {
        strategy.rolling_update = None;
    }
    assert_eq!(
        statefulset_verdict(&statefulset),
        Verdict::Progressing("waiting for statefulset rolling update to complete 1 pods at revision db-77978f88d5...".into())
    );
    if let Some(status) = statefulset.status.as_mut() {
        status.current_revision = status.update_revision.clone();
        status.current_replicas = Some(3);
    }
    assert_eq!(
        statefulset_verdict(&statefulset),
        Verdict::Complete(
            "statefulset rolling update complete 3 pods at revision db-77978f88d5...".into()
        )
    );
}

#[test]
fn daemonset_on_delete_waits_for_ready_pods_not_for_a_new_template() {
    let daemonset: DaemonSet = variant("daemonset-ondelete.yaml");
    let verdict = daemonset_verdict(&daemonset);
    assert!(
        matches!(&verdict, Verdict::Complete(m) if m.contains("daemon set \"agent\" uses the OnDelete")),
        "{verdict:?}"
    );
    let mut starting = daemonset.clone();
    starting.status.as_mut().unwrap().number_ready = 2;
    assert!(
        matches!(daemonset_verdict(&starting), Verdict::Progressing(m) if m.contains("2 of 3 pods are ready"))
    );
    assert_eq!(daemonset_ready(&daemonset), "3/3");
}

#[test]
fn a_paused_deployment_never_counts_as_rolled_out() {
    let deployment: Deployment = variant("deployment-paused.yaml");
    let verdict = deployment_verdict(&deployment);
    let Verdict::Failed { reason, message } = &verdict else {
        panic!("{verdict:?}");
    };
    assert_eq!(reason, "DeploymentPaused");
    assert!(message.contains("is paused"), "{message}");
    assert!(message.contains("0 of 2 replicas updated"), "{message}");
    assert!(
        message.contains("kubectl rollout resume deployment/api"),
        "{message}"
    );
    assert_eq!(deployment_ready(&deployment), "2/2");
    // A paused deployment that already runs its template reads as kubectl reads it.
    let mut finished = deployment.clone();
    if let Some(status) = finished.status.as_mut() {
        status.updated_replicas = Some(2);
    }
    assert_eq!(
        deployment_verdict(&finished),
        Verdict::Complete("deployment \"api\" successfully rolled out".into())
    );
}

#[test]
fn replica_failure_fails_at_once_naming_quota_or_pod_security() {
    let base: Deployment = variant("deployment-paused.yaml");
    let cases = [
        (
            "pods \"api-7d4b9c-x\" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2",
            "because of a ResourceQuota",
        ),
        (
            "pods \"api-7d4b9c-x\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false",
            "because PodSecurity admission rejects them",
        ),
    ];
    for (api_message, cause) in cases {
        let mut deployment = base.clone();
        deployment.spec.as_mut().unwrap().paused = None;
        let status = deployment.status.as_mut().unwrap();
        let mut conditions = status.conditions.clone().unwrap_or_default();
        conditions.push(k8s_openapi::api::apps::v1::DeploymentCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some("FailedCreate".into()),
            message: Some(api_message.into()),
            ..Default::default()
        });
        status.conditions = Some(conditions);
        let verdict = deployment_verdict(&deployment);
        let Verdict::Failed { reason, message } = &verdict else {
            panic!("{verdict:?}");
        };
        assert_eq!(reason, "ReplicaFailure");
        assert!(message.contains(cause), "{message}");
        assert!(message.contains(api_message), "{message}");
        assert!(message.contains("(FailedCreate)"), "{message}");
    }
}

#[test]
fn replica_failure_of_an_old_replica_set_is_no_failure_of_the_new_template() {
    // After a rollback: the restored template's ReplicaSet (revision 2) is fine; the failed
    // release's (revision 1 here) still reports its quota rejection, and the controller copies
    // it to the Deployment until it is scaled down.
    let mut deployment: Deployment = variant("deployment-paused.yaml");
    deployment.spec.as_mut().unwrap().paused = None;
    let status = deployment.status.as_mut().unwrap();
    let mut conditions = status.conditions.clone().unwrap_or_default();
    let quota = "pods \"api-7d4b9c-x\" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2";
    conditions.push(k8s_openapi::api::apps::v1::DeploymentCondition {
        type_: "ReplicaFailure".into(),
        status: "True".into(),
        reason: Some("FailedCreate".into()),
        message: Some(quota.into()),
        ..Default::default()
    });
    status.conditions = Some(conditions);
    let replica_set = |revision: &str, failing: bool| -> ReplicaSet {
        let conditions = if failing {
            serde_json::json!([{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": quota}])
        } else {
            serde_json::json!([])
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("api-{revision}"), "uid": format!("rs-{revision}"),
                "annotations": {"deployment.kubernetes.io/revision": revision},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "api",
                    "uid": "deploy-uid", "controller": true}]},
            "status": {"replicas": 0, "conditions": conditions}
        }))
        .unwrap()
    };
    // (the ReplicaSets, whether the verdict is the ReplicaFailure)
    let cases = [
        (vec![replica_set("1", true), replica_set("2", false)], false),
        (vec![replica_set("1", false), replica_set("2", true)], true),
        // The new ReplicaSet not seen yet: wait for it rather than fail on an old one.
        (vec![replica_set("1", true)], false),
    ];
    for (replica_sets, fails) in cases {
        let verdict = deployment_verdict_among(&deployment, &replica_sets);
        assert_eq!(
            matches!(&verdict, Verdict::Failed { reason, .. } if reason == "ReplicaFailure"),
            fails,
            "{verdict:?}"
        );
    }
    // Without the ReplicaSets at hand, the Deployment's condition decides.
    assert!(matches!(
        deployment_verdict(&deployment),
        Verdict::Failed { .. }
    ));
}

#[test]
fn job_failure_target_fails_before_the_failed_condition_arrives() {
    let job: Job = variant("job-failure-target.yaml");
    assert_eq!(
        job_verdict(&job),
        Verdict::Failed {
            reason: "DeadlineExceeded".into(),
            message: "job \"migrate\" failed: Job was active longer than specified deadline".into()
        }
    );
    assert_eq!(job_ready(&job), "0/1");
    let pod: Pod = variant("pod-job-failed.yaml");
    let pods = [pod];
    assert_eq!(
        job_pods(&job, &pods).len(),
        1,
        "matched by ownerReference and label"
    );
}

#[test]
fn objects_without_status_are_waited_on_not_panicked_over() {
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "api", "generation": 1}
    }))
    .expect("minimal deployment");
    assert_eq!(
        deployment_verdict(&deployment),
        Verdict::Progressing("Waiting for deployment spec update to be observed...".into())
    );
    assert!(deployment_new_pods(&deployment, &[], &[]).is_empty());
    let statefulset: StatefulSet =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "db"}})).expect("minimal");
    assert_eq!(
        statefulset_verdict(&statefulset),
        Verdict::Progressing("Waiting for statefulset spec update to be observed...".into())
    );
    assert!(statefulset_new_pods(&statefulset, &[]).is_empty());
    let daemonset: DaemonSet =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "agent", "generation": 1}}))
            .expect("minimal");
    assert!(matches!(
        daemonset_verdict(&daemonset),
        Verdict::Progressing(_)
    ));
    assert!(daemonset_new_pods(&daemonset, &[], &[]).is_empty());
    let job: Job = serde_json::from_value(serde_json::json!({"metadata": {"name": "migrate"}}))
        .expect("minimal");
    assert_eq!(
        job_verdict(&job),
        Verdict::Progressing(
            "Waiting for job \"migrate\" to complete: 0 active, 0 succeeded, 0 failed".into()
        )
    );
    assert!(job_pods(&job, &[]).is_empty());
}
