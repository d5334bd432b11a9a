//! What a deploy may do, and what it may never undo, held to the files that decide it:
//!
//! - every role the stack writes carries the permissions boundary the bootstrap ships
//!   (`deploy/github-oidc.yaml`), and that boundary denies IAM writes and allows what the stack's
//!   roles need, on the stage's own resources only;
//! - the deploy roles of the bootstrap may create or change a role only with that boundary, and
//!   can neither attach a managed policy, drop a boundary nor edit the boundary policy; the
//!   CloudFormation role can read the stage's artifacts; a deploy role's trust names the GitHub
//!   environment, and the ref too where the repository's OIDC subject carries it;
//! - the archive's bucket policy denies deleting archived events and changing the bucket's
//!   lifecycle, versioning or policy to every principal but the break-glass role;
//! - the archiver may set an event's time to live and nothing else of it (`dynamodb:Attributes`,
//!   which moto does not enforce);
//! - every action of the workflows is pinned to a commit, the jobs that may ask for an OIDC token
//!   install nothing unpinned, and the job that builds what is deployed restores no cache;
//! - the parked-commands alarm fires when its figure stops coming, and the processor's own parked
//!   count has an alarm too.

use std::collections::BTreeSet;

use inventory_core::aws::dynamo::{PK, SK, TTL};
use inventory_test_support::template::{
    decide, inline_statements, list, resources_of, root, statements, translated, yaml,
};
use serde_json::{json, Value};

const BOOTSTRAP: &str = "deploy/github-oidc.yaml";

/// The boundary's ARN as the bootstrap names it for a stage, and as the stack derives it from
/// its own name (the stacks are named `PREFIX-STAGE`).
const BOUNDARY_IN_BOOTSTRAP: &str =
    "arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/${StackNamePrefix}-${Stage}-boundary";
const BOUNDARY_IN_STACK: &str =
    "arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/${AWS::StackName}-boundary";

/// The bootstrap's resources by logical id; those of a `Fn::ForEach` loop under their ids as
/// written (`DeployRole${Stage}`).
fn bootstrap_resources() -> Vec<(String, Value)> {
    let template = yaml(BOOTSTRAP);
    let mut resources = Vec::new();
    for (name, value) in template["Resources"].as_object().expect("resources") {
        if name.starts_with("Fn::ForEach::") {
            for (inner, resource) in value[2].as_object().expect("the loop's fragment") {
                resources.push((inner.clone(), resource.clone()));
            }
        } else {
            resources.push((name.clone(), value.clone()));
        }
    }
    resources
}

fn bootstrap_roles() -> Vec<(String, Value)> {
    let roles: Vec<(String, Value)> = bootstrap_resources()
        .into_iter()
        .filter(|(_, resource)| resource["Type"] == "AWS::IAM::Role")
        .collect();
    assert!(
        roles.len() >= 2,
        "the deploy role and the CloudFormation role"
    );
    roles
}

fn bootstrap_role(prefix: &str) -> Value {
    bootstrap_roles()
        .into_iter()
        .find(|(name, _)| name.starts_with(prefix))
        .unwrap_or_else(|| panic!("the bootstrap has no {prefix}… role"))
        .1
}

/// The boundary policy the bootstrap ships (one per stage).
fn bootstrap_boundary() -> Value {
    let policies: Vec<(String, Value)> = bootstrap_resources()
        .into_iter()
        .filter(|(_, resource)| resource["Type"] == "AWS::IAM::ManagedPolicy")
        .collect();
    assert_eq!(
        policies.len(),
        1,
        "the bootstrap ships one managed policy, the stage's permissions boundary: {policies:?}"
    );
    policies[0].1.clone()
}

/// Whether the IAM action pattern `pattern` (`*` and `?` wildcards, any case) names `action`.
fn names(pattern: &str, action: &str) -> bool {
    fn glob(pattern: &[u8], text: &[u8]) -> bool {
        match (pattern.first(), text.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..]))
            }
            (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
            (Some(p), Some(t)) => p == t && glob(&pattern[1..], &text[1..]),
            _ => false,
        }
    }
    glob(
        pattern.to_ascii_lowercase().as_bytes(),
        action.to_ascii_lowercase().as_bytes(),
    )
}

fn actions_of(statement: &Value) -> Vec<String> {
    list(&statement["Action"])
        .iter()
        .map(|action| action.as_str().expect("an action").to_owned())
        .collect()
}

/// Whether `statement` (an Allow) names `action`, by its `Action` or its `NotAction`.
fn allows(statement: &Value, action: &str) -> bool {
    statement["Effect"] == "Allow"
        && (actions_of(statement).iter().any(|p| names(p, action))
            || (!statement["NotAction"].is_null()
                && !list(&statement["NotAction"])
                    .iter()
                    .any(|p| names(p.as_str().unwrap_or(""), action))))
}

/// The text of a `Fn::Sub` (either form) or of a plain string; anything else as JSON.
fn sub_text(value: &Value) -> String {
    let sub = &value["Fn::Sub"];
    value
        .as_str()
        .or_else(|| sub.as_str())
        .or_else(|| sub[0].as_str())
        .map_or_else(|| value.to_string(), str::to_owned)
}

#[test]
fn every_role_of_the_stack_carries_the_boundary_the_bootstrap_ships() {
    let template = translated();
    let roles = resources_of(template, "AWS::IAM::Role");
    assert!(!roles.is_empty());
    for (name, role) in roles {
        let boundary = &role["Properties"]["PermissionsBoundary"];
        assert!(!boundary.is_null(), "{name} has no permissions boundary");
        for (own, expected) in [
            (true, json!({ "Ref": "PermissionsBoundaryArn" })),
            (false, json!({ "Fn::Sub": BOUNDARY_IN_STACK })),
        ] {
            let decided = decide(boundary, &[("HasOwnBoundary", own)].into());
            assert_eq!(decided, expected, "{name} (HasOwnBoundary: {own})");
        }
    }
    // The stack writes no other IAM entity.
    for kind in [
        "AWS::IAM::ManagedPolicy",
        "AWS::IAM::Policy",
        "AWS::IAM::User",
        "AWS::IAM::Group",
        "AWS::IAM::InstanceProfile",
    ] {
        assert!(
            resources_of(template, kind).is_empty(),
            "the stack writes {kind}"
        );
    }
    // The bootstrap's boundary is the one the stack names when given none: its name for stage
    // STAGE is the stack's name (PREFIX-STAGE, samconfig.toml) and `-boundary`.
    let name = sub_text(&bootstrap_boundary()["Properties"]["ManagedPolicyName"]);
    assert_eq!(name, "${StackNamePrefix}-${Stage}-boundary");
    assert_eq!(
        BOUNDARY_IN_BOOTSTRAP.replace("${StackNamePrefix}-${Stage}", "${AWS::StackName}"),
        BOUNDARY_IN_STACK
    );
}

#[test]
fn the_boundary_denies_iam_writes_and_allows_what_the_stacks_roles_need_on_its_own_resources() {
    let boundary = bootstrap_boundary();
    let document = &boundary["Properties"]["PolicyDocument"];
    let statements = list(&document["Statement"]);
    for action in [
        "iam:CreateRole",
        "iam:PutRolePolicy",
        "iam:AttachRolePolicy",
        "iam:PassRole",
        "iam:DeleteRolePermissionsBoundary",
        "iam:CreatePolicyVersion",
        "iam:CreateUser",
        "iam:CreateAccessKey",
    ] {
        let denied = statements.iter().any(|s| {
            s["Effect"] == "Deny"
                && s.get("Condition").is_none()
                && list(&s["Resource"]) == [json!("*")]
                && actions_of(s).iter().any(|p| names(p, action))
        });
        assert!(denied, "the boundary does not deny {action} outright");
        assert!(
            !statements.iter().any(|s| allows(s, action)),
            "the boundary allows {action}"
        );
    }
    // Every action a role of the stack is granted is within the boundary, or it would be denied
    // once deployed.
    for (name, _) in resources_of(translated(), "AWS::IAM::Role") {
        for statement in statements_of_stack_role(name) {
            for action in actions_of(&statement) {
                assert!(
                    statements.iter().any(|s| allows(s, &action)),
                    "{name}'s {action} is outside the boundary"
                );
            }
        }
    }
    // What it allows is the stage's own: every resource names the stage's stack, but for the
    // actions IAM defines on no resource.
    for statement in statements.iter().filter(|s| s["Effect"] == "Allow") {
        assert!(statement.get("NotAction").is_none() && statement.get("NotResource").is_none());
        for action in actions_of(statement) {
            assert!(!action.contains('*'), "the boundary allows {action}");
        }
        for resource in list(&statement["Resource"]) {
            let text = sub_text(&resource);
            if text == "*" {
                for action in actions_of(statement) {
                    assert!(
                        [
                            "xray:PutTraceSegments",
                            "xray:PutTelemetryRecords",
                            "dynamodb:ListStreams",
                            "kinesis:ListStreams",
                            "cloudwatch:PutMetricData",
                        ]
                        .contains(&action.as_str()),
                        "the boundary allows {action} on every resource"
                    );
                }
            } else {
                assert!(
                    text.contains("${StackNamePrefix}-${Stage}"),
                    "the boundary allows {:?} on {text}, not the stage's",
                    actions_of(statement)
                );
            }
        }
    }
}

fn statements_of_stack_role(name: &str) -> Vec<Value> {
    statements(translated(), name)
}

#[test]
fn no_deploy_role_may_attach_a_policy_drop_a_boundary_or_edit_the_boundary_policy() {
    for (name, role) in bootstrap_roles() {
        for statement in inline_statements(&role) {
            for action in [
                "iam:AttachRolePolicy",
                "iam:DeleteRolePermissionsBoundary",
                "iam:CreatePolicyVersion",
                "iam:SetDefaultPolicyVersion",
                "iam:DeletePolicy",
                "iam:DeletePolicyVersion",
                "iam:CreatePolicy",
            ] {
                assert!(
                    !allows(&statement, action),
                    "{name}/{} allows {action}",
                    statement["Sid"]
                );
            }
        }
    }
}

#[test]
fn every_role_write_a_deploy_role_may_make_carries_the_boundary() {
    let boundary = json!({ "Fn::Sub": BOUNDARY_IN_BOOTSTRAP });
    let mut role_writes = 0;
    for (name, role) in bootstrap_roles() {
        let statements = inline_statements(&role);
        for statement in &statements {
            let at = format!("{name}/{}", statement["Sid"]);
            for action in [
                "iam:CreateRole",
                "iam:PutRolePolicy",
                "iam:PutRolePermissionsBoundary",
            ] {
                if !allows(statement, action) {
                    continue;
                }
                role_writes += 1;
                assert_eq!(
                    statement["Condition"]["StringEquals"]["iam:PermissionsBoundary"], boundary,
                    "{at} allows {action} without the boundary condition"
                );
                assert!(statement.get("NotAction").is_none(), "{at}");
            }
        }
        // And an explicit deny, so that no grant added later can write a role without it.
        if statements
            .iter()
            .any(|s| allows(s, "iam:CreateRole") || allows(s, "iam:PutRolePolicy"))
        {
            let denied = statements.iter().any(|s| {
                s["Effect"] == "Deny"
                    && s["Condition"]["StringNotEquals"]["iam:PermissionsBoundary"] == boundary
                    && ["iam:CreateRole", "iam:PutRolePolicy"]
                        .iter()
                        .all(|action| actions_of(s).iter().any(|p| names(p, action)))
            });
            assert!(denied, "{name} denies no role write without the boundary");
        }
    }
    assert!(
        role_writes > 0,
        "the CloudFormation role writes the stack's roles"
    );
}

#[test]
fn the_cloudformation_role_can_read_the_stages_artifacts() {
    let role = bootstrap_role("CloudFormationRole");
    let reads = inline_statements(&role).into_iter().any(|statement| {
        allows(&statement, "s3:GetObject")
            && list(&statement["Resource"]).iter().any(|resource| {
                sub_text(resource).starts_with("${ArtifactBucket.Arn}/${StackNamePrefix}-${Stage}/")
            })
    });
    assert!(
        reads,
        "the CloudFormation role cannot read the code sam deploy uploads to the artifact bucket"
    );
    // And the deploy uploads it there: `--s3-prefix` is the stack's name.
    let workflow =
        std::fs::read_to_string(root().join(".github/workflows/deploy.yml")).expect("deploy.yml");
    for stage in ["dev", "prod"] {
        assert!(
            workflow.contains(&format!("--s3-prefix inventory-{stage}")),
            "deploy.yml uploads {stage}'s artifacts under its stack's name"
        );
    }
}

#[test]
fn a_deploy_role_trusts_the_stages_environment_and_the_deploy_ref_where_the_subject_carries_it() {
    let role = bootstrap_role("DeployRole");
    let trust = list(&role["Properties"]["AssumeRolePolicyDocument"]["Statement"]);
    assert_eq!(trust.len(), 1);
    let condition = &trust[0]["Condition"]["StringEquals"];
    assert_eq!(
        condition["token.actions.githubusercontent.com:aud"],
        "sts.amazonaws.com"
    );
    let subject = &condition["token.actions.githubusercontent.com:sub"];
    let decided = |includes_ref: bool| {
        let conditions = [
            ("SubjectIncludesRef", includes_ref),
            ("HasSubjectRepository", false),
        ];
        sub_text(&decide(subject, &conditions.into()))
    };
    let environment = decided(false);
    assert!(
        environment.starts_with("repo:") && environment.ends_with(":environment:${Stage}"),
        "{environment}"
    );
    let with_ref = decided(true);
    assert!(
        with_ref.ends_with(":environment:${Stage}:ref:refs/heads/${DeployBranch}"),
        "{with_ref}"
    );
    assert!(!environment.contains('*') && !with_ref.contains('*'));
}

#[test]
fn the_archive_denies_deleting_events_and_changing_its_rules_to_all_but_break_glass() {
    let policy = &translated()["Resources"]["ArchiveBucketPolicy"];
    assert_eq!(
        policy["DeletionPolicy"], "Retain",
        "deleting the stack must not try to delete a policy that denies its own deletion"
    );
    let statements = list(&policy["Properties"]["PolicyDocument"]["Statement"]);
    let break_glass = json!({ "Ref": "ArchiveBreakGlassRoleArn" });
    let derived_break_glass = json!({ "Fn::Sub":
        "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/break-glass/${AWS::StackName}-archive" });
    let denied_but_to_break_glass = |action: &str, resource: &Value| {
        statements.iter().any(|s| {
            let condition = &s["Condition"]["ArnNotEquals"]["aws:PrincipalArn"];
            s["Effect"] == "Deny"
                && s["Principal"] == "*"
                && actions_of(s).iter().any(|p| names(p, action))
                && list(&s["Resource"]).contains(resource)
                && decide(condition, &[("HasBreakGlassRole", true)].into()) == break_glass
                && decide(condition, &[("HasBreakGlassRole", false)].into()) == derived_break_glass
                && s["Condition"].as_object().is_some_and(|c| c.len() == 1)
        })
    };
    let events = json!({ "Fn::Sub": "${ArchiveBucket.Arn}/events/*" });
    for action in ["s3:DeleteObject", "s3:DeleteObjectVersion"] {
        assert!(
            denied_but_to_break_glass(action, &events),
            "the archive does not deny {action} on events/ to all but break-glass"
        );
    }
    let bucket = json!({ "Fn::GetAtt": ["ArchiveBucket", "Arn"] });
    for action in [
        "s3:PutLifecycleConfiguration",
        "s3:PutBucketVersioning",
        "s3:PutBucketPolicy",
        "s3:DeleteBucketPolicy",
        "s3:PutBucketObjectLockConfiguration",
    ] {
        assert!(
            denied_but_to_break_glass(action, &bucket),
            "the archive does not deny {action} to all but break-glass"
        );
    }
    // The break-glass role is not one the deploy may create: the CloudFormation role writes only
    // roles named after the stack (role/PREFIX-STAGE-*), with the boundary.
    assert!(sub_text(&derived_break_glass).contains(":role/break-glass/"));
}

#[test]
fn the_archiver_may_set_an_events_time_to_live_and_nothing_else_of_it() {
    let template = translated();
    let mut updates = 0;
    for (name, _) in resources_of(template, "AWS::IAM::Role") {
        for statement in statements(template, name) {
            if !allows(&statement, "dynamodb:UpdateItem") {
                continue;
            }
            updates += 1;
            let sid = &statement["Sid"];
            let attributes: BTreeSet<String> =
                list(&statement["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"])
                    .iter()
                    .filter_map(|a| a.as_str().map(str::to_owned))
                    .collect();
            // The key (in every request) and `pk` of the condition `attribute_exists(pk)`, and
            // the time to live it sets.
            let expected: BTreeSet<String> = [PK, SK, TTL].map(str::to_owned).into();
            assert_eq!(
                attributes, expected,
                "{name}/{sid}: UpdateItem limited by dynamodb:Attributes to the key and {TTL}"
            );
            assert_eq!(
                list(&statement["Condition"]["StringEqualsIfExists"]["dynamodb:ReturnValues"]),
                vec![json!("NONE")],
                "{name}/{sid}: an update returns nothing (no other attribute is read back)"
            );
        }
    }
    assert_eq!(updates, 1, "only the archiver updates items");
}

/// Every `.github/workflows/*.yml`, by file name, as text.
fn workflows() -> Vec<(String, String)> {
    let dir = root().join(".github/workflows");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("the workflows")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .map(|path| {
            let name = path
                .file_name()
                .expect("a name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read_to_string(&path).expect("a workflow"))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 2, "ci.yml and deploy.yml");
    files
}

#[test]
fn every_action_is_pinned_to_a_full_commit_with_its_version_beside_it() {
    let mut pinned = 0;
    for (file, text) in workflows() {
        for (number, line) in text.lines().enumerate() {
            let trimmed = line.trim_start().trim_start_matches("- ").trim_start();
            let Some(used) = trimmed.strip_prefix("uses:") else {
                continue;
            };
            let at = format!("{file}:{}", number + 1);
            let (reference, comment) = used.split_once('#').unwrap_or((used, ""));
            let reference = reference.trim();
            if reference.starts_with("./") {
                continue;
            }
            let (_, commit) = reference
                .split_once('@')
                .unwrap_or_else(|| panic!("{at}: {reference} names no version"));
            assert!(
                commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
                "{at}: {reference} is not pinned to a full commit SHA"
            );
            assert!(
                comment.trim().starts_with('v'),
                "{at}: {reference} has no version comment"
            );
            pinned += 1;
        }
    }
    assert!(pinned > 0);
}

#[test]
fn the_jobs_that_may_ask_for_an_oidc_token_install_nothing_unpinned_and_the_build_restores_no_cache(
) {
    let mut token_jobs = 0;
    for (file, _) in workflows() {
        let workflow = yaml(&format!(".github/workflows/{file}"));
        for (job, definition) in workflow["jobs"].as_object().expect("jobs") {
            let steps = list(&definition["steps"]);
            let uses = |action: &str| {
                steps
                    .iter()
                    .any(|s| s["uses"].as_str().is_some_and(|u| u.starts_with(action)))
            };
            if definition["permissions"]["id-token"] == "write" {
                token_jobs += 1;
                for step in &steps {
                    let run = step["run"].as_str().unwrap_or("");
                    for unpinned in ["npm install", "cargo install", "install-tools", "| sh"] {
                        assert!(!run.contains(unpinned), "{file}/{job}: {run}");
                    }
                    if run.contains("pip install") {
                        assert!(
                            run.contains("--require-hashes") && run.contains("--only-binary"),
                            "{file}/{job} installs from PyPI without hashes: {run}"
                        );
                    }
                }
                assert!(!uses("actions/cache"), "{file}/{job} restores a cache");
            }
            // What is deployed is built from the commit alone: a cache other workflows (any
            // run on main) can write must not feed it.
            if uses("actions/upload-artifact") {
                for cache in ["actions/cache", "Swatinem/rust-cache"] {
                    assert!(!uses(cache), "{file}/{job} builds the release with {cache}");
                }
            }
        }
    }
    assert!(token_jobs >= 2, "the dev and prod deploy jobs");
}

#[test]
fn the_parked_commands_alarm_fires_when_its_figure_stops_and_the_processors_parks_are_alarmed() {
    use inventory_core::telemetry::{COMMANDS, PARKED_COMMANDS};

    let alarms = resources_of(translated(), "AWS::CloudWatch::Alarm");
    let parked_now: Vec<&Value> = alarms
        .iter()
        .map(|(_, alarm)| &alarm["Properties"])
        .filter(|p| p["MetricName"] == PARKED_COMMANDS)
        .collect();
    assert_eq!(parked_now.len(), 1);
    assert_eq!(
        parked_now[0]["TreatMissingData"], "breaching",
        "the parked-commands alarm must fire when the expiry timer stops reporting the count"
    );
    let parked_by_processor: Vec<&Value> = alarms
        .iter()
        .map(|(_, alarm)| &alarm["Properties"])
        .filter(|p| {
            p["MetricName"] == COMMANDS
                && p["Namespace"] == json!({ "Ref": "AWS::StackName" })
                && list(&p["Dimensions"]).contains(&json!({ "Name": "outcome", "Value": "parked" }))
                && list(&p["Dimensions"]).contains(
                    &json!({ "Name": "Function", "Value": { "Ref": "CommandProcessorFunction" } }),
                )
        })
        .collect();
    assert_eq!(
        parked_by_processor.len(),
        1,
        "an alarm on the processor's own parked count (commands, outcome parked)"
    );
    let alarm = parked_by_processor[0];
    assert_eq!(alarm["Statistic"], "Sum");
    assert_eq!(alarm["Threshold"], 0);
    assert_eq!(alarm["ComparisonOperator"], "GreaterThanThreshold");
}
