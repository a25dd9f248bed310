//! Pre-flight checks before the first write to the cluster: every container image resolves to a digest in its registry (and is pinned by it), the whole release passes a server-side dry run, and the deploy identity holds every permission the release needs. All problems are reported together.
//!
//! Design note: the image and permission lists are computed by pure functions
//! ([`container_images`], [`required_access`]) and tested with tables; the
//! checks themselves only ask the registry (v2 API) and the API server (dry run,
//! SelfSubjectAccessReview).

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use k8s_openapi::api::authorization::v1::ResourceRule;
use serde_json::{json, Value};

use crate::adapters::kube::{ApplyOptions, Cluster, KubeError};
use crate::adapters::registry::Registry;
use crate::image::auth::Credentials;
use crate::image::name::ImageName;
use crate::release::ObjectRef;

/// One container image in the release, located for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerImage {
    /// Index of the object in the release.
    pub object_index: usize,
    /// `Deployment/web (namespace shop)`.
    pub object: String,
    /// `containers[name=web]`, `initContainers[name=migrate]`.
    pub container: String,
    /// JSON pointer of the `image` field.
    pub pointer: String,
    pub image: String,
}

/// Every container image of the release (containers, init and ephemeral containers, in Pods,
/// workloads, Jobs and CronJobs).
pub fn container_images(objects: &[Value]) -> Vec<ContainerImage> {
    let mut found = Vec::new();
    for (index, object) in objects.iter().enumerate() {
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        let Some(spec) = crate::manifests::pod_spec_pointer(kind) else {
            continue;
        };
        let name = ObjectRef::of(object)
            .map(|r| r.to_string())
            .unwrap_or_default();
        for list in crate::manifests::CONTAINER_LISTS {
            let Some(containers) = object
                .pointer(&format!("{spec}/{list}"))
                .and_then(Value::as_array)
            else {
                continue;
            };
            for (position, container) in containers.iter().enumerate() {
                let Some(image) = container.get("image").and_then(Value::as_str) else {
                    continue;
                };
                let container_name = container.get("name").and_then(Value::as_str).unwrap_or("?");
                found.push(ContainerImage {
                    object_index: index,
                    object: name.clone(),
                    container: format!("{list}[name={container_name}]"),
                    pointer: format!("{spec}/{list}/{position}/image"),
                    image: image.to_string(),
                });
            }
        }
    }
    found
}

/// What the image check found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImageCheck {
    /// Images that do not exist: the deploy must not start.
    pub missing: Vec<String>,
    /// Images whose registry could not be asked (unreachable, no credentials): reported.
    pub unverified: Vec<String>,
    /// `(object, container, from, to)` of images pinned by digest.
    pub pinned: Vec<(String, String, String, String)>,
}

/// Credentials for registry hosts (ECR tokens, `registry-username`/`registry-password`).
pub type HostCredentials = BTreeMap<String, Credentials>;

/// Resolves every image of the release to a digest and pins it in `objects`. Images already
/// pinned by digest are checked to exist.
pub async fn check_images(
    objects: &mut [Value],
    registry: &Registry,
    credentials: &HostCredentials,
) -> ImageCheck {
    let mut check = ImageCheck::default();
    let images = container_images(objects);
    let mut resolved: BTreeMap<String, Result<Option<String>, String>> = BTreeMap::new();
    for image in &images {
        if resolved.contains_key(&image.image) {
            continue;
        }
        let answer = match ImageName::parse(&image.image) {
            None => Err("not a valid image reference".to_string()),
            Some(name) => {
                let reference = name
                    .digest
                    .clone()
                    .or(name.tag.clone())
                    .unwrap_or_else(|| "latest".into());
                registry
                    .manifest_digest(
                        name.api_host(),
                        &name.repository,
                        &reference,
                        credentials.get(&name.host),
                    )
                    .await
                    .map_err(|err| err.to_string())
            }
        };
        resolved.insert(image.image.clone(), answer);
    }
    for image in images {
        match resolved.get(&image.image) {
            Some(Ok(Some(digest))) => {
                let Some(name) = ImageName::parse(&image.image) else {
                    continue;
                };
                let pinned = name.pinned(digest);
                if pinned != image.image {
                    if let Some(field) = objects
                        .get_mut(image.object_index)
                        .and_then(|o| o.pointer_mut(&image.pointer))
                    {
                        *field = Value::String(pinned.clone());
                    }
                    check
                        .pinned
                        .push((image.object, image.container, image.image, pinned));
                }
            }
            Some(Ok(None)) => check.missing.push(format!(
                "{} {}: image `{}` does not exist in its registry (no such tag or digest); push it or fix the reference",
                image.object, image.container, image.image
            )),
            Some(Err(reason)) => check.unverified.push(format!(
                "{} {}: image `{}` could not be verified: {reason}",
                image.object, image.container, image.image
            )),
            None => {}
        }
    }
    check.missing.dedup();
    check
}

/// Sends the whole release as a server-side dry run; every rejection, with the API's causes.
/// Objects in a namespace the release (or gantry, for its records) creates are not checked
/// while that namespace does not exist yet; they are listed in the second result. The third
/// names the namespaces among those found to exist.
pub async fn dry_run(
    cluster: &Cluster,
    objects: &[Value],
    force: bool,
    also_created: &[String],
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let triage = Triage {
        cluster,
        defined: kinds_defined_by_crds(objects),
    };
    let created = created_namespaces(objects, also_created);
    let mut findings = Findings::default();
    let mut checked = Vec::new();
    for object in objects {
        let Some(reference) = ObjectRef::of(object) else {
            continue;
        };
        match triage.kind_served(&reference).await {
            Err(finding) => findings.add(finding),
            Ok(()) => checked.push((object, reference)),
        }
    }
    // The dry runs are independent: sent concurrently, reported in release order. One into a
    // namespace the release (or gantry) creates and that does not exist yet is answered
    // "namespace not found": noted, not a problem; any other answer proves the namespace is there.
    let options = ApplyOptions {
        dry_run: true,
        force,
    };
    let pending: Vec<_> = checked
        .iter()
        .map(|(object, _)| cluster.apply(object, options))
        .collect();
    let results: Vec<Result<Value, KubeError>> = futures::stream::iter(pending)
        .buffered(cluster.concurrency(64))
        .collect()
        .await;
    let mut existing = BTreeSet::new();
    for ((object, reference), result) in checked.iter().zip(results) {
        match result {
            Err(KubeError::NamespaceMissing { namespace, .. }) if created.contains(&namespace) => {
                findings.add(Finding::Deferred(format!(
                    "{reference}: not dry-run checked (its namespace is created by this release)"
                )));
            }
            Err(err) => {
                if !matches!(err, KubeError::NamespaceMissing { .. }) {
                    existing.extend(reference.namespace.clone());
                }
                findings.add(rejection(object, err));
            }
            Ok(_) => existing.extend(reference.namespace.clone()),
        }
    }
    let existing = existing
        .into_iter()
        .filter(|namespace| created.contains(namespace))
        .collect();
    (findings.errors, findings.deferred, existing)
}

/// Why an object of the release fails pre-flight, or why it is not dry-run checked now.
enum Finding {
    /// A problem: the deploy must not start.
    Error(String),
    /// Not checked now: the dry run cannot tell yet, or the apply handles it.
    Deferred(String),
}

/// The findings of a dry run, in release order.
#[derive(Default)]
struct Findings {
    errors: Vec<String>,
    deferred: Vec<String>,
}

impl Findings {
    /// Adds one finding to its list.
    fn add(&mut self, finding: Finding) {
        match finding {
            Finding::Error(message) => self.errors.push(message),
            Finding::Deferred(message) => self.deferred.push(message),
        }
    }
}

/// Namespaces the release (or gantry) creates: `Namespace` objects of the release and `also_created`.
pub(super) fn created_namespaces(objects: &[Value], also_created: &[String]) -> BTreeSet<String> {
    let mut created: BTreeSet<String> = objects
        .iter()
        .filter(|o| o.get("kind").and_then(Value::as_str) == Some("Namespace"))
        .filter_map(|o| o.pointer("/metadata/name").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    created.extend(also_created.iter().cloned());
    created
}

/// Decides, object by object, whether the dry run can check it now.
struct Triage<'c> {
    cluster: &'c Cluster,
    /// `(apiVersion, kind)` served by the CustomResourceDefinitions of the release.
    defined: BTreeSet<(String, String)>,
}

impl Triage<'_> {
    /// Whether the cluster serves the object's kind. A custom resource whose
    /// CustomResourceDefinition comes with the release (or adds the version it is written in)
    /// cannot be dry-run before that CRD is established.
    async fn kind_served(&self, reference: &ObjectRef) -> Result<(), Finding> {
        match self
            .cluster
            .resolve(&reference.api_version, &reference.kind)
            .await
        {
            Ok(_) => Ok(()),
            Err(KubeError::UnknownKind { .. }) => {
                let key = (reference.api_version.clone(), reference.kind.clone());
                Err(if self.defined.contains(&key) {
                    Finding::Deferred(format!(
                        "{reference}: not dry-run checked (its CustomResourceDefinition is in this release; applied once that is Established)"
                    ))
                } else {
                    Finding::Error(format!(
                        "{reference}: no CustomResourceDefinition in the cluster or in this release serves {} ({}); add the CRD that defines it to the release or install it first",
                        reference.kind, reference.api_version
                    ))
                })
            }
            Err(err) => Err(Finding::Error(err.to_string())),
        }
    }
}

/// What a rejected dry run of `object` means: an error, or (annotated for replacement) a note
/// that it is deleted and created again when the release is applied.
fn rejection(object: &Value, err: KubeError) -> Finding {
    match err {
        KubeError::Immutable {
            object: name,
            fields,
            ..
        } if crate::release::allows_replace(object) => Finding::Deferred(format!(
            "{name}: will be deleted and created again before the release is proven healthy ({} cannot change; annotated {}: \"true\")",
            fields.join(", "),
            crate::release::REPLACE_ANNOTATION
        )),
        err => Finding::Error(err.to_string()),
    }
}

/// `(apiVersion, kind)` of every version the CustomResourceDefinitions of the release serve.
pub fn kinds_defined_by_crds(objects: &[Value]) -> BTreeSet<(String, String)> {
    let mut defined = BTreeSet::new();
    for crd in objects
        .iter()
        .filter(|o| o.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition"))
    {
        let spec = &crd["spec"];
        let (Some(group), Some(kind)) = (spec["group"].as_str(), spec["names"]["kind"].as_str())
        else {
            continue;
        };
        for version in spec["versions"].as_array().into_iter().flatten() {
            if version["served"].as_bool() == Some(false) {
                continue;
            }
            if let Some(name) = version["name"].as_str() {
                defined.insert((format!("{group}/{name}"), kind.to_string()));
            }
        }
    }
    defined
}

/// One permission the deploy needs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Access {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
}

impl Access {
    fn new(verb: &str, group: &str, resource: &str, namespace: Option<&str>) -> Access {
        Access {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            namespace: namespace.map(str::to_string),
        }
    }

    /// The RBAC rule that grants this access, in YAML flow form.
    pub fn rule(&self) -> String {
        let kind = if self.namespace.is_some() {
            format!(
                "Role in namespace {}",
                self.namespace.as_deref().unwrap_or("")
            )
        } else {
            "ClusterRole".into()
        };
        format!(
            "{kind}: {{apiGroups: [\"{}\"], resources: [\"{}\"], verbs: [\"{}\"]}}",
            self.group, self.resource, self.verb
        )
    }
}

/// A resource as discovery names it, for the permission list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ResourceInScope {
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
}

/// Every permission a deploy of `applied` needs: get/create/patch on what it applies,
/// delete on what it may prune or remove in a rollback, list/watch on what rollout
/// tracking reads, and Secrets and Leases in the records namespace.
pub fn required_access(
    applied: &[ResourceInScope],
    prunable: &[ResourceInScope],
    workload_namespaces: &[String],
    records_namespace: &str,
) -> Vec<Access> {
    let mut needed = BTreeSet::new();
    for resource in applied {
        for verb in ["get", "create", "patch", "delete"] {
            needed.insert(Access::new(
                verb,
                &resource.group,
                &resource.resource,
                resource.namespace.as_deref(),
            ));
        }
    }
    for resource in prunable {
        needed.insert(Access::new(
            "delete",
            &resource.group,
            &resource.resource,
            resource.namespace.as_deref(),
        ));
    }
    for namespace in workload_namespaces {
        let ns = Some(namespace.as_str());
        for (group, resource) in [
            ("", "pods"),
            ("apps", "replicasets"),
            ("apps", "controllerrevisions"),
            ("apps", "deployments"),
            ("apps", "statefulsets"),
            ("apps", "daemonsets"),
            ("batch", "jobs"),
        ] {
            needed.insert(Access::new("list", group, resource, ns));
            needed.insert(Access::new("watch", group, resource, ns));
        }
        needed.insert(Access::new("get", "", "pods/log", ns));
        needed.insert(Access::new("list", "", "events", ns));
    }
    let home = Some(records_namespace);
    for verb in ["get", "list", "create", "patch", "delete"] {
        needed.insert(Access::new(verb, "", "secrets", home));
    }
    for verb in ["get", "create", "update"] {
        needed.insert(Access::new(verb, "coordination.k8s.io", "leases", home));
    }
    needed.into_iter().collect()
}

/// What the identity may not do of what the release needs, each a sentence naming the rule
/// that grants it. `home` is the namespace of gantry's records and lock.
pub async fn access_problems(
    cluster: &Cluster,
    objects: &[Value],
    home: &str,
) -> Result<Vec<String>, KubeError> {
    let needed = access_needed(cluster, objects, home).await?;
    let missing = missing_access(cluster, &needed).await?;
    Ok(missing
        .into_iter()
        .map(|access| {
            format!(
                "{} may not {} {}{} (grant it with {})",
                cluster.identity(),
                access.verb,
                access.resource,
                access
                    .namespace
                    .as_deref()
                    .map(|n| format!(" in namespace {n}"))
                    .unwrap_or_default(),
                access.rule()
            )
        })
        .collect())
}

/// The access the release needs: every resource it applies (in its namespace), what tracking
/// reads in the namespaces of its workloads, and the records and lock in `home`.
async fn access_needed(
    cluster: &Cluster,
    objects: &[Value],
    home: &str,
) -> Result<Vec<Access>, KubeError> {
    let mut applied = Vec::new();
    let mut namespaces = BTreeSet::new();
    for object in objects {
        let Some(reference) = ObjectRef::of(object) else {
            continue;
        };
        let resolved = match cluster
            .resolve(&reference.api_version, &reference.kind)
            .await
        {
            Ok(resolved) => resolved,
            // Kinds of CRDs in this release: checked at apply time.
            Err(KubeError::UnknownKind { .. }) => continue,
            Err(err) => return Err(err),
        };
        if crate::release::tracked_kinds(&reference.kind) {
            if let Some(namespace) = &reference.namespace {
                namespaces.insert(namespace.clone());
            }
        }
        applied.push(ResourceInScope {
            group: resolved.resource.group.clone(),
            resource: resolved.resource.plural.clone(),
            namespace: if resolved.namespaced {
                reference.namespace.clone()
            } else {
                None
            },
        });
    }
    applied.sort();
    applied.dedup();
    let namespaces: Vec<String> = namespaces.into_iter().collect();
    Ok(required_access(&applied, &[], &namespaces, home))
}

/// The access the API server must be asked about one by one: whatever the rules of its
/// namespace (`rules`, from a SelfSubjectRulesReview each) do not grant. Cluster-scoped access
/// is always asked (a namespace's rules do not say where they come from).
pub fn not_granted<'a>(
    needed: &'a [Access],
    rules: &BTreeMap<String, Vec<ResourceRule>>,
) -> Vec<&'a Access> {
    needed
        .iter()
        .filter(|access| {
            let granted = access
                .namespace
                .as_ref()
                .and_then(|namespace| rules.get(namespace))
                .is_some_and(|rules| rules.iter().any(|rule| grants(rule, access)));
            !granted
        })
        .collect()
}

/// Whether an RBAC rule grants `access` (as the API server matches it: `*` for any verb,
/// group or resource, `*/sub` for a subresource of any resource; a rule limited to named
/// objects grants nothing here, since creating cannot be limited by name).
pub fn grants(rule: &ResourceRule, access: &Access) -> bool {
    let any = |list: &Option<Vec<String>>, wanted: &str| {
        list.iter()
            .flatten()
            .any(|item| item == "*" || item == wanted)
    };
    if rule.resource_names.as_ref().is_some_and(|n| !n.is_empty()) {
        return false;
    }
    let verb = rule.verbs.iter().any(|v| v == "*" || *v == access.verb);
    let resource = rule.resources.iter().flatten().any(|r| {
        r == "*"
            || *r == access.resource
            || match (r.split_once('/'), access.resource.split_once('/')) {
                (Some(("*", sub)), Some((_, wanted))) => sub == wanted,
                _ => false,
            }
    });
    verb && any(&rule.api_groups, &access.group) && resource
}

/// Asks the API server for each access: one SelfSubjectRulesReview per namespace, then a
/// SelfSubjectAccessReview for each access the rules do not grant; returns the missing ones.
pub async fn missing_access(
    cluster: &Cluster,
    needed: &[Access],
) -> Result<Vec<Access>, KubeError> {
    let concurrency = cluster.concurrency(64);
    let namespaces: BTreeSet<&String> =
        needed.iter().filter_map(|a| a.namespace.as_ref()).collect();
    let reviews: Vec<_> = namespaces
        .into_iter()
        .map(|namespace| async move { (namespace.clone(), cluster.rules(namespace).await) })
        .collect();
    let mut rules = BTreeMap::new();
    for (namespace, answer) in futures::stream::iter(reviews)
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await
    {
        // No rules review (an old or locked-down API server): every access is asked alone.
        if let Ok(found) = answer {
            rules.insert(namespace, found);
        }
    }
    // Independent reviews, asked concurrently (collected first: a stream built from a
    // borrowing closure is not provably Send).
    let reviews: Vec<_> = not_granted(needed, &rules)
        .into_iter()
        .map(|access| review(cluster, access))
        .collect();
    let answers: Vec<Result<Option<Access>, KubeError>> = futures::stream::iter(reviews)
        .buffered(concurrency)
        .collect()
        .await;
    let mut missing = Vec::new();
    for answer in answers {
        if let Some(access) = answer? {
            missing.push(access);
        }
    }
    Ok(missing)
}

/// One SelfSubjectAccessReview; `Some(access)` when it is not allowed.
async fn review(cluster: &Cluster, access: &Access) -> Result<Option<Access>, KubeError> {
    let (resource, subresource) = match access.resource.split_once('/') {
        Some((resource, sub)) => (resource, Some(sub)),
        None => (access.resource.as_str(), None),
    };
    let mut attributes = json!({
        "verb": access.verb,
        "group": access.group,
        "resource": resource,
    });
    if let Some(sub) = subresource {
        attributes["subresource"] = json!(sub);
    }
    if let Some(namespace) = &access.namespace {
        attributes["namespace"] = json!(namespace);
    }
    let allowed = cluster.may(&attributes).await?;
    Ok((!allowed).then(|| access.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_found_in_every_pod_spec_kind() {
        let objects = vec![
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"template": {"spec": {
                    "initContainers": [{"name": "migrate", "image": "r/migrate:1"}],
                    "containers": [{"name": "web", "image": "r/web:1"}]}}}}),
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": "shop"},
                "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "run", "image": "r/job:1"}]}}}}}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"image": "not/an:image"}}),
        ];
        let found: Vec<(String, String, String)> = container_images(&objects)
            .into_iter()
            .map(|i| (i.container, i.pointer, i.image))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "initContainers[name=migrate]".into(),
                    "/spec/template/spec/initContainers/0/image".into(),
                    "r/migrate:1".into()
                ),
                (
                    "containers[name=web]".into(),
                    "/spec/template/spec/containers/0/image".into(),
                    "r/web:1".into()
                ),
                (
                    "containers[name=run]".into(),
                    "/spec/jobTemplate/spec/template/spec/containers/0/image".into(),
                    "r/job:1".into()
                ),
            ]
        );
    }

    #[test]
    fn rules_grant_what_rbac_would_and_nothing_more() {
        let rule = |verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]| {
            let list = |items: &[&str]| Some(items.iter().map(|s| s.to_string()).collect());
            ResourceRule {
                verbs: verbs.iter().map(|s| s.to_string()).collect(),
                api_groups: list(groups),
                resources: list(resources),
                resource_names: if names.is_empty() { None } else { list(names) },
            }
        };
        let ns = Some("shop");
        for (rule, access, granted) in [
            (
                rule(&["patch"], &["apps"], &["deployments"], &[]),
                Access::new("patch", "apps", "deployments", ns),
                true,
            ),
            (
                rule(&["*"], &["*"], &["*"], &[]),
                Access::new("delete", "", "secrets", ns),
                true,
            ),
            (
                rule(&["get"], &["apps"], &["deployments"], &[]),
                Access::new("patch", "apps", "deployments", ns),
                false,
            ),
            (
                rule(&["patch"], &[""], &["deployments"], &[]),
                Access::new("patch", "apps", "deployments", ns),
                false,
            ),
            (
                rule(&["get"], &[""], &["pods"], &[]),
                Access::new("get", "", "pods/log", ns),
                false,
            ),
            (
                rule(&["get"], &[""], &["pods/log"], &[]),
                Access::new("get", "", "pods/log", ns),
                true,
            ),
            (
                rule(&["get"], &[""], &["*/log"], &[]),
                Access::new("get", "", "pods/log", ns),
                true,
            ),
            (
                rule(&["get"], &[""], &["*/log"], &[]),
                Access::new("get", "", "pods", ns),
                false,
            ),
            (
                rule(&["create"], &[""], &["secrets"], &["web"]),
                Access::new("create", "", "secrets", ns),
                false,
            ),
        ] {
            assert_eq!(grants(&rule, &access), granted, "{rule:?} {access:?}");
        }
        let needed = vec![
            Access::new("patch", "apps", "deployments", ns),
            Access::new("patch", "apps", "deployments", Some("other")),
            Access::new("create", "rbac.authorization.k8s.io", "clusterroles", None),
        ];
        let rules = BTreeMap::from([
            ("shop".to_string(), vec![rule(&["*"], &["*"], &["*"], &[])]),
            ("other".to_string(), vec![]),
        ]);
        assert_eq!(not_granted(&needed, &rules), [&needed[1], &needed[2]]);
    }

    #[test]
    fn required_access_covers_apply_prune_tracking_records_and_lock() {
        let applied = [ResourceInScope {
            group: "apps".into(),
            resource: "deployments".into(),
            namespace: Some("shop".into()),
        }];
        let prunable = [ResourceInScope {
            group: "".into(),
            resource: "services".into(),
            namespace: Some("shop".into()),
        }];
        let needed = required_access(&applied, &prunable, &["shop".into()], "shop");
        let has = |verb: &str, group: &str, resource: &str| {
            needed
                .iter()
                .any(|a| a.verb == verb && a.group == group && a.resource == resource)
        };
        assert!(has("patch", "apps", "deployments"));
        assert!(has("create", "apps", "deployments"));
        assert!(has("delete", "", "services"));
        assert!(!has("patch", "", "services"));
        assert!(has("watch", "", "pods"));
        assert!(has("get", "", "pods/log"));
        assert!(has("create", "", "secrets"));
        assert!(has("update", "coordination.k8s.io", "leases"));
        assert_eq!(
            Access::new("patch", "apps", "deployments", Some("shop")).rule(),
            "Role in namespace shop: {apiGroups: [\"apps\"], resources: [\"deployments\"], verbs: [\"patch\"]}"
        );
    }
}
