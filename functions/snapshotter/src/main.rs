//! The snapshotter Lambda: the events table's stream → each SKU's snapshot (the read view).

use inventory_core::aws::stream::handle_stream_event;
use inventory_core::aws::{reactions_store, sdk_config, AwsSettings};
use inventory_core::reactions::Snapshotter;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let store = reactions_store(&sdk_config().await, &AwsSettings::from_env()?);
    let snapshotter = Snapshotter::new(store);
    let snapshotter = &snapshotter;
    run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(handle_stream_event(snapshotter, event.payload).await)
    }))
    .await
}
