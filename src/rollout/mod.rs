//! Pure rollout decisions: per-kind verdicts, which pods belong to the new revision, pod fail-fast, and the rollup.
//!
//! Everything here is a function of Kubernetes objects (and, for pods, a caller-supplied `now`):
//! no client, no clock, no I/O. The deploy orchestrator fetches the objects, calls
//! [`workload_decision`] with the verdict for the workload and the problems of its *new-revision*
//! pods, and acts on the [`Decision`].
//!
//! The per-kind verdicts follow kubectl's rollout status viewers
//! (`kubernetes/kubectl` `pkg/polymorphichelpers/rollout_status.go`) check for check and message
//! for message, so a user who runs `kubectl rollout status` sees the same story. Where gantry must
//! differ (kubectl errors on `OnDelete`; kubectl has no Job viewer) the item's doc says so.

mod ownership;
mod pods;
mod workloads;

pub use ownership::{
    daemonset_new_pods, deployment_new_pods, deployment_new_replica_set, job_pods,
    statefulset_new_pods, statefulset_stuck_pods,
};
pub use pods::{last_exit, pod_problem, PodProblem, Tolerances};
pub use workloads::{
    daemonset_ready, daemonset_verdict, deployment_ready, deployment_verdict,
    deployment_verdict_among, job_ready, job_verdict, statefulset_ready, statefulset_verdict,
    Workload,
};

/// The reason of a paused Deployment whose new template is not rolled out: the run fails with
/// `failure-reason: rollout-paused`, never reports it rolled out.
pub const DEPLOYMENT_PAUSED: &str = "DeploymentPaused";

/// What the workload's own status says about its rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not finished yet; the message says what it is waiting for (kubectl's wording).
    Progressing(String),
    /// Finished; the message says how (kubectl's wording, or why gantry does not wait).
    Complete(String),
    /// The controller itself declared failure (e.g. `ProgressDeadlineExceeded`,
    /// `BackoffLimitExceeded`). `reason` is Kubernetes' machine-readable reason.
    Failed { reason: String, message: String },
}

impl Verdict {
    /// The human message, whatever the variant.
    pub fn message(&self) -> &str {
        match self {
            Verdict::Progressing(message) | Verdict::Complete(message) => message,
            Verdict::Failed { message, .. } => message,
        }
    }
}

/// What the orchestrator should do about one workload right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Keep watching; the message is the current progress.
    Wait(String),
    /// The rollout finished.
    Done(String),
    /// Stop waiting and treat the rollout as failed. `pod`/`container` name the culprit when the
    /// failure came from a pod rather than from the workload's status.
    Fail {
        reason: String,
        message: String,
        pod: Option<String>,
        container: Option<String>,
    },
}

/// Rolls the workload verdict and the problems of its new-revision pods into one decision.
///
/// Precedence, most decisive first:
/// 1. a [`Verdict::Failed`] fails (the controller gave up);
/// 2. a [`Verdict::Complete`] is done, even if some new pod had a problem on the way: the
///    controller counts every new replica available, which is kubectl's definition of success
///    (a Job that retried a pod and then succeeded is a success);
/// 3. otherwise the first pod problem fails fast (the others are counted in the message);
/// 4. otherwise wait.
///
/// Pass only problems of pods from the *new* revision (see [`deployment_new_pods`] and friends):
/// old pods being replaced must never fail a rollout.
pub fn workload_decision(verdict: &Verdict, new_pod_problems: &[PodProblem]) -> Decision {
    match verdict {
        Verdict::Failed { reason, message } => Decision::Fail {
            reason: reason.clone(),
            message: message.clone(),
            pod: None,
            container: None,
        },
        Verdict::Complete(message) => Decision::Done(message.clone()),
        Verdict::Progressing(progress) => match new_pod_problems.split_first() {
            Some((first, rest)) => {
                let mut message = first.message.clone();
                if !rest.is_empty() {
                    message.push_str(&format!(
                        " (and {} more new pod problem{})",
                        rest.len(),
                        if rest.len() == 1 { "" } else { "s" }
                    ));
                }
                Decision::Fail {
                    reason: first.reason.clone(),
                    message,
                    pod: Some(first.pod.clone()),
                    container: first.container.clone(),
                }
            }
            None => Decision::Wait(progress.clone()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(pod: &str) -> PodProblem {
        PodProblem {
            pod: pod.to_string(),
            container: Some("main".to_string()),
            reason: "CrashLoopBackOff".to_string(),
            message: format!("container \"main\" of pod \"{pod}\" keeps crashing"),
        }
    }

    #[test]
    fn controller_failure_wins_over_everything() {
        let verdict = Verdict::Failed {
            reason: "ProgressDeadlineExceeded".into(),
            message: "deadline".into(),
        };
        let decision = workload_decision(&verdict, &[problem("a")]);
        assert_eq!(
            decision,
            Decision::Fail {
                reason: "ProgressDeadlineExceeded".into(),
                message: "deadline".into(),
                pod: None,
                container: None
            }
        );
    }

    #[test]
    fn complete_wins_over_pod_problems() {
        let decision = workload_decision(&Verdict::Complete("done".into()), &[problem("a")]);
        assert_eq!(decision, Decision::Done("done".into()));
    }

    #[test]
    fn progressing_with_problems_fails_on_the_first_and_counts_the_rest() {
        let decision = workload_decision(
            &Verdict::Progressing("waiting".into()),
            &[problem("a"), problem("b"), problem("c")],
        );
        match decision {
            Decision::Fail {
                reason,
                message,
                pod,
                container,
            } => {
                assert_eq!(reason, "CrashLoopBackOff");
                assert_eq!(pod.as_deref(), Some("a"));
                assert_eq!(container.as_deref(), Some("main"));
                assert!(
                    message.ends_with("(and 2 more new pod problems)"),
                    "{message}"
                );
            }
            other => panic!("expected Fail, got {other:?}"),
        }
    }

    #[test]
    fn progressing_without_problems_waits() {
        let decision = workload_decision(&Verdict::Progressing("1 of 2".into()), &[]);
        assert_eq!(decision, Decision::Wait("1 of 2".into()));
    }
}
