//! The AWS adapters of the ports (feature `aws`): the event store on DynamoDB, the command
//! queue on Kinesis, the archive's object store on S3 and the notice board on EventBridge. They
//! pass the same conformance suite as the in-memory adapters.

pub mod dynamo;
pub mod eventbridge;
pub mod feed;
pub mod kinesis;
pub mod metrics;
pub mod s3;
#[cfg(feature = "test-util")]
pub mod test_aws;

pub use dynamo::{DynamoStore, PARTITION_KEY_PREFIXES};
pub use eventbridge::EventBridgeBoard;
pub use kinesis::KinesisQueue;
pub use metrics::RequestCounter;
pub use s3::S3Objects;
#[cfg(feature = "test-util")]
pub use test_aws::TestAws;

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{Credentials, Region};

use crate::config::ConfigError;

/// Environment variable naming a local AWS endpoint (moto) for the tests.
#[cfg(feature = "test-util")]
pub const TEST_ENDPOINT_VAR: &str = "INVENTORY_TEST_AWS_ENDPOINT";

/// Loads the AWS SDK configuration once per process: region and credentials from the
/// environment, as in Lambda.
/// Its calls are bounded by [`CallTimeouts::AWS`] as the environment overrides it; a
/// malformed override is an error naming the variable.
pub async fn sdk_config() -> Result<aws_config::SdkConfig, ConfigError> {
    let timeouts = CallTimeouts::from_lookup(CallTimeouts::AWS, |name| std::env::var(name).ok())?;
    Ok(aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts.config())
        .load()
        .await)
}

/// How long one AWS call may take, so that a call that hangs ends as an error (the API answers
/// 503 `unavailable`, the processor reports the SKU for redelivery) instead of running the
/// function into its own timeout. Generous against AWS's latencies (milliseconds); overridden
/// on AWS by `INVENTORY_AWS_ATTEMPT_TIMEOUT_MS` and `INVENTORY_AWS_CALL_TIMEOUT_MS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallTimeouts {
    /// One attempt of a call (the SDK retries an attempt that timed out).
    pub attempt: Duration,
    /// The whole call, its retries included: below the API function's 15 s timeout.
    pub call: Duration,
}

impl CallTimeouts {
    /// On AWS.
    pub const AWS: Self = Self {
        attempt: Duration::from_secs(4),
        call: Duration::from_secs(10),
    };
    /// At a local AWS (moto: one Python process, its DynamoDB serialised, which queues calls
    /// for seconds under a test suite's load).
    pub const LOCAL: Self = Self {
        attempt: Duration::from_secs(60),
        call: Duration::from_secs(120),
    };

    /// `default`, with what `lookup` (the environment) overrides: 100..=900,000 ms each.
    pub fn from_lookup(
        default: Self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let millis = |name| {
            Ok::<_, ConfigError>(
                crate::config::number(&lookup, name, 100..=900_000)?
                    .map(|ms| Duration::from_millis(ms.unsigned_abs())),
            )
        };
        Ok(Self {
            attempt: millis("INVENTORY_AWS_ATTEMPT_TIMEOUT_MS")?.unwrap_or(default.attempt),
            call: millis("INVENTORY_AWS_CALL_TIMEOUT_MS")?.unwrap_or(default.call),
        })
    }

    /// As the SDK takes them (a connection gets at most the attempt's time, and 3 s).
    pub fn config(self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.attempt.min(Duration::from_secs(3)))
            .operation_attempt_timeout(self.attempt)
            .operation_timeout(self.call)
            .build()
    }
}

/// SDK configuration for a local AWS such as moto at `endpoint_url`: the region and
/// credentials of the environment when set, else `us-east-1` and dummy credentials (moto
/// accepts any; the SDK refuses to sign without some).
pub async fn local_config(endpoint_url: &str) -> aws_config::SdkConfig {
    local_config_with(endpoint_url, CallTimeouts::LOCAL).await
}

/// [`local_config`] with the calls bounded by `timeouts`.
pub async fn local_config_with(
    endpoint_url: &str,
    timeouts: CallTimeouts,
) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint_url)
        .timeout_config(timeouts.config());
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none()
    {
        loader = loader.region(Region::new("us-east-1"));
    }
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        loader = loader.credentials_provider(Credentials::new("test", "test", None, None, "local"));
    }
    loader.load().await
}

/// The local AWS endpoint the tests run against (`./scripts/test` starts moto and sets it).
/// Panics with what to do when it is not set: an AWS test must not pass by not running.
#[cfg(feature = "test-util")]
pub fn test_endpoint() -> String {
    std::env::var(TEST_ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!(
            "{TEST_ENDPOINT_VAR} is not set: run ./scripts/test (it installs and starts moto), \
             or start moto yourself and set {TEST_ENDPOINT_VAR}=http://127.0.0.1:PORT"
        )
    })
}

/// Names of the deployed resources, from the environment the SAM template sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// The events table (`INVENTORY_TABLE`).
    pub table: String,
    /// The command stream (`INVENTORY_COMMAND_STREAM`).
    pub command_stream: String,
    /// The CloudWatch namespace of the metrics (`INVENTORY_METRICS_NAMESPACE`, default
    /// `inventory`; the template sets the stack's name).
    pub metrics_namespace: String,
    /// The EventBridge bus the snapshotter publishes the integration events on
    /// (`INVENTORY_NOTICE_BUS`; unset: none are published).
    pub notice_bus: Option<String>,
}

impl AwsSettings {
    /// Reads the names from the process environment; a missing one fails with its name.
    pub fn from_env() -> Result<Self, crate::config::ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the names through `lookup`.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, crate::config::ConfigError> {
        let required = |name: &'static str| {
            lookup(name)
                .filter(|value| !value.trim().is_empty())
                .ok_or_else(|| crate::config::ConfigError {
                    name,
                    reason: "it is required and not set".into(),
                })
        };
        let optional = |name: &'static str| lookup(name).filter(|value| !value.trim().is_empty());
        Ok(Self {
            table: required("INVENTORY_TABLE")?,
            command_stream: required("INVENTORY_COMMAND_STREAM")?,
            metrics_namespace: optional("INVENTORY_METRICS_NAMESPACE")
                .unwrap_or_else(|| "inventory".to_owned()),
            notice_bus: optional("INVENTORY_NOTICE_BUS"),
        })
    }
}

/// The metrics of a Lambda function ([`crate::telemetry`]), written as CloudWatch Embedded Metric
/// Format after each invocation by the runtime layer of `metrics_cloudwatch_embedded`: in the
/// settings' namespace, with the function's name (`AWS_LAMBDA_FUNCTION_NAME`) as a dimension,
/// and the invocation's request id as a property (so a metric leads to its logs).
pub fn metrics_collector(
    settings: &AwsSettings,
) -> Result<&'static metrics_cloudwatch_embedded::Collector, metrics_cloudwatch_embedded::Error> {
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into());
    metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(settings.metrics_namespace.clone())
        .with_dimension("Function", function)
        .lambda_cold_start_metric("cold_starts")
        .with_lambda_request_id("RequestId")
        .init()
}

/// The archive bucket (`INVENTORY_ARCHIVE_BUCKET`), for the functions that use it.
pub fn archive_bucket_from_env() -> Result<String, crate::config::ConfigError> {
    std::env::var("INVENTORY_ARCHIVE_BUCKET")
        .ok()
        .filter(|value| !value.trim().is_empty())
        .ok_or(crate::config::ConfigError {
            name: "INVENTORY_ARCHIVE_BUCKET",
            reason: "it is required and not set".into(),
        })
}

/// The archive on S3 `bucket`, for the functions that read it (the API's ledger).
pub fn archive_on_aws(sdk: &aws_config::SdkConfig, bucket: &str) -> crate::archive::Archive {
    crate::archive::Archive::new(std::sync::Arc::new(S3Objects::new(
        s3::s3_client(sdk),
        bucket,
    )))
}

/// The service on AWS: the DynamoDB event store, the Kinesis command queue, the system clock.
/// Clients are built once from one SDK configuration and shared by every invocation.
pub fn inventory_on_aws(
    sdk: &aws_config::SdkConfig,
    settings: &AwsSettings,
    config: crate::Config,
) -> crate::Inventory {
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &settings.table)
        .with_retention(&config);
    let queue = KinesisQueue::new(aws_sdk_kinesis::Client::new(sdk), &settings.command_stream);
    crate::Inventory::new(
        std::sync::Arc::new(store),
        std::sync::Arc::new(queue),
        std::sync::Arc::new(crate::ports::SystemClock),
        config,
    )
}

/// The event store the reactions use (the DynamoDB table), built once per process.
pub fn reactions_store(
    sdk: &aws_config::SdkConfig,
    settings: &AwsSettings,
) -> std::sync::Arc<dyn crate::ports::EventStore> {
    std::sync::Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(sdk),
        &settings.table,
    ))
}

/// The snapshotter on AWS: the DynamoDB table, and the EventBridge bus of the settings for
/// the integration events (none published without one).
pub fn snapshotter_on_aws(
    sdk: &aws_config::SdkConfig,
    settings: &AwsSettings,
) -> crate::reactions::Snapshotter {
    let snapshotter = crate::reactions::Snapshotter::new(reactions_store(sdk, settings));
    match &settings.notice_bus {
        Some(bus) => snapshotter.with_notices(std::sync::Arc::new(EventBridgeBoard::new(
            aws_sdk_eventbridge::Client::new(sdk),
            bus,
        ))),
        None => {
            tracing::warn!("INVENTORY_NOTICE_BUS is not set: no integration events are published");
            snapshotter
        }
    }
}

/// The archiver on AWS: the DynamoDB table, the S3 archive `bucket`, the system clock.
pub fn archiver_on_aws(
    sdk: &aws_config::SdkConfig,
    settings: &AwsSettings,
    bucket: &str,
    config: &crate::Config,
) -> crate::reactions::Archiver {
    crate::reactions::Archiver::new(
        reactions_store(sdk, settings),
        archive_on_aws(sdk, bucket),
        std::sync::Arc::new(crate::ports::SystemClock),
        config.live_retention,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_timeouts_default_to_aws_are_overridden_by_the_environment_and_refuse_a_malformed_value()
    {
        let none = |_: &str| None;
        assert_eq!(
            CallTimeouts::from_lookup(CallTimeouts::AWS, none),
            Ok(CallTimeouts::AWS)
        );
        assert!(
            CallTimeouts::AWS.call < Duration::from_secs(15),
            "below the API's timeout"
        );
        let set = |name: &str| (name == "INVENTORY_AWS_CALL_TIMEOUT_MS").then(|| "2500".to_owned());
        assert_eq!(
            CallTimeouts::from_lookup(CallTimeouts::AWS, set),
            Ok(CallTimeouts {
                attempt: CallTimeouts::AWS.attempt,
                call: Duration::from_millis(2_500),
            })
        );
        for raw in ["soon", "0", "-5", "900001"] {
            let bad =
                |name: &str| (name == "INVENTORY_AWS_ATTEMPT_TIMEOUT_MS").then(|| raw.to_owned());
            let err = CallTimeouts::from_lookup(CallTimeouts::AWS, bad).expect_err(raw);
            assert_eq!(err.name, "INVENTORY_AWS_ATTEMPT_TIMEOUT_MS");
        }
    }
}
