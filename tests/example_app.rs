//! The example app (`examples/app`) on the test bed: the real `gantry` binary builds, smoke-tests
//! and pushes both images to the plain local registry; the pushed backend then stores and reads
//! notes in the test bed's PostgreSQL, and the frontend serves its page and proxies the API.
//!
//! Also, without services: the manifests render through gantry's deploy phase (Terraform outputs
//! substituted, both images pinned, apply order), and every `${tf.NAME}` the manifests and
//! workflows use is an output of `terraform/infra`. A missing service fails the test with a
//! pointer to `bash .ci/testbed up`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const ENV_FILE: &str = "/var/tmp/gantry-testbed/env";
const UP: &str = "run `bash .ci/testbed up`";

/// A test bed variable: from the environment, else from the test bed's env file.
fn testbed_var(name: &str) -> String {
    if let Some(value) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
        return value;
    }
    let path = std::env::var("GANTRY_TESTBED_DIR")
        .map(|dir| format!("{dir}/env"))
        .unwrap_or_else(|_| ENV_FILE.to_string());
    let file = std::fs::read_to_string(&path).unwrap_or_default();
    let prefix = format!("export {name}=");
    file.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{name} is not set and not in {path}; {UP}"))
}

struct Bed {
    docker: String,
    docker_host: String,
    registry: String,
    pg_host: String,
    pg_port: String,
    pg_db: String,
    pg_user: String,
    pg_password: String,
    pg_ca: String,
}

fn bed() -> Bed {
    let bed = Bed {
        docker: testbed_var("GANTRY_TEST_DOCKER"),
        docker_host: testbed_var("GANTRY_TEST_DOCKER_HOST"),
        registry: testbed_var("GANTRY_TEST_REGISTRY"),
        pg_host: testbed_var("GANTRY_TEST_POSTGRES_HOST"),
        pg_port: testbed_var("GANTRY_TEST_POSTGRES_PORT"),
        pg_db: testbed_var("GANTRY_TEST_POSTGRES_DB"),
        pg_user: testbed_var("GANTRY_TEST_POSTGRES_USER"),
        pg_password: testbed_var("GANTRY_TEST_POSTGRES_PASSWORD"),
        pg_ca: testbed_var("GANTRY_TEST_POSTGRES_CA"),
    };
    for (what, addr) in [
        ("the plain registry", bed.registry.clone()),
        ("PostgreSQL", format!("{}:{}", bed.pg_host, bed.pg_port)),
    ] {
        let reachable = addr
            .parse()
            .ok()
            .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
        assert!(reachable, "{what} at {addr} is not answering; {UP}");
    }
    let socket = bed.docker_host.trim_start_matches("unix://");
    assert!(
        Path::new(socket).exists(),
        "no Docker socket at {socket}; {UP}"
    );
    bed
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf).unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn run_ok(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Reads a `$GITHUB_OUTPUT` file (`name<<DELIMITER` blocks or `name=value` lines).
fn parse_outputs(text: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delimiter)) = line.split_once("<<") {
            let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delimiter).collect();
            out.insert(name.to_string(), value.join("\n"));
        } else if let Some((name, value)) = line.split_once('=') {
            out.insert(name.to_string(), value.to_string());
        }
    }
    out
}

/// A container removed when the test ends, passed or failed.
struct Container<'a> {
    bed: &'a Bed,
    name: String,
}

impl<'a> Container<'a> {
    /// `docker run -d` on the host network (the test bed's PostgreSQL listens on loopback), with
    /// read-only bind mounts `(host path, container path)`.
    fn start(
        bed: &'a Bed,
        role: &str,
        image: &str,
        env: &[(&str, String)],
        mounts: &[(&str, &str)],
    ) -> Container<'a> {
        let name = format!("gantry-example-{role}-{}", random_hex(4));
        let container = Container {
            bed,
            name: name.clone(),
        };
        let mut command = Command::new(&bed.docker);
        command.env("DOCKER_HOST", &bed.docker_host).args([
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
        ]);
        for (key, value) in env {
            command.args(["-e", &format!("{key}={value}")]);
        }
        for (host, inside) in mounts {
            command.args(["--volume", &format!("{host}:{inside}:ro")]);
        }
        run_ok(command.arg(image));
        container
    }

    fn logs(&self) -> String {
        let output = Command::new(&self.bed.docker)
            .env("DOCKER_HOST", &self.bed.docker_host)
            .args(["logs", &self.name])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    fn running(&self) -> bool {
        let output = Command::new(&self.bed.docker)
            .env("DOCKER_HOST", &self.bed.docker_host)
            .args(["inspect", "-f", "{{.State.Running}}", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim() == "true"
    }

    /// Waits until `url` answers 200; fails with the container's log if it stops or times out.
    async fn wait_healthy(&self, url: &str) -> Value {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            assert!(
                self.running(),
                "{} stopped; its log:\n{}",
                self.name,
                self.logs()
            );
            match client.get(url).timeout(Duration::from_secs(5)).send().await {
                Ok(response) if response.status() == 200 => {
                    let text = response.text().await.unwrap();
                    return serde_json::from_str(&text).unwrap_or(Value::String(text));
                }
                Ok(response) => {
                    last = format!("{}: {}", response.status(), response.text().await.unwrap())
                }
                Err(err) => last = err.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "{url} is not healthy after 30s ({last}); log of {}:\n{}",
            self.name,
            self.logs()
        );
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = Command::new(&self.bed.docker)
            .env("DOCKER_HOST", &self.bed.docker_host)
            .args(["rm", "-f", &self.name])
            .output();
    }
}

/// The example app in a fresh git repository, so every run has its own commit (the image tag).
fn checkout() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    copy_dir(
        &Path::new(ROOT).join("examples/app"),
        &repo.join("examples/app"),
    );
    std::fs::write(repo.join("nonce"), random_hex(16)).unwrap();
    let git = |args: &[&str]| {
        run_ok(
            Command::new("git")
                .args([
                    "-c",
                    "user.name=gantry-test",
                    "-c",
                    "user.email=test@gantry.invalid",
                ])
                .args(args)
                .current_dir(&repo),
        )
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "example app"]);
    let sha = git(&["rev-parse", "HEAD"]).trim().to_string();
    (dir, repo, sha)
}

async fn served_digest(registry: &str, repository: &str, tag: &str) -> String {
    let response = reqwest::Client::new()
        .head(format!("http://{registry}/v2/{repository}/manifests/{tag}"))
        .header("Accept", gantry::adapters::registry::MANIFEST_TYPES)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "HEAD {registry}/{repository}:{tag}");
    response.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gantry_builds_the_example_app_and_it_serves_notes_from_postgres() {
    let bed = bed();
    let (_dir, repo, sha) = checkout();

    // (1) gantry builds, smoke-tests and pushes both images, as a user would run it locally.
    let outputs_file = repo.join("github-output");
    std::fs::write(&outputs_file, "").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["run", "--config", "examples/app/gantry.yml"])
        .args([
            "--registry",
            &bed.registry,
            "--registry-endpoint",
            &bed.registry,
        ])
        .current_dir(&repo)
        .env_remove("GITHUB_ACTIONS")
        .env("GITHUB_OUTPUT", &outputs_file)
        .env("DOCKER_HOST", &bed.docker_host)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "gantry failed:\n{log}");
    assert!(log.contains("[backend] smoke: self-test ok"), "{log}");
    let outputs = parse_outputs(&std::fs::read_to_string(&outputs_file).unwrap());
    let mut images = std::collections::BTreeMap::new();
    for name in ["backend", "frontend"] {
        let uri = &outputs[&format!("image-{name}-uri")];
        let digest = &outputs[&format!("image-{name}-digest")];
        assert_eq!(uri, &format!("{}/gantry-example/{name}", bed.registry));
        assert!(digest.starts_with("sha256:"), "{name}: {digest}");
        let served = served_digest(&bed.registry, &format!("gantry-example/{name}"), &sha).await;
        assert_eq!(
            &served, digest,
            "{name}: the registry serves another digest"
        );
        images.insert(name, format!("{uri}@{digest}"));
    }

    // (2) The pushed backend against the test bed's PostgreSQL, over TLS with the server's
    // certificate verified (as against RDS): POST a note, read it back.
    let client = reqwest::Client::new();
    let backend_port = free_port();
    let backend_url = format!("http://127.0.0.1:{backend_port}");
    let backend = Container::start(
        &bed,
        "backend",
        &images["backend"],
        &[
            ("PORT", backend_port.to_string()),
            ("DATABASE_HOST", bed.pg_host.clone()),
            ("DATABASE_PORT", bed.pg_port.clone()),
            ("DATABASE_NAME", bed.pg_db.clone()),
            ("DATABASE_USER", bed.pg_user.clone()),
            ("DATABASE_PASSWORD", bed.pg_password.clone()),
            ("DATABASE_SSLMODE", "verify-full".into()),
            ("DATABASE_SSLROOTCERT", "/etc/notes/postgres-ca.crt".into()),
            ("APP_VERSION", sha.clone()),
        ],
        &[(&bed.pg_ca, "/etc/notes/postgres-ca.crt")],
    );
    let health = backend
        .wait_healthy(&format!("{backend_url}/healthz"))
        .await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["database"], "ok", "{health}");
    assert_eq!(health["version"], sha.as_str(), "{health}");

    let text = format!("hello from gantry {}", random_hex(6));
    let response = client
        .post(format!("{backend_url}/api/notes"))
        .json(&json!({ "text": text }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["text"], text.as_str(), "{created}");
    let id = created["id"].as_i64().expect("a numeric id");
    assert!(created["created_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));

    let fetched: Value = client
        .get(format!("{backend_url}/api/notes/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, created);
    let listed: Vec<Value> = client
        .get(format!("{backend_url}/api/notes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed.contains(&created), "{listed:?}");

    let bad = client
        .post(format!("{backend_url}/api/notes"))
        .json(&json!({ "text": "" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // The other way to configure it: one DATABASE_URL, default sslmode (prefer), same data.
    let url_port = free_port();
    let by_url = Container::start(
        &bed,
        "backend-url",
        &images["backend"],
        &[
            ("PORT", url_port.to_string()),
            (
                "DATABASE_URL",
                format!(
                    "postgresql://{}:{}@{}:{}/{}",
                    bed.pg_user, bed.pg_password, bed.pg_host, bed.pg_port, bed.pg_db
                ),
            ),
        ],
        &[],
    );
    by_url
        .wait_healthy(&format!("http://127.0.0.1:{url_port}/healthz"))
        .await;
    let same: Value = client
        .get(format!("http://127.0.0.1:{url_port}/api/notes/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(same, created);

    // (3) The pushed frontend pointed at the backend: the page, and the API through it.
    let frontend_port = free_port();
    let frontend_url = format!("http://127.0.0.1:{frontend_port}");
    let frontend = Container::start(
        &bed,
        "frontend",
        &images["frontend"],
        &[
            ("PORT", frontend_port.to_string()),
            ("BACKEND_URL", backend_url.clone()),
        ],
        &[],
    );
    frontend
        .wait_healthy(&format!("{frontend_url}/healthz"))
        .await;
    let page = client.get(&frontend_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("<title>gantry notes</title>"));

    let through: Value = client
        .get(format!("{frontend_url}/api/notes/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(through, created, "the frontend proxies GET");
    let second = format!("through the frontend {}", random_hex(6));
    let response = client
        .post(format!("{frontend_url}/api/notes"))
        .json(&json!({ "text": second }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "the frontend proxies POST");
    let posted: Value = response.json().await.unwrap();
    let direct: Value = client
        .get(format!("{backend_url}/api/notes/{}", posted["id"]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(direct["text"], second.as_str(), "stored by the backend");
    let missing = client
        .get(format!("{frontend_url}/api/notes/999999999999"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404, "the backend's status passes through");
}

/// The output names of `terraform/infra/outputs.tf`.
fn infra_outputs() -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("terraform/infra/outputs.tf")).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("output \""))
        .filter_map(|l| l.split_once('"').map(|(name, _)| name.to_string()))
        .collect()
}

#[test]
fn the_manifests_and_workflows_use_only_outputs_the_infra_stack_defines() {
    let outputs = infra_outputs();
    assert!(outputs.contains(&"database_endpoint".to_string()));
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["examples/app/k8s", "workflows"] {
        for entry in std::fs::read_dir(Path::new(ROOT).join(dir)).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    let mut used = std::collections::BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for placeholder in gantry::manifests::find_placeholders(&text) {
            if let Some(output) = placeholder.name.strip_prefix("tf.") {
                assert!(
                    outputs.iter().any(|o| o == output),
                    "{}:{}: ${{tf.{output}}} is not an output of terraform/infra",
                    file.display(),
                    placeholder.line
                );
                used.insert(output.to_string());
            } else if file.starts_with(Path::new(ROOT).join("examples")) {
                assert!(
                    gantry::manifests::is_known_form(&placeholder.name),
                    "{}:{}: unknown placeholder {}",
                    file.display(),
                    placeholder.line,
                    placeholder.name
                );
            }
        }
    }
    for needed in [
        "backend_repository_url",
        "frontend_repository_url",
        "cluster_name",
        "database_endpoint",
        "database_port",
        "database_name",
        "database_username",
    ] {
        assert!(used.contains(needed), "nothing uses ${{tf.{needed}}}");
    }
    for workflow in ["workflows/deploy.yml", "workflows/manual.yml"] {
        let text = std::fs::read_to_string(Path::new(ROOT).join(workflow)).unwrap();
        for path in [
            "terraform-directory: terraform/infra",
            "context: examples/app/backend",
            "context: examples/app/frontend",
            "manifests: examples/app/k8s",
        ] {
            assert!(text.contains(path), "{workflow} lacks `{path}`");
        }
    }
}

#[test]
fn the_manifests_render_with_the_infra_outputs_and_both_images_pinned() {
    use gantry::adapters::runner::Runner;
    use gantry::app::frame::RunContext;
    use gantry::cancel::Cancel;
    use gantry::config::{Config, RawInputs, ValidationContext};
    use gantry::context::GitHubContext;
    use gantry::pipeline::{Command as Verb, Decision, Handoff};

    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(ROOT).join("examples/app/k8s"),
        &dir.path().join("k8s"),
    );
    std::fs::create_dir_all(dir.path().join("infra")).unwrap();
    std::fs::write(dir.path().join("infra/main.tf"), "").unwrap();
    let inputs = std::collections::BTreeMap::from([
        ("INPUT_ENVIRONMENT", "dev"),
        ("INPUT_TERRAFORM-DIRECTORY", "infra"),
        ("INPUT_MANIFESTS", "k8s"),
    ]);
    let raw = RawInputs::from_env(|name| inputs.get(name).map(|v| v.to_string())).with_defaults();
    let validation = ValidationContext {
        workspace: dir.path().to_path_buf(),
        action_mode: false,
        kubeconfig_env: None,
        kubeconfig_roots: Vec::new(),
    };
    let config = Config::validate(&raw, &validation).unwrap_or_else(|e| panic!("{e}"));
    let context = GitHubContext::local(dir.path(), None);
    let sha = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c";
    let decision = Decision {
        command: Verb::Deploy,
        reason: "local run".into(),
        commit: Some(sha.into()),
        pull_request: None,
    };
    let (runner, _log) = Runner::capturing(false);
    let cancel = Cancel::never();
    let run = RunContext {
        config: &config,
        context: &context,
        decision: &decision,
        runner: &runner,
        cancel: &cancel,
    };

    // Values shaped like terraform/infra's outputs (database_port is a number there).
    let ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/gantry/dev";
    let mut handoff = Handoff::default();
    for (name, value) in [
        (
            "database_endpoint",
            json!("gantry-dev-postgres.abc.eu-west-1.rds.amazonaws.com"),
        ),
        ("database_port", json!(5432)),
        ("database_name", json!("app")),
        ("database_username", json!("app_admin")),
        ("backend_repository_url", json!(format!("{ecr}/backend"))),
        ("frontend_repository_url", json!(format!("{ecr}/frontend"))),
    ] {
        handoff.terraform_outputs.insert(name.into(), value);
    }
    let digest = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    for (name, c) in [("backend", 'b'), ("frontend", 'f')] {
        handoff
            .images
            .insert(name.into(), format!("{ecr}/{name}@{}", digest(c)));
    }

    let rendered = gantry::app::deploy::render(&run, &handoff).unwrap_or_else(|errors| {
        panic!(
            "{:#?}",
            errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()
        )
    });
    let order: Vec<String> = rendered
        .manifests
        .iter()
        .map(|m| m.key.to_string())
        .collect();
    let position = |key: &str| {
        order
            .iter()
            .position(|k| k == key)
            .unwrap_or_else(|| panic!("{key} not in {order:?}"))
    };
    assert_eq!(order.len(), 5, "{order:?}");
    assert!(
        position("ConfigMap/notes-backend (namespace default)")
            < position("Service/backend (namespace default)")
    );
    assert!(
        position("Service/backend (namespace default)")
            < position("Deployment/backend (namespace default)")
    );
    assert!(
        position("Service/frontend (namespace default)")
            < position("Deployment/frontend (namespace default)")
    );

    let object = |key: &str| &rendered.manifests[position(key)].object;
    let data = &object("ConfigMap/notes-backend (namespace default)")["data"];
    assert_eq!(
        data["DATABASE_HOST"],
        "gantry-dev-postgres.abc.eu-west-1.rds.amazonaws.com"
    );
    assert_eq!(data["DATABASE_PORT"], "5432");
    assert_eq!(data["DATABASE_NAME"], "app");
    assert_eq!(data["DATABASE_USER"], "app_admin");
    assert_eq!(data["APP_VERSION"], sha);
    assert_eq!(data["APP_ENVIRONMENT"], "dev");

    for (name, c) in [("backend", 'b'), ("frontend", 'f')] {
        let pod = &object(&format!("Deployment/{name} (namespace default)"))["spec"]["template"];
        let container = &pod["spec"]["containers"][0];
        assert_eq!(
            container["image"],
            format!("{ecr}/{name}@{}", digest(c)).as_str()
        );
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert!(container["resources"]["requests"]["memory"].is_string());
        assert_eq!(
            object(&format!("Deployment/{name} (namespace default)"))["spec"]["replicas"],
            2
        );
    }
    assert_eq!(rendered.pinned.len(), 2);
    let backend = &object("Deployment/backend (namespace default)")["spec"]["template"];
    assert_eq!(backend["metadata"]["annotations"]["gantry.dev/commit"], sha);
    assert_eq!(
        backend["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"],
        "notes-database"
    );
}
