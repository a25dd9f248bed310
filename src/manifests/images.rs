//! Pins the container images of manifests to the digests the build phase produced: every image whose repository matches a built one becomes `repository@digest`.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use crate::image::name::repository_of;

/// One container image that was rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedImage {
    /// `spec.template.spec.containers[name=api]`-style location.
    pub container: String,
    pub from: String,
    pub to: String,
}

/// Where each kind keeps its pod spec, as a JSON pointer: the one table that pinning and the
/// pre-flight's image check both read.
pub fn pod_spec_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("/spec"),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => Some("/spec/template/spec"),
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

/// The container lists of a pod spec, in the order they start.
pub const CONTAINER_LISTS: [&str; 3] = ["initContainers", "containers", "ephemeralContainers"];

/// Rewrites the images of `object` (containers, initContainers, ephemeralContainers) whose
/// repository is a key of `built` (repository -> `repository@digest`); returns what changed.
pub fn pin_images(
    kind: &str,
    object: &mut Value,
    built: &BTreeMap<String, String>,
) -> Vec<PinnedImage> {
    let Some(pointer) = pod_spec_pointer(kind) else {
        return Vec::new();
    };
    let mut spec = Some(&mut *object);
    for key in pointer.split('/').skip(1) {
        spec = spec.and_then(|value| value.get_mut(key));
    }
    let Some(spec) = spec else {
        return Vec::new();
    };
    let mut pinned = Vec::new();
    let path = pointer[1..].replace('/', ".");
    for list in CONTAINER_LISTS {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_sequence_mut) else {
            continue;
        };
        for container in containers {
            let name = container
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            let Some(image) = container
                .get("image")
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                continue;
            };
            if let Some(reference) = built.get(repository_of(&image)) {
                if *reference != image {
                    if let Some(mapping) = container.as_mapping_mut() {
                        mapping.insert("image".into(), reference.clone().into());
                    }
                    pinned.push(PinnedImage {
                        container: format!("{path}.{list}[{name}]"),
                        from: image,
                        to: reference.clone(),
                    });
                }
            }
        }
    }
    pinned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_images_of_every_container_list_are_pinned() {
        let built = BTreeMap::from([
            (
                "reg/shop/api".to_string(),
                "reg/shop/api@sha256:1111".to_string(),
            ),
            (
                "reg/shop/migrate".to_string(),
                "reg/shop/migrate@sha256:2222".to_string(),
            ),
        ]);
        let mut deployment: Value = serde_yaml_ng::from_str(
            "spec:\n  template:\n    spec:\n      initContainers:\n      - {name: migrate, image: \"reg/shop/migrate:latest\"}\n      containers:\n      - {name: api, image: reg/shop/api}\n      - {name: sidecar, image: envoy:1.30}\n",
        )
        .unwrap();
        let pinned = pin_images("Deployment", &mut deployment, &built);
        assert_eq!(pinned.len(), 2);
        assert_eq!(
            pinned[0].container,
            "spec.template.spec.initContainers[migrate]"
        );
        assert_eq!(
            deployment["spec"]["template"]["spec"]["containers"][0]["image"],
            "reg/shop/api@sha256:1111"
        );
        assert_eq!(
            deployment["spec"]["template"]["spec"]["containers"][1]["image"],
            "envoy:1.30"
        );

        let mut cronjob: Value = serde_yaml_ng::from_str(
            "spec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n          - {name: job, image: \"reg/shop/api:old\"}\n",
        )
        .unwrap();
        assert_eq!(pin_images("CronJob", &mut cronjob, &built).len(), 1);
        let mut config_map: Value = serde_yaml_ng::from_str("data: {image: reg/shop/api}").unwrap();
        assert!(pin_images("ConfigMap", &mut config_map, &built).is_empty());
    }
}
