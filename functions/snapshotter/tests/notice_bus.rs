//! The snapshotter's handler on moto, publishing on an EventBridge bus: a rule of the bus sends
//! the service's entries to an SQS queue, and the test reads the queue as a consumer would. The
//! stream records are the checked-in `events/snapshotter.json`'s, carrying the events the test
//! wrote. A batch whose snapshot save fails is delivered again: its notices arrive again with
//! the same ids, none is lost, and per item the versions go up; every request the handler sends
//! is one its role grants.

use inventory_core::domain::Annotation;
use inventory_core::domain::StreamId;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_sdk_eventbridge::types::Target;
use aws_sdk_sqs::types::QueueAttributeName;
use inventory_core::aws::feed::handle_stream_event;
use inventory_core::aws::{EventBridgeBoard, TestAws};
use inventory_core::cloud_events::{BUS_SOURCE, TYPE_PREFIX};
use inventory_core::domain::Timestamp;
use inventory_core::domain::{Change, CommandId, Event, Quantity, ReservationId, Sku, SkuState};
use inventory_core::ports::{Snapshots, StreamAppend, Transaction, Transactions};
use inventory_core::reactions::Snapshotter;
use inventory_core::testing::FlakyStore;
use inventory_test_support::grants::{assert_granted_by, AccessLog, Names};
use serde_json::Value;

const EVENT: &str = include_str!("../../../events/snapshotter.json");

/// Appends `changes` to `sku`'s stream, a second apart; returns the events written.
async fn append(store: &dyn Transactions, sku: &Sku, changes: Vec<Change>) -> Vec<Event> {
    append_to(store, &StreamId::of(sku), changes).await
}

/// Appends `changes` to a new `stream` as [`append`] does.
async fn append_to(
    store: &dyn Transactions,
    stream: &StreamId,
    changes: Vec<Change>,
) -> Vec<Event> {
    let mut state = SkuState::default();
    let mut written = Vec::new();
    for change in changes {
        let at = Timestamp::from_millis(1_796_000_000_000 + state.version as i64 * 1_000);
        let append = StreamAppend::after(&state, stream, at, vec![change]);
        let event = append.events[0].clone();
        store
            .write(Transaction::appends(vec![append]))
            .await
            .expect("the events are written");
        state.evolve(&event);
        written.push(event);
    }
    written
}

fn received(units: i64) -> Change {
    Change::StockReceived {
        command_id: CommandId::random(),
        quantity: Quantity::new(units).unwrap(),
        why: Annotation::received(None),
    }
}

fn held(sku: &Sku, seq: u64) -> Change {
    let expires_at = Timestamp::from_millis(1_796_000_000_000).plus_seconds(900);
    Change::HoldPlaced {
        reservation_id: ReservationId::new(StreamId::of(sku), seq, seq),
        quantity: Quantity::new(1).unwrap(),
        expires_at,
        release_at: expires_at,
        lines: Vec::new(),
        owner: None,
    }
}

/// The checked-in stream event, its records replaced by one INSERT per event (in order), each
/// shaped as the checked-in first record with the event's item as its new image.
fn stream_event_of(events: &[Event]) -> StreamEvent {
    let mut event: StreamEvent = serde_json::from_str(EVENT).expect("the checked-in event parses");
    let shape: EventRecord = event.records[0].clone();
    event.records = events
        .iter()
        .enumerate()
        .map(|(i, appended)| {
            let mut record = shape.clone();
            let mut image: serde_dynamo::Item =
                serde_dynamo::to_item(appended).expect("an event is an item");
            let pk = serde_dynamo::AttributeValue::S(format!("sku#{}", appended.stream));
            let sk = serde_dynamo::AttributeValue::N(appended.seq.to_string());
            image.insert("pk".into(), pk.clone());
            image.insert("sk".into(), sk.clone());
            record.change.keys = [("pk".to_owned(), pk), ("sk".to_owned(), sk)]
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>()
                .into();
            record.change.new_image = image;
            record.change.sequence_number = Some(format!("{:030}", 100 + i));
            record
        })
        .collect();
    event
}

/// A queue that the bus's rule for the service's entries sends to; returns its URL.
async fn queue_behind(aws: &TestAws, bus: &str) -> String {
    let sqs = aws_sdk_sqs::Client::new(aws.config());
    let url = sqs
        .create_queue()
        .queue_name(aws.name("notices"))
        .send()
        .await
        .expect("the queue is created")
        .queue_url
        .expect("a queue URL");
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("the queue's attributes")
        .attributes
        .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn).cloned())
        .expect("the queue's ARN");
    let events = aws_sdk_eventbridge::Client::new(aws.config());
    let rule = aws.name("notices");
    events
        .put_rule()
        .name(&rule)
        .event_bus_name(bus)
        .event_pattern(serde_json::json!({ "source": [BUS_SOURCE] }).to_string())
        .send()
        .await
        .expect("the rule is put");
    events
        .put_targets()
        .rule(&rule)
        .event_bus_name(bus)
        .targets(Target::builder().id("queue").arn(arn).build().unwrap())
        .send()
        .await
        .expect("the queue is the rule's target");
    url
}

/// The CloudEvents that reached the queue, until `count` did (or 10 s passed).
async fn cloud_events_in(aws: &TestAws, url: &str, count: usize) -> Vec<Value> {
    let sqs = aws_sdk_sqs::Client::new(aws.config());
    let started = Instant::now();
    let mut received = Vec::new();
    while received.len() < count && started.elapsed() < Duration::from_secs(10) {
        let answer = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("the queue is read");
        for message in answer.messages() {
            let entry: Value =
                serde_json::from_str(message.body().unwrap_or_default()).expect("JSON entries");
            assert_eq!(entry["source"], BUS_SOURCE, "{entry}");
            assert_eq!(entry["detail-type"], entry["detail"]["type"], "{entry}");
            received.push(entry["detail"].clone());
        }
        if answer.messages().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    received
}

#[tokio::test]
async fn a_redelivered_batch_puts_its_notices_again_with_the_same_ids_and_loses_none() {
    let aws = TestAws::new().await;
    let log = AccessLog::default();
    let dynamo = aws.store(log.dynamodb(aws.config()), "notices").await;
    let store = Arc::new(FlakyStore::new(Arc::new(dynamo)));
    let bus = aws.name("notices");
    let board = EventBridgeBoard::new(log.eventbridge(aws.config()), &bus);
    board.create_bus_if_missing().await.expect("the bus");
    let queue = queue_behind(&aws, &bus).await;

    let sold_out = Sku::parse("NOTICE-1").unwrap();
    let stocked = Sku::parse("NOTICE-2").unwrap();
    let mut events = append(
        store.as_ref(),
        &sold_out,
        vec![received(2), held(&sold_out, 2), held(&sold_out, 3)],
    )
    .await;
    events.extend(append(store.as_ref(), &stocked, vec![received(5)]).await);
    let batch = stream_event_of(&events);
    let snapshotter = Snapshotter::new(store.clone()).with_notices(Arc::new(board));

    // The first delivery publishes every notice, then one snapshot cannot be saved.
    store.fail(&StreamId::of(&sold_out));
    log.take();
    let first = handle_stream_event(&snapshotter, batch.clone()).await;
    let named: Vec<_> = first
        .batch_item_failures
        .iter()
        .map(|failure| failure.item_identifier.clone())
        .collect();
    assert_eq!(
        named,
        vec![batch.records[0].change.sequence_number.clone()],
        "delivered again from the failed item's first record"
    );
    // The stream delivers the batch again from there.
    store.heal();
    let again = handle_stream_event(&snapshotter, batch).await;
    assert!(again.batch_item_failures.is_empty());
    let sent = log.take();

    let expected: BTreeSet<String> = [
        "NOTICE-1:1:back_in_stock",
        "NOTICE-1:3:out_of_stock",
        "NOTICE-1:3:stock_changed",
        "NOTICE-2:1:back_in_stock",
        "NOTICE-2:1:stock_changed",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    // NOTICE-1's three are put twice, NOTICE-2's two once: its snapshot was saved the first
    // time, so the redelivery tells nothing of it.
    let told = cloud_events_in(&aws, &queue, 3 * 2 + 2).await;
    let ids: Vec<String> = told
        .iter()
        .map(|event| event["id"].as_str().expect("an id").to_owned())
        .collect();
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique, expected, "every notice, none lost: {ids:?}");
    assert_eq!(ids.len(), 8, "the repeats repeat their ids: {ids:?}");

    let mut versions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for event in &told {
        assert!(
            event["type"]
                .as_str()
                .is_some_and(|kind| kind.starts_with(TYPE_PREFIX)),
            "{event}"
        );
        assert_eq!(event["specversion"], "1.0");
        let id = event["id"].as_str().unwrap();
        let subject = event["subject"].as_str().unwrap();
        let version = event["data"]["version"].as_u64().unwrap();
        assert!(id.starts_with(&format!("{subject}:{version}:")), "{event}");
        versions
            .entry(subject.to_owned())
            .or_default()
            .push(version);
    }
    let mut first_seen: Vec<u64> = Vec::new();
    for version in &versions["NOTICE-1"] {
        if !first_seen.contains(version) {
            first_seen.push(*version);
        }
    }
    assert!(
        first_seen.windows(2).all(|pair| pair[0] < pair[1]),
        "NOTICE-1's notices arrive in version order: {versions:?}"
    );

    let names = Names {
        table: aws.name("notices"),
        bus: Some(bus),
        ..Names::default()
    };
    assert_granted_by("SnapshotterRole", &names, &sent);
}

#[tokio::test]
async fn an_item_kept_at_two_locations_is_told_per_location_and_out_of_stock_as_a_whole_once() {
    let aws = TestAws::new().await;
    let log = AccessLog::default();
    let store = Arc::new(aws.store(log.dynamodb(aws.config()), "whole").await);
    let bus = aws.name("whole");
    let board = EventBridgeBoard::new(log.eventbridge(aws.config()), &bus);
    board.create_bus_if_missing().await.expect("the bus");
    let queue = queue_behind(&aws, &bus).await;
    let sku = Sku::parse("MULTI-1").unwrap();
    let store_5 = inventory_core::domain::LocationId::parse("store-5").unwrap();
    // One unit at each location; then each sells out, the default location last.
    let mut events = append(
        store.as_ref(),
        &sku,
        vec![
            received(1),
            Change::StockedAt {
                location: store_5.clone(),
            },
            held(&sku, 3),
        ],
    )
    .await;
    let at_store = StreamId::at(&sku, &store_5);
    events.extend(append_to(store.as_ref(), &at_store, vec![received(1), held(&sku, 2)]).await);
    let snapshotter = Snapshotter::new(store.clone()).with_notices(Arc::new(board));
    log.take();
    let answer = handle_stream_event(&snapshotter, stream_event_of(&events)).await;
    assert!(answer.batch_item_failures.is_empty());
    let sent = log.take();
    let told = cloud_events_in(&aws, &queue, 7).await;
    let ids: BTreeSet<String> = told
        .iter()
        .map(|event| event["id"].as_str().expect("an id").to_owned())
        .collect();
    let expected: BTreeSet<String> = [
        "MULTI-1:1:back_in_stock",
        "MULTI-1:3:out_of_stock_at_location",
        "MULTI-1:3:stock_changed",
        "MULTI-1:store-5:1:back_in_stock_at_location",
        "MULTI-1:store-5:2:out_of_stock_at_location",
        "MULTI-1:store-5:2:stock_changed",
        "MULTI-1:3:out_of_stock",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(ids, expected);
    let whole = told
        .iter()
        .find(|event| event["id"] == "MULTI-1:3:out_of_stock")
        .expect("told as a whole");
    assert_eq!(whole["subject"], "MULTI-1");
    assert_eq!(
        whole["data"]["stock"],
        serde_json::json!({ "available": 0, "version": 3 })
    );
    let names = Names {
        table: aws.name("whole"),
        bus: Some(bus),
        ..Names::default()
    };
    assert_granted_by("SnapshotterRole", &names, &sent);
}

#[tokio::test]
async fn notices_the_bus_refuses_leave_the_snapshot_where_it_was_for_the_batch_to_come_again() {
    let aws = TestAws::new().await;
    let store = Arc::new(aws.store(aws.dynamodb(), "unpublished").await);
    let missing = EventBridgeBoard::new(
        aws_sdk_eventbridge::Client::new(aws.config()),
        aws.name("no-such-bus"),
    );
    let sku = Sku::parse("NOTICE-3").unwrap();
    let events = append(store.as_ref(), &sku, vec![received(1)]).await;
    let batch = stream_event_of(&events);
    let snapshotter = Snapshotter::new(store.clone()).with_notices(Arc::new(missing));

    let answer = handle_stream_event(&snapshotter, batch.clone()).await;
    assert_eq!(
        answer
            .batch_item_failures
            .iter()
            .map(|failure| failure.item_identifier.clone())
            .collect::<Vec<_>>(),
        vec![batch.records[0].change.sequence_number.clone()]
    );
    assert_eq!(
        store
            .read_snapshots(std::slice::from_ref(&StreamId::of(&sku)))
            .await,
        Ok(vec![None]),
        "no snapshot covers events whose notices were not put"
    );
}

#[tokio::test]
async fn a_command_parked_on_the_table_is_told_on_the_bus_from_its_stream_record() {
    use inventory_core::ports::{
        CommandOutcome, ParkReason, ParkedCommand, Record, RecordKey, RecordWrite,
    };

    let aws = TestAws::new().await;
    let store = Arc::new(aws.store(aws.dynamodb(), "parked").await);
    let bus = aws.name("parked");
    let board = EventBridgeBoard::new(aws_sdk_eventbridge::Client::new(aws.config()), &bus);
    board.create_bus_if_missing().await.expect("the bus");
    let queue = queue_behind(&aws, &bus).await;

    let sku = Sku::parse("NOTICE-4").unwrap();
    let command_id = CommandId::random();
    store
        .write(Transaction::records(vec![RecordWrite {
            key: RecordKey::CommandOutcome {
                command_id,
                sku: sku.clone(),
            },
            expected: None,
            record: Record::CommandOutcome(CommandOutcome::Parked(ParkedCommand {
                reason: ParkReason::DependencyUnreadable,
                detail: "reservation NOTICE-4~1~0 unreadable".to_owned(),
                parked_at: Timestamp::from_millis(1_796_000_000_000),
                body: String::new(),
                redriven_at: None,
            })),
        }]))
        .await
        .expect("the parked outcome is written");
    // The stream record carries the item as the table holds it.
    let item = aws
        .dynamodb()
        .get_item()
        .table_name(store.table())
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("outcome#{command_id}#{sku}")),
        )
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::N("0".into()))
        .send()
        .await
        .expect("the item is read")
        .item
        .expect("the parked outcome's item");
    let mut event: StreamEvent = serde_json::from_str(EVENT).expect("the checked-in event parses");
    let mut record = event.records[0].clone();
    record.change.new_image = serde_dynamo::Item::from(item);
    record.change.keys = serde_dynamo::Item::default();
    event.records = vec![record];

    let snapshotter = Snapshotter::new(store.clone()).with_notices(Arc::new(board));
    let answer = handle_stream_event(&snapshotter, event).await;
    assert!(answer.batch_item_failures.is_empty());

    let told = cloud_events_in(&aws, &queue, 1).await;
    assert_eq!(told.len(), 1, "{told:?}");
    let parked = &told[0];
    assert_eq!(parked["type"], format!("{TYPE_PREFIX}command_parked"));
    assert_eq!(parked["subject"], "NOTICE-4");
    assert_eq!(parked["data"]["command_id"], command_id.to_string());
    assert_eq!(parked["data"]["reason"], "dependency_unreadable");
    assert!(parked["data"].get("version").is_none(), "{parked}");
    assert_eq!(
        parked["id"],
        format!("NOTICE-4:{command_id}:1796000000000:command_parked")
    );
}
