//! The changed fields between an object as it is in the cluster and as a server-side dry run says it would become, for the plan and the pull-request comment.

use serde_json::Value;

/// Metadata the API server maintains itself; a change there is not a change the user made.
const SERVER_METADATA: &[&str] = &[
    "resourceVersion",
    "generation",
    "managedFields",
    "creationTimestamp",
    "uid",
    "selfLink",
];

/// Field paths that differ between `live` and `planned`, sorted; `status` is ignored, list
/// items with a `name` are matched by it (`containers[name=web].image`).
pub fn changed_fields(live: &Value, planned: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff(live, planned, String::new(), &mut out);
    out.sort();
    out.dedup();
    out
}

fn diff(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(left), Value::Object(right)) => {
            let keys: std::collections::BTreeSet<&String> =
                left.keys().chain(right.keys()).collect();
            for key in keys {
                if path.is_empty() && key == "status" {
                    continue;
                }
                if path == "metadata" && SERVER_METADATA.contains(&key.as_str()) {
                    continue;
                }
                if path == "metadata.annotations" && key == "deployment.kubernetes.io/revision" {
                    continue;
                }
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match (left.get(key), right.get(key)) {
                    (Some(x), Some(y)) => diff(x, y, child, out),
                    (None, None) => {}
                    _ => out.push(child),
                }
            }
        }
        (Value::Array(left), Value::Array(right)) if named(left) && named(right) => {
            let name = |v: &Value| v.get("name").and_then(Value::as_str).map(str::to_string);
            let names: std::collections::BTreeSet<String> =
                left.iter().chain(right).filter_map(name).collect();
            for item in names {
                let find = |list: &Vec<Value>| {
                    list.iter()
                        .find(|v| name(v).as_deref() == Some(item.as_str()))
                        .cloned()
                };
                let child = format!("{path}[name={item}]");
                match (find(left), find(right)) {
                    (Some(x), Some(y)) => diff(&x, &y, child, out),
                    _ => out.push(child),
                }
            }
        }
        (x, y) if x != y => out.push(path),
        _ => {}
    }
}

fn named(list: &[Value]) -> bool {
    !list.is_empty()
        && list
            .iter()
            .all(|v| v.get("name").and_then(Value::as_str).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_user_changes_and_ignores_what_the_server_maintains() {
        let live = json!({
            "metadata": {"name": "web", "resourceVersion": "1", "generation": 1, "labels": {"a": "1"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "web", "image": "r/web@sha256:1"},
                {"name": "sidecar", "image": "s:1"}
            ]}}},
            "status": {"readyReplicas": 2}
        });
        let planned = json!({
            "metadata": {"name": "web", "resourceVersion": "9", "generation": 2, "labels": {"a": "1", "b": "2"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "sidecar", "image": "s:1"},
                {"name": "web", "image": "r/web@sha256:2"}
            ]}}},
            "status": {}
        });
        assert_eq!(
            changed_fields(&live, &planned),
            [
                "metadata.labels.b",
                "spec.template.spec.containers[name=web].image"
            ]
        );
        assert!(changed_fields(&live, &live).is_empty());
    }

    #[test]
    fn unnamed_lists_compare_whole() {
        let live = json!({"spec": {"ports": [{"port": 80}]}});
        let planned = json!({"spec": {"ports": [{"port": 8080}]}});
        assert_eq!(changed_fields(&live, &planned), ["spec.ports"]);
    }
}
