//! The inventory HTTP API as an axum [`Router`]. The same router runs under `lambda_http` in
//! Lambda and under axum in `inventory dev`. Handlers translate: they parse the request into
//! domain types, call one use case of [`Inventory`], and map its answer or error to HTTP.

pub mod error;
pub mod extract;

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use inventory_core::app::{ReserveRequest, MAX_SKUS_PER_READ};
use inventory_core::domain::{CommandId, Line, Quantity, Sku, TtlSeconds};
use inventory_core::Inventory;
use serde::Deserialize;
use serde_json::json;

use error::ApiError;
use extract::{CommandPath, IdempotencyHeader, JsonBody, ReservationPath, SkuPath};

/// The routes of the API over one service instance.
pub fn router(inventory: Arc<Inventory>) -> Router {
    Router::new()
        .route("/items", get(list_items))
        .route("/items/{sku}", get(get_item))
        .route("/items/{sku}/receipts", post(post_receipt))
        .route("/items/{sku}/adjustments", post(post_adjustment))
        .route("/reservations", post(post_reservation))
        .route(
            "/reservations/{id}",
            get(get_reservation).delete(delete_reservation),
        )
        .route("/reservations/{id}/extend", post(post_extend))
        .route("/reservations/{id}/checkout", post(post_checkout))
        .route("/commands/{id}", get(get_command))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(inventory)
}

type Service = State<Arc<Inventory>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiptBody {
    quantity: i64,
    #[serde(default)]
    reference: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdjustmentBody {
    delta: i64,
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReserveBody {
    lines: Vec<LineBody>,
    #[serde(default)]
    ttl_seconds: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineBody {
    sku: String,
    quantity: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtendBody {
    ttl_seconds: i64,
}

fn accepted(command_id: CommandId) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({ "command_id": command_id })),
    )
        .into_response()
}

async fn post_receipt(
    State(inventory): Service,
    SkuPath(sku): SkuPath,
    IdempotencyHeader(key): IdempotencyHeader,
    JsonBody(body): JsonBody<ReceiptBody>,
) -> Result<Response, ApiError> {
    let quantity = Quantity::new(body.quantity)?;
    let id = inventory
        .receive_stock(sku, quantity, body.reference, key.as_ref())
        .await?;
    Ok(accepted(id))
}

async fn post_adjustment(
    State(inventory): Service,
    SkuPath(sku): SkuPath,
    IdempotencyHeader(key): IdempotencyHeader,
    JsonBody(body): JsonBody<AdjustmentBody>,
) -> Result<Response, ApiError> {
    let id = inventory
        .adjust_stock(sku, body.delta, body.reason, key.as_ref())
        .await?;
    Ok(accepted(id))
}

async fn get_item(State(inventory): Service, SkuPath(sku): SkuPath) -> Result<Response, ApiError> {
    Ok(Json(inventory.item(&sku).await?).into_response())
}

async fn list_items(
    State(inventory): Service,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
            .map_err(|err| ApiError::bad_request("invalid_query", err.to_string()))?;
    let mut skus = Vec::new();
    for (name, value) in pairs {
        if name != "sku" {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("unknown query parameter {name:?}; use ?sku=A&sku=B"),
            ));
        }
        skus.push(Sku::parse(&value)?);
    }
    if skus.is_empty() || skus.len() > MAX_SKUS_PER_READ {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!(
                "name 1 to {MAX_SKUS_PER_READ} SKUs as ?sku=A&sku=B, got {}",
                skus.len()
            ),
        ));
    }
    Ok(Json(inventory.items(&skus).await?).into_response())
}

async fn post_reservation(
    State(inventory): Service,
    IdempotencyHeader(key): IdempotencyHeader,
    JsonBody(body): JsonBody<ReserveBody>,
) -> Result<Response, ApiError> {
    let mut lines = Vec::with_capacity(body.lines.len());
    for (index, line) in body.lines.into_iter().enumerate() {
        let at = |err: inventory_core::domain::InvalidValue, field: &str| {
            ApiError::from(err).with("field", format!("lines[{index}].{field}"))
        };
        lines.push(Line {
            sku: Sku::parse(&line.sku).map_err(|e| at(e, "sku"))?,
            quantity: Quantity::new(line.quantity).map_err(|e| at(e, "quantity"))?,
        });
    }
    let ttl = body
        .ttl_seconds
        .map_or(Ok(TtlSeconds::DEFAULT), TtlSeconds::new)?;
    let request = ReserveRequest::new(lines, ttl, key)?;
    let view = inventory.reserve(request).await?;
    let location = format!("/reservations/{}", view.reservation_id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view),
    )
        .into_response())
}

async fn get_reservation(
    State(inventory): Service,
    ReservationPath(id): ReservationPath,
) -> Result<Response, ApiError> {
    Ok(Json(inventory.reservation(&id).await?).into_response())
}

async fn post_extend(
    State(inventory): Service,
    ReservationPath(id): ReservationPath,
    JsonBody(body): JsonBody<ExtendBody>,
) -> Result<Response, ApiError> {
    let ttl = TtlSeconds::new(body.ttl_seconds)?;
    Ok(Json(inventory.extend(&id, ttl).await?).into_response())
}

async fn post_checkout(
    State(inventory): Service,
    ReservationPath(id): ReservationPath,
    IdempotencyHeader(key): IdempotencyHeader,
) -> Result<Response, ApiError> {
    Ok(accepted(
        inventory.request_checkout(&id, key.as_ref()).await?,
    ))
}

async fn delete_reservation(
    State(inventory): Service,
    ReservationPath(id): ReservationPath,
    IdempotencyHeader(key): IdempotencyHeader,
) -> Result<Response, ApiError> {
    Ok(accepted(
        inventory.request_release(&id, key.as_ref()).await?,
    ))
}

async fn get_command(
    State(inventory): Service,
    CommandPath(id): CommandPath,
) -> Result<Response, ApiError> {
    Ok(Json(inventory.command(id).await?).into_response())
}

async fn route_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "route_not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}
