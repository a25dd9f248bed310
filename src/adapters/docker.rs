//! The Docker Engine API through bollard: ping, choose the builder, build from a context tar that honours `.dockerignore`, tag, push with registry credentials, and smoke-test containers.
//!
//! Builder: BuildKit (`version=2`, with the gRPC session bollard opens itself over `/session`)
//! when the daemon supports it (API >= 1.39 on Linux), the classic builder (`version=1`)
//! otherwise; `GANTRY_BUILDER=classic|buildkit` overrides the choice. BuildKit's progress comes
//! as protobuf `moby.buildkit.v1.StatusResponse` messages (bollard's `buildkit` feature decodes
//! them) and is followed by [`buildlog::BuildKitLog`]. The context tar is made here, so
//! `.dockerignore` is honoured either way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::models::{BuildInfo, BuildInfoAux, ContainerCreateBody};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, BuilderVersion, CreateContainerOptionsBuilder, KillContainerOptions,
    LogsOptionsBuilder, PushImageOptionsBuilder, RemoveContainerOptionsBuilder,
    StartContainerOptions, TagImageOptionsBuilder, WaitContainerOptions,
};
use bytes::Bytes;
use futures::StreamExt;

use crate::image::auth::Credentials;
use crate::image::buildlog::{self, BuildKitLog, BuildLog};
use crate::image::dockerignore::Matcher;

/// Why a Docker call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Docker socket unreachable ({detail}): container actions get /var/run/docker.sock mounted by the runner; locally start dockerd or set DOCKER_HOST")]
    Unreachable { detail: String },
    #[error("could not read the build context {path}: {source}")]
    Context {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    BuildFailed(String),
    #[error("GANTRY_BUILDER={0:?} is not a builder: use `buildkit`, `classic`, or leave it unset to let gantry choose")]
    BuilderSetting(String),
    #[error("the build ended without an image id")]
    NoImage,
    #[error("could not tag {image} as {target}: {source}")]
    Tag {
        image: String,
        target: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("pushing {target} failed: {message}")]
    Push { target: String, message: String },
    #[error("the registry refused the credentials while pushing {target} (401 Unauthorized): {message}; check registry-username and registry-password, or the AWS role's ECR permissions")]
    PushUnauthorized { target: String, message: String },
    #[error("could not run the smoke test container of {image}: {source}")]
    Container {
        image: String,
        #[source]
        source: bollard::errors::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One build as the daemon runs it.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub context: PathBuf,
    pub dockerfile: PathBuf,
    pub target: Option<String>,
    pub build_args: HashMap<String, String>,
    pub labels: HashMap<String, String>,
    /// The local tag (`repo:tag`) given to the result.
    pub tag: String,
    pub builder: Builder,
}

/// Which builder runs the builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builder {
    /// The classic builder (`version=1`).
    Classic,
    /// BuildKit (`version=2`).
    BuildKit,
}

impl std::fmt::Display for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Builder::Classic => "the classic builder",
            Builder::BuildKit => "BuildKit",
        })
    }
}

/// The builder chosen, and why (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderChoice {
    pub builder: Builder,
    pub reason: String,
}

/// Chooses the builder from `GANTRY_BUILDER`'s value (`setting`) and the daemon's API version
/// and OS: BuildKit needs API 1.39 (Docker 18.09) and a Linux daemon.
pub fn choose_builder(setting: Option<&str>, api_version: &str, os: &str) -> Result<BuilderChoice> {
    let choice = |builder, reason: String| Ok(BuilderChoice { builder, reason });
    match setting.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) if s.eq_ignore_ascii_case("classic") => {
            return choice(Builder::Classic, "GANTRY_BUILDER=classic".into())
        }
        Some(s) if s.eq_ignore_ascii_case("buildkit") => {
            return choice(Builder::BuildKit, "GANTRY_BUILDER=buildkit".into())
        }
        Some(s) if s.eq_ignore_ascii_case("auto") => {}
        Some(other) => return Err(Error::BuilderSetting(other.to_string())),
        None => {}
    }
    let mut parts = api_version.trim().splitn(2, '.');
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let api_ok = (major, minor) >= (1, 39);
    let linux = os.trim().eq_ignore_ascii_case("linux");
    if api_ok && linux {
        choice(
            Builder::BuildKit,
            format!("the daemon supports it: API {api_version}, {os}"),
        )
    } else if !linux {
        choice(
            Builder::Classic,
            format!("BuildKit needs a Linux daemon, this one runs on {os:?}"),
        )
    } else {
        choice(
            Builder::Classic,
            format!("BuildKit needs Docker API 1.39 or later, the daemon speaks {api_version:?}"),
        )
    }
}

/// The outcome of a smoke test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmokeResult {
    pub exit_code: i64,
    /// The container's output (stdout and stderr interleaved), last lines only.
    pub output: String,
    /// The test was still running at its time limit and was killed.
    pub timed_out: bool,
}

/// A Docker daemon connection.
#[derive(Debug, Clone)]
pub struct Docker {
    client: bollard::Docker,
}

impl Docker {
    /// Connects the way the Docker CLI does: `DOCKER_HOST` or the default socket, over TLS
    /// with the client certificate in `DOCKER_CERT_PATH` (default `~/.docker`) when
    /// `DOCKER_TLS_VERIFY` is set or the host is `https://`; then pings the daemon.
    pub async fn connect() -> Result<Docker> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        let host = var("DOCKER_HOST");
        let tls = var("DOCKER_TLS_VERIFY").is_some()
            || host.as_deref().is_some_and(|h| h.starts_with("https://"));
        let cert_dir = tls.then(|| {
            var("DOCKER_CERT_PATH")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(var("HOME").unwrap_or_else(|| "/root".into())).join(".docker")
                })
        });
        Docker::connect_to_with(host.as_deref(), cert_dir.as_deref()).await
    }

    /// Connects to `host` (`unix:///path`, `tcp://host:port`; `None` = the default socket).
    pub async fn connect_to(host: Option<&str>) -> Result<Docker> {
        Docker::connect_to_with(host, None).await
    }

    /// Connects to `host`, over TLS with `ca.pem`, `cert.pem` and `key.pem` from `cert_dir` when
    /// it is given (a TCP host only).
    pub async fn connect_to_with(host: Option<&str>, cert_dir: Option<&Path>) -> Result<Docker> {
        let version = bollard::API_DEFAULT_VERSION;
        let tcp = host.filter(|h| {
            h.starts_with("tcp://") || h.starts_with("http://") || h.starts_with("https://")
        });
        let client = match (host, tcp, cert_dir) {
            (_, Some(h), Some(dir)) => {
                let files = ["ca.pem", "cert.pem", "key.pem"].map(|f| dir.join(f));
                let missing: Vec<String> = files
                    .iter()
                    .filter(|f| !f.is_file())
                    .map(|f| f.display().to_string())
                    .collect();
                if !missing.is_empty() {
                    return Err(Error::Unreachable {
                        detail: format!(
                            "DOCKER_TLS_VERIFY is set but {} missing; set DOCKER_CERT_PATH to the directory holding the daemon's ca.pem and the client's cert.pem and key.pem",
                            if missing.len() == 1 { format!("{} is", missing[0]) } else { format!("{} are", missing.join(", ")) }
                        ),
                    });
                }
                crate::adapters::cluster::install_crypto_provider();
                let [ca, cert, key] = files;
                bollard::Docker::connect_with_ssl(h, &key, &cert, &ca, 120, version)
            }
            (_, Some(h), None) => bollard::Docker::connect_with_http(h, 120, version),
            (Some(h), None, _) if h.starts_with("unix://") => {
                bollard::Docker::connect_with_unix(h, 120, version)
            }
            (Some(h), None, _) => {
                return Err(Error::Unreachable {
                    detail: format!(
                        "DOCKER_HOST={h:?} is not an address gantry can use: give unix:///path/to/docker.sock or tcp://host:port"
                    ),
                })
            }
            (None, None, _) => bollard::Docker::connect_with_local_defaults(),
        }
        .map_err(|err| Error::Unreachable {
            detail: crate::adapters::kube::error_chain(&err),
        })?;
        let docker = Docker { client };
        docker.ping().await?;
        Ok(docker)
    }

    pub async fn ping(&self) -> Result<()> {
        match tokio::time::timeout(std::time::Duration::from_secs(10), self.client.ping()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(Error::Unreachable {
                detail: crate::adapters::kube::error_chain(&err),
            }),
            Err(_) => Err(Error::Unreachable {
                detail: "no answer to a ping within 10s".into(),
            }),
        }
    }

    /// The daemon's version string (`20.10.24+dfsg1`).
    pub async fn version(&self) -> Result<String> {
        Ok(self.daemon_version().await?.version.unwrap_or_default())
    }

    /// The daemon's `/version` answer; unreachable when it does not answer.
    async fn daemon_version(&self) -> Result<bollard::models::SystemVersion> {
        self.client
            .version()
            .await
            .map_err(|err| Error::Unreachable {
                detail: crate::adapters::kube::error_chain(&err),
            })
    }

    /// Chooses the builder for this daemon (see [`choose_builder`]); `setting` is
    /// `GANTRY_BUILDER`'s value.
    pub async fn choose_builder(&self, setting: Option<&str>) -> Result<BuilderChoice> {
        let version = self.daemon_version().await?;
        choose_builder(
            setting,
            version.api_version.as_deref().unwrap_or(""),
            version.os.as_deref().unwrap_or(""),
        )
    }

    /// Builds with the request's builder; each output line goes to `on_line`. Returns the image id.
    ///
    /// The context is listed first (so an unreadable context fails before the daemon is asked),
    /// then streamed to the daemon as a tar while it is written: memory stays at a few chunks
    /// whatever the context's size.
    pub async fn build(
        &self,
        request: &BuildRequest,
        on_line: impl FnMut(&str) + Send,
    ) -> Result<String> {
        let (context, dockerfile) = (request.context.clone(), request.dockerfile.clone());
        let context_error = |err: tokio::task::JoinError| Error::Context {
            path: request.context.clone(),
            source: std::io::Error::other(err.to_string()),
        };
        // Listing and reading the context is blocking file I/O; keep it off the async workers.
        let listing =
            tokio::task::spawn_blocking(move || ContextListing::new(&context, &dockerfile))
                .await
                .map_err(context_error)??;
        let dockerfile = listing.dockerfile_name.clone();
        let (body, writer) = stream_context(listing);
        let buildkit = request.builder == Builder::BuildKit;
        let mut options = BuildImageOptionsBuilder::new()
            .dockerfile(&dockerfile)
            .t(&request.tag)
            .buildargs(&request.build_args)
            .labels(&request.labels)
            .rm(true)
            .forcerm(true)
            .version(if buildkit {
                BuilderVersion::BuilderBuildKit
            } else {
                BuilderVersion::BuilderV1
            });
        if let Some(target) = &request.target {
            options = options.target(target);
        }
        if buildkit {
            options = options.session(&format!(
                "gantry-{}",
                crate::report::workflow::random_token()
            ));
        }
        let body = bollard::body_try_stream(body);
        let stream = self.client.build_image(options.build(), None, Some(body));
        let followed = if buildkit {
            follow::<BuildKitLog>(stream, on_line).await
        } else {
            follow::<BuildLog>(stream, on_line).await
        };
        let written = writer.await.map_err(context_error)?;
        build_outcome(followed, written)
    }

    /// Tags a local image as `repository:tag`.
    pub async fn tag(&self, image: &str, repository: &str, tag: &str) -> Result<()> {
        self.client
            .tag_image(
                image,
                Some(
                    TagImageOptionsBuilder::new()
                        .repo(repository)
                        .tag(tag)
                        .build(),
                ),
            )
            .await
            .map_err(|source| Error::Tag {
                image: image.to_string(),
                target: format!("{repository}:{tag}"),
                source,
            })
    }

    /// Pushes `repository:tag`; progress lines go to `on_line`.
    pub async fn push(
        &self,
        repository: &str,
        tag: &str,
        registry: &str,
        credentials: Option<&Credentials>,
        mut on_line: impl FnMut(&str) + Send,
    ) -> Result<()> {
        let target = format!("{repository}:{tag}");
        let credentials = credentials.map(|c| DockerCredentials {
            username: Some(c.username.clone()),
            password: Some(c.password.clone()),
            serveraddress: Some(registry.to_string()),
            ..Default::default()
        });
        let options = PushImageOptionsBuilder::new().tag(tag).build();
        let mut stream = self
            .client
            .push_image(repository, Some(options), credentials);
        let failed = |message: String| {
            let lower = message.to_ascii_lowercase();
            if lower.contains("unauthorized")
                || lower.contains("authentication required")
                || lower.contains("no basic auth credentials")
            {
                Error::PushUnauthorized {
                    target: target.clone(),
                    message,
                }
            } else {
                Error::Push {
                    target: target.clone(),
                    message,
                }
            }
        };
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(error) = info.error {
                        return Err(failed(error));
                    }
                    if let (Some(status), None) = (&info.status, &info.progress) {
                        on_line(status);
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(failed(error))
                }
                Err(err) => return Err(failed(err.to_string())),
            }
        }
        Ok(())
    }

    /// Runs `entrypoint + cmd` in a fresh container of `image`, waits at most `timeout` (then
    /// kills it), collects the output and removes the container. `name` is the container's name
    /// (so a cancelled run can remove it).
    pub async fn smoke_test(
        &self,
        image: &str,
        name: &str,
        entrypoint: Vec<String>,
        cmd: Vec<String>,
        timeout: std::time::Duration,
    ) -> Result<SmokeResult> {
        let container_err = |source| Error::Container {
            image: image.to_string(),
            source,
        };
        let config = ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint: Some(entrypoint),
            cmd: Some(cmd),
            network_disabled: Some(true),
            ..Default::default()
        };
        self.client
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(name).build()),
                config,
            )
            .await
            .map_err(container_err)?;
        let outcome = self.run_container(name, timeout).await;
        self.remove_container(name).await;
        outcome.map_err(container_err)
    }

    async fn run_container(
        &self,
        name: &str,
        timeout: std::time::Duration,
    ) -> std::result::Result<SmokeResult, bollard::errors::Error> {
        self.client
            .start_container(name, None::<StartContainerOptions>)
            .await?;
        let mut exit_code = 0;
        let wait = async {
            let mut wait = self
                .client
                .wait_container(name, None::<WaitContainerOptions>);
            while let Some(item) = wait.next().await {
                match item {
                    Ok(response) => exit_code = response.status_code,
                    Err(bollard::errors::Error::DockerContainerWaitError { code, .. }) => {
                        exit_code = code
                    }
                    Err(err) => return Err(err),
                }
            }
            Ok(())
        };
        let timed_out = match tokio::time::timeout(timeout, wait).await {
            Ok(waited) => {
                waited?;
                false
            }
            Err(_) => {
                // SIGKILL; the output so far stays readable until the container is removed.
                self.client
                    .kill_container(name, None::<KillContainerOptions>)
                    .await
                    .or_else(|err| match err {
                        // It ended between the time limit and the kill.
                        bollard::errors::Error::DockerResponseServerError {
                            status_code: 409,
                            ..
                        } => Ok(()),
                        err => Err(err),
                    })?;
                true
            }
        };
        let mut output = String::new();
        let mut logs = self.client.logs(
            name,
            Some(
                LogsOptionsBuilder::new()
                    .stdout(true)
                    .stderr(true)
                    .tail("40")
                    .build(),
            ),
        );
        while let Some(item) = logs.next().await {
            match item? {
                LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message } => {
                    output.push_str(&String::from_utf8_lossy(&message))
                }
                LogOutput::StdIn { .. } => {}
            }
        }
        Ok(SmokeResult {
            exit_code,
            output,
            timed_out,
        })
    }

    /// Removes a container by name, ignoring "no such container".
    pub async fn remove_container(&self, name: &str) {
        let _ = self
            .client
            .remove_container(
                name,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await;
    }

    /// Whether a local image exists.
    pub async fn image_exists(&self, image: &str) -> bool {
        self.client.inspect_image(image).await.is_ok()
    }
}

/// The error text of a failed build stream item.
fn stream_error(err: bollard::errors::Error) -> String {
    match err {
        bollard::errors::Error::DockerStreamError { error } => error,
        bollard::errors::Error::DockerResponseServerError { message, .. } => message,
        err => err.to_string(),
    }
}

/// The image id in an `aux` message (`{"ID": "sha256:..."}`, `moby.image.id` under BuildKit).
fn aux_image_id(aux: &Option<BuildInfoAux>) -> Option<&str> {
    match aux {
        Some(BuildInfoAux::Default(image)) => image.id.as_deref(),
        _ => None,
    }
}

/// What follows a build's stream: the classic builder's log or BuildKit's progress.
trait BuildProgress: Default {
    /// Takes one message of the daemon's stream; gives `on_line` each line to print.
    fn feed(&mut self, info: &BuildInfo, on_line: &mut dyn FnMut(&str));
    /// The failure a person reads, with the failing step and its last lines.
    fn failure(&self, error: &str) -> String;
    fn image_id(&self) -> Option<&str>;
}

impl BuildProgress for BuildLog {
    fn feed(&mut self, info: &BuildInfo, on_line: &mut dyn FnMut(&str)) {
        if let Some(text) = &info.stream {
            for line in buildlog::lines(text) {
                on_line(line);
                self.push_line(line);
            }
        }
        if let Some(id) = aux_image_id(&info.aux) {
            self.set_image_id(id);
        }
    }
    fn failure(&self, error: &str) -> String {
        BuildLog::failure(self, error)
    }
    fn image_id(&self) -> Option<&str> {
        BuildLog::image_id(self)
    }
}

impl BuildProgress for BuildKitLog {
    fn feed(&mut self, info: &BuildInfo, on_line: &mut dyn FnMut(&str)) {
        match &info.aux {
            Some(BuildInfoAux::BuildKit(status)) => {
                for line in self.push(&progress(status)) {
                    on_line(&line);
                }
            }
            aux => {
                if let Some(id) = aux_image_id(aux) {
                    self.set_image_id(id);
                }
            }
        }
        if let Some(text) = &info.stream {
            for line in buildlog::lines(text) {
                on_line(line);
            }
        }
    }
    fn failure(&self, error: &str) -> String {
        BuildKitLog::failure(self, error)
    }
    fn image_id(&self) -> Option<&str> {
        BuildKitLog::image_id(self)
    }
}

/// Follows a build's stream to its end: the image id, or the failure with its step.
async fn follow<L: BuildProgress>(
    mut stream: impl futures::Stream<Item = std::result::Result<BuildInfo, bollard::errors::Error>>
        + Unpin,
    mut on_line: impl FnMut(&str) + Send,
) -> Result<String> {
    let mut log = L::default();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|err| Error::BuildFailed(log.failure(&stream_error(err))))?;
        log.feed(&info, &mut on_line);
        if let Some(error) = info.error {
            return Err(Error::BuildFailed(log.failure(&error)));
        }
    }
    log.image_id().map(str::to_string).ok_or(Error::NoImage)
}

/// BuildKit's progress message in the terms of [`BuildKitLog`].
fn progress(status: &bollard::moby::buildkit::v1::StatusResponse) -> buildlog::Progress {
    buildlog::Progress {
        vertexes: status
            .vertexes
            .iter()
            .map(|vertex| buildlog::VertexStatus {
                digest: vertex.digest.clone(),
                name: vertex.name.clone(),
                started: vertex.started.is_some(),
                cached: vertex.cached,
                completed: vertex.completed.is_some(),
                error: vertex.error.clone(),
            })
            .collect(),
        logs: status
            .logs
            .iter()
            .map(|log| buildlog::VertexOutput {
                vertex: log.vertex.clone(),
                msg: log.msg.clone(),
            })
            .collect(),
    }
}

/// What goes into a build context: every file not excluded by `.dockerignore`, plus the
/// Dockerfile and `.dockerignore` themselves (always sent, as Docker does).
#[derive(Debug)]
pub struct ContextListing {
    /// (path on disk, name in the tar), directories before their contents.
    entries: Vec<(PathBuf, String)>,
    /// The Dockerfile's name inside the tar.
    pub dockerfile_name: String,
}

impl ContextListing {
    /// Walks the context (nothing is read but `.dockerignore` and directory listings).
    pub fn new(context: &Path, dockerfile: &Path) -> Result<ContextListing> {
        let context = context.canonicalize().map_err(ctx_err(context))?;
        let dockerfile = dockerfile.canonicalize().map_err(ctx_err(dockerfile))?;
        let ignore = match std::fs::read_to_string(context.join(".dockerignore")) {
            Ok(text) => Matcher::parse(&text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Matcher::default(),
            Err(err) => return Err(ctx_err(&context.join(".dockerignore"))(err)),
        };
        let (dockerfile_name, dockerfile_outside) = match dockerfile.strip_prefix(&context) {
            Ok(rel) => (slash_path(rel), false),
            Err(_) => (".gantry.Dockerfile".to_string(), true),
        };
        let mut entries = Vec::new();
        let mut stack = vec![context.clone()];
        while let Some(dir) = stack.pop() {
            let mut listed: Vec<_> = std::fs::read_dir(&dir)
                .map_err(ctx_err(&dir))?
                .collect::<std::io::Result<_>>()
                .map_err(ctx_err(&dir))?;
            listed.sort_by_key(|e| e.file_name());
            for entry in listed {
                let path = entry.path();
                let rel = match path.strip_prefix(&context) {
                    Ok(rel) => slash_path(rel),
                    Err(_) => continue,
                };
                let file_type = entry.file_type().map_err(ctx_err(&path))?;
                let always = rel == dockerfile_name || rel == ".dockerignore";
                let excluded = !always && ignore.excluded(&rel);
                if file_type.is_dir() {
                    if !excluded || ignore.has_exceptions() {
                        stack.push(path.clone());
                    }
                    if !excluded {
                        entries.push((path, rel));
                    }
                } else if !excluded {
                    entries.push((path, rel));
                }
            }
        }
        if dockerfile_outside {
            entries.push((dockerfile, dockerfile_name.clone()));
        }
        Ok(ContextListing {
            entries,
            dockerfile_name,
        })
    }

    /// Writes the context as a tar (symlinks as links, not followed).
    pub fn write_tar(&self, out: impl std::io::Write) -> Result<()> {
        let mut builder = tar::Builder::new(out);
        builder.follow_symlinks(false);
        for (path, name) in &self.entries {
            builder
                .append_path_with_name(path, name)
                .map_err(ctx_err(path))?;
        }
        builder.into_inner().map_err(ctx_err(Path::new(".")))?;
        Ok(())
    }
}

fn ctx_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Context { path, source }
}

/// The result of a build whose context was streamed: a context that could not be read explains
/// the failure better than the daemon's view of a cut-off upload, but a daemon that stopped
/// reading (the build failed first) leaves the build's own error.
fn build_outcome(build: Result<String>, written: Result<()>) -> Result<String> {
    match (build, written) {
        (build, Ok(())) => build,
        (Err(build), Err(Error::Context { source, .. }))
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Err(build)
        }
        (_, Err(context)) => Err(context),
    }
}

/// Bytes of tar per chunk sent to the daemon, and chunks in flight at most.
const CONTEXT_CHUNK: usize = 256 * 1024;
const CONTEXT_CHUNKS_IN_FLIGHT: usize = 4;

/// The context as a request body, written by a blocking task as the daemon reads it. The task's
/// result says whether the whole context was sent.
fn stream_context(
    listing: ContextListing,
) -> (
    impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    tokio::task::JoinHandle<Result<()>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(CONTEXT_CHUNKS_IN_FLIGHT);
    let writer = tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CONTEXT_CHUNK),
        };
        let written = listing.write_tar(&mut out).and_then(|()| {
            out.send().map_err(ctx_err(Path::new(".")))?;
            Ok(())
        });
        if let Err(err) = &written {
            // Ends the upload with an error, so the daemon does not build a partial context.
            let _ = tx.blocking_send(Err(std::io::Error::other(err.to_string())));
        }
        written
    });
    let chunks = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (chunks, writer)
}

/// An `io::Write` that sends full chunks down a channel (blocking while the channel is full).
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CONTEXT_CHUNK));
        self.tx.blocking_send(Ok(Bytes::from(chunk))).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the daemon stopped reading the build context",
            )
        })
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = CONTEXT_CHUNK - self.buf.len();
        let taken = data.len().min(room);
        self.buf.extend_from_slice(&data[..taken]);
        if self.buf.len() >= CONTEXT_CHUNK {
            self.send()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn slash_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_tar_honours_dockerignore_and_always_sends_the_dockerfile() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("Dockerfile"), "FROM x\n").unwrap();
        std::fs::write(
            root.join(".dockerignore"),
            "Dockerfile\n.dockerignore\n*.log\nsecret/\n!secret/public.txt\n",
        )
        .unwrap();
        std::fs::write(root.join("app.txt"), "app").unwrap();
        std::fs::write(root.join("debug.log"), "log").unwrap();
        std::fs::create_dir(root.join("secret")).unwrap();
        std::fs::write(root.join("secret/key"), "k").unwrap();
        std::fs::write(root.join("secret/public.txt"), "p").unwrap();
        let listing = ContextListing::new(root, &root.join("Dockerfile")).unwrap();
        assert_eq!(listing.dockerfile_name, "Dockerfile");
        let mut tar = Vec::new();
        listing.write_tar(&mut tar).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ".dockerignore",
                "Dockerfile",
                "app.txt",
                "secret/public.txt"
            ]
        );
    }

    #[test]
    fn a_context_error_explains_a_build_unless_the_daemon_stopped_reading() {
        let context = |kind| {
            Err(Error::Context {
                path: "ctx".into(),
                source: std::io::Error::new(kind, "x"),
            })
        };
        let failed = || Err(Error::BuildFailed("step 2 failed".into()));
        let built = || Ok("sha256:ab".to_string());
        let describe = |r: Result<String>| match r {
            Ok(id) => id,
            Err(Error::BuildFailed(m)) => m,
            Err(Error::Context { source, .. }) => format!("context: {:?}", source.kind()),
            Err(other) => other.to_string(),
        };
        use std::io::ErrorKind::{BrokenPipe, PermissionDenied};
        let table = [
            (built(), Ok(()), "sha256:ab"),
            (failed(), Ok(()), "step 2 failed"),
            (failed(), context(BrokenPipe), "step 2 failed"),
            (
                failed(),
                context(PermissionDenied),
                "context: PermissionDenied",
            ),
            (
                built(),
                context(PermissionDenied),
                "context: PermissionDenied",
            ),
        ];
        for (build, written, want) in table {
            assert_eq!(describe(build_outcome(build, written)), want);
        }
    }

    #[test]
    fn builder_choice_follows_the_daemon_and_the_override() {
        let auto = |api, os| choose_builder(None, api, os).unwrap().builder;
        assert_eq!(auto("1.41", "linux"), Builder::BuildKit);
        assert_eq!(auto("1.39", "linux"), Builder::BuildKit);
        assert_eq!(auto("1.38", "linux"), Builder::Classic);
        assert_eq!(auto("1.41", "windows"), Builder::Classic);
        assert_eq!(auto("", ""), Builder::Classic);
        assert_eq!(auto("garbage", "linux"), Builder::Classic);
        let set = |value| choose_builder(Some(value), "1.38", "windows");
        assert_eq!(set("classic").unwrap().builder, Builder::Classic);
        assert_eq!(set(" BuildKit ").unwrap().builder, Builder::BuildKit);
        assert_eq!(
            choose_builder(Some("auto"), "1.41", "linux")
                .unwrap()
                .builder,
            Builder::BuildKit
        );
        assert_eq!(
            choose_builder(Some(""), "1.41", "linux").unwrap().builder,
            Builder::BuildKit
        );
        let err = set("kaniko").unwrap_err().to_string();
        assert!(
            err.contains("GANTRY_BUILDER=\"kaniko\" is not a builder"),
            "{err}"
        );
        assert!(choose_builder(None, "1.38", "linux")
            .unwrap()
            .reason
            .contains("1.39"));
    }
}
