//! The command queue on a Kinesis stream: one record per command, partition key = SKU, so each
//! SKU's commands stay in order on one shard.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use aws_sdk_kinesis::Client;

use crate::domain::Command;
use crate::limits::MAX_QUEUE_RECORDS_PER_CALL;
use crate::ports::{CommandQueue, QueueError};
use crate::retry::{put_in_chunks, Unput};

/// The Kinesis command queue.
#[derive(Debug, Clone)]
pub struct KinesisQueue {
    client: Client,
    stream: String,
}

impl KinesisQueue {
    /// A queue on `stream` through `client`.
    pub fn new(client: Client, stream: impl Into<String>) -> Self {
        Self {
            client,
            stream: stream.into(),
        }
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The stream's status, as DescribeStreamSummary tells it (an error if it cannot be
    /// described, e.g. it does not exist).
    async fn status(&self) -> Result<StreamStatus, QueueError> {
        let summary = self
            .client
            .describe_stream_summary()
            .stream_name(&self.stream)
            .send()
            .await
            .map_err(|err| {
                QueueError(format!(
                    "stream {}: {}",
                    self.stream,
                    DisplayErrorContext(err)
                ))
            })?;
        summary
            .stream_description_summary()
            .map(|summary| summary.stream_status().clone())
            .ok_or_else(|| QueueError(format!("stream {}: not described", self.stream)))
    }

    /// Checks that the stream exists and is active, without changing anything (a deployed
    /// stack's stream).
    pub async fn verify_stream(&self) -> Result<(), QueueError> {
        match self.status().await? {
            StreamStatus::Active => Ok(()),
            other => Err(QueueError(format!(
                "stream {} is {other:?}, not active",
                self.stream
            ))),
        }
    }

    /// Creates the stream (one shard) unless it exists and waits until it is active; for local
    /// runs and tests. Deployed streams come from the SAM template.
    pub async fn create_stream_if_missing(&self) -> Result<(), QueueError> {
        if self.status().await.is_err() {
            let created = self
                .client
                .create_stream()
                .stream_name(&self.stream)
                .shard_count(1)
                .send()
                .await;
            if let Err(err) = created {
                let exists = err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception());
                if !exists {
                    return Err(QueueError(DisplayErrorContext(err).to_string()));
                }
            }
        }
        for _ in 0..50 {
            if self.status().await? == StreamStatus::Active {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(QueueError(format!(
            "stream {} did not become active",
            self.stream
        )))
    }

    fn entry(command: &Command) -> Result<PutRecordsRequestEntry, QueueError> {
        let data = serde_json::to_vec(command).map_err(|e| QueueError(e.to_string()))?;
        PutRecordsRequestEntry::builder()
            .data(Blob::new(data))
            .partition_key(command.sku.as_str())
            .build()
            .map_err(|e| QueueError(e.to_string()))
    }
}

#[async_trait]
impl CommandQueue for KinesisQueue {
    /// Returns once every record is written. Entries a call could not write (throttling,
    /// internal failures) are retried with backoff; if some still fail, the send fails and the
    /// caller answers 503 (the command record keeps the written ones from taking effect).
    /// One request's commands name distinct SKUs, so retrying some of them never reorders a SKU.
    async fn send(&self, commands: &[Command]) -> Result<(), QueueError> {
        let records = commands
            .iter()
            .map(Self::entry)
            .collect::<Result<Vec<_>, _>>()?;
        put_in_chunks(records, MAX_QUEUE_RECORDS_PER_CALL, |chunk| async move {
            let answer = self
                .client
                .put_records()
                .stream_name(&self.stream)
                .set_records(Some(chunk.clone()))
                .send()
                .await;
            match answer {
                Ok(answer) if answer.failed_record_count().unwrap_or(0) == 0 => Ok(()),
                Ok(answer) => Err(Unput::refused(
                    chunk,
                    answer
                        .records()
                        .iter()
                        .map(|result| result.error_code().map(str::to_owned)),
                )),
                Err(err) => Err(Unput {
                    entries: chunk,
                    reason: DisplayErrorContext(&err).to_string(),
                }),
            }
        })
        .await
        .map_err(|unput| {
            QueueError(format!(
                "{} of {} command records could not be written ({})",
                unput.entries.len(),
                commands.len(),
                unput.reason
            ))
        })
    }
}
