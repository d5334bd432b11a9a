//! The memory store keeps the same contract as every other event store adapter.

use std::sync::Arc;

use inventory_core::conformance::check_event_store;
use inventory_core::memory::MemoryStore;

#[tokio::test]
async fn the_memory_store_keeps_the_event_store_contract() {
    let store = Arc::new(MemoryStore::new());
    check_event_store(store.clone(), store.as_ref(), "mem").await;
}
