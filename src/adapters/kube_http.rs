//! The HTTP stack under the Kubernetes client: HTTP/2 over one TLS connection when the API server offers it (HTTP/1.1 otherwise), every request counted, throttled (429) answers and failed connections tallied, and the round-trip time measured so concurrency can be sized to it.
//!
//! Design note: kube's default stack speaks HTTP/1.1 only, so `n` requests in flight need `n`
//! TLS connections (two extra round trips each to open, and `n` sockets held by the API
//! server). The Go client, and so kubectl, multiplexes everything over one HTTP/2 connection;
//! this stack does the same, with kube's own auth, base-URI and header layers, and the same
//! connect/read/write timeouts. Over plain `http://` (the tests' proxy) it stays HTTP/1.1.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::{Body, ConfigExt};
use tower::{BoxError, Layer, Service, ServiceBuilder};

/// What the client sent and what came back, counted as it happens.
#[derive(Debug, Default)]
pub struct Traffic {
    requests: AtomicU64,
    throttled: AtomicU64,
    failed: AtomicU64,
    /// The shortest time to a response header seen, in microseconds (0: none yet).
    fastest_micros: AtomicU64,
    http2: AtomicBool,
}

/// A snapshot of [`Traffic`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TrafficCount {
    /// Requests sent (each retry counts).
    pub requests: u64,
    /// Answers 429 Too Many Requests (API priority and fairness), retried.
    pub throttled: u64,
    /// Requests that got no answer (connection refused, reset, timed out), retried when they may be.
    pub failed: u64,
    /// Whether answers came over HTTP/2.
    pub http2: bool,
}

impl TrafficCount {
    /// `API requests: 612 over HTTP/2 (183 throttled with 429 and retried, 4 without an answer)`.
    pub fn sentence(&self) -> String {
        let mut text = format!(
            "API requests: {} over {}",
            self.requests,
            if self.http2 { "HTTP/2" } else { "HTTP/1.1" }
        );
        let mut trouble = Vec::new();
        if self.throttled > 0 {
            trouble.push(format!(
                "{} throttled by the API server (429) and retried as it asked",
                self.throttled
            ));
        }
        if self.failed > 0 {
            trouble.push(format!(
                "{} without an answer (connection reset or refused) and retried",
                self.failed
            ));
        }
        if !trouble.is_empty() {
            text.push_str(&format!(" ({})", trouble.join(", ")));
        }
        text
    }
}

impl Traffic {
    /// The counts so far.
    pub fn count(&self) -> TrafficCount {
        TrafficCount {
            requests: self.requests.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            http2: self.http2.load(Ordering::Relaxed),
        }
    }

    /// The shortest round trip seen (time to the response header), if any request completed.
    pub fn round_trip(&self) -> Option<Duration> {
        match self.fastest_micros.load(Ordering::Relaxed) {
            0 => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }

    fn answered(&self, status: http::StatusCode, version: http::Version, took: Duration) {
        if status == http::StatusCode::TOO_MANY_REQUESTS {
            self.throttled.fetch_add(1, Ordering::Relaxed);
        }
        if version == http::Version::HTTP_2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        let micros = took.as_micros().clamp(1, u64::MAX as u128) as u64;
        let _ = self
            .fastest_micros
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                (old == 0 || micros < old).then_some(micros)
            });
    }
}

/// How many requests to keep in flight for a round trip of `round_trip`, at most `bound`:
/// 8 on loopback, two more per millisecond of round trip (64 from 28 ms), so the pipe stays full
/// while the API server's priority-and-fairness seats (hundreds) are never the limit; its
/// 429s are retried as it asks.
pub fn concurrency_for(round_trip: Option<Duration>, bound: usize) -> usize {
    let millis = round_trip.map(|r| r.as_secs_f64() * 1000.0).unwrap_or(0.0);
    let sized = 8 + (millis * 2.0) as usize;
    sized.clamp(1, bound.max(1))
}

/// A Kubernetes client for `config` over this stack, and its traffic counters.
pub fn client(config: kube::Config) -> Result<(kube::Client, Arc<Traffic>), kube::Error> {
    if let Some(proxy) = &config.proxy_url {
        return Err(kube::Error::ProxyProtocolDisabled {
            proxy_url: Box::new(proxy.clone()),
            protocol_feature: "a proxy (gantry connects to the API server directly)",
        });
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let tls = config.rustls_client_config()?;
    let mut builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|err| {
            kube::Error::RustlsTls(kube::client::RustlsTlsError::InvalidServerName(err))
        })?;
        builder =
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let https = builder.enable_all_versions().wrap_connector(http);
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    let transport: hyper_util::client::legacy::Client<_, Body> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    let traffic = Arc::new(Traffic::default());
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .layer(Counting(traffic.clone()))
        .map_err(BoxError::from)
        .service(transport);
    let client = kube::client::ClientBuilder::new(service, config.default_namespace).build();
    Ok((client, traffic))
}

/// Whether `GANTRY_TRACE_HTTP=1` asks for one stderr line per request (method, URL, status,
/// time to the answer; never headers or bodies), for the benchmarks.
fn trace_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("GANTRY_TRACE_HTTP").is_ok_and(|v| v == "1"))
}

/// The layer that counts into [`Traffic`].
#[derive(Clone)]
struct Counting(Arc<Traffic>);

impl<S> Layer<S> for Counting {
    type Service = Counted<S>;
    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            traffic: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct Counted<S> {
    inner: S,
    traffic: Arc<Traffic>,
}

impl<S, B> Service<Request<Body>> for Counted<S>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Response<B>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let traffic = self.traffic.clone();
        traffic.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let traced = trace_enabled().then(|| format!("{} {}", request.method(), request.uri()));
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            if let Some(line) = traced {
                let status = answer.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
                eprintln!(
                    "http {:.3} +{}ms {status} {line}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs_f64())
                        .unwrap_or(0.0),
                    started.elapsed().as_millis()
                );
            }
            match &answer {
                Ok(response) => {
                    traffic.answered(response.status(), response.version(), started.elapsed())
                }
                Err(_) => {
                    traffic.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_grows_with_the_round_trip_up_to_the_bound() {
        let ms = |n: u64| Some(Duration::from_millis(n));
        for (round_trip, bound, expected) in [
            (None, 64, 8),
            (ms(0), 64, 8),
            (ms(1), 64, 10),
            (ms(10), 64, 28),
            (ms(20), 64, 48),
            (ms(30), 64, 64),
            (ms(100), 64, 64),
            (ms(30), 4, 4),
            (ms(30), 0, 1),
        ] {
            assert_eq!(
                concurrency_for(round_trip, bound),
                expected,
                "{round_trip:?} bound {bound}"
            );
        }
    }

    #[test]
    fn the_fastest_answer_is_the_round_trip_and_429s_are_counted() {
        let traffic = Traffic::default();
        assert_eq!(traffic.round_trip(), None);
        traffic.answered(
            http::StatusCode::OK,
            http::Version::HTTP_11,
            Duration::from_millis(40),
        );
        traffic.answered(
            http::StatusCode::TOO_MANY_REQUESTS,
            http::Version::HTTP_2,
            Duration::from_millis(31),
        );
        traffic.answered(
            http::StatusCode::OK,
            http::Version::HTTP_2,
            Duration::from_millis(35),
        );
        assert_eq!(traffic.round_trip(), Some(Duration::from_millis(31)));
        let count = traffic.count();
        assert_eq!((count.throttled, count.http2), (1, true));
        assert_eq!(
            count.sentence(),
            "API requests: 0 over HTTP/2 (1 throttled by the API server (429) and retried as it asked)"
        );
    }
}
