//! `gantry demo`: writes the embedded example project (examples/demo) to a directory and runs the main job on it locally; with a cluster (the test bed's, or `--kubeconfig`) it deploys a healthy release, then a broken change that gantry detects and rolls back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::ArgMatches;

use crate::adapters::runner::{RunnerFiles, RunnerMode};
use crate::app::{Exit, Invocation};
use crate::config::{Origin, RawInputs};
use crate::context::GitHubContext;

/// The example project, embedded in the binary: (path, contents).
pub const FILES: &[(&str, &str)] = &[
    ("gantry.yml", include_str!("../../examples/demo/gantry.yml")),
    (
        "terraform/main.tf",
        include_str!("../../examples/demo/terraform/main.tf"),
    ),
    (
        "app/frontend/Dockerfile",
        include_str!("../../examples/demo/app/frontend/Dockerfile"),
    ),
    (
        "app/frontend/index.html",
        include_str!("../../examples/demo/app/frontend/index.html"),
    ),
    (
        "app/backend/Dockerfile",
        include_str!("../../examples/demo/app/backend/Dockerfile"),
    ),
    (
        "app/backend/app.sh",
        include_str!("../../examples/demo/app/backend/app.sh"),
    ),
    (
        "k8s/app.yaml",
        include_str!("../../examples/demo/k8s/app.yaml"),
    ),
];

/// The manifests of the example project.
const MANIFESTS: &str = "k8s/app.yaml";
/// The line of the backend container after which the broken change adds its command.
const BACKEND_IMAGE_LINE: &str = "          image: 127.0.0.1:5000/gantry-demo/demo/backend\n";
/// The broken change of the second deploy: the backend exits at start, as a service does when
/// a setting it needs is missing. Its image is unchanged, so the pre-flight passes.
const BROKEN_COMMAND: &str = "          command: [\"/bin/sh\", \"-c\", \"echo 'backend: DATABASE_URL is not set, cannot start' >&2; exit 1\"]\n";

/// Writes the example project under `dir` (existing files are replaced; Terraform state kept);
/// an error names the file.
pub fn write_project(dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    for (path, contents) in FILES {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, contents)
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    Ok(())
}

/// The example manifests with the broken change: the backend container exits at start.
pub fn broken_manifests() -> String {
    let healthy = FILES
        .iter()
        .find(|(path, _)| *path == MANIFESTS)
        .map(|(_, text)| *text)
        .unwrap_or_default();
    healthy.replacen(
        BACKEND_IMAGE_LINE,
        &format!("{BACKEND_IMAGE_LINE}{BROKEN_COMMAND}"),
        1,
    )
}

/// What the test bed wrote to its env file (`bash .ci/testbed up`): the cluster, and the
/// OpenTofu it built.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TestBed {
    /// The deployer's kubeconfig (the least-privilege identity gantry runs as).
    pub kubeconfig: Option<PathBuf>,
    pub admin_kubeconfig: Option<PathBuf>,
    pub kubectl: Option<PathBuf>,
    pub tofu: Option<PathBuf>,
}

impl TestBed {
    /// Reads `$GANTRY_TESTBED_DIR/env` (default `/var/tmp/gantry-testbed/env`); every path that
    /// does not exist is left out.
    pub fn find() -> TestBed {
        let dir = std::env::var("GANTRY_TESTBED_DIR")
            .unwrap_or_else(|_| "/var/tmp/gantry-testbed".to_string());
        std::fs::read_to_string(Path::new(&dir).join("env"))
            .map(|text| TestBed::from_env_file(&text))
            .unwrap_or_default()
    }

    /// Reads the `export NAME=value` lines of the env file.
    pub fn from_env_file(text: &str) -> TestBed {
        let values: BTreeMap<&str, &str> = text
            .lines()
            .filter_map(|line| line.trim().strip_prefix("export "))
            .filter_map(|line| line.split_once('='))
            .collect();
        let path = |name: &str| {
            values
                .get(name)
                .map(|value| PathBuf::from(value.trim_matches('\'')))
                .filter(|path| path.is_file())
        };
        TestBed {
            kubeconfig: path("GANTRY_TEST_KUBECONFIG"),
            admin_kubeconfig: path("GANTRY_TEST_ADMIN_KUBECONFIG"),
            kubectl: path("GANTRY_TEST_KUBECTL"),
            tofu: path("GANTRY_TEST_TOFU"),
        }
    }
}

/// What one run of the demo is given besides the project's gantry.yml.
struct Step<'a> {
    dir: &'a Path,
    registry: &'a str,
    /// `(input, value)` pairs set as flags.
    inputs: Vec<(&'static str, String)>,
    /// Numbers the run's output and summary files.
    number: u32,
}

/// The invocation of the demo: the project's gantry.yml, run as a local deploy.
pub fn invocation(dir: &Path, registry: &str) -> Invocation {
    let mut raw = RawInputs::from_config_file(&dir.join("gantry.yml"));
    raw.set("registry", registry.to_string(), Origin::Flag);
    raw.set("registry-endpoint", registry.to_string(), Origin::Flag);
    let get = |name: &str| std::env::var(name).ok();
    Invocation {
        mode: RunnerMode::Local,
        raw: raw.with_defaults(),
        command_override: None,
        files: RunnerFiles::from_env(get, false),
        context: Ok(demo_context(dir, get("USER"))),
        workspace: dir.to_path_buf(),
        kubeconfig_env: None,
        debug: get("RUNNER_DEBUG").as_deref() == Some("1"),
    }
}

/// Runs one step of the demo; returns its exit and step outputs.
fn run_step(step: &Step<'_>) -> (Exit, BTreeMap<String, String>) {
    let files_dir = step.dir.join(".gantry");
    let output = files_dir.join(format!("outputs-{}", step.number));
    let summary = files_dir.join(format!("summary-{}.md", step.number));
    if std::fs::create_dir_all(&files_dir)
        .and_then(|()| std::fs::write(&output, ""))
        .and_then(|()| std::fs::write(&summary, ""))
        .is_err()
    {
        eprintln!("gantry demo: cannot write {}", files_dir.display());
        return (Exit::Usage, BTreeMap::new());
    }
    let mut invocation = invocation(step.dir, step.registry);
    for (name, value) in &step.inputs {
        invocation.raw.set(name, value.clone(), Origin::Flag);
    }
    invocation.files = Ok(RunnerFiles {
        output: Some(output.clone()),
        summary: Some(summary),
    });
    let exit = crate::app::run_invocation(invocation);
    let outputs = std::fs::read_to_string(&output)
        .map(|text| crate::report::workflow::parse_output_file(&text))
        .unwrap_or_default();
    (exit, outputs)
}

/// The demo's context: the example project is no git checkout, so its "commit" is a digest
/// of the embedded files. The same project gets the same tag, and a rerun reuses its images.
fn demo_context(dir: &Path, actor: Option<String>) -> GitHubContext {
    use sha2::{Digest, Sha256};
    let mut context = GitHubContext::local(dir, actor);
    if context.sha.is_none() {
        let mut hasher = Sha256::new();
        for (path, contents) in FILES {
            hasher.update(path.as_bytes());
            hasher.update([0]);
            hasher.update(contents.as_bytes());
            hasher.update([0]);
        }
        let digest: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        context.sha = Some(digest[..40].to_string());
    }
    context
}

/// Copies `from` to `to`, readable by the owner only (a kubeconfig holds credentials).
fn private_copy(from: &Path, to: &Path) -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let contents = std::fs::read(from).context("cannot read it")?;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let _ = std::fs::remove_file(to);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .and_then(|mut file| file.write_all(&contents))
        .with_context(|| format!("cannot write {}", to.display()))?;
    Ok(to.to_path_buf())
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
}

fn output<'a>(outputs: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    outputs.get(name).map(String::as_str).unwrap_or("")
}

/// `gantry demo [--dir DIR] [--registry HOST:PORT] [--kubeconfig FILE] [--namespace NS]`.
pub fn run(matches: &ArgMatches) -> Exit {
    let dir = match matches.get_one::<PathBuf>("dir") {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("gantry-demo-{}", std::process::id())),
    };
    if let Err(err) = write_project(&dir) {
        eprintln!(
            "gantry demo: cannot write the example project to {}: {err:#}",
            dir.display()
        );
        return Exit::Usage;
    }
    println!("gantry demo: example project written to {}", dir.display());
    let registry = matches
        .get_one::<String>("registry")
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:5000".into());
    let testbed = TestBed::find();
    let mut inputs: Vec<(&'static str, String)> = Vec::new();
    if !on_path("terraform") {
        if let Some(tofu) = &testbed.tofu {
            println!(
                "gantry demo: no terraform on PATH; the infra phase runs the test bed's OpenTofu ({})",
                tofu.display()
            );
            inputs.push(("terraform-binary", tofu.display().to_string()));
        }
    }
    if let Some(namespace) = matches.get_one::<String>("namespace") {
        inputs.push(("namespace", namespace.clone()));
    }
    let kubeconfig = matches
        .get_one::<PathBuf>("kubeconfig")
        .cloned()
        .or(testbed.kubeconfig.clone());
    let Some(kubeconfig) = kubeconfig else {
        println!("gantry demo: no cluster (start the test bed's with `bash .ci/testbed up`, or pass --kubeconfig): the deploy phase checks and renders the release and applies nothing");
        let step = Step {
            dir: &dir,
            registry: &registry,
            inputs,
            number: 1,
        };
        return run_step(&step).0;
    };
    // gantry reads a kubeconfig only from the checkout or the runner's directories, so the demo
    // works on a private copy inside the project (the test bed's lives under /var/tmp).
    let copy = match private_copy(&kubeconfig, &dir.join(".gantry").join("kubeconfig")) {
        Ok(copy) => copy,
        Err(err) => {
            eprintln!(
                "gantry demo: cannot copy the kubeconfig {}: {err:#}",
                kubeconfig.display()
            );
            return Exit::Usage;
        }
    };
    inputs.push(("kubeconfig", copy.display().to_string()));
    deploy_then_break(&dir, &registry, inputs, &testbed)
}

/// The demo against a cluster: a healthy release, then a broken change rolled back.
fn deploy_then_break(
    dir: &Path,
    registry: &str,
    inputs: Vec<(&'static str, String)>,
    testbed: &TestBed,
) -> Exit {
    let namespace = inputs
        .iter()
        .find(|(name, _)| *name == "namespace")
        .map(|(_, value)| value.clone())
        .unwrap_or_else(|| "gantry-demo".into());
    println!(
        "\n== gantry demo 1/2: deploy the example project (Terraform, two images, Kubernetes)\n"
    );
    let mut step = Step {
        dir,
        registry,
        inputs,
        number: 1,
    };
    let (_, first) = run_step(&step);
    let release = output(&first, "release").to_string();
    if output(&first, "status") != "deployed" {
        println!(
            "\ngantry demo: the first deploy did not succeed (status `{}`, failure-reason `{}`); the log above says why",
            output(&first, "status"),
            output(&first, "failure-reason")
        );
        return Exit::Failure;
    }
    println!(
        "\n== gantry demo: release {release} is deployed and healthy in namespace {namespace}"
    );

    println!("\n== gantry demo 2/2: deploy a broken change (the backend now exits at start)\n");
    let manifests = dir.join(MANIFESTS);
    let broken = broken_manifests();
    if std::fs::write(&manifests, &broken).is_err() {
        eprintln!("gantry demo: cannot write {}", manifests.display());
        return Exit::Usage;
    }
    step.number = 2;
    let (_, second) = run_step(&step);
    // The project on disk goes back to what is running.
    let _ = write_project(dir);
    let restored = output(&second, "restored-release");
    let outcome = if output(&second, "status") == "rolled-back" && restored == release {
        println!(
            "\n== gantry demo: the broken change was detected ({}) and rolled back: release {restored} is running again and healthy. That run failed (exit 1), as every rolled-back run does.",
            output(&second, "failure-reason")
        );
        Exit::Success
    } else {
        println!(
            "\ngantry demo: the broken change did not end as expected: status `{}`, failure-reason `{}`, restored release `{restored}` (expected `rolled-back` to release {release}); the log above says why",
            output(&second, "status"),
            output(&second, "failure-reason")
        );
        Exit::Failure
    };
    print_next_steps(dir, &namespace, testbed);
    outcome
}

fn print_next_steps(dir: &Path, namespace: &str, testbed: &TestBed) {
    let kubectl = match (&testbed.kubectl, &testbed.admin_kubeconfig) {
        (Some(kubectl), Some(admin)) => {
            format!("{} --kubeconfig {}", kubectl.display(), admin.display())
        }
        _ => "kubectl".to_string(),
    };
    println!("\nLook around:");
    println!("  {kubectl} -n {namespace} get deployments,pods,services");
    println!("  {kubectl} -n {namespace} get secrets -l gantry.dev/environment=demo   # the release records");
    println!(
        "  job summaries of both runs: {}",
        dir.join(".gantry/summary-1.md").display()
    );
    println!("    and {}", dir.join(".gantry/summary-2.md").display());
    println!("Tear down:");
    println!("  {kubectl} delete namespace {namespace}");
    println!("  bash .ci/testbed down   # stops the test bed (cluster, registries, Docker)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broken_change_adds_a_failing_command_to_the_backend_only() {
        let healthy = FILES.iter().find(|(p, _)| *p == MANIFESTS).unwrap().1;
        let broken = broken_manifests();
        assert_ne!(broken, healthy, "the anchor line is in the manifests");
        assert_eq!(broken.matches("command:").count(), 1);
        let documents: Vec<serde_yaml_ng::Value> = broken
            .split("\n---\n")
            .map(|d| serde_yaml_ng::from_str(d).unwrap())
            .collect();
        let backend = documents
            .iter()
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "backend")
            .unwrap();
        let command = &backend["spec"]["template"]["spec"]["containers"][0]["command"];
        assert!(
            command[2].as_str().unwrap().contains("exit 1"),
            "{command:?}"
        );
    }

    #[test]
    fn the_test_bed_env_file_is_read_and_missing_paths_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("gantry.kubeconfig");
        std::fs::write(&kubeconfig, "apiVersion: v1\n").unwrap();
        let text = format!(
            "export GANTRY_TEST_DOCKER=/usr/bin/docker\nexport GANTRY_TEST_KUBECONFIG={}\nexport GANTRY_TEST_TOFU=/nonexistent/tofu\nexport AWS_REGION=us-east-1\n",
            kubeconfig.display()
        );
        let found = TestBed::from_env_file(&text);
        assert_eq!(found.kubeconfig, Some(kubeconfig));
        assert_eq!(found.tofu, None);
        assert_eq!(TestBed::from_env_file(""), TestBed::default());
    }
}
