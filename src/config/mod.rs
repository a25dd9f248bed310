//! Raw inputs (from `INPUT_*` variables, CLI flags or a config file) turned into one validated [`Config`], with every problem reported at once.
//!
//! Design note: both front doors (the action and the local CLI) produce a [`RawInputs`] map of
//! input name to text; [`Config::validate`] is the only way to a [`Config`]. Validation reads
//! the file system (paths must exist) but starts no process and makes no network call.

pub mod inputs;
pub mod paths;
pub mod values;

pub mod action_yml;
mod charts;
mod images;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::image::name::{check_repository, is_tag, RepositoryRef};
pub use charts::{is_kustomization, yaml_strings, ChartSource, ChartSpec};
pub use images::{ImageSpec, SmokeTest};
pub use inputs::{InputKind, InputSpec, INPUTS, OUTPUTS};

/// A secret value: its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value itself; call only where it is handed to the service that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where a raw value came from, so an error can say which knob to turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// An `INPUT_*` environment variable (action mode).
    Env(String),
    /// A `--flag` of the local CLI.
    Flag,
    /// A key of a config file.
    File(PathBuf),
    /// The input's documented default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Env(var) => write!(f, "{var}"),
            Origin::Flag => f.write_str("command-line flag"),
            Origin::File(path) => write!(f, "config file {}", path.display()),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// Input values as text, keyed by input name, before any interpretation.
#[derive(Debug, Clone, Default)]
pub struct RawInputs {
    values: BTreeMap<&'static str, (String, Origin)>,
    /// Problems found while collecting (unknown keys in a config file, unreadable files).
    problems: Vec<InputError>,
}

impl RawInputs {
    /// Reads every declared input from `INPUT_*` variables, as a container action receives them.
    /// Empty values count as not given.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Self {
        let mut raw = RawInputs::default();
        for spec in INPUTS {
            let var = spec.env_var();
            if let Some(value) = get(&var) {
                raw.set(spec.name, value, Origin::Env(var));
            }
        }
        raw
    }

    /// Reads a YAML mapping of input names to values (the local `--config` file). Unknown keys
    /// are problems, reported with the rest.
    pub fn from_config_file(path: &Path) -> Self {
        let mut raw = RawInputs::default();
        let origin = Origin::File(path.to_path_buf());
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) => {
                raw.problem(
                    "config",
                    format!("cannot read {}: {err}", path.display()),
                    origin,
                );
                return raw;
            }
        };
        let mapping: BTreeMap<String, serde_yaml_ng::Value> = match serde_yaml_ng::from_str(&text) {
            Ok(Some(mapping)) => mapping,
            Ok(None) => BTreeMap::new(),
            Err(err) => {
                raw.problem(
                    "config",
                    format!(
                        "{} is not a YAML mapping of input names to values: {err}",
                        path.display()
                    ),
                    origin,
                );
                return raw;
            }
        };
        for (key, value) in mapping {
            let Some(spec) = inputs::find(&key) else {
                let names: Vec<&str> = INPUTS.iter().map(|spec| spec.name).collect();
                let hint = values::suggest(&key, &names)
                    .map(|name| format!(" (did you mean `{name}`?)"))
                    .unwrap_or_default();
                raw.problem(
                    "config",
                    format!(
                        "unknown input `{key}` in {}{hint}; see `gantry run --help` for the inputs",
                        path.display()
                    ),
                    origin.clone(),
                );
                continue;
            };
            let text = match value {
                serde_yaml_ng::Value::Null => continue,
                serde_yaml_ng::Value::String(text) => text,
                serde_yaml_ng::Value::Bool(flag) => flag.to_string(),
                serde_yaml_ng::Value::Number(number) => number.to_string(),
                serde_yaml_ng::Value::Sequence(items) if spec.kind == InputKind::List => items
                    .iter()
                    .map(yaml_scalar_text)
                    .collect::<Vec<_>>()
                    .join("\n"),
                serde_yaml_ng::Value::Mapping(map) if spec.kind == InputKind::Map => map
                    .iter()
                    .map(|(k, v)| format!("{}={}", yaml_scalar_text(k), yaml_scalar_text(v)))
                    .collect::<Vec<_>>()
                    .join("\n"),
                other if spec.kind == InputKind::Yaml => {
                    serde_yaml_ng::to_string(&other).unwrap_or_default()
                }
                _ => {
                    raw.problem(
                        spec.name,
                        "must be a single value (text, number or boolean) in the config file"
                            .to_string(),
                        origin.clone(),
                    );
                    continue;
                }
            };
            raw.set(spec.name, text, origin.clone());
        }
        raw
    }

    /// Sets one input; an empty value counts as not given.
    pub fn set(&mut self, name: &'static str, value: String, origin: Origin) {
        if value.trim().is_empty() {
            self.values.remove(name);
        } else {
            self.values.insert(name, (value, origin));
        }
    }

    /// Overlays `other` on `self`: values in `other` win (flags over a config file).
    pub fn overlay(mut self, other: RawInputs) -> Self {
        self.values.extend(other.values);
        self.problems.extend(other.problems);
        self
    }

    /// Fills every input not given with its documented default, except defaults that are
    /// runner expressions (`${{ github.token }}`): only the runner can evaluate those.
    pub fn with_defaults(mut self) -> Self {
        for spec in INPUTS {
            if let Some(default) = spec.default {
                if !default.contains("${{") {
                    self.values
                        .entry(spec.name)
                        .or_insert_with(|| (default.to_string(), Origin::Default));
                }
            }
        }
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|(value, _)| value.as_str())
    }

    fn origin(&self, name: &str) -> Option<&Origin> {
        self.values.get(name).map(|(_, origin)| origin)
    }

    /// Every secret input's value, to mask before anything is printed. Multi-line secrets are
    /// also given line by line, as the runner masks each line separately.
    pub fn secret_values(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        for spec in INPUTS.iter().filter(|spec| spec.secret) {
            if let Some(value) = self.get(spec.name) {
                // `kubeconfig` holds either a path (not secret) or the file's content (secret).
                let trimmed = value.trim_start();
                if spec.name == "kubeconfig"
                    && !value.contains('\n')
                    && !trimmed.starts_with('{')
                    && !trimmed.starts_with("apiVersion")
                {
                    continue;
                }
                secrets.push(value.to_string());
            }
        }
        secrets
    }

    fn problem(&mut self, input: &str, message: String, origin: Origin) {
        self.problems.push(InputError {
            input: input.to_string(),
            origin: Some(origin),
            message,
        });
    }
}

fn yaml_scalar_text(value: &serde_yaml_ng::Value) -> String {
    match value {
        serde_yaml_ng::Value::String(text) => text.clone(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim_end()
            .to_string(),
    }
}

/// One problem with one input: which input, where its value came from, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub input: String,
    pub origin: Option<Origin>,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Some(origin @ (Origin::Env(_) | Origin::File(_))) => {
                write!(f, "input `{}` ({origin}): {}", self.input, self.message)
            }
            _ => write!(f, "input `{}`: {}", self.input, self.message),
        }
    }
}

/// Every problem found in one validation pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<InputError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        write!(
            f,
            "{count} problem{} with the inputs; nothing was changed:",
            if count == 1 { "" } else { "s" }
        )?;
        for error in &self.0 {
            write!(f, "\n  - {error}")?;
        }
        Ok(())
    }
}

/// What gantry was asked to do (before `auto` is resolved from the event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CommandChoice {
    Auto,
    Deploy,
    Plan,
    Rollback,
    Destroy,
    History,
    Unlock,
}

impl CommandChoice {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "auto" => CommandChoice::Auto,
            "deploy" => CommandChoice::Deploy,
            "plan" => CommandChoice::Plan,
            "rollback" => CommandChoice::Rollback,
            "destroy" => CommandChoice::Destroy,
            "history" => CommandChoice::History,
            "unlock" => CommandChoice::Unlock,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CommandChoice::Auto => "auto",
            CommandChoice::Deploy => "deploy",
            CommandChoice::Plan => "plan",
            CommandChoice::Rollback => "rollback",
            CommandChoice::Destroy => "destroy",
            CommandChoice::History => "history",
            CommandChoice::Unlock => "unlock",
        }
    }
}

/// A phase of the pipeline that can be selected with the `phases` input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    Infra,
    Build,
    Deploy,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Infra, Phase::Build, Phase::Deploy];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Infra => "infra",
            Phase::Build => "build",
            Phase::Deploy => "deploy",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Phase::ALL.into_iter().find(|phase| phase.as_str() == text)
    }
}

/// One `terraform-backend-config` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    Pair { key: String, value: String },
    File(PathBuf),
}

/// Settings of the infra phase.
#[derive(Debug, Clone, PartialEq)]
pub struct InfraConfig {
    /// Absolute path of the Terraform root module; `None` skips the phase.
    pub directory: Option<PathBuf>,
    /// `terraform` or `tofu` (looked up on PATH), or an absolute path to either.
    pub binary: String,
    /// `terraform-version`: the version or constraint asked for.
    pub version: Option<String>,
    pub backend_config: Vec<BackendConfig>,
    /// Absolute paths of the var files, `{environment}` already replaced.
    pub var_files: Vec<PathBuf>,
    pub vars: BTreeMap<String, String>,
    pub parallelism: u32,
    pub lock_timeout: Duration,
    pub allow_destroy: bool,
}

/// Settings of the build phase.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildConfig {
    pub images: Vec<ImageSpec>,
    pub aws_region: Option<String>,
    pub registry: Option<String>,
    pub registry_endpoint: Option<String>,
    pub registry_username: Option<String>,
    pub registry_password: Option<Secret>,
    pub aws_endpoint_url: Option<String>,
    pub create_repository: bool,
    pub tag_immutability: bool,
    pub scan_on_push: bool,
    pub skip_existing: bool,
    pub push: bool,
    pub concurrency: usize,
}

/// How the deploy phase reaches the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterAccess {
    KubeconfigFile(PathBuf),
    KubeconfigContent(Secret),
    Eks {
        cluster_name: String,
    },
    /// Nothing configured: the local CLI renders and says what it would deploy.
    None,
}

/// Settings of the deploy phase.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployConfig {
    /// The manifest patterns as given (files, directories, globs), relative to the working directory.
    pub manifests: Vec<String>,
    /// The files they matched, absolute, in a stable order.
    pub manifest_files: Vec<PathBuf>,
    /// Directories of `manifests` that are kustomizations (built with Kustomize), absolute.
    pub kustomizations: Vec<PathBuf>,
    /// The `charts` to render with Helm and deploy with the manifests.
    pub charts: Vec<ChartSpec>,
    pub cluster: ClusterAccess,
    /// How releases are made: what the deploy verbs run with.
    pub release: ReleaseSettings,
}

/// How releases are made in the cluster: where records and the lock live, how long a rollout
/// may take, what happens on failure, and what is pruned.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseSettings {
    /// Where release records and the lock live (the `namespace` input), and the namespace of
    /// objects that name none.
    pub namespace: String,
    pub rollout_timeout: Duration,
    pub rollback: bool,
    pub prune: bool,
    pub force_conflicts: bool,
    pub history_max: u32,
    pub lock_timeout: Duration,
    /// How long the environment lock lasts without renewal (`lock-lease-duration`).
    pub lease_duration: Duration,
    pub apply_concurrency: usize,
    pub tolerances: crate::rollout::Tolerances,
    /// `adopt-helm-release`: the Helm release whose objects the release takes over.
    pub adopt_helm_release: Option<String>,
    /// The namespaces of charts other than `namespace`: created when missing (like
    /// `helm install --create-namespace`), never deleted.
    pub chart_namespaces: Vec<String>,
}

/// Settings of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportConfig {
    pub github_token: Option<Secret>,
    pub pr_comment: bool,
    pub github_deployments: bool,
    pub environment_url: Option<String>,
    /// The audit branch with `{environment}` replaced; `None` disables the audit trail.
    pub audit_branch: Option<String>,
}

/// The validated configuration of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub command: CommandChoice,
    pub environment: String,
    pub phases: BTreeSet<Phase>,
    /// Absolute repository checkout (`GITHUB_WORKSPACE`, or the current directory locally).
    pub workspace: PathBuf,
    /// Absolute working directory that relative paths resolve against.
    pub working_directory: PathBuf,
    pub version: Option<String>,
    pub rollback_to: Option<u64>,
    pub confirm_destroy: Option<String>,
    pub confirm_unlock: Option<String>,
    pub infra: InfraConfig,
    pub build: BuildConfig,
    pub deploy: DeployConfig,
    pub report: ReportConfig,
}

/// Facts about the surroundings that validation needs besides the inputs.
#[derive(Debug, Clone)]
pub struct ValidationContext {
    /// The repository checkout every path is inside.
    pub workspace: PathBuf,
    /// Whether running as a GitHub Action (stricter: cluster access must be configured).
    pub action_mode: bool,
    /// `KUBECONFIG` from the environment, used when no cluster input is given.
    pub kubeconfig_env: Option<String>,
    /// Besides the checkout, where a `kubeconfig` file may be: the runner's temporary directory
    /// and home (setup actions write kubeconfigs there). See [`runner_kubeconfig_roots`].
    pub kubeconfig_roots: Vec<PathBuf>,
}

/// `RUNNER_TEMP` and the runner's home (`HOME`), where setup actions write kubeconfigs.
pub fn runner_kubeconfig_roots() -> Vec<PathBuf> {
    ["RUNNER_TEMP", "HOME"]
        .iter()
        .filter_map(std::env::var_os)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .filter(|path| path.is_absolute() && path.as_os_str() != "/")
        .collect()
}

impl Config {
    /// Validates every input and returns the typed configuration, or every problem at once.
    pub fn validate(raw: &RawInputs, cx: &ValidationContext) -> Result<Config, ValidationErrors> {
        let workspace_root = cx
            .workspace
            .is_dir()
            .then(|| paths::canonical_root(&cx.workspace));
        let mut v = Validator {
            raw,
            errors: raw.problems.clone(),
            workspace: workspace_root,
            silenced: BTreeSet::new(),
        };
        v.control_characters();

        let command = v
            .choice("command", inputs::COMMANDS)
            .and_then(CommandChoice::parse)
            .unwrap_or(CommandChoice::Auto);
        let environment = v.environment();
        let phases = v.phases();
        let working_directory = v.working_directory(&cx.workspace);
        if working_directory.is_none() {
            // Every other path is relative to it: checking them against a fallback would only
            // add errors that are this one's consequence.
            v.workspace = None;
        }
        let version = v.version();
        let rollback_to = v.count("rollback-to");
        let confirm_destroy = v.text("confirm-destroy");
        let confirm_unlock = v.text("confirm-unlock");
        let base = working_directory
            .clone()
            .unwrap_or_else(|| cx.workspace.clone());
        let env_name = environment.clone().unwrap_or_default();

        let infra = v.infra(&base, &env_name);
        let terraform_available = infra.directory.is_some() && phases.contains(&Phase::Infra);
        let build = v.build(&base, terraform_available);
        let image_names: Vec<String> = build.images.iter().map(|i| i.name.clone()).collect();
        let deploy = v.deploy(&base, cx, terraform_available, &image_names, &env_name);
        let report = v.report(&env_name);

        if v.errors.is_empty() {
            Ok(Config {
                command,
                environment: env_name,
                phases,
                workspace: cx.workspace.clone(),
                working_directory: base,
                version,
                rollback_to,
                confirm_destroy,
                confirm_unlock,
                infra,
                build,
                deploy,
                report,
            })
        } else {
            Err(ValidationErrors(v.errors))
        }
    }

    /// Every secret value in the configuration, for masking.
    pub fn secrets(&self) -> Vec<&str> {
        let mut secrets = Vec::new();
        if let Some(secret) = &self.build.registry_password {
            secrets.push(secret.expose());
        }
        if let ClusterAccess::KubeconfigContent(secret) = &self.deploy.cluster {
            secrets.push(secret.expose());
        }
        if let Some(secret) = &self.report.github_token {
            secrets.push(secret.expose());
        }
        secrets
    }
}

/// Collects problems while reading inputs; each reader returns a usable value even on error so
/// validation can go on and report everything at once.
struct Validator<'a> {
    raw: &'a RawInputs,
    errors: Vec<InputError>,
    /// The checkout, canonical; `None` when it does not exist (then the one error about it is
    /// reported and no path input is checked, so nothing else is blamed for it).
    workspace: Option<PathBuf>,
    /// Inputs refused for a control character: their value is not judged any further.
    silenced: BTreeSet<String>,
}

impl Validator<'_> {
    fn error(&mut self, input: &str, message: impl Into<String>) {
        if self.silenced.contains(input) {
            return;
        }
        self.errors.push(InputError {
            input: input.to_string(),
            origin: self.raw.origin(input).cloned(),
            message: message.into(),
        });
    }

    fn text(&self, name: &str) -> Option<String> {
        self.raw.get(name).map(|value| value.trim().to_string())
    }

    /// Control characters are refused in every input: single-line inputs take none, the
    /// multi-line ones (lists, maps, YAML) take line breaks and tabs only. One error per input.
    fn control_characters(&mut self) {
        for spec in inputs::INPUTS {
            let Some(value) = self.raw.get(spec.name) else {
                continue;
            };
            let multi_line = inputs::is_multi_line(spec);
            let bad = value
                .chars()
                .find(|c| c.is_control() && !(multi_line && matches!(c, '\n' | '\r' | '\t')));
            if let Some(c) = bad {
                self.error(
                    spec.name,
                    format!(
                        "contains the control character U+{:04X} (a stray newline or NUL in a secret or name is the usual cause); remove it{}",
                        c as u32,
                        if multi_line { "" } else { ": the value is one line" }
                    ),
                );
                self.silenced.insert(spec.name.to_string());
            }
        }
    }

    /// A path input resolved inside the checkout (or `extra` roots); `None` after reporting
    /// why not (nothing is reported when the checkout itself is missing: that is one error).
    fn confined(
        &mut self,
        input: &str,
        base: &Path,
        value: &str,
        extra: &[PathBuf],
    ) -> Option<PathBuf> {
        let workspace = self.workspace.clone()?;
        let mut roots = vec![workspace.clone()];
        roots.extend(extra.iter().map(|root| paths::canonical_root(root)));
        let allowed = if extra.is_empty() {
            format!("the repository checkout {}", workspace.display())
        } else {
            format!(
                "the repository checkout {} and {}",
                workspace.display(),
                extra
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        match paths::confine(base, value, &roots) {
            Ok(path) => Some(path),
            Err(refused) => {
                // Control characters were reported once for the whole input already.
                if refused != paths::Refused::ControlCharacter {
                    self.error(input, refused.message(value, &allowed));
                }
                None
            }
        }
    }

    fn choice(&mut self, name: &str, allowed: &[&'static str]) -> Option<&'static str> {
        let value = self.text(name)?;
        if let Some(found) = allowed.iter().find(|choice| **choice == value) {
            return Some(found);
        }
        let hint = values::suggest(&value, allowed)
            .map(|choice| format!(" (did you mean `{choice}`?)"))
            .unwrap_or_default();
        self.error(
            name,
            format!(
                "`{}` is not allowed{hint}; use one of: {}",
                values::shorten(&value, 40),
                allowed.join(", ")
            ),
        );
        None
    }

    fn boolean(&mut self, name: &str) -> bool {
        let default = inputs::find(name)
            .and_then(|spec| spec.default)
            .map(|d| d == "true")
            .unwrap_or(false);
        match self.raw.get(name) {
            None => default,
            Some(raw) => values::parse_bool(raw).unwrap_or_else(|message| {
                self.error(name, message);
                default
            }),
        }
    }

    fn duration(&mut self, name: &str) -> Duration {
        let fallback = inputs::find(name)
            .and_then(|spec| spec.default)
            .and_then(|d| values::parse_duration(d).ok())
            .unwrap_or_default();
        match self.raw.get(name) {
            None => fallback,
            Some(raw) => values::parse_duration(raw).unwrap_or_else(|message| {
                self.error(name, message);
                fallback
            }),
        }
    }

    /// A duration that must lie between `min` and `max`.
    fn bounded_duration(&mut self, name: &str, min: Duration, max: Duration) -> Duration {
        let value = self.duration(name);
        if value < min || value > max {
            self.error(
                name,
                format!(
                    "{}s is out of range; give a duration from {}s to {}s",
                    value.as_secs_f64(),
                    min.as_secs(),
                    max.as_secs()
                ),
            );
            return value.clamp(min, max);
        }
        value
    }

    fn count(&mut self, name: &str) -> Option<u64> {
        let spec = inputs::find(name).expect("declared input");
        let InputKind::Count { min, max } = spec.kind else {
            unreachable!("{name} is a count input");
        };
        let raw = self.raw.get(name).or(spec.default)?;
        match values::parse_count(raw, min, max) {
            Ok(value) => Some(value),
            Err(message) => {
                self.error(name, message);
                None
            }
        }
    }

    fn count_or_default(&mut self, name: &str) -> u64 {
        let default = inputs::find(name)
            .and_then(|spec| spec.default)
            .and_then(|d| d.parse().ok())
            .unwrap_or(1);
        self.count(name).unwrap_or(default)
    }

    fn environment(&mut self) -> Option<String> {
        let Some(value) = self.text("environment") else {
            self.error(
                "environment",
                "Input required and not supplied: environment. Set it to the environment to act on, e.g. `environment: dev`",
            );
            return None;
        };
        let valid = !value.is_empty()
            && value.len() <= 40
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !value.starts_with('-')
            && !value.ends_with('-');
        if !valid {
            self.error(
                "environment",
                format!(
                    "`{}` is not a valid environment name; use lower-case letters, digits and hyphens (not at either end), at most 40 characters, e.g. dev, staging, prod",
                    values::shorten(&value, 50)
                ),
            );
            return None;
        }
        Some(value)
    }

    fn phases(&mut self) -> BTreeSet<Phase> {
        let raw = self.raw.get("phases").unwrap_or("infra,build,deploy");
        let mut phases = BTreeSet::new();
        for item in values::parse_list(raw) {
            match Phase::parse(&item) {
                Some(phase) => {
                    phases.insert(phase);
                }
                None => {
                    let hint = values::suggest(&item, inputs::PHASES)
                        .map(|phase| format!(" (did you mean `{phase}`?)"))
                        .unwrap_or_default();
                    self.error(
                        "phases",
                        format!(
                            "unknown phase `{}`{hint}; valid phases are infra, build, deploy (the report always runs)",
                            values::shorten(&item, 40)
                        ),
                    );
                }
            }
        }
        if phases.is_empty() && !self.errors.iter().any(|e| e.input == "phases") {
            self.error(
                "phases",
                "no phase selected; list at least one of infra, build, deploy",
            );
        }
        phases
    }

    fn working_directory(&mut self, workspace: &Path) -> Option<PathBuf> {
        if !workspace.is_dir() {
            self.error(
                "working-directory",
                format!(
                    "the workspace {} does not exist; run gantry from the repository checkout (on GitHub, add `actions/checkout` before gantry)",
                    workspace.display()
                ),
            );
            return None;
        }
        let relative = self.text("working-directory").unwrap_or_else(|| ".".into());
        let path = self.confined("working-directory", workspace, &relative, &[])?;
        if !path.is_dir() {
            self.error(
                "working-directory",
                format!(
                    "`{relative}` is not a directory in the repository checkout {}; give a path relative to the repository root",
                    workspace.display()
                ),
            );
            return None;
        }
        Some(path)
    }

    fn version(&mut self) -> Option<String> {
        let value = self.text("version")?;
        if !crate::image::name::is_tag(&value) || value.contains("..") {
            self.error(
                "version",
                format!(
                    "`{}` is not usable as a commit SHA or tag: images are tagged with it, so use letters, digits, `_`, `.` and `-` (not starting with `.` or `-`, no `/` or `..`), at most 128 characters",
                    values::shorten(&value, 50)
                ),
            );
            return None;
        }
        Some(value)
    }

    fn infra(&mut self, base: &Path, environment: &str) -> InfraConfig {
        let directory = self.terraform_directory(base);
        let tf_dir = directory.clone().unwrap_or_else(|| base.to_path_buf());
        // Files relative to a Terraform directory that is itself refused are not checked: their
        // errors would only repeat that one.
        let files_checkable = self.workspace.is_some()
            && (directory.is_some() || self.text("terraform-directory").is_none());
        let backend_config = self.backend_config(&tf_dir, files_checkable);
        let var_files = self.var_files(&tf_dir, environment, files_checkable);
        let vars = self.terraform_vars();
        let binary = self.terraform_binary();
        let version = self.text("terraform-version");
        if let Some(version) = &version {
            if let Err(problem) = crate::plan::versions::Constraint::parse(version) {
                self.error(
                    "terraform-version",
                    format!("{problem}; give a version (1.9.5) or a constraint (~> 1.9.0)"),
                );
            }
        }
        InfraConfig {
            directory,
            binary,
            version,
            backend_config,
            var_files,
            vars,
            parallelism: self.count_or_default("terraform-parallelism") as u32,
            lock_timeout: self.duration("terraform-lock-timeout"),
            allow_destroy: self.boolean("allow-destroy"),
        }
    }

    /// The Terraform root module (`terraform-directory`): a directory under `base` holding .tf files.
    fn terraform_directory(&mut self, base: &Path) -> Option<PathBuf> {
        let relative = self.text("terraform-directory")?;
        let path = self.confined("terraform-directory", base, &relative, &[])?;
        if !path.is_dir() {
            self.error(
                "terraform-directory",
                format!("`{relative}` is not a directory under {}; give the Terraform root module's path relative to the working directory", base.display()),
            );
            return None;
        }
        if !has_terraform_files(&path) {
            self.error(
                "terraform-directory",
                format!("`{relative}` has no .tf files; point it at the Terraform root module (the directory you run `terraform plan` in)"),
            );
            return None;
        }
        Some(path)
    }

    /// The `terraform-backend-config` items: `key=value` pairs, or files relative to `tf_dir`
    /// (checked only when `files_checkable`).
    fn backend_config(&mut self, tf_dir: &Path, files_checkable: bool) -> Vec<BackendConfig> {
        let mut backend_config = Vec::new();
        for item in values::parse_list(self.raw.get("terraform-backend-config").unwrap_or("")) {
            if let Some((key, value)) = item.split_once('=') {
                let key = key.trim();
                if key.is_empty()
                    || !key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    self.error(
                        "terraform-backend-config",
                        format!("`{}` is not a valid `key=value` item; the key must be a backend setting name such as bucket or key", values::shorten(&item, 60)),
                    );
                } else {
                    backend_config.push(BackendConfig::Pair {
                        key: key.to_string(),
                        value: value.trim().to_string(),
                    });
                }
            } else if files_checkable {
                let Some(path) = self.confined("terraform-backend-config", tf_dir, &item, &[])
                else {
                    continue;
                };
                if path.is_file() {
                    backend_config.push(BackendConfig::File(path));
                } else {
                    self.error(
                        "terraform-backend-config",
                        format!("`{}` is neither a `key=value` item nor an existing file relative to the Terraform directory", values::shorten(&item, 60)),
                    );
                }
            }
        }
        backend_config
    }

    /// The `terraform-var-files`, `{environment}` replaced, each an existing .tfvars file
    /// relative to `tf_dir` (none are checked or kept unless `files_checkable`).
    fn var_files(
        &mut self,
        tf_dir: &Path,
        environment: &str,
        files_checkable: bool,
    ) -> Vec<PathBuf> {
        let mut var_files = Vec::new();
        for item in values::parse_list(self.raw.get("terraform-var-files").unwrap_or("")) {
            let item = item.replace("{environment}", environment);
            if !files_checkable {
                continue;
            }
            let Some(path) = self.confined("terraform-var-files", tf_dir, &item, &[]) else {
                continue;
            };
            if !(item.ends_with(".tfvars") || item.ends_with(".tfvars.json")) {
                self.error(
                    "terraform-var-files",
                    format!("`{item}` must end with .tfvars or .tfvars.json"),
                );
            } else if !path.is_file() {
                self.error(
                    "terraform-var-files",
                    format!(
                        "`{item}` does not exist relative to the Terraform directory {}",
                        tf_dir.display()
                    ),
                );
            } else {
                var_files.push(path);
            }
        }
        var_files
    }

    /// The `terraform-vars` map; names that are not Terraform variable names are reported but kept.
    fn terraform_vars(&mut self) -> BTreeMap<String, String> {
        match values::parse_map(self.raw.get("terraform-vars").unwrap_or("")) {
            Ok(vars) => {
                for name in vars.keys() {
                    if !is_terraform_variable_name(name) {
                        self.error(
                            "terraform-vars",
                            format!("`{}` is not a Terraform variable name (letters, digits, `_` and `-`, starting with a letter or `_`)", values::shorten(name, 40)),
                        );
                    }
                }
                vars
            }
            Err(problems) => {
                for problem in problems {
                    self.error(
                        "terraform-vars",
                        format!("{problem}; write one `name=value` per line"),
                    );
                }
                BTreeMap::new()
            }
        }
    }

    /// The `terraform-binary`: `terraform`, `tofu` or an absolute path (reported but kept otherwise).
    fn terraform_binary(&mut self) -> String {
        let binary = self
            .raw
            .get("terraform-binary")
            .unwrap_or("terraform")
            .trim()
            .to_string();
        if !(binary == "terraform" || binary == "tofu" || binary.starts_with('/'))
            || binary.chars().any(char::is_control)
        {
            self.error(
                "terraform-binary",
                format!(
                    "`{}` is neither `terraform`, `tofu` nor an absolute path; name the tool, or give the absolute path of its binary",
                    values::shorten(&binary, 60)
                ),
            );
        }
        binary
    }

    fn build(&mut self, base: &Path, terraform_available: bool) -> BuildConfig {
        let images = self.images(base, terraform_available);
        let aws_region = self.aws_region();
        let registry = self.registry();
        let registry_endpoint = self.registry_endpoint();
        let (registry_username, registry_password) = self.registry_credentials();
        let aws_endpoint_url = self.aws_endpoint_url();
        BuildConfig {
            images,
            aws_region,
            registry,
            registry_endpoint,
            registry_username,
            registry_password,
            aws_endpoint_url,
            create_repository: self.boolean("create-repository"),
            tag_immutability: self.boolean("repository-tag-immutability"),
            scan_on_push: self.boolean("repository-scan-on-push"),
            skip_existing: self.boolean("skip-existing"),
            push: self.boolean("push"),
            concurrency: self.count_or_default("build-concurrency") as usize,
        }
    }

    /// The `images` to build; none when the input is absent or refused.
    fn images(&mut self, base: &Path, terraform_available: bool) -> Vec<ImageSpec> {
        let Some(text) = self.raw.get("images") else {
            return Vec::new();
        };
        match images::parse_images(text, base, self.workspace.as_deref(), terraform_available) {
            Ok(images) => images,
            Err(problems) => {
                for problem in problems {
                    self.error("images", problem);
                }
                Vec::new()
            }
        }
    }

    /// The `aws-region`, reported (but kept) when it does not look like a region name.
    fn aws_region(&mut self) -> Option<String> {
        let aws_region = self.text("aws-region");
        if let Some(region) = &aws_region {
            let valid = region.split('-').count() >= 3
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid {
                self.error(
                    "aws-region",
                    format!(
                        "`{}` is not an AWS region name such as eu-west-1",
                        values::shorten(region, 40)
                    ),
                );
            }
        }
        aws_region
    }

    /// The `registry`: a 12-digit AWS account id or a registry host (reported but kept otherwise).
    fn registry(&mut self) -> Option<String> {
        let registry = self.text("registry");
        if let Some(registry) = &registry {
            let all_digits = registry.bytes().all(|b| b.is_ascii_digit());
            let is_account = all_digits && registry.len() == 12;
            if !is_account && (all_digits || !crate::image::name::is_registry_host(registry)) {
                self.error(
                    "registry",
                    format!("`{}` is neither a 12-digit AWS account id nor a registry host such as 123456789012.dkr.ecr.eu-west-1.amazonaws.com", values::shorten(registry, 60)),
                );
            }
        }
        registry
    }

    /// The `registry-endpoint`: a registry address without scheme or path (reported but kept otherwise).
    fn registry_endpoint(&mut self) -> Option<String> {
        let registry_endpoint = self.text("registry-endpoint");
        if let Some(endpoint) = &registry_endpoint {
            if !crate::image::name::is_registry_host(endpoint) {
                self.error(
                    "registry-endpoint",
                    format!("`{}` is not a registry address such as 127.0.0.1:5000 or registry.example.com (no scheme, no path)", values::shorten(endpoint, 60)),
                );
            }
        }
        registry_endpoint
    }

    /// `registry-username` and `registry-password`, which must be given together.
    fn registry_credentials(&mut self) -> (Option<String>, Option<Secret>) {
        let registry_username = self.text("registry-username");
        // Secrets are trimmed as the Actions toolkit trims inputs (a stored trailing newline
        // would otherwise fail the login).
        let registry_password = self
            .raw
            .get("registry-password")
            .map(|value| Secret::new(value.trim()));
        if registry_username.is_some() != registry_password.is_some() {
            self.error(
                if registry_username.is_some() { "registry-password" } else { "registry-username" },
                "registry-username and registry-password go together; give both, or neither for ECR",
            );
        }
        (registry_username, registry_password)
    }

    /// The `aws-endpoint-url`, reported (but kept) unless it is an http(s) URL.
    fn aws_endpoint_url(&mut self) -> Option<String> {
        let aws_endpoint_url = self.text("aws-endpoint-url");
        if let Some(url) = &aws_endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                self.error(
                    "aws-endpoint-url",
                    format!(
                        "`{}` must be an http:// or https:// URL",
                        values::shorten(url, 60)
                    ),
                );
            }
        }
        aws_endpoint_url
    }

    fn deploy(
        &mut self,
        base: &Path,
        cx: &ValidationContext,
        terraform_available: bool,
        image_names: &[String],
        environment: &str,
    ) -> DeployConfig {
        let manifests: Vec<String> = values::parse_list(self.raw.get("manifests").unwrap_or(""))
            .into_iter()
            .map(|pattern| pattern.replace("{environment}", environment))
            .collect();
        let (manifest_files, kustomizations) = self.manifest_files(base, &manifests);
        self.manifests(&manifest_files, terraform_available, image_names);
        let charts = self.charts(base, environment, terraform_available, image_names);
        self.sources_apart(&manifest_files, &charts);
        let namespace = self.text("namespace").unwrap_or_else(|| "default".into());
        if !is_dns_label(&namespace) {
            self.error(
                "namespace",
                format!("`{}` is not a valid namespace name (lower-case letters, digits and `-`, at most 63 characters)", values::shorten(&namespace, 70)),
            );
        }
        let has_sources = !manifests.is_empty() || !charts.is_empty();
        let cluster = self.cluster(base, cx, terraform_available, has_sources);
        let mut release = self.release_settings(namespace);
        release.chart_namespaces = charts
            .iter()
            .filter_map(|chart| chart.namespace.clone())
            .filter(|ns| *ns != release.namespace)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        DeployConfig {
            manifests,
            manifest_files,
            kustomizations,
            charts,
            cluster,
            release,
        }
    }

    /// The files the manifest patterns match, each inside the checkout and of a size an API
    /// server takes, in a stable order.
    fn manifest_files(&mut self, base: &Path, patterns: &[String]) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let mut found = BTreeSet::new();
        let mut kustomizations = BTreeSet::new();
        if self.workspace.is_none() {
            return (Vec::new(), Vec::new());
        }
        for pattern in patterns {
            if !pattern.contains(['*', '?', '['])
                && self.confined("manifests", base, pattern, &[]).is_none()
            {
                continue;
            }
            let direct = base.join(pattern);
            if !pattern.contains(['*', '?', '[']) && direct.is_dir() && is_kustomization(&direct) {
                if let Some(dir) = self.confined("manifests", base, pattern, &[]) {
                    kustomizations.insert(dir);
                }
                continue;
            }
            let files = match expand_manifest_pattern(base, pattern) {
                Ok(files) if files.is_empty() => {
                    self.error(
                        "manifests",
                        format!(
                            "`{pattern}` matches no .yaml, .yml or .json file under {}",
                            base.display()
                        ),
                    );
                    continue;
                }
                Ok(files) => files,
                Err(message) => {
                    self.error("manifests", message);
                    continue;
                }
            };
            for file in files {
                // Every file found (globs and directories follow symlinks) must itself be
                // inside the checkout.
                let shown = file.display().to_string();
                if let Some(file) = self.confined("manifests", base, &shown, &[]) {
                    if self.manifest_size_ok(&file) {
                        found.insert(file);
                    }
                }
            }
        }
        (
            found.into_iter().collect(),
            kustomizations.into_iter().collect(),
        )
    }

    /// The `charts`, their values files' and `set` placeholders checked like the manifests'.
    fn charts(
        &mut self,
        base: &Path,
        environment: &str,
        terraform_available: bool,
        image_names: &[String],
    ) -> Vec<ChartSpec> {
        let (Some(text), Some(workspace)) = (self.raw.get("charts"), self.workspace.clone()) else {
            return Vec::new();
        };
        let (charts, problems) = charts::parse_charts(text, base, &workspace, environment);
        for problem in problems {
            self.error("charts", problem);
        }
        for chart in &charts {
            for file in &chart.values {
                // Only string values are substituted: a `${` in a comment is just a comment.
                let text = std::fs::read_to_string(file).unwrap_or_default();
                let value: serde_yaml_ng::Value = match serde_yaml_ng::from_str(&text) {
                    Ok(value) => value,
                    Err(err) => {
                        self.error(
                            "charts",
                            format!(
                                "chart `{}`: values file {} is not valid YAML: {err}",
                                chart.name,
                                file.display()
                            ),
                        );
                        continue;
                    }
                };
                let mut strings = Vec::new();
                charts::yaml_strings(&value, &mut strings);
                for string in strings {
                    let location = |_| format!("chart `{}`: {}", chart.name, file.display());
                    self.check_placeholders(
                        "charts",
                        &string,
                        &location,
                        terraform_available,
                        image_names,
                    );
                }
            }
            for value in charts::set_strings(&chart.set) {
                let location = |_| format!("chart `{}`: `set`", chart.name);
                self.check_placeholders(
                    "charts",
                    &value,
                    &location,
                    terraform_available,
                    image_names,
                );
            }
        }
        charts
    }

    /// Charts must not be inside a manifests directory: their templates and Chart.yaml would be
    /// read as manifests.
    fn sources_apart(&mut self, manifest_files: &[PathBuf], charts: &[ChartSpec]) {
        for chart in charts {
            let ChartSource::Directory(dir) = &chart.source else {
                continue;
            };
            if let Some(file) = manifest_files.iter().find(|file| file.starts_with(dir)) {
                self.error(
                    "manifests",
                    format!(
                        "{} belongs to the chart `{}` ({}), which the `charts` input renders; keep charts out of the manifests directories (or list the manifest files)",
                        file.display(),
                        chart.name,
                        dir.display()
                    ),
                );
            }
        }
    }

    fn manifest_size_ok(&mut self, file: &Path) -> bool {
        let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        if size <= MAX_MANIFEST_FILE_BYTES {
            return true;
        }
        self.error(
            "manifests",
            format!(
                "{} is {:.1} MiB; a manifest file may hold at most {} MiB (and one object at most 1.5 MiB, the API server's limit): split it",
                file.display(),
                size as f64 / 1_048_576.0,
                MAX_MANIFEST_FILE_BYTES / 1_048_576
            ),
        );
        false
    }

    /// How the cluster is reached. A refused kubeconfig or cluster-name is one problem, not
    /// also "no cluster".
    fn cluster(
        &mut self,
        base: &Path,
        cx: &ValidationContext,
        terraform_available: bool,
        has_manifests: bool,
    ) -> ClusterAccess {
        let cluster = match (self.raw.get("kubeconfig"), self.text("cluster-name")) {
            (Some(_), Some(_)) => {
                self.error(
                    "kubeconfig",
                    "kubeconfig and cluster-name are both set; give one way to reach the cluster (kubeconfig, or cluster-name for EKS)",
                );
                return ClusterAccess::None;
            }
            (Some(kubeconfig), None) => {
                return self.kubeconfig(base, kubeconfig, &cx.kubeconfig_roots)
            }
            (None, Some(name)) => return self.cluster_name(name, terraform_available),
            (None, None) => match cx.kubeconfig_env.as_deref().filter(|v| !v.is_empty()) {
                Some(path) => ClusterAccess::KubeconfigFile(PathBuf::from(path)),
                None => ClusterAccess::None,
            },
        };
        if cx.action_mode && cluster == ClusterAccess::None && has_manifests {
            self.error(
                "cluster-name",
                "the deploy phase has manifests but no cluster to deploy to; set cluster-name (EKS) or kubeconfig",
            );
        }
        cluster
    }

    fn cluster_name(&mut self, name: String, terraform_available: bool) -> ClusterAccess {
        if let Some(output) = images::terraform_reference(&name) {
            if !terraform_available {
                self.error(
                    "cluster-name",
                    format!("refers to the Terraform output `{output}`, but the infra phase does not run (set terraform-directory and keep infra in phases)"),
                );
            }
        } else if !(1..=100).contains(&name.len())
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            self.error(
                "cluster-name",
                format!("`{}` is not an EKS cluster name (letters, digits, `-` and `_`, 1 to 100 characters)", values::shorten(&name, 60)),
            );
        }
        ClusterAccess::Eks { cluster_name: name }
    }

    /// How releases are made in `namespace`: the settings the deploy verbs run with.
    fn release_settings(&mut self, namespace: String) -> ReleaseSettings {
        ReleaseSettings {
            namespace,
            rollout_timeout: self.bounded_duration(
                "rollout-timeout",
                Duration::from_secs(10),
                Duration::from_secs(6 * 3600),
            ),
            rollback: self.boolean("rollback"),
            prune: self.boolean("prune"),
            force_conflicts: self.boolean("force-conflicts"),
            history_max: self.count_or_default("history-max") as u32,
            lock_timeout: self.bounded_duration(
                "lock-timeout",
                Duration::ZERO,
                Duration::from_secs(6 * 3600),
            ),
            lease_duration: self.bounded_duration(
                "lock-lease-duration",
                Duration::from_secs(2),
                Duration::from_secs(600),
            ),
            apply_concurrency: self.count_or_default("apply-concurrency") as usize,
            adopt_helm_release: self.adopt_helm_release(),
            chart_namespaces: Vec::new(),
            tolerances: crate::rollout::Tolerances {
                pull_error: self.duration("pull-error-tolerance"),
                restart_threshold: self.count_or_default("restart-threshold") as u32,
                unschedulable: self.duration("unschedulable-tolerance"),
            },
        }
    }

    /// `adopt-helm-release`, a Helm release name.
    fn adopt_helm_release(&mut self) -> Option<String> {
        let name = self.text("adopt-helm-release")?;
        if name.len() > 53 || !is_dns_label(&name) {
            self.error(
                "adopt-helm-release",
                format!("`{}` is not a Helm release name (lower-case letters, digits and `-`, at most 53 characters); give the name `helm list` shows", values::shorten(&name, 60)),
            );
        }
        Some(name)
    }

    /// Checks what can be checked of the manifests before any phase runs: YAML, the fields
    /// every object needs, duplicates, and the placeholder names (their values come later).
    fn manifests(&mut self, files: &[PathBuf], terraform_available: bool, image_names: &[String]) {
        let assume_namespaced = |api_version: &str, kind: &str| {
            crate::manifests::builtin_scope(api_version, kind).or(Some(true))
        };
        match crate::manifests::load(files, "default", &assume_namespaced) {
            Ok(loaded) => {
                for manifest in loaded {
                    let size = serde_json::to_vec(&manifest.object)
                        .map(|bytes| bytes.len())
                        .unwrap_or(0);
                    if size > crate::manifests::MAX_OBJECT_BYTES {
                        self.error(
                            "manifests",
                            format!(
                                "{}:{}: {} is {:.1} MiB; the API server refuses an object over 1.5 MiB: move the data out (a volume, an image, object storage)",
                                manifest.file.display(),
                                manifest.line,
                                manifest.key,
                                size as f64 / 1_048_576.0
                            ),
                        );
                    }
                }
            }
            Err(errors) => {
                for error in errors {
                    self.error("manifests", error.to_string());
                }
            }
        }
        for file in files {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            let location = |line: usize| format!("{}:{line}", file.display());
            self.check_placeholders(
                "manifests",
                &text,
                &location,
                terraform_available,
                image_names,
            );
        }
    }

    /// Checks the placeholders of `text` (a manifest, values file or `set` value): a known
    /// form, an image of the `images` input, a Terraform output only when infra runs.
    fn check_placeholders(
        &mut self,
        input: &str,
        text: &str,
        location: &dyn Fn(usize) -> String,
        terraform_available: bool,
        image_names: &[String],
    ) {
        for placeholder in crate::manifests::find_placeholders(text) {
            let location = location(placeholder.line);
            if !crate::manifests::is_known_form(&placeholder.name) {
                self.error(
                    input,
                    format!(
                        "{location}: unknown placeholder `${{{}}}`; use ${{tf.OUTPUT}}, ${{image.NAME}}, ${{gantry.sha}}, ${{gantry.short-sha}} or ${{gantry.environment}} (write `$${{` for a literal `${{`)",
                        placeholder.name
                    ),
                );
            } else if placeholder
                .name
                .strip_prefix("image.")
                .is_some_and(|name| !image_names.iter().any(|known| known == name))
            {
                self.error(
                    input,
                    format!(
                        "{location}: `${{{}}}` names no image of the `images` input ({}); it must be the `name` of a built image",
                        placeholder.name,
                        if image_names.is_empty() {
                            "which is empty".to_string()
                        } else {
                            format!("known: {}", image_names.join(", "))
                        }
                    ),
                );
            } else if placeholder.name.starts_with("tf.") && !terraform_available {
                self.error(
                    input,
                    format!(
                        "{location}: `${{{}}}` refers to a Terraform output, but the infra phase does not run (set terraform-directory and keep infra in phases)",
                        placeholder.name
                    ),
                );
            }
        }
    }

    fn kubeconfig(&mut self, base: &Path, value: &str, roots: &[PathBuf]) -> ClusterAccess {
        let trimmed = value.trim_start();
        let looks_inline =
            value.contains('\n') || trimmed.starts_with("apiVersion") || trimmed.starts_with('{');
        if looks_inline {
            match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(value) {
                Ok(serde_yaml_ng::Value::Mapping(map)) if map.contains_key("clusters") => {
                    ClusterAccess::KubeconfigContent(Secret::new(value))
                }
                _ => {
                    // Never quote the value: it is a secret.
                    self.error(
                        "kubeconfig",
                        "the content is not a kubeconfig (a YAML mapping with `clusters`); give a path or the file's content",
                    );
                    ClusterAccess::None
                }
            }
        } else {
            if self.workspace.is_none() {
                return ClusterAccess::None;
            }
            let Some(path) = self.confined("kubeconfig", base, value, roots) else {
                return ClusterAccess::None;
            };
            if path.is_file() {
                ClusterAccess::KubeconfigFile(path)
            } else {
                self.error(
                    "kubeconfig",
                    "is not an existing file relative to the working directory, nor kubeconfig content",
                );
                ClusterAccess::None
            }
        }
    }

    fn report(&mut self, environment: &str) -> ReportConfig {
        let environment_url = self.text("environment-url");
        if let Some(url) = &environment_url {
            if !(url.starts_with("https://") || url.starts_with("http://"))
                || url.contains(char::is_whitespace)
            {
                self.error(
                    "environment-url",
                    format!(
                        "`{}` must be an http:// or https:// URL",
                        values::shorten(url, 60)
                    ),
                );
            }
        }
        // An empty input means "not given" (the default applies), so `false` turns it off.
        let audit_branch = self
            .text("audit-branch")
            .filter(|branch| !matches!(branch.as_str(), "false" | "False" | "FALSE"))
            .map(|branch| branch.replace("{environment}", environment));
        // With an invalid environment (already reported) the expanded name means nothing.
        let environment_known = !environment.is_empty();
        if let Some(branch) = audit_branch.as_ref().filter(|_| environment_known) {
            if !is_branch_name(branch) {
                self.error(
                    "audit-branch",
                    format!(
                        "`{}` is not a valid git branch name",
                        values::shorten(branch, 60)
                    ),
                );
            }
        }
        ReportConfig {
            github_token: self
                .raw
                .get("github-token")
                .map(|value| Secret::new(value.trim())),
            pr_comment: self.boolean("pr-comment"),
            github_deployments: self.boolean("github-deployments"),
            environment_url,
            audit_branch,
        }
    }
}

/// Whether `dir` holds a Terraform file (`.tf` or `.tf.json`); an unreadable directory holds none.
fn has_terraform_files(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.flatten().any(|entry| {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                name.ends_with(".tf") || name.ends_with(".tf.json")
            })
        })
        .unwrap_or(false)
}

/// A Terraform variable name: letters, digits, `_` and `-`, starting with a letter or `_`.
fn is_terraform_variable_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Expands one `manifests` item (a file, a directory searched recursively, or a glob) into the
/// manifest files it names, sorted.
fn expand_manifest_pattern(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let is_manifest = |path: &Path| {
        path.is_file()
            && matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
    };
    let path = base.join(pattern);
    let mut files = Vec::new();
    let mut nested = Vec::new();
    if pattern.contains(['*', '?', '[']) {
        let full = path.to_string_lossy().to_string();
        let entries = glob::glob(&full).map_err(|err| {
            format!("`{pattern}` is not a valid glob ({err}); use `*`, `**` and `?`")
        })?;
        for entry in entries.flatten() {
            if entry.is_dir() {
                collect_dir(&entry, &is_manifest, &mut files, &mut nested);
            } else if is_manifest(&entry) {
                files.push(entry);
            }
        }
    } else if path.is_dir() {
        collect_dir(&path, &is_manifest, &mut files, &mut nested);
    } else if path.is_file() {
        files.push(path);
    } else {
        return Err(format!(
            "`{pattern}` does not exist under {}; give files, directories or globs relative to the working directory",
            base.display()
        ));
    }
    if !nested.is_empty() {
        nested.sort();
        return Err(format!(
            "`{pattern}` holds {}: their files are not manifests as they are; name a kustomization directory itself in manifests (it is built with Kustomize), give charts with the charts input, or list the manifest files",
            nested
                .iter()
                .map(|dir| {
                    let what = if dir.join("Chart.yaml").is_file() { "the chart" } else { "the kustomization" };
                    format!("{what} {}", dir.display())
                })
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    files.sort();
    Ok(files)
}

/// The manifest files under `dir`; directories that are charts or kustomizations go to
/// `nested` instead (their files are not manifests as they are).
fn collect_dir(
    dir: &Path,
    keep: &dyn Fn(&Path) -> bool,
    out: &mut Vec<PathBuf>,
    nested: &mut Vec<PathBuf>,
) {
    if dir.join("Chart.yaml").is_file() || is_kustomization(dir) {
        nested.push(dir.to_path_buf());
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_dir(&path, keep, out, nested);
        } else if keep(&path) {
            out.push(path);
        }
    }
}

pub use crate::manifests::is_dns_label;

/// The largest manifest file gantry reads (documented in the README).
pub const MAX_MANIFEST_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// A name git accepts for a branch (the rules of `git check-ref-format --branch`).
pub fn is_branch_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && !name.starts_with('/')
        && !name.ends_with('/')
        && !name.ends_with('.')
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && !name.split('/').any(|part| part.starts_with('.'))
        && !name
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_follow_git_rules() {
        for good in ["gantry/audit/dev", "main", "release-1.2"] {
            assert!(is_branch_name(good), "{good}");
        }
        for bad in [
            "",
            "a..b",
            "a b",
            "a:b",
            "x.lock",
            "-x",
            "a/.hidden",
            "a//b",
            "end/",
            "a@{1}",
        ] {
            assert!(!is_branch_name(bad), "{bad}");
        }
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("team-a"));
        assert!(!is_dns_label("Team"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label(&"a".repeat(64)));
    }
}
