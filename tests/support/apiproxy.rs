//! A small HTTP proxy in front of the test bed's real API server: it records every request gantry sends and injects the faults a real network and a loaded API server produce (429 with Retry-After, 5xx, connection resets, latency, expired watches). Every other answer is the real server's.
//!
//! gantry reaches it over plain HTTP on loopback with the deployer's bearer token; the proxy
//! talks TLS to the API server with the cluster's CA.

use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A request the proxy forwarded (or answered with a fault).
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    /// The fault injected instead of forwarding, if any.
    pub fault: Option<String>,
}

/// What the proxy does instead of (or before) forwarding a matching request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// An error status with a Kubernetes `Status` body.
    Status(u16),
    /// 429 with `Retry-After`, as API priority and fairness answers.
    TooManyRequests { retry_after_seconds: u64 },
    /// The connection is closed without an answer.
    Reset,
    /// The request is forwarded after a delay.
    Delay(Duration),
    /// A watch is answered with the ERROR event of an expired resourceVersion (410 Gone).
    WatchExpired,
}

/// Which requests a fault applies to.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    pub method: Option<String>,
    pub path_contains: Option<String>,
    pub query_contains: Option<String>,
}

impl Matcher {
    pub fn any() -> Matcher {
        Matcher::default()
    }
    pub fn method(mut self, method: &str) -> Matcher {
        self.method = Some(method.to_string());
        self
    }
    pub fn path_contains(mut self, part: &str) -> Matcher {
        self.path_contains = Some(part.to_string());
        self
    }
    pub fn query_contains(mut self, part: &str) -> Matcher {
        self.query_contains = Some(part.to_string());
        self
    }
    fn matches(&self, method: &str, path: &str, query: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
            && self
                .query_contains
                .as_deref()
                .is_none_or(|q| query.contains(q))
    }
}

struct Rule {
    matcher: Matcher,
    remaining: usize,
    fault: Fault,
    /// The share of matching requests that get the fault (1.0: every one, while `remaining`).
    share: f64,
}

struct State {
    upstream: reqwest::Client,
    base: String,
    seen: Mutex<Vec<Seen>>,
    rules: Mutex<Vec<Rule>>,
    /// The state of the generator that draws which requests a shared fault hits (xorshift).
    draw: Mutex<u64>,
}

/// The running proxy; stops when dropped.
pub struct ApiProxy {
    pub url: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The server, CA certificate and bearer token of a token kubeconfig (the deployer's).
pub fn token_kubeconfig(path: &Path) -> (String, Vec<u8>, String) {
    let text = std::fs::read_to_string(path).unwrap();
    let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let cluster = &parsed["clusters"][0]["cluster"];
    let ca = std::fs::read(cluster["certificate-authority"].as_str().unwrap()).unwrap();
    let token = parsed["users"][0]["user"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    (cluster["server"].as_str().unwrap().to_string(), ca, token)
}

impl ApiProxy {
    /// Starts the proxy in front of `upstream` (an https URL) trusting `ca_pem`.
    pub async fn start(upstream: &str, ca_pem: &[u8]) -> ApiProxy {
        gantry::adapters::cluster::install_crypto_provider();
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap())
            .pool_max_idle_per_host(32)
            .build()
            .unwrap();
        let state = Arc::new(State {
            upstream: client,
            base: upstream.trim_end_matches('/').to_string(),
            seen: Mutex::new(Vec::new()),
            rules: Mutex::new(Vec::new()),
            draw: Mutex::new(0x9e37_79b9_7f4a_7c15),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let serving = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { handle(state, request).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        ApiProxy { url, state, task }
    }

    /// Injects `fault` into the next `times` requests that match.
    pub fn fail_next(&self, matcher: Matcher, times: usize, fault: Fault) {
        self.state.rules.lock().unwrap().push(Rule {
            matcher,
            remaining: times,
            fault,
            share: 1.0,
        });
    }

    /// Injects `fault` into a `share` (0..1) of the requests that match, drawn at random, from
    /// now on.
    pub fn fail_share(&self, matcher: Matcher, share: f64, fault: Fault) {
        self.state.rules.lock().unwrap().push(Rule {
            matcher,
            remaining: usize::MAX,
            fault,
            share,
        });
    }

    /// Stops injecting faults.
    pub fn heal(&self) {
        self.state.rules.lock().unwrap().clear();
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn clear_requests(&self) {
        self.state.seen.lock().unwrap().clear();
    }

    /// A client that reaches the API server through this proxy with `token`.
    pub async fn client(&self, token: &str) -> kube::Client {
        self.counted_client(token).await.0
    }

    /// [`ApiProxy::client`] over gantry's own HTTP stack, and what it counts.
    pub async fn counted_client(
        &self,
        token: &str,
    ) -> (kube::Client, Arc<gantry::adapters::kube_http::Traffic>) {
        let mut config = kube::Config::new(self.url.parse().unwrap());
        config.auth_info.token = Some(token.to_string().into());
        config.read_timeout = Some(Duration::from_secs(300));
        gantry::adapters::kube_http::client(config).unwrap()
    }
}

/// A number in [0, 1) from the proxy's generator.
fn draw(state: &State) -> f64 {
    let mut x = state.draw.lock().unwrap();
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    (*x >> 11) as f64 / (1u64 << 53) as f64
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn status_body(code: u16, reason: &str, message: &str) -> String {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code})
    .to_string()
}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let fault = {
        let mut rules = state.rules.lock().unwrap();
        let found = rules.iter_mut().find(|r| {
            r.remaining > 0
                && r.matcher.matches(&method, &path, &query)
                && (r.share >= 1.0 || draw(&state) < r.share)
        });
        found.map(|rule| {
            rule.remaining -= 1;
            rule.fault.clone()
        })
    };
    state.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        content_type,
        fault: fault.as_ref().map(|f| format!("{f:?}")),
    });
    match fault {
        Some(Fault::Status(code)) => {
            return Ok(Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(full(status_body(
                    code,
                    "InternalError",
                    "injected by the test proxy",
                )))
                .unwrap())
        }
        Some(Fault::TooManyRequests {
            retry_after_seconds,
        }) => {
            return Ok(Response::builder()
                .status(429)
                .header("content-type", "application/json")
                .header("retry-after", retry_after_seconds.to_string())
                .body(full(
                    serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "message": "too many requests, please try again later",
                        "reason": "TooManyRequests", "code": 429,
                        "details": {"retryAfterSeconds": retry_after_seconds}})
                    .to_string(),
                ))
                .unwrap())
        }
        Some(Fault::Reset) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "injected reset",
            ))
        }
        Some(Fault::WatchExpired) => {
            let event = serde_json::json!({"type": "ERROR", "object": serde_json::from_str::<serde_json::Value>(
                &status_body(410, "Expired", "too old resource version")).unwrap()});
            return Ok(Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(full(format!("{event}\n")))
                .unwrap());
        }
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }
    let target = if query.is_empty() {
        format!("{}{path}", state.base)
    } else {
        format!("{}{path}?{query}", state.base)
    };
    let mut upstream = state.upstream.request(request.method().clone(), target);
    for (name, value) in request.headers() {
        if !matches!(
            name.as_str(),
            "host" | "connection" | "content-length" | "transfer-encoding"
        ) {
            upstream = upstream.header(name, value);
        }
    }
    let body = request
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let answer = upstream
        .body(body)
        .send()
        .await
        .map_err(std::io::Error::other)?;
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if !matches!(
            name.as_str(),
            "connection" | "content-length" | "transfer-encoding"
        ) {
            response = response.header(name, value);
        }
    }
    let stream = answer
        .bytes_stream()
        .map(|chunk| chunk.map(Frame::data).map_err(std::io::Error::other));
    Ok(response
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap())
}
