//! Whether a live object still holds what gantry applied: the fields gantry's field manager owns (its `managedFields` entry) compared with the release's object, not the whole live object.
//!
//! Design note: the API server adds defaults, turns `stringData` into `data` and rewrites
//! quantities (`0.5` -> `500m`), so a live object never equals the manifest. What gantry owns
//! is exact, though: server-side apply records the set of fields each manager set
//! (`fieldsV1`), and a change by anyone else (`kubectl edit`, another apply, a controller's
//! update) moves the changed fields to that manager. So an object is unchanged when gantry
//! still owns exactly the release's fields and each of them holds the release's value
//! (numbers and quantities compared by value). Anything this cannot read says "differs", and
//! the object is simply applied again: a false alarm costs one request, never a missed drift.

use serde_json::{Map, Value};

use super::FIELD_MANAGER;

/// Whether `live` (as read from the API, with `metadata.managedFields`) holds `desired` (the
/// object gantry applies) in the fields gantry owns; `Err` says where it first differs.
pub fn holds(desired: &Value, live: &Value) -> Result<(), String> {
    let api_version = desired.get("apiVersion").and_then(Value::as_str);
    let entry = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|entry| {
            entry.get("manager").and_then(Value::as_str) == Some(FIELD_MANAGER)
                && entry.get("operation").and_then(Value::as_str) == Some("Apply")
        })
        .ok_or("gantry's field manager owns none of its fields")?;
    if entry.get("apiVersion").and_then(Value::as_str) != api_version {
        return Err("gantry applied it in another apiVersion".into());
    }
    let owned = entry
        .get("fieldsV1")
        .and_then(Value::as_object)
        .ok_or("gantry's managed fields are unreadable")?;
    // A Secret's stringData is written into data (base64) and never read back: compare what
    // it became.
    let with_string_data;
    let live = if desired.get("kind").and_then(Value::as_str) == Some("Secret")
        && desired.get("stringData").is_some()
    {
        with_string_data = string_data_of(live);
        &with_string_data
    } else {
        live
    };
    let mut desired = desired.clone();
    if let Some(top) = desired.as_object_mut() {
        top.remove("apiVersion");
        top.remove("kind");
        top.remove("status");
    }
    if let Some(metadata) = desired.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("name");
        metadata.remove("namespace");
    }
    compare(&desired, Some(live), owned, "")
}

/// `live` with `stringData` holding each of its `data` values that is base64 of UTF-8 text.
fn string_data_of(live: &Value) -> Value {
    use base64::Engine;
    let mut live = live.clone();
    let decoded: Map<String, Value> = live
        .get("data")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value.as_str()?)
                .ok()?;
            Some((key.clone(), Value::String(String::from_utf8(bytes).ok()?)))
        })
        .collect();
    if let Some(object) = live.as_object_mut() {
        object.insert("stringData".into(), Value::Object(decoded));
    }
    live
}

/// Whether `value` sets no field: null, or a map of such.
fn sets_nothing(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(fields) => fields.values().all(sets_nothing),
        _ => false,
    }
}

/// Compares `desired` with `live` under the owned-field tree `owned`.
fn compare(
    desired: &Value,
    live: Option<&Value>,
    owned: &Map<String, Value>,
    path: &str,
) -> Result<(), String> {
    match desired {
        Value::Object(fields) => compare_map(fields, live, owned, path),
        Value::Array(items) => compare_list(items, live, owned, path),
        scalar => same_value(scalar, live, path),
    }
}

fn compare_map(
    fields: &Map<String, Value>,
    live: Option<&Value>,
    owned: &Map<String, Value>,
    path: &str,
) -> Result<(), String> {
    compare_item(fields, live, owned, path, &[])
}

/// [`compare_map`] for a list item whose key fields are `keys`: a key field the manifest
/// leaves out (defaulted by the server) is owned without being in the release.
fn compare_item(
    fields: &Map<String, Value>,
    live: Option<&Value>,
    owned: &Map<String, Value>,
    path: &str,
    keys: &[String],
) -> Result<(), String> {
    let live = live.and_then(Value::as_object);
    let mut set = 0;
    for (name, value) in fields {
        if sets_nothing(value) && !owned.contains_key(&format!("f:{name}")) {
            continue; // null unsets, and a map of nothing sets nothing: nothing is owned
        }
        set += 1;
        let here = format!("{path}.{name}");
        let child = owned
            .get(&format!("f:{name}"))
            .and_then(Value::as_object)
            .ok_or_else(|| {
                format!("{here} is not gantry's (someone else changed it, or it was never applied)")
            })?;
        let live_child = live.and_then(|l| l.get(name));
        if child.is_empty() {
            same_value(value, live_child, &here)?;
        } else {
            compare(value, live_child, child, &here)?;
        }
    }
    let owned_fields = owned
        .keys()
        .filter_map(|k| k.strip_prefix("f:"))
        .filter(|name| fields.contains_key(*name) || !keys.iter().any(|key| key == name))
        .count();
    if owned_fields != set {
        return Err(format!(
            "{} gantry set before is no longer in the release",
            if path.is_empty() { "a field" } else { path }
        ));
    }
    Ok(())
}

fn compare_list(
    items: &[Value],
    live: Option<&Value>,
    owned: &Map<String, Value>,
    path: &str,
) -> Result<(), String> {
    let live_items: &[Value] = live.and_then(Value::as_array).map_or(&[], Vec::as_slice);
    let entries: Vec<(&String, &Value)> = owned
        .iter()
        .filter(|(k, _)| k.starts_with("k:") || k.starts_with("v:") || k.starts_with("i:"))
        .collect();
    if entries.len() != items.len() {
        return Err(format!(
            "{path}: the list gantry owns has {} items, the release {}",
            entries.len(),
            items.len()
        ));
    }
    for (index, item) in items.iter().enumerate() {
        let here = format!("{path}[{index}]");
        let (key, sub) = entries
            .iter()
            .find(|(key, _)| identifies(key, item, index))
            .ok_or_else(|| format!("{here} is not gantry's"))?;
        let live_item = live_items
            .iter()
            .enumerate()
            .find(|(position, candidate)| identifies(key, candidate, *position))
            .map(|(_, candidate)| candidate);
        if key.starts_with("v:") {
            // A set member: present is all there is to it.
            live_item.ok_or_else(|| format!("{here} is gone"))?;
            continue;
        }
        let sub = sub.as_object().cloned().unwrap_or_default();
        match item {
            Value::Object(fields) => {
                let keys: Vec<String> = key
                    .strip_prefix("k:")
                    .and_then(|json| serde_json::from_str::<Map<String, Value>>(json).ok())
                    .map(|k| k.keys().cloned().collect())
                    .unwrap_or_default();
                compare_item(fields, live_item, &sub, &here, &keys)?
            }
            other => compare(other, live_item, &sub, &here)?,
        }
    }
    Ok(())
}

/// Whether the owned-list key `key` (`k:{"name":"web"}`, `v:"x"`, `i:0`) names `item` at `index`.
fn identifies(key: &str, item: &Value, index: usize) -> bool {
    if let Some(json) = key.strip_prefix("k:") {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(json) else {
            return false;
        };
        // A key field the manifest leaves out is one the server defaults (a port's
        // `protocol: TCP`): the fields it gives must match.
        let given: Vec<_> = fields
            .iter()
            .filter(|(name, _)| item.get(name.as_str()).is_some())
            .collect();
        !given.is_empty()
            && given
                .iter()
                .all(|(name, value)| item.get(name.as_str()).is_some_and(|v| equal(v, value)))
    } else if let Some(json) = key.strip_prefix("v:") {
        serde_json::from_str::<Value>(json).is_ok_and(|value| equal(&value, item))
    } else if let Some(position) = key.strip_prefix("i:") {
        position.parse::<usize>() == Ok(index)
    } else {
        false
    }
}

fn same_value(desired: &Value, live: Option<&Value>, path: &str) -> Result<(), String> {
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    let same = match live {
        Some(live) => equal(desired, live) || (empty(desired) && empty(live)),
        None => empty(desired),
    };
    if same {
        Ok(())
    } else {
        Err(format!("{path} differs from the release"))
    }
}

/// JSON equality with numbers compared by value, numbers and numeric strings alike where
/// Kubernetes keeps either (`port: 80` / `"80"` stays as given, but quantities do not), and
/// quantities compared by what they mean (`0.5` = `500m`, `1Gi` = `1024Mi`).
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let set = |m: &Map<String, Value>| m.iter().filter(|(_, v)| !v.is_null()).count();
            set(x) == set(y)
                && x.iter()
                    .filter(|(_, v)| !v.is_null())
                    .all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| equal(v, w))
        }
        (Value::String(x), Value::String(y)) => {
            x == y
                || quantity(x)
                    .zip(quantity(y))
                    .is_some_and(|(p, q)| same_number(p, q))
        }
        (Value::Number(_), Value::String(s)) | (Value::String(s), Value::Number(_)) => {
            let n = number(a).or_else(|| number(b));
            quantity(s).zip(n).is_some_and(|(p, q)| same_number(p, q))
        }
        (Value::Number(_), Value::Number(_)) => number(a)
            .zip(number(b))
            .is_some_and(|(p, q)| same_number(p, q)),
        _ => a == b,
    }
}

fn number(value: &Value) -> Option<f64> {
    value.as_f64()
}

fn same_number(a: f64, b: f64) -> bool {
    (a - b).abs() <= f64::EPSILON * a.abs().max(b.abs()).max(1.0)
}

/// The value of a Kubernetes quantity (`500m`, `1.5`, `2Gi`, `1e3`), if it is one.
fn quantity(text: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let text = text.trim();
    let (digits, scale) = SUFFIXES
        .iter()
        .find_map(|(suffix, scale)| text.strip_suffix(suffix).map(|d| (d, *scale)))
        .unwrap_or((text, 1.0));
    if digits.is_empty()
        || !digits.starts_with(|c: char| c.is_ascii_digit() || c == '.' || c == '-' || c == '+')
    {
        return None;
    }
    digits.parse::<f64>().ok().map(|value| value * scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live(object: Value, fields: Value) -> Value {
        let mut object = object;
        object["metadata"]["managedFields"] = json!([
            {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1",
             "fieldsV1": {"f:status": {"f:replicas": {}}}},
            {"manager": "gantry", "operation": "Apply", "apiVersion": object["apiVersion"].clone(),
             "fieldsV1": fields},
        ]);
        object
    }

    fn deployment(image: &str, cpu: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                    {"name": "web", "image": image, "args": ["serve", "--port=80"],
                     "ports": [{"containerPort": 80}],
                     "resources": {"requests": {"cpu": cpu}}}]}}}})
    }

    fn deployment_fields() -> Value {
        json!({"f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:replicas": {}, "f:selector": {},
                "f:template": {"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:containers": {
                    "k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:image": {}, "f:args": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:protocol": {}}},
                        "f:resources": {"f:requests": {"f:cpu": {}}}}}}}}})
    }

    /// The live form: server defaults added, the quantity rewritten.
    fn served(image: &str, fields: Value) -> Value {
        let mut object = deployment(image, "500m");
        object["metadata"]["uid"] = json!("u-1");
        object["spec"]["strategy"] = json!({"type": "RollingUpdate"});
        object["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] =
            json!("IfNotPresent");
        object["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] = json!("TCP");
        object["status"] = json!({"replicas": 2});
        live(object, fields)
    }

    #[test]
    fn what_gantry_owns_is_compared_and_nothing_else() {
        let desired = deployment("r/web:1", "0.5");
        let cases: Vec<(&str, Value, Result<(), &str>)> = vec![
            (
                "defaults and quantity format",
                served("r/web:1", deployment_fields()),
                Ok(()),
            ),
            (
                "image changed by hand (ownership moved)",
                {
                    let mut fields = deployment_fields();
                    fields["f:spec"]["f:template"]["f:spec"]["f:containers"]
                        ["k:{\"name\":\"web\"}"]
                        .as_object_mut()
                        .unwrap()
                        .remove("f:image");
                    served("r/web:hack", fields)
                },
                Err(".spec.template.spec.containers[0].image is not gantry's (someone else changed it, or it was never applied)"),
            ),
            (
                "value differs, still owned (release changed)",
                served("r/web:0", deployment_fields()),
                Err(".spec.template.spec.containers[0].image differs from the release"),
            ),
            (
                "a field gantry set is no longer in the release",
                {
                    let mut fields = deployment_fields();
                    fields["f:spec"]["f:minReadySeconds"] = json!({});
                    served("r/web:1", fields)
                },
                Err(".spec gantry set before is no longer in the release"),
            ),
            (
                "not applied by gantry",
                live(deployment("r/web:1", "0.5"), json!({})).tap_remove_gantry(),
                Err("gantry's field manager owns none of its fields"),
            ),
        ];
        for (name, live, expected) in cases {
            assert_eq!(
                holds(&desired, &live),
                expected.map_err(str::to_string),
                "{name}"
            );
        }
    }

    #[test]
    fn config_maps_lists_sets_and_numbers() {
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": null},
            "data": {"a": "1", "empty": ""}});
        let fields = json!({"f:data": {"f:a": {}, "f:empty": {}}});
        let mut object = desired.clone();
        object["metadata"]["resourceVersion"] = json!("7");
        assert_eq!(
            holds(&desired, &live(object.clone(), fields.clone())),
            Ok(())
        );
        object["data"]["a"] = json!("2");
        assert!(holds(&desired, &live(object, fields)).is_err());

        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "stringData": {"password": "hunter2"}});
        let secret_fields = json!({"f:stringData": {"f:password": {}}});
        let stored = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"password": "aHVudGVyMg=="}, "type": "Opaque"});
        assert_eq!(
            holds(&secret, &live(stored.clone(), secret_fields.clone())),
            Ok(())
        );
        let mut changed = stored;
        changed["data"]["password"] = json!("b3RoZXI=");
        assert!(holds(&secret, &live(changed, secret_fields)).is_err());

        let set = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "x"}, "spec": {"finalizers": ["a", "b"]}});
        let set_fields = json!({"f:spec": {"f:finalizers": {"v:\"a\"": {}, "v:\"b\"": {}}}});
        assert_eq!(holds(&set, &live(set.clone(), set_fields.clone())), Ok(()));
        let mut fewer = set.clone();
        fewer["spec"]["finalizers"] = json!(["a"]);
        assert!(holds(&fewer, &live(set.clone(), set_fields)).is_err());

        for (a, b, same) in [
            (json!("0.5"), json!("500m"), true),
            (json!("1Gi"), json!("1024Mi"), true),
            (json!(2), json!("2"), true),
            (json!(1.0), json!(1), true),
            (json!("1"), json!("2"), false),
            (json!("web"), json!("web"), true),
            (json!("m"), json!("0"), false),
            (json!(true), json!("true"), false),
        ] {
            assert_eq!(equal(&a, &b), same, "{a} {b}");
        }
    }

    trait TapRemove {
        fn tap_remove_gantry(self) -> Value;
    }
    impl TapRemove for Value {
        fn tap_remove_gantry(mut self) -> Value {
            self["metadata"]["managedFields"]
                .as_array_mut()
                .unwrap()
                .retain(|e| e["manager"] != "gantry");
            self
        }
    }
}
