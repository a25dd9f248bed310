//! The environment lock as a `coordination.k8s.io` Lease: who holds it, whether it expired (judged on our own clock), the fencing deadline of a holder, and the Lease gantry writes to take, renew or release it.
//!
//! Design note: a holder renews the Lease every third of its duration. Whether a holder is
//! gone is never judged by comparing its `renewTime` with our clock (the two machines' clocks
//! may differ): like client-go's leader election, a waiting run remembers the Lease's
//! `resourceVersion` and `renewTime` and declares the holder gone only after they stayed
//! unchanged for the holder's whole `leaseDurationSeconds` *on its own monotonic clock*. The
//! holder fences itself the same way: every write is preceded by a check of a deadline set at
//! each successful renewal (the moment the renewal was sent, plus the lease duration, minus a
//! margin); past it, or once another holder is seen, it writes nothing more. Takeovers use the
//! Lease's `resourceVersion`, so two runs taking over at once cannot both win. Time is passed
//! in; nothing here reads a clock.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;

/// How long a Lease is valid without renewal, unless the `lock-lease-duration` input says
/// otherwise.
pub const LEASE_DURATION: Duration = Duration::from_secs(45);

/// What a waiting run remembers of the Lease it saw: the same holder, `renewTime` and
/// `resourceVersion` seen again means the holder did not renew in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub holder: String,
    pub renew_time: Option<String>,
    pub resource_version: Option<String>,
}

impl Observed {
    pub fn of(lease: &Lease) -> Observed {
        let spec = lease.spec.clone().unwrap_or_default();
        Observed {
            holder: spec.holder_identity.unwrap_or_default(),
            renew_time: spec.renew_time.map(|t| t.0.to_string()),
            resource_version: lease.metadata.resource_version.clone(),
        }
    }
}

/// What the current Lease means for a run that wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    /// No Lease exists: create it.
    Free,
    /// Held by us already (a retried request).
    Ours,
    /// Held by a holder that has not renewed for its whole lease duration on our clock: take
    /// it over (with its resourceVersion).
    Expired { holder: String },
    /// Held, and renewed (or not yet watched long enough to tell): wait, at most `left` more
    /// before it can be declared expired.
    Held { holder: String, left: Duration },
    /// Released by its last holder (holderIdentity empty): take it (with its resourceVersion).
    Released,
    /// The Lease is not one gantry can read (edited by hand): no holder duration, a negative
    /// one, or no spec. Nothing is written; the message says how to repair it.
    Invalid { reason: String },
}

/// Reads the state of `lease` for `me`. `watched` is what this run saw of the Lease before and
/// for how long (on its own clock) it has seen exactly that; `None` on the first look.
pub fn state(lease: Option<&Lease>, me: &str, watched: Option<(&Observed, Duration)>) -> LockState {
    let Some(lease) = lease else {
        return LockState::Free;
    };
    let Some(spec) = lease.spec.as_ref() else {
        return LockState::Invalid {
            reason: "it has no spec".into(),
        };
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return LockState::Released;
    }
    if holder == me {
        return LockState::Ours;
    }
    let duration = match spec.lease_duration_seconds {
        Some(seconds) if seconds > 0 => Duration::from_secs(seconds as u64),
        Some(seconds) => {
            return LockState::Invalid {
                reason: format!("its leaseDurationSeconds is {seconds}, not a positive number"),
            }
        }
        None => {
            return LockState::Invalid {
                reason: format!("holder `{holder}` set no leaseDurationSeconds"),
            }
        }
    };
    let now = Observed::of(lease);
    let unchanged_for = match watched {
        Some((before, since)) if *before == now => since,
        _ => Duration::ZERO,
    };
    if unchanged_for >= duration {
        LockState::Expired { holder }
    } else {
        LockState::Held {
            holder,
            left: duration - unchanged_for,
        }
    }
}

/// How close to the end of its lease a holder stops writing: a fifth of the duration, at least
/// a second (the renewal's own round trip and clock drift between the holder and the server).
pub fn fencing_margin(duration: Duration) -> Duration {
    (duration / 5).max(Duration::from_secs(1)).min(duration / 2)
}

/// The Lease that makes `me` the holder for `duration`; `previous` keeps its resourceVersion
/// (and its annotations) and counts a transition when the holder changes.
pub fn taken(
    name: &str,
    namespace: &str,
    environment: &str,
    me: &str,
    now: Timestamp,
    duration: Duration,
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
            annotations: previous.and_then(|l| l.metadata.annotations.clone()),
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
            lease_duration_seconds: Some(duration.as_secs().clamp(1, i32::MAX as u64) as i32),
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

    const D: Duration = Duration::from_secs(45);

    #[test]
    fn a_holder_expires_only_after_its_whole_duration_unchanged_on_our_clock() {
        assert_eq!(state(None, "me", None), LockState::Free);
        // A renewTime far in the past on the server's clock says nothing by itself.
        let mut theirs = taken("l", "ns", "dev", "them", at(-100_000), D, None);
        theirs.metadata.resource_version = Some("7".into());
        let seen = Observed::of(&theirs);
        let secs = Duration::from_secs;
        let table: [(Option<(&Observed, Duration)>, LockState); 4] = [
            (
                None,
                LockState::Held {
                    holder: "them".into(),
                    left: D,
                },
            ),
            (
                Some((&seen, secs(30))),
                LockState::Held {
                    holder: "them".into(),
                    left: secs(15),
                },
            ),
            (
                Some((&seen, D)),
                LockState::Expired {
                    holder: "them".into(),
                },
            ),
            (
                Some((&seen, secs(60))),
                LockState::Expired {
                    holder: "them".into(),
                },
            ),
        ];
        for (watched, expected) in table {
            assert_eq!(state(Some(&theirs), "me", watched), expected, "{watched:?}");
        }
        // A renewal in between (new renewTime and resourceVersion) starts the watch over.
        let mut renewed = taken("l", "ns", "dev", "them", at(5), D, Some(&theirs));
        renewed.metadata.resource_version = Some("8".into());
        assert_eq!(
            state(Some(&renewed), "me", Some((&seen, secs(60)))),
            LockState::Held {
                holder: "them".into(),
                left: D
            }
        );
        // The holder's own duration counts, not ours.
        let short = taken("l", "ns", "dev", "them", at(0), secs(3), None);
        let seen_short = Observed::of(&short);
        assert_eq!(
            state(Some(&short), "me", Some((&seen_short, secs(3)))),
            LockState::Expired {
                holder: "them".into()
            }
        );
        assert_eq!(state(Some(&theirs), "them", None), LockState::Ours);
        assert_eq!(
            state(Some(&released(theirs)), "me", None),
            LockState::Released
        );
    }

    #[test]
    fn a_lease_edited_into_nonsense_is_invalid_not_taken() {
        let mut no_duration = taken("l", "ns", "dev", "them", at(0), D, None);
        no_duration.spec.as_mut().unwrap().lease_duration_seconds = None;
        let mut negative = no_duration.clone();
        negative.spec.as_mut().unwrap().lease_duration_seconds = Some(-5);
        let no_spec = Lease {
            spec: None,
            ..no_duration.clone()
        };
        for (lease, fragment) in [
            (no_duration, "set no leaseDurationSeconds"),
            (negative, "is -5, not a positive number"),
            (no_spec, "has no spec"),
        ] {
            match state(Some(&lease), "me", None) {
                LockState::Invalid { reason } => assert!(reason.contains(fragment), "{reason}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn the_fencing_margin_leaves_time_for_the_renewal_round_trip() {
        assert_eq!(fencing_margin(D), Duration::from_secs(9));
        assert_eq!(
            fencing_margin(Duration::from_secs(3)),
            Duration::from_secs(1)
        );
        assert_eq!(
            fencing_margin(Duration::from_secs(1)),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn a_takeover_keeps_the_resource_version_and_annotations_and_counts_a_transition() {
        let mut theirs = taken("l", "ns", "dev", "them", at(0), D, None);
        theirs.metadata.resource_version = Some("41".into());
        theirs.metadata.annotations =
            Some([("gantry.dev/records".to_string(), "x".to_string())].into());
        let mine = taken(
            "l",
            "ns",
            "dev",
            "me",
            at(100),
            Duration::from_secs(3),
            Some(&theirs),
        );
        assert_eq!(mine.metadata.resource_version.as_deref(), Some("41"));
        assert_eq!(mine.metadata.annotations, theirs.metadata.annotations);
        let spec = mine.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_duration_seconds, Some(3));
        assert_eq!(spec.lease_transitions, Some(1));
        assert_eq!(spec.acquire_time.unwrap().0, at(100));
        // Renewal by the same holder keeps the acquire time and the count.
        let first = taken("l", "ns", "dev", "me", at(0), D, None);
        let renewed = taken("l", "ns", "dev", "me", at(15), D, Some(&first));
        let spec = renewed.spec.unwrap();
        assert_eq!(spec.acquire_time.unwrap().0, at(0));
        assert_eq!(spec.renew_time.unwrap().0, at(15));
        assert_eq!(spec.lease_transitions, Some(0));
    }
}
