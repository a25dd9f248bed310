//! The deploy verbs' shared frame: the [`Engine`] bound to one environment, its settings and outcome, and the steps every verb reuses (lock, history, apply, track, prune decisions).
//!
//! Design note: Helm's actions taught the order (validate, lock, record, perform, record the
//! outcome); its stuck "pending" releases taught the lock that expires. Every step that can fail
//! leaves a release record saying what happened, and the record of the last good release is
//! never removed, so the next run (or a person) can always tell what is running. The verbs live
//! beside this file, one each ([`super::deploy`], [`super::rollback`], [`super::recover`],
//! [`super::plan`], [`super::history`]); the cluster is reached only through the traits of
//! [`super::target`].

use std::time::Duration;

use serde_json::Value;

use super::apply::{Applied, Conflicts};
use super::store::{self, LockTerms, Records, StoreLocation};
use super::target::{Apply, Objects, Store, Watch};
use super::track::Tracked;
use crate::adapters::kube::ApplyOptions;
use crate::adapters::runner::Runner;
use crate::cancel::Cancel;
use crate::pipeline::facts::{DeployFacts, RolloutFailure};
use crate::pipeline::FailureReason;
use crate::release::{self, Release};

/// Settings of the deploy verbs: the validated configuration's, used as they are.
pub use crate::config::ReleaseSettings as Settings;

/// Who runs this release and why, for the record.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub commit: Option<String>,
    pub images: std::collections::BTreeMap<String, String>,
    pub actor: Option<String>,
    pub run_url: Option<String>,
}

/// How a verb ended, for the phase result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Done and healthy (or, for plan/history, answered).
    Succeeded,
    /// Failed; the environment was restored to the last good release.
    RolledBack {
        reason: FailureReason,
        message: String,
    },
    /// Failed; the environment may not be at a good release (said in `message`).
    Failed {
        reason: FailureReason,
        message: String,
    },
}

/// One verb's result: how it ended, whether it wrote to the cluster, and the facts.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub ending: Ending,
    pub changed: bool,
    pub facts: DeployFacts,
}

impl Outcome {
    pub(super) fn new() -> Self {
        Outcome {
            ending: Ending::Succeeded,
            changed: false,
            facts: DeployFacts::default(),
        }
    }

    pub(super) fn failed(mut self, reason: FailureReason, message: impl Into<String>) -> Self {
        self.ending = Ending::Failed {
            reason,
            message: message.into(),
        };
        self
    }
}

/// Why a step failed: the reason, the message, and the rollout evidence (with the namespace
/// of the failing pod) when a workload failed.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    pub reason: FailureReason,
    pub message: String,
    pub evidence: Option<(String, RolloutFailure)>,
}

impl Failure {
    pub fn new(reason: FailureReason, message: impl Into<String>) -> Failure {
        Failure {
            reason,
            message: message.into(),
            evidence: None,
        }
    }

    /// How tracking `what` ("release 7") ended, as a failure; `None` when it is healthy.
    pub fn of_tracking(tracked: &Tracked, what: &str, timeout: Duration) -> Option<Failure> {
        if tracked.healthy() {
            None
        } else if tracked.cancelled {
            Some(Failure::new(
                FailureReason::Cancelled,
                format!("the run was cancelled while {what} was rolling out"),
            ))
        } else if let Some((namespace, failure)) = &tracked.failure {
            Some(Failure {
                reason: reason_of_workload(&failure.reason),
                message: format!(
                    "{what}: {} failed: {}: {}",
                    failure.object, failure.reason, failure.message
                ),
                evidence: Some((namespace.clone(), failure.clone())),
            })
        } else {
            Some(Failure::new(
                FailureReason::RolloutTimeout,
                format!(
                    "{what} did not become healthy within rollout-timeout ({}s)",
                    timeout.as_secs()
                ),
            ))
        }
    }
}

/// The `failure-reason` of a workload failure: a paused Deployment is not a broken release.
fn reason_of_workload(kubernetes_reason: &str) -> FailureReason {
    match kubernetes_reason {
        crate::rollout::DEPLOYMENT_PAUSED => FailureReason::RolloutPaused,
        _ => FailureReason::RolloutFailed,
    }
}

/// The deploy verbs bound to one cluster (`target`) and environment.
pub struct Engine<'a, T> {
    pub target: T,
    /// The environment whose releases these are.
    pub environment: String,
    pub settings: Settings,
    pub runner: &'a Runner,
    pub cancel: &'a Cancel,
    /// The lock holder identity of this run.
    pub me: String,
}

/// Test hook: `GANTRY_TEST_CRASH_AT=<step>` kills the process at that step boundary the way
/// SIGKILL would (no cleanup, no lock release), so crash recovery is tested for real.
pub fn crash_point(step: &str) {
    if std::env::var("GANTRY_TEST_CRASH_AT").is_ok_and(|wanted| wanted == step) {
        eprintln!("gantry: crash point {step} reached (GANTRY_TEST_CRASH_AT)");
        std::process::abort();
    }
}

pub(super) fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

pub(super) fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The chain link of the next record: the content digest of the newest recorded release.
pub(super) fn chain_link(history: &[Release]) -> Option<String> {
    history
        .iter()
        .max_by_key(|r| r.number)
        .map(release::records::content_digest)
}

/// `"s"` when `n` is not one.
pub(super) fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

impl<T: Store + Objects> Engine<'_, T> {
    pub(super) fn location(&self) -> StoreLocation {
        StoreLocation {
            namespace: self.settings.namespace.clone(),
            environment: self.environment.clone(),
        }
    }

    pub(super) fn watch(&self) -> Watch<'_> {
        Watch {
            tolerances: &self.settings.tolerances,
            timeout: self.settings.rollout_timeout,
            cancel: self.cancel,
            runner: self.runner,
        }
    }

    /// Takes the lock, or says why not.
    pub(super) async fn lock_or_fail(&self) -> Result<T::Lock, Failure> {
        let waiting = |holder: &str| {
            self.runner.info(&format!(
                "waiting for the environment lock held by {holder} (up to {}s)",
                self.settings.lock_timeout.as_secs()
            ))
        };
        let terms = LockTerms {
            me: self.me.clone(),
            duration: self.settings.lease_duration,
            timeout: self.settings.lock_timeout,
        };
        match self
            .target
            .lock(&self.location(), &terms, self.cancel, &waiting)
            .await
        {
            Ok(lock) => {
                if let Some(previous) = T::taken_over_from(&lock) {
                    self.runner.warning(&format!(
                        "took over the environment lock from {previous}, which stopped renewing it"
                    ));
                }
                Ok(lock)
            }
            Err(err @ store::LockError::Invalid { .. }) => {
                Err(Failure::new(FailureReason::LockInvalid, err.to_string()))
            }
            Err(err) => Err(Failure::new(FailureReason::Locked, err.to_string())),
        }
    }

    /// Hands the lock back; when the fence refused a write meanwhile, the verb's outcome
    /// becomes `lock-lost` (it could not finish, and wrote nothing after losing the lock).
    pub(super) async fn release_lock(&self, lock: T::Lock, outcome: Outcome) -> Outcome {
        let lost = T::lost(&lock);
        if let Err(err) = self.target.unlock(lock).await {
            self.runner.warning(&format!(
                "could not release the environment lock (it expires by itself in {}s): {err}",
                self.settings.lease_duration.as_secs()
            ));
        }
        if !lost {
            return outcome;
        }
        let what = match &outcome.ending {
            Ending::Succeeded => String::new(),
            Ending::RolledBack { message, .. } | Ending::Failed { message, .. } => {
                format!(" ({message})")
            }
        };
        let number = outcome
            .facts
            .release
            .map(|n| format!("release {n}"))
            .unwrap_or_else(|| "the release".into());
        let mut outcome = outcome;
        outcome.changed = true;
        outcome.failed(
            FailureReason::LockLost,
            format!(
                "the environment lock was lost while {number} was in progress, so this run stopped writing{what}; the run that holds the lock now recovers the environment (an interrupted release is restored to the last good one)"
            ),
        )
    }

    /// Reads the records under the lock: unreadable ones reported, ones gantry did not write
    /// refused, records of gantry 0.1 adopted into the chain.
    pub(super) async fn load_history(
        &self,
        facts: &mut DeployFacts,
    ) -> Result<(Vec<Release>, Records), Failure> {
        let at = self.location();
        let history = self.read_history().await?;
        let records = Records::new(&at, &history);
        if history.needs_adoption() {
            let adopted = self
                .target
                .adopt(&records, &history)
                .await
                .map_err(|err| Failure::new(FailureReason::RecordFailed, err))?;
            let note = format!(
                "adopted {adopted} release record{} written by gantry 0.1 into the record chain (index: Lease {} in namespace {}); from now on a record gantry did not write is refused",
                plural(adopted),
                release::records::index_name(&at.environment),
                at.namespace
            );
            self.runner.warning(&note);
            facts.preflight.push(note);
        }
        Ok((history.releases, records))
    }

    /// Reads and checks the records without writing: warnings reported, untrusted records a
    /// failure that names them.
    pub(super) async fn read_history(&self) -> Result<store::History, Failure> {
        let history = self
            .target
            .history(&self.location())
            .await
            .map_err(|err| Failure::new(FailureReason::ClusterError, err.to_string()))?;
        for warning in &history.warnings {
            self.runner.warning(warning);
        }
        if !history.untrusted.is_empty() {
            return Err(Failure::new(
                FailureReason::UntrustedRecord,
                format!(
                    "refusing to act on release records gantry did not write ({}); nothing was applied. Find out who wrote them, delete them, and run again",
                    history.untrusted.join("; ")
                ),
            ));
        }
        Ok(history)
    }

    /// Writes a record; a failure is a warning (the caller's outcome stands).
    pub(super) async fn save_or_warn(&self, records: &Records, record: &Release) {
        if let Err(err) = self.target.save(records, record).await {
            self.runner.warning(&format!(
                "could not record release {}: {err}",
                record.number
            ));
        }
    }

    /// Drops the records beyond `history-max` (never the last good release); `known` is how
    /// many records there are now, when the caller knows (nothing is read when none can go).
    pub(super) async fn trim_history(&self, records: &Records, known: Option<usize>) {
        if known.is_some_and(|n| n <= self.settings.history_max as usize) {
            return;
        }
        if let Ok(history) = self.target.history(&self.location()).await {
            let drop = release::records_to_drop(&history.releases, self.settings.history_max);
            if let Err(err) = self.target.drop_records(records, &drop).await {
                self.runner
                    .warning(&format!("could not trim old release records: {err}"));
            }
        }
    }

    /// Applies `objects` (in apply order); every change logged. The failure names `what`.
    pub(super) async fn apply_step(
        &self,
        objects: &[Value],
        conflicts: Conflicts,
        step: &str,
        what: &str,
    ) -> (Applied, Option<Failure>) {
        let how = Apply {
            options: ApplyOptions {
                dry_run: false,
                // Taking over finds the conflicts first, to name them.
                force: conflicts == Conflicts::AsOptions && self.settings.force_conflicts,
            },
            conflicts,
            concurrency: self.settings.apply_concurrency,
            step,
        };
        let applied = self.target.apply(objects, how).await;
        for change in &applied.changes {
            self.runner
                .info(&format!("{} {}", change.object, change.action.as_str()));
        }
        for object in &applied.replaced {
            self.runner.warning(&format!(
                "{object} was deleted and created again before the release was proven healthy (a field of it cannot change; annotated {}: \"true\")",
                release::REPLACE_ANNOTATION
            ));
        }
        let failure = (!applied.errors.is_empty()).then(|| {
            Failure::new(
                FailureReason::ApplyFailed,
                format!("applying {what} failed: {}", join(&applied.errors)),
            )
        });
        (applied, failure)
    }

    /// Tracks `objects` until healthy or failed; the failure names `what` and, for a workload
    /// that failed, carries its diagnosed evidence.
    pub(super) async fn track_step(
        &self,
        objects: &[Value],
        what: &str,
    ) -> (Tracked, Option<Failure>) {
        let tracked = self.target.track(objects, &self.watch()).await;
        let mut failure = Failure::of_tracking(&tracked, what, self.settings.rollout_timeout);
        if let Some((namespace, evidence)) = failure.as_mut().and_then(|f| f.evidence.as_mut()) {
            self.target.diagnose(namespace, evidence).await;
        }
        (tracked, failure)
    }

    /// Protected objects that opted in to deletion on the live object (the annotation was set
    /// with kubectl rather than in the release) move from `keep` to `delete`.
    pub(super) async fn with_live_opt_ins(
        &self,
        mut removal: release::Removal,
    ) -> release::Removal {
        let mut keep = Vec::new();
        for reference in std::mem::take(&mut removal.keep) {
            match self.target.get(&reference).await {
                Ok(Some(live)) if release::allows_delete(&live) => removal.delete.push(reference),
                Ok(None) => {}
                _ => keep.push(reference),
            }
        }
        removal.keep = keep;
        release::delete_order(&mut removal.delete);
        removal
    }

    /// The HorizontalPodAutoscalers that may target objects of `objects`: those in the
    /// release, and those live in its namespaces (an HPA someone added by hand counts too).
    pub(super) async fn autoscalers(&self, objects: &[Value]) -> Vec<Value> {
        let mut found: Vec<Value> = objects
            .iter()
            .filter(|o| o.get("kind").and_then(Value::as_str) == Some("HorizontalPodAutoscaler"))
            .cloned()
            .collect();
        let namespaces: std::collections::BTreeSet<String> = objects
            .iter()
            .filter_map(release::ObjectRef::of)
            .filter_map(|r| r.namespace)
            .collect();
        for namespace in namespaces {
            match self
                .target
                .list("autoscaling/v2", "HorizontalPodAutoscaler", &namespace)
                .await
            {
                Ok(live) => found.extend(live),
                Err(err) => self.runner.warning(&format!(
                    "could not list the HorizontalPodAutoscalers of namespace {namespace} ({err}); the rollback restores spec.replicas as recorded"
                )),
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::facts::RolloutFailure;

    fn failure(reason: &str) -> RolloutFailure {
        RolloutFailure {
            object: "Deployment/api".into(),
            reason: reason.into(),
            message: "back-off".into(),
            ..RolloutFailure::default()
        }
    }

    #[test]
    fn tracking_ends_are_classified_once_for_every_verb() {
        let timeout = Duration::from_secs(90);
        let healthy = Tracked::default();
        assert!(Failure::of_tracking(&healthy, "release 3", timeout).is_none());
        let cases = [
            (
                Tracked {
                    cancelled: true,
                    ..Tracked::default()
                },
                FailureReason::Cancelled,
                "the run was cancelled while release 3 was rolling out",
            ),
            (
                Tracked {
                    failure: Some(("web".into(), failure("CrashLoopBackOff"))),
                    ..Tracked::default()
                },
                FailureReason::RolloutFailed,
                "release 3: Deployment/api failed: CrashLoopBackOff: back-off",
            ),
            (
                Tracked {
                    failure: Some(("web".into(), failure(crate::rollout::DEPLOYMENT_PAUSED))),
                    ..Tracked::default()
                },
                FailureReason::RolloutPaused,
                "release 3: Deployment/api failed: DeploymentPaused: back-off",
            ),
            (
                Tracked {
                    timed_out: true,
                    ..Tracked::default()
                },
                FailureReason::RolloutTimeout,
                "release 3 did not become healthy within rollout-timeout (90s)",
            ),
        ];
        for (tracked, reason, message) in cases {
            let found = Failure::of_tracking(&tracked, "release 3", timeout).unwrap();
            assert_eq!((found.reason, found.message.as_str()), (reason, message));
            assert_eq!(found.evidence.is_some(), tracked.failure.is_some());
        }
    }
}
