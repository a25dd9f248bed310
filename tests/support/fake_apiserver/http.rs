//! The HTTP layer: routing, authorization, faults, and the handlers for each verb including WATCH.

use super::discovery::{self, ResourceInfo};
use super::faults::Recorded;
use super::meta::{
    bad_request, conflict_modified, details, not_found, now_micro, now_rfc3339, qualified,
    random_suffix, status_failure,
};
use super::query::{parse_query, Selector};
use super::store::{Change, ObjKey};
use super::validate::{invalid_status, validate};
use super::{defaults, ssa, Shared, State};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, Infallible>;

/// Returned by the service to make hyper drop the connection (`Fault::Reset`).
#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by fault injection")
    }
}

impl std::error::Error for Reset {}

pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(shared.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn full(code: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", content_type)
        .header("cache-control", "no-cache, private")
        .body(Full::new(body.into()).boxed())
        .expect("response")
}

fn json_resp(code: u16, v: &Value) -> Response<Body> {
    full(code, "application/json", v.to_string())
}

fn page_not_found() -> Response<Body> {
    full(404, "text/plain; charset=utf-8", "404 page not found\n")
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Reset> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let rec = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        content_type: parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let user_agent = parts
        .headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    let default_manager = user_agent
        .split('/')
        .next()
        .unwrap_or("unknown")
        .to_string();
    let fault = {
        let mut st = shared.lock();
        st.requests.push(rec.clone());
        let hit = st
            .faults
            .iter_mut()
            .find(|f| f.remaining > 0 && f.matcher.matches(&rec));
        hit.map(|f| {
            f.remaining -= 1;
            f.fault.clone()
        })
    };
    if let Some(fault) = fault {
        let Some((code, body, retry)) = fault.response() else {
            return Err(Reset);
        };
        let mut resp = json_resp(code, &body);
        if let Some(s) = retry {
            resp.headers_mut().insert("retry-after", s.into());
        }
        return Ok(resp);
    }
    let q = parse_query(&rec.query);
    let segs: Vec<&str> = rec
        .path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let resp = route(
        &shared,
        &parts.method,
        &segs,
        &q,
        &rec,
        &body,
        &default_manager,
    );
    Ok(resp)
}

/// A request for a resource, parsed from the path.
struct Target {
    info: ResourceInfo,
    api_version: String,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn route(
    shared: &Arc<Shared>,
    method: &Method,
    segs: &[&str],
    q: &HashMap<String, String>,
    rec: &Recorded,
    body: &Bytes,
    default_manager: &str,
) -> Response<Body> {
    let (group, version, rest): (&str, &str, &[&str]) = match segs {
        ["version"] => {
            return json_resp(
                200,
                &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"}),
            )
        }
        ["healthz"] | ["readyz"] | ["livez"] => return full(200, "text/plain", "ok"),
        ["api"] => return json_resp(200, &discovery::core_versions(&shared.addr.to_string())),
        ["apis"] => return json_resp(200, &discovery::group_list(&shared.lock().store.resources)),
        ["apis", g] => {
            return match discovery::group(&shared.lock().store.resources, g) {
                Some(v) => json_resp(200, &v),
                None => page_not_found(),
            }
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return page_not_found(),
    };
    let st = shared.lock();
    if rest.is_empty() {
        return match discovery::resource_list(&st.store.resources, group, version) {
            Some(v) => json_resp(200, &v),
            None => page_not_found(),
        };
    }
    let find = |plural: &str| st.store.resource(group, version, plural);
    let target = match rest {
        ["namespaces", ns, plural, tail @ ..] if find(plural).is_some_and(|r| r.namespaced) => {
            Target {
                api_version: find(plural).expect("found").api_version(),
                info: find(plural).expect("found"),
                namespace: Some(ns.to_string()),
                name: tail.first().map(|s| s.to_string()),
                sub: tail.get(1).map(|s| s.to_string()),
            }
        }
        [plural, tail @ ..] if find(plural).is_some() => Target {
            api_version: find(plural).expect("found").api_version(),
            info: find(plural).expect("found"),
            namespace: None,
            name: tail.first().map(|s| s.to_string()),
            sub: tail.get(1).map(|s| s.to_string()),
        },
        _ => return page_not_found(),
    };
    if let Some(sub) = &target.sub {
        if !target.info.subresources.contains(sub) {
            return page_not_found();
        }
    }
    let watching = method == Method::GET
        && target.name.is_none()
        && q.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (method.as_str(), target.name.is_some()) {
        ("GET", false) if watching => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => {
            return json_resp(
                405,
                &status_failure(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                    None,
                ),
            )
        }
    };
    if let Some(resp) = forbidden(&st, verb, &target) {
        return resp;
    }
    drop(st);
    if watching {
        return watch(shared, &target, q);
    }
    let mut st = shared.lock();
    let st = &mut *st;
    let (code, v) = match (verb, target.sub.as_deref()) {
        ("create", _) if target.info.plural == "selfsubjectaccessreviews" => {
            access_review(st, body)
        }
        ("list", _) => list(st, &target, q),
        ("get", Some("log")) => return pod_log(st, &target, q),
        ("get", _) => get(st, &target),
        ("create", _) => create(st, &target, q, body, default_manager),
        ("update", _) => replace(st, &target, q, body, default_manager),
        ("patch", _) => patch(st, &target, q, rec, body, default_manager),
        ("delete", _) => delete(st, &target, q, body),
        ("deletecollection", _) => delete_collection(st, &target, q),
        _ => (
            405,
            status_failure(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                None,
            ),
        ),
    };
    json_resp(code, &v)
}

fn is_denied(st: &State, verb: &str, group: &str, resource: &str, namespace: Option<&str>) -> bool {
    st.denies.iter().any(|d| {
        (d.verb == verb || d.verb == "*")
            && d.group == group
            && (d.resource == resource || d.resource == "*")
            && (d.namespace.is_none() || d.namespace.as_deref() == namespace)
    })
}

/// 403 with the real authorizer message, if the deny table says so.
fn forbidden(st: &State, verb: &str, t: &Target) -> Option<Response<Body>> {
    let resource = match &t.sub {
        Some(s) => format!("{}/{s}", t.info.plural),
        None => t.info.plural.clone(),
    };
    if !is_denied(st, verb, &t.info.group, &resource, t.namespace.as_deref()) {
        return None;
    }
    let what = match &t.name {
        Some(n) => format!("{} \"{n}\"", qualified(&t.info.group, &t.info.plural)),
        None => qualified(&t.info.group, &t.info.plural),
    };
    let scope = match &t.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".into(),
    };
    let message = format!(
        "{what} is forbidden: User \"{}\" cannot {verb} resource \"{resource}\" in API group \"{}\" {scope}",
        st.user, t.info.group
    );
    let d = details(
        &t.info.group,
        &t.info.plural,
        t.name.as_deref().unwrap_or_default(),
    );
    let mut d = d;
    if t.name.is_none() {
        d.as_object_mut().map(|m| m.remove("name"));
    }
    Some(json_resp(
        403,
        &status_failure(403, "Forbidden", &message, Some(d)),
    ))
}

fn access_review(st: &State, body: &Bytes) -> (u16, Value) {
    let mut review: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return (400, bad_request(&e.to_string())),
    };
    let ra = &review["spec"]["resourceAttributes"];
    let s = |k: &str| ra[k].as_str().unwrap_or_default().to_string();
    let resource = match ra["subresource"].as_str() {
        Some(sub) if !sub.is_empty() => format!("{}/{sub}", s("resource")),
        _ => s("resource"),
    };
    let ns = ra["namespace"].as_str().filter(|n| !n.is_empty());
    let allowed = !is_denied(st, &s("verb"), &s("group"), &resource, ns);
    review["metadata"] = json!({"creationTimestamp": null});
    review["status"] = if allowed {
        json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding \"gantry\" of ClusterRole \"gantry\" to ServiceAccount \"gantry/ci\""})
    } else {
        json!({"allowed": false})
    };
    (201, review)
}

/// An object as a response or watch event carries it: with apiVersion and kind.
fn typed(info: &ResourceInfo, mut v: Value) -> Value {
    v["apiVersion"] = json!(info.api_version());
    v["kind"] = json!(info.kind);
    v
}

fn key_of(t: &Target) -> ObjKey {
    ObjKey::new(
        &t.info.group,
        &t.info.plural,
        t.namespace.as_deref(),
        t.name.as_deref().unwrap_or_default(),
    )
}

fn get(st: &State, t: &Target) -> (u16, Value) {
    match st.store.get(&key_of(t)) {
        Some(v) => (200, v.clone()),
        None => (
            404,
            not_found(
                &t.info.group,
                &t.info.plural,
                t.name.as_deref().unwrap_or_default(),
            ),
        ),
    }
}

fn too_old_list() -> Value {
    status_failure(
        410,
        "Expired",
        "The resourceVersion for the provided list is too old.",
        None,
    )
}

fn list(st: &State, t: &Target, q: &HashMap<String, String>) -> (u16, Value) {
    let rv: u64 = q
        .get("resourceVersion")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let strict = matches!(
        q.get("resourceVersionMatch").map(String::as_str),
        Some("Exact" | "NotOlderThan")
    );
    if rv > 0 && strict && rv < st.store.compacted {
        return (410, too_old_list());
    }
    let labels = Selector::labels(
        q.get("labelSelector")
            .map(String::as_str)
            .unwrap_or_default(),
    );
    let fields = Selector::fields(
        q.get("fieldSelector")
            .map(String::as_str)
            .unwrap_or_default(),
    );
    let items: Vec<Value> = st
        .store
        .list(&t.info.group, &t.info.plural, t.namespace.as_deref())
        .into_iter()
        .filter(|o| labels.matches(o) && fields.matches(o))
        .map(|mut o| {
            // Built-in lists carry apiVersion/kind on the list only, like the real server.
            if !t.info.custom {
                if let Some(m) = o.as_object_mut() {
                    m.remove("apiVersion");
                    m.remove("kind");
                }
            }
            o
        })
        .collect();
    (
        200,
        json!({
            "apiVersion": t.info.api_version(),
            "kind": format!("{}List", t.info.kind),
            "metadata": {"resourceVersion": st.store.rv.to_string()},
            "items": items,
        }),
    )
}

fn parse_body(body: &Bytes, yaml: bool) -> Result<Value, (u16, Value)> {
    let parsed = if yaml {
        serde_yaml::from_slice::<Value>(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())
    };
    match parsed {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err((
            400,
            bad_request("the body of the request was in an unknown format"),
        )),
        Err(e) => Err((
            400,
            bad_request(&format!("error decoding request body: {e}")),
        )),
    }
}

/// Checks shared by create/update/apply: body identity against the URL, namespace existence.
fn check_identity(
    st: &State,
    t: &Target,
    obj: &Value,
    url_name: Option<&str>,
) -> Result<(), (u16, Value)> {
    if let Some(av) = obj["apiVersion"].as_str() {
        if av != t.info.api_version() || obj["kind"].as_str().is_some_and(|k| k != t.info.kind) {
            return Err((
                400,
                bad_request(&format!(
                    "the API version in the data ({av}) does not match the expected API version ({})",
                    t.info.api_version()
                )),
            ));
        }
    }
    if let (Some(url), Some(body)) = (url_name, obj["metadata"]["name"].as_str()) {
        if url != body {
            return Err((
                400,
                bad_request(&format!(
                    "the name of the object ({body}) does not match the name on the URL ({url})"
                )),
            ));
        }
    }
    if let (Some(ns), Some(body_ns)) = (&t.namespace, obj["metadata"]["namespace"].as_str()) {
        if ns != body_ns {
            return Err((
                400,
                bad_request("the namespace of the provided object does not match the namespace sent on the request"),
            ));
        }
    }
    if let Some(ns) = &t.namespace {
        if !st.store.namespace_exists(ns) {
            return Err((404, not_found("", "namespaces", ns)));
        }
    }
    Ok(())
}

fn dry_run(q: &HashMap<String, String>) -> bool {
    q.get("dryRun").is_some_and(|d| d == "All")
}

/// Defaults, validation and kind-specific hooks, then store. Returns (code, object).
fn commit(
    st: &mut State,
    t: &Target,
    key: ObjKey,
    mut obj: Value,
    old: Option<&Value>,
    dry: bool,
) -> (u16, Value) {
    obj = typed(&t.info, obj);
    if old.is_none() {
        obj["metadata"]["uid"] = json!(super::meta::new_uid());
        if t.info.kind == "Job" {
            defaults::job_on_create(&mut obj);
        }
    }
    defaults::apply_defaults(&t.info.kind, &mut obj);
    if t.info.kind == "Namespace" && old.is_none() {
        obj["status"] = json!({"phase": "Active"});
    }
    let causes = validate(&t.info.kind, &obj, old);
    if !causes.is_empty() {
        return (
            422,
            invalid_status(&t.info.kind, &t.info.group, &key.name, &causes),
        );
    }
    if dry {
        return match old {
            Some(o) => {
                obj["metadata"]["resourceVersion"] = o["metadata"]["resourceVersion"].clone();
                (200, obj)
            }
            None => {
                obj["metadata"]["creationTimestamp"] = json!(now_rfc3339());
                (201, obj)
            }
        };
    }
    if t.info.kind == "CustomResourceDefinition" {
        register_crd(st, &obj);
    }
    match old {
        Some(_) => (200, st.store.update(&key, obj)),
        None => (201, st.store.create(key, obj)),
    }
}

/// Serve a CRD's resources; the controllers set `Established` after the configured delay.
pub fn register_crd(st: &mut State, crd: &Value) {
    for r in discovery::crd_resources(crd) {
        st.store
            .resources
            .retain(|x| !(x.group == r.group && x.version == r.version && x.plural == r.plural));
        st.store.resources.push(r);
    }
}

fn create(
    st: &mut State,
    t: &Target,
    q: &HashMap<String, String>,
    body: &Bytes,
    default_manager: &str,
) -> (u16, Value) {
    let mut obj = match parse_body(body, false) {
        Ok(v) => v,
        Err(e) => return e,
    };
    if let Err(e) = check_identity(st, t, &obj, None) {
        return e;
    }
    let name = match obj["metadata"]["name"].as_str().filter(|s| !s.is_empty()) {
        Some(n) => n.to_string(),
        None => match obj["metadata"]["generateName"].as_str() {
            Some(g) => format!("{g}{}", random_suffix(5)),
            None => {
                let causes = vec![super::validate::Cause {
                    reason: "FieldValueRequired",
                    field: "metadata.name".into(),
                    message: "Required value: name or generateName is required".into(),
                }];
                return (
                    422,
                    invalid_status(&t.info.kind, &t.info.group, "", &causes),
                );
            }
        },
    };
    obj["metadata"]["name"] = json!(name);
    let key = ObjKey::new(&t.info.group, &t.info.plural, t.namespace.as_deref(), &name);
    if st.store.get(&key).is_some() {
        let msg = format!(
            "{} \"{name}\" already exists",
            qualified(&t.info.group, &t.info.plural)
        );
        return (
            409,
            status_failure(
                409,
                "AlreadyExists",
                &msg,
                Some(details(&t.info.group, &t.info.plural, &name)),
            ),
        );
    }
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    let manager = q
        .get("fieldManager")
        .cloned()
        .unwrap_or_else(|| default_manager.to_string());
    let now = now_rfc3339();
    ssa::record_update(None, &mut obj, None, &writer(t, &manager, &now));
    commit(st, t, key, obj, None, dry_run(q))
}

fn writer<'a>(t: &'a Target, manager: &'a str, now: &'a str) -> ssa::Writer<'a> {
    ssa::Writer {
        manager,
        api_version: t.api_version.as_str(),
        kind: &t.info.kind,
        skip_status: t.info.has_status(),
        now,
    }
}

fn stale(body_rv: Option<&str>, live: &Value) -> bool {
    body_rv.is_some_and(|rv| {
        !rv.is_empty() && Some(rv) != live["metadata"]["resourceVersion"].as_str()
    })
}

/// Keep the main resource and status apart, as the real status subresource strategy does.
fn split_status(t: &Target, live: &Value, mut new: Value) -> Value {
    if t.sub.as_deref() == Some("status") {
        let mut out = live.clone();
        out["status"] = new.get("status").cloned().unwrap_or(Value::Null);
        if out["status"].is_null() {
            out.as_object_mut().map(|m| m.remove("status"));
        }
        out
    } else {
        if t.info.has_status() {
            match live.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    new.as_object_mut().map(|m| m.remove("status"));
                }
            }
        }
        new
    }
}

fn replace(
    st: &mut State,
    t: &Target,
    q: &HashMap<String, String>,
    body: &Bytes,
    default_manager: &str,
) -> (u16, Value) {
    let obj = match parse_body(body, false) {
        Ok(v) => v,
        Err(e) => return e,
    };
    if let Err(e) = check_identity(st, t, &obj, t.name.as_deref()) {
        return e;
    }
    let key = key_of(t);
    let Some(live) = st.store.get(&key).cloned() else {
        return (404, not_found(&t.info.group, &t.info.plural, &key.name));
    };
    if stale(obj["metadata"]["resourceVersion"].as_str(), &live) {
        return (
            409,
            conflict_modified(&t.info.group, &t.info.plural, &key.name),
        );
    }
    let mut new = split_status(t, &live, obj);
    new["metadata"]["managedFields"] = live["metadata"]["managedFields"].clone();
    let manager = q
        .get("fieldManager")
        .cloned()
        .unwrap_or_else(|| default_manager.to_string());
    let now = now_rfc3339();
    ssa::record_update(
        Some(&live),
        &mut new,
        t.sub.as_deref(),
        &writer(t, &manager, &now),
    );
    commit(st, t, key, new, Some(&live), dry_run(q))
}

fn patch(
    st: &mut State,
    t: &Target,
    q: &HashMap<String, String>,
    rec: &Recorded,
    body: &Bytes,
    default_manager: &str,
) -> (u16, Value) {
    let ct = rec.content_type.as_deref().unwrap_or_default();
    let ct = ct.split(';').next().unwrap_or_default().trim();
    if ct == "application/apply-patch+yaml" {
        return apply(st, t, q, body);
    }
    let key = key_of(t);
    let Some(live) = st.store.get(&key).cloned() else {
        return (404, not_found(&t.info.group, &t.info.plural, &key.name));
    };
    let patched = match ct {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => match parse_body(body, false) {
            Ok(p) => {
                let mut v = live.clone();
                merge_patch(&mut v, &p);
                v
            }
            Err(e) => return e,
        },
        "application/json-patch+json" => match serde_json::from_slice::<Value>(body) {
            Ok(ops) => match json_patch(&live, &ops) {
                Ok(v) => v,
                Err(msg) => return (422, status_failure(422, "Invalid", &msg, None)),
            },
            Err(e) => return (400, bad_request(&e.to_string())),
        },
        other => {
            return (
                415,
                status_failure(415, "UnsupportedMediaType", &format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other})"), None),
            )
        }
    };
    if let Err(e) = check_identity(st, t, &patched, t.name.as_deref()) {
        return e;
    }
    if stale(patched["metadata"]["resourceVersion"].as_str(), &live) {
        return (
            409,
            conflict_modified(&t.info.group, &t.info.plural, &key.name),
        );
    }
    let mut new = split_status(t, &live, patched);
    let manager = q
        .get("fieldManager")
        .cloned()
        .unwrap_or_else(|| default_manager.to_string());
    let now = now_rfc3339();
    ssa::record_update(
        Some(&live),
        &mut new,
        t.sub.as_deref(),
        &writer(t, &manager, &now),
    );
    commit(st, t, key, new, Some(&live), dry_run(q))
}

fn apply(st: &mut State, t: &Target, q: &HashMap<String, String>, body: &Bytes) -> (u16, Value) {
    let Some(manager) = q.get("fieldManager").filter(|m| !m.is_empty()).cloned() else {
        let causes = vec![super::validate::Cause {
            reason: "FieldValueRequired",
            field: "fieldManager".into(),
            message: "Required value: is required for apply patch".into(),
        }];
        return (
            422,
            invalid_status("PatchOptions", "meta.k8s.io", "", &causes),
        );
    };
    let config = match parse_body(body, true) {
        Ok(v) => v,
        Err(e) => return e,
    };
    if config["apiVersion"].as_str().is_none() || config["kind"].as_str().is_none() {
        return (
            400,
            bad_request(
                "error decoding YAML: Object 'Kind' is missing in the applied configuration",
            ),
        );
    }
    if let Err(e) = check_identity(st, t, &config, t.name.as_deref()) {
        return e;
    }
    let key = key_of(t);
    let live = st.store.get(&key).cloned();
    let body_rv = config["metadata"]["resourceVersion"].as_str();
    match &live {
        Some(l) if stale(body_rv, l) => {
            return (
                409,
                conflict_modified(&t.info.group, &t.info.plural, &key.name),
            )
        }
        None if body_rv.is_some_and(|r| !r.is_empty()) => {
            return (
                409,
                conflict_modified(&t.info.group, &t.info.plural, &key.name),
            )
        }
        _ => {}
    }
    let force = q.get("force").is_some_and(|f| f == "true");
    let now = now_rfc3339();
    match ssa::apply(live.as_ref(), &config, force, &writer(t, &manager, &now)) {
        Err(conflicts) => (409, ssa::conflict_status(&conflicts)),
        Ok(mut obj) => {
            obj["metadata"]["name"] = json!(key.name);
            if let Some(ns) = &t.namespace {
                obj["metadata"]["namespace"] = json!(ns);
            }
            commit(st, t, key, obj, live.as_ref(), dry_run(q))
        }
    }
}

fn orphan(q: &HashMap<String, String>, body: &Value) -> bool {
    q.get("propagationPolicy").map(String::as_str) == Some("Orphan")
        || body["propagationPolicy"].as_str() == Some("Orphan")
        || body["orphanDependents"].as_bool() == Some(true)
}

fn delete(st: &mut State, t: &Target, q: &HashMap<String, String>, body: &Bytes) -> (u16, Value) {
    let opts: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let key = key_of(t);
    let Some(live) = st.store.get(&key).cloned() else {
        return (404, not_found(&t.info.group, &t.info.plural, &key.name));
    };
    let pre = &opts["preconditions"];
    let live_uid = live["metadata"]["uid"].as_str().unwrap_or_default();
    let live_rv = live["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default();
    let failed = if let Some(uid) = pre["uid"].as_str().filter(|u| *u != live_uid) {
        Some(format!(
            "Precondition failed: UID in precondition: {uid}, UID in object meta: {live_uid}"
        ))
    } else {
        pre["resourceVersion"]
            .as_str()
            .filter(|r| *r != live_rv)
            .map(|rv| format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {live_rv}"))
    };
    if let Some(why) = failed {
        let msg = format!(
            "Operation cannot be fulfilled on {} \"{}\": {why}",
            qualified(&t.info.group, &t.info.plural),
            key.name
        );
        return (
            409,
            status_failure(
                409,
                "Conflict",
                &msg,
                Some(details(&t.info.group, &t.info.plural, &key.name)),
            ),
        );
    }
    let returns_object = matches!(t.info.kind.as_str(), "Pod" | "Namespace");
    let mut shown = live.clone();
    if returns_object {
        shown["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        if t.info.kind == "Namespace" {
            shown["status"]["phase"] = json!("Terminating");
        } else {
            shown["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        }
    }
    if !dry_run(q) {
        st.store.delete(&key, orphan(q, &opts));
    }
    if returns_object {
        (200, shown)
    } else {
        let mut d = details(&t.info.group, &t.info.plural, &key.name);
        d["uid"] = json!(live_uid);
        (
            200,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d}),
        )
    }
}

fn delete_collection(st: &mut State, t: &Target, q: &HashMap<String, String>) -> (u16, Value) {
    let (code, listed) = list(st, t, q);
    if code != 200 {
        return (code, listed);
    }
    if !dry_run(q) {
        for item in listed["items"].as_array().into_iter().flatten() {
            let name = item["metadata"]["name"].as_str().unwrap_or_default();
            let key = ObjKey::new(&t.info.group, &t.info.plural, t.namespace.as_deref(), name);
            st.store.delete(&key, orphan(q, &Value::Null));
        }
    }
    (200, listed)
}

fn pod_log(st: &State, t: &Target, q: &HashMap<String, String>) -> Response<Body> {
    let name = t.name.clone().unwrap_or_default();
    let ns = t.namespace.clone().unwrap_or_default();
    let Some(pod) = st.store.get(&key_of(t)) else {
        return json_resp(404, &not_found("", "pods", &name));
    };
    let containers: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect();
    let container = match q.get("container").filter(|c| !c.is_empty()) {
        Some(c) => c.clone(),
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            let msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            return json_resp(400, &bad_request(&msg));
        }
    };
    if !containers.contains(&container) {
        return json_resp(
            400,
            &bad_request(&format!(
                "container {container} is not valid for pod {name}"
            )),
        );
    }
    let status = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == container.as_str())
        .cloned()
        .unwrap_or(Value::Null);
    let previous = q.get("previous").is_some_and(|p| p == "true");
    let text = match st
        .logs
        .get(&(ns.clone(), name.clone(), container.clone(), previous))
    {
        Some(t) => t.clone(),
        None if previous => {
            if status["lastState"]["terminated"].is_object() {
                super::controllers::default_logs(&status, true)
            } else {
                let msg = format!(
                    "previous terminated container \"{container}\" in pod \"{name}\" not found"
                );
                return json_resp(400, &bad_request(&msg));
            }
        }
        None => {
            if let Some(reason) = status["state"]["waiting"]["reason"].as_str() {
                if reason != "CrashLoopBackOff" {
                    let msg = format!(
                        "container \"{container}\" in pod \"{name}\" is waiting to start: {}",
                        match reason {
                            "ErrImagePull" | "ImagePullBackOff" =>
                                "trying and failing to pull image",
                            _ => "ContainerCreating",
                        }
                    );
                    return json_resp(400, &bad_request(&msg));
                }
            }
            super::controllers::default_logs(&status, false)
        }
    };
    let text = match q.get("tailLines").and_then(|n| n.parse::<usize>().ok()) {
        Some(n) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            let mut s = lines[start..].join("\n");
            if !s.is_empty() {
                s.push('\n');
            }
            s
        }
        None => text,
    };
    full(200, "text/plain", text)
}

// ---- WATCH ----

struct WatchFilter {
    group: String,
    plural: String,
    namespace: Option<String>,
    labels: Selector,
    fields: Selector,
}

impl WatchFilter {
    fn matches(&self, v: &Value) -> bool {
        self.labels.matches(v) && self.fields.matches(v)
    }

    /// The event a watcher with this filter sees for a change, if any (selector transitions
    /// become ADDED/DELETED as in the real watch cache).
    fn event(&self, c: &Change) -> Option<Value> {
        if c.key.group != self.group || c.key.plural != self.plural {
            return None;
        }
        if self
            .namespace
            .as_ref()
            .is_some_and(|n| *n != c.key.namespace)
        {
            return None;
        }
        let now = self.matches(&c.object);
        let before = c.old.as_ref().is_some_and(|o| self.matches(o));
        let kind = match (c.kind, before, now) {
            ("ADDED", _, true) => "ADDED",
            ("DELETED", _, true) => "DELETED",
            ("MODIFIED", true, true) => "MODIFIED",
            ("MODIFIED", false, true) => "ADDED",
            ("MODIFIED", true, false) => "DELETED",
            _ => return None,
        };
        Some(json!({"type": kind, "object": c.object}))
    }
}

fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

fn watch(shared: &Arc<Shared>, t: &Target, q: &HashMap<String, String>) -> Response<Body> {
    let filter = WatchFilter {
        group: t.info.group.clone(),
        plural: t.info.plural.clone(),
        namespace: t.namespace.clone(),
        labels: Selector::labels(
            q.get("labelSelector")
                .map(String::as_str)
                .unwrap_or_default(),
        ),
        fields: Selector::fields(
            q.get("fieldSelector")
                .map(String::as_str)
                .unwrap_or_default(),
        ),
    };
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let rv: Option<u64> = q
        .get("resourceVersion")
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse().ok());
    let (tx, rx) = futures::channel::mpsc::unbounded::<Bytes>();
    let st = shared.lock();
    let mut expire = shared.expire.subscribe();
    match rv {
        Some(rv) if rv > 0 && rv < st.store.compacted => {
            let status = status_failure(
                410,
                "Expired",
                &format!("too old resource version: {rv} ({})", st.store.compacted),
                None,
            );
            let _ = tx.unbounded_send(line(&json!({"type": "ERROR", "object": status})));
            drop(tx);
            drop(st);
            return stream_resp(rx);
        }
        Some(rv) if rv > 0 => {
            for c in st.store.history.iter().filter(|c| c.rv > rv) {
                if let Some(ev) = filter.event(c) {
                    let _ = tx.unbounded_send(line(&ev));
                }
            }
        }
        _ => {
            for o in st
                .store
                .list(&filter.group, &filter.plural, filter.namespace.as_deref())
            {
                if filter.matches(&o) {
                    let _ = tx.unbounded_send(line(&json!({"type": "ADDED", "object": o})));
                }
            }
        }
    }
    let mut sub = st.store.tx.subscribe();
    let api_version = t.info.api_version();
    let kind = t.info.kind.clone();
    drop(st);
    expire.borrow_and_update();
    let shared = shared.clone();
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let bookmark = |shared: &Shared| {
            let rv = shared.lock().store.rv;
            line(
                &json!({"type": "BOOKMARK", "object": {"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": rv.to_string(), "creationTimestamp": null}}}),
            )
        };
        loop {
            tokio::select! {
                c = sub.recv() => match c {
                    Ok(c) => {
                        if let Some(ev) = filter.event(&c) {
                            if tx.unbounded_send(line(&ev)).is_err() {
                                break;
                            }
                        }
                    }
                    Err(_) => break,
                },
                _ = expire.changed() => break,
                _ = &mut deadline => {
                    if bookmarks {
                        let _ = tx.unbounded_send(bookmark(&shared));
                    }
                    break;
                }
                _ = tick.tick(), if bookmarks => {
                    if tx.unbounded_send(bookmark(&shared)).is_err() {
                        break;
                    }
                }
            }
        }
    });
    stream_resp(rx)
}

fn stream_resp(rx: futures::channel::mpsc::UnboundedReceiver<Bytes>) -> Response<Body> {
    use futures::StreamExt;
    let stream = rx.map(|b| Ok::<_, Infallible>(Frame::data(b)));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("response")
}

// ---- patch formats ----

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(pm) => {
            if !target.is_object() {
                *target = json!({});
            }
            let tm = target.as_object_mut().expect("object");
            for (k, v) in pm {
                if v.is_null() {
                    tm.remove(k);
                } else {
                    merge_patch(tm.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn pointer_parts(p: &str) -> Vec<String> {
    p.split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// RFC 6902 JSON patch (add, remove, replace, test, copy, move).
fn json_patch(doc: &Value, ops: &Value) -> Result<Value, String> {
    let mut doc = doc.clone();
    for op in ops.as_array().ok_or("json patch must be an array")? {
        let path = op["path"].as_str().unwrap_or_default();
        let kind = op["op"].as_str().unwrap_or_default();
        match kind {
            "add" | "replace" => set_pointer(&mut doc, path, op["value"].clone(), kind == "add")?,
            "remove" => remove_pointer(&mut doc, path)?,
            "test" => {
                if doc.pointer(path) != Some(&op["value"]) {
                    return Err(format!("the server rejected our request due to an error in our request: testing value {path} failed"));
                }
            }
            "copy" | "move" => {
                let from = op["from"].as_str().unwrap_or_default();
                let v = doc
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| format!("missing path {from}"))?;
                if kind == "move" {
                    remove_pointer(&mut doc, from)?;
                }
                set_pointer(&mut doc, path, v, true)?;
            }
            other => return Err(format!("unexpected json patch operation {other:?}")),
        }
    }
    Ok(doc)
}

fn set_pointer(doc: &mut Value, path: &str, v: Value, add: bool) -> Result<(), String> {
    let parts = pointer_parts(path);
    let Some((last, parents)) = parts.split_last() else {
        *doc = v;
        return Ok(());
    };
    let mut cur = doc;
    for p in parents {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(p)
                .ok_or_else(|| format!("doc is missing path: {path}"))?,
            Value::Array(a) => a
                .get_mut(p.parse::<usize>().map_err(|e| e.to_string())?)
                .ok_or("index out of range")?,
            _ => return Err(format!("doc is missing path: {path}")),
        };
    }
    match cur {
        Value::Object(m) => {
            if !add && !m.contains_key(last) {
                return Err(format!("doc is missing key: {path}"));
            }
            m.insert(last.clone(), v);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(v);
            } else {
                let i: usize = last
                    .parse()
                    .map_err(|e: std::num::ParseIntError| e.to_string())?;
                if add && i <= a.len() {
                    a.insert(i, v);
                } else if i < a.len() {
                    a[i] = v;
                } else {
                    return Err("index out of range".into());
                }
            }
        }
        _ => return Err(format!("doc is missing path: {path}")),
    }
    Ok(())
}

fn remove_pointer(doc: &mut Value, path: &str) -> Result<(), String> {
    let parts = pointer_parts(path);
    let Some((last, parents)) = parts.split_last() else {
        return Err("cannot remove root".into());
    };
    let parent_ptr: String = parents
        .iter()
        .map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1")))
        .collect();
    let parent = doc
        .pointer_mut(&parent_ptr)
        .ok_or_else(|| format!("doc is missing path: {path}"))?;
    match parent {
        Value::Object(m) => m
            .remove(last)
            .map(|_| ())
            .ok_or_else(|| format!("doc is missing key: {path}")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|e: std::num::ParseIntError| e.to_string())?;
            if i < a.len() {
                a.remove(i);
                Ok(())
            } else {
                Err("index out of range".into())
            }
        }
        _ => Err(format!("doc is missing path: {path}")),
    }
}

#[allow(unused)]
fn micro() -> String {
    now_micro()
}
