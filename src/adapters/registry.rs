//! The OCI distribution v2 API, only as far as gantry needs it: the digest behind a tag (`HEAD /v2/<name>/manifests/<tag>`), with the Bearer or Basic challenge answered.
//!
//! Works for ECR and any OCI registry. HTTPS is used everywhere; an extra CA is read from
//! `GANTRY_REGISTRY_CA_FILE` (or `SSL_CERT_FILE`); plain HTTP is tried only for 127.0.0.1 and
//! localhost, after HTTPS fails to connect, like Docker does.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::image::auth::{self, basic_header, parse_challenge, pull_scope, Challenge, Credentials};

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
    #[error("the registry {host} denied access (HTTP 403) to `{repository}`: the credentials lack pull permission on it")]
    Forbidden { host: String, repository: String },
    #[error(transparent)]
    Challenge(#[from] auth::Error),
    #[error("the token service {realm} answered {status}")]
    Token { realm: String, status: StatusCode },
    #[error("the registry {host} answered {status} for {url}")]
    Status {
        host: String,
        status: StatusCode,
        url: String,
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
        let (base, response) = self.send_head(host, &path, None).await?;
        let url = format!("{base}{path}");
        let response = if response.status() == StatusCode::UNAUTHORIZED {
            let header = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("Basic")
                .to_string();
            let authorization = self
                .authorize(host, repository, &header, credentials)
                .await?;
            self.head(&url, Some(&authorization))
                .await
                .map_err(|source| Error::Unreachable {
                    host: host.to_string(),
                    source,
                })?
        } else {
            response
        };
        match response.status() {
            StatusCode::OK => {
                let digest = digest_header(response.headers()).ok_or_else(|| Error::NoDigest {
                    host: host.to_string(),
                    url: url.clone(),
                })?;
                Ok(Some(digest))
            }
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::UNAUTHORIZED => Err(Error::Unauthorized {
                host: host.to_string(),
                repository: repository.to_string(),
                hint: if credentials.is_some() {
                    "check registry-username and registry-password, or for ECR that the AWS role may call ecr:GetAuthorizationToken and pull from the repository"
                } else {
                    "the registry needs credentials; set registry-username and registry-password"
                },
            }),
            StatusCode::FORBIDDEN => Err(Error::Forbidden {
                host: host.to_string(),
                repository: repository.to_string(),
            }),
            status => Err(Error::Status {
                host: host.to_string(),
                status,
                url,
            }),
        }
    }

    /// Answers a 401 challenge: the `Authorization` header value to retry with.
    async fn authorize(
        &self,
        host: &str,
        repository: &str,
        header: &str,
        credentials: Option<&Credentials>,
    ) -> Result<String> {
        let unauthorized = || Error::Unauthorized {
            host: host.to_string(),
            repository: repository.to_string(),
            hint: if credentials.is_some() {
                "check registry-username and registry-password, or for ECR that the AWS role may call ecr:GetAuthorizationToken"
            } else {
                "the registry needs credentials; set registry-username and registry-password"
            },
        };
        match parse_challenge(header)? {
            Challenge::Basic => credentials.map(basic_header).ok_or_else(unauthorized),
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let scope = scope.unwrap_or_else(|| pull_scope(repository));
                let mut request = self.http.get(&realm).query(&[("scope", scope.as_str())]);
                if let Some(service) = &service {
                    request = request.query(&[("service", service.as_str())]);
                }
                if let Some(credentials) = credentials {
                    request = request.header(AUTHORIZATION, basic_header(credentials));
                }
                let response = request.send().await.map_err(|source| Error::Unreachable {
                    host: host.to_string(),
                    source,
                })?;
                match response.status() {
                    StatusCode::OK => {}
                    StatusCode::UNAUTHORIZED => return Err(unauthorized()),
                    status => return Err(Error::Token { realm, status }),
                }
                let body: TokenResponse =
                    response.json().await.map_err(|source| Error::Unreachable {
                        host: host.to_string(),
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

    /// Sends the first HEAD over HTTPS, or HTTP for a loopback host whose HTTPS fails to connect.
    async fn send_head(
        &self,
        host: &str,
        path: &str,
        authorization: Option<&str>,
    ) -> Result<(String, reqwest::Response)> {
        let https = format!("https://{host}");
        match self.head(&format!("{https}{path}"), authorization).await {
            Ok(response) => Ok((https, response)),
            Err(err) if is_loopback(host) && (err.is_connect() || err.is_request()) => {
                let http = format!("http://{host}");
                let response = self
                    .head(&format!("{http}{path}"), authorization)
                    .await
                    .map_err(|source| Error::Unreachable {
                        host: host.to_string(),
                        source,
                    })?;
                Ok((http, response))
            }
            Err(source) => Err(Error::Unreachable {
                host: host.to_string(),
                source,
            }),
        }
    }

    async fn head(
        &self,
        url: &str,
        authorization: Option<&str>,
    ) -> std::result::Result<reqwest::Response, reqwest::Error> {
        let mut request = self.http.head(url).header(ACCEPT, MANIFEST_TYPES);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        request.send().await
    }
}

fn digest_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| v.contains(':'))
}

/// Hosts where plain HTTP is allowed: 127.0.0.1 and localhost (any port).
pub fn is_loopback(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    name == "127.0.0.1" || name == "localhost"
}
