//! `inventory dev` as a real process over real HTTP: the binary is started on a free port, and a
//! flash sale of 300 concurrent single-unit reservations races for 100 units; then the read view
//! (snapshots kept by the in-process snapshotter) catches up, and on moto the in-process archiver
//! fills the archive bucket. With `--tokens` it asks every request for a bearer token of its
//! token file and applies the scopes and ownership rules of the deployed API. `inventory smoke`
//! passes against it on both backends, with and without tokens.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use futures::future::join_all;
use inventory_core::aws::TestAws;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// How long the binary may take to print its address (a cold start can be slow on a busy machine).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a queued command may take to be applied (the processor applies it within a second).
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on any single HTTP exchange, so a stuck server fails the test instead of hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the reactions may take to catch up with the sale (the read view, the archive).
const REACTION_TIMEOUT: Duration = Duration::from_secs(20);

const LISTENING_PREFIX: &str = "inventory dev listening on ";

/// The kind of the archive bucket of [`dev_on_moto`], named by [`TestAws::name`].
const ARCHIVE: &str = "archive";

/// The tests that load moto take turns: moto serves one request at a time (its DynamoDB backend
/// is serialised), so a sale beside four busy processes would measure their load, not the sale.
static MOTO_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The running `inventory dev` child. Dropping it kills the process (by its PID, through its
/// `Child` handle) and reaps it, also when an assertion fails half way through a test.
struct DevServer {
    child: Child,
    base_url: String,
    stderr: Arc<Mutex<String>>,
}

impl DevServer {
    /// Starts `inventory dev --port 0 [extra args]` and waits until it says where it listens.
    fn start(extra_args: &[&str]) -> Self {
        Self::start_with(extra_args, &[])
    }

    /// [`DevServer::start`] with these environment variables set (after the defaults are
    /// restored).
    fn start_with(extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_inventory"));
        command
            .args(["dev", "--port", "0"])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("NO_COLOR", "1");
        // The scenario relies on the default settings, whatever the caller's environment says.
        for name in [
            "INVENTORY_PORT",
            "INVENTORY_RELEASE_GRACE_SECONDS",
            "INVENTORY_CONTENTION_BUDGET_MS",
            "INVENTORY_MAX_ATTEMPTS",
            "INVENTORY_TABLE",
            "INVENTORY_COMMAND_STREAM",
            "INVENTORY_ARCHIVE_BUCKET",
            "INVENTORY_LIVE_RETENTION_SECONDS",
            "INVENTORY_SWEEP_INTERVAL_SECONDS",
            "INVENTORY_DEV_TOKENS",
        ] {
            command.env_remove(name);
        }
        command.envs(env.iter().copied());
        let mut child = command.spawn().expect("`inventory dev` should start");

        // Drain stderr for the whole life of the child so its logs never block it, and keep them
        // to show if the test fails.
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut child_stderr = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(read @ 1..) = child_stderr.read(&mut buffer) {
                let text = String::from_utf8_lossy(&buffer[..read]);
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&text);
            }
        });

        // Read stdout on a thread too, so waiting for the address line can time out; after the
        // line is found, keep draining.
        let stdout = child.stdout.take().expect("stdout is piped");
        let (address_tx, address_rx) = mpsc::channel();
        thread::spawn(move || {
            let mut address_tx = Some(address_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix(LISTENING_PREFIX) {
                    if let Some(tx) = address_tx.take() {
                        let _ = tx.send(url.trim().to_owned());
                    }
                }
            }
        });

        // From here on the guard owns the child: any panic below still kills it.
        let mut server = Self {
            child,
            base_url: String::new(),
            stderr,
        };
        match address_rx.recv_timeout(START_TIMEOUT) {
            Ok(url) => {
                assert!(
                    url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
                    "unexpected listening address {url:?}"
                );
                server.base_url = url;
                server
            }
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "`inventory dev` did not print {LISTENING_PREFIX:?} within {START_TIMEOUT:?}"
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = server.child.wait().ok();
                panic!(
                    "`inventory dev` closed its stdout before listening (exit status {status:?})"
                )
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The first line it logged (waiting briefly: stderr is drained on another thread).
    fn first_log_line(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let logs = self
                .stderr
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some((line, _)) = logs.split_once('\n') {
                return line.to_owned();
            }
            assert!(Instant::now() < deadline, "nothing logged: {logs:?}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let logs = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!(
                "--- stderr of `inventory dev` (pid {}) ---\n{logs}",
                self.child.id()
            );
        }
    }
}

async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response
        .text()
        .await
        .expect("response body should be readable");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("{status} body is not JSON ({err}): {text:?}"));
    (status, body)
}

/// Polls a queued command until it is applied, failing if it is rejected or takes too long.
async fn wait_until_applied(client: &reqwest::Client, server: &DevServer, command_id: &str) {
    wait_until_applied_within(client, server, command_id, APPLY_TIMEOUT).await;
}

/// [`wait_until_applied`], allowing `timeout`.
async fn wait_until_applied_within(
    client: &reqwest::Client,
    server: &DevServer,
    command_id: &str,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let response = client
            .get(server.url(&format!("/commands/{command_id}")))
            .send()
            .await
            .expect("GET /commands/{id} should answer");
        let (status, body) = json_of(response).await;
        assert_eq!(status, StatusCode::OK, "GET /commands/{command_id}: {body}");
        match body["status"].as_str() {
            Some("applied") => return,
            Some("pending") => {}
            _ => panic!("command {command_id} did not apply: {body}"),
        }
        assert!(
            Instant::now() < deadline,
            "command {command_id} still pending after {timeout:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_concurrent_shoppers_get_exactly_the_hundred_units_in_stock_and_no_more() {
    let server = DevServer::start(&[]);
    let first = server.first_log_line();
    assert!(
        first.contains("open: no authentication"),
        "it says it runs open first: {first:?}"
    );
    let client = http_client();
    flash_sale(&client, &server).await;
    read_view_catches_up(&client, &server, "FLASH-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_dynamodb_and_kinesis_three_hundred_concurrent_shoppers_get_exactly_the_hundred_units() {
    let _turn = MOTO_TURN.lock().await;
    let aws = TestAws::new().await;
    let server = dev_on_moto(&aws);
    let client = http_client();
    flash_sale(&client, &server).await;
    let item = read_view_catches_up(&client, &server, "FLASH-1").await;
    let version = item["version"]
        .as_u64()
        .unwrap_or_else(|| panic!("item without a version: {item}"));
    archive_receives(&aws, "FLASH-1", version).await;
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("http client")
}

async fn get_json(client: &reqwest::Client, server: &DevServer, path: &str) -> Value {
    let response = client
        .get(server.url(path))
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {path} should answer: {err}"));
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body
}

/// The read view (`GET /items?sku=`, snapshots kept by the in-process snapshotter, eventually
/// consistent) comes to show what the stream says (`GET /items/{sku}`, strongly consistent).
/// Returns the item.
async fn read_view_catches_up(client: &reqwest::Client, server: &DevServer, sku: &str) -> Value {
    let current = get_json(client, server, &format!("/items/{sku}")).await;
    let started = Instant::now();
    loop {
        let view = get_json(client, server, &format!("/items?sku={sku}")).await;
        let shown = view["items"]
            .as_array()
            .and_then(|items| items.iter().find(|item| item["sku"] == sku));
        if shown == Some(&current) {
            eprintln!("read view of {sku} caught up in {:?}", started.elapsed());
            return current;
        }
        assert!(
            started.elapsed() < REACTION_TIMEOUT,
            "the read view of {sku} still shows {view} after {REACTION_TIMEOUT:?}, not {current}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The in-process archiver of [`dev_on_moto`] writes the events of `sku` (1 to `version`, and
/// nothing else) to its bucket, under `events/sku={SKU}/`.
async fn archive_receives(aws: &TestAws, sku: &str, version: u64) {
    let bucket = &aws.name(ARCHIVE);
    let s3 = aws.s3();
    let prefix = format!("events/sku={sku}/");
    let started = Instant::now();
    loop {
        let listed = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(&prefix)
            .send()
            .await
            .unwrap_or_else(|err| panic!("listing {bucket}/{prefix}: {err:?}"));
        let keys: Vec<String> = listed
            .contents()
            .iter()
            .filter_map(|object| object.key().map(str::to_owned))
            .collect();
        let mut archived = std::collections::BTreeSet::new();
        for key in &keys {
            let object = s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap_or_else(|err| panic!("reading {key}: {err:?}"));
            let bytes = object
                .body
                .collect()
                .await
                .unwrap_or_else(|err| panic!("reading {key}: {err:?}"))
                .into_bytes();
            let events = inventory_core::archive::decode(&bytes)
                .unwrap_or_else(|err| panic!("{key} is not an archive object: {err}"));
            archived.extend(events.into_iter().map(|event| event.seq));
        }
        if !keys.is_empty() && archived == (1..=version).collect() {
            eprintln!(
                "archive of {sku}: events 1..={version} in {} objects after {:?}",
                keys.len(),
                started.elapsed()
            );
            return;
        }
        assert!(
            started.elapsed() < REACTION_TIMEOUT,
            "after {REACTION_TIMEOUT:?} the archive holds {} events of {sku} in {} objects \
             ({keys:?}), not 1..={version}",
            archived.len(),
            keys.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// 100 units received, then 300 single-unit reservations in flight together: exactly 100 are
/// created, the other 200 are refused as insufficient stock, nothing else.
async fn flash_sale(client: &reqwest::Client, server: &DevServer) {
    // Receive 100 units and wait for the processor to apply the receipt.
    let response = client
        .post(server.url("/items/FLASH-1/receipts"))
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&json!({ "quantity": 100 }))
        .send()
        .await
        .expect("POST /items/FLASH-1/receipts should answer");
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::ACCEPTED, "receipt: {body}");
    let command_id = body["command_id"]
        .as_str()
        .unwrap_or_else(|| panic!("receipt answer has no command_id: {body}"))
        .to_owned();
    wait_until_applied(client, server, &command_id).await;

    // 300 single-unit reservations, all in flight together.
    let started = Instant::now();
    let answers = join_all((0..300).map(|_| {
        let request = client
            .post(server.url("/reservations"))
            .json(&json!({ "lines": [{ "sku": "FLASH-1", "quantity": 1 }] }))
            .send();
        async move { json_of(request.await.expect("POST /reservations should answer")).await }
    }))
    .await;
    let elapsed = started.elapsed();

    let created: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .map(|(_, body)| body)
        .collect();
    let sold_out = answers
        .iter()
        .filter(|(status, body)| {
            *status == StatusCode::CONFLICT && body["error"] == "insufficient_stock"
        })
        .count();
    let others: Vec<String> = answers
        .iter()
        .filter(|(status, body)| {
            *status != StatusCode::CREATED
                && !(*status == StatusCode::CONFLICT && body["error"] == "insufficient_stock")
        })
        .map(|(status, body)| format!("{status} {body}"))
        .collect();
    let summary = format!(
        "{} created, {sold_out} insufficient_stock, {} other, in {elapsed:?}; other answers: {:?}",
        created.len(),
        others.len(),
        others.iter().take(5).collect::<Vec<_>>()
    );
    eprintln!("flash sale: {summary}");
    assert!(others.is_empty(), "unexpected answers: {summary}");
    assert_eq!(created.len(), 100, "{summary}");
    assert_eq!(sold_out, 200, "{summary}");

    let mut reservation_ids: Vec<&str> = created
        .iter()
        .map(|body| {
            body["reservation_id"]
                .as_str()
                .unwrap_or_else(|| panic!("201 without reservation_id: {body}"))
        })
        .collect();
    reservation_ids.sort_unstable();
    reservation_ids.dedup();
    assert_eq!(
        reservation_ids.len(),
        100,
        "reservation ids must be distinct"
    );

    // The item shows every unit held and none left.
    let response = client
        .get(server.url("/items/FLASH-1"))
        .send()
        .await
        .expect("GET /items/FLASH-1 should answer");
    let (status, item) = json_of(response).await;
    assert_eq!(status, StatusCode::OK, "GET /items/FLASH-1: {item}");
    assert_eq!(item["on_hand"], 100, "{item}");
    assert_eq!(item["reserved"], 100, "{item}");
    assert_eq!(item["available"], 0, "{item}");
}

/// A token file in the temporary directory, removed when dropped.
struct TokenFile(std::path::PathBuf);

impl TokenFile {
    fn new(text: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("tokens-{}.json", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, text).expect("token file written");
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("UTF-8 path")
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const STORE_A: &str = "storefront-a-7d1f0c9b2e4a";
const STORE_B: &str = "storefront-b-3e8a1f6c0d2b";
const WAREHOUSE: &str = "warehouse-5b2c9e7a1f3d";

async fn call(
    client: &reqwest::Client,
    server: &DevServer,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let admin_command = matches!(method, reqwest::Method::POST | reqwest::Method::PUT)
        && path.starts_with("/items/");
    let mut request = client.request(method, server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if admin_command {
        // Every POST or PUT under /items is an admin command, which needs a key of its own.
        request = request.header("Idempotency-Key", uuid::Uuid::new_v4().to_string());
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the server answers");
    let headers = response.headers().clone();
    let (status, body) = json_of(response).await;
    (status, headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_every_request_needs_a_token_of_the_file_with_the_scope_and_owner_it_needs() {
    let tokens = TokenFile::new(
        &json!({ "tokens": [
            { "token": STORE_A, "client_id": "storefront-a", "scopes": ["inventory/read", "inventory/reserve"] },
            { "token": STORE_B, "client_id": "storefront-b", "scopes": ["inventory/reserve"] },
            { "token": WAREHOUSE, "client_id": "warehouse", "scopes": ["inventory/admin"] }
        ]})
        .to_string(),
    );
    let server = DevServer::start(&["--tokens", tokens.path()]);
    let first = server.first_log_line();
    assert!(first.contains("bearer tokens required"), "{first:?}");
    let client = http_client();
    use reqwest::Method;

    for token in [None, Some("not-a-token-of-the-file")] {
        let (status, headers, body) =
            call(&client, &server, Method::GET, "/items/SKU-1", token, None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthenticated")),
            "{body}"
        );
        assert_eq!(
            headers.get("www-authenticate").map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );
    }
    let receipt = Some(json!({ "quantity": 5 }));
    let (status, _, body) = call(
        &client,
        &server,
        Method::POST,
        "/items/SKU-1/receipts",
        Some(STORE_A),
        receipt.clone(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden")),
        "{body}"
    );
    assert_eq!(body["scope"], "inventory/admin");

    let (status, _, body) = call(
        &client,
        &server,
        Method::POST,
        "/items/SKU-1/receipts",
        Some(WAREHOUSE),
        receipt,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let command = body["command_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + APPLY_TIMEOUT;
    loop {
        let path = format!("/commands/{command}");
        let (status, _, body) =
            call(&client, &server, Method::GET, &path, Some(WAREHOUSE), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["status"] == "applied" {
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let cart = Some(json!({ "lines": [{ "sku": "SKU-1", "quantity": 2 }] }));
    let (status, _, body) = call(
        &client,
        &server,
        Method::POST,
        "/reservations",
        Some(STORE_A),
        cart,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let path = format!("/reservations/{}", body["reservation_id"].as_str().unwrap());
    let (status, _, body) = call(&client, &server, Method::GET, &path, Some(STORE_B), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("reservation_not_found"))
    );
    let (status, _, body) =
        call(&client, &server, Method::DELETE, &path, Some(STORE_B), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("reservation_not_found"))
    );
    for owner_or_admin in [STORE_A, WAREHOUSE] {
        let (status, _, body) = call(
            &client,
            &server,
            Method::GET,
            &path,
            Some(owner_or_admin),
            None,
        )
        .await;
        assert_eq!(
            (status, body["status"].as_str()),
            (StatusCode::OK, Some("active")),
            "{body}"
        );
    }
    // storefront-b may reserve but not read items.
    let (status, _, body) = call(
        &client,
        &server,
        Method::GET,
        "/items/SKU-1",
        Some(STORE_B),
        None,
    )
    .await;
    assert_eq!(
        (status, body["scope"].as_str()),
        (StatusCode::FORBIDDEN, Some("inventory/read"))
    );
    let (status, _, item) = call(
        &client,
        &server,
        Method::GET,
        "/items/SKU-1",
        Some(STORE_A),
        None,
    )
    .await;
    assert_eq!(
        (status, item["reserved"].as_i64()),
        (StatusCode::OK, Some(2)),
        "{item}"
    );
}

#[test]
fn a_malformed_token_file_stops_the_start_with_what_is_wrong_and_where() {
    let cases = [
        (json!({ "tokens": [{ "token": STORE_A, "client_id": "a", "scopes": ["inventory/write"] }] }).to_string(),
            "tokens[0].scopes[0]: unknown scope \"inventory/write\""),
        (json!({ "tokens": [{ "token": "short", "client_id": "a", "scopes": ["inventory/read"] }] }).to_string(),
            "tokens[0].token must be at least 16"),
        ("{\"tokens\": [".to_owned(), "is malformed"),
    ];
    for (text, expected) in cases {
        let tokens = TokenFile::new(&text);
        let output = Command::new(env!("CARGO_BIN_EXE_inventory"))
            .args(["dev", "--port", "0", "--tokens", tokens.path()])
            .env_remove("INVENTORY_DEV_TOKENS")
            .stdin(Stdio::null())
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "it must not start: {stderr}");
        assert!(
            stderr.contains("the token file") && stderr.contains(expected),
            "{expected:?} not in {stderr:?}"
        );
        assert!(output.stdout.is_empty(), "it never listened");
    }
}

/// `inventory dev` on a shared moto, started after the first one created the resources: on the
/// table `events`, the stream `commands` and the bucket [`ARCHIVE`] of `aws` (one test's names),
/// which the process creates when missing.
fn dev_on_moto(aws: &TestAws) -> DevServer {
    DevServer::start(&[
        "--endpoint-url",
        aws.endpoint(),
        "--table",
        &aws.name("events"),
        "--stream",
        &aws.name("commands"),
        "--bucket",
        &aws.name(ARCHIVE),
    ])
}

/// Waits until every command in `ids` is applied, as one process reads it. Four processes
/// share one serialised moto here: allow them a minute.
async fn wait_until_applied_anywhere(client: &reqwest::Client, server: &DevServer, ids: &[String]) {
    for id in ids {
        wait_until_applied_within(client, server, id, Duration::from_secs(60)).await;
    }
}

/// Several `inventory dev` processes on one table and one command stream, as several Lambda
/// environments share them: each serves requests, and each runs a processor and the reactions on
/// the same stream (so every command is delivered to every processor). A flash sale across them,
/// then checkouts and releases across them: nothing acknowledged is lost, nothing applies twice,
/// nothing is oversold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_on_one_table_never_oversell_lose_or_double_apply_anything() {
    const PROCESSES: usize = 4;
    const UNITS: i64 = 40;
    const BUYERS: usize = 120;
    let _turn = MOTO_TURN.lock().await;
    let aws = TestAws::new().await;
    let mut servers = vec![dev_on_moto(&aws)];
    for _ in 1..PROCESSES {
        servers.push(dev_on_moto(&aws));
    }
    let client = http_client();
    use reqwest::Method;

    let (status, _, body) = call(
        &client,
        &servers[0],
        Method::POST,
        "/items/MULTI-1/receipts",
        None,
        Some(json!({ "quantity": UNITS })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let receipt = body["command_id"].as_str().unwrap().to_owned();
    wait_until_applied_anywhere(&client, &servers[1], &[receipt]).await;

    // The sale: buyers spread over the processes, 16 at a time.
    let gate = Arc::new(tokio::sync::Semaphore::new(16));
    let buys = (0..BUYERS).map(|buyer| {
        let (client, gate, server) = (client.clone(), gate.clone(), &servers[buyer % PROCESSES]);
        async move {
            let _permit = gate.acquire().await.unwrap();
            let cart = Some(json!({ "lines": [{ "sku": "MULTI-1", "quantity": 1 }] }));
            let (status, _, body) =
                call(&client, server, Method::POST, "/reservations", None, cart).await;
            (buyer, status, body)
        }
    });
    let answers = join_all(buys).await;
    let mut sold = Vec::new();
    for (buyer, status, body) in answers {
        match status {
            StatusCode::CREATED => {
                sold.push((buyer, body["reservation_id"].as_str().unwrap().to_owned()))
            }
            StatusCode::CONFLICT | StatusCode::SERVICE_UNAVAILABLE => {}
            other => panic!("buyer {buyer} answered {other}: {body}"),
        }
    }
    eprintln!("{} of {BUYERS} buyers got a unit of {UNITS}", sold.len());
    assert!(
        !sold.is_empty() && sold.len() as i64 <= UNITS,
        "{} sold",
        sold.len()
    );

    // Every acknowledged reservation reads back from another process.
    for (buyer, id) in &sold {
        let other = &servers[(buyer + 1) % PROCESSES];
        let (status, _, body) = call(
            &client,
            other,
            Method::GET,
            &format!("/reservations/{id}"),
            None,
            None,
        )
        .await;
        assert_eq!(
            (status, body["status"].as_str()),
            (StatusCode::OK, Some("active")),
            "{id}: {body}"
        );
    }

    // Half checked out, half released, each through yet another process.
    let mut commands = Vec::new();
    let mut checked_out = 0;
    for (n, (buyer, id)) in sold.iter().enumerate() {
        let server = &servers[(buyer + 2) % PROCESSES];
        let (method, path) = if n % 2 == 0 {
            checked_out += 1;
            (Method::POST, format!("/reservations/{id}/checkout"))
        } else {
            (Method::DELETE, format!("/reservations/{id}"))
        };
        let (status, _, body) = call(&client, server, method, &path, None, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{path}: {body}");
        commands.push(body["command_id"].as_str().unwrap().to_owned());
    }
    wait_until_applied_anywhere(&client, &servers[3], &commands).await;

    // Every process reads the same item: each checkout counted once, every release back.
    for server in &servers {
        let item = get_json(&client, server, "/items/MULTI-1").await;
        assert_eq!(item["on_hand"], UNITS, "{item}");
        assert_eq!(item["committed"], checked_out, "{item}");
        assert_eq!(item["reserved"], 0, "{item}");
        assert_eq!(item["available"], UNITS - checked_out, "{item}");
        read_view_catches_up(&client, server, "MULTI-1").await;
    }
}

/// Runs `inventory smoke --url SERVER [args]`; its exit code and what it printed.
async fn smoke(server: &DevServer, args: &[&str]) -> (Option<i32>, String) {
    let base = ["smoke", "--url", &server.base_url, "--wait", "30"];
    let run = support::inventory(&[&base[..], args].concat()).await;
    (run.code, run.stdout + &run.stderr)
}

/// Every check of a passing smoke run printed "ok", none "FAIL", and the summary says so.
fn assert_smoke_passed((code, printed): (Option<i32>, String), checks: usize) {
    assert_eq!(code, Some(0), "{printed}");
    let passed = printed
        .lines()
        .filter(|line| line.starts_with("ok    "))
        .count();
    assert_eq!(passed, checks, "{printed}");
    assert!(!printed.contains("FAIL"), "{printed}");
    assert!(
        printed.contains(&format!("{checks} checks, 0 failed")),
        "{printed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smoke_test_passes_against_the_embedded_service_and_its_production_mode_touches_only_the_canary(
) {
    let server = DevServer::start(&[]);
    assert_smoke_passed(smoke(&server, &[]).await, 34);
    // The first production run stocks the unknown canary with one unit; the next ones only
    // reserve and release it.
    assert_smoke_passed(smoke(&server, &["--production"]).await, 7);
    assert_smoke_passed(smoke(&server, &["--production"]).await, 6);
    let client = http_client();
    let canary = get_json(&client, &server, "/items/smoke-canary").await;
    assert_eq!(
        (
            canary["on_hand"].as_i64(),
            canary["reserved"].as_i64(),
            canary["committed"].as_i64()
        ),
        (Some(1), Some(0), Some(0)),
        "{canary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smoke_test_passes_with_tokens_and_fails_with_a_token_that_lacks_the_scope() {
    let tokens = TokenFile::new(
        &json!({ "tokens": [
            { "token": STORE_A, "client_id": "storefront-a", "scopes": ["inventory/read", "inventory/reserve"] },
            { "token": WAREHOUSE, "client_id": "warehouse", "scopes": ["inventory/admin"] }
        ]})
        .to_string(),
    );
    let server = DevServer::start(&["--tokens", tokens.path()]);
    assert_smoke_passed(smoke(&server, &["--token", WAREHOUSE]).await, 35);
    let (code, printed) = smoke(&server, &["--token", STORE_A]).await;
    assert_eq!(code, Some(1), "{printed}");
    assert!(
        printed.contains("FAIL  receipt of 10 units") && printed.contains("403"),
        "a storefront may not receive stock: {printed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smoke_test_passes_against_the_service_on_dynamodb_and_kinesis() {
    let _turn = MOTO_TURN.lock().await;
    let server = dev_on_moto(&TestAws::new().await);
    assert_smoke_passed(smoke(&server, &[]).await, 34);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_sells_out_a_flash_sale_without_overselling_and_refuses_a_foreign_target(
) {
    let server = DevServer::start(&[]);
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = std::iter::once("load")
            .chain(args.iter().map(String::as_str))
            .collect();
        let run = support::inventory(&args).await;
        (run.code, run.stdout, run.stderr)
    };
    let args = |url: &str| -> Vec<String> {
        [
            "--url",
            url,
            "--sku-count",
            "2",
            "--buyers",
            "300",
            "--concurrency",
            "16",
            "--stock",
            "50",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let (code, stdout, stderr) = run(args(&server.base_url)).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("sold 100 of 100 units to 300 shoppers (100 checkouts acknowledged)"),
        "{stdout}"
    );
    assert!(stdout.contains("verdict: never oversold"), "{stdout}");
    for (route, answers) in [
        ("POST /reservations", "201: 100, 409: 200"),
        ("POST /reservations/{id}/checkout", "202: 100"),
    ] {
        let line = stdout
            .lines()
            .find(|line| line.starts_with(route) && line[route.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no row for {route}: {stdout}"));
        assert!(line.ends_with(answers), "{line}");
    }

    let (code, _, stderr) = run(args("http://10.20.30.40:3000")).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("refusing to load"), "{stderr}");
}

/// A reverse proxy in front of moto that counts the DynamoDB requests whose body names a given
/// string (a SKU): what several `inventory dev` processes ask of the table for one item, their
/// reactions included, counted on the wire.
struct CountingProxy {
    url: String,
    named: Arc<Mutex<std::collections::BTreeMap<String, u64>>>,
    server: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    async fn start(upstream: &str, name: &str) -> Self {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, Method, StatusCode as Status, Uri};
        let named = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
        let (counter, needle, upstream) = (named.clone(), name.to_owned(), upstream.to_owned());
        let client = reqwest::Client::new();
        let forward = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (client, counter, needle, upstream) = (
                client.clone(),
                counter.clone(),
                needle.clone(),
                upstream.clone(),
            );
            async move {
                let operation = headers
                    .get("x-amz-target")
                    .and_then(|target| target.to_str().ok())
                    .and_then(|target| target.strip_prefix("DynamoDB_20120810."));
                let sent = Instant::now();
                let log = std::env::var_os("PROXY_LOG").is_some();
                let what = format!("{:?} {}", headers.get("x-amz-target"), uri.path());
                if let Some(operation) = operation {
                    if String::from_utf8_lossy(&body).contains(&needle) {
                        let mut counts = counter.lock().unwrap_or_else(|e| e.into_inner());
                        *counts.entry(operation.to_owned()).or_default() += 1;
                    }
                }
                let path = uri.path_and_query().map_or("/", |p| p.as_str());
                let mut request = client.request(method, format!("{upstream}{path}"));
                for (header, value) in &headers {
                    if header != "host" && header != "content-length" {
                        request = request.header(header, value);
                    }
                }
                let answer = request.body(body).send().await;
                if log {
                    eprintln!("proxy {what} {}ms", sent.elapsed().as_millis());
                }
                match answer {
                    Ok(response) => {
                        let status = response.status();
                        let mut headers = response.headers().clone();
                        headers.remove("content-length");
                        headers.remove("transfer-encoding");
                        let body = response.bytes().await.unwrap_or_default();
                        (status, headers, body)
                    }
                    Err(err) => (
                        Status::BAD_GATEWAY,
                        HeaderMap::new(),
                        Bytes::from(err.to_string()),
                    ),
                }
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(forward);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the proxy serves");
        });
        Self { url, named, server }
    }

    /// The requests counted so far, by operation.
    fn by_operation(&self) -> std::collections::BTreeMap<String, u64> {
        self.named.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn requests(&self) -> u64 {
        self.by_operation().values().sum()
    }

    /// The count once it has stood still for `quiet` (the reactions have caught up).
    async fn settled(&self, quiet: Duration) -> u64 {
        let started = Instant::now();
        let mut last = self.requests();
        loop {
            tokio::time::sleep(quiet).await;
            let now = self.requests();
            if now == last {
                return now;
            }
            assert!(
                started.elapsed() < REACTION_TIMEOUT,
                "requests never settle: {:?}",
                self.by_operation()
            );
            last = now;
        }
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The Cyber Monday acceptance on moto: four `inventory dev` processes share one table and sell
/// one item split into the recommended escrow buckets to more buyers than it has units, 32 at a
/// time. It sells out exactly: no buyer refused while a unit was left, none answered 503, none
/// oversold, every process reads the same sold-out item, and the table was asked at most 1.5
/// requests per sale for the item (reservations, the reactions' snapshots), counted on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_item_sells_out_exactly_over_four_processes_answering_no_buyer_503() {
    use inventory_core::domain::BucketCount;
    use reqwest::Method;
    const PROCESSES: usize = 4;
    const UNITS: i64 = 400;
    const BUYERS: usize = 480;
    const AT_ONCE: usize = 32;
    const SKU: &str = "CYBER-MONDAY-1";
    let _turn = MOTO_TURN.lock().await;
    let aws = TestAws::new().await;
    let proxy = CountingProxy::start(aws.endpoint(), SKU).await;
    // The first process also runs the processor and the reactions, the others serve the API
    // only: as deployed, where many API environments share one processor and one snapshotter.
    let (events, commands, archive) = (aws.name("events"), aws.name("commands"), aws.name(ARCHIVE));
    let names = [
        "--endpoint-url",
        &proxy.url,
        "--table",
        &events,
        "--stream",
        &commands,
        "--bucket",
        &archive,
    ];
    // The contention budget is a wall-clock time, 5 s by default: about 1,000 DynamoDB round
    // trips. moto, one request at a time, answers this sale's requests in 100 to 700 ms, so the
    // default leaves a buyer 10 to 50 round trips, and a buyer queued behind a hunt for units
    // (a few reads) runs out: 20 to 60 of 480 answered 503 with 5 s. 20 s is still fewer round
    // trips than DynamoDB gives in 5 s.
    let budget = [("INVENTORY_CONTENTION_BUDGET_MS", "20000")];
    let mut servers = vec![DevServer::start_with(&names, &budget)];
    for _ in 1..PROCESSES {
        let api_only = [&names[..], &["--api-only"]].concat();
        servers.push(DevServer::start_with(&api_only, &budget));
    }
    let client = http_client();

    let count = BucketCount::recommended(PROCESSES, UNITS).get();
    assert!(
        count > 1,
        "{UNITS} units over {PROCESSES} processes are split"
    );
    let receipt = Some(json!({ "quantity": UNITS }));
    let path = format!("/items/{SKU}/receipts");
    let (status, _, body) = call(&client, &servers[0], Method::POST, &path, None, receipt).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let mut commands = vec![body["command_id"].as_str().unwrap().to_owned()];
    let split = Some(json!({ "count": count }));
    let path = format!("/items/{SKU}/buckets");
    let (status, _, body) = call(&client, &servers[1], Method::PUT, &path, None, split).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    commands.push(body["command_id"].as_str().unwrap().to_owned());
    wait_until_applied_anywhere(&client, &servers[2], &commands).await;
    let layout = get_json(
        &client,
        &servers[3],
        &format!("/items/{SKU}?detail=buckets"),
    )
    .await;
    let buckets = layout["buckets"]
        .as_array()
        .expect("the buckets are listed");
    assert_eq!(buckets.len(), usize::from(count), "{layout}");
    let spread: i64 = buckets.iter().map(|b| b["on_hand"].as_i64().unwrap()).sum();
    assert_eq!((spread, layout["on_hand"].as_i64()), (UNITS, Some(UNITS)));
    proxy.settled(Duration::from_secs(2)).await;

    // The sale, its requests counted from here to when the reactions are done.
    let before = proxy.requests();
    let started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
    let buys = (0..BUYERS).map(|buyer| {
        let (client, gate, server) = (client.clone(), gate.clone(), &servers[buyer % PROCESSES]);
        async move {
            let _permit = gate.acquire().await.unwrap();
            let cart = Some(json!({ "lines": [{ "sku": SKU, "quantity": 1 }] }));
            let answer = call(&client, server, Method::POST, "/reservations", None, cart).await;
            (buyer, answer.0, answer.2)
        }
    });
    let answers = join_all(buys).await;
    let took = started.elapsed();
    let (mut sold, mut refused, mut busy) = (0, 0, 0);
    for (buyer, status, body) in answers {
        match status {
            StatusCode::CREATED => sold += 1,
            StatusCode::CONFLICT => {
                assert_eq!(
                    body["available"], 0,
                    "buyer {buyer} refused with stock: {body}"
                );
                refused += 1;
            }
            StatusCode::SERVICE_UNAVAILABLE => busy += 1,
            other => panic!("buyer {buyer} answered {other}: {body}"),
        }
    }
    let requests = proxy.settled(Duration::from_secs(3)).await - before;
    let per_sale = requests as f64 / sold.max(1) as f64;
    eprintln!(
        "{sold} sold, {refused} refused, {busy} answered 503 in {took:?}; \
         {requests} table requests for {SKU}: {per_sale:.2} per sale ({:?})",
        proxy.by_operation()
    );
    assert_eq!((sold, busy), (UNITS, 0), "all sold, no 503");
    assert_eq!(refused as usize, BUYERS - UNITS as usize);
    assert!(per_sale <= 1.5, "{per_sale:.2} table requests per sale");

    for server in &servers {
        let item = get_json(&client, server, &format!("/items/{SKU}")).await;
        assert_eq!(
            (item["on_hand"].as_i64(), item["reserved"].as_i64()),
            (Some(UNITS), Some(UNITS)),
            "{item}"
        );
        assert_eq!(item["available"], 0, "{item}");
    }
}

/// The CloudEvents lines of an `--events-out` file, as they are so far.
fn events_in(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line:?}")))
        .collect()
}

/// Waits until the file holds an event of `kind` for `sku` later than version `after_version`
/// (0: any); returns it and how long it took.
async fn event_told(
    path: &std::path::Path,
    sku: &str,
    kind: &str,
    after_version: u64,
    within: Duration,
) -> (Value, Duration) {
    let started = Instant::now();
    loop {
        let told = events_in(path).into_iter().find(|event| {
            event["subject"] == sku
                && event["type"] == format!("com.neveroversell.inventory.{kind}")
                && event["data"]["version"]
                    .as_u64()
                    .is_some_and(|version| version > after_version)
        });
        if let Some(event) = told {
            return (event, started.elapsed());
        }
        assert!(
            started.elapsed() < within,
            "no {kind} for {sku} after version {after_version} within {within:?}: {:#?}",
            events_in(path)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_out_tells_a_sell_out_within_a_second_and_back_in_stock_when_a_hold_expires() {
    let path = std::env::temp_dir().join(format!(
        "events-{}-{}.jsonl",
        std::process::id(),
        fastrand_suffix()
    ));
    let _ = std::fs::remove_file(&path);
    let server = DevServer::start_with(
        &["--events-out", path.to_str().expect("utf-8 path")],
        &[
            ("INVENTORY_RELEASE_GRACE_SECONDS", "0"),
            ("INVENTORY_SWEEP_INTERVAL_SECONDS", "1"),
        ],
    );
    let client = http_client();
    let (status, body) = json_of(
        client
            .post(server.url("/items/TOLD-1/receipts"))
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&json!({ "quantity": 3 }))
            .send()
            .await
            .expect("receipt answers"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    wait_until_applied(
        &client,
        &server,
        body["command_id"].as_str().expect("command id"),
    )
    .await;
    event_told(&path, "TOLD-1", "back_in_stock", 0, REACTION_TIMEOUT).await;

    // Three buyers take the three units; the last one's hold is kept short.
    for ttl in [900, 900, 60] {
        let (status, body) = json_of(
            client
                .post(server.url("/reservations"))
                .json(&json!({ "lines": [{ "sku": "TOLD-1", "quantity": 1 }], "ttl_seconds": ttl }))
                .send()
                .await
                .expect("reservation answers"),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (out, took) = event_told(&path, "TOLD-1", "out_of_stock", 0, REACTION_TIMEOUT).await;
    eprintln!("out_of_stock told {took:?} after the last unit's sale");
    assert!(took < Duration::from_secs(1), "out_of_stock took {took:?}");
    assert_eq!(out["specversion"], "1.0");
    assert_eq!(out["source"], "/inventory/dev");
    assert_eq!(out["data"]["stock"]["available"], 0, "{out}");
    assert_eq!(
        out["id"],
        format!("TOLD-1:{}:out_of_stock", out["data"]["version"])
    );

    // The short hold expires (60 s, no grace) and the sweep writes its expiry.
    let sold_out_at = out["data"]["version"].as_u64().expect("a version");
    let (back, _) = event_told(
        &path,
        "TOLD-1",
        "back_in_stock",
        sold_out_at,
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(back["data"]["stock"]["available"], 1, "{back}");
    let expired = events_in(&path)
        .into_iter()
        .filter(|event| event["type"] == "com.neveroversell.inventory.hold_expired")
        .count();
    assert_eq!(expired, 1, "{:#?}", events_in(&path));

    // Every id once, and per stream in version order.
    let told = events_in(&path);
    let mut ids: Vec<&str> = told
        .iter()
        .filter_map(|event| event["id"].as_str())
        .collect();
    let versions: Vec<u64> = told
        .iter()
        .filter_map(|event| event["data"]["version"].as_u64())
        .collect();
    assert!(
        versions.windows(2).all(|pair| pair[0] <= pair[1]),
        "{versions:?}"
    );
    ids.sort_unstable();
    let all = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), all, "an id told twice: {told:#?}");
    let _ = std::fs::remove_file(&path);
}

fn fastrand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
