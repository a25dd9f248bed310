//! Pod fail-fast: which pod states mean a rollout will not succeed, with tolerances so a transient problem never fails a deploy.
//!
//! Time is never read here: the caller passes `now`. Durations are measured against the latest
//! moment recorded in the pod at which the problem could have started (see [`pod_problem`]), so
//! a tolerance is never cut short by a timestamp that predates the problem.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Waiting reasons of a container whose image cannot be pulled (or, with `imagePullPolicy:
/// Never`, is not on the node).
const PULL_ERRORS: [&str; 3] = ["ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull"];
/// Waiting reason of an image reference that can never be parsed: fatal at once.
const INVALID_IMAGE_NAME: &str = "InvalidImageName";
/// Waiting reasons of a container the kubelet cannot create, e.g. a referenced Secret or
/// ConfigMap (or key) that does not exist yet.
const CREATE_ERRORS: [&str; 2] = ["CreateContainerConfigError", "CreateContainerError"];
const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";

/// How long gantry tolerates each kind of pod problem before failing the rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tolerances {
    /// How long a container may wait on image pull errors, or on container creation errors,
    /// before the rollout fails. Default 60 s.
    pub pull_error: Duration,
    /// A container restarted more often than this fails the rollout. Default 3.
    pub restart_threshold: u32,
    /// How long a pod may stay unschedulable before the rollout fails (cluster autoscalers need
    /// time to add a node). Default 120 s.
    pub unschedulable: Duration,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances {
            pull_error: Duration::from_secs(60),
            restart_threshold: 3,
            unschedulable: Duration::from_secs(120),
        }
    }
}

/// One pod problem that should fail the rollout now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodProblem {
    /// The pod's name.
    pub pod: String,
    /// The container at fault, when the problem is a container's.
    pub container: Option<String>,
    /// Kubernetes' reason (`ImagePullBackOff`, `CrashLoopBackOff`, `Unschedulable`, `Evicted`...),
    /// or `RestartThresholdExceeded` for a container that keeps restarting without back-off.
    pub reason: String,
    /// A sentence naming the pod and container and quoting Kubernetes' own message.
    pub message: String,
}

/// Says whether `pod` is in a state that should fail its rollout now, given `now`.
///
/// A pod that is being deleted (`deletionTimestamp` set) is never a problem. Otherwise checked
/// in this order, the first match wins:
/// 1. **Pod phase `Failed`** (e.g. `Evicted`), unless a Job owns the pod: a Job retries failed
///    pods up to its `backoffLimit` and declares failure itself.
/// 2. **Containers, init containers first** (an init container blocks every other container):
///    - `InvalidImageName`: fatal at once, the reference can never be pulled.
///    - `ErrImagePull`, `ImagePullBackOff`, `ErrImageNeverPull`: fatal once the container has
///      waited longer than [`Tolerances::pull_error`]. An image "not found" message is *not*
///      treated as fatal at once: its wording is the container runtime's free text (containerd,
///      CRI-O and Docker differ), and a registry can briefly report a just-pushed tag or a
///      replicated repository as missing; the tolerance absorbs both at the cost of a short wait.
///    - `CreateContainerConfigError`, `CreateContainerError`: the same `pull_error` tolerance,
///      because the usual cause is a Secret or ConfigMap applied in the same deploy that the
///      kubelet has not seen yet, which resolves by itself.
///    - restart count above [`Tolerances::restart_threshold`] (in `CrashLoopBackOff` or not):
///      fatal, with the last termination's exit code and reason. A `CrashLoopBackOff` at or
///      below the threshold is tolerated: an app that starts before its database crashes once
///      or twice and then runs.
/// 3. **`PodScheduled=False` with reason `Unschedulable`** for longer than
///    [`Tolerances::unschedulable`], measured from the condition's `lastTransitionTime`.
///
/// "Waited longer than" is measured from the latest moment the pod records at which the wait
/// could have begun: the pod's creation, its scheduling (`PodScheduled`), for regular
/// containers its initialisation (`Initialized`), the last time its containers became not ready
/// (`ContainersReady=False`), and the container's last termination. The kubelet does not record
/// when a waiting state began, so this is the earliest *provable* start: the tolerance may be
/// exceeded by a little, never cut short. Without any of these timestamps the time-based rules
/// never fire (the workload's own deadline still applies).
pub fn pod_problem(pod: &Pod, now: Timestamp, tolerances: &Tolerances) -> Option<PodProblem> {
    let pod_name = pod
        .metadata
        .name
        .clone()
        .unwrap_or_else(|| "<unnamed>".into());
    // A pod being deleted is on its way out (scaled down, or replaced by a rollback): its
    // phase turns `Failed` when its container exits non-zero on SIGTERM, which says nothing
    // about the release.
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() == Some("Failed") && !owned_by_job(pod) {
        let reason = status.reason.clone().unwrap_or_else(|| "Failed".into());
        let detail = status.message.clone().unwrap_or_else(|| reason.clone());
        return Some(PodProblem {
            message: format!("pod {pod_name:?} failed ({reason}): {detail:?}"),
            pod: pod_name,
            container: None,
            reason,
        });
    }
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let init_statuses = status
        .init_container_statuses
        .as_deref()
        .unwrap_or_default();
    let regular_statuses = status.container_statuses.as_deref().unwrap_or_default();
    let init_containers = init_statuses.iter().map(|c| (c, true));
    let regular_containers = regular_statuses.iter().map(|c| (c, false));
    for (container, is_init) in init_containers.chain(regular_containers) {
        let waiting_since = waiting_since(pod, conditions, container, is_init);
        if let Some(problem) = container_problem(
            &pod_name,
            container,
            is_init,
            waiting_since,
            now,
            tolerances,
        ) {
            return Some(problem);
        }
    }
    unschedulable_problem(&pod_name, conditions, now, tolerances)
}

fn owned_by_job(pod: &Pod) -> bool {
    pod.metadata
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|owner| owner.kind == "Job" && owner.controller == Some(true))
}

fn condition<'c>(
    conditions: &'c [PodCondition],
    kind: &str,
    status: &str,
) -> Option<&'c PodCondition> {
    conditions
        .iter()
        .find(|c| c.type_ == kind && c.status == status)
}

/// The latest recorded moment at which the container's current wait could have begun.
fn waiting_since(
    pod: &Pod,
    conditions: &[PodCondition],
    container: &ContainerStatus,
    is_init: bool,
) -> Option<Timestamp> {
    let transition = |kind: &str, status: &str| {
        condition(conditions, kind, status)
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0)
    };
    let last_finished = container
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.finished_at.as_ref())
        .map(|t| t.0);
    let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let initialized = if is_init {
        None
    } else {
        transition("Initialized", "True")
    };
    [
        created,
        transition("PodScheduled", "True"),
        initialized,
        transition("ContainersReady", "False"),
        last_finished,
    ]
    .into_iter()
    .flatten()
    .max()
}

/// True when more than `tolerance` has passed between `since` and `now`.
fn exceeded(since: Option<Timestamp>, now: Timestamp, tolerance: Duration) -> bool {
    let Some(since) = since else {
        return false;
    };
    let tolerance = SignedDuration::try_from(tolerance).unwrap_or(SignedDuration::MAX);
    now.duration_since(since) > tolerance
}

fn elapsed_seconds(since: Option<Timestamp>, now: Timestamp) -> i64 {
    since
        .map(|since| now.duration_since(since).as_secs())
        .unwrap_or(0)
}

fn container_problem(
    pod_name: &str,
    container: &ContainerStatus,
    is_init: bool,
    waiting_since: Option<Timestamp>,
    now: Timestamp,
    tolerances: &Tolerances,
) -> Option<PodProblem> {
    let what = format!(
        "{}container {:?} of pod {pod_name:?}",
        if is_init { "init " } else { "" },
        container.name
    );
    let problem = |reason: &str, message: String| PodProblem {
        pod: pod_name.to_string(),
        container: Some(container.name.clone()),
        reason: reason.to_string(),
        message,
    };
    let waiting = container.state.as_ref().and_then(|s| s.waiting.as_ref());
    let waiting_reason = waiting
        .and_then(|w| w.reason.as_deref())
        .unwrap_or_default();
    let kubernetes_says = waiting
        .and_then(|w| w.message.clone())
        .unwrap_or_else(|| waiting_reason.to_string());
    if waiting_reason == INVALID_IMAGE_NAME {
        return Some(problem(
            waiting_reason,
            format!(
                "{what} has an invalid image name {:?}: {kubernetes_says:?}",
                container.image
            ),
        ));
    }
    let pull_error = PULL_ERRORS.contains(&waiting_reason);
    let create_error = CREATE_ERRORS.contains(&waiting_reason);
    if (pull_error || create_error) && exceeded(waiting_since, now, tolerances.pull_error) {
        let doing = if pull_error {
            format!("cannot pull image {:?}", container.image)
        } else {
            "cannot be created".to_string()
        };
        return Some(problem(
            waiting_reason,
            format!(
                "{what} {doing} ({waiting_reason} for at least {}s, more than the {}s allowed): {kubernetes_says:?}",
                elapsed_seconds(waiting_since, now),
                tolerances.pull_error.as_secs()
            ),
        ));
    }
    let (reason, message) = restart_problem(
        &what,
        container,
        waiting_reason,
        &kubernetes_says,
        tolerances,
    )?;
    Some(problem(reason, message))
}

/// The reason and message when a container restarted more often than allowed (`what` names
/// it), with how it last exited and, when crash-looping, what Kubernetes says.
fn restart_problem(
    what: &str,
    container: &ContainerStatus,
    waiting_reason: &str,
    kubernetes_says: &str,
    tolerances: &Tolerances,
) -> Option<(&'static str, String)> {
    let restarts = u32::try_from(container.restart_count).unwrap_or(0);
    if restarts <= tolerances.restart_threshold {
        return None;
    }
    let crash_looping = waiting_reason == CRASH_LOOP_BACK_OFF;
    let reason = if crash_looping {
        CRASH_LOOP_BACK_OFF
    } else {
        "RestartThresholdExceeded"
    };
    let mut message = format!(
        "{what} restarted {restarts} times (more than the {} allowed)",
        tolerances.restart_threshold
    );
    message.push_str(&last_exit(container));
    if crash_looping {
        message.push_str(&format!("; Kubernetes says: {kubernetes_says:?}"));
    }
    Some((reason, message))
}

/// How the container's previous run ended (exit code, reason, message), as a `; ...` clause;
/// empty when it never terminated.
pub fn last_exit(container: &ContainerStatus) -> String {
    let mut text = String::new();
    if let Some(last) = container
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
    {
        text.push_str(&format!("; it last exited with code {}", last.exit_code));
        if let Some(last_reason) = &last.reason {
            text.push_str(&format!(" ({last_reason})"));
        }
        if let Some(last_message) = &last.message {
            text.push_str(&format!(": {last_message:?}"));
        }
    }
    text
}

fn unschedulable_problem(
    pod_name: &str,
    conditions: &[PodCondition],
    now: Timestamp,
    tolerances: &Tolerances,
) -> Option<PodProblem> {
    let unschedulable = condition(conditions, "PodScheduled", "False")
        .filter(|c| c.reason.as_deref() == Some("Unschedulable"))?;
    let since = unschedulable.last_transition_time.as_ref().map(|t| t.0);
    if !exceeded(since, now, tolerances.unschedulable) {
        return None;
    }
    let kubernetes_says = unschedulable
        .message
        .clone()
        .unwrap_or_else(|| "Unschedulable".into());
    Some(PodProblem {
        pod: pod_name.to_string(),
        container: None,
        reason: "Unschedulable".into(),
        message: format!(
            "pod {pod_name:?} could not be scheduled for {}s (more than the {}s allowed): {kubernetes_says:?}",
            elapsed_seconds(since, now),
            tolerances.unschedulable.as_secs()
        ),
    })
}
