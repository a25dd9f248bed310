//! Where a path input may point: inside the repository checkout, symlinks resolved (and for a kubeconfig file also the runner's temporary directory and home), with control characters refused.
//!
//! Design note: a workflow author (or a pull request changing a workflow) controls every input,
//! so `../../etc` or a symlink in the checkout must not make gantry run Terraform in, build an
//! image from, apply manifests from, or send to a Docker daemon a file outside the checkout.
//! Existing paths are checked after `canonicalize` (which follows every symlink); paths that do
//! not exist yet are normalised lexically from their deepest existing ancestor. Messages name
//! the input's value and where it resolves to, never the content of the file.

use std::path::{Component, Path, PathBuf};

/// Why a path input is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The value holds a newline, CR, NUL or another control character.
    ControlCharacter,
    /// It resolves (symlinks followed) to `resolved`, outside every allowed root.
    Outside { resolved: PathBuf },
}

impl Refused {
    /// The message for the input's error, naming the value as given.
    pub fn message(&self, value: &str, allowed: &str) -> String {
        match self {
            Refused::ControlCharacter => format!(
                "`{}` contains a control character (newline, CR, NUL, ...); give a plain path",
                super::values::shorten(value, 60)
            ),
            Refused::Outside { resolved } => format!(
                "`{}` resolves to {}, outside {allowed}; gantry reads only what is inside it (symlinks are followed), so give a path within it",
                super::values::shorten(value, 60),
                resolved.display()
            ),
        }
    }
}

/// Whether a value holds a control character (anything but printable text and spaces).
pub fn has_control(value: &str) -> bool {
    value.chars().any(char::is_control)
}

/// The canonical form of a root (itself if it does not exist).
pub fn canonical_root(root: &Path) -> PathBuf {
    root.canonicalize().unwrap_or_else(|_| normalize(root))
}

/// Resolves `value` against `base` and checks it is inside one of `roots` (canonical). Returns
/// the resolved path, symlinks followed.
pub fn confine(base: &Path, value: &str, roots: &[PathBuf]) -> Result<PathBuf, Refused> {
    if has_control(value) {
        return Err(Refused::ControlCharacter);
    }
    let resolved = resolve(&base.join(value.trim()));
    if roots.iter().any(|root| resolved.starts_with(root)) {
        Ok(resolved)
    } else {
        Err(Refused::Outside { resolved })
    }
}

/// The path with every symlink of its existing part followed, and the rest normalised.
pub fn resolve(path: &Path) -> PathBuf {
    if let Ok(found) = path.canonicalize() {
        return found;
    }
    let normal = normalize(path);
    // The deepest ancestor that exists is canonicalised; the rest is appended as written.
    let mut existing = normal.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (
            existing.file_name().map(ToOwned::to_owned),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return normal,
        }
    }
    let mut resolved = existing.canonicalize().unwrap_or(existing);
    for part in rest.into_iter().rev() {
        resolved.push(part);
    }
    resolved
}

/// Removes `.` and resolves `..` lexically (never above the root).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if out.file_name().is_some() {
                    out.pop();
                } else if !out.has_root() {
                    out.push(component);
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_stay_inside_the_checkout_symlinks_followed() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = dir.path().join("repo");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(workspace.join("infra")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, workspace.join("escape")).unwrap();
        std::os::unix::fs::symlink(workspace.join("infra"), workspace.join("alias")).unwrap();
        let roots = [canonical_root(&workspace)];
        let base = workspace.join("infra");
        let inside = |value: &str| confine(&base, value, &roots).is_ok();
        let table = [
            (".", true),
            ("main.tf", true),
            ("../infra/sub/not-yet", true),
            ("../alias", true),
            ("..", true),
            ("../..", false),
            ("../../outside", false),
            ("../escape", false),
            ("../escape/file", false),
            ("/etc/passwd", false),
            ("../../../../../../etc/passwd", false),
            ("a\nb", false),
            ("nul\0", false),
        ];
        for (value, expected) in table {
            assert_eq!(inside(value), expected, "{value:?}");
        }
        match confine(&base, "../escape/x", &roots) {
            Err(Refused::Outside { resolved }) => {
                assert_eq!(resolved, outside.canonicalize().unwrap().join("x"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            confine(&base, "x\ty", &roots),
            Err(Refused::ControlCharacter)
        );
        let message = Refused::Outside {
            resolved: PathBuf::from("/etc/passwd"),
        }
        .message("../../etc/passwd", "the repository checkout /repo");
        assert!(
            message.contains("resolves to /etc/passwd, outside the repository checkout /repo"),
            "{message}"
        );
    }

    #[test]
    fn normalisation_never_climbs_above_the_root() {
        assert_eq!(normalize(Path::new("/a/b/../../../c")), PathBuf::from("/c"));
        assert_eq!(normalize(Path::new("/a/./b/")), PathBuf::from("/a/b"));
    }
}
