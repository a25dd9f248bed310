//! The environment lock as a `coordination.k8s.io` Lease: who holds it, whether it expired, and the Lease gantry writes to take, renew or release it.
//!
//! Design note: a holder renews the Lease every third of its duration; one that stopped
//! renewing (a cancelled or killed run) loses it when `renewTime + leaseDurationSeconds`
//! passes, so a dead run never blocks the next for longer than the lease time. Writes use
//! the Lease's `resourceVersion`, so two runs taking over at once cannot both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// How long a Lease is valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(45);

/// What the current Lease means for a run that wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    /// No Lease exists: create it.
    Free,
    /// Held by us already (a retried request).
    Ours,
    /// Held by a holder that stopped renewing: take it over (with its resourceVersion).
    Expired { holder: String },
    /// Held and alive.
    Held { holder: String, expires: Timestamp },
    /// Released by its last holder (holderIdentity empty): take it (with its resourceVersion).
    Released,
}

/// Reads the state of `lease` for `me` at `now`.
pub fn state(lease: Option<&Lease>, me: &str, now: Timestamp) -> LockState {
    let Some(lease) = lease else {
        return LockState::Free;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return LockState::Released;
    }
    if holder == me {
        return LockState::Ours;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0));
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    match renewed {
        Some(renewed) => {
            let expires = renewed
                .checked_add(SignedDuration::from_secs(duration))
                .unwrap_or(renewed);
            if expires <= now {
                LockState::Expired { holder }
            } else {
                LockState::Held { holder, expires }
            }
        }
        // A Lease without times cannot say it is alive.
        None => LockState::Expired { holder },
    }
}

/// The Lease that makes `me` the holder; `previous` keeps its resourceVersion and counts a
/// transition when the holder changes.
pub fn taken(
    name: &str,
    namespace: &str,
    environment: &str,
    me: &str,
    now: Timestamp,
    previous: Option<&Lease>,
) -> Lease {
    let previous_spec = previous.and_then(|l| l.spec.clone()).unwrap_or_default();
    let same_holder = previous_spec.holder_identity.as_deref() == Some(me);
    let transitions = previous_spec.lease_transitions.unwrap_or(0)
        + i32::from(previous.is_some() && !same_holder);
    Lease {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            resource_version: previous.and_then(|l| l.metadata.resource_version.clone()),
            labels: Some(
                [
                    (
                        "app.kubernetes.io/managed-by".to_string(),
                        "gantry".to_string(),
                    ),
                    (
                        super::ENVIRONMENT_LABEL.to_string(),
                        environment.to_string(),
                    ),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(me.to_string()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: Some(MicroTime(if same_holder {
                previous_spec.acquire_time.map(|t| t.0).unwrap_or(now)
            } else {
                now
            })),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }),
    }
}

/// The Lease after its holder let go: no holder, so the next run takes it at once.
pub fn released(mut lease: Lease) -> Lease {
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
        spec.renew_time = None;
    }
    lease
}

/// The holder identity of a run: who (actor), which run, and a random suffix so two
/// attempts of one run are told apart.
pub fn holder_identity(actor: Option<&str>, run_url: Option<&str>, nonce: &str) -> String {
    let who = actor.unwrap_or("local");
    match run_url {
        Some(url) => format!("{who} {url} #{nonce}"),
        None => format!("{who} (local run) #{nonce}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn states_follow_renewal_and_duration() {
        assert_eq!(state(None, "me", at(0)), LockState::Free);
        let theirs = taken("l", "ns", "dev", "them", at(0), None);
        assert_eq!(
            state(Some(&theirs), "me", at(10)),
            LockState::Held {
                holder: "them".into(),
                expires: at(45)
            }
        );
        assert_eq!(
            state(Some(&theirs), "me", at(45)),
            LockState::Expired {
                holder: "them".into()
            }
        );
        assert_eq!(state(Some(&theirs), "them", at(10)), LockState::Ours);
        assert_eq!(
            state(Some(&released(theirs)), "me", at(1)),
            LockState::Released
        );
    }

    #[test]
    fn a_takeover_keeps_the_resource_version_and_counts_a_transition() {
        let mut theirs = taken("l", "ns", "dev", "them", at(0), None);
        theirs.metadata.resource_version = Some("41".into());
        let mine = taken("l", "ns", "dev", "me", at(100), Some(&theirs));
        assert_eq!(mine.metadata.resource_version.as_deref(), Some("41"));
        let spec = mine.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_transitions, Some(1));
        assert_eq!(spec.acquire_time.unwrap().0, at(100));
        // Renewal by the same holder keeps the acquire time and the count.
        let first = taken("l", "ns", "dev", "me", at(0), None);
        let renewed = taken("l", "ns", "dev", "me", at(15), Some(&first));
        let spec = renewed.spec.unwrap();
        assert_eq!(spec.acquire_time.unwrap().0, at(0));
        assert_eq!(spec.renew_time.unwrap().0, at(15));
        assert_eq!(spec.lease_transitions, Some(0));
    }
}
