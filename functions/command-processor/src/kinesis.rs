//! Kinesis batches: decode each record into a command, apply the batch, and say the sequence
//! number to resume from when a SKU failed transiently. Used by the Lambda handler and by the
//! local poller of `inventory dev --endpoint-url`.

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::streams::KinesisEventResponse;
use inventory_core::domain::{Command, CommandId, Sku, Timestamp};
use inventory_core::feed::compare_sequence_numbers;
use inventory_core::limits::DEADLINE_MARGIN;
use inventory_core::ports::ParkReason;
use inventory_core::Inventory;
use serde::Deserialize;
use tokio::time::Instant;

use crate::{process_deliveries, Delivery};

/// One record as the stream delivered it.
#[derive(Debug, Clone)]
pub struct QueueRecord<'a> {
    /// Its position in the shard.
    pub sequence_number: &'a str,
    /// Its partition key (the SKU, for records we wrote).
    pub partition_key: &'a str,
    /// When it arrived on the stream.
    pub arrived_at: Timestamp,
    /// Its payload.
    pub data: &'a [u8],
}

/// The least a record must name to be filed under its own command id and SKU.
#[derive(Deserialize)]
struct Named {
    id: String,
    sku: String,
}

/// Where a record that names no command id and SKU is filed when parked, if its partition key
/// is not a SKU either.
const UNFILED_SKU: &str = "_unfiled";

/// The Lambda handler: the batch's records, then the `batchItemFailures` answer.
///
/// `deadline` is the invocation's ([`lambda_runtime::Context::deadline`], in milliseconds since
/// the epoch): the SKUs not done [`DEADLINE_MARGIN`] before it are answered as failures, so a
/// slow store makes the batch resume from them rather than time the function out.
pub async fn handle_kinesis_event(
    inventory: &Inventory,
    event: KinesisEvent,
    deadline: Option<u64>,
) -> KinesisEventResponse {
    let records: Vec<QueueRecord<'_>> = event
        .records
        .iter()
        .map(|record| QueueRecord {
            sequence_number: &record.kinesis.sequence_number,
            partition_key: &record.kinesis.partition_key,
            arrived_at: Timestamp::from_millis(
                record
                    .kinesis
                    .approximate_arrival_timestamp
                    .timestamp_millis(),
            ),
            data: &record.kinesis.data.0,
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let deadline = deadline
        .and_then(|millis| time_left(millis, now))
        .map(|left| Instant::now() + left);
    let mut response = KinesisEventResponse::default();
    if let Some(sequence_number) = handle_records(inventory, &records, deadline).await {
        response.add_failure(sequence_number);
    }
    response
}

/// How long the batch may take from `now` (since the epoch) for an invocation whose deadline is
/// `deadline_ms` (since the epoch): until [`DEADLINE_MARGIN`] before it, or half the time left
/// when less is left. `None` for a deadline already past as the invocation starts, which no
/// Lambda gives (`cargo lambda watch` sends 600,000, a moment of 1970): the batch then runs
/// without one, as the function's own timeout still bounds it.
fn time_left(deadline_ms: u64, now: std::time::Duration) -> Option<std::time::Duration> {
    let left = std::time::Duration::from_millis(deadline_ms).checked_sub(now)?;
    if left.is_zero() {
        return None;
    }
    Some(left - DEADLINE_MARGIN.min(left / 2))
}

/// Handles records in shard order; returns the sequence number to resume from, if any.
///
/// A record that is not a command this version can read never blocks the shard: it is parked
/// (`unknown_shape`) with its bytes, filed under the command id and SKU it names, else under an
/// id derived from its bytes. A SKU that fails transiently makes the answer name its first
/// record to deliver again, so the shard resumes from the lowest failed sequence number and
/// nothing after it is lost.
pub async fn handle_records(
    inventory: &Inventory,
    records: &[QueueRecord<'_>],
    deadline: Option<Instant>,
) -> Option<String> {
    let mut deliveries = Vec::with_capacity(records.len());
    let mut sequence_numbers = Vec::with_capacity(records.len());
    let mut failed_at: Option<&str> = None;
    for record in records {
        match serde_json::from_slice::<Command>(record.data) {
            Ok(command) => {
                deliveries.push(Delivery {
                    command,
                    arrived_at: record.arrived_at,
                });
                sequence_numbers.push(record.sequence_number);
            }
            Err(err) => {
                if !park_unknown_shape(inventory, record, &err).await && failed_at.is_none() {
                    failed_at = Some(record.sequence_number);
                }
            }
        }
    }
    let outcome = process_deliveries(inventory, &deliveries, deadline).await;
    if records.is_empty() {
        return None;
    }
    tracing::info!(
        records = records.len(),
        applied = outcome.report.applied,
        rejected = outcome.report.rejected,
        duplicates = outcome.report.duplicates,
        dropped = outcome.report.dropped,
        parked = outcome.report.parked,
        deferred = outcome.report.deferred,
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

/// Parks a record this version cannot read; `false` if parking failed transiently (the record
/// is then delivered again).
async fn park_unknown_shape(
    inventory: &Inventory,
    record: &QueueRecord<'_>,
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
    let (id, sku) = named.unwrap_or_else(|| {
        let sku = Sku::parse(record.partition_key)
            .or_else(|_| Sku::parse(UNFILED_SKU))
            .expect("the unfiled SKU is a SKU");
        (CommandId::for_record(record.data), sku)
    });
    let detail = format!("not a command this version reads: {err}");
    match inventory
        .park(&sku, id, record.data, ParkReason::UnknownShape, &detail)
        .await
    {
        Ok(()) => true,
        Err(failure) => {
            tracing::warn!(%sequence_number, error = %failure, "could not park the record");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_batch_stops_its_margin_before_the_deadline_half_way_when_less_is_left_and_ignores_a_past_one(
    ) {
        let now = Duration::from_millis(1_796_650_000_000);
        let at = |left: Duration| u64::try_from((now + left).as_millis()).unwrap();
        assert_eq!(
            time_left(at(Duration::from_secs(60)), now),
            Some(Duration::from_secs(60) - DEADLINE_MARGIN)
        );
        assert_eq!(
            time_left(at(Duration::from_secs(4)), now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            time_left(600_000, now),
            None,
            "cargo lambda watch's deadline"
        );
        assert_eq!(time_left(at(Duration::ZERO), now), None);
    }
}
