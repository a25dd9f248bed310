//! Helm charts as manifest sources: the `helm template` arguments, `set` as a values document, the rendered output split by template, and chart hooks (which run when, which are refused).
//!
//! Pure: the Helm CLI itself is run by [`crate::adapters::helm`]. gantry renders charts and
//! then applies, tracks and rolls back the objects with its own engine, as it does manifests;
//! Helm's release records are never written.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml_ng::{Mapping, Value};

/// The annotation gantry puts on every object rendered from a chart: the chart release's name.
/// Release records keep it, so a later run knows whether a chart is installed or upgraded.
pub const CHART_ANNOTATION: &str = "gantry.dev/chart";

/// What `helm template` renders one chart with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRequest<'a> {
    /// The chart release's name (`name` of the `charts` entry).
    pub release: &'a str,
    /// A chart directory, a `.tgz` or an `oci://` reference.
    pub chart: &'a str,
    /// The chart version (OCI charts).
    pub version: Option<&'a str>,
    pub namespace: &'a str,
    /// Values files in order, the `set` document last (it wins).
    pub values_files: Vec<String>,
    /// The cluster's version (`v1.35.4`), for `.Capabilities.KubeVersion`.
    pub kube_version: Option<&'a str>,
    /// Every group version (and `group/version/Kind`) the cluster serves, for
    /// `.Capabilities.APIVersions`.
    pub api_versions: &'a [String],
    /// Reach the OCI registry over plain HTTP (a registry on loopback without TLS).
    pub plain_http: bool,
    /// The CA bundle of the OCI registry.
    pub ca_file: Option<&'a str>,
}

/// The arguments of `helm template` for `request` (values never on the command line: only
/// the files that hold them).
pub fn template_args(request: &TemplateRequest<'_>) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "template".into(),
        request.release.into(),
        request.chart.into(),
        "--namespace".into(),
        request.namespace.into(),
        "--include-crds".into(),
    ];
    if let Some(version) = request.version {
        args.extend(["--version".into(), version.into()]);
    }
    if let Some(kube_version) = request.kube_version {
        args.extend(["--kube-version".into(), kube_version.into()]);
    }
    for api_version in request.api_versions {
        args.extend(["--api-versions".into(), api_version.clone()]);
    }
    if request.plain_http {
        args.push("--plain-http".into());
    }
    if let Some(ca_file) = request.ca_file {
        args.extend(["--ca-file".into(), ca_file.into()]);
    }
    for file in &request.values_files {
        args.extend(["--values".into(), file.clone()]);
    }
    args
}

/// The `set` map as a values document: `a.b.c: 1` becomes `{a: {b: {c: 1}}}` as `--set`
/// reads it (`\.` is a literal dot in a key); values keep their YAML types.
pub fn set_values(set: &BTreeMap<String, Value>) -> Result<Value, Vec<String>> {
    let mut root = Mapping::new();
    let mut problems = Vec::new();
    for (key, value) in set {
        let path = split_key(key);
        if path.iter().any(String::is_empty) {
            problems.push(format!(
                "`{key}` is not a values path: use names separated by `.` (`image.tag`)"
            ));
            continue;
        }
        if let Err(conflict) = insert_path(&mut root, &path, value.clone()) {
            problems.push(format!(
                "`{key}` conflicts with `{conflict}`: one sets a value where the other needs a map"
            ));
        }
    }
    if problems.is_empty() {
        Ok(Value::Mapping(root))
    } else {
        Err(problems)
    }
}

fn split_key(key: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = key.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'.') => {
                chars.next();
                parts.last_mut().expect("one part").push('.');
            }
            '.' => parts.push(String::new()),
            c => parts.last_mut().expect("one part").push(c),
        }
    }
    parts
}

/// Inserts `value` at `path`; the conflicting prefix when a value and a map collide.
fn insert_path(map: &mut Mapping, path: &[String], value: Value) -> Result<(), String> {
    let (first, rest) = path.split_first().expect("a non-empty path");
    let key = Value::String(first.clone());
    if rest.is_empty() {
        if map.get(&key).is_some_and(Value::is_mapping) {
            return Err(first.clone());
        }
        map.insert(key, value);
        return Ok(());
    }
    let entry = map
        .entry(key)
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    match entry {
        Value::Mapping(inner) => {
            insert_path(inner, rest, value).map_err(|conflict| format!("{first}.{conflict}"))
        }
        _ => Err(first.clone()),
    }
}

/// One document of `helm template`'s output, with the template it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedDocument {
    /// `chart/templates/x.yaml` as Helm's `# Source:` comment names it.
    pub source: Option<String>,
    pub text: String,
}

/// Splits `helm template` output into its documents, each with its `# Source:`.
pub fn split_rendered(output: &str) -> Vec<RenderedDocument> {
    let mut documents = Vec::new();
    let mut current = RenderedDocument {
        source: None,
        text: String::new(),
    };
    let mut flush = |current: &mut RenderedDocument| {
        if current.text.lines().any(|line| {
            let line = line.trim();
            !line.is_empty() && !line.starts_with('#')
        }) {
            documents.push(current.clone());
        }
        *current = RenderedDocument {
            source: None,
            text: String::new(),
        };
    };
    for line in output.lines() {
        if line == "---" || line.starts_with("--- ") {
            flush(&mut current);
            continue;
        }
        if current.source.is_none() {
            if let Some(source) = line.strip_prefix("# Source: ") {
                current.source = Some(source.trim().to_string());
            }
        }
        current.text.push_str(line);
        current.text.push('\n');
    }
    flush(&mut current);
    documents
}

/// A chart hook event gantry runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HookEvent {
    PreInstall,
    PreUpgrade,
    PostInstall,
    PostUpgrade,
}

/// When hooks run: before the release is applied, or after it is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookStage {
    Before,
    After,
}

impl HookStage {
    /// The event of this stage for a chart being installed (`true`) or upgraded.
    pub fn event(self, installing: bool) -> HookEvent {
        match (self, installing) {
            (HookStage::Before, true) => HookEvent::PreInstall,
            (HookStage::Before, false) => HookEvent::PreUpgrade,
            (HookStage::After, true) => HookEvent::PostInstall,
            (HookStage::After, false) => HookEvent::PostUpgrade,
        }
    }
}

impl HookEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::PreInstall => "pre-install",
            HookEvent::PreUpgrade => "pre-upgrade",
            HookEvent::PostInstall => "post-install",
            HookEvent::PostUpgrade => "post-upgrade",
        }
    }
}

/// What `helm.sh/hook-delete-policy` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeletePolicy {
    /// Delete the previous hook object before creating it again (Helm's default).
    BeforeHookCreation,
    HookSucceeded,
    HookFailed,
}

/// A hook of a chart: when it runs, in which order, and when it is deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub events: BTreeSet<HookEvent>,
    pub weight: i64,
    pub delete: BTreeSet<DeletePolicy>,
}

/// What a rendered document is to gantry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// An object of the release.
    Object,
    /// A hook that runs before or after the release.
    Hook(Hook),
    /// A `test` hook: not part of a deploy.
    Ignored,
}

/// Reads an object's `helm.sh/hook` annotations. Refuses (with why and what to do) hook events
/// gantry does not run and hook kinds it cannot wait for.
pub fn role(object: &Value) -> Result<Role, String> {
    let annotations = object.get("metadata").and_then(|m| m.get("annotations"));
    let annotation = |name: &str| {
        annotations
            .and_then(|a| a.get(name))
            .and_then(Value::as_str)
    };
    let Some(events) = annotation("helm.sh/hook") else {
        return Ok(Role::Object);
    };
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let names: Vec<&str> = events
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(Role::Object);
    }
    if names
        .iter()
        .all(|e| matches!(*e, "test" | "test-success" | "test-failure"))
    {
        return Ok(Role::Ignored);
    }
    let mut hook = Hook {
        events: BTreeSet::new(),
        weight: 0,
        delete: BTreeSet::new(),
    };
    let mut refused = Vec::new();
    for name in &names {
        match *name {
            "pre-install" => hook.events.insert(HookEvent::PreInstall),
            "pre-upgrade" => hook.events.insert(HookEvent::PreUpgrade),
            "post-install" => hook.events.insert(HookEvent::PostInstall),
            "post-upgrade" => hook.events.insert(HookEvent::PostUpgrade),
            "test" | "test-success" | "test-failure" => false,
            other => {
                refused.push(other.to_string());
                false
            }
        };
    }
    if !refused.is_empty() {
        return Err(format!(
            "hook event{} `{}` {} not run by gantry (it runs pre-install, pre-upgrade, post-install and post-upgrade hooks; delete and rollback are its own steps): remove the event from the `helm.sh/hook` annotation, or leave the hook out of the chart with a value",
            if refused.len() == 1 { "" } else { "s" },
            refused.join("`, `"),
            if refused.len() == 1 { "is" } else { "are" },
        ));
    }
    if !matches!(kind, "Job" | "Pod") {
        return Err(format!(
            "is a `{}` hook of kind {kind}: gantry runs hooks that are a Job or a Pod (it waits for them to finish); make it a Job, or an ordinary object of the chart",
            names.join(",")
        ));
    }
    if let Some(weight) = annotation("helm.sh/hook-weight") {
        hook.weight = weight
            .trim()
            .parse()
            .map_err(|_| format!("`helm.sh/hook-weight: {weight}` is not a whole number"))?;
    }
    match annotation("helm.sh/hook-delete-policy") {
        None => {
            hook.delete.insert(DeletePolicy::BeforeHookCreation);
        }
        Some(policies) => {
            for policy in policies.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                hook.delete.insert(match policy {
                    "before-hook-creation" => DeletePolicy::BeforeHookCreation,
                    "hook-succeeded" => DeletePolicy::HookSucceeded,
                    "hook-failed" => DeletePolicy::HookFailed,
                    other => {
                        return Err(format!(
                            "`helm.sh/hook-delete-policy: {other}` is not a delete policy (before-hook-creation, hook-succeeded, hook-failed)"
                        ))
                    }
                });
            }
        }
    }
    Ok(Role::Hook(hook))
}

/// The annotation on an object whose live copy belongs to the Helm release being adopted
/// (`adopt-helm-release`): its apply (and dry run) takes over the fields Helm's field manager
/// owns, for exactly these objects.
pub const ADOPT_ANNOTATION: &str = "gantry.dev/adopted-from-helm";

/// The Helm release a live object belongs to: `meta.helm.sh/release-name` and
/// `-namespace`, as Helm 3.2+ annotates every object it manages.
pub fn helm_release_of(live: &serde_json::Value) -> Option<(&str, &str)> {
    let annotations = &live["metadata"]["annotations"];
    Some((
        annotations["meta.helm.sh/release-name"].as_str()?,
        annotations["meta.helm.sh/release-namespace"]
            .as_str()
            .unwrap_or_default(),
    ))
}

/// Whether an object is marked as taken over from a Helm release.
pub fn adopting(object: &serde_json::Value) -> bool {
    object["metadata"]["annotations"][ADOPT_ANNOTATION].is_string()
}

/// Marks an object as taken over from the Helm release `release`.
pub fn mark_adopted(object: &mut serde_json::Value, release: &str) {
    if let Some(metadata) = object.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| serde_json::json!({}));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(ADOPT_ANNOTATION.into(), release.into());
        }
    }
}

/// The pod spec of a workload object (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
/// CronJob).
fn pod_spec_mut(object: &mut serde_json::Value) -> Option<&mut serde_json::Value> {
    match object["kind"].as_str()? {
        "Pod" => object.get_mut("spec"),
        "CronJob" => object.pointer_mut("/spec/jobTemplate/spec/template/spec"),
        _ => object.pointer_mut("/spec/template/spec"),
    }
}

fn pod_spec(object: &serde_json::Value) -> Option<&serde_json::Value> {
    match object["kind"].as_str()? {
        "Pod" => object.get("spec"),
        "CronJob" => object.pointer("/spec/jobTemplate/spec/template/spec"),
        _ => object.pointer("/spec/template/spec"),
    }
}

/// Taking over from Helm restarts no pod: a container whose live image is exactly the image
/// as rendered (before pinning) keeps it, instead of its pinned `repository@digest`. Returns
/// the containers kept (`container: image`).
pub fn keep_live_images(
    object: &mut serde_json::Value,
    rendered: &serde_json::Value,
    live: &serde_json::Value,
) -> Vec<String> {
    let mut kept = Vec::new();
    let (Some(rendered_spec), Some(live_spec)) = (pod_spec(rendered), pod_spec(live)) else {
        return kept;
    };
    let image_of = |spec: &serde_json::Value, list: &str, name: &str| {
        spec[list]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"].as_str() == Some(name))
            .and_then(|c| c["image"].as_str())
            .map(str::to_string)
    };
    let rendered_spec = rendered_spec.clone();
    let live_spec = live_spec.clone();
    let Some(spec) = pod_spec_mut(object) else {
        return kept;
    };
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(|c| c.as_array_mut()) else {
            continue;
        };
        for container in containers {
            let Some(name) = container["name"].as_str().map(str::to_string) else {
                continue;
            };
            let (Some(before), Some(running)) = (
                image_of(&rendered_spec, list, &name),
                image_of(&live_spec, list, &name),
            ) else {
                continue;
            };
            if before == running && container["image"].as_str() != Some(&before) {
                container["image"] = before.clone().into();
                kept.push(format!("{name}: {before}"));
            }
        }
    }
    kept
}

/// Whether an object carries gantry's chart annotation for `chart`.
pub fn belongs_to(object: &serde_json::Value, chart: &str) -> bool {
    object["metadata"]["annotations"][CHART_ANNOTATION].as_str() == Some(chart)
}

/// The chart release a rendered object came from, if any.
pub fn chart_of(object: &Value) -> Option<&str> {
    object
        .get("metadata")?
        .get("annotations")?
        .get(CHART_ANNOTATION)?
        .as_str()
}

/// Puts gantry's chart annotation on a rendered object.
pub fn annotate(object: &mut Value, chart: &str) {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_mapping_mut) else {
        return;
    };
    let annotations = metadata
        .entry("annotations".into())
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if !annotations.is_mapping() {
        *annotations = Value::Mapping(Mapping::new());
    }
    if let Some(annotations) = annotations.as_mapping_mut() {
        annotations.insert(CHART_ANNOTATION.into(), chart.into());
    }
}

/// A hook object's verdict: still running, succeeded, or failed (and why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookVerdict {
    Running(String),
    Succeeded,
    Failed(String),
}

/// Reads a hook Job's or Pod's status.
pub fn hook_verdict(object: &serde_json::Value) -> HookVerdict {
    let status = &object["status"];
    match object["kind"].as_str() {
        Some("Pod") => match status["phase"].as_str() {
            Some("Succeeded") => HookVerdict::Succeeded,
            Some("Failed") => HookVerdict::Failed(format!(
                "the Pod failed{}",
                status["message"]
                    .as_str()
                    .or(status["reason"].as_str())
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )),
            phase => HookVerdict::Running(format!("Pod {}", phase.unwrap_or("Pending"))),
        },
        _ => {
            let conditions = status["conditions"].as_array();
            let condition = |kind: &str| {
                conditions.into_iter().flatten().find(|c| {
                    c["type"].as_str() == Some(kind) && c["status"].as_str() == Some("True")
                })
            };
            if let Some(failed) = condition("Failed") {
                return HookVerdict::Failed(format!(
                    "the Job failed: {}{}",
                    failed["reason"].as_str().unwrap_or("Failed"),
                    failed["message"]
                        .as_str()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default()
                ));
            }
            if condition("Complete").is_some() {
                return HookVerdict::Succeeded;
            }
            HookVerdict::Running(format!(
                "Job: {} active, {} succeeded, {} failed",
                status["active"].as_u64().unwrap_or(0),
                status["succeeded"].as_u64().unwrap_or(0),
                status["failed"].as_u64().unwrap_or(0)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap()
    }

    #[test]
    fn set_paths_become_nested_values() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            (
                "{image.tag: v1, replicas: 2}",
                Ok("{image: {tag: v1}, replicas: 2}"),
            ),
            ("{a.b.c: true, a.b.d: x}", Ok("{a: {b: {c: true, d: x}}}")),
            (
                r#"{'nodeSelector.kubernetes\.io/os': linux}"#,
                Ok("{nodeSelector: {kubernetes.io/os: linux}}"),
            ),
            ("{a: 1, a.b: 2}", Err("conflicts")),
            ("{a..b: 1}", Err("not a values path")),
            ("{'': 1}", Err("not a values path")),
        ];
        for (set, expected) in cases {
            let set: BTreeMap<String, Value> = serde_yaml_ng::from_str(set).unwrap();
            match (set_values(&set), expected) {
                (Ok(values), Ok(expected)) => assert_eq!(values, yaml(expected), "{set:?}"),
                (Err(problems), Err(expected)) => {
                    assert!(problems[0].contains(expected), "{problems:?}")
                }
                (got, expected) => panic!("{set:?}: {got:?} vs {expected:?}"),
            }
        }
    }

    #[test]
    fn template_args_carry_files_never_values() {
        let apis = vec!["apps/v1".to_string(), "policy/v1".to_string()];
        let args = template_args(&TemplateRequest {
            release: "db",
            chart: "/w/charts/postgres",
            version: None,
            namespace: "data",
            values_files: vec!["/w/values-dev.yaml".into(), "/tmp/set.yaml".into()],
            kube_version: Some("v1.35.4"),
            api_versions: &apis,
            plain_http: false,
            ca_file: None,
        });
        assert_eq!(
            args.join(" "),
            "template db /w/charts/postgres --namespace data --include-crds --kube-version v1.35.4 --api-versions apps/v1 --api-versions policy/v1 --values /w/values-dev.yaml --values /tmp/set.yaml"
        );
        let oci = template_args(&TemplateRequest {
            release: "db",
            chart: "oci://127.0.0.1:5000/charts/postgres",
            version: Some("1.2.0"),
            namespace: "data",
            values_files: vec![],
            kube_version: None,
            api_versions: &[],
            plain_http: true,
            ca_file: None,
        });
        assert_eq!(
            oci.join(" "),
            "template db oci://127.0.0.1:5000/charts/postgres --namespace data --include-crds --version 1.2.0 --plain-http"
        );
    }

    #[test]
    fn rendered_output_is_split_by_source() {
        let output = "---\n# Source: db/templates/secret.yaml\napiVersion: v1\nkind: Secret\n---\n# Source: db/templates/empty.yaml\n# nothing\n---\n# Source: db/crds/x.yaml\napiVersion: v1\nkind: ConfigMap\n";
        let documents = split_rendered(output);
        assert_eq!(documents.len(), 2);
        assert_eq!(
            documents[0].source.as_deref(),
            Some("db/templates/secret.yaml")
        );
        assert!(documents[0].text.contains("kind: Secret"));
        assert_eq!(documents[1].source.as_deref(), Some("db/crds/x.yaml"));
    }

    #[test]
    fn hooks_are_classified_or_refused() {
        let object = |kind: &str, annotations: &str| {
            yaml(&format!(
                "{{apiVersion: v1, kind: {kind}, metadata: {{name: x, annotations: {annotations}}}}}"
            ))
        };
        let cases: &[(&str, &str, Result<&str, &str>)] = &[
            ("ConfigMap", "{}", Ok("object")),
            ("Job", "{helm.sh/hook: 'pre-install,pre-upgrade', helm.sh/hook-weight: '-5'}", Ok("hook pre-install,pre-upgrade -5 before-hook-creation")),
            ("Pod", "{helm.sh/hook: post-upgrade, helm.sh/hook-delete-policy: 'hook-succeeded,hook-failed'}", Ok("hook post-upgrade 0 hook-succeeded,hook-failed")),
            ("Pod", "{helm.sh/hook: test}", Ok("ignored")),
            ("ConfigMap", "{helm.sh/hook: test-success}", Ok("ignored")),
            ("Job", "{helm.sh/hook: 'pre-install,pre-delete'}", Err("`pre-delete` is not run by gantry")),
            ("Job", "{helm.sh/hook: pre-rollback}", Err("`pre-rollback`")),
            ("ConfigMap", "{helm.sh/hook: pre-install}", Err("of kind ConfigMap")),
            ("Job", "{helm.sh/hook: pre-install, helm.sh/hook-weight: heavy}", Err("not a whole number")),
            ("Job", "{helm.sh/hook: pre-install, helm.sh/hook-delete-policy: never}", Err("not a delete policy")),
        ];
        for (kind, annotations, expected) in cases {
            let got = role(&object(kind, annotations)).map(|role| match role {
                Role::Object => "object".to_string(),
                Role::Ignored => "ignored".to_string(),
                Role::Hook(hook) => format!(
                    "hook {} {} {}",
                    hook.events
                        .iter()
                        .map(|e| e.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    hook.weight,
                    hook.delete
                        .iter()
                        .map(|p| match p {
                            DeletePolicy::BeforeHookCreation => "before-hook-creation",
                            DeletePolicy::HookSucceeded => "hook-succeeded",
                            DeletePolicy::HookFailed => "hook-failed",
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            });
            match (got, expected) {
                (Ok(got), Ok(expected)) => assert_eq!(&got, expected, "{kind} {annotations}"),
                (Err(got), Err(expected)) => assert!(got.contains(expected), "{got}"),
                (got, expected) => panic!("{kind} {annotations}: {got:?} vs {expected:?}"),
            }
        }
    }

    #[test]
    fn hook_verdicts() {
        let cases = [
            (r#"{"kind":"Job","status":{"conditions":[{"type":"Complete","status":"True"}]}}"#, "succeeded"),
            (r#"{"kind":"Job","status":{"conditions":[{"type":"Failed","status":"True","reason":"BackoffLimitExceeded","message":"Job has reached the specified backoff limit"}]}}"#, "failed: the Job failed: BackoffLimitExceeded (Job has reached the specified backoff limit)"),
            (r#"{"kind":"Job","status":{"active":1}}"#, "running: Job: 1 active, 0 succeeded, 0 failed"),
            (r#"{"kind":"Pod","status":{"phase":"Succeeded"}}"#, "succeeded"),
            (r#"{"kind":"Pod","status":{"phase":"Failed","reason":"Error"}}"#, "failed: the Pod failed: Error"),
            (r#"{"kind":"Pod","status":{}}"#, "running: Pod Pending"),
        ];
        for (object, expected) in cases {
            let got = match hook_verdict(&serde_json::from_str(object).unwrap()) {
                HookVerdict::Succeeded => "succeeded".to_string(),
                HookVerdict::Failed(why) => format!("failed: {why}"),
                HookVerdict::Running(what) => format!("running: {what}"),
            };
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn adoption_keeps_the_image_helm_runs() {
        let rendered = serde_json::json!({"kind": "Deployment", "spec": {"template": {"spec": {
            "initContainers": [{"name": "init", "image": "r/init:v1"}],
            "containers": [{"name": "web", "image": "r/web:v1"}, {"name": "side", "image": "r/side:v1"}]}}}});
        let mut pinned = serde_json::json!({"kind": "Deployment", "spec": {"template": {"spec": {
            "initContainers": [{"name": "init", "image": "r/init@sha256:1"}],
            "containers": [{"name": "web", "image": "r/web@sha256:2"}, {"name": "side", "image": "r/side@sha256:3"}]}}}});
        let live = serde_json::json!({"kind": "Deployment", "spec": {"template": {"spec": {
            "initContainers": [{"name": "init", "image": "r/init:v1"}],
            "containers": [{"name": "web", "image": "r/web:v1"}, {"name": "side", "image": "r/side:v0"}]}}}});
        let kept = keep_live_images(&mut pinned, &rendered, &live);
        assert_eq!(kept, ["init: r/init:v1", "web: r/web:v1"]);
        assert_eq!(
            pinned["spec"]["template"]["spec"]["containers"][0]["image"],
            "r/web:v1"
        );
        assert_eq!(
            pinned["spec"]["template"]["spec"]["containers"][1]["image"],
            "r/side@sha256:3"
        );
        let mut object = serde_json::json!({"metadata": {"name": "x"}});
        assert!(!adopting(&object));
        mark_adopted(&mut object, "web");
        assert!(adopting(&object));
        let live = serde_json::json!({"metadata": {"annotations": {
            "meta.helm.sh/release-name": "web", "meta.helm.sh/release-namespace": "shop"}}});
        assert_eq!(helm_release_of(&live), Some(("web", "shop")));
        assert_eq!(helm_release_of(&object), None);
    }

    #[test]
    fn chart_annotation_is_added_and_read() {
        let mut object = yaml("{apiVersion: v1, kind: ConfigMap, metadata: {name: x}}");
        annotate(&mut object, "db");
        let json = serde_json::to_value(&object).unwrap();
        assert!(belongs_to(&json, "db"));
        assert_eq!(chart_of(&object), Some("db"));
        assert!(!belongs_to(&json, "web"));
    }
}
