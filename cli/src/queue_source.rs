//! The command stream (Kinesis) as a [`ShardSource`]: batches go to the same `handle_records`
//! as the command processor's Lambda.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::types::{Record, ShardIteratorType};
use aws_sdk_kinesis::Client;
use command_processor::{handle_records, QueueRecord, NEVER_FAILING_LONG};
use inventory_core::domain::Timestamp;
use inventory_core::Inventory;

use crate::shard_poller::{NoRead, Page, Position, ShardInfo, ShardSource};

/// The command stream `stream`, applied by `inventory`.
pub struct QueueSource {
    /// The Kinesis client.
    pub client: Client,
    /// The stream's name.
    pub stream: String,
    /// What applies the commands.
    pub inventory: Arc<Inventory>,
}

#[async_trait]
impl ShardSource for QueueSource {
    type Record = Record;

    fn name(&self) -> &'static str {
        "command-processor"
    }

    async fn shards(&self) -> Result<Vec<ShardInfo>, String> {
        let mut shards = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let request = match next.take() {
                Some(token) => self.client.list_shards().next_token(token),
                None => self.client.list_shards().stream_name(&self.stream),
            };
            let page = request
                .send()
                .await
                .map_err(|err| DisplayErrorContext(err).to_string())?;
            shards.extend(page.shards().iter().map(|shard| ShardInfo {
                id: shard.shard_id().to_owned(),
                parent: shard.parent_shard_id().map(str::to_owned),
            }));
            match page.next_token() {
                Some(token) => next = Some(token.to_owned()),
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
            .stream_name(&self.stream)
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::from(kind))
            .set_starting_sequence_number(sequence.map(str::to_owned))
            .send()
            .await
            .map_err(|err| {
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception())
                {
                    NoRead::Gone
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
            .map_err(|err| NoRead::Failed(format!("GetRecords: {}", DisplayErrorContext(&err))))?;
        Ok(Page {
            closed: answer.next_shard_iterator().is_none(),
            records: answer.records,
        })
    }

    fn sequence_number(record: &Record) -> String {
        record.sequence_number().to_owned()
    }

    async fn deliver(&self, records: &[Record]) -> Option<String> {
        let records: Vec<QueueRecord<'_>> = records
            .iter()
            .map(|record| QueueRecord {
                sequence_number: record.sequence_number(),
                partition_key: record.partition_key().unwrap_or_default(),
                arrived_at: record
                    .approximate_arrival_timestamp()
                    .and_then(|at| at.to_millis().ok())
                    .map_or(NEVER_FAILING_LONG, Timestamp::from_millis),
                data: record.data().as_ref(),
            })
            .collect();
        handle_records(&self.inventory, &records, None).await
    }
}
