//! Kinesis batches: decode each record into a command, apply the batch, and say the sequence
//! number to resume from when a SKU failed transiently. Used by the Lambda handler and by the
//! local poller of `inventory dev --endpoint-url`.

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::streams::KinesisEventResponse;
use inventory_core::domain::{Command, CommandId, Sku};
use inventory_core::feed::compare_sequence_numbers;
use inventory_core::Inventory;
use serde::Deserialize;

use crate::process_batch;

/// One record as the stream delivered it.
#[derive(Debug, Clone)]
pub struct StreamRecord<'a> {
    /// Its position in the shard.
    pub sequence_number: &'a str,
    /// Its partition key (the SKU, for records we wrote).
    pub partition_key: &'a str,
    /// Its payload.
    pub data: &'a [u8],
}

/// The least a record must name for its rejection to be recorded: a command id and a SKU.
#[derive(Deserialize)]
struct Named {
    id: String,
    sku: String,
}

/// The Lambda handler: the batch's records, then the `batchItemFailures` answer.
pub async fn handle_kinesis_event(
    inventory: &Inventory,
    event: KinesisEvent,
) -> KinesisEventResponse {
    let records: Vec<StreamRecord<'_>> = event
        .records
        .iter()
        .map(|record| StreamRecord {
            sequence_number: &record.kinesis.sequence_number,
            partition_key: &record.kinesis.partition_key,
            data: &record.kinesis.data.0,
        })
        .collect();
    let mut response = KinesisEventResponse::default();
    if let Some(sequence_number) = handle_records(inventory, &records).await {
        response.add_failure(sequence_number);
    }
    response
}

/// Handles records in shard order; returns the sequence number to resume from, if any.
///
/// Records that are not commands never block the shard: one that names a command id and SKU is
/// recorded as rejected (`malformed_command`), anything else is logged and skipped. A SKU that
/// fails transiently makes the answer name its first record, so the shard resumes from the
/// lowest failed sequence number and nothing after it is lost.
pub async fn handle_records(inventory: &Inventory, records: &[StreamRecord<'_>]) -> Option<String> {
    let mut commands = Vec::with_capacity(records.len());
    let mut sequence_numbers = Vec::with_capacity(records.len());
    let mut failed_at: Option<&str> = None;
    for record in records {
        match serde_json::from_slice::<Command>(record.data) {
            Ok(command) => {
                commands.push(command);
                sequence_numbers.push(record.sequence_number);
            }
            Err(err) => {
                if !reject_malformed(inventory, record, &err).await && failed_at.is_none() {
                    failed_at = Some(record.sequence_number);
                }
            }
        }
    }
    let outcome = process_batch(inventory, &commands).await;
    if records.is_empty() {
        return None;
    }
    tracing::info!(
        records = records.len(),
        applied = outcome.report.applied,
        rejected = outcome.report.rejected,
        duplicates = outcome.report.duplicates,
        dropped = outcome.report.dropped,
        "batch processed"
    );
    let retry_from = outcome
        .retry_from
        .map(|position| sequence_numbers[position]);
    [failed_at, retry_from]
        .into_iter()
        .flatten()
        .min_by(|a, b| compare_sequence_numbers(a, b))
        .map(str::to_owned)
}

/// Records a malformed record's rejection where it names enough; `false` if recording failed
/// transiently (the record is then retried).
async fn reject_malformed(
    inventory: &Inventory,
    record: &StreamRecord<'_>,
    err: &serde_json::Error,
) -> bool {
    let sequence_number = record.sequence_number;
    let named = serde_json::from_slice::<Named>(record.data)
        .ok()
        .and_then(|named| {
            Some((
                CommandId::parse(&named.id).ok()?,
                Sku::parse(&named.sku).ok()?,
            ))
        });
    let Some((id, sku)) = named else {
        tracing::error!(%sequence_number, partition_key = record.partition_key,
            error = %err, "skipping a record that is not a command");
        return true;
    };
    tracing::error!(%sequence_number, command_id = %id, sku = %sku, error = %err,
        "rejecting a malformed command");
    match inventory.reject_malformed(&sku, id).await {
        Ok(()) => true,
        Err(failure) => {
            tracing::warn!(%sequence_number, error = %failure, "could not record the rejection");
            false
        }
    }
}
