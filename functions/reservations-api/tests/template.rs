//! The template as AWS will deploy it: `scripts/translate-template` turns `template.yaml` into
//! plain CloudFormation with the SAM translator (from the SAM CLI's venv, `.tools/sam`, which
//! `./scripts/install-tools` installs), and these tests hold the result to the access rules:
//!
//! - the API's routes are exactly [`reservations_api::routes`], each behind the JWT authorizer
//!   with the scopes that grant its scope, the two product-page reads open only when
//!   `PublicItemReads` is "true", plus the OpenAPI document, open to anyone;
//! - every function has its own role, used by no other, and no managed policy;
//! - the parameters bound retention and grace as the code does;
//! - every action a role names is one IAM defines (cfn-lint's IAM reference), a `Resource: "*"`
//!   only for actions IAM defines without a resource, and every grant on the events table names
//!   the partition-key prefixes it may touch (`dynamodb:LeadingKeys`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use inventory_core::aws::PARTITION_KEY_PREFIXES;
use inventory_core::config::{MAX_RELEASE_GRACE_SECS, MIN_LIVE_RETENTION_SECS};
use inventory_core::Config;
use inventory_test_support::template::{
    decide, iam_actions, list, resources_of, statements, translated,
};
use reservations_api::{routes, OPENAPI_PATH};
use serde_json::{json, Value};

/// (METHOD, path) → the security requirement of each operation of the one HTTP API.
fn api_routes(template: &Value, public_item_reads: bool) -> BTreeMap<(String, String), Value> {
    let apis = resources_of(template, "AWS::ApiGatewayV2::Api");
    assert_eq!(apis.len(), 1, "one HTTP API: {apis:?}");
    let conditions = HashMap::from([
        ("ItemReadsArePublic", public_item_reads),
        ("UseCognito", true),
    ]);
    let body = decide(&apis[0].1["Properties"]["Body"], &conditions);
    let mut routes = BTreeMap::new();
    for (path, operations) in body["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            routes.insert(
                (method.to_uppercase(), path.clone()),
                operation["security"].clone(),
            );
        }
    }
    routes
}

#[test]
fn every_route_of_the_template_is_a_route_of_the_api_behind_the_jwt_authorizer_with_its_scopes() {
    let template = translated();
    for public_item_reads in [false, true] {
        let deployed = api_routes(template, public_item_reads);
        let open_document = ("GET".to_owned(), OPENAPI_PATH.to_owned());
        let declared: BTreeSet<(String, String)> = routes()
            .iter()
            .map(|route| (route.method.to_owned(), route.path.to_owned()))
            .chain([open_document.clone()])
            .collect();
        assert_eq!(
            deployed.keys().cloned().collect::<BTreeSet<_>>(),
            declared,
            "the template's routes are the API's"
        );
        for route in routes() {
            let security = &deployed[&(route.method.to_owned(), route.path.to_owned())];
            let expected = if public_item_reads && route.product_page {
                json!([{ "NONE": [] }])
            } else {
                let scopes: Vec<&str> = route.scope.granted_by().iter().map(|s| s.name()).collect();
                json!([{ "OAuth2": scopes }])
            };
            assert_eq!(
                security, &expected,
                "{} {} (public item reads: {public_item_reads})",
                route.method, route.path
            );
        }
        assert_eq!(
            deployed[&open_document],
            json!([{ "NONE": [] }]),
            "the OpenAPI document needs no token"
        );
    }
    // Nothing else routes requests: no API, route or integration outside the one HTTP API.
    for kind in [
        "AWS::ApiGatewayV2::Route",
        "AWS::ApiGateway::RestApi",
        "AWS::Lambda::Url",
    ] {
        assert!(resources_of(template, kind).is_empty(), "{kind}");
    }
}

#[test]
fn the_authorizer_verifies_jwts_from_the_bearer_header_of_the_stacks_user_pool_or_the_given_issuer()
{
    let template = translated();
    let api = &resources_of(template, "AWS::ApiGatewayV2::Api")[0].1;
    let scheme = &api["Properties"]["Body"]["components"]["securitySchemes"]["OAuth2"];
    let authorizer = &scheme["x-amazon-apigateway-authorizer"];
    assert_eq!(authorizer["type"], "jwt");
    assert_eq!(
        authorizer["identitySource"],
        "$request.header.Authorization"
    );
    let own = HashMap::from([("UseCognito", true), ("ItemReadsArePublic", false)]);
    let other = HashMap::from([("UseCognito", false), ("ItemReadsArePublic", false)]);
    let jwt = &authorizer["jwtConfiguration"];
    assert_eq!(
        decide(&jwt["audience"], &own),
        json!([{ "Ref": "StorefrontClient" }, { "Ref": "WarehouseClient" }])
    );
    assert_eq!(
        decide(&jwt["issuer"], &other),
        json!({ "Ref": "OidcIssuerUrl" })
    );
    assert_eq!(
        decide(&jwt["audience"], &other),
        json!({ "Ref": "OidcAudience" })
    );
    let stage = &resources_of(template, "AWS::ApiGatewayV2::Stage")[0].1["Properties"];
    assert!(stage["DefaultRouteSettings"]["ThrottlingRateLimit"].is_object());
    assert!(stage["AccessLogSettings"]["DestinationArn"].is_object());
}

#[test]
fn every_function_has_a_role_of_its_own_and_logs_to_a_log_group_of_its_own() {
    let template = translated();
    let functions = resources_of(template, "AWS::Lambda::Function");
    assert_eq!(functions.len(), 5);
    let mut roles = BTreeSet::new();
    let mut groups = BTreeSet::new();
    for (name, function) in functions {
        let properties = &function["Properties"];
        let role = properties["Role"]["Fn::GetAtt"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no role of the template"));
        assert!(roles.insert(role.to_owned()), "{name} shares {role}");
        let group = properties["LoggingConfig"]["LogGroup"]["Ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no log group of the template"));
        assert!(groups.insert(group.to_owned()), "{name} shares {group}");
        let own_logs = statements(template, role)
            .iter()
            .any(|statement| statement["Resource"] == json!({ "Fn::GetAtt": [group, "Arn"] }));
        assert!(own_logs, "{role} may write {group}");
    }
    let others: Vec<&String> = resources_of(template, "AWS::IAM::Role")
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| !roles.contains(name.as_str()))
        .collect();
    assert_eq!(
        others,
        vec!["WebhookRole"],
        "no role beyond the functions' own but EventBridge's for the webhook"
    );
}

#[test]
fn every_role_names_only_actions_iam_defines_scoped_to_resources_and_table_key_prefixes() {
    let template = translated();
    let actions = iam_actions();
    let roles = resources_of(template, "AWS::IAM::Role");
    assert!(!roles.is_empty());
    for (name, role) in roles {
        let properties = &role["Properties"];
        assert!(
            list(&properties["ManagedPolicyArns"]).is_empty(),
            "{name} has managed policies"
        );
        let service = if name == "WebhookRole" {
            "events.amazonaws.com"
        } else {
            "lambda.amazonaws.com"
        };
        assert_eq!(
            properties["AssumeRolePolicyDocument"]["Statement"],
            json!([{ "Effect": "Allow", "Principal": { "Service": service },
                     "Action": "sts:AssumeRole" }]),
            "{name} is assumed by {service} only"
        );
        {
            for statement in statements(template, name) {
                let sid = statement["Sid"].as_str().unwrap_or("?");
                let at = format!("{name}/{sid}");
                assert_eq!(statement["Effect"], "Allow", "{at}");
                assert!(
                    statement.get("NotAction").is_none() && statement.get("NotResource").is_none(),
                    "{at}"
                );
                let named: Vec<String> = list(&statement["Action"])
                    .iter()
                    .map(|a| a.as_str().expect("action").to_lowercase())
                    .collect();
                for action in &named {
                    assert!(!action.contains('*'), "{at}: wildcard action {action}");
                    assert!(
                        actions.contains_key(action),
                        "{at}: IAM defines no {action}"
                    );
                }
                let resources = list(&statement["Resource"]);
                if resources.contains(&json!("*")) {
                    assert_eq!(resources.len(), 1, "{at}");
                    for action in &named {
                        assert!(
                            actions[action].is_empty(),
                            "{at}: {action} can be scoped to a resource, not \"*\""
                        );
                    }
                }
                for resource in &resources {
                    if let Some(text) = resource.as_str() {
                        assert!(!text.contains('*') || text == "*", "{at}: {text}");
                    }
                }
                if resources == [json!({ "Fn::GetAtt": ["EventsTable", "Arn"] })] {
                    let prefixes =
                        &statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"];
                    let prefixes = list(prefixes);
                    assert!(
                        !prefixes.is_empty(),
                        "{at}: no dynamodb:LeadingKeys condition"
                    );
                    for prefix in prefixes {
                        let text = prefix.as_str().expect("a key pattern");
                        let known = text
                            .strip_suffix('*')
                            .is_some_and(|p| PARTITION_KEY_PREFIXES.contains(&p));
                        assert!(known, "{at}: {text} is not a key prefix followed by *");
                    }
                }
            }
        }
    }
}

#[test]
fn no_role_may_write_what_it_should_not() {
    let template = translated();
    // (role, action, key prefix) triples that must not be granted.
    let forbidden = [
        ("ReservationsApiRole", "dynamodb:putitem", "archive#"),
        ("ReservationsApiRole", "dynamodb:putitem", "snap#"),
        ("ReservationsApiRole", "dynamodb:putitem", "outcome#"),
        ("SnapshotterRole", "dynamodb:putitem", "sku#"),
        ("ArchiverRole", "dynamodb:putitem", "sku#"),
        ("ArchiverRole", "dynamodb:putitem", "snap#"),
        ("ExpiryTimerRole", "dynamodb:putitem", "archive#"),
        ("CommandProcessorRole", "dynamodb:putitem", "idem#"),
    ];
    for (role, action, prefix) in forbidden {
        let granted = statements(template, role).iter().any(|statement| {
            let names_action = list(&statement["Action"])
                .iter()
                .any(|a| a.as_str().is_some_and(|a| a.eq_ignore_ascii_case(action)));
            let keys =
                list(&statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]);
            names_action && keys.contains(&json!(format!("{prefix}*")))
        });
        assert!(!granted, "{role} may {action} {prefix} items");
    }
    let deletes = [
        "dynamodb:deleteitem",
        "dynamodb:batchwriteitem",
        "dynamodb:scan",
        "s3:deleteobject",
    ];
    for (name, role) in resources_of(template, "AWS::IAM::Role") {
        let text = role.to_string().to_lowercase();
        for action in deletes {
            assert!(!text.contains(action), "{name} may {action}");
        }
    }
}

#[test]
fn the_templates_bounds_and_defaults_of_retention_and_grace_are_the_codes() {
    let parameters = &translated()["Parameters"];
    assert_eq!(
        parameters["LiveRetentionSeconds"]["MinValue"],
        json!(MIN_LIVE_RETENTION_SECS),
        "a hold's events must outlive the hold"
    );
    assert_eq!(
        parameters["ReleaseGraceSeconds"]["MaxValue"],
        json!(MAX_RELEASE_GRACE_SECS)
    );
    // A stack deployed with the defaults runs as the code does without configuration.
    let code = Config::default();
    for (parameter, default) in [
        ("LiveRetentionSeconds", code.live_retention.as_secs()),
        ("ReleaseGraceSeconds", code.release_grace_secs as u64),
        (
            "CommandRetentionHours",
            code.command_retention.as_secs() / 3_600,
        ),
        ("ParkFailingAfterSeconds", code.park_failing_after.as_secs()),
    ] {
        assert_eq!(
            parameters[parameter]["Default"],
            json!(default),
            "{parameter}"
        );
    }
}
