//! Store round trips per reservation on DynamoDB (moto), counted by an SDK interceptor.
//! Counts, not timings: moto is nearly single-threaded, so only the request counts and the
//! outcomes are figures worth keeping. Run: `./scripts/bench-round-trips`.
//!
//! Two groups of scenarios, both run by default (docs/benchmarks.md has a section for each):
//! - `contention`: requests per sale, uncontended and in flash sales over 1 to 32 processes;
//! - `history`: requests (and events read) per reservation on an item with 10, 1,000 and
//!   100,000 events, cold with and without a snapshot, and warm;
//! - `processor`: the command processor's requests for a batch of 100 commands over 10 SKUs;
//! - `locations`: requests per reservation at a location named, allocated between two
//!   warehouses, and split over both, and per cart of three items at two locations.
//!
//! Set `ROUND_TRIPS_SCENARIO` to `contention`, `history`, `processor`, `ledger` or `locations`
//! to run only one,
//! e.g. `ROUND_TRIPS_SCENARIO=history ./scripts/bench-round-trips`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use inventory_core::app::ReserveRequest;
use inventory_core::aws::{DynamoStore, RequestCounter, TestAws};
use inventory_core::domain::{
    Action, Annotation, BucketCount, Caller, Command, CommandId, Line, Quantity, Sku, StreamId,
    Timestamp, TtlSeconds,
};
use inventory_core::feed::{FeedChange, Reaction};
use inventory_core::memory::MemoryQueue;
use inventory_core::ports::Streams;
use inventory_core::ports::SystemClock;
use inventory_core::reactions::Snapshotter;
use inventory_core::{AppError, Config, Inventory};
use tokio::sync::Semaphore;

struct Backend {
    sdk: aws_config::SdkConfig,
    table: String,
    counter: RequestCounter,
}

impl Backend {
    async fn new(name: &str) -> Self {
        let aws = TestAws::new().await;
        let counter = RequestCounter::default();
        let table = aws
            .store(counter.client(aws.config()), &format!("bench-{name}"))
            .await
            .table()
            .to_owned();
        Self {
            sdk: aws.config().clone(),
            table,
            counter,
        }
    }

    /// The table through a client whose requests are counted.
    fn counted(&self) -> DynamoStore {
        DynamoStore::new(self.counter.client(&self.sdk), &self.table)
    }

    /// The table through a client whose requests are not counted.
    fn plain(&self) -> DynamoStore {
        DynamoStore::new(aws_sdk_dynamodb::Client::new(&self.sdk), &self.table)
    }

    /// One service process (its own cache and per-SKU turns) on the shared table.
    fn process(&self) -> Inventory {
        Inventory::new(
            Arc::new(DynamoStore::new(
                self.counter.client(&self.sdk),
                &self.table,
            )),
            Arc::new(MemoryQueue::new()),
            Arc::new(SystemClock),
            Config::default(),
        )
    }
}

fn sku() -> Sku {
    Sku::parse("HOT-1").expect("valid sku")
}

async fn receive(inventory: &Inventory, units: i64) {
    let command = Command {
        id: CommandId::random(),
        sku: sku(),
        accepted_at: Timestamp::from_millis(0),
        action: Action::ReceiveStock {
            location: Default::default(),
            quantity: Quantity::new(units).expect("valid quantity"),
            why: Annotation::received(None),
        },
    };
    inventory
        .apply_commands(&sku(), &[command])
        .await
        .expect("stock received");
}

fn one_unit() -> ReserveRequest {
    let line = Line::of(sku(), Quantity::new(1).expect("valid quantity"));
    ReserveRequest::new(vec![line], TtlSeconds::DEFAULT, None).expect("valid request")
}

#[derive(Default)]
struct Outcome {
    sold: u64,
    refused_sold_out: u64,
    refused_with_stock_left: u64,
    contention: u64,
    requests: u64,
    wall: Duration,
}

impl Outcome {
    fn print(&self, scenario: &str) {
        println!(
            "| {scenario} | {} | {} | {} | {} | {} | {:.2} | {:.1?} |",
            self.sold,
            self.refused_sold_out,
            self.refused_with_stock_left,
            self.contention,
            self.requests,
            self.requests as f64 / self.sold.max(1) as f64,
            self.wall
        );
    }
}

/// `buyers` single-unit reservations, at most `in_flight` at a time, spread round-robin over
/// `processes`; each answer is sorted into sold / refused (sold out or not) / contention.
async fn run(
    backend: &Backend,
    processes: &[Inventory],
    buyers: usize,
    in_flight: usize,
) -> Outcome {
    let before = backend.counter.count();
    let gate = Arc::new(Semaphore::new(in_flight));
    let started = Instant::now();
    let answers = join_all((0..buyers).map(|buyer| {
        let gate = Arc::clone(&gate);
        let inventory = &processes[buyer % processes.len()];
        async move {
            let _permit = gate.acquire().await.expect("gate open");
            inventory.reserve(one_unit(), &Caller::local_admin()).await
        }
    }))
    .await;
    let mut outcome = Outcome {
        wall: started.elapsed(),
        requests: backend.counter.count() - before,
        ..Outcome::default()
    };
    for answer in answers {
        match answer {
            Ok(_) => outcome.sold += 1,
            Err(AppError::InsufficientStock { available: 0, .. }) => outcome.refused_sold_out += 1,
            Err(AppError::InsufficientStock { .. }) => outcome.refused_with_stock_left += 1,
            Err(AppError::Contention) => outcome.contention += 1,
            Err(other) => panic!("unexpected answer {other:?}"),
        }
    }
    outcome
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let only = std::env::var("ROUND_TRIPS_SCENARIO").ok();
    if let Some(name) = only.as_deref() {
        assert!(
            matches!(
                name,
                "contention" | "history" | "processor" | "ledger" | "locations"
            ),
            "ROUND_TRIPS_SCENARIO must be `contention`, `history`, `processor`, `ledger` or \
             `locations`, not {name:?}"
        );
    }
    let runs = |name: &str| only.as_deref().is_none_or(|only| only == name);
    if runs("contention") {
        contention().await;
    }
    if runs("history") {
        if runs("contention") {
            println!();
        }
        history::run().await;
    }
    if runs("processor") {
        println!();
        history::processor_batch().await;
    }
    if runs("ledger") {
        println!();
        history::ledger().await;
    }
    if runs("locations") {
        println!();
        history::locations().await;
    }
}

/// Requests per sale, uncontended and in flash sales.
async fn contention() {
    println!("| scenario | sold | refused, sold out | refused with stock left | 503 contention | DynamoDB requests | requests per sale | wall (moto) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");

    let backend = Backend::new("warm").await;
    let process = backend.process();
    receive(&process, 10_000).await;
    process
        .reserve(one_unit(), &Caller::local_admin())
        .await
        .expect("warm-up");
    run(&backend, std::slice::from_ref(&process), 200, 1)
        .await
        .print("uncontended, warm process, 200 sequential");

    let backend = Backend::new("sixteen").await;
    let process = backend.process();
    receive(&process, 10_000).await;
    run(&backend, std::slice::from_ref(&process), 320, 16)
        .await
        .print("16 concurrent clients, one process");

    let backend = Backend::new("flash").await;
    let process = backend.process();
    receive(&process, 100).await;
    run(&backend, std::slice::from_ref(&process), 300, 32)
        .await
        .print("flash sale: 300 buyers, 100 units, 32 at a time, one process");

    let backend = Backend::new("flash4").await;
    let processes: Vec<Inventory> = (0..4).map(|_| backend.process()).collect();
    receive(&processes[0], 100).await;
    run(&backend, &processes, 300, 32)
        .await
        .print("flash sale, spread over 4 processes");

    let backend = Backend::new("flash32").await;
    let processes: Vec<Inventory> = (0..32).map(|_| backend.process()).collect();
    receive(&processes[0], 100).await;
    run(&backend, &processes, 300, 32)
        .await
        .print("flash sale, 32 processes (one Lambda per buyer in flight)");

    for processes in [4, 32] {
        for split in [false, true] {
            sale_of_a_thousand(processes, split).await;
        }
    }
}

/// 1,200 buyers for 1,000 units, 32 at a time, over `processes`; with `split`, the item split
/// into the buckets [`BucketCount::recommended`] gives it. The snapshotter runs as the change
/// feed drives it, its requests counted with the rest.
async fn sale_of_a_thousand(processes: usize, split: bool) {
    const UNITS: i64 = 1_000;
    let name = format!("thousand{processes}{}", if split { "split" } else { "" });
    let backend = Backend::new(&name).await;
    let processes: Vec<Inventory> = (0..processes).map(|_| backend.process()).collect();
    receive(&processes[0], UNITS).await;
    let count = if split {
        BucketCount::recommended(processes.len(), UNITS)
    } else {
        BucketCount::ONE
    };
    if count != BucketCount::ONE {
        split_into(&processes[0], count).await;
    }
    let feed = tokio::spawn(snapshots_from_the_feed(
        backend.plain(),
        backend.counted(),
        count,
    ));
    let outcome = run(&backend, &processes, 1_200, 32).await;
    feed.abort();
    outcome.print(&format!(
        "1,000 units, 1,200 buyers, 32 at a time, {} processes, {} (snapshotter included)",
        processes.len(),
        if count == BucketCount::ONE {
            "one stream".to_owned()
        } else {
            format!("{} buckets", count.get())
        }
    ));
}

/// The item split into `count` escrow buckets (its stock spread over them).
async fn split_into(inventory: &Inventory, count: BucketCount) {
    let command = Command {
        id: CommandId::random(),
        sku: sku(),
        accepted_at: Timestamp::from_millis(0),
        action: Action::SetBuckets {
            location: Default::default(),
            count,
        },
    };
    inventory
        .apply_commands(&sku(), &[command])
        .await
        .expect("layout applied");
}

/// The snapshotter as the change feed drives it: every 250 ms, the events appended since to the
/// item's buckets (read with an uncounted client, as the feed costs no table request), reacted
/// to through `counted` (its reads and saves of snapshots count).
async fn snapshots_from_the_feed(plain: DynamoStore, counted: DynamoStore, count: BucketCount) {
    let snapshotter = Snapshotter::new(Arc::new(counted));
    let streams: Vec<StreamId> = count
        .buckets()
        .map(|b| StreamId::of(&sku()).in_bucket(b))
        .collect();
    let mut seen = vec![0; streams.len()];
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut changes = Vec::new();
        for (stream, seen) in streams.iter().zip(seen.iter_mut()) {
            let events = plain.read_stream(stream, *seen).await.unwrap_or_default();
            if let Some(last) = events.last() {
                *seen = last.seq;
            }
            changes.extend(events.into_iter().map(FeedChange::Appended));
        }
        if !changes.is_empty() {
            snapshotter.react(&changes).await;
        }
    }
}

/// Round trips per reservation as an item's history grows: a process that has not seen the SKU
/// reads its snapshot and then only the events after it, so a cold reservation costs the same
/// whatever the length of the history; without a snapshot the tail query pages through all of it.
mod history {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::{Duration, Instant};

    use inventory_core::domain::StreamId;

    use aws_sdk_dynamodb::config::interceptors::{
        AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    };
    use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
    use aws_sdk_dynamodb::error::BoxError;
    use aws_sdk_dynamodb::operation::query::QueryOutput;
    use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
    use aws_sdk_dynamodb::Client;
    use futures::{StreamExt, TryStreamExt};
    use inventory_core::app::ReserveRequest;
    use inventory_core::aws::{DynamoStore, TestAws};
    use inventory_core::domain::Annotation;
    use inventory_core::domain::{
        Action, BucketCount, Caller, Change, Command, CommandId, Event, Line, Location, LocationId,
        LocationKind, Preference, Quantity, Sku, Timestamp, TtlSeconds,
    };
    use inventory_core::feed::{FeedChange, Reaction};
    use inventory_core::memory::MemoryQueue;
    use inventory_core::ports::{
        Clock, EventStore, Snapshots, StreamAppend, Streams, SystemClock, Transaction, Transactions,
    };
    use inventory_core::reactions::Snapshotter;
    use inventory_core::{Config, Inventory};
    use serde::Serialize;

    use super::{one_unit, sku};

    /// Lengths of history measured.
    const HISTORIES: [u64; 3] = [10, 1_000, 100_000];
    /// Events appended after the snapshot, so that a cold read folds "snapshot + newer events".
    const AFTER_SNAPSHOT: u64 = 3;
    /// Warm reservations averaged after the cold one.
    const WARM: u64 = 20;
    /// Items per BatchWriteItem (DynamoDB's limit) and batches in flight when writing history.
    const BATCH_WRITE_ITEMS: usize = 25;
    const BATCHES_IN_FLIGHT: usize = 8;

    /// Requests by operation (every HTTP attempt, like `RequestCounter`), and the items the
    /// Query answers returned: the events read.
    #[derive(Debug, Clone, Default)]
    struct Tally(Arc<Mutex<Counts>>);

    #[derive(Debug, Clone, Default)]
    struct Counts {
        operations: BTreeMap<String, u64>,
        events_read: u64,
    }

    impl Counts {
        fn requests(&self) -> u64 {
            self.operations.values().sum()
        }

        fn since(&self, before: &Counts) -> Counts {
            let operations = self
                .operations
                .iter()
                .map(|(name, n)| {
                    let earlier = before.operations.get(name).copied().unwrap_or(0);
                    (name.clone(), n - earlier)
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            Counts {
                operations,
                events_read: self.events_read - before.events_read,
            }
        }
    }

    impl Tally {
        fn client(&self, sdk: &aws_config::SdkConfig) -> Client {
            let config = aws_sdk_dynamodb::config::Builder::from(sdk)
                .interceptor(self.clone())
                .build();
            Client::from_conf(config)
        }

        fn counts(&self) -> Counts {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }
    }

    impl Intercept for Tally {
        fn name(&self) -> &'static str {
            "Tally"
        }

        fn read_before_transmit(
            &self,
            context: &BeforeTransmitInterceptorContextRef<'_>,
            _components: &RuntimeComponents,
            _config: &mut ConfigBag,
        ) -> Result<(), BoxError> {
            // `X-Amz-Target: DynamoDB_20120810.Query`
            let target = context.request().headers().get("x-amz-target");
            let operation = target
                .and_then(|target| target.rsplit('.').next())
                .unwrap_or("?")
                .to_owned();
            let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            *counts.operations.entry(operation).or_default() += 1;
            Ok(())
        }

        fn read_after_deserialization(
            &self,
            context: &AfterDeserializationInterceptorContextRef<'_>,
            _components: &RuntimeComponents,
            _config: &mut ConfigBag,
        ) -> Result<(), BoxError> {
            if let Ok(output) = context.output_or_error() {
                if let Some(query) = output.downcast_ref::<QueryOutput>() {
                    let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
                    counts.events_read += u64::try_from(query.count()).unwrap_or(0);
                }
            }
            Ok(())
        }
    }

    /// An event item exactly as `DynamoStore` writes it (shared/src/aws/dynamo.rs, `EventItem`;
    /// stock events carry no `expiry_shard`). Checked against an item the store wrote.
    #[derive(Serialize)]
    struct EventItem<'a> {
        pk: String,
        sk: u64,
        #[serde(flatten)]
        event: &'a Event,
    }

    type Item = HashMap<String, AttributeValue>;

    fn event_item(event: &Event) -> Item {
        serde_dynamo::to_item(EventItem {
            pk: format!("sku#{}", event.stream),
            sk: event.seq,
            event,
        })
        .expect("event item")
    }

    fn received(seq: u64, units: i64, at: Timestamp) -> Event {
        Event {
            actor: None,
            figures: None,
            stream: StreamId::of(&sku()),
            seq,
            at,
            change: Change::StockReceived {
                command_id: CommandId::random(),
                quantity: Quantity::new(units).expect("valid quantity"),
                why: Annotation::received(None),
            },
        }
    }

    /// Appends one event at the head through the store (one conditional PutItem).
    async fn append(store: &DynamoStore, event: Event) {
        let append = StreamAppend {
            stream: StreamId::of(&sku()),
            expected: event.seq - 1,
            events: vec![event],
        };
        store
            .write(Transaction::appends(vec![append]))
            .await
            .expect("appended");
    }

    /// Events `seqs` of the stream, one unit received each, written with BatchWriteItem (moto
    /// copies the whole table for every item of a TransactWriteItems, its rollback backup, so
    /// 100,000 events in commits of up to 100 events would take hours there). Returns
    /// them.
    async fn write_history(
        client: &Client,
        table: &str,
        seqs: std::ops::RangeInclusive<u64>,
    ) -> Vec<Event> {
        let at = SystemClock.now();
        let events: Vec<Event> = seqs.map(|seq| received(seq, 1, at)).collect();
        write_events(client, table, &events).await;
        events
    }

    /// `events` written with BatchWriteItem, as [`write_history`] writes them.
    async fn write_events(client: &Client, table: &str, events: &[Event]) {
        futures::stream::iter(events.chunks(BATCH_WRITE_ITEMS))
            .map(|chunk| async move {
                let mut requests: Vec<WriteRequest> = chunk
                    .iter()
                    .map(|event| {
                        let put = PutRequest::builder()
                            .set_item(Some(event_item(event)))
                            .build()
                            .expect("put request");
                        WriteRequest::builder().put_request(put).build()
                    })
                    .collect();
                while !requests.is_empty() {
                    let answer = client
                        .batch_write_item()
                        .request_items(table, requests)
                        .send()
                        .await?;
                    requests = answer
                        .unprocessed_items
                        .and_then(|mut tables| tables.remove(table))
                        .unwrap_or_default();
                }
                Ok::<_, aws_sdk_dynamodb::Error>(())
            })
            .buffer_unordered(BATCHES_IN_FLIGHT)
            .try_collect::<()>()
            .await
            .expect("history written");
    }

    /// A fresh process (empty cache) on `table`, its requests counted by `tally`.
    fn process(sdk: &aws_config::SdkConfig, table: &str, tally: &Tally) -> Inventory {
        Inventory::new(
            Arc::new(DynamoStore::new(tally.client(sdk), table)),
            Arc::new(MemoryQueue::new()),
            Arc::new(SystemClock),
            Config::default(),
        )
    }

    /// What `reservations` single-unit reservations on `inventory` cost.
    async fn reserve(
        inventory: &Inventory,
        tally: &Tally,
        reservations: u64,
    ) -> (Counts, Duration) {
        let before = tally.counts();
        let started = Instant::now();
        for _ in 0..reservations {
            inventory
                .reserve(one_unit(), &Caller::local_admin())
                .await
                .expect("reserved");
        }
        (tally.counts().since(&before), started.elapsed())
    }

    fn row(history: u64, case: &str, counts: &Counts, reservations: u64, wall: Duration) {
        let per = |n: u64| {
            if reservations == 1 {
                thousands(n)
            } else {
                format!("{:.2}", n as f64 / reservations as f64)
            }
        };
        println!(
            "| {} | {case} | {} | {} | {} | {:.1?} |",
            thousands(history),
            per(counts.requests()),
            per_operation(counts, per),
            per(counts.events_read),
            wall / u32::try_from(reservations).unwrap_or(1),
        );
    }

    /// The requests of `counts` by operation, each as `per` writes it: `Query 1.00, GetItem 2.00`.
    fn per_operation(counts: &Counts, per: impl Fn(u64) -> String) -> String {
        counts
            .operations
            .iter()
            .map(|(name, n)| format!("{name} {}", per(*n)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The requests of `counts` by operation, as `Query 1, GetItem 2`.
    fn by_operation(counts: &Counts) -> String {
        counts
            .operations
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `100000` as `100,000`.
    fn thousands(n: u64) -> String {
        let digits = n.to_string();
        let mut out = String::new();
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(digit);
        }
        out
    }

    /// Requests per reservation at two warehouses (`default`, then `wh-2` by priority), warm:
    /// a line naming a location, allocated, preferring the second, split over both, and a cart
    /// of three items at two locations.
    pub(super) async fn locations() {
        println!("| reservation (warm process) | reservations | DynamoDB requests per reservation | by operation |");
        println!("|---|---:|---:|---|");
        let aws = TestAws::new().await;
        let tally = Tally::default();
        let table = aws
            .store(tally.client(aws.config()), "bench-locations")
            .await
            .table()
            .to_owned();
        let inventory = process(aws.config(), &table, &tally);
        let wh_2 = LocationId::parse("wh-2").expect("valid id");
        let warehouse = Location::new(
            wh_2.clone(),
            "Warehouse 2",
            LocationKind::Warehouse,
            true,
            false,
            1,
            true,
        )
        .expect("valid location");
        inventory.put_location(warehouse).await.expect("registered");
        let item = |name: &str| Sku::parse(name).expect("valid sku");
        // A, B, C at the default warehouse; A, B and S at wh-2; S has 1 unit at default.
        for (name, location, units) in [
            ("A", LocationId::default(), 100_000),
            ("B", LocationId::default(), 100_000),
            ("C", LocationId::default(), 100_000),
            ("A", wh_2.clone(), 100_000),
            ("B", wh_2.clone(), 100_000),
            ("S", LocationId::default(), 1),
            ("S", wh_2.clone(), 100_000),
        ] {
            let command = Command {
                id: CommandId::random(),
                sku: item(name),
                accepted_at: Timestamp::from_millis(0),
                action: Action::ReceiveStock {
                    location,
                    quantity: Quantity::new(units).expect("valid quantity"),
                    why: Annotation::received(None),
                },
            };
            inventory
                .apply_commands(&item(name), &[command])
                .await
                .expect("stock received");
        }
        let line = |name: &str, units: i64, at: Option<&LocationId>| Line {
            location: at.cloned(),
            ..Line::of(item(name), Quantity::new(units).expect("valid quantity"))
        };
        let request = |lines: Vec<Line>, preference: Preference| {
            ReserveRequest::new(lines, TtlSeconds::DEFAULT, None)
                .expect("valid request")
                .preferring(preference)
        };
        let preferring_wh_2 =
            Preference::new(None, vec![wh_2.clone()], false).expect("valid preference");
        let split = Preference::new(None, Vec::new(), true).expect("valid preference");
        let cases: Vec<(&str, u64, ReserveRequest)> = vec![
            (
                "one line naming `wh-2`",
                100,
                request(vec![line("A", 1, Some(&wh_2))], Preference::default()),
            ),
            (
                "one line allocated (`default` first by priority)",
                100,
                request(vec![line("A", 1, None)], Preference::default()),
            ),
            (
                "one line allocated, the request preferring `wh-2`",
                100,
                request(vec![line("A", 1, None)], preferring_wh_2),
            ),
            (
                "a cart of three items at two locations (A at `wh-2`, B and C allocated)",
                100,
                request(
                    vec![
                        line("A", 1, Some(&wh_2)),
                        line("B", 1, None),
                        line("C", 1, None),
                    ],
                    Preference::default(),
                ),
            ),
            (
                "one line of 2 split: the last unit at `default`, 1 at `wh-2`",
                1,
                request(vec![line("S", 2, None)], split),
            ),
        ];
        for (case, reservations, request) in cases {
            // Warm: this process has read the registry and the states these lines decide on.
            if reservations > 1 {
                inventory
                    .reserve(request.clone(), &Caller::local_admin())
                    .await
                    .expect("reserved");
            } else {
                // The split's item: its states at both locations known, the last unit at
                // `default` left.
                let known =
                    ReserveRequest::new(vec![line("S", 1, Some(&wh_2))], TtlSeconds::DEFAULT, None)
                        .expect("valid request");
                inventory
                    .reserve(known, &Caller::local_admin())
                    .await
                    .expect("reserved");
                let allocated =
                    ReserveRequest::new(vec![line("S", 100, None)], TtlSeconds::DEFAULT, None)
                        .expect("valid request");
                let view = inventory
                    .reserve(allocated, &Caller::local_admin())
                    .await
                    .expect("reserved");
                assert_eq!(view.lines[0].allocations[0].location, wh_2);
            }
            let before = tally.counts();
            for _ in 0..reservations {
                let view = inventory
                    .reserve(request.clone(), &Caller::local_admin())
                    .await
                    .expect("reserved");
                if reservations == 1 {
                    assert_eq!(view.lines[0].allocations.len(), 2, "split over both");
                }
            }
            let counts = tally.counts().since(&before);
            let per = |n: u64| format!("{:.2}", n as f64 / reservations as f64);
            println!(
                "| {case} | {reservations} | {} | {} |",
                per(counts.requests()),
                per_operation(&counts, per)
            );
        }
    }

    pub(super) async fn run() {
        println!("| events in history | reservation | DynamoDB requests per reservation | by operation | events read per reservation | wall per reservation (moto) |");
        println!("|---:|---|---:|---|---:|---:|");
        let started = Instant::now();
        let mut setups = Vec::new();
        for history in HISTORIES {
            setups.push(one_history(history).await);
        }
        for setup in setups {
            eprintln!("{setup}");
        }
        eprintln!("history scenario: {:.1?}", started.elapsed());
    }

    /// An object store that counts the listings and the object reads asked of it.
    struct CountedObjects {
        inner: inventory_core::aws::S3Objects,
        lists: std::sync::atomic::AtomicU64,
        gets: std::sync::atomic::AtomicU64,
    }

    #[async_trait::async_trait]
    impl inventory_core::ports::ObjectStore for CountedObjects {
        async fn put(
            &self,
            key: &str,
            bytes: Vec<u8>,
        ) -> Result<(), inventory_core::ports::ObjectStoreError> {
            self.inner.put(key, bytes).await
        }
        async fn get(
            &self,
            key: &str,
        ) -> Result<Option<Vec<u8>>, inventory_core::ports::ObjectStoreError> {
            self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.get(key).await
        }
        async fn list(
            &self,
            prefix: &str,
        ) -> Result<Vec<String>, inventory_core::ports::ObjectStoreError> {
            self.lists.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.list(prefix).await
        }
        async fn list_folders(
            &self,
            prefix: &str,
        ) -> Result<Vec<String>, inventory_core::ports::ObjectStoreError> {
            self.inner.list_folders(prefix).await
        }
    }

    /// What a page of 100 ledger entries costs: from the table, from the archive, across the
    /// two, and of events recorded before their figures (folded from the first). A history of
    /// 1,000 one-unit receipts; for the archive, versions 1..=600 archived in runs of 100 (an
    /// archiver's batch) and deleted from the table.
    pub(super) async fn ledger() {
        use inventory_core::archive::Archive;
        use inventory_core::domain::Figures;
        use inventory_core::ports::ObjectStore;
        use std::sync::atomic::Ordering;

        println!("| ledger page of 100 | DynamoDB requests | by operation | events read from the table | S3 listings | S3 objects read |");
        println!("|---|---:|---|---:|---:|---:|");
        let aws = TestAws::new().await;
        let sdk = aws.config();
        let plain = aws.dynamodb();
        let at = SystemClock.now();
        let history = |with_figures: bool| -> Vec<Event> {
            (1..=1_000)
                .map(|seq| Event {
                    figures: with_figures.then_some(Figures {
                        on_hand: seq as i64,
                        ..Figures::default()
                    }),
                    ..received(seq, 1, at)
                })
                .collect()
        };
        for (name, with_figures, archived) in [
            ("recorded figures, from the table (after 500)", true, false),
            ("recorded figures, from the archive (after 400)", true, true),
            (
                "recorded figures, across archive and table (after 550)",
                true,
                true,
            ),
            (
                "events without figures, folded from the first (after 900)",
                false,
                false,
            ),
        ] {
            let store = aws.store(plain.clone(), "bench-ledger").await;
            let table = store.table().to_owned();
            // A fresh stream per case.
            let _ = plain.delete_table().table_name(&table).send().await;
            let store = aws.store(plain.clone(), "bench-ledger").await;
            let events = history(with_figures);
            write_events(&plain, &table, &events).await;
            let state = inventory_core::domain::SkuState::from_events(&events);
            store
                .save_snapshot(&StreamId::of(&sku()), &state)
                .await
                .expect("snapshot");
            let objects = CountedObjects {
                inner: aws.objects(aws.s3(), "bench-ledger").await,
                lists: Default::default(),
                gets: Default::default(),
            };
            if archived {
                for run in events[..600].chunks(100) {
                    objects
                        .inner
                        .put(
                            &inventory_core::archive::segment_key(
                                &StreamId::of(&sku()),
                                &inventory_core::archive::day_of(at),
                                run[0].seq,
                                run[run.len() - 1].seq,
                            ),
                            inventory_core::archive::encode(run),
                        )
                        .await
                        .expect("archived");
                }
                for seq in 1..=600_u64 {
                    plain
                        .delete_item()
                        .table_name(&table)
                        .key("pk", AttributeValue::S(format!("sku#{}", sku())))
                        .key("sk", AttributeValue::N(seq.to_string()))
                        .send()
                        .await
                        .expect("deleted");
                }
            }
            let objects = Arc::new(objects);
            let tally = Tally::default();
            let inventory =
                process(sdk, &table, &tally).with_archive(Archive::new(objects.clone()));
            // The head is read once per process (snapshot and tail): not the page's cost.
            inventory.item(&sku()).await.expect("item");
            let after = match name {
                n if n.contains("after 400") => 400,
                n if n.contains("after 550") => 550,
                n if n.contains("after 900") => 900,
                _ => 500,
            };
            let (lists, gets) = (
                objects.lists.load(Ordering::SeqCst),
                objects.gets.load(Ordering::SeqCst),
            );
            let before = tally.counts();
            let page = inventory.ledger(&sku(), after, 100).await.expect("a page");
            assert_eq!(page.entries.len(), 100, "{name}");
            assert_eq!(page.entries[0].after.on_hand, after as i64 + 1, "{name}");
            let cost = tally.counts().since(&before);
            println!(
                "| {name} | {} | {} | {} | {} | {} |",
                cost.requests(),
                by_operation(&cost),
                cost.events_read,
                objects.lists.load(Ordering::SeqCst) - lists,
                objects.gets.load(Ordering::SeqCst) - gets,
            );
        }
    }

    /// The command processor's requests for one Kinesis batch: 100 commands over 10 SKUs
    /// (receipts and adjustments, 10 each), applied as the processor applies a batch, one call
    /// per SKU, on items already stocked (their first receipt and their split not counted):
    /// once on items on one stream, once on items split into 4 buckets.
    pub(super) async fn processor_batch() {
        println!("| batch | DynamoDB requests | by operation | per SKU |");
        println!("|---|---:|---|---:|");
        let aws = TestAws::new().await;
        let sdk = aws.config();
        let table = aws
            .store(aws.dynamodb(), "bench-processor")
            .await
            .table()
            .to_owned();
        for buckets in [BucketCount::ONE, BucketCount::new(4).expect("valid count")] {
            let tally = Tally::default();
            let processor = process(sdk, &table, &tally);
            processor_batch_on(&processor, &tally, buckets).await;
        }
    }

    async fn processor_batch_on(processor: &Inventory, tally: &Tally, buckets: BucketCount) {
        let skus: Vec<Sku> = (0..10)
            .map(|n| Sku::parse(&format!("BATCH-{}-{n}", buckets.get())).expect("valid sku"))
            .collect();
        let command = |sku: &Sku, action: Action| Command {
            id: CommandId::random(),
            sku: sku.clone(),
            accepted_at: SystemClock.now(),
            action,
        };
        let receipt = |units: i64| Action::ReceiveStock {
            location: Default::default(),
            quantity: Quantity::new(units).expect("valid quantity"),
            why: Annotation::received(None),
        };
        for sku in &skus {
            let mut setup = vec![command(sku, receipt(1_000))];
            if buckets != BucketCount::ONE {
                setup.push(command(
                    sku,
                    Action::SetBuckets {
                        location: Default::default(),
                        count: buckets,
                    },
                ));
            }
            for one in setup {
                processor
                    .apply_commands(sku, &[one])
                    .await
                    .expect("stocked");
            }
        }
        let before = tally.counts();
        for sku in &skus {
            let batch: Vec<Command> = (0..10)
                .map(|n| {
                    if n % 2 == 0 {
                        command(sku, receipt(5))
                    } else {
                        command(
                            sku,
                            Action::AdjustStock {
                                location: Default::default(),
                                delta: -1,
                                why: Annotation::from_text("count".to_owned()),
                            },
                        )
                    }
                })
                .collect();
            processor
                .apply_commands(sku, &batch)
                .await
                .expect("batch applied");
        }
        let counts = tally.counts().since(&before);
        let operations: Vec<String> = counts
            .operations
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        let items = if buckets == BucketCount::ONE {
            "items on one stream".to_owned()
        } else {
            format!("items split into {} buckets", buckets.get())
        };
        println!(
            "| 100 commands over 10 SKUs (5 receipts and 5 adjustments each), {items} | {} | {} | {:.1} |",
            counts.requests(),
            operations.join(", "),
            counts.requests() as f64 / skus.len() as f64
        );
    }

    /// Measures one length of history; returns how long its setup took.
    async fn one_history(history: u64) -> String {
        let aws = TestAws::new().await;
        let sdk = aws.config();
        let plain = aws.dynamodb();
        let setup = Arc::new(
            aws.store(plain.clone(), &format!("bench-history-{history}"))
                .await,
        );
        let table = setup.table().to_owned();

        // The history: event 1 (plenty of stock) through the store, and the raw item it wrote
        // compared with ours, then events 2..=history in batches.
        let started = Instant::now();
        let first = received(1, 1_000_000, SystemClock.now());
        append(&setup, first.clone()).await;
        let stored = plain
            .get_item()
            .table_name(&table)
            .key("pk", AttributeValue::S(format!("sku#{}", sku())))
            .key("sk", AttributeValue::N("1".to_owned()))
            .consistent_read(true)
            .send()
            .await
            .expect("event 1 read")
            .item;
        assert_eq!(stored, Some(event_item(&first)), "item format differs");
        let mut events = vec![first];
        events.extend(write_history(&plain, &table, 2..=history).await);
        let written = started.elapsed();

        // Cold, no snapshot stored yet: the tail query reads the whole history.
        let tally = Tally::default();
        let (counts, wall) = reserve(&process(sdk, &table, &tally), &tally, 1).await;
        assert_eq!(counts.events_read, history);
        row(history, "cold, no snapshot", &counts, 1, wall);

        // A snapshot at the head (the history and that hold), saved by the snapshotter from a
        // feed batch of every event (it folds them in memory), then a few events after it.
        let started = Instant::now();
        let head = setup
            .read_event(&StreamId::of(&sku()), history + 1)
            .await
            .expect("head read")
            .expect("head");
        events.push(head);
        let changes: Vec<FeedChange> = events.into_iter().map(FeedChange::Appended).collect();
        let failed = Snapshotter::new(Arc::clone(&setup) as Arc<dyn EventStore>)
            .react(&changes)
            .await;
        assert!(failed.is_empty(), "snapshot not saved");
        let snapshot = setup
            .read_snapshots(&[StreamId::of(&sku())])
            .await
            .expect("snapshot read");
        assert_eq!(snapshot[0].as_ref().map(|s| s.version), Some(history + 1));
        for seq in history + 2..=history + 1 + AFTER_SNAPSHOT {
            append(&setup, received(seq, 1, SystemClock.now())).await;
        }
        let snapshotted = started.elapsed();

        // Cold: a new process reads the snapshot and the events after it.
        let tally = Tally::default();
        let inventory = process(sdk, &table, &tally);
        let (counts, wall) = reserve(&inventory, &tally, 1).await;
        assert_eq!(counts.events_read, AFTER_SNAPSHOT);
        row(
            history,
            &format!("cold, snapshot + {AFTER_SNAPSHOT} newer events"),
            &counts,
            1,
            wall,
        );
        // Warm: the same process decides on the state it knows.
        let (counts, wall) = reserve(&inventory, &tally, WARM).await;
        row(
            history,
            &format!("warm, next {WARM} (average)"),
            &counts,
            WARM,
            wall,
        );

        plain
            .delete_table()
            .table_name(&table)
            .send()
            .await
            .expect("table deleted");
        format!(
            "history of {}: written in {written:.1?}, snapshot and {AFTER_SNAPSHOT} events in {snapshotted:.1?}",
            thousands(history)
        )
    }
}
