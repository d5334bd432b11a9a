//! Accepting commands: record them, queue them, answer at once with their id; and telling where
//! a command stands.

use serde::Serialize;

use super::reservations::digest;
use super::views::CommandView;
use super::Inventory;
use crate::domain::{
    Action, Command, CommandId, IdempotencyKey, InvalidValue, Quantity, RejectionCode, Sku,
};
use crate::error::AppError;
use crate::ports::{
    CommandOutcome, CommandRecord, Commit, Conflict, Record, RecordKey, RecordWrite, StoreError,
};

/// Largest adjustment, either way.
pub const MAX_ADJUSTMENT: i64 = 1_000_000_000;
/// Longest receipt reference or adjustment reason.
pub const MAX_NOTE_LEN: usize = 500;

/// Where a command stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CommandStatus {
    /// Queued, not applied everywhere yet.
    Pending,
    /// Took effect on every SKU it names.
    Applied,
    /// Could not take effect on at least one SKU.
    Rejected { reason: RejectionCode },
}

impl Inventory {
    /// Accepts a receipt of `quantity` units of `sku` onto the queue.
    pub async fn receive_stock(
        &self,
        sku: Sku,
        quantity: Quantity,
        reference: Option<String>,
        key: Option<&IdempotencyKey>,
    ) -> Result<CommandId, AppError> {
        if let Some(reference) = &reference {
            check_note("invalid_reference", "reference", reference)?;
        }
        let action = Action::ReceiveStock {
            quantity,
            reference,
        };
        self.accept(format!("receipt/{sku}"), sku, action, key)
            .await
    }

    /// Accepts an adjustment of `sku` by `delta` (non-zero) for `reason` onto the queue.
    pub async fn adjust_stock(
        &self,
        sku: Sku,
        delta: i64,
        reason: String,
        key: Option<&IdempotencyKey>,
    ) -> Result<CommandId, AppError> {
        if delta == 0 || delta.abs() > MAX_ADJUSTMENT {
            return Err(InvalidValue::new(
                "invalid_delta",
                format!("delta must be a non-zero integer within ±{MAX_ADJUSTMENT}, got {delta}"),
            )
            .into());
        }
        check_note("invalid_reason", "reason", &reason)?;
        let action = Action::AdjustStock { delta, reason };
        self.accept(format!("adjustment/{sku}"), sku, action, key)
            .await
    }

    async fn accept(
        &self,
        scope: String,
        sku: Sku,
        action: Action,
        key: Option<&IdempotencyKey>,
    ) -> Result<CommandId, AppError> {
        let digest = digest(&(&scope, &action));
        let id = key.map_or_else(CommandId::random, |key| {
            CommandId::for_idempotency_key(&scope, key)
        });
        let command = Command {
            id,
            sku,
            accepted_at: self.clock.now(),
            action,
        };
        self.submit(id, vec![command], digest).await
    }

    /// Records the command, then queues it; answers only once both are durable. A command id
    /// already recorded with the same request is queued again (the first attempt may have
    /// failed to queue; a duplicate delivery is harmless) and answered with the same id.
    pub(crate) async fn submit(
        &self,
        id: CommandId,
        commands: Vec<Command>,
        request_digest: String,
    ) -> Result<CommandId, AppError> {
        let write = RecordWrite {
            key: RecordKey::Command { command_id: id },
            expected: None,
            record: Record::Command(CommandRecord {
                request_digest: request_digest.clone(),
                commands: commands.clone(),
            }),
        };
        match self
            .store
            .commit(Commit {
                appends: Vec::new(),
                records: vec![write],
            })
            .await
        {
            Ok(()) => {
                self.queue.send(&commands).await?;
                tracing::info!(command_id = %id, parts = commands.len(), "command accepted");
                Ok(id)
            }
            Err(StoreError::Conflict(Conflict::Record { .. })) => {
                if self.resubmit(id, &request_digest).await? {
                    Ok(id)
                } else {
                    Err(AppError::Unavailable(format!("command {id} vanished")))
                }
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Queues an already recorded command again if it was made by the same request. `false` if
    /// no such command was recorded; `IdempotencyKeyReused` if another request made it.
    pub(crate) async fn resubmit(
        &self,
        id: CommandId,
        request_digest: &str,
    ) -> Result<bool, AppError> {
        match self.command_record(id).await? {
            None => Ok(false),
            Some(record) if record.request_digest == request_digest => {
                self.queue.send(&record.commands).await?;
                Ok(true)
            }
            Some(_) => Err(AppError::IdempotencyKeyReused),
        }
    }

    async fn command_record(&self, id: CommandId) -> Result<Option<CommandRecord>, AppError> {
        let found = self
            .store
            .read_records(&[RecordKey::Command { command_id: id }])
            .await?;
        Ok(match found.into_iter().next().flatten() {
            Some(stored) => match stored.record {
                Record::Command(record) => Some(record),
                _ => None,
            },
            None => None,
        })
    }

    /// Where a command stands: pending until every SKU it names has an outcome.
    pub async fn command(&self, id: CommandId) -> Result<CommandView, AppError> {
        let record = self
            .command_record(id)
            .await?
            .ok_or(AppError::CommandNotFound)?;
        let keys: Vec<RecordKey> = record
            .commands
            .iter()
            .map(|command| RecordKey::CommandOutcome {
                command_id: id,
                sku: command.sku.clone(),
            })
            .collect();
        let outcomes = self.store.read_records(&keys).await?;
        let mut status = CommandStatus::Applied;
        for outcome in outcomes {
            match outcome.map(|stored| stored.record) {
                Some(Record::CommandOutcome(CommandOutcome::Rejected { reason })) => {
                    status = CommandStatus::Rejected { reason };
                    break;
                }
                Some(Record::CommandOutcome(CommandOutcome::Applied)) => {}
                _ => status = CommandStatus::Pending,
            }
        }
        Ok(CommandView {
            command_id: id,
            status,
        })
    }
}

/// A free-text note (reference, reason): 1–500 characters, not blank.
fn check_note(code: &'static str, field: &str, text: &str) -> Result<(), AppError> {
    if text.trim().is_empty() || text.chars().count() > MAX_NOTE_LEN {
        return Err(InvalidValue::new(
            code,
            format!("{field} must be 1-{MAX_NOTE_LEN} characters and not blank"),
        )
        .into());
    }
    Ok(())
}
