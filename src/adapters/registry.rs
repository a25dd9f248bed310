//! The OCI distribution v2 API, only as far as gantry needs it: the digest behind a tag (`HEAD /v2/<name>/manifests/<tag>`) and tagging a manifest by digest (`GET` it, `PUT` it under the tag), with the Bearer or Basic challenge answered.
//!
//! Works for ECR and any OCI registry. HTTPS is used everywhere; an extra CA is read from
//! `GANTRY_REGISTRY_CA_FILE` (or `SSL_CERT_FILE`); plain HTTP is tried only for 127.0.0.1 and
//! localhost, after HTTPS fails to connect, like Docker does.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use crate::image::auth::{self, basic_header, parse_challenge, Challenge, Credentials};

/// The manifest media types a digest lookup accepts (index first, like `docker buildx imagetools`).
pub const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Why a registry request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not read the registry CA file {path}: {source}")]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the registry CA file {path} holds no usable PEM certificate: {source}")]
    CaPem {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("could not set up the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("could not reach the registry {host}: {source}")]
    Unreachable {
        host: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the registry {host} rejected the credentials (HTTP 401) for `{repository}`: {hint}")]
    Unauthorized {
        host: String,
        repository: String,
        hint: &'static str,
    },
    #[error("the registry {host} denied access (HTTP 403) to `{repository}`: the credentials lack {permission} permission on it")]
    Forbidden {
        host: String,
        repository: String,
        permission: &'static str,
    },
    #[error(transparent)]
    Challenge(#[from] auth::Error),
    #[error("the token service {realm} answered {status}")]
    Token { realm: String, status: StatusCode },
    #[error("the registry {host} answered {status} for {url}{}", if .detail.is_empty() { String::new() } else { format!(": {}", .detail) })]
    Status {
        host: String,
        status: StatusCode,
        url: String,
        detail: String,
    },
    #[error("the registry {host} served {url} without a Docker-Content-Digest header")]
    NoDigest { host: String, url: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A registry client (cheap to clone).
#[derive(Debug, Clone)]
pub struct Registry {
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

impl Registry {
    /// A client trusting the web PKI plus the CA in `GANTRY_REGISTRY_CA_FILE` or `SSL_CERT_FILE`.
    pub fn from_env() -> Result<Registry> {
        let ca = std::env::var_os("GANTRY_REGISTRY_CA_FILE")
            .or_else(|| std::env::var_os("SSL_CERT_FILE"))
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Registry::new(ca)
    }

    pub fn new(ca_file: Option<PathBuf>) -> Result<Registry> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_file {
            let pem = std::fs::read(&path).map_err(|source| Error::CaFile {
                path: path.clone(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|source| Error::CaPem { path, source })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Registry {
            http: builder.build().map_err(Error::Client)?,
        })
    }

    /// The digest the registry serves for `repository:reference`, or `None` if the tag (or the
    /// repository) does not exist.
    pub async fn manifest_digest(
        &self,
        host: &str,
        repository: &str,
        reference: &str,
        credentials: Option<&Credentials>,
    ) -> Result<Option<String>> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let call = Call {
            host,
            repository,
            actions: "pull",
            credentials,
        };
        let (url, response) = self
            .send(&call, Method::HEAD, &path, None, |r| {
                r.header(ACCEPT, MANIFEST_TYPES)
            })
            .await?;
        match response.status() {
            StatusCode::OK => {
                let digest = digest_header(response.headers()).ok_or_else(|| Error::NoDigest {
                    host: host.to_string(),
                    url: url.clone(),
                })?;
                Ok(Some(digest))
            }
            StatusCode::NOT_FOUND => Ok(None),
            status => Err(call.failed(status, url, String::new())),
        }
    }

    /// Gives the manifest `digest` the tag `tag` as well, through the registry alone (the
    /// manifest is fetched by digest and put under the tag, like `crane tag`): no image is
    /// pulled or pushed. Nothing is written when the tag already points at `digest`.
    pub async fn tag_manifest(
        &self,
        host: &str,
        repository: &str,
        digest: &str,
        tag: &str,
        credentials: Option<&Credentials>,
    ) -> Result<Tagged> {
        if self
            .manifest_digest(host, repository, tag, credentials)
            .await?
            .as_deref()
            == Some(digest)
        {
            return Ok(Tagged::Already);
        }
        let pull = Call {
            host,
            repository,
            actions: "pull",
            credentials,
        };
        let path = format!("/v2/{repository}/manifests/{digest}");
        let (url, response) = self
            .send(&pull, Method::GET, &path, None, |r| {
                r.header(ACCEPT, MANIFEST_TYPES)
            })
            .await?;
        if response.status() != StatusCode::OK {
            let status = response.status();
            let body = error_text(response).await;
            return Err(pull.failed(status, url, body));
        }
        let media_type = header_text(response.headers(), CONTENT_TYPE)
            .unwrap_or("application/vnd.docker.distribution.manifest.v2+json")
            .to_string();
        let manifest = response
            .bytes()
            .await
            .map_err(|source| Error::Unreachable {
                host: host.to_string(),
                source,
            })?;
        let push = Call {
            actions: "pull,push",
            ..pull
        };
        let path = format!("/v2/{repository}/manifests/{tag}");
        let (url, response) = self
            .send(&push, Method::PUT, &path, Some(manifest), |r| {
                r.header(CONTENT_TYPE, media_type.as_str())
            })
            .await?;
        match response.status() {
            StatusCode::CREATED | StatusCode::OK => Ok(Tagged::Created),
            status => {
                let body = error_text(response).await;
                Err(push.failed(status, url, body))
            }
        }
    }

    /// Sends one request, answering a 401 challenge once with credentials for `call`'s scope.
    /// The first request goes over HTTPS, or HTTP for a loopback host whose HTTPS fails to
    /// connect. Returns the URL used and the response.
    async fn send(
        &self,
        call: &Call<'_>,
        method: Method,
        path: &str,
        body: Option<bytes::Bytes>,
        decorate: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<(String, reqwest::Response)> {
        let host = call.host;
        let unreachable = |source| Error::Unreachable {
            host: host.to_string(),
            source,
        };
        let request = |url: &str, authorization: Option<&str>| {
            let mut request = decorate(self.http.request(method.clone(), url));
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            if let Some(value) = authorization {
                request = request.header(AUTHORIZATION, value);
            }
            request.send()
        };
        let https = format!("https://{host}{path}");
        let (url, response) = match request(&https, None).await {
            Ok(response) => (https, response),
            Err(err) if is_loopback(host) && (err.is_connect() || err.is_request()) => {
                let http = format!("http://{host}{path}");
                let response = request(&http, None).await.map_err(unreachable)?;
                (http, response)
            }
            Err(source) => return Err(unreachable(source)),
        };
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok((url, response));
        }
        let header = header_text(response.headers(), WWW_AUTHENTICATE)
            .unwrap_or("Basic")
            .to_string();
        let authorization = self.authorize(call, &header).await?;
        let response = request(&url, Some(&authorization))
            .await
            .map_err(unreachable)?;
        Ok((url, response))
    }

    /// Answers a 401 challenge: the `Authorization` header value to retry with.
    async fn authorize(&self, call: &Call<'_>, header: &str) -> Result<String> {
        let credentials = call.credentials;
        match parse_challenge(header)? {
            Challenge::Basic => credentials
                .map(basic_header)
                .ok_or_else(|| call.failed(StatusCode::UNAUTHORIZED, String::new(), String::new())),
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let scope = scope
                    .unwrap_or_else(|| format!("repository:{}:{}", call.repository, call.actions));
                let mut request = self.http.get(&realm).query(&[("scope", scope.as_str())]);
                if let Some(service) = &service {
                    request = request.query(&[("service", service.as_str())]);
                }
                if let Some(credentials) = credentials {
                    request = request.header(AUTHORIZATION, basic_header(credentials));
                }
                let response = request.send().await.map_err(|source| Error::Unreachable {
                    host: call.host.to_string(),
                    source,
                })?;
                match response.status() {
                    StatusCode::OK => {}
                    StatusCode::UNAUTHORIZED => {
                        return Err(call.failed(
                            StatusCode::UNAUTHORIZED,
                            String::new(),
                            String::new(),
                        ))
                    }
                    status => return Err(Error::Token { realm, status }),
                }
                let body: TokenResponse =
                    response.json().await.map_err(|source| Error::Unreachable {
                        host: call.host.to_string(),
                        source,
                    })?;
                body.token
                    .or(body.access_token)
                    .map(|t| format!("Bearer {t}"))
                    .ok_or(Error::Token {
                        realm,
                        status: StatusCode::OK,
                    })
            }
        }
    }
}

/// What [`Registry::tag_manifest`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tagged {
    /// The tag already pointed at the digest.
    Already,
    /// The tag was (re)pointed at the digest.
    Created,
}

/// One registry call's target and what it may do (`pull`, or `pull,push`).
#[derive(Clone, Copy)]
struct Call<'a> {
    host: &'a str,
    repository: &'a str,
    actions: &'static str,
    credentials: Option<&'a Credentials>,
}

impl Call<'_> {
    /// The error for an unexpected status, explained for 401 and 403.
    fn failed(&self, status: StatusCode, url: String, body: String) -> Error {
        let (host, repository) = (self.host.to_string(), self.repository.to_string());
        let pushing = self.actions.contains("push");
        match status {
            StatusCode::UNAUTHORIZED => Error::Unauthorized {
                host,
                repository,
                hint: match (self.credentials.is_some(), pushing) {
                    (true, false) => "check registry-username and registry-password, or for ECR that the AWS role may call ecr:GetAuthorizationToken and pull from the repository",
                    (true, true) => "check registry-username and registry-password, or for ECR that the AWS role may call ecr:GetAuthorizationToken and push to the repository",
                    (false, _) => "the registry needs credentials; set registry-username and registry-password",
                },
            },
            StatusCode::FORBIDDEN => Error::Forbidden {
                host,
                repository,
                permission: if pushing { "push" } else { "pull" },
            },
            status => Error::Status {
                host,
                status,
                url,
                detail: body,
            },
        }
    }
}

/// The registry's error text (`{"errors":[{"code","message"}]}`), or the body as it came.
async fn error_text(response: reqwest::Response) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(Deserialize)]
    struct ErrorItem {
        code: Option<String>,
        message: Option<String>,
    }
    let body = response.text().await.unwrap_or_default();
    match serde_json::from_str::<Errors>(&body) {
        Ok(errors) if !errors.errors.is_empty() => errors
            .errors
            .iter()
            .map(|e| {
                [e.code.as_deref(), e.message.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": ")
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => body.chars().take(300).collect(),
    }
}

fn header_text(headers: &HeaderMap, name: impl reqwest::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn digest_header(headers: &HeaderMap) -> Option<String> {
    header_text(headers, "docker-content-digest")
        .map(|v| v.trim().to_string())
        .filter(|v| v.contains(':'))
}

/// Hosts where plain HTTP is allowed: 127.0.0.1 and localhost (any port).
pub fn is_loopback(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    name == "127.0.0.1" || name == "localhost"
}
