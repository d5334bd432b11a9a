//! Use case: accept a command. Receipts, adjustments, checkouts and releases are recorded,
//! queued (partition key: the SKU) and marked accepted, then answered 202 with the command's
//! id; the processor ([`super::apply`]) applies them. See [`super::command_log`] for the
//! acceptance handshake.

use std::sync::Arc;

use super::command_log::CommandLog;
use super::idempotency::digest;
use super::reservation_book::ReservationBook;
use crate::domain::{
    Action, Annotation, BucketCount, Caller, ClientId, Command, CommandId, HoldStatus,
    IdempotencyKey, InvalidValue, LowStockThreshold, Quantity, Reclassification, ReservationId,
    Sku,
};
use crate::error::AppError;
use crate::limits::{MAX_ADJUSTMENT, MAX_NOTE_LEN};
use crate::ports::{Acceptance, Clock, CommandQueue, CommandRecord};

pub(crate) struct Accept {
    pub(crate) log: Arc<CommandLog>,
    pub(crate) book: Arc<ReservationBook>,
    pub(crate) queue: Arc<dyn CommandQueue>,
    pub(crate) clock: Arc<dyn Clock>,
}

/// Which queued change a reservation request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HoldRequest {
    Checkout,
    Release,
}

impl HoldRequest {
    fn scope(self, id: &ReservationId) -> String {
        match self {
            Self::Checkout => format!("checkout/{id}"),
            Self::Release => format!("release/{id}"),
        }
    }

    /// Whether a reservation standing at `status` may be asked this (a domain rule).
    fn allowed_at(self, status: HoldStatus) -> bool {
        match self {
            Self::Checkout => status.may_check_out(),
            Self::Release => status.may_release(),
        }
    }

    fn action(self, reservation_id: ReservationId) -> Action {
        match self {
            Self::Checkout => Action::CommitHold { reservation_id },
            Self::Release => Action::ReleaseHold { reservation_id },
        }
    }
}

impl Accept {
    /// Accepts a receipt of `quantity` units of `sku`.
    pub(crate) async fn receive_stock(
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
        self.accept_one(format!("receipt/{sku}"), sku, action, key, caller)
            .await
    }

    /// Accepts an adjustment of `sku` by `delta` (non-zero) for `reason`.
    pub(crate) async fn adjust_stock(
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
        self.accept_one(format!("adjustment/{sku}"), sku, action, key, caller)
            .await
    }

    /// Accepts a move of `quantity` units of `sku` between two states of its on-hand stock.
    pub(crate) async fn reclassify_stock(
        &self,
        sku: Sku,
        states: Reclassification,
        quantity: Quantity,
        why: Annotation,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        check_annotation(&why)?;
        let action = Action::ReclassifyStock {
            states,
            quantity,
            why,
        };
        self.accept_one(format!("move/{sku}"), sku, action, key, caller)
            .await
    }

    /// Accepts a count of `sku`: `counted` units on hand, and, with `expected`, only if the
    /// item still has that many when it applies.
    pub(crate) async fn count_stock(
        &self,
        sku: Sku,
        counted: i64,
        expected: Option<i64>,
        why: Annotation,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        for (code, field, value) in [
            ("invalid_count", "quantity", Some(counted)),
            ("invalid_expected", "expected", expected),
        ] {
            if let Some(value) = value.filter(|value| !(0..=MAX_ADJUSTMENT).contains(value)) {
                return Err(InvalidValue::new(
                    code,
                    format!("{field} must be between 0 and {MAX_ADJUSTMENT}, got {value}"),
                )
                .into());
            }
        }
        check_annotation(&why)?;
        let action = Action::CountStock {
            counted,
            expected,
            why,
        };
        self.accept_one(format!("count/{sku}"), sku, action, key, caller)
            .await
    }

    /// Accepts a new escrow layout for `sku`: `count` buckets.
    pub(crate) async fn set_buckets(
        &self,
        sku: Sku,
        count: BucketCount,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        let action = Action::SetBuckets { count };
        self.accept_one(format!("buckets/{sku}"), sku, action, key, caller)
            .await
    }

    /// Accepts a low-stock threshold for `sku`: `low_stock` is told when its available units
    /// go below `below` (0: never).
    pub(crate) async fn set_low_stock(
        &self,
        sku: Sku,
        below: LowStockThreshold,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        let action = Action::SetLowStock { below };
        self.accept_one(format!("low-stock/{sku}"), sku, action, key, caller)
            .await
    }

    /// Accepts a checkout or a release of every line of a reservation.
    pub(crate) async fn hold_change(
        &self,
        id: &ReservationId,
        key: Option<&IdempotencyKey>,
        request: HoldRequest,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        let scope = request.scope(id);
        let digest = digest(&scope);
        let command_id = key.map_or_else(CommandId::random, |key| {
            CommandId::for_idempotency_key(caller.client_id(), &scope, key)
        });
        if key.is_some() && self.resubmit(command_id, &digest).await? {
            return Ok(command_id);
        }
        let reservation = self.book.load(id, caller).await?;
        let now = self.clock.now();
        let status = reservation.status_at(now);
        if !request.allowed_at(status) {
            return Err(AppError::ReservationNotActive { status });
        }
        // Queued under the item (its partition), whichever of its buckets holds.
        let commands = reservation
            .streams()
            .map(|stream| Command {
                id: command_id,
                sku: stream.item(),
                accepted_at: now,
                action: request.action(id.clone()),
            })
            .collect();
        self.submit(command_id, commands, digest, caller.client_id())
            .await
    }

    async fn accept_one(
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
    async fn submit(
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
        if self.log.add(id, &record).await? {
            self.queue.send(&record.commands).await?;
            self.log.mark(id, &record, 1, Acceptance::Accepted).await?;
            tracing::info!(command_id = %id, "command accepted");
            return Ok(id);
        }
        if self.resubmit(id, &request_digest).await? {
            Ok(id)
        } else {
            Err(AppError::Unavailable(format!("command {id} vanished")))
        }
    }

    /// Queues an already recorded command again if it was made by the same request, and marks it
    /// accepted. `false` if no such command was recorded; `IdempotencyKeyReused` if another
    /// request made it. A command the processor abandoned is first put back to awaiting, so no
    /// delivery of this attempt is dropped before it is accepted.
    async fn resubmit(&self, id: CommandId, request_digest: &str) -> Result<bool, AppError> {
        let Some((record, version)) = self.log.record(id).await? else {
            return Ok(false);
        };
        if record.request_digest != request_digest {
            return Err(AppError::IdempotencyKeyReused);
        }
        match record.acceptance {
            Acceptance::Accepted => self.queue.send(&record.commands).await?,
            Acceptance::Awaiting { .. } => {
                self.queue.send(&record.commands).await?;
                self.log
                    .mark(id, &record, version, Acceptance::Accepted)
                    .await?;
            }
            Acceptance::Abandoned => {
                let awaiting = Acceptance::Awaiting {
                    since: self.clock.now(),
                };
                self.log.mark(id, &record, version, awaiting).await?;
                self.queue.send(&record.commands).await?;
                self.log
                    .mark(id, &record, version + 1, Acceptance::Accepted)
                    .await?;
            }
        }
        Ok(true)
    }
}

/// A free-text note (reference, reason): 1–500 characters, not blank.
/// An annotation's note and reference, each a [`check_note`] when present.
fn check_annotation(why: &Annotation) -> Result<(), AppError> {
    if let Some(note) = &why.note {
        check_note("invalid_note", "note", note)?;
    }
    if let Some(reference) = &why.reference {
        check_note("invalid_reference", "reference", reference)?;
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::super::given::{shopper, sku, Given};
    use crate::domain::{Caller, HoldStatus, IdempotencyKey};
    use crate::error::AppError;

    #[tokio::test]
    async fn a_checkout_retried_under_its_key_is_one_command_applied_once() {
        let given = Given::new();
        given.stock("A", 5).await;
        let alice = shopper("alice");
        let held = given.reserve(&alice, &[("A", 2)], None).await.unwrap();
        let key = IdempotencyKey::parse("checkout-1").unwrap();

        let id = &held.reservation_id;
        let first = given.inventory.request_checkout(id, Some(&key), &alice);
        let first = first.await.unwrap();
        let again = given.inventory.request_checkout(id, Some(&key), &alice);
        assert_eq!(again.await.unwrap(), first);
        let report = given.processed().await;
        assert_eq!((report.applied, report.duplicates), (1, 1));

        let item = given.inventory.item(&sku("A")).await.unwrap();
        assert_eq!((item.committed, item.available), (2, 3));
        let view = given.inventory.reservation(id, &alice).await.unwrap();
        assert_eq!(view.status, HoldStatus::Committed);
    }

    #[tokio::test]
    async fn a_checked_out_reservation_is_not_released() {
        let given = Given::new();
        given.stock("A", 5).await;
        let alice = shopper("alice");
        let held = given.reserve(&alice, &[("A", 1)], None).await.unwrap();
        let id = &held.reservation_id;
        given
            .inventory
            .request_checkout(id, None, &alice)
            .await
            .unwrap();
        given.processed().await;

        let release = given.inventory.request_release(id, None, &alice).await;
        assert_eq!(
            release.unwrap_err(),
            AppError::ReservationNotActive {
                status: HoldStatus::Committed
            }
        );
    }

    #[tokio::test]
    async fn an_adjustment_of_nothing_or_without_a_reason_changes_nothing() {
        let given = Given::new();
        let admin = Caller::local_admin();
        for (delta, reason) in [(0, "count"), (1, "  ")] {
            let answer = given
                .inventory
                .adjust_stock(sku("A"), delta, reason.to_owned(), None, &admin)
                .await;
            assert!(matches!(answer, Err(AppError::Invalid(_))), "{answer:?}");
        }
        assert!(given.queue.try_receive(10).is_empty(), "nothing queued");
    }
}
