//! Pure image logic of the build phase: references, `.dockerignore`, registry auth, build logs, the per-image plan and the report.
//!
//! Design note: nothing here talks to Docker, a registry or AWS. The adapters
//! ([`crate::adapters::docker`], [`crate::adapters::registry`], [`crate::adapters::ecr`]) do the
//! I/O and [`crate::build_phase`] runs the steps; every decision they need is made here and
//! unit-tested with tables.

pub mod access;
pub mod auth;
pub mod buildlog;
pub mod dockerignore;
pub mod reference;
pub mod report;

pub use reference::ImageRef;
pub use report::{BuiltImage, ImageStatus};

/// What the phase does with one image, decided before any build starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Build (and smoke-test) it, then push it when pushing is on.
    Build,
    /// The commit tag exists already: reuse this digest, build nothing.
    Reuse { digest: String },
    /// A chosen version was asked for and its tag is not in the registry.
    Missing,
}

/// Chooses the action for one image from the registry lookup. `existing` is the digest of the
/// commit tag if the registry has it (`None` when it was not looked up or is absent).
/// `version_mode`: a chosen version is deployed, so nothing may be built.
pub fn choose_action(version_mode: bool, skip_existing: bool, existing: Option<String>) -> Action {
    match (existing, version_mode) {
        (Some(digest), true) => Action::Reuse { digest },
        (None, true) => Action::Missing,
        (Some(digest), false) if skip_existing => Action::Reuse { digest },
        _ => Action::Build,
    }
}

/// Whether the registry must be asked for the commit tag before deciding.
pub fn needs_lookup(version_mode: bool, skip_existing: bool) -> bool {
    version_mode || skip_existing
}

/// An RFC 3339 UTC timestamp (`2026-11-23T21:10:49Z`) for the `created` label.
pub fn rfc3339(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let rem = unix_seconds % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions() {
        let d = || Some("sha256:ab".to_string());
        let reuse = Action::Reuse {
            digest: "sha256:ab".into(),
        };
        let table = [
            (false, true, d(), reuse.clone()),
            (false, true, None, Action::Build),
            (false, false, d(), Action::Build),
            (false, false, None, Action::Build),
            (true, false, d(), reuse.clone()),
            (true, true, None, Action::Missing),
            (true, false, None, Action::Missing),
        ];
        for (version, skip, existing, want) in table {
            assert_eq!(
                choose_action(version, skip, existing.clone()),
                want,
                "{version} {skip} {existing:?}"
            );
        }
        assert!(needs_lookup(true, false));
        assert!(needs_lookup(false, true));
        assert!(!needs_lookup(false, false));
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_554_649), "2026-11-24T21:10:49Z");
    }
}
