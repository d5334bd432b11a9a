//! The cold archive: every event, forever, in compressed objects.
//!
//! | object | key |
//! |---|---|
//! | a run of one SKU's consecutive events recorded on one UTC day (gzipped JSON lines, one event per line) | `events/sku={SKU}/day={YYYY-MM-DD}/{first:012}-{last:012}.jsonl.gz` |
//! | its entry in the day's index (empty) | `days/day={YYYY-MM-DD}/sku={SKU}/{first:012}-{last:012}` |
//!
//! One SKU's history is one listing (`events/sku={SKU}/`), one day's events another
//! (`days/day={D}/`, whose entries name the data objects). Keys and bytes depend only on the
//! events (immutable) and their range, so a retry rewrites the same object with the same bytes.
//! Runs cut at different points by different deliveries may overlap; readers merge by
//! sequence number and report any sequence found with two different contents.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;

use flate2::read::GzDecoder;
use flate2::{Compression, GzBuilder};

use thiserror::Error;

use crate::domain::{Event, StreamId, Timestamp, Version};
use crate::ports::{ObjectStore, ObjectStoreError, StoreError};

/// Prefix of the data objects.
pub const EVENTS_PREFIX: &str = "events/";
/// Prefix of the day index.
pub const DAYS_PREFIX: &str = "days/";

/// Why work between the table and the archive (archiving a SKU, auditing one) did not get
/// done: one of the two could not be read or written. Nothing was concluded; try again.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ArchiveError {
    /// The table failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The object store failed.
    #[error(transparent)]
    Objects(#[from] ObjectStoreError),
}

/// The archive on an object store.
#[derive(Clone)]
pub struct Archive {
    objects: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").finish_non_exhaustive()
    }
}

/// One SKU's events as found in the archive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchivedStream {
    /// The events, by sequence.
    pub events: BTreeMap<Version, Event>,
    /// What is wrong with the objects read (unreadable objects, a sequence archived twice with
    /// different contents, an event filed under the wrong SKU).
    pub problems: Vec<String>,
    /// Objects read.
    pub objects: usize,
}

/// The UTC day of an instant, as `YYYY-MM-DD`.
pub fn day_of(at: Timestamp) -> String {
    chrono::DateTime::from_timestamp_millis(at.millis()).map_or_else(
        || "0000-00-00".to_owned(),
        |t| t.format("%Y-%m-%d").to_string(),
    )
}

/// Key of the data object holding events `first..=last` of `sku` recorded on `day`.
pub fn segment_key(sku: &StreamId, day: &str, first: Version, last: Version) -> String {
    format!("{EVENTS_PREFIX}sku={sku}/day={day}/{first:012}-{last:012}.jsonl.gz")
}

/// Key of that object's entry in the day index.
pub fn day_entry_key(sku: &StreamId, day: &str, first: Version, last: Version) -> String {
    format!("{DAYS_PREFIX}day={day}/sku={sku}/{first:012}-{last:012}")
}

/// The bytes of an object holding `events`: one JSON line each, gzipped with a fixed header (no
/// time, no name), so the same events always give the same bytes.
pub fn encode(events: &[Event]) -> Vec<u8> {
    let mut lines = Vec::new();
    for event in events {
        // An event is plain data: serializing it cannot fail.
        if let Ok(line) = serde_json::to_vec(event) {
            lines.extend(line);
            lines.push(b'\n');
        }
    }
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::default());
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(&lines);
    gz.finish().unwrap_or_default()
}

/// The events of an object's bytes.
pub fn decode(bytes: &[u8]) -> Result<Vec<Event>, String> {
    let mut text = String::new();
    GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .map_err(|e| format!("not gzipped JSON lines: {e}"))?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(n, line)| serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1)))
        .collect()
}

impl Archive {
    /// The archive on `objects`.
    pub fn new(objects: Arc<dyn ObjectStore>) -> Self {
        Self { objects }
    }

    /// Stores consecutive events of one SKU: one object per UTC day they span, each written
    /// before its day-index entry. Returns the number of data objects written.
    pub async fn store_run(
        &self,
        sku: &StreamId,
        events: &[Event],
    ) -> Result<usize, ObjectStoreError> {
        let mut written = 0;
        for run in events.chunk_by(|a, b| day_of(a.at) == day_of(b.at)) {
            let (Some(first), Some(last)) = (run.first(), run.last()) else {
                continue;
            };
            let day = day_of(first.at);
            let key = segment_key(sku, &day, first.seq, last.seq);
            self.objects.put(&key, encode(run)).await?;
            let entry = day_entry_key(sku, &day, first.seq, last.seq);
            self.objects.put(&entry, Vec::new()).await?;
            written += 1;
        }
        Ok(written)
    }

    /// Every archived event of `sku`, merged by sequence, with what is wrong, if anything.
    pub async fn read_sku(&self, sku: &StreamId) -> Result<ArchivedStream, ObjectStoreError> {
        let keys = self
            .objects
            .list(&format!("{EVENTS_PREFIX}sku={sku}/"))
            .await?;
        let mut stream = ArchivedStream::default();
        for key in keys {
            let Some(bytes) = self.objects.get(&key).await? else {
                stream.problems.push(format!("{key}: listed but gone"));
                continue;
            };
            stream.objects += 1;
            let events = match decode(&bytes) {
                Ok(events) => events,
                Err(reason) => {
                    stream.problems.push(format!("{key}: {reason}"));
                    continue;
                }
            };
            for event in events {
                if &event.stream != sku {
                    stream.problems.push(format!(
                        "{key}: holds event {} of {}",
                        event.seq, event.stream
                    ));
                    continue;
                }
                match stream.events.get(&event.seq) {
                    Some(known) if known != &event => stream.problems.push(format!(
                        "{key}: event {} differs from the copy in another object",
                        event.seq
                    )),
                    Some(_) => {}
                    None => {
                        stream.events.insert(event.seq, event);
                    }
                }
            }
        }
        Ok(stream)
    }

    /// At most `limit` archived events of `sku` after `after`, consecutive, in order: one
    /// listing of the SKU's objects (a request per 1,000 of them), then only the objects
    /// holding the range, read in order until the page is full (at most `limit` of them, one
    /// per event in the worst case; an archiver's run is usually many events). Returns the
    /// events and the objects read.
    pub async fn read_after(
        &self,
        sku: &StreamId,
        after: Version,
        limit: usize,
    ) -> Result<(Vec<Event>, usize), ObjectStoreError> {
        let keys = self
            .objects
            .list(&format!("{EVENTS_PREFIX}sku={sku}/"))
            .await?;
        let mut runs: Vec<(Version, Version, String)> = keys
            .into_iter()
            .filter_map(|key| {
                let (first, last) = run_of(&key)?;
                (last > after).then_some((first, last, key))
            })
            .collect();
        runs.sort();
        let mut events: Vec<Event> = Vec::new();
        let mut read = 0;
        for (first, _, key) in runs {
            let next = events.last().map_or(after, |event| event.seq) + 1;
            if events.len() >= limit || first > next {
                break;
            }
            let Some(bytes) = self.objects.get(&key).await? else {
                continue;
            };
            read += 1;
            let run =
                decode(&bytes).map_err(|reason| ObjectStoreError(format!("{key}: {reason}")))?;
            for event in run {
                let next = events.last().map_or(after, |event| event.seq) + 1;
                if event.seq == next && &event.stream == sku && events.len() < limit {
                    events.push(event);
                }
            }
        }
        Ok((events, read))
    }

    /// Every SKU with archived events.
    pub async fn skus(&self) -> Result<Vec<StreamId>, ObjectStoreError> {
        let folders = self.objects.list_folders(EVENTS_PREFIX).await?;
        Ok(skus_of(&folders, EVENTS_PREFIX))
    }

    /// The SKUs with events recorded on `day` (`YYYY-MM-DD`).
    pub async fn skus_on(&self, day: &str) -> Result<Vec<StreamId>, ObjectStoreError> {
        let prefix = format!("{DAYS_PREFIX}day={day}/");
        let folders = self.objects.list_folders(&prefix).await?;
        Ok(skus_of(&folders, &prefix))
    }
}

/// The range `first..=last` a data object's key names.
fn run_of(key: &str) -> Option<(Version, Version)> {
    let name = key.rsplit('/').next()?.strip_suffix(".jsonl.gz")?;
    let (first, last) = name.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

fn skus_of(folders: &[String], prefix: &str) -> Vec<StreamId> {
    folders
        .iter()
        .filter_map(|folder| {
            let name = folder.strip_prefix(prefix)?.strip_prefix("sku=")?;
            StreamId::parse(name.trim_end_matches('/')).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Annotation;
    use crate::domain::{Change, CommandId, Quantity};
    use crate::memory::MemoryObjects;

    fn sku() -> StreamId {
        StreamId::of(&crate::domain::Sku::parse("SKU-1").unwrap())
    }

    fn received(seq: Version, at_millis: i64) -> Event {
        Event {
            actor: None,
            figures: None,
            stream: sku(),
            seq,
            at: Timestamp::from_millis(at_millis),
            change: Change::StockReceived {
                command_id: CommandId::parse("00000000-0000-4000-8000-000000000001").unwrap(),
                quantity: Quantity::new(3).unwrap(),
                why: Annotation::received(None),
            },
        }
    }

    const DAY: i64 = 86_400_000;

    #[test]
    fn the_same_events_always_make_the_same_bytes() {
        let events = vec![received(1, 0), received(2, 5)];
        assert_eq!(encode(&events), encode(&events));
        assert_eq!(decode(&encode(&events)).unwrap(), events);
    }

    #[test]
    fn keys_list_one_skus_history_and_one_days_events() {
        assert_eq!(
            segment_key(&sku(), "2026-11-21", 1, 12),
            "events/sku=SKU-1/day=2026-11-21/000000000001-000000000012.jsonl.gz"
        );
        assert_eq!(
            day_entry_key(&sku(), "2026-11-21", 1, 12),
            "days/day=2026-11-21/sku=SKU-1/000000000001-000000000012"
        );
        assert_eq!(day_of(Timestamp::from_millis(DAY * 20_778)), "2026-11-21");
    }

    #[tokio::test]
    async fn a_run_over_midnight_makes_one_object_per_day_and_reads_back_whole() {
        let objects = Arc::new(MemoryObjects::new());
        let archive = Archive::new(objects.clone());
        let events = vec![received(1, DAY - 2), received(2, DAY - 1), received(3, DAY)];
        assert_eq!(archive.store_run(&sku(), &events).await.unwrap(), 2);
        assert_eq!(archive.store_run(&sku(), &events[1..]).await.unwrap(), 2);
        let read = archive.read_sku(&sku()).await.unwrap();
        assert_eq!(read.events.values().cloned().collect::<Vec<_>>(), events);
        assert!(read.problems.is_empty(), "{:?}", read.problems);
        assert_eq!(archive.skus().await.unwrap(), vec![sku()]);
        assert_eq!(archive.skus_on("1970-01-02").await.unwrap(), vec![sku()]);
        assert!(archive.skus_on("1970-01-03").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_page_after_a_version_reads_only_the_objects_holding_it_over_overlapping_runs() {
        let objects = Arc::new(MemoryObjects::new());
        let archive = Archive::new(objects.clone());
        let events: Vec<Event> = (1..=9).map(|seq| received(seq, seq as i64)).collect();
        // Runs 1-3, 4-6 and 7-9, and 2-5 cut by another delivery.
        for run in [&events[0..3], &events[3..6], &events[6..9], &events[1..5]] {
            archive.store_run(&sku(), run).await.unwrap();
        }
        let seqs = |page: &[Event]| page.iter().map(|e| e.seq).collect::<Vec<_>>();
        let (page, read) = archive.read_after(&sku(), 3, 4).await.unwrap();
        assert_eq!((seqs(&page), read), (vec![4, 5, 6, 7], 3));
        let (page, read) = archive.read_after(&sku(), 7, 10).await.unwrap();
        assert_eq!((seqs(&page), read), (vec![8, 9], 1));
        let (page, read) = archive.read_after(&sku(), 9, 10).await.unwrap();
        assert_eq!((seqs(&page), read), (vec![], 0));
        // A gap ends the page where it starts.
        assert!(objects.remove(&segment_key(&sku(), "1970-01-01", 7, 9)));
        let (page, _) = archive.read_after(&sku(), 4, 10).await.unwrap();
        assert_eq!(seqs(&page), vec![5, 6]);
    }

    #[tokio::test]
    async fn two_different_copies_of_one_event_are_reported() {
        let objects = Arc::new(MemoryObjects::new());
        let archive = Archive::new(objects.clone());
        archive.store_run(&sku(), &[received(1, 0)]).await.unwrap();
        let mut forged = received(1, 7);
        forged.seq = 1;
        objects
            .put(
                &segment_key(&sku(), "1970-01-01", 1, 1).replace("0001.jsonl", "0001x.jsonl"),
                encode(&[forged]),
            )
            .await
            .unwrap();
        let read = archive.read_sku(&sku()).await.unwrap();
        assert_eq!(read.problems.len(), 1, "{:?}", read.problems);
    }
}
