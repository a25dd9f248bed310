//! The deploy verbs against the test bed's real cluster (API server, controllers, kubelet on containerd), as the least-privilege deployer, through a proxy that records requests and injects faults: apply order, releases, pruning, the environment lock, rollout tracking with fail-fast on real pod failures, automatic rollback of every resource, plan, history, pre-flight, and the cluster state each failure leaves behind.

mod support;

use std::sync::Arc;
use std::time::Duration;

use gantry::adapters::kube::Cluster;
use gantry::app::deploy::{Ending, Engine, Live, Origin};
use gantry::cancel::Cancel;
use gantry::pipeline::facts::{ChangeAction, PlannedAction};
use gantry::release::{self, ReleaseStatus};
use serde_json::{json, Value};
use support::apiproxy::{Fault, Matcher};
use support::cluster::{crashing_container, web_container};
use support::deploy::{
    assert_succeeded, config_map, missing_image, release_with, service, web, Harness, ENV,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_deploy_applies_in_dependency_order_and_records_release_1() {
    let h = Harness::new("flow-first").await;
    let outcome = h.deploy(h.release("v1", "a").await).await;
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
            (h.named("ConfigMap", "web-config"), ChangeAction::Created),
            (h.named("Service", "web"), ChangeAction::Created),
            (h.named("Deployment", "web"), ChangeAction::Created),
        ]
    );
    // Server-side apply with the gantry field manager, in that order.
    let patches: Vec<String> = h
        .proxy
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && !r.query.contains("dryRun"))
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
    let stored = h.object("apps/v1", "Deployment", "web").await.unwrap();
    assert!(stored["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["manager"] == "gantry" && m["operation"] == "Apply"));
    // Really rolled out: both pods of the new ReplicaSet are ready.
    assert_eq!(stored["status"]["readyReplicas"], 2, "{stored}");
    assert_eq!(h.history().await, [(1, ReleaseStatus::Deployed)]);
    assert_eq!(outcome.facts.release, Some(1));
    assert_eq!(outcome.facts.previous_release, None);
    let workloads = &outcome.facts.workloads;
    assert_eq!(workloads.len(), 1);
    assert_eq!(workloads[0].status, "complete");
    // The lock is handed back: the next run takes it at once.
    assert_eq!(h.lease_holder().await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_release_prunes_by_inventory_and_supersedes_the_first() {
    let h = Harness::new("flow-prune").await;
    let mut first = h.release("v1", "a").await;
    first.insert(1, service(h.ns(), "legacy"));
    assert_succeeded(&h.deploy(first).await, &h.log);
    // An object gantry never applied, carrying the same labels: never pruned.
    h.cluster
        .apply(&json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "someone-elses", "namespace": h.ns()}, "data": {"x": "1"}}))
        .await;
    let outcome = h.deploy(h.release("v2", "b").await).await;
    assert_succeeded(&outcome, &h.log);
    assert_eq!(outcome.facts.pruned, [h.named("Service", "legacy")]);
    assert!(h.object("v1", "Service", "legacy").await.is_none());
    assert!(h.object("v1", "ConfigMap", "someone-elses").await.is_some());
    assert_eq!(h.image_of("web").await, web("v2").await);
    assert_eq!(
        h.history().await,
        [(1, ReleaseStatus::Superseded), (2, ReleaseStatus::Deployed)]
    );
    assert_eq!(outcome.facts.previous_release, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerunning_the_same_release_changes_nothing_in_the_cluster() {
    let h = Harness::new("flow-rerun").await;
    let objects = h.release("v1", "a").await;
    assert_succeeded(&h.deploy(objects.clone()).await, &h.log);
    let before = h.object("apps/v1", "Deployment", "web").await.unwrap();
    let replica_sets_before = h
        .cluster
        .list("apps/v1", "ReplicaSet", Some(h.ns()))
        .await
        .len();
    let secrets = |list: Vec<Value>| -> Vec<(Value, Value)> {
        list.into_iter()
            .map(|s| {
                (
                    s["metadata"]["name"].clone(),
                    s["metadata"]["resourceVersion"].clone(),
                )
            })
            .collect()
    };
    let secrets_before = secrets(h.cluster.list("v1", "Secret", Some(h.ns())).await);
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
    let after = h.object("apps/v1", "Deployment", "web").await.unwrap();
    for field in ["resourceVersion", "generation", "managedFields"] {
        assert_eq!(
            after["metadata"][field], before["metadata"][field],
            "{field}"
        );
    }
    assert_eq!(
        h.cluster
            .list("apps/v1", "ReplicaSet", Some(h.ns()))
            .await
            .len(),
        replica_sets_before
    );
    // No new release record: the release records are exactly as they were.
    assert_eq!(
        secrets(h.cluster.list("v1", "Secret", Some(h.ns())).await),
        secrets_before
    );
    assert_eq!(h.history().await, [(1, ReleaseStatus::Deployed)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_recreates_an_object_someone_deleted() {
    let h = Harness::new("flow-drift").await;
    let objects = h.release("v1", "a").await;
    assert_succeeded(&h.deploy(objects.clone()).await, &h.log);
    h.cluster.delete("v1", "Service", Some(h.ns()), "web").await;
    h.cluster
        .wait_for(
            "v1",
            "Service",
            Some(h.ns()),
            "web",
            Duration::from_secs(30),
            |s| s.is_none(),
        )
        .await;
    let outcome = h.deploy(objects).await;
    assert_succeeded(&outcome, &h.log);
    assert_eq!(
        h.object("v1", "Service", "web").await.unwrap()["spec"]["ports"][0]["targetPort"],
        8080
    );
    assert!(h.log.contents().contains("had drifted from release 1"));
    assert_eq!(h.history().await, [(1, ReleaseStatus::Deployed)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_a_cancelled_release_are_pruned_by_the_next_deploy() {
    let h = Harness::new("flow-cancel").await;
    assert_succeeded(&h.deploy(h.release("v1", "a").await).await, &h.log);
    // A release whose pods never become ready, cancelled while it rolls out.
    let mut never_ready = web_container("web", &web("v2").await);
    never_ready["readinessProbe"] = json!({"exec": {"command": ["false"]}, "periodSeconds": 1});
    let mut second = release_with(h.ns(), never_ready, "b");
    second.push(service(h.ns(), "left-by-cancelled-run"));
    let handle = &h.cancel_handle;
    let log = &h.log;
    let cancel_once_tracking = async {
        while !log.contents().contains("release 2: applying") {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        handle.cancel();
    };
    let (cancelled, ()) = tokio::join!(h.deploy(second), cancel_once_tracking);
    assert!(
        matches!(&cancelled.ending, Ending::Failed { reason, .. } if reason == "cancelled"),
        "{:?}",
        cancelled.ending
    );
    assert!(h
        .object("v1", "Service", "left-by-cancelled-run")
        .await
        .is_some());
    let h2 = Harness {
        cancel: Cancel::never(),
        ..h
    };
    let outcome = h2.deploy(h2.release("v3", "c").await).await;
    assert_succeeded(&outcome, &h2.log);
    assert!(
        h2.object("v1", "Service", "left-by-cancelled-run")
            .await
            .is_none(),
        "{:?}\n{}",
        outcome.facts.pruned,
        h2.log.contents()
    );
    assert_eq!(
        h2.history().await,
        [
            (1, ReleaseStatus::Superseded),
            (2, ReleaseStatus::Failed),
            (3, ReleaseStatus::Deployed)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_image_fails_fast_and_every_resource_is_rolled_back() {
    let h = Harness::new("flow-pull").await;
    let v1 = web("v1").await;
    assert_succeeded(&h.deploy(h.release("v1", "a").await).await, &h.log);
    let mut second = release_with(h.ns(), web_container("web", &missing_image()), "b");
    second.push(service(h.ns(), "added-by-v2"));
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
    // Fail fast: long before the 120 s progress deadline.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let failure = outcome.facts.failure.as_ref().unwrap();
    assert!(
        failure.reason == "ImagePullBackOff" || failure.reason == "ErrImagePull",
        "{failure:?}"
    );
    assert!(failure.pod.is_some());
    assert_eq!(failure.container.as_deref(), Some("web"));
    // The kubelet's own events say why.
    assert!(
        failure.events.iter().any(|e| e.contains("pull")),
        "{failure:?}"
    );
    // Every kind restored, and what v2 added deleted.
    assert_eq!(h.image_of("web").await, v1);
    assert_eq!(
        h.object("v1", "ConfigMap", "web-config").await.unwrap()["data"]["setting"],
        "a"
    );
    assert!(h.object("v1", "Service", "added-by-v2").await.is_none());
    let rollback = outcome.facts.rollback.as_ref().unwrap();
    assert_eq!(rollback.to_release, Some(1));
    assert_eq!(rollback.from_release, Some(2));
    assert_eq!(rollback.deleted, [h.named("Service", "added-by-v2")]);
    assert_eq!(rollback.error, None);
    assert_eq!(
        h.history().await,
        [(1, ReleaseStatus::Deployed), (2, ReleaseStatus::RolledBack)]
    );
    assert_eq!(h.lease_holder().await, None);
    let deployment = h.object("apps/v1", "Deployment", "web").await.unwrap();
    assert_eq!(deployment["status"]["readyReplicas"], 2, "{deployment}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_is_reported_with_the_log_of_the_crashed_container() {
    let h = Harness::new("flow-crash").await;
    let v1 = web("v1").await;
    assert_succeeded(&h.deploy(h.release("v1", "a").await).await, &h.log);
    let crashing = release_with(h.ns(), crashing_container("web", &v1), "a");
    let outcome = h.deploy(crashing).await;
    assert!(
        matches!(outcome.ending, Ending::RolledBack { .. }),
        "{:?}\n{}",
        outcome.ending,
        h.log.contents()
    );
    let failure = outcome.facts.failure.unwrap();
    assert!(
        failure.reason.contains("CrashLoopBackOff") || failure.reason.contains("Restart"),
        "{failure:?}"
    );
    assert!(
        failure
            .log_tail
            .iter()
            .any(|l| l.contains("fatal: cannot open /config/app.toml")),
        "{failure:?}"
    );
    assert!(
        failure.message.contains("exit code 3") || failure.message.contains("3"),
        "{failure:?}"
    );
    assert_eq!(h.image_of("web").await, v1);
    let restored = h.object("apps/v1", "Deployment", "web").await.unwrap();
    assert!(
        restored["spec"]["template"]["spec"]["containers"][0]["command"][2]
            .as_str()
            .unwrap()
            .contains("httpd")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_release_is_removed_entirely() {
    let h = Harness::new("flow-first-fail").await;
    let outcome = h
        .deploy(release_with(
            h.ns(),
            web_container("web", &missing_image()),
            "a",
        ))
        .await;
    let Ending::RolledBack { message, .. } = &outcome.ending else {
        panic!("{:?}\n{}", outcome.ending, h.log.contents());
    };
    assert!(message.contains("first release was removed"), "{message}");
    assert!(h.object("apps/v1", "Deployment", "web").await.is_none());
    assert!(h.object("v1", "Service", "web").await.is_none());
    assert!(h.object("v1", "ConfigMap", "web-config").await.is_none());
    assert_eq!(h.history().await, [(1, ReleaseStatus::RolledBack)]);
    assert_eq!(outcome.facts.rollback.unwrap().to_release, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_rollback_off_the_failed_release_stays_and_the_run_says_so() {
    let mut h = Harness::new("flow-norollback").await;
    h.settings.rollback = false;
    assert_succeeded(&h.deploy(h.release("v1", "a").await).await, &h.log);
    let broken = missing_image();
    let outcome = h
        .deploy(release_with(h.ns(), web_container("web", &broken), "b"))
        .await;
    let Ending::Failed { reason, message } = &outcome.ending else {
        panic!("{:?}", outcome.ending);
    };
    assert_eq!(reason, "rollout-failed");
    assert!(message.contains("rollback is off"), "{message}");
    assert_eq!(h.image_of("web").await, broken);
    assert_eq!(
        h.history().await,
        [(1, ReleaseStatus::Deployed), (2, ReleaseStatus::Failed)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollback_command_restores_a_chosen_release_as_a_new_one() {
    let h = Harness::new("flow-rollback-cmd").await;
    let mut first = h.release("v1", "a").await;
    first.push(service(h.ns(), "only-in-v1"));
    assert_succeeded(&h.deploy(first).await, &h.log);
    assert_succeeded(&h.deploy(h.release("v2", "b").await).await, &h.log);
    let outcome = h.engine().rollback(Some(1), &Origin::default()).await;
    assert_succeeded(&outcome, &h.log);
    assert_eq!(outcome.facts.release, Some(3));
    assert_eq!(h.image_of("web").await, web("v1").await);
    assert!(h.object("v1", "Service", "only-in-v1").await.is_some());
    assert_eq!(
        h.history().await,
        [
            (1, ReleaseStatus::Superseded),
            (2, ReleaseStatus::Superseded),
            (3, ReleaseStatus::Deployed)
        ]
    );
    // A release that never deployed cannot be restored; the history says which exist, and
    // nothing is written (not even the lock).
    h.proxy.clear_requests();
    let refused = h.engine().rollback(Some(9), &Origin::default()).await;
    assert!(
        h.proxy.requests().iter().all(|r| r.method == "GET"),
        "{:?}",
        h.proxy.requests()
    );
    let Ending::Failed { message, .. } = refused.ending else {
        panic!()
    };
    assert!(message.contains("releases 1, 2, 3"), "{message}");
}

fn lease(
    ns: &str,
    holder: &str,
    renewed: k8s_openapi::jiff::Timestamp,
    duration: Duration,
) -> Value {
    let lease = release::lease::taken(
        &release::lease_name(ENV),
        ns,
        ENV,
        holder,
        renewed,
        duration,
        None,
    );
    let mut value = serde_json::to_value(lease).unwrap();
    value["apiVersion"] = json!("coordination.k8s.io/v1");
    value["kind"] = json!("Lease");
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_lock_holder_makes_the_run_wait_then_fail_naming_it() {
    let h = Harness::new("flow-locked").await;
    let holder = "octocat https://github.com/o/r/actions/runs/7 #abc";
    h.cluster
        .apply(&lease(
            h.ns(),
            holder,
            k8s_openapi::jiff::Timestamp::now(),
            Duration::from_secs(45),
        ))
        .await;
    let outcome = h.deploy(h.release("v1", "a").await).await;
    let Ending::Failed { reason, message } = &outcome.ending else {
        panic!("{:?}", outcome.ending);
    };
    assert_eq!(reason, "locked");
    assert!(
        message.contains("octocat https://github.com/o/r/actions/runs/7"),
        "{message}"
    );
    assert!(h.object("apps/v1", "Deployment", "web").await.is_none());
    assert!(h
        .log
        .contents()
        .contains("waiting for the environment lock"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lock_is_taken_over_after_its_duration_on_our_clock() {
    let mut h = Harness::new("flow-expired").await;
    h.settings.lock_timeout = Duration::from_secs(30);
    // A renewTime far in the future of our clock (another machine's skewed clock) says
    // nothing: the holder is gone once its Lease stays unchanged for its 3 s.
    let skewed = k8s_openapi::jiff::Timestamp::now()
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(3600))
        .unwrap();
    h.cluster
        .apply(&lease(
            h.ns(),
            "a killed run",
            skewed,
            Duration::from_secs(3),
        ))
        .await;
    let started = std::time::Instant::now();
    let outcome = h.deploy(h.release("v1", "a").await).await;
    assert_succeeded(&outcome, &h.log);
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(h
        .log
        .contents()
        .contains("took over the environment lock from a killed run"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_owned_by_another_manager_is_a_clear_conflict_unless_forced() {
    let mut h = Harness::new("flow-conflict").await;
    assert_succeeded(&h.deploy(h.release("v1", "a").await).await, &h.log);
    // Someone edits the ConfigMap (an Update by another field manager, same field).
    h.cluster
        .merge_patch_as(
            "kubectl-edit",
            "v1",
            "ConfigMap",
            Some(h.ns()),
            "web-config",
            json!({"data": {"setting": "hand-edited"}}),
        )
        .await;
    let outcome = h.deploy(h.release("v1", "b").await).await;
    let Ending::Failed { message, .. } = &outcome.ending else {
        panic!("{:?}\n{}", outcome.ending, h.log.contents());
    };
    assert!(message.contains("kubectl-edit"), "{message}");
    assert!(message.contains("force-conflicts"), "{message}");
    assert_eq!(
        h.object("v1", "ConfigMap", "web-config").await.unwrap()["data"]["setting"],
        "hand-edited"
    );
    h.settings.force_conflicts = true;
    let forced = h.deploy(h.release("v1", "b").await).await;
    assert_succeeded(&forced, &h.log);
    assert_eq!(
        h.object("v1", "ConfigMap", "web-config").await.unwrap()["data"]["setting"],
        "b"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_invalid_object_among_valid_ones_stops_the_deploy_before_anything_is_applied() {
    let h = Harness::new("flow-invalid").await;
    let mut objects = h.release("v1", "a").await;
    objects.push(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "broken", "namespace": h.ns()},
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
    assert!(h.object("v1", "ConfigMap", "web-config").await.is_none());
    assert!(h.object("apps/v1", "Deployment", "web").await.is_none());
    assert!(h.history().await.is_empty());
    assert!(!outcome.changed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_verb_is_listed_with_the_rule_that_grants_it() {
    let h = Harness::new("flow-rbac").await;
    let ns = h.ns().to_string();
    // An identity that may do everything a release needs here except patch Deployments and
    // create Leases: real RBAC answers the access reviews.
    h.cluster
        .apply(&json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "limited", "namespace": ns}}))
        .await;
    h.cluster
        .apply(&json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "limited", "namespace": ns},
            "rules": [
                {"apiGroups": ["", "apps", "batch"], "resources": ["configmaps", "services", "secrets", "pods", "pods/log", "events", "replicasets", "controllerrevisions", "statefulsets", "daemonsets", "jobs"],
                 "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
                {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch", "create", "delete"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "update"]}
            ]}))
        .await;
    h.cluster
        .apply(
            &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "limited", "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "limited"},
            "subjects": [{"kind": "ServiceAccount", "name": "limited", "namespace": ns}]}),
        )
        .await;
    let token = h
        .cluster
        .kubectl(&["-n", &ns, "create", "token", "limited", "--duration", "1h"]);
    let identity = format!("system:serviceaccount:{ns}:limited");
    let limited = Arc::new(Cluster::new(h.proxy.client(token.trim()).await, &identity));
    let engine = Engine {
        target: Live::new(limited),
        ..h.engine()
    };
    let outcome = engine
        .deploy(h.release("v1", "a").await, &Origin::default())
        .await;
    let Ending::Failed { reason, message } = &outcome.ending else {
        panic!("{:?}\n{}", outcome.ending, h.log.contents());
    };
    assert_eq!(reason, "preflight-failed");
    assert!(
        message.contains(&format!("may not patch deployments in namespace {ns}")),
        "{message}"
    );
    assert!(
        message.contains("resources: [\"deployments\"], verbs: [\"patch\"]"),
        "{message}"
    );
    assert!(message.contains("may not create leases"), "{message}");
    assert!(message.contains(&identity), "{message}");
    assert!(h.object("v1", "ConfigMap", "web-config").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_api_errors_are_retried() {
    let h = Harness::new("flow-faults").await;
    let objects = h.release("v1", "a").await;
    h.proxy.fail_next(
        Matcher::any()
            .method("PATCH")
            .path_contains("/deployments/web"),
        2,
        Fault::Status(503),
    );
    h.proxy.fail_next(
        Matcher::any()
            .method("PATCH")
            .path_contains("/configmaps/web-config"),
        1,
        Fault::TooManyRequests {
            retry_after_seconds: 1,
        },
    );
    h.proxy.fail_next(
        Matcher::any()
            .method("PATCH")
            .path_contains("/services/web"),
        1,
        Fault::Reset,
    );
    let outcome = h.deploy(objects).await;
    assert_succeeded(&outcome, &h.log);
    assert_eq!(h.image_of("web").await, web("v1").await);
    let injected = h
        .proxy
        .requests()
        .iter()
        .filter(|r| r.fault.is_some())
        .count();
    assert!(injected >= 3, "{:?}", h.proxy.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_survives_expired_watches() {
    let h = Harness::new("flow-watch410").await;
    h.proxy.fail_next(
        Matcher::any().query_contains("watch=true"),
        6,
        Fault::WatchExpired,
    );
    let outcome = h.deploy(h.release("v1", "a").await).await;
    assert_succeeded(&outcome, &h.log);
    assert_eq!(outcome.facts.workloads[0].status, "complete");
    assert!(h
        .proxy
        .requests()
        .iter()
        .any(|r| r.fault.as_deref() == Some("WatchExpired")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_rollout_is_recorded_failed_and_the_lock_released() {
    let h = Harness::new("flow-cancel-first").await;
    let mut never_ready = web_container("web", &web("v1").await);
    never_ready["readinessProbe"] = json!({"exec": {"command": ["false"]}, "periodSeconds": 1});
    let handle = &h.cancel_handle;
    let log = &h.log;
    let cancel_once_applied = async {
        while !log.contents().contains("Deployment/web") {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        handle.cancel();
    };
    let (outcome, ()) = tokio::join!(
        h.deploy(release_with(h.ns(), never_ready, "a")),
        cancel_once_applied
    );
    let Ending::Failed { reason, message } = &outcome.ending else {
        panic!("{:?}", outcome.ending);
    };
    assert_eq!(reason, "cancelled");
    assert!(message.contains("partly rolled out"), "{message}");
    assert_eq!(h.history().await, [(1, ReleaseStatus::Failed)]);
    assert_eq!(h.lease_holder().await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_reports_creates_changed_fields_and_prunes_and_writes_nothing() {
    let h = Harness::new("flow-plan").await;
    let mut first = h.release("v1", "a").await;
    first.push(service(h.ns(), "legacy"));
    assert_succeeded(&h.deploy(first).await, &h.log);
    let versions = |objects: Vec<Value>| -> Vec<Value> {
        objects
            .iter()
            .map(|o| o["metadata"]["resourceVersion"].clone())
            .collect()
    };
    let before = versions(h.cluster.list("v1", "ConfigMap", Some(h.ns())).await);
    h.proxy.clear_requests();
    let mut next = h.release("v2", "a").await;
    next.push(config_map(h.ns(), "new-config", "x"));
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
            h.named("Deployment", "web"),
            PlannedAction::Change,
            vec!["spec.template.spec.containers[name=web].image".into()]
        )),
        "{planned:?}"
    );
    assert!(
        planned.contains(&(
            h.named("ConfigMap", "web-config"),
            PlannedAction::Unchanged,
            vec![]
        )),
        "{planned:?}"
    );
    assert!(planned.contains(&(
        h.named("ConfigMap", "new-config"),
        PlannedAction::Create,
        vec![]
    )));
    assert!(planned.contains(&(h.named("Service", "legacy"), PlannedAction::Prune, vec![])));
    assert_eq!(
        versions(h.cluster.list("v1", "ConfigMap", Some(h.ns())).await),
        before,
        "a plan must not write"
    );
    assert!(h.object("v1", "ConfigMap", "new-config").await.is_none());
    let requests = h.proxy.requests();
    assert!(requests
        .iter()
        .filter(|r| r.method != "GET")
        .all(|r| r.method == "PATCH" && r.query.contains("dryRun=All")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_lists_releases_newest_first() {
    let h = Harness::new("flow-history").await;
    for tag in ["v1", "v2", "v3"] {
        assert_succeeded(&h.deploy(h.release(tag, tag).await).await, &h.log);
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
    let mut h = Harness::new("flow-trim").await;
    h.settings.history_max = 2;
    for tag in ["v1", "v2", "v3", "v4"] {
        assert_succeeded(&h.deploy(h.release(tag, tag).await).await, &h.log);
    }
    assert_eq!(
        h.history().await,
        [(3, ReleaseStatus::Superseded), (4, ReleaseStatus::Deployed)]
    );
}
