//! The table's change feed (DynamoDB Streams) as a [`ShardSource`]: each reaction (the
//! snapshotter, the archiver) polls it with its own iterators, like two event source mappings
//! on one stream, and gets each batch through the same `react_to_batch` as its Lambda.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodbstreams::error::DisplayErrorContext;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use aws_sdk_dynamodbstreams::Client;
use inventory_core::aws::feed::delivered_from_sdk;
use inventory_core::feed::{react_to_batch, Delivered, Reaction};

use crate::shard_poller::{NoRead, Page, Position, ShardInfo, ShardSource};

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

/// The change feed at `stream_arn`, delivered to `reaction`.
pub struct FeedSource {
    /// The DynamoDB Streams client.
    pub client: Client,
    /// The table's stream.
    pub stream_arn: String,
    /// The reaction's name, in logs.
    pub name: &'static str,
    /// What each batch is delivered to.
    pub reaction: Arc<dyn Reaction>,
}

impl std::fmt::Debug for FeedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedSource")
            .field("stream_arn", &self.stream_arn)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl ShardSource for FeedSource {
    type Record = Record;

    fn name(&self) -> &'static str {
        self.name
    }

    async fn shards(&self) -> Result<Vec<ShardInfo>, String> {
        let mut shards = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_stream()
                .stream_arn(&self.stream_arn)
                .set_exclusive_start_shard_id(start.take())
                .send()
                .await
                .map_err(|err| DisplayErrorContext(err).to_string())?;
            let Some(description) = page.stream_description() else {
                return Ok(shards);
            };
            shards.extend(description.shards().iter().filter_map(|shard| {
                Some(ShardInfo {
                    id: shard.shard_id()?.to_owned(),
                    parent: shard.parent_shard_id().map(str::to_owned),
                })
            }));
            match description.last_evaluated_shard_id() {
                Some(last) => start = Some(last.to_owned()),
                None => return Ok(shards),
            }
        }
    }

    async fn read(
        &self,
        shard: &str,
        position: &Position,
        limit: usize,
    ) -> Result<Page<Record>, NoRead> {
        let (kind, sequence) = position.iterator();
        let iterator = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::from(kind))
            .set_sequence_number(sequence.map(str::to_owned))
            .send()
            .await
            .map_err(|err| {
                let service = err.as_service_error();
                if service.is_some_and(|e| e.is_resource_not_found_exception()) {
                    NoRead::Gone
                } else if service.is_some_and(|e| e.is_trimmed_data_access_exception()) {
                    NoRead::Trimmed
                } else {
                    NoRead::Failed(format!("GetShardIterator: {}", DisplayErrorContext(&err)))
                }
            })?
            .shard_iterator
            .ok_or_else(|| NoRead::Failed("GetShardIterator gave no iterator".to_owned()))?;
        let answer = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|err| {
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception())
                {
                    NoRead::Gone
                } else {
                    NoRead::Failed(format!("GetRecords: {}", DisplayErrorContext(&err)))
                }
            })?;
        Ok(Page {
            closed: answer.next_shard_iterator().is_none(),
            records: answer.records.unwrap_or_default(),
        })
    }

    fn sequence_number(record: &Record) -> String {
        record
            .dynamodb()
            .and_then(|change| change.sequence_number())
            .unwrap_or_default()
            .to_owned()
    }

    /// Against DynamoDB a second read costs calls and changes nothing. moto, though, shows
    /// phantoms: a cancelled transaction's first puts are recorded in the stream and then
    /// undone by restoring a copy of the whole table, stream included, which gives their
    /// sequence numbers to later writes; a reader that caught them would deliver events that
    /// never happened. A second read from the same position tells them apart.
    fn verifies_reads(&self) -> bool {
        true
    }

    /// Same sequence numbers and same event ids (a stream gives an event id once; a phantom's
    /// sequence number is given again to another write).
    fn same_records(first: &[Record], second: &[Record]) -> bool {
        let key = |record: &Record| {
            (
                record.event_id().map(str::to_owned),
                Self::sequence_number(record),
            )
        };
        first.len() == second.len() && first.iter().map(key).eq(second.iter().map(key))
    }

    async fn deliver(&self, records: &[Record]) -> Option<String> {
        let batch: Vec<Delivered> = records.iter().map(delivered_from_sdk).collect();
        if !batch.iter().any(|delivered| delivered.change.is_some()) {
            return None;
        }
        let retry_from = react_to_batch(self.reaction.as_ref(), &batch).await;
        tracing::debug!(
            reaction = self.name,
            records = batch.len(),
            ?retry_from,
            "feed batch"
        );
        retry_from
    }
}
