//! The real `gantry` binary in action mode: usage errors exit 2 with one clear message and no side effect, and a run writes its outputs and summary.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A runner job's directories, plus a fake `terraform` first on PATH that records any call.
struct Job {
    dir: tempfile::TempDir,
}

impl Job {
    fn new() -> Job {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (path, contents) in [
            ("workspace/infra/main.tf", "output \"x\" { value = 1 }\n"),
            ("files/output", ""),
            ("files/summary", ""),
        ] {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, contents).unwrap();
        }
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events/push.json"),
            root.join("event.json"),
        )
        .unwrap();
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        support::failing_spy(&bin, "terraform", &root.join("terraform-was-called"));
        Job { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn base_env(&self) -> BTreeMap<String, String> {
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        [
            ("PATH", path),
            ("GITHUB_ACTIONS", "true".into()),
            ("GITHUB_EVENT_NAME", "push".into()),
            (
                "GITHUB_EVENT_PATH",
                self.path("event.json").display().to_string(),
            ),
            (
                "GITHUB_WORKSPACE",
                self.path("workspace").display().to_string(),
            ),
            (
                "GITHUB_OUTPUT",
                self.path("files/output").display().to_string(),
            ),
            (
                "GITHUB_STEP_SUMMARY",
                self.path("files/summary").display().to_string(),
            ),
            (
                "GITHUB_SHA",
                "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c".into(),
            ),
            ("GITHUB_REPOSITORY", "octo-org/shop".into()),
            ("INPUT_ENVIRONMENT", "dev".into()),
            ("INPUT_TERRAFORM-DIRECTORY", "infra".into()),
            ("INPUT_PHASES", "infra".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn run(&self, env: &BTreeMap<String, String>) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gantry"))
            .env_clear()
            .envs(env)
            .current_dir(self.path("workspace"))
            .output()
            .expect("gantry runs")
    }

    fn terraform_was_called(&self) -> bool {
        self.path("terraform-was-called").exists()
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A named change to the job's environment (None removes the variable) and the message expected.
type UsageCase = (
    &'static str,
    Vec<(&'static str, Option<&'static str>)>,
    &'static str,
);

#[test]
fn usage_errors_exit_2_with_a_clear_message_and_no_side_effect() {
    let cases: Vec<UsageCase> = vec![
        (
            "GITHUB_OUTPUT unset",
            vec![("GITHUB_OUTPUT", None)],
            "GITHUB_OUTPUT is not set",
        ),
        (
            "GITHUB_OUTPUT unwritable",
            vec![("GITHUB_OUTPUT", Some("/nonexistent/dir/output"))],
            "GITHUB_OUTPUT (/nonexistent/dir/output) is not writable",
        ),
        (
            "event path unset",
            vec![("GITHUB_EVENT_PATH", None)],
            "GITHUB_EVENT_PATH is not set",
        ),
        (
            "event file missing",
            vec![("GITHUB_EVENT_PATH", Some("/nonexistent/event.json"))],
            "cannot be read",
        ),
        (
            "workspace missing",
            vec![("GITHUB_WORKSPACE", Some("/nonexistent/workspace"))],
            "the workspace /nonexistent/workspace does not exist",
        ),
        (
            "required input missing",
            vec![("INPUT_ENVIRONMENT", None)],
            "Input required and not supplied: environment",
        ),
        (
            "malformed boolean",
            vec![("INPUT_ALLOW-DESTROY", Some("yes"))],
            "`yes` is not a boolean",
        ),
        (
            "unknown phase",
            vec![("INPUT_PHASES", Some("infra,tests"))],
            "unknown phase `tests`",
        ),
        (
            "malformed duration",
            vec![("INPUT_TERRAFORM-LOCK-TIMEOUT", Some("300"))],
            "without a unit",
        ),
        (
            "malformed list item",
            vec![("INPUT_TERRAFORM-BACKEND-CONFIG", Some("=bucket"))],
            "not a valid `key=value` item",
        ),
    ];
    for (name, changes, needle) in cases {
        let job = Job::new();
        let mut env = job.base_env();
        for (key, value) in changes {
            match value {
                Some(value) => env.insert(key.to_string(), value.to_string()),
                None => env.remove(key),
            };
        }
        let output = job.run(&env);
        let out = stdout(&output);
        assert_eq!(output.status.code(), Some(2), "{name}: {out}");
        assert!(
            out.contains(needle),
            "{name}: expected {needle:?} in:\n{out}"
        );
        assert!(
            out.contains("::error title=gantry%3A invalid input::"),
            "{name}: an annotation: {out}"
        );
        assert!(
            !out.contains("panicked") && output.stderr.is_empty(),
            "{name}: no panic, no stack trace: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !job.terraform_was_called(),
            "{name}: no process may start before validation passes"
        );
    }
}

#[test]
fn every_problem_is_one_annotation_and_outputs_say_invalid_input() {
    let job = Job::new();
    let mut env = job.base_env();
    env.insert("INPUT_ENVIRONMENT".into(), "Prod".into());
    env.insert("INPUT_PHASES".into(), "infra,biuld".into());
    env.insert("INPUT_ROLLOUT-TIMEOUT".into(), "10".into());
    env.insert("INPUT_REGISTRY-USERNAME".into(), "robot".into());
    env.insert(
        "INPUT_REGISTRY-PASSWORD".into(),
        "pa55word-that-must-not-leak".into(),
    );
    let output = job.run(&env);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        out.lines().next(),
        Some("::add-mask::pa55word-that-must-not-leak"),
        "masking comes first"
    );
    assert_eq!(
        out.matches("::error title=gantry%3A invalid input::")
            .count(),
        3,
        "{out}"
    );
    let outputs = std::fs::read_to_string(job.path("files/output")).unwrap();
    assert!(
        outputs.contains("failure-reason<<ghadelimiter_"),
        "{outputs}"
    );
    assert!(outputs.contains("\ninvalid-input\n"), "{outputs}");
    let summary = std::fs::read_to_string(job.path("files/summary")).unwrap();
    assert!(
        summary.contains("Invalid input · nothing was changed"),
        "{summary}"
    );
    for text in [
        &out.lines().skip(1).collect::<Vec<_>>().join("\n"),
        &outputs,
        &summary,
    ] {
        assert!(!text.contains("pa55word-that-must-not-leak"));
    }
    assert!(!job.terraform_was_called());
}

#[test]
fn without_a_runner_the_bare_binary_explains_itself() {
    let output = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not on a GitHub runner"));
    let version = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("gantry {}", env!("CARGO_PKG_VERSION"))
    );
    let bad_flag = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["plan", "--environmnet", "dev"])
        .output()
        .unwrap();
    assert_eq!(bad_flag.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad_flag.stderr).contains("--environment"),
        "clap suggests the right flag"
    );
}

#[test]
fn local_validate_reports_what_would_run() {
    let job = Job::new();
    let output = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args([
            "validate",
            "--environment",
            "dev",
            "--terraform-directory",
            "infra",
            "--phases",
            "infra,build",
        ])
        .current_dir(job.path("workspace"))
        .output()
        .unwrap();
    let out = stdout(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(out.contains("ok: would deploy `dev` (local run)"), "{out}");
    assert!(out.contains("infra: runs"), "{out}");
    assert!(out.contains("build: skipped: images is empty"), "{out}");
    assert!(
        out.contains("deploy: skipped: not in `phases` (infra,build)"),
        "{out}"
    );
}
