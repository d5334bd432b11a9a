//! Commands: requests for change that travel through the queue, one SKU each, applied in order by
//! the command processor. Imperative names; each carries the id that makes it take effect once.

use serde::{Deserialize, Serialize};

use super::hold::AfterSale;
use super::stock_states::{Annotation, Reclassification};
use super::stream::LocationId;
use super::transfer::TransferId;
use super::types::{
    BucketCount, CommandId, LowStockThreshold, Quantity, ReservationId, Sku, Timestamp,
};

/// One queued command for one SKU. A checkout or release of a multi-SKU reservation is one
/// command id with one `Command` per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Names the command; a redelivery carries the same id and is applied once.
    pub id: CommandId,
    /// The SKU whose stream the command changes (the queue's partition key).
    pub sku: Sku,
    /// When the API accepted it (a checkout counts as in time if accepted before expiry).
    pub accepted_at: Timestamp,
    /// What to do.
    #[serde(flatten)]
    pub action: Action,
}

/// What a command asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Record units received at the warehouse.
    ReceiveStock {
        /// Where (the default location when absent).
        #[serde(default, skip_serializing_if = "LocationId::is_default")]
        location: LocationId,
        /// Units received.
        quantity: Quantity,
        /// Why (`received` unless it says otherwise), a note, the delivery note or purchase
        /// order.
        #[serde(flatten)]
        why: Annotation,
    },
    /// Correct the on-hand count by `delta`.
    AdjustStock {
        /// Where (the default location when absent).
        #[serde(default, skip_serializing_if = "LocationId::is_default")]
        location: LocationId,
        /// Units added (positive) or taken (negative).
        delta: i64,
        /// Why: a listed reason (free text is kept as `other` with the text as the note), a
        /// note, the document behind it.
        #[serde(flatten)]
        why: Annotation,
    },
    /// Move on-hand units from one state to another.
    ReclassifyStock {
        /// Where (the default location when absent).
        #[serde(default, skip_serializing_if = "LocationId::is_default")]
        location: LocationId,
        /// From which state to which.
        #[serde(flatten)]
        states: Reclassification,
        /// Units moved.
        quantity: Quantity,
        /// Why: the reason, a note, the document behind it.
        #[serde(flatten)]
        why: Annotation,
    },
    /// Set on-hand stock to what a count found; with `expected`, only if the item still has that
    /// many on hand when the command applies (compare-and-set), else it is rejected
    /// `stale_count`.
    CountStock {
        /// Where (the default location when absent).
        #[serde(default, skip_serializing_if = "LocationId::is_default")]
        location: LocationId,
        /// Units found on hand (0 or more).
        counted: i64,
        /// The on-hand figure the count was taken against.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected: Option<i64>,
        /// Why: the reason, a note, the document behind it.
        #[serde(flatten)]
        why: Annotation,
    },
    /// Split the SKU into `count` escrow buckets (1: one stream again).
    SetBuckets {
        /// Where (the default location when absent).
        #[serde(default, skip_serializing_if = "LocationId::is_default")]
        location: LocationId,
        /// How many buckets.
        count: BucketCount,
    },
    /// Ship units from one location of the item to another: out of `from`'s stock (units for
    /// sale there) into transit, until received at `to`.
    TransferStock {
        /// The transfer (it names the item and both ends).
        transfer_id: TransferId,
        /// Units shipped.
        quantity: Quantity,
        /// The shipment, for the audit trail.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    /// Land units of a transfer at its destination (`None`: all still in transit).
    ReceiveTransfer {
        /// The transfer.
        transfer_id: TransferId,
        /// Units received; absent: every unit still in transit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quantity: Option<Quantity>,
    },
    /// Tell `low_stock` when available units go below `below` (0: never).
    SetLowStock {
        /// Where (the default location when absent): an item kept at several locations is told
        /// low at each against that location's threshold.
        #[serde(default, skip_serializing_if = "LocationId::is_default")]
        location: LocationId,
        /// The threshold.
        below: LowStockThreshold,
    },
    /// Check out the reservation's hold on this SKU.
    CommitHold {
        /// The reservation to check out.
        reservation_id: ReservationId,
    },
    /// Give the reservation's hold on this SKU back.
    ReleaseHold {
        /// The reservation to release.
        reservation_id: ReservationId,
    },
    /// Ship checked-out units of the reservation's line on this SKU (`None`: all not yet
    /// shipped or cancelled).
    FulfillHold {
        /// The reservation whose units ship.
        reservation_id: ReservationId,
        /// Units shipped; absent: every unit left to ship.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quantity: Option<Quantity>,
        /// The shipment, parcel or order it ships under.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    /// Cancel the sale of checked-out units not yet shipped (`None`: all of them).
    CancelHold {
        /// The reservation whose sale is cancelled.
        reservation_id: ReservationId,
        /// Units cancelled; absent: every unit left to ship.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quantity: Option<Quantity>,
    },
    /// Take back shipped units: for sale again (`restock`), or set aside as damaged.
    ReturnHold {
        /// The reservation whose units come back.
        reservation_id: ReservationId,
        /// Units returned.
        quantity: Quantity,
        /// Whether they are for sale again (else damaged).
        restock: bool,
        /// The return authorisation or parcel.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    /// End the reservation's hold on this SKU if it ran out (sent by the expiry reaction).
    ExpireHold {
        /// The reservation whose hold ran out.
        reservation_id: ReservationId,
    },
}

impl Action {
    /// The location a command on stock names (receipts, adjustments, moves, counts, bucket
    /// layouts); `None` for a command on a hold, which acts where the hold is, and for the
    /// low-stock threshold, which is the item's.
    pub fn location(&self) -> Option<&LocationId> {
        match self {
            Action::ReceiveStock { location, .. }
            | Action::AdjustStock { location, .. }
            | Action::ReclassifyStock { location, .. }
            | Action::CountStock { location, .. }
            | Action::SetBuckets { location, .. }
            | Action::SetLowStock { location, .. } => Some(location),
            Action::TransferStock { transfer_id, .. } => Some(transfer_id.from()),
            Action::ReceiveTransfer { transfer_id, .. } => Some(transfer_id.to()),
            _ => None,
        }
    }

    /// The other location a transfer's command changes: its destination for a shipment, its
    /// origin for a receipt.
    pub fn other_location(&self) -> Option<&LocationId> {
        match self {
            Action::TransferStock { transfer_id, .. } => Some(transfer_id.to()),
            Action::ReceiveTransfer { transfer_id, .. } => Some(transfer_id.from()),
            _ => None,
        }
    }

    /// The after-sale act a hold command is and the units it names (`None`: all that are left).
    pub fn after_sale(&self) -> Option<(AfterSale, Option<Quantity>)> {
        match self {
            Action::FulfillHold { quantity, .. } => Some((AfterSale::Fulfill, *quantity)),
            Action::CancelHold { quantity, .. } => Some((AfterSale::Cancel, *quantity)),
            Action::ReturnHold { quantity, .. } => Some((AfterSale::Return, Some(*quantity))),
            _ => None,
        }
    }

    /// The same after-sale act for `units` (one hold's share of it); any other command as it is.
    pub fn for_units(&self, units: Quantity) -> Action {
        let mut action = self.clone();
        match &mut action {
            Action::FulfillHold { quantity, .. } | Action::CancelHold { quantity, .. } => {
                *quantity = Some(units);
            }
            Action::ReturnHold { quantity, .. } => *quantity = units,
            _ => {}
        }
        action
    }

    /// The reservation a hold command acts on.
    pub fn reservation_id(&self) -> Option<&ReservationId> {
        match self {
            Action::CommitHold { reservation_id }
            | Action::ReleaseHold { reservation_id }
            | Action::ExpireHold { reservation_id }
            | Action::FulfillHold { reservation_id, .. }
            | Action::CancelHold { reservation_id, .. }
            | Action::ReturnHold { reservation_id, .. } => Some(reservation_id),
            Action::ReceiveStock { .. }
            | Action::AdjustStock { .. }
            | Action::SetBuckets { .. }
            | Action::SetLowStock { .. }
            | Action::ReclassifyStock { .. }
            | Action::CountStock { .. }
            | Action::TransferStock { .. }
            | Action::ReceiveTransfer { .. } => None,
        }
    }
}
