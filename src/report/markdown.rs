//! Markdown building blocks shared by the job summary and the pull-request comment: redact-then-escape, code spans and fences, and cutting at a size limit.
//!
//! Design note: secrets are replaced *before* escaping. Escaping first would turn a secret such
//! as `ab_cd` into `ab\_cd`, which the runner's redaction then no longer finds.

use std::fmt::Write as _;
use std::time::Duration;

/// Escapes text for Markdown table cells and paragraphs: HTML, table pipes, emphasis and
/// code characters, and line breaks.
pub fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '|' => out.push_str("&#124;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '#' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '\r' => {}
            '\n' => out.push_str("<br>"),
            _ => out.push(c),
        }
    }
    out
}

/// Formats a duration for people: `850ms`, `12.3s`, `4m05s`, `1h02m`.
pub fn human_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60)
    }
}

/// Replaces masked values in text (the runner's `redact`); identity in tests that need none.
pub type Redact<'a> = &'a (dyn Fn(&str) -> String + Sync);

/// The identity redaction.
pub fn no_redaction(text: &str) -> String {
    text.to_string()
}

/// Text for a paragraph or table cell: redacted, then escaped.
pub fn text(redact: Redact<'_>, value: &str) -> String {
    escape_markdown(&redact(value))
}

/// An inline code span holding `value` verbatim (redacted); backticks inside cannot end it and
/// pipes are written as an HTML entity so the span is safe inside a table cell.
pub fn code(redact: Redact<'_>, value: &str) -> String {
    let value = redact(value)
        .replace(['\r', '\n'], " ")
        .replace('|', "\u{2758}");
    let ticks = "`".repeat(longest_run(&value, '`') + 1);
    let pad = if value.starts_with('`') || value.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{ticks}{pad}{value}{pad}{ticks}")
}

/// A fenced code block for verbatim lines (logs, events); the fence is longer than any run of
/// backticks in the lines, so untrusted text cannot close it.
pub fn fenced(redact: Redact<'_>, language: &str, lines: &[String]) -> String {
    let body: Vec<String> = lines.iter().map(|line| redact(line)).collect();
    let longest = body
        .iter()
        .map(|line| longest_run(line, '`'))
        .max()
        .unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let mut out = format!("{fence}{language}\n");
    for line in body {
        out.push_str(&line.replace('\r', ""));
        out.push('\n');
    }
    out.push_str(&fence);
    out.push('\n');
    out
}

fn longest_run(text: &str, c: char) -> usize {
    let mut best = 0;
    let mut run = 0;
    for ch in text.chars() {
        if ch == c {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best
}

/// How a limit is counted: GitHub limits the step summary in bytes and comments in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Chars,
}

impl Unit {
    pub fn measure(self, text: &str) -> usize {
        match self {
            Unit::Bytes => text.len(),
            Unit::Chars => text.chars().count(),
        }
    }
}

/// Cuts Markdown to at most `limit` (in `unit`) at a line boundary, closes an open code fence
/// and `<details>` blocks, and appends the note `note(cut, total)` says (how many units were
/// cut of how many; it must be short: 1,000 units are kept for it and the closings).
pub fn truncate(
    markdown: &str,
    limit: usize,
    unit: Unit,
    note: impl Fn(usize, usize) -> String,
) -> String {
    let total = unit.measure(markdown);
    if total <= limit {
        return markdown.to_string();
    }
    let room = limit.saturating_sub(1000 + unit.measure(&note(total, total)));
    // The byte offset of the `room`-th unit.
    let mut cut = match unit {
        Unit::Bytes => {
            let mut cut = room.min(markdown.len());
            while !markdown.is_char_boundary(cut) {
                cut -= 1;
            }
            cut
        }
        Unit::Chars => markdown
            .char_indices()
            .nth(room)
            .map(|(i, _)| i)
            .unwrap_or(markdown.len()),
    };
    if let Some(newline) = markdown[..cut].rfind('\n') {
        cut = newline + 1;
    }
    let kept = &markdown[..cut];
    let mut out = kept.to_string();
    if let Some(fence) = open_fence(kept) {
        out.push_str(&fence);
        out.push('\n');
    }
    let open = kept.matches("<details").count();
    let closed = kept.matches("</details>").count();
    for _ in closed..open {
        out.push_str("\n</details>\n");
    }
    let _ = write!(out, "\n{}\n", note(total - unit.measure(kept), total));
    out
}

/// The fence of a code block left open at the end of `markdown`, if any.
fn open_fence(markdown: &str) -> Option<String> {
    let mut open: Option<String> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        let ticks = trimmed.chars().take_while(|c| *c == '`').count();
        if ticks < 3 {
            continue;
        }
        match &open {
            None => open = Some("`".repeat(ticks)),
            Some(fence) if ticks >= fence.len() && trimmed[ticks..].trim().is_empty() => {
                open = None
            }
            Some(_) => {}
        }
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_before_escaping() {
        let redact = |t: &str| t.replace("ab_cd*1", "***");
        assert_eq!(text(&redact, "token ab_cd*1 used"), "token \\*\\*\\* used");
        assert_eq!(code(&redact, "x ab_cd*1"), "`x ***`");
    }

    #[test]
    fn code_spans_and_fences_outlast_backticks() {
        let id = &no_redaction;
        assert_eq!(code(id, "a`b"), "``a`b``");
        assert_eq!(code(id, "a|b"), "`a\u{2758}b`");
        let block = fenced(id, "text", &["```".into(), "x".into()]);
        assert!(block.starts_with("````text\n```\nx\n````"), "{block}");
    }

    #[test]
    fn truncation_counts_characters_and_balances_blocks() {
        let mut md = String::from("<details><summary>x</summary>\n\n````text\n");
        for i in 0..5000 {
            md.push_str(&format!("ünïcode line {i}\n"));
        }
        let cut = truncate(&md, 20_000, Unit::Chars, |_, _| "**cut**".to_string());
        assert!(cut.chars().count() <= 20_000);
        assert!(
            cut.ends_with("````\n\n</details>\n\n**cut**\n"),
            "{}",
            &cut[cut.len() - 60..]
        );
        assert_eq!(open_fence(&cut), None);
    }
}
