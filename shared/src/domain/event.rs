//! Events: the facts recorded in each SKU's stream. Past tense, immutable, and carrying what the
//! fold and the projections need (a hold event names the quantity and the expiry bucket it
//! counts in, so folding never has to look anything up).

use serde::{Deserialize, Serialize};

use super::access::ClientId;
use super::buckets::{Move, MoveId};
use super::state::Figures;
use super::stock_states::{Annotation, Reason, Reclassification};
use super::stream::{LocationId, StreamId};
use super::transfer::TransferId;
use super::types::{
    BucketCount, CommandId, InvalidValue, LowStockThreshold, Quantity, ReservationId, Sku,
    Timestamp, Version,
};

/// One recorded event: position in its stream, when it was decided, and what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The stream this event belongs to (named `sku` in what is stored, as it always was).
    #[serde(rename = "sku")]
    pub stream: StreamId,
    /// Gap-free position in the stream, starting at 1.
    pub seq: Version,
    /// When the decision that produced it was taken (never earlier than the stream's previous event).
    pub at: Timestamp,
    /// The client whose command or reservation made it (from its token); absent for what the
    /// service does by itself (expiries, moves between buckets) and for events from before
    /// actors were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<ClientId>,
    /// The stream's figures right after it, at its time (what a ledger page starts from without
    /// folding the history before it); absent on events from before they were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub figures: Option<Figures>,
    /// What happened.
    #[serde(flatten)]
    pub change: Change,
}

/// One line of a request: a SKU, how many units of it, and, for a reservation, the location
/// it is held at (`None`: allocated, see [`crate::domain::allocation`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    /// The SKU held.
    pub sku: Sku,
    /// Units held.
    pub quantity: Quantity,
    /// Where its units are held; absent: allocated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<LocationId>,
}

impl Line {
    /// `quantity` units of `sku`, wherever the allocation finds them.
    pub fn of(sku: Sku, quantity: Quantity) -> Self {
        Self {
            sku,
            quantity,
            location: None,
        }
    }

    /// Checks a request's lines: 1 to `limit` of them (`why` says where a lower limit comes
    /// from), each SKU once.
    pub fn check_all(lines: &[Line], limit: usize, why: &str) -> Result<(), InvalidValue> {
        if lines.is_empty() || lines.len() > limit {
            return Err(InvalidValue::new(
                "invalid_lines",
                format!(
                    "lines must hold 1 to {limit} entries{why}, got {}",
                    lines.len()
                ),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        match lines.iter().find(|line| !seen.insert(&line.sku)) {
            Some(line) => Err(InvalidValue::new(
                "duplicate_sku",
                format!("sku {} appears on more than one line", line.sku),
            )),
            None => Ok(()),
        }
    }
}

/// One line of a reservation as held: the stream its units are held in and how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacedLine {
    /// The stream (item, location, bucket), named `sku` in what is stored.
    #[serde(rename = "sku")]
    pub stream: StreamId,
    /// Units held.
    pub quantity: Quantity,
}

/// What an event records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    /// Units arrived at the warehouse.
    StockReceived {
        /// The receipt that brought them.
        command_id: CommandId,
        /// Units received.
        quantity: Quantity,
        /// Why (`received` unless it said otherwise), a note, the delivery note or purchase
        /// order (an event from before reasons reads `received`).
        #[serde(flatten)]
        why: Annotation,
    },
    /// An admin corrected the count (a fact: it may leave the item short of its holds).
    StockAdjusted {
        /// The adjustment.
        command_id: CommandId,
        /// Units added (positive) or taken (negative).
        delta: i64,
        /// Why (an event from before reasons were listed reads `other`, its free text the
        /// note), a note, the document behind it.
        #[serde(flatten)]
        why: Annotation,
    },
    /// A shopper's hold on `quantity` units, promised until `expires_at` and counted against
    /// availability until `release_at` (expiry plus the release grace, rounded up to its bucket).
    /// The reservation's anchor event (on its first line's SKU) lists every line of the cart.
    HoldPlaced {
        /// The reservation the hold belongs to.
        reservation_id: ReservationId,
        /// Units held.
        quantity: Quantity,
        /// Until when the units are promised.
        expires_at: Timestamp,
        /// Until when they count against availability (its release bucket).
        release_at: Timestamp,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        /// Every line of the cart where it is held, on the anchor event only.
        lines: Vec<PlacedLine>,
        /// The client that placed it: only that client (or an admin) may see or change the
        /// reservation. Absent on holds placed before ownership was recorded (admin's only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<ClientId>,
    },
    /// The hold was promised for longer; it moves from one release bucket to another.
    HoldExtended {
        /// The reservation the hold belongs to.
        reservation_id: ReservationId,
        /// Units held.
        quantity: Quantity,
        /// The new end of the promise.
        expires_at: Timestamp,
        /// The new release bucket.
        release_at: Timestamp,
        /// The bucket the hold leaves.
        previous_release_at: Timestamp,
    },
    /// Checkout: the held units are sold. `reacquired` means the hold had already lapsed and the
    /// units were taken from what was available instead.
    HoldCommitted {
        /// The reservation checked out.
        reservation_id: ReservationId,
        /// The checkout command.
        command_id: CommandId,
        /// Units sold.
        quantity: Quantity,
        /// The release bucket the hold leaves.
        release_at: Timestamp,
        /// Whether the hold had lapsed and the units were taken from what was available.
        reacquired: bool,
    },
    /// The shopper gave the units back.
    HoldReleased {
        /// The reservation released.
        reservation_id: ReservationId,
        /// The release command.
        command_id: CommandId,
        /// Units given back.
        quantity: Quantity,
        /// The release bucket the hold leaves.
        release_at: Timestamp,
    },
    /// The hold ran out without a checkout.
    HoldExpired {
        /// The reservation whose hold expired.
        reservation_id: ReservationId,
        /// Units no longer held.
        quantity: Quantity,
        /// The release bucket the hold leaves.
        release_at: Timestamp,
    },
    /// Sold units shipped: they leave on-hand stock and the sales awaiting shipment (recorded
    /// on the stream the hold was in).
    HoldFulfilled {
        /// The reservation whose units shipped.
        reservation_id: ReservationId,
        /// The fulfilment command.
        command_id: CommandId,
        /// Units shipped.
        quantity: Quantity,
        /// The shipment, parcel or order it shipped under.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    /// A sale was cancelled before its units shipped: they are for sale again (recorded on the
    /// stream the hold was in).
    HoldCancelled {
        /// The reservation whose sale was cancelled.
        reservation_id: ReservationId,
        /// The cancellation command.
        command_id: CommandId,
        /// Units given back.
        quantity: Quantity,
    },
    /// Shipped units came back: for sale again (`restock`) or set aside as damaged (recorded on
    /// bucket 0, which keeps what is set aside).
    HoldReturned {
        /// The reservation whose units came back.
        reservation_id: ReservationId,
        /// The return command.
        command_id: CommandId,
        /// Units returned.
        quantity: Quantity,
        /// Whether they are for sale again (else damaged).
        restock: bool,
        /// The return authorisation or parcel.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    /// The admin split the item into `count` escrow buckets (recorded on bucket 0, which keeps
    /// the layout).
    BucketsSet {
        /// The command that set it.
        command_id: CommandId,
        /// How many buckets.
        count: BucketCount,
    },
    /// The admin set the item's low-stock threshold (recorded on bucket 0).
    LowStockSet {
        /// The command that set it.
        command_id: CommandId,
        /// Available units below which the item is told low on stock (0: never).
        below: LowStockThreshold,
    },
    /// Units moved between the item's buckets. The same event is written to every bucket the
    /// moves touch, in one transaction: each bucket's fold applies its own legs, so nothing is
    /// created or lost.
    StockMoved {
        /// Names the transaction (the audit pairs the buckets' copies by it).
        #[serde(rename = "transfer_id")]
        move_id: MoveId,
        /// The moves.
        moves: Vec<Move>,
    },
    /// The item is kept at `location` too, from now on (recorded on the default location's
    /// bucket 0, the first time anything is written at another location): where its other
    /// streams are, so a read of the item finds them without a scan.
    StockedAt {
        /// The location.
        location: LocationId,
    },
    /// The item's stock was gathered into bucket 0 (on bucket 0): reservations hold there only
    /// until the stock is spread again.
    BucketsDrained {},
    /// The item's stock is spread over its buckets again (on bucket 0).
    BucketsSpread {},
    /// On-hand units moved from one state to another (for sale, damaged, in inspection, kept
    /// back): on-hand stock is unchanged, what is for sale is not.
    StockReclassified {
        /// The move's command.
        command_id: CommandId,
        /// From which state to which.
        #[serde(flatten)]
        states: Reclassification,
        /// Units moved.
        quantity: Quantity,
        /// Why: the reason, a note, the document behind it.
        #[serde(flatten)]
        why: Annotation,
    },
    /// The item was counted: `counted` units on hand, `delta` from what the stream had (the fold
    /// adds `delta`, so a count shared over an item's buckets adds up). A fact: it may leave the
    /// item short of what is promised, as an adjustment may.
    StockCounted {
        /// The count's command.
        command_id: CommandId,
        /// Units found on hand.
        counted: i64,
        /// Units added (positive) or taken (negative) by the count.
        delta: i64,
        /// Why: the reason, a note, the document behind it.
        #[serde(flatten)]
        why: Annotation,
    },
    /// Units left this location in a transfer to another (on its bucket 0): out of its on-hand
    /// stock, into transit (`transit_out`), for sale nowhere until they land.
    TransferShipped {
        /// The transfer's command.
        command_id: CommandId,
        /// The transfer (it names both ends).
        transfer_id: TransferId,
        /// Units shipped.
        quantity: Quantity,
        /// The shipment, for the audit trail.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    /// Units are on their way here in a transfer (on this location's bucket 0): in transit to
    /// it (`transit_in`), not on hand yet.
    TransferIncoming {
        /// The transfer's command.
        command_id: CommandId,
        /// The transfer.
        transfer_id: TransferId,
        /// Units shipped.
        quantity: Quantity,
        /// The shipment, for the audit trail.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    /// Units of a transfer landed here (on bucket 0): on hand and for sale, no longer in transit.
    TransferReceived {
        /// The receipt's command.
        command_id: CommandId,
        /// The transfer.
        transfer_id: TransferId,
        /// Units received.
        quantity: Quantity,
    },
    /// Units this location shipped in a transfer were received at the other end: no longer in
    /// transit from here.
    TransferArrived {
        /// The receipt's command.
        command_id: CommandId,
        /// The transfer.
        transfer_id: TransferId,
        /// Units received there.
        quantity: Quantity,
    },
    /// A queued command could not take effect; recorded so the history explains itself.
    CommandRejected {
        /// The command refused.
        command_id: CommandId,
        /// Why.
        reason: RejectionCode,
        /// The item's on-hand figure when a count was refused `stale_count`: what to count
        /// against next.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        on_hand: Option<i64>,
    },
}

impl Change {
    /// The queued command this change answers, if it came from one.
    pub fn command_id(&self) -> Option<CommandId> {
        match self {
            Change::StockReceived { command_id, .. }
            | Change::StockAdjusted { command_id, .. }
            | Change::HoldCommitted { command_id, .. }
            | Change::HoldReleased { command_id, .. }
            | Change::HoldFulfilled { command_id, .. }
            | Change::HoldCancelled { command_id, .. }
            | Change::HoldReturned { command_id, .. }
            | Change::BucketsSet { command_id, .. }
            | Change::LowStockSet { command_id, .. }
            | Change::StockReclassified { command_id, .. }
            | Change::StockCounted { command_id, .. }
            | Change::TransferShipped { command_id, .. }
            | Change::TransferIncoming { command_id, .. }
            | Change::TransferReceived { command_id, .. }
            | Change::TransferArrived { command_id, .. }
            | Change::CommandRejected { command_id, .. } => Some(*command_id),
            Change::HoldPlaced { .. }
            | Change::HoldExtended { .. }
            | Change::HoldExpired { .. }
            | Change::StockMoved { .. }
            | Change::StockedAt { .. }
            | Change::BucketsDrained {}
            | Change::BucketsSpread {} => None,
        }
    }

    /// What kind of change this is, as the ledger and the metrics name it (snake_case, one
    /// name per variant).
    pub fn kind(&self) -> &'static str {
        match self {
            Change::StockReceived { .. } => "received",
            Change::StockAdjusted { .. } => "adjusted",
            Change::StockReclassified { .. } => "moved",
            Change::StockCounted { .. } => "counted",
            Change::HoldPlaced { .. } => "held",
            Change::HoldExtended { .. } => "hold_extended",
            Change::HoldCommitted { .. } => "committed",
            Change::HoldReleased { .. } => "released",
            Change::HoldExpired { .. } => "hold_expired",
            Change::HoldFulfilled { .. } => "fulfilled",
            Change::HoldCancelled { .. } => "cancelled",
            Change::HoldReturned { .. } => "returned",
            Change::BucketsSet { .. } => "buckets_set",
            Change::LowStockSet { .. } => "low_stock_set",
            Change::StockMoved { .. } => "transferred",
            Change::StockedAt { .. } => "stocked_at",
            Change::BucketsDrained {} => "buckets_drained",
            Change::BucketsSpread {} => "buckets_spread",
            Change::TransferShipped { .. } => "transfer_shipped",
            Change::TransferIncoming { .. } => "transfer_incoming",
            Change::TransferReceived { .. } => "transfer_received",
            Change::TransferArrived { .. } => "transfer_arrived",
            Change::CommandRejected { .. } => "rejected",
        }
    }

    /// Whether it only moves stock between an item's buckets (a transfer, a drain or spread
    /// mark) or says where its streams are: nothing of the item's figures changes, so neither
    /// integration events nor the ledger tell it.
    pub fn within_item(&self) -> bool {
        matches!(
            self,
            Change::StockMoved { .. }
                | Change::StockedAt { .. }
                | Change::BucketsDrained {}
                | Change::BucketsSpread {}
        )
    }

    /// Its kind as integration events tell it: `None` for what moves stock only between the
    /// item's buckets ([`Change::within_item`]) and for a refused command.
    pub fn told_kind(&self) -> Option<&'static str> {
        match self {
            change if change.within_item() => None,
            Change::CommandRejected { .. } => None,
            change => Some(change.kind()),
        }
    }

    /// Why the change was made, as its command said: a receipt's, an adjustment's, a move's or
    /// a count's annotation.
    pub fn annotation(&self) -> Option<&Annotation> {
        match self {
            Change::StockReceived { why, .. }
            | Change::StockAdjusted { why, .. }
            | Change::StockReclassified { why, .. }
            | Change::StockCounted { why, .. } => Some(why),
            _ => None,
        }
    }

    /// Why stock changed, when the change says: its annotation's reason; `returned` for units
    /// a shopper sent back.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Change::HoldReturned { .. } => Some(Reason::Returned),
            change => change.annotation().map(|why| why.reason),
        }
    }

    /// The same change of on-hand stock by `delta` instead (an adjustment's or a count's part,
    /// shared by an item's buckets); any other change as it is.
    pub fn with_delta(&self, delta: i64) -> Change {
        let mut part = self.clone();
        if let Change::StockAdjusted { delta: units, .. }
        | Change::StockCounted { delta: units, .. } = &mut part
        {
            *units = delta;
        }
        part
    }

    /// A transfer's change at its other end, and where that is: units shipped are incoming at
    /// the destination, units received there have arrived from the origin's side.
    pub fn at_other_end(&self) -> Option<(LocationId, Change)> {
        match self {
            Change::TransferShipped {
                command_id,
                transfer_id,
                quantity,
                reference,
            } => Some((
                transfer_id.to().clone(),
                Change::TransferIncoming {
                    command_id: *command_id,
                    transfer_id: transfer_id.clone(),
                    quantity: *quantity,
                    reference: reference.clone(),
                },
            )),
            Change::TransferReceived {
                command_id,
                transfer_id,
                quantity,
            } => Some((
                transfer_id.from().clone(),
                Change::TransferArrived {
                    command_id: *command_id,
                    transfer_id: transfer_id.clone(),
                    quantity: *quantity,
                },
            )),
            _ => None,
        }
    }

    /// The client that placed the hold, if this change placed one and recorded its owner.
    pub fn owner(&self) -> Option<&ClientId> {
        match self {
            Change::HoldPlaced { owner, .. } => owner.as_ref(),
            _ => None,
        }
    }

    /// The reservation this change belongs to, if it is a hold event.
    pub fn reservation_id(&self) -> Option<&ReservationId> {
        match self {
            Change::HoldPlaced { reservation_id, .. }
            | Change::HoldExtended { reservation_id, .. }
            | Change::HoldCommitted { reservation_id, .. }
            | Change::HoldReleased { reservation_id, .. }
            | Change::HoldExpired { reservation_id, .. }
            | Change::HoldFulfilled { reservation_id, .. }
            | Change::HoldCancelled { reservation_id, .. }
            | Change::HoldReturned { reservation_id, .. } => Some(reservation_id),
            _ => None,
        }
    }
}

/// Why a command or a request was refused. Serialized as its snake_case code.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionCode {
    /// The adjustment would make on-hand stock negative.
    OnHandWouldGoNegative,
    /// No reservation has that id.
    ReservationNotFound,
    /// The reservation is committed, released or expired.
    ReservationNotActive,
    /// The checkout was accepted after the hold's expiry.
    ReservationExpired,
    /// The checkout came after the release grace and the units could not be taken again.
    HoldLapsedInsufficientStock,
    /// The command named a SKU the reservation does not hold.
    SkuNotInReservation,
    /// The request that made the command was never answered 202, so the command was dropped.
    CommandNotAccepted,
    /// The state a move takes units from has fewer than it moves (for `available`: fewer are
    /// for sale, holds and sales keeping the rest).
    SourceLacksUnits,
    /// The count was taken against an on-hand figure that has changed since
    /// (`expected` is no longer what the item has).
    StaleCount,
    /// A shipment or a cancellation named a line that is not checked out (still held, given
    /// back or expired).
    ReservationNotCheckedOut,
    /// A shipment or a cancellation asked for more units than the line has sold and not yet
    /// shipped or cancelled.
    ExceedsUnshipped,
    /// A return asked for more units than the line has shipped and not yet had back.
    ExceedsShipped,
    /// The queued record could not be read as a command. Written by versions before parking;
    /// kept so their events still read (such records are now parked `unknown_shape`).
    MalformedCommand,
    /// A transfer's receipt found none of its units in transit to the location (never shipped,
    /// or all received already).
    NothingInTransit,
    /// A transfer's receipt asked for more units than are still in transit.
    ExceedsInTransit,
}

impl RejectionCode {
    /// The snake_case code clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnHandWouldGoNegative => "on_hand_would_go_negative",
            Self::ReservationNotFound => "reservation_not_found",
            Self::ReservationNotActive => "reservation_not_active",
            Self::ReservationExpired => "reservation_expired",
            Self::HoldLapsedInsufficientStock => "hold_lapsed_insufficient_stock",
            Self::SkuNotInReservation => "sku_not_in_reservation",
            Self::CommandNotAccepted => "command_not_accepted",
            Self::SourceLacksUnits => "source_lacks_units",
            Self::StaleCount => "stale_count",
            Self::ReservationNotCheckedOut => "reservation_not_checked_out",
            Self::ExceedsUnshipped => "exceeds_unshipped",
            Self::ExceedsShipped => "exceeds_shipped",
            Self::MalformedCommand => "malformed_command",
            Self::NothingInTransit => "nothing_in_transit",
            Self::ExceedsInTransit => "exceeds_in_transit",
        }
    }
}
