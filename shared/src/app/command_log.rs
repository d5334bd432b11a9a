//! The command log: the records of commands the API accepted (`RecordKey::Command`) and the
//! processor's outcome per SKU (`RecordKey::CommandOutcome`), read and moved through their
//! acceptance here.
//!
//! The acceptance handshake lives here and in [`super::apply`]: the API records a command
//! `Awaiting`, queues it, then marks it `Accepted` and answers 202; the processor holds a
//! command back until it is accepted, and marks it `Abandoned` (dropping it) if that never
//! happens within [`ACCEPT_WAIT_MILLIS`](crate::config::ACCEPT_WAIT_MILLIS). Both marks are conditional writes on
//! the record, so the API and the processor never both win.

use std::sync::Arc;

use serde::Serialize;

use super::attempt::{write, Written};
use super::views::CommandView;
use crate::domain::{Caller, CommandId, RejectionCode};
use crate::error::AppError;
use crate::ports::{
    Acceptance, CommandOutcome, CommandRecord, ParkReason, Record, RecordKey, RecordWrite, Records,
    Transaction, Transactions, Versioned,
};

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
        /// For a count refused `stale_count`: the item's on-hand figure when it was refused,
        /// the one to count against next.
        #[serde(skip_serializing_if = "Option::is_none")]
        on_hand: Option<i64>,
    },
    /// Set aside by the processor on at least one SKU for an operator to redrive.
    Parked {
        /// Why.
        reason: ParkReason,
    },
}

pub(crate) struct CommandLog {
    pub(crate) records: Arc<dyn Records>,
    pub(crate) transactions: Arc<dyn Transactions>,
}

impl CommandLog {
    /// The recorded command `id` and its record's version.
    pub(crate) async fn record(
        &self,
        id: CommandId,
    ) -> Result<Option<(CommandRecord, u64)>, AppError> {
        let found = self
            .records
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

    /// Records a new command; `false` if one is recorded under its id already.
    pub(crate) async fn add(
        &self,
        id: CommandId,
        record: &CommandRecord,
    ) -> Result<bool, AppError> {
        let write_new = RecordWrite {
            key: RecordKey::Command { command_id: id },
            expected: None,
            record: Record::Command(record.clone()),
        };
        let written = write(
            self.transactions.as_ref(),
            Transaction::records(vec![write_new]),
        )
        .await?;
        Ok(matches!(written, Written::Done))
    }

    /// Moves a recorded command to `acceptance`, over the version read. Losing the race to a
    /// retry that accepted it first is success; losing it to the processor abandoning it is a
    /// 503 (the client retries with its key).
    pub(crate) async fn mark(
        &self,
        id: CommandId,
        record: &CommandRecord,
        version: u64,
        acceptance: Acceptance,
    ) -> Result<(), AppError> {
        let update = RecordWrite {
            key: RecordKey::Command { command_id: id },
            expected: Some(version),
            record: Record::Command(CommandRecord {
                acceptance,
                ..record.clone()
            }),
        };
        let written = write(
            self.transactions.as_ref(),
            Transaction::records(vec![update]),
        )
        .await?;
        if let Written::Done = written {
            return Ok(());
        }
        match self.record(id).await? {
            Some((record, _)) if record.acceptance == Acceptance::Accepted => Ok(()),
            _ => Err(AppError::Unavailable(format!(
                "command {id} was not accepted in time; retry the request"
            ))),
        }
    }

    /// Where a command stands: pending until every SKU it names has an outcome. Only its issuer
    /// (or an admin) learns that it exists.
    pub(crate) async fn status(
        &self,
        id: CommandId,
        caller: &Caller,
    ) -> Result<CommandView, AppError> {
        let (record, _) = self
            .record(id)
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
        let outcomes = self.records.read_records(&keys).await?;
        let mut status = match record.acceptance {
            Acceptance::Accepted => CommandStatus::Applied,
            Acceptance::Awaiting { .. } => CommandStatus::Pending,
            Acceptance::Abandoned => {
                return Ok(CommandView {
                    command_id: id,
                    status: CommandStatus::Rejected {
                        reason: RejectionCode::CommandNotAccepted,
                        on_hand: None,
                    },
                })
            }
        };
        for outcome in outcomes {
            match outcome.map(|stored| stored.record) {
                Some(Record::CommandOutcome(CommandOutcome::Rejected { reason, on_hand })) => {
                    status = CommandStatus::Rejected { reason, on_hand };
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
