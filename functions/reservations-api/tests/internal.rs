//! A bug answers 500 `internal` with an incident id and none of its detail: an event item in
//! the table (DynamoDB on moto) that does not read as an event breaks the store's contract, and
//! neither a read nor a reservation on that SKU turns it into "retry" (503) or writes anything.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use inventory_core::aws::dynamo::{PK, SK, STREAM_PREFIX};
use inventory_core::aws::TestAws;
use inventory_core::domain::Sku;
use inventory_core::domain::StreamId;
use inventory_core::memory::MemoryQueue;
use inventory_core::ports::{EventStore, SystemClock};
use inventory_core::{Config, Inventory};
use reservations_api::Authentication;
use serde_json::{json, Value};
use tower::ServiceExt;

async fn call(router: &axum::Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, serde_json::from_slice(&bytes).expect("a JSON body"))
}

/// A 500 `internal` naming its incident.
#[track_caller]
fn assert_internal(status: StatusCode, body: &Value) {
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("internal")),
        "{body}"
    );
    let incident = body["incident_id"].as_str().expect("an incident id");
    assert!(uuid::Uuid::parse_str(incident).is_ok(), "{body}");
}

#[tokio::test]
async fn an_event_item_that_does_not_read_as_an_event_is_a_500_internal_not_a_retry() {
    let aws = TestAws::new().await;
    let client = aws.dynamodb();
    let store = aws.store(client.clone(), "internal").await;
    client
        .put_item()
        .table_name(store.table())
        .item(PK, AttributeValue::S(format!("{STREAM_PREFIX}BROKEN")))
        .item(SK, AttributeValue::N("1".into()))
        .item("written_by", AttributeValue::S("someone else".into()))
        .send()
        .await
        .expect("a foreign item");
    let store: Arc<dyn EventStore> = Arc::new(store);
    let queue = Arc::new(MemoryQueue::new());
    let inventory = Arc::new(Inventory::new(
        store.clone(),
        queue.clone(),
        Arc::new(SystemClock),
        Config::default(),
    ));
    let router = reservations_api::router(inventory, Authentication::Open);

    let (status, body) = call(
        &router,
        Request::get("/items/BROKEN")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_internal(status, &body);
    assert!(
        !body.to_string().contains("written_by"),
        "no detail leaks: {body}"
    );

    let (status, body) = call(
        &router,
        Request::post("/reservations")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({ "lines": [{ "sku": "BROKEN", "quantity": 1 }] }).to_string(),
            ))
            .expect("request"),
    )
    .await;
    assert_internal(status, &body);
    assert!(queue.is_empty(), "nothing was queued");
    let sku = Sku::parse("BROKEN").expect("sku");
    assert!(
        store
            .read_stream(&StreamId::of(&sku), 1)
            .await
            .expect("after the broken one")
            .is_empty(),
        "nothing was appended"
    );
}
