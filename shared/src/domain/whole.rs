//! An item kept at several locations, told of as a whole: `out_of_stock` when what it has for
//! sale over all its locations reaches zero, `back_in_stock` when it leaves zero, `low_stock`
//! when it goes below the item's threshold (the one set without a location, kept by the
//! default location's stream).
//!
//! No one stream knows the whole, and the locations' streams change independently (their feeds
//! may be read at once by different readers). So the whole is counted in one record,
//! [`WholeItem`]: each location's units for sale as its stream last told them, and the
//! notices the last count decided. Each count is a conditional write over the version read;
//! the counts of one item are so put in one order, and a crossing is decided once, on the
//! counts before and after it. The record keeps the notices it decided until a later count
//! finds them published: a reader that wrote the count and failed before publishing has them
//! told by the next (under the same ids).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::notices::{Notice, Noticed, StockFigures};
use super::stream::{LocationId, StreamId};
use super::types::{LowStockThreshold, Sku, Timestamp, Version};

/// What the item-wide notices of an item kept at several locations were last decided on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WholeItem {
    /// Per location: what its stream (bucket 0) last told.
    pub locations: BTreeMap<LocationId, Counted>,
    /// The notices the last count decided, until a later count finds them published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<WholeNotice>,
    /// The item's low-stock threshold, as the default location's stream last set it.
    #[serde(default, skip_serializing_if = "LowStockThreshold::is_off")]
    pub below: LowStockThreshold,
}

/// What one location's stream told: its version and the units it had for sale then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counted {
    /// The version of the location's stream counted.
    pub version: Version,
    /// Its units for sale then (never below 0).
    pub for_sale: i64,
}

/// An item-wide crossing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Crossing {
    /// What the item has for sale reached 0.
    OutOfStock,
    /// What it has for sale left 0.
    BackInStock,
    /// What it has for sale went below its threshold (or a threshold was set above it).
    LowStock,
}

/// An item-wide notice decided by a count: the crossing, the location event that caused it,
/// and what the item then had for sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WholeNotice {
    /// Which way it crossed.
    pub crossing: Crossing,
    /// The location whose change made it cross.
    pub location: LocationId,
    /// The version of that location's stream.
    pub version: Version,
    /// When that event was decided.
    pub at: Timestamp,
    /// What the item had for sale after it, over all its locations.
    pub available: i64,
    /// The threshold crossed, for `low_stock`.
    #[serde(default, skip_serializing_if = "LowStockThreshold::is_off")]
    pub threshold: LowStockThreshold,
}

impl WholeItem {
    /// What the item has for sale over its locations counted (each never below 0).
    pub fn total(&self) -> i64 {
        self.locations
            .values()
            .map(|counted| counted.for_sale.max(0))
            .sum()
    }

    /// Counts `for_sale` at `location` as of its stream's `version` (decided at `at`); the
    /// item-wide notices that crossing gives. A version counted already (a redelivery, a late
    /// batch) changes nothing.
    pub fn count(
        &mut self,
        location: &LocationId,
        version: Version,
        at: Timestamp,
        for_sale: i64,
    ) -> Vec<WholeNotice> {
        if self.counted(location, version) {
            return Vec::new();
        }
        let before = self.total();
        self.locations
            .insert(location.clone(), Counted { version, for_sale });
        let after = self.total();
        let notice = |crossing| WholeNotice {
            crossing,
            location: location.clone(),
            version,
            at,
            available: after,
            threshold: self.below,
        };
        let mut told = Vec::new();
        match (before, after) {
            (b, 0) if b > 0 => told.push(notice(Crossing::OutOfStock)),
            (0, a) if a > 0 => told.push(notice(Crossing::BackInStock)),
            _ => {}
        }
        if !self.below.is_low(before) && self.below.is_low(after) {
            told.push(notice(Crossing::LowStock));
        }
        told
    }

    /// Sets the item's threshold, as the default location's stream did at `version` (decided
    /// at `at`): `low_stock` at once if the item is below a threshold it was not below.
    pub fn set_threshold(
        &mut self,
        below: LowStockThreshold,
        version: Version,
        at: Timestamp,
    ) -> Vec<WholeNotice> {
        let default = LocationId::default();
        if self.counted(&default, version) {
            return Vec::new();
        }
        let total = self.total();
        let was_low = self.below.is_low(total);
        self.below = below;
        if was_low || !below.is_low(total) {
            return Vec::new();
        }
        vec![WholeNotice {
            crossing: Crossing::LowStock,
            location: default,
            version,
            at,
            available: total,
            threshold: below,
        }]
    }

    /// Whether `location`'s stream is counted as of `version` or later.
    fn counted(&self, location: &LocationId, version: Version) -> bool {
        self.locations
            .get(location)
            .is_some_and(|counted| counted.version >= version)
    }
}

impl WholeNotice {
    /// The notice of `sku` as a whole it tells, filed under the location's stream and
    /// version that caused it (so its id is the same however often it is told).
    pub fn noticed(&self, sku: &Sku) -> Noticed {
        let stock = StockFigures {
            on_hand: None,
            reserved: None,
            committed: None,
            unavailable: None,
            available: self.available,
            version: self.version,
        };
        Noticed {
            stream: StreamId::at(sku, &self.location),
            version: self.version,
            at: self.at,
            notice: match self.crossing {
                Crossing::OutOfStock => Notice::OutOfStock { stock },
                Crossing::BackInStock => Notice::BackInStock { stock },
                Crossing::LowStock => Notice::LowStock {
                    threshold: self.threshold,
                    stock,
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(id: &str) -> LocationId {
        LocationId::parse(id).unwrap()
    }

    #[test]
    fn the_item_crosses_only_when_its_total_over_every_location_does_and_once() {
        // Counted from what each location had before (the snapshotter starts it so).
        let counted = |version, for_sale| Counted { version, for_sale };
        let mut whole = WholeItem {
            locations: BTreeMap::from([
                (at("default"), counted(2, 2)),
                (at("store-5"), counted(3, 0)),
            ]),
            pending: Vec::new(),
            below: LowStockThreshold::default(),
        };
        let t = Timestamp::from_millis(1_000);
        let kinds = |told: Vec<WholeNotice>| -> Vec<(Crossing, i64)> {
            told.iter().map(|n| (n.crossing, n.available)).collect()
        };
        assert_eq!(kinds(whole.count(&at("store-5"), 4, t, 1)), vec![]);
        // The store sells out: the item still has 2.
        assert_eq!(kinds(whole.count(&at("store-5"), 5, t, 0)), vec![]);
        // A location short of stock lowers nothing.
        assert_eq!(kinds(whole.count(&at("store-5"), 6, t, -3)), vec![]);
        let out = whole.count(&at("default"), 4, t, 0);
        assert_eq!(
            (
                out[0].crossing,
                out[0].location.as_str(),
                out[0].version,
                out[0].available
            ),
            (Crossing::OutOfStock, "default", 4, 0)
        );
        // The same change again (a redelivery) or an older one: nothing.
        assert_eq!(kinds(whole.count(&at("default"), 4, t, 0)), vec![]);
        assert_eq!(kinds(whole.count(&at("default"), 2, t, 5)), vec![]);
        let back = whole.count(&at("store-5"), 7, t, 2);
        assert_eq!(kinds(back.clone()), vec![(Crossing::BackInStock, 2)]);
        let told = back[0].noticed(&Sku::parse("SKU-1").unwrap());
        assert_eq!(told.id(), "SKU-1:store-5:7:back_in_stock");
        // A threshold of 3 set at the default location: the item (2) is low at once; going
        // lower tells nothing more, going back up and down across it tells again.
        let three = LowStockThreshold::new(3).unwrap();
        assert_eq!(
            kinds(whole.set_threshold(three, 5, t)),
            vec![(Crossing::LowStock, 2)]
        );
        assert_eq!(kinds(whole.count(&at("default"), 5, t, 0)), vec![]);
        assert_eq!(kinds(whole.count(&at("store-5"), 8, t, 1)), vec![]);
        assert_eq!(kinds(whole.count(&at("store-5"), 9, t, 5)), vec![]);
        assert_eq!(
            kinds(whole.count(&at("store-5"), 10, t, 2)),
            vec![(Crossing::LowStock, 2)]
        );
    }
}
