//! Hostile and careless inputs through the real binary in action mode: paths that leave the checkout (`..`, absolute, symlinks), a Dockerfile path that would leak a host file, control characters in secrets, names and build args, knock-on errors, a bad GITHUB_SHA, absurd timeouts, oversized manifests. Each is refused with exit 2 and one annotation naming the input, and nothing is touched: no Terraform, no Docker daemon, no cluster, no GitHub API. Then every input of the catalogue gets a set of hostile values: no panic, ever.

mod support;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A port on loopback that counts every connection made to it (and closes it).
struct Tripwire {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Tripwire {
    fn new() -> Tripwire {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Tripwire { port, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A runner job whose checkout has a Terraform stack, an image context and manifests, next to
/// a directory outside the checkout (reached by `..`, absolute paths and a symlink).
struct Job {
    dir: tempfile::TempDir,
    docker: Tripwire,
    cluster: Tripwire,
    github: Tripwire,
}

impl Job {
    fn new() -> Job {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let docker = Tripwire::new();
        let cluster = Tripwire::new();
        let github = Tripwire::new();
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: 'https://127.0.0.1:{}'}}\nusers:\n- name: u\n  user: {{token: t0ken}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
            cluster.port
        );
        for (path, contents) in [
            (
                "workspace/infra/main.tf",
                "output \"x\" { value = 1 }\n".to_string(),
            ),
            ("workspace/infra/dev.tfvars", "x = 1\n".to_string()),
            ("workspace/app/Dockerfile", "FROM scratch\n".to_string()),
            (
                "workspace/k8s/app.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {a: b}\n"
                    .to_string(),
            ),
            ("workspace/kubeconfig", kubeconfig),
            (
                "outside/secret.tfvars",
                "password = \"hunter2\"\n".to_string(),
            ),
            ("outside/Dockerfile", "FROM scratch\n".to_string()),
            (
                "outside/passwd",
                "root:x:0:0:TOP-SECRET-LINE:/root:/bin/sh\n".to_string(),
            ),
            (
                "outside/app.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: outside}\n".to_string(),
            ),
            ("files/output", String::new()),
            ("files/summary", String::new()),
        ] {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, contents).unwrap();
        }
        std::os::unix::fs::symlink(root.join("outside"), root.join("workspace/escape")).unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events/push.json"),
            root.join("event.json"),
        )
        .unwrap();
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for tool in ["terraform", "tofu", "docker", "kubectl"] {
            support::failing_spy(&bin, tool, &root.join("spied"));
        }
        Job {
            dir,
            docker,
            cluster,
            github,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A deploy job with every phase configured and valid.
    fn base_env(&self) -> BTreeMap<String, String> {
        let path = |name: &str| self.path(name).display().to_string();
        [
            ("PATH", format!("{}:/usr/bin:/bin", path("bin"))),
            ("HOME", path("home")),
            ("RUNNER_TEMP", path("runner-temp")),
            ("GITHUB_ACTIONS", "true".into()),
            ("GITHUB_EVENT_NAME", "push".into()),
            ("GITHUB_EVENT_PATH", path("event.json")),
            ("GITHUB_WORKSPACE", path("workspace")),
            ("GITHUB_OUTPUT", path("files/output")),
            ("GITHUB_STEP_SUMMARY", path("files/summary")),
            (
                "GITHUB_SHA",
                "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c".into(),
            ),
            ("GITHUB_REPOSITORY", "octo-org/shop".into()),
            (
                "GITHUB_API_URL",
                format!("http://127.0.0.1:{}", self.github.port),
            ),
            (
                "DOCKER_HOST",
                format!("tcp://127.0.0.1:{}", self.docker.port),
            ),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("INPUT_ENVIRONMENT", "dev".into()),
            ("INPUT_COMMAND", "deploy".into()),
            ("INPUT_TERRAFORM-DIRECTORY", "infra".into()),
            ("INPUT_TERRAFORM-VAR-FILES", "dev.tfvars".into()),
            (
                "INPUT_IMAGES",
                "- name: app\n  repository: shop/app\n  context: app\n".into(),
            ),
            ("INPUT_REGISTRY", "127.0.0.1:5999".into()),
            ("INPUT_MANIFESTS", "k8s".into()),
            ("INPUT_KUBECONFIG", "kubeconfig".into()),
            (
                "INPUT_GITHUB-TOKEN",
                "ghp_notarealtokenbutshapedlikeone0000000".into(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn run(&self, env: &BTreeMap<String, String>) -> Output {
        std::fs::write(self.path("files/output"), "").unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
        command
            .env_clear()
            .envs(env)
            .current_dir(self.path("workspace"));
        finish_within(command, RUN_LIMIT)
    }

    /// Whether anything outside validation happened: a tool started, a daemon, the cluster or
    /// GitHub contacted, state written.
    fn side_effects(&self) -> Vec<String> {
        let mut found = Vec::new();
        if let Ok(spied) = std::fs::read_to_string(self.path("spied")) {
            found.push(format!("a tool ran: {spied}"));
        }
        for (name, wire) in [
            ("Docker", &self.docker),
            ("the cluster", &self.cluster),
            ("GitHub", &self.github),
        ] {
            if wire.hits() > 0 {
                found.push(format!("{name} was contacted"));
            }
        }
        if self.path("workspace/infra/.terraform").exists() {
            found.push("Terraform state was written".into());
        }
        found
    }
}

/// How long one run may take: past GitHub's 60 s request deadline (a run whose GitHub calls
/// meet a server that closes every connection waits that out, seen under heavy load), so only
/// a run that never ends fails the sweep.
const RUN_LIMIT: std::time::Duration = std::time::Duration::from_secs(150);

/// Runs a command to its end, or kills it after `limit` and fails the test with what it printed.
fn finish_within(mut command: Command, limit: std::time::Duration) -> Output {
    use std::process::Stdio;
    // The inputs of this run, for the message of one that hangs.
    let inputs: Vec<String> = command
        .get_envs()
        .filter_map(|(name, value)| {
            let name = name.to_string_lossy();
            let value: String = value?.to_string_lossy().chars().take(80).collect();
            name.starts_with("INPUT_")
                .then(|| format!("{name}={value:?}"))
        })
        .collect();
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gantry runs");
    let pid = child.id();
    let (done, waiting) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match waiting.recv_timeout(limit) {
        Ok(output) => output.expect("gantry runs"),
        Err(_) => {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let output = waiting.recv().unwrap().unwrap();
            panic!(
                "gantry did not finish within {limit:?} (inputs: {}):\n{}",
                inputs.join(", "),
                all_text(&output)
            );
        }
    }
}

fn all_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// One refused case: the environment changes (None removes), the input the annotation names,
/// a fragment of its message, and how many error annotations there may be.
struct Case {
    name: &'static str,
    changes: Vec<(&'static str, Option<String>)>,
    input: &'static str,
    fragment: &'static str,
}

fn case(
    name: &'static str,
    changes: &[(&'static str, &str)],
    input: &'static str,
    fragment: &'static str,
) -> Case {
    Case {
        name,
        changes: changes
            .iter()
            .map(|(k, v)| (*k, Some(v.to_string())))
            .collect(),
        input,
        fragment,
    }
}

#[test]
fn hostile_and_careless_inputs_are_refused_with_one_annotation_and_no_side_effect() {
    let mut cases = vec![
        // Paths that leave the checkout.
        case("working-directory ..", &[("INPUT_WORKING-DIRECTORY", "../outside")], "working-directory", "outside the repository checkout"),
        case("working-directory absolute", &[("INPUT_WORKING-DIRECTORY", "/tmp")], "working-directory", "outside the repository checkout"),
        case("working-directory symlink", &[("INPUT_WORKING-DIRECTORY", "escape")], "working-directory", "outside the repository checkout"),
        case("terraform-directory ..", &[("INPUT_TERRAFORM-DIRECTORY", "../outside")], "terraform-directory", "outside the repository checkout"),
        case("terraform-directory absolute", &[("INPUT_TERRAFORM-DIRECTORY", "/etc")], "terraform-directory", "outside the repository checkout"),
        case("terraform-var-files ..", &[("INPUT_TERRAFORM-VAR-FILES", "../../outside/secret.tfvars")], "terraform-var-files", "outside the repository checkout"),
        case("terraform-var-files symlink", &[("INPUT_TERRAFORM-VAR-FILES", "../escape/secret.tfvars")], "terraform-var-files", "outside the repository checkout"),
        case("terraform-backend-config file", &[("INPUT_TERRAFORM-BACKEND-CONFIG", "../../outside/secret.tfvars")], "terraform-backend-config", "outside the repository checkout"),
        case("image context ..", &[("INPUT_IMAGES", "- name: app\n  repository: shop/app\n  context: ../outside\n")], "images", "outside the repository checkout"),
        case("image context absolute", &[("INPUT_IMAGES", "- name: app\n  repository: shop/app\n  context: /etc\n")], "images", "outside the repository checkout"),
        case("dockerfile ..", &[("INPUT_IMAGES", "- name: app\n  repository: shop/app\n  context: app\n  dockerfile: ../../../../../../outside/passwd\n")], "images", "outside the repository checkout"),
        case("dockerfile absolute", &[("INPUT_IMAGES", "- name: app\n  repository: shop/app\n  context: app\n  dockerfile: /etc/passwd\n")], "images", "outside the repository checkout"),
        case("dockerfile symlink", &[("INPUT_IMAGES", "- name: app\n  repository: shop/app\n  context: app\n  dockerfile: ../escape/Dockerfile\n")], "images", "outside the repository checkout"),
        case("manifests ..", &[("INPUT_MANIFESTS", "../outside")], "manifests", "outside the repository checkout"),
        case("manifests absolute", &[("INPUT_MANIFESTS", "/etc")], "manifests", "outside the repository checkout"),
        case("manifests symlink", &[("INPUT_MANIFESTS", "escape")], "manifests", "outside the repository checkout"),
        case("manifests glob through a symlink", &[("INPUT_MANIFESTS", "escape/*.yaml")], "manifests", "outside the repository checkout"),
        case("kubeconfig outside", &[("INPUT_KUBECONFIG", "../outside/passwd")], "kubeconfig", "outside the repository checkout"),
        // Control characters.
        case("github-token newline", &[("INPUT_GITHUB-TOKEN", "ghp_abc\nInjected: header")], "github-token", "control character"),
        case("github-token CR", &[("INPUT_GITHUB-TOKEN", "ghp_abc\rx")], "github-token", "control character"),
        case("registry-password escape sequence", &[("INPUT_REGISTRY-USERNAME", "u"), ("INPUT_REGISTRY-PASSWORD", "pa\u{1b}[2Jss")], "registry-password", "control character"),
        case("namespace newline", &[("INPUT_NAMESPACE", "shop\nkube-system")], "namespace", "control character"),
        case("version newline", &[("INPUT_VERSION", "v1\nv2")], "version", "control character"),
        case("build-arg newline", &[("INPUT_IMAGES", "- name: app\n  repository: shop/app\n  context: app\n  build-args:\n    GREETING: \"hello\\nRUN curl evil\"\n")], "images", "build arg `GREETING` contains a control character"),
        case("terraform-vars escape sequence", &[("INPUT_TERRAFORM-VARS", "a=b\u{1b}c")], "terraform-vars", "control character"),
        // Knock-on errors: one problem, one message.
        case("garbage kubeconfig", &[("INPUT_KUBECONFIG", "apiVersion: [not a kubeconfig")], "kubeconfig", "not a kubeconfig"),
        case("missing kubeconfig", &[("INPUT_KUBECONFIG", "nope.yaml")], "kubeconfig", "is not an existing file"),
        case("kubeconfig and cluster-name", &[("INPUT_CLUSTER-NAME", "prod")], "kubeconfig", "kubeconfig and cluster-name are both set"),
        case("missing workspace", &[("GITHUB_WORKSPACE", "/nonexistent/workspace")], "working-directory", "does not exist"),
        // Values that are no commit, absurd durations, oversized manifests.
        case("GITHUB_SHA not a sha", &[("GITHUB_SHA", "not-a-sha")], "GITHUB_SHA", "is not a commit SHA"),
        case("rollout-timeout 0s", &[("INPUT_ROLLOUT-TIMEOUT", "0s")], "rollout-timeout", "out of range"),
        case("rollout-timeout a week", &[("INPUT_ROLLOUT-TIMEOUT", "168h")], "rollout-timeout", "out of range"),
        case("lock-lease-duration 1s", &[("INPUT_LOCK-LEASE-DURATION", "1s")], "lock-lease-duration", "out of range"),
        case("terraform-binary relative", &[("INPUT_TERRAFORM-BINARY", "./tf")], "terraform-binary", "neither `terraform`, `tofu` nor an absolute path"),
        case("unlock unconfirmed", &[("INPUT_COMMAND", "unlock")], "confirm-unlock", "confirm that run is gone"),
        case("environment-url javascript", &[("INPUT_ENVIRONMENT-URL", "javascript:alert(1)")], "environment-url", "must be an http"),
    ];
    cases.push(Case {
        name: "manifest file over the limit",
        changes: vec![("INPUT_MANIFESTS", Some("big.yaml".into()))],
        input: "manifests",
        fragment: "a manifest file may hold at most 8 MiB",
    });
    let tried = cases.len();
    for case in cases {
        let job = Job::new();
        if case.name == "manifest file over the limit" {
            let mut big =
                String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata:\n");
            while big.len() < 9 * 1024 * 1024 {
                big.push_str("  k");
                big.push_str(&big.len().to_string());
                big.push_str(": ");
                big.push_str(&"x".repeat(1000));
                big.push('\n');
            }
            std::fs::write(job.path("workspace/big.yaml"), big).unwrap();
        }
        let mut env = job.base_env();
        for (key, value) in &case.changes {
            match value {
                Some(value) => env.insert(key.to_string(), value.clone()),
                None => env.remove(*key),
            };
        }
        let output = job.run(&env);
        let text = all_text(&output);
        let name = case.name;
        assert_eq!(output.status.code(), Some(2), "{name}: exit 2\n{text}");
        let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("::error")).collect();
        assert_eq!(
            errors.len(),
            1,
            "{name}: exactly one error annotation: {errors:#?}"
        );
        assert!(
            errors[0].contains(case.input),
            "{name}: names the input {}: {}",
            case.input,
            errors[0]
        );
        assert!(
            text.contains(case.fragment),
            "{name}: says {:?}:\n{text}",
            case.fragment
        );
        assert!(!text.contains("panicked"), "{name}: no panic:\n{text}");
        assert!(
            !text.contains("TOP-SECRET-LINE") && !text.contains("hunter2"),
            "{name}: no host file content leaks:\n{text}"
        );
        let unmasked = text
            .lines()
            .filter(|l| !l.starts_with("::add-mask::"))
            .any(|l| l.contains("ghp_abc"));
        assert!(
            !unmasked,
            "{name}: the secret only in add-mask commands:\n{text}"
        );
        let effects = job.side_effects();
        assert!(effects.is_empty(), "{name}: no side effect: {effects:?}");
    }
    eprintln!("hostile cases refused: {tried}");
}

/// Values that break naive parsers, given to every input.
fn hostile_values() -> Vec<(&'static str, String)> {
    vec![
        ("NUL", "x\0y".into()),
        ("newline", "x\ny".into()),
        ("CR", "x\ry".into()),
        ("path traversal", "../../../../../../etc/passwd".into()),
        ("absolute path", "/etc/passwd".into()),
        ("huge", "x".repeat(100_000)),
        (
            "workflow command",
            "::set-output name=status::deployed".into(),
        ),
        ("expression", "${{ secrets.GITHUB_TOKEN }}".into()),
        ("shell", "$(touch /tmp/gantry-pwned)`id`".into()),
        ("placeholder", "${tf.nope}${image.nope}$${".into()),
        ("unicode", "\u{202e}gpj.exe\u{fffd}\u{1F4A5}".into()),
        ("number", "-99999999999999999999999".into()),
        ("yaml", "{a: [1, {b: *x}]}: &x".into()),
        ("empty-ish", " \t ".into()),
    ]
}

/// Runs gantry locally with `inputs` in a `--config` file (the one way a NUL can reach it).
fn run_with_config(job: &Job, inputs: &BTreeMap<String, String>) -> Output {
    let config = serde_yaml_ng::to_string(inputs).unwrap();
    std::fs::write(job.path("workspace/gantry.yml"), config).unwrap();
    let mut env = job.base_env();
    env.retain(|key, _| !key.starts_with("INPUT_") && key != "GITHUB_ACTIONS");
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    command
        .args(["validate", "--config", "gantry.yml"])
        .env_clear()
        .envs(&env)
        .current_dir(job.path("workspace"));
    finish_within(command, RUN_LIMIT)
}

fn base_inputs(job: &Job) -> BTreeMap<String, String> {
    job.base_env()
        .into_iter()
        .filter_map(|(key, value)| {
            key.strip_prefix("INPUT_")
                .map(|name| (name.to_lowercase(), value))
        })
        .collect()
}

#[test]
fn every_input_survives_every_hostile_value_without_a_panic() {
    let job = Job::new();
    let mut tried = 0;
    let mut refused = 0;
    for spec in gantry::config::inputs::INPUTS {
        let single_line = !gantry::config::inputs::is_multi_line(spec);
        for (label, value) in hostile_values() {
            // As an action input (environment variables cannot carry a NUL), and in a config
            // file (which can).
            let output = if value.contains('\0') {
                let mut inputs = base_inputs(&job);
                inputs.insert(spec.name.to_string(), value.clone());
                run_with_config(&job, &inputs)
            } else {
                let mut env = job.base_env();
                // GitHub refuses the connection here (the sweep looks for panics, not for
                // contact): a run that passes validation meets no stand-in that makes it wait.
                env.insert("GITHUB_API_URL".into(), "http://127.0.0.1:9".into());
                env.insert(format!("INPUT_{}", spec.name.to_uppercase()), value.clone());
                job.run(&env)
            };
            let text = all_text(&output);
            tried += 1;
            let code = output.status.code();
            assert!(
                !text.contains("panicked") && code != Some(101) && code.is_some(),
                "{} = {label}: no panic (exit {code:?}):\n{text}",
                spec.name
            );
            let control = value.contains('\0')
                || (single_line && value.chars().any(|c| c.is_control() && c != '\t'));
            if control {
                assert_eq!(code, Some(2), "{} = {label}: refused:\n{text}", spec.name);
                assert!(
                    text.contains(spec.name),
                    "{} = {label}: names the input:\n{text}",
                    spec.name
                );
            }
            if code == Some(2) {
                refused += 1;
            }
        }
    }
    assert!(
        !std::path::Path::new("/tmp/gantry-pwned").exists(),
        "nothing was executed"
    );
    eprintln!("hostile values: {tried} tried, {refused} refused with exit 2, none panicked");
}
