//! Chart hooks in a deploy: pre-install/pre-upgrade Jobs and Pods run and are waited for before the release is applied, post-install/post-upgrade ones after it is healthy; Helm's delete policies honoured.
//!
//! A hook is not part of the release: it is not recorded, pruned or rolled back. A chart is
//! installed when the last good release has none of its objects, upgraded otherwise.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::apply::Conflicts;
use super::engine::{Engine, Failure};
use super::target::{Apply, Objects, Store};
use crate::adapters::kube::{ApplyOptions, KubeError};
use crate::charts::{self, DeletePolicy, Hook, HookStage, HookVerdict};
use crate::pipeline::FailureReason;
use crate::release::ObjectRef;

/// A chart hook to run: its chart, when it runs, and the object.
#[derive(Debug, Clone, PartialEq)]
pub struct HookObject {
    pub chart: String,
    pub hook: Hook,
    pub object: Value,
}

/// How long a deleted hook object may take to go away before it is created again.
const GONE_WITHIN: Duration = Duration::from_secs(120);

impl<T: Store + Objects> Engine<'_, T> {
    /// Pre-flight of the hooks: each one that does not exist yet is dry-run as the API server
    /// would create it (one that exists is from an earlier run and is deleted and created again
    /// when its turn comes: a dry run against it would compare its immutable fields).
    /// `(problems, notes)`; `created` are the namespaces the release creates.
    pub(super) async fn dry_run_hooks(
        &self,
        hooks: &[HookObject],
        created: &std::collections::BTreeSet<String>,
    ) -> (Vec<String>, Vec<String>) {
        let checks = hooks.iter().filter_map(|hook| {
            let reference = ObjectRef::of(&hook.object)?;
            Some(async move {
                let label = format!("chart `{}`: hook {reference}", hook.chart);
                match self.target.get(&reference).await {
                    Ok(Some(_)) => return None,
                    Ok(None) => {}
                    Err(err) => return Some(Err(format!("{label}: {err}"))),
                }
                match self.target.dry_run(&hook.object, false).await {
                    Ok(_) => None,
                    Err(KubeError::NamespaceMissing { namespace, .. })
                        if created.contains(&namespace) =>
                    {
                        Some(Ok(format!(
                            "{label}: not dry-run checked (its namespace is created by this release)"
                        )))
                    }
                    Err(err) => Some(Err(format!("{label}: {err}"))),
                }
            })
        });
        let mut problems = Vec::new();
        let mut notes = Vec::new();
        for found in futures::future::join_all(checks)
            .await
            .into_iter()
            .flatten()
        {
            match found {
                Ok(note) => notes.push(note),
                Err(problem) => problems.push(format!("dry run: {problem}")),
            }
        }
        (problems, notes)
    }

    /// Runs the hooks due at `stage` (in weight order, one at a time); the first failure.
    /// `installed` is the last good release's objects: a chart with none there is installed.
    pub(super) async fn run_hooks(
        &self,
        hooks: &[HookObject],
        stage: HookStage,
        installed: &[Value],
        number: u64,
    ) -> Option<Failure> {
        for hook in hooks {
            let installing = !installed
                .iter()
                .any(|object| charts::belongs_to(object, &hook.chart));
            let event = stage.event(installing);
            if !hook.hook.events.contains(&event) {
                continue;
            }
            let Some(reference) = ObjectRef::of(&hook.object) else {
                continue;
            };
            let what = format!(
                "chart `{}`: {} hook {reference} (release {number})",
                hook.chart,
                event.as_str()
            );
            self.runner.info(&format!("{what}: running"));
            if let Err(message) = self.run_hook(hook, &reference).await {
                if hook.hook.delete.contains(&DeletePolicy::HookFailed) {
                    let _ = self.target.delete(std::slice::from_ref(&reference)).await;
                }
                return Some(Failure::new(
                    FailureReason::HookFailed,
                    format!("{what} failed: {message}"),
                ));
            }
            self.runner.info(&format!("{what}: succeeded"));
            if hook.hook.delete.contains(&DeletePolicy::HookSucceeded) {
                let (_, errors) = self.target.delete(std::slice::from_ref(&reference)).await;
                for err in errors {
                    self.runner
                        .warning(&format!("{what} succeeded but was not deleted: {err}"));
                }
            }
        }
        None
    }

    /// Creates one hook (after deleting the previous one when its policy says so) and waits
    /// until it succeeds, fails, the rollout timeout passes or the run is cancelled.
    async fn run_hook(&self, hook: &HookObject, reference: &ObjectRef) -> Result<(), String> {
        let deadline = Instant::now() + self.settings.rollout_timeout;
        if hook.hook.delete.contains(&DeletePolicy::BeforeHookCreation) {
            let (_, errors) = self.target.delete(std::slice::from_ref(reference)).await;
            if let Some(err) = errors.first() {
                return Err(format!(
                    "the previous hook object could not be deleted: {err}"
                ));
            }
            self.wait_gone(reference).await?;
        }
        let applied = self
            .target
            .apply(
                std::slice::from_ref(&hook.object),
                Apply {
                    options: ApplyOptions {
                        dry_run: false,
                        force: true,
                    },
                    conflicts: Conflicts::AsOptions,
                    concurrency: 1,
                    step: "hook",
                },
            )
            .await;
        if let Some(err) = applied.errors.first() {
            return Err(format!("it could not be created: {err}"));
        }
        loop {
            if self.cancel.is_cancelled() {
                return Err("the run was cancelled while it ran".into());
            }
            let last = match self.target.get(reference).await {
                Ok(Some(live)) => match charts::hook_verdict(&live) {
                    HookVerdict::Succeeded => return Ok(()),
                    HookVerdict::Failed(why) => return Err(why),
                    HookVerdict::Running(what) => what,
                },
                Ok(None) => return Err("it was deleted while it ran".into()),
                Err(err) => format!("not read: {err}"),
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "it did not finish within the rollout timeout ({}s); last seen: {last}",
                    self.settings.rollout_timeout.as_secs()
                ));
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = self.cancel.cancelled() => {}
            }
        }
    }

    /// Waits until a deleted object is gone (its pods' finalizers done).
    async fn wait_gone(&self, reference: &ObjectRef) -> Result<(), String> {
        let deadline = Instant::now() + GONE_WITHIN;
        loop {
            match self.target.get(reference).await {
                Ok(None) => return Ok(()),
                Ok(Some(_)) if Instant::now() < deadline => {}
                Ok(Some(_)) => {
                    return Err(format!(
                        "the previous {reference} was still being deleted after {}s",
                        GONE_WITHIN.as_secs()
                    ))
                }
                Err(err) => {
                    return Err(format!("the previous {reference} could not be read: {err}"))
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
