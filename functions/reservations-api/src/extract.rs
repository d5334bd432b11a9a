//! Request parsing: JSON bodies with specific errors for each way they can be wrong, path
//! parameters parsed into domain types, and the `Idempotency-Key` header.

use axum::extract::{FromRequest, FromRequestParts, Path, RawQuery, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use inventory_core::app::{DEFAULT_LEDGER_PAGE, MAX_LEDGER_PAGE};
use inventory_core::domain::{
    CommandId, IdempotencyKey, LocationId, ReservationId, Sku, TransferId,
};
use serde::de::{self, DeserializeOwned, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body: 415 without a JSON content type, 413 past 64 KiB, 400 `malformed_json` when it
/// is not JSON, 400 `invalid_body` (naming the field) when it is JSON of the wrong shape.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(not_json());
        }
        parse_json(&body_bytes(req).await?).map(JsonBody)
    }
}

/// A JSON body that may be absent altogether (no bytes, or JSON `null`: `T::default()`);
/// present, it is read as [`JsonBody`] reads one.
#[derive(Debug)]
pub struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let json = is_json(req.headers());
        let bytes = body_bytes(req).await?;
        if bytes.is_empty() {
            return Ok(OptionalJsonBody(T::default()));
        }
        if !json {
            return Err(not_json());
        }
        parse_json::<Option<T>>(&bytes).map(|body| OptionalJsonBody(body.unwrap_or_default()))
    }
}

fn not_json() -> ApiError {
    ApiError::new(
        "unsupported_media_type",
        "send the body as JSON with Content-Type: application/json",
    )
}

/// The body's bytes, at most [`MAX_BODY_BYTES`] of them.
async fn body_bytes(req: Request) -> Result<axum::body::Bytes, ApiError> {
    // A declared length over the limit was refused by the route's guard already.
    match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::payload_too_large())
        }
        Err(err) => Err(ApiError::new(
            "unreadable_body",
            format!("the body could not be read: {err}"),
        )),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Parses JSON into `T`, telling malformed JSON from JSON of the wrong shape.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.classify() != serde_json::error::Category::Data {
            return malformed(&inner);
        }
        let field = match missing_field(&inner) {
            Some(name) if path == "." => name,
            Some(name) => format!("{path}.{name}"),
            None => path,
        };
        let message = if field == "." {
            inner.to_string()
        } else {
            format!("{field}: {inner}")
        };
        ApiError::new("invalid_body", message).with("field", field)
    })?;
    deserializer.end().map_err(|err| malformed(&err))?;
    Ok(value)
}

/// The field named in serde's "missing field `name`" (the error path stops at the struct
/// lacking it). The name is one of our own request fields, never client text.
fn missing_field(err: &serde_json::Error) -> Option<String> {
    let text = err.to_string();
    Some(
        text.strip_prefix("missing field `")?
            .split('`')
            .next()?
            .to_owned(),
    )
}

fn malformed(err: &serde_json::Error) -> ApiError {
    ApiError::new(
        "malformed_json",
        format!("the body is not valid JSON: {err}"),
    )
}

/// A JSON number that is whole, as JSON Schema's `integer` has it: `3` and `3.0` alike (JSON does
/// not tell them apart); `3.5`, strings and numbers beyond 64 bits are `invalid_body`. What the
/// number may be is then the domain's to say (`invalid_quantity`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WholeNumber(pub i64);

impl<'de> Deserialize<'de> for WholeNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Whole;
        impl Visitor<'_> for Whole {
            type Value = WholeNumber;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<WholeNumber, E> {
                Ok(WholeNumber(value))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<WholeNumber, E> {
                i64::try_from(value)
                    .map(WholeNumber)
                    .map_err(|_| E::invalid_value(Unexpected::Unsigned(value), &self))
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<WholeNumber, E> {
                // i64::MAX as f64 rounds up to 2^63, itself out of range.
                let in_range = value >= i64::MIN as f64 && value < i64::MAX as f64;
                if value.fract() == 0.0 && in_range {
                    Ok(WholeNumber(value as i64))
                } else {
                    Err(E::invalid_value(Unexpected::Float(value), &self))
                }
            }
        }
        deserializer.deserialize_any(Whole)
    }
}

/// The `{sku}` path parameter.
#[derive(Debug, IntoParams)]
#[into_params(names("sku"), parameter_in = Path)]
pub struct SkuPath(pub Sku);

/// The `{id}` path parameter of a location route.
#[derive(Debug, IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
pub struct LocationPath(pub LocationId);

/// The `{id}` path parameter of a transfer route.
#[derive(Debug, IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
pub struct TransferPath(pub TransferId);

/// The `{id}` path parameter of a reservation route.
#[derive(Debug, IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
pub struct ReservationPath(pub ReservationId);

/// The `{id}` path parameter of a command route.
#[derive(Debug, IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
pub struct CommandPath(pub CommandId);

async fn path_param(parts: &mut Parts) -> Result<String, ApiError> {
    Path::<String>::from_request_parts(parts, &())
        .await
        .map(|Path(raw)| raw)
        .map_err(|err| ApiError::new("invalid_path", err.body_text()))
}

impl<S: Send + Sync> FromRequestParts<S> for SkuPath {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(Self(Sku::parse(&path_param(parts).await?)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for LocationPath {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(Self(LocationId::parse(&path_param(parts).await?)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ReservationPath {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(Self(ReservationId::parse(&path_param(parts).await?)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TransferPath {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(Self(TransferId::parse(&path_param(parts).await?)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CommandPath {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(Self(CommandId::parse(&path_param(parts).await?)?))
    }
}

/// The optional `Idempotency-Key` header: a retry with the same key and the same request takes
/// effect once and gets the first answer again.
#[derive(Debug, IntoParams)]
#[into_params(names("Idempotency-Key"), parameter_in = Header)]
pub struct IdempotencyHeader(
    #[param(value_type = IdempotencyKey, required = false)] pub Option<IdempotencyKey>,
);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyHeader {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let raw = value.to_str().unwrap_or("\u{0}");
        Ok(Self(Some(IdempotencyKey::parse(raw)?)))
    }
}

/// The `Idempotency-Key` header every admin command route requires (receipts, adjustments,
/// buckets, low-stock, and every admin command route to come): without it a client retrying
/// after a lost 202 queues the change twice. A request without one is 400
/// `idempotency_key_required` and queues nothing (as the IETF Idempotency-Key draft answers a
/// missing required key).
#[derive(Debug, IntoParams)]
#[into_params(names("Idempotency-Key"), parameter_in = Header)]
pub struct RequiredIdempotencyKey(
    #[param(value_type = IdempotencyKey, required = true)] pub IdempotencyKey,
);

impl<S: Send + Sync> FromRequestParts<S> for RequiredIdempotencyKey {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match IdempotencyHeader::from_request_parts(parts, state).await? {
            IdempotencyHeader(Some(key)) => Ok(Self(key)),
            IdempotencyHeader(None) => Err(ApiError::new(
                "idempotency_key_required",
                "this route needs an Idempotency-Key header, one per change (a delivery note's or \
                 a count's number serves): a retry after a lost answer would otherwise apply the \
                 change twice",
            )),
        }
    }
}

/// The query of `GET /items/{sku}`: none, or `detail=buckets`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ItemQuery {
    /// `buckets` lists the item's escrow buckets (needs the scope inventory/admin).
    #[param(inline)]
    pub detail: Option<Detail>,
}

/// What more than the item's totals to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Detail {
    /// Each escrow bucket's figures.
    Buckets,
}

impl<S: Send + Sync> FromRequestParts<S> for ItemQuery {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Ok(RawQuery(query)) = RawQuery::from_request_parts(parts, state).await;
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).map_err(|err| {
            ApiError::new(
                "invalid_query",
                format!("{err}; this route takes only ?detail=buckets"),
            )
        })
    }
}

/// The query of `GET /items/{sku}/ledger`: where the page starts and how long it is.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    /// The version after which the page starts (0, the default: from the first change); a
    /// page's `next_after` names the next page's.
    #[serde(default)]
    #[param(minimum = 0)]
    pub after: u64,
    /// Entries at most (1 to 500, default 100).
    #[serde(default = "default_ledger_page")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: usize,
    /// Only the changes at this location, numbered on their own (default: the item's changes
    /// at every location).
    #[serde(default)]
    pub location: Option<LocationId>,
}

fn default_ledger_page() -> usize {
    DEFAULT_LEDGER_PAGE
}

impl<S: Send + Sync> FromRequestParts<S> for LedgerQuery {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Ok(RawQuery(query)) = RawQuery::from_request_parts(parts, state).await;
        let query: LedgerQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
            .map_err(|err| {
                ApiError::new(
                    "invalid_query",
                    format!("{err}; this route takes ?after=VERSION&limit=1..={MAX_LEDGER_PAGE}&location=ID"),
                )
            })?;
        if !(1..=MAX_LEDGER_PAGE).contains(&query.limit) {
            return Err(ApiError::new(
                "invalid_query",
                format!("limit must be 1 to {MAX_LEDGER_PAGE}, got {}", query.limit),
            ));
        }
        Ok(query)
    }
}
