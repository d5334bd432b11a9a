//! The use cases, one module each, each over only the ports it uses:
//!
//! | use case | module | ports |
//! |---|---|---|
//! | reserve a cart | [`reserve`] | `Streams`, `Snapshots` (via the heads), `Records`, `Transactions` |
//! | extend a reservation | [`extend`] | `Streams`, `Snapshots`, `Records`, `Transactions` |
//! | accept a command | [`accept`] | `Records`, `Transactions`, `CommandQueue` |
//! | apply a SKU's commands | [`apply`] | `Streams`, `Snapshots`, `Records`, `Transactions`, `CommandQueue` |
//! | sweep expired holds | [`expiry`] | `ExpiryIndex`, `ParkedIndex`, `Records`, `Transactions`, `CommandQueue` |
//! | read items | [`items`] | `Streams`, `Snapshots` |
//! | park, redrive and requeue | [`parking`] | `ParkedIndex`, `CommandHistory`, `Records`, `Transactions`, `CommandQueue` |
//!
//! Shared by them: [`heads`] (what this process knows of each SKU's head, and the per-SKU
//! turns), [`reservation_book`] (the one way a reservation is loaded), [`command_log`] (command
//! records and the acceptance handshake), [`idempotency`], and [`attempt`] (an attempt's
//! outcome and the one retry loop). [`Inventory`] builds them once per process from the
//! adapters; the handlers call its entry points.

mod accept;
mod apply;
mod attempt;
mod cache;
mod combine;
mod command_log;
mod escrow;
mod expiry;
mod extend;
#[cfg(test)]
mod given;
mod heads;
mod idempotency;
mod items;
mod ledger;
mod locations;
mod locks;
mod parking;
mod reservation_book;
mod reserve;
mod views;

use std::sync::Arc;

pub use accept::AfterSaleRequest;
pub use apply::{ApplyReport, Unapplied};
pub use command_log::CommandStatus;
pub use expiry::{SweepReport, TimerReport};
pub use ledger::{
    FigureChanges, LedgerEntry, LedgerFigures, LedgerView, DEFAULT_LEDGER_PAGE, MAX_LEDGER_PAGE,
};
pub use parking::{parked_bytes, RedriveSelection, Redriven};
pub use reserve::ReserveRequest;
pub use views::{
    format_rfc3339, parse_rfc3339, CommandView, ItemView, ItemsView, LineView, ReservationView,
};

use crate::archive::Archive;
use crate::config::Config;
use crate::domain::{
    Annotation, BucketCount, Caller, Command, CommandId, IdempotencyKey, ItemAt, Location,
    LocationId, LowStockThreshold, Quantity, Reclassification, ReservationId, Sku, Timestamp,
    TransferId, TtlSeconds, Version,
};
use crate::error::AppError;
use crate::ports::{Clock, CommandQueue, EventStore, ParkReason, ParkedEntry};
use accept::{Accept, HoldRequest};
use apply::ApplyCommands;
use command_log::CommandLog;
use escrow::placement::Placer;
use expiry::SweepExpiry;
use extend::Extend;
use heads::Heads;
use items::ReadItems;
use ledger::Ledger;
use locations::LocationBook;
use parking::Parking;
use reservation_book::ReservationBook;
use reserve::Reserve;

/// The service: the use cases over one set of adapters, built once per process and shared by
/// all requests.
pub struct Inventory {
    config: Config,
    clock: Arc<dyn Clock>,
    book: Arc<ReservationBook>,
    log: Arc<CommandLog>,
    reserve: Reserve,
    extend: Extend,
    accept: Accept,
    apply: Arc<ApplyCommands>,
    sweep: SweepExpiry,
    items: ReadItems,
    ledger: Ledger,
    locations: Arc<LocationBook>,
    parking: Parking,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Inventory {
    /// The use cases over these adapters.
    pub fn new(
        store: Arc<dyn EventStore>,
        queue: Arc<dyn CommandQueue>,
        clock: Arc<dyn Clock>,
        config: Config,
    ) -> Self {
        let heads = Arc::new(Heads::new(
            store.clone(),
            store.clone(),
            config.live_retention,
            config.contention_budget,
        ));
        let book = Arc::new(ReservationBook::new(store.clone(), store.clone()));
        let locations = Arc::new(LocationBook {
            records: store.clone(),
            transactions: store.clone(),
            config: config.clone(),
            known: std::sync::Mutex::default(),
        });
        let log = Arc::new(CommandLog {
            records: store.clone(),
            transactions: store.clone(),
        });
        let apply = Arc::new(ApplyCommands {
            heads: Arc::clone(&heads),
            book: Arc::clone(&book),
            records: store.clone(),
            transactions: store.clone(),
            queue: Arc::clone(&queue),
            clock: Arc::clone(&clock),
            config: config.clone(),
        });
        Self {
            reserve: Reserve {
                placer: Placer {
                    heads: Arc::clone(&heads),
                    snapshots: store.clone(),
                    locations: Arc::clone(&locations),
                    clock: Arc::clone(&clock),
                },
                heads: Arc::clone(&heads),
                waiting: Arc::default(),
                book: Arc::clone(&book),
                records: store.clone(),
                transactions: store.clone(),
                clock: Arc::clone(&clock),
                config: config.clone(),
            },
            extend: Extend {
                heads: Arc::clone(&heads),
                book: Arc::clone(&book),
                transactions: store.clone(),
                clock: Arc::clone(&clock),
                config: config.clone(),
            },
            accept: Accept {
                log: Arc::clone(&log),
                locations: Arc::clone(&locations),
                book: Arc::clone(&book),
                queue: Arc::clone(&queue),
                clock: Arc::clone(&clock),
            },
            sweep: SweepExpiry {
                apply: Arc::clone(&apply),
                index: store.clone(),
                parked: store.clone(),
                records: store.clone(),
                transactions: store.clone(),
                queue: Arc::clone(&queue),
                clock: Arc::clone(&clock),
                config: config.clone(),
            },
            ledger: Ledger {
                heads: Arc::clone(&heads),
                streams: store.clone(),
                archive: None,
            },
            locations,
            items: ReadItems {
                heads,
                snapshots: store.clone(),
                clock: Arc::clone(&clock),
            },
            parking: Parking {
                parked: store.clone(),
                history: store.clone(),
                records: store.clone(),
                transactions: store,
                queue,
                clock: Arc::clone(&clock),
            },
            apply,
            book,
            log,
            clock,
            config,
        }
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The same service, reading what the table no longer keeps from `archive` (an item's
    /// ledger, [`ledger`]).
    pub fn with_archive(mut self, archive: Archive) -> Self {
        self.ledger.archive = Some(archive);
        self
    }

    /// At most `limit` entries of `sku`'s ledger after version `after` ([`ledger`]).
    pub async fn ledger(
        &self,
        sku: &Sku,
        after: Version,
        limit: usize,
    ) -> Result<LedgerView, AppError> {
        self.ledger.page(sku, None, after, limit).await
    }

    /// At most `limit` entries of `sku`'s ledger at `location` after version `after`, numbered
    /// on their own ([`ledger`]); `UnknownLocation` if the shop has none by that id.
    pub async fn ledger_at(
        &self,
        sku: &Sku,
        location: &LocationId,
        after: Version,
        limit: usize,
    ) -> Result<LedgerView, AppError> {
        if !location.is_default() {
            self.locations.location(location).await?;
        }
        self.ledger.page(sku, Some(location), after, limit).await
    }

    /// Every location of the shop, the default one included, by id ([`locations`]).
    pub async fn locations(&self) -> Result<Vec<Location>, AppError> {
        self.locations.list().await
    }

    /// Registers `location`, or replaces the one with its id; answers it as stored
    /// ([`locations`]).
    pub async fn put_location(&self, location: Location) -> Result<Location, AppError> {
        self.locations.put(location).await
    }

    /// Places a hold on every line or on none, owned by `caller` ([`reserve`]).
    pub async fn reserve(
        &self,
        request: ReserveRequest,
        caller: &Caller,
    ) -> Result<ReservationView, AppError> {
        self.reserve.reserve(request, caller).await
    }

    /// A reservation as of now, for its owner (or an admin).
    pub async fn reservation(
        &self,
        id: &ReservationId,
        caller: &Caller,
    ) -> Result<ReservationView, AppError> {
        let reservation = self.book.load(id, caller).await?;
        Ok(reservation.view(self.clock.now()))
    }

    /// Promises an active reservation for `ttl` from now, never shortening it ([`extend`]).
    pub async fn extend(
        &self,
        id: &ReservationId,
        ttl: TtlSeconds,
        caller: &Caller,
    ) -> Result<ReservationView, AppError> {
        self.extend.extend(id, ttl, caller).await
    }

    /// Accepts a checkout of every line of an active reservation ([`accept`]).
    pub async fn request_checkout(
        &self,
        id: &ReservationId,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        let request = HoldRequest::Checkout;
        self.accept.hold_change(id, key, request, caller).await
    }

    /// Accepts a release of every line of a reservation that is not checked out ([`accept`]).
    pub async fn request_release(
        &self,
        id: &ReservationId,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        let request = HoldRequest::Release;
        self.accept.hold_change(id, key, request, caller).await
    }

    /// Accepts a shipment, a cancellation or a return of a checked-out reservation's units
    /// ([`accept`]): 202 at once, applied per line by the processor.
    pub async fn request_after_sale(
        &self,
        id: &ReservationId,
        request: AfterSaleRequest,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        let request = HoldRequest::AfterSale(request);
        self.accept.hold_change(id, key, request, caller).await
    }

    /// Accepts a receipt of `quantity` units of `sku` ([`accept`]).
    pub async fn receive_stock(
        &self,
        item: impl Into<ItemAt>,
        quantity: Quantity,
        why: Annotation,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        self.accept
            .receive_stock(item, quantity, why, key, caller)
            .await
    }

    /// Accepts a new escrow layout for `sku`: `count` buckets ([`accept`]).
    pub async fn set_buckets(
        &self,
        item: impl Into<ItemAt>,
        count: BucketCount,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        self.accept.set_buckets(item, count, key, caller).await
    }

    /// Accepts a low-stock threshold for `sku` ([`accept`]).
    pub async fn set_low_stock(
        &self,
        item: impl Into<ItemAt>,
        below: LowStockThreshold,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        self.accept.set_low_stock(item, below, key, caller).await
    }

    /// Accepts an adjustment of `sku` by `delta` (non-zero), why ([`accept`]).
    pub async fn adjust_stock(
        &self,
        item: impl Into<ItemAt>,
        delta: i64,
        why: Annotation,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        self.accept
            .adjust_stock(item, delta, why, key, caller)
            .await
    }

    /// Accepts a move of `quantity` units of `sku` between two states of its on-hand stock
    /// ([`accept`]).
    pub async fn reclassify_stock(
        &self,
        item: impl Into<ItemAt>,
        states: Reclassification,
        quantity: Quantity,
        why: Annotation,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        self.accept
            .reclassify_stock(item, states, quantity, why, key, caller)
            .await
    }

    /// Accepts a count of `sku`, compared and set against `expected` when given ([`accept`]).
    pub async fn count_stock(
        &self,
        item: impl Into<ItemAt>,
        counted: i64,
        expected: Option<i64>,
        why: Annotation,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        self.accept
            .count_stock(item, counted, expected, why, key, caller)
            .await
    }

    /// Accepts a transfer of `quantity` units of `sku` between two locations, `(from, to)`
    /// ([`accept`]); answers its command and the transfer.
    pub async fn transfer_stock(
        &self,
        sku: Sku,
        ends: (LocationId, LocationId),
        quantity: Quantity,
        reference: Option<String>,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<(CommandId, TransferId), AppError> {
        self.accept
            .transfer_stock(sku, ends, quantity, reference, key, caller)
            .await
    }

    /// Accepts a receipt of a transfer's units at its destination (`None`: all in transit)
    /// ([`accept`]).
    pub async fn receive_transfer(
        &self,
        transfer_id: TransferId,
        quantity: Option<Quantity>,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        self.accept
            .receive_transfer(transfer_id, quantity, key, caller)
            .await
    }

    /// Where a command stands, for its issuer (or an admin) ([`command_log`]).
    pub async fn command(&self, id: CommandId, caller: &Caller) -> Result<CommandView, AppError> {
        self.log.status(id, caller).await
    }

    /// Applies `commands` (all for `sku`, in arrival order) exactly once in effect ([`apply`]).
    pub async fn apply_commands(
        &self,
        sku: &Sku,
        commands: &[Command],
    ) -> Result<ApplyReport, AppError> {
        self.apply.apply_commands(sku, commands).await
    }

    /// Applies `commands` of `sku` as they arrived from the queue, the oldest at `arrived_at`,
    /// parking those that keep failing past [`Config::park_failing_after`] ([`apply`]).
    pub async fn apply_arrivals(
        &self,
        sku: &Sku,
        commands: &[Command],
        arrived_at: Timestamp,
    ) -> Result<ApplyReport, Unapplied> {
        self.apply.apply_arrivals(sku, commands, arrived_at).await
    }

    /// Parks a queued record for an operator, once ([`apply`]).
    pub async fn park(
        &self,
        sku: &Sku,
        id: CommandId,
        data: &[u8],
        reason: ParkReason,
        detail: &str,
    ) -> Result<(), AppError> {
        self.apply.park(sku, id, data, reason, detail).await
    }

    /// One run of the expiry timer ([`expiry`]).
    pub async fn run_expiry_timer(&self) -> Result<TimerReport, AppError> {
        self.sweep.run_expiry_timer().await
    }

    /// One sweep of the expiry index ([`expiry`]).
    pub async fn sweep_expired_holds(&self) -> Result<SweepReport, AppError> {
        self.sweep.sweep_expired_holds().await
    }

    /// The stock of one SKU, current ([`items`]).
    pub async fn item(&self, sku: &Sku) -> Result<ItemView, AppError> {
        Ok(self.items.item(sku).await?.without_buckets())
    }

    /// The stock of one SKU, current, with its escrow buckets listed ([`items`]): what an admin
    /// sees with `?detail=buckets`.
    pub async fn item_with_buckets(&self, sku: &Sku) -> Result<ItemView, AppError> {
        self.items.item(sku).await
    }

    /// The product-page view of up to 100 SKUs, from their snapshots ([`items`]).
    pub async fn items(&self, skus: &[Sku]) -> Result<ItemsView, AppError> {
        self.items.items(skus).await
    }

    /// The product-page view of up to 100 SKUs at one location: each item's figures there (none
    /// for an item never kept there), from their snapshots ([`items`]).
    pub async fn items_at(
        &self,
        skus: &[Sku],
        location: &LocationId,
    ) -> Result<ItemsView, AppError> {
        self.locations.known_location(location).await?;
        let all = self.items.items(skus).await?;
        Ok(ItemsView {
            items: all
                .items
                .into_iter()
                .map(|item| item.at_location(location))
                .collect(),
            missing: all.missing,
        })
    }

    /// Every parked command, oldest first ([`parking`]).
    pub async fn parked_commands(&self) -> Result<Vec<ParkedEntry>, AppError> {
        self.parking.parked_commands().await
    }

    /// Puts the selected parked commands back on the queue ([`parking`]).
    pub async fn redrive(
        &self,
        selection: &RedriveSelection,
    ) -> Result<Vec<(CommandId, Sku, Redriven)>, AppError> {
        self.parking.redrive(selection).await
    }

    /// Every command accepted at or after `since` that never reached an outcome, queued again
    /// under its own id unless `dry_run` ([`parking`]).
    pub async fn requeue(&self, since: Timestamp, dry_run: bool) -> Result<Vec<Command>, AppError> {
        self.parking.requeue(since, dry_run).await
    }
}
