//! `inventory replay` and `inventory audit` as real processes against moto: a short history of
//! two SKUs is written, snapshotted, archived to S3 and deleted from the table (as its time to
//! live would); the audit finds it whole, then names the gap left by a lost archive object.

mod support;

use inventory_core::domain::Annotation;
use inventory_core::domain::StreamId;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use inventory_core::app::ReserveRequest;
use inventory_core::archive::Archive;
use inventory_core::aws::{DynamoStore, TestAws};
use inventory_core::domain::{
    Action, Caller, Command, CommandId, Line, Quantity, Sku, SkuState, Timestamp, TtlSeconds,
};
use inventory_core::feed::{FeedChange, Reaction};
use inventory_core::memory::MemoryQueue;
use inventory_core::ports::{ObjectStore, Snapshots, Streams, SystemClock};
use inventory_core::reactions::{Archiver, Snapshotter};
use inventory_core::{Config, Inventory};
use support::Run;

/// Runs `inventory ARGS --endpoint-url … --table … --bucket …`.
async fn inventory(args: &[&str], endpoint: &str, table: &str, bucket: &str) -> Run {
    let target = [
        "--endpoint-url",
        endpoint,
        "--table",
        table,
        "--bucket",
        bucket,
    ];
    support::inventory(&[args, &target[..]].concat()).await
}

async fn receive(inventory: &Inventory, sku: &Sku, units: i64) {
    let command = Command {
        id: CommandId::random(),
        sku: sku.clone(),
        accepted_at: Timestamp::from_millis(0),
        action: Action::ReceiveStock {
            location: Default::default(),
            quantity: Quantity::new(units).expect("valid quantity"),
            why: Annotation::received(None),
        },
    };
    inventory
        .apply_commands(sku, &[command])
        .await
        .expect("stock received");
}

async fn reserve(inventory: &Inventory, sku: &Sku, units: i64) {
    let line = Line::of(sku.clone(), Quantity::new(units).expect("valid quantity"));
    let request =
        ReserveRequest::new(vec![line], TtlSeconds::DEFAULT, None).expect("valid request");
    inventory
        .reserve(request, &Caller::local_admin())
        .await
        .expect("reserved");
}

/// Delivers each SKU's events so far to the snapshotter, then to the archiver, as the table's
/// stream would.
async fn react(store: &DynamoStore, snapshotter: &Snapshotter, archiver: &Archiver, skus: &[Sku]) {
    let mut changes = Vec::new();
    for sku in skus {
        let events = store
            .read_stream(&StreamId::of(sku), 0)
            .await
            .expect("stream read");
        changes.extend(events.into_iter().map(FeedChange::Appended));
    }
    assert!(snapshotter.react(&changes).await.is_empty(), "snapshots");
    assert!(archiver.react(&changes).await.is_empty(), "archive");
}

/// Does what the table's time to live does once it runs out: deletes the retired events (those
/// with a `ttl`). Returns how many.
async fn delete_retired_events(client: &aws_sdk_dynamodb::Client, table: &str) -> usize {
    let items: Vec<HashMap<String, AttributeValue>> = client
        .scan()
        .table_name(table)
        .filter_expression("attribute_exists(#ttl) AND begins_with(#pk, :events)")
        .expression_attribute_names("#ttl", "ttl")
        .expression_attribute_names("#pk", "pk")
        .expression_attribute_values(":events", AttributeValue::S("sku#".to_owned()))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("scan");
    for item in &items {
        client
            .delete_item()
            .table_name(table)
            .key("pk", item["pk"].clone())
            .key("sk", item["sk"].clone())
            .send()
            .await
            .expect("delete");
    }
    items.len()
}

#[tokio::test]
async fn replay_and_audit_find_the_history_whole_then_name_a_gap() {
    let aws = TestAws::new().await;
    let (endpoint, run_id) = (aws.endpoint(), aws.unique());
    let dynamo = aws.dynamodb();
    let store = Arc::new(aws.store(dynamo.clone(), "audit").await);
    let objects = Arc::new(aws.objects(aws.s3(), "audit").await);
    let (table, bucket) = (store.table().to_owned(), objects.bucket().to_owned());
    let archive = Archive::new(objects.clone());

    let inventory = Inventory::new(
        store.clone(),
        Arc::new(MemoryQueue::new()),
        Arc::new(SystemClock),
        Config::default(),
    );
    let snapshotter = Snapshotter::new(store.clone());
    let archiver = Archiver::new(
        store.clone(),
        archive.clone(),
        Arc::new(SystemClock),
        Duration::ZERO,
    );
    let a = Sku::parse(&format!("A-{}", &run_id[..8])).expect("sku");
    let b = Sku::parse(&format!("B-{}", &run_id[..8])).expect("sku");
    let skus = [a.clone(), b.clone()];

    // A: received 10 (1), then 3 held (2) and 5 received (3); B: received 4 (1), 1 held (2).
    receive(&inventory, &a, 10).await;
    receive(&inventory, &b, 4).await;
    react(&store, &snapshotter, &archiver, &skus).await;
    reserve(&inventory, &a, 3).await;
    receive(&inventory, &a, 5).await;
    reserve(&inventory, &b, 1).await;
    react(&store, &snapshotter, &archiver, &skus).await;
    assert_eq!(delete_retired_events(&dynamo, &table).await, 5);
    for sku in &skus {
        assert!(store
            .read_stream(&StreamId::of(sku), 0)
            .await
            .expect("read")
            .is_empty());
    }

    let replay = inventory_run(&["replay", "--sku", a.as_str()], endpoint, &table, &bucket).await;
    assert_eq!(replay.code, Some(0), "{replay:#?}");
    assert!(
        replay
            .stdout
            .contains("replayed: on_hand 15, committed 0, reserved 3, available 12, version 3"),
        "{replay:#?}"
    );
    assert!(
        replay.stdout.contains("snapshot: on_hand 15"),
        "{replay:#?}"
    );
    assert!(replay.stdout.contains(": clean."), "{replay:#?}");

    let audit_all = inventory_run(&["audit", "--all"], endpoint, &table, &bucket).await;
    assert_eq!(audit_all.code, Some(0), "{audit_all:#?}");
    assert!(
        audit_all
            .stdout
            .contains("audited 2 SKUs, 5 events (5 archived, 0 live): 0 mismatches"),
        "{audit_all:#?}"
    );
    let audit_recent = inventory_run(&["audit"], endpoint, &table, &bucket).await;
    assert_eq!(audit_recent.code, Some(0), "{audit_recent:#?}");
    assert!(
        audit_recent.stdout.contains("audited 2 SKUs"),
        "{audit_recent:#?}"
    );

    // A's ledger, every version from the archive (the table holds none of them now).
    let ledger = inventory_run(&["ledger", "--sku", a.as_str()], endpoint, &table, &bucket).await;
    assert_eq!(ledger.code, Some(0), "{ledger:#?}");
    let entries: Vec<serde_json::Value> = ledger
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let told: Vec<(&str, i64)> = entries
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["after"]["available"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(told, [("received", 10), ("held", 7), ("received", 12)]);
    let csv = inventory_run(
        &["ledger", "--sku", a.as_str(), "--csv"],
        endpoint,
        &table,
        &bucket,
    )
    .await;
    assert_eq!(csv.code, Some(0), "{csv:#?}");
    let lines: Vec<&str> = csv.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{csv:#?}");
    assert_eq!(lines[0], inventory_cli::ledger::CSV_HEADER.join(","));
    assert!(lines[3].starts_with("3,"), "{csv:#?}");
    assert!(lines[3].contains(",received,"), "{csv:#?}");
    let unknown = inventory_run(
        &["ledger", "--sku", "NEVER-SEEN"],
        endpoint,
        &table,
        &bucket,
    )
    .await;
    assert_eq!(unknown.code, Some(1), "{unknown:#?}");

    // Lose A's first archived object: event 1 is now nowhere.
    let keys = objects
        .list(&format!("events/sku={a}/"))
        .await
        .expect("list");
    assert_eq!(keys.len(), 2, "{keys:?}");
    aws.s3()
        .delete_object()
        .bucket(&bucket)
        .key(&keys[0])
        .send()
        .await
        .expect("delete object");

    let broken = inventory_run(&["audit", "--all"], endpoint, &table, &bucket).await;
    assert_eq!(broken.code, Some(1), "{broken:#?}");
    assert!(
        broken
            .stdout
            .contains("audited 2 SKUs, 4 events (4 archived, 0 live): 1 mismatches"),
        "{broken:#?}"
    );
    assert!(
        broken.stdout.contains(&format!("{a}: 1 mismatch.")),
        "{broken:#?}"
    );
    assert!(
        broken
            .stdout
            .contains("event 1 is in neither the archive nor the table"),
        "{broken:#?}"
    );
    let replay = inventory_run(&["replay", "--sku", a.as_str()], endpoint, &table, &bucket).await;
    assert_eq!(replay.code, Some(1), "{replay:#?}");
    assert!(
        replay.stdout.contains("(incomplete: the history has gaps)"),
        "{replay:#?}"
    );
    let gap = inventory_run(&["ledger", "--sku", a.as_str()], endpoint, &table, &bucket).await;
    assert_eq!(gap.code, Some(2), "no ledger with a gap: {gap:#?}");

    // A snapshot of a SKU that has no event anywhere: found by the scan of snapshots.
    let c = Sku::parse(&format!("C-{}", &run_id[..8])).expect("sku");
    let mut forged = SkuState::default();
    forged.version = 1;
    forged.on_hand = 2;
    store
        .save_snapshot(&StreamId::of(&c), &forged)
        .await
        .expect("snapshot saved");
    let orphan = inventory_run(&["audit", "--all"], endpoint, &table, &bucket).await;
    assert_eq!(orphan.code, Some(1), "{orphan:#?}");
    assert!(
        orphan.stdout.contains("audited 3 SKUs") && orphan.stdout.contains("2 mismatches"),
        "{orphan:#?}"
    );
    assert!(
        orphan.stdout.contains(&format!(
            "{c}: 1 mismatch. 0 events up to 0 (0 archived, 0 live), snapshot at version 1. \
             Mismatches: a snapshot at version 1 exists but no event is in the archive or the table."
        )),
        "{orphan:#?}"
    );

    let unreachable =
        inventory_run(&["audit", "--all"], endpoint, &table, "no-such-bucket-x").await;
    assert_eq!(unreachable.code, Some(2), "{unreachable:#?}");
    print_runs(&[&audit_all, &broken, &unreachable]);
}

/// Runs the binary, echoing what it printed (shown with `--nocapture`).
async fn inventory_run(args: &[&str], endpoint: &str, table: &str, bucket: &str) -> Run {
    let run = inventory(args, endpoint, table, bucket).await;
    println!(
        "$ inventory {}\n{}(exit {:?})",
        args.join(" "),
        run.stdout,
        run.code
    );
    run
}

fn print_runs(runs: &[&Run]) {
    for run in runs {
        if !run.stderr.is_empty() {
            eprintln!("{}", run.stderr);
        }
    }
}
