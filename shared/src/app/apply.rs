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

use base64::Engine as _;
use futures::future::try_join_all;

use super::reservations::{hold_write, next_append, placed_lines};
use super::retry::until_no_conflict;
use super::Inventory;
use crate::domain::decide::decide;
use crate::domain::{
    Change, Command, CommandId, HoldLine, ReservationId, Sku, SkuState, Timestamp, Verdict,
};
use crate::error::AppError;
use crate::ports::{
    Acceptance, CommandOutcome, CommandRecord, DeferredCommands, ParkReason, ParkedCommand, Record,
    RecordKey, RecordWrite, StoreError, Transaction, Versioned, MAX_DEFERRED,
};
use crate::telemetry;

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

/// How long a hold command naming an unreadable reservation is deferred before it is parked.
pub const DEPENDENCY_WAIT_MILLIS: i64 = 30_000;

/// How long a queued command whose request is not accepted yet is deferred before it is
/// dropped (the API accepts within milliseconds of queueing; only a failed request stays).
pub const ACCEPT_WAIT_MILLIS: i64 = 30_000;

/// Pauses before deferred commands are tried again in process, before they are nudged onto the
/// queue: an acceptance usually lands milliseconds after its commands were queued.
const PATIENCE_MILLIS: [u64; 3] = [20, 80, 250];

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

/// A reservation's hold on the SKU being processed, as far as it is known.
enum HoldLookup {
    /// No reservation has that id.
    UnknownReservation,
    /// The reservation holds nothing on this SKU.
    NotOnSku,
    /// The hold and its record version (`None`: no record yet).
    Found(HoldLine, Option<u64>),
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

/// What one attempt at a SKU's commands came to.
struct Attempt {
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

impl Inventory {
    /// Applies `commands` (all for `sku`, in arrival order) exactly once in effect, after the
    /// SKU's deferred commands. Arrivals are taken [`MAX_DEFERRED`] at a time, so that with the
    /// deferred ones they fit one commit. Commands still deferred at the end are nudged onto the
    /// queue (same ids), so they are tried again even if nothing else arrives for the SKU.
    pub async fn apply_commands(
        &self,
        sku: &Sku,
        commands: &[Command],
    ) -> Result<ApplyReport, AppError> {
        let _turn = self.turns.take(std::iter::once(sku)).await;
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
        for pause in PATIENCE_MILLIS {
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
    pub async fn apply_arrivals(
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
    pub async fn park(
        &self,
        sku: &Sku,
        id: CommandId,
        data: &[u8],
        reason: ParkReason,
        detail: &str,
    ) -> Result<(), AppError> {
        let _turn = self.turns.take(std::iter::once(sku)).await;
        let written = until_no_conflict(&self.config, || async {
            let key = RecordKey::CommandOutcome {
                command_id: id,
                sku: sku.clone(),
            };
            let found = self.store.read_records(std::slice::from_ref(&key)).await?;
            let expected = match found.into_iter().next().flatten() {
                None => None,
                Some(Versioned {
                    version,
                    record: Record::CommandOutcome(CommandOutcome::Parked(parked)),
                }) if parked.redriven_at.is_some() => Some(version),
                Some(_) => return Ok(false),
            };
            tracing::error!(sku = %sku, command_id = %id, reason = reason.as_str(), detail,
                "command parked for an operator");
            self.store
                .write(Transaction::records(vec![RecordWrite {
                    key,
                    expected,
                    record: Record::CommandOutcome(CommandOutcome::Parked(ParkedCommand {
                        reason,
                        detail: detail.to_owned(),
                        parked_at: self.clock.now(),
                        body: parked_body(data),
                        redriven_at: None,
                    })),
                }]))
                .await
                .map(|()| true)
        })
        .await?;
        if written {
            telemetry::commands("parked", 1);
        }
        Ok(())
    }

    async fn apply_chunk(&self, sku: &Sku, commands: &[Command]) -> Result<Attempt, AppError> {
        until_no_conflict(&self.config, || self.try_apply(sku, commands)).await
    }

    async fn try_apply(&self, sku: &Sku, arrivals: &[Command]) -> Result<Attempt, StoreError> {
        let mut report = ApplyReport::default();
        let state = self.cache.load(self.store.as_ref(), sku).await?;
        let reading = self.standings(sku, arrivals, &mut report).await?;
        let due: Vec<&Command> = reading
            .commands
            .iter()
            .filter(|(_, standing)| matches!(standing, Standing::Due { .. }))
            .map(|(command, _)| command)
            .collect();
        let mut holds = self.hold_lookups(sku, &due).await?;
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
                let body =
                    serde_json::to_vec(command).map_err(|err| StoreError::Bug(err.to_string()))?;
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
                Some(Some(HoldLookup::Found(hold, _))) => {
                    decide(&next, Some(hold), command, now, grace)
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
                let append = next_append(sku, &next, now, vec![change.clone()]);
                for event in &append.events {
                    next.evolve(event);
                }
                if let Some(rid) = change.reservation_id() {
                    if let Some(HoldLookup::Found(hold, _)) = holds.get_mut(rid) {
                        hold.evolve(&change);
                        if !touched.contains(rid) {
                            touched.push(rid.clone());
                        }
                    }
                }
                changes.extend(append.events);
            }
        }
        if deferred.len() > MAX_DEFERRED {
            return Err(StoreError::Unavailable(format!(
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
            if let Some(HoldLookup::Found(hold, version)) = holds.get(rid) {
                records.push(hold_write(hold, *version));
            }
        }
        report.events = changes.len();
        report.deferred = deferred.len();
        let mut commit = Transaction::records(records);
        if !changes.is_empty() {
            commit.appends.push(crate::ports::StreamAppend {
                sku: sku.clone(),
                expected: state.version,
                events: changes.clone(),
            });
        }
        if !commit.is_empty() {
            let issued = tokio::time::Instant::now();
            self.store.write(commit).await?;
            self.cache.advance(&state, &changes, issued);
        }
        for accepted_at in applied_lags {
            telemetry::applied_after(accepted_at, clock);
        }
        tracing::info!(sku = %sku, applied = report.applied, rejected = report.rejected,
            duplicates = report.duplicates, events = report.events, parked = report.parked,
            deferred = report.deferred, "commands applied");
        Ok(Attempt { report, deferred })
    }

    /// The SKU's deferred commands followed by the arrivals, each once, and where each stands.
    /// One read for the deferred record and the arrivals' records; a second only for deferred
    /// commands that did not arrive again.
    async fn standings(
        &self,
        sku: &Sku,
        arrivals: &[Command],
        report: &mut ApplyReport,
    ) -> Result<Standings, StoreError> {
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
        let mut found = self.store.read_records(&keys).await?.into_iter();
        let (deferred_version, deferred) = match found.next().flatten() {
            None => (None, Vec::new()),
            Some(Versioned {
                version,
                record: Record::Deferred(list),
            }) => (Some(version), list.commands),
            Some(other) => {
                return Err(StoreError::Bug(format!(
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
            let mut found = self.store.read_records(&keys).await?.into_iter();
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

    /// The holds the commands act on: anchor events and hold records, read concurrently.
    async fn hold_lookups(
        &self,
        sku: &Sku,
        commands: &[&Command],
    ) -> Result<HashMap<ReservationId, HoldLookup>, StoreError> {
        let mut ids: Vec<&ReservationId> = commands
            .iter()
            .filter_map(|command| command.action.reservation_id())
            .collect();
        ids.sort();
        ids.dedup();
        let anchors = try_join_all(
            ids.iter()
                .map(|id| self.store.read_event(id.anchor_sku(), id.anchor_seq())),
        )
        .await?;
        let mut lookups = HashMap::new();
        let mut placed = Vec::new();
        for (id, anchor) in ids.into_iter().zip(anchors) {
            let lines = anchor.and_then(|anchor| placed_lines(&anchor, id));
            let lookup = match lines {
                None => HoldLookup::UnknownReservation,
                Some(lines) => match lines.into_iter().find(|hold| &hold.sku == sku) {
                    None => HoldLookup::NotOnSku,
                    Some(hold) => {
                        placed.push(id.clone());
                        HoldLookup::Found(hold, None)
                    }
                },
            };
            lookups.insert(id.clone(), lookup);
        }
        let keys: Vec<RecordKey> = placed
            .iter()
            .map(|id| RecordKey::Hold {
                reservation_id: id.clone(),
                sku: sku.clone(),
            })
            .collect();
        let records = self.store.read_records(&keys).await?;
        for (id, stored) in placed.into_iter().zip(records) {
            if let (Some(stored), Some(HoldLookup::Found(hold, version))) =
                (stored, lookups.get_mut(&id))
            {
                if let Record::Hold(recorded) = stored.record {
                    *hold = recorded;
                }
                *version = Some(stored.version);
            }
        }
        Ok(lookups)
    }
}
