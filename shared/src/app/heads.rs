//! What this process knows of each SKU's head, and the turns its requests take on it: the
//! [`StateCache`] (read the tail after the known state, fold it) and the per-SKU [`SkuLocks`].
//! Every use case that decides on a SKU's state reads it here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::cache::{Known, StateCache};
use super::locks::{SkuLocks, Turns};
use crate::domain::{Bucket, BucketCount, Event, Sku, SkuState, StreamId};
use crate::error::AppError;
use crate::ports::{Snapshots, StoreError, Streams};

pub(crate) struct Heads {
    streams: Arc<dyn Streams>,
    snapshots: Arc<dyn Snapshots>,
    cache: StateCache,
    turns: SkuLocks,
    /// How long a request waits for its turns before it answers `Contention`.
    turn_wait: Duration,
    /// The bucket this process holds in first, per bucketed item.
    homes: Mutex<HashMap<StreamId, Bucket>>,
}

impl Heads {
    /// Heads read from `streams` (after `snapshots`), trusted for `trust` after they were last
    /// current; a request waits `turn_wait` at most for its turns.
    pub(crate) fn new(
        streams: Arc<dyn Streams>,
        snapshots: Arc<dyn Snapshots>,
        trust: Duration,
        turn_wait: Duration,
    ) -> Self {
        Self {
            streams,
            snapshots,
            cache: StateCache::trusting_for(trust),
            turns: SkuLocks::default(),
            turn_wait,
            homes: Mutex::default(),
        }
    }

    /// The current state of `sku` (read from the store: the tail after the known state).
    pub(crate) async fn load(&self, sku: &StreamId) -> Result<Arc<SkuState>, StoreError> {
        self.cache
            .load(self.streams.as_ref(), self.snapshots.as_ref(), sku)
            .await
    }

    /// The current states of `skus`, read concurrently.
    pub(crate) async fn load_all<'a>(
        &self,
        skus: impl Iterator<Item = &'a StreamId>,
    ) -> Result<Vec<Arc<SkuState>>, StoreError> {
        let skus: Vec<StreamId> = skus.cloned().collect();
        self.cache
            .load_all(self.streams.as_ref(), self.snapshots.as_ref(), &skus)
            .await
    }

    /// Reads `streams` again after `first` (their states read one by one, so not one
    /// instant's): the second read, and whether no stream moved in between. When none did,
    /// every state of `first` was current at the instant the second read began, so together
    /// they are one instant's: a unit in transfer (a transfer moves both its streams) is counted
    /// once.
    pub(crate) async fn read_again(
        &self,
        streams: &[StreamId],
        first: &[Arc<SkuState>],
    ) -> Result<(Vec<Arc<SkuState>>, bool), StoreError> {
        let again = self.load_all(streams.iter()).await?;
        let unmoved = first
            .iter()
            .zip(&again)
            .all(|(first, second)| first.version == second.version);
        Ok((again, unmoved))
    }

    /// The last state of `sku` this process knows, without reading the store.
    pub(crate) fn known(&self, sku: &StreamId) -> Known {
        self.cache.get(sku)
    }

    /// `state` with `events` folded in, which this process appended with a write issued at
    /// `issued`.
    pub(crate) fn advance(&self, state: &SkuState, events: &[Event], issued: Instant) -> SkuState {
        self.cache.advance(state, events, issued)
    }

    /// The bucket of `item` this process holds in first: bucket 0 while the item is one
    /// bucket (or drained); else one of the selling buckets, 1 to `active` - 1, drawn at random
    /// the first time, so that the processes serving an item spread over its buckets, each
    /// usually deciding on a head it knows. Bucket 0 sells only once the item is drained: until
    /// then it keeps a reserve and the layout, and stays quiet.
    pub(crate) fn home(&self, item: &StreamId, active: BucketCount) -> Bucket {
        if active == BucketCount::ONE {
            return Bucket::HOME;
        }
        let mut homes = self.homes.lock().unwrap_or_else(PoisonError::into_inner);
        match homes.get(item) {
            Some(home) if *home != Bucket::HOME && home.number() < active.get() => *home,
            _ => {
                let home = selling_bucket(active, None);
                homes.insert(item.clone(), home);
                home
            }
        }
    }

    /// Moves this process's home in `item` off `from`, to another selling bucket of the
    /// `active` ones, drawn at random.
    pub(crate) fn move_home(&self, item: &StreamId, from: Bucket, active: BucketCount) {
        if active.get() > 2 {
            let mut homes = self.homes.lock().unwrap_or_else(PoisonError::into_inner);
            homes.insert(item.clone(), selling_bucket(active, Some(from)));
        }
    }

    /// Waits for this request's turn on every SKU; `Contention` if that takes longer than the
    /// turn wait.
    pub(crate) async fn take_turns<'a>(
        &self,
        skus: impl Iterator<Item = &'a Sku>,
    ) -> Result<Turns, AppError> {
        tokio::time::timeout(self.turn_wait, self.turns.take(skus))
            .await
            .map_err(|_| {
                tracing::warn!(waited = ?self.turn_wait, "gave up waiting for the turn");
                AppError::Contention
            })
    }

    /// Waits for the turn on `sku`, however long (the processor's: it must apply, not answer).
    pub(crate) async fn wait_turn(&self, sku: &Sku) -> Turns {
        self.turns.take(std::iter::once(sku)).await
    }
}

/// A selling bucket (1 to `active` - 1) drawn at random, other than `not` when there is
/// another.
fn selling_bucket(active: BucketCount, not: Option<Bucket>) -> Bucket {
    let last = active.get().saturating_sub(1).max(1);
    let not = not.filter(|bucket| (1..=last).contains(&bucket.number()) && last > 1);
    let mut drawn = 1 + fastrand::u16(..last - u16::from(not.is_some()));
    if not.is_some_and(|not| drawn >= not.number()) {
        drawn += 1;
    }
    Bucket::new(drawn).unwrap_or(Bucket::HOME)
}
