//! Release records and the environment lock in the cluster: release Secrets read, written and trimmed, and the Lease taken, renewed while gantry runs, and released.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use crate::adapters::kube::{ApplyOptions, Cluster, KubeError};
use crate::release::lease::{self, LockState, LEASE_DURATION};
use crate::release::{self, ObjectRef, Release};

/// Where an environment's records and lock live.
#[derive(Debug, Clone)]
pub struct StoreLocation {
    pub namespace: String,
    pub environment: String,
}

/// Reads every release record of the environment; unreadable records are returned as
/// warnings, never silently dropped.
pub async fn history(
    cluster: &Cluster,
    at: &StoreLocation,
) -> Result<(Vec<Release>, Vec<String>), KubeError> {
    let secrets = cluster
        .list(
            "v1",
            "Secret",
            Some(&at.namespace),
            Some(&format!(
                "{}={}",
                release::ENVIRONMENT_LABEL,
                at.environment
            )),
        )
        .await?;
    let mut releases = Vec::new();
    let mut warnings = Vec::new();
    for secret in secrets {
        if secret.get("type").and_then(Value::as_str) != Some(release::SECRET_TYPE) {
            continue;
        }
        match release::from_secret(&secret) {
            Ok(found) if found.environment == at.environment => releases.push(found),
            Ok(_) => {}
            Err(err) => warnings.push(err.to_string()),
        }
    }
    releases.sort_by_key(|r| r.number);
    Ok((releases, warnings))
}

/// Writes (creates or updates) a release record with server-side apply.
pub async fn save(cluster: &Cluster, at: &StoreLocation, record: &Release) -> Result<(), String> {
    let secret = release::to_secret(record, &at.namespace).map_err(|err| err.to_string())?;
    cluster
        .apply(
            &secret,
            ApplyOptions {
                dry_run: false,
                force: true,
            },
        )
        .await
        .map(|_| ())
        .map_err(|err| err.to_string())
}

/// Deletes the records of these release numbers.
pub async fn drop_records(
    cluster: &Cluster,
    at: &StoreLocation,
    numbers: &[u64],
) -> Result<(), KubeError> {
    for number in numbers {
        cluster
            .delete(&ObjectRef {
                api_version: "v1".into(),
                kind: "Secret".into(),
                namespace: Some(at.namespace.clone()),
                name: release::secret_name(&at.environment, *number),
            })
            .await?;
    }
    Ok(())
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the environment is locked by {holder} (another gantry run); waited {waited}s (lock-timeout). The lock expires {LEASE_SECONDS}s after its holder stops renewing it")]
    Held { holder: String, waited: u64 },
    #[error("cannot take the environment lock: {0}")]
    Api(#[from] KubeError),
    #[error("cancelled while waiting for the environment lock held by {holder}")]
    Cancelled { holder: String },
}

const LEASE_SECONDS: u64 = LEASE_DURATION.as_secs();

/// A held environment lock, renewed in the background until released.
pub struct HeldLock {
    renewer: tokio::task::JoinHandle<()>,
    lost: Arc<tokio::sync::watch::Sender<Option<String>>>,
    cluster: Arc<Cluster>,
    reference: ObjectRef,
    me: String,
    /// Whose lock this run took over because its holder stopped renewing.
    pub taken_over_from: Option<String>,
}

impl HeldLock {
    /// Set when renewal found another holder: this run no longer owns the environment.
    pub fn lost(&self) -> Option<String> {
        self.lost.borrow().clone()
    }

    /// Stops renewing and hands the lock back (the next run takes it at once).
    pub async fn release(self) -> Result<(), KubeError> {
        self.renewer.abort();
        let current: Option<Lease> = self.cluster.get_typed(&self.reference).await?;
        if let Some(current) = current {
            let holder = current
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.clone());
            if holder.as_deref() == Some(self.me.as_str()) {
                let released = lease::released(current);
                let value = serde_json::to_value(with_type(released)).unwrap_or(Value::Null);
                self.cluster.replace(&value).await?;
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

/// Takes the environment lock, waiting up to `timeout` for a live holder; a holder that
/// stopped renewing is taken over. The lock is renewed every third of its duration.
pub async fn lock(
    cluster: Arc<Cluster>,
    at: &StoreLocation,
    me: &str,
    timeout: Duration,
    cancel: &crate::pipeline::Cancel,
    mut waiting: impl FnMut(&str),
) -> Result<HeldLock, LockError> {
    let reference = ObjectRef {
        api_version: "coordination.k8s.io/v1".into(),
        kind: "Lease".into(),
        namespace: Some(at.namespace.clone()),
        name: release::lease_name(&at.environment),
    };
    let started = std::time::Instant::now();
    let mut announced = false;
    loop {
        let current: Option<Lease> = cluster.get_typed(&reference).await?;
        let now = Timestamp::now();
        let state = lease::state(current.as_ref(), me, now);
        let take = |previous: Option<&Lease>| {
            with_type(lease::taken(
                &reference.name,
                &at.namespace,
                &at.environment,
                me,
                now,
                previous,
            ))
        };
        let mut taken_over_from = None;
        let attempt = match &state {
            LockState::Free => Some(cluster.create(&take(None)).await),
            LockState::Expired { holder } => {
                taken_over_from = Some(holder.clone());
                Some(cluster.replace(&take(current.as_ref())).await)
            }
            LockState::Released | LockState::Ours => {
                Some(cluster.replace(&take(current.as_ref())).await)
            }
            LockState::Held { .. } => None,
        };
        match attempt {
            Some(Ok(_)) => {
                let (lost_tx, _) = tokio::sync::watch::channel(None);
                let lost = Arc::new(lost_tx);
                let renewer = tokio::spawn(renew(
                    cluster.clone(),
                    reference.clone(),
                    at.clone(),
                    me.to_string(),
                    lost.clone(),
                ));
                return Ok(HeldLock {
                    renewer,
                    lost,
                    cluster,
                    reference,
                    me: me.to_string(),
                    taken_over_from,
                });
            }
            // Another run won the race: look again.
            Some(Err(KubeError::AlreadyExists { .. } | KubeError::Conflict { .. })) => continue,
            Some(Err(err)) => return Err(err.into()),
            None => {}
        }
        let LockState::Held { holder, .. } = state else {
            continue;
        };
        if started.elapsed() >= timeout {
            return Err(LockError::Held {
                holder,
                waited: started.elapsed().as_secs(),
            });
        }
        if !announced {
            waiting(&holder);
            announced = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500).min(timeout.saturating_sub(started.elapsed()))) => {}
            _ = cancel.cancelled() => return Err(LockError::Cancelled { holder }),
        }
    }
}

async fn renew(
    cluster: Arc<Cluster>,
    reference: ObjectRef,
    at: StoreLocation,
    me: String,
    lost: Arc<tokio::sync::watch::Sender<Option<String>>>,
) {
    loop {
        tokio::time::sleep(LEASE_DURATION / 3).await;
        let current: Option<Lease> = match cluster.get_typed(&reference).await {
            Ok(current) => current,
            Err(_) => continue,
        };
        let holder = current
            .as_ref()
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.holder_identity.clone());
        if holder.as_deref() != Some(me.as_str()) {
            let _ = lost.send(Some(holder.unwrap_or_else(|| "nobody".into())));
            return;
        }
        let renewed = lease::taken(
            &reference.name,
            &at.namespace,
            &at.environment,
            &me,
            Timestamp::now(),
            current.as_ref(),
        );
        let _ = cluster.replace(&with_type(renewed)).await;
    }
}
