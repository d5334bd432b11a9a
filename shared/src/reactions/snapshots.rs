//! Snapshots: each SKU's folded state, kept current from the feed so that a cold read folds only
//! the events after it, and served as the read view of `GET /items`.
//!
//! With a notice board, the notices of the events folded (`domain::notices`) are published, the
//! whole batch's in one go, before the snapshots that fold them are saved: a failure to publish
//! leaves the batch's snapshots where they were and its SKUs are delivered again, which computes
//! the same notices with the same ids. So every event folded into a saved snapshot has had its
//! notices published, at least once.
//!
//! An item kept at several locations is also told of as a whole (`out_of_stock`,
//! `back_in_stock` over all its locations): each location's changes are counted in the item's
//! [`WholeItem`] record, one conditional write per item per batch, before the batch's notices
//! are published (see [`crate::domain::whole`]).
//!
//! The feed only says which SKUs moved. Events in the batch that follow the stored snapshot
//! without a gap are folded on; a gap (a batch lost or delivered out of order) is filled from
//! the stream itself. The save is conditional on the stored version being lower, so duplicate,
//! redelivered, late or reordered deliveries can only leave a snapshot as it is or move it forward.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::join_all;

use crate::domain::notices::kept_elsewhere;
use crate::domain::whole::Counted;
use crate::domain::{
    notices, Change, Event, LocationId, LowStockThreshold, Noticed, Sku, SkuState, StockFigures,
    StreamId, WholeItem,
};
use crate::feed::{FeedChange, Reaction};
use crate::ports::{
    EventStore, NoticeBoard, PublishError, Record, RecordKey, RecordWrite, SnapshotSave,
    StoreError, Transaction,
};
use crate::telemetry;

/// Keeps snapshots (and so the read view) current, and tells the notice board what changed.
#[derive(Clone)]
pub struct Snapshotter {
    store: Arc<dyn EventStore>,
    board: Option<Arc<dyn NoticeBoard>>,
}

/// A SKU's snapshot brought up to date in memory, not saved yet.
struct Folded<'a> {
    sku: &'a StreamId,
    before: SkuState,
    events: Vec<Event>,
    after: SkuState,
}

impl std::fmt::Debug for Snapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshotter").finish_non_exhaustive()
    }
}

impl Snapshotter {
    /// A snapshotter over `store`, publishing no notices.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self { store, board: None }
    }

    /// The same snapshotter, publishing the notices of what it folds on `board`.
    pub fn with_notices(self, board: Arc<dyn NoticeBoard>) -> Self {
        Self {
            board: Some(board),
            ..self
        }
    }

    /// Folds `appended` (events of `sku` from the feed, in any order, maybe repeated) onto
    /// `snapshot`; reads the stream for whatever the feed did not bring. `None`: the snapshot
    /// covers them already.
    async fn fold<'a>(
        &self,
        sku: &'a StreamId,
        snapshot: Option<SkuState>,
        appended: &[&Event],
    ) -> Result<Option<Folded<'a>>, StoreError> {
        let before = snapshot.unwrap_or_default();
        let mut newer: Vec<&Event> = appended
            .iter()
            .copied()
            .filter(|event| event.seq > before.version)
            .collect();
        if newer.is_empty() {
            return Ok(None);
        }
        newer.sort_by_key(|event| event.seq);
        newer.dedup_by_key(|event| event.seq);
        let follows = newer
            .iter()
            .zip(before.version + 1..)
            .all(|(event, seq)| event.seq == seq);
        let events: Vec<Event> = if follows {
            newer.into_iter().cloned().collect()
        } else {
            self.store.read_stream(sku, before.version).await?
        };
        let mut after = before.clone();
        fold_tail(&mut after, sku, &events)?;
        Ok(Some(Folded {
            sku,
            before,
            events,
            after,
        }))
    }

    /// The snapshots of `skus` (none asked, none read).
    async fn read_snapshots(&self, skus: &[StreamId]) -> Result<Vec<Option<SkuState>>, StoreError> {
        if skus.is_empty() {
            return Ok(Vec::new());
        }
        self.store.read_snapshots(skus).await
    }

    /// Publishes the notices of everything `folded`, all SKUs at once (the board packs them
    /// into as few calls as it can).
    /// (With the commands `parked` in the batch.)
    async fn tell(
        &self,
        folded: &[Folded<'_>],
        wholes: &[Whole],
        parked: Vec<Noticed>,
    ) -> Result<(), PublishError> {
        let Some(board) = &self.board else {
            return Ok(());
        };
        let told: Vec<Noticed> = folded
            .iter()
            .flat_map(|f| notices(&f.before, &f.events))
            .chain(wholes.iter().flat_map(|whole| whole.told.iter().cloned()))
            .chain(parked)
            .collect();
        if told.is_empty() {
            return Ok(());
        }
        let published = board.publish(&told).await;
        telemetry::notices(published.is_ok(), told.len());
        published
    }
}

/// Counts of an item kept at several locations, written: the notices to tell of it as a whole
/// (those a count before left pending, told again, and those this one decided), and the
/// record as written, to clear its pending notices once they are published.
struct Whole {
    sku: Sku,
    told: Vec<Noticed>,
    written: Option<(u64, WholeItem)>,
}

/// What a location's event changes of the item as a whole: what it has for sale there, or
/// (the default location's) the item's threshold. A threshold is counted before what the same
/// event leaves for sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Counting {
    Threshold(LowStockThreshold),
    ForSale(i64),
}

/// How many times a count of one item is tried over a record another reader changed.
const WHOLE_ATTEMPTS: usize = 5;

impl Snapshotter {
    /// Counts what `folded` changed of the items kept at several locations, each item's counts
    /// in one conditional write of its record; the items whose count failed are left out (and
    /// their folds must not be saved: the batch comes again).
    async fn count_wholes(&self, folded: &[Folded<'_>]) -> (Vec<Whole>, BTreeSet<StreamId>) {
        let mut by_item: BTreeMap<&Sku, Vec<&Folded<'_>>> = BTreeMap::new();
        for fold in folded {
            if fold.sku.is_home() && kept_elsewhere(fold.sku, &fold.after) {
                by_item.entry(fold.sku.item()).or_default().push(fold);
            }
        }
        let counts = by_item.into_iter().map(|(sku, folds)| async move {
            (sku, folds.clone(), self.count_whole(sku, &folds).await)
        });
        let mut wholes = Vec::new();
        let mut failed = BTreeSet::new();
        for (sku, folds, result) in join_all(counts).await {
            match result {
                Ok(whole) => wholes.push(whole),
                Err(err) => {
                    tracing::warn!(%sku, error = %err, "could not count the item as a whole");
                    failed.extend(folds.iter().map(|fold| fold.sku.clone()));
                }
            }
        }
        (wholes, failed)
    }

    /// Counts the changes of `folds` (locations of `sku`, each its bucket 0) in the item's
    /// record, in time order, over the version read.
    async fn count_whole(&self, sku: &Sku, folds: &[&Folded<'_>]) -> Result<Whole, StoreError> {
        // What each change left for sale at its location, in time order, from the first after
        // which the item is kept at several locations; and each location as it stood before
        // that (what the item-wide notices last knew of it).
        let mut changes: Vec<(crate::domain::Timestamp, &LocationId, u64, Counting)> = Vec::new();
        let mut starts: Vec<(StreamId, SkuState)> = Vec::new();
        for fold in folds {
            let mut state = fold.before.clone();
            let mut start = None;
            for event in &fold.events {
                let was = state.clone();
                state.evolve(event);
                if !kept_elsewhere(fold.sku, &state) {
                    continue;
                }
                start.get_or_insert(was);
                let location = fold.sku.location();
                // The item's threshold is the default location's.
                if let Change::LowStockSet { below, .. } = &event.change {
                    if location.is_default() {
                        let threshold = Counting::Threshold(*below);
                        changes.push((event.at, location, event.seq, threshold));
                    }
                }
                if let Some(for_sale) = StockFigures::for_sale_at(fold.sku, &state) {
                    let count = Counting::ForSale(for_sale);
                    changes.push((event.at, location, event.seq, count));
                }
            }
            starts.push((fold.sku.clone(), start.unwrap_or(state)));
        }
        changes.sort();
        let key = RecordKey::WholeItem { sku: sku.clone() };
        for _ in 0..WHOLE_ATTEMPTS {
            let stored = self.store.read_records(std::slice::from_ref(&key)).await?;
            let (version, mut whole) = match stored.into_iter().next().flatten() {
                Some(stored) => match stored.record {
                    Record::WholeItem(whole) => (Some(stored.version), whole),
                    other => {
                        return Err(StoreError::Bug(format!(
                            "the record of {sku} as a whole holds {other:?}"
                        )))
                    }
                },
                None => (None, self.start_whole(sku, &starts).await?),
            };
            let mut told: Vec<Noticed> = whole.pending.iter().map(|n| n.noticed(sku)).collect();
            let counted = whole.locations.clone();
            let decided: Vec<_> = changes
                .iter()
                .flat_map(|(at, location, seq, counting)| match counting {
                    Counting::Threshold(below) => whole.set_threshold(*below, *seq, *at),
                    Counting::ForSale(for_sale) => whole.count(location, *seq, *at, *for_sale),
                })
                .collect();
            // Nothing new counted (a redelivery): only what is pending is told again.
            if whole.locations == counted && version.is_some() {
                let written = version.map(|version| (version, whole));
                return Ok(Whole {
                    sku: sku.clone(),
                    told,
                    written,
                });
            }
            told.extend(decided.iter().map(|n| n.noticed(sku)));
            whole.pending = decided;
            let write = RecordWrite {
                key: key.clone(),
                expected: version,
                record: Record::WholeItem(whole.clone()),
            };
            match self.store.write(Transaction::records(vec![write])).await {
                Ok(()) => {
                    return Ok(Whole {
                        sku: sku.clone(),
                        told,
                        written: Some((version.unwrap_or(0) + 1, whole)),
                    })
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(err) => return Err(err),
            }
        }
        Err(StoreError::Incomplete(format!(
            "the record of {sku} as a whole kept changing"
        )))
    }

    /// The first record of `sku` as a whole: each of its locations as it stood when the item
    /// came to be kept at several, or before this batch (`starts`, the locations this batch
    /// changes; the others' snapshots), so that only what moves from there is counted.
    async fn start_whole(
        &self,
        sku: &Sku,
        starts: &[(StreamId, SkuState)],
    ) -> Result<WholeItem, StoreError> {
        let zero = StreamId::of(sku);
        let default = match starts.iter().find(|(home, _)| *home == zero) {
            Some(_) => None,
            None => self
                .read_snapshots(std::slice::from_ref(&zero))
                .await?
                .into_iter()
                .next()
                .flatten(),
        };
        let known: BTreeSet<LocationId> = default
            .iter()
            .chain(starts.iter().map(|(_, state)| state))
            .flat_map(|state| state.locations.iter().cloned())
            .collect();
        let homes: Vec<StreamId> = known
            .iter()
            .map(|location| StreamId::at(sku, location))
            .filter(|home| !starts.iter().any(|(started, _)| started == home))
            .collect();
        let snapshots = self.read_snapshots(&homes).await?;
        let mut whole = WholeItem::default();
        let others = homes
            .into_iter()
            .zip(snapshots.into_iter().map(Option::unwrap_or_default));
        let default = default.map(|state| (zero, state));
        for (home, state) in starts.iter().cloned().chain(others).chain(default) {
            let for_sale = StockFigures::for_sale_at(&home, &state).unwrap_or(0);
            let counted = Counted {
                version: state.version,
                for_sale,
            };
            whole.locations.insert(home.location().clone(), counted);
        }
        Ok(whole)
    }

    /// Clears the notices the records of `wholes` kept pending, now that they are published
    /// (a record changed since keeps them, and the next count tells them again, under the same
    /// ids).
    async fn clear_pending(&self, wholes: Vec<Whole>) {
        for whole in wholes {
            let Some((version, mut record)) = whole.written else {
                continue;
            };
            if record.pending.is_empty() {
                continue;
            }
            record.pending.clear();
            let write = RecordWrite {
                key: RecordKey::WholeItem {
                    sku: whole.sku.clone(),
                },
                expected: Some(version),
                record: Record::WholeItem(record),
            };
            if let Err(err) = self.store.write(Transaction::records(vec![write])).await {
                tracing::info!(sku = %whole.sku, error = %err, "notices left pending, told again next time");
            }
        }
    }
}

/// Folds `tail` (the stream after `state.version`) onto `state`, refusing a gap: a state must
/// never be built from part of a history.
pub(crate) fn fold_tail(
    state: &mut SkuState,
    sku: &StreamId,
    tail: &[Event],
) -> Result<(), StoreError> {
    for event in tail {
        if event.seq != state.version + 1 {
            return Err(StoreError::Incomplete(format!(
                "the stream of {sku} has a gap: event {} follows {}",
                event.seq, state.version
            )));
        }
        state.evolve(event);
    }
    Ok(())
}

#[async_trait]
impl Reaction for Snapshotter {
    async fn react(&self, changes: &[FeedChange]) -> BTreeSet<StreamId> {
        let mut by_sku: BTreeMap<&StreamId, Vec<&Event>> = BTreeMap::new();
        let mut parked = Vec::new();
        for change in changes {
            match change {
                FeedChange::Appended(event) => by_sku.entry(&event.stream).or_default().push(event),
                // A redrive marks the record, which is no new parking.
                FeedChange::Parked(entry) if entry.parked.redriven_at.is_none() => {
                    parked.push(Noticed::parked(
                        entry.sku.clone(),
                        entry.command_id,
                        entry.parked.reason.as_str(),
                        entry.parked.detail.clone(),
                        entry.parked.parked_at,
                    ));
                }
                FeedChange::Parked(_) | FeedChange::Removed(_) => {}
            }
        }
        if by_sku.is_empty() && (parked.is_empty() || self.board.is_none()) {
            return BTreeSet::new();
        }
        let parked_skus: Vec<StreamId> = parked
            .iter()
            .map(|noticed| noticed.stream.clone())
            .collect();
        let skus: Vec<StreamId> = by_sku.keys().map(|sku| (*sku).clone()).collect();
        let snapshots = match self.read_snapshots(&skus).await {
            Ok(snapshots) => snapshots,
            Err(err) => {
                tracing::warn!(error = %err, skus = skus.len(), "could not read snapshots");
                return skus.into_iter().chain(parked_skus).collect();
            }
        };
        let folds = by_sku
            .iter()
            .zip(snapshots)
            .map(|((sku, events), snapshot)| async move {
                (*sku, self.fold(sku, snapshot, events).await)
            });
        let mut failed = BTreeSet::new();
        let mut folded = Vec::new();
        for (sku, result) in join_all(folds).await {
            match result {
                Ok(Some(fold)) => folded.push(fold),
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(sku = %sku, error = %err, "could not fold the snapshot");
                    failed.insert(sku.clone());
                }
            }
        }
        // Items kept at several locations are counted as a whole first (only with a board:
        // the count decides notices); a fold whose item could not be counted is not saved.
        let wholes = if self.board.is_some() {
            let (wholes, uncounted) = self.count_wholes(&folded).await;
            folded.retain(|fold| !uncounted.contains(fold.sku));
            failed.extend(uncounted);
            wholes
        } else {
            Vec::new()
        };
        // Told before saved: a snapshot never covers an event whose notices were not published.
        match self.tell(&folded, &wholes, parked).await {
            Ok(()) => self.clear_pending(wholes).await,
            Err(err) => {
                tracing::warn!(error = %err, skus = folded.len(), "could not publish the notices");
                failed.extend(folded.iter().map(|f| f.sku.clone()));
                failed.extend(parked_skus);
                folded.clear();
            }
        }
        let saves = folded
            .iter()
            .map(|f| async move { (f.sku, self.store.save_snapshot(f.sku, &f.after).await) });
        let mut saved = 0;
        for (sku, result) in join_all(saves).await {
            match result {
                Ok(SnapshotSave::Saved) => saved += 1,
                Ok(SnapshotSave::Stale) => {}
                Err(err) => {
                    tracing::warn!(sku = %sku, error = %err, "could not save the snapshot");
                    failed.insert(sku.clone());
                }
            }
        }
        tracing::info!(
            skus = skus.len(),
            saved,
            failed = failed.len(),
            "snapshots refreshed"
        );
        failed
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::Annotation;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::domain::{
        Change, CommandId, LowStockThreshold, Notice, Quantity, ReservationId, Timestamp,
    };
    use crate::memory::{MemoryNoticeBoard, MemoryStore};
    use crate::ports::{Records, Snapshots, StreamAppend, Streams, Transaction, Transactions};

    /// A board that fails while `down` is set.
    #[derive(Default)]
    struct FlakyBoard {
        down: AtomicBool,
        inner: MemoryNoticeBoard,
    }

    #[async_trait]
    impl NoticeBoard for FlakyBoard {
        async fn publish(&self, notices: &[Noticed]) -> Result<(), PublishError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(PublishError("the bus is down".to_owned()));
            }
            self.inner.publish(notices).await
        }
    }

    fn sku() -> StreamId {
        StreamId::of(&crate::domain::Sku::parse("SKU-1").unwrap())
    }

    /// Appends `changes` one event each, a second apart; returns them as the feed brings them.
    async fn append(store: &MemoryStore, changes: Vec<Change>) -> Vec<FeedChange> {
        append_to(store, &sku(), changes).await
    }

    /// Appends `changes` to `stream` as [`append`] does.
    async fn append_to(
        store: &MemoryStore,
        stream: &StreamId,
        changes: Vec<Change>,
    ) -> Vec<FeedChange> {
        let head = store.read_stream(stream, 0).await.unwrap();
        let mut state = SkuState::from_events(&head);
        let mut fed = Vec::new();
        for change in changes {
            let at = Timestamp::from_millis((state.version as i64 + 1) * 1_000);
            let append = StreamAppend::after(&state, stream, at, vec![change]);
            let event = append.events[0].clone();
            store
                .write(Transaction::appends(vec![append]))
                .await
                .unwrap();
            state.evolve(&event);
            fed.push(FeedChange::Appended(event));
        }
        fed
    }

    fn received(units: i64) -> Change {
        Change::StockReceived {
            command_id: CommandId::random(),
            quantity: Quantity::new(units).unwrap(),
            why: Annotation::received(None),
        }
    }

    fn held(seq: u64, units: i64) -> Change {
        Change::HoldPlaced {
            reservation_id: ReservationId::new(sku(), seq, seq),
            quantity: Quantity::new(units).unwrap(),
            expires_at: Timestamp::from_millis(600_000),
            release_at: Timestamp::from_millis(600_000),
            lines: Vec::new(),
            owner: None,
        }
    }

    fn ids(noticed: &[Noticed]) -> Vec<String> {
        noticed.iter().map(Noticed::id).collect()
    }

    #[tokio::test]
    async fn notices_are_published_before_the_snapshot_and_again_after_a_failure() {
        let store = Arc::new(MemoryStore::new());
        let board = Arc::new(FlakyBoard::default());
        let snapshotter = Snapshotter::new(store.clone()).with_notices(board.clone());
        let batch = append(&store, vec![received(1), held(2, 1)]).await;

        board.down.store(true, Ordering::SeqCst);
        let failed = snapshotter.react(&batch).await;
        assert_eq!(failed, BTreeSet::from([sku()]), "delivered again");
        let snapshot = store.read_snapshots(&[sku()]).await.unwrap();
        assert_eq!(snapshot, vec![None], "no snapshot past unpublished notices");

        board.down.store(false, Ordering::SeqCst);
        assert!(snapshotter.react(&batch).await.is_empty());
        assert_eq!(
            ids(&board.inner.published()),
            vec![
                "SKU-1:1:back_in_stock",
                "SKU-1:2:out_of_stock",
                "SKU-1:2:stock_changed"
            ]
        );
        // Delivered once more (at least once): the snapshot covers it, nothing is told twice.
        assert!(snapshotter.react(&batch).await.is_empty());
        assert_eq!(board.inner.published().len(), 3);
    }

    #[tokio::test]
    async fn a_parked_command_on_the_feed_is_told_once_per_parking_and_a_redrive_mark_is_not() {
        use crate::ports::{
            CommandOutcome, ParkReason, ParkedCommand, Record, RecordKey, RecordWrite,
        };
        let store = Arc::new(MemoryStore::new());
        let board = Arc::new(FlakyBoard::default());
        let snapshotter = Snapshotter::new(store.clone()).with_notices(board.clone());
        let command_id = CommandId::random();
        let park = |expected, redriven_at| {
            let parked = ParkedCommand {
                reason: ParkReason::Failing,
                detail: "throttled".to_owned(),
                parked_at: Timestamp::from_millis(5_000),
                body: String::new(),
                redriven_at,
            };
            Transaction::records(vec![RecordWrite {
                key: RecordKey::CommandOutcome {
                    command_id,
                    sku: sku().item().clone(),
                },
                expected,
                record: Record::CommandOutcome(CommandOutcome::Parked(parked)),
            }])
        };
        store.write(park(None, None)).await.unwrap();
        let (parked, at) = store.feed_since(0);
        assert!(matches!(parked[..], [FeedChange::Parked(_)]), "{parked:?}");

        board.down.store(true, Ordering::SeqCst);
        assert_eq!(
            snapshotter.react(&parked).await,
            BTreeSet::from([sku()]),
            "delivered again while the board is down"
        );
        board.down.store(false, Ordering::SeqCst);
        assert!(snapshotter.react(&parked).await.is_empty());
        let told = board.inner.published();
        assert_eq!(
            ids(&told),
            vec![format!("SKU-1:{command_id}:5000:command_parked")]
        );
        assert!(matches!(
            &told[0].notice,
            Notice::CommandParked { reason: "failing", detail, .. } if detail == "throttled"
        ));

        // The operator's redrive marks the record: on the feed, but no new parking.
        store
            .write(park(Some(1), Some(Timestamp::from_millis(9_000))))
            .await
            .unwrap();
        let (marked, _) = store.feed_since(at);
        assert_eq!(marked.len(), 1);
        assert!(snapshotter.react(&marked).await.is_empty());
        assert_eq!(board.inner.published().len(), 1);
    }

    #[tokio::test]
    async fn a_batch_after_a_gap_tells_what_the_stream_holds_in_order() {
        let store = Arc::new(MemoryStore::new());
        let board = Arc::new(MemoryNoticeBoard::new());
        let snapshotter = Snapshotter::new(store.clone()).with_notices(board.clone());
        let first = append(&store, vec![received(1)]).await;
        let lost = append(&store, vec![held(2, 1)]).await;
        assert!(snapshotter.react(&first).await.is_empty());
        // The batch with the hold is lost; the next one brings a receipt only.
        let next = append(&store, vec![received(2)]).await;
        assert!(snapshotter.react(&next).await.is_empty());
        assert_eq!(
            ids(&board.published()),
            vec![
                "SKU-1:1:back_in_stock",
                "SKU-1:1:stock_changed",
                "SKU-1:2:out_of_stock",
                "SKU-1:3:back_in_stock",
                "SKU-1:3:stock_changed"
            ]
        );
        // The lost batch arriving late tells nothing new.
        assert!(snapshotter.react(&lost).await.is_empty());
        assert_eq!(board.published().len(), 5);
    }

    #[tokio::test]
    async fn an_item_kept_at_two_locations_is_told_out_of_stock_once_when_both_are_and_again_after_a_failure(
    ) {
        let store = Arc::new(MemoryStore::new());
        let board = Arc::new(FlakyBoard::default());
        let snapshotter = Snapshotter::new(store.clone()).with_notices(board.clone());
        let store_5 = LocationId::parse("store-5").unwrap();
        let at_store = StreamId::at(sku().item(), &store_5);
        // Given 2 units at the default location and 1 at the store.
        let mut setup = append(&store, vec![received(2)]).await;
        // The item's threshold (set without a location: the default location's) is 3.
        setup.extend(
            append(
                &store,
                vec![
                    Change::StockedAt {
                        location: store_5.clone(),
                    },
                    Change::LowStockSet {
                        command_id: CommandId::random(),
                        below: LowStockThreshold::new(3).unwrap(),
                    },
                ],
            )
            .await,
        );
        setup.extend(append_to(&store, &at_store, vec![received(1)]).await);
        assert!(snapshotter.react(&setup).await.is_empty());
        let told_before = board.inner.published().len();
        assert!(
            !ids(&board.inner.published()).contains(&"SKU-1:store-5:1:back_in_stock".to_owned()),
            "a location's first units bring back nothing the item was not told out of"
        );
        let told_since = |board: &FlakyBoard| ids(&board.inner.published()[told_before..]);

        // When the store sells out, the item still has 2: out of stock at the store, and the
        // item low (below 3).
        let batch = append_to(&store, &at_store, vec![held(2, 1)]).await;
        assert!(snapshotter.react(&batch).await.is_empty());
        assert_eq!(
            told_since(&board),
            vec![
                "SKU-1:store-5:2:out_of_stock_at_location",
                "SKU-1:store-5:2:stock_changed",
                "SKU-1:store-5:2:low_stock"
            ]
        );
        // When the default location sells out too, while the bus is down: nothing is saved...
        let batch = append(&store, vec![held(4, 2)]).await;
        board.down.store(true, Ordering::SeqCst);
        assert_eq!(snapshotter.react(&batch).await, BTreeSet::from([sku()]));
        board.down.store(false, Ordering::SeqCst);
        // ...and delivered again, the item as a whole is told out of stock, once.
        assert!(snapshotter.react(&batch).await.is_empty());
        assert!(snapshotter.react(&batch).await.is_empty());
        let told = told_since(&board);
        assert_eq!(
            told,
            vec![
                "SKU-1:store-5:2:out_of_stock_at_location",
                "SKU-1:store-5:2:stock_changed",
                "SKU-1:store-5:2:low_stock",
                "SKU-1:4:out_of_stock_at_location",
                "SKU-1:4:stock_changed",
                "SKU-1:4:out_of_stock"
            ]
        );
        let whole = &board.inner.published()[told_before + 5];
        assert!(
            matches!(&whole.notice, Notice::OutOfStock { stock } if stock.available == 0),
            "{whole:?}"
        );
        // The record keeps nothing pending once told.
        let record = store
            .read_records(&[RecordKey::WholeItem {
                sku: sku().item().clone(),
            }])
            .await
            .unwrap();
        assert!(
            matches!(&record[0], Some(stored) if matches!(&stored.record, Record::WholeItem(whole) if whole.pending.is_empty() && whole.total() == 0)),
            "{record:?}"
        );
    }
}
