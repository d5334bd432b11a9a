//! The events table's stream (DynamoDB Streams) as the change feed: records delivered to a
//! Lambda and records read with the DynamoDB Streams API both become [`Delivered`] changes.
//! Items of event streams (`pk` = `sku#…`) are changes, and so are outcome records written
//! parked (a command set aside for an operator); other records, marks, snapshots and the
//! time-to-live updates of retirement are not part of the feed.

use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};

use super::dynamo::{parked_in_image, PK, STREAM_PREFIX};
use crate::domain::Event;
use crate::feed::{react_to_batch, Delivered, FeedChange, Reaction};
use crate::ports::{Clock, SystemClock};
use crate::telemetry;

/// What a stream record says happened to an item, from its event name and images.
fn change_of(
    event_name: &str,
    new_image: Option<serde_dynamo::Item>,
    old_image: Option<serde_dynamo::Item>,
) -> Option<FeedChange> {
    let is_event = |image: &serde_dynamo::Item| matches!(image.get(PK), Some(serde_dynamo::AttributeValue::S(pk)) if pk.starts_with(STREAM_PREFIX));
    let decode = |image: serde_dynamo::Item| -> Option<Event> {
        if !is_event(&image) {
            return None;
        }
        match serde_dynamo::from_item(image) {
            Ok(event) => Some(event),
            Err(err) => {
                tracing::error!(error = %err, "a stream record's image is not an event");
                None
            }
        }
    };
    match event_name {
        "INSERT" | "MODIFY" if new_image.as_ref().is_some_and(|image| !is_event(image)) => {
            new_image.and_then(parked_in_image).map(FeedChange::Parked)
        }
        "INSERT" => new_image.and_then(decode).map(FeedChange::Appended),
        "REMOVE" => old_image.and_then(decode).map(FeedChange::Removed),
        _ => None,
    }
}

fn non_empty(item: &serde_dynamo::Item) -> Option<serde_dynamo::Item> {
    (!item.is_empty()).then(|| item.clone())
}

/// A record as delivered to a Lambda.
pub fn delivered_from_lambda(record: &EventRecord) -> Delivered {
    Delivered {
        sequence_number: record.change.sequence_number.clone().unwrap_or_default(),
        change: change_of(
            &record.event_name,
            non_empty(&record.change.new_image),
            non_empty(&record.change.old_image),
        ),
    }
}

/// A record as read with the DynamoDB Streams API (the local poller of `inventory dev`).
pub fn delivered_from_sdk(record: &aws_sdk_dynamodbstreams::types::Record) -> Delivered {
    let stream = record.dynamodb();
    let image = |image: Option<
        &std::collections::HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>,
    >| { image.map(|image| serde_dynamo::Item::from(image.clone())) };
    Delivered {
        sequence_number: stream
            .and_then(|s| s.sequence_number())
            .unwrap_or_default()
            .to_owned(),
        change: change_of(
            record.event_name().map_or("", |name| name.as_str()),
            image(stream.and_then(|s| s.new_image())),
            image(stream.and_then(|s| s.old_image())),
        ),
    }
}

/// The Lambda handler of a stream reaction: the batch's records, then the
/// `batchItemFailures` answer naming the first record of any SKU that must be delivered again.
pub async fn handle_stream_event(
    reaction: &dyn Reaction,
    event: StreamEvent,
) -> DynamoDbEventResponse {
    let batch: Vec<Delivered> = event.records.iter().map(delivered_from_lambda).collect();
    let skipped = batch.iter().filter(|d| d.change.is_none()).count();
    let retry_from = react_to_batch(reaction, &batch).await;
    tracing::info!(records = batch.len(), skipped, retry_from = ?retry_from, "stream batch");
    let oldest = batch
        .iter()
        .filter_map(|d| match &d.change {
            Some(FeedChange::Appended(event)) => Some(event.at),
            _ => None,
        })
        .min();
    if let Some(oldest) = oldest {
        telemetry::reacted(oldest, SystemClock.now());
    }
    let mut response = DynamoDbEventResponse::default();
    if let Some(sequence_number) = retry_from {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(sequence_number);
        response.batch_item_failures.push(failure);
    }
    response
}
