//! Notices: what the rest of the shop hears of an item's stream — it sold out, it is back in
//! stock, it runs low, a hold expired, a command was refused, and its figures once per batch.
//! Computed from the fold, event by event, so a notice says exactly which event caused it and
//! the same events always give the same notices (a redelivered batch publishes the same ones).
//!
//! Availability counts holds: a hold placed can sell an item out, and a hold released, expired
//! or lapsed can bring it back, whatever moved it (Saleor's #11637 missed exactly that).

use serde::Serialize;

use crate::limits::MAX_NOTICE_DETAIL;

use super::event::{Change, Event, RejectionCode};
use super::state::SkuState;
use super::stock_states::Reason;
use super::stock_states::Unavailable;
use super::stream::{LocationId, StreamId};
use super::types::{
    BucketCount, CommandId, LowStockThreshold, Quantity, ReservationId, Sku, Timestamp, Version,
};

/// An item's figures as a notice carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StockFigures {
    /// Units in the warehouse (absent for an item split into buckets: see [`StockFigures::item`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_hand: Option<i64>,
    /// Units held by holds that still count (absent for a split item).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved: Option<i64>,
    /// Units sold at checkout (absent for a split item).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed: Option<i64>,
    /// On-hand units not for sale, per state: present only when some are set aside (and
    /// absent for a split item, whose buckets share its figures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<Unavailable>,
    /// Units that can still be promised (never below zero).
    pub available: i64,
    /// The stream's version these figures are at.
    pub version: Version,
}

impl StockFigures {
    /// `state`'s figures at its own clock (the time of its last event).
    pub fn of(state: &SkuState) -> Self {
        let now = state.clock;
        Self {
            on_hand: Some(state.on_hand),
            reserved: Some(state.held(now)),
            committed: Some(state.committed),
            unavailable: (!state.unavailable.is_zero()).then_some(state.unavailable),
            available: state.for_sale(now),
            version: state.version,
        }
    }

    /// The item's figures as the stream `stream` folded into `state` knows them, when it
    /// knows them: a one-bucket item's stream knows them all. A split item's bucket 0 knows what the
    /// item has for sale only while the item sells from it alone (drained, or set back to one
    /// bucket), and never its on-hand, holds or sales, which its other buckets share; its other
    /// buckets know nothing of the item. An item kept at several locations: no one stream
    /// knows it whole, and a location's stream never speaks for the item (see
    /// [`StockFigures::at_location`]).
    pub fn item(stream: &StreamId, state: &SkuState) -> Option<Self> {
        if kept_elsewhere(stream, state) {
            return None;
        }
        Self::at_location(stream, state)
    }

    /// What the item has for sale at the location of `stream` as its stream folded into
    /// `state` knows it: its figure, or, while its buckets share it, what it had when it last
    /// sold from bucket 0 alone (`None`: never known).
    pub fn for_sale_at(stream: &StreamId, state: &SkuState) -> Option<i64> {
        Self::at_location(stream, state)
            .map(|stock| stock.available)
            .or(state.for_sale_alone)
    }

    /// The item's figures at the location of `stream` as its stream folded into `state` knows
    /// them, when it knows them (as [`StockFigures::item`] says, for the location's buckets).
    pub fn at_location(stream: &StreamId, state: &SkuState) -> Option<Self> {
        if !stream.is_home() || !state.layout.sells_alone() {
            return None;
        }
        let figures = Self::of(state);
        if state.layout.widest == BucketCount::ONE {
            return Some(figures);
        }
        Some(Self {
            on_hand: None,
            reserved: None,
            committed: None,
            unavailable: None,
            ..figures
        })
    }
}

/// Whether the item of `stream` is kept at several locations, as the stream folded into `state`
/// knows: every stream at a location other than the default one is of such an item, and the
/// default location's bucket 0 knows the others (its `stocked_at` marks).
pub fn kept_elsewhere(stream: &StreamId, state: &SkuState) -> bool {
    !stream.location().is_default() || !state.locations.is_empty()
}

/// What a notice tells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Notice {
    /// Nothing is left to promise: available reached zero.
    OutOfStock {
        /// The figures after the event.
        stock: StockFigures,
    },
    /// Available left zero, whatever brought units back (a receipt, an adjustment, a release,
    /// an expired or lapsed hold).
    BackInStock {
        /// The figures after the event.
        stock: StockFigures,
    },
    /// Available went below the item's low-stock threshold: it went down across it, or the
    /// admin set a threshold above it. Going back up across it tells nothing, and arms it again.
    LowStock {
        /// The threshold crossed.
        threshold: LowStockThreshold,
        /// The figures after the event.
        stock: StockFigures,
    },
    /// An item kept at several locations has nothing left to promise at one of them (its
    /// `available` there reached zero).
    OutOfStockAtLocation {
        /// The location.
        location: LocationId,
        /// The item's figures there after the event.
        stock: StockFigures,
    },
    /// An item kept at several locations has units to promise at one of them again.
    BackInStockAtLocation {
        /// The location.
        location: LocationId,
        /// The item's figures there after the event.
        stock: StockFigures,
    },
    /// What an item kept at several locations has for sale at one of them went below the
    /// location's low-stock threshold.
    LowStockAtLocation {
        /// The location.
        location: LocationId,
        /// The location's threshold crossed.
        threshold: LowStockThreshold,
        /// The item's figures there after the event.
        stock: StockFigures,
    },
    /// A hold ran out without a checkout.
    HoldExpired {
        /// The reservation whose hold expired.
        reservation_id: ReservationId,
        /// Units no longer held.
        quantity: Quantity,
    },
    /// A queued command could not take effect.
    CommandRejected {
        /// The command.
        command_id: CommandId,
        /// Why.
        reason: RejectionCode,
    },
    /// A queued command was set aside for an operator (it could not be read, waited too long
    /// for its reservation, or kept failing): it has not taken effect, and will only after a
    /// redrive.
    CommandParked {
        /// The command.
        command_id: CommandId,
        /// Why: `unknown_shape`, `dependency_unreadable` or `failing`.
        reason: &'static str,
        /// What went wrong, for the operator (its first [`MAX_NOTICE_DETAIL`] characters;
        /// `inventory commands parked` shows it whole).
        detail: String,
    },
    /// A count or an adjustment left the item with fewer units than holds, sales and the states
    /// not for sale account for: `short_by` promised units are not there (an item on one stream;
    /// a split item's buckets share the figures, so it is not told for them).
    StockShort {
        /// Units missing: what is promised or set aside beyond what is on hand.
        short_by: i64,
        /// The figures after the event.
        stock: StockFigures,
    },
    /// The item's figures after a batch of its events (one per item per batch at most), with
    /// what changed them; of an item kept at several locations, its figures at the location
    /// named (one per location per batch at most).
    StockChanged {
        /// The location whose figures these are, for an item kept at several (absent: the
        /// item's).
        #[serde(skip_serializing_if = "Option::is_none")]
        location: Option<LocationId>,
        /// The figures.
        stock: StockFigures,
        /// The kinds of change of the batch ([`Change::kind`]: `received`, `held`,
        /// `fulfilled`...), each once, in order.
        kinds: Vec<&'static str>,
        /// Their reasons, each once, in order (empty when none gave one: holds, sales).
        reasons: Vec<Reason>,
    },
}

impl Notice {
    /// The notice's type, as its envelope names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::OutOfStock { .. } => "out_of_stock",
            Notice::BackInStock { .. } => "back_in_stock",
            Notice::LowStock { .. } => "low_stock",
            Notice::OutOfStockAtLocation { .. } => "out_of_stock_at_location",
            Notice::BackInStockAtLocation { .. } => "back_in_stock_at_location",
            Notice::LowStockAtLocation { .. } => "low_stock_at_location",
            Notice::HoldExpired { .. } => "hold_expired",
            Notice::CommandRejected { .. } => "command_rejected",
            Notice::CommandParked { .. } => "command_parked",
            Notice::StockShort { .. } => "stock_short",
            Notice::StockChanged { .. } => "stock_changed",
        }
    }
}

/// A notice and the event that caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Noticed {
    /// The stream it was told of (the item's own for what concerns the item as a whole).
    pub stream: StreamId,
    /// The version of the event that caused it (the last of the batch for `stock_changed`; 0
    /// for `command_parked`, which no event of the stream caused).
    pub version: Version,
    /// When that event was decided.
    pub at: Timestamp,
    /// What it tells.
    pub notice: Notice,
}

impl Noticed {
    /// An id that is the same whenever the same event gives the same notice: SKU, version and
    /// type; for a parked command, SKU, command id and parking time (a command parked again
    /// after a redrive is told again). A consumer that has seen it may drop it.
    pub fn id(&self) -> String {
        match &self.notice {
            Notice::CommandParked { command_id, .. } => format!(
                "{}:{command_id}:{}:{}",
                self.stream,
                self.at.millis(),
                self.notice.kind()
            ),
            notice => format!("{}:{}:{}", self.stream, self.version, notice.kind()),
        }
    }

    /// The notice that `command_id`, filed under `sku`, was parked at `at`; `detail` is cut to
    /// [`MAX_NOTICE_DETAIL`] characters (an event bus takes 256 KB a call, ten notices to it).
    pub fn parked(
        sku: Sku,
        command_id: CommandId,
        reason: &'static str,
        detail: String,
        at: Timestamp,
    ) -> Self {
        Self {
            stream: StreamId::of(&sku),
            version: 0,
            at,
            notice: Notice::CommandParked {
                command_id,
                reason,
                detail: detail.chars().take(MAX_NOTICE_DETAIL).collect(),
            },
        }
    }
}

/// The notices `events` (the stream's next events after `before`, in order) give, in order:
/// each event's transitions, then one `stock_changed` if the figures moved. The low-stock
/// threshold is the stream's own, as its events set it.
///
/// Transitions are the item's ([`StockFigures::item`]): told on events after which the stream
/// knows what the item has for sale, against what it last knew. So a split item's bucket 0 tells
/// them while the item sells from it alone; while the item sells from several buckets nothing
/// crosses, and the next drain (which a refusal needs) tells where it went. Its other buckets
/// tell only the notices of single events, and a split item no `stock_changed` (no stream has
/// its figures).
pub fn notices(before: &SkuState, events: &[Event]) -> Vec<Noticed> {
    let mut state = before.clone();
    let mut out = Vec::new();
    let newer: Vec<&Event> = events
        .iter()
        .filter(|event| event.seq > before.version)
        .collect();
    let Some(first) = newer.first() else {
        return out;
    };
    let sku = &first.stream;
    let location = sku.location();
    for event in &newer {
        // What the item (or, kept at several locations, the item at this one) had for sale as
        // the previous event left it, at its time (a hold that lapsed since then brings units
        // back with this event), or as last known.
        let was = StockFigures::for_sale_at(sku, &state);
        let was_low = was.is_some_and(|was| state.low_stock_below.is_low(was));
        let was_short = state.available(state.clock) < 0;
        state.evolve(event);
        let noticed = |notice| Noticed {
            stream: event.stream.clone(),
            version: event.seq,
            at: event.at,
            notice,
        };
        let here = kept_elsewhere(sku, &state).then(|| location.clone());
        if let Some(stock) = StockFigures::at_location(sku, &state) {
            let now = stock.available;
            let threshold = state.low_stock_below;
            // Never known (a snapshot from before it was kept): taken to be in stock.
            let out_of_stock = was != Some(0) && now == 0;
            let back_in_stock = was == Some(0) && now > 0;
            let low = !was_low && threshold.is_low(now);
            match here.clone() {
                None => {
                    if out_of_stock {
                        out.push(noticed(Notice::OutOfStock { stock }));
                    }
                    if back_in_stock {
                        out.push(noticed(Notice::BackInStock { stock }));
                    }
                    if low {
                        out.push(noticed(Notice::LowStock { threshold, stock }));
                    }
                }
                Some(location) => {
                    if out_of_stock {
                        let location = location.clone();
                        out.push(noticed(Notice::OutOfStockAtLocation { location, stock }));
                    }
                    if back_in_stock {
                        let location = location.clone();
                        out.push(noticed(Notice::BackInStockAtLocation { location, stock }));
                    }
                    if low {
                        out.push(noticed(Notice::LowStockAtLocation {
                            location,
                            threshold,
                            stock,
                        }));
                    }
                }
            }
        }
        if let Some(stock) = StockFigures::item(sku, &state) {
            let short_by = -state.available(state.clock);
            if !was_short && short_by > 0 && state.layout.widest == BucketCount::ONE {
                out.push(noticed(Notice::StockShort { short_by, stock }));
            }
        }
        match &event.change {
            Change::HoldExpired {
                reservation_id,
                quantity,
                ..
            } => out.push(noticed(Notice::HoldExpired {
                reservation_id: reservation_id.clone(),
                quantity: *quantity,
            })),
            Change::CommandRejected {
                command_id, reason, ..
            } => {
                out.push(noticed(Notice::CommandRejected {
                    command_id: *command_id,
                    reason: *reason,
                }));
            }
            _ => {}
        }
    }
    let whole = |state: &SkuState| {
        StockFigures::at_location(sku, state).filter(|_| state.layout.widest == BucketCount::ONE)
    };
    let figures = |stock: &StockFigures| {
        (
            stock.on_hand,
            stock.reserved,
            stock.committed,
            stock.unavailable,
            stock.available,
        )
    };
    if let (Some(last), Some(stock)) = (newer.last(), whole(&state)) {
        let moved = whole(before).is_none_or(|was| figures(&was) != figures(&stock));
        if moved {
            out.push(Noticed {
                stream: last.stream.clone(),
                version: last.seq,
                at: last.at,
                notice: Notice::StockChanged {
                    location: kept_elsewhere(sku, &state).then(|| location.clone()),
                    stock,
                    kinds: distinct(newer.iter().filter_map(|e| e.change.told_kind())),
                    reasons: distinct(newer.iter().filter_map(|e| e.change.reason())),
                },
            });
        }
    }
    out
}

/// Each item once, in the order first seen.
fn distinct<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    //! Given a stream, when these events follow, then these notices.

    use super::*;
    use crate::domain::buckets::{Move, MoveId};
    use crate::domain::Annotation;
    use crate::domain::{Bucket, LocationId};

    fn sku() -> StreamId {
        StreamId::of(&Sku::parse("SKU-1").unwrap())
    }
    fn at(secs: i64) -> Timestamp {
        Timestamp::from_millis(secs * 1000)
    }
    fn qty(n: i64) -> Quantity {
        Quantity::new(n).unwrap()
    }
    fn command(n: u128) -> CommandId {
        CommandId::parse(&uuid::Uuid::from_u128(n).to_string()).unwrap()
    }
    fn reservation(seq: u64) -> ReservationId {
        ReservationId::new(sku(), seq, seq)
    }

    /// A stream built up by the test: `events` after `known` are the ones the batch brings.
    struct Stream {
        sku: StreamId,
        events: Vec<Event>,
    }

    impl Default for Stream {
        fn default() -> Self {
            Self::of(sku())
        }
    }

    impl Stream {
        /// The stream of `sku` (an item's, or one of its buckets').
        fn of(sku: StreamId) -> Self {
            Self {
                sku,
                events: Vec::new(),
            }
        }
        fn then(mut self, secs: i64, change: Change) -> Self {
            let seq = self.events.len() as u64 + 1;
            self.events.push(Event {
                actor: None,
                figures: None,
                stream: self.sku.clone(),
                seq,
                at: at(secs),
                change,
            });
            self
        }
        fn received(self, secs: i64, n: i64) -> Self {
            self.then(
                secs,
                Change::StockReceived {
                    command_id: command(secs as u128),
                    quantity: qty(n),
                    why: Annotation::received(None),
                },
            )
        }
        /// A hold of `n` units counting until `until` seconds.
        fn held(self, secs: i64, n: i64, until: i64) -> Self {
            let seq = self.events.len() as u64 + 1;
            self.then(
                secs,
                Change::HoldPlaced {
                    reservation_id: reservation(seq),
                    quantity: qty(n),
                    expires_at: at(until),
                    release_at: at(until),
                    lines: Vec::new(),
                    owner: None,
                },
            )
        }
        fn expired(self, secs: i64, hold_seq: u64, n: i64, until: i64) -> Self {
            self.then(
                secs,
                Change::HoldExpired {
                    reservation_id: reservation(hold_seq),
                    quantity: qty(n),
                    release_at: at(until),
                },
            )
        }
        fn adjusted(self, secs: i64, delta: i64) -> Self {
            self.then(
                secs,
                Change::StockAdjusted {
                    command_id: command(1_000 + secs as u128),
                    delta,
                    why: Annotation::from_text("count".to_owned()),
                },
            )
        }
        fn threshold(self, secs: i64, below: i64) -> Self {
            self.then(
                secs,
                Change::LowStockSet {
                    command_id: command(2_000 + secs as u128),
                    below: LowStockThreshold::new(below).unwrap(),
                },
            )
        }
        /// The item split into `count` buckets (on bucket 0).
        fn split(self, secs: i64, count: u16) -> Self {
            self.then(
                secs,
                Change::BucketsSet {
                    command_id: command(3_000 + secs as u128),
                    count: BucketCount::new(count.into()).unwrap(),
                },
            )
        }
        /// `n` units moved between this stream's bucket and another (out of it when negative).
        fn moved(self, secs: i64, n: i64) -> Self {
            let here = self.sku.bucket();
            let there = Bucket::new(if here == Bucket::HOME { 1 } else { 0 }).unwrap();
            let (from, to) = if n < 0 { (here, there) } else { (there, here) };
            self.then(
                secs,
                Change::StockMoved {
                    move_id: MoveId(secs as u64),
                    moves: vec![Move::new(from, to, n.abs()).unwrap()],
                },
            )
        }
        fn drained(self, secs: i64) -> Self {
            self.then(secs, Change::BucketsDrained {})
        }
        fn spread(self, secs: i64) -> Self {
            self.then(secs, Change::BucketsSpread {})
        }
        /// The notices of the events after the first `known`.
        fn notices(&self, known: usize) -> Vec<Noticed> {
            let before = SkuState::from_events(&self.events[..known]);
            notices(&before, &self.events[known..])
        }
    }

    fn kinds(noticed: &[Noticed]) -> Vec<(Version, &'static str)> {
        noticed
            .iter()
            .map(|n| (n.version, n.notice.kind()))
            .collect()
    }

    #[test]
    fn moving_the_last_units_for_sale_to_damaged_tells_out_of_stock_with_what_is_set_aside() {
        use crate::domain::stock_states::{Annotation, Reason, Reclassification, StockState};
        let set_aside = |from, to| Change::StockReclassified {
            command_id: command(4_000),
            states: Reclassification::new(from, to).unwrap(),
            quantity: Quantity::new(2).unwrap(),
            why: Annotation::because(Reason::Damaged),
        };
        let stream = Stream::default()
            .received(1, 2)
            .then(2, set_aside(StockState::Available, StockState::Damaged))
            .then(3, set_aside(StockState::Damaged, StockState::Available));
        let noticed = stream.notices(1);
        assert_eq!(
            kinds(&noticed),
            vec![(2, "out_of_stock"), (3, "back_in_stock")],
            "no stock_changed: the batch ends where it began"
        );
        let Notice::OutOfStock { stock } = &noticed[0].notice else {
            panic!("not out of stock: {noticed:?}")
        };
        assert_eq!(stock.on_hand, Some(2));
        assert_eq!(stock.unavailable.map(|u| u.damaged), Some(2));
        let json = serde_json::to_value(stock).unwrap();
        assert_eq!(json["unavailable"]["damaged"], 2, "{json}");
    }

    #[test]
    fn a_count_below_what_is_promised_tells_stock_short_once_and_a_move_between_states_tells_the_change(
    ) {
        use crate::domain::stock_states::{Annotation, Reason, Reclassification, StockState};
        let counted = |secs: i64, delta: i64| Change::StockCounted {
            command_id: command(5_000 + secs as u128),
            counted: 0,
            delta,
            why: Annotation::because(Reason::CycleCount),
        };
        let stream = Stream::default()
            .received(1, 5)
            .held(2, 3, 600)
            .then(3, counted(3, -4))
            .then(4, counted(4, -1));
        let noticed = stream.notices(2);
        assert_eq!(
            kinds(&noticed),
            vec![
                (3, "out_of_stock"),
                (3, "stock_short"),
                (4, "stock_changed")
            ],
            "told once, when it went short"
        );
        let Notice::StockShort { short_by, stock } = &noticed[1].notice else {
            panic!("{noticed:?}")
        };
        assert_eq!((*short_by, stock.on_hand, stock.available), (2, Some(1), 0));
        let all = stream.notices(0);
        let Notice::StockChanged {
            kinds: told,
            reasons,
            ..
        } = &all
            .iter()
            .find(|n| n.notice.kind() == "stock_changed")
            .expect("stock_changed")
            .notice
        else {
            unreachable!()
        };
        assert_eq!(
            (told.as_slice(), reasons.as_slice()),
            (
                &["received", "held", "counted"][..],
                &[Reason::Received, Reason::CycleCount][..]
            ),
            "what changed the figures, each once"
        );

        let moved = Stream::default().received(1, 5).then(
            2,
            Change::StockReclassified {
                command_id: command(6_000),
                states: Reclassification::new(StockState::Available, StockState::Damaged).unwrap(),
                quantity: Quantity::new(1).unwrap(),
                why: Annotation::because(Reason::Damaged),
            },
        );
        let between = moved.then(
            3,
            Change::StockReclassified {
                command_id: command(6_001),
                states: Reclassification::new(StockState::Damaged, StockState::QualityControl)
                    .unwrap(),
                quantity: Quantity::new(1).unwrap(),
                why: Annotation::because(Reason::QualityControl),
            },
        );
        assert_eq!(
            kinds(&between.notices(2)),
            vec![(3, "stock_changed")],
            "nothing for sale moved, yet the figures did"
        );
    }

    #[test]
    fn a_sale_that_empties_the_item_tells_it_is_out_of_stock_once() {
        let stream = Stream::default()
            .received(1, 2)
            .held(2, 1, 600)
            .held(3, 1, 600);
        let noticed = stream.notices(1);
        assert_eq!(
            kinds(&noticed),
            vec![(3, "out_of_stock"), (3, "stock_changed")]
        );
        let Notice::OutOfStock { stock } = noticed[0].notice else {
            panic!("not out of stock: {noticed:?}")
        };
        assert_eq!(
            stock,
            StockFigures {
                on_hand: Some(2),
                reserved: Some(2),
                committed: Some(0),
                unavailable: None,
                available: 0,
                version: 3
            }
        );
    }

    #[test]
    fn a_hold_that_expires_brings_the_item_back_in_stock() {
        let stream = Stream::default()
            .received(1, 1)
            .held(2, 1, 600)
            .expired(700, 2, 1, 600);
        let noticed = stream.notices(2);
        assert_eq!(
            kinds(&noticed),
            vec![
                (3, "back_in_stock"),
                (3, "hold_expired"),
                (3, "stock_changed")
            ]
        );
    }

    #[test]
    fn a_hold_that_lapsed_unswept_brings_it_back_with_the_next_event() {
        // The hold stops counting at 600; nothing is written until a receipt at 900.
        let stream = Stream::default()
            .received(1, 1)
            .held(2, 1, 600)
            .received(900, 5);
        let noticed = stream.notices(2);
        assert_eq!(
            kinds(&noticed),
            vec![(3, "back_in_stock"), (3, "stock_changed")]
        );
    }

    #[test]
    fn a_threshold_tells_when_crossed_downwards_and_arms_again_upwards() {
        let stream = Stream::default()
            .threshold(1, 4)
            .received(1, 6)
            .held(2, 2, 600) // 4 left: not below 4
            .held(3, 1, 600) // 3 left: below 4
            .held(4, 1, 600) // 2 left: still below, nothing new
            .received(5, 10) // 12 left: above again, nothing told
            .adjusted(6, -9); // 3 left: below again
        let noticed = stream.notices(2);
        let low: Vec<(Version, Notice)> = noticed
            .into_iter()
            .filter(|n| n.notice.kind() == "low_stock")
            .map(|n| (n.version, n.notice))
            .collect();
        assert_eq!(low.len(), 2, "{low:?}");
        assert_eq!(low[0].0, 4);
        assert_eq!(low[1].0, 7);
        let Notice::LowStock { threshold, stock } = low[0].1 else {
            unreachable!()
        };
        assert_eq!((threshold.units(), stock.available), (4, 3));
    }

    #[test]
    fn a_threshold_set_above_what_is_left_tells_at_once_and_none_tells_nothing() {
        let stream = Stream::default()
            .received(1, 3)
            .held(2, 1, 600) // 2 left, no threshold: nothing
            .threshold(3, 5) // 2 < 5: low at once
            .threshold(4, 6) // still low under the new one: nothing new
            .threshold(5, 0) // off
            .held(6, 1, 600); // 1 left, no threshold: nothing
        let low: Vec<Version> = stream
            .notices(0)
            .iter()
            .filter(|n| n.notice.kind() == "low_stock")
            .map(|n| n.version)
            .collect();
        assert_eq!(low, vec![3]);
    }

    #[test]
    fn nothing_is_told_when_nothing_crosses() {
        let stream = Stream::default()
            .threshold(1, 2)
            .received(1, 10)
            .held(2, 1, 600)
            .held(3, 1, 600);
        let noticed = stream.notices(2);
        assert_eq!(kinds(&noticed), vec![(4, "stock_changed")]);
        // The same events again (a redelivered batch) tell nothing new.
        assert!(stream.notices(4).is_empty());
    }

    #[test]
    fn the_same_events_give_the_same_ids() {
        let stream = Stream::default().received(1, 1).held(2, 1, 600);
        let first: Vec<String> = stream.notices(0).iter().map(Noticed::id).collect();
        let again: Vec<String> = stream.notices(0).iter().map(Noticed::id).collect();
        assert_eq!(first, again);
        assert_eq!(
            first,
            vec![
                "SKU-1:1:back_in_stock",
                "SKU-1:2:out_of_stock",
                "SKU-1:2:stock_changed"
            ]
        );
    }

    #[test]
    fn a_split_item_tells_its_transitions_from_bucket_0_while_it_sells_there_alone() {
        let stream = Stream::default()
            .threshold(1, 3) // 1: low at once (nothing yet)
            .received(1, 10) // 2: back in stock, 10 for sale
            .split(2, 4) // 3: sells from its buckets: nothing is known, nothing crosses
            .moved(2, -9) // 4: spread
            .held(3, 1, 600) // 5: bucket 0 holds (a line's own units): still nothing
            .drained(4) // 6: sells from bucket 0 alone, 0 left there: out of stock, and low
            .moved(4, 2) // 7: 2 gathered back: back in stock, still low
            .received(5, 20) // 8: 22: no longer low
            .spread(6) // 9: nothing
            .moved(6, -20) // 10: nothing
            .split(7, 1) // 11: one bucket again: bucket 0 sells alone with 2 left: low
            .held(8, 2, 600); // 12: out of stock
        let told = stream.notices(0);
        assert_eq!(
            kinds(&told),
            vec![
                (1, "low_stock"),
                (2, "back_in_stock"),
                (6, "out_of_stock"),
                (6, "low_stock"),
                (7, "back_in_stock"),
                (11, "low_stock"),
                (12, "out_of_stock"),
            ],
            "no stock_changed: no stream has a split item's figures"
        );
        let Notice::BackInStock { stock } = told[4].notice else {
            unreachable!()
        };
        assert_eq!(
            stock,
            StockFigures {
                on_hand: None,
                reserved: None,
                committed: None,
                unavailable: None,
                available: 2,
                version: 7
            },
            "bucket 0 knows what the item has for sale, not its buckets' figures"
        );
        // Cut anywhere, the same: what bucket 0 last knew is in its snapshot.
        for known in 0..stream.events.len() {
            let mut batched = stream.notices(0);
            batched.retain(|n| n.version <= known as Version);
            batched.extend(stream.notices(known));
            assert_eq!(kinds(&batched), kinds(&told), "cut at {known}");
        }
    }

    #[test]
    fn an_item_kept_at_several_locations_is_told_per_location_never_by_one_for_the_item() {
        // A store selling out its units tells it sold out there, not that the item did.
        let store = Stream::of(StreamId::parse("SKU-1:store-5").unwrap())
            .received(1, 2)
            .held(2, 2, 600)
            .expired(700, 2, 2, 600);
        let told = store.notices(1);
        assert_eq!(
            kinds(&told),
            vec![
                (2, "out_of_stock_at_location"),
                (3, "back_in_stock_at_location"),
                (3, "hold_expired")
            ]
        );
        let location = LocationId::parse("store-5").unwrap();
        assert!(
            matches!(&told[0].notice, Notice::OutOfStockAtLocation { location: at, stock }
                if *at == location && stock.available == 0 && stock.on_hand == Some(2)),
            "{told:?}"
        );
        // The default location, once the item is kept elsewhere too, tells of itself.
        let default = Stream::default()
            .received(1, 2)
            .then(2, Change::StockedAt { location })
            .held(3, 2, 600);
        let told = default.notices(2);
        assert_eq!(
            kinds(&told),
            vec![(3, "out_of_stock_at_location"), (3, "stock_changed")],
            "no out_of_stock for the item from one of its locations"
        );
        assert!(
            matches!(&told[0].notice, Notice::OutOfStockAtLocation { location, .. } if location.is_default()),
            "{told:?}"
        );
        assert!(
            matches!(&told[1].notice, Notice::StockChanged { location: Some(at), .. } if at.is_default()),
            "{told:?}"
        );
    }

    #[test]
    fn a_location_runs_low_against_its_own_threshold() {
        let store = Stream::of(StreamId::parse("SKU-1:store-5").unwrap())
            .received(1, 5)
            .then(
                2,
                Change::LowStockSet {
                    command_id: command(2),
                    below: LowStockThreshold::new(3).unwrap(),
                },
            )
            .held(3, 3, 600);
        let told = store.notices(1);
        assert_eq!(
            kinds(&told),
            vec![(3, "low_stock_at_location"), (3, "stock_changed")]
        );
        assert!(
            matches!(&told[0].notice, Notice::LowStockAtLocation { threshold, stock, .. }
                if *threshold == LowStockThreshold::new(3).unwrap() && stock.available == 2),
            "{told:?}"
        );
    }

    #[test]
    fn another_bucket_of_a_split_item_tells_only_its_single_events() {
        let bucket = Stream::of(sku().in_bucket(Bucket::new(1).unwrap()))
            .moved(1, 2) // its share
            .held(2, 2, 600) // its last unit held
            .expired(700, 2, 2, 600); // and back
        assert_eq!(kinds(&bucket.notices(0)), vec![(3, "hold_expired")]);
    }

    #[test]
    fn a_snapshot_from_before_bucket_0_kept_what_it_knew_takes_the_item_to_be_in_stock() {
        let stream = Stream::default()
            .received(1, 5)
            .split(2, 2)
            .moved(2, -5)
            .drained(3); // nothing gathered: out of stock
        let mut before = SkuState::from_events(&stream.events[..3]);
        assert_eq!(
            before.for_sale_alone,
            Some(5),
            "what it had when it was split"
        );
        before.for_sale_alone = None;
        assert_eq!(
            kinds(&notices(&before, &stream.events[3..])),
            vec![(4, "out_of_stock")]
        );
    }

    #[test]
    fn a_rejected_command_is_told_with_its_reason() {
        let stream = Stream::default().received(1, 1).then(
            2,
            Change::CommandRejected {
                command_id: command(7),
                reason: RejectionCode::OnHandWouldGoNegative,
                on_hand: None,
            },
        );
        let noticed = stream.notices(1);
        assert_eq!(kinds(&noticed), vec![(2, "command_rejected")]);
    }

    #[test]
    fn a_parked_command_is_told_under_its_sku_with_an_id_of_its_parking() {
        let parked = Noticed::parked(
            sku().item().clone(),
            command(9),
            "failing",
            "throttled".to_owned(),
            at(5),
        );
        assert_eq!(parked.notice.kind(), "command_parked");
        assert_eq!(
            parked.id(),
            format!("SKU-1:{}:5000:command_parked", command(9))
        );
        let again = Noticed::parked(
            sku().item().clone(),
            command(9),
            "failing",
            "x".repeat(5_000),
            at(7),
        );
        assert_ne!(parked.id(), again.id(), "parked again after a redrive");
        let Notice::CommandParked { detail, .. } = again.notice else {
            unreachable!()
        };
        assert_eq!(detail.len(), MAX_NOTICE_DETAIL, "a long detail is cut");
    }

    mod properties {
        //! Any stream, cut into any batches: the same transitions as all at once, out of stock
        //! and back in stock alternating, and the last of them agreeing with the fold (for an
        //! item split into buckets, with what bucket 0 last knew while it sold alone).

        use proptest::prelude::*;

        use super::*;

        #[derive(Debug, Clone)]
        enum Step {
            Receive(i64),
            Adjust(i64),
            Hold {
                units: i64,
                for_secs: i64,
            },
            ExpireOldest,
            Threshold(i64),
            /// The admin sets the item's buckets (1: one again).
            Split(u16),
            /// Units gathered into bucket 0, and the item drained.
            Drain(i64),
            /// The item spread again, units moved out of bucket 0.
            Spread(i64),
        }

        fn step() -> impl Strategy<Value = (Step, i64)> {
            let step = prop_oneof![
                (1..5_i64).prop_map(Step::Receive),
                (-3..3_i64).prop_map(Step::Adjust),
                (1..3_i64, 5..120_i64).prop_map(|(units, for_secs)| Step::Hold { units, for_secs }),
                Just(Step::ExpireOldest),
                (0..6_i64).prop_map(Step::Threshold),
                (1..4_u16).prop_map(Step::Split),
                (0..4_i64).prop_map(Step::Drain),
                (0..4_i64).prop_map(Step::Spread),
            ];
            (step, 0..40_i64)
        }

        /// A stream the decisions could have written: holds only on available units,
        /// adjustments never below zero on hand, expiries of holds placed.
        fn stream_of(steps: &[(Step, i64)]) -> Stream {
            let mut stream = Stream::default();
            let mut secs = 1;
            let mut holds: Vec<(u64, i64, i64)> = Vec::new();
            for (step, pause) in steps {
                secs += pause;
                let state = SkuState::from_events(&stream.events);
                let now = at(secs).max(state.clock);
                stream = match step {
                    Step::Receive(units) => stream.received(secs, *units),
                    Step::Adjust(delta) if state.on_hand + delta >= 0 && *delta != 0 => {
                        stream.adjusted(secs, *delta)
                    }
                    Step::Hold { units, for_secs } if state.available(now) >= *units => {
                        holds.push((stream.events.len() as u64 + 1, *units, secs + for_secs));
                        stream.held(secs, *units, secs + for_secs)
                    }
                    Step::ExpireOldest if !holds.is_empty() => {
                        let (seq, units, until) = holds.remove(0);
                        stream.expired(secs.max(until), seq, units, until)
                    }
                    Step::Threshold(below) => stream.threshold(secs, *below),
                    Step::Split(count) => stream.split(secs, *count),
                    Step::Drain(units) if *units > 0 => stream.moved(secs, *units).drained(secs),
                    Step::Drain(_) => stream.drained(secs),
                    Step::Spread(units) if state.available(now) >= *units && *units > 0 => {
                        stream.spread(secs).moved(secs, -units)
                    }
                    _ => stream,
                };
                secs = secs.max(stream.events.last().map_or(0, |e| e.at.millis() / 1000));
            }
            stream
        }

        fn transitions(noticed: &[Noticed]) -> Vec<(Version, &'static str)> {
            noticed
                .iter()
                .filter(|n| n.notice.kind() != "stock_changed")
                .map(|n| (n.version, n.notice.kind()))
                .collect()
        }

        proptest! {
            #[test]
            fn batches_tell_what_the_whole_tells_and_stock_alternates(
                steps in prop::collection::vec(step(), 1..60),
                cuts in prop::collection::vec(0..60_usize, 0..6),
            ) {
                let stream = stream_of(&steps);
                let whole = transitions(&stream.notices(0));

                let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(stream.events.len())).collect();
                cuts.push(stream.events.len());
                cuts.sort_unstable();
                let mut batched = Vec::new();
                let mut from = 0;
                for cut in cuts {
                    let before = SkuState::from_events(&stream.events[..from]);
                    batched.extend(notices(&before, &stream.events[from..cut]));
                    from = cut;
                }
                prop_assert_eq!(&transitions(&batched), &whole);

                let stock: Vec<&str> = whole
                    .iter()
                    .map(|(_, kind)| *kind)
                    .filter(|kind| matches!(*kind, "out_of_stock" | "back_in_stock"))
                    .collect();
                for (i, kind) in stock.iter().enumerate() {
                    let expected = if i % 2 == 0 { "back_in_stock" } else { "out_of_stock" };
                    prop_assert_eq!(*kind, expected, "{:?}", stock);
                }
                let last = SkuState::from_events(&stream.events);
                let known = StockFigures::item(&sku(), &last).map(|stock| stock.available);
                prop_assert!(known.is_none() || last.for_sale_alone.is_none());
                prop_assert_eq!(
                    stock.last() == Some(&"back_in_stock"),
                    known.or(last.for_sale_alone).unwrap_or(0) > 0
                );
            }
        }
    }
}
