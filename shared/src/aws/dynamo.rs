//! The event store on one DynamoDB table.
//!
//! | item | `pk` (S) | `sk` (N) | other attributes |
//! |---|---|---|---|
//! | event | `sku#{SKU}` | sequence (1, 2, …) | the event's fields (serde_dynamo); hold events also `expiry_shard`; `ttl` once retired |
//! | record | `hold#{reservation}#{SKU}`, `idem#{client}#{key}`, `cmd#{id}`, `outcome#{id}#{SKU}`, `defer#{SKU}` | 0 | `version`, `record`, `ttl`; parked outcomes `parked_list`, `parked_at` |
//! | mark | `archive#{SKU}`, `sweep#expiry` | 0 | `version`, `record` (kept for good) |
//! | snapshot | `snap#{SKU}` | 0 | `version`, `state` |
//!
//! The expiry index is the sparse GSI `ExpiryIndex` (`expiry_shard` S, `expires_at` N,
//! projecting `reservation_id`): only hold-placed and hold-extended events carry
//! `expiry_shard`, a stable hash of the reservation over [`EXPIRY_SHARDS`] shards so that holds
//! expiring in the same second spread over partitions. A sweep queries every shard by
//! `expires_at` range.
//!
//! A single event is appended with one conditional `PutItem` (`attribute_not_exists(pk)`,
//! `ReturnValuesOnConditionCheckFailure=ALL_OLD`, so a retry of our own write is told from a real
//! conflict); any larger commit is one `TransactWriteItems` whose cancellation reasons name the
//! stream or record that conflicted. Reads are strongly consistent; queries follow every page.
//!
//! Parked commands are listed from the sparse GSI `ParkedIndex` (`parked_list` S, always
//! `parked`; `parked_at` N; projecting all): only outcome records of parked commands carry
//! those attributes, and they have no time to live.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::scan::builders::ScanFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, KeysAndAttributes, Projection, ProjectionType, Put,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::domain::{
    Change, CommandId, Event, ReservationId, Sku, SkuState, StreamId, Timestamp, Version,
};
use crate::limits::{MAX_BATCH_READ_KEYS, MAX_TRANSACTION_ITEMS};
use crate::ports::{
    Cause, CommandHistory, CommandOutcome, CommandRecord, Conflict, ExpiryIndex, IndexPart,
    Lapsing, LapsingHold, ParkedEntry, ParkedIndex, Record, RecordKey, RecordWrite, Records,
    Retirement, SnapshotSave, Snapshots, StoreError, StreamAppend, StreamPage, Streams,
    Transaction, Transactions, Versioned,
};
use crate::retry::Retry;

/// Partition key attribute.
pub const PK: &str = "pk";
/// Sort key attribute.
pub const SK: &str = "sk";
/// Partition key prefix of a SKU's event stream: only these items are the change feed.
pub const STREAM_PREFIX: &str = "sku#";
/// Partition key prefix of a SKU's snapshot.
const SNAPSHOT_PREFIX: &str = "snap#";
/// Partition key prefix of a hold's record.
const HOLD_PREFIX: &str = "hold#";
/// Partition key prefix of a client's idempotency key.
const IDEMPOTENCY_PREFIX: &str = "idem#";
/// Partition key prefix of an accepted command.
const COMMAND_PREFIX: &str = "cmd#";
/// Partition key prefix of a command's outcome on one SKU.
const OUTCOME_PREFIX: &str = "outcome#";
/// Partition key prefix of a SKU's archive mark.
const ARCHIVE_MARK_PREFIX: &str = "archive#";
/// Partition key prefix of the expiry timer's mark.
const SWEEP_PREFIX: &str = "sweep#";
/// Partition key prefix of a SKU's held-back commands.
const DEFERRED_PREFIX: &str = "defer#";
/// Partition key prefix of the shop's registry of locations.
const LOCATIONS_PREFIX: &str = "loc#";
const WHOLE_PREFIX: &str = "whole#";
/// Every partition key starts with one of these: what the template's IAM conditions
/// (`dynamodb:LeadingKeys`) grant each function by.
pub const PARTITION_KEY_PREFIXES: [&str; 11] = [
    STREAM_PREFIX,
    SNAPSHOT_PREFIX,
    HOLD_PREFIX,
    IDEMPOTENCY_PREFIX,
    COMMAND_PREFIX,
    OUTCOME_PREFIX,
    ARCHIVE_MARK_PREFIX,
    SWEEP_PREFIX,
    DEFERRED_PREFIX,
    LOCATIONS_PREFIX,
    WHOLE_PREFIX,
];
/// Time-to-live attribute (epoch seconds) of records that may be forgotten.
pub const TTL: &str = "ttl";

/// The expiry index's name.
pub const EXPIRY_INDEX: &str = "ExpiryIndex";
/// Shards of the expiry index.
pub const EXPIRY_SHARDS: u32 = 16;
/// Attribute naming a hold event's expiry shard (the index's partition key).
const EXPIRY_SHARD: &str = "expiry_shard";
/// Attribute of a hold event's expiry (the index's sort key; the event's own field).
const EXPIRES_AT: &str = "expires_at";
/// The parked-commands index's name.
pub const PARKED_INDEX: &str = "ParkedIndex";
/// Attribute putting a parked outcome in the index (its partition key; always [`PARKED_LIST`]).
const PARKED_LIST_ATTRIBUTE: &str = "parked_list";
/// The one partition of the parked-commands index.
const PARKED_LIST: &str = "parked";
/// Attribute of a parked outcome's parking time (the index's sort key).
const PARKED_AT: &str = "parked_at";
/// Retirement transactions (of up to 100 events each) issued concurrently.
const RETIRE_CONCURRENCY: usize = 16;

/// The DynamoDB event store.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// How long records that deduplicate commands are kept (their time to live).
    dedupe_window: Duration,
    /// How long a hold's record is kept after its last write.
    hold_retention: Duration,
}

#[derive(Serialize, Deserialize)]
struct RecordItem {
    pk: String,
    sk: u64,
    version: u64,
    record: Record,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parked_list: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parked_at: Option<Timestamp>,
}

impl RecordItem {
    /// The parked command this item holds, if it is a parked outcome; its key if it is not
    /// filed as an outcome.
    fn into_parked(self) -> Result<Option<ParkedEntry>, String> {
        let filed_under = self
            .pk
            .strip_prefix(OUTCOME_PREFIX)
            .and_then(|rest| rest.split_once('#'))
            .and_then(|(id, sku)| Some((CommandId::parse(id).ok()?, Sku::parse(sku).ok()?)));
        match (filed_under, self.record) {
            (Some((command_id, sku)), Record::CommandOutcome(CommandOutcome::Parked(command))) => {
                Ok(Some(ParkedEntry {
                    command_id,
                    sku,
                    version: self.version,
                    parked: command,
                }))
            }
            (Some(_), _) => Ok(None),
            (None, _) => Err(self.pk),
        }
    }
}

/// The parked command a stream image holds, if it is the item of a parked outcome.
pub(crate) fn parked_in_image(image: serde_dynamo::Item) -> Option<ParkedEntry> {
    let is_parked_outcome = matches!(image.get(PK), Some(serde_dynamo::AttributeValue::S(pk)) if pk.starts_with(OUTCOME_PREFIX))
        && image.contains_key(PARKED_LIST_ATTRIBUTE);
    if !is_parked_outcome {
        return None;
    }
    match serde_dynamo::from_item::<_, RecordItem>(image) {
        Ok(stored) => stored.into_parked().ok().flatten(),
        Err(err) => {
            tracing::error!(error = %err, "a stream record's image is not a parked outcome");
            None
        }
    }
}

#[derive(Serialize)]
struct EventItem<'a> {
    pk: String,
    sk: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiry_shard: Option<String>,
    #[serde(flatten)]
    event: &'a Event,
}

#[derive(Serialize, Deserialize)]
struct SnapshotItem {
    pk: String,
    sk: u64,
    version: u64,
    state: SkuState,
}

#[derive(Deserialize)]
struct ExpiryEntry {
    pk: String,
    sk: u64,
    reservation_id: ReservationId,
    expires_at: Timestamp,
}

/// The expiry shard of a reservation's hold events: FNV-1a of the reservation id, stable across
/// processes and releases. By reservation rather than by SKU, so the holds of one hot SKU (a
/// flash sale) spread over every shard's partition of the index.
pub fn expiry_shard(reservation_id: &ReservationId) -> u32 {
    let hash = reservation_id
        .to_string()
        .bytes()
        .fold(0x811c_9dc5_u32, |hash, byte| {
            (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
        });
    hash % EXPIRY_SHARDS
}

type Item = HashMap<String, AttributeValue>;

/// One element of a key schema.
fn key_element(name: &str, kind: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(bug)
}

/// The table as the code reads and writes it: its attributes, keys, indexes and change feed.
/// Creating a local table and verifying a deployed one both follow it (the template's
/// `EventsTable` is held to the same by `inventory init --existing` in the deploy rehearsal).
struct TableShape {
    attributes: Vec<AttributeDefinition>,
    keys: Vec<KeySchemaElement>,
    indexes: Vec<GlobalSecondaryIndex>,
    stream: StreamSpecification,
}

impl TableShape {
    fn new() -> Result<Self, StoreError> {
        let attribute = |name: &str, kind| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(kind)
                .build()
                .map_err(bug)
        };
        let index = |name: &str, (hash, range): (&str, &str), projection: Projection| {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key_element(hash, KeyType::Hash)?)
                .key_schema(key_element(range, KeyType::Range)?)
                .projection(projection)
                .build()
                .map_err(bug)
        };
        Ok(Self {
            attributes: vec![
                attribute(PK, ScalarAttributeType::S)?,
                attribute(SK, ScalarAttributeType::N)?,
                attribute(EXPIRY_SHARD, ScalarAttributeType::S)?,
                attribute(EXPIRES_AT, ScalarAttributeType::N)?,
                attribute(PARKED_LIST_ATTRIBUTE, ScalarAttributeType::S)?,
                attribute(PARKED_AT, ScalarAttributeType::N)?,
            ],
            keys: vec![
                key_element(PK, KeyType::Hash)?,
                key_element(SK, KeyType::Range)?,
            ],
            indexes: vec![
                index(
                    EXPIRY_INDEX,
                    (EXPIRY_SHARD, EXPIRES_AT),
                    Projection::builder()
                        .projection_type(ProjectionType::Include)
                        .non_key_attributes("reservation_id")
                        .build(),
                )?,
                index(
                    PARKED_INDEX,
                    (PARKED_LIST_ATTRIBUTE, PARKED_AT),
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )?,
            ],
            stream: StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .map_err(bug)?,
        })
    }
}

/// Which part of a commit one transaction item writes (to name what a cancellation hit).
enum Origin {
    Stream(StreamId),
    Record(RecordKey),
}

impl DynamoStore {
    /// A store on `table` through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        let defaults = crate::Config::default();
        Self {
            client,
            table: table.into(),
            dedupe_window: defaults.dedupe_window(),
            hold_retention: defaults.hold_record_retention(),
        }
    }

    /// Keeps records as long as `config` says: what deduplicates commands (records, outcomes,
    /// idempotency keys) for [`crate::Config::dedupe_window`], a hold's record for
    /// [`crate::Config::hold_record_retention`].
    pub fn with_retention(mut self, config: &crate::Config) -> Self {
        self.dedupe_window = config.dedupe_window();
        self.hold_retention = config.hold_record_retention();
        self
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table (with its stream and TTL) unless it exists; for local runs and tests.
    /// Deployed tables come from the SAM template.
    pub async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        let exists = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await;
        if exists.is_ok() {
            return Ok(());
        }
        let shape = TableShape::new()?;
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .set_attribute_definitions(Some(shape.attributes))
            .set_key_schema(Some(shape.keys))
            .set_global_secondary_indexes(Some(shape.indexes))
            .stream_specification(shape.stream)
            .send()
            .await;
        if let Err(err) = created {
            let already = err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception());
            if !already {
                return Err(unavailable(err));
            }
        }
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL)
                    .build()
                    .map_err(bug)?,
            )
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Checks that the table is as the code reads and writes it — keys, both indexes, the
    /// change feed — without changing anything: what a deployed stack created must match what
    /// [`DynamoStore::create_table_if_missing`] would. Says every difference found.
    pub async fn verify_table(&self) -> Result<(), String> {
        let shape = TableShape::new().map_err(|err| err.to_string())?;
        let described = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|err| format!("table {}: {}", self.table, DisplayErrorContext(err)))?;
        let table = described
            .table()
            .ok_or_else(|| format!("table {}: not described", self.table))?;
        let mut problems = Vec::new();
        if table.key_schema() != shape.keys.as_slice() {
            problems.push(format!(
                "keys {:?}, expected {:?}",
                table.key_schema(),
                shape.keys
            ));
        }
        for attribute in &shape.attributes {
            if !table.attribute_definitions().contains(attribute) {
                problems.push(format!("attribute {attribute:?} is not defined"));
            }
        }
        for index in &shape.indexes {
            let found = table
                .global_secondary_indexes()
                .iter()
                .find(|found| found.index_name() == Some(index.index_name()));
            match found {
                None => problems.push(format!("no index {}", index.index_name())),
                Some(found)
                    if found.key_schema() != index.key_schema()
                        || found.projection() != index.projection() =>
                {
                    problems.push(format!(
                        "index {}: keys {:?} and projection {:?}, expected {:?} and {:?}",
                        index.index_name(),
                        found.key_schema(),
                        found.projection(),
                        index.key_schema(),
                        index.projection()
                    ));
                }
                Some(_) => {}
            }
        }
        if table.stream_specification() != Some(&shape.stream) {
            problems.push(format!(
                "change feed {:?}, expected {:?}",
                table.stream_specification(),
                shape.stream
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "table {} is not as the code expects: {}",
                self.table,
                problems.join("; ")
            ))
        }
    }

    fn stream_pk(sku: &StreamId) -> String {
        format!("{STREAM_PREFIX}{sku}")
    }

    fn record_pk(key: &RecordKey) -> String {
        match key {
            RecordKey::Hold {
                reservation_id,
                stream,
            } => format!("{HOLD_PREFIX}{reservation_id}#{stream}"),
            RecordKey::Idempotency { client_id, key } => {
                format!("{IDEMPOTENCY_PREFIX}{client_id}#{}", key.as_str())
            }
            RecordKey::Command { command_id } => format!("{COMMAND_PREFIX}{command_id}"),
            RecordKey::CommandOutcome { command_id, sku } => {
                format!("{OUTCOME_PREFIX}{command_id}#{sku}")
            }
            RecordKey::ArchiveMark { stream } => format!("{ARCHIVE_MARK_PREFIX}{stream}"),
            RecordKey::ExpirySweep => format!("{SWEEP_PREFIX}expiry"),
            RecordKey::Deferred { sku } => format!("{DEFERRED_PREFIX}{sku}"),
            RecordKey::Locations => format!("{LOCATIONS_PREFIX}registry"),
            RecordKey::WholeItem { sku } => format!("{WHOLE_PREFIX}{sku}"),
        }
    }

    fn snapshot_pk(sku: &StreamId) -> String {
        format!("{SNAPSHOT_PREFIX}{sku}")
    }

    fn key_of(pk: String, sk: u64) -> Item {
        HashMap::from([
            (PK.to_owned(), AttributeValue::S(pk)),
            (SK.to_owned(), AttributeValue::N(sk.to_string())),
        ])
    }

    /// The strongly consistent query of `sku`'s events after `after`, in order.
    fn stream_query(
        &self,
        sku: &StreamId,
        after: Version,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk > :after")
            .expression_attribute_values(":pk", AttributeValue::S(Self::stream_pk(sku)))
            .expression_attribute_values(":after", AttributeValue::N(after.to_string()))
            .consistent_read(true)
    }

    fn event_item(event: &Event) -> Result<Item, StoreError> {
        let indexed = match &event.change {
            Change::HoldPlaced { reservation_id, .. }
            | Change::HoldExtended { reservation_id, .. } => Some(reservation_id),
            _ => None,
        };
        serde_dynamo::to_item(EventItem {
            pk: Self::stream_pk(&event.stream),
            sk: event.seq,
            expiry_shard: indexed.map(|id| expiry_shard(id).to_string()),
            event,
        })
        .map_err(bug)
    }

    fn record_item(&self, write: &RecordWrite) -> Result<Item, StoreError> {
        let parked_at = match &write.record {
            Record::CommandOutcome(CommandOutcome::Parked(parked)) => Some(parked.parked_at),
            _ => None,
        };
        let retention = match write.key {
            _ if parked_at.is_some() => None,
            RecordKey::Hold { .. } => Some(self.hold_retention),
            RecordKey::Idempotency { .. }
            | RecordKey::Command { .. }
            | RecordKey::CommandOutcome { .. } => Some(self.dedupe_window),
            RecordKey::ArchiveMark { .. }
            | RecordKey::ExpirySweep
            | RecordKey::Deferred { .. }
            | RecordKey::Locations
            | RecordKey::WholeItem { .. } => None,
        };
        let expires = retention.map(|retention| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .saturating_add(retention)
                .as_secs()
        });
        serde_dynamo::to_item(RecordItem {
            pk: Self::record_pk(&write.key),
            sk: 0,
            version: write.expected.unwrap_or(0) + 1,
            record: write.record.clone(),
            ttl: expires,
            parked_list: parked_at.map(|_| PARKED_LIST.to_owned()),
            parked_at,
        })
        .map_err(bug)
    }

    /// The put of a record, valid only over the version read (or if absent).
    fn record_put(&self, write: &RecordWrite) -> Result<Put, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.record_item(write)?));
        let put = match write.expected {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(version) => put
                .condition_expression("version = :expected")
                .expression_attribute_values(":expected", AttributeValue::N(version.to_string())),
        };
        put.build().map_err(bug)
    }

    fn event_put(&self, event: &Event) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(Self::event_item(event)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(bug)
    }

    /// The hot path: one event, one conditional PutItem. If the condition fails and the item
    /// there is the very event we wrote (an SDK retry after a lost answer), it is ours.
    async fn append_one(&self, append: &StreamAppend) -> Result<(), StoreError> {
        let event = &append.events[0];
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::event_item(event)?))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(err)) => match err.into_err() {
                PutItemError::ConditionalCheckFailedException(failed) => {
                    let there = failed
                        .item()
                        .and_then(|item| serde_dynamo::from_item::<_, Event>(item.clone()).ok());
                    if there.as_ref() == Some(event) {
                        return Ok(());
                    }
                    Err(StoreError::Conflict(Conflict::Stream {
                        stream: append.stream.clone(),
                        found: there.map(Box::new),
                    }))
                }
                other => Err(unavailable(other)),
            },
            Err(err) => Err(unavailable(err)),
        }
    }

    /// Everything else: one transaction. A cancellation names the item that failed.
    async fn transact_items(&self, transaction: &Transaction) -> Result<(), StoreError> {
        let mut items = Vec::with_capacity(transaction.items());
        let mut origins = Vec::with_capacity(transaction.items());
        for append in &transaction.appends {
            for event in &append.events {
                items.push(
                    TransactWriteItem::builder()
                        .put(self.event_put(event)?)
                        .build(),
                );
                origins.push(Origin::Stream(append.stream.clone()));
            }
        }
        for write in &transaction.records {
            items.push(
                TransactWriteItem::builder()
                    .put(self.record_put(write)?)
                    .build(),
            );
            origins.push(Origin::Record(write.key.clone()));
        }
        let result = self.send_transaction(items).await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(err)) => match err.into_err() {
                TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                    let failed = cancelled.cancellation_reasons().iter().position(|reason| {
                        matches!(
                            reason.code(),
                            Some("ConditionalCheckFailed" | "TransactionConflict")
                        )
                    });
                    match failed.and_then(|index| origins.get(index)) {
                        Some(Origin::Stream(sku)) => Err(StoreError::Conflict(Conflict::Stream {
                            stream: sku.clone(),
                            found: None,
                        })),
                        Some(Origin::Record(key)) => Err(StoreError::Conflict(Conflict::Record {
                            key: Box::new(key.clone()),
                        })),
                        None => Err(unavailable(cancelled)),
                    }
                }
                other => Err(unavailable(other)),
            },
            Err(err) => Err(unavailable(err)),
        }
    }
}

impl DynamoStore {
    /// Items by partition key (sort key 0), decoded, in the order asked (`None`: absent).
    async fn batch_get_as<T: serde::de::DeserializeOwned>(
        &self,
        pks: &[String],
        consistent: bool,
    ) -> Result<Vec<Option<T>>, StoreError> {
        let found = self.batch_get(pks, consistent).await?;
        pks.iter()
            .map(|pk| {
                found
                    .get(pk)
                    .map(|item| serde_dynamo::from_item(item.clone()).map_err(bug))
                    .transpose()
            })
            .collect()
    }

    /// Items by partition key (sort key 0), any number of them: BatchGetItem in chunks of 100,
    /// unprocessed keys asked again with back-off.
    async fn batch_get(
        &self,
        pks: &[String],
        consistent: bool,
    ) -> Result<HashMap<String, Item>, StoreError> {
        let mut found: HashMap<String, Item> = HashMap::new();
        let mut distinct: Vec<&String> = pks.iter().collect();
        distinct.sort();
        distinct.dedup();
        for chunk in distinct.chunks(MAX_BATCH_READ_KEYS) {
            let mut pending: Vec<Item> = chunk
                .iter()
                .map(|pk| Self::key_of((*pk).clone(), 0))
                .collect();
            let mut retry = Retry::store_call();
            let mut first = true;
            while !pending.is_empty() {
                if !std::mem::take(&mut first) && !retry.wait().await {
                    return Err(StoreError::Unavailable(
                        "keys stayed unprocessed after every retry".into(),
                    ));
                }
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(consistent)
                    .build()
                    .map_err(bug)?;
                let answer = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(unavailable)?;
                for item in answer
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    if let Some(AttributeValue::S(pk)) = item.get(PK) {
                        found.insert(pk.clone(), item);
                    }
                }
                if let Some(unprocessed) = answer
                    .unprocessed_keys
                    .and_then(|mut tables| tables.remove(&self.table))
                {
                    pending = unprocessed.keys;
                }
            }
        }
        Ok(found)
    }
}

fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(Cause::of(err))
}

/// An item that does not read (or write) as what it should be, or a request that breaks the
/// store's contract.
fn bug(err: impl std::fmt::Display) -> StoreError {
    StoreError::Bug(err.to_string())
}

#[async_trait]
impl Streams for DynamoStore {
    async fn read_stream(&self, sku: &StreamId, after: Version) -> Result<Vec<Event>, StoreError> {
        let items: Vec<Item> = self
            .stream_query(sku, after)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(unavailable)?;
        serde_dynamo::from_items(items).map_err(bug)
    }

    async fn read_page(
        &self,
        sku: &StreamId,
        after: Version,
        limit: usize,
    ) -> Result<StreamPage, StoreError> {
        // One query of one item more than asked, which says whether more follow; fewer when
        // they pass the 1 MB a query returns (then `more` says so too).
        let page = self
            .stream_query(sku, after)
            .limit(i32::try_from(limit.saturating_add(1)).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(unavailable)?;
        let events: Vec<Event> =
            serde_dynamo::from_items(page.items.unwrap_or_default()).map_err(bug)?;
        let cut = page.last_evaluated_key.is_some() && events.len() <= limit;
        let page = StreamPage::first(limit, events);
        Ok(StreamPage {
            more: page.more || cut,
            ..page
        })
    }

    async fn read_event(&self, sku: &StreamId, seq: Version) -> Result<Option<Event>, StoreError> {
        if seq == 0 {
            return Ok(None);
        }
        let found = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key_of(Self::stream_pk(sku), seq)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        found
            .item
            .map(|item| serde_dynamo::from_item(item).map_err(bug))
            .transpose()
    }
}

#[async_trait]
impl Records for DynamoStore {
    async fn read_records(&self, keys: &[RecordKey]) -> Result<Vec<Option<Versioned>>, StoreError> {
        let pks: Vec<String> = keys.iter().map(Self::record_pk).collect();
        let stored: Vec<Option<RecordItem>> = self.batch_get_as(&pks, true).await?;
        Ok(stored
            .into_iter()
            .map(|item| {
                item.map(|item| Versioned {
                    version: item.version,
                    record: item.record,
                })
            })
            .collect())
    }
}

#[async_trait]
impl Transactions for DynamoStore {
    async fn write(&self, transaction: Transaction) -> Result<(), StoreError> {
        let items = transaction.items();
        if items > MAX_TRANSACTION_ITEMS {
            return Err(bug(format!(
                "a transaction of {items} items exceeds the limit of {MAX_TRANSACTION_ITEMS}"
            )));
        }
        match (&transaction.appends[..], &transaction.records[..]) {
            ([], []) => Ok(()),
            ([append], []) if append.events.len() == 1 => self.append_one(append).await,
            _ => self.transact_items(&transaction).await,
        }
    }
}

#[async_trait]
impl Snapshots for DynamoStore {
    async fn read_snapshots(&self, skus: &[StreamId]) -> Result<Vec<Option<SkuState>>, StoreError> {
        let pks: Vec<String> = skus.iter().map(Self::snapshot_pk).collect();
        let stored: Vec<Option<SnapshotItem>> = self.batch_get_as(&pks, false).await?;
        Ok(stored
            .into_iter()
            .map(|item| item.map(|item| item.state))
            .collect())
    }

    async fn save_snapshot(
        &self,
        sku: &StreamId,
        state: &SkuState,
    ) -> Result<SnapshotSave, StoreError> {
        let item = serde_dynamo::to_item(SnapshotItem {
            pk: Self::snapshot_pk(sku),
            sk: 0,
            version: state.version,
            state: state.clone(),
        })
        .map_err(bug)?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR version < :version")
            .expression_attribute_values(":version", AttributeValue::N(state.version.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(SnapshotSave::Saved),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(PutItemError::is_conditional_check_failed_exception) =>
            {
                Ok(SnapshotSave::Stale)
            }
            Err(err) => Err(unavailable(err)),
        }
    }
}

#[async_trait]
impl ExpiryIndex for DynamoStore {
    async fn lapsing_holds(
        &self,
        after: Timestamp,
        through: Timestamp,
        limit: usize,
    ) -> Result<Lapsing, StoreError> {
        if through <= after {
            return Ok(Lapsing {
                holds: Vec::new(),
                through,
            });
        }
        let page = i32::try_from(limit.clamp(1, MAX_INDEX_PAGE)).unwrap_or(1);
        let shards = (0..EXPIRY_SHARDS).map(|shard| async move {
            let mut pages = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(EXPIRY_INDEX)
                .key_condition_expression("#shard = :shard AND #expires BETWEEN :from AND :to")
                .expression_attribute_names("#shard", EXPIRY_SHARD)
                .expression_attribute_names("#expires", EXPIRES_AT)
                .expression_attribute_values(":shard", AttributeValue::S(shard.to_string()))
                .expression_attribute_values(
                    ":from",
                    AttributeValue::N((after.millis() + 1).to_string()),
                )
                .expression_attribute_values(":to", AttributeValue::N(through.millis().to_string()))
                .limit(page)
                .into_paginator()
                .send();
            let mut part = IndexPart::default();
            while let Some(answer) = pages.next().await {
                let answer = answer.map_err(unavailable)?;
                for item in answer.items.unwrap_or_default() {
                    part.holds.push(lapsing_hold(item)?);
                }
                if IndexPart::enough(&part.holds, limit) {
                    part.more = answer.last_evaluated_key.is_some();
                    break;
                }
            }
            Ok::<_, StoreError>(part)
        });
        let parts = futures::future::try_join_all(shards).await?;
        Ok(Lapsing::of(parts, through))
    }
}

/// The most hold events one page of the expiry index brings (DynamoDB stops a page at 1 MB
/// too: an entry is some 150 bytes).
const MAX_INDEX_PAGE: usize = 1_000;

/// A hold event as the expiry index holds it: the stream it is in (an item's or a bucket's).
fn lapsing_hold(item: Item) -> Result<LapsingHold, StoreError> {
    let entry: ExpiryEntry = serde_dynamo::from_item(item).map_err(bug)?;
    let sku = entry
        .pk
        .strip_prefix(STREAM_PREFIX)
        .and_then(|stream| StreamId::parse(stream).ok())
        .ok_or_else(|| bug(format!("unexpected key {} in the index", entry.pk)))?;
    Ok(LapsingHold {
        stream: sku,
        seq: entry.sk,
        reservation_id: entry.reservation_id,
        expires_at: entry.expires_at,
    })
}

#[async_trait]
impl Retirement for DynamoStore {
    /// Up to 100 events a request: one transaction of conditional updates per chunk (each
    /// authorized as its `UpdateItem`), a chunk whose condition failed (an event deleted
    /// already) done again one update at a time.
    async fn retire_events(
        &self,
        sku: &StreamId,
        seqs: RangeInclusive<Version>,
        delete_at: Timestamp,
    ) -> Result<(), StoreError> {
        let ttl = (delete_at.millis().max(0) / 1000 + 1).to_string();
        let pk = Self::stream_pk(sku);
        let seqs: Vec<Version> = seqs.collect();
        let chunks: Vec<Vec<Version>> = seqs
            .chunks(MAX_TRANSACTION_ITEMS)
            .map(<[Version]>::to_vec)
            .collect();
        let (pk, ttl) = (&pk, &ttl);
        let chunks = chunks
            .into_iter()
            .map(|chunk| async move { self.retire_chunk(pk, &chunk, ttl).await });
        futures::stream::iter(chunks)
            .buffer_unordered(RETIRE_CONCURRENCY)
            .collect::<Vec<Result<(), StoreError>>>()
            .await
            .into_iter()
            .collect()
    }
}

impl DynamoStore {
    /// Sends `items` as one `TransactWriteItems` with a fresh client token: the SDK re-sends the
    /// same token when it retries, so a retry is idempotent.
    async fn send_transaction(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput,
        SdkError<TransactWriteItemsError, aws_sdk_dynamodb::config::http::HttpResponse>,
    > {
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .client_request_token(uuid::Uuid::new_v4().to_string())
            .send()
            .await
    }

    /// The update giving event `seq` of stream `pk` its time to live, if it is still there
    /// (a deleted event is never resurrected).
    fn retirement(&self, pk: &str, seq: Version, ttl: &str) -> Result<Update, StoreError> {
        Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key_of(pk.to_owned(), seq)))
            .update_expression("SET #ttl = :ttl")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":ttl", AttributeValue::N(ttl.to_owned()))
            .build()
            .map_err(bug)
    }

    /// Retires `seqs` (at most 100) in one transaction; if one of them is gone, one by one.
    async fn retire_chunk(&self, pk: &str, seqs: &[Version], ttl: &str) -> Result<(), StoreError> {
        if let [seq] = seqs {
            return self.retire_one(pk, *seq, ttl).await;
        }
        let items = seqs
            .iter()
            .map(|seq| {
                let update = self.retirement(pk, *seq, ttl)?;
                Ok(TransactWriteItem::builder().update(update).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let result = self.send_transaction(items).await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if err.as_service_error().is_some_and(|err| {
                    matches!(
                        err,
                        TransactWriteItemsError::TransactionCanceledException(cancelled)
                            if cancelled.cancellation_reasons().iter().any(|reason| {
                                reason.code() == Some("ConditionalCheckFailed")
                            })
                    )
                }) =>
            {
                for seq in seqs {
                    self.retire_one(pk, *seq, ttl).await?;
                }
                Ok(())
            }
            Err(err) => Err(unavailable(err)),
        }
    }

    /// Retires event `seq` alone; one already deleted needs nothing.
    async fn retire_one(&self, pk: &str, seq: Version, ttl: &str) -> Result<(), StoreError> {
        let update = self.retirement(pk, seq, ttl)?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(update.key))
            .set_update_expression(Some(update.update_expression))
            .set_condition_expression(update.condition_expression)
            .set_expression_attribute_names(update.expression_attribute_names)
            .set_expression_attribute_values(update.expression_attribute_values)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(UpdateItemError::is_conditional_check_failed_exception) =>
            {
                Ok(())
            }
            Err(err) => Err(unavailable(err)),
        }
    }
}

#[async_trait]
impl ParkedIndex for DynamoStore {
    async fn parked_commands(&self) -> Result<Vec<ParkedEntry>, StoreError> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(PARKED_INDEX)
            .key_condition_expression("#list = :list")
            .expression_attribute_names("#list", PARKED_LIST_ATTRIBUTE)
            .expression_attribute_values(":list", AttributeValue::S(PARKED_LIST.to_owned()))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(unavailable)?;
        let mut parked = Vec::with_capacity(items.len());
        for item in items {
            let stored: RecordItem = serde_dynamo::from_item(item).map_err(bug)?;
            match stored.into_parked() {
                Ok(Some(entry)) => parked.push(entry),
                // Applied since it was listed: the index lags the table.
                Ok(None) => {}
                Err(pk) => return Err(bug(format!("unexpected key {pk} in the parked index"))),
            }
        }
        Ok(parked)
    }
}

#[async_trait]
impl CommandHistory for DynamoStore {
    async fn commands_since(
        &self,
        since: Timestamp,
    ) -> Result<Vec<(CommandId, CommandRecord)>, StoreError> {
        // An operator's read, paid per item of the table; strongly consistent, so a command
        // accepted just before is listed.
        let items = self
            .scan_prefixed(COMMAND_PREFIX, |scan| scan.consistent_read(true))
            .await?;
        let mut commands = Vec::new();
        for item in items {
            let stored: RecordItem = serde_dynamo::from_item(item).map_err(bug)?;
            let id = stored
                .pk
                .strip_prefix(COMMAND_PREFIX)
                .and_then(|id| CommandId::parse(id).ok());
            match (id, stored.record) {
                (Some(id), Record::Command(record)) => {
                    if record.accepted_since(since) {
                        commands.push((id, record));
                    }
                }
                _ => {
                    return Err(bug(format!(
                        "unexpected item {} among the command records",
                        stored.pk
                    )))
                }
            }
        }
        Ok(commands)
    }
}

impl DynamoStore {
    /// Every item whose partition key starts with `prefix`: a scan of the whole table, all
    /// pages, the request shaped by `shape` (a projection, a consistent read). For tools; the
    /// service never scans.
    async fn scan_prefixed(
        &self,
        prefix: &str,
        shape: impl FnOnce(ScanFluentBuilder) -> ScanFluentBuilder,
    ) -> Result<Vec<Item>, StoreError> {
        let scan = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(#pk, :prefix)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned()));
        shape(scan)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(unavailable)
    }

    /// Every SKU with a snapshot: a scan of the whole table for `snap#` items, all pages. For
    /// tools (the audit); the service never scans.
    pub async fn snapshot_skus(&self) -> Result<Vec<StreamId>, StoreError> {
        let items = self
            .scan_prefixed(SNAPSHOT_PREFIX, |scan| scan.projection_expression("#pk"))
            .await?;
        let mut skus: Vec<StreamId> = items
            .iter()
            .filter_map(|item| match item.get(PK) {
                Some(AttributeValue::S(pk)) => {
                    StreamId::parse(pk.strip_prefix(SNAPSHOT_PREFIX)?).ok()
                }
                _ => None,
            })
            .collect();
        skus.sort();
        skus.dedup();
        Ok(skus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClientId, CommandId, IdempotencyKey};

    #[test]
    fn every_partition_key_starts_with_one_of_the_prefixes_iam_grants_by() {
        let sku = Sku::parse("SKU-1").unwrap();
        let stream = StreamId::parse("SKU-1:store-5@2").unwrap();
        let reservation_id = ReservationId::new(stream.clone(), 1, 7);
        let command_id = CommandId::random();
        let records = [
            RecordKey::Hold {
                reservation_id,
                stream: stream.clone(),
            },
            RecordKey::Idempotency {
                client_id: ClientId::parse("storefront").unwrap(),
                key: IdempotencyKey::parse("k").unwrap(),
            },
            RecordKey::Command { command_id },
            RecordKey::CommandOutcome {
                command_id,
                sku: sku.clone(),
            },
            RecordKey::ArchiveMark {
                stream: stream.clone(),
            },
            RecordKey::ExpirySweep,
            RecordKey::Deferred { sku: sku.clone() },
            RecordKey::Locations,
            RecordKey::WholeItem { sku: sku.clone() },
        ];
        let keys = records.iter().map(DynamoStore::record_pk).chain([
            DynamoStore::stream_pk(&stream),
            DynamoStore::snapshot_pk(&stream),
        ]);
        let mut used = std::collections::BTreeSet::new();
        for key in keys {
            let prefix = PARTITION_KEY_PREFIXES
                .iter()
                .find(|prefix| key.starts_with(**prefix))
                .unwrap_or_else(|| panic!("{key} has no known prefix"));
            used.insert(*prefix);
        }
        assert_eq!(
            used.len(),
            PARTITION_KEY_PREFIXES.len(),
            "every prefix is used"
        );
    }
}
