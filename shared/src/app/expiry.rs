//! The expiry timer's sweep: every hold whose release grace is over gets a `hold_expired`
//! event, exactly once, unless it was committed or released first.
//!
//! Hold events are indexed by expiry (DynamoDB: the `ExpiryIndex` GSI, 16 shards queried by
//! `expires_at` range). A sweep reads its mark (how far the last complete sweep reached), finds
//! every hold event that expired in `(mark, now - grace]`, applies one `expire_hold` command
//! per hold through the same path as queued commands (the hold's record and the conditional
//! append decide, so a hold is expired once however many sweeps find it), and only then moves
//! the mark. A sweep that fails moves nothing: the next one covers the same window again.

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt};
use serde::Serialize;
use tokio::time::Instant;

use super::Inventory;
use crate::domain::{Action, Command, CommandId, Sku, Timestamp, TtlSeconds};
use crate::error::AppError;
use crate::ports::{Commit, Record, RecordKey, RecordWrite, StoreError, SweepMark, Versioned};

/// How far back the first sweep looks: the longest hold plus the longest grace, and an hour.
const FIRST_SWEEP_LOOKBACK_MILLIS: i64 = (TtlSeconds::MAX as i64 + 2 * 3_600) * 1_000;

/// The most holds one sweep expires; after a long outage the backlog is caught up over several
/// sweeps, oldest first.
const MAX_HOLDS_PER_SWEEP: usize = 5_000;

/// SKUs expired concurrently by one sweep.
const SWEEP_CONCURRENCY: usize = 16;

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
}

/// What one run of the expiry timer did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TimerReport {
    /// The sweeps that completed.
    pub sweeps: Vec<SweepReport>,
    /// Sweeps that failed (each logged; the next sweep covers their window).
    pub failed: usize,
}

impl Inventory {
    /// One run of the expiry timer: [`crate::Config::sweeps_per_invocation`] sweeps,
    /// [`crate::Config::sweep_interval`] apart. Fails only if its last sweep failed, so a run
    /// that ends behind is reported; the next run catches up either way.
    pub async fn run_expiry_timer(&self) -> Result<TimerReport, AppError> {
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
        last.map(|()| report)
    }

    /// One sweep of the expiry index (see the module documentation).
    pub async fn sweep_expired_holds(&self) -> Result<SweepReport, AppError> {
        let key = RecordKey::ExpirySweep;
        let stored = self
            .store
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
        let mut holds = self.store.lapsing_holds(after, through).await?;
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
            by_sku.entry(hold.sku.clone()).or_default().push(Command {
                id: CommandId::for_expiry(&hold.reservation_id, &hold.sku, hold.expires_at),
                sku: hold.sku,
                accepted_at: now,
                action: Action::ExpireHold {
                    reservation_id: hold.reservation_id,
                },
            });
        }
        let applies: Vec<_> = by_sku
            .iter()
            .map(|(sku, commands)| self.apply_commands(sku, commands))
            .collect();
        let results: Vec<_> = stream::iter(applies)
            .buffer_unordered(SWEEP_CONCURRENCY)
            .collect()
            .await;
        for result in results {
            report.expired += result?.events;
        }
        let moved = self
            .store
            .commit(Commit::records(vec![RecordWrite {
                key,
                expected: version,
                record: Record::ExpirySweep(SweepMark {
                    swept_through: through,
                }),
            }]))
            .await;
        match moved {
            // Another sweep moved the mark meanwhile: it covered this window too.
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(err) => return Err(err.into()),
        }
        report.through = through;
        tracing::info!(
            after = after.millis(),
            through = through.millis(),
            found = report.found,
            expired = report.expired,
            "expiry sweep"
        );
        Ok(report)
    }
}
