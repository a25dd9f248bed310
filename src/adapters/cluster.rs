//! The cluster connection: a `kube::Client` from a kubeconfig (file or inline) or from EKS with a self-refreshing token, and the reachability check.
//!
//! EKS tokens live 15 minutes and a rollout can take longer, so the EKS client reads its
//! bearer token from a private token file (kube reloads such a file at least once a minute)
//! that a background task rewrites with a fresh token well before the current one expires.
//! The task and the file live as long as the [`ClusterConnection`] (or any clone of it);
//! keep it while the client is in use. Every token is masked with `Runner::add_mask`
//! before it is written.
//!
//! Limit: kube builds its TLS config from rustls's process-level crypto provider, and the
//! dependency tree enables both `ring` and `aws-lc-rs`, so the process must install one
//! (`rustls::crypto::ring::default_provider().install_default()`) before [`connect`];
//! without it client construction panics inside rustls.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kube::config::{
    AuthInfo, Cluster, Context, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster,
    NamedContext,
};

use crate::adapters::eks::{self, AwsAccess, Eks, TokenSource};
use crate::adapters::runner::Runner;
use crate::config::ClusterAccess;

/// How long [`check_access`] waits for the API server.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(15);
/// kube reloads a token file once it is 50 s old; a token is replaced this long before it
/// expires so the client never holds an expired one.
const TOKEN_RELOAD_LAG: Duration = Duration::from_secs(70);
/// Wait before retrying a token that could not be made.
const TOKEN_RETRY: Duration = Duration::from_secs(15);

/// Why the cluster could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no cluster access is configured; set `kubeconfig` or `eks-cluster-name`")]
    NotConfigured,
    #[error("could not read the kubeconfig {path}: {source}")]
    ReadKubeconfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `message` is the parser's first line, redacted: the text may hold credentials.
    #[error("the {origin} is not a valid kubeconfig (YAML or JSON): {message}")]
    ParseKubeconfig { origin: String, message: String },
    #[error("the {origin} has no current context; set `current-context` in it")]
    NoContext { origin: String },
    #[error("cannot use the current context of the {origin}: {source}")]
    KubeconfigContext {
        origin: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "the certificate authority of the EKS cluster `{cluster}` is not a base64 PEM certificate"
    )]
    CaCertificate { cluster: String },
    #[error("the API server address `{server}` is not a valid URL")]
    ServerUrl { server: String },
    #[error("could not set up a client for {server}: {source}")]
    Client {
        server: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Eks(#[from] eks::Error),
    #[error("could not write the EKS token file in {dir}: {source}")]
    TokenFile {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach the cluster API at {server}: {message}; check the address, the network path from the runner and that the cluster is running")]
    Unreachable { server: String, message: String },
    #[error("the cluster API at {server} did not answer within {}s; check the network path from the runner (private endpoint? security groups?)", timeout.as_secs())]
    Timeout { server: String, timeout: Duration },
    #[error("the cluster rejected the credentials of {identity}: {message}; {hint}")]
    Unauthorized {
        identity: String,
        message: String,
        hint: &'static str,
    },
    #[error("the cluster denied {identity} access: {message}; grant it read access to the API discovery endpoints (e.g. the system:discovery role) and the rights the deployment needs in its namespaces")]
    Forbidden { identity: String, message: String },
    #[error("the cluster API at {server} answered {code}: {message}")]
    Unexpected {
        server: String,
        code: u16,
        message: String,
    },
}

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

/// How the identity of a rejected request is explained.
const KUBECONFIG_401_HINT: &str =
    "check that the kubeconfig's token or certificate is current for this cluster";
const EKS_401_HINT: &str = "for EKS the IAM role needs an access entry on the cluster (aws_eks_access_entry with an access policy association; see terraform/ in the gantry repository) or a mapping in the aws-auth ConfigMap, and the token must be signed for this cluster name and region";

/// A client for the cluster and what is needed to explain failures.
#[derive(Clone)]
pub struct ClusterConnection {
    pub client: kube::Client,
    /// The API server address.
    pub server: String,
    /// Who gantry authenticates as: the kubeconfig user and context, or the AWS caller ARN.
    pub identity: String,
    /// The current context's namespace, when the kubeconfig names one.
    pub default_namespace: Option<String>,
    /// What the client sends, counted.
    pub traffic: Arc<super::kube_http::Traffic>,
    eks: bool,
    _refresher: Option<Arc<TokenRefresher>>,
}

impl std::fmt::Debug for ClusterConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConnection")
            .field("server", &self.server)
            .field("identity", &self.identity)
            .field("default_namespace", &self.default_namespace)
            .finish_non_exhaustive()
    }
}

/// Chooses rustls's `ring` backend for the whole process. Both of rustls's backends are
/// compiled in (kube asks for ring, the AWS SDK for aws-lc-rs), and then rustls cannot pick
/// one by itself; kube's client needs the process default. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Connects as the configuration says; no request is made yet (see [`check_access`]).
pub async fn connect(
    access: &ClusterAccess,
    aws: &AwsAccess,
    runner: &Runner,
) -> Result<ClusterConnection> {
    install_crypto_provider();
    match access {
        ClusterAccess::KubeconfigFile(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| ClusterError::ReadKubeconfig {
                    path: path.clone(),
                    source,
                })?;
            mask_kubeconfig_secrets(&text, runner);
            let origin = format!("kubeconfig {}", path.display());
            // read_from resolves certificate paths relative to the file.
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|source| parse_error(&origin, &source, runner))?;
            from_kubeconfig(kubeconfig, &origin).await
        }
        ClusterAccess::KubeconfigContent(secret) => {
            let text = secret.expose();
            runner.add_mask(text);
            mask_kubeconfig_secrets(text, runner);
            let origin = "kubeconfig given inline".to_string();
            let kubeconfig = Kubeconfig::from_yaml(text)
                .map_err(|source| parse_error(&origin, &source, runner))?;
            from_kubeconfig(kubeconfig, &origin).await
        }
        ClusterAccess::Eks { cluster_name } => {
            let eks = Eks::connect(aws).await;
            let cluster = eks.describe_cluster(cluster_name).await?;
            let identity = eks.caller_arn().await?;
            let tokens = eks.token_source(cluster_name)?;
            connect_with_tokens(
                &cluster.endpoint,
                Some(&cluster.certificate_authority),
                tokens,
                &identity,
                runner,
            )
            .await
        }
        ClusterAccess::None => Err(ClusterError::NotConfigured),
    }
}

/// A parse error without the source excerpt kube's parser quotes (it may be a secret).
fn parse_error(
    origin: &str,
    source: &kube::config::KubeconfigError,
    runner: &Runner,
) -> ClusterError {
    let text = source.to_string();
    let first = text.lines().next().unwrap_or("unreadable");
    ClusterError::ParseKubeconfig {
        origin: origin.to_string(),
        message: runner.redact(first),
    }
}

/// Masks the credentials a kubeconfig carries (tokens, passwords, client keys).
fn mask_kubeconfig_secrets(text: &str, runner: &Runner) {
    let Ok(doc) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) else {
        return; // parsing reports the problem; nothing to mask in unreadable text
    };
    let users = doc.get("users").and_then(|u| u.as_sequence());
    for user in users.into_iter().flatten() {
        let Some(info) = user.get("user") else {
            continue;
        };
        for key in ["token", "password", "client-key-data"] {
            if let Some(value) = info.get(key).and_then(|v| v.as_str()) {
                runner.add_mask(value);
            }
        }
    }
}

/// A client for the kubeconfig's current context.
async fn from_kubeconfig(kubeconfig: Kubeconfig, origin: &str) -> Result<ClusterConnection> {
    let context_name = kubeconfig
        .current_context
        .clone()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ClusterError::NoContext {
            origin: origin.to_string(),
        })?;
    let context = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.clone());
    let user = context.as_ref().and_then(|c| c.user.clone());
    let default_namespace = context.as_ref().and_then(|c| c.namespace.clone());
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| ClusterError::KubeconfigContext {
            origin: origin.to_string(),
            source,
        })?;
    let server = config.cluster_url.to_string();
    let (client, traffic) =
        super::kube_http::client(config).map_err(|source| ClusterError::Client {
            server: server.clone(),
            source,
        })?;
    let identity = match user {
        Some(user) if !user.is_empty() => format!("user `{user}` (context `{context_name}`)"),
        _ => format!("context `{context_name}`"),
    };
    Ok(ClusterConnection {
        client,
        server: server.trim_end_matches('/').to_string(),
        identity,
        default_namespace,
        traffic,
        eks: false,
        _refresher: None,
    })
}

/// A client for `server` authenticating with EKS tokens from `tokens`, refreshed in the
/// background; `certificate_authority` is base64 of the PEM (as EKS gives it), `None` for
/// the system roots. `identity` names the caller in error messages.
pub async fn connect_with_tokens(
    server: &str,
    certificate_authority: Option<&str>,
    tokens: TokenSource,
    identity: &str,
    runner: &Runner,
) -> Result<ClusterConnection> {
    install_crypto_provider();
    let cluster_name = tokens.cluster_name().to_string();
    if let Some(ca) = certificate_authority {
        let pem = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, ca.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        if !pem.is_some_and(|p| p.contains("-----BEGIN CERTIFICATE-----")) {
            return Err(ClusterError::CaCertificate {
                cluster: cluster_name,
            });
        }
    }
    if server.parse::<http::Uri>().is_err() {
        return Err(ClusterError::ServerUrl {
            server: server.to_string(),
        });
    }
    let first = tokens.token().await?;
    let refresher = TokenRefresher::start(tokens, first, runner.clone())?;
    let kubeconfig = Kubeconfig {
        clusters: vec![NamedCluster {
            name: cluster_name.clone(),
            cluster: Some(Cluster {
                server: Some(server.to_string()),
                certificate_authority_data: certificate_authority.map(str::to_string),
                ..Cluster::default()
            }),
            other: Default::default(),
        }],
        auth_infos: vec![NamedAuthInfo {
            name: "gantry".to_string(),
            auth_info: Some(AuthInfo {
                token_file: Some(refresher.path.to_string_lossy().into_owned()),
                ..AuthInfo::default()
            }),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: cluster_name.clone(),
            context: Some(Context {
                cluster: cluster_name.clone(),
                user: Some("gantry".to_string()),
                ..Context::default()
            }),
            other: Default::default(),
        }],
        current_context: Some(cluster_name.clone()),
        ..Kubeconfig::default()
    };
    let origin = format!("connection to the EKS cluster `{cluster_name}`");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| ClusterError::KubeconfigContext { origin, source })?;
    let (client, traffic) =
        super::kube_http::client(config).map_err(|source| ClusterError::Client {
            server: server.to_string(),
            source,
        })?;
    Ok(ClusterConnection {
        client,
        server: server.trim_end_matches('/').to_string(),
        identity: identity.to_string(),
        default_namespace: None,
        traffic,
        eks: true,
        _refresher: Some(Arc::new(refresher)),
    })
}

/// Keeps the token file fresh; stops and removes the file when dropped.
struct TokenRefresher {
    dir: PathBuf,
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl TokenRefresher {
    fn start(tokens: TokenSource, first: eks::EksToken, runner: Runner) -> Result<TokenRefresher> {
        let dir = private_dir("gantry-eks")?;
        let path = dir.join("token");
        runner.add_mask(&first.value);
        write_token(&path, &first.value).map_err(|source| ClusterError::TokenFile {
            dir: dir.clone(),
            source,
        })?;
        let task_path = path.clone();
        let task = tokio::spawn(async move {
            let mut wait = tokens.next_refresh(&first, SystemTime::now(), TOKEN_RELOAD_LAG);
            loop {
                tokio::time::sleep(wait).await;
                wait = match tokens.token().await {
                    Ok(token) => {
                        runner.add_mask(&token.value);
                        if let Err(err) = write_token(&task_path, &token.value) {
                            runner.warning(&format!(
                                "could not renew the EKS token file {}: {err}",
                                task_path.display()
                            ));
                            TOKEN_RETRY
                        } else {
                            tokens.next_refresh(&token, SystemTime::now(), TOKEN_RELOAD_LAG)
                        }
                    }
                    Err(err) => {
                        runner.warning(&format!("could not renew the EKS token: {err}"));
                        TOKEN_RETRY
                    }
                };
            }
        });
        Ok(TokenRefresher { dir, path, task })
    }
}

impl Drop for TokenRefresher {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new directory only this user can read, under `RUNNER_TEMP` when set.
pub(crate) fn private_dir(prefix: &str) -> Result<PathBuf> {
    let base = std::env::var_os("RUNNER_TEMP")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let mut random = [0u8; 8];
    let _ = getrandom::getrandom(&mut random);
    let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let dir = base.join(format!("{prefix}-{}-{name}", std::process::id()));
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(&dir)
        .map_err(|source| ClusterError::TokenFile {
            dir: base.clone(),
            source,
        })?;
    Ok(dir)
}

/// Replaces the token file atomically, so a reader never sees half a token.
fn write_token(path: &Path, token: &str) -> std::io::Result<()> {
    let staging = path.with_extension("new");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(&staging)?, token.as_bytes())?;
    std::fs::rename(&staging, path)
}

/// Asks the API server for its version: proves the address, the TLS trust and the
/// credentials, with a short timeout.
pub async fn check_access(conn: &ClusterConnection) -> Result<ServerVersion> {
    check_access_within(conn, CHECK_TIMEOUT).await
}

/// The API server's release, as `/version` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    /// `v1.35.4`, `v1.32.9-eks-113cf36`.
    pub git_version: String,
    pub major: u32,
    pub minor: u32,
}

impl ServerVersion {
    /// Reads `/version`'s `major` and `minor` (EKS reports `minor: "32+"`).
    pub fn from_info(git_version: &str, major: &str, minor: &str) -> ServerVersion {
        let number = |text: &str| {
            text.trim_end_matches('+')
                .parse::<u32>()
                .unwrap_or_default()
        };
        ServerVersion {
            git_version: git_version.to_string(),
            major: number(major),
            minor: number(minor),
        }
    }

    /// A warning for API servers older than gantry supports: it relies on server-side apply,
    /// `apps/v1` and `batch/v1` workloads, Leases, access reviews and the rollout conditions of
    /// Kubernetes 1.28 or newer (tested on the release of the test bed).
    pub fn support_warning(&self) -> Option<String> {
        (self.major == 1 && self.minor < MIN_SUPPORTED_MINOR).then(|| {
            format!(
                "the cluster runs Kubernetes {}; gantry supports 1.{MIN_SUPPORTED_MINOR} and newer (tested on 1.35). Older API servers may reject or ignore what gantry relies on (server-side apply field ownership, rollout conditions); upgrade the cluster",
                self.git_version
            )
        })
    }
}

/// The oldest Kubernetes minor release gantry supports.
pub const MIN_SUPPORTED_MINOR: u32 = 28;

/// [`check_access`] with another timeout.
pub async fn check_access_within(
    conn: &ClusterConnection,
    timeout: Duration,
) -> Result<ServerVersion> {
    let answer = tokio::time::timeout(timeout, conn.client.apiserver_version()).await;
    let err = match answer {
        Ok(Ok(info)) => {
            return Ok(ServerVersion::from_info(
                &info.git_version,
                &info.major,
                &info.minor,
            ))
        }
        Ok(Err(err)) => err,
        Err(_) => {
            return Err(ClusterError::Timeout {
                server: conn.server.clone(),
                timeout,
            })
        }
    };
    Err(match err {
        kube::Error::Api(status) => {
            let message = if status.message.is_empty() {
                status.reason.clone()
            } else {
                status.message.clone()
            };
            match status.code {
                401 => ClusterError::Unauthorized {
                    identity: conn.identity.clone(),
                    message,
                    hint: if conn.eks {
                        EKS_401_HINT
                    } else {
                        KUBECONFIG_401_HINT
                    },
                },
                403 => ClusterError::Forbidden {
                    identity: conn.identity.clone(),
                    message,
                },
                code => ClusterError::Unexpected {
                    server: conn.server.clone(),
                    code,
                    message,
                },
            }
        }
        other => ClusterError::Unreachable {
            server: conn.server.clone(),
            message: crate::adapters::kube::error_chain(&other),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions_are_read_and_old_ones_warned_about() {
        let table = [
            ("v1.35.4", "1", "35", 35, false),
            ("v1.32.9-eks-113cf36", "1", "32+", 32, false),
            ("v1.28.0", "1", "28", 28, false),
            ("v1.27.16", "1", "27", 27, true),
            ("v1.21.0", "1", "21+", 21, true),
        ];
        for (git, major, minor, expected_minor, warned) in table {
            let version = ServerVersion::from_info(git, major, minor);
            assert_eq!(version.minor, expected_minor, "{git}");
            assert_eq!(version.support_warning().is_some(), warned, "{git}");
        }
        let warning = ServerVersion::from_info("v1.27.16", "1", "27")
            .support_warning()
            .unwrap();
        assert!(warning.contains("Kubernetes v1.27.16"), "{warning}");
        assert!(warning.contains("1.28 and newer"), "{warning}");
    }
}
