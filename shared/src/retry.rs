//! The one retry policy. Every loop of the service that tries again takes its waits from here:
//! the decision loop (a race lost: read again, decide again), the adapters (DynamoDB keys left
//! unprocessed, Kinesis records and EventBridge entries left unput: [`put_in_chunks`]) and the
//! dev pollers (a shard read that failed).
//!
//! Waits grow exponentially (the schedule is [`backon`]'s) and each is drawn from the whole
//! window, `[0, window)` ("full jitter"): racing clients spread over the window instead of
//! colliding again at its edge, so N racers space out over about N round trips.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;

use crate::config::Config;

/// The first window of a decision's retry, in round trips of the attempt that lost.
const DECISION_FIRST_WINDOW_ROUND_TRIPS: u32 = 4;
/// The widest window of a decision's retry.
const DECISION_WIDEST_WINDOW: Duration = Duration::from_secs(1);
/// A store call's retries of the items it left undone, and its first and widest windows: about
/// 2.5 s in all, well inside a Lambda's timeout.
const STORE_CALL_RETRIES: usize = 7;
const STORE_CALL_FIRST_WINDOW: Duration = Duration::from_millis(40);
const STORE_CALL_WIDEST_WINDOW: Duration = Duration::from_millis(640);
/// A dev poller's first and widest wait after a failed read (it never gives up).
const POLL_FIRST_WINDOW: Duration = Duration::from_millis(200);
const POLL_WIDEST_WINDOW: Duration = Duration::from_secs(5);

/// The waits of one retrying loop: call [`Retry::wait`] before each retry.
#[derive(Debug)]
pub struct Retry {
    windows: ExponentialBackoff,
    deadline: Option<Instant>,
}

impl Retry {
    /// A decision that lost a race, after an attempt that took `round_trip`: windows from four
    /// such round trips, doubling to 1 s; at most [`Config::max_attempts`] attempts in all,
    /// within [`Config::contention_budget`].
    pub fn decision(config: &Config, round_trip: Duration) -> Self {
        let first = round_trip.max(Duration::from_millis(1)) * DECISION_FIRST_WINDOW_ROUND_TRIPS;
        Self::new(
            first.min(DECISION_WIDEST_WINDOW),
            DECISION_WIDEST_WINDOW,
            config.max_attempts.saturating_sub(1) as usize,
            Some(Instant::now() + config.contention_budget),
        )
    }

    /// A store or queue call that left some of its items undone (throttled): seven retries,
    /// windows from 40 ms doubling to 640 ms.
    pub fn store_call() -> Self {
        Self::new(
            STORE_CALL_FIRST_WINDOW,
            STORE_CALL_WIDEST_WINDOW,
            STORE_CALL_RETRIES,
            None,
        )
    }

    /// A poller's read that failed: windows from 200 ms doubling to 5 s, without end. Start a
    /// new one after a read that succeeds.
    pub fn poll() -> Self {
        Self::new(POLL_FIRST_WINDOW, POLL_WIDEST_WINDOW, usize::MAX, None)
    }

    fn new(first: Duration, widest: Duration, retries: usize, deadline: Option<Instant>) -> Self {
        let windows = ExponentialBuilder::new()
            .with_min_delay(first)
            .with_max_delay(widest)
            .with_factor(2.0)
            .with_max_times(retries)
            .build();
        Self { windows, deadline }
    }

    /// Waits before the next retry; `false` (at once) once the retries or the time are spent.
    pub async fn wait(&mut self) -> bool {
        let Some(window) = self.windows.next() else {
            return false;
        };
        let mut pause = window.mul_f64(fastrand::f64());
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            pause = pause.min(left);
        }
        tokio::time::sleep(pause).await;
        true
    }
}

/// What a batched put left unput: the entries, and the last reason given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unput<T> {
    /// The entries not put.
    pub entries: Vec<T>,
    /// Why (the last answer that refused some).
    pub reason: String,
}

impl<T> Unput<T> {
    /// The entries of `chunk` whose result in `results` (one per entry, in order) names an
    /// error, with the last error named.
    pub fn refused(chunk: Vec<T>, results: impl IntoIterator<Item = Option<String>>) -> Self {
        let mut unput = Self {
            entries: Vec::new(),
            reason: String::new(),
        };
        for (entry, error) in chunk.into_iter().zip(results) {
            if let Some(error) = error {
                unput.reason = error;
                unput.entries.push(entry);
            }
        }
        unput
    }
}

/// Puts `entries` through `put`, at most `per_call` to a call, in order. `put` answers the
/// entries of its chunk it could not put (all of them when the call failed), and why; they are
/// put again, with a store call's backoff ([`Retry::store_call`]). What is still unput when the
/// retries are spent is the error.
pub async fn put_in_chunks<T, F, Fut>(
    entries: Vec<T>,
    per_call: usize,
    mut put: F,
) -> Result<(), Unput<T>>
where
    T: Clone,
    F: FnMut(Vec<T>) -> Fut,
    Fut: Future<Output = Result<(), Unput<T>>>,
{
    let mut pending = entries;
    let mut reason = String::new();
    let mut retry = Retry::store_call();
    loop {
        let mut unput = Vec::new();
        for chunk in pending.chunks(per_call.max(1)) {
            if let Err(left) = put(chunk.to_vec()).await {
                unput.extend(left.entries);
                reason = left.reason;
            }
        }
        if unput.is_empty() {
            return Ok(());
        }
        pending = unput;
        if !retry.wait().await {
            return Err(Unput {
                entries: pending,
                reason,
            });
        }
        tracing::warn!(unput = pending.len(), %reason, "putting the unput entries again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_refused_some_entries_names_them_and_the_last_reason() {
        let unput = Unput::refused(
            vec!['a', 'b', 'c', 'd'],
            [
                None,
                Some("throttled".to_owned()),
                None,
                Some("internal".to_owned()),
            ],
        );
        assert_eq!(
            unput,
            Unput {
                entries: vec!['b', 'd'],
                reason: "internal".to_owned()
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn what_a_put_left_is_put_again_in_order_and_what_never_goes_is_the_error() {
        use std::sync::Mutex;
        let calls = Mutex::new(Vec::new());
        // 25 entries, 10 to a call; the first call of each entry refuses the odd ones.
        let put = put_in_chunks((0..25).collect(), 10, |chunk: Vec<u32>| {
            let mut calls = calls.lock().unwrap();
            let retry = !calls.is_empty() && calls.len() >= 3;
            calls.push(chunk.clone());
            async move {
                let refused: Vec<u32> =
                    chunk.into_iter().filter(|n| !retry && n % 2 == 1).collect();
                if refused.is_empty() {
                    Ok(())
                } else {
                    Err(Unput {
                        entries: refused,
                        reason: "throttled".into(),
                    })
                }
            }
        })
        .await;
        assert_eq!(put, Ok(()));
        let calls = calls.into_inner().unwrap();
        assert_eq!(calls.len(), 5, "{calls:?}");
        assert_eq!(calls[2], vec![20, 21, 22, 23, 24]);
        assert_eq!(calls[3], vec![1, 3, 5, 7, 9, 11, 13, 15, 17, 19]);
        assert_eq!(calls[4], vec![21, 23]);

        let never = put_in_chunks(vec![1, 2], 10, |chunk: Vec<u32>| async move {
            Err(Unput {
                entries: chunk,
                reason: "no such bus".into(),
            })
        })
        .await;
        assert_eq!(
            never,
            Err(Unput {
                entries: vec![1, 2],
                reason: "no such bus".into()
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_decision_retries_within_its_attempts_and_budget() {
        let config = Config {
            max_attempts: 4,
            ..Config::default()
        };
        let mut retry = Retry::decision(&config, Duration::from_millis(5));
        let mut retries = 0;
        while retry.wait().await {
            retries += 1;
        }
        assert_eq!(retries, 3, "four attempts: the first and three retries");

        let config = Config {
            max_attempts: 1_000,
            contention_budget: Duration::from_millis(50),
            ..Config::default()
        };
        let started = Instant::now();
        let mut retry = Retry::decision(&config, Duration::from_millis(5));
        while retry.wait().await {}
        assert!(started.elapsed() <= Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn waits_are_drawn_from_windows_that_double_to_the_widest() {
        let mut retry = Retry::store_call();
        let mut waited = Vec::new();
        loop {
            let before = Instant::now();
            if !retry.wait().await {
                break;
            }
            waited.push(before.elapsed());
        }
        assert_eq!(waited.len(), STORE_CALL_RETRIES);
        let windows = [40, 80, 160, 320, 640, 640, 640].map(Duration::from_millis);
        for (wait, window) in waited.iter().zip(windows) {
            assert!(*wait <= window, "{wait:?} beyond its window {window:?}");
        }
    }
}
