//! The `images` input: its YAML schema, and the naming rules of ECR repositories, tags and registry hosts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where an image is pushed: a repository given literally, or a Terraform output's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryRef {
    /// An ECR repository name (`team/backend`) or a full repository URI (`host/path`).
    Literal(String),
    /// `${tf.NAME}`: the value of the infra phase's Terraform output NAME.
    TerraformOutput(String),
}

/// One image to build, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    pub name: String,
    pub repository: RepositoryRef,
    /// Absolute build context directory.
    pub context: PathBuf,
    /// Absolute Dockerfile path.
    pub dockerfile: PathBuf,
    pub target: Option<String>,
    pub build_args: BTreeMap<String, String>,
    /// Extra tags besides the commit SHA.
    pub tags: Vec<String>,
    /// Command run in a container of the built image before anything is pushed.
    pub smoke_test: Option<SmokeTest>,
    /// How long the smoke test may run before it is stopped and counted as failed.
    pub smoke_test_timeout: Duration,
}

/// The smoke test's time limit when `smoke-test-timeout` is not given.
pub const DEFAULT_SMOKE_TEST_TIMEOUT: Duration = Duration::from_secs(300);

/// A smoke test command: a shell string (run with `/bin/sh -c`) or an exec-form list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum SmokeTest {
    Shell(String),
    Exec(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawImage {
    name: String,
    repository: String,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    dockerfile: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    build_args: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    smoke_test: Option<SmokeTest>,
    #[serde(default)]
    smoke_test_timeout: Option<serde_yaml::Value>,
}

/// Parses and validates the `images` input. Paths are relative to `base` (the working
/// directory); `${tf.NAME}` repositories need the infra phase to run.
pub fn parse_images(
    text: &str,
    base: &Path,
    workspace: Option<&Path>,
    terraform_available: bool,
) -> Result<Vec<ImageSpec>, Vec<String>> {
    let raw: Vec<RawImage> = serde_yaml::from_str(text).map_err(|err| {
        vec![format!(
            "is not a valid image list: {err}. Expected a YAML list such as `- name: backend` / `  repository: team/backend` / `  context: backend`"
        )]
    })?;
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    let mut repositories = BTreeSet::new();
    let mut images = Vec::new();
    if raw.is_empty() {
        problems.push("is an empty list; remove the input to skip the build phase".to_string());
    }
    for (index, image) in raw.into_iter().enumerate() {
        let label = format!("image {} (`{}`)", index + 1, image.name);
        let mut problem = |message: String| problems.push(format!("{label}: {message}"));

        if !is_image_name(&image.name) {
            problem(
                "`name` must be lower-case letters, digits and `-`, at most 63 characters".into(),
            );
        } else if !names.insert(image.name.clone()) {
            problem("`name` is used by another image; image names must be unique".into());
        }

        if terraform_reference(&image.repository).is_none()
            && !repositories.insert(image.repository.clone())
        {
            problem(format!(
                "`repository` `{}` is used by another image; each image needs its own repository (both would be pushed under the same commit tag)",
                image.repository
            ));
        }
        let repository = match terraform_reference(&image.repository) {
            Some(output) => {
                if !terraform_available {
                    problem(format!(
                        "`repository` refers to the Terraform output `{output}`, but the infra phase does not run (set terraform-directory and keep infra in phases)"
                    ));
                }
                RepositoryRef::TerraformOutput(output.to_string())
            }
            None => {
                if let Err(message) = check_repository(&image.repository) {
                    problem(message);
                }
                RepositoryRef::Literal(image.repository.clone())
            }
        };

        let context_rel = image.context.clone().unwrap_or_else(|| ".".into());
        let dockerfile_rel = image
            .dockerfile
            .clone()
            .unwrap_or_else(|| "Dockerfile".into());
        // Both stay inside the checkout: a context outside it would be sent to the Docker
        // daemon, and a Dockerfile outside it read by the daemon and echoed in its errors.
        let mut refused = false;
        let (context, dockerfile) = match workspace {
            // Without a checkout (one error already) no path is checked.
            None => {
                refused = true;
                (
                    base.join(&context_rel),
                    base.join(&context_rel).join(&dockerfile_rel),
                )
            }
            Some(workspace) => {
                let roots = [workspace.to_path_buf()];
                let allowed = format!("the repository checkout {}", workspace.display());
                let context = super::paths::confine(base, &context_rel, &roots);
                let context = match context {
                    Ok(context) => context,
                    Err(why) => {
                        refused = true;
                        problem(format!(
                            "`context`: {}",
                            why.message(&context_rel, &allowed)
                        ));
                        base.join(&context_rel)
                    }
                };
                let dockerfile = match super::paths::confine(&context, &dockerfile_rel, &roots) {
                    Ok(dockerfile) => dockerfile,
                    // The context was refused already: its Dockerfile is that one problem.
                    Err(_) if refused => context.join(&dockerfile_rel),
                    Err(why) => {
                        refused = true;
                        problem(format!(
                            "`dockerfile` (relative to the context): {}",
                            why.message(&dockerfile_rel, &allowed)
                        ));
                        context.join(&dockerfile_rel)
                    }
                };
                (context, dockerfile)
            }
        };
        if refused {
            // Already refused; nothing about the path is checked further.
        } else if !context.is_dir() {
            problem(format!(
                "`context` `{context_rel}` is not a directory relative to the working directory"
            ));
        } else if !dockerfile.is_file() {
            problem(format!(
                "`dockerfile` `{dockerfile_rel}` does not exist in the context `{context_rel}` (it is relative to the context)"
            ));
        }

        if let Some(target) = &image.target {
            if target.is_empty()
                || !target
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                problem(format!("`target` `{target}` is not a build stage name"));
            }
        }

        let mut build_args = BTreeMap::new();
        for (key, value) in image.build_args {
            let key_ok = key
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !key_ok {
                problem(format!(
                    "build arg `{key}` is not a valid name (letters, digits and `_`, not starting with a digit)"
                ));
            }
            let value = match value {
                serde_yaml::Value::String(text) if super::paths::has_control(&text) => {
                    problem(format!(
                        "build arg `{key}` contains a control character (newline, CR, NUL, ...); a build arg is one line"
                    ));
                    continue;
                }
                serde_yaml::Value::String(text) => text,
                serde_yaml::Value::Number(number) => number.to_string(),
                serde_yaml::Value::Bool(flag) => flag.to_string(),
                _ => {
                    problem(format!(
                        "build arg `{key}` must be a string, number or boolean"
                    ));
                    continue;
                }
            };
            build_args.insert(key, value);
        }

        for tag in &image.tags {
            if !is_tag(tag) {
                problem(format!(
                    "tag `{tag}` is not valid (letters, digits, `_`, `.` and `-`, not starting with `.` or `-`, at most 128 characters)"
                ));
            }
        }

        if let Some(SmokeTest::Exec(args)) = &image.smoke_test {
            if args.is_empty() {
                problem("`smoke-test` is an empty list; give a command".into());
            }
        }

        let smoke_test_timeout = match &image.smoke_test_timeout {
            None => DEFAULT_SMOKE_TEST_TIMEOUT,
            Some(raw) => {
                if image.smoke_test.is_none() {
                    problem("`smoke-test-timeout` is set but there is no `smoke-test`".into());
                }
                let text = match raw {
                    serde_yaml::Value::String(text) => Ok(text.clone()),
                    serde_yaml::Value::Number(number) => Ok(number.to_string()),
                    _ => Err("is not a duration; write one such as 90s or 5m".to_string()),
                };
                match text.and_then(|text| super::values::parse_duration(&text)) {
                    Ok(duration) if !duration.is_zero() => duration,
                    Ok(_) => {
                        problem("`smoke-test-timeout` must be longer than zero".into());
                        DEFAULT_SMOKE_TEST_TIMEOUT
                    }
                    Err(message) => {
                        problem(format!("`smoke-test-timeout`: {message}"));
                        DEFAULT_SMOKE_TEST_TIMEOUT
                    }
                }
            }
        };

        images.push(ImageSpec {
            name: image.name,
            repository,
            context,
            dockerfile,
            target: image.target,
            build_args,
            tags: image.tags,
            smoke_test: image.smoke_test,
            smoke_test_timeout,
        });
    }
    if problems.is_empty() {
        Ok(images)
    } else {
        Err(problems)
    }
}

/// The output name of a `${tf.NAME}` reference, if `text` is one.
pub fn terraform_reference(text: &str) -> Option<&str> {
    text.trim()
        .strip_prefix("${tf.")
        .and_then(|rest| rest.strip_suffix('}'))
        .filter(|name| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

fn is_image_name(name: &str) -> bool {
    crate::config::is_dns_label(name)
}

/// An image tag as the OCI distribution spec allows it.
pub fn is_tag(tag: &str) -> bool {
    (1..=128).contains(&tag.len())
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A registry host with an optional port (`127.0.0.1:5000`, `123.dkr.ecr.eu-west-1.amazonaws.com`).
pub fn is_registry_host(text: &str) -> bool {
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok
        && !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Checks a repository given as an ECR name (`team/backend`) or a full URI (`host/team/backend`)
/// against ECR's naming rules: 2 to 256 characters of lower-case letters, digits and `._-/`
/// with each path component starting and ending with a letter or digit.
pub fn check_repository(text: &str) -> Result<(), String> {
    let path = match text.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            if !is_registry_host(first) {
                return Err(format!(
                    "`repository` `{text}` has an invalid registry host `{first}`"
                ));
            }
            rest
        }
        _ => text,
    };
    let component_ok = |component: &str| {
        let bytes = component.as_bytes();
        !bytes.is_empty()
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
            && bytes.iter().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            && !component.contains("..")
    };
    if (2..=256).contains(&path.len()) && path.split('/').all(component_ok) {
        Ok(())
    } else {
        Err(format!(
            "`repository` `{text}` breaks ECR's naming rules: 2 to 256 lower-case letters, digits, `.`, `_`, `-` and `/`, each part starting and ending with a letter or digit (e.g. team/backend)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_ecr_rules() {
        for good in [
            "backend",
            "team/backend",
            "team-a/svc.api_v2",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/backend",
            "127.0.0.1:5000/demo/frontend",
            "localhost/x1",
        ] {
            assert!(check_repository(good).is_ok(), "{good}");
        }
        for bad in [
            "B",
            "Team/backend",
            "team//backend",
            "-team/x",
            "team/x-",
            "a",
            "team/ba..ck",
            "bad host:x/a/b",
        ] {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_and_hosts() {
        assert!(is_tag("0123abc"));
        assert!(is_tag("v1.2.3_rc-1"));
        assert!(!is_tag(".hidden"));
        assert!(!is_tag("-x"));
        assert!(!is_tag(&"a".repeat(129)));
        assert!(is_registry_host("127.0.0.1:5443"));
        assert!(is_registry_host("registry.example.com"));
        assert!(!is_registry_host("https://registry.example.com"));
        assert!(!is_registry_host("host:port"));
        assert!(!is_registry_host("host/path"));
    }

    #[test]
    fn terraform_references() {
        assert_eq!(
            terraform_reference("${tf.backend_repo}"),
            Some("backend_repo")
        );
        assert_eq!(terraform_reference("${tf.}"), None);
        assert_eq!(terraform_reference("${env.x}"), None);
        assert_eq!(terraform_reference("team/backend"), None);
    }

    #[test]
    fn smoke_test_timeouts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM x\n").unwrap();
        let parse = |extra: &str| {
            let text = format!("- name: api\n  repository: team/api\n{extra}");
            parse_images(&text, dir.path(), Some(dir.path()), false)
        };
        let timeout = |extra: &str| parse(extra).unwrap()[0].smoke_test_timeout;
        assert_eq!(timeout(""), DEFAULT_SMOKE_TEST_TIMEOUT);
        assert_eq!(
            timeout("  smoke-test: /bin/true\n"),
            DEFAULT_SMOKE_TEST_TIMEOUT
        );
        assert_eq!(
            timeout("  smoke-test: /bin/true\n  smoke-test-timeout: 1m30s\n"),
            Duration::from_secs(90)
        );
        let table = [
            (
                "  smoke-test-timeout: 30s\n",
                "is set but there is no `smoke-test`",
            ),
            (
                "  smoke-test: x\n  smoke-test-timeout: 0s\n",
                "must be longer than zero",
            ),
            (
                "  smoke-test: x\n  smoke-test-timeout: 30\n",
                "without a unit",
            ),
            (
                "  smoke-test: x\n  smoke-test-timeout: [1]\n",
                ": is not a duration",
            ),
        ];
        for (extra, want) in table {
            let problems = parse(extra).unwrap_err();
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with("image 1 (`api`): `smoke-test-timeout`")
                        && p.contains(want)),
                "{extra}: {problems:?}"
            );
        }
    }
}
