//! The last known state of each SKU in this process. A read folds only the events appended since
//! (usually none), so deciding does not get slower as a stream's history grows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::domain::{Event, Sku, SkuState};
use crate::ports::{EventStore, StoreError};

/// SKUs remembered before the cache starts over (bounds memory in a long-lived process).
const MAX_SKUS: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct StateCache {
    states: Mutex<HashMap<Sku, Arc<SkuState>>>,
}

impl StateCache {
    /// The current state of `sku`: the cached state plus the stream's tail, read from the store.
    pub(crate) async fn load(
        &self,
        store: &dyn EventStore,
        sku: &Sku,
    ) -> Result<Arc<SkuState>, StoreError> {
        let cached = self.get(sku);
        let tail = store.read_stream(sku, cached.version).await?;
        if tail.is_empty() {
            return Ok(cached);
        }
        let mut state = (*cached).clone();
        for event in &tail {
            state.evolve(event);
        }
        let state = Arc::new(state);
        self.offer(sku, Arc::clone(&state));
        Ok(state)
    }

    /// `state` with `events` (just appended by this process) folded in, remembered.
    pub(crate) fn advance(&self, state: &SkuState, events: &[Event]) -> SkuState {
        let mut next = state.clone();
        for event in events {
            next.evolve(event);
        }
        if let Some(event) = events.first() {
            self.offer(&event.sku, Arc::new(next.clone()));
        }
        next
    }

    fn get(&self, sku: &Sku) -> Arc<SkuState> {
        let states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        states.get(sku).cloned().unwrap_or_default()
    }

    /// Keeps `state` unless a newer one is already known.
    fn offer(&self, sku: &Sku, state: Arc<SkuState>) {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        if states.len() >= MAX_SKUS && !states.contains_key(sku) {
            states.clear();
        }
        match states.get(sku) {
            Some(known) if known.version >= state.version => {}
            _ => {
                states.insert(sku.clone(), state);
            }
        }
    }
}
