//! README's first command: `gantry demo` against the test bed deploys the example project (Terraform stack, two images, manifests) for real, then a broken change that it detects and rolls back; the output claims nothing the cluster does not show.

mod support;

use std::process::Command;

use gantry::release::ReleaseStatus;
use support::cluster::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_deploys_then_rolls_a_broken_change_back_on_the_test_bed() {
    let cluster = TestCluster::connect().await;
    let namespace = cluster.namespace("demo").await;
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["demo", "--dir"])
        .arg(dir.path())
        .args(["--namespace", &namespace.name])
        .env_remove("GITHUB_ACTIONS")
        .env_remove("KUBECONFIG")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("gantry demo runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "release 1 is deployed and healthy in namespace {}",
            namespace.name
        )),
        "{text}"
    );
    assert!(
        text.contains("rolled back: release 1 is running again and healthy"),
        "{text}"
    );
    assert!(text.contains("(the backend now exits at start)"), "{text}");
    // What the cluster shows: release 1 deployed, release 2 rolled back, both Deployments
    // healthy on release 1's template (no failing command left on the backend).
    assert_eq!(
        cluster.history(&namespace.name, "demo").await,
        [(1, ReleaseStatus::Deployed), (2, ReleaseStatus::RolledBack)]
    );
    for name in ["backend", "frontend"] {
        let deployment = cluster
            .get("apps/v1", "Deployment", Some(&namespace.name), name)
            .await
            .unwrap();
        assert_eq!(deployment["status"]["readyReplicas"], 2, "{deployment}");
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert!(container["command"].is_null(), "{container}");
        assert!(
            container["image"].as_str().unwrap().contains("@sha256:"),
            "pinned by digest: {container}"
        );
    }
    // The project on disk is back to what runs, and both runs left their summaries.
    let manifests = std::fs::read_to_string(dir.path().join("k8s/app.yaml")).unwrap();
    assert!(!manifests.contains("exit 1"));
    let second = std::fs::read_to_string(dir.path().join(".gantry/summary-2.md")).unwrap();
    assert!(second.contains("rolled back"), "{second}");
}
