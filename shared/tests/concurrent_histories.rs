//! Randomized concurrent histories against the service on the memory store.
//!
//! Each history runs 8 clients and a queue processor as tasks on one thread. The store yields at
//! random points (so tasks interleave inside decisions), fails some commits before writing and
//! loses the answer of others after writing; the queue fails some sends and the processor
//! delivers some commands twice. Clients retry with their idempotency keys, checkout, release,
//! extend and move the clock. After each history we check, from the events themselves:
//! - no decision ever granted more than was available at its sequence point;
//! - every acknowledged reservation (201) and command (202) is reflected exactly once;
//! - fold(snapshot at a random prefix) + tail == fold(all), and the service's reads agree;
//! - with the feed delivered late, repeated and out of order to the snapshotter and archiver,
//!   and expiry sweeps racing the clients: snapshots and the read view converge to the fold,
//!   the archive holds every event, and every lapsed hold expired exactly once;
//! - with S3 puts failing now and then: no event is given a time to live before the archive
//!   holds it.
//!
//! `HISTORIES=n` runs more (default 1,000); `HISTORY_SEED=s` replays one history.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use inventory_core::app::{CommandStatus, ReserveRequest};
use inventory_core::archive::Archive;
use inventory_core::domain::{
    Caller, Change, ClientId, Command, CommandId, Event, HoldLine, HoldStatus, IdempotencyKey,
    Line, Quantity, ReservationId, Scope, Sku, SkuState, Timestamp, TtlSeconds, Version,
};
use inventory_core::feed::{FeedChange, Reaction};
use inventory_core::memory::{MemoryObjects, MemoryQueue, MemoryStore};
use inventory_core::ports::{
    Clock, CommandQueue, ExpiryIndex, LapsingHold, ManualClock, ObjectStore, ObjectStoreError,
    ParkedIndex, QueueError, Record, RecordKey, Records, Retirement, SnapshotSave, Snapshots,
    StoreError, Streams, Transaction, Transactions, Versioned,
};
use inventory_core::reactions::{Archiver, Snapshotter};
use inventory_core::{AppError, Config, Inventory};

const CLIENTS: usize = 8;
const OPS_PER_CLIENT: usize = 12;
const SKUS: [&str; 3] = ["A", "B", "C"];
/// Batches the processor may take before a history counts as stuck.
const MAX_BATCHES: usize = 2_000;
/// Time between two polls of the queue.
const POLL_MILLIS: i64 = 250;
/// Failed applications (injected failures are retried) before a history counts as stuck.
const MAX_FAILED_APPLIES: usize = 100;
const START: Timestamp = Timestamp::from_millis(1_700_000_000_000);

#[test]
fn concurrent_histories_never_oversell_and_reflect_every_acknowledgement_exactly_once() {
    let histories: u64 = std::env::var("HISTORIES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    let seeds: Vec<u64> = match std::env::var("HISTORY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => (0..histories).collect(),
    };
    let mut totals = Totals::default();
    for seed in seeds {
        // Paused time: retry back-off sleeps pass instantly once every task waits.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        let outcome = runtime.block_on(run_history(seed));
        match outcome {
            Ok(stats) => totals.add(&stats),
            Err(violation) => panic!(
                "history {seed} violated a promise: {violation}\nreplay with HISTORY_SEED={seed}"
            ),
        }
    }
    println!("{totals:?}");
    assert!(totals.reservations > 0 && totals.commands > 0 && totals.lost_answers > 0);
    assert!(totals.refused > 0, "histories should reach sold-out states");
}

#[derive(Debug, Default)]
struct Totals {
    histories: u64,
    reservations: usize,
    refused: usize,
    commands: usize,
    lost_answers: usize,
    events: usize,
}

impl Totals {
    fn add(&mut self, stats: &Stats) {
        self.histories += 1;
        self.reservations += stats.reservations;
        self.refused += stats.refused;
        self.commands += stats.commands;
        self.lost_answers += stats.lost_answers;
        self.events += stats.events;
    }
}

#[derive(Debug, Default)]
struct Stats {
    reservations: usize,
    refused: usize,
    commands: usize,
    lost_answers: usize,
    events: usize,
}

tokio::task_local! {
    /// The idempotency key of the reservation request a client task is making, if any.
    static RESERVING_WITH_KEY: Option<String>;
}

/// The memory store with interleavings and failures injected.
struct ChaosStore {
    inner: MemoryStore,
    rng: Mutex<fastrand::Rng>,
    chaos: AtomicBool,
    /// Every commit that was written, with whether its answer was lost.
    written: Mutex<Vec<(Transaction, bool)>>,
    /// Reservations written per idempotency key (whatever the service did with the key).
    placed_per_key: Mutex<HashMap<String, usize>>,
    /// Every snapshot saved, per SKU: an eventually consistent read may return an older one.
    saved_snapshots: Mutex<HashMap<Sku, Vec<SkuState>>>,
    /// The archive's objects, to check that no event is retired before it is archived.
    archived: Arc<MemoryObjects>,
    /// Events given a time to live while the archive did not hold them.
    retired_unarchived: Mutex<Vec<String>>,
}

impl ChaosStore {
    fn roll(&self, probability: f64) -> bool {
        self.chaos.load(Ordering::SeqCst) && self.rng.lock().unwrap().f64() < probability
    }

    async fn interleave(&self) {
        let yields = self.rng.lock().unwrap().usize(0..3);
        for _ in 0..yields {
            tokio::task::yield_now().await;
        }
    }
}

#[async_trait]
impl Streams for ChaosStore {
    async fn read_stream(&self, sku: &Sku, after: Version) -> Result<Vec<Event>, StoreError> {
        self.interleave().await;
        self.inner.read_stream(sku, after).await
    }

    async fn read_event(&self, sku: &Sku, seq: Version) -> Result<Option<Event>, StoreError> {
        self.interleave().await;
        self.inner.read_event(sku, seq).await
    }
}

#[async_trait]
impl Records for ChaosStore {
    async fn read_records(&self, keys: &[RecordKey]) -> Result<Vec<Option<Versioned>>, StoreError> {
        self.interleave().await;
        self.inner.read_records(keys).await
    }
}

#[async_trait]
impl Transactions for ChaosStore {
    async fn write(&self, transaction: Transaction) -> Result<(), StoreError> {
        self.interleave().await;
        if self.roll(0.03) {
            return Err(StoreError::Unavailable("injected: nothing written".into()));
        }
        self.inner.write(transaction.clone()).await?;
        let lost = self.roll(0.05);
        let places = transaction
            .appends
            .iter()
            .flat_map(|a| &a.events)
            .any(|e| matches!(e.change, Change::HoldPlaced { .. }));
        if let Ok(Some(key)) = RESERVING_WITH_KEY.try_with(Clone::clone) {
            if places {
                *self.placed_per_key.lock().unwrap().entry(key).or_default() += 1;
            }
        }
        self.written.lock().unwrap().push((transaction, lost));
        self.interleave().await;
        if lost {
            return Err(StoreError::Unavailable("injected: answer lost".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl Snapshots for ChaosStore {
    async fn read_snapshots(&self, skus: &[Sku]) -> Result<Vec<Option<SkuState>>, StoreError> {
        self.interleave().await;
        let mut found = self.inner.read_snapshots(skus).await?;
        // Eventually consistent reads: now and then an older snapshot, or none yet.
        for (sku, snapshot) in skus.iter().zip(found.iter_mut()) {
            if self.roll(0.2) {
                let saved = self.saved_snapshots.lock().unwrap();
                let older = saved.get(sku).map_or(&[][..], Vec::as_slice);
                let pick = self.rng.lock().unwrap().usize(0..=older.len());
                *snapshot = older.get(pick).cloned();
            }
        }
        Ok(found)
    }

    async fn save_snapshot(&self, sku: &Sku, state: &SkuState) -> Result<SnapshotSave, StoreError> {
        self.interleave().await;
        if self.roll(0.03) {
            return Err(StoreError::Unavailable("injected: nothing written".into()));
        }
        let saved = self.inner.save_snapshot(sku, state).await?;
        if saved == SnapshotSave::Saved {
            let mut history = self.saved_snapshots.lock().unwrap();
            let versions = history.entry(sku.clone()).or_default();
            let last = versions.last().map(|s| s.version);
            assert!(
                last.is_none_or(|last| last < state.version),
                "{sku}: the snapshot went back from {last:?} to {}",
                state.version
            );
            versions.push(state.clone());
        }
        if self.roll(0.05) {
            return Err(StoreError::Unavailable("injected: answer lost".into()));
        }
        Ok(saved)
    }
}

#[async_trait]
impl ExpiryIndex for ChaosStore {
    async fn lapsing_holds(
        &self,
        after: Timestamp,
        through: Timestamp,
    ) -> Result<Vec<LapsingHold>, StoreError> {
        self.interleave().await;
        if self.roll(0.03) {
            return Err(StoreError::Unavailable(
                "injected: index unavailable".into(),
            ));
        }
        self.inner.lapsing_holds(after, through).await
    }
}

#[async_trait]
impl Retirement for ChaosStore {
    async fn retire_events(
        &self,
        sku: &Sku,
        seqs: std::ops::RangeInclusive<Version>,
        delete_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.interleave().await;
        let archive = Archive::new(self.archived.clone());
        let held = archive
            .read_sku(sku)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        if let Some(seq) = seqs.clone().find(|seq| !held.events.contains_key(seq)) {
            let msg = format!("{sku}: event {seq} retired before it was archived");
            self.retired_unarchived.lock().unwrap().push(msg);
        }
        self.inner.retire_events(sku, seqs, delete_at).await
    }
}

#[async_trait]
impl ParkedIndex for ChaosStore {
    async fn parked_commands(&self) -> Result<Vec<inventory_core::ports::ParkedEntry>, StoreError> {
        self.inner.parked_commands().await
    }
}

/// The memory object store with failed puts injected (S3 answering 5xx).
struct ChaosObjects {
    inner: Arc<MemoryObjects>,
    store: Arc<ChaosStore>,
}

#[async_trait]
impl ObjectStore for ChaosObjects {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), ObjectStoreError> {
        self.store.interleave().await;
        if self.store.roll(0.05) {
            return Err(ObjectStoreError("injected: S3 answered 503".into()));
        }
        self.inner.put(key, bytes).await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ObjectStoreError> {
        self.inner.get(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectStoreError> {
        self.inner.list(prefix).await
    }

    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, ObjectStoreError> {
        self.inner.list_folders(prefix).await
    }
}

/// The memory queue with failed sends injected.
struct ChaosQueue {
    inner: MemoryQueue,
    store: Arc<ChaosStore>,
}

#[async_trait]
impl CommandQueue for ChaosQueue {
    async fn send(&self, commands: &[Command]) -> Result<(), QueueError> {
        if self.store.roll(0.03) {
            return Err(QueueError("injected: queue unavailable".into()));
        }
        self.inner.send(commands).await
    }
}

/// What clients were told, to be checked against what was recorded.
#[derive(Default)]
struct Ledger {
    /// Each acknowledged reservation: the client that made it, and its lines.
    reservations: BTreeMap<ReservationId, (usize, Vec<Line>)>,
    by_key: HashMap<String, ReservationId>,
    commands: BTreeMap<CommandId, Acknowledged>,
    refused: usize,
    violations: Vec<String>,
}

#[derive(Debug, Clone)]
enum Acknowledged {
    Receipt(Sku),
    Adjustment(Sku),
    HoldChange(Vec<Sku>),
}

/// Service processes sharing the store and queue, as Lambda runs several: each keeps its own
/// cache and per-SKU turns, so their decisions race through the store's conditions.
const PROCESSES: usize = 3;

struct World {
    processes: Vec<Inventory>,
    snapshotter: Snapshotter,
    archiver: Archiver,
    archive: Archive,
    next_process: std::sync::atomic::AtomicUsize,
    store: Arc<ChaosStore>,
    queue: Arc<ChaosQueue>,
    clock: ManualClock,
    ledger: Mutex<Ledger>,
}

impl World {
    /// The process the next request lands on (round robin, like a load balancer).
    fn inventory(&self) -> &Inventory {
        let next = self.next_process.fetch_add(1, Ordering::SeqCst);
        &self.processes[next % PROCESSES]
    }
}

async fn run_history(seed: u64) -> Result<Stats, String> {
    let store = Arc::new(ChaosStore {
        inner: MemoryStore::new(),
        rng: Mutex::new(fastrand::Rng::with_seed(seed ^ 0x5eed)),
        chaos: AtomicBool::new(true),
        written: Mutex::new(Vec::new()),
        placed_per_key: Mutex::new(HashMap::new()),
        saved_snapshots: Mutex::new(HashMap::new()),
        archived: Arc::new(MemoryObjects::new()),
        retired_unarchived: Mutex::new(Vec::new()),
    });
    let queue = Arc::new(ChaosQueue {
        inner: MemoryQueue::new(),
        store: Arc::clone(&store),
    });
    let clock = ManualClock::new(START);
    let processes = (0..PROCESSES)
        .map(|_| {
            Inventory::new(
                store.clone(),
                queue.clone(),
                Arc::new(clock.clone()),
                Config {
                    contention_budget: std::time::Duration::from_millis(250),
                    ..Config::default()
                },
            )
        })
        .collect();
    let archive = Archive::new(Arc::new(ChaosObjects {
        inner: store.archived.clone(),
        store: Arc::clone(&store),
    }));
    let world = Arc::new(World {
        processes,
        snapshotter: Snapshotter::new(store.clone()),
        archiver: Archiver::new(
            store.clone(),
            archive.clone(),
            Arc::new(clock.clone()),
            std::time::Duration::from_secs(35 * 24 * 3600),
        ),
        archive,
        next_process: std::sync::atomic::AtomicUsize::new(0),
        store,
        queue,
        clock,
        ledger: Mutex::new(Ledger::default()),
    });
    let clients_done = Arc::new(AtomicBool::new(false));
    let processor = tokio::spawn(process_queue(
        Arc::clone(&world),
        Arc::clone(&clients_done),
        seed,
    ));
    let writers_done = Arc::new(AtomicBool::new(false));
    let reactor = tokio::spawn(react_to_feed(
        Arc::clone(&world),
        Arc::clone(&writers_done),
        seed,
    ));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| tokio::spawn(run_client(Arc::clone(&world), seed, client)))
        .collect();
    for client in clients {
        client.await.map_err(|e| format!("client panicked: {e}"))?;
    }
    clients_done.store(true, Ordering::SeqCst);
    world.store.chaos.store(false, Ordering::SeqCst);
    processor
        .await
        .map_err(|e| format!("processor panicked: {e}"))??;
    writers_done.store(true, Ordering::SeqCst);
    reactor
        .await
        .map_err(|e| format!("reactor panicked: {e}"))??;
    check(&world, seed).await
}

/// Who a client acts as: a storefront of its own (it reserves, sees only its own
/// reservations), and a warehouse of its own (admin: receipts, adjustments, anyone's holds).
struct Client {
    index: usize,
    storefront: Caller,
    warehouse: Caller,
}

impl Client {
    fn new(index: usize) -> Self {
        let id = |kind: &str| ClientId::parse(&format!("{kind}-{index}")).unwrap();
        Self {
            index,
            storefront: Caller::new(id("store"), [Scope::Read, Scope::Reserve]),
            warehouse: Caller::new(id("warehouse"), [Scope::Admin]),
        }
    }

    /// Who acts on a reservation of `owner`: the storefront for its own; for another's, now
    /// and then the warehouse, else the storefront, which must be told it does not exist.
    fn acting_on(&self, owner: usize, rng: &mut fastrand::Rng) -> &Caller {
        if owner == self.index || rng.u8(0..3) > 0 {
            &self.storefront
        } else {
            &self.warehouse
        }
    }

    /// Whether `caller` may see a reservation of `owner`.
    fn sees(&self, caller: &Caller, owner: usize) -> bool {
        owner == self.index || std::ptr::eq(caller, &self.warehouse)
    }
}

async fn run_client(world: Arc<World>, seed: u64, client: usize) {
    let mut rng = fastrand::Rng::with_seed(seed.wrapping_mul(31).wrapping_add(client as u64));
    let me = Client::new(client);
    for op in 0..OPS_PER_CLIENT {
        // Every client uses the same keys: keys are per client, so they must never collide.
        let key = format!("op{op}");
        match rng.u32(0..100) {
            0..=34 => reserve(&world, &me, &mut rng, &key).await,
            35..=49 => receive(&world, &me, &mut rng, &key).await,
            50..=57 => adjust(&world, &me, &mut rng).await,
            58..=69 => hold_change(&world, &me, &mut rng, &key, true).await,
            70..=77 => hold_change(&world, &me, &mut rng, &key, false).await,
            78..=82 => extend(&world, &me, &mut rng).await,
            83..=92 => world.clock.advance_millis(rng.i64(0..150_000)),
            _ => {
                let sku = random_sku(&mut rng);
                let _ = world.inventory().item(&sku).await;
            }
        }
        tokio::task::yield_now().await;
    }
}

fn random_sku(rng: &mut fastrand::Rng) -> Sku {
    Sku::parse(SKUS[rng.usize(0..SKUS.len())]).unwrap()
}

/// A reservation some client made, with its owner and SKUs.
fn random_reservation(
    world: &World,
    rng: &mut fastrand::Rng,
) -> Option<(ReservationId, usize, Vec<Sku>)> {
    let ledger = world.ledger.lock().unwrap();
    let count = ledger.reservations.len();
    (count > 0).then(|| {
        let (id, (owner, lines)) = ledger.reservations.iter().nth(rng.usize(0..count)).unwrap();
        let skus = lines.iter().map(|line| line.sku.clone()).collect();
        (id.clone(), *owner, skus)
    })
}

/// Records a violation unless `answer` is `reservation_not_found`: what a client must be told of
/// another's reservation.
fn expect_not_found<T: std::fmt::Debug>(world: &World, what: &str, answer: Result<T, AppError>) {
    if !matches!(answer, Err(AppError::ReservationNotFound)) {
        let msg = format!("{what} of another client's reservation answered {answer:?}");
        world.ledger.lock().unwrap().violations.push(msg);
    }
}

/// A client retries a request that failed with 503 only when it sent an idempotency key.
const RETRIES: usize = 3;

async fn reserve(world: &World, me: &Client, rng: &mut fastrand::Rng, key: &str) {
    let mut skus: Vec<&str> = SKUS.to_vec();
    rng.shuffle(&mut skus);
    let lines: Vec<Line> = skus[..rng.usize(1..=SKUS.len())]
        .iter()
        .map(|sku| Line {
            sku: Sku::parse(sku).unwrap(),
            quantity: Quantity::new(rng.i64(1..=3)).unwrap(),
        })
        .collect();
    let ttl = TtlSeconds::new(rng.i64(60..=300)).unwrap();
    let keyed = rng.u8(0..10) < 7;
    let idempotency_key = keyed.then(|| IdempotencyKey::parse(key).unwrap());
    for _ in 0..RETRIES {
        let request = ReserveRequest::new(lines.clone(), ttl, idempotency_key.clone()).unwrap();
        let scope = keyed.then(|| format!("{}/{key}", me.index));
        match RESERVING_WITH_KEY
            .scope(scope, world.inventory().reserve(request, &me.storefront))
            .await
        {
            Ok(view) => {
                let mut ledger = world.ledger.lock().unwrap();
                if keyed {
                    let first = ledger
                        .by_key
                        .entry(format!("{}/{key}", me.index))
                        .or_insert_with(|| view.reservation_id.clone());
                    if *first != view.reservation_id {
                        let msg =
                            format!("key {key} answered {} then {first}", view.reservation_id);
                        ledger.violations.push(msg);
                    }
                }
                ledger
                    .reservations
                    .insert(view.reservation_id, (me.index, lines));
                return;
            }
            Err(AppError::InsufficientStock { .. } | AppError::UnknownSku(_)) => {
                world.ledger.lock().unwrap().refused += 1;
                return;
            }
            Err(AppError::Unavailable(_) | AppError::Contention) if keyed => continue,
            Err(AppError::Unavailable(_) | AppError::Contention) => return,
            Err(other) => {
                let msg = format!("reserve answered {other:?}");
                world.ledger.lock().unwrap().violations.push(msg);
                return;
            }
        }
    }
}

async fn receive(world: &World, me: &Client, rng: &mut fastrand::Rng, key: &str) {
    let sku = random_sku(rng);
    let quantity = Quantity::new(rng.i64(1..=6)).unwrap();
    let idempotency_key = IdempotencyKey::parse(key).unwrap();
    for _ in 0..RETRIES {
        let answer = world
            .inventory()
            .receive_stock(
                sku.clone(),
                quantity,
                None,
                Some(&idempotency_key),
                &me.warehouse,
            )
            .await;
        if acknowledge(world, answer, Acknowledged::Receipt(sku.clone())) {
            return;
        }
    }
}

async fn adjust(world: &World, me: &Client, rng: &mut fastrand::Rng) {
    let sku = random_sku(rng);
    let delta = [-3, -2, -1, 1, 2][rng.usize(0..5)];
    let answer = world
        .inventory()
        .adjust_stock(
            sku.clone(),
            delta,
            "cycle count".into(),
            None,
            &me.warehouse,
        )
        .await;
    acknowledge(world, answer, Acknowledged::Adjustment(sku));
}

async fn hold_change(
    world: &World,
    me: &Client,
    rng: &mut fastrand::Rng,
    key: &str,
    checkout: bool,
) {
    let Some((id, owner, skus)) = random_reservation(world, rng) else {
        return;
    };
    let caller = me.acting_on(owner, rng);
    let idempotency_key = IdempotencyKey::parse(key).unwrap();
    for _ in 0..RETRIES {
        let answer = if checkout {
            world
                .inventory()
                .request_checkout(&id, Some(&idempotency_key), caller)
                .await
        } else {
            world
                .inventory()
                .request_release(&id, Some(&idempotency_key), caller)
                .await
        };
        if !me.sees(caller, owner) {
            return expect_not_found(world, "a checkout or release", answer);
        }
        if matches!(answer, Err(AppError::ReservationNotActive { .. })) {
            return;
        }
        if acknowledge(world, answer, Acknowledged::HoldChange(skus.clone())) {
            return;
        }
    }
}

async fn extend(world: &World, me: &Client, rng: &mut fastrand::Rng) {
    if let Some((id, owner, _)) = random_reservation(world, rng) {
        let ttl = TtlSeconds::new(rng.i64(60..=600)).unwrap();
        let caller = me.acting_on(owner, rng);
        let answer = world.inventory().extend(&id, ttl, caller).await;
        if !me.sees(caller, owner) {
            return expect_not_found(world, "an extension", answer);
        }
        match answer {
            Ok(_)
            | Err(
                AppError::ReservationNotActive { .. }
                | AppError::Unavailable(_)
                | AppError::Contention,
            ) => {}
            Err(other) => {
                let msg = format!("extend answered {other:?}");
                world.ledger.lock().unwrap().violations.push(msg);
            }
        }
    }
}

/// Records a 202; `true` when the client is done (acknowledged or refused for good).
fn acknowledge(world: &World, answer: Result<CommandId, AppError>, what: Acknowledged) -> bool {
    match answer {
        Ok(id) => {
            world.ledger.lock().unwrap().commands.insert(id, what);
            true
        }
        Err(AppError::Unavailable(_) | AppError::Contention) => false,
        Err(other) => {
            let msg = format!("command answered {other:?}");
            world.ledger.lock().unwrap().violations.push(msg);
            true
        }
    }
}

/// The queue's consumer: batches of random size, some commands delivered twice, failed SKU
/// groups redelivered — until the clients are done and the queue is empty.
async fn process_queue(
    world: Arc<World>,
    clients_done: Arc<AtomicBool>,
    seed: u64,
) -> Result<(), String> {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0xfeed);
    let mut failures = 0;
    for _ in 0..MAX_BATCHES {
        let mut batch = next_batch(&world, &clients_done, &mut rng).await;
        if batch.is_empty() {
            return Ok(());
        }
        if rng.u8(0..5) == 0 {
            let again = batch[..rng.usize(1..=batch.len())].to_vec();
            batch.extend(again);
        }
        for (sku, commands) in apply_by_sku(&world, batch).await {
            failures += 1;
            if failures > MAX_FAILED_APPLIES {
                return Err(format!("{sku}: commands kept failing to apply"));
            }
            world.queue.inner.redeliver(commands);
            // Redelivery takes time (Lambda retries after a delay).
            world.clock.advance_millis(5_000);
        }
        // The next batch is polled a moment later: commands deferred and nudged back onto the
        // queue see their waits run out.
        world.clock.advance_millis(POLL_MILLIS);
    }
    Err(format!("the queue did not drain in {MAX_BATCHES} batches"))
}

/// The change feed's consumers while the clients run: slices of the feed delivered late,
/// repeated and out of order to the snapshotter and the archiver, and expiry sweeps on random
/// processes. Once the clients and the processor are done, the whole feed is delivered once more in order (the
/// feed's retries end that way), and time moves past every hold's grace for a last sweep.
async fn react_to_feed(
    world: Arc<World>,
    writers_done: Arc<AtomicBool>,
    seed: u64,
) -> Result<(), String> {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0xf00d);
    let mut cursor = 0;
    while !writers_done.load(Ordering::SeqCst) {
        let (fresh, end) = world.store.inner.feed_since(cursor);
        let take = rng.usize(0..=fresh.len());
        let mut batch: Vec<FeedChange> = fresh[..take].to_vec();
        if rng.u8(0..4) == 0 {
            let (old, _) = world.store.inner.feed_since(rng.usize(0..=cursor));
            batch.extend(old.into_iter().take(rng.usize(0..8)));
        }
        if rng.u8(0..4) == 0 {
            rng.shuffle(&mut batch);
        }
        if rng.u8(0..10) == 0 {
            // A batch that kept failing is dropped to the on-failure queue: the reactions must
            // fill the gap from the stream on the SKU's next change.
            cursor = (cursor + take).min(end);
        } else if world.snapshotter.react(&batch).await.is_empty()
            && world.archiver.react(&batch).await.is_empty()
        {
            cursor = (cursor + take).min(end);
        }
        if rng.u8(0..3) == 0 {
            let _ = world.inventory().sweep_expired_holds().await;
        }
        tokio::task::yield_now().await;
        tokio::time::advance(std::time::Duration::from_micros(300)).await;
    }
    // The feed's last batch: every SKU's latest change (the SKU's next event after a dropped
    // batch), delivered until it is handled.
    let (all, _) = world.store.inner.feed_since(0);
    let mut last_per_sku: BTreeMap<Sku, FeedChange> = BTreeMap::new();
    for change in all {
        last_per_sku.insert(change.event().sku.clone(), change);
    }
    let all: Vec<FeedChange> = last_per_sku.into_values().collect();
    for _ in 0..RETRIES {
        let failed_snapshots = world.snapshotter.react(&all).await;
        let failed_archives = world.archiver.react(&all).await;
        if failed_snapshots.is_empty() && failed_archives.is_empty() {
            break;
        }
    }
    world
        .clock
        .advance_millis((TtlSeconds::MAX as i64 + 3_600) * 1_000);
    let mut swept = false;
    for _ in 0..10 {
        // A SKU whose expiries fail goes to the queue; a sweep settled them all when none was
        // left for the next sweep.
        if let Ok(report) = world.inventory().sweep_expired_holds().await {
            if report.failed_skus == 0 {
                swept = true;
                break;
            }
        }
    }
    if !swept {
        return Err("the last expiry sweep kept failing".into());
    }
    // The processor applies what the sweeps handed to the queue after it was done.
    drain_queue(&world).await?;
    let (after_sweep, _) = world.store.inner.feed_since(0);
    world.snapshotter.react(&after_sweep).await;
    world.archiver.react(&after_sweep).await;
    Ok(())
}

/// Applies whatever is queued until the queue is empty, as the processor would.
async fn drain_queue(world: &World) -> Result<(), String> {
    for _ in 0..MAX_BATCHES {
        let batch = world.queue.inner.try_receive(1_000);
        if batch.is_empty() {
            return Ok(());
        }
        for (_, commands) in apply_by_sku(world, batch).await {
            world.queue.inner.redeliver(commands);
        }
        world.clock.advance_millis(POLL_MILLIS);
    }
    Err(format!("the queue did not drain in {MAX_BATCHES} batches"))
}

/// Applies a batch per SKU, in arrival order, as the processor does; returns the SKU groups
/// that failed (to be delivered again).
async fn apply_by_sku(world: &World, batch: Vec<Command>) -> Vec<(Sku, Vec<Command>)> {
    let mut groups: BTreeMap<Sku, Vec<Command>> = BTreeMap::new();
    for command in batch {
        groups.entry(command.sku.clone()).or_default().push(command);
    }
    let mut failed = Vec::new();
    for (sku, commands) in groups {
        if world
            .inventory()
            .apply_commands(&sku, &commands)
            .await
            .is_err()
        {
            failed.push((sku, commands));
        }
    }
    failed
}

/// The next batch of 1–19 commands, waiting while clients may still send; empty once the
/// clients are done and the queue is drained.
async fn next_batch(
    world: &World,
    clients_done: &AtomicBool,
    rng: &mut fastrand::Rng,
) -> Vec<Command> {
    loop {
        let batch = world.queue.inner.try_receive(rng.usize(1..20));
        if !batch.is_empty() || clients_done.load(Ordering::SeqCst) && world.queue.inner.is_empty()
        {
            return batch;
        }
        // Let the clients run, and move paused time on a little so their back-off sleeps end
        // (paused time only moves by itself once every task waits, and this one never does).
        tokio::task::yield_now().await;
        tokio::time::advance(std::time::Duration::from_micros(200)).await;
    }
}

/// Checks the promises on what the history left behind.
async fn check(world: &World, seed: u64) -> Result<Stats, String> {
    let ledger = std::mem::take(&mut *world.ledger.lock().unwrap());
    if let Some(violation) = ledger.violations.first() {
        return Err(violation.clone());
    }
    if let Some(violation) = world.store.retired_unarchived.lock().unwrap().first() {
        return Err(violation.clone());
    }
    let store = &world.store.inner;
    let mut streams: BTreeMap<Sku, Vec<Event>> = BTreeMap::new();
    for sku in store.skus() {
        let events = store
            .read_stream(&sku, 0)
            .await
            .map_err(|e| e.to_string())?;
        streams.insert(sku, events);
    }
    let mut stats = Stats {
        reservations: ledger.reservations.len(),
        refused: ledger.refused,
        commands: ledger.commands.len(),
        lost_answers: world
            .store
            .written
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, lost)| *lost)
            .count(),
        events: streams.values().map(Vec::len).sum(),
    };
    for (sku, events) in &streams {
        no_decision_granted_more_than_was_available(sku, events)?;
        snapshot_plus_tail_is_the_whole_fold(sku, events, seed)?;
        service_reads_agree_with_the_fold(world, sku, events).await?;
        derived_state_converged_to_the_fold(world, sku, events).await?;
        every_lapsed_hold_expired_exactly_once(sku, events)?;
    }
    every_acknowledged_reservation_is_placed_exactly_once(world, &ledger, &streams).await?;
    every_idempotency_key_wrote_at_most_one_reservation(world)?;
    every_acknowledged_command_took_effect_exactly_once(world, &ledger, &streams).await?;
    stats.events = streams.values().map(Vec::len).sum();
    Ok(stats)
}

fn no_decision_granted_more_than_was_available(sku: &Sku, events: &[Event]) -> Result<(), String> {
    let mut state = SkuState::default();
    for (index, event) in events.iter().enumerate() {
        if event.seq != index as u64 + 1 || &event.sku != sku {
            return Err(format!("{sku}: event {index} has seq {}", event.seq));
        }
        if event.at < state.clock {
            return Err(format!("{sku}@{}: time ran backwards", event.seq));
        }
        let granted = match &event.change {
            Change::HoldPlaced { quantity, .. } => Some(quantity.units()),
            Change::HoldCommitted {
                quantity,
                reacquired: true,
                ..
            } => Some(quantity.units()),
            _ => None,
        };
        if let Some(granted) = granted {
            let available = state.available(event.at);
            if granted > available {
                return Err(format!(
                    "{sku}@{}: granted {granted} with {available} available",
                    event.seq
                ));
            }
        }
        state.evolve(event);
    }
    Ok(())
}

/// The snapshot (and so the read view) equals the fold, a process starting cold reads the
/// same, and the archive holds every event.
async fn derived_state_converged_to_the_fold(
    world: &World,
    sku: &Sku,
    events: &[Event],
) -> Result<(), String> {
    let whole = SkuState::from_events(events);
    let snapshot = world
        .store
        .inner
        .read_snapshots(std::slice::from_ref(sku))
        .await
        .map_err(|e| e.to_string())?
        .pop()
        .flatten();
    if snapshot.as_ref() != Some(&whole) {
        return Err(format!(
            "{sku}: snapshot at {:?} differs from the fold at {}",
            snapshot.map(|s| s.version),
            whole.version
        ));
    }
    let view = world
        .inventory()
        .items(std::slice::from_ref(sku))
        .await
        .map_err(|e| e.to_string())?;
    let now = whole.now(world.clock.now());
    let seen = view
        .items
        .first()
        .map(|item| (item.on_hand, item.committed, item.reserved, item.version));
    let expected = (
        whole.on_hand,
        whole.committed,
        whole.held(now),
        whole.version,
    );
    if seen != Some(expected) {
        return Err(format!("{sku}: read view {seen:?}, fold says {expected:?}"));
    }
    let archived = world
        .archive
        .read_sku(sku)
        .await
        .map_err(|e| e.to_string())?;
    if !archived.problems.is_empty() {
        return Err(format!("{sku}: archive problems {:?}", archived.problems));
    }
    if archived.events.values().cloned().collect::<Vec<_>>() != events {
        return Err(format!(
            "{sku}: the archive holds {} events, the stream {}",
            archived.events.len(),
            events.len()
        ));
    }
    Ok(())
}

/// Every hold neither committed nor released got exactly one `hold_expired`, written after
/// its grace; a committed or released hold got none.
fn every_lapsed_hold_expired_exactly_once(sku: &Sku, events: &[Event]) -> Result<(), String> {
    let grace = Config::default().release_grace_secs;
    for placed in events {
        let Some(mut hold) = HoldLine::placed(sku, &placed.change) else {
            continue;
        };
        let mut expiries = 0;
        let mut ended_before = false;
        for event in events.iter().filter(|e| e.seq > placed.seq) {
            if event.change.reservation_id() != Some(&hold.reservation_id) {
                continue;
            }
            match &event.change {
                Change::HoldExpired { .. } => {
                    expiries += 1;
                    if event.at < hold.expires_at.plus_seconds(grace) {
                        return Err(format!(
                            "{sku}@{}: expired before its grace was over",
                            event.seq
                        ));
                    }
                    if ended_before {
                        return Err(format!("{sku}@{}: expired after it ended", event.seq));
                    }
                }
                Change::HoldCommitted { .. } | Change::HoldReleased { .. } => {
                    ended_before |= hold.status == HoldStatus::Active;
                }
                _ => {}
            }
            hold.evolve(&event.change);
        }
        // A checkout accepted in time may still commit after the expiry (taking the units
        // again), so a committed hold may have one expiry before its commit.
        let ended = matches!(hold.status, HoldStatus::Committed | HoldStatus::Released);
        if expiries > 1 || (expiries == 0 && !ended) {
            return Err(format!(
                "{sku}: hold of {} ({:?}) has {expiries} expiries",
                hold.reservation_id, hold.status
            ));
        }
    }
    Ok(())
}

fn snapshot_plus_tail_is_the_whole_fold(
    sku: &Sku,
    events: &[Event],
    seed: u64,
) -> Result<(), String> {
    let whole = SkuState::from_events(events);
    let cut = fastrand::Rng::with_seed(seed).usize(0..=events.len());
    let snapshot = serde_json::to_string(&SkuState::from_events(&events[..cut])).unwrap();
    let mut resumed: SkuState = serde_json::from_str(&snapshot).unwrap();
    for event in &events[cut..] {
        resumed.evolve(event);
    }
    if resumed != whole {
        return Err(format!(
            "{sku}: snapshot at {cut} + tail differs from the whole fold"
        ));
    }
    Ok(())
}

async fn service_reads_agree_with_the_fold(
    world: &World,
    sku: &Sku,
    events: &[Event],
) -> Result<(), String> {
    let whole = SkuState::from_events(events);
    let item = world
        .inventory()
        .item(sku)
        .await
        .map_err(|e| e.to_string())?;
    let now = whole.now(world.clock.now());
    let expected = (
        whole.on_hand,
        whole.committed,
        whole.held(now),
        whole.version,
    );
    let seen = (item.on_hand, item.committed, item.reserved, item.version);
    if expected != seen {
        return Err(format!("{sku}: item read {seen:?}, fold says {expected:?}"));
    }
    Ok(())
}

async fn every_acknowledged_reservation_is_placed_exactly_once(
    world: &World,
    ledger: &Ledger,
    streams: &BTreeMap<Sku, Vec<Event>>,
) -> Result<(), String> {
    for (id, (_, lines)) in &ledger.reservations {
        let view = world
            .inventory()
            .reservation(id, &Caller::local_admin())
            .await
            .map_err(|e| format!("{id}: {e}"))?;
        for line in lines {
            let events = streams.get(&line.sku).map_or(&[][..], Vec::as_slice);
            let placed: Vec<&Event> = events
                .iter()
                .filter(|e| matches!(&e.change, Change::HoldPlaced { reservation_id, .. } if reservation_id == id))
                .collect();
            let [placed] = placed[..] else {
                return Err(format!(
                    "{id}: {} holds placed on {}",
                    placed.len(),
                    line.sku
                ));
            };
            let mut hold = HoldLine::placed(&line.sku, &placed.change).unwrap();
            if hold.quantity != line.quantity {
                return Err(format!(
                    "{id}: {} held {:?}, asked {:?}",
                    line.sku, hold.quantity, line.quantity
                ));
            }
            for event in events.iter().filter(|e| e.seq > placed.seq) {
                hold.evolve(&event.change);
            }
            let shown = view
                .lines
                .iter()
                .find(|l| l.sku == line.sku)
                .map(|l| l.status);
            if shown != Some(hold.status_at(world.clock.now())) {
                return Err(format!(
                    "{id}: {} shows {shown:?}, events say {:?}",
                    line.sku, hold.status
                ));
            }
        }
    }
    Ok(())
}

fn every_idempotency_key_wrote_at_most_one_reservation(world: &World) -> Result<(), String> {
    let placed = world.store.placed_per_key.lock().unwrap();
    match placed.iter().find(|(_, count)| **count > 1) {
        Some((key, count)) => Err(format!("idempotency key {key} placed {count} reservations")),
        None => Ok(()),
    }
}

async fn every_acknowledged_command_took_effect_exactly_once(
    world: &World,
    ledger: &Ledger,
    streams: &BTreeMap<Sku, Vec<Event>>,
) -> Result<(), String> {
    for (id, what) in &ledger.commands {
        let view = world
            .inventory()
            .command(*id, &Caller::local_admin())
            .await
            .map_err(|e| format!("{id}: {e}"))?;
        if view.status == CommandStatus::Pending {
            return Err(format!(
                "command {id} still pending after the queue drained"
            ));
        }
        let skus = match what {
            Acknowledged::Receipt(sku) | Acknowledged::Adjustment(sku) => vec![sku.clone()],
            Acknowledged::HoldChange(skus) => skus.clone(),
        };
        for sku in skus {
            let events = streams.get(&sku).map_or(&[][..], Vec::as_slice);
            let effects = events
                .iter()
                .filter(|e| e.change.command_id() == Some(*id))
                .count();
            let exactly_one = !matches!(what, Acknowledged::HoldChange(_));
            if effects > 1 || (exactly_one && effects != 1) {
                return Err(format!(
                    "command {id} ({what:?}) has {effects} events on {sku}"
                ));
            }
            let outcome = world
                .store
                .inner
                .read_records(&[RecordKey::CommandOutcome {
                    command_id: *id,
                    sku: sku.clone(),
                }])
                .await
                .map_err(|e| e.to_string())?;
            if !matches!(
                outcome.first(),
                Some(Some(Versioned {
                    record: Record::CommandOutcome(_),
                    ..
                }))
            ) {
                return Err(format!("command {id} has no outcome on {sku}"));
            }
        }
    }
    Ok(())
}
