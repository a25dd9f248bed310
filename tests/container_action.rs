//! The container contract: the real Dockerfile, built on local stand-ins of its base images, run the way the GitHub runner runs a container action.
//!
//! Needs the test bed (`bash .ci/testbed up`): Debian's dockerd and the stand-in images
//! `rust:1.95-slim-bookworm`, `busybox:1.36.1` and `gcr.io/distroless/cc-debian12:debug`.
//! Terraform's release zip cannot be downloaded here and the machine may have no Terraform, so
//! the test zips the test bed's OpenTofu (built from the Go module proxy) as a stand-in release
//! zip, serves it on 127.0.0.1 and passes its URL, checksum and version as build arguments: the
//! Dockerfile's download-and-verify path runs for real, and the image's `terraform` is OpenTofu.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const IMAGE: &str = "gantry:contract-test";
const STANDINS: &[&str] = &[
    "rust:1.95-slim-bookworm",
    "busybox:1.36.1",
    "gcr.io/distroless/cc-debian12:debug",
];

fn docker_bin() -> String {
    std::env::var("GANTRY_TEST_DOCKER").unwrap_or_else(|_| "/usr/bin/docker".into())
}

fn docker(args: &[&str]) -> Output {
    Command::new(docker_bin())
        .args(args)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run {}: {err}; start the test bed with `bash .ci/testbed up`",
                docker_bin()
            )
        })
}

fn require_testbed() {
    let info = docker(&["info", "--format", "{{.ServerVersion}}"]);
    assert!(
        info.status.success(),
        "Docker is not reachable ({}); start the test bed with `bash .ci/testbed up`",
        String::from_utf8_lossy(&info.stderr).trim()
    );
    for image in STANDINS {
        let inspect = docker(&["image", "inspect", "--format", "{{.Id}}", image]);
        assert!(
            inspect.status.success(),
            "the stand-in base image {image} is missing; `bash .ci/testbed up` makes it locally"
        );
    }
}

/// Serves `body` to every GET on 127.0.0.1 from a background thread; returns the port.
fn serve(body: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            if !request.starts_with(b"HEAD") {
                let _ = stream.write_all(&body);
            }
        }
    });
    port
}

struct TerraformRelease {
    url: String,
    sha256: String,
    /// The version the stand-in reports (`OpenTofu v<version>`).
    version: String,
}

/// Zips the test bed's OpenTofu like HashiCorp's release zip (one `terraform` file) and serves
/// it on loopback.
fn terraform_release(dir: &Path) -> TerraformRelease {
    let tofu = std::env::var("GANTRY_TEST_TOFU").unwrap_or_default();
    assert!(
        Path::new(&tofu).is_file(),
        "GANTRY_TEST_TOFU does not name OpenTofu: run `bash .ci/testbed up` and `source /var/tmp/gantry-testbed/env` (bash .ci/test does both)"
    );
    let reported = Command::new(&tofu)
        .arg("version")
        .output()
        .expect("tofu runs");
    let version = String::from_utf8_lossy(&reported.stdout)
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("OpenTofu v"))
        .expect("`tofu version` says `OpenTofu vX.Y.Z`")
        .to_string();
    let zip = dir.join(format!("terraform_{version}_linux_amd64.zip"));
    let status = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n    z.write(sys.argv[2], 'terraform')",
            zip.to_str().unwrap(),
            &tofu,
        ])
        .status()
        .expect("python3 zips the release");
    assert!(status.success());
    let sum = Command::new("sha256sum")
        .arg(&zip)
        .output()
        .expect("sha256sum");
    let sha256 = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let port = serve(std::fs::read(&zip).unwrap());
    TerraformRelease {
        url: format!("http://127.0.0.1:{port}/terraform_{version}_linux_amd64.zip"),
        sha256,
        version,
    }
}

/// A release archive (`.tar.gz`) holding the test bed's build of `tool` (`GANTRY_TEST_HELM`,
/// `GANTRY_TEST_KUSTOMIZE`) as `linux-amd64/<name>`, served on loopback: its URL and SHA-256.
fn tool_release(dir: &Path, variable: &str, name: &str) -> (String, String) {
    let binary = std::env::var(variable).unwrap_or_default();
    assert!(
        Path::new(&binary).is_file(),
        "{variable} is not set: run `bash .ci/testbed up` and `source /var/tmp/gantry-testbed/env` (bash .ci/test does both)"
    );
    let archive = dir.join(format!("{name}.tar.gz"));
    let status = Command::new("python3")
        .args([
            "-c",
            "import sys, tarfile\nwith tarfile.open(sys.argv[1], 'w:gz') as t:\n    t.add(sys.argv[2], 'linux-amd64/' + sys.argv[3])",
            archive.to_str().unwrap(),
            &binary,
            name,
        ])
        .status()
        .expect("python3 packs the release");
    assert!(status.success());
    let bytes = std::fs::read(&archive).unwrap();
    let sha256 = {
        use sha2::Digest;
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let port = serve(bytes);
    (format!("http://127.0.0.1:{port}/{name}.tar.gz"), sha256)
}

/// The version of the stand-in the image was built with.
fn served_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        terraform_release(dir.path()).version
    })
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the real Dockerfile once for all tests of this file.
fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        require_testbed();
        let dir = tempfile::tempdir().unwrap();
        let release = terraform_release(dir.path());
        let (helm_url, helm_sha256) = tool_release(dir.path(), "GANTRY_TEST_HELM", "helm");
        let (kustomize_url, kustomize_sha256) =
            tool_release(dir.path(), "GANTRY_TEST_KUSTOMIZE", "kustomize");
        let root = repo_root();
        let build = docker(&[
            "build",
            "--network",
            "host",
            "--build-arg",
            &format!("HELM_URL={helm_url}"),
            "--build-arg",
            &format!("HELM_SHA256={helm_sha256}"),
            "--build-arg",
            &format!("KUSTOMIZE_URL={kustomize_url}"),
            "--build-arg",
            &format!("KUSTOMIZE_SHA256={kustomize_sha256}"),
            "--build-arg",
            &format!("TERRAFORM_URL={}", release.url),
            "--build-arg",
            &format!("TERRAFORM_SHA256={}", release.sha256),
            "--build-arg",
            &format!("TERRAFORM_VERSION={}", release.version),
            "-t",
            IMAGE,
            root.to_str().unwrap(),
        ]);
        assert!(
            build.status.success(),
            "docker build failed:\n{}\n{}",
            String::from_utf8_lossy(&build.stdout),
            String::from_utf8_lossy(&build.stderr)
        );
    });
    IMAGE
}

/// A job's directories as the runner mounts them into a container action.
struct Job {
    _dir: tempfile::TempDir,
    workspace: PathBuf,
    file_commands: PathBuf,
    workflow: PathBuf,
    home: PathBuf,
}

impl Job {
    fn new() -> Job {
        let dir = tempfile::tempdir().unwrap();
        let [workspace, file_commands, workflow, home] = [
            "workspace",
            "_runner_file_commands",
            "_github_workflow",
            "_github_home",
        ]
        .map(|name| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(&path).unwrap();
            path
        });
        std::fs::copy(
            repo_root().join("tests/fixtures/events/push.json"),
            workflow.join("event.json"),
        )
        .unwrap();
        Job {
            _dir: dir,
            workspace,
            file_commands,
            workflow,
            home,
        }
    }

    /// `docker run` with the runner's flags, mounts and environment.
    fn run(&self, inputs: &[(&str, &str)]) -> Output {
        let mut args: Vec<String> = vec![
            "run".into(),
            "--rm".into(),
            "--workdir".into(),
            "/github/workspace".into(),
        ];
        let mut env: Vec<(String, String)> = inputs
            .iter()
            .map(|(name, value)| (format!("INPUT_{}", name.to_uppercase()), value.to_string()))
            .collect();
        for (name, value) in [
            ("HOME", "/github/home"),
            ("CI", "true"),
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_EVENT_NAME", "push"),
            ("GITHUB_EVENT_PATH", "/github/workflow/event.json"),
            ("GITHUB_WORKSPACE", "/github/workspace"),
            ("GITHUB_OUTPUT", "/github/file_commands/set_output_3f1c"),
            (
                "GITHUB_STEP_SUMMARY",
                "/github/file_commands/step_summary_3f1c",
            ),
            ("GITHUB_REF", "refs/heads/main"),
            ("GITHUB_SHA", "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"),
            ("GITHUB_REPOSITORY", "octo-org/shop"),
            ("GITHUB_RUN_ID", "4242"),
            ("GITHUB_RUN_ATTEMPT", "1"),
            ("GITHUB_ACTOR", "mona"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_API_URL", "https://api.github.com"),
            ("RUNNER_OS", "Linux"),
        ] {
            env.push((name.into(), value.into()));
        }
        for (name, value) in env {
            args.push("-e".into());
            args.push(format!("{name}={value}"));
        }
        for (host, container) in [
            (
                PathBuf::from("/var/run/docker.sock"),
                "/var/run/docker.sock",
            ),
            (self.home.clone(), "/github/home"),
            (self.workflow.clone(), "/github/workflow"),
            (self.file_commands.clone(), "/github/file_commands"),
            (self.workspace.clone(), "/github/workspace"),
        ] {
            args.push("-v".into());
            args.push(format!("{}:{container}", host.display()));
        }
        args.push(image().into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args)
    }

    fn outputs(&self) -> BTreeMap<String, String> {
        let text =
            std::fs::read_to_string(self.file_commands.join("set_output_3f1c")).unwrap_or_default();
        let mut outputs = BTreeMap::new();
        let mut lines = text.lines();
        while let Some(header) = lines.next() {
            let (name, delimiter) = header.split_once("<<").expect("heredoc output");
            let value: Vec<&str> = lines
                .by_ref()
                .take_while(|line| *line != delimiter)
                .collect();
            outputs.insert(name.to_string(), value.join("\n"));
        }
        outputs
    }

    fn summary(&self) -> String {
        std::fs::read_to_string(self.file_commands.join("step_summary_3f1c")).unwrap_or_default()
    }
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_image_runs_the_infra_phase_like_a_runner_would() {
    let job = Job::new();
    std::fs::create_dir_all(job.workspace.join("infra")).unwrap();
    std::fs::write(
        job.workspace.join("infra/main.tf"),
        "resource \"terraform_data\" \"marker\" {\n  input = \"${terraform.workspace}\"\n  provisioner \"local-exec\" {\n    command = \"echo provisioned-in-$WS\"\n    environment = { WS = terraform.workspace }\n  }\n}\noutput \"cluster_name\" {\n  value = \"eks-${terraform_data.marker.output}\"\n}\noutput \"db_password\" {\n  value     = \"pw-${terraform_data.marker.id}\"\n  sensitive = true\n}\n",
    )
    .unwrap();
    let run = job.run(&[
        ("environment", "ci"),
        ("phases", "infra"),
        ("terraform-directory", "infra"),
        ("github-token", "ghs_container_contract_token"),
    ]);
    let log = text(&run);
    assert_eq!(run.status.code(), Some(0), "{log}");
    assert!(
        log.contains("::add-mask::ghs_container_contract_token"),
        "{log}"
    );
    assert_eq!(
        log.matches("ghs_container_contract_token").count(),
        1,
        "the token is only ever announced: {log}"
    );
    assert!(
        log.contains("provisioned-in-ci"),
        "Terraform's local-exec ran /bin/sh in the image: {log}"
    );
    let outputs = job.outputs();
    assert_eq!(
        outputs.get("status").map(String::as_str),
        Some("deployed"),
        "{outputs:?}\n{log}"
    );
    assert_eq!(outputs.get("environment").map(String::as_str), Some("ci"));
    assert_eq!(
        outputs.get("tf-cluster_name").map(String::as_str),
        Some("eks-ci"),
        "{outputs:?}"
    );
    assert!(
        !outputs.contains_key("tf-db_password"),
        "sensitive outputs stay internal"
    );
    let summary = job.summary();
    assert!(summary.contains("## gantry · Deployed · `ci`"), "{summary}");
    assert!(summary.contains("| infra | succeeded |"), "{summary}");
    assert!(summary.contains("| build | skipped |"), "{summary}");
    // The runner's workspace stays usable by later steps (the container ran as root, as
    // GitHub requires; files it made are in the mounted workspace).
    assert!(job.workspace.join("infra/.terraform").is_dir());
}

#[test]
fn bad_input_in_the_container_exits_2_and_changes_nothing() {
    let job = Job::new();
    let run = job.run(&[
        ("environment", "Prod!"),
        ("phases", "infra,biuld"),
        ("rollback", "yes"),
    ]);
    let log = text(&run);
    assert_eq!(run.status.code(), Some(2), "{log}");
    assert_eq!(
        log.matches("::error title=gantry%3A invalid input::")
            .count(),
        3,
        "{log}"
    );
    let outputs = job.outputs();
    assert_eq!(outputs["failure-reason"], "invalid-input");
    assert!(
        std::fs::read_dir(&job.workspace).unwrap().next().is_none(),
        "nothing written to the workspace"
    );
}

#[test]
fn the_image_is_small_and_starts_as_nonroot_too() {
    // What a job pulls: the layers compressed (gzip, as a registry serves them), with Terraform,
    // Helm and Kustomize bundled.
    let size = Command::new("sh")
        .args([
            "-c",
            &format!("{} save {} | gzip -c | wc -c", docker_bin(), image()),
        ])
        .output()
        .expect("docker save | gzip | wc");
    let bytes: u64 = String::from_utf8_lossy(&size.stdout)
        .trim()
        .parse()
        .expect("compressed image size");
    assert!(
        bytes <= 100 * 1024 * 1024,
        "the image is {} MB compressed, goal <= 100 MB",
        bytes / 1024 / 1024
    );
    for (tool, args, expected) in [
        ("helm", ["version", "--short"], "v4."),
        ("kustomize", ["version", ""], "v5."),
    ] {
        let mut run = vec!["run", "--rm", "--entrypoint"];
        let entrypoint = format!("/usr/local/bin/{tool}");
        run.push(&entrypoint);
        run.push(image());
        run.extend(args.iter().filter(|a| !a.is_empty()));
        let ran = docker(&run);
        assert!(
            String::from_utf8_lossy(&ran.stdout).contains(expected),
            "{tool} is not bundled: {}",
            text(&ran)
        );
    }
    let version = docker(&["run", "--rm", "--user", "65532", image(), "--version"]);
    assert!(version.status.success(), "{}", text(&version));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("gantry {}", env!("CARGO_PKG_VERSION"))
    );
    let terraform = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "/usr/local/bin/terraform",
        image(),
        "version",
    ]);
    assert!(
        String::from_utf8_lossy(&terraform.stdout)
            .contains(&format!("OpenTofu v{}", served_version())),
        "{}",
        text(&terraform)
    );
}

#[test]
fn a_terraform_zip_with_the_wrong_checksum_fails_the_build() {
    require_testbed();
    let dir = tempfile::tempdir().unwrap();
    let release = terraform_release(dir.path());
    let wrong = "0".repeat(64);
    let build = docker(&[
        "build",
        "--network",
        "host",
        "--target",
        "terraform",
        "--build-arg",
        &format!("TERRAFORM_URL={}", release.url),
        "--build-arg",
        &format!("TERRAFORM_SHA256={wrong}"),
        "--build-arg",
        &format!("TERRAFORM_VERSION={}", release.version),
        repo_root().to_str().unwrap(),
    ]);
    assert!(
        !build.status.success(),
        "a tampered download must not build"
    );
    assert!(
        text(&build).contains("FAILED"),
        "sha256sum reports the mismatch: {}",
        text(&build)
    );
}
