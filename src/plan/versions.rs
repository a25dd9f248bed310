//! Which Terraform (or OpenTofu) version a configuration asks for: version constraints as Terraform reads them, `required_version`, `.terraform-version` and `.tool-versions`, and the choice between the bundled binary and a release to download.

use super::argv::Version;

/// One comparison of a constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    /// `~>`: the rightmost given part may grow.
    Pessimistic,
}

/// A version constraint (`>= 1.9, < 2.0`, `~> 1.9.0`, `1.9.5`), as Terraform reads
/// `required_version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    parts: Vec<(Op, Version, usize)>,
    text: String,
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Constraint {
    /// Parses a comma-separated constraint; the error names the part that is not one.
    pub fn parse(text: &str) -> Result<Constraint, String> {
        let mut parts = Vec::new();
        for part in text.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(format!("`{text}` has an empty part"));
            }
            let (op, rest) = [
                ("~>", Op::Pessimistic),
                (">=", Op::Ge),
                ("<=", Op::Le),
                ("!=", Op::Ne),
                (">", Op::Gt),
                ("<", Op::Lt),
                ("=", Op::Eq),
            ]
            .iter()
            .find_map(|(prefix, op)| part.strip_prefix(prefix).map(|rest| (*op, rest)))
            .unwrap_or((Op::Eq, part));
            let rest = rest.trim().trim_start_matches('v');
            if rest.contains('-') {
                return Err(format!(
                    "`{part}` names a pre-release; gantry runs released versions only"
                ));
            }
            let numbers: Vec<u64> = rest
                .split('.')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| {
                    format!(
                        "`{part}` is not a version constraint (e.g. `>= 1.9`, `~> 1.9.0`, `1.9.5`)"
                    )
                })?;
            if numbers.is_empty() || numbers.len() > 3 {
                return Err(format!("`{part}` is not a version constraint"));
            }
            let given = numbers.len();
            let version = Version {
                major: numbers[0],
                minor: numbers.get(1).copied().unwrap_or(0),
                patch: numbers.get(2).copied().unwrap_or(0),
            };
            if op == Op::Pessimistic && given == 1 {
                return Err(format!(
                    "`{part}`: `~>` needs at least a minor version (`~> 1.9`)"
                ));
            }
            parts.push((op, version, given));
        }
        Ok(Constraint {
            parts,
            text: text.trim().to_string(),
        })
    }

    /// Whether `version` satisfies every part.
    pub fn matches(&self, version: Version) -> bool {
        self.parts.iter().all(|(op, bound, given)| match op {
            Op::Eq => version == *bound,
            Op::Ne => version != *bound,
            Op::Gt => version > *bound,
            Op::Ge => version >= *bound,
            Op::Lt => version < *bound,
            Op::Le => version <= *bound,
            Op::Pessimistic => {
                let upper = if *given == 2 {
                    Version {
                        major: bound.major + 1,
                        minor: 0,
                        patch: 0,
                    }
                } else {
                    Version {
                        major: bound.major,
                        minor: bound.minor + 1,
                        patch: 0,
                    }
                };
                version >= *bound && version < upper
            }
        })
    }

    /// An exact version (`1.9.5` or `= 1.9.5`), if that is all the constraint says.
    pub fn exact(&self) -> Option<Version> {
        match self.parts.as_slice() {
            [(Op::Eq, version, 3)] => Some(*version),
            _ => None,
        }
    }
}

/// What a configuration asks for, and where it says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub constraint: Constraint,
    /// `input terraform-version`, `required_version in versions.tf`, `.terraform-version`,
    /// `.tool-versions`.
    pub source: String,
}

/// The `required_version` settings of a root module's files (`terraform { required_version =
/// "..." }`), joined: every one must hold. Comments are skipped.
pub fn required_versions(files: &[(String, String)]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (name, text) in files {
        let mut in_block_comment = false;
        for line in text.lines() {
            let line = line.trim();
            if in_block_comment {
                in_block_comment = !line.contains("*/");
                continue;
            }
            if line.starts_with("/*") {
                in_block_comment = !line.contains("*/");
                continue;
            }
            if line.starts_with('#') || line.starts_with("//") {
                continue;
            }
            let Some(rest) = line.strip_prefix("required_version") else {
                continue;
            };
            let Some(value) = rest.trim().strip_prefix('=') else {
                continue;
            };
            let value = value.trim();
            if let Some(inner) = value.strip_prefix('"').and_then(|v| v.split('"').next()) {
                found.push((inner.to_string(), name.clone()));
            }
        }
    }
    found
}

/// A `.terraform-version` file as tfenv reads it: an exact version, `latest`, or
/// `latest:<prefix>` (a regular expression that is a version prefix, such as `^1.9`).
pub fn terraform_version_file(text: &str) -> Result<Constraint, String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or("is empty")?;
    if line == "latest" {
        return Constraint::parse(">= 0.0.0");
    }
    if let Some(pattern) = line.strip_prefix("latest:") {
        let prefix = pattern
            .trim_start_matches('^')
            .replace("\\.", ".")
            .trim_end_matches('.')
            .to_string();
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(format!(
                "`{line}`: gantry reads `latest:` with a version prefix (`latest:^1.9`), not other regular expressions"
            ));
        }
        // `^1.9` is 1.9.x (`~> 1.9.0`); `^1` is 1.x (`~> 1.0`).
        return Constraint::parse(&format!("~> {prefix}.0"));
    }
    if matches!(line, "min-required" | "latest-allowed") {
        return Err(format!(
            "`{line}` is not read by gantry; give a version, or let gantry follow required_version by deleting the file"
        ));
    }
    Constraint::parse(line).and_then(|c| {
        c.exact()
            .map(|_| c.clone())
            .ok_or_else(|| format!("`{line}` is not a version (e.g. 1.9.5)"))
    })
}

/// The version `.tool-versions` (asdf) gives `tool` (`terraform` or `opentofu`).
pub fn tool_versions(text: &str, tool: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line.split('#').next()?.split_whitespace();
        (words.next()? == tool).then(|| words.next().map(str::to_string))?
    })
}

/// What runs: the bundled binary, or a release to download (or why neither).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Bundled,
    Download(Version),
}

/// The bundled version whenever it satisfies the constraint; else the newest published
/// release that does.
pub fn choose(
    wanted: &Wanted,
    bundled: Option<Version>,
    published: &[Version],
) -> Result<Choice, String> {
    if bundled.is_some_and(|b| wanted.constraint.matches(b)) {
        return Ok(Choice::Bundled);
    }
    published
        .iter()
        .filter(|v| wanted.constraint.matches(**v))
        .max()
        .map(|v| Choice::Download(*v))
        .ok_or_else(|| {
            format!(
                "no published version satisfies `{}` ({}){}",
                wanted.constraint,
                wanted.source,
                match published.iter().max() {
                    Some(newest) => format!("; the newest published is {newest}"),
                    None => String::new(),
                }
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn constraints_match_as_terraform_reads_them() {
        let cases: &[(&str, &str, bool)] = &[
            (">= 1.10", "1.11.4", true),
            (">= 1.10", "1.9.8", false),
            ("~> 1.9.0", "1.9.8", true),
            ("~> 1.9.0", "1.10.0", false),
            ("~> 1.9", "1.11.4", true),
            ("~> 1.9", "2.0.0", false),
            (">= 1.5, < 1.10", "1.9.8", true),
            (">= 1.5, < 1.10", "1.10.0", false),
            ("1.9.5", "1.9.5", true),
            ("= 1.9.5", "1.9.6", false),
            ("!= 1.9.5", "1.9.6", true),
            ("> 1.9", "1.9.0", false),
            ("<= 1.9.1", "1.9.1", true),
            ("v1.9.5", "1.9.5", true),
        ];
        for (constraint, version, expected) in cases {
            assert_eq!(
                Constraint::parse(constraint).unwrap().matches(v(version)),
                *expected,
                "{constraint} vs {version}"
            );
        }
        for bad in ["", ">= 1.x", "~> 1", "1.2.3.4", ">= 1.10, ", "1.10.0-beta1"] {
            assert!(Constraint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn version_files_are_read_like_tfenv_and_asdf() {
        let read = |text: &str| terraform_version_file(text).map(|c| c.to_string());
        assert_eq!(read("1.9.5\n").unwrap(), "1.9.5");
        assert_eq!(read("# pinned\n1.9.5").unwrap(), "1.9.5");
        assert_eq!(read("latest").unwrap(), ">= 0.0.0");
        assert_eq!(read("latest:^1.9").unwrap(), "~> 1.9.0");
        assert_eq!(read("latest:^1").unwrap(), "~> 1.0");
        assert!(read("latest:^1\\.[0-9]+$").is_err());
        assert!(read("~> 1.9").is_err());
        assert!(read("min-required")
            .unwrap_err()
            .contains("not read by gantry"));
        assert!(read("").is_err());
        let tools = "nodejs 20.1.0\nterraform 1.9.5 # the team's\nopentofu 1.8.2\n";
        assert_eq!(tool_versions(tools, "terraform").as_deref(), Some("1.9.5"));
        assert_eq!(tool_versions(tools, "opentofu").as_deref(), Some("1.8.2"));
        assert_eq!(tool_versions(tools, "helm"), None);
    }

    #[test]
    fn required_version_is_found_outside_comments() {
        let files = vec![
            (
                "versions.tf".to_string(),
                "terraform {\n  # required_version = \"0.12\"\n  required_version = \">= 1.10\"\n}\n".to_string(),
            ),
            ("main.tf".to_string(), "/*\nrequired_version = \"1.0\"\n*/\n".to_string()),
            ("pins.tf".to_string(), "terraform {\n  required_version = \"< 2.0\"\n}\n".to_string()),
        ];
        assert_eq!(
            required_versions(&files),
            [
                (">= 1.10".to_string(), "versions.tf".to_string()),
                ("< 2.0".to_string(), "pins.tf".to_string())
            ]
        );
    }

    #[test]
    fn the_bundled_version_wins_when_it_satisfies() {
        let wanted = |c: &str| Wanted {
            constraint: Constraint::parse(c).unwrap(),
            source: "required_version in versions.tf".into(),
        };
        let published = [v("1.9.8"), v("1.10.5"), v("1.11.4")];
        assert_eq!(
            choose(&wanted(">= 1.10"), Some(v("1.11.4")), &published),
            Ok(Choice::Bundled)
        );
        assert_eq!(
            choose(&wanted("~> 1.9.0"), Some(v("1.11.4")), &published),
            Ok(Choice::Download(v("1.9.8")))
        );
        assert_eq!(
            choose(&wanted("~> 1.10.0"), None, &published),
            Ok(Choice::Download(v("1.10.5")))
        );
        let none = choose(&wanted("~> 0.12.0"), Some(v("1.11.4")), &published).unwrap_err();
        assert!(
            none.contains(
                "no published version satisfies `~> 0.12.0` (required_version in versions.tf)"
            ),
            "{none}"
        );
        assert!(none.contains("the newest published is 1.11.4"), "{none}");
    }
}
