//! The change feed of the event store (DynamoDB Streams in production, the memory store's feed
//! locally) as the reactions see it: events appended and events deleted. Everything else the
//! table holds (records, snapshots, marks) is not part of the feed.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use async_trait::async_trait;

use crate::domain::{Event, StreamId};
use crate::ports::ParkedEntry;

/// One change of a SKU's stream, or of what the processor set aside for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedChange {
    /// The event was appended.
    Appended(Event),
    /// The event was deleted (its time to live ran out after it was archived); the change
    /// carries the deleted event.
    Removed(Event),
    /// A command was parked for an operator (its outcome record was written parked); the
    /// snapshotter tells it, the other reactions let it pass.
    Parked(ParkedEntry),
}

impl FeedChange {
    /// The event appended or deleted (none for a parked command).
    pub fn event(&self) -> Option<&Event> {
        match self {
            FeedChange::Appended(event) | FeedChange::Removed(event) => Some(event),
            FeedChange::Parked(_) => None,
        }
    }

    /// The stream the change is of (for a parked command, the one it is filed under).
    pub fn stream(&self) -> StreamId {
        match self {
            FeedChange::Appended(event) | FeedChange::Removed(event) => event.stream.clone(),
            FeedChange::Parked(parked) => StreamId::of(&parked.sku),
        }
    }
}

/// A reaction to the feed. Deliveries are at least once, batches may repeat, overlap or arrive
/// late; a reaction is correct whatever it is given, and says which SKUs it could not handle so
/// their changes are delivered again.
#[async_trait]
pub trait Reaction: Send + Sync + 'static {
    /// Reacts to `changes` (in feed order); returns the SKUs to deliver again.
    async fn react(&self, changes: &[FeedChange]) -> BTreeSet<StreamId>;
}

/// A delivered change and its position in the feed (`None`: a record that is not an event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The record's sequence number in its shard.
    pub sequence_number: String,
    /// The change it carries.
    pub change: Option<FeedChange>,
}

/// Runs `reaction` on a delivered batch; returns the sequence number to resume the shard from
/// (the first record of a SKU that failed), if any.
pub async fn react_to_batch(reaction: &dyn Reaction, batch: &[Delivered]) -> Option<String> {
    let changes: Vec<FeedChange> = batch.iter().filter_map(|d| d.change.clone()).collect();
    let failed = reaction.react(&changes).await;
    batch
        .iter()
        .filter(|d| {
            d.change
                .as_ref()
                .is_some_and(|change| failed.contains(&change.stream()))
        })
        .map(|d| d.sequence_number.as_str())
        .min_by(|a, b| compare_sequence_numbers(a, b))
        .map(str::to_owned)
}

/// Stream sequence numbers (Kinesis, DynamoDB Streams) are decimal strings of up to 128 bits:
/// compare by length, then text.
pub fn compare_sequence_numbers(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert_eq!(compare_sequence_numbers("9", "10"), Ordering::Less);
        assert_eq!(compare_sequence_numbers("200", "199"), Ordering::Greater);
        assert_eq!(compare_sequence_numbers("42", "42"), Ordering::Equal);
    }
}
