//! The Terraform/OpenTofu version a configuration asks for, with the gantry binary against a local release mirror serving the test bed's OpenTofu, its SHA256SUMS signed by a key gpg makes for the test (a signing subkey, as the publishers use): a version the bundled binary does not satisfy is downloaded, its signature and checksum checked, cached and reused by the next run; the bundled binary runs whenever it satisfies (nothing fetched); a tampered archive, altered sums, a signature by another key, a missing signature, a revoked key and a constraint nothing satisfies stop the run before Terraform runs, caching nothing.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The test bed's OpenTofu and its version.
fn tofu() -> (PathBuf, String) {
    let tofu = std::env::var("GANTRY_TEST_TOFU").unwrap_or_default();
    assert!(
        Path::new(&tofu).is_file(),
        "GANTRY_TEST_TOFU does not name OpenTofu: run `bash .ci/testbed up` and `source /var/tmp/gantry-testbed/env`"
    );
    let out = Command::new(&tofu).arg("version").output().unwrap();
    let version = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("OpenTofu v"))
        .expect("`tofu version` says `OpenTofu vX.Y.Z`")
        .to_string();
    (PathBuf::from(tofu), version)
}

/// A release mirror on loopback: GET of a known path answers its body, anything else 404;
/// counts the requests.
struct Mirror {
    port: u16,
    requests: Arc<AtomicUsize>,
}

impl Mirror {
    fn start(files: BTreeMap<String, Vec<u8>>) -> Mirror {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut stream = stream;
                let mut request = [0u8; 4096];
                let n = stream.read(&mut request).unwrap_or(0);
                let head = String::from_utf8_lossy(&request[..n]);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                counted.fetch_add(1, Ordering::SeqCst);
                let (status, body) = match files.get(&path) {
                    Some(body) => ("200 OK", body.clone()),
                    None => ("404 Not Found", b"not found".to_vec()),
                };
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                let _ = stream.write_all(&body);
            }
        });
        Mirror { port, requests }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// A gpg home with a certification-only primary key and a signing subkey, made for the test.
struct Signer {
    home: tempfile::TempDir,
}

impl Signer {
    fn new(name: &str) -> Signer {
        let home = tempfile::Builder::new()
            .prefix("gpg")
            .tempdir_in("/tmp")
            .unwrap();
        let signer = Signer { home };
        signer.gpg(&[
            "--quick-gen-key",
            &format!("{name} <{name}@gantry.invalid>"),
            "rsa2048",
            "cert",
            "never",
        ]);
        let listing = signer.gpg(&["--with-colons", "--list-keys"]);
        let fingerprint = listing
            .lines()
            .find_map(|l| {
                l.strip_prefix("fpr:")
                    .map(|f| f.trim_matches(':').to_string())
            })
            .expect("gpg lists the new key");
        signer.gpg(&["--quick-add-key", &fingerprint, "rsa2048", "sign", "never"]);
        signer
    }

    fn gpg(&self, args: &[&str]) -> String {
        let out = Command::new("gpg")
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .env("GNUPGHOME", self.home.path())
            .output()
            .expect(
                "gpg runs (apt-get install gpg gpg-agent; `bash .ci/testbed up` installs them)",
            );
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The armored public key, written where gantry is told to find it.
    fn public_key(&self) -> PathBuf {
        let path = self.home.path().join("public.asc");
        std::fs::write(&path, self.gpg(&["--armor", "--export"])).unwrap();
        path
    }

    /// Revokes the key with the revocation certificate gpg made when it created it.
    fn revoke(&self) {
        let dir = self.home.path().join("openpgp-revocs.d");
        let certificate = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .next()
            .expect("gpg keeps a revocation certificate")
            .path();
        // gpg writes it with the armor line escaped (`:-----BEGIN`) against an accidental import.
        let text = std::fs::read_to_string(&certificate)
            .unwrap()
            .replace(":-----BEGIN", "-----BEGIN");
        let unescaped = self.home.path().join("revocation.asc");
        std::fs::write(&unescaped, text).unwrap();
        self.gpg(&["--import", unescaped.to_str().unwrap()]);
    }

    /// A detached binary signature of `data` (SHA-512, as OpenTofu's).
    fn sign(&self, data: &[u8]) -> Vec<u8> {
        let input = self.home.path().join("input");
        let output = self.home.path().join("input.sig");
        std::fs::write(&input, data).unwrap();
        let _ = std::fs::remove_file(&output);
        self.gpg(&[
            "--digest-algo",
            "SHA512",
            "--output",
            output.to_str().unwrap(),
            "--detach-sign",
            input.to_str().unwrap(),
        ]);
        std::fs::read(output).unwrap()
    }
}

impl Drop for Signer {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", self.home.path())
            .status();
    }
}

/// What is wrong with a release the mirror serves.
#[derive(Clone, Copy, PartialEq)]
enum Tamper {
    Nothing,
    /// The archive is not the one the sums name.
    Archive,
    /// The sums were changed after they were signed (to name a substituted archive).
    Sums,
    /// The sums are signed by a key that is not the trusted one.
    ForeignKey,
    /// No signature is published.
    NoSignature,
    /// The publisher revoked the key that signed (the key gantry is given carries the revocation).
    RevokedKey,
}

/// OpenTofu's release layout for `version`: the index, the zip, its SHA256SUMS and their
/// signature by `signer`, with `tamper` applied.
fn release_files(version: &str, signer: &Signer, tamper: Tamper) -> BTreeMap<String, Vec<u8>> {
    let (binary, _) = tofu();
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("release.zip");
    let status = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n    z.writestr('LICENSE', 'MPL-2.0')\n    z.write(sys.argv[2], 'tofu')",
            zip.to_str().unwrap(),
            binary.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let mut bytes = std::fs::read(&zip).unwrap();
    let sum = {
        use sha2::Digest;
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let archive = format!("tofu_{version}_linux_amd64.zip");
    let sums = format!(
        "{sum}  {archive}\n{}  tofu_{version}_linux_arm64.zip\n",
        "0".repeat(64)
    );
    let signature = match tamper {
        Tamper::ForeignKey => Signer::new("intruder").sign(sums.as_bytes()),
        _ => signer.sign(sums.as_bytes()),
    };
    let mut sums = sums.into_bytes();
    match tamper {
        Tamper::Archive | Tamper::Sums => {
            let last = bytes.len() - 30;
            bytes[last] ^= 0xff;
        }
        _ => {}
    }
    if tamper == Tamper::Sums {
        // The substituted archive's checksum written into the signed file.
        use sha2::Digest;
        let forged: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        sums[..64].copy_from_slice(forged.as_bytes());
    }
    let mut files = BTreeMap::from([
        (
            "/api.json".to_string(),
            format!(
                r#"{{"versions":[{{"id":"{version}"}},{{"id":"1.6.0-rc1"}},{{"id":"1.6.2"}}]}}"#
            )
            .into_bytes(),
        ),
        (format!("/v{version}/{archive}"), bytes),
        (format!("/v{version}/tofu_{version}_SHA256SUMS"), sums),
    ]);
    if tamper != Tamper::NoSignature {
        files.insert(
            format!("/v{version}/tofu_{version}_SHA256SUMS.gpgsig"),
            signature,
        );
    }
    files
}

/// A checkout with a root module asking for `required_version`.
fn checkout(required_version: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("infra")).unwrap();
    std::fs::write(
        dir.path().join("infra/main.tf"),
        format!("terraform {{\n  required_version = \"{required_version}\"\n}}\n\noutput \"greeting\" {{\n  value = \"hello\"\n}}\n"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("home")).unwrap();
    dir
}

/// `gantry plan` of the infra phase with `tofu`, the mirror as OpenTofu's release server and
/// a PATH of `path`.
fn gantry(dir: &Path, mirror: &Mirror, key: &Path, path: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
        .current_dir(dir)
        .args(["plan", "--environment", "dev", "--phases", "infra"])
        .args([
            "--terraform-directory",
            "infra",
            "--terraform-binary",
            "tofu",
        ])
        .args(extra)
        .env("PATH", path)
        .env("HOME", dir.join("home"))
        .env("GANTRY_TOFU_RELEASES_URL", mirror.url())
        .env("GANTRY_TOFU_SIGNING_KEY", key)
        .env_remove("GANTRY_TOOL_CACHE")
        .env_remove("GITHUB_ACTIONS")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .expect("gantry runs")
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn cached(dir: &Path, version: &str) -> PathBuf {
    dir.join(format!("home/.cache/gantry/tools/tofu/{version}/tofu"))
}

/// PATH without OpenTofu: nothing bundled satisfies.
const NO_TOFU: &str = "/usr/bin:/bin";

#[test]
fn a_version_the_bundled_binary_cannot_give_is_downloaded_verified_cached_and_reused() {
    let (_, version) = tofu();
    let signer = Signer::new("publisher");
    let key = signer.public_key();
    let mirror = Mirror::start(release_files(&version, &signer, Tamper::Nothing));
    let minor: Vec<&str> = version.split('.').collect();
    let dir = checkout(&format!("~> {}.{}.0", minor[0], minor[1]));
    let first = gantry(dir.path(), &mirror, &key, NO_TOFU, &[]);
    let log = text(&first);
    assert!(first.status.success(), "{log}");
    assert!(log.contains(&format!("OpenTofu {version}")), "{log}");
    assert!(
        log.contains("required_version in main.tf asks for"),
        "{log}"
    );
    assert!(log.contains("its SHA256SUMS signed by subkey "), "{log}");
    assert!(
        log.contains("(publisher <publisher@gantry.invalid>) and matching"),
        "{log}"
    );
    assert!(cached(dir.path(), &version).is_file());
    let fetched = mirror.requests();
    assert_eq!(
        fetched, 4,
        "the index, the archive, its sums and their signature"
    );
    // The next step finds it in the cache: nothing fetched but the index.
    let second = gantry(dir.path(), &mirror, &key, NO_TOFU, &[]);
    let log = text(&second);
    assert!(second.status.success(), "{log}");
    assert!(log.contains("from the tool cache"), "{log}");
    assert_eq!(mirror.requests(), fetched + 1, "{log}");
    // An exact version in the cache is not even looked up.
    let exact = gantry(
        dir.path(),
        &mirror,
        &key,
        NO_TOFU,
        &["--terraform-version", &version],
    );
    assert!(exact.status.success(), "{}", text(&exact));
    assert_eq!(mirror.requests(), fetched + 1);
}

#[test]
fn the_bundled_binary_runs_whenever_it_satisfies() {
    let (binary, version) = tofu();
    let signer = Signer::new("publisher");
    let mirror = Mirror::start(release_files(&version, &signer, Tamper::Nothing));
    let dir = checkout(">= 1.8");
    std::fs::write(dir.path().join(".opentofu-version"), &version).unwrap();
    let path = format!("{}:{NO_TOFU}", binary.parent().unwrap().display());
    let ran = gantry(dir.path(), &mirror, &signer.public_key(), &path, &[]);
    let log = text(&ran);
    assert!(ran.status.success(), "{log}");
    assert!(
        log.contains("the bundled binary satisfies `>= 1.8` (required_version in main.tf)"),
        "{log}"
    );
    assert_eq!(mirror.requests(), 0);
    assert!(!cached(dir.path(), &version).exists());
}

#[test]
fn a_tampered_release_or_an_unsatisfiable_version_stops_before_anything_runs() {
    let (_, version) = tofu();
    let signer = Signer::new("publisher");
    let key = signer.public_key();
    let sums = format!("tofu_{version}_SHA256SUMS");
    // (what is wrong, what the error says)
    let table = [
        (Tamper::Archive, "does not match its SHA256SUMS".to_string()),
        (
            Tamper::Sums,
            format!("{sums}.gpgsig from http://127.0.0.1:"),
        ),
        (Tamper::Sums, "does not match the file".to_string()),
        (
            Tamper::ForeignKey,
            "which is not the trusted key".to_string(),
        ),
        (Tamper::NoSignature, format!("{sums}.gpgsig answered 404")),
        (Tamper::RevokedKey, "was revoked on ".to_string()),
    ];
    for (tamper, expected) in table {
        let (files, retired) = if tamper == Tamper::RevokedKey {
            let retired = Signer::new("retired");
            let files = release_files(&version, &retired, Tamper::Nothing);
            retired.revoke();
            (files, Some(retired))
        } else {
            (release_files(&version, &signer, tamper), None)
        };
        let key = retired.as_ref().map_or(key.clone(), Signer::public_key);
        let mirror = Mirror::start(files);
        let dir = checkout(">= 1.8");
        let run = gantry(
            dir.path(),
            &mirror,
            &key,
            NO_TOFU,
            &["--terraform-version", &version],
        );
        let log = text(&run);
        assert!(!run.status.success(), "{log}");
        assert!(log.contains(&expected), "{expected:?} not in {log}");
        assert!(
            log.contains(&format!(
                "OpenTofu {version} (input terraform-version) could not be installed"
            )),
            "{log}"
        );
        assert!(log.contains("terraform-missing"), "{log}");
        assert!(!cached(dir.path(), &version).exists());
        assert!(
            !cached(dir.path(), &version).parent().unwrap().exists(),
            "nothing cached"
        );
        assert!(!dir.path().join("infra/.terraform").exists(), "nothing ran");
    }

    // The pinned key (no override) refuses the test publisher's signature.
    let mirror = Mirror::start(release_files(&version, &signer, Tamper::Nothing));
    let dir = checkout(">= 1.8");
    let pinned = gantry(
        dir.path(),
        &mirror,
        Path::new(""),
        NO_TOFU,
        &["--terraform-version", &version],
    );
    let log = text(&pinned);
    assert!(!pinned.status.success(), "{log}");
    assert!(
        log.contains("signed with OpenTofu's release key E3E6E43D84CB852EADB0051D0C0AF313E5FD9F80"),
        "{log}"
    );
    assert!(!cached(dir.path(), &version).exists());

    let run = gantry(
        dir.path(),
        &mirror,
        &key,
        NO_TOFU,
        &["--terraform-version", "~> 0.1.0"],
    );
    let log = text(&run);
    assert!(!run.status.success(), "{log}");
    assert!(
        log.contains("no published version satisfies `~> 0.1.0` (input terraform-version)"),
        "{log}"
    );
    assert!(!dir.path().join("infra/.terraform").exists(), "nothing ran");

    let bad = gantry(
        dir.path(),
        &mirror,
        &key,
        NO_TOFU,
        &["--terraform-version", "1.x"],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("terraform-version"), "{}", text(&bad));
}
