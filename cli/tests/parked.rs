//! `inventory commands parked` and `inventory commands redrive` as real processes against moto:
//! a parked receipt and a parked record of an unknown shape are listed; a redrive queues the
//! receipt again (applied once) and leaves the unreadable record parked. `inventory commands
//! requeue` queues again an accepted command that never reached an outcome.

mod support;

use inventory_core::domain::Annotation;
use std::sync::Arc;

use inventory_core::app::format_rfc3339;
use inventory_core::aws::TestAws;
use inventory_core::domain::{Action, Caller, Command, CommandId, Quantity, Sku, Timestamp};
use inventory_core::ports::{ParkReason, SystemClock};
use inventory_core::{Config, Inventory};
use inventory_test_support::kinesis::stream_records;
use support::Run;

struct World {
    endpoint: String,
    table: String,
    stream: String,
    inventory: Inventory,
    kinesis: aws_sdk_kinesis::Client,
}

impl World {
    async fn new() -> Self {
        let aws = TestAws::new().await;
        let store = aws.store(aws.dynamodb(), "parked").await;
        let kinesis = aws.kinesis();
        let queue = aws.queue(kinesis.clone(), "parked").await;
        let (table, stream) = (store.table().to_owned(), queue.stream().to_owned());
        let inventory = Inventory::new(
            Arc::new(store),
            Arc::new(queue),
            Arc::new(SystemClock),
            Config::default(),
        );
        Self {
            endpoint: aws.endpoint().to_owned(),
            table,
            stream,
            inventory,
            kinesis,
        }
    }

    /// Runs `inventory commands ARGS --endpoint-url … --table … --stream …`.
    async fn commands(&self, args: &[&str]) -> Run {
        let target = [
            "--endpoint-url",
            &self.endpoint,
            "--table",
            &self.table,
            "--stream",
            &self.stream,
        ];
        support::inventory(&[&["commands"], args, &target[..]].concat()).await
    }

    /// Every command on the stream.
    async fn queued(&self) -> Vec<Command> {
        stream_records(&self.kinesis, &self.stream)
            .await
            .iter()
            .map(|record| serde_json::from_slice(record.data().as_ref()).expect("a command"))
            .collect()
    }
}

#[tokio::test]
async fn parked_commands_are_listed_and_a_redrive_applies_the_readable_ones_once() {
    let world = World::new().await;
    let sku = Sku::parse("SKU-P").unwrap();
    let receipt = Command {
        id: CommandId::random(),
        sku: sku.clone(),
        accepted_at: Timestamp::from_millis(1_763_700_000_000),
        action: Action::ReceiveStock {
            location: Default::default(),
            quantity: Quantity::new(7).unwrap(),
            why: Annotation::received(None),
        },
    };
    let body = serde_json::to_vec(&receipt).unwrap();
    world
        .inventory
        .park(
            &sku,
            receipt.id,
            &body,
            ParkReason::Failing,
            "throttled (injected)",
        )
        .await
        .unwrap();
    let unknown = br#"{"id":"not-a-uuid","type":"teleport_stock"}"#;
    let unknown_id = CommandId::for_record(unknown);
    world
        .inventory
        .park(
            &sku,
            unknown_id,
            unknown,
            ParkReason::UnknownShape,
            "unknown variant",
        )
        .await
        .unwrap();

    let listed = world.commands(&["parked"]).await;
    assert_eq!(listed.code, Some(0), "{listed:?}");
    let lines: Vec<Vec<&str>> = listed
        .stdout
        .lines()
        .map(|line| line.split('\t').collect())
        .collect();
    assert_eq!(lines.len(), 2, "{listed:?}");
    let receipt_line = lines
        .iter()
        .find(|fields| fields[0] == receipt.id.to_string())
        .expect("the receipt is listed");
    assert_eq!(receipt_line[1], "SKU-P");
    assert!(
        receipt_line[2].ends_with('Z'),
        "when, RFC 3339: {receipt_line:?}"
    );
    assert_eq!(
        &receipt_line[3..6],
        ["failing", "parked", "throttled (injected)"]
    );
    assert_eq!(
        serde_json::from_str::<Command>(receipt_line[6]).unwrap(),
        receipt,
        "the body as queued"
    );
    assert!(lines
        .iter()
        .any(|fields| fields[0] == unknown_id.to_string() && fields[3] == "unknown_shape"));

    let redrive = world.commands(&["redrive", "--all"]).await;
    assert_eq!(redrive.code, Some(1), "one is left parked: {redrive:?}");
    assert!(redrive
        .stdout
        .contains(&format!("{}\tSKU-P\tredriven", receipt.id)));
    assert!(redrive.stdout.contains("left parked"), "{redrive:?}");
    assert!(redrive.stderr.contains("1 redriven, 1 left"), "{redrive:?}");
    let queued = world.queued().await;
    assert_eq!(queued, vec![receipt.clone()], "the same command, same id");

    let listed = world.commands(&["parked"]).await;
    assert!(
        listed.stdout.contains("\tfailing\tredriven "),
        "redriven until applied: {listed:?}"
    );
    let report = world.inventory.apply_commands(&sku, &queued).await.unwrap();
    assert_eq!(report.applied, 1);
    let again = world
        .commands(&["redrive", "--id", &receipt.id.to_string()])
        .await;
    assert_eq!(
        again.code,
        Some(0),
        "nothing of that id is parked: {again:?}"
    );
    let report = world.inventory.apply_commands(&sku, &queued).await.unwrap();
    assert_eq!((report.applied, report.duplicates), (0, 1));
    assert_eq!(world.inventory.item(&sku).await.unwrap().on_hand, 7);
    let listed = world.commands(&["parked"]).await;
    assert_eq!(listed.stdout.lines().count(), 1, "{listed:?}");
    assert!(listed.stdout.contains("unknown_shape"));
}

#[tokio::test]
async fn a_requeue_queues_again_every_accepted_command_without_an_outcome_once_and_applies_it_once()
{
    let world = World::new().await;
    let since = inventory_core::ports::Clock::now(&SystemClock).plus_seconds(-1);
    let admin = Caller::local_admin();
    let (kept, lost) = (
        Sku::parse("SKU-KEPT").unwrap(),
        Sku::parse("SKU-LOST").unwrap(),
    );
    let receive = |sku: &Sku, units| {
        world.inventory.receive_stock(
            sku.clone(),
            Quantity::new(units).unwrap(),
            Annotation::received(None),
            None,
            &admin,
        )
    };
    let applied = receive(&kept, 5).await.unwrap();
    let unapplied = receive(&lost, 7).await.unwrap();
    let accepted = world.queued().await;
    assert_eq!(accepted.len(), 2);
    // The first is applied; the second's record is taken to have left the stream unapplied.
    let first: Vec<Command> = accepted.iter().filter(|c| c.sku == kept).cloned().collect();
    world.inventory.apply_commands(&kept, &first).await.unwrap();

    let dry = world
        .commands(&["requeue", "--since", &format_rfc3339(since), "--dry-run"])
        .await;
    assert_eq!(dry.code, Some(0), "{dry:?}");
    let fields: Vec<Vec<&str>> = dry
        .stdout
        .lines()
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(
        fields.len(),
        1,
        "only the command without an outcome: {dry:?}"
    );
    assert_eq!(
        &fields[0][..2],
        [unapplied.to_string().as_str(), "SKU-LOST"]
    );
    assert_eq!(fields[0][3], "unfinished");
    assert_eq!(world.queued().await.len(), 2, "a dry run queues nothing");
    let later = world
        .commands(&[
            "requeue",
            "--since",
            &format_rfc3339(since.plus_seconds(60)),
        ])
        .await;
    assert_eq!(later.stdout, "", "nothing accepted since then: {later:?}");

    let requeued = world
        .commands(&["requeue", "--since", &format_rfc3339(since)])
        .await;
    assert_eq!(requeued.code, Some(0), "{requeued:?}");
    assert!(requeued.stderr.contains("1 requeued"), "{requeued:?}");
    let queued = world.queued().await;
    assert_eq!(queued.len(), 3);
    let again: Vec<Command> = queued.iter().filter(|c| c.sku == lost).cloned().collect();
    assert_eq!(again.len(), 2, "the original and the requeued one");
    assert_eq!(
        again[0], again[1],
        "queued again as it was accepted, under its own id"
    );
    assert_eq!(again[1].id, unapplied);
    let report = world.inventory.apply_commands(&lost, &again).await.unwrap();
    assert_eq!((report.applied, report.duplicates), (1, 1));
    assert_eq!(world.inventory.item(&lost).await.unwrap().on_hand, 7);
    let status = world.inventory.command(applied, &admin).await.unwrap();
    assert_eq!(serde_json::to_value(&status).unwrap()["status"], "applied");

    let after = world
        .commands(&["requeue", "--since", &format_rfc3339(since)])
        .await;
    assert!(
        after.stderr.contains("0 requeued"),
        "all have an outcome now: {after:?}"
    );
}
