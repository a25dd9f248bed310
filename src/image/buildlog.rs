//! The classic builder's log as gantry follows it: the current `Step N/M : ...`, the last lines of its output, and the failure text a person reads.

use std::collections::VecDeque;

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
}
