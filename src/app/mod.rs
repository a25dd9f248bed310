//! One run from start to exit code: read inputs and context, validate everything, decide the command, run the phases, report.
//!
//! Design note: [`execute`] is the single path both front doors take (the action and the local
//! CLI differ only in how they fill an [`Invocation`]). Nothing with an effect outside gantry's
//! own output happens before validation and the decision have passed.

pub mod build;
pub mod demo;
pub mod deploy;
pub mod frame;
pub mod infra;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::adapters::github::Reporter as GitHubReporter;
use crate::adapters::runner::{Runner, RunnerFileError, RunnerFiles, RunnerMode};
use crate::cancel::{Cancel, CancelHandle};
use crate::config::{CommandChoice, Config, InputError, RawInputs, ValidationContext};
use crate::context::{ContextError, GitHubContext};
use crate::pipeline::{self, RunOutcome, RunStatus};
use crate::report::markdown;
use crate::report::summary::{self, ReportInput};
use crate::report::workflow::{Annotation, Level};
use frame::{Phases, RunContext};

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Deployed, planned, destroyed or listed.
    Success = 0,
    /// The run failed (or failed and rolled back).
    Failure = 1,
    /// Bad inputs or surroundings: nothing was done.
    Usage = 2,
}

/// The phases gantry runs for real: each wires its adapters (Terraform, Docker and ECR,
/// Kubernetes) to the pure logic.
#[derive(Debug, Default)]
pub struct GantryPhases;

impl Phases for GantryPhases {
    async fn infra(
        &self,
        run: &RunContext<'_>,
        handoff: &mut pipeline::Handoff,
    ) -> pipeline::PhaseResult {
        infra::run(run, handoff).await
    }

    async fn build(
        &self,
        run: &RunContext<'_>,
        handoff: &mut pipeline::Handoff,
    ) -> pipeline::PhaseResult {
        build::run(run, handoff).await
    }

    async fn deploy(
        &self,
        run: &RunContext<'_>,
        handoff: &mut pipeline::Handoff,
    ) -> pipeline::PhaseResult {
        deploy::run(run, handoff).await
    }
}

/// Runs one invocation on a fresh runtime, cancelled by SIGTERM or SIGINT.
pub fn run_invocation(invocation: Invocation) -> Exit {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("gantry: cannot start the async runtime: {err}");
            return Exit::Failure;
        }
    };
    runtime.block_on(async {
        let (handle, cancel) = Cancel::new();
        cancel_on_signals(handle);
        execute(
            invocation,
            &GantryPhases,
            Box::new(std::io::stdout()),
            cancel,
        )
        .await
    })
}

/// Everything a run starts from, however it was invoked.
pub struct Invocation {
    pub mode: RunnerMode,
    pub raw: RawInputs,
    /// A command forced by the CLI subcommand (`gantry plan`), over the `command` input.
    pub command_override: Option<CommandChoice>,
    pub files: Result<RunnerFiles, RunnerFileError>,
    pub context: Result<GitHubContext, ContextError>,
    pub workspace: PathBuf,
    pub kubeconfig_env: Option<String>,
    pub debug: bool,
}

impl Invocation {
    /// The invocation of a container action: `INPUT_*`, `GITHUB_*` and the runner's files.
    pub fn from_action_env(get: &dyn Fn(&str) -> Option<String>) -> Self {
        let workspace = get("GITHUB_WORKSPACE")
            .filter(|w| !w.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")));
        Invocation {
            mode: RunnerMode::GitHub,
            raw: RawInputs::from_env(get).with_defaults(),
            command_override: None,
            files: RunnerFiles::from_env(get, true),
            context: GitHubContext::from_env(get),
            workspace,
            kubeconfig_env: get("KUBECONFIG"),
            debug: get("RUNNER_DEBUG").as_deref() == Some("1"),
        }
    }
}

/// Validates, decides, runs the phases and reports; returns the exit code.
pub async fn execute<P: Phases>(
    invocation: Invocation,
    phases: &P,
    out: Box<dyn Write + Send>,
    cancel: Cancel,
) -> Exit {
    let Invocation {
        mode,
        mut raw,
        command_override,
        files,
        context,
        workspace,
        kubeconfig_env,
        debug,
    } = invocation;
    let (files, files_error) = match files {
        Ok(files) => (files, None),
        Err(err) => (RunnerFiles::default(), Some(err)),
    };
    let runner = Runner::with_writer(mode, debug, files, out);
    // Secrets are masked before anything else is printed, even before validation.
    let mut secrets = raw.secret_values();
    for secret in &secrets {
        runner.add_mask(secret);
    }
    if let Some(command) = command_override {
        raw.set(
            "command",
            command.as_str().to_string(),
            crate::config::Origin::Flag,
        );
    }
    let validation = ValidationContext {
        workspace,
        action_mode: mode == RunnerMode::GitHub,
        kubeconfig_env,
        kubeconfig_roots: crate::config::runner_kubeconfig_roots(),
    };
    let Ready {
        config,
        context,
        decision,
    } = match check(&raw, &validation, context, files_error.as_ref()) {
        Ok(ready) => ready,
        Err(problems) => return refuse(&runner, &problems, files_error.is_none()),
    };

    announce(&runner, &config, &context, &decision, &mut secrets);
    let run = RunContext {
        config: &config,
        context: &context,
        decision: &decision,
        runner: &runner,
        cancel: &cancel,
    };
    let mut github = GitHubReporter::new(&config, &context, &decision, &runner);
    // The deployment is in progress from before the phases: its final status follows them.
    github.start_deployment(None).await;
    let outcome = frame::run_phases(phases, &run).await;
    report(&run, &mut github, &outcome, secrets).await
}

/// What a run goes ahead with once everything has been checked.
struct Ready {
    config: Config,
    context: GitHubContext,
    decision: pipeline::Decision,
}

/// Checks the runner's files, the event, the inputs and the decision; refuses with every problem
/// found, in that order.
fn check(
    raw: &RawInputs,
    validation: &ValidationContext,
    context: Result<GitHubContext, ContextError>,
    files_error: Option<&RunnerFileError>,
) -> Result<Ready, Vec<String>> {
    let mut problems: Vec<String> = Vec::new();
    if let Some(err) = files_error {
        problems.push(err.to_string());
    }
    let context = match context {
        Ok(context) => Some(context),
        Err(err) => {
            problems.push(err.to_string());
            None
        }
    };
    let config = match Config::validate(raw, validation) {
        Ok(config) => Some(config),
        Err(errors) => {
            problems.extend(errors.0.iter().map(InputError::to_string));
            None
        }
    };
    let decision = match (&config, &context) {
        (Some(config), Some(context)) => match pipeline::decide(config, context) {
            Ok(decision) => Some(decision),
            Err(errors) => {
                problems.extend(errors.0.iter().map(InputError::to_string));
                None
            }
        },
        _ => None,
    };
    if let (Some(config), Some(decision), true) = (&config, &decision, problems.is_empty()) {
        problems.extend(check_sources(config, decision));
    }
    let (Some(config), Some(context), Some(decision), true) =
        (config, context, decision, problems.is_empty())
    else {
        return Err(problems);
    };
    Ok(Ready {
        config,
        context,
        decision,
    })
}

/// Renders the charts (local ones) and builds the kustomizations a deploy or plan will use,
/// before anything runs: a chart that does not render or a kustomization with a missing base
/// stops the run before Terraform or a build changes anything. Values files and `set` are
/// passed as written here (Terraform outputs and images are not known yet); the deploy phase
/// renders again with them and the cluster's version.
fn check_sources(config: &Config, decision: &pipeline::Decision) -> Vec<String> {
    use crate::config::Phase;
    use crate::pipeline::Command;
    let deploy = &config.deploy;
    if (deploy.charts.is_empty() && deploy.kustomizations.is_empty())
        || !matches!(decision.command, Command::Deploy | Command::Plan)
        || pipeline::skip_reason(Phase::Deploy, config, decision.command).is_some()
    {
        return Vec::new();
    }
    match deploy::sources::make(
        config,
        None,
        &deploy::Capabilities::default(),
        &deploy::sources::logins(config),
        false,
    ) {
        // What a kustomization builds holds placeholders like a manifest file: their forms
        // are checked now (their values come later).
        Ok(made) => made
            .kustomized
            .iter()
            .flat_map(|document| {
                let mut strings = Vec::new();
                crate::config::yaml_strings(&document.value, &mut strings);
                let file = document
                    .file
                    .strip_prefix(&config.workspace)
                    .unwrap_or(&document.file)
                    .display()
                    .to_string();
                strings
                    .iter()
                    .flat_map(|s| crate::manifests::find_placeholders(s))
                    .filter(|p| !crate::manifests::is_known_form(&p.name))
                    .map(|p| {
                        format!(
                            "input `manifests`: {file}: unknown placeholder `${{{}}}` in what the kustomization builds; use ${{tf.OUTPUT}}, ${{image.NAME}}, ${{gantry.sha}}, ${{gantry.short-sha}} or ${{gantry.environment}}",
                            p.name
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect(),
        Err(errors) => errors
            .iter()
            .map(|error| {
                let file = error
                    .file
                    .strip_prefix(&config.workspace)
                    .unwrap_or(&error.file)
                    .display()
                    .to_string();
                let input = if error.message.starts_with("chart `") {
                    "charts"
                } else {
                    "manifests"
                };
                format!("input `{input}`: {file}:{}: {}", error.line, error.message)
            })
            .collect(),
    }
}

/// Masks the configuration's secrets (adding them to `secrets`), then logs what the run does
/// and the event's own text.
fn announce(
    runner: &Runner,
    config: &Config,
    context: &GitHubContext,
    decision: &pipeline::Decision,
    secrets: &mut Vec<String>,
) {
    for secret in config.secrets() {
        runner.add_mask(secret);
        secrets.push(secret.to_string());
    }
    runner.info(&format!(
        "gantry {}: {} `{}` ({}), commit {}",
        env!("CARGO_PKG_VERSION"),
        decision.command.as_str(),
        config.environment,
        decision.reason,
        decision.commit.as_deref().unwrap_or("unknown"),
    ));

    // Untrusted text from the event, printed through the guarded log so none of its lines can
    // act as a workflow command.
    match &context.event {
        crate::context::Event::Push(push) => {
            if let Some(commit) = &push.head_commit {
                runner.info(&format!("commit message:\n{}", commit.message));
            }
        }
        crate::context::Event::PullRequest(pr) => {
            runner.info(&format!("pull request #{}: {}", pr.number, pr.title));
        }
        _ => {}
    }
}

/// Reports the finished run (step outputs, job summary, GitHub) with every secret masked, and
/// returns its exit code.
async fn report(
    run: &RunContext<'_>,
    github: &mut GitHubReporter<'_>,
    outcome: &RunOutcome,
    mut secrets: Vec<String>,
) -> Exit {
    let runner = run.runner;
    // Phases write their summary notes already escaped, where a masked value may no longer
    // match its mask (`a_b` became `a\_b`): those escaped forms are masked too.
    secrets.extend(
        outcome
            .handoff
            .sensitive_outputs
            .values()
            .map(crate::plan::summary::output_text),
    );
    let escaped_secrets = escaped_forms(&secrets);
    let redact = |text: &str| {
        let mut text = text.to_string();
        for escaped in &escaped_secrets {
            if text.contains(escaped.as_str()) {
                text = text.replace(escaped.as_str(), "\\*\\*\\*");
            }
        }
        runner.redact(&text)
    };
    let report = ReportInput {
        environment: &run.config.environment,
        decision: run.decision,
        outcome,
        run_url: run.context.run_url(),
        redact: &redact,
    };
    publish(runner, github, &report).await;
    conclude(
        runner,
        outcome.status(run.decision.command),
        outcome.duration,
    )
}

/// Writes the step outputs and the job summary, recording the run on GitHub on the way.
async fn publish(runner: &Runner, github: &mut GitHubReporter<'_>, report: &ReportInput<'_>) {
    for (name, value) in summary::render_outputs(report) {
        runner.set_output(&name, &value);
    }
    let mut markdown = summary::render_summary(report);
    // Reporting to GitHub never changes the exit code: its failures are warnings.
    let recorded = github.finish(report).await;
    for (name, value) in &github.outputs {
        runner.set_output(name, value);
    }
    if !recorded.is_empty() {
        markdown.push_str("\n### Recorded on GitHub\n\n");
        for line in recorded {
            markdown.push_str(&format!(
                "- {}\n",
                markdown::escape_markdown(&runner.redact(&line))
            ));
        }
    }
    runner.append_summary(&markdown);
}

/// Logs the run's status, flushes the runner's files and maps the status to the exit code.
fn conclude(runner: &Runner, status: RunStatus, duration: Duration) -> Exit {
    runner.info(&format!(
        "gantry: {} in {}",
        status.as_str(),
        markdown::human_duration(duration)
    ));
    if let Err(err) = runner.finish() {
        runner.error(&format!(
            "could not write the step outputs or summary: {err}"
        ));
        return Exit::Failure;
    }
    if status.is_success() {
        Exit::Success
    } else {
        Exit::Failure
    }
}

/// The Markdown-escaped spellings of secrets that escaping changes, longest first, so they can
/// be masked in text that was escaped before it was redacted.
fn escaped_forms(secrets: &[String]) -> Vec<String> {
    let mut forms: Vec<String> = secrets
        .iter()
        .flat_map(|secret| {
            let mut candidates = vec![secret.clone()];
            candidates.extend(secret.lines().map(|line| line.trim().to_string()));
            candidates
        })
        .filter(|secret| secret.len() >= 4)
        .filter_map(|secret| {
            let escaped = markdown::escape_markdown(&secret);
            (escaped != secret).then_some(escaped)
        })
        .collect();
    forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
    forms.dedup();
    forms
}

/// Reports every problem at once and exits with the usage code; writes the `status` and
/// `failure-reason` outputs and a summary listing the problems when the files are usable.
fn refuse(runner: &Runner, problems: &[String], files_usable: bool) -> Exit {
    let annotation = Annotation {
        title: Some("gantry: invalid input".into()),
        ..Annotation::default()
    };
    for problem in problems {
        runner.annotate(Level::Error, &annotation, problem);
    }
    runner.info(&format!(
        "gantry did nothing: {} problem{} to fix first (see above).",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    ));
    if files_usable {
        runner.set_output("status", "failed");
        runner.set_output(
            "failure-reason",
            pipeline::FailureReason::InvalidInput.as_str(),
        );
        let mut md = String::from("## gantry · Invalid input · nothing was changed\n\n");
        for problem in problems {
            // Redacted before escaping: an escaped secret no longer matches the mask.
            md.push_str(&format!(
                "- {}\n",
                markdown::escape_markdown(&runner.redact(problem))
            ));
        }
        runner.append_summary(&md);
        if let Err(err) = runner.finish() {
            runner.error(&format!(
                "could not write the step outputs or summary: {err}"
            ));
        }
    }
    Exit::Usage
}

/// Fires `cancel` on SIGTERM or SIGINT (a cancelled workflow sends SIGTERM to the container).
pub fn cancel_on_signals(handle: CancelHandle) {
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = terminate => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        handle.cancel();
    });
}
