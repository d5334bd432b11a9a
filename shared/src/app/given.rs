//! Given/when/then helpers for the use cases' unit tests: a service on the memory adapters, a
//! manual clock, and the processor played by hand.

use std::sync::Arc;

use super::{ApplyReport, Inventory, ReservationView, ReserveRequest};
use crate::config::Config;
use crate::domain::Annotation;
use crate::domain::{
    BucketCount, Caller, ClientId, Command, IdempotencyKey, ItemAt, Line, Location, LocationId,
    LocationKind, Preference, Quantity, Scope, Sku, StreamId, Timestamp, TtlSeconds,
};
use crate::error::AppError;
use crate::memory::{MemoryQueue, MemoryStore};
use crate::ports::ManualClock;

pub(crate) const START: Timestamp = Timestamp::from_millis(1_700_000_000_000);

/// A world of one or more processes over one memory store and queue.
pub(crate) struct Given {
    pub(crate) store: Arc<MemoryStore>,
    pub(crate) queue: Arc<MemoryQueue>,
    pub(crate) clock: ManualClock,
    pub(crate) inventory: Inventory,
}

impl Given {
    /// An empty store, the clock at [`START`].
    pub(crate) fn new() -> Self {
        let store = Arc::new(MemoryStore::new());
        let queue = Arc::new(MemoryQueue::new());
        let clock = ManualClock::new(START);
        let inventory = Self::process_over(&store, &queue, &clock);
        Self {
            store,
            queue,
            clock,
            inventory,
        }
    }

    /// Another process over the same store and queue (its own cache, its own turns).
    pub(crate) fn another_process(&self) -> Inventory {
        Self::process_over(&self.store, &self.queue, &self.clock)
    }

    fn process_over(
        store: &Arc<MemoryStore>,
        queue: &Arc<MemoryQueue>,
        clock: &ManualClock,
    ) -> Inventory {
        Inventory::new(
            store.clone(),
            queue.clone(),
            Arc::new(clock.clone()),
            Config::default(),
        )
    }

    /// Given `units` of `sku` received and applied.
    pub(crate) async fn stock(&self, name: &str, units: i64) -> &Self {
        let quantity = Quantity::new(units).expect("a quantity");
        let admin = Caller::local_admin();
        self.inventory
            .receive_stock(
                sku(name),
                quantity,
                Annotation::received(None),
                None,
                &admin,
            )
            .await
            .expect("a receipt is accepted");
        self.processed().await;
        self
    }

    /// Given a location `id` registered: a warehouse that fulfils online orders, or (`pickup`)
    /// a store that offers pickup only; lower `priority` first.
    pub(crate) async fn location(&self, id: &str, pickup: bool, priority: i64) -> &Self {
        let kind = if pickup {
            LocationKind::Store
        } else {
            LocationKind::Warehouse
        };
        let location = Location::new(location(id), id, kind, !pickup, pickup, priority, true)
            .expect("a location");
        self.inventory
            .put_location(location)
            .await
            .expect("registered");
        self
    }

    /// Given `units` of `sku` received at `location` and applied.
    pub(crate) async fn stock_at(&self, name: &str, at: &str, units: i64) -> &Self {
        let quantity = Quantity::new(units).expect("a quantity");
        let item = ItemAt {
            sku: sku(name),
            location: location(at),
        };
        self.inventory
            .receive_stock(
                item,
                quantity,
                Annotation::received(None),
                None,
                &Caller::local_admin(),
            )
            .await
            .expect("a receipt is accepted");
        self.processed().await;
        self
    }

    /// Given `sku` split into `count` escrow buckets, applied.
    pub(crate) async fn buckets(&self, name: &str, count: i64) -> &Self {
        let count = BucketCount::new(count).expect("a bucket count");
        let admin = Caller::local_admin();
        self.inventory
            .set_buckets(sku(name), count, None, &admin)
            .await
            .expect("a layout is accepted");
        self.processed().await;
        self
    }

    /// Given (or when) `shopper` reserves `units` of each SKU named.
    pub(crate) async fn reserve(
        &self,
        shopper: &Caller,
        lines: &[(&str, i64)],
        key: Option<&str>,
    ) -> Result<ReservationView, AppError> {
        let request = ReserveRequest::new(
            cart(lines),
            TtlSeconds::DEFAULT,
            key.map(|key| IdempotencyKey::parse(key).expect("a key")),
        )
        .expect("a valid request");
        self.inventory.reserve(request, shopper).await
    }

    /// When `shopper` reserves lines of `(sku, units, location named)`, the others allocated
    /// by `preference`.
    pub(crate) async fn reserve_at(
        &self,
        shopper: &Caller,
        lines: &[(&str, i64, Option<&str>)],
        preference: Preference,
    ) -> Result<ReservationView, AppError> {
        let lines = lines
            .iter()
            .map(|(name, units, at)| Line {
                location: at.map(location),
                ..Line::of(sku(name), Quantity::new(*units).expect("a quantity"))
            })
            .collect();
        let request = ReserveRequest::new(lines, TtlSeconds::DEFAULT, None)
            .expect("a valid request")
            .preferring(preference);
        self.inventory.reserve(request, shopper).await
    }

    /// The units of `sku` for sale now at each location it is kept at, by id.
    pub(crate) async fn available_at(&self, name: &str) -> Vec<(String, i64)> {
        let item = self.inventory.item(&sku(name)).await.expect("a known SKU");
        item.locations
            .iter()
            .map(|at| (at.location.to_string(), at.available))
            .collect()
    }

    /// Applies everything queued, per SKU in arrival order, as the processor does.
    pub(crate) async fn processed(&self) -> ApplyReport {
        let mut total = ApplyReport::default();
        loop {
            let batch = self.queue.try_receive(1_000);
            if batch.is_empty() {
                return total;
            }
            let mut skus: Vec<&Sku> = batch.iter().map(|c| &c.sku).collect();
            skus.dedup();
            for sku in skus {
                let group: Vec<Command> = batch.iter().filter(|c| &c.sku == sku).cloned().collect();
                let report = self
                    .inventory
                    .apply_commands(sku, &group)
                    .await
                    .expect("the commands apply");
                total.add(&report);
            }
        }
    }

    /// Moves the clock forward.
    pub(crate) fn later_by_secs(&self, secs: i64) {
        self.clock.advance_millis(secs * 1_000);
    }

    /// The units of `sku` for sale now.
    pub(crate) async fn available(&self, name: &str) -> i64 {
        self.inventory
            .item(&sku(name))
            .await
            .expect("a known SKU")
            .available
    }
}

pub(crate) fn sku(name: &str) -> Sku {
    Sku::parse(name).expect("a SKU")
}

pub(crate) fn location(id: &str) -> LocationId {
    LocationId::parse(id).expect("a location id")
}

/// The own stream of the item `name`.
pub(crate) fn stream(name: &str) -> StreamId {
    StreamId::of(&sku(name))
}

pub(crate) fn cart(lines: &[(&str, i64)]) -> Vec<Line> {
    lines
        .iter()
        .map(|(name, units)| Line::of(sku(name), Quantity::new(*units).expect("a quantity")))
        .collect()
}

/// A storefront client, with the scopes a storefront has.
pub(crate) fn shopper(name: &str) -> Caller {
    let id = ClientId::parse(name).expect("a client id");
    Caller::new(id, [Scope::Read, Scope::Reserve])
}
