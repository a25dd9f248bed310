//! The workflows gantry ships (workflows/) and its own CI (.github/workflows/) stay safe to copy:
//! zizmor finds nothing in them, and a workflow with the faults it must catch is flagged.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn zizmor() -> PathBuf {
    let path = std::env::var("GANTRY_TEST_ZIZMOR").unwrap_or_default();
    assert!(
        !path.is_empty() && Path::new(&path).is_file(),
        "GANTRY_TEST_ZIZMOR does not name zizmor: run `bash .ci/testbed up` and \
         `source /var/tmp/gantry-testbed/env` (bash .ci/test does both)"
    );
    PathBuf::from(path)
}

/// zizmor over `paths` with the repository's configuration, offline, as its most demanding
/// persona (every audit, every severity).
fn audit(paths: &[&Path]) -> Output {
    Command::new(zizmor())
        .args(["--offline", "--no-progress", "--persona", "pedantic"])
        .arg("--config")
        .arg(Path::new(ROOT).join(".github/zizmor.yml"))
        .args(paths)
        .env("NO_COLOR", "1")
        .env_remove("GH_TOKEN")
        .env_remove("GITHUB_TOKEN")
        .output()
        .expect("zizmor runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every workflow file under the two directories, so a new one cannot be missed.
fn workflow_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["workflows", ".github/workflows"] {
        for entry in std::fs::read_dir(Path::new(ROOT).join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yml" | "yaml")
            ) {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn zizmor_finds_nothing_in_the_shipped_and_ci_workflows() {
    let files = workflow_files();
    assert!(files.len() >= 3, "the workflows are found: {files:?}");
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let output = audit(&paths);
    let said = text(&output);
    assert!(
        output.status.success() && said.contains("No findings") && !said.contains("suppressed"),
        "zizmor finds nothing (exit {:?}):\n{said}",
        output.status.code()
    );
    // Each file was audited, not skipped as unparsable.
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            !said.contains(&format!("failed to load {name}")),
            "{name} was audited:\n{said}"
        );
    }
}

#[test]
fn zizmor_flags_what_the_shipped_workflows_avoid() {
    // The same shape as workflows/deploy.yml with each safeguard removed: no permissions block,
    // a third-party action by tag, a checkout that keeps its token, and an expression from the
    // event expanded into a shell script.
    let dir = tempfile::tempdir().unwrap();
    let workflows = dir.path().join(".github/workflows");
    std::fs::create_dir_all(&workflows).unwrap();
    let careless = workflows.join("careless.yml");
    std::fs::write(
        &careless,
        r#"name: careless
on:
  pull_request_target:
jobs:
  deploy:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - uses: aws-actions/configure-aws-credentials@v4
        with:
          aws-region: eu-west-1
      - run: echo "deploying ${{ github.event.pull_request.title }}"
"#,
    )
    .unwrap();
    let output = audit(&[careless.as_path()]);
    let said = text(&output);
    assert!(
        !output.status.success(),
        "zizmor fails the careless workflow:\n{said}"
    );
    for rule in [
        "excessive-permissions",
        "unpinned-uses",
        "artipacked",
        "template-injection",
        "dangerous-triggers",
    ] {
        assert!(said.contains(rule), "zizmor reports {rule}:\n{said}");
    }
}

#[test]
fn the_shipped_workflows_pin_their_actions_and_grant_nothing_by_default() {
    for file in workflow_files() {
        let name = file.strip_prefix(ROOT).unwrap().display().to_string();
        let source = std::fs::read_to_string(&file).unwrap();
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&source).unwrap();
        assert_eq!(
            doc["permissions"],
            serde_yaml_ng::Value::Mapping(Default::default()),
            "{name}: `permissions: {{}}` at the top"
        );
        let jobs = doc["jobs"].as_mapping().expect("jobs");
        for (job, body) in jobs {
            let job = job.as_str().unwrap();
            assert!(
                body.get("permissions").is_some(),
                "{name}: job {job} states its permissions"
            );
            for step in body["steps"].as_sequence().into_iter().flatten() {
                let Some(uses) = step.get("uses").and_then(|u| u.as_str()) else {
                    continue;
                };
                let (action, reference) = uses.split_once('@').unwrap_or((uses, ""));
                let local = uses.starts_with("./") || uses.starts_with("$/");
                let gantry = action == "gantry-dev/gantry";
                let pinned =
                    reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit());
                assert!(
                    local || gantry || pinned,
                    "{name}: job {job} uses `{uses}`: pin it by commit SHA"
                );
                if action == "actions/checkout" {
                    assert_eq!(
                        step["with"]["persist-credentials"],
                        serde_yaml_ng::Value::Bool(false),
                        "{name}: job {job} checks out without keeping the token"
                    );
                }
            }
        }
    }
}
