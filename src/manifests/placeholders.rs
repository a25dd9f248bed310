//! The one placeholder syntax of manifests: `${tf.OUTPUT}`, `${image.NAME}`, `${gantry.sha}`, `${gantry.short-sha}`, `${gantry.environment}`; `$${` writes a literal `${`.
//!
//! Placeholders are found in the file text (so an unknown name is reported at its line) and
//! substituted in the parsed string values (so a value can never break the YAML around it).

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

/// A placeholder found in a file: its name and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub name: String,
    pub line: usize,
}

/// Finds every `${name}` in `text` (skipping `$${` escapes) with its 1-based line. An
/// unterminated `${` is returned with the name `""`.
pub fn find_placeholders(text: &str) -> Vec<Placeholder> {
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("${") {
            let escaped = at > 0 && rest.as_bytes()[at - 1] == b'$';
            let after = &rest[at + 2..];
            if escaped {
                rest = after;
                continue;
            }
            match after.find('}') {
                Some(end) => {
                    found.push(Placeholder {
                        name: after[..end].trim().to_string(),
                        line: index + 1,
                    });
                    rest = &after[end + 1..];
                }
                None => {
                    found.push(Placeholder {
                        name: String::new(),
                        line: index + 1,
                    });
                    break;
                }
            }
        }
    }
    found
}

/// The values placeholders stand for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placeholders {
    values: BTreeMap<String, String>,
}

impl Placeholders {
    /// Terraform outputs (strings as they are, other values as compact JSON), the commit and
    /// the environment.
    pub fn new(
        terraform_outputs: &BTreeMap<String, serde_json::Value>,
        commit: Option<&str>,
        environment: &str,
    ) -> Self {
        let mut values = BTreeMap::new();
        for (name, value) in terraform_outputs {
            let text = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            values.insert(format!("tf.{name}"), text);
        }
        if let Some(sha) = commit {
            values.insert("gantry.sha".into(), sha.to_string());
            values.insert(
                "gantry.short-sha".into(),
                crate::context::char_prefix(sha, 7).to_string(),
            );
        }
        values.insert("gantry.environment".into(), environment.to_string());
        Placeholders { values }
    }

    /// Adds `${image.NAME}` for every built image: `repository@digest`.
    pub fn with_images(mut self, images: &BTreeMap<String, String>) -> Self {
        for (name, reference) in images {
            self.values
                .insert(format!("image.{name}"), reference.clone());
        }
        self
    }

    /// Whether `name` has a value.
    pub fn knows(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// The names that have values, for error messages.
    pub fn names(&self) -> Vec<&str> {
        self.values.keys().map(String::as_str).collect()
    }

    /// Replaces the placeholders in one string; unknown ones are left for [`Self::check`] to
    /// report.
    pub fn substitute_str(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let tail = &rest[at..];
            if let Some(after) = tail.strip_prefix("$${") {
                out.push_str("${");
                rest = after;
            } else if let Some(after) = tail.strip_prefix("${") {
                match after.find('}') {
                    Some(end) => {
                        let name = after[..end].trim();
                        match self.values.get(name) {
                            Some(value) => out.push_str(value),
                            None => out.push_str(&tail[..end + 3]),
                        }
                        rest = &after[end + 1..];
                    }
                    None => {
                        out.push_str(tail);
                        rest = "";
                    }
                }
            } else {
                out.push('$');
                rest = &tail[1..];
            }
        }
        out.push_str(rest);
        out
    }

    /// Substitutes every string value (and mapping key) of an object in place.
    pub fn substitute(&self, value: &mut Value) {
        match value {
            Value::String(text) if text.contains('$') => *text = self.substitute_str(text),
            Value::Sequence(items) => items.iter_mut().for_each(|item| self.substitute(item)),
            Value::Mapping(map) => {
                let entries: Vec<(Value, Value)> = std::mem::take(map).into_iter().collect();
                for (mut key, mut item) in entries {
                    self.substitute(&mut key);
                    self.substitute(&mut item);
                    map.insert(key, item);
                }
            }
            Value::Tagged(tagged) => self.substitute(&mut tagged.value),
            _ => {}
        }
    }
}

/// Whether a placeholder name is of a known namespace and well formed, before values exist.
pub fn is_known_form(name: &str) -> bool {
    matches!(
        name,
        "gantry.sha" | "gantry.short-sha" | "gantry.environment"
    ) || name
        .strip_prefix("tf.")
        .or_else(|| name.strip_prefix("image."))
        .is_some_and(|output| {
            !output.is_empty()
                && output
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placeholders() -> Placeholders {
        let outputs = BTreeMap::from([
            ("db_host".to_string(), serde_json::json!("db.internal:5432")),
            ("replicas".to_string(), serde_json::json!(3)),
            ("tags".to_string(), serde_json::json!({"team": "a"})),
        ]);
        Placeholders::new(
            &outputs,
            Some("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"),
            "prod",
        )
    }

    #[test]
    fn image_placeholders_become_the_built_reference() {
        let images = BTreeMap::from([(
            "api".to_string(),
            "127.0.0.1:5000/shop/api@sha256:5f70".to_string(),
        )]);
        let placeholders = Placeholders::new(&BTreeMap::new(), None, "dev").with_images(&images);
        assert!(placeholders.knows("image.api"));
        assert!(!placeholders.knows("image.web"));
        assert_eq!(
            placeholders.substitute_str("${image.api}"),
            "127.0.0.1:5000/shop/api@sha256:5f70"
        );
        assert!(is_known_form("image.api"));
        assert!(!is_known_form("image."));
    }

    #[test]
    fn placeholders_are_found_with_their_lines_and_escapes_skipped() {
        let text = "a: ${tf.db_host}\nb: $${literal} and ${ gantry.sha }\nc: ${unterminated\n";
        assert_eq!(
            find_placeholders(text),
            [
                Placeholder {
                    name: "tf.db_host".into(),
                    line: 1
                },
                Placeholder {
                    name: "gantry.sha".into(),
                    line: 2
                },
                Placeholder {
                    name: "".into(),
                    line: 3
                },
            ]
        );
    }

    #[test]
    fn substitution_table() {
        let p = placeholders();
        for (input, expected) in [
            ("${tf.db_host}", "db.internal:5432"),
            (
                "host=${tf.db_host};env=${gantry.environment}",
                "host=db.internal:5432;env=prod",
            ),
            ("${tf.replicas}", "3"),
            ("${tf.tags}", "{\"team\":\"a\"}"),
            ("v-${gantry.short-sha}", "v-0d1a26e"),
            ("$${tf.db_host} stays", "${tf.db_host} stays"),
            ("cost: $5 and $$", "cost: $5 and $$"),
            ("${tf.unknown}", "${tf.unknown}"),
            ("${unterminated", "${unterminated"),
        ] {
            assert_eq!(p.substitute_str(input), expected, "{input}");
        }
    }

    #[test]
    fn values_are_substituted_inside_the_parsed_object_only() {
        let p = placeholders();
        let mut value: Value = serde_yaml_ng::from_str("data:\n  DB: ${tf.db_host}\n  ${gantry.environment}-key: x\nitems: [\"${gantry.sha}\", 1]\n").unwrap();
        p.substitute(&mut value);
        assert_eq!(value["data"]["DB"], "db.internal:5432");
        assert_eq!(value["data"]["prod-key"], "x");
        assert_eq!(
            value["items"][0],
            "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
        );
    }

    #[test]
    fn known_forms() {
        for good in [
            "tf.db_host",
            "tf.a-b",
            "gantry.sha",
            "gantry.short-sha",
            "gantry.environment",
        ] {
            assert!(is_known_form(good), "{good}");
        }
        for bad in ["", "tf.", "env.HOME", "gantry.release", "tf.a b", "sha"] {
            assert!(!is_known_form(bad), "{bad}");
        }
    }
}
