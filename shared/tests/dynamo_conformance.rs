//! The DynamoDB event store keeps the same contract as the memory store, through the real AWS
//! SDK against moto.
#![cfg(feature = "aws")]

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use inventory_core::aws::{DynamoStore, TestAws};
use inventory_core::conformance::{check_event_store, TimeToLive};
use inventory_core::domain::StreamId;
use inventory_core::domain::Timestamp;

/// The table's time to live, played: moto keeps `ttl` but never deletes by it.
struct PlayedTimeToLive {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

#[async_trait]
impl TimeToLive for PlayedTimeToLive {
    async fn delete_expired(&self, now: Timestamp) -> usize {
        let due = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("#ttl <= :now AND begins_with(#pk, :events)")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_values(
                ":now",
                AttributeValue::N((now.millis() / 1_000).to_string()),
            )
            .expression_attribute_values(":events", AttributeValue::S("sku#".into()))
            .send()
            .await
            .expect("scanned");
        let mut deleted = 0;
        for item in due.items() {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", item["pk"].clone())
                .key("sk", item["sk"].clone())
                .send()
                .await
                .expect("deleted");
            deleted += 1;
        }
        deleted
    }
}

#[tokio::test]
async fn the_dynamodb_store_keeps_the_event_store_contract() {
    let aws = TestAws::new().await;
    let client = aws.dynamodb();
    let store = aws.store(client.clone(), "conformance").await;
    store
        .create_table_if_missing()
        .await
        .expect("creating it again is harmless");
    let table = store.table().to_owned();
    let ttl = PlayedTimeToLive { client, table };
    check_event_store(Arc::new(store), &ttl, "ddb").await;
}

#[tokio::test]
async fn what_deduplicates_a_command_expires_after_the_dedupe_window_a_hold_after_the_live_retention_and_a_mark_never(
) {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use aws_sdk_dynamodb::types::AttributeValue;
    use inventory_core::domain::{
        CommandId, HoldLine, HoldStatus, Quantity, ReservationId, Sku, Timestamp,
    };
    use inventory_core::ports::{
        ArchiveMark, CommandOutcome, Record, RecordKey, RecordWrite, Transaction, Transactions,
    };
    use inventory_core::Config;

    let aws = TestAws::new().await;
    let client = aws.dynamodb();
    let config = Config {
        command_retention: Duration::from_secs(30 * 86_400),
        live_retention: Duration::from_secs(90 * 86_400),
        ..Config::default()
    };
    let window = config.dedupe_window();
    let store = aws
        .store(client.clone(), "dedupe")
        .await
        .with_retention(&config);
    let table = store.table().to_owned();
    let command_id = CommandId::random();
    let sku = Sku::parse("SKU-1").unwrap();
    let hold = HoldLine {
        reservation_id: ReservationId::new(StreamId::of(&sku), 1, 7),
        stream: StreamId::of(&sku),
        quantity: Quantity::new(2).unwrap(),
        expires_at: Timestamp::from_millis(1_700_000_900_000),
        release_at: Timestamp::from_millis(1_700_001_020_000),
        status: HoldStatus::Committed,
        fulfilled: 0,
        cancelled: 0,
        returned: 0,
    };
    let write = |key, record| RecordWrite {
        key,
        expected: None,
        record,
    };
    store
        .write(Transaction::records(vec![
            write(
                RecordKey::CommandOutcome {
                    command_id,
                    sku: sku.clone(),
                },
                Record::CommandOutcome(CommandOutcome::Applied),
            ),
            write(
                RecordKey::ArchiveMark {
                    stream: StreamId::of(&sku.clone()),
                },
                Record::ArchiveMark(ArchiveMark::default()),
            ),
            write(
                RecordKey::Hold {
                    reservation_id: hold.reservation_id.clone(),
                    stream: StreamId::of(&sku),
                },
                Record::Hold(hold.clone()),
            ),
        ]))
        .await
        .expect("written");
    let ttl_of = |pk: String| {
        let client = client.clone();
        let table = table.clone();
        async move {
            let item = client
                .get_item()
                .table_name(table)
                .key("pk", AttributeValue::S(pk))
                .key("sk", AttributeValue::N("0".into()))
                .send()
                .await
                .expect("read")
                .item
                .expect("present");
            item.get("ttl").map(|ttl| {
                ttl.as_n()
                    .expect("a number")
                    .parse::<u64>()
                    .expect("seconds")
            })
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ttl = ttl_of(format!("outcome#{command_id}#SKU-1"))
        .await
        .expect("a ttl");
    assert!(
        ttl.abs_diff(now + window.as_secs()) < 120,
        "the outcome expires {ttl}, not a dedupe window from now ({})",
        now + window.as_secs()
    );
    assert_eq!(ttl_of("archive#SKU-1".into()).await, None, "marks are kept");
    let kept = config.live_retention.as_secs();
    let ttl = ttl_of(format!("hold#{}#SKU-1", hold.reservation_id))
        .await
        .expect("a ttl");
    assert!(
        ttl.abs_diff(now + kept) < 120,
        "the hold's record expires {ttl}, not a live retention from now ({})",
        now + kept
    );
}

#[tokio::test]
async fn a_table_is_verified_against_the_shape_the_code_creates_and_a_missing_index_is_named() {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };

    let aws = TestAws::new().await;
    let client = aws.dynamodb();
    let made = aws.store(client.clone(), "shape").await;
    made.verify_table()
        .await
        .expect("a table the code made is as it expects");

    let bare = aws.name("bare");
    client
        .create_table()
        .table_name(&bare)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("a table of another shape");
    let problems = DynamoStore::new(client, &bare)
        .verify_table()
        .await
        .expect_err("not the code's shape");
    for missing in [
        "keys",
        "no index ExpiryIndex",
        "no index ParkedIndex",
        "change feed",
    ] {
        assert!(problems.contains(missing), "{missing}: {problems}");
    }
}
