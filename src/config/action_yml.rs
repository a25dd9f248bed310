//! Renders action.yml from the input and output catalogue, so the published interface and the code cannot disagree.

use std::fmt::Write as _;

use super::inputs::{InputGroup, INPUTS, OUTPUTS};

/// `Dockerfile` as it is; an image reference quoted (it holds `:` and `@`).
fn quoted_if_needed(text: &str) -> String {
    if text == "Dockerfile" {
        text.to_string()
    } else {
        quoted(text)
    }
}

/// A YAML double-quoted scalar.
fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The complete action.yml of development (`main`): the action is built from the Dockerfile.
pub fn render() -> String {
    render_runs("Dockerfile")
}

/// The action.yml of a release: the same catalogue, `runs.image` the published image pinned by
/// digest (`docker://ghcr.io/OWNER/gantry@sha256:...`), so a job pulls it instead of building.
pub fn render_release(image: &str) -> Result<String, String> {
    let reference = image
        .strip_prefix("docker://")
        .ok_or_else(|| format!("`{image}` is not a docker:// image reference"))?;
    let (repository, digest) = reference
        .split_once("@sha256:")
        .ok_or_else(|| format!("`{image}` is not pinned by digest (…@sha256:<64 hex digits>)"))?;
    let valid_repository = !repository.is_empty()
        && repository.contains('/')
        && repository
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "./-_:".contains(c));
    if !valid_repository {
        return Err(format!(
            "`{repository}` is not an image repository (registry/owner/name, lower case)"
        ));
    }
    if digest.len() != 64
        || !digest
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    {
        return Err(format!(
            "`sha256:{digest}` is not a sha256 digest (64 lower-case hex digits)"
        ));
    }
    Ok(render_runs(image))
}

fn render_runs(image: &str) -> String {
    let mut yml = String::new();
    yml.push_str("# Generated from src/config/inputs.rs by `gantry action-yml > action.yml`; edit the catalogue, not this file.\n");
    yml.push_str("name: gantry\n");
    yml.push_str("description: \"One step from commit to healthy rollout on Amazon EKS: Terraform plan and apply, images built and pushed to ECR, server-side apply with rollout tracking and automatic rollback, and one report.\"\n");
    yml.push_str("author: gantry developers\n");
    yml.push_str("branding:\n  icon: upload-cloud\n  color: orange\n");
    yml.push_str("inputs:\n");
    for group in InputGroup::ALL {
        let _ = writeln!(yml, "  # --- {} ---", group.title());
        for spec in INPUTS.iter().filter(|spec| spec.group == group) {
            let _ = writeln!(yml, "  {}:", spec.name);
            let _ = writeln!(yml, "    description: {}", quoted(spec.description));
            let _ = writeln!(yml, "    required: {}", spec.required);
            if let Some(default) = spec.default {
                let _ = writeln!(yml, "    default: {}", quoted(default));
            }
        }
    }
    yml.push_str("outputs:\n");
    for output in OUTPUTS {
        let _ = writeln!(yml, "  {}:", output.name);
        let _ = writeln!(yml, "    description: {}", quoted(output.description));
    }
    let _ = write!(
        yml,
        "runs:\n  using: docker\n  image: {}\n",
        quoted_if_needed(image)
    );
    yml
}
