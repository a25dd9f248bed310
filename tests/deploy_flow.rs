//! The deploy verbs against the in-process fake API server: apply order, releases, pruning, the environment lock, rollout tracking with fail-fast, automatic rollback of every resource, plan, history, pre-flight, and the cluster state each failure leaves behind.

mod support;

use std::sync::Arc;
use std::time::Duration;

use gantry::adapters::kube::Cluster;
use gantry::adapters::runner::{Runner, SharedBuffer};
use gantry::deploy::{Ending, Engine, Origin, Outcome, Settings};
use gantry::pipeline::facts::{ChangeAction, PlannedAction};
use gantry::pipeline::{Cancel, CancelHandle};
use gantry::release::{self, ReleaseStatus};
use serde_json::{json, Value};
use support::fake_apiserver::{Behavior, FakeApiServer, Fault, RequestMatcher};

const NS: &str = "shop";

fn settings() -> Settings {
    support::deploy::settings(NS)
}

fn config_map(name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS},
        "data": {"setting": value}})
}

fn service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}})
}

fn deployment(name: &str, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": name, "namespace": NS},
    "spec": {
        "replicas": 2,
        "progressDeadlineSeconds": 60,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": name, "image": image}]}
        }
    }})
}

/// A release in apply order: ConfigMap, Service, Deployment.
fn release_objects(image: &str, setting: &str) -> Vec<Value> {
    vec![
        config_map("web-config", setting),
        service("web"),
        deployment("web", image),
    ]
}

struct Harness {
    fake: FakeApiServer,
    cluster: Arc<Cluster>,
    runner: Runner,
    log: SharedBuffer,
    cancel: Cancel,
    cancel_handle: CancelHandle,
    settings: Settings,
}

impl Harness {
    async fn new() -> Harness {
        let fake = FakeApiServer::start().await;
        let cluster = Arc::new(Cluster::new(
            fake.client(),
            "system:serviceaccount:ci:gantry",
        ));
        let (runner, log) = Runner::capturing(false);
        let (cancel_handle, cancel) = Cancel::new();
        Harness {
            fake,
            cluster,
            runner,
            log,
            cancel,
            cancel_handle,
            settings: settings(),
        }
    }

    fn engine(&self) -> Engine<'_> {
        Engine {
            cluster: self.cluster.clone(),
            settings: self.settings.clone(),
            runner: &self.runner,
            cancel: &self.cancel,
            me: "test-run #1".into(),
            images: None,
        }
    }

    async fn deploy(&self, objects: Vec<Value>) -> Outcome {
        self.engine()
            .deploy(
                objects,
                &Origin {
                    commit: Some("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c".into()),
                    ..Origin::default()
                },
            )
            .await
    }

    fn object(&self, api_version: &str, kind: &str, name: &str) -> Option<Value> {
        self.fake.get(api_version, kind, Some(NS), name)
    }

    fn image_of(&self, name: &str) -> String {
        self.object("apps/v1", "Deployment", name).unwrap()["spec"]["template"]["spec"]
            ["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Release statuses by number, as stored in the cluster.
    fn history(&self) -> Vec<(u64, ReleaseStatus)> {
        support::deploy::history(&self.fake)
    }

    fn lease_holder(&self) -> Option<String> {
        self.fake
            .get(
                "coordination.k8s.io/v1",
                "Lease",
                Some(NS),
                &release::lease_name("dev"),
            )
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
    }
}

fn assert_succeeded(outcome: &Outcome, log: &SharedBuffer) {
    assert_eq!(
        outcome.ending,
        Ending::Succeeded,
        "log:\n{}",
        log.contents()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_deploy_applies_in_dependency_order_and_records_release_1() {
    let h = Harness::new().await;
    let outcome = h.deploy(release_objects("127.0.0.1:1/web:v1", "a")).await;
    assert_succeeded(&outcome, &h.log);
    let applied: Vec<(String, ChangeAction)> = outcome
        .facts
        .applied
        .iter()
        .map(|c| (c.object.clone(), c.action))
        .collect();
    assert_eq!(
        applied,
        [
            (
                "ConfigMap/web-config (namespace shop)".into(),
                ChangeAction::Created
            ),
            ("Service/web (namespace shop)".into(), ChangeAction::Created),
            (
                "Deployment/web (namespace shop)".into(),
                ChangeAction::Created
            ),
        ]
    );
    // Server-side apply with the gantry field manager, in that order.
    let patches: Vec<String> = h
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .filter(|r| {
            ["/configmaps/", "/services/", "/deployments/"]
                .iter()
                .any(|kind| r.path.contains(kind))
        })
        .map(|r| {
            assert_eq!(
                r.content_type.as_deref(),
                Some("application/apply-patch+yaml")
            );
            assert!(r.query.contains("fieldManager=gantry"), "{}", r.query);
            r.path.clone()
        })
        .collect();
    let position = |needle: &str| patches.iter().position(|p| p.contains(needle)).unwrap();
    assert!(position("/configmaps/web-config") < position("/services/web"));
    assert!(position("/services/web") < position("/deployments/web"));
    let stored = h.object("apps/v1", "Deployment", "web").unwrap();
    assert!(stored["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["manager"] == "gantry" && m["operation"] == "Apply"));
    assert_eq!(h.history(), [(1, ReleaseStatus::Deployed)]);
    assert_eq!(outcome.facts.release, Some(1));
    assert_eq!(outcome.facts.previous_release, None);
    let workloads = &outcome.facts.workloads;
    assert_eq!(workloads.len(), 1);
    assert_eq!(workloads[0].status, "complete");
    // The lock is handed back: the next run takes it at once.
    assert_eq!(h.lease_holder(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_release_prunes_by_inventory_and_supersedes_the_first() {
    let h = Harness::new().await;
    let mut first = release_objects("127.0.0.1:1/web:v1", "a");
    first.insert(1, service("legacy"));
    assert_succeeded(&h.deploy(first).await, &h.log);
    // An object gantry never applied, carrying the same labels: never pruned.
    h.fake
        .put_object(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "someone-elses", "namespace": NS}, "data": {"x": "1"}}));
    let outcome = h.deploy(release_objects("127.0.0.1:1/web:v2", "b")).await;
    assert_succeeded(&outcome, &h.log);
    assert_eq!(outcome.facts.pruned, ["Service/legacy (namespace shop)"]);
    assert!(h.object("v1", "Service", "legacy").is_none());
    assert!(h.object("v1", "ConfigMap", "someone-elses").is_some());
    assert_eq!(h.image_of("web"), "127.0.0.1:1/web:v2");
    assert_eq!(
        h.history(),
        [(1, ReleaseStatus::Superseded), (2, ReleaseStatus::Deployed)]
    );
    assert_eq!(outcome.facts.previous_release, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerunning_the_same_release_changes_nothing_in_the_cluster() {
    let h = Harness::new().await;
    let objects = release_objects("127.0.0.1:1/web:v1", "a");
    assert_succeeded(&h.deploy(objects.clone()).await, &h.log);
    let before = h.object("apps/v1", "Deployment", "web").unwrap();
    let replica_sets_before = h.fake.list("apps/v1", "ReplicaSet").len();
    let secrets_before = h.fake.list("v1", "Secret");
    let outcome = h.deploy(objects).await;
    assert_succeeded(&outcome, &h.log);
    assert!(
        outcome
            .facts
            .applied
            .iter()
            .all(|c| c.action == ChangeAction::Unchanged),
        "{:?}",
        outcome.facts.applied
    );
    assert!(!outcome.changed);
    assert_eq!(outcome.facts.release, Some(1));
    let after = h.object("apps/v1", "Deployment", "web").unwrap();
    assert_eq!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    assert_eq!(
        after["metadata"]["generation"],
        before["metadata"]["generation"]
    );
    assert_eq!(
        after["metadata"]["managedFields"],
        before["metadata"]["managedFields"]
    );
    assert_eq!(
        h.fake.list("apps/v1", "ReplicaSet").len(),
        replica_sets_before
    );
    // No new release record: the release records are exactly as they were.
    assert_eq!(h.fake.list("v1", "Secret"), secrets_before);
    assert_eq!(h.history(), [(1, ReleaseStatus::Deployed)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_restores_objects_someone_changed_by_hand() {
    let h = Harness::new().await;
    let objects = release_objects("127.0.0.1:1/web:v1", "a");
    assert_succeeded(&h.deploy(objects.clone()).await, &h.log);
    let mut edited = h.object("v1", "Service", "web").unwrap();
    edited["spec"]["ports"][0]["targetPort"] = json!(9999);
    h.fake.put_object(edited);
    let outcome = h.deploy(objects).await;
    assert_succeeded(&outcome, &h.log);
    assert_eq!(
        h.object("v1", "Service", "web").unwrap()["spec"]["ports"][0]["targetPort"],
        8080
    );
    assert!(h.log.contents().contains("had drifted from release 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_a_cancelled_release_are_pruned_by_the_next_deploy() {
    let h = Harness::new().await;
    assert_succeeded(
        &h.deploy(release_objects("127.0.0.1:1/web:v1", "a")).await,
        &h.log,
    );
    h.fake.set_image_behavior("web:slow", Behavior::NeverReady);
    h.fake.set_time_factor(1.0);
    let mut second = release_objects("127.0.0.1:1/web:slow", "b");
    second.push(service("left-by-cancelled-run"));
    let handle = &h.cancel_handle;
    let cancel_soon = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        handle.cancel();
    };
    let (cancelled, ()) = tokio::join!(h.deploy(second), cancel_soon);
    assert!(
        matches!(cancelled.ending, Ending::Failed { .. }),
        "{:?}",
        cancelled.ending
    );
    assert!(h.object("v1", "Service", "left-by-cancelled-run").is_some());
    let h2 = Harness {
        cancel: Cancel::never(),
        ..h
    };
    let outcome = h2.deploy(release_objects("127.0.0.1:1/web:v3", "c")).await;
    assert_succeeded(&outcome, &h2.log);
    assert!(
        h2.object("v1", "Service", "left-by-cancelled-run")
            .is_none(),
        "{:?}\n{}",
        outcome.facts.pruned,
        h2.log.contents()
    );
    assert_eq!(
        h2.history(),
        [
            (1, ReleaseStatus::Superseded),
            (2, ReleaseStatus::Failed),
            (3, ReleaseStatus::Deployed)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_image_fails_fast_and_every_resource_is_rolled_back() {
    let h = Harness::new().await;
    assert_succeeded(
        &h.deploy(release_objects("127.0.0.1:1/web:v1", "a")).await,
        &h.log,
    );
    h.fake
        .set_image_behavior("web:broken", Behavior::ImagePullError);
    let mut second = release_objects("127.0.0.1:1/web:broken", "b");
    second.push(service("added-by-v2"));
    let started = std::time::Instant::now();
    let outcome = h.deploy(second).await;
    let Ending::RolledBack { reason, message } = &outcome.ending else {
        panic!(
            "expected a rollback, got {:?}\n{}",
            outcome.ending,
            h.log.contents()
        );
    };
    assert_eq!(reason, "rollout-failed");
    assert!(message.contains("release 1 is restored"), "{message}");
    // Fail fast: long before the 60 s progress deadline.
    assert!(started.elapsed() < Duration::from_secs(20));
    let failure = outcome.facts.failure.as_ref().unwrap();
    assert!(
        failure.reason == "ImagePullBackOff" || failure.reason == "ErrImagePull",
        "{failure:?}"
    );
    assert!(failure.pod.is_some());
    assert_eq!(failure.container.as_deref(), Some("web"));
    assert!(!failure.events.is_empty(), "{failure:?}");
    // Every kind restored, and what v2 added deleted.
    assert_eq!(h.image_of("web"), "127.0.0.1:1/web:v1");
    assert_eq!(
        h.object("v1", "ConfigMap", "web-config").unwrap()["data"]["setting"],
        "a"
    );
    assert!(h.object("v1", "Service", "added-by-v2").is_none());
    let rollback = outcome.facts.rollback.as_ref().unwrap();
    assert_eq!(rollback.to_release, Some(1));
    assert_eq!(rollback.from_release, Some(2));
    assert_eq!(rollback.deleted, ["Service/added-by-v2 (namespace shop)"]);
    assert_eq!(rollback.error, None);
    assert_eq!(
        h.history(),
        [(1, ReleaseStatus::Deployed), (2, ReleaseStatus::RolledBack)]
    );
    assert_eq!(h.lease_holder(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_is_reported_with_the_log_of_the_crashed_container() {
    let h = Harness::new().await;
    assert_succeeded(
        &h.deploy(release_objects("127.0.0.1:1/web:v1", "a")).await,
        &h.log,
    );
    h.fake.set_image_behavior("web:crash", Behavior::CrashLoop);
    let outcome = h
        .deploy(release_objects("127.0.0.1:1/web:crash", "a"))
        .await;
    assert!(
        matches!(outcome.ending, Ending::RolledBack { .. }),
        "{:?}",
        outcome.ending
    );
    let failure = outcome.facts.failure.unwrap();
    assert!(
        failure.reason.contains("CrashLoopBackOff") || failure.reason.contains("Restart"),
        "{failure:?}"
    );
    assert!(!failure.log_tail.is_empty(), "{failure:?}");
    assert_eq!(h.image_of("web"), "127.0.0.1:1/web:v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_release_is_removed_entirely() {
    let h = Harness::new().await;
    h.fake
        .set_image_behavior("web:broken", Behavior::ImagePullError);
    let outcome = h
        .deploy(release_objects("127.0.0.1:1/web:broken", "a"))
        .await;
    let Ending::RolledBack { message, .. } = &outcome.ending else {
        panic!("{:?}", outcome.ending);
    };
    assert!(message.contains("first release was removed"), "{message}");
    assert!(h.object("apps/v1", "Deployment", "web").is_none());
    assert!(h.object("v1", "Service", "web").is_none());
    assert!(h.object("v1", "ConfigMap", "web-config").is_none());
    assert_eq!(h.history(), [(1, ReleaseStatus::RolledBack)]);
    assert_eq!(outcome.facts.rollback.unwrap().to_release, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_rollback_off_the_failed_release_stays_and_the_run_says_so() {
    let mut h = Harness::new().await;
    h.settings.rollback = false;
    assert_succeeded(
        &h.deploy(release_objects("127.0.0.1:1/web:v1", "a")).await,
        &h.log,
    );
    h.fake
        .set_image_behavior("web:broken", Behavior::ImagePullError);
    let outcome = h
        .deploy(release_objects("127.0.0.1:1/web:broken", "b"))
        .await;
    let Ending::Failed { reason, message } = &outcome.ending else {
        panic!("{:?}", outcome.ending);
    };
    assert_eq!(reason, "rollout-failed");
    assert!(message.contains("rollback is off"), "{message}");
    assert_eq!(h.image_of("web"), "127.0.0.1:1/web:broken");
    assert_eq!(
        h.history(),
        [(1, ReleaseStatus::Deployed), (2, ReleaseStatus::Failed)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollback_command_restores_a_chosen_release_as_a_new_one() {
    let h = Harness::new().await;
    let mut first = release_objects("127.0.0.1:1/web:v1", "a");
    first.push(service("only-in-v1"));
    assert_succeeded(&h.deploy(first).await, &h.log);
    assert_succeeded(
        &h.deploy(release_objects("127.0.0.1:1/web:v2", "b")).await,
        &h.log,
    );
    let outcome = h.engine().rollback(Some(1), &Origin::default()).await;
    assert_succeeded(&outcome, &h.log);
    assert_eq!(outcome.facts.release, Some(3));
    assert_eq!(h.image_of("web"), "127.0.0.1:1/web:v1");
    assert!(h.object("v1", "Service", "only-in-v1").is_some());
    assert_eq!(
        h.history(),
        [
            (1, ReleaseStatus::Superseded),
            (2, ReleaseStatus::Superseded),
            (3, ReleaseStatus::Deployed)
        ]
    );
    // A release that never deployed cannot be restored; the history says which exist, and
    // nothing is written (not even the lock).
    h.fake.clear_requests();
    let refused = h.engine().rollback(Some(9), &Origin::default()).await;
    assert!(
        h.fake.requests().iter().all(|r| r.method == "GET"),
        "{:?}",
        h.fake.requests()
    );
    let Ending::Failed { message, .. } = refused.ending else {
        panic!()
    };
    assert!(message.contains("releases 1, 2, 3"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_lock_holder_makes_the_run_wait_then_fail_naming_it() {
    let h = Harness::new().await;
    let now = k8s_openapi::jiff::Timestamp::now();
    let lease = release::lease::taken(
        &release::lease_name("dev"),
        NS,
        "dev",
        "octocat https://github.com/o/r/actions/runs/7 #abc",
        now,
        None,
    );
    h.fake
        .put_object(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}));
    let mut value = serde_json::to_value(lease).unwrap();
    value["apiVersion"] = json!("coordination.k8s.io/v1");
    value["kind"] = json!("Lease");
    h.fake.put_object(value);
    let outcome = h.deploy(release_objects("127.0.0.1:1/web:v1", "a")).await;
    let Ending::Failed { reason, message } = &outcome.ending else {
        panic!("{:?}", outcome.ending);
    };
    assert_eq!(reason, "locked");
    assert!(
        message.contains("octocat https://github.com/o/r/actions/runs/7"),
        "{message}"
    );
    assert!(h.object("apps/v1", "Deployment", "web").is_none());
    assert!(h
        .log
        .contents()
        .contains("waiting for the environment lock"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lock_is_taken_over() {
    let h = Harness::new().await;
    let long_ago = k8s_openapi::jiff::Timestamp::now()
        .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(600))
        .unwrap();
    let lease = release::lease::taken(
        &release::lease_name("dev"),
        NS,
        "dev",
        "a killed run",
        long_ago,
        None,
    );
    h.fake
        .put_object(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}));
    let mut value = serde_json::to_value(lease).unwrap();
    value["apiVersion"] = json!("coordination.k8s.io/v1");
    value["kind"] = json!("Lease");
    h.fake.put_object(value);
    let outcome = h.deploy(release_objects("127.0.0.1:1/web:v1", "a")).await;
    assert_succeeded(&outcome, &h.log);
    assert!(h
        .log
        .contents()
        .contains("took over the environment lock from a killed run"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_owned_by_another_manager_is_a_clear_conflict_unless_forced() {
    let mut h = Harness::new().await;
    assert_succeeded(
        &h.deploy(release_objects("127.0.0.1:1/web:v1", "a")).await,
        &h.log,
    );
    // Someone edits the ConfigMap with kubectl (another field manager, same field).
    let mut edited = h.object("v1", "ConfigMap", "web-config").unwrap();
    edited["data"]["setting"] = json!("hand-edited");
    let managed = json!([{"manager": "kubectl-edit", "operation": "Update", "apiVersion": "v1",
        "time": "2026-11-23T00:00:00Z", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:data": {"f:setting": {}}}}]);
    edited["metadata"]["managedFields"] = managed;
    h.fake.put_object(edited);
    let outcome = h.deploy(release_objects("127.0.0.1:1/web:v1", "b")).await;
    let Ending::Failed { message, .. } = &outcome.ending else {
        panic!("{:?}\n{}", outcome.ending, h.log.contents());
    };
    assert!(message.contains("kubectl-edit"), "{message}");
    assert!(message.contains("force-conflicts"), "{message}");
    assert_eq!(
        h.object("v1", "ConfigMap", "web-config").unwrap()["data"]["setting"],
        "hand-edited"
    );
    h.settings.force_conflicts = true;
    let forced = h.deploy(release_objects("127.0.0.1:1/web:v1", "b")).await;
    assert_succeeded(&forced, &h.log);
    assert_eq!(
        h.object("v1", "ConfigMap", "web-config").unwrap()["data"]["setting"],
        "b"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_invalid_object_among_valid_ones_stops_the_deploy_before_anything_is_applied() {
    let h = Harness::new().await;
    let mut objects = release_objects("127.0.0.1:1/web:v1", "a");
    h.fake
        .put_object(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}));
    objects.push(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "broken", "namespace": NS},
        "spec": {"selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "y"}},
                "spec": {"containers": [{"name": "c"}]}}}}));
    let outcome = h.deploy(objects).await;
    let Ending::Failed { reason, message } = &outcome.ending else {
        panic!("{:?}", outcome.ending);
    };
    assert_eq!(reason, "preflight-failed");
    assert!(message.contains("Deployment/broken"), "{message}");
    assert!(
        message.contains("spec.template.spec.containers[0].image"),
        "{message}"
    );
    assert!(message.contains("selector"), "{message}");
    assert!(h.object("v1", "ConfigMap", "web-config").is_none());
    assert!(h.object("apps/v1", "Deployment", "web").is_none());
    assert!(h.history().is_empty());
    assert!(!outcome.changed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_verb_is_listed_with_the_rule_that_grants_it() {
    let h = Harness::new().await;
    h.fake.deny("patch", "apps", "deployments", Some(NS));
    h.fake
        .deny("create", "coordination.k8s.io", "leases", Some(NS));
    let outcome = h.deploy(release_objects("127.0.0.1:1/web:v1", "a")).await;
    let Ending::Failed { reason, message } = &outcome.ending else {
        panic!("{:?}", outcome.ending);
    };
    assert_eq!(reason, "preflight-failed");
    assert!(
        message.contains("may not patch deployments in namespace shop"),
        "{message}"
    );
    assert!(
        message.contains("resources: [\"deployments\"], verbs: [\"patch\"]"),
        "{message}"
    );
    assert!(message.contains("may not create leases"), "{message}");
    assert!(
        message.contains("system:serviceaccount:ci:gantry"),
        "{message}"
    );
    assert!(h.object("v1", "ConfigMap", "web-config").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_api_errors_are_retried() {
    let h = Harness::new().await;
    h.fake.fail_next(
        RequestMatcher::any()
            .method("PATCH")
            .path_contains("/deployments/web"),
        2,
        Fault::Status(503),
    );
    h.fake.fail_next(
        RequestMatcher::any()
            .method("PATCH")
            .path_contains("/configmaps/web-config"),
        1,
        Fault::TooManyRequests {
            retry_after_seconds: 1,
        },
    );
    h.fake.fail_next(
        RequestMatcher::any()
            .method("GET")
            .path_contains("/services/web"),
        1,
        Fault::Reset,
    );
    let outcome = h.deploy(release_objects("127.0.0.1:1/web:v1", "a")).await;
    assert_succeeded(&outcome, &h.log);
    assert_eq!(h.image_of("web"), "127.0.0.1:1/web:v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_survives_expired_watches() {
    let h = Harness::new().await;
    h.fake.set_step_delay(Duration::from_millis(150));
    let fake = &h.fake;
    let expire = async {
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            fake.compact();
            fake.expire_watches();
        }
    };
    let (outcome, ()) = tokio::join!(h.deploy(release_objects("127.0.0.1:1/web:v1", "a")), expire);
    assert_succeeded(&outcome, &h.log);
    assert_eq!(outcome.facts.workloads[0].status, "complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_rollout_is_recorded_failed_and_the_lock_released() {
    let h = Harness::new().await;
    h.fake.set_default_behavior(Behavior::NeverReady);
    // Real time: the 60 s progress deadline must not end the rollout before the cancel.
    h.fake.set_time_factor(1.0);
    let handle = &h.cancel_handle;
    let cancel_soon = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        handle.cancel();
    };
    let (outcome, ()) = tokio::join!(
        h.deploy(release_objects("127.0.0.1:1/web:v1", "a")),
        cancel_soon
    );
    let Ending::Failed { reason, message } = &outcome.ending else {
        panic!("{:?}", outcome.ending);
    };
    assert_eq!(reason, "cancelled");
    assert!(message.contains("partly rolled out"), "{message}");
    assert_eq!(h.history(), [(1, ReleaseStatus::Failed)]);
    assert_eq!(h.lease_holder(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_reports_creates_changed_fields_and_prunes_and_writes_nothing() {
    let h = Harness::new().await;
    let mut first = release_objects("127.0.0.1:1/web:v1", "a");
    first.push(service("legacy"));
    assert_succeeded(&h.deploy(first).await, &h.log);
    let before = h.fake.resource_version();
    h.fake.clear_requests();
    let mut next = release_objects("127.0.0.1:1/web:v2", "a");
    next.push(config_map("new-config", "x"));
    let outcome = h.engine().plan(&next).await;
    assert_succeeded(&outcome, &h.log);
    let planned: Vec<(String, PlannedAction, Vec<String>)> = outcome
        .facts
        .dry_run
        .unwrap()
        .into_iter()
        .map(|c| (c.object, c.action, c.fields))
        .collect();
    assert!(
        planned.contains(&(
            "Deployment/web (namespace shop)".into(),
            PlannedAction::Change,
            vec!["spec.template.spec.containers[name=web].image".into()]
        )),
        "{planned:?}"
    );
    assert!(planned.contains(&(
        "ConfigMap/web-config (namespace shop)".into(),
        PlannedAction::Unchanged,
        vec![]
    )));
    assert!(planned.contains(&(
        "ConfigMap/new-config (namespace shop)".into(),
        PlannedAction::Create,
        vec![]
    )));
    assert!(planned.contains(&(
        "Service/legacy (namespace shop)".into(),
        PlannedAction::Prune,
        vec![]
    )));
    assert_eq!(h.fake.resource_version(), before, "a plan must not write");
    assert!(h
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .all(|r| r.query.contains("dryRun=All")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_lists_releases_newest_first() {
    let h = Harness::new().await;
    for image in ["v1", "v2", "v3"] {
        assert_succeeded(
            &h.deploy(release_objects(&format!("127.0.0.1:1/web:{image}"), image))
                .await,
            &h.log,
        );
    }
    let outcome = h.engine().history().await;
    let listed: Vec<(u64, String)> = outcome
        .facts
        .history
        .iter()
        .map(|r| (r.release, r.status.clone()))
        .collect();
    assert_eq!(
        listed,
        [
            (3, "deployed".to_string()),
            (2, "superseded".to_string()),
            (1, "superseded".to_string())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_trimmed_but_the_current_release_is_kept() {
    let mut h = Harness::new().await;
    h.settings.history_max = 2;
    for image in ["v1", "v2", "v3", "v4"] {
        assert_succeeded(
            &h.deploy(release_objects(&format!("127.0.0.1:1/web:{image}"), image))
                .await,
            &h.log,
        );
    }
    assert_eq!(
        h.history(),
        [(3, ReleaseStatus::Superseded), (4, ReleaseStatus::Deployed)]
    );
}
