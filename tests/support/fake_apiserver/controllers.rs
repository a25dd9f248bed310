//! Simulated kube-controller-manager, scheduler and kubelet, writing through the store like the real ones.

use super::Shared;
use serde_json::Value;
use std::sync::Arc;

/// How the simulated kubelet runs a workload's pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behavior {
    /// Containers start and become Ready; Job pods exit 0.
    Healthy,
    /// ErrImagePull, then ImagePullBackOff, alternating.
    ImagePullError,
    /// The container exits 1 repeatedly: CrashLoopBackOff with a growing restartCount.
    CrashLoop,
    /// Running but the readiness probe never passes.
    NeverReady,
    /// The scheduler finds no node.
    Unschedulable,
    /// Job pods exit 1 (the Job fails once backoffLimit is exceeded).
    JobFails,
    /// Nothing touches the pods: the test drives status itself.
    Manual,
}

#[derive(Default)]
pub struct Memory {}

pub async fn run(_shared: Arc<Shared>) {}

pub fn default_logs(_status: &Value, _previous: bool) -> String {
    String::new()
}
