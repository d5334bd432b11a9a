//! One attempt at a decision, and the one loop that tries again. An attempt reads, decides and
//! writes once; it says what came of it as an [`Attempt`], never as a made-up error, and
//! [`until_decided`] acts on that with the service's [`Retry`] policy.

use std::future::Future;

use tokio::time::Instant;

use crate::config::Config;
use crate::error::AppError;
use crate::ports::{Conflict, StoreError, Transaction, Transactions};
use crate::retry::Retry;

/// What one attempt came to. A refusal, or a store that failed, is the `Err` of its `Result`.
#[derive(Debug)]
pub(crate) enum Attempt<T> {
    /// Decided and written: the answer.
    Done(T),
    /// Decided on state that may have moved, or lost a race for a write: read again and decide
    /// again.
    Reread,
    /// Wrote a part of what the decision needs (moves too many for one write): read again and
    /// decide again at once. No retry is spent: each part written is progress, and the parts
    /// are bounded (an item's buckets drain or gather in a few writes).
    Advanced,
}

/// How the next attempt reads the state it decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    /// From what this process already knows: no read, as warm requests are decided.
    Known,
    /// From the store.
    Fresh,
}

/// Runs `attempt` until it is done: the first on what this process knows, each later one on a
/// fresh read. A first attempt on known state that must read again costs no retry; after that
/// the retries wait by [`Retry::decision`] and end in [`AppError::Contention`] when spent.
/// Counts the attempts that had to read again in `rereads`.
pub(crate) async fn until_decided<T, F, Fut>(
    config: &Config,
    rereads: &mut u32,
    mut attempt: F,
) -> Result<T, AppError>
where
    F: FnMut(Reading) -> Fut,
    Fut: Future<Output = Result<Attempt<T>, AppError>>,
{
    let mut reading = Reading::Known;
    let mut retry: Option<Retry> = None;
    loop {
        let started = Instant::now();
        let advanced = match attempt(reading).await? {
            Attempt::Done(value) => return Ok(value),
            Attempt::Advanced => true,
            Attempt::Reread => false,
        };
        *rereads += 1;
        if advanced || reading == Reading::Known {
            reading = Reading::Fresh;
            continue;
        }
        let retry = retry.get_or_insert_with(|| Retry::decision(config, started.elapsed()));
        if !retry.wait().await {
            tracing::warn!(rereads = *rereads, "decision gave up after conflicts");
            return Err(AppError::Contention);
        }
    }
}

/// What a conditional write came to.
#[derive(Debug)]
pub(crate) enum Written {
    /// All of it was written.
    Done,
    /// A condition failed (someone wrote first); nothing was written.
    Lost(Conflict),
}

/// Writes `transaction`, telling a lost race from a failure.
pub(crate) async fn write(
    store: &dyn Transactions,
    transaction: Transaction,
) -> Result<Written, AppError> {
    match store.write(transaction).await {
        Ok(()) => Ok(Written::Done),
        Err(StoreError::Conflict(conflict)) => Ok(Written::Lost(conflict)),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_reread_of_known_state_costs_no_retry_and_spent_retries_are_contention() {
        let config = Config {
            max_attempts: 3,
            ..Config::default()
        };
        let readings = std::sync::Mutex::new(Vec::new());
        let mut rereads = 0;
        let answer: Result<(), AppError> = until_decided(&config, &mut rereads, |reading| {
            readings.lock().unwrap().push(reading);
            async { Ok(Attempt::Reread) }
        })
        .await;
        assert_eq!(answer, Err(AppError::Contention));
        let readings = readings.into_inner().unwrap();
        assert_eq!(readings[0], Reading::Known);
        assert!(readings[1..].iter().all(|r| *r == Reading::Fresh));
        assert_eq!(readings.len(), 4, "the free re-read, then three attempts");
        assert_eq!(rereads, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_that_advance_cost_no_retry_and_read_fresh() {
        let config = Config {
            max_attempts: 1,
            ..Config::default()
        };
        let readings = std::sync::Mutex::new(Vec::new());
        let mut rereads = 0;
        let answer = until_decided(&config, &mut rereads, |reading| {
            let mut readings = readings.lock().unwrap();
            readings.push(reading);
            let advanced = readings.len() <= 5;
            async move {
                Ok(if advanced {
                    Attempt::Advanced
                } else {
                    Attempt::Done(7)
                })
            }
        })
        .await;
        assert_eq!(
            answer,
            Ok(7),
            "five parts written within a budget of one attempt"
        );
        let readings = readings.into_inner().unwrap();
        assert_eq!(readings[0], Reading::Known);
        assert!(readings[1..].iter().all(|r| *r == Reading::Fresh));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_ends_the_loop_at_once() {
        let calls = AtomicU32::new(0);
        let mut rereads = 0;
        let answer: Result<(), AppError> = until_decided(&Config::default(), &mut rereads, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(AppError::ReservationNotFound) }
        })
        .await;
        assert_eq!(answer, Err(AppError::ReservationNotFound));
        assert_eq!((calls.into_inner(), rereads), (1, 0));
    }
}
