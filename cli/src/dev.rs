//! `inventory dev`: the service in one process. The API listens on 127.0.0.1; commands go to an
//! in-memory queue that a processor task drains in batches as soon as they arrive, redelivering
//! from the first failed position like the Kinesis event source mapping does.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use inventory_core::memory::{MemoryQueue, MemoryStore};
use inventory_core::ports::SystemClock;
use inventory_core::{Config, Inventory};

/// Options of `inventory dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Port to listen on, on 127.0.0.1 (0 picks a free one and prints it).
    #[arg(long, default_value_t = 3000, env = "INVENTORY_PORT")]
    pub port: u16,
}

/// Most commands applied in one batch.
const BATCH_SIZE: usize = 100;

/// Serves until interrupted.
pub async fn run(args: DevArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new());
    let inventory = Arc::new(Inventory::new(
        store,
        queue.clone(),
        Arc::new(SystemClock),
        config,
    ));
    tokio::spawn(drain_queue(Arc::clone(&inventory), queue));

    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, args.port))).await?;
    let address = listener.local_addr()?;
    println!("inventory dev listening on http://{address}");
    tracing::info!(%address, "embedded backend: in-memory store and queue");
    axum::serve(listener, reservations_api::router(inventory))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
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
