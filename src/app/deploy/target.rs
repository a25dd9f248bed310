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
use super::observe;
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
    /// The namespaces gantry creates for charts (objects in them are dry-run later).
    pub chart_namespaces: &'a [String],
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

/// What comparing a release with the cluster found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verified {
    /// LIST requests sent (one per kind and namespace).
    pub lists: usize,
    /// Objects that do not hold the release: their index in the release, and why.
    pub differs: Vec<(usize, String)>,
    /// Objects that could not be read, and why: nothing can be concluded from the rest.
    pub unreadable: Vec<String>,
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
    /// Pins images by digest, checking they exist (problems: the missing ones).
    fn pin_images(&self, objects: &mut [Value]) -> impl Future<Output = Preflight> + Send;
    /// Compares the release with the cluster: one LIST per kind and namespace, then what
    /// gantry's field manager owns of each object against the object.
    fn verify(&self, objects: &[Value]) -> impl Future<Output = Verified> + Send;
    /// Dry-runs the release and reviews the permissions it needs; every problem at once.
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
    /// Namespaces the pre-flight found to exist (not asked again).
    existing: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The release's live objects, listed during the pre-flight's dry run for the apply that
    /// follows (taken once).
    listed: std::sync::Mutex<Option<observe::Observed>>,
}

impl Live {
    /// A cluster whose images are not verified before a deploy.
    pub fn new(cluster: Arc<Cluster>) -> Live {
        Live::verifying(cluster, None)
    }

    /// A cluster whose images are verified (and pinned) before a deploy with `images`.
    pub fn verifying(cluster: Arc<Cluster>, images: Option<super::ImageVerification>) -> Live {
        Live {
            cluster,
            images,
            existing: Default::default(),
            listed: Default::default(),
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
        let known = self.existing.lock().is_ok_and(|e| e.contains(name));
        if known || self.cluster.get(&namespace).await?.is_some() {
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
        let started = std::time::Instant::now();
        let held = store::lock(self.cluster.clone(), at, terms, cancel, waiting).await;
        if started.elapsed() > Duration::from_secs(5) {
            // Another run may have changed the objects meanwhile: the apply lists them again.
            if let Ok(mut slot) = self.listed.lock() {
                *slot = None;
            }
        }
        held
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
    async fn pin_images(&self, objects: &mut [Value]) -> Preflight {
        let mut found = Preflight::default();
        if let Some(images) = &self.images {
            let checked =
                preflight::check_images(objects, &images.registry, &images.credentials).await;
            found.pinned = checked.pinned;
            found.unverified = checked.unverified;
            found.problems.extend(checked.missing);
        }
        found
    }

    async fn verify(&self, objects: &[Value]) -> Verified {
        let observed = observe::observe(&self.cluster, objects, self.cluster.concurrency(64)).await;
        let mut verified = Verified {
            lists: observed.lists(),
            ..Verified::default()
        };
        for (index, object) in objects.iter().enumerate() {
            let Some(reference) = ObjectRef::of(object) else {
                continue;
            };
            match observed.live(&reference) {
                observe::Live::Found(live) => {
                    if let Err(why) = crate::release::owned::holds(object, live) {
                        verified.differs.push((index, why));
                    }
                }
                observe::Live::Absent => verified.differs.push((index, "it is gone".into())),
                observe::Live::Unknown(err) => {
                    verified.unreadable.push(format!("{reference}: {err}"))
                }
            }
        }
        verified
    }

    async fn preflight(&self, objects: &mut [Value], scope: &PreflightScope<'_>) -> Preflight {
        let mut found = Preflight::default();
        // Independent checks, sent together.
        // Independent checks, sent together; the LIST the apply needs goes with them.
        let home: Vec<String> = std::iter::once(scope.home.to_string())
            .chain(scope.chart_namespaces.iter().cloned())
            .collect();
        let (dry_run, access, listed) = futures::join!(
            preflight::dry_run(&self.cluster, objects, scope.force_conflicts, &home),
            preflight::access_problems(&self.cluster, objects, scope.home),
            observe::observe(&self.cluster, objects, self.cluster.concurrency(64))
        );
        let (rejected, deferred, existing) = dry_run;
        if let Ok(mut known) = self.existing.lock() {
            known.extend(existing);
        }
        if let Ok(mut slot) = self.listed.lock() {
            *slot = Some(listed);
        }
        found
            .problems
            .extend(rejected.into_iter().map(|r| format!("dry run: {r}")));
        found.deferred = deferred;
        match access {
            Ok(missing) => found.problems.extend(missing),
            Err(err) => found.problems.push(format!("permission check: {err}")),
        }
        found
    }

    async fn apply(&self, objects: &[Value], how: Apply<'_>) -> Applied {
        // The pre-flight's LIST serves the apply right after it, once (not a later rollback).
        let listed = self.listed.lock().ok().and_then(|mut slot| slot.take());
        apply::apply_all_with(
            &self.cluster,
            objects,
            how.options,
            how.conflicts,
            how.concurrency,
            how.step,
            listed,
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
