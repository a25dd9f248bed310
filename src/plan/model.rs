//! The typed model of `terraform show -json <plan>`: only the fields gantry reads.
//!
//! Unknown fields are ignored, so newer Terraform versions that add fields still parse.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// Why a plan document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`terraform show -json` did not print a plan gantry can read: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A saved plan as `terraform show -json` describes it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Plan {
    #[serde(default)]
    pub format_version: String,
    #[serde(default)]
    pub terraform_version: String,
    #[serde(default)]
    pub resource_changes: Vec<ResourceChange>,
    #[serde(default)]
    pub output_changes: BTreeMap<String, Change>,
    /// True when planning stopped on an error (such a plan is never applied).
    #[serde(default)]
    pub errored: bool,
    /// False when the plan cannot be applied (e.g. it is incomplete).
    #[serde(default = "default_true")]
    pub applyable: bool,
}

fn default_true() -> bool {
    true
}

/// One resource instance's planned change.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ResourceChange {
    pub address: String,
    #[serde(default)]
    pub mode: String,
    #[serde(rename = "type", default)]
    pub resource_type: String,
    #[serde(default)]
    pub name: String,
    pub change: Change,
    #[serde(default)]
    pub action_reason: Option<String>,
}

/// The before/after of a resource or an output.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Change {
    pub actions: Vec<String>,
    #[serde(default)]
    pub before: Value,
    #[serde(default)]
    pub after: Value,
    #[serde(default)]
    pub after_unknown: Value,
    #[serde(default)]
    pub before_sensitive: Value,
    #[serde(default)]
    pub after_sensitive: Value,
}

impl Plan {
    pub fn parse(json: &str) -> Result<Plan> {
        Ok(serde_json::from_str(json)?)
    }
}

impl Change {
    /// Whether any part of the value is sensitive, before or after the change.
    pub fn is_sensitive(&self) -> bool {
        contains_true(&self.before_sensitive) || contains_true(&self.after_sensitive)
    }
}

/// Whether a sensitivity mask (`true`, or objects/arrays of booleans) marks anything.
pub fn contains_true(mask: &Value) -> bool {
    match mask {
        Value::Bool(flag) => *flag,
        Value::Array(items) => items.iter().any(contains_true),
        Value::Object(fields) => fields.values().any(contains_true),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn fixture(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/terraform/json/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
    }

    #[test]
    fn parses_captured_plans() {
        for (file, resources, outputs) in [
            ("show_create.json", 2, 1),
            ("show_update.json", 1, 0),
            ("show_replace.json", 2, 0),
            ("show_delete.json", 3, 0),
            ("show_destroy.json", 3, 0),
            ("show_outputs.json", 1, 4),
        ] {
            let plan = Plan::parse(&fixture(file)).unwrap();
            assert_eq!(plan.resource_changes.len(), resources, "{file}");
            assert_eq!(plan.output_changes.len(), outputs, "{file}");
            assert!(!plan.errored, "{file}");
            assert!(plan.format_version.starts_with("1."), "{file}");
        }
    }

    #[test]
    fn sensitivity_masks() {
        let plan = Plan::parse(&fixture("show_outputs.json")).unwrap();
        assert!(plan.output_changes["db_password"].is_sensitive());
        assert!(!plan.output_changes["endpoints"].is_sensitive());
        assert!(contains_true(
            &serde_json::json!({"a": [false, {"b": true}]})
        ));
        assert!(!contains_true(&serde_json::json!({"a": [false]})));
    }

    #[test]
    fn rejects_text_that_is_not_a_plan() {
        assert!(Plan::parse("No changes.").is_err());
    }
}
