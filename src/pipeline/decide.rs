//! Decides what a run does from the validated configuration and the event: the resolved command, the commit, and why.
//!
//! Pure: a table of events and inputs in, a [`Decision`] or the reasons it is refused out.

use crate::config::{CommandChoice, Config, InputError, ValidationErrors};
use crate::context::{DispatchEvent, Event, GitHubContext, PushEvent};

/// A command after `auto` has been resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Deploy,
    Plan,
    Rollback,
    Destroy,
    History,
    Unlock,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Deploy => "deploy",
            Command::Plan => "plan",
            Command::Rollback => "rollback",
            Command::Destroy => "destroy",
            Command::History => "history",
            Command::Unlock => "unlock",
        }
    }
}

/// What this run will do, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub command: Command,
    /// One sentence a person reads in the log and summary ("push to the default branch main").
    pub reason: String,
    /// The commit the run builds and deploys (the `version` input, or the checked-out commit).
    pub commit: Option<String>,
    /// The pull request to comment on, on pull-request events.
    pub pull_request: Option<u64>,
}

/// Resolves the command and checks the inputs that depend on it.
pub fn decide(config: &Config, cx: &GitHubContext) -> Result<Decision, ValidationErrors> {
    let mut problems = Problems::default();
    let (command, reason) = match config.command {
        CommandChoice::Auto => auto_command(cx, &mut problems),
        explicit => (
            resolved(explicit).expect("explicit command"),
            format!("`command: {}` given", explicit.as_str()),
        ),
    };
    check_rollback_inputs(config, cx, command, &mut problems);
    check_confirmations(config, command, &mut problems);
    let pull_request = match &cx.event {
        Event::PullRequest(pr) => Some(pr.number),
        _ => None,
    };
    check_surroundings(config, cx, command, pull_request, &mut problems);
    let commit = config.version.clone().or_else(|| cx.sha.clone());
    if !problems.0.is_empty() {
        return Err(ValidationErrors(problems.0));
    }
    Ok(Decision {
        command,
        reason,
        commit,
        pull_request,
    })
}

/// The input problems found so far, in the order they are reported.
#[derive(Default)]
struct Problems(Vec<InputError>);

impl Problems {
    /// Records that `input` is refused, and why.
    fn add(&mut self, input: &str, message: String) {
        self.0.push(InputError {
            input: input.to_string(),
            origin: None,
            message,
        })
    }
}

/// The command `command: auto` resolves to for the event, and why (a refused event plans, with
/// no reason, and records the problem).
fn auto_command(cx: &GitHubContext, problems: &mut Problems) -> (Command, String) {
    match &cx.event {
        Event::Push(push) => {
            let default_branch = cx.default_branch.as_deref().unwrap_or("main");
            push_command(push, default_branch, problems)
        }
        Event::PullRequest(pr) => (
            Command::Plan,
            format!("pull request #{}: plan and comment", pr.number),
        ),
        Event::WorkflowDispatch(dispatch) => dispatch_command(dispatch, problems),
        Event::Local => (Command::Deploy, "local run".to_string()),
        Event::Other(name) => (
            Command::Plan,
            format!("`{name}` event: plan only (set `command` to act otherwise)"),
        ),
    }
}

/// A push deploys the default branch and tags, plans other branches, and refuses a deletion.
fn push_command(
    push: &PushEvent,
    default_branch: &str,
    problems: &mut Problems,
) -> (Command, String) {
    if push.deleted {
        problems.add(
            "command",
            format!(
                "the push deleted `{}`; there is nothing to deploy. Limit the workflow to pushes of the branches you deploy (`on: push: branches: [{default_branch}]`)",
                push.git_ref
            ),
        );
        (Command::Plan, String::new())
    } else if push.git_ref == format!("refs/heads/{default_branch}") {
        (
            Command::Deploy,
            format!("push to the default branch `{default_branch}`"),
        )
    } else if let Some(tag) = push.git_ref.strip_prefix("refs/tags/") {
        (Command::Deploy, format!("push of the tag `{tag}`"))
    } else {
        let branch = push.git_ref.trim_start_matches("refs/heads/");
        (
            Command::Plan,
            format!(
                "push to `{branch}`, which is not the default branch `{default_branch}`: plan only"
            ),
        )
    }
}

/// A manual run does what its `command` input asks (deploy when it asks nothing) and refuses an
/// unknown command.
fn dispatch_command(dispatch: &DispatchEvent, problems: &mut Problems) -> (Command, String) {
    match dispatch.inputs.get("command").map(String::as_str) {
        None | Some("") | Some("auto") => (
            Command::Deploy,
            "manual run (workflow_dispatch) without a command: deploy".to_string(),
        ),
        Some(text) => match CommandChoice::parse(text).and_then(resolved) {
            Some(command) => (
                command,
                format!("manual run (workflow_dispatch) asking for `{text}`"),
            ),
            None => {
                problems.add(
                    "command",
                    format!(
                        "the workflow_dispatch input `command` is `{}`, which gantry does not know; use one of deploy, plan, rollback, destroy, history, unlock",
                        crate::config::values::shorten(text, 40)
                    ),
                );
                (Command::Plan, String::new())
            }
        },
    }
}

/// Checks `rollback-to` and `version` against the command: only a rollback names a release, and
/// a manual one must.
fn check_rollback_inputs(
    config: &Config,
    cx: &GitHubContext,
    command: Command,
    problems: &mut Problems,
) {
    if config.rollback_to.is_some() && command != Command::Rollback {
        problems.add(
            "rollback-to",
            format!("only applies to the rollback command, but this run will {}; remove it or set `command: rollback`", command.as_str()),
        );
    }
    if command == Command::Rollback && config.version.is_some() {
        problems.add(
            "version",
            "a rollback restores a recorded release and builds nothing; choose the release with rollback-to instead of version".to_string(),
        );
    }
    if command == Command::Rollback
        && config.rollback_to.is_none()
        && matches!(cx.event, Event::WorkflowDispatch(_))
    {
        problems.add(
            "rollback-to",
            "a manual rollback must name the release to restore; set rollback-to to its number (the summary of a `command: history` run lists the releases)".to_string(),
        );
    }
}

/// Checks that destroy and unlock are confirmed with the environment's name.
fn check_confirmations(config: &Config, command: Command, problems: &mut Problems) {
    if command == Command::Destroy {
        match &config.confirm_destroy {
            Some(confirmation) if *confirmation == config.environment => {}
            Some(_) => problems.add(
                "confirm-destroy",
                format!("does not match the environment; to destroy `{}`, set confirm-destroy to `{}`", config.environment, config.environment),
            ),
            None => problems.add(
                "confirm-destroy",
                format!("destroy needs an explicit confirmation; set confirm-destroy to the environment name `{}`", config.environment),
            ),
        }
    }
    if command == Command::Unlock {
        match &config.confirm_unlock {
            Some(confirmation) if *confirmation == config.environment => {}
            Some(_) => problems.add(
                "confirm-unlock",
                format!("does not match the environment; to break the lock of `{}`, set confirm-unlock to `{}`", config.environment, config.environment),
            ),
            None => problems.add(
                "confirm-unlock",
                format!("unlock breaks the lock of whatever run holds it; confirm that run is gone by setting confirm-unlock to the environment name `{}`", config.environment),
            ),
        }
    }
}

/// Checks what the run needs around the command: a token to comment on the pull request, a
/// phase with something to do, and a commit SHA that is one.
fn check_surroundings(
    config: &Config,
    cx: &GitHubContext,
    command: Command,
    pull_request: Option<u64>,
    problems: &mut Problems,
) {
    if pull_request.is_some() && config.report.pr_comment && config.report.github_token.is_none() {
        problems.add(
            "github-token",
            "a pull-request run comments on the pull request but no token is given; pass `github-token: ${{ github.token }}` (with `pull-requests: write`) or set `pr-comment: false`".to_string(),
        );
    }
    if matches!(command, Command::Deploy | Command::Plan)
        && crate::config::Phase::ALL
            .iter()
            .all(|phase| super::skip_reason(*phase, config, command).is_some())
    {
        problems.add(
            "phases",
            "nothing to do: none of the selected phases has anything configured (infra needs terraform-directory, build needs images, deploy needs manifests)".to_string(),
        );
    }
    if let Some(sha) = &cx.sha {
        if !is_commit_sha(sha) {
            problems.add(
                "GITHUB_SHA",
                format!(
                    "`{}` is not a commit SHA (40 or 64 hexadecimal characters); gantry tags images and records releases with it. On GitHub the runner sets it; locally, run in a git checkout or set it to a commit",
                    crate::config::values::shorten(sha, 50)
                ),
            );
        }
    }
}

/// A full commit id: 40 hex digits (SHA-1), or 64 (SHA-256 repositories).
pub fn is_commit_sha(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn resolved(choice: CommandChoice) -> Option<Command> {
    Some(match choice {
        CommandChoice::Auto => return None,
        CommandChoice::Deploy => Command::Deploy,
        CommandChoice::Plan => Command::Plan,
        CommandChoice::Rollback => Command::Rollback,
        CommandChoice::Destroy => Command::Destroy,
        CommandChoice::History => Command::History,
        CommandChoice::Unlock => Command::Unlock,
    })
}
