//! Batches as the queue delivers them: in order per SKU, duplicates skipped, failures reported
//! from the lowest position so nothing after them is lost.

use inventory_core::domain::Annotation;
use inventory_core::domain::StreamId;

use std::sync::Arc;

use command_processor::{process_batch, process_deliveries, Delivery, NEVER_FAILING_LONG};
use inventory_core::app::RedriveSelection;
use inventory_core::domain::{
    Action, Change, Command, CommandId, Quantity, RejectionCode, Sku, Timestamp,
};
use inventory_core::memory::{MemoryQueue, MemoryStore};
use inventory_core::ports::{ManualClock, ParkReason, Streams};
use inventory_core::testing::FlakyStore;
use inventory_core::{Config, Inventory};

fn service() -> (Inventory, Arc<FlakyStore<MemoryStore>>) {
    let store = Arc::new(FlakyStore::new(Arc::new(MemoryStore::new())));
    let inventory = Inventory::new(
        store.clone(),
        Arc::new(MemoryQueue::new()),
        Arc::new(ManualClock::new(Timestamp::from_millis(1_700_000_000_000))),
        Config::default(),
    );
    (inventory, store)
}

fn sku(name: &str) -> Sku {
    Sku::parse(name).unwrap()
}

fn receipt(sku_name: &str, units: i64) -> Command {
    Command {
        id: CommandId::random(),
        sku: sku(sku_name),
        accepted_at: Timestamp::from_millis(1_700_000_000_000),
        action: Action::ReceiveStock {
            location: Default::default(),
            quantity: Quantity::new(units).unwrap(),
            why: Annotation::received(None),
        },
    }
}

fn adjustment(sku_name: &str, delta: i64) -> Command {
    Command {
        action: Action::AdjustStock {
            location: Default::default(),
            delta,
            why: Annotation::from_text("count".into()),
        },
        ..receipt(sku_name, 1)
    }
}

async fn events(store: &FlakyStore<MemoryStore>, name: &str) -> Vec<Change> {
    store
        .inner()
        .read_stream(&StreamId::of(&sku(name)), 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.change)
        .collect()
}

#[tokio::test]
async fn each_skus_commands_are_applied_in_arrival_order_with_one_append_per_sku() {
    let (inventory, store) = service();
    // -4 only fits after the receipt of 5 that arrives before it.
    let batch = vec![
        receipt("A", 5),
        receipt("B", 1),
        adjustment("A", -4),
        receipt("A", 2),
    ];
    let outcome = process_batch(&inventory, &batch).await;
    assert_eq!(outcome.retry_from, None);
    assert_eq!((outcome.report.applied, outcome.report.rejected), (4, 0));
    let a = events(&store, "A").await;
    assert!(matches!(
        a[..],
        [
            Change::StockReceived { .. },
            Change::StockAdjusted { delta: -4, .. },
            Change::StockReceived { .. }
        ]
    ));
    assert_eq!(inventory.item(&sku("A")).await.unwrap().on_hand, 3);
}

#[tokio::test]
async fn a_command_delivered_twice_in_a_batch_or_across_batches_takes_effect_once() {
    let (inventory, store) = service();
    let first = receipt("A", 5);
    let outcome = process_batch(&inventory, &[first.clone(), first.clone()]).await;
    assert_eq!((outcome.report.applied, outcome.report.duplicates), (1, 1));
    let outcome = process_batch(&inventory, std::slice::from_ref(&first)).await;
    assert_eq!((outcome.report.applied, outcome.report.duplicates), (0, 1));
    assert_eq!(events(&store, "A").await.len(), 1);
    assert_eq!(inventory.item(&sku("A")).await.unwrap().on_hand, 5);
}

#[tokio::test]
async fn an_invalid_command_is_recorded_as_rejected_and_does_not_block_the_ones_after_it() {
    let (inventory, store) = service();
    let batch = vec![receipt("A", 1), adjustment("A", -2), receipt("A", 2)];
    let outcome = process_batch(&inventory, &batch).await;
    assert_eq!(outcome.retry_from, None);
    assert_eq!((outcome.report.applied, outcome.report.rejected), (2, 1));
    let rejected = events(&store, "A").await.swap_remove(1);
    assert!(
        matches!(
            rejected,
            Change::CommandRejected { command_id, reason: RejectionCode::OnHandWouldGoNegative, .. }
                if command_id == batch[1].id
        ),
        "{rejected:?}"
    );
    assert_eq!(inventory.item(&sku("A")).await.unwrap().on_hand, 3);
}

#[tokio::test]
async fn a_failing_sku_is_retried_from_its_first_position_and_redelivery_applies_each_once() {
    let (inventory, store) = service();
    store.fail(&StreamId::of(&sku("B")));
    let batch = vec![
        receipt("A", 1),
        receipt("B", 1),
        receipt("C", 1),
        receipt("B", 2),
        receipt("A", 3),
    ];
    let outcome = process_batch(&inventory, &batch).await;
    assert_eq!(
        outcome.retry_from,
        Some(1),
        "B failed; its first command is at position 1"
    );
    assert_eq!(
        events(&store, "B").await.len(),
        0,
        "nothing of B half-applied"
    );
    store.heal();
    let redelivered = &batch[1..];
    let outcome = process_batch(&inventory, redelivered).await;
    assert_eq!(outcome.retry_from, None);
    assert_eq!((outcome.report.applied, outcome.report.duplicates), (2, 2));
    for (name, on_hand) in [("A", 4), ("B", 3), ("C", 1)] {
        assert_eq!(
            inventory.item(&sku(name)).await.unwrap().on_hand,
            on_hand,
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_batch_larger_than_one_write_is_applied_in_several_commits_each_once() {
    let (inventory, store) = service();
    let batch: Vec<Command> = (0..100).map(|_| receipt("A", 1)).collect();
    let mut twice = batch.clone();
    twice.extend(batch.iter().take(40).cloned());
    let outcome = process_batch(&inventory, &twice).await;
    assert_eq!(outcome.retry_from, None);
    assert_eq!(
        (outcome.report.applied, outcome.report.duplicates),
        (100, 40)
    );
    assert_eq!(events(&store, "A").await.len(), 100);
    assert_eq!(inventory.item(&sku("A")).await.unwrap().on_hand, 100);
}

#[tokio::test]
async fn a_checkout_naming_a_reservation_not_readable_yet_never_holds_the_batch_back() {
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new());
    let inventory = Inventory::new(
        store.clone(),
        queue.clone(),
        Arc::new(clock.clone()),
        Config::default(),
    );
    let unseen = inventory_core::domain::ReservationId::new(StreamId::of(&sku("A")), 7, 42);
    let checkout = Command {
        action: Action::CommitHold {
            reservation_id: unseen,
        },
        ..receipt("A", 1)
    };
    let batch = vec![checkout.clone(), receipt("A", 3)];
    let outcome = process_batch(&inventory, &batch).await;
    assert_eq!(outcome.retry_from, None, "nothing is delivered again");
    assert_eq!((outcome.report.applied, outcome.report.deferred), (1, 1));
    assert_eq!(inventory.item(&sku("A")).await.unwrap().on_hand, 3);
    assert_eq!(queue.try_receive(10), vec![checkout.clone()], "nudged");

    clock.advance_millis(31_000);
    let outcome = process_batch(&inventory, std::slice::from_ref(&checkout)).await;
    assert_eq!(outcome.retry_from, None);
    assert_eq!(outcome.report.parked, 1, "parked once its wait is over");
    assert!(queue.is_empty());
    let parked = inventory.parked_commands().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert!(!store
        .read_stream(&StreamId::of(&sku("A")), 0)
        .await
        .unwrap()
        .iter()
        .any(|e| matches!(e.change, Change::CommandRejected { .. })));
}

fn layout(sku_name: &str, count: i64) -> Command {
    Command {
        action: Action::SetBuckets {
            location: Default::default(),
            count: inventory_core::domain::BucketCount::new(count).unwrap(),
        },
        ..receipt(sku_name, 1)
    }
}

#[tokio::test]
async fn moves_of_any_size_and_adjustments_of_a_billion_apply_on_a_split_item() {
    let (inventory, store) = service();
    // Three receipts of a million, then two buckets: the spread moves a million and a half.
    let batch = vec![
        receipt("HOT", 1_000_000),
        receipt("HOT", 1_000_000),
        receipt("HOT", 1_000_000),
        layout("HOT", 2),
        receipt("OTHER", 5),
        adjustment("HOT", 1_000_000_000),
        adjustment("HOT", -999_000_000),
    ];
    let outcome = process_batch(&inventory, &batch).await;
    assert_eq!(outcome.retry_from, None);
    assert_eq!(
        (outcome.report.applied, outcome.report.parked),
        (7, 0),
        "{:?}",
        outcome.report
    );
    let hot = inventory.item_with_buckets(&sku("HOT")).await.unwrap();
    assert_eq!((hot.on_hand, hot.available), (4_000_000, 4_000_000));
    let moved: i64 = store
        .inner()
        .read_stream(&StreamId::parse("HOT@1").unwrap(), 0)
        .await
        .unwrap()
        .iter()
        .filter_map(|event| match &event.change {
            Change::StockMoved { moves, .. } => {
                Some(moves.iter().map(|m| m.quantity.get()).sum::<i64>())
            }
            _ => None,
        })
        .sum();
    assert_eq!(
        moved, 2_000_000,
        "half of 4,000,000, in moves over a million"
    );
    assert_eq!(inventory.item(&sku("OTHER")).await.unwrap().on_hand, 5);
}

#[tokio::test]
async fn a_sku_whose_commands_panic_is_parked_with_the_fault_and_every_other_sku_goes_on() {
    let (inventory, store) = service();
    store.panic_on(&StreamId::of(&sku("BAD")));
    let batch = vec![
        receipt("A", 1),
        receipt("BAD", 2),
        receipt("C", 3),
        adjustment("BAD", 4),
        receipt("A", 5),
    ];
    let outcome = process_batch(&inventory, &batch).await;
    assert_eq!(
        outcome.retry_from, None,
        "the batch never fails for one SKU's fault"
    );
    assert_eq!((outcome.report.applied, outcome.report.parked), (3, 2));
    assert_eq!(inventory.item(&sku("A")).await.unwrap().on_hand, 6);
    assert_eq!(inventory.item(&sku("C")).await.unwrap().on_hand, 3);
    let parked = inventory.parked_commands().await.unwrap();
    let mut ids: Vec<CommandId> = parked.iter().map(|entry| entry.command_id).collect();
    let mut bad: Vec<CommandId> = vec![batch[1].id, batch[3].id];
    ids.sort();
    bad.sort();
    assert_eq!(ids, bad);
    for entry in &parked {
        assert_eq!(entry.parked.reason, ParkReason::Faulted);
        assert!(
            entry.parked.detail.contains("panicked") && entry.parked.detail.contains("injected"),
            "{}",
            entry.parked.detail
        );
    }
    // Fixed, and redriven: each applies once.
    store.heal();
    inventory.redrive(&RedriveSelection::All).await.unwrap();
    let outcome = process_batch(&inventory, &[batch[1].clone(), batch[3].clone()]).await;
    assert_eq!((outcome.retry_from, outcome.report.applied), (None, 2));
    assert_eq!(inventory.item(&sku("BAD")).await.unwrap().on_hand, 6);
}

#[tokio::test]
async fn a_sku_not_done_by_the_deadline_is_left_for_redelivery_and_the_others_are_applied() {
    let (inventory, store) = service();
    store.stall(&StreamId::of(&sku("SLOW")));
    let batch: Vec<Delivery> = [
        receipt("A", 1),
        receipt("SLOW", 2),
        receipt("C", 3),
        receipt("SLOW", 4),
    ]
    .into_iter()
    .map(|command| Delivery {
        command,
        arrived_at: NEVER_FAILING_LONG,
    })
    .collect();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(300);
    let outcome = process_deliveries(&inventory, &batch, Some(deadline)).await;
    assert_eq!(
        outcome.retry_from,
        Some(1),
        "the stalled SKU's first command is where the batch resumes"
    );
    assert_eq!(inventory.item(&sku("A")).await.unwrap().on_hand, 1);
    assert_eq!(inventory.item(&sku("C")).await.unwrap().on_hand, 3);
    store.heal();
    let outcome = process_deliveries(
        &inventory,
        &batch[1..],
        Some(deadline + std::time::Duration::from_secs(30)),
    )
    .await;
    assert_eq!((outcome.retry_from, outcome.report.applied), (None, 2));
    assert_eq!(inventory.item(&sku("SLOW")).await.unwrap().on_hand, 6);
}
