//! The last known state of each SKU in this process, and when it was last known to be current.
//! A read folds only the events appended since (usually none), so deciding does not get slower
//! as a stream's history grows. A SKU this process has not seen yet starts from its snapshot,
//! so a cold read too folds only the events after it, however long the history.

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt};
use std::sync::{Arc, Mutex, PoisonError};

use std::time::Duration;

use tokio::time::Instant;

use crate::domain::{Event, SkuState, StreamId};
use crate::limits::{MAX_BATCH_READ_KEYS, READ_CONCURRENCY};
use crate::ports::{Snapshots, StoreError, Streams};
use crate::reactions::fold_tail;

/// The stored snapshot of `sku`, if any.
async fn snapshot(store: &dyn Snapshots, sku: &StreamId) -> Result<Option<SkuState>, StoreError> {
    Ok(store
        .read_snapshots(std::slice::from_ref(sku))
        .await?
        .pop()
        .flatten())
}

/// The memory the states remembered may take ([`SkuState::memory_bytes`]) before the cache
/// starts over: it bounds a long-lived process whatever its traffic (a Lambda of 256 MB keeps
/// some 100,000 quiet SKUs, or fewer with many holds each).
const MAX_BYTES: usize = 32 << 20;

#[derive(Debug)]
pub(crate) struct StateCache {
    states: Mutex<States>,
    /// How long a state last known current is trusted: the live retention. Events appended
    /// after that instant cannot have been deleted before it is over (they are retired no
    /// earlier than appended, and deleted a live retention after), so an append at its head + 1
    /// either lands in a free slot or conflicts. Past it, the slots after it may have been
    /// deleted by the table's time to live and look free: the state is read again.
    trust: Duration,
}

/// The states remembered, and what they weigh.
#[derive(Debug, Default)]
struct States {
    known: HashMap<StreamId, Known>,
    bytes: usize,
}

/// A state and the latest instant it was the stream's head: a read or a conditional write
/// issued at or after that instant saw it current.
#[derive(Debug, Clone, Default)]
pub(crate) struct Known {
    pub(crate) state: Arc<SkuState>,
    pub(crate) current_at: Option<Instant>,
}

impl Known {
    /// Whether the state was current at some point after `instant`: a refusal decided on it is
    /// as good as one decided on a fresh read by a request that started at `instant`.
    pub(crate) fn current_since(&self, instant: Instant) -> bool {
        self.current_at.is_some_and(|at| at >= instant)
    }

    /// Whether the state was current less than `trust` ago (see [`StateCache`]'s `trust`).
    fn trusted(&self, trust: Duration) -> bool {
        self.current_at.is_some_and(|at| at.elapsed() < trust)
    }
}

impl StateCache {
    /// An empty cache whose states are trusted for `trust` after they were last current.
    pub(crate) fn trusting_for(trust: Duration) -> Self {
        Self {
            states: Mutex::default(),
            trust,
        }
    }

    /// The current state of `sku`: the cached state (or, for a SKU not cached, its snapshot)
    /// plus the stream's tail, read from the store. If the events right after the cached state
    /// are gone (archived and deleted while this process was away), it starts over from the
    /// snapshot, which covers them.
    pub(crate) async fn load(
        &self,
        streams: &dyn Streams,
        snapshots: &dyn Snapshots,
        sku: &StreamId,
    ) -> Result<Arc<SkuState>, StoreError> {
        self.load_after(streams, snapshots, sku, None).await
    }

    /// The current states of `skus`, as [`StateCache::load`] reads them, [`READ_CONCURRENCY`]
    /// at a time, in the order asked; the snapshots of those not cached are read together, in
    /// one batch read per 100.
    pub(crate) async fn load_all(
        &self,
        streams: &dyn Streams,
        snapshots: &dyn Snapshots,
        skus: &[StreamId],
    ) -> Result<Vec<Arc<SkuState>>, StoreError> {
        let cold: Vec<StreamId> = skus
            .iter()
            .filter(|sku| !self.get(sku).state.exists())
            .cloned()
            .collect();
        let mut bases: HashMap<StreamId, SkuState> = HashMap::new();
        for chunk in cold.chunks(MAX_BATCH_READ_KEYS) {
            let read = snapshots.read_snapshots(chunk).await?;
            bases.extend(
                chunk
                    .iter()
                    .cloned()
                    .zip(read.into_iter().map(Option::unwrap_or_default)),
            );
        }
        // Collected first: a stream over the closure's borrows is not `Send` for every lifetime.
        let loads: Vec<_> = skus
            .iter()
            .map(|sku| {
                let base = bases.remove(sku);
                self.load_after(streams, snapshots, sku, base)
            })
            .collect();
        futures::stream::iter(loads)
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await
    }

    /// [`StateCache::load`] from `base`, the snapshot already read of a SKU not cached.
    async fn load_after(
        &self,
        streams: &dyn Streams,
        snapshots: &dyn Snapshots,
        sku: &StreamId,
        base: Option<SkuState>,
    ) -> Result<Arc<SkuState>, StoreError> {
        let issued = Instant::now();
        let cached = self.get(sku).state;
        let mut base = if cached.exists() {
            cached
        } else if let Some(base) = base {
            Arc::new(base)
        } else {
            Arc::new(snapshot(snapshots, sku).await?.unwrap_or_default())
        };
        let mut tail = streams.read_stream(sku, base.version).await?;
        if tail.first().is_some_and(|e| e.seq != base.version + 1) {
            if let Some(newer) = snapshot(snapshots, sku)
                .await?
                .filter(|s| s.version > base.version)
            {
                base = Arc::new(newer);
                tail = streams.read_stream(sku, base.version).await?;
            }
        }
        let state = if tail.is_empty() {
            base
        } else {
            let mut state = (*base).clone();
            fold_tail(&mut state, sku, &tail)?;
            Arc::new(state)
        };
        self.offer(sku, Arc::clone(&state), issued);
        Ok(state)
    }

    /// `state` with `events` folded in: this process appended them with a conditional write
    /// issued at `issued`, so the result was the head then.
    pub(crate) fn advance(&self, state: &SkuState, events: &[Event], issued: Instant) -> SkuState {
        let mut next = state.clone();
        for event in events {
            next.evolve(event);
        }
        if let Some(event) = events.first() {
            self.offer(&event.stream, Arc::new(next.clone()), issued);
        }
        next
    }

    /// The last state of `sku` this process knows, without reading the store: the warm path.
    /// A decision on it is only committed at its head + 1, so a stale state ends in a conflict,
    /// never in a wrong grant.
    ///
    /// A state not known current within the trusted time is forgotten: the SKU reads as not
    /// cached, so it is read again from its snapshot.
    pub(crate) fn get(&self, sku: &StreamId) -> Known {
        let states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        states
            .known
            .get(sku)
            .filter(|known| known.trusted(self.trust))
            .cloned()
            .unwrap_or_default()
    }

    /// Keeps `state` unless a newer one is already known; a state confirmed again moves its
    /// instant forward.
    fn offer(&self, sku: &StreamId, state: Arc<SkuState>, current_at: Instant) {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let States { known, bytes } = &mut *states;
        let weight = state.memory_bytes();
        let mut kept = known.get(sku).map_or(0, |known| known.state.memory_bytes());
        if bytes.saturating_sub(kept) + weight > MAX_BYTES {
            known.clear();
            (*bytes, kept) = (0, 0);
        }
        let trust = self.trust;
        let known = known.entry(sku.clone()).or_default();
        if !known.trusted(trust)
            || state.version > known.state.version
            || (state.version == known.state.version
                && known.current_at.is_none_or(|at| at < current_at))
        {
            *bytes = bytes.saturating_sub(kept) + weight;
            *known = Known {
                state,
                current_at: Some(current_at),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Sku;

    fn state(version: u64) -> Arc<SkuState> {
        let mut state = SkuState::default();
        state.version = version;
        Arc::new(state)
    }

    #[test]
    fn the_cache_starts_over_before_its_states_weigh_more_than_its_bound() {
        let cache = StateCache::trusting_for(Duration::from_secs(3_600));
        let first = StreamId::of(&Sku::parse("FIRST").unwrap());
        cache.offer(&first, state(1), Instant::now());
        let each = state(1).memory_bytes();
        for n in 0..MAX_BYTES / each - 1 {
            let sku = StreamId::of(&Sku::parse(&format!("S-{n}")).unwrap());
            cache.offer(&sku, state(1), Instant::now());
        }
        assert_eq!(cache.get(&first).state.version, 1, "within the bound");
        // A state offered again over itself weighs the same: nothing is forgotten.
        cache.offer(&first, state(2), Instant::now());
        assert_eq!(cache.get(&first).state.version, 2);
        cache.offer(
            &StreamId::of(&Sku::parse("ONE-MORE").unwrap()),
            state(1),
            Instant::now(),
        );
        assert!(
            !cache.get(&first).state.exists(),
            "over the bound: started over"
        );
        let states = cache.states.lock().unwrap();
        assert_eq!((states.known.len(), states.bytes), (1, each));
    }
}
