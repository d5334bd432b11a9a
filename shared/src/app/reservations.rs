//! Reservations: placing holds (all-or-nothing across a cart), reading them back, extending them,
//! and accepting checkouts and releases onto the command queue.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::try_join_all;
use serde::Serialize;

use super::retry::Attempts;
use super::views::ReservationView;
use super::Inventory;
use crate::domain::decide::{extend_hold, place_hold};
use crate::domain::{
    Action, Caller, Change, ClientId, Command, CommandId, Event, HoldLine, HoldStatus, HoldTerms,
    IdempotencyKey, InvalidValue, Line, PlaceRejection, ReservationId, Sku, SkuState, Timestamp,
    TtlSeconds,
};
use crate::error::AppError;
use crate::ports::{
    Conflict, IdempotencyRecord, Record, RecordKey, RecordWrite, StoreError, StreamAppend,
    Transaction, MAX_TRANSACTION_ITEMS,
};
use crate::telemetry;

/// Most lines one reservation may hold.
pub const MAX_LINES: usize = 100;

/// A validated request to reserve a cart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveRequest {
    lines: Vec<Line>,
    ttl: TtlSeconds,
    idempotency_key: Option<IdempotencyKey>,
}

impl ReserveRequest {
    /// A request for 1–100 lines of distinct SKUs.
    pub fn new(
        lines: Vec<Line>,
        ttl: TtlSeconds,
        idempotency_key: Option<IdempotencyKey>,
    ) -> Result<Self, InvalidValue> {
        // With a key, the idempotency record takes one of the commit's items.
        let (limit, why) = match idempotency_key {
            Some(_) => (
                MAX_TRANSACTION_ITEMS - 1,
                " with an Idempotency-Key (one write carries at most 100 items)",
            ),
            None => (MAX_LINES, ""),
        };
        if lines.is_empty() || lines.len() > limit {
            return Err(InvalidValue::new(
                "invalid_lines",
                format!(
                    "lines must hold 1 to {limit} entries{why}, got {}",
                    lines.len()
                ),
            ));
        }
        let mut seen = BTreeSet::new();
        if let Some(line) = lines.iter().find(|line| !seen.insert(&line.sku)) {
            return Err(InvalidValue::new(
                "duplicate_sku",
                format!("sku {} appears on more than one line", line.sku),
            ));
        }
        Ok(Self {
            lines,
            ttl,
            idempotency_key,
        })
    }

    fn digest(&self) -> String {
        #[derive(Serialize)]
        struct Canonical<'a> {
            lines: &'a [Line],
            ttl: TtlSeconds,
        }
        digest(&Canonical {
            lines: &self.lines,
            ttl: self.ttl,
        })
    }
}

/// A reservation as stored: the anchor's facts and each line's hold with its record version.
struct Reservation {
    id: ReservationId,
    created_at: Timestamp,
    holds: Vec<(HoldLine, Option<u64>)>,
}

impl Reservation {
    fn view(&self, now: Timestamp) -> ReservationView {
        let holds: Vec<HoldLine> = self.holds.iter().map(|(hold, _)| hold.clone()).collect();
        ReservationView::new(self.id.clone(), self.created_at, &holds, now)
    }

    fn status_at(&self, now: Timestamp) -> HoldStatus {
        HoldStatus::overall(self.holds.iter().map(|(hold, _)| hold.status_at(now)))
    }
}

/// Which queued change a reservation request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HoldRequest {
    Checkout,
    Release,
}

impl Inventory {
    /// Places a hold on every line or on none, owned by `caller`. Lost races are re-read and
    /// re-decided within the retry budget; an idempotent retry returns the reservation the
    /// caller's key first made.
    pub async fn reserve(
        &self,
        request: ReserveRequest,
        caller: &Caller,
    ) -> Result<ReservationView, AppError> {
        let started = tokio::time::Instant::now();
        let mut conflicts = 0;
        let answer = self.reserve_counting(request, caller, &mut conflicts).await;
        let outcome = telemetry::reservation_outcome(&answer);
        telemetry::reservation(outcome, conflicts, started.elapsed());
        answer
    }

    async fn reserve_counting(
        &self,
        request: ReserveRequest,
        caller: &Caller,
        conflicts: &mut u32,
    ) -> Result<ReservationView, AppError> {
        let digest = request.digest();
        if let Some(key) = &request.idempotency_key {
            if let Some(existing) = self.replay(key, &digest, caller).await? {
                return self.reservation(&existing, caller).await;
            }
        }
        let started = tokio::time::Instant::now();
        let turns = self.turns.take(request.lines.iter().map(|line| &line.sku));
        let Ok(_turns) = tokio::time::timeout(self.config.contention_budget, turns).await else {
            return Err(AppError::Contention);
        };
        let mut attempts = Attempts::new(&self.config);
        // First on the states this process knows (no read). A refusal is answered only on states
        // known current since this request started (read or written by this process since, as
        // when requests queue for a sold-out item), else after a fresh read; a conflict re-reads.
        let mut fresh = false;
        loop {
            let attempt = tokio::time::Instant::now();
            match self
                .try_reserve(&request, &digest, caller.client_id(), fresh, started)
                .await
            {
                Ok(outcome) => return outcome,
                Err(StoreError::Conflict(Conflict::Record { .. })) => {
                    *conflicts += 1;
                    // Another request with the same idempotency key won the race.
                    if let Some(key) = &request.idempotency_key {
                        if let Some(existing) = self.replay(key, &digest, caller).await? {
                            return self.reservation(&existing, caller).await;
                        }
                    }
                }
                Err(StoreError::Conflict(Conflict::Stream { .. })) if !fresh => {
                    // Stale warm state (a refusal to confirm, or a lost race): read and retry
                    // without spending an attempt.
                    *conflicts += 1;
                    fresh = true;
                    continue;
                }
                Err(StoreError::Conflict(Conflict::Stream { .. })) => *conflicts += 1,
                Err(err) => return Err(err.into()),
            }
            if !attempts.again_after(attempt.elapsed()).await {
                tracing::warn!(
                    lines = request.lines.len(),
                    "reservation gave up after conflicts"
                );
                return Err(AppError::Contention);
            }
        }
    }

    /// One decision and one commit. The outer `Result` is the store's, the inner the answer.
    async fn try_reserve(
        &self,
        request: &ReserveRequest,
        digest: &str,
        owner: &ClientId,
        fresh: bool,
        started: tokio::time::Instant,
    ) -> Result<Result<ReservationView, AppError>, StoreError> {
        let skus = request.lines.iter().map(|l| &l.sku);
        let (states, current): (Vec<Arc<SkuState>>, bool) = if fresh {
            (self.load_states(skus).await?, true)
        } else {
            let known: Vec<_> = skus.map(|sku| self.cache.get(sku)).collect();
            let current = known.iter().all(|k| k.current_since(started));
            (known.into_iter().map(|k| k.state).collect(), current)
        };
        let now = states
            .iter()
            .fold(self.clock.now(), |now, state| state.now(now));
        let terms = HoldTerms::new(now, request.ttl, self.config.release_grace_secs);
        let anchor = &request.lines[0];
        let id = ReservationId::new(anchor.sku.clone(), states[0].version + 1, fastrand::u64(..));
        let cart = if request.lines.len() > 1 {
            request.lines.clone()
        } else {
            Vec::new()
        };
        let mut commit = Transaction::default();
        for (index, (line, state)) in request.lines.iter().zip(&states).enumerate() {
            let lines = if index == 0 { cart.clone() } else { Vec::new() };
            let change = match place_hold(state, &id, line.quantity, terms, lines, owner, now) {
                Ok(change) => change,
                Err(_) if !current => {
                    return Err(StoreError::Conflict(Conflict::Stream {
                        sku: line.sku.clone(),
                        found: None,
                    }))
                }
                Err(PlaceRejection::UnknownSku) => {
                    return Ok(Err(AppError::UnknownSku(line.sku.clone())))
                }
                Err(PlaceRejection::InsufficientStock {
                    requested,
                    available,
                }) => {
                    return Ok(Err(AppError::InsufficientStock {
                        sku: line.sku.clone(),
                        requested,
                        available,
                    }))
                }
            };
            commit
                .appends
                .push(next_append(&line.sku, state, now, vec![change]));
        }
        if let Some(key) = &request.idempotency_key {
            commit.records.push(RecordWrite {
                key: RecordKey::Idempotency {
                    client_id: owner.clone(),
                    key: key.clone(),
                },
                expected: None,
                record: Record::Idempotency(IdempotencyRecord {
                    request_digest: digest.to_owned(),
                    reservation_id: id.clone(),
                    created_at: now,
                }),
            });
        }
        let appends = commit.appends.clone();
        let issued = tokio::time::Instant::now();
        self.store.write(commit).await?;
        for (append, state) in appends.iter().zip(&states) {
            self.cache.advance(state, &append.events, issued);
        }
        tracing::info!(reservation_id = %id, lines = request.lines.len(), "reserved");
        let holds: Vec<HoldLine> = appends
            .iter()
            .filter_map(|append| HoldLine::placed(&append.sku, &append.events[0].change))
            .collect();
        Ok(Ok(ReservationView::new(id, now, &holds, now)))
    }

    /// The reservation the caller's idempotency key made, if the key was used with the same
    /// request; `IdempotencyKeyReused` if it was used with another.
    async fn replay(
        &self,
        key: &IdempotencyKey,
        digest: &str,
        caller: &Caller,
    ) -> Result<Option<ReservationId>, AppError> {
        let found = self
            .store
            .read_records(&[RecordKey::Idempotency {
                client_id: caller.client_id().clone(),
                key: key.clone(),
            }])
            .await?;
        match found
            .into_iter()
            .next()
            .flatten()
            .map(|stored| stored.record)
        {
            Some(Record::Idempotency(record)) if record.request_digest == digest => {
                Ok(Some(record.reservation_id))
            }
            Some(_) => Err(AppError::IdempotencyKeyReused),
            None => Ok(None),
        }
    }

    /// A reservation as of now.
    pub async fn reservation(
        &self,
        id: &ReservationId,
        caller: &Caller,
    ) -> Result<ReservationView, AppError> {
        let reservation = self.load_reservation(id, caller).await?;
        Ok(reservation.view(self.clock.now()))
    }

    /// Promises an active reservation for `ttl` from now (never shortens it).
    pub async fn extend(
        &self,
        id: &ReservationId,
        ttl: TtlSeconds,
        caller: &Caller,
    ) -> Result<ReservationView, AppError> {
        let mut reservation = self.load_reservation(id, caller).await?;
        let turns = self
            .turns
            .take(reservation.holds.iter().map(|(hold, _)| &hold.sku));
        let Ok(_turns) = tokio::time::timeout(self.config.contention_budget, turns).await else {
            return Err(AppError::Contention);
        };
        let mut attempts = Attempts::new(&self.config);
        loop {
            // A change made while this request waited for its turn makes the commit conflict
            // (hold records are written over the version read), and the retry reloads.
            match self.try_extend(&reservation, ttl).await {
                Ok(outcome) => return outcome,
                Err(StoreError::Conflict(_)) => {}
                Err(err) => return Err(err.into()),
            }
            if !attempts.again().await {
                return Err(AppError::Contention);
            }
            reservation = self.load_reservation(id, caller).await?;
        }
    }

    async fn try_extend(
        &self,
        reservation: &Reservation,
        ttl: TtlSeconds,
    ) -> Result<Result<ReservationView, AppError>, StoreError> {
        let states = self
            .load_states(reservation.holds.iter().map(|(hold, _)| &hold.sku))
            .await?;
        let now = states
            .iter()
            .fold(self.clock.now(), |now, state| state.now(now));
        let status = reservation.status_at(now);
        if status != HoldStatus::Active {
            return Ok(Err(AppError::ReservationNotActive { status }));
        }
        let terms = HoldTerms::new(now, ttl, self.config.release_grace_secs);
        let mut changed = Vec::new();
        let mut holds = Vec::new();
        for ((hold, version), state) in reservation.holds.iter().zip(&states) {
            let mut hold = hold.clone();
            match extend_hold(&hold, terms, now) {
                Err(_) => {
                    let status = hold.status_at(now);
                    return Ok(Err(AppError::ReservationNotActive { status }));
                }
                Ok(None) => {}
                Ok(Some(change)) => {
                    hold.evolve(&change);
                    let append = next_append(&hold.sku, state, now, vec![change]);
                    changed.push((append, hold_write(&hold, *version), Arc::clone(state)));
                }
            }
            holds.push(hold);
        }
        // Each line is an event and a record: large carts are extended in several commits.
        for chunk in changed.chunks(MAX_TRANSACTION_ITEMS / 2) {
            let commit = Transaction {
                appends: chunk.iter().map(|(append, _, _)| append.clone()).collect(),
                records: chunk.iter().map(|(_, write, _)| write.clone()).collect(),
            };
            let issued = tokio::time::Instant::now();
            self.store.write(commit).await?;
            for (append, _, state) in chunk {
                self.cache.advance(state, &append.events, issued);
            }
        }
        Ok(Ok(ReservationView::new(
            reservation.id.clone(),
            reservation.created_at,
            &holds,
            now,
        )))
    }

    /// Accepts a checkout of every line of an active reservation onto the queue.
    pub async fn request_checkout(
        &self,
        id: &ReservationId,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        self.request_hold_change(id, key, HoldRequest::Checkout, caller)
            .await
    }

    /// Accepts a release of every line of a reservation that is not checked out onto the queue.
    pub async fn request_release(
        &self,
        id: &ReservationId,
        key: Option<&IdempotencyKey>,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        self.request_hold_change(id, key, HoldRequest::Release, caller)
            .await
    }

    async fn request_hold_change(
        &self,
        id: &ReservationId,
        key: Option<&IdempotencyKey>,
        request: HoldRequest,
        caller: &Caller,
    ) -> Result<CommandId, AppError> {
        let scope = match request {
            HoldRequest::Checkout => format!("checkout/{id}"),
            HoldRequest::Release => format!("release/{id}"),
        };
        let digest = digest(&scope);
        let command_id = key.map_or_else(CommandId::random, |key| {
            CommandId::for_idempotency_key(caller.client_id(), &scope, key)
        });
        if key.is_some() && self.resubmit(command_id, &digest).await? {
            return Ok(command_id);
        }
        let reservation = self.load_reservation(id, caller).await?;
        let now = self.clock.now();
        let status = reservation.status_at(now);
        let refused = match request {
            HoldRequest::Checkout => status != HoldStatus::Active,
            HoldRequest::Release => status == HoldStatus::Committed,
        };
        if refused {
            return Err(AppError::ReservationNotActive { status });
        }
        let commands = reservation
            .holds
            .iter()
            .map(|(hold, _)| Command {
                id: command_id,
                sku: hold.sku.clone(),
                accepted_at: now,
                action: match request {
                    HoldRequest::Checkout => Action::CommitHold {
                        reservation_id: id.clone(),
                    },
                    HoldRequest::Release => Action::ReleaseHold {
                        reservation_id: id.clone(),
                    },
                },
            })
            .collect();
        self.submit(command_id, commands, digest, caller.client_id())
            .await
    }

    /// Loads a reservation by id for `caller`: its anchor event, then each line's hold record (a
    /// line with no record is still as it was placed). Another client's reservation is not
    /// found, as if it did not exist: its existence is not confirmed to a client it is not for.
    async fn load_reservation(
        &self,
        id: &ReservationId,
        caller: &Caller,
    ) -> Result<Reservation, AppError> {
        let anchor = self
            .store
            .read_event(id.anchor_sku(), id.anchor_seq())
            .await?
            .ok_or(AppError::ReservationNotFound)?;
        let placed = placed_lines(&anchor, id).ok_or(AppError::ReservationNotFound)?;
        if !caller.may_act_for(anchor.change.owner()) {
            return Err(AppError::ReservationNotFound);
        }
        let keys: Vec<RecordKey> = placed
            .iter()
            .map(|hold| RecordKey::Hold {
                reservation_id: id.clone(),
                sku: hold.sku.clone(),
            })
            .collect();
        let records = self.store.read_records(&keys).await?;
        let holds = placed
            .into_iter()
            .zip(records)
            .map(|(placed, stored)| match stored {
                Some(stored) => match stored.record {
                    Record::Hold(hold) => (hold, Some(stored.version)),
                    _ => (placed, Some(stored.version)),
                },
                None => (placed, None),
            })
            .collect();
        Ok(Reservation {
            id: id.clone(),
            created_at: anchor.at,
            holds,
        })
    }

    pub(crate) async fn load_states<'a>(
        &self,
        skus: impl Iterator<Item = &'a Sku>,
    ) -> Result<Vec<Arc<SkuState>>, StoreError> {
        try_join_all(skus.map(|sku| self.cache.load(self.store.as_ref(), sku))).await
    }
}

/// The holds a reservation placed, as its anchor event describes them (all lines share terms).
pub(crate) fn placed_lines(anchor: &Event, id: &ReservationId) -> Option<Vec<HoldLine>> {
    let Change::HoldPlaced {
        reservation_id,
        quantity,
        lines,
        ..
    } = &anchor.change
    else {
        return None;
    };
    if reservation_id != id {
        return None;
    }
    let first = HoldLine::placed(&anchor.sku, &anchor.change)?;
    if lines.is_empty() {
        return Some(vec![first]);
    }
    debug_assert_eq!(lines[0].quantity, *quantity);
    Some(
        lines
            .iter()
            .map(|line| HoldLine {
                sku: line.sku.clone(),
                quantity: line.quantity,
                ..first.clone()
            })
            .collect(),
    )
}

/// The append of `changes` to `sku`, right after the head `state` was decided on.
pub(crate) fn next_append(
    sku: &Sku,
    state: &SkuState,
    now: Timestamp,
    changes: Vec<Change>,
) -> StreamAppend {
    let events = changes
        .into_iter()
        .zip(state.version + 1..)
        .map(|(change, seq)| Event {
            sku: sku.clone(),
            seq,
            at: now,
            change,
        })
        .collect();
    StreamAppend {
        sku: sku.clone(),
        expected: state.version,
        events,
    }
}

/// The write of a hold's record over the version read.
pub(crate) fn hold_write(hold: &HoldLine, version: Option<u64>) -> RecordWrite {
    RecordWrite {
        key: RecordKey::Hold {
            reservation_id: hold.reservation_id.clone(),
            sku: hold.sku.clone(),
        },
        expected: version,
        record: Record::Hold(hold.clone()),
    }
}

/// A stable digest of a request, to tell a retry from another request under the same key.
pub(crate) fn digest(value: &impl Serialize) -> String {
    use sha2::{Digest, Sha256};
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
