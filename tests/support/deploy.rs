//! Deploy settings and the engine harness shared by the deploy tests on the real cluster.

use std::sync::Arc;
use std::time::Duration;

use gantry::adapters::kube::Cluster;
use gantry::adapters::runner::{Runner, SharedBuffer};
use gantry::app::deploy::{Ending, Engine, Live, Origin, Outcome, Settings};
use gantry::cancel::Cancel;
use gantry::cancel::CancelHandle;
use gantry::release::ReleaseStatus;
use gantry::rollout::Tolerances;
use serde_json::{json, Value};

use super::apiproxy::{token_kubeconfig, ApiProxy};
use super::cluster::{runnable_image, web_container, TestCluster, TestNamespace, DEPLOYER};

/// Settings for environment `dev` with records in `namespace`, tuned for the test bed's real
/// cluster: a short lock wait, fail-fast on the first restart or pull error (real pods fail in
/// a second or two), and a rollout timeout that only a hang reaches.
pub fn settings(namespace: &str) -> Settings {
    Settings {
        namespace: namespace.into(),
        rollout_timeout: Duration::from_secs(120),
        rollback: true,
        prune: true,
        force_conflicts: false,
        history_max: 10,
        lock_timeout: Duration::from_secs(2),
        // Long enough that a test process starved of CPU on two cores never fences itself.
        lease_duration: Duration::from_secs(15),
        apply_concurrency: 4,
        adopt_helm_release: None,
        chart_namespaces: Vec::new(),
        tolerances: Tolerances {
            pull_error: Duration::from_secs(1),
            restart_threshold: 0,
            unschedulable: Duration::from_secs(10),
        },
    }
}

pub const ENV: &str = "dev";

pub fn config_map(ns: &str, name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "data": {"setting": value}})
}

pub fn service(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
}

/// A release in apply order: ConfigMap, Service, Deployment (2 replicas of `container`).
pub fn release_with(ns: &str, container: Value, setting: &str) -> Vec<Value> {
    vec![
        config_map(ns, "web-config", setting),
        service(ns, "web"),
        super::cluster::deployment(ns, "web", 2, container),
    ]
}

/// The healthy web image of version `tag`, and a release of it.
pub async fn web(tag: &str) -> String {
    runnable_image("gantry-test/web", tag).await.0
}

/// A tag that was never pushed: the kubelet's pull fails for real.
pub fn missing_image() -> String {
    format!(
        "127.0.0.1:5000/gantry-test/web:{}",
        super::cluster::unique_name("missing")
    )
}

/// A deploy engine on the test bed's cluster in a namespace of its own, as the deployer,
/// through the recording and fault-injecting proxy.
pub struct Harness {
    pub cluster: TestCluster,
    pub ns: TestNamespace,
    pub proxy: ApiProxy,
    pub gantry: Arc<Cluster>,
    pub runner: Runner,
    pub log: SharedBuffer,
    pub cancel: Cancel,
    pub cancel_handle: CancelHandle,
    pub settings: Settings,
}

impl Harness {
    pub async fn new(prefix: &str) -> Harness {
        let cluster = TestCluster::connect().await;
        let ns = cluster.namespace(prefix).await;
        let (server, ca, token) = token_kubeconfig(&cluster.deployer_kubeconfig);
        let proxy = ApiProxy::start(&server, &ca).await;
        let (client, traffic) = proxy.counted_client(&token).await;
        let gantry = Arc::new(Cluster::new(client, DEPLOYER).counted(traffic));
        let (runner, log) = Runner::capturing(false);
        let (cancel_handle, cancel) = Cancel::new();
        let settings = settings(&ns.name);
        Harness {
            cluster,
            ns,
            proxy,
            gantry,
            runner,
            log,
            cancel,
            cancel_handle,
            settings,
        }
    }

    pub fn ns(&self) -> &str {
        &self.ns.name
    }

    pub fn engine(&self) -> Engine<'_, Live> {
        Engine {
            target: Live::new(self.gantry.clone()),
            environment: ENV.into(),
            settings: self.settings.clone(),
            runner: &self.runner,
            cancel: &self.cancel,
            me: "test-run #1".into(),
        }
    }

    pub async fn deploy(&self, objects: Vec<Value>) -> Outcome {
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

    pub async fn release(&self, tag: &str, setting: &str) -> Vec<Value> {
        release_with(self.ns(), web_container("web", &web(tag).await), setting)
    }

    pub async fn object(&self, api_version: &str, kind: &str, name: &str) -> Option<Value> {
        self.cluster
            .get(api_version, kind, Some(self.ns()), name)
            .await
    }

    pub async fn image_of(&self, name: &str) -> String {
        self.object("apps/v1", "Deployment", name).await.unwrap()["spec"]["template"]["spec"]
            ["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn history(&self) -> Vec<(u64, ReleaseStatus)> {
        self.cluster.history(self.ns(), ENV).await
    }

    pub async fn lease_holder(&self) -> Option<String> {
        self.cluster.lease_holder(self.ns(), ENV).await
    }

    pub fn named(&self, kind: &str, name: &str) -> String {
        format!("{kind}/{name} (namespace {})", self.ns())
    }
}

pub fn assert_succeeded(outcome: &Outcome, log: &SharedBuffer) {
    assert_eq!(
        outcome.ending,
        Ending::Succeeded,
        "log:\n{}",
        log.contents()
    );
}

/// A checkout for runs of the gantry binary: a temporary directory with `k8s/` and the
/// deployer's `kubeconfig`, deploying into its own namespace of the test bed's cluster.
pub struct Checkout {
    pub dir: tempfile::TempDir,
    pub cluster: TestCluster,
    pub ns: TestNamespace,
}

impl Checkout {
    pub async fn new(prefix: &str) -> Checkout {
        let cluster = TestCluster::connect().await;
        let ns = cluster.namespace(prefix).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("k8s")).unwrap();
        std::fs::copy(&cluster.deployer_kubeconfig, dir.path().join("kubeconfig")).unwrap();
        Checkout { dir, cluster, ns }
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn ns(&self) -> &str {
        &self.ns.name
    }
}

/// The path of a test bed tool (`GANTRY_TEST_HELM`, `GANTRY_TEST_KUSTOMIZE`); unset fails the
/// test with how to start the test bed.
pub fn testbed_tool(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} is not set: start the test bed (bash .ci/testbed up) and source /var/tmp/gantry-testbed/env")
    })
}

/// `gantry deploy` of the deploy phase for environment dev in `dir` (a checkout holding the
/// deployer's `kubeconfig`), into `namespace`, rendering with the test bed's Helm and Kustomize,
/// outside GitHub Actions; the caller adds its inputs.
pub fn gantry_deploy(dir: &std::path::Path, namespace: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_gantry"));
    cmd.current_dir(dir)
        .arg("deploy")
        .args(["--environment", "dev", "--phases", "deploy"])
        .args(["--namespace", namespace, "--kubeconfig", "kubeconfig"])
        .env("GANTRY_HELM", testbed_tool("GANTRY_TEST_HELM"))
        .env("GANTRY_KUSTOMIZE", testbed_tool("GANTRY_TEST_KUSTOMIZE"))
        .env_remove("GITHUB_ACTIONS")
        .env_remove("KUBECONFIG")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .kill_on_drop(true);
    cmd
}
