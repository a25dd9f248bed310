//! The cluster operations the deploy verbs need, as two small traits: [`Store`] keeps the release records and the environment lock, [`Objects`] checks, applies, tracks and deletes a release's objects. [`Live`] implements both over the real API server.
//!
//! Design note: the verbs ([`super::engine::Engine`]) are written against these traits only, so
//! their failure paths (the lock lost, an apply failing half-way, a rollout failing, the
//! rollback failing too) are unit-tested with implementations that fail on cue, while the
//! tests against the test bed's cluster remain the proof that [`Live`] does what it says.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::apply::{self, Applied, Conflicts};
use super::preflight;
use super::statefulsets;
use super::store::{self, History, LockError, LockTerms, Records, StoreLocation, Unlocked};
use super::track::{self, Tracked};
use crate::adapters::kube::{ApplyOptions, Cluster, KubeError};
use crate::adapters::runner::Runner;
use crate::cancel::Cancel;
use crate::pipeline::facts::RolloutFailure;
use crate::release::{ObjectRef, Release};
use crate::rollout::Tolerances;

/// How a set of objects is applied.
#[derive(Debug, Clone, Copy)]
pub struct Apply<'a> {
    pub options: ApplyOptions,
    pub conflicts: Conflicts,
    pub concurrency: usize,
    /// The step named in crash points and logs (`apply`, `rollback`).
    pub step: &'a str,
}

/// What a rollout is watched with.
pub struct Watch<'a> {
    pub tolerances: &'a Tolerances,
    pub timeout: Duration,
    pub cancel: &'a Cancel,
    pub runner: &'a Runner,
}

/// What the pre-flight checks before the first write.
pub struct PreflightScope<'a> {
    pub force_conflicts: bool,
    /// The namespace gantry creates for its records (objects in it are dry-run later).
    pub home: &'a str,
}

/// What the pre-flight found: problems stop the deploy before anything is written.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Preflight {
    /// `(object, container, from, to)` of images pinned by digest.
    pub pinned: Vec<(String, String, String, String)>,
    /// Images whose registry could not be asked: warned about, not fatal.
    pub unverified: Vec<String>,
    /// Notes for the report (objects not dry-run yet, and why).
    pub deferred: Vec<String>,
    /// Everything that stops the deploy, each a sentence.
    pub problems: Vec<String>,
}

/// The release records and the environment lock.
pub trait Store: Sync {
    /// A held lock.
    type Lock: Send + Sync;

    /// Creates the namespace that holds records and the lock if it is missing; whether it did.
    fn ensure_namespace(&self, name: &str) -> impl Future<Output = Result<bool, KubeError>> + Send;
    /// Takes the environment lock, waiting for a live holder (`waiting` hears of it once).
    fn lock(
        &self,
        at: &StoreLocation,
        terms: &LockTerms,
        cancel: &Cancel,
        waiting: &(dyn Fn(&str) + Sync),
    ) -> impl Future<Output = Result<Self::Lock, LockError>> + Send;
    /// Whose lock this run took over, when its holder had stopped renewing it.
    fn taken_over_from(lock: &Self::Lock) -> Option<String>;
    /// Whether the lock may have passed to another run (a write was refused meanwhile).
    fn lost(lock: &Self::Lock) -> bool;
    /// Hands the lock back.
    fn unlock(&self, lock: Self::Lock) -> impl Future<Output = Result<(), KubeError>> + Send;
    /// Reads and checks the environment's records.
    fn history(
        &self,
        at: &StoreLocation,
    ) -> impl Future<Output = Result<History, KubeError>> + Send;
    /// Adopts records written before the record index existed; how many.
    fn adopt(
        &self,
        records: &Records,
        history: &History,
    ) -> impl Future<Output = Result<usize, String>> + Send;
    /// Writes one release record.
    fn save(
        &self,
        records: &Records,
        record: &Release,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Deletes the records of these releases.
    fn drop_records(
        &self,
        records: &Records,
        numbers: &[u64],
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Breaks the lock whoever holds it.
    fn break_lock(
        &self,
        at: &StoreLocation,
    ) -> impl Future<Output = Result<Unlocked, KubeError>> + Send;
    /// The lock events recorded in the history (broken locks), oldest first.
    fn lock_events(
        &self,
        at: &StoreLocation,
    ) -> impl Future<Output = Result<Vec<String>, KubeError>> + Send;
    /// Records a lock event.
    fn record_lock_event(
        &self,
        at: &StoreLocation,
        time: &Timestamp,
        sentence: &str,
    ) -> impl Future<Output = Result<(), KubeError>> + Send;
}

/// The objects of a release in the cluster.
pub trait Objects: Sync {
    /// Pins images by digest (checking they exist), dry-runs the release and reviews the
    /// permissions it needs; every problem at once.
    fn preflight(
        &self,
        objects: &mut [Value],
        scope: &PreflightScope<'_>,
    ) -> impl Future<Output = Preflight> + Send;
    /// Applies `objects` (in apply order), rank by rank.
    fn apply(&self, objects: &[Value], how: Apply<'_>) -> impl Future<Output = Applied> + Send;
    /// Deletes `objects` (in delete order); the deleted ones named, and the errors.
    fn delete(
        &self,
        objects: &[ObjectRef],
    ) -> impl Future<Output = (Vec<String>, Vec<KubeError>)> + Send;
    /// Tracks every workload of `objects` until all are healthy, one fails, time runs out or
    /// the run is cancelled.
    fn track(&self, objects: &[Value], watch: &Watch<'_>) -> impl Future<Output = Tracked> + Send;
    /// Adds the evidence (events, the failing container's log) to a rollout failure.
    fn diagnose(
        &self,
        namespace: &str,
        failure: &mut RolloutFailure,
    ) -> impl Future<Output = ()> + Send;
    /// One live object, `None` if it does not exist.
    fn get(
        &self,
        object: &ObjectRef,
    ) -> impl Future<Output = Result<Option<Value>, KubeError>> + Send;
    /// The live objects of one kind in a namespace.
    fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
    ) -> impl Future<Output = Result<Vec<Value>, KubeError>> + Send;
    /// A server-side dry run of one object: the object as it would be.
    fn dry_run(
        &self,
        object: &Value,
        force: bool,
    ) -> impl Future<Output = Result<Value, KubeError>> + Send;
    /// Deletes the not-Ready pods of a failed StatefulSet revision among `restored`.
    fn delete_stuck_pods(
        &self,
        restored: &[Value],
    ) -> impl Future<Output = (Vec<String>, Vec<KubeError>)> + Send;
}

/// The real cluster, and how the pre-flight verifies images (`None`: not checked).
pub struct Live {
    pub cluster: Arc<Cluster>,
    pub images: Option<super::ImageVerification>,
}

impl Live {
    /// A cluster whose images are not verified before a deploy.
    pub fn new(cluster: Arc<Cluster>) -> Live {
        Live {
            cluster,
            images: None,
        }
    }
}

impl Store for Live {
    type Lock = store::HeldLock;

    async fn ensure_namespace(&self, name: &str) -> Result<bool, KubeError> {
        let namespace = ObjectRef {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: name.to_string(),
        };
        if self.cluster.get(&namespace).await?.is_some() {
            return Ok(false);
        }
        self.cluster
            .apply(
                &serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
                ApplyOptions::default(),
            )
            .await?;
        Ok(true)
    }

    async fn lock(
        &self,
        at: &StoreLocation,
        terms: &LockTerms,
        cancel: &Cancel,
        waiting: &(dyn Fn(&str) + Sync),
    ) -> Result<store::HeldLock, LockError> {
        store::lock(self.cluster.clone(), at, terms, cancel, waiting).await
    }

    fn taken_over_from(lock: &store::HeldLock) -> Option<String> {
        lock.taken_over_from.clone()
    }

    fn lost(lock: &store::HeldLock) -> bool {
        lock.fence.refused()
    }

    async fn unlock(&self, lock: store::HeldLock) -> Result<(), KubeError> {
        lock.release().await
    }

    async fn history(&self, at: &StoreLocation) -> Result<History, KubeError> {
        store::history(&self.cluster, at).await
    }

    async fn adopt(&self, records: &Records, history: &History) -> Result<usize, String> {
        records.adopt(&self.cluster, history).await
    }

    async fn save(&self, records: &Records, record: &Release) -> Result<(), String> {
        records.save(&self.cluster, record).await
    }

    async fn drop_records(&self, records: &Records, numbers: &[u64]) -> Result<(), String> {
        records.drop_records(&self.cluster, numbers).await
    }

    async fn break_lock(&self, at: &StoreLocation) -> Result<Unlocked, KubeError> {
        store::unlock(&self.cluster, at).await
    }

    async fn lock_events(&self, at: &StoreLocation) -> Result<Vec<String>, KubeError> {
        store::lock_events(&self.cluster, at).await
    }

    async fn record_lock_event(
        &self,
        at: &StoreLocation,
        time: &Timestamp,
        sentence: &str,
    ) -> Result<(), KubeError> {
        store::save_lock_event(&self.cluster, at, time, sentence).await
    }
}

impl Objects for Live {
    async fn preflight(&self, objects: &mut [Value], scope: &PreflightScope<'_>) -> Preflight {
        let mut found = Preflight::default();
        if let Some(images) = &self.images {
            let checked =
                preflight::check_images(objects, &images.registry, &images.credentials).await;
            found.pinned = checked.pinned;
            found.unverified = checked.unverified;
            found.problems.extend(checked.missing);
        }
        let (rejected, deferred) = preflight::dry_run(
            &self.cluster,
            objects,
            scope.force_conflicts,
            &[scope.home.to_string()],
        )
        .await;
        found
            .problems
            .extend(rejected.into_iter().map(|r| format!("dry run: {r}")));
        found.deferred = deferred;
        match preflight::access_problems(&self.cluster, objects, scope.home).await {
            Ok(missing) => found.problems.extend(missing),
            Err(err) => found.problems.push(format!("permission check: {err}")),
        }
        found
    }

    async fn apply(&self, objects: &[Value], how: Apply<'_>) -> Applied {
        apply::apply_all_with(
            &self.cluster,
            objects,
            how.options,
            how.conflicts,
            how.concurrency,
            how.step,
        )
        .await
    }

    async fn delete(&self, objects: &[ObjectRef]) -> (Vec<String>, Vec<KubeError>) {
        apply::delete_all(&self.cluster, objects).await
    }

    async fn track(&self, objects: &[Value], watch: &Watch<'_>) -> Tracked {
        track::track_all(
            &self.cluster,
            objects,
            watch.tolerances,
            watch.timeout,
            watch.cancel,
            watch.runner,
        )
        .await
    }

    async fn diagnose(&self, namespace: &str, failure: &mut RolloutFailure) {
        track::diagnose(&self.cluster, namespace, failure).await
    }

    async fn get(&self, object: &ObjectRef) -> Result<Option<Value>, KubeError> {
        self.cluster.get(object).await
    }

    async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
    ) -> Result<Vec<Value>, KubeError> {
        self.cluster
            .list(api_version, kind, Some(namespace), None)
            .await
    }

    async fn dry_run(&self, object: &Value, force: bool) -> Result<Value, KubeError> {
        self.cluster
            .apply(
                object,
                ApplyOptions {
                    dry_run: true,
                    force,
                },
            )
            .await
    }

    async fn delete_stuck_pods(&self, restored: &[Value]) -> (Vec<String>, Vec<KubeError>) {
        statefulsets::delete_stuck_pods(&self.cluster, restored).await
    }
}
