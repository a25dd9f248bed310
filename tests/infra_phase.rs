//! The infra phase against real CLIs with built-in-provider fixtures: every scenario runs against the test bed's OpenTofu, and against Terraform too when the machine has one (>= 1.10); each works in its own temp copy.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use gantry::adapters::runner::Runner;
use gantry::adapters::terraform::{Error as TerraformError, Terraform};
use gantry::app::frame::RunContext;
use gantry::cancel::Cancel;
use gantry::config::{Config, Origin, RawInputs, ValidationContext};
use gantry::context::GitHubContext;
use gantry::pipeline::{Command, Decision, Handoff, PhaseResult, PhaseStatus};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/terraform");

/// One CLI the scenarios run against.
#[derive(Clone)]
struct TestCli {
    /// `tofu` or `terraform`: what command lines and hints say.
    command: &'static str,
    path: String,
}

/// The CLIs of this machine: the test bed's OpenTofu always (a missing one fails, naming the
/// command that builds it), Terraform too when `GANTRY_TEST_TERRAFORM` names one; the one
/// documented case where a test runs less on a machine without something.
fn clis() -> Vec<TestCli> {
    let tofu = std::env::var("GANTRY_TEST_TOFU").unwrap_or_default();
    assert!(
        !tofu.is_empty() && Path::new(&tofu).is_file(),
        "GANTRY_TEST_TOFU does not name OpenTofu: run `bash .ci/testbed up` and `source /var/tmp/gantry-testbed/env` (bash .ci/test does both)"
    );
    let mut found = vec![TestCli {
        command: "tofu",
        path: tofu,
    }];
    match std::env::var("GANTRY_TEST_TERRAFORM") {
        Ok(terraform) if !terraform.is_empty() => found.push(TestCli {
            command: "terraform",
            path: terraform,
        }),
        _ => eprintln!("infra tests: no Terraform on this machine (GANTRY_TEST_TERRAFORM empty); OpenTofu only"),
    }
    found
}

/// A repository checkout with the fixture copied to `infra/`, run with one CLI.
struct Repo {
    _dir: tempfile::TempDir,
    workspace: PathBuf,
    cli: TestCli,
}

struct Outcome {
    result: PhaseResult,
    handoff: Handoff,
    log: String,
}

impl Outcome {
    fn failure_reason(&self) -> &str {
        match &self.result.status {
            PhaseStatus::Failed { failure_reason, .. } => failure_reason.as_str(),
            other => panic!("expected a failure, got {other:?}\n{}", self.log),
        }
    }

    fn message(&self) -> &str {
        match &self.result.status {
            PhaseStatus::Failed { message, .. } => message,
            other => panic!("expected a failure, got {other:?}\n{}", self.log),
        }
    }

    fn assert_succeeded(&self) {
        assert_eq!(self.result.status, PhaseStatus::Succeeded, "{}", self.log);
    }

    fn changes(&self) -> serde_json::Value {
        serde_json::from_str(&self.result.outputs["plan-changes"]).unwrap()
    }

    /// The phase's notes and what the summary renders from its hand-off (plan and outputs).
    fn notes(&self) -> String {
        let keep = |text: &str| text.to_string();
        let plan = self
            .handoff
            .plan
            .as_ref()
            .map(|plan| gantry::report::summary::plan_markdown(&keep, plan))
            .unwrap_or_default();
        format!(
            "{}\n{plan}\n{}",
            self.result.notes.join("\n"),
            gantry::report::summary::terraform_outputs(&keep, &self.handoff)
        )
    }
}

impl Repo {
    fn new(fixture: &str, cli: &TestCli) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let workspace = dir.path().join("repo");
        let infra = workspace.join("infra");
        std::fs::create_dir_all(&infra).unwrap();
        std::fs::copy(
            Path::new(FIXTURES).join(fixture).join("main.tf"),
            infra.join("main.tf"),
        )
        .unwrap();
        Repo {
            _dir: dir,
            workspace,
            cli: cli.clone(),
        }
    }

    fn infra(&self) -> PathBuf {
        self.workspace.join("infra")
    }

    fn config(&self, inputs: &[(&'static str, &str)]) -> Config {
        let mut raw = RawInputs::default();
        raw.set("environment", "dev".into(), Origin::Flag);
        raw.set("terraform-directory", "infra".into(), Origin::Flag);
        raw.set("terraform-binary", self.cli.path.clone(), Origin::Flag);
        for (name, value) in inputs {
            raw.set(name, value.to_string(), Origin::Flag);
        }
        let validation = ValidationContext {
            workspace: self.workspace.clone(),
            action_mode: false,
            kubeconfig_env: None,
            kubeconfig_roots: Vec::new(),
        };
        Config::validate(&raw.with_defaults(), &validation).unwrap()
    }

    async fn run(&self, command: Command, inputs: &[(&'static str, &str)]) -> Outcome {
        self.run_with(command, inputs, &Cancel::never()).await
    }

    /// `$ <cli> <subcommand>` as the log shows a command line.
    fn command_line(&self, subcommand: &str) -> String {
        format!("$ {} {subcommand}", self.cli.command)
    }

    async fn run_with(
        &self,
        command: Command,
        inputs: &[(&'static str, &str)],
        cancel: &Cancel,
    ) -> Outcome {
        let config = self.config(inputs);
        let context = GitHubContext::local(&self.workspace, None);
        let decision = Decision {
            command,
            reason: "test".into(),
            commit: None,
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
        let mut handoff = Handoff::default();
        let result = gantry::app::infra::run(&run, &mut handoff).await;
        Outcome {
            result,
            handoff,
            log: log.contents(),
        }
    }
}

fn terraform_cli(cli: &TestCli, dir: &Path, args: &[&str]) -> Process {
    let mut command = Process::new(&cli.path);
    command
        .args(args)
        .current_dir(dir)
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// A background `terraform apply` that holds the state lock; killed when dropped, whatever
/// the test's outcome.
struct LockHolder(Child);

impl LockHolder {
    fn start(cli: &TestCli, dir: &Path) -> LockHolder {
        for args in [
            &["init", "-input=false"][..],
            &["workspace", "select", "-or-create", "dev"],
        ] {
            let status = terraform_cli(cli, dir, args).status().unwrap();
            assert!(status.success(), "terraform {args:?}");
        }
        let child = terraform_cli(cli, dir, &["apply", "-auto-approve", "-input=false"])
            .spawn()
            .unwrap();
        let holder = LockHolder(child);
        let lock = dir.join("terraform.tfstate.d/dev/.terraform.tfstate.lock.info");
        let started = Instant::now();
        while !lock.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the lock holder never locked"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        holder
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn create_streams_progress_then_a_second_run_finds_no_changes() {
    for cli in clis() {
        let repo = Repo::new("create", &cli);
        let first = repo.run(Command::Deploy, &[]).await;
        first.assert_succeeded();
        assert_eq!(first.changes()["create"], 2);
        assert!(
            first.log.contains("terraform_data.app: creating..."),
            "{}",
            first.log
        );
        assert!(
            first.log.contains("terraform_data.app: created in 0s"),
            "{}",
            first.log
        );
        assert!(first.log.contains("apply: 2 added, 0 changed, 0 destroyed"));
        assert_eq!(first.result.outputs["tf-app_name"], "app-v1");
        // Which tool ran, for the summary.
        let ran = first.handoff.terraform_cli.clone().unwrap();
        let expected = if cli.command == "tofu" {
            "OpenTofu 1."
        } else {
            "Terraform 1."
        };
        assert!(ran.starts_with(expected), "{ran}");
        assert_eq!(first.handoff.terraform_outputs["app_name"], "app-v1");
        let plan = first.handoff.plan.as_ref().unwrap();
        assert_eq!(first.result.outputs["plan-fingerprint"], plan.fingerprint());
        let notes = first.notes();
        assert!(notes.contains("**Terraform plan:** 2 to create"), "{notes}");
        assert!(
            notes.contains("<details><summary>create (2)</summary>"),
            "{notes}"
        );
        assert!(notes.contains("| `app_name` | `app-v1` |"), "{notes}");

        let second = repo.run(Command::Deploy, &[]).await;
        second.assert_succeeded();
        assert_eq!(
            second.changes(),
            serde_json::json!({"create":0,"update":0,"delete":0,"replace":0,"read":0,"forget":0})
        );
        assert!(second
            .log
            .contains("terraform plan found no changes; apply skipped"));
        assert!(
            !second.log.contains(&repo.command_line("apply")),
            "{}",
            second.log
        );
        assert_eq!(second.result.outputs["tf-app_name"], "app-v1");
    }
}

#[tokio::test]
async fn update_in_place() {
    for cli in clis() {
        let repo = Repo::new("update", &cli);
        repo.run(Command::Deploy, &[]).await.assert_succeeded();
        let update = repo
            .run(Command::Deploy, &[("terraform-vars", "revision=two")])
            .await;
        update.assert_succeeded();
        assert_eq!(update.changes()["update"], 1);
        assert!(update.log.contains("  update terraform_data.config"));
        assert!(
            update.log.contains("terraform_data.config: updated in"),
            "{}",
            update.log
        );
        // Variable values are not echoed in the logged command line.
        assert!(update.log.contains("-var=revision=***"), "{}", update.log);
    }
}

#[tokio::test]
async fn replace_is_blocked_without_allow_destroy_then_applied_with_it() {
    for cli in clis() {
        let repo = Repo::new("replace", &cli);
        repo.run(Command::Deploy, &[]).await.assert_succeeded();
        let blocked = repo
            .run(Command::Deploy, &[("terraform-vars", "revision=two")])
            .await;
        assert_eq!(blocked.failure_reason(), "destroy-blocked");
        assert!(blocked
            .message()
            .contains("  - replace terraform_data.server"));
        assert!(blocked.message().contains("allow-destroy: true"));
        assert!(
            !blocked.log.contains(&repo.command_line("apply")),
            "{}",
            blocked.log
        );
        assert_eq!(blocked.changes()["replace"], 1);

        let allowed = repo
            .run(
                Command::Deploy,
                &[
                    ("terraform-vars", "revision=two"),
                    ("allow-destroy", "true"),
                ],
            )
            .await;
        allowed.assert_succeeded();
        assert_eq!(allowed.changes()["replace"], 1);
        // The plan applied is the one that was reviewed and blocked: the same fingerprint.
        assert_eq!(
            blocked.result.outputs["plan-fingerprint"],
            allowed.result.outputs["plan-fingerprint"]
        );
    }
}

#[tokio::test]
async fn delete_is_blocked_then_allowed_and_the_destroy_command_is_not_blocked() {
    for cli in clis() {
        let repo = Repo::new("destroy", &cli);
        repo.run(Command::Deploy, &[]).await.assert_succeeded();
        let scale_down = [("terraform-vars", "replicas=0")];
        let blocked = repo.run(Command::Deploy, &scale_down).await;
        assert_eq!(blocked.failure_reason(), "destroy-blocked");
        for address in ["terraform_data.replica[0]", "terraform_data.replica[1]"] {
            assert!(
                blocked.message().contains(&format!("  - delete {address}")),
                "{}",
                blocked.message()
            );
        }
        let allowed = repo
            .run(
                Command::Deploy,
                &[("terraform-vars", "replicas=0"), ("allow-destroy", "true")],
            )
            .await;
        allowed.assert_succeeded();
        assert_eq!(allowed.changes()["delete"], 2);

        let destroyed = repo.run(Command::Destroy, &scale_down).await;
        destroyed.assert_succeeded();
        assert_eq!(destroyed.changes()["delete"], 1);
        assert!(destroyed.log.contains("-destroy"), "{}", destroyed.log);
        assert!(destroyed.log.contains("terraform_data.keep: destroyed in"));
    }
}

#[tokio::test]
async fn a_failing_local_exec_is_reported_as_a_partial_apply() {
    for cli in clis() {
        let repo = Repo::new("partial_apply", &cli);
        let outcome = repo.run(Command::Deploy, &[]).await;
        assert_eq!(outcome.failure_reason(), "apply-failed");
        assert!(
            outcome.result.changed,
            "a partial apply changed the environment"
        );
        let message = outcome.message();
        assert!(
            message.contains("changed: terraform_data.good"),
            "{message}"
        );
        assert!(message.contains("failed: terraform_data.bad"), "{message}");
        assert!(
            message.contains("local-exec provisioner error (main.tf:9)"),
            "{message}"
        );
        assert!(
            outcome.log.contains(
                "::error title=Terraform%3A local-exec provisioner error,file=infra/main.tf,line=9,"
            ),
            "{}",
            outcome.log
        );
        assert!(outcome.notes().contains(
            "**Partial apply:** changed: terraform\\_data.good; failed: terraform\\_data.bad."
        ));
        assert!(!outcome.result.outputs.contains_key("tf-app_name"));
    }
}

#[tokio::test]
async fn a_failing_precondition_fails_the_plan_with_an_annotation() {
    for cli in clis() {
        let repo = Repo::new("precondition", &cli);
        let outcome = repo.run(Command::Deploy, &[]).await;
        assert_eq!(outcome.failure_reason(), "plan-failed");
        assert!(outcome
            .message()
            .starts_with("terraform plan failed: Resource precondition failed (main.tf:12)"));
        assert!(
            outcome.log.contains("::error title=Terraform%3A Resource precondition failed,file=infra/main.tf,line=12,col=23,endColumn=40::Resource precondition failed%0Areplicas must be at least 1."),
            "{}",
            outcome.log
        );
    }
}

#[tokio::test]
async fn invalid_hcl_fails_init_with_an_annotation_at_the_file_and_line() {
    for cli in clis() {
        let repo = Repo::new("invalid_hcl", &cli);
        let outcome = repo.run(Command::Deploy, &[]).await;
        assert_eq!(outcome.failure_reason(), "init-failed");
        assert!(outcome
            .message()
            .contains("terraform init failed: Invalid expression (main.tf:4)"));
        assert!(
            outcome.log.contains("::error title=Terraform%3A Invalid expression,file=infra/main.tf,line=4,col=11,endColumn=12::"),
            "{}",
            outcome.log
        );
        // One problem, one annotation: the generic "encountered problems during
        // initialisation" sentence is folded away.
        let errors = outcome
            .log
            .lines()
            .filter(|l| l.starts_with("::error"))
            .count();
        assert_eq!(errors, 1, "{}", outcome.log);
        assert!(
            !outcome.message().contains("encountered problems"),
            "{}",
            outcome.message()
        );
    }
}

#[tokio::test]
async fn environments_never_share_state() {
    for cli in clis() {
        let repo = Repo::new("create", &cli);
        repo.run(Command::Deploy, &[]).await.assert_succeeded();
        let staging = repo.run(Command::Plan, &[("environment", "staging")]).await;
        staging.assert_succeeded();
        assert_eq!(staging.changes()["create"], 2, "staging starts empty");
        let dev = repo.run(Command::Plan, &[]).await;
        assert_eq!(dev.changes()["create"], 0, "dev keeps its own state");
        assert!(repo
            .infra()
            .join("terraform.tfstate.d/dev/terraform.tfstate")
            .exists());
        assert!(repo.infra().join("terraform.tfstate.d/staging").exists());
    }
}

#[tokio::test]
async fn a_held_state_lock_is_reported_with_its_holder() {
    for cli in clis() {
        let repo = Repo::new("lock_holder", &cli);
        let _holder = LockHolder::start(&repo.cli, &repo.infra());
        let outcome = repo
            .run(Command::Deploy, &[("terraform-lock-timeout", "1s")])
            .await;
        assert_eq!(outcome.failure_reason(), "state-locked");
        let message = outcome.message();
        assert!(
            message.contains(
                "terraform plan could not acquire the state lock within terraform-lock-timeout (1s)"
            ),
            "{message}"
        );
        assert!(message.contains("the lock is held by "), "{message}");
        assert!(message.contains(" since "), "{message}");
        assert!(message.contains("(operation Apply"), "{message}");
        assert!(
            message.contains(&format!("`{} force-unlock ", cli.command)),
            "{message}"
        );
    }
}

#[tokio::test]
async fn outputs_flow_into_step_outputs_and_sensitive_ones_stay_internal() {
    for cli in clis() {
        const SECRET: &str = "s3cr3t-Pa55word-do-not-print";
        let repo = Repo::new("outputs", &cli);
        let outcome = repo.run(Command::Deploy, &[]).await;
        outcome.assert_succeeded();
        let outputs = &outcome.result.outputs;
        assert_eq!(outputs["tf-cluster_name"], "gantry-demo");
        assert_eq!(outputs["tf-replica_count"], "3");
        assert_eq!(
            outputs["tf-endpoints"],
            r#"{"primary":"db.internal:5432","replica":"db-ro.internal:5432"}"#
        );
        assert!(!outputs.contains_key("tf-db_password"));
        assert_eq!(
            outcome.handoff.terraform_outputs.keys().collect::<Vec<_>>(),
            ["cluster_name", "endpoints", "replica_count"]
        );
        assert_eq!(outcome.handoff.sensitive_outputs["db_password"], SECRET);

        // The secret appears only in the add-mask command that tells the runner to hide it.
        let mask = format!("::add-mask::{SECRET}");
        assert!(outcome.log.contains(&mask), "{}", outcome.log);
        for line in outcome.log.lines().filter(|l| l.contains(SECRET)) {
            assert_eq!(line, mask);
        }
        let everything_reported = format!(
            "{:?}{:?}{}",
            outcome.result.outputs,
            outcome.handoff.plan,
            outcome.notes()
        );
        assert!(!everything_reported.contains(SECRET));
        assert!(outcome.notes().contains("`db_password` create (sensitive)"));
    }
}

#[tokio::test]
async fn plan_only_never_applies() {
    for cli in clis() {
        let repo = Repo::new("create", &cli);
        let planned = repo.run(Command::Plan, &[]).await;
        planned.assert_succeeded();
        assert!(!planned.result.changed, "a plan changes nothing");
        assert_eq!(planned.changes()["create"], 2);
        assert!(planned.log.contains("plan only: nothing is applied"));
        assert!(
            !planned.log.contains(&repo.command_line("apply")),
            "{}",
            planned.log
        );
        assert!(!planned.log.contains("created in"));
        assert!(planned.handoff.plan.is_some());
        let again = repo.run(Command::Plan, &[]).await;
        assert_eq!(again.changes()["create"], 2, "nothing was applied");
        assert_eq!(
            planned.result.outputs["plan-fingerprint"], again.result.outputs["plan-fingerprint"],
            "the same plan has the same fingerprint"
        );
    }
}

#[tokio::test]
async fn plan_only_warns_when_applying_would_be_blocked() {
    for cli in clis() {
        let repo = Repo::new("destroy", &cli);
        repo.run(Command::Deploy, &[]).await.assert_succeeded();
        let planned = repo
            .run(Command::Plan, &[("terraform-vars", "replicas=1")])
            .await;
        planned.assert_succeeded();
        assert!(
            planned
                .log
                .contains("::warning::applying this plan would be blocked"),
            "{}",
            planned.log
        );
    }
}

#[tokio::test]
async fn cancellation_interrupts_terraform_and_releases_the_lock() {
    for cli in clis() {
        let repo = Repo::new("lock_holder", &cli);
        let (handle, cancel) = Cancel::new();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            handle.cancel();
        });
        let outcome = repo.run_with(Command::Deploy, &[], &cancel).await;
        canceller.abort();
        assert_eq!(outcome.failure_reason(), "cancelled");
        let message = outcome.message();
        assert!(
            message.starts_with(
                "cancelled during terraform apply: Terraform was interrupted (SIGINT) and exited after"
            ),
            "{message}"
        );
        assert!(message.contains("releasing the state lock"), "{message}");
        assert!(message.contains("failed: terraform_data.slow"), "{message}");
        // The lock was released: another run gets it at once.
        let after = repo
            .run(Command::Plan, &[("terraform-lock-timeout", "1s")])
            .await;
        after.assert_succeeded();
    }
}

#[tokio::test]
async fn too_old_or_broken_terraform_is_refused_before_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let script = |name: &str, body: &str| -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    };
    let old = script("old", r#"printf 'Terraform v1.5.7\non linux_amd64\n'"#);
    let err = Terraform::with_binary(old, dir.path()).await.unwrap_err();
    assert!(matches!(err, TerraformError::TooOld { .. }));
    let text = err.to_string();
    assert!(
        text.contains("is Terraform 1.5.7, but gantry needs Terraform >= 1.10.0"),
        "{text}"
    );
    assert!(text.contains("terraform-binary"), "{text}");
    let old_tofu = script("old-tofu", r#"printf 'OpenTofu v1.7.3\non linux_amd64\n'"#);
    let text = Terraform::with_binary(old_tofu, dir.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("is OpenTofu 1.7.3, but gantry needs OpenTofu >= 1.8.0"),
        "{text}"
    );

    let broken = script("broken", "echo 'not a version'");
    let text = Terraform::with_binary(broken, dir.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(text.contains("could not read the version"), "{text}");

    for cli in clis() {
        let real = Terraform::discover(&cli.path, dir.path()).await.unwrap();
        assert_eq!(real.cli().command(), cli.command);
        assert!(real.version() >= real.cli().min_version());
    }
}

#[test]
fn bad_infra_inputs_are_refused_before_terraform_runs() {
    let repo = Repo::new("create", &clis()[0]);
    std::fs::create_dir_all(repo.workspace.join("empty")).unwrap();
    let validation = ValidationContext {
        workspace: repo.workspace.clone(),
        action_mode: false,
        kubeconfig_env: None,
        kubeconfig_roots: Vec::new(),
    };
    let cases: &[(&[(&'static str, &str)], &str)] = &[
        (&[("terraform-directory", "missing")], "is not a directory"),
        (&[("terraform-directory", "empty")], "has no .tf files"),
        (
            &[("terraform-backend-config", "=x")],
            "not a valid `key=value` item",
        ),
        (
            &[("terraform-var-files", "env/{environment}.tfvars")],
            "`env/dev.tfvars` does not exist",
        ),
        (
            &[("terraform-vars", "9lives=1")],
            "is not a Terraform variable name",
        ),
    ];
    for (inputs, expected) in cases {
        let mut raw = RawInputs::default();
        raw.set("environment", "dev".into(), Origin::Flag);
        raw.set("terraform-directory", "infra".into(), Origin::Flag);
        for (name, value) in *inputs {
            raw.set(name, value.to_string(), Origin::Flag);
        }
        let errors = Config::validate(&raw.with_defaults(), &validation).unwrap_err();
        let text: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|t| t.contains(expected)),
            "{inputs:?}: {text:?}"
        );
    }
}

#[tokio::test]
async fn a_terraform_that_ignores_the_interrupt_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("terraform");
    std::fs::write(
        &fake,
        "#!/bin/sh\nif [ \"$1\" = version ]; then echo 'Terraform v1.11.4'; exit 0; fi\ntrap '' INT\necho started\nsleep 30\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let terraform = Terraform::with_binary(fake, dir.path())
        .await
        .unwrap()
        .with_interrupt_grace(Duration::from_millis(500));
    let (handle, cancel) = Cancel::new();
    let mut lines = Vec::new();
    let started = Instant::now();
    let args = ["apply".to_string()];
    let mut on_line = |line: &str| {
        lines.push(line.to_string());
        handle.cancel();
    };
    let run = terraform.run(&args, &cancel, &mut on_line);
    let finished = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the kill ends the run")
        .unwrap();
    assert!(finished.interrupted && finished.killed, "{finished:?}");
    assert_eq!(finished.code, None, "ended by a signal");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(lines, ["started"]);
}

#[tokio::test]
async fn a_rollback_reads_the_outputs_it_needs_and_plans_nothing() {
    for cli in clis() {
        let repo = Repo::new("outputs", &cli);
        repo.run(Command::Deploy, &[]).await.assert_succeeded();
        let cluster = [("cluster-name", "${tf.cluster_name}")];
        let rollback = repo.run(Command::Rollback, &cluster).await;
        rollback.assert_succeeded();
        assert_eq!(
            rollback.handoff.terraform_outputs["cluster_name"],
            "gantry-demo"
        );
        assert!(rollback.handoff.plan.is_none(), "nothing planned");
        assert!(
            rollback.log.contains("rollback changes no infrastructure"),
            "{}",
            rollback.log
        );
        assert!(
            !rollback.log.contains(&repo.command_line("plan")),
            "{}",
            rollback.log
        );
        assert!(!rollback.result.changed);
    }
}
