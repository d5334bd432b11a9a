//! Applies a batch of queued commands. Commands are grouped by SKU keeping their arrival order;
//! SKUs are processed concurrently, each as one commit; a command already applied (a duplicate
//! delivery) is skipped. A SKU that fails transiently reports the batch position of its first
//! command to deliver again, so the queue redelivers from the lowest failed position and nothing
//! is lost; a command still failing past the configured bound is parked instead, so the shard
//! moves on.

mod kinesis;

use std::collections::BTreeMap;

use futures::StreamExt as _;
use inventory_core::app::{ApplyReport, Unapplied};
use inventory_core::domain::{Command, Sku, Timestamp};
use inventory_core::limits::SKUS_AT_ONCE;
use inventory_core::{AppError, Inventory};
use tokio::time::Instant;

pub use kinesis::{handle_kinesis_event, handle_records, QueueRecord};

/// What became of a batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Position of the first command that must be delivered again (with all after it), if any.
    pub retry_from: Option<usize>,
    /// Summed reports of the SKUs that were applied.
    pub report: ApplyReport,
}

/// The arrival time of a command whose arrival is not known: later than any clock, so it never
/// counts as failing for long.
pub const NEVER_FAILING_LONG: Timestamp = Timestamp::from_millis(i64::MAX);

/// A command as the queue delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The command.
    pub command: Command,
    /// When it arrived on the queue.
    pub arrived_at: Timestamp,
}

/// Applies `batch` (in queue order) and says where redelivery must start, if anywhere. No
/// arrival time is known, so none of the commands counts as failing for long: none is parked for
/// failing.
pub async fn process_batch(inventory: &Inventory, batch: &[Command]) -> BatchOutcome {
    let deliveries: Vec<Delivery> = batch
        .iter()
        .map(|command| Delivery {
            command: command.clone(),
            arrived_at: NEVER_FAILING_LONG,
        })
        .collect();
    process_deliveries(inventory, &deliveries, None).await
}

/// Applies `batch` (in queue order) and says where redelivery must start, if anywhere.
///
/// At most [`SKUS_AT_ONCE`] SKUs are applied at a time, which bounds the states one batch
/// holds in memory (see `docs/architecture.md`, "The processor's bounds"). With a `deadline`
/// (the invocation's, less a margin), a SKU not done by then is left, its first command to be
/// delivered again, so the batch answers before the function times out instead of failing
/// whole: what was written stays (each SKU's write is one transaction) and a redelivery finds
/// it applied.
pub async fn process_deliveries(
    inventory: &Inventory,
    batch: &[Delivery],
    deadline: Option<Instant>,
) -> BatchOutcome {
    let groups = group_by_sku(batch);
    // Collected first: a stream over the closure's borrows is not `Send` for every lifetime.
    let applying: Vec<_> = groups
        .iter()
        .map(|(sku, group)| async move {
            let commands: Vec<Command> = group.iter().map(|(_, d)| d.command.clone()).collect();
            let oldest = group.iter().map(|(_, d)| d.arrived_at).min();
            let oldest = oldest.unwrap_or(NEVER_FAILING_LONG);
            let applying = inventory.apply_arrivals(sku, &commands, oldest);
            let result = match deadline {
                None => applying.await,
                Some(deadline) => tokio::time::timeout_at(deadline, applying)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Unapplied {
                            from: 0,
                            error: AppError::NotYet("the invocation's deadline came first".into()),
                        })
                    }),
            };
            (sku, group, result)
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(applying)
        .buffer_unordered(SKUS_AT_ONCE)
        .collect()
        .await;
    let mut outcome = BatchOutcome::default();
    for (sku, group, result) in results {
        match result {
            Ok(report) => outcome.report.add(&report),
            Err(Unapplied { from, error }) => {
                tracing::warn!(sku = %sku, error = %error,
                    "commands not applied; they will be redelivered");
                let position = group[from].0;
                outcome.retry_from = Some(outcome.retry_from.map_or(position, |p| p.min(position)));
            }
        }
    }
    outcome
}

/// Deliveries per SKU with their batch positions, each group in arrival order.
fn group_by_sku(batch: &[Delivery]) -> BTreeMap<&Sku, Vec<(usize, &Delivery)>> {
    let mut groups: BTreeMap<&Sku, Vec<(usize, &Delivery)>> = BTreeMap::new();
    for (position, delivery) in batch.iter().enumerate() {
        groups
            .entry(&delivery.command.sku)
            .or_default()
            .push((position, delivery));
    }
    groups
}
