//! Why a run failed: every `failure-reason` the action outputs, as one enum mapped to its string in one place.
//!
//! Design note: workflows branch on these strings (`if: steps.gantry.outputs.failure-reason ==
//! 'rollout-timeout'`), so they are an interface: a variant's string never changes, and the
//! README's list of them is checked against [`FailureReason::ALL`] by a test.

use std::fmt;

/// The machine-readable reason of a failed run (the `failure-reason` output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureReason {
    /// An input, path or the runner's context was refused before anything ran.
    InvalidInput,
    /// SIGTERM or SIGINT stopped the run.
    Cancelled,
    // infra
    TerraformMissing,
    InitFailed,
    ValidateFailed,
    PlanFailed,
    StateLocked,
    DestroyBlocked,
    /// `terraform apply` failed, or applying a release to the cluster failed.
    ApplyFailed,
    // build
    BuildFailed,
    RepositoryMissing,
    DockerUnreachable,
    SmokeTestFailed,
    RegistryAuthFailed,
    PushFailed,
    // deploy
    InvalidManifests,
    NoCluster,
    ClusterUnreachable,
    ClusterError,
    PreflightFailed,
    Locked,
    LockLost,
    LockInvalid,
    UntrustedRecord,
    RecordFailed,
    RecoveryFailed,
    RolloutFailed,
    RolloutPaused,
    RolloutTimeout,
    /// A chart hook (Job or Pod) failed or did not finish in time.
    HookFailed,
    RollbackFailed,
    NoRelease,
    DryRunRejected,
}

impl FailureReason {
    /// Every reason, in the order the README lists them.
    pub const ALL: [FailureReason; 33] = [
        FailureReason::InvalidInput,
        FailureReason::Cancelled,
        FailureReason::TerraformMissing,
        FailureReason::InitFailed,
        FailureReason::ValidateFailed,
        FailureReason::PlanFailed,
        FailureReason::StateLocked,
        FailureReason::DestroyBlocked,
        FailureReason::ApplyFailed,
        FailureReason::BuildFailed,
        FailureReason::RepositoryMissing,
        FailureReason::DockerUnreachable,
        FailureReason::SmokeTestFailed,
        FailureReason::RegistryAuthFailed,
        FailureReason::PushFailed,
        FailureReason::InvalidManifests,
        FailureReason::NoCluster,
        FailureReason::ClusterUnreachable,
        FailureReason::ClusterError,
        FailureReason::PreflightFailed,
        FailureReason::Locked,
        FailureReason::LockLost,
        FailureReason::LockInvalid,
        FailureReason::UntrustedRecord,
        FailureReason::RecordFailed,
        FailureReason::RecoveryFailed,
        FailureReason::RolloutFailed,
        FailureReason::RolloutPaused,
        FailureReason::RolloutTimeout,
        FailureReason::HookFailed,
        FailureReason::RollbackFailed,
        FailureReason::NoRelease,
        FailureReason::DryRunRejected,
    ];

    /// The `failure-reason` output's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureReason::InvalidInput => "invalid-input",
            FailureReason::Cancelled => "cancelled",
            FailureReason::TerraformMissing => "terraform-missing",
            FailureReason::InitFailed => "init-failed",
            FailureReason::ValidateFailed => "validate-failed",
            FailureReason::PlanFailed => "plan-failed",
            FailureReason::StateLocked => "state-locked",
            FailureReason::DestroyBlocked => "destroy-blocked",
            FailureReason::ApplyFailed => "apply-failed",
            FailureReason::BuildFailed => "build-failed",
            FailureReason::RepositoryMissing => "repository-missing",
            FailureReason::DockerUnreachable => "docker-unreachable",
            FailureReason::SmokeTestFailed => "smoke-test-failed",
            FailureReason::RegistryAuthFailed => "registry-auth-failed",
            FailureReason::PushFailed => "push-failed",
            FailureReason::InvalidManifests => "invalid-manifests",
            FailureReason::NoCluster => "no-cluster",
            FailureReason::ClusterUnreachable => "cluster-unreachable",
            FailureReason::ClusterError => "cluster-error",
            FailureReason::PreflightFailed => "preflight-failed",
            FailureReason::Locked => "locked",
            FailureReason::LockLost => "lock-lost",
            FailureReason::LockInvalid => "lock-invalid",
            FailureReason::UntrustedRecord => "untrusted-record",
            FailureReason::RecordFailed => "record-failed",
            FailureReason::RecoveryFailed => "recovery-failed",
            FailureReason::RolloutFailed => "rollout-failed",
            FailureReason::RolloutPaused => "rollout-paused",
            FailureReason::RolloutTimeout => "rollout-timeout",
            FailureReason::HookFailed => "hook-failed",
            FailureReason::RollbackFailed => "rollback-failed",
            FailureReason::NoRelease => "no-release",
            FailureReason::DryRunRejected => "dry-run-rejected",
        }
    }

    /// The reason spelled `text`, if it is one.
    pub fn parse(text: &str) -> Option<FailureReason> {
        FailureReason::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the output's spelling, as workflows (and tests) read it.
impl PartialEq<str> for FailureReason {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for FailureReason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_spelling_and_parses_back() {
        let mut seen = std::collections::BTreeSet::new();
        for reason in FailureReason::ALL {
            assert!(seen.insert(reason.as_str()), "{reason} spelled twice");
            assert_eq!(FailureReason::parse(reason.as_str()), Some(reason));
            assert!(reason
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'-'));
        }
        assert_eq!(FailureReason::parse("rollout failed"), None);
    }

    #[test]
    fn the_readme_lists_every_reason() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        let row = readme
            .lines()
            .find(|line| line.starts_with("| `failure-reason` |"))
            .expect("the README's outputs table has a failure-reason row");
        for reason in FailureReason::ALL {
            assert!(
                row.contains(&format!("`{reason}`")),
                "README lacks `{reason}`"
            );
        }
    }
}
