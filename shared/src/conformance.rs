//! The contract every [`EventStore`] adapter keeps, as one suite the memory store and the AWS
//! adapters all run (`tests/conformance.rs` here; the DynamoDB adapter's tests against moto).
//! Each check uses SKUs and keys under `prefix`, so adapters sharing one backend do not collide.
//! A broken promise panics with what was expected.
//!
//! Appending past the head (at a version never read) is outside the contract: a conditional
//! write can only check the item it writes, so gap-free streams rest on the use cases, which only
//! append right after a head they have read. For the same reason no store can refuse an append
//! into a slot its time to live emptied (nothing is left of a deleted item); the suite therefore
//! runs the use cases over the adapter, with its time to live played by [`TimeToLive`], to prove
//! that an append decided on a head older than the live retention is never written there.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::app::ReserveRequest;
use crate::archive::Archive;
use crate::config::Config;
use crate::domain::{Action, Bucket, Caller, Command, Figures, Line, TtlSeconds, Unavailable};
use crate::domain::{
    Annotation, Change, ClientId, CommandId, Event, HoldLine, HoldStatus, IdempotencyKey, Location,
    LocationId, LocationKind, Locations, LowStockThreshold, Quantity, Reason, Reclassification,
    RejectionCode, ReservationId, Sku, SkuState, StockState, StreamId, Timestamp, TransferId,
    Version, WholeItem,
};
use crate::feed::{FeedChange, Reaction};
use crate::limits::MAX_TRANSACTION_ITEMS;
use crate::memory::{MemoryObjects, MemoryQueue, MemoryStore};
use crate::ports::{
    Acceptance, CommandOutcome, CommandRecord, Conflict, EventStore, IdempotencyRecord, Lapsing,
    LapsingHold, Record, RecordKey, RecordWrite, SnapshotSave, StoreError, StreamAppend,
    Transaction, Versioned,
};
use crate::ports::{Clock, ManualClock, StreamPage};
use crate::reactions::{Archiver, Snapshotter};
use crate::Inventory;

/// What the table's time to live does, played on demand: deletes the events whose time to live
/// is past `now`, leaving nothing of them. DynamoDB does it by itself, within days.
#[async_trait]
pub trait TimeToLive: Send + Sync {
    /// Deletes what is due at `now`; says how many events went.
    async fn delete_expired(&self, now: Timestamp) -> usize;
}

#[async_trait]
impl TimeToLive for MemoryStore {
    async fn delete_expired(&self, now: Timestamp) -> usize {
        MemoryStore::delete_expired(self, now)
    }
}

/// Runs every check of the contract against `store`, whose time to live `ttl` plays.
pub async fn check_event_store(store: Arc<dyn EventStore>, ttl: &dyn TimeToLive, prefix: &str) {
    appended_events_read_back_in_order(store.as_ref(), prefix).await;
    an_append_at_a_stale_head_conflicts_and_writes_nothing(store.as_ref(), prefix).await;
    a_transaction_over_several_streams_and_records_is_all_or_nothing(store.as_ref(), prefix).await;
    a_record_written_twice_as_new_conflicts(store.as_ref(), prefix).await;
    a_record_update_needs_the_version_read(store.as_ref(), prefix).await;
    command_records_are_listed_by_when_they_were_accepted(store.as_ref(), prefix).await;
    a_long_stream_reads_back_whole(store.as_ref(), prefix).await;
    a_page_of_a_stream_holds_at_most_its_limit_and_says_whether_more_follow(store.as_ref(), prefix)
        .await;
    every_kind_of_stock_change_reads_back_as_written(store.as_ref(), prefix).await;
    a_transaction_of_more_than_the_item_limit_is_refused_whole(store.as_ref(), prefix).await;
    of_racing_appends_at_one_head_exactly_one_wins(Arc::clone(&store), prefix).await;
    a_snapshot_never_goes_backwards(store.as_ref(), prefix).await;
    an_items_streams_at_each_location_and_bucket_are_kept_apart(store.as_ref(), prefix).await;
    the_registry_of_locations_reads_back_and_changes_only_over_the_version_read(
        store.as_ref(),
        prefix,
    )
    .await;
    an_item_counted_as_a_whole_reads_back_and_changes_only_over_the_version_read(
        store.as_ref(),
        prefix,
    )
    .await;
    the_expiry_index_finds_hold_events_by_expiry(store.as_ref(), prefix).await;
    retiring_events_leaves_them_readable_until_deleted(store.as_ref(), prefix).await;
    a_head_older_than_the_live_retention_is_read_again_before_an_append(store, ttl, prefix).await;
}

fn item(prefix: &str, name: &str) -> Sku {
    Sku::parse(&format!("{prefix}-{name}")).expect("prefix makes a valid sku")
}

/// The own stream of the item `{prefix}-{name}`.
fn sku(prefix: &str, name: &str) -> StreamId {
    StreamId::of(&item(prefix, name))
}

fn received(sku: &StreamId, seq: Version, units: i64) -> Event {
    Event {
        actor: None,
        figures: None,
        stream: sku.clone(),
        seq,
        at: Timestamp::from_millis(1_700_000_000_000 + seq as i64),
        change: Change::StockReceived {
            command_id: CommandId::random(),
            quantity: Quantity::new(units).expect("valid quantity"),
            why: Annotation::received(Some(format!("delivery {seq}"))),
        },
    }
}

fn append(sku: &StreamId, expected: Version, count: u64) -> StreamAppend {
    StreamAppend {
        stream: sku.clone(),
        expected,
        events: (expected + 1..=expected + count)
            .map(|seq| received(sku, seq, 1))
            .collect(),
    }
}

fn idempotency(prefix: &str, name: &str) -> (RecordKey, Record) {
    let key = IdempotencyKey::parse(&format!("{prefix}-{name}")).expect("valid key");
    let record = Record::Idempotency(IdempotencyRecord {
        request_digest: "digest".into(),
        reservation_id: ReservationId::new(sku(prefix, "anchor"), 1, 7),
        created_at: Timestamp::from_millis(0),
    });
    let client_id = ClientId::parse("conformance").expect("valid client id");
    (RecordKey::Idempotency { client_id, key }, record)
}

async fn transact(store: &dyn EventStore, transaction: Transaction) -> Result<(), StoreError> {
    store.write(transaction).await
}

async fn appended_events_read_back_in_order(store: &dyn EventStore, prefix: &str) {
    let a = sku(prefix, "read-back");
    assert_eq!(
        store.read_stream(&a, 0).await,
        Ok(vec![]),
        "a new stream is empty"
    );
    let first = append(&a, 0, 2);
    let second = append(&a, 2, 1);
    transact(store, Transaction::appends(vec![first.clone()]))
        .await
        .expect("first append");
    transact(store, Transaction::appends(vec![second.clone()]))
        .await
        .expect("second append");
    let all: Vec<Event> = first.events.into_iter().chain(second.events).collect();
    assert_eq!(
        store.read_stream(&a, 0).await,
        Ok(all.clone()),
        "whole stream"
    );
    assert_eq!(
        store.read_stream(&a, 2).await,
        Ok(all[2..].to_vec()),
        "tail after 2"
    );
    assert_eq!(
        store.read_stream(&a, 3).await,
        Ok(vec![]),
        "tail after head"
    );
    assert_eq!(
        store.read_event(&a, 2).await,
        Ok(Some(all[1].clone())),
        "event 2"
    );
    assert_eq!(store.read_event(&a, 4).await, Ok(None), "event past head");
    assert_eq!(store.read_event(&a, 0).await, Ok(None), "event 0");
}

async fn a_page_of_a_stream_holds_at_most_its_limit_and_says_whether_more_follow(
    store: &dyn EventStore,
    prefix: &str,
) {
    let a = sku(prefix, "paged");
    let all = append(&a, 0, 5);
    transact(store, Transaction::appends(vec![all.clone()]))
        .await
        .expect("append");
    let page = |after, limit| store.read_page(&a, after, limit);
    let seqs = |page: StreamPage| {
        (
            page.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            page.more,
        )
    };
    assert_eq!(seqs(page(0, 2).await.expect("page")), (vec![1, 2], true));
    assert_eq!(
        seqs(page(2, 3).await.expect("page")),
        (vec![3, 4, 5], false),
        "exactly the rest: no more"
    );
    assert_eq!(seqs(page(4, 100).await.expect("page")), (vec![5], false));
    assert_eq!(seqs(page(5, 1).await.expect("page")), (vec![], false));
    assert_eq!(
        page(0, 5).await.expect("page").events,
        all.events,
        "the events as written"
    );
}

/// The changes with nested parts or optional fields (a move's states and every change's
/// annotation, each with its optional fields present and absent; what becomes of units sold;
/// the actor, present and absent) read back as written, and the snapshot of their fold
/// keeps what is set aside.
async fn every_kind_of_stock_change_reads_back_as_written(store: &dyn EventStore, prefix: &str) {
    let a = sku(prefix, "stock-changes");
    let at = |seq: i64| Timestamp::from_millis(1_700_000_000_000 + seq);
    let transfer = TransferId::new(
        a.item().clone(),
        LocationId::default(),
        LocationId::parse("store-5").expect("a location id"),
        CommandId::random(),
    )
    .expect("a transfer between two locations");
    let changes = [
        Change::StockReclassified {
            command_id: CommandId::random(),
            states: Reclassification::new(StockState::Available, StockState::QualityControl)
                .expect("two states"),
            quantity: Quantity::new(2).expect("valid quantity"),
            why: Annotation {
                reason: Reason::QualityControl,
                note: Some("suspect batch".into()),
                reference: Some("QC-19".into()),
            },
        },
        Change::StockCounted {
            command_id: CommandId::random(),
            counted: 4,
            delta: -1,
            why: Annotation::because(Reason::CycleCount),
        },
        Change::HoldFulfilled {
            reservation_id: ReservationId::new(a.clone(), 7, 9),
            command_id: CommandId::random(),
            quantity: Quantity::new(2).expect("valid quantity"),
            reference: Some("parcel 1Z999".into()),
        },
        Change::HoldCancelled {
            reservation_id: ReservationId::new(a.clone(), 7, 9),
            command_id: CommandId::random(),
            quantity: Quantity::new(1).expect("valid quantity"),
        },
        Change::HoldReturned {
            reservation_id: ReservationId::new(a.clone(), 7, 9),
            command_id: CommandId::random(),
            quantity: Quantity::new(1).expect("valid quantity"),
            restock: false,
            reference: None,
        },
        Change::TransferShipped {
            command_id: CommandId::random(),
            transfer_id: transfer.clone(),
            quantity: Quantity::new(1).expect("valid quantity"),
            reference: Some("truck 12".into()),
        },
        Change::TransferIncoming {
            command_id: CommandId::random(),
            transfer_id: transfer.clone(),
            quantity: Quantity::new(3).expect("valid quantity"),
            reference: None,
        },
        Change::TransferReceived {
            command_id: CommandId::random(),
            transfer_id: transfer.clone(),
            quantity: Quantity::new(1).expect("valid quantity"),
        },
        Change::TransferArrived {
            command_id: CommandId::random(),
            transfer_id: transfer.clone(),
            quantity: Quantity::new(1).expect("valid quantity"),
        },
    ];
    let events: Vec<Event> = std::iter::once(received(&a, 1, 5))
        .chain(changes.into_iter().zip(2..).map(|(change, seq)| Event {
            // Who asked, on every other event (the rest are the service's own).
            actor: (seq % 2 == 0).then(|| ClientId::parse("warehouse-7").expect("a client id")),
            figures: (seq % 3 == 0).then_some(Figures {
                on_hand: 5,
                reserved: 1,
                committed: 2,
                unavailable: Unavailable {
                    damaged: 1,
                    ..Unavailable::default()
                },
                transit_in: 3,
                transit_out: 1,
            }),
            stream: a.clone(),
            seq,
            at: at(seq as i64),
            change,
        }))
        .collect();
    let appended = StreamAppend {
        stream: a.clone(),
        expected: 0,
        events: events.clone(),
    };
    transact(store, Transaction::appends(vec![appended]))
        .await
        .expect("append");
    assert_eq!(store.read_stream(&a, 0).await, Ok(events.clone()));
    let state = SkuState::from_events(&events);
    assert_eq!(state.unavailable.quality_control, 2);
    assert_eq!(state.unavailable.damaged, 1, "a return not restocked");
    assert_eq!(
        (state.transit_out, state.in_transit.get(&transfer)),
        (0, Some(&2)),
        "what is in transit"
    );
    store
        .save_snapshot(&a, &state)
        .await
        .expect("snapshot saved");
    let read = store
        .read_snapshots(std::slice::from_ref(&a))
        .await
        .expect("snapshot read");
    assert_eq!(
        read,
        vec![Some(state)],
        "the snapshot keeps what is set aside and what is in transit"
    );

    // A stale count's outcome keeps the figure it should have been taken against.
    let key = RecordKey::CommandOutcome {
        command_id: CommandId::random(),
        sku: a.item().clone(),
    };
    let record = Record::CommandOutcome(CommandOutcome::Rejected {
        reason: RejectionCode::StaleCount,
        on_hand: Some(4),
    });
    let write = RecordWrite {
        key: key.clone(),
        expected: None,
        record: record.clone(),
    };
    transact(
        store,
        Transaction {
            appends: vec![],
            records: vec![write],
        },
    )
    .await
    .expect("outcome written");
    let read = store.read_records(&[key]).await.expect("outcome read");
    assert_eq!(
        read.into_iter()
            .map(|stored| stored.map(|stored| stored.record))
            .collect::<Vec<_>>(),
        vec![Some(record)]
    );
}

async fn an_append_at_a_stale_head_conflicts_and_writes_nothing(
    store: &dyn EventStore,
    prefix: &str,
) {
    let a = sku(prefix, "stale");
    let first = append(&a, 0, 1);
    transact(store, Transaction::appends(vec![first.clone()]))
        .await
        .expect("append");
    let stale = transact(store, Transaction::appends(vec![append(&a, 0, 1)])).await;
    // A single append's conflict tells the event that won (the loser re-decides without a read).
    assert_eq!(
        stale,
        Err(StoreError::Conflict(Conflict::Stream {
            stream: a.clone(),
            found: Some(Box::new(first.events[0].clone()))
        }))
    );
    assert_eq!(
        store.read_stream(&a, 0).await.map(|e| e.len()),
        Ok(1),
        "nothing more written"
    );
}

async fn a_transaction_over_several_streams_and_records_is_all_or_nothing(
    store: &dyn EventStore,
    prefix: &str,
) {
    let a = sku(prefix, "cart-a");
    let b = sku(prefix, "cart-b");
    transact(store, Transaction::appends(vec![append(&b, 0, 1)]))
        .await
        .expect("b");
    let (key, record) = idempotency(prefix, "cart");
    let write = RecordWrite {
        key: key.clone(),
        expected: None,
        record,
    };
    let failed = transact(
        store,
        Transaction {
            appends: vec![append(&a, 0, 1), append(&b, 0, 1)],
            records: vec![write.clone()],
        },
    )
    .await;
    assert!(
        matches!(&failed, Err(StoreError::Conflict(Conflict::Stream { stream, .. })) if *stream == b),
        "{failed:?}"
    );
    assert_eq!(
        store.read_stream(&a, 0).await,
        Ok(vec![]),
        "no line of a failed cart is written"
    );
    assert_eq!(
        store.read_records(std::slice::from_ref(&key)).await,
        Ok(vec![None]),
        "nor its records"
    );
    transact(
        store,
        Transaction {
            appends: vec![append(&a, 0, 1), append(&b, 1, 1)],
            records: vec![write],
        },
    )
    .await
    .expect("whole cart");
    assert_eq!(store.read_stream(&a, 0).await.map(|e| e.len()), Ok(1));
    assert_eq!(store.read_stream(&b, 0).await.map(|e| e.len()), Ok(2));
    let stored = store.read_records(&[key]).await.expect("read");
    assert_eq!(
        stored[0].as_ref().map(|s| s.version),
        Some(1),
        "a new record has version 1"
    );
}

async fn command_records_are_listed_by_when_they_were_accepted(
    store: &dyn EventStore,
    prefix: &str,
) {
    let since = Timestamp::from_millis(1_900_000_000_000);
    let record = |name: &str, at: Timestamp, acceptance: Acceptance| {
        let id = CommandId::random();
        let commands = ["a", "b"]
            .iter()
            .map(|line| Command {
                id,
                sku: item(prefix, &format!("cmd-{name}-{line}")),
                accepted_at: at,
                action: Action::AdjustStock {
                    location: Default::default(),
                    delta: -1_000_000_000,
                    why: Annotation::from_text("conformance".into()),
                },
            })
            .collect();
        let record = CommandRecord {
            request_digest: "digest".into(),
            commands,
            issued_by: ClientId::parse("conformance").ok(),
            acceptance,
        };
        (id, record)
    };
    let written = [
        record("before", since.plus_millis(-1), Acceptance::Accepted),
        record("at", since, Acceptance::Accepted),
        record("after", since.plus_seconds(3_600), Acceptance::Abandoned),
        record(
            "awaiting",
            since.plus_seconds(1),
            Acceptance::Awaiting { since },
        ),
    ];
    let mut records: Vec<RecordWrite> = written
        .iter()
        .map(|(id, record)| RecordWrite {
            key: RecordKey::Command { command_id: *id },
            expected: None,
            record: Record::Command(record.clone()),
        })
        .collect();
    // An outcome and an idempotency record are not command records.
    records.push(RecordWrite {
        key: RecordKey::CommandOutcome {
            command_id: written[1].0,
            sku: item(prefix, "cmd-at-a"),
        },
        expected: None,
        record: Record::CommandOutcome(CommandOutcome::Applied),
    });
    let (key, record) = idempotency(prefix, "cmd-listing");
    records.push(RecordWrite {
        key,
        expected: None,
        record,
    });
    transact(store, Transaction::records(records))
        .await
        .expect("records written");
    let ours = format!("{prefix}-cmd-");
    let mut listed: Vec<(CommandId, CommandRecord)> = store
        .commands_since(since)
        .await
        .expect("command records listed")
        .into_iter()
        .filter(|(_, record)| {
            record
                .commands
                .iter()
                .all(|command| command.sku.as_str().starts_with(&ours))
        })
        .collect();
    listed.sort_by_key(|(_, record)| record.accepted_at());
    let expected: Vec<(CommandId, CommandRecord)> = written[1..].to_vec();
    let mut expected = expected;
    expected.sort_by_key(|(_, record)| record.accepted_at());
    assert_eq!(
        listed, expected,
        "every command record accepted at or after the instant, whole, and nothing else"
    );
}

async fn a_record_written_twice_as_new_conflicts(store: &dyn EventStore, prefix: &str) {
    let (key, record) = idempotency(prefix, "twice");
    let write = RecordWrite {
        key: key.clone(),
        expected: None,
        record,
    };
    transact(
        store,
        Transaction {
            appends: vec![],
            records: vec![write.clone()],
        },
    )
    .await
    .expect("first");
    let again = transact(
        store,
        Transaction {
            appends: vec![],
            records: vec![write],
        },
    )
    .await;
    assert_eq!(
        again,
        Err(StoreError::Conflict(Conflict::Record {
            key: Box::new(key)
        }))
    );
}

async fn a_record_update_needs_the_version_read(store: &dyn EventStore, prefix: &str) {
    let id = ReservationId::new(sku(prefix, "hold"), 3, 9);
    let key = RecordKey::Hold {
        reservation_id: id.clone(),
        stream: sku(prefix, "hold"),
    };
    let mut hold = HoldLine {
        reservation_id: id,
        stream: sku(prefix, "hold"),
        quantity: Quantity::new(2).expect("valid quantity"),
        expires_at: Timestamp::from_millis(1_000),
        release_at: Timestamp::from_millis(2_000),
        status: HoldStatus::Active,
        fulfilled: 0,
        cancelled: 0,
        returned: 0,
    };
    let write = |expected, hold: &HoldLine| RecordWrite {
        key: key.clone(),
        expected,
        record: Record::Hold(hold.clone()),
    };
    transact(
        store,
        Transaction {
            appends: vec![],
            records: vec![write(None, &hold)],
        },
    )
    .await
    .expect("create");
    // A line partly shipped, cancelled and returned keeps its counts.
    hold.status = HoldStatus::Fulfilled;
    (hold.fulfilled, hold.cancelled, hold.returned) = (1, 1, 1);
    let blind = transact(
        store,
        Transaction {
            appends: vec![],
            records: vec![write(None, &hold)],
        },
    )
    .await;
    assert!(matches!(blind, Err(StoreError::Conflict(_))), "{blind:?}");
    let stale = transact(
        store,
        Transaction {
            appends: vec![],
            records: vec![write(Some(7), &hold)],
        },
    )
    .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    transact(
        store,
        Transaction {
            appends: vec![],
            records: vec![write(Some(1), &hold)],
        },
    )
    .await
    .expect("update");
    let stored = store
        .read_records(&[key, idempotency(prefix, "missing").0])
        .await
        .expect("read");
    assert_eq!(stored.len(), 2, "one answer per key, in order");
    assert_eq!(
        stored[0].as_ref().map(|s| (s.version, &s.record)),
        Some((2, &Record::Hold(hold)))
    );
    assert_eq!(stored[1], None, "a missing record reads as None");
}

async fn a_long_stream_reads_back_whole(store: &dyn EventStore, prefix: &str) {
    let a = sku(prefix, "long");
    let mut head = 0;
    for _ in 0..10 {
        transact(store, Transaction::appends(vec![append(&a, head, 25)]))
            .await
            .expect("append");
        head += 25;
    }
    let events = store.read_stream(&a, 0).await.expect("read");
    assert_eq!(events.len(), 250);
    assert!(
        events.iter().zip(1..).all(|(e, seq)| e.seq == seq),
        "gap-free and in order"
    );
    assert_eq!(store.read_stream(&a, 240).await.map(|e| e.len()), Ok(10));
}

async fn a_transaction_of_more_than_the_item_limit_is_refused_whole(
    store: &dyn EventStore,
    prefix: &str,
) {
    let a = sku(prefix, "too-big");
    let (key, record) = idempotency(prefix, "too-big");
    let write = RecordWrite {
        key: key.clone(),
        expected: None,
        record,
    };
    let too_big = Transaction {
        appends: vec![append(&a, 0, MAX_TRANSACTION_ITEMS as u64)],
        records: vec![write],
    };
    let refused = transact(store, too_big).await;
    assert!(matches!(refused, Err(StoreError::Bug(_))), "{refused:?}");
    assert_eq!(
        store.read_stream(&a, 0).await,
        Ok(vec![]),
        "nothing written"
    );
    assert_eq!(
        store.read_records(&[key]).await,
        Ok(vec![None]),
        "nothing written"
    );
    let largest = Transaction::appends(vec![append(&a, 0, MAX_TRANSACTION_ITEMS as u64)]);
    transact(store, largest)
        .await
        .expect("a transaction of exactly the limit is written");
}

async fn of_racing_appends_at_one_head_exactly_one_wins(store: Arc<dyn EventStore>, prefix: &str) {
    let a = sku(prefix, "race");
    let racers: Vec<_> = (0..16)
        .map(|_| {
            let store = Arc::clone(&store);
            let append = append(&a, 0, 1);
            tokio::spawn(async move { store.write(Transaction::appends(vec![append])).await })
        })
        .collect();
    let mut won = 0;
    for racer in racers {
        match racer.await.expect("racer finished") {
            Ok(()) => won += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(other) => panic!("a racer failed with {other:?}"),
        }
    }
    assert_eq!(won, 1, "exactly one append at head 0 wins");
    assert_eq!(store.read_stream(&a, 0).await.map(|e| e.len()), Ok(1));
}

/// An item's stream at each location and in each bucket is a stream of its own: its events,
/// snapshot, hold records and expiry entries are found under its name and no other's, and
/// a reservation anchored there is read back from its id.
async fn an_items_streams_at_each_location_and_bucket_are_kept_apart(
    store: &dyn EventStore,
    prefix: &str,
) {
    let own = sku(prefix, "placed");
    let streams: Vec<StreamId> = ["", "@2", ":store-5", ":store-5@2", ":wh.east_1@255"]
        .iter()
        .map(|suffix| StreamId::parse(&format!("{own}{suffix}")).expect("a stream name"))
        .collect();
    let expires_at = Timestamp::from_millis(1_950_000_000_000);
    for (index, stream) in streams.iter().enumerate() {
        let units = index as i64 + 1;
        let received_then_held = vec![
            received(stream, 1, units),
            Event {
                actor: None,
                figures: None,
                stream: stream.clone(),
                seq: 2,
                at: Timestamp::from_millis(1_700_000_000_002),
                change: Change::HoldPlaced {
                    reservation_id: ReservationId::new(stream.clone(), 2, 9),
                    quantity: Quantity::new(units).expect("valid quantity"),
                    expires_at,
                    release_at: expires_at,
                    lines: Vec::new(),
                    owner: None,
                },
            },
        ];
        let hold = HoldLine::placed(stream, &received_then_held[1].change).expect("a hold");
        let mut transaction = Transaction::appends(vec![StreamAppend {
            stream: stream.clone(),
            expected: 0,
            events: received_then_held.clone(),
        }]);
        transaction.records.push(RecordWrite {
            key: RecordKey::Hold {
                reservation_id: hold.reservation_id.clone(),
                stream: stream.clone(),
            },
            expected: None,
            record: Record::Hold(hold),
        });
        transact(store, transaction).await.expect("append");
        let state = SkuState::from_events(&received_then_held);
        store.save_snapshot(stream, &state).await.expect("snapshot");
    }
    for (index, stream) in streams.iter().enumerate() {
        let units = index as i64 + 1;
        let events = store.read_stream(stream, 0).await.expect("readable");
        assert_eq!(events.len(), 2, "{stream}: its own events only");
        assert!(
            events.iter().all(|event| &event.stream == stream),
            "{stream}"
        );
        let id = ReservationId::new(stream.clone(), 2, 9);
        let anchor = store
            .read_event(id.anchor(), id.anchor_seq())
            .await
            .expect("readable")
            .expect("the anchor");
        assert_eq!(anchor.change.reservation_id(), Some(&id), "{stream}");
        let snapshot = store
            .read_snapshots(std::slice::from_ref(stream))
            .await
            .expect("readable")
            .pop()
            .flatten()
            .expect("a snapshot");
        assert_eq!(snapshot.on_hand, units, "{stream}: its own snapshot");
        let key = RecordKey::Hold {
            reservation_id: id,
            stream: stream.clone(),
        };
        let record = store.read_records(&[key]).await.expect("readable").pop();
        assert!(
            matches!(record, Some(Some(Versioned { record: Record::Hold(ref hold), .. })) if &hold.stream == stream),
            "{stream}: {record:?}"
        );
    }
    let lapsing = store
        .lapsing_holds(
            expires_at.plus_millis(-1),
            expires_at,
            crate::limits::MAX_HOLDS_PER_SWEEP,
        )
        .await
        .expect("readable");
    let found: BTreeSet<&StreamId> = lapsing
        .holds
        .iter()
        .filter(|hold| hold.stream.item() == own.item())
        .map(|hold| &hold.stream)
        .collect();
    assert_eq!(
        found,
        streams.iter().collect(),
        "the expiry index names each stream"
    );
}

/// The shop's registry of locations is one record: it reads back as written, and a change
/// written over a version another change moved on from conflicts and changes nothing.
async fn the_registry_of_locations_reads_back_and_changes_only_over_the_version_read(
    store: &dyn EventStore,
    prefix: &str,
) {
    let read = || async {
        store
            .read_records(&[RecordKey::Locations])
            .await
            .expect("readable")
            .pop()
            .flatten()
    };
    let before = read().await;
    let (version, mut registry) = match &before {
        Some(Versioned {
            version,
            record: Record::Locations(registry),
        }) => (Some(*version), registry.clone()),
        Some(other) => panic!("the registry's key holds {other:?}"),
        None => (None, Locations::default()),
    };
    let id = LocationId::parse(&format!("{prefix}-store-5")).expect("a location id");
    let store_5 = Location::new(
        id.clone(),
        "Store 5",
        LocationKind::Store,
        false,
        true,
        3,
        true,
    )
    .expect("a location");
    registry.put(store_5.clone()).expect("room for it");
    let write = |expected, registry: &Locations| Transaction {
        appends: vec![],
        records: vec![RecordWrite {
            key: RecordKey::Locations,
            expected,
            record: Record::Locations(registry.clone()),
        }],
    };
    transact(store, write(version, &registry))
        .await
        .expect("written over the version read");
    let after = read().await.expect("the registry");
    assert_eq!(after.version, version.map_or(1, |v| v + 1));
    assert_eq!(after.record, Record::Locations(registry.clone()));
    let mut stale = registry.clone();
    let mut closed = store_5;
    closed.active = false;
    stale.put(closed).expect("room");
    let refused = transact(store, write(version, &stale)).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    let kept = read().await.expect("the registry");
    assert_eq!(kept.record, Record::Locations(registry.clone()));
    match kept.record {
        Record::Locations(kept) => assert!(kept.get(&id).expect("registered").active),
        other => panic!("{other:?}"),
    }
}

/// The record of an item kept at several locations, counted as a whole, reads back as written
/// (its pending notices too), each item's apart, and a count written over a version another
/// count moved on from conflicts and changes nothing.
async fn an_item_counted_as_a_whole_reads_back_and_changes_only_over_the_version_read(
    store: &dyn EventStore,
    prefix: &str,
) {
    let item = sku(prefix, "whole").item().clone();
    let other = sku(prefix, "whole-other").item().clone();
    let key = |sku: &Sku| RecordKey::WholeItem { sku: sku.clone() };
    let store_5 = LocationId::parse("store-5").expect("a location id");
    let at = Timestamp::from_millis(1_700_000_000_000);
    let mut whole = WholeItem::default();
    let mut pending = Vec::new();
    pending.extend(whole.count(&LocationId::default(), 3, at, 2));
    pending.extend(whole.count(&store_5, 4, at, 0));
    pending.extend(whole.count(&LocationId::default(), 5, at, 0));
    whole.pending = pending;
    whole.below = LowStockThreshold::new(4).expect("a threshold");
    assert_eq!(whole.pending.len(), 2, "back in stock, then out of stock");
    let write = |expected, whole: &WholeItem| {
        Transaction::records(vec![RecordWrite {
            key: key(&item),
            expected,
            record: Record::WholeItem(whole.clone()),
        }])
    };
    transact(store, write(None, &whole))
        .await
        .expect("a first count");
    let read = store
        .read_records(&[key(&item), key(&other)])
        .await
        .expect("readable");
    assert_eq!(
        read,
        vec![
            Some(Versioned {
                version: 1,
                record: Record::WholeItem(whole.clone()),
            }),
            None
        ],
        "read back as written, each item's apart"
    );
    let mut cleared = whole.clone();
    cleared.pending.clear();
    transact(store, write(Some(1), &cleared))
        .await
        .expect("over version 1");
    let stale = transact(store, write(Some(1), &whole)).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    let kept = store.read_records(&[key(&item)]).await.expect("readable");
    assert_eq!(
        kept[0]
            .as_ref()
            .map(|stored| (stored.version, &stored.record)),
        Some((2, &Record::WholeItem(cleared)))
    );
}

async fn a_snapshot_never_goes_backwards(store: &dyn EventStore, prefix: &str) {
    let a = sku(prefix, "snap-a");
    let b = sku(prefix, "snap-b");
    let events: Vec<Event> = (1..=3).map(|seq| received(&a, seq, 2)).collect();
    let at = |version: usize| SkuState::from_events(&events[..version]);
    assert_eq!(
        store.read_snapshots(&[a.clone(), b.clone()]).await,
        Ok(vec![None, None]),
        "no snapshot yet"
    );
    assert_eq!(
        store.save_snapshot(&a, &at(2)).await,
        Ok(SnapshotSave::Saved)
    );
    assert_eq!(
        store.save_snapshot(&a, &at(1)).await,
        Ok(SnapshotSave::Stale),
        "an older snapshot is refused"
    );
    assert_eq!(
        store.save_snapshot(&a, &at(2)).await,
        Ok(SnapshotSave::Stale),
        "the same version again is refused"
    );
    assert_eq!(
        store.save_snapshot(&a, &at(3)).await,
        Ok(SnapshotSave::Saved)
    );
    assert_eq!(
        store.read_snapshots(&[b.clone(), a.clone()]).await,
        Ok(vec![None, Some(at(3))]),
        "snapshots read back in the order asked, whole"
    );
}

async fn the_expiry_index_finds_hold_events_by_expiry(store: &dyn EventStore, prefix: &str) {
    // Instants no other check uses, so only this check's holds fall in the windows.
    let base = 4_000_000_000_000_i64;
    let instant = |secs: i64| Timestamp::from_millis(base + secs * 1000);
    let a = sku(prefix, "expiry-a");
    let b = sku(prefix, "expiry-b");
    let rid = |sku: &StreamId, seq: Version| ReservationId::new(sku.clone(), seq, 11);
    let placed = |sku: &StreamId, seq: Version, expires: i64| Event {
        actor: None,
        figures: None,
        stream: sku.clone(),
        seq,
        at: instant(0),
        change: Change::HoldPlaced {
            reservation_id: rid(sku, seq),
            quantity: Quantity::new(1).expect("valid"),
            expires_at: instant(expires),
            release_at: instant(expires + 120),
            lines: Vec::new(),
            owner: None,
        },
    };
    let extended = Event {
        actor: None,
        figures: None,
        stream: a.clone(),
        seq: 4,
        at: instant(1),
        change: Change::HoldExtended {
            reservation_id: rid(&a, 2),
            quantity: Quantity::new(1).expect("valid"),
            expires_at: instant(90),
            release_at: instant(210),
            previous_release_at: instant(130),
        },
    };
    let stream_a = vec![
        received(&a, 1, 5),
        placed(&a, 2, 10),
        placed(&a, 3, 20),
        extended,
    ];
    let stream_b = vec![received(&b, 1, 5), placed(&b, 2, 20)];
    // A hold in one of b's escrow buckets: the index names the bucket's stream.
    let c = b.in_bucket(Bucket::new(2).expect("a bucket"));
    let stream_c = vec![placed(&c, 1, 20), placed(&c, 2, 30)];
    transact(
        store,
        Transaction::appends(vec![
            StreamAppend {
                stream: a.clone(),
                expected: 0,
                events: stream_a,
            },
            StreamAppend {
                stream: b.clone(),
                expected: 0,
                events: stream_b,
            },
            StreamAppend {
                stream: c.clone(),
                expected: 0,
                events: stream_c,
            },
        ]),
    )
    .await
    .expect("hold events appended");
    let entry = |sku: &StreamId, seq: Version, reservation: Version, expires: i64| LapsingHold {
        stream: sku.clone(),
        seq,
        reservation_id: rid(sku, reservation),
        expires_at: instant(expires),
    };
    let mine = |hold: &LapsingHold| [&a, &b, &c].contains(&&hold.stream);
    let ours = |found: Result<Lapsing, StoreError>| -> Vec<LapsingHold> {
        let found = found.expect("index readable");
        assert!(
            found
                .holds
                .windows(2)
                .all(|w| w[0].expires_at <= w[1].expires_at),
            "oldest first"
        );
        let mut found: Vec<LapsingHold> = found.holds.into_iter().filter(mine).collect();
        found.sort();
        found
    };
    let all = 1_000;
    assert_eq!(
        ours(store.lapsing_holds(instant(0), instant(10), all).await),
        vec![entry(&a, 2, 2, 10)],
        "the window's end is included"
    );
    assert_eq!(
        ours(store.lapsing_holds(instant(10), instant(20), all).await),
        vec![
            entry(&a, 3, 3, 20),
            entry(&b, 2, 2, 20),
            entry(&c, 1, 1, 20)
        ],
        "the window's start is excluded; every SKU and every bucket stream is searched"
    );
    assert_eq!(
        ours(store.lapsing_holds(instant(20), instant(3_600), all).await),
        vec![entry(&a, 4, 2, 90), entry(&c, 2, 2, 30)],
        "an extension is indexed at its new expiry"
    );
    assert_eq!(
        ours(store.lapsing_holds(instant(90), instant(90), all).await),
        vec![],
        "an empty window finds nothing"
    );
    // Read one at a time, a backlog comes in slices, each complete up to its end and each
    // moving on, which together hold every hold once.
    let mut after = instant(0);
    let mut slices = Vec::new();
    while after < instant(3_600) {
        let slice = store
            .lapsing_holds(after, instant(3_600), 1)
            .await
            .expect("index readable");
        assert!(slice.through > after, "a slice moves on");
        assert!(slice.through <= instant(3_600));
        assert!(
            slice
                .holds
                .iter()
                .all(|hold| after < hold.expires_at && hold.expires_at <= slice.through),
            "a slice holds its window only"
        );
        slices.extend(slice.holds.into_iter().filter(mine));
        after = slice.through;
    }
    slices.sort();
    assert_eq!(
        slices,
        vec![
            entry(&a, 2, 2, 10),
            entry(&a, 3, 3, 20),
            entry(&a, 4, 2, 90),
            entry(&b, 2, 2, 20),
            entry(&c, 1, 1, 20),
            entry(&c, 2, 2, 30),
        ],
        "the slices hold every hold once"
    );
}

async fn retiring_events_leaves_them_readable_until_deleted(store: &dyn EventStore, prefix: &str) {
    let a = sku(prefix, "retire");
    transact(store, Transaction::appends(vec![append(&a, 0, 3)]))
        .await
        .expect("appended");
    let before = store.read_stream(&a, 0).await.expect("readable");
    store
        .retire_events(&a, 1..=2, Timestamp::from_millis(4_100_000_000_000))
        .await
        .expect("retired");
    store
        .retire_events(&a, 2..=9, Timestamp::from_millis(4_100_000_000_000))
        .await
        .expect("retiring events that do not exist is harmless");
    assert_eq!(
        store.read_stream(&a, 0).await,
        Ok(before),
        "a retired event reads back the same until the store deletes it"
    );
}

/// Two processes share a SKU; one last saw the head at 2 while the other appended up to 5. All
/// five events are archived, snapshotted, retired and — a live retention later — deleted, so slot
/// 3 is free again. The first process's next reservation must be read again and land at 6, not
/// at 3, where a conditional put would succeed.
async fn a_head_older_than_the_live_retention_is_read_again_before_an_append(
    store: Arc<dyn EventStore>,
    ttl: &dyn TimeToLive,
    prefix: &str,
) {
    let a = sku(prefix, "retired-head");
    let retention = Duration::from_secs(2);
    let config = Config {
        live_retention: retention,
        ..Config::default()
    };
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let process = || {
        Inventory::new(
            Arc::clone(&store),
            Arc::new(MemoryQueue::new()),
            Arc::new(clock.clone()),
            config.clone(),
        )
    };
    let (warm, busy) = (process(), process());
    let receipt = Command {
        id: CommandId::random(),
        sku: a.item().clone(),
        accepted_at: clock.now(),
        action: Action::ReceiveStock {
            location: Default::default(),
            quantity: Quantity::new(10).expect("valid quantity"),
            why: Annotation::received(None),
        },
    };
    busy.apply_commands(a.item(), &[receipt])
        .await
        .expect("received");
    assert_eq!(reserve(&warm, &a).await, 2);
    for expected in 3..=5 {
        assert_eq!(reserve(&busy, &a).await, expected);
    }
    let appended: Vec<FeedChange> = store
        .read_stream(&a, 0)
        .await
        .expect("readable")
        .into_iter()
        .map(FeedChange::Appended)
        .collect();
    assert!(Snapshotter::new(Arc::clone(&store))
        .react(&appended)
        .await
        .is_empty());
    let archive = Archive::new(Arc::new(MemoryObjects::new()));
    let archiver = Archiver::new(
        Arc::clone(&store),
        archive,
        Arc::new(clock.clone()),
        retention,
    );
    assert!(
        archiver.react(&appended).await.is_empty(),
        "archived and retired"
    );
    clock.advance_millis(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX) + 1_000);
    tokio::time::sleep(retention + Duration::from_millis(200)).await;
    assert_eq!(
        ttl.delete_expired(clock.now()).await,
        5,
        "every event is deleted"
    );

    assert_eq!(
        reserve(&warm, &a).await,
        6,
        "the stale head is read again (from the snapshot), not appended after"
    );
    assert_eq!(
        store.read_event(&a, 3).await.expect("readable"),
        None,
        "nothing was written into a slot the time to live emptied"
    );
}

/// Reserves one unit of `sku`; the sequence number its hold took.
async fn reserve(process: &Inventory, sku: &StreamId) -> Version {
    let line = Line::of(
        sku.item().clone(),
        Quantity::new(1).expect("valid quantity"),
    );
    let request = ReserveRequest::new(vec![line], TtlSeconds::new(60).expect("ttl"), None)
        .expect("valid request");
    process
        .reserve(request, &Caller::local_admin())
        .await
        .expect("reserved")
        .reservation_id
        .anchor_seq()
}
