//! The retry budget of a decision that lost a race: bounded by time and by count, with jitter so
//! racing writers spread out instead of colliding again.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::Config;
use crate::error::AppError;
use crate::ports::StoreError;

/// Runs `attempt` until it is not a conflict: a conflict is re-tried within the budget, then
/// answered `Contention`; an unavailable store ends it at once.
pub(crate) async fn until_no_conflict<T, F, Fut>(
    config: &Config,
    mut attempt: F,
) -> Result<T, AppError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut attempts = Attempts::new(config);
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(StoreError::Conflict(_)) => {}
            Err(err) => return Err(err.into()),
        }
        if !attempts.again().await {
            return Err(AppError::Contention);
        }
    }
}

pub(crate) struct Attempts {
    deadline: Instant,
    left: u32,
    made: u32,
}

impl Attempts {
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            deadline: Instant::now() + config.contention_budget,
            left: config.max_attempts.saturating_sub(1),
            made: 1,
        }
    }

    /// Waits before the next attempt after a lost race whose attempt took `observed`: the
    /// racing processes are spread over windows that grow from that round-trip time (full
    /// jitter, doubling per attempt up to 1 s), so N contenders space out over about N round
    /// trips instead of colliding again. `false` once the budget is spent.
    pub(crate) async fn again_after(&mut self, observed: Duration) -> bool {
        if self.left == 0 || Instant::now() >= self.deadline {
            return false;
        }
        self.left -= 1;
        self.made += 1;
        let base = observed.max(Duration::from_millis(1));
        let window = base
            .saturating_mul(1 << self.made.min(10))
            .min(Duration::from_secs(1));
        let pause = window.mul_f64(fastrand::f64());
        let left = self.deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(pause.min(left)).await;
        true
    }

    /// Waits before the next attempt; `false` once the budget is spent.
    pub(crate) async fn again(&mut self) -> bool {
        if self.left == 0 || Instant::now() >= self.deadline {
            return false;
        }
        self.left -= 1;
        self.made += 1;
        // Decisions in one process take turns per SKU, so a conflict means another process
        // won. Retry at once first (the state to retry on is usually already known), then
        // spread the racing processes apart (full jitter, growing to 32 ms).
        if self.made <= 3 {
            tokio::task::yield_now().await;
        } else {
            let cap_ms = 1u64 << self.made.min(5);
            tokio::time::sleep(Duration::from_micros(fastrand::u64(0..=cap_ms * 1000))).await;
        }
        true
    }
}
