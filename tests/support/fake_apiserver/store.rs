//! The object store: objects keyed by resource, a global resourceVersion, the change log watches replay, and compaction.

use super::discovery::{builtin_resources, ResourceInfo};
use super::meta::{new_uid, now_rfc3339};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Where an object lives. One served version per resource, as etcd stores one version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjKey {
    pub group: String,
    pub plural: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

/// One committed change, as a watch delivers it.
#[derive(Clone, Debug)]
pub struct Change {
    pub rv: u64,
    pub kind: &'static str,
    pub key: ObjKey,
    pub object: Value,
    /// The object before the change (to turn selector transitions into ADDED/DELETED).
    pub old: Option<Value>,
}

pub struct Store {
    pub objects: BTreeMap<ObjKey, Value>,
    pub rv: u64,
    pub compacted: u64,
    pub history: Vec<Arc<Change>>,
    pub resources: Vec<ResourceInfo>,
    pub tx: broadcast::Sender<Arc<Change>>,
}

impl Store {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(65_536);
        let mut s = Store {
            objects: BTreeMap::new(),
            rv: 100,
            compacted: 0,
            history: Vec::new(),
            resources: builtin_resources(),
            tx,
        };
        for ns in ["default", "kube-system", "kube-public"] {
            s.create(ObjKey::cluster("", "namespaces", ns), json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}));
        }
        s
    }

    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<ResourceInfo> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    pub fn resource_for_kind(&self, api_version: &str, kind: &str) -> Option<ResourceInfo> {
        self.resources
            .iter()
            .find(|r| r.api_version() == api_version && r.kind == kind)
            .cloned()
    }

    pub fn namespace_exists(&self, ns: &str) -> bool {
        self.objects
            .contains_key(&ObjKey::cluster("", "namespaces", ns))
    }

    pub fn get(&self, key: &ObjKey) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Objects of a resource, in one namespace or all.
    pub fn list(&self, group: &str, plural: &str, namespace: Option<&str>) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|(k, _)| {
                k.group == group && k.plural == plural && namespace.is_none_or(|n| k.namespace == n)
            })
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn emit(&mut self, kind: &'static str, key: ObjKey, object: Value, old: Option<Value>) {
        let c = Arc::new(Change {
            rv: self.rv,
            kind,
            key,
            object,
            old,
        });
        self.history.push(c.clone());
        let _ = self.tx.send(c);
    }

    /// Store a new object: uid, creationTimestamp, resourceVersion, generation (for kinds with spec).
    pub fn create(&mut self, key: ObjKey, mut obj: Value) -> Value {
        let rv = self.bump();
        let meta = &mut obj["metadata"];
        if meta["uid"].as_str().is_none_or(str::is_empty) {
            meta["uid"] = json!(new_uid());
        }
        if meta["creationTimestamp"].as_str().is_none_or(str::is_empty) {
            meta["creationTimestamp"] = json!(now_rfc3339());
        }
        meta["resourceVersion"] = json!(rv.to_string());
        meta["name"] = json!(key.name);
        if !key.namespace.is_empty() {
            meta["namespace"] = json!(key.namespace);
        }
        if obj.get("spec").is_some()
            && !matches!(key.plural.as_str(), "namespaces" | "pods" | "services")
        {
            obj["metadata"]["generation"] = json!(1);
        }
        self.objects.insert(key.clone(), obj.clone());
        self.emit("ADDED", key, obj.clone(), None);
        obj
    }

    /// Replace a stored object. A write that changes nothing keeps the resourceVersion and sends
    /// no event; `generation` is bumped when anything outside metadata and status changed.
    pub fn update(&mut self, key: &ObjKey, mut obj: Value) -> Value {
        let Some(old) = self.objects.get(key).cloned() else {
            return obj;
        };
        for f in [
            "uid",
            "creationTimestamp",
            "generation",
            "name",
            "namespace",
        ] {
            if let Some(v) = old["metadata"].get(f) {
                obj["metadata"][f] = v.clone();
            }
        }
        obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if same_ignoring_times(&old, &obj) {
            return old;
        }
        let body = |v: &Value| {
            let mut v = v.clone();
            if let Some(m) = v.as_object_mut() {
                m.remove("metadata");
                m.remove("status");
            }
            v
        };
        if old["metadata"].get("generation").is_some() && body(&old) != body(&obj) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            obj["metadata"]["generation"] = json!(g);
        }
        let rv = self.bump();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.insert(key.clone(), obj.clone());
        self.emit("MODIFIED", key.clone(), obj.clone(), Some(old));
        obj
    }

    /// Delete an object, then its dependents (ownerReferences) unless orphaned, and a
    /// Namespace's contents. Returns the deleted object as the DELETED event carried it.
    pub fn delete(&mut self, key: &ObjKey, orphan: bool) -> Option<Value> {
        let mut obj = self.objects.remove(key)?;
        let rv = self.bump();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.emit("DELETED", key.clone(), obj.clone(), None);
        let uid = obj["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let dependents: Vec<ObjKey> = self
            .objects
            .iter()
            .filter(|(_, v)| {
                v["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid.as_str()))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for d in dependents {
            if orphan {
                if let Some(mut v) = self.objects.get(&d).cloned() {
                    if let Some(m) = v["metadata"].as_object_mut() {
                        m.remove("ownerReferences");
                    }
                    self.update(&d, v);
                }
            } else {
                self.delete(&d, false);
            }
        }
        if key.plural == "namespaces" && key.group.is_empty() {
            let inside: Vec<ObjKey> = self
                .objects
                .keys()
                .filter(|k| k.namespace == key.name)
                .cloned()
                .collect();
            for k in inside {
                self.delete(&k, false);
            }
        }
        Some(obj)
    }

    /// Move the compaction point to the current resourceVersion.
    pub fn compact(&mut self) {
        self.compacted = self.rv;
        self.history.clear();
    }
}

impl ObjKey {
    pub fn new(group: &str, plural: &str, namespace: Option<&str>, name: &str) -> Self {
        ObjKey {
            group: group.into(),
            plural: plural.into(),
            namespace: namespace.unwrap_or_default().into(),
            name: name.into(),
        }
    }

    pub fn cluster(group: &str, plural: &str, name: &str) -> Self {
        Self::new(group, plural, None, name)
    }
}

/// Equal apart from managedFields timestamps (a no-op apply must not bump resourceVersion).
fn same_ignoring_times(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(mf) = v["metadata"]
            .get_mut("managedFields")
            .and_then(Value::as_array_mut)
        {
            for e in mf {
                if let Some(m) = e.as_object_mut() {
                    m.remove("time");
                }
            }
        }
        v
    };
    strip(a) == strip(b)
}
