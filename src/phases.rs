//! The real phases behind the pipeline frame: each wires its adapters (Terraform, Docker and ECR, Kubernetes) to the pure logic.

use crate::pipeline::{Handoff, PhaseResult, Phases, RunContext};

/// The phases gantry runs for real.
#[derive(Debug, Default)]
pub struct GantryPhases;

impl Phases for GantryPhases {
    async fn infra(&self, run: &RunContext<'_>, handoff: &mut Handoff) -> PhaseResult {
        crate::infra::run(run, handoff).await
    }

    async fn build(&self, run: &RunContext<'_>, handoff: &mut Handoff) -> PhaseResult {
        crate::build_phase::run(run, handoff).await
    }

    async fn deploy(&self, run: &RunContext<'_>, handoff: &mut Handoff) -> PhaseResult {
        crate::deploy_phase::run(run, handoff).await
    }
}
