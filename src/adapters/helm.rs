//! The Helm and Kustomize CLIs: `helm template`, `helm registry login` and `kustomize build`, each in a private working directory (Helm's homes, values files 0600), bounded in time.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long one render may take (an OCI pull included).
pub const RENDER_TIMEOUT: Duration = Duration::from_secs(120);

/// The Helm CLI: `GANTRY_HELM`, else `helm` on PATH.
pub fn helm_binary() -> Result<PathBuf, String> {
    binary(
        "GANTRY_HELM",
        "helm",
        "charts are rendered with the Helm CLI",
    )
}

/// The Kustomize CLI: `GANTRY_KUSTOMIZE`, else `kustomize` on PATH.
pub fn kustomize_binary() -> Result<PathBuf, String> {
    binary(
        "GANTRY_KUSTOMIZE",
        "kustomize",
        "kustomization directories are built with the Kustomize CLI",
    )
}

fn binary(variable: &str, name: &str, why: &str) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(variable).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{why}, but {variable}={} is not a file",
                path.display()
            ))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            format!("{why}, but `{name}` is not on PATH (the released action image bundles it; an image built from the Dockerfile without its HELM_URL/KUSTOMIZE_URL arguments does not: install it, or set {variable} to its path, e.g. a binary in the workspace)")
        })
}

/// A private directory (0700) for one run's renders: Helm's cache, config and data homes, the
/// registry login and the values files gantry writes. Removed when dropped.
pub struct Workdir {
    dir: PathBuf,
}

impl Workdir {
    pub fn new() -> Result<Workdir, String> {
        let dir = super::cluster::private_dir("gantry-render")
            .map_err(|err| format!("no private directory to render in: {err}"))?;
        Ok(Workdir { dir })
    }

    /// Writes `contents` to a file only this user can read.
    pub fn write_private(&self, name: &str, contents: &str) -> Result<PathBuf, String> {
        let path = self.dir.join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(&path)
            .and_then(|mut file| file.write_all(contents.as_bytes()))
            .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
        Ok(path)
    }

    /// Helm's environment: its homes here, nothing from the runner's own Helm set-up.
    fn helm_env(&self) -> Vec<(&'static str, PathBuf)> {
        vec![
            ("HELM_CACHE_HOME", self.dir.join("helm/cache")),
            ("HELM_CONFIG_HOME", self.dir.join("helm/config")),
            ("HELM_DATA_HOME", self.dir.join("helm/data")),
            ("HELM_REGISTRY_CONFIG", self.dir.join("helm/registry.json")),
            (
                "HELM_REPOSITORY_CONFIG",
                self.dir.join("helm/repositories.yaml"),
            ),
        ]
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `helm template` with `args`; its standard output, or Helm's error.
pub fn template(helm: &Path, workdir: &Workdir, args: &[String]) -> Result<String, String> {
    run(helm, args, &workdir.helm_env(), None, RENDER_TIMEOUT)
}

/// Logs Helm in to an OCI registry (the password on standard input, never the command line).
pub fn registry_login(
    helm: &Path,
    workdir: &Workdir,
    host: &str,
    username: &str,
    password: &str,
    extra: &[String],
) -> Result<(), String> {
    let mut args: Vec<String> = vec![
        "registry".into(),
        "login".into(),
        host.into(),
        "--username".into(),
        username.into(),
        "--password-stdin".into(),
    ];
    args.extend(extra.iter().cloned());
    run(
        helm,
        &args,
        &workdir.helm_env(),
        Some(password),
        Duration::from_secs(60),
    )
    .map(|_| ())
}

/// Runs `kustomize build DIR`; the built YAML, or Kustomize's error.
pub fn kustomize_build(kustomize: &Path, dir: &Path) -> Result<String, String> {
    run(
        kustomize,
        &["build".into(), dir.display().to_string()],
        &[],
        None,
        RENDER_TIMEOUT,
    )
}

/// Runs a CLI with a deadline; its standard output, or its standard error as the error.
fn run(
    program: &Path,
    args: &[String],
    env: &[(&str, PathBuf)],
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<String, String> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .spawn()
        .map_err(|err| format!("{} could not be started: {err}", program.display()))?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        let _ = input.write_all(text.as_bytes());
    }
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    let output = match receiver.recv_timeout(timeout) {
        Ok(Ok(output)) => output,
        Ok(Err(err)) => return Err(format!("{} failed: {err}", program.display())),
        Err(_) => {
            // SAFETY: kill(2) on the child's pid, which is not reaped while the thread waits.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            return Err(format!(
                "{} did not finish within {}s and was stopped",
                program.display(),
                timeout.as_secs()
            ));
        }
    };
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let message: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    Err(if message.is_empty() {
        format!("exited with {}", output.status)
    } else {
        // The last lines say what failed; the first may be deprecation warnings.
        message[message.len().saturating_sub(6)..].join("; ")
    })
}
