//! Where a unit is kept: an item's stock lives in streams, one per item × location × escrow
//! bucket. A stream is the unit of the store (its own head, its own conditional write), and
//! [`StreamId`] is its one name: every event, snapshot, hold and archive object names the
//! stream it belongs to by it, and the rest of the code asks it for the item, the location and
//! the bucket instead of taking a name apart.
//!
//! Text form (the store's keys, event JSON, reservation ids): `{sku}`, then `:{location}`
//! unless it is the default location, then `@{bucket}` unless it is bucket 0. An item that
//! never names a location nor splits is the stream `{sku}`, as every stream was before
//! locations and buckets: nothing stored changes name. `:` and `@` are outside the SKU and
//! location alphabet, so no item or location is ever named like a stream of another.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use super::types::{truncate, Bucket, InvalidValue, Sku};

/// A place that keeps stock (a warehouse, a store): 1–64 characters of `[A-Za-z0-9._-]`, as
/// the shop names it. A shop that never names one has one, [`LocationId::default`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct LocationId(String);

/// The name of the location every shop has: where stock is kept when no location is named.
const DEFAULT_LOCATION: &str = "default";

impl LocationId {
    /// Longest location id accepted.
    pub const MAX_LEN: usize = 64;

    /// Parses a location id, rejecting empty, over-long or out-of-alphabet strings.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if raw.is_empty() || raw.len() > Self::MAX_LEN || !raw.chars().all(valid_char) {
            return Err(InvalidValue::new(
                "invalid_location",
                format!(
                    "location must be 1-{} characters of [A-Za-z0-9._-], got {:?}",
                    Self::MAX_LEN,
                    truncate(raw, 80)
                ),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The location id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the default location.
    pub fn is_default(&self) -> bool {
        self.0 == DEFAULT_LOCATION
    }
}

impl Default for LocationId {
    fn default() -> Self {
        Self(DEFAULT_LOCATION.to_owned())
    }
}

impl fmt::Display for LocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for LocationId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        LocationId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// An item at a location: what a command on stock (a receipt, an adjustment, a move, a count,
/// a layout of buckets) acts on. An item alone is at the default location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemAt {
    /// The item.
    pub sku: Sku,
    /// The location.
    pub location: LocationId,
}

impl From<Sku> for ItemAt {
    fn from(sku: Sku) -> Self {
        Self {
            sku,
            location: LocationId::default(),
        }
    }
}

/// Where in an item a line's units are held: at which location, in which of its buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Placement {
    /// The location.
    pub location: LocationId,
    /// The escrow bucket of the item at that location.
    pub bucket: Bucket,
}

/// One stream of an item: the item, the location and the escrow bucket it keeps.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    item: Sku,
    placement: Placement,
}

/// Between an item's SKU and a location other than the default in a stream's name.
const LOCATION_MARK: char = ':';
/// Before the bucket number, for a bucket other than 0.
const BUCKET_MARK: char = '@';

impl StreamId {
    /// The stream of `item` at `placement`.
    pub fn new(item: Sku, placement: Placement) -> Self {
        Self { item, placement }
    }

    /// The item's own stream: bucket 0 at the default location (where an item that never
    /// names a location nor splits keeps everything).
    pub fn of(item: &Sku) -> Self {
        Self::new(item.clone(), Placement::default())
    }

    /// Bucket 0 of `item` at `location`: the stream that keeps the item's layout there.
    pub fn at(item: &Sku, location: &LocationId) -> Self {
        Self::new(
            item.clone(),
            Placement {
                location: location.clone(),
                bucket: Bucket::HOME,
            },
        )
    }

    /// Parses a stream's name ([the text form](self)).
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let invalid = || {
            InvalidValue::new(
                "invalid_stream",
                format!("{:?} names no stream of an item", truncate(raw, 80)),
            )
        };
        let (rest, bucket) = match raw.split_once(BUCKET_MARK) {
            Some((rest, number)) => match number.parse::<u16>() {
                Ok(n) if number == n.to_string() && n >= 1 => {
                    (rest, Bucket::new(n).map_err(|_| invalid())?)
                }
                _ => return Err(invalid()),
            },
            None => (raw, Bucket::HOME),
        };
        let (item, location) = match rest.split_once(LOCATION_MARK) {
            Some((item, location)) => {
                let location = LocationId::parse(location).map_err(|_| invalid())?;
                // One name per stream: the default location is never spelt out.
                if location.is_default() {
                    return Err(invalid());
                }
                (item, location)
            }
            None => (rest, LocationId::default()),
        };
        let item = Sku::parse(item).map_err(|_| invalid())?;
        Ok(Self::new(item, Placement { location, bucket }))
    }

    /// The item the stream keeps stock of.
    pub fn item(&self) -> &Sku {
        &self.item
    }

    /// The location it keeps it at.
    pub fn location(&self) -> &LocationId {
        &self.placement.location
    }

    /// Which of the item's buckets at that location it is.
    pub fn bucket(&self) -> Bucket {
        self.placement.bucket
    }

    /// Whether this is bucket 0 of its item at its location: the stream that keeps the
    /// layout of the buckets and takes receipts.
    pub fn is_home(&self) -> bool {
        self.placement.bucket == Bucket::HOME
    }

    /// Bucket `bucket` of the same item at the same location.
    pub fn in_bucket(&self, bucket: Bucket) -> StreamId {
        Self::new(
            self.item.clone(),
            Placement {
                location: self.placement.location.clone(),
                bucket,
            },
        )
    }

    /// Bucket 0 of the same item at the same location.
    pub fn home(&self) -> StreamId {
        self.in_bucket(Bucket::HOME)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.item)?;
        if !self.placement.location.is_default() {
            write!(f, "{LOCATION_MARK}{}", self.placement.location)?;
        }
        if self.placement.bucket != Bucket::HOME {
            write!(f, "{BUCKET_MARK}{}", self.placement.bucket)?;
        }
        Ok(())
    }
}

impl Serialize for StreamId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        StreamId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sku(raw: &str) -> Sku {
        Sku::parse(raw).unwrap()
    }

    #[test]
    fn an_items_own_stream_and_its_buckets_keep_the_names_they_always_had() {
        let item = StreamId::of(&sku("TEE-1"));
        assert_eq!(item.to_string(), "TEE-1");
        let third = item.in_bucket(Bucket::new(3).unwrap());
        assert_eq!(third.to_string(), "TEE-1@3");
        assert_eq!(StreamId::parse("TEE-1@3").unwrap(), third);
        assert_eq!(third.item(), &sku("TEE-1"));
        assert!(third.location().is_default());
        assert!(!third.is_home());
        assert_eq!(third.home(), item);
    }

    #[test]
    fn a_location_other_than_the_default_is_named_between_the_item_and_the_bucket() {
        let store = LocationId::parse("store-5").unwrap();
        let stream = StreamId::new(
            sku("TEE-1"),
            Placement {
                location: store.clone(),
                bucket: Bucket::new(2).unwrap(),
            },
        );
        assert_eq!(stream.to_string(), "TEE-1:store-5@2");
        let parsed = StreamId::parse("TEE-1:store-5@2").unwrap();
        assert_eq!(parsed, stream);
        assert_eq!(parsed.location(), &store);
        assert_eq!(parsed.home().to_string(), "TEE-1:store-5");
        let json = serde_json::to_string(&stream).unwrap();
        assert_eq!(serde_json::from_str::<StreamId>(&json).unwrap(), stream);
    }

    #[test]
    fn a_name_that_is_not_a_streams_one_way_is_refused() {
        for raw in [
            "",
            "TEE-1@0",
            "TEE-1@03",
            "TEE-1@256",
            "TEE-1@",
            "TEE-1:",
            "TEE-1:default",
            "TEE-1@2:store-5",
            "TEE 1",
            "TEE-1:store 5",
            "TEE-1:a:b",
        ] {
            let refused = StreamId::parse(raw).unwrap_err();
            assert_eq!(refused.code, "invalid_stream", "{raw:?}");
        }
    }

    #[test]
    fn a_location_id_keeps_to_its_alphabet() {
        assert!(LocationId::parse("wh-east.1_b").is_ok());
        for raw in ["", "a:b", "a@b", "a/b", &"x".repeat(65)] {
            assert_eq!(
                LocationId::parse(raw).unwrap_err().code,
                "invalid_location",
                "{raw:?}"
            );
        }
        assert!(LocationId::default().is_default());
    }
}
