//! The gantry binary against the fake API server: a run killed at every step boundary of a deploy and of a rollback (an injected crash point that aborts the process like SIGKILL) is recognised and repaired by the next run; bad manifests and unreachable clusters stop the run before any write.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use gantry::release::{self, ReleaseStatus};
use serde_json::json;
use support::fake_apiserver::{Behavior, FakeApiServer};

const NS: &str = "shop";

fn manifests(tag: &str, extra_service: bool) -> String {
    let mut text = format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: web-config}}
data: {{setting: "{tag}"}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec: {{selector: {{app: web}}, ports: [{{port: 80}}]}}
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
      containers:
      - {{name: web, image: "127.0.0.1:1/shop/web:{tag}"}}
"#
    );
    if extra_service {
        text.push_str(
            "---\napiVersion: v1\nkind: Service\nmetadata: {name: added-by-v2}\nspec: {selector: {app: web}, ports: [{port: 81}]}\n",
        );
    }
    text
}

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new(fake: &FakeApiServer) -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("k8s")).unwrap();
        std::fs::write(dir.path().join("kubeconfig"), fake.kubeconfig_yaml()).unwrap();
        Workspace { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
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
            .args(["--namespace", NS, "--kubeconfig", "kubeconfig"])
            .args(["--rollout-timeout", "30s", "--pull-error-tolerance", "0s"])
            .env_remove("GITHUB_ACTIONS")
            .env_remove("KUBECONFIG")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .kill_on_drop(true);
        if let Some(step) = crash_at {
            cmd.env("GANTRY_TEST_CRASH_AT", step);
        }
        tokio::time::timeout(Duration::from_secs(90), cmd.output())
            .await
            .expect("gantry finished within 90 s")
            .expect("gantry runs")
    }
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

use support::deploy::history;

fn image(fake: &FakeApiServer) -> String {
    fake.get("apps/v1", "Deployment", Some(NS), "web").unwrap()["spec"]["template"]["spec"]
        ["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
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

/// What SIGKILL leaves and time then does: the Lease is no longer renewed and expires.
fn let_the_lease_expire(fake: &FakeApiServer) {
    if let Some(mut lease) = fake.get(
        "coordination.k8s.io/v1",
        "Lease",
        Some(NS),
        &release::lease_name("dev"),
    ) {
        if lease["spec"]["holderIdentity"].as_str().is_some() {
            lease["spec"]["renewTime"] = json!("2020-01-01T00:00:00.000000Z");
            lease["spec"]["acquireTime"] = json!("2020-01-01T00:00:00.000000Z");
            fake.put_object(lease);
        }
    }
}

async fn deployed_v1() -> (FakeApiServer, Workspace) {
    let fake = FakeApiServer::start().await;
    let workspace = Workspace::new(&fake);
    let first = workspace
        .gantry("deploy", &manifests("v1", false), None)
        .await;
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(history(&fake), [(1, ReleaseStatus::Deployed)]);
    (fake, workspace)
}

/// Kills a deploy of a healthy v2 at `step`, then reruns it; returns the rerun's output.
async fn kill_deploy_then_rerun(step: &str) -> (FakeApiServer, Output) {
    let (fake, workspace) = deployed_v1().await;
    let killed = workspace
        .gantry("deploy", &manifests("v2", true), Some(step))
        .await;
    assert_killed_at(&killed, step);
    let_the_lease_expire(&fake);
    let rerun = workspace
        .gantry("deploy", &manifests("v2", true), None)
        .await;
    assert!(rerun.status.success(), "{}", text(&rerun));
    assert_eq!(image(&fake), "127.0.0.1:1/shop/web:v2");
    assert!(fake.get("v1", "Service", Some(NS), "added-by-v2").is_some());
    let lease = fake
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            Some(NS),
            &release::lease_name("dev"),
        )
        .unwrap();
    assert!(lease["spec"]["holderIdentity"].is_null(), "{lease}");
    (fake, rerun)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_the_pending_record_nothing_changed_and_the_rerun_deploys() {
    let (fake, _) = kill_deploy_then_rerun("before-pending-record").await;
    assert_eq!(
        history(&fake),
        [(1, ReleaseStatus::Superseded), (2, ReleaseStatus::Deployed)]
    );
}

async fn assert_interrupted_release_2_recovered(step: &str) {
    let (fake, rerun) = kill_deploy_then_rerun(step).await;
    assert_eq!(
        history(&fake),
        [
            (1, ReleaseStatus::Superseded),
            (2, ReleaseStatus::Failed),
            (3, ReleaseStatus::Deployed)
        ],
        "{}",
        text(&rerun)
    );
    let record = fake
        .list("v1", "Secret")
        .into_iter()
        .find(|s| s["metadata"]["name"] == release::secret_name("dev", 2))
        .map(|s| release::from_secret(&s).unwrap())
        .unwrap();
    assert!(
        record.description.contains("interrupted"),
        "{}",
        record.description
    );
    assert!(text(&rerun).contains("interrupted"), "{}", text(&rerun));
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
    let (fake, rerun) = kill_deploy_then_rerun("before-superseded-record").await;
    // Release 2 was recorded healthy: the rerun repairs release 1's record and, finding
    // exactly release 2 deployed, records nothing new.
    assert_eq!(
        history(&fake),
        [(1, ReleaseStatus::Superseded), (2, ReleaseStatus::Deployed)],
        "{}",
        text(&rerun)
    );
    assert!(text(&rerun).contains("already deployed with exactly these manifests"));
}

/// Kills the automatic rollback of a broken v2 at `step`, then deploys a healthy v3.
async fn kill_rollback_then_deploy(step: &str) {
    let (fake, workspace) = deployed_v1().await;
    fake.set_image_behavior("web:v2", Behavior::ImagePullError);
    let killed = workspace
        .gantry("deploy", &manifests("v2", true), Some(step))
        .await;
    assert_killed_at(&killed, step);
    let_the_lease_expire(&fake);
    let rerun = workspace
        .gantry("deploy", &manifests("v3", false), None)
        .await;
    assert!(rerun.status.success(), "{}", text(&rerun));
    assert_eq!(image(&fake), "127.0.0.1:1/shop/web:v3");
    assert!(fake.get("v1", "Service", Some(NS), "added-by-v2").is_none());
    assert_eq!(
        history(&fake),
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
    let (fake, workspace) = deployed_v1().await;
    let second = workspace
        .gantry("deploy", &manifests("v2", true), None)
        .await;
    assert!(second.status.success(), "{}", text(&second));
    let killed = workspace.gantry("rollback", "", Some("mid-rollback")).await;
    assert_killed_at(&killed, "mid-rollback");
    let_the_lease_expire(&fake);
    let listed = workspace.gantry("history", "", None).await;
    assert!(listed.status.success(), "{}", text(&listed));
    // The next run (any verb that takes the lock) finishes the interrupted rollback first.
    let rerun = workspace
        .gantry("deploy", &manifests("v1", false), None)
        .await;
    assert!(rerun.status.success(), "{}", text(&rerun));
    assert_eq!(image(&fake), "127.0.0.1:1/shop/web:v1");
    assert!(fake.get("v1", "Service", Some(NS), "added-by-v2").is_none());
    // Release 3 (the rollback to 1) was finished and is current; the deploy of v1 that
    // followed is exactly release 3, so it records nothing new.
    assert_eq!(
        history(&fake),
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
    let fake = FakeApiServer::start().await;
    let workspace = Workspace::new(&fake);
    let mut text_in = manifests("v1", false);
    text_in.push_str("---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n");
    let output = workspace.gantry("deploy", &text_in, None).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let all = text(&output);
    assert!(
        all.contains("Widget (example.com/v1) is not a kind the cluster serves"),
        "{all}"
    );
    assert!(all.contains("app.yaml"), "{all}");
    assert!(fake
        .get("v1", "ConfigMap", Some(NS), "web-config")
        .is_none());
    assert!(
        fake.requests().iter().all(|r| r.method == "GET"),
        "only reads before the error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_is_named_and_nothing_starts() {
    let fake = FakeApiServer::start().await;
    let workspace = Workspace::new(&fake);
    std::fs::write(
        workspace.path().join("kubeconfig"),
        fake.kubeconfig_yaml()
            .replace(&fake.url(), "http://127.0.0.1:9"),
    )
    .unwrap();
    let output = workspace
        .gantry("deploy", &manifests("v1", false), None)
        .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("cannot reach the cluster API at"),
        "{}",
        text(&output)
    );
    assert!(fake.requests().is_empty());
}
