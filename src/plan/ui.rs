//! Terraform's machine-readable UI (`-json` lines and the `validate -json` document): diagnostics, apply progress, and state-lock details.
//!
//! Design note: Terraform's human text is never matched. The one exception is the lock holder,
//! which Terraform only reports inside a diagnostic's detail as `Lock Info:` lines.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

/// Why a `-json` document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`terraform validate -json` printed something gantry cannot read: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The summary Terraform gives a held state lock.
pub const LOCK_SUMMARY: &str = "Error acquiring the state lock";

/// One error or warning from Terraform.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Diagnostic {
    pub severity: String,
    pub summary: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub range: Option<SourceRange>,
}

/// Where in the configuration a diagnostic points.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SourceRange {
    /// Relative to Terraform's working directory (or absolute).
    pub filename: String,
    pub start: SourcePos,
    pub end: SourcePos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct SourcePos {
    pub line: u32,
    pub column: u32,
}

/// One line of Terraform's `-json` output that gantry acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UiEvent {
    Diagnostic(Diagnostic),
    ApplyStart {
        address: String,
        action: String,
    },
    ApplyProgress {
        address: String,
        action: String,
        elapsed_seconds: u64,
    },
    ApplyComplete {
        address: String,
        action: String,
        elapsed_seconds: u64,
    },
    ApplyErrored {
        address: String,
        action: String,
        elapsed_seconds: u64,
    },
    ChangeSummary {
        add: u64,
        change: u64,
        remove: u64,
        operation: String,
    },
    /// A line a provisioner printed (`local-exec` output).
    ProvisionOutput {
        address: String,
        provisioner: String,
        output: String,
    },
    /// A valid line of a kind gantry does not act on (version, planned_change, outputs...).
    Other,
}

#[derive(Deserialize)]
struct RawLine {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    diagnostic: Option<Diagnostic>,
    #[serde(default)]
    hook: Option<Hook>,
    #[serde(default)]
    changes: Option<Changes>,
}

#[derive(Deserialize)]
struct Hook {
    resource: HookResource,
    #[serde(default)]
    action: String,
    #[serde(default)]
    elapsed_seconds: u64,
    #[serde(default)]
    provisioner: String,
    #[serde(default)]
    output: String,
}

#[derive(Deserialize)]
struct HookResource {
    addr: String,
}

#[derive(Deserialize)]
struct Changes {
    #[serde(default)]
    add: u64,
    #[serde(default)]
    change: u64,
    #[serde(default)]
    remove: u64,
    #[serde(default)]
    operation: String,
}

/// Reads one `-json` line; `None` when the line is not a Terraform UI message at all.
pub fn parse_line(line: &str) -> Option<UiEvent> {
    let raw: RawLine = serde_json::from_str(line.trim()).ok()?;
    let hook_event = |make: fn(String, String, u64) -> UiEvent, hook: Option<Hook>| {
        hook.map(|h| make(h.resource.addr, h.action, h.elapsed_seconds))
            .unwrap_or(UiEvent::Other)
    };
    Some(match raw.kind.as_str() {
        "diagnostic" => raw
            .diagnostic
            .map(UiEvent::Diagnostic)
            .unwrap_or(UiEvent::Other),
        "apply_start" => hook_event(
            |address, action, _| UiEvent::ApplyStart { address, action },
            raw.hook,
        ),
        "apply_progress" => hook_event(
            |address, action, elapsed_seconds| UiEvent::ApplyProgress {
                address,
                action,
                elapsed_seconds,
            },
            raw.hook,
        ),
        "apply_complete" => hook_event(
            |address, action, elapsed_seconds| UiEvent::ApplyComplete {
                address,
                action,
                elapsed_seconds,
            },
            raw.hook,
        ),
        "apply_errored" => hook_event(
            |address, action, elapsed_seconds| UiEvent::ApplyErrored {
                address,
                action,
                elapsed_seconds,
            },
            raw.hook,
        ),
        "provision_progress" => raw
            .hook
            .map(|h| UiEvent::ProvisionOutput {
                address: h.resource.addr,
                provisioner: h.provisioner,
                output: h.output,
            })
            .unwrap_or(UiEvent::Other),
        "change_summary" => raw
            .changes
            .map(|c| UiEvent::ChangeSummary {
                add: c.add,
                change: c.change,
                remove: c.remove,
                operation: c.operation,
            })
            .unwrap_or(UiEvent::Other),
        _ => UiEvent::Other,
    })
}

/// The diagnostics of a `terraform validate -json` document.
pub fn parse_validate(json: &str) -> Result<Vec<Diagnostic>> {
    #[derive(Deserialize)]
    struct ValidateDocument {
        #[serde(default)]
        diagnostics: Vec<Diagnostic>,
    }
    let document: ValidateDocument = serde_json::from_str(json)?;
    Ok(document.diagnostics)
}

fn gerund(action: &str) -> &str {
    match action {
        "create" => "creating",
        "update" => "updating",
        "delete" => "destroying",
        "replace" => "replacing",
        "read" => "reading",
        "import" => "importing",
        "forget" | "remove" => "forgetting",
        other => other,
    }
}

fn past(action: &str) -> &str {
    match action {
        "create" => "created",
        "update" => "updated",
        "delete" => "destroyed",
        "replace" => "replaced",
        "read" => "read",
        "import" => "imported",
        "forget" | "remove" => "forgotten",
        other => other,
    }
}

/// The log line for an apply event, or `None` for events that are not progress.
pub fn progress_line(event: &UiEvent) -> Option<String> {
    match event {
        UiEvent::ApplyStart { address, action } => {
            Some(format!("{address}: {}...", gerund(action)))
        }
        UiEvent::ApplyProgress {
            address,
            action,
            elapsed_seconds,
        } => Some(format!(
            "{address}: still {} ({elapsed_seconds}s elapsed)",
            gerund(action)
        )),
        UiEvent::ApplyComplete {
            address,
            action,
            elapsed_seconds,
        } => Some(format!("{address}: {} in {elapsed_seconds}s", past(action))),
        UiEvent::ApplyErrored {
            address,
            action,
            elapsed_seconds,
        } => Some(format!(
            "{address}: failed while {} after {elapsed_seconds}s",
            gerund(action)
        )),
        UiEvent::ChangeSummary {
            add,
            change,
            remove,
            operation,
        } => Some(format!(
            "{operation}: {add} added, {change} changed, {remove} destroyed"
        )),
        UiEvent::ProvisionOutput {
            address,
            provisioner,
            output,
        } => Some(format!("{address} ({provisioner}): {output}")),
        _ => None,
    }
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == "error"
    }

    /// Terraform's (and OpenTofu's) generic sentence that only announces the diagnostics
    /// around it ("... encountered problems during initialisation, including problems with the
    /// configuration, described below."): noise next to the diagnostic that matters.
    pub fn is_generic_summary(&self) -> bool {
        let summary = self.summary.to_lowercase();
        summary.contains("encountered problems during initiali")
            && summary.contains("described below")
    }

    /// The annotation message: the summary, then the detail.
    pub fn message(&self) -> String {
        let detail = self.detail.trim();
        if detail.is_empty() {
            self.summary.clone()
        } else {
            format!("{}\n{detail}", self.summary)
        }
    }

    /// The annotation title: `Terraform: ` and the summary's first line.
    pub fn title(&self) -> String {
        format!("Terraform: {}", first_line(&self.summary))
    }

    /// Where the diagnostic points, its file relative to the repository root `workspace`.
    /// `terraform_dir` is Terraform's working directory, which the file name is relative to.
    /// `None` without a range, or for a file outside the repository.
    pub fn location(&self, terraform_dir: &Path, workspace: &Path) -> Option<Location> {
        let range = self.range.as_ref()?;
        let absolute = normalize(&terraform_dir.join(&range.filename));
        let relative = absolute.strip_prefix(normalize(workspace)).ok()?;
        let multi_line = range.end.line != range.start.line;
        Some(Location {
            file: relative.to_string_lossy().into_owned(),
            line: range.start.line,
            col: range.start.column,
            end_line: multi_line.then_some(range.end.line),
            end_column: (!multi_line && range.end.column > range.start.column)
                .then_some(range.end.column),
        })
    }

    /// The lock holder, when this is the "state lock is held" diagnostic.
    pub fn lock_info(&self) -> Option<LockInfo> {
        if self.summary != LOCK_SUMMARY {
            return None;
        }
        parse_lock_info(&self.detail)
    }
}

/// A diagnostic's place in the repository, as an annotation shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Relative to the repository root.
    pub file: String,
    pub line: u32,
    pub col: u32,
    /// Set when the range spans lines.
    pub end_line: Option<u32>,
    /// Set when the range ends further on its only line.
    pub end_column: Option<u32>,
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// Removes `.` and resolves `..` lexically (no file system access).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Who holds a state lock, as Terraform reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockInfo {
    pub id: String,
    pub path: String,
    pub operation: String,
    pub who: String,
    pub version: String,
    pub created: String,
    pub info: String,
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "held by {} since {} (operation {}, Terraform {}, lock ID {}, state {})",
            or_unknown(&self.who),
            or_unknown(&self.created),
            or_unknown(self.operation.trim_start_matches("OperationType")),
            or_unknown(&self.version),
            or_unknown(&self.id),
            or_unknown(&self.path),
        )?;
        if !self.info.is_empty() {
            write!(f, "; info: {}", self.info)?;
        }
        Ok(())
    }
}

fn or_unknown(text: &str) -> &str {
    if text.is_empty() {
        "unknown"
    } else {
        text
    }
}

/// Reads the `Lock Info:` block of a lock diagnostic's detail.
pub fn parse_lock_info(detail: &str) -> Option<LockInfo> {
    let (_, block) = detail.split_once("Lock Info:")?;
    let mut info = LockInfo::default();
    for line in block.lines() {
        let Some((key, value)) = line.trim().split_once(':') else {
            if line.trim().is_empty() {
                continue;
            }
            break;
        };
        let value = value.trim().to_string();
        match key.trim() {
            "ID" => info.id = value,
            "Path" => info.path = value,
            "Operation" => info.operation = value,
            "Who" => info.who = value,
            "Version" => info.version = value,
            "Created" => info.created = value,
            "Info" => info.info = value,
            _ => break,
        }
    }
    (!info.id.is_empty()).then_some(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/terraform/json/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
    }

    fn events(file: &str) -> Vec<UiEvent> {
        fixture(file).lines().filter_map(parse_line).collect()
    }

    fn diagnostics(file: &str) -> Vec<Diagnostic> {
        events(file)
            .into_iter()
            .filter_map(|event| match event {
                UiEvent::Diagnostic(d) => Some(d),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn apply_lines_become_progress() {
        let lines: Vec<String> = events("apply_create.jsonl")
            .iter()
            .filter_map(progress_line)
            .collect();
        assert_eq!(
            lines,
            vec![
                "terraform_data.app: creating...",
                "terraform_data.app: created in 0s",
                "terraform_data.db: creating...",
                "terraform_data.db: created in 0s",
                "apply: 2 added, 0 changed, 0 destroyed",
            ]
        );
    }

    #[test]
    fn partial_apply_shows_what_completed_and_what_failed() {
        let events = events("apply_partial.jsonl");
        assert!(events.contains(&UiEvent::ApplyComplete {
            address: "terraform_data.good".into(),
            action: "create".into(),
            elapsed_seconds: 0
        }));
        assert!(events.contains(&UiEvent::ApplyErrored {
            address: "terraform_data.bad".into(),
            action: "create".into(),
            elapsed_seconds: 0
        }));
        let diagnostics = diagnostics("apply_partial.jsonl");
        assert_eq!(diagnostics.len(), 1);
        assert_eq!(
            diagnostics[0].address.as_deref(),
            Some("terraform_data.bad")
        );
        assert!(diagnostics[0].message().contains("exit status 3"));
    }

    #[test]
    fn diagnostics_point_at_the_file_and_line_in_the_repository() {
        let workspace = Path::new("/repo");
        let tf_dir = Path::new("/repo/infra/./live");
        for (file, summary, line, column) in [
            ("init_invalid_hcl.jsonl", "Invalid expression", 4, 11),
            (
                "plan_precondition.jsonl",
                "Resource precondition failed",
                12,
                23,
            ),
        ] {
            let found = diagnostics(file);
            let diagnostic = found.iter().find(|d| d.summary == summary).unwrap();
            assert!(diagnostic.is_error());
            let location = diagnostic.location(tf_dir, workspace).unwrap();
            assert_eq!(location.file, "infra/live/main.tf", "{file}");
            assert_eq!(location.line, line, "{file}");
            assert_eq!(location.col, column, "{file}");
            assert_eq!(diagnostic.title(), format!("Terraform: {summary}"));
        }
        let validate = parse_validate(&fixture("validate_invalid_hcl.json")).unwrap();
        assert_eq!(validate.len(), 1);
        assert_eq!(validate[0].range.as_ref().unwrap().start.line, 4);
    }

    #[test]
    fn files_outside_the_repository_get_no_location() {
        let diagnostic = diagnostics("init_invalid_hcl.jsonl").remove(0);
        let mut outside = diagnostic.clone();
        if let Some(range) = &mut outside.range {
            range.filename = "../../elsewhere/main.tf".into();
        }
        assert_eq!(
            outside.location(Path::new("/repo/infra"), Path::new("/repo")),
            None
        );
        let nested = diagnostic
            .location(Path::new("/repo/a/../infra"), Path::new("/repo/"))
            .unwrap();
        assert_eq!(nested.file, "infra/main.tf");
    }

    #[test]
    fn lock_holder_is_read_from_the_lock_diagnostic() {
        let diagnostic = diagnostics("plan_locked.jsonl").remove(0);
        let info = diagnostic.lock_info().unwrap();
        assert_eq!(info.id, "fd976283-ab2f-226a-7f0c-1df2d7f4e5bf");
        assert_eq!(info.path, "terraform.tfstate.d/dev/terraform.tfstate");
        assert_eq!(info.operation, "OperationTypeApply");
        assert_eq!(info.who, "root@vm");
        assert_eq!(info.version, "1.11.4");
        assert_eq!(info.created, "2026-11-23 20:37:28.125661658 +0000 UTC");
        assert_eq!(info.info, "");
        let text = info.to_string();
        assert!(
            text.starts_with(
                "held by root@vm since 2026-11-23 20:37:28.125661658 +0000 UTC (operation Apply"
            ),
            "{text}"
        );
        assert_eq!(diagnostics("plan_precondition.jsonl")[0].lock_info(), None);
        assert_eq!(parse_lock_info("no lock here"), None);
    }

    #[test]
    fn provisioner_output_is_a_progress_line() {
        let line = r#"{"@level":"info","@message":"terraform_data.m: (local-exec): hello-prov","@module":"terraform.ui","hook":{"resource":{"addr":"terraform_data.m","module":"","resource":"terraform_data.m","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"m","resource_key":null},"provisioner":"local-exec","output":"hello-prov"},"type":"provision_progress"}"#;
        let event = parse_line(line).unwrap();
        assert_eq!(
            event,
            UiEvent::ProvisionOutput {
                address: "terraform_data.m".into(),
                provisioner: "local-exec".into(),
                output: "hello-prov".into(),
            }
        );
        assert_eq!(
            progress_line(&event).as_deref(),
            Some("terraform_data.m (local-exec): hello-prov")
        );
    }

    #[test]
    fn lines_that_are_not_ui_messages_are_ignored() {
        assert_eq!(parse_line("Terraform has been initialized"), None);
        assert_eq!(parse_line(""), None);
        assert_eq!(
            parse_line(r#"{"type":"version","terraform":"1.11.4"}"#),
            Some(UiEvent::Other)
        );
    }
}
