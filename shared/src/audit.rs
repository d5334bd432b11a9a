//! The audit: each SKU's history rebuilt from the cold archive plus the live table, and checked
//! against the snapshot and the read view.
//!
//! Old events live only in the archive (the table deletes them once archived and covered by a
//! snapshot), recent ones only in the table, some in both. The audit merges the two by sequence
//! number, reports any sequence found with two different contents and any sequence found in
//! neither, folds the merged history, and checks that the snapshot is the fold of the history up
//! to its version. A snapshot behind the head is normal (the change feed lags); one beyond the
//! head, or different from the fold at its version, is not. The read view is the snapshot as seen
//! now, so it is checked the same way, figure by figure.
//!
//! Pure over the ports: the same code audits the embedded backend and the deployed one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::app::ItemView;
use crate::archive::{Archive, ArchiveError};
use crate::domain::{Bucket, Change, Event, Move, MoveId, SkuState, StreamId, Timestamp, Version};
use crate::ports::{EventStore, Record, RecordKey};

/// What auditing one stream found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkuAudit {
    /// The stream.
    pub stream: StreamId,
    /// The last sequence found, in the archive or the table (0: none).
    pub head: Version,
    /// Distinct events found in the archive.
    pub archived: usize,
    /// Events found in the table.
    pub live: usize,
    /// Distinct events found in either.
    pub events: usize,
    /// The fold of every event found (incomplete when `gaps` is not empty).
    pub replayed: SkuState,
    /// Ranges of sequences below the head found in neither the archive nor the table.
    pub gaps: Vec<(Version, Version)>,
    /// The stored snapshot's version, if there is a snapshot.
    pub snapshot_version: Option<Version>,
    /// The stored snapshot.
    pub snapshot: Option<SkuState>,
    /// The read view as served at `now`: the snapshot's figures.
    pub view: Option<ItemView>,
    /// What the read view should show at `now`: the replay at the snapshot's version (`None`
    /// when there is no snapshot or the history below it has a gap).
    pub expected_view: Option<ItemView>,
    /// The instant the views and holds are computed at.
    pub now: Timestamp,
    /// What is wrong.
    pub mismatches: Vec<String>,
    /// What is worth knowing but normal (lag).
    pub notes: Vec<String>,
    /// The transfers found in the stream (an item split into buckets), by id: each must be
    /// found the same in every bucket it touches ([`check_buckets`]).
    pub transfers: BTreeMap<MoveId, Vec<Move>>,
}

impl SkuAudit {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.mismatches.is_empty()
    }

    /// The replayed state as the read view would show it at `now`.
    pub fn replayed_view(&self) -> ItemView {
        view_of(&self.stream, &self.replayed, self.now)
    }
}

impl fmt::Display for SkuAudit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.stream)?;
        match self.mismatches.len() {
            0 => write!(f, "clean")?,
            1 => write!(f, "1 mismatch")?,
            n => write!(f, "{n} mismatches")?,
        }
        write!(
            f,
            ". {} events up to {} ({} archived, {} live)",
            self.events, self.head, self.archived, self.live
        )?;
        match self.snapshot_version {
            Some(version) => write!(f, ", snapshot at version {version}")?,
            None => write!(f, ", no snapshot")?,
        }
        write!(f, ".")?;
        if !self.mismatches.is_empty() {
            write!(f, " Mismatches: {}.", self.mismatches.join("; "))?;
        }
        if !self.notes.is_empty() {
            write!(f, " Notes: {}.", self.notes.join("; "))?;
        }
        Ok(())
    }
}

/// The read view of `state` at `now`, as `GET /items` computes it.
fn view_of(stream: &StreamId, state: &SkuState, now: Timestamp) -> ItemView {
    ItemView::new(stream.item().clone(), state, state.now(now))
}

/// `first..=last` in words.
fn range_text(first: Version, last: Version) -> String {
    if first == last {
        format!("event {first} is")
    } else {
        format!("events {first}..={last} are")
    }
}

/// The ranges of sequences in `1..=through` missing from `present`.
fn missing_ranges<'a>(
    present: impl IntoIterator<Item = &'a Version>,
    through: Version,
) -> Vec<(Version, Version)> {
    let mut missing = Vec::new();
    let mut expected = 1;
    for &seq in present {
        if seq > through {
            break;
        }
        if seq > expected {
            missing.push((expected, seq - 1));
        }
        expected = expected.max(seq + 1);
    }
    if expected <= through {
        missing.push((expected, through));
    }
    missing
}

/// How `found` differs from `expected`, figure by figure (at `now` for the holds).
fn differences(found: &SkuState, expected: &SkuState, now: Timestamp) -> String {
    let mut parts = Vec::new();
    let mut figure = |name: &str, found: i64, expected: i64| {
        if found != expected {
            parts.push(format!("{name} {found} instead of {expected}"));
        }
    };
    figure("on_hand", found.on_hand, expected.on_hand);
    figure("committed", found.committed, expected.committed);
    figure(
        "reserved",
        found.held(found.now(now)),
        expected.held(expected.now(now)),
    );
    figure("clock", found.clock.millis(), expected.clock.millis());
    figure(
        "release buckets",
        found.bucket_count() as i64,
        expected.bucket_count() as i64,
    );
    if parts.is_empty() {
        "its holds differ".to_owned()
    } else {
        parts.join(", ")
    }
}

/// How a read view differs from another.
fn view_differences(found: &ItemView, expected: &ItemView) -> Vec<String> {
    [
        ("on_hand", found.on_hand, expected.on_hand),
        ("committed", found.committed, expected.committed),
        ("reserved", found.reserved, expected.reserved),
        ("available", found.available, expected.available),
        ("version", found.version as i64, expected.version as i64),
    ]
    .into_iter()
    .filter(|(_, found, expected)| found != expected)
    .map(|(name, found, expected)| format!("{name} {found} instead of {expected}"))
    .collect()
}

/// Rebuilds `sku`'s state from the archive plus the table and checks the snapshot and the read
/// view (at `now`) against it.
pub async fn audit_sku(
    store: &dyn EventStore,
    archive: &Archive,
    sku: &StreamId,
    now: Timestamp,
) -> Result<SkuAudit, ArchiveError> {
    let archived = archive.read_sku(sku).await?;
    let live = store.read_stream(sku, 0).await?;
    let snapshot = store
        .read_snapshots(std::slice::from_ref(sku))
        .await?
        .pop()
        .flatten();
    let mark = match store
        .read_records(&[RecordKey::ArchiveMark {
            stream: sku.clone(),
        }])
        .await?
        .pop()
        .flatten()
    {
        Some(versioned) => match versioned.record {
            Record::ArchiveMark(mark) => Some(mark),
            _ => None,
        },
        None => None,
    };

    let mut mismatches: Vec<String> = archived
        .problems
        .iter()
        .map(|problem| format!("archive: {problem}"))
        .collect();
    let mut notes = Vec::new();

    // Merge by sequence; the table's copy wins where both have one (the snapshot was folded
    // from the table).
    let archived_through = archived.events.keys().next_back().copied().unwrap_or(0);
    let mut merged: BTreeMap<Version, &Event> =
        archived.events.iter().map(|(s, e)| (*s, e)).collect();
    let mut unarchived = 0;
    for event in &live {
        if &event.stream != sku {
            mismatches.push(format!(
                "the table returned event {} of {} in the stream of {sku}",
                event.seq, event.stream
            ));
            continue;
        }
        match archived.events.get(&event.seq) {
            Some(copy) if copy != event => mismatches.push(format!(
                "event {} differs between the archive and the table",
                event.seq
            )),
            Some(_) => {}
            None if event.seq > archived_through => unarchived += 1,
            None => {}
        }
        merged.insert(event.seq, event);
    }
    let head = merged.keys().next_back().copied().unwrap_or(0);

    // Gaps: the stream starts at 1 and has no hole.
    let gaps = missing_ranges(merged.keys(), head);
    for &(first, last) in &gaps {
        mismatches.push(format!(
            "{} in neither the archive nor the table",
            range_text(first, last)
        ));
    }
    // The archive has no gap below its mark: what it says is archived must be there.
    if let Some(mark) = mark {
        for (first, last) in missing_ranges(archived.events.keys(), mark.archived_through) {
            let in_gap = gaps.iter().any(|&(a, b)| a <= first && last <= b);
            if !in_gap {
                mismatches.push(format!(
                    "{} missing from the archive, though it is marked archived through {}",
                    range_text(first, last),
                    mark.archived_through
                ));
            }
        }
        let covered = snapshot.as_ref().map_or(0, |s| s.version);
        if mark.retired_through > covered {
            mismatches.push(format!(
                "events up to {} were retired from the table but the snapshot only covers {covered}",
                mark.retired_through
            ));
        }
    }
    if unarchived > 0 {
        notes.push(format!("live events not yet archived: {unarchived}"));
    }

    let mut transfers = BTreeMap::new();
    for event in merged.values() {
        if let Change::StockMoved { move_id, moves } = &event.change {
            if transfers.insert(*move_id, moves.clone()).is_some() {
                mismatches.push(format!(
                    "transfer {move_id} is recorded twice (event {})",
                    event.seq
                ));
            }
        }
    }

    // Fold, keeping the state at the snapshot's version.
    let snapshot_version = snapshot.as_ref().map(|s| s.version);
    let mut replayed = SkuState::default();
    let mut at_snapshot = (snapshot_version == Some(0)).then(SkuState::default);
    for event in merged.values() {
        replayed.evolve(event);
        if Some(event.seq) == snapshot_version {
            at_snapshot = Some(replayed.clone());
        }
    }

    let mut view = None;
    let mut expected_view = None;
    match &snapshot {
        None if head > 0 => notes.push(format!("no snapshot yet (the stream has {head} events)")),
        None => notes.push("nothing is recorded for this SKU".to_owned()),
        Some(snapshot) => {
            let version = snapshot.version;
            view = Some(view_of(sku, snapshot, now));
            if head == 0 {
                mismatches.push(format!(
                    "a snapshot at version {version} exists but no event is in the archive or the table"
                ));
            } else if version > head {
                mismatches.push(format!(
                    "the snapshot is at version {version}, beyond the last event {head}"
                ));
            } else if gaps.iter().any(|&(first, _)| first <= version) {
                notes.push(format!(
                    "the snapshot at version {version} cannot be checked: the history below it has a gap"
                ));
            } else if let Some(expected) = &at_snapshot {
                if expected != snapshot {
                    mismatches.push(format!(
                        "the snapshot at version {version} differs from the replay at that version: {}",
                        differences(snapshot, expected, now)
                    ));
                }
                let expected = view_of(sku, expected, now);
                if let Some(shown) = &view {
                    let differs = view_differences(shown, &expected);
                    if !differs.is_empty() {
                        mismatches.push(format!("the read view shows {}", differs.join(", ")));
                    }
                }
                expected_view = Some(expected);
            }
            if version < head {
                notes.push(format!(
                    "the snapshot is lagging by {} events (version {version} of {head})",
                    head - version
                ));
            }
        }
    }

    Ok(SkuAudit {
        stream: sku.clone(),
        head,
        archived: archived.events.len(),
        live: live.len(),
        events: merged.len(),
        replayed,
        gaps,
        snapshot_version,
        snapshot,
        view,
        expected_view,
        now,
        mismatches,
        notes,
        transfers,
    })
}

/// Checks the items split into buckets among `audits` (the audits of every bucket stream of
/// each, bucket 0's included): every transfer is found in each bucket it moves units out of or
/// into, the same in each, and nowhere else, so the buckets' histories add up to the item's: no
/// move created or lost a unit. What is wrong is added to the mismatches of the item's bucket 0.
pub fn check_buckets(audits: &mut [SkuAudit]) {
    // An item's buckets at one location, by their bucket 0.
    let mut items: BTreeMap<StreamId, Vec<usize>> = BTreeMap::new();
    for (index, audit) in audits.iter().enumerate() {
        items.entry(audit.stream.home()).or_default().push(index);
    }
    for (item, members) in items {
        let Some(&zero) = members.iter().find(|&&i| audits[i].stream.is_home()) else {
            continue;
        };
        let mut problems = Vec::new();
        let widest = audits[zero].replayed.layout.widest.get();
        let mut seen: BTreeMap<MoveId, (Vec<Move>, BTreeSet<Bucket>)> = BTreeMap::new();
        for &index in &members {
            let audit = &audits[index];
            let bucket = audit.stream.bucket();
            if bucket.number() >= widest && audit.head > 0 {
                problems.push(format!(
                    "bucket {bucket} has events, but the item was never split into more than {widest}"
                ));
            }
            for (id, moves) in &audit.transfers {
                let (first, found) = seen
                    .entry(*id)
                    .or_insert_with(|| (moves.clone(), BTreeSet::new()));
                if first != moves {
                    problems.push(format!(
                        "transfer {id} moves {moves:?} in bucket {bucket} but {first:?} elsewhere"
                    ));
                }
                found.insert(bucket);
            }
        }
        for (id, (moves, found)) in seen {
            let expected: BTreeSet<Bucket> = moves.iter().flat_map(|m| [m.from, m.to]).collect();
            if found != expected {
                let numbers =
                    |set: &BTreeSet<Bucket>| set.iter().map(|b| b.number()).collect::<Vec<_>>();
                problems.push(format!(
                    "transfer {id} is recorded in buckets {:?}, but it touches buckets {:?}",
                    numbers(&found),
                    numbers(&expected)
                ));
            }
        }
        let zero = &mut audits[zero];
        debug_assert_eq!(zero.stream, item);
        zero.mismatches.extend(problems);
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::Annotation;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::app::ReserveRequest;
    use crate::archive::{encode, segment_key};
    use crate::domain::{Action, Caller, Change, Command, CommandId, Line, Quantity, TtlSeconds};
    use crate::feed::{FeedChange, Reaction};
    use crate::memory::{MemoryObjects, MemoryQueue, MemoryStore};
    use crate::ports::ObjectStore as _;
    use crate::ports::Snapshots;
    use crate::ports::{Clock as _, ManualClock};
    use crate::reactions::{Archiver, Snapshotter};
    use crate::{Config, Inventory};

    /// 2026-11-21T10:00:00Z.
    const START: Timestamp = Timestamp::from_millis(1_795_255_200_000);

    struct World {
        store: Arc<MemoryStore>,
        objects: Arc<MemoryObjects>,
        archive: Archive,
        clock: ManualClock,
        inventory: Inventory,
        snapshotter: Snapshotter,
        archiver: Archiver,
        fed: usize,
        /// Every event appended, from the feed.
        history: BTreeMap<Version, Event>,
    }

    impl World {
        fn new() -> Self {
            let store = Arc::new(MemoryStore::new());
            let objects = Arc::new(MemoryObjects::new());
            let archive = Archive::new(objects.clone());
            let clock = ManualClock::new(START);
            let inventory = Inventory::new(
                store.clone(),
                Arc::new(MemoryQueue::new()),
                Arc::new(clock.clone()),
                Config::default(),
            );
            Self {
                snapshotter: Snapshotter::new(store.clone()),
                archiver: Archiver::new(
                    store.clone(),
                    archive.clone(),
                    Arc::new(clock.clone()),
                    Duration::ZERO,
                ),
                store,
                objects,
                archive,
                clock,
                inventory,
                fed: 0,
                history: BTreeMap::new(),
            }
        }

        async fn receive(&self, units: i64) {
            let command = Command {
                id: CommandId::random(),
                sku: sku().item().clone(),
                accepted_at: self.clock.now(),
                action: Action::ReceiveStock {
                    location: Default::default(),
                    quantity: Quantity::new(units).unwrap(),
                    why: Annotation::received(None),
                },
            };
            self.inventory
                .apply_commands(sku().item(), &[command])
                .await
                .unwrap();
            self.clock.advance_millis(1_000);
        }

        async fn split(&self, count: i64) {
            let command = Command {
                id: CommandId::random(),
                sku: sku().item().clone(),
                accepted_at: self.clock.now(),
                action: Action::SetBuckets {
                    location: Default::default(),
                    count: crate::domain::BucketCount::new(count).unwrap(),
                },
            };
            self.inventory
                .apply_commands(sku().item(), &[command])
                .await
                .unwrap();
            self.clock.advance_millis(1_000);
        }

        /// The audits of the item's first `buckets` bucket streams.
        async fn bucket_audits(&self, buckets: u16) -> Vec<SkuAudit> {
            let mut audits = Vec::new();
            for bucket in 0..buckets {
                let stream = sku().in_bucket(Bucket::new(bucket).unwrap());
                let audit = audit_sku(
                    self.store.as_ref(),
                    &self.archive,
                    &stream,
                    self.clock.now(),
                );
                audits.push(audit.await.unwrap());
            }
            audits
        }

        async fn reserve(&self, units: i64) {
            let line = Line::of(sku().item().clone(), Quantity::new(units).unwrap());
            let request = ReserveRequest::new(vec![line], TtlSeconds::DEFAULT, None).unwrap();
            self.inventory
                .reserve(request, &Caller::local_admin())
                .await
                .unwrap();
            self.clock.advance_millis(1_000);
        }

        /// Delivers the feed so far to the snapshotter, then to the archiver.
        async fn react(&mut self) {
            let (changes, next) = self.store.feed_since(self.fed);
            self.fed = next;
            for change in &changes {
                if let FeedChange::Appended(event) = change {
                    self.history.insert(event.seq, event.clone());
                }
            }
            assert!(self.snapshotter.react(&changes).await.is_empty());
            assert!(self.archiver.react(&changes).await.is_empty());
        }

        /// The table's time to live runs out for every retired event.
        async fn expire(&mut self) -> usize {
            let deleted = self.store.delete_expired(self.clock.now());
            self.react().await;
            deleted
        }

        async fn audit(&self) -> SkuAudit {
            audit_sku(self.store.as_ref(), &self.archive, &sku(), self.clock.now())
                .await
                .unwrap()
        }

        /// Keys of the archive's data objects of the SKU, in order.
        async fn segments(&self) -> Vec<String> {
            self.objects
                .list(&format!("events/sku={}/", sku()))
                .await
                .unwrap()
        }
    }

    fn sku() -> StreamId {
        StreamId::of(&crate::domain::Sku::parse("SKU-1").unwrap())
    }

    #[tokio::test]
    async fn an_item_split_into_buckets_adds_up_and_a_transfer_missing_from_a_bucket_is_a_mismatch()
    {
        let mut world = World::new();
        world.receive(12).await;
        world.split(3).await;
        for _ in 0..10 {
            world.reserve(1).await;
        }
        world.react().await;
        let mut audits = world.bucket_audits(3).await;
        check_buckets(&mut audits);
        assert!(audits.iter().all(SkuAudit::is_clean), "{audits:?}");
        let transfers: usize = audits.iter().map(|audit| audit.transfers.len()).sum();
        assert!(
            transfers >= 3,
            "the spread and the hunts moved units: {audits:?}"
        );
        let held: i64 = audits
            .iter()
            .map(|audit| audit.replayed.held(world.clock.now()))
            .sum();
        assert_eq!(held, 10, "the buckets' holds add up to the item's");

        // A copy of a transfer lost from one of the buckets it moved units into or out of.
        let mut audits = world.bucket_audits(3).await;
        let (index, id) = audits
            .iter()
            .enumerate()
            .find_map(|(index, audit)| Some((index, *audit.transfers.keys().next()?)))
            .expect("a bucket took part in a transfer");
        audits[index].transfers.remove(&id);
        check_buckets(&mut audits);
        assert!(
            audits[0]
                .mismatches
                .iter()
                .any(|m| m.contains(&format!("transfer {id} is recorded in buckets"))),
            "{:?}",
            audits[0].mismatches
        );
    }

    fn forged_state(version: Version, on_hand: i64) -> SkuState {
        let mut state = SkuState::default();
        state.version = version;
        state.on_hand = on_hand;
        state
    }

    /// Three archived runs (events 1–2, 3–4, 5), all deleted from the table.
    async fn archived_and_deleted() -> World {
        let mut world = World::new();
        world.receive(10).await;
        world.reserve(3).await;
        world.react().await;
        world.receive(5).await;
        world.reserve(2).await;
        world.react().await;
        world.receive(1).await;
        world.react().await;
        assert_eq!(world.expire().await, 5);
        assert!(world.store.retirements(&sku()).is_empty());
        assert_eq!(world.segments().await.len(), 3);
        world
    }

    #[tokio::test]
    async fn an_archived_and_deleted_history_replays_to_the_snapshot() {
        let world = archived_and_deleted().await;
        let audit = world.audit().await;
        assert!(audit.is_clean(), "{audit}");
        assert_eq!(audit.head, 5);
        assert_eq!((audit.archived, audit.live, audit.events), (5, 0, 5));
        assert_eq!(
            audit.replayed,
            SkuState::from_events(world.history.values())
        );
        assert_eq!(audit.replayed.on_hand, 16);
        assert_eq!(audit.replayed.held(world.clock.now()), 5);
        assert_eq!(audit.snapshot_version, Some(5));
        assert_eq!(audit.snapshot.as_ref(), Some(&audit.replayed));
        assert_eq!(audit.view, audit.expected_view);
        assert_eq!(audit.view.as_ref().map(|v| v.available), Some(11));
        assert_eq!(audit.replayed_view().version, 5);
        assert!(audit.notes.is_empty(), "{audit}");
        assert!(audit
            .to_string()
            .starts_with("SKU-1: clean. 5 events up to 5"));
    }

    #[tokio::test]
    async fn recent_events_only_in_the_table_are_lag_not_a_mismatch() {
        let mut world = archived_and_deleted().await;
        world.receive(4).await;
        world.receive(4).await;
        let audit = world.audit().await;
        assert!(audit.is_clean(), "{audit}");
        assert_eq!((audit.archived, audit.live, audit.head), (5, 2, 7));
        assert_eq!(audit.replayed.on_hand, 24);
        assert!(
            audit
                .notes
                .contains(&"live events not yet archived: 2".to_owned()),
            "{audit}"
        );
        assert!(
            audit
                .notes
                .iter()
                .any(|n| n.contains("lagging by 2 events")),
            "{audit}"
        );
        world.react().await;
        let audit = world.audit().await;
        assert!(audit.is_clean(), "{audit}");
        assert!(audit.notes.is_empty(), "{audit}");
    }

    #[tokio::test]
    async fn a_lost_archive_object_of_deleted_events_is_a_gap() {
        let world = archived_and_deleted().await;
        let segments = world.segments().await;
        assert!(world.objects.remove(&segments[1]));
        let audit = world.audit().await;
        assert!(!audit.is_clean());
        assert!(
            audit
                .mismatches
                .contains(&"events 3..=4 are in neither the archive nor the table".to_owned()),
            "{audit}"
        );
        assert_eq!((audit.archived, audit.head), (3, 5));
        assert_eq!(audit.gaps, vec![(3, 4)]);
        assert!(audit.to_string().contains("events 3..=4"), "{audit}");
    }

    #[tokio::test]
    async fn a_lost_archive_object_of_live_events_breaks_the_archive_mark() {
        let mut world = World::new();
        world.archiver = Archiver::new(
            world.store.clone(),
            world.archive.clone(),
            Arc::new(world.clock.clone()),
            Duration::from_secs(3_600),
        );
        world.receive(10).await;
        world.react().await;
        world.receive(2).await;
        world.react().await;
        let segments = world.segments().await;
        assert!(world.objects.remove(&segments[0]));
        let audit = world.audit().await;
        assert_eq!(
            audit.mismatches,
            vec![
                "event 1 is missing from the archive, though it is marked archived through 2"
                    .to_owned()
            ],
            "{audit}"
        );
    }

    #[tokio::test]
    async fn a_snapshot_beyond_the_head_is_a_mismatch() {
        let world = archived_and_deleted().await;
        let forged = forged_state(9, 999);
        world.store.save_snapshot(&sku(), &forged).await.unwrap();
        let audit = world.audit().await;
        assert_eq!(
            audit.mismatches,
            vec!["the snapshot is at version 9, beyond the last event 5".to_owned()],
            "{audit}"
        );
        assert_eq!(audit.view.as_ref().map(|v| v.on_hand), Some(999));
    }

    #[tokio::test]
    async fn a_snapshot_that_is_not_the_fold_at_its_version_is_a_mismatch() {
        let mut world = World::new();
        world.receive(10).await;
        world.receive(5).await;
        // A wrong snapshot at version 1, which the snapshotter then folds on from.
        let forged = forged_state(1, 7);
        world.store.save_snapshot(&sku(), &forged).await.unwrap();
        world.react().await;
        let audit = world.audit().await;
        assert_eq!(audit.replayed.on_hand, 15);
        assert_eq!(audit.snapshot.as_ref().map(|s| s.on_hand), Some(12));
        assert_eq!(
            audit.mismatches,
            vec![
                "the snapshot at version 2 differs from the replay at that version: on_hand 12 \
                 instead of 15"
                    .to_owned(),
                "the read view shows on_hand 12 instead of 15, available 12 instead of 15"
                    .to_owned()
            ],
            "{audit}"
        );
    }

    #[tokio::test]
    async fn an_archived_event_unlike_the_live_one_is_a_mismatch() {
        let mut world = World::new();
        world.receive(10).await;
        world.receive(5).await;
        world.react().await;
        // Events are archived but the table still has them (nothing expired yet).
        let mut forged: Vec<Event> = world.history.values().cloned().collect();
        if let Change::StockReceived { quantity, .. } = &mut forged[1].change {
            *quantity = Quantity::new(50).unwrap();
        }
        let segments = world.segments().await;
        assert_eq!(segments, vec![segment_key(&sku(), "2026-11-21", 1, 2)]);
        world
            .objects
            .put(&segments[0], encode(&forged))
            .await
            .unwrap();
        let audit = world.audit().await;
        assert_eq!(
            audit.mismatches,
            vec!["event 2 differs between the archive and the table".to_owned()],
            "{audit}"
        );
        assert_eq!(audit.replayed.on_hand, 15, "the table's copy is folded");
    }

    #[tokio::test]
    async fn a_snapshot_without_any_event_is_a_mismatch_and_nothing_at_all_is_clean() {
        let world = World::new();
        let audit = world.audit().await;
        assert!(audit.is_clean(), "{audit}");
        assert_eq!(audit.head, 0);
        let forged = forged_state(3, 5);
        world.store.save_snapshot(&sku(), &forged).await.unwrap();
        let audit = world.audit().await;
        assert_eq!(
            audit.mismatches,
            vec![
                "a snapshot at version 3 exists but no event is in the archive or the table"
                    .to_owned()
            ],
            "{audit}"
        );
    }

    #[test]
    fn missing_ranges_are_the_holes_up_to_the_head() {
        assert_eq!(missing_ranges(&[1, 2, 3], 3), vec![]);
        assert_eq!(missing_ranges(&[2, 3, 7], 7), vec![(1, 1), (4, 6)]);
        assert_eq!(missing_ranges(&[1, 2], 4), vec![(3, 4)]);
        assert_eq!(missing_ranges(&[], 0), vec![]);
    }
}
