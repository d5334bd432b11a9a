//! The whole flow on moto, through the real AWS SDK: receive, reserve, let holds expire (an
//! injected clock), check out some, release some. The snapshotter and the archiver are fed by
//! polling the table's real DynamoDB stream (the same code `inventory dev --endpoint-url`
//! runs); the expiry timer sweeps the `ExpiryIndex` GSI. Then: snapshots and the read view
//! converge to the fold, every event is in S3, retired events are deleted (as DynamoDB's TTL
//! would), a process starting cold still reads the right state, and `inventory audit --all` and
//! `inventory replay` report no mismatch.

use inventory_core::domain::Annotation;
use inventory_core::domain::StreamId;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use inventory_cli::feed_source::{latest_stream_arn, FeedSource};
use inventory_cli::shard_poller::poll;
use inventory_core::app::ReserveRequest;
use inventory_core::archive::Archive;
use inventory_core::aws::{DynamoStore, TestAws};
use inventory_core::domain::{
    Caller, Change, Command, Event, HoldStatus, Line, Quantity, ReservationId, Sku, SkuState,
    TtlSeconds,
};
use inventory_core::feed::Reaction;
use inventory_core::memory::MemoryQueue;
use inventory_core::ports::{Clock, ManualClock, Snapshots, Streams, SystemClock};
use inventory_core::reactions::{Archiver, Snapshotter};
use inventory_core::{Config, Inventory};

const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);

struct World {
    endpoint: String,
    table: String,
    bucket: String,
    client: aws_sdk_dynamodb::Client,
    store: Arc<DynamoStore>,
    queue: Arc<MemoryQueue>,
    clock: ManualClock,
    inventory: Inventory,
}

impl World {
    fn fresh_process(&self) -> Inventory {
        Inventory::new(
            self.store.clone(),
            self.queue.clone(),
            Arc::new(self.clock.clone()),
            Config::default(),
        )
    }

    /// Applies every queued command, grouped by SKU, as the processor does.
    async fn process(&self) {
        loop {
            let batch: Vec<Command> = self.queue.try_receive(100);
            if batch.is_empty() {
                return;
            }
            let mut by_sku: BTreeMap<Sku, Vec<Command>> = BTreeMap::new();
            for command in batch {
                by_sku.entry(command.sku.clone()).or_default().push(command);
            }
            for (sku, commands) in &by_sku {
                self.inventory
                    .apply_commands(sku, commands)
                    .await
                    .expect("commands apply");
            }
        }
    }

    async fn reserve(&self, lines: &[(&Sku, i64)], ttl: i64) -> ReservationId {
        let lines = lines
            .iter()
            .map(|(sku, n)| Line::of((*sku).clone(), Quantity::new(*n).unwrap()))
            .collect();
        let request = ReserveRequest::new(lines, TtlSeconds::new(ttl).unwrap(), None).unwrap();
        self.inventory
            .reserve(request, &Caller::local_admin())
            .await
            .expect("reserved")
            .reservation_id
    }

    async fn stream(&self, sku: &Sku) -> Vec<Event> {
        self.store
            .read_stream(&StreamId::of(sku), 0)
            .await
            .expect("stream")
    }

    /// Event items that carry a time to live, as (pk, sk).
    async fn retired_items(&self) -> Vec<(String, String)> {
        let mut found = Vec::new();
        let pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(pk, :events) AND attribute_exists(#ttl)")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":events", AttributeValue::S("sku#".into()))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .expect("scan");
        for item in pages {
            if let (Some(AttributeValue::S(pk)), Some(AttributeValue::N(sk))) =
                (item.get("pk"), item.get("sk"))
            {
                found.push((pk.clone(), sk.clone()));
            }
        }
        found
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_inventory"))
            .args(args)
            .args(["--endpoint-url", &self.endpoint])
            .args(["--table", &self.table, "--bucket", &self.bucket])
            .env_remove("INVENTORY_TABLE")
            .env_remove("INVENTORY_ARCHIVE_BUCKET")
            .output()
            .expect("the inventory binary runs")
    }
}

async fn until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < CONVERGE_TIMEOUT,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_reserve_expire_checkout_release_converge_archive_delete_and_audit_clean() {
    let aws = TestAws::new().await;
    let client = aws.dynamodb();
    let store = Arc::new(aws.store(client.clone(), "e2e").await);
    let objects = aws.objects(aws.s3(), "e2e").await;
    let (table, bucket) = (store.table().to_owned(), objects.bucket().to_owned());
    let archive = Archive::new(Arc::new(objects));
    let clock = ManualClock::new(SystemClock.now());
    let queue = Arc::new(MemoryQueue::new());
    let inventory = Inventory::new(
        store.clone(),
        queue.clone(),
        Arc::new(clock.clone()),
        Config::default(),
    );
    let world = World {
        endpoint: aws.endpoint().to_owned(),
        table: table.clone(),
        bucket: bucket.clone(),
        client: client.clone(),
        store: store.clone(),
        queue,
        clock: clock.clone(),
        inventory,
    };

    // The two stream readers, as the two event source mappings.
    let streams = aws_sdk_dynamodbstreams::Client::new(aws.config());
    let arn = latest_stream_arn(&client, &table).await.expect("stream");
    let snapshotter = Arc::new(Snapshotter::new(store.clone()));
    let archiver = Arc::new(Archiver::new(
        store.clone(),
        archive.clone(),
        Arc::new(clock.clone()),
        Duration::ZERO,
    ));
    let feed = |name, reaction| {
        tokio::spawn(poll(Arc::new(FeedSource {
            client: streams.clone(),
            stream_arn: arn.clone(),
            name,
            reaction,
        })))
    };
    let pollers = [
        feed("snapshotter", snapshotter as Arc<dyn Reaction>),
        feed("archiver", archiver),
    ];

    let a = Sku::parse("E2E-A").unwrap();
    let b = Sku::parse("E2E-B").unwrap();
    world
        .inventory
        .receive_stock(
            a.clone(),
            Quantity::new(20).unwrap(),
            Annotation::received(None),
            None,
            &Caller::local_admin(),
        )
        .await
        .unwrap();
    world
        .inventory
        .receive_stock(
            b.clone(),
            Quantity::new(10).unwrap(),
            Annotation::received(None),
            None,
            &Caller::local_admin(),
        )
        .await
        .unwrap();
    world.process().await;

    let lapsing = world.reserve(&[(&a, 2), (&b, 1)], 60).await;
    let lapsing_too = world.reserve(&[(&a, 1)], 60).await;
    let bought = world.reserve(&[(&a, 3), (&b, 2)], 600).await;
    let returned = world.reserve(&[(&b, 4)], 600).await;
    let kept = world.reserve(&[(&a, 5)], 900).await;

    // The archiver retires only what a snapshot covers when it handles a SKU's batch, so let
    // each SKU have a snapshot before its next events (the expiries, the checkout) reach the
    // archiver: the oldest events are then retired on that batch, whichever reaction runs first.
    for sku in [&a, &b] {
        until(&format!("{sku} has a snapshot"), || {
            let store = store.clone();
            let sku = sku.clone();
            async move {
                let snapshot = store
                    .read_snapshots(&[StreamId::of(&sku)])
                    .await
                    .unwrap()
                    .pop()
                    .flatten();
                snapshot.is_some()
            }
        })
        .await;
    }

    // The short holds lapse: past expiry and grace, the timer expires them once.
    clock.advance_millis((60 + Config::default().release_grace_secs + 1) * 1000);
    let sweep = world.inventory.sweep_expired_holds().await.expect("sweep");
    assert_eq!(
        sweep.expired, 3,
        "three lines of two lapsed reservations: {sweep:?}"
    );
    let again = world
        .fresh_process()
        .sweep_expired_holds()
        .await
        .expect("sweep again");
    assert_eq!(again.expired, 0, "a second sweep expires nothing more");

    world
        .inventory
        .request_checkout(&bought, None, &Caller::local_admin())
        .await
        .unwrap();
    world
        .inventory
        .request_release(&returned, None, &Caller::local_admin())
        .await
        .unwrap();
    world.process().await;
    for (id, status) in [
        (&lapsing, HoldStatus::Expired),
        (&lapsing_too, HoldStatus::Expired),
        (&bought, HoldStatus::Committed),
        (&returned, HoldStatus::Released),
        (&kept, HoldStatus::Active),
    ] {
        let view = world
            .inventory
            .reservation(id, &Caller::local_admin())
            .await
            .expect("reservation");
        assert_eq!(view.status, status, "{id}");
    }
    let expiries = |events: &[Event]| {
        events
            .iter()
            .filter(|e| matches!(e.change, Change::HoldExpired { .. }))
            .count()
    };
    assert_eq!(expiries(&world.stream(&a).await), 2);
    assert_eq!(expiries(&world.stream(&b).await), 1);

    // Snapshots and the read view converge to the fold; the archive holds every event.
    let mut folds = BTreeMap::new();
    for sku in [&a, &b] {
        let events = world.stream(sku).await;
        let fold = SkuState::from_events(&events);
        until(
            &format!("the snapshot of {sku} reaches {}", fold.version),
            || {
                let store = store.clone();
                let sku = sku.clone();
                let version = fold.version;
                async move {
                    let snapshot = store
                        .read_snapshots(&[StreamId::of(&sku)])
                        .await
                        .unwrap()
                        .pop()
                        .flatten();
                    snapshot.is_some_and(|s| s.version == version)
                }
            },
        )
        .await;
        let snapshot = store
            .read_snapshots(std::slice::from_ref(&StreamId::of(sku)))
            .await
            .unwrap()
            .pop()
            .flatten();
        assert_eq!(snapshot.as_ref(), Some(&fold), "{sku}: snapshot = fold");
        let view = world
            .inventory
            .items(std::slice::from_ref(sku))
            .await
            .unwrap();
        let current = world.inventory.item(sku).await.unwrap();
        assert_eq!(view.items, vec![current], "{sku}: read view = current read");
        until(
            &format!("the archive of {sku} holds all {} events", events.len()),
            || {
                let archive = archive.clone();
                let sku = sku.clone();
                let events = events.clone();
                async move {
                    let archived = archive.read_sku(&StreamId::of(&sku)).await.unwrap();
                    archived.problems.is_empty()
                        && archived.events.into_values().collect::<Vec<_>>() == events
                }
            },
        )
        .await;
        folds.insert(sku.clone(), fold);
    }

    // DynamoDB's TTL, played: delete the retired events (archived and covered by a snapshot);
    // the REMOVE records go through the stream to the archiver like real deletions.
    until("the first event of each SKU is retired", || async {
        let retired = world.retired_items().await;
        ["sku#E2E-A", "sku#E2E-B"]
            .iter()
            .all(|pk| retired.contains(&((*pk).to_owned(), "1".to_owned())))
    })
    .await;
    let retired = world.retired_items().await;
    for (pk, sk) in &retired {
        client
            .delete_item()
            .table_name(&table)
            .key("pk", AttributeValue::S(pk.clone()))
            .key("sk", AttributeValue::N(sk.clone()))
            .send()
            .await
            .expect("deleted");
    }
    let live_a = world.stream(&a).await;
    assert!(
        live_a.first().is_none_or(|e| e.seq > 1),
        "the oldest events of {a} are gone from the table"
    );

    // A process starting cold reads the same state from the snapshot, and still sells.
    let cold = world.fresh_process();
    for (sku, fold) in &folds {
        let item = cold.item(sku).await.expect("readable after deletion");
        assert_eq!(
            (item.on_hand, item.committed, item.version),
            (fold.on_hand, fold.committed, fold.version)
        );
    }
    let request = ReserveRequest::new(
        vec![Line::of(a.clone(), Quantity::new(1).unwrap())],
        TtlSeconds::new(300).unwrap(),
        None,
    )
    .unwrap();
    cold.reserve(request, &Caller::local_admin())
        .await
        .expect("a cold process still reserves");
    until("the snapshot follows the new hold", || {
        let store = store.clone();
        let a = a.clone();
        async move {
            let snapshot = store
                .read_snapshots(std::slice::from_ref(&StreamId::of(&a)))
                .await
                .unwrap()
                .pop()
                .flatten();
            let head = store
                .read_stream(&StreamId::of(&a), 0)
                .await
                .unwrap()
                .last()
                .map(|e| e.seq);
            snapshot.map(|s| s.version) == head
        }
    })
    .await;
    until("the archive holds the new hold", || {
        let archive = archive.clone();
        let store = store.clone();
        let a = a.clone();
        async move {
            let head = store
                .read_stream(&StreamId::of(&a), 0)
                .await
                .unwrap()
                .last()
                .map(|e| e.seq);
            archive
                .read_sku(&StreamId::of(&a))
                .await
                .unwrap()
                .events
                .keys()
                .next_back()
                .copied()
                == head
        }
    })
    .await;

    // The audit rebuilds every item from the archive plus the table: no mismatch.
    let audit = world.cli(&["audit", "--all"]);
    let report = String::from_utf8_lossy(&audit.stdout);
    assert!(
        audit.status.success(),
        "audit failed: {report}\n{}",
        String::from_utf8_lossy(&audit.stderr)
    );
    assert!(report.contains("audited 2 SKUs"), "{report}");
    let replay = world.cli(&["replay", "--sku", "E2E-A"]);
    assert!(
        replay.status.success(),
        "replay failed: {}\n{}",
        String::from_utf8_lossy(&replay.stdout),
        String::from_utf8_lossy(&replay.stderr)
    );
    for poller in pollers {
        poller.abort();
    }
}
