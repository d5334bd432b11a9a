//! Test doubles shared by the crates' tests: a store wrapper that fails the way DynamoDB does
//! under throttling, so retry paths are exercised with any adapter underneath, that can hide
//! a SKU's events, as when a dependent command overtakes what it depends on, and that can make
//! reading a SKU panic, as a bug in deciding its commands would.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crate::domain::{Event, SkuState, StreamId, Timestamp, Version};
use crate::ports::{
    EventStore, ExpiryIndex, Lapsing, ParkedIndex, RecordKey, Records, Retirement, SnapshotSave,
    Snapshots, StoreError, Streams, Transaction, Transactions, Versioned,
};

/// Wraps a store; commits that append to a SKU in `failing` fail as unavailable (nothing
/// written), as DynamoDB does when it throttles a hot partition; the events of a SKU in `hidden`
/// cannot be read one by one (a reservation's anchor not readable yet); reading the stream of a
/// SKU in `panicking` panics, and of one in `stalled` never answers (a call that hangs).
#[derive(Debug)]
pub struct FlakyStore<S> {
    inner: Arc<S>,
    failing: Mutex<HashSet<StreamId>>,
    hidden: Mutex<HashSet<StreamId>>,
    panicking: Mutex<HashSet<StreamId>>,
    stalled: Mutex<HashSet<StreamId>>,
}

impl<S> FlakyStore<S> {
    /// Wraps `inner`; nothing fails until [`FlakyStore::fail`] says so.
    pub fn new(inner: Arc<S>) -> Self {
        Self {
            inner,
            failing: Mutex::new(HashSet::new()),
            hidden: Mutex::new(HashSet::new()),
            panicking: Mutex::new(HashSet::new()),
            stalled: Mutex::new(HashSet::new()),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Makes commits appending to `sku` fail from now on.
    pub fn fail(&self, sku: &StreamId) {
        self.failing().insert(sku.clone());
    }

    /// Makes the events of `sku` unreadable one by one (`read_event` finds none) from now on.
    pub fn hide_events(&self, sku: &StreamId) {
        self.hidden().insert(sku.clone());
    }

    /// Makes reading the stream of `sku` panic from now on.
    pub fn panic_on(&self, sku: &StreamId) {
        lock(&self.panicking).insert(sku.clone());
    }

    /// Makes reading the stream of `sku` hang from now on (until healed, for new reads).
    pub fn stall(&self, sku: &StreamId) {
        lock(&self.stalled).insert(sku.clone());
    }

    /// Lets every commit through and every event be read again.
    pub fn heal(&self) {
        self.failing().clear();
        self.hidden().clear();
        lock(&self.panicking).clear();
        lock(&self.stalled).clear();
    }

    fn failing(&self) -> std::sync::MutexGuard<'_, HashSet<StreamId>> {
        self.failing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn hidden(&self) -> std::sync::MutexGuard<'_, HashSet<StreamId>> {
        self.hidden.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn lock(set: &Mutex<HashSet<StreamId>>) -> std::sync::MutexGuard<'_, HashSet<StreamId>> {
    set.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl<S: EventStore> Streams for FlakyStore<S> {
    async fn read_stream(&self, sku: &StreamId, after: Version) -> Result<Vec<Event>, StoreError> {
        if lock(&self.panicking).contains(sku) {
            panic!("reading {sku} panicked (injected)");
        }
        if lock(&self.stalled).contains(sku) {
            std::future::pending::<()>().await;
        }
        self.inner.read_stream(sku, after).await
    }

    async fn read_event(&self, sku: &StreamId, seq: Version) -> Result<Option<Event>, StoreError> {
        if self.hidden().contains(sku) {
            return Ok(None);
        }
        self.inner.read_event(sku, seq).await
    }
}

#[async_trait]
impl<S: EventStore> Records for FlakyStore<S> {
    async fn read_records(&self, keys: &[RecordKey]) -> Result<Vec<Option<Versioned>>, StoreError> {
        self.inner.read_records(keys).await
    }
}

#[async_trait]
impl<S: EventStore> Transactions for FlakyStore<S> {
    async fn write(&self, transaction: Transaction) -> Result<(), StoreError> {
        let failing = self.failing().clone();
        if transaction
            .appends
            .iter()
            .any(|a| failing.contains(&a.stream))
        {
            return Err(StoreError::Unavailable("throttled (injected)".into()));
        }
        self.inner.write(transaction).await
    }
}

#[async_trait]
impl<S: EventStore> Snapshots for FlakyStore<S> {
    async fn read_snapshots(&self, skus: &[StreamId]) -> Result<Vec<Option<SkuState>>, StoreError> {
        self.inner.read_snapshots(skus).await
    }

    async fn save_snapshot(
        &self,
        sku: &StreamId,
        state: &SkuState,
    ) -> Result<SnapshotSave, StoreError> {
        if self.failing().contains(sku) {
            return Err(StoreError::Unavailable("throttled (injected)".into()));
        }
        self.inner.save_snapshot(sku, state).await
    }
}

#[async_trait]
impl<S: EventStore> ExpiryIndex for FlakyStore<S> {
    async fn lapsing_holds(
        &self,
        after: Timestamp,
        through: Timestamp,
        limit: usize,
    ) -> Result<Lapsing, StoreError> {
        self.inner.lapsing_holds(after, through, limit).await
    }
}

#[async_trait]
impl<S: EventStore> Retirement for FlakyStore<S> {
    async fn retire_events(
        &self,
        sku: &StreamId,
        seqs: std::ops::RangeInclusive<Version>,
        delete_at: Timestamp,
    ) -> Result<(), StoreError> {
        if self.failing().contains(sku) {
            return Err(StoreError::Unavailable("throttled (injected)".into()));
        }
        self.inner.retire_events(sku, seqs, delete_at).await
    }
}

#[async_trait]
impl<S: EventStore> ParkedIndex for FlakyStore<S> {
    async fn parked_commands(&self) -> Result<Vec<crate::ports::ParkedEntry>, StoreError> {
        self.inner.parked_commands().await
    }
}

#[async_trait]
impl<S: EventStore> crate::ports::CommandHistory for FlakyStore<S> {
    async fn commands_since(
        &self,
        since: crate::domain::Timestamp,
    ) -> Result<Vec<(crate::domain::CommandId, crate::ports::CommandRecord)>, StoreError> {
        self.inner.commands_since(since).await
    }
}
