//! The inventory HTTP API as an axum [`Router`]. The same router runs under `lambda_http` in
//! Lambda and under axum in `inventory dev`. Every route is declared once, in [`routes`], with
//! the scope it needs; a guard identifies the caller and checks that scope before the handler
//! runs ([`access`]). Handlers translate: they parse the request into domain types, call one
//! use case of [`Inventory`] for the caller, and map its answer or error to HTTP. The same list
//! and the handlers' `#[utoipa::path]` attributes make the OpenAPI document ([`openapi()`]).

pub mod access;
pub mod error;
pub mod extract;
mod openapi;

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use inventory_core::app::{
    AfterSaleRequest, CommandView, ItemView, ItemsView, LedgerView, ReservationView, ReserveRequest,
};
use inventory_core::domain::{
    Annotation, BucketCount, CommandId, ItemAt, Line, Location, LocationId, LocationKind,
    LowStockThreshold, Preference, Quantity, Reason, Reclassification, Scope, Sku, StockState,
    TransferId, TtlSeconds,
};
use inventory_core::limits::MAX_SKUS_PER_READ;
use inventory_core::Inventory;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::routes;

use access::{guard, Authenticated, Guard, MaybeAuthenticated};
pub use access::{Authentication, Route};
use error::ApiError;
use extract::{
    CommandPath, Detail, IdempotencyHeader, ItemQuery, JsonBody, LedgerQuery, LocationPath,
    OptionalJsonBody, RequiredIdempotencyKey, ReservationPath, SkuPath, TransferPath, WholeNumber,
};

type Handlers = UtoipaMethodRouter<Arc<Inventory>>;

/// Every route of the API: the scope it needs, whether it serves product pages, the errors its
/// use case answers with, and its handler, whose `#[utoipa::path]` gives its method, path,
/// parameters, body and success answer. The router and the OpenAPI document are built from this
/// one list, so no route exists without a scope or undocumented.
fn declared_routes() -> Vec<(Route, Handlers)> {
    use Scope::{Admin, Read, Reserve};
    let route = |scope, product_page, errors, handlers: Handlers| {
        (
            Route::of(&handlers.1, scope, product_page, errors),
            handlers,
        )
    };
    let reservation_errors: &[_] = &["invalid_reservation_id", "reservation_not_found"];
    let changes_reservation: &[_] = &[
        "invalid_reservation_id",
        "reservation_not_found",
        "reservation_not_active",
        "idempotency_key_reused",
    ];
    let after_sale: &[_] = &[
        "invalid_reservation_id",
        "reservation_not_found",
        "reservation_not_active",
        "idempotency_key_required",
        "idempotency_key_reused",
        "invalid_lines",
        "duplicate_sku",
        "invalid_sku",
        "invalid_quantity",
        "sku_not_in_reservation",
        "reservation_not_checked_out",
    ];
    vec![
        route(
            Read,
            true,
            &["invalid_query", "invalid_sku", "unknown_location"],
            routes!(list_items),
        ),
        route(
            Read,
            true,
            &["invalid_query", "invalid_sku", "unknown_sku", "contention"],
            routes!(get_item),
        ),
        route(
            Admin,
            false,
            &[
                "invalid_sku",
                "invalid_query",
                "unknown_sku",
                "unknown_location",
            ],
            routes!(get_ledger),
        ),
        route(
            Admin,
            false,
            &[
                "invalid_location",
                "unknown_location",
                "invalid_sku",
                "invalid_quantity",
                "invalid_note",
                "invalid_reference",
                "idempotency_key_required",
                "idempotency_key_reused",
            ],
            routes!(post_receipt),
        ),
        route(
            Admin,
            false,
            &[
                "invalid_location",
                "unknown_location",
                "invalid_sku",
                "invalid_delta",
                "invalid_reason",
                "invalid_note",
                "invalid_reference",
                "idempotency_key_required",
                "idempotency_key_reused",
            ],
            routes!(post_adjustment),
        ),
        route(
            Admin,
            false,
            &[
                "invalid_location",
                "unknown_location",
                "invalid_sku",
                "invalid_quantity",
                "invalid_move",
                "invalid_note",
                "invalid_reference",
                "idempotency_key_required",
                "idempotency_key_reused",
            ],
            routes!(post_move),
        ),
        route(
            Admin,
            false,
            &[
                "invalid_location",
                "unknown_location",
                "invalid_sku",
                "invalid_count",
                "invalid_expected",
                "invalid_note",
                "invalid_reference",
                "idempotency_key_required",
                "idempotency_key_reused",
            ],
            routes!(put_on_hand),
        ),
        route(
            Admin,
            false,
            &[
                "invalid_location",
                "unknown_location",
                "invalid_sku",
                "invalid_bucket_count",
                "idempotency_key_required",
                "idempotency_key_reused",
            ],
            routes!(put_buckets),
        ),
        route(
            Admin,
            false,
            &[
                "invalid_location",
                "unknown_location",
                "invalid_sku",
                "invalid_threshold",
                "idempotency_key_required",
                "idempotency_key_reused",
            ],
            routes!(put_low_stock),
        ),
        route(
            Admin,
            false,
            &[
                "invalid_sku",
                "invalid_location",
                "invalid_transfer",
                "unknown_location",
                "invalid_quantity",
                "invalid_reference",
                "idempotency_key_required",
                "idempotency_key_reused",
            ],
            routes!(post_transfer),
        ),
        route(
            Admin,
            false,
            &[
                "invalid_transfer_id",
                "invalid_quantity",
                "idempotency_key_required",
                "idempotency_key_reused",
            ],
            routes!(post_transfer_receipt),
        ),
        route(Admin, false, &[], routes!(list_locations)),
        route(
            Admin,
            false,
            &[
                "invalid_location",
                "invalid_location_name",
                "invalid_priority",
                "too_many_locations",
                "contention",
            ],
            routes!(put_location),
        ),
        route(
            Reserve,
            false,
            &[
                "invalid_lines",
                "duplicate_sku",
                "invalid_sku",
                "invalid_quantity",
                "invalid_ttl",
                "invalid_location",
                "invalid_locations",
                "unknown_sku",
                "unknown_location",
                "insufficient_stock",
                "location_unavailable",
                "idempotency_key_reused",
                "contention",
            ],
            routes!(post_reservation),
        ),
        route(Reserve, false, reservation_errors, routes!(get_reservation)),
        route(
            Reserve,
            false,
            changes_reservation,
            routes!(delete_reservation),
        ),
        route(
            Reserve,
            false,
            &[
                "invalid_reservation_id",
                "reservation_not_found",
                "reservation_not_active",
                "invalid_ttl",
                "contention",
            ],
            routes!(post_extend),
        ),
        route(Reserve, false, changes_reservation, routes!(post_checkout)),
        route(
            Reserve,
            false,
            &[after_sale, &["invalid_reference", "exceeds_unshipped"]].concat(),
            routes!(post_fulfill),
        ),
        route(
            Reserve,
            false,
            &[after_sale, &["exceeds_unshipped"]].concat(),
            routes!(post_cancel),
        ),
        route(
            Reserve,
            false,
            &[after_sale, &["invalid_reference", "exceeds_shipped"]].concat(),
            routes!(post_returns),
        ),
        route(
            Reserve,
            false,
            &["invalid_command_id", "command_not_found"],
            routes!(get_command),
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

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi::document(declared_routes())
}

/// The OpenAPI document as the JSON text `GET /openapi.json` serves (and `docs/openapi.json`
/// holds).
pub fn openapi_json() -> String {
    openapi::to_json(&openapi())
}

/// Where the API serves its OpenAPI document, to anyone.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// The API over one service instance, its callers identified by `authentication`. Product-page
/// reads are open to anyone when the service's configuration says so; so is the OpenAPI
/// document.
pub fn router(inventory: Arc<Inventory>, authentication: Authentication) -> Router {
    let public_item_reads = inventory.config().public_item_reads;
    let mut router = Router::new().route(OPENAPI_PATH, openapi::serve());
    for (route, (_, _, handlers)) in declared_routes() {
        let path = route.path.clone();
        let state = Arc::new(Guard {
            public: public_item_reads && route.product_page,
            route,
            authentication: authentication.clone(),
        });
        router = router.route(
            &path,
            handlers.route_layer(from_fn_with_state(state, guard)),
        );
    }
    router
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(inventory)
}

type Service = State<Arc<Inventory>>;

/// A warehouse receipt: units that arrived.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReceiptBody {
    /// The location (default `default`; a registered one: `PUT /locations/{id}`).
    #[serde(default)]
    #[schema(value_type = Option<LocationId>)]
    location: Option<String>,
    #[schema(value_type = Quantity)]
    quantity: WholeNumber,
    /// Why (default `received`; `returned` for units a customer sent back outside a
    /// reservation's return).
    #[serde(default)]
    reason: Option<Reason>,
    /// Free text, for the ledger's readers.
    #[serde(default)]
    #[schema(schema_with = openapi::note)]
    note: Option<String>,
    /// The delivery note or purchase order, for the audit trail.
    #[serde(default)]
    #[schema(schema_with = openapi::note)]
    reference: Option<String>,
}

/// A correction of on-hand stock after a count, damage or loss.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AdjustmentBody {
    /// The location (default `default`; a registered one: `PUT /locations/{id}`).
    #[serde(default)]
    #[schema(value_type = Option<LocationId>)]
    location: Option<String>,
    #[schema(schema_with = openapi::delta)]
    delta: WholeNumber,
    /// Why: a listed reason (`shrinkage`, `damaged`, `correction`...), or free text, kept as
    /// `other` with the text as the note (then send no `note`).
    #[schema(schema_with = openapi::adjustment_reason)]
    reason: String,
    /// Free text, for the ledger's readers.
    #[serde(default)]
    #[schema(schema_with = openapi::note)]
    note: Option<String>,
    /// The document behind it (a ticket, a count sheet).
    #[serde(default)]
    #[schema(schema_with = openapi::note)]
    reference: Option<String>,
}

/// A move of on-hand units from one state to another: out of sale (`available` to `damaged`,
/// `quality_control` or `safety_stock`), back, or between two of those.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    /// The location (default `default`; a registered one: `PUT /locations/{id}`).
    #[serde(default)]
    #[schema(value_type = Option<LocationId>)]
    location: Option<String>,
    /// The state the units leave.
    from: StockState,
    /// The state they enter (not `from`).
    to: StockState,
    #[schema(value_type = Quantity)]
    quantity: WholeNumber,
    /// Why, from the documented list.
    reason: Reason,
    /// Free text, for the ledger's readers.
    #[serde(default)]
    #[schema(schema_with = openapi::note)]
    note: Option<String>,
    /// The document behind it (an inspection report, a ticket).
    #[serde(default)]
    #[schema(schema_with = openapi::note)]
    reference: Option<String>,
}

/// A count of the shelf: the units found on hand.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct OnHandBody {
    /// The location (default `default`; a registered one: `PUT /locations/{id}`).
    #[serde(default)]
    #[schema(value_type = Option<LocationId>)]
    location: Option<String>,
    /// Units found on hand (0 to 1000000000).
    #[schema(schema_with = openapi::count)]
    quantity: WholeNumber,
    /// The on-hand figure the count was taken against: the count applies only if the item still
    /// has that many when the processor reaches it, else it is rejected `stale_count`.
    #[serde(default)]
    #[schema(schema_with = openapi::count)]
    expected: Option<WholeNumber>,
    /// Why (a cycle count, a correction, shrinkage...).
    reason: Reason,
    /// Free text, for the ledger's readers.
    #[serde(default)]
    #[schema(schema_with = openapi::note)]
    note: Option<String>,
    /// The document behind it (the count sheet).
    #[serde(default)]
    #[schema(schema_with = openapi::note)]
    reference: Option<String>,
}

/// How many escrow buckets to split an item into.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BucketsBody {
    /// The location (default `default`; a registered one: `PUT /locations/{id}`).
    #[serde(default)]
    #[schema(value_type = Option<LocationId>)]
    location: Option<String>,
    #[schema(value_type = BucketCount)]
    count: WholeNumber,
}

/// When to tell that an item runs low.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LowStockBody {
    /// The location (default `default`): an item kept at several locations is told low at
    /// each against its own threshold.
    #[serde(default)]
    #[schema(value_type = Option<LocationId>)]
    location: Option<String>,
    #[schema(value_type = LowStockThreshold)]
    below: WholeNumber,
}

/// A location as the shop registers it (a PUT replaces the whole of it).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LocationBody {
    /// A name for people (1 to 200 characters).
    name: String,
    /// `warehouse` or `store`.
    kind: LocationKind,
    /// Whether reservation lines that name no location may be allocated here (default: `true`
    /// for a warehouse, `false` for a store).
    #[serde(default)]
    fulfills_online: Option<bool>,
    /// Whether shoppers may pick up here (default `false`).
    #[serde(default)]
    pickup: Option<bool>,
    #[serde(default)]
    #[schema(schema_with = openapi::priority)]
    priority: Option<WholeNumber>,
    /// Whether it takes new reservations (default `true`); an inactive location keeps its
    /// stock and its holds.
    #[serde(default)]
    active: Option<bool>,
}

/// The shop's locations.
#[derive(Debug, Serialize, ToSchema)]
struct LocationsView {
    /// Every location, the default one included, by id.
    locations: Vec<Location>,
}

/// A cart to hold, all lines or none.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReserveBody {
    #[schema(schema_with = openapi::lines::<CartLineBody>)]
    lines: Vec<CartLineBody>,
    /// How long the holds last (default 900).
    #[serde(default)]
    #[schema(value_type = Option<TtlSeconds>)]
    ttl_seconds: Option<WholeNumber>,
    /// Hold the lines that name no location at this store only (it must be active and offer
    /// pickup).
    #[serde(default)]
    #[schema(value_type = Option<LocationId>)]
    pickup_at: Option<String>,
    /// The order in which locations are tried for the lines that name none, before the
    /// locations' own priority (each once).
    #[serde(default)]
    #[schema(value_type = Option<Vec<LocationId>>, max_items = 1000)]
    locations: Option<Vec<String>>,
    /// Whether a line that names no location may be held at several (all a location has
    /// before the next); default `false`: one location holds all of it.
    #[serde(default)]
    split: Option<bool>,
}

/// One line of a cart.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CartLineBody {
    #[schema(value_type = Sku)]
    sku: String,
    #[schema(value_type = Quantity)]
    quantity: WholeNumber,
    /// Hold it at this location (active); absent: allocated among the active locations that
    /// fulfil online orders (or at `pickup_at`).
    #[serde(default)]
    #[schema(value_type = Option<LocationId>)]
    location: Option<String>,
}

/// One line of a shipment, a cancellation or a return: units of one SKU of the reservation
/// (taken from its holds in the order they were placed, when it is held at several locations).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LineBody {
    #[schema(value_type = Sku)]
    sku: String,
    #[schema(value_type = Quantity)]
    quantity: WholeNumber,
}

/// Which checked-out units ship (the body may be absent: every unit sold and not yet shipped or
/// cancelled ships).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct FulfillBody {
    /// The lines and units that ship; absent: every unit left to ship.
    #[serde(default)]
    #[schema(schema_with = openapi::sale_lines::<LineBody>)]
    lines: Option<Vec<LineBody>>,
    /// The shipment, parcel or order it ships under.
    #[serde(default)]
    #[schema(schema_with = openapi::note)]
    reference: Option<String>,
}

/// Which checked-out units are no longer sold (the body may be absent: every unit not yet
/// shipped).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    /// The lines and units cancelled; absent: every unit left to ship.
    #[serde(default)]
    #[schema(schema_with = openapi::sale_lines::<LineBody>)]
    lines: Option<Vec<LineBody>>,
}

/// Shipped units that came back.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReturnBody {
    /// The lines and units returned.
    #[schema(schema_with = openapi::sale_lines::<LineBody>)]
    lines: Vec<LineBody>,
    /// Whether the units are for sale again (`true`) or set aside as `damaged` (`false`).
    restock: bool,
    /// The return authorisation or parcel.
    #[serde(default)]
    #[schema(schema_with = openapi::note)]
    reference: Option<String>,
}

/// A new lifetime for every hold of a reservation, counted from now.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ExtendBody {
    #[schema(value_type = TtlSeconds)]
    ttl_seconds: WholeNumber,
}

/// The answer to a queued command: where to ask how it went (`GET /commands/{id}`).
#[derive(Debug, Serialize, ToSchema)]
struct Accepted {
    command_id: CommandId,
}

/// The item at the location a body names (the default one when it names none).
fn item_at(sku: Sku, location: Option<&str>) -> Result<ItemAt, ApiError> {
    Ok(ItemAt {
        sku,
        location: location
            .map(LocationId::parse)
            .transpose()?
            .unwrap_or_default(),
    })
}

fn accepted(command_id: CommandId) -> Response {
    (StatusCode::ACCEPTED, Json(Accepted { command_id })).into_response()
}

/// A transfer of units between two of the shop's locations.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    #[schema(value_type = Sku)]
    sku: String,
    /// Where the units leave (a registered location).
    #[schema(value_type = LocationId)]
    from: String,
    /// Where they land (another registered location).
    #[schema(value_type = LocationId)]
    to: String,
    #[schema(value_type = Quantity)]
    quantity: WholeNumber,
    /// The shipment, for the audit trail.
    #[serde(default)]
    #[schema(schema_with = openapi::note)]
    reference: Option<String>,
}

/// Units of a transfer landed at its destination.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TransferReceiptBody {
    /// Units received; absent: every unit still in transit.
    #[serde(default)]
    #[schema(value_type = Option<Quantity>)]
    quantity: Option<WholeNumber>,
}

/// The answer to a transfer: its command, and the transfer to receive
/// (`POST /transfers/{id}/receive`).
#[derive(Debug, Serialize, ToSchema)]
struct TransferAccepted {
    command_id: CommandId,
    #[schema(value_type = TransferId)]
    transfer_id: TransferId,
}

/// Transfer stock: queue a shipment of units from one location to another. Once applied they
/// are in transit (`transit_out` at `from`, `transit_in` at `to`), for sale at neither, until
/// received; one for more than `from` has for sale is rejected `source_lacks_units` (see
/// `GET /commands/{id}`).
#[utoipa::path(
    post,
    path = "/transfers",
    params(RequiredIdempotencyKey),
    request_body = TransferBody,
    responses((status = 202, description = "The transfer is queued.", body = TransferAccepted)),
)]
async fn post_transfer(
    State(inventory): Service,
    Authenticated(caller): Authenticated,
    RequiredIdempotencyKey(key): RequiredIdempotencyKey,
    JsonBody(body): JsonBody<TransferBody>,
) -> Result<Response, ApiError> {
    let field = |field: &'static str| move |err| ApiError::from(err).with("field", field);
    let sku = Sku::parse(&body.sku).map_err(field("sku"))?;
    let from = LocationId::parse(&body.from).map_err(field("from"))?;
    let to = LocationId::parse(&body.to).map_err(field("to"))?;
    let quantity = Quantity::new(body.quantity.0)?;
    let (command_id, transfer_id) = inventory
        .transfer_stock(
            sku,
            (from, to),
            quantity,
            body.reference,
            Some(&key),
            &caller,
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(TransferAccepted {
            command_id,
            transfer_id,
        }),
    )
        .into_response())
}

/// Receive a transfer: queue the landing of its units at its destination, all still in transit
/// or `quantity` of them (the rest stays in transit). Applied after the transfer; rejected
/// `nothing_in_transit` or `exceeds_in_transit` when fewer are (see `GET /commands/{id}`).
#[utoipa::path(
    post,
    path = "/transfers/{id}/receive",
    params(TransferPath, RequiredIdempotencyKey),
    request_body(content = Option<TransferReceiptBody>, description = "May be absent: every unit in transit lands."),
    responses((status = 202, description = "The receipt is queued.", body = Accepted)),
)]
async fn post_transfer_receipt(
    State(inventory): Service,
    Authenticated(caller): Authenticated,
    TransferPath(id): TransferPath,
    RequiredIdempotencyKey(key): RequiredIdempotencyKey,
    OptionalJsonBody(body): OptionalJsonBody<TransferReceiptBody>,
) -> Result<Response, ApiError> {
    let quantity = body
        .quantity
        .map(|units| Quantity::new(units.0))
        .transpose()?;
    let id = inventory
        .receive_transfer(id, quantity, Some(&key), &caller)
        .await?;
    Ok(accepted(id))
}

/// Receive stock: queue a receipt of units for the SKU.
#[utoipa::path(
    post,
    path = "/items/{sku}/receipts",
    params(SkuPath, RequiredIdempotencyKey),
    request_body = ReceiptBody,
    responses((status = 202, description = "The receipt is queued.", body = Accepted)),
)]
async fn post_receipt(
    State(inventory): Service,
    Authenticated(caller): Authenticated,
    SkuPath(sku): SkuPath,
    RequiredIdempotencyKey(key): RequiredIdempotencyKey,
    JsonBody(body): JsonBody<ReceiptBody>,
) -> Result<Response, ApiError> {
    let quantity = Quantity::new(body.quantity.0)?;
    let why = Annotation {
        reason: body.reason.unwrap_or(Reason::Received),
        note: body.note,
        reference: body.reference,
    };
    let id = inventory
        .receive_stock(
            item_at(sku, body.location.as_deref())?,
            quantity,
            why,
            Some(&key),
            &caller,
        )
        .await?;
    Ok(accepted(id))
}

/// Adjust stock: queue a correction of the SKU's on-hand units. It is rejected when it would
/// leave on-hand below zero (see `GET /commands/{id}`).
#[utoipa::path(
    post,
    path = "/items/{sku}/adjustments",
    params(SkuPath, RequiredIdempotencyKey),
    request_body = AdjustmentBody,
    responses((status = 202, description = "The adjustment is queued.", body = Accepted)),
)]
async fn post_adjustment(
    State(inventory): Service,
    Authenticated(caller): Authenticated,
    SkuPath(sku): SkuPath,
    RequiredIdempotencyKey(key): RequiredIdempotencyKey,
    JsonBody(body): JsonBody<AdjustmentBody>,
) -> Result<Response, ApiError> {
    let why = Annotation::given(body.reason, body.note, body.reference)?;
    let id = inventory
        .adjust_stock(
            item_at(sku, body.location.as_deref())?,
            body.delta.0,
            why,
            Some(&key),
            &caller,
        )
        .await?;
    Ok(accepted(id))
}

/// Move units between states: queue a move of on-hand units out of sale (to `damaged`,
/// `quality_control` or `safety_stock`), back to sale, or between two of those states. On-hand
/// stock is unchanged. It is rejected `source_lacks_units` when the source state has fewer
/// units than it moves; out of `available`, only units for sale then (never ones that holds or
/// sales keep) can move (see `GET /commands/{id}`).
#[utoipa::path(
    post,
    path = "/items/{sku}/moves",
    params(SkuPath, RequiredIdempotencyKey),
    request_body = MoveBody,
    responses((status = 202, description = "The move is queued.", body = Accepted)),
)]
async fn post_move(
    State(inventory): Service,
    Authenticated(caller): Authenticated,
    SkuPath(sku): SkuPath,
    RequiredIdempotencyKey(key): RequiredIdempotencyKey,
    JsonBody(body): JsonBody<MoveBody>,
) -> Result<Response, ApiError> {
    let quantity = Quantity::new(body.quantity.0)?;
    let states = Reclassification::new(body.from, body.to).ok_or_else(|| {
        ApiError::new(
            "invalid_move",
            format!("a move from {} to {} moves nothing", body.from, body.to),
        )
        .with("field", "to")
    })?;
    let why = Annotation {
        reason: body.reason,
        note: body.note,
        reference: body.reference,
    };
    let id = inventory
        .reclassify_stock(
            item_at(sku, body.location.as_deref())?,
            states,
            quantity,
            why,
            Some(&key),
            &caller,
        )
        .await?;
    Ok(accepted(id))
}

/// Count the SKU: queue the on-hand figure a count found. With `expected`, it is a
/// compare-and-set: applied only if the item still has `expected` units on hand when the
/// processor reaches it, else rejected `stale_count` (count again). A count is a fact: it may
/// leave the item short of what holds and sales keep, as an adjustment may.
#[utoipa::path(
    put,
    path = "/items/{sku}/on-hand",
    params(SkuPath, RequiredIdempotencyKey),
    request_body = OnHandBody,
    responses((status = 202, description = "The count is queued.", body = Accepted)),
)]
async fn put_on_hand(
    State(inventory): Service,
    Authenticated(caller): Authenticated,
    SkuPath(sku): SkuPath,
    RequiredIdempotencyKey(key): RequiredIdempotencyKey,
    JsonBody(body): JsonBody<OnHandBody>,
) -> Result<Response, ApiError> {
    let why = Annotation {
        reason: body.reason,
        note: body.note,
        reference: body.reference,
    };
    let id = inventory
        .count_stock(
            item_at(sku, body.location.as_deref())?,
            body.quantity.0,
            body.expected.map(|expected| expected.0),
            why,
            Some(&key),
            &caller,
        )
        .await?;
    Ok(accepted(id))
}

/// Split the SKU into escrow buckets: queue the change of its layout to `count` buckets, each
/// its own stream with its own head, so that a hot item sells beyond one conditional write at a
/// time. The processor moves the stock (bucket 1 is the item alone, as every item starts);
/// holds keep their buckets.
#[utoipa::path(
    put,
    path = "/items/{sku}/buckets",
    params(SkuPath, RequiredIdempotencyKey),
    request_body = BucketsBody,
    responses((status = 202, description = "The change of layout is queued.", body = Accepted)),
)]
async fn put_buckets(
    State(inventory): Service,
    Authenticated(caller): Authenticated,
    SkuPath(sku): SkuPath,
    RequiredIdempotencyKey(key): RequiredIdempotencyKey,
    JsonBody(body): JsonBody<BucketsBody>,
) -> Result<Response, ApiError> {
    let count = BucketCount::new(body.count.0)?;
    let id = inventory
        .set_buckets(
            item_at(sku, body.location.as_deref())?,
            count,
            Some(&key),
            &caller,
        )
        .await?;
    Ok(accepted(id))
}

/// Set the SKU's low-stock threshold: queue it, and from then on a `low_stock` integration
/// event is told whenever the units available go below `below` (or at once, when they are
/// below it already); 0 tells none, as every item starts. See the README's integration events.
#[utoipa::path(
    put,
    path = "/items/{sku}/low-stock",
    params(SkuPath, RequiredIdempotencyKey),
    request_body = LowStockBody,
    responses((status = 202, description = "The threshold is queued.", body = Accepted)),
)]
async fn put_low_stock(
    State(inventory): Service,
    Authenticated(caller): Authenticated,
    SkuPath(sku): SkuPath,
    RequiredIdempotencyKey(key): RequiredIdempotencyKey,
    JsonBody(body): JsonBody<LowStockBody>,
) -> Result<Response, ApiError> {
    let below = LowStockThreshold::new(body.below.0)?;
    let item = item_at(sku, body.location.as_deref())?;
    let id = inventory
        .set_low_stock(item, below, Some(&key), &caller)
        .await?;
    Ok(accepted(id))
}

/// One SKU's stock as of now, read from its history (strongly consistent); with
/// `?detail=buckets`, for admins, each of its escrow buckets too.
#[utoipa::path(
    get,
    path = "/items/{sku}",
    params(SkuPath, ItemQuery),
    responses((status = 200, description = "The SKU's stock.", body = ItemView)),
)]
async fn get_item(
    State(inventory): Service,
    MaybeAuthenticated(caller): MaybeAuthenticated,
    SkuPath(sku): SkuPath,
    query: ItemQuery,
) -> Result<Response, ApiError> {
    let item = match query.detail {
        None => inventory.item(&sku).await?,
        Some(Detail::Buckets) => {
            if !caller.is_some_and(|caller| caller.may(Scope::Admin)) {
                let admin = Scope::Admin.name();
                return Err(ApiError::new(
                    "forbidden",
                    format!("?detail=buckets needs a token with the scope {admin}"),
                )
                .with("scope", admin));
            }
            inventory.item_with_buckets(&sku).await?
        }
    };
    Ok(Json(item).into_response())
}

/// The item's ledger: every change of its stock in order, from its first, each with what it
/// changed (`changes`), its figures after it (`after`), why (`reason`, `note`, `reference`),
/// who (`actor`) and what it answers (`command_id`, `reservation_id`); holds placed, expired
/// and released included. A page of at most `limit` entries after version `after`;
/// `next_after` names the next page (`null`: none). Versions the table no longer keeps are read
/// from the archive. An item split into buckets has one ledger, in time order; moves between
/// its buckets are no entries.
#[utoipa::path(
    get,
    path = "/items/{sku}/ledger",
    params(SkuPath, LedgerQuery),
    responses((status = 200, description = "A page of the item's ledger.", body = LedgerView)),
)]
async fn get_ledger(
    State(inventory): Service,
    Authenticated(_caller): Authenticated,
    SkuPath(sku): SkuPath,
    query: LedgerQuery,
) -> Result<Response, ApiError> {
    let page = match &query.location {
        None => inventory.ledger(&sku, query.after, query.limit).await?,
        Some(location) => {
            inventory
                .ledger_at(&sku, location, query.after, query.limit)
                .await?
        }
    };
    Ok(Json(page).into_response())
}

/// Every location of the shop, the default one (`default`, a warehouse that fulfils online
/// orders) included even when never registered, by id.
#[utoipa::path(
    get,
    path = "/locations",
    responses((status = 200, description = "The shop's locations.", body = LocationsView)),
)]
async fn list_locations(
    State(inventory): Service,
    Authenticated(_caller): Authenticated,
) -> Result<Response, ApiError> {
    let locations = inventory.locations().await?;
    Ok(Json(LocationsView { locations }).into_response())
}

/// Register a location (a warehouse or a store), or replace the one with this id: answered
/// at once. `default` is the location every shop has; it may be changed like any other.
#[utoipa::path(
    put,
    path = "/locations/{id}",
    params(LocationPath),
    request_body = LocationBody,
    responses((status = 200, description = "The location as registered.", body = Location)),
)]
async fn put_location(
    State(inventory): Service,
    Authenticated(_caller): Authenticated,
    LocationPath(id): LocationPath,
    JsonBody(body): JsonBody<LocationBody>,
) -> Result<Response, ApiError> {
    let location = Location::new(
        id,
        &body.name,
        body.kind,
        body.fulfills_online
            .unwrap_or(body.kind == LocationKind::Warehouse),
        body.pickup.unwrap_or(false),
        body.priority.map_or(0, |priority| priority.0),
        body.active.unwrap_or(true),
    )?;
    let location = inventory.put_location(location).await?;
    Ok(Json(location).into_response())
}

/// Several SKUs' stock from the read view, in one round trip (typically under a second behind).
#[utoipa::path(
    get,
    path = "/items",
    params(
        (
            "sku" = Vec<Sku>,
            Query,
            description = "1 to 100 SKUs, the parameter repeated: ?sku=A&sku=B.",
            style = Form,
            explode,
        ),
        (
            "location" = Option<LocationId>,
            Query,
            description = "Each item's figures at this location alone (all zero where it was never kept).",
        ),
    ),
    responses((status = 200, description = "The SKUs found and those never seen.", body = ItemsView)),
)]
async fn list_items(
    State(inventory): Service,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
            .map_err(|err| ApiError::new("invalid_query", err.to_string()))?;
    let mut skus = Vec::new();
    let mut location = None;
    for (name, value) in pairs {
        match name.as_str() {
            "sku" => skus.push(Sku::parse(&value)?),
            "location" if location.is_none() => {
                let id = LocationId::parse(&value)
                    .map_err(|err| ApiError::new("invalid_query", err.message))?;
                location = Some(id);
            }
            _ => {
                return Err(ApiError::new(
                    "invalid_query",
                    format!(
                        "unknown or repeated query parameter {name:?}; use ?sku=A&sku=B and at \
                         most one location=ID"
                    ),
                ))
            }
        }
    }
    if skus.is_empty() || skus.len() > MAX_SKUS_PER_READ {
        return Err(ApiError::new(
            "invalid_query",
            format!(
                "name 1 to {MAX_SKUS_PER_READ} SKUs as ?sku=A&sku=B, got {}",
                skus.len()
            ),
        ));
    }
    let items = match &location {
        Some(location) => inventory.items_at(&skus, location).await?,
        None => inventory.items(&skus).await?,
    };
    Ok(Json(items).into_response())
}

/// Reserve a cart: hold every line's units, all or nothing, until the holds expire, are
/// checked out or released.
#[utoipa::path(
    post,
    path = "/reservations",
    params(IdempotencyHeader),
    request_body = ReserveBody,
    responses((
        status = 201,
        description = "Every line is held (a retry with the same Idempotency-Key gets the same reservation).",
        body = ReservationView,
        headers(("Location" = String, description = "The reservation's path.")),
    )),
)]
async fn post_reservation(
    State(inventory): Service,
    Authenticated(caller): Authenticated,
    IdempotencyHeader(key): IdempotencyHeader,
    JsonBody(body): JsonBody<ReserveBody>,
) -> Result<Response, ApiError> {
    let lines = parse_cart(body.lines)?;
    let ttl = body
        .ttl_seconds
        .map_or(Ok(TtlSeconds::DEFAULT), |ttl| TtlSeconds::new(ttl.0))?;
    let field = |field: &'static str| move |err| ApiError::from(err).with("field", field);
    let pickup_at = body
        .pickup_at
        .as_deref()
        .map(LocationId::parse)
        .transpose()
        .map_err(field("pickup_at"))?;
    let locations = body
        .locations
        .unwrap_or_default()
        .iter()
        .map(|id| LocationId::parse(id))
        .collect::<Result<Vec<_>, _>>()
        .map_err(field("locations"))?;
    let preference = Preference::new(pickup_at, locations, body.split.unwrap_or(false))?;
    let request = ReserveRequest::new(lines, ttl, key)?.preferring(preference);
    let view = inventory.reserve(request, &caller).await?;
    let location = format!("/reservations/{}", view.reservation_id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view),
    )
        .into_response())
}

/// A sale's lines as domain lines; a bad one answers naming its field (`lines[2].sku`).
fn parse_lines(lines: Vec<LineBody>) -> Result<Vec<Line>, ApiError> {
    parse_cart(
        lines
            .into_iter()
            .map(|line| CartLineBody {
                sku: line.sku,
                quantity: line.quantity,
                location: None,
            })
            .collect(),
    )
}

/// A cart's lines as domain lines; a bad one answers naming its field (`lines[2].sku`).
fn parse_cart(lines: Vec<CartLineBody>) -> Result<Vec<Line>, ApiError> {
    lines
        .into_iter()
        .enumerate()
        .map(|(index, line)| {
            let at = |err: inventory_core::domain::InvalidValue, field: &str| {
                ApiError::from(err).with("field", format!("lines[{index}].{field}"))
            };
            Ok(Line {
                sku: Sku::parse(&line.sku).map_err(|e| at(e, "sku"))?,
                quantity: Quantity::new(line.quantity.0).map_err(|e| at(e, "quantity"))?,
                location: line
                    .location
                    .as_deref()
                    .map(LocationId::parse)
                    .transpose()
                    .map_err(|e| at(e, "location"))?,
            })
        })
        .collect()
}

/// A reservation of the caller as of now.
#[utoipa::path(
    get,
    path = "/reservations/{id}",
    params(ReservationPath),
    responses((status = 200, description = "The reservation.", body = ReservationView)),
)]
async fn get_reservation(
    State(inventory): Service,
    Authenticated(caller): Authenticated,
    ReservationPath(id): ReservationPath,
) -> Result<Response, ApiError> {
    Ok(Json(inventory.reservation(&id, &caller).await?).into_response())
}

/// Extend an active reservation: every hold now lasts `ttl_seconds` from now, but never past
/// 86,400 s (a day) from the reservation's `created_at`, the longest a hold lives; the answer's
/// `expires_at` says what was promised. A hold is never shortened.
#[utoipa::path(
    post,
    path = "/reservations/{id}/extend",
    params(ReservationPath),
    request_body = ExtendBody,
    responses((status = 200, description = "The extended reservation.", body = ReservationView)),
)]
async fn post_extend(
    State(inventory): Service,
    Authenticated(caller): Authenticated,
    ReservationPath(id): ReservationPath,
    JsonBody(body): JsonBody<ExtendBody>,
) -> Result<Response, ApiError> {
    let ttl = TtlSeconds::new(body.ttl_seconds.0)?;
    Ok(Json(inventory.extend(&id, ttl, &caller).await?).into_response())
}

/// Check out an active reservation: queue the sale of every held unit.
#[utoipa::path(
    post,
    path = "/reservations/{id}/checkout",
    params(ReservationPath, IdempotencyHeader),
    responses((status = 202, description = "The checkout is queued.", body = Accepted)),
)]
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

/// Ship checked-out units: queue the shipment of the lines named (absent: every unit sold and
/// not yet shipped or cancelled). Each unit leaves on-hand stock and `committed`; the line
/// counts it `fulfilled`, and the reservation reads `fulfilled` once every unit sold has
/// shipped or been cancelled. Partial shipments are allowed, never more than a line has left.
#[utoipa::path(
    post,
    path = "/reservations/{id}/fulfill",
    params(ReservationPath, RequiredIdempotencyKey),
    request_body(content = Option<FulfillBody>, description = "May be absent: every unit left ships."),
    responses((status = 202, description = "The shipment is queued.", body = Accepted)),
)]
async fn post_fulfill(
    State(inventory): Service,
    Authenticated(caller): Authenticated,
    ReservationPath(id): ReservationPath,
    RequiredIdempotencyKey(key): RequiredIdempotencyKey,
    OptionalJsonBody(body): OptionalJsonBody<FulfillBody>,
) -> Result<Response, ApiError> {
    let lines = body.lines.map(parse_lines).transpose()?;
    let request = AfterSaleRequest::fulfill(lines, body.reference)?;
    let id = inventory
        .request_after_sale(&id, request, Some(&key), &caller)
        .await?;
    Ok(accepted(id))
}

/// Cancel a checked-out order before it ships: queue the cancellation of the lines named
/// (absent: every unit not yet shipped). The units leave `committed` and are for sale again;
/// the line counts them `cancelled`.
#[utoipa::path(
    post,
    path = "/reservations/{id}/cancel",
    params(ReservationPath, RequiredIdempotencyKey),
    request_body(content = Option<CancelBody>, description = "May be absent: every unit left to ship is cancelled."),
    responses((status = 202, description = "The cancellation is queued.", body = Accepted)),
)]
async fn post_cancel(
    State(inventory): Service,
    Authenticated(caller): Authenticated,
    ReservationPath(id): ReservationPath,
    RequiredIdempotencyKey(key): RequiredIdempotencyKey,
    OptionalJsonBody(body): OptionalJsonBody<CancelBody>,
) -> Result<Response, ApiError> {
    let lines = body.lines.map(parse_lines).transpose()?;
    let request = AfterSaleRequest::cancel(lines)?;
    let id = inventory
        .request_after_sale(&id, request, Some(&key), &caller)
        .await?;
    Ok(accepted(id))
}

/// Take back shipped units: queue their return, to sale (`restock: true`: on-hand and
/// available grow) or set aside as `damaged` (on-hand grows, available does not). Never more
/// than a line shipped and has not had back.
#[utoipa::path(
    post,
    path = "/reservations/{id}/returns",
    params(ReservationPath, RequiredIdempotencyKey),
    request_body = ReturnBody,
    responses((status = 202, description = "The return is queued.", body = Accepted)),
)]
async fn post_returns(
    State(inventory): Service,
    Authenticated(caller): Authenticated,
    ReservationPath(id): ReservationPath,
    RequiredIdempotencyKey(key): RequiredIdempotencyKey,
    JsonBody(body): JsonBody<ReturnBody>,
) -> Result<Response, ApiError> {
    let lines = parse_lines(body.lines)?;
    let request = AfterSaleRequest::take_back(lines, body.restock, body.reference)?;
    let id = inventory
        .request_after_sale(&id, request, Some(&key), &caller)
        .await?;
    Ok(accepted(id))
}

/// Release an active reservation: queue the return of every held unit.
#[utoipa::path(
    delete,
    path = "/reservations/{id}",
    params(ReservationPath, IdempotencyHeader),
    responses((status = 202, description = "The release is queued.", body = Accepted)),
)]
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

/// Where a queued command of the caller stands.
#[utoipa::path(
    get,
    path = "/commands/{id}",
    params(CommandPath),
    responses((status = 200, description = "The command's status.", body = CommandView)),
)]
async fn get_command(
    State(inventory): Service,
    Authenticated(caller): Authenticated,
    CommandPath(id): CommandPath,
) -> Result<Response, ApiError> {
    Ok(Json(inventory.command(id, &caller).await?).into_response())
}

async fn route_not_found() -> ApiError {
    ApiError::new("route_not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        "method_not_allowed",
        "this route does not accept that method",
    )
}
