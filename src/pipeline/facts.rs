//! The facts the deploy phase hands to the report: which release, what was applied, pruned or would change, how each workload rolled out, and what a rollback restored.
//!
//! Design note: these are plain data. The deploy phase fills them in as it goes (so a failure
//! mid-way still reports what happened up to it) and the report renders them; neither side
//! needs the other's code.

use serde::Serialize;

/// What the deploy phase did, for the summary, the pull-request comment and the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeployFacts {
    /// The release number this run created (deploy) or restored (rollback command).
    pub release: Option<u64>,
    /// The last good release before this run.
    pub previous_release: Option<u64>,
    /// Objects sent with server-side apply, in apply order.
    pub applied: Vec<ObjectChange>,
    /// Objects deleted because the previous release had them and this one does not (only
    /// once this release was proven healthy).
    pub pruned: Vec<String>,
    /// Objects the previous release had and this one has not, kept because they hold data or
    /// other objects (PersistentVolumeClaims, Namespaces, CRDs, PersistentVolumes) and did not
    /// opt in to deletion.
    pub kept: Vec<String>,
    /// Objects deleted and created again before the release was healthy, because they were
    /// annotated for replacement and a field of theirs cannot change.
    pub replaced: Vec<String>,
    /// Each tracked workload as its rollout ended.
    pub workloads: Vec<WorkloadFacts>,
    /// Why the rollout failed, with the evidence a person needs.
    pub failure: Option<RolloutFailure>,
    /// What the automatic (or commanded) rollback did.
    pub rollback: Option<RollbackFacts>,
    /// `plan`: what a server-side dry run says the release would change.
    pub dry_run: Option<Vec<PlannedChange>>,
    /// Pre-flight findings: the problems that stopped the deploy, or notes (unverified
    /// images, objects not dry-run checked) when it went ahead.
    pub preflight: Vec<String>,
    /// Releases found interrupted (a killed run) and recorded as failed by this run.
    pub interrupted: Vec<u64>,
    /// `history`: the environment's releases, newest first.
    pub history: Vec<ReleaseSummary>,
    /// `history` and `unlock`: when the environment lock was broken, by whom, and whose it was
    /// (newest first), one sentence each.
    pub lock_events: Vec<String>,
    /// A rerun of the deployed release that found the cluster holding it: what was checked.
    pub verified: Option<String>,
    /// The requests sent to the API server: how many, how many were throttled (429) or lost
    /// their connection and were retried, over which protocol.
    pub api_traffic: Option<String>,
    /// The Helm charts rendered into the release, each with its objects.
    pub charts: Vec<ChartFacts>,
    /// The release as applied (or restored): multi-document YAML with images pinned by
    /// digest, for the audit trail. Never holds Secret data (Secrets are listed, not copied).
    pub rendered_manifests: Option<String>,
}

/// A chart rendered into the release: which chart and version, and what it made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChartFacts {
    /// The chart release's name (`name` of the `charts` entry).
    pub name: String,
    /// The chart's name (Chart.yaml), or its reference.
    pub chart: String,
    pub version: Option<String>,
    pub namespace: String,
    /// Its objects, as [`ObjectChange::object`] names them.
    pub objects: Vec<String>,
    /// Its hooks (Jobs and Pods run before or after the release), same naming.
    pub hooks: Vec<String>,
    /// Test hooks left out.
    pub ignored: usize,
}

/// One object and what applying it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectChange {
    /// `Kind/name` or `Kind/namespace/name`, as [`crate::manifests::ObjectKey`] prints it.
    pub object: String,
    pub action: ChangeAction,
}

/// What server-side apply did (or would do) to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeAction {
    Created,
    Configured,
    /// Deleted and created again: an immutable field changed (annotated `gantry.dev/replace`).
    Replaced,
    Unchanged,
}

impl ChangeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeAction::Created => "created",
            ChangeAction::Configured => "configured",
            ChangeAction::Replaced => "replaced",
            ChangeAction::Unchanged => "unchanged",
        }
    }
}

/// A workload's rollout as it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkloadFacts {
    pub object: String,
    /// `complete`, `failed`, `progressing` (still progressing when the wait stopped) or `skipped`.
    pub status: String,
    /// Ready of desired replicas, e.g. `2/3`; `None` for kinds without replicas (Jobs).
    pub replicas: Option<String>,
    /// The verdict's message, kubectl style ("2 of 3 updated replicas are available").
    pub message: String,
}

/// The evidence of a failed rollout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RolloutFailure {
    pub object: String,
    pub pod: Option<String>,
    pub container: Option<String>,
    /// The Kubernetes reason (`ImagePullBackOff`, `CrashLoopBackOff`, `ProgressDeadlineExceeded`...).
    pub reason: String,
    pub message: String,
    /// The last lines of the failing container's log (previous instance for a crash loop).
    pub log_tail: Vec<String>,
    /// Recent events of the object and its pods, oldest first, one line each.
    pub events: Vec<String>,
}

/// What a rollback did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RollbackFacts {
    /// The release that failed (or that the rollback command replaced).
    pub from_release: Option<u64>,
    /// The release restored; `None` when a first release was removed entirely.
    pub to_release: Option<u64>,
    /// Objects re-applied from the restored release.
    pub restored: Vec<String>,
    /// Objects the failed release had created, deleted.
    pub deleted: Vec<String>,
    /// Objects the failed release had created and the rollback kept (they hold data or other
    /// objects; see [`DeployFacts::kept`]).
    #[serde(default)]
    pub kept: Vec<String>,
    /// Pods of the failed revision deleted so their controller recreates them from the restored
    /// template (a StatefulSet does not replace a pod that is not Ready by itself).
    #[serde(default)]
    pub pods_deleted: Vec<String>,
    /// Fields the restore took back from other field managers: `object: fields (manager)`.
    #[serde(default)]
    pub taken_over: Vec<String>,
    /// Fields left out of the restore because another controller manages them (an
    /// autoscaler's `spec.replicas`): `object: field (manager)`.
    #[serde(default)]
    pub left_to_controllers: Vec<String>,
    /// Objects of the failed release that existed before its run (adopted, or never reached
    /// by the apply): neither restored nor deleted, left as they are.
    #[serde(default)]
    pub left_in_place: Vec<String>,
    /// `None` when the rollback succeeded and the restored release is healthy.
    pub error: Option<String>,
}

/// One object in a server-side dry run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedChange {
    pub object: String,
    pub action: PlannedAction,
    /// For `change`: the changed field paths (`spec.template.spec.containers[name=web].image`).
    pub fields: Vec<String>,
}

/// What a dry run says would happen to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlannedAction {
    Create,
    Change,
    Prune,
    /// No longer in the release, but kept: it holds data or other objects.
    Keep,
    /// A field that cannot change differs: deleted and created again (annotated to allow it).
    Replace,
    Unchanged,
}

impl PlannedAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PlannedAction::Create => "create",
            PlannedAction::Change => "change",
            PlannedAction::Prune => "prune",
            PlannedAction::Keep => "keep",
            PlannedAction::Replace => "replace",
            PlannedAction::Unchanged => "unchanged",
        }
    }
}

/// One line of the release history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseSummary {
    pub release: u64,
    /// `pending`, `deployed`, `failed`, `rolled-back` or `superseded`.
    pub status: String,
    pub commit: Option<String>,
    /// RFC 3339.
    pub created: String,
    pub description: String,
}
