//! How each registry host is reached: an Amazon ECR token (account and region taken from the host where it names them), the given registry credentials, or anonymously.
//!
//! Design note: the inputs `registry`, `registry-endpoint`, `registry-username` and
//! `aws-endpoint-url` together say whether the build talks to ECR at all. The rule, in order:
//! 1. `registry-username` given: every host is a plain OCI registry reached with those
//!    credentials;
//! 2. `registry` names a host that is not ECR: a plain OCI registry, reached anonymously;
//! 3. `registry-endpoint` names a host that is not ECR and no `aws-endpoint-url` is set: also a
//!    plain OCI registry (with `aws-endpoint-url` the ECR API lives there and pushes go to the
//!    endpoint: the set-up of tests and of ECR stand-ins such as moto or LocalStack);
//! 4. otherwise ECR: every `<account>.dkr.ecr.<region>.amazonaws.com` host gets a token of its
//!    own account in its own region, the endpoint override the token of `registry` (an account
//!    id) in `aws-region`, and any other host (a public base registry) is reached anonymously.

/// The inputs that decide how registries are reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryInputs<'a> {
    /// `registry`: a 12-digit account id or a registry host.
    pub registry: Option<&'a str>,
    /// `registry-endpoint`: where pushes go instead.
    pub endpoint: Option<&'a str>,
    /// `registry-username`.
    pub username: Option<&'a str>,
    /// `aws-endpoint-url`.
    pub aws_endpoint_url: Option<&'a str>,
    /// `aws-region`.
    pub aws_region: Option<&'a str>,
}

/// Where the credentials for one registry host come from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Credential {
    /// An ECR authorization token for `account` (`None`: the AWS credentials' own account) from
    /// the ECR API in `region` (`None`: the AWS SDK's configured region).
    Ecr {
        account: Option<String>,
        region: Option<String>,
    },
    /// `registry-username` and `registry-password`.
    Given,
    /// No credentials (a registry that allows anonymous pulls and pushes, or a public base).
    Anonymous,
}

impl RegistryInputs<'_> {
    /// `registry` when it is an account id.
    pub fn account(&self) -> Option<&str> {
        self.registry
            .filter(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
    }

    /// `registry` when it is a host.
    pub fn registry_host(&self) -> Option<&str> {
        self.registry.filter(|_| self.account().is_none())
    }

    /// Whether ECR is used at all (rules 1 to 4 of the module doc).
    pub fn uses_ecr(&self) -> bool {
        if self.username.is_some() {
            return false;
        }
        if let Some(host) = self.registry_host() {
            return is_ecr_host(host);
        }
        match self.endpoint {
            Some(endpoint) => is_ecr_host(endpoint) || self.aws_endpoint_url.is_some(),
            None => true,
        }
    }

    /// How `host` is reached.
    pub fn credential_for(&self, host: &str) -> Credential {
        if self.username.is_some() {
            return Credential::Given;
        }
        if !self.uses_ecr() {
            return Credential::Anonymous;
        }
        if let Some((account, region)) = parse_ecr_host(host) {
            return Credential::Ecr {
                account: Some(account.to_string()),
                region: Some(region.to_string()),
            };
        }
        if self.endpoint == Some(host) {
            return Credential::Ecr {
                account: self.account().map(str::to_string),
                region: self.aws_region.map(str::to_string),
            };
        }
        Credential::Anonymous
    }
}

/// The ECR registry host of an account in a region.
pub fn ecr_host(account: &str, region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("{account}.dkr.ecr.{region}.{suffix}")
}

/// The account and region of an ECR host (`<account>.dkr.ecr.<region>.amazonaws.com`, also the
/// `.com.cn` partition and the FIPS form `dkr.ecr-fips`); `None` for any other host.
pub fn parse_ecr_host(host: &str) -> Option<(&str, &str)> {
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    let rest = name
        .strip_suffix(".amazonaws.com")
        .or_else(|| name.strip_suffix(".amazonaws.com.cn"))?;
    let mut parts = rest.split('.');
    let account = parts.next()?;
    let dkr = parts.next()?;
    let ecr = parts.next()?;
    let region = parts.next()?;
    let valid = account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && dkr == "dkr"
        && (ecr == "ecr" || ecr == "ecr-fips")
        && !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && parts.next().is_none();
    valid.then_some((account, region))
}

/// Whether a registry host is an Amazon ECR registry.
pub fn is_ecr_host(host: &str) -> bool {
    parse_ecr_host(host).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECR: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

    fn ecr(account: Option<&str>, region: Option<&str>) -> Credential {
        Credential::Ecr {
            account: account.map(str::to_string),
            region: region.map(str::to_string),
        }
    }

    #[test]
    fn ecr_hosts_are_parsed_with_account_and_region() {
        let table = [
            (ECR, Some(("123456789012", "eu-west-1"))),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                Some(("123456789012", "cn-north-1")),
            ),
            (
                "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
                Some(("123456789012", "us-east-1")),
            ),
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com:443",
                Some(("123456789012", "eu-west-1")),
            ),
            ("12345678901.dkr.ecr.eu-west-1.amazonaws.com", None),
            ("123456789012.dkr.ecr.amazonaws.com", None),
            ("123456789012.dkr.ecr.eu-west-1.example.com", None),
            ("123456789012.dkr.ecr.eu.west.1.amazonaws.com", None),
            ("public.ecr.aws", None),
            ("127.0.0.1:5000", None),
        ];
        for (host, want) in table {
            assert_eq!(parse_ecr_host(host), want, "{host}");
            assert_eq!(is_ecr_host(host), want.is_some(), "{host}");
        }
        assert_eq!(ecr_host("123456789012", "eu-west-1"), ECR);
        assert_eq!(
            ecr_host("123456789012", "cn-north-1"),
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn credentials_per_host_follow_the_inputs() {
        let base = RegistryInputs::default();
        let local = "127.0.0.1:5000";
        type Row<'a> = (&'a str, RegistryInputs<'a>, &'a str, bool, Credential);
        let table: Vec<Row> = vec![
            (
                "nothing set: ECR",
                base,
                ECR,
                true,
                ecr(Some("123456789012"), Some("eu-west-1")),
            ),
            (
                "the host's account and region win over the inputs",
                RegistryInputs {
                    registry: Some("999999999999"),
                    aws_region: Some("us-east-1"),
                    ..base
                },
                ECR,
                true,
                ecr(Some("123456789012"), Some("eu-west-1")),
            ),
            (
                "registry = ECR host",
                RegistryInputs {
                    registry: Some(ECR),
                    ..base
                },
                ECR,
                true,
                ecr(Some("123456789012"), Some("eu-west-1")),
            ),
            (
                "a public base in ECR mode is anonymous",
                base,
                "ghcr.io",
                true,
                Credential::Anonymous,
            ),
            (
                "username: every host with the given credentials",
                RegistryInputs {
                    username: Some("u"),
                    ..base
                },
                ECR,
                false,
                Credential::Given,
            ),
            (
                "registry = another host: anonymous OCI",
                RegistryInputs {
                    registry: Some("registry.example.com"),
                    ..base
                },
                "registry.example.com",
                false,
                Credential::Anonymous,
            ),
            (
                "endpoint alone: plain OCI registry",
                RegistryInputs {
                    endpoint: Some(local),
                    ..base
                },
                local,
                false,
                Credential::Anonymous,
            ),
            (
                "endpoint with an AWS endpoint: ECR API elsewhere, account from registry",
                RegistryInputs {
                    endpoint: Some(local),
                    aws_endpoint_url: Some("http://127.0.0.1:5050"),
                    registry: Some("123456789012"),
                    aws_region: Some("us-east-1"),
                    ..base
                },
                local,
                true,
                ecr(Some("123456789012"), Some("us-east-1")),
            ),
            (
                "endpoint with an AWS endpoint, no account: the credentials' own",
                RegistryInputs {
                    endpoint: Some(local),
                    aws_endpoint_url: Some("http://x"),
                    ..base
                },
                local,
                true,
                ecr(None, None),
            ),
            (
                "endpoint = ECR host",
                RegistryInputs {
                    endpoint: Some(ECR),
                    ..base
                },
                ECR,
                true,
                ecr(Some("123456789012"), Some("eu-west-1")),
            ),
        ];
        for (what, inputs, host, uses_ecr, want) in table {
            assert_eq!(inputs.uses_ecr(), uses_ecr, "{what}");
            assert_eq!(inputs.credential_for(host), want, "{what}");
        }
        let account = RegistryInputs {
            registry: Some("123456789012"),
            ..base
        };
        assert_eq!(account.account(), Some("123456789012"));
        assert_eq!(account.registry_host(), None);
        let host = RegistryInputs {
            registry: Some(ECR),
            ..base
        };
        assert_eq!(host.account(), None);
        assert_eq!(host.registry_host(), Some(ECR));
    }
}
