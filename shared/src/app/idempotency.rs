//! Idempotency, in one place. A client may send an `Idempotency-Key` with any request that
//! changes something; the key is the client's own (two clients never collide).
//!
//! - A reservation records the key (with a digest of the request) in the same transaction as
//!   its holds: a retry with the same request finds the reservation it made; with another
//!   request, `IdempotencyKeyReused`.
//! - A command takes its id from the client, the request's scope and the key
//!   ([`CommandId::for_idempotency_key`](crate::domain::CommandId::for_idempotency_key)), and its
//!   record holds the request's digest: a retry queues the same command again, which the
//!   processor's outcome records make a no-op.

use serde::Serialize;

use crate::domain::{Caller, IdempotencyKey, ReservationId};
use crate::error::AppError;
use crate::ports::{Record, RecordKey, Records};

/// A stable digest of a request, to tell a retry from another request under the same key.
pub(crate) fn digest(value: &impl Serialize) -> String {
    use sha2::{Digest, Sha256};
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where the caller's key is recorded.
pub(crate) fn key_of(key: &IdempotencyKey, caller: &Caller) -> RecordKey {
    RecordKey::Idempotency {
        client_id: caller.client_id().clone(),
        key: key.clone(),
    }
}

/// The reservation the caller's key made, if the key was used with the same request (same
/// `digest`); `IdempotencyKeyReused` if it was used with another.
pub(crate) async fn earlier_reservation(
    records: &dyn Records,
    key: &IdempotencyKey,
    digest: &str,
    caller: &Caller,
) -> Result<Option<ReservationId>, AppError> {
    let found = records.read_records(&[key_of(key, caller)]).await?;
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
