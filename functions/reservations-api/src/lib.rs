//! The inventory HTTP API as an axum [`Router`]. The same router runs under `lambda_http` in
//! Lambda and under axum in `inventory dev`. Every route is declared once, in [`routes`], with
//! the scope it needs; a guard identifies the caller and checks that scope before the handler
//! runs ([`access`]). Handlers translate: they parse the request into domain types, call one
//! use case of [`Inventory`] for the caller, and map its answer or error to HTTP.

pub mod access;
pub mod error;
pub mod extract;

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::{Json, Router};
use inventory_core::app::{ReserveRequest, MAX_SKUS_PER_READ};
use inventory_core::domain::{CommandId, Line, Quantity, Scope, Sku, TtlSeconds};
use inventory_core::Inventory;
use serde::Deserialize;
use serde_json::json;

use access::{guard, Authenticated, Guard};
pub use access::{Authentication, Route};
use error::ApiError;
use extract::{CommandPath, IdempotencyHeader, JsonBody, ReservationPath, SkuPath};

type Handlers = MethodRouter<Arc<Inventory>>;

/// Every route of the API, with the scope it needs and its handler: the one list the router is
/// built from, so no route exists without a scope.
fn declared_routes() -> Vec<(Route, Handlers)> {
    let route = |method, path, scope, product_page| Route {
        method,
        path,
        scope,
        product_page,
    };
    use Scope::{Admin, Read, Reserve};
    vec![
        (route("GET", "/items", Read, true), get(list_items)),
        (route("GET", "/items/{sku}", Read, true), get(get_item)),
        (
            route("POST", "/items/{sku}/receipts", Admin, false),
            post(post_receipt),
        ),
        (
            route("POST", "/items/{sku}/adjustments", Admin, false),
            post(post_adjustment),
        ),
        (
            route("POST", "/reservations", Reserve, false),
            post(post_reservation),
        ),
        (
            route("GET", "/reservations/{id}", Reserve, false),
            get(get_reservation),
        ),
        (
            route("DELETE", "/reservations/{id}", Reserve, false),
            delete(delete_reservation),
        ),
        (
            route("POST", "/reservations/{id}/extend", Reserve, false),
            post(post_extend),
        ),
        (
            route("POST", "/reservations/{id}/checkout", Reserve, false),
            post(post_checkout),
        ),
        (
            route("GET", "/commands/{id}", Reserve, false),
            get(get_command),
        ),
    ]
}

/// Every route of the API with the scope it needs (the template's routes must match it).
pub fn routes() -> Vec<Route> {
    declared_routes()
        .into_iter()
        .map(|(route, _)| route)
        .collect()
}

/// The API over one service instance, its callers identified by `authentication`. Product-page
/// reads are open to anyone when the service's configuration says so.
pub fn router(inventory: Arc<Inventory>, authentication: Authentication) -> Router {
    let public_item_reads = inventory.config().public_item_reads;
    let mut router = Router::new();
    for (route, handlers) in declared_routes() {
        let state = Arc::new(Guard {
            route,
            authentication: authentication.clone(),
            public: public_item_reads && route.product_page,
        });
        router = router.route(
            route.path,
            handlers.route_layer(from_fn_with_state(state, guard)),
        );
    }
    router
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
    Authenticated(caller): Authenticated,
    SkuPath(sku): SkuPath,
    IdempotencyHeader(key): IdempotencyHeader,
    JsonBody(body): JsonBody<ReceiptBody>,
) -> Result<Response, ApiError> {
    let quantity = Quantity::new(body.quantity)?;
    let id = inventory
        .receive_stock(sku, quantity, body.reference, key.as_ref(), &caller)
        .await?;
    Ok(accepted(id))
}

async fn post_adjustment(
    State(inventory): Service,
    Authenticated(caller): Authenticated,
    SkuPath(sku): SkuPath,
    IdempotencyHeader(key): IdempotencyHeader,
    JsonBody(body): JsonBody<AdjustmentBody>,
) -> Result<Response, ApiError> {
    let id = inventory
        .adjust_stock(sku, body.delta, body.reason, key.as_ref(), &caller)
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
    Authenticated(caller): Authenticated,
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
    let view = inventory.reserve(request, &caller).await?;
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
    Authenticated(caller): Authenticated,
    ReservationPath(id): ReservationPath,
) -> Result<Response, ApiError> {
    Ok(Json(inventory.reservation(&id, &caller).await?).into_response())
}

async fn post_extend(
    State(inventory): Service,
    Authenticated(caller): Authenticated,
    ReservationPath(id): ReservationPath,
    JsonBody(body): JsonBody<ExtendBody>,
) -> Result<Response, ApiError> {
    let ttl = TtlSeconds::new(body.ttl_seconds)?;
    Ok(Json(inventory.extend(&id, ttl, &caller).await?).into_response())
}

async fn post_checkout(
    State(inventory): Service,
    Authenticated(caller): Authenticated,
    ReservationPath(id): ReservationPath,
    IdempotencyHeader(key): IdempotencyHeader,
) -> Result<Response, ApiError> {
    Ok(accepted(
        inventory
            .request_checkout(&id, key.as_ref(), &caller)
            .await?,
    ))
}

async fn delete_reservation(
    State(inventory): Service,
    Authenticated(caller): Authenticated,
    ReservationPath(id): ReservationPath,
    IdempotencyHeader(key): IdempotencyHeader,
) -> Result<Response, ApiError> {
    Ok(accepted(
        inventory
            .request_release(&id, key.as_ref(), &caller)
            .await?,
    ))
}

async fn get_command(
    State(inventory): Service,
    Authenticated(caller): Authenticated,
    CommandPath(id): CommandPath,
) -> Result<Response, ApiError> {
    Ok(Json(inventory.command(id, &caller).await?).into_response())
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
