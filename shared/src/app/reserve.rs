//! Use case: reserve a cart. A hold on every line or on none, owned by the caller, written as
//! one transaction of conditional appends (one per SKU) and, with an `Idempotency-Key`, the
//! key's record.
//!
//! Warm requests decide on the heads this process knows, without a read; the conditional
//! append is what makes that safe (a stale head conflicts, it never grants). A refusal is only
//! answered on state known current since the request started; otherwise it is read again first.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;
use tokio::time::Instant;

use super::attempt::{until_decided, write, Attempt, Reading, Written};
use super::heads::Heads;
use super::idempotency::{digest, earlier_reservation, key_of};
use super::reservation_book::ReservationBook;
use super::views::ReservationView;
use crate::config::Config;
use crate::domain::decide::place_hold;
use crate::domain::{
    Caller, HoldLine, HoldTerms, IdempotencyKey, InvalidValue, Line, PlaceRejection, ReservationId,
    SkuState, Timestamp, TtlSeconds,
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

pub(crate) struct Reserve {
    pub(crate) heads: Arc<Heads>,
    pub(crate) book: Arc<ReservationBook>,
    pub(crate) records: Arc<dyn Records>,
    pub(crate) transactions: Arc<dyn Transactions>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: Config,
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
        let _turns = self
            .heads
            .take_turns(request.lines.iter().map(|line| &line.sku))
            .await?;
        until_decided(&self.config, rereads, |reading| {
            self.attempt(request, &digest, caller, reading, started)
        })
        .await
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
        let (states, current) = self.states(request, reading, started).await?;
        let now = states
            .iter()
            .fold(self.clock.now(), |now, state| state.now(now));
        let id = ReservationId::new(
            request.lines[0].sku.clone(),
            states[0].version + 1,
            fastrand::u64(..),
        );
        let appends = match self.place(request, &states, &id, caller, now) {
            Ok(appends) => appends,
            Err(_) if !current => return Ok(Attempt::Reread),
            Err(refusal) => return Err(refusal),
        };
        let mut transaction = Transaction::appends(appends.clone());
        if let Some(key) = &request.idempotency_key {
            transaction.records.push(RecordWrite {
                key: key_of(key, caller),
                expected: None,
                record: Record::Idempotency(IdempotencyRecord {
                    request_digest: digest.to_owned(),
                    reservation_id: id.clone(),
                    created_at: now,
                }),
            });
        }
        let issued = Instant::now();
        match write(self.transactions.as_ref(), transaction).await? {
            Written::Done => {}
            Written::Lost(Conflict::Stream { .. }) => return Ok(Attempt::Reread),
            // Another request with the same key won the race.
            Written::Lost(Conflict::Record { .. }) => {
                let earlier = self.earlier(request, digest, caller).await?;
                return Ok(earlier.map_or(Attempt::Reread, Attempt::Done));
            }
        }
        for (append, state) in appends.iter().zip(&states) {
            self.heads.advance(state, &append.events, issued);
        }
        tracing::info!(reservation_id = %id, lines = request.lines.len(), "reserved");
        let holds: Vec<HoldLine> = appends
            .iter()
            .filter_map(|append| HoldLine::placed(&append.sku, &append.events[0].change))
            .collect();
        Ok(Attempt::Done(ReservationView::new(id, now, &holds, now)))
    }

    /// The states of the request's SKUs, and whether all were current since `started`.
    async fn states(
        &self,
        request: &ReserveRequest,
        reading: Reading,
        started: Instant,
    ) -> Result<(Vec<Arc<SkuState>>, bool), AppError> {
        let skus = request.lines.iter().map(|line| &line.sku);
        Ok(match reading {
            Reading::Fresh => (self.heads.load_all(skus).await?, true),
            Reading::Known => {
                let known: Vec<_> = skus.map(|sku| self.heads.known(sku)).collect();
                let current = known.iter().all(|k| k.current_since(started));
                (known.into_iter().map(|k| k.state).collect(), current)
            }
        })
    }

    /// The hold of every line (the first line's event names them all), or the first refusal.
    fn place(
        &self,
        request: &ReserveRequest,
        states: &[Arc<SkuState>],
        id: &ReservationId,
        caller: &Caller,
        now: Timestamp,
    ) -> Result<Vec<StreamAppend>, AppError> {
        let terms = HoldTerms::new(now, request.ttl, self.config.release_grace_secs);
        let mut appends = Vec::with_capacity(request.lines.len());
        for (index, (line, state)) in request.lines.iter().zip(states).enumerate() {
            let cart = if index == 0 && request.lines.len() > 1 {
                request.lines.clone()
            } else {
                Vec::new()
            };
            let owner = caller.client_id();
            let change = place_hold(state, id, line.quantity, terms, cart, owner, now).map_err(
                |refusal| match refusal {
                    PlaceRejection::UnknownSku => AppError::UnknownSku(line.sku.clone()),
                    PlaceRejection::InsufficientStock {
                        requested,
                        available,
                    } => AppError::InsufficientStock {
                        sku: line.sku.clone(),
                        requested,
                        available,
                    },
                },
            )?;
            appends.push(StreamAppend::after(state, &line.sku, now, vec![change]));
        }
        Ok(appends)
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

#[cfg(test)]
mod tests {
    use super::super::given::{shopper, sku, Given};
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
            .receive_stock(sku("A"), quantity, None, None, &admin)
            .await
            .unwrap();
        let batch = given.queue.try_receive(10);
        other.apply_commands(&sku("A"), &batch).await.unwrap();

        let held = given.reserve(&alice, &[("A", 1)], None).await;
        assert!(held.is_ok(), "refused on a stale state: {held:?}");
    }

    #[tokio::test]
    async fn a_sku_never_stocked_is_unknown() {
        let given = Given::new();
        let answer = given.reserve(&shopper("alice"), &[("NEW", 1)], None).await;
        assert_eq!(answer.unwrap_err(), AppError::UnknownSku(sku("NEW")));
    }
}
