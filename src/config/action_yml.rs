//! Renders action.yml from the input and output catalogue, so the published interface and the code cannot disagree.

use std::fmt::Write as _;

use super::inputs::{InputGroup, INPUTS, OUTPUTS};

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

/// The complete action.yml.
pub fn render() -> String {
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
    yml.push_str("runs:\n  using: docker\n  image: Dockerfile\n");
    yml
}
