//! An item kept at several locations, told of as a whole: `out_of_stock` when what it has for
//! sale over all its locations reaches zero, `back_in_stock` when it leaves zero.
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
use super::types::{Sku, Timestamp, Version};

/// What the item-wide notices of an item kept at several locations were last decided on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WholeItem {
    /// Per location: what its stream (bucket 0) last told.
    pub locations: BTreeMap<LocationId, Counted>,
    /// The notices the last count decided, until a later count finds them published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<WholeNotice>,
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
    /// item-wide notice that crossing gives, if any. A version counted already (a redelivery,
    /// a late batch) changes nothing.
    pub fn count(
        &mut self,
        location: &LocationId,
        version: Version,
        at: Timestamp,
        for_sale: i64,
    ) -> Option<WholeNotice> {
        if self
            .locations
            .get(location)
            .is_some_and(|counted| counted.version >= version)
        {
            return None;
        }
        let before = self.total();
        self.locations
            .insert(location.clone(), Counted { version, for_sale });
        let after = self.total();
        let crossing = match (before, after) {
            (b, 0) if b > 0 => Crossing::OutOfStock,
            (0, a) if a > 0 => Crossing::BackInStock,
            _ => return None,
        };
        Some(WholeNotice {
            crossing,
            location: location.clone(),
            version,
            at,
            available: after,
        })
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
        };
        let t = Timestamp::from_millis(1_000);
        assert_eq!(whole.count(&at("store-5"), 4, t, 1), None);
        // The store sells out: the item still has 2.
        assert_eq!(whole.count(&at("store-5"), 5, t, 0), None);
        // A location short of stock lowers nothing.
        assert_eq!(whole.count(&at("store-5"), 6, t, -3), None);
        let out = whole.count(&at("default"), 4, t, 0).expect("out of stock");
        assert_eq!(
            (
                out.crossing,
                out.location.as_str(),
                out.version,
                out.available
            ),
            (Crossing::OutOfStock, "default", 4, 0)
        );
        // The same change again (a redelivery) or an older one: nothing.
        assert_eq!(whole.count(&at("default"), 4, t, 0), None);
        assert_eq!(whole.count(&at("default"), 2, t, 5), None);
        let back = whole.count(&at("store-5"), 7, t, 2).expect("back in stock");
        assert_eq!((back.crossing, back.available), (Crossing::BackInStock, 2));
        let told = back.noticed(&Sku::parse("SKU-1").unwrap());
        assert_eq!(told.id(), "SKU-1:store-5:7:back_in_stock");
    }
}
