//! The HTTP contract of the API, driven through the axum router with `tower::ServiceExt::oneshot`
//! over the in-memory adapters (or the DynamoDB store on moto) and a manual clock. Queued commands are applied by the test
//! itself (`App::process`), the way the command processor would, so every asynchronous step is
//! explicit.
//!
//! Every reply is checked by `App::send`: never a 5xx, always a JSON body, and every error body
//! carries an `"error"` code and a `"message"`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::{BodyExt, Full, Limited};
use inventory_core::domain::StreamId;
use inventory_core::domain::{Notice, Sku, SkuState, Timestamp};
use inventory_core::feed::{FeedChange, Reaction};
use inventory_core::memory::{MemoryNoticeBoard, MemoryQueue};
use inventory_core::ports::{EventStore, ManualClock};
use inventory_core::reactions::Snapshotter;
use inventory_core::{Config, Inventory};
use reservations_api::Authentication;
use serde_json::{json, Value};
use tower::ServiceExt;

/// 2023-11-14T22:13:20.000Z
const START_MILLIS: i64 = 1_700_000_000_000;
const JSON: (&str, &str) = ("content-type", "application/json");

struct App {
    router: Router,
    store: Arc<dyn EventStore>,
    inventory: Arc<Inventory>,
    queue: Arc<MemoryQueue>,
    clock: ManualClock,
    /// What the snapshotter told of the feeds delivered.
    notices: Arc<MemoryNoticeBoard>,
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    /// Asserts an error answer: its status and code (the shape is checked for every reply).
    #[track_caller]
    fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(
            (self.status, self.body["error"].as_str()),
            (status, Some(code)),
            "{}",
            self.body
        );
    }

    #[track_caller]
    fn assert_status(&self, status: StatusCode) {
        assert_eq!(self.status, status, "{}", self.body);
    }

    #[track_caller]
    fn str(&self, field: &str) -> String {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("no string {field:?} in {}", self.body))
            .to_owned()
    }
}

mod support;
use support::event_store;

impl App {
    async fn new() -> Self {
        let clock = ManualClock::new(Timestamp::from_millis(START_MILLIS));
        let queue = Arc::new(MemoryQueue::new());
        let store = event_store().await;
        let inventory = Arc::new(Inventory::new(
            store.clone(),
            queue.clone(),
            Arc::new(clock.clone()),
            Config::default(),
        ));
        Self {
            router: reservations_api::router(inventory.clone(), Authentication::Open),
            store,
            inventory,
            queue,
            clock,
            notices: Arc::new(MemoryNoticeBoard::new()),
        }
    }

    async fn request(&self, request: Request<Body>) -> Reply {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("the response body is readable")
            .to_bytes();
        assert!(
            !status.is_server_error(),
            "server error {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|err| {
            panic!(
                "{status}: body is not JSON ({err}): {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert_eq!(
            headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{status}: {body}"
        );
        if status.is_client_error() {
            assert!(
                body["error"].as_str().is_some_and(|code| !code.is_empty()),
                "{status}: error body without an error code: {body}"
            );
            assert!(
                body["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{status}: error body without a message: {body}"
            );
        }
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn send(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        self.request(builder.body(body.into()).expect("a valid request"))
            .await
    }

    async fn get(&self, uri: &str) -> Reply {
        self.send("GET", uri, &[], Body::empty()).await
    }

    async fn delete(&self, uri: &str) -> Reply {
        self.send("DELETE", uri, &[], Body::empty()).await
    }

    async fn post(&self, uri: &str, body: &Value) -> Reply {
        self.send("POST", uri, &[JSON], body.to_string()).await
    }

    async fn put(&self, uri: &str, body: &Value) -> Reply {
        self.send("PUT", uri, &[JSON], body.to_string()).await
    }

    /// An admin command (`method` on a receipts, adjustments, buckets or low-stock route) with
    /// a fresh Idempotency-Key, as those routes require.
    async fn command(&self, method: &str, uri: &str, body: &Value) -> Reply {
        let key = fresh_key();
        self.send(method, uri, &[JSON, keyed(&key)], body.to_string())
            .await
    }

    async fn post_keyed(&self, uri: &str, key: &str, body: &Value) -> Reply {
        self.send(
            "POST",
            uri,
            &[JSON, ("idempotency-key", key)],
            body.to_string(),
        )
        .await
    }

    /// Applies everything queued, as the command processor does; returns how many were taken.
    async fn process(&self) -> usize {
        support::apply_queued(&self.inventory, &self.queue).await
    }

    /// Delivers the change feed of `skus` (their whole streams, every bucket's of a split
    /// item, as the table's stream would) to the snapshotter, which maintains the read view and
    /// tells its notices.
    async fn deliver_feed(&self, skus: &[&str]) {
        let mut changes = Vec::new();
        for sku in skus {
            let item = Sku::parse(sku).expect("valid sku");
            let home = self
                .store
                .read_stream(&StreamId::of(&item), 0)
                .await
                .expect("stream");
            let state = SkuState::from_events(&home);
            let homes = std::iter::once(StreamId::of(&item)).chain(
                state
                    .locations
                    .iter()
                    .map(|location| StreamId::at(&item, location)),
            );
            for zero in homes {
                let events = self.store.read_stream(&zero, 0).await.expect("stream");
                let layout = SkuState::from_events(&events).layout;
                for bucket in layout.streams(&zero) {
                    let events = self.store.read_stream(&bucket, 0).await.expect("stream");
                    changes.extend(events.into_iter().map(FeedChange::Appended));
                }
            }
        }
        let failed = Snapshotter::new(self.store.clone())
            .with_notices(self.notices.clone())
            .react(&changes)
            .await;
        assert!(failed.is_empty(), "snapshots of {failed:?} failed");
    }

    /// Receives `quantity` units of `sku` and applies the receipt.
    async fn stock(&self, sku: &str, quantity: i64) {
        self.command(
            "POST",
            &format!("/items/{sku}/receipts"),
            &json!({ "quantity": quantity }),
        )
        .await
        .assert_status(StatusCode::ACCEPTED);
        self.process().await;
    }

    /// The item's view (asserting 200).
    async fn item(&self, sku: &str) -> Value {
        let reply = self.get(&format!("/items/{sku}")).await;
        reply.assert_status(StatusCode::OK);
        reply.body
    }

    /// Reserves `lines` of `(sku, quantity)`, asserting 201; returns the reservation id.
    async fn reserve(&self, lines: &[(&str, i64)]) -> String {
        let reply = self.post("/reservations", &cart(lines)).await;
        reply.assert_status(StatusCode::CREATED);
        reply.str("reservation_id")
    }

    async fn reservation_status(&self, id: &str) -> String {
        let reply = self.get(&format!("/reservations/{id}")).await;
        reply.assert_status(StatusCode::OK);
        reply.str("status")
    }

    async fn command_status(&self, id: &str) -> Value {
        let reply = self.get(&format!("/commands/{id}")).await;
        reply.assert_status(StatusCode::OK);
        assert_eq!(reply.body["command_id"], json!(id));
        reply.body
    }

    /// Checks a reservation out (or releases it) and applies the command; returns its id.
    async fn checkout(&self, id: &str) -> String {
        let reply = self
            .post(&format!("/reservations/{id}/checkout"), &json!({}))
            .await;
        reply.assert_status(StatusCode::ACCEPTED);
        self.process().await;
        reply.str("command_id")
    }

    async fn release(&self, id: &str) -> String {
        let reply = self.delete(&format!("/reservations/{id}")).await;
        reply.assert_status(StatusCode::ACCEPTED);
        self.process().await;
        reply.str("command_id")
    }

    fn advance_seconds(&self, seconds: i64) {
        self.clock.advance_millis(seconds * 1000);
    }
}

/// A key no request used before.
fn fresh_key() -> String {
    format!("key-{}", uuid::Uuid::new_v4())
}

/// The Idempotency-Key header with `key`.
fn keyed(key: &str) -> (&'static str, &str) {
    ("idempotency-key", key)
}

fn cart(lines: &[(&str, i64)]) -> Value {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(sku, quantity)| json!({ "sku": sku, "quantity": quantity }))
        .collect();
    json!({ "lines": lines })
}

// ---------------------------------------------------------------------------------------------
// POST /items/{sku}/receipts

#[tokio::test]
async fn a_receipt_is_202_with_a_command_id_and_raises_on_hand_once_processed() {
    let app = App::new().await;
    let reply = app
        .command(
            "POST",
            "/items/SKU-1/receipts",
            &json!({ "quantity": 10, "reference": "PO-1" }),
        )
        .await;
    reply.assert_status(StatusCode::ACCEPTED);
    assert!(reply.str("command_id").len() == 36, "{}", reply.body);
    assert_eq!(app.process().await, 1);
    assert_eq!(
        app.item("SKU-1").await,
        json!({ "sku": "SKU-1", "on_hand": 10, "reserved": 0, "committed": 0,
                "unavailable": { "damaged": 0, "quality_control": 0, "safety_stock": 0 },
                "available": 10, "version": 1 })
    );
}

#[tokio::test]
async fn a_receipt_is_not_visible_on_the_item_until_it_is_processed() {
    let app = App::new().await;
    app.command("POST", "/items/SKU-1/receipts", &json!({ "quantity": 5 }))
        .await
        .assert_status(StatusCode::ACCEPTED);
    app.get("/items/SKU-1")
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown_sku");
    app.process().await;
    assert_eq!(app.item("SKU-1").await["on_hand"], 5);
}

#[tokio::test]
async fn a_receipt_of_exactly_one_million_units_is_accepted() {
    let app = App::new().await;
    app.stock("SKU-1", 1_000_000).await;
    assert_eq!(app.item("SKU-1").await["on_hand"], 1_000_000);
}

#[tokio::test]
async fn a_receipt_quantity_of_zero_negative_or_over_a_million_is_400_invalid_quantity() {
    let app = App::new().await;
    app.stock("SKU-1", 3).await;
    for quantity in [0, -1, 1_000_001] {
        app.command(
            "POST",
            "/items/SKU-1/receipts",
            &json!({ "quantity": quantity }),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_quantity");
    }
    assert!(app.queue.is_empty(), "nothing was queued");
    assert_eq!(app.item("SKU-1").await["version"], 1);
}

#[tokio::test]
async fn a_receipt_reference_over_500_characters_is_400_invalid_reference() {
    let app = App::new().await;
    let reference = "r".repeat(501);
    app.command(
        "POST",
        "/items/SKU-1/receipts",
        &json!({ "quantity": 1, "reference": reference }),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_reference");
    assert!(app.queue.is_empty());
}

#[tokio::test]
async fn a_receipt_for_a_malformed_sku_in_the_path_is_400_invalid_sku() {
    let app = App::new().await;
    for sku in ["A%20B", "A~B", &"A".repeat(65)] {
        app.command(
            "POST",
            &format!("/items/{sku}/receipts"),
            &json!({ "quantity": 1 }),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_sku");
    }
    assert!(app.queue.is_empty());
}

#[tokio::test]
async fn a_receipt_retried_with_the_same_idempotency_key_returns_the_same_command_id_and_is_applied_once(
) {
    let app = App::new().await;
    let body = json!({ "quantity": 7 });
    let first = app
        .post_keyed("/items/SKU-1/receipts", "receipt-1", &body)
        .await;
    first.assert_status(StatusCode::ACCEPTED);
    assert_eq!(app.process().await, 1);

    let retry = app
        .post_keyed("/items/SKU-1/receipts", "receipt-1", &body)
        .await;
    retry.assert_status(StatusCode::ACCEPTED);
    assert_eq!(retry.str("command_id"), first.str("command_id"));
    assert_eq!(app.process().await, 1, "the retry queued the command again");

    let item = app.item("SKU-1").await;
    assert_eq!(
        (item["on_hand"].clone(), item["version"].clone()),
        (json!(7), json!(1))
    );
    assert_eq!(
        app.command_status(&first.str("command_id")).await["status"],
        "applied"
    );
}

#[tokio::test]
async fn a_receipt_delivered_twice_by_the_queue_is_applied_once() {
    let app = App::new().await;
    app.command("POST", "/items/SKU-1/receipts", &json!({ "quantity": 4 }))
        .await
        .assert_status(StatusCode::ACCEPTED);
    let batch = app.queue.try_receive(1000);
    app.queue.redeliver(batch.clone());
    assert_eq!(app.process().await, 1, "the first delivery was taken");
    app.queue.redeliver(batch);
    assert_eq!(app.process().await, 1, "the redelivered command was taken");
    assert_eq!(app.item("SKU-1").await["on_hand"], 4);
}

#[tokio::test]
async fn an_idempotency_key_reused_for_a_different_receipt_is_422_idempotency_key_reused() {
    let app = App::new().await;
    app.post_keyed("/items/SKU-1/receipts", "k", &json!({ "quantity": 1 }))
        .await
        .assert_status(StatusCode::ACCEPTED);
    app.post_keyed("/items/SKU-1/receipts", "k", &json!({ "quantity": 2 }))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");
    assert_eq!(app.process().await, 1);
    assert_eq!(app.item("SKU-1").await["on_hand"], 1);
}

#[tokio::test]
async fn an_admin_command_without_an_idempotency_key_is_400_idempotency_key_required_and_queues_nothing(
) {
    let app = App::new().await;
    let commands = [
        ("POST", "/items/SKU-1/receipts", json!({ "quantity": 1 })),
        (
            "POST",
            "/items/SKU-1/adjustments",
            json!({ "delta": 1, "reason": "count" }),
        ),
        (
            "POST",
            "/items/SKU-1/moves",
            json!({ "from": "available", "to": "damaged", "quantity": 1, "reason": "damaged" }),
        ),
        (
            "PUT",
            "/items/SKU-1/on-hand",
            json!({ "quantity": 5, "reason": "cycle_count" }),
        ),
        ("PUT", "/items/SKU-1/buckets", json!({ "count": 2 })),
        ("PUT", "/items/SKU-1/low-stock", json!({ "below": 2 })),
    ];
    for (method, uri, body) in &commands {
        let reply = app.send(method, uri, &[JSON], body.to_string()).await;
        reply.assert_error(StatusCode::BAD_REQUEST, "idempotency_key_required");
        assert!(
            reply.body["message"]
                .as_str()
                .is_some_and(|message| message.contains("Idempotency-Key")),
            "{method} {uri}: {}",
            reply.body
        );
    }
    assert_eq!(app.process().await, 0, "nothing was queued");
    for (method, uri, body) in &commands {
        app.command(method, uri, body)
            .await
            .assert_status(StatusCode::ACCEPTED);
    }
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_400_invalid_idempotency_key() {
    let app = App::new().await;
    let too_long = "k".repeat(256);
    for key in ["", "has space", too_long.as_str()] {
        app.send(
            "POST",
            "/items/SKU-1/receipts",
            &[JSON, ("idempotency-key", key)],
            json!({ "quantity": 1 }).to_string(),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_idempotency_key");
    }
    assert!(app.queue.is_empty());
}

// ---------------------------------------------------------------------------------------------
// POST /items/{sku}/adjustments

#[tokio::test]
async fn receipts_and_adjustments_keep_a_listed_reason_a_note_and_a_reference_and_free_text_as_other(
) {
    let app = App::new().await;
    let receipts = "/items/SKU-1/receipts";
    let adjustments = "/items/SKU-1/adjustments";
    for (uri, body) in [
        (receipts, json!({ "quantity": 5 })),
        (
            receipts,
            json!({ "quantity": 1, "reason": "returned", "note": "walk-in", "reference": "RMA-3" }),
        ),
        (
            adjustments,
            json!({ "delta": -1, "reason": "shrinkage", "note": "aisle 4" }),
        ),
        (adjustments, json!({ "delta": -1, "reason": "found wet" })),
    ] {
        app.command("POST", uri, &body)
            .await
            .assert_status(StatusCode::ACCEPTED);
    }
    app.process().await;
    let sku = Sku::parse("SKU-1").unwrap();
    let events = app.store.read_stream(&StreamId::of(&sku), 0).await.unwrap();
    let told: Vec<Value> = events
        .iter()
        .map(|event| {
            let json = serde_json::to_value(event).unwrap();
            json!([json["reason"], json["note"], json["reference"]])
        })
        .collect();
    assert_eq!(
        told,
        vec![
            json!(["received", null, null]),
            json!(["returned", "walk-in", "RMA-3"]),
            json!(["shrinkage", "aisle 4", null]),
            json!(["other", "found wet", null]),
        ]
    );
    assert!(
        events.iter().all(|event| event.actor.is_some()),
        "each names who asked: {events:?}"
    );
    for body in [
        json!({ "delta": -1, "reason": "found wet", "note": "twice" }),
        json!({ "delta": -1, "reason": " " }),
    ] {
        app.command("POST", adjustments, &body)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_reason");
    }
    app.command(
        "POST",
        receipts,
        &json!({ "quantity": 1, "reason": "lost" }),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_body");
    assert!(app.queue.is_empty(), "nothing was queued");
}

#[tokio::test]
async fn an_adjustment_is_202_and_changes_on_hand_by_its_delta_once_processed() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let reply = app
        .command(
            "POST",
            "/items/SKU-1/adjustments",
            &json!({ "delta": -3, "reason": "damaged" }),
        )
        .await;
    reply.assert_status(StatusCode::ACCEPTED);
    app.process().await;
    assert_eq!(
        app.command_status(&reply.str("command_id")).await["status"],
        "applied"
    );
    let item = app.item("SKU-1").await;
    assert_eq!(
        (item["on_hand"].clone(), item["available"].clone()),
        (json!(7), json!(7))
    );
}

#[tokio::test]
async fn an_adjustment_with_a_zero_delta_is_400_invalid_delta() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    for delta in [0, 1_000_000_001, -1_000_000_001] {
        app.command(
            "POST",
            "/items/SKU-1/adjustments",
            &json!({ "delta": delta, "reason": "count" }),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_delta");
    }
    assert!(app.queue.is_empty());
    assert_eq!(app.item("SKU-1").await["version"], 1);
}

#[tokio::test]
async fn an_adjustment_with_a_blank_or_over_long_reason_is_400_invalid_reason() {
    let app = App::new().await;
    let long = "r".repeat(501);
    for reason in ["", "   ", long.as_str()] {
        app.command(
            "POST",
            "/items/SKU-1/adjustments",
            &json!({ "delta": 1, "reason": reason }),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_reason");
    }
    assert!(app.queue.is_empty());
}

#[tokio::test]
async fn an_adjustment_for_a_malformed_sku_in_the_path_is_400_invalid_sku() {
    let app = App::new().await;
    app.command(
        "POST",
        "/items/A%2FB/adjustments",
        &json!({ "delta": 1, "reason": "count" }),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_sku");
}

#[tokio::test]
async fn an_adjustment_that_would_make_on_hand_negative_is_rejected_with_reason_on_hand_would_go_negative(
) {
    let app = App::new().await;
    app.stock("SKU-1", 3).await;
    let reply = app
        .command(
            "POST",
            "/items/SKU-1/adjustments",
            &json!({ "delta": -5, "reason": "recount" }),
        )
        .await;
    reply.assert_status(StatusCode::ACCEPTED);
    let id = reply.str("command_id");
    app.process().await;
    assert_eq!(
        app.command_status(&id).await,
        json!({ "command_id": id, "status": "rejected", "reason": "on_hand_would_go_negative" })
    );
    assert_eq!(app.item("SKU-1").await["on_hand"], 3);
}

// ---------------------------------------------------------------------------------------------
// GET /items/{sku}

#[tokio::test]
async fn an_item_reads_as_on_hand_reserved_committed_unavailable_available_and_version() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let sold = app.reserve(&[("SKU-1", 2)]).await;
    app.checkout(&sold).await;
    app.reserve(&[("SKU-1", 3)]).await;
    assert_eq!(
        app.item("SKU-1").await,
        json!({ "sku": "SKU-1", "on_hand": 10, "reserved": 3, "committed": 2,
                "unavailable": { "damaged": 0, "quality_control": 0, "safety_stock": 0 },
                "available": 5, "version": 4 })
    );
}

#[tokio::test]
async fn an_item_never_seen_is_404_unknown_sku_naming_the_sku() {
    let app = App::new().await;
    let reply = app.get("/items/NOPE").await;
    reply.assert_error(StatusCode::NOT_FOUND, "unknown_sku");
    assert_eq!(reply.body["sku"], "NOPE");
}

#[tokio::test]
async fn an_item_with_a_malformed_sku_is_400_invalid_sku() {
    let app = App::new().await;
    app.get("/items/A%20B")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_sku");
}

#[tokio::test]
async fn a_path_parameter_that_is_not_utf8_is_400_invalid_path() {
    let app = App::new().await;
    app.get("/items/%FF")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_path");
}

#[tokio::test]
async fn an_item_with_detail_buckets_lists_its_buckets_which_add_up_to_the_item() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let one = app.get("/items/SKU-1?detail=buckets").await;
    one.assert_status(StatusCode::OK);
    assert_eq!(
        one.body["buckets"],
        json!([{ "bucket": 0, "on_hand": 10, "reserved": 0, "committed": 0,
                 "unavailable": { "damaged": 0, "quality_control": 0, "safety_stock": 0 },
                 "available": 10, "version": 1 }])
    );

    let queued = app
        .send(
            "PUT",
            "/items/SKU-1/buckets",
            &[JSON, keyed(&fresh_key())],
            json!({ "count": 4 }).to_string(),
        )
        .await;
    queued.assert_status(StatusCode::ACCEPTED);
    let command = queued.str("command_id");
    app.process().await;
    assert_eq!(app.command_status(&command).await["status"], "applied");
    app.reserve(&[("SKU-1", 3)]).await;

    let item = app.get("/items/SKU-1?detail=buckets").await;
    let buckets = item.body["buckets"].as_array().unwrap().clone();
    assert_eq!(buckets.len(), 4, "{}", item.body);
    for field in ["on_hand", "reserved", "committed", "available"] {
        let sum: i64 = buckets.iter().map(|b| b[field].as_i64().unwrap()).sum();
        assert_eq!(
            json!(sum),
            item.body[field],
            "{field} adds up: {}",
            item.body
        );
    }
    assert_eq!(
        (
            &item.body["on_hand"],
            &item.body["reserved"],
            &item.body["available"]
        ),
        (&json!(10), &json!(3), &json!(7))
    );
    assert!(app.item("SKU-1").await.get("buckets").is_none());
}

#[tokio::test]
async fn an_item_with_another_detail_or_query_parameter_is_400_invalid_query() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    for query in ["detail=everything", "details=buckets", "sku=SKU-1"] {
        app.get(&format!("/items/SKU-1?{query}"))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    }
}

// ---------------------------------------------------------------------------------------------
// PUT /items/{sku}/buckets

#[tokio::test]
async fn a_bucket_count_outside_1_to_256_is_400_invalid_bucket_count_and_queues_nothing() {
    let app = App::new().await;
    for count in [json!(0), json!(257), json!(-1)] {
        app.send(
            "PUT",
            "/items/SKU-1/buckets",
            &[JSON, keyed(&fresh_key())],
            json!({ "count": count }).to_string(),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_bucket_count");
    }
    assert_eq!(app.process().await, 0, "nothing was queued");
}

// ---------------------------------------------------------------------------------------------
// POST /items/{sku}/moves, PUT /items/{sku}/on-hand

#[tokio::test]
async fn units_moved_to_damaged_stay_on_hand_leave_sale_and_a_move_beyond_what_is_for_sale_is_rejected(
) {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    app.reserve(&[("SKU-1", 6)]).await;
    let moved = app
        .command(
            "POST",
            "/items/SKU-1/moves",
            &json!({ "from": "available", "to": "damaged", "quantity": 3,
                     "reason": "damaged", "note": "crushed pallet", "reference": "INC-7" }),
        )
        .await;
    moved.assert_status(StatusCode::ACCEPTED);
    // 4 for sale: 5 more cannot leave sale (the held 6 stay promised).
    let too_many = app
        .command(
            "POST",
            "/items/SKU-1/moves",
            &json!({ "from": "available", "to": "safety_stock", "quantity": 2, "reason": "safety_stock" }),
        )
        .await;
    app.process().await;
    assert_eq!(
        app.command_status(&moved.str("command_id")).await["status"],
        "applied"
    );
    let refused = app.command_status(&too_many.str("command_id")).await;
    assert_eq!(
        (&refused["status"], &refused["reason"]),
        (&json!("rejected"), &json!("source_lacks_units")),
        "{refused}"
    );
    let item = app.item("SKU-1").await;
    assert_eq!(
        (&item["on_hand"], &item["reserved"], &item["available"]),
        (&json!(10), &json!(6), &json!(1)),
        "{item}"
    );
    assert_eq!(
        item["unavailable"],
        json!({ "damaged": 3, "quality_control": 0, "safety_stock": 0 })
    );
    // Inspected: two go back to sale.
    app.command(
        "POST",
        "/items/SKU-1/moves",
        &json!({ "from": "damaged", "to": "available", "quantity": 2, "reason": "restock" }),
    )
    .await
    .assert_status(StatusCode::ACCEPTED);
    app.process().await;
    let item = app.item("SKU-1").await;
    assert_eq!(
        (&item["available"], &item["unavailable"]["damaged"]),
        (&json!(3), &json!(1))
    );
}

#[tokio::test]
async fn a_count_against_a_figure_that_moved_is_rejected_stale_count_and_one_against_the_right_figure_sets_on_hand(
) {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let stale = app
        .command(
            "PUT",
            "/items/SKU-1/on-hand",
            &json!({ "quantity": 8, "expected": 12, "reason": "cycle_count" }),
        )
        .await;
    let counted = app
        .command(
            "PUT",
            "/items/SKU-1/on-hand",
            &json!({ "quantity": 8, "expected": 10, "reason": "cycle_count", "note": "aisle 4" }),
        )
        .await;
    app.process().await;
    let refused = app.command_status(&stale.str("command_id")).await;
    assert_eq!(
        (&refused["reason"], &refused["on_hand"]),
        (&json!("stale_count"), &json!(10)),
        "refused, saying the figure to count against: {refused}"
    );
    assert_eq!(
        app.command_status(&counted.str("command_id")).await["status"],
        "applied"
    );
    assert_eq!(app.item("SKU-1").await["on_hand"], 8);
    // Without `expected`, a plain set.
    app.command(
        "PUT",
        "/items/SKU-1/on-hand",
        &json!({ "quantity": 0, "reason": "shrinkage" }),
    )
    .await
    .assert_status(StatusCode::ACCEPTED);
    app.process().await;
    let item = app.item("SKU-1").await;
    assert_eq!(
        (&item["on_hand"], &item["available"]),
        (&json!(0), &json!(0))
    );
}

#[tokio::test]
async fn a_move_or_a_count_out_of_bounds_is_400_naming_what_is_wrong_and_queues_nothing() {
    let app = App::new().await;
    let cases = [
        (
            "POST",
            "/items/SKU-1/moves",
            json!({ "from": "damaged", "to": "damaged", "quantity": 1, "reason": "other" }),
            "invalid_move",
        ),
        (
            "POST",
            "/items/SKU-1/moves",
            json!({ "from": "available", "to": "damaged", "quantity": 0, "reason": "damaged" }),
            "invalid_quantity",
        ),
        (
            "POST",
            "/items/SKU-1/moves",
            json!({ "from": "available", "to": "lost", "quantity": 1, "reason": "damaged" }),
            "invalid_body",
        ),
        (
            "POST",
            "/items/SKU-1/moves",
            json!({ "from": "available", "to": "damaged", "quantity": 1, "reason": "because" }),
            "invalid_body",
        ),
        (
            "POST",
            "/items/SKU-1/moves",
            json!({ "from": "available", "to": "damaged", "quantity": 1, "reason": "damaged", "note": " " }),
            "invalid_note",
        ),
        (
            "PUT",
            "/items/SKU-1/on-hand",
            json!({ "quantity": -1, "reason": "cycle_count" }),
            "invalid_count",
        ),
        (
            "PUT",
            "/items/SKU-1/on-hand",
            json!({ "quantity": 1, "expected": 1_000_000_001i64, "reason": "cycle_count" }),
            "invalid_expected",
        ),
        (
            "PUT",
            "/items/SKU-1/on-hand",
            json!({ "quantity": 1, "reason": "cycle_count", "reference": "" }),
            "invalid_reference",
        ),
        (
            "PUT",
            "/items/SKU-1/on-hand",
            json!({ "quantity": 1 }),
            "invalid_body",
        ),
    ];
    for (method, uri, body, code) in &cases {
        let reply = app.command(method, uri, body).await;
        reply.assert_error(StatusCode::BAD_REQUEST, code);
    }
    let reply = app
        .command(
            "POST",
            "/items/SKU-1/moves",
            &json!({ "from": "available", "to": "lost", "quantity": 1, "reason": "damaged" }),
        )
        .await;
    assert_eq!(reply.body["field"], "to", "{}", reply.body);
    assert_eq!(app.process().await, 0, "nothing was queued");
}

// ---------------------------------------------------------------------------------------------
// PUT /items/{sku}/low-stock

#[tokio::test]
async fn a_low_stock_threshold_is_queued_applied_and_told_when_available_goes_below_it() {
    let app = App::new().await;
    app.stock("SKU-1", 5).await;
    let queued = app
        .send(
            "PUT",
            "/items/SKU-1/low-stock",
            &[JSON, keyed(&fresh_key())],
            json!({ "below": 3 }).to_string(),
        )
        .await;
    queued.assert_status(StatusCode::ACCEPTED);
    let command = queued.str("command_id");
    app.process().await;
    assert_eq!(app.command_status(&command).await["status"], "applied");
    app.reserve(&[("SKU-1", 2)]).await; // 3 left: not below 3
    app.deliver_feed(&["SKU-1"]).await;
    app.reserve(&[("SKU-1", 1)]).await; // 2 left
    app.deliver_feed(&["SKU-1"]).await;

    let low: Vec<_> = app
        .notices
        .published()
        .into_iter()
        .filter_map(|told| match told.notice {
            Notice::LowStock { threshold, stock } => Some((threshold.units(), stock.available)),
            _ => None,
        })
        .collect();
    assert_eq!(low, vec![(3, 2)], "told once, when 2 were left");
}

#[tokio::test]
async fn a_split_item_is_told_out_of_stock_once_drained_at_zero_and_back_when_a_release_returns_a_unit(
) {
    let app = App::new().await;
    app.stock("SKU-1", 12).await;
    app.send(
        "PUT",
        "/items/SKU-1/buckets",
        &[JSON, keyed(&fresh_key())],
        json!({ "count": 3 }).to_string(),
    )
    .await
    .assert_status(StatusCode::ACCEPTED);
    app.process().await;
    app.deliver_feed(&["SKU-1"]).await;
    let mut holds = Vec::new();
    for _ in 0..12 {
        holds.push(app.reserve(&[("SKU-1", 1)]).await);
    }
    app.post("/reservations", &cart(&[("SKU-1", 1)]))
        .await
        .assert_error(StatusCode::CONFLICT, "insufficient_stock");
    app.deliver_feed(&["SKU-1"]).await;
    app.release(&holds[0]).await;
    app.deliver_feed(&["SKU-1"]).await;

    let told: Vec<(String, &str, i64)> = app
        .notices
        .published()
        .into_iter()
        .filter_map(|told| match &told.notice {
            Notice::OutOfStock { stock } | Notice::BackInStock { stock } => {
                Some((told.stream.to_string(), told.notice.kind(), stock.available))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        told,
        vec![
            ("SKU-1".to_owned(), "back_in_stock", 12),
            ("SKU-1".to_owned(), "out_of_stock", 0),
            ("SKU-1".to_owned(), "back_in_stock", 1),
        ],
        "{:#?}",
        app.notices.published()
    );
    assert!(
        app.notices
            .published()
            .iter()
            .all(|told| told.stream.to_string() == "SKU-1"),
        "a bucket's stream tells nothing of its own"
    );
}

impl App {
    /// Stocks `sku` with `units` and splits it into `count` buckets, its feed delivered.
    async fn split(&self, sku: &str, units: i64, count: u16) {
        self.stock(sku, units).await;
        self.send(
            "PUT",
            &format!("/items/{sku}/buckets"),
            &[JSON, keyed(&fresh_key())],
            json!({ "count": count }).to_string(),
        )
        .await
        .assert_status(StatusCode::ACCEPTED);
        self.process().await;
        self.deliver_feed(&[sku]).await;
    }
}

#[tokio::test]
async fn a_cart_too_big_for_items_split_into_many_buckets_is_refused_not_answered_contention() {
    // A drain of more buckets than one write takes goes in several writes: each must be
    // written, refusal or not, or the request reads again for ever and answers 503.
    // 100 buckets: 99 besides bucket 0, more than the 96 moves one line writes at once.
    let app = App::new().await;
    app.split("WIDE", 500, 100).await;
    app.split("WIDE-2", 300, 100).await;
    app.post("/reservations", &cart(&[("WIDE", 2_000)]))
        .await
        .assert_error(StatusCode::CONFLICT, "insufficient_stock");
    app.post("/reservations", &cart(&[("WIDE-2", 1), ("WIDE", 501)]))
        .await
        .assert_error(StatusCode::CONFLICT, "insufficient_stock");
    // Nothing was lost on the way: every unit can still be held.
    let id = app.reserve(&[("WIDE", 500), ("WIDE-2", 300)]).await;
    assert!(id.starts_with("WIDE"), "{id}");
    app.post("/reservations", &cart(&[("WIDE", 1)]))
        .await
        .assert_error(StatusCode::CONFLICT, "insufficient_stock");
}

#[tokio::test]
async fn a_reservation_anchored_in_a_bucket_stream_is_named_as_the_document_says() {
    let app = App::new().await;
    app.split("HOT", 64, 8).await;
    let document: Value = serde_json::from_str(&reservations_api::openapi_json()).expect("json");
    let pattern = document["components"]["schemas"]["ReservationId"]["pattern"]
        .as_str()
        .expect("a pattern");
    let schema = regex_lite::Regex::new(pattern).expect("the pattern is a regular expression");
    let mut seen_bucket = false;
    for _ in 0..16 {
        let id = app.reserve(&[("HOT", 1)]).await;
        assert!(schema.is_match(&id), "{id} does not match {pattern}");
        seen_bucket |= id.contains('@');
        app.get(&format!("/reservations/{}", id.replace('@', "%40")))
            .await
            .assert_status(StatusCode::OK);
    }
    assert!(seen_bucket, "some holds were anchored in a bucket's stream");
}

#[tokio::test]
async fn a_low_stock_threshold_outside_0_to_1000000_is_400_invalid_threshold_and_queues_nothing() {
    let app = App::new().await;
    for below in [json!(-1), json!(1_000_001)] {
        app.send(
            "PUT",
            "/items/SKU-1/low-stock",
            &[JSON, keyed(&fresh_key())],
            json!({ "below": below }).to_string(),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_threshold");
    }
    app.send(
        "PUT",
        "/items/SKU-1/low-stock",
        &[JSON, keyed(&fresh_key())],
        "{}".to_owned(),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_body");
    assert_eq!(app.process().await, 0, "nothing was queued");
}

// ---------------------------------------------------------------------------------------------
// GET /items?sku=A&sku=B

#[tokio::test]
async fn several_items_read_at_once_list_the_known_ones_and_name_the_missing_ones() {
    let app = App::new().await;
    app.stock("A", 1).await;
    app.stock("B", 2).await;
    app.deliver_feed(&["A", "B"]).await;
    let reply = app.get("/items?sku=B&sku=A&sku=ZZZ&sku=A").await;
    reply.assert_status(StatusCode::OK);
    let skus: Vec<&str> = reply.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["sku"].as_str().expect("sku"))
        .collect();
    assert_eq!(skus, ["A", "B"]);
    assert_eq!(reply.body["items"][1]["on_hand"], 2);
    assert_eq!(reply.body["missing"], json!(["ZZZ"]));
}

#[tokio::test]
async fn the_read_view_follows_the_change_feed_and_counts_lapsed_holds_out_at_read_time() {
    let app = App::new().await;
    app.stock("A", 5).await;
    let before_feed = app.get("/items?sku=A").await;
    before_feed.assert_status(StatusCode::OK);
    assert_eq!(
        before_feed.body["missing"],
        json!(["A"]),
        "the view lags the stream"
    );
    app.deliver_feed(&["A"]).await;
    app.post(
        "/reservations",
        &json!({ "lines": [{ "sku": "A", "quantity": 2 }], "ttl_seconds": 60 }),
    )
    .await
    .assert_status(StatusCode::CREATED);
    app.deliver_feed(&["A"]).await;
    let held = app.get("/items?sku=A").await;
    assert_eq!(
        (
            &held.body["items"][0]["reserved"],
            &held.body["items"][0]["available"]
        ),
        (&json!(2), &json!(3))
    );
    app.clock.advance_millis((60 + 120) * 1000);
    let lapsed = app.get("/items?sku=A").await;
    assert_eq!(
        (
            &lapsed.body["items"][0]["reserved"],
            &lapsed.body["items"][0]["available"]
        ),
        (&json!(0), &json!(5)),
        "a hold past its grace stops counting in the view before any event says so"
    );
}

#[tokio::test]
async fn an_items_read_naming_no_sku_is_400_invalid_query() {
    let app = App::new().await;
    for uri in ["/items", "/items?"] {
        app.get(uri)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    }
}

#[tokio::test]
async fn an_items_read_naming_more_than_100_skus_is_400_invalid_query() {
    let app = App::new().await;
    let query = |n: usize| {
        (0..n)
            .map(|i| format!("sku=S{i}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    let hundred = app.get(&format!("/items?{}", query(100))).await;
    hundred.assert_status(StatusCode::OK);
    assert_eq!(hundred.body["missing"].as_array().map(Vec::len), Some(100));
    app.get(&format!("/items?{}", query(101)))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_query");
}

#[tokio::test]
async fn an_items_read_with_an_unknown_query_parameter_is_400_invalid_query() {
    let app = App::new().await;
    app.get("/items?sku=A&limit=5")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_query");
}

#[tokio::test]
async fn an_items_read_with_a_malformed_sku_is_400_invalid_sku() {
    let app = App::new().await;
    for uri in ["/items?sku=A&sku=", "/items?sku=A%20B", "/items?sku=A~1"] {
        app.get(uri)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_sku");
    }
}

// ---------------------------------------------------------------------------------------------
// POST /reservations

#[tokio::test]
async fn a_reservation_within_stock_is_201_active_with_its_lines_an_expiry_and_a_location() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    app.stock("SKU-2", 10).await;
    let reply = app
        .post("/reservations", &cart(&[("SKU-1", 2), ("SKU-2", 3)]))
        .await;
    reply.assert_status(StatusCode::CREATED);
    let id = reply.str("reservation_id");
    assert_eq!(reply.body["status"], "active");
    assert_eq!(
        reply.body["lines"],
        json!([
            { "sku": "SKU-1", "quantity": 2, "status": "active", "fulfilled": 0, "cancelled": 0, "returned": 0,
              "allocations": [{ "location": "default", "quantity": 2 }] },
            { "sku": "SKU-2", "quantity": 3, "status": "active", "fulfilled": 0, "cancelled": 0, "returned": 0,
              "allocations": [{ "location": "default", "quantity": 3 }] },
        ])
    );
    // The default hold is 900 seconds from 2023-11-14T22:13:20Z.
    assert_eq!(reply.body["expires_at"], "2023-11-14T22:28:20.000Z");
    let location = reply.headers[header::LOCATION].to_str().expect("ASCII");
    assert_eq!(location, format!("/reservations/{id}"));

    let read = app.get(location).await;
    read.assert_status(StatusCode::OK);
    assert_eq!(read.body, reply.body);
}

#[tokio::test]
async fn a_reservation_holds_its_units_so_reserved_rises_and_available_falls() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    app.reserve(&[("SKU-1", 4)]).await;
    let item = app.item("SKU-1").await;
    assert_eq!(
        (
            item["on_hand"].clone(),
            item["reserved"].clone(),
            item["available"].clone()
        ),
        (json!(10), json!(4), json!(6))
    );
}

#[tokio::test]
async fn a_reservation_with_a_ttl_expires_that_many_seconds_later() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    for (ttl, expires_at) in [
        (60, "2023-11-14T22:14:20.000Z"),
        (86_400, "2023-11-15T22:13:20.000Z"),
    ] {
        let reply = app
            .post(
                "/reservations",
                &json!({ "lines": [{ "sku": "SKU-1", "quantity": 1 }], "ttl_seconds": ttl }),
            )
            .await;
        reply.assert_status(StatusCode::CREATED);
        assert_eq!(reply.body["expires_at"], expires_at);
    }
}

#[tokio::test]
async fn a_reservation_for_more_than_is_available_is_409_insufficient_stock_naming_sku_requested_and_available(
) {
    let app = App::new().await;
    app.stock("SKU-1", 5).await;
    app.reserve(&[("SKU-1", 2)]).await;
    let before = app.item("SKU-1").await;
    let reply = app.post("/reservations", &cart(&[("SKU-1", 4)])).await;
    reply.assert_error(StatusCode::CONFLICT, "insufficient_stock");
    assert_eq!(reply.body["sku"], "SKU-1");
    assert_eq!(reply.body["requested"], 4);
    assert_eq!(reply.body["available"], 3);
    assert_eq!(app.item("SKU-1").await, before, "nothing changed");
}

#[tokio::test]
async fn a_cart_with_one_short_line_reserves_nothing_at_all() {
    let app = App::new().await;
    app.stock("SKU-1", 5).await;
    app.stock("SKU-2", 1).await;
    let before = (app.item("SKU-1").await, app.item("SKU-2").await);
    let reply = app
        .post("/reservations", &cart(&[("SKU-1", 5), ("SKU-2", 2)]))
        .await;
    reply.assert_error(StatusCode::CONFLICT, "insufficient_stock");
    assert_eq!(reply.body["sku"], "SKU-2");
    assert_eq!(
        (app.item("SKU-1").await, app.item("SKU-2").await),
        before,
        "no line was held"
    );
}

#[tokio::test]
async fn a_reservation_of_a_sku_never_seen_is_404_unknown_sku_naming_the_sku() {
    let app = App::new().await;
    app.stock("SKU-1", 5).await;
    let reply = app
        .post("/reservations", &cart(&[("SKU-1", 1), ("GHOST", 1)]))
        .await;
    reply.assert_error(StatusCode::NOT_FOUND, "unknown_sku");
    assert_eq!(reply.body["sku"], "GHOST");
    assert_eq!(app.item("SKU-1").await["version"], 1, "nothing changed");
}

#[tokio::test]
async fn a_reservation_with_no_lines_is_400_invalid_lines() {
    let app = App::new().await;
    app.post("/reservations", &json!({ "lines": [] }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_lines");
}

#[tokio::test]
async fn a_reservation_with_more_than_100_lines_is_400_invalid_lines() {
    let app = App::new().await;
    let skus: Vec<String> = (0..101).map(|i| format!("L{i}")).collect();
    for sku in &skus {
        app.stock(sku, 1).await;
    }
    let lines: Vec<(&str, i64)> = skus.iter().map(|sku| (sku.as_str(), 1)).collect();
    app.post("/reservations", &cart(&lines))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_lines");
    assert_eq!(app.item("L0").await["version"], 1, "nothing changed");
    let hundred = app.post("/reservations", &cart(&lines[..100])).await;
    hundred.assert_status(StatusCode::CREATED);
}

#[tokio::test]
async fn a_reservation_with_an_idempotency_key_holds_at_most_99_lines_and_a_100_line_cart_extends_whole(
) {
    let app = App::new().await;
    let skus: Vec<String> = (0..100).map(|i| format!("L{i}")).collect();
    for sku in &skus {
        app.stock(sku, 1).await;
    }
    let lines: Vec<(&str, i64)> = skus.iter().map(|sku| (sku.as_str(), 1)).collect();
    app.post_keyed("/reservations", "cart-100", &cart(&lines))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_lines");
    assert_eq!(app.item("L0").await["version"], 1, "nothing changed");
    app.post_keyed("/reservations", "cart-99", &cart(&lines[..99]))
        .await
        .assert_status(StatusCode::CREATED);
    let hundred = app
        .post(
            "/reservations",
            &cart(
                &lines[..1]
                    .iter()
                    .chain(&lines[99..])
                    .cloned()
                    .collect::<Vec<_>>(),
            ),
        )
        .await;
    hundred.assert_error(StatusCode::CONFLICT, "insufficient_stock");
    for sku in &skus {
        app.stock(sku, 1).await;
    }
    let whole = app.post("/reservations", &cart(&lines)).await;
    whole.assert_status(StatusCode::CREATED);
    let id = whole.body["reservation_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let extended = app
        .post(
            &format!("/reservations/{id}/extend"),
            &json!({ "ttl_seconds": 3600 }),
        )
        .await;
    extended.assert_status(StatusCode::OK);
    assert_ne!(extended.body["expires_at"], whole.body["expires_at"]);
    // L0..L98 also carry the 99-line hold: received, held, received, held, extended.
    for (index, sku) in skus.iter().enumerate() {
        let expected = if index < 99 { 5 } else { 4 };
        assert_eq!(app.item(sku).await["version"], expected, "{sku}");
    }
}

#[tokio::test]
async fn a_reservation_naming_a_sku_on_two_lines_is_400_duplicate_sku() {
    let app = App::new().await;
    app.stock("SKU-1", 5).await;
    app.post("/reservations", &cart(&[("SKU-1", 1), ("SKU-1", 1)]))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "duplicate_sku");
    assert_eq!(app.item("SKU-1").await["version"], 1, "nothing changed");
}

#[tokio::test]
async fn a_reservation_line_with_a_malformed_sku_is_400_invalid_sku_naming_the_line_field() {
    let app = App::new().await;
    app.stock("SKU-1", 5).await;
    let reply = app
        .post("/reservations", &cart(&[("SKU-1", 1), ("bad sku", 1)]))
        .await;
    reply.assert_error(StatusCode::BAD_REQUEST, "invalid_sku");
    assert_eq!(reply.body["field"], "lines[1].sku");
}

#[tokio::test]
async fn a_reservation_line_with_a_quantity_out_of_range_is_400_invalid_quantity_naming_the_line_field(
) {
    let app = App::new().await;
    app.stock("SKU-1", 5).await;
    for quantity in [0, -1, 1_000_001] {
        let reply = app
            .post("/reservations", &cart(&[("SKU-1", quantity)]))
            .await;
        reply.assert_error(StatusCode::BAD_REQUEST, "invalid_quantity");
        assert_eq!(reply.body["field"], "lines[0].quantity");
    }
    assert_eq!(app.item("SKU-1").await["version"], 1, "nothing changed");
}

#[tokio::test]
async fn a_reservation_ttl_outside_60_to_86400_seconds_is_400_invalid_ttl() {
    let app = App::new().await;
    app.stock("SKU-1", 5).await;
    for ttl in [0, 59, 86_401] {
        app.post(
            "/reservations",
            &json!({ "lines": [{ "sku": "SKU-1", "quantity": 1 }], "ttl_seconds": ttl }),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_ttl");
    }
    assert_eq!(app.item("SKU-1").await["version"], 1, "nothing changed");
}

#[tokio::test]
async fn a_reservation_retried_with_the_same_idempotency_key_and_body_is_the_same_reservation_holding_stock_once(
) {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let body = cart(&[("SKU-1", 3)]);
    let first = app.post_keyed("/reservations", "cart-1", &body).await;
    first.assert_status(StatusCode::CREATED);
    let retry = app.post_keyed("/reservations", "cart-1", &body).await;
    retry.assert_status(StatusCode::CREATED);
    assert_eq!(retry.body, first.body);
    assert_eq!(
        retry.headers[header::LOCATION],
        first.headers[header::LOCATION]
    );
    let item = app.item("SKU-1").await;
    assert_eq!(
        (item["reserved"].clone(), item["version"].clone()),
        (json!(3), json!(2))
    );
}

#[tokio::test]
async fn an_idempotency_key_reused_with_a_different_reservation_body_is_422_idempotency_key_reused()
{
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    app.post_keyed("/reservations", "cart-1", &cart(&[("SKU-1", 3)]))
        .await
        .assert_status(StatusCode::CREATED);
    let before = app.item("SKU-1").await;
    app.post_keyed("/reservations", "cart-1", &cart(&[("SKU-1", 4)]))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");
    assert_eq!(app.item("SKU-1").await, before, "nothing changed");
}

#[tokio::test]
async fn a_reservation_with_a_malformed_idempotency_key_is_400_invalid_idempotency_key() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    app.send(
        "POST",
        "/reservations",
        &[JSON, ("idempotency-key", "two words")],
        cart(&[("SKU-1", 1)]).to_string(),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_idempotency_key");
    assert_eq!(app.item("SKU-1").await["version"], 1, "nothing changed");
}

// ---------------------------------------------------------------------------------------------
// GET /reservations/{id}

#[tokio::test]
async fn a_reservation_reads_as_expired_once_the_clock_passes_its_expiry() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let id = app.reserve(&[("SKU-1", 1)]).await;
    app.advance_seconds(900);
    assert_eq!(app.reservation_status(&id).await, "active", "at expiry");
    app.clock.advance_millis(1);
    let reply = app.get(&format!("/reservations/{id}")).await;
    reply.assert_status(StatusCode::OK);
    assert_eq!(reply.body["status"], "expired");
    assert_eq!(reply.body["lines"][0]["status"], "expired");
}

#[tokio::test]
async fn a_well_formed_reservation_id_that_does_not_exist_is_404_reservation_not_found() {
    let app = App::new().await;
    app.get("/reservations/SKU-1~99~00000000deadbeef")
        .await
        .assert_error(StatusCode::NOT_FOUND, "reservation_not_found");
}

#[tokio::test]
async fn a_reservation_id_pointing_at_a_real_event_with_a_guessed_nonce_is_404_reservation_not_found(
) {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let id = app.reserve(&[("SKU-1", 1)]).await;
    let guessed = format!("SKU-1~2~{:016x}", 0xdead_beef_u64);
    assert_ne!(id, guessed);
    for id in [guessed.as_str(), "SKU-1~1~00000000deadbeef"] {
        app.get(&format!("/reservations/{id}"))
            .await
            .assert_error(StatusCode::NOT_FOUND, "reservation_not_found");
    }
}

#[tokio::test]
async fn a_malformed_reservation_id_is_400_invalid_reservation_id_on_every_reservation_route() {
    let app = App::new().await;
    for id in ["nope", "SKU-1~0~00000000deadbeef", "SKU-1~1~deadbeef"] {
        let uri = format!("/reservations/{id}");
        app.get(&uri)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_reservation_id");
        app.delete(&uri)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_reservation_id");
        app.post(&format!("{uri}/checkout"), &json!({}))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_reservation_id");
        app.post(&format!("{uri}/extend"), &json!({ "ttl_seconds": 600 }))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_reservation_id");
    }
}

// ---------------------------------------------------------------------------------------------
// POST /reservations/{id}/extend

#[tokio::test]
async fn extending_an_active_reservation_is_200_with_a_later_expiry() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let id = app.reserve(&[("SKU-1", 1)]).await;
    app.advance_seconds(60);
    let reply = app
        .post(
            &format!("/reservations/{id}/extend"),
            &json!({ "ttl_seconds": 1800 }),
        )
        .await;
    reply.assert_status(StatusCode::OK);
    assert_eq!(reply.body["status"], "active");
    assert_eq!(reply.body["expires_at"], "2023-11-14T22:44:20.000Z");
    let read = app.get(&format!("/reservations/{id}")).await;
    assert_eq!(read.body["expires_at"], "2023-11-14T22:44:20.000Z");
    // Still active past the original expiry.
    app.advance_seconds(900);
    assert_eq!(app.reservation_status(&id).await, "active");
}

#[tokio::test]
async fn extending_never_promises_past_a_day_from_the_placing_however_often_it_is_asked() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let id = app.reserve(&[("SKU-1", 1)]).await;
    // Placed at 2023-11-14T22:13:20Z: a day later is the most a hold lives.
    for _ in 0..3 {
        app.advance_seconds(12 * 3_600);
        let reply = app
            .post(
                &format!("/reservations/{id}/extend"),
                &json!({ "ttl_seconds": 86_400 }),
            )
            .await;
        if reply.status == StatusCode::OK {
            assert_eq!(reply.body["expires_at"], "2023-11-15T22:13:20.000Z");
        } else {
            reply.assert_error(StatusCode::CONFLICT, "reservation_not_active");
        }
    }
    assert_eq!(app.reservation_status(&id).await, "expired");
}

#[tokio::test]
async fn extending_with_a_shorter_ttl_never_shortens_the_reservation() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let id = app.reserve(&[("SKU-1", 1)]).await;
    let before = app.item("SKU-1").await;
    let reply = app
        .post(
            &format!("/reservations/{id}/extend"),
            &json!({ "ttl_seconds": 60 }),
        )
        .await;
    reply.assert_status(StatusCode::OK);
    assert_eq!(reply.body["expires_at"], "2023-11-14T22:28:20.000Z");
    assert_eq!(app.item("SKU-1").await, before, "nothing recorded");
}

#[tokio::test]
async fn extending_with_a_ttl_out_of_range_is_400_invalid_ttl() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let id = app.reserve(&[("SKU-1", 1)]).await;
    for ttl in [59, 86_401] {
        app.post(
            &format!("/reservations/{id}/extend"),
            &json!({ "ttl_seconds": ttl }),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_ttl");
    }
}

#[tokio::test]
async fn extending_an_expired_reservation_is_409_reservation_not_active() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let id = app.reserve(&[("SKU-1", 1)]).await;
    app.advance_seconds(901);
    let before = app.item("SKU-1").await;
    let reply = app
        .post(
            &format!("/reservations/{id}/extend"),
            &json!({ "ttl_seconds": 900 }),
        )
        .await;
    reply.assert_error(StatusCode::CONFLICT, "reservation_not_active");
    assert_eq!(reply.body["status"], "expired");
    assert_eq!(app.item("SKU-1").await, before, "nothing changed");
    assert_eq!(app.reservation_status(&id).await, "expired");
}

#[tokio::test]
async fn extending_a_checked_out_reservation_is_409_reservation_not_active() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let id = app.reserve(&[("SKU-1", 1)]).await;
    app.checkout(&id).await;
    let reply = app
        .post(
            &format!("/reservations/{id}/extend"),
            &json!({ "ttl_seconds": 900 }),
        )
        .await;
    reply.assert_error(StatusCode::CONFLICT, "reservation_not_active");
    assert_eq!(reply.body["status"], "committed");
}

#[tokio::test]
async fn extending_a_reservation_that_does_not_exist_is_404_reservation_not_found() {
    let app = App::new().await;
    app.post(
        "/reservations/SKU-1~99~00000000deadbeef/extend",
        &json!({ "ttl_seconds": 900 }),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "reservation_not_found");
}

// ---------------------------------------------------------------------------------------------
// POST /reservations/{id}/checkout

#[tokio::test]
async fn a_checkout_is_202_and_once_applied_the_reservation_is_committed_and_the_item_committed_count_rises(
) {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    app.stock("SKU-2", 10).await;
    let id = app.reserve(&[("SKU-1", 2), ("SKU-2", 3)]).await;
    let reply = app
        .post(&format!("/reservations/{id}/checkout"), &json!({}))
        .await;
    reply.assert_status(StatusCode::ACCEPTED);
    let command = reply.str("command_id");
    assert_eq!(app.command_status(&command).await["status"], "pending");
    assert_eq!(app.reservation_status(&id).await, "active");

    assert_eq!(app.process().await, 2, "one command per line");
    assert_eq!(app.command_status(&command).await["status"], "applied");
    let read = app.get(&format!("/reservations/{id}")).await;
    assert_eq!(read.body["status"], "committed");
    assert_eq!(read.body["lines"][1]["status"], "committed");
    let item = app.item("SKU-2").await;
    assert_eq!(
        (
            item["committed"].clone(),
            item["reserved"].clone(),
            item["available"].clone()
        ),
        (json!(3), json!(0), json!(7))
    );
}

#[tokio::test]
async fn a_checkout_needs_no_body() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let id = app.reserve(&[("SKU-1", 1)]).await;
    app.send(
        "POST",
        &format!("/reservations/{id}/checkout"),
        &[],
        Body::empty(),
    )
    .await
    .assert_status(StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_checkout_retried_with_the_same_idempotency_key_names_the_same_command() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let id = app.reserve(&[("SKU-1", 1)]).await;
    let uri = format!("/reservations/{id}/checkout");
    let first = app.post_keyed(&uri, "pay-1", &json!({})).await;
    first.assert_status(StatusCode::ACCEPTED);
    app.process().await;
    let retry = app.post_keyed(&uri, "pay-1", &json!({})).await;
    retry.assert_status(StatusCode::ACCEPTED);
    assert_eq!(retry.str("command_id"), first.str("command_id"));
    app.process().await;
    assert_eq!(app.item("SKU-1").await["committed"], 1);
}

#[tokio::test]
async fn a_checkout_of_an_expired_reservation_is_409_reservation_not_active() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let id = app.reserve(&[("SKU-1", 1)]).await;
    app.advance_seconds(901);
    let reply = app
        .post(&format!("/reservations/{id}/checkout"), &json!({}))
        .await;
    reply.assert_error(StatusCode::CONFLICT, "reservation_not_active");
    assert_eq!(reply.body["status"], "expired");
    assert!(app.queue.is_empty(), "nothing was queued");
}

#[tokio::test]
async fn a_checkout_of_a_released_reservation_is_409_reservation_not_active() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let id = app.reserve(&[("SKU-1", 1)]).await;
    app.release(&id).await;
    let reply = app
        .post(&format!("/reservations/{id}/checkout"), &json!({}))
        .await;
    reply.assert_error(StatusCode::CONFLICT, "reservation_not_active");
    assert_eq!(reply.body["status"], "released");
    assert!(app.queue.is_empty(), "nothing was queued");
    assert_eq!(app.item("SKU-1").await["committed"], 0);
}

#[tokio::test]
async fn a_checkout_of_a_reservation_that_does_not_exist_is_404_reservation_not_found() {
    let app = App::new().await;
    app.post(
        "/reservations/SKU-1~99~00000000deadbeef/checkout",
        &json!({}),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "reservation_not_found");
    assert!(app.queue.is_empty());
}

// ---------------------------------------------------------------------------------------------
// POST /reservations/{id}/fulfill, /cancel, /returns

/// A reservation of the lines, checked out and applied.
async fn sold(app: &App, lines: &[(&str, i64)]) -> String {
    let id = app.reserve(lines).await;
    app.checkout(&id).await;
    app.process().await;
    id
}

#[tokio::test]
async fn a_shipment_in_parts_takes_units_out_of_on_hand_and_committed_and_the_order_reads_fulfilled_when_all_shipped(
) {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    app.stock("SKU-2", 10).await;
    let id = sold(&app, &[("SKU-1", 3), ("SKU-2", 1)]).await;
    let uri = format!("/reservations/{id}/fulfill");
    let body = json!({ "lines": [{ "sku": "SKU-1", "quantity": 2 }], "reference": "parcel-1" });
    let first = app.post_keyed(&uri, "ship-1", &body).await;
    first.assert_status(StatusCode::ACCEPTED);
    let again = app.post_keyed(&uri, "ship-1", &body).await;
    assert_eq!(again.str("command_id"), first.str("command_id"), "a retry");
    app.process().await;
    let command = app.command_status(&first.str("command_id")).await;
    assert_eq!(command["status"], "applied", "{command}");
    let item = app.item("SKU-1").await;
    assert_eq!(
        (&item["on_hand"], &item["committed"], &item["available"]),
        (&json!(8), &json!(1), &json!(7)),
        "shipped once: {item}"
    );
    let read = app.get(&format!("/reservations/{id}")).await;
    assert_eq!(read.body["status"], "committed", "{}", read.body);
    assert_eq!(read.body["lines"][0]["fulfilled"], 2);

    // No body at all: every unit left ships.
    app.send(
        "POST",
        &uri,
        &[("idempotency-key", "ship-2")],
        Body::empty(),
    )
    .await
    .assert_status(StatusCode::ACCEPTED);
    app.process().await;
    let read = app.get(&format!("/reservations/{id}")).await;
    assert_eq!(read.body["status"], "fulfilled", "{}", read.body);
    assert_eq!(
        (
            &read.body["lines"][0]["fulfilled"],
            &read.body["lines"][1]["fulfilled"]
        ),
        (&json!(3), &json!(1))
    );
    assert_eq!(app.item("SKU-2").await["on_hand"], 9);
    app.post_keyed(&uri, "ship-3", &json!({}))
        .await
        .assert_error(StatusCode::CONFLICT, "reservation_not_active");
}

#[tokio::test]
async fn a_cancellation_before_shipping_gives_the_units_back_and_a_fully_cancelled_order_reads_cancelled(
) {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let id = sold(&app, &[("SKU-1", 4)]).await;
    let uri = format!("/reservations/{id}/cancel");
    app.post_keyed(
        &uri,
        "cancel-1",
        &json!({ "lines": [{ "sku": "SKU-1", "quantity": 1 }] }),
    )
    .await
    .assert_status(StatusCode::ACCEPTED);
    app.process().await;
    let item = app.item("SKU-1").await;
    assert_eq!(
        (&item["on_hand"], &item["committed"], &item["available"]),
        (&json!(10), &json!(3), &json!(7))
    );
    app.send(
        "POST",
        &uri,
        &[("idempotency-key", "cancel-2")],
        Body::empty(),
    )
    .await
    .assert_status(StatusCode::ACCEPTED);
    app.process().await;
    let read = app.get(&format!("/reservations/{id}")).await;
    assert_eq!(read.body["status"], "cancelled", "{}", read.body);
    assert_eq!(read.body["lines"][0]["cancelled"], 4);
    assert_eq!(app.item("SKU-1").await["available"], 10);
}

#[tokio::test]
async fn a_return_restocks_or_sets_aside_as_damaged_and_never_takes_back_more_than_shipped() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let id = sold(&app, &[("SKU-1", 3)]).await;
    app.post_keyed(&format!("/reservations/{id}/fulfill"), "ship-1", &json!({}))
        .await
        .assert_status(StatusCode::ACCEPTED);
    app.process().await;
    let uri = format!("/reservations/{id}/returns");
    let line = |n| json!([{ "sku": "SKU-1", "quantity": n }]);
    app.post_keyed(
        &uri,
        "back-1",
        &json!({ "lines": line(1), "restock": true, "reference": "RMA-7" }),
    )
    .await
    .assert_status(StatusCode::ACCEPTED);
    app.post_keyed(
        &uri,
        "back-2",
        &json!({ "lines": line(1), "restock": false }),
    )
    .await
    .assert_status(StatusCode::ACCEPTED);
    app.process().await;
    let item = app.item("SKU-1").await;
    assert_eq!(
        (
            &item["on_hand"],
            &item["available"],
            &item["unavailable"]["damaged"]
        ),
        (&json!(9), &json!(8), &json!(1)),
        "{item}"
    );
    let reply = app
        .post_keyed(
            &uri,
            "back-3",
            &json!({ "lines": line(2), "restock": true }),
        )
        .await;
    reply.assert_error(StatusCode::CONFLICT, "exceeds_shipped");
    assert_eq!(
        (&reply.body["requested"], &reply.body["left"]),
        (&json!(2), &json!(1))
    );
    assert!(app.queue.is_empty(), "nothing was queued");
    let read = app.get(&format!("/reservations/{id}")).await;
    assert_eq!(read.body["lines"][0]["returned"], 2);
    assert_eq!(read.body["status"], "fulfilled");
}

#[tokio::test]
async fn what_a_reservation_cannot_give_after_the_sale_is_a_specific_4xx_and_queues_nothing() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let held = app.reserve(&[("SKU-1", 2)]).await;
    let fulfill = |id: &str| format!("/reservations/{id}/fulfill");
    app.post_keyed(&fulfill(&held), "k1", &json!({}))
        .await
        .assert_error(StatusCode::CONFLICT, "reservation_not_active");
    let id = sold(&app, &[("SKU-1", 2)]).await;
    let cases = [
        (
            json!({ "lines": [{ "sku": "SKU-1", "quantity": 3 }] }),
            StatusCode::CONFLICT,
            "exceeds_unshipped",
        ),
        (
            json!({ "lines": [{ "sku": "SKU-9", "quantity": 1 }] }),
            StatusCode::CONFLICT,
            "sku_not_in_reservation",
        ),
        (
            json!({ "lines": [] }),
            StatusCode::BAD_REQUEST,
            "invalid_lines",
        ),
        (
            json!({ "lines": [{ "sku": "SKU-1", "quantity": 1 }, { "sku": "SKU-1", "quantity": 1 }] }),
            StatusCode::BAD_REQUEST,
            "duplicate_sku",
        ),
        (
            json!({ "lines": [{ "sku": "SKU-1", "quantity": 0 }] }),
            StatusCode::BAD_REQUEST,
            "invalid_quantity",
        ),
        (
            json!({ "reference": " " }),
            StatusCode::BAD_REQUEST,
            "invalid_reference",
        ),
        (
            json!({ "restock": true }),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
    ];
    for (body, status, code) in cases {
        app.post_keyed(&fulfill(&id), "k2", &body)
            .await
            .assert_error(status, code);
    }
    app.post(&fulfill(&id), &json!({}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "idempotency_key_required");
    app.post_keyed(
        &format!("/reservations/{id}/returns"),
        "k3",
        &json!({ "lines": [{ "sku": "SKU-1", "quantity": 1 }] }),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_body");
    assert!(app.queue.is_empty(), "nothing was queued");
}

// ---------------------------------------------------------------------------------------------
// GET /items/{sku}/ledger

#[tokio::test]
async fn the_ledger_pages_every_change_with_what_it_changed_and_the_figures_after_it() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let id = sold(&app, &[("SKU-1", 3)]).await;
    app.post_keyed(
        &format!("/reservations/{id}/fulfill"),
        "ship-1",
        &json!({ "reference": "parcel-1" }),
    )
    .await
    .assert_status(StatusCode::ACCEPTED);
    app.process().await;
    let first = app.get("/items/SKU-1/ledger?limit=2").await;
    first.assert_status(StatusCode::OK);
    assert_eq!(first.body["sku"], "SKU-1");
    assert_eq!(first.body["next_after"], 2, "{}", first.body);
    let entries = &first.body["entries"];
    assert_eq!(
        (
            &entries[0]["kind"],
            &entries[0]["version"],
            &entries[0]["reason"]
        ),
        (&json!("received"), &json!(1), &json!("received"))
    );
    assert_eq!(
        entries[0]["changes"],
        json!({ "on_hand": 10, "available": 10 })
    );
    assert_eq!(entries[1]["kind"], "held");
    assert_eq!(
        entries[1]["changes"],
        json!({ "reserved": 3, "available": -3 })
    );
    let rest = app.get("/items/SKU-1/ledger?after=2").await;
    rest.assert_status(StatusCode::OK);
    assert_eq!(rest.body["next_after"], Value::Null);
    let kinds: Vec<&str> = rest.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["committed", "fulfilled"]);
    let shipped = &rest.body["entries"][1];
    assert_eq!(
        shipped["changes"],
        json!({ "on_hand": -3, "committed": -3 })
    );
    assert_eq!(shipped["reference"], "parcel-1");
    assert_eq!(shipped["reservation_id"], json!(id));
    let after = &shipped["after"];
    let item = app.item("SKU-1").await;
    for figure in [
        "on_hand",
        "reserved",
        "committed",
        "available",
        "unavailable",
    ] {
        assert_eq!(
            after[figure], item[figure],
            "{figure}: {after} against {item}"
        );
    }
    for query in ["limit=0", "limit=501", "after=-1", "after=x", "since=3"] {
        app.get(&format!("/items/SKU-1/ledger?{query}"))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    }
    app.get("/items/SKU-9/ledger")
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown_sku");
}

// ---------------------------------------------------------------------------------------------
// DELETE /reservations/{id}

#[tokio::test]
async fn releasing_a_reservation_is_202_and_once_applied_it_is_released_and_its_stock_available_again(
) {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let id = app.reserve(&[("SKU-1", 4)]).await;
    assert_eq!(app.item("SKU-1").await["available"], 6);
    let reply = app.delete(&format!("/reservations/{id}")).await;
    reply.assert_status(StatusCode::ACCEPTED);
    let command = reply.str("command_id");
    assert_eq!(app.command_status(&command).await["status"], "pending");
    app.process().await;
    assert_eq!(app.command_status(&command).await["status"], "applied");
    assert_eq!(app.reservation_status(&id).await, "released");
    let item = app.item("SKU-1").await;
    assert_eq!(
        (item["reserved"].clone(), item["available"].clone()),
        (json!(0), json!(10))
    );
}

#[tokio::test]
async fn releasing_a_checked_out_reservation_is_409_reservation_not_active() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let id = app.reserve(&[("SKU-1", 4)]).await;
    app.checkout(&id).await;
    let before = app.item("SKU-1").await;
    let reply = app.delete(&format!("/reservations/{id}")).await;
    reply.assert_error(StatusCode::CONFLICT, "reservation_not_active");
    assert_eq!(reply.body["status"], "committed");
    assert!(app.queue.is_empty(), "nothing was queued");
    assert_eq!(app.item("SKU-1").await, before, "nothing changed");
}

#[tokio::test]
async fn releasing_a_reservation_that_does_not_exist_is_404_reservation_not_found() {
    let app = App::new().await;
    app.delete("/reservations/SKU-1~99~00000000deadbeef")
        .await
        .assert_error(StatusCode::NOT_FOUND, "reservation_not_found");
}

// ---------------------------------------------------------------------------------------------
// GET /commands/{id}

#[tokio::test]
async fn a_command_is_pending_before_it_is_processed_and_applied_after() {
    let app = App::new().await;
    let reply = app
        .command("POST", "/items/SKU-1/receipts", &json!({ "quantity": 1 }))
        .await;
    let id = reply.str("command_id");
    assert_eq!(
        app.command_status(&id).await,
        json!({ "command_id": id, "status": "pending" })
    );
    app.process().await;
    assert_eq!(
        app.command_status(&id).await,
        json!({ "command_id": id, "status": "applied" })
    );
}

#[tokio::test]
async fn a_command_id_never_issued_is_404_command_not_found() {
    let app = App::new().await;
    app.get("/commands/6f1c2d3e-4b5a-4c6d-8e7f-0123456789ab")
        .await
        .assert_error(StatusCode::NOT_FOUND, "command_not_found");
}

#[tokio::test]
async fn a_malformed_command_id_is_400_invalid_command_id() {
    let app = App::new().await;
    for id in [
        "nope",
        "6f1c2d3e-4b5a-4c6d-8e7f",
        "SKU-1~1~00000000deadbeef",
    ] {
        app.get(&format!("/commands/{id}"))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_command_id");
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies of every JSON route

/// The JSON routes, each with a body it accepts (the reservation they name exists).
async fn json_routes(app: &App) -> Vec<(String, Value)> {
    app.stock("SKU-1", 10).await;
    let id = app.reserve(&[("SKU-1", 1)]).await;
    vec![
        ("/items/SKU-1/receipts".into(), json!({ "quantity": 1 })),
        (
            "/items/SKU-1/adjustments".into(),
            json!({ "delta": 1, "reason": "count" }),
        ),
        ("/reservations".into(), cart(&[("SKU-1", 1)])),
        (
            format!("/reservations/{id}/extend"),
            json!({ "ttl_seconds": 900 }),
        ),
    ]
}

/// Sends `body` to every JSON route and asserts the error, and that nothing changed.
async fn assert_every_json_route_refuses(
    app: &App,
    headers: &[(&str, &str)],
    body: impl Fn(&Value) -> String,
    status: StatusCode,
    code: &str,
) -> Vec<Reply> {
    let routes = json_routes(app).await;
    let before = app.item("SKU-1").await;
    let mut replies = Vec::new();
    // Each with a key: the admin command routes refuse a request without one first.
    let key = fresh_key();
    let mut headers = headers.to_vec();
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("idempotency-key"))
    {
        headers.push(keyed(&key));
    }
    for (uri, valid) in &routes {
        let reply = app.send("POST", uri, &headers, body(valid)).await;
        assert_eq!(
            (reply.status, reply.body["error"].as_str()),
            (status, Some(code)),
            "POST {uri}: {}",
            reply.body
        );
        replies.push(reply);
    }
    assert!(app.queue.is_empty(), "nothing was queued");
    assert_eq!(app.item("SKU-1").await, before, "nothing changed");
    replies
}

#[tokio::test]
async fn a_body_that_is_not_json_is_400_malformed_json() {
    let cases: [fn(&Value) -> String; 4] = [
        |_| String::new(),
        |_| "quantity=1".into(),
        |valid| valid.to_string().replace('"', "'"),
        |valid| {
            let text = valid.to_string();
            text[..text.len() - 1].to_owned()
        },
    ];
    for not_json in cases {
        let app = App::new().await;
        assert_every_json_route_refuses(
            &app,
            &[JSON],
            not_json,
            StatusCode::BAD_REQUEST,
            "malformed_json",
        )
        .await;
    }
}

#[tokio::test]
async fn a_json_body_followed_by_trailing_garbage_is_400_malformed_json() {
    let app = App::new().await;
    assert_every_json_route_refuses(
        &app,
        &[JSON],
        |valid| format!("{valid} x"),
        StatusCode::BAD_REQUEST,
        "malformed_json",
    )
    .await;
}

#[tokio::test]
async fn a_field_of_the_wrong_type_is_400_invalid_body_naming_the_field() {
    let app = App::new().await;
    let routes = json_routes(&app).await;
    let cases = [
        (&routes[0].0, json!({ "quantity": "1" }), "quantity"),
        (
            &routes[1].0,
            json!({ "delta": 1.5, "reason": "count" }),
            "delta",
        ),
        (
            &routes[2].0,
            json!({ "lines": [{ "sku": "SKU-1", "quantity": [1] }] }),
            "lines[0].quantity",
        ),
        (&routes[3].0, json!({ "ttl_seconds": null }), "ttl_seconds"),
    ];
    let before = app.item("SKU-1").await;
    for (uri, body, field) in cases {
        let reply = app.command("POST", uri, &body).await;
        reply.assert_error(StatusCode::BAD_REQUEST, "invalid_body");
        assert_eq!(reply.body["field"], field, "POST {uri}");
    }
    assert!(app.queue.is_empty());
    assert_eq!(app.item("SKU-1").await, before, "nothing changed");
}

#[tokio::test]
async fn a_whole_number_written_with_a_fraction_of_zero_is_that_number_as_json_schema_has_it() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let reply = app
        .post(
            "/reservations",
            &json!({ "lines": [{ "sku": "SKU-1", "quantity": 3.0 }], "ttl_seconds": 600.0 }),
        )
        .await;
    reply.assert_status(StatusCode::CREATED);
    assert_eq!(reply.body["lines"][0]["quantity"], 3);
    for too_big in [json!(1e300), json!(9_223_372_036_854_775_808_u64)] {
        let reply = app
            .command(
                "POST",
                "/items/SKU-1/receipts",
                &json!({ "quantity": too_big }),
            )
            .await;
        reply.assert_error(StatusCode::BAD_REQUEST, "invalid_body");
        assert_eq!(reply.body["field"], "quantity");
    }
}

#[tokio::test]
async fn an_unknown_field_is_400_invalid_body_naming_the_field() {
    let app = App::new().await;
    let replies = assert_every_json_route_refuses(
        &app,
        &[JSON],
        |valid| {
            let mut body = valid.clone();
            body["colour"] = json!("red");
            body.to_string()
        },
        StatusCode::BAD_REQUEST,
        "invalid_body",
    )
    .await;
    for reply in replies {
        assert_eq!(reply.body["field"], "colour", "{}", reply.body);
    }
}

#[tokio::test]
async fn a_missing_field_is_400_invalid_body_naming_where_it_is_missing() {
    let app = App::new().await;
    let routes = json_routes(&app).await;
    let cases = [
        (&routes[0].0, json!({ "reference": "PO-1" }), "quantity"),
        (&routes[1].0, json!({ "delta": 1 }), "reason"),
        (&routes[2].0, json!({ "ttl_seconds": 900 }), "lines"),
        (
            &routes[2].0,
            json!({ "lines": [{ "sku": "SKU-1" }] }),
            "lines[0].quantity",
        ),
        (&routes[3].0, json!({}), "ttl_seconds"),
    ];
    for (uri, body, field) in cases {
        let reply = app.command("POST", uri, &body).await;
        reply.assert_error(StatusCode::BAD_REQUEST, "invalid_body");
        assert_eq!(reply.body["field"], field, "POST {uri} {body}");
    }
    assert!(app.queue.is_empty());
}

#[tokio::test]
async fn a_body_over_64_kib_is_413_payload_too_large() {
    let app = App::new().await;
    // Valid JSON padded with whitespace: only its size is wrong.
    let oversized = |valid: &Value| format!("{valid}{}", " ".repeat(64 * 1024));
    assert_every_json_route_refuses(
        &app,
        &[JSON],
        oversized,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
}

#[tokio::test]
async fn a_body_declaring_a_content_length_over_64_kib_is_413_payload_too_large() {
    let app = App::new().await;
    assert_every_json_route_refuses(
        &app,
        &[JSON, ("content-length", "65537")],
        Value::to_string,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
}

#[tokio::test]
async fn a_body_of_exactly_64_kib_is_accepted() {
    let app = App::new().await;
    let body = json!({ "quantity": 1 }).to_string();
    let padded = format!("{body}{}", " ".repeat(64 * 1024 - body.len()));
    assert_eq!(padded.len(), 64 * 1024);
    app.send(
        "POST",
        "/items/SKU-1/receipts",
        &[JSON, keyed(&fresh_key())],
        padded,
    )
    .await
    .assert_status(StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_body_without_a_json_content_type_is_415_unsupported_media_type() {
    for headers in [
        &[][..],
        &[("content-type", "text/plain")][..],
        &[("content-type", "application/x-www-form-urlencoded")][..],
    ] {
        let app = App::new().await;
        assert_every_json_route_refuses(
            &app,
            headers,
            Value::to_string,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
    }
}

#[tokio::test]
async fn a_json_content_type_with_parameters_or_other_case_is_accepted() {
    let app = App::new().await;
    for content_type in ["application/json; charset=utf-8", "Application/JSON"] {
        app.send(
            "POST",
            "/items/SKU-1/receipts",
            &[("content-type", content_type), keyed(&fresh_key())],
            json!({ "quantity": 1 }).to_string(),
        )
        .await
        .assert_status(StatusCode::ACCEPTED);
    }
}

#[tokio::test]
async fn a_body_that_fails_while_being_read_is_400_unreadable_body() {
    let app = App::new().await;
    // A body whose stream errors part way (here: a limit of 1 byte inside the body itself).
    let failing = Body::new(Limited::new(
        Full::new(Bytes::from_static(b"{\"quantity\": 1}")),
        1,
    ));
    app.send(
        "POST",
        "/items/SKU-1/receipts",
        &[JSON, keyed(&fresh_key())],
        failing,
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "unreadable_body");
    assert!(app.queue.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Routing

#[tokio::test]
async fn an_unknown_path_is_404_route_not_found() {
    let app = App::new().await;
    for uri in ["/", "/nope", "/items/SKU-1/history", "/reservations/x/y/z"] {
        app.get(uri)
            .await
            .assert_error(StatusCode::NOT_FOUND, "route_not_found");
    }
}

#[tokio::test]
async fn a_known_path_with_another_method_is_405_method_not_allowed() {
    let app = App::new().await;
    for (method, uri) in [
        ("PUT", "/reservations"),
        ("GET", "/reservations"),
        ("DELETE", "/items/SKU-1"),
        ("POST", "/items"),
        ("GET", "/items/SKU-1/receipts"),
        ("PATCH", "/reservations/SKU-1~1~00000000deadbeef"),
        ("DELETE", "/commands/6f1c2d3e-4b5a-4c6d-8e7f-0123456789ab"),
    ] {
        app.send(method, uri, &[JSON], "{}")
            .await
            .assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    }
}

#[tokio::test]
async fn a_blank_receipt_reference_is_400_invalid_reference() {
    let app = App::new().await;
    app.command(
        "POST",
        "/items/SKU-1/receipts",
        &json!({ "quantity": 1, "reference": "  " }),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_reference");
    assert!(app.queue.is_empty());
}

// ---------------------------------------------------------------------------------------------
// A store that hangs

#[tokio::test]
async fn a_store_call_that_never_answers_ends_in_a_json_503_unavailable() {
    use inventory_core::aws::{local_config_with, CallTimeouts, DynamoStore};
    // DynamoDB stand-in: accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = silent.local_addr().expect("an address");
    let holder = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let timeouts = CallTimeouts {
        attempt: std::time::Duration::from_millis(200),
        call: std::time::Duration::from_millis(600),
    };
    let sdk = local_config_with(&format!("http://{address}"), timeouts).await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), "silent");
    let inventory = Inventory::new(
        Arc::new(store),
        Arc::new(MemoryQueue::new()),
        Arc::new(inventory_core::ports::SystemClock),
        Config::default(),
    );
    let router = reservations_api::router(Arc::new(inventory), Authentication::Open);
    let request = Request::post("/reservations")
        .header(JSON.0, JSON.1)
        .body(Body::from(cart(&[("SKU-1", 1)]).to_string()))
        .expect("a request");
    // A liveness guard, not a measure: without the SDK's timeouts the call waits for ever.
    let response =
        tokio::time::timeout(std::time::Duration::from_secs(60), router.oneshot(request))
            .await
            .expect("answered, not hung")
            .expect("the router is infallible");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    let body: Value = serde_json::from_slice(&body).expect("a JSON body");
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")),
        "{body}"
    );
    holder.abort();
}

// ---------------------------------------------------------------------------------------------
// PUT /locations/{id}, GET /locations

#[tokio::test]
async fn a_location_put_is_answered_as_registered_and_listed_with_the_default_one() {
    let app = App::new().await;
    let listed = app.get("/locations").await;
    listed.assert_status(StatusCode::OK);
    assert_eq!(
        listed.body,
        json!({ "locations": [{
            "id": "default", "name": "Default", "kind": "warehouse",
            "fulfills_online": true, "pickup": false, "priority": 0, "active": true,
        }] }),
        "a shop that never named a location has the default one"
    );
    // Given a store with pickup, its other fields left to their defaults.
    let store = app
        .put(
            "/locations/store-5",
            &json!({ "name": " Store 5 ", "kind": "store", "pickup": true }),
        )
        .await;
    store.assert_status(StatusCode::OK);
    assert_eq!(
        store.body,
        json!({
            "id": "store-5", "name": "Store 5", "kind": "store",
            "fulfills_online": false, "pickup": true, "priority": 0, "active": true,
        })
    );
    // When a warehouse is added and the store changed (a PUT replaces it whole).
    app.put(
        "/locations/wh-east",
        &json!({ "name": "East", "kind": "warehouse", "priority": -5 }),
    )
    .await
    .assert_status(StatusCode::OK);
    let changed = app
        .put(
            "/locations/store-5",
            &json!({ "name": "Store 5", "kind": "store", "fulfills_online": true, "active": false }),
        )
        .await;
    changed.assert_status(StatusCode::OK);
    // Then the list has all three by id, the store as last put.
    let listed = app.get("/locations").await;
    let rows: Vec<(String, bool, bool, i64, bool)> = listed.body["locations"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|l| {
            (
                l["id"].as_str().unwrap().to_owned(),
                l["fulfills_online"].as_bool().unwrap(),
                l["pickup"].as_bool().unwrap(),
                l["priority"].as_i64().unwrap(),
                l["active"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("default".to_owned(), true, false, 0, true),
            ("store-5".to_owned(), true, false, 0, false),
            ("wh-east".to_owned(), true, false, -5, true),
        ]
    );
}

#[tokio::test]
async fn a_location_with_a_bad_id_name_priority_or_shape_is_400_and_registers_nothing() {
    let app = App::new().await;
    let store = |fields: Value| {
        let mut body = json!({ "name": "Store", "kind": "store" });
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        body
    };
    app.put("/locations/store%205", &store(json!({})))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_location");
    app.put("/locations/a:b", &store(json!({})))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_location");
    for name in [json!("   "), json!("n".repeat(201))] {
        app.put("/locations/s", &store(json!({ "name": name })))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_location_name");
    }
    for priority in [json!(1_000_001), json!(-1_000_001), json!(i32::MIN)] {
        app.put("/locations/s", &store(json!({ "priority": priority })))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_priority");
    }
    for body in [
        json!({ "name": "Store" }),
        store(json!({ "kind": "kiosk" })),
        store(json!({ "pickup": "yes" })),
        store(json!({ "colour": "red" })),
    ] {
        app.put("/locations/s", &body)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_body");
    }
    let listed = app.get("/locations").await;
    assert_eq!(listed.body["locations"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn stock_received_and_counted_at_a_store_is_kept_there_and_the_item_reads_the_sum() {
    let app = App::new().await;
    // Given a store registered, and units at the default location and at the store.
    app.put(
        "/locations/store-5",
        &json!({ "name": "Store 5", "kind": "store" }),
    )
    .await
    .assert_status(StatusCode::OK);
    app.stock("SKU-1", 3).await;
    app.command(
        "POST",
        "/items/SKU-1/receipts",
        &json!({ "quantity": 5, "location": "store-5" }),
    )
    .await
    .assert_status(StatusCode::ACCEPTED);
    app.command(
        "POST",
        "/items/SKU-1/moves",
        &json!({ "location": "store-5", "from": "available", "to": "damaged", "quantity": 1, "reason": "damaged" }),
    )
    .await
    .assert_status(StatusCode::ACCEPTED);
    app.process().await;
    // Then the item reads the sum, each location its own figures.
    let item = app.item("SKU-1").await;
    assert_eq!(
        (&item["on_hand"], &item["available"]),
        (&json!(8), &json!(7)),
        "{item}"
    );
    let at: Vec<(String, i64, i64)> = item["locations"]
        .as_array()
        .expect("the locations")
        .iter()
        .map(|l| {
            (
                l["location"].as_str().unwrap().to_owned(),
                l["on_hand"].as_i64().unwrap(),
                l["available"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        at,
        vec![("default".to_owned(), 3, 3), ("store-5".to_owned(), 5, 4)]
    );
    // When a count at the store finds 2.
    app.command(
        "PUT",
        "/items/SKU-1/on-hand",
        &json!({ "location": "store-5", "quantity": 2, "expected": 5, "reason": "cycle_count" }),
    )
    .await
    .assert_status(StatusCode::ACCEPTED);
    app.process().await;
    // Then only the store's figure moved, and the read view follows the item.
    let item = app.item("SKU-1").await;
    assert_eq!(item["locations"][1]["on_hand"], json!(2), "{item}");
    assert_eq!(item["locations"][0]["on_hand"], json!(3), "{item}");
    // And the store's ledger has its own changes, the item's all of them.
    let kinds = |reply: Reply| -> Vec<String> {
        reply.assert_status(StatusCode::OK);
        reply.body["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|entry| entry["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        kinds(app.get("/items/SKU-1/ledger?location=store-5").await),
        ["received", "moved", "counted"]
    );
    assert_eq!(
        kinds(app.get("/items/SKU-1/ledger").await),
        ["received", "received", "moved", "counted"]
    );
    app.get("/items/SKU-1/ledger?location=store-9")
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown_location");
    app.get("/items/SKU-1/ledger?location=a:b")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    app.deliver_feed(&["SKU-1"]).await;
    let view = app.get("/items?sku=SKU-1").await;
    view.assert_status(StatusCode::OK);
    let seen = &view.body["items"][0];
    assert_eq!(
        (&seen["on_hand"], &seen["available"], &seen["locations"]),
        (&item["on_hand"], &item["available"], &item["locations"]),
        "{}",
        view.body
    );
    // One location's figures alone: the store's, and none where an item was never kept.
    app.stock("SKU-2", 1).await;
    app.deliver_feed(&["SKU-2"]).await;
    let at_store = app.get("/items?sku=SKU-1&sku=SKU-2&location=store-5").await;
    at_store.assert_status(StatusCode::OK);
    let rows: Vec<(Value, Value, Value)> = at_store.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["sku"].clone(),
                i["on_hand"].clone(),
                i["available"].clone(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (json!("SKU-1"), json!(2), json!(1)),
            (json!("SKU-2"), json!(0), json!(0))
        ],
        "{}",
        at_store.body
    );
    assert_eq!(at_store.body["items"][0].get("locations"), None);
    let at_default = app.get("/items?sku=SKU-2&location=default").await;
    assert_eq!(
        at_default.body["items"][0]["on_hand"],
        json!(1),
        "{}",
        at_default.body
    );
    app.get("/items?sku=SKU-1&location=store-9")
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown_location");
    app.get("/items?sku=SKU-1&location=a:b")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    app.get("/items?sku=SKU-1&location=default&location=store-5")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_query");
}

#[tokio::test]
async fn a_command_at_a_location_the_shop_has_not_registered_is_404_and_queues_nothing() {
    let app = App::new().await;
    app.command(
        "POST",
        "/items/SKU-1/receipts",
        &json!({ "quantity": 5, "location": "store-9" }),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "unknown_location");
    app.command(
        "PUT",
        "/items/SKU-1/buckets",
        &json!({ "count": 2, "location": "no/such" }),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_location");
    assert_eq!(app.process().await, 0, "nothing was queued");
}

#[tokio::test]
async fn a_shop_with_two_warehouses_and_a_pickup_store_holds_each_line_where_its_units_are() {
    let app = App::new().await;
    // Given the default warehouse (priority 0), a second one (priority 1) and a pickup store.
    app.put(
        "/locations/wh-2",
        &json!({ "name": "East", "kind": "warehouse", "priority": 1 }),
    )
    .await
    .assert_status(StatusCode::OK);
    app.put(
        "/locations/store-5",
        &json!({ "name": "Store 5", "kind": "store", "pickup": true, "fulfills_online": false }),
    )
    .await
    .assert_status(StatusCode::OK);
    app.stock("SKU-1", 2).await;
    for (at, units) in [("wh-2", 5), ("store-5", 3)] {
        app.command(
            "POST",
            "/items/SKU-1/receipts",
            &json!({ "quantity": units, "location": at }),
        )
        .await
        .assert_status(StatusCode::ACCEPTED);
    }
    app.process().await;
    let allocations = |reply: &Reply| reply.body["lines"][0]["allocations"].clone();

    // When a line the default warehouse cannot hold whole is reserved, the next one holds it.
    let reply = app
        .post(
            "/reservations",
            &json!({ "lines": [{ "sku": "SKU-1", "quantity": 3 }] }),
        )
        .await;
    reply.assert_status(StatusCode::CREATED);
    assert_eq!(
        allocations(&reply),
        json!([{ "location": "wh-2", "quantity": 3 }])
    );
    // A split takes all of each location in order; pickup holds at the store only.
    let split = app
        .post(
            "/reservations",
            &json!({ "lines": [{ "sku": "SKU-1", "quantity": 3 }], "split": true }),
        )
        .await;
    split.assert_status(StatusCode::CREATED);
    assert_eq!(
        allocations(&split),
        json!([{ "location": "default", "quantity": 2 }, { "location": "wh-2", "quantity": 1 }])
    );
    assert_eq!(split.body["lines"][0]["quantity"], json!(3));
    let pickup = app
        .post(
            "/reservations",
            &json!({ "lines": [{ "sku": "SKU-1", "quantity": 3 }], "pickup_at": "store-5" }),
        )
        .await;
    pickup.assert_status(StatusCode::CREATED);
    assert_eq!(
        allocations(&pickup),
        json!([{ "location": "store-5", "quantity": 3 }])
    );
    // Online orders never take the store's units: one unit is left online, at wh-2.
    app.post("/reservations", &cart(&[("SKU-1", 2)]))
        .await
        .assert_error(StatusCode::CONFLICT, "insufficient_stock");
    let named = app
        .post(
            "/reservations",
            &json!({ "lines": [{ "sku": "SKU-1", "quantity": 1, "location": "wh-2" }] }),
        )
        .await;
    named.assert_status(StatusCode::CREATED);
    let item = app.item("SKU-1").await;
    assert_eq!(item["available"], json!(0), "{item}");

    // Then the split reservation checks out and ships from both locations, in order.
    let id = split.str("reservation_id");
    app.checkout(&id).await;
    app.command(
        "POST",
        &format!("/reservations/{id}/fulfill"),
        &json!({ "lines": [{ "sku": "SKU-1", "quantity": 3 }] }),
    )
    .await
    .assert_status(StatusCode::ACCEPTED);
    app.process().await;
    let item = app.item("SKU-1").await;
    let on_hand: Vec<(Value, Value)> = item["locations"]
        .as_array()
        .expect("locations")
        .iter()
        .map(|l| (l["location"].clone(), l["on_hand"].clone()))
        .collect();
    assert_eq!(
        on_hand,
        [
            (json!("default"), json!(0)),
            (json!("store-5"), json!(3)),
            (json!("wh-2"), json!(4))
        ]
    );
    let read = app.get(&format!("/reservations/{id}")).await;
    assert_eq!(
        read.body["lines"][0]["fulfilled"],
        json!(3),
        "{}",
        read.body
    );
    assert_eq!(allocations(&read), allocations(&split));
}

#[tokio::test]
async fn a_reservation_naming_a_location_it_may_not_use_is_refused_with_its_reason() {
    let app = App::new().await;
    app.put(
        "/locations/wh-2",
        &json!({ "name": "East", "kind": "warehouse", "active": false }),
    )
    .await
    .assert_status(StatusCode::OK);
    app.stock("SKU-1", 2).await;
    let line = |extra: Value| {
        let mut body = json!({ "lines": [{ "sku": "SKU-1", "quantity": 1 }] });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        body
    };
    let at = |location: &str| json!({ "lines": [{ "sku": "SKU-1", "quantity": 1, "location": location }] });
    app.post("/reservations", &at("store-9"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown_location");
    let reply = app.post("/reservations", &at("a:b")).await;
    reply.assert_error(StatusCode::BAD_REQUEST, "invalid_location");
    assert_eq!(reply.body["field"], json!("lines[0].location"));
    app.post("/reservations", &at("wh-2"))
        .await
        .assert_error(StatusCode::CONFLICT, "location_unavailable");
    app.post("/reservations", &line(json!({ "pickup_at": "default" })))
        .await
        .assert_error(StatusCode::CONFLICT, "location_unavailable");
    app.post("/reservations", &line(json!({ "pickup_at": "store-9" })))
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown_location");
    let reply = app
        .post(
            "/reservations",
            &line(json!({ "locations": ["default", "default"] })),
        )
        .await;
    reply.assert_error(StatusCode::BAD_REQUEST, "invalid_locations");
    let reply = app
        .post("/reservations", &line(json!({ "locations": ["no/such"] })))
        .await;
    reply.assert_error(StatusCode::BAD_REQUEST, "invalid_location");
    assert_eq!(reply.body["field"], json!("locations"));
    assert_eq!(
        app.item("SKU-1").await["available"],
        json!(2),
        "nothing held"
    );
}

#[tokio::test]
async fn a_transfer_puts_units_in_transit_for_sale_nowhere_until_received_in_parts() {
    let app = App::new().await;
    app.put(
        "/locations/store-5",
        &json!({ "name": "Store 5", "kind": "store", "pickup": true }),
    )
    .await
    .assert_status(StatusCode::OK);
    app.stock("SKU-1", 10).await;
    // When 6 units are shipped to the store.
    let shipped = app
        .command(
            "POST",
            "/transfers",
            &json!({ "sku": "SKU-1", "from": "default", "to": "store-5", "quantity": 6, "reference": "truck 12" }),
        )
        .await;
    shipped.assert_status(StatusCode::ACCEPTED);
    let transfer = shipped.str("transfer_id");
    assert!(transfer.starts_with("SKU-1~default~store-5~"), "{transfer}");
    app.process().await;
    // Then they are in transit: out of the default location, on their way to the store.
    let figures = |item: &Value| -> Vec<(Value, Value, Value, Value)> {
        item["locations"]
            .as_array()
            .expect("locations")
            .iter()
            .map(|l| {
                (
                    l["location"].clone(),
                    l["on_hand"].clone(),
                    l["transit_out"].clone(),
                    l["transit_in"].clone(),
                )
            })
            .collect()
    };
    let item = app.item("SKU-1").await;
    assert_eq!(
        figures(&item),
        [
            (json!("default"), json!(4), json!(6), Value::Null),
            (json!("store-5"), json!(0), Value::Null, json!(6)),
        ]
    );
    assert_eq!(
        (&item["available"], &item["transit_in"]),
        (&json!(4), &json!(6))
    );
    // When 2 land, then the rest (no body: all in transit).
    let receive = format!("/transfers/{transfer}/receive");
    app.command("POST", &receive, &json!({ "quantity": 2 }))
        .await
        .assert_status(StatusCode::ACCEPTED);
    app.process().await;
    let item = app.item("SKU-1").await;
    assert_eq!(item["locations"][1]["on_hand"], json!(2), "{item}");
    assert_eq!(item["locations"][1]["transit_in"], json!(4), "{item}");
    let key = fresh_key();
    app.send("POST", &receive, &[keyed(&key)], Body::empty())
        .await
        .assert_status(StatusCode::ACCEPTED);
    app.process().await;
    let item = app.item("SKU-1").await;
    assert_eq!(
        figures(&item),
        [
            (json!("default"), json!(4), Value::Null, Value::Null),
            (json!("store-5"), json!(6), Value::Null, Value::Null),
        ]
    );
    // A receipt of a transfer with nothing left in transit is rejected, and says why.
    let again = app.command("POST", &receive, &json!({})).await;
    again.assert_status(StatusCode::ACCEPTED);
    app.process().await;
    let status = app.command_status(&again.str("command_id")).await;
    assert_eq!(status["reason"], json!("nothing_in_transit"), "{status}");
    // The ledger of each end has its side.
    let kinds = |reply: Reply| -> Vec<String> {
        reply.body["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|entry| entry["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        kinds(app.get("/items/SKU-1/ledger?location=store-5").await),
        [
            "transfer_incoming",
            "transfer_received",
            "transfer_received",
            "rejected"
        ]
    );
    assert_eq!(
        kinds(app.get("/items/SKU-1/ledger?location=default").await),
        [
            "received",
            "transfer_shipped",
            "transfer_arrived",
            "transfer_arrived"
        ]
    );
}

#[tokio::test]
async fn a_transfer_between_one_location_or_to_an_unknown_one_is_refused_and_queues_nothing() {
    let app = App::new().await;
    app.stock("SKU-1", 10).await;
    let transfer =
        |from: &str, to: &str| json!({ "sku": "SKU-1", "from": from, "to": to, "quantity": 1 });
    app.command("POST", "/transfers", &transfer("default", "default"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_transfer");
    app.command("POST", "/transfers", &transfer("default", "store-9"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown_location");
    let reply = app
        .command("POST", "/transfers", &transfer("default", "a:b"))
        .await;
    reply.assert_error(StatusCode::BAD_REQUEST, "invalid_location");
    assert_eq!(reply.body["field"], json!("to"));
    app.post("/transfers", &transfer("default", "store-9"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "idempotency_key_required");
    app.command("POST", "/transfers/nope/receive", &json!({}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_transfer_id");
    assert_eq!(app.process().await, 0, "nothing was queued");
}
