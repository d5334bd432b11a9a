//! Use case: the shop's registry of locations. A change is one conditional write of the
//! registry's record over the version read (a lost race reads again and applies the change
//! again), answered at once; the list is read strongly consistent.

use std::sync::Arc;

use super::attempt::{until_decided, write, Attempt, Written};
use crate::config::Config;
use crate::domain::{Location, LocationId, Locations};
use crate::error::AppError;
use crate::ports::{Record, RecordKey, RecordWrite, Records, Transaction, Transactions};

/// The registry as read, with the version its record had (`None`: never written).
#[derive(Debug, Clone, Default)]
struct Read {
    version: Option<u64>,
    locations: Locations,
}

pub(crate) struct LocationBook {
    pub(crate) records: Arc<dyn Records>,
    pub(crate) transactions: Arc<dyn Transactions>,
    pub(crate) config: Config,
}

impl LocationBook {
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
                let mut locations = read.locations;
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
                        tracing::info!(location = %location.id, active = location.active, "location registered");
                        Attempt::Done(location)
                    }
                    Written::Lost(_) => Attempt::Reread,
                })
            }
        })
        .await
    }

    /// The registry as stored now.
    async fn read(&self) -> Result<Read, AppError> {
        Ok(
            match self
                .records
                .read_records(&[RecordKey::Locations])
                .await?
                .pop()
            {
                Some(Some(stored)) => match stored.record {
                    Record::Locations(locations) => Read {
                        version: Some(stored.version),
                        locations,
                    },
                    other => {
                        return Err(AppError::Internal(format!(
                            "the registry of locations holds {other:?}"
                        )))
                    }
                },
                _ => Read::default(),
            },
        )
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
