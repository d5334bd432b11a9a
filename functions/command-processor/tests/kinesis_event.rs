//! The processor Lambda's handler fed `events/command-processor.json` (the event `sam local
//! invoke -e` uses) against DynamoDB and Kinesis on moto: duplicates, a poison record, a
//! malformed command and a transient failure end with each good command applied exactly once and
//! the unreadable records parked; a command failing past the bound is parked so the shard moves
//! on, and a redrive through the stream applies it once. Every request the handler sends is one
//! its role in the template grants.

use std::sync::Arc;

use base64::Engine as _;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use command_processor::handle_kinesis_event;
use inventory_core::app::{RedriveSelection, Redriven};
use inventory_core::aws::{DynamoStore, TestAws};
use inventory_core::domain::StreamId;
use inventory_core::domain::{Change, CommandId, RejectionCode, Sku, Timestamp};
use inventory_core::ports::{Clock, ManualClock, ParkReason, Streams};
use inventory_core::testing::FlakyStore;
use inventory_core::{Config, Inventory};
use inventory_test_support::grants::{assert_granted_by, Access, AccessLog, Names};
use inventory_test_support::kinesis::stream_records;

const EVENT: &str = include_str!("../../../events/command-processor.json");

/// When the checked-in event's records arrived on the stream.
const ARRIVED_AT: i64 = 1_763_700_000_123;

struct World {
    inventory: Inventory,
    store: Arc<FlakyStore<DynamoStore>>,
    clock: ManualClock,
    kinesis: aws_sdk_kinesis::Client,
    stream: String,
    log: AccessLog,
    names: Names,
}

impl World {
    /// Handles `event` as the Lambda does, recording what the handler sends.
    async fn handle(&self, event: KinesisEvent, sent: &mut Vec<Access>) -> KinesisEventResponse {
        self.log.take();
        let response = handle_kinesis_event(&self.inventory, event, None).await;
        sent.extend(self.log.take());
        response
    }
}

async fn world() -> World {
    let aws = TestAws::new().await;
    let log = AccessLog::default();
    let names = Names {
        table: aws.name("events"),
        ..Names::default()
    };
    let dynamo = aws.store(log.dynamodb(aws.config()), "events").await;
    let kinesis = aws.kinesis();
    let queue = aws.queue(kinesis.clone(), "commands").await;
    let stream = queue.stream().to_owned();
    let store = Arc::new(FlakyStore::new(Arc::new(dynamo)));
    // A minute after the records arrived.
    let clock = ManualClock::new(Timestamp::from_millis(ARRIVED_AT + 60_000));
    let inventory = Inventory::new(
        store.clone(),
        Arc::new(queue),
        Arc::new(clock.clone()),
        Config::default(),
    );
    World {
        inventory,
        store,
        clock,
        kinesis,
        stream,
        log,
        names,
    }
}

fn sku(name: &str) -> Sku {
    Sku::parse(name).unwrap()
}

fn id(n: u32) -> CommandId {
    CommandId::parse(&format!("0b9f4a4e-8d8a-4f43-9a55-2a4c1f0c{n:04}")).unwrap()
}

async fn changes(world: &World, name: &str) -> Vec<Change> {
    let events = world
        .store
        .inner()
        .read_stream(&StreamId::of(&sku(name)), 0)
        .await
        .unwrap();
    events.into_iter().map(|e| e.change).collect()
}

#[tokio::test]
async fn a_batch_with_duplicates_a_poison_record_and_a_transient_failure_applies_each_good_command_once(
) {
    let world = world().await;
    let event: KinesisEvent = serde_json::from_str(EVENT).expect("the checked-in event parses");
    assert_eq!(event.records.len(), 7);

    // SKU-B is throttled: its first record (position 2) is where Lambda must resume.
    world.store.fail(&StreamId::of(&sku("SKU-B")));
    let mut sent = Vec::new();
    let first = world.handle(event.clone(), &mut sent).await;
    let resume_at = event.records[2].kinesis.sequence_number.clone();
    let failures: Vec<_> = first
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failures, vec![Some(resume_at.clone())]);
    assert!(
        changes(&world, "SKU-B").await.is_empty(),
        "nothing of SKU-B half-applied"
    );

    // Lambda redelivers from the failed sequence number on; the records after it that were
    // already applied are duplicates now.
    world.store.heal();
    let mut retry = event.clone();
    retry
        .records
        .retain(|r| r.kinesis.sequence_number >= resume_at);
    let second = world.handle(retry, &mut sent).await;
    assert!(
        second.batch_item_failures.is_empty(),
        "{:?}",
        second.batch_item_failures
    );

    let a = changes(&world, "SKU-A").await;
    assert_eq!(a.len(), 2, "{a:#?}");
    assert!(a
        .iter()
        .any(|c| matches!(c, Change::StockReceived { command_id, .. } if *command_id == id(1))));
    let parked = world.inventory.parked_commands().await.unwrap();
    let filed: Vec<(CommandId, String, ParkReason)> = parked
        .iter()
        .map(|e| (e.command_id, e.sku.to_string(), e.parked.reason))
        .collect();
    assert!(
        filed.contains(&(id(3), "SKU-A".into(), ParkReason::UnknownShape)),
        "the malformed command, filed under the id and SKU it names: {filed:?}"
    );
    assert!(
        filed.contains(&(
            CommandId::for_record(b"not a command at all"),
            event.records[3].kinesis.partition_key.clone(),
            ParkReason::UnknownShape
        )),
        "the record that names nothing, under its partition key: {filed:?}"
    );
    assert_eq!(parked.len(), 2);
    assert!(a
        .iter()
        .any(|c| matches!(c, Change::StockAdjusted { delta: -5, .. })));
    let b = changes(&world, "SKU-B").await;
    assert_eq!(b.len(), 2, "{b:#?}");
    assert!(matches!(
        b[1],
        Change::CommandRejected {
            reason: RejectionCode::OnHandWouldGoNegative,
            ..
        }
    ));

    assert_eq!(
        world.inventory.item(&sku("SKU-A")).await.unwrap().on_hand,
        95
    );
    assert_eq!(
        world.inventory.item(&sku("SKU-B")).await.unwrap().on_hand,
        20
    );

    // The whole batch delivered once more (at-least-once) changes nothing.
    let third = world.handle(event, &mut sent).await;
    assert!(third.batch_item_failures.is_empty());
    assert_eq!(changes(&world, "SKU-A").await.len(), 2);
    assert_eq!(changes(&world, "SKU-B").await.len(), 2);
    assert_eq!(world.inventory.parked_commands().await.unwrap().len(), 2);
    assert_granted_by("CommandProcessorRole", &world.names, &sent);
}

#[tokio::test]
async fn a_command_failing_past_the_bound_is_parked_so_the_shard_moves_on_and_a_redrive_applies_it_once(
) {
    let world = world().await;
    let event: KinesisEvent = serde_json::from_str(EVENT).expect("the checked-in event parses");
    // The receipt of 20 units of SKU-B, its SKU failing on every attempt.
    let mut poison = event.clone();
    poison.records = vec![event.records[2].clone()];
    world.store.fail(&StreamId::of(&sku("SKU-B")));
    let mut sent = Vec::new();
    let answer = world.handle(poison.clone(), &mut sent).await;
    assert_eq!(
        answer.batch_item_failures.len(),
        1,
        "delivered again while young"
    );
    assert!(world.inventory.parked_commands().await.unwrap().is_empty());

    world.clock.advance_millis(16 * 60_000);
    let answer = world.handle(poison.clone(), &mut sent).await;
    assert!(
        answer.batch_item_failures.is_empty(),
        "past the bound it is parked and the shard moves on"
    );
    let parked = world.inventory.parked_commands().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].command_id, id(2));
    assert_eq!(parked[0].parked.reason, ParkReason::Failing);
    assert!(
        parked[0].parked.detail.contains("throttled"),
        "{:?}",
        parked[0].parked.detail
    );
    // The operator fixes the cause and redrives: the command comes back through the stream.
    world.store.heal();
    let redriven = world
        .inventory
        .redrive(&RedriveSelection::All)
        .await
        .unwrap();
    assert_eq!(redriven, vec![(id(2), sku("SKU-B"), Redriven::Queued)]);
    let again = world
        .inventory
        .redrive(&RedriveSelection::All)
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "a redrive can be repeated");
    let delivered = read_stream(&world).await;
    assert_eq!(delivered.records.len(), 2);
    let answer = world.handle(delivered.clone(), &mut sent).await;
    assert!(answer.batch_item_failures.is_empty());
    let answer = world.handle(poison, &mut sent).await;
    assert!(
        answer.batch_item_failures.is_empty(),
        "the original, late: a duplicate"
    );
    assert_eq!(
        world.inventory.item(&sku("SKU-B")).await.unwrap().on_hand,
        20,
        "applied once"
    );
    assert!(world.inventory.parked_commands().await.unwrap().is_empty());
    assert_granted_by("CommandProcessorRole", &world.names, &sent);
}

/// Every record on the test's command stream, as a Lambda event.
async fn read_stream(world: &World) -> KinesisEvent {
    let records: Vec<serde_json::Value> = stream_records(&world.kinesis, &world.stream)
        .await
        .iter()
        .map(|record| {
            serde_json::json!({
                "eventSource": "aws:kinesis",
                "eventID": format!("shardId-000000000000:{}", record.sequence_number()),
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/commands",
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": record.partition_key(),
                    "sequenceNumber": record.sequence_number(),
                    "data": base64::engine::general_purpose::STANDARD.encode(record.data().as_ref()),
                    "approximateArrivalTimestamp": world.clock.now().millis() as f64 / 1000.0
                }
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
}

#[tokio::test]
async fn a_checkout_whose_reservation_never_appears_is_parked_after_its_wait_and_a_redrive_changes_nothing(
) {
    let world = world().await;
    let template: KinesisEvent = serde_json::from_str(EVENT).expect("the checked-in event parses");
    let unseen = inventory_core::domain::ReservationId::new(StreamId::of(&sku("SKU-C")), 7, 42);
    let checkout = serde_json::json!({
        "id": id(6).to_string(),
        "sku": "SKU-C",
        "accepted_at": ARRIVED_AT + 50_000,
        "type": "commit_hold",
        "reservation_id": unseen.to_string(),
    });
    let mut event = template.clone();
    let mut record = template.records[2].clone();
    record.kinesis.partition_key = "SKU-C".into();
    record.kinesis.data.0 = serde_json::to_vec(&checkout).unwrap();
    event.records = vec![record];
    let mut sent = Vec::new();

    // Within its wait it is deferred (and nudged onto the stream); the shard moves on.
    let answer = world.handle(event.clone(), &mut sent).await;
    assert!(answer.batch_item_failures.is_empty());
    assert!(world.inventory.parked_commands().await.unwrap().is_empty());
    let nudges = read_stream(&world).await;
    assert_eq!(nudges.records.len(), 1, "nudged back onto the stream");

    world.clock.advance_millis(30_000);
    let answer = world.handle(nudges, &mut sent).await;
    assert!(answer.batch_item_failures.is_empty());
    let parked = world.inventory.parked_commands().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].command_id, id(6));
    assert_eq!(parked[0].parked.reason, ParkReason::DependencyUnreadable);
    let status = world
        .inventory
        .command(id(6), &inventory_core::domain::Caller::local_admin())
        .await;
    assert!(
        matches!(status, Err(inventory_core::AppError::CommandNotFound)),
        "a queued command the API never recorded has no status: {status:?}"
    );

    // A redrive puts it back once; its reservation still cannot be read, so it parks again,
    // having changed nothing.
    let redriven = world
        .inventory
        .redrive(&RedriveSelection::All)
        .await
        .unwrap();
    assert_eq!(redriven, vec![(id(6), sku("SKU-C"), Redriven::Queued)]);
    let mut delivered = read_stream(&world).await;
    delivered.records.remove(0);
    assert_eq!(delivered.records.len(), 1, "the redriven copy");
    let answer = world.handle(delivered, &mut sent).await;
    assert!(answer.batch_item_failures.is_empty());
    let parked = world.inventory.parked_commands().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].parked.redriven_at, None, "parked again");
    assert!(changes(&world, "SKU-C").await.is_empty(), "nothing applied");
    assert_granted_by("CommandProcessorRole", &world.names, &sent);
}

/// The checked-in event's first records, each carrying one of `commands` instead (partition
/// key: its SKU).
fn event_of(commands: &[serde_json::Value]) -> KinesisEvent {
    let mut event: KinesisEvent = serde_json::from_str(EVENT).expect("the checked-in event parses");
    assert!(commands.len() <= event.records.len());
    event.records.truncate(commands.len());
    for (record, command) in event.records.iter_mut().zip(commands) {
        record.kinesis.partition_key = command["sku"].as_str().unwrap().to_owned();
        record.kinesis.data.0 = serde_json::to_vec(command).unwrap();
    }
    event
}

fn command(n: u32, sku: &str, body: serde_json::Value) -> serde_json::Value {
    let mut command = serde_json::json!({
        "id": id(n).to_string(),
        "sku": sku,
        "accepted_at": ARRIVED_AT - 1_000,
    });
    command
        .as_object_mut()
        .unwrap()
        .extend(body.as_object().unwrap().clone());
    command
}

#[tokio::test]
async fn a_sku_whose_commands_panic_is_parked_with_the_fault_and_every_other_sku_applies() {
    let world = world().await;
    let event: KinesisEvent = serde_json::from_str(EVENT).expect("the checked-in event parses");
    world.store.panic_on(&StreamId::of(&sku("SKU-B")));
    let mut sent = Vec::new();
    let answer = world.handle(event.clone(), &mut sent).await;
    assert!(
        answer.batch_item_failures.is_empty(),
        "one SKU's fault never fails the batch: {:?}",
        answer.batch_item_failures
    );
    assert_eq!(changes(&world, "SKU-A").await.len(), 2, "SKU-A applied");
    let parked = world.inventory.parked_commands().await.unwrap();
    let faulted: Vec<_> = parked
        .iter()
        .filter(|entry| entry.parked.reason == ParkReason::Faulted)
        .collect();
    assert_eq!(
        faulted.iter().map(|e| e.command_id).collect::<Vec<_>>(),
        vec![id(2), id(5)]
    );
    assert!(faulted
        .iter()
        .all(|e| e.sku == sku("SKU-B") && e.parked.detail.contains("panicked")));
    // Fixed, redriven through the stream: SKU-B's commands apply once.
    world.store.heal();
    world
        .inventory
        .redrive(&RedriveSelection::All)
        .await
        .unwrap();
    let delivered = read_stream(&world).await;
    let answer = world.handle(delivered, &mut sent).await;
    assert!(answer.batch_item_failures.is_empty());
    assert_eq!(changes(&world, "SKU-B").await.len(), 2);
    assert_granted_by("CommandProcessorRole", &world.names, &sent);
}

#[tokio::test]
async fn moves_of_any_size_and_adjustments_of_a_billion_apply_on_a_split_item() {
    let world = world().await;
    let receipt = serde_json::json!({"type": "receive_stock", "quantity": 1_000_000});
    let event = event_of(&[
        command(1, "SKU-HOT", receipt.clone()),
        command(2, "SKU-HOT", receipt.clone()),
        command(3, "SKU-HOT", receipt),
        command(
            4,
            "SKU-HOT",
            serde_json::json!({"type": "set_buckets", "count": 2}),
        ),
        command(
            5,
            "SKU-HOT",
            serde_json::json!({"type": "adjust_stock", "delta": 1_000_000_000, "reason": "count"}),
        ),
        command(
            6,
            "SKU-HOT",
            serde_json::json!({"type": "adjust_stock", "delta": -999_000_000, "reason": "count"}),
        ),
        command(
            7,
            "SKU-COLD",
            serde_json::json!({"type": "receive_stock", "quantity": 5}),
        ),
    ]);
    let mut sent = Vec::new();
    let answer = world.handle(event, &mut sent).await;
    assert!(answer.batch_item_failures.is_empty());
    assert!(world.inventory.parked_commands().await.unwrap().is_empty());
    let hot = world
        .inventory
        .item_with_buckets(&sku("SKU-HOT"))
        .await
        .unwrap();
    assert_eq!((hot.on_hand, hot.available), (4_000_000, 4_000_000));
    let moved: i64 = changes(&world, "SKU-HOT")
        .await
        .iter()
        .filter_map(|change| match change {
            Change::StockMoved { moves, .. } => {
                Some(moves.iter().map(|m| m.quantity.get()).sum::<i64>())
            }
            _ => None,
        })
        .sum();
    assert_eq!(
        moved, 2_000_000,
        "half of it moved to bucket 1, over a million at a time"
    );
    assert_eq!(
        world
            .inventory
            .item(&sku("SKU-COLD"))
            .await
            .unwrap()
            .on_hand,
        5
    );
    assert_granted_by("CommandProcessorRole", &world.names, &sent);
}
