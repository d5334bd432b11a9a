//! Applying one SKU's queued commands, in order, as one commit: the events, the hold records they
//! change and an outcome record per command. The outcome record is written in the same commit as
//! the effect, so a redelivered command finds it and takes effect once.

use std::collections::{HashMap, HashSet};

use futures::future::try_join_all;

use super::reservations::{hold_write, next_append, placed_lines};
use super::retry::until_no_conflict;
use super::Inventory;
use crate::domain::decide::decide;
use crate::domain::{
    Change, Command, CommandId, HoldLine, RejectionCode, ReservationId, Sku, SkuState, Verdict,
};
use crate::error::AppError;
use crate::ports::{
    Acceptance, CommandOutcome, CommandRecord, Commit, Record, RecordKey, RecordWrite, StoreError,
    Versioned, MAX_COMMIT_ITEMS,
};
use crate::telemetry;

/// What applying a SKU's commands came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Commands that took effect (or whose effect was already there).
    pub applied: usize,
    /// Commands recorded as rejected.
    pub rejected: usize,
    /// Commands skipped because they had been applied before (redeliveries).
    pub duplicates: usize,
    /// Events appended.
    pub events: usize,
    /// Commands dropped because their request was never accepted (answered 503).
    pub dropped: usize,
}

/// How long a hold command naming an unreadable reservation is retried before it is rejected.
pub const DEPENDENCY_WAIT_MILLIS: i64 = 30_000;

/// How long a queued command whose request is not accepted yet is held back before it is
/// dropped (the API accepts within milliseconds of queueing; only a failed request stays).
pub const ACCEPT_WAIT_MILLIS: i64 = 30_000;

impl ApplyReport {
    /// Adds another report's counts to this one.
    pub fn add(&mut self, other: &ApplyReport) {
        self.applied += other.applied;
        self.rejected += other.rejected;
        self.duplicates += other.duplicates;
        self.events += other.events;
        self.dropped += other.dropped;
    }
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

impl Inventory {
    /// Applies `commands` (all for `sku`, in arrival order) exactly once in effect.
    /// Commands are committed in chunks that keep each commit within [`MAX_COMMIT_ITEMS`] (a
    /// hold command writes an event, the hold's record and its outcome).
    pub async fn apply_commands(
        &self,
        sku: &Sku,
        commands: &[Command],
    ) -> Result<ApplyReport, AppError> {
        let _turn = self.turns.take(std::iter::once(sku)).await;
        let mut total = ApplyReport::default();
        for chunk in commands.chunks(MAX_COMMIT_ITEMS / 3) {
            total.add(&self.apply_chunk(sku, chunk).await?);
        }
        telemetry::commands("applied", total.applied);
        telemetry::commands("rejected", total.rejected);
        telemetry::commands("duplicate", total.duplicates);
        telemetry::commands("dropped", total.dropped);
        Ok(total)
    }

    /// Records that a queued record naming command `id` on `sku` could not be read: a
    /// `command_rejected` event and a rejected outcome, once. It never blocks the queue.
    pub async fn reject_malformed(&self, sku: &Sku, id: CommandId) -> Result<(), AppError> {
        let _turn = self.turns.take(std::iter::once(sku)).await;
        until_no_conflict(&self.config, || self.try_reject_malformed(sku, id)).await
    }

    async fn try_reject_malformed(&self, sku: &Sku, id: CommandId) -> Result<(), StoreError> {
        let outcome_key = RecordKey::CommandOutcome {
            command_id: id,
            sku: sku.clone(),
        };
        if let [Some(_)] = &self
            .store
            .read_records(std::slice::from_ref(&outcome_key))
            .await?[..]
        {
            return Ok(());
        }
        let state = self.cache.load(self.store.as_ref(), sku).await?;
        let reason = RejectionCode::MalformedCommand;
        let change = Change::CommandRejected {
            command_id: id,
            reason,
        };
        let append = next_append(sku, &state, state.now(self.clock.now()), vec![change]);
        let events = append.events.clone();
        let issued = tokio::time::Instant::now();
        self.store
            .commit(Commit {
                appends: vec![append],
                records: vec![RecordWrite {
                    key: outcome_key,
                    expected: None,
                    record: Record::CommandOutcome(CommandOutcome::Rejected { reason }),
                }],
            })
            .await?;
        self.cache.advance(&state, &events, issued);
        Ok(())
    }

    async fn apply_chunk(&self, sku: &Sku, commands: &[Command]) -> Result<ApplyReport, AppError> {
        until_no_conflict(&self.config, || self.try_apply(sku, commands)).await
    }

    async fn try_apply(&self, sku: &Sku, commands: &[Command]) -> Result<ApplyReport, StoreError> {
        let mut report = ApplyReport::default();
        let state = self.cache.load(self.store.as_ref(), sku).await?;
        let (todo, abandon) = self.not_yet_applied(sku, commands, &mut report).await?;
        if todo.is_empty() {
            if !abandon.is_empty() {
                self.store.commit(Commit::records(abandon)).await?;
            }
            return Ok(report);
        }
        let mut holds = self.hold_lookups(sku, &todo).await?;
        self.wait_for_unseen_reservations(&todo, &holds)?;
        let mut next: SkuState = (*state).clone();
        let mut changes = Vec::new();
        let mut outcomes = Vec::new();
        let mut touched: Vec<ReservationId> = Vec::new();
        let clock = self.clock.now();
        let grace = self.config.release_grace_secs;
        for command in &todo {
            let now = next.now(clock);
            let verdict = match command.action.reservation_id() {
                None => decide(&next, None, command, now, grace),
                Some(rid) => match holds.get(rid) {
                    Some(HoldLookup::Found(hold, _)) => {
                        decide(&next, Some(hold), command, now, grace)
                    }
                    Some(HoldLookup::NotOnSku) => decide(&next, None, command, now, grace),
                    Some(HoldLookup::UnknownReservation) | None => {
                        Verdict::Reject(RejectionCode::ReservationNotFound)
                    }
                },
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
                CommandOutcome::Rejected { .. } => report.rejected += 1,
            }
            outcomes.push((command.id, outcome));
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
        report.events = changes.len();
        let mut commit = Commit::default();
        if !changes.is_empty() {
            commit.appends.push(crate::ports::StreamAppend {
                sku: sku.clone(),
                expected: state.version,
                events: changes.clone(),
            });
        }
        for rid in &touched {
            if let Some(HoldLookup::Found(hold, version)) = holds.get(rid) {
                commit.records.push(hold_write(hold, *version));
            }
        }
        commit.records.extend(abandon);
        for (command_id, outcome) in outcomes {
            commit.records.push(RecordWrite {
                key: RecordKey::CommandOutcome {
                    command_id,
                    sku: sku.clone(),
                },
                expected: None,
                record: Record::CommandOutcome(outcome),
            });
        }
        let issued = tokio::time::Instant::now();
        self.store.commit(commit).await?;
        self.cache.advance(&state, &changes, issued);
        for command in &todo {
            telemetry::applied_after(command.accepted_at, clock);
        }
        tracing::info!(sku = %sku, applied = report.applied, rejected = report.rejected,
            duplicates = report.duplicates, events = report.events, "commands applied");
        Ok(report)
    }

    /// The commands that have no outcome yet, each once, and the abandonments to record. A
    /// command the API has recorded but not accepted yet (its request may still be answered
    /// 503) is held back: the SKU is retried later. After [`ACCEPT_WAIT_MILLIS`] the command is
    /// abandoned, by a conditional write that the API's own acceptance races against, so exactly
    /// one of "202 and applied" or "503 and dropped" happens.
    async fn not_yet_applied<'c>(
        &self,
        sku: &Sku,
        commands: &'c [Command],
        report: &mut ApplyReport,
    ) -> Result<(Vec<&'c Command>, Vec<RecordWrite>), StoreError> {
        let mut seen: HashSet<CommandId> = HashSet::new();
        let distinct: Vec<&Command> = commands.iter().filter(|c| seen.insert(c.id)).collect();
        let mut keys: Vec<RecordKey> = Vec::with_capacity(distinct.len() * 2);
        for command in &distinct {
            keys.push(RecordKey::CommandOutcome {
                command_id: command.id,
                sku: sku.clone(),
            });
            keys.push(RecordKey::Command {
                command_id: command.id,
            });
        }
        let found = self.store.read_records(&keys).await?;
        let now = self.clock.now();
        let mut todo = Vec::with_capacity(distinct.len());
        let mut abandon = Vec::new();
        for (command, pair) in distinct.into_iter().zip(found.chunks(2)) {
            if pair[0].is_some() {
                continue;
            }
            match &pair[1] {
                Some(Versioned {
                    version,
                    record: Record::Command(record),
                }) => match record.acceptance {
                    Acceptance::Accepted => todo.push(command),
                    Acceptance::Abandoned => report.dropped += 1,
                    Acceptance::Awaiting { since }
                        if now.millis() - since.millis() < ACCEPT_WAIT_MILLIS =>
                    {
                        return Err(StoreError::Unavailable(format!(
                            "command {} is not accepted yet",
                            command.id
                        )));
                    }
                    Acceptance::Awaiting { .. } => {
                        tracing::warn!(command_id = %command.id, sku = %sku,
                            "abandoning a command its request never accepted");
                        abandon.push(RecordWrite {
                            key: RecordKey::Command {
                                command_id: command.id,
                            },
                            expected: Some(*version),
                            record: Record::Command(CommandRecord {
                                acceptance: Acceptance::Abandoned,
                                ..record.clone()
                            }),
                        });
                        report.dropped += 1;
                    }
                },
                // Commands queued by the service itself (expiry) have no API record.
                _ => todo.push(command),
            }
        }
        report.duplicates = commands.len() - todo.len() - report.dropped;
        Ok((todo, abandon))
    }

    /// A hold command naming a reservation that cannot be read may have overtaken it (seed 001:
    /// a dependent message arriving first). Such a command holds its SKU back — the batch is
    /// retried — until it is [`DEPENDENCY_WAIT_MILLIS`] old; then it is rejected
    /// `reservation_not_found`.
    fn wait_for_unseen_reservations(
        &self,
        todo: &[&Command],
        holds: &HashMap<ReservationId, HoldLookup>,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let waiting = todo.iter().find(|command| {
            let unseen = command
                .action
                .reservation_id()
                .is_some_and(|id| matches!(holds.get(id), Some(HoldLookup::UnknownReservation)));
            unseen && now.millis() - command.accepted_at.millis() < DEPENDENCY_WAIT_MILLIS
        });
        match waiting {
            Some(command) => Err(StoreError::Unavailable(format!(
                "command {} names a reservation not readable yet",
                command.id
            ))),
            None => Ok(()),
        }
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
