//! The catalogue of every input gantry accepts: one table that action.yml, the `INPUT_*` reader and the CLI flags are all derived from.
//!
//! Design note: the names here are the public interface. `action.yml` is generated from this
//! table (`gantry action-yml`) and a test keeps the committed file identical, so an input can
//! never be documented in one place and spelled differently in another.

/// Which part of the pipeline an input belongs to (the grouping used in action.yml and `--help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum InputGroup {
    General,
    Infra,
    Build,
    Deploy,
    Report,
}

impl InputGroup {
    pub const ALL: [InputGroup; 5] = [
        InputGroup::General,
        InputGroup::Infra,
        InputGroup::Build,
        InputGroup::Deploy,
        InputGroup::Report,
    ];

    pub fn title(self) -> &'static str {
        match self {
            InputGroup::General => "General",
            InputGroup::Infra => "Infra phase (Terraform)",
            InputGroup::Build => "Build phase (images to Amazon ECR)",
            InputGroup::Deploy => "Deploy phase (Kubernetes on Amazon EKS)",
            InputGroup::Report => {
                "Report (summary, pull-request comment, deployments, audit trail)"
            }
        }
    }
}

/// The syntax an input's value must follow; also documents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// Free text.
    Text,
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
    /// `true` / `false` in the YAML 1.2 core forms only.
    Bool,
    /// A whole number within bounds (inclusive).
    Count { min: u64, max: u64 },
    /// A duration such as `90s`, `10m`, `1h30m`.
    Duration,
    /// Items separated by newlines or commas.
    List,
    /// `key=value` pairs, one per line.
    Map,
    /// A path relative to the working directory.
    Path,
    /// A YAML document (the `images` list).
    Yaml,
}

/// One input: its public name, documentation and default.
#[derive(Debug, Clone, Copy)]
pub struct InputSpec {
    pub name: &'static str,
    pub group: InputGroup,
    pub kind: InputKind,
    /// The default as action.yml states it; `None` means "no default" (empty).
    pub default: Option<&'static str>,
    pub required: bool,
    /// A secret: masked before anything is printed, never echoed in errors.
    pub secret: bool,
    pub description: &'static str,
}

impl InputSpec {
    /// The environment variable GitHub sets for this input in a container action:
    /// upper-cased, spaces to underscores, hyphens kept (`INPUT_WORKING-DIRECTORY`).
    pub fn env_var(&self) -> String {
        format!("INPUT_{}", self.name.replace(' ', "_").to_uppercase())
    }
}

/// The commands gantry can run.
pub const COMMANDS: &[&str] = &[
    "auto", "deploy", "plan", "rollback", "destroy", "history", "unlock",
];
/// The phases a run can be limited to (the report always runs).
pub const PHASES: &[&str] = &["infra", "build", "deploy"];

const fn input(
    name: &'static str,
    group: InputGroup,
    kind: InputKind,
    default: Option<&'static str>,
    description: &'static str,
) -> InputSpec {
    InputSpec {
        name,
        group,
        kind,
        default,
        required: false,
        secret: false,
        description,
    }
}

const fn required(spec: InputSpec) -> InputSpec {
    InputSpec {
        required: true,
        ..spec
    }
}

const fn secret(spec: InputSpec) -> InputSpec {
    InputSpec {
        secret: true,
        ..spec
    }
}

use InputGroup::{Build, Deploy, General, Infra, Report};
use InputKind::{Bool, Choice, Count, Duration, List, Map, Path, Text, Yaml};

/// Every input, in the order action.yml lists them.
pub const INPUTS: &[InputSpec] = &[
    // General
    input(
        "command",
        General,
        Choice(COMMANDS),
        Some("auto"),
        "What to do. `auto` decides from the event: push to the default branch deploys, pull_request plans and comments, workflow_dispatch runs the `command` input of the dispatch. Otherwise one of deploy, plan, rollback, destroy, history, unlock (breaks a stale environment lock; needs confirm-unlock).",
    ),
    required(input(
        "environment",
        General,
        Text,
        None,
        "Environment to act on, e.g. dev, staging or prod: lower-case letters, digits and hyphens, at most 40 characters. Selects the Terraform workspace, the Kubernetes release history and the deployment record.",
    )),
    input(
        "phases",
        General,
        List,
        Some("infra,build,deploy"),
        "Phases to run, comma or newline separated, any of infra, build, deploy (always in that order). The report always runs.",
    ),
    input(
        "working-directory",
        General,
        Path,
        Some("."),
        "Directory, relative to the repository checkout, that every other path input is relative to.",
    ),
    input(
        "version",
        General,
        Text,
        None,
        "Git commit SHA or tag to deploy instead of the commit that triggered the run (workflow_dispatch: deploy a chosen version). Images are then reused from the registry, never rebuilt.",
    ),
    input(
        "rollback-to",
        General,
        Count { min: 1, max: 1_000_000 },
        None,
        "With command rollback: the release number to restore. Empty: the last release that deployed successfully before the current one.",
    ),
    input(
        "confirm-unlock",
        General,
        Text,
        None,
        "With command unlock: must repeat the environment name exactly, as a deliberate confirmation that the run holding the lock is gone.",
    ),
    input(
        "confirm-destroy",
        General,
        Text,
        None,
        "With command destroy: must repeat the environment name exactly, as a deliberate confirmation.",
    ),
    // Infra
    input(
        "terraform-directory",
        Infra,
        Path,
        None,
        "Directory of the Terraform root module. Empty: the infra phase is skipped and says so.",
    ),
    input(
        "terraform-version",
        Infra,
        Text,
        None,
        "The Terraform (or, with terraform-binary tofu, OpenTofu) version to run: an exact version or a constraint (`~> 1.9.0`). Empty: the root module's `required_version`, else `.terraform-version` (a version, `latest` or `latest:^1.9`, as tfenv reads it) or `.tool-versions`, else the bundled binary. The bundled binary runs whenever it satisfies; otherwise the newest satisfying release is downloaded, checked against its SHA256SUMS and cached under the home directory for later steps. The summary says which binary ran and why.",
    ),
    input(
        "terraform-binary",
        Infra,
        Text,
        Some("terraform"),
        "The command-line tool that runs the configuration: `terraform` (Terraform >= 1.10) or `tofu` (OpenTofu >= 1.8), looked up on PATH, or an absolute path to either. The summary names the tool and version that ran.",
    ),
    input(
        "terraform-backend-config",
        Infra,
        List,
        None,
        "Backend configuration for `terraform init`: `key=value` items and/or paths of backend config files relative to the Terraform directory, comma or newline separated.",
    ),
    input(
        "terraform-var-files",
        Infra,
        List,
        None,
        "Variable files (`.tfvars` or `.tfvars.json`) relative to the Terraform directory, comma or newline separated. `{environment}` is replaced, e.g. `environments/{environment}.tfvars`.",
    ),
    input(
        "terraform-vars",
        Infra,
        Map,
        None,
        "Terraform variables, one `name=value` per line; values are passed as given (HCL syntax for lists and maps).",
    ),
    input(
        "terraform-parallelism",
        Infra,
        Count { min: 1, max: 256 },
        Some("10"),
        "Concurrent operations Terraform may run during plan and apply.",
    ),
    input(
        "terraform-lock-timeout",
        Infra,
        Duration,
        Some("5m"),
        "How long Terraform waits for a state lock held by another run before failing with state-locked.",
    ),
    input(
        "allow-destroy",
        Infra,
        Bool,
        Some("false"),
        "Allow a plan that deletes or replaces resources to be applied. When false such a plan stops before apply and lists each resource.",
    ),
    // Build
    input(
        "images",
        Build,
        Yaml,
        None,
        "Images to build, as a YAML list; each item has `name` and `repository` (an ECR repository name, a full repository URI, or `${tf.OUTPUT}` for a Terraform output), and optionally `context` (default `.`), `dockerfile`, `target`, `build-args` (a map), `tags` (extra tags) `smoke-test` (a command run in the built image before anything is pushed) and `smoke-test-timeout` (default 5m; a test still running then is stopped and fails). Empty: the build phase is skipped and says so.",
    ),
    input(
        "aws-region",
        Build,
        Text,
        None,
        "AWS region of ECR and EKS, e.g. eu-west-1. Empty: taken from AWS_REGION or AWS_DEFAULT_REGION.",
    ),
    input(
        "registry",
        Build,
        Text,
        None,
        "The ECR registry's AWS account id (12 digits), an ECR host (its account and region are used), or the host of another OCI registry (then no AWS call is made). Empty: the account of the current AWS credentials; repositories given as full ECR URIs use their own account and region.",
    ),
    input(
        "registry-endpoint",
        Build,
        Text,
        None,
        "Registry address to push to instead of the ECR address derived from account and region, e.g. 127.0.0.1:5000 for a local registry. Alone it is a plain OCI registry (anonymous, or registry-username/password); with aws-endpoint-url the ECR API at that URL is used for repositories and tokens.",
    ),
    input(
        "registry-username",
        Build,
        Text,
        None,
        "User name for a non-ECR registry. For ECR leave empty: credentials come from an ECR authorization token.",
    ),
    secret(input(
        "registry-password",
        Build,
        Text,
        None,
        "Password or token for a non-ECR registry; masked in every log, summary and comment.",
    )),
    input(
        "aws-endpoint-url",
        Build,
        Text,
        None,
        "Endpoint override for the AWS APIs (ECR, EKS, STS), e.g. a local test server. Empty: the AWS default endpoints.",
    ),
    input(
        "create-repository",
        Build,
        Bool,
        Some("true"),
        "Create a missing ECR repository (with the tag immutability and scan-on-push settings below) instead of failing.",
    ),
    input(
        "repository-tag-immutability",
        Build,
        Bool,
        Some("true"),
        "When gantry creates a repository: make its tags immutable.",
    ),
    input(
        "repository-scan-on-push",
        Build,
        Bool,
        Some("true"),
        "When gantry creates a repository: scan images on push.",
    ),
    input(
        "skip-existing",
        Build,
        Bool,
        Some("true"),
        "Do not rebuild an image whose commit tag already exists in the registry; reuse its digest.",
    ),
    input(
        "push",
        Build,
        Bool,
        Some("true"),
        "Push the built images. Plan runs never push.",
    ),
    input(
        "build-concurrency",
        Build,
        Count { min: 1, max: 32 },
        Some("2"),
        "How many images build and push at the same time.",
    ),
    // Deploy
    input(
        "manifests",
        Deploy,
        List,
        None,
        "Kubernetes manifests: files, directories and globs of multi-document YAML, comma or newline separated; `{environment}` in a path is replaced (`overlays/{environment}`). A directory holding `kustomization.yaml` is built with Kustomize. Empty (and no charts): the deploy phase is skipped and says so.",
    ),
    input(
        "charts",
        Deploy,
        Yaml,
        None,
        "Helm charts to render and deploy with the manifests, as a YAML list; each item has `name` (the release name) and `chart` (a chart directory, a `.tgz`, or `oci://registry/path/chart` with `version`), and optionally `version`, `namespace` (default: the `namespace` input), `values` (values files; `{environment}` in a path is replaced) and `set` (a map of values by dotted path). `${tf.OUTPUT}`, `${image.NAME}` and `${gantry.*}` are replaced in values files and `set`, never in the chart's templates. gantry applies, tracks and rolls back the rendered objects itself; pre/post-install and pre/post-upgrade hook Jobs and Pods run before and after the release, test hooks are ignored, other hooks are refused.",
    ),
    input(
        "adopt-helm-release",
        Deploy,
        Text,
        None,
        "Take over the objects of this existing Helm release: every object of gantry's release whose live copy belongs to it (annotated `meta.helm.sh/release-name`) takes the fields Helm's field manager owns, keeps the image it runs (no pod restarts), and is recorded as gantry's; nothing is deleted or recreated. Helm's release records are left untouched: remove them afterwards with `kubectl delete secret -n NAMESPACE -l owner=helm,name=RELEASE` (never `helm uninstall`, which would delete the objects). Looked for in the namespace of the chart of that name, else `namespace`.",
    ),
    input(
        "namespace",
        Deploy,
        Text,
        Some("default"),
        "Namespace for namespaced objects that do not name one.",
    ),
    secret(input(
        "kubeconfig",
        Deploy,
        Text,
        None,
        "Path to a kubeconfig file, or its content. Empty: use cluster-name with EKS, else KUBECONFIG.",
    )),
    input(
        "cluster-name",
        Deploy,
        Text,
        None,
        "EKS cluster name (or `${tf.OUTPUT}`); gantry reads its endpoint and CA and makes its own token, no aws CLI needed.",
    ),
    input(
        "rollout-timeout",
        Deploy,
        Duration,
        Some("10m"),
        "How long to wait for every workload to become healthy before the rollout counts as failed.",
    ),
    input(
        "rollback",
        Deploy,
        Bool,
        Some("true"),
        "On a failed rollout, restore every resource to the last good release automatically (a first release is removed). The run still fails.",
    ),
    input(
        "prune",
        Deploy,
        Bool,
        Some("true"),
        "Delete objects that the previous release had and this one no longer has (from the release inventory, never by label guessing).",
    ),
    input(
        "force-conflicts",
        Deploy,
        Bool,
        Some("false"),
        "Take ownership of fields another field manager owns instead of failing on server-side apply conflicts.",
    ),
    input(
        "history-max",
        Deploy,
        Count { min: 1, max: 1000 },
        Some("10"),
        "How many release records to keep per environment.",
    ),
    input(
        "lock-lease-duration",
        Deploy,
        Duration,
        Some("45s"),
        "How long the environment lock lasts without renewal (renewed every third of it). A run that cannot renew in time stops writing (failure-reason lock-lost); a run whose holder stopped renewing takes the lock over after this long (2s to 10m).",
    ),
    input(
        "lock-timeout",
        Deploy,
        Duration,
        Some("5m"),
        "How long to wait for another run holding the environment lock before failing and naming it.",
    ),
    input(
        "pull-error-tolerance",
        Deploy,
        Duration,
        Some("90s"),
        "How long a new pod may fail to pull its image (ErrImagePull, ImagePullBackOff) before the rollout fails.",
    ),
    input(
        "restart-threshold",
        Deploy,
        Count { min: 0, max: 1000 },
        Some("3"),
        "Container restarts of a new pod (e.g. CrashLoopBackOff) tolerated before the rollout fails.",
    ),
    input(
        "unschedulable-tolerance",
        Deploy,
        Duration,
        Some("3m"),
        "How long a new pod may stay unschedulable (e.g. waiting for a node to scale up) before the rollout fails.",
    ),
    input(
        "apply-concurrency",
        Deploy,
        Count { min: 1, max: 64 },
        Some("64"),
        "At most how many requests to the API server are in flight at once (dry runs, applies, reads). gantry sizes its concurrency to the measured round-trip time (8 on a local network, 64 from a 28 ms round trip) up to this bound; throttling (429) is retried as the server asks.",
    ),
    // Report
    secret(input(
        "github-token",
        Report,
        Text,
        Some("${{ github.token }}"),
        "Token for the pull-request comment, GitHub Deployments and the audit branch. Needs contents: write, pull-requests: write, deployments: write.",
    )),
    input(
        "pr-comment",
        Report,
        Bool,
        Some("true"),
        "On pull requests, keep one comment per environment with the plan, updated in place on every push.",
    ),
    input(
        "github-deployments",
        Report,
        Bool,
        Some("true"),
        "Record each deploy and rollback as a GitHub Deployment with statuses.",
    ),
    input(
        "environment-url",
        Report,
        Text,
        None,
        "URL of the deployed environment, shown on the GitHub Deployment.",
    ),
    input(
        "audit-branch",
        Report,
        Text,
        Some("gantry/audit/{environment}"),
        "Branch that receives a commit recording every deploy and rollback: `<environment>/release.json` and `<environment>/manifests.yaml` (`{environment}` is replaced). Created from the default branch's head when missing; never force-pushed. `false`: no audit trail.",
    ),
];

/// An output of the action.
#[derive(Debug, Clone, Copy)]
pub struct OutputSpec {
    pub name: &'static str,
    pub description: &'static str,
}

/// Every output gantry declares. Per-image and Terraform outputs are added dynamically and
/// documented in docs/report.md (`image-<name>-uri`, `image-<name>-digest`, `tf-<output>`).
pub const OUTPUTS: &[OutputSpec] = &[
    OutputSpec {
        name: "status",
        description: "Outcome of the run: deployed, rendered (deploy without a cluster: nothing applied), planned, destroyed, listed, failed or rolled-back.",
    },
    OutputSpec {
        name: "environment",
        description: "The environment acted on.",
    },
    OutputSpec {
        name: "command",
        description: "The command that ran (auto resolved): deploy, plan, rollback, destroy or history.",
    },
    OutputSpec {
        name: "release",
        description: "Release number deployed (or attempted) in the environment.",
    },
    OutputSpec {
        name: "previous-release",
        description: "Release number that was deployed before this run.",
    },
    OutputSpec {
        name: "restored-release",
        description: "After a rollback: the release number running again (empty when a failed first release was removed).",
    },
    OutputSpec {
        name: "rolled-back",
        description: "true when a failed rollout was rolled back to previous-release.",
    },
    OutputSpec {
        name: "failure-reason",
        description: "Machine-readable reason of a failure, e.g. invalid-input, init-failed, plan-failed, state-locked, destroy-blocked, apply-failed, build-failed, preflight-failed, locked, rollout-failed, rollout-timeout, hook-failed, rollback-failed, recovery-failed, cluster-unreachable, invalid-manifests, cancelled.",
    },
    OutputSpec {
        name: "images",
        description: "JSON object keyed by image name: the image as deployed, `repository@digest`.",
    },
    OutputSpec {
        name: "image-details",
        description: "JSON list of the built images: name, uri, tag, digest, status (built, built-not-pushed or reused) and duration_ms.",
    },
    OutputSpec {
        name: "plan-fingerprint",
        description: "Fingerprint of the normalized Terraform plan, to prove the applied plan is the reviewed one.",
    },
    OutputSpec {
        name: "plan-changes",
        description: "JSON object with the Terraform plan counts: create, update, delete, replace, read.",
    },
    OutputSpec {
        name: "deployment-id",
        description: "Id of the GitHub Deployment recorded for this deploy or rollback (empty without one).",
    },
    OutputSpec {
        name: "comment-url",
        description: "URL of the pull-request comment written or updated by this run (empty without one).",
    },
    OutputSpec {
        name: "audit-commit",
        description: "SHA of the commit recording this deploy or rollback on the audit branch (empty without one).",
    },
    OutputSpec {
        name: "phases",
        description: "JSON object keyed by phase: status, reason and duration in seconds.",
    },
];

/// Looks an input up by name.
/// Whether an input's value may span lines: lists, maps, YAML, and `kubeconfig` (a path or a
/// kubeconfig's content). Every other input is one line.
pub fn is_multi_line(spec: &InputSpec) -> bool {
    matches!(
        spec.kind,
        InputKind::List | InputKind::Map | InputKind::Yaml
    ) || spec.name == "kubeconfig"
}

pub fn find(name: &str) -> Option<&'static InputSpec> {
    INPUTS.iter().find(|spec| spec.name == name)
}
