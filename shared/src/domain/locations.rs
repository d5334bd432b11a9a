//! The places that keep stock and what each is for: the registry a shop keeps with
//! `PUT /locations/{id}`. Every shop has the location `default` (a warehouse that fulfils
//! online orders) without registering it: a shop that never names a location keeps all its
//! stock there, and everything that existed before locations works unchanged.

use serde::{Deserialize, Serialize};

use super::stream::LocationId;
use super::types::{truncate, InvalidValue};
use crate::limits::{MAX_LOCATIONS, MAX_LOCATION_NAME};

/// What kind of place it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LocationKind {
    /// A warehouse or fulfilment centre.
    Warehouse,
    /// A shop that shoppers walk into (where they may pick up an order).
    Store,
}

/// A location as the shop registered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Location {
    /// Its id, as the shop names it.
    pub id: LocationId,
    /// A name for people (1 to 200 characters).
    pub name: String,
    /// A warehouse or a store.
    pub kind: LocationKind,
    /// Whether a reservation line that names no location may be allocated here.
    pub fulfills_online: bool,
    /// Whether shoppers may pick up here (`pickup_at` names it).
    pub pickup: bool,
    /// Allocation order: a lower value is tried first (after the request's own order).
    pub priority: i32,
    /// Whether it takes new reservations (an inactive location keeps its stock and its holds).
    pub active: bool,
}

/// Largest allocation priority, either way.
pub const MAX_PRIORITY: i32 = 1_000_000;

impl Location {
    /// A location, its fields checked: a name of 1 to [`MAX_LOCATION_NAME`] characters, a
    /// priority within ±[`MAX_PRIORITY`].
    pub fn new(
        id: LocationId,
        name: &str,
        kind: LocationKind,
        fulfills_online: bool,
        pickup: bool,
        priority: i64,
        active: bool,
    ) -> Result<Self, InvalidValue> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_LOCATION_NAME {
            return Err(InvalidValue::new(
                "invalid_location_name",
                format!(
                    "name must be 1 to {MAX_LOCATION_NAME} characters, got {:?}",
                    truncate(name, 80)
                ),
            ));
        }
        let bound = i64::from(MAX_PRIORITY);
        let priority = i32::try_from(priority)
            .ok()
            .filter(|_| (-bound..=bound).contains(&priority))
            .ok_or_else(|| {
                InvalidValue::new(
                    "invalid_priority",
                    format!("priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}, got {priority}"),
                )
            })?;
        Ok(Self {
            id,
            name: name.to_owned(),
            kind,
            fulfills_online,
            pickup,
            priority,
            active,
        })
    }

    /// The location every shop has until it says otherwise: `default`, a warehouse that
    /// fulfils online orders, active, priority 0.
    pub fn default_location() -> Self {
        Self {
            id: LocationId::default(),
            name: "Default".to_owned(),
            kind: LocationKind::Warehouse,
            fulfills_online: true,
            pickup: false,
            priority: 0,
            active: true,
        }
    }
}

/// The shop's registry of locations, kept as one record (ordered by id).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Locations {
    /// The locations registered (the default one only once the shop changed it).
    registered: Vec<Location>,
}

impl Locations {
    /// Every location, the default one included, ordered by id.
    pub fn all(&self) -> Vec<Location> {
        let mut all = self.registered.clone();
        if !all.iter().any(|location| location.id.is_default()) {
            all.push(Location::default_location());
            all.sort_by(|a, b| a.id.cmp(&b.id));
        }
        all
    }

    /// The location `id`, if the shop has it (`default` always).
    pub fn get(&self, id: &LocationId) -> Option<Location> {
        match self.registered.iter().find(|location| &location.id == id) {
            Some(location) => Some(location.clone()),
            None => id.is_default().then(Location::default_location),
        }
    }

    /// Registers `location`, or replaces the one with its id; refused past [`MAX_LOCATIONS`].
    /// Says whether anything changed.
    pub fn put(&mut self, location: Location) -> Result<bool, InvalidValue> {
        match self.registered.binary_search_by(|l| l.id.cmp(&location.id)) {
            Ok(index) if self.registered[index] == location => return Ok(false),
            Ok(index) => self.registered[index] = location,
            Err(_) if self.all().len() >= MAX_LOCATIONS && !location.id.is_default() => {
                return Err(InvalidValue::new(
                    "too_many_locations",
                    format!("a shop has at most {MAX_LOCATIONS} locations"),
                ));
            }
            Err(index) => self.registered.insert(index, location),
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(raw: &str) -> LocationId {
        LocationId::parse(raw).unwrap()
    }

    fn store(raw: &str, priority: i64) -> Location {
        Location::new(
            id(raw),
            "A store",
            LocationKind::Store,
            false,
            true,
            priority,
            true,
        )
        .unwrap()
    }

    #[test]
    fn a_shop_that_never_registered_a_location_has_the_default_one() {
        let none = Locations::default();
        assert_eq!(none.all(), vec![Location::default_location()]);
        assert_eq!(
            none.get(&LocationId::default()),
            Some(Location::default_location())
        );
        assert_eq!(none.get(&id("store-5")), None);
    }

    #[test]
    fn a_location_is_registered_replaced_and_listed_by_id_with_the_default() {
        let mut registry = Locations::default();
        assert_eq!(registry.put(store("store-5", 2)), Ok(true));
        assert_eq!(registry.put(store("a-store", 1)), Ok(true));
        assert_eq!(registry.put(store("a-store", 1)), Ok(false), "the same");
        assert_eq!(registry.put(store("a-store", 3)), Ok(true), "replaced");
        let ids: Vec<String> = registry.all().iter().map(|l| l.id.to_string()).collect();
        assert_eq!(ids, ["a-store", "default", "store-5"]);
        assert_eq!(registry.get(&id("a-store")).unwrap().priority, 3);
        let mut closed = Location::default_location();
        closed.active = false;
        registry.put(closed.clone()).unwrap();
        assert_eq!(registry.get(&LocationId::default()), Some(closed));
        assert_eq!(registry.all().len(), 3, "the default is listed once");
    }

    #[test]
    fn a_name_or_priority_out_of_bounds_and_a_registry_past_its_bound_are_refused() {
        let kind = LocationKind::Warehouse;
        let refused = |name: &str, priority| {
            Location::new(id("w"), name, kind, true, false, priority, true)
                .unwrap_err()
                .code
        };
        assert_eq!(refused("  ", 0), "invalid_location_name");
        assert_eq!(refused(&"n".repeat(201), 0), "invalid_location_name");
        assert_eq!(refused("W", 1_000_001), "invalid_priority");
        assert_eq!(refused("W", i64::MIN), "invalid_priority");
        // Found by the fuzzer: i32::MIN has no absolute value (a panic before).
        assert_eq!(refused("W", i64::from(i32::MIN)), "invalid_priority");
        assert!(Location::new(
            id("w"),
            &"n".repeat(200),
            kind,
            true,
            false,
            -1_000_000,
            true
        )
        .is_ok());
        let mut registry = Locations::default();
        for n in 0..MAX_LOCATIONS - 1 {
            registry.put(store(&format!("s-{n:04}"), 0)).unwrap();
        }
        assert_eq!(registry.all().len(), MAX_LOCATIONS);
        let over = registry.put(store("one-more", 0)).unwrap_err();
        assert_eq!(over.code, "too_many_locations");
        assert_eq!(registry.put(store("s-0001", 9)), Ok(true), "a change fits");
        assert_eq!(
            registry.put(Location::default_location()),
            Ok(true),
            "the default, registered, takes no more room"
        );
    }
}
