//! The example app's PostgreSQL chart (examples/app/charts/postgres) deployed by the gantry binary on the test bed's real cluster: the StatefulSet becomes Ready on a bound PVC and takes a row over password auth; an upgrade whose server cannot start fails, is rolled back, and the database comes back healthy with the row intact. And the example backend deployed with the chart in one run: it becomes Ready only by reaching the chart's database, and stores and reads a note there through its HTTP API.

mod support;

use support::text;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use gantry::release::ReleaseStatus;
use serde_json::{json, Value};
use support::deploy::{gantry_deploy, Checkout};
use support::postgres::{backend_image, postgres_image, UID};

/// Copies a directory tree (files only, as they are).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The example app's PostgreSQL chart and its dev values, copied into the checkout's `charts/`.
fn copy_example_chart(checkout: &Checkout) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/app/charts");
    copy_tree(
        &examples.join("postgres"),
        &checkout.path().join("charts/postgres"),
    );
    std::fs::copy(
        examples.join("values-dev.yaml"),
        checkout.path().join("charts/values-dev.yaml"),
    )
    .unwrap();
}

/// The chart from the example app with its dev values, the image set to the one built here.
/// The test bed's StorageClass `standard` is the in-tree hostPath provisioner: its volumes are
/// directories owned by root (mode 0750) and fsGroup does not apply to them, so the chart's
/// volume-permissions init container hands the data directory to the server's uid.
fn charts(image: &str, extra: &str) -> String {
    format!(
        "- name: db\n  chart: charts/postgres\n  values: ['charts/values-{{environment}}.yaml']\n  set: {{image: '{image}', volumePermissions.enabled: true{extra}}}\n"
    )
}

async fn gantry(checkout: &Checkout, charts: &str) -> Output {
    gantry_with(checkout, charts, &[]).await
}

/// `gantry deploy` of the deploy phase in the checkout, with more arguments.
async fn gantry_with(checkout: &Checkout, charts: &str, more: &[&str]) -> Output {
    let mut cmd = gantry_deploy(checkout.path(), checkout.ns());
    cmd.args(["--charts", charts])
        .args(more)
        .args(["--rollout-timeout", "180s", "--pull-error-tolerance", "1s"])
        .args(["--restart-threshold", "1"]);
    tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("gantry finished within 300 s")
        .expect("gantry runs")
}

/// psql in the pod, over TCP with the owner's password (the pod's own environment).
fn psql(checkout: &Checkout, sql: &str) -> String {
    let script = format!(
        "PGPASSWORD=\"$POSTGRES_PASSWORD\" psql -h 127.0.0.1 -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\" -v ON_ERROR_STOP=1 -Atc \"{sql}\""
    );
    checkout.cluster.kubectl(&[
        "exec",
        "-n",
        checkout.ns(),
        "db-0",
        "-c",
        "postgres",
        "--",
        "sh",
        "-c",
        &script,
    ])
}

async fn assert_healthy(checkout: &Checkout) -> serde_json::Value {
    let statefulset = checkout
        .cluster
        .get("apps/v1", "StatefulSet", Some(checkout.ns()), "db")
        .await
        .expect("the StatefulSet db");
    assert_eq!(statefulset["status"]["readyReplicas"], 1, "{statefulset}");
    assert_eq!(
        statefulset["status"]["currentRevision"], statefulset["status"]["updateRevision"],
        "{statefulset}"
    );
    let claim = checkout
        .cluster
        .get(
            "v1",
            "PersistentVolumeClaim",
            Some(checkout.ns()),
            "data-db-0",
        )
        .await
        .expect("the StatefulSet's claim data-db-0");
    assert_eq!(claim["status"]["phase"], "Bound", "{claim}");
    claim
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_chart_deploys_keeps_its_data_and_rolls_back_a_broken_upgrade() {
    let started = Instant::now();
    let checkout = Checkout::new("postgres").await;
    copy_example_chart(&checkout);
    let image = postgres_image().await;
    eprintln!("image {image} ready after {:?}", started.elapsed());

    // First deploy: gantry succeeds only once the StatefulSet is Ready on its bound claim.
    let first = gantry(&checkout, &charts(&image, "")).await;
    assert!(first.status.success(), "{}", text(&first));
    let log = text(&first);
    assert!(log.contains("chart `db`: postgres 0.1.0 rendered"), "{log}");
    let claim = assert_healthy(&checkout).await;
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "256Mi");
    let pod = checkout
        .cluster
        .get("v1", "Pod", Some(checkout.ns()), "db-0")
        .await
        .unwrap();
    assert_eq!(pod["spec"]["securityContext"]["runAsUser"], UID, "{pod}");
    eprintln!("first deploy healthy after {:?}", started.elapsed());

    // A row, written over password auth as the database's owner.
    assert_eq!(psql(&checkout, "select current_user").trim(), "app");
    psql(
        &checkout,
        "create table notes (id int primary key, body text); insert into notes values (1, 'kept across a rollback')",
    );
    assert_eq!(
        psql(&checkout, "select body from notes where id = 1").trim(),
        "kept across a rollback"
    );
    let volume = claim["spec"]["volumeName"].clone();

    // An upgrade whose server refuses to start (an invalid setting): the pod crashes, gantry
    // fails the run and rolls back, and the StatefulSet is healthy again on the same claim.
    let broken = gantry(
        &checkout,
        &charts(&image, ", config.shared_buffers: 'not-a-size'"),
    )
    .await;
    let log = text(&broken);
    assert!(!broken.status.success(), "{log}");
    for fragment in [
        "RestartThresholdExceeded: container \"postgres\" of pod \"db-0\"",
        "of the failed revision deleted: its StatefulSet recreates it from the restored template",
        "rolled back: release 1 is restored and healthy",
        "rolled-back=true",
    ] {
        assert!(log.contains(fragment), "`{fragment}` not in\n{log}");
    }
    assert_eq!(
        checkout.cluster.history(checkout.ns(), "dev").await,
        [(1, ReleaseStatus::Deployed), (2, ReleaseStatus::RolledBack)],
        "{log}"
    );
    let statefulset = checkout
        .cluster
        .wait_for(
            "apps/v1",
            "StatefulSet",
            Some(checkout.ns()),
            "db",
            Duration::from_secs(120),
            |s| {
                s.is_some_and(|s| {
                    s["status"]["readyReplicas"] == 1
                        && s["status"]["currentRevision"] == s["status"]["updateRevision"]
                })
            },
        )
        .await
        .unwrap();
    assert!(
        statefulset["spec"]["template"]["spec"]["containers"][0]["args"].is_null(),
        "the restored template has no `config` settings: {statefulset}"
    );
    let claim = assert_healthy(&checkout).await;
    assert_eq!(claim["spec"]["volumeName"], volume, "the same volume");
    checkout
        .cluster
        .wait_for(
            "v1",
            "Pod",
            Some(checkout.ns()),
            "db-0",
            Duration::from_secs(60),
            |p| {
                p.and_then(|p| p["status"]["conditions"].as_array())
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
            },
        )
        .await;
    assert_eq!(
        psql(&checkout, "select body from notes where id = 1").trim(),
        "kept across a rollback",
        "{log}"
    );
    eprintln!("rolled back and checked after {:?}", started.elapsed());
}

/// The example backend as examples/app/k8s/backend.yaml runs it (same probes and hardening, one
/// replica), its settings pointing at the chart's Service `db` and its password taken from the
/// chart's Secret `db`: nothing but the chart's database can make it Ready.
fn backend_manifest(image: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: notes-backend
  labels: {{app.kubernetes.io/name: notes-backend}}
data:
  DATABASE_HOST: db
  DATABASE_PORT: "5432"
  DATABASE_NAME: app
  DATABASE_USER: app
  # The chart's server offers no TLS: `prefer` falls back to plain, as in backend.yaml.
  DATABASE_SSLMODE: prefer
  APP_ENVIRONMENT: dev
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: backend
  labels: {{app.kubernetes.io/name: notes-backend}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app.kubernetes.io/name: notes-backend}}
  template:
    metadata:
      labels: {{app.kubernetes.io/name: notes-backend}}
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      securityContext:
        runAsNonRoot: true
        seccompProfile: {{type: RuntimeDefault}}
      terminationGracePeriodSeconds: 5
      containers:
        - name: backend
          image: "{image}"
          ports:
            - {{name: http, containerPort: 8080}}
          envFrom:
            - configMapRef: {{name: notes-backend}}
          env:
            - name: DATABASE_PASSWORD
              valueFrom:
                secretKeyRef: {{name: db, key: password}}
          readinessProbe:
            httpGet: {{path: /healthz, port: http}}
            periodSeconds: 2
            timeoutSeconds: 3
            failureThreshold: 2
          resources:
            requests: {{cpu: 50m, memory: 64Mi}}
            limits: {{memory: 128Mi}}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {{drop: [ALL]}}
"#
    )
}

/// An HTTP request to the backend from inside its own pod (Python's standard library, which the
/// image has): prints the status and the body.
const REQUEST: &str = r#"
import sys, urllib.request, urllib.error
method, path = sys.argv[1], sys.argv[2]
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
request = urllib.request.Request("http://127.0.0.1:8080" + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=10) as response:
        status, body = response.status, response.read()
except urllib.error.HTTPError as err:
    status, body = err.code, err.read()
print(status)
print(body.decode())
"#;

fn backend_http(checkout: &Checkout, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut args = vec![
        "exec",
        "-n",
        checkout.ns(),
        "deployment/backend",
        "-c",
        "backend",
        "--",
        "python3",
        "-c",
        REQUEST,
        method,
        path,
    ];
    args.extend(body);
    let output = checkout.cluster.kubectl(&args);
    let (status, body) = output
        .split_once('\n')
        .unwrap_or_else(|| panic!("{method} {path}: {output}"));
    let body = serde_json::from_str(body.trim())
        .unwrap_or_else(|err| panic!("{method} {path}: {err}: {output}"));
    (status.trim().parse().unwrap(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_connects_to_the_chart_database() {
    let started = Instant::now();
    let checkout = Checkout::new("notes").await;
    copy_example_chart(&checkout);
    let (image, backend) = tokio::join!(postgres_image(), backend_image());
    eprintln!(
        "images {image} and {backend} ready after {:?}",
        started.elapsed()
    );
    std::fs::write(
        checkout.path().join("k8s/backend.yaml"),
        backend_manifest(&backend),
    )
    .unwrap();

    // One run deploys the chart and the backend; it succeeds only once the backend is Ready,
    // and its readiness probe (/healthz) answers 200 only when the database answers it.
    let output = gantry_with(&checkout, &charts(&image, ""), &["--manifests", "k8s"]).await;
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("chart `db`: postgres 0.1.0 rendered"), "{log}");
    for fragment in [
        "release 1: applying 5 objects".to_string(),
        format!(
            "Deployment/backend (namespace {}): deployment \"backend\" successfully rolled out",
            checkout.ns()
        ),
    ] {
        assert!(log.contains(&fragment), "`{fragment}` not in\n{log}");
    }
    assert_eq!(
        checkout.cluster.history(checkout.ns(), "dev").await,
        [(1, ReleaseStatus::Deployed)],
        "{log}"
    );
    assert_healthy(&checkout).await;
    let deployment = checkout
        .cluster
        .get("apps/v1", "Deployment", Some(checkout.ns()), "backend")
        .await
        .expect("the Deployment backend");
    assert_eq!(deployment["status"]["readyReplicas"], 1, "{deployment}");
    eprintln!("deployed and Ready after {:?}", started.elapsed());

    let (status, health) = backend_http(&checkout, "GET", "/healthz", None);
    assert_eq!(
        (status, &health["database"]),
        (200, &json!("ok")),
        "{health}"
    );
    assert_eq!(health["environment"], "dev", "{health}");

    // A note through the API, read back through it and found in the chart's database.
    let note = format!("stored in the chart's database {}", checkout.ns());
    let (status, created) = backend_http(
        &checkout,
        "POST",
        "/api/notes",
        Some(&json!({ "text": note }).to_string()),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["text"], note.as_str(), "{created}");
    let id = created["id"].as_i64().expect("a numeric id");
    let (status, fetched) = backend_http(&checkout, "GET", &format!("/api/notes/{id}"), None);
    assert_eq!(status, 200, "{fetched}");
    assert_eq!(fetched, created);
    let (status, listed) = backend_http(&checkout, "GET", "/api/notes", None);
    assert_eq!(status, 200, "{listed}");
    assert!(
        listed
            .as_array()
            .is_some_and(|notes| notes.contains(&created)),
        "{listed}"
    );
    assert_eq!(
        psql(
            &checkout,
            &format!("select text from notes where id = {id}")
        )
        .trim(),
        note
    );
    eprintln!("round trip checked after {:?}", started.elapsed());
}
