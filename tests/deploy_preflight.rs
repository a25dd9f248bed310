//! Pre-flight image checks against the real local registries (plain, and TLS + htpasswd) and the test bed's real cluster: an image that exists is pinned by the digest the registry serves (and runs), a missing tag stops the deploy before anything is applied, an unverifiable registry is reported as such and its image applied as written.

mod support;

use gantry::adapters::registry::Registry;
use gantry::adapters::runner::Runner;
use gantry::app::deploy::preflight::HostCredentials;
use gantry::app::deploy::{Ending, Engine, ImageVerification, Live, Origin, Settings};
use gantry::cancel::Cancel;
use gantry::image::auth::Credentials;
use serde_json::{json, Value};
use support::cluster::{runnable_image, web_container, TestCluster};
use support::registry::push_image;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `bash .ci/testbed up` and `source /var/tmp/gantry-testbed/env` (bash .ci/test does both)")
    })
}

fn unique(name: &str) -> String {
    support::cluster::unique_name(&format!("gantry-preflight/{name}"))
}

fn settings(namespace: &str) -> Settings {
    support::deploy::settings(namespace)
}

/// A Deployment whose init container runs the image's default command (busybox `sh`: exits 0)
/// and whose main container serves HTTP.
fn deployment(ns: &str, name: &str, init_image: &str, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "initContainers": [{"name": "migrate", "image": init_image}],
                    "containers": [web_container(name, image)]}}}})
}

/// A CronJob that never runs during a test (03:00), so its image is never pulled.
fn cron_job(ns: &str, image: &str) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": ns},
        "spec": {"schedule": "0 3 * * *", "suspend": true, "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "report", "image": image}]}}}}}})
}

async fn deploy(
    cluster: &TestCluster,
    namespace: &str,
    objects: Vec<Value>,
    credentials: HostCredentials,
) -> (gantry::app::deploy::Outcome, String) {
    let registry = Registry::new(Some(env("GANTRY_TEST_TLS_REGISTRY_CA").into())).unwrap();
    let (runner, log) = Runner::capturing(false);
    let cancel = Cancel::never();
    let engine = Engine {
        target: Live::verifying(
            cluster.deployer.clone(),
            Some(ImageVerification {
                registry,
                credentials,
            }),
        ),
        environment: "dev".into(),
        settings: settings(namespace),
        runner: &runner,
        cancel: &cancel,
        me: "preflight-test".into(),
    };
    let outcome = engine.deploy(objects, &Origin::default()).await;
    (outcome, log.contents())
}

async fn image_in(
    cluster: &TestCluster,
    ns: &str,
    kind: &str,
    name: &str,
    pointer: &str,
) -> String {
    let api = if kind == "CronJob" {
        "batch/v1"
    } else {
        "apps/v1"
    };
    let object = cluster.get(api, kind, Some(ns), name).await.unwrap();
    object
        .pointer(pointer)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_in_both_registries_are_pinned_by_the_digest_the_registry_serves() {
    let plain = env("GANTRY_TEST_REGISTRY");
    let tls = env("GANTRY_TEST_TLS_REGISTRY");
    let ca = std::fs::read(env("GANTRY_TEST_TLS_REGISTRY_CA")).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let user = env("GANTRY_TEST_TLS_REGISTRY_USER");
    let password = env("GANTRY_TEST_TLS_REGISTRY_PASSWORD");
    let web = unique("web");
    let migrate = unique("migrate");
    let report = unique("report");
    let (_, web_digest) = runnable_image(&web, "v1").await;
    let (_, migrate_digest) = runnable_image(&migrate, "v1").await;
    let report_digest = push_image(
        &http,
        &format!("https://{tls}"),
        Some((&user, &password)),
        &report,
        "v1",
    )
    .await;
    let cluster = TestCluster::connect().await;
    let ns = cluster.namespace("preflight-pin").await;
    let ns = ns.name.as_str();
    let credentials = HostCredentials::from([(
        tls.clone(),
        Credentials {
            username: user.clone(),
            password: password.clone(),
        },
    )]);
    let objects = vec![
        deployment(
            ns,
            "web",
            &format!("{plain}/{migrate}:v1"),
            &format!("{plain}/{web}:v1"),
        ),
        cron_job(ns, &format!("{tls}/{report}:v1")),
    ];
    let (outcome, log) = deploy(&cluster, ns, objects, credentials).await;
    assert_eq!(outcome.ending, Ending::Succeeded, "{log}");
    assert_eq!(
        image_in(
            &cluster,
            ns,
            "Deployment",
            "web",
            "/spec/template/spec/containers/0/image"
        )
        .await,
        format!("{plain}/{web}@{web_digest}")
    );
    assert_eq!(
        image_in(
            &cluster,
            ns,
            "Deployment",
            "web",
            "/spec/template/spec/initContainers/0/image"
        )
        .await,
        format!("{plain}/{migrate}@{migrate_digest}")
    );
    assert_eq!(
        image_in(
            &cluster,
            ns,
            "CronJob",
            "nightly",
            "/spec/jobTemplate/spec/template/spec/containers/0/image"
        )
        .await,
        format!("{tls}/{report}@{report_digest}")
    );
    // The pinned image really runs: the kubelet pulled it by digest.
    let pods = cluster.list("v1", "Pod", Some(ns)).await;
    assert!(
        pods.iter()
            .any(|p| p["status"]["containerStatuses"][0]["imageID"]
                .as_str()
                .is_some_and(|id| id.ends_with(&web_digest))),
        "{pods:?}"
    );
    // What was recorded is what was applied: pinned.
    let record = cluster.releases(ns, "dev").await.remove(0);
    assert!(record.manifests[0].to_string().contains(&web_digest));
    assert!(
        !log.contains(&password),
        "the registry password leaked into the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_tag_stops_the_deploy_naming_object_and_container_and_nothing_is_applied() {
    let plain = env("GANTRY_TEST_REGISTRY");
    let web = unique("web");
    runnable_image(&web, "v1").await;
    let cluster = TestCluster::connect().await;
    let namespace = cluster.namespace("preflight-missing").await;
    let ns = namespace.name.as_str();
    let records = support::cluster::unique_name("records");
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": ns}, "data": {"a": "1"}}),
        deployment(
            ns,
            "web",
            &format!("{plain}/{web}:v1"),
            &format!("{plain}/{web}:no-such-tag"),
        ),
        cron_job(ns, &format!("{plain}/{web}:also-missing")),
    ];
    let registry = Registry::new(Some(env("GANTRY_TEST_TLS_REGISTRY_CA").into())).unwrap();
    let (runner, log) = Runner::capturing(false);
    let cancel = Cancel::never();
    // Records in a namespace that does not exist yet: gantry would create it, but must not.
    let engine = Engine {
        target: Live::verifying(
            cluster.deployer.clone(),
            Some(ImageVerification {
                registry,
                credentials: HostCredentials::new(),
            }),
        ),
        environment: "dev".into(),
        settings: settings(&records),
        runner: &runner,
        cancel: &cancel,
        me: "preflight-test".into(),
    };
    let outcome = engine.deploy(objects, &Origin::default()).await;
    let log = log.contents();
    let Ending::Failed { reason, message } = &outcome.ending else {
        panic!("{:?}\n{log}", outcome.ending);
    };
    assert_eq!(reason, "preflight-failed");
    assert!(
        message.contains(&format!(
            "Deployment/web (namespace {ns}) containers[name=web]"
        )),
        "{message}"
    );
    assert!(
        message.contains(":no-such-tag` does not exist"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "CronJob/nightly (namespace {ns}) containers[name=report]"
        )),
        "{message}"
    );
    assert!(
        !message.contains("migrate"),
        "the existing init image is fine: {message}"
    );
    assert!(cluster
        .get("v1", "ConfigMap", Some(ns), "cfg")
        .await
        .is_none());
    assert!(
        cluster
            .get("v1", "Namespace", None, &records)
            .await
            .is_none(),
        "not even gantry's namespace"
    );
    assert!(!outcome.changed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverifiable_registry_is_reported_not_silently_passed() {
    let cluster = TestCluster::connect().await;
    let namespace = cluster.namespace("preflight-unverified").await;
    let ns = namespace.name.as_str();
    // Nothing listens on port 9 of loopback: the registry cannot be asked (nor pulled from).
    let objects = vec![deployment(
        ns,
        "web",
        "127.0.0.1:9/shop/migrate:v1",
        "127.0.0.1:9/shop/web:v1",
    )];
    let (outcome, log) = deploy(&cluster, ns, objects, HostCredentials::new()).await;
    // Applied as written; the kubelet cannot pull it either, so the first release is removed.
    assert!(
        matches!(outcome.ending, Ending::RolledBack { .. }),
        "{:?}\n{log}",
        outcome.ending
    );
    assert!(
        log.contains("image `127.0.0.1:9/shop/web:v1` could not be verified"),
        "{log}"
    );
    assert!(outcome
        .facts
        .preflight
        .iter()
        .any(|note| note.starts_with("unverified:") && note.contains("127.0.0.1:9/shop/web:v1")));
    // Unverified images are applied as written, not pinned.
    let record = cluster.releases(ns, "dev").await.remove(0);
    assert_eq!(
        record.manifests[0]["spec"]["template"]["spec"]["containers"][0]["image"],
        "127.0.0.1:9/shop/web:v1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_registry_credentials_leave_the_image_unverified_and_named() {
    let tls = env("GANTRY_TEST_TLS_REGISTRY");
    let cluster = TestCluster::connect().await;
    let namespace = cluster.namespace("preflight-401").await;
    let ns = namespace.name.as_str();
    let credentials = HostCredentials::from([(
        tls.clone(),
        Credentials {
            username: "gantry".into(),
            password: "wrong".into(),
        },
    )]);
    let objects = vec![deployment(
        ns,
        "web",
        &format!("{tls}/x/migrate:v1"),
        &format!("{tls}/x/web:v1"),
    )];
    let (outcome, log) = deploy(&cluster, ns, objects, credentials).await;
    assert!(
        matches!(outcome.ending, Ending::RolledBack { .. }),
        "{:?}\n{log}",
        outcome.ending
    );
    assert!(log.contains("could not be verified"), "{log}");
    assert!(log.contains("401"), "{log}");
}
