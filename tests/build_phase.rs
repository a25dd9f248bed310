//! The build phase against the test bed: a real dockerd (BuildKit by default, the classic builder through `GANTRY_BUILDER=classic`), the plain and the TLS + htpasswd registries, and moto for ECR.
//!
//! Every test uses fresh repository names and a random commit, since the registries persist.
//! A missing service fails the test with a pointer to `bash .ci/testbed up`.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::Once;
use std::time::Duration;

use gantry::adapters::docker::Docker;
use gantry::adapters::ecr::Ecr;
use gantry::adapters::runner::Runner;
use gantry::app::frame::RunContext;
use gantry::cancel::Cancel;
use gantry::config::{Config, Origin, RawInputs, ValidationContext};
use gantry::context::GitHubContext;
use gantry::pipeline::{Command, Decision, Handoff, PhaseResult, PhaseStatus};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/images");

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// The test bed's addresses, checked to answer.
struct Bed {
    registry: String,
    tls_registry: String,
    user: String,
    password: String,
    moto: String,
    docker_cli: String,
}

fn bed() -> Bed {
    static SETUP: Once = Once::new();
    let bed = Bed {
        registry: env_or("GANTRY_TEST_REGISTRY", "127.0.0.1:5000"),
        tls_registry: env_or("GANTRY_TEST_TLS_REGISTRY", "127.0.0.1:5443"),
        user: env_or("GANTRY_TEST_TLS_REGISTRY_USER", "gantry"),
        password: env_or(
            "GANTRY_TEST_TLS_REGISTRY_PASSWORD",
            &std::fs::read_to_string("/var/tmp/gantry-testbed/env")
                .ok()
                .and_then(|env| {
                    env.lines()
                        .find_map(|l| l.strip_prefix("export GANTRY_TEST_TLS_REGISTRY_PASSWORD="))
                        .map(str::to_string)
                })
                .unwrap_or_default(),
        ),
        moto: env_or("GANTRY_TEST_MOTO_ENDPOINT", "http://127.0.0.1:5050"),
        docker_cli: env_or("GANTRY_TEST_DOCKER", "/usr/bin/docker"),
    };
    let ca = env_or(
        "GANTRY_TEST_TLS_REGISTRY_CA",
        "/var/tmp/gantry-testbed/certs/ca.crt",
    );
    SETUP.call_once(|| {
        // Set once, before any test reads them; every test wants the same values.
        std::env::set_var("GANTRY_REGISTRY_CA_FILE", &ca);
        for (name, value) in [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
        ] {
            if std::env::var_os(name).is_none() {
                std::env::set_var(name, value);
            }
        }
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    });
    let moto_host = bed.moto.trim_start_matches("http://").to_string();
    for (what, addr) in [
        ("the plain registry", bed.registry.clone()),
        ("the TLS registry", bed.tls_registry.clone()),
        ("moto", moto_host),
    ] {
        let reachable = addr
            .parse()
            .ok()
            .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
        assert!(
            reachable,
            "{what} at {addr} is not answering; run `bash .ci/testbed up`"
        );
    }
    assert!(
        Path::new("/var/run/docker.sock").exists(),
        "no Docker socket at /var/run/docker.sock; run `bash .ci/testbed up`"
    );
    assert!(
        Path::new(&ca).is_file(),
        "the TLS registry CA {ca} is missing; run `bash .ci/testbed up`"
    );
    bed
}

/// Whether a build step appears in the log (classic `Step 1/N`, BuildKit `#1 ...`).
fn started_a_build(log: &str) -> bool {
    log.contains("Step 1/") || log.contains("] #1 ")
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf).unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A workspace with fixture contexts, and a random commit.
struct Repo {
    _dir: tempfile::TempDir,
    workspace: PathBuf,
    sha: String,
    suffix: String,
}

struct Outcome {
    result: PhaseResult,
    handoff: Handoff,
    log: String,
}

impl Outcome {
    fn assert_succeeded(&self) {
        assert_eq!(self.result.status, PhaseStatus::Succeeded, "{}", self.log);
    }
    fn failure(&self) -> (&str, &str) {
        match &self.result.status {
            PhaseStatus::Failed {
                failure_reason,
                message,
            } => (failure_reason.as_str(), message),
            other => panic!("expected a failure, got {other:?}\n{}", self.log),
        }
    }
    /// The phase's notes and the image table the summary renders from its hand-off.
    fn notes(&self) -> String {
        let keep = |text: &str| text.to_string();
        format!(
            "{}\n{}",
            self.result.notes.join("\n"),
            gantry::report::summary::images_table(&keep, &self.handoff.built_images)
        )
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The images a test built are removed when it ends (they carry the test's random suffix in
/// their repository name), so runs do not fill the daemon's disk.
impl Drop for Repo {
    fn drop(&mut self) {
        let docker = env_or("GANTRY_TEST_DOCKER", "/usr/bin/docker");
        let Ok(listed) = Process::new(&docker)
            .args(["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"])
            .output()
        else {
            return;
        };
        let marker = format!("-{}", self.suffix);
        let mine: Vec<String> = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .filter(|image| {
                image
                    .rsplit_once(':')
                    .is_some_and(|(repository, _)| repository.ends_with(&marker))
            })
            .map(str::to_string)
            .collect();
        if !mine.is_empty() {
            let _ = Process::new(&docker)
                .args(["image", "rm", "--force"])
                .args(&mine)
                .output();
        }
    }
}

impl Repo {
    fn new(contexts: &[&str]) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let workspace = dir.path().join("repo");
        for context in contexts {
            copy_dir(&Path::new(FIXTURES).join(context), &workspace.join(context));
        }
        std::fs::create_dir_all(workspace.join("infra")).unwrap();
        std::fs::write(workspace.join("infra/main.tf"), "").unwrap();
        Repo {
            _dir: dir,
            workspace,
            sha: random_hex(20),
            suffix: random_hex(4),
        }
    }

    /// A repository name unique to this test run.
    fn repo(&self, name: &str) -> String {
        format!("gantry-test/{name}-{}", self.suffix)
    }

    fn config(&self, inputs: &[(&'static str, String)]) -> Config {
        let mut raw = RawInputs::default();
        raw.set("environment", "dev".into(), Origin::Flag);
        for (name, value) in inputs {
            raw.set(name, value.clone(), Origin::Flag);
        }
        let validation = ValidationContext {
            workspace: self.workspace.clone(),
            action_mode: false,
            kubeconfig_env: None,
            kubeconfig_roots: Vec::new(),
        };
        match Config::validate(&raw.with_defaults(), &validation) {
            Ok(config) => config,
            Err(errors) => panic!("invalid test config: {errors}"),
        }
    }

    async fn run(
        &self,
        command: Command,
        inputs: &[(&'static str, String)],
        handoff: Handoff,
    ) -> Outcome {
        self.run_with(command, inputs, handoff, &Cancel::never())
            .await
    }

    /// Runs the phase in ECR mode through moto (see [`moto_inputs`]) with `images`.
    async fn run_through_moto(&self, bed: &Bed, command: Command, images: String) -> Outcome {
        self.run(command, &moto_inputs(bed, images), Handoff::default())
            .await
    }

    async fn run_with(
        &self,
        command: Command,
        inputs: &[(&'static str, String)],
        handoff: Handoff,
        cancel: &Cancel,
    ) -> Outcome {
        let config = self.config(inputs);
        let mut context = GitHubContext::local(&self.workspace, None);
        context.sha = Some(self.sha.clone());
        context.repository = Some("gantry-dev/demo".into());
        let decision = Decision {
            command,
            reason: "test".into(),
            commit: Some(config.version.clone().unwrap_or_else(|| self.sha.clone())),
            pull_request: None,
        };
        let (runner, log) = Runner::capturing(true);
        let run = RunContext {
            config: &config,
            context: &context,
            decision: &decision,
            runner: &runner,
            cancel,
        };
        let mut handoff = handoff;
        let result = gantry::app::build::run(&run, &mut handoff).await;
        Outcome {
            result,
            handoff,
            log: log.contents(),
        }
    }
}

/// ECR mode through moto, pushing to the plain local registry.
fn moto_inputs(bed: &Bed, images: String) -> Vec<(&'static str, String)> {
    vec![
        ("images", images),
        ("aws-region", "us-east-1".into()),
        ("aws-endpoint-url", bed.moto.clone()),
        ("registry", "123456789012".into()),
        ("registry-endpoint", bed.registry.clone()),
    ]
}

/// The digest a registry serves for a tag, read with the docker-independent HTTP client.
async fn served_digest(
    host: &str,
    repository: &str,
    tag: &str,
    basic: Option<(&str, &str)>,
) -> Option<String> {
    let (scheme, client) = if host == bed_tls() {
        let ca = std::fs::read(env_or(
            "GANTRY_TEST_TLS_REGISTRY_CA",
            "/var/tmp/gantry-testbed/certs/ca.crt",
        ))
        .unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .build()
            .unwrap();
        ("https", client)
    } else {
        ("http", reqwest::Client::new())
    };
    let mut request = client
        .head(format!("{scheme}://{host}/v2/{repository}/manifests/{tag}"))
        .header("Accept", gantry::adapters::registry::MANIFEST_TYPES);
    if let Some((user, password)) = basic {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.unwrap();
    if response.status() == 404 {
        return None;
    }
    assert_eq!(response.status(), 200, "HEAD {host}/{repository}:{tag}");
    Some(
        response.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_string(),
    )
}

/// Every value announced with `::add-mask::` appears nowhere else: not in the log, the notes
/// or the outputs.
fn assert_masked_everywhere(outcome: &Outcome) {
    let masked: Vec<&str> = outcome
        .log
        .lines()
        .filter_map(|l| l.strip_prefix("::add-mask::"))
        .collect();
    assert!(!masked.is_empty(), "nothing was masked:\n{}", outcome.log);
    let rest: Vec<&str> = outcome
        .log
        .lines()
        .filter(|l| !l.starts_with("::add-mask::"))
        .collect();
    let rest = rest.join("\n");
    let outputs: Vec<&String> = outcome.result.outputs.values().collect();
    for secret in masked {
        assert!(!rest.contains(secret), "{secret} leaked into the log");
        assert!(
            !outcome.notes().contains(secret),
            "{secret} leaked into the notes"
        );
        assert!(
            outputs.iter().all(|v| !v.contains(secret)),
            "{secret} leaked into an output"
        );
    }
}

fn bed_tls() -> String {
    env_or("GANTRY_TEST_TLS_REGISTRY", "127.0.0.1:5443")
}

fn docker_cli(bed: &Bed, args: &[&str]) -> String {
    let out = Process::new(&bed.docker_cli).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_images_build_in_parallel_push_to_the_plain_registry_and_a_rerun_reuses_both() {
    let bed = bed();
    let repo = Repo::new(&["api", "web"]);
    let (api, web) = (repo.repo("api"), repo.repo("web"));
    let images = format!(
        "- name: api\n  repository: {api}\n  context: api\n  build-args:\n    GREETING: hello-{s}\n  tags: [latest]\n- name: web\n  repository: {web}\n  context: web\n  target: final\n",
        s = repo.suffix
    );
    let mut inputs = moto_inputs(&bed, images);
    inputs.push(("repository-tag-immutability", "true".into()));
    inputs.push(("repository-scan-on-push", "true".into()));
    let first = repo.run(Command::Deploy, &inputs, Handoff::default()).await;
    first.assert_succeeded();
    // The ECR token and the password inside it are masked before use and never shown.
    assert_masked_everywhere(&first);

    // Both repositories were created in (moto's) ECR with the settings asked for.
    let ecr = Ecr::connect(Some("us-east-1"), Some(&bed.moto)).await;
    assert_eq!(ecr.repository_settings(&api).await.unwrap(), (true, true));
    assert!(first
        .log
        .contains(&format!("created the ECR repository {api}")));

    // The digests reported are the ones the registry serves for the commit tag.
    for (name, repository) in [("api", &api), ("web", &web)] {
        let served = served_digest(&bed.registry, repository, &repo.sha, None)
            .await
            .expect("pushed");
        let uri = format!("{}/{repository}", bed.registry);
        assert_eq!(
            first.result.outputs[&format!("image-{name}-digest")],
            served
        );
        assert_eq!(first.result.outputs[&format!("image-{name}-uri")], uri);
        assert_eq!(first.handoff.images[name], format!("{uri}@{served}"));
    }
    assert!(served_digest(&bed.registry, &api, "latest", None)
        .await
        .is_some());
    let details: serde_json::Value =
        serde_json::from_str(&first.result.outputs["image-details"]).unwrap();
    assert_eq!(details[0]["status"], "built");
    assert_eq!(details[1]["tag"], repo.sha.as_str());
    assert_eq!(first.handoff.built_images.len(), 2);
    assert!(first.notes().contains("| api |") && first.notes().contains("| built |"));
    // Both builds ran under BuildKit and streamed into the log, prefixed by image.
    assert!(
        first.log.contains("Building with BuildKit"),
        "{}",
        first.log
    );
    let step = |image: &str, name: &str| {
        first
            .log
            .lines()
            .any(|l| l.starts_with(&format!("[{image}] #")) && l.ends_with(name))
    };
    assert!(
        step("api", "] FROM docker.io/gantry-test/busybox:latest")
            && step("api", "/3] COPY app.txt /app/app.txt"),
        "{}",
        first.log
    );
    assert!(
        step("web", "[base 2/2] COPY index.html /www/index.html")
            && step("web", "[final 1/1] RUN test -f /www/index.html"),
        "{}",
        first.log
    );

    // Build args reached the build, OCI labels are set, the target stage was built.
    let image = format!("{}/{api}:{}", bed.registry, repo.sha);
    let greeting = docker_cli(&bed, &["run", "--rm", &image, "cat", "/app/greeting.txt"]);
    assert_eq!(greeting, format!("greeting=hello-{}", repo.suffix));
    let labels = docker_cli(
        &bed,
        &["image", "inspect", "-f", "{{json .Config.Labels}}", &image],
    );
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(
        labels["org.opencontainers.image.revision"],
        repo.sha.as_str()
    );
    assert_eq!(
        labels["org.opencontainers.image.source"],
        "https://github.com/gantry-dev/demo"
    );
    assert!(labels["org.opencontainers.image.created"]
        .as_str()
        .is_some_and(|c| c.ends_with('Z') && c.len() == 20));

    // The same commit again: nothing is built, both digests are reused.
    let second = repo.run(Command::Deploy, &inputs, Handoff::default()).await;
    second.assert_succeeded();
    assert!(!started_a_build(&second.log), "{}", second.log);
    assert_eq!(second.handoff.images, first.handoff.images);
    let details: serde_json::Value =
        serde_json::from_str(&second.result.outputs["image-details"]).unwrap();
    assert_eq!(details[0]["status"], "reused");
    assert_eq!(details[1]["status"], "reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_htpasswd_registry_push_with_the_password_masked() {
    let bed = bed();
    let repo = Repo::new(&["api"]);
    let api = repo.repo("api");
    let images = format!("- name: api\n  repository: {api}\n  context: api\n");
    let inputs = vec![
        ("images", images),
        ("registry-endpoint", bed.tls_registry.clone()),
        ("registry-username", bed.user.clone()),
        ("registry-password", bed.password.clone()),
    ];
    let outcome = repo.run(Command::Deploy, &inputs, Handoff::default()).await;
    outcome.assert_succeeded();
    let served = served_digest(
        &bed.tls_registry,
        &api,
        &repo.sha,
        Some((&bed.user, &bed.password)),
    )
    .await
    .expect("pushed");
    assert_eq!(outcome.result.outputs["image-api-digest"], served);
    assert_eq!(
        outcome.handoff.images["api"],
        format!("{}/{api}@{served}", bed.tls_registry)
    );
    // The password is announced with ::add-mask:: first and appears nowhere else.
    let mask = format!("::add-mask::{}", bed.password);
    let first_use = outcome.log.find(&bed.password).unwrap();
    assert_eq!(
        outcome.log.find(&mask),
        Some(first_use - "::add-mask::".len())
    );
    assert_masked_everywhere(&outcome);
    let without_mask = outcome.log.replace(&mask, "");
    assert!(!without_mask.contains(&bed.password));
    assert!(!outcome.notes().contains(&bed.password));
    assert!(outcome
        .result
        .outputs
        .values()
        .all(|v| !v.contains(&bed.password)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_registry_password_is_explained_as_401() {
    let bed = bed();
    let repo = Repo::new(&["api"]);
    let api = repo.repo("api");
    let wrong = format!("wrong-{}", random_hex(8));
    let inputs = vec![
        (
            "images",
            format!("- name: api\n  repository: {api}\n  context: api\n"),
        ),
        ("registry-endpoint", bed.tls_registry.clone()),
        ("registry-username", bed.user.clone()),
        ("registry-password", wrong.clone()),
    ];
    let outcome = repo.run(Command::Deploy, &inputs, Handoff::default()).await;
    let (reason, message) = outcome.failure();
    assert_eq!(reason, "registry-auth-failed");
    assert!(message.contains("401"), "{message}");
    assert!(message.contains("registry-password"), "{message}");
    assert!(!message.contains(&wrong) && !outcome.notes().contains(&wrong));
    // Detected by the lookup, before anything was built.
    assert!(!started_a_build(&outcome.log), "{}", outcome.log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_dockerfile_step_shows_the_step_and_pushes_nothing() {
    let bed = bed();
    let repo = Repo::new(&["api", "failing"]);
    let (api, failing) = (repo.repo("api"), repo.repo("failing"));
    let images = format!(
        "- name: api\n  repository: {api}\n  context: api\n- name: failing\n  repository: {failing}\n  context: failing\n"
    );
    let outcome = repo.run_through_moto(&bed, Command::Deploy, images).await;
    let (reason, message) = outcome.failure();
    assert_eq!(reason, "build-failed");
    assert!(
        outcome.log.contains("Building with BuildKit"),
        "{}",
        outcome.log
    );
    assert!(
        message.contains("step `[3/4] RUN echo first-line && echo second-line && exit 3` failed: "),
        "{message}"
    );
    assert!(message.contains("exit code: 3"), "{message}");
    assert!(
        message.contains("last lines of its output:\nfirst-line\nsecond-line"),
        "{message}"
    );
    // The step's output streamed into the log as it ran.
    assert!(
        outcome.log.contains("[failing] #") && outcome.log.contains(" first-line"),
        "{}",
        outcome.log
    );
    assert!(message.contains("Nothing was pushed; the deployed environment is untouched."));
    assert!(outcome.notes().contains("Nothing was pushed"));
    assert!(served_digest(&bed.registry, &api, &repo.sha, None)
        .await
        .is_none());
    assert!(served_digest(&bed.registry, &failing, &repo.sha, None)
        .await
        .is_none());
    assert!(outcome.handoff.images.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_smoke_test_pushes_nothing() {
    let bed = bed();
    let repo = Repo::new(&["smoke"]);
    let smoke = repo.repo("smoke");
    let images = format!(
        "- name: smoke\n  repository: {smoke}\n  context: smoke\n  smoke-test: \"/bin/sh /check.sh && echo about-to-fail && exit 7\"\n"
    );
    let outcome = repo.run_through_moto(&bed, Command::Deploy, images).await;
    let (reason, message) = outcome.failure();
    assert_eq!(reason, "smoke-test-failed");
    assert!(message.contains("exited with code 7"), "{message}");
    assert!(
        message.contains("smoke-check-running\nabout-to-fail"),
        "{message}"
    );
    assert!(served_digest(&bed.registry, &smoke, &repo.sha, None)
        .await
        .is_none());
    // The smoke container was removed.
    let left = docker_cli(&bed, &["ps", "-aq", "--filter", "name=gantry-smoke-smoke-"]);
    assert_eq!(left, "");

    // A passing smoke test (exec form) lets the image through.
    let images = format!(
        "- name: smoke\n  repository: {smoke}\n  context: smoke\n  smoke-test: [\"/bin/sh\", \"/check.sh\"]\n"
    );
    let outcome = repo.run_through_moto(&bed, Command::Deploy, images).await;
    outcome.assert_succeeded();
    assert!(outcome.log.contains("[smoke] smoke: smoke-check-running"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_repository_false_with_a_missing_repository_fails_before_building() {
    let bed = bed();
    let repo = Repo::new(&["api"]);
    let api = repo.repo("api");
    let mut inputs = moto_inputs(
        &bed,
        format!("- name: api\n  repository: {api}\n  context: api\n"),
    );
    inputs.push(("create-repository", "false".into()));
    let outcome = repo.run(Command::Deploy, &inputs, Handoff::default()).await;
    let (reason, message) = outcome.failure();
    assert_eq!(reason, "repository-missing");
    assert!(
        message.contains(&api) && message.contains("create-repository"),
        "{message}"
    );
    assert!(!started_a_build(&outcome.log), "{}", outcome.log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerignore_is_honoured_and_plan_builds_without_pushing() {
    let bed = bed();
    let repo = Repo::new(&["ignore"]);
    let ignore = repo.repo("ignore");
    let images = format!("- name: ignore\n  repository: {ignore}\n  context: ignore\n");
    let outcome = repo.run_through_moto(&bed, Command::Plan, images).await;
    outcome.assert_succeeded();
    // Kept files are in the image, ignored ones are not (the Dockerfile's RUN checks it too).
    let image = format!("{}/{ignore}:{}", bed.registry, repo.sha);
    let files = docker_cli(&bed, &["run", "--rm", &image, "find", "/ctx", "-type", "f"]);
    let mut files: Vec<&str> = files.lines().collect();
    files.sort();
    assert_eq!(
        files,
        [
            "/ctx/.dockerignore",
            "/ctx/Dockerfile",
            "/ctx/kept.txt",
            "/ctx/logs/keep.log"
        ]
    );
    assert!(served_digest(&bed.registry, &ignore, &repo.sha, None)
        .await
        .is_none());
    assert_eq!(outcome.result.outputs["image-ignore-digest"], "");
    // The plan has no digest to pin yet: later phases see the commit tag, and the notes say so.
    assert_eq!(
        outcome.handoff.images["ignore"],
        format!("{}/{ignore}:{}", bed.registry, repo.sha)
    );
    assert!(outcome.notes().contains("built, not pushed"));
    assert!(
        outcome.notes().contains("no digest yet"),
        "{}",
        outcome.notes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_output_repositories_resolve_and_a_missing_output_fails_before_building() {
    let bed = bed();
    let repo = Repo::new(&["api"]);
    let api = repo.repo("api");
    let mut inputs = moto_inputs(
        &bed,
        "- name: api\n  repository: ${tf.api_repository}\n  context: api\n".into(),
    );
    inputs.push(("terraform-directory", "infra".into()));
    inputs.push(("push", "false".into()));

    let outcome = repo.run(Command::Deploy, &inputs, Handoff::default()).await;
    let (reason, message) = outcome.failure();
    assert_eq!(reason, "repository-missing");
    assert!(message.contains("`api_repository`"), "{message}");
    assert!(!started_a_build(&outcome.log), "{}", outcome.log);

    let mut handoff = Handoff::default();
    handoff.terraform_outputs.insert(
        "api_repository".into(),
        serde_json::json!(format!(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/{api}"
        )),
    );
    let outcome = repo.run(Command::Deploy, &inputs, handoff).await;
    outcome.assert_succeeded();
    // registry-endpoint overrides the host of the URI; the path is the repository.
    assert_eq!(
        outcome.result.outputs["image-api-uri"],
        format!("{}/{api}", bed.registry)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chosen_version_is_looked_up_never_built() {
    let bed = bed();
    let repo = Repo::new(&["api"]);
    let api = repo.repo("api");
    let mut inputs = moto_inputs(
        &bed,
        format!("- name: api\n  repository: {api}\n  context: api\n"),
    );
    inputs.push(("version", format!("v{}", repo.suffix)));
    let outcome = repo.run(Command::Deploy, &inputs, Handoff::default()).await;
    let (reason, message) = outcome.failure();
    assert_eq!(reason, "repository-missing");
    assert!(
        message.contains("never rebuilt") && message.contains(&api),
        "{message}"
    );
    assert!(!started_a_build(&outcome.log), "{}", outcome.log);
}

#[tokio::test]
async fn docker_socket_unreachable_says_what_to_do() {
    let err = Docker::connect_to(Some("unix:///nonexistent/gantry/docker.sock"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Docker socket unreachable"), "{err}");
    assert!(
        err.contains("/var/run/docker.sock") && err.contains("DOCKER_HOST"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_stops_a_running_build_and_pushes_nothing() {
    let bed = bed();
    let repo = Repo::new(&["slow", "api"]);
    let (slow, api) = (repo.repo("slow"), repo.repo("api"));
    let images = format!(
        "- name: slow\n  repository: {slow}\n  context: slow\n  build-args:\n    NONCE: {}\n- name: api\n  repository: {api}\n  context: api\n",
        repo.suffix
    );
    let (handle, cancel) = Cancel::new();
    let started = std::time::Instant::now();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        handle.cancel();
    });
    let outcome = repo
        .run_with(
            Command::Deploy,
            &moto_inputs(&bed, images),
            Handoff::default(),
            &cancel,
        )
        .await;
    canceller.await.unwrap();
    let (reason, message) = outcome.failure();
    assert_eq!(reason, "cancelled");
    assert!(message.contains("Nothing was pushed"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the 30s step was not abandoned"
    );
    assert!(served_digest(&bed.registry, &api, &repo.sha, None)
        .await
        .is_none());
    assert!(served_digest(&bed.registry, &slow, &repo.sha, None)
        .await
        .is_none());
}

#[test]
fn bad_image_input_is_refused_before_any_build() {
    let repo = Repo::new(&["api"]);
    let images = "- name: api\n  repository: team/api\n  context: missing-dir\n\
- name: api\n  repository: Team//API\n  context: api\n  dockerfile: Nope.Dockerfile\n\
- name: web\n  repository: ${tf.web_repo}\n  context: api\n  build-args:\n    1BAD: x\n    LIST: [a, b]\n";
    let mut raw = RawInputs::default();
    raw.set("environment", "dev".into(), Origin::Flag);
    raw.set("images", images.into(), Origin::Flag);
    let validation = ValidationContext {
        workspace: repo.workspace.clone(),
        action_mode: false,
        kubeconfig_env: None,
        kubeconfig_roots: Vec::new(),
    };
    let errors = match Config::validate(&raw.with_defaults(), &validation) {
        Ok(_) => panic!("bad images were accepted"),
        Err(errors) => errors.to_string(),
    };
    for expected in [
        "`context` `missing-dir` is not a directory",
        "`name` is used by another image",
        "breaks ECR's naming rules",
        "`dockerfile` `Nope.Dockerfile` does not exist",
        "build arg `1BAD` is not a valid name",
        "build arg `LIST` must be a string, number or boolean",
        "refers to the Terraform output `web_repo`, but the infra phase does not run",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in:\n{errors}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_registry_address_comes_from_the_callers_account_and_region() {
    let bed = bed();
    let repo = Repo::new(&["api"]);
    let api = repo.repo("api");
    // No `registry` and no endpoint: the account comes from STS (moto), the host from it.
    let inputs = vec![
        (
            "images",
            format!("- name: api\n  repository: {api}\n  context: api\n"),
        ),
        ("aws-region", "eu-west-1".into()),
        ("aws-endpoint-url", bed.moto.clone()),
        ("skip-existing", "false".into()),
    ];
    let outcome = repo.run(Command::Plan, &inputs, Handoff::default()).await;
    outcome.assert_succeeded();
    assert_eq!(
        outcome.result.outputs["image-api-uri"],
        format!("123456789012.dkr.ecr.eu-west-1.amazonaws.com/{api}")
    );
    assert!(outcome.notes().contains("built, not pushed"));
}

#[test]
fn the_binary_reports_an_unreachable_docker_socket_before_any_build() {
    let repo = Repo::new(&["api"]);
    let (code, text) = run_binary(
        &repo,
        &[("DOCKER_HOST", "unix:///nonexistent/gantry/docker.sock")],
        &[
            "--images=- name: api\n  repository: team/api\n  context: api\n",
            "--registry-endpoint",
            "127.0.0.1:5000",
            "--registry-username",
            "u",
            "--registry-password",
            "p",
        ],
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("Docker socket unreachable"), "{text}");
    assert!(
        text.contains("/var/run/docker.sock") && text.contains("DOCKER_HOST"),
        "{text}"
    );
    assert!(text.contains("failure-reason=docker-unreachable"), "{text}");
    assert!(!started_a_build(&text), "{text}");
}

#[tokio::test]
async fn a_plain_registry_named_by_host_is_pushed_to_anonymously_without_aws() {
    let bed = bed();
    let repo = Repo::new(&["api"]);
    let api = repo.repo("api");
    let images = format!("- name: api\n  repository: {api}\n  context: api\n");
    // A dead loopback endpoint: if gantry wrongly went to ECR, the run fails instead of
    // reaching AWS.
    let inputs = vec![
        ("images", images),
        ("registry", bed.registry.clone()),
        ("aws-endpoint-url", "http://127.0.0.1:9".to_string()),
    ];
    let outcome = repo.run(Command::Deploy, &inputs, Handoff::default()).await;
    outcome.assert_succeeded();
    let served = served_digest(&bed.registry, &api, &repo.sha, None)
        .await
        .expect("pushed");
    assert_eq!(
        outcome.handoff.images["api"],
        format!("{}/{api}@{served}", bed.registry)
    );
}

/// Makes the workspace a git checkout with one commit (once), so the binary finds a tag.
fn git_commit(workspace: &Path) {
    if workspace.join(".git").exists() {
        return;
    }
    for args in [
        &["init", "-q"][..],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "t",
        ],
    ] {
        let status = Process::new("git")
            .args(args)
            .current_dir(workspace)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }
}

/// Runs `gantry deploy --environment dev --phases build ARGS` in the workspace (made a git
/// checkout with one commit), outside Actions, with no Docker variables but those in `env`.
/// Returns the exit code and stdout + stderr.
fn run_binary(repo: &Repo, env: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    git_commit(&repo.workspace);
    let out = Process::new(env!("CARGO_BIN_EXE_gantry"))
        .current_dir(&repo.workspace)
        .env_remove("GITHUB_ACTIONS")
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .envs(env.iter().copied())
        .args(["deploy", "--environment", "dev", "--phases", "build"])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Runs the binary's build phase with `GANTRY_BUILDER=builder`, pushing to the plain registry.
fn run_binary_with_builder(repo: &Repo, bed: &Bed, builder: &str, images: &str) -> (i32, String) {
    run_binary_with_env(repo, bed, &[("GANTRY_BUILDER", builder)], images)
}

/// Runs the binary's build phase with `env`, pushing to the plain registry named by `registry`
/// (a dead loopback AWS endpoint makes any AWS call fail instead of leaving the machine).
fn run_binary_with_env(
    repo: &Repo,
    bed: &Bed,
    env: &[(&str, &str)],
    images: &str,
) -> (i32, String) {
    let images = format!("--images={images}");
    let args = [
        images.as_str(),
        "--registry",
        &bed.registry,
        "--aws-endpoint-url",
        "http://127.0.0.1:9",
    ];
    run_binary(repo, env, &args)
}

#[test]
fn the_classic_builder_through_gantry_builder_builds_and_pushes() {
    let bed = bed();
    let repo = Repo::new(&["api"]);
    let api = repo.repo("api");
    let images = format!("- name: api\n  repository: {api}\n  context: api\n");
    let (code, text) = run_binary_with_builder(&repo, &bed, "classic", &images);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("Building with the classic builder (GANTRY_BUILDER=classic)"),
        "{text}"
    );
    assert!(text.contains("[api] Step 1/"), "{text}");
    assert!(!text.contains("[api] #1 "), "{text}");
    assert!(
        text.contains(&format!("{}/{api}@sha256:", bed.registry)),
        "{text}"
    );
}

#[test]
fn the_classic_builder_reports_the_failing_step_and_pushes_nothing() {
    let bed = bed();
    let repo = Repo::new(&["failing"]);
    let failing = repo.repo("failing");
    let images = format!("- name: failing\n  repository: {failing}\n  context: failing\n");
    let (code, text) = run_binary_with_builder(&repo, &bed, "classic", &images);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("RUN echo first-line && echo second-line && exit 3 failed"),
        "{text}"
    );
    assert!(text.contains("Step 3/"), "{text}");
    assert!(text.contains("non-zero code: 3"), "{text}");
    assert!(text.contains("first-line\nsecond-line"), "{text}");
    assert!(text.contains("failure-reason=build-failed"), "{text}");
    assert!(text.contains("Nothing was pushed"), "{text}");
}

#[test]
fn an_unknown_gantry_builder_value_is_refused_before_any_build() {
    let bed = bed();
    let repo = Repo::new(&["api"]);
    let api = repo.repo("api");
    let images = format!("- name: api\n  repository: {api}\n  context: api\n");
    let (code, text) = run_binary_with_builder(&repo, &bed, "kaniko", &images);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("GANTRY_BUILDER=\"kaniko\" is not a builder"),
        "{text}"
    );
    assert!(!started_a_build(&text), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_image_gets_its_extra_tags_in_the_registry_without_building() {
    let bed = bed();
    let repo = Repo::new(&["api"]);
    let api = repo.repo("api");
    let inputs = |tags: &str| {
        vec![
            (
                "images",
                format!("- name: api\n  repository: {api}\n  context: api\n  tags: {tags}\n"),
            ),
            ("registry-endpoint", bed.tls_registry.clone()),
            ("registry-username", bed.user.clone()),
            ("registry-password", bed.password.clone()),
        ]
    };
    let auth = Some((bed.user.as_str(), bed.password.as_str()));
    let first = repo
        .run(Command::Deploy, &inputs("[]"), Handoff::default())
        .await;
    first.assert_succeeded();
    let digest = served_digest(&bed.tls_registry, &api, &repo.sha, auth)
        .await
        .expect("pushed");
    assert_eq!(
        served_digest(&bed.tls_registry, &api, "stable", auth).await,
        None
    );

    // The same commit with extra tags: nothing is built, the tags point at the same manifest.
    let second = repo
        .run(Command::Deploy, &inputs("[stable, v2]"), Handoff::default())
        .await;
    second.assert_succeeded();
    assert!(!started_a_build(&second.log), "{}", second.log);
    for tag in ["stable", "v2"] {
        assert_eq!(
            served_digest(&bed.tls_registry, &api, tag, auth)
                .await
                .as_deref(),
            Some(digest.as_str()),
            "{tag}"
        );
        assert!(
            second.log.contains(&format!(
                "[api] tagged {}/{api}:{tag} ({digest})",
                bed.tls_registry
            )),
            "{}",
            second.log
        );
    }
    assert_masked_everywhere(&second);

    // Once more: the tags are there already and nothing is written.
    let third = repo
        .run(Command::Deploy, &inputs("[stable]"), Handoff::default())
        .await;
    third.assert_succeeded();
    assert!(third.log.contains("[api] already tagged"), "{}", third.log);

    // A plan tags nothing.
    let plan = repo
        .run(Command::Plan, &inputs("[planned]"), Handoff::default())
        .await;
    plan.assert_succeeded();
    assert_eq!(
        served_digest(&bed.tls_registry, &api, "planned", auth).await,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smoke_test_over_its_time_limit_is_stopped_and_nothing_is_pushed() {
    let bed = bed();
    let repo = Repo::new(&["smoke"]);
    let smoke = repo.repo("hang");
    // Its own image name: the smoke containers of the other smoke test are named after theirs.
    let images = format!(
        "- name: hang\n  repository: {smoke}\n  context: smoke\n  smoke-test: \"echo waiting-forever; sleep 600\"\n  smoke-test-timeout: 2s\n"
    );
    let started = std::time::Instant::now();
    let outcome = repo.run_through_moto(&bed, Command::Deploy, images).await;
    let (reason, message) = outcome.failure();
    assert_eq!(reason, "smoke-test-failed");
    assert!(
        message.contains("did not finish within 2s and was stopped")
            && message.contains("smoke-test-timeout"),
        "{message}"
    );
    assert!(message.contains("waiting-forever"), "{message}");
    assert!(message.contains("Nothing was pushed"), "{message}");
    // Stopped at the limit, not after the sleep (generous bound for a loaded machine).
    assert!(started.elapsed() < Duration::from_secs(120));
    assert!(served_digest(&bed.registry, &smoke, &repo.sha, None)
        .await
        .is_none());
    let left = docker_cli(&bed, &["ps", "-aq", "--filter", "name=gantry-smoke-hang-"]);
    assert_eq!(left, "");
}

#[test]
fn a_registry_endpoint_alone_is_a_plain_registry_reached_without_aws() {
    let bed = bed();
    let repo = Repo::new(&["api"]);
    let api = repo.repo("api");
    let images = format!("--images=- name: api\n  repository: {api}\n  context: api\n");
    // Any AWS call would go to this dead loopback port and fail the run.
    let env = [("AWS_ENDPOINT_URL", "http://127.0.0.1:9")];
    let args = [images.as_str(), "--registry-endpoint", &bed.registry];
    let run = || run_binary(&repo, &env, &args);
    let (code, text) = run();
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("{}/{api}@sha256:", bed.registry)),
        "{text}"
    );
    // The rerun (same commit) looks the commit tag up anonymously and reuses it.
    let (code, text) = run();
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("reused, not rebuilt"), "{text}");
}

#[test]
fn a_daemon_behind_tls_is_reached_with_docker_tls_verify_and_docker_cert_path() {
    let bed = bed();
    let host = env_or("GANTRY_TEST_DOCKER_TLS_HOST", "tcp://127.0.0.1:2376");
    let certs = env_or(
        "GANTRY_TEST_DOCKER_CERT_PATH",
        "/var/tmp/gantry-testbed/docker-tls/client",
    );
    let address = host.trim_start_matches("tcp://");
    assert!(
        address
            .parse()
            .ok()
            .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
            && Path::new(&certs).join("key.pem").is_file(),
        "no TLS front of dockerd at {host} with client certificates in {certs}; run `bash .ci/testbed up`"
    );
    let repo = Repo::new(&["api"]);
    let api = repo.repo("api");
    let images = format!("- name: api\n  repository: {api}\n  context: api\n");

    // As the Docker CLI: TLS with the client certificate, the daemon's CA checked.
    let tls = [
        ("DOCKER_HOST", host.as_str()),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", certs.as_str()),
    ];
    let (code, text) = run_binary_with_env(&repo, &bed, &tls, &images);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Building with BuildKit"), "{text}");
    assert!(
        text.contains(&format!("{}/{api}@sha256:", bed.registry)),
        "{text}"
    );

    // Without DOCKER_TLS_VERIFY the TLS port cannot be spoken to: stopped before any build.
    let (code, text) = run_binary_with_env(&repo, &bed, &tls[..1], &images);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("failure-reason=docker-unreachable"), "{text}");
    assert!(!started_a_build(&text), "{text}");

    // A certificate directory without the files is named, with the variable to fix.
    let empty = tempfile::tempdir().unwrap();
    let empty_path = empty.path().to_string_lossy().into_owned();
    let broken = [tls[0], tls[1], ("DOCKER_CERT_PATH", empty_path.as_str())];
    let (code, text) = run_binary_with_env(&repo, &bed, &broken, &images);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("{empty_path}/ca.pem"))
            && text.contains("key.pem")
            && text.contains("set DOCKER_CERT_PATH"),
        "{text}"
    );
    assert!(!started_a_build(&text), "{text}");
}
