//! Build logs as gantry follows them (the classic builder's `Step N/M : ...` lines, BuildKit's progress messages): the current step, the last lines of its output, and the failure text a person reads.

use std::collections::{HashMap, VecDeque};

/// How many output lines of the failing step a failure shows.
pub const TAIL_LINES: usize = 15;

/// A build log being followed line by line.
#[derive(Debug, Clone, Default)]
pub struct BuildLog {
    step: Option<String>,
    tail: VecDeque<String>,
    image_id: Option<String>,
}

impl BuildLog {
    /// Feeds one line of the `stream` field (already split on newlines).
    pub fn push_line(&mut self, line: &str) {
        let line = line.trim_end();
        if line.is_empty() {
            return;
        }
        if line.starts_with("Step ") && line.contains(" : ") {
            self.step = Some(line.to_string());
            self.tail.clear();
            return;
        }
        if let Some(id) = line.strip_prefix("Successfully built ") {
            self.image_id = Some(id.trim().to_string());
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
    }

    /// Records the image id the daemon reported in an `aux` message.
    pub fn set_image_id(&mut self, id: &str) {
        self.image_id = Some(id.to_string());
    }

    pub fn image_id(&self) -> Option<&str> {
        self.image_id.as_deref()
    }

    pub fn current_step(&self) -> Option<&str> {
        self.step.as_deref()
    }

    /// The failure text: the failing step, the daemon's error, and the step's last lines.
    pub fn failure(&self, error: &str) -> String {
        let mut text = match &self.step {
            Some(step) => format!("{step} failed: {}", error.trim()),
            None => format!("the build failed before its first step: {}", error.trim()),
        };
        let tail: Vec<&str> = self
            .tail
            .iter()
            .map(String::as_str)
            .filter(|l| !l.starts_with(" ---> ") && !l.starts_with("Removing intermediate"))
            .collect();
        if !tail.is_empty() {
            text.push_str(&format!("\nlast lines of its output:\n{}", tail.join("\n")));
        }
        text
    }
}

/// Splits a `stream` chunk into lines (a chunk may hold several, or end mid-line rarely; the
/// classic builder sends whole lines).
pub fn lines(chunk: &str) -> impl Iterator<Item = &str> {
    chunk
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
}

/// How many output lines of the failing BuildKit step a failure shows.
pub const BUILDKIT_TAIL_LINES: usize = 20;

/// One BuildKit vertex (a step) as seen so far.
#[derive(Debug, Clone, Default)]
struct Vertex {
    number: usize,
    name: String,
    announced: bool,
    completed: bool,
    error: Option<String>,
    /// Output not yet ended by a newline.
    partial: String,
    tail: VecDeque<String>,
}

impl Vertex {
    fn push_output(&mut self, line: &str) {
        if self.tail.len() == BUILDKIT_TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
    }
}

/// One BuildKit progress message (`moby.buildkit.v1.StatusResponse`), as far as the log needs
/// it; the Docker adapter converts the daemon's messages into this.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub vertexes: Vec<VertexStatus>,
    pub logs: Vec<VertexOutput>,
}

/// The state of one build step (a vertex of BuildKit's graph).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VertexStatus {
    pub digest: String,
    pub name: String,
    pub started: bool,
    pub cached: bool,
    pub completed: bool,
    /// Empty when the step has not failed.
    pub error: String,
}

/// Output of one build step: a chunk of bytes, not necessarily whole lines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VertexOutput {
    pub vertex: String,
    pub msg: Vec<u8>,
}

/// BuildKit's progress (`moby.buildkit.v1.StatusResponse` messages) being followed: vertexes
/// numbered in the order they appear (`#N`, as `docker build` prints them), their output, and
/// which one failed.
#[derive(Debug, Clone, Default)]
pub struct BuildKitLog {
    vertexes: HashMap<String, Vertex>,
    /// The digest of the vertex that reported an error first.
    failed: Option<String>,
    /// The digest of the vertex started last.
    last_started: Option<String>,
    image_id: Option<String>,
}

impl BuildKitLog {
    /// Feeds one progress message; returns the lines to print (`#N [2/4] RUN ...`, `#N output`).
    pub fn push(&mut self, status: &Progress) -> Vec<String> {
        let mut out = Vec::new();
        for vertex in &status.vertexes {
            let next = self.vertexes.len() + 1;
            let entry = self
                .vertexes
                .entry(vertex.digest.clone())
                .or_insert_with(|| Vertex {
                    number: next,
                    ..Default::default()
                });
            if !vertex.name.is_empty() {
                entry.name = vertex.name.clone();
            }
            let number = entry.number;
            if (vertex.started || vertex.cached) && !entry.announced {
                entry.announced = true;
                out.push(format!("#{number} {}", entry.name));
                self.last_started = Some(vertex.digest.clone());
            }
            if vertex.cached && !entry.completed {
                out.push(format!("#{number} CACHED"));
            }
            if vertex.completed {
                entry.completed = true;
                if !entry.partial.is_empty() {
                    let rest = std::mem::take(&mut entry.partial);
                    out.push(format!("#{number} {rest}"));
                    entry.push_output(&rest);
                }
            }
            if !vertex.error.is_empty() && entry.error.is_none() {
                entry.error = Some(vertex.error.clone());
                out.push(format!("#{number} ERROR: {}", vertex.error));
                if self.failed.is_none() {
                    self.failed = Some(vertex.digest.clone());
                }
            }
        }
        for log in &status.logs {
            let next = self.vertexes.len() + 1;
            let entry = self
                .vertexes
                .entry(log.vertex.clone())
                .or_insert_with(|| Vertex {
                    number: next,
                    ..Default::default()
                });
            entry.partial.push_str(&String::from_utf8_lossy(&log.msg));
            while let Some(end) = entry.partial.find('\n') {
                let line: String = entry.partial.drain(..=end).collect();
                let line = line.trim_end_matches(['\n', '\r']);
                // A progress bar redraws with carriage returns; keep what it ended on.
                let line = line.rsplit('\r').next().unwrap_or(line);
                if line.trim().is_empty() {
                    continue;
                }
                out.push(format!("#{} {line}", entry.number));
                entry.push_output(line);
            }
        }
        out
    }

    /// Records the image id the daemon reported (`moby.image.id`).
    pub fn set_image_id(&mut self, id: &str) {
        self.image_id = Some(id.to_string());
    }

    pub fn image_id(&self) -> Option<&str> {
        self.image_id.as_deref()
    }

    /// The name of the failing step: the vertex that reported an error, else the one started
    /// last and not completed.
    pub fn failing_step(&self) -> Option<&str> {
        self.failing_vertex().map(|v| v.name.as_str())
    }

    fn failing_vertex(&self) -> Option<&Vertex> {
        let digest = self.failed.as_ref().or_else(|| {
            self.last_started
                .as_ref()
                .filter(|d| self.vertexes.get(*d).is_some_and(|v| !v.completed))
        })?;
        self.vertexes.get(digest)
    }

    /// The failure text: the failing step, the error, and the step's last lines.
    pub fn failure(&self, error: &str) -> String {
        let vertex = self.failing_vertex();
        let error = error.trim();
        let error = if error.is_empty() {
            vertex
                .and_then(|v| v.error.as_deref())
                .unwrap_or("no error message")
        } else {
            error
        };
        let Some(vertex) = vertex else {
            return format!("the build failed before its first step: {error}");
        };
        let mut text = format!("step `{}` failed: {error}", vertex.name);
        let mut tail: Vec<&str> = vertex.tail.iter().map(String::as_str).collect();
        if !vertex.partial.trim().is_empty() {
            tail.push(vertex.partial.trim_end());
        }
        if tail.len() > BUILDKIT_TAIL_LINES {
            tail.drain(..tail.len() - BUILDKIT_TAIL_LINES);
        }
        if !tail.is_empty() {
            text.push_str(&format!("\nlast lines of its output:\n{}", tail.join("\n")));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(log: &mut BuildLog, text: &str) {
        for line in lines(text) {
            log.push_line(line);
        }
    }

    #[test]
    fn failure_names_the_step_and_its_last_lines() {
        let mut log = BuildLog::default();
        feed(
            &mut log,
            "Step 1/3 : FROM gantry-test/busybox:latest\n ---> 1234\n",
        );
        feed(
            &mut log,
            "Step 2/3 : RUN echo one && echo two && exit 3\n ---> Running in abc\n",
        );
        feed(&mut log, "one\ntwo\n");
        let text = log.failure(
            "The command '/bin/sh -c echo one && echo two && exit 3' returned a non-zero code: 3",
        );
        assert!(
            text.starts_with("Step 2/3 : RUN echo one && echo two && exit 3 failed: The command"),
            "{text}"
        );
        assert!(
            text.ends_with("last lines of its output:\none\ntwo"),
            "{text}"
        );
        assert!(!text.contains("Running in"));
        assert_eq!(
            log.current_step(),
            Some("Step 2/3 : RUN echo one && echo two && exit 3")
        );
    }

    #[test]
    fn keeps_only_the_tail() {
        let mut log = BuildLog::default();
        log.push_line("Step 1/1 : RUN seq 100");
        for i in 0..100 {
            log.push_line(&i.to_string());
        }
        let text = log.failure("boom");
        assert!(
            text.contains("\n85\n") && text.ends_with("99") && !text.contains("\n84\n"),
            "{text}"
        );
    }

    #[test]
    fn failure_before_any_step_and_image_id() {
        let mut log = BuildLog::default();
        assert_eq!(
            log.failure("dockerfile parse error line 1: unknown instruction: FORM"),
            "the build failed before its first step: dockerfile parse error line 1: unknown instruction: FORM"
        );
        feed(
            &mut log,
            "Step 1/1 : FROM x\nSuccessfully built 0a1b2c\nSuccessfully tagged x:y\n",
        );
        assert_eq!(log.image_id(), Some("0a1b2c"));
        log.set_image_id("sha256:ff");
        assert_eq!(log.image_id(), Some("sha256:ff"));
    }

    use super::{Progress as StatusResponse, VertexOutput as VertexLog, VertexStatus as V};

    fn vertex(digest: &str, name: &str) -> V {
        V {
            digest: digest.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    fn started(digest: &str, name: &str) -> StatusResponse {
        StatusResponse {
            vertexes: vec![V {
                started: true,
                ..vertex(digest, name)
            }],
            ..Default::default()
        }
    }

    fn output(digest: &str, text: &str) -> StatusResponse {
        StatusResponse {
            logs: vec![VertexLog {
                vertex: digest.into(),
                msg: text.as_bytes().to_vec(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn buildkit_steps_are_numbered_and_their_output_printed() {
        let mut log = BuildKitLog::default();
        let mut printed = Vec::new();
        printed.extend(log.push(&StatusResponse {
            vertexes: vec![vertex("sha256:a", "[1/3] FROM gantry-test/busybox:latest")],
            ..Default::default()
        }));
        assert!(printed.is_empty(), "not started yet: {printed:?}");
        printed.extend(log.push(&StatusResponse {
            vertexes: vec![V {
                cached: true,
                ..vertex("sha256:a", "[1/3] FROM gantry-test/busybox:latest")
            }],
            ..Default::default()
        }));
        printed.extend(log.push(&started("sha256:b", "[2/3] RUN echo hi")));
        printed.extend(log.push(&output("sha256:b", "h")));
        printed.extend(log.push(&output("sha256:b", "i\nthere\n")));
        printed.extend(log.push(&StatusResponse {
            vertexes: vec![V {
                started: true,
                completed: true,
                ..vertex("sha256:b", "[2/3] RUN echo hi")
            }],
            ..Default::default()
        }));
        assert_eq!(
            printed,
            [
                "#1 [1/3] FROM gantry-test/busybox:latest",
                "#1 CACHED",
                "#2 [2/3] RUN echo hi",
                "#2 hi",
                "#2 there",
            ]
        );
        assert_eq!(log.failing_step(), None);
        assert_eq!(
            log.failure("boom"),
            "the build failed before its first step: boom"
        );
        log.set_image_id("sha256:ff");
        assert_eq!(log.image_id(), Some("sha256:ff"));
    }

    #[test]
    fn buildkit_failure_names_the_failing_step_and_its_last_lines() {
        let mut log = BuildKitLog::default();
        log.push(&started("sha256:a", "[1/2] RUN echo other"));
        log.push(&started("sha256:b", "[2/2] RUN seq 30 && false"));
        log.push(&output("sha256:a", "not-this\n"));
        let numbers: String = (1..=30).map(|i| format!("{i}\n")).collect();
        log.push(&output("sha256:b", &numbers));
        let printed = log.push(&StatusResponse {
            vertexes: vec![V {
                started: true,
                completed: true,
                error: "process \"/bin/sh -c seq 30 && false\" did not complete successfully: exit code: 1".into(),
                ..vertex("sha256:b", "[2/2] RUN seq 30 && false")
            }],
            ..Default::default()
        });
        assert_eq!(printed.len(), 1);
        assert!(printed[0].starts_with("#2 ERROR: process"), "{printed:?}");
        assert_eq!(log.failing_step(), Some("[2/2] RUN seq 30 && false"));
        let text =
            log.failure("executor failed running [/bin/sh -c seq 30 && false]: exit code: 1");
        assert!(
            text.starts_with(
                "step `[2/2] RUN seq 30 && false` failed: executor failed running [/bin/sh -c seq 30 && false]: exit code: 1\nlast lines of its output:\n11\n12\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("\n30"), "{text}");
        assert!(
            !text.contains("\n10\n") && !text.contains("not-this"),
            "{text}"
        );
        // Without the daemon's message the vertex's own error is used.
        assert!(log
            .failure("")
            .contains("failed: process \"/bin/sh -c seq 30 && false\""));
    }

    #[test]
    fn buildkit_failure_without_an_error_vertex_blames_the_running_step() {
        let mut log = BuildKitLog::default();
        log.push(&started("sha256:a", "[1/1] RUN sleep 100"));
        log.push(&output("sha256:a", "partial line without newline"));
        let text = log.failure("context canceled");
        assert_eq!(
            text,
            "step `[1/1] RUN sleep 100` failed: context canceled\nlast lines of its output:\npartial line without newline"
        );
    }
}
