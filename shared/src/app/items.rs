//! Use case: read stock levels, one SKU current or many from the product-page view.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::heads::Heads;
use super::views::{ItemView, ItemsView};
use crate::domain::{Bucket, Sku, SkuState, StreamId};
use crate::error::AppError;
use crate::ports::{Clock, Snapshots};

/// Reads of a split item's buckets before its current read gives up (see [`ReadItems::item`]).
const COLLECTS: usize = 5;

pub(crate) struct ReadItems {
    pub(crate) heads: Arc<Heads>,
    pub(crate) snapshots: Arc<dyn Snapshots>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl ReadItems {
    /// The stock of one SKU, current (its stream's tail is read); `UnknownSku` if nothing was
    /// ever recorded for it.
    /// An item split into buckets is shown as one: the sum of its buckets, each read current,
    /// with the buckets themselves listed. Its buckets are read twice, and again until no
    /// bucket moved between two reads (at most [`COLLECTS`] times, else `Contention`): a read
    /// of several streams is not one instant's, and a unit in transfer would otherwise be
    /// counted in both buckets, or in neither.
    pub(crate) async fn item(&self, sku: &Sku) -> Result<ItemView, AppError> {
        let zero = StreamId::of(sku);
        let state = self.heads.load(&zero).await?;
        if !state.exists() {
            return Err(AppError::UnknownSku(sku.clone()));
        }
        if state.layout.is_single() {
            let now = state.now(self.clock.now());
            return Ok(ItemView::of_buckets(
                sku.clone(),
                &[(Bucket::HOME, state.as_ref())],
                now,
            ));
        }
        let streams: Vec<StreamId> = state.layout.streams(&zero).collect();
        // Bucket 0 was just read: the first read takes it as it is.
        let mut read = vec![state];
        read.extend(self.heads.load_all(streams.iter().skip(1)).await?);
        for _ in 1..COLLECTS {
            let (again, unmoved) = self.heads.read_again(&streams, &read).await?;
            if unmoved {
                let buckets: Vec<(Bucket, &SkuState)> = streams
                    .iter()
                    .zip(&again)
                    .map(|(stream, state)| (stream.bucket(), state.as_ref()))
                    .collect();
                let now = buckets
                    .iter()
                    .fold(self.clock.now(), |now, (_, state)| state.now(now));
                return Ok(ItemView::of_buckets(sku.clone(), &buckets, now));
            }
            read = again;
        }
        Err(AppError::Contention)
    }

    /// The read view of up to 100 SKUs, for product pages: their snapshots, read in one round
    /// trip (one BatchGetItem; items split into buckets take one more, for their other
    /// buckets' snapshots, summed) and eventually consistent. A snapshot lags its stream by the
    /// change feed's delivery (typically under a second); holds that lapse meanwhile stop
    /// counting at once, since availability is computed at read time. SKUs without a snapshot
    /// are listed as missing.
    pub(crate) async fn items(&self, skus: &[Sku]) -> Result<ItemsView, AppError> {
        let distinct: Vec<Sku> = skus
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .cloned()
            .collect();
        let zeros: Vec<StreamId> = distinct.iter().map(StreamId::of).collect();
        let states = self.snapshots.read_snapshots(&zeros).await?;
        let states: Vec<SkuState> = states.into_iter().map(Option::unwrap_or_default).collect();
        // Items split into buckets: their other buckets' snapshots, in one more batch read.
        let others: Vec<StreamId> = zeros
            .iter()
            .zip(&states)
            .flat_map(|(zero, state)| state.layout.streams(zero).skip(1))
            .collect();
        let mut other_states = if others.is_empty() {
            Vec::new()
        } else {
            self.snapshots.read_snapshots(&others).await?
        }
        .into_iter()
        .map(Option::unwrap_or_default);
        let clock = self.clock.now();
        let mut view = ItemsView {
            items: Vec::new(),
            missing: Vec::new(),
        };
        for (sku, state) in distinct.into_iter().zip(states) {
            if !state.exists() {
                view.missing.push(sku.clone());
                continue;
            }
            let widest = state.layout.widest.get();
            let mut buckets = vec![state];
            buckets.extend(other_states.by_ref().take(usize::from(widest) - 1));
            let summed = SkuState::summed(&buckets);
            view.items
                .push(ItemView::new(sku.clone(), &summed, summed.now(clock)));
        }
        Ok(view)
    }
}

#[cfg(test)]
mod tests {
    use super::super::given::{sku, Given};
    use crate::error::AppError;

    #[tokio::test]
    async fn a_sku_never_stocked_is_unknown_and_listed_missing_from_the_view() {
        let given = Given::new();
        given.stock("A", 5).await;
        let answer = given.inventory.item(&sku("NEW")).await;
        assert_eq!(answer.unwrap_err(), AppError::UnknownSku(sku("NEW")));

        // The view is the snapshots: none is kept until the feed is delivered.
        let view = given
            .inventory
            .items(&[sku("A"), sku("NEW")])
            .await
            .unwrap();
        assert!(view.missing.contains(&sku("NEW")));
    }
}
