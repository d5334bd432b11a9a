//! Applies a batch of queued commands. Commands are grouped by SKU keeping their arrival order;
//! SKUs are processed concurrently, each as one commit; a command already applied (a duplicate
//! delivery) is skipped. A SKU that fails transiently reports the batch position of its first
//! command, so the queue redelivers from the lowest failed position and nothing is lost.

mod kinesis;

use std::collections::BTreeMap;

use futures::future::join_all;
use inventory_core::app::ApplyReport;
use inventory_core::domain::{Command, Sku};
use inventory_core::{AppError, Inventory};

pub use kinesis::{handle_kinesis_event, handle_records, StreamRecord};

/// What became of a batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Position of the first command that must be delivered again (with all after it), if any.
    pub retry_from: Option<usize>,
    /// Summed reports of the SKUs that were applied.
    pub report: ApplyReport,
}

/// Applies `batch` (in queue order) and says where redelivery must start, if anywhere.
pub async fn process_batch(inventory: &Inventory, batch: &[Command]) -> BatchOutcome {
    let groups = group_by_sku(batch);
    let results = join_all(groups.iter().map(|(sku, group)| async move {
        let commands: Vec<Command> = group.iter().map(|(_, c)| (*c).clone()).collect();
        (group[0].0, inventory.apply_commands(sku, &commands).await)
    }))
    .await;
    let mut outcome = BatchOutcome::default();
    for (first_position, result) in results {
        match result {
            Ok(report) => outcome.report.add(&report),
            Err(err) => {
                log_failure(&err, &batch[first_position].sku);
                outcome.retry_from = Some(
                    outcome
                        .retry_from
                        .map_or(first_position, |p| p.min(first_position)),
                );
            }
        }
    }
    outcome
}

fn log_failure(err: &AppError, sku: &Sku) {
    tracing::warn!(sku = %sku, error = %err, "commands not applied; they will be redelivered");
}

/// Commands per SKU with their batch positions, each group in arrival order.
fn group_by_sku(batch: &[Command]) -> BTreeMap<&Sku, Vec<(usize, &Command)>> {
    let mut groups: BTreeMap<&Sku, Vec<(usize, &Command)>> = BTreeMap::new();
    for (position, command) in batch.iter().enumerate() {
        groups
            .entry(&command.sku)
            .or_default()
            .push((position, command));
    }
    groups
}
