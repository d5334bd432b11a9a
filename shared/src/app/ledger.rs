//! Use case: an item's ledger — every change of its stock, in order, from its first event, each
//! with what it changed, the figures after it, why and who. Read from the table, and from the S3
//! archive for what the table no longer keeps, so no page has a gap.
//!
//! Cost. An item on one stream: a page is one query of the table (from the event before it,
//! whose recorded figures the page starts from), plus, for versions the table retired, one
//! listing of the item's archive and the objects that hold them. Events recorded before
//! figures were (and pages whose previous event is one) are folded from the first event
//! instead. An item split into buckets: its buckets' histories are merged in time order
//! (`at`, then bucket, then sequence) from the first event on every page, as its ledger
//! version is its position in that merge; moves between its buckets are not entries.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use super::heads::Heads;
use super::views::rfc3339;
use crate::archive::Archive;
use crate::domain::buckets::MoveId;
use crate::domain::{
    BucketCount, Change, ClientId, CommandId, Event, Figures, LocationId, Reason, RejectionCode,
    ReservationId, Sku, SkuState, StreamId, Timestamp, Unavailable, Version,
};
use crate::error::AppError;
use crate::ports::Streams;
use crate::telemetry;

/// Entries a page holds by default.
pub const DEFAULT_LEDGER_PAGE: usize = 100;
/// Entries a page holds at most.
pub const MAX_LEDGER_PAGE: usize = 500;

/// A page of an item's ledger.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerView {
    /// The item.
    pub sku: Sku,
    /// Its changes after the version asked, in order.
    pub entries: Vec<LedgerEntry>,
    /// The `after` of the next page; `null` when this page reaches the item's last change.
    pub next_after: Option<Version>,
}

/// One change of an item's stock.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    /// Its position in the item's ledger (1, 2, 3…; an item on one stream: its event's
    /// sequence).
    pub version: Version,
    /// When it was decided.
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
    /// What happened: `received`, `adjusted`, `moved`, `counted`, `held`, `hold_extended`,
    /// `committed`, `released`, `hold_expired`, `fulfilled`, `cancelled`, `returned`,
    /// `buckets_set`, `low_stock_set`, `rejected`.
    pub kind: &'static str,
    /// What it changed (figures that did not change are left out). A hold that stopped
    /// counting since the previous entry shows here as `reserved` going down.
    pub changes: FigureChanges,
    /// The item's figures right after it.
    pub after: LedgerFigures,
    /// Why, when the change says (a receipt's, an adjustment's, a move's, a count's reason;
    /// `returned` for a return).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// The note given with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The document behind it (a purchase order, a parcel, a count sheet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The client whose request made it (absent: the service's own, as an expiry).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub actor: Option<ClientId>,
    /// The queued command it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_id: Option<CommandId>,
    /// The reservation it concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<ReservationId>,
    /// Why a command was refused (kind `rejected`, which changes nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection: Option<RejectionCode>,
}

/// What one change did to the figures; a figure it did not change is absent.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FigureChanges {
    /// Units in the building.
    #[serde(skip_serializing_if = "crate::domain::types::is_zero")]
    pub on_hand: i64,
    /// Units held.
    #[serde(skip_serializing_if = "crate::domain::types::is_zero")]
    pub reserved: i64,
    /// Units sold and not yet shipped.
    #[serde(skip_serializing_if = "crate::domain::types::is_zero")]
    pub committed: i64,
    /// Units set aside as damaged.
    #[serde(skip_serializing_if = "crate::domain::types::is_zero")]
    pub damaged: i64,
    /// Units in inspection.
    #[serde(skip_serializing_if = "crate::domain::types::is_zero")]
    pub quality_control: i64,
    /// Units kept back.
    #[serde(skip_serializing_if = "crate::domain::types::is_zero")]
    pub safety_stock: i64,
    /// Units for sale.
    #[serde(skip_serializing_if = "crate::domain::types::is_zero")]
    pub available: i64,
    /// Units on their way in transfers to the location.
    #[serde(skip_serializing_if = "crate::domain::types::is_zero")]
    pub transit_in: i64,
    /// Units shipped in transfers from the location and not yet received.
    #[serde(skip_serializing_if = "crate::domain::types::is_zero")]
    pub transit_out: i64,
}

/// An item's figures, as its view shows them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LedgerFigures {
    /// Units in the building.
    pub on_hand: i64,
    /// Units held by holds that count.
    pub reserved: i64,
    /// Units sold and not yet shipped.
    pub committed: i64,
    /// On-hand units not for sale, per state.
    pub unavailable: Unavailable,
    /// Units for sale (never below 0).
    pub available: i64,
    /// Units on their way in transfers (absent: none).
    #[serde(skip_serializing_if = "crate::domain::types::is_zero")]
    pub transit_in: i64,
    /// Units shipped in transfers and not yet received (absent: none).
    #[serde(skip_serializing_if = "crate::domain::types::is_zero")]
    pub transit_out: i64,
}

impl From<Figures> for LedgerFigures {
    fn from(figures: Figures) -> Self {
        Self {
            on_hand: figures.on_hand,
            reserved: figures.reserved,
            committed: figures.committed,
            unavailable: figures.unavailable,
            available: figures.available().max(0),
            transit_in: figures.transit_in,
            transit_out: figures.transit_out,
        }
    }
}

impl LedgerFigures {
    /// What changed from `before` to these.
    fn since(&self, before: &LedgerFigures) -> FigureChanges {
        FigureChanges {
            on_hand: self.on_hand - before.on_hand,
            reserved: self.reserved - before.reserved,
            committed: self.committed - before.committed,
            damaged: self.unavailable.damaged - before.unavailable.damaged,
            quality_control: self.unavailable.quality_control - before.unavailable.quality_control,
            safety_stock: self.unavailable.safety_stock - before.unavailable.safety_stock,
            available: self.available - before.available,
            transit_in: self.transit_in - before.transit_in,
            transit_out: self.transit_out - before.transit_out,
        }
    }
}

/// The entries of an item's events, each with the item's figures right after it, from the
/// figures `before` the first (the entry before them), numbered by `version`. What moves only
/// between the item's buckets is no entry, and changes nothing of the item's.
pub fn entries(
    before: Figures,
    events: impl IntoIterator<Item = (Version, Event, Figures)>,
) -> Vec<LedgerEntry> {
    let mut last = LedgerFigures::from(before);
    let mut out = Vec::new();
    for (version, event, figures) in events {
        if event.change.within_item() {
            // No baseline of its own: the next entry's changes count from the last entry's
            // figures, so the running sum is every entry's figures.
            continue;
        }
        let after = LedgerFigures::from(figures);
        let why = why_of(&event.change);
        out.push(LedgerEntry {
            version,
            at: event.at,
            kind: event.change.kind(),
            changes: after.since(&last),
            after,
            reason: event.change.reason(),
            note: why.0,
            reference: why.1,
            actor: event.actor.clone(),
            command_id: event.change.command_id(),
            reservation_id: event.change.reservation_id().cloned(),
            rejection: match event.change {
                Change::CommandRejected { reason, .. } => Some(reason),
                _ => None,
            },
        });
        last = after;
    }
    out
}

/// A change's note and reference, when it has them.
fn why_of(change: &Change) -> (Option<String>, Option<String>) {
    match change {
        Change::HoldFulfilled { reference, .. } | Change::HoldReturned { reference, .. } => {
            (None, reference.clone())
        }
        change => change.annotation().map_or((None, None), |why| {
            (why.note.clone(), why.reference.clone())
        }),
    }
}

/// What an unreadable history's error says.
const GAP: &str = "has a gap neither the table nor the archive fills";

/// A page as read, and where from (the `ledger_pages` metric's `source`).
struct Page {
    entries: Vec<LedgerEntry>,
    more: bool,
    source: &'static str,
}

pub(crate) struct Ledger {
    pub(crate) heads: Arc<Heads>,
    pub(crate) streams: Arc<dyn Streams>,
    pub(crate) archive: Option<Archive>,
}

impl Ledger {
    /// At most `limit` entries of `sku`'s ledger after version `after`: of its changes at
    /// every location, or at `location` only (numbered on their own).
    pub(crate) async fn page(
        &self,
        sku: &Sku,
        location: Option<&LocationId>,
        after: Version,
        limit: usize,
    ) -> Result<LedgerView, AppError> {
        let zero = StreamId::of(sku);
        let home = self.heads.load(&zero).await?;
        if !home.exists() {
            return Err(AppError::UnknownSku(sku.clone()));
        }
        // The locations whose streams the page reads, and whether the item's own stream holds
        // marks of the others (then its versions are not the entries').
        let (places, marked): (Vec<LocationId>, bool) = match location {
            None => (
                std::iter::once(LocationId::default())
                    .chain(home.locations.iter().cloned())
                    .collect(),
                !home.locations.is_empty(),
            ),
            Some(location) => (
                vec![location.clone()],
                location.is_default() && !home.locations.is_empty(),
            ),
        };
        let mut streams: Vec<StreamId> = Vec::new();
        let mut single = None;
        for place in &places {
            let there = StreamId::at(sku, place);
            let state = if place.is_default() {
                Arc::clone(&home)
            } else {
                self.heads.load(&there).await?
            };
            if places.len() == 1 && state.layout.widest == BucketCount::ONE && !marked {
                single = Some((there.clone(), state.version));
            }
            streams.extend(state.layout.streams(&there));
        }
        let read = match single {
            Some((stream, head)) => self.one_stream(&stream, head, after, limit).await,
            None => self.merged(&streams, after, limit).await,
        };
        let Page {
            entries,
            more,
            source,
        } = match read {
            Err(AppError::Unavailable(reason)) if reason.contains(GAP) => {
                telemetry::ledger_gap();
                tracing::error!(sku = %sku, after, %reason, "an item's history has a gap");
                return Err(AppError::Unavailable(reason));
            }
            read => read?,
        };
        telemetry::ledger_page(source);
        let next_after = more
            .then(|| entries.last().map(|entry| entry.version))
            .flatten();
        Ok(LedgerView {
            sku: sku.clone(),
            entries,
            next_after,
        })
    }

    /// An item on one stream: its events after `after` (and the one at `after`, for the
    /// figures before them), as recorded.
    async fn one_stream(
        &self,
        sku: &StreamId,
        head: Version,
        after: Version,
        limit: usize,
    ) -> Result<Page, AppError> {
        let from = after.saturating_sub(1).min(head);
        let wanted = limit + usize::from(after > 0);
        let (mut events, archived) = self.read(sku, from, wanted, head).await?;
        let mut source = if archived { "archive" } else { "table" };
        let before = if after > 0 && !events.is_empty() {
            events.remove(0).figures
        } else {
            Some(Figures::default())
        };
        let last = events.last().map_or(after, |event| event.seq);
        let recorded: Option<Vec<Figures>> = events.iter().map(|event| event.figures).collect();
        let (before, figures) = match (before, recorded) {
            (Some(before), Some(figures)) => (before, figures),
            // Events from before figures were recorded: fold the history up to them.
            _ => {
                source = "folded";
                let (history, _) = self.read(sku, 0, usize::MAX, last).await?;
                let folded = fold(&history);
                let at = |seq: Version| folded.get(seq as usize - 1).copied().unwrap_or_default();
                let before = if after == 0 {
                    Figures::default()
                } else {
                    at(after)
                };
                (before, events.iter().map(|event| at(event.seq)).collect())
            }
        };
        let versioned = events
            .into_iter()
            .zip(figures)
            .map(|(event, figures)| (event.seq, event, figures));
        Ok(Page {
            entries: entries(before, versioned),
            more: last < head,
            source,
        })
    }

    /// An item split into buckets: every bucket's history merged in time order, its figures
    /// summed, the entries numbered in that order.
    async fn merged(
        &self,
        streams: &[StreamId],
        after: Version,
        limit: usize,
    ) -> Result<Page, AppError> {
        let mut events: Vec<(usize, Event)> = Vec::new();
        for (index, stream) in streams.iter().enumerate() {
            let head = self.heads.load(stream).await?.version;
            let (history, _) = self.read(stream, 0, usize::MAX, head).await?;
            events.extend(history.into_iter().map(|event| (index, event)));
        }
        events.sort_by_key(|(index, event)| (event.at, *index, event.seq));
        // A transfer is one write over several buckets: its legs are folded together, where
        // the first of them comes, so no figure counts units in flight twice or not at all.
        let mut legs: HashMap<MoveId, Vec<(usize, Event)>> = HashMap::new();
        for (index, event) in &events {
            if let Change::StockMoved { move_id, .. } = &event.change {
                legs.entry(*move_id)
                    .or_default()
                    .push((*index, event.clone()));
            }
        }
        let mut states = vec![SkuState::default(); streams.len()];
        let mut version = 0;
        let mut before = Figures::default();
        let mut page = Vec::new();
        let mut more = false;
        for (index, event) in events {
            match &event.change {
                Change::StockMoved { move_id, .. } => {
                    for (bucket, leg) in legs.remove(move_id).unwrap_or_default() {
                        states[bucket].evolve(&leg);
                    }
                }
                _ => states[index].evolve(&event),
            }
            let figures = states.iter().fold(Figures::default(), |sum, state| {
                sum.plus(state.figures(event.at))
            });
            if event.change.within_item() {
                continue;
            }
            version += 1;
            if version <= after {
                before = figures;
            } else if page.len() < limit {
                page.push((version, event, figures));
            } else {
                more = true;
                break;
            }
        }
        Ok(Page {
            entries: entries(before, page),
            more,
            source: "merged",
        })
    }

    /// `count` events of `sku` after `after` (at most up to `head`), from the table, and from
    /// the archive for those the table no longer keeps (then `true`); an error naming a
    /// [`GAP`] if neither has one of them.
    async fn read(
        &self,
        sku: &StreamId,
        after: Version,
        count: usize,
        head: Version,
    ) -> Result<(Vec<Event>, bool), AppError> {
        let wanted = count.min(usize::try_from(head.saturating_sub(after)).unwrap_or(usize::MAX));
        if wanted == 0 {
            return Ok((Vec::new(), false));
        }
        let table = if count == usize::MAX {
            self.streams.read_stream(sku, after).await?
        } else {
            self.streams.read_page(sku, after, wanted).await?.events
        };
        let mut events = Vec::with_capacity(wanted);
        let archived = table.first().is_none_or(|first| first.seq > after + 1);
        if archived {
            // The table retired them: the archive has them.
            let archive = self.archive.as_ref().ok_or_else(|| {
                AppError::Unavailable(format!(
                    "{sku}'s events after {after} are archived, and this process has no archive"
                ))
            })?;
            let (archived, _) = archive
                .read_after(sku, after, wanted)
                .await
                .map_err(|err| AppError::Unavailable(err.to_string()))?;
            events.extend(archived);
        }
        let next = events.last().map_or(after, |event| event.seq);
        events.extend(table.into_iter().filter(|event| event.seq > next));
        events.truncate(wanted);
        let gap = events
            .iter()
            .zip(after + 1..)
            .any(|(event, seq)| event.seq != seq)
            || events.len() < wanted;
        if gap {
            return Err(AppError::Unavailable(format!(
                "{sku}'s history after {after} {GAP}"
            )));
        }
        Ok((events, archived))
    }
}

/// The figures of a stream after each of its events (`events`: the whole history, in order).
fn fold(events: &[Event]) -> Vec<Figures> {
    let mut state = SkuState::default();
    events
        .iter()
        .map(|event| {
            state.evolve(event);
            state.figures(event.at)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::given::{cart, shopper, sku, stream, Given};
    use super::*;
    use crate::app::{AfterSaleRequest, ItemView};
    use crate::domain::{Annotation, Caller, IdempotencyKey, LocationId, Quantity, StockState};
    use crate::memory::MemoryObjects;
    use crate::ports::{Retirement, Snapshots, Transaction, Transactions};

    /// The running sum of every entry's changes is the figures after it, entry by entry.
    fn assert_sums_are_the_figures(entries: &[LedgerEntry]) {
        let mut sum = LedgerFigures::default();
        for entry in entries {
            let c = entry.changes;
            sum.on_hand += c.on_hand;
            sum.reserved += c.reserved;
            sum.committed += c.committed;
            sum.unavailable.damaged += c.damaged;
            sum.unavailable.quality_control += c.quality_control;
            sum.unavailable.safety_stock += c.safety_stock;
            sum.available += c.available;
            sum.transit_in += c.transit_in;
            sum.transit_out += c.transit_out;
            assert_eq!(sum, entry.after, "at version {}", entry.version);
        }
    }

    fn as_viewed(view: &ItemView) -> LedgerFigures {
        LedgerFigures {
            on_hand: view.on_hand,
            reserved: view.reserved,
            committed: view.committed,
            unavailable: view.unavailable,
            available: view.available,
            transit_in: view.transit_in,
            transit_out: view.transit_out,
        }
    }

    /// Every page of `sku`'s ledger from the start, `limit` at a time.
    async fn paged(inventory: &crate::Inventory, limit: usize) -> Vec<LedgerEntry> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page = inventory.ledger(&sku("A"), after, limit).await.unwrap();
            all.extend(page.entries);
            match page.next_after {
                Some(next) => after = next,
                None => return all,
            }
        }
    }

    /// A's history: 10 received, 3 held by alice, checked out, 2 shipped and 1 cancelled, one
    /// unit set aside as damaged, a count of 8.
    async fn a_life(given: &Given) {
        given.stock("A", 10).await;
        let alice = shopper("alice");
        let held = given.reserve(&alice, &[("A", 3)], None).await.unwrap();
        let id = &held.reservation_id;
        let inventory = &given.inventory;
        inventory.request_checkout(id, None, &alice).await.unwrap();
        given.processed().await;
        let key = |name: &str| IdempotencyKey::parse(name).unwrap();
        let ship = AfterSaleRequest::fulfill(Some(cart(&[("A", 2)])), Some("parcel-9".into()));
        inventory
            .request_after_sale(id, ship.unwrap(), Some(&key("ship")), &alice)
            .await
            .unwrap();
        let cancel = AfterSaleRequest::cancel(None).unwrap();
        inventory
            .request_after_sale(id, cancel, Some(&key("cancel")), &alice)
            .await
            .unwrap();
        given.processed().await;
        let admin = Caller::local_admin();
        let states =
            crate::domain::Reclassification::new(StockState::Available, StockState::Damaged)
                .unwrap();
        let why = Annotation::because(Reason::Damaged);
        let one = Quantity::new(1).unwrap();
        inventory
            .reclassify_stock(sku("A"), states, one, why, None, &admin)
            .await
            .unwrap();
        let why = Annotation::because(Reason::CycleCount);
        inventory
            .count_stock(sku("A"), 7, None, why, None, &admin)
            .await
            .unwrap();
        given.processed().await;
    }

    #[tokio::test]
    async fn a_ledger_tells_every_change_in_order_and_its_sums_are_the_figures_at_every_version() {
        let given = Given::new();
        a_life(&given).await;
        let page = given.inventory.ledger(&sku("A"), 0, 100).await.unwrap();
        let kinds: Vec<&str> = page.entries.iter().map(|entry| entry.kind).collect();
        assert_eq!(
            kinds,
            [
                "received",
                "held",
                "committed",
                "fulfilled",
                "cancelled",
                "moved",
                "counted"
            ]
        );
        assert_eq!(page.next_after, None);
        assert_sums_are_the_figures(&page.entries);
        let shipped = &page.entries[3];
        assert_eq!(
            (shipped.changes.on_hand, shipped.changes.committed),
            (-2, -2)
        );
        assert_eq!(shipped.reference.as_deref(), Some("parcel-9"));
        assert_eq!(shipped.actor.as_ref().map(ClientId::as_str), Some("alice"));
        let counted = &page.entries[6];
        assert_eq!(
            (
                counted.reason,
                counted.changes.on_hand,
                counted.after.on_hand
            ),
            (Some(Reason::CycleCount), -1, 7)
        );
        let item = given.inventory.item(&sku("A")).await.unwrap();
        assert_eq!(page.entries[6].after, as_viewed(&item));
        // Pages of two: the same entries, the sums taken across pages.
        assert_eq!(paged(&given.inventory, 2).await, page.entries);
        let middle = given.inventory.ledger(&sku("A"), 3, 2).await.unwrap();
        assert_eq!(middle.entries, page.entries[3..5]);
        assert_eq!(middle.next_after, Some(5));
        let unknown = given.inventory.ledger(&sku("B"), 0, 10).await;
        assert_eq!(unknown.unwrap_err(), AppError::UnknownSku(sku("B")));
    }

    #[tokio::test]
    async fn versions_the_table_retired_come_from_the_archive_and_a_page_crosses_over_seamlessly() {
        let given = Given::new();
        a_life(&given).await;
        let whole = given.inventory.ledger(&sku("A"), 0, 100).await.unwrap();
        let events = given.store.read_stream(&stream("A"), 0).await.unwrap();
        let objects = Arc::new(MemoryObjects::new());
        let archive = Archive::new(objects.clone());
        archive.store_run(&stream("A"), &events[..5]).await.unwrap();
        let state = SkuState::from_events(&events);
        given
            .store
            .save_snapshot(&stream("A"), &state)
            .await
            .unwrap();
        let gone = crate::domain::Timestamp::from_millis(0);
        given
            .store
            .retire_events(&stream("A"), 1..=5, gone)
            .await
            .unwrap();
        assert_eq!(given.store.delete_expired(gone), 5);

        let reader = given.another_process().with_archive(archive);
        assert_eq!(paged(&reader, 3).await, whole.entries, "pages of three");
        assert_eq!(paged(&reader, 100).await, whole.entries, "one page");
        let without = given.another_process();
        let refused = without.ledger(&sku("A"), 0, 100).await;
        assert!(
            matches!(refused, Err(AppError::Unavailable(_))),
            "{refused:?}"
        );
        // The archive missing some of them: no page with a gap.
        assert!(objects.remove(&crate::archive::segment_key(
            &stream("A"),
            &crate::archive::day_of(events[0].at),
            1,
            5
        )));
        let reader = given.another_process().with_archive(Archive::new(objects));
        let gap = reader.ledger(&sku("A"), 0, 100).await;
        assert!(matches!(gap, Err(AppError::Unavailable(_))), "{gap:?}");
    }

    #[tokio::test]
    async fn events_recorded_without_figures_are_folded_from_the_first() {
        let given = Given::new();
        a_life(&given).await;
        let whole = given.inventory.ledger(&sku("A"), 0, 100).await.unwrap();
        // The same history as recorded before events carried their figures.
        let mut events = given.store.read_stream(&stream("A"), 0).await.unwrap();
        for event in &mut events {
            event.figures = None;
            event.stream = stream("OLD");
        }
        let old = crate::ports::StreamAppend {
            stream: stream("OLD"),
            expected: 0,
            events,
        };
        given
            .store
            .write(Transaction::appends(vec![old]))
            .await
            .unwrap();
        let read = given.inventory.ledger(&sku("OLD"), 4, 100).await.unwrap();
        assert_eq!(read.entries, whole.entries[4..]);
    }

    #[tokio::test]
    async fn a_split_items_ledger_is_the_items_in_time_order_without_its_transfers() {
        let given = Given::new();
        given.stock("A", 40).await;
        given.buckets("A", 4).await;
        let alice = shopper("alice");
        for _ in 0..5 {
            given.later_by_secs(1);
            given.reserve(&alice, &[("A", 2)], None).await.unwrap();
        }
        given.later_by_secs(2_000);
        given.inventory.sweep_expired_holds().await.unwrap();
        given.processed().await;
        let page = given.inventory.ledger(&sku("A"), 0, 500).await.unwrap();
        let versions: Vec<Version> = page.entries.iter().map(|entry| entry.version).collect();
        assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>());
        let kinds: Vec<&str> = page.entries.iter().map(|entry| entry.kind).collect();
        assert_eq!(kinds.iter().filter(|kind| **kind == "held").count(), 5);
        assert_eq!(
            kinds.iter().filter(|kind| **kind == "hold_expired").count(),
            5
        );
        assert!(!kinds.contains(&"transferred"), "{kinds:?}");
        assert_sums_are_the_figures(&page.entries);
        let item = given.inventory.item(&sku("A")).await.unwrap();
        assert_eq!(page.entries.last().unwrap().after, as_viewed(&item));
        assert_eq!(paged(&given.inventory, 3).await, page.entries);
    }

    #[tokio::test]
    async fn an_items_ledger_holds_its_changes_at_every_location_in_time_order() {
        let given = Given::new();
        let admin = Caller::local_admin();
        let store = LocationId::parse("store-5").unwrap();
        let registered = crate::domain::Location::new(
            store.clone(),
            "Store 5",
            crate::domain::LocationKind::Store,
            false,
            true,
            0,
            true,
        )
        .unwrap();
        given.inventory.put_location(registered).await.unwrap();
        given.stock("A", 10).await;
        given.later_by_secs(1);
        let at_store = crate::domain::ItemAt {
            sku: sku("A"),
            location: store,
        };
        let five = Quantity::new(5).unwrap();
        let why = Annotation::received(Some("transfer in".into()));
        given
            .inventory
            .receive_stock(at_store.clone(), five, why, None, &admin)
            .await
            .unwrap();
        given.processed().await;
        given.later_by_secs(1);
        let why = Annotation::because(Reason::Shrinkage);
        given
            .inventory
            .adjust_stock(at_store, -2, why, None, &admin)
            .await
            .unwrap();
        given.processed().await;
        let page = given.inventory.ledger(&sku("A"), 0, 500).await.unwrap();
        let rows: Vec<(Version, &str, i64)> = page
            .entries
            .iter()
            .map(|entry| (entry.version, entry.kind, entry.after.on_hand))
            .collect();
        assert_eq!(
            rows,
            vec![
                (1, "received", 10),
                (2, "received", 15),
                (3, "adjusted", 13)
            ],
            "the store's changes are the item's, the location's record of them is not"
        );
        assert_sums_are_the_figures(&page.entries);
        let item = given.inventory.item(&sku("A")).await.unwrap();
        assert_eq!(page.entries.last().unwrap().after, as_viewed(&item));
        // Each location's own ledger, numbered on its own.
        let inventory = &given.inventory;
        let at = |location: &str| {
            let location = LocationId::parse(location).unwrap();
            async move {
                let page = inventory
                    .ledger_at(&sku("A"), &location, 0, 500)
                    .await
                    .unwrap();
                assert_sums_are_the_figures(&page.entries);
                page.entries
                    .iter()
                    .map(|entry| (entry.version, entry.kind, entry.after.on_hand))
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            at("store-5").await,
            vec![(1, "received", 5), (2, "adjusted", 3)]
        );
        assert_eq!(at("default").await, vec![(1, "received", 10)]);
        let unknown = LocationId::parse("store-9").unwrap();
        assert_eq!(
            given.inventory.ledger_at(&sku("A"), &unknown, 0, 10).await,
            Err(AppError::UnknownLocation(unknown))
        );
    }
}
