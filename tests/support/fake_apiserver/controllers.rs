//! Simulated kube-controller-manager, scheduler and kubelet, writing through the store like the real ones.
//!
//! Every step (default 20 ms) each controller looks at the store and makes at most one move per
//! object, so watchers see the ADDED/MODIFIED/DELETED sequence of a real rollout: Deployment →
//! ReplicaSet → Pods (surge, then scale-down of the old set), StatefulSet ordinals with
//! ControllerRevisions, a one-node DaemonSet, Jobs with backoff, the scheduler binding pods, and a
//! kubelet whose pod statuses and Events follow the chosen [`Behavior`]. Durations from specs
//! (`progressDeadlineSeconds`, back-offs) are multiplied by the time factor.

use super::meta::{now_micro, now_rfc3339, random_hex, random_suffix, template_hash};
use super::store::ObjKey;
use super::{Shared, State};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the simulated kubelet (and scheduler) treat a workload's pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behavior {
    /// Containers start and become Ready; Job pods exit 0.
    Healthy,
    /// ErrImagePull, then ImagePullBackOff, alternating, with the kubelet's Events.
    ImagePullError,
    /// The container exits 1 again and again: CrashLoopBackOff, growing restartCount.
    CrashLoop,
    /// Running, but the readiness probe never passes.
    NeverReady,
    /// The scheduler finds no node: PodScheduled=False, reason Unschedulable.
    Unschedulable,
    /// Job pods exit 1 (the Job fails once backoffLimit is exceeded); other pods crash-loop.
    JobFails,
    /// Controllers leave the object (and its pods) alone: the test drives status itself.
    Manual,
}

const NODE: &str = "fake-node-1";

/// Per-pod kubelet progress and per-Deployment progress timestamps.
#[derive(Default)]
pub struct Memory {
    pods: HashMap<String, PodSim>,
    progress: HashMap<String, Instant>,
    crds: HashMap<String, Instant>,
    job_backoff: HashMap<String, Instant>,
}

struct PodSim {
    stage: u32,
    next: Instant,
}

pub async fn run(shared: Arc<Shared>) {
    loop {
        let step = {
            let mut st = shared.lock();
            step_all(&mut st);
            st.step
        };
        tokio::time::sleep(step).await;
    }
}

fn step_all(st: &mut State) {
    let now = Instant::now();
    crds(st, now);
    for d in all(st, "apps", "deployments") {
        deployment(st, &d, now);
    }
    for rs in all(st, "apps", "replicasets") {
        replicaset(st, &rs);
    }
    for s in all(st, "apps", "statefulsets") {
        statefulset(st, &s);
    }
    for ds in all(st, "apps", "daemonsets") {
        daemonset(st, &ds);
    }
    for j in all(st, "batch", "jobs") {
        job(st, &j, now);
    }
    for p in all(st, "", "pods") {
        if p["spec"]["nodeName"].as_str().is_none() {
            schedule(st, &p);
        } else {
            kubelet(st, &p, now);
        }
    }
    let live: std::collections::HashSet<String> = st
        .store
        .list("", "pods", None)
        .iter()
        .map(|p| uid(p).to_string())
        .collect();
    st.ctl.pods.retain(|k, _| live.contains(k));
}

// ---- helpers ----

fn all(st: &State, group: &str, plural: &str) -> Vec<Value> {
    st.store.list(group, plural, None)
}

fn uid(v: &Value) -> &str {
    v["metadata"]["uid"].as_str().unwrap_or_default()
}

fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or_default()
}

fn ns(v: &Value) -> &str {
    v["metadata"]["namespace"].as_str().unwrap_or_default()
}

fn key(group: &str, plural: &str, v: &Value) -> ObjKey {
    let n = ns(v);
    ObjKey::new(group, plural, (!n.is_empty()).then_some(n), name(v))
}

fn owned_by<'a>(items: &'a [Value], owner: &Value) -> Vec<&'a Value> {
    let u = uid(owner);
    items
        .iter()
        .filter(|i| {
            i["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|r| r.iter().any(|o| o["uid"] == u && o["controller"] == true))
        })
        .collect()
}

fn controller_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true
    })
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn scaled(st: &State, secs: f64) -> Duration {
    Duration::from_secs_f64((secs * st.time_factor).max(0.0)).max(st.step)
}

/// Write a status (or any change) through the store; a no-op write changes nothing.
fn save(st: &mut State, group: &str, plural: &str, v: Value) -> Value {
    let k = key(group, plural, &v);
    st.store.update(&k, v)
}

/// Insert or drop zero-valued integer fields the way Go's `omitempty` does.
fn set_count(status: &mut Value, field: &str, n: i64, omit_zero: bool) {
    if n == 0 && omit_zero {
        status.as_object_mut().map(|m| m.remove(field));
    } else {
        status[field] = json!(n);
    }
}

fn set_condition(
    status: &mut Value,
    cond_type: &str,
    status_str: &str,
    reason: &str,
    message: &str,
    deployment_style: bool,
) {
    let now = now_rfc3339();
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let conds = status["conditions"].as_array_mut().expect("array");
    let mut c =
        json!({"type": cond_type, "status": status_str, "reason": reason, "message": message});
    if deployment_style {
        c["lastUpdateTime"] = json!(now);
    } else {
        c["lastProbeTime"] = json!(now);
    }
    c["lastTransitionTime"] = json!(now);
    match conds.iter_mut().find(|c| c["type"] == cond_type) {
        Some(old) => {
            if old["status"] == status_str {
                c["lastTransitionTime"] = old["lastTransitionTime"].clone();
                if old["reason"] == reason && old["message"] == message {
                    c["lastUpdateTime"] = old["lastUpdateTime"].clone();
                    if !deployment_style {
                        c["lastProbeTime"] = old["lastProbeTime"].clone();
                    }
                }
            }
            if !deployment_style || c.get("lastUpdateTime").is_some() {
                *old = c;
            }
        }
        None => conds.push(c),
    }
}

fn condition<'a>(v: &'a Value, t: &str) -> Option<&'a Value> {
    v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
}

/// Record an Event as the controllers and kubelet do, bumping `count` on repeats.
fn event(
    st: &mut State,
    involved: &Value,
    field_path: Option<&str>,
    kind: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let namespace = ns(involved).to_string();
    let existing = st
        .store
        .list("", "events", Some(&namespace))
        .into_iter()
        .find(|e| {
            e["involvedObject"]["uid"] == involved["metadata"]["uid"]
                && e["reason"] == reason
                && e["message"] == message
                && e["source"]["component"] == component
        });
    let now = now_rfc3339();
    if let Some(mut e) = existing {
        e["count"] = json!(int(&e["count"]) + 1);
        e["lastTimestamp"] = json!(now);
        save(st, "", "events", e);
        return;
    }
    let mut io = json!({
        "apiVersion": involved["apiVersion"], "kind": involved["kind"], "name": involved["metadata"]["name"],
        "namespace": namespace, "uid": involved["metadata"]["uid"],
    });
    match field_path {
        Some(fp) => io["fieldPath"] = json!(fp),
        None => io["resourceVersion"] = involved["metadata"]["resourceVersion"].clone(),
    }
    let kubelet = component == "kubelet";
    let e = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{}.{}", name(involved), random_hex(16)), "namespace": namespace},
        "involvedObject": io, "reason": reason, "message": message,
        "source": if kubelet { json!({"component": component, "host": NODE}) } else { json!({"component": component}) },
        "firstTimestamp": now, "lastTimestamp": now, "count": 1, "type": kind, "eventTime": null,
        "reportingComponent": if kubelet { "kubelet" } else { "" },
        "reportingInstance": if kubelet { NODE } else { "" },
    });
    let k = key("", "events", &e);
    st.store.create(k, e);
}

/// The scheduler's events are `events.k8s.io`-style (eventTime, action, no count).
fn scheduler_event(st: &mut State, pod: &Value, kind: &str, reason: &str, message: &str) {
    let namespace = ns(pod).to_string();
    let e = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{}.{}", name(pod), random_hex(16)), "namespace": namespace},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": name(pod), "namespace": namespace,
            "uid": pod["metadata"]["uid"], "resourceVersion": pod["metadata"]["resourceVersion"]},
        "reason": reason, "message": message, "action": "Binding", "source": {},
        "firstTimestamp": null, "lastTimestamp": null, "type": kind, "eventTime": now_micro(),
        "reportingComponent": "default-scheduler", "reportingInstance": "default-scheduler-fake",
    });
    let k = key("", "events", &e);
    st.store.create(k, e);
}

/// A pod from a template, owned by `owner`.
fn new_pod(
    template: &Value,
    owner: &Value,
    pod_name: &str,
    extra_labels: &[(&str, String)],
) -> Value {
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    for (k, v) in extra_labels {
        labels[*k] = json!(v);
    }
    let mut meta = json!({
        "name": pod_name, "namespace": ns(owner), "labels": labels,
        "ownerReferences": [controller_ref(owner)],
    });
    if let Some(a) = template["metadata"]["annotations"].as_object() {
        meta["annotations"] = json!(a);
    }
    meta["generateName"] = json!(format!("{}-", name(owner)));
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"], "status": {"phase": "Pending", "qosClass": "BestEffort"}})
}

fn create(st: &mut State, group: &str, plural: &str, v: Value) -> Value {
    let k = key(group, plural, &v);
    st.store.create(k, v)
}

fn pod_ready(p: &Value) -> bool {
    condition(p, "Ready").is_some_and(|c| c["status"] == "True")
}

fn pod_terminal(p: &Value) -> bool {
    matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
}

/// The workload at the top of a pod's owner chain: (kind, name).
fn top_owner(st: &State, pod: &Value) -> Option<(String, String)> {
    let r = pod["metadata"]["ownerReferences"]
        .as_array()?
        .first()?
        .clone();
    let kind = r["kind"].as_str()?.to_string();
    let owner_name = r["name"].as_str()?.to_string();
    if kind == "ReplicaSet" {
        let rs = st.store.get(&ObjKey::new(
            "apps",
            "replicasets",
            Some(ns(pod)),
            &owner_name,
        ))?;
        if let Some(d) = rs["metadata"]["ownerReferences"]
            .as_array()
            .and_then(|a| a.first())
        {
            return Some((
                d["kind"].as_str()?.to_string(),
                d["name"].as_str()?.to_string(),
            ));
        }
    }
    Some((kind, owner_name))
}

/// Per-object setting, then per-image, then the default.
fn behavior_of(st: &State, pod: &Value) -> Behavior {
    let n = ns(pod).to_string();
    if let Some(b) = st
        .behaviors
        .get(&("Pod".into(), n.clone(), name(pod).into()))
    {
        return *b;
    }
    if let Some((k, o)) = top_owner(st, pod) {
        if let Some(b) = st.behaviors.get(&(k, n, o)) {
            return *b;
        }
    }
    let images: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["image"].as_str())
        .collect();
    for (sub, b) in &st.image_behaviors {
        if images.iter().any(|i| i.contains(sub.as_str())) {
            return *b;
        }
    }
    st.default_behavior
}

fn object_manual(st: &State, kind: &str, v: &Value) -> bool {
    st.behaviors
        .get(&(kind.into(), ns(v).into(), name(v).into()))
        == Some(&Behavior::Manual)
}

// ---- CRDs ----

fn crds(st: &mut State, now: Instant) {
    for crd in all(st, "apiextensions.k8s.io", "customresourcedefinitions") {
        if condition(&crd, "Established").is_some_and(|c| c["status"] == "True") {
            continue;
        }
        let seen = *st.ctl.crds.entry(uid(&crd).to_string()).or_insert(now);
        if now < seen + st.crd_establish_delay {
            continue;
        }
        let mut c = crd.clone();
        let mut status = json!({});
        set_condition(
            &mut status,
            "NamesAccepted",
            "True",
            "NoConflicts",
            "no conflicts found",
            false,
        );
        set_condition(
            &mut status,
            "Established",
            "True",
            "InitialNamesAccepted",
            "the initial names have been accepted",
            false,
        );
        for cond in status["conditions"].as_array_mut().into_iter().flatten() {
            cond.as_object_mut().map(|m| m.remove("lastProbeTime"));
        }
        status["acceptedNames"] = crd["spec"]["names"].clone();
        let stored: Vec<Value> = crd["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["storage"] == true)
            .map(|v| v["name"].clone())
            .collect();
        status["storedVersions"] = json!(stored);
        c["status"] = status;
        save(st, "apiextensions.k8s.io", "customresourcedefinitions", c);
    }
}

// ---- Deployment ----

/// `maxSurge`/`maxUnavailable` (int or percent) resolved like `intstr.GetScaledValueFromIntOrPercent`.
fn resolve(v: &Value, replicas: i64, round_up: bool, default_pct: f64) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => {
            let pct = s
                .trim_end_matches('%')
                .parse::<f64>()
                .unwrap_or(default_pct);
            let x = pct * replicas as f64 / 100.0;
            if round_up {
                x.ceil() as i64
            } else {
                x.floor() as i64
            }
        }
        _ => {
            let x = default_pct * replicas as f64 / 100.0;
            if round_up {
                x.ceil() as i64
            } else {
                x.floor() as i64
            }
        }
    }
}

fn revision(v: &Value) -> i64 {
    v["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn deployment(st: &mut State, d: &Value, now: Instant) {
    if object_manual(st, "Deployment", d) || d["spec"]["paused"] == true {
        return;
    }
    let desired = int(&d["spec"]["replicas"]);
    let all_rs = st.store.list("apps", "replicasets", Some(ns(d)));
    let rss: Vec<Value> = owned_by(&all_rs, d).into_iter().cloned().collect();
    let hash = template_hash(&d["spec"]["template"]);
    let max_rev = rss.iter().map(revision).max().unwrap_or(0);
    let recreate = d["spec"]["strategy"]["type"] == "Recreate";
    let (surge, unavailable) = if recreate {
        (0, desired)
    } else {
        let ru = &d["spec"]["strategy"]["rollingUpdate"];
        let s = resolve(&ru["maxSurge"], desired, true, 25.0);
        let u = resolve(&ru["maxUnavailable"], desired, false, 25.0);
        (s, if s == 0 && u == 0 { 1 } else { u })
    };
    let new_rs = rss
        .iter()
        .find(|r| r["metadata"]["labels"]["pod-template-hash"] == hash.as_str())
        .cloned();
    let old: Vec<Value> = rss
        .iter()
        .filter(|r| r["metadata"]["labels"]["pod-template-hash"] != hash.as_str())
        .cloned()
        .collect();
    let old_total: i64 = old.iter().map(|r| int(&r["spec"]["replicas"])).sum();

    let Some(new_rs) = new_rs else {
        // A new template: a new ReplicaSet with the next revision.
        let rs_name = format!("{}-{hash}", name(d));
        let initial = if recreate && old_total > 0 {
            0
        } else if old_total == 0 {
            desired
        } else {
            (desired + surge - old_total).clamp(0, desired)
        };
        let mut template = d["spec"]["template"].clone();
        template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
        let mut selector = d["spec"]["selector"].clone();
        selector["matchLabels"]["pod-template-hash"] = json!(hash);
        let rs = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": rs_name, "namespace": ns(d), "labels": template["metadata"]["labels"],
                "annotations": {
                    "deployment.kubernetes.io/desired-replicas": desired.to_string(),
                    "deployment.kubernetes.io/max-replicas": (desired + surge).to_string(),
                    "deployment.kubernetes.io/revision": (max_rev + 1).to_string(),
                },
                "ownerReferences": [controller_ref(d)],
            },
            "spec": {"replicas": initial, "selector": selector, "template": template},
            "status": {"replicas": 0},
        });
        create(st, "apps", "replicasets", rs);
        if initial > 0 {
            let msg = format!("Scaled up replica set {rs_name} to {initial}");
            event(
                st,
                d,
                None,
                "Normal",
                "ScalingReplicaSet",
                &msg,
                "deployment-controller",
            );
        }
        let mut dd = d.clone();
        dd["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
            json!((max_rev + 1).to_string());
        let status = dd["status"].as_object().is_none().then(|| json!({}));
        if let Some(s) = status {
            dd["status"] = s;
        }
        let msg = format!("Created new replica set \"{rs_name}\"");
        set_condition(
            &mut dd["status"],
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            &msg,
            true,
        );
        st.ctl.progress.insert(uid(d).to_string(), now);
        save(st, "apps", "deployments", dd);
        return;
    };
    let rs_name = name(&new_rs).to_string();

    // Rolling back to an older template: its ReplicaSet gets the next revision.
    if revision(&new_rs) < max_rev {
        let mut r = new_rs.clone();
        r["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
            json!((max_rev + 1).to_string());
        save(st, "apps", "replicasets", r);
        let mut dd = d.clone();
        dd["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
            json!((max_rev + 1).to_string());
        st.ctl.progress.insert(uid(d).to_string(), now);
        save(st, "apps", "deployments", dd);
        return;
    }

    let new_replicas = int(&new_rs["spec"]["replicas"]);
    let available_all: i64 = rss
        .iter()
        .map(|r| int(&r["status"]["availableReplicas"]))
        .sum();
    let scale = |st: &mut State, rs: &Value, to: i64| {
        let mut r = rs.clone();
        let from = int(&r["spec"]["replicas"]);
        r["spec"]["replicas"] = json!(to);
        r["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] =
            json!(desired.to_string());
        r["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] =
            json!((desired + surge).to_string());
        save(st, "apps", "replicasets", r);
        let dir = if to > from { "up" } else { "down" };
        let msg = format!("Scaled {dir} replica set {} to {to}", name(rs));
        event(
            st,
            d,
            None,
            "Normal",
            "ScalingReplicaSet",
            &msg,
            "deployment-controller",
        );
    };
    let mut moved = false;
    if recreate {
        if let Some(o) = old.iter().find(|r| int(&r["spec"]["replicas"]) > 0) {
            scale(st, o, 0);
            moved = true;
        } else if new_replicas != desired {
            let old_pods_left = old.iter().any(|r| int(&r["status"]["replicas"]) > 0);
            if !old_pods_left {
                scale(st, &new_rs, desired);
                moved = true;
            }
        }
    } else if new_replicas > desired {
        scale(st, &new_rs, desired);
        moved = true;
    } else if new_replicas < desired && desired + surge - (old_total + new_replicas) > 0 {
        let to = (new_replicas + desired + surge - (old_total + new_replicas)).min(desired);
        scale(st, &new_rs, to);
        moved = true;
    } else if old_total > 0 {
        let min_available = desired - unavailable;
        let new_unavailable = new_replicas - int(&new_rs["status"]["availableReplicas"]);
        // Old pods that are not available can go first (cleanupUnhealthyReplicas).
        let old_unhealthy: i64 = old
            .iter()
            .map(|r| int(&r["spec"]["replicas"]) - int(&r["status"]["availableReplicas"]))
            .sum();
        let all_pods = old_total + new_replicas;
        let mut budget = (all_pods - min_available - new_unavailable).max(0);
        budget = budget.max(old_unhealthy.min(all_pods - min_available).max(0));
        let _ = available_all;
        let mut sorted = old.clone();
        sorted.sort_by_key(revision);
        for o in sorted.iter().filter(|r| int(&r["spec"]["replicas"]) > 0) {
            if budget <= 0 {
                break;
            }
            let cur = int(&o["spec"]["replicas"]);
            let down = budget.min(cur);
            scale(st, o, cur - down);
            budget -= down;
            moved = true;
        }
    }

    // Status from the ReplicaSets (re-read: scaling may have changed them).
    let all_rs = st.store.list("apps", "replicasets", Some(ns(d)));
    let rss: Vec<Value> = owned_by(&all_rs, d).into_iter().cloned().collect();
    let sum = |f: &str| -> i64 { rss.iter().map(|r| int(&r["status"][f])).sum() };
    let spec_total: i64 = rss.iter().map(|r| int(&r["spec"]["replicas"])).sum();
    let new_now = rss
        .iter()
        .find(|r| name(r) == rs_name)
        .cloned()
        .unwrap_or(new_rs.clone());
    let replicas = sum("replicas");
    let updated = int(&new_now["status"]["replicas"]);
    let ready = sum("readyReplicas");
    let available = sum("availableReplicas");
    let mut dd = d.clone();
    let before = dd["status"].clone();
    let mut status = if before.is_object() {
        before.clone()
    } else {
        json!({})
    };
    status["observedGeneration"] = d["metadata"]["generation"].clone();
    set_count(&mut status, "replicas", replicas, true);
    set_count(&mut status, "updatedReplicas", updated, true);
    set_count(&mut status, "readyReplicas", ready, true);
    set_count(&mut status, "availableReplicas", available, true);
    set_count(
        &mut status,
        "unavailableReplicas",
        (spec_total - available).max(0),
        true,
    );
    if available >= desired - unavailable {
        set_condition(
            &mut status,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            true,
        );
    } else {
        set_condition(
            &mut status,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            true,
        );
    }
    let complete =
        updated == desired && replicas == desired && available == desired && spec_total == desired;
    let progressed = moved
        || int(&status["updatedReplicas"]) > int(&before["updatedReplicas"])
        || int(&status["readyReplicas"]) > int(&before["readyReplicas"])
        || int(&status["availableReplicas"]) > int(&before["availableReplicas"])
        || replicas < int(&before["replicas"])
            && updated == int(&before["updatedReplicas"])
            && updated > 0;
    let deadline = scaled(
        st,
        d["spec"]["progressDeadlineSeconds"]
            .as_f64()
            .unwrap_or(600.0),
    );
    let last = *st.ctl.progress.entry(uid(d).to_string()).or_insert(now);
    let current_reason = condition(d, "Progressing")
        .and_then(|c| c["reason"].as_str())
        .unwrap_or_default()
        .to_string();
    if complete {
        let msg = format!("ReplicaSet \"{rs_name}\" has successfully progressed.");
        set_condition(
            &mut status,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &msg,
            true,
        );
    } else if progressed {
        st.ctl.progress.insert(uid(d).to_string(), now);
        let msg = format!("ReplicaSet \"{rs_name}\" is progressing.");
        set_condition(
            &mut status,
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            &msg,
            true,
        );
    } else if current_reason != "ProgressDeadlineExceeded" && now.duration_since(last) > deadline {
        let msg = format!("ReplicaSet \"{rs_name}\" has timed out progressing.");
        set_condition(
            &mut status,
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            &msg,
            true,
        );
    }
    dd["status"] = status;
    save(st, "apps", "deployments", dd);
}

// ---- ReplicaSet ----

fn replicaset(st: &mut State, rs: &Value) {
    let pods_all = st.store.list("", "pods", Some(ns(rs)));
    let pods: Vec<Value> = owned_by(&pods_all, rs).into_iter().cloned().collect();
    let want = int(&rs["spec"]["replicas"]);
    let have = pods.len() as i64;
    if have < want {
        let pod_name = format!("{}-{}", name(rs), random_suffix(5));
        let p = new_pod(&rs["spec"]["template"], rs, &pod_name, &[]);
        create(st, "", "pods", p);
        event(
            st,
            rs,
            None,
            "Normal",
            "SuccessfulCreate",
            &format!("Created pod: {pod_name}"),
            "replicaset-controller",
        );
    } else if have > want {
        let victim = pods
            .iter()
            .find(|p| !pod_ready(p))
            .or_else(|| pods.last())
            .cloned();
        if let Some(v) = victim {
            st.store.delete(&key("", "pods", &v), false);
            event(
                st,
                rs,
                None,
                "Normal",
                "SuccessfulDelete",
                &format!("Deleted pod: {}", name(&v)),
                "replicaset-controller",
            );
        }
    }
    let pods_all = st.store.list("", "pods", Some(ns(rs)));
    let pods: Vec<&Value> = owned_by(&pods_all, rs);
    let ready = pods.iter().filter(|p| pod_ready(p)).count() as i64;
    let mut r = rs.clone();
    let mut status = json!({"replicas": pods.len()});
    set_count(&mut status, "fullyLabeledReplicas", pods.len() as i64, true);
    set_count(&mut status, "readyReplicas", ready, true);
    set_count(&mut status, "availableReplicas", ready, true);
    status["observedGeneration"] = rs["metadata"]["generation"].clone();
    r["status"] = status;
    save(st, "apps", "replicasets", r);
}

// ---- ControllerRevisions (StatefulSet, DaemonSet) ----

/// The ControllerRevision for `owner`'s current template, created (or re-numbered) as needed.
fn revision_for(st: &mut State, owner: &Value, cr_name: &str, extra_label: (&str, &str)) -> String {
    let crs_all = st
        .store
        .list("apps", "controllerrevisions", Some(ns(owner)));
    let crs: Vec<Value> = owned_by(&crs_all, owner).into_iter().cloned().collect();
    let max = crs.iter().map(|c| int(&c["revision"])).max().unwrap_or(0);
    match crs.iter().find(|c| name(c) == cr_name) {
        Some(c) if int(&c["revision"]) < max => {
            let mut c = c.clone();
            c["revision"] = json!(max + 1);
            save(st, "apps", "controllerrevisions", c);
        }
        Some(_) => {}
        None => {
            let mut template = owner["spec"]["template"].clone();
            template["$patch"] = json!("replace");
            let mut labels = owner["spec"]["template"]["metadata"]["labels"].clone();
            if !labels.is_object() {
                labels = json!({});
            }
            labels[extra_label.0] = json!(extra_label.1);
            let cr = json!({
                "apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": {"name": cr_name, "namespace": ns(owner), "labels": labels, "ownerReferences": [controller_ref(owner)]},
                "data": {"spec": {"template": template}},
                "revision": max + 1,
            });
            create(st, "apps", "controllerrevisions", cr);
        }
    }
    cr_name.to_string()
}

// ---- StatefulSet ----

fn statefulset(st: &mut State, s: &Value) {
    if object_manual(st, "StatefulSet", s) {
        return;
    }
    let hash = template_hash(&s["spec"]["template"]);
    let update_rev = revision_for(
        st,
        s,
        &format!("{}-{hash}", name(s)),
        ("controller.kubernetes.io/hash", &hash),
    );
    let replicas = int(&s["spec"]["replicas"]);
    let pods_all = st.store.list("", "pods", Some(ns(s)));
    let pods: Vec<Value> = owned_by(&pods_all, s).into_iter().cloned().collect();
    let ordinal = |p: &Value| -> i64 {
        name(p)
            .rsplit('-')
            .next()
            .and_then(|o| o.parse().ok())
            .unwrap_or(-1)
    };
    let rev_of = |p: &Value| {
        p["metadata"]["labels"]["controller-revision-hash"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let mut acted = false;
    for i in 0..replicas {
        match pods.iter().find(|p| ordinal(p) == i) {
            None => {
                let pod_name = format!("{}-{i}", name(s));
                let mut p = new_pod(
                    &s["spec"]["template"],
                    s,
                    &pod_name,
                    &[
                        ("controller-revision-hash", update_rev.clone()),
                        ("statefulset.kubernetes.io/pod-name", pod_name.clone()),
                        ("apps.kubernetes.io/pod-index", i.to_string()),
                    ],
                );
                p["spec"]["hostname"] = json!(pod_name);
                if let Some(svc) = s["spec"]["serviceName"].as_str() {
                    p["spec"]["subdomain"] = json!(svc);
                }
                create(st, "", "pods", p);
                let msg = format!(
                    "create Pod {pod_name} in StatefulSet {} successful",
                    name(s)
                );
                event(
                    st,
                    s,
                    None,
                    "Normal",
                    "SuccessfulCreate",
                    &msg,
                    "statefulset-controller",
                );
                acted = true;
                break;
            }
            Some(p) if !pod_ready(p) => {
                acted = true; // OrderedReady: wait for this ordinal
                break;
            }
            Some(_) => {}
        }
    }
    if !acted {
        let mut extra: Vec<&Value> = pods.iter().filter(|p| ordinal(p) >= replicas).collect();
        extra.sort_by_key(|p| std::cmp::Reverse(ordinal(p)));
        let outdated = pods
            .iter()
            .filter(|p| ordinal(p) < replicas && rev_of(p) != update_rev)
            .max_by_key(|p| ordinal(p));
        let victim =
            extra
                .first()
                .copied()
                .or(if s["spec"]["updateStrategy"]["type"] == "OnDelete" {
                    None
                } else {
                    outdated
                });
        if let Some(v) = victim.cloned() {
            st.store.delete(&key("", "pods", &v), false);
            let msg = format!(
                "delete Pod {} in StatefulSet {} successful",
                name(&v),
                name(s)
            );
            event(
                st,
                s,
                None,
                "Normal",
                "SuccessfulDelete",
                &msg,
                "statefulset-controller",
            );
        }
    }
    let pods_all = st.store.list("", "pods", Some(ns(s)));
    let pods: Vec<&Value> = owned_by(&pods_all, s);
    let current_rev = s["status"]["currentRevision"]
        .as_str()
        .unwrap_or(&update_rev)
        .to_string();
    let count = pods.len() as i64;
    let ready = pods.iter().filter(|p| pod_ready(p)).count() as i64;
    let updated = pods.iter().filter(|p| rev_of(p) == update_rev).count() as i64;
    let mut current = pods.iter().filter(|p| rev_of(p) == current_rev).count() as i64;
    let mut cur_rev = current_rev;
    if updated == replicas && ready == replicas && count == replicas {
        cur_rev = update_rev.clone();
        current = updated;
    }
    let mut ss = s.clone();
    let mut status = json!({
        "observedGeneration": s["metadata"]["generation"], "replicas": count,
        "currentRevision": cur_rev, "updateRevision": update_rev, "collisionCount": 0,
    });
    set_count(&mut status, "readyReplicas", ready, true);
    set_count(&mut status, "availableReplicas", ready, false);
    set_count(&mut status, "currentReplicas", current, true);
    set_count(&mut status, "updatedReplicas", updated, true);
    ss["status"] = status;
    save(st, "apps", "statefulsets", ss);
}

// ---- DaemonSet (one node) ----

fn daemonset(st: &mut State, ds: &Value) {
    if object_manual(st, "DaemonSet", ds) {
        return;
    }
    let hash = template_hash(&ds["spec"]["template"]);
    revision_for(
        st,
        ds,
        &format!("{}-{hash}", name(ds)),
        ("controller-revision-hash", &hash),
    );
    let generation = ds["metadata"]["generation"].as_i64().unwrap_or(1);
    let pods_all = st.store.list("", "pods", Some(ns(ds)));
    let pods: Vec<Value> = owned_by(&pods_all, ds).into_iter().cloned().collect();
    let is_current =
        |p: &Value| p["metadata"]["labels"]["controller-revision-hash"] == hash.as_str();
    if let Some(old) = pods.iter().find(|p| !is_current(p)) {
        st.store.delete(&key("", "pods", old), false);
        let msg = format!("Deleted pod: {}", name(old));
        event(
            st,
            ds,
            None,
            "Normal",
            "SuccessfulDelete",
            &msg,
            "daemonset-controller",
        );
    } else if pods.is_empty() {
        let pod_name = format!("{}-{}", name(ds), random_suffix(5));
        let p = new_pod(
            &ds["spec"]["template"],
            ds,
            &pod_name,
            &[
                ("controller-revision-hash", hash.clone()),
                ("pod-template-generation", generation.to_string()),
            ],
        );
        create(st, "", "pods", p);
        event(
            st,
            ds,
            None,
            "Normal",
            "SuccessfulCreate",
            &format!("Created pod: {pod_name}"),
            "daemonset-controller",
        );
    }
    let pods_all = st.store.list("", "pods", Some(ns(ds)));
    let pods: Vec<&Value> = owned_by(&pods_all, ds);
    let ready = pods.iter().filter(|p| pod_ready(p)).count() as i64;
    let updated = pods.iter().filter(|p| is_current(p)).count() as i64;
    let scheduled = pods
        .iter()
        .filter(|p| p["spec"]["nodeName"].is_string())
        .count() as i64;
    let mut d = ds.clone();
    d["metadata"]["annotations"]["deprecated.daemonset.template.generation"] =
        json!(generation.to_string());
    let mut status = json!({
        "currentNumberScheduled": scheduled, "desiredNumberScheduled": 1, "numberMisscheduled": 0,
        "numberReady": ready, "observedGeneration": generation,
    });
    set_count(&mut status, "updatedNumberScheduled", updated, true);
    set_count(&mut status, "numberAvailable", ready, true);
    set_count(&mut status, "numberUnavailable", 1 - ready, true);
    d["status"] = status;
    save(st, "apps", "daemonsets", d);
}

// ---- Job ----

fn job(st: &mut State, j: &Value, now: Instant) {
    if object_manual(st, "Job", j) {
        return;
    }
    let finished = ["Complete", "Failed"]
        .iter()
        .any(|t| condition(j, t).is_some_and(|c| c["status"] == "True"));
    if finished || j["spec"]["suspend"] == true {
        return;
    }
    let pods_all = st.store.list("", "pods", Some(ns(j)));
    let pods: Vec<Value> = owned_by(&pods_all, j).into_iter().cloned().collect();
    let phase = |p: &Value| {
        p["status"]["phase"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count() as i64;
    let failed = pods.iter().filter(|p| phase(p) == "Failed").count() as i64;
    let active: Vec<&Value> = pods.iter().filter(|p| !pod_terminal(p)).collect();
    let completions = j["spec"]["completions"].as_i64().unwrap_or(1);
    let backoff_limit = j["spec"]["backoffLimit"].as_i64().unwrap_or(6);
    let mut jj = j.clone();
    let mut status = if j["status"].is_object() {
        j["status"].clone()
    } else {
        json!({})
    };
    if status["startTime"].is_null() {
        status["startTime"] = json!(now_rfc3339());
    }
    if succeeded >= completions {
        set_condition(&mut status, "Complete", "True", "", "", false);
        for c in status["conditions"].as_array_mut().into_iter().flatten() {
            if c["type"] == "Complete" {
                c.as_object_mut().map(|m| {
                    m.remove("reason");
                    m.remove("message")
                });
            }
        }
        status["completionTime"] = json!(now_rfc3339());
        event(
            st,
            j,
            None,
            "Normal",
            "Completed",
            "Job completed",
            "job-controller",
        );
    } else if failed > backoff_limit {
        set_condition(
            &mut status,
            "Failed",
            "True",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
            false,
        );
        event(
            st,
            j,
            None,
            "Warning",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
            "job-controller",
        );
        for p in &active {
            st.store.delete(&key("", "pods", p), false);
        }
    } else if (active.len() as i64)
        < j["spec"]["parallelism"]
            .as_i64()
            .unwrap_or(1)
            .min(completions - succeeded)
    {
        let wait_until = st.ctl.job_backoff.get(uid(j)).copied();
        if wait_until.is_none_or(|w| now >= w) {
            let pod_name = format!("{}-{}", name(j), random_suffix(5));
            let p = new_pod(&j["spec"]["template"], j, &pod_name, &[]);
            create(st, "", "pods", p);
            event(
                st,
                j,
                None,
                "Normal",
                "SuccessfulCreate",
                &format!("Created pod: {pod_name}"),
                "job-controller",
            );
            // The next replacement waits the pod-failure back-off (10 s, doubling).
            let delay = scaled(st, 10.0 * 2f64.powi(failed as i32));
            st.ctl.job_backoff.insert(uid(j).to_string(), now + delay);
        }
    }
    let pods_all = st.store.list("", "pods", Some(ns(j)));
    let active_now = owned_by(&pods_all, j)
        .into_iter()
        .filter(|p| !pod_terminal(p))
        .count() as i64;
    let ready = owned_by(&pods_all, j)
        .into_iter()
        .filter(|p| pod_ready(p))
        .count() as i64;
    set_count(&mut status, "active", active_now, true);
    set_count(&mut status, "succeeded", succeeded, true);
    set_count(&mut status, "failed", failed, true);
    status["ready"] = json!(ready);
    status["uncountedTerminatedPods"] = json!({});
    jj["status"] = status;
    save(st, "batch", "jobs", jj);
}

// ---- scheduler ----

fn schedule(st: &mut State, p: &Value) {
    if pod_terminal(p) || behavior_of(st, p) == Behavior::Manual {
        return;
    }
    let mut pod = p.clone();
    if behavior_of(st, p) == Behavior::Unschedulable {
        if condition(p, "PodScheduled").is_some() {
            return;
        }
        let msg = "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.";
        set_condition(
            &mut pod["status"],
            "PodScheduled",
            "False",
            "Unschedulable",
            msg,
            false,
        );
        null_probe_time(&mut pod);
        save(st, "", "pods", pod);
        scheduler_event(st, p, "Warning", "FailedScheduling", msg);
        return;
    }
    pod["spec"]["nodeName"] = json!(NODE);
    set_condition(&mut pod["status"], "PodScheduled", "True", "", "", false);
    null_probe_time(&mut pod);
    let saved = save(st, "", "pods", pod);
    let msg = format!("Successfully assigned {}/{} to {NODE}", ns(p), name(p));
    scheduler_event(st, &saved, "Normal", "Scheduled", &msg);
}

/// Pod conditions carry `lastProbeTime: null` and no empty reason/message.
fn null_probe_time(pod: &mut Value) {
    for c in pod["status"]["conditions"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        c["lastProbeTime"] = Value::Null;
        for f in ["reason", "message"] {
            if c[f] == "" {
                c.as_object_mut().map(|m| m.remove(f));
            }
        }
    }
}

// ---- kubelet ----

fn pod_conditions(pod: &mut Value, ready: bool, reason: &str) {
    let s = &mut pod["status"];
    set_condition(s, "Initialized", "True", "", "", false);
    let (st_str, r) = if ready {
        ("True", "")
    } else {
        ("False", reason)
    };
    set_condition(s, "Ready", st_str, r, "", false);
    set_condition(s, "ContainersReady", st_str, r, "", false);
    null_probe_time(pod);
    // Order like the kubelet: Initialized, Ready, ContainersReady, PodScheduled.
    if let Some(conds) = pod["status"]["conditions"].as_array_mut() {
        let rank = |c: &Value| match c["type"].as_str() {
            Some("Initialized") => 0,
            Some("Ready") => 1,
            Some("ContainersReady") => 2,
            _ => 3,
        };
        conds.sort_by_key(rank);
    }
}

fn container_statuses(pod: &Value, f: impl Fn(&Value, &Value) -> Value) -> Value {
    let old = pod["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let list: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let prev = old.iter().find(|o| o["name"] == c["name"]).cloned().unwrap_or(json!({
                "name": c["name"], "image": c["image"], "imageID": "", "lastState": {}, "ready": false, "restartCount": 0, "started": false
            }));
            f(c, &prev)
        })
        .collect();
    json!(list)
}

fn image_id(image: &Value) -> String {
    let i = image.as_str().unwrap_or_default();
    let repo = i
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .map(|(r, _)| r)
        .unwrap_or(i);
    format!(
        "{repo}@sha256:{}{}{}{}",
        random_hex(16),
        random_hex(16),
        random_hex(16),
        random_hex(16)
    )
}

fn running(c: &Value, prev: &Value, ready: bool) -> Value {
    let mut s = prev.clone();
    let cid = format!("fake://{}{}", random_hex(16), random_hex(16));
    s["containerID"] = json!(cid);
    s["imageID"] = json!(image_id(&c["image"]));
    s["started"] = json!(true);
    s["ready"] = json!(ready);
    s["state"] = json!({"running": {"startedAt": now_rfc3339()}});
    s
}

fn terminated(prev: &Value, code: i64) -> Value {
    let mut s = prev.clone();
    let started = prev["state"]["running"]["startedAt"].clone();
    s["ready"] = json!(false);
    s["started"] = json!(false);
    s["state"] = json!({"terminated": {
        "containerID": prev["containerID"], "exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
        "startedAt": started, "finishedAt": now_rfc3339(),
    }});
    s
}

fn kubelet(st: &mut State, p: &Value, now: Instant) {
    if pod_terminal(p) {
        return;
    }
    let behavior = behavior_of(st, p);
    if behavior == Behavior::Manual {
        return;
    }
    let step = st.step;
    let sim = st.ctl.pods.entry(uid(p).to_string()).or_insert(PodSim {
        stage: 0,
        next: now,
    });
    if now < sim.next {
        return;
    }
    let stage = sim.stage;
    sim.stage += 1;
    sim.next = now + step;
    let run_once = p["spec"]["restartPolicy"] != "Always";
    let containers: Vec<Value> = p["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let fp = |c: &Value| {
        format!(
            "spec.containers{{{}}}",
            c["name"].as_str().unwrap_or_default()
        )
    };
    let mut pod = p.clone();
    if stage == 0 {
        pod["status"]["hostIP"] = json!("10.0.0.10");
        pod["status"]["podIP"] = json!(format!("10.88.0.{}", 2 + (st.store.rv % 250)));
        pod["status"]["podIPs"] = json!([{"ip": pod["status"]["podIP"]}]);
        pod["status"]["startTime"] = json!(now_rfc3339());
        pod_conditions(&mut pod, false, "ContainersNotReady");
        pod["status"]["containerStatuses"] = container_statuses(p, |_, prev| {
            let mut s = prev.clone();
            s["state"] = json!({"waiting": {"reason": "ContainerCreating"}});
            s
        });
        save(st, "", "pods", pod);
        for c in &containers {
            let msg = format!("Pulling image {}", c["image"]);
            event(st, p, Some(&fp(c)), "Normal", "Pulling", &msg, "kubelet");
        }
        return;
    }
    let image_err = |image: &Value| {
        let i = image.as_str().unwrap_or_default();
        format!("rpc error: code = NotFound desc = failed to pull and unpack image \"{i}\": failed to resolve reference \"{i}\": {i}: not found")
    };
    match behavior {
        Behavior::ImagePullError => {
            // Odd stages: ErrImagePull; even stages: ImagePullBackOff (held for the back-off).
            let pulling = stage % 2 == 1;
            pod["status"]["containerStatuses"] = container_statuses(p, |c, prev| {
                let mut s = prev.clone();
                s["state"] = if pulling {
                    json!({"waiting": {"reason": "ErrImagePull", "message": image_err(&c["image"])}})
                } else {
                    json!({"waiting": {"reason": "ImagePullBackOff", "message": format!("Back-off pulling image {}", c["image"])}})
                };
                s
            });
            save(st, "", "pods", pod);
            for c in &containers {
                if pulling {
                    if stage > 1 {
                        event(
                            st,
                            p,
                            Some(&fp(c)),
                            "Normal",
                            "Pulling",
                            &format!("Pulling image {}", c["image"]),
                            "kubelet",
                        );
                    }
                    let msg = format!(
                        "Failed to pull image {}: {}",
                        c["image"],
                        image_err(&c["image"])
                    );
                    event(st, p, Some(&fp(c)), "Warning", "Failed", &msg, "kubelet");
                    event(
                        st,
                        p,
                        Some(&fp(c)),
                        "Warning",
                        "Failed",
                        "Error: ErrImagePull",
                        "kubelet",
                    );
                } else {
                    let msg = format!("Back-off pulling image {}", c["image"]);
                    event(st, p, Some(&fp(c)), "Normal", "BackOff", &msg, "kubelet");
                    event(
                        st,
                        p,
                        Some(&fp(c)),
                        "Warning",
                        "Failed",
                        "Error: ImagePullBackOff",
                        "kubelet",
                    );
                }
            }
            if !pulling {
                let backoff = scaled(st, 10.0 * 2f64.powi((stage / 2).min(5) as i32));
                if let Some(sim) = st.ctl.pods.get_mut(uid(p)) {
                    sim.next = now + backoff;
                }
            }
        }
        Behavior::Healthy | Behavior::NeverReady if !run_once => {
            if stage == 1 {
                let has_probe = |c: &Value| c["readinessProbe"].is_object();
                let ready_now = behavior == Behavior::Healthy && !containers.iter().any(has_probe);
                pod["status"]["phase"] = json!("Running");
                pod["status"]["containerStatuses"] =
                    container_statuses(p, |c, prev| running(c, prev, ready_now));
                pod_conditions(&mut pod, ready_now, "ContainersNotReady");
                save(st, "", "pods", pod);
                for c in &containers {
                    event(
                        st,
                        p,
                        Some(&fp(c)),
                        "Normal",
                        "Pulled",
                        &format!("Successfully pulled image {}", c["image"]),
                        "kubelet",
                    );
                    event(
                        st,
                        p,
                        Some(&fp(c)),
                        "Normal",
                        "Created",
                        &format!(
                            "Created container {}",
                            c["name"].as_str().unwrap_or_default()
                        ),
                        "kubelet",
                    );
                    event(
                        st,
                        p,
                        Some(&fp(c)),
                        "Normal",
                        "Started",
                        &format!(
                            "Started container {}",
                            c["name"].as_str().unwrap_or_default()
                        ),
                        "kubelet",
                    );
                }
            } else if behavior == Behavior::Healthy {
                pod["status"]["containerStatuses"] = container_statuses(p, |_, prev| {
                    let mut s = prev.clone();
                    s["ready"] = json!(true);
                    s
                });
                pod_conditions(&mut pod, true, "");
                save(st, "", "pods", pod);
            } else {
                for c in containers
                    .iter()
                    .filter(|c| c["readinessProbe"].is_object())
                {
                    let msg = "Readiness probe failed: HTTP probe failed with statuscode: 503";
                    event(st, p, Some(&fp(c)), "Warning", "Unhealthy", msg, "kubelet");
                }
                let period = scaled(st, 10.0);
                if let Some(sim) = st.ctl.pods.get_mut(uid(p)) {
                    sim.next = now + period;
                }
            }
        }
        _ if run_once => {
            // Job-style pods: run, then exit 0 (Healthy) or 1 (anything else).
            let code = if behavior == Behavior::Healthy { 0 } else { 1 };
            if stage == 1 {
                pod["status"]["phase"] = json!("Running");
                pod["status"]["containerStatuses"] =
                    container_statuses(p, |c, prev| running(c, prev, true));
                pod_conditions(&mut pod, true, "");
                save(st, "", "pods", pod);
                for c in &containers {
                    event(
                        st,
                        p,
                        Some(&fp(c)),
                        "Normal",
                        "Pulled",
                        &format!("Successfully pulled image {}", c["image"]),
                        "kubelet",
                    );
                    event(
                        st,
                        p,
                        Some(&fp(c)),
                        "Normal",
                        "Started",
                        &format!(
                            "Started container {}",
                            c["name"].as_str().unwrap_or_default()
                        ),
                        "kubelet",
                    );
                }
            } else {
                pod["status"]["phase"] = json!(if code == 0 { "Succeeded" } else { "Failed" });
                pod["status"]["containerStatuses"] =
                    container_statuses(p, |_, prev| terminated(prev, code));
                pod_conditions(&mut pod, false, "PodCompleted");
                save(st, "", "pods", pod);
            }
        }
        _ => {
            // CrashLoop (and JobFails on restartPolicy Always): start, exit 1, back off, repeat.
            let cycle = stage % 3;
            let restarts = int(&p["status"]["containerStatuses"][0]["restartCount"]);
            pod["status"]["phase"] = json!("Running");
            match cycle {
                1 => {
                    pod["status"]["containerStatuses"] =
                        container_statuses(p, |c, prev| running(c, prev, false));
                    pod_conditions(&mut pod, false, "ContainersNotReady");
                    save(st, "", "pods", pod);
                    for c in &containers {
                        event(
                            st,
                            p,
                            Some(&fp(c)),
                            "Normal",
                            "Pulled",
                            &format!("Container image {} already present on machine", c["image"]),
                            "kubelet",
                        );
                        event(
                            st,
                            p,
                            Some(&fp(c)),
                            "Normal",
                            "Started",
                            &format!(
                                "Started container {}",
                                c["name"].as_str().unwrap_or_default()
                            ),
                            "kubelet",
                        );
                    }
                }
                2 => {
                    pod["status"]["containerStatuses"] =
                        container_statuses(p, |_, prev| terminated(prev, 1));
                    save(st, "", "pods", pod);
                }
                _ => {
                    let pod_name = name(p).to_string();
                    let backoff_secs = (10.0 * 2f64.powi(restarts.min(5) as i32)).min(300.0);
                    pod["status"]["containerStatuses"] = container_statuses(p, |c, prev| {
                        let mut s = prev.clone();
                        s["lastState"] = prev["state"].clone();
                        s["restartCount"] = json!(int(&prev["restartCount"]) + 1);
                        let msg = format!(
                            "back-off {}s restarting failed container={} pod={pod_name}_{}({})",
                            backoff_secs as i64,
                            c["name"].as_str().unwrap_or_default(),
                            ns(p),
                            uid(p)
                        );
                        s["state"] =
                            json!({"waiting": {"reason": "CrashLoopBackOff", "message": msg}});
                        s
                    });
                    save(st, "", "pods", pod);
                    for c in &containers {
                        event(
                            st,
                            p,
                            Some(&fp(c)),
                            "Warning",
                            "BackOff",
                            "Back-off restarting failed container",
                            "kubelet",
                        );
                    }
                    let backoff = scaled(st, backoff_secs);
                    if let Some(sim) = st.ctl.pods.get_mut(uid(p)) {
                        sim.next = now + backoff;
                    }
                }
            }
        }
    }
}

/// Logs the kubelet would return when the test set none: a crash ends in an error.
pub fn default_logs(status: &Value, previous: bool) -> String {
    let crashed = if previous {
        status["lastState"]["terminated"]["exitCode"]
            .as_i64()
            .unwrap_or(0)
            != 0
    } else {
        status["state"]["terminated"]["exitCode"]
            .as_i64()
            .unwrap_or(0)
            != 0
            || status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    };
    if crashed {
        "starting server\nloading configuration from /etc/app/config.yaml\nconnecting to database db.internal:5432\nError: dial tcp 10.96.0.20:5432: connect: connection refused\n".into()
    } else {
        "starting server\nloading configuration from /etc/app/config.yaml\nlistening on :8080\n"
            .into()
    }
}
