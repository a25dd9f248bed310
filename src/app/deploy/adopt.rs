//! Taking over from Helm (`adopt-helm-release`): the objects of the release whose live copies belong to the named Helm release are marked so their apply takes the fields Helm's field manager owns, and keep the images Helm runs so no pod restarts.

use std::collections::BTreeMap;

use serde_json::Value;

use super::engine::Engine;
use super::target::{Objects, Store};
use crate::charts;
use crate::release::ObjectRef;

/// The objects being taken over, and the live copies their images are compared with.
#[derive(Debug, Default)]
pub(super) struct Adoption {
    /// Index in the release → (the object as rendered, its live copy).
    pub objects: BTreeMap<usize, (Value, Value)>,
}

impl<T: Store + Objects> Engine<'_, T> {
    /// Finds and marks the release's objects that belong to the Helm release named by
    /// `adopt-helm-release` (one LIST per kind and namespace). Nothing is written.
    pub(super) async fn find_adopted(&self, objects: &mut [Value]) -> Adoption {
        let mut adoption = Adoption::default();
        let Some(release) = self.settings.adopt_helm_release.clone() else {
            return adoption;
        };
        // One LIST per kind and namespace of the release.
        let mut groups: BTreeMap<(String, String, String), Vec<usize>> = BTreeMap::new();
        for (index, object) in objects.iter().enumerate() {
            let Some(reference) = ObjectRef::of(object) else {
                continue;
            };
            groups
                .entry((
                    reference.api_version.clone(),
                    reference.kind.clone(),
                    reference.namespace.clone().unwrap_or_default(),
                ))
                .or_default()
                .push(index);
        }
        let lists =
            futures::future::join_all(groups.keys().map(|(api_version, kind, namespace)| {
                self.target.list(api_version, kind, namespace)
            }))
            .await;
        for ((_, indexes), listed) in groups.iter().zip(lists) {
            let live = match listed {
                Ok(live) => live,
                Err(err) => {
                    self.runner.warning(&format!(
                        "adopt-helm-release: objects could not be listed to find those of Helm release `{release}`: {err}"
                    ));
                    continue;
                }
            };
            for index in indexes {
                let object = &objects[*index];
                let name = object["metadata"]["name"].as_str();
                let Some(found) = live.iter().find(|l| l["metadata"]["name"].as_str() == name)
                else {
                    continue;
                };
                if charts::helm_release_of(found).map(|(name, _)| name) == Some(release.as_str()) {
                    adoption
                        .objects
                        .insert(*index, (object.clone(), found.clone()));
                }
            }
        }
        for index in adoption.objects.keys() {
            charts::mark_adopted(&mut objects[*index], &release);
        }
        if adoption.objects.is_empty() {
            self.runner.warning(&format!(
                "adopt-helm-release: no object of the release belongs to the Helm release `{release}` (none is annotated meta.helm.sh/release-name: {release}); nothing is taken over"
            ));
        } else {
            self.runner.info(&format!(
                "taking over {} object{} of the Helm release `{release}`: the fields Helm's field manager owns become gantry's; nothing is deleted or recreated; Helm's release records are left as they are (remove them with: kubectl delete secret -n NAMESPACE -l owner=helm,name={release}; never helm uninstall, which deletes the objects)",
                adoption.objects.len(),
                if adoption.objects.len() == 1 { "" } else { "s" }
            ));
        }
        adoption
    }

    /// After pinning: a taken-over container whose live image is the image as rendered keeps
    /// it, so taking over restarts no pod (later releases pin it).
    pub(super) fn keep_adopted_images(&self, adoption: &Adoption, objects: &mut [Value]) {
        for (index, (rendered, live)) in &adoption.objects {
            let kept = charts::keep_live_images(&mut objects[*index], rendered, live);
            if !kept.is_empty() {
                self.runner.info(&format!(
                    "{}: kept the image{} Helm runs ({}) so taking over restarts no pod ({} pinned by digest once adopt-helm-release is removed)",
                    ObjectRef::of(&objects[*index])
                        .map(|r| r.to_string())
                        .unwrap_or_default(),
                    if kept.len() == 1 { "" } else { "s" },
                    kept.join(", "),
                    if kept.len() == 1 { "it is" } else { "they are" }
                ));
            }
        }
    }
}
