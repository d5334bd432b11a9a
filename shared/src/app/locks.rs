//! Per-SKU turns within one process. Concurrent decisions on the same SKU in this process take
//! turns instead of racing each other to the store: with a warm cache each then costs one
//! conditional write, and conflicts are left to writers in other processes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedMutexGuard;

use crate::domain::Sku;

/// Forget idle SKUs past this many (bounds memory in a long-lived process).
const MAX_IDLE_SKUS: usize = 10_000;

#[derive(Debug, Default)]
pub(crate) struct SkuLocks {
    locks: Mutex<HashMap<Sku, Arc<tokio::sync::Mutex<()>>>>,
}

/// The turns held on some SKUs; released when dropped.
pub(crate) struct Turns {
    _guards: Vec<OwnedMutexGuard<()>>,
}

impl SkuLocks {
    /// Waits for the turn on every SKU, taken in sorted order so two carts never deadlock.
    pub(crate) async fn take<'a>(&self, skus: impl Iterator<Item = &'a Sku>) -> Turns {
        let mut skus: Vec<&Sku> = skus.collect();
        skus.sort();
        skus.dedup();
        let mutexes: Vec<_> = {
            let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            if locks.len() > MAX_IDLE_SKUS {
                locks.retain(|_, mutex| Arc::strong_count(mutex) > 1);
            }
            skus.into_iter()
                .map(|sku| Arc::clone(locks.entry(sku.clone()).or_default()))
                .collect()
        };
        let mut guards = Vec::with_capacity(mutexes.len());
        for mutex in mutexes {
            guards.push(mutex.lock_owned().await);
        }
        Turns { _guards: guards }
    }
}
