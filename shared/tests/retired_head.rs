//! A warm process never appends into a sequence slot the table's time to live emptied. Events
//! that are archived and covered by a snapshot are deleted a live retention after they are
//! retired, and nothing is left of a deleted item: a conditional put into its slot succeeds as if
//! the slot had never been used (the memory store plays DynamoDB's deletes so). A process whose
//! last known head is older than the live retention must therefore read again before deciding,
//! or it would write a second event at a sequence number the archive already holds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use inventory_core::app::ReserveRequest;
use inventory_core::archive::Archive;
use inventory_core::config::MIN_LIVE_RETENTION_SECS;
use inventory_core::domain::{
    Action, Caller, Command, CommandId, Line, Quantity, Sku, Timestamp, TtlSeconds,
};
use inventory_core::feed::{FeedChange, Reaction};
use inventory_core::memory::{MemoryObjects, MemoryQueue, MemoryStore};
use inventory_core::ports::{Clock, EventStore, ManualClock};
use inventory_core::reactions::{Archiver, Snapshotter};
use inventory_core::{Config, Inventory};

fn sku() -> Sku {
    Sku::parse("SKU-1").unwrap()
}

async fn reserve(process: &Inventory) -> u64 {
    let lines = vec![Line {
        sku: sku(),
        quantity: Quantity::new(1).unwrap(),
    }];
    let request = ReserveRequest::new(lines, TtlSeconds::new(60).unwrap(), None).unwrap();
    let view = process
        .reserve(request, &Caller::local_admin())
        .await
        .expect("reserved");
    view.reservation_id.anchor_seq()
}

#[tokio::test(start_paused = true)]
async fn a_process_whose_head_is_older_than_the_live_retention_reads_again_before_appending() {
    let retention = Duration::from_secs(MIN_LIVE_RETENTION_SECS as u64);
    let config = Config {
        live_retention: retention,
        ..Config::default()
    };
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let process = |config: Config| {
        Inventory::new(
            store.clone(),
            Arc::new(MemoryQueue::new()),
            Arc::new(clock.clone()),
            config,
        )
    };
    let (warm, busy) = (process(config.clone()), process(config.clone()));
    let receipt = Command {
        id: CommandId::random(),
        sku: sku(),
        accepted_at: clock.now(),
        action: Action::ReceiveStock {
            quantity: Quantity::new(10).unwrap(),
            reference: None,
        },
    };
    busy.apply_commands(&sku(), &[receipt])
        .await
        .expect("received");

    // The warm process learns the head (2); the other one appends 3, 4 and 5.
    assert_eq!(reserve(&warm).await, 2);
    for expected in 3..=5 {
        assert_eq!(reserve(&busy).await, expected);
    }

    // Snapshot, archive, retire every event; a live retention later the table deletes them.
    let appended: Vec<FeedChange> = store
        .read_stream(&sku(), 0)
        .await
        .unwrap()
        .into_iter()
        .map(FeedChange::Appended)
        .collect();
    assert!(Snapshotter::new(store.clone())
        .react(&appended)
        .await
        .is_empty());
    let archive = Archive::new(Arc::new(MemoryObjects::new()));
    let archiver = Archiver::new(store.clone(), archive, Arc::new(clock.clone()), retention);
    assert!(archiver.react(&appended).await.is_empty());
    let later = i64::try_from(retention.as_millis()).unwrap() + 1_000;
    clock.advance_millis(later);
    tokio::time::advance(retention + Duration::from_secs(1)).await;
    assert_eq!(store.delete_expired(clock.now()), 5, "every event is gone");

    // The warm process's head (2) is older than the retention: it reads the snapshot (5) and
    // appends 6, instead of writing a second event 3.
    assert_eq!(reserve(&warm).await, 6);
    let (feed, _) = store.feed_since(0);
    let mut appends: BTreeMap<u64, usize> = BTreeMap::new();
    for change in feed {
        if let FeedChange::Appended(event) = change {
            *appends.entry(event.seq).or_default() += 1;
        }
    }
    assert!(
        appends.values().all(|count| *count == 1),
        "a sequence number was written twice: {appends:?}"
    );
}
