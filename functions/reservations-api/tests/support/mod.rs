//! What the API's test files share: the event store they run on (memory, or DynamoDB on moto)
//! and applying queued commands the way the command processor does.

use std::sync::Arc;

use inventory_core::aws::TestAws;
use inventory_core::domain::{Command, Sku};
use inventory_core::memory::{MemoryQueue, MemoryStore};
use inventory_core::ports::EventStore;
use inventory_core::Inventory;

/// Set to `dynamodb` to run every test on the DynamoDB event store at the moto of
/// `INVENTORY_TEST_AWS_ENDPOINT` (one table per test) instead of the memory store:
/// `./scripts/test` runs the HTTP and access tests both ways.
pub const BACKEND_VAR: &str = "INVENTORY_HTTP_TESTS_BACKEND";

/// The event store the tests run on.
pub async fn event_store() -> Arc<dyn EventStore> {
    match std::env::var(BACKEND_VAR).as_deref() {
        Ok("dynamodb") => {
            let aws = TestAws::new().await;
            Arc::new(aws.store(aws.dynamodb(), "http").await)
        }
        Ok("memory") | Err(_) => Arc::new(MemoryStore::new()),
        Ok(other) => panic!("{BACKEND_VAR}={other:?}: use memory or dynamodb"),
    }
}

/// Applies everything queued, per SKU in arrival order, as the command processor does.
/// Returns how many queued commands were taken.
pub async fn apply_queued(inventory: &Inventory, queue: &MemoryQueue) -> usize {
    let mut taken = 0;
    loop {
        let batch = queue.try_receive(1000);
        if batch.is_empty() {
            return taken;
        }
        taken += batch.len();
        let mut by_sku: Vec<(Sku, Vec<Command>)> = Vec::new();
        for command in batch {
            match by_sku.iter_mut().find(|(sku, _)| *sku == command.sku) {
                Some((_, commands)) => commands.push(command),
                None => by_sku.push((command.sku.clone(), vec![command])),
            }
        }
        for (sku, commands) in &by_sku {
            inventory
                .apply_commands(sku, commands)
                .await
                .expect("commands apply");
        }
    }
}
