//! What the build phase reports per image: the serializable [`BuiltImage`], the step outputs, the JSON output and the Markdown table.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::report::summary::{escape_markdown, human_duration};

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

/// The Markdown table of the job summary.
pub fn notes(images: &[BuiltImage]) -> Vec<String> {
    let mut lines = vec![
        "| Image | Repository | Tag | Digest | Result | Duration |".to_string(),
        "|---|---|---|---|---|---|".to_string(),
    ];
    for image in images {
        let digest = image
            .digest
            .as_deref()
            .map(short_digest)
            .unwrap_or_else(|| "-".into());
        lines.push(format!(
            "| {} | `{}` | `{}` | `{}` | {} | {} |",
            escape_markdown(&image.name),
            image.uri,
            short_tag(&image.tag),
            digest,
            image.status.as_str(),
            human_duration(Duration::from_millis(image.duration_ms)),
        ));
    }
    if images
        .iter()
        .any(|i| i.status == ImageStatus::BuiltNotPushed)
    {
        lines.push(String::new());
        lines.push("Images built but not pushed have no digest yet: a plan shows them by commit tag, a deploy pins them by the digest the registry serves after the push.".to_string());
    }
    lines
}

/// `sha256:0123456789ab` (12 hex digits).
pub fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algo, hex)) => format!("{algo}:{}", &hex[..hex.len().min(12)]),
        None => digest.chars().take(19).collect(),
    }
}

fn short_tag(tag: &str) -> &str {
    if tag.len() == 40 && tag.bytes().all(|b| b.is_ascii_hexdigit()) {
        &tag[..12]
    } else {
        tag
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
    fn outputs_and_notes() {
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

        let notes = notes(&images);
        assert_eq!(notes.len(), 7);
        assert!(notes[6].contains("no digest yet"), "{}", notes[6]);
        assert_eq!(super::notes(&images[..2]).len(), 4);
        assert!(
            notes[2].contains("`sha256:aabbccddeeff`") && notes[2].contains("| built |"),
            "{}",
            notes[2]
        );
        assert!(notes[2].contains("`0123456789ab`"), "{}", notes[2]);
        assert!(notes[3].contains("| reused |"));
        assert!(
            notes[4].contains("| `-` | built, not pushed |"),
            "{}",
            notes[4]
        );
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
