//! Amazon EKS access: the cluster's endpoint and CA (eks:DescribeCluster) and the bearer token gantry signs itself, as `aws eks get-token` does.
//!
//! The token is a SigV4 presigned `sts:GetCallerIdentity` URL carrying the signed header
//! `x-k8s-aws-id: <cluster>`; the cluster's authenticator replays it to STS to learn who is
//! calling. A URL is valid for 15 minutes; [`presigned_token`] is pure (credentials and time
//! given), [`TokenSource`] makes fresh ones from the SDK's credential chain.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sdk_eks::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use base64::Engine as _;

/// Prefix of every EKS bearer token.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// The header naming the cluster inside the signed URL.
pub const CLUSTER_ID_HEADER: &str = "x-k8s-aws-id";
/// `X-Amz-Expires` of the presigned URL, as aws-iam-authenticator sets it.
const URL_EXPIRES: Duration = Duration::from_secs(60);
/// How long gantry uses one token: EKS accepts it for 15 minutes; one minute is kept spare.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(14 * 60);

/// Why an EKS call or token failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no AWS region is configured for the EKS cluster `{cluster}`; set `aws-region` (or AWS_REGION)")]
    NoRegion { cluster: String },
    #[error("no AWS credentials are available to reach the EKS cluster `{cluster}`; configure them (aws-actions/configure-aws-credentials)")]
    NoCredentials { cluster: String },
    #[error("could not load AWS credentials for the EKS cluster `{cluster}`: {message}")]
    Credentials { cluster: String, message: String },
    #[error("could not sign the EKS token for the cluster `{cluster}`: {message}")]
    Sign { cluster: String, message: String },
    #[error("the EKS cluster `{cluster}` was not found in the region {region}; check `eks-cluster-name` and `aws-region`")]
    NotFound { cluster: String, region: String },
    #[error("could not describe the EKS cluster `{cluster}` in {region}: {message}; the AWS role needs eks:DescribeCluster")]
    Describe {
        cluster: String,
        region: String,
        message: String,
    },
    #[error("the EKS cluster `{cluster}` in {region} is {status}, not ACTIVE; wait until it is ACTIVE and run again")]
    NotActive {
        cluster: String,
        region: String,
        status: String,
    },
    #[error("the EKS cluster `{cluster}` in {region} reported no {field}")]
    Incomplete {
        cluster: String,
        region: String,
        field: &'static str,
    },
    #[error("could not find who the AWS credentials belong to (sts:GetCallerIdentity): {0}")]
    Identity(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An EKS bearer token; its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct EksToken {
    /// `k8s-aws-v1.` + base64url (no padding) of the presigned URL.
    pub value: String,
    /// When gantry stops using it (one minute before EKS would refuse it).
    pub expires: SystemTime,
}

impl fmt::Debug for EksToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EksToken")
            .field("value", &"***")
            .field("expires", &self.expires)
            .finish()
    }
}

/// The STS host of a region (`.amazonaws.com.cn` in the China partition).
fn sts_host(region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("sts.{region}.{suffix}")
}

/// RFC 3986 percent-encoding of everything but the unreserved characters, as SigV4 wants.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Signs the token for `cluster_name` at `now`: a pure function of its arguments.
///
/// The URL's parameters are in the order botocore writes them (operation, then
/// `X-Amz-*`, the security token when the credentials carry one, the signature last), so
/// the token is byte-for-byte what `aws eks get-token` makes for the same inputs.
pub fn presigned_token(
    credentials: &Credentials,
    region: &str,
    cluster_name: &str,
    now: SystemTime,
) -> Result<EksToken> {
    let sign_error = |message: String| Error::Sign {
        cluster: cluster_name.to_string(),
        message,
    };
    let base = format!(
        "https://{}/?Action=GetCallerIdentity&Version=2011-06-15",
        sts_host(region)
    );
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(URL_EXPIRES);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|err| sign_error(err.to_string()))?
        .into();
    let request = SignableRequest::new(
        "GET",
        base.as_str(),
        std::iter::once((CLUSTER_ID_HEADER, cluster_name)),
        // botocore signs the hash of the empty body (SigV4QueryAuth keeps SigV4Auth's payload).
        SignableBody::Bytes(&[]),
    )
    .map_err(|err| sign_error(err.to_string()))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|err| sign_error(err.to_string()))?
        .into_parts();
    let (_headers, query) = instructions.into_parts();
    let mut url = base;
    let mut signature: Option<Cow<'static, str>> = None;
    for (name, value) in query {
        if name == "X-Amz-Signature" {
            signature = Some(value);
            continue;
        }
        url.push('&');
        url.push_str(&encode(name));
        url.push('=');
        url.push_str(&encode(&value));
    }
    let signature = signature.ok_or_else(|| sign_error("no signature was made".to_string()))?;
    url.push_str("&X-Amz-Signature=");
    url.push_str(&signature);
    Ok(EksToken {
        value: format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url)
        ),
        expires: now + TOKEN_LIFETIME,
    })
}

/// Makes fresh tokens for one cluster from a credential provider (the SDK chain, or fixed
/// credentials in tests).
#[derive(Clone, Debug)]
pub struct TokenSource {
    credentials: SharedCredentialsProvider,
    region: String,
    cluster_name: String,
    refresh_every: Duration,
}

impl TokenSource {
    /// Tokens are remade every 10 minutes (or sooner, as their expiry requires) by default.
    pub fn new(
        credentials: impl ProvideCredentials + 'static,
        region: impl Into<String>,
        cluster_name: impl Into<String>,
    ) -> TokenSource {
        TokenSource {
            credentials: SharedCredentialsProvider::new(credentials),
            region: region.into(),
            cluster_name: cluster_name.into(),
            refresh_every: Duration::from_secs(10 * 60),
        }
    }

    /// Remakes tokens at most this far apart (tests use seconds).
    pub fn refresh_every(mut self, interval: Duration) -> TokenSource {
        self.refresh_every = interval;
        self
    }

    pub fn cluster_name(&self) -> &str {
        &self.cluster_name
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// A new token signed now with the provider's current credentials.
    pub async fn token(&self) -> Result<EksToken> {
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|err| Error::Credentials {
                cluster: self.cluster_name.clone(),
                message: DisplayErrorContext(&err).to_string(),
            })?;
        presigned_token(
            &credentials,
            &self.region,
            &self.cluster_name,
            SystemTime::now(),
        )
    }

    /// How long to wait before making the next token: the interval, or sooner so that a
    /// client caching the current token for up to `reload_lag` never sends it expired.
    pub fn next_refresh(
        &self,
        token: &EksToken,
        now: SystemTime,
        reload_lag: Duration,
    ) -> Duration {
        let left = token
            .expires
            .duration_since(now)
            .unwrap_or_default()
            .saturating_sub(reload_lag);
        self.refresh_every.min(left).max(Duration::from_secs(1))
    }
}

/// Where the AWS clients go: the region and an endpoint override (moto in tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsAccess {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

impl AwsAccess {
    /// `aws-region` and `aws-endpoint-url` of the validated configuration.
    pub fn from_build(build: &crate::config::BuildConfig) -> AwsAccess {
        AwsAccess {
            region: build.aws_region.clone(),
            endpoint_url: build.aws_endpoint_url.clone(),
        }
    }
}

/// What gantry needs of a cluster to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EksCluster {
    pub name: String,
    pub region: String,
    /// The API server, `https://...`.
    pub endpoint: String,
    /// The cluster CA as EKS gives it: base64 of the PEM.
    pub certificate_authority: String,
    pub status: String,
}

impl EksCluster {
    /// Checks what DescribeCluster answered: the cluster must be ACTIVE with an endpoint and a CA.
    pub fn from_described(
        name: &str,
        region: &str,
        status: Option<&str>,
        endpoint: Option<&str>,
        certificate_authority: Option<&str>,
    ) -> Result<EksCluster> {
        let incomplete = |field| Error::Incomplete {
            cluster: name.to_string(),
            region: region.to_string(),
            field,
        };
        let status = status.unwrap_or("in an unknown status");
        if status != "ACTIVE" {
            return Err(Error::NotActive {
                cluster: name.to_string(),
                region: region.to_string(),
                status: status.to_string(),
            });
        }
        let endpoint = endpoint
            .filter(|e| !e.is_empty())
            .ok_or_else(|| incomplete("API endpoint"))?;
        let certificate_authority = certificate_authority
            .filter(|c| !c.is_empty())
            .ok_or_else(|| incomplete("certificate authority"))?;
        Ok(EksCluster {
            name: name.to_string(),
            region: region.to_string(),
            endpoint: endpoint.to_string(),
            certificate_authority: certificate_authority.to_string(),
            status: status.to_string(),
        })
    }
}

/// EKS and STS clients sharing one SDK configuration.
#[derive(Debug, Clone)]
pub struct Eks {
    eks: aws_sdk_eks::Client,
    sts: aws_sdk_sts::Client,
    credentials: Option<SharedCredentialsProvider>,
    region: Option<String>,
}

impl Eks {
    /// Loads the standard credential chain with the region and endpoint override of `aws`.
    pub async fn connect(aws: &AwsAccess) -> Eks {
        let shared = super::ecr::aws_loader(aws.region.as_deref(), aws.endpoint_url.as_deref())
            .load()
            .await;
        Eks {
            eks: aws_sdk_eks::Client::new(&shared),
            sts: aws_sdk_sts::Client::new(&shared),
            credentials: shared.credentials_provider(),
            region: shared.region().map(|r| r.to_string()),
        }
    }

    /// The region the clients use, if any is configured.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    fn require_region(&self, cluster: &str) -> Result<String> {
        self.region.clone().ok_or_else(|| Error::NoRegion {
            cluster: cluster.to_string(),
        })
    }

    /// Endpoint, CA and status of the cluster; an error unless it is ACTIVE.
    pub async fn describe_cluster(&self, name: &str) -> Result<EksCluster> {
        let region = self.require_region(name)?;
        let out = self
            .eks
            .describe_cluster()
            .name(name)
            .send()
            .await
            .map_err(|err| {
                if err.code() == Some("ResourceNotFoundException") {
                    Error::NotFound {
                        cluster: name.to_string(),
                        region: region.clone(),
                    }
                } else {
                    Error::Describe {
                        cluster: name.to_string(),
                        region: region.clone(),
                        message: DisplayErrorContext(&err).to_string(),
                    }
                }
            })?;
        let cluster = out.cluster().ok_or_else(|| Error::NotFound {
            cluster: name.to_string(),
            region: region.clone(),
        })?;
        EksCluster::from_described(
            name,
            &region,
            cluster.status().map(|s| s.as_str()),
            cluster.endpoint(),
            cluster.certificate_authority().and_then(|c| c.data()),
        )
    }

    /// The ARN of the caller (sts:GetCallerIdentity): who the cluster will see.
    pub async fn caller_arn(&self) -> Result<String> {
        let out = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|err| Error::Identity(DisplayErrorContext(&err).to_string()))?;
        out.arn()
            .map(str::to_string)
            .ok_or_else(|| Error::Identity("the answer named no ARN".to_string()))
    }

    /// A token source for the cluster using this configuration's credentials and region.
    pub fn token_source(&self, cluster_name: &str) -> Result<TokenSource> {
        let region = self.require_region(cluster_name)?;
        let credentials = self
            .credentials
            .clone()
            .ok_or_else(|| Error::NoCredentials {
                cluster: cluster_name.to_string(),
            })?;
        Ok(TokenSource::new(credentials, region, cluster_name))
    }
}
