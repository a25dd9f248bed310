//! The report's GitHub side driven end to end through `app::execute` with fake phases and a mock GitHub API: the deployment around the phases, the comment on pull requests and after a merge, the audit commit, warnings for missing permissions that never fail a deploy, and refusals that start nothing.

mod report_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gantry::adapters::runner::{RunnerFiles, RunnerMode, SharedBuffer};
use gantry::app::frame::Phases;
use gantry::app::frame::RunContext;
use gantry::app::{execute, Exit, Invocation};
use gantry::cancel::Cancel;
use gantry::config::RawInputs;
use gantry::context::GitHubContext;
use gantry::pipeline::facts::DeployFacts;
use gantry::pipeline::{Handoff, PhaseResult, PhaseStatus};
use serde_json::json;
use wiremock::matchers::{body_json, body_partial_json, body_string_contains, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const REPO: &str = "/repos/octo-org/shop";
const SHA: &str = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c";
const TOKEN: &str = "ghs_e2e_token_value";

/// Phases that hand over the facts of a scenario without touching anything.
struct ScenarioPhases {
    deploy_status: PhaseStatus,
    changed: bool,
    facts: Option<DeployFacts>,
    handoff: Handoff,
}

impl ScenarioPhases {
    fn from(scenario: report_support::Scenario) -> Self {
        let deploy = scenario
            .outcome
            .phases
            .iter()
            .find(|p| p.name == gantry::pipeline::PhaseName::Deploy)
            .unwrap();
        let mut handoff = scenario.outcome.handoff.clone();
        let facts = handoff.deploy.take();
        ScenarioPhases {
            deploy_status: deploy.result.status.clone(),
            changed: true,
            facts,
            handoff,
        }
    }
}

impl Phases for ScenarioPhases {
    async fn infra(&self, _run: &RunContext<'_>, handoff: &mut Handoff) -> PhaseResult {
        handoff.plan = self.handoff.plan.clone();
        handoff.terraform_outputs = self.handoff.terraform_outputs.clone();
        PhaseResult::new(PhaseStatus::Succeeded)
    }
    async fn build(&self, _run: &RunContext<'_>, handoff: &mut Handoff) -> PhaseResult {
        handoff.built_images = self.handoff.built_images.clone();
        handoff.images = self.handoff.images.clone();
        PhaseResult::new(PhaseStatus::Succeeded)
    }
    async fn deploy(&self, _run: &RunContext<'_>, handoff: &mut Handoff) -> PhaseResult {
        handoff.deploy = self.facts.clone();
        let mut result = PhaseResult::new(self.deploy_status.clone());
        result.changed = self.changed;
        result
    }
}

struct Run {
    exit: Exit,
    log: String,
    outputs: BTreeMap<String, String>,
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

fn event(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/events/{name}.json"))
}

async fn run(phases: &ScenarioPhases, event_name: &str, api: &str, inputs: &[(&str, &str)]) -> Run {
    let ws = checkout();
    let files_dir = tempfile::tempdir().unwrap();
    let output = files_dir.path().join("output");
    let summary = files_dir.path().join("summary");
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in [
        ("environment", "prod"),
        ("terraform-directory", "infra"),
        (
            "images",
            "- name: api\n  repository: team/api\n  context: api\n",
        ),
        ("manifests", "k8s"),
        ("kubeconfig", "kubeconfig"),
        ("github-token", TOKEN),
        ("environment-url", "https://shop.example.com"),
    ]
    .into_iter()
    .chain(inputs.iter().copied())
    {
        vars.insert(format!("INPUT_{}", name.to_uppercase()), value.to_string());
    }
    let event_path = event(event_name);
    let env = |name: &str| -> Option<String> {
        match name {
            "GITHUB_EVENT_NAME" => Some(event_name.into()),
            "GITHUB_EVENT_PATH" => Some(event_path.to_str().unwrap().into()),
            "GITHUB_SHA" => Some(SHA.into()),
            "GITHUB_REPOSITORY" => Some("octo-org/shop".into()),
            "GITHUB_RUN_ID" => Some("99".into()),
            "GITHUB_ACTOR" => Some("mona".into()),
            "GITHUB_API_URL" => Some(api.into()),
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
    let exit = execute(invocation, phases, Box::new(log.clone()), Cancel::never()).await;
    let mut outputs = BTreeMap::new();
    let text = std::fs::read_to_string(&output).unwrap_or_default();
    let mut lines = text.lines();
    while let Some(header) = lines.next() {
        let (name, delimiter) = header.split_once("<<").unwrap();
        let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delimiter).collect();
        outputs.insert(name.to_string(), value.join("\n"));
    }
    Run {
        exit,
        log: log.contents(),
        outputs,
        summary: std::fs::read_to_string(&summary).unwrap_or_default(),
    }
}

fn ok(status: u16, body: serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}

async fn mount_audit(server: &MockServer, expect: u64) {
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/git/ref/heads/gantry/audit/prod")))
        .respond_with(ok(200, json!({"object": {"sha": "audit-head"}})))
        .expect(expect)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/git/commits/audit-head")))
        .respond_with(ok(200, json!({"tree": {"sha": "audit-tree"}})))
        .expect(expect)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/git/blobs")))
        .respond_with(ok(201, json!({"sha": "blob"})))
        .expect(2 * expect)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/git/trees")))
        .and(body_partial_json(json!({"base_tree": "audit-tree"})))
        .respond_with(ok(201, json!({"sha": "new-tree"})))
        .expect(expect)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/git/commits")))
        .and(body_partial_json(
            json!({"tree": "new-tree", "parents": ["audit-head"]}),
        ))
        .respond_with(ok(201, json!({"sha": "audit-commit-sha"})))
        .expect(expect)
        .mount(server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("{REPO}/git/refs/heads/gantry/audit/prod")))
        .and(body_json(
            json!({"sha": "audit-commit-sha", "force": false}),
        ))
        .respond_with(ok(200, json!({"object": {"sha": "audit-commit-sha"}})))
        .expect(expect)
        .mount(server)
        .await;
}

fn body_of(request: &Request) -> serde_json::Value {
    serde_json::from_slice(&request.body).unwrap_or(serde_json::Value::Null)
}

#[tokio::test]
async fn a_push_deploy_records_the_deployment_updates_the_merged_pr_and_commits_the_audit() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/deployments")))
        .and(body_partial_json(json!({
            "ref": SHA, "environment": "prod", "auto_merge": false, "required_contexts": [],
            "production_environment": true, "task": "deploy"
        })))
        .respond_with(ok(201, json!({"id": 77})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/deployments/77/statuses")))
        .respond_with(ok(201, json!({"id": 1})))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/commits/{SHA}/pulls")))
        .respond_with(ok(
            200,
            json!([
                {"number": 17, "merged_at": "2026-11-20T10:00:00Z"},
                {"number": 3, "merged_at": null}
            ]),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/issues/17/comments")))
        .respond_with(ok(200, json!([
            {"id": 5, "body": "<!-- gantry:plan:prod -->\nthe plan", "html_url": "https://github.com/octo-org/shop/pull/17#issuecomment-5"}
        ])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("{REPO}/issues/comments/5")))
        .and(body_string_contains("Deployed"))
        .respond_with(ok(
            200,
            json!({"id": 5, "html_url": "https://github.com/octo-org/shop/pull/17#issuecomment-5"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    mount_audit(&server, 1).await;

    let phases = ScenarioPhases::from(report_support::success());
    let run = run(&phases, "push", &server.uri(), &[]).await;
    assert_eq!(run.exit, Exit::Success, "{}", run.log);
    assert_eq!(run.outputs["status"], "deployed");
    assert_eq!(run.outputs["release"], "42");
    assert_eq!(run.outputs["deployment-id"], "77");
    assert_eq!(run.outputs["audit-commit"], "audit-commit-sha");
    assert!(run.outputs["comment-url"].ends_with("issuecomment-5"));
    assert!(!run.log.contains("::warning"), "{}", run.log);
    assert!(
        run.summary.contains("### Recorded on GitHub"),
        "{}",
        run.summary
    );
    assert!(run
        .log
        .lines()
        .all(|l| l.starts_with("::add-mask::") || !l.contains(TOKEN)));
    assert!(!run.summary.contains(TOKEN));

    let requests = server.received_requests().await.unwrap();
    let statuses: Vec<serde_json::Value> = requests
        .iter()
        .filter(|r| r.url.path().ends_with("/statuses"))
        .map(body_of)
        .collect();
    assert_eq!(statuses[0]["state"], "in_progress");
    assert_eq!(statuses[1]["state"], "success");
    assert_eq!(statuses[1]["description"], "release 42 deployed");
    assert_eq!(statuses[1]["auto_inactive"], true);
    assert_eq!(statuses[1]["environment_url"], "https://shop.example.com");
    assert_eq!(
        statuses[1]["log_url"],
        "https://github.com/octo-org/shop/actions/runs/99"
    );
    // The deployment exists before any phase ran: its creation is the first request.
    assert!(requests[0].url.path().ends_with("/deployments"));
    let release: serde_json::Value = requests
        .iter()
        .filter(|r| r.url.path().ends_with("/git/blobs"))
        .map(body_of)
        .find(|b| b["content"].as_str().unwrap().contains("\"release\": 42"))
        .map(|b| serde_json::from_str(b["content"].as_str().unwrap()).unwrap())
        .expect("release.json blob");
    assert_eq!(release["commit"], SHA);
    assert_eq!(release["actor"], "mona");
    assert_eq!(release["outcome"], "deployed");
    assert_eq!(release["images"]["api"]["status"], "built");
    let tree = requests
        .iter()
        .find(|r| r.url.path().ends_with("/git/trees"))
        .map(body_of)
        .unwrap();
    let paths: Vec<&str> = tree["tree"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["prod/release.json", "prod/manifests.yaml"]);
}

#[tokio::test]
async fn a_rolled_back_deploy_marks_the_deployment_failed_and_names_the_restored_release() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/deployments")))
        .respond_with(ok(201, json!({"id": 78})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/deployments/78/statuses")))
        .respond_with(ok(201, json!({"id": 1})))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/commits/{SHA}/pulls")))
        .respond_with(ok(200, json!([])))
        .mount(&server)
        .await;
    mount_audit(&server, 1).await;
    let phases = ScenarioPhases::from(report_support::rollout_rolled_back());
    let run = run(&phases, "push", &server.uri(), &[]).await;
    assert_eq!(run.exit, Exit::Failure);
    assert_eq!(run.outputs["status"], "rolled-back");
    let requests = server.received_requests().await.unwrap();
    let last = requests
        .iter()
        .filter(|r| r.url.path().ends_with("/statuses"))
        .map(body_of)
        .next_back()
        .unwrap();
    assert_eq!(last["state"], "failure");
    assert_eq!(
        last["description"],
        "release 42 failed (rollout-failed); rolled back to release 41"
    );
}

#[tokio::test]
async fn missing_permissions_are_warnings_naming_them_and_the_deploy_stays_a_success() {
    let server = MockServer::start().await;
    let forbidden = ok(
        403,
        json!({"message": "Resource not accessible by integration", "documentation_url": "https://docs.github.com/rest"}),
    );
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/deployments")))
        .respond_with(forbidden.clone())
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/commits/{SHA}/pulls")))
        .respond_with(forbidden.clone())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/git/ref/heads/gantry/audit/prod")))
        .respond_with(forbidden)
        .expect(1)
        .mount(&server)
        .await;
    let phases = ScenarioPhases::from(report_support::success());
    let run = run(&phases, "push", &server.uri(), &[]).await;
    assert_eq!(run.exit, Exit::Success, "{}", run.log);
    assert_eq!(run.outputs["status"], "deployed");
    assert_eq!(run.outputs.get("deployment-id"), None);
    for permission in [
        "deployments: write",
        "contents: write",
        "pull-requests: read",
    ] {
        assert!(
            run.log
                .lines()
                .any(|l| l.starts_with("::warning") && l.contains(permission)),
            "a warning names {permission}:\n{}",
            run.log
        );
    }
    assert!(!run.log.contains("::error"), "{}", run.log);
}

#[tokio::test]
async fn a_pull_request_gets_one_plan_comment_and_no_deployment() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/issues/42/comments")))
        .respond_with(ok(200, json!([{"id": 1, "body": "LGTM", "html_url": "x"}])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/issues/42/comments")))
        .and(body_string_contains("<!-- gantry:plan:prod -->"))
        .and(body_string_contains("Kubernetes dry run"))
        .respond_with(ok(201, json!({"id": 900, "html_url": "https://github.com/octo-org/shop/pull/42#issuecomment-900"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/deployments")))
        .respond_with(ok(201, json!({"id": 1})))
        .expect(0)
        .mount(&server)
        .await;
    let mut scenario = report_support::plan_with_changes();
    scenario
        .outcome
        .handoff
        .deploy
        .as_mut()
        .unwrap()
        .dry_run
        .as_mut()
        .unwrap()[0]
        .object = format!("Secret/shop/{TOKEN}");
    let phases = ScenarioPhases::from(scenario);
    let run = run(&phases, "pull_request", &server.uri(), &[]).await;
    assert_eq!(run.exit, Exit::Success, "{}", run.log);
    assert_eq!(run.outputs["status"], "planned");
    assert!(run.outputs["comment-url"].ends_with("issuecomment-900"));
    let requests = server.received_requests().await.unwrap();
    let posted = requests
        .iter()
        .find(|r| r.method.as_str() == "POST")
        .map(body_of)
        .unwrap();
    assert!(
        !posted["body"].as_str().unwrap().contains(TOKEN),
        "the token is masked in the comment"
    );
}

#[tokio::test]
async fn without_a_token_a_push_deploy_skips_github_with_one_notice() {
    let server = MockServer::start().await;
    let phases = ScenarioPhases::from(report_support::success());
    let run = run(&phases, "push", &server.uri(), &[("github-token", "")]).await;
    assert_eq!(run.exit, Exit::Success, "{}", run.log);
    assert_eq!(
        run.log.matches("github-token is empty").count(),
        1,
        "{}",
        run.log
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_requests_are_refused_before_anything_starts() {
    let server = MockServer::start().await;
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        ("pull_request", vec![("github-token", "")], "github-token"),
        ("push", vec![("command", "destroy")], "confirm-destroy"),
        (
            "workflow_dispatch",
            vec![("command", "rollback")],
            "rollback-to",
        ),
    ];
    for (event_name, inputs, needle) in cases {
        let phases = ScenarioPhases::from(report_support::success());
        let run = run(&phases, event_name, &server.uri(), &inputs).await;
        assert_eq!(
            run.exit,
            Exit::Usage,
            "{event_name} {inputs:?}: {}",
            run.log
        );
        assert!(run.log.contains(needle), "{event_name}: {}", run.log);
        assert_eq!(run.outputs["failure-reason"], "invalid-input");
        assert!(run.summary.contains("Invalid input"));
    }
    assert!(
        server.received_requests().await.unwrap().is_empty(),
        "nothing reached GitHub"
    );
}

#[tokio::test]
async fn a_rollback_command_records_a_rollback_deployment_that_says_so() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/deployments")))
        .and(body_partial_json(json!({
            "task": "deploy:rollback",
            "description": "gantry rollback of prod to release 41",
            "payload": {"gantry": {"command": "rollback", "rollback_to": 41}}
        })))
        .respond_with(ok(201, json!({"id": 79})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/deployments/79/statuses")))
        .respond_with(ok(201, json!({"id": 1})))
        .expect(2)
        .mount(&server)
        .await;
    // Not a deploy of the pushed commit: no pull-request lookup.
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/commits/{SHA}/pulls")))
        .respond_with(ok(200, json!([])))
        .expect(0)
        .mount(&server)
        .await;
    mount_audit(&server, 1).await;
    let mut scenario = report_support::success();
    scenario.outcome.handoff.deploy = Some(DeployFacts {
        release: Some(41),
        previous_release: Some(42),
        rollback: Some(gantry::pipeline::facts::RollbackFacts {
            from_release: Some(42),
            to_release: Some(41),
            restored: vec!["Deployment/shop/api".into()],
            deleted: vec![],
            error: None,
            ..Default::default()
        }),
        rendered_manifests: Some(report_support::MANIFESTS.into()),
        ..DeployFacts::default()
    });
    let phases = ScenarioPhases::from(scenario);
    let run = run(
        &phases,
        "push",
        &server.uri(),
        &[("command", "rollback"), ("rollback-to", "41")],
    )
    .await;
    assert_eq!(run.exit, Exit::Success, "{}", run.log);
    assert_eq!(run.outputs["release"], "41");
    let requests = server.received_requests().await.unwrap();
    let last = requests
        .iter()
        .filter(|r| r.url.path().ends_with("/statuses"))
        .map(body_of)
        .next_back()
        .unwrap();
    assert_eq!(last["state"], "success");
    assert_eq!(last["description"], "rolled back to release 41");
    assert!(run
        .summary
        .contains("## gantry · Rolled back · `prod` · release 41"));
}

#[tokio::test]
async fn a_deploy_stopped_before_it_changed_anything_writes_no_audit_commit() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/deployments")))
        .respond_with(ok(201, json!({"id": 80})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/deployments/80/statuses")))
        .respond_with(ok(201, json!({"id": 1})))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/commits/{SHA}/pulls")))
        .respond_with(ok(200, json!([])))
        .mount(&server)
        .await;
    mount_audit(&server, 0).await;
    let mut phases = ScenarioPhases::from(report_support::success());
    phases.deploy_status = PhaseStatus::failed(
        gantry::pipeline::FailureReason::PreflightFailed,
        "image api@sha256:aa11 is not in the registry",
    );
    phases.changed = false;
    let run = run(&phases, "push", &server.uri(), &[]).await;
    assert_eq!(run.exit, Exit::Failure);
    let requests = server.received_requests().await.unwrap();
    let last = requests
        .iter()
        .filter(|r| r.url.path().ends_with("/statuses"))
        .map(body_of)
        .next_back()
        .unwrap();
    assert_eq!(last["state"], "failure");
    assert_eq!(last["description"], "release 42 failed (preflight-failed)");
}
