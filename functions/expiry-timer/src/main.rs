//! The expiry timer Lambda: a scheduled run a minute, sweeping the expiry index every 15 s.

use inventory_core::aws::{inventory_on_aws, metrics_collector, sdk_config, AwsSettings};
use inventory_core::Config;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use metrics_cloudwatch_embedded::lambda::service::run;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let settings = AwsSettings::from_env()?;
    let metrics = metrics_collector(&settings)?;
    let inventory = inventory_on_aws(&sdk_config().await?, &settings, config);
    let inventory = &inventory;
    run(metrics, service_fn(
        move |_: LambdaEvent<aws_lambda_events::event::cloudwatch_events::CloudWatchEvent>| async move {
            let report = inventory.run_expiry_timer().await?;
            Ok::<_, Error>(serde_json::to_value(report)?)
        },
    ))
    .await
}
