//! The OpenAPI document: the checked-in `docs/openapi.json` is the one the code makes, the API
//! serves it to anyone, and it describes every route with its scopes and the error codes the
//! route is declared with. (Whether the running service keeps to it is fuzzed by schemathesis in
//! `./scripts/test`: `scripts/fuzz-api`.)

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use inventory_core::memory::{MemoryQueue, MemoryStore};
use inventory_core::ports::SystemClock;
use inventory_core::{Config, Inventory};
use reservations_api::error::error_code;
use reservations_api::{openapi_json, routes, Authentication, OPENAPI_PATH};
use serde_json::{json, Value};
use tower::ServiceExt;

const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

fn document() -> Value {
    serde_json::from_str(&openapi_json()).expect("the document is JSON")
}

/// Whether the operation's answer of `status` lists the error `code`.
fn lists(operation: &Value, status: &str, code: &str) -> bool {
    operation["responses"][status]["content"]["application/json"]["schema"]["allOf"][1]
        ["properties"]["error"]["enum"]
        .as_array()
        .is_some_and(|codes| codes.contains(&json!(code)))
}

#[test]
fn the_checked_in_document_is_the_one_the_code_makes() {
    let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap_or_default();
    assert!(
        checked_in == format!("{}\n", openapi_json()),
        "docs/openapi.json differs from the API's document: run\n  \
         cargo run -q -p inventory-cli -- openapi > docs/openapi.json\nand commit it"
    );
}

#[tokio::test]
async fn the_api_serves_the_document_to_a_caller_without_a_token() {
    let tokens = r#"{"tokens": [{"token": "a-long-enough-token", "client_id": "c", "scopes": ["inventory/admin"]}]}"#;
    let inventory = Arc::new(Inventory::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryQueue::new()),
        Arc::new(SystemClock),
        Config::default(),
    ));
    let router = reservations_api::router(
        inventory,
        Authentication::from_token_file(tokens).expect("tokens"),
    );
    let response = router
        .oneshot(
            Request::get(OPENAPI_PATH)
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("the router is infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(String::from_utf8_lossy(&body), openapi_json());
}

#[test]
fn the_document_is_openapi_3_1_and_every_reference_in_it_resolves() {
    let document = document();
    assert_eq!(document["openapi"], "3.1.0");
    let mut references = Vec::new();
    collect_references(&document, &mut references);
    assert!(!references.is_empty());
    for reference in references {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{reference} is not local"));
        assert!(
            document.pointer(pointer).is_some(),
            "{reference} points at nothing"
        );
    }
}

fn collect_references(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                into.push(reference.clone());
            }
            map.values()
                .for_each(|value| collect_references(value, into));
        }
        Value::Array(items) => items
            .iter()
            .for_each(|value| collect_references(value, into)),
        _ => {}
    }
}

#[test]
fn every_route_is_described_with_the_scopes_that_grant_it_and_each_of_its_error_codes() {
    let document = document();
    let mut described = 0;
    for route in routes() {
        let operation = &document["paths"][&route.path][route.method.to_lowercase()];
        assert!(operation.is_object(), "{} {}", route.method, route.path);
        described += 1;
        let security: Vec<Value> = route
            .scope
            .granted_by()
            .iter()
            .map(|scope| json!({ "bearer": [scope.name()] }))
            .collect();
        assert_eq!(operation["security"], json!(security), "{}", route.path);
        let mut codes: Vec<&str> = route.errors.to_vec();
        codes.extend(["unauthenticated", "forbidden", "unavailable", "internal"]);
        for code in codes {
            let status = error_code(code)
                .unwrap_or_else(|| panic!("{code} is not in ERROR_CODES"))
                .status
                .as_u16()
                .to_string();
            assert!(
                lists(operation, &status, code),
                "{} {}: {status} does not list {code}",
                route.method,
                route.path
            );
        }
        let success = operation["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .filter(|status| status.starts_with('2'))
            .count();
        assert_eq!(
            success, 1,
            "{} {}: one success answer",
            route.method, route.path
        );
    }
    let operations: usize = document["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| item.as_object().map_or(0, |item| item.len()))
        .sum();
    assert_eq!(
        operations, described,
        "the document describes the routes and nothing else"
    );
}

#[test]
fn every_body_route_describes_the_json_body_errors_and_every_idempotent_route_its_key() {
    let document = document();
    for route in routes() {
        let operation = &document["paths"][&route.path][route.method.to_lowercase()];
        if operation["requestBody"].is_object() {
            for (status, code) in [
                ("400", "malformed_json"),
                ("400", "invalid_body"),
                ("415", "unsupported_media_type"),
                ("413", "payload_too_large"),
            ] {
                assert!(
                    lists(operation, status, code),
                    "{} {}: {code}",
                    route.method,
                    route.path
                );
            }
        }
        let takes_key = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|parameter| parameter["name"] == "Idempotency-Key" && parameter["in"] == "header");
        // An extension sets a lifetime from now, and a location is put whole: sent again,
        // either leaves what the first did.
        let changes_by_command = matches!(route.method, "POST" | "PUT" | "DELETE")
            && route.path != "/reservations/{id}/extend"
            && route.path != "/locations/{id}";
        assert_eq!(
            takes_key, changes_by_command,
            "{} {}",
            route.method, route.path
        );
    }
}
