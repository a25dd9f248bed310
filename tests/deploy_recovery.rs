//! The gantry binary against the test bed's real cluster, as the least-privilege deployer: a run killed at every step boundary of a deploy and of a rollback (an injected crash point that aborts the process like SIGKILL) is recognised and repaired by the next run; bad manifests and unreachable clusters stop the run before any write.

mod support;

use support::text;

use std::process::Output;
use std::time::Duration;

use gantry::release::{Release, ReleaseStatus};
use support::cluster::runnable_image;
use support::deploy::Checkout;

/// The release of version `tag` (a runnable image per tag; `missing` is never pushed).
fn manifests(image: &str, setting: &str, extra_service: bool) -> String {
    let mut text = format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: web-config}}
data: {{setting: "{setting}"}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec: {{selector: {{app: web}}, ports: [{{port: 80, targetPort: 8080}}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: "{image}"
        command: [sh, -c, "trap 'exit 0' TERM; mkdir -p /tmp/www; echo ok > /tmp/www/index.html; httpd -f -p 8080 -h /tmp/www & wait"]
        readinessProbe: {{httpGet: {{path: /index.html, port: 8080}}, periodSeconds: 1}}
"#
    );
    if extra_service {
        text.push_str(
            "---\napiVersion: v1\nkind: Service\nmetadata: {name: added-by-v2}\nspec: {selector: {app: web}, ports: [{port: 81}]}\n",
        );
    }
    text
}

async fn web(tag: &str) -> String {
    runnable_image("gantry-test/web", tag).await.0
}

/// The image of version `tag` as gantry deploys it: pinned by the digest the registry serves.
async fn pinned(tag: &str) -> String {
    let (_, digest) = runnable_image("gantry-test/web", tag).await;
    format!("127.0.0.1:5000/gantry-test/web@{digest}")
}

struct Workspace(Checkout);

impl std::ops::Deref for Workspace {
    type Target = Checkout;
    fn deref(&self) -> &Checkout {
        &self.0
    }
}

impl Workspace {
    async fn new(prefix: &str) -> Workspace {
        Workspace(Checkout::new(prefix).await)
    }

    /// Runs `gantry <command>` for environment dev; `crash_at` sets the crash point.
    async fn gantry(&self, command: &str, manifests: &str, crash_at: Option<&str>) -> Output {
        std::fs::write(self.path().join("k8s/app.yaml"), manifests).unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_gantry"));
        cmd.current_dir(self.path())
            .arg(command)
            .args([
                "--environment",
                "dev",
                "--phases",
                "deploy",
                "--manifests",
                "k8s",
            ])
            .args(["--namespace", self.ns(), "--kubeconfig", "kubeconfig"])
            .args(["--rollout-timeout", "90s", "--pull-error-tolerance", "1s"])
            .args(["--restart-threshold", "0", "--lock-lease-duration", "3s"])
            .env_remove("GITHUB_ACTIONS")
            .env_remove("KUBECONFIG")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .kill_on_drop(true);
        if let Some(step) = crash_at {
            cmd.env("GANTRY_TEST_CRASH_AT", step);
        }
        tokio::time::timeout(Duration::from_secs(180), cmd.output())
            .await
            .expect("gantry finished within 180 s")
            .expect("gantry runs")
    }

    /// The record of release `number`.
    async fn release(&self, number: u64) -> Release {
        self.cluster
            .releases(self.ns(), "dev")
            .await
            .into_iter()
            .find(|r| r.number == number)
            .unwrap_or_else(|| panic!("no record of release {number}"))
    }

    async fn history(&self) -> Vec<(u64, ReleaseStatus)> {
        self.cluster.history(self.ns(), "dev").await
    }

    async fn image(&self) -> String {
        self.cluster
            .get("apps/v1", "Deployment", Some(self.ns()), "web")
            .await
            .unwrap()["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn has_service(&self, name: &str) -> bool {
        self.cluster
            .get("v1", "Service", Some(self.ns()), name)
            .await
            .is_some()
    }
}

/// The run died at the crash point, as SIGKILL would have it.
fn assert_killed_at(killed: &Output, step: &str) {
    assert!(!killed.status.success(), "{}", text(killed));
    assert!(
        String::from_utf8_lossy(&killed.stderr).contains(&format!("crash point {step}")),
        "{}",
        text(killed)
    );
}

async fn deployed_v1(prefix: &str) -> Workspace {
    let workspace = Workspace::new(prefix).await;
    let first = workspace
        .gantry("deploy", &manifests(&web("v1").await, "v1", false), None)
        .await;
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(workspace.history().await, [(1, ReleaseStatus::Deployed)]);
    workspace
}

/// Kills a deploy of a healthy v2 at `step`, then reruns it; returns the rerun's output.
async fn kill_deploy_then_rerun(step: &str) -> (Workspace, Output) {
    let workspace = deployed_v1(&format!("kill-{step}")).await;
    let v2 = manifests(&web("v2").await, "v2", true);
    let killed = workspace.gantry("deploy", &v2, Some(step)).await;
    assert_killed_at(&killed, step);
    let rerun = workspace.gantry("deploy", &v2, None).await;
    assert!(rerun.status.success(), "{}", text(&rerun));
    assert_eq!(workspace.image().await, pinned("v2").await);
    assert!(workspace.has_service("added-by-v2").await);
    assert_eq!(
        workspace.cluster.lease_holder(workspace.ns(), "dev").await,
        None
    );
    (workspace, rerun)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_the_pending_record_nothing_changed_and_the_rerun_deploys() {
    let (workspace, _) = kill_deploy_then_rerun("before-pending-record").await;
    assert_eq!(
        workspace.history().await,
        [(1, ReleaseStatus::Superseded), (2, ReleaseStatus::Deployed)]
    );
}

async fn assert_interrupted_release_2_recovered(step: &str) {
    let (workspace, rerun) = kill_deploy_then_rerun(step).await;
    assert_eq!(
        workspace.history().await,
        [
            (1, ReleaseStatus::Superseded),
            (2, ReleaseStatus::Failed),
            (3, ReleaseStatus::Deployed)
        ],
        "{}",
        text(&rerun)
    );
    let record = workspace.release(2).await;
    assert!(
        record.description.contains("interrupted"),
        "{}",
        record.description
    );
    assert!(text(&rerun).contains("interrupted"), "{}", text(&rerun));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_an_interrupted_release_adopted_is_left_by_the_recovery() {
    let workspace = deployed_v1("kill-adopted").await;
    // Someone else's ConfigMap, older than the release that adopts it.
    workspace.cluster.kubectl(&[
        "-n",
        workspace.ns(),
        "create",
        "configmap",
        "theirs",
        "--from-literal=owner=them",
    ]);
    let theirs = || async {
        workspace
            .cluster
            .get("v1", "ConfigMap", Some(workspace.ns()), "theirs")
            .await
    };
    let uid = theirs().await.unwrap()["metadata"]["uid"].clone();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut v2 = manifests(&web("v2").await, "v2", true);
    v2.push_str(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: theirs}\ndata: {setting: ours}\n",
    );
    let killed = workspace
        .gantry("deploy", &v2, Some("before-tracking"))
        .await;
    assert_killed_at(&killed, "before-tracking");
    // The next run, of release 1 again, undoes release 2: added-by-v2 goes, theirs stays.
    let rerun = workspace
        .gantry("deploy", &manifests(&web("v1").await, "v1", false), None)
        .await;
    assert!(rerun.status.success(), "{}", text(&rerun));
    assert!(
        !workspace.has_service("added-by-v2").await,
        "{}",
        text(&rerun)
    );
    let after = theirs().await.expect("never deleted");
    assert_eq!(after["metadata"]["uid"], uid);
    assert_eq!(after["data"]["owner"], "them");
    assert!(
        text(&rerun).contains("existed before interrupted release 2 adopted it"),
        "{}",
        text(&rerun)
    );
    let record = workspace.release(2).await;
    assert_eq!(record.not_created.len(), 1, "{:?}", record.not_created);
    assert_eq!(record.not_created[0].name, "theirs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_pending_record() {
    assert_interrupted_release_2_recovered("after-pending-record").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_apply_ranks() {
    assert_interrupted_release_2_recovered("apply-between-ranks").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_apply_before_tracking() {
    assert_interrupted_release_2_recovered("before-tracking").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_tracking() {
    assert_interrupted_release_2_recovered("during-tracking").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_recording_the_release_deployed() {
    assert_interrupted_release_2_recovered("before-deployed-record").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_recording_deployed_and_superseded() {
    let (workspace, rerun) = kill_deploy_then_rerun("before-superseded-record").await;
    // Release 2 was recorded healthy: the rerun repairs release 1's record and, finding
    // exactly release 2 deployed, records nothing new.
    assert_eq!(
        workspace.history().await,
        [(1, ReleaseStatus::Superseded), (2, ReleaseStatus::Deployed)],
        "{}",
        text(&rerun)
    );
    assert!(text(&rerun).contains("already deployed with exactly these manifests"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_recording_healthy_before_the_prune_finished() {
    // v1 has a Service v2 drops; v2 is recorded healthy (pruning is then all that is left) and
    // the run dies: the next run finishes the prune and records nothing new.
    let workspace = Workspace::new("kill-before-prune").await;
    let v1 = manifests(&web("v1").await, "v1", true);
    let first = workspace.gantry("deploy", &v1, None).await;
    assert!(first.status.success(), "{}", text(&first));
    assert!(workspace.has_service("added-by-v2").await);
    let v2 = manifests(&web("v2").await, "v2", false);
    let killed = workspace.gantry("deploy", &v2, Some("before-prune")).await;
    assert_killed_at(&killed, "before-prune");
    assert!(
        workspace.has_service("added-by-v2").await,
        "nothing pruned yet"
    );
    let rerun = workspace.gantry("deploy", &v2, None).await;
    assert!(rerun.status.success(), "{}", text(&rerun));
    assert!(
        text(&rerun).contains("finishing the prune"),
        "{}",
        text(&rerun)
    );
    assert!(!workspace.has_service("added-by-v2").await);
    assert_eq!(
        workspace.history().await,
        [(1, ReleaseStatus::Superseded), (2, ReleaseStatus::Deployed)],
        "{}",
        text(&rerun)
    );
}

/// Kills the automatic rollback of a crash-looping v2 at `step`, then deploys a healthy v3.
async fn kill_rollback_then_deploy(step: &str) {
    let workspace = deployed_v1(&format!("kill-{step}")).await;
    // v2's image exists (pre-flight passes) but its container exits at once: a real crash loop.
    let crashing = manifests(&web("v2").await, "v2", true).replace(
        "trap 'exit 0' TERM; mkdir -p /tmp/www; echo ok > /tmp/www/index.html; httpd -f -p 8080 -h /tmp/www & wait",
        "echo fatal: no config; exit 3",
    );
    assert!(crashing.contains("exit 3"));
    let killed = workspace.gantry("deploy", &crashing, Some(step)).await;
    assert_killed_at(&killed, step);
    let rerun = workspace
        .gantry("deploy", &manifests(&web("v3").await, "v3", false), None)
        .await;
    assert!(rerun.status.success(), "{}", text(&rerun));
    assert_eq!(workspace.image().await, pinned("v3").await);
    assert!(!workspace.has_service("added-by-v2").await);
    assert_eq!(
        workspace.history().await,
        [
            (1, ReleaseStatus::Superseded),
            (2, ReleaseStatus::Failed),
            (3, ReleaseStatus::Deployed)
        ],
        "{}",
        text(&rerun)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_the_rollback_started() {
    kill_rollback_then_deploy("before-rollback").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_ranks_of_the_rollback() {
    kill_rollback_then_deploy("rollback-between-ranks").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_rollback_reapplied_before_it_deleted() {
    kill_rollback_then_deploy("mid-rollback").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_the_rollback_was_recorded() {
    kill_rollback_then_deploy("before-rollback-record").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rollback_command_is_finished_by_the_next_run() {
    let workspace = deployed_v1("kill-rollback-command").await;
    let second = workspace
        .gantry("deploy", &manifests(&web("v2").await, "v2", true), None)
        .await;
    assert!(second.status.success(), "{}", text(&second));
    let killed = workspace.gantry("rollback", "", Some("mid-rollback")).await;
    assert_killed_at(&killed, "mid-rollback");
    let listed = workspace.gantry("history", "", None).await;
    assert!(listed.status.success(), "{}", text(&listed));
    // The next run (any verb that takes the lock) finishes the interrupted rollback first.
    let rerun = workspace
        .gantry("deploy", &manifests(&web("v1").await, "v1", false), None)
        .await;
    assert!(rerun.status.success(), "{}", text(&rerun));
    assert_eq!(workspace.image().await, pinned("v1").await);
    assert!(!workspace.has_service("added-by-v2").await);
    // Release 3 (the rollback to 1) was finished and is current; the deploy of v1 that
    // followed is exactly release 3, so it records nothing new.
    assert_eq!(
        workspace.history().await,
        [
            (1, ReleaseStatus::Superseded),
            (2, ReleaseStatus::Superseded),
            (3, ReleaseStatus::Deployed)
        ],
        "{}",
        text(&rerun)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kind_is_reported_at_its_line_before_any_write() {
    let workspace = Workspace::new("unknown-kind").await;
    let mut text_in = manifests(&web("v1").await, "v1", false);
    text_in.push_str("---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n");
    let output = workspace.gantry("deploy", &text_in, None).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let all = text(&output);
    assert!(
        all.contains("Widget (example.com/v1) is not a kind the cluster serves"),
        "{all}"
    );
    assert!(all.contains("app.yaml"), "{all}");
    assert!(workspace
        .cluster
        .get("v1", "ConfigMap", Some(workspace.ns()), "web-config")
        .await
        .is_none());
    // The API server's audit log: gantry wrote nothing in the namespace.
    let writes = support::cluster::audit_writes(support::cluster::DEPLOYER, workspace.ns());
    assert!(writes.is_empty(), "only reads before the error: {writes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_is_named_and_nothing_starts() {
    let workspace = Workspace::new("unreachable").await;
    let kubeconfig = std::fs::read_to_string(workspace.path().join("kubeconfig")).unwrap();
    std::fs::write(
        workspace.path().join("kubeconfig"),
        kubeconfig.replace(&workspace.cluster.server, "https://127.0.0.1:9"),
    )
    .unwrap();
    let output = workspace
        .gantry("deploy", &manifests(&web("v1").await, "v1", false), None)
        .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("cannot reach the cluster API at"),
        "{}",
        text(&output)
    );
    assert!(workspace.history().await.is_empty());
}
