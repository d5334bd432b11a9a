//! Drives the command processor from a Kinesis stream in-process, the way the Lambda event
//! source mapping does in AWS: per shard, batches in order, resuming from the lowest failed
//! sequence number. Used by `inventory dev --endpoint-url` against a local AWS such as moto.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_kinesis::Client;
use command_processor::{handle_records, StreamRecord, NEVER_FAILING_LONG};
use inventory_core::domain::Timestamp;
use inventory_core::Inventory;

/// Records asked for per GetRecords call (the Lambda mapping's batch size).
const BATCH_SIZE: i32 = 100;
/// Pause when a shard has nothing new, or after a failure.
const IDLE: Duration = Duration::from_millis(200);

/// Polls every shard of `stream` forever.
pub async fn poll_stream(inventory: Arc<Inventory>, client: Client, stream: String) {
    let shards = loop {
        match client.list_shards().stream_name(&stream).send().await {
            Ok(listed) => break listed.shards().to_vec(),
            Err(err) => {
                tracing::warn!(error = %DisplayErrorContext(&err), "listing shards failed; retrying");
                tokio::time::sleep(IDLE).await;
            }
        }
    };
    let pollers: Vec<_> = shards
        .into_iter()
        .map(|shard| {
            let poller = ShardPoller {
                inventory: Arc::clone(&inventory),
                client: client.clone(),
                stream: stream.clone(),
                shard_id: shard.shard_id().to_owned(),
            };
            tokio::spawn(poller.run())
        })
        .collect();
    for poller in pollers {
        let _ = poller.await;
    }
}

struct ShardPoller {
    inventory: Arc<Inventory>,
    client: Client,
    stream: String,
    shard_id: String,
}

impl ShardPoller {
    async fn run(self) {
        // From the start of the stream: whatever was already applied is a duplicate and skipped.
        let mut position: (ShardIteratorType, Option<String>) =
            (ShardIteratorType::TrimHorizon, None);
        loop {
            let Some(mut iterator) = self.iterator(&position).await else {
                tokio::time::sleep(IDLE).await;
                continue;
            };
            loop {
                let answer = match self
                    .client
                    .get_records()
                    .shard_iterator(&iterator)
                    .limit(BATCH_SIZE)
                    .send()
                    .await
                {
                    Ok(answer) => answer,
                    Err(err) => {
                        tracing::warn!(error = %DisplayErrorContext(&err), "GetRecords failed");
                        tokio::time::sleep(IDLE).await;
                        break;
                    }
                };
                let records: Vec<StreamRecord<'_>> = answer
                    .records()
                    .iter()
                    .map(|record| StreamRecord {
                        sequence_number: record.sequence_number(),
                        partition_key: record.partition_key().unwrap_or_default(),
                        arrived_at: record
                            .approximate_arrival_timestamp()
                            .and_then(|at| at.to_millis().ok())
                            .map_or(NEVER_FAILING_LONG, Timestamp::from_millis),
                        data: record.data().as_ref(),
                    })
                    .collect();
                if let Some(last) = records.last() {
                    position = (
                        ShardIteratorType::AfterSequenceNumber,
                        Some(last.sequence_number.to_owned()),
                    );
                }
                if let Some(resume) = handle_records(&self.inventory, &records).await {
                    position = (ShardIteratorType::AtSequenceNumber, Some(resume));
                    tokio::time::sleep(IDLE).await;
                    break;
                }
                match answer.next_shard_iterator() {
                    Some(next) => iterator = next.to_owned(),
                    None => return,
                }
                if records.is_empty() {
                    tokio::time::sleep(IDLE).await;
                }
            }
        }
    }

    async fn iterator(
        &self,
        (kind, sequence): &(ShardIteratorType, Option<String>),
    ) -> Option<String> {
        let answer = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(&self.shard_id)
            .shard_iterator_type(kind.clone())
            .set_starting_sequence_number(sequence.clone())
            .send()
            .await;
        match answer {
            Ok(answer) => answer.shard_iterator().map(str::to_owned),
            Err(err) => {
                tracing::warn!(error = %DisplayErrorContext(&err), "GetShardIterator failed");
                None
            }
        }
    }
}
