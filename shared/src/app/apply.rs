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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use base64::Engine as _;
use futures::FutureExt as _;
use tokio::time::Instant;

use super::attempt::{until_decided, write, Attempt, Written};
use super::escrow::{self, Draft, SPREAD_MARKS};
use super::heads::Heads;
use super::reservation_book::{HoldLookup, ReservationBook, StoredHold};
use crate::config::{Config, ACCEPT_PATIENCE_MILLIS, ACCEPT_WAIT_MILLIS, DEPENDENCY_WAIT_MILLIS};
use crate::domain::decide::{decide, shipped_from};
use crate::domain::{
    Action, Bucket, Change, ClientId, Command, CommandId, HoldLine, LocationId, RejectionCode,
    ReservationId, Sku, StreamId, Timestamp, Verdict,
};
use crate::error::{panic_message, AppError};
use crate::limits::{MAX_DEFERRED, MAX_MOVES_PER_TRANSACTION, MAX_TRANSACTION_ITEMS};
use crate::ports::{
    Acceptance, Clock, CommandOutcome, CommandQueue, CommandRecord, DeferredCommands, ParkReason,
    ParkedCommand, Record, RecordKey, RecordWrite, Records, Transaction, Transactions, Versioned,
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
    /// `hold_expired` events among the events (one per hold, whatever a split item moves with
    /// it).
    pub holds_expired: usize,
    /// The changes commands made, by kind ([`Change::kind`]): one per command, whatever its
    /// buckets share of it.
    pub changes: BTreeMap<&'static str, usize>,
    /// The commands rejected, by reason.
    pub rejections: BTreeMap<RejectionCode, usize>,
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
        self.holds_expired += other.holds_expired;
        for (kind, count) in &other.changes {
            *self.changes.entry(kind).or_default() += count;
        }
        for (reason, count) in &other.rejections {
            *self.rejections.entry(*reason).or_default() += count;
        }
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
    /// To decide; `outcome` is the version of its parked outcome record if it was redriven;
    /// `actor` the client that sent it (none for the service's own, as expiries).
    Due {
        outcome: Option<u64>,
        actor: Option<ClientId>,
    },
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

/// The most items one command may add to a transaction: its event, a move's two, its
/// outcome record and its hold's record, and one to spare.
const MAX_ITEMS_PER_COMMAND: usize = 6;

/// Where `command` acts: where its hold is, for a command on a reservation that can be read;
/// where it names, for a command on stock; else the default location (where a rejection or
/// a low-stock threshold is recorded).
fn location_of(command: &Command, holds: &HashMap<ReservationId, HoldLookup>) -> LocationId {
    locations_of(command, holds)
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// Every location `command` acts at: where each of its reservation's holds on the item is, else
/// [`location_of`]'s one.
fn locations_of(command: &Command, holds: &HashMap<ReservationId, HoldLookup>) -> Vec<LocationId> {
    let at_holds: Vec<LocationId> = match command
        .action
        .reservation_id()
        .and_then(|rid| holds.get(rid))
    {
        Some(HoldLookup::Found(stored)) => stored
            .iter()
            .map(|s| s.hold.stream.location().clone())
            .collect(),
        _ => Vec::new(),
    };
    if !at_holds.is_empty() {
        return at_holds;
    }
    std::iter::once(command.action.location().cloned().unwrap_or_default())
        .chain(command.action.other_location().cloned())
        .collect()
}

/// The draft of `location` (every location a command acts at has one).
fn draft_at<'a>(
    drafts: &'a mut BTreeMap<LocationId, Draft>,
    location: &LocationId,
    command: &Command,
) -> Result<&'a mut Draft, AppError> {
    drafts.get_mut(location).ok_or_else(|| {
        AppError::Internal(format!("no draft at {location} for command {}", command.id))
    })
}

/// Whether `error` is a fault that would come back on every delivery (a bug the store reported,
/// a panic): what is parked at once rather than delivered again.
fn is_fault(error: &AppError) -> bool {
    matches!(error, AppError::Internal(_))
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
        telemetry::changes(&total.changes, &total.rejections);
        Ok(total)
    }

    /// Applies `commands` of `sku` as they arrived from the queue, the oldest at `arrived_at`.
    /// While the SKU fails, the commands are delivered again; once the oldest has been failing
    /// for [`Config::park_failing_after`](crate::Config), they are applied one at a time and
    /// each that still fails is parked (`failing`), so the shard moves on. A fault — a bug the
    /// store reported, or a panic while applying — would come back on every delivery, so the
    /// commands are applied one at a time at once and each that faults is parked (`faulted`);
    /// the SKU's other commands, and every other SKU, go on. On failure, says the position of
    /// the first command that must be delivered again.
    pub(crate) async fn apply_arrivals(
        &self,
        sku: &Sku,
        commands: &[Command],
        arrived_at: Timestamp,
    ) -> Result<ApplyReport, Unapplied> {
        let error = match self.apply_guarded(sku, commands).await {
            Ok(report) => return Ok(report),
            Err(error) => error,
        };
        let failing_for = self.clock.now().millis() - arrived_at.millis();
        let bound = i64::try_from(self.config.park_failing_after.as_millis()).unwrap_or(i64::MAX);
        let failing_long = failing_for >= bound;
        if !failing_long && !is_fault(&error) {
            return Err(Unapplied { from: 0, error });
        }
        let mut report = ApplyReport::default();
        for (position, command) in commands.iter().enumerate() {
            let error = match self.apply_guarded(sku, std::slice::from_ref(command)).await {
                Ok(one) => {
                    report.add(&one);
                    continue;
                }
                Err(error) => error,
            };
            let (reason, detail) = if is_fault(&error) {
                (ParkReason::Faulted, error.to_string())
            } else if failing_long {
                let detail = format!(
                    "still failing {} s after it arrived: {error}",
                    failing_for / 1_000
                );
                (ParkReason::Failing, detail)
            } else {
                return Err(Unapplied {
                    from: position,
                    error,
                });
            };
            let body = serde_json::to_vec(command).unwrap_or_default();
            self.park(sku, command.id, &body, reason, &detail)
                .await
                .map_err(|error| Unapplied {
                    from: position,
                    error,
                })?;
            report.parked += 1;
        }
        Ok(report)
    }

    /// [`ApplyCommands::apply_commands`], with a panic while applying taken as the fault it is
    /// (an [`AppError::Internal`] naming it) instead of unwinding through the batch: one SKU's
    /// bug must not stop the others, nor fail the batch that carries them.
    async fn apply_guarded(
        &self,
        sku: &Sku,
        commands: &[Command],
    ) -> Result<ApplyReport, AppError> {
        match AssertUnwindSafe(self.apply_commands(sku, commands))
            .catch_unwind()
            .await
        {
            Ok(result) => result,
            Err(panic) => {
                let what = panic_message(panic.as_ref());
                tracing::error!(sku = %sku, commands = commands.len(), panic = %what,
                    "applying the commands panicked");
                Err(AppError::Internal(format!("panicked: {what}")))
            }
        }
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

    /// Applies one chunk. The first attempt carries the spread its commands call for in the
    /// same write (one write for a receipt on a bucketed item); once that write has lost a
    /// race, the spread — which names every bucket, each raced by the shoppers — waits for its
    /// own transaction after the commands, so the commands are not held back by the sale.
    async fn apply_chunk(&self, sku: &Sku, commands: &[Command]) -> Result<Chunk, AppError> {
        let mut rereads = 0;
        let mut tries = 0_u32;
        until_decided(&self.config, &mut rereads, |_| {
            let spread_with = tries == 0;
            tries += 1;
            self.attempt(sku, commands, spread_with)
        })
        .await
    }

    /// The states of `sku`'s streams at `location` this attempt decides on: bucket 0, every
    /// bucket it ever had, and any other bucket one of `holds` is in there.
    async fn draft(
        &self,
        sku: &Sku,
        location: &LocationId,
        holds: &HashMap<ReservationId, HoldLookup>,
    ) -> Result<Draft, AppError> {
        let zero = StreamId::at(sku, location);
        let home = self.heads.load(&zero).await?;
        let mut others: BTreeSet<StreamId> = home.layout.streams(&zero).skip(1).collect();
        others.extend(
            holds
                .values()
                .filter_map(|lookup| match lookup {
                    HoldLookup::Found(stored) => Some(stored),
                    _ => None,
                })
                .flatten()
                .map(|stored| &stored.hold.stream)
                .filter(|stream| **stream != zero && stream.location() == location)
                .cloned(),
        );
        let states = self.heads.load_all(others.iter()).await?;
        Ok(Draft::new(
            &zero,
            std::iter::once((zero.clone(), home)).chain(others.into_iter().zip(states)),
        ))
    }

    /// One decision over the SKU's deferred commands and `arrivals`, and one write; with the
    /// spread they call for if `spread_with` and it fits.
    async fn attempt(
        &self,
        sku: &Sku,
        arrivals: &[Command],
        spread_with: bool,
    ) -> Result<Attempt<Chunk>, AppError> {
        let mut report = ApplyReport::default();
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
        // One draft per location the commands act at (the default one always: rejections and
        // what names no location are recorded there).
        let mut locations: BTreeSet<LocationId> = BTreeSet::from([LocationId::default()]);
        for command in &due {
            locations.extend(locations_of(command, &holds));
        }
        let mut drafts: BTreeMap<LocationId, Draft> = BTreeMap::new();
        for location in locations {
            let draft = self.draft(sku, &location, &holds).await?;
            drafts.insert(location, draft);
        }
        let events = |drafts: &BTreeMap<LocationId, Draft>| {
            drafts.values().map(Draft::event_count).sum::<usize>()
        };
        let mut records = reading.abandon;
        // The holds changed, by reservation and place among its holds on the item.
        let mut touched: BTreeSet<(ReservationId, usize)> = BTreeSet::new();
        let mut deferred: Vec<Command> = Vec::new();
        let mut waiting_on: HashSet<ReservationId> = HashSet::new();
        let mut applied_lags = Vec::new();
        let mut spread_due: BTreeSet<LocationId> = BTreeSet::new();
        let clock = self.clock.now();
        let grace = self.config.release_grace_secs;
        for (command, standing) in &reading.commands {
            let reservation = command.action.reservation_id();
            let (outcome_version, actor) = match standing {
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
                Standing::Due { outcome, actor } => (*outcome, actor.clone()),
            };
            // A later command on a reservation something waits for keeps its place behind it;
            // so does a command that might not fit this transaction any more.
            let items = events(&drafts) + records.len() + touched.len();
            let holds_here = match reservation.and_then(|rid| holds.get(rid)) {
                Some(HoldLookup::Found(stored)) => stored.len().max(1),
                _ => 1,
            };
            if reservation.is_some_and(|rid| waiting_on.contains(rid))
                || items + MAX_ITEMS_PER_COMMAND * holds_here >= MAX_TRANSACTION_ITEMS
            {
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
            // The steps the command takes: one for a command on stock, or on a reservation that
            // holds nothing here; one per hold for a command on the reservation's holds on the
            // item (one per location it is held at), an after-sale act shared over them.
            let found: Vec<HoldLine> = match lookup {
                Some(Some(HoldLookup::Found(stored))) => {
                    stored.iter().map(|s| s.hold.clone()).collect()
                }
                _ => Vec::new(),
            };
            let mut steps: Vec<(Option<usize>, Command)> = Vec::new();
            let mut refused = None;
            match command.action.after_sale() {
                _ if found.is_empty() => steps.push((None, command.clone())),
                Some((after, Some(asked))) => {
                    let of: Vec<&HoldLine> = found.iter().collect();
                    match HoldLine::share(&of, after, asked) {
                        Ok(shares) => steps.extend(shares.into_iter().map(|(index, units)| {
                            let action = command.action.for_units(units);
                            (
                                Some(index),
                                Command {
                                    action,
                                    ..command.clone()
                                },
                            )
                        })),
                        Err(reason) => refused = Some(reason),
                    }
                }
                _ => steps.extend((0..found.len()).map(|index| (Some(index), command.clone()))),
            }
            let site = |hold: Option<usize>| match hold {
                Some(index) => found[index].stream.location().clone(),
                None => location_of(command, &holds),
            };
            let mut verdicts: Vec<(LocationId, Option<usize>, Bucket, Timestamp, Verdict)> =
                Vec::new();
            let mut waits = false;
            for (hold, step) in &steps {
                let location = site(*hold);
                // Room for a gather's moves: each adds an event, the transfer one more on
                // bucket 0, and the command its event and outcome, with one to spare.
                let items = events(&drafts) + records.len() + touched.len();
                let room = MAX_TRANSACTION_ITEMS.saturating_sub(items + 4);
                let draft = draft_at(&mut drafts, &location, command)?;
                let now = draft.now(clock);
                if escrow::gathered_in_part(draft, step, now, room) {
                    waits = true;
                    break;
                }
                let (bucket, verdict) = match hold {
                    Some(index) => {
                        let hold = &found[*index];
                        let bucket = hold.stream.bucket();
                        if matches!(step.action, Action::CommitHold { .. })
                            && escrow::refilled_in_part(draft, hold, now, room)
                        {
                            waits = true;
                            break;
                        }
                        let state = draft.state(bucket);
                        let verdict = decide(&state, Some(hold), step, now, grace);
                        // A shipment is checked against the location's on-hand units, which
                        // its buckets share.
                        (bucket, shipped_from(draft.item_state().on_hand, verdict))
                    }
                    None => (
                        Bucket::HOME,
                        decide(&draft.item_state(), None, step, now, grace),
                    ),
                };
                verdicts.push((location, *hold, bucket, now, verdict));
            }
            if waits {
                defer(&mut deferred, &mut waiting_on, command);
                continue;
            }
            let rejection = refused.or_else(|| {
                verdicts.iter().find_map(|(.., verdict)| match verdict {
                    Verdict::Reject(reason) => Some(*reason),
                    _ => None,
                })
            });
            // What the command changes, each where it is recorded.
            let mut changes: Vec<(LocationId, Option<usize>, Bucket, Timestamp, Change)> =
                Vec::new();
            let outcome = match rejection {
                Some(reason) => {
                    // Recorded once, where the command's first step is.
                    let location = site(steps.first().and_then(|(hold, _)| *hold));
                    let draft = draft_at(&mut drafts, &location, command)?;
                    let now = draft.now(clock);
                    // A stale count's status says the figure it should have been taken against.
                    let on_hand =
                        (reason == RejectionCode::StaleCount).then(|| draft.item_state().on_hand);
                    changes.push((
                        location,
                        None,
                        Bucket::HOME,
                        now,
                        Change::CommandRejected {
                            command_id: command.id,
                            reason,
                            on_hand,
                        },
                    ));
                    report.rejected += 1;
                    *report.rejections.entry(reason).or_default() += 1;
                    CommandOutcome::Rejected { reason, on_hand }
                }
                None => {
                    for (location, hold, bucket, now, verdict) in verdicts {
                        if let Verdict::Apply(change) = verdict {
                            *report.changes.entry(change.kind()).or_default() += 1;
                            // A transfer changes its other end in the same write.
                            if let Some((other, mirrored)) = change.at_other_end() {
                                let now = draft_at(&mut drafts, &other, command)?.now(clock);
                                changes.push((other, None, Bucket::HOME, now, mirrored));
                            }
                            changes.push((location, hold, bucket, now, change));
                        }
                    }
                    report.applied += 1;
                    CommandOutcome::Applied
                }
            };
            applied_lags.push(command.accepted_at);
            records.push(RecordWrite {
                key: outcome_key,
                expected: outcome_version,
                record: Record::CommandOutcome(outcome),
            });
            for (location, hold, bucket, now, change) in changes {
                report.holds_expired += usize::from(matches!(change, Change::HoldExpired { .. }));
                if let (Some(index), Some(rid)) = (hold, reservation) {
                    if let Some(HoldLookup::Found(stored)) = holds.get_mut(rid) {
                        if let Some(stored) = stored.get_mut(index) {
                            stored.hold.evolve(&change);
                            touched.insert((rid.clone(), index));
                        }
                    }
                }
                let draft = draft_at(&mut drafts, &location, command)?;
                draft.acting_for(actor.clone());
                if escrow::record(draft, bucket, now, change) {
                    spread_due.insert(location);
                }
                draft.acting_for(None);
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
        for (rid, index) in &touched {
            if let Some(HoldLookup::Found(stored)) = holds.get(rid) {
                records.extend(stored.get(*index).map(StoredHold::write));
            }
        }
        if spread_with {
            for location in spread_due.clone() {
                let items = events(&drafts) + records.len() + touched.len();
                let room = MAX_TRANSACTION_ITEMS.saturating_sub(items + SPREAD_MARKS);
                let Some(draft) = drafts.get_mut(&location) else {
                    continue;
                };
                if room > 0 {
                    let now = draft.now(clock);
                    if !escrow::record_spread(draft, now, room) {
                        spread_due.remove(&location);
                    }
                }
            }
        }
        escrow::note_locations(&mut drafts, clock);
        report.events = events(&drafts);
        report.deferred = deferred.len();
        let mut transaction = Transaction::records(records);
        transaction.appends = drafts.values().flat_map(Draft::appends).collect();
        if !transaction.is_empty() {
            let issued = Instant::now();
            if let Written::Lost(_) = write(self.transactions.as_ref(), transaction).await? {
                return Ok(Attempt::Reread);
            }
            for (state, events) in drafts.values().flat_map(Draft::written) {
                self.heads.advance(state, events, issued);
            }
        }
        for location in &spread_due {
            self.spread(sku, location).await?;
        }
        for accepted_at in applied_lags {
            telemetry::applied_after(accepted_at, clock);
        }
        tracing::info!(sku = %sku, applied = report.applied, rejected = report.rejected,
            duplicates = report.duplicates, events = report.events, parked = report.parked,
            deferred = report.deferred, "commands applied");
        Ok(Attempt::Done(Chunk { report, deferred }))
    }

    /// Spreads bucket 0's spare units over the item's buckets (after a receipt, or a change
    /// of layout), a transaction of at most [`MAX_MOVES_PER_TRANSACTION`] moves at a time. An
    /// item drained near zero is spread again only once bucket 0 has [`crate::domain::buckets::SPREAD_FROM`] units to
    /// spare per bucket.
    async fn spread(&self, sku: &Sku, location: &LocationId) -> Result<(), AppError> {
        let mut rereads = 0;
        loop {
            let spread = until_decided(&self.config, &mut rereads, |_| async {
                let mut draft = self.draft(sku, location, &HashMap::new()).await?;
                let now = draft.now(self.clock.now());
                let more = escrow::record_spread(&mut draft, now, MAX_MOVES_PER_TRANSACTION);
                if draft.event_count() == 0 {
                    return Ok(Attempt::Done(false));
                }
                let issued = Instant::now();
                let transaction = Transaction::appends(draft.appends());
                match write(self.transactions.as_ref(), transaction).await? {
                    Written::Done => {}
                    Written::Lost(_) => return Ok(Attempt::Reread),
                }
                for (state, events) in draft.written() {
                    self.heads.advance(state, events, issued);
                }
                Ok(Attempt::Done(more))
            })
            .await?;
            if !spread {
                return Ok(());
            }
        }
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
            let actor = match &record {
                Some(Versioned {
                    record: Record::Command(record),
                    ..
                }) => record.issued_by.clone(),
                _ => None,
            };
            let standing = match (outcome, record) {
                (
                    Some(Versioned {
                        version,
                        record: Record::CommandOutcome(CommandOutcome::Parked(parked)),
                    }),
                    _,
                ) if parked.redriven_at.is_some() => Standing::Due {
                    outcome: Some(version),
                    actor,
                },
                (Some(_), _) => Standing::Done,
                (
                    None,
                    Some(Versioned {
                        version,
                        record: Record::Command(record),
                    }),
                ) => match record.acceptance {
                    Acceptance::Accepted => Standing::Due {
                        outcome: None,
                        actor,
                    },
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
                (None, _) => Standing::Due {
                    outcome: None,
                    actor: None,
                },
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
    use super::super::given::{shopper, sku, Given};
    use crate::domain::{Annotation, Caller, Quantity, ReservationId};

    #[tokio::test]
    async fn a_withdrawal_from_a_bucketed_item_is_shared_by_its_buckets_and_a_release_returns_to_bucket_0(
    ) {
        let given = Given::new();
        given.stock("A", 12).await.buckets("A", 3).await;
        let admin = Caller::local_admin();
        given
            .inventory
            .adjust_stock(
                sku("A"),
                -7,
                Annotation::from_text("count".into()),
                None,
                &admin,
            )
            .await
            .unwrap();
        given.processed().await;
        let item = given.inventory.item(&sku("A")).await.unwrap();
        assert_eq!((item.on_hand, item.available), (5, 5));

        let held = given
            .reserve(&shopper("alice"), &[("A", 2)], None)
            .await
            .unwrap();
        let id: ReservationId = held.reservation_id.clone();
        given
            .inventory
            .request_release(&id, None, &shopper("alice"))
            .await
            .unwrap();
        given.processed().await;
        let item = given.inventory.item_with_buckets(&sku("A")).await.unwrap();
        assert_eq!((item.on_hand, item.available), (5, 5));
        let buckets = item.buckets.unwrap();
        if id.anchor().bucket() != crate::domain::Bucket::HOME {
            let bucket = &buckets[usize::from(id.anchor().bucket().number())];
            assert_eq!(bucket.reserved, 0, "released");
        }
        assert_eq!(buckets.iter().map(|b| b.on_hand).sum::<i64>(), 5);
    }

    #[tokio::test]
    async fn units_set_aside_from_an_item_spread_over_many_buckets_are_gathered_into_bucket_0_over_several_writes(
    ) {
        use crate::domain::{Annotation, Reason, Reclassification, StockState};
        let given = Given::new();
        given.stock("A", 2_560).await.buckets("A", 256).await;
        let spread = given.inventory.item_with_buckets(&sku("A")).await.unwrap();
        let buckets = spread.buckets.unwrap();
        assert!(
            buckets.iter().filter(|b| b.available > 0).count() > 200,
            "spread over the buckets"
        );
        let admin = Caller::local_admin();
        let id = given
            .inventory
            .reclassify_stock(
                sku("A"),
                Reclassification::new(StockState::Available, StockState::Damaged).unwrap(),
                Quantity::new(2_000).unwrap(),
                Annotation::because(Reason::Damaged),
                None,
                &admin,
            )
            .await
            .unwrap();
        given.processed().await;
        assert_eq!(
            given.inventory.command(id, &admin).await.unwrap().status,
            crate::app::CommandStatus::Applied
        );
        let item = given.inventory.item_with_buckets(&sku("A")).await.unwrap();
        assert_eq!(
            (item.on_hand, item.unavailable.damaged, item.available),
            (2_560, 2_000, 560)
        );
        let buckets = item.buckets.unwrap();
        assert_eq!(buckets[0].unavailable.damaged, 2_000, "kept by bucket 0");
        assert!(
            buckets.iter().all(|b| b.available >= 0 && b.on_hand >= 0),
            "no bucket left promising set-aside units"
        );

        // A count that takes every unit for sale and some set aside: gathered the same way,
        // then taken from bucket 0.
        let id = given
            .inventory
            .count_stock(
                sku("A"),
                100,
                Some(2_560),
                Annotation::because(Reason::CycleCount),
                None,
                &admin,
            )
            .await
            .unwrap();
        given.processed().await;
        assert_eq!(
            given.inventory.command(id, &admin).await.unwrap().status,
            crate::app::CommandStatus::Applied
        );
        let item = given.inventory.item(&sku("A")).await.unwrap();
        assert_eq!((item.on_hand, item.available), (100, 0), "left short");
    }

    #[tokio::test]
    async fn fewer_buckets_move_the_dropped_buckets_stock_to_bucket_0() {
        let given = Given::new();
        given.stock("A", 12).await.buckets("A", 4).await;
        given.buckets("A", 1).await;
        let item = given.inventory.item_with_buckets(&sku("A")).await.unwrap();
        let buckets = item.buckets.unwrap();
        assert_eq!(buckets.len(), 4, "every bucket it ever had is shown");
        assert_eq!(buckets[0].available, 12);
        assert_eq!(item.available, 12);
    }

    #[tokio::test]
    async fn an_item_spread_over_many_buckets_set_back_to_one_drains_them_over_several_writes() {
        let given = Given::new();
        given.stock("A", 2_560).await.buckets("A", 256).await;
        let admin = Caller::local_admin();
        let id = given
            .inventory
            .set_buckets(sku("A"), crate::domain::BucketCount::ONE, None, &admin)
            .await
            .unwrap();
        given.processed().await;
        assert_eq!(
            given.inventory.command(id, &admin).await.unwrap().status,
            crate::app::CommandStatus::Applied
        );
        let item = given.inventory.item_with_buckets(&sku("A")).await.unwrap();
        let buckets = item.buckets.unwrap();
        assert_eq!((item.available, buckets[0].available), (2_560, 2_560));
        assert!(given
            .reserve(&shopper("alice"), &[("A", 2_560)], None)
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn a_late_checkout_whose_units_spread_over_many_buckets_gathers_them_over_several_writes()
    {
        use crate::ports::CommandQueue;
        let given = Given::new();
        given.stock("A", 2_560).await.buckets("A", 256).await;
        let alice = shopper("alice");
        let held = given.reserve(&alice, &[("A", 2_000)], None).await.unwrap();
        let id = &held.reservation_id;
        // Checked out in time, but the processor reaches it only after the hold lapsed, its
        // expiry was recorded and a receipt spread the item over its buckets again.
        given
            .inventory
            .request_checkout(id, None, &alice)
            .await
            .unwrap();
        let checkout = given.queue.try_receive(10);
        given.later_by_secs(2_000);
        given.inventory.sweep_expired_holds().await.unwrap();
        given.processed().await;
        given.stock("A", 1).await;
        let spread = given.inventory.item_with_buckets(&sku("A")).await.unwrap();
        assert!(
            spread
                .buckets
                .unwrap()
                .iter()
                .filter(|b| b.available > 0)
                .count()
                > 200,
            "spread again"
        );
        given.queue.send(&checkout).await.unwrap();
        given.processed().await;
        let view = given.inventory.reservation(id, &alice).await.unwrap();
        assert_eq!(
            view.status,
            crate::domain::HoldStatus::Committed,
            "{view:?}"
        );
        let item = given.inventory.item(&sku("A")).await.unwrap();
        assert_eq!((item.committed, item.available), (2_000, 561));
    }

    #[tokio::test]
    async fn a_command_delivered_twice_takes_effect_once() {
        let given = Given::new();
        let admin = Caller::local_admin();
        let quantity = Quantity::new(5).unwrap();
        given
            .inventory
            .receive_stock(sku("A"), quantity, Annotation::received(None), None, &admin)
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

    /// Given/when/then for transfers between locations.
    mod transfers {
        use super::super::super::given::{location, sku, Given};
        use crate::domain::{Caller, CommandId, Quantity, RejectionCode};
        use crate::ports::{CommandOutcome, Record, RecordKey};

        /// Each location's (on hand, available, transit in, transit out).
        async fn figures(given: &Given) -> Vec<(String, i64, i64, i64, i64)> {
            let item = given.inventory.item(&sku("A")).await.unwrap();
            item.locations
                .iter()
                .map(|l| {
                    let at = l.location.to_string();
                    (at, l.on_hand, l.available, l.transit_in, l.transit_out)
                })
                .collect()
        }

        fn row(
            at: &str,
            on_hand: i64,
            available: i64,
            t_in: i64,
            t_out: i64,
        ) -> (String, i64, i64, i64, i64) {
            (at.to_owned(), on_hand, available, t_in, t_out)
        }

        async fn outcome(given: &Given, command: CommandId) -> Option<CommandOutcome> {
            let key = RecordKey::CommandOutcome {
                command_id: command,
                sku: sku("A"),
            };
            use crate::ports::Records;
            match given
                .store
                .read_records(&[key])
                .await
                .unwrap()
                .pop()
                .flatten()
            {
                Some(stored) => match stored.record {
                    Record::CommandOutcome(outcome) => Some(outcome),
                    _ => None,
                },
                None => None,
            }
        }

        #[tokio::test]
        async fn units_in_transit_are_for_sale_at_neither_end_and_land_where_received_in_parts() {
            let given = Given::new();
            given.location("store-5", true, 0).await;
            given.stock("A", 10).await;
            let admin = Caller::local_admin();
            let units = |n| Quantity::new(n).unwrap();
            let ends = (location("default"), location("store-5"));
            let (_, transfer) = given
                .inventory
                .transfer_stock(
                    sku("A"),
                    ends,
                    units(6),
                    Some("truck 12".into()),
                    None,
                    &admin,
                )
                .await
                .unwrap();
            assert_eq!(transfer.to(), &location("store-5"));
            given.processed().await;
            given.later_by_secs(1);
            assert_eq!(
                figures(&given).await,
                [row("default", 4, 4, 0, 6), row("store-5", 0, 0, 6, 0)]
            );
            let item = given.inventory.item(&sku("A")).await.unwrap();
            assert_eq!((item.on_hand, item.available, item.transit_in), (4, 4, 6));

            // A partial receipt lands 2, the rest stays in transit; then the rest.
            given
                .inventory
                .receive_transfer(transfer.clone(), Some(units(2)), None, &admin)
                .await
                .unwrap();
            given.processed().await;
            given.later_by_secs(1);
            assert_eq!(
                figures(&given).await,
                [row("default", 4, 4, 0, 4), row("store-5", 2, 2, 4, 0)]
            );
            let too_many = given
                .inventory
                .receive_transfer(transfer.clone(), Some(units(5)), None, &admin)
                .await
                .unwrap();
            given.processed().await;
            given.later_by_secs(1);
            assert_eq!(
                outcome(&given, too_many).await,
                Some(CommandOutcome::Rejected {
                    reason: RejectionCode::ExceedsInTransit,
                    on_hand: None
                })
            );
            given
                .inventory
                .receive_transfer(transfer.clone(), None, None, &admin)
                .await
                .unwrap();
            given.processed().await;
            given.later_by_secs(1);
            assert_eq!(
                figures(&given).await,
                [row("default", 4, 4, 0, 0), row("store-5", 6, 6, 0, 0)]
            );
            // Nothing left in transit: a receipt more is refused, and changes nothing.
            let again = given
                .inventory
                .receive_transfer(transfer, None, None, &admin)
                .await
                .unwrap();
            given.processed().await;
            given.later_by_secs(1);
            assert_eq!(
                outcome(&given, again).await,
                Some(CommandOutcome::Rejected {
                    reason: RejectionCode::NothingInTransit,
                    on_hand: None
                })
            );
            let ledger = given.inventory.ledger(&sku("A"), 0, 100).await.unwrap();
            let kinds: Vec<&str> = ledger.entries.iter().map(|e| e.kind).collect();
            assert_eq!(
                kinds,
                [
                    "received",
                    "transfer_shipped",
                    "transfer_incoming",
                    "transfer_arrived",
                    "transfer_received",
                    "rejected",
                    "transfer_arrived",
                    "transfer_received",
                    "rejected"
                ]
            );
        }

        #[tokio::test]
        async fn a_transfer_takes_only_units_for_sale_and_never_a_held_one_even_from_buckets() {
            let given = Given::new();
            given.location("wh-2", false, 1).await;
            given.stock("A", 8).await.buckets("A", 4).await;
            let alice = super::super::super::given::shopper("alice");
            given
                .reserve_at(&alice, &[("A", 3, Some("default"))], Default::default())
                .await
                .unwrap();
            let admin = Caller::local_admin();
            let ends = (location("default"), location("wh-2"));
            let units = |n| Quantity::new(n).unwrap();
            let (too_many, _) = given
                .inventory
                .transfer_stock(sku("A"), ends.clone(), units(6), None, None, &admin)
                .await
                .unwrap();
            given.processed().await;
            assert_eq!(
                outcome(&given, too_many).await,
                Some(CommandOutcome::Rejected {
                    reason: RejectionCode::SourceLacksUnits,
                    on_hand: None
                })
            );
            // All 5 for sale, scattered over the buckets, are gathered and shipped.
            given
                .inventory
                .transfer_stock(sku("A"), ends, units(5), None, None, &admin)
                .await
                .unwrap();
            given.processed().await;
            assert_eq!(
                figures(&given).await,
                [row("default", 3, 0, 0, 5), row("wh-2", 0, 0, 5, 0)]
            );
            let home = given.inventory.item_with_buckets(&sku("A")).await.unwrap();
            assert_eq!(home.reserved, 3, "the hold keeps its units");
        }

        #[tokio::test]
        async fn a_transfer_names_two_registered_locations() {
            let given = Given::new();
            given.stock("A", 2).await;
            let admin = Caller::local_admin();
            let one = Quantity::new(1).unwrap();
            let to = |id: &str| {
                let ends = (location("default"), location(id));
                given
                    .inventory
                    .transfer_stock(sku("A"), ends, one, None, None, &admin)
            };
            let unknown = to("wh-9").await;
            assert_eq!(
                unknown.unwrap_err(),
                crate::error::AppError::UnknownLocation(location("wh-9"))
            );
            let same = to("default").await;
            assert!(
                matches!(same, Err(crate::error::AppError::Invalid(ref e)) if e.code == "invalid_transfer"),
                "{same:?}"
            );
            assert_eq!(given.processed().await.applied, 0, "nothing queued");
        }
    }
}
