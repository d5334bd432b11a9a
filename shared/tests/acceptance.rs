//! A request whose commands could not all be queued is answered 503 and never takes effect
//! half-way; its retry with the same key is accepted and applied once.

use inventory_core::domain::Annotation;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use inventory_core::app::{CommandStatus, ReserveRequest};
use inventory_core::domain::{
    Caller, Command, IdempotencyKey, Line, Quantity, Sku, Timestamp, TtlSeconds,
};
use inventory_core::memory::{MemoryQueue, MemoryStore};
use inventory_core::ports::{CommandQueue, ManualClock, QueueError};
use inventory_core::{AppError, Config, Inventory};

/// Queues commands one at a time and fails after `fail_after` of them, like a PutRecords whose
/// retries of failed entries ran out.
struct PartialQueue {
    inner: MemoryQueue,
    fail_after: AtomicUsize,
}

#[async_trait]
impl CommandQueue for PartialQueue {
    async fn send(&self, commands: &[Command]) -> Result<(), QueueError> {
        for command in commands {
            if self.fail_after.load(Ordering::SeqCst) == 0 {
                return Err(QueueError("entries could not be written".into()));
            }
            self.fail_after.fetch_sub(1, Ordering::SeqCst);
            self.inner.send(std::slice::from_ref(command)).await?;
        }
        Ok(())
    }
}

struct World {
    inventory: Inventory,
    queue: Arc<PartialQueue>,
    clock: ManualClock,
}

fn world() -> World {
    let queue = Arc::new(PartialQueue {
        inner: MemoryQueue::new(),
        fail_after: AtomicUsize::new(usize::MAX),
    });
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let inventory = Inventory::new(
        Arc::new(MemoryStore::new()),
        queue.clone(),
        Arc::new(clock.clone()),
        Config::default(),
    );
    World {
        inventory,
        queue,
        clock,
    }
}

fn sku(name: &str) -> Sku {
    Sku::parse(name).unwrap()
}

impl World {
    /// Applies everything queued, per SKU, as the processor would; returns how many SKU groups
    /// were held back for redelivery.
    async fn process(&self) -> usize {
        let batch = self.queue.inner.try_receive(1_000);
        let mut held_back = 0;
        for name in ["A", "B"] {
            let group: Vec<Command> = batch
                .iter()
                .filter(|c| c.sku == sku(name))
                .cloned()
                .collect();
            if !group.is_empty()
                && self
                    .inventory
                    .apply_commands(&sku(name), &group)
                    .await
                    .is_err()
            {
                self.queue.inner.redeliver(group);
                held_back += 1;
            }
        }
        held_back
    }

    async fn stock_and_reserve(&self) -> inventory_core::domain::ReservationId {
        for name in ["A", "B"] {
            self.inventory
                .receive_stock(
                    sku(name),
                    Quantity::new(5).unwrap(),
                    Annotation::received(None),
                    None,
                    &Caller::local_admin(),
                )
                .await
                .unwrap();
        }
        assert_eq!(self.process().await, 0);
        let lines = ["A", "B"]
            .map(|name| Line::of(sku(name), Quantity::new(2).unwrap()))
            .to_vec();
        let request = ReserveRequest::new(lines, TtlSeconds::DEFAULT, None).unwrap();
        self.inventory
            .reserve(request, &Caller::local_admin())
            .await
            .unwrap()
            .reservation_id
    }
}

#[tokio::test]
async fn a_checkout_whose_second_line_could_not_be_queued_is_503_and_commits_nothing() {
    let world = world();
    let id = world.stock_and_reserve().await;
    world.queue.fail_after.store(1, Ordering::SeqCst);
    let answer = world
        .inventory
        .request_checkout(&id, None, &Caller::local_admin())
        .await;
    assert!(
        matches!(answer, Err(AppError::Unavailable(_))),
        "{answer:?}"
    );
    assert_eq!(world.queue.inner.len(), 1, "the first line was queued");

    world.queue.fail_after.store(usize::MAX, Ordering::SeqCst);
    assert_eq!(world.process().await, 0, "the SKU is not held back");
    assert_eq!(
        world.queue.inner.len(),
        1,
        "deferred while the request may still be accepted, and nudged back onto the queue"
    );
    world.clock.advance_millis(31_000);
    assert_eq!(world.process().await, 0, "then dropped");
    assert!(world.queue.inner.is_empty());
    for name in ["A", "B"] {
        let item = world.inventory.item(&sku(name)).await.unwrap();
        assert_eq!(
            (item.committed, item.reserved),
            (0, 2),
            "{name}: nothing committed"
        );
    }
    let view = world
        .inventory
        .reservation(&id, &Caller::local_admin())
        .await
        .unwrap();
    assert_eq!(serde_json::to_value(view.status).unwrap(), "active");
}

#[tokio::test]
async fn a_checkout_retried_with_its_key_after_a_partial_queue_failure_commits_every_line_once() {
    let world = world();
    let id = world.stock_and_reserve().await;
    let key = IdempotencyKey::parse("checkout-1").unwrap();
    world.queue.fail_after.store(1, Ordering::SeqCst);
    assert!(world
        .inventory
        .request_checkout(&id, Some(&key), &Caller::local_admin())
        .await
        .is_err());
    world.clock.advance_millis(31_000);
    assert_eq!(
        world.process().await,
        0,
        "the half-queued attempt is abandoned"
    );

    world.queue.fail_after.store(usize::MAX, Ordering::SeqCst);
    let command_id = world
        .inventory
        .request_checkout(&id, Some(&key), &Caller::local_admin())
        .await
        .unwrap();
    assert_eq!(world.process().await, 0);
    let status = world
        .inventory
        .command(command_id, &Caller::local_admin())
        .await
        .unwrap()
        .status;
    assert_eq!(status, CommandStatus::Applied);
    for name in ["A", "B"] {
        let item = world.inventory.item(&sku(name)).await.unwrap();
        assert_eq!(
            (item.committed, item.reserved),
            (2, 0),
            "{name}: committed once"
        );
    }
}

#[tokio::test]
async fn a_release_accepted_at_once_is_applied_at_once() {
    let world = world();
    let id = world.stock_and_reserve().await;
    let command_id = world
        .inventory
        .request_release(&id, None, &Caller::local_admin())
        .await
        .unwrap();
    assert_eq!(world.process().await, 0);
    assert_eq!(
        world
            .inventory
            .command(command_id, &Caller::local_admin())
            .await
            .unwrap()
            .status,
        CommandStatus::Applied
    );
    assert_eq!(world.inventory.item(&sku("A")).await.unwrap().available, 5);
}
