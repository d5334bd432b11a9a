//! The reservations API Lambda: the axum router under `lambda_http` (API Gateway HTTP API),
//! its callers identified by the claims API Gateway's JWT authorizer verified; the S3 archive
//! read for the ledger's oldest versions.

use std::sync::Arc;

use inventory_core::aws::{
    archive_bucket_from_env, archive_on_aws, inventory_on_aws, metrics_collector, sdk_config,
    AwsSettings,
};
use inventory_core::Config;
use lambda_http::{tracing, Error};
use metrics_cloudwatch_embedded::lambda::service::run_http;
use reservations_api::Authentication;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let settings = AwsSettings::from_env()?;
    let metrics = metrics_collector(&settings)?;
    let sdk = sdk_config().await?;
    // The archive holds what the table no longer keeps of an item's ledger.
    let archive = archive_on_aws(&sdk, &archive_bucket_from_env()?);
    let inventory = inventory_on_aws(&sdk, &settings, Config::from_env()?).with_archive(archive);
    let router = reservations_api::router(Arc::new(inventory), Authentication::GatewayJwt);
    run_http(metrics, router).await
}
