//! Pre-flight image checks against the real local registries (plain, and TLS + htpasswd) with the fake API server: an image that exists is pinned by the digest the registry serves, a missing tag stops the deploy before anything is applied, an unverifiable registry is reported as such.

mod support;

use std::sync::Arc;

use gantry::adapters::kube::Cluster;
use gantry::adapters::registry::Registry;
use gantry::adapters::runner::Runner;
use gantry::deploy::preflight::HostCredentials;
use gantry::deploy::{Ending, Engine, ImageVerification, Origin, Settings};
use gantry::image::auth::Credentials;
use gantry::pipeline::Cancel;
use gantry::rollout::Tolerances;
use serde_json::{json, Value};
use support::fake_apiserver::FakeApiServer;
use support::registry::push_image;

const NS: &str = "shop";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `bash .ci/testbed up` and `source /var/tmp/gantry-testbed/env` (bash .ci/test does both)")
    })
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("gantry-preflight/{name}-{nanos}")
}

fn settings() -> Settings {
    Settings {
        tolerances: Tolerances::default(),
        ..support::deploy::settings(NS)
    }
}

fn deployment(name: &str, init_image: &str, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {
                    "initContainers": [{"name": "migrate", "image": init_image}],
                    "containers": [{"name": name, "image": image}]}}}})
}

fn cron_job(image: &str) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": NS},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "report", "image": image}]}}}}}})
}

async fn deploy(
    fake: &FakeApiServer,
    objects: Vec<Value>,
    credentials: HostCredentials,
) -> (gantry::deploy::Outcome, String) {
    let registry = Registry::new(Some(env("GANTRY_TEST_TLS_REGISTRY_CA").into())).unwrap();
    let (runner, log) = Runner::capturing(false);
    let cancel = Cancel::never();
    let engine = Engine {
        cluster: Arc::new(Cluster::new(
            fake.client(),
            "system:serviceaccount:ci:gantry",
        )),
        settings: settings(),
        runner: &runner,
        cancel: &cancel,
        me: "preflight-test".into(),
        images: Some(ImageVerification {
            registry,
            credentials,
        }),
    };
    let outcome = engine.deploy(objects, &Origin::default()).await;
    (outcome, log.contents())
}

fn image_in(fake: &FakeApiServer, kind: &str, name: &str, pointer: &str) -> String {
    let api = if kind == "CronJob" {
        "batch/v1"
    } else {
        "apps/v1"
    };
    let object = fake.get(api, kind, Some(NS), name).unwrap();
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
    let web_digest = push_image(&http, &format!("http://{plain}"), None, &web, "v1").await;
    let migrate_digest = push_image(&http, &format!("http://{plain}"), None, &migrate, "v1").await;
    let report_digest = push_image(
        &http,
        &format!("https://{tls}"),
        Some((&user, &password)),
        &report,
        "v1",
    )
    .await;
    let fake = FakeApiServer::start().await;
    let credentials = HostCredentials::from([(
        tls.clone(),
        Credentials {
            username: user.clone(),
            password: password.clone(),
        },
    )]);
    let objects = vec![
        deployment(
            "web",
            &format!("{plain}/{migrate}:v1"),
            &format!("{plain}/{web}:v1"),
        ),
        cron_job(&format!("{tls}/{report}:v1")),
    ];
    let (outcome, log) = deploy(&fake, objects, credentials).await;
    assert_eq!(outcome.ending, Ending::Succeeded, "{log}");
    assert_eq!(
        image_in(
            &fake,
            "Deployment",
            "web",
            "/spec/template/spec/containers/0/image"
        ),
        format!("{plain}/{web}@{web_digest}")
    );
    assert_eq!(
        image_in(
            &fake,
            "Deployment",
            "web",
            "/spec/template/spec/initContainers/0/image"
        ),
        format!("{plain}/{migrate}@{migrate_digest}")
    );
    assert_eq!(
        image_in(
            &fake,
            "CronJob",
            "nightly",
            "/spec/jobTemplate/spec/template/spec/containers/0/image"
        ),
        format!("{tls}/{report}@{report_digest}")
    );
    // What was recorded is what was applied: pinned.
    let record = fake
        .list("v1", "Secret")
        .into_iter()
        .find(|s| s["type"] == gantry::release::SECRET_TYPE)
        .map(|s| gantry::release::from_secret(&s).unwrap())
        .unwrap();
    assert!(record.manifests[0].to_string().contains(&web_digest));
    assert!(
        !log.contains(&password),
        "the registry password leaked into the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_tag_stops_the_deploy_naming_object_and_container_and_nothing_is_applied() {
    let plain = env("GANTRY_TEST_REGISTRY");
    let http = reqwest::Client::new();
    let web = unique("web");
    push_image(&http, &format!("http://{plain}"), None, &web, "v1").await;
    let fake = FakeApiServer::start().await;
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": NS}, "data": {"a": "1"}}),
        deployment(
            "web",
            &format!("{plain}/{web}:v1"),
            &format!("{plain}/{web}:no-such-tag"),
        ),
        cron_job(&format!("{plain}/{web}:also-missing")),
    ];
    let (outcome, log) = deploy(&fake, objects, HostCredentials::new()).await;
    let Ending::Failed { reason, message } = &outcome.ending else {
        panic!("{:?}\n{log}", outcome.ending);
    };
    assert_eq!(reason, "preflight-failed");
    assert!(
        message.contains("Deployment/web (namespace shop) containers[name=web]"),
        "{message}"
    );
    assert!(
        message.contains(":no-such-tag` does not exist"),
        "{message}"
    );
    assert!(
        message.contains("CronJob/nightly (namespace shop) containers[name=report]"),
        "{message}"
    );
    assert!(
        !message.contains("migrate"),
        "the existing init image is fine: {message}"
    );
    assert!(fake.get("v1", "ConfigMap", Some(NS), "cfg").is_none());
    assert!(
        fake.get("v1", "Namespace", None, NS).is_none(),
        "not even gantry's namespace"
    );
    assert!(!outcome.changed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverifiable_registry_is_reported_not_silently_passed() {
    let fake = FakeApiServer::start().await;
    // Nothing listens on port 9 of loopback: the registry cannot be asked.
    let objects = vec![deployment(
        "web",
        "127.0.0.1:9/shop/migrate:v1",
        "127.0.0.1:9/shop/web:v1",
    )];
    let (outcome, log) = deploy(&fake, objects, HostCredentials::new()).await;
    assert_eq!(outcome.ending, Ending::Succeeded, "{log}");
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
    assert_eq!(
        image_in(
            &fake,
            "Deployment",
            "web",
            "/spec/template/spec/containers/0/image"
        ),
        "127.0.0.1:9/shop/web:v1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_registry_credentials_leave_the_image_unverified_and_named() {
    let tls = env("GANTRY_TEST_TLS_REGISTRY");
    let fake = FakeApiServer::start().await;
    let credentials = HostCredentials::from([(
        tls.clone(),
        Credentials {
            username: "gantry".into(),
            password: "wrong".into(),
        },
    )]);
    let objects = vec![deployment(
        "web",
        &format!("{tls}/x/migrate:v1"),
        &format!("{tls}/x/web:v1"),
    )];
    let (outcome, log) = deploy(&fake, objects, credentials).await;
    assert_eq!(outcome.ending, Ending::Succeeded, "{log}");
    assert!(log.contains("could not be verified"), "{log}");
    assert!(log.contains("401"), "{log}");
}
