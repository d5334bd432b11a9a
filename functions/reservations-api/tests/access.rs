//! Who may act, through the router as the Lambda runs it: API Gateway HTTP API events (payload
//! 2.0) carrying the claims its JWT authorizer verified, from the checked-in fixtures under
//! `tests/fixtures/`, converted by `lambda_http` exactly as in Lambda. Runs on the memory store,
//! or on DynamoDB at moto with `INVENTORY_HTTP_TESTS_BACKEND=dynamodb` (`./scripts/test` runs
//! both).

use std::sync::Arc;

use axum::http::StatusCode;
use http_body_util::BodyExt;
use inventory_core::domain::{Scope, Timestamp};
use inventory_core::memory::MemoryQueue;
use inventory_core::ports::ManualClock;
use inventory_core::{Config, Inventory};
use reservations_api::{routes, Authentication, Route};
use serde_json::{json, Value};
use tower::ServiceExt;

mod support;

const STOREFRONT: &str = include_str!("fixtures/storefront-token.json");
const WAREHOUSE: &str = include_str!("fixtures/warehouse-token.json");
const NO_AUTHORIZER: &str = include_str!("fixtures/no-authorizer.json");

/// Who sends a request: each is a fixture, some with their claims changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum As {
    /// A storefront backend (`inventory/read inventory/reserve`), client `4b2kq8f1examplestorefront`.
    StoreA,
    /// Another storefront with the same scopes, client `9z8y7x6wexamplestoreb`.
    StoreB,
    /// A warehouse (`inventory/admin`), client `7m1x0c5dexamplewarehouse`.
    Warehouse,
    /// Another admin client, `3c4d5e6fexampleadmin`.
    OtherAdmin,
    /// A product page (`inventory/read` only).
    Reader,
    /// A client allowed to reserve but not to read (`inventory/reserve` only).
    ReserveOnly,
    /// No authorizer ran: a route deployed without one.
    Anonymous,
}

impl As {
    fn event(self) -> Value {
        let (text, client, scope) = match self {
            As::StoreA => (STOREFRONT, None, None),
            As::StoreB => (STOREFRONT, Some("9z8y7x6wexamplestoreb"), None),
            As::Warehouse => (WAREHOUSE, None, None),
            As::OtherAdmin => (WAREHOUSE, Some("3c4d5e6fexampleadmin"), None),
            As::Reader => (STOREFRONT, None, Some("inventory/read")),
            As::ReserveOnly => (STOREFRONT, None, Some("inventory/reserve")),
            As::Anonymous => (NO_AUTHORIZER, None, None),
        };
        let mut event: Value = serde_json::from_str(text).expect("fixture is JSON");
        let claims = &mut event["requestContext"]["authorizer"]["jwt"]["claims"];
        if let Some(client) = client {
            claims["client_id"] = json!(client);
            claims["sub"] = json!(client);
        }
        if let Some(scope) = scope {
            claims["scope"] = json!(scope);
        }
        event
    }
}

/// An API Gateway event for `method path` from the fixture of `who`, as `lambda_http` turns it
/// into a request.
fn request(
    mut event: Value,
    method: &str,
    path: &str,
    body: Option<String>,
    headers: &[(&str, &str)],
) -> lambda_http::Request {
    let (raw_path, query) = path.split_once('?').unwrap_or((path, ""));
    event["routeKey"] = json!(format!("{method} {raw_path}"));
    event["requestContext"]["routeKey"] = event["routeKey"].clone();
    event["rawPath"] = json!(raw_path);
    event["rawQueryString"] = json!(query);
    event["requestContext"]["http"]["method"] = json!(method);
    event["requestContext"]["http"]["path"] = json!(raw_path);
    event["body"] = body.map_or(Value::Null, Value::String);
    for (name, value) in headers {
        event["headers"][*name] = json!(value);
    }
    lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway event")
}

struct Api {
    inventory: Arc<Inventory>,
    queue: Arc<MemoryQueue>,
    router: axum::Router,
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl Reply {
    #[track_caller]
    fn assert(&self, status: StatusCode, code: Option<&str>) {
        assert_eq!(
            (self.status, self.body["error"].as_str()),
            (status, code),
            "{}",
            self.body
        );
    }

    #[track_caller]
    fn str(&self, field: &str) -> String {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field:?} in {}", self.body))
            .to_owned()
    }
}

impl Api {
    async fn new(config: Config) -> Self {
        let queue = Arc::new(MemoryQueue::new());
        let inventory = Arc::new(Inventory::new(
            support::event_store().await,
            queue.clone(),
            Arc::new(ManualClock::new(Timestamp::from_millis(1_764_626_400_000))),
            config,
        ));
        Self {
            router: reservations_api::router(inventory.clone(), Authentication::GatewayJwt),
            inventory,
            queue,
        }
    }

    async fn send(&self, request: lambda_http::Request) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).expect("every answer is JSON");
        assert!(!status.is_server_error(), "{status}: {body}");
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn call(&self, who: As, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.call_keyed(who, method, path, body, None).await
    }

    async fn call_keyed(
        &self,
        who: As,
        method: &str,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> Reply {
        // An admin command (every POST or PUT under /items) needs a key: a fresh one unless
        // the test names it (the warehouse fixture's own would make every receipt one).
        let fresh = uuid::Uuid::new_v4().to_string();
        let admin_command = matches!(method, "POST" | "PUT") && path.starts_with("/items/");
        let key = key.or(admin_command.then_some(fresh.as_str()));
        let mut headers = vec![("content-type", "application/json")];
        headers.extend(key.map(|key| ("idempotency-key", key)));
        let body = body.map(|body| body.to_string());
        self.send(request(who.event(), method, path, body, &headers))
            .await
    }

    async fn process(&self) {
        support::apply_queued(&self.inventory, &self.queue).await;
    }

    /// The warehouse receives `units` of `sku`, applied.
    async fn stock(&self, sku: &str, units: i64) {
        let path = format!("/items/{sku}/receipts");
        let reply = self
            .call(
                As::Warehouse,
                "POST",
                &path,
                Some(json!({ "quantity": units })),
            )
            .await;
        reply.assert(StatusCode::ACCEPTED, None);
        self.process().await;
    }

    async fn reserve(&self, who: As, sku: &str, units: i64) -> String {
        let body = json!({ "lines": [{ "sku": sku, "quantity": units }] });
        let reply = self.call(who, "POST", "/reservations", Some(body)).await;
        reply.assert(StatusCode::CREATED, None);
        reply.str("reservation_id")
    }

    async fn reserved(&self, sku: &str) -> i64 {
        let reply = self
            .call(As::Warehouse, "GET", &format!("/items/{sku}"), None)
            .await;
        reply.assert(StatusCode::OK, None);
        reply.body["reserved"].as_i64().unwrap()
    }
}

/// A concrete request for `route`: its path with well-formed parameters and a body of the right
/// shape where it takes one.
fn example(route: &Route) -> (String, Option<Value>) {
    let path = route
        .path
        .replace("{sku}", "SKU-A")
        .replace("{id}", "SKU-A~1~00000000deadbeef");
    let path = match (route.path.as_str(), route.method) {
        ("/items", _) => "/items?sku=SKU-A".to_owned(),
        ("/commands/{id}", _) => "/commands/0b8f3c52-8d0b-4f5e-9a57-4e4a8c1f6d2e".to_owned(),
        ("/locations/{id}", _) => "/locations/store-5".to_owned(),
        ("/transfers/{id}/receive", _) => {
            "/transfers/SKU-A~default~store-5~00000000deadbeef/receive".to_owned()
        }
        _ => path,
    };
    let body = match route.path.as_str() {
        "/items/{sku}/receipts" => Some(json!({ "quantity": 1 })),
        "/items/{sku}/adjustments" => Some(json!({ "delta": 1, "reason": "count" })),
        "/items/{sku}/moves" => Some(
            json!({ "from": "available", "to": "damaged", "quantity": 1, "reason": "damaged" }),
        ),
        "/items/{sku}/on-hand" => Some(json!({ "quantity": 1, "reason": "cycle_count" })),
        "/items/{sku}/buckets" => Some(json!({ "count": 4 })),
        "/items/{sku}/low-stock" => Some(json!({ "below": 3 })),
        "/locations/{id}" => Some(json!({ "name": "Store 5", "kind": "store", "pickup": true })),
        "/transfers" => {
            Some(json!({ "sku": "SKU-A", "from": "default", "to": "store-5", "quantity": 1 }))
        }
        "/reservations" => Some(json!({ "lines": [{ "sku": "SKU-A", "quantity": 1 }] })),
        "/reservations/{id}/extend" => Some(json!({ "ttl_seconds": 600 })),
        "/reservations/{id}/returns" => {
            Some(json!({ "lines": [{ "sku": "SKU-A", "quantity": 1 }], "restock": true }))
        }
        _ => None,
    };
    (path, body)
}

#[tokio::test]
async fn every_route_is_declared_with_a_scope_and_they_are_the_twenty_two_of_the_api() {
    let routes = routes();
    let declared: Vec<(&str, &str, Scope)> = routes
        .iter()
        .map(|route| (route.method, route.path.as_str(), route.scope))
        .collect();
    assert_eq!(
        declared,
        vec![
            ("GET", "/items", Scope::Read),
            ("GET", "/items/{sku}", Scope::Read),
            ("GET", "/items/{sku}/ledger", Scope::Admin),
            ("POST", "/items/{sku}/receipts", Scope::Admin),
            ("POST", "/items/{sku}/adjustments", Scope::Admin),
            ("POST", "/items/{sku}/moves", Scope::Admin),
            ("PUT", "/items/{sku}/on-hand", Scope::Admin),
            ("PUT", "/items/{sku}/buckets", Scope::Admin),
            ("PUT", "/items/{sku}/low-stock", Scope::Admin),
            ("POST", "/transfers", Scope::Admin),
            ("POST", "/transfers/{id}/receive", Scope::Admin),
            ("GET", "/locations", Scope::Admin),
            ("PUT", "/locations/{id}", Scope::Admin),
            ("POST", "/reservations", Scope::Reserve),
            ("GET", "/reservations/{id}", Scope::Reserve),
            ("DELETE", "/reservations/{id}", Scope::Reserve),
            ("POST", "/reservations/{id}/extend", Scope::Reserve),
            ("POST", "/reservations/{id}/checkout", Scope::Reserve),
            ("POST", "/reservations/{id}/fulfill", Scope::Reserve),
            ("POST", "/reservations/{id}/cancel", Scope::Reserve),
            ("POST", "/reservations/{id}/returns", Scope::Reserve),
            ("GET", "/commands/{id}", Scope::Reserve),
        ]
    );
}

#[tokio::test]
async fn every_route_without_a_verified_token_is_401_unauthenticated_with_a_bearer_challenge() {
    let api = Api::new(Config::default()).await;
    for route in routes() {
        let (path, body) = example(&route);
        let reply = api.call(As::Anonymous, route.method, &path, body).await;
        reply.assert(StatusCode::UNAUTHORIZED, Some("unauthenticated"));
        assert_eq!(
            reply.headers.get("www-authenticate").map(|v| v.as_bytes()),
            Some(&b"Bearer"[..]),
            "{route:?}"
        );
    }
    assert_eq!(api.queue.try_receive(100).len(), 0, "nothing was queued");
}

#[tokio::test]
async fn every_route_refuses_a_token_without_its_scope_with_403_forbidden_naming_the_scope() {
    let api = Api::new(Config::default()).await;
    for route in routes() {
        let lacking = match route.scope {
            Scope::Read => As::ReserveOnly,
            Scope::Reserve => As::Reader,
            Scope::Admin => As::StoreA,
        };
        let (path, body) = example(&route);
        let reply = api.call(lacking, route.method, &path, body).await;
        reply.assert(StatusCode::FORBIDDEN, Some("forbidden"));
        assert_eq!(reply.body["scope"], json!(route.scope.name()), "{route:?}");
    }
    assert_eq!(api.queue.try_receive(100).len(), 0, "nothing was queued");
}

#[tokio::test]
async fn an_admin_token_may_use_every_route() {
    let api = Api::new(Config::default()).await;
    for route in routes() {
        let (path, body) = example(&route);
        let reply = api.call(As::Warehouse, route.method, &path, body).await;
        assert!(
            ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&reply.status),
            "{route:?}: {reply:?}"
        );
    }
}

#[tokio::test]
async fn another_client_gets_404_on_every_route_of_a_reservation_and_changes_nothing() {
    let api = Api::new(Config::default()).await;
    api.stock("SKU-A", 10).await;
    let id = api.reserve(As::StoreA, "SKU-A", 1).await;
    let at = |suffix: &str| format!("/reservations/{id}{suffix}");

    let attempts = [
        ("GET", at(""), None),
        ("POST", at("/extend"), Some(json!({ "ttl_seconds": 3600 }))),
        ("POST", at("/checkout"), None),
        ("DELETE", at(""), None),
    ];
    for (method, path, body) in &attempts {
        let reply = api.call(As::StoreB, method, path, body.clone()).await;
        reply.assert(StatusCode::NOT_FOUND, Some("reservation_not_found"));
    }
    assert_eq!(api.queue.try_receive(100).len(), 0, "nothing was queued");
    assert_eq!(api.reserved("SKU-A").await, 1);

    // Its owner and an admin see it; an admin may release it.
    let mine = api.call(As::StoreA, "GET", &at(""), None).await;
    mine.assert(StatusCode::OK, None);
    assert_eq!(mine.body["status"], "active");
    api.call(As::Warehouse, "GET", &at(""), None)
        .await
        .assert(StatusCode::OK, None);
    api.call(As::Warehouse, "DELETE", &at(""), None)
        .await
        .assert(StatusCode::ACCEPTED, None);
    api.process().await;
    assert_eq!(api.reserved("SKU-A").await, 0);
}

#[tokio::test]
async fn its_owner_extends_and_checks_out_and_only_the_issuer_or_an_admin_reads_the_command() {
    let api = Api::new(Config::default()).await;
    api.stock("SKU-A", 10).await;
    let id = api.reserve(As::StoreA, "SKU-A", 2).await;
    api.call(
        As::StoreA,
        "POST",
        &format!("/reservations/{id}/extend"),
        Some(json!({ "ttl_seconds": 3600 })),
    )
    .await
    .assert(StatusCode::OK, None);
    let checkout = api
        .call(
            As::StoreA,
            "POST",
            &format!("/reservations/{id}/checkout"),
            None,
        )
        .await;
    checkout.assert(StatusCode::ACCEPTED, None);
    api.process().await;

    let command = format!("/commands/{}", checkout.str("command_id"));
    api.call(As::StoreB, "GET", &command, None)
        .await
        .assert(StatusCode::NOT_FOUND, Some("command_not_found"));
    for who in [As::StoreA, As::Warehouse] {
        let reply = api.call(who, "GET", &command, None).await;
        reply.assert(StatusCode::OK, None);
        assert_eq!(reply.body["status"], "applied");
    }
}

#[tokio::test]
async fn two_storefronts_using_the_same_idempotency_key_never_collide() {
    let api = Api::new(Config::default()).await;
    api.stock("SKU-A", 10).await;
    let cart = |units: i64| Some(json!({ "lines": [{ "sku": "SKU-A", "quantity": units }] }));
    let key = Some("cart-1");

    let a = api
        .call_keyed(As::StoreA, "POST", "/reservations", cart(1), key)
        .await;
    a.assert(StatusCode::CREATED, None);
    let b = api
        .call_keyed(As::StoreB, "POST", "/reservations", cart(2), key)
        .await;
    b.assert(StatusCode::CREATED, None);
    assert_ne!(a.str("reservation_id"), b.str("reservation_id"));

    // Each retry answers its own client's reservation.
    for (who, first, units) in [(As::StoreA, &a, 1), (As::StoreB, &b, 2)] {
        let again = api
            .call_keyed(who, "POST", "/reservations", cart(units), key)
            .await;
        again.assert(StatusCode::CREATED, None);
        assert_eq!(again.str("reservation_id"), first.str("reservation_id"));
    }
    assert_eq!(api.reserved("SKU-A").await, 3);
}

#[tokio::test]
async fn two_admins_using_the_same_idempotency_key_issue_two_commands() {
    let api = Api::new(Config::default()).await;
    let receipt = |units: i64| Some(json!({ "quantity": units }));
    let path = "/items/SKU-A/receipts";
    let first = api
        .call_keyed(As::Warehouse, "POST", path, receipt(5), Some("delivery-9"))
        .await;
    first.assert(StatusCode::ACCEPTED, None);
    let second = api
        .call_keyed(As::OtherAdmin, "POST", path, receipt(7), Some("delivery-9"))
        .await;
    second.assert(StatusCode::ACCEPTED, None);
    assert_ne!(first.str("command_id"), second.str("command_id"));
    api.process().await;
    let item = api.call(As::Warehouse, "GET", "/items/SKU-A", None).await;
    assert_eq!(item.body["on_hand"], 12);
}

#[tokio::test]
async fn scopes_are_read_from_the_authorizers_list_or_from_the_scope_or_scp_claim() {
    let api = Api::new(Config::default()).await;
    api.stock("SKU-A", 10).await;
    let body = Some(json!({ "lines": [{ "sku": "SKU-A", "quantity": 1 }] }).to_string());
    let json = [("content-type", "application/json")];

    let mut listed = As::StoreA.event();
    let jwt = &mut listed["requestContext"]["authorizer"]["jwt"];
    jwt["claims"].as_object_mut().unwrap().remove("scope");
    jwt["scopes"] = json!(["inventory/reserve"]);
    api.send(request(listed, "POST", "/reservations", body, &json))
        .await
        .assert(StatusCode::CREATED, None);

    let mut okta = As::StoreA.event();
    let claims = okta["requestContext"]["authorizer"]["jwt"]["claims"]
        .as_object_mut()
        .unwrap();
    claims.remove("scope");
    claims.insert("scp".into(), json!("[inventory/read]"));
    api.send(request(okta, "GET", "/items/SKU-A", None, &[]))
        .await
        .assert(StatusCode::OK, None);
}

#[tokio::test]
async fn a_token_naming_no_usable_client_is_401_unauthenticated() {
    let api = Api::new(Config::default()).await;
    for client in [None, Some("a#b")] {
        let mut event = As::StoreA.event();
        let claims = event["requestContext"]["authorizer"]["jwt"]["claims"]
            .as_object_mut()
            .unwrap();
        for name in ["client_id", "sub"] {
            match client {
                None => claims.remove(name),
                Some(client) => claims.insert(name.into(), json!(client)),
            };
        }
        api.send(request(event, "GET", "/items/SKU-A", None, &[]))
            .await
            .assert(StatusCode::UNAUTHORIZED, Some("unauthenticated"));
    }
}

#[tokio::test]
async fn with_public_item_reads_the_two_product_page_routes_need_no_token_and_nothing_else_opens() {
    let config = Config {
        public_item_reads: true,
        ..Config::default()
    };
    let api = Api::new(config).await;
    api.stock("SKU-A", 4).await;
    for path in ["/items/SKU-A", "/items?sku=SKU-A"] {
        api.call(As::Anonymous, "GET", path, None)
            .await
            .assert(StatusCode::OK, None);
    }
    for route in routes().iter().filter(|route| !route.product_page) {
        let (path, body) = example(route);
        api.call(As::Anonymous, route.method, &path, body)
            .await
            .assert(StatusCode::UNAUTHORIZED, Some("unauthenticated"));
    }
}

#[tokio::test]
async fn an_items_buckets_are_shown_to_admins_only_even_where_item_reads_are_public() {
    for public_item_reads in [false, true] {
        let config = Config {
            public_item_reads,
            ..Config::default()
        };
        let api = Api::new(config).await;
        api.stock("SKU-A", 4).await;
        let detail = "/items/SKU-A?detail=buckets";
        let shown = api.call(As::Warehouse, "GET", detail, None).await;
        shown.assert(StatusCode::OK, None);
        assert_eq!(shown.body["buckets"][0]["available"], 4, "{}", shown.body);
        for who in [As::StoreA, As::Reader] {
            let refused = api.call(who, "GET", detail, None).await;
            refused.assert(StatusCode::FORBIDDEN, Some("forbidden"));
            assert_eq!(refused.body["scope"], "inventory/admin");
        }
        let anonymous = api.call(As::Anonymous, "GET", detail, None).await;
        let expected = if public_item_reads {
            (StatusCode::FORBIDDEN, Some("forbidden"))
        } else {
            (StatusCode::UNAUTHORIZED, Some("unauthenticated"))
        };
        anonymous.assert(expected.0, expected.1);
        let plain = api.call(As::Reader, "GET", "/items/SKU-A", None).await;
        plain.assert(StatusCode::OK, None);
        assert!(plain.body.get("buckets").is_none(), "{}", plain.body);
    }
}

#[tokio::test]
async fn a_body_over_64_kib_is_413_behind_api_gateway_on_every_route_that_takes_a_body() {
    let api = Api::new(Config::default()).await;
    api.stock("SKU-A", 4).await;
    let padding = "x".repeat(64 * 1024);
    let big = json!({ "lines": [{ "sku": "SKU-A", "quantity": 1 }], "pad": padding }).to_string();
    let json = [("content-type", "application/json")];

    let plain = request(
        As::StoreA.event(),
        "POST",
        "/reservations",
        Some(big.clone()),
        &json,
    );
    api.send(plain)
        .await
        .assert(StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"));

    use base64::Engine as _;
    let mut encoded = As::StoreA.event();
    encoded["isBase64Encoded"] = json!(true);
    let body = base64::engine::general_purpose::STANDARD.encode(&big);
    api.send(request(encoded, "POST", "/reservations", Some(body), &json))
        .await
        .assert(StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"));

    // A route that reads no body refuses one declared too large all the same.
    let id = api.reserve(As::StoreA, "SKU-A", 1).await;
    let length = big.len().to_string();
    let checkout = request(
        As::StoreA.event(),
        "POST",
        &format!("/reservations/{id}/checkout"),
        Some(big),
        &[("content-length", &length)],
    );
    api.send(checkout)
        .await
        .assert(StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"));
    assert_eq!(api.queue.try_receive(100).len(), 0, "nothing was queued");
}
