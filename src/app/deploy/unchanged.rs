//! The rerun of exactly the deployed release (a workflow re-run, a commit that changed only docs): verified against the cluster in a few requests, without the lock, a dry run or a write, unless something drifted.
//!
//! Design note: the release records say what is deployed; one LIST per kind and namespace
//! says whether the cluster still holds it (what gantry's field manager owns, see
//! [`crate::release::owned`]); the workloads are then tracked as usual, which for healthy
//! ones is their first status. Only when everything holds is the run finished here: a drifted
//! object goes the whole way (pre-flight, lock), and only what drifted is applied again.

use serde_json::Value;

use super::engine::{plural, Engine, Outcome};
use super::target::{Objects, Store};
use crate::pipeline::facts::{ChangeAction, ObjectChange};
use crate::release::{self, Release};

/// What the rerun check concluded.
pub(super) enum Rerun {
    /// Not the deployed release (or its records are not settled): deploy as usual.
    NewRelease,
    /// The deployed release, and the cluster holds it: finished (the outcome says so).
    Verified(Box<Outcome>),
    /// The deployed release, but these objects (indexes into the release) drifted, each with why.
    Drifted(Vec<(usize, String)>),
}

impl<T: Store + Objects> Engine<'_, T> {
    /// Whether `objects` (images pinned) are exactly the deployed release, and whether the
    /// cluster still holds it. Reads only.
    pub(super) async fn rerun_check(&self, objects: &[Value]) -> Rerun {
        let Ok(history) = self.read_history().await else {
            return Rerun::NewRelease; // the deploy reads it again and reports
        };
        let Some(current) = deployed_as_is(&history.releases, objects) else {
            return Rerun::NewRelease;
        };
        let verified = self.target.verify(objects).await;
        if !verified.unreadable.is_empty() {
            for why in &verified.unreadable {
                self.runner
                    .info(&format!("could not verify {why}; deploying as usual"));
            }
            return Rerun::NewRelease;
        }
        if !verified.differs.is_empty() {
            return Rerun::Drifted(verified.differs);
        }
        let mut outcome = Outcome::new();
        let number = current.number;
        outcome.facts.release = Some(number);
        outcome.facts.previous_release = Some(number);
        outcome.facts.applied = objects
            .iter()
            .filter_map(release::ObjectRef::of)
            .map(|reference| ObjectChange {
                object: reference.to_string(),
                action: ChangeAction::Unchanged,
            })
            .collect();
        let what = format!("release {number} (deployed, unchanged)");
        let (tracked, failure) = self.track_step(objects, &what).await;
        let workloads = tracked.workloads.len();
        outcome.facts.workloads = tracked.workloads;
        if let Some(failure) = failure {
            outcome.facts.failure = failure.evidence.map(|(_, evidence)| evidence);
            return Rerun::Verified(Box::new(outcome.failed(
                failure.reason,
                format!(
                    "{}; nothing older to roll back to was asked for: use the rollback command",
                    failure.message
                ),
            )));
        }
        let sentence = format!(
            "unchanged, verified: release {number} is deployed with exactly these manifests; the {} object{} hold every field gantry applied ({} LIST request{} compared what gantry's field manager owns) and {workloads} workload{} {} healthy. Nothing was written.",
            objects.len(),
            plural(objects.len()),
            verified.lists,
            plural(verified.lists),
            plural(workloads),
            if workloads == 1 { "is" } else { "are" },
        );
        self.runner.info(&sentence);
        outcome.facts.verified = Some(sentence);
        outcome.facts.rendered_manifests = Some(release::audit_yaml(objects));
        Rerun::Verified(Box::new(outcome))
    }
}

/// The deployed release when `objects` are exactly its manifests and nothing was attempted
/// since (no pending, failed or rolled-back release after it, no prune left to finish).
fn deployed_as_is<'h>(history: &'h [Release], objects: &[Value]) -> Option<&'h Release> {
    let current = release::last_deployed(history)?;
    let deployed = history
        .iter()
        .filter(|r| r.status == release::ReleaseStatus::Deployed)
        .count();
    let settled = release::applied_since_last_good(history).is_empty()
        && current.prune_pending.is_empty()
        && deployed == 1
        && history.iter().all(|r| r.number <= current.number);
    (settled && current.manifests == objects).then_some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::ReleaseStatus;
    use serde_json::json;

    fn record(number: u64, status: ReleaseStatus, manifests: Vec<Value>) -> Release {
        crate::release::tests::release(number, status, &manifests)
    }

    #[test]
    fn only_a_settled_deployed_release_with_the_same_manifests_is_a_rerun() {
        let v1 = vec![json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})];
        let v2 = vec![json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}})];
        let deployed = record(3, ReleaseStatus::Deployed, v1.clone());
        let mut pruning = deployed.clone();
        pruning.prune_pending = vec![release::ObjectRef::of(&v2[0]).unwrap()];
        for (name, history, objects, rerun) in [
            ("same manifests", vec![deployed.clone()], &v1, true),
            ("other manifests", vec![deployed.clone()], &v2, false),
            ("nothing deployed", vec![], &v1, false),
            (
                "a failed release since",
                vec![
                    deployed.clone(),
                    record(4, ReleaseStatus::Failed, v2.clone()),
                ],
                &v1,
                false,
            ),
            (
                "a pending release since",
                vec![
                    deployed.clone(),
                    record(4, ReleaseStatus::Pending, v1.clone()),
                ],
                &v1,
                false,
            ),
            ("a prune to finish", vec![pruning], &v1, false),
            (
                "killed before the last one was marked superseded",
                vec![
                    record(2, ReleaseStatus::Deployed, v2.clone()),
                    deployed.clone(),
                ],
                &v1,
                false,
            ),
            (
                "superseded before",
                vec![
                    record(2, ReleaseStatus::Superseded, v2.clone()),
                    deployed.clone(),
                ],
                &v1,
                true,
            ),
        ] {
            assert_eq!(deployed_as_is(&history, objects).is_some(), rerun, "{name}");
        }
    }
}
