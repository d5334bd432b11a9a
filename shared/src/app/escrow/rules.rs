//! What a command's change implies across an item's buckets at a location: the rules by which
//! the processor records it, spreads bucket 0's units, and gathers units into the bucket that
//! needs them, a write's room at a time.

use std::collections::BTreeMap;

use super::Draft;
use crate::domain::buckets::{self, Spare, SPREAD_FROM};
use crate::domain::{
    Action, Bucket, BucketCount, Change, Command, HoldLine, LocationId, Move, StockState, Timestamp,
};

/// Records `change` (decided on `bucket`) in the draft, with what it implies across the
/// item's buckets; says whether the item's stock should be spread afterwards.
///
/// - A rejection is recorded on bucket 0, the item's own history.
/// - A withdrawal from a bucketed item is shared by its buckets ([`buckets::share_adjustment`]).
/// - What a release, an expiry or a cancelled sale frees in a bucket other than 0 moves to
///   bucket 0 in the same write (a return is recorded on bucket 0): no bucket but 0 ever gains units except by a move, so a drain that moved every
///   spare unit leaves none behind (see `docs/architecture.md`).
/// - Fewer buckets: the spare units of the buckets dropped move to bucket 0, with the spread
///   that follows, a write's room at a time.
/// - A count is recorded as its delta, shared as an adjustment's is; units set aside live in
///   bucket 0. What leaves `available` (a move, a withdrawal) was gathered into bucket 0 first.
pub(crate) fn record(draft: &mut Draft, bucket: Bucket, now: Timestamp, change: Change) -> bool {
    let layout = draft.layout();
    match change {
        Change::CommandRejected { .. } => draft.record(Bucket::HOME, now, change),
        Change::StockAdjusted { delta, .. } | Change::StockCounted { delta, .. }
            if delta < 0 && layout.widest != BucketCount::ONE =>
        {
            let buckets = draft.holdings(now);
            for (bucket, part) in buckets::share_adjustment(delta, &buckets) {
                draft.record(bucket, now, change.with_delta(part));
            }
        }
        // Units set aside are kept by bucket 0, where what leaves `available` was gathered
        // first ([`gathered_in_part`]): no bucket is left promising units that were set aside.
        // Shipped units come back there too, set aside or for sale.
        Change::StockReclassified { .. } | Change::HoldReturned { .. } => {
            draft.record(Bucket::HOME, now, change);
            return layout.count != BucketCount::ONE;
        }
        Change::HoldReleased { quantity, .. }
        | Change::HoldExpired { quantity, .. }
        | Change::HoldCancelled { quantity, .. }
            if bucket != Bucket::HOME =>
        {
            draft.record(bucket, now, change);
            let spare = draft
                .state(bucket)
                .available(now)
                .clamp(0, quantity.units());
            if let Some(to_home) = Move::new(bucket, Bucket::HOME, spare) {
                draft.transfer(now, vec![to_home]);
            }
        }
        // The dropped buckets' spare units go back to bucket 0 with the spread that follows,
        // as many moves a write as it has room for ([`record_spread`]).
        Change::BucketsSet { .. } => {
            draft.record(Bucket::HOME, now, change);
            return true;
        }
        Change::StockReceived { .. }
        | Change::TransferReceived { .. }
        | Change::StockAdjusted { .. }
        | Change::StockCounted { .. } => {
            draft.record(bucket, now, change);
            return layout.count != BucketCount::ONE;
        }
        change => draft.record(bucket, now, change),
    }
    false
}

/// Items a spread adds to a transaction besides one per bucket it moves units to: bucket 0's
/// side of the transfer and its layout mark.
pub(crate) const SPREAD_MARKS: usize = 2;

/// Records in `draft` the spread of bucket 0's spare units over the item's buckets, at most
/// `max_moves` moves of it; says whether more remains to spread. Nothing is recorded for an
/// item on one stream, nor for one drained near zero until bucket 0 has [`SPREAD_FROM`] units
/// to spare per bucket.
pub(crate) fn record_spread(draft: &mut Draft, now: Timestamp, max_moves: usize) -> bool {
    let layout = draft.layout();
    // Buckets a change of layout dropped give their spare units back to bucket 0 first, a
    // write's room at a time (a drain of 255 buckets outgrows one transaction); then the rest
    // is spread over the buckets kept.
    let dropped: Vec<Spare> = draft
        .spares(now)
        .into_iter()
        .filter(|(bucket, spare)| bucket.number() >= layout.count.get() && *spare > 0)
        .collect();
    if !dropped.is_empty() {
        let more = transferred_in_part(draft, Some(buckets::drain(&dropped)), now, max_moves);
        return more || layout.count != BucketCount::ONE;
    }
    let (home, others): (Vec<Spare>, Vec<Spare>) = draft
        .spares(now)
        .into_iter()
        .partition(|(bucket, _)| *bucket == Bucket::HOME);
    let home_spare = home.first().map_or(0, |(_, spare)| *spare);
    let per_bucket = home_spare / i64::from(layout.count.get());
    if layout.count == BucketCount::ONE || (layout.drained && per_bucket < SPREAD_FROM) {
        return false;
    }
    let mut moves = buckets::spread(layout.count, home_spare, &others);
    let more = moves.len() > max_moves;
    moves.truncate(max_moves);
    if moves.is_empty() && !layout.drained {
        return more;
    }
    if layout.drained {
        draft.record(Bucket::HOME, now, Change::BucketsSpread {});
    }
    draft.transfer(now, moves);
    more
}

/// Before a command takes units out of `available` on a bucketed item (a move out of sale, a
/// transfer to another location, or an adjustment or a count that withdraws units), the units it needs are gathered into bucket
/// 0 from the buckets' spare units, in the command's own write: a move's units are then set
/// aside in bucket 0, and a withdrawal is taken from bucket 0 alone rather than shared by every
/// bucket that has a unit. When that takes more moves than `room`, the moves that fit are
/// recorded alone and `true` says the command waits for a later write, which gathers the rest:
/// no write outgrows a transaction, however scattered the item's units are.
pub(crate) fn gathered_in_part(
    draft: &mut Draft,
    command: &Command,
    now: Timestamp,
    room: usize,
) -> bool {
    if draft.layout().widest == BucketCount::ONE {
        return false;
    }
    let needed = match &command.action {
        Action::ReclassifyStock {
            states, quantity, ..
        } if states.from == StockState::Available => quantity.units(),
        Action::TransferStock { quantity, .. } => quantity.units(),
        Action::AdjustStock { delta, .. } => -delta,
        Action::CountStock {
            counted, expected, ..
        } => {
            // The count's delta is from the item's on-hand figure, summed over its buckets.
            let on_hand = draft.item_state().on_hand;
            if expected.is_some_and(|expected| expected != on_hand) {
                return false;
            }
            on_hand - counted
        }
        _ => return false,
    };
    // What the other buckets can spare of what bucket 0 lacks (short of it, the decision
    // refuses a move, and a withdrawal takes the rest from units holds or sales count).
    let spares = draft.spares(now);
    let others: i64 = spares
        .iter()
        .filter(|(bucket, _)| *bucket != Bucket::HOME)
        .map(|(_, spare)| spare)
        .sum();
    let missing = (needed - draft.state(Bucket::HOME).available(now).max(0)).min(others);
    transferred_in_part(
        draft,
        buckets::gather(Bucket::HOME, missing, &spares),
        now,
        room,
    )
}

/// Records `moves` (none: nothing), at most `room` of them; `true` when some did not fit and
/// wait for a later write.
fn transferred_in_part(
    draft: &mut Draft,
    moves: Option<Vec<Move>>,
    now: Timestamp,
    room: usize,
) -> bool {
    let Some(mut moves) = moves else {
        return false;
    };
    let in_part = moves.len() > room;
    moves.truncate(room);
    draft.transfer(now, moves);
    in_part
}

/// A checkout that comes after its hold stopped counting takes the units again; in a bucketed
/// item they may be spare in another bucket, so they are moved to the hold's bucket first. When
/// that takes more moves than `room`, the moves that fit are recorded alone and `true` says the
/// checkout waits for a later write, which gathers the rest (as [`gathered_in_part`] does).
pub(crate) fn refilled_in_part(
    draft: &mut Draft,
    hold: &HoldLine,
    now: Timestamp,
    room: usize,
) -> bool {
    let bucket = hold.stream.bucket();
    let missing = hold.quantity.units() - draft.state(bucket).available(now).max(0);
    if hold.counts_at(now) || missing <= 0 || draft.layout().widest == BucketCount::ONE {
        return false;
    }
    let moves = buckets::gather(bucket, missing, &draft.spares(now));
    transferred_in_part(draft, moves, now, room)
}

/// Records on the default location's bucket 0 each other location whose draft writes anything
/// and that the item is not known to be kept at yet ([`Change::StockedAt`]), so that a read of
/// the item finds every location it has streams at.
pub(crate) fn note_locations(drafts: &mut BTreeMap<LocationId, Draft>, clock: Timestamp) {
    let new: Vec<LocationId> = {
        let Some(default) = drafts.get(&LocationId::default()) else {
            return;
        };
        let known = default.state(Bucket::HOME).locations;
        drafts
            .iter()
            .filter(|(location, draft)| {
                !location.is_default() && draft.event_count() > 0 && !known.contains(*location)
            })
            .map(|(location, _)| location.clone())
            .collect()
    };
    if let Some(default) = drafts.get_mut(&LocationId::default()) {
        let now = default.now(clock);
        for location in new {
            default.record(Bucket::HOME, now, Change::StockedAt { location });
        }
    }
}
