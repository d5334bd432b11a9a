//! Reading stock levels.

use std::collections::BTreeSet;

use super::views::{ItemView, ItemsView};
use super::Inventory;
use crate::domain::Sku;
use crate::error::AppError;

/// Most SKUs one read may ask for.
pub const MAX_SKUS_PER_READ: usize = 100;

impl Inventory {
    /// The stock of one SKU, current (its stream's tail is read); `UnknownSku` if nothing was
    /// ever recorded for it.
    pub async fn item(&self, sku: &Sku) -> Result<ItemView, AppError> {
        let state = self.cache.load(self.store.as_ref(), sku).await?;
        if !state.exists() {
            return Err(AppError::UnknownSku(sku.clone()));
        }
        let now = state.now(self.clock.now());
        Ok(ItemView::new(sku.clone(), &state, now))
    }

    /// The read view of up to 100 SKUs, for product pages: their snapshots, read in one round
    /// trip (one BatchGetItem) and eventually consistent. A snapshot lags its stream by the
    /// change feed's delivery (typically under a second); holds that lapse meanwhile stop
    /// counting at once, since availability is computed at read time. SKUs without a snapshot
    /// are listed as missing.
    pub async fn items(&self, skus: &[Sku]) -> Result<ItemsView, AppError> {
        let distinct: Vec<Sku> = skus
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .cloned()
            .collect();
        let states = self.store.read_snapshots(&distinct).await?;
        let states = states.into_iter().map(Option::unwrap_or_default);
        let clock = self.clock.now();
        let mut view = ItemsView {
            items: Vec::new(),
            missing: Vec::new(),
        };
        for (sku, state) in distinct.into_iter().zip(states) {
            if state.exists() {
                view.items
                    .push(ItemView::new(sku.clone(), &state, state.now(clock)));
            } else {
                view.missing.push(sku.clone());
            }
        }
        Ok(view)
    }
}
