//! Deploy settings and release-history readers shared by the deploy tests and benchmarks.

use std::time::Duration;

use gantry::deploy::Settings;
use gantry::release::{self, ReleaseStatus};
use gantry::rollout::Tolerances;

use super::fake_apiserver::FakeApiServer;

/// Settings for environment `dev` with records in `namespace`: short lock wait, quick
/// tolerances (a fake cluster fails in milliseconds, not minutes).
pub fn settings(namespace: &str) -> Settings {
    Settings {
        environment: "dev".into(),
        namespace: namespace.into(),
        rollout_timeout: Duration::from_secs(30),
        rollback: true,
        prune: true,
        force_conflicts: false,
        history_max: 10,
        lock_timeout: Duration::from_secs(2),
        apply_concurrency: 4,
        tolerances: Tolerances {
            pull_error: Duration::from_millis(200),
            restart_threshold: 2,
            unschedulable: Duration::from_millis(500),
        },
    }
}

/// Release numbers and statuses of environment `dev`, as stored in the cluster, oldest first.
pub fn history(fake: &FakeApiServer) -> Vec<(u64, ReleaseStatus)> {
    let mut found: Vec<(u64, ReleaseStatus)> = fake
        .list("v1", "Secret")
        .iter()
        .filter(|s| s["type"] == release::SECRET_TYPE)
        .filter_map(|s| release::from_secret(s).ok())
        .filter(|r| r.environment == "dev")
        .map(|r| (r.number, r.status))
        .collect();
    found.sort_by_key(|(n, _)| *n);
    found
}
