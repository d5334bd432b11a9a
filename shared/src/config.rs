//! Configuration, read once at start-up. A malformed variable fails the start with its name.

use std::time::Duration;

use thiserror::Error;

use crate::domain::TtlSeconds;

/// Settings of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How long past its expiry a hold keeps counting against availability, so a checkout
    /// accepted in time still commits (`INVENTORY_RELEASE_GRACE_SECONDS`, default 120).
    pub release_grace_secs: i64,
    /// How long a reservation keeps re-reading and re-deciding after conflicts before it answers
    /// 503 `contention` (`INVENTORY_CONTENTION_BUDGET_MS`, default 5000).
    pub contention_budget: Duration,
    /// At most this many attempts per decision, whatever the time left
    /// (`INVENTORY_MAX_ATTEMPTS`, default 200).
    pub max_attempts: u32,
    /// How long an archived event stays in the table once a snapshot covers it
    /// (`INVENTORY_LIVE_RETENTION_SECONDS`, default 35 days: past any reservation's life, so a
    /// reservation's events are readable for as long as anyone may ask about it; at least
    /// [`MIN_LIVE_RETENTION_SECS`]). Every function needs the same value: a process trusts the
    /// head it last saw for no longer than this (the events after it could be gone).
    pub live_retention: Duration,
    /// Time between two sweeps of the expiry timer within one run
    /// (`INVENTORY_SWEEP_INTERVAL_SECONDS`, default 15).
    pub sweep_interval: Duration,
    /// Sweeps per run of the expiry timer (`INVENTORY_SWEEPS_PER_INVOCATION`, default 4: a run
    /// a minute then sweeps every 15 s).
    pub sweeps_per_invocation: u32,
    /// Whether the product-page reads (`GET /items`, `GET /items/{sku}`) are open to anyone, not
    /// only to tokens with `inventory/read` (`INVENTORY_PUBLIC_ITEM_READS`, `true` or `false`,
    /// default `false`; the template's `PublicItemReads` sets it with the routes' authorizer).
    pub public_item_reads: bool,
    /// How long the command stream keeps a command (`INVENTORY_COMMAND_RETENTION_HOURS`, default
    /// 168: the template's `CommandRetentionHours`). A command can be delivered again for that
    /// long, which bounds [`Config::dedupe_window`] from below.
    pub command_retention: Duration,
    /// How long a queued command may keep failing before the processor parks it for an
    /// operator instead of having it delivered again (`INVENTORY_PARK_FAILING_AFTER_SECONDS`,
    /// default 900; counted from its arrival on the stream). The event source mapping retries
    /// without limit, so this bound is what moves a shard past a command that cannot be applied.
    pub park_failing_after: Duration,
}

/// How long after it leaves the stream a command may still be queued again by hand (redriven).
pub const REDRIVE_WINDOW: Duration = Duration::from_secs(7 * 24 * 3_600);

impl Default for Config {
    fn default() -> Self {
        Self {
            release_grace_secs: 120,
            contention_budget: Duration::from_millis(5_000),
            max_attempts: 200,
            live_retention: DEFAULT_LIVE_RETENTION,
            sweep_interval: Duration::from_secs(15),
            sweeps_per_invocation: 4,
            public_item_reads: false,
            command_retention: Duration::from_secs(168 * 3_600),
            park_failing_after: Duration::from_secs(900),
        }
    }
}

/// The longest release grace accepted (`INVENTORY_RELEASE_GRACE_SECONDS`; the template's
/// `ReleaseGraceSeconds` has the same bound).
pub const MAX_RELEASE_GRACE_SECS: i64 = 3_600;

/// The longest a hold can count against availability from its placing: the longest hold plus
/// the longest grace, and an hour for release buckets and clocks. A hold's events must outlive
/// it (the live retention may not be shorter), and the expiry timer's first sweep looks back
/// this far.
pub const LONGEST_HOLD_LIFE_SECS: i64 = TtlSeconds::MAX as i64 + MAX_RELEASE_GRACE_SECS + 3_600;

/// The shortest live retention accepted (the template's `LiveRetentionSeconds` has the same
/// bound).
pub const MIN_LIVE_RETENTION_SECS: i64 = LONGEST_HOLD_LIFE_SECS;

/// The acceptance handshake: how long a queued command whose request is not accepted yet is
/// held back before it is dropped (the API accepts within milliseconds of queueing; only a
/// request that failed stays unaccepted).
pub const ACCEPT_WAIT_MILLIS: i64 = 30_000;

/// Pauses before the processor tries held-back commands again in process, before it nudges
/// them back onto the queue: an acceptance usually lands milliseconds after its commands were
/// queued.
pub const ACCEPT_PATIENCE_MILLIS: [u64; 3] = [20, 80, 250];

/// How long a hold command naming a reservation not readable yet is held back before it is
/// parked (a dependent message may overtake its cause).
pub const DEPENDENCY_WAIT_MILLIS: i64 = 30_000;

/// How long an archived event stays in the table by default (35 days).
pub const DEFAULT_LIVE_RETENTION: Duration = Duration::from_secs(35 * 24 * 3_600);

/// A variable that is set but not usable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("environment variable {name} is invalid: {reason}")]
pub struct ConfigError {
    /// The variable.
    pub name: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let grace = number(
            &lookup,
            "INVENTORY_RELEASE_GRACE_SECONDS",
            0..=MAX_RELEASE_GRACE_SECS,
        )?;
        let budget = number(&lookup, "INVENTORY_CONTENTION_BUDGET_MS", 1..=60_000)?;
        let attempts = number(&lookup, "INVENTORY_MAX_ATTEMPTS", 1..=10_000)?;
        let retention = number(
            &lookup,
            "INVENTORY_LIVE_RETENTION_SECONDS",
            MIN_LIVE_RETENTION_SECS..=3_650 * 86_400,
        )?;
        let interval = number(&lookup, "INVENTORY_SWEEP_INTERVAL_SECONDS", 1..=60)?;
        let sweeps = number(&lookup, "INVENTORY_SWEEPS_PER_INVOCATION", 1..=60)?;
        let public_item_reads = flag(&lookup, "INVENTORY_PUBLIC_ITEM_READS")?;
        let command_hours = number(&lookup, "INVENTORY_COMMAND_RETENTION_HOURS", 24..=8_760)?;
        let park_after = number(&lookup, "INVENTORY_PARK_FAILING_AFTER_SECONDS", 0..=86_400)?;
        let seconds = |secs: i64| Duration::from_secs(secs as u64);
        Ok(Self {
            live_retention: retention.map_or(defaults.live_retention, seconds),
            sweep_interval: interval.map_or(defaults.sweep_interval, seconds),
            sweeps_per_invocation: sweeps.map_or(defaults.sweeps_per_invocation, |n| n as u32),
            release_grace_secs: grace.unwrap_or(defaults.release_grace_secs),
            contention_budget: budget
                .map(|ms| Duration::from_millis(ms as u64))
                .unwrap_or(defaults.contention_budget),
            max_attempts: attempts.map_or(defaults.max_attempts, |n| n as u32),
            public_item_reads: public_item_reads.unwrap_or(defaults.public_item_reads),
            command_retention: command_hours.map_or(defaults.command_retention, |hours| {
                Duration::from_secs(hours as u64 * 3_600)
            }),
            park_failing_after: park_after.map_or(defaults.park_failing_after, seconds),
        })
    }
}

impl Config {
    /// How long what deduplicates a command is kept (its record, its outcomes, the idempotency
    /// key that named it): as long as the command can be delivered again, from the stream or by
    /// a redrive, so a late delivery still finds that it was applied. The one place this is said.
    pub fn dedupe_window(&self) -> Duration {
        self.command_retention + REDRIVE_WINDOW
    }

    /// How long a hold's record is kept after it was last written: the live retention, so a
    /// reservation reads whole for as long as its events are kept (they are kept that long
    /// from their retirement, after the record's last change at the earliest). The one place
    /// this is said.
    pub fn hold_record_retention(&self) -> Duration {
        self.live_retention
    }
}

pub(crate) fn number(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<i64>, ConfigError> {
    let Some(raw) = lookup(name) else {
        return Ok(None);
    };
    let value: i64 = raw.trim().parse().map_err(|_| ConfigError {
        name,
        reason: format!("{raw:?} is not a whole number"),
    })?;
    if !range.contains(&value) {
        return Err(ConfigError {
            name,
            reason: format!("{value} is outside {}..={}", range.start(), range.end()),
        });
    }
    Ok(Some(value))
}

fn flag(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<bool>, ConfigError> {
    let Some(raw) = lookup(name) else {
        return Ok(None);
    };
    match raw.trim() {
        "true" => Ok(Some(true)),
        "false" => Ok(Some(false)),
        _ => Err(ConfigError {
            name,
            reason: format!("{raw:?} is neither true nor false"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        assert_eq!(Config::from_lookup(|_| None), Ok(Config::default()));
    }

    #[test]
    fn a_malformed_variable_is_named_in_the_error() {
        let err = Config::from_lookup(|name| {
            (name == "INVENTORY_RELEASE_GRACE_SECONDS").then(|| "soon".to_string())
        })
        .unwrap_err();
        assert_eq!(err.name, "INVENTORY_RELEASE_GRACE_SECONDS");
    }

    #[test]
    fn public_item_reads_are_off_unless_set_to_true_and_anything_but_true_or_false_is_refused() {
        let with = |value: &'static str| {
            Config::from_lookup(move |name| {
                (name == "INVENTORY_PUBLIC_ITEM_READS").then(|| value.to_string())
            })
        };
        assert!(!Config::default().public_item_reads);
        assert_eq!(with("true").map(|c| c.public_item_reads), Ok(true));
        assert_eq!(with("false").map(|c| c.public_item_reads), Ok(false));
        assert_eq!(
            with("yes").map_err(|e| e.name),
            Err("INVENTORY_PUBLIC_ITEM_READS")
        );
    }

    #[test]
    fn a_live_retention_under_the_floor_is_refused() {
        let with = |secs: i64| {
            Config::from_lookup(move |name| {
                (name == "INVENTORY_LIVE_RETENTION_SECONDS").then(|| secs.to_string())
            })
        };
        assert_eq!(
            with(MIN_LIVE_RETENTION_SECS - 1).map_err(|e| e.name),
            Err("INVENTORY_LIVE_RETENTION_SECONDS")
        );
        assert_eq!(
            with(MIN_LIVE_RETENTION_SECS).map(|c| c.live_retention.as_secs()),
            Ok(MIN_LIVE_RETENTION_SECS as u64)
        );
    }

    #[test]
    fn commands_are_deduplicated_for_as_long_as_the_stream_keeps_them_and_a_redrive_after() {
        assert_eq!(
            Config::default().dedupe_window().as_secs(),
            (7 + 7) * 86_400
        );
        let config = Config::from_lookup(|name| {
            (name == "INVENTORY_COMMAND_RETENTION_HOURS").then(|| "720".to_string())
        })
        .unwrap();
        assert_eq!(config.dedupe_window().as_secs(), (30 + 7) * 86_400);
    }

    #[test]
    fn the_release_grace_can_be_configured() {
        let config = Config::from_lookup(|name| {
            (name == "INVENTORY_RELEASE_GRACE_SECONDS").then(|| "30".to_string())
        })
        .unwrap();
        assert_eq!(config.release_grace_secs, 30);
    }
}
