//! The reservations API Lambda: the axum router under `lambda_http` (API Gateway HTTP API),
//! its callers identified by the claims API Gateway's JWT authorizer verified.

use std::sync::Arc;

use inventory_core::aws::{inventory_on_aws, sdk_config, AwsSettings};
use inventory_core::Config;
use lambda_http::{run, tracing, Error};
use reservations_api::Authentication;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let inventory = inventory_on_aws(
        &sdk_config().await,
        &AwsSettings::from_env()?,
        Config::from_env()?,
    );
    run(reservations_api::router(
        Arc::new(inventory),
        Authentication::GatewayJwt,
    ))
    .await
}
