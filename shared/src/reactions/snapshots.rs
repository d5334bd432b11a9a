//! Snapshots: each SKU's folded state, kept current from the feed so that a cold read folds only
//! the events after it, and served as the read view of `GET /items`.
//!
//! The feed only says which SKUs moved. Events in the batch that follow the stored snapshot
//! without a gap are folded on; a gap (a batch lost or delivered out of order) is filled from
//! the stream itself. The save is conditional on the stored version being lower, so duplicate,
//! redelivered, late or reordered deliveries can only leave a snapshot as it is or move it forward.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::join_all;

use crate::domain::{Event, Sku, SkuState};
use crate::feed::{FeedChange, Reaction};
use crate::ports::{EventStore, SnapshotSave, StoreError};

/// Keeps snapshots (and so the read view) current.
#[derive(Clone)]
pub struct Snapshotter {
    store: Arc<dyn EventStore>,
}

impl std::fmt::Debug for Snapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshotter").finish_non_exhaustive()
    }
}

impl Snapshotter {
    /// A snapshotter over `store`.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self { store }
    }

    /// Brings the snapshot of `sku` up to date with `appended` (events of `sku` from the feed,
    /// in any order, maybe repeated); reads the stream for whatever the feed did not bring.
    async fn refresh(
        &self,
        sku: &Sku,
        snapshot: Option<SkuState>,
        appended: &[&Event],
    ) -> Result<SnapshotSave, StoreError> {
        let mut state = snapshot.unwrap_or_default();
        let mut newer: Vec<&Event> = appended
            .iter()
            .copied()
            .filter(|event| event.seq > state.version)
            .collect();
        if newer.is_empty() {
            return Ok(SnapshotSave::Stale);
        }
        newer.sort_by_key(|event| event.seq);
        newer.dedup_by_key(|event| event.seq);
        let follows = newer
            .iter()
            .zip(state.version + 1..)
            .all(|(event, seq)| event.seq == seq);
        if follows {
            for event in newer {
                state.evolve(event);
            }
        } else {
            let tail = self.store.read_stream(sku, state.version).await?;
            fold_tail(&mut state, sku, &tail)?;
        }
        self.store.save_snapshot(sku, &state).await
    }
}

/// Folds `tail` (the stream after `state.version`) onto `state`, refusing a gap: a state must
/// never be built from part of a history.
pub(crate) fn fold_tail(state: &mut SkuState, sku: &Sku, tail: &[Event]) -> Result<(), StoreError> {
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
    async fn react(&self, changes: &[FeedChange]) -> BTreeSet<Sku> {
        let mut by_sku: BTreeMap<&Sku, Vec<&Event>> = BTreeMap::new();
        for change in changes {
            if let FeedChange::Appended(event) = change {
                by_sku.entry(&event.sku).or_default().push(event);
            }
        }
        if by_sku.is_empty() {
            return BTreeSet::new();
        }
        let skus: Vec<Sku> = by_sku.keys().map(|sku| (*sku).clone()).collect();
        let snapshots = match self.store.read_snapshots(&skus).await {
            Ok(snapshots) => snapshots,
            Err(err) => {
                tracing::warn!(error = %err, skus = skus.len(), "could not read snapshots");
                return skus.into_iter().collect();
            }
        };
        let refreshes = by_sku
            .iter()
            .zip(snapshots)
            .map(|((sku, events), snapshot)| async move {
                (*sku, self.refresh(sku, snapshot, events).await)
            });
        let mut failed = BTreeSet::new();
        let mut saved = 0;
        for (sku, result) in join_all(refreshes).await {
            match result {
                Ok(SnapshotSave::Saved) => saved += 1,
                Ok(SnapshotSave::Stale) => {}
                Err(err) => {
                    tracing::warn!(sku = %sku, error = %err, "could not refresh the snapshot");
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
