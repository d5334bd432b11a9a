//! The service's metrics, each named once here, recorded through the `metrics` facade. In
//! Lambda they are written as CloudWatch Embedded Metric Format (`aws::metrics_collector`), with
//! the function as a dimension and the labels below as the others: never a SKU, a reservation or
//! a client, so the number of metrics stays fixed. Without a recorder (tests, `inventory dev`)
//! recording costs nothing.

use std::time::Duration;

use crate::domain::Timestamp;

/// Reservations answered, by `outcome`: `granted`, `insufficient_stock`, `unknown_sku`,
/// `contention` (lost races past the budget), `unavailable`, `refused` (any other 4xx).
pub const RESERVATIONS: &str = "reservations";
/// Conditional writes lost to another writer before a reservation was answered.
pub const RESERVATION_CONFLICTS: &str = "reservation_conflicts";
/// Time from a reservation's start to its answer, in milliseconds.
pub const DECISION_LATENCY: &str = "decision_latency_ms";
/// Queued commands handled, by `outcome`: `applied`, `rejected`, `duplicate`, `dropped`,
/// `parked` (set aside for an operator: the parked-commands alarm watches it), `deferred` (held
/// back to wait for their acceptance or their reservation, then tried again).
pub const COMMANDS: &str = "commands";
/// Changes queued commands made, by `kind` (`received`, `adjusted`, `moved`, `counted`,
/// `committed`, `released`, `hold_expired`, `fulfilled`, `cancelled`, `returned`,
/// `buckets_set`, `low_stock_set`): one per command, whatever its buckets share of it.
pub const STOCK_CHANGES: &str = "stock_changes";
/// Queued commands rejected, by `reason` (the rejection's code, as `GET /commands/{id}` says
/// it; the after-sale alarm watches `exceeds_unshipped`, `exceeds_shipped` and
/// `reservation_not_checked_out`).
pub const REJECTIONS: &str = "rejections";
/// Ledger pages read, by `source`: `table` (an item on one stream, from the table alone),
/// `archive` (some versions from the S3 archive), `folded` (events recorded before their
/// figures, folded from the first), `merged` (an item split into buckets).
pub const LEDGER_PAGES: &str = "ledger_pages";
/// Ledger pages refused because the item's history had a gap neither the table nor the
/// archive fills (the ledger-gaps alarm: an event was deleted before it was archived).
pub const LEDGER_GAPS: &str = "ledger_gaps";
/// Time from a command's acceptance to its being applied, in milliseconds.
pub const APPLY_LAG: &str = "apply_lag_ms";
/// Commands parked for an operator right now, counted by the expiry timer every run (the
/// parked-commands alarm: anything above 0).
pub const PARKED_COMMANDS: &str = "parked_commands";
/// `hold_expired` events written by the expiry timer.
pub const HOLDS_EXPIRED: &str = "holds_expired";
/// Integration events (notices) the snapshotter told, by `outcome`: `published`, or
/// `unpublished` (the bus refused them past the retries: the batch is delivered again, and the
/// unpublished-notices alarm watches it).
pub const NOTICES: &str = "notices";
/// Time from the oldest event of a change-feed batch to its handling, in milliseconds (the
/// function dimension tells the snapshotter's from the archiver's).
pub const REACTION_LAG: &str = "reaction_lag_ms";

/// A reservation answered `outcome` after `conflicts` lost races, `elapsed` after it started.
pub(crate) fn reservation(outcome: &'static str, conflicts: u32, elapsed: Duration) {
    metrics::counter!(RESERVATIONS, "outcome" => outcome).increment(1);
    metrics::histogram!(RESERVATION_CONFLICTS).record(f64::from(conflicts));
    metrics::histogram!(DECISION_LATENCY).record(elapsed.as_secs_f64() * 1_000.0);
}

/// `count` queued commands came to `outcome`.
pub(crate) fn commands(outcome: &'static str, count: usize) {
    if count > 0 {
        metrics::counter!(COMMANDS, "outcome" => outcome).increment(count as u64);
    }
}

/// Commands made these changes, and were rejected for these reasons.
pub(crate) fn changes(
    changes: &std::collections::BTreeMap<&'static str, usize>,
    rejections: &std::collections::BTreeMap<crate::domain::RejectionCode, usize>,
) {
    for (kind, count) in changes {
        metrics::counter!(STOCK_CHANGES, "kind" => *kind).increment(*count as u64);
    }
    for (reason, count) in rejections {
        metrics::counter!(REJECTIONS, "reason" => reason.as_str()).increment(*count as u64);
    }
}

/// A ledger page was read from `source`.
pub(crate) fn ledger_page(source: &'static str) {
    metrics::counter!(LEDGER_PAGES, "source" => source).increment(1);
}

/// A ledger page found a gap in an item's history.
pub(crate) fn ledger_gap() {
    metrics::counter!(LEDGER_GAPS).increment(1);
}

/// A command accepted at `accepted_at` was applied at `now`.
pub(crate) fn applied_after(accepted_at: Timestamp, now: Timestamp) {
    let lag = (now.millis() - accepted_at.millis()).max(0);
    metrics::histogram!(APPLY_LAG).record(lag as f64);
}

/// `count` commands are parked right now.
pub(crate) fn parked_commands(count: usize) {
    metrics::gauge!(PARKED_COMMANDS).set(count as f64);
}

/// The expiry timer wrote `count` `hold_expired` events.
pub(crate) fn holds_expired(count: usize) {
    if count > 0 {
        metrics::counter!(HOLDS_EXPIRED).increment(count as u64);
    }
}

/// `count` notices were published, or not.
pub(crate) fn notices(published: bool, count: usize) {
    let outcome = if published {
        "published"
    } else {
        "unpublished"
    };
    metrics::counter!(NOTICES, "outcome" => outcome).increment(count as u64);
}

/// A change-feed batch whose oldest event is of `at` was handled at `now`.
pub fn reacted(at: Timestamp, now: Timestamp) {
    let lag = (now.millis() - at.millis()).max(0);
    metrics::histogram!(REACTION_LAG).record(lag as f64);
}

/// The outcome label of a reservation's answer.
pub(crate) fn reservation_outcome<T>(answer: &Result<T, crate::AppError>) -> &'static str {
    use crate::AppError;
    match answer {
        Ok(_) => "granted",
        Err(AppError::InsufficientStock { .. }) => "insufficient_stock",
        Err(AppError::UnknownSku(_)) => "unknown_sku",
        Err(AppError::UnknownLocation(_)) => "unknown_location",
        Err(AppError::LocationUnavailable { .. }) => "location_unavailable",
        Err(AppError::Contention) => "contention",
        Err(AppError::Unavailable(_)) => "unavailable",
        Err(AppError::Internal(_)) => "internal",
        Err(_) => "refused",
    }
}
