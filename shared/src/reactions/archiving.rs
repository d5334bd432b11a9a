//! Archiving: every event reaches the archive before the table may delete it.
//!
//! For each SKU the feed touched, the archiver keeps a mark: how far the archive reaches
//! without a gap (`archived_through`) and how far events have been given a time to live
//! (`retired_through`). It archives the events after the mark (filling any gap the feed left
//! from the stream itself), and only then retires events that are both archived and covered by
//! the SKU's snapshot, with a time to live `live_retention` from now. A deletion of an event the
//! archive does not hold yet (which retirement never allows) is caught from its deletion record:
//! the event is archived from the record's old image and the problem is logged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;

use crate::archive::{Archive, ArchiveError};
use crate::domain::{Event, StreamId, Version};
use crate::feed::{FeedChange, Reaction};
use crate::ports::{
    ArchiveMark, Clock, EventStore, Record, RecordKey, RecordWrite, StoreError, Transaction,
    Versioned,
};

/// Archives events and retires them from the table.
#[derive(Clone)]
pub struct Archiver {
    store: Arc<dyn EventStore>,
    archive: Archive,
    clock: Arc<dyn Clock>,
    live_retention: Duration,
}

impl std::fmt::Debug for Archiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archiver")
            .field("live_retention", &self.live_retention)
            .finish_non_exhaustive()
    }
}

impl Archiver {
    /// An archiver writing to `archive`; archived events stay in the table `live_retention`
    /// after a snapshot covers them.
    pub fn new(
        store: Arc<dyn EventStore>,
        archive: Archive,
        clock: Arc<dyn Clock>,
        live_retention: Duration,
    ) -> Self {
        Self {
            store,
            archive,
            clock,
            live_retention,
        }
    }

    async fn archive_sku(
        &self,
        sku: &StreamId,
        stored: Option<Versioned>,
        covered_by_snapshot: Version,
        delivered: &[&FeedChange],
    ) -> Result<(), ArchiveError> {
        let (mark, version) = match stored {
            Some(Versioned {
                version,
                record: Record::ArchiveMark(mark),
            }) => (mark, Some(version)),
            _ => (ArchiveMark::default(), None),
        };
        let mut next = mark;
        let mut newer: BTreeMap<Version, &Event> = BTreeMap::new();
        for change in delivered {
            let Some(event) = change.event() else {
                continue;
            };
            if event.seq <= mark.archived_through {
                continue;
            }
            if let FeedChange::Removed(_) = change {
                tracing::error!(sku = %sku, seq = event.seq,
                    "an event was deleted before it was archived; archiving it from its deletion record");
            }
            newer.insert(event.seq, event);
        }
        if let Some(&last) = newer.keys().next_back() {
            let run = self
                .run_to_archive(sku, mark.archived_through, last, &newer)
                .await?;
            let objects = self.archive.store_run(sku, &run).await?;
            tracing::info!(sku = %sku, first = mark.archived_through + 1, last, objects, "archived");
            next.archived_through = last;
        }
        let retire_through = covered_by_snapshot.min(next.archived_through);
        if retire_through > mark.retired_through {
            let delete_at = self
                .clock
                .now()
                .plus_millis(i64::try_from(self.live_retention.as_millis()).unwrap_or(i64::MAX));
            self.store
                .retire_events(sku, mark.retired_through + 1..=retire_through, delete_at)
                .await?;
            next.retired_through = retire_through;
        }
        if next != mark {
            self.store
                .write(Transaction::records(vec![RecordWrite {
                    key: RecordKey::ArchiveMark {
                        stream: sku.clone(),
                    },
                    expected: version,
                    record: Record::ArchiveMark(next),
                }]))
                .await?;
        }
        Ok(())
    }

    /// Events `archived_through + 1 ..= last`: those delivered, and the stream for any the feed
    /// did not bring. Refuses a gap, so the archive never has one below its mark.
    async fn run_to_archive(
        &self,
        sku: &StreamId,
        archived_through: Version,
        last: Version,
        delivered: &BTreeMap<Version, &Event>,
    ) -> Result<Vec<Event>, StoreError> {
        // Both maps hold distinct sequences in `archived_through + 1 ..= last`: they hold every
        // one of them exactly when they hold as many as the range does.
        let wanted = last - archived_through;
        let mut run: BTreeMap<Version, Event> = delivered
            .iter()
            .map(|(seq, event)| (*seq, (*event).clone()))
            .collect();
        if delivered.len() as u64 != wanted {
            for event in self.store.read_stream(sku, archived_through).await? {
                if event.seq <= last {
                    run.entry(event.seq).or_insert(event);
                }
            }
        }
        if run.len() as u64 != wanted {
            return Err(StoreError::Incomplete(format!(
                "events {}..={last} of {sku} are not all readable: cannot archive without a gap",
                archived_through + 1
            )));
        }
        let run: Vec<Event> = run.into_values().collect();
        Ok(run)
    }
}

#[async_trait]
impl Reaction for Archiver {
    async fn react(&self, changes: &[FeedChange]) -> BTreeSet<StreamId> {
        let mut by_sku: BTreeMap<StreamId, Vec<&FeedChange>> = BTreeMap::new();
        // Parked commands are not the archive's.
        for change in changes.iter().filter(|change| change.event().is_some()) {
            by_sku.entry(change.stream()).or_default().push(change);
        }
        if by_sku.is_empty() {
            return BTreeSet::new();
        }
        let skus: Vec<StreamId> = by_sku.keys().cloned().collect();
        let keys: Vec<RecordKey> = skus
            .iter()
            .map(|sku| RecordKey::ArchiveMark {
                stream: sku.clone(),
            })
            .collect();
        let read = futures::try_join!(
            self.store.read_records(&keys),
            self.store.read_snapshots(&skus)
        );
        let (marks, snapshots) = match read {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!(error = %err, skus = skus.len(), "could not read archive marks");
                return skus.into_iter().collect();
            }
        };
        let work = by_sku.iter().zip(marks.into_iter().zip(snapshots)).map(
            |((sku, delivered), (mark, snapshot))| async move {
                let covered = snapshot.map_or(0, |state| state.version);
                (sku, self.archive_sku(sku, mark, covered, delivered).await)
            },
        );
        let mut failed = BTreeSet::new();
        for (sku, result) in join_all(work).await {
            if let Err(err) = result {
                tracing::warn!(sku = %sku, error = %err, "could not archive");
                failed.insert(sku.clone());
            }
        }
        failed
    }
}
