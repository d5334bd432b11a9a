//! Ports: the small capabilities the use cases need from the outside world. The in-memory
//! adapters live in [`crate::memory`]; the AWS adapters implement the same traits and pass the
//! same conformance suite.

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::domain::{
    Change, ClientId, Command, CommandId, Event, HoldLine, IdempotencyKey, Locations, Noticed,
    RejectionCode, ReservationId, Sku, SkuState, StreamId, Timestamp, Version, WholeItem,
};

/// Where a record lives: records are looked up directly by key, never scanned for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordKey {
    /// A reservation's hold on one SKU, once it has left its initial state.
    Hold {
        /// The reservation.
        reservation_id: ReservationId,
        /// The stream the hold is in.
        #[serde(rename = "sku")]
        stream: StreamId,
    },
    /// Which reservation a client's `Idempotency-Key` made (keys are the client's own: two
    /// clients using one key never collide).
    Idempotency {
        /// The client that sent the key.
        client_id: ClientId,
        /// The key.
        key: IdempotencyKey,
    },
    /// A command the API accepted.
    Command {
        /// The command.
        command_id: CommandId,
    },
    /// How a command turned out on one SKU; its presence is what makes a redelivery a no-op.
    CommandOutcome {
        /// The command.
        command_id: CommandId,
        /// The SKU it concerns.
        sku: Sku,
    },
    /// How far one stream is archived and retired (kept for good).
    ArchiveMark {
        /// The stream archived.
        #[serde(rename = "sku")]
        stream: StreamId,
    },
    /// How far the expiry timer has swept (kept for good).
    ExpirySweep,
    /// One SKU's commands held back while they wait (for their acceptance, or for a reservation
    /// not readable yet), in arrival order: they are tried again before any later command of
    /// the SKU.
    Deferred {
        /// The SKU whose commands wait.
        sku: Sku,
    },
    /// The shop's registry of locations (kept for good).
    Locations,
    /// What an item kept at several locations was last told of as a whole (kept for good):
    /// see [`crate::domain::whole`].
    WholeItem {
        /// The item.
        sku: Sku,
    },
}

/// A record's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// See [`RecordKey::Hold`].
    Hold(HoldLine),
    /// See [`RecordKey::Idempotency`].
    Idempotency(IdempotencyRecord),
    /// See [`RecordKey::Command`].
    Command(CommandRecord),
    /// See [`RecordKey::CommandOutcome`].
    CommandOutcome(CommandOutcome),
    /// See [`RecordKey::ArchiveMark`].
    ArchiveMark(ArchiveMark),
    /// See [`RecordKey::ExpirySweep`].
    ExpirySweep(SweepMark),
    /// See [`RecordKey::Deferred`].
    Deferred(DeferredCommands),
    /// See [`RecordKey::Locations`].
    Locations(Locations),
    /// See [`RecordKey::WholeItem`].
    WholeItem(WholeItem),
}

/// A SKU's held-back commands, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeferredCommands {
    /// The commands, in the order they arrived.
    pub commands: Vec<Command>,
}

/// How far one SKU's stream has reached cold storage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveMark {
    /// Every event up to this sequence is in the archive (the archive has no gap below it).
    pub archived_through: Version,
    /// Every event up to this sequence has been given a time to live: archived and covered by a
    /// snapshot, so no read needs it.
    pub retired_through: Version,
}

/// How far the expiry timer has swept the expiry index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepMark {
    /// Every hold that expired at or before this instant has been handled.
    pub swept_through: Timestamp,
}

/// The reservation an idempotent request made, and a digest of that request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Digest of the request body the key was first used with.
    pub request_digest: String,
    /// The reservation it made.
    pub reservation_id: ReservationId,
    /// When it was made.
    pub created_at: Timestamp,
}

/// A command as accepted by the API: the per-SKU commands it was queued as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// Digest of the request that made it (a retry with the same key must match it).
    pub request_digest: String,
    /// The commands queued, one per SKU.
    pub commands: Vec<Command>,
    /// The client that issued it: only that client (or an admin) may read its status. Absent on
    /// commands recorded before ownership was (admin's only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_by: Option<ClientId>,
    /// Whether the request was answered 202. The processor holds the commands back until it is,
    /// so a request answered 503 after some of its commands were queued never takes effect
    /// half-way.
    pub acceptance: Acceptance,
}

impl CommandRecord {
    /// When the API accepted it: when its first command was (every command of one request is
    /// accepted at one instant).
    pub fn accepted_at(&self) -> Option<Timestamp> {
        self.commands
            .iter()
            .map(|command| command.accepted_at)
            .min()
    }

    /// Whether it was accepted at or after `since` (what [`CommandHistory::commands_since`]
    /// lists).
    pub fn accepted_since(&self, since: Timestamp) -> bool {
        self.accepted_at().is_some_and(|at| at >= since)
    }
}

/// Where the request that made a command stands. `Accepted` and `Abandoned` are decided by
/// conditional writes on the record, so the API and the processor never both win.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Acceptance {
    /// Recorded and maybe queued since `since`; the request is not answered yet.
    Awaiting {
        /// When the (latest) request started queueing the commands.
        since: Timestamp,
    },
    /// Every command is queued and the request was answered 202.
    Accepted,
    /// The processor gave up waiting; the request gets 503 and its queued commands are dropped.
    Abandoned,
}

/// How a command turned out on one SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CommandOutcome {
    /// It took effect (or its effect was already there).
    Applied,
    /// It could not take effect.
    Rejected {
        /// Why.
        reason: RejectionCode,
        /// The item's on-hand figure then, for a count refused `stale_count`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        on_hand: Option<i64>,
    },
    /// The processor could not apply it and set it aside, whole, for an operator: the shard
    /// moved on. Kept until it is redriven and applied.
    Parked(ParkedCommand),
}

/// A command set aside by the processor: why, when, and the record exactly as it was queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedCommand {
    /// Why it was parked.
    pub reason: ParkReason,
    /// What went wrong, for the operator.
    pub detail: String,
    /// When.
    pub parked_at: Timestamp,
    /// The queued record's bytes, base64.
    pub body: String,
    /// When an operator put it back on the queue; until then a redelivery leaves it parked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redriven_at: Option<Timestamp>,
}

/// Why a command was parked.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParkReason {
    /// The record is not a command this version can read.
    UnknownShape,
    /// It names a reservation that stayed unreadable past the dependency wait.
    DependencyUnreadable,
    /// Applying it kept failing past the processor's bound.
    Failing,
    /// Applying it faulted: a bug (a panic, or an item that does not read as it should), which
    /// would fault again on every delivery; parked at once.
    Faulted,
}

impl ParkReason {
    /// The reason's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownShape => "unknown_shape",
            Self::DependencyUnreadable => "dependency_unreadable",
            Self::Failing => "failing",
            Self::Faulted => "faulted",
        }
    }
}

/// A parked command as listed for an operator: the command id and SKU it is filed under, and
/// the record's version (redrive writes over it conditionally).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedEntry {
    /// The command id it is filed under.
    pub command_id: CommandId,
    /// The SKU it is filed under.
    pub sku: Sku,
    /// The parked record's version.
    pub version: u64,
    /// The parked command.
    pub parked: ParkedCommand,
}

impl ParkedEntry {
    /// The parked command `record`, at `version` under `key`, if it is one.
    pub fn filed(key: &RecordKey, version: u64, record: &Record) -> Option<Self> {
        match (key, record) {
            (
                RecordKey::CommandOutcome { command_id, sku },
                Record::CommandOutcome(CommandOutcome::Parked(parked)),
            ) => Some(Self {
                command_id: *command_id,
                sku: sku.clone(),
                version,
                parked: parked.clone(),
            }),
            _ => None,
        }
    }
}

/// A record with the version that makes conditional writes possible (1 for a new record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned {
    /// Incremented by every write.
    pub version: u64,
    /// The record.
    pub record: Record,
}

/// Events to add to one stream, valid only if the stream's head is still `expected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAppend {
    /// The stream.
    pub stream: StreamId,
    /// The head the decision was made on; the events take `expected + 1`, `expected + 2`, …
    pub expected: Version,
    /// The events, already numbered from `expected + 1`.
    pub events: Vec<Event>,
}

impl StreamAppend {
    /// The same append, its events made at `actor`'s request.
    pub fn by(mut self, actor: &ClientId) -> Self {
        for event in &mut self.events {
            event.actor = Some(actor.clone());
        }
        self
    }

    /// The append of `changes` to `stream` at `now`, right after the head `state` was decided on.
    pub fn after(
        state: &SkuState,
        stream: &StreamId,
        now: Timestamp,
        changes: Vec<Change>,
    ) -> Self {
        let mut next = state.clone();
        let events = changes
            .into_iter()
            .zip(state.version + 1..)
            .map(|(change, seq)| {
                let mut event = Event {
                    actor: None,
                    figures: None,
                    stream: stream.clone(),
                    seq,
                    at: now,
                    change,
                };
                next.evolve(&event);
                event.figures = Some(next.figures(now));
                event
            })
            .collect();
        Self {
            stream: stream.clone(),
            expected: state.version,
            events,
        }
    }
}

/// A record to write, valid only if the stored one is still at `expected` (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordWrite {
    /// Where.
    pub key: RecordKey,
    /// The version read, or `None` for "must not exist yet".
    pub expected: Option<u64>,
    /// The new body.
    pub record: Record,
}

/// Everything one decision writes: all of it or nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    /// Stream appends (one per SKU).
    pub appends: Vec<StreamAppend>,
    /// Record writes.
    pub records: Vec<RecordWrite>,
}

impl Transaction {
    /// A commit of stream appends only.
    pub fn appends(appends: Vec<StreamAppend>) -> Self {
        Self {
            appends,
            records: Vec::new(),
        }
    }

    /// A commit of records only.
    pub fn records(records: Vec<RecordWrite>) -> Self {
        Self {
            appends: Vec::new(),
            records,
        }
    }

    /// Items written: one per event and one per record.
    pub fn items(&self) -> usize {
        self.appends.iter().map(|a| a.events.len()).sum::<usize>() + self.records.len()
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.appends.is_empty() && self.records.is_empty()
    }
}

/// Which condition of a commit failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// Someone appended to this stream first.
    Stream {
        /// The stream.
        stream: StreamId,
        /// The event found where ours was to go, when the store tells it with the failure (a
        /// DynamoDB conditional PutItem does). The DynamoDB adapter uses it to recognise its own
        /// retried write; re-deciding on it alone measured worse than re-reading the tail
        /// (docs/benchmarks.md).
        found: Option<Box<Event>>,
    },
    /// Someone wrote this record first.
    Record {
        /// The record (boxed: a hold's key names two streams, and a store error stays small).
        key: Box<RecordKey>,
    },
}

/// A hold event (placed or extended) found in the expiry index: whose hold it is and when it
/// expires.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LapsingHold {
    /// The stream the hold is in.
    pub stream: StreamId,
    /// The event's position in the SKU's stream.
    pub seq: Version,
    /// The reservation.
    pub reservation_id: ReservationId,
    /// When the hold expires by this event's terms.
    pub expires_at: Timestamp,
}

/// What saving a snapshot came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotSave {
    /// Stored.
    Saved,
    /// A snapshot at the same or a later version was already stored; it was kept.
    Stale,
}

/// Why a dependency failed: the error that said so, kept whole (its chain of sources is shown).
#[derive(Debug, Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    /// The cause `err`.
    pub fn of(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(err))
    }

    /// The error itself.
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self.0.as_ref()
    }
}

/// A cause that is only a message.
#[derive(Debug, Error)]
#[error("{0}")]
struct Message(String);

impl From<String> for Cause {
    fn from(message: String) -> Self {
        Self::of(Message(message))
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Self {
        Self::from(message.to_owned())
    }
}

impl std::fmt::Display for Cause {
    /// The error and each of its sources, `: ` between them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Cause {}

/// A store failure. A `Conflict` is a race lost (read again, decide again); `Unavailable` and
/// `Incomplete` may pass if tried again later; `Bug` will not.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    /// A condition of the commit failed; nothing was written.
    #[error("conflict: {0:?}")]
    Conflict(Conflict),
    /// The store could not be reached or answered with an error; the outcome may be unknown.
    #[error("store unavailable: {0}")]
    Unavailable(Cause),
    /// A read found a history with a gap: written part-way (a transaction's items become
    /// readable one by one), or broken. Nothing is decided on it; read again later.
    #[error("history incomplete: {0}")]
    Incomplete(String),
    /// What the store holds, or was asked to hold, breaks its contract: an item that does not
    /// read as what its key says, a commit over the limit, misnumbered events. A bug or a
    /// foreign write: trying again does not help.
    #[error("store contract broken: {0}")]
    Bug(String),
}

/// Each stream's events, read by position.
#[async_trait]
pub trait Streams: Send + Sync + 'static {
    /// Events of `stream` after `after`, in order (all of them: pages are followed).
    async fn read_stream(
        &self,
        stream: &StreamId,
        after: Version,
    ) -> Result<Vec<Event>, StoreError>;

    /// The event at `seq` of `stream`, if any.
    async fn read_event(
        &self,
        stream: &StreamId,
        seq: Version,
    ) -> Result<Option<Event>, StoreError>;

    /// At most `limit` (≥ 1) events of `stream` after `after`, in order, in one request of the
    /// store, and whether more follow. The events kept: those the table retired (archived and
    /// covered by a snapshot) are not there, so the first may be later than `after + 1`.
    async fn read_page(
        &self,
        stream: &StreamId,
        after: Version,
        limit: usize,
    ) -> Result<StreamPage, StoreError> {
        Ok(StreamPage::first(
            limit,
            self.read_stream(stream, after).await?,
        ))
    }
}

/// A page of a stream's events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamPage {
    /// The events, in order.
    pub events: Vec<Event>,
    /// Whether the stream has events after the last of them.
    pub more: bool,
}

impl StreamPage {
    /// The first `limit` of `events` (the stream's next ones, in order), and whether any was
    /// left out.
    pub fn first(limit: usize, mut events: Vec<Event>) -> Self {
        let more = events.len() > limit;
        events.truncate(limit);
        Self { events, more }
    }
}

/// Records by key (strongly consistent).
#[async_trait]
pub trait Records: Send + Sync + 'static {
    /// Records by key, in the order asked.
    async fn read_records(&self, keys: &[RecordKey]) -> Result<Vec<Option<Versioned>>, StoreError>;
}

/// The one way anything is written to streams and records: a transaction.
#[async_trait]
pub trait Transactions: Send + Sync + 'static {
    /// Writes all of a transaction or nothing; a failed condition is
    /// [`StoreError::Conflict`] and writes nothing.
    async fn write(&self, transaction: Transaction) -> Result<(), StoreError>;
}

/// Each stream's latest folded state.
#[async_trait]
pub trait Snapshots: Send + Sync + 'static {
    /// The latest snapshots of `streams`, in the order asked, in one round trip. Eventually
    /// consistent: a snapshot may lag its stream, never lead it.
    async fn read_snapshots(
        &self,
        streams: &[StreamId],
    ) -> Result<Vec<Option<SkuState>>, StoreError>;

    /// Stores `state` as the snapshot of `stream` unless one at the same or a later version is
    /// stored already: a snapshot never goes backwards.
    async fn save_snapshot(
        &self,
        stream: &StreamId,
        state: &SkuState,
    ) -> Result<SnapshotSave, StoreError>;
}

/// Hold events by when they expire.
#[async_trait]
pub trait ExpiryIndex: Send + Sync + 'static {
    /// Hold events of every stream (an item's or one of its buckets') whose `expires_at` is in
    /// `(after, through]`, oldest first, reading about `limit` of them from each partition of
    /// the index: what is read is complete up to the answer's `through`, which is later than
    /// `after` whenever the window holds anything, so a backlog is read a bounded slice at a
    /// time and every slice moves on.
    async fn lapsing_holds(
        &self,
        after: Timestamp,
        through: Timestamp,
        limit: usize,
    ) -> Result<Lapsing, StoreError>;
}

/// Hold events read from the expiry index: every one with `expires_at` in the window asked for
/// up to `through`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lapsing {
    /// The holds, oldest first.
    pub holds: Vec<LapsingHold>,
    /// How far the holds are complete: the window's end, or earlier when a partition had more.
    pub through: Timestamp,
}

/// One partition of the expiry index as read, oldest first; `more` when the read stopped
/// before the partition's end of the window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexPart {
    /// The hold events read.
    pub holds: Vec<LapsingHold>,
    /// Whether the partition holds more in the window.
    pub more: bool,
}

impl IndexPart {
    /// Whether a partition read so far (oldest first) may stop: `limit` holds read, and not
    /// all at one instant (the slice is complete only before its last instant, which must be
    /// later than its first for the sweep to move on).
    pub fn enough(holds: &[LapsingHold], limit: usize) -> bool {
        holds.len() >= limit
            && matches!((holds.first(), holds.last()), (Some(first), Some(last)) if first.expires_at < last.expires_at)
    }
}

impl Lapsing {
    /// The holds of `parts` that are complete: all of them up to `through`, or up to just
    /// before the last instant read in a partition that had more.
    pub fn of(parts: Vec<IndexPart>, through: Timestamp) -> Self {
        let through = parts
            .iter()
            .filter(|part| part.more)
            .filter_map(|part| part.holds.last())
            .map(|last| last.expires_at.plus_millis(-1))
            .fold(through, Ord::min);
        let mut holds: Vec<LapsingHold> = parts
            .into_iter()
            .flat_map(|part| part.holds)
            .filter(|hold| hold.expires_at <= through)
            .collect();
        holds.sort_by(|a, b| (a.expires_at, a).cmp(&(b.expires_at, b)));
        Self { holds, through }
    }
}

/// Letting archived events go.
#[async_trait]
pub trait Retirement: Send + Sync + 'static {
    /// Lets the store delete events `seqs` of `stream` from `delete_at` on (DynamoDB's TTL).
    /// Only for events that are archived and covered by a snapshot; events already gone are
    /// skipped.
    async fn retire_events(
        &self,
        stream: &StreamId,
        seqs: RangeInclusive<Version>,
        delete_at: Timestamp,
    ) -> Result<(), StoreError>;
}

/// The commands set aside for an operator.
#[async_trait]
pub trait ParkedIndex: Send + Sync + 'static {
    /// Every parked command (redriven ones too, until they are applied), oldest first. The
    /// table answers it from a sparse index, never a scan.
    async fn parked_commands(&self) -> Result<Vec<ParkedEntry>, StoreError>;
}

/// The command records the API keeps (for their dedupe window), for operators.
#[async_trait]
pub trait CommandHistory: Send + Sync + 'static {
    /// Every command record whose commands were accepted at or after `since`, by command id.
    /// A tool's read (the table answers it with a scan of its command records): the service
    /// never calls it.
    async fn commands_since(
        &self,
        since: Timestamp,
    ) -> Result<Vec<(CommandId, CommandRecord)>, StoreError>;
}

/// The whole event store (one DynamoDB table in production): every narrow port above. Adapters
/// implement the narrow ports; each use case takes only those it uses.
pub trait EventStore:
    Streams
    + Records
    + Transactions
    + Snapshots
    + ExpiryIndex
    + Retirement
    + ParkedIndex
    + CommandHistory
{
}

impl<T> EventStore for T where
    T: Streams
        + Records
        + Transactions
        + Snapshots
        + ExpiryIndex
        + Retirement
        + ParkedIndex
        + CommandHistory
{
}

/// An object store failure.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("object store unavailable: {0}")]
pub struct ObjectStoreError(pub String);

/// Cold storage of whole objects by key (S3 in production).
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Writes `bytes` at `key`, replacing what is there (private and encrypted at rest).
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), ObjectStoreError>;

    /// The object at `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ObjectStoreError>;

    /// Keys starting with `prefix`, in order (all pages).
    async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectStoreError>;

    /// The distinct "folders" right under `prefix` (ending in `/`), in order: keys cut after the
    /// first `/` that follows the prefix.
    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, ObjectStoreError>;
}

/// A notice board failure: the notices may not be published, so the change feed's batch must
/// not be acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("notices not published: {0}")]
pub struct PublishError(pub String);

/// Where the shop hears of the items' notices (the event bus in production).
#[async_trait]
pub trait NoticeBoard: Send + Sync + 'static {
    /// Returns once every notice is published, in order, or fails; a notice published before a
    /// failure may be published again (consumers drop a repeated id).
    async fn publish(&self, notices: &[Noticed]) -> Result<(), PublishError>;
}

/// A queue failure: the commands may not be durable, so the request must not be acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("command queue unavailable: {0}")]
pub struct QueueError(pub String);

/// The durable command queue, partitioned by SKU.
#[async_trait]
pub trait CommandQueue: Send + Sync + 'static {
    /// Returns once every command is durably queued, or fails.
    async fn send(&self, commands: &[Command]) -> Result<(), QueueError>;
}

/// The time source; the domain itself never reads it.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Timestamp::from_millis(millis)
    }
}

/// A clock that moves only when told to (tests, simulations).
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(start.millis())))
    }

    /// Moves the clock forward.
    pub fn advance_millis(&self, millis: i64) {
        self.0.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Error)]
    #[error("dispatch failure")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn an_unavailable_store_keeps_its_cause_and_shows_the_whole_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
        let err = StoreError::Unavailable(Cause::of(Outer(io)));
        assert_eq!(
            err.to_string(),
            "store unavailable: dispatch failure: connect timed out"
        );
        let StoreError::Unavailable(cause) = &err else {
            unreachable!()
        };
        assert!(cause.error().downcast_ref::<Outer>().is_some());
    }
}
