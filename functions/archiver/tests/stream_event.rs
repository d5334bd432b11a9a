//! The archiver's handler fed `events/archiver.json` (the event `sam local invoke -e` uses)
//! against DynamoDB and S3 on moto: the events reach the archive; nothing is retired before a
//! snapshot covers it; once one does, the events get a time to live; a deletion record of an
//! archived event changes nothing; a failure names the record to resume from; every request the
//! handler sends is one its role grants.

use std::sync::Arc;

use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use aws_sdk_dynamodb::types::AttributeValue;
use inventory_core::archive::Archive;
use inventory_core::aws::feed::{delivered_from_lambda, handle_stream_event};
use inventory_core::aws::TestAws;
use inventory_core::domain::StreamId;
use inventory_core::domain::{Event, Sku, SkuState};
use inventory_core::feed::FeedChange;
use inventory_core::ports::{Snapshots, StreamAppend, SystemClock, Transaction, Transactions};
use inventory_core::reactions::Archiver;
use inventory_core::testing::FlakyStore;
use inventory_test_support::grants::{assert_granted_by, AccessLog, Names};

const EVENT: &str = include_str!("../../../events/archiver.json");

async fn ttl_of(client: &aws_sdk_dynamodb::Client, table: &str, seq: u64) -> Option<String> {
    let item = client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S("sku#SKU-1".into()))
        .key("sk", AttributeValue::N(seq.to_string()))
        .send()
        .await
        .expect("get item")
        .item
        .expect("the event is there");
    item.get("ttl").and_then(|ttl| ttl.as_n().ok()).cloned()
}

#[tokio::test]
async fn the_checked_in_stream_event_archives_then_retires_once_a_snapshot_covers_it() {
    let aws = TestAws::new().await;
    let table = aws.name("archiver");
    let names = Names {
        table: table.clone(),
        bucket: Some(aws.name("archive")),
        ..Names::default()
    };
    let log = AccessLog::default();
    let client = aws.dynamodb();
    let dynamo = aws.store(log.dynamodb(aws.config()), "archiver").await;
    let objects = aws.objects(log.s3(aws.config()), "archive").await;
    let archive = Archive::new(Arc::new(objects));
    let store = Arc::new(FlakyStore::new(Arc::new(dynamo)));
    let archiver = Archiver::new(
        store.clone(),
        archive.clone(),
        Arc::new(SystemClock),
        Duration::from_secs(3_600),
    );

    let event: StreamEvent = serde_json::from_str(EVENT).expect("the checked-in event parses");
    let delivered: Vec<_> = event.records.iter().map(delivered_from_lambda).collect();
    let events: Vec<Event> = delivered
        .iter()
        .filter_map(|d| match &d.change {
            Some(FeedChange::Appended(event)) => Some(event.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), 2);
    assert!(
        delivered[2].change.is_none(),
        "the time-to-live update is not a change"
    );
    assert!(matches!(delivered[3].change, Some(FeedChange::Removed(_))));
    let sku = Sku::parse("SKU-1").unwrap();
    store
        .write(Transaction::appends(vec![StreamAppend {
            stream: StreamId::of(&sku),
            expected: 0,
            events: events.clone(),
        }]))
        .await
        .expect("the events the stream reports are in the table");

    store.fail(&StreamId::of(&sku));
    store
        .save_snapshot(&StreamId::of(&sku), &SkuState::from_events(&events))
        .await
        .expect_err("the flaky store refuses the failing SKU's writes");
    store.heal();
    log.take();
    let done = handle_stream_event(&archiver, event.clone()).await;
    let mut sent = log.take();
    assert!(done.batch_item_failures.is_empty(), "{done:?}");
    let archived = archive
        .read_sku(&StreamId::of(&sku))
        .await
        .expect("archive readable");
    assert_eq!(archived.events.into_values().collect::<Vec<_>>(), events);
    assert_eq!(
        ttl_of(&client, &table, 1).await,
        None,
        "no snapshot covers it yet"
    );

    store
        .save_snapshot(&StreamId::of(&sku), &SkuState::from_events(&events))
        .await
        .expect("snapshot");
    store.fail(&StreamId::of(&sku));
    log.take();
    let failed = handle_stream_event(&archiver, event.clone()).await;
    sent.extend(log.take());
    let first = event.records[0].change.sequence_number.clone();
    let named: Vec<_> = failed
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(
        named,
        vec![first],
        "a failed retirement resumes from the SKU's first record"
    );
    store.heal();
    let retired = handle_stream_event(&archiver, event).await;
    sent.extend(log.take());
    assert!(retired.batch_item_failures.is_empty());
    for seq in [1, 2] {
        assert!(
            ttl_of(&client, &table, seq).await.is_some(),
            "event {seq} is archived and covered: it gets a time to live"
        );
    }
    assert_granted_by("ArchiverRole", &names, &sent);
}
