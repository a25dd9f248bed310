//! Regression: a secret that phases wrote into their (already escaped) summary notes is masked in its escaped spelling too, as is a sensitive Terraform output.

use std::collections::BTreeMap;
use std::path::Path;

use gantry::adapters::runner::{RunnerFiles, RunnerMode, SharedBuffer};
use gantry::app::frame::Phases;
use gantry::app::frame::RunContext;
use gantry::app::{execute, Exit, Invocation};
use gantry::cancel::Cancel;
use gantry::config::RawInputs;
use gantry::context::GitHubContext;
use gantry::pipeline::{Handoff, PhaseResult, PhaseStatus};
use gantry::report::markdown::escape_markdown;

const PASSWORD: &str = "registry_pass*5f3a9";
const DB_PASSWORD: &str = "db_pw_[x]_secret";

struct Leaky;

impl Phases for Leaky {
    async fn infra(&self, _run: &RunContext<'_>, handoff: &mut Handoff) -> PhaseResult {
        handoff
            .sensitive_outputs
            .insert("db_password".into(), serde_json::json!(DB_PASSWORD));
        let mut result = PhaseResult::new(PhaseStatus::Succeeded);
        result.notes.push(format!(
            "**Terraform said:** {}",
            escape_markdown(&format!("connecting with {DB_PASSWORD}"))
        ));
        result
    }
    async fn build(&self, _run: &RunContext<'_>, _handoff: &mut Handoff) -> PhaseResult {
        let mut result = PhaseResult::new(PhaseStatus::failed(
            gantry::pipeline::FailureReason::BuildFailed,
            "login refused",
        ));
        result.notes.push(format!(
            "**Build failed:** {}",
            escape_markdown(&format!("docker login -p {PASSWORD} refused"))
        ));
        result
    }
    async fn deploy(&self, _run: &RunContext<'_>, _handoff: &mut Handoff) -> PhaseResult {
        PhaseResult::new(PhaseStatus::Succeeded)
    }
}

#[tokio::test]
async fn escaped_secrets_in_phase_notes_are_masked_in_the_summary() {
    let ws = tempfile::tempdir().unwrap();
    for (path, contents) in [
        ("infra/main.tf", "output \"x\" { value = 1 }\n"),
        ("api/Dockerfile", "FROM scratch\n"),
        (
            "k8s/app.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n",
        ),
        ("kubeconfig", "apiVersion: v1\nclusters: []\n"),
    ] {
        let file = ws.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, contents).unwrap();
    }
    let files = tempfile::tempdir().unwrap();
    let summary = files.path().join("summary");
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
        ("registry-password", PASSWORD),
    ] {
        vars.insert(format!("INPUT_{}", name.to_uppercase()), value.to_string());
    }
    let event = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events/push.json");
    let env = |name: &str| -> Option<String> {
        match name {
            "GITHUB_EVENT_NAME" => Some("push".into()),
            "GITHUB_EVENT_PATH" => Some(event.to_str().unwrap().into()),
            "GITHUB_SHA" => Some("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c".into()),
            _ => vars.get(name).cloned(),
        }
    };
    let invocation = Invocation {
        mode: RunnerMode::GitHub,
        raw: RawInputs::from_env(env).with_defaults(),
        command_override: None,
        files: Ok(RunnerFiles {
            output: Some(files.path().join("output")),
            summary: Some(summary.clone()),
        }),
        context: GitHubContext::from_env(env),
        workspace: ws.path().to_path_buf(),
        kubeconfig_env: None,
        debug: false,
    };
    let exit = execute(
        invocation,
        &Leaky,
        Box::new(SharedBuffer::default()),
        Cancel::never(),
    )
    .await;
    assert_eq!(exit, Exit::Failure);
    let summary = std::fs::read_to_string(summary).unwrap();
    for secret in [PASSWORD, DB_PASSWORD] {
        assert!(!summary.contains(secret), "{summary}");
        assert!(!summary.contains(&escape_markdown(secret)), "{summary}");
    }
    assert!(
        summary.contains("docker login -p \\*\\*\\* refused"),
        "{summary}"
    );
    assert!(summary.contains("connecting with \\*\\*\\*"), "{summary}");
}
