//! `gantry demo`: writes the embedded example project (examples/demo) to a directory and runs the main job on it locally.

use std::path::{Path, PathBuf};

use clap::ArgMatches;

use crate::adapters::runner::{RunnerFiles, RunnerMode};
use crate::app::{Exit, Invocation};
use crate::config::{Origin, RawInputs};
use crate::context::GitHubContext;

/// The example project, embedded in the binary: (path, contents).
pub const FILES: &[(&str, &str)] = &[
    ("gantry.yml", include_str!("../examples/demo/gantry.yml")),
    (
        "terraform/main.tf",
        include_str!("../examples/demo/terraform/main.tf"),
    ),
    (
        "app/frontend/Dockerfile",
        include_str!("../examples/demo/app/frontend/Dockerfile"),
    ),
    (
        "app/frontend/index.html",
        include_str!("../examples/demo/app/frontend/index.html"),
    ),
    (
        "app/backend/Dockerfile",
        include_str!("../examples/demo/app/backend/Dockerfile"),
    ),
    (
        "app/backend/app.sh",
        include_str!("../examples/demo/app/backend/app.sh"),
    ),
    (
        "k8s/app.yaml",
        include_str!("../examples/demo/k8s/app.yaml"),
    ),
];

/// Writes the example project under `dir` (existing files are replaced; Terraform state kept).
pub fn write_project(dir: &Path) -> std::io::Result<()> {
    for (path, contents) in FILES {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(target, contents)?;
    }
    Ok(())
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

/// `gantry demo [--dir DIR] [--registry HOST:PORT]`.
pub fn run(matches: &ArgMatches) -> Exit {
    let dir = match matches.get_one::<PathBuf>("dir") {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("gantry-demo-{}", std::process::id())),
    };
    if let Err(err) = write_project(&dir) {
        eprintln!(
            "gantry demo: cannot write the example project to {}: {err}",
            dir.display()
        );
        return Exit::Usage;
    }
    println!("gantry demo: example project written to {}", dir.display());
    let registry = matches
        .get_one::<String>("registry")
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:5000".into());
    crate::cli::run_invocation(invocation(&dir, &registry))
}
