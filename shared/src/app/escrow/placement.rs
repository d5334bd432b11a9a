//! Where a line of a reservation holds: the one home of a line's placement (which location,
//! which bucket) and of the hunt for units when its bucket runs short.
//!
//! A line held at the one location that may hold it (the one it names, the pickup store, or
//! the shop's one location that fulfils online) needs no figures to place: its location's
//! state decides it as ever. A line that several locations may hold is allocated by the one
//! rule of [`crate::domain::allocation`], over what each location has for sale as this process
//! knows it (no read when warm); a refusal of the allocation stands only on figures current
//! since the request started, else the request reads every candidate again and decides anew.
//!
//! A one-bucket (or drained) item holds in bucket 0. A split item holds in this process's home
//! bucket while it has the units ([`Heads::home`]); a shopper whose bucket ran short probes a
//! few buckets whose snapshots show units, then gathers them from all, and once the item has
//! next to nothing to spare, drains it into bucket 0, where the last units sell and every
//! refusal is decided (see [`crate::domain::buckets`] and `docs/architecture.md`).

use std::sync::Arc;

use futures::future::try_join_all;
use tokio::time::Instant;

use super::super::attempt::Reading;
use super::super::heads::Heads;
use super::super::locations::LocationBook;
use super::Draft;
use crate::domain::allocation::{self, AllocationRefusal, Allocator, Preference};
use crate::domain::buckets::{self, DRAIN_BELOW};
use crate::domain::{
    Bucket, BucketCount, Line, Location, LocationId, Move, Quantity, SkuState, StreamId,
};
use crate::error::AppError;
use crate::limits::{MAX_BATCH_READ_KEYS, MAX_LINES, MAX_MOVES_PER_TRANSACTION};
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

/// What an item has for sale at a location, as allocation sees it.
struct ForSale {
    for_sale: i64,
    /// Current since the request started (a refusal on it stands).
    current: bool,
    /// The item has ever been kept there.
    exists: bool,
    /// The location sells from bucket 0 alone: `for_sale` is its figure.
    alone: bool,
}

/// What allocation takes a location split over buckets (and not drained) to have: more than
/// any line asks.
const SPLIT_HAS_ENOUGH: i64 = Quantity::MAX as i64 * MAX_LINES as i64;

/// Buckets tried, by their snapshots, before a shopper whose bucket ran short reads them all.
const PROBES: usize = 4;

/// The most moves one line plans at once: with the drain's event on bucket 0 they touch at
/// most `MOVES_PER_LINE + 1` streams, so one item's moves always fit in one write.
const MOVES_PER_LINE: usize = MAX_MOVES_PER_TRANSACTION - 2;

/// A request line's units held at one location: the line's place in the request, the item's
/// stream there (bucket 0) and the units.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub(crate) line: usize,
    pub(crate) at: StreamId,
    pub(crate) quantity: Quantity,
    /// Allocated among several locations (a refusal there is allocated again, not answered).
    pub(crate) allocated: bool,
    /// Its location sells from bucket 0 alone, whose state the allocation decided on (read
    /// now on a fresh reading): it is placed on that state, without reading it again.
    pub(crate) decided: bool,
}

/// Where a request's lines are held.
pub(crate) enum Allocated {
    /// Each line's parts (one per location it is held at), in the order of the lines.
    Parts(Vec<Part>),
    /// The answer to the request: a refusal decided on figures current since it started.
    Refused(AppError),
    /// Refused on figures that may be stale: decided again on a fresh read.
    Reread,
}

/// Plans where lines hold, over what this process knows of the items' streams.
#[derive(Clone)]
pub(crate) struct Placer {
    pub(crate) heads: Arc<Heads>,
    pub(crate) snapshots: Arc<dyn Snapshots>,
    pub(crate) locations: Arc<LocationBook>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Placer {
    /// The one location `line` may be held at (bucket 0 of its item there), if only one may
    /// hold it; `None` when it is allocated among several.
    pub(crate) async fn fixed(
        &self,
        line: &Line,
        preference: &Preference,
    ) -> Result<Option<StreamId>, AppError> {
        let all = self.locations.known().await?;
        let eligible = self.eligible(&all, line, preference).await?;
        Ok(match eligible.as_slice() {
            [only] => Some(StreamId::at(&line.sku, only)),
            _ => None,
        })
    }

    /// Where each of `lines` is held: at the one location that may hold it, or allocated
    /// among several (see the module documentation).
    pub(crate) async fn allocate(
        &self,
        lines: &[Line],
        preference: &Preference,
        reading: Reading,
        started: Instant,
    ) -> Result<Allocated, AppError> {
        let all = self.locations.known().await?;
        let mut parts = Vec::new();
        let mut open: Vec<(usize, Vec<LocationId>)> = Vec::new();
        for (index, line) in lines.iter().enumerate() {
            match self.eligible(&all, line, preference).await?.as_slice() {
                [only] => parts.push(Part {
                    line: index,
                    at: StreamId::at(&line.sku, only),
                    quantity: line.quantity,
                    allocated: false,
                    decided: false,
                }),
                several => open.push((index, several.to_vec())),
            }
        }
        if open.is_empty() {
            return Ok(Allocated::Parts(parts));
        }
        let candidates: Vec<StreamId> = open
            .iter()
            .flat_map(|(index, eligible)| {
                eligible.iter().map(|l| StreamId::at(&lines[*index].sku, l))
            })
            .collect();
        let figures = try_join_all(
            candidates
                .iter()
                .map(|at| self.for_sale_at(at, reading, started)),
        )
        .await?;
        let current = figures.iter().all(|figure| figure.current);
        let mut allocator = Allocator::new(
            all.to_vec(),
            candidates
                .iter()
                .zip(&figures)
                .map(|(at, figure)| ((at.item().clone(), at.location().clone()), figure.for_sale)),
        );
        for (index, _) in &open {
            let line = &lines[*index];
            match allocator.allocate(&line.sku, line.quantity, line.location.as_ref(), preference) {
                Ok(taken) => parts.extend(taken.into_iter().map(|(location, quantity)| {
                    let at = StreamId::at(&line.sku, &location);
                    let decided = candidates
                        .iter()
                        .zip(&figures)
                        .any(|(candidate, figure)| *candidate == at && figure.alone);
                    Part {
                        line: *index,
                        at,
                        quantity,
                        allocated: true,
                        decided,
                    }
                })),
                Err(AllocationRefusal::InsufficientStock { .. }) if !current => {
                    return Ok(Allocated::Reread)
                }
                Err(AllocationRefusal::InsufficientStock {
                    requested,
                    available,
                }) => {
                    let anywhere = candidates
                        .iter()
                        .zip(&figures)
                        .any(|(at, figure)| at.item() == &line.sku && figure.exists);
                    return Ok(Allocated::Refused(if anywhere {
                        AppError::InsufficientStock {
                            sku: line.sku.clone(),
                            requested,
                            available,
                        }
                    } else {
                        AppError::UnknownSku(line.sku.clone())
                    }));
                }
                Err(AllocationRefusal::NoLocation { why }) => {
                    return Err(AppError::LocationUnavailable {
                        sku: line.sku.clone(),
                        why,
                    })
                }
            }
        }
        parts.sort_by_key(|part| part.line);
        Ok(Allocated::Parts(parts))
    }

    /// The locations of the shop (`all`) that may hold `line`; a location it names (or the
    /// pickup store) that this process does not know is looked up again first.
    async fn eligible(
        &self,
        all: &[Location],
        line: &Line,
        preference: &Preference,
    ) -> Result<Vec<LocationId>, AppError> {
        let named = line.location.as_ref().or(preference.pickup_at.as_ref());
        let refreshed: Arc<Vec<Location>>;
        let all = match named {
            Some(id) if !all.iter().any(|l| &l.id == id) => {
                // Unknown to the shop (404), or registered since this process read it.
                self.locations.known_location(id).await?;
                refreshed = self.locations.known().await?;
                refreshed.as_slice()
            }
            _ => all,
        };
        allocation::eligible(all, line.location.as_ref(), preference)
            .map(|eligible| eligible.into_iter().map(|l| l.id.clone()).collect())
            .map_err(|refusal| AppError::LocationUnavailable {
                sku: line.sku.clone(),
                why: match refusal {
                    AllocationRefusal::NoLocation { why } => why,
                    AllocationRefusal::InsufficientStock { .. } => String::new(),
                },
            })
    }

    /// What the item has for sale at a location (`at`: its bucket 0 there), for allocation, as
    /// known or read now. A location whose stock is split over buckets and not drained is
    /// taken to have what any line asks ([`SPLIT_HAS_ENOUGH`]): reading every bucket of every
    /// candidate to decide where to ask would cost more than asking. Placed there, the line
    /// finds the units in its buckets (a hunt, a gather) or drains them into bucket 0, after
    /// which the location's figure is exact, and a line refused where it was allocated is
    /// allocated again on it.
    async fn for_sale_at(
        &self,
        at: &StreamId,
        reading: Reading,
        started: Instant,
    ) -> Result<ForSale, AppError> {
        let (zero, current) = self.read(at, reading, started).await?;
        let now = zero.now(self.clock.now());
        let for_sale = if zero.layout.active() == BucketCount::ONE {
            zero.for_sale(now)
        } else {
            SPLIT_HAS_ENOUGH
        };
        Ok(ForSale {
            for_sale,
            current,
            exists: zero.exists(),
            alone: zero.layout.active() == BucketCount::ONE,
        })
    }

    /// The state `stream` is decided on in this attempt, and whether it was current since the
    /// request started.
    async fn read(
        &self,
        sku: &StreamId,
        reading: Reading,
        started: Instant,
    ) -> Result<(Arc<SkuState>, bool), AppError> {
        let known = self.heads.known(sku);
        Ok(match reading {
            // A stream this process never read is read now: deciding on no knowledge of it
            // would refuse, or pass it over, for nothing.
            Reading::Known if known.current_at.is_some() => {
                let current = known.current_since(started);
                (known.state, current)
            }
            Reading::Known | Reading::Fresh => (self.heads.load(sku).await?, true),
        })
    }

    /// Where `quantity` units of an item at a location (`item`: its bucket 0 there) hold. A
    /// one-bucket (or drained) item: in bucket 0. A bucketed item: in this process's home
    /// bucket while it has the units; else the shopper hunts for them.
    pub(crate) async fn plan(
        &self,
        item: &StreamId,
        quantity: Quantity,
        reading: Reading,
        started: Instant,
    ) -> Result<LinePlan, AppError> {
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
        if !current || state.for_sale(now) >= quantity.units() {
            return Ok(LinePlan::on(item.in_bucket(home), states, current));
        }
        self.hunt(item, quantity, home, states).await
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
