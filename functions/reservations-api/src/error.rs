//! The one error shape of the API: `{"error": "<snake_case_code>", "message": "...", ...details}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use inventory_core::domain::InvalidValue;
use inventory_core::AppError;
use serde_json::{json, Map, Value};

use crate::access::BEARER_CHALLENGE;
use crate::extract::MAX_BODY_BYTES;

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
    /// An error without details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Map::new(),
        }
    }

    /// Adds a detail field.
    pub fn with(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.details.insert(field.to_owned(), value.into());
        self
    }

    /// 413: the body is over [`MAX_BODY_BYTES`].
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body must not exceed {MAX_BODY_BYTES} bytes"),
        )
    }

    /// 400 with the code of the invalid value.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl From<InvalidValue> for ApiError {
    fn from(err: InvalidValue) -> Self {
        Self::bad_request(err.code, err.message)
    }
}

impl From<AppError> for ApiError {
    fn from(err: AppError) -> Self {
        let message = err.to_string();
        match err {
            AppError::Invalid(invalid) => invalid.into(),
            AppError::UnknownSku(sku) => {
                Self::new(StatusCode::NOT_FOUND, "unknown_sku", message).with("sku", sku.as_str())
            }
            AppError::ReservationNotFound => {
                Self::new(StatusCode::NOT_FOUND, "reservation_not_found", message)
            }
            AppError::CommandNotFound => {
                Self::new(StatusCode::NOT_FOUND, "command_not_found", message)
            }
            AppError::InsufficientStock {
                sku,
                requested,
                available,
            } => Self::new(StatusCode::CONFLICT, "insufficient_stock", message)
                .with("sku", sku.as_str())
                .with("requested", requested)
                .with("available", available),
            AppError::ReservationNotActive { status } => {
                Self::new(StatusCode::CONFLICT, "reservation_not_active", message).with(
                    "status",
                    serde_json::to_value(status).unwrap_or(Value::Null),
                )
            }
            AppError::IdempotencyKeyReused => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was already used with a different request",
            ),
            AppError::Contention => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "contention",
                "too many concurrent changes to the same items; retry shortly",
            ),
            AppError::Unavailable(reason) => {
                tracing::error!(%reason, "dependency unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
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
