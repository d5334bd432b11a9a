//! The service's metrics as a recorder sees them: reservations by outcome, commands by outcome
//! with their lag, expired holds; labelled by outcome only, never by a SKU or a reservation.

use inventory_core::domain::Annotation;
use std::sync::Arc;

use inventory_core::app::ReserveRequest;
use inventory_core::domain::{
    Action, Caller, Command, CommandId, Line, Quantity, Sku, Timestamp, TtlSeconds,
};
use inventory_core::memory::{MemoryQueue, MemoryStore};
use inventory_core::ports::{Clock, ManualClock};
use inventory_core::telemetry;
use inventory_core::{Config, Inventory};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;

fn sku() -> Sku {
    Sku::parse("SKU-SECRET-1").unwrap()
}

fn request(units: i64) -> ReserveRequest {
    let lines = vec![Line::of(sku(), Quantity::new(units).unwrap())];
    ReserveRequest::new(lines, TtlSeconds::new(60).unwrap(), None).unwrap()
}

#[tokio::test]
async fn reservations_commands_and_expiries_are_counted_by_outcome_and_never_by_sku() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let inventory = Inventory::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryQueue::new()),
        Arc::new(clock.clone()),
        Config::default(),
    );
    let receipt = Command {
        id: CommandId::random(),
        sku: sku(),
        accepted_at: clock.now(),
        action: Action::ReceiveStock {
            location: Default::default(),
            quantity: Quantity::new(3).unwrap(),
            why: Annotation::received(None),
        },
    };
    clock.advance_millis(250);
    inventory
        .apply_commands(&sku(), std::slice::from_ref(&receipt))
        .await
        .unwrap();
    inventory.apply_commands(&sku(), &[receipt]).await.unwrap();
    let caller = Caller::local_admin();
    inventory.reserve(request(2), &caller).await.unwrap();
    inventory.reserve(request(2), &caller).await.unwrap_err();
    clock.advance_millis(600_000);
    inventory.sweep_expired_holds().await.unwrap();

    let mut counters = Vec::new();
    let mut lags = Vec::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let (kind, key) = key.into_parts();
        for label in key.labels() {
            assert!(
                !label.value().contains("SKU"),
                "{key:?} is labelled by a SKU"
            );
        }
        let outcome = key
            .labels()
            .find(|l| l.key() == "outcome")
            .map(|l| l.value().to_owned());
        match (kind, value) {
            (MetricKind::Counter, DebugValue::Counter(n)) => {
                counters.push((key.name().to_owned(), outcome, n));
            }
            (MetricKind::Histogram, DebugValue::Histogram(values))
                if key.name() == telemetry::APPLY_LAG =>
            {
                lags.extend(values.into_iter().map(|v| v.into_inner()));
            }
            _ => {}
        }
    }
    counters.sort();
    let count = |name: &str, outcome: Option<&str>| {
        counters
            .iter()
            .find(|(n, o, _)| n == name && o.as_deref() == outcome)
            .map_or(0, |(_, _, count)| *count)
    };
    assert_eq!(
        count(telemetry::RESERVATIONS, Some("granted")),
        1,
        "{counters:?}"
    );
    assert_eq!(
        count(telemetry::RESERVATIONS, Some("insufficient_stock")),
        1
    );
    assert_eq!(
        count(telemetry::COMMANDS, Some("applied")),
        2,
        "the receipt and the expiry"
    );
    assert_eq!(count(telemetry::COMMANDS, Some("duplicate")), 1);
    assert_eq!(count(telemetry::HOLDS_EXPIRED, None), 1);
    assert!(lags.contains(&250.0), "the receipt's lag: {lags:?}");
}

#[tokio::test]
async fn a_record_parked_twice_is_counted_once_and_the_timer_reports_how_many_are_parked() {
    use inventory_core::ports::ParkReason;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let inventory = Inventory::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryQueue::new()),
        Arc::new(ManualClock::new(Timestamp::from_millis(1_700_000_000_000))),
        Config {
            sweeps_per_invocation: 1,
            ..Config::default()
        },
    );
    let record = b"{\"type\":\"teleport_stock\"}";
    for _ in 0..2 {
        inventory
            .park(
                &sku(),
                CommandId::for_record(record),
                record,
                ParkReason::UnknownShape,
                "unknown variant",
            )
            .await
            .unwrap();
    }
    let report = inventory.run_expiry_timer().await.unwrap();
    assert_eq!(report.parked, Some(1));

    let mut parked = None;
    let mut gauge = None;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let (_, key) = key.into_parts();
        let outcome = key
            .labels()
            .find(|l| l.key() == "outcome")
            .map(|l| l.value().to_owned());
        match value {
            DebugValue::Counter(n)
                if key.name() == telemetry::COMMANDS && outcome.as_deref() == Some("parked") =>
            {
                parked = Some(n);
            }
            DebugValue::Gauge(level) if key.name() == telemetry::PARKED_COMMANDS => {
                gauge = Some(level.into_inner());
            }
            _ => {}
        }
    }
    assert_eq!(parked, Some(1), "the redelivery found it parked");
    assert_eq!(gauge, Some(1.0), "one command is parked right now");
}

#[tokio::test]
async fn changes_are_counted_by_kind_and_rejections_by_reason() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let inventory = Inventory::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryQueue::new()),
        Arc::new(clock.clone()),
        Config::default(),
    );
    let command = |action| Command {
        id: CommandId::random(),
        sku: sku(),
        accepted_at: clock.now(),
        action,
    };
    let receipt = command(Action::ReceiveStock {
        location: Default::default(),
        quantity: Quantity::new(3).unwrap(),
        why: Annotation::received(None),
    });
    inventory.apply_commands(&sku(), &[receipt]).await.unwrap();
    let caller = Caller::local_admin();
    let held = inventory.reserve(request(2), &caller).await.unwrap();
    let reservation_id = held.reservation_id;
    let ship = |units| Action::FulfillHold {
        reservation_id: reservation_id.clone(),
        quantity: Some(Quantity::new(units).unwrap()),
        reference: None,
    };
    let sold = [
        command(Action::CommitHold {
            reservation_id: reservation_id.clone(),
        }),
        command(ship(1)),
        command(ship(2)),
    ];
    inventory.apply_commands(&sku(), &sold).await.unwrap();

    let mut counted = Vec::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let (_, key) = key.into_parts();
        if let DebugValue::Counter(n) = value {
            for label in key.labels() {
                counted.push((key.name().to_owned(), label.value().to_owned(), n));
            }
        }
    }
    counted.sort();
    for expected in [
        (telemetry::STOCK_CHANGES, "received", 1),
        (telemetry::STOCK_CHANGES, "committed", 1),
        (telemetry::STOCK_CHANGES, "fulfilled", 1),
        (telemetry::REJECTIONS, "exceeds_unshipped", 1),
    ] {
        let found = counted
            .iter()
            .any(|(name, label, n)| (name.as_str(), label.as_str(), *n) == expected);
        assert!(found, "{expected:?} in {counted:?}");
    }
}

#[tokio::test]
async fn ledger_pages_are_counted_by_where_they_were_read() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let inventory = Inventory::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryQueue::new()),
        Arc::new(ManualClock::new(Timestamp::from_millis(1_700_000_000_000))),
        Config::default(),
    );
    let receipt = Command {
        id: CommandId::random(),
        sku: sku(),
        accepted_at: Timestamp::from_millis(0),
        action: Action::ReceiveStock {
            location: Default::default(),
            quantity: Quantity::new(3).unwrap(),
            why: Annotation::received(None),
        },
    };
    inventory.apply_commands(&sku(), &[receipt]).await.unwrap();
    inventory.ledger(&sku(), 0, 10).await.unwrap();
    let pages: Vec<(String, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let (_, key) = key.into_parts();
            let source = key
                .labels()
                .find(|l| l.key() == "source")?
                .value()
                .to_owned();
            match value {
                DebugValue::Counter(n) if key.name() == telemetry::LEDGER_PAGES => {
                    Some((source, n))
                }
                _ => None,
            }
        })
        .collect();
    assert_eq!(pages, vec![("table".to_owned(), 1)]);
}
