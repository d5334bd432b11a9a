//! Where a line of a reservation holds: the one home of a line's placement (which location,
//! which bucket) and of the hunt for units when its bucket runs short.
//!
//! A one-bucket (or drained) item holds in bucket 0. A split item holds in this process's home
//! bucket while it has the units ([`Heads::home`]); a shopper whose bucket ran short probes a
//! few buckets whose snapshots show units, then gathers them from all, and once the item has
//! next to nothing to spare, drains it into bucket 0, where the last units sell and every
//! refusal is decided (see [`crate::domain::buckets`] and `docs/architecture.md`).

use std::sync::Arc;

use tokio::time::Instant;

use super::super::attempt::Reading;
use super::super::heads::Heads;
use super::Draft;
use crate::domain::buckets::{self, DRAIN_BELOW};
use crate::domain::{Bucket, BucketCount, Line, Move, Quantity, SkuState, StreamId};
use crate::error::AppError;
use crate::limits::{MAX_BATCH_READ_KEYS, MAX_MOVES_PER_TRANSACTION};
use crate::ports::{Clock, Snapshots};

/// Where one line will hold: the stream (its item's, at a location, in a bucket), the states
/// read of the item's buckets there, and the moves that bring the units there first (a
/// gather, or a drain into bucket 0).
pub(crate) struct LinePlan {
    pub(crate) states: Vec<(StreamId, Arc<SkuState>)>,
    pub(crate) stream: StreamId,
    pub(crate) moves: Vec<Move>,
    /// The moves take every spare unit of the item into bucket 0 (it is then drained).
    pub(crate) drain: bool,
    /// The moves are only the first part of what the line needs, as many as one write takes:
    /// they are written whether or not the line is refused, and the line is decided again.
    pub(crate) partial: bool,
    /// Whether the states were current since the request started (a refusal on them stands).
    pub(crate) current: bool,
}

impl LinePlan {
    fn on(stream: StreamId, states: Vec<(StreamId, Arc<SkuState>)>, current: bool) -> Self {
        Self {
            states,
            stream,
            moves: Vec::new(),
            drain: false,
            partial: false,
            current,
        }
    }
}

/// Buckets tried, by their snapshots, before a shopper whose bucket ran short reads them all.
const PROBES: usize = 4;

/// The most moves one line plans at once: with the drain's event on bucket 0 they touch at
/// most `MOVES_PER_LINE + 1` streams, so one item's moves always fit in one write.
const MOVES_PER_LINE: usize = MAX_MOVES_PER_TRANSACTION - 2;

/// Plans where lines hold, over what this process knows of the items' streams.
#[derive(Clone)]
pub(crate) struct Placer {
    pub(crate) heads: Arc<Heads>,
    pub(crate) snapshots: Arc<dyn Snapshots>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Placer {
    /// The state `stream` is decided on in this attempt, and whether it was current since the
    /// request started.
    async fn read(
        &self,
        sku: &StreamId,
        reading: Reading,
        started: Instant,
    ) -> Result<(Arc<SkuState>, bool), AppError> {
        Ok(match reading {
            Reading::Fresh => (self.heads.load(sku).await?, true),
            Reading::Known => {
                let known = self.heads.known(sku);
                let current = known.current_since(started);
                (known.state, current)
            }
        })
    }

    /// Where `line` holds. A one-bucket (or drained) item: in bucket 0. A bucketed item: in
    /// this process's home bucket while it has the units; else the shopper hunts for them.
    pub(crate) async fn plan(
        &self,
        line: &Line,
        reading: Reading,
        started: Instant,
    ) -> Result<LinePlan, AppError> {
        let item = &StreamId::of(&line.sku);
        // A bucketed item's layout comes from what this process knows of bucket 0 unless that
        // is its home: a hold needs only its own bucket current (a bucket drained or dropped
        // has nothing to spare, and the hunt reads bucket 0 again).
        let known = self.heads.known(item).state.layout.active();
        let zero_reading =
            if known != BucketCount::ONE && self.heads.home(item, known) != Bucket::HOME {
                Reading::Known
            } else {
                reading
            };
        let (zero, zero_current) = self.read(item, zero_reading, started).await?;
        let layout = zero.layout;
        let mut states = vec![(item.clone(), Arc::clone(&zero))];
        if layout.active() == BucketCount::ONE {
            return Ok(LinePlan::on(item.clone(), states, zero_current));
        }
        let home = self.heads.home(item, layout.active());
        let (state, current) = if home == Bucket::HOME {
            (zero, zero_current)
        } else {
            let (state, current) = self.read(&item.in_bucket(home), reading, started).await?;
            states.push((item.in_bucket(home), Arc::clone(&state)));
            (state, current)
        };
        let now = state.now(self.clock.now());
        if !current || state.for_sale(now) >= line.quantity.units() {
            return Ok(LinePlan::on(item.in_bucket(home), states, current));
        }
        self.hunt(item, line.quantity, home, states).await
    }

    /// A shopper whose bucket is short (on a current state) looks for the units: first in up
    /// to [`PROBES`] buckets whose snapshots show them (the one it finds them in becomes its
    /// home); failing that, on a fresh read of every bucket, it gathers them from the others
    /// into its bucket in the same write as the hold; and once the item has at most
    /// [`DRAIN_BELOW`] units to spare per bucket, it drains every spare unit into bucket 0,
    /// where the last units sell and every refusal is decided.
    async fn hunt(
        &self,
        item: &StreamId,
        quantity: Quantity,
        home: Bucket,
        mut states: Vec<(StreamId, Arc<SkuState>)>,
    ) -> Result<LinePlan, AppError> {
        let wanted = quantity.units();
        // Bucket 0, current: it says whether the item is drained (then the line holds there).
        let zero = self.heads.load(item).await?;
        if zero.layout.active() == BucketCount::ONE {
            return Ok(LinePlan::on(item.clone(), vec![(item.clone(), zero)], true));
        }
        let layout = zero.layout;
        states[0] = (item.clone(), zero);
        let buckets: Vec<StreamId> = layout.count.buckets().map(|b| item.in_bucket(b)).collect();
        let clock = self.clock.now();
        // The hints: the snapshots of the buckets, or of as many drawn at random as one batch
        // read takes; the item's spare is estimated from them.
        let mut sampled = buckets.clone();
        if sampled.len() > MAX_BATCH_READ_KEYS {
            fastrand::shuffle(&mut sampled);
            sampled.truncate(MAX_BATCH_READ_KEYS);
        }
        let hints = self.snapshots.read_snapshots(&sampled).await?;
        let floor = DRAIN_BELOW * i64::from(layout.count.get());
        let hinted: i64 = hints
            .iter()
            .flatten()
            .map(|s| s.for_sale(clock))
            .sum::<i64>()
            * buckets.len() as i64
            / sampled.len() as i64;
        let mut candidates: Vec<(Bucket, i64)> = sampled
            .iter()
            .zip(&hints)
            .filter_map(|(sku, hint)| Some((sku.bucket(), hint.as_ref()?.for_sale(clock))))
            .filter(|(bucket, spare)| *bucket != home && *spare >= wanted)
            .collect();
        if hinted > floor {
            let at_home = states[states.len() - 1].1.for_sale(clock);
            for _ in 0..PROBES {
                let Some(bucket) = pick_weighted(&mut candidates) else {
                    break;
                };
                let sku = item.in_bucket(bucket);
                let state = if bucket == Bucket::HOME {
                    Arc::clone(&states[0].1)
                } else {
                    self.heads.load(&sku).await?
                };
                let spare = (bucket, state.for_sale(state.now(clock)));
                if let Some(halved) = buckets::halve(home, wanted - at_home, spare) {
                    if bucket != Bucket::HOME {
                        states.push((sku, state));
                    }
                    return Ok(LinePlan {
                        states,
                        stream: item.in_bucket(home),
                        moves: vec![halved],
                        drain: false,
                        partial: false,
                        current: true,
                    });
                }
            }
        }
        let read = self.heads.load_all(buckets.iter().skip(1)).await?;
        let states: Vec<(StreamId, Arc<SkuState>)> = std::iter::once(states.swap_remove(0))
            .chain(buckets.iter().skip(1).cloned().zip(read))
            .collect();
        let every_bucket = Draft::new(item, states.iter().cloned());
        let spares = every_bucket.spares(every_bucket.now(clock));
        let total: i64 = spares.iter().map(|(_, spare)| spare).sum();
        if total > floor && total >= wanted {
            let at_home = spares
                .iter()
                .find(|(b, _)| *b == home)
                .map_or(0, |(_, s)| *s);
            // Half of the richest bucket's spare if it has the units, else what is missing
            // from as many as it takes.
            let richest = spares
                .iter()
                .copied()
                .filter(|(bucket, _)| *bucket != home)
                .max_by_key(|(bucket, spare)| (*spare, std::cmp::Reverse(*bucket)));
            let mut moves = richest
                .and_then(|richest| buckets::halve(home, wanted - at_home, richest))
                .map(|halved| vec![halved])
                .or_else(|| buckets::gather(home, wanted - at_home, &spares))
                .unwrap_or_default();
            let whole = moves.len() <= MOVES_PER_LINE;
            moves.truncate(MOVES_PER_LINE);
            return Ok(LinePlan {
                states,
                stream: item.in_bucket(home),
                moves,
                drain: false,
                partial: !whole,
                current: whole,
            });
        }
        // A drain decides refusals, so what it read must be one instant's: the buckets are read
        // again, and the first read stands only if no bucket moved in between. A unit moved by
        // a transfer (which moves both its buckets) from a bucket read late into one read early
        // would otherwise be missed, and left out of the drain.
        let first: Vec<Arc<SkuState>> = states.iter().map(|(_, state)| Arc::clone(state)).collect();
        let (_, unmoved) = self.heads.read_again(&buckets, &first).await?;
        if !unmoved {
            return Ok(LinePlan::on(item.clone(), states, false));
        }
        let mut moves = buckets::drain(&spares);
        let whole = moves.len() <= MOVES_PER_LINE;
        moves.truncate(MOVES_PER_LINE);
        Ok(LinePlan {
            states,
            stream: item.clone(),
            moves,
            drain: whole,
            partial: !whole,
            current: whole,
        })
    }

    /// After a write lost the race on stream `lost`: if that is the bucket `plan` was to hold
    /// in, another process holds there too, and this one moves its home in the item to
    /// another, so that the processes of a hot item spread over its buckets.
    pub(crate) fn move_home_from(&self, lost: &StreamId, plan: &LinePlan) {
        let layout = plan.states[0].1.layout;
        if *lost == plan.stream && layout.active() != BucketCount::ONE {
            self.heads
                .move_home(&plan.stream.home(), plan.stream.bucket(), layout.active());
        }
    }
}

/// Takes one of `candidates` out at random, each as likely as the units it has to spare.
fn pick_weighted(candidates: &mut Vec<(Bucket, i64)>) -> Option<Bucket> {
    let total: i64 = candidates.iter().map(|(_, spare)| spare).sum();
    if total <= 0 {
        return None;
    }
    let mut point = fastrand::i64(0..total);
    let index = candidates.iter().position(|(_, spare)| {
        point -= spare;
        point < 0
    })?;
    Some(candidates.swap_remove(index).0)
}
