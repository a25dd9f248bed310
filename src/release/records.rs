//! How release records are stored and trusted: one or more Secrets per release (gzip JSON split across parts when it outgrows one Secret), a digest chain from each record to its predecessor, and the index of record digests that only gantry writes; pure, table-tested.
//!
//! Design note: gantry applies what its records say (a rollback re-applies a recorded release,
//! recovery deletes what a pending record applied), with its own, often wide, rights. Someone
//! who may only create or edit Secrets in the records' namespace must not be able to make it do
//! anything by planting or editing a record. So every record carries the digest of its
//! predecessor's content (a chain), and the digests of the records themselves are kept in an
//! index object that gantry's identity alone may write: the Lease `gantry.records.<environment>`
//! (annotation [`INDEX_ANNOTATION`]). A record whose stored bytes match no digest of the index,
//! or whose chain link is wrong, is refused before anything is applied. The index keeps the
//! previous digest of a record next to the new one while a record is rewritten, so a run killed
//! between writing the index and the record leaves both trusted. Records written by gantry 0.1
//! (no index yet) are adopted into the chain once, and reported.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{Release, ENVIRONMENT_LABEL, RELEASE_LABEL, SECRET_TYPE, STATUS_LABEL};

/// The annotation of the index Lease that holds the record digests.
pub const INDEX_ANNOTATION: &str = "gantry.dev/records-index";
/// The label numbering the parts of a record split across Secrets (1 is the first).
pub const PART_LABEL: &str = "gantry.dev/part";
/// The most encoded bytes one part holds: a Secret holds at most 1 MiB in all.
pub const PART_BYTES: usize = 900 * 1024;
/// The most parts a record may have: a release larger than this (about 10 MiB compressed, a
/// hundred MiB of YAML) is refused before anything is applied.
pub const MAX_PARTS: usize = 16;

/// The name of the index object (a Lease) of an environment.
pub fn index_name(environment: &str) -> String {
    format!("gantry.records.{environment}")
}

/// Why a record cannot be stored or used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("release record {secret} has no data")]
    Missing { secret: String },
    #[error("release record {secret} is not valid base64/gzip/JSON: {reason}")]
    Corrupt { secret: String, reason: String },
    #[error("release record {secret} lacks part {part} of {parts}")]
    PartMissing {
        secret: String,
        part: usize,
        parts: usize,
    },
    #[error("the release record is {size} bytes compressed, over what {MAX_PARTS} Secrets hold; split the release or move large data out of its ConfigMaps")]
    TooLarge { size: usize },
}

/// `sha256:<hex>` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// The digest of what a release *is*, whatever its status says: its number, environment,
/// commit, images, creation time and manifests. The next record's chain link points at it.
pub fn content_digest(release: &Release) -> String {
    let content = json!({
        "environment": release.environment,
        "number": release.number,
        "commit": release.commit,
        "images": release.images,
        "created": release.created,
        "manifests": release.manifests,
        "restored_from": release.restored_from,
    });
    digest(content.to_string().as_bytes())
}

/// The Secrets that store `release` (one, or several parts), and the digest of the stored bytes.
pub fn encode(release: &Release, namespace: &str) -> Result<(Vec<Value>, String), RecordError> {
    encode_in_parts(release, namespace, MAX_PARTS)
}

fn encode_in_parts(
    release: &Release,
    namespace: &str,
    max_parts: usize,
) -> Result<(Vec<Value>, String), RecordError> {
    let name = release.secret_name();
    let json = serde_json::to_vec(release).map_err(|err| RecordError::Corrupt {
        secret: name.clone(),
        reason: err.to_string(),
    })?;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let compressed = encoder
        .write_all(&json)
        .and_then(|_| encoder.finish())
        .map_err(|err| RecordError::Corrupt {
            secret: name.clone(),
            reason: err.to_string(),
        })?;
    let stored_digest = digest(&compressed);
    let chunks: Vec<&[u8]> = compressed.chunks(PART_BYTES * 3 / 4).collect();
    if chunks.len() > max_parts {
        return Err(RecordError::TooLarge {
            size: compressed.len(),
        });
    }
    let parts = chunks.len().max(1);
    let secrets = (0..parts)
        .map(|index| {
            let data = base64::engine::general_purpose::STANDARD
                .encode(chunks.get(index).copied().unwrap_or_default());
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "type": SECRET_TYPE,
                "metadata": {
                    "name": part_name(&name, index + 1),
                    "namespace": namespace,
                    "labels": {
                        "app.kubernetes.io/managed-by": "gantry",
                        ENVIRONMENT_LABEL: release.environment,
                        RELEASE_LABEL: release.number.to_string(),
                        STATUS_LABEL: release.status.as_str(),
                        PART_LABEL: (index + 1).to_string(),
                    },
                    "annotations": {"gantry.dev/parts": parts.to_string()},
                },
                "data": {"release": data},
            })
        })
        .collect();
    Ok((secrets, stored_digest))
}

/// Part 1 keeps the record's own name; part `n` > 1 is `<name>.part<n>`.
pub fn part_name(name: &str, part: usize) -> String {
    if part <= 1 {
        name.to_string()
    } else {
        format!("{name}.part{part}")
    }
}

/// Decodes the Secrets of one release (its parts, in any order, as the API returns them:
/// `data` values base64): the release and the digest of the stored bytes.
pub fn decode(secrets: &[&Value]) -> Result<(Release, String), RecordError> {
    let first = secrets
        .iter()
        .find(|s| part_of(s) == 1)
        .or(secrets.first())
        .copied();
    let name = first
        .and_then(|s| s.pointer("/metadata/name"))
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    let parts: usize = first
        .and_then(|s| s.pointer("/metadata/annotations/gantry.dev~1parts"))
        .and_then(Value::as_str)
        .and_then(|p| p.parse().ok())
        .unwrap_or(1);
    let mut compressed = Vec::new();
    for part in 1..=parts.min(MAX_PARTS) {
        let secret = secrets.iter().find(|s| part_of(s) == part).ok_or_else(|| {
            RecordError::PartMissing {
                secret: name.clone(),
                part,
                parts,
            }
        })?;
        let data = secret
            .pointer("/data/release")
            .and_then(Value::as_str)
            .ok_or_else(|| RecordError::Missing {
                secret: name.clone(),
            })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|err| RecordError::Corrupt {
                secret: name.clone(),
                reason: err.to_string(),
            })?;
        compressed.extend(bytes);
    }
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .take(256 * 1024 * 1024)
        .read_to_end(&mut json)
        .map_err(|err| RecordError::Corrupt {
            secret: name.clone(),
            reason: err.to_string(),
        })?;
    let release: Release = serde_json::from_slice(&json).map_err(|err| RecordError::Corrupt {
        secret: name.clone(),
        reason: err.to_string(),
    })?;
    Ok((release, digest(&compressed)))
}

/// Which part of a record a Secret is (1 when unlabelled: records of gantry 0.1).
pub fn part_of(secret: &Value) -> usize {
    secret
        .pointer(&format!(
            "/metadata/labels/{}",
            PART_LABEL.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
}

/// The record number a Secret belongs to.
pub fn number_of(secret: &Value) -> Option<u64> {
    secret
        .pointer(&format!(
            "/metadata/labels/{}",
            RELEASE_LABEL.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .and_then(|n| n.parse().ok())
}

/// Decodes every release record among `secrets` (Secrets of the environment, any order): the
/// releases with the digests of their stored bytes, oldest first, and one warning per record
/// that cannot be read.
pub fn decode_all(secrets: &[Value]) -> (Vec<(Release, String)>, Vec<String>) {
    let mut by_number: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    let mut warnings = Vec::new();
    for secret in secrets
        .iter()
        .filter(|s| s.get("type").and_then(Value::as_str) == Some(SECRET_TYPE))
    {
        match number_of(secret) {
            Some(number) => by_number.entry(number).or_default().push(secret),
            None => {
                warnings.push(format!(
                "Secret {} has the type of a release record but no {RELEASE_LABEL} label; ignored",
                secret.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("?")
            ))
            }
        }
    }
    let mut releases = Vec::new();
    for parts in by_number.values() {
        match decode(parts) {
            Ok(found) => releases.push(found),
            Err(err) => warnings.push(err.to_string()),
        }
    }
    releases.sort_by_key(|(r, _)| r.number);
    (releases, warnings)
}

/// The digests gantry wrote, per release number: while a record is rewritten both its old and
/// its new digest are trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordIndex {
    /// Release number -> trusted digests of its stored bytes (at most two).
    pub records: BTreeMap<u64, Vec<String>>,
}

impl RecordIndex {
    /// Reads the index from the annotation's JSON.
    pub fn parse(text: &str) -> Option<RecordIndex> {
        serde_json::from_str(text).ok()
    }

    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The index about to be written before record `number` is stored as `new_digest`: the
    /// digest it has now stays trusted until the record itself is written.
    pub fn before_write(&self, number: u64, new_digest: &str) -> RecordIndex {
        let mut next = self.clone();
        let entry = next.records.entry(number).or_default();
        entry.retain(|d| d != new_digest);
        let keep = entry.last().cloned();
        *entry = keep.into_iter().chain([new_digest.to_string()]).collect();
        next
    }

    /// The index without the records of these numbers (trimmed).
    pub fn without(&self, numbers: &[u64]) -> RecordIndex {
        let mut next = self.clone();
        for number in numbers {
            next.records.remove(number);
        }
        next
    }
}

/// Checks stored records against the index and their chain links: every record's stored digest
/// must be one the index trusts for its number, and a record's link must name its predecessor's
/// content. Returns one problem per record refused, naming it.
pub fn verify(records: &[(Release, String)], index: &RecordIndex) -> Vec<String> {
    let mut problems = Vec::new();
    let by_number: BTreeMap<u64, &Release> = records.iter().map(|(r, _)| (r.number, r)).collect();
    for (release, stored) in records {
        let name = release.secret_name();
        match index.records.get(&release.number) {
            None => problems.push(format!(
                "release record {name} was not written by gantry: its number is not in the record index (Lease {}); someone created it",
                index_name(&release.environment)
            )),
            Some(trusted) if !trusted.contains(stored) => problems.push(format!(
                "release record {name} was changed after gantry wrote it: its content matches no digest of the record index (Lease {})",
                index_name(&release.environment)
            )),
            Some(_) => {}
        }
        if let (Some(link), Some(previous)) = (
            &release.previous_digest,
            release
                .number
                .checked_sub(1)
                .and_then(|n| by_number.get(&n)),
        ) {
            if *link != content_digest(previous) {
                problems.push(format!(
                    "release record {name} does not follow release {}: its chain link names other content",
                    previous.number
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::ReleaseStatus;

    fn release(number: u64, manifests: Vec<Value>) -> Release {
        crate::release::tests::release(number, ReleaseStatus::Deployed, &manifests)
    }

    fn config_map(name: &str, blob: String) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "shop"},
            "data": {"blob": blob}})
    }

    /// Incompressible text: a xorshift stream of letters.
    fn noise(length: usize, seed: u64) -> String {
        let mut state = seed;
        (0..length)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'a' + (state % 26) as u8)
            })
            .collect()
    }

    /// The API returns what was written, `data` as given (base64).
    fn stored(secrets: &[Value]) -> Vec<&Value> {
        secrets.iter().collect()
    }

    #[test]
    fn a_small_record_is_one_secret_and_round_trips() {
        let original = release(7, vec![config_map("cfg", "a".into())]);
        let (secrets, written) = encode(&original, "shop").unwrap();
        assert_eq!(secrets.len(), 1);
        assert_eq!(secrets[0]["metadata"]["name"], "gantry.release.dev.v7");
        assert_eq!(secrets[0]["metadata"]["labels"][STATUS_LABEL], "deployed");
        assert_eq!(secrets[0]["type"], SECRET_TYPE);
        let (decoded, read) = decode(&stored(&secrets)).unwrap();
        assert_eq!(decoded, original);
        assert_eq!(read, written);
    }

    #[test]
    fn a_large_release_is_split_across_secrets_each_under_the_limit() {
        let manifests = (0..4)
            .map(|i| config_map(&format!("big-{i}"), noise(700_000, i + 1)))
            .collect();
        let original = release(3, manifests);
        let (secrets, written) = encode(&original, "shop").unwrap();
        assert!(secrets.len() > 1, "{}", secrets.len());
        for secret in &secrets {
            assert!(
                secret.to_string().len() < 1024 * 1024,
                "a part fits a Secret"
            );
        }
        assert_eq!(
            secrets[1]["metadata"]["name"],
            "gantry.release.dev.v3.part2"
        );
        // Parts come back from a list in any order.
        let mut shuffled = stored(&secrets);
        shuffled.reverse();
        let (decoded, read) = decode(&shuffled).unwrap();
        assert_eq!(decoded, original);
        assert_eq!(read, written);
        // A missing part is named.
        let missing = decode(&stored(&secrets[..1])).unwrap_err();
        assert!(
            matches!(missing, RecordError::PartMissing { part: 2, .. }),
            "{missing}"
        );
    }

    #[test]
    fn a_release_beyond_every_part_is_refused_before_anything_is_written() {
        let manifests: Vec<Value> = (0..4)
            .map(|i| config_map(&format!("big-{i}"), noise(700_000, i + 1)))
            .collect();
        assert!(matches!(
            encode_in_parts(&release(1, manifests.clone()), "shop", 2),
            Err(RecordError::TooLarge { .. })
        ));
        assert!(encode_in_parts(&release(1, manifests), "shop", MAX_PARTS).is_ok());
    }

    #[test]
    fn planted_edited_and_misplaced_records_are_refused_naming_them() {
        let first = release(1, vec![config_map("cfg", "a".into())]);
        let mut second = release(2, vec![config_map("cfg", "b".into())]);
        second.previous_digest = Some(content_digest(&first));
        let (_, d1) = encode(&first, "shop").unwrap();
        let (_, d2) = encode(&second, "shop").unwrap();
        let index = RecordIndex::default()
            .before_write(1, &d1)
            .before_write(2, &d2);
        assert!(verify(
            &[(first.clone(), d1.clone()), (second.clone(), d2.clone())],
            &index
        )
        .is_empty());

        // Planted: a record number the index never saw.
        let planted = release(3, vec![config_map("evil", "x".into())]);
        let (_, d3) = encode(&planted, "shop").unwrap();
        let problems = verify(&[(planted, d3)], &index);
        assert!(
            problems[0].contains("gantry.release.dev.v3 was not written by gantry"),
            "{problems:?}"
        );

        // Edited: the content (or just its status) changed.
        let mut edited = second.clone();
        edited.manifests = vec![config_map("cfg", "evil".into())];
        let (_, edited_digest) = encode(&edited, "shop").unwrap();
        let problems = verify(&[(edited, edited_digest)], &index);
        assert!(
            problems[0].contains("gantry.release.dev.v2 was changed after gantry wrote it"),
            "{problems:?}"
        );

        // A broken chain link: release 2 claims another predecessor.
        let mut relinked = second.clone();
        relinked.previous_digest = Some(digest(b"something else"));
        let (_, relinked_digest) = encode(&relinked, "shop").unwrap();
        let index = index.before_write(2, &relinked_digest);
        let problems = verify(&[(first, d1), (relinked, relinked_digest)], &index);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("does not follow release 1")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_rewrite_keeps_the_old_digest_trusted_until_the_record_is_written() {
        let index = RecordIndex::default().before_write(4, "sha256:pending");
        assert_eq!(index.records[&4], ["sha256:pending"]);
        let index = index.before_write(4, "sha256:deployed");
        assert_eq!(index.records[&4], ["sha256:pending", "sha256:deployed"]);
        let index = index.before_write(4, "sha256:superseded");
        assert_eq!(index.records[&4], ["sha256:deployed", "sha256:superseded"]);
        // Writing the same content again keeps one entry.
        assert_eq!(
            index.before_write(4, "sha256:superseded").records[&4],
            ["sha256:deployed", "sha256:superseded"]
        );
        assert!(index.without(&[4]).records.is_empty());
        let text = index.to_annotation();
        assert_eq!(RecordIndex::parse(&text), Some(index));
        assert_eq!(RecordIndex::parse("not json"), None);
    }
}
