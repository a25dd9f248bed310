//! The credentials a GitHub-hosted job uses: its OIDC token exchanged for a role's credentials at STS (web identity), through gantry's one HTTPS client (rustls with ring), against the test bed's moto. Its own test binary: it sets the process environment the SDK's credential chain reads.

mod support;

#[tokio::test]
async fn an_oidc_token_is_exchanged_at_sts_through_gantrys_http_client() {
    let endpoint = support::moto_endpoint();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("oidc-token");
    std::fs::write(
        &token,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOmdhbnRyeSJ9.c2lnbmF0dXJl",
    )
    .unwrap();
    // No static keys: the chain must reach the web identity provider, as on a runner that ran
    // aws-actions/configure-aws-credentials with role-to-assume. Every STS call goes to moto.
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
    ] {
        std::env::remove_var(name);
    }
    for (name, value) in [
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
        (
            "AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/gantry-deploy",
        ),
        ("AWS_ROLE_SESSION_NAME", "gantry-test"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_CONFIG_FILE", "/nonexistent/gantry-test-config"),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/gantry-test-credentials",
        ),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ] {
        std::env::set_var(name, value);
    }
    let ecr = gantry::adapters::ecr::Ecr::connect(Some("us-east-1"), Some(&endpoint)).await;
    let account = ecr
        .account_id()
        .await
        .expect("the web identity credentials work at STS");
    assert_eq!(account, "123456789012");
}
