//! Releases of an environment: the record stored in the cluster (one Secret per release), and the pure decisions over the history (last good release, what to prune, what a rollback re-applies and deletes, which records to drop).
//!
//! Design note: like Helm's release Secrets, a record holds the whole manifest set *as applied*
//! (gzip-compressed JSON, so a rollback re-applies exactly what ran, ConfigMaps and Services
//! included) plus the inventory of objects it owns. Pruning and rollback deletions come from
//! these inventories only, never from label selectors. Nothing here talks to a cluster.

pub mod diff;
pub mod lease;

use std::collections::BTreeSet;
use std::io::{Read, Write};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::manifests::ObjectKey;

/// The `type` of release Secrets; also how they are recognised.
pub const SECRET_TYPE: &str = "gantry.dev/release.v1";
/// Label carrying the environment on release Secrets and the lock Lease.
pub const ENVIRONMENT_LABEL: &str = "gantry.dev/environment";
/// Label carrying the release number on release Secrets.
pub const RELEASE_LABEL: &str = "gantry.dev/release";
/// Label carrying the release status on release Secrets (for `kubectl get secrets -l`).
pub const STATUS_LABEL: &str = "gantry.dev/status";
/// The field manager of every apply gantry makes.
pub const FIELD_MANAGER: &str = "gantry";
/// A Secret holds at most 1 MiB; the record must fit with room for metadata.
pub const MAX_RECORD_BYTES: usize = 1_000_000;

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

/// Why a stored record could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("release record {secret} has no `data.release`")]
    Missing { secret: String },
    #[error("release record {secret} is not valid base64/gzip/JSON: {reason}")]
    Corrupt { secret: String, reason: String },
    #[error("the release record is {size} bytes compressed and encoded, over the {MAX_RECORD_BYTES}-byte limit of a Secret; split the manifests or move large data out of ConfigMaps")]
    TooLarge { size: usize },
}

/// Encodes a release as the Secret that stores it (gzip JSON in `data.release`).
pub fn to_secret(release: &Release, namespace: &str) -> Result<Value, RecordError> {
    let json = serde_json::to_vec(release).map_err(|err| RecordError::Corrupt {
        secret: release.secret_name(),
        reason: err.to_string(),
    })?;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let compressed = encoder
        .write_all(&json)
        .and_then(|_| encoder.finish())
        .map_err(|err| RecordError::Corrupt {
            secret: release.secret_name(),
            reason: err.to_string(),
        })?;
    let data = base64::engine::general_purpose::STANDARD.encode(&compressed);
    if data.len() > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge { size: data.len() });
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": SECRET_TYPE,
        "metadata": {
            "name": release.secret_name(),
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "gantry",
                ENVIRONMENT_LABEL: release.environment,
                RELEASE_LABEL: release.number.to_string(),
                STATUS_LABEL: release.status.as_str(),
            },
        },
        "data": {"release": data},
    }))
}

/// Decodes a release Secret (as the API returns it: `data` values base64).
pub fn from_secret(secret: &Value) -> Result<Release, RecordError> {
    let name = secret
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    let data = secret
        .pointer("/data/release")
        .and_then(Value::as_str)
        .ok_or_else(|| RecordError::Missing {
            secret: name.clone(),
        })?;
    let corrupt = |reason: String| RecordError::Corrupt {
        secret: name.clone(),
        reason,
    };
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|err| corrupt(err.to_string()))?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .take(64 * 1024 * 1024)
        .read_to_end(&mut json)
        .map_err(|err| corrupt(err.to_string()))?;
    serde_json::from_slice(&json).map_err(|err| corrupt(err.to_string()))
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
        .flat_map(|r| r.manifests.iter().cloned())
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

/// Objects `previous` owned that `next` does not: what switching from one to the other
/// deletes, in reverse apply order (workloads before the Services and ConfigMaps they use,
/// Namespaces last).
pub fn objects_to_delete(previous: &[Value], next: &[Value]) -> Vec<ObjectRef> {
    let keep: BTreeSet<ObjectRef> = next.iter().filter_map(ObjectRef::of).collect();
    let mut gone: Vec<ObjectRef> = previous
        .iter()
        .filter_map(ObjectRef::of)
        .filter(|r| !keep.contains(r))
        .collect();
    gone.dedup();
    delete_order(&mut gone);
    gone
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
        delete: Vec<ObjectRef>,
    },
    /// No good release exists (a first release failed): remove everything it created.
    RemoveAll { delete: Vec<ObjectRef> },
}

/// Decides how to undo `failed`, given the last good release (if any).
pub fn rollback_plan(failed: &Release, last_good: Option<&Release>) -> RollbackPlan {
    match last_good {
        Some(good) => RollbackPlan::Restore {
            to: good.number,
            reapply: good.manifests.clone(),
            delete: objects_to_delete(&failed.manifests, &good.manifests),
        },
        None => RollbackPlan::RemoveAll {
            delete: objects_to_delete(&failed.manifests, &[]),
        },
    }
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
mod tests {
    use super::*;

    fn object(kind: &str, name: &str) -> Value {
        let api = match kind {
            "Deployment" => "apps/v1",
            _ => "v1",
        };
        json!({"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": "shop"}})
    }

    fn release(number: u64, status: ReleaseStatus, objects: &[Value]) -> Release {
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
        }
    }

    #[test]
    fn records_round_trip_through_the_secret_and_are_labelled() {
        let original = release(
            7,
            ReleaseStatus::Pending,
            &[object("ConfigMap", "cfg"), object("Deployment", "web")],
        );
        let secret = to_secret(&original, "shop").unwrap();
        assert_eq!(secret["metadata"]["name"], "gantry.release.dev.v7");
        assert_eq!(secret["metadata"]["labels"][STATUS_LABEL], "pending");
        assert_eq!(secret["metadata"]["labels"][RELEASE_LABEL], "7");
        assert_eq!(secret["type"], SECRET_TYPE);
        assert_eq!(from_secret(&secret).unwrap(), original);
    }

    #[test]
    fn corrupt_and_missing_records_are_named() {
        let missing = json!({"metadata": {"name": "gantry.release.dev.v1"}, "data": {}});
        assert_eq!(
            from_secret(&missing),
            Err(RecordError::Missing {
                secret: "gantry.release.dev.v1".into()
            })
        );
        let corrupt = json!({"metadata": {"name": "x"}, "data": {"release": "bm90IGd6aXA="}});
        assert!(matches!(
            from_secret(&corrupt),
            Err(RecordError::Corrupt { .. })
        ));
    }

    #[test]
    fn an_oversized_record_is_refused_before_it_is_written() {
        // Incompressible data: random-looking strings defeat gzip.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let noise: String = (0..1_600_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'a' + (state % 26) as u8)
            })
            .collect();
        let big = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"blob": noise}});
        assert!(matches!(
            to_secret(&release(1, ReleaseStatus::Pending, &[big]), "shop"),
            Err(RecordError::TooLarge { .. })
        ));
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
        let gone: Vec<String> = objects_to_delete(&previous, &next)
            .iter()
            .map(|r| format!("{}/{}", r.kind, r.name))
            .collect();
        assert_eq!(
            gone,
            ["Deployment/worker", "Service/web", "Namespace/old-ns"]
        );
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
                delete,
            } => {
                assert_eq!(to, 3);
                assert_eq!(reapply, good.manifests);
                assert_eq!(delete.len(), 1);
                assert_eq!(delete[0].name, "new");
            }
            other => panic!("expected a restore, got {other:?}"),
        }
        match rollback_plan(&failed, None) {
            RollbackPlan::RemoveAll { delete } => {
                let kinds: Vec<&str> = delete.iter().map(|r| r.kind.as_str()).collect();
                assert_eq!(kinds, ["Deployment", "Service", "ConfigMap"]);
            }
            other => panic!("expected removal, got {other:?}"),
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
}
