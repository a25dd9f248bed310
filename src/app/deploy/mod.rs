//! The deploy phase: renders the release (placeholders substituted, images pinned by digest, in apply order), checks its kinds against the cluster, then runs the verb (deploy, plan, rollback, history) through the [`engine`].
//!
//! Without a cluster (a local run) the phase says what it would apply and applies nothing.

use std::sync::Arc;

use crate::adapters::kube::Cluster;
use crate::config::ClusterAccess;
use crate::manifests::Placeholders;
mod adopt;
pub mod apply;
// The deploy verb, named like its siblings (rollback, recover, plan, history).
#[allow(clippy::module_inception)]
mod deploy;
pub mod engine;
mod history;
pub mod hooks;
pub mod observe;
mod plan;
pub mod preflight;
mod recover;
mod render;
mod rollback;
pub mod sources;
pub mod statefulsets;
#[cfg(test)]
mod steps_tests;
pub mod store;
pub mod target;
pub mod track;
mod unchanged;

pub use engine::{crash_point, Ending, Engine, Origin, Outcome, Settings};
pub use render::{render, render_with, Rendered};
pub use sources::Capabilities;
pub use target::Live;

/// The registry client and credentials the pre-flight image check uses.
pub struct ImageVerification {
    pub registry: crate::adapters::registry::Registry,
    pub credentials: preflight::HostCredentials,
}
use crate::app::frame::RunContext;
use crate::pipeline::{Command, FailureReason, Handoff, PhaseResult, PhaseStatus};

/// The deploy phase: render, connect, check the kinds against the cluster, then the verb.
pub async fn run(run: &RunContext<'_>, handoff: &mut Handoff) -> PhaseResult {
    let command = run.decision.command;
    if command == Command::Destroy {
        return PhaseResult::new(PhaseStatus::skipped("destroy only runs Terraform"));
    }
    let logins = if matches!(command, Command::Deploy | Command::Plan) {
        chart_logins(run).await
    } else {
        Vec::new()
    };
    let offline = if matches!(command, Command::Deploy | Command::Plan) {
        match render::render_for(run, handoff, &logins) {
            Ok(rendered) => Some(rendered),
            Err(errors) => return render::annotate_manifest_errors(run, &errors),
        }
    } else {
        None
    };
    if let Some(rendered) = &offline {
        for (object, image) in &rendered.pinned {
            run.runner
                .info(&format!("{object}: {} pinned to {}", image.from, image.to));
        }
    }
    if matches!(run.config.deploy.cluster, ClusterAccess::None) {
        return without_cluster(run, offline);
    }
    // Connect (reads only) and check every kind against the cluster before any write.
    let (cluster, kube_version) = match connect(run, handoff).await {
        Ok((connection, version)) => (
            Arc::new(
                Cluster::new(connection.client, connection.identity).counted(connection.traffic),
            ),
            version.git_version,
        ),
        Err(message) => {
            return PhaseResult::new(PhaseStatus::failed(
                FailureReason::ClusterUnreachable,
                message,
            ))
        }
    };
    let (objects, hooks, charts) = match &offline {
        Some(offline) => {
            match objects_for(run, handoff, &cluster, offline, kube_version, &logins).await {
                Ok(objects) => objects,
                Err(result) => return result,
            }
        }
        None => (Vec::new(), Vec::new(), Vec::new()),
    };
    let images = match command {
        Command::Deploy => image_verification(run, &objects).await,
        _ => None,
    };
    // `apply-concurrency` bounds every step: dry runs, reviews and LISTs as well as applies.
    cluster.limit_concurrency(run.config.deploy.release.apply_concurrency);
    let engine = Engine {
        target: Live::verifying(cluster, images),
        environment: run.config.environment.clone(),
        settings: run.config.deploy.release.clone(),
        runner: run.runner,
        cancel: run.cancel,
        me: crate::release::lease::holder_identity(
            run.context.actor.as_deref(),
            run.context.run_url().as_deref(),
            &crate::report::workflow::random_token(),
        ),
    };
    match run_verb(run, handoff, &engine, objects, hooks).await {
        Some(mut outcome) => {
            let traffic = engine.target.cluster.traffic().count().sentence();
            run.runner.info(&traffic);
            outcome.facts.api_traffic = Some(traffic);
            outcome.facts.charts = charts;
            finish(outcome, handoff)
        }
        None => PhaseResult::new(PhaseStatus::skipped("destroy only runs Terraform")),
    }
}

/// Without a cluster (a local run): what would be applied, and nothing applied.
fn without_cluster(run: &RunContext<'_>, offline: Option<Rendered>) -> PhaseResult {
    let Some(rendered) = offline else {
        return PhaseResult::new(PhaseStatus::failed(
            FailureReason::NoCluster,
            format!(
                "`{}` needs a cluster: set cluster-name (EKS) or kubeconfig",
                run.decision.command.as_str()
            ),
        ));
    };
    for manifest in &rendered.manifests {
        run.runner.info(&format!(
            "would apply {} ({}:{})",
            manifest.key,
            manifest.file.display(),
            manifest.line
        ));
    }
    let mut result = PhaseResult::new(PhaseStatus::skipped(format!(
        "{}: rendered {} objects and applied none (set cluster-name or kubeconfig to deploy)",
        crate::pipeline::NO_CLUSTER,
        rendered.manifests.len()
    )));
    result.notes = render::notes(&rendered, false);
    result
}

/// The release rendered again with each kind's scope from the cluster, as JSON objects to
/// send; a kind the cluster does not serve is a manifest error.
async fn objects_for(
    run: &RunContext<'_>,
    handoff: &Handoff,
    cluster: &Cluster,
    offline: &Rendered,
    kube_version: String,
    logins: &[sources::Login],
) -> Result<
    (
        Vec<serde_json::Value>,
        Vec<hooks::HookObject>,
        Vec<crate::pipeline::facts::ChartFacts>,
    ),
    PhaseResult,
> {
    let scopes = render::discover_scopes(cluster, offline)
        .await
        .map_err(|message| {
            PhaseResult::new(PhaseStatus::failed(
                FailureReason::ClusterUnreachable,
                message,
            ))
        })?;
    let lookup = |api_version: &str, kind: &str| {
        scopes
            .get(&(api_version.to_string(), kind.to_string()))
            .copied()
            .flatten()
    };
    // Charts see the cluster's version and every API it serves, as `helm install` would.
    let capabilities = if run.config.deploy.charts.is_empty() {
        Capabilities::default()
    } else {
        Capabilities {
            kube_version: Some(kube_version),
            api_versions: cluster.api_versions().await.map_err(|err| {
                PhaseResult::new(PhaseStatus::failed(
                    FailureReason::ClusterUnreachable,
                    format!(
                        "the API versions the charts are rendered for could not be read: {err}"
                    ),
                ))
            })?,
        }
    };
    let rendered = render_with(run, handoff, &lookup, &capabilities, logins)
        .map_err(|errors| render::annotate_manifest_errors(run, &errors))?;
    for chart in &rendered.charts {
        run.runner.info(&format!(
            "chart `{}`: {} {} rendered into {} objects{}{} (namespace {})",
            chart.name,
            chart.chart,
            chart.version.as_deref().unwrap_or("(no version)"),
            chart.objects,
            if chart.hooks > 0 {
                format!(" and {} hooks", chart.hooks)
            } else {
                String::new()
            },
            if chart.ignored > 0 {
                format!(", {} test hooks left out", chart.ignored)
            } else {
                String::new()
            },
            chart.namespace
        ));
    }
    let json = |manifest: &crate::manifests::Manifest| {
        serde_json::to_value(&manifest.object).map_err(|err| {
            PhaseResult::new(PhaseStatus::failed(
                FailureReason::InvalidManifests,
                format!("{}: cannot be sent as JSON: {err}", manifest.key),
            ))
        })
    };
    let objects = rendered
        .manifests
        .iter()
        .map(json)
        .collect::<Result<Vec<_>, _>>()?;
    let hooks = rendered
        .hooks
        .iter()
        .map(|hook| {
            Ok(hooks::HookObject {
                chart: hook.chart.clone(),
                hook: hook.hook.clone(),
                object: json(&hook.manifest)?,
            })
        })
        .collect::<Result<Vec<_>, PhaseResult>>()?;
    Ok((objects, hooks, chart_facts(&rendered)))
}

/// The charts of a rendered release, each with the objects and hooks it made.
fn chart_facts(rendered: &Rendered) -> Vec<crate::pipeline::facts::ChartFacts> {
    rendered
        .charts
        .iter()
        .map(|chart| crate::pipeline::facts::ChartFacts {
            name: chart.name.clone(),
            chart: chart.chart.clone(),
            version: chart.version.clone(),
            namespace: chart.namespace.clone(),
            objects: rendered
                .manifests
                .iter()
                .filter(|m| crate::charts::chart_of(&m.object) == Some(chart.name.as_str()))
                .map(|m| m.key.to_string())
                .collect(),
            hooks: rendered
                .hooks
                .iter()
                .filter(|hook| hook.chart == chart.name)
                .map(|hook| hook.manifest.key.to_string())
                .collect(),
            ignored: chart.ignored,
        })
        .collect()
}

/// Runs the command's verb (`None` for destroy, which has none here).
async fn run_verb(
    run: &RunContext<'_>,
    handoff: &Handoff,
    engine: &Engine<'_, Live>,
    objects: Vec<serde_json::Value>,
    hooks: Vec<hooks::HookObject>,
) -> Option<Outcome> {
    let origin = Origin {
        commit: run.decision.commit.clone(),
        images: handoff.images.clone(),
        actor: run.context.actor.clone(),
        run_url: run.context.run_url(),
    };
    Some(match run.decision.command {
        Command::Deploy => engine.deploy_with_hooks(objects, &hooks, &origin).await,
        Command::Plan => engine.plan(&objects).await,
        Command::Rollback => engine.rollback(run.config.rollback_to, &origin).await,
        Command::History => engine.history().await,
        Command::Unlock => engine.unlock(&origin).await,
        Command::Destroy => return None,
    })
}

/// Turns a verb's outcome into the phase result and hands the facts to the report.
fn finish(outcome: Outcome, handoff: &mut Handoff) -> PhaseResult {
    let status = match &outcome.ending {
        Ending::Succeeded => PhaseStatus::Succeeded,
        Ending::RolledBack { reason, message } => PhaseStatus::RolledBack {
            failure_reason: *reason,
            message: message.clone(),
        },
        Ending::Failed { reason, message } => PhaseStatus::failed(*reason, message.clone()),
    };
    let mut result = PhaseResult::new(status);
    result.changed = outcome.changed;
    let facts = &outcome.facts;
    if let Some(release) = facts.release {
        result.outputs.insert("release".into(), release.to_string());
    }
    if let Some(previous) = facts.previous_release {
        result
            .outputs
            .insert("previous-release".into(), previous.to_string());
    }
    if let Some(rollback) = &facts.rollback {
        if let Some(to) = rollback.to_release {
            result
                .outputs
                .insert("restored-release".into(), to.to_string());
        }
    }
    handoff.deploy = Some(outcome.facts);
    result
}

/// The cluster name with `${tf.X}` placeholders replaced by Terraform outputs.
fn cluster_access(run: &RunContext<'_>, handoff: &Handoff) -> Result<ClusterAccess, String> {
    match &run.config.deploy.cluster {
        ClusterAccess::Eks { cluster_name } if cluster_name.contains("${") => {
            let placeholders = Placeholders::new(
                &handoff
                    .terraform_outputs
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                run.decision.commit.as_deref(),
                &run.config.environment,
            );
            let mut value = serde_yaml_ng::Value::String(cluster_name.clone());
            placeholders.substitute(&mut value);
            match value {
                serde_yaml_ng::Value::String(name) if !name.contains("${") => {
                    Ok(ClusterAccess::Eks { cluster_name: name })
                }
                _ => Err(format!(
                    "cluster-name `{cluster_name}` names a Terraform output the infra phase did not produce"
                )),
            }
        }
        other => Ok(other.clone()),
    }
}

async fn connect(
    run: &RunContext<'_>,
    handoff: &Handoff,
) -> Result<
    (
        crate::adapters::cluster::ClusterConnection,
        crate::adapters::cluster::ServerVersion,
    ),
    String,
> {
    let access = cluster_access(run, handoff)?;
    let aws = crate::adapters::eks::AwsAccess::from_build(&run.config.build);
    let connection = crate::adapters::cluster::connect(&access, &aws, run.runner)
        .await
        .map_err(|err| err.to_string())?;
    let version = crate::adapters::cluster::check_access(&connection)
        .await
        .map_err(|err| err.to_string())?;
    run.runner.info(&format!(
        "connected to {} (Kubernetes {}) as {}",
        connection.server, version.git_version, connection.identity
    ));
    if let Some(warning) = version.support_warning() {
        run.runner.warning(&warning);
    }
    Ok((connection, version))
}

/// How the registries of OCI charts are reached: `registry-username`/`registry-password` for
/// the `registry` host, an ECR authorization token (masked) for ECR hosts.
async fn chart_logins(run: &RunContext<'_>) -> Vec<sources::Login> {
    let mut logins = sources::logins(run.config);
    let mut ecr =
        crate::adapters::ecr::EcrClients::new(run.config.build.aws_endpoint_url.as_deref());
    for login in logins
        .iter_mut()
        .filter(|login| login.credentials.is_none())
    {
        let Some((account, region)) = crate::image::access::parse_ecr_host(&login.host) else {
            continue;
        };
        let client = ecr.region(Some(region)).await;
        match client.authorization_token(Some(account)).await {
            Ok(token) => {
                run.runner.add_mask(&token);
                match crate::image::auth::decode_ecr_token(&token) {
                    Ok(creds) => {
                        run.runner.add_mask(&creds.password);
                        login.credentials = Some((creds.username, creds.password));
                    }
                    Err(err) => run.runner.warning(&format!("{}: {err}", login.host)),
                }
            }
            Err(err) => run.runner.warning(&format!(
                "{}: no ECR token to pull the chart with ({err}); pulled anonymously",
                login.host
            )),
        }
    }
    logins
}

/// The registry client and credentials for the pre-flight image check: the
/// `registry-username`/`registry-password` for the `registry` host, and ECR tokens (from the
/// standard AWS credential chain) for the ECR hosts among the release's images.
async fn image_verification(
    run: &RunContext<'_>,
    objects: &[serde_json::Value],
) -> Option<ImageVerification> {
    use crate::adapters::registry::Registry;
    use crate::image::auth::{decode_ecr_token, Credentials};
    let build = &run.config.build;
    let mut credentials = preflight::HostCredentials::new();
    if let (Some(user), Some(password)) = (&build.registry_username, &build.registry_password) {
        let host = build
            .registry_endpoint
            .clone()
            .or_else(|| build.registry.clone())
            .unwrap_or_default();
        if !host.is_empty() {
            credentials.insert(
                host,
                Credentials {
                    username: user.clone(),
                    password: password.expose().to_string(),
                },
            );
        }
    }
    let ecr_hosts: std::collections::BTreeSet<String> = preflight::container_images(objects)
        .iter()
        .filter_map(|image| crate::image::name::ImageName::parse(&image.image))
        .map(|name| name.host)
        .filter(|host| crate::image::access::is_ecr_host(host))
        .collect();
    // Each ECR host's token comes from its own account in its own region.
    let mut ecr = crate::adapters::ecr::EcrClients::new(build.aws_endpoint_url.as_deref());
    for host in ecr_hosts {
        let Some((account, region)) = crate::image::access::parse_ecr_host(&host) else {
            continue;
        };
        let client = ecr.region(Some(region)).await;
        match client.authorization_token(Some(account)).await {
            Ok(token) => {
                run.runner.add_mask(&token);
                match decode_ecr_token(&token) {
                    Ok(creds) => {
                        run.runner.add_mask(&creds.password);
                        credentials.insert(host, creds);
                    }
                    Err(err) => run.runner.warning(&format!("{host}: {err}")),
                }
            }
            Err(err) => run.runner.warning(&format!(
                "{host}: no ECR token to verify images with ({err}); they are reported unverified"
            )),
        }
    }
    match Registry::from_env() {
        Ok(registry) => Some(ImageVerification {
            registry,
            credentials,
        }),
        Err(err) => {
            run.runner.warning(&format!(
                "images are not verified before the deploy: the registry client failed: {err}"
            ));
            None
        }
    }
}
