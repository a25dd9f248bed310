//! The `deploy` verb: pre-flight, lock, recover, record the release pending, apply, track, then prune and record it deployed, or roll back and record why.

use serde_json::Value;

use super::apply::Conflicts;
use super::engine::{
    chain_link, crash_point, now, plural, Ending, Engine, Failure, Origin, Outcome,
};
use super::hooks::HookObject;
use super::store::Records;
use super::target::{Objects, Preflight, PreflightScope, Store};
use super::unchanged::Rerun;
use crate::charts::HookStage;
use crate::pipeline::facts::{ChangeAction, DeployFacts, ObjectChange, RollbackFacts};
use crate::pipeline::FailureReason;
use crate::release::{self, ObjectRef, Release, ReleaseStatus};

/// One release being deployed: its record, where records go, and what it replaces.
struct Attempt<'r> {
    record: Release,
    records: &'r Records,
    last_good: Option<Release>,
    /// Objects failed or cancelled runs after the last good release may have left.
    leftovers: Vec<Value>,
    /// How many records the environment has with this one.
    records_count: usize,
}

impl<T: Store + Objects> Engine<'_, T> {
    /// `deploy`: applies `objects` (rendered, in apply order) as a new release, tracks it,
    /// prunes what the last release had and this one has not, rolls back on failure.
    pub async fn deploy(&self, objects: Vec<Value>, origin: &Origin) -> Outcome {
        self.deploy_with_hooks(objects, &[], origin).await
    }

    /// [`Engine::deploy`] with chart hooks: those due before the release run after its pending
    /// record is written and before anything of it is applied; those due after, once it is
    /// healthy (a failing one rolls the release back). A verified rerun runs none.
    pub async fn deploy_with_hooks(
        &self,
        mut objects: Vec<Value>,
        hooks: &[HookObject],
        origin: &Origin,
    ) -> Outcome {
        let mut outcome = Outcome::new();
        let adoption = self.find_adopted(&mut objects).await;
        let images = self.target.pin_images(&mut objects).await;
        self.keep_adopted_images(&adoption, &mut objects);
        self.log_images(&images);
        let mut drifted = None;
        if images.problems.is_empty() {
            match self.rerun_check(&objects).await {
                Rerun::Verified(done) => return *done,
                Rerun::Drifted(differs) => drifted = Some(differs),
                Rerun::NewRelease => {}
            }
        }
        // A drifted rerun applies only what drifted: that is what the pre-flight checks.
        let mut drifted_objects: Option<Vec<Value>> = drifted.as_ref().map(|differs| {
            differs
                .iter()
                .filter_map(|(index, _)| objects.get(*index).cloned())
                .collect()
        });
        let checked = match drifted_objects.as_mut() {
            Some(subset) => subset,
            None => &mut objects,
        };
        if let Err(failure) = self
            .preflight(checked, hooks, images, &mut outcome.facts)
            .await
        {
            return outcome.failed(failure.reason, failure.message);
        }
        for namespace in
            std::iter::once(&self.settings.namespace).chain(&self.settings.chart_namespaces)
        {
            match self.target.ensure_namespace(namespace).await {
                Ok(created) => outcome.changed |= created,
                Err(err) => return outcome.failed(FailureReason::ClusterError, err.to_string()),
            }
        }
        let lock = match self.lock_or_fail().await {
            Ok(lock) => lock,
            Err(failure) => return outcome.failed(failure.reason, failure.message),
        };
        let outcome = self
            .deploy_locked(objects, hooks, origin, outcome, drifted)
            .await;
        self.release_lock(lock, outcome).await
    }

    /// Logs the images pinned by digest.
    fn log_images(&self, images: &Preflight) {
        for (object, container, from, to) in &images.pinned {
            self.runner
                .info(&format!("{object} {container}: {from} resolved to {to}"));
        }
    }

    /// Pre-flight before the first write: images resolved (and pinned) before, the dry run
    /// of the release and of its chart hooks passes, the identity may do everything the
    /// release needs. Every problem at once.
    async fn preflight(
        &self,
        objects: &mut [Value],
        hooks: &[HookObject],
        images: Preflight,
        facts: &mut DeployFacts,
    ) -> Result<(), Failure> {
        let scope = PreflightScope {
            force_conflicts: self.settings.force_conflicts,
            home: &self.settings.namespace,
            chart_namespaces: &self.settings.chart_namespaces,
        };
        let created = super::preflight::created_namespaces(
            objects,
            &std::iter::once(self.settings.namespace.clone())
                .chain(self.settings.chart_namespaces.iter().cloned())
                .collect::<Vec<_>>(),
        );
        let (mut found, (hook_problems, hook_notes)) = futures::join!(
            self.target.preflight(objects, &scope),
            self.dry_run_hooks(hooks, &created)
        );
        found.unverified.splice(0..0, images.unverified);
        found.problems.splice(0..0, images.problems);
        found.problems.extend(hook_problems);
        found.deferred.extend(hook_notes);
        let mut notes = Vec::new();
        for unverified in &found.unverified {
            self.runner.warning(unverified);
            notes.push(format!("unverified: {unverified}"));
        }
        for note in &found.deferred {
            self.runner.info(note);
            notes.push(note.clone());
        }
        if found.problems.is_empty() {
            facts.preflight = notes;
            return Ok(());
        }
        for problem in &found.problems {
            self.runner.error(&format!("pre-flight: {problem}"));
        }
        facts.preflight = found.problems.clone();
        Err(Failure::new(
            FailureReason::PreflightFailed,
            format!(
                "pre-flight found {} problem{}; nothing was applied: {}",
                found.problems.len(),
                plural(found.problems.len()),
                found.problems.join("; ")
            ),
        ))
    }

    async fn deploy_locked(
        &self,
        objects: Vec<Value>,
        hooks: &[HookObject],
        origin: &Origin,
        mut outcome: Outcome,
        drifted: Option<Vec<(usize, String)>>,
    ) -> Outcome {
        let (history, records) = match self.load_history(&mut outcome.facts).await {
            Ok(found) => found,
            Err(failure) => return outcome.failed(failure.reason, failure.message),
        };
        let history = match self.recover(history, &records, &mut outcome.facts).await {
            Ok(history) => history,
            Err(err) => {
                outcome.changed = true;
                return outcome.failed(FailureReason::RecoveryFailed, err);
            }
        };
        crash_point("before-pending-record");
        let last_good = release::last_deployed(&history).cloned();
        let leftovers = release::applied_since_last_good(&history);
        outcome.facts.previous_release = last_good.as_ref().map(|r| r.number);
        if let Some(current) = last_good.as_ref().filter(|r| r.manifests == objects) {
            if leftovers.is_empty() {
                return self
                    .redeploy_current(current.clone(), drifted, outcome)
                    .await;
            }
        }
        let mut attempt = Attempt {
            record: pending_record(&history, &self.environment, &objects, origin),
            records: &records,
            last_good,
            leftovers,
            records_count: history.len() + 1,
        };
        let number = attempt.record.number;
        outcome.facts.release = Some(number);
        // The pending record goes first: a run killed from here on is recognised.
        if let Err(err) = self.target.save(&records, &attempt.record).await {
            return outcome.failed(
                FailureReason::RecordFailed,
                format!("could not write the release record, nothing was applied: {err}"),
            );
        }
        outcome.changed = true;
        crash_point("after-pending-record");
        self.runner.info(&format!(
            "release {number}: applying {} objects{}",
            objects.len(),
            match &attempt.last_good {
                Some(good) => format!(" (last good release: {})", good.number),
                None => " (first release of this environment)".into(),
            }
        ));
        // A chart is upgraded when the last good release has its objects, or when they are
        // taken over from the Helm release that installed it.
        let mut installed = attempt
            .last_good
            .as_ref()
            .map(|good| good.manifests.clone())
            .unwrap_or_default();
        installed.extend(
            objects
                .iter()
                .filter(|object| crate::charts::adopting(object))
                .cloned(),
        );
        match self
            .roll_out(&objects, hooks, &installed, number, &mut outcome.facts)
            .await
        {
            None => self.finish_healthy(&mut attempt, &objects, outcome).await,
            Some(failure) => self.finish_failed(&mut attempt, failure, outcome).await,
        }
    }

    /// Applies the release, then (when every object applied) tracks it; how it failed, if it did.
    async fn roll_out(
        &self,
        objects: &[Value],
        hooks: &[HookObject],
        installed: &[Value],
        number: u64,
        facts: &mut DeployFacts,
    ) -> Option<Failure> {
        let what = format!("release {number}");
        if let Some(failure) = self
            .run_hooks(hooks, HookStage::Before, installed, number)
            .await
        {
            return Some(failure);
        }
        let (applied, failure) = self
            .apply_step(objects, Conflicts::AsOptions, "apply", &what)
            .await;
        facts.applied = applied.changes;
        facts.replaced = applied.replaced;
        if failure.is_some() {
            return failure;
        }
        crash_point("before-tracking");
        let (tracked, failure) = self.track_step(objects, &what).await;
        facts.workloads = tracked.workloads;
        if let Some((_, evidence)) = failure.as_ref().and_then(|f| f.evidence.as_ref()) {
            facts.failure = Some(evidence.clone());
        }
        if failure.is_some() {
            return failure;
        }
        self.run_hooks(hooks, HookStage::After, installed, number)
            .await
    }

    /// Healthy: only now is anything of the previous release deleted. The record says what is
    /// still to prune, so a run killed mid-prune is finished by the next one.
    async fn finish_healthy(
        &self,
        attempt: &mut Attempt<'_>,
        objects: &[Value],
        mut outcome: Outcome,
    ) -> Outcome {
        let number = attempt.record.number;
        let mut previous: Vec<Value> = attempt
            .last_good
            .as_ref()
            .map(|r| r.manifests.clone())
            .unwrap_or_default();
        previous.extend(attempt.leftovers.iter().cloned());
        let removal = if self.settings.prune {
            self.with_live_opt_ins(release::removal(&previous, objects))
                .await
        } else {
            release::Removal::default()
        };
        crash_point("before-deployed-record");
        let record = &mut attempt.record;
        record.status = ReleaseStatus::Deployed;
        record.updated = now();
        record.description = "deployed".into();
        record.prune_pending = removal.delete.clone();
        if let Err(err) = self.target.save(attempt.records, record).await {
            return outcome.failed(
                FailureReason::RecordFailed,
                format!("release {number} is healthy but its record could not be written: {err}"),
            );
        }
        crash_point("before-prune");
        self.prune(&removal, &mut outcome.facts).await;
        crash_point("before-superseded-record");
        if let Some(mut previous) = attempt.last_good.take() {
            previous.status = ReleaseStatus::Superseded;
            previous.updated = now();
            if let Err(err) = self.target.save(attempt.records, &previous).await {
                self.runner.warning(&format!(
                    "could not mark release {} superseded: {err}",
                    previous.number
                ));
            }
        }
        self.trim_history(attempt.records, Some(attempt.records_count))
            .await;
        outcome.facts.rendered_manifests = Some(release::audit_yaml(objects));
        outcome
    }

    /// Deletes what the release no longer has (warnings on failure: the release is healthy),
    /// and says what was kept because it holds data.
    async fn prune(&self, removal: &release::Removal, facts: &mut DeployFacts) {
        let (deleted, errors) = self.target.delete(&removal.delete).await;
        for object in &deleted {
            self.runner.info(&format!("{object} pruned"));
        }
        facts.pruned = deleted;
        for error in errors {
            self.runner.warning(&format!("prune: {error}"));
        }
        facts.kept = removal.keep.iter().map(ToString::to_string).collect();
        for object in &facts.kept {
            self.runner.info(&format!(
                "{object} is no longer in the release and is kept (it holds data or other objects; annotate it {}: \"true\" to let gantry delete it)",
                release::ALLOW_DELETE_ANNOTATION
            ));
        }
    }

    /// Failed: roll back (unless rollback is off or the run was cancelled), then record both.
    async fn finish_failed(
        &self,
        attempt: &mut Attempt<'_>,
        failure: Failure,
        outcome: Outcome,
    ) -> Outcome {
        if !self.settings.rollback || failure.reason == FailureReason::Cancelled {
            return self.leave_as_applied(attempt, failure, outcome).await;
        }
        crash_point("before-rollback");
        let number = attempt.record.number;
        let (plan, left) = attempt.rollback_plan(&outcome.facts.applied);
        let mut rolled = self.restore(plan, Some(number)).await;
        crash_point("before-rollback-record");
        let message = failure.message;
        // Objects the apply never reached need no word: the run did not touch them.
        rolled.left_in_place = left
            .iter()
            .map(ToString::to_string)
            .filter(|name| outcome.facts.applied.iter().any(|c| &c.object == name))
            .collect();
        attempt.record.not_created = left;
        self.record_rollback(attempt, &rolled, &message).await;
        let mut outcome = outcome;
        outcome.facts.rollback = Some(rolled.clone());
        if let Some(err) = rolled.error {
            return outcome.failed(
                FailureReason::RollbackFailed,
                format!(
                    "an error occurred while rolling back: {err}; original error: {message}. The environment may be between releases: run `gantry rollback` or fix and redeploy"
                ),
            );
        }
        if let Some(good) = &attempt.last_good {
            outcome.facts.rendered_manifests = Some(release::audit_yaml(&good.manifests));
        }
        outcome.ending = Ending::RolledBack {
            reason: failure.reason,
            message: rolled_back_message(&message, &rolled),
        };
        outcome
    }

    /// Records the failed release as rolled back (or failed, when the rollback failed too).
    async fn record_rollback(
        &self,
        attempt: &mut Attempt<'_>,
        rolled: &RollbackFacts,
        message: &str,
    ) {
        let record = &mut attempt.record;
        record.status = match rolled.error {
            None => ReleaseStatus::RolledBack,
            Some(_) => ReleaseStatus::Failed,
        };
        record.updated = now();
        record.description = match (&rolled.error, rolled.to_release) {
            (None, Some(to)) => format!("{message}; rolled back to release {to}"),
            (None, None) => format!("{message}; first release removed"),
            (Some(err), _) => format!("{message}; the rollback failed too: {err}"),
        };
        self.save_or_warn(attempt.records, record).await;
    }

    /// Rollback is off, or the run was cancelled: the release stays as applied and says so.
    async fn leave_as_applied(
        &self,
        attempt: &mut Attempt<'_>,
        failure: Failure,
        outcome: Outcome,
    ) -> Outcome {
        let number = attempt.record.number;
        let record = &mut attempt.record;
        record.status = ReleaseStatus::Failed;
        record.updated = now();
        record.description = failure.message.clone();
        let saved = self.target.save(attempt.records, record).await;
        let state = match (&attempt.last_good, failure.reason) {
            (_, FailureReason::Cancelled) => format!(
                "the cluster is left with release {number} partly rolled out; the next run reconciles it"
            ),
            (Some(good), _) => format!(
                "rollback is off: the cluster runs release {number} as applied, not the last good release {}",
                good.number
            ),
            (None, _) => format!("rollback is off: release {number} stays as applied"),
        };
        let mut text = format!("{}; {state}", failure.message);
        if let Err(err) = saved {
            text.push_str(&format!("; its record could not be written: {err}"));
        }
        outcome.failed(failure.reason, text)
    }

    /// A rerun of exactly the release that is deployed: what drifted (all of it, when that
    /// could not be told) re-applied, the whole release verified healthy, without a new record.
    async fn redeploy_current(
        &self,
        current: Release,
        drifted: Option<Vec<(usize, String)>>,
        mut outcome: Outcome,
    ) -> Outcome {
        let to_apply: Vec<Value> = match &drifted {
            Some(differs) => {
                for (index, why) in differs {
                    let name = current
                        .manifests
                        .get(*index)
                        .and_then(release::ObjectRef::of)
                        .map(|r| r.to_string())
                        .unwrap_or_default();
                    self.runner.info(&format!("{name}: {why}"));
                }
                differs
                    .iter()
                    .filter_map(|(index, _)| current.manifests.get(*index).cloned())
                    .collect()
            }
            None => current.manifests.clone(),
        };
        self.runner.info(&format!(
            "release {} is already deployed with exactly these manifests: re-applying {} of its {} objects, no new release",
            current.number,
            to_apply.len(),
            current.manifests.len()
        ));
        outcome.facts.release = Some(current.number);
        outcome.facts.previous_release = Some(current.number);
        let what = format!("release {} (deployed, unchanged)", current.number);
        let (applied, failure) = self
            .apply_step(&to_apply, Conflicts::AsOptions, "apply", &what)
            .await;
        outcome.changed = applied.wrote;
        let drifted: Vec<&str> = applied
            .changes
            .iter()
            .filter(|c| c.action != ChangeAction::Unchanged)
            .map(|c| c.object.as_str())
            .collect();
        if !drifted.is_empty() {
            self.runner.warning(&format!(
                "{} object{} had drifted from release {} and {} restored: {}",
                drifted.len(),
                plural(drifted.len()),
                current.number,
                if drifted.len() == 1 { "was" } else { "were" },
                drifted.join(", ")
            ));
        }
        outcome.facts.applied = applied.changes;
        if let Some(failure) = failure {
            return outcome.failed(failure.reason, failure.message);
        }
        let (tracked, failure) = self.track_step(&current.manifests, &what).await;
        outcome.facts.workloads = tracked.workloads;
        outcome.facts.rendered_manifests = Some(release::audit_yaml(&current.manifests));
        let Some(failure) = failure else {
            return outcome;
        };
        outcome.facts.failure = failure.evidence.map(|(_, evidence)| evidence);
        outcome.failed(
            failure.reason,
            format!(
                "{}; nothing older to roll back to was asked for: use the rollback command",
                failure.message
            ),
        )
    }
}

/// The pending record of a new release: the next number, chained to the newest record.
fn pending_record(
    history: &[Release],
    environment: &str,
    objects: &[Value],
    origin: &Origin,
) -> Release {
    let stamp = now();
    Release {
        environment: environment.to_string(),
        number: release::next_number(history),
        status: ReleaseStatus::Pending,
        commit: origin.commit.clone(),
        images: origin.images.clone(),
        manifests: objects.to_vec(),
        created: stamp.clone(),
        updated: stamp,
        description: "applying".into(),
        actor: origin.actor.clone(),
        run_url: origin.run_url.clone(),
        restored_from: None,
        prune_pending: Vec::new(),
        not_created: Vec::new(),
        previous_digest: chain_link(history),
    }
}

impl Attempt<'_> {
    /// What rolling back the failed release does, and the objects it leaves in place because
    /// they existed before this run.
    fn rollback_plan(&self, applied: &[ObjectChange]) -> (release::RollbackPlan, Vec<ObjectRef>) {
        let created: Vec<String> = applied
            .iter()
            .filter(|change| change.action == ChangeAction::Created)
            .map(|change| change.object.clone())
            .collect();
        let (scope, left) =
            release::rollback_scope(&self.record.manifests, self.last_good.as_ref(), &created);
        let mut failed_view = self.record.clone();
        failed_view.manifests = scope;
        failed_view.manifests.extend(self.leftovers.iter().cloned());
        let plan = release::rollback_plan(&failed_view, self.last_good.as_ref());
        (plan, left)
    }
}

/// The message of a successful rollback after `message`: what is restored, and what was left
/// in place.
fn rolled_back_message(message: &str, rolled: &RollbackFacts) -> String {
    let left = match rolled.left_in_place.len() {
        0 => String::new(),
        n => format!(
            " ({n} object{} that existed before this run {} left as {}: {})",
            plural(n),
            if n == 1 { "was" } else { "were" },
            if n == 1 { "it is" } else { "they are" },
            rolled.left_in_place.join(", ")
        ),
    };
    match (rolled.to_release, left.is_empty()) {
        (Some(to), _) => {
            format!("{message}; rolled back: release {to} is restored and healthy{left}")
        }
        (None, true) => {
            format!("{message}; the first release was removed entirely (nothing of it is left)")
        }
        (None, false) => format!("{message}; the first release was removed{left}"),
    }
}
