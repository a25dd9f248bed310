//! The job summary and the step outputs of a run, rendered from its outcome (pure).
//!
//! Untrusted text (branch names, commit messages, error messages that quote them) is escaped
//! with [`escape_markdown`] so it cannot break the tables or inject HTML.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::pipeline::{Decision, PhaseStatus, RunOutcome, RunStatus};

/// What the report needs besides the outcome.
#[derive(Debug, Clone)]
pub struct ReportInput<'a> {
    pub environment: &'a str,
    pub decision: &'a Decision,
    pub outcome: &'a RunOutcome,
    pub run_url: Option<String>,
}

/// Escapes text for Markdown table cells and paragraphs: HTML, table pipes, emphasis and
/// code characters, and line breaks.
pub fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '|' => out.push_str("&#124;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '#' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '\r' => {}
            '\n' => out.push_str("<br>"),
            _ => out.push(c),
        }
    }
    out
}

/// Formats a duration for people: `850ms`, `12.3s`, `4m05s`, `1h02m`.
pub fn human_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60)
    }
}

fn headline(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Deployed => "Deployed",
        RunStatus::Planned => "Planned",
        RunStatus::Destroyed => "Destroyed",
        RunStatus::Listed => "Release history",
        RunStatus::Failed => "Failed",
        RunStatus::RolledBack => "Failed and rolled back",
    }
}

/// Renders the job summary Markdown for a run.
pub fn render_summary(input: &ReportInput<'_>) -> String {
    let status = input.outcome.status(input.decision.command);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## gantry · {} · `{}`\n",
        headline(status),
        escape_markdown(input.environment)
    );
    let commit = input
        .decision
        .commit
        .as_deref()
        .map(|sha| {
            format!(
                "`{}`",
                escape_markdown(crate::context::char_prefix(sha, 12))
            )
        })
        .unwrap_or_else(|| "unknown".into());
    let _ = writeln!(
        md,
        "**Command:** {} ({}) · **Commit:** {commit} · **Total time:** {}\n",
        input.decision.command.as_str(),
        escape_markdown(&input.decision.reason),
        human_duration(input.outcome.duration)
    );
    if status == RunStatus::Failed {
        if input.outcome.changed() {
            md.push_str("> [!WARNING]\n> The run failed after it had started changing the environment; see the failing phase below for what changed.\n\n");
        } else {
            md.push_str("> [!CAUTION]\n> The run failed before anything was changed; the environment is as it was.\n\n");
        }
    }
    if let Some(failure) = input.outcome.first_failure() {
        if let PhaseStatus::Failed {
            message,
            failure_reason,
        }
        | PhaseStatus::RolledBack {
            message,
            failure_reason,
        } = &failure.result.status
        {
            let _ = writeln!(
                md,
                "**Failure** in {} (`{}`): {}\n",
                failure.name.as_str(),
                escape_markdown(failure_reason),
                escape_markdown(message)
            );
        }
    }
    md.push_str("| Phase | Status | Duration | Details |\n|---|---|---|---|\n");
    for phase in &input.outcome.phases {
        let details = match &phase.result.status {
            PhaseStatus::Skipped { reason } => escape_markdown(reason),
            PhaseStatus::Failed { failure_reason, .. }
            | PhaseStatus::RolledBack { failure_reason, .. } => {
                format!("`{}`", escape_markdown(failure_reason))
            }
            PhaseStatus::Succeeded => String::new(),
        };
        let duration = match phase.result.status {
            PhaseStatus::Skipped { .. } => "–".to_string(),
            _ => human_duration(phase.duration),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {duration} | {details} |",
            phase.name.as_str(),
            phase.result.status.label()
        );
    }
    for phase in &input.outcome.phases {
        if !phase.result.notes.is_empty() {
            let _ = writeln!(md, "\n### {}\n", phase.name.as_str());
            for note in &phase.result.notes {
                let _ = writeln!(md, "{note}");
            }
        }
    }
    if let Some(url) = &input.run_url {
        let _ = writeln!(md, "\n[Run log]({url})");
    }
    md
}

/// The step outputs of a run (phase outputs included).
pub fn render_outputs(input: &ReportInput<'_>) -> BTreeMap<String, String> {
    let outcome = input.outcome;
    let mut outputs = BTreeMap::new();
    let status = outcome.status(input.decision.command);
    outputs.insert("status".into(), status.as_str().into());
    outputs.insert("environment".into(), input.environment.into());
    outputs.insert("command".into(), input.decision.command.as_str().into());
    outputs.insert("rolled-back".into(), outcome.rolled_back().to_string());
    outputs.insert(
        "failure-reason".into(),
        outcome.failure_reason().unwrap_or_default().into(),
    );
    let phases: serde_json::Map<String, serde_json::Value> = outcome
        .phases
        .iter()
        .map(|phase| {
            let (reason, failure_reason) = match &phase.result.status {
                PhaseStatus::Skipped { reason } => (Some(reason.clone()), None),
                PhaseStatus::Failed {
                    failure_reason,
                    message,
                }
                | PhaseStatus::RolledBack {
                    failure_reason,
                    message,
                } => (Some(message.clone()), Some(failure_reason.clone())),
                PhaseStatus::Succeeded => (None, None),
            };
            (
                phase.name.as_str().to_string(),
                serde_json::json!({
                    "status": phase.result.status.label(),
                    "reason": reason,
                    "failure-reason": failure_reason,
                    "seconds": (phase.duration.as_secs_f64() * 10.0).round() / 10.0,
                }),
            )
        })
        .collect();
    outputs.insert(
        "phases".into(),
        serde_json::Value::Object(phases).to_string(),
    );
    outputs.insert(
        "images".into(),
        serde_json::to_string(&outcome.handoff.images).unwrap_or_else(|_| "{}".into()),
    );
    for phase in &outcome.phases {
        outputs.extend(phase.result.outputs.clone());
    }
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_escaping_neutralises_tables_and_html() {
        assert_eq!(
            escape_markdown("feat|x <script>alert(1)</script> *b* `c`\nnext"),
            "feat&#124;x &lt;script&gt;alert(1)&lt;/script&gt; \\*b\\* \\`c\\`<br>next"
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(human_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(human_duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(human_duration(Duration::from_secs(3720)), "1h02m");
    }
}
