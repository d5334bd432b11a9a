//! Drives a reaction (the snapshotter, the archiver) from the events table's stream in-process,
//! the way its Lambda event source mapping does in AWS: per shard, batches in order, a child
//! shard only once its parent is read to the end, resuming from the sequence number the reaction
//! names when it could not handle a SKU. Each reaction runs its own poller with its own
//! iterators, like two event source mappings on the same stream. Used by
//! `inventory dev --endpoint-url` against a local AWS such as moto.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodbstreams::error::DisplayErrorContext;
use aws_sdk_dynamodbstreams::operation::get_records::GetRecordsOutput;
use aws_sdk_dynamodbstreams::types::{Record, Shard, ShardIteratorType};
use aws_sdk_dynamodbstreams::Client;
use inventory_core::aws::stream::delivered_from_sdk;
use inventory_core::feed::{react_to_batch, Delivered, Reaction};
use tokio::task::JoinSet;

/// Records asked for per GetRecords call (the Lambda mapping's default batch size).
const BATCH_SIZE: i32 = 100;
/// Pause when a shard has nothing new, or after a failure.
const IDLE: Duration = Duration::from_millis(200);
/// How often the stream is described again to pick up new shards.
const SHARD_REFRESH: Duration = Duration::from_secs(10);

/// The stream of `table` (its `LatestStreamArn`), or why there is none.
pub async fn latest_stream_arn(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let described = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|err| format!("describing table {table}: {}", DisplayErrorContext(err)))?;
    described
        .table()
        .and_then(|t| t.latest_stream_arn())
        .map(str::to_owned)
        .ok_or_else(|| {
            format!(
                "table {table} has no stream: the reactions need one (NEW_AND_OLD_IMAGES); \
                 use a table created by `inventory init` or `inventory dev`"
            )
            .into()
        })
}

/// Delivers the stream at `stream_arn` to `reaction` forever, every shard, parents first.
pub async fn poll_table_stream(
    client: Client,
    stream_arn: String,
    name: &'static str,
    reaction: Arc<dyn Reaction>,
) {
    let mut started: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut running: JoinSet<()> = JoinSet::new();
    let mut running_shards: HashMap<tokio::task::Id, String> = HashMap::new();
    loop {
        match describe_shards(&client, &stream_arn).await {
            Ok(shards) => {
                let listed: HashSet<&str> = shards.iter().filter_map(Shard::shard_id).collect();
                for shard in &shards {
                    let Some(shard_id) = shard.shard_id() else {
                        continue;
                    };
                    // A child waits until its parent is read to the end (unless the parent is no
                    // longer listed, i.e. trimmed), so each SKU's changes arrive in order.
                    let parent_pending = shard.parent_shard_id().is_some_and(|parent| {
                        listed.contains(parent) && !finished.contains(parent)
                    });
                    if parent_pending || started.contains(shard_id) {
                        continue;
                    }
                    started.insert(shard_id.to_owned());
                    tracing::debug!(reaction = name, shard = shard_id, "reading shard");
                    let poller = ShardPoller {
                        client: client.clone(),
                        stream_arn: stream_arn.clone(),
                        shard_id: shard_id.to_owned(),
                        name,
                        reaction: Arc::clone(&reaction),
                    };
                    let task = running.spawn(poller.run());
                    running_shards.insert(task.id(), shard_id.to_owned());
                }
            }
            Err(err) => {
                tracing::warn!(reaction = name, error = %err, "describing the table's stream failed");
            }
        }
        // Describe again after a while, or as soon as a shard is done (its children may start).
        tokio::select! {
            () = tokio::time::sleep(SHARD_REFRESH) => {}
            Some(done) = running.join_next_with_id() => {
                let id = match &done {
                    Ok((id, ())) => *id,
                    Err(err) => {
                        tracing::error!(reaction = name, error = %err, "a shard poller stopped");
                        err.id()
                    }
                };
                if let Some(shard_id) = running_shards.remove(&id) {
                    finished.insert(shard_id);
                }
            }
        }
    }
}

/// Every shard of the stream, following DescribeStream's pagination.
async fn describe_shards(client: &Client, stream_arn: &str) -> Result<Vec<Shard>, String> {
    let mut shards = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let page = client
            .describe_stream()
            .stream_arn(stream_arn)
            .set_exclusive_start_shard_id(start.take())
            .send()
            .await
            .map_err(|err| DisplayErrorContext(err).to_string())?;
        let Some(description) = page.stream_description() else {
            return Ok(shards);
        };
        shards.extend(description.shards().iter().cloned());
        match description.last_evaluated_shard_id() {
            Some(last) => start = Some(last.to_owned()),
            None => return Ok(shards),
        }
    }
}

/// Where to (re)start reading a shard.
#[derive(Debug, Clone)]
enum Position {
    TrimHorizon,
    At(String),
    After(String),
}

/// Why a read of the shard (or getting an iterator for it) gave no records.
enum NoRead {
    /// The shard is gone (trimmed, or the stream disabled): nothing more to read.
    Gone,
    /// Try again later.
    Retry,
}

/// Whether two reads from one position found the same records (by sequence number and event
/// id, which a stream assigns once).
fn same_records(first: &[Record], second: &[Record]) -> bool {
    let key = |record: &Record| {
        (
            record.event_id().map(str::to_owned),
            record
                .dynamodb()
                .and_then(|change| change.sequence_number())
                .map(str::to_owned),
        )
    };
    first.len() == second.len() && first.iter().map(key).eq(second.iter().map(key))
}

struct ShardPoller {
    client: Client,
    stream_arn: String,
    shard_id: String,
    name: &'static str,
    reaction: Arc<dyn Reaction>,
}

impl ShardPoller {
    /// Reads the shard until it is closed and read to the end (or gone).
    ///
    /// Each GetRecords call uses a fresh iterator from the position reached, rather than the
    /// `NextShardIterator` returned (that one only tells whether the shard is closed), and a
    /// batch is delivered only if a second read from the same position finds the same records.
    /// Against DynamoDB that costs calls and changes nothing. moto, though, shows phantoms: a
    /// cancelled transaction's first puts are recorded in the stream and then undone by
    /// restoring a copy of the whole table, stream included, which gives their sequence
    /// numbers to later writes; a reader that caught them (an iterator taken before the restore
    /// keeps reading the discarded copy) would deliver events that never happened.
    async fn run(self) {
        // From the start of the shard: whatever was already handled is handled again, which
        // the reactions take in their stride.
        let mut position = Position::TrimHorizon;
        loop {
            let answer = match self.read(&mut position, BATCH_SIZE).await {
                Ok(answer) => answer,
                Err(NoRead::Gone) => return,
                Err(NoRead::Retry) => {
                    tokio::time::sleep(IDLE).await;
                    continue;
                }
            };
            let records = answer.records();
            if !records.is_empty() {
                let limit = i32::try_from(records.len()).unwrap_or(BATCH_SIZE);
                match self.read(&mut position.clone(), limit).await {
                    Ok(again) if same_records(records, again.records()) => {}
                    Err(NoRead::Gone) => return,
                    _ => {
                        tracing::debug!(reaction = self.name, shard = %self.shard_id,
                            "the stream changed under a second read; reading again");
                        tokio::time::sleep(IDLE).await;
                        continue;
                    }
                }
            }
            let batch: Vec<Delivered> = records.iter().map(delivered_from_sdk).collect();
            if let Some(last) = batch.last() {
                position = Position::After(last.sequence_number.clone());
            }
            if batch.iter().any(|delivered| delivered.change.is_some()) {
                let retry_from = react_to_batch(self.reaction.as_ref(), &batch).await;
                tracing::debug!(reaction = self.name, records = batch.len(),
                    retry_from = ?retry_from, "stream batch");
                if let Some(resume) = retry_from {
                    position = Position::At(resume);
                    tokio::time::sleep(IDLE).await;
                    continue;
                }
            }
            if answer.next_shard_iterator().is_none() {
                tracing::info!(reaction = self.name, shard = %self.shard_id,
                    "shard closed and read to the end");
                return;
            }
            if batch.is_empty() {
                tokio::time::sleep(IDLE).await;
            }
        }
    }

    /// Up to `limit` records from `position`, with a fresh iterator.
    async fn read(&self, position: &mut Position, limit: i32) -> Result<GetRecordsOutput, NoRead> {
        let iterator = self.iterator(position).await?;
        match self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(limit)
            .send()
            .await
        {
            Ok(answer) => Ok(answer),
            Err(err) => {
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception())
                {
                    tracing::info!(reaction = self.name, shard = %self.shard_id, "the shard is gone");
                    return Err(NoRead::Gone);
                }
                tracing::warn!(reaction = self.name, error = %DisplayErrorContext(&err),
                    "GetRecords failed");
                Err(NoRead::Retry)
            }
        }
    }

    async fn iterator(&self, position: &mut Position) -> Result<String, NoRead> {
        let (kind, sequence) = match position {
            Position::TrimHorizon => (ShardIteratorType::TrimHorizon, None),
            Position::At(sequence) => (ShardIteratorType::AtSequenceNumber, Some(sequence)),
            Position::After(sequence) => (ShardIteratorType::AfterSequenceNumber, Some(sequence)),
        };
        let answer = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(&self.shard_id)
            .shard_iterator_type(kind)
            .set_sequence_number(sequence.cloned())
            .send()
            .await;
        match answer {
            Ok(answer) => match answer.shard_iterator() {
                Some(iterator) => Ok(iterator.to_owned()),
                None => {
                    tracing::warn!(reaction = self.name, "GetShardIterator gave no iterator");
                    Err(NoRead::Retry)
                }
            },
            Err(err) => {
                let service = err.as_service_error();
                if service.is_some_and(|e| e.is_resource_not_found_exception()) {
                    tracing::info!(reaction = self.name, shard = %self.shard_id, "the shard is gone");
                    return Err(NoRead::Gone);
                }
                if service.is_some_and(|e| e.is_trimmed_data_access_exception()) {
                    // Past the stream's retention: read from the oldest record still there.
                    tracing::warn!(reaction = self.name, shard = %self.shard_id, position = ?position,
                        "the position was trimmed from the stream; reading from the oldest record");
                    *position = Position::TrimHorizon;
                    return Err(NoRead::Retry);
                }
                tracing::warn!(reaction = self.name, error = %DisplayErrorContext(&err),
                    "GetShardIterator failed");
                Err(NoRead::Retry)
            }
        }
    }
}
