//! `inventory dev`: the service in one process. The API listens on 127.0.0.1; commands go to an
//! in-memory queue that a processor task drains in batches as soon as they arrive, redelivering
//! from the first failed position like the Kinesis event source mapping does.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use inventory_core::aws::{local_config, DynamoStore, KinesisQueue};
use inventory_core::memory::{MemoryQueue, MemoryStore};
use inventory_core::ports::SystemClock;
use inventory_core::{Config, Inventory};

/// Options of `inventory dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Port to listen on, on 127.0.0.1 (0 picks a free one and prints it).
    #[arg(long, default_value_t = 3000, env = "INVENTORY_PORT")]
    pub port: u16,

    /// Use DynamoDB and Kinesis at this endpoint (a local AWS such as moto) instead of the
    /// embedded backend; the table and stream are created if missing.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// The table and stream, with --endpoint-url.
    #[command(flatten)]
    pub names: ResourceNames,
}

/// Names of the table and stream at a local AWS.
#[derive(Debug, clap::Args)]
pub struct ResourceNames {
    /// The events table.
    #[arg(long, default_value = "inventory-events", env = "INVENTORY_TABLE")]
    pub table: String,

    /// The command stream.
    #[arg(
        long,
        default_value = "inventory-commands",
        env = "INVENTORY_COMMAND_STREAM"
    )]
    pub stream: String,
}

/// Options of `inventory init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The local AWS endpoint (moto), e.g. http://127.0.0.1:5000.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: String,

    #[command(flatten)]
    pub names: ResourceNames,
}

/// Creates the table and stream if missing.
pub async fn init(args: InitArgs) -> Result<(), Box<dyn std::error::Error>> {
    let sdk = local_config(&args.endpoint_url).await;
    DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &args.names.table)
        .create_table_if_missing()
        .await?;
    KinesisQueue::new(aws_sdk_kinesis::Client::new(&sdk), &args.names.stream)
        .create_stream_if_missing()
        .await?;
    println!(
        "table {} and stream {} are ready at {}",
        args.names.table, args.names.stream, args.endpoint_url
    );
    Ok(())
}

/// Most commands applied in one batch.
const BATCH_SIZE: usize = 100;

/// Serves until interrupted.
pub async fn run(args: DevArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    let inventory = match &args.endpoint_url {
        None => embedded(config),
        Some(url) => on_local_aws(url, &args.names.table, &args.names.stream, config).await?,
    };

    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, args.port))).await?;
    let address = listener.local_addr()?;
    println!("inventory dev listening on http://{address}");
    match &args.endpoint_url {
        None => tracing::info!(%address, "embedded backend: in-memory store and queue"),
        Some(url) => tracing::info!(%address, endpoint = %url, table = %args.names.table,
            stream = %args.names.stream, "DynamoDB and Kinesis backend"),
    }
    axum::serve(listener, reservations_api::router(inventory))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// The embedded backend: memory store and queue, the processor draining the queue in-process.
fn embedded(config: Config) -> Arc<Inventory> {
    let queue = Arc::new(MemoryQueue::new());
    let inventory = Arc::new(Inventory::new(
        Arc::new(MemoryStore::new()),
        queue.clone(),
        Arc::new(SystemClock),
        config,
    ));
    tokio::spawn(drain_queue(Arc::clone(&inventory), queue));
    inventory
}

/// DynamoDB and Kinesis at `url`: the table and stream are created if missing, and the stream
/// is polled in-process to drive the processor, as the event source mapping does in AWS.
async fn on_local_aws(
    url: &str,
    table: &str,
    stream: &str,
    config: Config,
) -> Result<Arc<Inventory>, Box<dyn std::error::Error>> {
    let sdk = local_config(url).await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    store.create_table_if_missing().await?;
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    let queue = KinesisQueue::new(kinesis.clone(), stream);
    queue.create_stream_if_missing().await?;
    let inventory = Arc::new(Inventory::new(
        Arc::new(store),
        Arc::new(queue),
        Arc::new(SystemClock),
        config,
    ));
    tokio::spawn(crate::kinesis_poller::poll_stream(
        Arc::clone(&inventory),
        kinesis,
        stream.to_owned(),
    ));
    Ok(inventory)
}

/// The in-process command processor: applies batches as they arrive, forever.
async fn drain_queue(inventory: Arc<Inventory>, queue: Arc<MemoryQueue>) {
    loop {
        let batch = queue.receive(BATCH_SIZE).await;
        let outcome = command_processor::process_batch(&inventory, &batch).await;
        if let Some(position) = outcome.retry_from {
            queue.redeliver(batch[position..].to_vec());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
