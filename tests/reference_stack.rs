//! The reference stack in `terraform/` (bootstrap and infra layers). No provider can be
//! downloaded here, so `terraform validate` cannot run; instead this test checks what can be
//! checked without one: `terraform fmt`, the structure of every `.tf` file (described and typed
//! variables, described outputs, secrets marked sensitive, exact version pins, every `var.`,
//! `local.`, `data.` and resource reference declared), that the outputs
//! the example workflows reference exist, that the per-environment `.tfvars` set only declared
//! variables, and, with Terraform itself, that the validation blocks accept the shipped
//! environments and reject bad values with a message naming the allowed ones.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hcl::{Block, Body, Expression, ObjectKey};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn terraform_root() -> PathBuf {
    root().join("terraform")
}

/// The root modules of the reference stack.
const LAYERS: [&str; 2] = ["bootstrap", "infra"];

fn terraform(dir: &Path, args: &[&str]) -> Output {
    Command::new("terraform")
        .args(args)
        .current_dir(dir)
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .env_remove("TF_WORKSPACE")
        .output()
        .unwrap_or_else(|e| panic!("cannot run terraform (is it on PATH?): {e}"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Collapses the line wrapping and box drawing of Terraform's diagnostics.
fn normalized(s: &str) -> String {
    s.replace(['│', '╷', '╵'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every file under `dir` (recursively, skipping `.terraform`) whose name ends with `suffix`.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                if name != ".terraform" {
                    pending.push(path);
                }
            } else if name.ends_with(suffix) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn parse(path: &Path) -> Body {
    let source = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    hcl::parse(&source).unwrap_or_else(|e| panic!("{}: not valid HCL: {e}", path.display()))
}

/// The parsed `.tf` files of one root module.
fn module(layer: &str) -> Vec<(PathBuf, Body)> {
    let dir = terraform_root().join(layer);
    let mut parsed = Vec::new();
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "tf") {
            let body = parse(&path);
            parsed.push((path, body));
        }
    }
    parsed.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!parsed.is_empty(), "{} holds no .tf file", dir.display());
    parsed
}

fn blocks<'a>(module: &'a [(PathBuf, Body)], kind: &'a str) -> Vec<(&'a Path, &'a Block)> {
    module
        .iter()
        .flat_map(|(path, body)| {
            body.blocks()
                .filter(move |b| b.identifier() == kind)
                .map(move |b| (path.as_path(), b))
        })
        .collect()
}

fn label(block: &Block) -> &str {
    block.labels().first().map(|l| l.as_str()).unwrap_or("")
}

fn attribute<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

fn key_name(key: &ObjectKey) -> String {
    match key {
        ObjectKey::Identifier(i) => i.as_str().to_string(),
        ObjectKey::Expression(Expression::String(s)) => s.clone(),
        other => other.to_string(),
    }
}

fn is_described(body: &Body) -> bool {
    matches!(attribute(body, "description"), Some(Expression::String(s)) if !s.trim().is_empty())
}

/// The names of the outputs of `terraform/infra`.
fn infra_outputs() -> BTreeSet<String> {
    let infra = module("infra");
    blocks(&infra, "output")
        .into_iter()
        .map(|(_, b)| label(b).to_string())
        .collect()
}

#[test]
fn terraform_fmt_is_clean() {
    let output = terraform(
        &root(),
        &[
            "fmt",
            "-check",
            "-recursive",
            "-diff",
            "-no-color",
            "terraform/",
        ],
    );
    assert!(
        output.status.success(),
        "terraform fmt -check -recursive terraform/ found unformatted files (run `terraform fmt -recursive terraform/`):\n{}",
        text(&output)
    );
}

#[test]
fn every_file_opens_with_a_comment_of_what_it_holds() {
    let mut problems = Vec::new();
    for suffix in [".tf", ".tfvars"] {
        for path in files(&terraform_root(), suffix) {
            let source = fs::read_to_string(&path).unwrap();
            if !source.trim_start().starts_with('#') {
                problems.push(path.display().to_string());
            }
        }
    }
    assert!(
        problems.is_empty(),
        "files without an opening comment: {problems:?}"
    );
}

#[test]
fn variables_and_outputs_are_described_typed_and_secrets_sensitive() {
    let mut problems = Vec::new();
    for layer in LAYERS {
        let parsed = module(layer);
        let variables = blocks(&parsed, "variable");
        assert!(!variables.is_empty(), "{layer} declares no variable");
        for (path, block) in variables {
            let at = format!("{}: variable \"{}\"", path.display(), label(block));
            let body = block.body();
            if !is_described(body) {
                problems.push(format!("{at} has no description"));
            }
            if attribute(body, "type").is_none() {
                problems.push(format!("{at} has no type"));
            }
            for validation in body.blocks().filter(|b| b.identifier() == "validation") {
                let message = attribute(validation.body(), "error_message");
                if attribute(validation.body(), "condition").is_none() || message.is_none() {
                    problems.push(format!(
                        "{at}: a validation block lacks condition or error_message"
                    ));
                }
            }
        }

        let outputs = blocks(&parsed, "output");
        assert!(!outputs.is_empty(), "{layer} declares no output");
        for (path, block) in outputs {
            let name = label(block);
            let at = format!("{}: output \"{name}\"", path.display());
            let body = block.body();
            if !is_described(body) {
                problems.push(format!("{at} has no description"));
            }
            let value = attribute(body, "value")
                .map(|e| e.to_string())
                .unwrap_or_default();
            let lower = name.to_lowercase();
            let secret_name = [
                "password",
                "token",
                "secret_value",
                "private_key",
                "secret_string",
            ]
            .iter()
            .any(|w| lower.contains(w))
                || lower == "secret"
                || lower.ends_with("_secret");
            let secret_value = ["password", "token", "secret_string", "private_key"]
                .iter()
                .any(|w| value.contains(w) && !value.contains("manage_master_user_password"));
            let sensitive = matches!(attribute(body, "sensitive"), Some(Expression::Bool(true)));
            if (secret_name || secret_value) && !sensitive {
                problems.push(format!(
                    "{at} looks like a secret (name or value) but is not sensitive = true"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn terraform_and_providers_are_pinned_exactly() {
    let mut problems = Vec::new();
    for layer in LAYERS {
        let parsed = module(layer);
        let settings = blocks(&parsed, "terraform");
        assert_eq!(settings.len(), 1, "{layer}: expected one terraform block");
        let body = settings[0].1.body();
        match attribute(body, "required_version") {
            Some(Expression::String(v)) if !v.is_empty() => {}
            _ => problems.push(format!("{layer}: required_version is not set")),
        }
        let providers: Vec<_> = body
            .blocks()
            .filter(|b| b.identifier() == "required_providers")
            .collect();
        if providers.is_empty() {
            problems.push(format!("{layer}: no required_providers block"));
        }
        for required in providers {
            for provider in required.body().attributes() {
                let Expression::Object(object) = provider.expr() else {
                    problems.push(format!(
                        "{layer}: provider {} is not an object with source and version",
                        provider.key()
                    ));
                    continue;
                };
                let fields: BTreeMap<String, &Expression> =
                    object.iter().map(|(k, v)| (key_name(k), v)).collect();
                match fields.get("version") {
                    Some(Expression::String(v))
                        if v.starts_with('=')
                            && !v.contains(',')
                            && v.trim_start_matches('=').trim().split('.').count() == 3 => {}
                    other => problems.push(format!(
                        "{layer}: provider {} is not pinned to one exact version (`= X.Y.Z`): {other:?}",
                        provider.key()
                    )),
                }
                if !matches!(fields.get("source"), Some(Expression::String(_))) {
                    problems.push(format!(
                        "{layer}: provider {} has no source",
                        provider.key()
                    ));
                }
            }
        }
        for (path, block) in blocks(&parsed, "module") {
            let source = attribute(block.body(), "source")
                .map(|e| e.to_string())
                .unwrap_or_default();
            let local = source.trim_matches('"').starts_with('.');
            let pinned = matches!(attribute(block.body(), "version"), Some(Expression::String(v)) if v.starts_with('='));
            if !local && !pinned {
                problems.push(format!(
                    "{}: module \"{}\" is not pinned to an exact version",
                    path.display(),
                    label(block)
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Identifiers that follow `prefix` in `source` (outside whole-line comments), e.g. the names
/// after `var.`; `parts` dotted identifiers are read (2 for `data.TYPE.NAME`).
fn references(source: &str, prefix: &str, parts: usize) -> BTreeSet<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut found = BTreeSet::new();
    for line in source.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') || trimmed.starts_with("//") {
            continue;
        }
        for (i, _) in line.match_indices(prefix) {
            let before = line[..i].chars().next_back();
            if before.is_some_and(|c| ident(c) || c == '.') {
                continue;
            }
            let rest = &line[i + prefix.len()..];
            let mut names = Vec::new();
            let mut remaining = rest;
            for _ in 0..parts {
                let name: String = remaining.chars().take_while(|c| ident(*c)).collect();
                if name.is_empty() {
                    break;
                }
                remaining = remaining[name.len()..].strip_prefix('.').unwrap_or("");
                names.push(name);
            }
            if names.len() == parts {
                found.insert(names.join("."));
            }
        }
    }
    found
}

/// `terraform validate` needs the providers, so this catches what it would for references:
/// every `var.X`, `local.X`, `data.T.N` and resource `T.N` used is declared in the module.
#[test]
fn every_reference_is_declared() {
    let mut problems = Vec::new();
    for layer in LAYERS {
        let parsed = module(layer);
        let declared = |kind: &str| -> BTreeSet<String> {
            blocks(&parsed, kind)
                .into_iter()
                .map(|(_, b)| {
                    b.labels()
                        .iter()
                        .map(|l| l.as_str())
                        .collect::<Vec<_>>()
                        .join(".")
                })
                .collect()
        };
        let variables = declared("variable");
        let resources = declared("resource");
        let data = declared("data");
        let locals: BTreeSet<String> = blocks(&parsed, "locals")
            .into_iter()
            .flat_map(|(_, b)| b.body().attributes().map(|a| a.key().to_string()))
            .collect();
        for (path, _) in &parsed {
            let source = fs::read_to_string(path).unwrap();
            let at = path.display();
            for name in references(&source, "var.", 1) {
                if !variables.contains(&name) {
                    problems.push(format!("{at}: var.{name} is not declared"));
                }
            }
            for name in references(&source, "local.", 1) {
                if !locals.contains(&name) {
                    problems.push(format!("{at}: local.{name} is not declared"));
                }
            }
            for name in references(&source, "data.", 2) {
                if !data.contains(&name) {
                    problems.push(format!("{at}: data.{name} is not declared"));
                }
            }
            for prefix in ["aws_", "helm_"] {
                for name in references(&source, prefix, 2) {
                    let full = format!("{prefix}{name}");
                    if !resources.contains(&full) {
                        problems.push(format!("{at}: {full} is not declared"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn outputs_the_example_workflows_reference_exist() {
    let outputs = infra_outputs();
    let mut referenced = BTreeSet::new();
    for workflow in files(&root().join("workflows"), ".yml") {
        let source = fs::read_to_string(&workflow).unwrap();
        for (i, _) in source.match_indices("${tf.") {
            let rest = &source[i + "${tf.".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            referenced.insert((name, workflow.display().to_string()));
        }
    }
    assert!(
        !referenced.is_empty(),
        "no ${{tf.NAME}} reference found in workflows/*.yml"
    );
    let missing: Vec<_> = referenced
        .iter()
        .filter(|(name, _)| !outputs.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "outputs referenced by the workflows but not declared in terraform/infra: {missing:?}"
    );
    // The outputs gantry's build and deploy phases and the application consume.
    for name in [
        "cluster_name",
        "cluster_endpoint",
        "backend_repository_url",
        "frontend_repository_url",
        "database_endpoint",
        "database_port",
        "database_name",
        "database_secret_name",
        "region",
        "vpc_id",
    ] {
        assert!(
            outputs.contains(name),
            "terraform/infra lacks the output {name}"
        );
    }
}

#[test]
fn environment_files_set_only_declared_variables() {
    let infra = module("infra");
    let declared: BTreeSet<String> = blocks(&infra, "variable")
        .into_iter()
        .map(|(_, b)| label(b).to_string())
        .collect();
    let dir = terraform_root().join("infra/environments");
    let found: BTreeSet<String> = files(&dir, ".tfvars")
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
        .collect();
    let expected: BTreeSet<String> = ["dev", "staging", "prod"].map(String::from).into();
    assert_eq!(
        found, expected,
        "environments/ must hold exactly dev, staging and prod .tfvars"
    );
    let mut problems = Vec::new();
    for path in files(&dir, ".tfvars") {
        let body = parse(&path);
        let environment = path.file_stem().unwrap().to_string_lossy().to_string();
        assert_eq!(
            body.blocks().count(),
            0,
            "{}: a .tfvars file holds attributes only",
            path.display()
        );
        for attr in body.attributes() {
            if !declared.contains(attr.key()) {
                problems.push(format!(
                    "{}: sets {}, which terraform/infra does not declare",
                    path.display(),
                    attr.key()
                ));
            }
        }
        match attribute(&body, "environment") {
            Some(Expression::String(e)) if *e == environment => {}
            other => problems.push(format!(
                "{}: must set environment = \"{environment}\", found {other:?}",
                path.display()
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A scratch root module holding only `layer`'s `variables.tf` (which uses no provider) and,
/// for infra, the environment files; initialised, so `terraform plan` runs the validations.
fn variables_only(layer: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = terraform_root().join(layer);
    fs::copy(source.join("variables.tf"), dir.path().join("variables.tf")).unwrap();
    if layer == "infra" {
        fs::create_dir(dir.path().join("environments")).unwrap();
        for path in files(&source.join("environments"), ".tfvars") {
            fs::copy(
                &path,
                dir.path()
                    .join("environments")
                    .join(path.file_name().unwrap()),
            )
            .unwrap();
        }
    }
    let init = terraform(dir.path(), &["init", "-input=false", "-no-color"]);
    assert!(
        init.status.success(),
        "terraform init failed:\n{}",
        text(&init)
    );
    dir
}

fn plan(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec![
        "plan",
        "-input=false",
        "-no-color",
        "-lock=false",
        "-refresh=false",
    ];
    all.extend_from_slice(args);
    terraform(dir, &all)
}

/// Runs the cases concurrently: each is (arguments, expected message or None for success).
fn check_plans(dir: &Path, cases: &[(Vec<String>, Option<&str>)]) {
    let results: Vec<(String, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(args, expected)| {
                scope.spawn(move || {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    let output = plan(dir, &args);
                    let all = normalized(&text(&output));
                    let problem = match expected {
                        None if !output.status.success() => {
                            Some(format!("expected success, got:\n{all}"))
                        }
                        Some(_) if output.status.success() => {
                            Some("expected a validation error, the plan succeeded".to_string())
                        }
                        Some(message) if !all.contains(&normalized(message)) => {
                            Some(format!("expected the message {message:?}, got:\n{all}"))
                        }
                        _ => None,
                    };
                    (args.join(" "), problem)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let failures: Vec<String> = results
        .into_iter()
        .filter_map(|(args, problem)| problem.map(|p| format!("plan {args}: {p}")))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn case(args: &[&str], expected: Option<&'static str>) -> (Vec<String>, Option<&'static str>) {
    (args.iter().map(|a| a.to_string()).collect(), expected)
}

#[test]
fn infra_validations_accept_the_environments_and_reject_bad_values() {
    let dir = variables_only("infra");
    const DEV: &str = "-var-file=environments/dev.tfvars";
    const PROD: &str = "-var-file=environments/prod.tfvars";
    let cases = vec![
        case(&[DEV], None),
        case(&["-var-file=environments/staging.tfvars"], None),
        case(&[PROD], None),
        case(
            &[DEV, "-var=environment=qa"],
            Some("environment must be one of dev, staging, prod."),
        ),
        case(
            &[DEV, "-var=nat_gateway_mode=two"],
            Some("nat_gateway_mode must be one of single, per_az."),
        ),
        case(
            &[DEV, "-var=availability_zone_count=1"],
            Some("availability_zone_count must be 2 or 3"),
        ),
        case(
            &[DEV, "-var=node_desired_size=9"],
            Some("node_desired_size must be from node_min_size to node_max_size."),
        ),
        case(
            &[DEV, "-var=node_capacity_type=spot"],
            Some("node_capacity_type must be one of ON_DEMAND, SPOT."),
        ),
        case(
            &[DEV, "-var=kubernetes_version=1.35.1"],
            Some("kubernetes_version must be MAJOR.MINOR from 1.28 to 1.39"),
        ),
        case(
            &[DEV, "-var=vpc_cidr=10.0.0.0/8"],
            Some("prefix length from /16 to /20"),
        ),
        case(
            &[DEV, "-var=repositories=[\"api\"]"],
            Some("repositories must include backend and frontend"),
        ),
        case(
            &[DEV, "-var=database_mode=mysql"],
            Some("database_mode must be one of rds, chart, helm."),
        ),
        case(
            &[PROD, "-var=database_mode=helm"],
            Some("database_mode must be rds for prod"),
        ),
        case(
            &[PROD, "-var=database_deletion_protection=false"],
            Some("database_deletion_protection must be true for prod"),
        ),
        case(
            &[PROD, "-var=database_backup_retention_days=3"],
            Some("from 7 to 35 for prod"),
        ),
        case(
            &[DEV, "-var=cluster_log_retention_days=10"],
            Some("must be one of CloudWatch's values: 1, 3, 5, 7, 14, 30"),
        ),
        // Wrong types are rejected by Terraform itself, before any validation block.
        case(
            &[DEV, "-var=node_min_size=many"],
            Some("a number is required"),
        ),
        case(
            &[DEV, "-var=database_multi_az=maybe"],
            Some("a bool is required"),
        ),
    ];
    check_plans(dir.path(), &cases);
}

#[test]
fn bootstrap_validations_reject_bad_values() {
    let dir = variables_only("bootstrap");
    const REPO: &str = "-var=github_repository=acme/shop";
    let cases = vec![
        case(&[REPO], None),
        case(
            &["-var=github_repository=https://github.com/acme/shop"],
            Some("github_repository must be OWNER/REPO"),
        ),
        case(
            &[REPO, "-var=environments=[\"dev\",\"qa\"]"],
            Some("environments must be a non-empty subset of dev, staging, prod."),
        ),
        case(
            &[REPO, "-var=region=Europe"],
            Some("region must be an AWS region name such as eu-west-1"),
        ),
        case(
            &[REPO, "-var=max_session_duration=600"],
            Some("max_session_duration must be from 3600 to 43200 seconds."),
        ),
    ];
    check_plans(dir.path(), &cases);
}
