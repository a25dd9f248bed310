//! How many requests a deploy costs on the test bed's real cluster, seen at the recording proxy: no read before an apply, access checked with one rules review per namespace, a rerun of the deployed release verified with reads only, drift re-applied object by object, and a throttling storm or dropped connections survived.

mod support;

use gantry::pipeline::facts::ChangeAction;
use serde_json::{json, Value};
use support::apiproxy::{Fault, Matcher, Seen};
use support::cluster::web_container;
use support::deploy::{assert_succeeded, config_map, release_with, web, Harness};

/// 20 ConfigMaps, a Secret written with stringData (stored as base64 data) and the web release
/// (ConfigMap, Service, Deployment).
async fn release(h: &Harness, setting: &str) -> Vec<Value> {
    let mut objects: Vec<Value> = (0..20)
        .map(|i| config_map(h.ns(), &format!("extra-{i}"), &format!("{setting}-{i}")))
        .collect();
    objects.push(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "web-secret", "namespace": h.ns()},
        "stringData": {"password": format!("{setting}-secret")}}));
    objects.extend(release_with(
        h.ns(),
        web_container("web", &web("v1").await),
        setting,
    ));
    objects
}

fn writes(requests: &[Seen]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.method != "GET" && !r.path.contains("selfsubject"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_reads_nothing_per_object_and_a_rerun_of_the_deployed_release_writes_nothing() {
    let h = Harness::new("speed-rerun").await;
    let objects = release(&h, "a").await;
    let outcome = h.deploy(objects.clone()).await;
    assert_succeeded(&outcome, &h.log);
    let requests = h.proxy.requests();
    // No GET of an applied object: the apply's answer (201 or 200) says what it did.
    let per_object_reads: Vec<&Seen> = requests
        .iter()
        .filter(|r| {
            r.method == "GET"
                && !r.query.contains("watch")
                && (r.path.contains("/configmaps/") || r.path.contains("/services/"))
        })
        .collect();
    assert!(per_object_reads.is_empty(), "{per_object_reads:?}");
    let created = outcome
        .facts
        .applied
        .iter()
        .filter(|c| c.action == ChangeAction::Created)
        .count();
    assert_eq!(created, objects.len(), "{:?}", outcome.facts.applied);
    // Access: the deployer's rules grant everything in its namespace, so no single review.
    let count = |part: &str| requests.iter().filter(|r| r.path.contains(part)).count();
    assert_eq!(count("selfsubjectrulesreviews"), 1);
    assert_eq!(count("selfsubjectaccessreviews"), 0, "{requests:#?}");

    // The same release again: reads only, a handful of them.
    h.proxy.clear_requests();
    let again = h.deploy(objects.clone()).await;
    assert_succeeded(&again, &h.log);
    let requests = h.proxy.requests();
    assert_eq!(
        writes(&requests),
        Vec::<String>::new(),
        "{}",
        h.log.contents()
    );
    let verified = again.facts.verified.clone().unwrap_or_default();
    assert!(
        verified.starts_with("unchanged, verified: release 1")
            && verified.contains("24 objects")
            && verified.contains("1 workload is healthy"),
        "{verified}\n{}",
        h.log.contents()
    );
    let reads = requests
        .iter()
        .filter(|r| !r.query.contains("watch=true"))
        .count();
    // History (records, index), one LIST per kind (ConfigMap, Service, Deployment), tracking.
    assert!(reads <= 12, "{reads} requests: {requests:#?}");
    assert_eq!(again.facts.release, Some(1));
    assert!(again
        .facts
        .applied
        .iter()
        .all(|c| c.action == ChangeAction::Unchanged));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_re_applies_only_what_drifted() {
    let mut h = Harness::new("speed-drift").await;
    let objects = release(&h, "a").await;
    assert_succeeded(&h.deploy(objects.clone()).await, &h.log);
    // Someone deletes one ConfigMap, edits another by hand (an Update: the field moves to
    // their manager), and a third field manager adds a label of its own to a third one (not a
    // field gantry set: no drift).
    h.cluster
        .delete("v1", "ConfigMap", Some(h.ns()), "extra-3")
        .await;
    h.cluster
        .merge_patch_as(
            "kubectl-edit",
            "v1",
            "ConfigMap",
            Some(h.ns()),
            "extra-5",
            json!({"data": {"setting": "hacked"}}),
        )
        .await;
    h.cluster
        .merge_patch_as(
            "labeller",
            "v1",
            "ConfigMap",
            Some(h.ns()),
            "extra-4",
            json!({"metadata": {"labels": {"team": "shop"}}}),
        )
        .await;
    // Taking the edited field back from kubectl-edit needs force-conflicts (without it the
    // pre-flight stops on the conflict, naming the manager).
    h.settings.force_conflicts = true;
    h.proxy.clear_requests();
    let again = h.deploy(objects.clone()).await;
    assert_succeeded(&again, &h.log);
    assert_eq!(again.facts.verified, None);
    let applied: Vec<(String, ChangeAction)> = again
        .facts
        .applied
        .iter()
        .map(|c| (c.object.clone(), c.action))
        .collect();
    assert_eq!(
        applied,
        [
            (h.named("ConfigMap", "extra-3"), ChangeAction::Created),
            (h.named("ConfigMap", "extra-5"), ChangeAction::Configured)
        ],
        "{}",
        h.log.contents()
    );
    let log = h.log.contents();
    assert!(
        log.contains(&format!("{}: it is gone", h.named("ConfigMap", "extra-3")))
            // Its only field moved to kubectl-edit, so gantry's manager entry is gone.
            && log.contains(&format!(
                "{}: gantry's field manager owns none of its fields",
                h.named("ConfigMap", "extra-5")
            )),
        "{log}"
    );
    assert_eq!(
        h.object("v1", "ConfigMap", "extra-3").await.unwrap()["data"]["setting"],
        "a-3"
    );
    assert_eq!(
        h.object("v1", "ConfigMap", "extra-5").await.unwrap()["data"]["setting"],
        "a-5"
    );
    let labelled = h.object("v1", "ConfigMap", "extra-4").await.unwrap();
    assert_eq!(labelled["metadata"]["labels"]["team"], "shop");
    // Only the drifted objects were dry-run and written.
    let written: std::collections::BTreeSet<String> = writes(&h.proxy.requests())
        .into_iter()
        .filter(|w| w.contains("/configmaps/"))
        .collect();
    let dry_runs = h
        .proxy
        .requests()
        .iter()
        .filter(|r| r.query.contains("dryRun"))
        .count();
    assert_eq!(dry_runs, 2);
    let ns = h.ns().to_string();
    assert_eq!(
        written,
        [
            format!("PATCH /api/v1/namespaces/{ns}/configmaps/extra-3"),
            format!("PATCH /api/v1/namespaces/{ns}/configmaps/extra-5"),
        ]
        .into_iter()
        .collect(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_storm_and_dropped_connections_slow_a_deploy_down_but_it_succeeds() {
    let h = Harness::new("speed-storm").await;
    // 30% of all requests answered 429 with Retry-After: 1, as API priority and fairness does.
    h.proxy.fail_share(
        Matcher::any(),
        0.3,
        Fault::TooManyRequests {
            retry_after_seconds: 1,
        },
    );
    let outcome = h.deploy(release(&h, "a").await).await;
    assert_succeeded(&outcome, &h.log);
    let throttled = h.gantry.traffic().count().throttled;
    assert!(throttled >= 10, "{:?}", h.gantry.traffic().count());
    assert!(
        h.gantry
            .traffic()
            .count()
            .sentence()
            .contains("throttled by the API server (429) and retried as it asked"),
        "{}",
        h.gantry.traffic().count().sentence()
    );
    assert_eq!(
        h.object("v1", "ConfigMap", "extra-19").await.unwrap()["data"]["setting"],
        "a-19"
    );

    // Then 10% of the connections reset, on the next release.
    h.proxy.heal();
    h.proxy.fail_share(Matcher::any(), 0.1, Fault::Reset);
    let outcome = h.deploy(release(&h, "b").await).await;
    assert_succeeded(&outcome, &h.log);
    assert!(
        h.gantry.traffic().count().failed >= 3,
        "{:?}",
        h.gantry.traffic().count()
    );
    assert_eq!(outcome.facts.release, Some(2));
    assert_eq!(
        h.object("v1", "ConfigMap", "extra-19").await.unwrap()["data"]["setting"],
        "b-19"
    );
}
