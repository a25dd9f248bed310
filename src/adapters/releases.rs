//! Terraform and OpenTofu releases: the published versions, and one release downloaded, its SHA256SUMS signature checked with the publisher's pinned key, the archive checked against the sums, and unpacked into gantry's tool cache (reused by later steps).
//!
//! The releases are read from HashiCorp's and OpenTofu's release servers, or from the URLs in
//! `GANTRY_TERRAFORM_RELEASES_URL` / `GANTRY_TOFU_RELEASES_URL` (a mirror, or a test server).
//! The signing keys are pinned in gantry (`release_keys/`: HashiCorp's
//! C874 011F 0AB4 0511 0D02 1055 3436 5D94 72D7 468F, OpenTofu's
//! E3E6 E43D 84CB 852E ADB0 051D 0C0A F313 E5FD 9F80); `GANTRY_TERRAFORM_SIGNING_KEY` /
//! `GANTRY_TOFU_SIGNING_KEY` name another armored public key file (a private mirror that
//! re-signs, or a test). Nothing is cached unless the signature and the checksum matched.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::plan::argv::{Cli, Version};
use crate::plan::openpgp::{self, Keyring};

const HASHICORP_KEY: &[u8] = include_bytes!("release_keys/hashicorp.asc");
const OPENTOFU_KEY: &[u8] = include_bytes!("release_keys/opentofu.asc");

/// A release that was installed: where its binary is and who signed its checksums.
#[derive(Debug, Clone)]
pub struct Installed {
    pub path: PathBuf,
    /// E.g. `key 374EC75B… of C874011F… (HashiCorp Security …)`.
    pub signer: String,
}

/// Where a CLI's releases are published.
#[derive(Debug, Clone)]
pub struct Releases {
    cli: Cli,
    base: String,
    client: reqwest::Client,
}

impl Releases {
    /// The release server of `cli` (or its override).
    pub fn of(cli: Cli) -> Releases {
        let (variable, default) = match cli {
            Cli::Terraform => (
                "GANTRY_TERRAFORM_RELEASES_URL",
                "https://releases.hashicorp.com/terraform",
            ),
            Cli::OpenTofu => (
                "GANTRY_TOFU_RELEASES_URL",
                "https://github.com/opentofu/opentofu/releases/download",
            ),
        };
        let base = std::env::var(variable)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_string());
        Releases {
            cli,
            base: base.trim_end_matches('/').to_string(),
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(120))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Where the releases come from (for messages).
    pub fn source(&self) -> &str {
        &self.base
    }

    fn index_url(&self) -> String {
        match self.cli {
            Cli::Terraform => format!("{}/index.json", self.base),
            // OpenTofu's download site lists its releases; a mirror serves the same file.
            Cli::OpenTofu if self.base.starts_with("https://github.com/") => {
                "https://get.opentofu.org/tofu/api.json".to_string()
            }
            Cli::OpenTofu => format!("{}/api.json", self.base),
        }
    }

    fn file_url(&self, version: Version, file: &str) -> String {
        match self.cli {
            Cli::Terraform => format!("{}/{version}/{file}", self.base),
            Cli::OpenTofu => format!("{}/v{version}/{file}", self.base),
        }
    }

    fn archive_name(&self, version: Version) -> String {
        format!("{}_{version}_linux_{}.zip", self.cli.command(), arch())
    }

    /// Every published (released, not pre-release) version.
    pub async fn published(&self) -> Result<Vec<Version>, String> {
        let url = self.index_url();
        let index: serde_json::Value = self.get(&url).await.and_then(|bytes| {
            serde_json::from_slice(&bytes).map_err(|err| format!("{url} is not JSON: {err}"))
        })?;
        let names: Vec<String> = match self.cli {
            Cli::Terraform => index["versions"]
                .as_object()
                .map(|v| v.keys().cloned().collect())
                .unwrap_or_default(),
            Cli::OpenTofu => index["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v["id"].as_str().map(str::to_string))
                .collect(),
        };
        Ok(names
            .iter()
            .filter(|name| !name.contains('-'))
            .filter_map(|name| Version::parse(name).ok())
            .collect())
    }

    /// The cached binary of `version`, if a verified download put it there.
    pub fn cached(&self, cache: &Path, version: Version) -> Option<PathBuf> {
        let path = cache
            .join(self.cli.command())
            .join(version.to_string())
            .join(self.cli.command());
        path.is_file().then_some(path)
    }

    /// The key the release's SHA256SUMS must be signed with: the pinned one, or the file
    /// named by `GANTRY_*_SIGNING_KEY`; and how to name it in messages.
    fn keyring(&self) -> Result<(Keyring, String), String> {
        let (variable, pinned, publisher) = match self.cli {
            Cli::Terraform => ("GANTRY_TERRAFORM_SIGNING_KEY", HASHICORP_KEY, "HashiCorp's"),
            Cli::OpenTofu => ("GANTRY_TOFU_SIGNING_KEY", OPENTOFU_KEY, "OpenTofu's"),
        };
        match std::env::var_os(variable).filter(|v| !v.is_empty()) {
            Some(path) => {
                let path = PathBuf::from(path);
                let bytes = std::fs::read(&path)
                    .map_err(|err| format!("{variable}: cannot read {}: {err}", path.display()))?;
                let keyring = Keyring::parse(&bytes).map_err(|problem| {
                    format!(
                        "{variable}: {} is not an OpenPGP public key: {problem}",
                        path.display()
                    )
                })?;
                let name = format!("the key in {variable} ({})", keyring.primaries().join(", "));
                Ok((keyring, name))
            }
            None => {
                let keyring = Keyring::parse(pinned)
                    .map_err(|problem| format!("{publisher} pinned release key: {problem}"))?;
                let name = format!("{publisher} release key {}", keyring.primaries().join(", "));
                Ok((keyring, name))
            }
        }
    }

    /// Downloads `version`, checks the signature of the release's SHA256SUMS with the
    /// publisher's key and the archive against the sums, and unpacks the binary into `cache`.
    /// Any mismatch caches nothing.
    pub async fn install(&self, cache: &Path, version: Version) -> Result<Installed, String> {
        let (keyring, key_name) = self.keyring()?;
        let archive = self.archive_name(version);
        let sums_name = format!("{}_{version}_SHA256SUMS", self.cli.command());
        let signature_name = match self.cli {
            Cli::Terraform => format!("{sums_name}.sig"),
            Cli::OpenTofu => format!("{sums_name}.gpgsig"),
        };
        let (zip, sums, signature) = futures::future::join3(
            self.get(&self.file_url(version, &archive)),
            self.get(&self.file_url(version, &sums_name)),
            self.get(&self.file_url(version, &signature_name)),
        )
        .await;
        let (zip, sums, signature) = (zip?, sums?, signature?);
        let verified = openpgp::verify_detached(&keyring, &sums, &signature).map_err(|problem| {
            format!(
                "{signature_name} from {} does not prove {sums_name} was signed with {key_name}: {problem}; not used, nothing cached",
                self.base
            )
        })?;
        let signer = if verified.signer == verified.primary {
            format!("key {} ({})", verified.signer, verified.user)
        } else {
            format!(
                "subkey {} of {} ({})",
                verified.signer, verified.primary, verified.user
            )
        };
        let sums = String::from_utf8_lossy(&sums);
        let expected = sums
            .lines()
            .find_map(|line| {
                let mut words = line.split_whitespace();
                let sum = words.next()?;
                (words.next()?.trim_start_matches('*') == archive).then(|| sum.to_lowercase())
            })
            .ok_or_else(|| format!("{sums_name} from {} lists no {archive}", self.base))?;
        let actual = sha256_hex(&zip);
        if actual != expected {
            return Err(format!(
                "{archive} from {} does not match its SHA256SUMS (expected {expected}, got {actual}): not used, nothing cached",
                self.base
            ));
        }
        let binary = unzip_file(&zip, self.cli.command())
            .map_err(|err| format!("{archive} from {}: {err}", self.base))?;
        let dir = cache.join(self.cli.command()).join(version.to_string());
        std::fs::create_dir_all(&dir)
            .map_err(|err| format!("cannot create the tool cache {}: {err}", dir.display()))?;
        let staging = dir.join(format!(".{}.partial", self.cli.command()));
        let path = dir.join(self.cli.command());
        let written = (|| {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o755);
            std::io::Write::write_all(&mut options.open(&staging)?, &binary)?;
            std::fs::rename(&staging, &path)
        })();
        written.map_err(|err| format!("cannot write {}: {err}", path.display()))?;
        Ok(Installed { path, signer })
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|err| format!("{url} could not be read: {err}"))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|err| format!("{url} could not be read: {err}"))
    }
}

/// The release architecture of this machine.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The content of the file `name` (at the archive's top level) of a zip archive: stored or
/// deflated, sizes from the central directory (release archives use data descriptors).
pub fn unzip_file(zip: &[u8], name: &str) -> Result<Vec<u8>, String> {
    let u16_at = |at: usize| -> Result<u16, String> {
        zip.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or_else(|| "the archive is truncated".to_string())
    };
    let u32_at = |at: usize| -> Result<u32, String> {
        zip.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| "the archive is truncated".to_string())
    };
    // The end of central directory record: within the last 64 KiB + 22 bytes.
    let search_from = zip.len().saturating_sub(65_557);
    let end = (search_from..zip.len().saturating_sub(21))
        .rev()
        .find(|&at| zip[at..at + 4] == [0x50, 0x4b, 0x05, 0x06])
        .ok_or("not a zip archive")?;
    let entries = u16_at(end + 10)? as usize;
    let mut at = u32_at(end + 16)? as usize;
    for _ in 0..entries {
        if u32_at(at)? != 0x0201_4b50 {
            return Err("the zip's central directory is corrupt".into());
        }
        let method = u16_at(at + 10)?;
        let compressed = u32_at(at + 20)? as usize;
        let size = u32_at(at + 24)? as usize;
        let name_len = u16_at(at + 28)? as usize;
        let extra_len = u16_at(at + 30)? as usize;
        let comment_len = u16_at(at + 32)? as usize;
        let local = u32_at(at + 42)? as usize;
        let entry = zip
            .get(at + 46..at + 46 + name_len)
            .ok_or("the archive is truncated")?;
        at += 46 + name_len + extra_len + comment_len;
        if entry != name.as_bytes() {
            continue;
        }
        if u32_at(local)? != 0x0403_4b50 {
            return Err("the zip's local header is corrupt".into());
        }
        let data = local + 30 + u16_at(local + 26)? as usize + u16_at(local + 28)? as usize;
        let raw = zip
            .get(data..data + compressed)
            .ok_or("the archive is truncated")?;
        let content = match method {
            0 => raw.to_vec(),
            8 => {
                let mut out = Vec::with_capacity(size);
                flate2::read::DeflateDecoder::new(raw)
                    .read_to_end(&mut out)
                    .map_err(|err| format!("{name} does not inflate: {err}"))?;
                out
            }
            other => return Err(format!("{name} uses zip compression method {other}")),
        };
        if content.len() != size {
            return Err(format!(
                "{name} is {} bytes, the zip says {size}",
                content.len()
            ));
        }
        return Ok(content);
    }
    Err(format!("the archive holds no `{name}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zip_made_by_python_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let zip = dir.path().join("t.zip");
        for method in ["ZIP_DEFLATED", "ZIP_STORED"] {
            let status = std::process::Command::new("python3")
                .args([
                    "-c",
                    &format!("import zipfile\nwith zipfile.ZipFile('{}', 'w', zipfile.{method}) as z:\n    z.writestr('LICENSE.txt', 'license')\n    z.writestr('terraform', b'\\x7fELF' + bytes(range(256)) * 100)", zip.display()),
                ])
                .status()
                .unwrap();
            assert!(status.success());
            let bytes = std::fs::read(&zip).unwrap();
            let content = unzip_file(&bytes, "terraform").unwrap();
            assert_eq!(content.len(), 4 + 25_600, "{method}");
            assert!(content.starts_with(b"\x7fELF"));
            assert!(unzip_file(&bytes, "tofu")
                .unwrap_err()
                .contains("holds no `tofu`"));
        }
        assert_eq!(
            unzip_file(b"not a zip at all, just text", "x").unwrap_err(),
            "not a zip archive"
        );
    }
}
