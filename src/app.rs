//! One run from start to exit code: read inputs and context, validate everything, decide the command, run the phases, report.
//!
//! Design note: [`execute`] is the single path both front doors take (the action and the local
//! CLI differ only in how they fill an [`Invocation`]). Nothing with an effect outside gantry's
//! own output happens before validation and the decision have passed.

use std::io::Write;
use std::path::PathBuf;

use crate::adapters::github::Reporter as GitHubReporter;
use crate::adapters::runner::{Runner, RunnerFileError, RunnerFiles, RunnerMode};
use crate::config::{CommandChoice, Config, InputError, RawInputs, ValidationContext};
use crate::context::{ContextError, GitHubContext};
use crate::pipeline::{self, Cancel, Phases, RunContext};
use crate::report::summary::{self, ReportInput};
use crate::report::workflow::{Annotation, Level};

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

    let mut problems: Vec<String> = Vec::new();
    if let Some(err) = &files_error {
        problems.push(err.to_string());
    }
    let context = match context {
        Ok(context) => Some(context),
        Err(err) => {
            problems.push(err.to_string());
            None
        }
    };
    let validation = ValidationContext {
        workspace: workspace.clone(),
        action_mode: mode == RunnerMode::GitHub,
        kubeconfig_env,
        kubeconfig_roots: crate::config::runner_kubeconfig_roots(),
    };
    let config = match Config::validate(&raw, &validation) {
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
    let (Some(config), Some(context), Some(decision), true) =
        (config, context, decision, problems.is_empty())
    else {
        return refuse(&runner, &problems, files_error.is_none());
    };

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
    let outcome = pipeline::run_phases(phases, &run).await;

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
        environment: &config.environment,
        decision: &decision,
        outcome: &outcome,
        run_url: context.run_url(),
        redact: &redact,
    };
    for (name, value) in summary::render_outputs(&report) {
        runner.set_output(&name, &value);
    }
    let mut markdown = summary::render_summary(&report);
    // Reporting to GitHub never changes the exit code: its failures are warnings.
    let recorded = github.finish(&report).await;
    for (name, value) in &github.outputs {
        runner.set_output(name, value);
    }
    if !recorded.is_empty() {
        markdown.push_str("\n### Recorded on GitHub\n\n");
        for line in recorded {
            markdown.push_str(&format!(
                "- {}\n",
                summary::escape_markdown(&runner.redact(&line))
            ));
        }
    }
    runner.append_summary(&markdown);
    let status = outcome.status(decision.command);
    runner.info(&format!(
        "gantry: {} in {}",
        status.as_str(),
        summary::human_duration(outcome.duration)
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
            let escaped = summary::escape_markdown(&secret);
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
        runner.set_output("failure-reason", "invalid-input");
        let mut md = String::from("## gantry · Invalid input · nothing was changed\n\n");
        for problem in problems {
            // Redacted before escaping: an escaped secret no longer matches the mask.
            md.push_str(&format!(
                "- {}\n",
                summary::escape_markdown(&runner.redact(problem))
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
pub fn cancel_on_signals(handle: pipeline::CancelHandle) {
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
