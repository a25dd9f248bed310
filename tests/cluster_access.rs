//! The cluster connection: the EKS token against botocore's, EKS lookup against moto, kubeconfig clients and the access check against a mock API server (wiremock).

mod support;

use std::path::PathBuf;
use std::sync::Once;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use base64::Engine as _;
use gantry::adapters::cluster::{
    check_access, check_access_within, connect, connect_with_tokens, ClusterConnection,
    ClusterError,
};
use gantry::adapters::eks::{
    self, presigned_token, AwsAccess, Eks, EksCluster, EksToken, TokenSource, TOKEN_PREFIX,
};
use gantry::adapters::runner::Runner;
use gantry::config::{ClusterAccess, Secret};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ACCESS_KEY: &str = "AKIDEXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// 2024-05-01T12:00:00Z
const SIGNED_AT: u64 = 1_714_564_800;

fn example_credentials(session_token: Option<&str>) -> Credentials {
    Credentials::new(
        ACCESS_KEY,
        SECRET_KEY,
        session_token.map(str::to_string),
        None,
        "test",
    )
}

fn signed_at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(SIGNED_AT)
}

/// The presigned URL inside a token.
fn decode(token: &str) -> String {
    let encoded = token.strip_prefix(TOKEN_PREFIX).expect("token prefix");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .expect("base64url without padding");
    String::from_utf8(bytes).expect("utf-8 url")
}

fn query(url: &str) -> Vec<(String, String)> {
    let (_, query) = url.split_once('?').expect("a query");
    query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("name=value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {params:?}"))
}

// Expected tokens computed independently with botocore 1.44.5 (the moto venv of the test
// bed), the way awscli/customizations/eks/get_token.py does it: an `sts` client for the
// region with the credentials above, handlers on `provide-client-params.sts.GetCallerIdentity`
// (moves `x-k8s-aws-id` from the params into the context) and `before-sign.sts.GetCallerIdentity`
// (puts it in the request headers), `botocore.auth.get_current_datetime` patched to return
// 2024-05-01 12:00:00, then
//   url = sts.generate_presigned_url("get_caller_identity",
//       Params={"x-k8s-aws-id": cluster}, ExpiresIn=60, HttpMethod="GET")
//   "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
#[test]
fn token_matches_botocore_for_the_same_credentials_time_and_cluster() {
    let token = presigned_token(
        &example_credentials(None),
        "eu-west-1",
        "gantry-demo",
        signed_at(),
    )
    .unwrap();
    assert_eq!(
        token.value,
        "k8s-aws-v1.aHR0cHM6Ly9zdHMuZXUtd2VzdC0xLmFtYXpvbmF3cy5jb20vP0FjdGlvbj1HZXRDYWxsZXJJZGVudGl0eSZWZXJzaW9uPTIwMTEtMDYtMTUmWC1BbXotQWxnb3JpdGhtPUFXUzQtSE1BQy1TSEEyNTYmWC1BbXotQ3JlZGVudGlhbD1BS0lERVhBTVBMRSUyRjIwMjQwNTAxJTJGZXUtd2VzdC0xJTJGc3RzJTJGYXdzNF9yZXF1ZXN0JlgtQW16LURhdGU9MjAyNDA1MDFUMTIwMDAwWiZYLUFtei1FeHBpcmVzPTYwJlgtQW16LVNpZ25lZEhlYWRlcnM9aG9zdCUzQngtazhzLWF3cy1pZCZYLUFtei1TaWduYXR1cmU9ZmNlZmZlMGI1NmFlYjQzZmRiODNiMDQwNWVhMDMwZjhlMGJkMGI2NjFiMDg5MmY2YTE5MGYwMGI4ODExNmEyMA"
    );
}

#[test]
fn token_with_a_session_token_matches_botocore() {
    // Same botocore procedure, region us-east-1, cluster `prod`, aws_session_token
    // "FQoGZXIvYXdzEXAMPLE/+tok==" (characters that must be percent-encoded).
    let token = presigned_token(
        &example_credentials(Some("FQoGZXIvYXdzEXAMPLE/+tok==")),
        "us-east-1",
        "prod",
        signed_at(),
    )
    .unwrap();
    assert_eq!(
        token.value,
        "k8s-aws-v1.aHR0cHM6Ly9zdHMudXMtZWFzdC0xLmFtYXpvbmF3cy5jb20vP0FjdGlvbj1HZXRDYWxsZXJJZGVudGl0eSZWZXJzaW9uPTIwMTEtMDYtMTUmWC1BbXotQWxnb3JpdGhtPUFXUzQtSE1BQy1TSEEyNTYmWC1BbXotQ3JlZGVudGlhbD1BS0lERVhBTVBMRSUyRjIwMjQwNTAxJTJGdXMtZWFzdC0xJTJGc3RzJTJGYXdzNF9yZXF1ZXN0JlgtQW16LURhdGU9MjAyNDA1MDFUMTIwMDAwWiZYLUFtei1FeHBpcmVzPTYwJlgtQW16LVNpZ25lZEhlYWRlcnM9aG9zdCUzQngtazhzLWF3cy1pZCZYLUFtei1TZWN1cml0eS1Ub2tlbj1GUW9HWlhJdllYZHpFWEFNUExFJTJGJTJCdG9rJTNEJTNEJlgtQW16LVNpZ25hdHVyZT03YmU0YTY2ZjVjZDk5MDQ0ODViNTU2NzAyZWM3MjAwMTQwYWI3MDQyNDhkOGFiMzMzNWM2ZGU2MjliZTA5MzJk"
    );
    let url = decode(&token.value);
    assert_eq!(
        param(&query(&url), "X-Amz-Security-Token"),
        "FQoGZXIvYXdzEXAMPLE%2F%2Btok%3D%3D"
    );
}

#[test]
fn token_is_a_presigned_get_caller_identity_url_for_the_cluster() {
    let token = presigned_token(
        &example_credentials(None),
        "ap-southeast-2",
        "shop",
        signed_at(),
    )
    .unwrap();
    let url = decode(&token.value);
    assert!(
        url.starts_with("https://sts.ap-southeast-2.amazonaws.com/?"),
        "{url}"
    );
    let params = query(&url);
    assert_eq!(param(&params, "Action"), "GetCallerIdentity");
    assert_eq!(param(&params, "Version"), "2011-06-15");
    assert_eq!(param(&params, "X-Amz-Algorithm"), "AWS4-HMAC-SHA256");
    assert_eq!(
        param(&params, "X-Amz-Credential"),
        "AKIDEXAMPLE%2F20240501%2Fap-southeast-2%2Fsts%2Faws4_request"
    );
    assert_eq!(param(&params, "X-Amz-Date"), "20240501T120000Z");
    assert_eq!(param(&params, "X-Amz-SignedHeaders"), "host%3Bx-k8s-aws-id");
    assert_eq!(param(&params, "X-Amz-Expires"), "60");
    assert_eq!(param(&params, "X-Amz-Signature").len(), 64);
    assert!(params.iter().all(|(k, _)| k != "X-Amz-Security-Token"));
    // The signature binds the cluster name: another cluster, another token.
    let other = presigned_token(
        &example_credentials(None),
        "ap-southeast-2",
        "shop-2",
        signed_at(),
    )
    .unwrap();
    assert_ne!(
        param(&params, "X-Amz-Signature"),
        param(&query(&decode(&other.value)), "X-Amz-Signature")
    );
}

#[test]
fn token_is_used_fourteen_minutes_and_never_printed_by_debug() {
    let token = presigned_token(
        &example_credentials(None),
        "eu-west-1",
        "gantry-demo",
        signed_at(),
    )
    .unwrap();
    assert_eq!(token.expires, signed_at() + Duration::from_secs(14 * 60));
    let debug = format!("{token:?}");
    assert!(!debug.contains(TOKEN_PREFIX), "{debug}");
    assert!(debug.contains("***"), "{debug}");
}

#[test]
fn next_refresh_keeps_the_reload_lag_before_expiry() {
    let source = TokenSource::new(example_credentials(None), "eu-west-1", "c");
    let token = EksToken {
        value: "x".into(),
        expires: signed_at() + Duration::from_secs(14 * 60),
    };
    let lag = Duration::from_secs(70);
    // A fresh token: the 10-minute interval is sooner than expiry minus the lag.
    assert_eq!(
        source.next_refresh(&token, signed_at(), lag),
        Duration::from_secs(600)
    );
    // Two minutes left: renew 70 s before expiry.
    let late = signed_at() + Duration::from_secs(12 * 60);
    assert_eq!(
        source.next_refresh(&token, late, lag),
        Duration::from_secs(50)
    );
    // Expired already: renew at once (one second).
    let after = signed_at() + Duration::from_secs(20 * 60);
    assert_eq!(
        source.next_refresh(&token, after, lag),
        Duration::from_secs(1)
    );
    let fast = source.refresh_every(Duration::from_secs(2));
    assert_eq!(
        fast.next_refresh(&token, signed_at(), lag),
        Duration::from_secs(2)
    );
}

#[test]
fn described_cluster_must_be_active_with_endpoint_and_ca() {
    let ok = EksCluster::from_described(
        "shop",
        "eu-west-1",
        Some("ACTIVE"),
        Some("https://ABC.gr7.eu-west-1.eks.amazonaws.com"),
        Some("LS0tLS1CRUdJTg=="),
    )
    .unwrap();
    assert_eq!(ok.endpoint, "https://ABC.gr7.eu-west-1.eks.amazonaws.com");
    assert_eq!(ok.certificate_authority, "LS0tLS1CRUdJTg==");

    let creating =
        EksCluster::from_described("shop", "eu-west-1", Some("CREATING"), None, None).unwrap_err();
    assert!(matches!(creating, eks::Error::NotActive { .. }));
    let message = creating.to_string();
    assert!(message.contains("`shop`"), "{message}");
    assert!(message.contains("eu-west-1"), "{message}");
    assert!(message.contains("CREATING"), "{message}");

    let no_ca = EksCluster::from_described(
        "shop",
        "eu-west-1",
        Some("ACTIVE"),
        Some("https://x"),
        Some(""),
    )
    .unwrap_err();
    assert!(
        no_ca.to_string().contains("certificate authority"),
        "{no_ca}"
    );
}

// ---- moto ----------------------------------------------------------------------------------

/// The moto endpoint of the test bed; a missing variable fails the test with how to start it.
fn moto() -> AwsAccess {
    static ENV: Once = Once::new();
    let endpoint = support::moto_endpoint();
    ENV.call_once(|| {
        for (name, value) in [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ] {
            if std::env::var_os(name).is_none() {
                std::env::set_var(name, value);
            }
        }
    });
    AwsAccess {
        region: Some("eu-west-1".to_string()),
        endpoint_url: Some(endpoint),
    }
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

async fn create_moto_cluster(aws: &AwsAccess, name: &str) {
    let shared =
        gantry::adapters::ecr::aws_loader(aws.region.as_deref(), aws.endpoint_url.as_deref())
            .load()
            .await;
    let client = aws_sdk_eks::Client::new(&shared);
    client
        .create_cluster()
        .name(name)
        .role_arn("arn:aws:iam::123456789012:role/eks-cluster")
        .resources_vpc_config(
            aws_sdk_eks::types::VpcConfigRequest::builder()
                .subnet_ids("subnet-12345678")
                .build(),
        )
        .send()
        .await
        .expect("moto creates the cluster");
}

#[tokio::test]
async fn describe_cluster_against_moto_gives_endpoint_ca_and_status() {
    let aws = moto();
    let name = unique("describe");
    create_moto_cluster(&aws, &name).await;
    let eks = Eks::connect(&aws).await;
    let cluster = eks.describe_cluster(&name).await.unwrap();
    assert_eq!(cluster.name, name);
    assert_eq!(cluster.region, "eu-west-1");
    assert_eq!(cluster.status, "ACTIVE");
    assert!(
        cluster.endpoint.starts_with("https://"),
        "{}",
        cluster.endpoint
    );
    assert!(!cluster.certificate_authority.is_empty());
    let arn = eks.caller_arn().await.unwrap();
    assert!(arn.starts_with("arn:aws:"), "{arn}");
}

#[tokio::test]
async fn a_missing_cluster_is_named_with_its_region() {
    let eks = Eks::connect(&moto()).await;
    let err = eks.describe_cluster("no-such-cluster").await.unwrap_err();
    assert!(matches!(err, eks::Error::NotFound { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("`no-such-cluster`"), "{message}");
    assert!(message.contains("eu-west-1"), "{message}");
}

#[tokio::test]
async fn connect_to_eks_describes_the_cluster_and_checks_its_ca() {
    // moto answers a random string as the CA: connect gets as far as checking it.
    let aws = moto();
    let name = unique("connect");
    create_moto_cluster(&aws, &name).await;
    let (runner, _log) = Runner::capturing(false);
    let err = connect(
        &ClusterAccess::Eks {
            cluster_name: name.clone(),
        },
        &aws,
        &runner,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ClusterError::CaCertificate { cluster } if *cluster == name),
        "{err:?}"
    );

    let (runner, _log) = Runner::capturing(false);
    let missing = connect(
        &ClusterAccess::Eks {
            cluster_name: "absent".into(),
        },
        &aws,
        &runner,
    )
    .await
    .unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("`absent` was not found in the region eu-west-1"),
        "{missing}"
    );
}

// ---- kubeconfig and the access check ------------------------------------------------------

fn fixture(name: &str, server: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kubeconfig")
        .join(name);
    std::fs::read_to_string(path)
        .unwrap()
        .replace("__SERVER__", server)
}

fn status_body(code: u16, reason: &str, message: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {},
        "code": code
    })
}

fn version_body() -> serde_json::Value {
    serde_json::json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.1-eks-1234567",
        "gitCommit": "0000000", "gitTreeState": "clean", "buildDate": "2025-05-01T00:00:00Z",
        "goVersion": "go1.24.2", "compiler": "gc", "platform": "linux/amd64"
    })
}

async fn api_server(status: u16, body: serde_json::Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/version"))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(&server)
        .await;
    server
}

fn authorizations(requests: &[wiremock::Request]) -> Vec<String> {
    requests
        .iter()
        .filter_map(|r| r.headers.get("authorization"))
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn kubeconfig_file_uses_its_current_context() {
    let server = api_server(200, version_body()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config");
    std::fs::write(&file, fixture("token.yaml", &server.uri())).unwrap();
    let (runner, log) = Runner::capturing(false);
    let conn = connect(
        &ClusterAccess::KubeconfigFile(file),
        &AwsAccess::default(),
        &runner,
    )
    .await
    .unwrap();
    assert_eq!(conn.server, server.uri());
    assert_eq!(
        conn.identity,
        "user `ci-deployer` (context `ci-deployer@staging`)"
    );
    assert_eq!(conn.default_namespace.as_deref(), Some("shop"));
    check_access(&conn).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(
        authorizations(&requests),
        ["Bearer fixture-token-3f9a1c".to_string()]
    );
    // Both users' tokens were masked before use.
    let log = log.contents();
    assert!(log.contains("::add-mask::fixture-token-3f9a1c"), "{log}");
    assert!(
        log.contains("::add-mask::fixture-admin-token-77b2"),
        "{log}"
    );
}

#[tokio::test]
async fn inline_json_kubeconfig_connects_and_is_masked() {
    let server = api_server(200, version_body()).await;
    let (runner, log) = Runner::capturing(false);
    let content = fixture("token.json", &server.uri());
    let conn = connect(
        &ClusterAccess::KubeconfigContent(Secret::new(content)),
        &AwsAccess::default(),
        &runner,
    )
    .await
    .unwrap();
    assert_eq!(conn.identity, "user `json-user` (context `json-ctx`)");
    assert_eq!(conn.default_namespace, None);
    check_access(&conn).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(
        authorizations(&requests),
        ["Bearer fixture-json-token-51e0".to_string()]
    );
    assert!(runner.redact("fixture-json-token-51e0").contains("***"));
    assert!(
        log.contents().contains("::add-mask::"),
        "{}",
        log.contents()
    );
}

#[tokio::test]
async fn kubeconfig_problems_are_named() {
    let (runner, _log) = Runner::capturing(false);
    let aws = AwsAccess::default();

    let missing = PathBuf::from("/nonexistent/gantry/kubeconfig");
    let err = connect(&ClusterAccess::KubeconfigFile(missing), &aws, &runner)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClusterError::ReadKubeconfig { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("/nonexistent/gantry/kubeconfig"),
        "{err}"
    );

    let garbage = ClusterAccess::KubeconfigContent(Secret::new("clusters: [unclosed"));
    let err = connect(&garbage, &aws, &runner).await.unwrap_err();
    assert!(
        matches!(err, ClusterError::ParseKubeconfig { .. }),
        "{err:?}"
    );
    // The position is given, the text (which may hold credentials) is not quoted.
    assert!(err.to_string().contains("line 1 column 11"), "{err}");
    assert!(!err.to_string().contains("clusters: ["), "{err}");

    let no_context = ClusterAccess::KubeconfigContent(Secret::new(fixture("no-context.yaml", "")));
    let err = connect(&no_context, &aws, &runner).await.unwrap_err();
    assert!(matches!(err, ClusterError::NoContext { .. }), "{err:?}");
    assert!(err.to_string().contains("current-context"), "{err}");

    let err = connect(&ClusterAccess::None, &aws, &runner)
        .await
        .unwrap_err();
    assert!(matches!(err, ClusterError::NotConfigured));
}

async fn kubeconfig_connection(server: &MockServer) -> ClusterConnection {
    let (runner, _log) = Runner::capturing(false);
    connect(
        &ClusterAccess::KubeconfigContent(Secret::new(fixture("token.yaml", &server.uri()))),
        &AwsAccess::default(),
        &runner,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_401_names_the_identity_and_not_the_token() {
    let server = api_server(401, status_body(401, "Unauthorized", "Unauthorized")).await;
    let conn = kubeconfig_connection(&server).await;
    let err = check_access(&conn).await.unwrap_err();
    assert!(matches!(err, ClusterError::Unauthorized { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with(
            "the cluster rejected the credentials of user `ci-deployer` (context `ci-deployer@staging`): Unauthorized"
        ),
        "{message}"
    );
    assert!(!message.contains("fixture-token"), "{message}");
}

#[tokio::test]
async fn a_401_on_eks_points_at_the_access_entry() {
    let server = api_server(401, status_body(401, "Unauthorized", "Unauthorized")).await;
    let (runner, _log) = Runner::capturing(false);
    let tokens = TokenSource::new(example_credentials(None), "eu-west-1", "shop");
    let conn = connect_with_tokens(
        &server.uri(),
        None,
        tokens,
        "arn:aws:sts::123456789012:assumed-role/deployer/gha",
        &runner,
    )
    .await
    .unwrap();
    let err = check_access(&conn).await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("arn:aws:sts::123456789012:assumed-role/deployer/gha"),
        "{message}"
    );
    assert!(message.contains("access entry"), "{message}");
    assert!(message.contains("terraform/"), "{message}");
    assert!(!message.contains(TOKEN_PREFIX), "{message}");
    // The token was sent, and masked before.
    let sent = authorizations(&server.received_requests().await.unwrap());
    let token = sent[0].strip_prefix("Bearer ").unwrap();
    assert!(token.starts_with(TOKEN_PREFIX), "{token}");
    assert_eq!(runner.redact(token), "***");
}

#[tokio::test]
async fn a_403_names_the_identity_and_the_access_needed() {
    let server = api_server(
        403,
        status_body(
            403,
            "Forbidden",
            "forbidden: User \"ci-deployer\" cannot get path \"/version\"",
        ),
    )
    .await;
    let conn = kubeconfig_connection(&server).await;
    let err = check_access(&conn).await.unwrap_err();
    assert!(matches!(err, ClusterError::Forbidden { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("user `ci-deployer`"), "{message}");
    assert!(
        message.contains("cannot get path \\\"/version\\\"")
            || message.contains("cannot get path \"/version\""),
        "{message}"
    );
    assert!(message.contains("system:discovery"), "{message}");
}

#[tokio::test]
async fn a_closed_port_says_the_cluster_cannot_be_reached() {
    // Bind then drop a listener: nothing listens on the port afterwards.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("http://127.0.0.1:{port}");
    let (runner, _log) = Runner::capturing(false);
    let conn = connect(
        &ClusterAccess::KubeconfigContent(Secret::new(fixture("token.yaml", &address))),
        &AwsAccess::default(),
        &runner,
    )
    .await
    .unwrap();
    let err = check_access_within(&conn, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(matches!(err, ClusterError::Unreachable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("cannot reach the cluster API at {address}")),
        "{message}"
    );
    assert!(!message.contains("fixture-token"), "{message}");
}

#[tokio::test]
async fn a_silent_server_times_out_with_the_address() {
    // A listener that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let (runner, _log) = Runner::capturing(false);
    let conn = connect(
        &ClusterAccess::KubeconfigContent(Secret::new(fixture("token.yaml", &address))),
        &AwsAccess::default(),
        &runner,
    )
    .await
    .unwrap();
    let err = check_access_within(&conn, Duration::from_millis(500))
        .await
        .unwrap_err();
    hold.abort();
    assert!(matches!(err, ClusterError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains(&address), "{err}");
}

/// kube reloads a token file once its copy is 50 s old, so this test waits that long: the
/// refresher makes a new token every second, and a request after the reload carries a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eks_tokens_are_renewed_before_they_expire() {
    let server = api_server(200, version_body()).await;
    let (runner, log) = Runner::capturing(false);
    let tokens = TokenSource::new(example_credentials(None), "eu-west-1", "shop")
        .refresh_every(Duration::from_secs(1));
    let conn = connect_with_tokens(
        &server.uri(),
        None,
        tokens,
        "arn:aws:iam::1:role/x",
        &runner,
    )
    .await
    .unwrap();
    check_access(&conn).await.unwrap();
    tokio::time::sleep(Duration::from_secs(52)).await;
    check_access(&conn).await.unwrap();

    let sent = authorizations(&server.received_requests().await.unwrap());
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_ne!(
        sent[0], sent[1],
        "the second request reused the first token"
    );
    for header in &sent {
        let token = header.strip_prefix("Bearer ").unwrap();
        let url = decode(token);
        assert!(
            url.contains("X-Amz-SignedHeaders=host%3Bx-k8s-aws-id"),
            "{url}"
        );
        // Masked before it was written where the client reads it.
        assert_eq!(runner.redact(token), "***");
    }
    // Tokens reach the log only in the runner's `::add-mask::` announcements.
    let log = log.contents();
    for line in log.lines().filter(|l| l.contains(TOKEN_PREFIX)) {
        assert!(line.starts_with("::add-mask::"), "{line}");
    }
}
