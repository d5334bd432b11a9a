//! Where a reservation line's units are taken from: the one rule of allocation.
//!
//! A line that names a location is held there (it must be active). A line that names none is
//! **allocated** among the candidates: the store `pickup_at` names (active, with pickup), or
//! else every active location that fulfils online orders. They are tried in one order: first
//! those the request lists in `locations`, in its order; then by `priority`, a lower value
//! first; then the one with the most available; then by id. Without `split` the line takes the
//! first location that has all of it (never a location short of it: Medusa #14987, #15132).
//! With `split` it takes all a location has before the next, in that order, and is refused
//! only when the candidates together have too few.
//!
//! Lines of one cart are allocated in turn over one [`Allocator`]: what a line takes at a
//! location is no longer there for the next line, so two lines never count the same units
//! (Medusa #16502). Availability is each location's own, never below zero: a location short
//! of stock gives nothing and takes nothing from another (Saleor #17170).

use std::collections::BTreeMap;

use serde::Serialize;

use super::locations::Location;
use super::stream::LocationId;
use super::types::InvalidValue;
use super::types::{Quantity, Sku};
use crate::limits::MAX_LOCATIONS;

/// Why a line could not be allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocationRefusal {
    /// No location may take the line: the one it names is unknown or inactive, the pickup
    /// store is not one, or no active location fulfils online orders.
    NoLocation {
        /// What was asked for, in words.
        why: String,
    },
    /// The candidates have too few units: `available` is what the best one has (without
    /// split) or all of them together (with split).
    InsufficientStock {
        /// Units the line asked for.
        requested: i64,
        /// Units it could have had.
        available: i64,
    },
}

/// How a request wants its lines that name no location allocated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Preference {
    /// Hold only at this store (it must be active and offer pickup).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pickup_at: Option<LocationId>,
    /// The request's own order, tried before the locations' priority.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<LocationId>,
    /// Whether a line may be taken from several locations.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub split: bool,
}

impl Preference {
    /// A request's preference: its pickup store, its own order of locations (each once, at
    /// most [`MAX_LOCATIONS`]) and whether a line may be split.
    pub fn new(
        pickup_at: Option<LocationId>,
        locations: Vec<LocationId>,
        split: bool,
    ) -> Result<Self, InvalidValue> {
        if locations.len() > MAX_LOCATIONS {
            return Err(InvalidValue::new(
                "invalid_locations",
                format!(
                    "locations lists at most {MAX_LOCATIONS} locations, got {}",
                    locations.len()
                ),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(twice) = locations.iter().find(|id| !seen.insert(*id)) {
            return Err(InvalidValue::new(
                "invalid_locations",
                format!("location {twice} appears more than once in locations"),
            ));
        }
        Ok(Self {
            pickup_at,
            locations,
            split,
        })
    }
}

/// Allocates the lines of one cart, each over what the lines before it left.
#[derive(Debug, Clone)]
pub struct Allocator {
    locations: Vec<Location>,
    available: BTreeMap<(Sku, LocationId), i64>,
}

impl Allocator {
    /// An allocator over the shop's `locations` and what each item has for sale at each
    /// (`available`; a pair not listed has none).
    pub fn new(
        locations: Vec<Location>,
        available: impl IntoIterator<Item = ((Sku, LocationId), i64)>,
    ) -> Self {
        Self {
            locations,
            available: available.into_iter().collect(),
        }
    }

    /// Units of `sku` left for sale at `location`, after the lines allocated so far.
    pub fn available(&self, sku: &Sku, location: &LocationId) -> i64 {
        self.available
            .get(&(sku.clone(), location.clone()))
            .copied()
            .unwrap_or(0)
            .max(0)
    }

    /// Where `quantity` units of `sku` are taken from: at `named` if the line names a location,
    /// else by `preference`. The units allocated are taken out of what the next lines see.
    pub fn allocate(
        &mut self,
        sku: &Sku,
        quantity: Quantity,
        named: Option<&LocationId>,
        preference: &Preference,
    ) -> Result<Vec<(LocationId, Quantity)>, AllocationRefusal> {
        let candidates = self.candidates(sku, named, preference)?;
        let wanted = quantity.units();
        let split = named.is_none() && preference.split;
        let mut taken: Vec<(LocationId, i64)> = Vec::new();
        if split {
            let mut missing = wanted;
            for (location, available) in &candidates {
                if missing == 0 {
                    break;
                }
                let take = (*available).min(missing);
                if take > 0 {
                    taken.push((location.clone(), take));
                    missing -= take;
                }
            }
            if missing > 0 {
                return Err(AllocationRefusal::InsufficientStock {
                    requested: wanted,
                    available: wanted - missing,
                });
            }
        } else {
            match candidates
                .iter()
                .find(|(_, available)| *available >= wanted)
            {
                Some((location, _)) => taken.push((location.clone(), wanted)),
                None => {
                    return Err(AllocationRefusal::InsufficientStock {
                        requested: wanted,
                        available: candidates.iter().map(|(_, a)| *a).max().unwrap_or(0),
                    })
                }
            }
        }
        let mut allocations = Vec::with_capacity(taken.len());
        for (location, units) in taken {
            let left = self.available(sku, &location) - units;
            self.available.insert((sku.clone(), location.clone()), left);
            // `units` is between 1 and the line's quantity.
            if let Ok(units) = Quantity::new(units) {
                allocations.push((location, units));
            }
        }
        Ok(allocations)
    }

    /// The locations the line may take units from, in the order they are tried, with what
    /// each has left.
    fn candidates(
        &self,
        sku: &Sku,
        named: Option<&LocationId>,
        preference: &Preference,
    ) -> Result<Vec<(LocationId, i64)>, AllocationRefusal> {
        let listed = |id: &LocationId| {
            preference
                .locations
                .iter()
                .position(|preferred| preferred == id)
                .unwrap_or(usize::MAX)
        };
        let mut ordered: Vec<(usize, i32, i64, LocationId)> =
            eligible(&self.locations, named, preference)?
                .into_iter()
                .map(|l| {
                    let available = self.available(sku, &l.id);
                    (listed(&l.id), l.priority, available, l.id.clone())
                })
                .collect();
        ordered.sort_by(|a, b| {
            (a.0, a.1, std::cmp::Reverse(a.2), &a.3).cmp(&(b.0, b.1, std::cmp::Reverse(b.2), &b.3))
        });
        Ok(ordered
            .into_iter()
            .map(|(_, _, available, id)| (id, available))
            .collect())
    }
}

/// The locations of `locations` a line may be held at, whatever they have: the one it names
/// (`named`, active), else the pickup store (active, with pickup), else every active location
/// that fulfils online orders. One of them: the line's location needs no allocation.
pub fn eligible<'a>(
    locations: &'a [Location],
    named: Option<&LocationId>,
    preference: &Preference,
) -> Result<Vec<&'a Location>, AllocationRefusal> {
    let find = |id: &LocationId| locations.iter().find(|l| &l.id == id);
    let refused = |why: String| Err(AllocationRefusal::NoLocation { why });
    let eligible: Vec<&Location> = match (named, &preference.pickup_at) {
        (Some(id), _) => match find(id) {
            Some(location) if location.active => vec![location],
            Some(_) => return refused(format!("location {id} is not active")),
            None => return refused(format!("the shop has no location {id}")),
        },
        (None, Some(id)) => match find(id) {
            Some(store) if store.active && store.pickup => vec![store],
            Some(_) => return refused(format!("location {id} offers no pickup now")),
            None => return refused(format!("the shop has no location {id}")),
        },
        (None, None) => locations
            .iter()
            .filter(|l| l.active && l.fulfills_online)
            .collect(),
    };
    if eligible.is_empty() {
        return refused("no active location fulfils online orders".to_owned());
    }
    Ok(eligible)
}

#[cfg(test)]
mod tests {
    //! Given locations and what each has, when a cart's lines are allocated, then where from.
    //! The platforms' reported failures are named cases.

    use super::*;
    use crate::domain::LocationKind;

    fn id(raw: &str) -> LocationId {
        LocationId::parse(raw).unwrap()
    }
    fn sku(raw: &str) -> Sku {
        Sku::parse(raw).unwrap()
    }
    fn qty(n: i64) -> Quantity {
        Quantity::new(n).unwrap()
    }
    fn warehouse(raw: &str, priority: i64) -> Location {
        Location::new(
            id(raw),
            raw,
            LocationKind::Warehouse,
            true,
            false,
            priority,
            true,
        )
        .unwrap()
    }
    fn pickup_store(raw: &str) -> Location {
        Location::new(id(raw), raw, LocationKind::Store, false, true, 0, true).unwrap()
    }
    /// An allocator over `locations` where item `A` has `stock` of `(location, units)`.
    fn given(locations: Vec<Location>, stock: &[(&str, i64)]) -> Allocator {
        Allocator::new(
            locations,
            stock.iter().map(|(l, n)| ((sku("A"), id(l)), *n)),
        )
    }
    fn online(n: i64) -> (i64, Preference) {
        (n, Preference::default())
    }
    fn taken(
        allocator: &mut Allocator,
        (n, preference): (i64, Preference),
    ) -> Result<Vec<(String, i64)>, AllocationRefusal> {
        allocator
            .allocate(&sku("A"), qty(n), None, &preference)
            .map(|all| {
                all.into_iter()
                    .map(|(l, q)| (l.to_string(), q.units()))
                    .collect()
            })
    }
    fn at(l: &str, n: i64) -> Vec<(String, i64)> {
        vec![(l.to_owned(), n)]
    }
    fn short(requested: i64, available: i64) -> AllocationRefusal {
        AllocationRefusal::InsufficientStock {
            requested,
            available,
        }
    }

    #[test]
    fn medusa_14987_stock_summed_over_locations_is_never_reserved_from_one_that_lacks_it() {
        let mut allocator = given(
            vec![warehouse("wh-a", 0), warehouse("wh-b", 1)],
            &[("wh-a", 2), ("wh-b", 2)],
        );
        // 4 in all, but no location has 3: refused, naming what the best one has.
        assert_eq!(taken(&mut allocator, online(3)), Err(short(3, 2)));
        assert_eq!(
            allocator.available(&sku("A"), &id("wh-a")),
            2,
            "nothing taken"
        );
    }

    #[test]
    fn medusa_15132_the_first_location_is_not_taken_blindly() {
        let mut allocator = given(
            vec![warehouse("wh-a", 0), warehouse("wh-b", 5)],
            &[("wh-a", 0), ("wh-b", 5)],
        );
        assert_eq!(taken(&mut allocator, online(2)), Ok(at("wh-b", 2)));
    }

    #[test]
    fn medusa_16502_two_lines_on_one_item_are_never_decided_on_the_same_units() {
        let mut allocator = given(vec![warehouse("wh-a", 0)], &[("wh-a", 3)]);
        let named = Some(&id("wh-a"));
        let none = Preference::default();
        let first = allocator.allocate(&sku("A"), qty(2), named, &none);
        assert_eq!(first, Ok(vec![(id("wh-a"), qty(2))]));
        let second = allocator.allocate(&sku("A"), qty(2), named, &none);
        assert_eq!(
            second,
            Err(short(2, 1)),
            "only 1 is left for the second line"
        );
    }

    #[test]
    fn saleor_17170_a_short_location_counts_as_none_and_takes_nothing_from_another() {
        let mut allocator = given(
            vec![warehouse("wh-a", 0), warehouse("wh-b", 1)],
            &[("wh-a", -3), ("wh-b", 2)],
        );
        assert_eq!(allocator.available(&sku("A"), &id("wh-a")), 0);
        assert_eq!(taken(&mut allocator, online(2)), Ok(at("wh-b", 2)));
        let split = Preference {
            split: true,
            ..Preference::default()
        };
        assert_eq!(taken(&mut allocator, (1, split)), Err(short(1, 0)));
    }

    #[test]
    fn saleor_9970_online_orders_never_lock_a_stores_pickup_only_stock() {
        let mut allocator = given(
            vec![warehouse("wh-a", 0), pickup_store("store-5")],
            &[("wh-a", 0), ("store-5", 5)],
        );
        assert_eq!(taken(&mut allocator, online(1)), Err(short(1, 0)));
        let pickup = Preference {
            pickup_at: Some(id("store-5")),
            ..Preference::default()
        };
        assert_eq!(taken(&mut allocator, (1, pickup)), Ok(at("store-5", 1)));
    }

    #[test]
    fn the_requests_order_comes_first_then_priority_then_the_most_available_then_the_id() {
        let locations = vec![
            warehouse("wh-a", 1),
            warehouse("wh-b", 0),
            warehouse("wh-c", 0),
            warehouse("wh-d", 0),
        ];
        let stock = [("wh-a", 9), ("wh-b", 4), ("wh-c", 6), ("wh-d", 6)];
        let preferring = |ids: &[&str]| Preference {
            locations: ids.iter().map(|l| id(l)).collect(),
            ..Preference::default()
        };
        let mut allocator = given(locations.clone(), &stock);
        assert_eq!(
            taken(&mut allocator, (1, preferring(&["wh-a"]))),
            Ok(at("wh-a", 1)),
            "listed first, whatever its priority"
        );
        let mut allocator = given(locations.clone(), &stock);
        assert_eq!(
            taken(&mut allocator, online(1)),
            Ok(at("wh-c", 1)),
            "priority 0 before 1, then the most available (6 over 4), then the id (c before d)"
        );
        let mut allocator = given(locations, &stock);
        assert_eq!(
            taken(&mut allocator, (5, preferring(&["wh-b", "wh-a"]))),
            Ok(at("wh-a", 5)),
            "the first listed that has all of it"
        );
    }

    #[test]
    fn a_split_line_takes_all_a_location_has_before_the_next_in_that_order() {
        let mut allocator = given(
            vec![
                warehouse("wh-a", 0),
                warehouse("wh-b", 1),
                warehouse("wh-c", 2),
            ],
            &[("wh-a", 2), ("wh-b", 0), ("wh-c", 5)],
        );
        let split = Preference {
            split: true,
            ..Preference::default()
        };
        assert_eq!(
            taken(&mut allocator, (4, split.clone())),
            Ok(vec![("wh-a".to_owned(), 2), ("wh-c".to_owned(), 2)])
        );
        assert_eq!(taken(&mut allocator, (4, split.clone())), Err(short(4, 3)));
        assert_eq!(taken(&mut allocator, (3, split)), Ok(at("wh-c", 3)));
    }

    #[test]
    fn a_line_named_to_an_inactive_or_unknown_location_or_a_pickup_at_no_store_is_refused() {
        let mut closed = warehouse("wh-z", 0);
        closed.active = false;
        let mut allocator = given(
            vec![warehouse("wh-a", 0), closed, pickup_store("store-5")],
            &[("wh-a", 5), ("wh-z", 5)],
        );
        let none = Preference::default();
        for named in ["wh-z", "nowhere"] {
            let refused = allocator.allocate(&sku("A"), qty(1), Some(&id(named)), &none);
            assert!(
                matches!(refused, Err(AllocationRefusal::NoLocation { .. })),
                "{named}: {refused:?}"
            );
        }
        let at_warehouse = Preference {
            pickup_at: Some(id("wh-a")),
            ..Preference::default()
        };
        assert!(matches!(
            taken(&mut allocator, (1, at_warehouse)),
            Err(AllocationRefusal::NoLocation { .. })
        ));
        let mut nothing_online = given(vec![pickup_store("store-5")], &[("store-5", 5)]);
        assert!(matches!(
            taken(&mut nothing_online, online(1)),
            Err(AllocationRefusal::NoLocation { .. })
        ));
    }
}
