//! The flash sale, simulated: N processes (each an [`Inventory`] with its own cache, serving one
//! request at a time, as Lambda execution environments do) sell one item to an endless queue of
//! one-unit buyers, over a store that behaves like DynamoDB where it matters here
//! ([`StoreModel`]): every request takes a round trip, writes are conditional and transactions
//! all-or-nothing (the in-memory store's), and one partition key takes so many writes a second;
//! past that a write is throttled and the SDK tries it again after a back-off, as DynamoDB and
//! the AWS SDK for Rust do.
//!
//! Run it in a current-thread Tokio runtime with the clock paused (`start_paused`): time is
//! virtual, it advances only when every process waits on the store, so the figures are the
//! same on every machine and the run takes seconds whatever the virtual time. With the same
//! `seed` a run is the same run.
//!
//! The change feed is simulated too: every [`FEED_DELIVERY`] the snapshotter
//! ([`Snapshotter`], the real reaction) gets what was appended since, so buckets' snapshots
//! (the hints a reservation hunts with) lag as they do in production.
//!
//! Two designs sell: ours ([`Design::Ours`], the real [`Inventory::reserve`] on an item split
//! into K buckets) and the seed's ([`Design::Seed`]): read the whole history, fold it, one
//! conditional put, and on a conflict all of it again (with the same back-off as ours). The
//! seed's whole-history read is charged as the Query pages it takes (1 MB each) and their round
//! trips; its fold is kept between reads, since folding in the simulation is not what is
//! measured.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::app::ReserveRequest;
use crate::domain::decide::place_hold;
use crate::domain::{
    BucketCount, Caller, Change, ClientId, Event, HoldTerms, ItemAt, Line, Location, LocationId,
    LocationKind, PlacedLine, Quantity, ReservationId, Scope, Sku, SkuState, StreamId, Timestamp,
    TtlSeconds, Version,
};
use crate::error::AppError;
use crate::feed::Reaction;
use crate::memory::{MemoryQueue, MemoryStore};
use crate::ports::{
    Clock, ExpiryIndex, Lapsing, ParkedIndex, RecordKey, Records, Retirement, SnapshotSave,
    Snapshots, StoreError, StreamAppend, Streams, Transaction, Transactions, Versioned,
};
use crate::reactions::Snapshotter;
use crate::retry::Retry;
use crate::{Config, Inventory};

/// How often the simulated change feed delivers to the snapshotter (DynamoDB Streams to
/// Lambda: about this, under load).
pub const FEED_DELIVERY: Duration = Duration::from_millis(250);

/// Bytes of one Query page (DynamoDB reads at most 1 MB per page).
const QUERY_PAGE_BYTES: usize = 1 << 20;

/// Keys one BatchGetItem takes.
const BATCH_GET_KEYS: usize = 100;

/// Bytes DynamoDB counts for an event item beyond its JSON body (keys, attribute names).
const ITEM_OVERHEAD_BYTES: usize = 100;

/// Bytes one read request unit reads (strongly consistent), one write request unit writes.
const READ_UNIT_BYTES: usize = 4 << 10;
const WRITE_UNIT_BYTES: usize = 1 << 10;

/// What the simulated store does that matters to a flash sale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoreModel {
    /// One request's round trip, on average.
    pub round_trip: Duration,
    /// How much one round trip may differ from the average, as a fraction of it: each is drawn
    /// from `round_trip × [1 - jitter, 1 + jitter]` (DynamoDB's single-digit milliseconds vary).
    pub jitter: f64,
    /// Writes a second one partition key takes (DynamoDB: 1,000); past it a write is throttled
    /// (a failed conditional write counts, as it consumes capacity in DynamoDB).
    pub writes_per_key_per_second: u32,
    /// Attempts the SDK makes of a throttled request (its standard retry mode: 3).
    pub sdk_attempts: u32,
    /// The SDK's first back-off window; the n-th retry waits a random part of this times 2^n
    /// (its standard retry mode: 1 s).
    pub sdk_first_backoff: Duration,
}

impl Default for StoreModel {
    fn default() -> Self {
        Self {
            round_trip: Duration::from_millis(5),
            jitter: 0.5,
            writes_per_key_per_second: 1_000,
            sdk_attempts: 3,
            sdk_first_backoff: Duration::from_secs(1),
        }
    }
}

/// Who a request was made for: the counts are kept apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Shoppers,
    Reactions,
}

/// What the store counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests of the shoppers' processes, throttled ones included.
    pub shopper_requests: u64,
    /// Requests of the reactions (the snapshotter).
    pub reaction_requests: u64,
    /// Requests throttled (each attempt counts).
    pub throttled: u64,
    /// The shoppers' requests by kind: stream tails read (Query, pages included).
    pub tail_reads: u64,
    /// Snapshots and records read in batches (BatchGetItem).
    pub batch_reads: u64,
    /// Writes (PutItem, TransactWriteItems), throttled attempts included.
    pub writes: u64,
    /// Read request units, every role's, as DynamoDB on demand bills them: a Query its items'
    /// bytes in 4 KB (at least one), a batch read one per key (every item read here is under
    /// 4 KB), all as strongly consistent reads (snapshots are read eventually consistent, at
    /// half: an upper bound by their share).
    pub read_units: u64,
    /// Write request units, every role's: an item's bytes in 1 KB, twice in a transaction; a
    /// write that lost its condition is billed too, a throttled one is not.
    pub write_units: u64,
}

/// What a request is, for the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tail,
    Batch,
    Write,
    Other,
}

#[derive(Debug, Default)]
struct Shared {
    counts: Mutex<Counts>,
    /// Writes per partition key in the current virtual second.
    writes: Mutex<HashMap<String, (u64, u32)>>,
    /// Units held by the hold events written, all streams together.
    held: AtomicI64,
    /// JSON bytes of each stream's events (the seed design's Query reads all of them).
    stream_bytes: Mutex<HashMap<StreamId, usize>>,
    /// The seed design's fold of each stream so far.
    folds: Mutex<HashMap<StreamId, SkuState>>,
}

/// The in-memory store behind a round trip, a per-key write cap and counters: a handle per
/// role over one shared store.
#[derive(Debug, Clone)]
pub struct SimStore {
    inner: Arc<MemoryStore>,
    model: StoreModel,
    started: Instant,
    shared: Arc<Shared>,
    role: Role,
}

impl SimStore {
    /// The simulated store over `inner`, counting for the shoppers.
    pub fn new(inner: Arc<MemoryStore>, model: StoreModel) -> Self {
        Self {
            inner,
            model,
            started: Instant::now(),
            shared: Arc::default(),
            role: Role::Shoppers,
        }
    }

    fn for_reactions(&self) -> Self {
        Self {
            role: Role::Reactions,
            ..self.clone()
        }
    }

    /// What was counted so far.
    pub fn counts(&self) -> Counts {
        *lock(&self.shared.counts)
    }

    /// Units held by every hold event written so far.
    pub fn held(&self) -> i64 {
        self.shared.held.load(Ordering::SeqCst)
    }

    fn bill(&self, read_units: usize, write_units: usize) {
        let mut counts = lock(&self.shared.counts);
        counts.read_units += read_units as u64;
        counts.write_units += write_units as u64;
    }

    fn count(&self, kind: Kind, requests: usize) {
        let mut counts = lock(&self.shared.counts);
        let requests = requests as u64;
        match self.role {
            Role::Shoppers => {
                counts.shopper_requests += requests;
                match kind {
                    Kind::Tail => counts.tail_reads += requests,
                    Kind::Batch => counts.batch_reads += requests,
                    Kind::Write => counts.writes += requests,
                    Kind::Other => {}
                }
            }
            Role::Reactions => counts.reaction_requests += requests,
        }
    }

    /// One request: its round trip, counted.
    async fn round_trip(&self, kind: Kind) {
        self.round_trips(kind, 1).await;
    }

    /// `requests` made one after another (pages).
    async fn round_trips(&self, kind: Kind, requests: usize) {
        self.count(kind, requests);
        let spread = self.model.jitter * (2.0 * fastrand::f64() - 1.0);
        let each = self.model.round_trip.mul_f64(1.0 + spread);
        tokio::time::sleep(each * requests as u32).await;
    }

    /// Takes one write of each key from this second's capacity, or none if any is spent.
    fn take_capacity(&self, keys: &[String]) -> bool {
        let second = self.started.elapsed().as_secs();
        let cap = self.model.writes_per_key_per_second;
        let mut writes = lock(&self.shared.writes);
        let used = |writes: &HashMap<String, (u64, u32)>, key: &String| match writes.get(key) {
            Some((at, count)) if *at == second => *count,
            _ => 0,
        };
        let mut wanted: HashMap<&String, u32> = HashMap::new();
        for key in keys {
            *wanted.entry(key).or_default() += 1;
        }
        if wanted
            .iter()
            .any(|(key, more)| used(&writes, key) + more > cap)
        {
            return false;
        }
        for (key, more) in wanted {
            let count = used(&writes, key) + more;
            writes.insert(key.clone(), (second, count));
        }
        true
    }

    /// A write request to `keys`: throttled past the cap and tried again by the SDK after its
    /// back-off, `Unavailable` once its attempts are spent.
    async fn write_request(&self, keys: &[String]) -> Result<(), StoreError> {
        for attempt in 0..self.model.sdk_attempts {
            self.round_trip(Kind::Write).await;
            if self.take_capacity(keys) {
                return Ok(());
            }
            lock(&self.shared.counts).throttled += 1;
            if attempt + 1 < self.model.sdk_attempts {
                let window = self.model.sdk_first_backoff * 2u32.pow(attempt);
                tokio::time::sleep(window.mul_f64(fastrand::f64())).await;
            }
        }
        Err(StoreError::Unavailable(
            "throttled: the partition's write capacity is spent (ProvisionedThroughputExceeded)"
                .into(),
        ))
    }

    /// The seed design's read: the whole history of `sku`, folded. Charged as the Query pages
    /// it takes, one round trip each.
    pub async fn read_history(&self, sku: &StreamId) -> Result<SkuState, StoreError> {
        let bytes = lock(&self.shared.stream_bytes)
            .get(sku)
            .copied()
            .unwrap_or(0);
        self.round_trips(Kind::Tail, 1 + bytes / QUERY_PAGE_BYTES)
            .await;
        self.bill(read_units(bytes), 0);
        let mut state = lock(&self.shared.folds)
            .get(sku)
            .cloned()
            .unwrap_or_default();
        for event in self.inner.read_stream(sku, state.version).await? {
            state.evolve(&event);
        }
        lock(&self.shared.folds).insert(sku.clone(), state.clone());
        Ok(state)
    }

    fn record_written(&self, transaction: &Transaction) {
        let mut bytes = lock(&self.shared.stream_bytes);
        for append in &transaction.appends {
            for event in &append.events {
                if let Change::HoldPlaced { quantity, .. } = &event.change {
                    self.shared
                        .held
                        .fetch_add(quantity.units(), Ordering::SeqCst);
                }
                let size = serde_json::to_vec(event).map_or(0, |json| json.len());
                *bytes.entry(append.stream.clone()).or_default() += size + ITEM_OVERHEAD_BYTES;
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A Query's read units for `bytes` of items.
fn read_units(bytes: usize) -> usize {
    bytes.div_ceil(READ_UNIT_BYTES).max(1)
}

/// An item's write units: its bytes (JSON body and key overhead) in 1 KB.
fn item_write_units(body: &impl serde::Serialize) -> usize {
    let bytes = serde_json::to_vec(body).map_or(0, |json| json.len()) + ITEM_OVERHEAD_BYTES;
    bytes.div_ceil(WRITE_UNIT_BYTES)
}

/// What `transaction` is billed when written: as one PutItem if it is one event (as the
/// DynamoDB adapter writes it), else as TransactWriteItems (twice each item).
fn write_units(transaction: &Transaction) -> usize {
    let items: usize = transaction
        .appends
        .iter()
        .flat_map(|append| append.events.iter())
        .map(item_write_units)
        .chain(
            transaction
                .records
                .iter()
                .map(|write| item_write_units(&write.record)),
        )
        .sum();
    if transaction.items() == 1 && transaction.records.is_empty() {
        items
    } else {
        2 * items
    }
}

fn batches(keys: usize) -> usize {
    keys.div_ceil(BATCH_GET_KEYS).max(1)
}

#[async_trait]
impl Streams for SimStore {
    async fn read_stream(&self, sku: &StreamId, after: Version) -> Result<Vec<Event>, StoreError> {
        self.round_trip(Kind::Tail).await;
        let events = self.inner.read_stream(sku, after).await?;
        let bytes: usize = events
            .iter()
            .map(|event| {
                serde_json::to_vec(event).map_or(0, |json| json.len()) + ITEM_OVERHEAD_BYTES
            })
            .sum();
        self.bill(read_units(bytes), 0);
        Ok(events)
    }

    async fn read_event(&self, sku: &StreamId, seq: Version) -> Result<Option<Event>, StoreError> {
        self.round_trip(Kind::Other).await;
        self.bill(1, 0);
        self.inner.read_event(sku, seq).await
    }
}

#[async_trait]
impl Records for SimStore {
    async fn read_records(&self, keys: &[RecordKey]) -> Result<Vec<Option<Versioned>>, StoreError> {
        self.round_trips(Kind::Batch, batches(keys.len())).await;
        self.bill(keys.len(), 0);
        self.inner.read_records(keys).await
    }
}

#[async_trait]
impl Transactions for SimStore {
    async fn write(&self, transaction: Transaction) -> Result<(), StoreError> {
        let keys: Vec<String> = transaction
            .appends
            .iter()
            .flat_map(|append| append.events.iter().map(|_| append.stream.to_string()))
            .chain(
                transaction
                    .records
                    .iter()
                    .map(|write| format!("{:?}", write.key)),
            )
            .collect();
        self.write_request(&keys).await?;
        self.bill(0, write_units(&transaction));
        let written = self.inner.write(transaction.clone()).await;
        if written.is_ok() {
            self.record_written(&transaction);
        }
        written
    }
}

#[async_trait]
impl Snapshots for SimStore {
    async fn read_snapshots(&self, skus: &[StreamId]) -> Result<Vec<Option<SkuState>>, StoreError> {
        self.round_trips(Kind::Batch, batches(skus.len())).await;
        self.bill(skus.len(), 0);
        self.inner.read_snapshots(skus).await
    }

    async fn save_snapshot(
        &self,
        sku: &StreamId,
        state: &SkuState,
    ) -> Result<SnapshotSave, StoreError> {
        self.write_request(&[format!("snap#{sku}")]).await?;
        self.bill(0, item_write_units(state));
        self.inner.save_snapshot(sku, state).await
    }
}

#[async_trait]
impl ExpiryIndex for SimStore {
    async fn lapsing_holds(
        &self,
        after: Timestamp,
        through: Timestamp,
        limit: usize,
    ) -> Result<Lapsing, StoreError> {
        self.round_trip(Kind::Other).await;
        self.inner.lapsing_holds(after, through, limit).await
    }
}

#[async_trait]
impl Retirement for SimStore {
    async fn retire_events(
        &self,
        sku: &StreamId,
        seqs: std::ops::RangeInclusive<Version>,
        delete_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.round_trip(Kind::Other).await;
        self.inner.retire_events(sku, seqs, delete_at).await
    }
}

#[async_trait]
impl ParkedIndex for SimStore {
    async fn parked_commands(&self) -> Result<Vec<crate::ports::ParkedEntry>, StoreError> {
        self.round_trip(Kind::Other).await;
        self.inner.parked_commands().await
    }
}

#[async_trait]
impl crate::ports::CommandHistory for SimStore {
    async fn commands_since(
        &self,
        since: Timestamp,
    ) -> Result<Vec<(crate::domain::CommandId, crate::ports::CommandRecord)>, StoreError> {
        self.round_trip(Kind::Other).await;
        self.inner.commands_since(since).await
    }
}

/// The clock of a simulation: Tokio's (virtual) time from a fixed start.
#[derive(Debug, Clone)]
pub struct VirtualClock {
    started: Instant,
    epoch: Timestamp,
}

impl VirtualClock {
    /// A clock reading `epoch` now.
    pub fn new(epoch: Timestamp) -> Self {
        Self {
            started: Instant::now(),
            epoch,
        }
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Timestamp {
        let elapsed = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        Timestamp::from_millis(self.epoch.millis().saturating_add(elapsed))
    }
}

/// Which design sells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Design {
    /// The seed's: read the whole history, fold, one conditional put; on a conflict, again.
    Seed,
    /// Ours, the item split into this many buckets (1: one stream, as every item starts).
    Ours(BucketCount),
}

impl std::fmt::Display for Design {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Design::Seed => write!(f, "seed design"),
            Design::Ours(count) => write!(f, "ours, K = {}", count.get()),
        }
    }
}

/// One flash sale to simulate.
#[derive(Debug, Clone, Copy)]
pub struct FlashSale {
    /// Who sells.
    pub design: Design,
    /// Concurrent processes, each serving one buyer at a time.
    pub processes: usize,
    /// Units of the item.
    pub units: i64,
    /// Warehouses the units are spread over evenly (1: the default location alone; more: the
    /// default and `wh-2`, `wh-3`… after it by priority), each laid out as `design` says;
    /// buyers' lines name none and are allocated.
    pub locations: usize,
    /// The store's behaviour.
    pub model: StoreModel,
    /// The random seed (homes, back-offs, reservation nonces).
    pub seed: u64,
    /// The sale stops here if it has not sold out (a design that cannot finish).
    pub time_limit: Duration,
}

/// What a flash sale came to.
#[derive(Debug, Clone, PartialEq)]
pub struct SaleReport {
    /// The sale simulated.
    pub design: Design,
    /// Its processes.
    pub processes: usize,
    /// Units on sale.
    pub units: i64,
    /// Buyers answered 201.
    pub sold: i64,
    /// Units the store holds holds for (all streams together): more than `units` is an
    /// oversell, fewer than `sold` a lost acknowledgement.
    pub held_in_store: i64,
    /// Buyers answered 409 while the store still had units for sale.
    pub refused_with_stock: u64,
    /// Buyers answered 503 (contention spent, or the store throttled past the SDK's retries).
    pub unavailable: u64,
    /// From the first buyer to the last unit sold (virtual).
    pub duration: Duration,
    /// How long the last 1% of the units took to sell.
    pub last_percent: Duration,
    /// Whether it sold out within the time limit.
    pub sold_out: bool,
    /// The store's counts.
    pub counts: Counts,
    /// Every answer's time, sorted.
    answers: Vec<Duration>,
}

impl SaleReport {
    /// Units sold a second.
    pub fn sales_per_second(&self) -> f64 {
        self.sold as f64 / self.duration.as_secs_f64().max(1e-9)
    }

    /// Shoppers' store requests per unit sold.
    pub fn requests_per_sale(&self) -> f64 {
        self.counts.shopper_requests as f64 / self.sold.max(1) as f64
    }

    /// All store requests (the reactions' too) per unit sold.
    pub fn all_requests_per_sale(&self) -> f64 {
        (self.counts.shopper_requests + self.counts.reaction_requests) as f64
            / self.sold.max(1) as f64
    }

    /// Buyers answered, whatever the answer.
    pub fn answered(&self) -> usize {
        self.answers.len()
    }

    /// Milliseconds the answers took, each rounded up to the millisecond as Lambda bills a
    /// request: a process is busy for the whole of an answer, its waits included.
    pub fn billed_millis(&self) -> u64 {
        self.answers
            .iter()
            .map(|answer| u64::try_from(answer.as_micros().div_ceil(1_000)).unwrap_or(u64::MAX))
            .sum()
    }

    /// Units held beyond the stock.
    pub fn oversold(&self) -> i64 {
        (self.held_in_store - self.units).max(0)
    }

    /// The answer time below which `percent` of the answers came.
    pub fn answer_percentile(&self, percent: f64) -> Duration {
        if self.answers.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((percent / 100.0) * self.answers.len() as f64).ceil() as usize;
        self.answers[rank.clamp(1, self.answers.len()) - 1]
    }
}

/// How the sale goes, shared by its processes.
#[derive(Debug, Default)]
struct Progress {
    sold: AtomicI64,
    refused_with_stock: AtomicU64,
    unavailable: AtomicU64,
    over: AtomicBool,
    answers: Mutex<Vec<Duration>>,
    last_sale: Mutex<Option<Instant>>,
    ninety_ninth_percent: Mutex<Option<Instant>>,
}

/// The item on sale.
pub fn hot_item() -> Sku {
    Sku::parse("FLASH-SALE").expect("a valid SKU")
}

const EPOCH: Timestamp = Timestamp::from_millis(1_764_000_000_000);

impl FlashSale {
    /// Runs the sale on a runtime of its own: one thread, the clock paused (virtual time).
    pub fn simulate(self) -> SaleReport {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime")
            .block_on(self.run())
    }

    /// Runs the sale. Call it inside a current-thread runtime with the clock paused.
    pub async fn run(self) -> SaleReport {
        fastrand::seed(self.seed);
        let clock: Arc<dyn Clock> = Arc::new(VirtualClock::new(EPOCH));
        let memory = Arc::new(MemoryStore::new());
        self.stock(&memory, &clock).await;
        let store = SimStore::new(memory.clone(), self.model);
        let feed = tokio::spawn(deliver_feed(memory.clone(), store.for_reactions()));
        let progress = Arc::new(Progress::default());
        let started = Instant::now();
        let mut processes = Vec::with_capacity(self.processes);
        for index in 0..self.processes {
            let shopper = Shopper::new(self.design, index, &store, &clock);
            processes.push(tokio::spawn(shopper.sell(
                self.units,
                store.clone(),
                progress.clone(),
                started + self.time_limit,
            )));
        }
        for process in processes {
            process.await.expect("a shopper's process ran to its end");
        }
        feed.abort();
        let last_sale = lock(&progress.last_sale).unwrap_or(started);
        let last_percent = lock(&progress.ninety_ninth_percent)
            .map_or(Duration::ZERO, |at| last_sale.saturating_duration_since(at));
        let mut answers = std::mem::take(&mut *lock(&progress.answers));
        answers.sort();
        let sold = progress.sold.load(Ordering::SeqCst);
        SaleReport {
            design: self.design,
            processes: self.processes,
            units: self.units,
            sold,
            held_in_store: store.held(),
            refused_with_stock: progress.refused_with_stock.load(Ordering::SeqCst),
            unavailable: progress.unavailable.load(Ordering::SeqCst),
            duration: last_sale.saturating_duration_since(started),
            last_percent,
            sold_out: sold == self.units,
            counts: store.counts(),
            answers,
        }
    }

    /// The item received and laid out, and its snapshots taken, before the sale opens (no
    /// round trips: the store is reached directly).
    async fn stock(&self, memory: &Arc<MemoryStore>, clock: &Arc<dyn Clock>) {
        let queue = Arc::new(MemoryQueue::new());
        let admin = Caller::local_admin();
        let inventory = Inventory::new(
            memory.clone(),
            queue.clone(),
            clock.clone(),
            Config::default(),
        );
        let warehouses = self.locations.max(1);
        for index in 0..warehouses {
            let location = if index == 0 {
                LocationId::default()
            } else {
                let id = LocationId::parse(&format!("wh-{}", index + 1)).expect("a location id");
                let warehouse = Location::new(
                    id.clone(),
                    "Warehouse",
                    LocationKind::Warehouse,
                    true,
                    false,
                    i64::try_from(index).unwrap_or(0),
                    true,
                )
                .expect("a location");
                inventory
                    .put_location(warehouse)
                    .await
                    .expect("the location is registered");
                id
            };
            // The first warehouse takes what an even split leaves over.
            let share = self.units / warehouses as i64
                + if index == 0 {
                    self.units % warehouses as i64
                } else {
                    0
                };
            let at = ItemAt {
                sku: hot_item(),
                location: location.clone(),
            };
            // Fewer units than warehouses: the last ones have none.
            if share == 0 {
                continue;
            }
            let quantity = Quantity::new(share).expect("units within a receipt's limit");
            inventory
                .receive_stock(
                    at.clone(),
                    quantity,
                    crate::domain::Annotation::received(None),
                    None,
                    &admin,
                )
                .await
                .expect("the receipt is accepted");
            if let Design::Ours(count) = self.design {
                inventory
                    .set_buckets(at, count, None, &admin)
                    .await
                    .expect("the layout is accepted");
            }
        }
        loop {
            let commands = queue.try_receive(100);
            if commands.is_empty() {
                break;
            }
            inventory
                .apply_commands(&hot_item(), &commands)
                .await
                .expect("the stock is applied");
        }
        let (changes, _) = memory.feed_since(0);
        let failed = Snapshotter::new(memory.clone()).react(&changes).await;
        assert!(failed.is_empty(), "the first snapshots are taken");
    }
}

/// The change feed: what was appended, to the snapshotter, every [`FEED_DELIVERY`].
async fn deliver_feed(memory: Arc<MemoryStore>, store: SimStore) {
    let snapshotter = Snapshotter::new(Arc::new(store));
    let (_, mut delivered) = memory.feed_since(0);
    loop {
        tokio::time::sleep(FEED_DELIVERY).await;
        let (changes, next) = memory.feed_since(delivered);
        delivered = next;
        if !changes.is_empty() {
            snapshotter.react(&changes).await;
        }
    }
}

/// One process of the sale.
enum Shopper {
    Ours {
        inventory: Box<Inventory>,
        caller: Caller,
    },
    Seed {
        store: SimStore,
        clock: Arc<dyn Clock>,
        caller: Caller,
    },
}

/// How one buyer was answered.
enum Answer {
    Sold,
    Refused,
    Unavailable,
}

impl Shopper {
    fn new(design: Design, index: usize, store: &SimStore, clock: &Arc<dyn Clock>) -> Self {
        let client = ClientId::parse(&format!("storefront-{index}")).expect("a client id");
        let caller = Caller::new(client, [Scope::Reserve]);
        match design {
            Design::Ours(_) => Shopper::Ours {
                inventory: Box::new(Inventory::new(
                    Arc::new(store.clone()),
                    Arc::new(MemoryQueue::new()),
                    clock.clone(),
                    Config::default(),
                )),
                caller,
            },
            Design::Seed => Shopper::Seed {
                store: store.clone(),
                clock: clock.clone(),
                caller,
            },
        }
    }

    /// Serves buyers one after another until one is refused with nothing left (or time runs
    /// out).
    async fn sell(self, units: i64, store: SimStore, progress: Arc<Progress>, deadline: Instant) {
        while !progress.over.load(Ordering::SeqCst) && Instant::now() < deadline {
            let asked = Instant::now();
            let answer = self.serve_one_buyer().await;
            lock(&progress.answers).push(asked.elapsed());
            match answer {
                Answer::Sold => {
                    let sold = progress.sold.fetch_add(1, Ordering::SeqCst) + 1;
                    *lock(&progress.last_sale) = Some(Instant::now());
                    if sold == units - units / 100 {
                        *lock(&progress.ninety_ninth_percent) = Some(Instant::now());
                    }
                }
                Answer::Refused if store.held() < units => {
                    progress.refused_with_stock.fetch_add(1, Ordering::SeqCst);
                }
                Answer::Refused => progress.over.store(true, Ordering::SeqCst),
                Answer::Unavailable => {
                    progress.unavailable.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    async fn serve_one_buyer(&self) -> Answer {
        let line = Line::of(hot_item(), Quantity::new(1).expect("one unit"));
        let answer = match self {
            Shopper::Ours { inventory, caller } => {
                let request = ReserveRequest::new(vec![line], TtlSeconds::DEFAULT, None)
                    .expect("a valid cart");
                inventory.reserve(request, caller).await.map(|_| ())
            }
            Shopper::Seed {
                store,
                clock,
                caller,
            } => seed_reserve(store, clock.as_ref(), caller, line).await,
        };
        match answer {
            Ok(()) => Answer::Sold,
            Err(AppError::InsufficientStock { .. }) => Answer::Refused,
            Err(AppError::Contention | AppError::Unavailable(_)) => Answer::Unavailable,
            Err(other) => panic!("a buyer answered {other:?}"),
        }
    }
}

/// The seed design's reservation of one line: read the whole history, fold, decide, one
/// conditional put; on a conflict, all of it again after the same back-off as ours.
async fn seed_reserve(
    store: &SimStore,
    clock: &dyn Clock,
    caller: &Caller,
    line: Line,
) -> Result<(), AppError> {
    let config = Config::default();
    let mut retry = None;
    loop {
        let attempt = Instant::now();
        let stream = StreamId::of(&line.sku);
        let state = store.read_history(&stream).await?;
        let now = state.now(clock.now());
        let id = ReservationId::new(stream.clone(), state.version + 1, fastrand::u64(..));
        let terms = HoldTerms::new(now, TtlSeconds::DEFAULT, config.release_grace_secs);
        let change = place_hold(
            &state,
            &id,
            line.quantity,
            terms,
            vec![PlacedLine {
                stream: stream.clone(),
                quantity: line.quantity,
            }],
            caller.client_id(),
            now,
        )
        .map_err(|refusal| AppError::refused_hold(&line.sku, refusal))?;
        let append = StreamAppend::after(&state, &stream, now, vec![change]);
        match store.write(Transaction::appends(vec![append])).await {
            Ok(()) => return Ok(()),
            Err(StoreError::Conflict(_)) => {
                let retry =
                    retry.get_or_insert_with(|| Retry::decision(&config, attempt.elapsed()));
                if !retry.wait().await {
                    return Err(AppError::Contention);
                }
            }
            Err(err) => return Err(err.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_key_takes_its_cap_of_writes_a_second_and_is_throttled_past_it() {
        let model = StoreModel {
            writes_per_key_per_second: 3,
            sdk_attempts: 1,
            ..StoreModel::default()
        };
        let store = SimStore::new(Arc::new(MemoryStore::new()), model);
        let key = ["sku#A".to_owned()];
        for _ in 0..3 {
            assert!(store.write_request(&key).await.is_ok());
        }
        assert!(store.write_request(&key).await.is_err(), "the fourth");
        assert!(
            store.write_request(&["sku#B".to_owned()]).await.is_ok(),
            "another key"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(store.write_request(&key).await.is_ok(), "the next second");
        assert_eq!(
            store.counts(),
            Counts {
                shopper_requests: 6,
                throttled: 1,
                writes: 6,
                ..Counts::default()
            }
        );
    }
}
