//! Deploy settings shared by the deploy tests and benchmarks.

use std::time::Duration;

use gantry::deploy::Settings;
use gantry::rollout::Tolerances;

/// Settings for environment `dev` with records in `namespace`, tuned for the test bed's real
/// cluster: a short lock wait, fail-fast on the first restart or pull error (real pods fail in
/// a second or two), and a rollout timeout that only a hang reaches.
pub fn settings(namespace: &str) -> Settings {
    Settings {
        environment: "dev".into(),
        namespace: namespace.into(),
        rollout_timeout: Duration::from_secs(120),
        rollback: true,
        prune: true,
        force_conflicts: false,
        history_max: 10,
        lock_timeout: Duration::from_secs(2),
        apply_concurrency: 4,
        tolerances: Tolerances {
            pull_error: Duration::from_secs(1),
            restart_threshold: 0,
            unschedulable: Duration::from_secs(10),
        },
    }
}
