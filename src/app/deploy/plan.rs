//! The `plan` verb: a server-side dry run of every object compared with what is live, plus what a deploy would prune and keep. Writes nothing.

use std::collections::BTreeSet;

use serde_json::Value;

use super::engine::{Engine, Outcome};
use super::preflight;
use super::target::{Objects, Store};
use crate::adapters::kube::KubeError;
use crate::pipeline::facts::{PlannedAction, PlannedChange};
use crate::pipeline::FailureReason;
use crate::release::{self, ObjectRef};

/// Kinds (apiVersion, kind) whose CustomResourceDefinition is part of the release.
type DefinedKinds = BTreeSet<(String, String)>;

impl<T: Store + Objects> Engine<'_, T> {
    /// `plan`: what a deploy of `objects` would change, object by object.
    pub async fn plan(&self, objects: &[Value]) -> Outcome {
        let mut outcome = Outcome::new();
        let mut changes = Vec::new();
        let mut errors = Vec::new();
        let defined = preflight::kinds_defined_by_crds(objects);
        for object in objects {
            let Some(reference) = ObjectRef::of(object) else {
                continue;
            };
            match self.plan_one(object, &reference, &defined).await {
                Ok(change) => changes.push(change),
                Err(err) => errors.push(err.to_string()),
            }
        }
        match self.read_history().await {
            Ok(history) => {
                self.plan_removals(&history.releases, objects, &mut changes)
                    .await
            }
            Err(failure) => errors.push(failure.message),
        }
        for change in &changes {
            self.runner.info(&describe(change));
        }
        outcome.facts.dry_run = Some(changes);
        if !errors.is_empty() {
            return outcome.failed(
                FailureReason::DryRunRejected,
                format!(
                    "the server-side dry run rejected the release: {}",
                    errors.join("; ")
                ),
            );
        }
        outcome
    }

    /// One object: its live state against the server's dry run of it.
    async fn plan_one(
        &self,
        object: &Value,
        reference: &ObjectRef,
        defined: &DefinedKinds,
    ) -> Result<PlannedChange, KubeError> {
        let key = (reference.api_version.clone(), reference.kind.clone());
        let live = match self.target.get(reference).await {
            Ok(live) => live,
            Err(KubeError::NotFound { .. }) => None,
            Err(KubeError::UnknownKind { .. }) if defined.contains(&key) => None,
            Err(err) => return Err(err),
        };
        let planned = self
            .target
            .dry_run(object, self.settings.force_conflicts)
            .await;
        planned_change(reference, object, live, planned, defined)
    }

    /// Exactly what a deploy would prune and keep: the last good release and whatever failed
    /// or cancelled releases after it left behind; and the objects that move namespace.
    async fn plan_removals(
        &self,
        history: &[release::Release],
        objects: &[Value],
        changes: &mut Vec<PlannedChange>,
    ) {
        let mut previous: Vec<Value> = release::last_deployed(history)
            .map(|r| r.manifests.clone())
            .unwrap_or_default();
        previous.extend(release::applied_since_last_good(history));
        for (from, to) in release::moved(&previous, objects) {
            let note = format!(
                "moved from namespace {} (created here, deleted there once healthy)",
                from.namespace.as_deref().unwrap_or("-")
            );
            if let Some(change) = changes.iter_mut().find(|c| c.object == to.to_string()) {
                change.fields.push(note);
            }
        }
        if !self.settings.prune {
            return;
        }
        let removal = self
            .with_live_opt_ins(release::removal(&previous, objects))
            .await;
        for (references, action) in [
            (&removal.delete, PlannedAction::Prune),
            (&removal.keep, PlannedAction::Keep),
        ] {
            for reference in references {
                changes.push(PlannedChange {
                    object: reference.to_string(),
                    action,
                    fields: Vec::new(),
                });
            }
        }
    }
}

/// What the dry run says of one object, given what is live (`None`: nothing is).
fn planned_change(
    reference: &ObjectRef,
    object: &Value,
    live: Option<Value>,
    planned: Result<Value, KubeError>,
    defined: &DefinedKinds,
) -> Result<PlannedChange, KubeError> {
    let change = |action, fields| PlannedChange {
        object: reference.to_string(),
        action,
        fields,
    };
    match (live, planned) {
        (None, Ok(_)) => Ok(change(PlannedAction::Create, Vec::new())),
        // A namespace the release itself creates does not exist yet for the dry run, nor does
        // a kind whose CustomResourceDefinition comes with the release.
        (None, Err(KubeError::UnknownKind { api_version, kind }))
            if defined.contains(&(api_version.clone(), kind.clone())) =>
        {
            Ok(change(
                PlannedAction::Create,
                vec![
                    "(not dry-run checked: its CustomResourceDefinition is in this release)".into(),
                ],
            ))
        }
        (None, Err(KubeError::NotFound { .. } | KubeError::NamespaceMissing { .. })) => {
            Ok(change(PlannedAction::Create, Vec::new()))
        }
        (Some(live), Ok(planned)) => {
            let fields = release::diff::changed_fields(&live, &planned);
            let action = if fields.is_empty() {
                PlannedAction::Unchanged
            } else {
                PlannedAction::Change
            };
            Ok(change(action, fields))
        }
        (Some(_), Err(KubeError::Immutable { fields, .. })) if release::allows_replace(object) => {
            Ok(change(PlannedAction::Replace, fields))
        }
        (_, Err(err)) => Err(err),
    }
}

/// The log line of one planned change.
fn describe(change: &PlannedChange) -> String {
    format!(
        "{} would be {}{}",
        change.object,
        match change.action {
            PlannedAction::Create => "created",
            PlannedAction::Change => "changed",
            PlannedAction::Prune => "pruned (once the release is healthy)",
            PlannedAction::Keep =>
                "kept: no longer in the release, but it holds data or other objects",
            PlannedAction::Replace => "deleted and created again (a field of it cannot change)",
            PlannedAction::Unchanged => "unchanged",
        },
        if change.fields.is_empty() {
            String::new()
        } else {
            format!(": {}", change.fields.join(", "))
        }
    )
}
