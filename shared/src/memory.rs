//! In-memory adapters: the embedded backend of `inventory dev` and of the tests. They keep the
//! same contract as the AWS adapters (conditional appends, all-or-nothing commits, conflicts
//! reported, not overwritten), proven by the shared conformance suite.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::domain::{Command, Event, Sku, Version};
use crate::ports::{
    CommandQueue, Commit, Conflict, EventStore, QueueError, RecordKey, StoreError, Versioned,
    MAX_COMMIT_ITEMS,
};

/// Event streams and records in one process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Tables>,
}

#[derive(Debug, Default)]
struct Tables {
    streams: HashMap<Sku, Vec<Event>>,
    records: HashMap<RecordKey, Versioned>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every stream's SKU (for checks and tools; the service never lists).
    pub fn skus(&self) -> Vec<Sku> {
        let mut skus: Vec<Sku> = self.tables().streams.keys().cloned().collect();
        skus.sort();
        skus
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
    fn head(&self, sku: &Sku) -> Version {
        self.streams
            .get(sku)
            .map_or(0, |events| events.len() as Version)
    }

    fn check(&self, commit: &Commit) -> Result<(), StoreError> {
        if commit.items() > MAX_COMMIT_ITEMS {
            return Err(StoreError::Unavailable(format!(
                "a commit of {} items exceeds the limit of {MAX_COMMIT_ITEMS}",
                commit.items()
            )));
        }
        for append in &commit.appends {
            if self.head(&append.sku) != append.expected {
                let found = self
                    .streams
                    .get(&append.sku)
                    .and_then(|events| events.get(append.expected as usize))
                    .cloned()
                    .map(Box::new);
                return Err(StoreError::Conflict(Conflict::Stream {
                    sku: append.sku.clone(),
                    found,
                }));
            }
            let numbered = append
                .events
                .iter()
                .zip(append.expected + 1..)
                .all(|(event, seq)| event.seq == seq && event.sku == append.sku);
            if !numbered {
                return Err(StoreError::Unavailable(format!(
                    "events for {} are not numbered from {}",
                    append.sku,
                    append.expected + 1
                )));
            }
        }
        for write in &commit.records {
            let current = self.records.get(&write.key).map(|stored| stored.version);
            if current != write.expected {
                return Err(StoreError::Conflict(Conflict::Record {
                    key: write.key.clone(),
                }));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn read_stream(&self, sku: &Sku, after: Version) -> Result<Vec<Event>, StoreError> {
        let tables = self.tables();
        let events = tables.streams.get(sku).map_or(&[][..], Vec::as_slice);
        let from = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(events.len());
        Ok(events[from..].to_vec())
    }

    async fn read_event(&self, sku: &Sku, seq: Version) -> Result<Option<Event>, StoreError> {
        let tables = self.tables();
        let index = usize::try_from(seq).ok().and_then(|seq| seq.checked_sub(1));
        Ok(index.and_then(|i| tables.streams.get(sku)?.get(i).cloned()))
    }

    async fn read_records(&self, keys: &[RecordKey]) -> Result<Vec<Option<Versioned>>, StoreError> {
        let tables = self.tables();
        Ok(keys
            .iter()
            .map(|key| tables.records.get(key).cloned())
            .collect())
    }

    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        let mut tables = self.tables();
        tables.check(&commit)?;
        for append in commit.appends {
            tables
                .streams
                .entry(append.sku)
                .or_default()
                .extend(append.events);
        }
        for write in commit.records {
            let version = write.expected.unwrap_or(0) + 1;
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
