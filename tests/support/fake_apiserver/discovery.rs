//! The API resource table (built-in kinds plus applied CRDs) and the discovery documents built from it.

use serde_json::{json, Value};

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// One served resource: what discovery advertises and how the store treats it.
#[derive(Clone, Debug)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
    pub verbs: Vec<String>,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Subresources served besides the object itself (`status`, `log`, `scale`).
    pub subresources: Vec<String>,
    /// True for custom resources (served from an applied CRD).
    pub custom: bool,
}

impl ResourceInfo {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn has_status(&self) -> bool {
        self.subresources.iter().any(|s| s == "status")
    }
}

fn res(
    gv: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    subs: &[&str],
) -> ResourceInfo {
    let (group, version) = match gv.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), gv.to_string()),
    };
    let mut verbs: Vec<String> = ALL_VERBS.iter().map(|s| s.to_string()).collect();
    if plural == "namespaces" {
        verbs.retain(|v| v != "deletecollection");
    }
    if plural == "selfsubjectaccessreviews" {
        verbs = vec!["create".into()];
    }
    let categories = match kind {
        "Pod"
        | "Service"
        | "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "CronJob"
        | "HorizontalPodAutoscaler" => vec!["all".to_string()],
        _ => vec![],
    };
    ResourceInfo {
        group,
        version,
        plural: plural.into(),
        kind: kind.into(),
        namespaced,
        verbs,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories,
        subresources: subs.iter().map(|s| s.to_string()).collect(),
        custom: false,
    }
}

/// The built-in resources this fake serves.
pub fn builtin_resources() -> Vec<ResourceInfo> {
    let st: &[&str] = &["status"];
    vec![
        res("v1", "configmaps", "ConfigMap", true, &["cm"], &[]),
        res("v1", "endpoints", "Endpoints", true, &["ep"], &[]),
        res("v1", "events", "Event", true, &["ev"], &[]),
        res("v1", "namespaces", "Namespace", false, &["ns"], st),
        res(
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
            &["pvc"],
            st,
        ),
        res("v1", "pods", "Pod", true, &["po"], &["log", "status"]),
        res("v1", "secrets", "Secret", true, &[], &[]),
        res(
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            &["sa"],
            &[],
        ),
        res("v1", "services", "Service", true, &["svc"], st),
        res(
            "apps/v1",
            "controllerrevisions",
            "ControllerRevision",
            true,
            &[],
            &[],
        ),
        res("apps/v1", "daemonsets", "DaemonSet", true, &["ds"], st),
        res(
            "apps/v1",
            "deployments",
            "Deployment",
            true,
            &["deploy"],
            &["scale", "status"],
        ),
        res(
            "apps/v1",
            "replicasets",
            "ReplicaSet",
            true,
            &["rs"],
            &["scale", "status"],
        ),
        res(
            "apps/v1",
            "statefulsets",
            "StatefulSet",
            true,
            &["sts"],
            &["scale", "status"],
        ),
        res("batch/v1", "cronjobs", "CronJob", true, &["cj"], st),
        res("batch/v1", "jobs", "Job", true, &[], st),
        res("coordination.k8s.io/v1", "leases", "Lease", true, &[], &[]),
        res(
            "rbac.authorization.k8s.io/v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            &[],
            &[],
        ),
        res(
            "rbac.authorization.k8s.io/v1",
            "clusterroles",
            "ClusterRole",
            false,
            &[],
            &[],
        ),
        res(
            "rbac.authorization.k8s.io/v1",
            "rolebindings",
            "RoleBinding",
            true,
            &[],
            &[],
        ),
        res(
            "rbac.authorization.k8s.io/v1",
            "roles",
            "Role",
            true,
            &[],
            &[],
        ),
        res(
            "networking.k8s.io/v1",
            "ingresses",
            "Ingress",
            true,
            &["ing"],
            st,
        ),
        res(
            "networking.k8s.io/v1",
            "networkpolicies",
            "NetworkPolicy",
            true,
            &["netpol"],
            &[],
        ),
        res(
            "policy/v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            true,
            &["pdb"],
            st,
        ),
        res(
            "autoscaling/v2",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            true,
            &["hpa"],
            st,
        ),
        res(
            "apiextensions.k8s.io/v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            st,
        ),
        res(
            "authorization.k8s.io/v1",
            "selfsubjectaccessreviews",
            "SelfSubjectAccessReview",
            false,
            &[],
            &[],
        ),
        res("events.k8s.io/v1", "events", "Event", true, &["ev"], &[]),
    ]
}

/// Resources an applied CRD serves (one per served version).
pub fn crd_resources(crd: &Value) -> Vec<ResourceInfo> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default();
    let kind = names["kind"].as_str().unwrap_or_default();
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"].as_bool().unwrap_or(true))
        .map(|v| {
            let mut r = res(
                &format!("{group}/{}", v["name"].as_str().unwrap_or("v1")),
                plural,
                kind,
                namespaced,
                &[],
                if v["subresources"]["status"].is_object() {
                    &["status"]
                } else {
                    &[]
                },
            );
            r.short_names = strs(&names["shortNames"]);
            r.categories = strs(&names["categories"]);
            r.custom = true;
            r
        })
        .collect()
}

/// `GET /api`.
pub fn core_versions(addr: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]
    })
}

/// `GET /apis`: an APIGroupList in first-seen order of the table.
pub fn group_list(resources: &[ResourceInfo]) -> Value {
    let mut groups: Vec<Value> = Vec::new();
    for g in group_names(resources) {
        groups.push(group_doc(resources, &g));
    }
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn group_names(resources: &[ResourceInfo]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in resources.iter().filter(|r| !r.group.is_empty()) {
        if !names.contains(&r.group) {
            names.push(r.group.clone());
        }
    }
    names
}

/// `GET /apis/<group>`: an APIGroup, or None for an unknown group.
pub fn group(resources: &[ResourceInfo], name: &str) -> Option<Value> {
    resources.iter().any(|r| r.group == name).then(|| {
        let mut g = group_doc(resources, name);
        g["kind"] = json!("APIGroup");
        g["apiVersion"] = json!("v1");
        g
    })
}

fn group_doc(resources: &[ResourceInfo], name: &str) -> Value {
    let mut versions: Vec<String> = Vec::new();
    for r in resources.iter().filter(|r| r.group == name) {
        if !versions.contains(&r.version) {
            versions.push(r.version.clone());
        }
    }
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": vs, "preferredVersion": vs[0].clone()})
}

/// `GET /api/v1` or `/apis/<group>/<version>`: an APIResourceList shaped like the recorded ones
/// (subresources as `plural/sub`, `singularName: ""`, sorted by name), or None if not served.
pub fn resource_list(resources: &[ResourceInfo], group: &str, version: &str) -> Option<Value> {
    let mut entries: Vec<Value> = Vec::new();
    for r in resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut e = json!({
            "name": r.plural,
            "singularName": "",
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        entries.push(e);
        for sub in &r.subresources {
            let mut s = json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            });
            match sub.as_str() {
                "log" => s["verbs"] = json!(["get"]),
                "scale" => {
                    s["group"] = json!("autoscaling");
                    s["version"] = json!("v1");
                    s["kind"] = json!("Scale");
                }
                _ => {}
            }
            entries.push(s);
        }
    }
    if entries.is_empty() {
        return None;
    }
    entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut doc = json!({"kind": "APIResourceList", "groupVersion": gv, "resources": entries});
    if !group.is_empty() {
        doc["apiVersion"] = json!("v1");
    }
    Some(doc)
}
