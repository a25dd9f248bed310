//! The Terraform/OpenTofu version a configuration asks for, with the gantry binary against a local release mirror serving the test bed's OpenTofu: a version the bundled binary does not satisfy is downloaded, checked against its SHA256SUMS, cached and reused by the next run; the bundled binary runs whenever it satisfies (nothing fetched); a tampered archive and a constraint nothing satisfies stop the run before Terraform runs, caching nothing.

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

/// OpenTofu's release layout for `version`: the index, the zip and its SHA256SUMS (with
/// `tamper`, the archive is not the one the sums name).
fn release_files(version: &str, tamper: bool) -> BTreeMap<String, Vec<u8>> {
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
    if tamper {
        let last = bytes.len() - 30;
        bytes[last] ^= 0xff;
    }
    let archive = format!("tofu_{version}_linux_amd64.zip");
    BTreeMap::from([
        (
            "/api.json".to_string(),
            format!(
                r#"{{"versions":[{{"id":"{version}"}},{{"id":"1.6.0-rc1"}},{{"id":"1.6.2"}}]}}"#
            )
            .into_bytes(),
        ),
        (format!("/v{version}/{archive}"), bytes),
        (
            format!("/v{version}/tofu_{version}_SHA256SUMS"),
            format!(
                "{sum}  {archive}\n{}  tofu_{version}_linux_arm64.zip\n",
                "0".repeat(64)
            )
            .into_bytes(),
        ),
    ])
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
fn gantry(dir: &Path, mirror: &Mirror, path: &str, extra: &[&str]) -> Output {
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
    let mirror = Mirror::start(release_files(&version, false));
    let minor: Vec<&str> = version.split('.').collect();
    let dir = checkout(&format!("~> {}.{}.0", minor[0], minor[1]));
    let first = gantry(dir.path(), &mirror, NO_TOFU, &[]);
    let log = text(&first);
    assert!(first.status.success(), "{log}");
    assert!(log.contains(&format!("OpenTofu {version}")), "{log}");
    assert!(
        log.contains("required_version in main.tf asks for"),
        "{log}"
    );
    assert!(log.contains("its SHA256SUMS checked"), "{log}");
    assert!(cached(dir.path(), &version).is_file());
    let fetched = mirror.requests();
    assert_eq!(fetched, 3, "the index, the archive and its sums");
    // The next step finds it in the cache: nothing fetched but the index.
    let second = gantry(dir.path(), &mirror, NO_TOFU, &[]);
    let log = text(&second);
    assert!(second.status.success(), "{log}");
    assert!(log.contains("from the tool cache"), "{log}");
    assert_eq!(mirror.requests(), fetched + 1, "{log}");
    // An exact version in the cache is not even looked up.
    let exact = gantry(
        dir.path(),
        &mirror,
        NO_TOFU,
        &["--terraform-version", &version],
    );
    assert!(exact.status.success(), "{}", text(&exact));
    assert_eq!(mirror.requests(), fetched + 1);
}

#[test]
fn the_bundled_binary_runs_whenever_it_satisfies() {
    let (binary, version) = tofu();
    let mirror = Mirror::start(release_files(&version, false));
    let dir = checkout(">= 1.8");
    std::fs::write(dir.path().join(".opentofu-version"), &version).unwrap();
    let path = format!("{}:{NO_TOFU}", binary.parent().unwrap().display());
    let ran = gantry(dir.path(), &mirror, &path, &[]);
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
    let tampered = Mirror::start(release_files(&version, true));
    let dir = checkout(">= 1.8");
    let run = gantry(
        dir.path(),
        &tampered,
        NO_TOFU,
        &["--terraform-version", &version],
    );
    let log = text(&run);
    assert!(!run.status.success(), "{log}");
    assert!(log.contains("does not match its SHA256SUMS"), "{log}");
    assert!(log.contains("nothing cached"), "{log}");
    assert!(log.contains("terraform-missing"), "{log}");
    assert!(!cached(dir.path(), &version).exists());
    assert!(!dir.path().join("infra/.terraform").exists(), "nothing ran");

    let mirror = Mirror::start(release_files(&version, false));
    let run = gantry(
        dir.path(),
        &mirror,
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
        NO_TOFU,
        &["--terraform-version", "1.x"],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("terraform-version"), "{}", text(&bad));
}
