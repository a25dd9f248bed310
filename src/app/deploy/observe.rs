//! What the cluster holds of a release's objects, read with one LIST per kind and namespace (sent concurrently, pages of 500) instead of one GET per object.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::stream::{self, StreamExt};
use serde_json::Value;

use crate::adapters::kube::{Cluster, KubeError};
use crate::release::ObjectRef;

/// The live objects of a release, by reference.
#[derive(Debug, Default)]
pub struct Observed {
    found: HashMap<ObjectRef, Value>,
    /// The `(apiVersion, kind, namespace)` that could not be listed, and why.
    unread: BTreeMap<(String, String, Option<String>), KubeError>,
}

/// What is known about one object.
#[derive(Debug)]
pub enum Live<'a> {
    Found(&'a Value),
    Absent,
    /// Its kind could not be listed (no permission, not served yet, the API failed).
    Unknown(&'a KubeError),
}

impl Observed {
    /// The live object of `reference` (as the release names it).
    pub fn live(&self, reference: &ObjectRef) -> Live<'_> {
        if let Some(object) = self.found.get(reference) {
            return Live::Found(object);
        }
        let key = (
            reference.api_version.clone(),
            reference.kind.clone(),
            reference.namespace.clone(),
        );
        match self.unread.get(&key) {
            Some(err) => Live::Unknown(err),
            None => Live::Absent,
        }
    }

    /// How many LIST requests it took (one per kind and namespace, before paging).
    pub fn lists(&self) -> usize {
        self.found
            .keys()
            .map(|r| (&r.api_version, &r.kind, &r.namespace))
            .collect::<BTreeSet<_>>()
            .len()
            .max(self.unread.len())
    }
}

/// Lists every `(apiVersion, kind, namespace)` of `objects` (up to `concurrency` at once),
/// keeping only the objects the release names.
pub async fn observe(cluster: &Cluster, objects: &[Value], concurrency: usize) -> Observed {
    let mut wanted: BTreeMap<(String, String, Option<String>), BTreeSet<String>> = BTreeMap::new();
    for reference in objects.iter().filter_map(ObjectRef::of) {
        wanted
            .entry((
                reference.api_version.clone(),
                reference.kind.clone(),
                reference.namespace.clone(),
            ))
            .or_default()
            .insert(reference.name);
    }
    let pending: Vec<_> = wanted
        .into_iter()
        .map(|(key, names)| list_one(cluster, key, names))
        .collect();
    let lists: Vec<_> = stream::iter(pending)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut observed = Observed::default();
    for (key, listed) in lists {
        match listed {
            Ok(items) => {
                for item in items {
                    let name = item
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    let reference = ObjectRef {
                        api_version: key.0.clone(),
                        kind: key.1.clone(),
                        namespace: key.2.clone(),
                        name,
                    };
                    observed.found.insert(reference, item);
                }
            }
            Err(err) => {
                observed.unread.insert(key, err);
            }
        }
    }
    observed
}

type ListKey = (String, String, Option<String>);

/// One LIST: the objects of `names` that exist.
async fn list_one(
    cluster: &Cluster,
    key: ListKey,
    names: BTreeSet<String>,
) -> (ListKey, Result<Vec<Value>, KubeError>) {
    let namespaced = match cluster.resolve(&key.0, &key.1).await {
        Ok(resolved) => resolved.namespaced,
        Err(err) => return (key, Err(err)),
    };
    let namespace = key.2.as_deref().filter(|_| namespaced);
    let keep = |name: &str| names.contains(name);
    let listed = cluster.list_kept(&key.0, &key.1, namespace, &keep).await;
    (key, listed)
}
