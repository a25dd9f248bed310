//! Release records and the environment lock in the cluster: release Secrets read, written and trimmed, and the Lease taken, renewed while gantry runs, and released.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use crate::adapters::kube::{ApplyOptions, Cluster, Fence, KubeError};
use crate::release::lease::{self, LockState};
use crate::release::records::{self, RecordIndex};
use crate::release::{self, ObjectRef, Release};

/// Where an environment's records and lock live.
#[derive(Debug, Clone)]
pub struct StoreLocation {
    pub namespace: String,
    pub environment: String,
}

/// The environment's release records as read: the releases (oldest first) with the digests of
/// their stored bytes, what could not be read, and what is not to be trusted.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub releases: Vec<Release>,
    pub digests: BTreeMap<u64, String>,
    /// Records that cannot be read (named), reported as warnings.
    pub warnings: Vec<String>,
    /// Records gantry did not write, or that were changed (named): the run stops before
    /// anything is applied.
    pub untrusted: Vec<String>,
    /// The record index as stored, with its resourceVersion; `None` when none exists yet
    /// (a new environment, or records written by gantry 0.1 to adopt).
    pub index: Option<(RecordIndex, Option<String>)>,
}

impl History {
    /// Records exist but no index: written by gantry 0.1, adopted by the next run that holds
    /// the lock.
    pub fn needs_adoption(&self) -> bool {
        self.index.is_none() && !self.releases.is_empty()
    }
}

fn index_reference(at: &StoreLocation) -> ObjectRef {
    ObjectRef {
        api_version: "coordination.k8s.io/v1".into(),
        kind: "Lease".into(),
        namespace: Some(at.namespace.clone()),
        name: records::index_name(&at.environment),
    }
}

/// The Secrets labelled with the environment: its release records and lock events.
async fn environment_secrets(
    cluster: &Cluster,
    at: &StoreLocation,
) -> Result<Vec<Value>, KubeError> {
    let selector = format!("{}={}", release::ENVIRONMENT_LABEL, at.environment);
    cluster
        .list("v1", "Secret", Some(&at.namespace), Some(&selector))
        .await
}

/// Reads every release record of the environment and checks it against the record index and
/// the chain (see [`crate::release::records`]).
pub async fn history(cluster: &Cluster, at: &StoreLocation) -> Result<History, KubeError> {
    // The records and their index, read together.
    let index_ref = index_reference(at);
    let (secrets, index) =
        futures::join!(environment_secrets(cluster, at), cluster.get(&index_ref));
    let secrets = secrets?;
    let (decoded, warnings) = records::decode_all(&secrets);
    let decoded: Vec<(Release, String)> = decoded
        .into_iter()
        .filter(|(r, _)| r.environment == at.environment)
        .collect();
    let index = match index {
        Ok(Some(lease)) => {
            let version = lease
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
            let text = lease
                .pointer(&format!(
                    "/metadata/annotations/{}",
                    records::INDEX_ANNOTATION.replace('/', "~1")
                ))
                .and_then(Value::as_str)
                .unwrap_or("");
            Some((RecordIndex::parse(text).unwrap_or_default(), version))
        }
        Ok(None) => None,
        Err(err) => return Err(err),
    };
    let untrusted = match &index {
        Some((index, _)) => records::verify(&decoded, index),
        None => Vec::new(),
    };
    Ok(History {
        digests: decoded.iter().map(|(r, d)| (r.number, d.clone())).collect(),
        releases: decoded.into_iter().map(|(r, _)| r).collect(),
        warnings,
        untrusted,
        index,
    })
}

/// Writes release records and keeps the record index in step; one per run, used while the
/// environment lock is held (so it is the only writer).
pub struct Records {
    at: StoreLocation,
    index: tokio::sync::Mutex<(RecordIndex, Option<String>)>,
}

impl Records {
    /// Continues from the history as read (its index, or an empty one).
    pub fn new(at: &StoreLocation, history: &History) -> Records {
        Records {
            at: at.clone(),
            index: tokio::sync::Mutex::new(history.index.clone().unwrap_or_default()),
        }
    }

    /// Adopts records written before the index existed (gantry 0.1): their digests become the
    /// index. Returns how many were adopted.
    pub async fn adopt(&self, cluster: &Cluster, history: &History) -> Result<usize, String> {
        let mut guard = self.index.lock().await;
        let mut index = guard.0.clone();
        for (number, digest) in &history.digests {
            index = index.before_write(*number, digest);
        }
        let version = self.write_index(cluster, &index, guard.1.clone()).await?;
        *guard = (index, version);
        Ok(history.digests.len())
    }

    /// Writes (creates or updates) a release record: first the index learns its new digest,
    /// then the Secret(s) are written with server-side apply.
    pub async fn save(&self, cluster: &Cluster, record: &Release) -> Result<(), String> {
        let (secrets, digest) =
            records::encode(record, &self.at.namespace).map_err(|err| err.to_string())?;
        let mut guard = self.index.lock().await;
        let index = guard.0.before_write(record.number, &digest);
        if index != guard.0 {
            let version = self.write_index(cluster, &index, guard.1.clone()).await?;
            *guard = (index, version);
        }
        for secret in &secrets {
            cluster
                .apply(
                    secret,
                    ApplyOptions {
                        dry_run: false,
                        force: true,
                    },
                )
                .await
                .map_err(|err| err.to_string())?;
        }
        Ok(())
    }

    /// Deletes the records of these release numbers (every part) and forgets them.
    pub async fn drop_records(&self, cluster: &Cluster, numbers: &[u64]) -> Result<(), String> {
        if numbers.is_empty() {
            return Ok(());
        }
        for number in numbers {
            let parts = cluster
                .list(
                    "v1",
                    "Secret",
                    Some(&self.at.namespace),
                    Some(&format!(
                        "{}={},{}={number}",
                        release::ENVIRONMENT_LABEL,
                        self.at.environment,
                        release::RELEASE_LABEL
                    )),
                )
                .await
                .map_err(|err| err.to_string())?;
            for part in parts {
                let Some(name) = part.pointer("/metadata/name").and_then(Value::as_str) else {
                    continue;
                };
                cluster
                    .delete(&ObjectRef {
                        api_version: "v1".into(),
                        kind: "Secret".into(),
                        namespace: Some(self.at.namespace.clone()),
                        name: name.to_string(),
                    })
                    .await
                    .map_err(|err| err.to_string())?;
            }
        }
        let mut guard = self.index.lock().await;
        let index = guard.0.without(numbers);
        let version = self.write_index(cluster, &index, guard.1.clone()).await?;
        *guard = (index, version);
        Ok(())
    }

    /// Creates or replaces the index Lease (with its last resourceVersion: a concurrent writer
    /// makes this fail rather than be overwritten). Returns the new resourceVersion.
    async fn write_index(
        &self,
        cluster: &Cluster,
        index: &RecordIndex,
        version: Option<String>,
    ) -> Result<Option<String>, String> {
        let mut lease = serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": records::index_name(&self.at.environment),
                "namespace": self.at.namespace,
                "labels": {
                    "app.kubernetes.io/managed-by": "gantry",
                    release::ENVIRONMENT_LABEL: self.at.environment,
                },
                "annotations": {records::INDEX_ANNOTATION: index.to_annotation()},
            },
            "spec": {},
        });
        let written = match &version {
            Some(version) => {
                lease["metadata"]["resourceVersion"] = Value::String(version.clone());
                cluster.replace(&lease).await
            }
            None => cluster.create(&lease).await,
        }
        .map_err(|err| format!("could not write the record index: {err}"))?;
        Ok(written
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string))
    }
}

/// Records that the environment lock was broken: one Secret per event, named by its time.
pub async fn save_lock_event(
    cluster: &Cluster,
    at: &StoreLocation,
    time: &Timestamp,
    sentence: &str,
) -> Result<(), KubeError> {
    let secret = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": release::EVENT_SECRET_TYPE,
        "metadata": {
            "name": format!("gantry.event.{}.{}", at.environment, time.as_millisecond()),
            "namespace": at.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "gantry",
                release::ENVIRONMENT_LABEL: at.environment,
            },
        },
        "stringData": {"time": time.to_string(), "event": sentence},
    });
    cluster.create(&secret).await.map(|_| ())
}

/// The lock events of the environment, newest first: `time: sentence`.
pub async fn lock_events(cluster: &Cluster, at: &StoreLocation) -> Result<Vec<String>, KubeError> {
    use base64::Engine as _;
    let secrets = environment_secrets(cluster, at).await?;
    let decode = |secret: &Value, key: &str| -> String {
        secret
            .pointer(&format!("/data/{key}"))
            .and_then(Value::as_str)
            .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text).ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    };
    let mut events: Vec<(String, String)> = secrets
        .iter()
        .filter(|s| s.get("type").and_then(Value::as_str) == Some(release::EVENT_SECRET_TYPE))
        .map(|s| (decode(s, "time"), decode(s, "event")))
        .collect();
    events.sort();
    Ok(events
        .into_iter()
        .rev()
        .map(|(time, event)| format!("{time}: {event}"))
        .collect())
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the environment is locked by {holder} (another gantry run); waited {waited}s (lock-timeout). A holder that stops renewing loses the lock after its lease duration; `gantry unlock` breaks a lock whose run is known to be gone")]
    Held { holder: String, waited: u64 },
    #[error("cannot take the environment lock: {0}")]
    Api(#[from] KubeError),
    #[error("cancelled while waiting for the environment lock held by {holder}")]
    Cancelled { holder: String },
    #[error("the environment lock {lease} is not a Lease gantry can read ({reason}); it was edited by hand. Nothing was written: delete it with `kubectl delete lease {name} -n {namespace}` or run `gantry unlock`")]
    Invalid {
        lease: String,
        name: String,
        namespace: String,
        reason: String,
    },
}

/// A held environment lock, renewed in the background until released; its [`Fence`] stops
/// every write through the cluster once the lock may have passed to another run.
pub struct HeldLock {
    renewer: tokio::task::JoinHandle<()>,
    pub fence: Arc<Fence>,
    cluster: Arc<Cluster>,
    reference: ObjectRef,
    me: String,
    /// Whose lock this run took over because its holder stopped renewing.
    pub taken_over_from: Option<String>,
    /// The Lease as this run last wrote it (taken or renewed), so releasing it is one request.
    written: Arc<std::sync::Mutex<Option<Lease>>>,
}

impl HeldLock {
    /// Stops renewing and hands the lock back (the next run takes it at once).
    pub async fn release(self) -> Result<(), KubeError> {
        self.renewer.abort();
        self.cluster.set_fence(None);
        // As last written (its resourceVersion proves nobody changed it since): released in
        // one request while the fence holds; a conflict means it changed, and it is read again.
        // Past the fence's deadline another run may hold it: read first, write only if ours.
        let fresh = self.fence.valid();
        let written = self
            .written
            .lock()
            .ok()
            .and_then(|mut w| w.take())
            .filter(|_| fresh);
        if let Some(written) = written {
            let released = lease::released(written);
            match self.cluster.replace_unfenced(&with_type(released)).await {
                Ok(_) => return Ok(()),
                Err(KubeError::Conflict { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        let current: Option<Lease> = self.cluster.get_typed(&self.reference).await?;
        if let Some(current) = current {
            let holder = current
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.clone());
            if holder.as_deref() == Some(self.me.as_str()) {
                let released = lease::released(current);
                self.cluster.replace_unfenced(&with_type(released)).await?;
            }
        }
        Ok(())
    }
}

fn with_type(lease: Lease) -> Value {
    let mut value = serde_json::to_value(lease).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), "coordination.k8s.io/v1".into());
        map.insert("kind".into(), "Lease".into());
    }
    value
}

/// The Lease of an environment's lock.
pub fn lease_reference(at: &StoreLocation) -> ObjectRef {
    ObjectRef {
        api_version: "coordination.k8s.io/v1".into(),
        kind: "Lease".into(),
        namespace: Some(at.namespace.clone()),
        name: release::lease_name(&at.environment),
    }
}

/// How the lock is held: the holder identity of this run and the lease duration it declares.
#[derive(Debug, Clone)]
pub struct LockTerms {
    pub me: String,
    pub duration: Duration,
    /// How long to wait for a live holder before failing.
    pub timeout: Duration,
}

/// Takes the environment lock, waiting up to `timeout` for a live holder. A holder is gone
/// only once its Lease stayed unchanged for its whole lease duration on this run's own clock
/// (see [`crate::release::lease`]); then it is taken over. The lock is renewed every third of
/// its duration, and the cluster's writes are fenced by it from here on.
pub async fn lock(
    cluster: Arc<Cluster>,
    at: &StoreLocation,
    terms: &LockTerms,
    cancel: &crate::cancel::Cancel,
    mut waiting: impl FnMut(&str),
) -> Result<HeldLock, LockError> {
    let mut locker = Locker {
        reference: lease_reference(at),
        cluster,
        at,
        terms,
        started: Instant::now(),
        announced: false,
        watched: None,
    };
    loop {
        let (current, state) = locker.observe().await?;
        let sent = Instant::now();
        match locker.attempt(&state, current.as_ref()).await? {
            Attempt::Taken {
                taken_over_from,
                written,
            } => return Ok(locker.held(sent, taken_over_from, written.map(|w| *w))),
            // Another run won the race: look again.
            Attempt::Raced => continue,
            Attempt::NotFree => {}
        }
        let LockState::Held { holder, left } = state else {
            continue;
        };
        locker.wait(holder, left, cancel, &mut waiting).await?;
    }
}

/// One run trying to take the lock: what it has seen of the Lease, and since when it waits.
struct Locker<'a> {
    cluster: Arc<Cluster>,
    at: &'a StoreLocation,
    terms: &'a LockTerms,
    reference: ObjectRef,
    started: Instant,
    /// Whether `waiting` was told about the holder.
    announced: bool,
    /// The Lease as last seen, and since when it is unchanged.
    watched: Option<(lease::Observed, Instant)>,
}

/// What one attempt to take the Lease came to.
enum Attempt {
    /// The Lease is ours (`written`, as the server has it); `taken_over_from` names a holder
    /// that had stopped renewing.
    Taken {
        taken_over_from: Option<String>,
        written: Option<Box<Lease>>,
    },
    /// Another run created or changed the Lease first.
    Raced,
    /// A live holder has it: nothing was sent.
    NotFree,
}

impl Locker<'_> {
    /// Reads the Lease, notes when it last changed, and says who holds it.
    async fn observe(&mut self) -> Result<(Option<Lease>, LockState), KubeError> {
        let current: Option<Lease> = self.cluster.get_typed(&self.reference).await?;
        if let Some(lease) = &current {
            let seen = lease::Observed::of(lease);
            if self
                .watched
                .as_ref()
                .is_none_or(|(before, _)| *before != seen)
            {
                self.watched = Some((seen, Instant::now()));
            }
        }
        let state = lease::state(
            current.as_ref(),
            &self.terms.me,
            self.watched
                .as_ref()
                .map(|(seen, since)| (seen, since.elapsed())),
        );
        Ok((current, state))
    }

    /// The Lease held by this run, replacing `previous`.
    fn take(&self, previous: Option<&Lease>) -> Value {
        with_type(lease::taken(
            &self.reference.name,
            &self.at.namespace,
            &self.at.environment,
            &self.terms.me,
            Timestamp::now(),
            self.terms.duration,
            previous,
        ))
    }

    /// Creates or replaces the Lease when `state` lets this run take it.
    async fn attempt(
        &self,
        state: &LockState,
        current: Option<&Lease>,
    ) -> Result<Attempt, LockError> {
        let mut taken_over_from = None;
        let sent = match state {
            LockState::Free => self.cluster.create_unfenced(&self.take(None)).await,
            LockState::Expired { holder } => {
                taken_over_from = Some(holder.clone());
                self.cluster.replace_unfenced(&self.take(current)).await
            }
            LockState::Released | LockState::Ours => {
                self.cluster.replace_unfenced(&self.take(current)).await
            }
            LockState::Invalid { reason } => {
                return Err(LockError::Invalid {
                    lease: self.reference.to_string(),
                    name: self.reference.name.clone(),
                    namespace: self.at.namespace.clone(),
                    reason: reason.clone(),
                })
            }
            LockState::Held { .. } => return Ok(Attempt::NotFree),
        };
        match sent {
            Ok(written) => Ok(Attempt::Taken {
                taken_over_from,
                written: serde_json::from_value(written).ok(),
            }),
            Err(KubeError::AlreadyExists { .. } | KubeError::Conflict { .. }) => Ok(Attempt::Raced),
            Err(err) => Err(err.into()),
        }
    }

    /// The lock as taken (its write sent at `sent`): fences the cluster's writes and starts
    /// renewing it.
    fn held(
        self,
        sent: Instant,
        taken_over_from: Option<String>,
        written: Option<Lease>,
    ) -> HeldLock {
        let fence = Arc::new(Fence::new(sent, self.terms.duration));
        self.cluster.set_fence(Some(fence.clone()));
        let written = Arc::new(std::sync::Mutex::new(written));
        let renewer = tokio::spawn(renew(
            self.cluster.clone(),
            self.reference.clone(),
            self.at.clone(),
            self.terms.clone(),
            (fence.clone(), written.clone()),
        ));
        HeldLock {
            renewer,
            fence,
            cluster: self.cluster,
            reference: self.reference,
            me: self.terms.me.clone(),
            taken_over_from,
            written,
        }
    }

    /// Waits a while for `holder` (whose lease has `left` to run) before looking again; fails
    /// once the lock timeout has passed or the run is cancelled.
    async fn wait(
        &mut self,
        holder: String,
        left: Duration,
        cancel: &crate::cancel::Cancel,
        waiting: &mut impl FnMut(&str),
    ) -> Result<(), LockError> {
        if self.started.elapsed() >= self.terms.timeout {
            return Err(LockError::Held {
                holder,
                waited: self.started.elapsed().as_secs(),
            });
        }
        if !self.announced {
            waiting(&holder);
            self.announced = true;
        }
        let pause = Duration::from_millis(500)
            .min(left)
            .min(self.terms.timeout.saturating_sub(self.started.elapsed()));
        tokio::select! {
            _ = tokio::time::sleep(pause) => Ok(()),
            _ = cancel.cancelled() => Err(LockError::Cancelled { holder }),
        }
    }
}

/// Renews the Lease every third of its duration. A renewal that finds another holder loses
/// the lock (the fence refuses every later write); one that fails leaves the deadline where it
/// was, so writes stop when it passes.
async fn renew(
    cluster: Arc<Cluster>,
    reference: ObjectRef,
    at: StoreLocation,
    terms: LockTerms,
    (fence, written): (Arc<Fence>, Arc<std::sync::Mutex<Option<Lease>>>),
) {
    loop {
        tokio::time::sleep(terms.duration / 3).await;
        let sent = Instant::now();
        let current: Option<Lease> = match cluster.get_typed(&reference).await {
            Ok(current) => current,
            Err(_) => continue,
        };
        let holder = current
            .as_ref()
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.holder_identity.clone());
        if holder.as_deref() != Some(terms.me.as_str()) {
            fence.lose(
                holder
                    .as_deref()
                    .unwrap_or("nobody (the Lease was released or edited)"),
            );
            return;
        }
        let renewed = lease::taken(
            &reference.name,
            &at.namespace,
            &at.environment,
            &terms.me,
            Timestamp::now(),
            terms.duration,
            current.as_ref(),
        );
        if let Ok(answer) = cluster.replace_unfenced(&with_type(renewed)).await {
            fence.renewed(sent, terms.duration);
            if let Ok(mut slot) = written.lock() {
                *slot = serde_json::from_value(answer).ok();
            }
        }
    }
}

/// What `unlock` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unlocked {
    /// Nobody held the lock.
    WasFree,
    /// The lock of `holder` (last renewed at `renewed`) was broken.
    Broken {
        holder: String,
        renewed: Option<String>,
    },
}

/// Breaks the environment lock whoever holds it (the `unlock` command): the Lease is released
/// with its resourceVersion, so a holder renewing at the same moment wins and nothing is broken.
pub async fn unlock(cluster: &Cluster, at: &StoreLocation) -> Result<Unlocked, KubeError> {
    let reference = lease_reference(at);
    let Some(current) = cluster.get_typed::<Lease>(&reference).await? else {
        return Ok(Unlocked::WasFree);
    };
    let spec = current.spec.clone().unwrap_or_default();
    let Some(holder) = spec.holder_identity.filter(|h| !h.is_empty()) else {
        return Ok(Unlocked::WasFree);
    };
    cluster
        .replace_unfenced(&with_type(lease::released(current)))
        .await?;
    Ok(Unlocked::Broken {
        holder,
        renewed: spec.renew_time.map(|t| t.0.to_string()),
    })
}
