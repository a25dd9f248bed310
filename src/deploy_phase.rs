//! The deploy phase: renders the release (placeholders substituted, images pinned by digest, in apply order), checks its kinds against the cluster, then runs the verb (deploy, plan, rollback, history) through [`crate::deploy`].
//!
//! Without a cluster (a local run) the phase says what it would apply and applies nothing.

use std::collections::BTreeMap;

use crate::config::ClusterAccess;
use crate::manifests::{self, Manifest, ManifestError, Placeholders};
use std::sync::Arc;

use crate::adapters::kube::{Cluster, KubeError};
use crate::deploy;
use crate::pipeline::{Command, Handoff, PhaseResult, PhaseStatus, RunContext};
use crate::report::summary::escape_markdown;
use crate::report::workflow::{Annotation, Level};
use crate::rollout;

/// A rendered release: the objects to apply, in order, and the images that were pinned.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub manifests: Vec<Manifest>,
    pub pinned: Vec<(String, manifests::PinnedImage)>,
}

/// Whether a kind is namespaced, without a cluster to ask: the built-in kinds are known;
/// others (custom resources) are assumed namespaced, as most are.
fn offline_scope(api_version: &str, kind: &str) -> Option<bool> {
    manifests::builtin_scope(api_version, kind).or(Some(true))
}

/// Loads, substitutes, pins and orders the manifests without a cluster (built-in kinds known,
/// others assumed namespaced); every problem at once.
pub fn render(run: &RunContext<'_>, handoff: &Handoff) -> Result<Rendered, Vec<ManifestError>> {
    render_with(run, handoff, &offline_scope)
}

/// Like [`render`], with the scope of each kind from `scope` (API discovery): a kind the
/// cluster does not serve is an error at its file and line.
pub fn render_with(
    run: &RunContext<'_>,
    handoff: &Handoff,
    scope: &manifests::ScopeLookup<'_>,
) -> Result<Rendered, Vec<ManifestError>> {
    let deploy = &run.config.deploy;
    let placeholders = Placeholders::new(
        &handoff
            .terraform_outputs
            .iter()
            .chain(&handoff.sensitive_outputs)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        run.decision.commit.as_deref(),
        &run.config.environment,
    )
    .with_images(&handoff.images);
    let mut errors = Vec::new();
    for file in &deploy.manifest_files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for placeholder in manifests::find_placeholders(&text) {
            if !placeholders.knows(&placeholder.name) {
                errors.push(ManifestError {
                    file: file.clone(),
                    line: placeholder.line,
                    message: format!(
                        "unknown placeholder `${{{}}}`; known here: {} (write `$${{` for a literal `${{`)",
                        placeholder.name,
                        placeholders
                            .names()
                            .iter()
                            .map(|name| format!("${{{name}}}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
    }
    // Placeholders are substituted before the objects are checked, so names and namespaces
    // that use them are validated, keyed and compared for duplicates with their real values.
    let (mut documents, mut read_errors) = manifests::read_documents(&deploy.manifest_files);
    errors.append(&mut read_errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    for document in &mut documents {
        placeholders.substitute(&mut document.value);
    }
    let mut loaded = manifests::objects(documents, &deploy.namespace, scope)?;
    let built: BTreeMap<String, String> = handoff
        .images
        .values()
        .map(|reference| {
            (
                manifests::repository_of(reference).to_string(),
                reference.clone(),
            )
        })
        .collect();
    let mut pinned = Vec::new();
    for manifest in &mut loaded {
        for image in manifests::pin_images(&manifest.key.kind, &mut manifest.object, &built) {
            pinned.push((manifest.key.to_string(), image));
        }
    }
    manifests::apply_order(&mut loaded);
    Ok(Rendered {
        manifests: loaded,
        pinned,
    })
}

fn notes(rendered: &Rendered, applied: bool) -> Vec<String> {
    let mut notes = vec![format!(
        "{} objects {}:\n\n| # | Kind | Name | Namespace |\n|---|---|---|---|",
        rendered.manifests.len(),
        if applied {
            "applied"
        } else {
            "rendered, none applied"
        }
    )];
    for (index, manifest) in rendered.manifests.iter().enumerate() {
        notes.push(format!(
            "| {} | {} | {} | {} |",
            index + 1,
            escape_markdown(&manifest.key.kind),
            escape_markdown(&manifest.key.name),
            escape_markdown(manifest.key.namespace.as_deref().unwrap_or("–"))
        ));
    }
    if !rendered.pinned.is_empty() {
        notes.push(String::new());
        for (object, image) in &rendered.pinned {
            notes.push(format!(
                "- {} `{}`: `{}` → `{}`",
                escape_markdown(object),
                escape_markdown(&image.container),
                escape_markdown(&image.from),
                escape_markdown(&image.to)
            ));
        }
    }
    notes
}

/// Reports manifest problems as annotations at their file and line.
fn annotate_manifest_errors(run: &RunContext<'_>, errors: &[ManifestError]) -> PhaseResult {
    for error in errors {
        let file = error
            .file
            .strip_prefix(&run.config.workspace)
            .unwrap_or(&error.file)
            .display()
            .to_string();
        run.runner.annotate(
            Level::Error,
            &Annotation {
                title: Some("gantry: invalid manifest".into()),
                file: Some(file),
                line: Some(error.line as u32),
                ..Annotation::default()
            },
            &error.message,
        );
    }
    PhaseResult::new(PhaseStatus::failed(
        "invalid-manifests",
        format!(
            "{} problem{} in the manifests (see the annotations); nothing was applied",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" }
        ),
    ))
}

/// The settings of the deploy verbs from the configuration.
pub fn settings(config: &crate::config::Config) -> deploy::Settings {
    let deploy = &config.deploy;
    deploy::Settings {
        environment: config.environment.clone(),
        namespace: deploy.namespace.clone(),
        rollout_timeout: deploy.rollout_timeout,
        rollback: deploy.rollback,
        prune: deploy.prune,
        force_conflicts: deploy.force_conflicts,
        history_max: deploy.history_max,
        lock_timeout: deploy.lock_timeout,
        lease_duration: deploy.lease_duration,
        apply_concurrency: deploy.apply_concurrency,
        tolerances: rollout::Tolerances {
            pull_error: deploy.pull_error_tolerance,
            restart_threshold: deploy.restart_threshold,
            unschedulable: deploy.unschedulable_tolerance,
        },
    }
}

/// The deploy phase: render, connect, check the kinds against the cluster, then the verb.
pub async fn run(run: &RunContext<'_>, handoff: &mut Handoff) -> PhaseResult {
    let command = run.decision.command;
    let needs_manifests = matches!(command, Command::Deploy | Command::Plan);
    let offline = if needs_manifests {
        match render(run, handoff) {
            Ok(rendered) => Some(rendered),
            Err(errors) => return annotate_manifest_errors(run, &errors),
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
        return match offline {
            Some(rendered) => {
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
                result.notes = notes(&rendered, false);
                result
            }
            None => PhaseResult::new(PhaseStatus::failed(
                "no-cluster",
                format!(
                    "`{}` needs a cluster: set cluster-name (EKS) or kubeconfig",
                    command.as_str()
                ),
            )),
        };
    }

    // Connect (reads only) and check every kind against the cluster before any write.
    let connection = match connect(run, handoff).await {
        Ok(connection) => connection,
        Err(message) => {
            return PhaseResult::new(PhaseStatus::failed("cluster-unreachable", message))
        }
    };
    let cluster = Arc::new(Cluster::new(
        connection.client.clone(),
        connection.identity.clone(),
    ));
    let mut objects = Vec::new();
    if let Some(offline) = &offline {
        let scopes = match discover_scopes(&cluster, offline).await {
            Ok(scopes) => scopes,
            Err(message) => {
                return PhaseResult::new(PhaseStatus::failed("cluster-unreachable", message))
            }
        };
        let lookup = |api_version: &str, kind: &str| {
            scopes
                .get(&(api_version.to_string(), kind.to_string()))
                .copied()
                .flatten()
        };
        let rendered = match render_with(run, handoff, &lookup) {
            Ok(rendered) => rendered,
            Err(errors) => return annotate_manifest_errors(run, &errors),
        };
        for manifest in &rendered.manifests {
            match serde_json::to_value(&manifest.object) {
                Ok(value) => objects.push(value),
                Err(err) => {
                    return PhaseResult::new(PhaseStatus::failed(
                        "invalid-manifests",
                        format!("{}: cannot be sent as JSON: {err}", manifest.key),
                    ))
                }
            }
        }
    }

    let engine = deploy::Engine {
        cluster,
        settings: settings(run.config),
        runner: run.runner,
        cancel: run.cancel,
        me: crate::release::lease::holder_identity(
            run.context.actor.as_deref(),
            run.context.run_url().as_deref(),
            &crate::report::workflow::random_token(),
        ),
        images: match command {
            Command::Deploy => image_verification(run, &objects).await,
            _ => None,
        },
    };
    let origin = deploy::Origin {
        commit: run.decision.commit.clone(),
        images: handoff.images.clone(),
        actor: run.context.actor.clone(),
        run_url: run.context.run_url(),
    };
    let outcome = match command {
        Command::Deploy => engine.deploy(objects, &origin).await,
        Command::Plan => engine.plan(&objects).await,
        Command::Rollback => engine.rollback(run.config.rollback_to, &origin).await,
        Command::History => engine.history().await,
        Command::Unlock => engine.unlock(&origin).await,
        Command::Destroy => {
            return PhaseResult::new(PhaseStatus::skipped("destroy only runs Terraform"))
        }
    };
    finish(outcome, handoff)
}

/// Turns a verb's outcome into the phase result and hands the facts to the report.
fn finish(outcome: deploy::Outcome, handoff: &mut Handoff) -> PhaseResult {
    let status = match &outcome.ending {
        deploy::Ending::Succeeded => PhaseStatus::Succeeded,
        deploy::Ending::RolledBack { reason, message } => PhaseStatus::RolledBack {
            failure_reason: reason.clone(),
            message: message.clone(),
        },
        deploy::Ending::Failed { reason, message } => PhaseStatus::failed(reason, message.clone()),
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
            let mut value = serde_yaml::Value::String(cluster_name.clone());
            placeholders.substitute(&mut value);
            match value {
                serde_yaml::Value::String(name) if !name.contains("${") => {
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
) -> Result<crate::adapters::cluster::ClusterConnection, String> {
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
    Ok(connection)
}

/// Asks discovery for the scope of every kind in the release. Kinds defined by a
/// CustomResourceDefinition in the same release take their scope from it.
async fn discover_scopes(
    cluster: &Cluster,
    rendered: &Rendered,
) -> Result<BTreeMap<(String, String), Option<bool>>, String> {
    let mut defined: BTreeMap<(String, String), bool> = BTreeMap::new();
    for manifest in &rendered.manifests {
        if manifest.key.kind != "CustomResourceDefinition" {
            continue;
        }
        let spec = &manifest.object["spec"];
        let group = spec["group"].as_str().unwrap_or_default();
        let kind = spec["names"]["kind"].as_str().unwrap_or_default();
        let namespaced = spec["scope"].as_str() != Some("Cluster");
        if let Some(versions) = spec["versions"].as_sequence() {
            for version in versions {
                if let Some(name) = version["name"].as_str() {
                    defined.insert((format!("{group}/{name}"), kind.to_string()), namespaced);
                }
            }
        }
    }
    let mut scopes = BTreeMap::new();
    for manifest in &rendered.manifests {
        let key = (manifest.key.api_version.clone(), manifest.key.kind.clone());
        if scopes.contains_key(&key) {
            continue;
        }
        let scope = match cluster.resolve(&key.0, &key.1).await {
            Ok(resolved) => Some(resolved.namespaced),
            Err(KubeError::UnknownKind { .. }) => defined.get(&key).copied(),
            Err(err) => return Err(err.to_string()),
        };
        scopes.insert(key, scope);
    }
    Ok(scopes)
}

/// The registry client and credentials for the pre-flight image check: the
/// `registry-username`/`registry-password` for the `registry` host, and ECR tokens (from the
/// standard AWS credential chain) for the ECR hosts among the release's images.
async fn image_verification(
    run: &RunContext<'_>,
    objects: &[serde_json::Value],
) -> Option<deploy::ImageVerification> {
    use crate::adapters::registry::Registry;
    use crate::image::auth::{decode_ecr_token, Credentials};
    let build = &run.config.build;
    let mut credentials = deploy::preflight::HostCredentials::new();
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
    let ecr_hosts: std::collections::BTreeSet<String> =
        deploy::preflight::container_images(objects)
            .iter()
            .filter_map(|image| deploy::preflight::parse_image(&image.image))
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
        Ok(registry) => Some(deploy::ImageVerification {
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
