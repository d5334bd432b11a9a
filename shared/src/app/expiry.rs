//! The expiry timer's sweep: every hold whose release grace is over gets a `hold_expired`
//! event, exactly once, unless it was committed or released first.
//!
//! Hold events are indexed by expiry (DynamoDB: the `ExpiryIndex` GSI, 16 shards queried by
//! `expires_at` range). A sweep reads its mark (how far the last complete sweep reached), finds
//! every hold event that expired in `(mark, now - grace]`, applies one `expire_hold` command
//! per hold through the same path as queued commands (the hold's record and the conditional
//! append decide, so a hold is expired once however many sweeps find it), and only then moves
//! the mark. A SKU whose expiries cannot be written is handed to the command queue (the
//! processor applies them like any queued command), so one failing SKU never holds back the
//! others; only if the queue fails too does the mark stop just before that SKU's earliest hold.
//! A sweep that fails as a whole moves nothing: the next one covers the same window again.
//! Expiry commands are accepted when the hold expired, so a hold whose reservation cannot be read
//! is rejected once the processor's wait for it is over, instead of failing every sweep.

use std::collections::BTreeMap;

use std::sync::Arc;

use futures::stream::{self, StreamExt};
use serde::Serialize;
use tokio::time::Instant;

use super::apply::ApplyCommands;
use super::attempt::write;
use crate::config::{Config, LONGEST_HOLD_LIFE_SECS};
use crate::domain::{Action, Command, CommandId, Sku, Timestamp};
use crate::error::AppError;
use crate::limits::{MAX_HOLDS_PER_SWEEP, SWEEP_CONCURRENCY};
use crate::ports::{
    Clock, CommandQueue, ExpiryIndex, ParkedIndex, Record, RecordKey, RecordWrite, Records,
    SweepMark, Transaction, Transactions, Versioned,
};
use crate::telemetry;

/// How far back the first sweep looks: as far as a hold can count.
const FIRST_SWEEP_LOOKBACK_MILLIS: i64 = LONGEST_HOLD_LIFE_SECS * 1_000;

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Holds expiring after this instant were looked at…
    pub after: Timestamp,
    /// …up to this one (the new mark).
    pub through: Timestamp,
    /// Hold events found in the window.
    pub found: usize,
    /// `hold_expired` events written.
    pub expired: usize,
    /// SKUs whose expiries could not be written here and were put on the command queue instead,
    /// for the processor to apply (with its own retries): the mark moves on past them.
    pub queued_skus: usize,
    /// SKUs whose expiries could be neither written nor queued: the mark stops short of their
    /// earliest hold, so the next sweep finds them again.
    pub failed_skus: usize,
}

/// What one run of the expiry timer did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TimerReport {
    /// The sweeps that completed.
    pub sweeps: Vec<SweepReport>,
    /// Sweeps that failed (each logged; the next sweep covers their window).
    pub failed: usize,
    /// Commands parked for an operator at the end of the run, if they could be counted.
    pub parked: Option<usize>,
}

pub(crate) struct SweepExpiry {
    pub(crate) apply: Arc<ApplyCommands>,
    pub(crate) index: Arc<dyn ExpiryIndex>,
    pub(crate) parked: Arc<dyn ParkedIndex>,
    pub(crate) records: Arc<dyn Records>,
    pub(crate) transactions: Arc<dyn Transactions>,
    pub(crate) queue: Arc<dyn CommandQueue>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: Config,
}

impl SweepExpiry {
    /// One run of the expiry timer: [`crate::Config::sweeps_per_invocation`] sweeps,
    /// [`crate::Config::sweep_interval`] apart. Fails only if its last sweep failed, so a run
    /// that ends behind is reported; the next run catches up either way.
    pub(crate) async fn run_expiry_timer(&self) -> Result<TimerReport, AppError> {
        let mut report = TimerReport::default();
        let start = Instant::now();
        let mut last = Ok(());
        for sweep in 0..self.config.sweeps_per_invocation {
            tokio::time::sleep_until(start + self.config.sweep_interval * sweep).await;
            match self.sweep_expired_holds().await {
                Ok(done) => {
                    report.sweeps.push(done);
                    last = Ok(());
                }
                Err(err) => {
                    tracing::warn!(error = %err, "expiry sweep failed");
                    report.failed += 1;
                    last = Err(err);
                }
            }
        }
        // The parked-commands alarm watches this figure: it stays raised while anything is
        // parked, not only when something was parked.
        match self.parked.parked_commands().await {
            Ok(parked) => {
                report.parked = Some(parked.len());
                telemetry::parked_commands(parked.len());
            }
            Err(err) => tracing::warn!(error = %err, "could not count the parked commands"),
        }
        last.map(|()| report)
    }

    /// One sweep of the expiry index (see the module documentation).
    pub(crate) async fn sweep_expired_holds(&self) -> Result<SweepReport, AppError> {
        let key = RecordKey::ExpirySweep;
        let stored = self
            .records
            .read_records(std::slice::from_ref(&key))
            .await?
            .pop()
            .flatten();
        let now = self.clock.now();
        let due_through = now.plus_seconds(-self.config.release_grace_secs);
        let (after, version) = match stored {
            Some(Versioned {
                version,
                record: Record::ExpirySweep(mark),
            }) => (mark.swept_through, Some(version)),
            _ => (due_through.plus_millis(-FIRST_SWEEP_LOOKBACK_MILLIS), None),
        };
        let mut through = due_through;
        let mut report = SweepReport {
            after,
            through: after,
            ..SweepReport::default()
        };
        if through <= after {
            return Ok(report);
        }
        // A bounded slice of a backlog (16 partitions of at most a sweep's holds each), cut
        // below to a sweep's; the mark moves only as far as the slice is complete.
        let lapsing = self
            .index
            .lapsing_holds(after, through, MAX_HOLDS_PER_SWEEP + 1)
            .await?;
        let mut holds = lapsing.holds;
        through = lapsing.through;
        if holds.len() > MAX_HOLDS_PER_SWEEP {
            holds.sort_by_key(|hold| hold.expires_at);
            let first_left = holds[MAX_HOLDS_PER_SWEEP].expires_at;
            if holds[0].expires_at < first_left {
                holds.retain(|hold| hold.expires_at < first_left);
                through = first_left.plus_millis(-1);
            }
        }
        report.found = holds.len();
        let mut by_sku: BTreeMap<Sku, Vec<Command>> = BTreeMap::new();
        for hold in holds {
            // Accepted when the hold expired: a hold command waits for a reservation it cannot
            // read for a while after its acceptance, and an expiry's wait is long over.
            // An item's commands are queued and applied under the item, whichever bucket holds.
            let item = hold.stream.item().clone();
            by_sku.entry(item.clone()).or_default().push(Command {
                id: CommandId::for_expiry(&hold.reservation_id, &hold.stream, hold.expires_at),
                sku: item,
                accepted_at: hold.expires_at,
                action: Action::ExpireHold {
                    reservation_id: hold.reservation_id,
                },
            });
        }
        let applies: Vec<_> = by_sku
            .iter()
            .map(|(sku, commands)| async move {
                (commands, self.apply.apply_commands(sku, commands).await)
            })
            .collect();
        let results: Vec<_> = stream::iter(applies)
            .buffer_unordered(SWEEP_CONCURRENCY)
            .collect()
            .await;
        for (commands, result) in results {
            let Err(err) = result.map(|applied| report.expired += applied.holds_expired) else {
                continue;
            };
            let sku = &commands[0].sku;
            match self.queue.send(commands).await {
                Ok(()) => {
                    tracing::warn!(%sku, error = %err,
                        "expiring a SKU's holds failed; queued them for the processor");
                    report.queued_skus += 1;
                }
                Err(queue) => {
                    // Hold the mark back to just before this SKU's earliest hold only.
                    let earliest = commands.iter().map(|c| c.accepted_at).min();
                    if let Some(earliest) = earliest {
                        through = through.min(earliest.plus_millis(-1));
                    }
                    tracing::warn!(%sku, error = %err, queue = %queue,
                        "expiring a SKU's holds failed; the next sweep retries them");
                    report.failed_skus += 1;
                }
            }
        }
        if through <= after {
            report.through = after;
            return Ok(report);
        }
        let mark = RecordWrite {
            key,
            expected: version,
            record: Record::ExpirySweep(SweepMark {
                swept_through: through,
            }),
        };
        // Whether written or not (another sweep moved the mark meanwhile: it covered this
        // window too), the mark has moved.
        write(self.transactions.as_ref(), Transaction::records(vec![mark])).await?;
        report.through = through;
        telemetry::holds_expired(report.expired);
        tracing::info!(
            after = after.millis(),
            through = through.millis(),
            found = report.found,
            expired = report.expired,
            queued_skus = report.queued_skus,
            failed_skus = report.failed_skus,
            "expiry sweep"
        );
        Ok(report)
    }
}
