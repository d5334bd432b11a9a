//! The snapshotter Lambda: the events table's stream → each SKU's snapshot (the read view), and
//! the integration events on the notice bus.

use inventory_core::aws::feed::handle_stream_event;
use inventory_core::aws::{metrics_collector, sdk_config, snapshotter_on_aws, AwsSettings};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use metrics_cloudwatch_embedded::lambda::service::run;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = AwsSettings::from_env()?;
    let metrics = metrics_collector(&settings)?;
    let snapshotter = snapshotter_on_aws(&sdk_config().await?, &settings);
    let snapshotter = &snapshotter;
    run(
        metrics,
        service_fn(move |event: LambdaEvent<_>| async move {
            Ok::<_, Error>(handle_stream_event(snapshotter, event.payload).await)
        }),
    )
    .await
}
