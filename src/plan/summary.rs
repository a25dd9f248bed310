//! The plan summary (counts and addresses per action, output changes), its fingerprint, and the destroy guard.
//!
//! Design note: the summary is built from the structured plan only, never from Terraform's text.
//! Sensitive values never enter it: outputs carry a `sensitive` flag instead of a value, and the
//! fingerprint is a one-way hash over the normalized changes.

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::model::{Change, Plan};

/// What Terraform will do to one resource instance or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
    Read,
    /// Removed from state without destroying the object (`removed { destroy = false }`).
    Forget,
    NoOp,
}

impl Action {
    /// Interprets a change's `actions` list (`["delete","create"]` and its reverse are a replace).
    pub fn from_actions(actions: &[String]) -> Action {
        let actions: Vec<&str> = actions.iter().map(String::as_str).collect();
        match actions.as_slice() {
            ["create"] => Action::Create,
            ["update"] => Action::Update,
            ["delete"] => Action::Delete,
            ["read"] => Action::Read,
            ["forget"] => Action::Forget,
            ["delete", "create"] | ["create", "delete"] => Action::Replace,
            _ => Action::NoOp,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "delete",
            Action::Read => "read",
            Action::Forget => "forget",
            Action::NoOp => "no-op",
        }
    }

    /// Whether the action destroys an existing object (the destroy guard's concern).
    pub fn is_destructive(self) -> bool {
        matches!(self, Action::Delete | Action::Replace)
    }
}

/// How many resource instances each action touches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ActionCounts {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub replace: usize,
    pub read: usize,
    pub forget: usize,
}

impl ActionCounts {
    fn add(&mut self, action: Action) {
        match action {
            Action::Create => self.create += 1,
            Action::Update => self.update += 1,
            Action::Delete => self.delete += 1,
            Action::Replace => self.replace += 1,
            Action::Read => self.read += 1,
            Action::Forget => self.forget += 1,
            Action::NoOp => {}
        }
    }

    pub fn total(&self) -> usize {
        self.create + self.update + self.delete + self.replace + self.read + self.forget
    }

    /// `2 to create, 1 to replace`, or `no resource changes`.
    pub fn sentence(&self) -> String {
        let parts: Vec<String> = [
            (self.create, "create"),
            (self.update, "update in place"),
            (self.replace, "replace"),
            (self.delete, "delete"),
            (self.read, "read"),
            (self.forget, "forget"),
        ]
        .iter()
        .filter(|(count, _)| *count > 0)
        .map(|(count, verb)| format!("{count} to {verb}"))
        .collect();
        if parts.is_empty() {
            "no resource changes".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// One output's planned change: its name, action, and whether it is sensitive. Never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputSummary {
    pub name: String,
    pub action: Action,
    pub sensitive: bool,
}

/// What a plan changes, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    pub counts: ActionCounts,
    /// Resource addresses per action (no-ops left out), each list sorted.
    pub addresses: BTreeMap<Action, Vec<String>>,
    /// Outputs that change (no-ops left out), by name.
    pub outputs: Vec<OutputSummary>,
    fingerprint: String,
}

impl PlanSummary {
    pub fn from_plan(plan: &Plan) -> PlanSummary {
        let mut counts = ActionCounts::default();
        let mut addresses: BTreeMap<Action, Vec<String>> = BTreeMap::new();
        for resource in &plan.resource_changes {
            let action = Action::from_actions(&resource.change.actions);
            if action == Action::NoOp {
                continue;
            }
            counts.add(action);
            addresses
                .entry(action)
                .or_default()
                .push(resource.address.clone());
        }
        for list in addresses.values_mut() {
            list.sort();
        }
        let outputs = plan
            .output_changes
            .iter()
            .filter_map(|(name, change)| {
                let action = Action::from_actions(&change.actions);
                (action != Action::NoOp).then(|| OutputSummary {
                    name: name.clone(),
                    action,
                    sensitive: change.is_sensitive(),
                })
            })
            .collect();
        PlanSummary {
            counts,
            addresses,
            outputs,
            fingerprint: fingerprint(plan),
        }
    }

    /// sha256 (hex) of the normalized structured changes; equal plans give equal fingerprints
    /// whatever the key order, timestamps or paths of the run that produced them.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether applying the plan would change anything (resources or outputs).
    pub fn has_changes(&self) -> bool {
        self.counts.total() > 0 || !self.outputs.is_empty()
    }

    /// Every destructive change, as (action, address), deletes first.
    pub fn destructive(&self) -> Vec<(Action, &str)> {
        [Action::Delete, Action::Replace]
            .into_iter()
            .flat_map(|action| {
                self.addresses
                    .get(&action)
                    .into_iter()
                    .flatten()
                    .map(move |address| (action, address.as_str()))
            })
            .collect()
    }

    /// The counts as the JSON object of the `plan-changes` output.
    pub fn counts_json(&self) -> String {
        serde_json::to_string(&self.counts).unwrap_or_else(|_| "{}".to_string())
    }
}

/// The prefix of the step outputs made from Terraform outputs: `tf-<output name>`.
pub const OUTPUT_PREFIX: &str = "tf-";

/// An output value as a step output carries it: strings raw, everything else compact JSON.
pub fn output_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A plan that would delete or replace resources while `allow-destroy` is false.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DestroyBlocked {
    /// (action, address) of each destructive change.
    pub resources: Vec<(Action, String)>,
}

impl fmt::Display for DestroyBlocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "the plan would delete or replace {} resource{} and `allow-destroy` is false; nothing was applied:",
            self.resources.len(),
            if self.resources.len() == 1 { "" } else { "s" }
        )?;
        for (action, address) in &self.resources {
            writeln!(f, "  - {} {address}", action.as_str())?;
        }
        write!(
            f,
            "Review the plan; if these changes are intended, run again with the input `allow-destroy: true` (or `--allow-destroy true` locally)."
        )
    }
}

/// The destroy guard: a plan that deletes or replaces anything may be applied only with
/// `allow-destroy`, or when the run is the explicit destroy command.
pub fn destroy_guard(
    summary: &PlanSummary,
    allow_destroy: bool,
    destroy_command: bool,
) -> Result<(), DestroyBlocked> {
    let resources: Vec<(Action, String)> = summary
        .destructive()
        .into_iter()
        .map(|(action, address)| (action, address.to_string()))
        .collect();
    if resources.is_empty() || allow_destroy || destroy_command {
        Ok(())
    } else {
        Err(DestroyBlocked { resources })
    }
}

fn fingerprint(plan: &Plan) -> String {
    let mut resources: Vec<Value> = plan
        .resource_changes
        .iter()
        .filter(|r| Action::from_actions(&r.change.actions) != Action::NoOp)
        .map(|r| {
            let mut entry = change_value(&r.change);
            if let Value::Object(fields) = &mut entry {
                fields.insert("address".into(), Value::String(r.address.clone()));
                fields.insert("mode".into(), Value::String(r.mode.clone()));
                fields.insert("type".into(), Value::String(r.resource_type.clone()));
            }
            entry
        })
        .collect();
    resources.sort_by(|a, b| a["address"].as_str().cmp(&b["address"].as_str()));
    let outputs: serde_json::Map<String, Value> = plan
        .output_changes
        .iter()
        .filter(|(_, c)| Action::from_actions(&c.actions) != Action::NoOp)
        .map(|(name, change)| (name.clone(), change_value(change)))
        .collect();
    let normalized = serde_json::json!({
        "version": "gantry-plan-fingerprint/1",
        "resource_changes": resources,
        "output_changes": outputs,
    });
    let mut canonical = String::new();
    write_canonical(&normalized, &mut canonical);
    Sha256::digest(canonical.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

fn change_value(change: &Change) -> Value {
    serde_json::json!({
        "actions": change.actions,
        "before": change.before,
        "after": change.after,
        "after_unknown": change.after_unknown,
        "before_sensitive": change.before_sensitive,
        "after_sensitive": change.after_sensitive,
    })
}

/// Canonical JSON: object keys sorted, no whitespace, whatever map type serde_json was built with.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(fields) => {
            let mut keys: Vec<&String> = fields.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&fields[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(file: &str) -> PlanSummary {
        let path = format!(
            "{}/tests/fixtures/terraform/json/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"));
        PlanSummary::from_plan(&Plan::parse(&text).unwrap())
    }

    fn counts(create: usize, update: usize, delete: usize, replace: usize) -> ActionCounts {
        ActionCounts {
            create,
            update,
            delete,
            replace,
            ..ActionCounts::default()
        }
    }

    #[test]
    fn counts_and_addresses_per_captured_plan() {
        for (file, expected, action, addresses) in [
            (
                "show_create.json",
                counts(2, 0, 0, 0),
                Action::Create,
                vec!["terraform_data.app", "terraform_data.db"],
            ),
            (
                "show_update.json",
                counts(0, 1, 0, 0),
                Action::Update,
                vec!["terraform_data.config"],
            ),
            (
                "show_replace.json",
                counts(0, 0, 0, 1),
                Action::Replace,
                vec!["terraform_data.server"],
            ),
            (
                "show_delete.json",
                counts(0, 0, 2, 0),
                Action::Delete,
                vec!["terraform_data.replica[0]", "terraform_data.replica[1]"],
            ),
            (
                "show_destroy.json",
                counts(0, 0, 3, 0),
                Action::Delete,
                vec![
                    "terraform_data.keep",
                    "terraform_data.replica[0]",
                    "terraform_data.replica[1]",
                ],
            ),
        ] {
            let summary = summary(file);
            assert_eq!(summary.counts, expected, "{file}");
            assert_eq!(summary.addresses[&action], addresses, "{file}");
            assert_eq!(summary.addresses.len(), 1, "{file}: only {action:?}");
        }
    }

    #[test]
    fn action_lists_are_interpreted() {
        let actions =
            |list: &[&str]| -> Vec<String> { list.iter().map(|a| a.to_string()).collect() };
        for (list, expected) in [
            (&["create"][..], Action::Create),
            (&["delete", "create"], Action::Replace),
            (&["create", "delete"], Action::Replace),
            (&["no-op"], Action::NoOp),
            (&["read"], Action::Read),
            (&["forget"], Action::Forget),
        ] {
            assert_eq!(Action::from_actions(&actions(list)), expected, "{list:?}");
        }
    }

    #[test]
    fn sensitive_outputs_are_marked_and_their_values_never_appear() {
        let summary = summary("show_outputs.json");
        let password = summary
            .outputs
            .iter()
            .find(|o| o.name == "db_password")
            .unwrap();
        assert!(password.sensitive);
        assert_eq!(summary.outputs.len(), 4);
        let serialized = serde_json::to_string(&summary).unwrap();
        assert!(
            !serialized.contains("s3cr3t-Pa55word-do-not-print"),
            "{serialized}"
        );
    }

    #[test]
    fn fingerprint_is_stable_under_key_order_and_ignores_timestamps() {
        let path = format!(
            "{}/tests/fixtures/terraform/json/show_replace.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).unwrap();
        let original = PlanSummary::from_plan(&Plan::parse(&text).unwrap());
        let mut document: Value = serde_json::from_str(&text).unwrap();
        document["timestamp"] = Value::String("2030-01-01T00:00:00Z".into());
        document["configuration"] = Value::Null;
        if let Some(changes) = document["resource_changes"].as_array_mut() {
            changes.reverse();
        }
        // Reordering keys: serialize each resource change with its keys reversed.
        let reordered = document["resource_changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|change| {
                let fields = change.as_object().unwrap();
                let mut parts: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), v))
                    .collect();
                parts.reverse();
                format!("{{{}}}", parts.join(","))
            })
            .collect::<Vec<_>>()
            .join(",");
        document["resource_changes"] = Value::Null;
        let rewritten = document.to_string().replace(
            "\"resource_changes\":null",
            &format!("\"resource_changes\":[{reordered}]"),
        );
        let shuffled = PlanSummary::from_plan(&Plan::parse(&rewritten).unwrap());
        assert_eq!(original.fingerprint(), shuffled.fingerprint());
        assert_eq!(original.fingerprint().len(), 64);

        let other = summary("show_update.json");
        assert_ne!(original.fingerprint(), other.fingerprint());
    }

    #[test]
    fn fingerprint_changes_when_a_value_changes() {
        let path = format!(
            "{}/tests/fixtures/terraform/json/show_update.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).unwrap();
        let original = PlanSummary::from_plan(&Plan::parse(&text).unwrap());
        let changed = PlanSummary::from_plan(
            &Plan::parse(&text.replace("revision-two", "revision-three")).unwrap(),
        );
        assert_ne!(original.fingerprint(), changed.fingerprint());
    }

    #[test]
    fn destroy_guard_decisions() {
        let delete = summary("show_delete.json");
        let replace = summary("show_replace.json");
        let create = summary("show_create.json");
        assert!(destroy_guard(&create, false, false).is_ok());
        assert!(destroy_guard(&delete, true, false).is_ok());
        assert!(destroy_guard(&summary("show_destroy.json"), false, true).is_ok());
        let blocked = destroy_guard(&delete, false, false).unwrap_err();
        assert_eq!(
            blocked.resources,
            vec![
                (Action::Delete, "terraform_data.replica[0]".to_string()),
                (Action::Delete, "terraform_data.replica[1]".to_string()),
            ]
        );
        let message = destroy_guard(&replace, false, false)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("  - replace terraform_data.server"),
            "{message}"
        );
        assert!(message.contains("allow-destroy: true"), "{message}");
    }

    #[test]
    fn counts_read_as_a_sentence_and_json() {
        assert_eq!(counts(0, 0, 0, 0).sentence(), "no resource changes");
        assert_eq!(
            counts(2, 0, 1, 1).sentence(),
            "2 to create, 1 to replace, 1 to delete"
        );
        assert_eq!(
            summary("show_update.json").counts_json(),
            r#"{"create":0,"update":1,"delete":0,"replace":0,"read":0,"forget":0}"#
        );
    }

    #[test]
    fn outputs_render_strings_raw_and_the_rest_as_json() {
        assert_eq!(output_text(&serde_json::json!("a|b")), "a|b");
        assert_eq!(output_text(&serde_json::json!(3)), "3");
        assert_eq!(output_text(&serde_json::json!({"k": [1]})), r#"{"k":[1]}"#);
    }
}
