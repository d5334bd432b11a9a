//! The AWS requests a function really sends, checked against its role. An [`AccessLog`] is an
//! SDK interceptor: clients built through it record every request as IAM authorizes it (the
//! action, the resource, and for DynamoDB the partition keys it touches, which
//! `dynamodb:LeadingKeys` conditions test; a transaction counts as one action per item). Then
//! [`assert_granted_by`] finds, for each, a statement of the role in the translated template
//! that allows it.

use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use serde_json::Value;

use crate::template::{list, statements, translated};

/// What a request acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A DynamoDB table, by name.
    Table(String),
    /// A DynamoDB table's index.
    Index {
        /// The table.
        table: String,
        /// The index.
        index: String,
    },
    /// A Kinesis stream, by name.
    Stream(String),
    /// An EventBridge bus, by name.
    Bus(String),
    /// An S3 object (or, with an empty key, the bucket).
    Object {
        /// The bucket.
        bucket: String,
        /// The object key.
        key: String,
    },
}

/// One request as IAM authorizes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// `service:Action`, e.g. `dynamodb:PutItem`.
    pub action: String,
    /// What it acted on.
    pub target: Target,
    /// The partition keys it touched (DynamoDB items on a table).
    pub leading_keys: Vec<String>,
}

/// The names the test gave the template's resources.
#[derive(Debug, Clone, Default)]
pub struct Names {
    /// `EventsTable`.
    pub table: String,
    /// `CommandStream`.
    pub stream: Option<String>,
    /// `ArchiveBucket`.
    pub bucket: Option<String>,
    /// `NoticeBus`.
    pub bus: Option<String>,
}

/// Records what clients built through it send. Clones share the record.
#[derive(Debug, Clone, Default)]
pub struct AccessLog(Arc<Mutex<Vec<Access>>>);

impl AccessLog {
    /// A DynamoDB client like `sdk`'s whose requests are recorded here.
    pub fn dynamodb(&self, sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::config::Builder::from(sdk)
            .interceptor(self.clone())
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// A Kinesis client like `sdk`'s whose requests are recorded here.
    pub fn kinesis(&self, sdk: &aws_config::SdkConfig) -> aws_sdk_kinesis::Client {
        let config = aws_sdk_kinesis::config::Builder::from(sdk)
            .interceptor(self.clone())
            .build();
        aws_sdk_kinesis::Client::from_conf(config)
    }

    /// An EventBridge client like `sdk`'s whose requests are recorded here.
    pub fn eventbridge(&self, sdk: &aws_config::SdkConfig) -> aws_sdk_eventbridge::Client {
        let config = aws_sdk_eventbridge::config::Builder::from(sdk)
            .interceptor(self.clone())
            .build();
        aws_sdk_eventbridge::Client::from_conf(config)
    }

    /// An S3 client like `sdk`'s (path-style, as a local endpoint needs) recorded here.
    pub fn s3(&self, sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .interceptor(self.clone())
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// What was recorded since the last take, forgetting it: the test's own set-up is not
    /// what the function sends.
    pub fn take(&self) -> Vec<Access> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Asserts that `accesses` is not empty and that the template's `role` grants every one.
#[track_caller]
pub fn assert_granted_by(role: &str, names: &Names, accesses: &[Access]) {
    assert!(!accesses.is_empty(), "nothing was recorded");
    let statements = statements(translated(), role);
    let refused: Vec<&Access> = accesses
        .iter()
        .filter(|access| !statements.iter().any(|s| grants(s, access, names)))
        .collect();
    assert!(
        refused.is_empty(),
        "{role} does not grant what its function sent:\n{}",
        refused
            .iter()
            .map(|access| format!("  {access:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

impl Intercept for AccessLog {
    fn name(&self) -> &'static str {
        "AccessLog"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _config: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let target = request.headers().get("x-amz-target").map(str::to_owned);
        let body: Value = request
            .body()
            .bytes()
            .and_then(|bytes| serde_json::from_slice(bytes).ok())
            .unwrap_or(Value::Null);
        let accesses = match target.as_deref().and_then(|t| t.split_once('.')) {
            Some((service, operation)) if service.starts_with("DynamoDB") => {
                dynamodb_accesses(operation, &body)
            }
            Some((service, operation)) if service.starts_with("Kinesis") => {
                let stream = body["StreamName"]
                    .as_str()
                    .or_else(|| body["StreamARN"].as_str()?.rsplit('/').next())
                    .unwrap_or_default();
                vec![Access {
                    action: format!("kinesis:{operation}"),
                    target: Target::Stream(stream.to_owned()),
                    leading_keys: Vec::new(),
                }]
            }
            // PutEvents is authorized per entry, on the entry's bus.
            Some(("AWSEvents", operation)) => list(&body["Entries"])
                .iter()
                .map(|entry| {
                    let bus = entry["EventBusName"].as_str().unwrap_or("default");
                    Access {
                        action: format!("events:{operation}"),
                        target: Target::Bus(bus.rsplit('/').next().unwrap_or(bus).to_owned()),
                        leading_keys: Vec::new(),
                    }
                })
                .collect(),
            Some((service, operation)) => vec![Access {
                action: format!("{service}:{operation}"),
                target: Target::Stream(String::new()),
                leading_keys: Vec::new(),
            }],
            None => vec![s3_access(request.method(), request.uri())],
        };
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(accesses);
        Ok(())
    }
}

fn pk(key: &Value) -> Option<String> {
    key["pk"]["S"].as_str().map(str::to_owned)
}

fn dynamodb_accesses(operation: &str, body: &Value) -> Vec<Access> {
    let table = |value: &Value| value["TableName"].as_str().unwrap_or_default().to_owned();
    let on_table = |action: &str, table: String, leading_keys: Vec<String>| Access {
        action: format!("dynamodb:{action}"),
        target: Target::Table(table),
        leading_keys,
    };
    match operation {
        "GetItem" | "UpdateItem" | "DeleteItem" => {
            vec![on_table(
                operation,
                table(body),
                pk(&body["Key"]).into_iter().collect(),
            )]
        }
        "PutItem" => vec![on_table(
            operation,
            table(body),
            pk(&body["Item"]).into_iter().collect(),
        )],
        "BatchGetItem" => body["RequestItems"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, request)| {
                let keys = list(&request["Keys"]).iter().filter_map(pk).collect();
                on_table(operation, name.clone(), keys)
            })
            .collect(),
        "TransactWriteItems" => list(&body["TransactItems"])
            .iter()
            .filter_map(|item| {
                let (kind, write) = item.as_object()?.iter().next()?;
                let action = match kind.as_str() {
                    "Put" => "PutItem",
                    "Update" => "UpdateItem",
                    "Delete" => "DeleteItem",
                    "ConditionCheck" => "ConditionCheckItem",
                    other => other,
                };
                let key = pk(&write["Item"]).or_else(|| pk(&write["Key"]));
                Some(on_table(action, table(write), key.into_iter().collect()))
            })
            .collect(),
        "Query" => match body["IndexName"].as_str() {
            Some(index) => vec![Access {
                action: "dynamodb:Query".into(),
                target: Target::Index {
                    table: table(body),
                    index: index.to_owned(),
                },
                leading_keys: Vec::new(),
            }],
            None => vec![on_table(operation, table(body), query_partition_key(body))],
        },
        other => vec![on_table(other, table(body), Vec::new())],
    }
}

/// The value a table query compares the partition key `pk` with.
fn query_partition_key(body: &Value) -> Vec<String> {
    let condition = body["KeyConditionExpression"].as_str().unwrap_or_default();
    let names = &body["ExpressionAttributeNames"];
    condition
        .split(" AND ")
        .filter_map(|part| {
            let (name, value) = part.split_once('=')?;
            let name = name.trim();
            let resolved = names[name].as_str().unwrap_or(name);
            (resolved == "pk")
                .then(|| body["ExpressionAttributeValues"][value.trim()]["S"].as_str())?
        })
        .map(str::to_owned)
        .collect()
}

fn s3_access(method: &str, uri: &str) -> Access {
    let path = uri.split_once("://").map_or(uri, |(_, rest)| {
        rest.find('/').map_or("", |slash| &rest[slash..])
    });
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let bucket = parts.next().unwrap_or_default().to_owned();
    let key = parts.next().unwrap_or_default().to_owned();
    let action = match (method, key.is_empty()) {
        ("PUT", false) => "s3:PutObject",
        ("GET", false) | ("HEAD", false) => "s3:GetObject",
        ("DELETE", false) => "s3:DeleteObject",
        ("GET", true) if query.contains("list-type") => "s3:ListBucket",
        _ => "s3:Other",
    };
    Access {
        action: action.to_owned(),
        target: Target::Object { bucket, key },
        leading_keys: Vec::new(),
    }
}

/// What a statement's resource stands for, in the terms [`resource_of`] gives an access.
fn statement_resource(resource: &Value) -> String {
    match resource {
        Value::String(text) => text.clone(),
        Value::Object(map) => {
            if let Some(att) = map.get("Fn::GetAtt") {
                match (att[0].as_str(), att[1].as_str()) {
                    (Some("EventsTable"), Some("Arn")) => return "table".into(),
                    (Some("CommandStream"), Some("Arn")) => return "kinesis".into(),
                    (Some("NoticeBus"), Some("Arn")) => return "bus".into(),
                    _ => {}
                }
            }
            if let Some(Value::String(sub)) = map.get("Fn::Sub") {
                if let Some(rest) = sub.strip_prefix("${EventsTable.Arn}/") {
                    return format!("table/{rest}");
                }
                if let Some(rest) = sub.strip_prefix("${ArchiveBucket.Arn}/") {
                    return format!("bucket/{rest}");
                }
            }
            format!("other:{resource}")
        }
        other => format!("other:{other}"),
    }
}

fn resource_of(target: &Target, names: &Names) -> String {
    match target {
        Target::Table(table) if *table == names.table => "table".into(),
        Target::Index { table, index } if *table == names.table => format!("table/index/{index}"),
        Target::Stream(stream) if Some(stream) == names.stream.as_ref() => "kinesis".into(),
        Target::Bus(bus) if Some(bus) == names.bus.as_ref() => "bus".into(),
        Target::Object { bucket, key } if Some(bucket) == names.bucket.as_ref() => {
            format!("bucket/{key}")
        }
        other => format!("unknown:{other:?}"),
    }
}

fn matches(pattern: &str, text: &str) -> bool {
    pattern == "*"
        || pattern == text
        || pattern
            .strip_suffix('*')
            .is_some_and(|prefix| !prefix.contains('*') && text.starts_with(prefix))
}

fn grants(statement: &Value, access: &Access, names: &Names) -> bool {
    if statement["Effect"] != "Allow" {
        return false;
    }
    let action_named = list(&statement["Action"])
        .iter()
        .filter_map(Value::as_str)
        .any(|action| action.eq_ignore_ascii_case(&access.action));
    let resource = resource_of(&access.target, names);
    let resource_named = list(&statement["Resource"])
        .iter()
        .any(|r| matches(&statement_resource(r), &resource));
    let condition_holds = match statement.get("Condition") {
        None => true,
        Some(condition) => {
            let only_leading_keys = condition.as_object().is_some_and(|c| {
                c.len() == 1
                    && c["ForAllValues:StringLike"]
                        .as_object()
                        .is_some_and(|keys| {
                            keys.len() == 1 && keys.contains_key("dynamodb:LeadingKeys")
                        })
            });
            let patterns = list(&condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]);
            only_leading_keys
                && access.leading_keys.iter().all(|key| {
                    patterns
                        .iter()
                        .filter_map(Value::as_str)
                        .any(|pattern| matches(pattern, key))
                })
        }
    };
    action_named && resource_named && condition_holds
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names() -> Names {
        Names {
            table: "events".into(),
            stream: Some("commands".into()),
            bucket: Some("archive".into()),
            bus: Some("notices".into()),
        }
    }

    fn put(pk: &str) -> Access {
        Access {
            action: "dynamodb:PutItem".into(),
            target: Target::Table("events".into()),
            leading_keys: vec![pk.into()],
        }
    }

    #[test]
    fn a_statement_grants_an_access_only_for_its_actions_resources_and_key_prefixes() {
        let statement = json!({
            "Effect": "Allow",
            "Action": ["dynamodb:PutItem"],
            "Resource": { "Fn::GetAtt": ["EventsTable", "Arn"] },
            "Condition": { "ForAllValues:StringLike": { "dynamodb:LeadingKeys": ["snap#*"] } }
        });
        assert!(grants(&statement, &put("snap#SKU-1"), &names()));
        assert!(!grants(&statement, &put("sku#SKU-1"), &names()));
        let mut other_table = put("snap#SKU-1");
        other_table.target = Target::Table("someone-elses".into());
        assert!(!grants(&statement, &other_table, &names()));
        let mut update = put("snap#SKU-1");
        update.action = "dynamodb:UpdateItem".into();
        assert!(!grants(&statement, &update, &names()));
    }

    #[test]
    fn requests_are_read_as_iam_sees_them() {
        let transaction = json!({ "TransactItems": [
            { "Put": { "TableName": "events", "Item": { "pk": { "S": "sku#A" } } } },
            { "Update": { "TableName": "events", "Key": { "pk": { "S": "hold#x" } } } }
        ]});
        let accesses = dynamodb_accesses("TransactWriteItems", &transaction);
        assert_eq!(
            accesses
                .iter()
                .map(|a| a.action.as_str())
                .collect::<Vec<_>>(),
            ["dynamodb:PutItem", "dynamodb:UpdateItem"]
        );
        let query = json!({ "TableName": "events", "KeyConditionExpression": "pk = :pk AND sk > :after",
            "ExpressionAttributeValues": { ":pk": { "S": "sku#A" }, ":after": { "N": "0" } } });
        assert_eq!(
            dynamodb_accesses("Query", &query)[0].leading_keys,
            ["sku#A"]
        );
        let object = s3_access(
            "PUT",
            "http://127.0.0.1:5000/archive/events/sku=A/x.jsonl.gz?x-id=PutObject",
        );
        assert_eq!(
            (
                object.action.as_str(),
                resource_of(&object.target, &names())
            ),
            ("s3:PutObject", "bucket/events/sku=A/x.jsonl.gz".to_owned())
        );
    }
}
