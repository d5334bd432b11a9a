//! The AWS requests a function really sends, checked against its role. An [`AccessLog`] is an
//! SDK interceptor: clients built through it record every request as IAM authorizes it (the
//! action, the resource, and for DynamoDB the partition keys it touches, which
//! `dynamodb:LeadingKeys` conditions test, and the attributes an item request names, which
//! `dynamodb:Attributes` conditions test; a transaction counts as one action per item). Then
//! [`assert_granted_by`] finds, for each, a statement of the role in the translated template
//! that allows it.

use std::collections::BTreeSet;
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
    /// The attribute names a DynamoDB item request names (its key, a put's item, the attributes
    /// of its update, condition and projection expressions), as `dynamodb:Attributes` sees
    /// them; empty for other requests.
    pub attributes: Vec<String>,
    /// A DynamoDB item request's `ReturnValues`, if it sets one (`dynamodb:ReturnValues`).
    pub return_values: Option<String>,
    /// An S3 listing's `prefix`, if it sets one (`s3:prefix`).
    pub prefix: Option<String>,
}

impl Access {
    /// `action` on `target`, with no keys or attributes.
    fn on(action: impl Into<String>, target: Target) -> Self {
        Access {
            action: action.into(),
            target,
            leading_keys: Vec::new(),
            attributes: Vec::new(),
            return_values: None,
            prefix: None,
        }
    }
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
                vec![Access::on(
                    format!("kinesis:{operation}"),
                    Target::Stream(stream.to_owned()),
                )]
            }
            // PutEvents is authorized per entry, on the entry's bus.
            Some(("AWSEvents", operation)) => list(&body["Entries"])
                .iter()
                .map(|entry| {
                    let bus = entry["EventBusName"].as_str().unwrap_or("default");
                    Access::on(
                        format!("events:{operation}"),
                        Target::Bus(bus.rsplit('/').next().unwrap_or(bus).to_owned()),
                    )
                })
                .collect(),
            Some((service, operation)) => vec![Access::on(
                format!("{service}:{operation}"),
                Target::Stream(String::new()),
            )],
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

/// The attribute names an item request names, as `dynamodb:Attributes` sees them: its key's, a
/// put's item's, and those of its update, condition and projection expressions.
fn attributes_named(request: &Value) -> Vec<String> {
    let mut names = BTreeSet::new();
    for field in ["Key", "Item"] {
        names.extend(
            request[field]
                .as_object()
                .into_iter()
                .flat_map(|map| map.keys().cloned()),
        );
    }
    for field in [
        "UpdateExpression",
        "ConditionExpression",
        "ProjectionExpression",
    ] {
        if let Some(expression) = request[field].as_str() {
            names.extend(expression_attributes(
                expression,
                &request["ExpressionAttributeNames"],
            ));
        }
    }
    names.into_iter().collect()
}

/// The top-level attribute names of a DynamoDB expression: its names and `#placeholders`
/// (resolved by `placeholders`), not its `:values`, keywords, functions, numbers or the members
/// of a document path after its first name.
fn expression_attributes(expression: &str, placeholders: &Value) -> Vec<String> {
    const KEYWORDS: [&str; 9] = [
        "SET", "REMOVE", "ADD", "DELETE", "AND", "OR", "NOT", "BETWEEN", "IN",
    ];
    let word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '#' | ':');
    let mut names = Vec::new();
    let mut rest = expression;
    let mut after_dot = false;
    while let Some(start) = rest.find(|c: char| word(c) || c == '.') {
        if rest[start..].starts_with('.') {
            after_dot = true;
            rest = &rest[start + 1..];
            continue;
        }
        let end = rest[start..]
            .find(|c: char| !word(c))
            .map_or(rest.len(), |e| start + e);
        let token = &rest[start..end];
        rest = &rest[end..];
        let member = std::mem::take(&mut after_dot);
        let function = rest.trim_start().starts_with('(');
        if member
            || function
            || token.starts_with(':')
            || token.chars().all(|c| c.is_ascii_digit())
            || KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(token))
        {
            continue;
        }
        let name = placeholders[token].as_str().unwrap_or(token);
        names.push(name.to_owned());
    }
    names
}

fn dynamodb_accesses(operation: &str, body: &Value) -> Vec<Access> {
    let table = |value: &Value| value["TableName"].as_str().unwrap_or_default().to_owned();
    let on_table = |action: &str, table: String, leading_keys: Vec<String>| Access {
        leading_keys,
        ..Access::on(format!("dynamodb:{action}"), Target::Table(table))
    };
    let item_request = |action: &str, request: &Value, key: &Value| Access {
        attributes: attributes_named(request),
        return_values: request["ReturnValues"].as_str().map(str::to_owned),
        ..on_table(action, table(request), pk(key).into_iter().collect())
    };
    match operation {
        "GetItem" | "UpdateItem" | "DeleteItem" => {
            vec![item_request(operation, body, &body["Key"])]
        }
        "PutItem" => vec![item_request(operation, body, &body["Item"])],
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
                let key = if write["Item"].is_null() {
                    &write["Key"]
                } else {
                    &write["Item"]
                };
                Some(item_request(action, write, key))
            })
            .collect(),
        "Query" => match body["IndexName"].as_str() {
            Some(index) => vec![Access::on(
                "dynamodb:Query",
                Target::Index {
                    table: table(body),
                    index: index.to_owned(),
                },
            )],
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
    let prefix = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .unwrap_or_default()
        .into_iter()
        .find_map(|(name, value)| (name == "prefix").then_some(value));
    Access {
        prefix,
        ..Access::on(action, Target::Object { bucket, key })
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
                    (Some("ArchiveBucket"), Some("Arn")) => return "bucket/".into(),
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
        Some(condition) => condition_holds(condition, access),
    };
    action_named && resource_named && condition_holds
}

/// Whether every condition of a statement holds for `access`. Only the keys the template uses,
/// under the operators it uses them with, are known: any other makes the statement grant
/// nothing here (fail closed), so a condition this checker cannot judge is never taken as met.
fn condition_holds(condition: &Value, access: &Access) -> bool {
    let Some(operators) = condition.as_object() else {
        return false;
    };
    operators.iter().all(|(operator, keys)| {
        let Some(keys) = keys.as_object() else {
            return false;
        };
        keys.iter().all(|(key, values)| {
            let values = list(values);
            let values: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
            match (operator.as_str(), key.as_str()) {
                ("ForAllValues:StringLike", "dynamodb:LeadingKeys") => access
                    .leading_keys
                    .iter()
                    .all(|key| values.iter().any(|pattern| matches(pattern, key))),
                ("ForAllValues:StringEquals", "dynamodb:Attributes") => access
                    .attributes
                    .iter()
                    .all(|name| values.contains(&name.as_str())),
                ("StringEqualsIfExists", "dynamodb:ReturnValues") => access
                    .return_values
                    .as_deref()
                    .is_none_or(|returned| values.contains(&returned)),
                ("StringLike", "s3:prefix") => access
                    .prefix
                    .as_deref()
                    .is_some_and(|prefix| values.iter().any(|pattern| matches(pattern, prefix))),
                _ => false,
            }
        })
    })
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
            leading_keys: vec![pk.into()],
            ..Access::on("dynamodb:PutItem", Target::Table("events".into()))
        }
    }

    #[test]
    fn a_listing_is_granted_only_under_the_prefixes_its_condition_names() {
        let statement = json!({
            "Effect": "Allow", "Action": "s3:ListBucket",
            "Resource": { "Fn::GetAtt": ["ArchiveBucket", "Arn"] },
            "Condition": { "StringLike": { "s3:prefix": ["events/*"] } }
        });
        let list = |uri: &str| s3_access("GET", uri);
        let events = list("http://127.0.0.1:5000/archive?list-type=2&prefix=events%2Fsku%3DA%2F");
        assert_eq!(events.prefix.as_deref(), Some("events/sku=A/"));
        assert!(grants(&statement, &events, &names()));
        let days = list("http://127.0.0.1:5000/archive?list-type=2&prefix=days%2F");
        assert!(!grants(&statement, &days, &names()));
        let everything = list("http://127.0.0.1:5000/archive?list-type=2");
        assert!(
            !grants(&statement, &everything, &names()),
            "no prefix: not granted"
        );
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

    #[test]
    fn an_update_is_granted_only_for_the_attributes_and_return_values_its_statement_lists() {
        let statement = json!({
            "Effect": "Allow",
            "Action": "dynamodb:UpdateItem",
            "Resource": { "Fn::GetAtt": ["EventsTable", "Arn"] },
            "Condition": {
                "ForAllValues:StringLike": { "dynamodb:LeadingKeys": ["sku#*"] },
                "ForAllValues:StringEquals": { "dynamodb:Attributes": ["pk", "sk", "ttl"] },
                "StringEqualsIfExists": { "dynamodb:ReturnValues": "NONE" }
            }
        });
        let update = |expression: &str, returns: Option<&str>| {
            let mut request = json!({ "TableName": "events",
                "Key": { "pk": { "S": "sku#A" }, "sk": { "N": "7" } },
                "UpdateExpression": expression,
                "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeNames": { "#ttl": "ttl", "#q": "quantity" },
                "ExpressionAttributeValues": { ":ttl": { "N": "1" } } });
            if let Some(returns) = returns {
                request["ReturnValues"] = json!(returns);
            }
            dynamodb_accesses("UpdateItem", &request).remove(0)
        };
        let retirement = update("SET #ttl = :ttl", None);
        assert_eq!(retirement.attributes, ["pk", "sk", "ttl"]);
        assert!(grants(&statement, &retirement, &names()));
        assert!(grants(
            &statement,
            &update("SET #ttl = :ttl", Some("NONE")),
            &names()
        ));
        assert!(!grants(
            &statement,
            &update("SET #ttl = :ttl", Some("ALL_OLD")),
            &names()
        ));
        assert!(!grants(
            &statement,
            &update("SET #ttl = :ttl, #q = :ttl", None),
            &names()
        ));
        assert!(!grants(
            &statement,
            &update("SET version = :ttl", None),
            &names()
        ));
        // Transactions: each update is authorized as its UpdateItem, with the same attributes.
        let transaction = json!({ "TransactItems": [{ "Update": { "TableName": "events",
            "Key": { "pk": { "S": "sku#A" }, "sk": { "N": "7" } },
            "UpdateExpression": "SET #ttl = :ttl", "ConditionExpression": "attribute_exists(pk)",
            "ExpressionAttributeNames": { "#ttl": "ttl" } } }] });
        let accesses = dynamodb_accesses("TransactWriteItems", &transaction);
        assert_eq!(accesses[0].attributes, ["pk", "sk", "ttl"]);
        assert!(grants(&statement, &accesses[0], &names()));
        assert_eq!(
            expression_attributes(
                "SET a.b[0] = if_not_exists(c, :zero) + :one REMOVE #d AND size(e) > 3",
                &json!({ "#d": "dd" })
            ),
            ["a", "c", "dd", "e"]
        );
    }
}
