//! The one error shape of the API: `{"error": "<snake_case_code>", "message": "...", ...details}`,
//! and the one table of its codes ([`ERROR_CODES`]): the status each code answers with and what it
//! means. Answers take their status from it and the OpenAPI document lists it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use inventory_core::domain::InvalidValue;
use inventory_core::AppError;
use serde_json::{json, Map, Value};

use crate::access::BEARER_CHALLENGE;
use crate::extract::MAX_BODY_BYTES;

/// One error code of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode {
    /// The snake_case code of the `error` field.
    pub code: &'static str,
    /// The status it answers with.
    pub status: StatusCode,
    /// What it means, for the API's readers.
    pub meaning: &'static str,
}

const fn code(code: &'static str, status: StatusCode, meaning: &'static str) -> ErrorCode {
    ErrorCode {
        code,
        status,
        meaning,
    }
}

/// Every error code the API answers with.
pub const ERROR_CODES: &[ErrorCode] = &[
    code("malformed_json", StatusCode::BAD_REQUEST, "The body is not valid JSON."),
    code(
        "invalid_body",
        StatusCode::BAD_REQUEST,
        "The body is JSON of the wrong shape (a wrong type, an unknown or a missing field); `field` names it.",
    ),
    code("unreadable_body", StatusCode::BAD_REQUEST, "The body could not be read."),
    code("invalid_path", StatusCode::BAD_REQUEST, "A path parameter is not valid text."),
    code(
        "invalid_query",
        StatusCode::BAD_REQUEST,
        "The query is not what the route takes: GET /items 1 to 100 `sku` parameters, GET /items/{sku} nothing or `detail=buckets`.",
    ),
    code("invalid_sku", StatusCode::BAD_REQUEST, "A SKU is not 1-64 characters of [A-Za-z0-9._-]."),
    code("invalid_quantity", StatusCode::BAD_REQUEST, "A quantity is not between 1 and 1000000."),
    code("invalid_delta", StatusCode::BAD_REQUEST, "An adjustment is 0 or beyond 1000000000 either way."),
    code("invalid_reference", StatusCode::BAD_REQUEST, "A reference (of a receipt, an adjustment, a move, a count, a shipment or a return) is blank or over 500 characters."),
    code("invalid_reason", StatusCode::BAD_REQUEST, "An adjustment's reason is blank or over 500 characters, or free text sent with a `note` (name a listed reason then)."),
    code("invalid_count", StatusCode::BAD_REQUEST, "A count's quantity is not between 0 and 1000000000."),
    code("invalid_expected", StatusCode::BAD_REQUEST, "A count's expected on-hand figure is not between 0 and 1000000000."),
    code("invalid_note", StatusCode::BAD_REQUEST, "A note is blank or over 500 characters."),
    code("invalid_move", StatusCode::BAD_REQUEST, "A move names the same state as `from` and `to`."),
    code("invalid_lines", StatusCode::BAD_REQUEST, "A reservation names no line or too many (100, or 99 with an Idempotency-Key); so does a shipment's, a cancellation's or a return's `lines` given empty."),
    code("duplicate_sku", StatusCode::BAD_REQUEST, "A reservation (or a shipment, a cancellation, a return) names one SKU on two lines."),
    code("invalid_bucket_count", StatusCode::BAD_REQUEST, "A bucket count is not between 1 and 256."),
    code("invalid_threshold", StatusCode::BAD_REQUEST, "A low-stock threshold is not between 0 and 1000000."),
    code("invalid_location", StatusCode::BAD_REQUEST, "A location id is not 1-64 characters of [A-Za-z0-9._-]."),
    code("invalid_location_name", StatusCode::BAD_REQUEST, "A location's name is blank or over 200 characters."),
    code("invalid_locations", StatusCode::BAD_REQUEST, "A reservation's `locations` lists a location twice, or more than 1000."),
    code("invalid_priority", StatusCode::BAD_REQUEST, "A location's priority is not between -1000000 and 1000000."),
    code("invalid_ttl", StatusCode::BAD_REQUEST, "A hold's ttl_seconds is not between 60 and 86400."),
    code("invalid_transfer", StatusCode::BAD_REQUEST, "A transfer's `from` and `to` are the same location."),
    code("invalid_transfer_id", StatusCode::BAD_REQUEST, "The path does not name a transfer id."),
    code("invalid_reservation_id", StatusCode::BAD_REQUEST, "The path does not name a reservation id."),
    code("invalid_command_id", StatusCode::BAD_REQUEST, "The path does not name a command id (a UUID)."),
    code("invalid_idempotency_key", StatusCode::BAD_REQUEST, "The Idempotency-Key is not 1-255 visible ASCII characters."),
    code(
        "idempotency_key_required",
        StatusCode::BAD_REQUEST,
        "An admin command (receipt, adjustment, move, count, buckets, low-stock) or a shipment, cancellation or return came without an Idempotency-Key: a retry after a lost answer would apply it twice. Nothing was queued.",
    ),
    code(
        "unauthenticated",
        StatusCode::UNAUTHORIZED,
        "No valid bearer token came with the request (the answer carries WWW-Authenticate: Bearer).",
    ),
    code("forbidden", StatusCode::FORBIDDEN, "The token lacks the route's scope; `scope` names it."),
    code("route_not_found", StatusCode::NOT_FOUND, "No route has that path."),
    code("unknown_sku", StatusCode::NOT_FOUND, "No stock was ever received for the SKU; `sku` names it."),
    code(
        "unknown_location",
        StatusCode::NOT_FOUND,
        "A command, a reservation line or `pickup_at` names a location the shop has not registered (PUT /locations/{id}); `location` names it. Nothing was queued or held.",
    ),
    code(
        "reservation_not_found",
        StatusCode::NOT_FOUND,
        "No reservation of the caller has that id (another client's reservation is not found either).",
    ),
    code("command_not_found", StatusCode::NOT_FOUND, "No command of the caller has that id."),
    code("method_not_allowed", StatusCode::METHOD_NOT_ALLOWED, "The route does not take that method."),
    code(
        "insufficient_stock",
        StatusCode::CONFLICT,
        "A line asks for more than is available; `sku`, `requested` and `available` say which and how much. Nothing was held.",
    ),
    code(
        "location_unavailable",
        StatusCode::CONFLICT,
        "No location may hold a reservation line: the one it names is inactive, `pickup_at` names a location without pickup, or no active location fulfils online orders; `sku` names the line. Nothing was held.",
    ),
    code(
        "reservation_not_active",
        StatusCode::CONFLICT,
        "The reservation cannot be changed that way where it stands (a checkout or an extension needs it active, a release not checked out, a shipment or a cancellation units sold and not shipped, a return units shipped); `status` says where it stands.",
    ),
    code(
        "sku_not_in_reservation",
        StatusCode::CONFLICT,
        "A line names a SKU the reservation does not hold; `sku` names it. Nothing was queued.",
    ),
    code(
        "reservation_not_checked_out",
        StatusCode::CONFLICT,
        "A line of a shipment, a cancellation or a return is not checked out (held, released or expired); `sku` names it. Nothing was queued.",
    ),
    code(
        "exceeds_unshipped",
        StatusCode::CONFLICT,
        "A shipment's or a cancellation's line asks for more units than were sold and are neither shipped nor cancelled; `sku`, `requested` and `left` say how many. Nothing was queued.",
    ),
    code(
        "exceeds_shipped",
        StatusCode::CONFLICT,
        "A return's line asks for more units than shipped and have not come back; `sku`, `requested` and `left` say how many. Nothing was queued.",
    ),
    code(
        "too_many_locations",
        StatusCode::CONFLICT,
        "The shop has 1000 locations already (the default one counts): change one instead. Nothing was registered.",
    ),
    code("payload_too_large", StatusCode::PAYLOAD_TOO_LARGE, "The body is over 64 KiB."),
    code(
        "unsupported_media_type",
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "The body was not sent as Content-Type: application/json.",
    ),
    code(
        "idempotency_key_reused",
        StatusCode::UNPROCESSABLE_ENTITY,
        "The Idempotency-Key was used before with a different request.",
    ),
    code(
        "contention",
        StatusCode::SERVICE_UNAVAILABLE,
        "Too many concurrent changes to the same items; nothing was changed, retry after Retry-After seconds.",
    ),
    code(
        "unavailable",
        StatusCode::SERVICE_UNAVAILABLE,
        "A dependency did not answer; nothing was changed, retry after Retry-After seconds.",
    ),
    INTERNAL,
];

/// A bug: the detail goes to the log under an incident id, the caller gets only the id.
const INTERNAL: ErrorCode = code(
    "internal",
    StatusCode::INTERNAL_SERVER_ERROR,
    "The service failed unexpectedly; nothing is known to have changed. The answer's `incident_id` names the logged failure.",
);

/// The table entry of `code`.
pub fn error_code(code: &str) -> Option<&'static ErrorCode> {
    ERROR_CODES.iter().find(|entry| entry.code == code)
}

/// An error answer: status, machine-readable code, human message and optional details.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// snake_case code.
    pub code: &'static str,
    /// For a human.
    pub message: String,
    /// Extra fields merged into the body.
    pub details: Map<String, Value>,
}

impl ApiError {
    /// An error without details, answered with the status [`ERROR_CODES`] gives `code`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        let entry = error_code(code).unwrap_or_else(|| {
            tracing::error!(code, "an error code missing from ERROR_CODES");
            &INTERNAL
        });
        Self {
            status: entry.status,
            code: entry.code,
            message: message.into(),
            details: Map::new(),
        }
    }

    /// Adds a detail field.
    pub fn with(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.details.insert(field.to_owned(), value.into());
        self
    }

    /// 500 `internal` for a bug: logs `detail` under a fresh incident id and answers only the id.
    pub fn internal(detail: &str) -> Self {
        let incident = uuid::Uuid::new_v4().to_string();
        tracing::error!(incident_id = %incident, %detail, "internal error");
        Self::new(
            INTERNAL.code,
            "the service failed unexpectedly; the failure was logged",
        )
        .with("incident_id", incident)
    }

    /// 413: the body is over [`MAX_BODY_BYTES`].
    pub fn payload_too_large() -> Self {
        Self::new(
            "payload_too_large",
            format!("the body must not exceed {MAX_BODY_BYTES} bytes"),
        )
    }
}

impl From<InvalidValue> for ApiError {
    fn from(err: InvalidValue) -> Self {
        Self::new(err.code, err.message)
    }
}

impl From<AppError> for ApiError {
    fn from(err: AppError) -> Self {
        let message = err.to_string();
        match err {
            AppError::Invalid(invalid) => invalid.into(),
            AppError::UnknownSku(sku) => {
                Self::new("unknown_sku", message).with("sku", sku.as_str())
            }
            AppError::UnknownLocation(location) => {
                Self::new("unknown_location", message).with("location", location.as_str())
            }
            AppError::LocationUnavailable { sku, .. } => {
                Self::new("location_unavailable", message).with("sku", sku.as_str())
            }
            AppError::ReservationNotFound => Self::new("reservation_not_found", message),
            AppError::CommandNotFound => Self::new("command_not_found", message),
            AppError::InsufficientStock {
                sku,
                requested,
                available,
            } => Self::new("insufficient_stock", message)
                .with("sku", sku.as_str())
                .with("requested", requested)
                .with("available", available),
            AppError::ReservationNotActive { status } => {
                Self::new("reservation_not_active", message).with(
                    "status",
                    serde_json::to_value(status).unwrap_or(Value::Null),
                )
            }
            AppError::LineRefused {
                sku,
                code,
                requested,
                left,
            } => Self::new(code.as_str(), message)
                .with("sku", sku.as_str())
                .with("requested", requested)
                .with("left", left),
            AppError::IdempotencyKeyReused => Self::new(
                "idempotency_key_reused",
                "this Idempotency-Key was already used with a different request",
            ),
            AppError::Contention => Self::new(
                "contention",
                "too many concurrent changes to the same items; retry shortly",
            ),
            AppError::Internal(detail) => Self::internal(&detail),
            AppError::Unavailable(reason) | AppError::NotYet(reason) => {
                tracing::error!(%reason, "dependency unavailable");
                Self::new("unavailable",
                    "the service could not complete the request; nothing was changed, retry shortly",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("error".into(), json!(self.code));
        body.insert("message".into(), json!(self.message));
        body.extend(self.details);
        let mut response = (self.status, Json(Value::Object(body))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, BEARER_CHALLENGE);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_code_is_listed_once_snake_case_with_an_error_status_and_a_meaning() {
        let mut seen = BTreeSet::new();
        for entry in ERROR_CODES {
            assert!(seen.insert(entry.code), "{} is listed twice", entry.code);
            assert!(
                entry
                    .code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                entry.code
            );
            assert!(
                entry.status.is_client_error() || entry.status.is_server_error(),
                "{}",
                entry.code
            );
            assert!(entry.meaning.ends_with('.'), "{}", entry.code);
        }
    }

    #[test]
    fn an_answer_takes_its_status_from_the_table_and_an_unlisted_code_is_a_500_internal() {
        let refused = ApiError::new("insufficient_stock", "no");
        assert_eq!(
            (refused.status, refused.code),
            (StatusCode::CONFLICT, "insufficient_stock")
        );
        let bug = ApiError::new("not_in_the_table", "oops");
        assert_eq!(
            (bug.status, bug.code),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
    }

    #[test]
    fn a_bug_answers_500_internal_with_an_incident_id_and_none_of_its_detail() {
        let answer = ApiError::from(AppError::Internal(
            "item sku#A/7 does not decode: missing field `change`".into(),
        ));
        assert_eq!(
            (answer.status, answer.code),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
        assert!(!answer.message.contains("decode"), "{}", answer.message);
        let incident = answer.details["incident_id"]
            .as_str()
            .expect("an incident id");
        assert!(uuid::Uuid::parse_str(incident).is_ok(), "{incident}");
        assert_eq!(answer.details.len(), 1, "{:?}", answer.details);
    }
}
