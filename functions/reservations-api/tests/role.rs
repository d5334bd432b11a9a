//! Every request the API sends to AWS, for every route, is one `ReservationsApiRole` grants: the
//! router runs on DynamoDB and Kinesis at moto through clients that record each request as IAM
//! authorizes it, and the template's role must allow each one (action, table or stream, and the
//! partition-key prefixes of `dynamodb:LeadingKeys`). What the processor and the snapshotter do
//! in between runs on clients of their own, unrecorded.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use inventory_core::archive::Archive;
use inventory_core::aws::{DynamoStore, KinesisQueue, S3Objects, TestAws};
use inventory_core::domain::StreamId;
use inventory_core::domain::{Command, Sku};
use inventory_core::feed::{FeedChange, Reaction};
use inventory_core::memory::MemoryQueue;
use inventory_core::ports::{Streams, SystemClock};
use inventory_core::reactions::Snapshotter;
use inventory_core::{Config, Inventory};
use inventory_test_support::grants::{assert_granted_by, AccessLog, Names};
use inventory_test_support::kinesis::stream_records;
use reservations_api::{routes, Authentication};
use serde_json::{json, Value};
use tower::ServiceExt;

async fn send(
    router: &axum::Router,
    method: &str,
    uri: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let body = body.map_or_else(Body::empty, |body| Body::from(body.to_string()));
    let response = router
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).expect("JSON"))
}

#[tokio::test]
async fn every_request_the_api_sends_on_every_route_is_granted_by_its_role() {
    let aws = TestAws::new().await;
    let names = Names {
        table: aws.name("events"),
        stream: Some(aws.name("commands")),
        bucket: Some(aws.name("archive")),
        ..Names::default()
    };
    let plain = Arc::new(aws.store(aws.dynamodb(), "events").await);
    let stream = aws
        .queue(aws.kinesis(), "commands")
        .await
        .stream()
        .to_owned();

    let plain_objects = aws.objects(aws.s3(), "archive").await;
    let log = AccessLog::default();
    let archive = Archive::new(Arc::new(S3Objects::new(
        log.s3(aws.config()),
        plain_objects.bucket(),
    )));
    let api = Arc::new(
        Inventory::new(
            Arc::new(DynamoStore::new(log.dynamodb(aws.config()), &names.table)),
            Arc::new(KinesisQueue::new(log.kinesis(aws.config()), &stream)),
            Arc::new(SystemClock),
            Config::default(),
        )
        .with_archive(archive),
    );
    let router = reservations_api::router(api, Authentication::Open);
    // The processor and the snapshotter, on their own clients.
    let processor = Inventory::new(
        plain.clone(),
        Arc::new(MemoryQueue::new()),
        Arc::new(SystemClock),
        Config::default(),
    );
    let apply = |commands: Vec<Command>| {
        let processor = &processor;
        async move {
            for command in commands {
                processor
                    .apply_commands(&command.sku.clone(), &[command])
                    .await
                    .expect("applied");
            }
        }
    };
    let mut covered = std::collections::BTreeSet::new();
    let mut call = |method: &'static str, path: &'static str| {
        covered.insert((method, path.to_owned()));
    };

    // Receipts and an adjustment: accepted commands and the queue.
    for sku in ["SKU-A", "SKU-B"] {
        let key = format!("receipt-{sku}");
        let (status, body) = send(
            &router,
            "POST",
            &format!("/items/{sku}/receipts"),
            Some(&key),
            Some(json!({ "quantity": 20 })),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    call("POST", "/items/{sku}/receipts");
    let (status, adjusted) = send(
        &router,
        "POST",
        "/items/SKU-A/adjustments",
        Some("count-1"),
        Some(json!({ "delta": -2, "reason": "count" })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{adjusted}");
    call("POST", "/items/{sku}/adjustments");
    // SKU-B split into escrow buckets: the cart below holds in one of its bucket streams.
    let (status, split) = send(
        &router,
        "PUT",
        "/items/SKU-B/buckets",
        Some("split-1"),
        Some(json!({ "count": 3 })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{split}");
    call("PUT", "/items/{sku}/buckets");
    let (status, low) = send(
        &router,
        "PUT",
        "/items/SKU-A/low-stock",
        Some("low-stock-1"),
        Some(json!({ "below": 2 })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{low}");
    call("PUT", "/items/{sku}/low-stock");
    let (status, moved) = send(
        &router,
        "POST",
        "/items/SKU-A/moves",
        Some("move-1"),
        Some(json!({ "from": "available", "to": "damaged", "quantity": 1, "reason": "damaged" })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{moved}");
    call("POST", "/items/{sku}/moves");
    let (status, counted) = send(
        &router,
        "PUT",
        "/items/SKU-A/on-hand",
        Some("count-1"),
        Some(json!({ "quantity": 5, "reason": "cycle_count" })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{counted}");
    call("PUT", "/items/{sku}/on-hand");
    apply(read_queue(&aws, &stream).await).await;

    // Reservations: one line, a cart under a key, its retry, a read, an extension.
    let (status, one) = send(
        &router,
        "POST",
        "/reservations",
        None,
        Some(json!({ "lines": [{ "sku": "SKU-A", "quantity": 1 }] })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{one}");
    let cart =
        json!({ "lines": [{ "sku": "SKU-A", "quantity": 2 }, { "sku": "SKU-B", "quantity": 1 }] });
    let (status, first) = send(
        &router,
        "POST",
        "/reservations",
        Some("cart-1"),
        Some(cart.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (_, again) = send(&router, "POST", "/reservations", Some("cart-1"), Some(cart)).await;
    assert_eq!(again["reservation_id"], first["reservation_id"]);
    call("POST", "/reservations");
    let id = first["reservation_id"].as_str().unwrap().to_owned();
    let (status, _) = send(&router, "GET", &format!("/reservations/{id}"), None, None).await;
    assert_eq!(status, StatusCode::OK);
    call("GET", "/reservations/{id}");
    let (status, body) = send(
        &router,
        "POST",
        &format!("/reservations/{id}/extend"),
        None,
        Some(json!({ "ttl_seconds": 3600 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    call("POST", "/reservations/{id}/extend");

    // A checkout under a key, a release, and where the checkout stands.
    let (status, checkout) = send(
        &router,
        "POST",
        &format!("/reservations/{id}/checkout"),
        Some("pay-1"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{checkout}");
    call("POST", "/reservations/{id}/checkout");
    let other = one["reservation_id"].as_str().unwrap();
    let (status, _) = send(
        &router,
        "DELETE",
        &format!("/reservations/{other}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    call("DELETE", "/reservations/{id}");
    apply(read_queue(&aws, &stream).await).await;
    let command = checkout["command_id"].as_str().unwrap();
    let (status, body) = send(&router, "GET", &format!("/commands/{command}"), None, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("applied"))
    );
    call("GET", "/commands/{id}");

    // What becomes of the sale: one unit of SKU-A ships, the rest of the order is cancelled,
    // and the shipped unit comes back damaged.
    let (status, body) = send(
        &router,
        "POST",
        &format!("/reservations/{id}/fulfill"),
        Some("ship-1"),
        Some(json!({ "lines": [{ "sku": "SKU-A", "quantity": 1 }], "reference": "parcel-1" })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    call("POST", "/reservations/{id}/fulfill");
    apply(read_queue(&aws, &stream).await).await;
    let (status, body) = send(
        &router,
        "POST",
        &format!("/reservations/{id}/cancel"),
        Some("cancel-1"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    call("POST", "/reservations/{id}/cancel");
    let (status, body) = send(
        &router,
        "POST",
        &format!("/reservations/{id}/returns"),
        Some("return-1"),
        Some(json!({ "lines": [{ "sku": "SKU-A", "quantity": 1 }], "restock": false })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    call("POST", "/reservations/{id}/returns");
    apply(read_queue(&aws, &stream).await).await;
    let (_, settled) = send(&router, "GET", &format!("/reservations/{id}"), None, None).await;
    assert_eq!(settled["status"], "fulfilled", "{settled}");

    // Items: the strong read and the read view over snapshots.
    let skus = ["SKU-A", "SKU-B", "SKU-B@1", "SKU-B@2"].map(|name| StreamId::parse(name).unwrap());
    let mut changes = Vec::new();
    for sku in &skus {
        let events = plain.read_stream(sku, 0).await.expect("stream");
        changes.extend(events.into_iter().map(FeedChange::Appended));
    }
    assert!(Snapshotter::new(plain.clone())
        .react(&changes)
        .await
        .is_empty());
    let (status, _) = send(&router, "GET", "/items/SKU-A", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, detail) = send(&router, "GET", "/items/SKU-B?detail=buckets", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        detail["buckets"].as_array().map(Vec::len),
        Some(3),
        "{detail}"
    );
    call("GET", "/items/{sku}");
    let (status, _) = send(&router, "GET", "/items?sku=SKU-A&sku=SKU-B", None, None).await;
    assert_eq!(status, StatusCode::OK);
    call("GET", "/items");

    // The ledger, its first versions read from the archive: archived (on plain clients), then
    // deleted from the table as its time to live would.
    let sku_a = Sku::parse("SKU-A").unwrap();
    let history = plain
        .read_stream(&StreamId::of(&sku_a), 0)
        .await
        .expect("stream");
    Archive::new(Arc::new(plain_objects))
        .store_run(&StreamId::of(&sku_a), &history[..3])
        .await
        .expect("archived");
    for seq in 1..=3 {
        aws.dynamodb()
            .delete_item()
            .table_name(&names.table)
            .key("pk", AttributeValue::S("sku#SKU-A".into()))
            .key("sk", AttributeValue::N(seq.to_string()))
            .send()
            .await
            .expect("deleted");
    }
    let (status, ledger) = send(&router, "GET", "/items/SKU-A/ledger?limit=500", None, None).await;
    assert_eq!(status, StatusCode::OK, "{ledger}");
    let entries = ledger["entries"].as_array().expect("entries");
    assert_eq!(entries[0]["kind"], "received", "{ledger}");
    assert_eq!(
        entries.len(),
        history.len(),
        "every version, the archived ones too"
    );
    call("GET", "/items/{sku}/ledger");

    // The registry of locations: a store registered, then listed.
    let store = json!({ "name": "Store 5", "kind": "store", "pickup": true, "priority": 2 });
    let (status, put) = send(&router, "PUT", "/locations/store-5", None, Some(store)).await;
    assert_eq!(status, StatusCode::OK, "{put}");
    call("PUT", "/locations/{id}");
    let (status, listed) = send(&router, "GET", "/locations", None, None).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["locations"][1]["id"], "store-5", "{listed}");
    call("GET", "/locations");

    // A transfer to the store and its receipt: accepted commands.
    let transfer = json!({ "sku": "SKU-A", "from": "default", "to": "store-5", "quantity": 1 });
    let (status, shipped) = send(
        &router,
        "POST",
        "/transfers",
        Some("transfer-1"),
        Some(transfer),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{shipped}");
    call("POST", "/transfers");
    let receive = format!(
        "/transfers/{}/receive",
        shipped["transfer_id"].as_str().expect("an id")
    );
    let (status, received) = send(&router, "POST", &receive, Some("receipt-1"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{received}");
    call("POST", "/transfers/{id}/receive");

    let every: std::collections::BTreeSet<_> =
        routes().into_iter().map(|r| (r.method, r.path)).collect();
    assert_eq!(covered, every, "every route was called");
    assert_granted_by("ReservationsApiRole", &names, &log.take());
}

/// Every command on the stream so far (the test reads it as the processor's mapping would).
async fn read_queue(aws: &TestAws, stream: &str) -> Vec<Command> {
    stream_records(&aws.kinesis(), stream)
        .await
        .iter()
        .map(|record| serde_json::from_slice(record.data().as_ref()).expect("a command"))
        .collect()
}
