//! Use cases, written once against the ports and shared by every function: reserve, read,
//! extend, accept commands, apply queued commands. Handlers translate to and from these; the
//! decisions themselves are in [`crate::domain`].

mod apply;
mod cache;
mod commands;
mod expiry;
mod items;
mod locks;
mod parking;
mod reservations;
mod retry;
mod views;

use std::sync::Arc;

pub use apply::{ApplyReport, Unapplied};
pub use commands::{CommandStatus, MAX_ADJUSTMENT, MAX_NOTE_LEN};
pub use expiry::{SweepReport, TimerReport};
pub use items::MAX_SKUS_PER_READ;
pub use parking::{parked_bytes, RedriveSelection, Redriven};
pub use reservations::{ReserveRequest, MAX_LINES};
pub use views::{format_rfc3339, CommandView, ItemView, ItemsView, LineView, ReservationView};

use crate::config::Config;
use crate::ports::{Clock, CommandQueue, EventStore};
use cache::StateCache;
use locks::SkuLocks;

/// The service: ports plus configuration, built once per process and shared by all requests.
pub struct Inventory {
    store: Arc<dyn EventStore>,
    queue: Arc<dyn CommandQueue>,
    clock: Arc<dyn Clock>,
    config: Config,
    cache: StateCache,
    turns: SkuLocks,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Inventory {
    /// A service over these adapters.
    pub fn new(
        store: Arc<dyn EventStore>,
        queue: Arc<dyn CommandQueue>,
        clock: Arc<dyn Clock>,
        config: Config,
    ) -> Self {
        Self {
            store,
            queue,
            clock,
            cache: StateCache::trusting_for(config.live_retention),
            config,
            turns: SkuLocks::default(),
        }
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }
}
