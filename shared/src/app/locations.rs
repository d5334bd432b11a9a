//! Use case: the shop's registry of locations. A change is one conditional write of the
//! registry's record over the version read (a lost race reads again and applies the change
//! again), answered at once; the list is read strongly consistent.
//!
//! What reservations allocate over, and what commands naming a location are checked against,
//! is the registry as this process last read it, for at most [`REGISTRY_TRUST`]: a location
//! registered, deactivated or given another priority is allocated to by every process within
//! that time (a location named that this process does not know is read again at once).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::attempt::{until_decided, write, Attempt, Written};
use crate::config::Config;
use crate::domain::{Location, LocationId, Locations};
use crate::error::AppError;
use crate::ports::{Record, RecordKey, RecordWrite, Records, Transaction, Transactions};

/// The registry as read, with the version its record had (`None`: never written).
#[derive(Debug, Clone, Default)]
struct Read {
    version: Option<u64>,
    locations: Arc<Locations>,
}

/// How long a process decides on the registry it read before reading it again.
pub(crate) const REGISTRY_TRUST: Duration = Duration::from_secs(10);

pub(crate) struct LocationBook {
    pub(crate) records: Arc<dyn Records>,
    pub(crate) transactions: Arc<dyn Transactions>,
    pub(crate) config: Config,
    /// The registry as last read (every location, the default one included, by id), and when.
    pub(crate) known: Mutex<Option<(Instant, Arc<Vec<Location>>)>>,
}

impl LocationBook {
    /// Every location of the shop, the default one included, by id, as this process knows
    /// the registry: read again when older than [`REGISTRY_TRUST`], listed once per read (not
    /// per request).
    pub(crate) async fn known(&self) -> Result<Arc<Vec<Location>>, AppError> {
        let known = self.lock().clone();
        if let Some((read_at, all)) = known {
            if read_at.elapsed() < REGISTRY_TRUST {
                return Ok(all);
            }
        }
        Ok(Arc::new(self.read().await?.locations.all()))
    }

    /// The location `id` as this process knows the registry (read again if it knows no such
    /// location); `UnknownLocation` if the shop has none by that id.
    pub(crate) async fn known_location(&self, id: &LocationId) -> Result<Location, AppError> {
        if let Some(location) = self.known().await?.iter().find(|l| &l.id == id) {
            return Ok(location.clone());
        }
        self.location(id).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Arc<Vec<Location>>)>> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every location of the shop, the default one included, by id, read now.
    pub(crate) async fn list(&self) -> Result<Vec<Location>, AppError> {
        Ok(self.read().await?.locations.all())
    }

    /// The location `id`, read now; `UnknownLocation` if the shop has none by that id.
    pub(crate) async fn location(&self, id: &LocationId) -> Result<Location, AppError> {
        self.read()
            .await?
            .locations
            .get(id)
            .ok_or_else(|| AppError::UnknownLocation(id.clone()))
    }

    /// Registers `location`, or replaces the one with its id; answers it as stored.
    pub(crate) async fn put(&self, location: Location) -> Result<Location, AppError> {
        let mut rereads = 0;
        until_decided(&self.config, &mut rereads, |_| {
            let location = location.clone();
            async move {
                let read = self.read().await?;
                let mut locations = Locations::clone(&read.locations);
                if !locations.put(location.clone())? {
                    return Ok(Attempt::Done(location));
                }
                let transaction = Transaction::records(vec![RecordWrite {
                    key: RecordKey::Locations,
                    expected: read.version,
                    record: Record::Locations(locations.clone()),
                }]);
                Ok(match write(self.transactions.as_ref(), transaction).await? {
                    Written::Done => {
                        *self.lock() = Some((Instant::now(), Arc::new(locations.all())));
                        tracing::info!(location = %location.id, active = location.active, "location registered");
                        Attempt::Done(location)
                    }
                    Written::Lost(_) => Attempt::Reread,
                })
            }
        })
        .await
    }

    /// The registry as stored now (and as this process now knows it).
    async fn read(&self) -> Result<Read, AppError> {
        let read_at = Instant::now();
        let stored = self
            .records
            .read_records(&[RecordKey::Locations])
            .await?
            .pop()
            .flatten();
        let read = match stored {
            Some(stored) => match stored.record {
                Record::Locations(locations) => Read {
                    version: Some(stored.version),
                    locations: Arc::new(locations),
                },
                other => {
                    return Err(AppError::Internal(format!(
                        "the registry of locations holds {other:?}"
                    )))
                }
            },
            None => Read::default(),
        };
        *self.lock() = Some((read_at, Arc::new(read.locations.all())));
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::super::given::Given;
    use crate::domain::LocationKind;

    use super::*;

    fn store(id: &str, priority: i64) -> Location {
        let id = LocationId::parse(id).unwrap();
        Location::new(
            id,
            "Store",
            LocationKind::Store,
            false,
            true,
            priority,
            true,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_location_put_is_listed_by_every_process_and_the_default_is_always_there() {
        let given = Given::new();
        assert_eq!(
            given.inventory.locations().await.unwrap(),
            vec![Location::default_location()]
        );
        let put = given
            .inventory
            .put_location(store("store-5", 2))
            .await
            .unwrap();
        assert_eq!(put, store("store-5", 2));
        let other = given.another_process();
        let listed = other.locations().await.unwrap();
        let ids: Vec<&str> = listed.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["default", "store-5"]);
        // Two processes changing it in turn: each change is made over the other's.
        other.put_location(store("store-6", 1)).await.unwrap();
        given
            .inventory
            .put_location(store("store-5", 9))
            .await
            .unwrap();
        let listed = other.locations().await.unwrap();
        let ids: Vec<(&str, i32)> = listed.iter().map(|l| (l.id.as_str(), l.priority)).collect();
        assert_eq!(ids, [("default", 0), ("store-5", 9), ("store-6", 1)]);
    }
}
