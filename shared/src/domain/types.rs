//! Value types of the domain. Each one is parsed once at the edge ("parse, don't validate"),
//! so the rest of the code never sees an invalid SKU, quantity or id.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use thiserror::Error;

use super::access::ClientId;
use super::stream::StreamId;

/// Why a raw value could not become a domain value. The `code` is the machine-readable error
/// code the HTTP edge answers with (400).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct InvalidValue {
    /// snake_case error code, e.g. `invalid_sku`.
    pub code: &'static str,
    /// What was wrong, for a human.
    pub message: String,
}

impl InvalidValue {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// A stock keeping unit: 1–64 characters of `[A-Za-z0-9._-]`, as clients name it (an *item*).
/// Its stock lives in streams ([`super::stream::StreamId`]), one per location and escrow bucket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Sku(String);

impl Sku {
    /// Longest SKU accepted.
    pub const MAX_LEN: usize = 64;

    /// Parses a SKU, rejecting empty, over-long or out-of-alphabet strings.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if raw.is_empty() || raw.len() > Self::MAX_LEN || !raw.chars().all(valid_char) {
            return Err(InvalidValue::new(
                "invalid_sku",
                format!(
                    "sku must be 1-{} characters of [A-Za-z0-9._-], got {:?}",
                    Self::MAX_LEN,
                    truncate(raw, 80)
                ),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The SKU as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One of an item's escrow buckets at a location: 0 keeps the layout and takes receipts;
/// 1..=255 are the streams `…@{b}` ([`super::stream::StreamId`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Bucket(u16);

impl Bucket {
    /// Bucket 0: the item's own stream, where receipts land and drains gather.
    pub const HOME: Bucket = Bucket(0);

    /// Bucket `number`, 0..=255.
    pub fn new(number: u16) -> Result<Self, InvalidValue> {
        if number >= BucketCount::MAX {
            return Err(InvalidValue::new(
                "invalid_bucket",
                format!("bucket must be 0 to {}, got {number}", BucketCount::MAX - 1),
            ));
        }
        Ok(Self(number))
    }

    /// The bucket's number.
    pub fn number(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How many escrow buckets an item is split into: 1..=256 (1: one stream, as every item
/// starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct BucketCount(u16);

/// Units a selling bucket should get at least, in [`BucketCount::recommended`].
pub const UNITS_PER_SELLING_BUCKET: i64 = 100;

impl BucketCount {
    /// Most buckets an item may have.
    pub const MAX: u16 = 256;
    /// One bucket: the item's own stream only.
    pub const ONE: BucketCount = BucketCount(1);

    /// Parses a count, rejecting values outside 1..=256.
    pub fn new(raw: i64) -> Result<Self, InvalidValue> {
        if raw < 1 || raw > i64::from(Self::MAX) {
            return Err(InvalidValue::new(
                "invalid_bucket_count",
                format!("count must be between 1 and {}, got {raw}", Self::MAX),
            ));
        }
        Ok(Self(raw as u16))
    }

    /// The layout recommended for an item that `processes` sell at once from `units` to
    /// spare: a selling bucket per process (bucket 0 coordinates and sells only once drained),
    /// as long as each gets [`UNITS_PER_SELLING_BUCKET`] and there are no more than
    /// √(units / 8); one bucket (no split) when that leaves fewer than two; at most
    /// [`BucketCount::MAX`]. Why, from the flash-sale simulation (docs/benchmarks.md): a
    /// bucket with few units costs more in hunts than it saves in races, and at the end of a
    /// sale every process hunts and the drain reads every bucket twice, some 2·K² reads spread
    /// over the units, which the square root keeps to a quarter of a read per unit.
    pub fn recommended(processes: usize, units: i64) -> Self {
        let units = units.max(0);
        let by_stock = usize::try_from(units / UNITS_PER_SELLING_BUCKET).unwrap_or(0);
        let by_end = usize::try_from((units / 8).isqrt()).unwrap_or(0);
        let selling = processes.min(by_stock).min(by_end);
        if selling < 2 {
            return Self::ONE;
        }
        Self(
            u16::try_from(selling + 1)
                .unwrap_or(Self::MAX)
                .min(Self::MAX),
        )
    }

    /// The count.
    pub fn get(self) -> u16 {
        self.0
    }

    /// Every bucket of the layout, 0 first.
    pub fn buckets(self) -> impl DoubleEndedIterator<Item = Bucket> + Clone {
        (0..self.0).map(Bucket)
    }
}

impl Default for BucketCount {
    fn default() -> Self {
        Self::ONE
    }
}

impl<'de> Deserialize<'de> for BucketCount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = i64::deserialize(deserializer)?;
        BucketCount::new(raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sku {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Sku::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Whether a count of units is zero: the figures left out of what is serialized while zero.
pub(crate) fn is_zero(units: &i64) -> bool {
    *units == 0
}

pub(crate) fn truncate(raw: &str, max: usize) -> String {
    raw.chars().take(max).collect()
}

/// A positive number of units in one request: 1..=1,000,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    /// Largest quantity one request may move.
    pub const MAX: u32 = 1_000_000;

    /// Parses a quantity from any integer, rejecting 0, negatives and more than [`Quantity::MAX`].
    pub fn new(raw: i64) -> Result<Self, InvalidValue> {
        if raw < 1 || raw > i64::from(Self::MAX) {
            return Err(InvalidValue::new(
                "invalid_quantity",
                format!("quantity must be between 1 and {}, got {raw}", Self::MAX),
            ));
        }
        Ok(Self(raw as u32))
    }

    /// The quantity as a signed count, the unit of the fold.
    pub fn units(self) -> i64 {
        i64::from(self.0)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = i64::deserialize(deserializer)?;
        Quantity::new(raw).map_err(serde::de::Error::custom)
    }
}

/// A positive number of units moved between an item's buckets: as many as the item holds. Not a
/// request's [`Quantity`]: a spread may move every unit ever received in one go (three receipts
/// of a million, split in two, move a million and a half), so it has no bound but the count's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Units(i64);

impl Units {
    /// `raw` units, if there is at least one.
    pub fn new(raw: i64) -> Option<Self> {
        (raw >= 1).then_some(Self(raw))
    }

    /// The units as a signed count, the unit of the fold.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl From<Quantity> for Units {
    fn from(quantity: Quantity) -> Self {
        Self(quantity.units())
    }
}

impl<'de> Deserialize<'de> for Units {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = i64::deserialize(deserializer)?;
        Units::new(raw).ok_or_else(|| {
            serde::de::Error::custom(format!("units moved must be at least 1, got {raw}"))
        })
    }
}

/// An item's low-stock threshold: a `low_stock` notice is told when its available units go
/// below it. 0 (the default) tells none; at most [`Quantity::MAX`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct LowStockThreshold(u32);

impl LowStockThreshold {
    /// No threshold: no `low_stock` notice.
    pub const OFF: LowStockThreshold = LowStockThreshold(0);

    /// Parses a threshold, rejecting negatives and more than [`Quantity::MAX`].
    pub fn new(raw: i64) -> Result<Self, InvalidValue> {
        if raw < 0 || raw > i64::from(Quantity::MAX) {
            return Err(InvalidValue::new(
                "invalid_threshold",
                format!(
                    "below must be between 0 (no threshold) and {}, got {raw}",
                    Quantity::MAX
                ),
            ));
        }
        Ok(Self(raw as u32))
    }

    /// Whether no threshold is set.
    pub fn is_off(&self) -> bool {
        self.0 == 0
    }

    /// Whether `available` units are below the threshold (never, when it is off).
    pub fn is_low(self, available: i64) -> bool {
        available < i64::from(self.0)
    }

    /// The threshold in units.
    pub fn units(self) -> i64 {
        i64::from(self.0)
    }
}

impl<'de> Deserialize<'de> for LowStockThreshold {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = i64::deserialize(deserializer)?;
        LowStockThreshold::new(raw).map_err(serde::de::Error::custom)
    }
}

/// Position of an event in its SKU's stream. Streams are gap-free: 1, 2, 3, … ; 0 means "no event".
pub type Version = u64;

/// Milliseconds since the Unix epoch. The domain never reads a clock: callers pass `now` in.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// A timestamp from milliseconds since the Unix epoch.
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// This instant moved forward by `seconds`.
    pub const fn plus_seconds(self, seconds: i64) -> Self {
        Self(self.0.saturating_add(seconds.saturating_mul(1000)))
    }

    /// This instant moved forward by `millis`.
    pub const fn plus_millis(self, millis: i64) -> Self {
        Self(self.0.saturating_add(millis))
    }

    /// The later of two instants.
    pub fn max(self, other: Self) -> Self {
        Ord::max(self, other)
    }

    /// This instant rounded up to a multiple of `step_millis`.
    pub fn ceil_to(self, step_millis: i64) -> Self {
        let rem = self.0.rem_euclid(step_millis);
        if rem == 0 {
            self
        } else {
            Self(self.0 - rem + step_millis)
        }
    }
}

/// How long a hold is promised, in seconds: 60..=86,400 (default 900).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TtlSeconds(u32);

impl TtlSeconds {
    /// Shortest hold.
    pub const MIN: u32 = 60;
    /// Longest hold: one day.
    pub const MAX: u32 = 86_400;
    /// Hold length when the request names none.
    pub const DEFAULT: TtlSeconds = TtlSeconds(900);

    /// Parses a TTL, rejecting values outside 60..=86,400.
    pub fn new(raw: i64) -> Result<Self, InvalidValue> {
        if raw < i64::from(Self::MIN) || raw > i64::from(Self::MAX) {
            return Err(InvalidValue::new(
                "invalid_ttl",
                format!(
                    "ttl_seconds must be between {} and {}, got {raw}",
                    Self::MIN,
                    Self::MAX
                ),
            ));
        }
        Ok(Self(raw as u32))
    }

    /// The TTL in seconds.
    pub fn seconds(self) -> i64 {
        i64::from(self.0)
    }
}

impl<'de> Deserialize<'de> for TtlSeconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = i64::deserialize(deserializer)?;
        TtlSeconds::new(raw).map_err(serde::de::Error::custom)
    }
}

/// Identifies a reservation and says where its first hold event lives: the stream and
/// sequence of the anchor `HoldPlaced` event, plus a random nonce so ids cannot be guessed.
///
/// Encoding the location in the id gives read-your-writes without any secondary index: a
/// client holding a 201 can be served from a strongly consistent point read at once, and the
/// hot path of a reservation stays a single conditional append.
/// Text form: `{stream}~{seq}~{nonce as 16 hex digits}` (`~` is outside a stream's name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReservationId {
    anchor: StreamId,
    anchor_seq: Version,
    nonce: u64,
}

impl ReservationId {
    /// The id of a reservation whose anchor event is `anchor_seq` on `anchor`.
    pub fn new(anchor: StreamId, anchor_seq: Version, nonce: u64) -> Self {
        Self {
            anchor,
            anchor_seq,
            nonce,
        }
    }

    /// The id of a new reservation anchored at `anchor_seq` on `anchor`, its nonce drawn
    /// from the operating system's random source (as a v4 UUID is): a client must not guess
    /// another's reservation from its own.
    pub fn placed(anchor: StreamId, anchor_seq: Version) -> Self {
        let (nonce, _) = uuid::Uuid::new_v4().as_u64_pair();
        Self::new(anchor, anchor_seq, nonce)
    }

    /// The stream that holds the anchor event.
    pub fn anchor(&self) -> &StreamId {
        &self.anchor
    }

    /// Sequence of the anchor event in that stream.
    pub fn anchor_seq(&self) -> Version {
        self.anchor_seq
    }

    /// Parses the text form; anything else is `invalid_reservation_id`.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let invalid = || {
            InvalidValue::new(
                "invalid_reservation_id",
                format!("{:?} is not a reservation id", truncate(raw, 120)),
            )
        };
        let mut parts = raw.split('~');
        let (Some(sku), Some(seq), Some(nonce), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let sku = StreamId::parse(sku).map_err(|_| invalid())?;
        let seq: Version = seq.parse().map_err(|_| invalid())?;
        if seq == 0 || seq.to_string().len() != seq_len(raw) || nonce.len() != 16 {
            return Err(invalid());
        }
        let nonce = u64::from_str_radix(nonce, 16).map_err(|_| invalid())?;
        Ok(Self::new(sku, seq, nonce))
    }
}

fn seq_len(raw: &str) -> usize {
    raw.split('~').nth(1).map_or(0, str::len)
}

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}~{}~{:016x}", self.anchor, self.anchor_seq, self.nonce)
    }
}

impl FromStr for ReservationId {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for ReservationId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ReservationId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Identifies a queued command (a UUID). Derived from the client's `Idempotency-Key` when one is
/// given, so a retried request names the same command and takes effect once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CommandId(uuid::Uuid);

impl CommandId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    /// 64 of its bits: what a transfer the command makes is told apart by.
    pub fn nonce(&self) -> u64 {
        self.0.as_u64_pair().1
    }

    /// The id a request of `client` with this idempotency key always gets, scoped by what it
    /// is for (route and target) so one key used on two routes names two commands, and by the
    /// client so two clients using one key never name the same command.
    pub fn for_idempotency_key(client: &ClientId, scope: &str, key: &IdempotencyKey) -> Self {
        let name = format!("{client}\n{scope}\n{}", key.as_str());
        Self(uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            name.as_bytes(),
        ))
    }

    /// The id of the expiry of one hold at one expiry instant: every sweep that finds that
    /// hold due names the same command, and an extension (a new instant) names a new one.
    pub fn for_expiry(
        reservation_id: &ReservationId,
        stream: &StreamId,
        expires_at: Timestamp,
    ) -> Self {
        let name = format!(
            "expire\n{reservation_id}\n{stream}\n{}",
            expires_at.millis()
        );
        Self(uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            name.as_bytes(),
        ))
    }

    /// The id a queued record that names none is filed under: the same bytes always name the
    /// same id, so a redelivered record is set aside once.
    pub fn for_record(data: &[u8]) -> Self {
        let mut name = b"record\n".to_vec();
        name.extend_from_slice(data);
        Self(uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, &name))
    }

    /// Parses the UUID text form; anything else is `invalid_command_id`.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        uuid::Uuid::try_parse(raw).map(Self).map_err(|_| {
            InvalidValue::new(
                "invalid_command_id",
                format!("{:?} is not a command id", truncate(raw, 120)),
            )
        })
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A client's `Idempotency-Key`: 1–255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Longest key accepted.
    pub const MAX_LEN: usize = 255;

    /// Parses a key, rejecting empty, over-long or non-printable values.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN || !raw.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(InvalidValue::new(
                "invalid_idempotency_key",
                format!(
                    "Idempotency-Key must be 1-{} visible ASCII characters",
                    Self::MAX_LEN
                ),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sku_of_allowed_characters_parses() {
        assert_eq!(
            Sku::parse("ABC-1_2.3").map(|s| s.to_string()).ok(),
            Some("ABC-1_2.3".into())
        );
    }

    #[test]
    fn a_sku_that_is_empty_too_long_or_has_other_characters_is_rejected() {
        for raw in ["", &"A".repeat(65), "A B", "A/B", "Ä", "A~B"] {
            assert_eq!(
                Sku::parse(raw).map_err(|e| e.code),
                Err("invalid_sku"),
                "{raw:?}"
            );
        }
        assert!(Sku::parse(&"A".repeat(64)).is_ok());
    }

    #[test]
    fn a_quantity_outside_one_to_a_million_is_rejected() {
        for raw in [0, -1, 1_000_001, i64::MAX] {
            assert_eq!(
                Quantity::new(raw).map_err(|e| e.code),
                Err("invalid_quantity")
            );
        }
        assert_eq!(Quantity::new(1_000_000).map(Quantity::units), Ok(1_000_000));
    }

    #[test]
    fn a_ttl_outside_a_minute_to_a_day_is_rejected() {
        for raw in [0, 59, 86_401] {
            assert_eq!(TtlSeconds::new(raw).map_err(|e| e.code), Err("invalid_ttl"));
        }
        assert!(TtlSeconds::new(60).is_ok() && TtlSeconds::new(86_400).is_ok());
    }

    #[test]
    fn a_reservation_id_round_trips_through_its_text_form() {
        let id = ReservationId::new(StreamId::of(&Sku::parse("SKU.1").unwrap()), 42, 0xdead_beef);
        let text = id.to_string();
        assert_eq!(text, "SKU.1~42~00000000deadbeef");
        assert_eq!(ReservationId::parse(&text), Ok(id));
        let at = StreamId::parse("SKU.1:store-5@3").unwrap();
        let placed = ReservationId::new(at.clone(), 7, 1);
        assert_eq!(placed.to_string(), "SKU.1:store-5@3~7~0000000000000001");
        assert_eq!(
            ReservationId::parse(&placed.to_string()).unwrap().anchor(),
            &at
        );
    }

    #[test]
    fn a_new_reservations_nonce_comes_from_the_os_not_from_a_seeded_generator() {
        let sku = StreamId::of(&Sku::parse("SKU-1").unwrap());
        fastrand::seed(7);
        let first = ReservationId::placed(sku.clone(), 1);
        fastrand::seed(7);
        let second = ReservationId::placed(sku, 1);
        assert_ne!(first, second, "the same seed must not give the same id");
        assert_eq!(ReservationId::parse(&first.to_string()), Ok(first));
    }

    #[test]
    fn a_malformed_reservation_id_is_rejected() {
        for raw in [
            "",
            "SKU",
            "SKU~1",
            "SKU~0~00000000deadbeef",
            "SKU~01~00000000deadbeef",
            "SKU~+1~00000000deadbeef",
            "SKU~1~deadbeef",
            "SKU~1~00000000deadbeef~x",
            "S K~1~00000000deadbeef",
        ] {
            assert!(ReservationId::parse(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn the_same_idempotency_key_in_the_same_scope_names_the_same_command() {
        let key = IdempotencyKey::parse("k-1").unwrap();
        let client = ClientId::parse("storefront").unwrap();
        let other = ClientId::parse("warehouse").unwrap();
        let a = CommandId::for_idempotency_key(&client, "receipt/A", &key);
        assert_eq!(
            a,
            CommandId::for_idempotency_key(&client, "receipt/A", &key)
        );
        assert_ne!(
            a,
            CommandId::for_idempotency_key(&client, "receipt/B", &key)
        );
        assert_ne!(a, CommandId::for_idempotency_key(&other, "receipt/A", &key));
    }

    #[test]
    fn timestamps_round_up_to_a_step() {
        assert_eq!(
            Timestamp::from_millis(1001).ceil_to(1000),
            Timestamp::from_millis(2000)
        );
        assert_eq!(
            Timestamp::from_millis(2000).ceil_to(1000),
            Timestamp::from_millis(2000)
        );
    }
}
