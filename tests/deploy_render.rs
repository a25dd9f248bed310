//! The deploy phase without a cluster: the release is rendered (placeholders, images pinned by digest, apply order) and nothing is applied.

use std::collections::BTreeMap;

use gantry::adapters::runner::{Runner, SharedBuffer};
use gantry::app::frame::RunContext;
use gantry::cancel::Cancel;
use gantry::config::{Config, RawInputs, ValidationContext};
use gantry::context::GitHubContext;
use gantry::pipeline::{Command, Decision, Handoff, PhaseStatus};

const MANIFESTS: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata:
      labels: {app: api, commit: "${gantry.short-sha}"}
    spec:
      containers:
      - name: api
        image: 127.0.0.1:5000/shop/api:latest
        env:
        - {name: DATABASE_HOST, value: "${tf.database_endpoint}"}
        - {name: LITERAL, value: "$${not.a.placeholder}"}
      - {name: proxy, image: "envoyproxy/envoy:v1.30"}
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec: {selector: {app: api}, ports: [{port: 80}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shared}
data: {environment: "${gantry.environment}"}
"#;

fn setup(manifests: &str) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("infra")).unwrap();
    std::fs::write(
        dir.path().join("infra/main.tf"),
        "output \"x\" { value = 1 }\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("k8s")).unwrap();
    std::fs::write(dir.path().join("k8s/app.yaml"), manifests).unwrap();
    let inputs: BTreeMap<&str, &str> = BTreeMap::from([
        ("INPUT_ENVIRONMENT", "staging"),
        ("INPUT_TERRAFORM-DIRECTORY", "infra"),
        ("INPUT_MANIFESTS", "k8s"),
        ("INPUT_NAMESPACE", "shop"),
    ]);
    let raw = RawInputs::from_env(|name| inputs.get(name).map(|v| v.to_string())).with_defaults();
    let config = Config::validate(
        &raw,
        &ValidationContext {
            workspace: dir.path().to_path_buf(),
            action_mode: false,
            kubeconfig_env: None,
            kubeconfig_roots: Vec::new(),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    (dir, config)
}

/// A checkout, its configuration and a runner capturing the log, from which a `RunContext`
/// for a local deploy of commit 0d1a26e is borrowed.
struct Fixture {
    _dir: tempfile::TempDir,
    config: Config,
    context: GitHubContext,
    decision: Decision,
    log: SharedBuffer,
    runner: Runner,
    cancel: Cancel,
}

impl Fixture {
    fn new(manifests: &str) -> Fixture {
        let (dir, config) = setup(manifests);
        let context = GitHubContext::local(dir.path(), None);
        let (runner, log) = Runner::capturing(false);
        Fixture {
            _dir: dir,
            config,
            context,
            decision: Decision {
                command: Command::Deploy,
                reason: "local run".into(),
                commit: Some("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c".into()),
                pull_request: None,
            },
            log,
            runner,
            cancel: Cancel::never(),
        }
    }

    fn run(&self) -> RunContext<'_> {
        RunContext {
            config: &self.config,
            context: &self.context,
            decision: &self.decision,
            runner: &self.runner,
            cancel: &self.cancel,
        }
    }
}

fn handoff() -> Handoff {
    let mut handoff = Handoff::default();
    handoff.terraform_outputs.insert(
        "database_endpoint".into(),
        serde_json::json!("db.staging.internal:5432"),
    );
    handoff
        .images
        .insert("api".into(), "127.0.0.1:5000/shop/api@sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef".into());
    handoff
}

#[tokio::test]
async fn without_a_cluster_the_release_is_rendered_and_nothing_applied() {
    let fixture = Fixture::new(MANIFESTS);
    let run = fixture.run();
    let handoff = handoff();

    let rendered = gantry::app::deploy::render(&run, &handoff).unwrap();
    let order: Vec<String> = rendered
        .manifests
        .iter()
        .map(|m| m.key.to_string())
        .collect();
    assert_eq!(
        order,
        [
            "ConfigMap/settings (namespace shared)",
            "Service/api (namespace shop)",
            "Deployment/api (namespace shop)"
        ]
    );
    let deployment = &rendered.manifests[2].object;
    let pod = &deployment["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"]["commit"], "0d1a26e");
    let api = &pod["spec"]["containers"][0];
    assert_eq!(api["image"], "127.0.0.1:5000/shop/api@sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef");
    assert_eq!(api["env"][0]["value"], "db.staging.internal:5432");
    assert_eq!(api["env"][1]["value"], "${not.a.placeholder}");
    assert_eq!(
        pod["spec"]["containers"][1]["image"], "envoyproxy/envoy:v1.30",
        "images gantry did not build stay as they are"
    );
    assert_eq!(
        rendered.manifests[0].object["data"]["environment"],
        "staging"
    );
    assert_eq!(rendered.pinned.len(), 1);

    let mut handoff = handoff;
    let result = gantry::app::deploy::run(&run, &mut handoff).await;
    match &result.status {
        PhaseStatus::Skipped { reason } => assert!(
            reason.starts_with("no cluster configured: rendered 3 objects and applied none"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        result
            .notes
            .iter()
            .any(|n| n.contains("| 3 | Deployment | api | shop |")),
        "{:?}",
        result.notes
    );
    let log = fixture.log.contents();
    assert!(
        log.contains("would apply Deployment/api (namespace shop)"),
        "{log}"
    );
    assert!(
        log.contains(
            "127.0.0.1:5000/shop/api:latest pinned to 127.0.0.1:5000/shop/api@sha256:5f70bf18"
        ),
        "{log}"
    );
}

#[tokio::test]
async fn a_placeholder_without_a_value_fails_with_an_annotation_at_its_line() {
    let manifests = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata:\n  db: \"${tf.database_endpoint}\"\n  cache: \"${tf.cache_endpoint}\"\n";
    let fixture = Fixture::new(manifests);
    let run = fixture.run();
    let mut handoff = handoff();
    let result = gantry::app::deploy::run(&run, &mut handoff).await;
    match &result.status {
        PhaseStatus::Failed {
            failure_reason,
            message,
        } => {
            assert_eq!(failure_reason, "invalid-manifests");
            assert!(message.contains("nothing was applied"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let log = fixture.log.contents();
    assert!(
        log.contains("::error title=gantry%3A invalid manifest,file=k8s/app.yaml,line=6::unknown placeholder `${tf.cache_endpoint}`"),
        "{log}"
    );
    assert!(
        result.notes.is_empty(),
        "no release is reported when rendering failed"
    );
}

#[tokio::test]
async fn names_and_namespaces_are_checked_with_their_substituted_values() {
    let manifests = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \"app-${gantry.environment}\", namespace: \"${tf.team_namespace}\"}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: app-staging, namespace: team-a}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: \"${tf.bad_namespace}\"}\n";
    let fixture = Fixture::new(manifests);
    let run = fixture.run();
    let mut handoff = handoff();
    handoff
        .terraform_outputs
        .insert("team_namespace".into(), serde_json::json!("team-a"));
    handoff
        .terraform_outputs
        .insert("bad_namespace".into(), serde_json::json!("Team_B"));
    let errors = gantry::app::deploy::render(&run, &handoff).unwrap_err();
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 2, "{text:#?}");
    assert!(
        text.iter().any(|t| t.contains(
            "app.yaml:5: ConfigMap/app-staging (namespace team-a) is defined twice (also at "
        ) && t.contains("app.yaml:1)")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("app.yaml:9: Service/api names the namespace `Team_B`")),
        "{text:#?}"
    );
}
