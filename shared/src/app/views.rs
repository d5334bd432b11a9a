//! What the use cases answer with: the shapes the API serializes as they are.

use serde::Serialize;

use crate::domain::{
    Bucket, CommandId, HoldLine, HoldStatus, LocationId, Quantity, ReservationId, Sku, SkuState,
    Timestamp, Unavailable, Version,
};

/// A SKU's stock as of now.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemView {
    /// The SKU.
    pub sku: Sku,
    /// Units received, corrected by adjustments; sold units stay counted here (see `available`).
    pub on_hand: i64,
    /// Units held by holds that still count.
    pub reserved: i64,
    /// Units sold by checkouts.
    pub committed: i64,
    /// On-hand units not for sale, per state (`damaged`, `quality_control`, `safety_stock`).
    pub unavailable: Unavailable,
    /// Units that can be reserved now: on_hand less committed, reserved and unavailable, never
    /// below 0 (an adjustment or a count may leave the item short).
    pub available: i64,
    /// Units on their way in transfers between its locations, not on hand anywhere yet (absent:
    /// none).
    #[serde(skip_serializing_if = "crate::domain::types::is_zero")]
    pub transit_in: i64,
    /// Units shipped in transfers and not yet received (absent: none); for the item as a whole,
    /// the same units as `transit_in`.
    #[serde(skip_serializing_if = "crate::domain::types::is_zero")]
    pub transit_out: i64,
    /// Sequence of the last event (an item split into buckets: the sum of its buckets'
    /// sequences, which moves whenever any of them does).
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub version: Version,
    /// The item's escrow buckets, for admins who ask for them (`?detail=buckets`): those of
    /// the default location (each location lists its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<BucketView>>,
    /// The item at each location it is kept at (the default one first), when it is kept
    /// anywhere but the default location. The item's figures are their sums, but `available`,
    /// the sum of each location's, none below 0: a location short of stock never lowers what
    /// the others have for sale.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<LocationView>,
}

/// An item at one location.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocationView {
    /// The location.
    pub location: LocationId,
    /// Units there.
    pub on_hand: i64,
    /// Units held there.
    pub reserved: i64,
    /// Units sold from there and not shipped.
    pub committed: i64,
    /// Units set aside there, per state.
    pub unavailable: Unavailable,
    /// Units it can promise now (never below 0).
    pub available: i64,
    /// Units on their way here in transfers (absent: none).
    #[serde(skip_serializing_if = "crate::domain::types::is_zero")]
    pub transit_in: i64,
    /// Units shipped from here in transfers and not yet received (absent: none).
    #[serde(skip_serializing_if = "crate::domain::types::is_zero")]
    pub transit_out: i64,
    /// Sequence of its last event (summed over its buckets).
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub version: Version,
    /// Its escrow buckets, for admins who ask for them (`?detail=buckets`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<BucketView>>,
}

/// One escrow bucket of an item.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketView {
    /// The bucket (0: the item's own stream).
    #[cfg_attr(feature = "openapi", schema(value_type = u16))]
    pub bucket: Bucket,
    /// Units counted in this bucket.
    pub on_hand: i64,
    /// Units held in it.
    pub reserved: i64,
    /// Units sold from it.
    pub committed: i64,
    /// Units set aside in it (only bucket 0 keeps any).
    pub unavailable: Unavailable,
    /// Units it can promise now.
    pub available: i64,
    /// Sequence of its last event.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub version: Version,
}

impl ItemView {
    /// The figures of `sku` in `state` at `now`.
    pub fn new(sku: Sku, state: &SkuState, now: Timestamp) -> Self {
        Self {
            sku,
            on_hand: state.on_hand,
            reserved: state.held(now),
            committed: state.committed,
            unavailable: state.unavailable,
            available: state.for_sale(now),
            transit_in: state.in_transit.values().sum(),
            transit_out: state.transit_out,
            version: state.version,
            buckets: None,
            locations: Vec::new(),
        }
    }

    /// Item `sku` kept at several locations: the figures of each (the default location's
    /// first), summed, `available` as the sum of each location's (none below 0).
    pub fn of_locations(sku: Sku, locations: Vec<(LocationId, ItemView)>) -> Self {
        let mut whole = Self {
            sku,
            on_hand: 0,
            reserved: 0,
            committed: 0,
            unavailable: Unavailable::default(),
            available: 0,
            transit_in: 0,
            transit_out: 0,
            version: 0,
            buckets: None,
            locations: Vec::new(),
        };
        for (location, view) in locations {
            whole.on_hand += view.on_hand;
            whole.reserved += view.reserved;
            whole.committed += view.committed;
            whole.unavailable = whole.unavailable.plus(view.unavailable);
            whole.available += view.available.max(0);
            whole.transit_in += view.transit_in;
            whole.transit_out += view.transit_out;
            whole.version += view.version;
            if location.is_default() {
                whole.buckets = view.buckets.clone();
            }
            whole.locations.push(LocationView {
                location,
                on_hand: view.on_hand,
                reserved: view.reserved,
                committed: view.committed,
                unavailable: view.unavailable,
                available: view.available,
                transit_in: view.transit_in,
                transit_out: view.transit_out,
                version: view.version,
                buckets: view.buckets,
            });
        }
        whole
    }

    /// The figures of item `sku` over its buckets' states (bucket 0's first) at `now`.
    pub fn of_buckets(sku: Sku, buckets: &[(Bucket, &SkuState)], now: Timestamp) -> Self {
        let summed = SkuState::summed(buckets.iter().map(|(_, state)| *state));
        Self {
            buckets: Some(
                buckets
                    .iter()
                    .map(|(bucket, state)| BucketView {
                        bucket: *bucket,
                        on_hand: state.on_hand,
                        reserved: state.held(now),
                        committed: state.committed,
                        unavailable: state.unavailable,
                        available: state.for_sale(now),
                        version: state.version,
                    })
                    .collect(),
            ),
            ..Self::new(sku, &summed, now)
        }
    }

    /// The item's figures at `location` alone (all zero where it was never kept), without its
    /// list of locations.
    pub fn at_location(self, location: &LocationId) -> Self {
        if self.locations.is_empty() {
            if location.is_default() {
                return self;
            }
            return Self::of_locations(self.sku, Vec::new());
        }
        let Some(at) = self.locations.iter().find(|at| &at.location == location) else {
            return Self::of_locations(self.sku, Vec::new());
        };
        Self {
            sku: self.sku.clone(),
            on_hand: at.on_hand,
            reserved: at.reserved,
            committed: at.committed,
            unavailable: at.unavailable,
            available: at.available,
            transit_in: at.transit_in,
            transit_out: at.transit_out,
            version: at.version,
            buckets: at.buckets.clone(),
            locations: Vec::new(),
        }
    }

    /// The view without its buckets (nor its locations' buckets).
    pub fn without_buckets(self) -> Self {
        Self {
            buckets: None,
            locations: self
                .locations
                .into_iter()
                .map(|location| LocationView {
                    buckets: None,
                    ..location
                })
                .collect(),
            ..self
        }
    }
}

/// Several SKUs at once; those never seen are listed as missing.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemsView {
    /// The SKUs that have a read view, in the order asked.
    pub items: Vec<ItemView>,
    /// The SKUs asked for that were never seen.
    pub missing: Vec<Sku>,
}

/// One line of a reservation.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineView {
    /// The SKU held.
    pub sku: Sku,
    /// Units held.
    pub quantity: Quantity,
    /// Where this line's hold stands now.
    pub status: HoldStatus,
    /// Units checked out that have shipped.
    pub fulfilled: i64,
    /// Units checked out whose sale was cancelled before they shipped.
    pub cancelled: i64,
    /// Units shipped that came back.
    pub returned: i64,
    /// Where its units are held: one location, or several when the request allowed a split.
    pub allocations: Vec<AllocationView>,
}

/// Units of a line held at one location.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllocationView {
    /// The location.
    pub location: LocationId,
    /// Units held there.
    pub quantity: Quantity,
}

/// A reservation as of now.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReservationView {
    /// The reservation (it says where its first hold lives).
    pub reservation_id: ReservationId,
    /// Active while any line is; then committed while units sold await shipment, then
    /// fulfilled, cancelled, released or expired (see the README's statuses).
    pub status: HoldStatus,
    /// The cart's lines, each with its own status.
    pub lines: Vec<LineView>,
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    /// When it was placed.
    pub created_at: Timestamp,
    /// When the first of its holds stops being promised.
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
}

impl ReservationView {
    pub(crate) fn new(
        reservation_id: ReservationId,
        created_at: Timestamp,
        holds: &[HoldLine],
        now: Timestamp,
    ) -> Self {
        let lines: Vec<LineView> = HoldLine::by_item(holds)
            .into_iter()
            .map(|(sku, holds)| LineView {
                sku: sku.clone(),
                quantity: Quantity::new(holds.iter().map(|h| h.quantity.units()).sum())
                    .unwrap_or(holds[0].quantity),
                status: HoldStatus::overall(holds.iter().map(|h| h.status_at(now))),
                fulfilled: holds.iter().map(|h| h.fulfilled).sum(),
                cancelled: holds.iter().map(|h| h.cancelled).sum(),
                returned: holds.iter().map(|h| h.returned).sum(),
                allocations: holds
                    .iter()
                    .map(|h| AllocationView {
                        location: h.stream.location().clone(),
                        quantity: h.quantity,
                    })
                    .collect(),
            })
            .collect();
        Self {
            reservation_id,
            status: HoldStatus::overall(lines.iter().map(|line| line.status)),
            lines,
            created_at,
            expires_at: holds
                .iter()
                .map(|h| h.expires_at)
                .min()
                .unwrap_or(created_at),
        }
    }
}

/// Where a queued command stands (its OpenAPI schema, one object with the status's fields
/// optional, is written out in `crate::openapi`: clients generate a type from it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandView {
    /// The command, as its 202 named it.
    pub command_id: CommandId,
    #[serde(flatten)]
    /// Where it stands, with the reason when it did not apply.
    pub status: super::CommandStatus,
}

/// Serializes a timestamp in its RFC 3339 form.
pub(crate) fn rfc3339<S: serde::Serializer>(
    at: &Timestamp,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&format_rfc3339(*at))
}

/// The timestamp an RFC 3339 text names (any offset; to the millisecond).
pub fn parse_rfc3339(raw: &str) -> Result<Timestamp, String> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|at| Timestamp::from_millis(at.timestamp_millis()))
        .map_err(|err| format!("{raw:?} is not an RFC 3339 time (2026-12-07T09:30:00Z): {err}"))
}

/// RFC 3339 text of a timestamp (UTC, milliseconds).
pub fn format_rfc3339(at: Timestamp) -> String {
    chrono::DateTime::from_timestamp_millis(at.millis()).map_or_else(
        || at.millis().to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}
