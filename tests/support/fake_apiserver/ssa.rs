//! Server-side apply: field sets in FieldsV1 notation, per-manager ownership, conflicts and merging.
//!
//! A reasonable subset of structured-merge-diff: maps merge key by key; the associative lists
//! Kubernetes declares (`containers`, `env`, `volumes`, ports, ...) merge by their keys; every
//! other list is atomic. Ownership is tracked per leaf and per associative-list item (`"."`).

use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// One step of a field path: a map field (`f:name`) or an associative-list item (`k:{...}`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pe {
    F(String),
    /// Canonical JSON of the item's key fields (sorted keys), as in `k:{"name":"main"}`.
    K(String),
}

pub type Path = Vec<Pe>;
pub type FieldSet = BTreeSet<Path>;

/// A field another manager owns with a different value.
#[derive(Clone, Debug)]
pub struct Conflict {
    pub manager: String,
    /// `Some(apiVersion)` when that manager's operation was `Update`.
    pub update_api_version: Option<String>,
    pub path: Path,
}

/// Metadata fields the server owns; never tracked in managedFields.
const SERVER_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The key fields of an associative list at `path` + `field`, if it is one.
fn list_keys(path: &[Pe], field: &str, kind: &str) -> Option<&'static [&'static str]> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => Some(&["name"]),
        "volumeMounts" => Some(&["mountPath"]),
        "volumeDevices" => Some(&["devicePath"]),
        "conditions" => Some(&["type"]),
        "ownerReferences" => Some(&["uid"]),
        "ports" => {
            if matches!(path.last(), Some(Pe::K(_))) {
                Some(&["containerPort", "protocol"])
            } else if kind == "Service" && path == [Pe::F("spec".into())] {
                Some(&["port", "protocol"])
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The canonical key of a list item, defaulting `protocol` to TCP like the schema does.
fn item_key(item: &Value, keys: &[&str]) -> String {
    let mut m = Map::new();
    for k in keys {
        match item.get(*k) {
            Some(v) if !v.is_null() => {
                m.insert((*k).to_string(), v.clone());
            }
            _ if *k == "protocol" => {
                m.insert("protocol".into(), json!("TCP"));
            }
            _ => {}
        }
    }
    let mut parts: Vec<(String, Value)> = m.into_iter().collect();
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    let body: Vec<String> = parts
        .iter()
        .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), v))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// The fields `obj` sets, as an applier would own them. `status` is skipped when the
/// resource has a status subresource (applies to the main resource ignore it).
pub fn fieldset(obj: &Value, kind: &str, skip_status: bool) -> FieldSet {
    let mut out = FieldSet::new();
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            match k.as_str() {
                "apiVersion" | "kind" => {}
                "status" if skip_status => {}
                "metadata" => {
                    if let Some(mm) = v.as_object() {
                        for (mk, mv) in mm {
                            if !SERVER_META.contains(&mk.as_str()) && !mv.is_null() {
                                walk(
                                    mv,
                                    vec![Pe::F("metadata".into()), Pe::F(mk.clone())],
                                    kind,
                                    &mut out,
                                );
                            }
                        }
                    }
                }
                _ if v.is_null() => {}
                _ => walk(v, vec![Pe::F(k.clone())], kind, &mut out),
            }
        }
    }
    out
}

fn walk(v: &Value, path: Path, kind: &str, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                if !child.is_null() {
                    let mut p = path.clone();
                    p.push(Pe::F(k.clone()));
                    walk(child, p, kind, out);
                }
            }
        }
        Value::Array(items) => {
            let field = match path.last() {
                Some(Pe::F(f)) => f.clone(),
                _ => String::new(),
            };
            match list_keys(&path[..path.len() - 1], &field, kind) {
                Some(keys) if items.iter().all(Value::is_object) => {
                    for item in items {
                        let mut p = path.clone();
                        p.push(Pe::K(item_key(item, keys)));
                        out.insert(p.clone());
                        walk_item(item, p, kind, out);
                    }
                }
                _ => {
                    out.insert(path);
                }
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

fn walk_item(item: &Value, path: Path, kind: &str, out: &mut FieldSet) {
    if let Some(m) = item.as_object() {
        for (k, child) in m {
            if !child.is_null() {
                let mut p = path.clone();
                p.push(Pe::F(k.clone()));
                walk(child, p, kind, out);
            }
        }
    }
}

/// The value at `path`, if present.
pub fn get_at<'a>(obj: &'a Value, path: &[Pe], kind: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for (i, pe) in path.iter().enumerate() {
        cur = match pe {
            Pe::F(f) => cur.get(f)?,
            Pe::K(k) => {
                let field = match path.get(i.wrapping_sub(1)) {
                    Some(Pe::F(f)) => f.as_str(),
                    _ => return None,
                };
                let keys = list_keys(&path[..i - 1], field, kind)?;
                cur.as_array()?.iter().find(|it| item_key(it, keys) == *k)?
            }
        };
    }
    Some(cur)
}

/// Remove the field or list item at `path`, then prune maps and lists it left empty.
fn remove_at(obj: &mut Value, path: &[Pe], kind: &str) {
    if path.is_empty() {
        return;
    }
    let (parent_path, last) = path.split_at(path.len() - 1);
    let Some(parent) = get_at_mut(obj, parent_path, kind) else {
        return;
    };
    match &last[0] {
        Pe::F(f) => {
            if let Some(m) = parent.as_object_mut() {
                m.remove(f);
            }
        }
        Pe::K(k) => {
            let field = match parent_path.last() {
                Some(Pe::F(f)) => f.clone(),
                _ => return,
            };
            if let (Some(keys), Some(a)) = (
                list_keys(&parent_path[..parent_path.len() - 1], &field, kind),
                parent.as_array_mut(),
            ) {
                a.retain(|it| item_key(it, keys) != *k);
            }
        }
    }
    let now_empty = match get_at(obj, parent_path, kind) {
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    };
    if now_empty && parent_path.len() > 1 {
        remove_at(obj, parent_path, kind);
    }
}

fn get_at_mut<'a>(obj: &'a mut Value, path: &[Pe], kind: &str) -> Option<&'a mut Value> {
    let mut cur = obj;
    for (i, pe) in path.iter().enumerate() {
        cur = match pe {
            Pe::F(f) => cur.get_mut(f)?,
            Pe::K(k) => {
                let field = match path.get(i.wrapping_sub(1)) {
                    Some(Pe::F(f)) => f.clone(),
                    _ => return None,
                };
                let keys = list_keys(&path[..i - 1], &field, kind)?;
                cur.as_array_mut()?
                    .iter_mut()
                    .find(|it| item_key(it, keys) == *k)?
            }
        };
    }
    Some(cur)
}

/// A key field of an associative-list item (removing it would orphan the item's identity).
fn is_key_field(p: &[Pe]) -> bool {
    match (p.len().checked_sub(2).map(|i| &p[i]), p.last()) {
        (Some(Pe::K(k)), Some(Pe::F(f))) => {
            serde_json::from_str::<Map<String, Value>>(k).is_ok_and(|m| m.contains_key(f))
        }
        _ => false,
    }
}

/// Merge an applied configuration into the live object.
fn merge(live: &mut Value, config: &Value, path: &mut Path, kind: &str) {
    match (live.as_object_mut(), config.as_object()) {
        (Some(lm), Some(cm)) => {
            for (k, cv) in cm {
                if cv.is_null() {
                    continue;
                }
                path.push(Pe::F(k.clone()));
                match lm.get_mut(k) {
                    Some(lv) => merge(lv, cv, path, kind),
                    None => {
                        lm.insert(k.clone(), cv.clone());
                    }
                }
                path.pop();
            }
        }
        _ => {
            let field = match path.last() {
                Some(Pe::F(f)) => f.clone(),
                _ => String::new(),
            };
            let keys = if path.is_empty() {
                None
            } else {
                list_keys(&path[..path.len() - 1], &field, kind)
            };
            match (keys, live.as_array(), config.as_array()) {
                (Some(keys), Some(la), Some(ca)) if ca.iter().all(Value::is_object) => {
                    let mut out: Vec<Value> = Vec::new();
                    for citem in ca {
                        let key = item_key(citem, keys);
                        let mut merged = la
                            .iter()
                            .find(|l| item_key(l, keys) == key)
                            .cloned()
                            .unwrap_or(json!({}));
                        path.push(Pe::K(key));
                        merge(&mut merged, citem, path, kind);
                        path.pop();
                        out.push(merged);
                    }
                    let ckeys: BTreeSet<String> = ca.iter().map(|c| item_key(c, keys)).collect();
                    out.extend(
                        la.iter()
                            .filter(|l| !ckeys.contains(&item_key(l, keys)))
                            .cloned(),
                    );
                    *live = Value::Array(out);
                }
                _ => *live = config.clone(),
            }
        }
    }
}

/// A managedFields entry read back into a field set.
#[derive(Clone, Debug)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub subresource: Option<String>,
    pub time: String,
    pub fields: FieldSet,
}

pub fn read_entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let mut fields = FieldSet::new();
            parse_fields(&e["fieldsV1"], &mut Vec::new(), &mut fields);
            Entry {
                manager: e["manager"].as_str().unwrap_or_default().into(),
                operation: e["operation"].as_str().unwrap_or("Apply").into(),
                api_version: e["apiVersion"].as_str().unwrap_or_default().into(),
                subresource: e["subresource"].as_str().map(String::from),
                time: e["time"].as_str().unwrap_or_default().into(),
                fields,
            }
        })
        .collect()
}

fn parse_fields(v: &Value, path: &mut Path, out: &mut FieldSet) {
    let Some(m) = v.as_object() else { return };
    if m.is_empty() && !path.is_empty() {
        out.insert(path.clone());
        return;
    }
    for (k, child) in m {
        if k == "." {
            if matches!(path.last(), Some(Pe::K(_))) {
                out.insert(path.clone());
            }
            continue;
        }
        let pe = if let Some(f) = k.strip_prefix("f:") {
            Pe::F(f.into())
        } else if let Some(key) = k.strip_prefix("k:") {
            Pe::K(key.into())
        } else {
            continue; // v:/i: elements are not produced by this fake
        };
        path.push(pe);
        parse_fields(child, path, out);
        path.pop();
    }
}

/// A field set in FieldsV1 notation.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for pe in path {
            let key = match pe {
                Pe::F(f) => format!("f:{f}"),
                Pe::K(k) => format!("k:{k}"),
            };
            cur = cur
                .entry(key)
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("object");
        }
        if matches!(path.last(), Some(Pe::K(_))) {
            cur.insert(".".into(), json!({}));
        }
    }
    Value::Object(root)
}

pub fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if let Some(s) = &e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    if list.is_empty() {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        obj["metadata"]["managedFields"] = Value::Array(list);
    }
}

/// `.spec.template.spec.containers[name="main"].image`: how SMD prints a path.
pub fn path_string(path: &[Pe]) -> String {
    let mut s = String::new();
    for pe in path {
        match pe {
            Pe::F(f) => {
                s.push('.');
                s.push_str(f);
            }
            Pe::K(k) => {
                let m: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                s.push_str(&format!("[{}]", parts.join(",")));
            }
        }
    }
    s
}

/// Who writes what: the context of one write for field management.
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub kind: &'a str,
    /// The resource has a status subresource, so writes to the main resource ignore `status`.
    pub skip_status: bool,
    pub now: &'a str,
}

/// Server-side apply of `config` onto `live` (None: create), `force` taking conflicting fields.
/// Returns the new object (managedFields updated) or the conflicts.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    force: bool,
    w: &Writer<'_>,
) -> Result<Value, Vec<Conflict>> {
    let Writer {
        manager,
        api_version,
        kind,
        skip_status,
        now,
    } = *w;
    let mut obj = live.cloned().unwrap_or_else(|| json!({}));
    let mut entries = read_entries(&obj);
    let new_set = fieldset(config, kind, skip_status);

    // Conflicts: a leaf another manager owns, applied with a different value.
    let mut conflicts = Vec::new();
    for e in entries
        .iter()
        .filter(|e| e.manager != manager || e.operation != "Apply")
    {
        for p in new_set.intersection(&e.fields) {
            if matches!(p.last(), Some(Pe::K(_))) {
                continue;
            }
            if get_at(&obj, p, kind) != get_at(config, p, kind) {
                conflicts.push(Conflict {
                    manager: e.manager.clone(),
                    update_api_version: (e.operation != "Apply").then(|| e.api_version.clone()),
                    path: p.clone(),
                });
            }
        }
    }
    if !conflicts.is_empty() {
        if !force {
            return Err(conflicts);
        }
        for c in &conflicts {
            for e in entries.iter_mut().filter(|e| e.manager == c.manager) {
                e.fields.remove(&c.path);
            }
        }
    }

    // Fields this manager applied before and omits now are removed unless someone else owns them.
    let mine = entries
        .iter()
        .position(|e| e.manager == manager && e.operation == "Apply");
    let old_set = mine.map(|i| entries[i].fields.clone()).unwrap_or_default();
    let others: FieldSet = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != mine)
        .flat_map(|(_, e)| e.fields.iter().cloned())
        .collect();
    // Shortest first, so a dropped list item goes as a whole before its fields are visited.
    let mut removed: Vec<&Path> = old_set.difference(&new_set).collect();
    removed.sort_by_key(|p| p.len());
    let mut gone: Vec<&Path> = Vec::new();
    for p in removed {
        if gone.iter().any(|g| p.starts_with(g))
            || others.iter().any(|o| o.starts_with(p))
            || is_key_field(p)
        {
            continue;
        }
        remove_at(&mut obj, p, kind);
        gone.push(p);
    }

    let mut cfg = config.clone();
    if let Some(m) = cfg.as_object_mut() {
        if skip_status {
            m.remove("status");
        }
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
            meta.remove("resourceVersion");
            meta.remove("uid");
            meta.remove("creationTimestamp");
            meta.remove("generation");
        }
    }
    merge(&mut obj, &cfg, &mut Vec::new(), kind);

    let entry = Entry {
        manager: manager.into(),
        operation: "Apply".into(),
        api_version: api_version.into(),
        subresource: None,
        time: now.into(),
        fields: new_set,
    };
    match mine {
        Some(i) => {
            let unchanged = entries[i].fields == entry.fields;
            let time = entries[i].time.clone();
            entries[i] = entry;
            if unchanged {
                entries[i].time = time; // the caller decides whether anything changed at all
            }
        }
        None => entries.push(entry),
    }
    write_entries(&mut obj, &entries);
    Ok(obj)
}

/// Record a non-apply write (create/update/patch) by `manager` as an `Update` entry owning the
/// leaves it changed, taking them from everyone else, as the real field manager does.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    subresource: Option<&str>,
    w: &Writer<'_>,
) {
    let Writer {
        manager,
        api_version,
        kind,
        skip_status,
        now,
    } = *w;
    let mut entries = old.map(read_entries).unwrap_or_default();
    let scope: FieldSet = match subresource {
        Some("status") => fieldset(
            &json!({"status": new.get("status").cloned().unwrap_or(Value::Null)}),
            kind,
            false,
        ),
        _ => fieldset(new, kind, skip_status),
    };
    let changed: FieldSet = scope
        .into_iter()
        .filter(|p| old.and_then(|o| get_at(o, p, kind)) != get_at(new, p, kind))
        .collect();
    if changed.is_empty() {
        write_entries(new, &entries);
        return;
    }
    for e in entries.iter_mut() {
        e.fields.retain(|p| !changed.contains(p));
    }
    match entries.iter_mut().find(|e| {
        e.manager == manager && e.operation == "Update" && e.subresource.as_deref() == subresource
    }) {
        Some(e) => {
            e.fields.extend(changed);
            e.time = now.into();
        }
        None => entries.push(Entry {
            manager: manager.into(),
            operation: "Update".into(),
            api_version: api_version.into(),
            subresource: subresource.map(String::from),
            time: now.into(),
            fields: changed,
        }),
    }
    write_entries(new, &entries);
}

/// The 409 Status for apply conflicts, worded like the real field manager.
pub fn conflict_status(conflicts: &[Conflict]) -> Value {
    let who = |c: &Conflict| match &c.update_api_version {
        Some(v) => format!("\"{}\" using {v}", c.manager),
        None => format!("\"{}\"", c.manager),
    };
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for c in conflicts {
        let w = who(c);
        match groups.iter_mut().find(|(g, _)| *g == w) {
            Some((_, ps)) => ps.push(path_string(&c.path)),
            None => groups.push((w, vec![path_string(&c.path)])),
        }
    }
    let n = conflicts.len();
    let body: Vec<String> = groups
        .iter()
        .map(|(w, ps)| {
            if ps.len() == 1 {
                format!("conflict with {w}: {}", ps[0])
            } else {
                format!("conflicts with {w}:\n- {}", ps.join("\n- "))
            }
        })
        .collect();
    let message = format!(
        "Apply failed with {n} conflict{}: {}",
        if n == 1 { "" } else { "s" },
        body.join("\n")
    );
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", who(c)), "field": path_string(&c.path)})
        })
        .collect();
    super::meta::status_failure(409, "Conflict", &message, Some(json!({"causes": causes})))
}
