//! Pushing minimal OCI images to a registry through its v2 API (no Docker needed), for tests and benchmarks that need images to exist.

use serde_json::json;
use sha2::{Digest, Sha256};

/// `sha256:<hex>` of some bytes.
pub fn digest_of(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    format!(
        "sha256:{}",
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Pushes a minimal OCI image (a config blob, no layers) as `repository:tag` through the
/// registry's v2 API; returns the manifest digest.
pub async fn push_image(
    http: &reqwest::Client,
    base: &str,
    auth: Option<(&str, &str)>,
    repository: &str,
    tag: &str,
) -> String {
    let with_auth = |request: reqwest::RequestBuilder| match auth {
        Some((user, password)) => request.basic_auth(user, Some(password)),
        None => request,
    };
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"tag":"{tag}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    );
    let config_digest = digest_of(config.as_bytes());
    let started = with_auth(http.post(format!("{base}/v2/{repository}/blobs/uploads/")))
        .send()
        .await
        .expect("registry reachable (bash .ci/testbed up)");
    assert_eq!(started.status().as_u16(), 202, "{:?}", started.text().await);
    let location = started.headers()["location"].to_str().unwrap().to_string();
    let location = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    let put = with_auth(http.put(format!("{location}{separator}digest={config_digest}")))
        .header("content-type", "application/octet-stream")
        .body(config.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 201, "{:?}", put.text().await);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": []
    })
    .to_string();
    let put = with_auth(http.put(format!("{base}/v2/{repository}/manifests/{tag}")))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 201, "{:?}", put.text().await);
    digest_of(manifest.as_bytes())
}
