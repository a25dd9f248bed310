//! Registry authentication decisions: the `WWW-Authenticate` challenge (Bearer or Basic) and the ECR authorization token (`base64("AWS:<password>")`).

use base64::Engine;

/// Why a challenge or token cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the registry answered 401 with an authentication challenge gantry does not understand: `{0}`")]
    Challenge(String),
    #[error("the ECR authorization token is not base64 of `user:password`")]
    EcrToken,
}

/// Registry credentials (the password is masked by the caller before it exists here).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// What a registry asks for after a 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Fetch a token from `realm` (with `service` and `scope`), then send `Bearer <token>`.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    /// Send the credentials as `Basic` (ECR, htpasswd registries).
    Basic,
}

/// Parses a `WWW-Authenticate` header: `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`.
pub fn parse_challenge(header: &str) -> Result<Challenge, Error> {
    let header = header.trim();
    let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Ok(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Error::Challenge(header.to_string()));
    }
    let params = parse_params(params);
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    };
    let realm = get("realm").ok_or_else(|| Error::Challenge(header.to_string()))?;
    Ok(Challenge::Bearer {
        realm,
        service: get("service"),
        scope: get("scope"),
    })
}

/// `key="value", key2=value2` pairs; quoted values may hold commas and escaped quotes.
fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.trim().is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    other => value.push(other),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
        }
        out.push((key.trim().to_string(), value.trim().to_string()));
    }
}

/// The scope to ask a token for when reading a repository.
pub fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// Decodes an ECR authorization token into registry credentials (user `AWS`).
pub fn decode_ecr_token(token: &str) -> Result<Credentials, Error> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| Error::EcrToken)?;
    let text = String::from_utf8(bytes).map_err(|_| Error::EcrToken)?;
    let (username, password) = text.split_once(':').ok_or(Error::EcrToken)?;
    if username.is_empty() || password.is_empty() {
        return Err(Error::EcrToken);
    }
    Ok(Credentials {
        username: username.to_string(),
        password: password.to_string(),
    })
}

/// The `Authorization` value for Basic credentials.
pub fn basic_header(credentials: &Credentials) -> String {
    let raw = format!("{}:{}", credentials.username, credentials.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let table: &[(&str, Result<Challenge, ()>)] = &[
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/x:pull""#,
                Ok(Challenge::Bearer {
                    realm: "https://auth.docker.io/token".into(),
                    service: Some("registry.docker.io".into()),
                    scope: Some("repository:library/x:pull".into()),
                }),
            ),
            (
                r#"bearer realm="https://r/token", scope="repository:a:pull,push""#,
                Ok(Challenge::Bearer {
                    realm: "https://r/token".into(),
                    service: None,
                    scope: Some("repository:a:pull,push".into()),
                }),
            ),
            (
                r#"Basic realm="https://1.dkr.ecr.us-east-1.amazonaws.com/""#,
                Ok(Challenge::Basic),
            ),
            (r#"Basic realm="Registry Realm""#, Ok(Challenge::Basic)),
            ("Basic", Ok(Challenge::Basic)),
            (r#"Bearer service="x""#, Err(())),
            ("Negotiate abc", Err(())),
        ];
        for (header, want) in table {
            let got = parse_challenge(header).map_err(|_| ());
            assert_eq!(&got, want, "{header}");
        }
    }

    #[test]
    fn ecr_tokens() {
        let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let creds = decode_ecr_token(&encode("AWS:eyJwYXlsb2FkIjoi")).unwrap();
        assert_eq!(creds.username, "AWS");
        assert_eq!(creds.password, "eyJwYXlsb2FkIjoi");
        assert!(!format!("{creds:?}").contains("eyJ"));
        for bad in [
            encode("AWS"),
            encode("AWS:"),
            "%%%".to_string(),
            encode(":pw"),
        ] {
            assert_eq!(decode_ecr_token(&bad), Err(Error::EcrToken), "{bad}");
        }
        assert_eq!(
            basic_header(&creds),
            format!("Basic {}", encode("AWS:eyJwYXlsb2FkIjoi"))
        );
        assert_eq!(pull_scope("team/api"), "repository:team/api:pull");
    }
}
