//! Manifests that are made, not read: Helm charts rendered with `helm template` (values files and `set` with placeholders substituted, written 0600) and kustomization directories built with `kustomize build`.

use std::path::{Path, PathBuf};

use crate::adapters::helm::{self, Workdir};
use crate::charts::{self, Hook, Role};
use crate::config::{ChartSource, ChartSpec, Config};
use crate::manifests::{Document, ManifestError, Placeholders};

/// What the cluster tells a chart through `.Capabilities`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub kube_version: Option<String>,
    pub api_versions: Vec<String>,
}

/// How an OCI chart's registry is reached: credentials (none: anonymous) and plain HTTP.
#[derive(Debug, Clone)]
pub struct Login {
    pub host: String,
    pub credentials: Option<(String, String)>,
    pub plain_http: bool,
    /// On loopback, a registry that answers plain HTTP is used over it (as for images).
    pub loopback: bool,
}

/// One chart as rendered: its release name, chart and version, and what it made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartRendered {
    pub name: String,
    /// The chart (`name` of its Chart.yaml, or the reference).
    pub chart: String,
    /// The chart version rendered.
    pub version: Option<String>,
    pub namespace: String,
    pub objects: usize,
    pub hooks: usize,
    /// Test hooks left out.
    pub ignored: usize,
}

/// A hook document of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct HookDocument {
    pub chart: String,
    pub hook: Hook,
    pub document: Document,
}

/// Everything made from charts and kustomizations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Made {
    /// Built by Kustomize: handled like manifest files (placeholders substituted).
    pub kustomized: Vec<Document>,
    /// Rendered from charts (annotated with their chart; never substituted).
    pub rendered: Vec<Document>,
    pub hooks: Vec<HookDocument>,
    pub charts: Vec<ChartRendered>,
}

/// The registry logins OCI charts may need: `registry-username`/`registry-password` for the
/// `registry` host (over plain HTTP when `registry-endpoint` is an http:// URL).
pub fn logins(config: &Config) -> Vec<Login> {
    let build = &config.build;
    let mut logins = Vec::new();
    for chart in &config.deploy.charts {
        let Some(host) = chart.source.oci_host() else {
            continue;
        };
        if logins.iter().any(|login: &Login| login.host == host) {
            continue;
        }
        let is_registry = [&build.registry_endpoint, &build.registry]
            .iter()
            .any(|configured| configured.as_deref() == Some(host));
        let credentials = match (&build.registry_username, &build.registry_password) {
            (Some(username), Some(password)) if is_registry => {
                Some((username.clone(), password.expose().to_string()))
            }
            _ => None,
        };
        logins.push(Login {
            host: host.to_string(),
            credentials,
            // As for images: plain HTTP only on loopback.
            plain_http: false,
            loopback: crate::adapters::registry::is_loopback(host),
        });
    }
    logins
}

/// Renders every chart and builds every kustomization of the deploy configuration. With
/// `placeholders`, values files and `set` are substituted (unknown names are errors); without
/// (the check before a run), they are passed as written. Every problem at once.
pub fn make(
    config: &Config,
    placeholders: Option<&Placeholders>,
    capabilities: &Capabilities,
    logins: &[Login],
    include_oci: bool,
) -> Result<Made, Vec<ManifestError>> {
    let deploy = &config.deploy;
    let mut made = Made::default();
    let mut errors = Vec::new();
    if !deploy.kustomizations.is_empty() {
        match helm::kustomize_binary() {
            Err(message) => errors.push(error(&deploy.kustomizations[0], message)),
            Ok(kustomize) => {
                for dir in &deploy.kustomizations {
                    match helm::kustomize_build(&kustomize, dir) {
                        Ok(output) => {
                            let file = dir.join("kustomization.yaml");
                            crate::manifests::parse_documents(
                                &file,
                                &output,
                                &mut made.kustomized,
                                &mut errors,
                            );
                        }
                        Err(message) => errors.push(error(
                            dir,
                            format!("kustomize build {} failed: {message}", dir.display()),
                        )),
                    }
                }
            }
        }
    }
    let charts: Vec<&ChartSpec> = deploy
        .charts
        .iter()
        .filter(|chart| include_oci || !matches!(chart.source, ChartSource::Oci(_)))
        .collect();
    if charts.is_empty() {
        return if errors.is_empty() {
            Ok(made)
        } else {
            Err(errors)
        };
    }
    let helm_binary = match helm::helm_binary() {
        Ok(binary) => binary,
        Err(message) => {
            errors.push(error(&config.working_directory, message));
            return Err(errors);
        }
    };
    let workdir = match Workdir::new() {
        Ok(workdir) => workdir,
        Err(message) => {
            errors.push(error(&config.working_directory, message));
            return Err(errors);
        }
    };
    let mut logged_in = std::collections::BTreeSet::new();
    for chart in charts {
        let namespace = chart
            .namespace
            .clone()
            .unwrap_or_else(|| deploy.release.namespace.clone());
        let anchor = chart_anchor(chart, &config.working_directory);
        let label = format!("chart `{}`", chart.name);
        let Some(values_files) = values_files(chart, placeholders, &workdir, &mut errors) else {
            continue;
        };
        let mut plain_http = false;
        if let Some(host) = chart.source.oci_host() {
            if let Some(login) = logins.iter().find(|login| login.host == host) {
                plain_http = login.plain_http;
                if let Some((username, password)) = login
                    .credentials
                    .as_ref()
                    .filter(|_| logged_in.insert(host.to_string()))
                {
                    let extra: Vec<String> = match std::env::var("GANTRY_REGISTRY_CA_FILE") {
                        Ok(file) if !file.is_empty() => vec!["--ca-file".into(), file],
                        _ if login.loopback => vec!["--insecure".into()],
                        _ => vec![],
                    };
                    if let Err(message) = helm::registry_login(
                        &helm_binary,
                        &workdir,
                        host,
                        username,
                        password,
                        &extra,
                    ) {
                        errors.push(error(
                            &anchor,
                            format!("{label}: logging in to {host} failed: {message}"),
                        ));
                        continue;
                    }
                }
            }
        }
        let argument = chart.source.argument();
        let ca_file = std::env::var("GANTRY_REGISTRY_CA_FILE")
            .ok()
            .filter(|file| !file.is_empty() && chart.source.oci_host().is_some());
        let request = |plain_http: bool| charts::TemplateRequest {
            release: &chart.name,
            chart: &argument,
            version: match chart.source {
                ChartSource::Oci(_) => chart.version.as_deref(),
                _ => None,
            },
            namespace: &namespace,
            values_files: values_files
                .iter()
                .map(|path| path.display().to_string())
                .collect(),
            kube_version: capabilities.kube_version.as_deref(),
            api_versions: &capabilities.api_versions,
            plain_http,
            ca_file: ca_file.as_deref(),
        };
        let loopback = chart
            .source
            .oci_host()
            .and_then(|host| logins.iter().find(|login| login.host == host))
            .is_some_and(|login| login.loopback);
        let mut rendered = helm::template(
            &helm_binary,
            &workdir,
            &charts::template_args(&request(plain_http)),
        );
        if let Err(message) = &rendered {
            // A registry on loopback that answers plain HTTP: asked again over it.
            if loopback && !plain_http && message.contains("HTTP response to HTTPS client") {
                rendered = helm::template(
                    &helm_binary,
                    &workdir,
                    &charts::template_args(&request(true)),
                );
            }
        }
        let output = match rendered {
            Ok(output) => output,
            Err(message) => {
                errors.push(error(
                    &anchor,
                    format!("{label} does not render: {message}"),
                ));
                continue;
            }
        };
        let mut summary = ChartRendered {
            name: chart.name.clone(),
            chart: argument.clone(),
            version: chart.version.clone(),
            namespace: namespace.clone(),
            objects: 0,
            hooks: 0,
            ignored: 0,
        };
        let base = match &chart.source {
            ChartSource::Directory(dir) => dir.parent().map(Path::to_path_buf),
            _ => None,
        };
        for piece in charts::split_rendered(&output) {
            let file = match (&base, &piece.source) {
                (Some(base), Some(source)) => base.join(source),
                _ => anchor.clone(),
            };
            let mut documents = Vec::new();
            crate::manifests::parse_documents(&file, &piece.text, &mut documents, &mut errors);
            for mut document in documents {
                document.namespace = Some(namespace.clone());
                if summary.version.is_none() {
                    summary.version = chart_label_version(&document.value);
                }
                if let Some(chart_name) = chart_label_name(&document.value) {
                    summary.chart = chart_name;
                }
                match charts::role(&document.value) {
                    Err(message) => errors.push(ManifestError {
                        file: document.file.clone(),
                        line: document.line,
                        message: format!("{label}: {} {message}", object_name(&document.value)),
                    }),
                    Ok(Role::Ignored) => summary.ignored += 1,
                    Ok(Role::Object) => {
                        charts::annotate(&mut document.value, &chart.name);
                        summary.objects += 1;
                        made.rendered.push(document);
                    }
                    Ok(Role::Hook(hook)) => {
                        charts::annotate(&mut document.value, &chart.name);
                        summary.hooks += 1;
                        made.hooks.push(HookDocument {
                            chart: chart.name.clone(),
                            hook,
                            document,
                        });
                    }
                }
            }
        }
        if let ChartSource::Directory(dir) = &chart.source {
            summary.chart = dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or(summary.chart);
            if let Some((name, version)) = chart_yaml(dir) {
                summary.chart = name;
                summary.version = Some(version);
            }
        }
        made.charts.push(summary);
    }
    if errors.is_empty() {
        Ok(made)
    } else {
        Err(errors)
    }
}

/// The values files Helm reads for `chart`: each file as it is, or (with placeholders in it)
/// substituted into a private copy; the `set` map last. `None` when a file was refused.
fn values_files(
    chart: &ChartSpec,
    placeholders: Option<&Placeholders>,
    workdir: &Workdir,
    errors: &mut Vec<ManifestError>,
) -> Option<Vec<PathBuf>> {
    let before = errors.len();
    let mut files = Vec::new();
    for (index, file) in chart.values.iter().enumerate() {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(err) => {
                errors.push(error(
                    file,
                    format!("chart `{}`: values file cannot be read: {err}", chart.name),
                ));
                continue;
            }
        };
        let mut value: serde_yaml_ng::Value = match serde_yaml_ng::from_str(&text) {
            Ok(value) => value,
            Err(err) => {
                errors.push(error(
                    file,
                    format!(
                        "chart `{}`: values file is not valid YAML: {err}",
                        chart.name
                    ),
                ));
                continue;
            }
        };
        // Placeholders live in string values only (a `${` in a comment is a comment).
        let mut strings = Vec::new();
        crate::config::yaml_strings(&value, &mut strings);
        let found: Vec<_> = strings
            .iter()
            .flat_map(|string| crate::manifests::find_placeholders(string))
            .collect();
        let Some(placeholders) = placeholders.filter(|_| !found.is_empty()) else {
            files.push(file.clone());
            continue;
        };
        let unknown: Vec<_> = found
            .iter()
            .filter(|placeholder| !placeholders.knows(&placeholder.name))
            .collect();
        for placeholder in &unknown {
            errors.push(error(
                file,
                format!(
                    "chart `{}`: unknown placeholder `${{{}}}` in a values file",
                    chart.name, placeholder.name
                ),
            ));
        }
        if !unknown.is_empty() {
            continue;
        }
        placeholders.substitute(&mut value);
        match serde_yaml_ng::to_string(&value)
            .map_err(|err| err.to_string())
            .and_then(|text| {
                workdir.write_private(&format!("{}-values-{index}.yaml", chart.name), &text)
            }) {
            Ok(path) => files.push(path),
            Err(message) => errors.push(error(file, message)),
        }
    }
    if !chart.set.is_empty() {
        match charts::set_values(&chart.set) {
            Err(problems) => {
                for problem in problems {
                    errors.push(error(
                        &chart_anchor(chart, Path::new(".")),
                        format!("chart `{}`: `set`: {problem}", chart.name),
                    ));
                }
            }
            Ok(mut value) => {
                if let Some(placeholders) = placeholders {
                    let text = serde_yaml_ng::to_string(&value).unwrap_or_default();
                    for placeholder in crate::manifests::find_placeholders(&text) {
                        if !placeholders.knows(&placeholder.name) {
                            errors.push(error(
                                &chart_anchor(chart, Path::new(".")),
                                format!(
                                    "chart `{}`: unknown placeholder `${{{}}}` in `set`",
                                    chart.name, placeholder.name
                                ),
                            ));
                        }
                    }
                    placeholders.substitute(&mut value);
                }
                match serde_yaml_ng::to_string(&value)
                    .map_err(|err| err.to_string())
                    .and_then(|text| {
                        workdir.write_private(&format!("{}-set.yaml", chart.name), &text)
                    }) {
                    Ok(path) => files.push(path),
                    Err(message) => {
                        errors.push(error(&chart_anchor(chart, Path::new(".")), message))
                    }
                }
            }
        }
    }
    (errors.len() == before).then_some(files)
}

/// The file a chart's problems are reported at.
fn chart_anchor(chart: &ChartSpec, working_directory: &Path) -> PathBuf {
    match &chart.source {
        ChartSource::Directory(dir) => dir.join("Chart.yaml"),
        ChartSource::Archive(file) => file.clone(),
        ChartSource::Oci(_) => working_directory.to_path_buf(),
    }
}

fn error(file: &Path, message: String) -> ManifestError {
    ManifestError {
        file: file.to_path_buf(),
        line: 1,
        message,
    }
}

fn object_name(value: &serde_yaml_ng::Value) -> String {
    format!(
        "{}/{}",
        value.get("kind").and_then(|v| v.as_str()).unwrap_or("?"),
        value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(|v| v.as_str())
            .unwrap_or("?")
    )
}

/// `helm.sh/chart: NAME-VERSION` as charts label their objects.
fn chart_label(value: &serde_yaml_ng::Value) -> Option<&str> {
    value
        .get("metadata")?
        .get("labels")?
        .get("helm.sh/chart")?
        .as_str()
}

fn chart_label_version(value: &serde_yaml_ng::Value) -> Option<String> {
    let label = chart_label(value)?;
    let (_, version) = label.rsplit_once('-')?;
    version
        .starts_with(|c: char| c.is_ascii_digit())
        .then(|| version.to_string())
}

fn chart_label_name(value: &serde_yaml_ng::Value) -> Option<String> {
    let label = chart_label(value)?;
    let (name, version) = label.rsplit_once('-')?;
    version
        .starts_with(|c: char| c.is_ascii_digit())
        .then(|| name.to_string())
}

/// A chart directory's name and version (Chart.yaml).
fn chart_yaml(dir: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(dir.join("Chart.yaml")).ok()?;
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).ok()?;
    let text_of = |key: &str| match value.get(key)? {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    Some((text_of("name")?, text_of("version")?))
}
