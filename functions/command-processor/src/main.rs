//! The command processor Lambda: Kinesis batches of commands → the event store.

use command_processor::handle_kinesis_event;
use inventory_core::aws::{inventory_on_aws, sdk_config, AwsSettings};
use inventory_core::Config;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let inventory = inventory_on_aws(
        &sdk_config().await,
        &AwsSettings::from_env()?,
        Config::from_env()?,
    );
    let inventory = &inventory;
    run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(handle_kinesis_event(inventory, event.payload).await)
    }))
    .await
}
