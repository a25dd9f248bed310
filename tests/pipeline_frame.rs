//! The pipeline frame driven end to end through `app::execute` with fake phases: order, skips, failures, cancellation, outputs, summary and log protocol.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use gantry::adapters::runner::{RunnerFiles, RunnerMode, SharedBuffer};
use gantry::app::frame::Phases;
use gantry::app::frame::RunContext;
use gantry::app::{execute, Exit, Invocation};
use gantry::cancel::Cancel;
use gantry::config::RawInputs;
use gantry::context::GitHubContext;
use gantry::pipeline::{Handoff, PhaseResult, PhaseStatus};

/// Phases that record their calls and answer with prepared results.
#[derive(Default)]
struct FakePhases {
    calls: Mutex<Vec<&'static str>>,
    infra: Option<PhaseStatus>,
    build: Option<PhaseStatus>,
    deploy: Option<PhaseStatus>,
    /// Whether the fake infra phase reports that it changed the environment.
    infra_changed: bool,
    /// Fires the cancellation while the infra phase runs.
    cancel_during_infra: Option<gantry::cancel::CancelHandle>,
}

fn result(status: &Option<PhaseStatus>) -> PhaseResult {
    PhaseResult::new(status.clone().unwrap_or(PhaseStatus::Succeeded))
}

impl Phases for FakePhases {
    async fn infra(&self, run: &RunContext<'_>, handoff: &mut Handoff) -> PhaseResult {
        self.calls.lock().unwrap().push("infra");
        run.runner.info("terraform apply: 2 added");
        handoff
            .terraform_outputs
            .insert("repo".into(), serde_json::json!("team/api"));
        if let Some(handle) = &self.cancel_during_infra {
            handle.cancel();
        }
        let mut result = result(&self.infra);
        result.changed = self.infra_changed;
        result.outputs.insert("tf-repo".into(), "team/api".into());
        result.notes.push("**2** to create".into());
        result
    }

    async fn build(&self, _run: &RunContext<'_>, handoff: &mut Handoff) -> PhaseResult {
        self.calls.lock().unwrap().push("build");
        let repo = handoff
            .terraform_outputs
            .get("repo")
            .and_then(|v| v.as_str())
            .unwrap_or("team/api")
            .to_string();
        handoff
            .images
            .insert("api".into(), format!("{repo}@sha256:abc"));
        result(&self.build)
    }

    async fn deploy(&self, _run: &RunContext<'_>, handoff: &mut Handoff) -> PhaseResult {
        self.calls.lock().unwrap().push("deploy");
        assert_eq!(
            handoff.images["api"], "team/api@sha256:abc",
            "handoff flows from build"
        );
        result(&self.deploy)
    }
}

struct Run {
    exit: Exit,
    log: String,
    outputs: String,
    summary: String,
}

fn checkout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, contents) in [
        ("infra/main.tf", "output \"x\" { value = 1 }\n"),
        ("api/Dockerfile", "FROM scratch\n"),
        (
            "k8s/app.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n",
        ),
        ("kubeconfig", "apiVersion: v1\nclusters: []\n"),
    ] {
        let file = dir.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, contents).unwrap();
    }
    dir
}

fn push_event() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events/push.json")
}

async fn run_with(phases: &FakePhases, inputs: &[(&str, &str)], cancel: Cancel) -> Run {
    let ws = checkout();
    let files_dir = tempfile::tempdir().unwrap();
    let output = files_dir.path().join("output");
    let summary = files_dir.path().join("summary");
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in [
        ("environment", "dev"),
        ("terraform-directory", "infra"),
        (
            "images",
            "- name: api\n  repository: team/api\n  context: api\n",
        ),
        ("manifests", "k8s"),
        ("kubeconfig", "kubeconfig"),
        ("registry-username", "robot"),
        ("registry-password", "registry-pass-5f3a9"),
    ]
    .into_iter()
    .chain(inputs.iter().copied())
    {
        vars.insert(format!("INPUT_{}", name.to_uppercase()), value.to_string());
    }
    let event = push_event();
    let env = |name: &str| -> Option<String> {
        match name {
            "GITHUB_EVENT_NAME" => Some("push".into()),
            "GITHUB_EVENT_PATH" => Some(event.to_str().unwrap().into()),
            "GITHUB_SHA" => Some("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c".into()),
            "GITHUB_REPOSITORY" => Some("octo-org/shop".into()),
            "GITHUB_RUN_ID" => Some("99".into()),
            _ => vars.get(name).cloned(),
        }
    };
    let invocation = Invocation {
        mode: RunnerMode::GitHub,
        raw: RawInputs::from_env(env).with_defaults(),
        command_override: None,
        files: Ok(RunnerFiles {
            output: Some(output.clone()),
            summary: Some(summary.clone()),
        }),
        context: GitHubContext::from_env(env),
        workspace: ws.path().to_path_buf(),
        kubeconfig_env: None,
        debug: false,
    };
    let log = SharedBuffer::default();
    let exit = execute(invocation, phases, Box::new(log.clone()), cancel).await;
    Run {
        exit,
        log: log.contents(),
        outputs: std::fs::read_to_string(&output).unwrap_or_default(),
        summary: std::fs::read_to_string(&summary).unwrap_or_default(),
    }
}

/// Reads `$GITHUB_OUTPUT` heredocs back into a map, checking the delimiter protocol.
fn parse_outputs(text: &str) -> BTreeMap<String, String> {
    let mut outputs = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(header) = lines.next() {
        let (name, delimiter) = header.split_once("<<").expect("heredoc header");
        assert!(
            delimiter.starts_with("ghadelimiter_") && delimiter.len() > 40,
            "random delimiter: {delimiter}"
        );
        let mut value = Vec::new();
        for line in lines.by_ref() {
            if line == delimiter {
                break;
            }
            value.push(line);
        }
        outputs.insert(name.to_string(), value.join("\n"));
    }
    outputs
}

#[tokio::test]
async fn all_phases_run_in_order_and_the_run_is_reported_as_deployed() {
    let phases = FakePhases::default();
    let run = run_with(&phases, &[], Cancel::never()).await;
    assert_eq!(run.exit, Exit::Success, "{}", run.log);
    assert_eq!(*phases.calls.lock().unwrap(), ["infra", "build", "deploy"]);
    let outputs = parse_outputs(&run.outputs);
    assert_eq!(outputs["status"], "deployed");
    assert_eq!(outputs["command"], "deploy");
    assert_eq!(outputs["environment"], "dev");
    assert_eq!(outputs["rolled-back"], "false");
    assert_eq!(outputs["failure-reason"], "");
    assert_eq!(
        outputs["tf-repo"], "team/api",
        "phase outputs become step outputs"
    );
    let images: serde_json::Value = serde_json::from_str(&outputs["images"]).unwrap();
    assert_eq!(images["api"], "team/api@sha256:abc");
    let phases_json: serde_json::Value = serde_json::from_str(&outputs["phases"]).unwrap();
    for phase in ["infra", "build", "deploy"] {
        assert_eq!(phases_json[phase]["status"], "succeeded");
    }
    assert!(
        run.summary.contains("## gantry · Deployed · `dev`"),
        "{}",
        run.summary
    );
    assert!(run.summary.contains("| infra | succeeded |"));
    assert!(
        run.summary.contains("**2** to create"),
        "phase notes reach the summary"
    );
    assert!(run
        .summary
        .contains("https://github.com/octo-org/shop/actions/runs/99"));
    // One log group per phase that ran.
    for phase in ["infra", "build", "deploy"] {
        assert!(
            run.log.contains(&format!("::group::gantry {phase}\n")),
            "{}",
            run.log
        );
    }
    assert_eq!(
        run.log.matches("::group::").count(),
        run.log.matches("::endgroup::").count()
    );
}

#[tokio::test]
async fn a_failed_phase_stops_the_later_ones_and_fails_the_run() {
    let phases = FakePhases {
        infra: Some(PhaseStatus::failed(
            gantry::pipeline::FailureReason::PlanFailed,
            "terraform plan failed: Unsupported argument",
        )),
        ..FakePhases::default()
    };
    let run = run_with(&phases, &[], Cancel::never()).await;
    assert_eq!(run.exit, Exit::Failure);
    assert_eq!(*phases.calls.lock().unwrap(), ["infra"]);
    let outputs = parse_outputs(&run.outputs);
    assert_eq!(outputs["status"], "failed");
    assert_eq!(outputs["failure-reason"], "plan-failed");
    let phases_json: serde_json::Value = serde_json::from_str(&outputs["phases"]).unwrap();
    assert_eq!(phases_json["build"]["status"], "skipped");
    assert_eq!(
        phases_json["build"]["reason"],
        "not run: the infra phase failed"
    );
    assert!(
        run.summary
            .contains("failed before anything was changed; the environment is as it was"),
        "{}",
        run.summary
    );
    assert!(
        run.log
            .contains("::error::infra failed: terraform plan failed"),
        "{}",
        run.log
    );
}

#[tokio::test]
async fn a_rolled_back_deploy_is_a_failed_run_that_says_so() {
    let phases = FakePhases {
        deploy: Some(PhaseStatus::RolledBack {
            failure_reason: gantry::pipeline::FailureReason::RolloutFailed,
            message: "backend: CrashLoopBackOff; restored release 6".into(),
        }),
        ..FakePhases::default()
    };
    let run = run_with(&phases, &[], Cancel::never()).await;
    assert_eq!(run.exit, Exit::Failure);
    let outputs = parse_outputs(&run.outputs);
    assert_eq!(outputs["status"], "rolled-back");
    assert_eq!(outputs["rolled-back"], "true");
    assert_eq!(outputs["failure-reason"], "rollout-failed");
    assert!(
        run.summary.contains("Failed and rolled back"),
        "{}",
        run.summary
    );
    assert!(!run.summary.contains("environment is as it was"));
}

#[tokio::test]
async fn phases_not_selected_are_skipped_with_the_reason() {
    let phases = FakePhases::default();
    let run = run_with(
        &phases,
        &[("phases", "infra"), ("command", "plan")],
        Cancel::never(),
    )
    .await;
    assert_eq!(run.exit, Exit::Success, "{}", run.log);
    assert_eq!(*phases.calls.lock().unwrap(), ["infra"]);
    let outputs = parse_outputs(&run.outputs);
    assert_eq!(outputs["status"], "planned");
    let phases_json: serde_json::Value = serde_json::from_str(&outputs["phases"]).unwrap();
    assert_eq!(phases_json["deploy"]["reason"], "not in `phases` (infra)");

    let phases = FakePhases::default();
    let run = run_with(&phases, &[("terraform-directory", "")], Cancel::never()).await;
    assert_eq!(*phases.calls.lock().unwrap(), ["build", "deploy"]);
    let phases_json: serde_json::Value =
        serde_json::from_str(&parse_outputs(&run.outputs)["phases"]).unwrap();
    assert_eq!(
        phases_json["infra"]["reason"],
        "terraform-directory is empty"
    );
}

#[tokio::test]
async fn cancellation_stops_before_the_next_phase_and_fails() {
    let (handle, cancel) = Cancel::new();
    let phases = FakePhases {
        cancel_during_infra: Some(handle),
        ..FakePhases::default()
    };
    let run = run_with(&phases, &[], cancel).await;
    assert_eq!(run.exit, Exit::Failure);
    assert_eq!(*phases.calls.lock().unwrap(), ["infra"]);
    let outputs = parse_outputs(&run.outputs);
    assert_eq!(outputs["failure-reason"], "cancelled");
    let phases_json: serde_json::Value = serde_json::from_str(&outputs["phases"]).unwrap();
    assert_eq!(phases_json["build"]["status"], "failed");
    assert_eq!(
        phases_json["deploy"]["reason"],
        "not run: the build phase failed"
    );
}

#[tokio::test]
async fn secrets_are_masked_first_and_never_printed() {
    let phases = FakePhases {
        infra: Some(PhaseStatus::failed(
            gantry::pipeline::FailureReason::PlanFailed,
            "auth failed with password registry-pass-5f3a9",
        )),
        ..FakePhases::default()
    };
    let run = run_with(&phases, &[], Cancel::never()).await;
    let first_line = run.log.lines().next().unwrap();
    assert_eq!(
        first_line, "::add-mask::registry-pass-5f3a9",
        "masking comes before any other line"
    );
    let rest: String = run.log.lines().skip(1).collect::<Vec<_>>().join("\n");
    for (place, text) in [
        ("log", rest.as_str()),
        ("outputs", run.outputs.as_str()),
        ("summary", run.summary.as_str()),
    ] {
        assert!(
            !text.contains("registry-pass-5f3a9"),
            "the secret leaked into the {place}:\n{text}"
        );
    }
    assert!(run.log.contains("auth failed with password ***"));
}

#[tokio::test]
async fn an_untrusted_commit_message_cannot_issue_workflow_commands() {
    let phases = FakePhases::default();
    let run = run_with(&phases, &[], Cancel::never()).await;
    let lines: Vec<&str> = run.log.lines().collect();
    let evil = lines
        .iter()
        .position(|l| *l == "::set-output name=status::deployed")
        .expect("message printed");
    let token = lines[evil - 1]
        .strip_prefix("::stop-commands::")
        .expect("fenced by stop-commands");
    assert!(token.len() >= 32);
    assert_eq!(
        lines[evil + 1],
        format!("::{token}::"),
        "commands resume right after"
    );
    // Every line the runner would read as a command is one gantry meant.
    let known = [
        "::add-mask::",
        "::group::",
        "::endgroup::",
        "::error",
        "::warning",
        "::debug::",
        "::stop-commands::",
    ];
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("::") && !known.iter().any(|k| line.starts_with(k)) {
            let resume = format!("::{token}::");
            let fenced = lines
                .get(i.wrapping_sub(1))
                .is_some_and(|l| l.starts_with("::stop-commands::"));
            assert!(
                *line == resume || fenced,
                "unexpected command line {line:?}"
            );
        }
    }
}

#[tokio::test]
async fn invalid_input_changes_nothing_and_exits_2() {
    let phases = FakePhases::default();
    let run = run_with(
        &phases,
        &[
            ("phases", "infra,biuld"),
            ("rollout-timeout", "600"),
            ("push", "yes"),
        ],
        Cancel::never(),
    )
    .await;
    assert_eq!(run.exit, Exit::Usage);
    assert!(phases.calls.lock().unwrap().is_empty(), "no phase ran");
    assert_eq!(
        run.log
            .matches("::error title=gantry: invalid input::")
            .count(),
        0,
        "the title is escaped"
    );
    assert_eq!(
        run.log
            .matches("::error title=gantry%3A invalid input::")
            .count(),
        3,
        "{}",
        run.log
    );
    let outputs = parse_outputs(&run.outputs);
    assert_eq!(outputs["status"], "failed");
    assert_eq!(outputs["failure-reason"], "invalid-input");
    assert!(run.summary.contains("Invalid input"), "{}", run.summary);
}

#[tokio::test]
async fn a_failure_after_a_change_is_never_called_unchanged() {
    let phases = FakePhases {
        infra: Some(PhaseStatus::failed(
            gantry::pipeline::FailureReason::ApplyFailed,
            "terraform apply failed: 1 changed, 1 failed",
        )),
        infra_changed: true,
        ..FakePhases::default()
    };
    let run = run_with(&phases, &[], Cancel::never()).await;
    assert_eq!(run.exit, Exit::Failure);
    assert!(
        run.summary
            .contains("failed after it had started changing the environment"),
        "{}",
        run.summary
    );
    assert!(!run.summary.contains("environment is as it was"));
}
