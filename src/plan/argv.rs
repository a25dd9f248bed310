//! The argv of every Terraform command gantry runs, the automation environment, and the version check, as pure functions.
//!
//! Every command gets the automation defaults: `-input=false` where it prompts, and `-json`
//! (machine-readable lines or a document) or `-no-color`.

use std::path::Path;
use std::time::Duration;

use crate::config::{BackendConfig, InfraConfig};

/// The oldest Terraform gantry drives (`-json` for init, `workspace select -or-create`).
pub const MIN_VERSION: Version = Version {
    major: 1,
    minor: 10,
    patch: 0,
};

/// The oldest OpenTofu gantry drives (the same commands and JSON documents).
pub const MIN_OPENTOFU_VERSION: Version = Version {
    major: 1,
    minor: 8,
    patch: 0,
};

/// Which command-line tool runs the configuration: HashiCorp Terraform or OpenTofu. Both
/// take the same commands and print the same JSON documents; they differ in name, version
/// numbers and the oldest release gantry supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cli {
    Terraform,
    OpenTofu,
}

impl Cli {
    pub fn name(self) -> &'static str {
        match self {
            Cli::Terraform => "Terraform",
            Cli::OpenTofu => "OpenTofu",
        }
    }

    /// The command people type: `terraform` or `tofu`.
    pub fn command(self) -> &'static str {
        match self {
            Cli::Terraform => "terraform",
            Cli::OpenTofu => "tofu",
        }
    }

    pub fn min_version(self) -> Version {
        match self {
            Cli::Terraform => MIN_VERSION,
            Cli::OpenTofu => MIN_OPENTOFU_VERSION,
        }
    }
}

/// Reads what `terraform version` (or `tofu version`) prints first: `Terraform v1.11.4` or
/// `OpenTofu v1.10.10`.
pub fn parse_version_output(text: &str) -> Result<(Cli, Version)> {
    let first = text.lines().next().unwrap_or_default().trim();
    let (cli, number) = match first.split_once(' ') {
        Some(("Terraform", number)) => (Cli::Terraform, number),
        Some(("OpenTofu", number)) => (Cli::OpenTofu, number),
        _ => return Err(Error::Version(first.to_string())),
    };
    Ok((cli, Version::parse(number)?))
}

/// Why `terraform version` could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{0}` is not a Terraform or OpenTofu version (expected `Terraform vMAJOR.MINOR.PATCH` or `OpenTofu vMAJOR.MINOR.PATCH`)")]
    Version(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A Terraform release number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Version {
    /// Parses `1.11.4` (a pre-release suffix such as `-beta1` is ignored).
    pub fn parse(text: &str) -> Result<Version> {
        let core = text.trim().trim_start_matches('v');
        let core = core.split(['-', '+']).next().unwrap_or(core);
        let parts: Vec<u64> = core
            .split('.')
            .map(str::parse)
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| Error::Version(text.to_string()))?;
        match parts.as_slice() {
            [major, minor, patch] => Ok(Version {
                major: *major,
                minor: *minor,
                patch: *patch,
            }),
            _ => Err(Error::Version(text.to_string())),
        }
    }
}

/// Variables set on every Terraform process.
pub fn automation_env() -> [(&'static str, &'static str); 3] {
    [
        ("TF_IN_AUTOMATION", "1"),
        ("TF_INPUT", "0"),
        ("CHECKPOINT_DISABLE", "1"),
    ]
}

/// Variables removed from Terraform's environment: logging that would pollute the JSON output,
/// extra CLI arguments that would change the commands, and a workspace override.
pub fn is_removed_env(name: &str) -> bool {
    matches!(
        name,
        "TF_LOG" | "TF_LOG_PATH" | "TF_LOG_CORE" | "TF_LOG_PROVIDER" | "TF_WORKSPACE"
    ) || name.starts_with("TF_CLI_ARGS")
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Terraform's duration syntax: whole seconds as `30s`, otherwise milliseconds.
pub fn duration_arg(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

pub fn version() -> Vec<String> {
    vec!["version".into()]
}

/// `terraform init` with the backend configuration (pairs and files, in the order given).
pub fn init(infra: &InfraConfig) -> Vec<String> {
    let mut args: Vec<String> = vec!["init".into(), "-input=false".into(), "-json".into()];
    for item in &infra.backend_config {
        args.push(match item {
            BackendConfig::Pair { key, value } => format!("-backend-config={key}={value}"),
            BackendConfig::File(path) => format!("-backend-config={}", path_text(path)),
        });
    }
    args
}

/// `terraform workspace select -or-create <environment>`: one state per environment.
pub fn workspace_select(environment: &str) -> Vec<String> {
    vec![
        "workspace".into(),
        "select".into(),
        "-or-create".into(),
        "-no-color".into(),
        environment.into(),
    ]
}

pub fn validate() -> Vec<String> {
    vec!["validate".into(), "-json".into(), "-no-color".into()]
}

/// `terraform plan` saving the plan to `plan_file`; `destroy` plans the destruction of everything.
pub fn plan(infra: &InfraConfig, plan_file: &Path, destroy: bool) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "plan".into(),
        "-input=false".into(),
        "-json".into(),
        "-detailed-exitcode".into(),
        format!("-out={}", path_text(plan_file)),
        format!("-lock-timeout={}", duration_arg(infra.lock_timeout)),
        format!("-parallelism={}", infra.parallelism),
    ];
    if destroy {
        args.push("-destroy".into());
    }
    for file in &infra.var_files {
        args.push(format!("-var-file={}", path_text(file)));
    }
    for (name, value) in &infra.vars {
        args.push(format!("-var={name}={value}"));
    }
    args
}

/// `terraform show -json <plan>`: the saved plan as a document.
pub fn show(plan_file: &Path) -> Vec<String> {
    vec![
        "show".into(),
        "-json".into(),
        "-no-color".into(),
        path_text(plan_file),
    ]
}

/// `terraform apply <plan>`: exactly the saved plan, nothing re-planned.
pub fn apply(infra: &InfraConfig, plan_file: &Path) -> Vec<String> {
    vec![
        "apply".into(),
        "-input=false".into(),
        "-json".into(),
        format!("-lock-timeout={}", duration_arg(infra.lock_timeout)),
        format!("-parallelism={}", infra.parallelism),
        path_text(plan_file),
    ]
}

pub fn output() -> Vec<String> {
    vec!["output".into(), "-json".into(), "-no-color".into()]
}

/// The argv as a person reads it in the log, with the values of `-var` and `-backend-config`
/// pairs hidden (they may be secrets); backend config file paths are shown.
pub fn display(tool: &str, args: &[String]) -> String {
    let shown: Vec<String> = args
        .iter()
        .map(|arg| {
            for flag in ["-var=", "-backend-config="] {
                if let Some((name, _)) = arg.strip_prefix(flag).and_then(|p| p.split_once('=')) {
                    return format!("{flag}{name}=***");
                }
            }
            arg.clone()
        })
        .collect();
    format!("{tool} {}", shown.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn infra() -> InfraConfig {
        InfraConfig {
            directory: Some(PathBuf::from("/repo/infra")),
            binary: "terraform".into(),
            version: None,
            backend_config: vec![
                BackendConfig::Pair {
                    key: "bucket".into(),
                    value: "state-bucket".into(),
                },
                BackendConfig::File(PathBuf::from("/repo/infra/backend.hcl")),
            ],
            var_files: vec![PathBuf::from("/repo/infra/env/dev.tfvars")],
            vars: BTreeMap::from([
                ("image_tag".to_string(), "abc123".to_string()),
                ("tags".to_string(), "{ team = \"a\" }".to_string()),
            ]),
            parallelism: 4,
            lock_timeout: Duration::from_secs(300),
            allow_destroy: false,
        }
    }

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn argv_per_command() {
        let plan_file = Path::new("/tmp/gantry-x/plan.tfplan");
        let cases: Vec<(Vec<String>, Vec<String>)> = vec![
            (version(), strings(&["version"])),
            (
                init(&infra()),
                strings(&[
                    "init",
                    "-input=false",
                    "-json",
                    "-backend-config=bucket=state-bucket",
                    "-backend-config=/repo/infra/backend.hcl",
                ]),
            ),
            (
                workspace_select("staging"),
                strings(&["workspace", "select", "-or-create", "-no-color", "staging"]),
            ),
            (validate(), strings(&["validate", "-json", "-no-color"])),
            (
                plan(&infra(), plan_file, false),
                strings(&[
                    "plan",
                    "-input=false",
                    "-json",
                    "-detailed-exitcode",
                    "-out=/tmp/gantry-x/plan.tfplan",
                    "-lock-timeout=300s",
                    "-parallelism=4",
                    "-var-file=/repo/infra/env/dev.tfvars",
                    "-var=image_tag=abc123",
                    "-var=tags={ team = \"a\" }",
                ]),
            ),
            (
                show(plan_file),
                strings(&["show", "-json", "-no-color", "/tmp/gantry-x/plan.tfplan"]),
            ),
            (
                apply(&infra(), plan_file),
                strings(&[
                    "apply",
                    "-input=false",
                    "-json",
                    "-lock-timeout=300s",
                    "-parallelism=4",
                    "/tmp/gantry-x/plan.tfplan",
                ]),
            ),
            (output(), strings(&["output", "-json", "-no-color"])),
        ];
        for (built, expected) in cases {
            assert_eq!(built, expected);
        }
    }

    #[test]
    fn destroy_plans_say_so() {
        let args = plan(&infra(), Path::new("p"), true);
        assert!(args.contains(&"-destroy".to_string()));
        assert!(!plan(&infra(), Path::new("p"), false).contains(&"-destroy".to_string()));
    }

    #[test]
    fn lock_timeouts_use_terraform_duration_syntax() {
        assert_eq!(duration_arg(Duration::from_secs(1)), "1s");
        assert_eq!(duration_arg(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration_arg(Duration::ZERO), "0s");
    }

    #[test]
    fn environment_defaults_and_removals() {
        let env = automation_env();
        assert!(env.contains(&("TF_IN_AUTOMATION", "1")));
        assert!(env.contains(&("TF_INPUT", "0")));
        assert!(env.contains(&("CHECKPOINT_DISABLE", "1")));
        for removed in [
            "TF_LOG",
            "TF_LOG_PATH",
            "TF_CLI_ARGS",
            "TF_CLI_ARGS_plan",
            "TF_WORKSPACE",
        ] {
            assert!(is_removed_env(removed), "{removed}");
        }
        for kept in ["TF_VAR_region", "TF_DATA_DIR", "PATH", "TF_CLI_CONFIG_FILE"] {
            assert!(!is_removed_env(kept), "{kept}");
        }
    }

    #[test]
    fn versions_parse_and_compare() {
        let table = [
            (
                "Terraform v1.11.4\non linux_amd64\n",
                Some((Cli::Terraform, "1.11.4")),
            ),
            (
                "OpenTofu v1.10.10\non linux_amd64\n+ provider x",
                Some((Cli::OpenTofu, "1.10.10")),
            ),
            (
                "Terraform v1.12.0-beta1\n",
                Some((Cli::Terraform, "1.12.0")),
            ),
            ("terraform 1.11.4", None),
            ("Vault v1.0.0", None),
            ("", None),
        ];
        for (text, expected) in table {
            let parsed = parse_version_output(text).ok();
            assert_eq!(
                parsed.map(|(cli, v)| (cli, v.to_string())),
                expected.map(|(cli, v)| (cli, v.to_string())),
                "{text:?}"
            );
        }
        let (_, found) = parse_version_output("Terraform v1.11.4").unwrap();
        assert!(found >= MIN_VERSION);
        assert!(Version::parse("1.8.0").unwrap() >= Cli::OpenTofu.min_version());
        assert!(Version::parse("1.9.8").unwrap() < MIN_VERSION);
        assert_eq!(Version::parse("1.12.0-beta1").unwrap().minor, 12);
        assert!(Version::parse("one").is_err());
    }

    #[test]
    fn displayed_argv_hides_variable_values() {
        let shown = display("terraform", &plan(&infra(), Path::new("p"), false));
        assert!(shown.contains("-var=image_tag=***"), "{shown}");
        assert!(!shown.contains("abc123"), "{shown}");
        assert!(shown.starts_with("terraform plan -input=false"), "{shown}");
        let shown = display("tofu", &init(&infra()));
        assert!(shown.starts_with("tofu init"), "{shown}");
        assert!(shown.contains("-backend-config=bucket=***"), "{shown}");
        assert!(!shown.contains("state-bucket"), "{shown}");
        assert!(
            shown.contains("-backend-config=/repo/infra/backend.hcl"),
            "{shown}"
        );
    }
}
