//! The Terraform process: finds the binary, checks its version, runs one command with the automation environment, streams its stdout lines, and interrupts it on cancellation.
//!
//! Design note: this adapter knows how to run Terraform, not what the output means; the argv
//! comes from [`crate::plan::argv`] and the lines are read by [`crate::plan::ui`]. Terraform
//! runs in its own process group, so a Ctrl-C in a terminal reaches gantry only and Terraform
//! receives exactly one SIGINT (a second one would make it exit without releasing the lock).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::cancel::Cancel;
use crate::plan::argv::{self, Cli, Version};

/// How long an interrupted Terraform gets to finish and release the state lock before it is killed.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(30);

/// How long to keep reading output after Terraform exited (a leftover child may hold the pipe).
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Why Terraform could not be run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{searched}; install Terraform >= 1.10 (e.g. with hashicorp/setup-terraform) or OpenTofu >= 1.8 (opentofu/setup-opentofu, then `terraform-binary: tofu`) on the runner, or set `terraform-binary` to the absolute path of one")]
    Missing { searched: String },
    #[error("{path} is {} {found}, but gantry needs {} >= {}; install a newer release or point `terraform-binary` at one", cli.name(), cli.name(), cli.min_version())]
    TooOld {
        path: PathBuf,
        cli: Cli,
        found: Version,
    },
    #[error("`{path} version` failed (exit {code:?}): {stderr}")]
    VersionFailed {
        path: PathBuf,
        code: Option<i32>,
        stderr: String,
    },
    #[error("could not read the version of {path}: {source}")]
    VersionUnreadable {
        path: PathBuf,
        #[source]
        source: argv::Error,
    },
    #[error("could not start {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lost contact with terraform: {0}")]
    Io(#[source] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How one Terraform command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The exit code, or `None` when Terraform was ended by a signal.
    pub code: Option<i32>,
    /// Everything Terraform printed on stdout.
    pub stdout: String,
    pub stderr: String,
    /// Gantry sent SIGINT because the run was cancelled.
    pub interrupted: bool,
    /// Terraform did not exit within the grace period after SIGINT and was killed.
    pub killed: bool,
    pub elapsed: Duration,
}

impl Finished {
    pub fn succeeded(&self) -> bool {
        self.code == Some(0)
    }
}

/// A located and version-checked Terraform (or OpenTofu), run in one directory.
#[derive(Debug, Clone)]
pub struct Terraform {
    binary: PathBuf,
    cli: Cli,
    version: Version,
    directory: PathBuf,
    interrupt_grace: Duration,
}

/// Finds the binary the `terraform-binary` input names: an absolute path, or a name (`terraform`,
/// `tofu`) looked up on `PATH`.
pub fn locate(wanted: &str, path_var: Option<OsString>) -> Result<PathBuf> {
    let wanted = if wanted.trim().is_empty() {
        "terraform"
    } else {
        wanted.trim()
    };
    if wanted.contains('/') {
        let path = PathBuf::from(wanted);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(Error::Missing {
                searched: format!("`terraform-binary: {wanted}` is not an executable file"),
            })
        };
    }
    let dirs: Vec<PathBuf> = path_var
        .as_ref()
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    dirs.iter()
        .map(|dir| dir.join(wanted))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| Error::Missing {
            searched: format!("no executable `{wanted}` on PATH (`terraform-binary: {wanted}`)"),
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

impl Terraform {
    /// Locates the tool `wanted` names (see [`locate`]) and checks which one it is and its
    /// version; nothing else runs.
    pub async fn discover(wanted: &str, directory: &Path) -> Result<Terraform> {
        let binary = locate(wanted, std::env::var_os("PATH"))?;
        Terraform::with_binary(binary, directory).await
    }

    /// Asks `binary` which tool and version it is (`version`), and checks the version.
    pub async fn with_binary(binary: PathBuf, directory: &Path) -> Result<Terraform> {
        let mut terraform = Terraform {
            binary,
            cli: Cli::Terraform,
            version: argv::MIN_VERSION,
            directory: directory.to_path_buf(),
            interrupt_grace: INTERRUPT_GRACE,
        };
        let finished = terraform
            .run(&argv::version(), &Cancel::never(), &mut |_| {})
            .await?;
        if !finished.succeeded() {
            return Err(Error::VersionFailed {
                path: terraform.binary,
                code: finished.code,
                stderr: finished.stderr.trim().to_string(),
            });
        }
        let (cli, found) = argv::parse_version_output(&finished.stdout).map_err(|source| {
            Error::VersionUnreadable {
                path: terraform.binary.clone(),
                source,
            }
        })?;
        if found < cli.min_version() {
            return Err(Error::TooOld {
                path: terraform.binary,
                cli,
                found,
            });
        }
        terraform.cli = cli;
        terraform.version = found;
        Ok(terraform)
    }

    /// Changes how long an interrupted Terraform may take before it is killed.
    pub fn with_interrupt_grace(mut self, grace: Duration) -> Self {
        self.interrupt_grace = grace;
        self
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// Terraform or OpenTofu.
    pub fn cli(&self) -> Cli {
        self.cli
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Runs `terraform <args>` in the directory, calling `on_line` with each stdout line as it
    /// arrives. On cancellation Terraform gets one SIGINT, then `interrupt_grace` to exit, then
    /// SIGKILL (with its whole process group).
    pub async fn run(
        &self,
        args: &[String],
        cancel: &Cancel,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Finished> {
        let started = Instant::now();
        let mut child = self.command(args).spawn().map_err(|source| Error::Spawn {
            path: self.binary.clone(),
            source,
        })?;
        let stderr_task = read_stderr(&mut child);
        let mut watch = Watch {
            pid: child.id().and_then(|id| i32::try_from(id).ok()),
            lines: child.stdout.take().map(|out| BufReader::new(out).lines()),
            stdout: String::new(),
            interrupted_at: None,
            killed: false,
        };
        let status = watch
            .wait(&mut child, self.interrupt_grace, cancel, on_line)
            .await?;
        watch.drain(on_line).await;
        let stderr = tokio::time::timeout(DRAIN_LIMIT, stderr_task)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        Ok(Finished {
            code: status.code(),
            stdout: watch.stdout,
            stderr,
            interrupted: watch.interrupted_at.is_some(),
            killed: watch.killed,
            elapsed: started.elapsed(),
        })
    }

    /// The command line for `terraform <args>`: in the directory, in its own process group, with
    /// piped output and the automation environment.
    fn command(&self, args: &[String]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(args)
            .current_dir(&self.directory)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(argv::is_removed_env) {
                command.env_remove(&name);
            }
        }
        for (name, value) in argv::automation_env() {
            command.env(name, value);
        }
        command
    }
}

/// Collects the child's whole stderr in the background.
fn read_stderr(child: &mut tokio::process::Child) -> tokio::task::JoinHandle<String> {
    let stderr = child.stderr.take();
    tokio::spawn(async move {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            let mut bytes = Vec::new();
            let _ = stderr.read_to_end(&mut bytes).await;
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}

/// A running Terraform's stdout, and what gantry did to stop it.
struct Watch {
    pid: Option<i32>,
    /// The stdout lines still to read; `None` once they ended.
    lines: Option<Lines>,
    /// Everything read from stdout so far.
    stdout: String,
    /// When SIGINT was sent.
    interrupted_at: Option<Instant>,
    /// SIGKILL was sent.
    killed: bool,
}

impl Watch {
    /// Waits for the exit while streaming stdout; on cancellation sends SIGINT, and SIGKILL to
    /// the process group once `grace` has passed.
    async fn wait(
        &mut self,
        child: &mut tokio::process::Child,
        grace: Duration,
        cancel: &Cancel,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ExitStatus> {
        loop {
            let kill_at = self.interrupted_at.map(|at| at + grace);
            tokio::select! {
                status = child.wait() => break status.map_err(Error::Io),
                line = next_line(&mut self.lines), if self.lines.is_some() => match line {
                    Some(line) => self.take(&line, on_line),
                    None => self.lines = None,
                },
                _ = cancel.cancelled(), if self.interrupted_at.is_none() => {
                    if let Some(pid) = self.pid {
                        send_signal(pid, libc::SIGINT);
                    }
                    self.interrupted_at = Some(Instant::now());
                }
                _ = sleep_until(kill_at), if kill_at.is_some() && !self.killed => {
                    if let Some(pid) = self.pid {
                        // The negative pid addresses the whole process group.
                        send_signal(-pid, libc::SIGKILL);
                    }
                    self.killed = true;
                }
            }
        }
    }

    /// Reads the lines still buffered after the exit, waiting at most `DRAIN_LIMIT` for each.
    async fn drain(&mut self, on_line: &mut (dyn FnMut(&str) + Send)) {
        while self.lines.is_some() {
            match tokio::time::timeout(DRAIN_LIMIT, next_line(&mut self.lines)).await {
                Ok(Some(line)) => self.take(&line, on_line),
                Ok(None) | Err(_) => self.lines = None,
            }
        }
    }

    /// Hands one stdout line to `on_line` and keeps it.
    fn take(&mut self, line: &str, on_line: &mut (dyn FnMut(&str) + Send)) {
        on_line(line);
        self.stdout.push_str(line);
        self.stdout.push('\n');
    }
}

type Lines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// The next stdout line; `None` at the end (or when the pipe breaks, which ends it too).
async fn next_line(lines: &mut Option<Lines>) -> Option<String> {
    match lines {
        Some(lines) => lines.next_line().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

fn send_signal(pid: i32, signal: libc::c_int) {
    // SAFETY: kill(2) with a pid gantry spawned and has not reaped yet (or its process group);
    // it has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_an_absolute_path_or_searches_path() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("tofu");
        std::fs::write(&fake, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path_var = Some(OsString::from(format!(
            "/nonexistent:{}",
            dir.path().display()
        )));

        assert_eq!(locate(fake.to_str().unwrap(), None).unwrap(), fake);
        assert_eq!(locate("tofu", path_var.clone()).unwrap(), fake);
        let missing = locate("", path_var).unwrap_err().to_string();
        assert!(
            missing.contains("no executable `terraform` on PATH"),
            "{missing}"
        );
        assert!(missing.contains("terraform-binary"), "{missing}");
        let not_file = locate("/nonexistent/terraform", None)
            .unwrap_err()
            .to_string();
        assert!(
            not_file
                .contains("`terraform-binary: /nonexistent/terraform` is not an executable file"),
            "{not_file}"
        );
    }
}
