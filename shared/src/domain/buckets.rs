//! Escrow buckets (O'Neil's escrow method, as bounded counters do it): one item's stock split
//! over K streams, each with its own head and its own conditional write, so K shoppers can be
//! served at once and no partition takes more than its share of the writes.
//!
//! Why no oversell needs a cross-bucket check: every bucket is an ordinary stream whose fold
//! counts its own on-hand, holds and sales, and a hold or a move out of a bucket is decided on
//! that bucket's state at its head (a conditional append). A bucket therefore never promises
//! more than it holds, and the item, the sum of its buckets, never promises more than the sum.
//! Units change bucket only by a [`Move`], whose debit and credit are the same event written
//! to both buckets in one transaction: nothing is created or lost in a move.
//!
//! Bucket 0 is the item's own stream: it keeps the [`Layout`], takes receipts, and gathers the
//! stock when the item is *drained* (near zero, so the last units sell, and every refusal is
//! decided, on one head).

use serde::{Deserialize, Serialize};

use super::stream::StreamId;
use super::types::{Bucket, BucketCount, Units};

/// A bucketed item is drained into bucket 0 once a shopper's bucket runs short and the item
/// has at most this many units to spare per bucket: the last units then sell on one head, and
/// every refusal is decided on it (see `docs/architecture.md`).
pub const DRAIN_BELOW: i64 = 1;

/// A drained item is spread over its buckets again once bucket 0 has this many units to spare
/// per bucket (well above [`DRAIN_BELOW`], so it does not swing between the two).
pub const SPREAD_FROM: i64 = 4;

/// How an item's stock is laid out over its buckets (kept by bucket 0's fold).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// How many buckets the admin asked for.
    pub count: BucketCount,
    /// Whether the stock is gathered into bucket 0: reservations then use bucket 0 only.
    pub drained: bool,
    /// The most buckets the item ever had: every bucket that may hold anything (a bucket
    /// dropped from the count keeps its holds and its sales).
    #[serde(default)]
    pub widest: BucketCount,
}

impl Layout {
    /// Every stream of the item at `home`'s location that may hold anything (each bucket it
    /// ever had), bucket 0's first.
    pub fn streams<'a>(&self, home: &'a StreamId) -> impl Iterator<Item = StreamId> + 'a {
        self.widest
            .buckets()
            .map(move |bucket| home.in_bucket(bucket))
    }

    /// Whether this is a one-bucket item (every item starts so).
    pub fn is_single(&self) -> bool {
        self.widest == BucketCount::ONE && !self.drained
    }

    /// Whether the item sells from bucket 0 alone (a one-bucket item, a drained one, or one set
    /// back to one bucket): bucket 0's availability is then the item's, since no other bucket
    /// keeps a unit for sale and units freed elsewhere are moved there in the same write.
    pub fn sells_alone(&self) -> bool {
        self.active() == BucketCount::ONE
    }

    /// The buckets reservations may hold in: bucket 0 alone when drained, else all of them.
    pub fn active(&self) -> BucketCount {
        if self.drained {
            BucketCount::ONE
        } else {
            self.count
        }
    }

    /// Whether `bucket` may keep units for sale: a drained item keeps them in bucket 0 only,
    /// and a bucket beyond the count keeps none.
    pub fn keeps_stock(&self, bucket: Bucket) -> bool {
        bucket.number() < self.active().get()
    }
}

/// A random id shared by the events of one transaction of moves (the audit pairs them by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MoveId(pub u64);

impl std::fmt::Display for MoveId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for MoveId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MoveId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        u64::from_str_radix(&raw, 16)
            .map(Self)
            .map_err(|_| serde::de::Error::custom(format!("{raw:?} is not a move id")))
    }
}

/// Units taken from one bucket and given to another of the same item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// The bucket debited.
    pub from: Bucket,
    /// The bucket credited.
    pub to: Bucket,
    /// Units moved (any number: a move is not a request's quantity).
    pub quantity: Units,
}

impl Move {
    /// The move of `units` from `from` to `to`; `None` when there is no unit to move.
    pub fn new(from: Bucket, to: Bucket, units: i64) -> Option<Self> {
        Some(Self {
            from,
            to,
            quantity: Units::new(units)?,
        })
    }

    /// What the move does to `bucket`'s on-hand count: minus what leaves it, plus what comes.
    pub fn effect_on(&self, bucket: Bucket) -> i64 {
        let units = self.quantity.get();
        i64::from(self.to == bucket) * units - i64::from(self.from == bucket) * units
    }
}

/// Units a bucket can give away or promise: its availability, never below zero.
pub type Spare = (Bucket, i64);

/// Moves that bring `needed` units into `target`, taking from the buckets with the most to
/// spare first; `None` when the other buckets have fewer than `needed` between them.
pub fn gather(target: Bucket, needed: i64, spares: &[Spare]) -> Option<Vec<Move>> {
    if needed <= 0 {
        return Some(Vec::new());
    }
    let mut donors: Vec<Spare> = spares
        .iter()
        .copied()
        .filter(|(bucket, spare)| *bucket != target && *spare > 0)
        .collect();
    donors.sort_by_key(|(bucket, spare)| (std::cmp::Reverse(*spare), *bucket));
    let mut moves = Vec::new();
    let mut missing = needed;
    for (bucket, spare) in donors {
        if missing == 0 {
            break;
        }
        let taken = spare.min(missing);
        moves.extend(Move::new(bucket, target, taken));
        missing -= taken;
    }
    (missing == 0).then_some(moves)
}

/// The move that brings `needed` units into `target` from `donor`, and half of what the donor
/// has to spare beyond them: the shopper's bucket need not look again at once, and the two
/// share what was left. `None` when nothing is needed or the donor has fewer than `needed`.
pub fn halve(target: Bucket, needed: i64, donor: Spare) -> Option<Move> {
    let (from, spare) = donor;
    if needed <= 0 || spare < needed || from == target {
        return None;
    }
    Move::new(from, target, needed + (spare - needed) / 2)
}

/// Moves that gather every spare unit of the other buckets into bucket 0.
pub fn drain(spares: &[Spare]) -> Vec<Move> {
    spares
        .iter()
        .filter(|(bucket, _)| *bucket != Bucket::HOME)
        .filter_map(|(bucket, spare)| Move::new(*bucket, Bucket::HOME, *spare))
        .collect()
}

/// Moves that share bucket 0's `spare` units evenly over the `count` buckets (bucket 0 keeps
/// its share and the remainder), for buckets holding less than their share.
pub fn spread(count: BucketCount, spare: i64, others: &[Spare]) -> Vec<Move> {
    let total: i64 = spare + others.iter().map(|(_, units)| units.max(&0)).sum::<i64>();
    let share = total / i64::from(count.get());
    let mut left = spare - share;
    let mut moves = Vec::new();
    for bucket in count.buckets().skip(1) {
        let has = others
            .iter()
            .find(|(other, _)| *other == bucket)
            .map_or(0, |(_, units)| (*units).max(0));
        if let Some(given) = Move::new(Bucket::HOME, bucket, (share - has).min(left)) {
            left -= given.quantity.get();
            moves.push(given);
        }
    }
    moves
}

/// How a change of `delta` units to an item's on-hand count is shared by its buckets
/// (`(bucket, on_hand, spare)` each, bucket 0 first): a receipt goes to bucket 0; a withdrawal
/// takes spare units first (bucket 0's, then the most spare), and only then units still
/// counted by holds or sales (the most on hand first), so a bucket is left short only when no
/// bucket has a unit to spare. The caller has checked that the item has `-delta` on hand.
pub fn share_adjustment(delta: i64, buckets: &[(Bucket, i64, i64)]) -> Vec<(Bucket, i64)> {
    if delta >= 0 {
        return vec![(Bucket::HOME, delta)];
    }
    let mut parts: Vec<(Bucket, i64)> = Vec::new();
    let take = |bucket: Bucket, units: i64, parts: &mut Vec<(Bucket, i64)>| match parts
        .iter_mut()
        .find(|(b, _)| *b == bucket)
    {
        Some((_, part)) => *part -= units,
        None => parts.push((bucket, -units)),
    };
    let mut missing = -delta;
    let mut by_spare: Vec<&(Bucket, i64, i64)> = buckets.iter().collect();
    by_spare.sort_by_key(|(bucket, _, spare)| (*bucket != Bucket::HOME, std::cmp::Reverse(*spare)));
    let mut left: Vec<(Bucket, i64)> = Vec::new();
    for (bucket, on_hand, spare) in by_spare {
        let taken = (*spare).max(0).min(missing).min(*on_hand);
        if taken > 0 {
            take(*bucket, taken, &mut parts);
            missing -= taken;
        }
        left.push((*bucket, on_hand - taken));
    }
    left.sort_by_key(|(bucket, on_hand)| (std::cmp::Reverse(*on_hand), *bucket));
    for (bucket, on_hand) in left {
        if missing == 0 {
            break;
        }
        let taken = on_hand.max(0).min(missing);
        if taken > 0 {
            take(bucket, taken, &mut parts);
            missing -= taken;
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(n: u16) -> Bucket {
        Bucket::new(n).unwrap()
    }

    fn conserved(moves: &[Move], buckets: u16) -> bool {
        (0..buckets)
            .map(|n| moves.iter().map(|m| m.effect_on(b(n))).sum::<i64>())
            .sum::<i64>()
            == 0
    }

    #[test]
    fn a_gather_takes_from_the_richest_buckets_first_and_only_what_is_needed() {
        let spares = [(b(0), 1), (b(1), 5), (b(2), 2), (b(3), 0)];
        let moves = gather(b(0), 6, &spares).unwrap();
        assert_eq!(
            moves
                .iter()
                .map(|m| (m.from.number(), m.quantity.get()))
                .collect::<Vec<_>>(),
            vec![(1, 5), (2, 1)]
        );
        assert!(moves.iter().all(|m| m.to == b(0)));
        assert!(conserved(&moves, 4));
        assert_eq!(gather(b(0), 8, &spares), None, "the others have 7");
    }

    #[test]
    fn a_move_of_more_than_a_request_may_ask_is_made_and_read_back() {
        // Three receipts of a million, split in two: half of it moves at once.
        let moves = spread(BucketCount::new(2).unwrap(), 3_000_000, &[]);
        assert_eq!(moves.len(), 1);
        assert_eq!(moves[0].quantity.get(), 1_500_000);
        let json = serde_json::to_string(&moves[0]).unwrap();
        assert_eq!(serde_json::from_str::<Move>(&json).unwrap(), moves[0]);
        assert!(serde_json::from_str::<Move>(r#"{"from":0,"to":1,"quantity":0}"#).is_err());
        let all = drain(&[(b(0), 0), (b(1), i64::from(u32::MAX) * 4), (b(2), 0)]);
        assert_eq!(all[0].quantity.get(), i64::from(u32::MAX) * 4);
        assert_eq!(Move::new(b(1), b(0), 0), None, "no unit, no move");
    }

    #[test]
    fn a_drain_gathers_every_spare_unit_into_bucket_0() {
        let moves = drain(&[(b(0), 3), (b(1), 2), (b(2), 0), (b(3), 4)]);
        assert_eq!(moves.iter().map(|m| m.quantity.get()).sum::<i64>(), 6);
        assert!(moves.iter().all(|m| m.to == Bucket::HOME));
    }

    #[test]
    fn a_spread_shares_the_stock_evenly_and_bucket_0_keeps_the_remainder() {
        let count = BucketCount::new(4).unwrap();
        let moves = spread(count, 10, &[(b(1), 1)]);
        let given: Vec<(u16, i64)> = moves
            .iter()
            .map(|m| (m.to.number(), m.quantity.get()))
            .collect();
        // 11 units over 4: a share of 2 each; bucket 1 has 1 already.
        assert_eq!(given, vec![(1, 1), (2, 2), (3, 2)]);
        assert!(moves.iter().all(|m| m.from == Bucket::HOME));
    }

    #[test]
    fn a_bucket_stream_is_named_after_its_item_and_no_client_can_name_one() {
        use crate::domain::{Sku, StreamId};
        let item = Sku::parse("LAMP-1").unwrap();
        let own = StreamId::of(&item);
        let third = own.in_bucket(b(3));
        assert_eq!(third.to_string(), "LAMP-1@3");
        assert_eq!((third.item(), third.bucket()), (&item, b(3)));
        assert_eq!(third.in_bucket(Bucket::HOME), own);
        assert!(own.is_home() && !third.is_home());
        assert_eq!(StreamId::parse("LAMP-1@3").unwrap(), third);
        assert!(Sku::parse("LAMP-1@3").is_err(), "clients name items only");
        for bad in ["@3", "A@1@2"] {
            assert!(StreamId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_move_is_folded_by_both_buckets_and_the_item_keeps_its_units() {
        use crate::domain::{Change, Event, Sku, SkuState, StreamId, Timestamp};
        let item = StreamId::of(&Sku::parse("A").unwrap());
        let moved = Change::StockMoved {
            move_id: MoveId(7),
            moves: vec![Move::new(b(0), b(2), 3).unwrap()],
        };
        let event = |stream: StreamId| Event {
            actor: None,
            figures: None,
            stream,
            seq: 2,
            at: Timestamp::from_millis(0),
            change: moved.clone(),
        };
        let mut home = SkuState::default();
        home.on_hand = 10;
        let mut two = SkuState::default();
        home.evolve(&event(item.clone()));
        two.evolve(&event(item.in_bucket(b(2))));
        assert_eq!((home.on_hand, two.on_hand), (7, 3));
    }

    #[test]
    fn a_withdrawal_takes_spare_units_first_and_leaves_a_bucket_short_only_when_none_is_spare() {
        // (bucket, on_hand, spare)
        let buckets = [(b(0), 5, 1), (b(1), 6, 4), (b(2), 3, 0)];
        assert_eq!(share_adjustment(-4, &buckets), vec![(b(0), -1), (b(1), -3)]);
        let all = share_adjustment(-9, &buckets);
        assert_eq!(all.iter().map(|(_, d)| d).sum::<i64>(), -9);
        assert_eq!(
            all,
            vec![(b(0), -5), (b(1), -4)],
            "spare first, then the most on hand"
        );
        assert_eq!(share_adjustment(3, &buckets), vec![(Bucket::HOME, 3)]);
    }

    #[test]
    fn a_layout_keeps_stock_in_bucket_0_only_once_drained() {
        let layout = Layout {
            count: BucketCount::new(8).unwrap(),
            drained: false,
            widest: BucketCount::new(8).unwrap(),
        };
        assert!(layout.keeps_stock(b(7)));
        assert!(!layout.keeps_stock(b(8)));
        let drained = Layout {
            drained: true,
            ..layout
        };
        assert!(drained.keeps_stock(Bucket::HOME) && !drained.keeps_stock(b(1)));
    }
}
