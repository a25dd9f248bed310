//! The registry adapter against a token-authenticating registry (Docker Hub's and GHCR's Bearer
//! flow, which the test bed's registries do not use): a local HTTP server checks every request.
//!
//! What is checked: the 401 challenge is answered with a token for exactly the scope asked
//! (`pull` for reads, `pull,push` for the tag write), the credentials go to the token service
//! only, the manifest is put under the new tag byte for byte with its own media type, nothing is
//! written when the tag already points at the digest, and a refused write says why.

use gantry::adapters::registry::{Error, Registry, Tagged};
use gantry::image::auth::Credentials;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const REPO: &str = "team/api";
const DIGEST: &str = "sha256:4f1c5b7b2f0c8a9d3e6b1a0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e";
const OTHER: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
const MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aa","size":2},"layers":[]}"#;

fn credentials() -> Credentials {
    Credentials {
        username: "robot".into(),
        password: "s3cret-token-pass".into(),
    }
}

/// A registry on `server` that wants a Bearer token for `repository:team/api:<actions>`.
async fn token_registry(server: &MockServer) {
    let realm = format!("{}/token", server.uri());
    for (actions, token) in [("pull", "pull-token"), ("pull,push", "push-token")] {
        // The token service checks the credentials (Basic) and hands out a scope's token.
        Mock::given(method("GET"))
            .and(path("/token"))
            .and(query_param("scope", format!("repository:{REPO}:{actions}")))
            .and(query_param("service", "registry.test"))
            .and(header(
                "authorization",
                "Basic cm9ib3Q6czNjcmV0LXRva2VuLXBhc3M=",
            ))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(serde_json::json!({ "token": token })),
            )
            .mount(server)
            .await;
    }
    let challenge = move |actions: &str| {
        ResponseTemplate::new(401).insert_header(
            "www-authenticate",
            format!(
                r#"Bearer realm="{realm}",service="registry.test",scope="repository:{REPO}:{actions}""#
            )
            .as_str(),
        )
    };
    // Without a token (or with the wrong one) every call is challenged for its scope.
    for verb in ["HEAD", "GET"] {
        Mock::given(method(verb))
            .respond_with(challenge("pull"))
            .with_priority(10)
            .mount(server)
            .await;
    }
    Mock::given(method("PUT"))
        .respond_with(challenge("pull,push"))
        .with_priority(10)
        .mount(server)
        .await;
}

fn manifest_headers(template: ResponseTemplate, digest: &str) -> ResponseTemplate {
    template
        .insert_header("docker-content-digest", digest)
        .insert_header("content-type", MEDIA_TYPE)
}

#[tokio::test]
async fn a_tag_is_written_with_a_push_token_and_the_manifest_as_served() {
    let server = MockServer::start().await;
    token_registry(&server).await;
    let pull = "Bearer pull-token";
    // The new tag does not exist yet; the digest does.
    Mock::given(method("HEAD"))
        .and(path(format!("/v2/{REPO}/manifests/stable")))
        .and(header("authorization", pull))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v2/{REPO}/manifests/{DIGEST}")))
        .and(header("authorization", pull))
        .respond_with(manifest_headers(
            ResponseTemplate::new(200).set_body_raw(MANIFEST, MEDIA_TYPE),
            DIGEST,
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path(format!("/v2/{REPO}/manifests/stable")))
        .and(header("authorization", "Bearer push-token"))
        .and(header("content-type", MEDIA_TYPE))
        .respond_with(ResponseTemplate::new(201).insert_header("docker-content-digest", DIGEST))
        .expect(1)
        .mount(&server)
        .await;

    let host = server.address().to_string();
    let registry = Registry::new(None).unwrap();
    let tagged = registry
        .tag_manifest(&host, REPO, DIGEST, "stable", Some(&credentials()))
        .await
        .unwrap();
    assert_eq!(tagged, Tagged::Created);

    // The manifest went up byte for byte; the password only ever went to the token service.
    let requests: Vec<Request> = server.received_requests().await.unwrap();
    let put = requests
        .iter()
        .find(|r| r.method.as_str() == "PUT" && r.headers.contains_key("authorization"))
        .expect("an authorised PUT");
    assert_eq!(put.body, MANIFEST.as_bytes());
    for request in &requests {
        let basic = request
            .headers
            .get("authorization")
            .is_some_and(|v| v.to_str().unwrap().starts_with("Basic "));
        assert!(
            !basic || request.url.path() == "/token",
            "credentials sent to {}",
            request.url
        );
    }
}

#[tokio::test]
async fn a_tag_that_already_points_at_the_digest_is_not_written() {
    let server = MockServer::start().await;
    token_registry(&server).await;
    Mock::given(method("HEAD"))
        .and(path(format!("/v2/{REPO}/manifests/stable")))
        .and(header("authorization", "Bearer pull-token"))
        .respond_with(manifest_headers(ResponseTemplate::new(200), DIGEST))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(header("authorization", "Bearer push-token"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;
    let registry = Registry::new(None).unwrap();
    let host = server.address().to_string();
    let tagged = registry
        .tag_manifest(&host, REPO, DIGEST, "stable", Some(&credentials()))
        .await
        .unwrap();
    assert_eq!(tagged, Tagged::Already);
    // The digest lookup alone works the same way.
    assert_eq!(
        registry
            .manifest_digest(&host, REPO, "stable", Some(&credentials()))
            .await
            .unwrap()
            .as_deref(),
        Some(DIGEST)
    );
}

/// A tag pointing elsewhere, and a write the registry refuses with `status` and `body`.
async fn refused_write(status: u16, body: &str) -> Error {
    let server = MockServer::start().await;
    token_registry(&server).await;
    Mock::given(method("HEAD"))
        .and(path(format!("/v2/{REPO}/manifests/latest")))
        .and(header("authorization", "Bearer pull-token"))
        .respond_with(manifest_headers(ResponseTemplate::new(200), OTHER))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v2/{REPO}/manifests/{DIGEST}")))
        .and(header("authorization", "Bearer pull-token"))
        .respond_with(manifest_headers(
            ResponseTemplate::new(200).set_body_raw(MANIFEST, MEDIA_TYPE),
            DIGEST,
        ))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(header("authorization", "Bearer push-token"))
        .respond_with(ResponseTemplate::new(status).set_body_raw(body, "application/json"))
        .mount(&server)
        .await;
    Registry::new(None)
        .unwrap()
        .tag_manifest(
            &server.address().to_string(),
            REPO,
            DIGEST,
            "latest",
            Some(&credentials()),
        )
        .await
        .unwrap_err()
}

#[tokio::test]
async fn a_refused_tag_write_says_why() {
    // ECR with tag immutability answers a moved tag like this.
    let err = refused_write(
        400,
        r#"{"errors":[{"code":"TAG_INVALID","message":"The image tag 'latest' already exists in the 'team/api' repository and cannot be overwritten because the repository is immutable."}]}"#,
    )
    .await
    .to_string();
    assert!(err.contains("400"), "{err}");
    assert!(
        err.contains("TAG_INVALID: The image tag 'latest' already exists"),
        "{err}"
    );

    let err = refused_write(403, r#"{"errors":[{"code":"DENIED"}]}"#).await;
    assert!(
        matches!(
            err,
            Error::Forbidden {
                permission: "push",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("lack push permission"), "{err}");
}

#[tokio::test]
async fn wrong_credentials_are_refused_by_the_token_service() {
    let server = MockServer::start().await;
    token_registry(&server).await;
    // Any other Authorization header at the token service: 401.
    Mock::given(method("GET"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(401))
        .with_priority(20)
        .mount(&server)
        .await;
    let wrong = Credentials {
        username: "robot".into(),
        password: "wrong".into(),
    };
    let err = Registry::new(None)
        .unwrap()
        .manifest_digest(&server.address().to_string(), REPO, "v1", Some(&wrong))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("registry-password"), "{err}");
}
