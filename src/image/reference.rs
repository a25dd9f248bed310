//! Image references: where an image is pushed (`host/repository`), its commit tag, and the `repository@digest` form every later phase uses.

use std::collections::BTreeMap;

use serde_json::Value;

use super::name::{check_repository, is_tag, split_host, RepositoryRef};

/// Why an image reference cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("image `{image}`: the repository refers to the Terraform output `{output}`, which the infra phase did not produce")]
    OutputMissing { image: String, output: String },
    #[error("image `{image}`: the Terraform output `{output}` is not a string (a repository name or URI), it is {found}")]
    OutputNotString {
        image: String,
        output: String,
        found: String,
    },
    #[error("image `{image}`: the Terraform output `{output}` = `{value}` is not a usable repository: {reason}")]
    OutputInvalid {
        image: String,
        output: String,
        value: String,
        reason: String,
    },
    #[error("image `{image}`: no registry for the repository `{repository}`; set `registry` or `registry-endpoint`, or give a full URI (host/path)")]
    NoRegistry { image: String, repository: String },
    #[error("the commit `{0}` is not usable as an image tag (letters, digits, `_`, `.` and `-`, at most 128 characters)")]
    BadTag(String),
    #[error("no commit to tag images with: GITHUB_SHA is not set and no `version` was given")]
    NoCommit,
}

/// Where one image lives: registry host, repository path and the commit tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `127.0.0.1:5000` or `123456789012.dkr.ecr.eu-west-1.amazonaws.com`.
    pub registry: String,
    /// The repository path inside the registry (`team/backend`), which is also the ECR name.
    pub repository: String,
    /// The commit tag.
    pub tag: String,
}

impl ImageRef {
    /// `host/repository`.
    pub fn uri(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `host/repository:tag`.
    pub fn tagged(&self, tag: &str) -> String {
        format!("{}:{tag}", self.uri())
    }

    /// `host/repository@digest`.
    pub fn pinned(&self, digest: &str) -> String {
        format!("{}@{digest}", self.uri())
    }
}

/// The tag images get: the commit as given (a full SHA, or the chosen `version`).
pub fn commit_tag(commit: Option<&str>) -> Result<String, Error> {
    let commit = commit.map(str::trim).filter(|c| !c.is_empty());
    match commit {
        None => Err(Error::NoCommit),
        Some(commit) if is_tag(commit) => Ok(commit.to_string()),
        Some(commit) => Err(Error::BadTag(commit.to_string())),
    }
}

/// The repository text of an image: the literal, or the Terraform output's string value.
pub fn repository_text(
    image: &str,
    repository: &RepositoryRef,
    outputs: &BTreeMap<String, Value>,
) -> Result<String, Error> {
    match repository {
        RepositoryRef::Literal(text) => Ok(text.clone()),
        RepositoryRef::TerraformOutput(output) => match outputs.get(output) {
            None => Err(Error::OutputMissing {
                image: image.to_string(),
                output: output.clone(),
            }),
            Some(Value::String(value)) => {
                check_repository(value).map_err(|reason| Error::OutputInvalid {
                    image: image.to_string(),
                    output: output.clone(),
                    value: value.clone(),
                    reason,
                })?;
                Ok(value.clone())
            }
            Some(other) => Err(Error::OutputNotString {
                image: image.to_string(),
                output: output.clone(),
                found: json_kind(other).to_string(),
            }),
        },
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Resolves where an image goes. The host is, in order: the `registry-endpoint` override, the
/// host of a full URI, then `default_registry` (the ECR host or the `registry` input).
pub fn resolve(
    image: &str,
    repository: &str,
    endpoint: Option<&str>,
    default_registry: Option<&str>,
    tag: &str,
) -> Result<ImageRef, Error> {
    let (host, path) = split_host(repository);
    let registry = endpoint
        .or(host)
        .or(default_registry)
        .ok_or_else(|| Error::NoRegistry {
            image: image.to_string(),
            repository: repository.to_string(),
        })?;
    Ok(ImageRef {
        registry: registry.to_string(),
        repository: path.to_string(),
        tag: tag.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resolves_hosts_in_order() {
        let ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
        type Row<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            Result<&'a str, ()>,
        );
        let table: [Row; 6] = [
            (
                "team/api",
                None,
                Some(ecr),
                Ok("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/api"),
            ),
            (
                "team/api",
                Some("127.0.0.1:5000"),
                Some(ecr),
                Ok("127.0.0.1:5000/team/api"),
            ),
            (
                "reg.example.com/x/api",
                None,
                Some(ecr),
                Ok("reg.example.com/x/api"),
            ),
            (
                "reg.example.com/x/api",
                Some("127.0.0.1:5443"),
                None,
                Ok("127.0.0.1:5443/x/api"),
            ),
            ("localhost/api", None, None, Ok("localhost/api")),
            ("team/api", None, None, Err(())),
        ];
        for (repo, endpoint, default, want) in table {
            let got = resolve("api", repo, endpoint, default, "abc").map(|r| r.uri());
            match want {
                Ok(uri) => assert_eq!(got.as_deref(), Ok(uri), "{repo}"),
                Err(()) => assert!(matches!(got, Err(Error::NoRegistry { .. })), "{repo}"),
            }
        }
        let r = resolve("api", "team/api", None, Some(ecr), "abc").unwrap();
        assert_eq!(r.tagged("abc"), format!("{ecr}/team/api:abc"));
        assert_eq!(r.pinned("sha256:00"), format!("{ecr}/team/api@sha256:00"));
        assert_eq!(r.repository, "team/api");
    }

    #[test]
    fn terraform_outputs() {
        let outputs: BTreeMap<String, Value> = [
            (
                "repo".to_string(),
                json!("1.dkr.ecr.x.amazonaws.com/team/api"),
            ),
            ("count".to_string(), json!(3)),
            ("bad".to_string(), json!("Team//API")),
        ]
        .into();
        let out = |name: &str| RepositoryRef::TerraformOutput(name.into());
        assert_eq!(
            repository_text("api", &out("repo"), &outputs).unwrap(),
            "1.dkr.ecr.x.amazonaws.com/team/api"
        );
        assert!(matches!(
            repository_text("api", &out("missing"), &outputs),
            Err(Error::OutputMissing { .. })
        ));
        let err = repository_text("api", &out("count"), &outputs).unwrap_err();
        assert!(err.to_string().contains("a number"), "{err}");
        assert!(matches!(
            repository_text("api", &out("bad"), &outputs),
            Err(Error::OutputInvalid { .. })
        ));
        assert_eq!(
            repository_text("api", &RepositoryRef::Literal("a/b".into()), &outputs).unwrap(),
            "a/b"
        );
    }

    #[test]
    fn commit_tags() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(commit_tag(Some(sha)).unwrap(), sha);
        assert_eq!(commit_tag(Some("v1.2.3")).unwrap(), "v1.2.3");
        assert_eq!(commit_tag(None), Err(Error::NoCommit));
        assert_eq!(commit_tag(Some(" ")), Err(Error::NoCommit));
        assert!(matches!(
            commit_tag(Some("refs/tags/x")),
            Err(Error::BadTag(_))
        ));
    }
}
