//! Recovery, the first step of every verb that writes: an environment left by killed runs is brought back to a consistent release before the verb's own work.
//!
//! A release left `pending` is undone (its objects the last good release lacks are deleted and
//! the last good release re-applied), or, for an interrupted `rollback` command, finished; a
//! run killed between recording a new release deployed and superseding the old one is repaired,
//! its prune finished. Each is recorded with what happened.

use serde_json::Value;

use super::engine::{now, plural, Engine};
use super::store::Records;
use super::target::{Objects, Store};
use crate::pipeline::facts::DeployFacts;
use crate::release::{self, Release, ReleaseStatus, RollbackPlan};

impl<T: Store + Objects> Engine<'_, T> {
    /// Brings the environment back to a consistent release; returns the history as it now is.
    pub(super) async fn recover(
        &self,
        mut history: Vec<Release>,
        records: &Records,
        facts: &mut DeployFacts,
    ) -> Result<Vec<Release>, String> {
        self.settle_deployed(&mut history, records, facts).await?;
        let pending: Vec<Release> = release::interrupted(&history)
            .into_iter()
            .cloned()
            .collect();
        if pending.is_empty() {
            return Ok(history);
        }
        let numbers: Vec<String> = pending.iter().map(|r| r.number.to_string()).collect();
        let one = pending.len() == 1;
        self.runner.warning(&format!(
            "release{} {} {} interrupted (the run that started {} stopped before recording an outcome); restoring a consistent release before this run's own work",
            plural(pending.len()),
            numbers.join(", "),
            if one { "was" } else { "were" },
            if one { "it" } else { "them" },
        ));
        let last_good = release::last_deployed(&history).cloned();
        let mut pending = pending;
        let not_created = self
            .set_aside_adopted(&mut pending, last_good.as_ref())
            .await;
        // An interrupted rollback command is finished: its target is what was wanted.
        let newest = pending.last().cloned();
        let finishing = newest
            .as_ref()
            .filter(|r| r.restored_from.is_some())
            .cloned();
        let plan = recovery_plan(&pending, finishing.as_ref(), last_good.as_ref());
        let restored = self.restore(plan, newest.as_ref().map(|r| r.number)).await;
        if let Some(err) = &restored.error {
            return Err(format!(
                "could not restore a consistent release after interrupted release {}: {err}",
                numbers.join(", ")
            ));
        }
        let finished = finishing.as_ref().map(|r| r.number);
        for record in history.iter_mut() {
            if record.status != ReleaseStatus::Pending {
                continue;
            }
            if let Some((_, foreign)) = not_created.iter().find(|(n, _)| *n == record.number) {
                record.not_created = foreign.clone();
            }
            if Some(record.number) == finished {
                record.status = ReleaseStatus::Deployed;
                record.description = format!(
                    "{} (interrupted, finished by the next run)",
                    record.description
                );
            } else {
                record.status = ReleaseStatus::Failed;
                record.description = match restored.to_release {
                    Some(to) => format!("interrupted; the next run restored release {to}"),
                    None => "interrupted; the next run removed it (no earlier release)".into(),
                };
                facts.interrupted.push(record.number);
            }
            record.updated = now();
            self.target.save(records, record).await?;
        }
        if let (Some(finished), Some(good)) = (finished, &last_good) {
            if let Some(record) = history
                .iter_mut()
                .find(|r| r.number == good.number && r.number != finished)
            {
                record.status = ReleaseStatus::Superseded;
                record.updated = now();
                self.target.save(records, record).await?;
            }
        }
        Ok(history)
    }

    /// Two `deployed` records: the newer is current (it was recorded healthy first) and a run
    /// stopped between recording it and superseding the older one, maybe mid-prune. The prune
    /// is finished and the older record superseded.
    async fn settle_deployed(
        &self,
        history: &mut [Release],
        records: &Records,
        facts: &mut DeployFacts,
    ) -> Result<(), String> {
        let Some(current) = release::last_deployed(history).cloned() else {
            return Ok(());
        };
        let older_deployed = history
            .iter()
            .any(|r| r.status == ReleaseStatus::Deployed && r.number != current.number);
        if older_deployed && !current.prune_pending.is_empty() {
            self.runner.warning(&format!(
                "release {} was recorded healthy but its run stopped while pruning; finishing the prune",
                current.number
            ));
            let (deleted, errors) = self.target.delete(&current.prune_pending).await;
            facts.pruned.extend(deleted);
            if let Some(error) = errors.first() {
                return Err(format!(
                    "could not finish pruning after release {}: {error}",
                    current.number
                ));
            }
        }
        for record in history.iter_mut() {
            if record.status == ReleaseStatus::Deployed && record.number != current.number {
                record.status = ReleaseStatus::Superseded;
                record.updated = now();
                self.target.save(records, record).await?;
            }
        }
        Ok(())
    }
}

/// What restores consistency: the target of an interrupted rollback command, else the last
/// good release, else nothing (every object of the interrupted releases removed).
impl<T: Store + Objects> Engine<'_, T> {
    /// Marks on each interrupted release the objects that existed before its run and takes
    /// them out of what undoing it deletes; returns them by release number.
    async fn set_aside_adopted(
        &self,
        pending: &mut [Release],
        last_good: Option<&Release>,
    ) -> Vec<(u64, Vec<release::ObjectRef>)> {
        let mut not_created = Vec::new();
        for record in pending {
            record.not_created = self.existed_before(record, last_good).await;
            not_created.push((record.number, record.not_created.clone()));
            let foreign = &record.not_created;
            record.manifests.retain(|object| {
                release::ObjectRef::of(object)
                    .is_none_or(|o| !foreign.iter().any(|f| f.identity() == o.identity()))
            });
        }
        not_created
    }

    /// Objects of an interrupted release, not in the last good one, that existed before its
    /// run: it adopted them, so undoing it leaves them (see [`release::existed_before`]).
    async fn existed_before(
        &self,
        record: &Release,
        last_good: Option<&Release>,
    ) -> Vec<release::ObjectRef> {
        let (_, candidates) = release::rollback_scope(&record.manifests, last_good, &[]);
        let mut found = Vec::new();
        for candidate in candidates {
            if let Ok(Some(live)) = self.target.get(&candidate).await {
                if release::existed_before(&live, record) {
                    self.runner.info(&format!(
                        "{candidate} existed before interrupted release {} adopted it: left as it is",
                        record.number
                    ));
                    found.push(candidate);
                }
            }
        }
        found
    }
}

fn recovery_plan(
    pending: &[Release],
    finishing: Option<&Release>,
    last_good: Option<&Release>,
) -> RollbackPlan {
    let mut leaving: Vec<Value> = pending
        .iter()
        .flat_map(|record| record.manifests.iter().cloned())
        .collect();
    match (finishing, last_good) {
        (Some(rollback), _) => {
            if let Some(good) = last_good {
                leaving.extend(good.manifests.iter().cloned());
            }
            RollbackPlan::Restore {
                to: rollback.restored_from.unwrap_or(rollback.number),
                reapply: rollback.manifests.clone(),
                removal: release::removal(&leaving, &rollback.manifests),
            }
        }
        (None, Some(good)) => RollbackPlan::Restore {
            to: good.number,
            reapply: good.manifests.clone(),
            removal: release::removal(&leaving, &good.manifests),
        },
        (None, None) => RollbackPlan::RemoveAll {
            removal: release::removal(&leaving, &[]),
        },
    }
}
