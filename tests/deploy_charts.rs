//! The gantry binary with Helm charts and Kustomize directories against the test bed's real cluster (Helm and Kustomize built by the test bed): a chart rendered with the cluster's capabilities and deployed with gantry's engine, values from files per environment and `set` with placeholders (never substituted in templates), hooks run before and after, test hooks left out, an upgrade that breaks rolled back; and every bad chart or kustomization stopped before anything is written.

mod support;

use support::text;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use gantry::release::ReleaseStatus;
use support::cluster::runnable_image;
use support::deploy::{gantry_deploy, testbed_tool as tool, Checkout};

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A small web chart: a ConfigMap that shows what it was rendered with, a Deployment, a
/// pre-install/pre-upgrade Job, a post-install/post-upgrade Pod deleted when it succeeds, a
/// test hook.
fn chart(root: &Path) {
    write(
        root,
        "charts/web/Chart.yaml",
        "apiVersion: v2\nname: web\nversion: 0.3.0\n",
    );
    write(
        root,
        "charts/web/values.yaml",
        "image: \"\"\nreplicas: 1\nmessage: hello\ncrash: false\n",
    );
    write(
        root,
        "charts/web/templates/configmap.yaml",
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
  labels:
    helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
data:
  message: {{ .Values.message | quote }}
  shell: "${HOME} stays"
  kube: {{ .Capabilities.KubeVersion.Version | quote }}
  policy: {{ .Capabilities.APIVersions.Has "policy/v1/PodDisruptionBudget" | quote }}
  namespace: {{ .Release.Namespace | quote }}
"#,
    );
    write(
        root,
        "charts/web/templates/deployment.yaml",
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: {{ .Values.replicas }}
  selector: {matchLabels: {app: {{ .Release.Name }}}}
  template:
    metadata: {labels: {app: {{ .Release.Name }}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: {{ .Values.image | quote }}
        {{- if .Values.crash }}
        command: [sh, -c, "exit 3"]
        {{- else }}
        command: [sh, -c, "trap 'exit 0' TERM; mkdir -p /tmp/www; echo ok > /tmp/www/index.html; httpd -f -p 8080 -h /tmp/www & wait"]
        {{- end }}
        readinessProbe: {httpGet: {path: /index.html, port: 8080}, periodSeconds: 1}
"#,
    );
    write(
        root,
        "charts/web/templates/migrate.yaml",
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-migrate
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: "-1"
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: migrate
        image: {{ .Values.image | quote }}
        command: [sh, -c, "echo migrated {{ .Values.message }}"]
"#,
    );
    write(
        root,
        "charts/web/templates/post.yaml",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {{ .Release.Name }}-post
  annotations:
    helm.sh/hook: post-install,post-upgrade
    helm.sh/hook-delete-policy: hook-succeeded
spec:
  restartPolicy: Never
  containers:
  - name: post
    image: {{ .Values.image | quote }}
    command: [sh, -c, "echo done"]
"#,
    );
    write(
        root,
        "charts/web/templates/tests/test.yaml",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {{ .Release.Name }}-test
  annotations: {helm.sh/hook: test}
spec:
  restartPolicy: Never
  containers: [{name: t, image: {{ .Values.image | quote }}, command: [wget, -qO-, "{{ .Release.Name }}:8080"]}]
"#,
    );
}

/// A kustomization per environment over a base.
fn kustomization(root: &Path) {
    write(
        root,
        "k8s/base/kustomization.yaml",
        "resources: [settings.yaml]\n",
    );
    write(
        root,
        "k8s/base/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {environment: \"${gantry.environment}\"}\n",
    );
    write(
        root,
        "k8s/overlays/dev/kustomization.yaml",
        "resources: [../../base]\nnamePrefix: dev-\n",
    );
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
        let workspace = Workspace(Checkout::new(prefix).await);
        chart(workspace.path());
        kustomization(workspace.path());
        workspace
    }

    async fn gantry(&self, charts: &str, manifests: &str) -> Output {
        let mut cmd = gantry_deploy(self.path(), self.ns());
        cmd.args(["--charts", charts, "--manifests", manifests])
            .args(["--rollout-timeout", "90s", "--pull-error-tolerance", "1s"])
            .args(["--restart-threshold", "1"]);
        tokio::time::timeout(Duration::from_secs(240), cmd.output())
            .await
            .expect("gantry finished within 240 s")
            .expect("gantry runs")
    }

    async fn get(&self, api_version: &str, kind: &str, name: &str) -> Option<serde_json::Value> {
        self.cluster
            .get(api_version, kind, Some(self.ns()), name)
            .await
    }
}

const CHART: &str = "- name: web\n  chart: charts/web\n  values: ['charts/values-{environment}.yaml']\n  set: {message: 'env ${gantry.environment}'}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_and_a_kustomization_deploy_with_hooks_upgrade_and_roll_back() {
    let workspace = Workspace::new("charts").await;
    let image = runnable_image("gantry-test/web", "v1").await.0;
    write(
        workspace.path(),
        "charts/values-dev.yaml",
        &format!("image: \"{image}\"\n"),
    );
    let first = workspace.gantry(CHART, "k8s/overlays/{environment}").await;
    assert!(first.status.success(), "{}", text(&first));
    let log = text(&first);
    assert!(
        log.contains(
            "chart `web`: web 0.3.0 rendered into 2 objects and 2 hooks, 1 test hooks left out"
        ),
        "{log}"
    );
    assert!(log.contains("pre-install hook Job/"), "{log}");
    assert!(log.contains("post-install hook Pod/"), "{log}");
    // Values: the file for the environment, then `set` with its placeholder substituted; the
    // template's own `${HOME}` untouched; the cluster's version and APIs seen by the chart.
    let config = workspace
        .get("v1", "ConfigMap", "web-config")
        .await
        .unwrap();
    assert_eq!(config["data"]["message"], "env dev");
    assert_eq!(config["data"]["shell"], "${HOME} stays");
    assert!(
        config["data"]["kube"]
            .as_str()
            .unwrap()
            .starts_with("v1.35"),
        "{config}"
    );
    assert_eq!(config["data"]["policy"], "true");
    assert_eq!(config["data"]["namespace"], workspace.ns());
    assert_eq!(
        config["metadata"]["annotations"]["gantry.dev/chart"], "web",
        "{config}"
    );
    // The kustomization, built and substituted like manifests.
    let settings = workspace
        .get("v1", "ConfigMap", "dev-settings")
        .await
        .expect("the kustomization's ConfigMap");
    assert_eq!(settings["data"]["environment"], "dev");
    // Hooks: the Job ran and stays (Helm's default policy); the Pod was deleted when it
    // succeeded; the test hook never ran.
    let job = workspace
        .get("batch/v1", "Job", "web-migrate")
        .await
        .unwrap();
    assert!(
        job["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Complete" && c["status"] == "True"),
        "{job}"
    );
    assert!(workspace.get("v1", "Pod", "web-post").await.is_none());
    assert!(workspace.get("v1", "Pod", "web-test").await.is_none());
    // Hooks are not part of the release record.
    let releases = workspace.cluster.releases(workspace.ns(), "dev").await;
    let recorded: Vec<String> = releases[0]
        .manifests
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!recorded.iter().any(|name| name.starts_with("web-migrate")));
    assert!(recorded.contains(&"web-config".to_string()), "{recorded:?}");

    // An upgrade: pre-upgrade runs the Job again (a new one), post-upgrade after health.
    let first_job = job["metadata"]["uid"].clone();
    let second = workspace
        .gantry(
            &CHART.replace("env ${gantry.environment}", "second"),
            "k8s/overlays/{environment}",
        )
        .await;
    assert!(second.status.success(), "{}", text(&second));
    let log = text(&second);
    assert!(log.contains("pre-upgrade hook Job/"), "{log}");
    assert!(log.contains("post-upgrade hook Pod/"), "{log}");
    let job = workspace
        .get("batch/v1", "Job", "web-migrate")
        .await
        .unwrap();
    assert_ne!(job["metadata"]["uid"], first_job);
    assert_eq!(
        workspace
            .get("v1", "ConfigMap", "web-config")
            .await
            .unwrap()["data"]["message"],
        "second"
    );

    // An upgrade that breaks the chart: rolled back, no post-upgrade hook, the run fails.
    write(
        workspace.path(),
        "charts/values-dev.yaml",
        &format!("image: \"{image}\"\ncrash: true\n"),
    );
    let broken = workspace
        .gantry(
            &CHART.replace("env ${gantry.environment}", "broken"),
            "k8s/overlays/{environment}",
        )
        .await;
    assert!(!broken.status.success(), "{}", text(&broken));
    let log = text(&broken);
    assert!(!log.contains("post-upgrade hook Pod/"), "{log}");
    assert_eq!(
        workspace
            .get("v1", "ConfigMap", "web-config")
            .await
            .unwrap()["data"]["message"],
        "second",
        "{log}"
    );
    let deployment = workspace.get("apps/v1", "Deployment", "web").await.unwrap();
    assert!(
        deployment["spec"]["template"]["spec"]["containers"][0]["command"][2]
            .as_str()
            .unwrap()
            .contains("httpd"),
        "{deployment}"
    );
    assert_eq!(
        workspace.cluster.history(workspace.ns(), "dev").await,
        [
            (1, ReleaseStatus::Superseded),
            (2, ReleaseStatus::Deployed),
            (3, ReleaseStatus::RolledBack)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_charts_and_kustomizations_stop_the_run_before_anything_is_written() {
    let workspace = Workspace::new("badcharts").await;
    let image = runnable_image("gantry-test/web", "v1").await.0;
    write(
        workspace.path(),
        "charts/values-dev.yaml",
        &format!("image: \"{image}\"\n"),
    );
    let good = "k8s/overlays/{environment}";
    let cases: Vec<(&str, String, &str, Vec<&str>)> = vec![
        (
            "a template that does not render",
            CHART.to_string(),
            good,
            vec!["chart `web` does not render", "templates/broken.yaml"],
        ),
        (
            "a missing values file",
            CHART.replace("values-{environment}", "values-{environment}-extra"),
            good,
            vec![
                "values file `charts/values-dev-extra.yaml` does not exist",
                "for the environment `dev`",
            ],
        ),
        (
            "an unknown placeholder in set",
            CHART.replace("${gantry.environment}", "${gantry.nothing}"),
            good,
            vec!["unknown placeholder `${gantry.nothing}`"],
        ),
        (
            "a Terraform output without infra",
            CHART.replace("${gantry.environment}", "${tf.db_host}"),
            good,
            vec!["`${tf.db_host}` refers to a Terraform output, but the infra phase does not run"],
        ),
        (
            "a chart version that does not exist",
            format!("{CHART}  version: 9.9.9\n"),
            good,
            vec!["`version` is 9.9.9, but the chart at", "is version 0.3.0"],
        ),
        (
            "a kustomization whose base is missing",
            CHART.to_string(),
            "k8s/overlays/missing-base",
            vec!["kustomize build", "k8s/overlays/missing-base"],
        ),
        (
            "an unknown placeholder in a kustomization",
            CHART.to_string(),
            "k8s/overlays/typo",
            vec![
                "unknown placeholder `${gantry.enviroment}` in what the kustomization builds",
                "k8s/overlays/typo/kustomization.yaml",
            ],
        ),
        (
            "a hook gantry does not run",
            CHART.to_string(),
            good,
            vec!["`pre-delete` is not run by gantry", "Job/web-cleanup"],
        ),
        (
            "a hook the API server refuses",
            CHART.to_string(),
            good,
            vec![
                "pre-flight found 1 problem; nothing was applied",
                "dry run: chart `web`: hook Job/web-refused",
                "restartPolicy",
            ],
        ),
    ];
    write(
        workspace.path(),
        "k8s/overlays/missing-base/kustomization.yaml",
        "resources: [../../nowhere]\n",
    );
    write(
        workspace.path(),
        "k8s/overlays/typo/kustomization.yaml",
        "resources: [typo.yaml]\n",
    );
    write(
        workspace.path(),
        "k8s/overlays/typo/typo.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: typo}\ndata: {environment: \"${gantry.enviroment}\"}\n",
    );
    for (what, charts, manifests, expected) in cases {
        let broken = match what {
            "a template that does not render" => Some((
                "charts/web/templates/broken.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {x: {{ .Values.missing.deeper }}}\n",
            )),
            "a hook the API server refuses" => Some((
                "charts/web/templates/refused.yaml",
                "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: web-refused\n  annotations: {helm.sh/hook: pre-install}\nspec: {template: {spec: {restartPolicy: Always, containers: [{name: c, image: x}]}}}\n",
            )),
            "a hook gantry does not run" => Some((
                "charts/web/templates/cleanup.yaml",
                "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: web-cleanup\n  annotations: {helm.sh/hook: pre-delete}\nspec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: x}]}}}\n",
            )),
            _ => None,
        };
        if let Some((path, text)) = broken {
            write(workspace.path(), path, text);
        }
        let output = workspace.gantry(&charts, manifests).await;
        if let Some((path, _)) = broken {
            std::fs::remove_file(workspace.path().join(path)).unwrap();
        }
        let log = text(&output);
        assert!(!output.status.success(), "{what}: {log}");
        for fragment in expected {
            assert!(log.contains(fragment), "{what}: `{fragment}` not in\n{log}");
        }
        // Input refused before the deploy phase, or the deploy phase's pre-flight.
        assert!(
            log.contains("gantry did nothing") || log.contains("nothing was applied"),
            "{what}: {log}"
        );
        assert!(
            workspace
                .cluster
                .history(workspace.ns(), "dev")
                .await
                .is_empty(),
            "{what}: nothing may be written"
        );
        assert!(
            workspace
                .get("v1", "ConfigMap", "web-config")
                .await
                .is_none(),
            "{what}: nothing may be applied"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helm_release_is_taken_over_without_restarting_its_pods() {
    let workspace = Workspace::new("adopt").await;
    let image = runnable_image("gantry-test/web", "v1").await.0;
    write(
        workspace.path(),
        "charts/values-dev.yaml",
        &format!("image: \"{image}\"\nmessage: env dev\n"),
    );
    // Helm installs the chart (running its pre-install and post-install hooks).
    let helm = std::process::Command::new(tool("GANTRY_TEST_HELM"))
        .current_dir(workspace.path())
        .args([
            "upgrade",
            "--install",
            "web",
            "charts/web",
            "--wait",
            "--timeout",
            "120s",
        ])
        .args(["-f", "charts/values-dev.yaml", "-n", workspace.ns()])
        .args(["--kubeconfig", "kubeconfig"])
        .env("HELM_CACHE_HOME", workspace.path().join(".helm/cache"))
        .env("HELM_CONFIG_HOME", workspace.path().join(".helm/config"))
        .env("HELM_DATA_HOME", workspace.path().join(".helm/data"))
        .output()
        .expect("helm runs");
    assert!(helm.status.success(), "{}", text(&helm));
    let pods = |pods: Vec<serde_json::Value>| {
        let mut uids: Vec<String> = pods
            .iter()
            .filter(|p| p["metadata"]["labels"]["app"] == "web")
            .map(|p| p["metadata"]["uid"].as_str().unwrap().to_string())
            .collect();
        uids.sort();
        uids
    };
    let before = pods(
        workspace
            .cluster
            .list("v1", "Pod", Some(workspace.ns()))
            .await,
    );
    assert!(!before.is_empty());
    let replica_sets = |sets: Vec<serde_json::Value>| {
        let mut uids: Vec<String> = sets
            .iter()
            .map(|s| s["metadata"]["uid"].as_str().unwrap().to_string())
            .collect();
        uids.sort();
        uids
    };
    let sets_before = replica_sets(
        workspace
            .cluster
            .list("apps/v1", "ReplicaSet", Some(workspace.ns()))
            .await,
    );
    let template_before =
        workspace.get("apps/v1", "Deployment", "web").await.unwrap()["spec"]["template"].clone();

    // The same chart and values through gantry, taking the Helm release over.
    let mut cmd = gantry_deploy(workspace.path(), workspace.ns());
    cmd.arg(
        "--charts=- {name: web, chart: charts/web, values: ['charts/values-{environment}.yaml']}",
    )
    .args(["--adopt-helm-release", "web", "--rollout-timeout", "90s"]);
    let adopted = tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .expect("gantry finished within 240 s")
        .expect("gantry runs");
    let log = text(&adopted);
    assert!(adopted.status.success(), "{log}");
    assert!(
        log.contains("taking over 2 objects of the Helm release `web`"),
        "{log}"
    );
    assert!(log.contains("kept the image Helm runs"), "{log}");
    // Taken over as an upgrade: the pre-upgrade hook runs, not pre-install.
    assert!(log.contains("pre-upgrade hook Job/"), "{log}");
    assert!(!log.contains("pre-install hook"), "{log}");
    // Nothing restarted or recreated; the Deployment's spec did not change.
    let after = pods(
        workspace
            .cluster
            .list("v1", "Pod", Some(workspace.ns()))
            .await,
    );
    assert_eq!(before, after, "{log}");
    let deployment = workspace.get("apps/v1", "Deployment", "web").await.unwrap();
    // The same template and ReplicaSet: no rollout (the generation moves: a Deployment's
    // annotations count, as they are copied to its ReplicaSets).
    assert_eq!(
        deployment["spec"]["template"], template_before,
        "{deployment}"
    );
    assert_eq!(
        replica_sets(
            workspace
                .cluster
                .list("apps/v1", "ReplicaSet", Some(workspace.ns()))
                .await
        ),
        sets_before,
        "{log}"
    );
    // gantry's field manager owns what it applied; the release is gantry's.
    let managers: Vec<&str> = deployment["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(
        managers.contains(&gantry::release::FIELD_MANAGER),
        "{managers:?}"
    );
    assert_eq!(
        workspace.cluster.history(workspace.ns(), "dev").await,
        [(1, ReleaseStatus::Deployed)]
    );
    // Helm's release records are left untouched.
    let helm_records = workspace
        .cluster
        .list("v1", "Secret", Some(workspace.ns()))
        .await
        .into_iter()
        .filter(|s| s["metadata"]["labels"]["owner"] == "helm")
        .count();
    assert_eq!(helm_records, 1);
}

/// Runs the test bed's Helm in the workspace with its own homes.
fn helm(workspace: &Workspace, args: &[&str]) -> Output {
    let output = std::process::Command::new(tool("GANTRY_TEST_HELM"))
        .current_dir(workspace.path())
        .args(args)
        .env("HELM_CACHE_HOME", workspace.path().join(".helm/cache"))
        .env("HELM_CONFIG_HOME", workspace.path().join(".helm/config"))
        .env("HELM_DATA_HOME", workspace.path().join(".helm/data"))
        .output()
        .expect("helm runs");
    assert!(output.status.success(), "helm {args:?}: {}", text(&output));
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packaged_and_oci_charts_are_rendered_and_a_missing_version_writes_nothing() {
    let workspace = Workspace::new("ocichart").await;
    let image = runnable_image("gantry-test/web", "v1").await.0;
    write(
        workspace.path(),
        "charts/values-dev.yaml",
        &format!("image: \"{image}\"\n"),
    );
    helm(&workspace, &["package", "charts/web", "-d", "dist"]);
    // A packaged chart (.tgz) into a namespace of its own, which gantry creates.
    let own = format!("{}-tgz", workspace.ns());
    let packaged = workspace
        .gantry(
            &format!("- {{name: web, chart: dist/web-0.3.0.tgz, namespace: {own}, values: ['charts/values-{{environment}}.yaml']}}"),
            "k8s/overlays/{environment}",
        )
        .await;
    let log = text(&packaged);
    let in_own = workspace
        .cluster
        .get("v1", "ConfigMap", Some(&own), "web-config")
        .await;
    workspace
        .cluster
        .kubectl(&["delete", "namespace", &own, "--wait=false"]);
    assert!(packaged.status.success(), "{log}");
    assert!(
        log.contains("chart `web`: web 0.3.0 rendered into 2 objects"),
        "{log}"
    );
    assert_eq!(
        in_own.expect("the chart's ConfigMap in its namespace")["data"]["namespace"],
        own.as_str()
    );
    // The same chart from an OCI registry (the test bed's plain registry on loopback).
    let registry =
        std::env::var("GANTRY_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let repository = format!("oci://{registry}/gantry-test-charts/{}", workspace.ns());
    helm(
        &workspace,
        &["push", "dist/web-0.3.0.tgz", &repository, "--plain-http"],
    );
    let oci = workspace
        .gantry(
            &format!("- {{name: web, chart: '{repository}/web', version: 0.3.0, values: ['charts/values-{{environment}}.yaml']}}"),
            "k8s/overlays/{environment}",
        )
        .await;
    let log = text(&oci);
    assert!(oci.status.success(), "{log}");
    assert!(
        log.contains("chart `web`: web 0.3.0 rendered into 2 objects"),
        "{log}"
    );
    // A version the registry does not have: stopped before anything is written.
    let before = workspace.cluster.history(workspace.ns(), "dev").await;
    let missing = workspace
        .gantry(
            &format!("- {{name: web, chart: '{repository}/web', version: 9.9.9, values: ['charts/values-{{environment}}.yaml']}}"),
            "k8s/overlays/{environment}",
        )
        .await;
    let log = text(&missing);
    assert!(!missing.status.success(), "{log}");
    assert!(log.contains("chart `web` does not render"), "{log}");
    assert!(log.contains("9.9.9"), "{log}");
    assert!(log.contains("nothing was applied"), "{log}");
    assert_eq!(
        workspace.cluster.history(workspace.ns(), "dev").await,
        before
    );
}
