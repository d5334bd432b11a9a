//! The expiry timer fed `events/expiry-timer.json` (the scheduled event `sam local invoke -e`
//! uses) against DynamoDB on moto: a hold past its grace gets one `hold_expired`, a hold still
//! in its grace and a released hold get none, a second run writes nothing more, and every request
//! the sweeps send is one its role grants.

use inventory_core::domain::Annotation;
use inventory_core::domain::StreamId;

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use inventory_core::app::ReserveRequest;
use inventory_core::aws::TestAws;
use inventory_core::domain::{
    Action, Bucket, BucketCount, Caller, Change, ClientId, Command, CommandId, Event, Line,
    Quantity, ReservationId, Scope, Sku, Timestamp, TtlSeconds,
};
use inventory_core::memory::MemoryQueue;
use inventory_core::ports::{
    Clock, ManualClock, StreamAppend, Streams, SystemClock, Transaction, Transactions,
};
use inventory_core::{Config, Inventory};
use inventory_test_support::grants::{assert_granted_by, AccessLog, Names};

const EVENT: &str = include_str!("../../../events/expiry-timer.json");

fn hold(sku: &Sku, seq: u64, at: Timestamp, expires_at: Timestamp) -> Event {
    Event {
        actor: None,
        figures: None,
        stream: StreamId::of(sku),
        seq,
        at,
        change: Change::HoldPlaced {
            reservation_id: ReservationId::new(StreamId::of(sku), seq, 0xabc),
            quantity: Quantity::new(1).unwrap(),
            expires_at,
            release_at: expires_at.plus_seconds(120),
            lines: Vec::new(),
            owner: None,
        },
    }
}

#[tokio::test]
async fn a_scheduled_run_expires_each_lapsed_hold_once() {
    let _: CloudWatchEvent = serde_json::from_str(EVENT).expect("the checked-in event parses");
    let aws = TestAws::new().await;
    let names = Names {
        table: aws.name("expiry"),
        ..Names::default()
    };
    let log = AccessLog::default();
    let dynamo = aws.store(log.dynamodb(aws.config()), "expiry").await;
    let store = Arc::new(dynamo);
    let now = SystemClock.now();
    let sku = Sku::parse("SKU-1").unwrap();
    let receipt = Event {
        actor: None,
        figures: None,
        stream: StreamId::of(&sku),
        seq: 1,
        at: now.plus_seconds(-900),
        change: Change::StockReceived {
            command_id: CommandId::random(),
            quantity: Quantity::new(10).unwrap(),
            why: Annotation::received(None),
        },
    };
    let lapsed = hold(&sku, 2, now.plus_seconds(-800), now.plus_seconds(-200));
    let in_grace = hold(&sku, 3, now.plus_seconds(-700), now.plus_seconds(-60));
    let released = hold(&sku, 4, now.plus_seconds(-600), now.plus_seconds(-300));
    store
        .write(Transaction::appends(vec![StreamAppend {
            stream: StreamId::of(&sku),
            expected: 0,
            events: vec![receipt, lapsed, in_grace, released],
        }]))
        .await
        .expect("history written");
    let inventory = Inventory::new(
        store.clone(),
        Arc::new(MemoryQueue::new()),
        Arc::new(SystemClock),
        Config {
            sweeps_per_invocation: 2,
            sweep_interval: Duration::from_millis(50),
            ..Config::default()
        },
    );

    let release = Command {
        id: CommandId::random(),
        sku: sku.clone(),
        accepted_at: now,
        action: Action::ReleaseHold {
            reservation_id: ReservationId::new(StreamId::of(&sku), 4, 0xabc),
        },
    };
    inventory
        .apply_commands(&sku, &[release])
        .await
        .expect("the shopper gave hold 4 back");

    log.take();
    let report = inventory.run_expiry_timer().await.expect("the run sweeps");
    assert_eq!(report.sweeps.len(), 2);
    assert_eq!(report.sweeps.iter().map(|s| s.expired).sum::<usize>(), 1);
    let again = inventory.run_expiry_timer().await.expect("a second run");
    assert_granted_by("ExpiryTimerRole", &names, &log.take());
    assert_eq!(again.sweeps.iter().map(|s| s.expired).sum::<usize>(), 0);

    let expired: Vec<u64> = store
        .read_stream(&StreamId::of(&sku), 5)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.change {
            Change::HoldExpired { reservation_id, .. } => Some(reservation_id.anchor_seq()),
            _ => None,
        })
        .collect();
    assert_eq!(expired, vec![2], "only the hold past its grace, once");
}

/// A split item's holds are in its bucket streams: the sweep finds them there, expires each
/// once and moves the units they free home to bucket 0, and never fails (on DynamoDB the index
/// key names the bucket's stream, `sku#ITEM@2`, which a sweep once refused as a key it did
/// not expect, failing every sweep of the table).
#[tokio::test]
async fn a_split_items_holds_in_its_buckets_expire_and_their_units_go_home() {
    let aws = TestAws::new().await;
    let names = Names {
        table: aws.name("expiry-split"),
        ..Names::default()
    };
    let log = AccessLog::default();
    let store = Arc::new(aws.store(log.dynamodb(aws.config()), "expiry-split").await);
    let clock = ManualClock::new(SystemClock.now());
    let inventory = Inventory::new(
        store.clone(),
        Arc::new(MemoryQueue::new()),
        Arc::new(clock.clone()),
        Config {
            release_grace_secs: 0,
            sweeps_per_invocation: 1,
            ..Config::default()
        },
    );
    let item = Sku::parse("SKU-SPLIT").unwrap();
    let admin = |action: Action| Command {
        id: CommandId::random(),
        sku: item.clone(),
        accepted_at: clock.now(),
        action,
    };
    let received = admin(Action::ReceiveStock {
        location: Default::default(),
        quantity: Quantity::new(40).unwrap(),
        why: Annotation::received(None),
    });
    let split = admin(Action::SetBuckets {
        location: Default::default(),
        count: BucketCount::new(4).unwrap(),
    });
    inventory
        .apply_arrivals(&item, &[received, split], clock.now())
        .await
        .expect("stocked and split");
    for shopper in 0..6 {
        let line = Line::of(item.clone(), Quantity::new(1).unwrap());
        let request = ReserveRequest::new(vec![line], TtlSeconds::new(60).unwrap(), None).unwrap();
        let caller = Caller::new(
            ClientId::parse(&format!("shop-{shopper}")).unwrap(),
            vec![Scope::Reserve],
        );
        inventory.reserve(request, &caller).await.expect("a hold");
    }
    let buckets: Vec<StreamId> = (1..4)
        .map(|b| StreamId::of(&item).in_bucket(Bucket::new(b).unwrap()))
        .collect();
    let mut placed = 0;
    for bucket in &buckets {
        for event in store.read_stream(bucket, 0).await.unwrap() {
            placed += usize::from(matches!(event.change, Change::HoldPlaced { .. }));
        }
    }
    assert_eq!(placed, 6, "a split item's holds are in buckets 1 to 3");
    assert_eq!(inventory.item(&item).await.unwrap().available, 34);

    clock.advance_millis(61_000);
    log.take();
    let report = inventory.run_expiry_timer().await.expect("the run sweeps");
    assert_eq!(report.failed, 0, "no sweep fails");
    let sweep = &report.sweeps[0];
    assert_eq!((sweep.found, sweep.expired, sweep.failed_skus), (6, 6, 0));
    let again = inventory.run_expiry_timer().await.expect("a second run");
    assert_eq!((again.failed, again.sweeps[0].expired), (0, 0));
    assert_granted_by("ExpiryTimerRole", &names, &log.take());

    let mut expired = 0;
    let mut sent_home = 0;
    for bucket in &buckets {
        for event in store.read_stream(bucket, 0).await.unwrap() {
            match event.change {
                Change::HoldExpired { .. } => expired += 1,
                Change::StockMoved { moves, .. } => {
                    sent_home += moves
                        .iter()
                        .filter(|m| m.to == Bucket::HOME)
                        .map(|m| m.quantity.get())
                        .sum::<i64>();
                }
                _ => {}
            }
        }
    }
    assert_eq!(
        (expired, sent_home),
        (6, 6),
        "each hold expired once, its unit moved home"
    );
    assert_eq!(inventory.item(&item).await.unwrap().available, 40);
}
