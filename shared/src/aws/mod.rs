//! The AWS adapters of the ports (feature `aws`): the event store on DynamoDB and the command
//! queue on Kinesis. They pass the same conformance suite as the in-memory adapters.

pub mod dynamo;

pub use dynamo::DynamoStore;

use aws_sdk_dynamodb::config::{Credentials, Region};

/// Environment variable naming a local AWS endpoint (moto) for the tests.
pub const TEST_ENDPOINT_VAR: &str = "INVENTORY_TEST_AWS_ENDPOINT";

/// Loads the AWS SDK configuration once per process: region and credentials from the
/// environment, as in Lambda.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

/// SDK configuration for a local AWS such as moto at `endpoint_url`: the region and
/// credentials of the environment when set, else `us-east-1` and dummy credentials (moto
/// accepts any; the SDK refuses to sign without some).
pub async fn local_config(endpoint_url: &str) -> aws_config::SdkConfig {
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).endpoint_url(endpoint_url);
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
pub fn test_endpoint() -> String {
    std::env::var(TEST_ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!(
            "{TEST_ENDPOINT_VAR} is not set: run ./scripts/test (it installs and starts moto), \
             or start moto yourself and set {TEST_ENDPOINT_VAR}=http://127.0.0.1:PORT"
        )
    })
}
