//! The processor Lambda's handler fed `events/command-processor.json` (the event `sam local
//! invoke -e` uses) against DynamoDB on moto: duplicates, a poison record, a malformed command and
//! a transient failure end with each good command applied exactly once, and every request the
//! handler sends is one its role in the template grants.

use std::sync::Arc;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use command_processor::handle_kinesis_event;
use inventory_core::aws::{local_config, test_endpoint, DynamoStore, KinesisQueue};
use inventory_core::domain::{Change, CommandId, RejectionCode, Sku};
use inventory_core::ports::{EventStore, SystemClock};
use inventory_core::testing::FlakyStore;
use inventory_core::{Config, Inventory};
use inventory_test_support::grants::{assert_granted_by, Access, AccessLog, Names};

const EVENT: &str = include_str!("../../../events/command-processor.json");

struct World {
    inventory: Inventory,
    store: Arc<FlakyStore<DynamoStore>>,
    log: AccessLog,
    names: Names,
}

impl World {
    /// Handles `event` as the Lambda does, recording what the handler sends.
    async fn handle(&self, event: KinesisEvent, sent: &mut Vec<Access>) -> KinesisEventResponse {
        self.log.take();
        let response = handle_kinesis_event(&self.inventory, event).await;
        sent.extend(self.log.take());
        response
    }
}

async fn world() -> World {
    let config = local_config(&test_endpoint()).await;
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let log = AccessLog::default();
    let names = Names {
        table: format!("events-{unique}"),
        ..Names::default()
    };
    let dynamo = DynamoStore::new(log.dynamodb(&config), &names.table);
    dynamo.create_table_if_missing().await.expect("table");
    let queue = KinesisQueue::new(
        aws_sdk_kinesis::Client::new(&config),
        format!("commands-{unique}"),
    );
    let store = Arc::new(FlakyStore::new(Arc::new(dynamo)));
    let inventory = Inventory::new(
        store.clone(),
        Arc::new(queue),
        Arc::new(SystemClock),
        Config::default(),
    );
    World {
        inventory,
        store,
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
        .read_stream(&sku(name), 0)
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
    world.store.fail(&sku("SKU-B"));
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
    assert_eq!(a.len(), 3, "{a:#?}");
    assert!(a
        .iter()
        .any(|c| matches!(c, Change::StockReceived { command_id, .. } if *command_id == id(1))));
    assert!(a.iter().any(|c| matches!(c, Change::CommandRejected { command_id, reason: RejectionCode::MalformedCommand } if *command_id == id(3))));
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
    assert_eq!(changes(&world, "SKU-A").await.len(), 3);
    assert_eq!(changes(&world, "SKU-B").await.len(), 2);
    assert_granted_by("CommandProcessorRole", &world.names, &sent);
}
