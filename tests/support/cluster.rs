//! The test bed's real Kubernetes cluster: clients for the least-privilege deployer (what gantry runs as) and for an administrator (what tests set up and inspect with), a namespace per test deleted afterwards, runnable images in the local registry, release histories and the API server's audit log.
//!
//! Every test that needs the cluster calls [`TestCluster::connect`]; without the test bed it
//! fails at once saying `bash .ci/testbed up`, never skips and never hangs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gantry::adapters::kube::Cluster;
use gantry::release::{self, ObjectRef, Release, ReleaseStatus};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::discovery::{pinned_kind, Scope};
use serde_json::{json, Value};

/// The identity the deployer kubeconfig authenticates as.
pub const DEPLOYER: &str = "system:serviceaccount:gantry-system:gantry";
/// The field manager of test set-up writes (never `gantry`).
const ADMIN_MANAGER: &str = "gantry-test-admin";
/// The runnable base image the test bed pushes to its plain registry.
const BASE_REPOSITORY: &str = "gantry-testbed/busybox";
pub const PLAIN_REGISTRY: &str = "127.0.0.1:5000";

fn env_path(name: &str) -> PathBuf {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => PathBuf::from(value),
        _ => panic!(
            "{name} is not set: the test bed's Kubernetes cluster is needed. Run `bash .ci/testbed up` and `source /var/tmp/gantry-testbed/env` (bash .ci/test does both)"
        ),
    }
}

/// A kube client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> kube::Client {
    gantry::adapters::cluster::install_crypto_provider();
    let text = std::fs::read_to_string(kubeconfig)
        .unwrap_or_else(|err| panic!("{}: {err}; run `bash .ci/testbed up`", kubeconfig.display()));
    let parsed = kube::config::Kubeconfig::from_yaml(&text).unwrap();
    let config = kube::Config::from_custom_kubeconfig(parsed, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The cluster of the test bed, as the deployer and as an administrator.
pub struct TestCluster {
    pub deployer_kubeconfig: PathBuf,
    pub admin_kubeconfig: PathBuf,
    pub kubectl: PathBuf,
    /// The API server's address.
    pub server: String,
    /// gantry's adapter on the deployer's client.
    pub deployer: Arc<Cluster>,
    pub deployer_client: kube::Client,
    pub admin: kube::Client,
}

impl TestCluster {
    /// Connects and checks the API server answers (10 s at most).
    pub async fn connect() -> TestCluster {
        let deployer_kubeconfig = env_path("GANTRY_TEST_KUBECONFIG");
        let admin_kubeconfig = env_path("GANTRY_TEST_ADMIN_KUBECONFIG");
        let kubectl = env_path("GANTRY_TEST_KUBECTL");
        let server = std::env::var("GANTRY_TEST_API_SERVER").unwrap_or_default();
        let admin = client_from(&admin_kubeconfig).await;
        let answered =
            tokio::time::timeout(Duration::from_secs(10), admin.apiserver_version()).await;
        if !matches!(answered, Ok(Ok(_))) {
            panic!(
                "the test bed's Kubernetes API server does not answer at {server} ({answered:?}): run `bash .ci/testbed up`"
            );
        }
        let deployer_client = client_from(&deployer_kubeconfig).await;
        TestCluster {
            deployer: Arc::new(Cluster::new(deployer_client.clone(), DEPLOYER)),
            deployer_client,
            deployer_kubeconfig,
            admin_kubeconfig,
            kubectl,
            server,
            admin,
        }
    }

    /// A new namespace for one test, deleted when the value is dropped.
    pub async fn namespace(&self, prefix: &str) -> TestNamespace {
        let name = unique_name(prefix);
        self.apply(&json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"gantry.dev/test": "true"}}}))
            .await;
        TestNamespace {
            name,
            kubectl: self.kubectl.clone(),
            kubeconfig: self.admin_kubeconfig.clone(),
        }
    }

    async fn api(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Api<DynamicObject> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
        let (resource, capabilities) = pinned_kind(&self.admin, &gvk)
            .await
            .unwrap_or_else(|err| panic!("{kind} ({api_version}) not served: {err}"));
        match (namespace, capabilities.scope) {
            (Some(namespace), Scope::Namespaced) => {
                Api::namespaced_with(self.admin.clone(), namespace, &resource)
            }
            (None, Scope::Namespaced) => Api::all_with(self.admin.clone(), &resource),
            _ => Api::all_with(self.admin.clone(), &resource),
        }
    }

    /// Reads an object as the administrator; `None` when it does not exist.
    pub async fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let api = self.api(api_version, kind, namespace).await;
        api.get_opt(name)
            .await
            .unwrap()
            .map(|o| serde_json::to_value(o).unwrap())
    }

    /// Lists objects of a kind in a namespace (or everywhere).
    pub async fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let api = self.api(api_version, kind, namespace).await;
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|o| serde_json::to_value(o).unwrap())
            .collect()
    }

    /// Server-side apply as the administrator (field manager `gantry-test-admin`, forced).
    pub async fn apply(&self, object: &Value) -> Value {
        self.apply_as(ADMIN_MANAGER, object).await
    }

    /// Server-side apply with another field manager (forced): "someone else" editing.
    pub async fn apply_as(&self, manager: &str, object: &Value) -> Value {
        let reference = ObjectRef::of(object).expect("apiVersion, kind, metadata.name");
        let api = self
            .api(
                &reference.api_version,
                &reference.kind,
                reference.namespace.as_deref(),
            )
            .await;
        let params = PatchParams::apply(manager).force();
        let applied = api
            .patch(&reference.name, &params, &Patch::Apply(object))
            .await
            .unwrap_or_else(|err| panic!("applying {reference}: {err}"));
        serde_json::to_value(applied).unwrap()
    }

    /// A JSON merge patch as the administrator (an `Update` by field manager `manager`).
    pub async fn merge_patch_as(
        &self,
        manager: &str,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        patch: Value,
    ) -> Value {
        let api = self.api(api_version, kind, namespace).await;
        let params = PatchParams {
            field_manager: Some(manager.to_string()),
            ..Default::default()
        };
        serde_json::to_value(
            api.patch(name, &params, &Patch::Merge(&patch))
                .await
                .unwrap(),
        )
        .unwrap()
    }

    /// Deletes an object as the administrator (no error when it is gone).
    pub async fn delete(&self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) {
        let api = self.api(api_version, kind, namespace).await;
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => panic!("deleting {kind}/{name}: {err}"),
        }
    }

    /// The release records of `environment` in `namespace`, oldest first.
    pub async fn releases(&self, namespace: &str, environment: &str) -> Vec<Release> {
        let secrets = self.list("v1", "Secret", Some(namespace)).await;
        release::records::decode_all(&secrets)
            .0
            .into_iter()
            .map(|(r, _)| r)
            .filter(|r| r.environment == environment)
            .collect()
    }

    /// Release numbers and statuses, oldest first.
    pub async fn history(&self, namespace: &str, environment: &str) -> Vec<(u64, ReleaseStatus)> {
        self.releases(namespace, environment)
            .await
            .iter()
            .map(|r| (r.number, r.status))
            .collect()
    }

    /// Who holds the environment lock, if anyone.
    pub async fn lease_holder(&self, namespace: &str, environment: &str) -> Option<String> {
        self.get(
            "coordination.k8s.io/v1",
            "Lease",
            Some(namespace),
            &release::lease_name(environment),
        )
        .await
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
    }

    /// Waits until `check` holds for the object (or panics after `timeout`, with the object).
    pub async fn wait_for(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        timeout: Duration,
        check: impl Fn(Option<&Value>) -> bool,
    ) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let object = self.get(api_version, kind, namespace, name).await;
            if check(object.as_ref()) {
                return object;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{kind}/{name} did not reach the expected state within {timeout:?}: {object:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Runs kubectl as the administrator; returns stdout (panics on failure).
    pub fn kubectl(&self, args: &[&str]) -> String {
        let output = std::process::Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.admin_kubeconfig)
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// A namespace that belongs to one test: deleted (in the background) when dropped.
pub struct TestNamespace {
    pub name: String,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var_os("GANTRY_TEST_KEEP_NAMESPACES").is_some() {
            eprintln!("kept namespace {} (GANTRY_TEST_KEEP_NAMESPACES)", self.name);
            return;
        }
        let _ = std::process::Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args([
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// `prefix-<random>`: a DNS label unique to this test run.
pub fn unique_name(prefix: &str) -> String {
    let mut bytes = [0u8; 4];
    getrandom::getrandom(&mut bytes).unwrap();
    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{suffix}")
}

/// A runnable image (the test bed's busybox) under `repository:tag` in the plain registry,
/// with a digest of its own (a config label names the tag); returns `(reference, digest)`
/// where the reference is `127.0.0.1:5000/repository:tag`. No Docker needed: the layers are
/// mounted from the base repository and only a new config and manifest are written.
pub async fn runnable_image(repository: &str, tag: &str) -> (String, String) {
    // Parallel tests push the same images; the registry may refuse one of two identical
    // uploads racing each other, so a failed push is retried (the content is deterministic).
    for attempt in 1.. {
        match push_runnable_image(repository, tag).await {
            Ok(pushed) => return pushed,
            Err(problem) if attempt < 5 => {
                eprintln!("pushing {repository}:{tag} (attempt {attempt}): {problem}; retrying");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(problem) => panic!("cannot push {repository}:{tag}: {problem}"),
        }
    }
    unreachable!()
}

async fn push_runnable_image(repository: &str, tag: &str) -> Result<(String, String), String> {
    let base = format!("http://{PLAIN_REGISTRY}");
    let http = reqwest::Client::new();
    let accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json";
    let manifest: Value = http
        .get(format!("{base}/v2/{BASE_REPOSITORY}/manifests/latest"))
        .header("accept", accept)
        .send()
        .await
        .expect("the test bed's registry answers (bash .ci/testbed up)")
        .error_for_status()
        .expect("the test bed pushed gantry-testbed/busybox:latest (bash .ci/testbed up)")
        .json()
        .await
        .unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let mut config: Value = http
        .get(format!("{base}/v2/{BASE_REPOSITORY}/blobs/{config_digest}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    config["config"]["Labels"]["gantry.test/tag"] = json!(format!("{repository}:{tag}"));
    let config = serde_json::to_vec(&config).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let digest = layer["digest"].as_str().unwrap();
        let mounted = http
            .post(format!(
                "{base}/v2/{repository}/blobs/uploads/?mount={digest}&from={BASE_REPOSITORY}"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(
            mounted.status().as_u16(),
            201,
            "mount {digest}: {:?}",
            mounted.text().await
        );
    }
    let config_digest = super::registry::digest_of(&config);
    let started = http
        .post(format!("{base}/v2/{repository}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    if started.status().as_u16() != 202 {
        return Err(format!("upload start: {:?}", started.text().await));
    }
    let location = started.headers()["location"].to_str().unwrap().to_string();
    let location = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    let put = http
        .put(format!("{location}{separator}digest={config_digest}"))
        .header("content-type", "application/octet-stream")
        .body(config.clone())
        .send()
        .await
        .unwrap();
    if put.status().as_u16() != 201 {
        return Err(format!("config blob: {:?}", put.text().await));
    }
    let mut manifest = manifest;
    manifest["config"]["digest"] = json!(config_digest);
    manifest["config"]["size"] = json!(config.len());
    let media_type = manifest["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.docker.distribution.manifest.v2+json")
        .to_string();
    let body = serde_json::to_vec(&manifest).unwrap();
    let put = http
        .put(format!("{base}/v2/{repository}/manifests/{tag}"))
        .header("content-type", media_type)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    if put.status().as_u16() != 201 {
        return Err(format!("manifest: {:?}", put.text().await));
    }
    Ok((
        format!("{PLAIN_REGISTRY}/{repository}:{tag}"),
        super::registry::digest_of(&body),
    ))
}

/// A container that serves HTTP on 8080 and is ready when it answers: busybox httpd under a
/// shell that exits at once on SIGTERM.
pub fn web_container(name: &str, image: &str) -> Value {
    json!({
        "name": name,
        "image": image,
        "command": ["sh", "-c", "trap 'exit 0' TERM; mkdir -p /tmp/www; echo ok > /tmp/www/index.html; echo serving; httpd -f -p 8080 -h /tmp/www & wait"],
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1},
    })
}

/// A container that prints a line and exits 3: a real CrashLoopBackOff. Like a real service it
/// has a readiness probe, so it never counts as available in the moment it runs.
pub fn crashing_container(name: &str, image: &str) -> Value {
    json!({
        "name": name,
        "image": image,
        "command": ["sh", "-c", "echo starting; echo fatal: cannot open /config/app.toml >&2; exit 3"],
        "readinessProbe": {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1},
    })
}

/// A Deployment of `replicas` pods running `container`, rolling one pod at a time.
pub fn deployment(namespace: &str, name: &str, replicas: u32, container: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": name, "namespace": namespace},
    "spec": {
        "replicas": replicas,
        "progressDeadlineSeconds": 120,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"terminationGracePeriodSeconds": 2, "containers": [container]}
        }
    }})
}

/// One line of the API server's audit log (writes by people and gantry, see the test bed).
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub user: String,
    pub verb: String,
    pub uri: String,
    pub code: u16,
    /// When the API server received the request.
    pub received: k8s_openapi::jiff::Timestamp,
}

/// The audit events of `user` whose URI mentions `namespace` (the test bed logs only writes).
pub fn audit_writes(user: &str, namespace: &str) -> Vec<AuditEvent> {
    let path = env_path("GANTRY_TEST_AUDIT_LOG");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["user"]["username"] == user)
        .filter(|event| {
            event["requestURI"].as_str().is_some_and(|uri| {
                uri.contains(&format!("/namespaces/{namespace}/"))
                    || uri.ends_with(&format!("/namespaces/{namespace}"))
            })
        })
        .map(|event| AuditEvent {
            user: user.to_string(),
            verb: event["verb"].as_str().unwrap_or_default().to_string(),
            uri: event["requestURI"].as_str().unwrap_or_default().to_string(),
            code: event["responseStatus"]["code"].as_u64().unwrap_or(0) as u16,
            received: event["requestReceivedTimestamp"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .unwrap_or_default(),
        })
        .collect()
}
