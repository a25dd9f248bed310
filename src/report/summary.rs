//! The job summary and the step outputs of a run, rendered from its outcome (pure).
//!
//! Untrusted text (branch names, commit messages, error messages that quote them) is escaped
//! with [`escape_markdown`] so it cannot break the tables or inject HTML, after masked values
//! have been replaced (see [`super::markdown`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::image::built::short_digest;
use crate::image::BuiltImage;
use crate::pipeline::facts::{
    ChangeAction, DeployFacts, PlannedAction, PlannedChange, RollbackFacts, RolloutFailure,
};
use crate::pipeline::{Command, Decision, Handoff, PhaseName, PhaseStatus, RunOutcome, RunStatus};
use crate::plan::PlanSummary;

use super::markdown::{self, escape_markdown, human_duration, Redact};

/// What the report needs besides the outcome.
#[derive(Clone)]
pub struct ReportInput<'a> {
    pub environment: &'a str,
    pub decision: &'a Decision,
    pub outcome: &'a RunOutcome,
    pub run_url: Option<String>,
    /// The runner's redaction, applied to every untrusted text before it is escaped.
    pub redact: Redact<'a>,
}

/// The outcome a person reads first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headline {
    Deployed,
    Rendered,
    RolledBackByCommand,
    Planned,
    Destroyed,
    Listed,
    FailedRolledBack,
    FailedRollbackFailed,
    FailedAfterChanges,
    FailedNothingChanged,
}

impl Headline {
    pub fn of(input: &ReportInput<'_>) -> Headline {
        let status = input.outcome.status(input.decision.command);
        let deploy = input.outcome.handoff.deploy.as_ref();
        let rollback_failed = deploy
            .and_then(|d| d.rollback.as_ref())
            .is_some_and(|r| r.error.is_some());
        match status {
            RunStatus::Deployed if input.decision.command == Command::Rollback => {
                Headline::RolledBackByCommand
            }
            RunStatus::Deployed => Headline::Deployed,
            RunStatus::Rendered => Headline::Rendered,
            RunStatus::Planned => Headline::Planned,
            RunStatus::Destroyed => Headline::Destroyed,
            RunStatus::Listed => Headline::Listed,
            _ if rollback_failed => Headline::FailedRollbackFailed,
            RunStatus::RolledBack => Headline::FailedRolledBack,
            _ if deploy.and_then(|d| d.rollback.as_ref()).is_some() => Headline::FailedRolledBack,
            _ if input.outcome.changed() => Headline::FailedAfterChanges,
            _ => Headline::FailedNothingChanged,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Headline::Deployed => "Deployed",
            Headline::Rendered => "Rendered, nothing applied (no cluster configured)",
            Headline::RolledBackByCommand => "Rolled back",
            Headline::Planned => "Planned",
            Headline::Destroyed => "Destroyed",
            Headline::Listed => "Release history",
            Headline::FailedRolledBack => "Failed and rolled back",
            Headline::FailedRollbackFailed => "Failed, and the rollback failed too",
            Headline::FailedAfterChanges => "Failed after changing the environment",
            Headline::FailedNothingChanged => "Failed, nothing changed",
        }
    }
}

/// Renders the job summary Markdown for a run (redacted before escaping; cut with
/// [`crate::report::workflow::truncate_summary`] by the runner if ever over 1 MiB).
pub fn render_summary(input: &ReportInput<'_>) -> String {
    let r = input.redact;
    let outcome = input.outcome;
    let deploy = outcome.handoff.deploy.as_ref();
    let headline = Headline::of(input);
    let mut md = summary_heading(input, headline);
    md.push_str(&headline_callout(headline, deploy));
    md.push_str(&failure_line(r, outcome));
    md.push_str(&phases_table(r, outcome));
    md.push_str(&infra_section(r, outcome));
    md.push_str(&build_section(r, outcome));
    md.push_str(&deploy_section(r, outcome));
    if let Some(url) = &input.run_url {
        let _ = writeln!(md, "\n[Run log]({})", r(url));
    }
    md
}

/// The title line (headline, environment, release) and the commit / command / time line.
fn summary_heading(input: &ReportInput<'_>, headline: Headline) -> String {
    let r = input.redact;
    let mut md = String::new();
    let release = input
        .outcome
        .handoff
        .deploy
        .as_ref()
        .and_then(|d| d.release)
        .map(|n| format!(" · release {n}"))
        .unwrap_or_default();
    let _ = writeln!(
        md,
        "## gantry · {} · {}{release}\n",
        headline.title(),
        markdown::code(r, input.environment)
    );
    let commit = input
        .decision
        .commit
        .as_deref()
        .map(|sha| markdown::code(r, crate::context::char_prefix(sha, 12)))
        .unwrap_or_else(|| "unknown".into());
    let _ = writeln!(
        md,
        "**Commit:** {commit} · **Command:** {} ({}) · **Total time:** {}\n",
        input.decision.command.as_str(),
        markdown::text(r, &input.decision.reason),
        human_duration(input.outcome.duration)
    );
    md
}

/// The alert that tells a failed run's consequence (nothing for a run that did what it meant to).
fn headline_callout(headline: Headline, deploy: Option<&DeployFacts>) -> String {
    match headline {
        Headline::FailedNothingChanged => {
            "> [!CAUTION]\n> The run failed before anything was changed; the environment is as it was.\n\n".into()
        }
        Headline::FailedAfterChanges => {
            "> [!WARNING]\n> The run failed after it had started changing the environment; see the failing phase below for what changed.\n\n".into()
        }
        Headline::FailedRolledBack => {
            let to = deploy
                .and_then(|d| d.rollback.as_ref())
                .map(rollback_target)
                .unwrap_or_else(|| "the last good release".into());
            format!(
                "> [!WARNING]\n> The deploy failed and was rolled back: {to} is running again.\n\n"
            )
        }
        Headline::FailedRollbackFailed => {
            "> [!CAUTION]\n> The deploy failed **and the automatic rollback failed**: the environment may run a mix of releases. Fix the cause, then deploy again or run `command: rollback`.\n\n".into()
        }
        _ => String::new(),
    }
}

/// The first failing phase, its failure reason and message, on one line.
fn failure_line(r: Redact<'_>, outcome: &RunOutcome) -> String {
    let mut md = String::new();
    if let Some(failure) = outcome.first_failure() {
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
                "**Failure** in {} ({}): {}\n",
                failure.name.as_str(),
                markdown::code(r, failure_reason.as_str()),
                markdown::text(r, message)
            );
        }
    }
    md
}

/// The phases table: status, duration and details of each phase.
fn phases_table(r: Redact<'_>, outcome: &RunOutcome) -> String {
    let mut md = String::from("| Phase | Status | Duration | Details |\n|---|---|---|---|\n");
    for phase in &outcome.phases {
        let details = match &phase.result.status {
            PhaseStatus::Skipped { reason } => markdown::text(r, reason),
            PhaseStatus::Failed { failure_reason, .. }
            | PhaseStatus::RolledBack { failure_reason, .. } => {
                markdown::code(r, failure_reason.as_str())
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
    md
}

/// The Infrastructure section: Terraform CLI, plan, outputs and notes (nothing when there are none).
fn infra_section(r: Redact<'_>, outcome: &RunOutcome) -> String {
    let handoff = &outcome.handoff;
    let mut md = String::new();
    let infra_notes = phase_notes(outcome, PhaseName::Infra);
    if handoff.plan.is_some() || !handoff.terraform_outputs.is_empty() || !infra_notes.is_empty() {
        md.push_str("\n### Infrastructure\n\n");
        if let Some(cli) = &handoff.terraform_cli {
            let _ = writeln!(md, "Ran with {}.\n", r(&escape_markdown(cli)));
        }
        if let Some(plan) = &handoff.plan {
            md.push_str(&plan_markdown(r, plan));
        }
        md.push_str(&terraform_outputs(r, handoff));
        for note in infra_notes {
            let _ = writeln!(md, "\n{}", r(note));
        }
    }
    md
}

/// The Images section: the images table and the build notes (nothing when there are none).
fn build_section(r: Redact<'_>, outcome: &RunOutcome) -> String {
    let handoff = &outcome.handoff;
    let mut md = String::new();
    let build_notes = phase_notes(outcome, PhaseName::Build);
    if !handoff.built_images.is_empty() || !build_notes.is_empty() {
        md.push_str("\n### Images\n\n");
        md.push_str(&images_table(r, &handoff.built_images));
        if !build_notes.is_empty() {
            md.push('\n');
            for note in build_notes {
                let _ = writeln!(md, "{}", r(note));
            }
        }
    }
    md
}

/// The Kubernetes section: the deploy facts, or else the deploy notes (nothing when neither).
fn deploy_section(r: Redact<'_>, outcome: &RunOutcome) -> String {
    let mut md = String::new();
    if let Some(facts) = outcome.handoff.deploy.as_ref() {
        md.push_str("\n### Kubernetes\n\n");
        md.push_str(&deploy_markdown(r, facts, SUMMARY_MANIFESTS_LIMIT));
    } else {
        let notes = phase_notes(outcome, PhaseName::Deploy);
        if !notes.is_empty() {
            md.push_str("\n### Kubernetes\n\n");
            for note in notes {
                let _ = writeln!(md, "{}", r(note));
            }
        }
    }
    md
}

/// How much of the rendered manifests the summary shows (the audit branch has them all).
const SUMMARY_MANIFESTS_LIMIT: usize = 64 * 1024;

fn rollback_target(rollback: &RollbackFacts) -> String {
    match rollback.to_release {
        Some(n) => format!("release {n}"),
        None => "the state before the first release (its objects were removed)".into(),
    }
}

/// The notes a phase wrote for the summary, without those `duplicate` says the report already
/// renders from the structured hand-off.
fn phase_notes(outcome: &RunOutcome, name: PhaseName) -> Vec<&String> {
    outcome
        .phases
        .iter()
        .filter(|p| p.name == name)
        .flat_map(|p| p.result.notes.iter())
        .filter(|note| !note.trim().is_empty())
        .collect()
}

/// The Terraform plan: counts, fingerprint, one collapsible list of addresses per action.
pub fn plan_markdown(r: Redact<'_>, plan: &PlanSummary) -> String {
    let mut md = format!(
        "**Terraform plan:** {} (fingerprint {})\n",
        plan.counts.sentence(),
        markdown::code(r, crate::context::char_prefix(plan.fingerprint(), 12))
    );
    for (action, list) in &plan.addresses {
        let _ = writeln!(
            md,
            "\n<details><summary>{} ({})</summary>\n",
            action.as_str(),
            list.len()
        );
        for address in list {
            let _ = writeln!(md, "- {}", markdown::code(r, address));
        }
        md.push_str("\n</details>\n");
    }
    if !plan.outputs.is_empty() {
        let changed: Vec<String> = plan
            .outputs
            .iter()
            .map(|output| {
                let marker = if output.sensitive { " (sensitive)" } else { "" };
                format!(
                    "{} {}{marker}",
                    markdown::code(r, &output.name),
                    output.action.as_str()
                )
            })
            .collect();
        let _ = writeln!(md, "\nOutput changes: {}", changed.join(", "));
    }
    md
}

/// The Terraform outputs table and the names of the sensitive ones (never their values).
pub fn terraform_outputs(r: Redact<'_>, handoff: &Handoff) -> String {
    let mut md = String::new();
    if !handoff.terraform_outputs.is_empty() {
        md.push_str("\n| Terraform output | Value |\n|---|---|\n");
        for (name, value) in &handoff.terraform_outputs {
            let _ = writeln!(
                md,
                "| {} | {} |",
                markdown::code(r, name),
                markdown::code(r, &crate::plan::summary::output_text(value))
            );
        }
    }
    if !handoff.sensitive_outputs.is_empty() {
        let names: Vec<String> = handoff
            .sensitive_outputs
            .keys()
            .map(|name| markdown::code(r, name))
            .collect();
        let _ = writeln!(
            md,
            "\nSensitive outputs (masked, not shown): {}",
            names.join(", ")
        );
    }
    md
}

/// The images table: repository, tag, short digest, built or reused, duration.
pub fn images_table(r: Redact<'_>, images: &[BuiltImage]) -> String {
    if images.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "| Image | Repository | Tag | Digest | Result | Duration |\n|---|---|---|---|---|---|\n",
    );
    for image in images {
        let digest = image
            .digest
            .as_deref()
            .map(|d| markdown::code(r, &short_digest(d)))
            .unwrap_or_else(|| "–".into());
        let _ = writeln!(
            md,
            "| {} | {} | {} | {digest} | {} | {} |",
            markdown::text(r, &image.name),
            markdown::code(r, &image.uri),
            markdown::code(r, short_tag(&image.tag)),
            image.status.as_str(),
            human_duration(Duration::from_millis(image.duration_ms)),
        );
    }
    if images
        .iter()
        .any(|i| i.status == crate::image::ImageStatus::BuiltNotPushed)
    {
        md.push_str("\nImages built but not pushed have no digest yet: a plan shows them by commit tag, a deploy pins them by the digest the registry serves after the push.\n");
    }
    md
}

fn short_tag(tag: &str) -> &str {
    if tag.len() == 40 && tag.bytes().all(|b| b.is_ascii_hexdigit()) {
        &tag[..12]
    } else {
        tag
    }
}

/// Everything the deploy phase reported: release, workloads, applied and pruned objects,
/// failure evidence, rollback, dry run, history and the rendered manifests (cut at
/// `manifests_limit` bytes).
pub fn deploy_markdown(r: Redact<'_>, facts: &DeployFacts, manifests_limit: usize) -> String {
    let mut md = release_line(facts);
    md.push_str(&interrupted_note(facts));
    md.push_str(&preflight_markdown(r, &facts.preflight));
    if let Some(verified) = &facts.verified {
        md.push_str(&format!("**{}**\n\n", markdown::text(r, verified)));
    }
    md.push_str(&workloads_table(r, facts));
    md.push_str(&charts_markdown(r, facts));
    md.push_str(&applied_markdown(r, facts));
    md.push_str(&removed_markdown(r, facts));
    if let Some(failure) = &facts.failure {
        md.push_str(&failure_markdown(r, failure));
    }
    if let Some(rollback) = &facts.rollback {
        md.push_str(&rollback_markdown(r, rollback));
    }
    if let Some(traffic) = &facts.api_traffic {
        md.push_str(&format!("{}\n\n", markdown::text(r, traffic)));
    }
    if let Some(changes) = &facts.dry_run {
        md.push_str(&dry_run_markdown(r, changes));
    }
    md.push_str(&history_table(r, facts));
    if let Some(manifests) = &facts.rendered_manifests {
        md.push_str(&rendered_manifests_markdown(r, manifests, manifests_limit));
    }
    md
}

/// The release this deploy created and the one before it (nothing when neither is known).
fn release_line(facts: &DeployFacts) -> String {
    match (facts.release, facts.previous_release) {
        (Some(release), Some(previous)) => {
            format!("**Release:** {release} (previous: {previous})\n\n")
        }
        (Some(release), None) => format!("**Release:** {release} (the first)\n\n"),
        (None, Some(previous)) => format!("**Release:** none created (current: {previous})\n\n"),
        (None, None) => String::new(),
    }
}

/// A note naming the releases of killed runs that were recorded as failed.
fn interrupted_note(facts: &DeployFacts) -> String {
    if facts.interrupted.is_empty() {
        return String::new();
    }
    let list: Vec<String> = facts.interrupted.iter().map(u64::to_string).collect();
    format!(
        "> [!NOTE]\n> Interrupted release{} {} (a killed run) recorded as failed.\n\n",
        plural(list.len()),
        list.join(", ")
    )
}

/// The workloads table: status, replicas and message of each workload watched.
fn workloads_table(r: Redact<'_>, facts: &DeployFacts) -> String {
    if facts.workloads.is_empty() {
        return String::new();
    }
    let mut md = String::from("| Workload | Status | Replicas | Message |\n|---|---|---|---|\n");
    for w in &facts.workloads {
        let _ = writeln!(
            md,
            "| {} | {} {} | {} | {} |",
            markdown::code(r, &w.object),
            status_icon(&w.status),
            markdown::text(r, &w.status),
            w.replicas
                .as_deref()
                .map(|x| markdown::text(r, x))
                .unwrap_or_else(|| "–".into()),
            markdown::text(r, &w.message)
        );
    }
    md.push('\n');
    md
}

/// The applied objects, counted by result, in a collapsible table.
fn applied_markdown(r: Redact<'_>, facts: &DeployFacts) -> String {
    if facts.applied.is_empty() {
        return String::new();
    }
    let count = |a: ChangeAction| facts.applied.iter().filter(|c| c.action == a).count();
    let mut md = format!(
        "<details><summary>Applied {} object{}: {} created, {} configured, {} unchanged</summary>\n\n",
        facts.applied.len(),
        plural(facts.applied.len()),
        count(ChangeAction::Created),
        count(ChangeAction::Configured),
        count(ChangeAction::Unchanged)
    );
    md.push_str("| # | Object | Result |\n|---|---|---|\n");
    for (i, change) in facts.applied.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            i + 1,
            markdown::code(r, &change.object),
            change.action.as_str()
        );
    }
    md.push_str("\n</details>\n\n");
    md
}

/// The Helm charts of the release: chart and version, and what happened (or, in a plan, would
/// happen) to their objects.
pub fn charts_markdown(r: Redact<'_>, facts: &DeployFacts) -> String {
    if facts.charts.is_empty() {
        return String::new();
    }
    let planned = facts.dry_run.as_deref();
    let mut md = String::from(if planned.is_some() {
        "| Chart release | Chart | Version | Namespace | Objects | Create | Change | Unchanged | Hooks |\n|---|---|---|---|---|---|---|---|---|\n"
    } else {
        "| Chart release | Chart | Version | Namespace | Objects | Created | Configured | Unchanged | Hooks |\n|---|---|---|---|---|---|---|---|---|\n"
    });
    for chart in &facts.charts {
        let mine = |object: &str| chart.objects.iter().any(|o| o == object);
        let (first, second, third) = match planned {
            Some(changes) => {
                let count = |actions: &[PlannedAction]| {
                    changes
                        .iter()
                        .filter(|c| mine(&c.object) && actions.contains(&c.action))
                        .count()
                };
                (
                    count(&[PlannedAction::Create]),
                    count(&[PlannedAction::Change, PlannedAction::Replace]),
                    count(&[PlannedAction::Unchanged]),
                )
            }
            None => {
                let count = |actions: &[ChangeAction]| {
                    facts
                        .applied
                        .iter()
                        .filter(|c| mine(&c.object) && actions.contains(&c.action))
                        .count()
                };
                (
                    count(&[ChangeAction::Created]),
                    count(&[ChangeAction::Configured, ChangeAction::Replaced]),
                    count(&[ChangeAction::Unchanged]),
                )
            }
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {first} | {second} | {third} | {}{} |",
            markdown::code(r, &chart.name),
            markdown::text(r, &chart.chart),
            markdown::text(r, chart.version.as_deref().unwrap_or("–")),
            markdown::code(r, &chart.namespace),
            chart.objects.len(),
            chart.hooks.len(),
            if chart.ignored > 0 {
                format!(
                    " ({} test hook{} left out)",
                    chart.ignored,
                    plural(chart.ignored)
                )
            } else {
                String::new()
            }
        );
    }
    md.push('\n');
    md
}

/// The objects no longer in the manifests that were pruned or kept, and those replaced.
fn removed_markdown(r: Redact<'_>, facts: &DeployFacts) -> String {
    let mut md = String::new();
    for (title, list) in [
        (
            "Pruned (no longer in the manifests; deleted once the release was healthy)",
            &facts.pruned,
        ),
        (
            "Kept (no longer in the manifests, but they hold data or other objects; annotate `gantry.dev/allow-delete: \"true\"` to let gantry delete them)",
            &facts.kept,
        ),
        (
            "Replaced (deleted and created again before the release was healthy: a field of theirs cannot change, and they are annotated `gantry.dev/replace: \"true\"`)",
            &facts.replaced,
        ),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(md, "**{title}** ({}):\n", list.len());
        for object in list {
            let _ = writeln!(md, "- {}", markdown::code(r, object));
        }
        md.push('\n');
    }
    md
}

/// The release history table: status, commit, creation time and description of each release.
fn history_table(r: Redact<'_>, facts: &DeployFacts) -> String {
    if facts.history.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "| Release | Status | Commit | Created | Description |\n|---|---|---|---|---|\n",
    );
    for h in &facts.history {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            h.release,
            markdown::text(r, &h.status),
            h.commit
                .as_deref()
                .map(|c| markdown::code(r, crate::context::char_prefix(c, 12)))
                .unwrap_or_else(|| "–".into()),
            markdown::text(r, &h.created),
            markdown::text(r, &h.description)
        );
    }
    md.push('\n');
    md
}

/// The rendered manifests in a collapsible YAML block, cut at `limit` bytes (whole lines).
fn rendered_manifests_markdown(r: Redact<'_>, manifests: &str, limit: usize) -> String {
    let documents = format!("\n{manifests}")
        .split("\n---")
        .filter(|doc| !doc.trim().is_empty())
        .count();
    let mut md = format!(
        "<details><summary>Rendered manifests ({documents} document{}, {} bytes)</summary>\n\n",
        plural(documents),
        manifests.len()
    );
    let mut lines: Vec<String> = Vec::new();
    let mut size = 0;
    let mut cut = false;
    for line in manifests.lines() {
        size += line.len() + 1;
        if size > limit {
            cut = true;
            break;
        }
        lines.push(line.to_string());
    }
    md.push_str(&markdown::fenced(r, "yaml", &lines));
    if cut {
        md.push_str("\n(cut here; the audit branch has the full file)\n");
    }
    md.push_str("\n</details>\n\n");
    md
}

/// The pre-flight findings: what stopped the deploy, or notes when it went ahead.
pub fn preflight_markdown(r: Redact<'_>, findings: &[String]) -> String {
    if findings.is_empty() {
        return String::new();
    }
    let mut md = format!("**Pre-flight** ({}):\n\n", findings.len());
    for finding in findings {
        let _ = writeln!(md, "- {}", markdown::text(r, finding));
    }
    md.push('\n');
    md
}

fn status_icon(status: &str) -> &'static str {
    match status {
        "complete" => "✅",
        "failed" => "❌",
        "progressing" => "⏳",
        _ => "➖",
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The failing pod's reason, message, log excerpt and events.
pub fn failure_markdown(r: Redact<'_>, failure: &RolloutFailure) -> String {
    let mut md = String::from("#### Rollout failure\n\n");
    let mut place = vec![markdown::code(r, &failure.object)];
    if let Some(pod) = &failure.pod {
        place.push(format!("pod {}", markdown::code(r, pod)));
    }
    if let Some(container) = &failure.container {
        place.push(format!("container {}", markdown::code(r, container)));
    }
    let _ = writeln!(
        md,
        "**{}** in {}: {}\n",
        markdown::text(r, &failure.reason),
        place.join(" · "),
        markdown::text(r, &failure.message)
    );
    if !failure.log_tail.is_empty() {
        let _ = writeln!(
            md,
            "<details open><summary>Log (last {} line{})</summary>\n",
            failure.log_tail.len(),
            plural(failure.log_tail.len())
        );
        md.push_str(&markdown::fenced(r, "text", &failure.log_tail));
        md.push_str("\n</details>\n\n");
    }
    if !failure.events.is_empty() {
        let _ = writeln!(
            md,
            "<details open><summary>Events ({})</summary>\n",
            failure.events.len()
        );
        md.push_str(&markdown::fenced(r, "text", &failure.events));
        md.push_str("\n</details>\n\n");
    }
    md
}

/// What a rollback restored, deleted, or why it failed.
pub fn rollback_markdown(r: Redact<'_>, rollback: &RollbackFacts) -> String {
    let mut md = String::from("#### Rollback\n\n");
    let from = rollback
        .from_release
        .map(|n| format!("release {n}"))
        .unwrap_or_else(|| "the failed release".into());
    match &rollback.error {
        None => {
            let _ = writeln!(
                md,
                "Rolled back from {from} to {}.\n",
                rollback_target(rollback)
            );
        }
        Some(error) => {
            let _ = writeln!(
                md,
                "Rolling back from {from} to {} **failed**: {}\n",
                rollback_target(rollback),
                markdown::text(r, error)
            );
        }
    }
    for (title, list) in [
        ("Restored", &rollback.restored),
        ("Deleted (created by the failed release)", &rollback.deleted),
        (
            "Kept (created by the failed release; they hold data or other objects)",
            &rollback.kept,
        ),
        (
            "Left as they are (they existed before the failed release adopted them; gantry deletes only what it created)",
            &rollback.left_in_place,
        ),
        (
            "Pods of the failed revision deleted so their StatefulSet recreates them from the restored template",
            &rollback.pods_deleted,
        ),
        (
            "Fields taken back from other field managers",
            &rollback.taken_over,
        ),
        (
            "Fields left to the controllers that manage them",
            &rollback.left_to_controllers,
        ),
    ] {
        if !list.is_empty() {
            let items: Vec<String> = list.iter().map(|o| markdown::code(r, o)).collect();
            let _ = writeln!(md, "- {title}: {}", items.join(", "));
        }
    }
    md.push('\n');
    md
}

/// Counts of a server-side dry run, as a sentence.
pub fn dry_run_sentence(changes: &[PlannedChange]) -> String {
    let count = |a: PlannedAction| changes.iter().filter(|c| c.action == a).count();
    let mut sentence = format!(
        "{} to create, {} to change, {} to prune",
        count(PlannedAction::Create),
        count(PlannedAction::Change),
        count(PlannedAction::Prune),
    );
    for (action, label) in [
        (PlannedAction::Replace, "to replace"),
        (PlannedAction::Keep, "kept (no longer in the release)"),
    ] {
        if count(action) > 0 {
            sentence.push_str(&format!(", {} {label}", count(action)));
        }
    }
    sentence.push_str(&format!(", {} unchanged", count(PlannedAction::Unchanged)));
    sentence
}

/// A fingerprint of the dry run (sha256 of its sorted lines, 12 hex digits), so a reviewer can
/// tell two plans apart at a glance.
pub fn dry_run_fingerprint(changes: &[PlannedChange]) -> String {
    use sha2::{Digest, Sha256};
    let mut lines: Vec<String> = changes
        .iter()
        .map(|c| format!("{} {} {}", c.action.as_str(), c.object, c.fields.join(",")))
        .collect();
    lines.sort();
    let digest = Sha256::digest(lines.join("\n").as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The Kubernetes dry run: counts and a table of the objects that would change.
pub fn dry_run_markdown(r: Redact<'_>, changes: &[PlannedChange]) -> String {
    let mut md = format!(
        "**Kubernetes dry run:** {} (fingerprint `{}`)\n\n",
        dry_run_sentence(changes),
        dry_run_fingerprint(changes)
    );
    let changing: Vec<&PlannedChange> = changes
        .iter()
        .filter(|c| c.action != PlannedAction::Unchanged)
        .collect();
    if !changing.is_empty() {
        md.push_str("| Object | Action | Changed fields |\n|---|---|---|\n");
        for c in changing {
            let fields: Vec<String> = c.fields.iter().map(|f| markdown::code(r, f)).collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                markdown::code(r, &c.object),
                c.action.as_str(),
                fields.join("<br>")
            );
        }
        md.push('\n');
    }
    md
}

/// The step outputs of a run (phase outputs included), each value redacted.
pub fn render_outputs(input: &ReportInput<'_>) -> BTreeMap<String, String> {
    let outcome = input.outcome;
    let handoff = &outcome.handoff;
    let mut outputs = BTreeMap::new();
    for phase in &outcome.phases {
        outputs.extend(phase.result.outputs.clone());
    }
    insert_run_outputs(&mut outputs, input);
    outputs.insert("phases".into(), phases_json(outcome));
    outputs.insert(
        "images".into(),
        serde_json::to_string(&handoff.images).unwrap_or_else(|_| "{}".into()),
    );
    insert_handoff_defaults(&mut outputs, handoff);
    outputs
        .into_iter()
        .map(|(name, value)| {
            let value = (input.redact)(&value);
            (name, value)
        })
        .collect()
}

/// The run-wide outputs (status, environment, command, rollback, failure reason, releases),
/// replacing any a phase set.
fn insert_run_outputs(outputs: &mut BTreeMap<String, String>, input: &ReportInput<'_>) {
    let outcome = input.outcome;
    let status = outcome.status(input.decision.command);
    outputs.insert("status".into(), status.as_str().into());
    outputs.insert("environment".into(), input.environment.into());
    outputs.insert("command".into(), input.decision.command.as_str().into());
    outputs.insert("rolled-back".into(), outcome.rolled_back().to_string());
    outputs.insert(
        "failure-reason".into(),
        outcome
            .failure_reason()
            .map(|r| r.as_str().to_string())
            .unwrap_or_default(),
    );
    let deploy = outcome.handoff.deploy.as_ref();
    let number = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
    outputs.insert("release".into(), number(deploy.and_then(|d| d.release)));
    outputs.insert(
        "previous-release".into(),
        number(deploy.and_then(|d| d.previous_release)),
    );
    if deploy
        .and_then(|d| d.rollback.as_ref())
        .is_some_and(|r| r.error.is_none())
        && input.decision.command == Command::Deploy
    {
        outputs.insert("rolled-back".into(), "true".into());
    }
}

/// The `phases` output: by phase name, its status, reason, failure reason and seconds, as JSON.
fn phases_json(outcome: &RunOutcome) -> String {
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
                } => (Some(message.clone()), Some(failure_reason.as_str())),
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
    serde_json::Value::Object(phases).to_string()
}

/// The plan, Terraform output and image digest outputs from the hand-off, where no phase set them.
fn insert_handoff_defaults(outputs: &mut BTreeMap<String, String>, handoff: &Handoff) {
    if let Some(plan) = &handoff.plan {
        outputs
            .entry("plan-fingerprint".into())
            .or_insert_with(|| plan.fingerprint().to_string());
        outputs
            .entry("plan-changes".into())
            .or_insert_with(|| plan.counts_json());
    }
    for (name, value) in &handoff.terraform_outputs {
        outputs
            .entry(format!("{}{name}", crate::plan::summary::OUTPUT_PREFIX))
            .or_insert_with(|| crate::plan::summary::output_text(value));
    }
    for image in &handoff.built_images {
        outputs
            .entry(format!("image-{}-digest", image.name))
            .or_insert_with(|| image.digest.clone().unwrap_or_default());
    }
}

/// The images of a run for the audit record: by image name, its uri, tag, digest,
/// `reference` (`uri@digest`), status (built / built-not-pushed / reused) and duration; images
/// only known by reference (handed over without build details) carry just the reference.
pub fn images_json(handoff: &Handoff) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (name, reference) in &handoff.images {
        map.insert(name.clone(), serde_json::json!({ "reference": reference }));
    }
    for image in &handoff.built_images {
        map.insert(
            image.name.clone(),
            serde_json::json!({
                "uri": image.uri,
                "tag": image.tag,
                "digest": image.digest,
                "reference": image.reference(),
                "status": image.status,
                "duration_ms": image.duration_ms,
            }),
        );
    }
    serde_json::Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::facts::{ChartFacts, ObjectChange};

    #[test]
    fn markdown_escaping_neutralises_tables_and_html() {
        assert_eq!(
            escape_markdown("feat|x <script>alert(1)</script> *b* `c`\nnext"),
            "feat&#124;x &lt;script&gt;alert(1)&lt;/script&gt; \\*b\\* \\`c\\`<br>next"
        );
    }

    #[test]
    fn charts_show_their_version_and_what_happened_to_their_objects() {
        let r: Redact<'_> = &|text: &str| text.replace("s3cr3t", "***");
        let chart = ChartFacts {
            name: "db".into(),
            chart: "postgres".into(),
            version: Some("0.1.0".into()),
            namespace: "database".into(),
            objects: vec![
                "Secret/database/db".into(),
                "StatefulSet/database/db".into(),
                "Service/database/db".into(),
            ],
            hooks: vec!["Job/database/db-migrate".into()],
            ignored: 1,
        };
        let change = |object: &str, action| ObjectChange {
            object: object.into(),
            action,
        };
        let applied = DeployFacts {
            charts: vec![chart.clone()],
            applied: vec![
                change("Secret/database/db", ChangeAction::Created),
                change("StatefulSet/database/db", ChangeAction::Configured),
                change("Service/database/db", ChangeAction::Unchanged),
                change("ConfigMap/app/other", ChangeAction::Created),
            ],
            ..DeployFacts::default()
        };
        let md = charts_markdown(r, &applied);
        assert!(md.contains("| Created | Configured | Unchanged |"), "{md}");
        assert!(
            md.contains("| `db` | postgres | 0.1.0 | `database` | 3 | 1 | 1 | 1 | 1 (1 test hook left out) |"),
            "{md}"
        );
        let planned = DeployFacts {
            charts: vec![chart],
            dry_run: Some(vec![
                PlannedChange {
                    object: "Secret/database/db".into(),
                    action: PlannedAction::Create,
                    fields: vec![],
                },
                PlannedChange {
                    object: "StatefulSet/database/db".into(),
                    action: PlannedAction::Replace,
                    fields: vec![],
                },
            ]),
            ..DeployFacts::default()
        };
        let md = charts_markdown(r, &planned);
        assert!(md.contains("| Create | Change | Unchanged |"), "{md}");
        assert!(md.contains("| 3 | 1 | 1 | 0 | 1"), "{md}");
        assert_eq!(charts_markdown(r, &DeployFacts::default()), "");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(human_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(human_duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(human_duration(Duration::from_secs(3720)), "1h02m");
    }
}
