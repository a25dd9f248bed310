//! The runner's side of a run: the log (groups, annotations, debug, masking) and the `$GITHUB_OUTPUT` and `$GITHUB_STEP_SUMMARY` files.
//!
//! Design note: every line gantry prints goes through [`Runner`], which redacts secrets and
//! fences untrusted lines, so no caller can forget either. Outputs and the summary are kept in
//! memory and written once by [`Runner::finish`], also on the failure path.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::report::workflow::{self, Annotation, Level, Redactor};

/// Where the log goes and how it is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerMode {
    /// On a GitHub runner: workflow commands.
    GitHub,
    /// In a terminal: plain text, secrets replaced by `***` since nobody else masks them.
    Local,
}

/// Files the runner gives a step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunnerFiles {
    pub output: Option<PathBuf>,
    pub summary: Option<PathBuf>,
}

/// Why the runner files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RunnerFileError {
    #[error("GITHUB_OUTPUT is not set; gantry must run as a step of a GitHub Actions job (or use `gantry run` locally)")]
    OutputUnset,
    #[error("{var} ({path}) is not writable: {source}; the runner must mount it into the container (container actions get /github/file_commands)")]
    NotWritable {
        var: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not write {var} ({path}): {source}")]
    Write {
        var: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Output(#[from] workflow::OutputError),
}

impl RunnerFiles {
    /// Reads `GITHUB_OUTPUT` and `GITHUB_STEP_SUMMARY`; in action mode `GITHUB_OUTPUT` is
    /// required. Each file is opened for appending (which writes nothing) to prove it is usable
    /// before the run starts.
    pub fn from_env(
        get: impl Fn(&str) -> Option<String>,
        require_output: bool,
    ) -> Result<Self, RunnerFileError> {
        let output = get("GITHUB_OUTPUT")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let summary = get("GITHUB_STEP_SUMMARY")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        if require_output && output.is_none() {
            return Err(RunnerFileError::OutputUnset);
        }
        for (var, path) in [
            ("GITHUB_OUTPUT", &output),
            ("GITHUB_STEP_SUMMARY", &summary),
        ] {
            if let Some(path) = path {
                check_appendable(var, path)?;
            }
        }
        Ok(RunnerFiles { output, summary })
    }
}

fn check_appendable(var: &'static str, path: &Path) -> Result<(), RunnerFileError> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map(drop)
        .map_err(|source| RunnerFileError::NotWritable {
            var,
            path: path.to_path_buf(),
            source,
        })
}

struct Inner {
    mode: RunnerMode,
    debug: bool,
    out: Box<dyn Write + Send>,
    redactor: Redactor,
    masked: std::collections::BTreeSet<String>,
    stop_token: String,
    outputs: BTreeMap<String, String>,
    summary: String,
    open_group: Option<String>,
}

/// A cloneable handle to the log and the step's files; safe to use from concurrent tasks.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Mutex<Inner>>,
    files: RunnerFiles,
}

impl Runner {
    /// A runner writing to stdout.
    pub fn stdout(mode: RunnerMode, debug: bool, files: RunnerFiles) -> Self {
        Self::with_writer(mode, debug, files, Box::new(std::io::stdout()))
    }

    /// A runner writing its log to `out` (tests capture it).
    pub fn with_writer(
        mode: RunnerMode,
        debug: bool,
        files: RunnerFiles,
        out: Box<dyn Write + Send>,
    ) -> Self {
        Runner {
            inner: Arc::new(Mutex::new(Inner {
                mode,
                debug,
                out,
                redactor: Redactor::default(),
                masked: Default::default(),
                stop_token: workflow::random_token(),
                outputs: BTreeMap::new(),
                summary: String::new(),
                open_group: None,
            })),
            files,
        }
    }

    /// A runner in GitHub mode, without runner files, whose log is kept in memory: what tests
    /// and tools use to drive a phase and read back exactly what a runner would have seen.
    pub fn capturing(debug: bool) -> (Runner, SharedBuffer) {
        let log = SharedBuffer::default();
        let runner = Self::with_writer(
            RunnerMode::GitHub,
            debug,
            RunnerFiles::default(),
            Box::new(log.clone()),
        );
        (runner, log)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the log in a state worth refusing.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn mode(&self) -> RunnerMode {
        self.lock().mode
    }

    /// Registers a secret: announced to the runner with `::add-mask::` (each line) before any
    /// other use, and replaced by `***` in everything gantry prints or writes.
    pub fn add_mask(&self, secret: &str) {
        if secret.trim().is_empty() {
            return;
        }
        let mut inner = self.lock();
        if !inner.masked.insert(secret.to_string()) {
            return; // announced already
        }
        if inner.mode == RunnerMode::GitHub {
            for line in Redactor::mask_lines(secret) {
                let command = workflow::command("add-mask", &[], &line);
                let _ = writeln!(inner.out, "{command}");
            }
        }
        inner.redactor.add(secret);
    }

    /// Redacts secrets from text gantry is about to put anywhere (comments, records).
    pub fn redact(&self, text: &str) -> String {
        self.lock().redactor.redact(text)
    }

    /// Prints text; each line is redacted and fenced if it could start a workflow command.
    pub fn info(&self, text: &str) {
        let mut inner = self.lock();
        inner.print_text(text);
    }

    /// Prints a debug line: `::debug::` on GitHub (shown when step debugging is on), and only
    /// when `RUNNER_DEBUG=1` locally.
    pub fn debug(&self, text: &str) {
        let mut inner = self.lock();
        if !inner.debug {
            return;
        }
        let text = inner.redactor.redact(text);
        let line = match inner.mode {
            RunnerMode::GitHub => workflow::command("debug", &[], &text),
            RunnerMode::Local => text
                .lines()
                .map(|line| format!("debug: {line}"))
                .collect::<Vec<_>>()
                .join("\n"),
        };
        let _ = writeln!(inner.out, "{line}");
    }

    /// An annotation: shown on the run and, with a file and line, on the diff.
    pub fn annotate(&self, level: Level, annotation: &Annotation, message: &str) {
        let mut inner = self.lock();
        let message = inner.redactor.redact(message);
        let annotation = Annotation {
            title: annotation
                .title
                .as_deref()
                .map(|t| inner.redactor.redact(t)),
            file: annotation.file.as_deref().map(|f| inner.redactor.redact(f)),
            ..annotation.clone()
        };
        let line = match inner.mode {
            RunnerMode::GitHub => workflow::annotation(level, &annotation, &message),
            RunnerMode::Local => {
                let location = match (&annotation.file, annotation.line) {
                    (Some(file), Some(line)) => format!("{file}:{line}: "),
                    (Some(file), None) => format!("{file}: "),
                    _ => String::new(),
                };
                let title = annotation
                    .title
                    .as_deref()
                    .map(|t| format!("{t}: "))
                    .unwrap_or_default();
                format!("{}: {location}{title}{message}", level.command_name())
            }
        };
        let _ = writeln!(inner.out, "{line}");
    }

    pub fn error(&self, message: &str) {
        self.annotate(Level::Error, &Annotation::default(), message);
    }

    pub fn warning(&self, message: &str) {
        self.annotate(Level::Warning, &Annotation::default(), message);
    }

    /// Starts a collapsible log group (one per phase); an open group is closed first.
    pub fn group(&self, title: &str) {
        let mut inner = self.lock();
        inner.end_group();
        let title = inner.redactor.redact(title);
        let line = match inner.mode {
            RunnerMode::GitHub => workflow::command("group", &[], &title),
            RunnerMode::Local => format!("==> {title}"),
        };
        let _ = writeln!(inner.out, "{line}");
        inner.open_group = Some(title);
    }

    pub fn end_group(&self) {
        self.lock().end_group();
    }

    /// Records a step output (written by [`Runner::finish`]); the value is redacted.
    pub fn set_output(&self, name: &str, value: &str) {
        let mut inner = self.lock();
        let value = inner.redactor.redact(value);
        inner.outputs.insert(name.to_string(), value);
    }

    /// The outputs recorded so far.
    pub fn outputs(&self) -> BTreeMap<String, String> {
        self.lock().outputs.clone()
    }

    /// Appends Markdown to the in-memory step summary; it is redacted when written.
    pub fn append_summary(&self, markdown: &str) {
        self.lock().summary.push_str(markdown);
    }

    /// Writes the outputs (heredocs with a fresh random delimiter) and the summary (redacted,
    /// cut under 1 MiB), each in one write. Locally, without the files, outputs are printed.
    pub fn finish(&self) -> Result<(), RunnerFileError> {
        let mut inner = self.lock();
        inner.end_group();
        let outputs = std::mem::take(&mut inner.outputs);
        let summary = std::mem::take(&mut inner.summary);
        match &self.files.output {
            Some(path) => {
                let delimiter = format!("ghadelimiter_{}", workflow::random_token());
                let mut text = String::new();
                for (name, value) in &outputs {
                    text.push_str(&workflow::output_entry(name, value, &delimiter)?);
                }
                append(path, "GITHUB_OUTPUT", &text)?;
            }
            None if !outputs.is_empty() => {
                inner.print_text("Outputs:");
                for (name, value) in &outputs {
                    let line = format!("  {name}={value}");
                    inner.print_text(&line);
                }
            }
            None => {}
        }
        if let Some(path) = &self.files.summary {
            if !summary.is_empty() {
                let redacted = inner.redactor.redact(&summary);
                let text = workflow::truncate_summary(&redacted, workflow::SUMMARY_LIMIT);
                append(path, "GITHUB_STEP_SUMMARY", &text)?;
            }
        }
        Ok(())
    }
}

fn append(path: &Path, var: &'static str, text: &str) -> Result<(), RunnerFileError> {
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new().append(true).create(true).open(path)?;
        file.write_all(text.as_bytes())?;
        file.flush()
    };
    write().map_err(|source| RunnerFileError::Write {
        var,
        path: path.to_path_buf(),
        source,
    })
}

impl Inner {
    fn print_text(&mut self, text: &str) {
        let redacted = self.redactor.redact(text);
        // The runner also ends a line at a lone `\r`, so split there too before guarding.
        let normalized = redacted.replace("\r\n", "\n");
        let normalized = normalized.strip_suffix('\n').unwrap_or(&normalized);
        for line in normalized.split(['\n', '\r']) {
            let line = match self.mode {
                RunnerMode::GitHub => workflow::guard_line(line, &self.stop_token),
                RunnerMode::Local => line.to_string(),
            };
            let _ = writeln!(self.out, "{line}");
        }
    }

    fn end_group(&mut self) {
        if self.open_group.take().is_some() && self.mode == RunnerMode::GitHub {
            let _ = writeln!(self.out, "::endgroup::");
        }
    }
}

/// A `Write` that appends into shared memory, for tests that read back the log.
#[derive(Clone, Default)]
pub struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(mode: RunnerMode, debug: bool, files: RunnerFiles) -> (Runner, SharedBuffer) {
        let log = SharedBuffer::default();
        (
            Runner::with_writer(mode, debug, files, Box::new(log.clone())),
            log,
        )
    }

    #[test]
    fn debug_lines_appear_only_when_debugging() {
        let (quiet, log) = runner(RunnerMode::GitHub, false, RunnerFiles::default());
        quiet.debug("resolved 3 images");
        assert_eq!(log.contents(), "");
        let (loud, log) = runner(RunnerMode::GitHub, true, RunnerFiles::default());
        loud.add_mask("s3cret-value");
        loud.debug("token s3cret-value\nsecond line");
        assert_eq!(
            log.contents(),
            "::add-mask::s3cret-value\n::debug::token ***%0Asecond line\n"
        );
        let (local, log) = runner(RunnerMode::Local, true, RunnerFiles::default());
        local.debug("a\nb");
        assert_eq!(log.contents(), "debug: a\ndebug: b\n");
    }

    #[test]
    fn a_lone_carriage_return_cannot_smuggle_a_command() {
        let (runner, log) = runner(RunnerMode::GitHub, false, RunnerFiles::default());
        runner.info("progress 50%\r::error::fake annotation\nnext\n");
        let lines: Vec<String> = log.contents().lines().map(str::to_string).collect();
        assert_eq!(lines[0], "progress 50%");
        assert!(lines[1].starts_with("::stop-commands::"), "{lines:?}");
        assert_eq!(lines[2], "::error::fake annotation");
        assert_eq!(lines[4], "next");
        assert_eq!(
            lines.len(),
            5,
            "no blank line for the trailing newline: {lines:?}"
        );
    }

    #[test]
    fn groups_nest_never_and_close_before_the_files_are_written() {
        let (runner, log) = runner(RunnerMode::GitHub, false, RunnerFiles::default());
        runner.group("gantry infra");
        runner.group("gantry build");
        runner.info("building");
        runner.finish().unwrap();
        assert_eq!(
            log.contents(),
            "::group::gantry infra\n::endgroup::\n::group::gantry build\nbuilding\n::endgroup::\n"
        );
    }

    #[test]
    fn local_mode_masks_by_itself_and_prints_outputs() {
        let (runner, log) = runner(RunnerMode::Local, false, RunnerFiles::default());
        runner.add_mask("hunter2-password");
        runner.info("login with hunter2-password");
        runner.set_output("status", "deployed");
        runner.finish().unwrap();
        assert_eq!(
            log.contents(),
            "login with ***\nOutputs:\n  status=deployed\n",
            "no ::add-mask:: locally, and the value is hidden anyway"
        );
    }

    #[test]
    fn the_summary_is_written_once_redacted_and_under_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let files = RunnerFiles {
            output: Some(dir.path().join("output")),
            summary: Some(dir.path().join("summary")),
        };
        let (runner, _log) = runner(RunnerMode::GitHub, false, files);
        runner.add_mask("ghs_summarytoken");
        runner.append_summary("# Report\nused ghs_summarytoken\n");
        for i in 0..60_000 {
            runner.append_summary(&format!("| resource.number_{i} | create |\n"));
        }
        runner.finish().unwrap();
        let summary = std::fs::read_to_string(dir.path().join("summary")).unwrap();
        assert!(
            summary.len() <= workflow::SUMMARY_LIMIT,
            "{} bytes",
            summary.len()
        );
        assert!(summary.contains("Summary truncated"));
        assert!(summary.contains("used ***") && !summary.contains("ghs_summarytoken"));
        runner.finish().unwrap();
        let again = std::fs::read_to_string(dir.path().join("summary")).unwrap();
        assert_eq!(again.len(), summary.len(), "finish writes the summary once");
    }

    #[test]
    fn unusable_runner_files_are_named() {
        let missing =
            |name: &str| (name == "GITHUB_OUTPUT").then(|| "/nonexistent/dir/out".to_string());
        let err = RunnerFiles::from_env(missing, true).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("GITHUB_OUTPUT (/nonexistent/dir/out) is not writable"),
            "{err}"
        );
        let err = RunnerFiles::from_env(|_| None, true).unwrap_err();
        assert!(matches!(err, RunnerFileError::OutputUnset));
        assert_eq!(
            RunnerFiles::from_env(|_| None, false).unwrap(),
            RunnerFiles::default()
        );
    }
}
