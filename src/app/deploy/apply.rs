//! Applying a release: server-side apply of every object in dependency order, independent objects of one rank concurrently up to a bound, CustomResourceDefinitions waited until Established before what uses them.

use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde_json::Value;

use super::observe::{observe, Live, Observed};
use crate::adapters::kube::{ApplyOptions, Cluster, KubeError};
use crate::manifests::apply_rank;
use crate::pipeline::facts::{ChangeAction, ObjectChange};
use crate::release::ObjectRef;

/// How long a CustomResourceDefinition may take to become Established.
const CRD_ESTABLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// What an apply does when another field manager owns a field it sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Conflicts {
    /// Fail naming the other manager (`force` of [`ApplyOptions`] decides).
    #[default]
    AsOptions,
    /// Take the fields over and say which (a rollback: restoring is the point).
    TakeOver,
}

/// The result of applying a set of objects.
#[derive(Debug, Default)]
pub struct Applied {
    /// With [`Conflicts::TakeOver`]: `object: conflicts` of every object whose fields were
    /// taken from another field manager.
    pub taken_over: Vec<String>,
    /// Objects deleted and created again: an immutable field changed and they are annotated
    /// `gantry.dev/replace: "true"`.
    pub replaced: Vec<String>,
    /// Objects applied, in apply order.
    pub changes: Vec<ObjectChange>,
    /// The first rank that failed: every error of it (later ranks were not applied).
    pub errors: Vec<KubeError>,
    /// Whether anything was written (false for a dry run or a failure on the first object).
    pub wrote: bool,
}

/// Applies `objects` (already in apply order) rank by rank; stops after the first rank with
/// an error so nothing is applied on top of a missing dependency.
pub async fn apply_all(
    cluster: &Cluster,
    objects: &[Value],
    options: ApplyOptions,
    concurrency: usize,
    step: &str,
) -> Applied {
    apply_all_with(
        cluster,
        objects,
        options,
        Conflicts::AsOptions,
        concurrency,
        step,
        None,
    )
    .await
}

/// [`apply_all`] with a choice of what conflicts do.
pub async fn apply_all_with(
    cluster: &Cluster,
    objects: &[Value],
    options: ApplyOptions,
    conflicts: Conflicts,
    concurrency: usize,
    step: &str,
    listed: Option<Observed>,
) -> Applied {
    let mut applied = Applied::default();
    let concurrency = cluster.concurrency(concurrency);
    // What exists and at which resourceVersion, for every object at once (listed now unless
    // the caller just did): the applies then need no read first, and say created (201),
    // changed or unchanged from their answers.
    let observed = match listed {
        Some(listed) => listed,
        None => observe(cluster, objects, concurrency).await,
    };
    let mut index = 0;
    while index < objects.len() {
        let end = rank_end(objects, index);
        let group = &objects[index..end];
        let how = How {
            options,
            conflicts,
            observed: &observed,
        };
        let results = apply_group(cluster, group, how, concurrency).await;
        for (position, result) in results {
            let name = ObjectRef::of(&group[position])
                .map(|r| r.to_string())
                .unwrap_or_default();
            applied.record(name, result, options.dry_run);
        }
        if !applied.errors.is_empty() {
            return applied;
        }
        if !options.dry_run {
            applied
                .errors
                .extend(wait_crds_established(cluster, group).await);
            if !applied.errors.is_empty() {
                return applied;
            }
        }
        index = end;
        if index < objects.len() && !options.dry_run {
            super::crash_point(&format!("{step}-between-ranks"));
        }
    }
    applied
}

impl Applied {
    /// Adds what applying the object `name` did (or its error).
    fn record(&mut self, name: String, result: Result<Taken, KubeError>, dry_run: bool) {
        match result {
            Ok((action, taken)) => {
                if let Some(conflicts) = taken {
                    self.taken_over.push(format!("{name}: {conflicts}"));
                }
                if action == ChangeAction::Replaced {
                    self.replaced.push(name.clone());
                }
                if !dry_run && action != ChangeAction::Unchanged {
                    self.wrote = true;
                }
                self.changes.push(ObjectChange {
                    object: name,
                    action,
                });
            }
            Err(err) => self.errors.push(err),
        }
    }
}

/// The end (exclusive) of the rank of objects that starts at `index`.
fn rank_end(objects: &[Value], index: usize) -> usize {
    let rank = rank_of(&objects[index]);
    objects[index..]
        .iter()
        .position(|o| rank_of(o) != rank)
        .map(|offset| index + offset)
        .unwrap_or(objects.len())
}

/// Applies the objects of one rank concurrently (up to `concurrency`); their results by
/// position in `group`, in order.
async fn apply_group(
    cluster: &Cluster,
    group: &[Value],
    how: How<'_>,
    concurrency: usize,
) -> Vec<(usize, Result<Taken, KubeError>)> {
    // Collected first: a stream built from a borrowing closure is not provably Send.
    let pending: Vec<_> = group
        .iter()
        .enumerate()
        .map(|(position, object)| indexed(position, apply_taking_over(cluster, object, how)))
        .collect();
    let mut ordered: Vec<(usize, Result<Taken, KubeError>)> = stream::iter(pending)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    ordered.sort_by_key(|(position, _)| *position);
    ordered
}

/// Waits until every CustomResourceDefinition of `group` is Established; the errors of those
/// that are not.
async fn wait_crds_established(cluster: &Cluster, group: &[Value]) -> Vec<KubeError> {
    let mut errors = Vec::new();
    for crd in group
        .iter()
        .filter(|o| kind_of(o) == "CustomResourceDefinition")
    {
        if let Err(err) = wait_established(cluster, crd).await {
            errors.push(err);
        }
    }
    errors
}

async fn indexed<F: std::future::Future>(position: usize, future: F) -> (usize, F::Output) {
    (position, future.await)
}

fn kind_of(object: &Value) -> &str {
    object.get("kind").and_then(Value::as_str).unwrap_or("")
}

fn rank_of(object: &Value) -> u8 {
    apply_rank(kind_of(object))
}

/// What applying one object did, and the conflicts it took over (if any).
type Taken = (ChangeAction, Option<String>);

/// How the objects of one apply are applied, and what existed before it.
#[derive(Clone, Copy)]
struct How<'o> {
    options: ApplyOptions,
    conflicts: Conflicts,
    observed: &'o Observed,
}

/// Applies one object; with [`Conflicts::TakeOver`] a conflict is applied again forced and the
/// conflicting fields returned.
async fn apply_taking_over(
    cluster: &Cluster,
    object: &Value,
    how: How<'_>,
) -> Result<Taken, KubeError> {
    let options = how.options;
    match apply_replacing(cluster, object, how).await {
        Err(KubeError::ApplyConflict {
            conflicts: fields, ..
        }) if how.conflicts == Conflicts::TakeOver && !options.force => {
            let forced = How {
                options: ApplyOptions {
                    force: true,
                    ..options
                },
                ..how
            };
            let action = apply_replacing(cluster, object, forced).await?;
            Ok((action, Some(fields)))
        }
        other => other.map(|action| (action, None)),
    }
}

/// Applies one object; an object annotated `gantry.dev/replace: "true"` whose change touches an
/// immutable field is deleted (waiting until it is gone) and created again ([`ChangeAction::Replaced`]).
async fn apply_replacing(
    cluster: &Cluster,
    object: &Value,
    how: How<'_>,
) -> Result<ChangeAction, KubeError> {
    let options = how.options;
    match apply_one(cluster, object, how).await {
        Err(KubeError::Immutable { .. })
            if !options.dry_run && crate::release::allows_replace(object) =>
        {
            let reference = ObjectRef::of(object).ok_or_else(|| KubeError::Invalid {
                object: "an object".into(),
                causes: "apiVersion, kind and metadata.name are required".into(),
            })?;
            cluster.delete(&reference).await?;
            wait_gone(cluster, &reference).await?;
            cluster.apply(object, options).await?;
            Ok(ChangeAction::Replaced)
        }
        other => other,
    }
}

/// Waits until a deleted object is gone (finalizers done).
async fn wait_gone(cluster: &Cluster, reference: &ObjectRef) -> Result<(), KubeError> {
    let started = std::time::Instant::now();
    while cluster.get(reference).await?.is_some() {
        if started.elapsed() > CRD_ESTABLISH_TIMEOUT {
            return Err(KubeError::Api {
                object: reference.to_string(),
                code: 0,
                reason: "NotDeleted".into(),
                message: format!(
                    "still there {}s after gantry deleted it to create it again (a finalizer?)",
                    CRD_ESTABLISH_TIMEOUT.as_secs()
                ),
                retry_after: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Applies one object in one request and says whether it was created (the API answered 201),
/// changed or left as it was (its resourceVersion before the apply, from the LIST, is kept).
async fn apply_one(
    cluster: &Cluster,
    object: &Value,
    how: How<'_>,
) -> Result<ChangeAction, KubeError> {
    let options = how.options;
    let reference = ObjectRef::of(object).ok_or_else(|| KubeError::Invalid {
        object: "an object".into(),
        causes: "apiVersion, kind and metadata.name are required".into(),
    })?;
    let before = match how.observed.live(&reference) {
        Live::Found(found) => Some(std::borrow::Cow::Borrowed(found)),
        Live::Absent => None,
        // Its kind could not be listed: read it alone.
        Live::Unknown(_) => match cluster.get(&reference).await {
            Ok(found) => found.map(std::borrow::Cow::Owned),
            // The namespace of a dry run may not exist yet; the apply itself tells.
            Err(KubeError::NotFound { .. } | KubeError::UnknownKind { .. }) => None,
            Err(err) => return Err(err),
        },
    };
    let answer = cluster.apply_answer(object, options).await?;
    let after = answer.object;
    if answer.created {
        return Ok(ChangeAction::Created);
    }
    Ok(match before {
        // Created by someone else between the LIST and the apply.
        None => ChangeAction::Configured,
        Some(before) => {
            let version = |v: &Value| {
                v.pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let same = if options.dry_run {
                crate::release::diff::changed_fields(&before, &after).is_empty()
            } else {
                version(&before) == version(&after)
            };
            if same {
                ChangeAction::Unchanged
            } else {
                ChangeAction::Configured
            }
        }
    })
}

/// Waits until a CustomResourceDefinition reports `Established=True`.
async fn wait_established(cluster: &Cluster, crd: &Value) -> Result<(), KubeError> {
    let reference = ObjectRef::of(crd).ok_or_else(|| KubeError::Invalid {
        object: "a CustomResourceDefinition".into(),
        causes: "metadata.name is required".into(),
    })?;
    let started = std::time::Instant::now();
    loop {
        if let Some(current) = cluster.get(&reference).await? {
            let established = current
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|conditions| {
                    conditions.iter().any(|c| {
                        c.get("type").and_then(Value::as_str) == Some("Established")
                            && c.get("status").and_then(Value::as_str) == Some("True")
                    })
                });
            if established {
                return wait_served(cluster, crd, started).await;
            }
        }
        if started.elapsed() > CRD_ESTABLISH_TIMEOUT {
            return Err(KubeError::Api {
                object: reference.to_string(),
                code: 0,
                reason: "NotEstablished".into(),
                message: format!(
                    "not Established after {}s; its custom resources cannot be applied",
                    CRD_ESTABLISH_TIMEOUT.as_secs()
                ),
                retry_after: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// After `Established`, waits until API discovery serves every version of the CRD, so the
/// custom resources of the next rank resolve.
async fn wait_served(
    cluster: &Cluster,
    crd: &Value,
    started: std::time::Instant,
) -> Result<(), KubeError> {
    for (api_version, kind) in super::preflight::kinds_defined_by_crds(std::slice::from_ref(crd)) {
        loop {
            match cluster.resolve(&api_version, &kind).await {
                Ok(_) => break,
                Err(KubeError::UnknownKind { .. }) if started.elapsed() < CRD_ESTABLISH_TIMEOUT => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(err) => return Err(err),
            }
        }
    }
    Ok(())
}

/// Deletes objects (already in delete order); returns the ones deleted and every error.
pub async fn delete_all(cluster: &Cluster, objects: &[ObjectRef]) -> (Vec<String>, Vec<KubeError>) {
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for object in objects {
        match cluster.delete(object).await {
            Ok(_) => deleted.push(object.to_string()),
            Err(err) => errors.push(err),
        }
    }
    (deleted, errors)
}
