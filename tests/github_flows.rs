//! The GitHub adapter against a mock API (wiremock): one comment per environment found by marker across pages, deployments and statuses, the audit commit sequence with branch creation and a 422 retry.

use gantry::adapters::github::GitHub;
use serde_json::json;
use wiremock::matchers::{
    body_json, body_partial_json, header, method, path, query_param, query_param_is_missing,
};
use wiremock::{Mock, MockServer, ResponseTemplate};

const REPO: &str = "/repos/octo-org/shop";
const MARKER: &str = "<!-- gantry:plan:dev -->";

fn client(server: &MockServer) -> GitHub {
    GitHub::new(&server.uri(), "ghs_token", "octo-org/shop").unwrap()
}

fn comment(id: u64, body: &str) -> serde_json::Value {
    json!({
        "id": id,
        "body": body,
        "html_url": format!("https://github.com/octo-org/shop/pull/17#issuecomment-{id}"),
        "user": {"login": "github-actions[bot]"}
    })
}

/// Page 1 (with a `Link: rel="next"`) and page 2 of the pull request's comments.
async fn mount_comment_pages(server: &MockServer, page2: Vec<serde_json::Value>) {
    let next = format!(
        "<{}{REPO}/issues/17/comments?per_page=100&page=2>; rel=\"next\", <{}{REPO}/issues/17/comments?per_page=100&page=2>; rel=\"last\"",
        server.uri(),
        server.uri()
    );
    let page1: Vec<serde_json::Value> = (1..=100)
        .map(|i| comment(i, &format!("a human comment {i}")))
        .collect();
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/issues/17/comments")))
        .and(query_param("per_page", "100"))
        .and(query_param_is_missing("page"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", next.as_str())
                .set_body_json(page1),
        )
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/issues/17/comments")))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page2))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn the_comment_is_created_once_then_found_on_page_two_and_updated_in_place() {
    // First run: no gantry comment anywhere, so one POST.
    let server = MockServer::start().await;
    mount_comment_pages(
        &server,
        vec![comment(101, "another bot, another marker <!-- other -->")],
    )
    .await;
    let first_body = format!("{MARKER}\nplan one");
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/issues/17/comments")))
        .and(body_json(json!({ "body": first_body })))
        .respond_with(ResponseTemplate::new(201).set_body_json(comment(555, &first_body)))
        .expect(1)
        .mount(&server)
        .await;
    let written = client(&server)
        .upsert_comment(17, MARKER, &first_body)
        .await
        .unwrap();
    assert_eq!(written.id, 555);
    assert!(written.created);
    server.verify().await;

    // Second run: the comment is on page 2 now; it is PATCHed, never POSTed again.
    let server = MockServer::start().await;
    mount_comment_pages(&server, vec![comment(555, &first_body)]).await;
    let second_body = format!("{MARKER}\nplan two");
    Mock::given(method("PATCH"))
        .and(path(format!("{REPO}/issues/comments/555")))
        .and(body_json(json!({ "body": second_body })))
        .respond_with(ResponseTemplate::new(200).set_body_json(comment(555, &second_body)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let written = client(&server)
        .upsert_comment(17, MARKER, &second_body)
        .await
        .unwrap();
    assert_eq!(written.id, 555);
    assert!(!written.created);
}

#[tokio::test]
async fn deployments_and_statuses_are_posted_as_rendered() {
    let server = MockServer::start().await;
    let request = gantry::report::records::deployment_request(
        "prod",
        "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
        gantry::pipeline::Command::Deploy,
        None,
    );
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/deployments")))
        .and(header("authorization", "Bearer ghs_token"))
        .and(body_json(json!({
            "ref": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
            "task": "deploy",
            "environment": "prod",
            "auto_merge": false,
            "required_contexts": [],
            "transient_environment": false,
            "production_environment": true,
            "description": "gantry deploy to prod",
            "payload": {"gantry": {"command": "deploy"}}
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 9001})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/deployments/9001/statuses")))
        .and(body_json(json!({
            "state": "failure",
            "description": "release 42 failed (rollout-failed); rolled back to release 41",
            "log_url": "https://github.com/octo-org/shop/actions/runs/42",
            "environment_url": "https://shop.example.com"
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
        .expect(1)
        .mount(&server)
        .await;
    let github = client(&server);
    let id = github.create_deployment(&request).await.unwrap();
    assert_eq!(id, 9001);
    github
        .deployment_status(
            id,
            &gantry::report::records::deployment_status(
                "failure",
                "release 42 failed (rollout-failed); rolled back to release 41",
                Some("https://github.com/octo-org/shop/actions/runs/42"),
                Some("https://shop.example.com"),
            ),
        )
        .await
        .unwrap();
}

async fn mount_commit_steps(server: &MockServer, parent: &str, tree: &str, commit: &str) {
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/git/commits/{parent}")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"sha": parent, "tree": {"sha": tree}})),
        )
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/git/trees")))
        .and(body_json(json!({
            "base_tree": tree,
            "tree": [
                {"path": "prod/release.json", "mode": "100644", "type": "blob", "sha": "blob-release"},
                {"path": "prod/manifests.yaml", "mode": "100644", "type": "blob", "sha": "blob-manifests"}
            ]
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sha": format!("{tree}-new")})))
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/git/commits")))
        .and(body_json(json!({
            "message": "prod: deploy release 42 deployed",
            "tree": format!("{tree}-new"),
            "parents": [parent]
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sha": commit})))
        .expect(1)
        .mount(server)
        .await;
}

async fn mount_blobs(server: &MockServer, times: u64) {
    for (content, sha) in [
        ("{\"release\": 42}\n", "blob-release"),
        ("kind: Deployment\n", "blob-manifests"),
    ] {
        Mock::given(method("POST"))
            .and(path(format!("{REPO}/git/blobs")))
            .and(body_json(json!({"content": content, "encoding": "utf-8"})))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sha": sha})))
            .expect(times)
            .mount(server)
            .await;
    }
}

fn files() -> Vec<(String, String)> {
    vec![
        ("prod/release.json".into(), "{\"release\": 42}\n".into()),
        ("prod/manifests.yaml".into(), "kind: Deployment\n".into()),
    ]
}

#[tokio::test]
async fn the_audit_branch_is_created_from_the_default_branch_and_moved_without_force() {
    let server = MockServer::start().await;
    let branch = "gantry/audit/prod";
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/git/ref/heads/{branch}")))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(REPO))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"default_branch": "trunk"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/git/ref/heads/trunk")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": {"sha": "trunk-head"}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/git/refs")))
        .and(body_json(
            json!({"ref": "refs/heads/gantry/audit/prod", "sha": "trunk-head"}),
        ))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"ref": "refs/heads/gantry/audit/prod"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    mount_blobs(&server, 1).await;
    mount_commit_steps(&server, "trunk-head", "tree-a", "audit-1").await;
    Mock::given(method("PATCH"))
        .and(path(format!("{REPO}/git/refs/heads/{branch}")))
        .and(body_json(json!({"sha": "audit-1", "force": false})))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": {"sha": "audit-1"}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let sha = client(&server)
        .commit_files(branch, &files(), "prod: deploy release 42 deployed")
        .await
        .unwrap();
    assert_eq!(sha, "audit-1");
}

#[tokio::test]
async fn a_branch_that_moved_meanwhile_is_retried_once_from_its_new_head() {
    let server = MockServer::start().await;
    let branch = "gantry/audit/prod";
    // The first read finds head-1; after the 422 the branch is at head-2.
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/git/ref/heads/{branch}")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": {"sha": "head-1"}})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/git/ref/heads/{branch}")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": {"sha": "head-2"}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    mount_blobs(&server, 2).await;
    mount_commit_steps(&server, "head-1", "tree-1", "audit-on-1").await;
    mount_commit_steps(&server, "head-2", "tree-2", "audit-on-2").await;
    Mock::given(method("PATCH"))
        .and(path(format!("{REPO}/git/refs/heads/{branch}")))
        .and(body_partial_json(
            json!({"sha": "audit-on-1", "force": false}),
        ))
        .respond_with(
            ResponseTemplate::new(422)
                .set_body_json(json!({"message": "Update is not a fast forward"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("{REPO}/git/refs/heads/{branch}")))
        .and(body_json(json!({"sha": "audit-on-2", "force": false})))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": {"sha": "audit-on-2"}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let sha = client(&server)
        .commit_files(branch, &files(), "prod: deploy release 42 deployed")
        .await
        .unwrap();
    assert_eq!(sha, "audit-on-2");
}

#[tokio::test]
async fn a_403_is_a_permission_error_carrying_githubs_message() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/deployments")))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "message": "Resource not accessible by integration",
            "documentation_url": "https://docs.github.com/rest"
        })))
        .mount(&server)
        .await;
    let err = client(&server)
        .create_deployment(&json!({"ref": "x"}))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert!(err.is_permission());
    assert!(
        err.to_string()
            .contains("Resource not accessible by integration"),
        "{err}"
    );
}
