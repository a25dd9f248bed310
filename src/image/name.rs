//! Image references as registries address them (`[host[:port]/]path[:tag][@digest]`), parsed with Docker's rules in one place; and the syntax rules of repositories, hosts and tags.
//!
//! Design note: every part of gantry that reads an image reference (the `repository` input,
//! a Terraform output naming a repository, the images in manifests, the pre-flight's registry
//! lookups) splits it here, so `localhost/api`, `127.0.0.1:5000/shop/api:abc` and `nginx` mean
//! the same thing everywhere.

/// Where an image's repository comes from, as the `images` input gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryRef {
    /// An ECR repository name (`team/backend`) or a full repository URI (`host/path`).
    Literal(String),
    /// `${tf.NAME}`: the value of the infra phase's Terraform output NAME.
    TerraformOutput(String),
}

/// Splits `host/path` into its host and path: the first component is a host when it has a
/// `.` or a `:` or is `localhost` (Docker's rule); a plain name (`team/backend`) has none.
pub fn split_host(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

/// Splits a reference into its name, tag and digest, without normalising anything; `None`
/// when it is empty, has whitespace, an empty tag or a digest without an algorithm.
pub fn split_reference(image: &str) -> Option<(&str, Option<&str>, Option<&str>)> {
    if image.is_empty() || image.contains(char::is_whitespace) {
        return None;
    }
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) if digest.contains(':') => (rest, Some(digest)),
        Some(_) => return None,
        None => (image, None),
    };
    // A colon after the last slash is a tag; before it, a registry port.
    let (name, tag) = match rest.rfind(':') {
        Some(colon) if !rest[colon..].contains('/') => (&rest[..colon], Some(&rest[colon + 1..])),
        _ => (rest, None),
    };
    if name.is_empty() || tag == Some("") {
        return None;
    }
    Some((name, tag, digest))
}

/// The repository of an image reference as written: without its `:tag` and `@digest`.
pub fn repository_of(image: &str) -> &str {
    split_reference(image).map_or(image, |(name, _, _)| name)
}

/// An image reference split the way registries address it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName {
    /// Registry host as written (`docker.io` for Docker Hub short names).
    pub host: String,
    /// Repository path (`library/nginx` for Docker Hub official images).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageName {
    /// Parses a reference with Docker's normalisation: no host means Docker Hub, a one-part
    /// Hub name is under `library/`, and neither tag nor digest means `latest`.
    pub fn parse(image: &str) -> Option<ImageName> {
        let (name, tag, digest) = split_reference(image.trim())?;
        let (host, path) = split_host(name);
        let repository = match host {
            None if !path.contains('/') => format!("library/{path}"),
            _ => path.to_string(),
        };
        Some(ImageName {
            host: host.unwrap_or("docker.io").to_string(),
            repository,
            tag: match (tag, digest) {
                (None, None) => Some("latest".into()),
                (tag, _) => tag.map(str::to_string),
            },
            digest: digest.map(str::to_string),
        })
    }

    /// `host/repository@digest`, the pinned form.
    pub fn pinned(&self, digest: &str) -> String {
        format!("{}/{}@{digest}", self.host, self.repository)
    }

    /// The host the v2 API is served on (Docker Hub's differs from its name).
    pub fn api_host(&self) -> &str {
        if self.host == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.host
        }
    }
}

/// An image tag as the OCI distribution spec allows it.
pub fn is_tag(tag: &str) -> bool {
    (1..=128).contains(&tag.len())
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A registry host with an optional port (`127.0.0.1:5000`, `123.dkr.ecr.eu-west-1.amazonaws.com`).
pub fn is_registry_host(text: &str) -> bool {
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok
        && !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Checks a repository given as an ECR name (`team/backend`) or a full URI (`host/team/backend`)
/// against ECR's naming rules: 2 to 256 characters of lower-case letters, digits and `._-/`
/// with each path component starting and ending with a letter or digit.
pub fn check_repository(text: &str) -> Result<(), String> {
    let path = match split_host(text) {
        (Some(host), _) if !is_registry_host(host) => {
            return Err(format!(
                "`repository` `{text}` has an invalid registry host `{host}`"
            ));
        }
        (_, path) => path,
    };
    let component_ok = |component: &str| {
        let bytes = component.as_bytes();
        !bytes.is_empty()
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
            && bytes.iter().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            && !component.contains("..")
    };
    if (2..=256).contains(&path.len()) && path.split('/').all(component_ok) {
        Ok(())
    } else {
        Err(format!(
            "`repository` `{text}` breaks ECR's naming rules: 2 to 256 lower-case letters, digits, `.`, `_`, `-` and `/`, each part starting and ending with a letter or digit (e.g. team/backend)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_like_docker() {
        type Row<'a> = (
            &'a str,
            Option<(&'a str, &'a str, Option<&'a str>, Option<&'a str>)>,
        );
        let table: [Row; 10] = [
            (
                "nginx",
                Some(("docker.io", "library/nginx", Some("latest"), None)),
            ),
            (
                "nginx:1.27",
                Some(("docker.io", "library/nginx", Some("1.27"), None)),
            ),
            (
                "team/api:v1",
                Some(("docker.io", "team/api", Some("v1"), None)),
            ),
            (
                "127.0.0.1:5000/shop/api:abc",
                Some(("127.0.0.1:5000", "shop/api", Some("abc"), None)),
            ),
            (
                "localhost/api",
                Some(("localhost", "api", Some("latest"), None)),
            ),
            (
                "1.dkr.ecr.eu-west-1.amazonaws.com/api@sha256:ab",
                Some((
                    "1.dkr.ecr.eu-west-1.amazonaws.com",
                    "api",
                    None,
                    Some("sha256:ab"),
                )),
            ),
            (
                "reg.io/a:t@sha256:cd",
                Some(("reg.io", "a", Some("t"), Some("sha256:cd"))),
            ),
            ("bad image", None),
            ("api@nodigest", None),
            ("api:", None),
        ];
        for (text, expected) in table {
            let parsed = ImageName::parse(text);
            let parts = parsed.as_ref().map(|p| {
                (
                    p.host.as_str(),
                    p.repository.as_str(),
                    p.tag.as_deref(),
                    p.digest.as_deref(),
                )
            });
            assert_eq!(parts, expected, "{text}");
        }
        assert_eq!(
            ImageName::parse("nginx").unwrap().api_host(),
            "registry-1.docker.io"
        );
        assert_eq!(
            ImageName::parse("reg.io:5000/a:t")
                .unwrap()
                .pinned("sha256:ef"),
            "reg.io:5000/a@sha256:ef"
        );
    }

    #[test]
    fn repositories_are_found_behind_tags_digests_and_ports() {
        for (image, repository) in [
            ("127.0.0.1:5000/shop/api:v1", "127.0.0.1:5000/shop/api"),
            (
                "127.0.0.1:5000/shop/api@sha256:ab",
                "127.0.0.1:5000/shop/api",
            ),
            (
                "127.0.0.1:5000/shop/api:v1@sha256:ab",
                "127.0.0.1:5000/shop/api",
            ),
            ("127.0.0.1:5000/shop/api", "127.0.0.1:5000/shop/api"),
            ("nginx", "nginx"),
        ] {
            assert_eq!(repository_of(image), repository, "{image}");
        }
        assert_eq!(split_host("team/backend"), (None, "team/backend"));
        assert_eq!(split_host("localhost/api"), (Some("localhost"), "api"));
        assert_eq!(
            split_host("1.dkr.ecr.eu-west-1.amazonaws.com/a/b"),
            (Some("1.dkr.ecr.eu-west-1.amazonaws.com"), "a/b")
        );
    }

    #[test]
    fn tags_and_hosts() {
        assert!(is_tag("0123abc"));
        assert!(is_tag("v1.2.3_rc-1"));
        assert!(!is_tag(".hidden"));
        assert!(!is_tag("-x"));
        assert!(!is_tag(&"a".repeat(129)));
        assert!(is_registry_host("127.0.0.1:5443"));
        assert!(is_registry_host("registry.example.com"));
        assert!(!is_registry_host("https://registry.example.com"));
        assert!(!is_registry_host("host:port"));
        assert!(!is_registry_host("host/path"));
    }

    #[test]
    fn repository_names_follow_ecr_rules() {
        for good in [
            "backend",
            "team/backend",
            "team-a/svc.api_v2",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/backend",
            "127.0.0.1:5000/demo/frontend",
            "localhost/x1",
        ] {
            assert!(check_repository(good).is_ok(), "{good}");
        }
        for bad in [
            "B",
            "Team/backend",
            "team//backend",
            "-team/x",
            "team/x-",
            "a",
            "team/ba..ck",
            "bad host:x/a/b",
        ] {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
    }
}
