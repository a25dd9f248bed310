//! The infra phase: drives the real `terraform` CLI through init, workspace, validate, plan, show, the destroy guard, apply of the saved plan, and outputs, and reports each step.
//!
//! Design note: every decision (argv, summary, guard, diagnostics, progress) is made by the pure
//! [`crate::plan`] module; this file runs the steps in a fixed order and turns each outcome into
//! log lines, annotations, step outputs and the `failure-reason` code. Sensitive outputs are
//! masked before anything else is done with them and only ever reach `Handoff::sensitive_outputs`.

mod versions;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::adapters::terraform::{self, Finished, Terraform};
use crate::app::frame::RunContext;
use crate::pipeline::{Command, FailureReason, Handoff, PhaseResult, PhaseStatus};
use crate::plan::argv;
use crate::plan::summary::{destroy_guard, output_text, DestroyBlocked, OUTPUT_PREFIX};
use crate::plan::ui::{self, Diagnostic, LockInfo, UiEvent};
use crate::plan::{Plan, PlanSummary};
use crate::report::markdown::{escape_markdown, human_duration};
use crate::report::workflow::{Annotation, Level};

/// A Terraform command gantry runs, as the log and the errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Init,
    Workspace,
    Validate,
    Plan,
    Show,
    Apply,
    Output,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Init => "init",
            Step::Workspace => "workspace select",
            Step::Validate => "validate",
            Step::Plan => "plan",
            Step::Show => "show",
            Step::Apply => "apply",
            Step::Output => "output",
        }
    }

    /// The `failure-reason` of a failure in this step.
    fn failure_reason(self) -> FailureReason {
        match self {
            Step::Init | Step::Workspace => FailureReason::InitFailed,
            Step::Validate => FailureReason::ValidateFailed,
            Step::Plan | Step::Show => FailureReason::PlanFailed,
            Step::Apply | Step::Output => FailureReason::ApplyFailed,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the infra phase stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Terraform(#[source] terraform::Error),
    #[error("terraform {step} could not run: {source}")]
    Run {
        step: Step,
        #[source]
        source: terraform::Error,
    },
    #[error("terraform {step} failed: {message}")]
    StepFailed { step: Step, message: String },
    #[error("terraform {step} could not acquire the state lock within terraform-lock-timeout ({timeout}): {holder}; wait for that run to finish, or if it died, release the lock with `{tool} force-unlock {lock_id}`")]
    StateLocked {
        tool: &'static str,
        step: Step,
        timeout: String,
        holder: String,
        lock_id: String,
    },
    #[error("{0}")]
    Version(String),
    #[error(transparent)]
    DestroyBlocked(#[from] DestroyBlocked),
    #[error("terraform apply failed part way: {}; {}. {message}", listed("changed", .changed), listed("failed", .failed))]
    PartialApply {
        changed: Vec<String>,
        failed: Vec<String>,
        message: String,
    },
    #[error("cancelled during terraform {step}: {what}")]
    Cancelled { step: Step, what: String },
    #[error("could not create a private directory for the plan file under {dir}: {source}")]
    PlanDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn listed(label: &str, addresses: &[String]) -> String {
    if addresses.is_empty() {
        format!("nothing {label}")
    } else {
        format!("{label}: {}", addresses.join(", "))
    }
}

impl Error {
    /// The machine-readable `failure-reason`.
    pub fn failure_reason(&self) -> FailureReason {
        match self {
            Error::Terraform(_) | Error::Version(_) => FailureReason::TerraformMissing,
            Error::Run { step, .. } | Error::StepFailed { step, .. } => step.failure_reason(),
            Error::StateLocked { .. } => FailureReason::StateLocked,
            Error::DestroyBlocked(_) => FailureReason::DestroyBlocked,
            Error::PartialApply { .. } => FailureReason::ApplyFailed,
            Error::Cancelled { .. } => FailureReason::Cancelled,
            Error::PlanDir { .. } => FailureReason::PlanFailed,
        }
    }
}

/// Runs the infra phase for the run's command (deploy: plan and apply; plan: plan only;
/// destroy: plan -destroy and apply).
pub async fn run(run: &RunContext<'_>, handoff: &mut Handoff) -> PhaseResult {
    let Some(directory) = run.config.infra.directory.clone() else {
        return PhaseResult::new(PhaseStatus::skipped("terraform-directory is empty"));
    };
    let mut phase = InfraPhase {
        run,
        directory,
        outputs: BTreeMap::new(),
        notes: Vec::new(),
        applied: false,
        tool: "terraform",
    };
    let status = match phase.execute(handoff).await {
        Ok(()) => PhaseStatus::Succeeded,
        Err(err) => {
            if let Error::PartialApply {
                changed, failed, ..
            } = &err
            {
                phase.notes.push(partial_apply_markdown(changed, failed));
            }
            let message = err.to_string();
            phase.notes.push(format!(
                "**Terraform failed:** {}",
                escape_markdown(&message)
            ));
            PhaseStatus::failed(err.failure_reason(), message)
        }
    };
    PhaseResult {
        status,
        outputs: phase.outputs,
        notes: phase.notes,
        changed: phase.applied,
    }
}

struct InfraPhase<'r, 'a> {
    run: &'r RunContext<'a>,
    directory: PathBuf,
    outputs: BTreeMap<String, String>,
    notes: Vec<String>,
    /// Set when the apply step starts: from then on the infrastructure may have changed.
    applied: bool,
    /// The command of the tool that runs (`terraform` or `tofu`), for command lines and hints.
    tool: &'static str,
}

/// What one step printed that gantry acts on.
#[derive(Default)]
struct StepReport {
    diagnostics: Vec<Diagnostic>,
    changed: Vec<String>,
    failed: Vec<String>,
}

/// The private directory holding the saved plan; removed when dropped.
struct PlanDir(PathBuf);

impl PlanDir {
    fn create() -> Result<PlanDir, Error> {
        let base = std::env::var_os("RUNNER_TEMP")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let path = base.join(format!(
            "gantry-terraform-{}",
            crate::report::workflow::random_token()
        ));
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .map_err(|source| Error::PlanDir { dir: base, source })?;
        Ok(PlanDir(path))
    }

    fn plan_file(&self) -> PathBuf {
        self.0.join("gantry.tfplan")
    }
}

impl Drop for PlanDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One entry of `terraform output -json`.
#[derive(Deserialize)]
struct OutputEntry {
    #[serde(default)]
    sensitive: bool,
    #[serde(default)]
    value: Value,
}

impl InfraPhase<'_, '_> {
    /// Runs the steps the command needs in their fixed order, ending with the outputs.
    async fn execute(&mut self, handoff: &mut Handoff) -> Result<(), Error> {
        let command = self.run.decision.command;
        let infra = &self.run.config.infra;
        let terraform = self.discover(handoff).await?;

        self.step(&terraform, Step::Init, argv::init(infra)).await?;
        if matches!(
            command,
            Command::Rollback | Command::History | Command::Unlock
        ) {
            // These act on recorded releases: Terraform only tells where the cluster is.
            return self.outputs_only(&terraform, handoff).await;
        }
        self.select_and_validate(&terraform).await?;

        let plan_dir = PlanDir::create()?;
        let plan_file = plan_dir.plan_file();
        let destroy = command == Command::Destroy;
        let (summary, has_changes) = self.plan(&terraform, &plan_file, destroy, handoff).await?;
        let guard = destroy_guard(&summary, infra.allow_destroy, destroy);
        match command {
            Command::Plan => {
                if let Err(blocked) = &guard {
                    self.run
                        .runner
                        .warning(&format!("applying this plan would be blocked: {blocked}"));
                }
                self.run.runner.info("plan only: nothing is applied");
            }
            _ if !has_changes => {
                self.run
                    .runner
                    .info("terraform plan found no changes; apply skipped");
                self.notes
                    .push("No infrastructure changes; apply skipped.".to_string());
            }
            _ => {
                guard?;
                self.apply(&terraform, &plan_file).await?;
            }
        }
        drop(plan_dir);

        self.read_outputs(&terraform, handoff).await
    }

    /// Finds and version-checks the tool, logs which one runs where, and records it in the
    /// handoff.
    async fn discover(&mut self, handoff: &mut Handoff) -> Result<Terraform, Error> {
        let (terraform, why) = versions::select(self.run, &self.directory).await?;
        let cli = format!("{} {}", terraform.cli().name(), terraform.version());
        self.run.runner.info(&format!(
            "{cli} ({}) in {}{}",
            terraform.binary().display(),
            self.directory.display(),
            why.as_deref()
                .map(|why| format!(": {why}"))
                .unwrap_or_default()
        ));
        handoff.terraform_cli = Some(match why {
            Some(why) => format!("{cli} ({why})"),
            None => cli,
        });
        self.tool = terraform.cli().command();
        Ok(terraform)
    }

    /// Selects the workspace and reads the outputs, planning nothing (rollback, history, unlock).
    async fn outputs_only(
        &mut self,
        terraform: &Terraform,
        handoff: &mut Handoff,
    ) -> Result<(), Error> {
        let command = self.run.decision.command;
        self.step(
            terraform,
            Step::Workspace,
            argv::workspace_select(&self.run.config.environment),
        )
        .await?;
        self.run.runner.info(&format!(
            "{} changes no infrastructure: the Terraform outputs are read, nothing is planned",
            command.as_str()
        ));
        self.notes.push(format!(
            "Terraform outputs read for `{}`; nothing planned or applied.",
            command.as_str()
        ));
        self.read_outputs(terraform, handoff).await
    }

    /// Selects the environment's workspace and validates the configuration.
    async fn select_and_validate(&self, terraform: &Terraform) -> Result<(), Error> {
        // Validation does not depend on the workspace: both run at once (one Terraform start-up
        // less on the critical path).
        let (workspace, validated) = tokio::join!(
            self.step(
                terraform,
                Step::Workspace,
                argv::workspace_select(&self.run.config.environment),
            ),
            self.step(terraform, Step::Validate, argv::validate()),
        );
        workspace?;
        validated?;
        Ok(())
    }

    /// Saves the plan to `plan_file`, reads it back and reports it (log, step outputs, handoff);
    /// returns its summary and whether it has changes.
    async fn plan(
        &mut self,
        terraform: &Terraform,
        plan_file: &Path,
        destroy: bool,
        handoff: &mut Handoff,
    ) -> Result<(PlanSummary, bool), Error> {
        let infra = &self.run.config.infra;
        let planned = self
            .step(terraform, Step::Plan, argv::plan(infra, plan_file, destroy))
            .await?;
        let has_changes = planned.code == Some(2);

        let shown = self
            .step(terraform, Step::Show, argv::show(plan_file))
            .await?;
        let plan = Plan::parse(&shown.stdout).map_err(|err| Error::StepFailed {
            step: Step::Show,
            message: err.to_string(),
        })?;
        if plan.errored || !plan.applyable && has_changes {
            return Err(Error::StepFailed {
                step: Step::Plan,
                message:
                    "the saved plan is marked errored or not applyable; see the diagnostics above"
                        .into(),
            });
        }
        let summary = PlanSummary::from_plan(&plan);
        self.report_plan(&summary);
        handoff.plan = Some(summary.clone());
        Ok((summary, has_changes))
    }

    /// Applies the saved plan; from its start the infrastructure counts as changed.
    async fn apply(&mut self, terraform: &Terraform, plan_file: &Path) -> Result<(), Error> {
        self.applied = true;
        let applied = self
            .step(
                terraform,
                Step::Apply,
                argv::apply(&self.run.config.infra, plan_file),
            )
            .await?;
        self.notes.push(format!(
            "Terraform apply finished in {}.",
            human_duration(applied.elapsed)
        ));
        Ok(())
    }

    /// Runs one step: streams its lines (diagnostics become annotations, apply events become
    /// progress lines), then maps its exit into success or the step's error.
    async fn step(
        &self,
        terraform: &Terraform,
        step: Step,
        args: Vec<String>,
    ) -> Result<Finished, Error> {
        self.run
            .runner
            .info(&format!("$ {}", argv::display(self.tool, &args)));
        if self.run.cancel.is_cancelled() {
            return Err(Error::Cancelled {
                step,
                what: "the run was cancelled before it started; Terraform was not run".into(),
            });
        }
        let (finished, report) = self.stream(terraform, step, &args).await?;
        self.run.runner.debug(&format!(
            "terraform {step}: exit {:?} in {}",
            finished.code,
            human_duration(finished.elapsed)
        ));
        self.verdict(step, finished, report)
    }

    /// Runs Terraform, annotating its diagnostics and logging progress as its lines arrive;
    /// returns how it ended and what it reported.
    async fn stream(
        &self,
        terraform: &Terraform,
        step: Step,
        args: &[String],
    ) -> Result<(Finished, StepReport), Error> {
        let mut report = StepReport::default();
        // Generic sentences are annotated only if nothing more specific came.
        let mut generic: Vec<Diagnostic> = Vec::new();
        let finished = {
            let mut on_line = |line: &str| {
                let Some(event) = ui::parse_line(line) else {
                    return;
                };
                match &event {
                    UiEvent::Diagnostic(diagnostic) if diagnostic.is_generic_summary() => {
                        generic.push(diagnostic.clone());
                    }
                    UiEvent::Diagnostic(diagnostic) => {
                        self.annotate(diagnostic);
                        report.diagnostics.push(diagnostic.clone());
                    }
                    UiEvent::ApplyComplete { address, .. } => report.changed.push(address.clone()),
                    UiEvent::ApplyErrored { address, .. } => report.failed.push(address.clone()),
                    _ => {}
                }
                if let Some(progress) = ui::progress_line(&event) {
                    self.run.runner.info(&progress);
                }
            };
            terraform
                .run(args, self.run.cancel, &mut on_line)
                .await
                .map_err(|source| Error::Run { step, source })?
        };
        if !report.diagnostics.iter().any(Diagnostic::is_error) {
            for diagnostic in generic {
                self.annotate(&diagnostic);
                report.diagnostics.push(diagnostic);
            }
        }
        if step == Step::Validate {
            // validate -json prints one document, not lines.
            if let Ok(diagnostics) = ui::parse_validate(&finished.stdout) {
                for diagnostic in &diagnostics {
                    self.annotate(diagnostic);
                }
                report.diagnostics.extend(diagnostics);
            }
        }
        Ok((finished, report))
    }

    /// Shows one diagnostic as an annotation on the file and line it points at.
    fn annotate(&self, diagnostic: &Diagnostic) {
        let level = if diagnostic.is_error() {
            Level::Error
        } else {
            Level::Warning
        };
        let location = diagnostic.location(&self.directory, &self.run.config.workspace);
        let annotation = Annotation {
            title: Some(diagnostic.title()),
            file: location.as_ref().map(|l| l.file.clone()),
            line: location.as_ref().map(|l| l.line),
            col: location.as_ref().map(|l| l.col),
            end_line: location.as_ref().and_then(|l| l.end_line),
            end_column: location.as_ref().and_then(|l| l.end_column),
        };
        self.run
            .runner
            .annotate(level, &annotation, &diagnostic.message());
    }

    /// Maps how a step ended into its result: cancelled, succeeded, locked, part-applied or
    /// failed.
    fn verdict(
        &self,
        step: Step,
        finished: Finished,
        report: StepReport,
    ) -> Result<Finished, Error> {
        if finished.interrupted {
            return Err(self.cancelled(step, &finished, &report));
        }
        let ok = match step {
            Step::Plan => matches!(finished.code, Some(0) | Some(2)),
            _ => finished.succeeded(),
        };
        if ok {
            return Ok(finished);
        }
        if let Some(lock) = report.diagnostics.iter().find_map(Diagnostic::lock_info) {
            return Err(self.locked(step, lock));
        }
        let message = failure_message(&report.diagnostics, &finished);
        if step == Step::Apply {
            let mut changed = report.changed;
            changed.retain(|address| !report.failed.contains(address));
            return Err(Error::PartialApply {
                changed,
                failed: report.failed,
                message,
            });
        }
        Err(Error::StepFailed { step, message })
    }

    fn locked(&self, step: Step, lock: LockInfo) -> Error {
        Error::StateLocked {
            tool: self.tool,
            step,
            timeout: argv::duration_arg(self.run.config.infra.lock_timeout),
            holder: format!("the lock is {lock}"),
            lock_id: lock.id,
        }
    }

    fn cancelled(&self, step: Step, finished: &Finished, report: &StepReport) -> Error {
        let mut what = if finished.killed {
            format!(
                "Terraform was interrupted (SIGINT) but did not exit within {}, so it was killed; the state lock may still be held: check with the backend and, if so, run `{} force-unlock <ID>`",
                human_duration(terraform::INTERRUPT_GRACE),
                self.tool
            )
        } else {
            format!(
                "Terraform was interrupted (SIGINT) and exited after {} (exit {}), releasing the state lock",
                human_duration(finished.elapsed),
                finished
                    .code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "by signal".into())
            )
        };
        if step == Step::Apply {
            what.push_str(&format!(
                "; {}; {}",
                listed("changed", &report.changed),
                listed("failed", &report.failed)
            ));
        }
        Error::Cancelled { step, what }
    }

    fn report_plan(&mut self, summary: &PlanSummary) {
        let runner = self.run.runner;
        runner.info(&format!("plan: {}", summary.counts.sentence()));
        for (action, addresses) in &summary.addresses {
            for address in addresses {
                runner.info(&format!("  {} {address}", action.as_str()));
            }
        }
        runner.info(&format!("plan fingerprint: {}", summary.fingerprint()));
        self.outputs
            .insert("plan-fingerprint".into(), summary.fingerprint().to_string());
        self.outputs
            .insert("plan-changes".into(), summary.counts_json());
    }

    async fn read_outputs(
        &mut self,
        terraform: &Terraform,
        handoff: &mut Handoff,
    ) -> Result<(), Error> {
        let finished = self.step(terraform, Step::Output, argv::output()).await?;
        let entries: BTreeMap<String, OutputEntry> = serde_json::from_str(&finished.stdout)
            .map_err(|err| Error::StepFailed {
                step: Step::Output,
                message: format!(
                    "`terraform output -json` printed something gantry cannot read: {err}"
                ),
            })?;
        // Mask first: nothing below may print a sensitive value before the runner knows it.
        for entry in entries.values().filter(|e| e.sensitive) {
            for_each_string(&entry.value, &mut |text| self.run.runner.add_mask(text));
        }
        let mut public = BTreeMap::new();
        for (name, entry) in entries {
            if entry.sensitive {
                handoff.sensitive_outputs.insert(name, entry.value);
            } else {
                self.outputs
                    .insert(format!("{OUTPUT_PREFIX}{name}"), output_text(&entry.value));
                public.insert(name, entry.value);
            }
        }
        let sensitive: Vec<&str> = handoff
            .sensitive_outputs
            .keys()
            .map(String::as_str)
            .collect();
        self.run.runner.info(&format!(
            "outputs: {} as step outputs {OUTPUT_PREFIX}<name>{}",
            public.len(),
            if sensitive.is_empty() {
                String::new()
            } else {
                format!(
                    "; sensitive, masked and kept internal: {}",
                    sensitive.join(", ")
                )
            }
        ));
        handoff.terraform_outputs.extend(public);
        Ok(())
    }
}

fn for_each_string(value: &Value, visit: &mut dyn FnMut(&str)) {
    match value {
        Value::String(text) => visit(text),
        Value::Array(items) => items.iter().for_each(|item| for_each_string(item, visit)),
        Value::Object(fields) => fields
            .values()
            .for_each(|item| for_each_string(item, visit)),
        _ => {}
    }
}

/// The errors Terraform reported, or the end of its stderr when it reported none as JSON.
fn failure_message(diagnostics: &[Diagnostic], finished: &Finished) -> String {
    let errors: Vec<String> = diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| match &d.range {
            Some(range) => format!("{} ({}:{})", d.summary, range.filename, range.start.line),
            None => d.summary.clone(),
        })
        .collect();
    if !errors.is_empty() {
        return errors.join("; ");
    }
    let stderr: Vec<&str> = finished
        .stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = stderr[stderr.len().saturating_sub(8)..].join(" ");
    if tail.is_empty() {
        format!("exit code {:?} and no error message", finished.code)
    } else {
        tail
    }
}

fn partial_apply_markdown(changed: &[String], failed: &[String]) -> String {
    let list = |items: &[String]| -> String {
        if items.is_empty() {
            "none".to_string()
        } else {
            items
                .iter()
                .map(|a| escape_markdown(a))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    format!(
        "**Partial apply:** changed: {}; failed: {}.",
        list(changed),
        list(failed)
    )
}
