//! The deploy phase: renders the release (manifests with placeholders substituted, images pinned by digest, in apply order); applying it to a cluster lands with issue #5.
//!
//! Without a cluster (a local run) the phase says what it would apply and applies nothing.

use std::collections::BTreeMap;

use crate::config::ClusterAccess;
use crate::manifests::{self, Manifest, ManifestError, Placeholders};
use crate::pipeline::{Command, Handoff, PhaseName, PhaseResult, PhaseStatus, RunContext};
use crate::report::summary::escape_markdown;
use crate::report::workflow::{Annotation, Level};

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

/// Loads, substitutes, pins and orders the manifests; every problem at once.
pub fn render(run: &RunContext<'_>, handoff: &Handoff) -> Result<Rendered, Vec<ManifestError>> {
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
    );
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
    let mut loaded = manifests::objects(documents, &deploy.namespace, &offline_scope)?;
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

/// The deploy phase.
pub async fn run(run: &RunContext<'_>, handoff: &mut Handoff) -> PhaseResult {
    let needs_manifests = matches!(run.decision.command, Command::Deploy | Command::Plan);
    if !needs_manifests {
        return PhaseResult::not_implemented(PhaseName::Deploy, 5);
    }
    let rendered = match render(run, handoff) {
        Ok(rendered) => rendered,
        Err(errors) => {
            for error in &errors {
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
            return PhaseResult::new(PhaseStatus::failed(
                "invalid-manifests",
                format!(
                    "{} problem{} in the manifests (see the annotations); nothing was applied",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                ),
            ));
        }
    };
    for manifest in &rendered.manifests {
        run.runner.info(&format!(
            "would apply {} ({}:{})",
            manifest.key,
            manifest.file.display(),
            manifest.line
        ));
    }
    for (object, image) in &rendered.pinned {
        run.runner
            .info(&format!("{object}: {} pinned to {}", image.from, image.to));
    }
    match run.config.deploy.cluster {
        ClusterAccess::None => {
            let mut result = PhaseResult::new(PhaseStatus::skipped(format!(
                "no cluster configured: rendered {} objects and applied none (set cluster-name or kubeconfig to deploy)",
                rendered.manifests.len()
            )));
            result.notes = notes(&rendered, false);
            result
        }
        _ => {
            let mut result = PhaseResult::not_implemented(PhaseName::Deploy, 5);
            result.notes = notes(&rendered, false);
            result
        }
    }
}
