//! The template as AWS deploys it keeps what must not be lost and keeps its logs for a while:
//! stateful resources survive the stack, the table cannot be deleted by accident, the command
//! stream holds a command at least 7 days, the archive never expires an event object, and every
//! function and the API log to a group with a retention. Nothing acknowledged is given up: the
//! processor's mapping retries without limit, the processor parks what it cannot apply, and the
//! parked-commands alarm watches the figure the code reports.

use inventory_test_support::template::{list, resources_of, translated};
use serde_json::{json, Value};

fn resource<'a>(name: &str) -> &'a Value {
    let resource = &translated()["Resources"][name];
    assert!(!resource.is_null(), "no {name}");
    resource
}

fn parameter_default(name: &str) -> Value {
    translated()["Parameters"][name]["Default"].clone()
}

#[test]
fn every_stateful_resource_outlives_its_stack_and_the_table_cannot_be_deleted() {
    for name in [
        "EventsTable",
        "CommandStream",
        "CommandFailureQueue",
        "StreamFailureQueue",
        "ArchiveBucket",
        "UserPool",
        "StorefrontClient",
        "WarehouseClient",
    ] {
        let resource = resource(name);
        assert_eq!(resource["DeletionPolicy"], "Retain", "{name}");
        assert_eq!(resource["UpdateReplacePolicy"], "Retain", "{name}");
    }
    let table = &resource("EventsTable")["Properties"];
    assert_eq!(table["DeletionProtectionEnabled"], true);
    assert_eq!(
        table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
}

#[test]
fn the_command_stream_keeps_a_command_at_least_seven_days() {
    let stream = &resource("CommandStream")["Properties"];
    assert_eq!(
        stream["RetentionPeriodHours"],
        json!({ "Ref": "CommandRetentionHours" })
    );
    let parameter = &translated()["Parameters"]["CommandRetentionHours"];
    assert!(parameter["MinValue"].as_i64() >= Some(168), "{parameter}");
    assert!(parameter_default("CommandRetentionHours").as_i64() >= Some(168));
}

#[test]
fn no_lifecycle_rule_of_the_archive_ever_expires_an_event_object() {
    let rules = list(&resource("ArchiveBucket")["Properties"]["LifecycleConfiguration"]["Rules"]);
    assert!(!rules.is_empty());
    for rule in rules {
        let expires = rule.get("ExpirationInDays").is_some()
            || rule.get("ExpirationDate").is_some()
            || rule.get("NoncurrentVersionExpiration").is_some()
            || rule.get("NoncurrentVersionExpirationInDays").is_some();
        if expires {
            let prefix = rule["Prefix"]
                .as_str()
                .or_else(|| rule["Filter"]["Prefix"].as_str())
                .unwrap_or("");
            assert!(
                !prefix.is_empty()
                    && !"events/".starts_with(prefix)
                    && !prefix.starts_with("events/"),
                "rule {} expires objects under events/: {rule}",
                rule["Id"]
            );
        }
    }
    let versioning = &resource("ArchiveBucket")["Properties"]["VersioningConfiguration"];
    assert_eq!(versioning["Status"], "Enabled");
}

#[test]
fn every_function_and_the_api_log_to_a_group_that_keeps_logs_for_the_retention_chosen() {
    let template = translated();
    let mut groups: Vec<String> = resources_of(template, "AWS::Lambda::Function")
        .into_iter()
        .map(|(name, function)| {
            function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} logs to no group of the template"))
                .to_owned()
        })
        .collect();
    let stage = &resources_of(template, "AWS::ApiGatewayV2::Stage")[0].1;
    let access = &stage["Properties"]["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0];
    groups.push(access.as_str().expect("the access log group").to_owned());
    assert_eq!(groups.len(), 6);
    for group in groups {
        let properties = &resource(&group)["Properties"];
        assert_eq!(
            properties["RetentionInDays"],
            json!({ "Ref": "LogRetentionDays" }),
            "{group}"
        );
    }
    assert!(parameter_default("LogRetentionDays").as_i64() > Some(0));
}

#[test]
fn the_processor_and_the_reactions_can_be_given_reserved_concurrency() {
    let template = translated();
    for (name, function) in resources_of(template, "AWS::Lambda::Function") {
        let reserved = &function["Properties"]["ReservedConcurrentExecutions"];
        match name.as_str() {
            "ReservationsApiFunction" => assert!(reserved.is_null(), "{name}"),
            "CommandProcessorFunction" => assert_eq!(
                reserved["Fn::If"][1],
                json!({ "Ref": "ProcessorReservedConcurrency" })
            ),
            _ => assert_eq!(
                reserved["Fn::If"][1],
                json!({ "Ref": "ReactionsReservedConcurrency" }),
                "{name}"
            ),
        }
    }
}

/// The alarms watching `metric` in `namespace`, by the resource each watches.
fn alarms_on(namespace: &str, metric: &str) -> Vec<Value> {
    resources_of(translated(), "AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|(_, alarm)| {
            let properties = &alarm["Properties"];
            properties["Namespace"] == namespace && properties["MetricName"] == metric
                || list(&properties["Metrics"]).iter().any(|m| {
                    m["MetricStat"]["Metric"]["Namespace"] == namespace
                        && m["MetricStat"]["Metric"]["MetricName"] == metric
                })
        })
        .map(|(_, alarm)| alarm.clone())
        .collect()
}

fn watched(alarm: &Value, dimension: &str) -> Value {
    let properties = &alarm["Properties"];
    let dimensions = list(&properties["Dimensions"])
        .into_iter()
        .chain(
            list(&properties["Metrics"])
                .iter()
                .flat_map(|m| list(&m["MetricStat"]["Metric"]["Dimensions"])),
        )
        .find(|d| d["Name"] == dimension);
    dimensions.map_or(Value::Null, |d| d["Value"].clone())
}

#[test]
fn every_function_mapping_queue_and_the_api_has_its_alarms_and_every_alarm_notifies_the_topic() {
    let template = translated();
    let functions: Vec<&String> = resources_of(template, "AWS::Lambda::Function")
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    for metric in ["Errors", "Throttles"] {
        let watched: Vec<Value> = alarms_on("AWS/Lambda", metric)
            .iter()
            .map(|alarm| watched(alarm, "FunctionName"))
            .collect();
        for function in &functions {
            assert!(
                watched.contains(&json!({ "Ref": function })),
                "no {metric} alarm for {function}"
            );
        }
    }
    let mapped: Vec<Value> = resources_of(template, "AWS::Lambda::EventSourceMapping")
        .into_iter()
        .map(|(_, mapping)| mapping["Properties"]["FunctionName"]["Ref"].clone())
        .collect();
    assert_eq!(mapped.len(), 3);
    let aged: Vec<Value> = alarms_on("AWS/Lambda", "IteratorAge")
        .iter()
        .map(|alarm| watched(alarm, "FunctionName")["Ref"].clone())
        .collect();
    for function in &mapped {
        assert!(
            aged.contains(function),
            "no iterator-age alarm for {function}"
        );
    }
    let queues: Vec<Value> = alarms_on("AWS/SQS", "ApproximateNumberOfMessagesVisible")
        .iter()
        .map(|alarm| watched(alarm, "QueueName")["Fn::GetAtt"][0].clone())
        .collect();
    for (name, _) in resources_of(template, "AWS::SQS::Queue") {
        assert!(queues.contains(&json!(name)), "no alarm on {name}");
    }
    assert_eq!(alarms_on("AWS/ApiGateway", "5xx").len(), 1);
    assert_eq!(alarms_on("AWS/ApiGateway", "Latency").len(), 1);
    for (name, alarm) in resources_of(template, "AWS::CloudWatch::Alarm") {
        assert!(
            list(&alarm["Properties"]["AlarmActions"]).contains(&json!({ "Ref": "AlarmTopic" })),
            "{name} notifies no one"
        );
    }
}

#[test]
fn commands_are_deduplicated_for_as_long_as_the_stream_keeps_them() {
    for (name, function) in resources_of(translated(), "AWS::Lambda::Function") {
        let variables = &function["Properties"]["Environment"]["Variables"];
        assert_eq!(
            variables["INVENTORY_COMMAND_RETENTION_HOURS"],
            json!({ "Ref": "CommandRetentionHours" }),
            "{name}"
        );
    }
}

#[test]
fn the_processors_mapping_never_gives_a_command_up_and_the_parking_bound_is_the_templates() {
    let mapping = resources_of(translated(), "AWS::Lambda::EventSourceMapping")
        .into_iter()
        .map(|(_, mapping)| &mapping["Properties"])
        .find(|p| p["FunctionName"] == json!({ "Ref": "CommandProcessorFunction" }))
        .expect("the processor's mapping");
    assert_eq!(mapping["MaximumRetryAttempts"], -1, "{mapping}");
    assert_eq!(mapping["MaximumRecordAgeInSeconds"], -1, "{mapping}");
    assert_eq!(
        mapping["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    let processor = &resource("CommandProcessorFunction")["Properties"];
    assert_eq!(
        processor["Environment"]["Variables"]["INVENTORY_PARK_FAILING_AFTER_SECONDS"],
        json!({ "Ref": "ParkFailingAfterSeconds" })
    );
    assert_eq!(
        parameter_default("ParkFailingAfterSeconds").as_i64(),
        Some(900)
    );
}

#[test]
fn parked_commands_are_indexed_as_the_store_reads_them_and_an_alarm_watches_their_count() {
    use inventory_core::aws::dynamo::PARKED_INDEX;
    use inventory_core::telemetry::PARKED_COMMANDS;

    let table = &resource("EventsTable")["Properties"];
    let index = list(&table["GlobalSecondaryIndexes"])
        .into_iter()
        .find(|index| index["IndexName"] == PARKED_INDEX)
        .expect("the parked-commands index");
    assert_eq!(
        index["KeySchema"],
        json!([
            { "AttributeName": "parked_list", "KeyType": "HASH" },
            { "AttributeName": "parked_at", "KeyType": "RANGE" }
        ])
    );
    assert_eq!(index["Projection"]["ProjectionType"], "ALL");
    let alarms: Vec<Value> = resources_of(translated(), "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(_, alarm)| alarm.clone())
        .filter(|alarm| {
            alarm["Properties"]["MetricName"] == PARKED_COMMANDS
                && alarm["Properties"]["Namespace"] == json!({ "Ref": "AWS::StackName" })
        })
        .collect();
    assert_eq!(alarms.len(), 1, "one parked-commands alarm");
    let alarm = &alarms[0]["Properties"];
    assert_eq!(
        watched(&alarms[0], "Function"),
        json!({ "Ref": "ExpiryTimerFunction" }),
        "the timer reports the count every minute"
    );
    assert_eq!(alarm["Threshold"], 0);
    assert_eq!(alarm["ComparisonOperator"], "GreaterThanThreshold");
    assert_eq!(alarm["Statistic"], "Maximum");
}

#[test]
fn the_snapshotter_alone_puts_the_notices_on_the_stacks_bus_and_an_alarm_watches_what_it_could_not()
{
    use inventory_core::cloud_events::BUS_SOURCE;
    use inventory_core::telemetry::NOTICES;

    let snapshotter = &resource("SnapshotterFunction")["Properties"];
    assert_eq!(
        snapshotter["Environment"]["Variables"]["INVENTORY_NOTICE_BUS"],
        json!({ "Fn::GetAtt": ["NoticeBus", "Name"] })
    );
    let bus_arn = json!({ "Fn::GetAtt": ["NoticeBus", "Arn"] });
    for (name, role) in resources_of(translated(), "AWS::IAM::Role") {
        let puts: Vec<Value> = list(&role["Properties"]["Policies"])
            .iter()
            .flat_map(|policy| list(&policy["PolicyDocument"]["Statement"]))
            .filter(|statement| list(&statement["Action"]).contains(&json!("events:PutEvents")))
            .collect();
        if name == "SnapshotterRole" {
            assert_eq!(puts.len(), 1, "{name}");
            assert_eq!(list(&puts[0]["Resource"]), vec![bus_arn.clone()], "{name}");
        } else {
            assert!(puts.is_empty(), "{name} may put events");
        }
    }

    let alarms: Vec<Value> = resources_of(translated(), "AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|(_, alarm)| {
            alarm["Properties"]["MetricName"] == NOTICES
                && alarm["Properties"]["Namespace"] == json!({ "Ref": "AWS::StackName" })
        })
        .map(|(_, alarm)| alarm.clone())
        .collect();
    assert_eq!(alarms.len(), 1, "one unpublished-notices alarm");
    assert_eq!(
        watched(&alarms[0], "Function"),
        json!({ "Ref": "SnapshotterFunction" })
    );
    assert_eq!(watched(&alarms[0], "outcome"), json!("unpublished"));

    // The example webhook: every notice's CloudEvent, retried for a day, then dead-lettered.
    let rule = &resource("WebhookRule");
    assert_eq!(rule["Condition"], "HasWebhook");
    let rule = &rule["Properties"];
    assert_eq!(
        rule["EventBusName"],
        json!({ "Fn::GetAtt": ["NoticeBus", "Name"] })
    );
    assert_eq!(rule["EventPattern"], json!({ "source": [BUS_SOURCE] }));
    let target = &list(&rule["Targets"])[0];
    assert_eq!(
        target["Arn"],
        json!({ "Fn::GetAtt": ["WebhookDestination", "Arn"] })
    );
    assert_eq!(target["InputPath"], "$.detail");
    assert_eq!(target["RetryPolicy"]["MaximumEventAgeInSeconds"], 86400);
    assert_eq!(
        target["DeadLetterConfig"]["Arn"],
        json!({ "Fn::GetAtt": ["WebhookDeadLetterQueue", "Arn"] })
    );
}

#[test]
fn the_snapshotters_mapping_takes_new_events_and_parked_outcomes_and_the_archivers_only_events() {
    let patterns = |function: &str| -> Vec<Value> {
        let mapping = resources_of(translated(), "AWS::Lambda::EventSourceMapping")
            .into_iter()
            .map(|(_, mapping)| &mapping["Properties"])
            .find(|p| p["FunctionName"] == json!({ "Ref": function }))
            .unwrap_or_else(|| panic!("{function}'s mapping"));
        list(&mapping["FilterCriteria"]["Filters"])
            .iter()
            .map(|filter| {
                serde_json::from_str(filter["Pattern"].as_str().expect("a pattern"))
                    .expect("a JSON pattern")
            })
            .collect()
    };
    let new_events = json!({ "eventName": ["INSERT"],
        "dynamodb": { "Keys": { "pk": { "S": [{ "prefix": "sku#" }] } } } });
    let parked = json!({ "eventName": ["INSERT", "MODIFY"],
        "dynamodb": { "NewImage": { "pk": { "S": [{ "prefix": "outcome#" }] },
                                    "parked_list": { "S": ["parked"] } } } });
    assert_eq!(patterns("SnapshotterFunction"), vec![new_events, parked]);
    assert!(!patterns("ArchiverFunction")
        .iter()
        .any(|pattern| pattern.to_string().contains("outcome#")));
}
