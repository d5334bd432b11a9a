//! Use case: read stock levels, one SKU current or many from the product-page view.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::heads::Heads;
use super::views::{ItemView, ItemsView};
use crate::domain::{Bucket, LocationId, Sku, SkuState, StreamId};
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
    /// An item kept at several locations is the sum of each location's figures
    /// ([`ItemView::of_locations`]), the locations listed; the default location's bucket 0
    /// names the others ([`crate::domain::Change::StockedAt`]).
    pub(crate) async fn item(&self, sku: &Sku) -> Result<ItemView, AppError> {
        let zero = StreamId::of(sku);
        let state = self.heads.load(&zero).await?;
        if !state.exists() {
            return Err(AppError::UnknownSku(sku.clone()));
        }
        let others = state.locations.clone();
        let default = self.at(&zero, state).await?;
        if others.is_empty() {
            return Ok(default);
        }
        let mut locations = vec![(LocationId::default(), default)];
        for home in homes_of(&zero, &others) {
            let state = self.heads.load(&home).await?;
            locations.push((home.location().clone(), self.at(&home, state).await?));
        }
        Ok(ItemView::of_locations(sku.clone(), locations))
    }

    /// The item at the location of `zero` (its bucket 0 there, read as `state`), its buckets
    /// listed.
    async fn at(&self, zero: &StreamId, state: Arc<SkuState>) -> Result<ItemView, AppError> {
        let sku = zero.item().clone();
        if state.layout.is_single() {
            let now = state.now(self.clock.now());
            return Ok(ItemView::of_buckets(
                sku,
                &[(Bucket::HOME, state.as_ref())],
                now,
            ));
        }
        let streams: Vec<StreamId> = state.layout.streams(zero).collect();
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
                return Ok(ItemView::of_buckets(sku, &buckets, now));
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
        // The bucket 0 of each other location the items are kept at, in one more batch read.
        let homes: Vec<StreamId> = zeros
            .iter()
            .zip(&states)
            .flat_map(|(zero, state)| homes_of(zero, &state.locations))
            .collect();
        let mut home_states = self.read_all(&homes).await?.into_iter();
        // Items split into buckets, at any location: their other buckets' snapshots, in one
        // more batch read.
        let mut places: Vec<Vec<(StreamId, SkuState)>> = Vec::new();
        for (zero, state) in zeros.into_iter().zip(states) {
            let others: Vec<(StreamId, SkuState)> = homes_of(&zero, &state.locations)
                .map(|home| (home, home_states.next().unwrap_or_default()))
                .collect();
            places.push(std::iter::once((zero, state)).chain(others).collect());
        }
        let others: Vec<StreamId> = places
            .iter()
            .flatten()
            .flat_map(|(zero, state)| state.layout.streams(zero).skip(1))
            .collect();
        let mut other_states = self.read_all(&others).await?.into_iter();
        let clock = self.clock.now();
        let mut view = ItemsView {
            items: Vec::new(),
            missing: Vec::new(),
        };
        for (sku, at) in distinct.into_iter().zip(places) {
            if !at[0].1.exists() {
                view.missing.push(sku.clone());
                continue;
            }
            let several = at.len() > 1;
            let mut locations = Vec::new();
            for (zero, state) in at {
                let widest = state.layout.widest.get();
                let mut buckets = vec![state];
                buckets.extend(other_states.by_ref().take(usize::from(widest) - 1));
                let summed = SkuState::summed(&buckets);
                let figures = ItemView::new(sku.clone(), &summed, summed.now(clock));
                locations.push((zero.location().clone(), figures));
            }
            view.items.push(if several {
                ItemView::of_locations(sku.clone(), locations)
            } else {
                locations.swap_remove(0).1
            });
        }
        Ok(view)
    }

    /// The snapshots of `streams` (none: no read), each the empty state when it has none.
    async fn read_all(&self, streams: &[StreamId]) -> Result<Vec<SkuState>, AppError> {
        if streams.is_empty() {
            return Ok(Vec::new());
        }
        let read = self.snapshots.read_snapshots(streams).await?;
        Ok(read.into_iter().map(Option::unwrap_or_default).collect())
    }
}

/// Bucket 0 of the item of `zero` at each of `locations`.
fn homes_of<'a>(
    zero: &'a StreamId,
    locations: &'a BTreeSet<LocationId>,
) -> impl Iterator<Item = StreamId> + 'a {
    locations
        .iter()
        .map(move |location| StreamId::at(zero.item(), location))
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
