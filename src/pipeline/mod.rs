//! What a run is made of, as data: the command decided, each phase's status and result, the facts phases hand on, the run's overall status, and which phases a command skips.
//!
//! Design note: pure. The frame that drives the phases ([`crate::app::frame`]) and the phases
//! themselves produce these values; the report renders them.

pub mod decide;
pub mod facts;
pub mod failure;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{ClusterAccess, Config, Phase};
pub use decide::{decide, Command, Decision};
pub use failure::FailureReason;

/// A phase as the report lists it (the report itself is the last one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PhaseName {
    Infra,
    Build,
    Deploy,
    Report,
}

impl PhaseName {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseName::Infra => "infra",
            PhaseName::Build => "build",
            PhaseName::Deploy => "deploy",
            PhaseName::Report => "report",
        }
    }
}

impl From<Phase> for PhaseName {
    fn from(phase: Phase) -> Self {
        match phase {
            Phase::Infra => PhaseName::Infra,
            Phase::Build => PhaseName::Build,
            Phase::Deploy => PhaseName::Deploy,
        }
    }
}

/// What a phase ended as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhaseStatus {
    Succeeded,
    /// Did not run, with the reason a person reads ("terraform-directory is empty").
    Skipped {
        reason: String,
    },
    /// Failed; `failure_reason` is the machine-readable code of the `failure-reason` output.
    Failed {
        failure_reason: FailureReason,
        message: String,
    },
    /// Failed, and the environment was restored to the last good release.
    RolledBack {
        failure_reason: FailureReason,
        message: String,
    },
}

impl PhaseStatus {
    pub fn label(&self) -> &'static str {
        match self {
            PhaseStatus::Succeeded => "succeeded",
            PhaseStatus::Skipped { .. } => "skipped",
            PhaseStatus::Failed { .. } => "failed",
            PhaseStatus::RolledBack { .. } => "rolled back",
        }
    }

    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            PhaseStatus::Failed { .. } | PhaseStatus::RolledBack { .. }
        )
    }

    pub fn failed(failure_reason: FailureReason, message: impl Into<String>) -> Self {
        PhaseStatus::Failed {
            failure_reason,
            message: message.into(),
        }
    }

    pub fn skipped(reason: impl Into<String>) -> Self {
        PhaseStatus::Skipped {
            reason: reason.into(),
        }
    }
}

/// The result a phase hands back to the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseResult {
    pub status: PhaseStatus,
    /// Step outputs this phase contributes (e.g. `tf-cluster_name`).
    pub outputs: BTreeMap<String, String>,
    /// Lines for the job summary, in Markdown.
    pub notes: Vec<String>,
    /// Whether the phase changed the environment (started a Terraform apply, applied objects),
    /// even if it then failed: the report must not call such a run "unchanged".
    pub changed: bool,
}

impl PhaseResult {
    pub fn new(status: PhaseStatus) -> Self {
        PhaseResult {
            status,
            outputs: BTreeMap::new(),
            notes: Vec::new(),
            changed: false,
        }
    }
}

/// One phase as it ended, with its timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseOutcome {
    pub name: PhaseName,
    pub result: PhaseResult,
    pub duration: Duration,
}

/// What the phases pass on to the ones after them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handoff {
    /// The tool and version the infra phase ran (`Terraform 1.11.4`, `OpenTofu 1.10.10`).
    pub terraform_cli: Option<String>,
    /// Non-sensitive Terraform outputs as JSON values, by output name.
    pub terraform_outputs: BTreeMap<String, serde_json::Value>,
    /// Sensitive Terraform outputs: masked, usable in placeholders, never reported.
    pub sensitive_outputs: BTreeMap<String, serde_json::Value>,
    /// Images the build phase produced or reused, by image name: `repository@digest`.
    pub images: BTreeMap<String, String>,
    pub built_images: Vec<crate::image::BuiltImage>,
    pub plan: Option<crate::plan::PlanSummary>,
    /// What the deploy phase did (release, applied, rollout, rollback, dry run).
    pub deploy: Option<facts::DeployFacts>,
}

/// The overall result of a run, as the `status` output states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Deployed,
    /// A deploy without a cluster (a local run): rendered and checked, nothing applied.
    Rendered,
    Planned,
    Destroyed,
    Listed,
    /// `unlock`: the environment lock was broken (or was free).
    Unlocked,
    Failed,
    RolledBack,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Deployed => "deployed",
            RunStatus::Rendered => "rendered",
            RunStatus::Planned => "planned",
            RunStatus::Destroyed => "destroyed",
            RunStatus::Listed => "listed",
            RunStatus::Unlocked => "unlocked",
            RunStatus::Failed => "failed",
            RunStatus::RolledBack => "rolled-back",
        }
    }

    pub fn is_success(self) -> bool {
        !matches!(self, RunStatus::Failed | RunStatus::RolledBack)
    }
}

/// The phases of a run as they ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub phases: Vec<PhaseOutcome>,
    pub handoff: Handoff,
    pub duration: Duration,
}

impl RunOutcome {
    /// The first failing phase, which decides the run's failure reason.
    pub fn first_failure(&self) -> Option<&PhaseOutcome> {
        self.phases.iter().find(|p| p.result.status.is_failure())
    }

    pub fn status(&self, command: Command) -> RunStatus {
        match self.first_failure().map(|p| &p.result.status) {
            Some(PhaseStatus::RolledBack { .. }) => RunStatus::RolledBack,
            Some(_) => RunStatus::Failed,
            None => match command {
                Command::Deploy if self.deploy_rendered_only() => RunStatus::Rendered,
                Command::Deploy | Command::Rollback => RunStatus::Deployed,
                Command::Plan => RunStatus::Planned,
                Command::Destroy => RunStatus::Destroyed,
                Command::History => RunStatus::Listed,
                Command::Unlock => RunStatus::Unlocked,
            },
        }
    }

    /// Whether the deploy phase only rendered the release because no cluster is configured.
    fn deploy_rendered_only(&self) -> bool {
        self.phases.iter().any(|p| {
            p.name == PhaseName::Deploy
                && matches!(&p.result.status, PhaseStatus::Skipped { reason } if reason.starts_with(NO_CLUSTER))
        })
    }

    pub fn failure_reason(&self) -> Option<FailureReason> {
        match &self.first_failure()?.result.status {
            PhaseStatus::Failed { failure_reason, .. }
            | PhaseStatus::RolledBack { failure_reason, .. } => Some(*failure_reason),
            _ => None,
        }
    }

    /// Whether any phase changed the environment.
    pub fn changed(&self) -> bool {
        self.phases.iter().any(|p| p.result.changed)
    }

    pub fn rolled_back(&self) -> bool {
        self.phases
            .iter()
            .any(|p| matches!(p.result.status, PhaseStatus::RolledBack { .. }))
    }
}

/// How the deploy phase's skip reason starts when no cluster is configured (a local run).
pub const NO_CLUSTER: &str = "no cluster configured";

/// Why a phase does not run for this command and configuration, or `None` if it runs.
pub fn skip_reason(phase: Phase, config: &Config, command: Command) -> Option<String> {
    // Commands that act on recorded releases change no infrastructure; the infra phase still
    // reads the Terraform outputs (no plan, no apply) when the cluster is named by one.
    let needs_outputs = matches!(&config.deploy.cluster, ClusterAccess::Eks { cluster_name } if cluster_name.contains("${tf."));
    let by_command = match (command, phase) {
        (Command::Rollback | Command::History | Command::Unlock, Phase::Infra)
            if needs_outputs && config.infra.directory.is_some() =>
        {
            None
        }
        (Command::Rollback, Phase::Infra | Phase::Build) => {
            Some("a rollback restores a recorded release; Terraform and image builds do not run")
        }
        (Command::History, Phase::Infra | Phase::Build) => {
            Some("history only lists the environment's releases")
        }
        (Command::Unlock, Phase::Infra | Phase::Build) => {
            Some("unlock only breaks the environment lock")
        }
        (Command::Destroy, Phase::Build | Phase::Deploy) => {
            Some("destroy only runs Terraform destroy")
        }
        _ => None,
    };
    if let Some(reason) = by_command {
        return Some(reason.to_string());
    }
    if !config.phases.contains(&phase) {
        let chosen: Vec<&str> = config.phases.iter().map(|p| p.as_str()).collect();
        return Some(format!("not in `phases` ({})", chosen.join(",")));
    }
    match phase {
        Phase::Infra if config.infra.directory.is_none() => {
            Some("terraform-directory is empty".to_string())
        }
        Phase::Build if config.build.images.is_empty() => Some("images is empty".to_string()),
        Phase::Deploy
            if config.deploy.manifests.is_empty()
                && config.deploy.charts.is_empty()
                && matches!(command, Command::Deploy | Command::Plan) =>
        {
            Some("manifests and charts are empty".to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(deploy: PhaseStatus) -> RunOutcome {
        let phase = |name, status| PhaseOutcome {
            name,
            result: PhaseResult::new(status),
            duration: Duration::ZERO,
        };
        RunOutcome {
            phases: vec![
                phase(PhaseName::Infra, PhaseStatus::Succeeded),
                phase(PhaseName::Build, PhaseStatus::Succeeded),
                phase(PhaseName::Deploy, deploy),
            ],
            handoff: Handoff::default(),
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn a_deploy_without_a_cluster_is_rendered_not_deployed() {
        let rendered = outcome(PhaseStatus::skipped(format!(
            "{NO_CLUSTER}: rendered 3 objects and applied none"
        )));
        assert_eq!(rendered.status(Command::Deploy), RunStatus::Rendered);
        assert!(rendered.status(Command::Deploy).is_success());
        let skipped = outcome(PhaseStatus::skipped("manifests is empty"));
        assert_eq!(skipped.status(Command::Deploy), RunStatus::Deployed);
        let applied = outcome(PhaseStatus::Succeeded);
        assert_eq!(applied.status(Command::Deploy), RunStatus::Deployed);
        assert_eq!(applied.status(Command::Plan), RunStatus::Planned);
    }
}
