//! The GitHub Actions runner protocol as pure text: workflow-command escaping, annotations, output entries, secret redaction and summary truncation.
//!
//! Design note: the runner reads every stdout line that starts with `::` as a command, so any
//! line gantry did not build itself is checked by [`guard_line`] before it is printed.

use std::fmt::Write as _;

/// GitHub's limit for one step summary (`$GITHUB_STEP_SUMMARY`), in bytes.
pub const SUMMARY_LIMIT: usize = 1024 * 1024;

/// Escapes a command's message: `%`, `\r`, `\n` (as `toCommandValue`/`escapeData` do).
pub fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a command property value: the data escapes plus `:` and `,`.
pub fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// Formats `::name key=value,...::message` with every part escaped.
pub fn command(name: &str, properties: &[(&str, String)], message: &str) -> String {
    let mut line = format!("::{name}");
    let mut first = true;
    for (key, value) in properties {
        line.push(if first { ' ' } else { ',' });
        first = false;
        let _ = write!(line, "{key}={}", escape_property(value));
    }
    let _ = write!(line, "::{}", escape_data(message));
    line
}

/// Severity of an annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Notice,
}

impl Level {
    pub fn command_name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Notice => "notice",
        }
    }
}

/// Where an annotation points in the user's repository, and its title.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotation {
    pub title: Option<String>,
    /// Path relative to the repository root.
    pub file: Option<String>,
    pub line: Option<u32>,
    pub end_line: Option<u32>,
    pub col: Option<u32>,
    pub end_column: Option<u32>,
}

/// Formats an annotation command (`::error file=...,line=...::message`).
pub fn annotation(level: Level, annotation: &Annotation, message: &str) -> String {
    let mut properties = Vec::new();
    if let Some(title) = &annotation.title {
        properties.push(("title", title.clone()));
    }
    if let Some(file) = &annotation.file {
        properties.push(("file", file.clone()));
    }
    for (key, value) in [
        ("line", annotation.line),
        ("endLine", annotation.end_line),
        ("col", annotation.col),
        ("endColumn", annotation.end_column),
    ] {
        if let Some(value) = value {
            properties.push((key, value.to_string()));
        }
    }
    command(level.command_name(), &properties, message)
}

/// Whether the runner could take `line` for a workflow command (`::cmd::` or the legacy `##[cmd]`).
pub fn looks_like_command(line: &str) -> bool {
    // The runner's v2 parser wants `::` at the start (after trimming); its legacy parser finds
    // `##[` anywhere in a line.
    line.trim_start().starts_with("::") || line.contains("##[")
}

/// Makes one line of text that gantry did not build itself safe to print: a line that could
/// start a workflow command is fenced with `::stop-commands::`, which the runner honours until
/// the matching resume token. `token` must be unguessable (see [`random_token`]).
pub fn guard_line(line: &str, token: &str) -> String {
    if looks_like_command(line) {
        format!("::stop-commands::{token}\n{line}\n::{token}::")
    } else {
        line.to_string()
    }
}

/// An unguessable token for delimiters and stop-commands (128 random bits, hex).
pub fn random_token() -> String {
    let mut bytes = [0u8; 16];
    // The OS random source is always there on the platforms gantry runs on; if it is not, a
    // time-based fallback still makes collisions with untrusted text practically impossible.
    if getrandom::getrandom(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = (nanos ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why an output could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    #[error("output name `{0}` is not valid: use letters, digits, `-` and `_`, starting with a letter or `_`")]
    InvalidName(String),
    #[error("the value of output `{0}` contains the random delimiter; refusing to write it (possible injection)")]
    DelimiterInValue(String),
}

/// Formats one `$GITHUB_OUTPUT` entry as a heredoc with `delimiter`, rejecting a value that
/// contains the delimiter (it would end the value early and inject other outputs).
pub fn output_entry(name: &str, value: &str, delimiter: &str) -> Result<String, OutputError> {
    let name_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(OutputError::InvalidName(name.to_string()));
    }
    if value.contains(delimiter) || name.contains(delimiter) {
        return Err(OutputError::DelimiterInValue(name.to_string()));
    }
    Ok(format!("{name}<<{delimiter}\n{value}\n{delimiter}\n"))
}

/// Reads a `$GITHUB_OUTPUT` file back: every `name<<DELIMITER` heredoc (later values of a name
/// win, as on the runner). Lines outside a heredoc are ignored.
pub fn parse_output_file(text: &str) -> std::collections::BTreeMap<String, String> {
    let mut outputs = std::collections::BTreeMap::new();
    let mut lines = text.lines();
    while let Some(header) = lines.next() {
        let Some((name, delimiter)) = header.split_once("<<") else {
            continue;
        };
        let mut value = Vec::new();
        for line in lines.by_ref() {
            if line == delimiter {
                break;
            }
            value.push(line);
        }
        outputs.insert(name.to_string(), value.join("\n"));
    }
    outputs
}

/// Replaces every registered secret with `***` (longest first, so a secret that contains
/// another is hidden whole).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// Registers a secret; multi-line values are also registered line by line, as the runner
    /// masks each line. Values shorter than 4 characters are not worth masking (and would make
    /// every log unreadable), matching what a person would expect of `***`.
    pub fn add(&mut self, secret: &str) {
        let mut candidates = vec![secret.to_string()];
        if secret.contains('\n') {
            candidates.extend(secret.lines().map(|line| line.trim().to_string()));
        }
        for candidate in candidates {
            if candidate.len() >= 4 && !self.secrets.contains(&candidate) {
                self.secrets.push(candidate);
            }
        }
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// The lines to announce with `::add-mask::`.
    pub fn mask_lines(secret: &str) -> Vec<String> {
        let mut lines: Vec<String> = secret
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_string)
            .collect();
        if secret.contains('\n') {
            lines.insert(0, secret.to_string());
        }
        lines.dedup();
        lines
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

/// Cuts a Markdown summary to at most `limit` bytes at a line boundary, closes an open code
/// fence and `<details>` blocks, and appends a visible note saying how much was cut.
pub fn truncate_summary(markdown: &str, limit: usize) -> String {
    super::markdown::truncate(
        markdown,
        limit,
        super::markdown::Unit::Bytes,
        |cut, total| {
            format!(
            "> [!WARNING]\n> **Summary truncated**: {cut} of {total} bytes were cut to stay under GitHub's 1 MiB step-summary limit. The job log has the full details."
        )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_and_properties_are_escaped_as_the_runner_expects() {
        assert_eq!(escape_data("100% done\r\nnext"), "100%25 done%0D%0Anext");
        assert_eq!(escape_property("a:b,c%\n"), "a%3Ab%2Cc%25%0A");
        assert_eq!(
            escape_data("%0A"),
            "%250A",
            "an already-escaped look-alike stays literal"
        );
    }

    #[test]
    fn annotations_carry_escaped_properties() {
        let line = annotation(
            Level::Error,
            &Annotation {
                title: Some("Terraform: invalid, really".into()),
                file: Some("infra/main.tf".into()),
                line: Some(12),
                col: Some(3),
                ..Annotation::default()
            },
            "Unsupported argument\n  on main.tf line 12",
        );
        assert_eq!(
            line,
            "::error title=Terraform%3A invalid%2C really,file=infra/main.tf,line=12,col=3::Unsupported argument%0A  on main.tf line 12"
        );
    }

    #[test]
    fn untrusted_lines_cannot_start_a_command() {
        let token = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            guard_line("fix: a normal commit", token),
            "fix: a normal commit"
        );
        for evil in [
            "::set-output name=status::deployed",
            "  ::add-mask::x",
            "##[set-output name=x;]y",
            "[api] Step 3/4 : RUN echo x ##[stop-commands]t",
            "::stop-commands::abc",
        ] {
            let guarded = guard_line(evil, token);
            let lines: Vec<&str> = guarded.lines().collect();
            assert_eq!(lines[0], format!("::stop-commands::{token}"));
            assert_eq!(lines[1], evil);
            assert_eq!(lines[2], format!("::{token}::"));
        }
    }

    #[test]
    fn random_tokens_differ() {
        let a = random_token();
        let b = random_token();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn outputs_are_heredocs_and_reject_the_delimiter() {
        assert_eq!(
            output_entry("status", "deployed", "ghadelimiter_x").unwrap(),
            "status<<ghadelimiter_x\ndeployed\nghadelimiter_x\n"
        );
        assert_eq!(
            output_entry("multi", "a\nb", "D").unwrap(),
            "multi<<D\na\nb\nD\n"
        );
        assert_eq!(
            output_entry(
                "images",
                "x\nghadelimiter_x\nstatus=deployed",
                "ghadelimiter_x"
            ),
            Err(OutputError::DelimiterInValue("images".into()))
        );
        assert!(matches!(
            output_entry("bad name", "v", "D"),
            Err(OutputError::InvalidName(_))
        ));
        assert!(matches!(
            output_entry("1st", "v", "D"),
            Err(OutputError::InvalidName(_))
        ));
    }

    #[test]
    fn redaction_hides_whole_secrets_and_each_line() {
        let mut redactor = Redactor::default();
        redactor.add("hunter22");
        redactor.add("hunter22-extended");
        redactor.add("line-one\nline-two");
        redactor.add("abc");
        assert_eq!(
            redactor.redact("token hunter22-extended and hunter22, line-two; abc"),
            "token *** and ***, ***; abc"
        );
        assert_eq!(
            Redactor::mask_lines("line-one\nline-two\n"),
            ["line-one\nline-two\n", "line-one", "line-two"]
        );
        assert_eq!(Redactor::mask_lines("single"), ["single"]);
    }

    #[test]
    fn summaries_under_the_limit_are_untouched() {
        assert_eq!(truncate_summary("# ok\n", 100), "# ok\n");
    }

    #[test]
    fn oversized_summaries_are_cut_with_a_visible_note_and_balanced_blocks() {
        let mut markdown = String::from("# Report\n<details><summary>plan</summary>\n\n```\n");
        for i in 0..100_000 {
            markdown.push_str(&format!("  + resource.number_{i} will be created ✓\n"));
        }
        markdown.push_str("```\n</details>\n");
        let cut = truncate_summary(&markdown, SUMMARY_LIMIT);
        assert!(cut.len() <= SUMMARY_LIMIT, "{} bytes", cut.len());
        assert!(cut.contains("Summary truncated"));
        assert_eq!(cut.matches("```").count() % 2, 0, "code fence closed");
        assert_eq!(
            cut.matches("<details").count(),
            cut.matches("</details>").count()
        );
        let body_end = cut
            .find("```\n\n</details>")
            .expect("closing after kept lines");
        assert!(
            cut[..body_end].ends_with("created ✓\n"),
            "cut at a line boundary"
        );
    }

    #[test]
    fn output_files_read_back_what_output_entry_wrote() {
        let mut text = String::new();
        for (name, value) in [
            ("status", "deployed"),
            ("images", "{\"a\":1}\nsecond line"),
            ("empty", ""),
        ] {
            text.push_str(&output_entry(name, value, "ghadelimiter_x").unwrap());
        }
        text.push_str(&output_entry("status", "rolled-back", "ghadelimiter_y").unwrap());
        let read = parse_output_file(&text);
        assert_eq!(read["status"], "rolled-back");
        assert_eq!(read["images"], "{\"a\":1}\nsecond line");
        assert_eq!(read["empty"], "");
        assert_eq!(read.len(), 3);
    }
}
