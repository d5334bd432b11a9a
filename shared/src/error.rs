//! Errors of the use cases, by category. Each variant says how the HTTP edge answers it.

use thiserror::Error;

use crate::domain::{HoldStatus, InvalidValue, LocationId, PlaceRejection, RejectionCode, Sku};
use crate::ports::{QueueError, StoreError};

/// Why a use case did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AppError {
    /// Bad input (400 with the value's own code).
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    /// No event was ever recorded for the SKU (404 `unknown_sku`).
    #[error("unknown sku {0}")]
    UnknownSku(Sku),
    /// The shop has no location by that id (404 `unknown_location`).
    #[error("unknown location {0}")]
    UnknownLocation(LocationId),
    /// No location may hold a line of `sku`: the one it names is inactive, the pickup store
    /// offers no pickup, or no active location fulfils online orders (409
    /// `location_unavailable`).
    #[error("no location may hold {sku}: {why}")]
    LocationUnavailable {
        /// The line's SKU.
        sku: Sku,
        /// Why, in words.
        why: String,
    },
    /// No reservation has that id (404 `reservation_not_found`).
    #[error("reservation not found")]
    ReservationNotFound,
    /// No command has that id (404 `command_not_found`).
    #[error("command not found")]
    CommandNotFound,
    /// Not enough units of `sku` (409 `insufficient_stock`).
    #[error("insufficient stock of {sku}: requested {requested}, available {available}")]
    InsufficientStock {
        /// The SKU short of stock.
        sku: Sku,
        /// Units the line asked for.
        requested: i64,
        /// Units for sale when it was decided.
        available: i64,
    },
    /// The reservation can no longer be changed that way (409 `reservation_not_active`).
    #[error("reservation is {status:?}")]
    ReservationNotActive {
        /// Where it stands.
        status: HoldStatus,
    },
    /// A line of a shipment, a cancellation or a return asks what the reservation cannot give
    /// (409 with the rule's code: `sku_not_in_reservation`, `reservation_not_checked_out`,
    /// `exceeds_unshipped`, `exceeds_shipped`).
    #[error("{} for {sku}: asked {requested}, {left} left", code.as_str())]
    LineRefused {
        /// The line's SKU.
        sku: Sku,
        /// The rule it breaks.
        code: RejectionCode,
        /// Units it asked for.
        requested: i64,
        /// Units the line has left for it.
        left: i64,
    },
    /// The idempotency key was first used with another request (422 `idempotency_key_reused`).
    #[error("idempotency key reused with a different request")]
    IdempotencyKeyReused,
    /// Conflicts outlasted the retry budget (503 `contention`).
    #[error("too much contention, try again")]
    Contention,
    /// Waiting on something that has not happened yet: a command's acceptance, a reservation
    /// not readable yet, a history still being written. Nothing was done; the work is tried
    /// again later (503 `unavailable` should it reach an API caller).
    #[error("not yet: {0}")]
    NotYet(String),
    /// A dependency failed (503 `unavailable`); nothing was acknowledged.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A bug: the detail is for the logs, never for the caller (500 `internal`).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(_) => AppError::Contention,
            StoreError::Unavailable(cause) => AppError::Unavailable(cause.to_string()),
            StoreError::Incomplete(reason) => AppError::NotYet(reason),
            StoreError::Bug(detail) => AppError::Internal(detail),
        }
    }
}

impl From<QueueError> for AppError {
    fn from(err: QueueError) -> Self {
        AppError::Unavailable(err.0)
    }
}

impl AppError {
    /// The answer to a hold of `sku` that [`crate::domain::decide::place_hold`] refused.
    pub fn refused_hold(sku: &Sku, rejection: PlaceRejection) -> Self {
        match rejection {
            PlaceRejection::UnknownSku => AppError::UnknownSku(sku.clone()),
            PlaceRejection::InsufficientStock {
                requested,
                available,
            } => AppError::InsufficientStock {
                sku: sku.clone(),
                requested,
                available,
            },
        }
    }
}

/// What a caught panic said (its message, when it carried one): for the log line and the
/// error a fault becomes.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
