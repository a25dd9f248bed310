//! The environment lock on the test bed's real cluster, through the gantry binary: a run paused past its lease (SIGSTOP) while another takes over writes nothing after its deadline, as the API server's audit log shows; `unlock` breaks a stale lock and the history records it; a Lease edited by hand is a clear error and nothing is written.

mod support;

use support::text;

use std::process::{Output, Stdio};
use std::time::Duration;

use gantry::release::ReleaseStatus;
use serde_json::json;
use support::cluster::{audit_writes, runnable_image};
use support::deploy::Checkout;

fn manifests(image: &str, setting: &str, ready_after: u32) -> String {
    format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: web-config}}
data: {{setting: "{setting}"}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: "{image}"
        command: [sh, -c, "trap 'exit 0' TERM; mkdir -p /tmp/www; echo ok > /tmp/www/index.html; httpd -f -p 8080 -h /tmp/www & wait"]
        readinessProbe: {{httpGet: {{path: /index.html, port: 8080}}, periodSeconds: 1, initialDelaySeconds: {ready_after}}}
"#
    )
}

/// A workspace whose runs deploy environment `dev` into one namespace, each run with the
/// kubeconfig of one identity.
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

    /// A ServiceAccount of this namespace with the deployer's rights here, and a kubeconfig for
    /// it: runs of two identities tell their requests apart in the audit log.
    async fn identity(&self, name: &str) -> String {
        let ns = self.ns();
        self.cluster
            .apply(&json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}}))
            .await;
        self.cluster
            .apply(&json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gantry-deployer"},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]}))
            .await;
        let token = self
            .cluster
            .kubectl(&["-n", ns, "create", "token", name, "--duration", "1h"]);
        let base = std::fs::read_to_string(&self.cluster.deployer_kubeconfig).unwrap();
        let mut kubeconfig: serde_yaml_ng::Value = serde_yaml_ng::from_str(&base).unwrap();
        kubeconfig["users"][0]["user"]["token"] = token.trim().into();
        std::fs::write(
            self.path().join(format!("{name}.kubeconfig")),
            serde_yaml_ng::to_string(&kubeconfig).unwrap(),
        )
        .unwrap();
        format!("system:serviceaccount:{ns}:{name}")
    }

    fn command(&self, verb: &str, kubeconfig: &str, extra: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_gantry"));
        cmd.current_dir(self.path())
            .arg(verb)
            .args([
                "--environment",
                "dev",
                "--phases",
                "deploy",
                "--manifests",
                "k8s",
            ])
            .args(["--namespace", self.ns(), "--kubeconfig", kubeconfig])
            .args(["--rollout-timeout", "90s", "--lock-lease-duration", "4s"])
            .args(extra)
            .env_remove("GITHUB_ACTIONS")
            .env_remove("KUBECONFIG")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, verb: &str, kubeconfig: &str, extra: &[&str]) -> Output {
        tokio::time::timeout(
            Duration::from_secs(180),
            self.command(verb, kubeconfig, extra).output(),
        )
        .await
        .expect("gantry finished within 180 s")
        .expect("gantry runs")
    }

    fn write_manifests(&self, text: &str) {
        std::fs::write(self.path().join("k8s/app.yaml"), text).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_paused_past_its_lease_writes_nothing_after_its_deadline() {
    let workspace = Workspace::new("lock-fence").await;
    let ns = workspace.ns().to_string();
    let run_a = workspace.identity("run-a").await;
    let _run_b = workspace.identity("run-b").await;
    let v1 = runnable_image("gantry-test/web", "v1").await.0;
    let v2 = runnable_image("gantry-test/web", "v2").await.0;
    let v3 = runnable_image("gantry-test/web", "v3").await.0;
    workspace.write_manifests(&manifests(&v1, "v1", 0));
    let first = workspace.run("deploy", "run-b.kubeconfig", &[]).await;
    assert!(first.status.success(), "{}", text(&first));

    // Run A deploys a release whose pod is Ready only after 10 s, and is stopped mid-rollout.
    workspace.write_manifests(&manifests(&v2, "v2", 10));
    let a = workspace
        .command("deploy", "run-a.kubeconfig", &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = a.id().unwrap() as i32;
    workspace
        .cluster
        .wait_for(
            "v1",
            "ConfigMap",
            Some(&ns),
            "web-config",
            Duration::from_secs(60),
            |c| c.is_some_and(|c| c["data"]["setting"] == "v2"),
        )
        .await;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);

    // Run B waits out A's lease on its own clock, takes the lock, recovers A's release and
    // deploys its own.
    workspace.write_manifests(&manifests(&v3, "v3", 0));
    let b = workspace.run("deploy", "run-b.kubeconfig", &[]).await;
    assert!(b.status.success(), "{}", text(&b));
    assert!(
        text(&b).contains("took over the environment lock from"),
        "{}",
        text(&b)
    );
    assert!(text(&b).contains("interrupted"), "{}", text(&b));

    // A wakes up and must not write again.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let a = tokio::time::timeout(Duration::from_secs(120), a.wait_with_output())
        .await
        .expect("run A ends")
        .unwrap();
    assert_eq!(a.status.code(), Some(1), "{}", text(&a));
    assert!(
        text(&a).contains("failure-reason=lock-lost"),
        "{}",
        text(&a)
    );

    // From the API server's side: every write of run A was received before its deadline, the
    // last renewal of its Lease plus the lease duration.
    let writes = audit_writes(&run_a, &ns);
    let renewals: Vec<_> = writes
        .iter()
        .filter(|w| w.uri.contains("/leases/gantry.lock.dev") && w.code == 200)
        .collect();
    let deadline = renewals
        .iter()
        .map(|w| w.received)
        .max()
        .expect("run A held the lock")
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(4))
        .unwrap();
    let late: Vec<_> = writes.iter().filter(|w| w.received > deadline).collect();
    assert!(
        late.is_empty(),
        "run A wrote after its deadline {deadline}: {late:?}"
    );
    // The cluster runs B's release and the history says what happened to A's.
    assert_eq!(
        workspace.cluster.history(&ns, "dev").await,
        [
            (1, ReleaseStatus::Superseded),
            (2, ReleaseStatus::Failed),
            (3, ReleaseStatus::Deployed)
        ]
    );
    let config = workspace
        .cluster
        .get("v1", "ConfigMap", Some(&ns), "web-config")
        .await
        .unwrap();
    assert_eq!(config["data"]["setting"], "v3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlock_breaks_a_stale_lock_and_the_history_records_it() {
    let workspace = Workspace::new("lock-unlock").await;
    let ns = workspace.ns().to_string();
    let v1 = runnable_image("gantry-test/web", "v1").await.0;
    workspace.write_manifests(&manifests(&v1, "v1", 0));
    // A run that died holding a lock of an hour.
    let stuck = gantry::release::lease::taken(
        "gantry.lock.dev",
        &ns,
        "dev",
        "octocat https://github.com/o/r/actions/runs/9 #dead",
        k8s_openapi::jiff::Timestamp::now(),
        Duration::from_secs(3600),
        None,
    );
    let mut lease = serde_json::to_value(stuck).unwrap();
    lease["apiVersion"] = json!("coordination.k8s.io/v1");
    lease["kind"] = json!("Lease");
    workspace.cluster.apply(&lease).await;

    let locked = workspace
        .run("deploy", "kubeconfig", &["--lock-timeout", "2s"])
        .await;
    assert_eq!(locked.status.code(), Some(1), "{}", text(&locked));
    assert!(
        text(&locked).contains("locked by octocat https://github.com/o/r/actions/runs/9"),
        "{}",
        text(&locked)
    );
    assert!(text(&locked).contains("gantry unlock"), "{}", text(&locked));

    let unconfirmed = workspace.run("unlock", "kubeconfig", &[]).await;
    assert_eq!(unconfirmed.status.code(), Some(2), "{}", text(&unconfirmed));
    assert!(
        text(&unconfirmed).contains("confirm-unlock"),
        "{}",
        text(&unconfirmed)
    );
    assert_eq!(
        workspace.cluster.lease_holder(&ns, "dev").await.as_deref(),
        Some("octocat https://github.com/o/r/actions/runs/9 #dead"),
        "refused before anything was written"
    );

    let unlocked = workspace
        .run("unlock", "kubeconfig", &["--confirm-unlock", "dev"])
        .await;
    assert!(unlocked.status.success(), "{}", text(&unlocked));
    assert!(
        text(&unlocked).contains("status=unlocked"),
        "{}",
        text(&unlocked)
    );
    assert_eq!(workspace.cluster.lease_holder(&ns, "dev").await, None);

    let deployed = workspace.run("deploy", "kubeconfig", &[]).await;
    assert!(deployed.status.success(), "{}", text(&deployed));
    let history = workspace.run("history", "kubeconfig", &[]).await;
    assert!(history.status.success(), "{}", text(&history));
    assert!(
        text(&history).contains("lock broken by")
            && text(&history)
                .contains("it was held by octocat https://github.com/o/r/actions/runs/9 #dead"),
        "{}",
        text(&history)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_edited_by_hand_is_a_clear_error_and_nothing_is_written() {
    let workspace = Workspace::new("lock-edited").await;
    let ns = workspace.ns().to_string();
    let v1 = runnable_image("gantry-test/web", "v1").await.0;
    workspace.write_manifests(&manifests(&v1, "v1", 0));
    workspace
        .cluster
        .apply(
            &json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "gantry.lock.dev", "namespace": ns},
            "spec": {"holderIdentity": "someone's script"}}),
        )
        .await;
    let started = k8s_openapi::jiff::Timestamp::now();
    let output = workspace.run("deploy", "kubeconfig", &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let all = text(&output);
    assert!(all.contains("failure-reason=lock-invalid"), "{all}");
    assert!(all.contains("set no leaseDurationSeconds"), "{all}");
    assert!(
        all.contains(&format!("kubectl delete lease gantry.lock.dev -n {ns}")),
        "{all}"
    );
    let writes: Vec<_> = audit_writes(support::cluster::DEPLOYER, &ns)
        .into_iter()
        .filter(|w| w.received >= started && !w.uri.contains("dryRun=All"))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
}
