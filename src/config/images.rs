//! The `images` input: its YAML schema, and the naming rules of ECR repositories, tags and registry hosts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::image::name::{check_repository, is_tag, RepositoryRef};

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
    build_args: BTreeMap<String, serde_yaml_ng::Value>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    smoke_test: Option<SmokeTest>,
    #[serde(default)]
    smoke_test_timeout: Option<serde_yaml_ng::Value>,
}

/// Parses and validates the `images` input. Paths are relative to `base` (the working
/// directory); `${tf.NAME}` repositories need the infra phase to run.
pub fn parse_images(
    text: &str,
    base: &Path,
    workspace: Option<&Path>,
    terraform_available: bool,
) -> Result<Vec<ImageSpec>, Vec<String>> {
    let raw: Vec<RawImage> = serde_yaml_ng::from_str(text).map_err(|err| {
        vec![format!(
            "is not a valid image list: {err}. Expected a YAML list such as `- name: backend` / `  repository: team/backend` / `  context: backend`"
        )]
    })?;
    let mut checker = Checker {
        base,
        workspace,
        terraform_available,
        names: BTreeSet::new(),
        repositories: BTreeSet::new(),
        problems: Vec::new(),
    };
    if raw.is_empty() {
        checker
            .problems
            .push("is an empty list; remove the input to skip the build phase".to_string());
    }
    let images: Vec<ImageSpec> = raw
        .into_iter()
        .enumerate()
        .map(|(index, image)| checker.image(index, image))
        .collect();
    if checker.problems.is_empty() {
        Ok(images)
    } else {
        Err(checker.problems)
    }
}

/// Checks the images of the list one by one, collecting every problem.
struct Checker<'a> {
    base: &'a Path,
    workspace: Option<&'a Path>,
    terraform_available: bool,
    names: BTreeSet<String>,
    repositories: BTreeSet<String>,
    problems: Vec<String>,
}

/// The problems of one image, each prefixed with the image it belongs to.
struct Problems<'p> {
    label: String,
    sink: &'p mut Vec<String>,
}

impl Problems<'_> {
    fn add(&mut self, message: impl std::fmt::Display) {
        self.sink.push(format!("{}: {message}", self.label));
    }
}

impl Checker<'_> {
    fn image(&mut self, index: usize, mut image: RawImage) -> ImageSpec {
        let mut problems = Problems {
            label: format!("image {} (`{}`)", index + 1, image.name),
            sink: &mut self.problems,
        };
        if !is_image_name(&image.name) {
            problems
                .add("`name` must be lower-case letters, digits and `-`, at most 63 characters");
        } else if !self.names.insert(image.name.clone()) {
            problems.add("`name` is used by another image; image names must be unique");
        }
        if terraform_reference(&image.repository).is_none()
            && !self.repositories.insert(image.repository.clone())
        {
            problems.add(format!(
                "`repository` `{}` is used by another image; each image needs its own repository (both would be pushed under the same commit tag)",
                image.repository
            ));
        }
        let repository = repository(&image.repository, self.terraform_available, &mut problems);
        let (context, dockerfile) = paths(self.base, self.workspace, &image, &mut problems);
        if let Some(target) = &image.target {
            if target.is_empty()
                || !target
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                problems.add(format!("`target` `{target}` is not a build stage name"));
            }
        }
        let build_args = build_args(std::mem::take(&mut image.build_args), &mut problems);
        for tag in image.tags.iter().filter(|tag| !is_tag(tag)) {
            problems.add(format!(
                "tag `{tag}` is not valid (letters, digits, `_`, `.` and `-`, not starting with `.` or `-`, at most 128 characters)"
            ));
        }
        if let Some(SmokeTest::Exec(args)) = &image.smoke_test {
            if args.is_empty() {
                problems.add("`smoke-test` is an empty list; give a command");
            }
        }
        let smoke_test_timeout = smoke_test_timeout(&image, &mut problems);
        ImageSpec {
            name: image.name,
            repository,
            context,
            dockerfile,
            target: image.target,
            build_args,
            tags: image.tags,
            smoke_test: image.smoke_test,
            smoke_test_timeout,
        }
    }
}

/// The repository: a Terraform output (which needs the infra phase) or a name or URI that
/// follows ECR's rules.
fn repository(text: &str, terraform_available: bool, problems: &mut Problems<'_>) -> RepositoryRef {
    match terraform_reference(text) {
        Some(output) => {
            if !terraform_available {
                problems.add(format!(
                    "`repository` refers to the Terraform output `{output}`, but the infra phase does not run (set terraform-directory and keep infra in phases)"
                ));
            }
            RepositoryRef::TerraformOutput(output.to_string())
        }
        None => {
            if let Err(message) = check_repository(text) {
                problems.add(message);
            }
            RepositoryRef::Literal(text.to_string())
        }
    }
}

/// The context and Dockerfile, both inside the checkout: a context outside it would be sent to
/// the Docker daemon, and a Dockerfile outside it read by the daemon and echoed in its errors.
fn paths(
    base: &Path,
    workspace: Option<&Path>,
    image: &RawImage,
    problems: &mut Problems<'_>,
) -> (PathBuf, PathBuf) {
    let context_rel = image.context.clone().unwrap_or_else(|| ".".into());
    let dockerfile_rel = image
        .dockerfile
        .clone()
        .unwrap_or_else(|| "Dockerfile".into());
    // Without a checkout (one error already) no path is checked.
    let Some(workspace) = workspace else {
        let context = base.join(&context_rel);
        let dockerfile = context.join(&dockerfile_rel);
        return (context, dockerfile);
    };
    let roots = [workspace.to_path_buf()];
    let allowed = format!("the repository checkout {}", workspace.display());
    let context = match super::paths::confine(base, &context_rel, &roots) {
        Ok(context) => context,
        Err(why) => {
            problems.add(format!(
                "`context`: {}",
                why.message(&context_rel, &allowed)
            ));
            // Its Dockerfile is that one problem.
            let context = base.join(&context_rel);
            let dockerfile = context.join(&dockerfile_rel);
            return (context, dockerfile);
        }
    };
    let dockerfile = match super::paths::confine(&context, &dockerfile_rel, &roots) {
        Ok(dockerfile) => dockerfile,
        Err(why) => {
            problems.add(format!(
                "`dockerfile` (relative to the context): {}",
                why.message(&dockerfile_rel, &allowed)
            ));
            return (context.clone(), context.join(&dockerfile_rel));
        }
    };
    if !context.is_dir() {
        problems.add(format!(
            "`context` `{context_rel}` is not a directory relative to the working directory"
        ));
    } else if !dockerfile.is_file() {
        problems.add(format!(
            "`dockerfile` `{dockerfile_rel}` does not exist in the context `{context_rel}` (it is relative to the context)"
        ));
    }
    (context, dockerfile)
}

/// Build args: valid names, one-line scalar values.
fn build_args(
    raw: BTreeMap<String, serde_yaml_ng::Value>,
    problems: &mut Problems<'_>,
) -> BTreeMap<String, String> {
    let mut build_args = BTreeMap::new();
    for (key, value) in raw {
        let key_ok = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !key_ok {
            problems.add(format!(
                "build arg `{key}` is not a valid name (letters, digits and `_`, not starting with a digit)"
            ));
        }
        let value = match value {
            serde_yaml_ng::Value::String(text) if super::paths::has_control(&text) => {
                problems.add(format!(
                    "build arg `{key}` contains a control character (newline, CR, NUL, ...); a build arg is one line"
                ));
                continue;
            }
            serde_yaml_ng::Value::String(text) => text,
            serde_yaml_ng::Value::Number(number) => number.to_string(),
            serde_yaml_ng::Value::Bool(flag) => flag.to_string(),
            _ => {
                problems.add(format!(
                    "build arg `{key}` must be a string, number or boolean"
                ));
                continue;
            }
        };
        build_args.insert(key, value);
    }
    build_args
}

/// The smoke test's time limit: a positive duration, only with a smoke test.
fn smoke_test_timeout(image: &RawImage, problems: &mut Problems<'_>) -> Duration {
    let Some(raw) = &image.smoke_test_timeout else {
        return DEFAULT_SMOKE_TEST_TIMEOUT;
    };
    if image.smoke_test.is_none() {
        problems.add("`smoke-test-timeout` is set but there is no `smoke-test`");
    }
    let text = match raw {
        serde_yaml_ng::Value::String(text) => Ok(text.clone()),
        serde_yaml_ng::Value::Number(number) => Ok(number.to_string()),
        _ => Err("is not a duration; write one such as 90s or 5m".to_string()),
    };
    match text.and_then(|text| super::values::parse_duration(&text)) {
        Ok(duration) if !duration.is_zero() => duration,
        Ok(_) => {
            problems.add("`smoke-test-timeout` must be longer than zero");
            DEFAULT_SMOKE_TEST_TIMEOUT
        }
        Err(message) => {
            problems.add(format!("`smoke-test-timeout`: {message}"));
            DEFAULT_SMOKE_TEST_TIMEOUT
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
