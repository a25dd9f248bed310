//! GitHub's REST API through octocrab: the pull-request comment, deployments and their statuses, and the audit-trail commit; and the [`Reporter`] that runs these after the phases, turning every failure into a warning.
//!
//! Design note: the bodies sent are rendered by the pure [`crate::report`] modules; this file
//! only moves them. Reporting never fails a run: a deploy that succeeded stays a success when
//! GitHub refuses a comment, and a 403/404 is told as the token permission it lacks.

use octocrab::{Octocrab, Page};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::adapters::runner::Runner;
use crate::config::Config;
use crate::context::{Event, GitHubContext};
use crate::pipeline::{Command, Decision};
use crate::report::summary::ReportInput;
use crate::report::{comment, records};

/// What went wrong talking to GitHub.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the repository `{0}` is not `owner/name`")]
    Repository(String),
    #[error("the GitHub API address `{url}` is not usable: {source}")]
    Client {
        url: String,
        #[source]
        source: octocrab::Error,
    },
    #[error("GitHub answered {status} to {action}: {message}")]
    Api {
        action: String,
        status: u16,
        message: String,
    },
    #[error("could not {action}: {source}")]
    Transport {
        action: String,
        #[source]
        source: octocrab::Error,
    },
    #[error("could not {action}: GitHub did not answer within {}s", REQUEST_DEADLINE.as_secs())]
    Deadline { action: String },
    #[error("could not {action}: GitHub's answer lacks `{field}`")]
    Shape { action: String, field: &'static str },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The longest one request (with octocrab's own retries) may take. The connect and read
/// timeouts only cover a socket that exists; this also ends a request the HTTP client never
/// completes (once seen when the server closed every connection on accept).
const REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs one octocrab request under [`REQUEST_DEADLINE`].
async fn bounded<T>(
    action: &str,
    request: impl std::future::Future<Output = octocrab::Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(REQUEST_DEADLINE, request).await {
        Ok(answer) => answer.map_err(|e| Error::from_octocrab(action, e)),
        Err(_) => Err(Error::Deadline {
            action: action.to_string(),
        }),
    }
}

impl Error {
    /// The HTTP status GitHub answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A 403 or 404: the token lacks a permission (GitHub hides resources as 404).
    pub fn is_permission(&self) -> bool {
        matches!(self.status(), Some(403 | 404))
    }

    fn from_octocrab(action: &str, err: octocrab::Error) -> Error {
        match err {
            octocrab::Error::GitHub { source, .. } => Error::Api {
                action: action.to_string(),
                status: source.status_code.as_u16(),
                message: source.message,
            },
            other => Error::Transport {
                action: action.to_string(),
                source: other,
            },
        }
    }
}

/// A comment written or updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentWritten {
    pub id: u64,
    pub url: String,
    pub created: bool,
}

#[derive(Debug, Deserialize)]
struct IssueComment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    html_url: String,
}

#[derive(Debug, Deserialize)]
struct PullRef {
    number: u64,
    #[serde(default)]
    merged_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Sha {
    sha: String,
}

#[derive(Debug, Deserialize)]
struct GitRef {
    object: Sha,
}

#[derive(Debug, Deserialize)]
struct GitCommit {
    tree: Sha,
}

#[derive(Debug, Deserialize)]
struct Repo {
    default_branch: String,
}

/// The REST calls gantry makes, on one repository.
#[derive(Clone)]
pub struct GitHub {
    client: Octocrab,
    owner: String,
    repo: String,
}

impl GitHub {
    /// A client for `repository` (`owner/name`) at `api_url` (`GITHUB_API_URL`).
    pub fn new(api_url: &str, token: &str, repository: &str) -> Result<Self> {
        let (owner, repo) = repository
            .split_once('/')
            .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
            .ok_or_else(|| Error::Repository(repository.to_string()))?;
        let client = Octocrab::builder()
            .base_uri(api_url)
            .and_then(|b| {
                // A hung GitHub must not hold a finished deploy's job for long.
                b.set_connect_timeout(Some(std::time::Duration::from_secs(10)))
                    .set_read_timeout(Some(std::time::Duration::from_secs(30)))
                    .personal_token(token.to_string())
                    .build()
            })
            .map_err(|source| Error::Client {
                url: api_url.to_string(),
                source,
            })?;
        Ok(GitHub {
            client,
            owner: owner.to_string(),
            repo: repo.to_string(),
        })
    }

    fn route(&self, rest: &str) -> String {
        format!("/repos/{}/{}/{rest}", self.owner, self.repo)
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, action: &str, route: &str) -> Result<T> {
        bounded(action, self.client.get(route, None::<&()>)).await
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        action: &str,
        route: &str,
        body: &Value,
    ) -> Result<T> {
        bounded(action, self.client.post(route, Some(body))).await
    }

    async fn patch<T: serde::de::DeserializeOwned>(
        &self,
        action: &str,
        route: &str,
        body: &Value,
    ) -> Result<T> {
        bounded(action, self.client.patch(route, Some(body))).await
    }

    /// The comment on issue or pull request `number` whose body contains `marker`, reading
    /// every page of comments (100 per page, following the `Link` header).
    pub async fn find_comment(&self, number: u64, marker: &str) -> Result<Option<CommentWritten>> {
        let action = "list the pull request's comments";
        let mut page: Page<IssueComment> = bounded(
            action,
            self.client.get(
                self.route(&format!("issues/{number}/comments")),
                Some(&[("per_page", "100")]),
            ),
        )
        .await?;
        loop {
            if let Some(found) = page
                .items
                .iter()
                .find(|c| c.body.as_deref().is_some_and(|b| b.contains(marker)))
            {
                return Ok(Some(CommentWritten {
                    id: found.id,
                    url: found.html_url.clone(),
                    created: false,
                }));
            }
            match bounded(action, self.client.get_page::<IssueComment>(&page.next)).await? {
                Some(next) => page = next,
                None => return Ok(None),
            }
        }
    }

    /// Updates the comment carrying `marker` in place, or creates it: one comment per marker.
    pub async fn upsert_comment(
        &self,
        number: u64,
        marker: &str,
        body: &str,
    ) -> Result<CommentWritten> {
        match self.find_comment(number, marker).await? {
            Some(existing) => self.update_comment(existing.id, body).await,
            None => {
                let created: IssueComment = self
                    .post(
                        "create the pull-request comment",
                        &self.route(&format!("issues/{number}/comments")),
                        &json!({ "body": body }),
                    )
                    .await?;
                Ok(CommentWritten {
                    id: created.id,
                    url: created.html_url,
                    created: true,
                })
            }
        }
    }

    /// Replaces the body of comment `id`.
    pub async fn update_comment(&self, id: u64, body: &str) -> Result<CommentWritten> {
        let updated: IssueComment = self
            .patch(
                "update the pull-request comment",
                &self.route(&format!("issues/comments/{id}")),
                &json!({ "body": body }),
            )
            .await?;
        Ok(CommentWritten {
            id: updated.id,
            url: updated.html_url,
            created: false,
        })
    }

    /// The merged pull requests a commit belongs to (`GET /commits/{sha}/pulls`).
    pub async fn merged_pulls_of_commit(&self, sha: &str) -> Result<Vec<u64>> {
        let pulls: Vec<PullRef> = self
            .get(
                "find the pull request of the commit",
                &self.route(&format!("commits/{sha}/pulls")),
            )
            .await?;
        Ok(pulls
            .into_iter()
            .filter(|p| p.merged_at.is_some())
            .map(|p| p.number)
            .collect())
    }

    /// Creates a deployment (body from [`records::deployment_request`]); returns its id.
    pub async fn create_deployment(&self, body: &Value) -> Result<u64> {
        let created: Value = self
            .post("create the deployment", &self.route("deployments"), body)
            .await?;
        created
            .get("id")
            .and_then(Value::as_u64)
            .ok_or(Error::Shape {
                action: "create the deployment".into(),
                field: "id",
            })
    }

    /// Posts a status (body from [`records::deployment_status`]) on deployment `id`.
    pub async fn deployment_status(&self, id: u64, body: &Value) -> Result<()> {
        let _: Value = self
            .post(
                "post the deployment status",
                &self.route(&format!("deployments/{id}/statuses")),
                body,
            )
            .await?;
        Ok(())
    }

    async fn branch_head(&self, branch: &str) -> Result<Option<String>> {
        match self
            .get::<GitRef>(
                "read the audit branch",
                &self.route(&format!("git/ref/heads/{branch}")),
            )
            .await
        {
            Ok(found) => Ok(Some(found.object.sha)),
            Err(err) if err.status() == Some(404) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Creates `branch` at the default branch's head; returns that commit.
    async fn create_branch(&self, branch: &str) -> Result<String> {
        let repo: Repo = self
            .get(
                "read the default branch",
                &format!("/repos/{}/{}", self.owner, self.repo),
            )
            .await?;
        let head: GitRef = self
            .get(
                "read the default branch",
                &self.route(&format!("git/ref/heads/{}", repo.default_branch)),
            )
            .await?;
        let _: Value = self
            .post(
                "create the audit branch",
                &self.route("git/refs"),
                &json!({ "ref": format!("refs/heads/{branch}"), "sha": head.object.sha }),
            )
            .await?;
        Ok(head.object.sha)
    }

    /// Commits `files` (path, content) on top of `branch` with the Git Data API and moves the
    /// branch without force; creates the branch from the default branch's head if missing. A
    /// 422 (the branch moved meanwhile: not a fast forward) is retried once from the new head.
    /// Returns the new commit's SHA.
    pub async fn commit_files(
        &self,
        branch: &str,
        files: &[(String, String)],
        message: &str,
    ) -> Result<String> {
        let mut head = match self.branch_head(branch).await? {
            Some(sha) => sha,
            None => self.create_branch(branch).await?,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let commit = self.commit_on(&head, files, message).await?;
            let moved: Result<Value> = self
                .patch(
                    "move the audit branch",
                    &self.route(&format!("git/refs/heads/{branch}")),
                    &json!({ "sha": commit, "force": false }),
                )
                .await;
            match moved {
                Ok(_) => return Ok(commit),
                Err(err) if err.status() == Some(422) && attempt == 1 => {
                    head = self.branch_head(branch).await?.ok_or(err)?;
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn commit_on(
        &self,
        parent: &str,
        files: &[(String, String)],
        message: &str,
    ) -> Result<String> {
        let base: GitCommit = self
            .get(
                "read the audit branch's commit",
                &self.route(&format!("git/commits/{parent}")),
            )
            .await?;
        let mut tree = Vec::new();
        for (path, content) in files {
            let blob: Sha = self
                .post(
                    "create an audit file",
                    &self.route("git/blobs"),
                    &json!({ "content": content, "encoding": "utf-8" }),
                )
                .await?;
            tree.push(json!({ "path": path, "mode": "100644", "type": "blob", "sha": blob.sha }));
        }
        let tree: Sha = self
            .post(
                "create the audit tree",
                &self.route("git/trees"),
                &json!({ "base_tree": base.tree.sha, "tree": tree }),
            )
            .await?;
        let commit: Sha = self
            .post(
                "create the audit commit",
                &self.route("git/commits"),
                &json!({ "message": message, "tree": tree.sha, "parents": [parent] }),
            )
            .await?;
        Ok(commit.sha)
    }
}

/// The token permission a feature needs, for the warning when GitHub refuses.
fn permission_hint(permission: &str) -> String {
    format!(
        "the token lacks `{permission}` (add `permissions: {permission}` to the workflow or job, and pass `github-token`)"
    )
}

/// The GitHub side of a run's report: the deployment around the phases, then the comment and
/// the audit trail. Every failure is a warning; nothing here changes the exit code.
pub struct Reporter<'a> {
    github: Option<GitHub>,
    config: &'a Config,
    context: &'a GitHubContext,
    decision: &'a Decision,
    runner: &'a Runner,
    deployment: Option<u64>,
    /// Step outputs this reporter adds (`deployment-id`, `comment-url`, `audit-commit`).
    pub outputs: Vec<(String, String)>,
}

impl<'a> Reporter<'a> {
    /// Prepares the client; without a token or repository the GitHub features are skipped with
    /// one notice (the pull-request case never gets here: validation demands the token).
    pub fn new(
        config: &'a Config,
        context: &'a GitHubContext,
        decision: &'a Decision,
        runner: &'a Runner,
    ) -> Self {
        let wanted = config.report.pr_comment
            || config.report.github_deployments
            || config.report.audit_branch.is_some();
        let github = match (&config.report.github_token, &context.repository) {
            _ if !wanted => None,
            (None, _) => {
                if context.event != Event::Local {
                    // One plain log line, not an annotation: a missing token is a choice.
                    runner.info("gantry: github-token is empty: the pull-request comment, GitHub Deployments and the audit trail are skipped");
                }
                None
            }
            (_, None) => {
                runner.info("GitHub repository unknown (not running on GitHub): the pull-request comment, GitHub Deployments and the audit trail are skipped");
                None
            }
            (Some(token), Some(repository)) => {
                match GitHub::new(&context.api_url, token.expose(), repository) {
                    Ok(github) => Some(github),
                    Err(err) => {
                        runner.warning(&format!(
                            "GitHub reporting is skipped: {err}; the run itself is unaffected"
                        ));
                        None
                    }
                }
            }
        };
        Reporter {
            github,
            config,
            context,
            decision,
            runner,
            deployment: None,
            outputs: Vec::new(),
        }
    }

    fn deploys(&self) -> bool {
        matches!(self.decision.command, Command::Deploy | Command::Rollback)
            && crate::pipeline::skip_reason(
                crate::config::Phase::Deploy,
                self.config,
                self.decision.command,
            )
            .is_none()
    }

    fn warn(&self, feature: &str, permission: &str, err: &Error) {
        let why = if err.is_permission() {
            format!("{err}; {}", permission_hint(permission))
        } else {
            err.to_string()
        };
        self.runner.warning(&format!(
            "gantry could not {feature}: {why}. This is a reporting problem only; the run's result is unaffected."
        ));
    }

    /// Creates the deployment and marks it `in_progress`; call before the deploy phase (the
    /// app calls it before the phases). `release` goes into the payload when already known.
    pub async fn start_deployment(&mut self, release: Option<u64>) {
        let Some(github) = &self.github else { return };
        if !self.config.report.github_deployments || !self.deploys() {
            return;
        }
        let git_ref = match (&self.decision.commit, &self.context.sha) {
            (Some(commit), _) | (None, Some(commit)) => commit.clone(),
            (None, None) => return,
        };
        let mut body = records::deployment_request(
            &self.config.environment,
            &git_ref,
            self.decision.command,
            self.config.rollback_to,
        );
        body["payload"]["gantry"]["release"] = json!(release);
        body["payload"]["gantry"]["rollback_to"] = json!(self.config.rollback_to);
        body["payload"]["gantry"]["run_url"] = json!(self.context.run_url());
        let result = async {
            let id = github.create_deployment(&body).await?;
            let status = records::deployment_status(
                "in_progress",
                &format!("gantry {} started", self.decision.command.as_str()),
                self.context.run_url().as_deref(),
                self.config.report.environment_url.as_deref(),
            );
            github.deployment_status(id, &status).await?;
            Ok::<u64, Error>(id)
        }
        .await;
        match result {
            Ok(id) => {
                self.runner
                    .info(&format!("GitHub deployment {id} in progress"));
                self.deployment = Some(id);
                self.outputs.push(("deployment-id".into(), id.to_string()));
            }
            Err(err) => self.warn("record the GitHub deployment", "deployments: write", &err),
        }
    }

    /// After the phases: the final deployment status, the pull-request comment and the audit
    /// commit. Returns Markdown lines for the job summary saying what was recorded.
    pub async fn finish(&mut self, report: &ReportInput<'_>) -> Vec<String> {
        let mut lines = Vec::new();
        let Some(github) = self.github.clone() else {
            return lines;
        };
        if let Some(id) = self.deployment {
            let (state, description) = records::final_status(report);
            let body = records::deployment_status(
                state,
                &(report.redact)(&description),
                self.context.run_url().as_deref(),
                self.config.report.environment_url.as_deref(),
            );
            match github.deployment_status(id, &body).await {
                Ok(()) => lines.push(format!("GitHub deployment {id}: {state} ({description})")),
                Err(err) => self.warn("post the deployment status", "deployments: write", &err),
            }
        }
        if self.config.report.pr_comment {
            self.comment(&github, report, &mut lines).await;
        }
        if let Some(branch) = self.config.report.audit_branch.clone() {
            // Only when the environment may have changed: a deploy stopped by pre-flight or an
            // earlier phase left what runs as the last record says.
            let deploy_changed = report.outcome.phases.iter().any(|p| {
                p.name == crate::pipeline::PhaseName::Deploy
                    && (p.result.changed
                        || p.result.status == crate::pipeline::PhaseStatus::Succeeded)
            });
            if self.deploys() && deploy_changed && report.outcome.handoff.deploy.is_some() {
                let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ");
                let files =
                    records::audit_files(report, self.context.actor.as_deref(), &now.to_string());
                let message = records::audit_message(report);
                match github.commit_files(&branch, &files, &message).await {
                    Ok(sha) => {
                        lines.push(format!("Audit trail: commit {sha} on {branch}"));
                        self.outputs.push(("audit-commit".into(), sha));
                    }
                    Err(err) => self.warn(
                        &format!("commit the audit trail to `{branch}`"),
                        "contents: write",
                        &err,
                    ),
                }
            }
        }
        lines
    }

    /// The pull-request comment: written on the run's pull request, or, for a deploy of a
    /// pushed commit, updated on the pull requests that merged it.
    async fn comment(
        &mut self,
        github: &GitHub,
        report: &ReportInput<'_>,
        lines: &mut Vec<String>,
    ) {
        let marker = comment::marker(&self.config.environment);
        if let Some(number) = self.decision.pull_request {
            self.write_pull_request_comment(github, report, number, &marker, lines)
                .await;
            return;
        }
        self.update_merged_pull_comments(github, report, &marker, lines)
            .await;
    }

    /// Creates or updates the comment (plan, or what was deployed) on pull request `number`.
    async fn write_pull_request_comment(
        &mut self,
        github: &GitHub,
        report: &ReportInput<'_>,
        number: u64,
        marker: &str,
        lines: &mut Vec<String>,
    ) {
        let body = if self.decision.command == Command::Plan {
            comment::render_plan_comment(report)
        } else {
            comment::render_deployed_comment(report)
        };
        let body = self.runner.redact(&body);
        match github.upsert_comment(number, marker, &body).await {
            Ok(written) => {
                lines.push(format!(
                    "Pull request #{number}: comment {} ({})",
                    if written.created {
                        "created"
                    } else {
                        "updated"
                    },
                    written.url
                ));
                self.outputs.push(("comment-url".into(), written.url));
            }
            Err(err) => self.warn(
                &format!("write the comment on pull request #{number}"),
                "pull-requests: write",
                &err,
            ),
        }
    }

    /// A deploy of a pushed commit: updates the plan comment of the pull request(s) it came
    /// from with what was deployed (nothing for other runs).
    async fn update_merged_pull_comments(
        &mut self,
        github: &GitHub,
        report: &ReportInput<'_>,
        marker: &str,
        lines: &mut Vec<String>,
    ) {
        let (Event::Push(_), true, Some(sha)) = (
            &self.context.event,
            self.decision.command == Command::Deploy && self.deploys(),
            self.decision.commit.as_deref(),
        ) else {
            return;
        };
        let pulls = match github.merged_pulls_of_commit(sha).await {
            Ok(pulls) => pulls,
            Err(err) => {
                self.warn(
                    "find the pull request of the deployed commit",
                    "pull-requests: read",
                    &err,
                );
                return;
            }
        };
        let body = self
            .runner
            .redact(&comment::render_deployed_comment(report));
        for number in pulls {
            let result = async {
                match github.find_comment(number, marker).await? {
                    Some(existing) => github.update_comment(existing.id, &body).await.map(Some),
                    None => Ok(None),
                }
            }
            .await;
            match result {
                Ok(Some(written)) => {
                    lines.push(format!(
                        "Pull request #{number}: plan comment updated with the deploy ({})",
                        written.url
                    ));
                    self.outputs.push(("comment-url".into(), written.url));
                }
                Ok(None) => self.runner.info(&format!(
                    "pull request #{number} has no gantry comment for {}; nothing to update",
                    self.config.environment
                )),
                Err(err) => self.warn(
                    &format!("update the comment on pull request #{number}"),
                    "pull-requests: write",
                    &err,
                ),
            }
        }
    }
}
