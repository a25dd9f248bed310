//! What the build phase reports per image: the serializable [`BuiltImage`], the step outputs, the JSON output and the Markdown table.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Whether an image was built by this run or taken from the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageStatus {
    /// Built and pushed.
    Built,
    /// Built (and smoke-tested) but not pushed: `plan`, or `push: false`.
    BuiltNotPushed,
    /// The commit tag existed in the registry; nothing was built.
    Reused,
}

impl ImageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageStatus::Built => "built",
            ImageStatus::BuiltNotPushed => "built, not pushed",
            ImageStatus::Reused => "reused",
        }
    }
}

/// One image as the phase ended it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuiltImage {
    pub name: String,
    /// `host/repository`.
    pub uri: String,
    pub tag: String,
    /// The manifest digest the registry serves; `None` when the image was not pushed.
    pub digest: Option<String>,
    pub status: ImageStatus,
    pub duration_ms: u64,
}

impl BuiltImage {
    /// `repository@digest`, the only form later phases use.
    pub fn reference(&self) -> Option<String> {
        self.digest.as_ref().map(|d| format!("{}@{d}", self.uri))
    }
}

/// Whole milliseconds of a duration.
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The step outputs: `image-<name>-uri`, `image-<name>-digest`, and `image-details` (JSON of all).
pub fn outputs(images: &[BuiltImage]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for image in images {
        out.insert(format!("image-{}-uri", image.name), image.uri.clone());
        out.insert(
            format!("image-{}-digest", image.name),
            image.digest.clone().unwrap_or_default(),
        );
    }
    out.insert(
        "image-details".to_string(),
        serde_json::to_string(images).unwrap_or_else(|_| "[]".into()),
    );
    out
}

/// `sha256:0123456789ab` (12 hex digits).
pub fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algo, hex)) => format!("{algo}:{}", &hex[..hex.len().min(12)]),
        None => digest.chars().take(19).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, digest: Option<&str>, status: ImageStatus) -> BuiltImage {
        BuiltImage {
            name: name.into(),
            uri: format!("127.0.0.1:5000/team/{name}"),
            tag: "0123456789abcdef0123456789abcdef01234567".into(),
            digest: digest.map(String::from),
            status,
            duration_ms: 12_500,
        }
    }

    #[test]
    fn outputs_name_every_image() {
        let digest = "sha256:aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899";
        let images = [
            image("api", Some(digest), ImageStatus::Built),
            image("web", Some(digest), ImageStatus::Reused),
            image("job", None, ImageStatus::BuiltNotPushed),
        ];
        let out = outputs(&images);
        assert_eq!(out["image-api-uri"], "127.0.0.1:5000/team/api");
        assert_eq!(out["image-web-digest"], digest);
        assert_eq!(out["image-job-digest"], "");
        let json: serde_json::Value = serde_json::from_str(&out["image-details"]).unwrap();
        assert_eq!(json[1]["status"], "reused");
        assert_eq!(json[2]["status"], "built-not-pushed");
        assert_eq!(json[0]["duration_ms"], 12_500);
        assert_eq!(
            images[0].reference().unwrap(),
            format!("127.0.0.1:5000/team/api@{digest}")
        );
        assert_eq!(images[2].reference(), None);
    }

    #[test]
    fn short_digests() {
        assert_eq!(
            short_digest("sha256:0123456789abcdef"),
            "sha256:0123456789ab"
        );
        assert_eq!(short_digest("sha256:01"), "sha256:01");
        assert_eq!(short_digest("nocolon"), "nocolon");
    }
}
