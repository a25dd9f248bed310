//! The `history` and `unlock` verbs: the environment's releases and lock events, newest first; and breaking a lock whose run is known to be gone, recorded in the history.

use super::engine::{Engine, Origin, Outcome};
use super::store::Unlocked;
use super::target::{Objects, Store};
use crate::pipeline::FailureReason;
use crate::release;

impl<T: Store + Objects> Engine<'_, T> {
    /// `unlock`: breaks the environment lock whoever holds it, and records that in the
    /// history. The run that held it, if it still lives, stops writing at its next renewal (it
    /// finds another state of the Lease).
    pub async fn unlock(&self, origin: &Origin) -> Outcome {
        let mut outcome = Outcome::new();
        let at = self.location();
        let (holder, renewed) = match self.target.break_lock(&at).await {
            Ok(Unlocked::WasFree) => {
                self.runner
                    .info("the environment lock is not held: nothing to unlock");
                return outcome;
            }
            Ok(Unlocked::Broken { holder, renewed }) => (holder, renewed),
            Err(err) => return outcome.failed(FailureReason::ClusterError, err.to_string()),
        };
        let sentence = format!(
            "lock broken by {} ({}): it was held by {holder}, last renewed {}",
            origin.actor.as_deref().unwrap_or("a local run"),
            origin.run_url.as_deref().unwrap_or("gantry unlock"),
            renewed.as_deref().unwrap_or("never")
        );
        self.runner.warning(&sentence);
        outcome.changed = true;
        let time = k8s_openapi::jiff::Timestamp::now();
        if let Err(err) = self.target.record_lock_event(&at, &time, &sentence).await {
            self.runner.warning(&format!(
                "the lock is broken, but recording that in the history failed: {err}"
            ));
        }
        outcome.facts.lock_events = vec![format!("{time}: {sentence}")];
        outcome
    }

    /// `history`: the environment's releases, newest first, after its lock events.
    pub async fn history(&self) -> Outcome {
        let mut outcome = Outcome::new();
        match self.target.lock_events(&self.location()).await {
            Ok(events) => {
                for event in &events {
                    self.runner.info(event);
                }
                outcome.facts.lock_events = events;
            }
            Err(err) => self
                .runner
                .warning(&format!("could not read the lock events: {err}")),
        }
        let found = match self.target.history(&self.location()).await {
            Ok(found) => found,
            Err(err) => return outcome.failed(FailureReason::ClusterError, err.to_string()),
        };
        for warning in found.warnings.iter().chain(&found.untrusted) {
            self.runner.warning(warning);
        }
        if found.needs_adoption() {
            self.runner.info("these records were written by gantry 0.1; the next run that takes the lock adopts them into the record chain");
        }
        let history = found.releases;
        outcome.facts.history = history.iter().rev().map(release::summary).collect();
        outcome.facts.release = release::last_deployed(&history).map(|r| r.number);
        for line in &outcome.facts.history {
            self.runner.info(&format!(
                "{:>4}  {:<12} {:<12} {}  {}",
                line.release,
                line.status,
                line.commit
                    .as_deref()
                    .map(|c| crate::context::char_prefix(c, 12))
                    .unwrap_or("-"),
                line.created,
                line.description
            ));
        }
        outcome
    }
}
