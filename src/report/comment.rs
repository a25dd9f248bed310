//! The pull-request comment: one per environment, found again by a hidden marker, showing the plan (or, after the merge, what was deployed) under GitHub's 65,536-character limit.

use std::fmt::Write as _;

use super::markdown::{self, human_duration, Unit};
use super::summary::{
    charts_markdown, deploy_markdown, dry_run_markdown, images_table, plan_markdown,
    preflight_markdown, Headline, ReportInput,
};
use crate::pipeline::{PhaseName, PhaseStatus};

/// GitHub's limit for an issue comment body, in characters.
pub const COMMENT_LIMIT: usize = 65_536;

/// The hidden marker that identifies the comment of an environment.
pub fn marker(environment: &str) -> String {
    format!("<!-- gantry:plan:{environment} -->")
}

/// The plan comment of a pull-request run: Terraform changes, images, Kubernetes dry run.
pub fn render_plan_comment(input: &ReportInput<'_>) -> String {
    let r = input.redact;
    let outcome = input.outcome;
    let handoff = &outcome.handoff;
    let failed = outcome.first_failure().is_some();
    let mut md = marker(input.environment);
    let _ = writeln!(
        md,
        "\n### {} gantry plan · {}\n",
        if failed { "❌" } else { "📋" },
        markdown::code(r, input.environment)
    );
    let _ = writeln!(md, "{}\n", commit_line(input));
    if let Some(failure) = outcome.first_failure() {
        if let PhaseStatus::Failed {
            failure_reason,
            message,
        }
        | PhaseStatus::RolledBack {
            failure_reason,
            message,
        } = &failure.result.status
        {
            let _ = writeln!(
                md,
                "> [!CAUTION]\n> The plan failed in {} ({}): {}\n",
                failure.name.as_str(),
                markdown::code(r, failure_reason.as_str()),
                markdown::text(r, message)
            );
        }
    }
    md.push_str("#### Terraform\n\n");
    match &handoff.plan {
        Some(plan) => md.push_str(&plan_markdown(r, plan)),
        None => {
            let _ = writeln!(md, "{}", not_run(input, PhaseName::Infra));
        }
    }
    md.push_str("\n#### Images\n\n");
    if handoff.built_images.is_empty() {
        let _ = writeln!(md, "{}", not_run(input, PhaseName::Build));
    } else {
        md.push_str(&images_table(r, &handoff.built_images));
    }
    md.push_str("\n#### Kubernetes\n\n");
    if let Some(facts) = &handoff.deploy {
        md.push_str(&preflight_markdown(r, &facts.preflight));
        md.push_str(&charts_markdown(r, facts));
    }
    match handoff.deploy.as_ref().and_then(|d| d.dry_run.as_ref()) {
        Some(changes) => md.push_str(&dry_run_markdown(r, changes)),
        None => {
            let _ = writeln!(md, "{}", not_run(input, PhaseName::Deploy));
        }
    }
    md.push_str(&footer(input, "This comment is updated on every push."));
    cut(input, md)
}

/// The comment after a deploy of the merged pull request: what now runs in the environment.
pub fn render_deployed_comment(input: &ReportInput<'_>) -> String {
    let r = input.redact;
    let handoff = &input.outcome.handoff;
    let release = handoff
        .deploy
        .as_ref()
        .and_then(|d| d.release)
        .map(|n| format!(" · release {n}"))
        .unwrap_or_default();
    let mut md = marker(input.environment);
    let _ = writeln!(
        md,
        "\n### gantry · {} · {}{release}\n",
        Headline::of(input).title(),
        markdown::code(r, input.environment)
    );
    let _ = writeln!(md, "{}\n", commit_line(input));
    if let Some(plan) = &handoff.plan {
        let _ = writeln!(
            md,
            "**Terraform:** {} (fingerprint {})\n",
            plan.counts.sentence(),
            markdown::code(r, crate::context::char_prefix(plan.fingerprint(), 12))
        );
    }
    if !handoff.built_images.is_empty() {
        md.push_str(&images_table(r, &handoff.built_images));
        md.push('\n');
    }
    if let Some(facts) = &handoff.deploy {
        let mut facts = facts.clone();
        // The comment says what runs; the manifests live on the audit branch.
        facts.rendered_manifests = None;
        facts.dry_run = None;
        md.push_str(&deploy_markdown(r, &facts, 0));
    }
    md.push_str(&footer(
        input,
        "The plan this comment showed before was deployed by the run above.",
    ));
    cut(input, md)
}

fn commit_line(input: &ReportInput<'_>) -> String {
    let commit = input
        .decision
        .commit
        .as_deref()
        .map(|sha| markdown::code(input.redact, crate::context::char_prefix(sha, 12)))
        .unwrap_or_else(|| "unknown".into());
    format!(
        "**Commit:** {commit} · **Total time:** {}",
        human_duration(input.outcome.duration)
    )
}

fn not_run(input: &ReportInput<'_>, name: PhaseName) -> String {
    match input.outcome.phases.iter().find(|p| p.name == name) {
        Some(phase) => match &phase.result.status {
            PhaseStatus::Skipped { reason } => {
                format!("Not planned: {}.", markdown::text(input.redact, reason))
            }
            PhaseStatus::Succeeded => "No changes reported.".to_string(),
            _ => "Failed (see above).".to_string(),
        },
        None => "Not planned.".to_string(),
    }
}

fn footer(input: &ReportInput<'_>, line: &str) -> String {
    match &input.run_url {
        Some(url) => format!(
            "\n<sub>{line} [Run summary and log]({}).</sub>\n",
            (input.redact)(url)
        ),
        None => format!("\n<sub>{line}</sub>\n"),
    }
}

fn cut(input: &ReportInput<'_>, md: String) -> String {
    let pointer = match &input.run_url {
        Some(url) => format!("the [run summary]({}) has everything", (input.redact)(url)),
        None => "the run summary has everything".to_string(),
    };
    let note = format!(
        "> [!WARNING]\n> **Comment truncated** to stay under GitHub's {COMMENT_LIMIT}-character limit; {pointer}."
    );
    // Redact the whole body once more: a secret could span the escaped pieces.
    let md = (input.redact)(&md);
    markdown::truncate(&md, COMMENT_LIMIT, Unit::Chars, |_, _| note.clone())
}
