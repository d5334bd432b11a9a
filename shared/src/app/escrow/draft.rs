//! What one decision appends, stream by stream, over the states it was decided on: the events
//! are numbered after each stream's head as read, each stream's state moves on as they are
//! added, and the whole is written as one transaction of conditional appends. An item split
//! into buckets is several streams; a move between them is one event on each.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::domain::buckets::Spare;
use crate::domain::{
    Bucket, Change, ClientId, Event, Layout, Move, MoveId, SkuState, StreamId, Timestamp,
};
use crate::ports::StreamAppend;

#[derive(Debug, Clone)]
struct Stream {
    read: Arc<SkuState>,
    next: SkuState,
    events: Vec<Event>,
}

/// The events one decision appends to an item's streams at one location (its buckets there).
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    /// Bucket 0 of the item at the location: it keeps the layout.
    home: StreamId,
    streams: BTreeMap<StreamId, Stream>,
    /// The client whose request the events recorded now answer (`None`: the service's own).
    actor: Option<ClientId>,
}

impl Draft {
    /// A draft over the states read of the streams of `stream`'s item at its location (bucket
    /// 0's, then any others).
    pub(crate) fn new(
        stream: &StreamId,
        states: impl IntoIterator<Item = (StreamId, Arc<SkuState>)>,
    ) -> Self {
        let streams = states
            .into_iter()
            .map(|(sku, read)| {
                let next = (*read).clone();
                (
                    sku,
                    Stream {
                        read,
                        next,
                        events: Vec::new(),
                    },
                )
            })
            .collect();
        Self {
            home: stream.home(),
            streams,
            actor: None,
        }
    }

    /// From now on, the events recorded answer `actor`'s request (`None`: the service's own).
    pub(crate) fn acting_for(&mut self, actor: Option<ClientId>) {
        self.actor = actor;
    }

    /// The state of `bucket` with what the draft added so far (empty if it was not read).
    pub(crate) fn state(&self, bucket: Bucket) -> SkuState {
        self.streams
            .get(&self.home.in_bucket(bucket))
            .map(|stream| stream.next.clone())
            .unwrap_or_default()
    }

    /// The layout, as bucket 0's state now says.
    pub(crate) fn layout(&self) -> Layout {
        self.streams
            .get(&self.home)
            .map(|stream| stream.next.layout)
            .unwrap_or_default()
    }

    /// The decision time: `clock`, never earlier than any of the streams read.
    pub(crate) fn now(&self, clock: Timestamp) -> Timestamp {
        self.streams
            .values()
            .fold(clock, |now, stream| stream.next.now(now))
    }

    /// What each bucket read has to spare at `now` (never below zero).
    pub(crate) fn spares(&self, now: Timestamp) -> Vec<Spare> {
        self.streams
            .iter()
            .map(|(id, stream)| (id.bucket(), stream.next.available(now).max(0)))
            .collect()
    }

    /// The item as a whole: its buckets' states summed ([`SkuState::summed`]).
    pub(crate) fn item_state(&self) -> SkuState {
        SkuState::summed(self.streams.values().map(|stream| &stream.next))
    }

    /// Each bucket read with its on-hand count and what it has to spare at `now`.
    pub(crate) fn holdings(&self, now: Timestamp) -> Vec<(Bucket, i64, i64)> {
        self.streams
            .iter()
            .map(|(id, stream)| {
                let spare = stream.next.available(now).max(0);
                (id.bucket(), stream.next.on_hand, spare)
            })
            .collect()
    }

    /// Adds `change` to `bucket`'s stream at `now`.
    pub(crate) fn record(&mut self, bucket: Bucket, now: Timestamp, change: Change) {
        let id = self.home.in_bucket(bucket);
        let stream = self.streams.entry(id.clone()).or_insert_with(|| Stream {
            read: Arc::default(),
            next: SkuState::default(),
            events: Vec::new(),
        });
        let mut event = Event {
            // A hold is placed at its owner's request.
            actor: self.actor.clone().or_else(|| change.owner().cloned()),
            figures: None,
            seq: stream.next.version + 1,
            stream: id,
            at: now,
            change,
        };
        stream.next.evolve(&event);
        event.figures = Some(stream.next.figures(event.at));
        stream.events.push(event);
    }

    /// Adds `moves` as one transfer: the same event on every bucket they touch.
    pub(crate) fn transfer(&mut self, now: Timestamp, moves: Vec<Move>) {
        if moves.is_empty() {
            return;
        }
        let mut buckets: Vec<Bucket> = moves.iter().flat_map(|m| [m.from, m.to]).collect();
        buckets.sort();
        buckets.dedup();
        let change = Change::StockMoved {
            move_id: MoveId(fastrand::u64(..)),
            moves,
        };
        for bucket in buckets {
            self.record(bucket, now, change.clone());
        }
    }

    /// Events added, all streams together.
    pub(crate) fn event_count(&self) -> usize {
        self.streams
            .values()
            .map(|stream| stream.events.len())
            .sum()
    }

    /// The appends to write: one per stream that has events, each after the head it was read at.
    pub(crate) fn appends(&self) -> Vec<StreamAppend> {
        self.streams
            .iter()
            .filter(|(_, stream)| !stream.events.is_empty())
            .map(|(id, stream)| StreamAppend {
                stream: id.clone(),
                expected: stream.read.version,
                events: stream.events.clone(),
            })
            .collect()
    }

    /// Each written stream's state as read and the events added to it, to move the cache on.
    pub(crate) fn written(&self) -> impl Iterator<Item = (&SkuState, &[Event])> {
        self.streams
            .values()
            .filter(|stream| !stream.events.is_empty())
            .map(|stream| (stream.read.as_ref(), stream.events.as_slice()))
    }
}
