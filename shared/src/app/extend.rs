//! Use case: extend a reservation. Every active line is promised for `ttl` from now (never
//! shortened, and never past a day from its placing: [`HoldTerms::extended`]): one `hold_extended` event and the hold's record per line, written over the
//! record version read, so a change made meanwhile makes the write conflict and the attempt
//! reads again.

use std::sync::Arc;

use tokio::time::Instant;

use super::attempt::{until_decided, write, Attempt, Written};
use super::heads::Heads;
use super::reservation_book::{Reservation, ReservationBook, StoredHold};
use super::views::ReservationView;
use crate::config::Config;
use crate::domain::decide::extend_reservation;
use crate::domain::{Caller, HoldLine, HoldTerms, ReservationId, SkuState, TtlSeconds};
use crate::error::AppError;
use crate::limits::MAX_TRANSACTION_ITEMS;
use crate::ports::{Clock, StreamAppend, Transaction, Transactions};

pub(crate) struct Extend {
    pub(crate) heads: Arc<Heads>,
    pub(crate) book: Arc<ReservationBook>,
    pub(crate) transactions: Arc<dyn Transactions>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: Config,
}

/// One line's extension: its append, its record as it becomes, and the state it follows.
struct LineExtension {
    append: StreamAppend,
    hold: StoredHold,
    state: Arc<SkuState>,
}

impl Extend {
    /// Promises an active reservation for `ttl` from now.
    pub(crate) async fn extend(
        &self,
        id: &ReservationId,
        ttl: TtlSeconds,
        caller: &Caller,
    ) -> Result<ReservationView, AppError> {
        let reservation = self.book.load(id, caller).await?;
        let _turns = self
            .heads
            .take_turns(reservation.items().into_iter())
            .await?;
        let mut loaded = Some(reservation);
        let mut rereads = 0;
        until_decided(&self.config, &mut rereads, |_| {
            let known = loaded.take();
            async move {
                let reservation = match known {
                    Some(reservation) => reservation,
                    None => self.book.load(id, caller).await?,
                };
                self.attempt(&reservation, ttl, caller).await
            }
        })
        .await
    }

    /// One decision (on the SKUs' current states) and its writes.
    async fn attempt(
        &self,
        reservation: &Reservation,
        ttl: TtlSeconds,
        caller: &Caller,
    ) -> Result<Attempt<ReservationView>, AppError> {
        let states = self.heads.load_all(reservation.streams()).await?;
        let now = states
            .iter()
            .fold(self.clock.now(), |now, state| state.now(now));
        let grace = self.config.release_grace_secs;
        let terms = HoldTerms::extended(reservation.created_at, now, ttl, grace);
        let lines: Vec<HoldLine> = reservation.holds.iter().map(|h| h.hold.clone()).collect();
        let changes = extend_reservation(&lines, terms, now)
            .map_err(|status| AppError::ReservationNotActive { status })?;
        let mut extensions = Vec::new();
        let mut holds = Vec::with_capacity(lines.len());
        for (((mut hold, change), stored), state) in lines
            .into_iter()
            .zip(changes)
            .zip(&reservation.holds)
            .zip(&states)
        {
            if let Some(change) = change {
                hold.evolve(&change);
                extensions.push(LineExtension {
                    append: StreamAppend::after(state, &hold.stream, now, vec![change])
                        .by(caller.client_id()),
                    hold: StoredHold {
                        hold: hold.clone(),
                        version: stored.version,
                    },
                    state: Arc::clone(state),
                });
            }
            holds.push(hold);
        }
        // Each line is an event and a record: large carts are extended in several writes.
        for chunk in extensions.chunks(MAX_TRANSACTION_ITEMS / 2) {
            let transaction = Transaction {
                appends: chunk.iter().map(|line| line.append.clone()).collect(),
                records: chunk.iter().map(|line| line.hold.write()).collect(),
            };
            let issued = Instant::now();
            if let Written::Lost(_) = write(self.transactions.as_ref(), transaction).await? {
                return Ok(Attempt::Reread);
            }
            for line in chunk {
                self.heads.advance(&line.state, &line.append.events, issued);
            }
        }
        Ok(Attempt::Done(ReservationView::new(
            reservation.id.clone(),
            reservation.created_at,
            &holds,
            now,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::super::given::{shopper, Given};
    use crate::domain::{HoldStatus, TtlSeconds};
    use crate::error::AppError;

    #[tokio::test]
    async fn an_active_reservation_is_promised_longer_and_never_shorter() {
        let given = Given::new();
        given.stock("A", 5).await.stock("B", 5).await;
        let alice = shopper("alice");
        let held = given
            .reserve(&alice, &[("A", 1), ("B", 1)], None)
            .await
            .unwrap();

        let longer = TtlSeconds::new(1_800).unwrap();
        let extended = given
            .inventory
            .extend(&held.reservation_id, longer, &alice)
            .await
            .unwrap();
        assert_eq!(
            extended.expires_at.millis() - held.expires_at.millis(),
            900_000
        );

        let shorter = TtlSeconds::new(60).unwrap();
        let same = given
            .inventory
            .extend(&held.reservation_id, shorter, &alice)
            .await
            .unwrap();
        assert_eq!(same.expires_at, extended.expires_at);
    }

    #[tokio::test]
    async fn a_lapsed_reservation_is_not_extended_and_another_clients_is_not_found() {
        let given = Given::new();
        given.stock("A", 5).await;
        let alice = shopper("alice");
        let held = given.reserve(&alice, &[("A", 1)], None).await.unwrap();
        let ttl = TtlSeconds::DEFAULT;

        let bobs = given
            .inventory
            .extend(&held.reservation_id, ttl, &shopper("bob"))
            .await;
        assert_eq!(bobs.unwrap_err(), AppError::ReservationNotFound);

        given.later_by_secs(901);
        let lapsed = given
            .inventory
            .extend(&held.reservation_id, ttl, &alice)
            .await;
        assert_eq!(
            lapsed.unwrap_err(),
            AppError::ReservationNotActive {
                status: HoldStatus::Expired
            }
        );
    }
}
