//! The OpenAPI 3.1 document of the API, built from the one list of routes: each handler's
//! `#[utoipa::path]` gives its method, path, parameters, body and success answer; the route's
//! declaration adds the scopes it needs (as security requirements) and its error answers, grouped
//! by status from [`ERROR_CODES`], with the codes each status may carry.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, MethodRouter};
use inventory_core::domain::locations::MAX_PRIORITY;
use inventory_core::domain::{CommandId, IdempotencyKey, Reason, ReservationId, Sku, TransferId};
use inventory_core::limits::{MAX_ADJUSTMENT, MAX_LINES, MAX_NOTE_LEN};
use inventory_core::Inventory;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{
    AllOfBuilder, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat,
    Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, Content, Header, InfoBuilder, LicenseBuilder, OpenApi, OpenApiBuilder, Ref,
    RefOr,
};
use utoipa::{PartialSchema, ToSchema};

use crate::access::Route;
use crate::error::{error_code, ErrorCode, ERROR_CODES};
use crate::Handlers;

/// The name of the bearer-token security scheme.
const BEARER: &str = "bearer";

const DESCRIPTION: &str = "Stock reservations that never oversell. Reads are answered at once; \
reservations are decided and written in one conditional write; stock changes, checkouts and \
releases are queued (202 with a command id, see GET /commands/{id}) and applied in order, \
once. Every route needs a bearer token (a JWT of the deployment's user pool) granting the \
route's scope or inventory/admin; a deployment may open the two item reads to anyone. \
POST and DELETE routes take an Idempotency-Key: a retry with the same key and the same \
request takes effect once and gets the first answer again. Every error answers \
{\"error\": code, \"message\": text, ...details}.";

/// The document: the routes' operations with their scopes and error answers.
pub(crate) fn document(declared: Vec<(Route, Handlers)>) -> OpenApi {
    let bearer = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .bearer_format("JWT")
        .description(Some(
            "A token of the deployment's user pool (client credentials) whose scopes grant the \
             route's: inventory/read, inventory/reserve, or inventory/admin for every route.",
        ))
        .build();
    let mut components = ComponentsBuilder::new()
        .security_scheme(BEARER, SecurityScheme::Http(bearer))
        .schema("Error", error_schema())
        .schema(ERROR_CODE, error_code_schema())
        // Parameters name their schemas without registering them.
        .schemas_from_iter([
            (Sku::name(), Sku::schema()),
            (ReservationId::name(), ReservationId::schema()),
            (TransferId::name(), TransferId::schema()),
            (CommandId::name(), CommandId::schema()),
            (IdempotencyKey::name(), IdempotencyKey::schema()),
        ])
        .build();
    let mut paths: BTreeMap<String, PathItem> = BTreeMap::new();
    for (route, (schemas, declared_paths, _)) in declared {
        components.schemas.extend(schemas);
        for (path, mut item) in declared_paths.paths {
            if let Some((_, operation)) =
                operations_mut(&mut item).find(|(method, _)| *method == route.method)
            {
                describe(operation, &route);
            }
            match paths.get_mut(&path) {
                Some(existing) => existing.merge_operations(item),
                None => {
                    paths.insert(path, item);
                }
            }
        }
    }
    link_answers_to_what_they_name(&mut paths);
    let mut document = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Inventory API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(DESCRIPTION))
                .license(Some(
                    LicenseBuilder::new()
                        .name("Apache-2.0")
                        .identifier(Some("Apache-2.0"))
                        .build(),
                ))
                .build(),
        )
        .components(Some(components))
        .build();
    document.paths.paths.extend(paths);
    document
}

/// What a success answer names, and the path parameter that takes it: a reservation, an
/// accepted command and a transfer (their ids).
const NAMED_BY_ANSWERS: &[(&str, &str, &str)] = &[
    ("ReservationView", "/reservation_id", "ReservationId"),
    ("Accepted", "/command_id", "CommandId"),
    ("TransferAccepted", "/command_id", "CommandId"),
    ("TransferAccepted", "/transfer_id", "TransferId"),
];

/// Adds OpenAPI links from each success answer that names a reservation or a command to every
/// operation whose `{id}` takes it, so clients and stateful fuzzers can follow them.
fn link_answers_to_what_they_name(paths: &mut BTreeMap<String, PathItem>) {
    let schema_name = |schema: &Option<RefOr<Schema>>| match schema {
        Some(RefOr::Ref(reference)) => reference.ref_location.rsplit('/').next().map(str::to_owned),
        _ => None,
    };
    let mut takers: Vec<(String, String)> = Vec::new(); // (operation id, schema of its {id})
    for item in paths.values() {
        for (_, operation) in operations(item) {
            let id_schema =
                operation
                    .parameters
                    .iter()
                    .flatten()
                    .find_map(|parameter| match parameter {
                        RefOr::T(p) if p.parameter_in == ParameterIn::Path && p.name == "id" => {
                            schema_name(&p.schema)
                        }
                        _ => None,
                    });
            if let (Some(operation_id), Some(id_schema)) = (&operation.operation_id, id_schema) {
                takers.push((operation_id.clone(), id_schema));
            }
        }
    }
    for item in paths.values_mut() {
        for (_, operation) in operations_mut(item) {
            for (status, response) in operation.responses.responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                if !status.starts_with('2') {
                    continue;
                }
                let answered = response
                    .content
                    .get("application/json")
                    .and_then(|content| match content {
                        RefOr::T(content) => schema_name(&content.schema),
                        RefOr::Ref(_) => None,
                    });
                let named = NAMED_BY_ANSWERS
                    .iter()
                    .filter(|(answer, _, _)| answered.as_deref() == Some(*answer));
                for (_, pointer, taken) in named {
                    for (operation_id, _) in takers.iter().filter(|(_, id)| id == taken) {
                        let link = LinkBuilder::new()
                            .operation_id(operation_id.clone())
                            .parameter("id", format!("$response.body#{pointer}"))
                            .build();
                        response.links.insert(operation_id.clone(), RefOr::T(link));
                    }
                }
            }
        }
    }
}

/// The operations of a path item with their methods: the one table of which method is which
/// field (the routes read theirs from it too).
pub(crate) fn operations(item: &PathItem) -> impl Iterator<Item = (&'static str, &Operation)> {
    [
        ("GET", &item.get),
        ("POST", &item.post),
        ("PUT", &item.put),
        ("PATCH", &item.patch),
        ("DELETE", &item.delete),
    ]
    .into_iter()
    .filter_map(|(method, operation)| Some((method, operation.as_ref()?)))
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("GET", &mut item.get),
        ("POST", &mut item.post),
        ("PUT", &mut item.put),
        ("PATCH", &mut item.patch),
        ("DELETE", &mut item.delete),
    ]
    .into_iter()
    .filter_map(|(method, operation)| Some((method, operation.as_mut()?)))
}

/// The document as JSON text, as it is served and checked in.
pub(crate) fn to_json(document: &OpenApi) -> String {
    // Serializing a tree of strings, numbers and maps cannot fail.
    serde_json::to_string_pretty(document).unwrap_or_default()
}

/// `GET /openapi.json`: the document, made on its first request (a cold start does not pay for
/// it) and kept for the life of the process.
pub(crate) fn serve() -> MethodRouter<Arc<Inventory>> {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    get(|| async {
        let body = DOCUMENT.get_or_init(crate::openapi_json).as_str();
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    })
}

/// Adds the route's scopes and error answers to its operation.
fn describe(operation: &mut Operation, route: &Route) {
    operation.security = Some(
        route
            .scope
            .granted_by()
            .into_iter()
            .map(|scope| SecurityRequirement::new(BEARER, [scope.name()]))
            .collect(),
    );
    let mut by_status: BTreeMap<u16, Vec<&'static ErrorCode>> = BTreeMap::new();
    for entry in error_codes(operation, route) {
        by_status
            .entry(entry.status.as_u16())
            .or_default()
            .push(entry);
    }
    for (status, entries) in by_status {
        operation
            .responses
            .responses
            .insert(status.to_string(), RefOr::T(error_response(&entries)));
    }
}

/// The codes the route may answer with: its use case's, then those of the parts it has (a token
/// and scope check, a body, path parameters, an Idempotency-Key) and availability, in
/// [`ERROR_CODES`] order.
fn error_codes(operation: &Operation, route: &Route) -> Vec<&'static ErrorCode> {
    let parameters = operation.parameters.iter().flatten();
    let has = |place: ParameterIn| {
        parameters.clone().any(|parameter| match parameter {
            RefOr::T(parameter) => parameter.parameter_in == place,
            RefOr::Ref(_) => false,
        })
    };
    let mut codes: Vec<&str> = route.errors.to_vec();
    codes.extend([
        "unauthenticated",
        "forbidden",
        "payload_too_large",
        "unavailable",
        "internal",
    ]);
    if operation.request_body.is_some() {
        codes.extend([
            "malformed_json",
            "invalid_body",
            "unreadable_body",
            "unsupported_media_type",
        ]);
    }
    if has(ParameterIn::Path) {
        codes.push("invalid_path");
    }
    if has(ParameterIn::Header) {
        codes.push("invalid_idempotency_key");
    }
    if let Some(unknown) = codes.iter().find(|code| error_code(code).is_none()) {
        panic!(
            "route {} {} lists the unknown error code {unknown}",
            route.method, route.path
        );
    }
    ERROR_CODES
        .iter()
        .filter(|entry| codes.contains(&entry.code))
        .collect()
}

/// One status's answer: the error shape with the codes it may carry, each explained.
fn error_response(entries: &[&ErrorCode]) -> Response {
    let explained: Vec<String> = entries
        .iter()
        .map(|entry| format!("`{}`: {}", entry.code, entry.meaning))
        .collect();
    let codes = ObjectBuilder::new().property(
        "error",
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(entries.iter().map(|entry| entry.code))),
    );
    let schema = AllOfBuilder::new()
        .item(Ref::from_schema_name("Error"))
        .item(codes)
        .build();
    let mut response = Response::new(explained.join("\n\n"));
    response.content.insert(
        "application/json".to_owned(),
        Content::new(Some(Schema::AllOf(schema))).into(),
    );
    let status = entries.first().map(|entry| entry.status.as_u16());
    if status == Some(503) {
        response.headers.insert(
            "Retry-After".to_owned(),
            header_of(Type::Integer, "Seconds to wait before retrying."),
        );
    }
    if status == Some(401) {
        response.headers.insert(
            "WWW-Authenticate".to_owned(),
            header_of(Type::String, "Bearer"),
        );
    }
    response
}

fn header_of(kind: Type, description: &str) -> RefOr<Header> {
    let mut header = Header::new(ObjectBuilder::new().schema_type(kind));
    header.description = Some(description.to_owned());
    RefOr::T(header)
}

/// Every error answer: its code, a message for a human, and details that depend on the code.
fn error_schema() -> Schema {
    let text = || ObjectBuilder::new().schema_type(Type::String);
    let count = || {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
    };
    ObjectBuilder::new()
        .property("error", Ref::from_schema_name(ERROR_CODE))
        .property(
            "message",
            text().description(Some("What went wrong, for a human.")),
        )
        .property(
            "field",
            text().description(Some("The body field or query part at fault.")),
        )
        .property("sku", text().description(Some("The SKU concerned.")))
        .property(
            "requested",
            count().description(Some("Units the line asked for.")),
        )
        .property(
            "available",
            count().description(Some("Units available when it was decided.")),
        )
        .property(
            "left",
            count().description(Some(
                "Units the reservation's line has left for a shipment, a cancellation or a return.",
            )),
        )
        .property(
            "scope",
            text().description(Some("The scope the route needs.")),
        )
        .property(
            "incident_id",
            text().description(Some("The logged failure behind a 500 `internal`.")),
        )
        .property(
            "status",
            text().description(Some(
                "The reservation's status (active, committed, fulfilled, cancelled, released, expired).",
            )),
        )
        .required("error")
        .required("message")
        .description(Some("An error answer."))
        .into()
}

/// The name of the schema of every error code.
const ERROR_CODE: &str = "ErrorCode";

/// Every error code as one string enum, each explained, so a client switches on it.
fn error_code_schema() -> Schema {
    let meanings: Vec<String> = ERROR_CODES
        .iter()
        .map(|entry| {
            format!(
                "`{}` ({}): {}",
                entry.code,
                entry.status.as_u16(),
                entry.meaning
            )
        })
        .collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(ERROR_CODES.iter().map(|entry| entry.code)))
        .description(Some(format!(
            "The machine-readable code of an error answer. Each route's answers list the codes \
             it may give.\n\n{}",
            meanings.join("\n\n")
        )))
        .into()
}

/// A free-text note: a receipt's reference or an adjustment's reason.
pub(crate) fn note() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_NOTE_LEN))
        .pattern(Some(r"\S"))
        .description(Some("Free text, not blank."))
}

/// An adjustment: units added (positive) or taken (negative), never 0.
/// A location's allocation priority: a lower value is tried first.
pub(crate) fn priority() -> Schema {
    let bound = i64::from(MAX_PRIORITY);
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(-bound))
        .maximum(Some(bound))
        .description(Some(
            "Allocation order, a lower value first (after the request's own order); default 0.",
        ))
        .into()
}

pub(crate) fn delta() -> Schema {
    let units = |minimum: i64, maximum: i64| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(minimum))
            .maximum(Some(maximum))
    };
    OneOfBuilder::new()
        .item(units(-MAX_ADJUSTMENT, -1))
        .item(units(1, MAX_ADJUSTMENT))
        .description(Some("Units added (positive) or taken (negative); never 0."))
        .build()
        .into()
}

/// A count's figure: 0 to [`MAX_ADJUSTMENT`] units on hand.
pub(crate) fn count() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(0))
        .maximum(Some(MAX_ADJUSTMENT))
        .description(Some("Units on hand, 0 to 1000000000."))
}

/// A cart's lines: 1 to [`MAX_LINES`] (one less with an Idempotency-Key).
pub(crate) fn lines<T: ToSchema>() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(T::schema())
        .min_items(Some(1))
        .max_items(Some(MAX_LINES))
        .description(Some(
            "1 to 100 lines, each SKU once (99 with an Idempotency-Key); all are held or none.",
        ))
}

/// An adjustment's reason: a listed reason's code, or free text (kept as `other`).
pub(crate) fn adjustment_reason() -> ObjectBuilder {
    let codes: Vec<&str> = Reason::ALL.iter().map(|reason| reason.as_str()).collect();
    note().description(Some(format!(
        "A listed reason ({}), or free text, kept as `other` with the text as the note.",
        codes.join(", ")
    )))
}

/// The lines a shipment, a cancellation or a return names: 1 to [`MAX_LINES`], each SKU of the
/// reservation once.
pub(crate) fn sale_lines<T: ToSchema>() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(T::schema())
        .min_items(Some(1))
        .max_items(Some(MAX_LINES))
        .description(Some(
            "1 to 100 lines, each a SKU of the reservation once, with the units it takes.",
        ))
}
