//! The expiry sweep with one SKU whose writes fail: the other SKUs' holds expire all the same,
//! the failing SKU's expiries go to the command queue and the mark moves on; only when the queue
//! fails too does the mark stop just before that SKU's earliest hold, and the next sweep expires
//! it once the store is back.

use inventory_core::domain::Annotation;
use inventory_core::domain::StreamId;

use std::sync::Arc;

use async_trait::async_trait;
use inventory_core::domain::{
    Action, Change, Command, CommandId, Event, Quantity, ReservationId, Sku, Timestamp,
};
use inventory_core::memory::{MemoryQueue, MemoryStore};
use inventory_core::ports::{
    Clock, CommandQueue, ManualClock, ParkReason, QueueError, StreamAppend, Streams, Transaction,
    Transactions,
};
use inventory_core::testing::FlakyStore;
use inventory_core::{Config, Inventory};

/// A queue that refuses everything, or passes to a memory queue.
struct Queue {
    inner: MemoryQueue,
    down: bool,
}

#[async_trait]
impl CommandQueue for Queue {
    async fn send(&self, commands: &[Command]) -> Result<(), QueueError> {
        if self.down {
            return Err(QueueError("the stream refuses writes".into()));
        }
        self.inner.send(commands).await
    }
}

fn sku(name: &str) -> Sku {
    Sku::parse(name).unwrap()
}

/// Writes a receipt and two holds on `name`, expiring at `first` and `first + 10 s`.
async fn history(store: &MemoryStore, name: &str, at: Timestamp, first: Timestamp) {
    let sku = sku(name);
    let hold = |seq: u64, expires_at: Timestamp| Event {
        actor: None,
        figures: None,
        stream: StreamId::of(&sku),
        seq,
        at,
        change: Change::HoldPlaced {
            reservation_id: ReservationId::new(StreamId::of(&sku), seq, 7),
            quantity: Quantity::new(1).unwrap(),
            expires_at,
            release_at: expires_at.plus_seconds(120),
            lines: Vec::new(),
            owner: None,
        },
    };
    let receipt = Event {
        actor: None,
        figures: None,
        stream: StreamId::of(&sku),
        seq: 1,
        at,
        change: Change::StockReceived {
            command_id: CommandId::random(),
            quantity: Quantity::new(5).unwrap(),
            why: Annotation::received(None),
        },
    };
    store
        .write(Transaction::appends(vec![StreamAppend {
            stream: StreamId::of(&sku),
            expected: 0,
            events: vec![receipt, hold(2, first), hold(3, first.plus_seconds(10))],
        }]))
        .await
        .unwrap();
}

async fn expired(store: &MemoryStore, name: &str) -> usize {
    let events = store
        .read_stream(&StreamId::of(&sku(name)), 0)
        .await
        .unwrap();
    events
        .iter()
        .filter(|e| matches!(e.change, Change::HoldExpired { .. }))
        .count()
}

async fn setup(
    queue_down: bool,
) -> (
    Arc<MemoryStore>,
    Arc<FlakyStore<MemoryStore>>,
    Arc<Queue>,
    Inventory,
    ManualClock,
) {
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let memory = Arc::new(MemoryStore::new());
    let start = clock.now();
    history(&memory, "A", start, start.plus_seconds(60)).await;
    history(&memory, "B", start, start.plus_seconds(30)).await;
    let store = Arc::new(FlakyStore::new(memory.clone()));
    let queue = Arc::new(Queue {
        inner: MemoryQueue::new(),
        down: queue_down,
    });
    let inventory = Inventory::new(
        store.clone(),
        queue.clone(),
        Arc::new(clock.clone()),
        Config::default(),
    );
    // Past every hold's grace.
    clock.advance_millis(600_000);
    (memory, store, queue, inventory, clock)
}

#[tokio::test]
async fn a_sku_that_cannot_be_expired_goes_to_the_queue_and_holds_back_no_other() {
    let (memory, store, queue, inventory, clock) = setup(false).await;
    store.fail(&StreamId::of(&sku("B")));
    let report = inventory
        .sweep_expired_holds()
        .await
        .expect("the sweep completes");
    assert_eq!(
        (report.expired, report.queued_skus, report.failed_skus),
        (2, 1, 0)
    );
    assert_eq!(expired(&memory, "A").await, 2);
    let due = clock
        .now()
        .plus_seconds(-Config::default().release_grace_secs);
    assert_eq!(report.through, due, "the mark moved past B");
    let queued = queue.inner.try_receive(10);
    assert_eq!(queued.len(), 2);
    assert!(queued.iter().all(|c| c.sku == sku("B")
        && matches!(c.action, Action::ExpireHold { .. })
        && c.accepted_at < clock.now().plus_seconds(-120)));

    // The processor applies them.
    store.heal();
    inventory
        .apply_commands(&sku("B"), &queued)
        .await
        .expect("applied");
    assert_eq!(expired(&memory, "B").await, 2);
}

#[tokio::test]
async fn when_the_queue_fails_too_the_mark_stops_just_before_that_skus_earliest_hold() {
    let (memory, store, _queue, inventory, clock) = setup(true).await;
    store.fail(&StreamId::of(&sku("B")));
    let report = inventory
        .sweep_expired_holds()
        .await
        .expect("the sweep completes");
    assert_eq!(
        (report.expired, report.queued_skus, report.failed_skus),
        (2, 0, 1)
    );
    assert_eq!(expired(&memory, "A").await, 2);
    let b_first = Timestamp::from_millis(1_700_000_000_000).plus_seconds(30);
    assert_eq!(report.through, b_first.plus_millis(-1));

    store.heal();
    let next = inventory
        .sweep_expired_holds()
        .await
        .expect("the next sweep");
    assert_eq!(next.after, b_first.plus_millis(-1));
    assert_eq!(expired(&memory, "B").await, 2);
    assert_eq!(expired(&memory, "A").await, 2, "A's holds expired once");
    assert!(next.through > clock.now().plus_seconds(-200));
}

#[tokio::test]
async fn a_hold_whose_reservation_cannot_be_read_is_parked_by_one_sweep_not_retried_forever() {
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let memory = Arc::new(MemoryStore::new());
    let at = clock.now();
    let orphan = Event {
        actor: None,
        figures: None,
        stream: StreamId::of(&sku("C")),
        seq: 1,
        at,
        change: Change::HoldPlaced {
            // Its anchor would be event 99 of D, which was never written.
            reservation_id: ReservationId::new(StreamId::of(&sku("D")), 99, 7),
            quantity: Quantity::new(1).unwrap(),
            expires_at: at.plus_seconds(60),
            release_at: at.plus_seconds(180),
            lines: Vec::new(),
            owner: None,
        },
    };
    memory
        .write(Transaction::appends(vec![StreamAppend {
            stream: StreamId::of(&sku("C")),
            expected: 0,
            events: vec![orphan],
        }]))
        .await
        .unwrap();
    let queue = Arc::new(MemoryQueue::new());
    let inventory = Inventory::new(
        memory.clone(),
        queue.clone(),
        Arc::new(clock.clone()),
        Config::default(),
    );
    clock.advance_millis(600_000);
    let report = inventory
        .sweep_expired_holds()
        .await
        .expect("the sweep completes");
    assert_eq!(
        (report.queued_skus, report.failed_skus),
        (0, 0),
        "{report:?}"
    );
    let due = clock
        .now()
        .plus_seconds(-Config::default().release_grace_secs);
    assert_eq!(report.through, due);
    assert!(
        memory
            .read_stream(&StreamId::of(&sku("C")), 1)
            .await
            .unwrap()
            .is_empty(),
        "nothing is written to the SKU"
    );
    let parked = inventory.parked_commands().await.unwrap();
    assert_eq!(
        parked.len(),
        1,
        "the expiry is parked for an operator: {parked:?}"
    );
    assert_eq!(parked[0].sku, sku("C"));
    assert_eq!(parked[0].parked.reason, ParkReason::DependencyUnreadable);
    assert!(queue.is_empty(), "nothing is left to retry");
    let again = inventory
        .sweep_expired_holds()
        .await
        .expect("the next sweep");
    assert_eq!((again.queued_skus, again.failed_skus), (0, 0));
    assert_eq!(
        inventory.parked_commands().await.unwrap().len(),
        1,
        "parked once"
    );
}
