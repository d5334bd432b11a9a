//! Use case: reserve a cart. A hold on every line or on none, owned by the caller, written as
//! one transaction of conditional appends (one per SKU) and, with an `Idempotency-Key`, the
//! key's record.
//!
//! Warm requests decide on the heads this process knows, without a read; the conditional
//! append is what makes that safe (a stale head conflicts, it never grants). A refusal is only
//! answered on state known current since the request started; otherwise it is read again first.
//!
//! One-line requests waiting for the turn on the same item in one process are decided together
//! and written in one transaction ([`super::combine`]).

use std::sync::Arc;

use futures::future::try_join_all;
use serde::Serialize;
use tokio::time::Instant;

use super::attempt::{until_decided, write, Attempt, Reading, Written};
use super::combine::{Member, Waiting};
use super::escrow::placement::{Allocated, LinePlan, Part, Placer};
use super::escrow::Draft;
use super::heads::Heads;
use super::idempotency::{digest, earlier_reservation, key_of};
use super::reservation_book::ReservationBook;
use super::views::ReservationView;
use crate::config::Config;
use crate::domain::decide::place_hold;
use crate::domain::{
    Bucket, BucketCount, Caller, Change, HoldLine, HoldTerms, IdempotencyKey, InvalidValue, Line,
    PlaceRejection, PlacedLine, Preference, Quantity, ReservationId, StreamId, Timestamp,
    TtlSeconds,
};
use crate::error::AppError;
use crate::limits::{MAX_LINES, MAX_TRANSACTION_ITEMS};
use crate::ports::{
    Clock, Conflict, IdempotencyRecord, Record, RecordWrite, Records, StreamAppend, Transaction,
    Transactions,
};
use crate::telemetry;

/// A validated request to reserve a cart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveRequest {
    lines: Vec<Line>,
    preference: Preference,
    ttl: TtlSeconds,
    idempotency_key: Option<IdempotencyKey>,
}

impl ReserveRequest {
    /// A request for 1–100 lines of distinct SKUs (99 with a key: its record is written in the
    /// same transaction).
    pub fn new(
        lines: Vec<Line>,
        ttl: TtlSeconds,
        idempotency_key: Option<IdempotencyKey>,
    ) -> Result<Self, InvalidValue> {
        let (limit, why) = match idempotency_key {
            Some(_) => (
                MAX_TRANSACTION_ITEMS - 1,
                " with an Idempotency-Key (one write carries at most 100 items)",
            ),
            None => (MAX_LINES, ""),
        };
        Line::check_all(&lines, limit, why)?;
        Ok(Self {
            lines,
            preference: Preference::default(),
            ttl,
            idempotency_key,
        })
    }

    /// The request with its lines that name no location allocated by `preference`.
    pub fn preferring(self, preference: Preference) -> Self {
        Self { preference, ..self }
    }

    fn digest(&self) -> String {
        #[derive(Serialize)]
        struct Canonical<'a> {
            lines: &'a [Line],
            ttl: TtlSeconds,
            #[serde(flatten)]
            preference: &'a Preference,
        }
        digest(&Canonical {
            lines: &self.lines,
            ttl: self.ttl,
            preference: &self.preference,
        })
    }
}

#[derive(Clone)]
pub(crate) struct Reserve {
    /// Where each line holds.
    pub(crate) placer: Placer,
    pub(crate) heads: Arc<Heads>,
    /// The one-line requests waiting for their turn, per item.
    pub(crate) waiting: Arc<Waiting<Job, Answer>>,
    pub(crate) book: Arc<ReservationBook>,
    pub(crate) records: Arc<dyn Records>,
    pub(crate) transactions: Arc<dyn Transactions>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: Config,
}

/// A one-line request waiting to be decided with the others on its item at its location.
pub(crate) struct Job {
    request: ReserveRequest,
    /// Its item at the one location that may hold it (bucket 0 there).
    at: StreamId,
    digest: String,
    caller: Caller,
    started: Instant,
}

/// The answer to a [`Job`], and how many times its decision read again.
pub(crate) type Answer = (Result<ReservationView, AppError>, u32);

/// What deciding waiting requests together came to, by the request's place in the list: the
/// reservations made, the refusals that stand, and the requests left to decide alone (refused
/// on a state that does not decide a refusal, or beyond one transaction).
struct Together {
    placed: Vec<(usize, ReservationView)>,
    refused: Vec<(usize, AppError)>,
    alone: Vec<usize>,
}

impl Together {
    /// Every one of `count` requests left to decide alone.
    fn none(count: usize) -> Self {
        Self {
            placed: Vec::new(),
            refused: Vec::new(),
            alone: (0..count).collect(),
        }
    }
}

impl Reserve {
    /// Places the holds (see the module documentation); an idempotent retry answers the
    /// reservation the caller's key first made.
    pub(crate) async fn reserve(
        &self,
        request: ReserveRequest,
        caller: &Caller,
    ) -> Result<ReservationView, AppError> {
        let started = Instant::now();
        let mut rereads = 0;
        let answer = self.decide(&request, caller, &mut rereads).await;
        let outcome = telemetry::reservation_outcome(&answer);
        telemetry::reservation(outcome, rereads, started.elapsed());
        answer
    }

    async fn decide(
        &self,
        request: &ReserveRequest,
        caller: &Caller,
        rereads: &mut u32,
    ) -> Result<ReservationView, AppError> {
        let digest = request.digest();
        if let Some(earlier) = self.earlier(request, &digest, caller).await? {
            return Ok(earlier);
        }
        // A state confirmed by the request ahead in the queue for the turns counts as current:
        // it was confirmed after this request started.
        let started = Instant::now();
        if let [line] = request.lines.as_slice() {
            if let Some(at) = self.placer.fixed(line, &request.preference).await? {
                let job = Job {
                    request: request.clone(),
                    at: at.clone(),
                    digest,
                    caller: caller.clone(),
                    started,
                };
                return self.together(&at, job, rereads).await;
            }
        }
        let _turns = self
            .heads
            .take_turns(request.lines.iter().map(|line| &line.sku))
            .await?;
        self.alone(request, &digest, caller, started, rereads).await
    }

    /// Decides `request` by itself, the turns on its SKUs taken.
    async fn alone(
        &self,
        request: &ReserveRequest,
        digest: &str,
        caller: &Caller,
        started: Instant,
        rereads: &mut u32,
    ) -> Result<ReservationView, AppError> {
        until_decided(&self.config, rereads, |reading| {
            self.attempt(request, digest, caller, reading, started)
        })
        .await
    }

    /// A one-line request on an item at a location (`at`): it waits on their list for its
    /// answer or the turn on the item; with the turn, it decides for everyone on the list
    /// ([`super::combine`]).
    async fn together(
        &self,
        at: &StreamId,
        job: Job,
        rereads: &mut u32,
    ) -> Result<ReservationView, AppError> {
        let mut ticket = self.waiting.join(at, job);
        let turns = tokio::select! {
            biased;
            answer = &mut ticket.answer => return answered(answer, rereads),
            turns = self.heads.take_turns(std::iter::once(at.item())) => turns,
        };
        match turns {
            Ok(turns) => {
                let members = self.waiting.take_all(at);
                if !members.is_empty() {
                    // Decided in a task of its own, turns and all: the others' answers must not
                    // depend on this request's caller waiting for its own.
                    let this = self.clone();
                    tokio::spawn(async move {
                        this.serve(members).await;
                        drop(turns);
                    });
                }
            }
            Err(contention) => {
                if self.waiting.leave(at, &ticket) {
                    return Err(contention);
                }
            }
        }
        answered(ticket.answer.await, rereads)
    }

    /// Answers `members` (one-line requests on one item, the turn on it held): those that fit
    /// the item's bucket as known are held in one write, the others are decided alone after.
    async fn serve(&self, members: Vec<Member<Job, Answer>>) {
        let began = Instant::now();
        let count = members.len();
        let mut rereads = 0;
        let decided = if members.len() == 1 {
            Ok(Together::none(1))
        } else {
            let jobs: Vec<&Job> = members.iter().map(|member| &member.job).collect();
            until_decided(&self.config, &mut rereads, |reading| {
                self.attempt_together(&jobs, reading)
            })
            .await
        };
        let Together {
            placed,
            refused,
            alone,
        } = match decided {
            Ok(together) => together,
            Err(err) => {
                for member in members {
                    member.answer((Err(err.clone()), rereads));
                }
                return;
            }
        };
        let (held, turned_down, left) = (placed.len(), refused.len(), alone.len());
        let mut members: Vec<Option<Member<Job, Answer>>> = members.into_iter().map(Some).collect();
        for (index, view) in placed {
            if let Some(member) = members[index].take() {
                member.answer((Ok(view), rereads));
            }
        }
        for (index, refusal) in refused {
            if let Some(member) = members[index].take() {
                member.answer((Err(refusal), rereads));
            }
        }
        for index in alone {
            if let Some(member) = members[index].take() {
                let job = &member.job;
                let mut own = rereads;
                let answer = self
                    .alone(
                        &job.request,
                        &job.digest,
                        &job.caller,
                        job.started,
                        &mut own,
                    )
                    .await;
                member.answer((answer, own));
            }
        }
        tracing::debug!(requests = count, held, turned_down, left, rereads,
            took = ?began.elapsed(), "waiting requests decided");
    }

    /// One decision and one write for one-line requests on one item: the bucket this process
    /// holds in is planned for all of them at once (the units they want together hunted for,
    /// gathered or drained in the same write), and each gets a hold there while it has the
    /// units, all in one transaction.
    async fn attempt_together(
        &self,
        jobs: &[&Job],
        reading: Reading,
    ) -> Result<Attempt<Together>, AppError> {
        let first = &jobs[0].request.lines[0];
        let at = &jobs[0].at;
        let started = jobs
            .iter()
            .map(|job| job.started)
            .min()
            .unwrap_or_else(Instant::now);
        let wanted: i64 = jobs
            .iter()
            .map(|job| job.request.lines[0].quantity.units())
            .sum();
        let all = Quantity::new(wanted).unwrap_or(first.quantity);
        let plan = self.placer.plan(at, all, reading, started).await?;
        if plan.partial {
            // More moves than one write takes: each request is decided alone, where the moves
            // are written a part at a time.
            return Ok(Attempt::Done(Together::none(jobs.len())));
        }
        let stream = &plan.stream;
        let mut draft = Draft::new(stream, plan.states.iter().cloned());
        let now = draft.now(self.clock.now());
        if plan.drain {
            draft.record(Bucket::HOME, now, Change::BucketsDrained {});
        }
        draft.transfer(now, plan.moves.clone());
        let mut together = Together {
            placed: Vec::new(),
            refused: Vec::new(),
            alone: Vec::new(),
        };
        // A refusal stands on a state current since every request started, of an item that
        // sells in one bucket, or is drained into one by this very write.
        let single = plan.states[0].1.layout.active() == BucketCount::ONE;
        let refusals_stand = plan.current && (single || plan.drain);
        let mut records = Vec::new();
        let mut items = draft.event_count();
        for (index, job) in jobs.iter().enumerate() {
            let request = &job.request;
            let size = 1 + usize::from(request.idempotency_key.is_some());
            let state = draft.state(stream.bucket());
            let id = ReservationId::placed(stream.clone(), state.version + 1);
            let terms = HoldTerms::new(now, request.ttl, self.config.release_grace_secs);
            let quantity = request.lines[0].quantity;
            let owner = job.caller.client_id();
            // A retry of a request on the list (the same key) is decided after it, alone: it
            // then finds the first one's record.
            let retried = request.idempotency_key.as_ref().is_some_and(|key| {
                let key = key_of(key, &job.caller);
                records.iter().any(|record: &RecordWrite| record.key == key)
            });
            if retried || items + size > MAX_TRANSACTION_ITEMS {
                together.alone.push(index);
                continue;
            }
            let change = match place_hold(&state, &id, quantity, terms, Vec::new(), owner, now) {
                Ok(change) => change,
                Err(refusal) if refusals_stand => {
                    let refusal = refused_at(at, quantity, refusal);
                    together.refused.push((index, refusal));
                    continue;
                }
                Err(_) => {
                    together.alone.push(index);
                    continue;
                }
            };
            let holds: Vec<HoldLine> = HoldLine::placed(stream, &change).into_iter().collect();
            draft.record(stream.bucket(), now, change);
            if let Some(key) = &request.idempotency_key {
                records.push(idempotency_record(key, &job.caller, &job.digest, &id, now));
            }
            items += size;
            together
                .placed
                .push((index, ReservationView::new(id, now, &holds, now)));
        }
        if together.placed.is_empty() && !plan.current {
            // Refused on what this process knew: read again.
            return Ok(Attempt::Reread);
        }
        if draft.event_count() == 0 {
            return Ok(Attempt::Done(together));
        }
        let mut transaction = Transaction::appends(draft.appends());
        transaction.records = records;
        let issued = Instant::now();
        match write(self.transactions.as_ref(), transaction).await? {
            Written::Done => {
                self.advance(std::slice::from_ref(&draft), issued);
                tracing::info!(reservations = together.placed.len(), "reserved together");
                Ok(Attempt::Done(together))
            }
            Written::Lost(Conflict::Stream { stream: lost, .. }) => {
                self.placer.move_home_from(&lost, &plan);
                Ok(Attempt::Reread)
            }
            // A key was used meanwhile: each request is decided alone, its key first.
            Written::Lost(Conflict::Record { .. }) => Ok(Attempt::Done(Together::none(jobs.len()))),
        }
    }

    /// One decision and one write.
    async fn attempt(
        &self,
        request: &ReserveRequest,
        digest: &str,
        caller: &Caller,
        reading: Reading,
        started: Instant,
    ) -> Result<Attempt<ReservationView>, AppError> {
        let parts = match self
            .placer
            .allocate(&request.lines, &request.preference, reading, started)
            .await?
        {
            Allocated::Parts(parts) => parts,
            Allocated::Refused(refusal) => return Err(refusal),
            Allocated::Reread => return Ok(Attempt::Reread),
        };
        // A part allocated to a location that sells from bucket 0 alone was decided on that
        // state (this process's, or read now): it is placed on the same.
        let plans = try_join_all(parts.iter().map(|part| {
            let reading = if part.decided {
                Reading::Known
            } else {
                reading
            };
            self.placer.plan(&part.at, part.quantity, reading, started)
        }))
        .await?;
        let clock = plans
            .iter()
            .flat_map(|plan| &plan.states)
            .fold(self.clock.now(), |now, (_, state)| state.now(now));
        let mut drafts: Vec<Draft> = plans
            .iter()
            .map(|plan| Draft::new(&plan.stream, plan.states.iter().cloned()))
            .collect();
        let now = drafts.iter().fold(clock, |now, draft| draft.now(now));
        for (draft, plan) in drafts.iter_mut().zip(&plans) {
            if plan.drain {
                draft.record(Bucket::HOME, now, Change::BucketsDrained {});
            }
            draft.transfer(now, plan.moves.clone());
        }
        let anchor = &plans[0].stream;
        let anchor_seq = drafts[0].state(anchor.bucket()).version + 1;
        let id = ReservationId::placed(anchor.clone(), anchor_seq);
        // A part refused where it was allocated is allocated again on a fresh read: another
        // location may have the units.
        let current =
            plans.iter().all(|plan| plan.current) && !parts.iter().any(|part| part.allocated);
        let moves_only = drafts.clone();
        if let Err(refusal) = self.place(request, &parts, &plans, &mut drafts, &id, caller, now) {
            // A drain is written even when the line it was for is refused, and the refusal
            // stands only once it is: then every unit to spare is in bucket 0, where the next
            // refusal of the item is decided alone. A drain that loses a race (a transfer or a
            // hold since the read) is decided again on a fresh read. The first part of moves
            // too many for one write is written too, so that the next attempt goes further.
            let drains: Vec<Draft> = moves_only
                .into_iter()
                .zip(&plans)
                .filter(|(_, plan)| plan.drain || plan.partial)
                .map(|(draft, _)| draft)
                .collect();
            let drained = self.write_moves(request, &drains).await?;
            let partial = plans.iter().any(|plan| plan.partial);
            return match (current && drained, drained && partial) {
                (true, _) => Err(refusal),
                (false, true) => Ok(Attempt::Advanced),
                (false, false) => Ok(Attempt::Reread),
            };
        }
        let mut transaction =
            Transaction::appends(drafts.iter().flat_map(Draft::appends).collect());
        if let Some(key) = &request.idempotency_key {
            transaction
                .records
                .push(idempotency_record(key, caller, digest, &id, now));
        }
        if transaction.items() > MAX_TRANSACTION_ITEMS {
            // The moves of a large cart do not fit with its holds: they go first, alone.
            let moved = self.write_moves(request, &moves_only).await?;
            return Ok(if moved {
                Attempt::Advanced
            } else {
                Attempt::Reread
            });
        }
        let issued = Instant::now();
        match write(self.transactions.as_ref(), transaction).await? {
            Written::Done => {}
            Written::Lost(Conflict::Stream { stream: lost, .. }) => {
                for plan in &plans {
                    self.placer.move_home_from(&lost, plan);
                }
                return Ok(Attempt::Reread);
            }
            // Another request with the same key won the race.
            Written::Lost(Conflict::Record { .. }) => {
                let earlier = self.earlier(request, digest, caller).await?;
                return Ok(earlier.map_or(Attempt::Reread, Attempt::Done));
            }
        }
        let holds = self.advance(&drafts, issued);
        tracing::info!(reservation_id = %id, lines = request.lines.len(), "reserved");
        Ok(Attempt::Done(ReservationView::new(id, now, &holds, now)))
    }

    /// Moves this process's knowledge on by what `drafts` wrote (with a write issued at
    /// `issued`); the holds they placed.
    fn advance(&self, drafts: &[Draft], issued: Instant) -> Vec<HoldLine> {
        let mut holds = Vec::new();
        for draft in drafts {
            for (state, events) in draft.written() {
                self.heads.advance(state, events, issued);
                holds.extend(
                    events
                        .iter()
                        .filter_map(|event| HoldLine::placed(&event.stream, &event.change)),
                );
            }
        }
        holds
    }

    /// Writes the moves (and drains) of `drafts` alone, without the holds they were for, one
    /// item's in each write (one item's moves fit in one write, several items' may not);
    /// whether they were all written (`false`: a race lost).
    async fn write_moves(
        &self,
        request: &ReserveRequest,
        drafts: &[Draft],
    ) -> Result<bool, AppError> {
        let mut all = true;
        for draft in drafts {
            let appends: Vec<StreamAppend> = draft.appends();
            if appends.is_empty() {
                continue;
            }
            let issued = Instant::now();
            match write(self.transactions.as_ref(), Transaction::appends(appends)).await? {
                Written::Done => {
                    self.advance(std::slice::from_ref(draft), issued);
                    tracing::info!(lines = request.lines.len(), "stock moved between buckets");
                }
                Written::Lost(_) => all = false,
            }
        }
        Ok(all)
    }

    /// The hold of every part of every line (the first one's event names them all, each in
    /// its bucket at its location), added to its draft, or the first refusal.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &self,
        request: &ReserveRequest,
        parts: &[Part],
        plans: &[LinePlan],
        drafts: &mut [Draft],
        id: &ReservationId,
        caller: &Caller,
        now: Timestamp,
    ) -> Result<(), AppError> {
        let terms = HoldTerms::new(now, request.ttl, self.config.release_grace_secs);
        let cart: Vec<PlacedLine> = if parts.len() > 1 {
            parts
                .iter()
                .zip(plans)
                .map(|(part, plan)| PlacedLine {
                    stream: plan.stream.clone(),
                    quantity: part.quantity,
                })
                .collect()
        } else {
            Vec::new()
        };
        for (index, ((part, plan), draft)) in
            parts.iter().zip(plans).zip(drafts.iter_mut()).enumerate()
        {
            let lines = if index == 0 { cart.clone() } else { Vec::new() };
            let owner = caller.client_id();
            let state = draft.state(plan.stream.bucket());
            let change = place_hold(&state, id, part.quantity, terms, lines, owner, now)
                .map_err(|refusal| refused_at(&part.at, part.quantity, refusal))?;
            draft.record(plan.stream.bucket(), now, change);
        }
        Ok(())
    }

    /// The reservation the caller's key made with this request, if any.
    async fn earlier(
        &self,
        request: &ReserveRequest,
        digest: &str,
        caller: &Caller,
    ) -> Result<Option<ReservationView>, AppError> {
        let Some(key) = &request.idempotency_key else {
            return Ok(None);
        };
        let Some(id) = earlier_reservation(self.records.as_ref(), key, digest, caller).await?
        else {
            return Ok(None);
        };
        let reservation = self.book.load(&id, caller).await?;
        Ok(Some(reservation.view(self.clock.now())))
    }
}

/// The answer a waiting request was given; `Contention` if the request deciding it failed
/// without one.
fn answered(
    answer: Result<Answer, tokio::sync::oneshot::error::RecvError>,
    rereads: &mut u32,
) -> Result<ReservationView, AppError> {
    match answer {
        Ok((answer, count)) => {
            *rereads += count;
            answer
        }
        Err(_) => Err(AppError::Contention),
    }
}

/// A hold of `quantity` units refused at `at`: an item never kept at a location other than the
/// default has none for sale there (it is unknown only where every shop keeps it).
fn refused_at(at: &StreamId, quantity: Quantity, refusal: PlaceRejection) -> AppError {
    match refusal {
        PlaceRejection::UnknownSku if !at.location().is_default() => AppError::InsufficientStock {
            sku: at.item().clone(),
            requested: quantity.units(),
            available: 0,
        },
        refusal => AppError::refused_hold(at.item(), refusal),
    }
}

/// The record that `key` (of `caller`) made reservation `id`, for a request of `digest`.
fn idempotency_record(
    key: &IdempotencyKey,
    caller: &Caller,
    digest: &str,
    id: &ReservationId,
    now: Timestamp,
) -> RecordWrite {
    RecordWrite {
        key: key_of(key, caller),
        expected: None,
        record: Record::Idempotency(IdempotencyRecord {
            request_digest: digest.to_owned(),
            reservation_id: id.clone(),
            created_at: now,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::given::{shopper, sku, Given};
    use crate::domain::Annotation;
    use crate::error::AppError;

    #[tokio::test]
    async fn a_cart_is_held_whole_or_not_at_all() {
        let given = Given::new();
        given.stock("A", 5).await.stock("B", 1).await;
        let alice = shopper("alice");

        let short = given.reserve(&alice, &[("A", 2), ("B", 2)], None).await;
        assert_eq!(
            short.unwrap_err(),
            AppError::InsufficientStock {
                sku: sku("B"),
                requested: 2,
                available: 1
            }
        );
        assert_eq!(given.available("A").await, 5, "nothing held of A");

        let held = given.reserve(&alice, &[("A", 2), ("B", 1)], None).await;
        assert_eq!(held.expect("held").lines.len(), 2);
        assert_eq!(given.available("A").await, 3);
        assert_eq!(given.available("B").await, 0);
    }

    #[tokio::test]
    async fn a_retry_under_the_same_key_answers_the_first_reservation_and_another_request_is_refused(
    ) {
        let given = Given::new();
        given.stock("A", 5).await;
        let alice = shopper("alice");

        let first = given
            .reserve(&alice, &[("A", 2)], Some("k1"))
            .await
            .unwrap();
        let retry = given
            .reserve(&alice, &[("A", 2)], Some("k1"))
            .await
            .unwrap();
        assert_eq!(retry.reservation_id, first.reservation_id);
        assert_eq!(given.available("A").await, 3, "held once");

        let other = given.reserve(&alice, &[("A", 1)], Some("k1")).await;
        assert_eq!(other.unwrap_err(), AppError::IdempotencyKeyReused);
        // Keys are the client's own.
        let bob = given
            .reserve(&shopper("bob"), &[("A", 1)], Some("k1"))
            .await;
        assert_ne!(bob.unwrap().reservation_id, first.reservation_id);
    }

    #[tokio::test]
    async fn a_refusal_on_what_this_process_knew_is_read_again_before_it_is_answered() {
        let given = Given::new();
        given.stock("A", 2).await;
        let alice = shopper("alice");
        given.reserve(&alice, &[("A", 2)], None).await.unwrap();

        // Another process receives more: this one still knows the item sold out.
        let other = given.another_process();
        let admin = crate::domain::Caller::local_admin();
        let quantity = crate::domain::Quantity::new(3).unwrap();
        other
            .receive_stock(sku("A"), quantity, Annotation::received(None), None, &admin)
            .await
            .unwrap();
        let batch = given.queue.try_receive(10);
        other.apply_commands(&sku("A"), &batch).await.unwrap();

        let held = given.reserve(&alice, &[("A", 1)], None).await;
        assert!(held.is_ok(), "refused on a stale state: {held:?}");
    }

    #[tokio::test]
    async fn a_bucketed_item_sells_out_exactly_across_processes_and_refuses_only_at_zero() {
        let given = Given::new();
        given.stock("HOT", 40).await.buckets("HOT", 4).await;
        let item = given
            .inventory
            .item_with_buckets(&sku("HOT"))
            .await
            .unwrap();
        let spread: Vec<i64> = item.buckets.unwrap().iter().map(|b| b.available).collect();
        assert_eq!(spread, vec![10, 10, 10, 10], "spread evenly");

        let processes: Vec<_> = (0..6).map(|_| given.another_process()).collect();
        let alice = shopper("alice");
        let mut sold = 0;
        let mut refused_with_stock = 0;
        for round in 0..20 {
            for process in &processes {
                let request = super::ReserveRequest::new(
                    super::super::given::cart(&[("HOT", 1)]),
                    crate::domain::TtlSeconds::DEFAULT,
                    None,
                )
                .unwrap();
                match process.reserve(request, &alice).await {
                    Ok(view) => {
                        sold += 1;
                        assert_eq!(view.lines[0].sku, sku("HOT"), "shown as the item");
                    }
                    Err(AppError::InsufficientStock { .. }) => {
                        if given.available("HOT").await > 0 {
                            refused_with_stock += 1;
                        }
                    }
                    Err(other) => panic!("round {round}: {other:?}"),
                }
            }
        }
        assert_eq!((sold, refused_with_stock), (40, 0));
        let item = given.inventory.item(&sku("HOT")).await.unwrap();
        assert_eq!((item.on_hand, item.reserved, item.available), (40, 40, 0));
    }

    #[tokio::test]
    async fn buyers_waiting_on_one_process_are_held_together_and_sell_out_exactly() {
        for buckets in [1, 4] {
            let given = Given::new();
            given.stock("HOT", 30).await;
            if buckets > 1 {
                given.buckets("HOT", buckets).await;
            }
            let alice = shopper("alice");
            // Every other buyer sends a key; buyers 1 and 3 retry buyers 0 and 2 (the same key
            // and request) while those still wait: 0 is decided before the others join the list,
            // 2 and 3 are on the same list.
            let buyers = (0..50).map(|n| {
                let key = (n % 2 == 0 || n < 4).then(|| format!("buyer-{}", n / 2 * 2));
                let alice = alice.clone();
                let given = &given;
                async move { given.reserve(&alice, &[("HOT", 1)], key.as_deref()).await }
            });
            let answers = futures::future::join_all(buyers).await;
            let mut ids = std::collections::BTreeSet::new();
            let mut refused = 0;
            for answer in &answers {
                match answer {
                    Ok(view) => {
                        ids.insert(view.reservation_id.clone());
                    }
                    Err(AppError::InsufficientStock { available: 0, .. }) => refused += 1,
                    Err(other) => panic!("{buckets} buckets: {other:?}"),
                }
            }
            for (first, retry) in [(0, 1), (2, 3)] {
                assert_eq!(
                    answers[first].as_ref().map(|view| &view.reservation_id),
                    answers[retry].as_ref().map(|view| &view.reservation_id),
                    "a retry under the same key answers the first reservation"
                );
            }
            assert_eq!((ids.len(), refused), (30, 18), "{buckets} buckets");
            assert_eq!(given.available("HOT").await, 0);
            // Every acknowledged reservation is there, held once.
            for id in &ids {
                let found = given.inventory.reservation(id, &alice).await;
                assert_eq!(
                    found.map(|view| view.lines[0].quantity.units()),
                    Ok(1),
                    "{id}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_sku_never_stocked_is_unknown() {
        let given = Given::new();
        let answer = given.reserve(&shopper("alice"), &[("NEW", 1)], None).await;
        assert_eq!(answer.unwrap_err(), AppError::UnknownSku(sku("NEW")));
    }

    /// Given/when/then for reservations over several locations: allocation, pickup, splits,
    /// and the hold commands acting where the holds are. The platforms' reported failures are
    /// named cases.
    mod locations {
        use super::super::super::given::{location, shopper, sku, Given};
        use super::super::super::AfterSaleRequest;
        use crate::domain::{Line, Preference, Quantity};
        use crate::error::AppError;

        fn allocations(view: &super::super::ReservationView) -> Vec<(String, String, i64)> {
            view.lines
                .iter()
                .flat_map(|line| {
                    line.allocations.iter().map(move |at| {
                        (
                            line.sku.to_string(),
                            at.location.to_string(),
                            at.quantity.units(),
                        )
                    })
                })
                .collect()
        }

        fn row(sku: &str, at: &str, units: i64) -> (String, String, i64) {
            (sku.to_owned(), at.to_owned(), units)
        }

        fn at(id: &str, units: i64) -> (String, i64) {
            (id.to_owned(), units)
        }

        fn split() -> Preference {
            Preference::new(None, Vec::new(), true).unwrap()
        }

        /// Two warehouses: `default` (priority 0) with `first` units of A, `wh-2` (priority 1)
        /// with `second`.
        async fn two_warehouses(first: i64, second: i64) -> Given {
            let given = Given::new();
            given.location("wh-2", false, 1).await;
            given
                .stock("A", first)
                .await
                .stock_at("A", "wh-2", second)
                .await;
            given
        }

        #[tokio::test]
        async fn medusa_14987_15132_a_line_is_held_where_all_of_it_is_never_at_the_first_location_short_of_it(
        ) {
            let given = two_warehouses(2, 5).await;
            let alice = shopper("alice");

            let held = given
                .reserve_at(&alice, &[("A", 3, None)], Preference::default())
                .await
                .unwrap();
            assert_eq!(allocations(&held), [row("A", "wh-2", 3)]);
            assert_eq!(
                given.available_at("A").await,
                [at("default", 2), at("wh-2", 2)]
            );
            // Within the first location's units, the first by priority holds.
            let held = given
                .reserve_at(&alice, &[("A", 2, None)], Preference::default())
                .await
                .unwrap();
            assert_eq!(allocations(&held), [row("A", "default", 2)]);
            // No one location has 3 now (the item has 2 + 0 + ... spread): refused, not split.
            let refused = given
                .reserve_at(&alice, &[("A", 3, None)], Preference::default())
                .await;
            assert_eq!(
                refused.unwrap_err(),
                AppError::InsufficientStock {
                    sku: sku("A"),
                    requested: 3,
                    available: 2
                }
            );
        }

        #[tokio::test]
        async fn the_requests_own_order_comes_before_priority_and_a_named_location_is_the_only_one()
        {
            let given = two_warehouses(5, 5).await;
            let alice = shopper("alice");
            let preferring_wh2 = Preference::new(None, vec![location("wh-2")], false).unwrap();
            let held = given
                .reserve_at(&alice, &[("A", 1, None)], preferring_wh2)
                .await
                .unwrap();
            assert_eq!(allocations(&held), [row("A", "wh-2", 1)]);
            let named = given
                .reserve_at(&alice, &[("A", 4, Some("wh-2"))], Preference::default())
                .await
                .unwrap();
            assert_eq!(allocations(&named), [row("A", "wh-2", 4)]);
            // wh-2 is out: a line naming it is refused although default has 5.
            let short = given
                .reserve_at(&alice, &[("A", 1, Some("wh-2"))], Preference::default())
                .await;
            assert_eq!(
                short.unwrap_err(),
                AppError::InsufficientStock {
                    sku: sku("A"),
                    requested: 1,
                    available: 0
                }
            );
            let unknown = given
                .reserve_at(&alice, &[("A", 1, Some("wh-9"))], Preference::default())
                .await;
            assert_eq!(
                unknown.unwrap_err(),
                AppError::UnknownLocation(location("wh-9"))
            );
        }

        #[tokio::test]
        async fn medusa_16338_a_split_line_takes_all_of_each_location_in_order_and_ships_from_the_holds_locations(
        ) {
            let given = two_warehouses(2, 5).await;
            let alice = shopper("alice");
            let held = given
                .reserve_at(&alice, &[("A", 6, None)], split())
                .await
                .unwrap();
            assert_eq!(
                allocations(&held),
                [row("A", "default", 2), row("A", "wh-2", 4)]
            );
            assert_eq!(held.lines.len(), 1, "one line, held at two locations");
            assert_eq!(held.lines[0].quantity.units(), 6);
            assert_eq!(
                given.available_at("A").await,
                [at("default", 0), at("wh-2", 1)]
            );

            let id = held.reservation_id;
            given
                .inventory
                .request_checkout(&id, None, &alice)
                .await
                .unwrap();
            given.processed().await;
            let item = given.inventory.item(&sku("A")).await.unwrap();
            let committed: Vec<i64> = item.locations.iter().map(|l| l.committed).collect();
            assert_eq!(committed, [2, 4]);

            // Three ship: the two at default, then one at wh-2.
            let three = Line::of(sku("A"), Quantity::new(3).unwrap());
            let shipment = AfterSaleRequest::fulfill(Some(vec![three]), None).unwrap();
            given
                .inventory
                .request_after_sale(&id, shipment, None, &alice)
                .await
                .unwrap();
            given.processed().await;
            let item = given.inventory.item(&sku("A")).await.unwrap();
            let figures: Vec<(i64, i64)> = item
                .locations
                .iter()
                .map(|l| (l.on_hand, l.committed))
                .collect();
            assert_eq!(figures, [(0, 0), (4, 3)]);
            let view = given.inventory.reservation(&id, &alice).await.unwrap();
            assert_eq!(view.lines[0].fulfilled, 3);
            // More than is left to ship is refused whole, before it is queued.
            let four = Line::of(sku("A"), Quantity::new(4).unwrap());
            let too_many = AfterSaleRequest::fulfill(Some(vec![four]), None).unwrap();
            let refused = given
                .inventory
                .request_after_sale(&id, too_many, None, &alice)
                .await;
            assert!(
                matches!(refused, Err(AppError::LineRefused { left: 3, .. })),
                "{refused:?}"
            );
        }

        #[tokio::test]
        async fn a_split_hold_released_or_expired_frees_every_location_it_held() {
            let given = two_warehouses(2, 5).await;
            let alice = shopper("alice");
            let released = given
                .reserve_at(&alice, &[("A", 3, None)], split())
                .await
                .unwrap();
            let expiring = given
                .reserve_at(&alice, &[("A", 4, None)], split())
                .await
                .unwrap();
            assert_eq!(allocations(&expiring), [row("A", "wh-2", 4)]);
            assert_eq!(
                given.available_at("A").await,
                [at("default", 0), at("wh-2", 0)]
            );
            given
                .inventory
                .request_release(&released.reservation_id, None, &alice)
                .await
                .unwrap();
            given.processed().await;
            assert_eq!(
                given.available_at("A").await,
                [at("default", 2), at("wh-2", 1)]
            );
            given.later_by_secs(3_600);
            given.inventory.sweep_expired_holds().await.unwrap();
            given.processed().await;
            assert_eq!(
                given.available_at("A").await,
                [at("default", 2), at("wh-2", 5)]
            );
        }

        #[tokio::test]
        async fn saleor_9970_online_orders_never_hold_a_pickup_stores_units_a_pickup_holds_only_there(
        ) {
            let given = Given::new();
            given.location("store-5", true, 0).await;
            given.stock("A", 1).await.stock_at("A", "store-5", 3).await;
            let alice = shopper("alice");
            let online = given.reserve_at(&alice, &[("A", 2, None)], split()).await;
            assert_eq!(
                online.unwrap_err(),
                AppError::InsufficientStock {
                    sku: sku("A"),
                    requested: 2,
                    available: 1
                }
            );
            let pickup = Preference::new(Some(location("store-5")), Vec::new(), false).unwrap();
            let held = given
                .reserve_at(&alice, &[("A", 2, None)], pickup)
                .await
                .unwrap();
            assert_eq!(allocations(&held), [row("A", "store-5", 2)]);
            // Pickup at a location that offers none is refused, naming why.
            let warehouse = Preference::new(Some(location("default")), Vec::new(), false).unwrap();
            let refused = given.reserve_at(&alice, &[("A", 1, None)], warehouse).await;
            assert!(
                matches!(refused, Err(AppError::LocationUnavailable { .. })),
                "{refused:?}"
            );
        }

        #[tokio::test]
        async fn a_cart_over_two_items_at_two_locations_is_held_whole_or_not_at_all() {
            let given = Given::new();
            given.location("wh-2", false, 1).await;
            given.stock_at("A", "wh-2", 5).await.stock("B", 2).await;
            let alice = shopper("alice");
            let refused = given
                .reserve_at(
                    &alice,
                    &[("A", 2, None), ("B", 3, None)],
                    Preference::default(),
                )
                .await;
            assert!(matches!(refused, Err(AppError::InsufficientStock { .. })));
            assert_eq!(
                given.available_at("A").await,
                [at("default", 0), at("wh-2", 5)]
            );
            let held = given
                .reserve_at(
                    &alice,
                    &[("A", 2, None), ("B", 2, None)],
                    Preference::default(),
                )
                .await
                .unwrap();
            assert_eq!(
                allocations(&held),
                [row("A", "wh-2", 2), row("B", "default", 2)]
            );
            let view = given
                .inventory
                .reservation(&held.reservation_id, &alice)
                .await
                .unwrap();
            assert_eq!(view, held, "read back as answered");
        }

        #[tokio::test]
        async fn an_allocation_on_stale_knowledge_is_decided_again_never_oversold_nor_refused_wrongly(
        ) {
            let given = two_warehouses(3, 3).await;
            let alice = shopper("alice");
            let other = given.another_process();
            // This process learns both locations' figures (3 and 3).
            let warm = given
                .reserve_at(&alice, &[("A", 1, None)], Preference::default())
                .await
                .unwrap();
            given
                .inventory
                .request_release(&warm.reservation_id, None, &alice)
                .await
                .unwrap();
            given.processed().await;
            let request = |units| {
                super::super::ReserveRequest::new(
                    vec![Line::of(sku("A"), Quantity::new(units).unwrap())],
                    crate::domain::TtlSeconds::DEFAULT,
                    None,
                )
                .unwrap()
            };
            // A process that knows one location only reads the other before it allocates.
            let at_wh2 = super::super::ReserveRequest::new(
                vec![Line {
                    location: Some(location("wh-2")),
                    ..Line::of(sku("A"), Quantity::new(1).unwrap())
                }],
                crate::domain::TtlSeconds::DEFAULT,
                None,
            )
            .unwrap();
            other.reserve(at_wh2, &alice).await.unwrap();
            let first = other.reserve(request(1), &alice).await.unwrap();
            assert_eq!(allocations(&first), [row("A", "default", 1)]);
            // The other process sold one at each: this one, still knowing 3 at default, allocates
            // 3 there, loses the write, and decides again on what it reads (2 and 2).
            let refused = given.inventory.reserve(request(3), &alice).await;
            assert!(
                matches!(
                    refused,
                    Err(AppError::InsufficientStock { available: 2, .. })
                ),
                "{refused:?}"
            );
            let held = given.inventory.reserve(request(2), &alice).await.unwrap();
            assert_eq!(allocations(&held), [row("A", "default", 2)]);
            assert_eq!(
                given.available_at("A").await,
                [at("default", 0), at("wh-2", 2)]
            );
            // Stock lands at wh-2 through the other process: a refusal here is read again first.
            let more = given.another_process();
            more.receive_stock(
                crate::domain::ItemAt {
                    sku: sku("A"),
                    location: location("wh-2"),
                },
                Quantity::new(4).unwrap(),
                crate::domain::Annotation::received(None),
                None,
                &crate::domain::Caller::local_admin(),
            )
            .await
            .unwrap();
            let batch = given.queue.try_receive(10);
            more.apply_commands(&sku("A"), &batch).await.unwrap();
            let held = given.inventory.reserve(request(6), &alice).await.unwrap();
            assert_eq!(allocations(&held), [row("A", "wh-2", 6)]);
        }
    }
}
