//! The build phase: resolves every image's registry address, checks Docker and the registry, then builds and smoke-tests the images concurrently, pushes them only when all passed, and reports `repository@digest`.
//!
//! Design note: the steps run in a fixed order: resolve references (Terraform outputs, commit
//! tag), reach Docker, get registry credentials (masked first), make sure ECR repositories
//! exist, look up existing commit tags, build and smoke-test, push, read digests back. Every
//! failure before the build stage leaves nothing built; any build or smoke-test failure leaves
//! nothing pushed, because pushing starts only after every image passed. Decisions live in the
//! pure [`crate::image`] module.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::adapters::docker::{self, BuildRequest, Builder, Docker};
use crate::adapters::ecr::{self, CreateSettings, EcrClients};
use crate::adapters::registry::{self, Registry};
use crate::app::frame::RunContext;
use crate::cancel::Cancel;
use crate::config::{ImageSpec, SmokeTest};
use crate::image::access::{self, Credential, RegistryInputs};
use crate::image::auth::{self, Credentials};
use crate::image::reference::{self, ImageRef};
use crate::image::{built, choose_action, needs_lookup, Action, BuiltImage, ImageStatus};
use crate::pipeline::{Command, FailureReason, Handoff, PhaseResult, PhaseStatus};

/// Why the build phase stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Reference(#[from] reference::Error),
    #[error("{0}")]
    DockerUnreachable(#[source] docker::Error),
    #[error("{0}")]
    BuilderSetting(#[source] docker::Error),
    #[error("image `{image}`: {source}")]
    Build {
        image: String,
        #[source]
        source: docker::Error,
    },
    #[error("image `{image}`: the smoke test exited with code {exit_code}; nothing was pushed. Last lines of its output:\n{output}")]
    SmokeFailed {
        image: String,
        exit_code: i64,
        output: String,
    },
    #[error("image `{image}`: the smoke test could not run: {source}")]
    SmokeRun {
        image: String,
        #[source]
        source: docker::Error,
    },
    #[error("image `{image}`: {source}")]
    Push {
        image: String,
        #[source]
        source: docker::Error,
    },
    #[error("image `{image}`: could not give the reused image the extra tag `{tag}`: {source}")]
    Tag {
        image: String,
        tag: String,
        #[source]
        source: registry::Error,
    },
    #[error("image `{image}`: the smoke test did not finish within {} and was stopped; nothing was pushed (raise smoke-test-timeout if it needs longer). Last lines of its output:\n{output}", crate::config::values::format_duration(*.timeout))]
    SmokeTimedOut {
        image: String,
        timeout: Duration,
        output: String,
    },
    #[error("image `{image}`: pushed, but the registry serves no manifest for the tag `{tag}`")]
    NoDigest { image: String, tag: String },
    #[error(transparent)]
    Ecr(#[from] ecr::Error),
    #[error("{0}")]
    Registry(#[from] registry::Error),
    #[error(transparent)]
    Auth(#[from] auth::Error),
    #[error("no AWS region: set aws-region (or AWS_REGION) to find the ECR registry")]
    NoRegion,
    #[error("the version `{tag}` has no image in the registry for {}; build and push that commit first (a chosen version is never rebuilt)", .images.join(", "))]
    VersionMissing { tag: String, images: Vec<String> },
    #[error("cancelled {during}; nothing more was built or pushed")]
    Cancelled { during: &'static str },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The machine-readable `failure-reason`.
    pub fn failure_reason(&self) -> FailureReason {
        match self {
            Error::Reference(reference::Error::NoCommit | reference::Error::BadTag(_)) => {
                FailureReason::BuildFailed
            }
            Error::Reference(_) => FailureReason::RepositoryMissing,
            Error::DockerUnreachable(_) => FailureReason::DockerUnreachable,
            Error::Build { .. } | Error::BuilderSetting(_) => FailureReason::BuildFailed,
            Error::SmokeFailed { .. } | Error::SmokeRun { .. } | Error::SmokeTimedOut { .. } => {
                FailureReason::SmokeTestFailed
            }
            Error::Tag {
                source:
                    registry::Error::Unauthorized { .. }
                    | registry::Error::Forbidden { .. }
                    | registry::Error::Token { .. }
                    | registry::Error::Challenge(_),
                ..
            } => FailureReason::RegistryAuthFailed,
            Error::Tag { .. } => FailureReason::PushFailed,
            Error::Push {
                source: docker::Error::PushUnauthorized { .. },
                ..
            } => FailureReason::RegistryAuthFailed,
            Error::Push { .. } | Error::NoDigest { .. } => FailureReason::PushFailed,
            Error::Ecr(
                ecr::Error::Missing(_) | ecr::Error::Describe { .. } | ecr::Error::Create { .. },
            ) => FailureReason::RepositoryMissing,
            Error::Ecr(_) | Error::Auth(_) | Error::NoRegion => FailureReason::RegistryAuthFailed,
            Error::Registry(
                registry::Error::Unauthorized { .. }
                | registry::Error::Forbidden { .. }
                | registry::Error::Token { .. }
                | registry::Error::Challenge(_),
            ) => FailureReason::RegistryAuthFailed,
            Error::Registry(_) => FailureReason::PushFailed,
            Error::VersionMissing { .. } => FailureReason::RepositoryMissing,
            Error::Cancelled { .. } => FailureReason::Cancelled,
        }
    }
}

/// One image with its resolved address.
struct Target<'a> {
    spec: &'a ImageSpec,
    image: ImageRef,
}

/// An image built (and smoke-tested) in this run.
struct Built {
    index: usize,
    elapsed: Duration,
}

/// How the registries are reached.
struct Access {
    /// Credentials by registry host (none: anonymous).
    credentials: HashMap<String, Credentials>,
    registry: Registry,
}

impl Access {
    fn credentials_for(&self, host: &str) -> Option<&Credentials> {
        self.credentials.get(host)
    }
}

/// Runs the build phase.
pub async fn run(run: &RunContext<'_>, handoff: &mut Handoff) -> PhaseResult {
    let mut pushed_any = false;
    match execute(run, handoff, &mut pushed_any).await {
        Ok(images) => {
            let mut result = PhaseResult::new(PhaseStatus::Succeeded);
            result.outputs = built::outputs(&images);
            let plan = run.decision.command == Command::Plan;
            for image in &images {
                if let Some(reference) = image.reference() {
                    handoff.images.insert(image.name.clone(), reference);
                } else if plan {
                    // A plan pushes nothing, so a new image has no digest yet: the plan shows
                    // its commit tag, which the deploy replaces by the pushed digest.
                    handoff
                        .images
                        .insert(image.name.clone(), format!("{}:{}", image.uri, image.tag));
                }
            }
            handoff.built_images = images;
            result
        }
        Err(err) => {
            let message = run.runner.redact(&err.to_string());
            let consequence = if pushed_any {
                "The failure came while pushing, so some images may have reached the registry (under this commit's tag only); nothing was deployed, the deployed environment is untouched."
            } else {
                "Nothing was pushed; the deployed environment is untouched."
            };
            let mut result = PhaseResult::new(PhaseStatus::failed(
                err.failure_reason(),
                format!("{message}\n{consequence}"),
            ));
            result.notes.push(format!(
                "**Build failed** (`{}`): {consequence}",
                err.failure_reason()
            ));
            result
                .notes
                .push(format!("```\n{}\n```", message.replace("```", "'''")));
            result
        }
    }
}

/// The steps of the phase in order; `pushed_any` says whether anything reached a registry.
async fn execute(
    run: &RunContext<'_>,
    handoff: &Handoff,
    pushed_any: &mut bool,
) -> Result<Vec<BuiltImage>> {
    let build = &run.config.build;
    let commit = run
        .decision
        .commit
        .as_deref()
        .or(run.context.sha.as_deref());
    let tag = reference::commit_tag(commit)?;
    let version_mode = run.config.version.is_some();
    let pushing = build.push && run.decision.command != Command::Plan && !version_mode;

    // 1. Repository texts (Terraform outputs) before anything else.
    let texts = build
        .images
        .iter()
        .map(|spec| {
            reference::repository_text(&spec.name, &spec.repository, &handoff.terraform_outputs)
        })
        .collect::<Result<Vec<String>, _>>()?;
    // 2. Docker, unless only existing tags are looked up.
    let docker = if version_mode {
        None
    } else {
        Some(connect_docker(run).await?)
    };
    // 3. Where each image goes.
    let inputs = RegistryInputs {
        registry: build.registry.as_deref(),
        endpoint: build.registry_endpoint.as_deref(),
        username: build.registry_username.as_deref(),
        aws_endpoint_url: build.aws_endpoint_url.as_deref(),
        aws_region: build.aws_region.as_deref(),
    };
    if let Some(password) = &build.registry_password {
        run.runner.add_mask(password.expose());
    }
    let mut ecr = EcrClients::new(build.aws_endpoint_url.as_deref());
    let targets = resolve_targets(run, &inputs, &mut ecr, &texts, &tag).await?;
    // 4. Registry credentials, masked before any use: only when the registry is asked at all.
    let asks_registry = pushing || needs_lookup(version_mode, build.skip_existing);
    let access = registry_access(run, &inputs, &mut ecr, &targets, asks_registry).await?;
    // 5. ECR repositories exist (created when allowed) before anything is built.
    if pushing {
        ensure_repositories(run, &inputs, &mut ecr, &targets).await?;
    }
    // 6. Existing commit tags: reuse instead of rebuilding.
    let actions = look_up_existing(run, &access, &targets, &tag).await?;
    // 7. Build and smoke-test every image to build, concurrently; the first failure stops the rest.
    let built = match &docker {
        Some((docker, builder)) => {
            build_all(run, docker, *builder, &targets, &actions, &tag).await?
        }
        None => Vec::new(),
    };
    // 8. Push, then read each digest back from the registry; reused images get their tags.
    let mut digests = HashMap::new();
    if pushing {
        if let Some((docker, _)) = &docker {
            let jobs = built
                .iter()
                .map(|b| push_one(run, docker, &access, &targets[b.index], b.index))
                .collect();
            *pushed_any = true;
            let pushed = run_limited(jobs, build.concurrency, run.cancel, "while pushing").await?;
            for (index, digest, elapsed) in pushed {
                digests.insert(index, (digest, elapsed));
            }
        }
        tag_reused(run, &access, &targets, &actions, pushed_any).await?;
    }
    Ok(built_images(&targets, actions, &built, digests, &tag))
}

/// Docker, and the builder it builds with (BuildKit unless `GANTRY_BUILDER` or the daemon says
/// otherwise).
async fn connect_docker(run: &RunContext<'_>) -> Result<(Docker, Builder)> {
    let docker = Docker::connect().await.map_err(Error::DockerUnreachable)?;
    let setting = std::env::var("GANTRY_BUILDER").ok();
    let choice = docker
        .choose_builder(setting.as_deref())
        .await
        .map_err(|err| match err {
            docker::Error::BuilderSetting(_) => Error::BuilderSetting(err),
            err => Error::DockerUnreachable(err),
        })?;
    run.runner.info(&format!(
        "Building with {} ({})",
        choice.builder, choice.reason
    ));
    Ok((docker, choice.builder))
}

/// The registry host of every image: the host of a full URI, else the `registry` input, else
/// ECR's, derived from the account (the `registry` input or the credentials') and the region.
async fn resolve_targets<'r>(
    run: &'r RunContext<'_>,
    inputs: &RegistryInputs<'_>,
    ecr: &mut EcrClients,
    texts: &[String],
    tag: &str,
) -> Result<Vec<Target<'r>>> {
    let build = &run.config.build;
    let needs_default = inputs.endpoint.is_none()
        && inputs.registry_host().is_none()
        && texts
            .iter()
            .any(|t| crate::image::name::split_host(t).0.is_none());
    let default_registry = if needs_default && inputs.uses_ecr() {
        let client = ecr.region(inputs.aws_region).await;
        let region = inputs
            .aws_region
            .map(str::to_string)
            .or_else(|| client.region())
            .ok_or(Error::NoRegion)?;
        let account = match inputs.account() {
            Some(account) => account.to_string(),
            None => client.account_id().await?,
        };
        Some(access::ecr_host(&account, &region))
    } else {
        inputs.registry_host().map(str::to_string)
    };
    let mut targets = Vec::new();
    for (spec, text) in build.images.iter().zip(texts) {
        let image = reference::resolve(
            &spec.name,
            text,
            build.registry_endpoint.as_deref(),
            default_registry.as_deref(),
            tag,
        )?;
        targets.push(Target { spec, image });
    }
    Ok(targets)
}

/// The credentials of every registry host the images use, masked before any use; none when
/// the registry is not asked at all.
async fn registry_access(
    run: &RunContext<'_>,
    inputs: &RegistryInputs<'_>,
    ecr: &mut EcrClients,
    targets: &[Target<'_>],
    asks_registry: bool,
) -> Result<Access> {
    let build = &run.config.build;
    let mut access = Access {
        credentials: HashMap::new(),
        registry: Registry::from_env()?,
    };
    if !asks_registry {
        return Ok(access);
    }
    let hosts: BTreeSet<&str> = targets.iter().map(|t| t.image.registry.as_str()).collect();
    for host in hosts {
        let credentials = match inputs.credential_for(host) {
            Credential::Anonymous => continue,
            Credential::Given => Credentials {
                username: build.registry_username.clone().unwrap_or_default(),
                password: build
                    .registry_password
                    .as_ref()
                    .map(|p| p.expose().to_string())
                    .unwrap_or_default(),
            },
            Credential::Ecr { account, region } => {
                let client = ecr.region(region.as_deref()).await;
                let token = client.authorization_token(account.as_deref()).await?;
                run.runner.add_mask(&token);
                let credentials = auth::decode_ecr_token(&token)?;
                run.runner.add_mask(&credentials.password);
                credentials
            }
        };
        access.credentials.insert(host.to_string(), credentials);
    }
    Ok(access)
}

/// Every ECR repository the images go to exists (created when `create-repository` allows).
async fn ensure_repositories(
    run: &RunContext<'_>,
    inputs: &RegistryInputs<'_>,
    ecr: &mut EcrClients,
    targets: &[Target<'_>],
) -> Result<()> {
    let build = &run.config.build;
    let create = build.create_repository.then_some(CreateSettings {
        tag_immutability: build.tag_immutability,
        scan_on_push: build.scan_on_push,
    });
    let repositories: BTreeSet<(&str, &str)> = targets
        .iter()
        .map(|t| (t.image.registry.as_str(), t.image.repository.as_str()))
        .collect();
    for (host, name) in repositories {
        let Credential::Ecr { account, region } = inputs.credential_for(host) else {
            continue;
        };
        let client = ecr.region(region.as_deref()).await;
        let state = client
            .ensure_repository(account.as_deref(), name, create)
            .await?;
        if state == ecr::RepositoryState::Created {
            run.runner
                .info(&format!("created the ECR repository {name}"));
        }
    }
    Ok(())
}

/// What to do with each image (build, reuse the commit tag's digest, or missing for a chosen
/// version), and how long the lookup took.
async fn look_up_existing(
    run: &RunContext<'_>,
    access: &Access,
    targets: &[Target<'_>],
    tag: &str,
) -> Result<Vec<(Action, Duration)>> {
    let build = &run.config.build;
    let version_mode = run.config.version.is_some();
    let mut actions = Vec::new();
    for target in targets {
        let started = Instant::now();
        let existing = if needs_lookup(version_mode, build.skip_existing) {
            let lookup = access.registry.manifest_digest(
                &target.image.registry,
                &target.image.repository,
                tag,
                access.credentials_for(&target.image.registry),
            );
            cancellable(run.cancel, "while looking up existing images", lookup).await??
        } else {
            None
        };
        actions.push((
            choose_action(version_mode, build.skip_existing, existing),
            started.elapsed(),
        ));
    }
    let missing: Vec<String> = targets
        .iter()
        .zip(&actions)
        .filter(|(_, (action, _))| *action == Action::Missing)
        .map(|(t, _)| format!("`{}` ({})", t.spec.name, t.image.tagged(tag)))
        .collect();
    if !missing.is_empty() {
        return Err(Error::VersionMissing {
            tag: tag.to_string(),
            images: missing,
        });
    }
    for (target, (action, _)) in targets.iter().zip(&actions) {
        if let Action::Reuse { digest } = action {
            run.runner.info(&format!(
                "{}: {} exists in the registry ({digest}); reused, not rebuilt",
                target.spec.name,
                target.image.tagged(tag)
            ));
        }
    }
    Ok(actions)
}

/// Builds and smoke-tests every image to build, `build-concurrency` at a time; a cancelled
/// smoke test's container is removed.
async fn build_all(
    run: &RunContext<'_>,
    docker: &Docker,
    builder: Builder,
    targets: &[Target<'_>],
    actions: &[(Action, Duration)],
    tag: &str,
) -> Result<Vec<Built>> {
    let labels = labels(run, tag);
    let smoke_names: std::sync::Mutex<Vec<String>> = Default::default();
    let jobs = actions
        .iter()
        .enumerate()
        .filter(|(_, (action, _))| *action == Action::Build)
        .map(|(index, _)| {
            build_one(
                run,
                docker,
                &targets[index],
                index,
                builder,
                &labels,
                &smoke_names,
            )
        })
        .collect();
    let outcome = run_limited(
        jobs,
        run.config.build.concurrency,
        run.cancel,
        "during the build",
    )
    .await;
    let leftovers = std::mem::take(&mut *smoke_names.lock().unwrap_or_else(|p| p.into_inner()));
    for name in leftovers {
        docker.remove_container(&name).await;
    }
    outcome
}

/// A reused image gets its extra tags too, in the registry alone (nothing is pulled).
async fn tag_reused(
    run: &RunContext<'_>,
    access: &Access,
    targets: &[Target<'_>],
    actions: &[(Action, Duration)],
    pushed_any: &mut bool,
) -> Result<()> {
    for (target, (action, _)) in targets.iter().zip(actions) {
        let Action::Reuse { digest } = action else {
            continue;
        };
        for extra in &target.spec.tags {
            let tagging = access.registry.tag_manifest(
                &target.image.registry,
                &target.image.repository,
                digest,
                extra,
                access.credentials_for(&target.image.registry),
            );
            *pushed_any = true;
            let tagged = cancellable(run.cancel, "while tagging reused images", tagging)
                .await?
                .map_err(|source| Error::Tag {
                    image: target.spec.name.clone(),
                    tag: extra.clone(),
                    source,
                })?;
            let what = match tagged {
                registry::Tagged::Already => "already tagged",
                registry::Tagged::Created => "tagged",
            };
            run.runner.info(&format!(
                "[{}] {what} {} ({digest})",
                target.spec.name,
                target.image.tagged(extra)
            ));
        }
    }
    Ok(())
}

/// What the phase hands on: every image with its digest (none when built but not pushed),
/// status and time.
fn built_images(
    targets: &[Target<'_>],
    actions: Vec<(Action, Duration)>,
    built: &[Built],
    mut digests: HashMap<usize, (String, Duration)>,
    tag: &str,
) -> Vec<BuiltImage> {
    let built_elapsed: HashMap<usize, Duration> =
        built.iter().map(|b| (b.index, b.elapsed)).collect();
    let mut images = Vec::new();
    for (index, (target, (action, lookup))) in targets.iter().zip(actions).enumerate() {
        let (digest, status, elapsed) = match action {
            Action::Reuse { digest } => (Some(digest), ImageStatus::Reused, lookup),
            _ => {
                let build_time = built_elapsed.get(&index).copied().unwrap_or_default() + lookup;
                match digests.remove(&index) {
                    Some((digest, push_time)) => {
                        (Some(digest), ImageStatus::Built, build_time + push_time)
                    }
                    None => (None, ImageStatus::BuiltNotPushed, build_time),
                }
            }
        };
        images.push(BuiltImage {
            name: target.spec.name.clone(),
            uri: target.image.uri(),
            tag: tag.to_string(),
            digest,
            status,
            duration_ms: built::millis(elapsed),
        });
    }
    images
}

/// The OCI labels every image gets.
fn labels(run: &RunContext<'_>, tag: &str) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    labels.insert(
        "org.opencontainers.image.revision".to_string(),
        tag.to_string(),
    );
    if let Some(repository) = &run.context.repository {
        labels.insert(
            "org.opencontainers.image.source".to_string(),
            format!(
                "{}/{repository}",
                run.context.server_url.trim_end_matches('/')
            ),
        );
    }
    labels.insert(
        "org.opencontainers.image.created".to_string(),
        jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
    );
    labels
}

async fn build_one(
    run: &RunContext<'_>,
    docker: &Docker,
    target: &Target<'_>,
    index: usize,
    builder: Builder,
    labels: &HashMap<String, String>,
    smoke_names: &std::sync::Mutex<Vec<String>>,
) -> Result<Built> {
    let started = Instant::now();
    let spec = target.spec;
    let name = &spec.name;
    run.runner.info(&format!(
        "[{name}] building {}",
        target.image.tagged(&target.image.tag)
    ));
    let request = BuildRequest {
        context: spec.context.clone(),
        dockerfile: spec.dockerfile.clone(),
        target: spec.target.clone(),
        build_args: spec.build_args.clone().into_iter().collect(),
        labels: labels.clone(),
        tag: target.image.tagged(&target.image.tag),
        builder,
    };
    let image_id = docker
        .build(&request, |line| {
            run.runner.info(&format!("[{name}] {line}"))
        })
        .await
        .map_err(|source| Error::Build {
            image: name.clone(),
            source,
        })?;
    for extra in &spec.tags {
        docker
            .tag(&image_id, &target.image.uri(), extra)
            .await
            .map_err(|source| Error::Build {
                image: name.clone(),
                source,
            })?;
    }
    if let Some(test) = &spec.smoke_test {
        smoke_test(run, docker, spec, test, &image_id, smoke_names).await?;
    }
    Ok(Built {
        index,
        elapsed: started.elapsed(),
    })
}

/// Runs the image's smoke test in a container (removed afterwards, or by the caller when the
/// run is cancelled meanwhile); its output is logged, a failure or time-out ends the build.
async fn smoke_test(
    run: &RunContext<'_>,
    docker: &Docker,
    spec: &ImageSpec,
    test: &SmokeTest,
    image_id: &str,
    smoke_names: &std::sync::Mutex<Vec<String>>,
) -> Result<()> {
    let name = &spec.name;
    let (entrypoint, cmd) = match test {
        SmokeTest::Shell(script) => (
            vec!["/bin/sh".to_string(), "-c".to_string()],
            vec![script.clone()],
        ),
        SmokeTest::Exec(args) => (
            args.first().cloned().into_iter().collect(),
            args.iter().skip(1).cloned().collect(),
        ),
    };
    let container = format!(
        "gantry-smoke-{name}-{}",
        crate::report::workflow::random_token()
    );
    smoke_names
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(container.clone());
    run.runner.info(&format!("[{name}] smoke test"));
    let result = docker
        .smoke_test(
            image_id,
            &container,
            entrypoint,
            cmd,
            spec.smoke_test_timeout,
        )
        .await
        .map_err(|source| Error::SmokeRun {
            image: name.clone(),
            source,
        })?;
    for line in result.output.lines() {
        run.runner.info(&format!("[{name}] smoke: {line}"));
    }
    let tail: Vec<&str> = result.output.lines().rev().take(15).collect();
    let output = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    if result.timed_out {
        return Err(Error::SmokeTimedOut {
            image: name.clone(),
            timeout: spec.smoke_test_timeout,
            output,
        });
    }
    if result.exit_code != 0 {
        return Err(Error::SmokeFailed {
            image: name.clone(),
            exit_code: result.exit_code,
            output,
        });
    }
    run.runner.info(&format!("[{name}] smoke test passed"));
    Ok(())
}

async fn push_one(
    run: &RunContext<'_>,
    docker: &Docker,
    access: &Access,
    target: &Target<'_>,
    index: usize,
) -> Result<(usize, String, Duration)> {
    let started = Instant::now();
    let name = &target.spec.name;
    let uri = target.image.uri();
    let tags = std::iter::once(&target.image.tag).chain(&target.spec.tags);
    for tag in tags {
        run.runner.info(&format!("[{name}] pushing {uri}:{tag}"));
        docker
            .push(
                &uri,
                tag,
                &target.image.registry,
                access.credentials_for(&target.image.registry),
                |line| run.runner.debug(&format!("[{name}] {line}")),
            )
            .await
            .map_err(|source| Error::Push {
                image: name.clone(),
                source,
            })?;
    }
    let digest = access
        .registry
        .manifest_digest(
            &target.image.registry,
            &target.image.repository,
            &target.image.tag,
            access.credentials_for(&target.image.registry),
        )
        .await?
        .ok_or_else(|| Error::NoDigest {
            image: name.clone(),
            tag: target.image.tag.clone(),
        })?;
    run.runner
        .info(&format!("[{name}] pushed {}", target.image.pinned(&digest)));
    Ok((index, digest, started.elapsed()))
}

/// Runs the jobs at most `limit` at a time; the first error (or a cancellation) drops the rest.
async fn run_limited<T, F>(
    jobs: Vec<F>,
    limit: usize,
    cancel: &Cancel,
    during: &'static str,
) -> Result<Vec<T>>
where
    F: Future<Output = Result<T>>,
{
    let mut stream = futures::stream::iter(jobs).buffer_unordered(limit.max(1));
    let mut done = Vec::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Err(Error::Cancelled { during }),
            next = stream.next() => match next {
                None => return Ok(done),
                Some(Ok(value)) => done.push(value),
                Some(Err(err)) => return Err(err),
            },
        }
    }
}

/// Awaits `future` unless the run is cancelled first.
async fn cancellable<T>(
    cancel: &Cancel,
    during: &'static str,
    future: impl Future<Output = T>,
) -> Result<T> {
    tokio::select! {
        _ = cancel.cancelled() => Err(Error::Cancelled { during }),
        value = future => Ok(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons() {
        let table: Vec<(Error, &str)> = vec![
            (Error::Reference(reference::Error::NoCommit), "build-failed"),
            (
                Error::Reference(reference::Error::OutputMissing {
                    image: "a".into(),
                    output: "o".into(),
                }),
                "repository-missing",
            ),
            (
                Error::DockerUnreachable(docker::Error::Unreachable { detail: "x".into() }),
                "docker-unreachable",
            ),
            (
                Error::Build {
                    image: "a".into(),
                    source: docker::Error::BuildFailed("x".into()),
                },
                "build-failed",
            ),
            (
                Error::SmokeFailed {
                    image: "a".into(),
                    exit_code: 1,
                    output: String::new(),
                },
                "smoke-test-failed",
            ),
            (
                Error::Push {
                    image: "a".into(),
                    source: docker::Error::PushUnauthorized {
                        target: "t".into(),
                        message: "m".into(),
                    },
                },
                "registry-auth-failed",
            ),
            (
                Error::Push {
                    image: "a".into(),
                    source: docker::Error::Push {
                        target: "t".into(),
                        message: "m".into(),
                    },
                },
                "push-failed",
            ),
            (
                Error::Ecr(ecr::Error::Missing("r".into())),
                "repository-missing",
            ),
            (Error::Ecr(ecr::Error::NoToken), "registry-auth-failed"),
            (
                Error::Registry(registry::Error::Unauthorized {
                    host: "h".into(),
                    repository: "r".into(),
                    hint: "x",
                }),
                "registry-auth-failed",
            ),
            (
                Error::VersionMissing {
                    tag: "v1".into(),
                    images: vec!["`a`".into()],
                },
                "repository-missing",
            ),
            (Error::Cancelled { during: "x" }, "cancelled"),
        ];
        for (err, want) in table {
            assert_eq!(err.failure_reason().as_str(), want, "{err}");
        }
    }
}
