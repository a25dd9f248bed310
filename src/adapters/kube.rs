//! The Kubernetes API adapter: discovery, server-side apply, get/list/create/replace/delete of any kind as JSON, pod logs and events, with transient errors retried and API errors turned into messages a person can act on.
//!
//! Design note: gantry handles objects as JSON (`serde_json::Value`) because releases hold
//! arbitrary kinds; typed k8s-openapi structs are used only where gantry reads fields
//! (Leases, workloads, pods) — see [`Cluster::get_typed`]. Every write carries the `gantry`
//! field manager. Requests that fail with 429, 5xx or a dropped connection are retried with
//! a bounded exponential backoff; 4xx answers are returned at once, mapped to [`KubeError`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams,
    PostParams, PropagationPolicy,
};
use kube::core::GroupVersion;
use kube::discovery::Scope;
use serde_json::Value;

use super::kube_http::Traffic;
use crate::release::{ObjectRef, FIELD_MANAGER};

/// A kind as the API server serves it.
#[derive(Debug, Clone)]
pub struct ResolvedKind {
    pub resource: ApiResource,
    pub namespaced: bool,
}

/// What went wrong talking to the API server, with the API's own words.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KubeError {
    #[error("{kind} ({api_version}) is not served by the cluster; install its CustomResourceDefinition first or fix apiVersion/kind")]
    UnknownKind { api_version: String, kind: String },
    #[error("{object} not found")]
    NotFound { object: String },
    #[error("{object}: namespace `{namespace}` does not exist; add a Namespace object to the release or create it first")]
    NamespaceMissing { object: String, namespace: String },
    #[error("{object}: server-side apply conflict: {conflicts}. Another field manager owns these fields; remove them from the manifest, or set `force-conflicts: true` to take them over")]
    ApplyConflict { object: String, conflicts: String },
    #[error(
        "{object}: the object changed while gantry wrote it (resourceVersion conflict): {message}"
    )]
    Conflict { object: String, message: String },
    #[error("{object} already exists")]
    AlreadyExists { object: String },
    #[error("{object} is invalid: {causes}")]
    Invalid { object: String, causes: String },
    #[error("{object}: {} cannot change on the live object (immutable); annotate it `gantry.dev/replace: \"true\"` to let gantry delete it and create it again (before the release is proven healthy), or give it a new name", fields.join(", "))]
    Immutable {
        object: String,
        /// The immutable fields the change touches (`spec.template`, `spec.clusterIP`).
        fields: Vec<String>,
        /// The API's causes, for the record.
        causes: String,
    },
    #[error("{object}: forbidden for {identity}: {message}")]
    Forbidden {
        object: String,
        identity: String,
        message: String,
    },
    #[error("the cluster rejected the credentials of {identity} (401 Unauthorized); for EKS, the role needs an access entry on the cluster")]
    Unauthorized { identity: String },
    #[error("{object}: the API server answered {code} {reason}: {message}")]
    Api {
        object: String,
        code: u16,
        reason: String,
        message: String,
        /// How long the server asked to wait before trying again (a 429's
        /// `details.retryAfterSeconds`).
        retry_after: Option<Duration>,
    },
    #[error("cannot reach the cluster API ({object}): {message}")]
    Unreachable { object: String, message: String },
    #[error("{object} was not written: {reason}")]
    LockLost { object: String, reason: String },
}

impl KubeError {
    /// Whether a retry may succeed (throttling, server errors, dropped connections).
    pub fn is_transient(&self) -> bool {
        match self {
            KubeError::Api { code, .. } => *code == 429 || *code >= 500,
            KubeError::Unreachable { .. } => true,
            _ => false,
        }
    }
}

/// The write fence of a held environment lock. Every write through [`Cluster`] checks it first:
/// past the deadline (the last successful renewal plus the lease duration, minus a margin, on
/// this process's monotonic clock) or once another holder was seen, nothing more is written.
#[derive(Debug)]
pub struct Fence {
    state: Mutex<FenceState>,
}

#[derive(Debug)]
struct FenceState {
    deadline: std::time::Instant,
    lost_to: Option<String>,
    /// Set when a write was refused: the run must report `lock-lost`.
    refused: bool,
}

impl Fence {
    /// A fence for a lock taken by a request sent at `sent` and held for `duration`.
    pub fn new(sent: std::time::Instant, duration: Duration) -> Fence {
        Fence {
            state: Mutex::new(FenceState {
                deadline: sent + duration - crate::release::lease::fencing_margin(duration),
                lost_to: None,
                refused: false,
            }),
        }
    }

    /// A renewal sent at `sent` succeeded: the deadline moves on.
    pub fn renewed(&self, sent: std::time::Instant, duration: Duration) {
        if let Ok(mut state) = self.state.lock() {
            let deadline = sent + duration - crate::release::lease::fencing_margin(duration);
            state.deadline = state.deadline.max(deadline);
        }
    }

    /// Another holder owns the Lease now.
    pub fn lose(&self, holder: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.lost_to = Some(holder.to_string());
        }
    }

    /// Why writing is no longer allowed, if it is not.
    pub fn check(&self) -> Result<(), String> {
        let Ok(mut state) = self.state.lock() else {
            return Err("the lock state is unreadable".into());
        };
        let reason = match &state.lost_to {
            Some(holder) => format!("the environment lock now belongs to {holder}"),
            None if std::time::Instant::now() >= state.deadline => {
                "the environment lock was not renewed in time (this run may have been paused or cut off from the API server), so another run may hold it".to_string()
            }
            None => return Ok(()),
        };
        state.refused = true;
        Err(reason)
    }

    /// Whether writing is still allowed, without counting a refusal (for the release of the
    /// lock itself).
    pub fn valid(&self) -> bool {
        self.state.lock().is_ok_and(|state| {
            state.lost_to.is_none() && std::time::Instant::now() < state.deadline
        })
    }

    /// Whether a write was refused (the run lost the lock while it had work to do).
    pub fn refused(&self) -> bool {
        self.state.lock().map(|s| s.refused).unwrap_or(true)
    }
}

/// A connection to one cluster.
pub struct Cluster {
    client: kube::Client,
    /// Who gantry authenticates as, for 401/403 messages.
    identity: String,
    kinds: Mutex<HashMap<(String, String), ResolvedKind>>,
    /// The fence every write checks while the environment lock is held.
    fence: Mutex<Option<std::sync::Arc<Fence>>>,
    /// What the client sends, counted (by the stack that built the client).
    traffic: Arc<Traffic>,
    /// The most requests any step keeps in flight (the `apply-concurrency` input).
    max_in_flight: std::sync::atomic::AtomicUsize,
}

/// What one server-side apply answered.
#[derive(Debug, Clone)]
pub struct ApplyAnswer {
    /// The object as the server has it (or would have it, for a dry run).
    pub object: Value,
    /// Whether the apply created it.
    pub created: bool,
}

/// Options of one server-side apply.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    pub dry_run: bool,
    pub force: bool,
}

impl Cluster {
    pub fn new(client: kube::Client, identity: impl Into<String>) -> Self {
        Cluster {
            client,
            identity: identity.into(),
            kinds: Mutex::new(HashMap::new()),
            fence: Mutex::new(None),
            traffic: Arc::default(),
            max_in_flight: std::sync::atomic::AtomicUsize::new(64),
        }
    }

    /// No step keeps more than `bound` requests in flight from now on.
    pub fn limit_concurrency(&self, bound: usize) {
        self.max_in_flight
            .store(bound.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// The same cluster, its traffic counted by `traffic` (the client's stack counts into it).
    pub fn counted(mut self, traffic: Arc<Traffic>) -> Self {
        self.traffic = traffic;
        self
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// From now on every write checks `fence` first (`None`: writes are no longer fenced).
    pub fn set_fence(&self, fence: Option<std::sync::Arc<Fence>>) {
        if let Ok(mut slot) = self.fence.lock() {
            *slot = fence;
        }
    }

    /// Fails a write to `object` when the environment lock may have passed to another run.
    fn fenced(&self, object: &str) -> Result<(), KubeError> {
        let fence = self.fence.lock().ok().and_then(|f| f.clone());
        match fence.map(|f| f.check()) {
            Some(Err(reason)) => Err(KubeError::LockLost {
                object: object.to_string(),
                reason,
            }),
            _ => Ok(()),
        }
    }

    /// Fetches the discovery of every group version in `api_versions` not fetched yet, all
    /// at once (one round trip instead of one per group version); a failure is left for
    /// [`Cluster::resolve`] to report.
    pub async fn discover(&self, api_versions: &[&str]) {
        let missing: std::collections::BTreeSet<&str> = {
            let Ok(kinds) = self.kinds.lock() else {
                return;
            };
            api_versions
                .iter()
                .copied()
                .filter(|v| !kinds.keys().any(|(known, _)| known == v))
                .collect()
        };
        futures::future::join_all(missing.into_iter().map(|v| self.fetch_group(v))).await;
    }

    /// Every group version the cluster serves, and each as `group/version/Kind`, as Helm's
    /// `.Capabilities.APIVersions` lists them (aggregated discovery: two requests at once).
    pub async fn api_versions(&self) -> Result<Vec<String>, KubeError> {
        let client = self.client();
        let (core, groups) = futures::future::join(
            retry(|| async {
                client
                    .list_core_api_versions_aggregated()
                    .await
                    .map_err(|err| self.map_error(err, "/api"))
            }),
            retry(|| async {
                client
                    .list_api_groups_aggregated()
                    .await
                    .map_err(|err| self.map_error(err, "/apis"))
            }),
        )
        .await;
        let mut found = std::collections::BTreeSet::new();
        for list in [core?, groups?] {
            for group in list.items {
                let name = group.metadata.and_then(|m| m.name).unwrap_or_default();
                for version in group.versions {
                    let Some(version_name) = version.version else {
                        continue;
                    };
                    let gv = if name.is_empty() {
                        version_name
                    } else {
                        format!("{name}/{version_name}")
                    };
                    for resource in version.resources {
                        if let Some(kind) = resource.response_kind.and_then(|k| k.kind) {
                            found.insert(format!("{gv}/{kind}"));
                        }
                    }
                    found.insert(gv);
                }
            }
        }
        Ok(found.into_iter().collect())
    }

    /// Looks a kind up through discovery (cached): its resource name and scope.
    pub async fn resolve(&self, api_version: &str, kind: &str) -> Result<ResolvedKind, KubeError> {
        let cache_key = (api_version.to_string(), kind.to_string());
        if let Some(found) = self
            .kinds
            .lock()
            .ok()
            .and_then(|k| k.get(&cache_key).cloned())
        {
            return Ok(found);
        }
        let unknown = || KubeError::UnknownKind {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        };
        self.fetch_group(api_version)
            .await
            .map_err(|err| match err {
                KubeError::UnknownKind { .. } => unknown(),
                other => other,
            })?;
        self.kinds
            .lock()
            .ok()
            .and_then(|k| k.get(&cache_key).cloned())
            .ok_or_else(unknown)
    }

    /// Reads the discovery of one group version and caches every kind it serves: one request
    /// serves ConfigMaps, Secrets and Namespaces alike. A group version not served is
    /// [`KubeError::UnknownKind`] (without a kind).
    async fn fetch_group(&self, api_version: &str) -> Result<(), KubeError> {
        let (group, version) = match api_version.rsplit_once('/') {
            Some((group, version)) => (group, version),
            None => ("", api_version),
        };
        let gv = GroupVersion::gv(group, version);
        let unknown = || KubeError::UnknownKind {
            api_version: api_version.to_string(),
            kind: String::new(),
        };
        let served = retry(|| async {
            match kube::discovery::pinned_group(&self.client, &gv).await {
                Ok(found) => Ok(found),
                Err(kube::Error::Discovery(_)) => Err(unknown()),
                Err(err) => match self.map_error(err, api_version) {
                    KubeError::NotFound { .. } => Err(unknown()),
                    other => Err(other),
                },
            }
        })
        .await?;
        if let Ok(mut kinds) = self.kinds.lock() {
            for (resource, capabilities) in served.versioned_resources(version) {
                let key = (api_version.to_string(), resource.kind.clone());
                let namespaced = capabilities.scope == Scope::Namespaced;
                kinds.insert(
                    key,
                    ResolvedKind {
                        resource,
                        namespaced,
                    },
                );
            }
        }
        Ok(())
    }

    async fn api_for(&self, reference: &ObjectRef) -> Result<Api<DynamicObject>, KubeError> {
        let resolved = self
            .resolve(&reference.api_version, &reference.kind)
            .await?;
        Ok(match (&reference.namespace, resolved.namespaced) {
            (Some(namespace), true) => {
                Api::namespaced_with(self.client.clone(), namespace, &resolved.resource)
            }
            _ => Api::all_with(self.client.clone(), &resolved.resource),
        })
    }

    /// Reads an object; `None` when it does not exist.
    pub async fn get(&self, reference: &ObjectRef) -> Result<Option<Value>, KubeError> {
        let api = self.api_for(reference).await?;
        let object = reference.to_string();
        retry(|| async {
            match api.get_opt(&reference.name).await {
                Ok(found) => Ok(found.map(to_json)),
                Err(err) => Err(self.map_error(err, &object)),
            }
        })
        .await
    }

    /// Reads an object into a typed struct.
    pub async fn get_typed<K>(&self, reference: &ObjectRef) -> Result<Option<K>, KubeError>
    where
        K: serde::de::DeserializeOwned,
    {
        Ok(self
            .get(reference)
            .await?
            .and_then(|value| serde_json::from_value(value).ok()))
    }

    /// Server-side apply of one object with the gantry field manager; returns the object as
    /// the server has it (or would have it, for a dry run).
    pub async fn apply(&self, object: &Value, options: ApplyOptions) -> Result<Value, KubeError> {
        self.apply_answer(object, options)
            .await
            .map(|answer| answer.object)
    }

    /// Server-side apply of one object with the gantry field manager, in one request (no read
    /// first): the object as the server has it, and whether the apply created it (201).
    pub async fn apply_answer(
        &self,
        object: &Value,
        options: ApplyOptions,
    ) -> Result<ApplyAnswer, KubeError> {
        // An object taken over from a Helm release (`adopt-helm-release`) takes the fields
        // Helm's field manager owns: forced for exactly those objects.
        let options = ApplyOptions {
            force: options.force || crate::charts::adopting(object),
            ..options
        };
        let reference = ObjectRef::of(object).ok_or_else(|| KubeError::Invalid {
            object: "an object".into(),
            causes: "apiVersion, kind and metadata.name are required".into(),
        })?;
        let resolved = self
            .resolve(&reference.api_version, &reference.kind)
            .await?;
        let namespace = reference
            .namespace
            .as_deref()
            .filter(|_| resolved.namespaced);
        let url = <DynamicObject as kube::Resource>::url_path(&resolved.resource, namespace);
        let params = PatchParams {
            dry_run: options.dry_run,
            force: options.force,
            field_manager: Some(FIELD_MANAGER.to_string()),
            field_validation: None,
        };
        let name = reference.to_string();
        retry(|| async {
            if !options.dry_run {
                self.fenced(&name)?;
            }
            let request = kube::core::Request::new(url.clone())
                .patch(&reference.name, &params, &Patch::Apply(object))
                .map_err(|err| KubeError::Invalid {
                    object: name.clone(),
                    causes: err.to_string(),
                })?;
            let (status, body) = self.send(request, &name).await?;
            let object = serde_json::from_slice(&body).map_err(|err| KubeError::Unreachable {
                object: name.clone(),
                message: format!("the API server's answer is not JSON: {err}"),
            })?;
            Ok(ApplyAnswer {
                object,
                created: status == http::StatusCode::CREATED,
            })
        })
        .await
    }

    /// Sends one request; the status and body of a success, the mapped error otherwise.
    async fn send(
        &self,
        request: http::Request<Vec<u8>>,
        object: &str,
    ) -> Result<(http::StatusCode, bytes::Bytes), KubeError> {
        let unreachable = |err: kube::Error| self.map_error(err, object);
        let response = self
            .client
            .send(request.map(kube::client::Body::from))
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect_bytes()
            .await
            .map_err(unreachable)?;
        if status.is_success() {
            return Ok((status, body));
        }
        let parsed = serde_json::from_slice::<kube::core::Status>(&body).unwrap_or_else(|_| {
            kube::core::Status::failure(String::from_utf8_lossy(&body).trim(), "")
                .with_code(status.as_u16())
        });
        Err(map_status(&parsed, object.to_string(), &self.identity))
    }

    /// How many requests to keep in flight, at most `bound` and the limit set with
    /// [`Cluster::limit_concurrency`]: sized to the round trip measured so far
    /// ([`super::kube_http::concurrency_for`]).
    pub fn concurrency(&self, bound: usize) -> usize {
        let limit = self
            .max_in_flight
            .load(std::sync::atomic::Ordering::Relaxed);
        super::kube_http::concurrency_for(self.traffic.round_trip(), bound.min(limit))
    }

    /// What the client sent so far.
    pub fn traffic(&self) -> &Arc<Traffic> {
        &self.traffic
    }

    /// The reference, API handle and typed form of an object to write.
    async fn prepare(
        &self,
        object: &Value,
    ) -> Result<(ObjectRef, Api<DynamicObject>, DynamicObject), KubeError> {
        let reference = ObjectRef::of(object).ok_or_else(|| KubeError::Invalid {
            object: "an object".into(),
            causes: "apiVersion, kind and metadata.name are required".into(),
        })?;
        let api = self.api_for(&reference).await?;
        let typed: DynamicObject =
            serde_json::from_value(object.clone()).map_err(|err| KubeError::Invalid {
                object: reference.to_string(),
                causes: err.to_string(),
            })?;
        Ok((reference, api, typed))
    }

    fn write_params() -> PostParams {
        PostParams {
            dry_run: false,
            field_manager: Some(FIELD_MANAGER.to_string()),
        }
    }

    /// Creates an object; [`KubeError::AlreadyExists`] when its name is taken.
    pub async fn create(&self, object: &Value) -> Result<Value, KubeError> {
        self.create_checked(object, true).await
    }

    /// Creates the lock's own Lease: not fenced (the lock is what the fence stands for).
    pub async fn create_unfenced(&self, object: &Value) -> Result<Value, KubeError> {
        self.create_checked(object, false).await
    }

    async fn create_checked(&self, object: &Value, fenced: bool) -> Result<Value, KubeError> {
        let (reference, api, typed) = self.prepare(object).await?;
        let name = reference.to_string();
        retry(|| async {
            if fenced {
                self.fenced(&name)?;
            }
            api.create(&Self::write_params(), &typed)
                .await
                .map(to_json)
                .map_err(|err| self.map_error(err, &name))
        })
        .await
    }

    /// Replaces an object; with `metadata.resourceVersion` set, a concurrent change gives
    /// [`KubeError::Conflict`] (optimistic concurrency).
    pub async fn replace(&self, object: &Value) -> Result<Value, KubeError> {
        self.replace_checked(object, true).await
    }

    /// Replaces the lock's own Lease: not fenced (the lock is what the fence stands for).
    pub async fn replace_unfenced(&self, object: &Value) -> Result<Value, KubeError> {
        self.replace_checked(object, false).await
    }

    async fn replace_checked(&self, object: &Value, fenced: bool) -> Result<Value, KubeError> {
        let (reference, api, typed) = self.prepare(object).await?;
        let name = reference.to_string();
        retry(|| async {
            if fenced {
                self.fenced(&name)?;
            }
            api.replace(&reference.name, &Self::write_params(), &typed)
                .await
                .map(to_json)
                .map_err(|err| self.map_error(err, &name))
        })
        .await
    }

    /// Asks the API server whether this identity may act (a SelfSubjectAccessReview of
    /// `attributes`, the JSON of `spec.resourceAttributes`). Sent as the API requires a
    /// review: no name and no field manager (a real API server answers 422 to either).
    pub async fn may(&self, attributes: &Value) -> Result<bool, KubeError> {
        let review = serde_json::json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "metadata": {},
            "spec": {"resourceAttributes": attributes},
        });
        let review: k8s_openapi::api::authorization::v1::SelfSubjectAccessReview =
            serde_json::from_value(review).map_err(|err| KubeError::Invalid {
                object: "SelfSubjectAccessReview".into(),
                causes: err.to_string(),
            })?;
        let api: Api<k8s_openapi::api::authorization::v1::SelfSubjectAccessReview> =
            Api::all(self.client.clone());
        retry(|| async {
            api.create(&PostParams::default(), &review)
                .await
                .map(|answer| answer.status.is_some_and(|s| s.allowed))
                .map_err(|err| self.map_error(err, "SelfSubjectAccessReview"))
        })
        .await
    }

    /// The rules this identity holds in `namespace` (a SelfSubjectRulesReview): what they grant
    /// is granted; what they do not may still be allowed by a webhook authorizer (EKS access
    /// policies), so a missing rule is no proof of a missing permission.
    pub async fn rules(
        &self,
        namespace: &str,
    ) -> Result<Vec<k8s_openapi::api::authorization::v1::ResourceRule>, KubeError> {
        use k8s_openapi::api::authorization::v1::{
            SelfSubjectRulesReview, SelfSubjectRulesReviewSpec,
        };
        let review = SelfSubjectRulesReview {
            spec: SelfSubjectRulesReviewSpec {
                namespace: Some(namespace.to_string()),
            },
            ..SelfSubjectRulesReview::default()
        };
        let api: Api<SelfSubjectRulesReview> = Api::all(self.client.clone());
        retry(|| async {
            api.create(&PostParams::default(), &review)
                .await
                .map(|answer| answer.status.map(|s| s.resource_rules).unwrap_or_default())
                .map_err(|err| self.map_error(err, "SelfSubjectRulesReview"))
        })
        .await
    }

    /// Deletes an object (dependents in the background); `false` if it was already gone.
    pub async fn delete(&self, reference: &ObjectRef) -> Result<bool, KubeError> {
        let api = match self.api_for(reference).await {
            Ok(api) => api,
            // A kind no longer served has no objects left to delete.
            Err(KubeError::UnknownKind { .. }) => return Ok(false),
            Err(err) => return Err(err),
        };
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        let name = reference.to_string();
        retry(|| async {
            self.fenced(&name)?;
            match api.delete(&reference.name, &params).await {
                Ok(_) => Ok(true),
                Err(err) => match self.map_error(err, &name) {
                    KubeError::NotFound { .. } => Ok(false),
                    other => Err(other),
                },
            }
        })
        .await
    }

    /// Lists objects of a kind in a namespace (or cluster-wide) matching a label selector.
    pub async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<Value>, KubeError> {
        self.list_pages(api_version, kind, namespace, label_selector, &|_| true)
            .await
    }

    /// The objects of a kind in a namespace (or cluster-wide) whose name `keep` accepts, read
    /// in pages of 500 so a large namespace does not have to fit in memory at once.
    pub async fn list_kept(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        keep: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Vec<Value>, KubeError> {
        self.list_pages(api_version, kind, namespace, None, keep)
            .await
    }

    /// One LIST, page by page (500 objects each): the objects matching `label_selector` whose
    /// name `keep` accepts, with their apiVersion and kind (lists omit them per item).
    async fn list_pages(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        label_selector: Option<&str>,
        keep: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Vec<Value>, KubeError> {
        let reference = ObjectRef {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            namespace: namespace.map(str::to_string),
            name: String::new(),
        };
        let api = self.api_for(&reference).await?;
        let what = format!("{kind} list");
        let mut kept = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params = ListParams::default().limit(500);
            if let Some(selector) = label_selector {
                params = params.labels(selector);
            }
            if let Some(token) = &token {
                params = params.continue_token(token);
            }
            let page = retry(|| async {
                api.list(&params)
                    .await
                    .map_err(|err| self.map_error(err, &what))
            })
            .await?;
            token = page.metadata.continue_.clone().filter(|t| !t.is_empty());
            for mut item in page.items {
                if !item.metadata.name.as_deref().is_some_and(keep) {
                    continue;
                }
                item.types = Some(kube::core::TypeMeta {
                    api_version: api_version.to_string(),
                    kind: kind.to_string(),
                });
                kept.push(to_json(item));
            }
            if token.is_none() {
                return Ok(kept);
            }
        }
    }

    /// The last lines of a container's log (the previous instance's for a crash loop).
    pub async fn pod_logs(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        previous: bool,
        tail_lines: i64,
    ) -> Result<String, KubeError> {
        let api: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(self.client.clone(), namespace);
        let params = LogParams {
            container: container.map(str::to_string),
            previous,
            tail_lines: Some(tail_lines),
            limit_bytes: Some(64 * 1024),
            ..LogParams::default()
        };
        let what = format!("log of pod {pod}");
        retry(|| async {
            api.logs(pod, &params)
                .await
                .map_err(|err| self.map_error(err, &what))
        })
        .await
    }

    /// Events about objects with these names in a namespace, oldest first.
    pub async fn events_for(
        &self,
        namespace: &str,
        names: &[&str],
    ) -> Result<Vec<k8s_openapi::api::core::v1::Event>, KubeError> {
        let api: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(self.client.clone(), namespace);
        let what = format!("events in {namespace}");
        let mut events = retry(|| async {
            api.list(&ListParams::default())
                .await
                .map(|list| list.items)
                .map_err(|err| self.map_error(err, &what))
        })
        .await?;
        events.retain(|event| {
            event
                .involved_object
                .name
                .as_deref()
                .is_some_and(|name| names.contains(&name))
        });
        events.sort_by_key(|event| {
            event
                .last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or_else(|| event.event_time.as_ref().map(|t| t.0))
        });
        Ok(events)
    }

    /// Maps a client error to what it means for the object at hand.
    pub fn map_error(&self, err: kube::Error, object: &str) -> KubeError {
        map_error(err, object, &self.identity)
    }
}

/// Maps a client error to a [`KubeError`] naming `object` and, for 401/403, `identity`.
pub fn map_error(err: kube::Error, object: &str, identity: &str) -> KubeError {
    let object = object.to_string();
    match err {
        kube::Error::Api(status) => map_status(&status, object, identity),
        other => KubeError::Unreachable {
            object,
            message: error_chain(&other),
        },
    }
}

/// Maps an error status of the API server, by code and reason, to a [`KubeError`].
fn map_status(status: &kube::core::Status, object: String, identity: &str) -> KubeError {
    let missing_namespace = missing_namespace(status);
    match (status.code, status.reason.as_str()) {
        (404, _) if missing_namespace.is_some() && !object.starts_with("Namespace/") => {
            KubeError::NamespaceMissing {
                object,
                namespace: missing_namespace.unwrap_or_default(),
            }
        }
        (404, _) => KubeError::NotFound { object },
        (401, _) => KubeError::Unauthorized {
            identity: identity.to_string(),
        },
        (403, _) => KubeError::Forbidden {
            object,
            identity: identity.to_string(),
            message: status.message.clone(),
        },
        (409, "AlreadyExists") => KubeError::AlreadyExists { object },
        (409, _) if is_apply_conflict(status) => KubeError::ApplyConflict {
            object,
            conflicts: causes_text(status),
        },
        (409, _) => KubeError::Conflict {
            object,
            message: status.message.clone(),
        },
        (422, _) => invalid_error(status, object),
        (code, reason) => KubeError::Api {
            object,
            code,
            reason: reason.to_string(),
            message: status.message.clone(),
            retry_after: status
                .details
                .as_ref()
                .map(|d| Duration::from_secs(d.retry_after_seconds.into()))
                .filter(|wait| !wait.is_zero()),
        },
    }
}

/// The namespace a 404 says does not exist, when it is about a namespace.
fn missing_namespace(status: &kube::core::Status) -> Option<String> {
    status
        .details
        .as_ref()
        .filter(|d| d.kind == "namespaces" && !d.name.is_empty())
        .map(|d| d.name.clone())
}

/// Whether a 409 is a server-side apply conflict with another field manager.
fn is_apply_conflict(status: &kube::core::Status) -> bool {
    status
        .details
        .as_ref()
        .is_some_and(|d| d.causes.iter().any(|c| c.reason == "FieldManagerConflict"))
        || status.message.starts_with("Apply failed")
}

/// The status's causes (`field: message` each) joined by `; `, or its message when it lists none.
fn causes_text(status: &kube::core::Status) -> String {
    let causes: Vec<String> = status
        .details
        .as_ref()
        .map(|d| {
            d.causes
                .iter()
                .map(|c| {
                    if c.field.is_empty() {
                        c.message.clone()
                    } else {
                        format!("{}: {}", c.field, c.message)
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    if causes.is_empty() {
        status.message.clone()
    } else {
        causes.join("; ")
    }
}

/// A 422: [`KubeError::Immutable`] when a cause is an immutable field, else [`KubeError::Invalid`].
fn invalid_error(status: &kube::core::Status, object: String) -> KubeError {
    let immutable: Vec<String> = status
        .details
        .as_ref()
        .map(|d| {
            d.causes
                .iter()
                .filter(|c| c.message.contains("field is immutable"))
                .map(|c| c.field.clone())
                .collect()
        })
        .unwrap_or_default();
    let causes = causes_text(status);
    if immutable.is_empty() {
        KubeError::Invalid { object, causes }
    } else {
        KubeError::Immutable {
            object,
            fields: immutable,
            causes,
        }
    }
}

/// An error and its sources on one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn to_json<T: serde::Serialize>(object: T) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

/// Runs `operation`, retrying transient failures as [`crate::retry::Policy::API`] says (a
/// throttled request as [`crate::retry::Policy::API_THROTTLED`] says).
pub async fn retry<T, F, Fut>(mut operation: F) -> Result<T, KubeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, KubeError>>,
{
    let mut retry = 0;
    loop {
        let err = match operation().await {
            Err(err) if err.is_transient() => err,
            other => return other,
        };
        let asked = match &err {
            KubeError::Api { retry_after, .. } => *retry_after,
            _ => None,
        };
        let policy = match &err {
            KubeError::Api { code: 429, .. } => crate::retry::Policy::API_THROTTLED,
            _ => crate::retry::Policy::API,
        };
        let Some(wait) = policy.wait(retry, asked, crate::retry::unit_random()) else {
            return Err(err);
        };
        tokio::time::sleep(wait).await;
        retry += 1;
    }
}
