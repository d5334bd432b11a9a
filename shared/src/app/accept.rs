//! Use case: accept a command. Receipts, adjustments, checkouts and releases are recorded,
//! queued (partition key: the SKU) and marked accepted, then answered 202 with the command's
//! id; the processor ([`super::apply`]) applies them. See [`super::command_log`] for the
//! acceptance handshake.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;

use super::command_log::CommandLog;
use super::idempotency::digest;
use super::locations::LocationBook;
use super::reservation_book::ReservationBook;
use crate::domain::{
    Action, AfterSale, Annotation, BucketCount, Caller, ClientId, Command, CommandId, HoldLine,
    HoldStatus, IdempotencyKey, InvalidValue, ItemAt, Line, LocationId, LowStockThreshold,
    Quantity, Reclassification, RejectionCode, ReservationId, Sku, TransferId,
};
use crate::error::AppError;
use crate::limits::{MAX_ADJUSTMENT, MAX_LINES, MAX_NOTE_LEN};
use crate::ports::{Acceptance, Clock, CommandQueue, CommandRecord};

pub(crate) struct Accept {
    pub(crate) log: Arc<CommandLog>,
    pub(crate) locations: Arc<LocationBook>,
    pub(crate) book: Arc<ReservationBook>,
    pub(crate) queue: Arc<dyn CommandQueue>,
    pub(crate) clock: Arc<dyn Clock>,
}

/// Which queued change a reservation request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HoldRequest {
    Checkout,
    Release,
    AfterSale(AfterSaleRequest),
}

/// A shipment, a cancellation or a return of a checked-out reservation's units: of the lines
/// named, or (a shipment or a cancellation naming none) of every unit left to ship.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AfterSaleRequest {
    #[serde(skip)]
    after: AfterSale,
    lines: Option<Vec<Line>>,
    restock: bool,
    reference: Option<String>,
}

impl AfterSaleRequest {
    /// Ship the units of `lines` (`None`: every unit sold and not yet shipped or cancelled),
    /// under `reference` (the parcel, the shipment).
    pub fn fulfill(lines: Option<Vec<Line>>, reference: Option<String>) -> Result<Self, AppError> {
        Self::new(AfterSale::Fulfill, lines, false, reference)
    }

    /// Cancel the sale of the units of `lines` not yet shipped (`None`: all of them).
    pub fn cancel(lines: Option<Vec<Line>>) -> Result<Self, AppError> {
        Self::new(AfterSale::Cancel, lines, false, None)
    }

    /// Take back shipped units of `lines`: for sale again if `restock`, else set aside as
    /// damaged.
    pub fn take_back(
        lines: Vec<Line>,
        restock: bool,
        reference: Option<String>,
    ) -> Result<Self, AppError> {
        Self::new(AfterSale::Return, Some(lines), restock, reference)
    }

    fn new(
        after: AfterSale,
        lines: Option<Vec<Line>>,
        restock: bool,
        reference: Option<String>,
    ) -> Result<Self, AppError> {
        if let Some(lines) = &lines {
            Line::check_all(lines, MAX_LINES, "")?;
        }
        if let Some(reference) = &reference {
            check_note("invalid_reference", "reference", reference)?;
        }
        Ok(Self {
            after,
            lines,
            restock,
            reference,
        })
    }

    /// What it asks of a reservation's `holds` on one item (one per location it is held at):
    /// the units of its line (`None`: all that are left); `Ok(None)` when it names other lines
    /// only, or names none and nothing is left on this one.
    fn asks(&self, holds: &[&HoldLine]) -> Result<Option<Option<Quantity>>, AppError> {
        let left: i64 = holds.iter().map(|hold| hold.left_to(self.after)).sum();
        let Some(lines) = &self.lines else {
            return Ok((left > 0).then_some(None));
        };
        let Some(item) = holds.first().map(|hold| hold.stream.item()) else {
            return Ok(None);
        };
        let Some(line) = lines.iter().find(|line| &line.sku == item) else {
            return Ok(None);
        };
        HoldLine::share(holds, self.after, line.quantity).map_err(|code| {
            AppError::LineRefused {
                sku: line.sku.clone(),
                code,
                requested: line.quantity.units(),
                left,
            }
        })?;
        Ok(Some(Some(line.quantity)))
    }

    /// A line naming a SKU the reservation does not hold.
    fn stray_line<'a>(&'a self, items: &BTreeSet<&Sku>) -> Option<&'a Line> {
        self.lines
            .as_ref()
            .and_then(|lines| lines.iter().find(|line| !items.contains(&line.sku)))
    }

    /// The command for `quantity` units of a line (`None`: all left); a return always names
    /// its units.
    fn action(&self, reservation_id: ReservationId, quantity: Option<Quantity>) -> Option<Action> {
        Some(match self.after {
            AfterSale::Fulfill => Action::FulfillHold {
                reservation_id,
                quantity,
                reference: self.reference.clone(),
            },
            AfterSale::Cancel => Action::CancelHold {
                reservation_id,
                quantity,
            },
            AfterSale::Return => Action::ReturnHold {
                reservation_id,
                quantity: quantity?,
                restock: self.restock,
                reference: self.reference.clone(),
            },
        })
    }
}

impl HoldRequest {
    fn scope(&self, id: &ReservationId) -> String {
        match self {
            Self::Checkout => format!("checkout/{id}"),
            Self::Release => format!("release/{id}"),
            Self::AfterSale(request) => match request.after {
                AfterSale::Fulfill => format!("fulfillment/{id}"),
                AfterSale::Cancel => format!("cancellation/{id}"),
                AfterSale::Return => format!("return/{id}"),
            },
        }
    }

    /// What a retry must repeat to be the same request: the route, and the body if it has one.
    fn digest(&self, scope: &str) -> String {
        match self {
            Self::Checkout | Self::Release => digest(&scope),
            Self::AfterSale(request) => digest(&(scope, request)),
        }
    }

    /// Whether a reservation standing at `status` may be asked this (a domain rule).
    fn allowed_at(&self, status: HoldStatus) -> bool {
        match self {
            Self::Checkout => status.may_check_out(),
            Self::Release => status.may_release(),
            Self::AfterSale(request) => status.may_settle(request.after),
        }
    }

    /// The command for a reservation's `holds` on one item, if this asks anything of them.
    fn action(
        &self,
        reservation_id: &ReservationId,
        holds: &[&HoldLine],
    ) -> Result<Option<Action>, AppError> {
        let reservation_id = reservation_id.clone();
        Ok(match self {
            Self::Checkout => Some(Action::CommitHold { reservation_id }),
            Self::Release => Some(Action::ReleaseHold { reservation_id }),
            Self::AfterSale(request) => request
                .asks(holds)?
                .and_then(|quantity| request.action(reservation_id, quantity)),
        })
    }
}

impl Accept {
    /// Accepts a receipt of `quantity` units of `sku`.
    pub(crate) async fn receive_stock(
        &self,
        item: impl Into<ItemAt>,
        quantity: Quantity,
        why: Annotation,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        let ItemAt { sku, location } = item.into();
        self.check_location(&location).await?;
        check_annotation(&why)?;
        let action = Action::ReceiveStock {
            location: location.clone(),
            quantity,
            why,
        };
        self.accept_one(format!("receipt/{sku}"), sku, action, key, caller)
            .await
    }

    /// Accepts an adjustment of `sku` by `delta` (non-zero), `why`.
    pub(crate) async fn adjust_stock(
        &self,
        item: impl Into<ItemAt>,
        delta: i64,
        why: Annotation,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        let ItemAt { sku, location } = item.into();
        self.check_location(&location).await?;
        if delta == 0 || delta.abs() > MAX_ADJUSTMENT {
            return Err(InvalidValue::new(
                "invalid_delta",
                format!("delta must be a non-zero integer within ±{MAX_ADJUSTMENT}, got {delta}"),
            )
            .into());
        }
        check_annotation(&why)?;
        let action = Action::AdjustStock {
            location: location.clone(),
            delta,
            why,
        };
        self.accept_one(format!("adjustment/{sku}"), sku, action, key, caller)
            .await
    }

    /// Accepts a move of `quantity` units of `sku` between two states of its on-hand stock.
    pub(crate) async fn reclassify_stock(
        &self,
        item: impl Into<ItemAt>,
        states: Reclassification,
        quantity: Quantity,
        why: Annotation,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        let ItemAt { sku, location } = item.into();
        self.check_location(&location).await?;
        check_annotation(&why)?;
        let action = Action::ReclassifyStock {
            location: location.clone(),
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
        item: impl Into<ItemAt>,
        counted: i64,
        expected: Option<i64>,
        why: Annotation,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        let ItemAt { sku, location } = item.into();
        self.check_location(&location).await?;
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
            location: location.clone(),
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
        item: impl Into<ItemAt>,
        count: BucketCount,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        let ItemAt { sku, location } = item.into();
        self.check_location(&location).await?;
        let action = Action::SetBuckets {
            location: location.clone(),
            count,
        };
        self.accept_one(format!("buckets/{sku}"), sku, action, key, caller)
            .await
    }

    /// Refuses a location the shop has not registered (`default` needs no read).
    async fn check_location(&self, location: &LocationId) -> Result<(), AppError> {
        if location.is_default() {
            return Ok(());
        }
        self.locations.known_location(location).await.map(drop)
    }

    /// Accepts a transfer of `quantity` units of `sku` from one of the shop's locations to
    /// another, under `reference` (the shipment); answers its command and the transfer.
    pub(crate) async fn transfer_stock(
        &self,
        sku: Sku,
        (from, to): (LocationId, LocationId),
        quantity: Quantity,
        reference: Option<String>,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<(CommandId, TransferId), AppError> {
        if let Some(reference) = &reference {
            check_note("invalid_reference", "reference", reference)?;
        }
        let scope = format!("transfer/{sku}");
        let id = command_id(&scope, key, caller);
        let transfer_id = TransferId::new(sku.clone(), from, to, id)?;
        self.check_location(transfer_id.from()).await?;
        self.check_location(transfer_id.to()).await?;
        let action = Action::TransferStock {
            transfer_id: transfer_id.clone(),
            quantity,
            reference,
        };
        let id = self.accept_as(id, &scope, sku, action, caller).await?;
        Ok((id, transfer_id))
    }

    /// Accepts a receipt at its destination of `quantity` units of a transfer (`None`: all
    /// still in transit). Applied after the transfer (both are queued under its item): one
    /// with none of its units in transit is rejected `nothing_in_transit` then.
    pub(crate) async fn receive_transfer(
        &self,
        transfer_id: TransferId,
        quantity: Option<Quantity>,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        let scope = format!("transfer-receipt/{transfer_id}");
        let sku = transfer_id.sku().clone();
        let action = Action::ReceiveTransfer {
            transfer_id,
            quantity,
        };
        self.accept_one(scope, sku, action, key, caller).await
    }

    /// Accepts a low-stock threshold for `sku` (at a location): `low_stock` is told when its
    /// available units (there) go below `below` (0: never).
    pub(crate) async fn set_low_stock(
        &self,
        item: impl Into<ItemAt>,
        below: LowStockThreshold,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        let ItemAt { sku, location } = item.into();
        self.check_location(&location).await?;
        let action = Action::SetLowStock { location, below };
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
        let digest = request.digest(&scope);
        let command_id = command_id(&scope, key, caller);
        if key.is_some() && self.resubmit(command_id, &digest).await? {
            return Ok(command_id);
        }
        let reservation = self.book.load(id, caller).await?;
        let now = self.clock.now();
        let status = reservation.status_at(now);
        if !request.allowed_at(status) {
            return Err(AppError::ReservationNotActive { status });
        }
        if let HoldRequest::AfterSale(after) = &request {
            if let Some(line) = after.stray_line(&reservation.items()) {
                return Err(AppError::LineRefused {
                    sku: line.sku.clone(),
                    code: RejectionCode::SkuNotInReservation,
                    requested: line.quantity.units(),
                    left: 0,
                });
            }
        }
        // One command per item, queued under it (its partition), whichever of its locations
        // and buckets hold: it acts on each of the reservation's holds on the item.
        let mut commands = Vec::new();
        for (item, holds) in reservation.by_item() {
            if let Some(action) = request.action(id, &holds)? {
                commands.push(Command {
                    id: command_id,
                    sku: item.clone(),
                    accepted_at: now,
                    action,
                });
            }
        }
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
        let id = command_id(&scope, key, caller);
        self.accept_as(id, &scope, sku, action, caller).await
    }

    /// Accepts `action` on `sku` as the command `id` (of the request `scope` names).
    async fn accept_as(
        &self,
        id: CommandId,
        scope: &str,
        sku: Sku,
        action: Action,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        let digest = digest(&(scope, &action));
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

/// The id of the command a request of `caller` makes: named by its `Idempotency-Key` (within
/// the request's `scope`) when it has one, so that a retry names the same command.
fn command_id(scope: &str, key: Option<&IdempotencyKey>, caller: &Caller) -> CommandId {
    key.map_or_else(CommandId::random, |key| {
        CommandId::for_idempotency_key(caller.client_id(), scope, key)
    })
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
    use super::super::given::{cart, shopper, sku, stream, Given};
    use super::AfterSaleRequest;
    use crate::domain::{Caller, HoldStatus, IdempotencyKey, RejectionCode};
    use crate::error::AppError;
    use crate::ports::Streams;

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
            let why = crate::domain::Annotation::from_text(reason.to_owned());
            let answer = given
                .inventory
                .adjust_stock(sku("A"), delta, why, None, &admin)
                .await;
            assert!(matches!(answer, Err(AppError::Invalid(_))), "{answer:?}");
        }
        assert!(given.queue.try_receive(10).is_empty(), "nothing queued");
    }

    fn figures(item: &crate::app::ItemView) -> (i64, i64, i64, i64) {
        (
            item.on_hand,
            item.committed,
            item.available,
            item.unavailable.damaged,
        )
    }

    #[tokio::test]
    async fn a_sold_cart_ships_in_parts_is_cancelled_in_part_and_comes_back_from_a_split_item() {
        let given = Given::new();
        given.stock("A", 40).await;
        given.stock("B", 5).await;
        given.buckets("A", 4).await;
        let alice = shopper("alice");
        let held = given
            .reserve(&alice, &[("A", 6), ("B", 2)], None)
            .await
            .unwrap();
        let id = &held.reservation_id;
        let key = |name: &str| IdempotencyKey::parse(name).unwrap();
        given
            .inventory
            .request_checkout(id, None, &alice)
            .await
            .unwrap();
        given.processed().await;

        // Ship 4 of A and all of B; then cancel 1 of A; the last unit of A ships alone.
        let ship = AfterSaleRequest::fulfill(Some(cart(&[("A", 4)])), Some("parcel-1".into()));
        let inventory = &given.inventory;
        inventory
            .request_after_sale(id, ship.unwrap(), Some(&key("ship-1")), &alice)
            .await
            .unwrap();
        let rest_of_b = AfterSaleRequest::fulfill(Some(cart(&[("B", 2)])), None).unwrap();
        inventory
            .request_after_sale(id, rest_of_b, Some(&key("ship-2")), &alice)
            .await
            .unwrap();
        let report = given.processed().await;
        assert_eq!((report.applied, report.rejected), (2, 0));
        let a = inventory.item_with_buckets(&sku("A")).await.unwrap();
        assert_eq!(figures(&a), (36, 2, 34, 0));
        let cancel = AfterSaleRequest::cancel(Some(cart(&[("A", 1)]))).unwrap();
        inventory
            .request_after_sale(id, cancel, Some(&key("cancel-1")), &alice)
            .await
            .unwrap();
        given.processed().await;
        let a = inventory.item_with_buckets(&sku("A")).await.unwrap();
        assert_eq!(
            figures(&a),
            (36, 1, 35, 0),
            "the cancelled unit is for sale"
        );
        let view = inventory.reservation(id, &alice).await.unwrap();
        assert_eq!(view.status, HoldStatus::Committed, "one unit of A to ship");
        let last = AfterSaleRequest::fulfill(None, None).unwrap();
        inventory
            .request_after_sale(id, last, Some(&key("ship-3")), &alice)
            .await
            .unwrap();
        given.processed().await;
        let view = inventory.reservation(id, &alice).await.unwrap();
        assert_eq!(view.status, HoldStatus::Fulfilled);
        let shipped: Vec<_> = view
            .lines
            .iter()
            .map(|line| (line.fulfilled, line.cancelled, line.returned))
            .collect();
        assert_eq!(shipped, vec![(5, 1, 0), (2, 0, 0)]);

        // Two of A come back: one for sale, one damaged.
        for (restock, name) in [(true, "return-1"), (false, "return-2")] {
            let back = AfterSaleRequest::take_back(cart(&[("A", 1)]), restock, None).unwrap();
            inventory
                .request_after_sale(id, back, Some(&key(name)), &alice)
                .await
                .unwrap();
        }
        given.processed().await;
        let a = inventory.item_with_buckets(&sku("A")).await.unwrap();
        assert_eq!(figures(&a), (37, 0, 36, 1));
        let buckets = a.buckets.expect("a split item's buckets");
        assert!(
            buckets.iter().all(|bucket| bucket.available >= 0),
            "{buckets:?}"
        );
        // Nothing freed is stranded: the item sells its last unit for sale.
        assert!(given.reserve(&alice, &[("A", 36)], None).await.is_ok());
        // Every change alice asked for names her; the receipt, the admin.
        let events = given.store.read_stream(&stream("B"), 0).await.unwrap();
        let actors: Vec<(&str, Option<&str>)> = events
            .iter()
            .map(|event| {
                (
                    event.change.kind(),
                    event.actor.as_ref().map(|a| a.as_str()),
                )
            })
            .collect();
        let admin = Caller::local_admin();
        assert_eq!(
            actors,
            vec![
                ("received", Some(admin.client_id().as_str())),
                ("held", Some("alice")),
                ("committed", Some("alice")),
                ("fulfilled", Some("alice")),
            ]
        );
    }

    #[tokio::test]
    async fn a_line_asking_what_the_reservation_cannot_give_is_refused_and_nothing_is_queued() {
        let given = Given::new();
        given.stock("A", 5).await;
        let alice = shopper("alice");
        let held = given.reserve(&alice, &[("A", 2)], None).await.unwrap();
        let id = &held.reservation_id;
        let key = IdempotencyKey::parse("k").unwrap();
        let ship = |lines| AfterSaleRequest::fulfill(lines, None).unwrap();
        let answer = given
            .inventory
            .request_after_sale(id, ship(None), Some(&key), &alice)
            .await;
        assert_eq!(
            answer.unwrap_err(),
            AppError::ReservationNotActive {
                status: HoldStatus::Active
            },
            "not checked out yet"
        );
        given
            .inventory
            .request_checkout(id, None, &alice)
            .await
            .unwrap();
        given.processed().await;
        for (lines, code) in [
            (cart(&[("A", 3)]), RejectionCode::ExceedsUnshipped),
            (cart(&[("B", 1)]), RejectionCode::SkuNotInReservation),
        ] {
            let answer = given
                .inventory
                .request_after_sale(id, ship(Some(lines)), Some(&key), &alice)
                .await;
            assert!(
                matches!(answer, Err(AppError::LineRefused { code: found, .. }) if found == code),
                "{answer:?}"
            );
        }
        let back = AfterSaleRequest::take_back(cart(&[("A", 1)]), true, None).unwrap();
        let answer = given
            .inventory
            .request_after_sale(id, back, Some(&key), &alice)
            .await;
        assert!(
            matches!(
                answer,
                Err(AppError::LineRefused {
                    code: RejectionCode::ExceedsShipped,
                    left: 0,
                    ..
                })
            ),
            "{answer:?}"
        );
        let bob = shopper("bob");
        let answer = given
            .inventory
            .request_after_sale(id, ship(None), Some(&key), &bob)
            .await;
        assert_eq!(
            answer.unwrap_err(),
            AppError::ReservationNotFound,
            "not bob's"
        );
        assert!(given.queue.try_receive(10).is_empty(), "nothing queued");
        for empty in [
            AfterSaleRequest::fulfill(Some(vec![]), None),
            AfterSaleRequest::cancel(Some(cart(&[("A", 1), ("A", 1)]))),
            AfterSaleRequest::fulfill(None, Some("  ".into())),
        ] {
            assert!(matches!(empty, Err(AppError::Invalid(_))), "{empty:?}");
        }
    }
}
