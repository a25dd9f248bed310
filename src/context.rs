//! The GitHub context of a run (`GITHUB_*` variables and the event payload) read into typed values.
//!
//! Only the payload fields gantry uses are modelled; everything else in GitHub's (large)
//! payloads is ignored, so new fields never break parsing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The event that started the run, with the fields gantry acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Push(PushEvent),
    PullRequest(PullRequestEvent),
    WorkflowDispatch(DispatchEvent),
    /// Another event (schedule, release, ...), by name.
    Other(String),
    /// Not on GitHub: the local CLI.
    Local,
}

impl Event {
    pub fn name(&self) -> &str {
        match self {
            Event::Push(_) => "push",
            Event::PullRequest(event) => &event.event_name,
            Event::WorkflowDispatch(_) => "workflow_dispatch",
            Event::Other(name) => name,
            Event::Local => "local",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PushEvent {
    #[serde(rename = "ref")]
    pub git_ref: String,
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub head_commit: Option<Commit>,
    #[serde(default)]
    pub repository: Option<Repository>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Commit {
    pub id: String,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Repository {
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub default_branch: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestEvent {
    /// `pull_request` or `pull_request_target`.
    pub event_name: String,
    pub action: String,
    pub number: u64,
    pub title: String,
    pub head_sha: String,
    pub head_ref: String,
    pub base_ref: String,
    pub merged: bool,
    pub draft: bool,
    /// Whether the head branch lives in a fork (its runs get a read-only token).
    pub from_fork: bool,
}

#[derive(Debug, Deserialize)]
struct RawPullRequestPayload {
    #[serde(default)]
    action: String,
    number: Option<u64>,
    pull_request: RawPullRequest,
}

#[derive(Debug, Deserialize)]
struct RawPullRequest {
    number: u64,
    #[serde(default)]
    title: String,
    head: RawBranch,
    base: RawBranch,
    #[serde(default)]
    merged: Option<bool>,
    #[serde(default)]
    draft: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct RawBranch {
    #[serde(rename = "ref")]
    git_ref: String,
    #[serde(default)]
    sha: String,
    #[serde(default)]
    repo: Option<Repository>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchEvent {
    pub git_ref: String,
    /// The dispatch inputs as text (booleans and numbers turned into their text form).
    pub inputs: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct RawDispatch {
    #[serde(rename = "ref", default)]
    git_ref: String,
    #[serde(default)]
    inputs: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    repository: Option<Repository>,
}

/// Everything gantry knows about where and why it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubContext {
    pub event: Event,
    /// `GITHUB_REF`, e.g. `refs/heads/main`.
    pub git_ref: Option<String>,
    /// `GITHUB_SHA`: the commit checked out (for pull requests, the merge commit).
    pub sha: Option<String>,
    /// `owner/name`.
    pub repository: Option<String>,
    pub default_branch: Option<String>,
    pub run_id: Option<String>,
    pub run_attempt: Option<String>,
    pub actor: Option<String>,
    pub server_url: String,
    pub api_url: String,
    pub workspace: Option<PathBuf>,
}

/// Why the context could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContextError {
    #[error("GITHUB_EVENT_PATH is not set; the runner sets it for every job (run locally with `gantry run` instead)")]
    EventPathUnset,
    #[error("the event payload {path} cannot be read: {message}")]
    EventUnreadable { path: PathBuf, message: String },
    #[error("the event payload {path} is not valid JSON: {message}")]
    EventNotJson { path: PathBuf, message: String },
    #[error("the {event} event payload {path} lacks what gantry needs: {message}")]
    EventShape {
        event: String,
        path: PathBuf,
        message: String,
    },
}

impl GitHubContext {
    /// Reads the context from `GITHUB_*` variables and the event payload file.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, ContextError> {
        let var = |name: &str| get(name).filter(|v| !v.is_empty());
        let event_name = var("GITHUB_EVENT_NAME").unwrap_or_else(|| "unknown".into());
        let path = var("GITHUB_EVENT_PATH")
            .map(PathBuf::from)
            .ok_or(ContextError::EventPathUnset)?;
        let (event, repository) = read_event(&event_name, &path)?;
        Ok(GitHubContext {
            event,
            git_ref: var("GITHUB_REF"),
            sha: var("GITHUB_SHA"),
            repository: var("GITHUB_REPOSITORY")
                .or_else(|| repository.as_ref().and_then(|r| r.full_name.clone())),
            default_branch: repository.and_then(|r| r.default_branch),
            run_id: var("GITHUB_RUN_ID"),
            run_attempt: var("GITHUB_RUN_ATTEMPT"),
            actor: var("GITHUB_ACTOR"),
            server_url: var("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into()),
            api_url: var("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into()),
            workspace: var("GITHUB_WORKSPACE").map(PathBuf::from),
        })
    }

    /// The context of a local run: the commit is read from `.git` files (no process is started).
    pub fn local(workspace: &Path, actor: Option<String>) -> Self {
        let (git_ref, sha) = read_git_head(workspace);
        GitHubContext {
            event: Event::Local,
            git_ref,
            sha,
            repository: None,
            default_branch: None,
            run_id: None,
            run_attempt: None,
            actor,
            server_url: "https://github.com".into(),
            api_url: "https://api.github.com".into(),
            workspace: Some(workspace.to_path_buf()),
        }
    }

    /// The link to this run's log, when known.
    pub fn run_url(&self) -> Option<String> {
        let repository = self.repository.as_ref()?;
        let run_id = self.run_id.as_ref()?;
        let mut url = format!("{}/{repository}/actions/runs/{run_id}", self.server_url);
        if let Some(attempt) = &self.run_attempt {
            url.push_str(&format!("/attempts/{attempt}"));
        }
        Some(url)
    }

    /// The first 7 characters of the commit.
    pub fn short_sha(&self) -> Option<&str> {
        self.sha.as_deref().map(|sha| char_prefix(sha, 7))
    }
}

/// The first `n` characters of `text` (never splits a character, whatever the input).
pub fn char_prefix(text: &str, n: usize) -> &str {
    match text.char_indices().nth(n) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

fn read_event(name: &str, path: &Path) -> Result<(Event, Option<Repository>), ContextError> {
    let text = std::fs::read_to_string(path).map_err(|err| ContextError::EventUnreadable {
        path: path.to_path_buf(),
        message: err.to_string(),
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|err| ContextError::EventNotJson {
            path: path.to_path_buf(),
            message: err.to_string(),
        })?;
    let shape = |err: serde_json::Error| ContextError::EventShape {
        event: name.to_string(),
        path: path.to_path_buf(),
        message: err.to_string(),
    };
    let repository: Option<Repository> = value
        .get("repository")
        .cloned()
        .and_then(|r| serde_json::from_value(r).ok());
    let event = match name {
        "push" => Event::Push(serde_json::from_value(value).map_err(shape)?),
        "pull_request" | "pull_request_target" => {
            let raw: RawPullRequestPayload = serde_json::from_value(value).map_err(shape)?;
            let head_repo = raw.pull_request.head.repo.and_then(|r| r.full_name);
            let base_repo = raw.pull_request.base.repo.and_then(|r| r.full_name);
            Event::PullRequest(PullRequestEvent {
                event_name: name.to_string(),
                action: raw.action,
                number: raw.number.unwrap_or(raw.pull_request.number),
                title: raw.pull_request.title,
                head_sha: raw.pull_request.head.sha,
                head_ref: raw.pull_request.head.git_ref,
                base_ref: raw.pull_request.base.git_ref,
                merged: raw.pull_request.merged.unwrap_or(false),
                draft: raw.pull_request.draft.unwrap_or(false),
                from_fork: head_repo.is_some() && head_repo != base_repo,
            })
        }
        "workflow_dispatch" => {
            let raw: RawDispatch = serde_json::from_value(value).map_err(shape)?;
            let _ = raw.repository;
            let inputs = raw
                .inputs
                .unwrap_or_default()
                .into_iter()
                .map(|(key, value)| {
                    let text = match value {
                        serde_json::Value::String(text) => text,
                        serde_json::Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    (key, text)
                })
                .collect();
            Event::WorkflowDispatch(DispatchEvent {
                git_ref: raw.git_ref,
                inputs,
            })
        }
        other => Event::Other(other.to_string()),
    };
    Ok((event, repository))
}

/// Reads `HEAD` from a `.git` directory without running git: the ref it points at and the
/// commit (through the loose ref or `packed-refs`).
fn read_git_head(workspace: &Path) -> (Option<String>, Option<String>) {
    let git_dir = workspace.join(".git");
    let Ok(head) = std::fs::read_to_string(git_dir.join("HEAD")) else {
        return (None, None);
    };
    let head = head.trim();
    match head.strip_prefix("ref: ") {
        None => (None, Some(head.to_string())),
        Some(reference) => {
            let loose = std::fs::read_to_string(git_dir.join(reference))
                .ok()
                .map(|sha| sha.trim().to_string());
            let sha = loose.or_else(|| {
                std::fs::read_to_string(git_dir.join("packed-refs"))
                    .ok()?
                    .lines()
                    .find_map(|line| {
                        let (sha, name) = line.split_once(' ')?;
                        (name == reference).then(|| sha.to_string())
                    })
            });
            (Some(reference.to_string()), sha)
        }
    }
}
