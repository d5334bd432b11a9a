//! The snapshotter's handler fed `events/snapshotter.json` (the event `sam local invoke -e`
//! uses) against DynamoDB on moto: a failed save names the record to resume from, a delivery
//! brings the snapshot to the head, a repeated delivery leaves it as it is, and items that are
//! not events are skipped; and every request the handler sends is one its role grants.

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use inventory_core::aws::feed::{delivered_from_lambda, handle_stream_event};
use inventory_core::aws::TestAws;
use inventory_core::domain::StreamId;
use inventory_core::domain::{Event, Sku, SkuState};
use inventory_core::feed::FeedChange;
use inventory_core::ports::{Snapshots, StreamAppend, Transaction, Transactions};
use inventory_core::reactions::Snapshotter;
use inventory_core::testing::FlakyStore;
use inventory_test_support::grants::{assert_granted_by, AccessLog, Names};

const EVENT: &str = include_str!("../../../events/snapshotter.json");

fn appended(event: &StreamEvent) -> Vec<Event> {
    event
        .records
        .iter()
        .filter_map(|record| match delivered_from_lambda(record).change {
            Some(FeedChange::Appended(event)) => Some(event),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_checked_in_stream_event_brings_the_snapshot_to_the_head_once() {
    let aws = TestAws::new().await;
    let names = Names {
        table: aws.name("snapshotter"),
        ..Names::default()
    };
    let log = AccessLog::default();
    let dynamo = aws.store(log.dynamodb(aws.config()), "snapshotter").await;
    let store = Arc::new(FlakyStore::new(Arc::new(dynamo)));
    let event: StreamEvent = serde_json::from_str(EVENT).expect("the checked-in event parses");
    let events = appended(&event);
    assert_eq!(events.len(), 2, "two event items, one record item");
    let sku = Sku::parse("SKU-1").unwrap();
    store
        .write(Transaction::appends(vec![StreamAppend {
            stream: StreamId::of(&sku),
            expected: 0,
            events: events.clone(),
        }]))
        .await
        .expect("the events the stream reports are in the table");
    let snapshotter = Snapshotter::new(store.clone());

    store.fail(&StreamId::of(&sku));
    log.take();
    let failed = handle_stream_event(&snapshotter, event.clone()).await;
    let mut sent = log.take();
    let first = event.records[0].change.sequence_number.clone();
    let named: Vec<_> = failed
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(named, vec![first], "resume from the SKU's first record");
    assert_eq!(
        store
            .read_snapshots(std::slice::from_ref(&StreamId::of(&sku)))
            .await,
        Ok(vec![None])
    );

    store.heal();
    let done = handle_stream_event(&snapshotter, event.clone()).await;
    sent.extend(log.take());
    assert!(done.batch_item_failures.is_empty());
    let expected = SkuState::from_events(&events);
    assert_eq!(
        store
            .read_snapshots(std::slice::from_ref(&StreamId::of(&sku)))
            .await,
        Ok(vec![Some(expected.clone())])
    );

    log.take();
    let again = handle_stream_event(&snapshotter, event).await;
    sent.extend(log.take());
    assert_granted_by("SnapshotterRole", &names, &sent);
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(
        store.read_snapshots(&[StreamId::of(&sku)]).await,
        Ok(vec![Some(expected)]),
        "a repeated delivery leaves the snapshot as it is"
    );
}
