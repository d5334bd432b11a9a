//! Applying one SKU's queued commands, in order, as one commit: the events, the hold records they
//! change and an outcome record per command. The outcome record is written in the same commit as
//! the effect, so a redelivered command finds it and takes effect once.
//!
//! A command that must wait (its request is not accepted yet, or it names a reservation not
//! readable yet) never holds the SKU's other commands back: it is **deferred** — written to the
//! SKU's deferred record in the same commit, with every later command naming the same
//! reservation, and tried again before any later command of the SKU — and nudged back onto the
//! queue. A command that cannot be applied at all is **parked** for an operator (its outcome
//! record holds the reason and its whole body) and the SKU moves on.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use base64::Engine as _;
use tokio::time::Instant;

use super::attempt::{until_decided, write, Attempt, Written};
use super::heads::Heads;
use super::reservation_book::{HoldLookup, ReservationBook};
use crate::config::{Config, ACCEPT_PATIENCE_MILLIS, ACCEPT_WAIT_MILLIS, DEPENDENCY_WAIT_MILLIS};
use crate::domain::decide::decide;
use crate::domain::{Change, Command, CommandId, ReservationId, Sku, SkuState, Timestamp, Verdict};
use crate::error::AppError;
use crate::limits::MAX_DEFERRED;
use crate::ports::{
    Acceptance, Clock, CommandOutcome, CommandQueue, CommandRecord, DeferredCommands, ParkReason,
    ParkedCommand, Record, RecordKey, RecordWrite, Records, StreamAppend, Transaction,
    Transactions, Versioned,
};
use crate::telemetry;

pub(crate) struct ApplyCommands {
    pub(crate) heads: Arc<Heads>,
    pub(crate) book: Arc<ReservationBook>,
    pub(crate) records: Arc<dyn Records>,
    pub(crate) transactions: Arc<dyn Transactions>,
    pub(crate) queue: Arc<dyn CommandQueue>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: Config,
}

/// What applying a SKU's commands came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Commands that took effect (or whose effect was already there).
    pub applied: usize,
    /// Commands recorded as rejected.
    pub rejected: usize,
    /// Commands skipped because they had been handled before (redeliveries, parked ones).
    pub duplicates: usize,
    /// Events appended.
    pub events: usize,
    /// Commands dropped because their request was never accepted (answered 503).
    pub dropped: usize,
    /// Commands set aside for an operator.
    pub parked: usize,
    /// Commands still held back when the SKU was done with (they were nudged onto the queue).
    pub deferred: usize,
}

impl ApplyReport {
    /// Adds another report's counts to this one.
    pub fn add(&mut self, other: &ApplyReport) {
        self.applied += other.applied;
        self.rejected += other.rejected;
        self.duplicates += other.duplicates;
        self.events += other.events;
        self.dropped += other.dropped;
        self.parked += other.parked;
        self.deferred += other.deferred;
    }
}

/// Commands that could not be applied: from which position they must be delivered again, and
/// why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unapplied {
    /// The position (in the commands given) of the first one to deliver again.
    pub from: usize,
    /// Why.
    pub error: AppError,
}

/// Where one command stands before it is decided.
enum Standing {
    /// Handled before (or parked and not redriven): nothing to do.
    Done,
    /// Its request was answered 503: never applied.
    Dropped,
    /// Waiting for its request's acceptance.
    AwaitingAcceptance,
    /// To decide; `outcome` is the version of its parked outcome record if it was redriven.
    Due { outcome: Option<u64> },
}

/// What applying one chunk of a SKU's commands came to.
struct Chunk {
    report: ApplyReport,
    /// The commands deferred, in order.
    deferred: Vec<Command>,
}

/// The commands of one attempt, in order, with where each stands.
struct Standings {
    /// The version of the SKU's deferred record, if it exists.
    deferred_version: Option<u64>,
    /// The commands it held.
    deferred: Vec<Command>,
    /// The deferred commands, then the arrivals, each once.
    commands: Vec<(Command, Standing)>,
    /// Commands whose request never got accepted: their records, marked abandoned.
    abandon: Vec<RecordWrite>,
}

/// Holds `command` back, and with it every later command naming its reservation.
fn defer(deferred: &mut Vec<Command>, waiting_on: &mut HashSet<ReservationId>, command: &Command) {
    deferred.push(command.clone());
    if let Some(rid) = command.action.reservation_id() {
        waiting_on.insert(rid.clone());
    }
}

/// A command's body as it is kept when parked (base64 of its JSON).
pub(crate) fn parked_body(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

impl ApplyCommands {
    /// Applies `commands` (all for `sku`, in arrival order) exactly once in effect, after the
    /// SKU's deferred commands. Arrivals are taken [`MAX_DEFERRED`] at a time, so that with the
    /// deferred ones they fit one commit. Commands still deferred at the end are nudged onto the
    /// queue (same ids), so they are tried again even if nothing else arrives for the SKU.
    pub(crate) async fn apply_commands(
        &self,
        sku: &Sku,
        commands: &[Command],
    ) -> Result<ApplyReport, AppError> {
        let _turn = self.heads.wait_turn(sku).await;
        let mut total = ApplyReport::default();
        let mut deferred = Vec::new();
        let mut chunks: Vec<&[Command]> = commands.chunks(MAX_DEFERRED).collect();
        if chunks.is_empty() {
            // Nothing arrived: the deferred commands alone are tried again.
            chunks.push(&[]);
        }
        for chunk in chunks {
            let attempt = self.apply_chunk(sku, chunk).await?;
            total.add(&attempt.report);
            deferred = attempt.deferred;
        }
        for pause in ACCEPT_PATIENCE_MILLIS {
            if deferred.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            let attempt = self.apply_chunk(sku, &[]).await?;
            total.add(&attempt.report);
            deferred = attempt.deferred;
        }
        if !deferred.is_empty() {
            tracing::info!(sku = %sku, deferred = deferred.len(),
                "commands deferred; nudging them onto the queue");
            self.queue.send(&deferred).await?;
        }
        total.deferred = deferred.len();
        telemetry::commands("applied", total.applied);
        telemetry::commands("rejected", total.rejected);
        telemetry::commands("duplicate", total.duplicates);
        telemetry::commands("dropped", total.dropped);
        telemetry::commands("parked", total.parked);
        telemetry::commands("deferred", total.deferred);
        Ok(total)
    }

    /// Applies `commands` of `sku` as they arrived from the queue, the oldest at `arrived_at`.
    /// While the SKU fails, the commands are delivered again; once the oldest has been failing
    /// for [`Config::park_failing_after`](crate::Config), they are applied one at a time and
    /// each that still fails is parked, so the shard moves on. On failure, says the position of
    /// the first command that must be delivered again.
    pub(crate) async fn apply_arrivals(
        &self,
        sku: &Sku,
        commands: &[Command],
        arrived_at: Timestamp,
    ) -> Result<ApplyReport, Unapplied> {
        let error = match self.apply_commands(sku, commands).await {
            Ok(report) => return Ok(report),
            Err(error) => error,
        };
        let failing_for = self.clock.now().millis() - arrived_at.millis();
        let bound = i64::try_from(self.config.park_failing_after.as_millis()).unwrap_or(i64::MAX);
        if failing_for < bound {
            return Err(Unapplied { from: 0, error });
        }
        let mut report = ApplyReport::default();
        for (position, command) in commands.iter().enumerate() {
            match self
                .apply_commands(sku, std::slice::from_ref(command))
                .await
            {
                Ok(one) => report.add(&one),
                Err(error) => {
                    let body = serde_json::to_vec(command).unwrap_or_default();
                    let detail = format!(
                        "still failing {} s after it arrived: {error}",
                        failing_for / 1_000
                    );
                    self.park(sku, command.id, &body, ParkReason::Failing, &detail)
                        .await
                        .map_err(|error| Unapplied {
                            from: position,
                            error,
                        })?;
                    report.parked += 1;
                }
            }
        }
        Ok(report)
    }

    /// Parks a queued record for an operator: `data` exactly as queued, filed under `id` and
    /// `sku`, with the reason and what went wrong. Once: a record already parked (and not
    /// redriven) or already applied is left as it is. It never blocks the queue.
    pub(crate) async fn park(
        &self,
        sku: &Sku,
        id: CommandId,
        data: &[u8],
        reason: ParkReason,
        detail: &str,
    ) -> Result<(), AppError> {
        let _turn = self.heads.wait_turn(sku).await;
        let key = RecordKey::CommandOutcome {
            command_id: id,
            sku: sku.clone(),
        };
        let mut rereads = 0;
        let written = until_decided(&self.config, &mut rereads, |_| async {
            let found = self
                .records
                .read_records(std::slice::from_ref(&key))
                .await?;
            let expected = match found.into_iter().next().flatten() {
                None => None,
                Some(Versioned {
                    version,
                    record: Record::CommandOutcome(CommandOutcome::Parked(parked)),
                }) if parked.redriven_at.is_some() => Some(version),
                Some(_) => return Ok(Attempt::Done(false)),
            };
            tracing::error!(sku = %sku, command_id = %id, reason = reason.as_str(), detail,
                "command parked for an operator");
            let parked = RecordWrite {
                key: key.clone(),
                expected,
                record: Record::CommandOutcome(CommandOutcome::Parked(ParkedCommand {
                    reason,
                    detail: detail.to_owned(),
                    parked_at: self.clock.now(),
                    body: parked_body(data),
                    redriven_at: None,
                })),
            };
            Ok(
                match write(
                    self.transactions.as_ref(),
                    Transaction::records(vec![parked]),
                )
                .await?
                {
                    Written::Done => Attempt::Done(true),
                    Written::Lost(_) => Attempt::Reread,
                },
            )
        })
        .await?;
        if written {
            telemetry::commands("parked", 1);
        }
        Ok(())
    }

    async fn apply_chunk(&self, sku: &Sku, commands: &[Command]) -> Result<Chunk, AppError> {
        let mut rereads = 0;
        until_decided(&self.config, &mut rereads, |_| self.attempt(sku, commands)).await
    }

    /// One decision over the SKU's deferred commands and `arrivals`, and one write.
    async fn attempt(&self, sku: &Sku, arrivals: &[Command]) -> Result<Attempt<Chunk>, AppError> {
        let mut report = ApplyReport::default();
        let state = self.heads.load(sku).await?;
        let reading = self.standings(sku, arrivals, &mut report).await?;
        let due: Vec<&Command> = reading
            .commands
            .iter()
            .filter(|(_, standing)| matches!(standing, Standing::Due { .. }))
            .map(|(command, _)| command)
            .collect();
        let mut holds = self
            .book
            .holds_on(sku, due.iter().filter_map(|c| c.action.reservation_id()))
            .await?;
        let mut next: SkuState = (*state).clone();
        let mut changes = Vec::new();
        let mut records = reading.abandon;
        let mut touched: Vec<ReservationId> = Vec::new();
        let mut deferred: Vec<Command> = Vec::new();
        let mut waiting_on: HashSet<ReservationId> = HashSet::new();
        let mut applied_lags = Vec::new();
        let clock = self.clock.now();
        let grace = self.config.release_grace_secs;
        for (command, standing) in &reading.commands {
            let reservation = command.action.reservation_id();
            let outcome_version = match standing {
                Standing::Done => {
                    report.duplicates += 1;
                    continue;
                }
                Standing::Dropped => {
                    report.dropped += 1;
                    continue;
                }
                Standing::AwaitingAcceptance => {
                    defer(&mut deferred, &mut waiting_on, command);
                    continue;
                }
                Standing::Due { outcome } => *outcome,
            };
            // A later command on a reservation something waits for keeps its place behind it.
            if reservation.is_some_and(|rid| waiting_on.contains(rid)) {
                defer(&mut deferred, &mut waiting_on, command);
                continue;
            }
            let outcome_key = RecordKey::CommandOutcome {
                command_id: command.id,
                sku: sku.clone(),
            };
            let lookup = reservation.map(|rid| holds.get(rid));
            if let Some(None | Some(HoldLookup::UnknownReservation)) = lookup {
                if clock.millis() - command.accepted_at.millis() < DEPENDENCY_WAIT_MILLIS {
                    defer(&mut deferred, &mut waiting_on, command);
                    continue;
                }
                let body = serde_json::to_vec(command)
                    .map_err(|err| AppError::Internal(err.to_string()))?;
                tracing::error!(sku = %sku, command_id = %command.id,
                    "parking a command whose reservation stayed unreadable");
                records.push(RecordWrite {
                    key: outcome_key,
                    expected: outcome_version,
                    record: Record::CommandOutcome(CommandOutcome::Parked(ParkedCommand {
                        reason: ParkReason::DependencyUnreadable,
                        detail: format!(
                            "reservation {} was not readable within {} s of the command's \
                             acceptance",
                            reservation.map(ToString::to_string).unwrap_or_default(),
                            DEPENDENCY_WAIT_MILLIS / 1_000
                        ),
                        parked_at: clock,
                        body: parked_body(&body),
                        redriven_at: None,
                    })),
                });
                report.parked += 1;
                continue;
            }
            let now = next.now(clock);
            let verdict = match lookup {
                Some(Some(HoldLookup::Found(stored))) => {
                    decide(&next, Some(&stored.hold), command, now, grace)
                }
                _ => decide(&next, None, command, now, grace),
            };
            let (change, outcome) = match verdict {
                Verdict::Apply(change) => (Some(change), CommandOutcome::Applied),
                Verdict::AlreadyDone => (None, CommandOutcome::Applied),
                Verdict::Reject(reason) => (
                    Some(Change::CommandRejected {
                        command_id: command.id,
                        reason,
                    }),
                    CommandOutcome::Rejected { reason },
                ),
            };
            match outcome {
                CommandOutcome::Applied => report.applied += 1,
                _ => report.rejected += 1,
            }
            applied_lags.push(command.accepted_at);
            records.push(RecordWrite {
                key: outcome_key,
                expected: outcome_version,
                record: Record::CommandOutcome(outcome),
            });
            if let Some(change) = change {
                let append = StreamAppend::after(&next, sku, now, vec![change.clone()]);
                for event in &append.events {
                    next.evolve(event);
                }
                if let Some(rid) = change.reservation_id() {
                    if let Some(HoldLookup::Found(stored)) = holds.get_mut(rid) {
                        stored.hold.evolve(&change);
                        if !touched.contains(rid) {
                            touched.push(rid.clone());
                        }
                    }
                }
                changes.extend(append.events);
            }
        }
        if deferred.len() > MAX_DEFERRED {
            return Err(AppError::NotYet(format!(
                "{} commands of {sku} are waiting; at most {MAX_DEFERRED} are held back",
                deferred.len()
            )));
        }
        let ids = |commands: &[Command]| commands.iter().map(|c| c.id).collect::<Vec<_>>();
        if ids(&deferred) != ids(&reading.deferred) {
            records.push(RecordWrite {
                key: RecordKey::Deferred { sku: sku.clone() },
                expected: reading.deferred_version,
                record: Record::Deferred(DeferredCommands {
                    commands: deferred.clone(),
                }),
            });
        }
        for rid in &touched {
            if let Some(HoldLookup::Found(stored)) = holds.get(rid) {
                records.push(stored.write());
            }
        }
        report.events = changes.len();
        report.deferred = deferred.len();
        let mut transaction = Transaction::records(records);
        if !changes.is_empty() {
            transaction.appends.push(StreamAppend {
                sku: sku.clone(),
                expected: state.version,
                events: changes.clone(),
            });
        }
        if !transaction.is_empty() {
            let issued = Instant::now();
            if let Written::Lost(_) = write(self.transactions.as_ref(), transaction).await? {
                return Ok(Attempt::Reread);
            }
            self.heads.advance(&state, &changes, issued);
        }
        for accepted_at in applied_lags {
            telemetry::applied_after(accepted_at, clock);
        }
        tracing::info!(sku = %sku, applied = report.applied, rejected = report.rejected,
            duplicates = report.duplicates, events = report.events, parked = report.parked,
            deferred = report.deferred, "commands applied");
        Ok(Attempt::Done(Chunk { report, deferred }))
    }

    /// The SKU's deferred commands followed by the arrivals, each once, and where each stands.
    /// One read for the deferred record and the arrivals' records; a second only for deferred
    /// commands that did not arrive again.
    async fn standings(
        &self,
        sku: &Sku,
        arrivals: &[Command],
        report: &mut ApplyReport,
    ) -> Result<Standings, AppError> {
        let record_keys = |command: &Command| {
            [
                RecordKey::CommandOutcome {
                    command_id: command.id,
                    sku: sku.clone(),
                },
                RecordKey::Command {
                    command_id: command.id,
                },
            ]
        };
        let mut seen: HashSet<CommandId> = HashSet::new();
        let distinct: Vec<&Command> = arrivals.iter().filter(|c| seen.insert(c.id)).collect();
        let mut keys = vec![RecordKey::Deferred { sku: sku.clone() }];
        keys.extend(distinct.iter().flat_map(|c| record_keys(c)));
        let mut found = self.records.read_records(&keys).await?.into_iter();
        let (deferred_version, deferred) = match found.next().flatten() {
            None => (None, Vec::new()),
            Some(Versioned {
                version,
                record: Record::Deferred(list),
            }) => (Some(version), list.commands),
            Some(other) => {
                return Err(AppError::Internal(format!(
                    "unexpected record under the deferred commands of {sku}: {other:?}"
                )))
            }
        };
        let mut stored: HashMap<CommandId, (Option<Versioned>, Option<Versioned>)> = HashMap::new();
        for command in &distinct {
            let outcome = found.next().flatten();
            let record = found.next().flatten();
            stored.insert(command.id, (outcome, record));
        }
        let mut order: HashSet<CommandId> = HashSet::new();
        let candidates: Vec<&Command> = deferred
            .iter()
            .chain(arrivals)
            .filter(|c| order.insert(c.id))
            .collect();
        report.duplicates += deferred.len() + arrivals.len() - candidates.len();
        let missing: Vec<&Command> = candidates
            .iter()
            .filter(|c| !stored.contains_key(&c.id))
            .copied()
            .collect();
        if !missing.is_empty() {
            let keys: Vec<RecordKey> = missing.iter().flat_map(|c| record_keys(c)).collect();
            let mut found = self.records.read_records(&keys).await?.into_iter();
            for command in missing {
                let outcome = found.next().flatten();
                let record = found.next().flatten();
                stored.insert(command.id, (outcome, record));
            }
        }
        let now = self.clock.now();
        let mut abandon = Vec::new();
        let mut commands = Vec::with_capacity(candidates.len());
        for command in candidates {
            let (outcome, record) = stored.remove(&command.id).unwrap_or_default();
            let standing = match (outcome, record) {
                (
                    Some(Versioned {
                        version,
                        record: Record::CommandOutcome(CommandOutcome::Parked(parked)),
                    }),
                    _,
                ) if parked.redriven_at.is_some() => Standing::Due {
                    outcome: Some(version),
                },
                (Some(_), _) => Standing::Done,
                (
                    None,
                    Some(Versioned {
                        version,
                        record: Record::Command(record),
                    }),
                ) => match record.acceptance {
                    Acceptance::Accepted => Standing::Due { outcome: None },
                    Acceptance::Abandoned => Standing::Dropped,
                    Acceptance::Awaiting { since }
                        if now.millis() - since.millis() < ACCEPT_WAIT_MILLIS =>
                    {
                        Standing::AwaitingAcceptance
                    }
                    Acceptance::Awaiting { .. } => {
                        tracing::warn!(command_id = %command.id, sku = %sku,
                            "abandoning a command its request never accepted");
                        abandon.push(RecordWrite {
                            key: RecordKey::Command {
                                command_id: command.id,
                            },
                            expected: Some(version),
                            record: Record::Command(CommandRecord {
                                acceptance: Acceptance::Abandoned,
                                ..record
                            }),
                        });
                        Standing::Dropped
                    }
                },
                // Commands queued by the service itself (expiry) have no API record.
                (None, _) => Standing::Due { outcome: None },
            };
            commands.push((command.clone(), standing));
        }
        Ok(Standings {
            deferred_version,
            deferred,
            commands,
            abandon,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::given::{sku, Given};
    use crate::domain::{Caller, Quantity};

    #[tokio::test]
    async fn a_command_delivered_twice_takes_effect_once() {
        let given = Given::new();
        let admin = Caller::local_admin();
        let quantity = Quantity::new(5).unwrap();
        given
            .inventory
            .receive_stock(sku("A"), quantity, None, None, &admin)
            .await
            .unwrap();
        let batch = given.queue.try_receive(10);
        let twice = [batch.clone(), batch].concat();

        let report = given
            .inventory
            .apply_commands(&sku("A"), &twice)
            .await
            .unwrap();
        assert_eq!(
            (report.applied, report.duplicates, report.events),
            (1, 1, 1)
        );
        let again = given
            .inventory
            .apply_commands(&sku("A"), &twice)
            .await
            .unwrap();
        assert_eq!((again.applied, again.duplicates, again.events), (0, 2, 0));
        assert_eq!(given.available("A").await, 5);
    }
}
