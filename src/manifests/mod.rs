//! Kubernetes manifests as gantry applies them: multi-document YAML loaded with file and line, validated, placeholders substituted, images pinned by digest, and put in apply order.
//!
//! Pure: reads the files it is given and nothing else. Cluster knowledge (which kinds are
//! namespaced) comes in as a function, so the API's discovery can feed it; [`builtin_scope`]
//! knows the built-in kinds for when no cluster is at hand.

mod images;
mod placeholders;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

pub use images::{pin_images, pod_spec_pointer, PinnedImage, CONTAINER_LISTS};
pub use placeholders::{find_placeholders, is_known_form, Placeholder, Placeholders};

/// One problem in one manifest, located for the person who fixes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct ManifestError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

/// Identifies an object the way the API server does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// `apps/v1`, `v1`, ...
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    /// The API group (`""` for the core group).
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map(|(group, _)| group)
            .unwrap_or("")
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{}/{} (namespace {namespace})", self.kind, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// The largest object the API server takes (etcd's default request limit, 1.5 MiB): larger
/// ones are refused at validation and, after placeholders are substituted, at render.
pub const MAX_OBJECT_BYTES: usize = 1536 * 1024;

/// One object from a manifest file.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub key: ObjectKey,
    pub file: PathBuf,
    /// Line of the document's first line in `file` (1-based).
    pub line: usize,
    pub object: Value,
}

/// Whether a kind is namespaced: `Some(true)` namespaced, `Some(false)` cluster-scoped,
/// `None` unknown to whoever answers.
pub type ScopeLookup<'a> = dyn Fn(&str, &str) -> Option<bool> + 'a;

/// The scope of the built-in kinds (Kubernetes 1.24+), for when no cluster can be asked.
pub fn builtin_scope(api_version: &str, kind: &str) -> Option<bool> {
    const CLUSTER_SCOPED: &[(&str, &str)] = &[
        ("", "Namespace"),
        ("", "Node"),
        ("", "PersistentVolume"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ("storage.k8s.io", "StorageClass"),
        ("storage.k8s.io", "CSIDriver"),
        ("storage.k8s.io", "CSINode"),
        ("storage.k8s.io", "VolumeAttachment"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("networking.k8s.io", "IngressClass"),
        ("node.k8s.io", "RuntimeClass"),
        (
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration",
        ),
        (
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration",
        ),
        ("apiregistration.k8s.io", "APIService"),
        ("certificates.k8s.io", "CertificateSigningRequest"),
        ("policy", "PodSecurityPolicy"),
    ];
    const NAMESPACED_GROUPS: &[&str] = &[
        "",
        "apps",
        "batch",
        "autoscaling",
        "policy",
        "networking.k8s.io",
        "rbac.authorization.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "storage.k8s.io",
    ];
    let group = api_version
        .rsplit_once('/')
        .map(|(group, _)| group)
        .unwrap_or("");
    if CLUSTER_SCOPED.contains(&(group, kind)) {
        Some(false)
    } else if NAMESPACED_GROUPS.contains(&group) {
        Some(true)
    } else {
        None
    }
}

/// Splits a YAML stream into its documents with the line each starts on. A document starts at
/// a `---` marker and ends at the next marker or at `...`, both at the start of a line and
/// followed by nothing, a space or a tab (so `--- # comment` and `--- {a: 1}` are markers and
/// `----` or `---x` are not); what follows a `---` on its line belongs to the new document.
/// YAML forbids either marker at the start of a line inside a document, block scalars
/// included, so splitting on lines is exact.
fn documents(text: &str) -> Vec<(usize, String)> {
    fn marker<'l>(line: &'l str, marker: &str) -> Option<&'l str> {
        let rest = line.strip_prefix(marker)?;
        (rest.is_empty() || rest.starts_with([' ', '\t'])).then_some(rest)
    }
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (index, line) in text.lines().enumerate() {
        if let Some(rest) = marker(line, "---") {
            documents.push((start, std::mem::take(&mut current)));
            if rest.trim().is_empty() || rest.trim_start().starts_with('#') {
                start = index + 2;
            } else {
                // The marker stays with what follows it (`--- !!map`, `--- {a: 1}`): a
                // document may open with its marker, and YAML error lines stay right.
                start = index + 1;
                current.push_str(line);
                current.push('\n');
            }
        } else if marker(line, "...").is_some() {
            documents.push((start, std::mem::take(&mut current)));
            start = index + 2;
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    documents.push((start, current));
    documents
}

/// A document as kubectl reads it (merge keys already applied): tags dropped (`!Ref x` is
/// `x`), scalar mapping keys as strings (`1: one` has the key `"1"`, as JSON needs). A mapping
/// or sequence as a key has no JSON form and is refused.
fn as_kubectl_reads(value: Value) -> Result<Value, String> {
    Ok(match value {
        Value::Tagged(tagged) => as_kubectl_reads(tagged.value)?,
        Value::Sequence(items) => Value::Sequence(
            items
                .into_iter()
                .map(as_kubectl_reads)
                .collect::<Result<_, _>>()?,
        ),
        Value::Mapping(mapping) => {
            let mut out = serde_yaml_ng::Mapping::with_capacity(mapping.len());
            for (key, value) in mapping {
                let key = match as_kubectl_reads(key)? {
                    Value::String(text) => text,
                    Value::Null => "null".into(),
                    Value::Bool(flag) => flag.to_string(),
                    Value::Number(number) => number.to_string(),
                    _ => return Err("a mapping or a list as a mapping key has no JSON form".into()),
                };
                out.insert(Value::String(key), as_kubectl_reads(value)?);
            }
            Value::Mapping(out)
        }
        scalar => scalar,
    })
}

fn text_at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v str> {
    let mut value = value;
    for key in path {
        value = value.get(*key)?;
    }
    value.as_str()
}

/// One YAML document (or one item of a `List`) as read, before it is checked as an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub file: PathBuf,
    /// Line of the document's first line in `file` (1-based).
    pub line: usize,
    pub value: Value,
    /// The namespace of its namespaced objects that name none, when not the release's (a
    /// chart's own namespace).
    pub namespace: Option<String>,
}

/// Reads every document of `files` in order (`List` kinds expanded, empty documents skipped).
/// Returns the documents read and the problems found: unreadable files, YAML errors at their
/// line, documents that are not mappings (the good documents are returned all the same, so
/// their own problems can be reported too).
pub fn read_documents(files: &[PathBuf]) -> (Vec<Document>, Vec<ManifestError>) {
    let mut read = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(err) => {
                errors.push(ManifestError {
                    file: file.clone(),
                    line: 1,
                    message: format!("cannot be read: {err}"),
                });
                continue;
            }
        };
        parse_documents(file, &text, &mut read, &mut errors);
    }
    (read, errors)
}

/// Reads the documents of `text` (a file's content, or a rendering attributed to `file`) into
/// `read`, problems into `errors`, as [`read_documents`] does for files.
pub fn parse_documents(
    file: &Path,
    text: &str,
    read: &mut Vec<Document>,
    errors: &mut Vec<ManifestError>,
) {
    let file = &file.to_path_buf();
    {
        for (start, document) in documents(text) {
            let parsed = serde_yaml_ng::from_str(&document).and_then(|mut value: Value| {
                value.apply_merge()?;
                Ok(value)
            });
            let value: Value = match parsed.map(as_kubectl_reads) {
                Ok(Ok(value)) => value,
                Ok(Err(message)) => {
                    errors.push(ManifestError {
                        file: file.clone(),
                        line: start,
                        message: format!("invalid YAML: {message}"),
                    });
                    continue;
                }
                Err(err) => {
                    let line = err
                        .location()
                        .map(|l| start + l.line() - 1)
                        .unwrap_or(start);
                    let message = err.to_string();
                    let message = message.split(" at line ").next().unwrap_or(&message);
                    errors.push(ManifestError {
                        file: file.clone(),
                        line,
                        message: format!("invalid YAML: {message}"),
                    });
                    continue;
                }
            };
            let document = |value: Value| Document {
                file: file.clone(),
                line: start,
                value,
                namespace: None,
            };
            match value {
                Value::Null => continue,
                Value::Mapping(_) if text_at(&value, &["kind"]) == Some("List") => {
                    let items = value.get("items").and_then(Value::as_sequence);
                    read.extend(items.into_iter().flatten().cloned().map(document));
                }
                Value::Mapping(_) => read.push(document(value)),
                _ => errors.push(ManifestError {
                    file: file.clone(),
                    line: start,
                    message: "is not a Kubernetes object (expected a mapping with apiVersion, kind and metadata)".into(),
                }),
            }
        }
    }
}

/// Checks documents as objects: apiVersion, kind and metadata.name present, the kind served,
/// namespaces defaulted for namespaced kinds (and valid), each object once.
pub fn objects(
    documents: Vec<Document>,
    default_namespace: &str,
    scope: &ScopeLookup<'_>,
) -> Result<Vec<Manifest>, Vec<ManifestError>> {
    let mut manifests: Vec<Manifest> = Vec::new();
    let mut errors = Vec::new();
    for document in documents {
        push_object(
            document.value,
            &document.file,
            document.line,
            document.namespace.as_deref().unwrap_or(default_namespace),
            scope,
            &mut manifests,
            &mut errors,
        );
    }
    // One object is one group, kind, namespace and name, whatever API version it is written in.
    let mut seen: BTreeMap<(&str, &str, Option<&str>, &str), &Manifest> = BTreeMap::new();
    for manifest in &manifests {
        let key = &manifest.key;
        let identity = (
            key.group(),
            key.kind.as_str(),
            key.namespace.as_deref(),
            key.name.as_str(),
        );
        if let Some(first) = seen.insert(identity, manifest) {
            errors.push(ManifestError {
                file: manifest.file.clone(),
                line: manifest.line,
                message: format!(
                    "{} is defined twice (also at {}:{}); each object may appear once",
                    manifest.key,
                    first.file.display(),
                    first.line
                ),
            });
        }
    }
    if errors.is_empty() {
        Ok(manifests)
    } else {
        Err(errors)
    }
}

/// Loads every object of `files` in order, defaulting the namespace of namespaced kinds to
/// `default_namespace`. Reports every problem at once: unreadable files, YAML errors at their
/// line, documents without apiVersion/kind/metadata.name, unknown kinds, duplicates.
pub fn load(
    files: &[PathBuf],
    default_namespace: &str,
    scope: &ScopeLookup<'_>,
) -> Result<Vec<Manifest>, Vec<ManifestError>> {
    let (documents, mut errors) = read_documents(files);
    match objects(documents, default_namespace, scope) {
        Ok(manifests) if errors.is_empty() => Ok(manifests),
        Ok(_) => Err(errors),
        Err(mut more) => {
            errors.append(&mut more);
            Err(errors)
        }
    }
}

fn push_object(
    mut object: Value,
    file: &Path,
    line: usize,
    default_namespace: &str,
    scope: &ScopeLookup<'_>,
    manifests: &mut Vec<Manifest>,
    errors: &mut Vec<ManifestError>,
) {
    let error = |message: String| ManifestError {
        file: file.to_path_buf(),
        line,
        message,
    };
    let api_version = text_at(&object, &["apiVersion"]).map(str::to_string);
    let kind = text_at(&object, &["kind"]).map(str::to_string);
    let name = text_at(&object, &["metadata", "name"]).map(str::to_string);
    let missing: Vec<&str> = [
        ("apiVersion", api_version.is_none()),
        ("kind", kind.is_none()),
        ("metadata.name", name.is_none()),
    ]
    .into_iter()
    .filter_map(|(field, is_missing)| is_missing.then_some(field))
    .collect();
    let (Some(api_version), Some(kind), Some(name)) = (api_version, kind, name) else {
        errors.push(error(format!(
            "the document has no {}; every object needs apiVersion, kind and metadata.name (generateName is not supported: gantry must know each object's name to track and prune it)",
            missing.join(", ")
        )));
        return;
    };
    let namespace = match scope(&api_version, &kind) {
        None => {
            errors.push(error(format!(
                "{kind} ({api_version}) is not a kind the cluster serves; check the apiVersion and kind, or install its CustomResourceDefinition first"
            )));
            return;
        }
        Some(false) => {
            if let Some(namespace) = text_at(&object, &["metadata", "namespace"]) {
                errors.push(error(format!(
                    "{kind}/{name} is cluster-scoped but names namespace `{namespace}`; remove metadata.namespace"
                )));
                return;
            }
            None
        }
        Some(true) => {
            let namespace = text_at(&object, &["metadata", "namespace"])
                .unwrap_or(default_namespace)
                .to_string();
            // A placeholder is checked once it has its value (the deploy phase substitutes
            // before it builds the keys).
            if !is_dns_label(&namespace) && !namespace.contains("${") {
                errors.push(error(format!(
                    "{kind}/{name} names the namespace `{namespace}`, which is not a valid namespace name (lower-case letters, digits and `-`, at most 63 characters)"
                )));
                return;
            }
            if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_mapping_mut) {
                metadata.insert("namespace".into(), namespace.clone().into());
            }
            Some(namespace)
        }
    };
    manifests.push(Manifest {
        key: ObjectKey {
            api_version,
            kind,
            namespace,
            name,
        },
        file: file.to_path_buf(),
        line,
        object,
    });
}

/// Where a kind goes in the apply order: what others depend on first (Namespaces, CRDs,
/// identities and RBAC, configuration, storage, Services), then workloads, then the rest.
pub fn apply_rank(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        "PriorityClass" | "StorageClass" | "IngressClass" | "RuntimeClass" => 2,
        "ServiceAccount" => 3,
        "ClusterRole" | "Role" => 4,
        "ClusterRoleBinding" | "RoleBinding" => 5,
        "ConfigMap" | "Secret" => 6,
        "LimitRange" | "ResourceQuota" | "NetworkPolicy" => 7,
        "PersistentVolume" => 8,
        "PersistentVolumeClaim" => 9,
        "Service" => 10,
        "DaemonSet" | "Deployment" | "StatefulSet" | "ReplicaSet" | "Pod" => 11,
        "Job" | "CronJob" => 12,
        "HorizontalPodAutoscaler" | "PodDisruptionBudget" | "Ingress" => 13,
        "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration" | "APIService" => 15,
        _ => 14,
    }
}

/// Sorts manifests into apply order; objects of the same rank keep their file order.
pub fn apply_order(manifests: &mut [Manifest]) {
    manifests.sort_by_key(|manifest| apply_rank(&manifest.key.kind));
}

/// An RFC 1123 label, as Kubernetes requires for namespace names.
pub fn is_dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn documents_keep_their_lines_and_namespaces_are_defaulted() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "app.yaml",
            "# leading comment\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\n---\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api, namespace: other}\n",
        );
        let manifests = load(&[file], "shop", &builtin_scope).unwrap();
        let found: Vec<(String, usize)> = manifests
            .iter()
            .map(|m| (m.key.to_string(), m.line))
            .collect();
        assert_eq!(
            found,
            [
                ("ConfigMap/cfg (namespace shop)".to_string(), 1),
                ("Namespace/shop".to_string(), 7),
                ("Deployment/api (namespace other)".to_string(), 11),
            ]
        );
        assert_eq!(
            text_at(&manifests[0].object, &["metadata", "namespace"]),
            Some("shop")
        );
        assert_eq!(manifests[2].key.group(), "apps");
    }

    #[test]
    fn document_markers_are_read_as_yaml_defines_them() {
        // (stream, the documents' first lines and their `metadata.name`)
        let cases: [(&str, &[(usize, &str)]); 7] = [
            (
                "metadata: {name: a}\n--- # second\nmetadata: {name: b}\n",
                &[(1, "a"), (3, "b")],
            ),
            (
                "--- {metadata: {name: a}}\n---\t\nmetadata: {name: b}\n",
                &[(1, "a"), (3, "b")],
            ),
            ("--- !!map\nmetadata: {name: a}\n", &[(1, "a")]),
            (
                "metadata: {name: a}\n...\n---\nmetadata: {name: b}\n...\n",
                &[(1, "a"), (4, "b")],
            ),
            // Not markers: more dashes, text after them, indented.
            (
                "metadata: {name: a}\nx: ----\ny: |\n  ---\n  ---x\n",
                &[(1, "a")],
            ),
            (
                "metadata:\n  name: a\n  note: >\n    --- not a marker\n",
                &[(1, "a")],
            ),
            ("---\n---\n---\nmetadata: {name: a}\n", &[(4, "a")]),
        ];
        for (stream, expected) in cases {
            let found: Vec<(usize, String)> = documents(stream)
                .into_iter()
                .filter_map(|(line, text)| {
                    let value: Value = serde_yaml_ng::from_str(&text)
                        .unwrap_or_else(|err| panic!("{stream:?}: {err}"));
                    Some((line, text_at(&value, &["metadata", "name"])?.to_string()))
                })
                .collect();
            let expected: Vec<(usize, String)> =
                expected.iter().map(|(l, n)| (*l, n.to_string())).collect();
            assert_eq!(found, expected, "{stream:?}");
        }
    }

    #[test]
    fn anchors_merge_keys_tags_and_scalar_keys_read_as_kubectl_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "app.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: &meta {name: a, labels: {app: x}}\ndata:\n  <<: {base: b, over: base}\n  over: mine\n  1: one\n  true: yes\n  tagged: !Custom text\n---\napiVersion: v1\nkind: ConfigMap\nx-base: &base {labels: {app: y}}\nmetadata:\n  <<: *base\n  name: b\n",
        );
        let (read, errors) = read_documents(&[file]);
        assert!(errors.is_empty(), "{errors:?}");
        let json: Vec<serde_json::Value> = read
            .iter()
            .map(|d| serde_json::to_value(&d.value).unwrap())
            .collect();
        assert_eq!(
            json[0]["data"],
            serde_json::json!({"base": "b", "over": "mine", "1": "one", "true": "yes", "tagged": "text"})
        );
        assert_eq!(
            json[1]["metadata"],
            serde_json::json!({"name": "b", "labels": {"app": "y"}})
        );
        let bad = write(
            dir.path(),
            "bad.yaml",
            "apiVersion: v1\n---\n? [a, b]\n: x\n",
        );
        let (_, errors) = read_documents(&[bad]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 3);
        assert!(errors[0].message.contains("no JSON form"), "{errors:?}");
    }

    #[test]
    fn every_problem_is_reported_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let bad = write(
            dir.path(),
            "bad.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  labels: {x: y}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nkind: Thing\napiVersion: example.com/v1\nmetadata: {name: t}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: n, namespace: x}\n---\n- a list\n",
        );
        let broken = write(
            dir.path(),
            "broken.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata: x: y\n",
        );
        let errors = load(&[bad, broken], "default", &builtin_scope).unwrap_err();
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let expect = [
            "bad.yaml:5: the document has no metadata.name",
            "bad.yaml:14: Thing (example.com/v1) is not a kind the cluster serves",
            "bad.yaml:18: Namespace/n is cluster-scoped but names namespace `x`",
            "bad.yaml:22: is not a Kubernetes object",
            "broken.yaml:4: invalid YAML",
            "bad.yaml:10: ConfigMap/a (namespace default) is defined twice (also at ",
        ];
        assert_eq!(errors.len(), expect.len(), "{text:#?}");
        for needle in expect {
            assert!(
                text.iter().any(|t| t.contains(needle)),
                "missing {needle:?} in {text:#?}"
            );
        }
    }

    #[test]
    fn list_kinds_are_expanded() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "list.json",
            r#"{"apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}},
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b"}}]}"#,
        );
        let manifests = load(&[file], "default", &builtin_scope).unwrap();
        assert_eq!(manifests.len(), 2);
    }

    #[test]
    fn apply_order_puts_dependencies_first_and_keeps_file_order_within_a_rank() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "all.yaml",
            &[
                ("apps/v1", "Deployment", "web"),
                ("v1", "Service", "web"),
                ("networking.k8s.io/v1", "Ingress", "web"),
                ("v1", "ConfigMap", "web"),
                ("rbac.authorization.k8s.io/v1", "RoleBinding", "web"),
                ("apps/v1", "Deployment", "api"),
                ("v1", "ServiceAccount", "web"),
                ("batch/v1", "Job", "migrate"),
                ("v1", "PersistentVolumeClaim", "data"),
                (
                    "apiextensions.k8s.io/v1",
                    "CustomResourceDefinition",
                    "things.example.com",
                ),
                ("v1", "Namespace", "shop"),
            ]
            .iter()
            .map(|(v, k, n)| format!("apiVersion: {v}\nkind: {k}\nmetadata: {{name: {n}}}\n"))
            .collect::<Vec<_>>()
            .join("---\n"),
        );
        let mut manifests = load(&[file], "shop", &builtin_scope).unwrap();
        apply_order(&mut manifests);
        let order: Vec<String> = manifests
            .iter()
            .map(|m| format!("{}/{}", m.key.kind, m.key.name))
            .collect();
        assert_eq!(
            order,
            [
                "Namespace/shop",
                "CustomResourceDefinition/things.example.com",
                "ServiceAccount/web",
                "RoleBinding/web",
                "ConfigMap/web",
                "PersistentVolumeClaim/data",
                "Service/web",
                "Deployment/web",
                "Deployment/api",
                "Job/migrate",
                "Ingress/web",
            ]
        );
    }

    #[test]
    fn the_recorded_fixtures_load() {
        // The objects recorded from a real control plane (copied from ../shared/fixtures/k8s).
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/k8s");
        for scenario in [
            "deployment-rollout-ok",
            "statefulset-rollout-ok",
            "daemonset-rollout-ok",
            "job-complete",
        ] {
            let file = root.join(scenario).join("v1.yaml");
            let manifests = load(&[file], "default", &builtin_scope)
                .unwrap_or_else(|e| panic!("{scenario}: {e:?}"));
            assert!(!manifests.is_empty(), "{scenario}");
        }
    }
}
