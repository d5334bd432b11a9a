//! What this process knows of each SKU's head, and the turns its requests take on it: the
//! [`StateCache`] (read the tail after the known state, fold it) and the per-SKU [`SkuLocks`].
//! Every use case that decides on a SKU's state reads it here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::try_join_all;
use tokio::time::Instant;

use super::cache::{Known, StateCache};
use super::locks::{SkuLocks, Turns};
use crate::domain::{Bucket, BucketCount, Event, Sku, SkuState};
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
    homes: Mutex<HashMap<Sku, Bucket>>,
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
    pub(crate) async fn load(&self, sku: &Sku) -> Result<Arc<SkuState>, StoreError> {
        self.cache
            .load(self.streams.as_ref(), self.snapshots.as_ref(), sku)
            .await
    }

    /// The current states of `skus`, read concurrently.
    pub(crate) async fn load_all<'a>(
        &self,
        skus: impl Iterator<Item = &'a Sku>,
    ) -> Result<Vec<Arc<SkuState>>, StoreError> {
        try_join_all(skus.map(|sku| self.load(sku))).await
    }

    /// The last state of `sku` this process knows, without reading the store.
    pub(crate) fn known(&self, sku: &Sku) -> Known {
        self.cache.get(sku)
    }

    /// `state` with `events` folded in, which this process appended with a write issued at
    /// `issued`.
    pub(crate) fn advance(&self, state: &SkuState, events: &[Event], issued: Instant) -> SkuState {
        self.cache.advance(state, events, issued)
    }

    /// The bucket of `item` this process holds in first: one drawn at random among the
    /// `active` ones the first time, so that the processes serving an item spread over its
    /// buckets, each usually deciding on a head it knows.
    pub(crate) fn home(&self, item: &Sku, active: BucketCount) -> Bucket {
        let mut homes = self.homes.lock().unwrap_or_else(PoisonError::into_inner);
        match homes.get(item) {
            Some(home) if home.number() < active.get() => *home,
            _ => {
                let home = Bucket::new(fastrand::u16(..active.get())).unwrap_or(Bucket::HOME);
                homes.insert(item.clone(), home);
                home
            }
        }
    }

    /// Makes `bucket` this process's home in `item`.
    pub(crate) fn rehome(&self, item: &Sku, bucket: Bucket) {
        let mut homes = self.homes.lock().unwrap_or_else(PoisonError::into_inner);
        homes.insert(item.clone(), bucket);
    }

    /// Waits for this request's turn on every SKU; `Contention` if that takes longer than the
    /// turn wait.
    pub(crate) async fn take_turns<'a>(
        &self,
        skus: impl Iterator<Item = &'a Sku>,
    ) -> Result<Turns, AppError> {
        tokio::time::timeout(self.turn_wait, self.turns.take(skus))
            .await
            .map_err(|_| AppError::Contention)
    }

    /// Waits for the turn on `sku`, however long (the processor's: it must apply, not answer).
    pub(crate) async fn wait_turn(&self, sku: &Sku) -> Turns {
        self.turns.take(std::iter::once(sku)).await
    }
}
