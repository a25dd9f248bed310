//! Deploy semantics that never lose data, on the test bed's real cluster: identity across API versions, prune only after health and never of data holders, a rollback that deletes only what the failed run created, StatefulSet rollbacks that complete, CRDs shipped with their resources, paused Deployments and ReplicaFailure, rollbacks that leave autoscalers their replicas, immutable fields and replacement, namespace moves.

mod support;

use std::time::{Duration, Instant};

use gantry::app::deploy::{Ending, Outcome};
use gantry::pipeline::facts::PlannedAction;
use gantry::release::ReleaseStatus;
use serde_json::{json, Value};
use support::cluster::{crashing_container, unique_name, web_container, DEPLOYER};
use support::deploy::{assert_succeeded, config_map, web, Harness, ENV};

fn rolled_back(outcome: &Outcome, h: &Harness) -> (String, String) {
    match &outcome.ending {
        Ending::RolledBack { reason, message } => (reason.to_string(), message.clone()),
        other => panic!("expected a rollback, got {other:?}\n{}", h.log.contents()),
    }
}

/// Deploys release v2 and expects it refused before anything is applied, for `why`.
async fn refused_as_untrusted(h: &Harness, why: &str) {
    let outcome = h.deploy(h.release("v2", "b").await).await;
    let Ending::Failed { reason, message } = &outcome.ending else {
        panic!("{:?}\n{}", outcome.ending, h.log.contents());
    };
    assert_eq!(reason, "untrusted-record");
    assert!(message.contains(why), "{message}");
}

fn uid(object: &Option<Value>) -> String {
    object.as_ref().expect("exists")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string()
}

fn hpa(ns: &str, api_version: &str, min: u32) -> Value {
    let spec = if api_version == "autoscaling/v1" {
        json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": min, "maxReplicas": 5, "targetCPUUtilizationPercentage": 80})
    } else {
        json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": min, "maxReplicas": 5,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]})
    };
    json!({"apiVersion": api_version, "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": ns}, "spec": spec})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_version_change_is_an_update_never_a_prune() {
    let h = Harness::new("sem-version").await;
    let mut first = h.release("v1", "a").await;
    first.push(hpa(h.ns(), "autoscaling/v1", 2));
    assert_succeeded(&h.deploy(first).await, &h.log);
    let before = uid(&h
        .object("autoscaling/v2", "HorizontalPodAutoscaler", "web")
        .await);
    let mut second = h.release("v1", "a").await;
    second.push(hpa(h.ns(), "autoscaling/v2", 3));
    let outcome = h.deploy(second).await;
    assert_succeeded(&outcome, &h.log);
    assert!(
        outcome.facts.pruned.is_empty(),
        "{:?}",
        outcome.facts.pruned
    );
    let after = h
        .object("autoscaling/v2", "HorizontalPodAutoscaler", "web")
        .await;
    assert_eq!(uid(&after), before, "the same object, updated");
    assert_eq!(after.unwrap()["spec"]["minReplicas"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_deleted_before_health_and_a_bound_claim_keeps_its_data() {
    let h = Harness::new("sem-prune").await;
    let ns = h.ns().to_string();
    let image = web("v1").await;
    let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": ns},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    let mut writer = web_container("web", &image);
    writer["command"] = json!(["sh", "-c", "[ -f /data/token ] || echo precious-$(date +%s%N) > /data/token; trap 'exit 0' TERM; mkdir -p /tmp/www; echo ok > /tmp/www/index.html; httpd -f -p 8080 -h /tmp/www & wait"]);
    writer["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
    let mut deployment = support::cluster::deployment(&ns, "web", 1, writer);
    deployment["spec"]["template"]["spec"]["volumes"] =
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]);
    deployment["spec"]["strategy"] = json!({"type": "Recreate"});
    let first = vec![claim.clone(), config_map(&ns, "settings", "a"), deployment];
    assert_succeeded(&h.deploy(first.clone()).await, &h.log);
    let claim_uid = uid(&h.object("v1", "PersistentVolumeClaim", "data").await);
    let settings_uid = uid(&h.object("v1", "ConfigMap", "settings").await);
    assert_eq!(
        h.object("v1", "PersistentVolumeClaim", "data")
            .await
            .unwrap()["status"]["phase"],
        "Bound"
    );
    let read_token = || {
        h.cluster
            .kubectl(&["-n", &ns, "exec", "deploy/web", "--", "cat", "/data/token"])
    };
    let token = read_token();
    assert!(token.starts_with("precious-"), "{token}");

    // Release 2 drops the claim and the ConfigMap and crash-loops: nothing of release 1 may
    // be deleted before release 2 is proven healthy, so both survive with their identity.
    let mut crashing =
        support::cluster::deployment(&ns, "web", 1, crashing_container("web", &image));
    crashing["spec"]["strategy"] = json!({"type": "Recreate"});
    let outcome = h.deploy(vec![crashing]).await;
    rolled_back(&outcome, &h);
    assert!(
        outcome.facts.pruned.is_empty(),
        "{:?}",
        outcome.facts.pruned
    );
    assert_eq!(
        uid(&h.object("v1", "PersistentVolumeClaim", "data").await),
        claim_uid
    );
    assert_eq!(
        uid(&h.object("v1", "ConfigMap", "settings").await),
        settings_uid
    );
    h.cluster
        .wait_for(
            "apps/v1",
            "Deployment",
            Some(&ns),
            "web",
            Duration::from_secs(60),
            |d| d.is_some_and(|d| d["status"]["readyReplicas"] == 1),
        )
        .await;
    assert_eq!(read_token(), token, "the data is intact");

    // Release 3 drops them again and is healthy: plan says exactly what deploy then does.
    let mut healthy = support::cluster::deployment(&ns, "web", 1, web_container("web", &image));
    healthy["spec"]["strategy"] = json!({"type": "Recreate"});
    let planned = h.engine().plan(&[healthy.clone()]).await;
    let dry_run = planned.facts.dry_run.unwrap();
    let action_of = |object: String| {
        dry_run
            .iter()
            .find(|c| c.object == object)
            .map(|c| c.action)
    };
    assert_eq!(
        action_of(h.named("ConfigMap", "settings")),
        Some(PlannedAction::Prune),
        "{dry_run:?}"
    );
    assert_eq!(
        action_of(h.named("PersistentVolumeClaim", "data")),
        Some(PlannedAction::Keep),
        "{dry_run:?}"
    );
    let outcome = h.deploy(vec![healthy]).await;
    assert_succeeded(&outcome, &h.log);
    assert_eq!(outcome.facts.pruned, [h.named("ConfigMap", "settings")]);
    assert_eq!(
        outcome.facts.kept,
        [h.named("PersistentVolumeClaim", "data")]
    );
    assert!(h.object("v1", "ConfigMap", "settings").await.is_none());
    assert_eq!(
        uid(&h.object("v1", "PersistentVolumeClaim", "data").await),
        claim_uid
    );
    assert!(h
        .log
        .contents()
        .contains("is no longer in the release and is kept"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_opts_in_is_pruned_and_a_failed_first_release_keeps_its_namespace() {
    let h = Harness::new("sem-optin").await;
    let ns = h.ns().to_string();
    let image = web("v1").await;
    let claim = |name: &str, allow: bool| {
        let mut claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        if allow {
            claim["metadata"]["annotations"] = json!({"gantry.dev/allow-delete": "true"});
        }
        claim
    };
    // A failed first release that carries its own Namespace and a claim: both kept.
    let extra_ns = unique_name("sem-extra");
    let namespace =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": extra_ns}});
    let first = vec![
        namespace,
        claim("kept", false),
        claim("scratch", true),
        support::cluster::deployment(&ns, "web", 1, crashing_container("web", &image)),
    ];
    let outcome = h.deploy(first).await;
    rolled_back(&outcome, &h);
    let rollback = outcome.facts.rollback.unwrap();
    assert!(
        rollback.kept.contains(&format!("Namespace/{extra_ns}")),
        "{rollback:?}"
    );
    assert!(
        rollback
            .kept
            .contains(&h.named("PersistentVolumeClaim", "kept")),
        "{rollback:?}"
    );
    assert!(
        rollback
            .deleted
            .contains(&h.named("PersistentVolumeClaim", "scratch")),
        "{rollback:?}"
    );
    assert!(h
        .object("v1", "PersistentVolumeClaim", "kept")
        .await
        .is_some());
    assert!(h
        .cluster
        .get("v1", "Namespace", None, &extra_ns)
        .await
        .is_some());
    h.cluster.delete("v1", "Namespace", None, &extra_ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_move_is_planned_as_create_and_delete_after_health() {
    let h = Harness::new("sem-move").await;
    let other = h.cluster.namespace("sem-move-to").await;
    let mut first = h.release("v1", "a").await;
    first.push(config_map(h.ns(), "moving", "x"));
    assert_succeeded(&h.deploy(first).await, &h.log);
    let mut second = h.release("v1", "a").await;
    second.push(config_map(&other.name, "moving", "x"));
    let planned = h.engine().plan(&second).await;
    let dry_run = planned.facts.dry_run.unwrap();
    let created = dry_run
        .iter()
        .find(|c| c.object == format!("ConfigMap/moving (namespace {})", other.name))
        .unwrap();
    assert_eq!(created.action, PlannedAction::Create);
    assert!(
        created.fields[0].contains(&format!("moved from namespace {}", h.ns())),
        "{created:?}"
    );
    assert!(dry_run
        .iter()
        .any(|c| c.object == h.named("ConfigMap", "moving") && c.action == PlannedAction::Prune));
    let outcome = h.deploy(second).await;
    assert_succeeded(&outcome, &h.log);
    assert!(h.object("v1", "ConfigMap", "moving").await.is_none());
    assert!(h
        .cluster
        .get("v1", "ConfigMap", Some(&other.name), "moving")
        .await
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_deletes_only_what_the_failed_release_created() {
    let h = Harness::new("sem-adopt").await;
    let ns = h.ns().to_string();
    let image = web("v1").await;
    assert_succeeded(&h.deploy(h.release("v1", "a").await).await, &h.log);
    // Someone else's ConfigMap, in no release of gantry's.
    h.cluster.kubectl(&[
        "-n",
        &ns,
        "create",
        "configmap",
        "theirs",
        "--from-literal=owner=them",
    ]);
    let theirs_uid = uid(&h.object("v1", "ConfigMap", "theirs").await);

    // Release 2 adopts it, adds a ConfigMap of its own, and crash-loops.
    let second = vec![
        config_map(&ns, "web-config", "b"),
        config_map(&ns, "theirs", "ours"),
        config_map(&ns, "added", "x"),
        support::cluster::deployment(&ns, "web", 2, crashing_container("web", &image)),
    ];
    let outcome = h.deploy(second).await;
    let (_, message) = rolled_back(&outcome, &h);
    let rollback = outcome.facts.rollback.as_ref().unwrap();
    assert_eq!(rollback.deleted, [h.named("ConfigMap", "added")]);
    assert_eq!(rollback.left_in_place, [h.named("ConfigMap", "theirs")]);
    assert!(
        message.ends_with(&format!(
            "rolled back: release 1 is restored and healthy (1 object that existed before this run was left as it is: {})",
            h.named("ConfigMap", "theirs")
        )),
        "{message}"
    );
    assert!(h.object("v1", "ConfigMap", "added").await.is_none());
    let theirs = h.object("v1", "ConfigMap", "theirs").await;
    assert_eq!(uid(&theirs), theirs_uid, "never deleted");
    assert_eq!(theirs.unwrap()["data"]["owner"], "them");
    assert_eq!(
        h.object("v1", "ConfigMap", "web-config").await.unwrap()["data"]["setting"],
        "a"
    );

    // Release 3 has no such ConfigMap: it was never gantry's, so no prune deletes it either.
    let outcome = h.deploy(h.release("v1", "c").await).await;
    assert_succeeded(&outcome, &h.log);
    assert!(
        !outcome
            .facts
            .pruned
            .contains(&h.named("ConfigMap", "theirs")),
        "{:?}",
        outcome.facts.pruned
    );
    assert_eq!(
        uid(&h.object("v1", "ConfigMap", "theirs").await),
        theirs_uid,
        "never deleted"
    );
}

/// A StatefulSet of 3 web pods whose template is `container`.
fn statefulset(ns: &str, container: Value, policy: &str, strategy: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": ns},
        "spec": {
            "replicas": 3,
            "serviceName": "db",
            "podManagementPolicy": policy,
            "updateStrategy": strategy,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]}}}})
}

/// Deploys a healthy StatefulSet, then a crash-looping one, and checks the rollback completes:
/// every pod Ready on the restored revision, the deleted pods reported.
async fn statefulset_rolls_back(prefix: &str, policy: &str, strategy: Value) -> Vec<String> {
    let h = Harness::new(prefix).await;
    let ns = h.ns().to_string();
    let image = web("v1").await;
    let healthy = statefulset(&ns, web_container("db", &image), policy, strategy.clone());
    assert_succeeded(&h.deploy(vec![healthy]).await, &h.log);
    let broken = statefulset(&ns, crashing_container("db", &image), policy, strategy);
    let started = Instant::now();
    let outcome = h.deploy(vec![broken]).await;
    let (reason, _) = rolled_back(&outcome, &h);
    assert_eq!(reason, "rollout-failed");
    eprintln!(
        "{prefix}: failed StatefulSet rollout to restored health in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let statefulset = h.object("apps/v1", "StatefulSet", "db").await.unwrap();
    let status = &statefulset["status"];
    assert_eq!(status["readyReplicas"], 3, "{status}");
    assert_eq!(
        status["currentRevision"], status["updateRevision"],
        "{status}"
    );
    assert!(
        statefulset["spec"]["template"]["spec"]["containers"][0]["command"][2]
            .as_str()
            .unwrap()
            .contains("httpd")
    );
    assert_eq!(
        h.history().await,
        [(1, ReleaseStatus::Deployed), (2, ReleaseStatus::RolledBack)]
    );
    outcome.facts.rollback.unwrap().pods_deleted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_ready_statefulset_rollback_deletes_the_stuck_pod_and_completes() {
    let deleted =
        statefulset_rolls_back("sem-sts", "OrderedReady", json!({"type": "RollingUpdate"})).await;
    // The controller updates from the highest ordinal: db-2 was the broken one.
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert!(deleted[0].starts_with("Pod/db-2 "), "{deleted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_statefulset_rollback_completes() {
    let deleted = statefulset_rolls_back(
        "sem-sts-part",
        "OrderedReady",
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}),
    )
    .await;
    assert!(
        deleted.iter().all(|p| !p.starts_with("Pod/db-0 ")),
        "below the partition: {deleted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_statefulset_rollback_completes() {
    statefulset_rolls_back("sem-sts-par", "Parallel", json!({"type": "RollingUpdate"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_delete_statefulset_is_not_rolled_by_gantry() {
    // OnDelete: the controller replaces no pod; a release changes the template only, tracking
    // does not wait, and the pods keep running the template they were created with.
    let h = Harness::new("sem-sts-ondelete").await;
    let ns = h.ns().to_string();
    let image = web("v1").await;
    let strategy = json!({"type": "OnDelete"});
    let healthy = statefulset(
        &ns,
        web_container("db", &image),
        "OrderedReady",
        strategy.clone(),
    );
    assert_succeeded(&h.deploy(vec![healthy]).await, &h.log);
    let changed = statefulset(
        &ns,
        crashing_container("db", &image),
        "OrderedReady",
        strategy,
    );
    let outcome = h.deploy(vec![changed]).await;
    assert_succeeded(&outcome, &h.log);
    assert!(
        outcome.facts.workloads[0].message.contains("OnDelete"),
        "{:?}",
        outcome.facts.workloads
    );
    let statefulset = h.object("apps/v1", "StatefulSet", "db").await.unwrap();
    assert_eq!(statefulset["status"]["readyReplicas"], 3);
}

/// A CustomResourceDefinition of its own group, served as v1alpha1 and v1, deleted afterwards;
/// the deployer may manage its resources.
struct TestCrd {
    group: String,
    kubectl: std::path::PathBuf,
    kubeconfig: std::path::PathBuf,
}

impl TestCrd {
    async fn new(h: &Harness) -> TestCrd {
        let group = format!("{}.gantry.test", unique_name("crd"));
        h.cluster
            .apply(&json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": format!("gantry-test-{group}")},
                "rules": [{"apiGroups": [group], "resources": ["widgets"], "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"]}]}))
            .await;
        h.cluster
            .apply(&json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": format!("gantry-test-{group}")},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("gantry-test-{group}")},
                "subjects": [{"kind": "ServiceAccount", "name": "gantry", "namespace": "gantry-system"}]}))
            .await;
        TestCrd {
            group,
            kubectl: h.cluster.kubectl.clone(),
            kubeconfig: h.cluster.admin_kubeconfig.clone(),
        }
    }

    fn definition(&self) -> Value {
        let schema = json!({"openAPIV3Schema": {"type": "object", "properties": {
            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}});
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("widgets.{}", self.group)},
            "spec": {"group": self.group, "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                "versions": [
                    {"name": "v1alpha1", "served": true, "storage": false, "schema": schema},
                    {"name": "v1", "served": true, "storage": true, "schema": schema}]}})
    }

    fn widget(&self, ns: &str, version: &str, size: u32) -> Value {
        json!({"apiVersion": format!("{}/{version}", self.group), "kind": "Widget",
            "metadata": {"name": "w", "namespace": ns}, "spec": {"size": size}})
    }
}

impl Drop for TestCrd {
    fn drop(&mut self) {
        for kind in [
            "customresourcedefinition",
            "clusterrolebinding",
            "clusterrole",
        ] {
            let name = if kind == "customresourcedefinition" {
                format!("widgets.{}", self.group)
            } else {
                format!("gantry-test-{}", self.group)
            };
            let _ = std::process::Command::new(&self.kubectl)
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(["delete", kind, &name, "--wait=false", "--ignore-not-found"])
                .output();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_ships_with_its_resources_and_a_version_move_is_an_update() {
    let h = Harness::new("sem-crd").await;
    let crd = TestCrd::new(&h).await;
    let ns = h.ns().to_string();
    let release = |version: &str, size: u32| vec![crd.definition(), crd.widget(&ns, version, size)];
    let outcome = h.deploy(release("v1alpha1", 1)).await;
    assert_succeeded(&outcome, &h.log);
    assert!(
        outcome
            .facts
            .preflight
            .iter()
            .any(|n| n.contains("Widget/w")
                && n.contains("its CustomResourceDefinition is in this release")),
        "{:?}",
        outcome.facts.preflight
    );
    let widget = h.object(&format!("{}/v1", crd.group), "Widget", "w").await;
    let first_uid = uid(&widget);
    // A rerun changes nothing and records nothing.
    let rerun = h.deploy(release("v1alpha1", 1)).await;
    assert_succeeded(&rerun, &h.log);
    assert!(!rerun.changed, "{:?}", rerun.facts.applied);
    // The resource moves to the other served version: an update of the same object.
    let moved = h.deploy(release("v1", 2)).await;
    assert_succeeded(&moved, &h.log);
    assert!(moved.facts.pruned.is_empty(), "{:?}", moved.facts.pruned);
    let widget = h.object(&format!("{}/v1", crd.group), "Widget", "w").await;
    assert_eq!(uid(&widget), first_uid);
    assert_eq!(widget.unwrap()["spec"]["size"], 2);
    assert_eq!(
        h.history().await,
        [(1, ReleaseStatus::Superseded), (2, ReleaseStatus::Deployed)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_whose_crd_is_nowhere_stops_the_deploy_naming_it() {
    let h = Harness::new("sem-nocrd").await;
    let mut objects = h.release("v1", "a").await;
    objects.push(
        json!({"apiVersion": "nowhere.gantry.test/v1", "kind": "Gadget",
        "metadata": {"name": "g", "namespace": h.ns()}}),
    );
    let outcome = h.deploy(objects).await;
    let Ending::Failed { reason, message } = &outcome.ending else {
        panic!("{:?}", outcome.ending);
    };
    assert_eq!(reason, "preflight-failed");
    assert!(message.contains("no CustomResourceDefinition in the cluster or in this release serves Gadget (nowhere.gantry.test/v1)"), "{message}");
    assert!(h.object("apps/v1", "Deployment", "web").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_deployment_is_never_reported_rolled_out() {
    let h = Harness::new("sem-paused").await;
    assert_succeeded(&h.deploy(h.release("v1", "a").await).await, &h.log);
    h.cluster
        .merge_patch_as(
            "kubectl",
            "apps/v1",
            "Deployment",
            Some(h.ns()),
            "web",
            json!({"spec": {"paused": true}}),
        )
        .await;
    let outcome = h.deploy(h.release("v2", "a").await).await;
    let (reason, message) = rolled_back(&outcome, &h);
    assert_eq!(reason, "rollout-paused");
    assert!(
        message.contains("kubectl rollout resume deployment/web"),
        "{message}"
    );
    assert_eq!(
        h.history().await,
        [(1, ReleaseStatus::Deployed), (2, ReleaseStatus::RolledBack)]
    );
    assert_eq!(
        h.object("apps/v1", "Deployment", "web").await.unwrap()["spec"]["template"]["spec"]
            ["containers"][0]["image"],
        web("v1").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_rejection_fails_fast_with_the_api_message() {
    let h = Harness::new("sem-quota").await;
    assert_succeeded(&h.deploy(h.release("v1", "a").await).await, &h.log);
    // The release's two pods fill the quota: the next revision's surge pod is refused.
    h.cluster
        .apply(&json!({"apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": "pods", "namespace": h.ns()}, "spec": {"hard": {"pods": "2"}}}))
        .await;
    let started = Instant::now();
    let outcome = h.deploy(h.release("v2", "a").await).await;
    let (reason, _) = rolled_back(&outcome, &h);
    assert_eq!(reason, "rollout-failed");
    let failure = outcome.facts.failure.unwrap();
    assert_eq!(failure.reason, "ReplicaFailure", "{failure:?}");
    assert!(
        failure.message.contains("because of a ResourceQuota"),
        "{failure:?}"
    );
    assert!(failure.message.contains("exceeded quota"), "{failure:?}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "fails fast, not at the deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_leaves_autoscaled_replicas_and_takes_other_fields_back_naming_them() {
    let h = Harness::new("sem-owners").await;
    let ns = h.ns().to_string();
    let image = web("v1").await;
    let mut first = h.release("v1", "a").await;
    first[2]["metadata"]["labels"] = json!({"team": "shop"});
    first.push(hpa(&ns, "autoscaling/v2", 2));
    assert_succeeded(&h.deploy(first).await, &h.log);
    // The autoscaler scales to 3 (through the scale subresource, as an HPA does), and someone
    // edits a label release 1 set.
    h.cluster
        .kubectl(&["-n", &ns, "scale", "deployment/web", "--replicas", "3"]);
    h.cluster
        .merge_patch_as(
            "kubectl-edit",
            "apps/v1",
            "Deployment",
            Some(&ns),
            "web",
            json!({"metadata": {"labels": {"team": "hand-edited"}}}),
        )
        .await;
    // Release 2 follows the advice for autoscaled workloads (no replicas) and sets no label:
    // nothing conflicts, it is applied, and it crash-loops.
    let mut crashing =
        support::cluster::deployment(&ns, "web", 2, crashing_container("web", &image));
    crashing["spec"].as_object_mut().unwrap().remove("replicas");
    let second = vec![
        config_map(&ns, "web-config", "a"),
        support::deploy::service(&ns, "web"),
        crashing,
        hpa(&ns, "autoscaling/v2", 2),
    ];
    let outcome = h.deploy(second).await;
    let (reason, _) = rolled_back(&outcome, &h);
    assert_eq!(reason, "rollout-failed");
    let rollback = outcome.facts.rollback.unwrap();
    assert_eq!(
        rollback.left_to_controllers,
        [format!(
            "Deployment/web (namespace {ns}): spec.replicas (HorizontalPodAutoscaler/web)"
        )]
    );
    assert!(
        rollback
            .taken_over
            .iter()
            .any(|t| t.contains("Deployment/web") && t.contains("kubectl-edit")),
        "{rollback:?}"
    );
    let deployment = h.object("apps/v1", "Deployment", "web").await.unwrap();
    assert_eq!(
        deployment["metadata"]["labels"]["team"], "shop",
        "taken back"
    );
    assert_eq!(deployment["spec"]["replicas"], 3, "left to the autoscaler");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immutable_change_is_found_before_any_write_and_replaced_only_when_annotated() {
    let h = Harness::new("sem-immutable").await;
    let ns = h.ns().to_string();
    let image = web("v1").await;
    let job = |message: &str, annotate: bool| {
        let mut job = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "migrate", "namespace": ns},
            "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "migrate", "image": image, "command": ["sh", "-c", format!("echo {message}")]}]}}}});
        if annotate {
            job["metadata"]["annotations"] = json!({"gantry.dev/replace": "true"});
        }
        job
    };
    assert_succeeded(&h.deploy(vec![job("v1", false)]).await, &h.log);
    let first_uid = uid(&h.object("batch/v1", "Job", "migrate").await);
    // Not annotated: the dry run finds the immutable template before anything is written.
    let refused = h.deploy(vec![job("v2", false)]).await;
    let Ending::Failed { reason, message } = &refused.ending else {
        panic!("{:?}", refused.ending);
    };
    assert_eq!(reason, "preflight-failed");
    assert!(
        message.contains(&format!(
            "Job/migrate (namespace {ns}): spec.template cannot change"
        )),
        "{message}"
    );
    assert!(message.contains("gantry.dev/replace"), "{message}");
    assert_eq!(
        uid(&h.object("batch/v1", "Job", "migrate").await),
        first_uid
    );
    // Annotated: planned as a replacement, then deleted and created again, and waited for.
    let planned = h.engine().plan(&[job("v2", true)]).await;
    assert_eq!(
        planned.facts.dry_run.unwrap()[0].action,
        PlannedAction::Replace
    );
    let replaced = h.deploy(vec![job("v2", true)]).await;
    assert_succeeded(&replaced, &h.log);
    assert_eq!(
        replaced.facts.replaced,
        [format!("Job/migrate (namespace {ns})")]
    );
    let job = h.object("batch/v1", "Job", "migrate").await.unwrap();
    assert_ne!(job["metadata"]["uid"].as_str().unwrap(), first_uid);
    assert_eq!(job["status"]["succeeded"], 1, "waited to completion: {job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_gantry_did_not_write_are_refused_before_anything_is_applied() {
    let h = Harness::new("sem-records").await;
    assert_succeeded(&h.deploy(h.release("v1", "a").await).await, &h.log);
    // Someone who may write Secrets here plants a "release 2" that would delete the Service.
    let mut planted = h.cluster.releases(h.ns(), ENV).await.remove(0);
    planted.number = 2;
    planted.status = ReleaseStatus::Pending;
    planted.manifests.retain(|o| o["kind"] != "Service");
    let (secrets, _) = gantry::release::records::encode(&planted, h.ns()).unwrap();
    for secret in &secrets {
        h.cluster.apply_as("intruder", secret).await;
    }
    let started = k8s_openapi::jiff::Timestamp::now();
    refused_as_untrusted(&h, "gantry.release.dev.v2 was not written by gantry").await;
    assert!(h.object("v1", "Service", "web").await.is_some());
    assert_eq!(
        h.object("v1", "ConfigMap", "web-config").await.unwrap()["data"]["setting"],
        "a",
        "nothing applied"
    );
    // From the API server's side: after the run started, gantry wrote nothing but its lock.
    let writes: Vec<_> = support::cluster::audit_writes(DEPLOYER, h.ns())
        .into_iter()
        .filter(|w| w.received >= started && !w.uri.contains("/leases/"))
        .filter(|w| !w.uri.contains("dryRun=All"))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    // Someone edits the record of release 1 instead: refused as well.
    h.cluster
        .delete("v1", "Secret", Some(h.ns()), "gantry.release.dev.v2")
        .await;
    let mut edited = h.cluster.releases(h.ns(), ENV).await.remove(0);
    edited.manifests.retain(|o| o["kind"] != "Service");
    let (secrets, _) = gantry::release::records::encode(&edited, h.ns()).unwrap();
    h.cluster.apply_as("intruder", &secrets[0]).await;
    refused_as_untrusted(
        &h,
        "gantry.release.dev.v1 was changed after gantry wrote it",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_gantry_0_1_are_adopted_once_and_reported() {
    let h = Harness::new("sem-adopt").await;
    assert_succeeded(&h.deploy(h.release("v1", "a").await).await, &h.log);
    // What gantry 0.1 left: the same record without the part label, and no record index.
    let record = h.cluster.releases(h.ns(), ENV).await.remove(0);
    let (secrets, _) = gantry::release::records::encode(&record, h.ns()).unwrap();
    let mut old = secrets[0].clone();
    old["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("gantry.dev/part");
    old["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    h.cluster
        .delete("v1", "Secret", Some(h.ns()), "gantry.release.dev.v1")
        .await;
    h.cluster
        .delete(
            "coordination.k8s.io/v1",
            "Lease",
            Some(h.ns()),
            "gantry.records.dev",
        )
        .await;
    h.cluster.apply_as("gantry-0.1", &old).await;
    let outcome = h.deploy(h.release("v2", "b").await).await;
    assert_succeeded(&outcome, &h.log);
    assert!(
        outcome
            .facts
            .preflight
            .iter()
            .any(|n| n.contains("adopted 1 release record written by gantry 0.1")),
        "{:?}",
        outcome.facts.preflight
    );
    let again = h.deploy(h.release("v3", "c").await).await;
    assert_succeeded(&again, &h.log);
    assert!(!again.facts.preflight.iter().any(|n| n.contains("adopted")));
    assert_eq!(
        h.history().await,
        [
            (1, ReleaseStatus::Superseded),
            (2, ReleaseStatus::Superseded),
            (3, ReleaseStatus::Deployed)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_larger_than_a_secret_is_stored_in_parts() {
    let h = Harness::new("sem-large").await;
    let mut objects = h.release("v1", "a").await;
    // Three ConfigMaps of incompressible data: ~1.5 MiB compressed, more than one Secret holds.
    for i in 0..3u64 {
        let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ i;
        let blob: String = (0..700_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'a' + (state % 26) as u8)
            })
            .collect();
        objects.push(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("blob-{i}"), "namespace": h.ns()}, "data": {"blob": blob}}));
    }
    assert_succeeded(&h.deploy(objects.clone()).await, &h.log);
    let parts = h
        .cluster
        .list("v1", "Secret", Some(h.ns()))
        .await
        .into_iter()
        .filter(|s| {
            s["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("gantry.release.dev.v1")
        })
        .count();
    assert!(parts >= 2, "{parts}");
    // It reads back whole: a rerun finds exactly these manifests deployed.
    let rerun = h.deploy(objects).await;
    assert_succeeded(&rerun, &h.log);
    assert!(
        h.log
            .contents()
            .contains("deployed with exactly these manifests"),
        "{}",
        h.log.contents()
    );
}
