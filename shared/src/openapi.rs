//! The value types the HTTP API reads and writes, described as OpenAPI schemas (feature
//! `openapi`). Each bound is read from the constant its parser enforces, so the document and the
//! parser cannot disagree; the views derive theirs next to their fields.

use utoipa::openapi::schema::{
    KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::app::CommandView;
use crate::domain::{
    BucketCount, CommandId, IdempotencyKey, LocationId, LowStockThreshold, Quantity, RejectionCode,
    ReservationId, Sku, TransferId, TtlSeconds,
};
use crate::ports::ParkReason;

/// The SKU (and location id) alphabet as a pattern (see [`Sku::parse`]).
const SKU_PATTERN: &str = "[A-Za-z0-9._-]";

fn described(schema: ObjectBuilder, description: &str) -> RefOr<Schema> {
    schema.description(Some(description)).into()
}

impl PartialSchema for Sku {
    fn schema() -> RefOr<Schema> {
        described(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(Sku::MAX_LEN))
                .pattern(Some(format!("^{SKU_PATTERN}+$")))
                .examples(["SKU-RED-42"]),
            "A stock keeping unit.",
        )
    }
}
impl ToSchema for Sku {}

impl PartialSchema for LocationId {
    fn schema() -> RefOr<Schema> {
        described(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(LocationId::MAX_LEN))
                .pattern(Some(format!("^{SKU_PATTERN}+$")))
                .examples(["store-5"]),
            "A location (a warehouse or a store), as the shop names it; `default` is the one every shop has.",
        )
    }
}
impl ToSchema for LocationId {}

fn whole_number(minimum: u32, maximum: u32) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(minimum))
        .maximum(Some(maximum))
}

impl PartialSchema for Quantity {
    fn schema() -> RefOr<Schema> {
        described(whole_number(1, Quantity::MAX), "A number of units.")
    }
}
impl ToSchema for Quantity {}

impl PartialSchema for BucketCount {
    fn schema() -> RefOr<Schema> {
        described(
            whole_number(1, u32::from(BucketCount::MAX)),
            "How many escrow buckets an item is split into (1: one stream, the default).",
        )
    }
}
impl ToSchema for BucketCount {}

impl PartialSchema for LowStockThreshold {
    fn schema() -> RefOr<Schema> {
        described(
            whole_number(0, Quantity::MAX),
            "Available units below which the item is told low on stock (0: never, the default).",
        )
    }
}
impl ToSchema for LowStockThreshold {}

impl PartialSchema for TtlSeconds {
    fn schema() -> RefOr<Schema> {
        described(
            whole_number(TtlSeconds::MIN, TtlSeconds::MAX),
            "How long a hold lasts, in seconds.",
        )
    }
}
impl ToSchema for TtlSeconds {}

impl PartialSchema for ReservationId {
    fn schema() -> RefOr<Schema> {
        let max_sku = Sku::MAX_LEN;
        let max_location = LocationId::MAX_LEN;
        // The anchor is the item's stream at a location (`:store-5`; none at the default one)
        // or, for a split item, one of its buckets' there (`@1`..`@255`).
        described(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(format!(
                    "^{SKU_PATTERN}{{1,{max_sku}}}(:{SKU_PATTERN}{{1,{max_location}}})?(@[1-9][0-9]{{0,2}})?~[1-9][0-9]{{0,18}}~[0-9a-f]{{16}}$"
                )))
                .examples([
                    "SKU-RED-42~17~4f1c2a9be07d3e55",
                    "SKU-RED-42@3~5~90c1d2e3f4a5b6c7",
                    "SKU-RED-42:store-5~2~0a1b2c3d4e5f6a7b",
                ]),
            "A reservation, as the 201 of POST /reservations named it. It names where its first \
             hold was placed: the item's stream, at a location other than the default one \
             (`SKU:store-5`), or for an item split into buckets one of its buckets' (`SKU@3`); a \
             client keeps it as an opaque string.",
        )
    }
}
impl ToSchema for ReservationId {}

impl PartialSchema for TransferId {
    fn schema() -> RefOr<Schema> {
        let max_sku = Sku::MAX_LEN;
        let max_location = LocationId::MAX_LEN;
        described(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(format!(
                    "^{SKU_PATTERN}{{1,{max_sku}}}~{SKU_PATTERN}{{1,{max_location}}}~{SKU_PATTERN}{{1,{max_location}}}~[0-9a-f]{{16}}$"
                )))
                .examples(["SKU-RED-42~default~store-5~4f1c2a9be07d3e55"]),
            "A transfer, as the 202 of POST /transfers named it: the item, where its units left, \
             where they land, and a nonce; a client keeps it as an opaque string.",
        )
    }
}
impl ToSchema for TransferId {}

impl PartialSchema for CommandId {
    fn schema() -> RefOr<Schema> {
        described(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::Custom("uuid".to_owned()))),
            "A queued command, as the 202 that accepted it named it.",
        )
    }
}
impl ToSchema for CommandId {}

impl PartialSchema for IdempotencyKey {
    fn schema() -> RefOr<Schema> {
        described(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(IdempotencyKey::MAX_LEN))
                .pattern(Some("^[!-~]+$")),
            "Names one request of one client on one route: a retry with the same key and \
             the same body takes effect once and gets the first answer again.",
        )
    }
}
impl ToSchema for IdempotencyKey {}

/// One object, rather than the `allOf` of the id and the status's `oneOf` that its Rust shape
/// (a struct flattening a tagged enum) would derive: client generators (openapi-python-client)
/// cannot take an `allOf` of a `oneOf`, and a single object with the status's fields optional
/// gives every client one type to switch on `status`.
impl PartialSchema for CommandView {
    fn schema() -> RefOr<Schema> {
        let statuses = ["pending", "applied", "rejected", "parked"];
        described(
            ObjectBuilder::new()
                .property("command_id", Ref::from_schema_name(CommandId::name()))
                .required("command_id")
                .property(
                    "status",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(statuses))
                        .description(Some(
                            "pending: queued, not applied everywhere yet; applied: took effect \
                             on every SKU it names; rejected: could not take effect on at \
                             least one (`reason`); parked: set aside for an operator on at \
                             least one (`reason`).",
                        )),
                )
                .required("status")
                .property(
                    "reason",
                    OneOfBuilder::new()
                        .item(Ref::from_schema_name(RejectionCode::name()))
                        .item(Ref::from_schema_name(ParkReason::name()))
                        .description(Some(
                            "Why it was rejected (a rejection code) or parked (a park reason).",
                        )),
                )
                .property(
                    "on_hand",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                        .description(Some(
                            "For a count rejected `stale_count`: the item's on-hand figure when \
                             it was refused, the one to count against next.",
                        )),
                ),
            "Where a queued command stands.",
        )
    }
}

impl ToSchema for CommandView {
    fn name() -> std::borrow::Cow<'static, str> {
        "CommandView".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.extend([
            (CommandId::name().into_owned(), CommandId::schema()),
            (RejectionCode::name().into_owned(), RejectionCode::schema()),
            (ParkReason::name().into_owned(), ParkReason::schema()),
        ]);
    }
}
