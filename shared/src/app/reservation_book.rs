//! The one repository of reservations. A reservation is its anchor event (the `hold_placed` of
//! its first line, which names every line and the owner) and, per line, the hold's record once
//! the hold has left its initial state. Every use case that acts on a reservation loads it here.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::try_join_all;

use super::views::ReservationView;
use crate::domain::{
    Caller, Change, Event, HoldLine, HoldStatus, ReservationId, Sku, StreamId, Timestamp,
};
use crate::error::AppError;
use crate::ports::{Record, RecordKey, RecordWrite, Records, StoreError, Streams};

/// A hold as stored: its record if it has one, else as it was placed.
#[derive(Debug, Clone)]
pub(crate) struct StoredHold {
    pub(crate) hold: HoldLine,
    /// The record's version; `None`: no record yet.
    pub(crate) version: Option<u64>,
}

impl StoredHold {
    /// The write of the hold's record as it now is, over the version read.
    pub(crate) fn write(&self) -> RecordWrite {
        RecordWrite {
            key: hold_key(&self.hold.reservation_id, &self.hold.stream),
            expected: self.version,
            record: Record::Hold(self.hold.clone()),
        }
    }
}

/// A reservation as stored.
#[derive(Debug, Clone)]
pub(crate) struct Reservation {
    pub(crate) id: ReservationId,
    pub(crate) created_at: Timestamp,
    pub(crate) holds: Vec<StoredHold>,
}

impl Reservation {
    pub(crate) fn view(&self, now: Timestamp) -> ReservationView {
        let holds: Vec<HoldLine> = self.holds.iter().map(|h| h.hold.clone()).collect();
        ReservationView::new(self.id.clone(), self.created_at, &holds, now)
    }

    pub(crate) fn status_at(&self, now: Timestamp) -> HoldStatus {
        HoldStatus::overall(self.holds.iter().map(|h| h.hold.status_at(now)))
    }

    /// The streams its holds are in (an item's own, or one of its buckets').
    pub(crate) fn streams(&self) -> impl Iterator<Item = &StreamId> {
        self.holds.iter().map(|h| &h.hold.stream)
    }

    /// Its holds by item, in the order placed (an item held at several locations has a hold at
    /// each).
    pub(crate) fn by_item(&self) -> Vec<(&Sku, Vec<&HoldLine>)> {
        HoldLine::by_item(self.holds.iter().map(|stored| &stored.hold))
    }

    /// The items it holds, each once.
    pub(crate) fn items(&self) -> std::collections::BTreeSet<&Sku> {
        self.streams().map(StreamId::item).collect()
    }
}

/// A reservation's holds on one SKU, as far as they can be read.
#[derive(Debug, Clone)]
pub(crate) enum HoldLookup {
    /// No reservation has that id (or its anchor is not readable yet).
    UnknownReservation,
    /// The reservation holds nothing on this SKU.
    NotOnSku,
    /// Its holds on the SKU: one per location the SKU is held at, in the order placed.
    Found(Vec<StoredHold>),
}

pub(crate) struct ReservationBook {
    streams: Arc<dyn Streams>,
    records: Arc<dyn Records>,
}

impl ReservationBook {
    pub(crate) fn new(streams: Arc<dyn Streams>, records: Arc<dyn Records>) -> Self {
        Self { streams, records }
    }

    /// The reservation `id` for `caller`. Another client's reservation is not found, as if it
    /// did not exist: its existence is not confirmed to a client it is not for.
    pub(crate) async fn load(
        &self,
        id: &ReservationId,
        caller: &Caller,
    ) -> Result<Reservation, AppError> {
        let (anchor, placed) = self
            .placed(id)
            .await?
            .ok_or(AppError::ReservationNotFound)?;
        if !caller.may_act_for(anchor.change.owner()) {
            return Err(AppError::ReservationNotFound);
        }
        Ok(Reservation {
            id: id.clone(),
            created_at: anchor.at,
            holds: self.stored(placed).await?,
        })
    }

    /// The holds reservations `ids` have on item `sku` (one per location it is held at, in
    /// the order they were placed, in whichever of its buckets): anchors read concurrently,
    /// then one read of the hold records.
    pub(crate) async fn holds_on(
        &self,
        sku: &Sku,
        ids: impl IntoIterator<Item = &ReservationId>,
    ) -> Result<HashMap<ReservationId, HoldLookup>, StoreError> {
        let mut ids: Vec<&ReservationId> = ids.into_iter().collect();
        ids.sort();
        ids.dedup();
        let anchors = try_join_all(ids.iter().map(|id| self.placed(id))).await?;
        let mut lookups = HashMap::new();
        let mut on_sku = Vec::new();
        for (id, anchor) in ids.into_iter().zip(anchors) {
            let lookup = match anchor {
                None => HoldLookup::UnknownReservation,
                Some((_, placed)) => {
                    let before = on_sku.len();
                    on_sku.extend(placed.into_iter().filter(|hold| hold.stream.item() == sku));
                    if on_sku.len() > before {
                        continue;
                    }
                    HoldLookup::NotOnSku
                }
            };
            lookups.insert(id.clone(), lookup);
        }
        for stored in self.stored(on_sku).await? {
            let id = stored.hold.reservation_id.clone();
            let lookup = lookups
                .entry(id)
                .or_insert_with(|| HoldLookup::Found(Vec::new()));
            if let HoldLookup::Found(holds) = lookup {
                holds.push(stored);
            }
        }
        Ok(lookups)
    }

    /// The anchor of `id` and the holds it placed, if it is readable.
    async fn placed(
        &self,
        id: &ReservationId,
    ) -> Result<Option<(Event, Vec<HoldLine>)>, StoreError> {
        let anchor = self
            .streams
            .read_event(id.anchor(), id.anchor_seq())
            .await?;
        Ok(anchor.and_then(|anchor| {
            let lines = placed_lines(&anchor, id)?;
            Some((anchor, lines))
        }))
    }

    /// Placed holds with their records laid over them, in one read.
    async fn stored(&self, placed: Vec<HoldLine>) -> Result<Vec<StoredHold>, StoreError> {
        let keys: Vec<RecordKey> = placed
            .iter()
            .map(|hold| hold_key(&hold.reservation_id, &hold.stream))
            .collect();
        let records = self.records.read_records(&keys).await?;
        Ok(placed
            .into_iter()
            .zip(records)
            .map(|(placed, stored)| match stored {
                Some(stored) => StoredHold {
                    hold: match stored.record {
                        Record::Hold(hold) => hold,
                        _ => placed,
                    },
                    version: Some(stored.version),
                },
                None => StoredHold {
                    hold: placed,
                    version: None,
                },
            })
            .collect())
    }
}

fn hold_key(reservation_id: &ReservationId, stream: &StreamId) -> RecordKey {
    RecordKey::Hold {
        reservation_id: reservation_id.clone(),
        stream: stream.clone(),
    }
}

/// The holds a reservation placed, as its anchor event describes them (all lines share terms).
fn placed_lines(anchor: &Event, id: &ReservationId) -> Option<Vec<HoldLine>> {
    let Change::HoldPlaced {
        reservation_id,
        quantity,
        lines,
        ..
    } = &anchor.change
    else {
        return None;
    };
    if reservation_id != id {
        return None;
    }
    let first = HoldLine::placed(&anchor.stream, &anchor.change)?;
    if lines.is_empty() {
        return Some(vec![first]);
    }
    debug_assert_eq!(lines[0].quantity, *quantity);
    Some(
        lines
            .iter()
            .map(|line| HoldLine {
                stream: line.stream.clone(),
                quantity: line.quantity,
                ..first.clone()
            })
            .collect(),
    )
}
