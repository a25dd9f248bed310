//! Rendering a release: manifests loaded, placeholders substituted, images pinned by digest, objects in apply order, each kind's scope from the cluster (or assumed without one), and manifest problems annotated at their file and line.

use std::collections::BTreeMap;

use super::sources::{self, Capabilities, ChartRendered};
use crate::adapters::kube::{Cluster, KubeError};
use crate::app::frame::RunContext;
use crate::manifests::{self, Manifest, ManifestError, Placeholders};
use crate::pipeline::{FailureReason, Handoff, PhaseResult, PhaseStatus};
use crate::report::markdown::escape_markdown;
use crate::report::workflow::{Annotation, Level};

/// A rendered release: the objects to apply, in order, and the images that were pinned.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub manifests: Vec<Manifest>,
    pub pinned: Vec<(String, manifests::PinnedImage)>,
    /// Chart hooks (Jobs and Pods run before or after the release), in the order they run.
    pub hooks: Vec<HookManifest>,
    /// The charts rendered.
    pub charts: Vec<ChartRendered>,
}

/// A chart hook as rendered: its object and when it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct HookManifest {
    pub chart: String,
    pub hook: crate::charts::Hook,
    pub manifest: Manifest,
}

/// Whether a kind is namespaced, without a cluster to ask: the built-in kinds are known;
/// others (custom resources) are assumed namespaced, as most are.
fn offline_scope(api_version: &str, kind: &str) -> Option<bool> {
    manifests::builtin_scope(api_version, kind).or(Some(true))
}

/// Loads, substitutes, pins and orders the manifests without a cluster (built-in kinds known,
/// others assumed namespaced); every problem at once.
pub fn render(run: &RunContext<'_>, handoff: &Handoff) -> Result<Rendered, Vec<ManifestError>> {
    render_for(run, handoff, &sources::logins(run.config))
}

/// Like [`render`], OCI charts pulled with `logins` (ECR tokens included).
pub fn render_for(
    run: &RunContext<'_>,
    handoff: &Handoff,
    logins: &[sources::Login],
) -> Result<Rendered, Vec<ManifestError>> {
    render_with(
        run,
        handoff,
        &offline_scope,
        &Capabilities::default(),
        logins,
    )
}

/// Like [`render`], with the scope of each kind from `scope` (API discovery): a kind the
/// cluster does not serve is an error at its file and line.
pub fn render_with(
    run: &RunContext<'_>,
    handoff: &Handoff,
    scope: &manifests::ScopeLookup<'_>,
    capabilities: &Capabilities,
    logins: &[sources::Login],
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
                        known(&placeholders)
                    ),
                });
            }
        }
    }
    // Placeholders are substituted before the objects are checked, so names and namespaces
    // that use them are validated, keyed and compared for duplicates with their real values.
    let (mut documents, mut read_errors) = manifests::read_documents(&deploy.manifest_files);
    errors.append(&mut read_errors);
    // Charts and kustomizations: every problem reported with the manifests'.
    let made = match sources::make(run.config, Some(&placeholders), capabilities, logins, true) {
        Ok(made) => made,
        Err(mut made_errors) => {
            errors.append(&mut made_errors);
            sources::Made::default()
        }
    };
    // A kustomization's output is checked like a manifest file: every placeholder in its
    // string values must be known (reported at the kustomization).
    for document in &made.kustomized {
        let mut strings = Vec::new();
        crate::config::yaml_strings(&document.value, &mut strings);
        for placeholder in strings.iter().flat_map(|s| manifests::find_placeholders(s)) {
            if !placeholders.knows(&placeholder.name) {
                errors.push(ManifestError {
                    file: document.file.clone(),
                    line: document.line,
                    message: format!(
                        "unknown placeholder `${{{}}}` in what the kustomization builds; known here: {}",
                        placeholder.name,
                        known(&placeholders)
                    ),
                });
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    documents.extend(made.kustomized);
    for document in &mut documents {
        placeholders.substitute(&mut document.value);
    }
    // A chart's templates are Helm's: `${...}` in them is the chart's own text.
    documents.extend(made.rendered);
    let hook_documents: Vec<manifests::Document> = made
        .hooks
        .iter()
        .map(|hook| hook.document.clone())
        .collect();
    let hook_objects = manifests::objects(hook_documents, &deploy.release.namespace, scope);
    let loaded = manifests::objects(documents, &deploy.release.namespace, scope);
    let (mut loaded, hook_objects) = match (loaded, hook_objects) {
        (Ok(loaded), Ok(hooks)) => (loaded, hooks),
        (loaded, hooks) => {
            let mut errors = loaded.err().unwrap_or_default();
            errors.extend(hooks.err().unwrap_or_default());
            return Err(errors);
        }
    };
    let mut hooks: Vec<HookManifest> = made
        .hooks
        .into_iter()
        .zip(hook_objects)
        .map(|(hook, manifest)| HookManifest {
            chart: hook.chart,
            hook: hook.hook,
            manifest,
        })
        .collect();
    // Helm's order: weight, then kind, then name.
    hooks.sort_by(|a, b| {
        (a.hook.weight, &a.manifest.key.kind, &a.manifest.key.name).cmp(&(
            b.hook.weight,
            &b.manifest.key.kind,
            &b.manifest.key.name,
        ))
    });
    let built: BTreeMap<String, String> = handoff
        .images
        .values()
        .map(|reference| {
            (
                crate::image::name::repository_of(reference).to_string(),
                reference.clone(),
            )
        })
        .collect();
    let mut pinned = Vec::new();
    for manifest in loaded
        .iter_mut()
        .chain(hooks.iter_mut().map(|hook| &mut hook.manifest))
    {
        for image in manifests::pin_images(&manifest.key.kind, &mut manifest.object, &built) {
            pinned.push((manifest.key.to_string(), image));
        }
    }
    manifests::apply_order(&mut loaded);
    Ok(Rendered {
        manifests: loaded,
        pinned,
        hooks,
        charts: made.charts,
    })
}

/// The placeholders known in this run, as an error message lists them.
fn known(placeholders: &Placeholders) -> String {
    placeholders
        .names()
        .iter()
        .map(|name| format!("${{{name}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn notes(rendered: &Rendered, applied: bool) -> Vec<String> {
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
    for chart in &rendered.charts {
        notes.push(format!(
            "\nchart `{}`: {} {} (namespace `{}`): {} objects, {} hooks{}",
            escape_markdown(&chart.name),
            escape_markdown(&chart.chart),
            escape_markdown(chart.version.as_deref().unwrap_or("(no version)")),
            escape_markdown(&chart.namespace),
            chart.objects,
            chart.hooks,
            if chart.ignored > 0 {
                format!(", {} test hooks left out", chart.ignored)
            } else {
                String::new()
            }
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
pub(super) fn annotate_manifest_errors(
    run: &RunContext<'_>,
    errors: &[ManifestError],
) -> PhaseResult {
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
        FailureReason::InvalidManifests,
        format!(
            "{} problem{} in the manifests (see the annotations); nothing was applied",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" }
        ),
    ))
}

/// Asks discovery for the scope of every kind in the release. Kinds defined by a
/// CustomResourceDefinition in the same release take their scope from it.
pub(super) async fn discover_scopes(
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
    // Every group version the release uses, and those of gantry's records and lock, at once.
    let mut api_versions: Vec<&str> = vec!["v1", "coordination.k8s.io/v1"];
    let every = || {
        rendered
            .manifests
            .iter()
            .chain(rendered.hooks.iter().map(|hook| &hook.manifest))
    };
    api_versions.extend(every().map(|m| m.key.api_version.as_str()));
    api_versions.sort_unstable();
    api_versions.dedup();
    cluster.discover(&api_versions).await;
    let mut scopes = BTreeMap::new();
    for manifest in every() {
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
