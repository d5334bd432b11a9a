//! Parked commands, for operators: listing them and putting them back on the queue; and
//! accepted commands that never reached an outcome, queued again.
//!
//! A redrive marks the parked record redriven (a conditional write over the version listed),
//! then queues the command again under its own id. The processor applies a redriven command
//! like a new one and writes its outcome over the parked record; a redelivery of the original
//! record still finds it parked and leaves it. Redriving twice queues the command twice, and
//! the outcome record makes the second a duplicate, so a redrive can always be repeated.
//!
//! A requeue finds, among the command records the API keeps (for the dedupe window), every
//! command answered 202 that has no outcome on its SKU (applied, rejected or parked), and
//! queues it again under its own id: what a record that left the stream unapplied (past its
//! retention) never did. A command still on its way, or waiting in its SKU's deferred list, is
//! queued twice and applied once, so a requeue can always be repeated too.

use std::sync::Arc;

use base64::Engine as _;

use super::attempt::{write, Written};
use crate::domain::{Command, CommandId, Sku, Timestamp};
use crate::error::AppError;
use crate::ports::{
    Acceptance, Clock, CommandHistory, CommandOutcome, CommandQueue, ParkedCommand, ParkedEntry,
    ParkedIndex, Record, RecordKey, RecordWrite, Records, Transaction, Transactions,
};

/// Which parked commands to redrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedriveSelection {
    /// Every parked command.
    All,
    /// Those filed under these command ids (on every SKU).
    Ids(Vec<CommandId>),
}

/// What became of one parked command asked to be redriven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redriven {
    /// Back on the queue.
    Queued,
    /// This version cannot read its body either; it stays parked.
    Unreadable(String),
    /// It changed since it was listed (applied, or redriven by someone else); left alone.
    Changed,
}

/// A parked command's queued bytes.
pub fn parked_bytes(parked: &ParkedCommand) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(&parked.body)
        .map_err(|err| format!("the parked body is not base64: {err}"))
}

pub(crate) struct Parking {
    pub(crate) parked: Arc<dyn ParkedIndex>,
    pub(crate) history: Arc<dyn CommandHistory>,
    pub(crate) records: Arc<dyn Records>,
    pub(crate) transactions: Arc<dyn Transactions>,
    pub(crate) queue: Arc<dyn CommandQueue>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Parking {
    /// Every parked command (redriven ones too, until they are applied), oldest first.
    pub(crate) async fn parked_commands(&self) -> Result<Vec<ParkedEntry>, AppError> {
        Ok(self.parked.parked_commands().await?)
    }

    /// Puts the selected parked commands back on the queue, each under its own id.
    pub(crate) async fn redrive(
        &self,
        selection: &RedriveSelection,
    ) -> Result<Vec<(CommandId, Sku, Redriven)>, AppError> {
        let chosen =
            self.parked
                .parked_commands()
                .await?
                .into_iter()
                .filter(|entry| match selection {
                    RedriveSelection::All => true,
                    RedriveSelection::Ids(ids) => ids.contains(&entry.command_id),
                });
        let mut results = Vec::new();
        for entry in chosen {
            let outcome = self.redrive_one(&entry).await?;
            results.push((entry.command_id, entry.sku, outcome));
        }
        Ok(results)
    }

    /// Every command accepted (answered 202) at or after `since` that has no outcome on its
    /// SKU, oldest first; queued again under its own id unless `dry_run`.
    pub(crate) async fn requeue(
        &self,
        since: Timestamp,
        dry_run: bool,
    ) -> Result<Vec<Command>, AppError> {
        let mut accepted: Vec<Command> = self
            .history
            .commands_since(since)
            .await?
            .into_iter()
            .filter(|(_, record)| record.acceptance == Acceptance::Accepted)
            .flat_map(|(_, record)| record.commands)
            .collect();
        accepted.sort_by(|a, b| (a.accepted_at, a.id, &a.sku).cmp(&(b.accepted_at, b.id, &b.sku)));
        let outcomes: Vec<RecordKey> = accepted
            .iter()
            .map(|command| RecordKey::CommandOutcome {
                command_id: command.id,
                sku: command.sku.clone(),
            })
            .collect();
        let outcomes = self.records.read_records(&outcomes).await?;
        let unfinished: Vec<Command> = accepted
            .into_iter()
            .zip(outcomes)
            .filter(|(_, outcome)| outcome.is_none())
            .map(|(command, _)| command)
            .collect();
        if !dry_run && !unfinished.is_empty() {
            self.queue.send(&unfinished).await?;
            tracing::info!(
                commands = unfinished.len(),
                "unfinished commands queued again"
            );
        }
        Ok(unfinished)
    }

    async fn redrive_one(&self, entry: &ParkedEntry) -> Result<Redriven, AppError> {
        let command = match parked_bytes(&entry.parked).and_then(|bytes| {
            serde_json::from_slice::<Command>(&bytes).map_err(|err| err.to_string())
        }) {
            Ok(command) => command,
            Err(err) => return Ok(Redriven::Unreadable(err)),
        };
        if entry.parked.redriven_at.is_none() {
            let redriven = RecordWrite {
                key: RecordKey::CommandOutcome {
                    command_id: entry.command_id,
                    sku: entry.sku.clone(),
                },
                expected: Some(entry.version),
                record: Record::CommandOutcome(CommandOutcome::Parked(ParkedCommand {
                    redriven_at: Some(self.clock.now()),
                    ..entry.parked.clone()
                })),
            };
            let marked = write(
                self.transactions.as_ref(),
                Transaction::records(vec![redriven]),
            );
            if let Written::Lost(_) = marked.await? {
                return Ok(Redriven::Changed);
            }
        }
        self.queue.send(std::slice::from_ref(&command)).await?;
        tracing::info!(command_id = %command.id, sku = %command.sku, "parked command redriven");
        Ok(Redriven::Queued)
    }
}
