//! The command line: `gantry` as a container action (no arguments on a runner) and `gantry run|deploy|plan|...` locally, with a flag for every input.
//!
//! The flags are generated from the input catalogue, so `--working-directory` and
//! `INPUT_WORKING-DIRECTORY` can never drift apart.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command as ClapCommand};

use crate::adapters::runner::{RunnerFiles, RunnerMode};
use crate::app::{self, run_invocation, Exit, Invocation};
use crate::config::inputs::{InputGroup, InputKind, INPUTS};
use crate::config::{action_yml, CommandChoice, Origin, RawInputs};
use crate::context::GitHubContext;

/// Subcommands that run the pipeline, and the command each one forces.
const RUN_SUBCOMMANDS: &[(&str, Option<CommandChoice>, &str)] = &[
    (
        "run",
        None,
        "Run the pipeline; the command comes from --command (default auto: deploy locally)",
    ),
    (
        "deploy",
        Some(CommandChoice::Deploy),
        "Terraform apply, build and push images, deploy and track the rollout",
    ),
    (
        "plan",
        Some(CommandChoice::Plan),
        "Terraform plan, build without pushing, server-side dry run",
    ),
    (
        "rollback",
        Some(CommandChoice::Rollback),
        "Restore the previous good release (or --rollback-to N)",
    ),
    (
        "destroy",
        Some(CommandChoice::Destroy),
        "Terraform destroy of the environment (needs --confirm-destroy ENV)",
    ),
    (
        "history",
        Some(CommandChoice::History),
        "List the environment's releases",
    ),
    (
        "unlock",
        Some(CommandChoice::Unlock),
        "Break the environment lock of a run known to be gone (needs --confirm-unlock ENV)",
    ),
];

fn value_name(kind: InputKind) -> &'static str {
    match kind {
        InputKind::Text => "TEXT",
        InputKind::Choice(_) => "CHOICE",
        InputKind::Bool => "true|false",
        InputKind::Count { .. } => "N",
        InputKind::Duration => "DURATION",
        InputKind::List => "LIST",
        InputKind::Map => "KEY=VALUE",
        InputKind::Path => "PATH",
        InputKind::Yaml => "YAML",
    }
}

fn input_args(include_command: bool) -> Vec<Arg> {
    let mut args = vec![Arg::new("config")
        .long("config")
        .value_name("FILE")
        .value_parser(clap::value_parser!(PathBuf))
        .help("YAML file mapping input names to values; flags override it")];
    for group in InputGroup::ALL {
        for spec in INPUTS.iter().filter(|spec| spec.group == group) {
            if spec.name == "command" && !include_command {
                continue;
            }
            let mut help = spec.description.to_string();
            if let Some(default) = spec.default.filter(|d| !d.contains("${{")) {
                help.push_str(&format!(" [default: {default}]"));
            }
            args.push(
                Arg::new(spec.name)
                    .long(spec.name)
                    .value_name(value_name(spec.kind))
                    .help(help)
                    .help_heading(group.title())
                    // A YAML list (`--charts "- name: db ..."`) starts with a hyphen.
                    .allow_hyphen_values(spec.kind == InputKind::Yaml)
                    .action(ArgAction::Set),
            );
        }
    }
    args
}

/// The full command-line interface.
pub fn command() -> ClapCommand {
    let mut cli = ClapCommand::new("gantry")
        .version(env!("CARGO_PKG_VERSION"))
        .about("One step from commit to healthy rollout on Amazon EKS: Terraform, images, server-side apply with automatic rollback, and reporting.")
        .after_help("As a GitHub container action gantry runs with no arguments and reads INPUT_* variables.\nLocally, every input is a --flag of the same name (or a key of --config FILE).\nExit codes: 0 success, 1 the run failed (or rolled back), 2 invalid input (nothing was done).")
        .subcommand_required(false)
        .arg_required_else_help(false);
    for (name, forced, about) in RUN_SUBCOMMANDS {
        cli = cli.subcommand(
            ClapCommand::new(*name)
                .about(*about)
                .args(input_args(forced.is_none())),
        );
    }
    cli.subcommand(
        ClapCommand::new("validate")
            .about("Check the inputs and say what a run would do, without doing it")
            .args(input_args(true)),
    )
    .subcommand(
        ClapCommand::new("demo")
            .about("Run the main job on an embedded example project (a local Terraform stack, two images for the local registry, Kubernetes manifests): deploy it to the test bed's cluster, then deploy a broken change and watch it rolled back")
            .arg(
                Arg::new("dir")
                    .long("dir")
                    .value_name("DIR")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help("Where to write the example project [default: a new temporary directory]"),
            )
            .arg(
                Arg::new("registry")
                    .long("registry")
                    .value_name("HOST:PORT")
                    .default_value("127.0.0.1:5000")
                    .help("The local registry to push the example images to"),
            )
            .arg(
                Arg::new("kubeconfig")
                    .long("kubeconfig")
                    .value_name("FILE")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help("The cluster to deploy to [default: the test bed's, when `bash .ci/testbed up` started it]"),
            )
            .arg(
                Arg::new("namespace")
                    .long("namespace")
                    .value_name("NAMESPACE")
                    .help("The namespace of the example release [default: gantry-demo]"),
            ),
    )
    .subcommand(ClapCommand::new("action").about("Run as a GitHub container action (the default on a runner)").hide(true))
    .subcommand(
        ClapCommand::new("action-yml")
            .about("Print action.yml as generated from the input catalogue")
            .arg(
                Arg::new("image")
                    .long("image")
                    .value_name("docker://REPOSITORY@sha256:DIGEST")
                    .help("The release form: runs.image is this published image, pinned by digest"),
            )
            .hide(true),
    )
}

/// Collects the input flags given on the command line.
fn flag_inputs(matches: &ArgMatches) -> RawInputs {
    let mut raw = RawInputs::default();
    for spec in INPUTS {
        if let Ok(Some(value)) = matches.try_get_one::<String>(spec.name) {
            raw.set(spec.name, value.clone(), Origin::Flag);
        }
    }
    raw
}

fn current_dir() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The invocation of a local run from its flags (and config file).
pub fn local_invocation(
    matches: &ArgMatches,
    command_override: Option<CommandChoice>,
    workspace: PathBuf,
) -> Invocation {
    let from_file = matches
        .get_one::<PathBuf>("config")
        .map(|path| RawInputs::from_config_file(path))
        .unwrap_or_default();
    let raw = from_file.overlay(flag_inputs(matches)).with_defaults();
    Invocation {
        mode: RunnerMode::Local,
        raw,
        command_override,
        files: RunnerFiles::from_env(env_var, false),
        context: Ok(GitHubContext::local(&workspace, env_var("USER"))),
        workspace,
        kubeconfig_env: env_var("KUBECONFIG"),
        debug: env_var("RUNNER_DEBUG").as_deref() == Some("1") || env_var("GANTRY_DEBUG").is_some(),
    }
}

/// Parses the command line and runs; the binary's whole `main`.
pub fn main() -> ExitCode {
    let matches = match command().try_get_matches() {
        Ok(matches) => matches,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() {
                Exit::Usage as u8
            } else {
                0
            });
        }
    };
    let exit = match matches.subcommand() {
        None | Some(("action", _)) => {
            let on_runner = env_var("GITHUB_ACTIONS").as_deref() == Some("true");
            if matches.subcommand().is_none() && !on_runner {
                let _ = command().print_help();
                eprintln!("\ngantry: not on a GitHub runner (GITHUB_ACTIONS is not true); use a subcommand such as `gantry run`.");
                Exit::Usage
            } else {
                run_invocation(Invocation::from_action_env(&env_var))
            }
        }
        Some(("action-yml", sub)) => match sub.get_one::<String>("image") {
            None => {
                print!("{}", action_yml::render());
                Exit::Success
            }
            Some(image) => match action_yml::render_release(image) {
                Ok(yml) => {
                    print!("{yml}");
                    Exit::Success
                }
                Err(problem) => {
                    eprintln!("gantry action-yml: --image {problem}");
                    Exit::Usage
                }
            },
        },
        Some(("validate", sub)) => validate(sub),
        Some(("demo", sub)) => app::demo::run(sub),
        Some((name, sub)) => {
            let forced = RUN_SUBCOMMANDS
                .iter()
                .find(|(n, _, _)| *n == name)
                .and_then(|(_, forced, _)| *forced);
            run_invocation(local_invocation(sub, forced, current_dir()))
        }
    };
    ExitCode::from(exit as u8)
}

/// `gantry validate`: the whole validation and decision, then a description of the run.
fn validate(matches: &ArgMatches) -> Exit {
    let invocation = local_invocation(matches, None, current_dir());
    let validation = crate::config::ValidationContext {
        workspace: invocation.workspace.clone(),
        action_mode: false,
        kubeconfig_env: invocation.kubeconfig_env.clone(),
        kubeconfig_roots: crate::config::runner_kubeconfig_roots(),
    };
    let config = match crate::config::Config::validate(&invocation.raw, &validation) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("gantry: {errors}");
            return Exit::Usage;
        }
    };
    let context = invocation
        .context
        .unwrap_or_else(|_| GitHubContext::local(&invocation.workspace, None));
    match crate::pipeline::decide(&config, &context) {
        Ok(decision) => {
            println!(
                "ok: would {} `{}` ({})",
                decision.command.as_str(),
                config.environment,
                decision.reason
            );
            for phase in crate::config::Phase::ALL {
                let state = crate::pipeline::skip_reason(phase, &config, decision.command)
                    .map(|reason| format!("skipped: {reason}"))
                    .unwrap_or_else(|| "runs".into());
                println!("  {}: {state}", phase.as_str());
            }
            Exit::Success
        }
        Err(errors) => {
            eprintln!("gantry: {errors}");
            Exit::Usage
        }
    }
}
