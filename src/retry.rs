//! When a transient failure is tried again and how long to wait first: exponential backoff with full jitter, capped, and a server's `Retry-After` honoured.
//!
//! Design note: pure. Full jitter (a uniformly random wait between zero and the exponential
//! ceiling) spreads the retries of many clients hit by the same outage instead of having them
//! return together; a server that says when to come back (`Retry-After`, or Kubernetes'
//! `details.retryAfterSeconds` on a 429) is believed, up to [`Policy::max_wait`], because
//! returning earlier only earns another refusal. The adapters run the loop.

use std::time::Duration;

/// How often and how patiently a transient failure is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// The ceiling of the first wait; it doubles with each retry.
    pub base: Duration,
    /// The ceiling of any jittered wait.
    pub cap: Duration,
    /// The longest wait a server's `Retry-After` may ask for.
    pub max_wait: Duration,
}

impl Policy {
    /// For API calls: 5 retries, waits drawn below 100 ms, 200 ms, ... up to 2 s; a server may
    /// ask for up to 30 s.
    pub const API: Policy = Policy {
        retries: 5,
        base: Duration::from_millis(100),
        cap: Duration::from_secs(2),
        max_wait: Duration::from_secs(30),
    };

    /// For API calls the server throttled (429, API priority and fairness): it says when to
    /// come back, and a throttled request is not a failing one, so it is tried longer (12
    /// retries: a storm that throttles 30% of requests fails one in five million).
    pub const API_THROTTLED: Policy = Policy {
        retries: 12,
        ..Policy::API
    };

    /// The wait before retry number `retry` (0 for the first retry), or `None` when the
    /// retries are used up. `retry_after` is what the server asked for; `unit` is a random
    /// number in `[0, 1)` that draws the jitter.
    pub fn wait(&self, retry: u32, retry_after: Option<Duration>, unit: f64) -> Option<Duration> {
        if retry >= self.retries {
            return None;
        }
        if let Some(asked) = retry_after {
            return Some(asked.min(self.max_wait));
        }
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
            .min(self.cap);
        Some(ceiling.mul_f64(unit.clamp(0.0, 1.0)))
    }
}

/// A random number in `[0, 1)` for the jitter (from the OS; never fails the caller).
pub fn unit_random() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_request_is_tried_longer_than_a_failing_one() {
        let asked = Some(Duration::from_secs(1));
        assert_eq!(Policy::API.wait(5, asked, 0.5), None);
        assert_eq!(Policy::API_THROTTLED.wait(5, asked, 0.5), asked);
        assert_eq!(Policy::API_THROTTLED.wait(11, asked, 0.5), asked);
        assert_eq!(Policy::API_THROTTLED.wait(12, asked, 0.5), None);
    }

    #[test]
    fn waits_grow_to_the_cap_with_full_jitter_and_stop_after_the_last_retry() {
        let policy = Policy::API;
        let ms = Duration::from_millis;
        // (retry, server asked, random unit) -> wait
        let table = [
            (0, None, 0.999_999, Some(ms(100))),
            (0, None, 0.0, Some(ms(0))),
            (1, None, 0.5, Some(ms(100))),
            (2, None, 1.0, Some(ms(400))),
            (4, None, 1.0, Some(ms(1600))),
            (4, None, 0.25, Some(ms(400))),
            (
                3,
                Some(Duration::from_secs(7)),
                0.1,
                Some(Duration::from_secs(7)),
            ),
            (
                0,
                Some(Duration::from_secs(600)),
                0.1,
                Some(Duration::from_secs(30)),
            ),
            (5, None, 0.5, None),
            (5, Some(Duration::from_secs(1)), 0.5, None),
        ];
        for (retry, asked, unit, want) in table {
            let got = policy.wait(retry, asked, unit);
            let close = match (got, want) {
                (Some(got), Some(want)) => got.abs_diff(want) < ms(1),
                (got, want) => got == want,
            };
            assert!(
                close,
                "retry {retry}, asked {asked:?}, unit {unit}: {got:?}"
            );
        }
        let capped = Policy {
            retries: 40,
            ..Policy::API
        };
        assert_eq!(capped.wait(39, None, 1.0), Some(Duration::from_secs(2)));
    }

    #[test]
    fn random_units_lie_in_the_unit_interval() {
        for _ in 0..1000 {
            let unit = unit_random();
            assert!((0.0..1.0).contains(&unit), "{unit}");
        }
    }
}
