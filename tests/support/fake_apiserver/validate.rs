//! Object validation producing the real `Invalid` causes (names, replicas, selectors, containers, immutable fields).

use super::meta::{details, status_failure};
use serde_json::{json, Value};

#[derive(Clone, Debug)]
pub struct Cause {
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

fn required(field: String) -> Cause {
    Cause {
        reason: "FieldValueRequired",
        field,
        message: "Required value".into(),
    }
}

fn invalid(field: String, value: &str, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        field,
        message: format!("Invalid value: {value}: {detail}"),
    }
}

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// Go's `%#v` of a `map[string]string`, which the real messages print.
fn go_map(v: &Value) -> String {
    let mut pairs: Vec<(String, String)> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    pairs.sort();
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
    format!("map[string]string{{{}}}", inner.join(", "))
}

fn check_containers(spec: &Value, prefix: &str, causes: &mut Vec<Cause>) {
    for list in ["initContainers", "containers"] {
        for (i, c) in spec[list].as_array().into_iter().flatten().enumerate() {
            let base = format!("{prefix}.{list}[{i}]");
            if c["name"].as_str().unwrap_or_default().is_empty() {
                causes.push(required(format!("{base}.name")));
            }
            if c["image"].as_str().unwrap_or_default().is_empty() {
                causes.push(required(format!("{base}.image")));
            }
        }
    }
    if spec["containers"].as_array().is_none_or(|a| a.is_empty()) {
        causes.push(required(format!("{prefix}.containers")));
    }
}

/// Validate an object as it would be stored; `old` is the stored object on update.
pub fn validate(kind: &str, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if !is_dns1123_subdomain(name) {
        causes.push(invalid(
            "metadata.name".into(),
            &format!("{name:?}"),
            DNS1123_SUBDOMAIN_MSG,
        ));
    }
    let spec = &obj["spec"];
    match kind {
        "Deployment" | "StatefulSet" | "ReplicaSet" | "DaemonSet" => {
            if let Some(r) = spec["replicas"].as_i64() {
                if r < 0 {
                    causes.push(invalid(
                        "spec.replicas".into(),
                        &r.to_string(),
                        "must be greater than or equal to 0",
                    ));
                }
            }
            let labels = &spec["template"]["metadata"]["labels"];
            match spec["selector"].as_object() {
                None => causes.push(required("spec.selector".into())),
                Some(sel) => {
                    let ml = sel.get("matchLabels").and_then(Value::as_object);
                    let matches = ml
                        .map(|ml| ml.iter().all(|(k, v)| labels.get(k) == Some(v)))
                        .unwrap_or(true);
                    if !matches
                        || (ml.is_none_or(|m| m.is_empty())
                            && sel.get("matchExpressions").is_none())
                    {
                        causes.push(invalid(
                            "spec.template.metadata.labels".into(),
                            &go_map(labels),
                            "`selector` does not match template `labels`",
                        ));
                    }
                }
            }
            check_containers(&spec["template"]["spec"], "spec.template.spec", &mut causes);
            if let Some(old) = old {
                if old["spec"]["selector"] != spec["selector"] {
                    causes.push(invalid(
                        "spec.selector".into(),
                        &format!(
                            "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}}",
                            go_map(&spec["selector"]["matchLabels"])
                        ),
                        "field is immutable",
                    ));
                }
                if kind == "StatefulSet" {
                    let strip = |s: &Value| {
                        let mut s = s.clone();
                        if let Some(m) = s.as_object_mut() {
                            for k in [
                                "replicas",
                                "template",
                                "updateStrategy",
                                "persistentVolumeClaimRetentionPolicy",
                                "minReadySeconds",
                                "ordinals",
                            ] {
                                m.remove(k);
                            }
                        }
                        s
                    };
                    if strip(&old["spec"]) != strip(spec) {
                        causes.push(Cause {
                            reason: "FieldValueForbidden",
                            field: "spec".into(),
                            message: "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden".into(),
                        });
                    }
                }
            }
        }
        "Job" => {
            check_containers(&spec["template"]["spec"], "spec.template.spec", &mut causes);
            if let Some(old) = old {
                if old["spec"]["template"] != spec["template"] {
                    causes.push(invalid(
                        "spec.template".into(),
                        "core.PodTemplateSpec{...}",
                        "field is immutable",
                    ));
                }
            }
        }
        "CronJob" => {
            check_containers(
                &spec["jobTemplate"]["spec"]["template"]["spec"],
                "spec.jobTemplate.spec.template.spec",
                &mut causes,
            );
        }
        "Pod" => check_containers(spec, "spec", &mut causes),
        "Service" => {
            if let Some(old) = old {
                let (o, n) = (&old["spec"]["clusterIP"], &spec["clusterIP"]);
                if o.is_string() && n.is_string() && o != n {
                    causes.push(invalid(
                        "spec.clusterIP".into(),
                        &n.to_string(),
                        "field is immutable",
                    ));
                }
            }
        }
        _ => {}
    }
    causes
}

/// The 422 Status for `causes`, worded like `errors.NewInvalid`.
pub fn invalid_status(kind: &str, group: &str, name: &str, causes: &[Cause]) -> Value {
    let parts: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    let list = if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    };
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let mut d = details(group, kind, name);
    d["causes"] = json!(causes
        .iter()
        .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
        .collect::<Vec<_>>());
    status_failure(
        422,
        "Invalid",
        &format!("{qualified} \"{name}\" is invalid: {list}"),
        Some(d),
    )
}
