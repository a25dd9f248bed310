//! The `charts` input: its YAML schema, where a chart may come from, and its values files and `set` map.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::paths;

/// One chart to render and deploy, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartSpec {
    /// The chart release's name (Helm's release name, `.Release.Name`).
    pub name: String,
    pub source: ChartSource,
    /// The chart version asked for (checked against a local chart's Chart.yaml).
    pub version: Option<String>,
    /// The namespace the chart renders into; `None`: the `namespace` input.
    pub namespace: Option<String>,
    /// Values files, absolute, `{environment}` replaced, in order.
    pub values: Vec<PathBuf>,
    /// Values set one by one (dotted paths), after the files.
    pub set: BTreeMap<String, Value>,
}

/// Where a chart comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChartSource {
    /// A chart directory (holding Chart.yaml) inside the checkout.
    Directory(PathBuf),
    /// A packaged chart (`.tgz`) inside the checkout.
    Archive(PathBuf),
    /// `oci://host/path/name`, with `version`.
    Oci(String),
}

impl ChartSource {
    /// The chart argument of `helm template`.
    pub fn argument(&self) -> String {
        match self {
            ChartSource::Directory(path) | ChartSource::Archive(path) => path.display().to_string(),
            ChartSource::Oci(reference) => reference.clone(),
        }
    }

    /// The registry host of an OCI chart.
    pub fn oci_host(&self) -> Option<&str> {
        match self {
            ChartSource::Oci(reference) => reference
                .strip_prefix("oci://")
                .and_then(|rest| rest.split('/').next()),
            _ => None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChart {
    name: String,
    chart: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    set: BTreeMap<String, Value>,
}

/// Parses and validates the `charts` input: paths relative to `base`, inside `workspace`.
/// Returns the charts and every problem found (each naming its chart).
pub fn parse_charts(
    text: &str,
    base: &Path,
    workspace: &Path,
    environment: &str,
) -> (Vec<ChartSpec>, Vec<String>) {
    let raw: Vec<RawChart> = match serde_yaml_ng::from_str(text) {
        Ok(raw) => raw,
        Err(err) => {
            return (
                Vec::new(),
                vec![format!(
                    "is not a valid chart list: {err}. Expected a YAML list such as `- name: db` / `  chart: charts/postgres` / `  values: ['charts/values-{{environment}}.yaml']`{}",
                    if text.contains('{') {
                        " (quote a path that holds `{environment}`: inside `[...]` or `{...}` a bare `{` is YAML syntax)"
                    } else {
                        ""
                    }
                )],
            )
        }
    };
    let mut problems = Vec::new();
    if raw.is_empty() {
        problems.push("is an empty list; remove the input when no chart is deployed".to_string());
    }
    let roots = [paths::canonical_root(workspace)];
    let mut names = BTreeSet::new();
    let mut charts = Vec::new();
    for (index, chart) in raw.into_iter().enumerate() {
        let label = format!("chart {} (`{}`)", index + 1, chart.name);
        let mut problem = |message: String| problems.push(format!("{label}: {message}"));
        if !is_release_name(&chart.name) {
            problem("`name` must be lower-case letters, digits and `-`, starting with a letter or digit, at most 53 characters (Helm's rule for release names)".into());
        } else if !names.insert(chart.name.clone()) {
            problem("`name` is used by another chart; chart release names must be unique".into());
        }
        if let Some(namespace) = &chart.namespace {
            if !crate::manifests::is_dns_label(namespace) {
                problem(format!(
                    "`namespace` `{namespace}` is not a valid namespace name"
                ));
            }
        }
        if let Some(version) = &chart.version {
            if version.is_empty() || paths::has_control(version) || version.contains(' ') {
                problem(format!("`version` `{version}` is not a chart version"));
            }
        }
        let source = if let Some(rest) = chart.chart.strip_prefix("oci://") {
            if rest.is_empty() || !rest.contains('/') || paths::has_control(rest) {
                problem(format!(
                    "`chart` `{}` is not an OCI reference (`oci://registry/path/chart`)",
                    chart.chart
                ));
            }
            if chart.version.is_none() {
                problem("an OCI chart needs `version` (the chart version to deploy; gantry does not pick the newest)".into());
            }
            ChartSource::Oci(chart.chart.clone())
        } else {
            match paths::confine(base, &chart.chart, &roots) {
                Err(refused) => {
                    problem(format!(
                        "`chart` {}",
                        refused.message(
                            &chart.chart,
                            &format!("the repository checkout {}", workspace.display())
                        )
                    ));
                    ChartSource::Directory(PathBuf::new())
                }
                Ok(path) if path.is_dir() => {
                    match local_chart_version(&path) {
                        Err(message) => problem(message),
                        Ok(found) => {
                            if let Some(wanted) = chart.version.as_deref().filter(|w| *w != found) {
                                problem(format!(
                                    "`version` is {wanted}, but the chart at {} is version {found} (its Chart.yaml): change `version` or the chart",
                                    path.display()
                                ));
                            }
                        }
                    }
                    ChartSource::Directory(path)
                }
                Ok(path) if path.is_file() => {
                    let name = path.to_string_lossy();
                    if !(name.ends_with(".tgz") || name.ends_with(".tar.gz")) {
                        problem(format!(
                            "`chart` {} is a file but not a packaged chart (.tgz); give a chart directory (holding Chart.yaml), a .tgz or an oci:// reference",
                            path.display()
                        ));
                    }
                    ChartSource::Archive(path)
                }
                Ok(path) => {
                    problem(format!(
                        "`chart` `{}` does not exist ({}); give a chart directory (holding Chart.yaml), a .tgz or an oci:// reference",
                        chart.chart,
                        path.display()
                    ));
                    ChartSource::Directory(path)
                }
            }
        };
        let mut values = Vec::new();
        for file in &chart.values {
            let substituted = file.replace("{environment}", environment);
            match paths::confine(base, &substituted, &roots) {
                Err(refused) => problem(format!(
                    "`values` {}",
                    refused.message(
                        &substituted,
                        &format!("the repository checkout {}", workspace.display())
                    )
                )),
                Ok(path) if path.is_file() => values.push(path),
                Ok(path) => problem(format!(
                    "values file `{substituted}` does not exist ({}){}",
                    path.display(),
                    if file.contains("{environment}") {
                        format!(" for the environment `{environment}`; add it or remove `{{environment}}` from the path")
                    } else {
                        String::new()
                    }
                )),
            }
        }
        if let Err(set_problems) = crate::charts::set_values(&chart.set) {
            for message in set_problems {
                problem(format!("`set`: {message}"));
            }
        }
        charts.push(ChartSpec {
            name: chart.name,
            source,
            version: chart.version,
            namespace: chart.namespace,
            values,
            set: chart.set,
        });
    }
    (charts, problems)
}

/// Helm's release name rule: a DNS-1123 label of at most 53 characters.
fn is_release_name(name: &str) -> bool {
    name.len() <= 53 && crate::manifests::is_dns_label(name)
}

/// The version in a chart directory's Chart.yaml.
fn local_chart_version(dir: &Path) -> Result<String, String> {
    let file = dir.join("Chart.yaml");
    let text = std::fs::read_to_string(&file).map_err(|_| {
        format!(
            "`chart` {} is a directory without Chart.yaml: give a chart directory, a .tgz or an oci:// reference",
            dir.display()
        )
    })?;
    let chart: Value = serde_yaml_ng::from_str(&text)
        .map_err(|err| format!("{} is not valid YAML: {err}", file.display()))?;
    chart
        .get("version")
        .and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .ok_or_else(|| format!("{} has no `version`", file.display()))
}

/// Whether a directory is a kustomization (holds `kustomization.yaml`, `.yml` or `Kustomization`).
pub fn is_kustomization(dir: &Path) -> bool {
    ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .any(|name| dir.join(name).is_file())
}

/// The strings of a `set` map (placeholders are checked in them).
pub fn set_strings(set: &BTreeMap<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    set.values().for_each(|v| yaml_strings(v, &mut out));
    out
}

/// Every string value of a YAML document (placeholders live there, never in comments or keys).
pub fn yaml_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Sequence(items) => items.iter().for_each(|v| yaml_strings(v, out)),
        Value::Mapping(map) => map.values().for_each(|v| yaml_strings(v, out)),
        Value::Tagged(tagged) => yaml_strings(&tagged.value, out),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let chart = dir.path().join("charts/db");
        std::fs::create_dir_all(chart.join("templates")).unwrap();
        std::fs::write(
            chart.join("Chart.yaml"),
            "apiVersion: v2\nname: db\nversion: 1.2.0\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("charts/values-dev.yaml"), "replicas: 1\n").unwrap();
        std::fs::write(dir.path().join("charts/db.tgz"), "x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        std::fs::create_dir_all(dir.path().join("empty")).unwrap();
        dir
    }

    #[test]
    fn charts_are_parsed_and_every_problem_named() {
        let dir = workspace();
        let root = dir.path().canonicalize().unwrap();
        let cases: &[(&str, Result<&str, &[&str]>)] = &[
            (
                "- {name: db, chart: charts/db, version: 1.2.0, values: ['charts/values-{environment}.yaml'], set: {image.tag: v1}}",
                Ok("db Directory values-dev.yaml"),
            ),
            ("- {name: db, chart: charts/db.tgz}", Ok("db Archive")),
            ("- {name: db, chart: 'oci://127.0.0.1:5000/charts/db', version: 1.0.0}", Ok("db Oci")),
            ("- {name: db, chart: 'oci://127.0.0.1:5000/charts/db'}", Err(&["chart 1 (`db`): an OCI chart needs `version`"])),
            ("- {name: db, chart: charts/db, version: 9.9.9}", Err(&["`version` is 9.9.9, but the chart at", "is version 1.2.0"])),
            ("- {name: db, chart: charts/missing}", Err(&["`chart` `charts/missing` does not exist"])),
            ("- {name: db, chart: empty}", Err(&["a directory without Chart.yaml"])),
            ("- {name: db, chart: notes.txt}", Err(&["not a packaged chart"])),
            ("- {name: db, chart: ../../etc}", Err(&["outside the repository checkout"])),
            ("- {name: db, chart: charts/db, values: ['charts/values-{environment}-x.yaml']}", Err(&["values file `charts/values-dev-x.yaml` does not exist", "for the environment `dev`"])),
            ("- {name: Db_1, chart: charts/db}", Err(&["`name` must be lower-case"])),
            ("- {name: db, chart: charts/db}\n- {name: db, chart: charts/db}", Err(&["chart 2 (`db`): `name` is used by another chart"])),
            ("- {name: db, chart: charts/db, set: {a: 1, a.b: 2}}", Err(&["`set`: `a.b` conflicts with `a`"])),
            ("- {name: db, chart: charts/db, namespace: Bad_NS}", Err(&["`namespace` `Bad_NS` is not a valid namespace name"])),
            ("- {name: db, chart: charts/db, valuez: []}", Err(&["is not a valid chart list", "unknown field `valuez`"])),
            ("[]", Err(&["is an empty list"])),
        ];
        for (text, expected) in cases {
            let (charts, problems) = parse_charts(text, &root, &root, "dev");
            match expected {
                Ok(expected) => {
                    assert!(problems.is_empty(), "{text}: {problems:?}");
                    let chart = &charts[0];
                    let kind = match &chart.source {
                        ChartSource::Directory(_) => "Directory",
                        ChartSource::Archive(_) => "Archive",
                        ChartSource::Oci(_) => "Oci",
                    };
                    let mut got = format!("{} {kind}", chart.name);
                    for file in &chart.values {
                        got.push(' ');
                        got.push_str(&file.file_name().unwrap().to_string_lossy());
                    }
                    assert_eq!(&got, expected);
                }
                Err(fragments) => {
                    let all = problems.join("\n");
                    for fragment in *fragments {
                        assert!(all.contains(fragment), "{text}: `{fragment}` not in {all}");
                    }
                }
            }
        }
    }

    #[test]
    fn kustomizations_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_kustomization(dir.path()));
        std::fs::write(dir.path().join("kustomization.yaml"), "resources: []\n").unwrap();
        assert!(is_kustomization(dir.path()));
    }
}
