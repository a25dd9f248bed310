//! What gantry records on GitHub, as plain data: the deployment and its statuses, and the audit-trail files and commit message.
//!
//! Pure: the adapter in [`crate::adapters::github`] sends these bodies as they are, so tests
//! assert the exact JSON GitHub receives.

use serde_json::{json, Value};

use super::summary::{images_json, ReportInput};
use crate::pipeline::{Command, RunStatus};

/// GitHub's limit for a deployment status description.
const DESCRIPTION_LIMIT: usize = 140;

/// Whether an environment name reads as production (`prod`, `production`, `prod-eu`...).
pub fn is_production(environment: &str) -> bool {
    environment == "prod"
        || environment == "production"
        || environment.starts_with("prod-")
        || environment.starts_with("production-")
}

/// The body of `POST /repos/{owner}/{repo}/deployments`.
///
/// `auto_merge` is off (gantry deploys the exact commit, never a merge of the default branch
/// into it) and `required_contexts` empty (the workflow itself decides when to deploy).
pub fn deployment_request(
    environment: &str,
    git_ref: &str,
    command: Command,
    rollback_to: Option<u64>,
) -> Value {
    let description = match command {
        Command::Rollback => match rollback_to {
            Some(n) => format!("gantry rollback of {environment} to release {n}"),
            None => format!("gantry rollback of {environment} to the previous good release"),
        },
        _ => format!("gantry deploy to {environment}"),
    };
    json!({
        "ref": git_ref,
        "task": if command == Command::Rollback { "deploy:rollback" } else { "deploy" },
        "environment": environment,
        "auto_merge": false,
        "required_contexts": [],
        "transient_environment": false,
        "production_environment": is_production(environment),
        "description": description,
        "payload": { "gantry": { "command": command.as_str() } },
    })
}

/// The body of a deployment status.
///
/// `auto_inactive` is set explicitly to true on success: GitHub then marks the environment's
/// earlier successful deployments inactive, so only the running one shows as active.
pub fn deployment_status(
    state: &str,
    description: &str,
    log_url: Option<&str>,
    environment_url: Option<&str>,
) -> Value {
    let mut body = json!({
        "state": state,
        "description": crate::context::char_prefix(description, DESCRIPTION_LIMIT),
    });
    if let Some(url) = log_url {
        body["log_url"] = json!(url);
    }
    if let Some(url) = environment_url {
        body["environment_url"] = json!(url);
    }
    if state == "success" {
        body["auto_inactive"] = json!(true);
    }
    body
}

/// The final status of a run's deployment: `(state, description)`.
pub fn final_status(input: &ReportInput<'_>) -> (&'static str, String) {
    let outcome = input.outcome;
    let deploy = outcome.handoff.deploy.as_ref();
    let release = deploy.and_then(|d| d.release);
    let rollback = deploy.and_then(|d| d.rollback.as_ref());
    let release_text = release
        .map(|n| format!("release {n}"))
        .unwrap_or_else(|| "the release".into());
    let status = outcome.status(input.decision.command);
    if status.is_success() {
        let text = match (input.decision.command, rollback.and_then(|r| r.to_release)) {
            (Command::Rollback, Some(n)) => format!("rolled back to release {n}"),
            (Command::Rollback, None) => format!("rolled back ({release_text})"),
            _ => format!("{release_text} deployed"),
        };
        return ("success", text);
    }
    let reason = outcome.failure_reason().map_or("failed", |r| r.as_str());
    let text = match rollback {
        Some(r) if r.error.is_some() => {
            format!("{release_text} failed ({reason}); the rollback failed too")
        }
        Some(r) => match r.to_release {
            Some(n) => format!("{release_text} failed ({reason}); rolled back to release {n}"),
            None => {
                format!("{release_text} failed ({reason}); rolled back (first release removed)")
            }
        },
        None if status == RunStatus::RolledBack => {
            format!("{release_text} failed ({reason}); rolled back")
        }
        None if release.is_some() => format!("{release_text} failed ({reason})"),
        None => format!("failed ({reason})"),
    };
    ("failure", text)
}

/// The payload recorded on the deployment once the release is known.
pub fn release_payload(input: &ReportInput<'_>) -> Value {
    let deploy = input.outcome.handoff.deploy.as_ref();
    json!({
        "release": deploy.and_then(|d| d.release),
        "previous_release": deploy.and_then(|d| d.previous_release),
    })
}

/// The audit-trail files: `<environment>/release.json` always, `<environment>/manifests.yaml`
/// when the deploy phase handed over the rendered manifests.
pub fn audit_files(
    input: &ReportInput<'_>,
    actor: Option<&str>,
    time: &str,
) -> Vec<(String, String)> {
    let env = input.environment;
    let deploy = input.outcome.handoff.deploy.as_ref();
    let record = json!({
        "environment": env,
        "command": input.decision.command.as_str(),
        "commit": input.decision.commit,
        "release": deploy.and_then(|d| d.release),
        "previous_release": deploy.and_then(|d| d.previous_release),
        "actor": actor,
        "time": time,
        "outcome": input.outcome.status(input.decision.command).as_str(),
        "failure_reason": input.outcome.failure_reason().map(|r| r.as_str()),
        "rolled_back_to": deploy.and_then(|d| d.rollback.as_ref()).and_then(|r| r.to_release),
        "images": images_json(&input.outcome.handoff),
        "run_url": input.run_url,
    });
    let mut files = vec![(
        format!("{env}/release.json"),
        (input.redact)(&format!(
            "{}\n",
            serde_json::to_string_pretty(&record).unwrap_or_default()
        )),
    )];
    if let Some(manifests) = deploy.and_then(|d| d.rendered_manifests.as_ref()) {
        files.push((format!("{env}/manifests.yaml"), (input.redact)(manifests)));
    }
    files
}

/// The audit commit's message.
pub fn audit_message(input: &ReportInput<'_>) -> String {
    let deploy = input.outcome.handoff.deploy.as_ref();
    let release = deploy
        .and_then(|d| d.release)
        .map(|n| format!(" release {n}"))
        .unwrap_or_default();
    let status = input.outcome.status(input.decision.command).as_str();
    let commit = input
        .decision
        .commit
        .as_deref()
        .map(|c| crate::context::char_prefix(c, 12))
        .unwrap_or("unknown");
    let mut message = format!(
        "{}: {}{release} {status} (commit {commit})",
        input.environment,
        input.decision.command.as_str()
    );
    if let Some(url) = &input.run_url {
        message.push_str(&format!("\n\nRun: {url}"));
    }
    (input.redact)(&message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_bounded_and_success_deactivates_the_older_ones() {
        let long = "x".repeat(500);
        let body = deployment_status("failure", &long, Some("https://run"), None);
        assert_eq!(body["description"].as_str().unwrap().len(), 140);
        assert!(body.get("auto_inactive").is_none());
        assert_eq!(
            deployment_status("success", "ok", None, Some("https://app"))["auto_inactive"],
            true
        );
        assert!(is_production("prod") && is_production("prod-eu") && !is_production("produce"));
    }
}
