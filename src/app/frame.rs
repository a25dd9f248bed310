//! The pipeline frame: phases infra -> build -> deploy in order, each with a status, timing and outputs, stopping at the first failure.
//!
//! Design note: the frame knows nothing of Terraform, Docker or Kubernetes. It talks to the
//! phases through the [`Phases`] trait, so its failure paths are tested with failing fakes, and
//! it decides which phases run for each command ([`crate::pipeline::skip_reason`]) before any
//! of them starts.

use std::future::Future;
use std::time::Instant;

use crate::adapters::runner::Runner;
use crate::cancel::Cancel;
use crate::config::{Config, Phase};
use crate::context::GitHubContext;
use crate::pipeline::{
    skip_reason, Decision, FailureReason, Handoff, PhaseName, PhaseOutcome, PhaseResult,
    PhaseStatus, RunOutcome,
};

/// Everything a phase may read.
pub struct RunContext<'a> {
    pub config: &'a Config,
    pub context: &'a GitHubContext,
    pub decision: &'a Decision,
    pub runner: &'a Runner,
    pub cancel: &'a Cancel,
}

/// The three phases the frame drives. Implemented by the real adapters and by test fakes.
pub trait Phases: Sync {
    fn infra(
        &self,
        run: &RunContext<'_>,
        handoff: &mut Handoff,
    ) -> impl Future<Output = PhaseResult> + Send;
    fn build(
        &self,
        run: &RunContext<'_>,
        handoff: &mut Handoff,
    ) -> impl Future<Output = PhaseResult> + Send;
    fn deploy(
        &self,
        run: &RunContext<'_>,
        handoff: &mut Handoff,
    ) -> impl Future<Output = PhaseResult> + Send;
}

/// Runs the selected phases in order. A failed phase stops the ones after it (they are
/// reported as skipped with the reason); cancellation does the same.
pub async fn run_phases<P: Phases>(phases: &P, run: &RunContext<'_>) -> RunOutcome {
    let started = Instant::now();
    let mut handoff = Handoff::default();
    let mut outcomes: Vec<PhaseOutcome> = Vec::new();
    for phase in Phase::ALL {
        let name = PhaseName::from(phase);
        let phase_started = Instant::now();
        let earlier_failure = outcomes
            .iter()
            .find(|p| p.result.status.is_failure())
            .map(|p| p.name);
        let result = if let Some(failed) = earlier_failure {
            PhaseResult::new(PhaseStatus::skipped(format!(
                "not run: the {} phase failed",
                failed.as_str()
            )))
        } else if let Some(reason) = skip_reason(phase, run.config, run.decision.command) {
            PhaseResult::new(PhaseStatus::skipped(reason))
        } else if run.cancel.is_cancelled() {
            PhaseResult::new(PhaseStatus::failed(
                FailureReason::Cancelled,
                format!(
                    "the run was cancelled before the {} phase started; nothing of it was done",
                    name.as_str()
                ),
            ))
        } else {
            run.runner.group(&format!("gantry {}", name.as_str()));
            let result = match phase {
                Phase::Infra => phases.infra(run, &mut handoff).await,
                Phase::Build => phases.build(run, &mut handoff).await,
                Phase::Deploy => phases.deploy(run, &mut handoff).await,
            };
            run.runner.end_group();
            result
        };
        match &result.status {
            PhaseStatus::Skipped { reason } => run
                .runner
                .info(&format!("{}: skipped ({reason})", name.as_str())),
            PhaseStatus::Failed { message, .. } | PhaseStatus::RolledBack { message, .. } => run
                .runner
                .error(&format!("{} failed: {message}", name.as_str())),
            PhaseStatus::Succeeded => {}
        }
        outcomes.push(PhaseOutcome {
            name,
            result,
            duration: phase_started.elapsed(),
        });
    }
    RunOutcome {
        phases: outcomes,
        handoff,
        duration: started.elapsed(),
    }
}
