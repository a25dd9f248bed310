//! The GitHub context read from real-shaped event payloads, and the command decided from it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gantry::config::{Config, RawInputs, ValidationContext};
use gantry::context::{ContextError, Event, GitHubContext};
use gantry::pipeline::{decide, Command};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/events")
        .join(name)
}

fn context_for(
    event_name: &str,
    payload: &Path,
    extra: &[(&str, &str)],
) -> Result<GitHubContext, ContextError> {
    let mut vars: BTreeMap<String, String> = [
        ("GITHUB_EVENT_NAME", event_name),
        ("GITHUB_EVENT_PATH", payload.to_str().unwrap()),
        ("GITHUB_REF", "refs/heads/main"),
        ("GITHUB_SHA", "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"),
        ("GITHUB_REPOSITORY", "octo-org/shop"),
        ("GITHUB_RUN_ID", "7001"),
        ("GITHUB_RUN_ATTEMPT", "2"),
        ("GITHUB_ACTOR", "mona"),
        ("GITHUB_SERVER_URL", "https://github.com"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    GitHubContext::from_env(|name| vars.get(name).cloned())
}

/// A checkout with a Terraform root module, so a run has something to do.
fn checkout() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("infra")).unwrap();
        std::fs::write(
            dir.path().join("infra/main.tf"),
            "output \"x\" { value = 1 }\n",
        )
        .unwrap();
        dir
    });
    dir.path().to_path_buf()
}

fn config(pairs: &[(&str, &str)]) -> Config {
    let ws = checkout();
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    vars.insert("INPUT_ENVIRONMENT".into(), "prod".into());
    vars.insert("INPUT_TERRAFORM-DIRECTORY".into(), "infra".into());
    vars.insert("INPUT_GITHUB-TOKEN".into(), "ghs_token_for_tests".into());
    for (k, v) in pairs {
        vars.insert(format!("INPUT_{}", k.to_uppercase()), v.to_string());
    }
    let raw = RawInputs::from_env(|name| vars.get(name).cloned()).with_defaults();
    Config::validate(
        &raw,
        &ValidationContext {
            workspace: ws,
            action_mode: false,
            kubeconfig_env: None,
            kubeconfig_roots: Vec::new(),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn push_payload_is_read_into_a_typed_event() {
    let cx = context_for("push", &fixture("push.json"), &[]).unwrap();
    let Event::Push(push) = &cx.event else {
        panic!("{:?}", cx.event)
    };
    assert_eq!(push.git_ref, "refs/heads/main");
    assert_eq!(
        push.after.as_deref(),
        Some("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c")
    );
    assert!(!push.deleted);
    assert!(push
        .head_commit
        .as_ref()
        .unwrap()
        .message
        .starts_with("Update checkout flow"));
    assert_eq!(cx.default_branch.as_deref(), Some("main"));
    assert_eq!(cx.repository.as_deref(), Some("octo-org/shop"));
    assert_eq!(cx.short_sha(), Some("0d1a26e"));
    assert_eq!(
        cx.run_url().as_deref(),
        Some("https://github.com/octo-org/shop/actions/runs/7001/attempts/2")
    );
}

#[test]
fn pull_request_payload_keeps_the_head_commit_and_fork_origin() {
    let cx = context_for("pull_request", &fixture("pull_request.json"), &[]).unwrap();
    let Event::PullRequest(pr) = &cx.event else {
        panic!("{:?}", cx.event)
    };
    assert_eq!(pr.number, 42);
    assert_eq!(pr.action, "synchronize");
    assert_eq!(pr.head_sha, "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678");
    assert_eq!(pr.head_ref, "payment-retries");
    assert_eq!(pr.base_ref, "main");
    assert!(
        pr.from_fork,
        "head repo hubot/shop differs from base octo-org/shop"
    );
    assert!(!pr.merged && !pr.draft);
}

#[test]
fn workflow_dispatch_inputs_become_text() {
    let cx = context_for("workflow_dispatch", &fixture("workflow_dispatch.json"), &[]).unwrap();
    let Event::WorkflowDispatch(dispatch) = &cx.event else {
        panic!("{:?}", cx.event)
    };
    assert_eq!(dispatch.git_ref, "refs/heads/main");
    assert_eq!(dispatch.inputs["command"], "rollback");
    assert_eq!(dispatch.inputs["dry_run"], "false");
    assert_eq!(dispatch.inputs["version"], "");
}

#[test]
fn other_events_are_kept_by_name() {
    let cx = context_for("schedule", &fixture("schedule.json"), &[]).unwrap();
    assert_eq!(cx.event, Event::Other("schedule".into()));
}

#[test]
fn missing_or_broken_payloads_are_clear_errors() {
    let err =
        GitHubContext::from_env(|name| (name == "GITHUB_EVENT_NAME").then(|| "push".to_string()))
            .unwrap_err();
    assert_eq!(err, ContextError::EventPathUnset);

    let err = context_for("push", Path::new("/nonexistent/event.json"), &[]).unwrap_err();
    assert!(matches!(err, ContextError::EventUnreadable { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/event.json"));

    let dir = tempfile::tempdir().unwrap();
    let not_json = dir.path().join("event.json");
    std::fs::write(&not_json, "ref: refs/heads/main\n").unwrap();
    let err = context_for("push", &not_json, &[]).unwrap_err();
    assert!(matches!(err, ContextError::EventNotJson { .. }), "{err}");

    let wrong_shape = dir.path().join("pr.json");
    std::fs::write(
        &wrong_shape,
        r#"{"action": "opened", "pull_request": {"title": "x"}}"#,
    )
    .unwrap();
    let err = context_for("pull_request", &wrong_shape, &[]).unwrap_err();
    assert!(matches!(err, ContextError::EventShape { .. }), "{err}");
    assert!(err.to_string().contains("pull_request"), "{err}");
}

fn payload(dir: &Path, name: &str, json: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, json).unwrap();
    path
}

/// Event name, payload, inputs, the command expected and a phrase of the reason.
type DecisionRow = (
    &'static str,
    PathBuf,
    Vec<(&'static str, &'static str)>,
    Command,
    &'static str,
);
/// Event name, payload, inputs, the input refused and a phrase of the message.
type RefusalRow = (
    &'static str,
    PathBuf,
    Vec<(&'static str, &'static str)>,
    &'static str,
    &'static str,
);

#[test]
fn the_command_is_decided_from_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let feature_push = payload(
        d,
        "feature.json",
        r#"{"ref": "refs/heads/feature/x", "repository": {"default_branch": "main"}}"#,
    );
    let tag_push = payload(
        d,
        "tag.json",
        r#"{"ref": "refs/tags/v1.4.0", "repository": {"default_branch": "main"}}"#,
    );
    let trunk_push = payload(
        d,
        "trunk.json",
        r#"{"ref": "refs/heads/trunk", "repository": {"default_branch": "trunk"}}"#,
    );
    let dispatch_plain = payload(
        d,
        "dispatch.json",
        r#"{"ref": "refs/heads/main", "inputs": {}}"#,
    );
    let dispatch_plan = payload(
        d,
        "dispatch-plan.json",
        r#"{"ref": "refs/heads/main", "inputs": {"command": "plan"}}"#,
    );
    let rows: Vec<DecisionRow> = vec![
        (
            "push",
            fixture("push.json"),
            vec![],
            Command::Deploy,
            "push to the default branch `main`",
        ),
        (
            "push",
            feature_push,
            vec![],
            Command::Plan,
            "not the default branch",
        ),
        ("push", tag_push, vec![], Command::Deploy, "tag `v1.4.0`"),
        (
            "push",
            trunk_push,
            vec![],
            Command::Deploy,
            "default branch `trunk`",
        ),
        (
            "pull_request",
            fixture("pull_request.json"),
            vec![],
            Command::Plan,
            "pull request #42",
        ),
        (
            "workflow_dispatch",
            fixture("workflow_dispatch.json"),
            vec![("rollback-to", "41")],
            Command::Rollback,
            "asking for `rollback`",
        ),
        (
            "workflow_dispatch",
            dispatch_plain,
            vec![],
            Command::Deploy,
            "without a command: deploy",
        ),
        (
            "workflow_dispatch",
            dispatch_plan,
            vec![],
            Command::Plan,
            "asking for `plan`",
        ),
        (
            "schedule",
            fixture("schedule.json"),
            vec![],
            Command::Plan,
            "plan only",
        ),
        (
            "push",
            fixture("push.json"),
            vec![("command", "plan")],
            Command::Plan,
            "`command: plan` given",
        ),
        (
            "pull_request",
            fixture("pull_request.json"),
            vec![("command", "history")],
            Command::History,
            "`command: history` given",
        ),
    ];
    for (event, path, inputs, expected, reason) in rows {
        let cx = context_for(event, &path, &[]).unwrap();
        let decision =
            decide(&config(&inputs), &cx).unwrap_or_else(|e| panic!("{event} {path:?}: {e}"));
        assert_eq!(decision.command, expected, "{event} {path:?}");
        assert!(
            decision.reason.contains(reason),
            "{event}: {:?} lacks {reason:?}",
            decision.reason
        );
    }
}

#[test]
fn pull_requests_remember_the_number_and_versions_override_the_commit() {
    let cx = context_for("pull_request", &fixture("pull_request.json"), &[]).unwrap();
    let decision = decide(&config(&[]), &cx).unwrap();
    assert_eq!(decision.pull_request, Some(42));
    assert_eq!(
        decision.commit.as_deref(),
        Some("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c")
    );

    let cx = context_for("workflow_dispatch", &fixture("workflow_dispatch.json"), &[]).unwrap();
    let decision = decide(
        &config(&[("command", "deploy"), ("version", "v2.0.1")]),
        &cx,
    )
    .unwrap();
    assert_eq!(decision.commit.as_deref(), Some("v2.0.1"));
}

#[test]
fn malformed_requests_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let unknown = payload(
        d,
        "unknown.json",
        r#"{"ref": "refs/heads/main", "inputs": {"command": "nuke"}}"#,
    );
    let deleted = payload(
        d,
        "deleted.json",
        r#"{"ref": "refs/heads/old", "deleted": true, "repository": {"default_branch": "main"}}"#,
    );
    let rows: Vec<RefusalRow> = vec![
        (
            "workflow_dispatch",
            unknown,
            vec![],
            "command",
            "`nuke`, which gantry does not know",
        ),
        (
            "workflow_dispatch",
            fixture("workflow_dispatch.json"),
            vec![],
            "rollback-to",
            "a manual rollback must name the release",
        ),
        (
            "push",
            deleted,
            vec![],
            "command",
            "deleted `refs/heads/old`",
        ),
        (
            "push",
            fixture("push.json"),
            vec![("command", "destroy")],
            "confirm-destroy",
            "explicit confirmation",
        ),
        (
            "push",
            fixture("push.json"),
            vec![("command", "destroy"), ("confirm-destroy", "staging")],
            "confirm-destroy",
            "set confirm-destroy to `prod`",
        ),
        (
            "push",
            fixture("push.json"),
            vec![("rollback-to", "3")],
            "rollback-to",
            "only applies to the rollback command",
        ),
        (
            "push",
            fixture("push.json"),
            vec![("command", "rollback"), ("version", "v1")],
            "version",
            "rollback-to instead",
        ),
        (
            "push",
            fixture("push.json"),
            vec![("phases", "build,deploy")],
            "phases",
            "nothing to do",
        ),
    ];
    for (event, path, inputs, input, needle) in rows {
        let cx = context_for(event, &path, &[]).unwrap();
        let errors = decide(&config(&inputs), &cx).expect_err("must be refused");
        assert!(
            errors
                .0
                .iter()
                .any(|e| e.input == input && e.message.contains(needle)),
            "{event} {inputs:?}: expected {input} / {needle:?}, got {errors}"
        );
    }
    let destroy_ok = decide(
        &config(&[("command", "destroy"), ("confirm-destroy", "prod")]),
        &context_for("push", &fixture("push.json"), &[]).unwrap(),
    )
    .unwrap();
    assert_eq!(destroy_ok.command, Command::Destroy);
}

#[test]
fn a_pull_request_without_a_token_is_refused_unless_comments_are_off() {
    let ws = checkout();
    let raw = RawInputs::from_env(|name| match name {
        "INPUT_ENVIRONMENT" => Some("dev".to_string()),
        "INPUT_TERRAFORM-DIRECTORY" => Some("infra".to_string()),
        _ => None,
    })
    .with_defaults();
    let cfg = Config::validate(
        &raw,
        &ValidationContext {
            workspace: ws.clone(),
            action_mode: false,
            kubeconfig_env: None,
            kubeconfig_roots: Vec::new(),
        },
    )
    .unwrap();
    let cx = context_for("pull_request", &fixture("pull_request.json"), &[]).unwrap();
    let errors = decide(&cfg, &cx).unwrap_err();
    assert!(errors.to_string().contains("github-token"), "{errors}");

    let raw = RawInputs::from_env(|name| match name {
        "INPUT_ENVIRONMENT" => Some("dev".to_string()),
        "INPUT_PR-COMMENT" => Some("false".to_string()),
        "INPUT_TERRAFORM-DIRECTORY" => Some("infra".to_string()),
        _ => None,
    })
    .with_defaults();
    let cfg = Config::validate(
        &raw,
        &ValidationContext {
            workspace: ws,
            action_mode: false,
            kubeconfig_env: None,
            kubeconfig_roots: Vec::new(),
        },
    )
    .unwrap();
    assert_eq!(decide(&cfg, &cx).unwrap().command, Command::Plan);
}

#[test]
fn a_local_context_reads_the_commit_from_git_files() {
    let dir = tempfile::tempdir().unwrap();
    let git = dir.path().join(".git");
    std::fs::create_dir_all(git.join("refs/heads")).unwrap();
    std::fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(git.join("packed-refs"), "# pack-refs with: peeled fully-peeled sorted\n1111111111111111111111111111111111111111 refs/heads/main\n").unwrap();
    let cx = GitHubContext::local(dir.path(), Some("dev".into()));
    assert_eq!(cx.event, Event::Local);
    assert_eq!(cx.git_ref.as_deref(), Some("refs/heads/main"));
    assert_eq!(
        cx.sha.as_deref(),
        Some("1111111111111111111111111111111111111111")
    );
    std::fs::write(
        git.join("refs/heads/main"),
        "2222222222222222222222222222222222222222\n",
    )
    .unwrap();
    assert_eq!(
        GitHubContext::local(dir.path(), None).sha.as_deref(),
        Some("2222222222222222222222222222222222222222"),
        "a loose ref wins over packed-refs"
    );
    std::fs::write(
        git.join("HEAD"),
        "3333333333333333333333333333333333333333\n",
    )
    .unwrap();
    let detached = GitHubContext::local(dir.path(), None);
    std::fs::write(git.join("HEAD"), "ééééééééé\n").unwrap();
    assert_eq!(
        GitHubContext::local(dir.path(), None).short_sha(),
        Some("ééééééé"),
        "a malformed HEAD is cut by characters, never panics"
    );
    assert_eq!(
        (detached.git_ref, detached.sha.as_deref()),
        (None, Some("3333333333333333333333333333333333333333"))
    );
}

#[test]
fn the_audit_trail_is_on_by_default_per_environment_and_false_turns_it_off() {
    assert_eq!(
        config(&[]).report.audit_branch.as_deref(),
        Some("gantry/audit/prod")
    );
    assert_eq!(
        config(&[("audit-branch", "audit/{environment}-trail")])
            .report
            .audit_branch
            .as_deref(),
        Some("audit/prod-trail")
    );
    assert_eq!(
        config(&[("audit-branch", "false")]).report.audit_branch,
        None
    );
    // Empty means "not given" for every input, so the default applies.
    assert_eq!(
        config(&[("audit-branch", "")])
            .report
            .audit_branch
            .as_deref(),
        Some("gantry/audit/prod")
    );
}
