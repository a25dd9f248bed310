//! Amazon ECR through aws-sdk-ecr: the account (STS), repositories (describe, create with tag immutability and scan-on-push) and the authorization token.
//!
//! Credentials come from the SDK's standard chain (the OIDC role that
//! aws-actions/configure-aws-credentials exports, environment keys, profiles); an endpoint
//! override points both clients elsewhere (moto in tests).

use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ecr::types::{ImageScanningConfiguration, ImageTagMutability};

/// Why an ECR call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not find the AWS account of the current credentials (sts:GetCallerIdentity): {0}; configure AWS credentials (aws-actions/configure-aws-credentials) or set `registry` to the account id")]
    Account(String),
    #[error("the ECR repository `{0}` does not exist and create-repository is false; create it (e.g. with Terraform) or set create-repository: true")]
    Missing(String),
    #[error("could not look up the ECR repository `{name}`: {message}")]
    Describe { name: String, message: String },
    #[error("could not create the ECR repository `{name}`: {message}")]
    Create { name: String, message: String },
    #[error("could not get an ECR authorization token: {0}; the AWS role needs ecr:GetAuthorizationToken")]
    Token(String),
    #[error("ECR returned no authorization token")]
    NoToken,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether a repository was there already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepositoryState {
    Existed,
    Created,
}

/// How a repository is created when it is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateSettings {
    pub tag_immutability: bool,
    pub scan_on_push: bool,
}

/// The AWS SDK's standard configuration (credential chain, region) with `region` and
/// `endpoint` overrides, over an HTTPS client on rustls with ring: the one TLS backend gantry
/// compiles (the SDK's default client would add aws-lc-rs).
pub fn aws_loader(region: Option<&str>, endpoint: Option<&str>) -> aws_config::ConfigLoader {
    use aws_smithy_http_client::tls;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_string()));
    }
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader
}

/// ECR and STS clients sharing one SDK configuration.
#[derive(Debug, Clone)]
pub struct Ecr {
    ecr: aws_sdk_ecr::Client,
    sts: aws_sdk_sts::Client,
}

impl Ecr {
    /// Loads the standard credential chain; `region` overrides the environment's region and
    /// `endpoint` every service endpoint.
    pub async fn connect(region: Option<&str>, endpoint: Option<&str>) -> Ecr {
        let shared = aws_loader(region, endpoint).load().await;
        Ecr {
            ecr: aws_sdk_ecr::Client::new(&shared),
            sts: aws_sdk_sts::Client::new(&shared),
        }
    }

    /// The region the clients use, if any is configured.
    pub fn region(&self) -> Option<String> {
        self.ecr.config().region().map(|r| r.to_string())
    }

    /// The 12-digit account of the current credentials.
    pub async fn account_id(&self) -> Result<String> {
        let out = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|err| Error::Account(DisplayErrorContext(&err).to_string()))?;
        out.account()
            .map(str::to_string)
            .ok_or_else(|| Error::Account("the answer named no account".to_string()))
    }

    /// Makes sure the repository exists, creating it when `create` is given.
    pub async fn ensure_repository(
        &self,
        registry_id: Option<&str>,
        name: &str,
        create: Option<CreateSettings>,
    ) -> Result<RepositoryState> {
        let described = self
            .ecr
            .describe_repositories()
            .set_registry_id(registry_id.map(String::from))
            .repository_names(name)
            .send()
            .await;
        match described {
            Ok(_) => return Ok(RepositoryState::Existed),
            Err(err) if err.code() == Some("RepositoryNotFoundException") => {}
            Err(err) => {
                return Err(Error::Describe {
                    name: name.to_string(),
                    message: DisplayErrorContext(&err).to_string(),
                })
            }
        }
        let Some(settings) = create else {
            return Err(Error::Missing(name.to_string()));
        };
        let mutability = if settings.tag_immutability {
            ImageTagMutability::Immutable
        } else {
            ImageTagMutability::Mutable
        };
        let created = self
            .ecr
            .create_repository()
            .set_registry_id(registry_id.map(String::from))
            .repository_name(name)
            .image_tag_mutability(mutability)
            .image_scanning_configuration(
                ImageScanningConfiguration::builder()
                    .scan_on_push(settings.scan_on_push)
                    .build(),
            )
            .send()
            .await;
        match created {
            Ok(_) => Ok(RepositoryState::Created),
            // Created by a concurrent run in the meantime.
            Err(err) if err.code() == Some("RepositoryAlreadyExistsException") => {
                Ok(RepositoryState::Existed)
            }
            Err(err) => Err(Error::Create {
                name: name.to_string(),
                message: DisplayErrorContext(&err).to_string(),
            }),
        }
    }

    /// The base64 authorization token of the registry (`AWS:<password>` once decoded).
    pub async fn authorization_token(&self, registry_id: Option<&str>) -> Result<String> {
        #[allow(deprecated)]
        let out = self
            .ecr
            .get_authorization_token()
            .set_registry_ids(registry_id.map(|id| vec![id.to_string()]))
            .send()
            .await
            .map_err(|err| Error::Token(DisplayErrorContext(&err).to_string()))?;
        out.authorization_data()
            .iter()
            .find_map(|data| data.authorization_token().map(str::to_string))
            .ok_or(Error::NoToken)
    }

    /// Settings of an existing repository: (tag immutability, scan on push).
    pub async fn repository_settings(&self, name: &str) -> Result<(bool, bool)> {
        let out = self
            .ecr
            .describe_repositories()
            .repository_names(name)
            .send()
            .await
            .map_err(|err| Error::Describe {
                name: name.to_string(),
                message: DisplayErrorContext(&err).to_string(),
            })?;
        let repo = out
            .repositories()
            .first()
            .ok_or_else(|| Error::Missing(name.to_string()))?;
        Ok((
            repo.image_tag_mutability() == Some(&ImageTagMutability::Immutable),
            repo.image_scanning_configuration()
                .is_some_and(|c| c.scan_on_push()),
        ))
    }
}

/// ECR clients by region, each made on first use (an image's ECR host names its own region).
#[derive(Debug)]
pub struct EcrClients {
    endpoint: Option<String>,
    clients: std::collections::HashMap<Option<String>, Ecr>,
}

impl EcrClients {
    /// No client yet; `endpoint` overrides every service endpoint of the clients made later.
    pub fn new(endpoint: Option<&str>) -> EcrClients {
        EcrClients {
            endpoint: endpoint.map(str::to_string),
            clients: Default::default(),
        }
    }

    /// The client for `region` (`None`: the SDK's configured region).
    pub async fn region(&mut self, region: Option<&str>) -> &Ecr {
        let key = region.map(str::to_string);
        if !self.clients.contains_key(&key) {
            let client = Ecr::connect(region, self.endpoint.as_deref()).await;
            self.clients.insert(key.clone(), client);
        }
        &self.clients[&key]
    }
}
