//! Pure image logic of the build phase: references, `.dockerignore`, registry auth, build logs, the per-image plan and what was built.
//!
//! Design note: nothing here talks to Docker, a registry or AWS. The adapters
//! ([`crate::adapters::docker`], [`crate::adapters::registry`], [`crate::adapters::ecr`]) do the
//! I/O and [`crate::app::build`] runs the steps; every decision they need is made here and
//! unit-tested with tables.

pub mod access;
pub mod auth;
pub mod buildlog;
pub mod built;
pub mod dockerignore;
pub mod name;
pub mod reference;

pub use built::{BuiltImage, ImageStatus};
pub use reference::ImageRef;

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
}
