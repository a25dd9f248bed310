//! The deploy verbs' failure paths against an in-memory cluster that fails on cue: which steps run in which order, which release each record ends at, and what the outcome says. The real-cluster tests (tests/deploy_*.rs) prove the same verbs against the test bed's API server.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use super::apply::Applied;
use super::engine::{Ending, Engine, Origin, Outcome, Settings};
use super::store::{History, LockError, LockTerms, Records, StoreLocation, Unlocked};
use super::target::{Apply, Objects, Preflight, PreflightScope, Store, Verified, Watch};
use super::track::Tracked;
use crate::adapters::kube::KubeError;
use crate::adapters::runner::Runner;
use crate::cancel::Cancel;
use crate::pipeline::facts::{ChangeAction, ObjectChange, RolloutFailure};
use crate::pipeline::FailureReason;
use crate::release::records::RecordIndex;
use crate::release::{ObjectRef, Release, ReleaseStatus};
use crate::rollout::Tolerances;

/// How one tracking of the fake ends.
#[derive(Clone, Copy, PartialEq)]
enum Track {
    Healthy,
    CrashLoop,
    TimedOut,
    Cancelled,
}

/// A cluster in memory: records and live objects, every call logged, failures on cue.
#[derive(Default)]
struct Fake {
    records: Mutex<BTreeMap<u64, Release>>,
    live: Mutex<BTreeMap<String, Value>>,
    calls: Mutex<Vec<String>>,
    /// Apply errors from the object with this name on, per step (`apply`, `rollback`).
    fail_apply: BTreeMap<&'static str, &'static str>,
    /// How each tracking ends, in order; healthy once the list is used up.
    tracks: Mutex<Vec<Track>>,
    lose_lock: bool,
    fail_save: Option<ReleaseStatus>,
    preflight_problems: Vec<String>,
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

impl Fake {
    fn call(&self, call: impl Into<String>) {
        self.calls.lock().unwrap().push(call.into());
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn status_of(&self, number: u64) -> Option<ReleaseStatus> {
        self.records.lock().unwrap().get(&number).map(|r| r.status)
    }

    fn live_names(&self) -> Vec<String> {
        self.live.lock().unwrap().keys().cloned().collect()
    }
}

impl Store for Fake {
    type Lock = bool;

    async fn ensure_namespace(&self, _name: &str) -> Result<bool, KubeError> {
        Ok(false)
    }

    async fn lock(
        &self,
        _at: &StoreLocation,
        _terms: &LockTerms,
        _cancel: &Cancel,
        _waiting: &(dyn Fn(&str) + Sync),
    ) -> Result<bool, LockError> {
        self.call("lock");
        Ok(self.lose_lock)
    }

    fn taken_over_from(_lock: &bool) -> Option<String> {
        None
    }

    fn lost(lock: &bool) -> bool {
        *lock
    }

    async fn unlock(&self, _lock: bool) -> Result<(), KubeError> {
        self.call("unlock");
        Ok(())
    }

    async fn history(&self, _at: &StoreLocation) -> Result<History, KubeError> {
        Ok(History {
            releases: self.records.lock().unwrap().values().cloned().collect(),
            index: Some((RecordIndex::default(), None)),
            ..History::default()
        })
    }

    async fn adopt(&self, _records: &Records, _history: &History) -> Result<usize, String> {
        Ok(0)
    }

    async fn save(&self, _records: &Records, record: &Release) -> Result<(), String> {
        self.call(format!("save {} {}", record.number, record.status.as_str()));
        if self.fail_save == Some(record.status) {
            return Err("the API server refused the Secret".into());
        }
        self.records
            .lock()
            .unwrap()
            .insert(record.number, record.clone());
        Ok(())
    }

    async fn drop_records(&self, _records: &Records, _numbers: &[u64]) -> Result<(), String> {
        Ok(())
    }

    async fn break_lock(&self, _at: &StoreLocation) -> Result<Unlocked, KubeError> {
        Ok(Unlocked::WasFree)
    }

    async fn lock_events(&self, _at: &StoreLocation) -> Result<Vec<String>, KubeError> {
        Ok(Vec::new())
    }

    async fn record_lock_event(
        &self,
        _at: &StoreLocation,
        _time: &Timestamp,
        _sentence: &str,
    ) -> Result<(), KubeError> {
        Ok(())
    }
}

impl Objects for Fake {
    async fn pin_images(&self, _objects: &mut [Value]) -> Preflight {
        Preflight::default()
    }

    async fn verify(&self, objects: &[Value]) -> Verified {
        // The fake keeps no live objects: every object differs, so every verb goes the whole way.
        Verified {
            lists: 0,
            differs: (0..objects.len())
                .map(|i| (i, "not kept by the fake".into()))
                .collect(),
            unreadable: Vec::new(),
        }
    }

    async fn preflight(&self, _objects: &mut [Value], _scope: &PreflightScope<'_>) -> Preflight {
        self.call("preflight");
        Preflight {
            problems: self.preflight_problems.clone(),
            ..Preflight::default()
        }
    }

    async fn apply(&self, objects: &[Value], how: Apply<'_>) -> Applied {
        let names: Vec<String> = objects.iter().map(name_of).collect();
        self.call(format!("{} {}", how.step, names.join(",")));
        let mut applied = Applied::default();
        for object in objects {
            let name = name_of(object);
            if self.fail_apply.get(how.step) == Some(&name.as_str()) {
                applied.errors.push(KubeError::Invalid {
                    object: format!("ConfigMap/{name}"),
                    causes: "data: Invalid value".into(),
                });
                break;
            }
            let before = self
                .live
                .lock()
                .unwrap()
                .insert(name.clone(), object.clone());
            applied.changes.push(ObjectChange {
                object: format!("ConfigMap/{name} (namespace shop)"),
                action: match before {
                    None => ChangeAction::Created,
                    Some(_) => ChangeAction::Configured,
                },
            });
            applied.wrote = true;
        }
        applied
    }

    async fn delete(&self, objects: &[ObjectRef]) -> (Vec<String>, Vec<KubeError>) {
        let names: Vec<String> = objects.iter().map(|o| o.name.clone()).collect();
        self.call(format!("delete {}", names.join(",")));
        for name in &names {
            self.live.lock().unwrap().remove(name);
        }
        (
            objects.iter().map(ToString::to_string).collect(),
            Vec::new(),
        )
    }

    async fn track(&self, objects: &[Value], _watch: &Watch<'_>) -> Tracked {
        let names: Vec<String> = objects.iter().map(name_of).collect();
        self.call(format!("track {}", names.join(",")));
        let next = {
            let mut tracks = self.tracks.lock().unwrap();
            if tracks.is_empty() {
                Track::Healthy
            } else {
                tracks.remove(0)
            }
        };
        match next {
            Track::Healthy => Tracked::default(),
            Track::TimedOut => Tracked {
                timed_out: true,
                ..Tracked::default()
            },
            Track::Cancelled => Tracked {
                cancelled: true,
                ..Tracked::default()
            },
            Track::CrashLoop => Tracked {
                failure: Some((
                    "shop".into(),
                    RolloutFailure {
                        object: "Deployment/shop/api".into(),
                        reason: "CrashLoopBackOff".into(),
                        message: "back-off restarting failed container".into(),
                        ..RolloutFailure::default()
                    },
                )),
                ..Tracked::default()
            },
        }
    }

    async fn diagnose(&self, _namespace: &str, failure: &mut RolloutFailure) {
        self.call("diagnose");
        failure.log_tail.push("panic: no database".into());
    }

    async fn get(&self, _object: &ObjectRef) -> Result<Option<Value>, KubeError> {
        Ok(None)
    }

    async fn list(&self, _v: &str, _k: &str, _ns: &str) -> Result<Vec<Value>, KubeError> {
        Ok(Vec::new())
    }

    async fn dry_run(&self, object: &Value, _force: bool) -> Result<Value, KubeError> {
        Ok(object.clone())
    }

    async fn delete_stuck_pods(&self, _restored: &[Value]) -> (Vec<String>, Vec<KubeError>) {
        (Vec::new(), Vec::new())
    }
}

fn config_map(name: &str, value: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "shop"},
        "data": {"value": value},
    })
}

fn settings(rollback: bool) -> Settings {
    Settings {
        namespace: "gantry".into(),
        rollout_timeout: Duration::from_secs(60),
        rollback,
        prune: true,
        force_conflicts: false,
        history_max: 10,
        lock_timeout: Duration::from_secs(5),
        lease_duration: Duration::from_secs(30),
        apply_concurrency: 4,
        adopt_helm_release: None,
        chart_namespaces: Vec::new(),
        tolerances: Tolerances::default(),
    }
}

/// Deploys `objects` with `fake` and `rollback` on or off; the outcome and the log.
async fn deploy(fake: Fake, objects: Vec<Value>, rollback: bool) -> (Outcome, Fake, String) {
    let (runner, log) = Runner::capturing(false);
    let cancel = Cancel::never();
    let engine = Engine {
        target: fake,
        environment: "dev".into(),
        settings: settings(rollback),
        runner: &runner,
        cancel: &cancel,
        me: "unit-test".into(),
    };
    let outcome = engine.deploy(objects, &Origin::default()).await;
    (outcome, engine.target, log.contents())
}

/// A fake whose release 1 (`a`, `b`) is deployed and live.
async fn with_release_one(fake: Fake) -> Fake {
    let (outcome, fake, log) =
        deploy(fake, vec![config_map("a", "1"), config_map("b", "1")], true).await;
    assert_eq!(outcome.ending, Ending::Succeeded, "{log}");
    fake.calls.lock().unwrap().clear();
    fake
}

fn reason_and_message(outcome: &Outcome) -> (FailureReason, String) {
    match &outcome.ending {
        Ending::Failed { reason, message } | Ending::RolledBack { reason, message } => {
            (*reason, message.clone())
        }
        Ending::Succeeded => panic!("the deploy succeeded"),
    }
}

#[tokio::test]
async fn a_healthy_release_prunes_only_after_it_is_recorded_deployed() {
    let fake = with_release_one(Fake::default()).await;
    let (outcome, fake, log) =
        deploy(fake, vec![config_map("a", "2"), config_map("c", "2")], true).await;
    assert_eq!(outcome.ending, Ending::Succeeded, "{log}");
    assert_eq!(
        fake.calls(),
        [
            "preflight",
            "lock",
            "save 2 pending",
            "apply a,c",
            "track a,c",
            "save 2 deployed",
            "delete b",
            "save 1 superseded",
            "unlock",
        ]
    );
    assert_eq!(fake.live_names(), ["a", "c"]);
    assert_eq!(outcome.facts.pruned, ["ConfigMap/b (namespace shop)"]);
}

#[tokio::test]
async fn an_apply_that_fails_half_way_is_rolled_back_to_the_last_good_release() {
    let fake = with_release_one(Fake {
        fail_apply: BTreeMap::from([("apply", "d")]),
        ..Fake::default()
    })
    .await;
    // x exists in the cluster but in no release: release 2 adopts it.
    fake.live
        .lock()
        .unwrap()
        .insert("x".into(), config_map("x", "theirs"));
    let (outcome, fake, log) = deploy(
        fake,
        vec![
            config_map("a", "2"),
            config_map("c", "2"),
            config_map("x", "2"),
            config_map("d", "2"),
            config_map("e", "2"),
        ],
        true,
    )
    .await;
    let (reason, message) = reason_and_message(&outcome);
    assert!(matches!(outcome.ending, Ending::RolledBack { .. }), "{log}");
    assert_eq!(reason, FailureReason::ApplyFailed);
    assert!(
        message.starts_with("applying release 2 failed: ConfigMap/d is invalid")
            && message.ends_with("rolled back: release 1 is restored and healthy (1 object that existed before this run was left as it is: ConfigMap/x (namespace shop))"),
        "{message}"
    );
    // a went back to release 1, c (created by the run) was deleted, b never touched; x existed
    // before (adopted) and is not deleted; d failed and e was never reached.
    let calls = fake.calls();
    assert_eq!(
        calls[2..],
        [
            "save 2 pending",
            "apply a,c,x,d,e",
            "rollback a,b",
            "delete c",
            "track a,b",
            "save 2 rolled-back",
            "unlock",
        ]
    );
    assert_eq!(fake.live_names(), ["a", "b", "x"]);
    assert_eq!(fake.live.lock().unwrap()["a"]["data"]["value"], "1");
    assert_eq!(fake.status_of(1), Some(ReleaseStatus::Deployed));
    assert_eq!(fake.status_of(2), Some(ReleaseStatus::RolledBack));
    let rollback = outcome.facts.rollback.as_ref().unwrap();
    assert_eq!(rollback.left_in_place, ["ConfigMap/x (namespace shop)"]);

    // Release 3 has no x: x was never gantry's, so its prune leaves it too.
    let (outcome, fake, log) = deploy(fake, vec![config_map("a", "3")], true).await;
    assert_eq!(outcome.ending, Ending::Succeeded, "{log}");
    assert_eq!(fake.live_names(), ["a", "x"]);
}

#[tokio::test]
async fn a_failed_rollout_is_diagnosed_and_rolled_back_with_its_evidence() {
    let fake = with_release_one(Fake {
        tracks: Mutex::new(Vec::new()),
        ..Fake::default()
    })
    .await;
    fake.tracks.lock().unwrap().push(Track::CrashLoop);
    let (outcome, fake, log) =
        deploy(fake, vec![config_map("a", "2"), config_map("b", "2")], true).await;
    let (reason, message) = reason_and_message(&outcome);
    assert_eq!(reason, FailureReason::RolloutFailed, "{log}");
    assert!(
        message.starts_with("release 2: Deployment/shop/api failed: CrashLoopBackOff"),
        "{message}"
    );
    let failure = outcome.facts.failure.expect("the evidence is reported");
    assert_eq!(failure.log_tail, ["panic: no database"]);
    assert!(fake.calls().contains(&"diagnose".to_string()));
    let rollback = outcome.facts.rollback.expect("rolled back");
    assert_eq!(
        (rollback.from_release, rollback.to_release),
        (Some(2), Some(1))
    );
    assert_eq!(rollback.error, None);
    assert_eq!(fake.status_of(2), Some(ReleaseStatus::RolledBack));
}

#[tokio::test]
async fn a_rollback_that_fails_too_keeps_both_errors_and_fails_the_run() {
    let fake = with_release_one(Fake {
        fail_apply: BTreeMap::from([("rollback", "a")]),
        ..Fake::default()
    })
    .await;
    fake.tracks.lock().unwrap().push(Track::TimedOut);
    let (outcome, fake, log) =
        deploy(fake, vec![config_map("a", "2"), config_map("b", "2")], true).await;
    let (reason, message) = reason_and_message(&outcome);
    assert!(matches!(outcome.ending, Ending::Failed { .. }), "{log}");
    assert_eq!(reason, FailureReason::RollbackFailed);
    assert!(
        message.contains("an error occurred while rolling back: ConfigMap/a is invalid")
            && message.contains(
                "original error: release 2 did not become healthy within rollout-timeout (60s)"
            ),
        "{message}"
    );
    assert_eq!(fake.status_of(2), Some(ReleaseStatus::Failed));
    let record = fake.records.lock().unwrap()[&2].description.clone();
    assert!(record.contains("the rollback failed too"), "{record}");
    // The last good release's record is never touched.
    assert_eq!(fake.status_of(1), Some(ReleaseStatus::Deployed));
}

#[tokio::test]
async fn a_lost_lock_fails_the_run_as_lock_lost_whatever_the_steps_said() {
    let fake = Fake {
        lose_lock: true,
        ..Fake::default()
    };
    let (outcome, _, log) = deploy(fake, vec![config_map("a", "1")], true).await;
    let (reason, message) = reason_and_message(&outcome);
    assert_eq!(reason, FailureReason::LockLost, "{log}");
    assert!(
        message.contains("lock was lost while release 1"),
        "{message}"
    );
    assert!(outcome.changed);
}

#[tokio::test]
async fn a_failed_first_release_is_removed_entirely() {
    let fake = Fake::default();
    fake.tracks.lock().unwrap().push(Track::CrashLoop);
    let (outcome, fake, log) =
        deploy(fake, vec![config_map("a", "1"), config_map("b", "1")], true).await;
    let Ending::RolledBack { message, .. } = &outcome.ending else {
        panic!("{:?}\n{log}", outcome.ending);
    };
    assert!(message.ends_with("the first release was removed entirely (nothing of it is left)"));
    assert!(fake.live_names().is_empty());
    assert!(
        fake.calls().contains(&"delete a,b".to_string()),
        "{:?}",
        fake.calls()
    );
}

#[tokio::test]
async fn with_rollback_off_or_cancelled_the_release_stays_as_applied() {
    for (track, rollback, reason, state) in [
        (
            Track::CrashLoop,
            false,
            FailureReason::RolloutFailed,
            "rollback is off: the cluster runs release 2 as applied, not the last good release 1",
        ),
        (
            Track::Cancelled,
            true,
            FailureReason::Cancelled,
            "the cluster is left with release 2 partly rolled out; the next run reconciles it",
        ),
    ] {
        let fake = with_release_one(Fake::default()).await;
        fake.tracks.lock().unwrap().push(track);
        let (outcome, fake, log) = deploy(fake, vec![config_map("a", "2")], rollback).await;
        let (found, message) = reason_and_message(&outcome);
        assert_eq!(found, reason, "{log}");
        assert!(message.ends_with(state), "{message}");
        assert!(!fake
            .calls()
            .iter()
            .any(|c| c.starts_with("rollback") || c.starts_with("delete")));
        assert_eq!(fake.status_of(2), Some(ReleaseStatus::Failed));
        assert_eq!(fake.live.lock().unwrap()["b"]["data"]["value"], "1");
    }
}

#[tokio::test]
async fn nothing_is_applied_when_the_pending_record_or_the_preflight_fails() {
    let fake = Fake {
        fail_save: Some(ReleaseStatus::Pending),
        ..Fake::default()
    };
    let (outcome, fake, _) = deploy(fake, vec![config_map("a", "1")], true).await;
    assert_eq!(reason_and_message(&outcome).0, FailureReason::RecordFailed);
    assert_eq!(
        fake.calls(),
        ["preflight", "lock", "save 1 pending", "unlock"]
    );

    let fake = Fake {
        preflight_problems: vec!["image `x` does not exist".into()],
        ..Fake::default()
    };
    let (outcome, fake, _) = deploy(fake, vec![config_map("a", "1")], true).await;
    let (reason, message) = reason_and_message(&outcome);
    assert_eq!(reason, FailureReason::PreflightFailed);
    assert!(message.starts_with("pre-flight found 1 problem; nothing was applied"));
    assert_eq!(fake.calls(), ["preflight"]);
    assert!(!outcome.changed);
}
