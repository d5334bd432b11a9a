//! The command processor Lambda: Kinesis batches of commands → the event store.

use command_processor::handle_kinesis_event;
use inventory_core::aws::{inventory_on_aws, metrics_collector, sdk_config, AwsSettings};
use inventory_core::Config;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use metrics_cloudwatch_embedded::lambda::service::run;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = AwsSettings::from_env()?;
    let metrics = metrics_collector(&settings)?;
    let inventory = inventory_on_aws(&sdk_config().await?, &settings, Config::from_env()?);
    let inventory = &inventory;
    run(
        metrics,
        service_fn(move |event: LambdaEvent<_>| async move {
            let deadline = Some(event.context.deadline);
            Ok::<_, Error>(handle_kinesis_event(inventory, event.payload, deadline).await)
        }),
    )
    .await
}
