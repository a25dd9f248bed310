//! Defaulting the real API server applies on write (the fields controllers and clients rely on).

use super::meta::new_uid;
use serde_json::{json, Value};

fn set_default(obj: &mut Value, key: &str, v: Value) {
    if let Some(m) = obj.as_object_mut() {
        if m.get(key).is_none_or(Value::is_null) {
            m.insert(key.into(), v);
        }
    }
}

fn pod_spec(spec: &mut Value) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "securityContext", json!({}));
    for list in ["initContainers", "containers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                let latest = c["image"]
                    .as_str()
                    .is_some_and(|i| i.ends_with(":latest") || !i.contains(':'));
                set_default(
                    c,
                    "imagePullPolicy",
                    json!(if latest { "Always" } else { "IfNotPresent" }),
                );
                set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
                set_default(c, "terminationMessagePolicy", json!("File"));
                set_default(c, "resources", json!({}));
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        set_default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

fn template(spec: &mut Value) {
    if let Some(t) = spec.get_mut("template") {
        if let Some(ts) = t.get_mut("spec") {
            pod_spec(ts);
        }
    }
}

/// Fill defaults the real API server sets for `kind`. Only missing fields are set, so this is
/// idempotent and never fights a field manager.
pub fn apply_defaults(kind: &str, obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec") else {
        if kind == "Namespace" {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
        }
        return;
    };
    match kind {
        "Deployment" => {
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            set_default(
                spec,
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
            );
            template(spec);
        }
        "ReplicaSet" => {
            set_default(spec, "replicas", json!(1));
            template(spec);
        }
        "StatefulSet" => {
            set_default(spec, "replicas", json!(1));
            set_default(spec, "podManagementPolicy", json!("OrderedReady"));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            template(spec);
        }
        "DaemonSet" => {
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}),
            );
            template(spec);
        }
        "Job" => {
            set_default(spec, "backoffLimit", json!(6));
            set_default(spec, "completions", json!(1));
            set_default(spec, "parallelism", json!(1));
            set_default(spec, "completionMode", json!("NonIndexed"));
            set_default(spec, "suspend", json!(false));
            if let Some(ts) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
                set_default(ts, "restartPolicy", json!("Never"));
            }
            template(spec);
        }
        "Pod" => pod_spec(spec),
        "Service" => {
            set_default(spec, "type", json!("ClusterIP"));
            set_default(spec, "sessionAffinity", json!("None"));
            if spec["clusterIP"].is_null() {
                let n = new_uid();
                let b = u8::from_str_radix(&n[..2], 16).unwrap_or(1);
                let c = u8::from_str_radix(&n[2..4], 16).unwrap_or(1).max(1);
                spec["clusterIP"] = json!(format!("10.96.{b}.{c}"));
                spec["clusterIPs"] = json!([spec["clusterIP"].clone()]);
            }
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    set_default(p, "protocol", json!("TCP"));
                    let port = p["port"].clone();
                    set_default(p, "targetPort", port);
                }
            }
        }
        _ => {}
    }
}

/// What the Job controller's admission adds on create: the generated selector and pod labels.
pub fn job_on_create(obj: &mut Value) {
    let uid = obj["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if obj["spec"]["manualSelector"].as_bool() == Some(true) {
        return;
    }
    obj["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    let labels = &mut obj["spec"]["template"]["metadata"]["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    labels["batch.kubernetes.io/controller-uid"] = json!(uid);
    labels["batch.kubernetes.io/job-name"] = json!(name);
    labels["controller-uid"] = json!(uid);
    labels["job-name"] = json!(name);
}
