//! One poller for the two shard streams `inventory dev` reads against a local AWS: the command
//! stream (Kinesis, to the command processor) and the table's change feed (DynamoDB Streams,
//! to each reaction). It does what the Lambda event source mappings do in AWS: every shard, a
//! child only once its parent is read to the end; per shard, batches in order; a batch the
//! handler could not finish is read again from the sequence number it names. The two streams
//! are two [`ShardSource`]s; what a batch is delivered to is the source's business, and it
//! calls the same handlers as the Lambdas.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use inventory_core::limits::COMMAND_BATCH;
use inventory_core::retry::Retry;
use tokio::task::JoinSet;

/// Pause after a shard was read to its end (nothing new, or less than a full page).
const IDLE: Duration = Duration::from_millis(200);
/// How often the shards are listed again to pick up new ones.
const SHARD_REFRESH: Duration = Duration::from_secs(10);

/// A shard, and the shard it was split or merged from.
#[derive(Debug, Clone)]
pub struct ShardInfo {
    /// Its id.
    pub id: String,
    /// Its parent's id, if any.
    pub parent: Option<String>,
}

/// Where to (re)start reading a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// The oldest record still in the shard.
    TrimHorizon,
    /// The record with this sequence number, and those after it.
    At(String),
    /// The records after this sequence number.
    After(String),
}

impl Position {
    /// The shard iterator type that starts here (both stream APIs name them alike), and the
    /// sequence number it starts at or after.
    pub fn iterator(&self) -> (&'static str, Option<&str>) {
        match self {
            Self::TrimHorizon => ("TRIM_HORIZON", None),
            Self::At(sequence) => ("AT_SEQUENCE_NUMBER", Some(sequence)),
            Self::After(sequence) => ("AFTER_SEQUENCE_NUMBER", Some(sequence)),
        }
    }
}

/// Why a read gave no records.
#[derive(Debug)]
pub enum NoRead {
    /// The shard is gone (trimmed, or the stream disabled): nothing more to read.
    Gone,
    /// Try again later.
    Failed(String),
    /// The position is past the stream's retention: read from the oldest record.
    Trimmed,
}

/// One read of a shard.
#[derive(Debug)]
pub struct Page<R> {
    /// The records, in order.
    pub records: Vec<R>,
    /// Whether the shard is closed and these were its last records.
    pub closed: bool,
}

/// A stream of shards, and what its records are delivered to.
#[async_trait]
pub trait ShardSource: Send + Sync + 'static {
    /// A record of the stream.
    type Record: Send + Sync;

    /// The poller's name in logs.
    fn name(&self) -> &'static str;

    /// Every shard of the stream.
    async fn shards(&self) -> Result<Vec<ShardInfo>, String>;

    /// Up to `limit` records of `shard` from `position` (with a fresh iterator).
    async fn read(
        &self,
        shard: &str,
        position: &Position,
        limit: usize,
    ) -> Result<Page<Self::Record>, NoRead>;

    /// The record's sequence number.
    fn sequence_number(record: &Self::Record) -> String;

    /// Whether a batch is delivered only once a second read from the same position finds the
    /// same records (see [`crate::feed_source`] for why the change feed needs it on moto).
    fn verifies_reads(&self) -> bool {
        false
    }

    /// Whether two reads found the same records.
    fn same_records(first: &[Self::Record], second: &[Self::Record]) -> bool {
        first.len() == second.len()
            && first
                .iter()
                .map(Self::sequence_number)
                .eq(second.iter().map(Self::sequence_number))
    }

    /// Hands a batch to its handler; the sequence number to read again from if it could not
    /// finish.
    async fn deliver(&self, records: &[Self::Record]) -> Option<String>;
}

/// Reads every shard of `source` forever, parents first.
pub async fn poll<S: ShardSource>(source: Arc<S>) {
    let name = source.name();
    let mut started: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut running: JoinSet<()> = JoinSet::new();
    let mut running_shards: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut retry = Retry::poll();
    loop {
        match source.shards().await {
            Ok(shards) => {
                retry = Retry::poll();
                let listed: HashSet<&str> = shards.iter().map(|s| s.id.as_str()).collect();
                for shard in &shards {
                    // A child waits until its parent is read to the end (unless the parent is no
                    // longer listed, i.e. trimmed), so each key's records arrive in order.
                    let parent_pending = shard.parent.as_deref().is_some_and(|parent| {
                        listed.contains(parent) && !finished.contains(parent)
                    });
                    if parent_pending || started.contains(&shard.id) {
                        continue;
                    }
                    started.insert(shard.id.clone());
                    tracing::debug!(poller = name, shard = %shard.id, "reading shard");
                    let task = running.spawn(read_shard(Arc::clone(&source), shard.id.clone()));
                    running_shards.insert(task.id(), shard.id.clone());
                }
            }
            Err(err) => {
                tracing::warn!(poller = name, error = %err, "listing the shards failed");
                retry.wait().await;
                continue;
            }
        }
        // List again after a while, or as soon as a shard is done (its children may start).
        tokio::select! {
            () = tokio::time::sleep(SHARD_REFRESH) => {}
            Some(done) = running.join_next_with_id() => {
                let id = match done {
                    Ok((id, ())) => id,
                    // A shard's reader that panicked would leave the shard unread for good:
                    // the panic goes on up, to whoever runs this poller (`inventory dev` stops).
                    Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
                    Err(err) => {
                        tracing::error!(poller = name, error = %err, "a shard poller stopped");
                        err.id()
                    }
                };
                if let Some(shard) = running_shards.remove(&id) {
                    finished.insert(shard);
                }
            }
        }
    }
}

/// Reads one shard until it is closed and read to the end (or gone), from its oldest record:
/// whatever was handled already is handled again, which every handler takes in its stride.
async fn read_shard<S: ShardSource>(source: Arc<S>, shard: String) {
    let name = source.name();
    let mut position = Position::TrimHorizon;
    let mut retry = Retry::poll();
    loop {
        let page = match verified_read(source.as_ref(), &shard, &position).await {
            Ok(page) => {
                retry = Retry::poll();
                page
            }
            Err(NoRead::Gone) => {
                tracing::info!(poller = name, %shard, "the shard is gone");
                return;
            }
            Err(NoRead::Trimmed) => {
                tracing::warn!(poller = name, %shard, ?position,
                    "the position was trimmed from the stream; reading from the oldest record");
                position = Position::TrimHorizon;
                continue;
            }
            Err(NoRead::Failed(err)) => {
                tracing::warn!(poller = name, %shard, error = %err, "reading the shard failed");
                retry.wait().await;
                continue;
            }
        };
        if let Some(last) = page.records.last() {
            position = Position::After(S::sequence_number(last));
        }
        if !page.records.is_empty() {
            if let Some(resume) = source.deliver(&page.records).await {
                tracing::debug!(poller = name, %shard, %resume, "batch to be read again");
                position = Position::At(resume);
                retry.wait().await;
                continue;
            }
        }
        if page.closed {
            tracing::info!(poller = name, %shard, "shard closed and read to the end");
            return;
        }
        // Only a full page is followed at once: a short one means the shard is read to its
        // end, and the next records are taken together a pause later (as an event source
        // mapping's batching window does), so a busy shard costs no more reads than an idle one.
        if page.records.len() < COMMAND_BATCH {
            tokio::time::sleep(IDLE).await;
        }
    }
}

/// A read, and for a source that verifies its reads, a second read from the same position
/// that must find the same records.
async fn verified_read<S: ShardSource>(
    source: &S,
    shard: &str,
    position: &Position,
) -> Result<Page<S::Record>, NoRead> {
    let page = source.read(shard, position, COMMAND_BATCH).await?;
    if !source.verifies_reads() || page.records.is_empty() {
        return Ok(page);
    }
    let again = source.read(shard, position, page.records.len()).await?;
    if S::same_records(&page.records, &again.records) {
        Ok(page)
    } else {
        Err(NoRead::Failed(
            "the stream changed under a second read; reading again".to_owned(),
        ))
    }
}
