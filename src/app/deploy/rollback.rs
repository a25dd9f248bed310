//! The `rollback` verb, and the restore every rollback runs (after a failed deploy, by command, or to recover an interrupted release): re-apply the good release, delete what the failed one added, wait until the restored release is healthy.

use serde_json::Value;

use super::apply::Conflicts;
use super::engine::{chain_link, crash_point, now, Engine, Failure, Origin, Outcome};
use super::store::Records;
use super::target::{Objects, Store};
use crate::pipeline::facts::RollbackFacts;
use crate::pipeline::FailureReason;
use crate::release::{self, Release, ReleaseStatus, RollbackPlan};

impl<T: Store + Objects> Engine<'_, T> {
    /// `rollback`: restores a chosen (or the previous good) release as a new release.
    pub async fn rollback(&self, chosen: Option<u64>, origin: &Origin) -> Outcome {
        let mut outcome = Outcome::new();
        // The target is checked before anything is written (the lock is a write).
        match self.read_history().await {
            Ok(history) => {
                if let Err(err) = release::rollback_target(&history.releases, chosen) {
                    return outcome.failed(FailureReason::NoRelease, err);
                }
            }
            Err(failure) => return outcome.failed(failure.reason, failure.message),
        }
        let lock = match self.lock_or_fail().await {
            Ok(lock) => lock,
            Err(failure) => return outcome.failed(failure.reason, failure.message),
        };
        let (history, records) = match self.load_history(&mut outcome.facts).await {
            Ok(found) => found,
            Err(failure) => {
                let outcome = outcome.failed(failure.reason, failure.message);
                return self.release_lock(lock, outcome).await;
            }
        };
        let result = self
            .rollback_locked(history, &records, chosen, origin, &mut outcome)
            .await;
        self.trim_history(&records, None).await;
        let outcome = match result {
            Ok(()) => outcome,
            Err(failure) => outcome.failed(failure.reason, failure.message),
        };
        self.release_lock(lock, outcome).await
    }

    async fn rollback_locked(
        &self,
        history: Vec<Release>,
        records: &Records,
        chosen: Option<u64>,
        origin: &Origin,
        outcome: &mut Outcome,
    ) -> Result<(), Failure> {
        let history = self
            .recover(history, records, &mut outcome.facts)
            .await
            .map_err(|err| Failure::new(FailureReason::RecoveryFailed, err))?;
        let target = release::rollback_target(&history, chosen)
            .map_err(|err| Failure::new(FailureReason::NoRelease, err))?
            .clone();
        let current = release::last_deployed(&history).cloned();
        outcome.facts.previous_release = current.as_ref().map(|r| r.number);
        let mut record = restoring_record(&history, &target, origin);
        let number = record.number;
        outcome.facts.release = Some(number);
        let record_failed = |err| Failure::new(FailureReason::RecordFailed, err);
        self.target
            .save(records, &record)
            .await
            .map_err(record_failed)?;
        outcome.changed = true;
        let leaving: Vec<Value> = current
            .as_ref()
            .map(|r| r.manifests.clone())
            .unwrap_or_default();
        let plan = RollbackPlan::Restore {
            to: target.number,
            reapply: target.manifests.clone(),
            removal: release::removal(&leaving, &target.manifests),
        };
        let rolled = self.restore(plan, current.as_ref().map(|r| r.number)).await;
        outcome.facts.rollback = Some(rolled.clone());
        record.updated = now();
        if let Some(err) = rolled.error {
            record.status = ReleaseStatus::Failed;
            record.description = format!("rollback to release {} failed: {err}", target.number);
            self.save_or_warn(records, &record).await;
            return Err(Failure::new(
                FailureReason::RollbackFailed,
                record.description,
            ));
        }
        record.status = ReleaseStatus::Deployed;
        self.target
            .save(records, &record)
            .await
            .map_err(record_failed)?;
        if let Some(mut previous) = current {
            previous.status = ReleaseStatus::Superseded;
            previous.updated = now();
            self.save_or_warn(records, &previous).await;
        }
        outcome.facts.rendered_manifests = Some(release::audit_yaml(&target.manifests));
        self.runner.info(&format!(
            "release {number} restores release {} and is healthy",
            target.number
        ));
        Ok(())
    }

    /// Re-applies the good release and deletes what the failed release added (or removes a
    /// failed first release), then waits for the restored release to be healthy.
    pub(super) async fn restore(&self, plan: RollbackPlan, from: Option<u64>) -> RollbackFacts {
        let mut facts = RollbackFacts {
            from_release: from,
            ..RollbackFacts::default()
        };
        let (reapply, removal) = match plan {
            RollbackPlan::Restore {
                to,
                reapply,
                removal,
            } => {
                facts.to_release = Some(to);
                self.runner.info(&format!("rolling back to release {to}"));
                (reapply, removal)
            }
            RollbackPlan::RemoveAll { removal } => {
                self.runner.info(
                    "removing the failed first release (there is no earlier release to restore)",
                );
                (Vec::new(), removal)
            }
        };
        let removal = self.with_live_opt_ins(removal).await;
        facts.kept = removal.keep.iter().map(ToString::to_string).collect();
        for object in &facts.kept {
            self.runner.info(&format!(
                "{object} was added by the failed release and is kept (it holds data or other objects)"
            ));
        }
        let mut errors = self.reapply(&reapply, &mut facts).await;
        crash_point("mid-rollback");
        let (deleted, delete_errors) = self.target.delete(&removal.delete).await;
        facts.deleted = deleted;
        errors.extend(delete_errors.iter().map(|e| e.to_string()));
        if errors.is_empty() {
            let (pods, pod_errors) = self.target.delete_stuck_pods(&reapply).await;
            for pod in &pods {
                self.runner.info(&format!(
                    "{pod} of the failed revision deleted: its StatefulSet recreates it from the restored template"
                ));
            }
            facts.pods_deleted = pods;
            errors.extend(pod_errors.iter().map(|e| e.to_string()));
        }
        if errors.is_empty() && !reapply.is_empty() {
            // The restored release gets its own rollout-timeout; a cancel stops this wait too.
            let what = match facts.to_release {
                Some(to) => format!("the restored release {to}"),
                None => "the restored release".into(),
            };
            let (_, failure) = self.track_step(&reapply, &what).await;
            errors.extend(failure.map(|f| f.message));
        }
        if !errors.is_empty() {
            facts.error = Some(errors.join("; "));
        }
        facts
    }

    /// Re-applies the objects of the good release. What autoscalers manage stays theirs; any
    /// other field it sets is taken back from whoever changed it, and named. Returns the errors.
    async fn reapply(&self, reapply: &[Value], facts: &mut RollbackFacts) -> Vec<String> {
        if reapply.is_empty() {
            return Vec::new();
        }
        let autoscalers = self.autoscalers(reapply).await;
        let (restore, left) = release::leave_to_autoscalers(reapply, &autoscalers);
        facts.left_to_controllers = left;
        let (applied, _) = self
            .apply_step(&restore, Conflicts::TakeOver, "rollback", "the rollback")
            .await;
        for taken in &applied.taken_over {
            self.runner
                .warning(&format!("the rollback took fields back: {taken}"));
        }
        facts.taken_over = applied.taken_over;
        facts.restored = applied.changes.iter().map(|c| c.object.clone()).collect();
        applied.errors.iter().map(|e| e.to_string()).collect()
    }
}

/// The pending record of a rollback command: the target's objects under the next number.
fn restoring_record(history: &[Release], target: &Release, origin: &Origin) -> Release {
    let stamp = now();
    Release {
        number: release::next_number(history),
        status: ReleaseStatus::Pending,
        created: stamp.clone(),
        updated: stamp,
        description: format!("rollback to release {}", target.number),
        actor: origin.actor.clone(),
        run_url: origin.run_url.clone(),
        restored_from: Some(target.number),
        prune_pending: Vec::new(),
        not_created: Vec::new(),
        previous_digest: chain_link(history),
        ..target.clone()
    }
}
