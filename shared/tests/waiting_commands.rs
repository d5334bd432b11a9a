//! Commands that must wait never hold their SKU back: one naming a reservation not readable yet,
//! or one whose request is not accepted yet, is deferred while the SKU's later commands apply,
//! is nudged back onto the queue, and is tried again before later arrivals. Past its wait, one
//! whose reservation never became readable is parked for an operator; a redrive applies it once.

use inventory_core::domain::Annotation;
use inventory_core::domain::StreamId;

use std::sync::Arc;

use inventory_core::app::{CommandStatus, RedriveSelection, Redriven, ReserveRequest};
use inventory_core::domain::{
    Action, Caller, Change, Command, CommandId, Line, Quantity, ReservationId, Sku, Timestamp,
    TtlSeconds,
};
use inventory_core::memory::{MemoryQueue, MemoryStore};
use inventory_core::ports::{
    Acceptance, Clock, CommandRecord, ManualClock, ParkReason, Record, RecordKey, RecordWrite,
    Streams, Transaction, Transactions,
};
use inventory_core::testing::FlakyStore;
use inventory_core::{Config, Inventory};

const START: i64 = 1_700_000_000_000;

struct World {
    inventory: Inventory,
    store: Arc<FlakyStore<MemoryStore>>,
    queue: Arc<MemoryQueue>,
    clock: ManualClock,
}

fn world() -> World {
    let store = Arc::new(FlakyStore::new(Arc::new(MemoryStore::new())));
    let queue = Arc::new(MemoryQueue::new());
    let clock = ManualClock::new(Timestamp::from_millis(START));
    let inventory = Inventory::new(
        store.clone(),
        queue.clone(),
        Arc::new(clock.clone()),
        Config::default(),
    );
    World {
        inventory,
        store,
        queue,
        clock,
    }
}

fn sku() -> Sku {
    Sku::parse("A").unwrap()
}

fn command(action: Action, accepted_at: Timestamp) -> Command {
    Command {
        id: CommandId::random(),
        sku: sku(),
        accepted_at,
        action,
    }
}

fn receipt(units: i64, at: Timestamp) -> Command {
    command(
        Action::ReceiveStock {
            location: Default::default(),
            quantity: Quantity::new(units).unwrap(),
            why: Annotation::received(None),
        },
        at,
    )
}

impl World {
    /// 5 units of A and a reservation of 2 of them.
    async fn stocked_reservation(&self) -> ReservationId {
        let report = self
            .inventory
            .apply_commands(&sku(), &[receipt(5, self.clock.now())])
            .await
            .unwrap();
        assert_eq!(report.applied, 1);
        let line = Line::of(sku(), Quantity::new(2).unwrap());
        let request = ReserveRequest::new(vec![line], TtlSeconds::DEFAULT, None).unwrap();
        self.inventory
            .reserve(request, &Caller::local_admin())
            .await
            .unwrap()
            .reservation_id
    }

    async fn changes(&self) -> Vec<Change> {
        let events = self
            .store
            .inner()
            .read_stream(&StreamId::of(&sku()), 0)
            .await
            .unwrap();
        events.into_iter().map(|event| event.change).collect()
    }

    /// Everything queued, applied as the processor would.
    async fn process_queue(&self) -> inventory_core::app::ApplyReport {
        let batch = self.queue.try_receive(1_000);
        self.inventory.apply_commands(&sku(), &batch).await.unwrap()
    }

    async fn item(&self) -> (i64, i64, i64) {
        let item = self.inventory.item(&sku()).await.unwrap();
        (item.on_hand, item.committed, item.reserved)
    }
}

#[tokio::test]
async fn a_command_whose_reservation_is_unreadable_waits_without_holding_the_sku_back_then_parks_and_a_redrive_applies_it_once(
) {
    let world = world();
    let reservation_id = world.stocked_reservation().await;
    let before = world.changes().await.len();
    world.store.hide_events(&StreamId::of(&sku()));
    let now = world.clock.now();
    let checkout = command(
        Action::CommitHold {
            reservation_id: reservation_id.clone(),
        },
        now,
    );
    let release = command(
        Action::ReleaseHold {
            reservation_id: reservation_id.clone(),
        },
        now,
    );
    let batch = [checkout.clone(), receipt(3, now), release.clone()];
    let report = world
        .inventory
        .apply_commands(&sku(), &batch)
        .await
        .unwrap();
    assert_eq!(
        (report.applied, report.deferred),
        (1, 2),
        "the receipt behind the waiting checkout applied at once: {report:?}"
    );
    assert!(matches!(
        world.changes().await[before..],
        [Change::StockReceived { .. }]
    ));
    let nudged: Vec<CommandId> = world.queue.try_receive(10).iter().map(|c| c.id).collect();
    assert_eq!(
        nudged,
        vec![checkout.id, release.id],
        "the waiting commands, in order, nudged back onto the queue (the release keeps its place behind the checkout)"
    );

    world.clock.advance_millis(31_000);
    let report = world.inventory.apply_commands(&sku(), &[]).await.unwrap();
    assert_eq!((report.parked, report.deferred), (2, 0), "{report:?}");
    assert_eq!(
        world.changes().await.len(),
        before + 1,
        "parking writes no event"
    );
    let parked = world.inventory.parked_commands().await.unwrap();
    assert_eq!(parked.len(), 2);
    let entry = parked.iter().find(|e| e.command_id == checkout.id).unwrap();
    assert_eq!(entry.parked.reason, ParkReason::DependencyUnreadable);
    let body = inventory_core::app::parked_bytes(&entry.parked).unwrap();
    assert_eq!(serde_json::from_slice::<Command>(&body).unwrap(), checkout);

    // A redelivery of the original leaves it parked.
    let report = world
        .inventory
        .apply_commands(&sku(), std::slice::from_ref(&checkout))
        .await
        .unwrap();
    assert_eq!((report.duplicates, report.applied), (1, 0));

    world.store.heal();
    let redriven = world
        .inventory
        .redrive(&RedriveSelection::Ids(vec![checkout.id]))
        .await
        .unwrap();
    assert_eq!(redriven, vec![(checkout.id, sku(), Redriven::Queued)]);
    let listed = world.inventory.parked_commands().await.unwrap();
    assert!(listed
        .iter()
        .any(|e| e.command_id == checkout.id && e.parked.redriven_at.is_some()));
    let report = world.process_queue().await;
    assert_eq!(report.applied, 1, "{report:?}");
    assert_eq!(world.item().await, (8, 2, 0), "committed once");

    // Redriving again and a late redelivery change nothing.
    world
        .inventory
        .redrive(&RedriveSelection::Ids(vec![checkout.id]))
        .await
        .unwrap();
    let report = world
        .inventory
        .apply_commands(&sku(), std::slice::from_ref(&checkout))
        .await
        .unwrap();
    assert_eq!((report.applied, report.duplicates), (0, 1));
    assert_eq!(world.item().await, (8, 2, 0));
    let remaining = world.inventory.parked_commands().await.unwrap();
    assert_eq!(
        remaining.iter().map(|e| e.command_id).collect::<Vec<_>>(),
        vec![release.id],
        "the release is still parked"
    );
    let redriven = world
        .inventory
        .redrive(&RedriveSelection::All)
        .await
        .unwrap();
    assert_eq!(redriven.len(), 1);
    let report = world.process_queue().await;
    assert_eq!(
        report.rejected, 1,
        "a release after the checkout: {report:?}"
    );
    assert!(world.inventory.parked_commands().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_checkout_accepted_in_time_commits_though_its_acceptance_was_recorded_late() {
    let world = world();
    let reservation_id = world.stocked_reservation().await;
    let expires_at = world
        .inventory
        .reservation(&reservation_id, &Caller::local_admin())
        .await
        .unwrap()
        .expires_at;
    // Accepted a second before the hold expires; its request record not marked accepted yet.
    let checkout = command(
        Action::CommitHold {
            reservation_id: reservation_id.clone(),
        },
        Timestamp::from_millis(expires_at.millis() - 1_000),
    );
    world
        .clock
        .advance_millis(expires_at.millis() - START + 100_000);
    let record = |acceptance| {
        Record::Command(CommandRecord {
            request_digest: "d".into(),
            commands: vec![checkout.clone()],
            issued_by: None,
            acceptance,
        })
    };
    let key = RecordKey::Command {
        command_id: checkout.id,
    };
    world
        .store
        .write(Transaction::records(vec![RecordWrite {
            key: key.clone(),
            expected: None,
            record: record(Acceptance::Awaiting {
                since: world.clock.now(),
            }),
        }]))
        .await
        .unwrap();
    let report = world
        .inventory
        .apply_commands(&sku(), &[checkout.clone(), receipt(1, world.clock.now())])
        .await
        .unwrap();
    assert_eq!(
        (report.applied, report.deferred),
        (1, 1),
        "the receipt applied while the checkout waits: {report:?}"
    );
    assert_eq!(
        world.queue.len(),
        1,
        "the checkout nudged back onto the queue"
    );

    world
        .store
        .write(Transaction::records(vec![RecordWrite {
            key,
            expected: Some(1),
            record: record(Acceptance::Accepted),
        }]))
        .await
        .unwrap();
    world.clock.advance_millis(5_000);
    let report = world.process_queue().await;
    assert_eq!(report.applied, 1, "{report:?}");
    let committed = world
        .changes()
        .await
        .into_iter()
        .find_map(|change| match change {
            Change::HoldCommitted { reacquired, .. } => Some(reacquired),
            _ => None,
        });
    assert_eq!(
        committed,
        Some(false),
        "sold from its own hold, within the release grace"
    );
    assert_eq!(world.item().await, (6, 2, 0));
    let status = world
        .inventory
        .command(checkout.id, &Caller::local_admin())
        .await;
    assert!(
        matches!(&status, Ok(view) if view.status == CommandStatus::Applied),
        "{status:?}"
    );
}
