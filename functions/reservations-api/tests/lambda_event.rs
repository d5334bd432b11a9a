//! The API Lambda's router fed `events/reservations-api.json` (the API Gateway HTTP API event
//! `sam local invoke -e` uses) through lambda_http, against DynamoDB and Kinesis on moto.

use inventory_core::domain::Annotation;
use std::sync::Arc;

use inventory_core::aws::TestAws;
use inventory_core::domain::{Action, Command, CommandId, Quantity, Sku, Timestamp};
use inventory_core::ports::SystemClock;
use inventory_core::{Config, Inventory};
use lambda_http::http::StatusCode;
use reservations_api::Authentication;
use tower::ServiceExt;

const EVENT: &str = include_str!("../../../events/reservations-api.json");

async fn inventory_on_moto() -> Arc<Inventory> {
    let aws = TestAws::new().await;
    Arc::new(Inventory::new(
        Arc::new(aws.store(aws.dynamodb(), "events").await),
        Arc::new(aws.queue(aws.kinesis(), "commands").await),
        Arc::new(SystemClock),
        Config::default(),
    ))
}

async fn receive(inventory: &Inventory, sku: &str, units: i64) {
    let command = Command {
        id: CommandId::random(),
        sku: Sku::parse(sku).unwrap(),
        accepted_at: Timestamp::from_millis(0),
        action: Action::ReceiveStock {
            location: Default::default(),
            quantity: Quantity::new(units).unwrap(),
            why: Annotation::received(None),
        },
    };
    inventory
        .apply_commands(&command.sku.clone(), &[command])
        .await
        .unwrap();
}

async fn invoke(inventory: &Arc<Inventory>) -> (StatusCode, serde_json::Value) {
    let request = lambda_http::request::from_str(EVENT).expect("the checked-in event parses");
    let response = reservations_api::router(Arc::clone(inventory), Authentication::GatewayJwt)
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, serde_json::from_slice(&bytes).expect("JSON body"))
}

#[tokio::test]
async fn the_http_api_event_reserves_the_cart_once_even_when_retried() {
    let inventory = inventory_on_moto().await;
    receive(&inventory, "SKU-A", 5).await;
    receive(&inventory, "SKU-B", 1).await;

    let (status, first) = invoke(&inventory).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["status"], "active");
    assert_eq!(first["lines"].as_array().map(Vec::len), Some(2));

    // The event carries an Idempotency-Key: a retry answers the same reservation.
    let (status, retry) = invoke(&inventory).await;
    assert_eq!(status, StatusCode::CREATED, "{retry}");
    assert_eq!(retry["reservation_id"], first["reservation_id"]);

    let a = inventory.item(&Sku::parse("SKU-A").unwrap()).await.unwrap();
    let b = inventory.item(&Sku::parse("SKU-B").unwrap()).await.unwrap();
    assert_eq!((a.reserved, a.available), (2, 3));
    assert_eq!((b.reserved, b.available), (1, 0));
}

#[tokio::test]
async fn the_http_api_event_for_a_cart_with_a_short_line_reserves_nothing() {
    let inventory = inventory_on_moto().await;
    receive(&inventory, "SKU-A", 5).await;
    let (status, body) = invoke(&inventory).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "unknown_sku");
    assert_eq!(body["sku"], "SKU-B");

    receive(&inventory, "SKU-B", 1).await;
    // Another client takes the last SKU-B (a plain request, on an open router).
    let hold = reservations_api::router(Arc::clone(&inventory), Authentication::Open)
        .oneshot(
            lambda_http::http::Request::post("/reservations")
                .header("content-type", "application/json")
                .body(lambda_http::Body::from(
                    r#"{"lines":[{"sku":"SKU-B","quantity":1}]}"#,
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(hold.status(), StatusCode::CREATED);

    let (status, body) = invoke(&inventory).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        (body["error"].as_str(), body["sku"].as_str()),
        (Some("insufficient_stock"), Some("SKU-B"))
    );
    let a = inventory.item(&Sku::parse("SKU-A").unwrap()).await.unwrap();
    assert_eq!((a.reserved, a.version), (0, 1), "nothing was held on SKU-A");
}
