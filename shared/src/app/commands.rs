//! Accepting commands: record them, queue them, answer at once with their id; and telling where
//! a command stands.

use serde::Serialize;

use super::reservations::digest;
use super::views::CommandView;
use super::Inventory;
use crate::domain::{
    Action, Caller, ClientId, Command, CommandId, IdempotencyKey, InvalidValue, Quantity,
    RejectionCode, Sku,
};
use crate::error::AppError;
use crate::ports::{
    Acceptance, CommandOutcome, CommandRecord, Conflict, ParkReason, Record, RecordKey,
    RecordWrite, StoreError, Transaction, Versioned,
};

/// Largest adjustment, either way.
pub const MAX_ADJUSTMENT: i64 = 1_000_000_000;
/// Longest receipt reference or adjustment reason.
pub const MAX_NOTE_LEN: usize = 500;

/// Where a command stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CommandStatus {
    /// Queued, not applied everywhere yet.
    Pending,
    /// Took effect on every SKU it names.
    Applied,
    /// Could not take effect on at least one SKU.
    Rejected {
        /// Why.
        reason: RejectionCode,
    },
    /// Set aside by the processor on at least one SKU for an operator to redrive.
    Parked {
        /// Why.
        reason: ParkReason,
    },
}

impl Inventory {
    /// Accepts a receipt of `quantity` units of `sku` onto the queue.
    pub async fn receive_stock(
        &self,
        sku: Sku,
        quantity: Quantity,
        reference: Option<String>,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        if let Some(reference) = &reference {
            check_note("invalid_reference", "reference", reference)?;
        }
        let action = Action::ReceiveStock {
            quantity,
            reference,
        };
        self.accept(format!("receipt/{sku}"), sku, action, key, caller)
            .await
    }

    /// Accepts an adjustment of `sku` by `delta` (non-zero) for `reason` onto the queue.
    pub async fn adjust_stock(
        &self,
        sku: Sku,
        delta: i64,
        reason: String,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
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
        self.accept(format!("adjustment/{sku}"), sku, action, key, caller)
            .await
    }

    async fn accept(
        &self,
        scope: String,
        sku: Sku,
        action: Action,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        let digest = digest(&(&scope, &action));
        let id = key.map_or_else(CommandId::random, |key| {
            CommandId::for_idempotency_key(caller.client_id(), &scope, key)
        });
        let command = Command {
            id,
            sku,
            accepted_at: self.clock.now(),
            action,
        };
        self.submit(id, vec![command], digest, caller.client_id())
            .await
    }

    /// Records the command, queues it, then marks it accepted; answers only once all three are
    /// durable. A command id already recorded with the same request is queued again (the first
    /// attempt may have failed part-way; a duplicate delivery is harmless) and accepted.
    pub(crate) async fn submit(
        &self,
        id: CommandId,
        commands: Vec<Command>,
        request_digest: String,
        issued_by: &ClientId,
    ) -> Result<CommandId, AppError> {
        let record = CommandRecord {
            request_digest: request_digest.clone(),
            commands,
            issued_by: Some(issued_by.clone()),
            acceptance: Acceptance::Awaiting {
                since: self.clock.now(),
            },
        };
        let write = RecordWrite {
            key: RecordKey::Command { command_id: id },
            expected: None,
            record: Record::Command(record.clone()),
        };
        match self.store.write(Transaction::records(vec![write])).await {
            Ok(()) => {
                self.queue.send(&record.commands).await?;
                self.mark(id, &record, 1, Acceptance::Accepted).await?;
                tracing::info!(command_id = %id, "command accepted");
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

    /// Queues an already recorded command again if it was made by the same request, and marks it
    /// accepted. `false` if no such command was recorded; `IdempotencyKeyReused` if another
    /// request made it. A command the processor abandoned is first put back to awaiting, so no
    /// delivery of this attempt is dropped before it is accepted.
    pub(crate) async fn resubmit(
        &self,
        id: CommandId,
        request_digest: &str,
    ) -> Result<bool, AppError> {
        let Some((record, version)) = self.command_record(id).await? else {
            return Ok(false);
        };
        if record.request_digest != request_digest {
            return Err(AppError::IdempotencyKeyReused);
        }
        match record.acceptance {
            Acceptance::Accepted => self.queue.send(&record.commands).await?,
            Acceptance::Awaiting { .. } => {
                self.queue.send(&record.commands).await?;
                self.mark(id, &record, version, Acceptance::Accepted)
                    .await?;
            }
            Acceptance::Abandoned => {
                let awaiting = Acceptance::Awaiting {
                    since: self.clock.now(),
                };
                self.mark(id, &record, version, awaiting).await?;
                self.queue.send(&record.commands).await?;
                self.mark(id, &record, version + 1, Acceptance::Accepted)
                    .await?;
            }
        }
        Ok(true)
    }

    /// Moves a recorded command to `acceptance`, over the version read. Losing the race to a
    /// retry that accepted it first is success; losing it to the processor abandoning it is a
    /// 503 (the client retries with its key).
    async fn mark(
        &self,
        id: CommandId,
        record: &CommandRecord,
        version: u64,
        acceptance: Acceptance,
    ) -> Result<(), AppError> {
        let write = RecordWrite {
            key: RecordKey::Command { command_id: id },
            expected: Some(version),
            record: Record::Command(CommandRecord {
                acceptance,
                ..record.clone()
            }),
        };
        match self.store.write(Transaction::records(vec![write])).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict(_)) => match self.command_record(id).await? {
                Some((record, _)) if record.acceptance == Acceptance::Accepted => Ok(()),
                _ => Err(AppError::Unavailable(format!(
                    "command {id} was not accepted in time; retry the request"
                ))),
            },
            Err(err) => Err(err.into()),
        }
    }

    async fn command_record(
        &self,
        id: CommandId,
    ) -> Result<Option<(CommandRecord, u64)>, AppError> {
        let found = self
            .store
            .read_records(&[RecordKey::Command { command_id: id }])
            .await?;
        Ok(match found.into_iter().next().flatten() {
            Some(Versioned {
                version,
                record: Record::Command(record),
            }) => Some((record, version)),
            _ => None,
        })
    }

    /// Where a command stands: pending until every SKU it names has an outcome. Only its issuer
    /// (or an admin) learns that it exists.
    pub async fn command(&self, id: CommandId, caller: &Caller) -> Result<CommandView, AppError> {
        let (record, _) = self
            .command_record(id)
            .await?
            .filter(|(record, _)| caller.may_act_for(record.issued_by.as_ref()))
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
        let mut status = match record.acceptance {
            Acceptance::Accepted => CommandStatus::Applied,
            Acceptance::Awaiting { .. } => CommandStatus::Pending,
            Acceptance::Abandoned => {
                return Ok(CommandView {
                    command_id: id,
                    status: CommandStatus::Rejected {
                        reason: RejectionCode::CommandNotAccepted,
                    },
                })
            }
        };
        for outcome in outcomes {
            match outcome.map(|stored| stored.record) {
                Some(Record::CommandOutcome(CommandOutcome::Rejected { reason })) => {
                    status = CommandStatus::Rejected { reason };
                    break;
                }
                Some(Record::CommandOutcome(CommandOutcome::Applied)) => {}
                Some(Record::CommandOutcome(CommandOutcome::Parked(parked)))
                    if parked.redriven_at.is_none() =>
                {
                    status = CommandStatus::Parked {
                        reason: parked.reason,
                    };
                }
                _ if matches!(status, CommandStatus::Parked { .. }) => {}
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
