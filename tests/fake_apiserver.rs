//! Tests of the fake API server, pinned to the exchanges recorded from a real kube-apiserver.

mod support;

use futures::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::{json, Value};
use std::time::Duration;
use support::fake_apiserver::{FakeApiServer, Fault, RequestMatcher};

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/k8s/api/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture json")
}

/// Send a raw request; returns (status, body text).
async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut b = http::Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    let req = b
        .body(kube::client::Body::from(
            body.unwrap_or_default().as_bytes().to_vec(),
        ))
        .expect("request");
    let resp = client.send(req).await.expect("send");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Replay a recorded exchange's request; returns (status, body as JSON or string).
async fn replay(client: &kube::Client, fx: &Value) -> (u16, Value) {
    let r = &fx["request"];
    let (status, text) = send(
        client,
        r["method"].as_str().unwrap(),
        r["path"].as_str().unwrap(),
        r["content_type"].as_str(),
        r["body"].as_str(),
    )
    .await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn ensure_namespace(client: &kube::Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

fn managed(v: &Value) -> Vec<(String, String, Value)> {
    v["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["manager"].as_str().unwrap().to_string(),
                e["operation"].as_str().unwrap().to_string(),
                e["fieldsV1"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn discovery_documents_match_the_recorded_ones() {
    let api = FakeApiServer::start().await;
    let client = api.client();
    for (file, path) in [
        ("discovery-core.json", "/api/v1"),
        ("discovery-apps.json", "/apis/apps/v1"),
    ] {
        let recorded = fixture(file)["response"]["body"].clone();
        let (status, text) = send(&client, "GET", path, None, None).await;
        assert_eq!(status, 200);
        let served: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(served["kind"], "APIResourceList");
        assert_eq!(served["groupVersion"], recorded["groupVersion"]);
        assert_eq!(
            served.get("apiVersion"),
            recorded.get("apiVersion"),
            "{path}: apiVersion presence"
        );
        for entry in served["resources"].as_array().unwrap() {
            let name = entry["name"].as_str().unwrap();
            let rec = recorded["resources"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name);
            let rec = rec.unwrap_or_else(|| panic!("{path}: {name} is not in the recording"));
            let mut rec = rec.clone();
            rec.as_object_mut().unwrap().remove("storageVersionHash");
            assert_eq!(entry, &rec, "{path}: {name}");
        }
    }
    // Every recorded apps/v1 resource is served.
    let (_, text) = send(&client, "GET", "/apis/apps/v1", None, None).await;
    let served: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        served["resources"].as_array().unwrap().len(),
        fixture("discovery-apps.json")["response"]["body"]["resources"]
            .as_array()
            .unwrap()
            .len()
    );
    let (_, text) = send(&client, "GET", "/apis", None, None).await;
    let groups: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(groups["kind"], "APIGroupList");
    let recorded = fixture("discovery-groups.json")["response"]["body"]["groups"].clone();
    for g in groups["groups"].as_array().unwrap() {
        if let Some(rec) = recorded
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == g["name"])
        {
            assert_eq!(
                g["preferredVersion"], rec["preferredVersion"],
                "{}",
                g["name"]
            );
        }
    }
    // kube's own discovery resolves scopes from these documents.
    let discovery = kube::Discovery::new(client).run().await.expect("discovery");
    let (ar, caps) = discovery
        .resolve_gvk(&kube::api::GroupVersionKind::gvk(
            "apps",
            "v1",
            "Deployment",
        ))
        .unwrap();
    assert_eq!(ar.plural, "deployments");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    let (_, caps) = discovery
        .resolve_gvk(&kube::api::GroupVersionKind::gvk("", "v1", "Namespace"))
        .unwrap();
    assert_eq!(caps.scope, kube::discovery::Scope::Cluster);
}

#[tokio::test]
async fn server_side_apply_replays_the_recorded_configmap_exchanges() {
    let api = FakeApiServer::start().await;
    let client = api.client();
    ensure_namespace(&client, "fx-api").await;

    let fx = fixture("ssa-create.json");
    let (status, created) = replay(&client, &fx).await;
    assert_eq!(status, 201);
    let want = &fx["response"]["body"];
    assert_eq!(created["data"], want["data"]);
    assert_eq!(created["metadata"]["labels"], want["metadata"]["labels"]);
    assert_eq!(managed(&created), managed(want));
    assert!(
        created["metadata"].get("generation").is_none(),
        "ConfigMaps have no generation"
    );
    let rv0: u64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let fx = fixture("ssa-dry-run-update.json");
    let (status, dry) = replay(&client, &fx).await;
    assert_eq!(status, 200);
    assert_eq!(dry["data"], fx["response"]["body"]["data"]);
    assert_eq!(
        dry["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    let stored = api
        .get("v1", "ConfigMap", Some("fx-api"), "settings")
        .unwrap();
    assert_eq!(
        stored["data"]["LOG_LEVEL"], "info",
        "dry run stores nothing"
    );

    let fx = fixture("ssa-update.json");
    let (status, updated) = replay(&client, &fx).await;
    assert_eq!(status, 200);
    assert_eq!(updated["data"], fx["response"]["body"]["data"]);
    assert_eq!(managed(&updated), managed(&fx["response"]["body"]));
    let rv1: u64 = updated["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv1 > rv0);
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);

    // Re-applying the same configuration is a no-op: same resourceVersion.
    let (status, again) = replay(&client, &fx).await;
    assert_eq!(status, 200);
    assert_eq!(
        again["metadata"]["resourceVersion"],
        updated["metadata"]["resourceVersion"]
    );

    for file in ["ssa-conflict-other-manager.json"] {
        let fx = fixture(file);
        let (status, body) = replay(&client, &fx).await;
        assert_eq!(status, 409, "{file}");
        assert_eq!(body, fx["response"]["body"], "{file}");
    }

    let fx = fixture("ssa-force-other-manager.json");
    let (status, forced) = replay(&client, &fx).await;
    assert_eq!(status, 200);
    assert_eq!(forced["data"], fx["response"]["body"]["data"]);
    assert_eq!(
        managed(&forced),
        managed(&fx["response"]["body"]),
        "force moves LOG_LEVEL to someone-else"
    );

    let fx = fixture("ssa-conflict-back.json");
    let (status, body) = replay(&client, &fx).await;
    assert_eq!(status, 409);
    assert_eq!(body, fx["response"]["body"]);

    let fx = fixture("delete-configmap.json");
    let (status, body) = replay(&client, &fx).await;
    assert_eq!(status, 200);
    let mut want = fx["response"]["body"].clone();
    want["details"]["uid"] = created["metadata"]["uid"].clone();
    assert_eq!(body, want);

    let fx = fixture("get-missing.json");
    let (status, body) = replay(&client, &fx).await;
    assert_eq!(status, 404);
    assert_eq!(body, fx["response"]["body"]);
}

#[tokio::test]
async fn invalid_deployment_gets_the_recorded_422() {
    let api = FakeApiServer::start().await;
    let client = api.client();
    ensure_namespace(&client, "fx-api").await;
    let fx = fixture("ssa-invalid-deployment.json");
    let (status, body) = replay(&client, &fx).await;
    assert_eq!(status, 422);
    assert_eq!(body, fx["response"]["body"]);
    assert!(api
        .get("apps/v1", "Deployment", Some("fx-api"), "Bad_Name")
        .is_none());
}

#[tokio::test]
async fn unknown_group_gets_a_plain_404() {
    let api = FakeApiServer::start().await;
    let fx = fixture("unknown-kind.json");
    let (status, body) = replay(&api.client(), &fx).await;
    assert_eq!(status, 404);
    assert_eq!(body, fx["response"]["body"]);
}

#[tokio::test]
async fn compaction_gives_the_recorded_410s_for_list_and_watch() {
    let api = FakeApiServer::start().await;
    let client = api.client();
    ensure_namespace(&client, "fx-api").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "fx-api");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "a"}, "data": {"k": "v"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    api.compact();

    let fx = fixture("list-too-old.json");
    let (status, body) = replay(&client, &fx).await;
    assert_eq!(status, 410);
    assert_eq!(body, fx["response"]["body"]);

    let fx = fixture("watch-too-old.json");
    let (status, body) = replay(&client, &fx).await;
    assert_eq!(
        status, 200,
        "a too-old watch is an ERROR event in a 200 stream"
    );
    let mut want = fx["response"]["body"].clone();
    want["object"]["message"] = json!(format!(
        "too old resource version: 5 ({})",
        api.resource_version()
    ));
    assert_eq!(body, want);

    // A list without a resourceVersion still works after compaction.
    assert_eq!(
        cms.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
}

#[tokio::test]
async fn apply_is_idempotent_and_removes_fields_it_no_longer_applies() {
    let api = FakeApiServer::start().await;
    let client = api.client();
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pp = PatchParams::apply("gantry");
    let v1 = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"tier": "front", "canary": "yes"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "main", "image": "shop/web:v1",
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}}}
    });
    let first = deploys.patch("web", &pp, &Patch::Apply(&v1)).await.unwrap();
    assert_eq!(first.metadata.generation, Some(1));
    let second = deploys.patch("web", &pp, &Patch::Apply(&v1)).await.unwrap();
    assert_eq!(
        second.metadata.resource_version, first.metadata.resource_version,
        "no-op apply"
    );
    assert_eq!(second.metadata.generation, Some(1));
    let fields = &managed(&serde_json::to_value(&second).unwrap())[0];
    assert_eq!((fields.0.as_str(), fields.1.as_str()), ("gantry", "Apply"));
    assert!(
        fields.2["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"main\"}"]
            ["f:env"]
            .get("k:{\"name\":\"B\"}")
            .is_some()
    );

    // v2 drops env B and the canary label: both disappear, generation moves once.
    let mut v2 = v1.clone();
    v2["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("canary");
    v2["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "A", "value": "1"}]);
    let third = deploys.patch("web", &pp, &Patch::Apply(&v2)).await.unwrap();
    assert_eq!(third.metadata.generation, Some(2));
    assert!(!third
        .metadata
        .labels
        .as_ref()
        .unwrap()
        .contains_key("canary"));
    let env = third
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .env
        .clone()
        .unwrap();
    assert_eq!(
        env.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["A"]
    );
    // Defaults the server set stay (nobody owns them).
    assert_eq!(
        third.spec.as_ref().unwrap().revision_history_limit,
        Some(10)
    );

    // Re-applying v1 (a rollback) brings them back.
    let back = deploys.patch("web", &pp, &Patch::Apply(&v1)).await.unwrap();
    assert_eq!(back.metadata.generation, Some(3));
    assert_eq!(back.metadata.labels.as_ref().unwrap()["canary"], "yes");
}

#[tokio::test]
async fn apply_rules_missing_manager_stale_version_missing_namespace_and_immutable_fields() {
    let api = FakeApiServer::start().await;
    let client = api.client();
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n";
    let (status, body) = send(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/c",
        Some("application/apply-patch+yaml"),
        Some(cm),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("fieldManager: Required value: is required for apply patch"));

    let (status, body) = send(
        &client,
        "PATCH",
        "/api/v1/namespaces/nope/configmaps/c?fieldManager=gantry",
        Some("application/apply-patch+yaml"),
        Some(cm),
    )
    .await;
    assert_eq!(status, 404);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["message"], "namespaces \"nope\" not found");

    let (status, _) = send(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/c?fieldManager=gantry",
        Some("application/apply-patch+yaml"),
        Some(cm),
    )
    .await;
    assert_eq!(status, 201);
    let stale = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, resourceVersion: \"1\"}\ndata: {a: b}\n";
    let (status, body) = send(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/c?fieldManager=gantry",
        Some("application/apply-patch+yaml"),
        Some(stale),
    )
    .await;
    assert_eq!(status, 409);
    assert!(body.contains("the object has been modified"));

    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pp = PatchParams::apply("gantry");
    let mut d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "main", "image": "web:v1"}]}}}
    });
    deploys.patch("web", &pp, &Patch::Apply(&d)).await.unwrap();
    d["spec"]["selector"]["matchLabels"]["app"] = json!("web2");
    d["spec"]["template"]["metadata"]["labels"]["app"] = json!("web2");
    let err = deploys
        .patch("web", &pp, &Patch::Apply(&d))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected an API error")
    };
    assert_eq!(status.code, 422);
    assert_eq!(status.reason, "Invalid");
    let causes = status.details.unwrap().causes;
    assert_eq!(causes.len(), 1);
    assert_eq!(causes[0].field, "spec.selector");
    assert!(causes[0].message.ends_with("field is immutable"));

    let mut bad = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "other"},
        "spec": {"selector": {"matchLabels": {"app": "o"}},
            "template": {"metadata": {"labels": {"app": "o"}}, "spec": {"containers": [{"image": "x:1"}]}}}
    });
    let err = deploys
        .patch("other", &pp, &Patch::Apply(&bad))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!()
    };
    assert_eq!(
        status.details.unwrap().causes[0].field,
        "spec.template.spec.containers[0].name"
    );
    bad["spec"]["template"]["spec"]["containers"][0]["name"] = json!("main");
    bad["spec"]["template"]["spec"]["containers"][0]["image"] = json!("");
    let err = deploys
        .patch("other", &pp, &Patch::Apply(&bad))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!()
    };
    let cause = &status.details.unwrap().causes[0];
    assert_eq!(
        (cause.reason.as_str(), cause.field.as_str()),
        (
            "FieldValueRequired",
            "spec.template.spec.containers[0].image"
        )
    );
}

#[tokio::test]
async fn lease_create_and_update_use_optimistic_concurrency() {
    let api = FakeApiServer::start().await;
    let leases: Api<Lease> = Api::namespaced(api.client(), "default");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "gantry-lock"},
        "spec": {"holderIdentity": "run-1", "leaseDurationSeconds": 60}
    }))
    .unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let err = leases
        .create(&PostParams::default(), &lease)
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!()
    };
    assert_eq!(
        (status.code, status.reason.as_str()),
        (409, "AlreadyExists")
    );
    assert_eq!(
        status.message,
        "leases.coordination.k8s.io \"gantry-lock\" already exists"
    );

    let mut mine = created.clone();
    mine.spec.as_mut().unwrap().holder_identity = Some("run-2".into());
    let updated = leases
        .replace("gantry-lock", &PostParams::default(), &mine)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );
    // A second writer holding the old resourceVersion loses.
    let err = leases
        .replace("gantry-lock", &PostParams::default(), &mine)
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!()
    };
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert!(status.message.contains("the object has been modified"));

    // Merge patch on the object with a stale resourceVersion is refused too.
    let stale = json!({"metadata": {"resourceVersion": created.metadata.resource_version}, "spec": {"holderIdentity": "x"}});
    let err = leases
        .patch(
            "gantry-lock",
            &PatchParams::default(),
            &Patch::Merge(&stale),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409));
    // Delete with a stale precondition is refused; with the right one it succeeds.
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: created.metadata.resource_version.clone(),
            uid: None,
        }),
        ..Default::default()
    };
    assert!(leases.delete("gantry-lock", &dp).await.is_err());
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: updated.metadata.resource_version.clone(),
            uid: None,
        }),
        ..Default::default()
    };
    leases.delete("gantry-lock", &dp).await.unwrap();
    assert!(api
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            Some("default"),
            "gantry-lock"
        )
        .is_none());
}

#[tokio::test]
async fn access_review_and_forbidden_follow_the_deny_table() {
    let api = FakeApiServer::start().await;
    api.deny("patch", "apps", "deployments", Some("prod"));
    let client = api.client();
    ensure_namespace(&client, "prod").await;
    let review = |ns: &str| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"namespace": ns, "verb": "patch", "group": "apps", "resource": "deployments"}}})
        .to_string()
    };
    let (status, body) = send(
        &client,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        Some("application/json"),
        Some(&review("prod")),
    )
    .await;
    assert_eq!(status, 201);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"]["allowed"], false);
    assert_eq!(body["spec"]["resourceAttributes"]["namespace"], "prod");
    let (_, body) = send(
        &client,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        Some("application/json"),
        Some(&review("staging")),
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["status"]["allowed"],
        true
    );

    let deploys: Api<DynamicObject> = Api::namespaced_with(
        client,
        "prod",
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "apps",
            "v1",
            "Deployment",
        )),
    );
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {}});
    let err = deploys
        .patch("web", &PatchParams::apply("gantry"), &Patch::Apply(&d))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!()
    };
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        status.message,
        "deployments.apps \"web\" is forbidden: User \"system:serviceaccount:ci:gantry\" cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"prod\""
    );
}

#[tokio::test]
async fn watcher_relists_after_compaction_and_expiry() {
    let api = FakeApiServer::start().await;
    let client = api.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mk = |n: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": n, "labels": {"app": "w"}}})).unwrap()
    };
    cms.create(&PostParams::default(), &mk("one"))
        .await
        .unwrap();
    let cfg = watcher::Config::default().labels("app=w");
    let mut stream = watcher(cms.clone(), cfg).boxed();
    let mut seen = Vec::new();
    let mut inits = 0;
    let mut created_two = false;
    let mut errors = Vec::new();
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            };
            match ev {
                watcher::Event::Init => inits += 1,
                watcher::Event::InitApply(o) | watcher::Event::Apply(o) => {
                    seen.push(o.metadata.name.unwrap())
                }
                watcher::Event::InitDone if !created_two => {
                    created_two = true;
                    // The watch ends, "two" is written while none is open, and history is
                    // compacted past it: resuming from the old resourceVersion gets 410, so only
                    // a re-list can see "two".
                    api.expire_watches();
                    cms.create(&PostParams::default(), &mk("two"))
                        .await
                        .unwrap();
                    api.compact();
                }
                _ => {}
            }
            if seen.contains(&"two".to_string()) {
                break;
            }
        }
    })
    .await;
    assert!(result.is_ok(), "watcher did not recover; saw {seen:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("too old resource version")),
        "the resumed watch got 410: {errors:?}"
    );
    assert!(inits >= 2, "the watcher re-listed after the 410");
    let lists = api
        .requests()
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.path == "/api/v1/namespaces/default/configmaps"
                && r.param("watch").is_none()
        })
        .count();
    assert!(lists >= 2, "expected a re-list, got {lists} lists");
}

#[tokio::test]
async fn watch_streams_changes_with_selectors() {
    let api = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client(), "default");
    let list = cms.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let mut events = cms
        .watch(
            &kube::api::WatchParams::default().fields("metadata.name=target"),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    let mk = |n: &str, v: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": n}, "data": {"v": v}})).unwrap()
    };
    cms.create(&PostParams::default(), &mk("other", "1"))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &mk("target", "1"))
        .await
        .unwrap();
    cms.replace("target", &PostParams::default(), &{
        let mut c = cms.get("target").await.unwrap();
        c.data.as_mut().unwrap().insert("v".into(), "2".into());
        c
    })
    .await
    .unwrap();
    cms.delete("target", &DeleteParams::default())
        .await
        .unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match ev {
            kube::api::WatchEvent::Added(o) => kinds.push(("ADDED", o.metadata.name.unwrap())),
            kube::api::WatchEvent::Modified(o) => {
                kinds.push(("MODIFIED", o.metadata.name.unwrap()))
            }
            kube::api::WatchEvent::Deleted(o) => kinds.push(("DELETED", o.metadata.name.unwrap())),
            _ => {}
        }
    }
    let t = "target".to_string();
    assert_eq!(
        kinds,
        [
            ("ADDED", t.clone()),
            ("MODIFIED", t.clone()),
            ("DELETED", t)
        ]
    );
}

#[tokio::test]
async fn labels_namespaces_and_cascading_deletes() {
    let api = FakeApiServer::start().await;
    let client = api.client();
    ensure_namespace(&client, "team").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    for (n, tier) in [("a", "web"), ("b", "db"), ("c", "cache")] {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": n, "labels": {"tier": tier}}}))
                .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let names = |l: kube::api::ObjectList<ConfigMap>| {
        l.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier=web"))
                .await
                .unwrap()
        ),
        ["a"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier!=web"))
                .await
                .unwrap()
        ),
        ["b", "c"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier in (db,cache)"))
                .await
                .unwrap()
        ),
        ["b", "c"]
    );
    let nss: Api<Namespace> = Api::all(client);
    nss.delete("team", &DeleteParams::default()).await.unwrap();
    assert!(api
        .list("v1", "ConfigMap")
        .iter()
        .all(|c| c["metadata"]["namespace"] != "team"));
}

#[tokio::test]
async fn faults_are_injected_and_requests_recorded() {
    let api = FakeApiServer::start().await;
    let client = api.client();
    api.fail_next(
        RequestMatcher::any()
            .method("GET")
            .path_contains("/configmaps/x"),
        1,
        Fault::Status(429),
    );
    api.fail_next(
        RequestMatcher::any()
            .method("GET")
            .path_contains("/configmaps/y"),
        1,
        Fault::Reset,
    );
    let (status, body) = send(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps/x",
        None,
        None,
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["reason"],
        "TooManyRequests"
    );
    let (status, _) = send(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps/x",
        None,
        None,
    )
    .await;
    assert_eq!(status, 404, "the fault applies once");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    assert!(matches!(
        cms.get("y").await,
        Err(kube::Error::HyperError(_)) | Err(kube::Error::Service(_))
    ));

    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "z"}, "data": {"a": "b"}});
    cms.patch(
        "z",
        &PatchParams::apply("gantry").force(),
        &Patch::Apply(&cm),
    )
    .await
    .unwrap();
    let apply = api
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(apply.path, "/api/v1/namespaces/default/configmaps/z");
    assert_eq!(
        apply.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(apply.param("fieldManager").as_deref(), Some("gantry"));
    assert_eq!(apply.param("force").as_deref(), Some("true"));
    assert_eq!(
        serde_json::from_str::<Value>(&apply.body).unwrap()["data"]["a"],
        "b"
    );
}

// ---- simulated controllers ----

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use support::fake_apiserver::Behavior;

fn deployment(name: &str, image: &str, replicas: i32, deadline: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "progressDeadlineSeconds": deadline,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image,
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}}]}}}
    })
}

fn condition(v: &Value, t: &str) -> Option<Value> {
    v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
        .cloned()
}

#[tokio::test]
async fn healthy_deployment_rolls_out_and_rolls_back_like_the_controller() {
    let api = FakeApiServer::start().await;
    api.set_image_behavior(":v2", Behavior::ImagePullError);
    let deploys: Api<Deployment> = Api::namespaced(api.client(), "default");
    let pp = PatchParams::apply("gantry");
    deploys
        .patch(
            "web",
            &pp,
            &Patch::Apply(deployment("web", "shop/web:v1", 2, 600)),
        )
        .await
        .unwrap();

    let done = |api: &FakeApiServer| {
        let d = api.get("apps/v1", "Deployment", Some("default"), "web")?;
        let p = condition(&d, "Progressing")?;
        (p["reason"] == "NewReplicaSetAvailable").then_some(d)
    };
    let d = api
        .wait_for(Duration::from_secs(5), done)
        .await
        .expect("v1 completes");
    let s = &d["status"];
    assert_eq!(
        (
            s["replicas"].clone(),
            s["updatedReplicas"].clone(),
            s["readyReplicas"].clone(),
            s["availableReplicas"].clone()
        ),
        (json!(2), json!(2), json!(2), json!(2))
    );
    assert_eq!(s["observedGeneration"], d["metadata"]["generation"]);
    assert_eq!(
        condition(&d, "Available").unwrap()["reason"],
        "MinimumReplicasAvailable"
    );
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );

    // The ReplicaSet and pods are shaped like the recorded ones.
    let rs = api.list("apps/v1", "ReplicaSet");
    assert_eq!(rs.len(), 1);
    let hash = rs[0]["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(rs[0]["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(
        rs[0]["metadata"]["ownerReferences"][0]["kind"],
        "Deployment"
    );
    assert_eq!(
        rs[0]["metadata"]["ownerReferences"][0]["uid"],
        d["metadata"]["uid"]
    );
    assert_eq!(
        rs[0]["spec"]["selector"]["matchLabels"]["pod-template-hash"],
        hash.as_str()
    );
    let pods: Api<Pod> = Api::namespaced(api.client(), "default");
    let listed = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 2);
    for p in &listed.items {
        assert!(p
            .metadata
            .name
            .as_ref()
            .unwrap()
            .starts_with(&format!("web-{hash}-")));
        let st = p.status.as_ref().unwrap();
        assert_eq!(st.phase.as_deref(), Some("Running"));
        assert!(st.container_statuses.as_ref().unwrap()[0].ready);
    }
    let events: Api<Event> = Api::namespaced(api.client(), "default");
    let ev = events
        .list(&ListParams::default().fields("involvedObject.kind=Deployment"))
        .await
        .unwrap();
    assert!(ev
        .items
        .iter()
        .any(|e| e.reason.as_deref() == Some("ScalingReplicaSet")
            && e.message.as_deref() == Some(&format!("Scaled up replica set web-{hash} to 2"))));

    // v2 cannot pull: a surge pod in ErrImagePull/ImagePullBackOff, old pods kept, then the deadline.
    deploys
        .patch(
            "web",
            &pp,
            &Patch::Apply(deployment("web", "shop/web:v2", 2, 600)),
        )
        .await
        .unwrap();
    let states = std::sync::Mutex::new(std::collections::BTreeSet::new());
    api.wait_for(Duration::from_secs(5), |api| {
        for p in api.list("v1", "Pod") {
            if let Some(r) =
                p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].as_str()
            {
                states.lock().unwrap().insert(r.to_string());
            }
        }
        let s = states.lock().unwrap();
        (s.contains("ErrImagePull") && s.contains("ImagePullBackOff")).then_some(())
    })
    .await;
    let states = states.into_inner().unwrap();
    assert!(
        states.contains("ErrImagePull") && states.contains("ImagePullBackOff"),
        "{states:?}"
    );
    let d = api
        .get("apps/v1", "Deployment", Some("default"), "web")
        .unwrap();
    assert_eq!(
        d["status"]["updatedReplicas"], 1,
        "maxSurge 25% of 2 rounds up to 1"
    );
    assert_eq!(
        d["status"]["availableReplicas"], 2,
        "maxUnavailable 25% of 2 rounds down to 0"
    );
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );

    // Re-applying v1 reuses the first ReplicaSet (revision 3) and heals.
    deploys
        .patch(
            "web",
            &pp,
            &Patch::Apply(deployment("web", "shop/web:v1", 2, 600)),
        )
        .await
        .unwrap();
    let d = api
        .wait_for(Duration::from_secs(5), |api| {
            let d = done(api)?;
            (d["status"]["updatedReplicas"] == 2 && d["status"]["replicas"] == 2).then_some(d)
        })
        .await
        .expect("rollback completes");
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    let first = api
        .get(
            "apps/v1",
            "ReplicaSet",
            Some("default"),
            &format!("web-{hash}"),
        )
        .unwrap();
    assert_eq!(
        first["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
}

#[tokio::test]
async fn broken_rollout_hits_the_progress_deadline_with_image_pull_events() {
    let api = FakeApiServer::start().await;
    api.set_time_factor(0.01); // 20 s deadline -> 200 ms
    api.set_behavior("Deployment", "default", "api", Behavior::ImagePullError);
    let deploys: Api<Deployment> = Api::namespaced(api.client(), "default");
    deploys
        .patch(
            "api",
            &PatchParams::apply("gantry"),
            &Patch::Apply(deployment("api", "shop/api:v404", 2, 20)),
        )
        .await
        .unwrap();
    let d = api
        .wait_for(Duration::from_secs(5), |api| {
            let d = api.get("apps/v1", "Deployment", Some("default"), "api")?;
            (condition(&d, "Progressing")?["reason"] == "ProgressDeadlineExceeded").then_some(d)
        })
        .await
        .expect("deadline exceeded");
    let p = condition(&d, "Progressing").unwrap();
    assert_eq!(p["status"], "False");
    assert!(p["message"]
        .as_str()
        .unwrap()
        .ends_with("has timed out progressing."));
    assert_eq!(condition(&d, "Available").unwrap()["status"], "False");
    let events = api.list("v1", "Event");
    let failed: Vec<&Value> = events.iter().filter(|e| e["reason"] == "Failed").collect();
    assert!(failed.iter().any(|e| e["message"] == "Error: ErrImagePull"));
    let pull = failed
        .iter()
        .find(|e| {
            e["message"]
                .as_str()
                .unwrap()
                .starts_with("Failed to pull image")
        })
        .unwrap();
    assert_eq!(pull["involvedObject"]["fieldPath"], "spec.containers{main}");
    assert_eq!(pull["source"]["component"], "kubelet");
    assert_eq!(pull["type"], "Warning");
}

#[tokio::test]
async fn failing_job_ends_with_backoff_limit_exceeded() {
    let api = FakeApiServer::start().await;
    api.set_time_factor(0.001);
    api.set_image_behavior("migrate:bad", Behavior::JobFails);
    let jobs: Api<Job> = Api::namespaced(api.client(), "default");
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
        "spec": {"backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "shop/migrate:bad"}]}}}
    });
    let created = jobs
        .patch(
            "migrate",
            &PatchParams::apply("gantry"),
            &Patch::Apply(&job),
        )
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    assert_eq!(
        created
            .spec
            .as_ref()
            .unwrap()
            .selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["batch.kubernetes.io/controller-uid"],
        uid
    );
    let j = api
        .wait_for(Duration::from_secs(5), |api| {
            let j = api.get("batch/v1", "Job", Some("default"), "migrate")?;
            condition(&j, "Failed").map(|_| j)
        })
        .await
        .expect("job fails");
    let failed = condition(&j, "Failed").unwrap();
    assert_eq!(
        (failed["reason"].as_str(), failed["status"].as_str()),
        (Some("BackoffLimitExceeded"), Some("True"))
    );
    assert_eq!(j["status"]["failed"], 2);
    let pods = api.list("v1", "Pod");
    assert_eq!(pods.len(), 2);
    for p in &pods {
        assert_eq!(p["metadata"]["labels"]["job-name"], "migrate");
        assert_eq!(p["metadata"]["labels"]["controller-uid"], uid.as_str());
        assert_eq!(p["status"]["phase"], "Failed");
        assert_eq!(
            p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            1
        );
    }
    // Re-applying the same Job is a no-op; changing its template is refused (immutable).
    jobs.patch(
        "migrate",
        &PatchParams::apply("gantry"),
        &Patch::Apply(&job),
    )
    .await
    .unwrap();
    let mut changed = job.clone();
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("shop/migrate:good");
    let err = jobs
        .patch(
            "migrate",
            &PatchParams::apply("gantry"),
            &Patch::Apply(&changed),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else { panic!() };
    assert_eq!(
        (s.code, s.details.unwrap().causes[0].field.as_str()),
        (422, "spec.template")
    );
}

#[tokio::test]
async fn crash_looping_pods_restart_and_serve_logs() {
    let api = FakeApiServer::start().await;
    api.set_time_factor(0.001);
    api.set_default_behavior(Behavior::CrashLoop);
    let deploys: Api<Deployment> = Api::namespaced(api.client(), "default");
    deploys
        .patch(
            "api",
            &PatchParams::apply("gantry"),
            &Patch::Apply(deployment("api", "shop/api:v2", 1, 600)),
        )
        .await
        .unwrap();
    let pod = api
        .wait_for(Duration::from_secs(5), |api| {
            api.list("v1", "Pod").into_iter().find(|p| {
                let cs = &p["status"]["containerStatuses"][0];
                cs["restartCount"].as_i64().unwrap_or(0) >= 2
                    && cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            })
        })
        .await
        .expect("crash loop");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
        1
    );
    let pods: Api<Pod> = Api::namespaced(api.client(), "default");
    let name = pod["metadata"]["name"].as_str().unwrap();
    let lp = kube::api::LogParams {
        previous: true,
        tail_lines: Some(1),
        ..Default::default()
    };
    let last = pods.logs(name, &lp).await.unwrap();
    assert!(last.starts_with("Error:"), "{last}");
    api.set_logs("default", name, "main", false, "one\ntwo\nthree\n");
    let lp = kube::api::LogParams {
        container: Some("main".into()),
        tail_lines: Some(2),
        ..Default::default()
    };
    assert_eq!(pods.logs(name, &lp).await.unwrap(), "two\nthree\n");
}

#[tokio::test]
async fn statefulset_and_daemonset_roll_with_controller_revisions() {
    let api = FakeApiServer::start().await;
    let pp = PatchParams::apply("gantry");
    let sts: Api<DynamicObject> = Api::namespaced_with(
        api.client(),
        "default",
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "apps",
            "v1",
            "StatefulSet",
        )),
    );
    let ds: Api<DynamicObject> = Api::namespaced_with(
        api.client(),
        "default",
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "apps",
            "v1",
            "DaemonSet",
        )),
    );
    let workload = |kind: &str, name: &str, image: &str| {
        let mut v = json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "main", "image": image}]}}}});
        if kind == "StatefulSet" {
            v["spec"]["replicas"] = json!(2);
            v["spec"]["serviceName"] = json!(name);
        }
        v
    };
    for image in ["shop/db:v1", "shop/db:v2"] {
        sts.patch(
            "db",
            &pp,
            &Patch::Apply(workload("StatefulSet", "db", image)),
        )
        .await
        .unwrap();
        ds.patch(
            "agent",
            &pp,
            &Patch::Apply(workload("DaemonSet", "agent", image)),
        )
        .await
        .unwrap();
        let s = api
            .wait_for(Duration::from_secs(5), |api| {
                let s = api.get("apps/v1", "StatefulSet", Some("default"), "db")?;
                let st = &s["status"];
                (st["observedGeneration"] == s["metadata"]["generation"]
                    && st["updatedReplicas"] == 2
                    && st["readyReplicas"] == 2
                    && st["currentRevision"] == st["updateRevision"])
                    .then_some(s)
            })
            .await
            .unwrap_or_else(|| panic!("statefulset {image}"));
        let rev = s["status"]["updateRevision"].as_str().unwrap().to_string();
        let cr = api
            .get("apps/v1", "ControllerRevision", Some("default"), &rev)
            .expect("revision");
        assert_eq!(cr["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
        let pod = api.get("v1", "Pod", Some("default"), "db-1").unwrap();
        assert_eq!(
            pod["metadata"]["labels"]["controller-revision-hash"],
            rev.as_str()
        );
        assert_eq!(pod["spec"]["containers"][0]["image"], image);
        let d = api
            .wait_for(Duration::from_secs(5), |api| {
                let d = api.get("apps/v1", "DaemonSet", Some("default"), "agent")?;
                let st = &d["status"];
                (st["observedGeneration"] == d["metadata"]["generation"]
                    && st["updatedNumberScheduled"] == 1
                    && st["numberReady"] == 1)
                    .then_some(d)
            })
            .await
            .unwrap_or_else(|| panic!("daemonset {image}"));
        assert_eq!(d["status"]["desiredNumberScheduled"], 1);
    }
    assert_eq!(api.list("apps/v1", "ControllerRevision").len(), 4);
}

#[tokio::test]
async fn applied_crd_is_served_and_established() {
    let api = FakeApiServer::start().await;
    let crds: Api<DynamicObject> = Api::all_with(
        api.client(),
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        )),
    );
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    });
    crds.patch(
        "widgets.example.com",
        &PatchParams::apply("gantry"),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    api.wait_for(Duration::from_secs(5), |api| {
        let c = api.get(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            "widgets.example.com",
        )?;
        (condition(&c, "Established")?["status"] == "True").then_some(())
    })
    .await
    .expect("established");
    let (status, _) = send(
        &api.client(),
        "GET",
        "/apis/example.com/v1/namespaces/default/widgets",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let widgets: Api<DynamicObject> = Api::namespaced_with(
        api.client(),
        "default",
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "example.com",
            "v1",
            "Widget",
        )),
    );
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3}});
    let created = widgets
        .patch("w", &PatchParams::apply("gantry"), &Patch::Apply(&w))
        .await
        .unwrap();
    assert_eq!(created.data["spec"]["size"], 3);
}
