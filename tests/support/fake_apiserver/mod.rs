//! An in-process fake Kubernetes API server with real API semantics, for driving `kube::Client` in tests.
//!
//! It serves HTTP/1.1 on `127.0.0.1:<random port>`: discovery, server-side apply with managed
//! fields and conflicts, validation (422), GET/LIST/WATCH/PUT/PATCH/DELETE with resourceVersion
//! concurrency and compaction (410), SelfSubjectAccessReview and 403s from a deny table, and
//! simulated controllers (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, scheduler, kubelet)
//! that write through the same store so watchers see a real cluster's event sequence.
//!
//! ```ignore
//! let api = FakeApiServer::start().await;
//! api.set_image_behavior(":v2", Behavior::ImagePullError);
//! let client = api.client();
//! // ... run the code under test against `client` or `api.kubeconfig_yaml()` ...
//! assert_eq!(api.get("apps/v1", "Deployment", Some("default"), "web").unwrap()["status"]["readyReplicas"], 2);
//! ```

mod controllers;
mod defaults;
mod discovery;
mod faults;
mod http;
mod meta;
mod query;
mod ssa;
mod store;
mod validate;

pub use controllers::Behavior;
pub use faults::{Fault, Recorded, RequestMatcher};

use faults::FaultRule;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::{ObjKey, Store};

/// A denied (verb, group, resource, namespace); `None` namespace denies in every namespace.
#[derive(Clone, Debug)]
pub(crate) struct Deny {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
}

/// Everything behind the server's one lock.
pub(crate) struct State {
    pub store: Store,
    pub user: String,
    pub denies: Vec<Deny>,
    pub faults: Vec<FaultRule>,
    pub requests: Vec<Recorded>,
    pub behaviors: HashMap<(String, String, String), Behavior>,
    pub image_behaviors: Vec<(String, Behavior)>,
    pub default_behavior: Behavior,
    /// (namespace, pod, container, previous) -> log text.
    pub logs: HashMap<(String, String, String, bool), String>,
    pub step: Duration,
    pub time_factor: f64,
    pub crd_establish_delay: Duration,
    pub ctl: controllers::Memory,
}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub expire: tokio::sync::watch::Sender<u64>,
    pub addr: SocketAddr,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running fake. Dropping it stops the server and the controllers.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl FakeApiServer {
    /// Start on a random port with the `default`, `kube-system` and `kube-public` namespaces.
    /// Must be called inside a tokio runtime (multi-thread or current-thread).
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (expire, _) = tokio::sync::watch::channel(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                store: Store::new(),
                user: "system:serviceaccount:ci:gantry".into(),
                denies: Vec::new(),
                faults: Vec::new(),
                requests: Vec::new(),
                behaviors: HashMap::new(),
                image_behaviors: Vec::new(),
                default_behavior: Behavior::Healthy,
                logs: HashMap::new(),
                step: Duration::from_millis(20),
                time_factor: 0.01,
                crd_establish_delay: Duration::ZERO,
                ctl: controllers::Memory::default(),
            }),
            expire,
            addr,
        });
        let server = tokio::spawn(http::serve(listener, shared.clone()));
        let ctl = tokio::spawn(controllers::run(shared.clone()));
        FakeApiServer {
            shared,
            tasks: vec![server, ctl],
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// A client configuration for the fake (default namespace `default`).
    pub fn kube_config(&self) -> kube::Config {
        let mut c = kube::Config::new(self.url().parse().expect("url"));
        c.default_namespace = "default".into();
        c.read_timeout = Some(Duration::from_secs(30));
        c
    }

    /// A `kube::Client` for the fake over plain HTTP.
    ///
    /// Built from kube's `ClientBuilder` on a plain hyper connector rather than
    /// `Client::try_from(config)`: the latter always builds a rustls config, which panics in this
    /// crate's dependency graph (rustls has both `ring` and `aws-lc-rs`, and no process-level
    /// `CryptoProvider` is installed). Code that calls `Client::try_from` must install one first.
    pub fn client(&self) -> kube::Client {
        use kube::client::ConfigExt;
        let config = self.kube_config();
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(hyper_util::client::legacy::connect::HttpConnector::new());
        kube::client::ClientBuilder::new(http, config.default_namespace.clone())
            .with_layer(&config.base_uri_layer())
            .build()
    }

    /// A kubeconfig file (bearer token auth) pointing at the fake, for code that loads one.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: gantry\n    namespace: default\ncurrent-context: fake\nusers:\n- name: gantry\n  user:\n    token: fake-bearer-token\npreferences: {{}}\n",
            self.url()
        )
    }

    // ---- compaction and watches ----

    /// Move the compaction point to the current resourceVersion: older watches and
    /// `resourceVersionMatch` lists get 410 Expired.
    pub fn compact(&self) {
        self.shared.lock().store.compact();
    }

    /// End every open watch stream (clients must re-watch, and re-list after a compaction).
    pub fn expire_watches(&self) {
        self.shared.expire.send_modify(|n| *n += 1);
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().store.rv
    }

    // ---- authorization ----

    /// Deny `verb` on `group`/`resource` (`"*"` matches any verb), in `namespace` or everywhere.
    /// SelfSubjectAccessReviews answer `allowed: false` and the real request gets 403.
    pub fn deny(&self, verb: &str, group: &str, resource: &str, namespace: Option<&str>) {
        self.shared.lock().denies.push(Deny {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            namespace: namespace.map(String::from),
        });
    }

    /// The user named in 403 messages (default `system:serviceaccount:ci:gantry`).
    pub fn set_user(&self, user: &str) {
        self.shared.lock().user = user.into();
    }

    // ---- faults and observation ----

    /// Fail the next `n` requests matching `matcher` with `fault`.
    pub fn fail_next(&self, matcher: RequestMatcher, n: usize, fault: Fault) {
        self.shared.lock().faults.push(FaultRule {
            matcher,
            remaining: n,
            fault,
        });
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// A stored object (with apiVersion and kind), or None.
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let st = self.shared.lock();
        let r = st.store.resource_for_kind(api_version, kind)?;
        st.store
            .get(&ObjKey::new(&r.group, &r.plural, namespace, name))
            .cloned()
    }

    /// All stored objects of a kind, in every namespace.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let st = self.shared.lock();
        match st.store.resource_for_kind(api_version, kind) {
            Some(r) => st.store.list(&r.group, &r.plural, None),
            None => Vec::new(),
        }
    }

    /// Seed or overwrite an object as-is (managedFields included, e.g. owned by another manager).
    /// Missing namespaces are not checked. Returns the stored object.
    pub fn put_object(&self, value: Value) -> Value {
        let mut st = self.shared.lock();
        let av = value["apiVersion"].as_str().unwrap_or_default().to_string();
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        let r = st
            .store
            .resource_for_kind(&av, &kind)
            .unwrap_or_else(|| panic!("unknown kind {av} {kind}"));
        let ns = value["metadata"]["namespace"]
            .as_str()
            .filter(|_| r.namespaced)
            .map(String::from);
        let name = value["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_string();
        let key = ObjKey::new(&r.group, &r.plural, ns.as_deref(), &name);
        if r.kind == "CustomResourceDefinition" {
            http::register_crd(&mut st, &value);
        }
        match st.store.get(&key) {
            Some(_) => st.store.update(&key, value),
            None => st.store.create(key, value),
        }
    }

    /// Delete an object (and its dependents) directly.
    pub fn delete_object(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let mut st = self.shared.lock();
        let r = st.store.resource_for_kind(api_version, kind)?;
        st.store
            .delete(&ObjKey::new(&r.group, &r.plural, namespace, name), false)
    }

    // ---- simulated controllers ----

    /// Behaviour of the pods of one workload (`kind` = Deployment, StatefulSet, DaemonSet, Job or Pod).
    pub fn set_behavior(&self, kind: &str, namespace: &str, name: &str, behavior: Behavior) {
        self.shared
            .lock()
            .behaviors
            .insert((kind.into(), namespace.into(), name.into()), behavior);
    }

    /// Behaviour of pods running an image containing `image_substring` (per-object settings win).
    pub fn set_image_behavior(&self, image_substring: &str, behavior: Behavior) {
        self.shared
            .lock()
            .image_behaviors
            .push((image_substring.into(), behavior));
    }

    /// Behaviour for everything else (default `Healthy`).
    pub fn set_default_behavior(&self, behavior: Behavior) {
        self.shared.lock().default_behavior = behavior;
    }

    /// Log text of a pod's container (`previous`: the last terminated instance).
    pub fn set_logs(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
        text: &str,
    ) {
        self.shared.lock().logs.insert(
            (namespace.into(), pod.into(), container.into(), previous),
            text.into(),
        );
    }

    /// Scale of simulated cluster time: `progressDeadlineSeconds` and back-offs take
    /// `seconds * factor` real seconds (default 0.01: a 600 s deadline is 6 s).
    pub fn set_time_factor(&self, factor: f64) {
        self.shared.lock().time_factor = factor;
    }

    /// How often the controllers take a step (default 20 ms).
    pub fn set_step_delay(&self, step: Duration) {
        self.shared.lock().step = step;
    }

    /// Delay before an applied CRD becomes `Established` (default 0: the next controller step).
    pub fn set_crd_establish_delay(&self, delay: Duration) {
        self.shared.lock().crd_establish_delay = delay;
    }

    /// Poll `f` every 10 ms until it returns Some or `timeout` passes.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&Self) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(v) = f(self) {
                return Some(v);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
