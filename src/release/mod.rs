//! Releases of an environment: the record stored in the cluster (one Secret per release), and the pure decisions over the history (last good release, what to prune, what a rollback re-applies and deletes, which records to drop).
//!
//! Design note: like Helm's release Secrets, a record holds the whole manifest set *as applied*
//! (gzip-compressed JSON, so a rollback re-applies exactly what ran, ConfigMaps and Services
//! included) plus the inventory of objects it owns. Pruning and rollback deletions come from
//! these inventories only, never from label selectors. Nothing here talks to a cluster.

pub mod diff;
pub mod lease;
pub mod owned;
pub mod records;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::manifests::ObjectKey;

/// The `type` of release Secrets; also how they are recognised.
pub const SECRET_TYPE: &str = "gantry.dev/release.v1";
/// The `type` of the Secrets recording events of an environment's lock (`unlock`).
pub const EVENT_SECRET_TYPE: &str = "gantry.dev/event.v1";
/// Label carrying the environment on release Secrets and the lock Lease.
pub const ENVIRONMENT_LABEL: &str = "gantry.dev/environment";
/// Label carrying the release number on release Secrets.
pub const RELEASE_LABEL: &str = "gantry.dev/release";
/// Label carrying the release status on release Secrets (for `kubectl get secrets -l`).
pub const STATUS_LABEL: &str = "gantry.dev/status";
/// The field manager of every apply gantry makes.
pub const FIELD_MANAGER: &str = "gantry";

/// Where a release is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseStatus {
    /// Being applied or tracked; a pending record whose run is gone was interrupted.
    Pending,
    /// Healthy and current.
    Deployed,
    /// Failed and left as it was (rollback off, or the rollback failed too).
    Failed,
    /// Failed and replaced by the last good release.
    RolledBack,
    /// Was deployed; a later release replaced it.
    Superseded,
}

impl ReleaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseStatus::Pending => "pending",
            ReleaseStatus::Deployed => "deployed",
            ReleaseStatus::Failed => "failed",
            ReleaseStatus::RolledBack => "rolled-back",
            ReleaseStatus::Superseded => "superseded",
        }
    }
}

/// An object a release owns, as stored in its inventory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl From<&ObjectKey> for ObjectRef {
    fn from(key: &ObjectKey) -> Self {
        ObjectRef {
            api_version: key.api_version.clone(),
            kind: key.kind.clone(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        }
    }
}

impl ObjectRef {
    pub fn key(&self) -> ObjectKey {
        ObjectKey {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// Reads the reference of a JSON object (apiVersion, kind, metadata.namespace/name).
    pub fn of(object: &Value) -> Option<ObjectRef> {
        Some(ObjectRef {
            api_version: object.get("apiVersion")?.as_str()?.to_string(),
            kind: object.get("kind")?.as_str()?.to_string(),
            namespace: object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string),
            name: object.pointer("/metadata/name")?.as_str()?.to_string(),
        })
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.key().fmt(f)
    }
}

/// One release of an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub environment: String,
    pub number: u64,
    pub status: ReleaseStatus,
    /// The commit deployed (full SHA) or the version asked for.
    #[serde(default)]
    pub commit: Option<String>,
    /// Image name -> `repository@digest`.
    #[serde(default)]
    pub images: std::collections::BTreeMap<String, String>,
    /// The objects as applied, in apply order (JSON, placeholders substituted, images pinned).
    pub manifests: Vec<Value>,
    /// RFC 3339 times.
    pub created: String,
    pub updated: String,
    /// What happened, in a sentence ("deployed", "rollout failed: ...", "rollback to 4").
    #[serde(default)]
    pub description: String,
    /// Who started the run (GitHub actor) and from where (run URL).
    #[serde(default)]
    pub actor: Option<String>,
    #[serde(default)]
    pub run_url: Option<String>,
    /// For a release made by the `rollback` command: the release whose manifests it restored.
    #[serde(default)]
    pub restored_from: Option<u64>,
    /// Set when the release is recorded deployed: the objects of the release before it that it
    /// deletes next (prune runs only once the release is healthy). A run killed before it
    /// finished leaves this and the older release still `deployed`; the next run finishes it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prune_pending: Vec<ObjectRef>,
    /// Set when the release is rolled back: its objects that its run did not create (they
    /// existed before and were adopted, or the apply never reached them). The rollback left
    /// them as they are, and later prunes and rollbacks do not count them as its leftovers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_created: Vec<ObjectRef>,
    /// The chain link: [`records::content_digest`] of the release before this one (`None` for
    /// the first, and for records written by gantry 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_digest: Option<String>,
}

impl Release {
    /// The inventory: every object this release owns.
    pub fn inventory(&self) -> BTreeSet<ObjectRef> {
        self.manifests.iter().filter_map(ObjectRef::of).collect()
    }

    /// The name of the Secret holding this release.
    pub fn secret_name(&self) -> String {
        secret_name(&self.environment, self.number)
    }
}

/// `gantry.release.<environment>.v<number>` (a valid Secret name: environments are DNS labels).
pub fn secret_name(environment: &str, number: u64) -> String {
    format!("gantry.release.{environment}.v{number}")
}

/// The name of the environment's lock Lease.
pub fn lease_name(environment: &str) -> String {
    format!("gantry.lock.{environment}")
}

/// The release currently running: the newest `deployed` one.
pub fn last_deployed(history: &[Release]) -> Option<&Release> {
    history
        .iter()
        .filter(|r| r.status == ReleaseStatus::Deployed)
        .max_by_key(|r| r.number)
}

/// Manifests of releases newer than the last good one (failed, cancelled or rolled back):
/// objects of theirs may still be in the cluster, so pruning and rollbacks consider them.
pub fn applied_since_last_good(history: &[Release]) -> Vec<Value> {
    let after = last_deployed(history).map(|r| r.number).unwrap_or(0);
    history
        .iter()
        .filter(|r| r.number > after && r.status != ReleaseStatus::Deployed)
        .flat_map(|r| {
            let foreign: BTreeSet<Identity> = r.not_created.iter().map(|o| o.identity()).collect();
            r.manifests.iter().filter(move |object| {
                ObjectRef::of(object).is_none_or(|o| !foreign.contains(&o.identity()))
            })
        })
        .cloned()
        .collect()
}

/// The number the next release gets: one more than any recorded.
pub fn next_number(history: &[Release]) -> u64 {
    history.iter().map(|r| r.number).max().unwrap_or(0) + 1
}

/// Releases left `pending` by a run that no longer holds the lock: interrupted.
pub fn interrupted(history: &[Release]) -> Vec<&Release> {
    let mut found: Vec<&Release> = history
        .iter()
        .filter(|r| r.status == ReleaseStatus::Pending)
        .collect();
    found.sort_by_key(|r| r.number);
    found
}

/// The release a `rollback` command restores: the chosen number (which must have been
/// deployed once), or the newest deployed/superseded release before the current one.
pub fn rollback_target(history: &[Release], chosen: Option<u64>) -> Result<&Release, String> {
    let current = last_deployed(history).map(|r| r.number);
    if let Some(number) = chosen {
        let release = history.iter().find(|r| r.number == number).ok_or_else(|| {
            format!(
                "release {number} is not in the history ({}); `gantry history` lists them",
                describe_numbers(history)
            )
        })?;
        return match release.status {
            ReleaseStatus::Deployed | ReleaseStatus::Superseded => Ok(release),
            other => Err(format!(
                "release {number} {}; only a release that was deployed healthy can be restored",
                match other {
                    ReleaseStatus::Pending => "is pending (interrupted)",
                    ReleaseStatus::Failed => "failed",
                    _ => "was rolled back",
                }
            )),
        };
    }
    history
        .iter()
        .filter(|r| {
            matches!(
                r.status,
                ReleaseStatus::Superseded | ReleaseStatus::Deployed
            ) && Some(r.number) != current
                && current.is_none_or(|c| r.number < c)
        })
        .max_by_key(|r| r.number)
        .ok_or_else(|| match current {
            Some(c) => {
                format!("there is no good release before the current release {c} to roll back to")
            }
            None => "there is no deployed release to roll back to".to_string(),
        })
}

fn describe_numbers(history: &[Release]) -> String {
    if history.is_empty() {
        return "no releases recorded".to_string();
    }
    let mut numbers: Vec<u64> = history.iter().map(|r| r.number).collect();
    numbers.sort_unstable();
    format!(
        "releases {}",
        numbers
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// How objects are told apart across releases: API group, kind, namespace and name. The API
/// version is not part of it: an HPA applied as `autoscaling/v1` and later as `autoscaling/v2`,
/// or a custom resource moving between two served versions of its CRD, is one object, updated.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity {
    pub group: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    /// The object's identity across releases (see [`Identity`]).
    pub fn identity(&self) -> Identity {
        Identity {
            group: self.key().group().to_string(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// Kinds whose objects hold data or hold other objects: a PersistentVolumeClaim (and its
/// volume), a PersistentVolume, a Namespace (everything in it), a CustomResourceDefinition
/// (every resource of it). Prune and rollback never delete them unless the object opts in
/// with [`ALLOW_DELETE_ANNOTATION`]; they are reported as kept instead.
const PROTECTED_KINDS: [(&str, &str); 4] = [
    ("", "PersistentVolumeClaim"),
    ("", "PersistentVolume"),
    ("", "Namespace"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
];

/// The annotation (value `"true"`) that lets gantry delete a protected object once it is no
/// longer in the release: on the object in the release that last had it, or on the live object.
pub const ALLOW_DELETE_ANNOTATION: &str = "gantry.dev/allow-delete";

/// The annotation (value `"true"`) that lets gantry delete an object and create it again when a
/// release changes a field of it that cannot change (a Job's template, a Service's `clusterIP`,
/// a selector). The one case where something is deleted before the release is proven healthy.
pub const REPLACE_ANNOTATION: &str = "gantry.dev/replace";

/// Whether an object may be deleted and created again to change an immutable field.
pub fn allows_replace(object: &Value) -> bool {
    object
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(REPLACE_ANNOTATION))
        .and_then(Value::as_str)
        == Some("true")
}

/// Whether prune and rollback keep objects of this kind unless they opt in.
pub fn is_protected(reference: &ObjectRef) -> bool {
    let identity = reference.identity();
    PROTECTED_KINDS
        .iter()
        .any(|(group, kind)| identity.group == *group && identity.kind == *kind)
}

/// Whether an object carries the opt-in to be deleted when it leaves the release.
pub fn allows_delete(object: &Value) -> bool {
    object
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(ALLOW_DELETE_ANNOTATION))
        .and_then(Value::as_str)
        == Some("true")
}

/// What leaving a set of objects behind does: the objects to delete, in reverse apply order,
/// and the protected ones that are kept (no longer in the release, still in the cluster).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Removal {
    pub delete: Vec<ObjectRef>,
    pub keep: Vec<ObjectRef>,
}

/// Objects `previous` owned that `next` does not (by [`Identity`]): what switching from one
/// to the other deletes, in reverse apply order (workloads before the Services and ConfigMaps
/// they use), with protected kinds kept unless they opt in.
pub fn removal(previous: &[Value], next: &[Value]) -> Removal {
    let stays: BTreeSet<Identity> = next
        .iter()
        .filter_map(ObjectRef::of)
        .map(|r| r.identity())
        .collect();
    let mut seen = BTreeSet::new();
    let mut found = Removal::default();
    for object in previous {
        let Some(reference) = ObjectRef::of(object) else {
            continue;
        };
        let identity = reference.identity();
        if stays.contains(&identity) || !seen.insert(identity) {
            continue;
        }
        if is_protected(&reference) && !allows_delete(object) {
            found.keep.push(reference);
        } else {
            found.delete.push(reference);
        }
    }
    delete_order(&mut found.delete);
    delete_order(&mut found.keep);
    found
}

/// Objects that `next` moves to another namespace: `(before, after)` pairs of the same group,
/// kind and name whose namespace differs (a delete and a create, which plan says).
pub fn moved(previous: &[Value], next: &[Value]) -> Vec<(ObjectRef, ObjectRef)> {
    let before: Vec<ObjectRef> = previous.iter().filter_map(ObjectRef::of).collect();
    let after: Vec<ObjectRef> = next.iter().filter_map(ObjectRef::of).collect();
    let same_place = |a: &ObjectRef, b: &ObjectRef| a.identity() == b.identity();
    let mut pairs = Vec::new();
    for new in &after {
        if before.iter().any(|old| same_place(old, new)) {
            continue;
        }
        if let Some(old) = before.iter().find(|old| {
            let (o, n) = (old.identity(), new.identity());
            o.group == n.group
                && o.kind == n.kind
                && o.name == n.name
                && o.namespace != n.namespace
                && !after.iter().any(|a| same_place(a, old))
        }) {
            pairs.push((old.clone(), new.clone()));
        }
    }
    pairs
}

/// Sorts objects for deletion: the reverse of the apply order.
pub fn delete_order(objects: &mut [ObjectRef]) {
    objects.sort_by_key(|r| std::cmp::Reverse(crate::manifests::apply_rank(&r.kind)));
}

/// What undoing a failed release does.
#[derive(Debug, Clone, PartialEq)]
pub enum RollbackPlan {
    /// Re-apply the last good release (every kind) and delete what the failed one added.
    Restore {
        to: u64,
        reapply: Vec<Value>,
        removal: Removal,
    },
    /// No good release exists (a first release failed): remove everything it created.
    RemoveAll { removal: Removal },
}

/// Decides how to undo `failed`, given the last good release (if any).
pub fn rollback_plan(failed: &Release, last_good: Option<&Release>) -> RollbackPlan {
    match last_good {
        Some(good) => RollbackPlan::Restore {
            to: good.number,
            reapply: good.manifests.clone(),
            removal: removal(&failed.manifests, &good.manifests),
        },
        None => RollbackPlan::RemoveAll {
            removal: removal(&failed.manifests, &[]),
        },
    }
}

/// Whether the live object `live` existed before the run that wrote `record` began: its
/// `creationTimestamp` is earlier than the record. For a run killed mid-apply this is all the
/// next run can know of what it created. Both times have whole seconds and come from two
/// clocks (the API server's, gantry's): an object created in the record's second counts as the
/// run's, and a runner clock that is ahead makes the run's own objects look older, so they are
/// left in place rather than anything of someone else's deleted. An object without a readable
/// time counts as created by the run.
pub fn existed_before(live: &Value, record: &Release) -> bool {
    let time = |text: Option<&str>| text?.parse::<jiff::Timestamp>().ok();
    let created = time(
        live.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str),
    );
    // The record's time has fractions of a second; the object's is cut to the second.
    let started =
        time(Some(&record.created)).and_then(|t| jiff::Timestamp::from_second(t.as_second()).ok());
    match (created, started) {
        (Some(created), Some(started)) => created < started,
        _ => false,
    }
}

/// Which objects of a failed release its rollback may delete. Deleted are only objects the
/// failed run created (`created`, named as [`ObjectRef`] prints them); objects the last good
/// release has are restored instead. Every other object of the failed release existed before
/// the run (it was adopted, or the apply never reached it) and is left as it is: a rollback
/// never deletes what gantry did not create. Returns the objects the rollback plan may consider
/// and those left in place.
pub fn rollback_scope(
    failed: &[Value],
    last_good: Option<&Release>,
    created: &[String],
) -> (Vec<Value>, Vec<ObjectRef>) {
    let restored: BTreeSet<Identity> = last_good
        .map(|good| good.manifests.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(ObjectRef::of)
        .map(|r| r.identity())
        .collect();
    let mut scope = Vec::new();
    let mut left = Vec::new();
    for object in failed {
        match ObjectRef::of(object) {
            Some(reference)
                if !restored.contains(&reference.identity())
                    && !created.contains(&reference.to_string()) =>
            {
                left.push(reference);
            }
            _ => scope.push(object.clone()),
        }
    }
    (scope, left)
}

/// Leaves out of `objects` the fields an autoscaler manages: `spec.replicas` of every object a
/// HorizontalPodAutoscaler among `autoscalers` targets (matched by API group, kind, namespace and
/// name). A rollback applies the result, so it never takes replicas back from the autoscaler
/// (an HPA sets them through the scale subresource). Returns the objects and one note per
/// field left out: `Deployment/web (namespace shop): spec.replicas (HorizontalPodAutoscaler/web)`.
pub fn leave_to_autoscalers(objects: &[Value], autoscalers: &[Value]) -> (Vec<Value>, Vec<String>) {
    let mut notes = Vec::new();
    let targets: Vec<(Identity, String)> = autoscalers
        .iter()
        .filter(|a| a.get("kind").and_then(Value::as_str) == Some("HorizontalPodAutoscaler"))
        .filter_map(|hpa| {
            let target = hpa.pointer("/spec/scaleTargetRef")?;
            let api_version = target
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or("apps/v1");
            let reference = ObjectRef {
                api_version: api_version.to_string(),
                kind: target.get("kind")?.as_str()?.to_string(),
                namespace: hpa
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                name: target.get("name")?.as_str()?.to_string(),
            };
            let hpa_name = hpa.pointer("/metadata/name")?.as_str()?.to_string();
            Some((reference.identity(), hpa_name))
        })
        .collect();
    let objects = objects
        .iter()
        .map(|object| {
            let Some(reference) = ObjectRef::of(object) else {
                return object.clone();
            };
            let identity = reference.identity();
            let Some((_, hpa)) = targets.iter().find(|(target, _)| *target == identity) else {
                return object.clone();
            };
            let mut object = object.clone();
            if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
                if spec.remove("replicas").is_some() {
                    notes.push(format!(
                        "{reference}: spec.replicas (HorizontalPodAutoscaler/{hpa})"
                    ));
                }
            }
            object
        })
        .collect();
    (objects, notes)
}

/// Which records to delete so at most `keep` remain. The current deployed release and
/// pending ones are never dropped, so the record of what was last good is never lost.
pub fn records_to_drop(history: &[Release], keep: u32) -> Vec<u64> {
    let current = last_deployed(history).map(|r| r.number);
    let mut numbers: Vec<&Release> = history.iter().collect();
    numbers.sort_by_key(|r| std::cmp::Reverse(r.number));
    let mut kept = 0u32;
    let mut drop = Vec::new();
    for release in numbers {
        let protected = Some(release.number) == current || release.status == ReleaseStatus::Pending;
        if kept < keep || protected {
            kept += 1;
        } else {
            drop.push(release.number);
        }
    }
    drop.sort_unstable();
    drop
}

/// The release as the audit trail records it: multi-document YAML; Secret values are
/// replaced by a note (their keys stay), so no secret reaches the audit branch.
pub fn audit_yaml(objects: &[Value]) -> String {
    let mut out = String::new();
    for object in objects {
        let mut object = object.clone();
        if object.get("kind").and_then(Value::as_str) == Some("Secret") {
            for field in ["data", "stringData"] {
                if let Some(map) = object.get_mut(field).and_then(Value::as_object_mut) {
                    for value in map.values_mut() {
                        *value = Value::String("(redacted by gantry)".into());
                    }
                }
            }
        }
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&object).unwrap_or_default());
    }
    out
}

/// The workloads whose rollout gantry tracks, in apply order.
pub fn tracked_kinds(kind: &str) -> bool {
    matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet" | "Job")
}

/// The release record reduced to what the history table shows.
pub fn summary(release: &Release) -> crate::pipeline::facts::ReleaseSummary {
    crate::pipeline::facts::ReleaseSummary {
        release: release.number,
        status: release.status.as_str().to_string(),
        commit: release.commit.clone(),
        created: release.created.clone(),
        description: release.description.clone(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    fn object(kind: &str, name: &str) -> Value {
        let api = match kind {
            "Deployment" => "apps/v1",
            _ => "v1",
        };
        json!({"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": "shop"}})
    }

    /// A release of environment `dev` at commit `000…N` (shared with the records' tests).
    pub(crate) fn release(number: u64, status: ReleaseStatus, objects: &[Value]) -> Release {
        Release {
            environment: "dev".into(),
            number,
            status,
            commit: Some(format!("{number:040}")),
            images: Default::default(),
            manifests: objects.to_vec(),
            created: "2026-11-23T00:00:00Z".into(),
            updated: "2026-11-23T00:00:00Z".into(),
            description: String::new(),
            actor: None,
            run_url: None,
            restored_from: None,
            prune_pending: Vec::new(),
            not_created: Vec::new(),
            previous_digest: None,
        }
    }

    #[test]
    fn pruning_comes_from_the_inventory_in_reverse_apply_order() {
        let previous = [
            object("Namespace", "old-ns"),
            object("ConfigMap", "cfg"),
            object("Service", "web"),
            object("Deployment", "web"),
            object("Deployment", "worker"),
        ];
        let next = [object("ConfigMap", "cfg"), object("Deployment", "web")];
        let gone: Vec<String> = removal(&previous, &next)
            .delete
            .iter()
            .map(|r| format!("{}/{}", r.kind, r.name))
            .collect();
        assert_eq!(gone, ["Deployment/worker", "Service/web"]);
    }

    #[test]
    fn identity_ignores_the_api_version_so_a_version_change_is_an_update() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "shop"}});
        let v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "shop"}});
        let cr_old = json!({"apiVersion": "demo.gantry.dev/v1alpha1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "shop"}});
        let cr_new = json!({"apiVersion": "demo.gantry.dev/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "shop"}});
        let other_group = json!({"apiVersion": "other.example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "shop"}});
        assert_eq!(
            removal(&[v1.clone(), cr_old.clone()], &[v2, cr_new.clone()]),
            Removal::default()
        );
        // Same kind and name in another group is another object.
        let removed = removal(&[other_group, cr_old], &[cr_new]);
        assert_eq!(removed.delete.len(), 1);
        assert_eq!(removed.delete[0].api_version, "other.example.com/v1");
        // Listed twice under two versions (an older record): removed once.
        assert_eq!(removal(&[v1.clone(), v1], &[]).delete.len(), 1);
    }

    #[test]
    fn data_and_scope_holders_are_kept_unless_they_opt_in() {
        let pvc = |name: &str, allow: bool| {
            let mut object = object("PersistentVolumeClaim", name);
            if allow {
                object["metadata"]["annotations"] = json!({ALLOW_DELETE_ANNOTATION: "true"});
            }
            object
        };
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.demo.gantry.dev"}});
        let namespace =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}});
        let pv =
            json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-1"}});
        // Another group's kind named like a protected one is not protected.
        let lookalike = json!({"apiVersion": "storage.example.com/v1", "kind": "Namespace",
            "metadata": {"name": "fake"}});
        let previous = [
            namespace,
            crd,
            pv,
            pvc("data", false),
            pvc("scratch", true),
            object("ConfigMap", "cfg"),
            lookalike,
        ];
        let found = removal(&previous, &[]);
        let names = |refs: &[ObjectRef]| -> Vec<String> {
            let mut names: Vec<String> = refs
                .iter()
                .map(|r| format!("{}/{}", r.kind, r.name))
                .collect();
            names.sort();
            names
        };
        assert_eq!(
            names(&found.keep),
            [
                "CustomResourceDefinition/widgets.demo.gantry.dev",
                "Namespace/team",
                "PersistentVolume/pv-1",
                "PersistentVolumeClaim/data"
            ]
        );
        assert_eq!(
            names(&found.delete),
            [
                "ConfigMap/cfg",
                "Namespace/fake",
                "PersistentVolumeClaim/scratch"
            ]
        );
    }

    #[test]
    fn a_namespace_change_is_a_move_delete_and_create() {
        let mut moved_cfg = object("ConfigMap", "cfg");
        moved_cfg["metadata"]["namespace"] = json!("shop-2");
        let previous = [object("ConfigMap", "cfg"), object("Service", "web")];
        let next = [moved_cfg, object("Service", "web")];
        let pairs = moved(&previous, &next);
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].0.namespace.as_deref(), Some("shop"));
        assert_eq!(pairs[0].1.namespace.as_deref(), Some("shop-2"));
        assert_eq!(removal(&previous, &next).delete.len(), 1);
    }

    #[test]
    fn rollback_restores_every_kind_and_deletes_what_the_failed_release_added() {
        let good = release(
            3,
            ReleaseStatus::Deployed,
            &[object("ConfigMap", "cfg"), object("Deployment", "web")],
        );
        let failed = release(
            4,
            ReleaseStatus::Pending,
            &[
                object("ConfigMap", "cfg"),
                object("Service", "new"),
                object("Deployment", "web"),
            ],
        );
        match rollback_plan(&failed, Some(&good)) {
            RollbackPlan::Restore {
                to,
                reapply,
                removal,
            } => {
                assert_eq!(to, 3);
                assert_eq!(reapply, good.manifests);
                assert_eq!(removal.delete.len(), 1);
                assert_eq!(removal.delete[0].name, "new");
            }
            other => panic!("expected a restore, got {other:?}"),
        }
        match rollback_plan(&failed, None) {
            RollbackPlan::RemoveAll { removal } => {
                let kinds: Vec<&str> = removal.delete.iter().map(|r| r.kind.as_str()).collect();
                assert_eq!(kinds, ["Deployment", "Service", "ConfigMap"]);
            }
            other => panic!("expected removal, got {other:?}"),
        }
    }

    #[test]
    fn a_rollback_deletes_only_what_the_failed_run_created() {
        let good = release(3, ReleaseStatus::Deployed, &[object("ConfigMap", "cfg")]);
        let failed = [
            object("ConfigMap", "cfg"),
            object("Service", "new"),
            object("Secret", "adopted"),
            object("ConfigMap", "unreached"),
        ];
        let created = ["Service/new (namespace shop)".to_string()];
        // (last good release, created by the run) -> (in scope, left as they are)
        type Case<'a> = (
            Option<&'a Release>,
            &'a [String],
            &'a [&'a str],
            &'a [&'a str],
        );
        let cases: [Case; 3] = [
            (
                Some(&good),
                &created,
                &["cfg", "new"],
                &[
                    "Secret/adopted (namespace shop)",
                    "ConfigMap/unreached (namespace shop)",
                ],
            ),
            (
                None,
                &created,
                &["new"],
                &[
                    "ConfigMap/cfg (namespace shop)",
                    "Secret/adopted (namespace shop)",
                    "ConfigMap/unreached (namespace shop)",
                ],
            ),
            (
                Some(&good),
                &[],
                &["cfg"],
                &[
                    "Service/new (namespace shop)",
                    "Secret/adopted (namespace shop)",
                    "ConfigMap/unreached (namespace shop)",
                ],
            ),
        ];
        for (last_good, created, in_scope, left_alone) in cases {
            let (scope, left) = rollback_scope(&failed, last_good, created);
            let left: Vec<String> = left.iter().map(ToString::to_string).collect();
            let names: Vec<&str> = scope
                .iter()
                .filter_map(|o| o.pointer("/metadata/name")?.as_str())
                .collect();
            assert_eq!(names, in_scope);
            assert_eq!(left, left_alone);
        }
    }

    #[test]
    fn objects_a_rolled_back_release_did_not_create_are_not_its_leftovers() {
        let good = release(1, ReleaseStatus::Deployed, &[object("ConfigMap", "cfg")]);
        let mut failed = release(
            2,
            ReleaseStatus::RolledBack,
            &[
                object("ConfigMap", "cfg"),
                object("Secret", "theirs"),
                object("Service", "ours"),
            ],
        );
        failed.not_created = vec![ObjectRef::of(&object("Secret", "theirs")).unwrap()];
        let names: Vec<String> = applied_since_last_good(&[good, failed])
            .iter()
            .filter_map(|o| Some(o.pointer("/metadata/name")?.as_str()?.to_string()))
            .collect();
        assert_eq!(names, ["cfg", "ours"]);
    }

    #[test]
    fn an_object_older_than_the_release_record_existed_before_its_run() {
        let mut record = release(2, ReleaseStatus::Pending, &[]);
        record.created = "2026-11-23T00:00:00.734521Z".into(); // as gantry writes it
        let live = |created: Option<&str>| match created {
            Some(time) => json!({"metadata": {"name": "x", "creationTimestamp": time}}),
            None => json!({"metadata": {"name": "x"}}),
        };
        // (the object's creationTimestamp, existed before the run)
        for (created, before) in [
            (Some("2026-11-22T23:58:59Z"), true),
            (Some("2026-11-22T23:59:59Z"), true),
            (Some("2026-11-23T00:00:00Z"), false), // the record's own second: the run's
            (Some("2026-11-23T00:00:05Z"), false),
            (Some("not a time"), false),
            (None, false),
        ] {
            assert_eq!(
                existed_before(&live(created), &record),
                before,
                "{created:?}"
            );
        }
    }

    #[test]
    fn history_queries() {
        use ReleaseStatus::*;
        let history = [
            release(1, Superseded, &[]),
            release(2, RolledBack, &[]),
            release(3, Superseded, &[]),
            release(4, Deployed, &[]),
            release(5, Pending, &[]),
        ];
        assert_eq!(last_deployed(&history).unwrap().number, 4);
        assert_eq!(next_number(&history), 6);
        assert_eq!(next_number(&[]), 1);
        assert_eq!(
            interrupted(&history)
                .iter()
                .map(|r| r.number)
                .collect::<Vec<_>>(),
            [5]
        );
        assert_eq!(rollback_target(&history, None).unwrap().number, 3);
        assert_eq!(rollback_target(&history, Some(1)).unwrap().number, 1);
        assert!(rollback_target(&history, Some(2))
            .unwrap_err()
            .contains("rolled back"));
        assert!(rollback_target(&history, Some(9))
            .unwrap_err()
            .contains("releases 1, 2, 3, 4, 5"));
        assert!(rollback_target(&[release(1, Deployed, &[])], None)
            .unwrap_err()
            .contains("no good release before the current release 1"));
    }

    #[test]
    fn objects_of_failed_releases_after_the_last_good_are_still_considered() {
        use ReleaseStatus::*;
        let history = [
            release(1, Failed, &[object("Service", "ancient")]),
            release(2, Deployed, &[object("Deployment", "web")]),
            release(3, Failed, &[object("Service", "cancelled-run")]),
            release(4, RolledBack, &[object("ConfigMap", "rolled")]),
        ];
        let names: Vec<String> = applied_since_last_good(&history)
            .iter()
            .filter_map(ObjectRef::of)
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["cancelled-run", "rolled"]);
        assert!(applied_since_last_good(&history[..2]).is_empty());
    }

    #[test]
    fn history_trimming_never_drops_the_current_or_a_pending_release() {
        use ReleaseStatus::*;
        let history = [
            release(1, Superseded, &[]),
            release(2, Deployed, &[]),
            release(3, Failed, &[]),
            release(4, RolledBack, &[]),
            release(5, Pending, &[]),
        ];
        assert_eq!(records_to_drop(&history, 2), [1, 3]);
        assert_eq!(records_to_drop(&history, 10), Vec::<u64>::new());
        assert_eq!(records_to_drop(&history, 0), [1, 3, 4]);
    }

    #[test]
    fn replicas_an_autoscaler_manages_are_left_out_of_a_restore() {
        let deployment = |name: &str| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "shop"}, "spec": {"replicas": 3, "paused": false}})
        };
        let hpa = |target_kind: &str, target: &str, namespace: &str| {
            json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": format!("{target}-hpa"), "namespace": namespace},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": target_kind, "name": target}}})
        };
        let objects = [deployment("web"), deployment("worker"), deployment("api")];
        let autoscalers = [
            hpa("Deployment", "web", "shop"),
            hpa("StatefulSet", "worker", "shop"),
            hpa("Deployment", "api", "elsewhere"),
        ];
        let (restored, notes) = leave_to_autoscalers(&objects, &autoscalers);
        assert!(restored[0]["spec"].get("replicas").is_none());
        assert_eq!(
            restored[0]["spec"]["paused"], false,
            "only replicas is left out"
        );
        assert_eq!(
            restored[1]["spec"]["replicas"], 3,
            "another kind is another target"
        );
        assert_eq!(
            restored[2]["spec"]["replicas"], 3,
            "another namespace is another target"
        );
        assert_eq!(
            notes,
            ["Deployment/web (namespace shop): spec.replicas (HorizontalPodAutoscaler/web-hpa)"]
        );
    }
}
