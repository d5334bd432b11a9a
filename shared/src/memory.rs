//! In-memory adapters: the embedded backend of `inventory dev` and of the tests. They keep the
//! same contract as the AWS adapters (conditional appends, all-or-nothing commits, conflicts
//! reported, not overwritten), proven by the shared conformance suite.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::RangeInclusive;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::domain::{
    Change, Command, CommandId, Event, Noticed, SkuState, StreamId, Timestamp, Version,
};
use crate::feed::FeedChange;
use crate::limits::MAX_TRANSACTION_ITEMS;
use crate::ports::{
    CommandHistory, CommandQueue, CommandRecord, Conflict, ExpiryIndex, IndexPart, Lapsing,
    LapsingHold, NoticeBoard, ObjectStore, ObjectStoreError, ParkedEntry, ParkedIndex,
    PublishError, QueueError, Record, RecordKey, Records, Retirement, SnapshotSave, Snapshots,
    StoreError, StreamPage, Streams, Transaction, Transactions, Versioned,
};

/// Event streams, records and snapshots in one process, with a change feed like the table's
/// stream and a time to live like the table's.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Tables>,
}

#[derive(Debug, Default)]
struct Tables {
    streams: HashMap<StreamId, Vec<Slot>>,
    records: HashMap<RecordKey, Versioned>,
    snapshots: HashMap<StreamId, SkuState>,
    feed: Vec<FeedChange>,
}

/// One position of a stream: the event, its time to live once retired, and whether the time to
/// live has deleted it.
#[derive(Debug, Clone)]
struct Slot {
    event: Event,
    delete_at: Option<Timestamp>,
    deleted: bool,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every stream's SKU (for checks and tools; the service never lists).
    pub fn skus(&self) -> Vec<StreamId> {
        let mut skus: Vec<StreamId> = self.tables().streams.keys().cloned().collect();
        skus.sort();
        skus
    }

    /// The change feed from position `from` on, and the position after it (like reading a
    /// table's stream from a sequence number).
    pub fn feed_since(&self, from: usize) -> (Vec<FeedChange>, usize) {
        let tables = self.tables();
        let from = from.min(tables.feed.len());
        (tables.feed[from..].to_vec(), tables.feed.len())
    }

    /// Does what the table's time to live does: deletes the events whose time to live is past at
    /// `now`, each reported on the feed as removed. Returns how many were deleted.
    pub fn delete_expired(&self, now: Timestamp) -> usize {
        let mut tables = self.tables();
        let mut removed = Vec::new();
        for slots in tables.streams.values_mut() {
            for slot in slots.iter_mut() {
                if !slot.deleted && slot.delete_at.is_some_and(|at| at <= now) {
                    slot.deleted = true;
                    removed.push(FeedChange::Removed(slot.event.clone()));
                }
            }
        }
        let count = removed.len();
        tables.feed.extend(removed);
        count
    }

    /// Events of `sku` still in the store with their deletion time, if retired (for tests).
    pub fn retirements(&self, sku: &StreamId) -> Vec<(Version, Option<Timestamp>)> {
        let tables = self.tables();
        tables.streams.get(sku).map_or_else(Vec::new, |slots| {
            slots
                .iter()
                .filter(|slot| !slot.deleted)
                .map(|slot| (slot.event.seq, slot.delete_at))
                .collect()
        })
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave the tables half-written: a commit checks
        // every condition before it changes anything.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Tables {
    /// Whether the slot of event `seq` of `sku` holds an event. A slot the time to live emptied
    /// is free again, as in DynamoDB, where nothing is left of a deleted item.
    fn taken(&self, sku: &StreamId, seq: Version) -> bool {
        let index = usize::try_from(seq).ok().and_then(|seq| seq.checked_sub(1));
        index
            .and_then(|i| self.streams.get(sku)?.get(i))
            .is_some_and(|slot| !slot.deleted)
    }

    fn check(&self, commit: &Transaction) -> Result<(), StoreError> {
        if commit.items() > MAX_TRANSACTION_ITEMS {
            return Err(StoreError::Bug(format!(
                "a commit of {} items exceeds the limit of {MAX_TRANSACTION_ITEMS}",
                commit.items()
            )));
        }
        for append in &commit.appends {
            let length = self.streams.get(&append.stream).map_or(0, Vec::len) as Version;
            let taken = append
                .events
                .iter()
                .any(|e| self.taken(&append.stream, e.seq));
            // A stream has no holes: an append starts within it or right after its end.
            if taken || append.expected > length {
                let found = self
                    .streams
                    .get(&append.stream)
                    .and_then(|slots| slots.get(append.expected as usize))
                    .filter(|slot| !slot.deleted)
                    .map(|slot| Box::new(slot.event.clone()));
                return Err(StoreError::Conflict(Conflict::Stream {
                    stream: append.stream.clone(),
                    found,
                }));
            }
            let numbered = append
                .events
                .iter()
                .zip(append.expected + 1..)
                .all(|(event, seq)| event.seq == seq && event.stream == append.stream);
            if !numbered {
                return Err(StoreError::Bug(format!(
                    "events for {} are not numbered from {}",
                    append.stream,
                    append.expected + 1
                )));
            }
        }
        for write in &commit.records {
            let current = self.records.get(&write.key).map(|stored| stored.version);
            if current != write.expected {
                return Err(StoreError::Conflict(Conflict::Record {
                    key: Box::new(write.key.clone()),
                }));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Streams for MemoryStore {
    async fn read_stream(&self, sku: &StreamId, after: Version) -> Result<Vec<Event>, StoreError> {
        let tables = self.tables();
        let slots = tables.streams.get(sku).map_or(&[][..], Vec::as_slice);
        let from = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(slots.len());
        Ok(slots[from..]
            .iter()
            .filter(|slot| !slot.deleted)
            .map(|slot| slot.event.clone())
            .collect())
    }

    async fn read_page(
        &self,
        sku: &StreamId,
        after: Version,
        limit: usize,
    ) -> Result<StreamPage, StoreError> {
        let tables = self.tables();
        let slots = tables.streams.get(sku).map_or(&[][..], Vec::as_slice);
        let from = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(slots.len());
        let next = slots[from..]
            .iter()
            .filter(|slot| !slot.deleted)
            .take(limit.saturating_add(1))
            .map(|slot| slot.event.clone())
            .collect();
        Ok(StreamPage::first(limit, next))
    }

    async fn read_event(&self, sku: &StreamId, seq: Version) -> Result<Option<Event>, StoreError> {
        let tables = self.tables();
        let index = usize::try_from(seq).ok().and_then(|seq| seq.checked_sub(1));
        Ok(index
            .and_then(|i| tables.streams.get(sku)?.get(i))
            .filter(|slot| !slot.deleted)
            .map(|slot| slot.event.clone()))
    }
}

#[async_trait]
impl Records for MemoryStore {
    async fn read_records(&self, keys: &[RecordKey]) -> Result<Vec<Option<Versioned>>, StoreError> {
        let tables = self.tables();
        Ok(keys
            .iter()
            .map(|key| tables.records.get(key).cloned())
            .collect())
    }
}

#[async_trait]
impl Transactions for MemoryStore {
    async fn write(&self, transaction: Transaction) -> Result<(), StoreError> {
        let mut tables = self.tables();
        tables.check(&transaction)?;
        for append in transaction.appends {
            tables
                .feed
                .extend(append.events.iter().cloned().map(FeedChange::Appended));
            let slots = tables.streams.entry(append.stream).or_default();
            for event in append.events {
                let slot = Slot {
                    event,
                    delete_at: None,
                    deleted: false,
                };
                // Into a slot the time to live emptied, or at the end.
                match usize::try_from(slot.event.seq - 1) {
                    Ok(index) if index < slots.len() => slots[index] = slot,
                    _ => slots.push(slot),
                }
            }
        }
        for write in transaction.records {
            let version = write.expected.unwrap_or(0) + 1;
            // A parked outcome is on the feed, as the table's stream carries it.
            if let Some(parked) = ParkedEntry::filed(&write.key, version, &write.record) {
                tables.feed.push(FeedChange::Parked(parked));
            }
            tables.records.insert(
                write.key,
                Versioned {
                    version,
                    record: write.record,
                },
            );
        }
        Ok(())
    }
}

#[async_trait]
impl Snapshots for MemoryStore {
    async fn read_snapshots(&self, skus: &[StreamId]) -> Result<Vec<Option<SkuState>>, StoreError> {
        let tables = self.tables();
        Ok(skus
            .iter()
            .map(|sku| tables.snapshots.get(sku).cloned())
            .collect())
    }

    async fn save_snapshot(
        &self,
        sku: &StreamId,
        state: &SkuState,
    ) -> Result<SnapshotSave, StoreError> {
        let mut tables = self.tables();
        let stored = tables.snapshots.entry(sku.clone()).or_default();
        if stored.version >= state.version {
            return Ok(SnapshotSave::Stale);
        }
        *stored = state.clone();
        Ok(SnapshotSave::Saved)
    }
}

#[async_trait]
impl ExpiryIndex for MemoryStore {
    async fn lapsing_holds(
        &self,
        after: Timestamp,
        through: Timestamp,
        limit: usize,
    ) -> Result<Lapsing, StoreError> {
        let tables = self.tables();
        let mut found: Vec<LapsingHold> = tables
            .streams
            .values()
            .flatten()
            .filter(|slot| !slot.deleted)
            .filter_map(|slot| {
                let event = &slot.event;
                let (reservation_id, expires_at) = match &event.change {
                    Change::HoldPlaced {
                        reservation_id,
                        expires_at,
                        ..
                    }
                    | Change::HoldExtended {
                        reservation_id,
                        expires_at,
                        ..
                    } => (reservation_id, *expires_at),
                    _ => return None,
                };
                (after < expires_at && expires_at <= through).then(|| LapsingHold {
                    stream: event.stream.clone(),
                    seq: event.seq,
                    reservation_id: reservation_id.clone(),
                    expires_at,
                })
            })
            .collect();
        // One partition, read oldest first as DynamoDB reads each of its shards.
        found.sort_by(|a, b| (a.expires_at, a).cmp(&(b.expires_at, b)));
        let mut read = Vec::new();
        let mut left = found.into_iter();
        for hold in left.by_ref() {
            read.push(hold);
            if IndexPart::enough(&read, limit) {
                break;
            }
        }
        let more = left.next().is_some();
        Ok(Lapsing::of(vec![IndexPart { holds: read, more }], through))
    }
}

#[async_trait]
impl Retirement for MemoryStore {
    async fn retire_events(
        &self,
        sku: &StreamId,
        seqs: RangeInclusive<Version>,
        delete_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tables = self.tables();
        if let Some(slots) = tables.streams.get_mut(sku) {
            for slot in slots
                .iter_mut()
                .filter(|slot| seqs.contains(&slot.event.seq))
            {
                slot.delete_at = Some(delete_at);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ParkedIndex for MemoryStore {
    async fn parked_commands(&self) -> Result<Vec<ParkedEntry>, StoreError> {
        let tables = self.tables();
        let mut parked: Vec<ParkedEntry> = tables
            .records
            .iter()
            .filter_map(|(key, stored)| ParkedEntry::filed(key, stored.version, &stored.record))
            .collect();
        parked.sort_by(|a, b| {
            (a.parked.parked_at, a.command_id.to_string(), &a.sku).cmp(&(
                b.parked.parked_at,
                b.command_id.to_string(),
                &b.sku,
            ))
        });
        Ok(parked)
    }
}

#[async_trait]
impl CommandHistory for MemoryStore {
    async fn commands_since(
        &self,
        since: Timestamp,
    ) -> Result<Vec<(CommandId, CommandRecord)>, StoreError> {
        let tables = self.tables();
        Ok(tables
            .records
            .iter()
            .filter_map(|(key, stored)| match (key, &stored.record) {
                (RecordKey::Command { command_id }, Record::Command(record))
                    if record.accepted_since(since) =>
                {
                    Some((*command_id, record.clone()))
                }
                _ => None,
            })
            .collect())
    }
}

/// Objects in one process: the embedded archive.
#[derive(Debug, Default)]
pub struct MemoryObjects {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryObjects {
    /// No objects.
    pub fn new() -> Self {
        Self::default()
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Removes an object (tests use it to make a gap in the archive).
    pub fn remove(&self, key: &str) -> bool {
        self.objects().remove(key).is_some()
    }
}

#[async_trait]
impl ObjectStore for MemoryObjects {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), ObjectStoreError> {
        self.objects().insert(key.to_owned(), bytes);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ObjectStoreError> {
        Ok(self.objects().get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectStoreError> {
        Ok(self
            .objects()
            .range(prefix.to_owned()..)
            .map(|(key, _)| key)
            .take_while(|key| key.starts_with(prefix))
            .cloned()
            .collect())
    }

    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, ObjectStoreError> {
        let mut folders: Vec<String> = self
            .list(prefix)
            .await?
            .into_iter()
            .filter_map(|key| {
                let rest = &key[prefix.len()..];
                rest.find('/')
                    .map(|end| format!("{prefix}{}", &rest[..=end]))
            })
            .collect();
        folders.dedup();
        Ok(folders)
    }
}

/// Notices in one process, in the order published (tests read them).
#[derive(Debug, Default)]
pub struct MemoryNoticeBoard {
    published: Mutex<Vec<Noticed>>,
}

impl MemoryNoticeBoard {
    /// Nothing published.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every notice published so far, repeats included.
    pub fn published(&self) -> Vec<Noticed> {
        self.published
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl NoticeBoard for MemoryNoticeBoard {
    async fn publish(&self, notices: &[Noticed]) -> Result<(), PublishError> {
        self.published
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(notices);
        Ok(())
    }
}

/// A FIFO command queue in one process. Delivery is at-least-once like Kinesis: a batch the
/// processor could not finish is put back at the front.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    pending: Mutex<VecDeque<Command>>,
    arrived: Notify,
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, VecDeque<Command>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Up to `max` commands in arrival order, waiting until at least one is there.
    pub async fn receive(&self, max: usize) -> Vec<Command> {
        loop {
            let notified = self.arrived.notified();
            let batch = self.try_receive(max);
            if !batch.is_empty() {
                return batch;
            }
            notified.await;
        }
    }

    /// Up to `max` commands in arrival order, without waiting.
    pub fn try_receive(&self, max: usize) -> Vec<Command> {
        let mut pending = self.pending();
        let take = max.min(pending.len());
        pending.drain(..take).collect()
    }

    /// Puts commands back at the front, in their order, for redelivery.
    pub fn redeliver(&self, commands: Vec<Command>) {
        let mut pending = self.pending();
        for command in commands.into_iter().rev() {
            pending.push_front(command);
        }
        drop(pending);
        self.arrived.notify_one();
    }

    /// Commands waiting.
    pub fn len(&self) -> usize {
        self.pending().len()
    }

    /// Whether no command is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl CommandQueue for MemoryQueue {
    async fn send(&self, commands: &[Command]) -> Result<(), QueueError> {
        self.pending().extend(commands.iter().cloned());
        self.arrived.notify_one();
        Ok(())
    }
}
