//! The archiver Lambda: the events table's stream → the S3 archive, then retirement of
//! archived events from the table.

use inventory_core::aws::feed::handle_stream_event;
use inventory_core::aws::{archiver_on_aws, metrics_collector, sdk_config, AwsSettings};
use inventory_core::Config;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use metrics_cloudwatch_embedded::lambda::service::run;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = AwsSettings::from_env()?;
    let metrics = metrics_collector(&settings)?;
    let archiver = archiver_on_aws(
        &sdk_config().await?,
        &settings,
        &inventory_core::aws::archive_bucket_from_env()?,
        &Config::from_env()?,
    );
    let archiver = &archiver;
    run(
        metrics,
        service_fn(move |event: LambdaEvent<_>| async move {
            Ok::<_, Error>(handle_stream_event(archiver, event.payload).await)
        }),
    )
    .await
}
