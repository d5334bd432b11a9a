//! The DynamoDB event store keeps the same contract as the memory store, through the real AWS
//! SDK against moto.
#![cfg(feature = "aws")]

use std::sync::Arc;

use inventory_core::aws::{local_config, test_endpoint, DynamoStore};
use inventory_core::conformance::check_event_store;

#[tokio::test]
async fn the_dynamodb_store_keeps_the_event_store_contract() {
    let config = local_config(&test_endpoint()).await;
    let table = format!("conformance-{}", uuid::Uuid::new_v4().simple());
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), table);
    store
        .create_table_if_missing()
        .await
        .expect("table created");
    store
        .create_table_if_missing()
        .await
        .expect("creating it again is harmless");
    check_event_store(Arc::new(store), "ddb").await;
}
