//! Deploy benchmarks against the in-process fake API server, side by side in one run:
//! (1) applying 300 objects with the default concurrency vs one at a time (the plain
//! `kubectl apply --server-side` way), (2) detection latency: from the first fatal pod status
//! the API serves to gantry starting the rollback, (3) a no-op rerun vs the first deploy.
//!
//! Run: `bash .ci/testbed up && source /var/tmp/gantry-testbed/env && cargo bench --bench deploy`
//! (prints medians and ratios; the pre-flight part needs the local registry).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry::adapters::kube::{ApplyOptions, Cluster};
use gantry::adapters::registry::Registry;
use gantry::adapters::runner::Runner;
use gantry::deploy::ImageVerification;
use gantry::deploy::{apply, Engine, Origin, Settings};
use gantry::pipeline::Cancel;
use gantry::rollout::Tolerances;
use serde_json::{json, Value};
use support::fake_apiserver::{Behavior, FakeApiServer};
use support::registry::push_image;

const NS: &str = "bench";

fn settings() -> Settings {
    Settings {
        environment: "bench".into(),
        namespace: NS.into(),
        rollout_timeout: Duration::from_secs(60),
        rollback: true,
        prune: true,
        force_conflicts: false,
        history_max: 10,
        lock_timeout: Duration::from_secs(5),
        apply_concurrency: 8,
        tolerances: Tolerances {
            pull_error: Duration::ZERO,
            restart_threshold: 3,
            unschedulable: Duration::from_secs(60),
        },
    }
}

fn config_maps(count: usize, run: usize) -> Vec<Value> {
    (0..count)
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cm-{i}"), "namespace": NS},
                "data": {"run": run.to_string(), "value": "x".repeat(200)}})
        })
        .collect()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn apply_bench(rounds: usize) {
    let mut concurrent = Vec::new();
    let mut sequential = Vec::new();
    for round in 0..rounds {
        for (concurrency, samples) in [(8usize, &mut concurrent), (1usize, &mut sequential)] {
            let fake = FakeApiServer::start().await;
            fake.put_object(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
            );
            let cluster = Cluster::new(fake.client(), "bench");
            let objects = config_maps(300, round);
            let started = Instant::now();
            let applied = apply::apply_all(
                &cluster,
                &objects,
                ApplyOptions::default(),
                concurrency,
                "bench",
            )
            .await;
            samples.push(started.elapsed());
            assert!(applied.errors.is_empty(), "{:?}", applied.errors);
            assert_eq!(applied.changes.len(), 300);
        }
    }
    let (c, s) = (median(concurrent), median(sequential));
    println!(
        "apply 300 objects: concurrent (8) {:.0} ms, sequential {:.0} ms, ratio concurrent/sequential {:.2}x",
        c.as_secs_f64() * 1000.0,
        s.as_secs_f64() * 1000.0,
        c.as_secs_f64() / s.as_secs_f64()
    );
}

fn deployment(image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]}}}})
}

fn first_fatal_pod(fake: &FakeApiServer) -> bool {
    fake.list("v1", "Pod").iter().any(|pod| {
        pod["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| {
                matches!(
                    c["state"]["waiting"]["reason"].as_str(),
                    Some("ErrImagePull" | "ImagePullBackOff")
                )
            })
    })
}

async fn detection_bench(rounds: usize) {
    let mut latencies = Vec::new();
    let mut first_deploys = Vec::new();
    let mut reruns = Vec::new();
    for _ in 0..rounds {
        let fake = FakeApiServer::start().await;
        fake.set_image_behavior("web:broken", Behavior::ImagePullError);
        let cluster = Arc::new(Cluster::new(fake.client(), "bench"));
        let (runner, log) = Runner::capturing(false);
        let cancel = Cancel::never();
        let engine = Engine {
            cluster,
            settings: settings(),
            runner: &runner,
            cancel: &cancel,
            me: "bench".into(),
            images: None,
        };
        let started = Instant::now();
        engine
            .deploy(vec![deployment("127.0.0.1:1/web:v1")], &Origin::default())
            .await;
        first_deploys.push(started.elapsed());
        let started = Instant::now();
        engine
            .deploy(vec![deployment("127.0.0.1:1/web:v1")], &Origin::default())
            .await;
        reruns.push(started.elapsed());

        let watch = async {
            let mut fatal_at = None;
            loop {
                if fatal_at.is_none() && first_fatal_pod(&fake) {
                    fatal_at = Some(Instant::now());
                }
                if log.contents().contains("rolling back to release") {
                    return fatal_at.map(|at| at.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        let origin = Origin::default();
        let (_, latency) = tokio::join!(
            engine.deploy(vec![deployment("127.0.0.1:1/web:broken")], &origin),
            watch
        );
        if let Some(latency) = latency {
            latencies.push(latency);
        }
    }
    let latency = median(latencies);
    println!(
        "detection: first fatal pod status served -> rollback started: median {:.0} ms (goal: within one watch event, no sleep over 1 s in the path)",
        latency.as_secs_f64() * 1000.0
    );
    let (first, rerun) = (median(first_deploys), median(reruns));
    println!(
        "no-op rerun {:.0} ms vs first deploy {:.0} ms: ratio {:.2}x",
        rerun.as_secs_f64() * 1000.0,
        first.as_secs_f64() * 1000.0,
        rerun.as_secs_f64() / first.as_secs_f64()
    );
}

/// 50 objects: 5 Deployments (one image each), 5 Services, 40 ConfigMaps.
fn release_of_50(registry: &str, repositories: &[String]) -> Vec<Value> {
    let mut objects = Vec::new();
    for i in 0..40 {
        objects.push(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("cm-{i}"), "namespace": NS}, "data": {"v": "x".repeat(100)}}));
    }
    for i in 0..repositories.len() {
        objects.push(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("svc-{i}"), "namespace": NS},
            "spec": {"selector": {"app": format!("app-{i}")}, "ports": [{"port": 80}]}}));
    }
    for (i, repository) in repositories.iter().enumerate() {
        objects.push(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": format!("app-{i}"), "namespace": NS},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": format!("app-{i}")}},
                "template": {"metadata": {"labels": {"app": format!("app-{i}")}},
                    "spec": {"containers": [{"name": "main", "image": format!("{registry}/{repository}:v1")}]}}}}));
    }
    objects
}

async fn preflight_bench(rounds: usize) {
    let Ok(registry) = std::env::var("GANTRY_TEST_REGISTRY") else {
        eprintln!("pre-flight: skipped: GANTRY_TEST_REGISTRY is not set (bash .ci/testbed up && source /var/tmp/gantry-testbed/env)");
        std::process::exit(2);
    };
    let http = reqwest::Client::new();
    let repositories: Vec<String> = (0..5).map(|i| format!("gantry-bench/app-{i}")).collect();
    for repository in &repositories {
        push_image(&http, &format!("http://{registry}"), None, repository, "v1").await;
    }
    let mut preflights = Vec::new();
    let mut applies = Vec::new();
    for _ in 0..rounds {
        let fake = FakeApiServer::start().await;
        fake.put_object(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}));
        let cluster = Arc::new(Cluster::new(fake.client(), "bench"));
        let (runner, _log) = Runner::capturing(false);
        let cancel = Cancel::never();
        let engine = Engine {
            cluster: cluster.clone(),
            settings: settings(),
            runner: &runner,
            cancel: &cancel,
            me: "bench".into(),
            images: Some(ImageVerification {
                registry: Registry::new(None).expect("registry client"),
                credentials: Default::default(),
            }),
        };
        let mut objects = release_of_50(&registry, &repositories);
        let started = Instant::now();
        let checked = engine.preflight(&mut objects).await;
        preflights.push(started.elapsed());
        assert!(checked.is_ok(), "{checked:?}");
        let started = Instant::now();
        let applied =
            apply::apply_all(&cluster, &objects, ApplyOptions::default(), 8, "bench").await;
        applies.push(started.elapsed());
        assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    }
    let (p, a) = (median(preflights), median(applies));
    println!(
        "pre-flight of 50 objects and 5 images {:.0} ms vs the apply it protects {:.0} ms: ratio {:.2}x",
        p.as_secs_f64() * 1000.0,
        a.as_secs_f64() * 1000.0,
        p.as_secs_f64() / a.as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is ignored.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        apply_bench(3).await;
        detection_bench(3).await;
        preflight_bench(3).await;
    });
}
