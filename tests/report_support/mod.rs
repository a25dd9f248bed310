//! Run outcomes for every report scenario (shared by the rendering snapshots, the GitHub flows and the measurement), plus the snapshot comparison.
#![allow(clippy::field_reassign_with_default)]
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use gantry::image::{BuiltImage, ImageStatus};
use gantry::pipeline::facts::{
    ChangeAction, DeployFacts, ObjectChange, PlannedAction, PlannedChange, ReleaseSummary,
    RollbackFacts, RolloutFailure, WorkloadFacts,
};
use gantry::pipeline::{
    Command, Decision, Handoff, PhaseName, PhaseOutcome, PhaseResult, PhaseStatus, RunOutcome,
};
use gantry::plan::{Plan, PlanSummary};
use gantry::report::summary::ReportInput;

pub const SHA: &str = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c";
pub const RUN_URL: &str = "https://github.com/octo-org/shop/actions/runs/42/attempts/1";
pub const SECRET: &str = "ghs_s3cr3t_t0ken*value";

/// Masks [`SECRET`] as the runner would.
pub fn redact(text: &str) -> String {
    text.replace(SECRET, "***")
}

pub struct Scenario {
    pub name: &'static str,
    pub environment: &'static str,
    pub decision: Decision,
    pub outcome: RunOutcome,
}

impl Scenario {
    pub fn input(&self) -> ReportInput<'_> {
        ReportInput {
            environment: self.environment,
            decision: &self.decision,
            outcome: &self.outcome,
            run_url: Some(RUN_URL.to_string()),
            redact: &redact,
        }
    }
}

pub fn plan(resources: &[(&str, &str)]) -> PlanSummary {
    let changes: Vec<serde_json::Value> = resources
        .iter()
        .map(|(address, action)| {
            let actions: Vec<&str> = match *action {
                "replace" => vec!["delete", "create"],
                other => vec![other],
            };
            serde_json::json!({"address": address, "change": {"actions": actions}})
        })
        .collect();
    let json = serde_json::json!({
        "format_version": "1.2",
        "resource_changes": changes,
        "output_changes": {
            "cluster_name": {"actions": ["create"]},
            "db_password": {"actions": ["create"], "after_sensitive": true}
        }
    });
    PlanSummary::from_plan(&Plan::parse(&json.to_string()).unwrap())
}

fn decision(command: Command, reason: &str, pr: Option<u64>) -> Decision {
    Decision {
        command,
        reason: reason.to_string(),
        commit: Some(SHA.to_string()),
        pull_request: pr,
    }
}

fn phase(name: PhaseName, status: PhaseStatus, secs: u64) -> PhaseOutcome {
    PhaseOutcome {
        name,
        result: PhaseResult::new(status),
        duration: Duration::from_millis(secs * 1000 + 300),
    }
}

fn image(name: &str, status: ImageStatus) -> BuiltImage {
    BuiltImage {
        name: name.into(),
        uri: format!("123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/{name}"),
        tag: SHA.into(),
        digest: (status != ImageStatus::BuiltNotPushed).then(|| {
            format!(
                "sha256:{}",
                if name == "api" {
                    "aa11".repeat(16)
                } else {
                    "bb22".repeat(16)
                }
            )
        }),
        status,
        duration_ms: if status == ImageStatus::Reused {
            400
        } else {
            48_200
        },
    }
}

fn infra_handoff(handoff: &mut Handoff, with_changes: bool) {
    handoff.plan = Some(if with_changes {
        plan(&[
            ("aws_ecr_repository.api", "create"),
            ("aws_ecr_repository.web", "create"),
            ("module.eks.aws_eks_node_group.main", "update"),
            ("aws_db_instance.main", "replace"),
        ])
    } else {
        plan(&[])
    });
    handoff
        .terraform_outputs
        .insert("cluster_name".into(), serde_json::json!("shop-prod"));
    handoff.terraform_outputs.insert(
        "api_repository_url".into(),
        serde_json::json!("123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api"),
    );
    handoff
        .sensitive_outputs
        .insert("db_password".into(), serde_json::json!("hunter2hunter2"));
}

fn images(handoff: &mut Handoff, status: ImageStatus) {
    handoff.built_images = vec![image("api", status), image("web", status)];
    for image in &handoff.built_images {
        if let Some(reference) = image.reference() {
            handoff.images.insert(image.name.clone(), reference);
        }
    }
}

fn applied() -> Vec<ObjectChange> {
    [
        ("Namespace/shop", ChangeAction::Unchanged),
        ("ConfigMap/shop/api-config", ChangeAction::Configured),
        ("Service/shop/api", ChangeAction::Unchanged),
        ("Deployment/shop/api", ChangeAction::Configured),
        ("Deployment/shop/web", ChangeAction::Created),
    ]
    .into_iter()
    .map(|(object, action)| ObjectChange {
        object: object.into(),
        action,
    })
    .collect()
}

fn workloads(api: (&str, &str, &str)) -> Vec<WorkloadFacts> {
    vec![
        WorkloadFacts {
            object: "Deployment/shop/api".into(),
            status: api.0.into(),
            replicas: Some(api.1.into()),
            message: api.2.into(),
        },
        WorkloadFacts {
            object: "Deployment/shop/web".into(),
            status: "complete".into(),
            replicas: Some("2/2".into()),
            message: "deployment \"web\" successfully rolled out".into(),
        },
    ]
}

pub const MANIFESTS: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n  namespace: shop\nspec:\n  template:\n    spec:\n      containers:\n        - name: api\n          image: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api@sha256:aa11aa11\n";

fn failure() -> RolloutFailure {
    RolloutFailure {
        object: "Deployment/shop/api".into(),
        pod: Some("api-7d9f8b6c5-x2x9k".into()),
        container: Some("api".into()),
        reason: "CrashLoopBackOff".into(),
        message: "back-off 40s restarting failed container api (3 restarts)".into(),
        log_tail: vec![
            "2026-11-20T10:01:02Z starting api on :8080".into(),
            format!("2026-11-20T10:01:02Z connecting with token {SECRET}"),
            "panic: DATABASE_URL is not set | ```not a fence end```".into(),
        ],
        events: vec![
            "Normal  Pulled   pod/api-7d9f8b6c5-x2x9k  Container image already present".into(),
            "Warning BackOff  pod/api-7d9f8b6c5-x2x9k  Back-off restarting failed container".into(),
        ],
    }
}

fn deploy_outcome(
    name: &'static str,
    deploy_status: PhaseStatus,
    facts: DeployFacts,
    changed: bool,
) -> Scenario {
    let mut handoff = Handoff::default();
    infra_handoff(&mut handoff, true);
    images(&mut handoff, ImageStatus::Built);
    handoff.deploy = Some(facts);
    let mut deploy = phase(PhaseName::Deploy, deploy_status, 184);
    deploy.result.changed = changed;
    Scenario {
        name,
        environment: "prod",
        decision: decision(Command::Deploy, "push to the default branch `main`", None),
        outcome: RunOutcome {
            phases: vec![
                phase(PhaseName::Infra, PhaseStatus::Succeeded, 71),
                phase(PhaseName::Build, PhaseStatus::Succeeded, 96),
                deploy,
            ],
            handoff,
            duration: Duration::from_secs(352),
        },
    }
}

pub fn success() -> Scenario {
    deploy_outcome(
        "success",
        PhaseStatus::Succeeded,
        DeployFacts {
            release: Some(42),
            previous_release: Some(41),
            applied: applied(),
            pruned: vec!["CronJob/shop/legacy-report".into()],
            workloads: workloads((
                "complete",
                "3/3",
                "deployment \"api\" successfully rolled out",
            )),
            interrupted: vec![40],
            rendered_manifests: Some(MANIFESTS.into()),
            ..DeployFacts::default()
        },
        true,
    )
}

pub fn rollout_rolled_back() -> Scenario {
    deploy_outcome(
        "rollout_rolled_back",
        PhaseStatus::RolledBack {
            failure_reason: gantry::pipeline::FailureReason::RolloutFailed,
            message: "Deployment/shop/api: CrashLoopBackOff; rolled back to release 41".into(),
        },
        DeployFacts {
            release: Some(42),
            previous_release: Some(41),
            applied: applied(),
            workloads: workloads(("failed", "1/3", "container api is crash looping")),
            failure: Some(failure()),
            rollback: Some(RollbackFacts {
                from_release: Some(42),
                to_release: Some(41),
                restored: vec![
                    "ConfigMap/shop/api-config".into(),
                    "Deployment/shop/api".into(),
                ],
                deleted: vec!["Deployment/shop/web".into()],
                error: None,
                ..Default::default()
            }),
            rendered_manifests: Some(MANIFESTS.into()),
            ..DeployFacts::default()
        },
        true,
    )
}

pub fn rollback_failed() -> Scenario {
    deploy_outcome(
        "rollback_failed",
        PhaseStatus::failed(
            gantry::pipeline::FailureReason::RollbackFailed,
            "Deployment/shop/api: CrashLoopBackOff, and restoring release 41 failed",
        ),
        DeployFacts {
            release: Some(42),
            previous_release: Some(41),
            applied: applied(),
            workloads: workloads(("failed", "1/3", "container api is crash looping")),
            failure: Some(failure()),
            preflight: vec!["CronJob/shop/report not dry-run checked: its CRD is not installed yet".into()],
            rollback: Some(RollbackFacts {
                from_release: Some(42),
                to_release: Some(41),
                restored: vec!["ConfigMap/shop/api-config".into()],
                deleted: vec![],
                error: Some("apply Deployment/shop/api: the server rejected the request: admission webhook \"policy\" denied it".into()),
                ..Default::default()
            }),
            ..DeployFacts::default()
        },
        true,
    )
}

pub fn build_failure() -> Scenario {
    let mut handoff = Handoff::default();
    infra_handoff(&mut handoff, false);
    let mut build = phase(
        PhaseName::Build,
        PhaseStatus::failed(
            gantry::pipeline::FailureReason::BuildFailed,
            "image api: step 4/9 `RUN npm ci` exited with 1\nNothing was pushed; the deployed environment is untouched.",
        ),
        33,
    );
    build.result.notes = vec![
        "**Build failed** (`build-failed`): Nothing was pushed; the deployed environment is untouched.".into(),
        "```\nnpm ERR! code E401\n```".into(),
    ];
    Scenario {
        name: "build_failure",
        environment: "staging",
        decision: decision(Command::Deploy, "push to the default branch `main`", None),
        outcome: RunOutcome {
            phases: vec![
                phase(PhaseName::Infra, PhaseStatus::Succeeded, 12),
                build,
                phase(
                    PhaseName::Deploy,
                    PhaseStatus::skipped("not run: the build phase failed"),
                    0,
                ),
            ],
            handoff,
            duration: Duration::from_secs(47),
        },
    }
}

fn dry_run(with_changes: bool) -> Vec<PlannedChange> {
    let mut changes = vec![
        PlannedChange {
            object: "Namespace/shop".into(),
            action: PlannedAction::Unchanged,
            fields: vec![],
        },
        PlannedChange {
            object: "Service/shop/api".into(),
            action: PlannedAction::Unchanged,
            fields: vec![],
        },
    ];
    if with_changes {
        changes.extend([
            PlannedChange {
                object: "Deployment/shop/api".into(),
                action: PlannedAction::Change,
                fields: vec![
                    "spec.replicas".into(),
                    "spec.template.spec.containers[name=api].image".into(),
                ],
            },
            PlannedChange {
                object: "Deployment/shop/web".into(),
                action: PlannedAction::Create,
                fields: vec![],
            },
            PlannedChange {
                object: "CronJob/shop/legacy-report".into(),
                action: PlannedAction::Prune,
                fields: vec![],
            },
        ]);
    }
    changes
}

fn plan_scenario(name: &'static str, handoff: Handoff) -> Scenario {
    Scenario {
        name,
        environment: "dev",
        decision: decision(
            Command::Plan,
            "pull request #17: plan and comment",
            Some(17),
        ),
        outcome: RunOutcome {
            phases: vec![
                phase(PhaseName::Infra, PhaseStatus::Succeeded, 25),
                phase(PhaseName::Build, PhaseStatus::Succeeded, 60),
                phase(PhaseName::Deploy, PhaseStatus::Succeeded, 4),
            ],
            handoff,
            duration: Duration::from_secs(90),
        },
    }
}

pub fn plan_with_changes() -> Scenario {
    let mut handoff = Handoff::default();
    infra_handoff(&mut handoff, true);
    images(&mut handoff, ImageStatus::BuiltNotPushed);
    handoff.deploy = Some(DeployFacts {
        previous_release: Some(41),
        preflight: vec![
            "image 123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/web@sha256:bb22 not verified: it is pushed by the deploy run".into(),
        ],
        dry_run: Some(dry_run(true)),
        ..DeployFacts::default()
    });
    plan_scenario("plan_with_changes", handoff)
}

pub fn plan_no_changes() -> Scenario {
    let mut handoff = Handoff::default();
    infra_handoff(&mut handoff, false);
    images(&mut handoff, ImageStatus::Reused);
    handoff.deploy = Some(DeployFacts {
        previous_release: Some(41),
        dry_run: Some(dry_run(false)),
        ..DeployFacts::default()
    });
    plan_scenario("plan_no_changes", handoff)
}

/// A plan of 2,000 resources (with long addresses), a big dry run and big manifests.
pub fn oversized() -> Scenario {
    let addresses: Vec<String> = (0..2000)
        .map(|i| {
            format!(
                "module.tenants[\"tenant-{i:04}\"].module.storage.aws_s3_bucket_lifecycle_configuration.retention_policy_for_archived_objects[{i}]"
            )
        })
        .collect();
    let actions = ["create", "update", "delete", "replace"];
    let resources: Vec<(&str, &str)> = addresses
        .iter()
        .enumerate()
        .map(|(i, a)| (a.as_str(), actions[i % 4]))
        .collect();
    let mut handoff = Handoff::default();
    handoff.plan = Some(plan(&resources));
    images(&mut handoff, ImageStatus::BuiltNotPushed);
    let objects: Vec<PlannedChange> = (0..400)
        .map(|i| PlannedChange {
            object: format!("ConfigMap/tenant-{i:04}/settings"),
            action: PlannedAction::Change,
            fields: vec!["data.retention".into(), "metadata.labels.version".into()],
        })
        .collect();
    let manifests: String = (0..3000)
        .map(|i| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\n"))
        .collect();
    handoff.deploy = Some(DeployFacts {
        dry_run: Some(objects),
        rendered_manifests: Some(manifests),
        ..DeployFacts::default()
    });
    plan_scenario("oversized", handoff)
}

/// `history`: the environment's releases, newest first.
pub fn history() -> Scenario {
    let mut handoff = Handoff::default();
    handoff.deploy = Some(DeployFacts {
        previous_release: Some(42),
        history: vec![
            ReleaseSummary {
                release: 42,
                status: "deployed".into(),
                commit: Some(SHA.into()),
                created: "2026-11-20T10:05:00Z".into(),
                description: "deploy by octocat".into(),
            },
            ReleaseSummary {
                release: 41,
                status: "superseded".into(),
                commit: None,
                created: "2026-11-19T09:00:00Z".into(),
                description: "rollback to 39 | by `ops`".into(),
            },
        ],
        ..DeployFacts::default()
    });
    Scenario {
        name: "history",
        environment: "prod",
        decision: decision(Command::History, "`command: history` given", None),
        outcome: RunOutcome {
            phases: vec![
                phase(
                    PhaseName::Infra,
                    PhaseStatus::skipped("history only lists the environment's releases"),
                    0,
                ),
                phase(
                    PhaseName::Build,
                    PhaseStatus::skipped("history only lists the environment's releases"),
                    0,
                ),
                phase(PhaseName::Deploy, PhaseStatus::Succeeded, 1),
            ],
            handoff,
            duration: Duration::from_secs(2),
        },
    }
}

pub fn all() -> Vec<Scenario> {
    vec![
        success(),
        plan_with_changes(),
        plan_no_changes(),
        build_failure(),
        rollout_rolled_back(),
        rollback_failed(),
        history(),
        oversized(),
    ]
}

/// Compares `actual` with `tests/fixtures/report/<file>`; `GANTRY_UPDATE_SNAPSHOTS=1` rewrites it.
pub fn assert_snapshot(file: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/report")
        .join(file);
    if std::env::var("GANTRY_UPDATE_SNAPSHOTS").as_deref() == Ok("1") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {}; run with GANTRY_UPDATE_SNAPSHOTS=1 to write it",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{file} differs from the snapshot at line {}:\n expected: {:?}\n   actual: {:?}\n(GANTRY_UPDATE_SNAPSHOTS=1 rewrites it after review)",
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}
