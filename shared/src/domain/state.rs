//! The fold of one SKU's stream into the little state every decision needs.
//!
//! The state stays bounded however many holds or commands the SKU sees: holds are not kept one by
//! one but summed per *release bucket* (the instant they stop counting, rounded up), and buckets
//! in the past are dropped as the stream's clock moves on. Per-hold details live in their own
//! records (see [`super::hold`]), dedupe records in the store — never in this blob.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::buckets::Layout;
use super::event::{Change, Event};
use super::stock_states::{StockState, Unavailable};
use super::stream::LocationId;
use super::transfer::TransferId;
use super::types::{LowStockThreshold, Timestamp, Version};

/// What the stream of one SKU adds up to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuState {
    /// Sequence of the last event folded in (0: no event yet, the SKU is unknown).
    pub version: Version,
    /// Units in the warehouse (may be below what is promised after a downward adjustment).
    pub on_hand: i64,
    /// Units sold at checkout and not yet shipped (nor cancelled).
    pub committed: i64,
    /// On-hand units not for sale, per state (left out of a snapshot while all are zero, so
    /// snapshots from before the states read as zeros).
    #[serde(default, skip_serializing_if = "Unavailable::is_zero")]
    pub unavailable: Unavailable,
    /// The latest decision time seen in the stream; time in a stream never runs backwards.
    pub clock: Timestamp,
    /// Held units per release instant, only for instants after `clock`.
    holds: HoldBook,
    /// How the item's stock is laid out over its escrow buckets (kept by bucket 0 only).
    #[serde(default, skip_serializing_if = "Layout::is_single")]
    pub layout: Layout,
    /// The locations other than the default one the item is kept at (kept by the default
    /// location's bucket 0 only).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub locations: BTreeSet<LocationId>,
    /// Available units below which the item is told low on stock (kept by bucket 0 only).
    #[serde(default, skip_serializing_if = "LowStockThreshold::is_off")]
    pub low_stock_below: LowStockThreshold,
    /// While a split item sells from several buckets, what it had for sale when it last sold
    /// from this stream (bucket 0) alone ([`Layout::sells_alone`]): what its notices last knew
    /// of it. `None` while it sells alone (its figures say it), and in a snapshot from before
    /// this was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_sale_alone: Option<i64>,
    /// Units shipped from here in transfers and not yet received at the other end.
    #[serde(default, skip_serializing_if = "super::types::is_zero")]
    pub transit_out: i64,
    /// Units on their way here, per transfer with units still in transit (a transfer received
    /// whole leaves it; kept by bucket 0 only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub in_transit: BTreeMap<TransferId, i64>,
}

/// A stream's (or an item's) figures at one instant: what its events add up to then.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    /// Units in the building.
    pub on_hand: i64,
    /// Units held by holds that count then.
    pub reserved: i64,
    /// Units sold and not yet shipped.
    pub committed: i64,
    /// On-hand units not for sale, per state.
    #[serde(default, skip_serializing_if = "Unavailable::is_zero")]
    pub unavailable: Unavailable,
    /// Units on their way here in transfers (not on hand, not for sale).
    #[serde(default, skip_serializing_if = "super::types::is_zero")]
    pub transit_in: i64,
    /// Units shipped from here in transfers and not yet received (no longer on hand).
    #[serde(default, skip_serializing_if = "super::types::is_zero")]
    pub transit_out: i64,
}

impl Figures {
    /// Units for sale: on hand less what is reserved, committed and set aside (negative when
    /// the stock is short).
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved - self.committed - self.unavailable.total()
    }

    /// Each figure summed with `other`'s (an item over its buckets).
    pub fn plus(self, other: Figures) -> Figures {
        Figures {
            on_hand: self.on_hand + other.on_hand,
            reserved: self.reserved + other.reserved,
            committed: self.committed + other.committed,
            unavailable: self.unavailable.plus(other.unavailable),
            transit_in: self.transit_in + other.transit_in,
            transit_out: self.transit_out + other.transit_out,
        }
    }
}

/// Held units summed per release instant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct HoldBook {
    total: i64,
    #[serde(with = "bucket_list")]
    by_release: BTreeMap<Timestamp, i64>,
}

impl SkuState {
    /// Roughly how many bytes the state takes in memory: a fixed part and one entry per release
    /// instant of its holds (what grows with traffic). What a process keeping many states
    /// weighs them by.
    pub fn memory_bytes(&self) -> usize {
        const FIXED: usize = 256;
        const PER_INSTANT: usize = 32;
        FIXED + PER_INSTANT * self.holds.by_release.len()
    }

    /// Folds a whole stream from nothing.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut state = Self::default();
        for event in events {
            state.evolve(event);
        }
        state
    }

    /// Whether any event was ever recorded for this SKU.
    pub fn exists(&self) -> bool {
        self.version > 0
    }

    /// Folds one event in. Never fails and never reads a clock: the event carries its time.
    pub fn evolve(&mut self, event: &Event) {
        // What it had for sale as it stood, should this event split it.
        let alone = self.layout.sells_alone().then(|| self.for_sale(self.clock));
        self.version = event.seq;
        self.clock = self.clock.max(event.at);
        self.holds.forget_released_by(self.clock);
        let clock = self.clock;
        match &event.change {
            Change::StockReceived { quantity, .. } => self.on_hand += quantity.units(),
            Change::StockAdjusted { delta, .. } | Change::StockCounted { delta, .. } => {
                self.on_hand += delta
            }
            Change::StockReclassified {
                states, quantity, ..
            } => {
                self.unavailable.add(states.from, -quantity.units());
                self.unavailable.add(states.to, quantity.units());
            }
            Change::HoldPlaced {
                quantity,
                release_at,
                ..
            } => self.holds.add(clock, *release_at, quantity.units()),
            Change::HoldExtended {
                quantity,
                release_at,
                previous_release_at,
                ..
            } => {
                self.holds
                    .remove(clock, *previous_release_at, quantity.units());
                self.holds.add(clock, *release_at, quantity.units());
            }
            Change::HoldCommitted {
                quantity,
                release_at,
                reacquired,
                ..
            } => {
                if !reacquired {
                    self.holds.remove(clock, *release_at, quantity.units());
                }
                self.committed += quantity.units();
            }
            Change::HoldReleased {
                quantity,
                release_at,
                ..
            }
            | Change::HoldExpired {
                quantity,
                release_at,
                ..
            } => self.holds.remove(clock, *release_at, quantity.units()),
            Change::HoldFulfilled { quantity, .. } => {
                self.on_hand -= quantity.units();
                self.committed -= quantity.units();
            }
            Change::HoldCancelled { quantity, .. } => self.committed -= quantity.units(),
            Change::HoldReturned {
                quantity, restock, ..
            } => {
                self.on_hand += quantity.units();
                if !restock {
                    self.unavailable.add(StockState::Damaged, quantity.units());
                }
            }
            Change::StockMoved { moves, .. } => {
                let bucket = event.stream.bucket();
                self.on_hand += moves.iter().map(|m| m.effect_on(bucket)).sum::<i64>();
            }
            Change::BucketsSet { count, .. } => {
                self.layout.count = *count;
                self.layout.widest = self.layout.widest.max(*count);
            }
            Change::LowStockSet { below, .. } => self.low_stock_below = *below,
            Change::StockedAt { location } => {
                self.locations.insert(location.clone());
            }
            Change::BucketsDrained {} => self.layout.drained = true,
            Change::BucketsSpread {} => self.layout.drained = false,
            Change::TransferShipped { quantity, .. } => {
                self.on_hand -= quantity.units();
                self.transit_out += quantity.units();
            }
            Change::TransferIncoming {
                transfer_id,
                quantity,
                ..
            } => *self.in_transit.entry(transfer_id.clone()).or_default() += quantity.units(),
            Change::TransferReceived {
                transfer_id,
                quantity,
                ..
            } => {
                self.on_hand += quantity.units();
                if let Some(left) = self.in_transit.get_mut(transfer_id) {
                    *left -= quantity.units();
                    if *left <= 0 {
                        self.in_transit.remove(transfer_id);
                    }
                }
            }
            Change::TransferArrived { quantity, .. } => self.transit_out -= quantity.units(),
            Change::CommandRejected { .. } => {}
        }
        if self.layout.sells_alone() {
            self.for_sale_alone = None;
        } else if alone.is_some() {
            self.for_sale_alone = alone;
        }
    }

    /// Its figures at `now`.
    pub fn figures(&self, now: Timestamp) -> Figures {
        Figures {
            on_hand: self.on_hand,
            reserved: self.held(now),
            committed: self.committed,
            unavailable: self.unavailable,
            transit_in: self.in_transit.values().sum(),
            transit_out: self.transit_out,
        }
    }

    /// Units held by holds that still count at `now` (lapsed ones stop counting at once, before
    /// any expiry event is written).
    pub fn held(&self, now: Timestamp) -> i64 {
        self.holds.counting_at(now)
    }

    /// Units that can still be promised at `now`: on hand less committed, held and set aside
    /// (not for sale). Negative when an adjustment or a count left the item short.
    pub fn available(&self, now: Timestamp) -> i64 {
        self.figures(now).available()
    }

    /// Units a buyer may be promised at `now`, as clients are told: what is available, or none
    /// when an adjustment left the item short.
    pub fn for_sale(&self, now: Timestamp) -> i64 {
        self.available(now).max(0)
    }

    /// An item's figures over its escrow buckets' states: on-hand, sales and holds summed, the
    /// latest clock, bucket 0's layout and low-stock threshold, and as version the sum of the
    /// buckets' (it moves whenever any bucket does, and never back).
    pub fn summed<'a>(buckets: impl IntoIterator<Item = &'a SkuState>) -> SkuState {
        let mut item = SkuState::default();
        for (index, bucket) in buckets.into_iter().enumerate() {
            if index == 0 {
                item.layout = bucket.layout;
                item.low_stock_below = bucket.low_stock_below;
                item.in_transit = bucket.in_transit.clone();
            }
            item.transit_out += bucket.transit_out;
            item.version += bucket.version;
            item.on_hand += bucket.on_hand;
            item.committed += bucket.committed;
            item.unavailable = item.unavailable.plus(bucket.unavailable);
            item.clock = item.clock.max(bucket.clock);
            item.holds.total += bucket.holds.total;
            for (at, units) in &bucket.holds.by_release {
                *item.holds.by_release.entry(*at).or_default() += units;
            }
        }
        item
    }

    /// Number of release buckets kept: bounded by the spread of release instants, not by holds.
    pub fn bucket_count(&self) -> usize {
        self.holds.by_release.len()
    }
}

impl HoldBook {
    /// Drops the buckets whose holds stopped counting at or before `clock`.
    fn forget_released_by(&mut self, clock: Timestamp) {
        while let Some(entry) = self.by_release.first_entry() {
            if *entry.key() > clock {
                break;
            }
            self.total -= entry.remove();
        }
    }

    fn add(&mut self, clock: Timestamp, release_at: Timestamp, units: i64) {
        if release_at > clock {
            *self.by_release.entry(release_at).or_default() += units;
            self.total += units;
        }
    }

    /// Takes units out of a bucket. A bucket at or before `clock` is already gone: its holds
    /// stopped counting and there is nothing left to take.
    fn remove(&mut self, clock: Timestamp, release_at: Timestamp, units: i64) {
        if release_at <= clock {
            return;
        }
        if let Some(held) = self.by_release.get_mut(&release_at) {
            let taken = units.min(*held);
            *held -= taken;
            self.total -= taken;
            if *held == 0 {
                self.by_release.remove(&release_at);
            }
        }
    }

    fn counting_at(&self, now: Timestamp) -> i64 {
        let lapsed: i64 = self.by_release.range(..=now).map(|(_, units)| *units).sum();
        self.total - lapsed
    }
}

/// Buckets as a compact list of `[release_at, units]` pairs.
mod bucket_list {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    use crate::domain::types::Timestamp;

    pub fn serialize<S: Serializer>(
        buckets: &BTreeMap<Timestamp, i64>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(buckets.iter().map(|(at, units)| (at.millis(), *units)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<Timestamp, i64>, D::Error> {
        let pairs = Vec::<(i64, i64)>::deserialize(deserializer)?;
        Ok(pairs
            .into_iter()
            .map(|(at, units)| (Timestamp::from_millis(at), units))
            .collect())
    }
}
