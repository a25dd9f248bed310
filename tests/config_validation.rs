//! The validation table: every input, good and bad, through both front doors (`INPUT_*` and CLI flags).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gantry::config::{
    BackendConfig, ClusterAccess, CommandChoice, Config, Phase, RawInputs, RepositoryRef,
    ValidationContext, ValidationErrors, INPUTS,
};

/// A repository checkout with everything the good rows refer to.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    for (path, contents) in [
        ("infra/main.tf", "output \"x\" { value = 1 }\n"),
        ("infra/environments/dev.tfvars", "replicas = 2\n"),
        ("infra/backend.hcl", "path = \"state.tfstate\"\n"),
        ("services/api/Dockerfile", "FROM scratch\n"),
        ("services/web/web.Dockerfile", "FROM scratch\n"),
        ("k8s/base/app.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {env: \"${gantry.environment}\", sha: \"${gantry.sha}\"}\n"),
        ("k8s/bad/broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata: x: y\n"),
        ("k8s/bad/noname.yaml", "apiVersion: v1\nkind: Service\nmetadata: {}\n"),
        ("k8s/bad/placeholder.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: p}\ndata:\n  a: ${env.HOME}\n  b: ${tf.db_host}\n  c: ${image.nope}\n"),
        ("k8s/base/svc.yml", "apiVersion: v1\nkind: Service\nmetadata: {name: app}\n"),
        ("k8s/base/README.md", "not a manifest\n"),
        ("k8s/extra.json", "{\"apiVersion\": \"v1\", \"kind\": \"Secret\", \"metadata\": {\"name\": \"extra\"}}\n"),
        ("kube/config", "apiVersion: v1\nclusters: []\n"),
        ("empty/.keep", ""),
        ("charts/db/Chart.yaml", "apiVersion: v2\nname: db\nversion: 0.1.0\n"),
        ("charts/db/templates/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: db}\n"),
        ("charts/db-staging-eu.yaml", "replicas: 1\n"),
    ] {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, contents).unwrap();
    }
    dir
}

fn env_inputs(pairs: &[(&str, &str)]) -> RawInputs {
    let vars: BTreeMap<String, String> = pairs
        .iter()
        .map(|(name, value)| (format!("INPUT_{}", name.to_uppercase()), value.to_string()))
        .collect();
    RawInputs::from_env(|var| vars.get(var).cloned()).with_defaults()
}

fn validate_in(root: &Path, pairs: &[(&str, &str)]) -> Result<Config, ValidationErrors> {
    let mut all = vec![("environment", "dev")];
    all.extend_from_slice(pairs);
    // A later pair for the same input wins, as a later `with:` key would.
    let mut deduped: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in all {
        deduped.insert(k, v);
    }
    let pairs: Vec<(&str, &str)> = deduped.into_iter().collect();
    Config::validate(
        &env_inputs(&pairs),
        &ValidationContext {
            workspace: root.to_path_buf(),
            action_mode: true,
            kubeconfig_env: None,
            kubeconfig_roots: Vec::new(),
        },
    )
}

/// Asserts validation fails naming `input` with a message containing `needle`.
fn assert_rejects(root: &Path, pairs: &[(&str, &str)], input: &str, needle: &str) {
    match validate_in(root, pairs) {
        Ok(_) => panic!("{pairs:?} was accepted; expected a problem with `{input}`"),
        Err(errors) => {
            let found = errors
                .0
                .iter()
                .any(|e| e.input == input && e.message.contains(needle));
            assert!(
                found,
                "{pairs:?}: expected `{input}` to be rejected with {needle:?}, got:\n{errors}"
            );
        }
    }
}

#[test]
fn defaults_give_a_usable_configuration() {
    let ws = workspace();
    let config = validate_in(ws.path(), &[]).expect("defaults are valid");
    assert_eq!(config.command, CommandChoice::Auto);
    assert_eq!(config.environment, "dev");
    assert_eq!(
        config.phases.iter().copied().collect::<Vec<_>>(),
        [Phase::Infra, Phase::Build, Phase::Deploy]
    );
    assert_eq!(config.working_directory, ws.path());
    assert_eq!(config.infra.directory, None);
    assert_eq!(config.infra.parallelism, 10);
    assert_eq!(config.infra.lock_timeout, Duration::from_secs(300));
    assert!(!config.infra.allow_destroy);
    assert!(config.build.images.is_empty());
    assert!(config.build.create_repository && config.build.skip_existing && config.build.push);
    assert_eq!(config.build.concurrency, 2);
    assert_eq!(config.deploy.release.namespace, "default");
    assert_eq!(
        config.deploy.release.rollout_timeout,
        Duration::from_secs(600)
    );
    assert!(
        config.deploy.release.rollback
            && config.deploy.release.prune
            && !config.deploy.release.force_conflicts
    );
    assert_eq!(config.deploy.release.history_max, 10);
    assert_eq!(config.deploy.release.tolerances.restart_threshold, 3);
    assert_eq!(
        config.deploy.release.tolerances.pull_error,
        Duration::from_secs(90)
    );
    assert_eq!(
        config.report.audit_branch.as_deref(),
        Some("gantry/audit/dev")
    );
    assert!(config.report.pr_comment && config.report.github_deployments);
}

#[test]
fn every_input_has_a_good_value_that_is_accepted() {
    let ws = workspace();
    let images = "- name: api\n  repository: team/api\n  context: services/api\n  build-args:\n    RUST_LOG: info\n    WORKERS: 4\n  tags: [latest, v1.2.3]\n  smoke-test: /app --version\n- name: web\n  repository: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/web\n  context: services/web\n  dockerfile: web.Dockerfile\n  target: runtime\n  smoke-test: [\"/bin/true\"]\n";
    let good: Vec<(&str, &str)> = vec![
        ("command", "deploy"),
        ("environment", "staging-eu"),
        ("phases", "infra\nbuild"),
        ("working-directory", "."),
        ("version", "v1.2.3"),
        ("confirm-destroy", "staging-eu"),
        ("confirm-unlock", "staging-eu"),
        ("terraform-binary", "tofu"),
        ("terraform-version", "~> 1.9.0"),
        ("lock-lease-duration", "30s"),
        ("terraform-directory", "infra"),
        (
            "terraform-backend-config",
            "bucket=my-state, key=app.tfstate\nbackend.hcl",
        ),
        ("terraform-var-files", "environments/dev.tfvars"),
        (
            "terraform-vars",
            "replicas=3\ntags={team=\"a\", cost=\"b\"}",
        ),
        ("terraform-parallelism", "20"),
        ("terraform-lock-timeout", "1m30s"),
        ("allow-destroy", "True"),
        ("images", images),
        ("aws-region", "eu-west-1"),
        ("registry", "123456789012"),
        ("registry-endpoint", "127.0.0.1:5000"),
        ("registry-username", "robot"),
        ("registry-password", "s3cr3t-pass"),
        ("aws-endpoint-url", "http://127.0.0.1:5050"),
        ("create-repository", "false"),
        ("repository-tag-immutability", "FALSE"),
        ("repository-scan-on-push", "false"),
        ("skip-existing", "false"),
        ("push", "false"),
        ("build-concurrency", "4"),
        ("manifests", "k8s/base\nk8s/*.json"),
        ("namespace", "team-a"),
        ("adopt-helm-release", "db"),
        (
            "charts",
            "- name: db\n  chart: charts/db\n  values: ['charts/db-{environment}.yaml']\n  set: {replicas: 2}\n",
        ),
        ("kubeconfig", "kube/config"),
        ("rollout-timeout", "15m"),
        ("rollback", "false"),
        ("prune", "false"),
        ("force-conflicts", "true"),
        ("history-max", "25"),
        ("lock-timeout", "2m"),
        ("pull-error-tolerance", "2m"),
        ("restart-threshold", "0"),
        ("unschedulable-tolerance", "10m"),
        ("apply-concurrency", "16"),
        ("github-token", "ghs_exampletoken123"),
        ("pr-comment", "false"),
        ("github-deployments", "false"),
        ("environment-url", "https://staging.example.com"),
        ("audit-branch", "deploys/{environment}"),
    ];
    let covered: Vec<&str> = good.iter().map(|(name, _)| *name).collect();
    for spec in INPUTS {
        if spec.name == "rollback-to" || spec.name == "cluster-name" {
            continue; // covered below: they exclude other good values in this row
        }
        assert!(
            covered.contains(&spec.name),
            "no good value for input `{}`",
            spec.name
        );
    }
    let config = validate_in(ws.path(), &good).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.command, CommandChoice::Deploy);
    assert_eq!(config.environment, "staging-eu");
    assert_eq!(config.phases.len(), 2);
    assert_eq!(config.version.as_deref(), Some("v1.2.3"));
    let infra = &config.infra;
    assert_eq!(infra.directory, Some(ws.path().join("infra")));
    assert_eq!(
        infra.backend_config,
        [
            BackendConfig::Pair {
                key: "bucket".into(),
                value: "my-state".into()
            },
            BackendConfig::Pair {
                key: "key".into(),
                value: "app.tfstate".into()
            },
            BackendConfig::File(ws.path().join("infra/backend.hcl")),
        ]
    );
    assert_eq!(
        infra.var_files,
        [ws.path().join("infra/environments/dev.tfvars")]
    );
    assert_eq!(infra.vars["tags"], "{team=\"a\", cost=\"b\"}");
    assert_eq!(
        (infra.parallelism, infra.lock_timeout, infra.allow_destroy),
        (20, Duration::from_secs(90), true)
    );
    let build = &config.build;
    assert_eq!(build.images.len(), 2);
    assert_eq!(build.images[0].build_args["WORKERS"], "4");
    assert_eq!(build.images[0].tags, ["latest", "v1.2.3"]);
    assert_eq!(
        build.images[1].dockerfile,
        ws.path().join("services/web/web.Dockerfile")
    );
    assert_eq!(
        build.images[1].repository,
        RepositoryRef::Literal("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/web".into())
    );
    assert_eq!(
        build.registry_password.as_ref().map(|s| s.expose()),
        Some("s3cr3t-pass")
    );
    assert!(
        !format!("{build:?}").contains("s3cr3t-pass"),
        "Debug never shows a secret"
    );
    assert!(
        !build.create_repository
            && !build.tag_immutability
            && !build.scan_on_push
            && !build.skip_existing
            && !build.push
    );
    let deploy = &config.deploy;
    assert_eq!(
        deploy.manifest_files,
        [
            ws.path().join("k8s/base/app.yaml"),
            ws.path().join("k8s/base/svc.yml"),
            ws.path().join("k8s/extra.json")
        ],
        "directories are searched for .yaml/.yml/.json only"
    );
    assert_eq!(
        deploy.cluster,
        ClusterAccess::KubeconfigFile(ws.path().join("kube/config"))
    );
    assert_eq!(deploy.release.apply_concurrency, 16);
    assert_eq!(deploy.release.tolerances.restart_threshold, 0);
    assert_eq!(
        config.report.audit_branch.as_deref(),
        Some("deploys/staging-eu")
    );
    assert_eq!(
        config.report.environment_url.as_deref(),
        Some("https://staging.example.com")
    );
    let secrets = config.secrets();
    assert!(secrets.contains(&"s3cr3t-pass") && secrets.contains(&"ghs_exampletoken123"));
}

#[test]
fn cluster_access_forms() {
    let ws = workspace();
    let root = ws.path();
    let eks = validate_in(
        root,
        &[("cluster-name", "prod-eks_1"), ("manifests", "k8s/base")],
    )
    .unwrap();
    assert_eq!(
        eks.deploy.cluster,
        ClusterAccess::Eks {
            cluster_name: "prod-eks_1".into()
        }
    );
    let content = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: https://127.0.0.1:6443}\n";
    let inline = validate_in(root, &[("kubeconfig", content)]).unwrap();
    assert!(matches!(
        inline.deploy.cluster,
        ClusterAccess::KubeconfigContent(_)
    ));
    assert!(
        inline.secrets().contains(&content),
        "inline kubeconfig is a secret"
    );
    let json = r#"{"apiVersion":"v1","kind":"Config","clusters":[{"name":"c","cluster":{"server":"https://127.0.0.1:6443"}}]}"#;
    let inline_json = validate_in(root, &[("kubeconfig", json)]).unwrap();
    assert!(matches!(
        inline_json.deploy.cluster,
        ClusterAccess::KubeconfigContent(_)
    ));
    let from_tf = validate_in(
        root,
        &[
            ("cluster-name", "${tf.cluster_name}"),
            ("terraform-directory", "infra"),
        ],
    )
    .unwrap();
    assert_eq!(
        from_tf.deploy.cluster,
        ClusterAccess::Eks {
            cluster_name: "${tf.cluster_name}".into()
        }
    );
    let rollback = validate_in(root, &[("command", "rollback"), ("rollback-to", "7")]).unwrap();
    assert_eq!(rollback.rollback_to, Some(7));
}

/// Inputs given, the input expected to be rejected, and a phrase of the message.
type BadRow = (
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
);

#[test]
fn bad_values_are_rejected_with_the_input_named_and_a_fix() {
    let ws = workspace();
    let root = ws.path();
    let rows: &[BadRow] = &[
        (&[("command", "ship")], "command", "use one of: auto, deploy"),
        (&[("command", "deplyo")], "command", "did you mean `deploy`"),
        (&[("environment", "Prod")], "environment", "lower-case letters"),
        (&[("environment", "dev_1")], "environment", "lower-case letters"),
        (&[("environment", "-dev")], "environment", "not at either end"),
        (&[("phases", "infra,biuld")], "phases", "did you mean `build`"),
        (&[("phases", "report")], "phases", "the report always runs"),
        (&[("phases", " , ")], "phases", "no phase selected"),
        (&[("working-directory", "nope")], "working-directory", "is not a directory"),
        (&[("version", "--upload-pack=evil")], "version", "not usable as a commit SHA or tag"),
        (&[("version", "a..b")], "version", "not usable as a commit SHA or tag"),
        (&[("rollback-to", "0")], "rollback-to", "from 1 to"),
        (&[("terraform-directory", "missing")], "terraform-directory", "is not a directory"),
        (&[("terraform-directory", "empty")], "terraform-directory", "has no .tf files"),
        (&[("terraform-directory", "infra"), ("terraform-backend-config", "=x")], "terraform-backend-config", "not a valid `key=value`"),
        (&[("terraform-directory", "infra"), ("terraform-backend-config", "missing.hcl")], "terraform-backend-config", "neither a `key=value` item nor an existing file"),
        (&[("terraform-directory", "infra"), ("terraform-var-files", "environments/{environment}.tfvars\nprod.tfvars")], "terraform-var-files", "`prod.tfvars` does not exist"),
        (&[("terraform-directory", "infra"), ("terraform-var-files", "vars.txt")], "terraform-var-files", "must end with .tfvars"),
        (&[("terraform-vars", "replicas")], "terraform-vars", "expected `name=value`"),
        (&[("terraform-vars", "a=1\na=2")], "terraform-vars", "given twice"),
        (&[("terraform-vars", "1bad=x")], "terraform-vars", "not a Terraform variable name"),
        (&[("terraform-parallelism", "0")], "terraform-parallelism", "from 1 to 256"),
        (&[("terraform-parallelism", "ten")], "terraform-parallelism", "not a whole number"),
        (&[("terraform-lock-timeout", "300")], "terraform-lock-timeout", "without a unit"),
        (&[("terraform-lock-timeout", "5 minutes")], "terraform-lock-timeout", "not a duration"),
        (&[("allow-destroy", "yes")], "allow-destroy", "use true or false"),
        (&[("allow-destroy", "1")], "allow-destroy", "use true or false"),
        (&[("images", "name: api")], "images", "not a valid image list"),
        (&[("charts", "name: db")], "charts", "not a valid chart list"),
        (&[("charts", "- name: db\n  chart: charts/db\n  values: ['charts/db-{environment}.yaml']")], "charts", "values file `charts/db-dev.yaml` does not exist"),
        (&[("charts", "- name: db\n  chart: oci://registry.example.com/charts/db")], "charts", "an OCI chart needs `version`"),
        (&[("charts", "- name: db\n  chart: charts/db\n  set: {password: '${tf.db_password}'}")], "charts", "refers to a Terraform output, but the infra phase does not run"),
        (&[("manifests", "charts")], "manifests", "holds the chart"),
        (&[("charts", "- name: db\n  chart: charts/db\n  values: [charts/db-{environment}.yaml]")], "charts", "quote a path that holds `{environment}`"),
        (&[("adopt-helm-release", "My_Release")], "adopt-helm-release", "is not a Helm release name"),
        (&[("terraform-version", "1.x")], "terraform-version", "is not a version constraint"),
        (&[("images", "- name: api\n  repository: team/api\n  context: services/api\n  colour: red")], "images", "unknown field `colour`"),
        (&[("images", "- name: api\n  repository: Team/API\n  context: services/api")], "images", "ECR's naming rules"),
        (&[("images", "- name: api\n  repository: team/api\n  context: services/nope")], "images", "`context` `services/nope` is not a directory"),
        (&[("images", "- name: api\n  repository: team/api\n  context: services/web")], "images", "`dockerfile` `Dockerfile` does not exist"),
        (&[("images", "- name: api\n  repository: team/api\n  context: services/api\n- name: api\n  repository: team/web\n  context: services/api")], "images", "must be unique"),
        (&[("images", "- name: api\n  repository: team/api\n  context: services/api\n  build-args:\n    1X: a")], "images", "not a valid name"),
        (&[("images", "- name: api\n  repository: team/api\n  context: services/api\n  build-args:\n    X: {nested: map}")], "images", "must be a string, number or boolean"),
        (&[("images", "- name: api\n  repository: team/api\n  context: services/api\n  tags: [.bad]")], "images", "tag `.bad` is not valid"),
        (&[("images", "- name: api\n  repository: ${tf.api_repo}\n  context: services/api")], "images", "the infra phase does not run"),
        (&[("images", "[]")], "images", "empty list"),
        (&[("images", "- name: api\n  repository: team/app\n  context: services/api\n- name: worker\n  repository: team/app\n  context: services/api")], "images", "is used by another image"),
        (&[("version", "release/1.2")], "version", "no `/`"),
        (&[("aws-region", "Europe")], "aws-region", "not an AWS region"),
        (&[("registry", "12345")], "registry", "12-digit AWS account id"),
        (&[("registry-endpoint", "https://127.0.0.1:5000")], "registry-endpoint", "no scheme"),
        (&[("registry-username", "robot")], "registry-password", "go together"),
        (&[("registry-password", "pw-only")], "registry-username", "go together"),
        (&[("aws-endpoint-url", "127.0.0.1:5050")], "aws-endpoint-url", "http:// or https://"),
        (&[("create-repository", "no")], "create-repository", "use true or false"),
        (&[("repository-tag-immutability", "on")], "repository-tag-immutability", "use true or false"),
        (&[("repository-scan-on-push", "off")], "repository-scan-on-push", "use true or false"),
        (&[("skip-existing", "y")], "skip-existing", "use true or false"),
        (&[("push", "0")], "push", "use true or false"),
        (&[("build-concurrency", "33")], "build-concurrency", "from 1 to 32"),
        (&[("manifests", "k8s/missing.yaml")], "manifests", "does not exist"),
        (&[("manifests", "k8s/bad/broken.yaml")], "manifests", "broken.yaml:4: invalid YAML"),
        (&[("manifests", "k8s/bad/noname.yaml")], "manifests", "noname.yaml:1: the document has no metadata.name"),
        (&[("manifests", "k8s/bad/placeholder.yaml")], "manifests", "placeholder.yaml:5: unknown placeholder `${env.HOME}`"),
        (&[("manifests", "k8s/bad/placeholder.yaml")], "manifests", "placeholder.yaml:6: `${tf.db_host}` refers to a Terraform output, but the infra phase does not run"),
        (&[("manifests", "k8s/bad/placeholder.yaml")], "manifests", "placeholder.yaml:7: `${image.nope}` names no image of the `images` input (which is empty)"),
        (&[("manifests", "k8s/*.toml")], "manifests", "matches no .yaml"),
        (&[("manifests", "k8s/[")], "manifests", "not a valid glob"),
        (&[("manifests", "k8s/base")], "cluster-name", "no cluster to deploy to"),
        (&[("namespace", "Team_A")], "namespace", "not a valid namespace"),
        (&[("kubeconfig", "kube/missing")], "kubeconfig", "not an existing file"),
        (&[("kubeconfig", "apiVersion: v1\nkind: Config\n")], "kubeconfig", "not a kubeconfig"),
        (&[("kubeconfig", "kube/config"), ("cluster-name", "eks")], "kubeconfig", "are both set"),
        (&[("cluster-name", "bad name!")], "cluster-name", "not an EKS cluster name"),
        (&[("cluster-name", "${tf.cluster}")], "cluster-name", "the infra phase does not run"),
        (&[("rollout-timeout", "10")], "rollout-timeout", "without a unit"),
        (&[("rollout-timeout", "5s")], "rollout-timeout", "out of range"),
        (&[("lock-lease-duration", "11m")], "lock-lease-duration", "out of range"),
        (&[("terraform-binary", "bin/terraform")], "terraform-binary", "neither `terraform`, `tofu` nor an absolute path"),
        (&[("github-token", "ghp_x\ny")], "github-token", "control character U+000A"),
        (&[("rollback", "yes")], "rollback", "use true or false"),
        (&[("prune", "nope")], "prune", "use true or false"),
        (&[("force-conflicts", "t")], "force-conflicts", "use true or false"),
        (&[("history-max", "0")], "history-max", "from 1 to 1000"),
        (&[("lock-timeout", "5x")], "lock-timeout", "unknown unit `x`"),
        (&[("pull-error-tolerance", "-1s")], "pull-error-tolerance", "not a duration"),
        (&[("restart-threshold", "-1")], "restart-threshold", "not a whole number"),
        (&[("unschedulable-tolerance", "1.5m")], "unschedulable-tolerance", "has a fraction"),
        (&[("apply-concurrency", "65")], "apply-concurrency", "from 1 to 64"),
        (&[("pr-comment", "sure")], "pr-comment", "use true or false"),
        (&[("github-deployments", "Yes")], "github-deployments", "use true or false"),
        (&[("environment-url", "staging.example.com")], "environment-url", "http:// or https://"),
        (&[("audit-branch", "audit..{environment}")], "audit-branch", "not a valid git branch name"),
    ];
    let mut rejected: Vec<&str> = Vec::new();
    for (pairs, input, needle) in rows {
        assert_rejects(root, pairs, input, needle);
        rejected.push(input);
    }
    // Free text with no syntax of its own; the confirmations are checked against the command in
    // the decision tests.
    let free_text = ["confirm-destroy", "confirm-unlock"];
    for spec in INPUTS.iter().filter(|spec| !free_text.contains(&spec.name)) {
        assert!(
            rejected.contains(&spec.name),
            "no bad-value row for input `{}`",
            spec.name
        );
    }
}

#[test]
fn a_missing_required_input_says_so_in_githubs_words() {
    let ws = workspace();
    let errors = Config::validate(
        &env_inputs(&[]),
        &ValidationContext {
            workspace: ws.path().into(),
            action_mode: true,
            kubeconfig_env: None,
            kubeconfig_roots: Vec::new(),
        },
    )
    .unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert!(errors.0[0]
        .to_string()
        .contains("Input required and not supplied: environment"));
}

#[test]
fn every_problem_is_reported_at_once_with_its_origin() {
    let ws = workspace();
    let errors = validate_in(
        ws.path(),
        &[
            ("phases", "infra,biuld"),
            ("allow-destroy", "yes"),
            ("rollout-timeout", "300"),
            ("namespace", "Bad"),
            ("registry-password", "hunter2-secret"),
        ],
    )
    .unwrap_err();
    let text = errors.to_string();
    assert!(
        text.starts_with("5 problems with the inputs; nothing was changed:"),
        "{text}"
    );
    assert!(text.contains("input `phases` (INPUT_PHASES)"), "{text}");
    assert!(
        text.contains("input `allow-destroy` (INPUT_ALLOW-DESTROY)"),
        "hyphens are kept in the variable name: {text}"
    );
    assert!(
        !text.contains("hunter2-secret"),
        "a secret is never echoed: {text}"
    );
}

#[test]
fn a_non_existent_workspace_is_one_clear_problem() {
    let errors = Config::validate(
        &env_inputs(&[("environment", "dev")]),
        &ValidationContext {
            workspace: PathBuf::from("/nonexistent/gantry/ws"),
            action_mode: true,
            kubeconfig_env: None,
            kubeconfig_roots: Vec::new(),
        },
    )
    .unwrap_err();
    assert!(errors.to_string().contains("actions/checkout"), "{errors}");
}

#[test]
fn the_input_variable_names_follow_githubs_rule() {
    let spec = gantry::config::inputs::find("working-directory").unwrap();
    assert_eq!(spec.env_var(), "INPUT_WORKING-DIRECTORY");
    for spec in INPUTS {
        assert_eq!(
            spec.env_var(),
            format!("INPUT_{}", spec.name.to_uppercase())
        );
        assert!(!spec.description.is_empty());
    }
}

/// Both front doors: the same inputs as `INPUT_*` variables, as CLI flags and as a config file
/// give the same configuration.
#[test]
fn env_flags_and_config_file_give_the_same_config() {
    let ws = workspace();
    let root = ws.path();
    let pairs = [
        ("environment", "prod"),
        ("phases", "infra,deploy"),
        ("terraform-directory", "infra"),
        ("terraform-vars", "replicas=3"),
        ("rollout-timeout", "2m"),
        ("allow-destroy", "true"),
        ("manifests", "k8s/base"),
        ("kubeconfig", "kube/config"),
    ];
    let cx = ValidationContext {
        workspace: root.into(),
        action_mode: false,
        kubeconfig_env: None,
        kubeconfig_roots: Vec::new(),
    };
    let from_env = Config::validate(&env_inputs(&pairs), &cx).unwrap();

    let mut args = vec!["gantry".to_string(), "run".to_string()];
    for (name, value) in pairs {
        args.push(format!("--{name}"));
        args.push(value.to_string());
    }
    let matches = gantry::cli::command().try_get_matches_from(&args).unwrap();
    let (_, sub) = matches.subcommand().unwrap();
    let invocation = gantry::cli::local_invocation(sub, None, root.to_path_buf());
    let from_flags = Config::validate(&invocation.raw, &cx).unwrap();
    assert_eq!(from_env, from_flags);

    let file = root.join("gantry.yml");
    std::fs::write(
        &file,
        "environment: prod\nphases: [infra, deploy]\nterraform-directory: infra\nterraform-vars:\n  replicas: 3\nrollout-timeout: 2m\nallow-destroy: true\nmanifests: k8s/base\nkubeconfig: kube/config\n",
    )
    .unwrap();
    let matches = gantry::cli::command()
        .try_get_matches_from(["gantry", "run", "--config", file.to_str().unwrap()])
        .unwrap();
    let (_, sub) = matches.subcommand().unwrap();
    let from_file = Config::validate(
        &gantry::cli::local_invocation(sub, None, root.to_path_buf()).raw,
        &cx,
    )
    .unwrap();
    assert_eq!(from_env, from_file);

    // A flag overrides the file.
    let matches = gantry::cli::command()
        .try_get_matches_from([
            "gantry",
            "run",
            "--config",
            file.to_str().unwrap(),
            "--environment",
            "staging",
        ])
        .unwrap();
    let (_, sub) = matches.subcommand().unwrap();
    let overridden = Config::validate(
        &gantry::cli::local_invocation(sub, None, root.to_path_buf()).raw,
        &cx,
    )
    .unwrap();
    assert_eq!(overridden.environment, "staging");
}

#[test]
fn config_file_problems_are_reported_with_the_rest() {
    let ws = workspace();
    let file = ws.path().join("gantry.yml");
    std::fs::write(&file, "environmnet: dev\nphases: {a: 1}\nrollback: maybe\n").unwrap();
    let raw = RawInputs::from_config_file(&file).with_defaults();
    let errors = Config::validate(
        &raw,
        &ValidationContext {
            workspace: ws.path().into(),
            action_mode: false,
            kubeconfig_env: None,
            kubeconfig_roots: Vec::new(),
        },
    )
    .unwrap_err();
    let text = errors.to_string();
    assert!(
        text.contains("unknown input `environmnet`") && text.contains("did you mean `environment`"),
        "{text}"
    );
    assert!(
        text.contains("input `phases`") && text.contains("single value"),
        "{text}"
    );
    assert!(
        text.contains("input `rollback`") && text.contains("use true or false"),
        "{text}"
    );
    assert!(
        text.contains("Input required and not supplied: environment"),
        "{text}"
    );

    std::fs::write(&file, "- not\n- a mapping\n").unwrap();
    let raw = RawInputs::from_config_file(&file);
    let errors = Config::validate(
        &raw,
        &ValidationContext {
            workspace: ws.path().into(),
            action_mode: false,
            kubeconfig_env: None,
            kubeconfig_roots: Vec::new(),
        },
    )
    .unwrap_err();
    assert!(
        errors.to_string().contains("not a YAML mapping"),
        "{errors}"
    );
}

#[test]
fn the_release_form_of_action_yml_differs_only_in_its_image() {
    let digest = "0123456789abcdef".repeat(4);
    let image = format!("docker://ghcr.io/gantry-dev/gantry@sha256:{digest}");
    let release = gantry::config::action_yml::render_release(&image).unwrap();
    let development = gantry::config::action_yml::render();
    let differing: Vec<(&str, &str)> = development
        .lines()
        .zip(release.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(
        differing,
        [(
            "  image: Dockerfile",
            format!("  image: \"{image}\"").as_str()
        )]
    );
    let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&release).unwrap();
    assert_eq!(parsed["runs"]["image"], image.as_str());
    // The command prints it, and refuses what is not pinned by digest.
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["action-yml", "--image", &image])
        .output()
        .unwrap();
    assert!(printed.status.success());
    assert_eq!(String::from_utf8_lossy(&printed.stdout), release);
    for (bad, why) in [
        ("ghcr.io/gantry-dev/gantry@sha256:0000", "not a docker:// image reference"),
        ("docker://ghcr.io/gantry-dev/gantry:v0", "not pinned by digest"),
        ("docker://ghcr.io/gantry-dev/gantry@sha256:abc", "not a sha256 digest"),
        ("docker://Gantry@sha256:0000000000000000000000000000000000000000000000000000000000000000", "not an image repository"),
    ] {
        let refused = gantry::config::action_yml::render_release(bad).unwrap_err();
        assert!(refused.contains(why), "{bad}: {refused}");
        let printed = std::process::Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(["action-yml", "--image", bad])
            .output()
            .unwrap();
        assert_eq!(printed.status.code(), Some(2), "{bad}");
    }
}

#[test]
fn action_yml_is_generated_from_the_catalogue() {
    let committed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("action.yml")).unwrap();
    assert_eq!(
        committed,
        gantry::config::action_yml::render(),
        "action.yml is stale: run `cargo run -- action-yml > action.yml`"
    );
    let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&committed).unwrap();
    assert_eq!(parsed["runs"]["using"], "docker");
    assert_eq!(parsed["runs"]["image"], "Dockerfile");
    assert!(parsed["branding"]["icon"].is_string() && parsed["branding"]["color"].is_string());
    let inputs = parsed["inputs"].as_mapping().unwrap();
    assert_eq!(inputs.len(), INPUTS.len());
    for spec in INPUTS {
        let input = &parsed["inputs"][spec.name];
        assert_eq!(
            input["description"].as_str(),
            Some(spec.description),
            "{}",
            spec.name
        );
        assert_eq!(input["default"].as_str(), spec.default, "{}", spec.name);
    }
    assert_eq!(
        parsed["inputs"]["github-token"]["default"],
        "${{ github.token }}"
    );
    for output in [
        "status",
        "release",
        "previous-release",
        "rolled-back",
        "failure-reason",
        "images",
    ] {
        assert!(
            parsed["outputs"][output]["description"].is_string(),
            "output {output}"
        );
    }
}
