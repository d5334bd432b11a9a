//! `inventory smoke --url URL [--token T]`: the service's promises checked end to end against
//! any deployment — `inventory dev` on either backend, or a deployed stack — through its public
//! HTTP API only. One line per check; exit 0 when every check holds, 1 otherwise, 2 when the
//! service could not be reached at all.
//!
//! The full run works on a fresh SKU: a receipt, two reservations (one repeated with its
//! idempotency key), a refused one past the stock, a checkout and a release, then every figure
//! of the item and of the read view. `--production` touches only a canary SKU: reads, and one
//! reservation that is released (the canary is stocked with one unit the first time, if unknown).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Exit code when a check failed.
const FAILED: u8 = 1;
/// Exit code when the service could not be reached.
const UNREACHABLE: u8 = 2;

/// Options of `inventory smoke`.
#[derive(Debug, clap::Args)]
pub struct SmokeArgs {
    /// The API's base URL, e.g. http://127.0.0.1:3000 or the stack's ApiUrl output.
    #[arg(long, value_name = "URL")]
    pub url: String,

    /// A bearer token with the inventory/admin scope (none for an open `inventory dev`).
    #[arg(long, env = "INVENTORY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Production: reads, and one reservation of the canary SKU that is released; no other
    /// SKU is touched.
    #[arg(long)]
    pub production: bool,

    /// The canary SKU of --production.
    #[arg(long, default_value = "smoke-canary", value_name = "SKU")]
    pub canary: String,

    /// How long to wait for a queued command to apply and the read view to follow.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub wait: u64,
}

/// One answer: status and JSON body (`Null` if there was none or it was not JSON).
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: Value,
}

/// The API, as the smoke test calls it.
struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    wait: Duration,
}

/// The checks made so far.
#[derive(Default)]
struct Report {
    failed: usize,
    passed: usize,
}

impl Report {
    /// Records a check: `Ok` holds, `Err` says what was seen instead.
    fn check(&mut self, name: &str, outcome: Result<(), String>) -> bool {
        match outcome {
            Ok(()) => {
                self.passed += 1;
                println!("ok    {name}");
                true
            }
            Err(seen) => {
                self.failed += 1;
                println!("FAIL  {name}: {seen}");
                false
            }
        }
    }
}

/// `Ok` when `answer` has `status`, else what it had.
fn expect(answer: &Answer, status: StatusCode) -> Result<(), String> {
    if answer.status == status {
        Ok(())
    } else {
        Err(format!("{} {}", answer.status, answer.body))
    }
}

/// `Ok` when `answer` is the error `code` with `status`.
fn expect_error(answer: &Answer, status: StatusCode, code: &str) -> Result<(), String> {
    expect(answer, status)?;
    match answer.body["error"].as_str() {
        Some(found) if found == code => Ok(()),
        _ => Err(format!("{} {}, not {code}", answer.status, answer.body)),
    }
}

/// `Ok` when every `(field, value)` of `expected` is in `body`.
fn figures(body: &Value, expected: &[(&str, i64)]) -> Result<(), String> {
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(field, value)| body[*field].as_i64() != Some(*value))
        .map(|(field, value)| format!("{field} {} (expected {value})", body[*field]))
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join(", "))
    }
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, String> {
        self.call_as(method, path, body, self.token.as_deref(), None)
            .await
    }

    async fn call_as(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, String> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|err| format!("{method} {path}: {err}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|err| format!("{method} {path}: {err}"))?;
        Ok(Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        })
    }

    /// Polls `GET /commands/{id}` until it is no longer pending; its last status and reason
    /// (when rejected or parked).
    async fn settled(&self, command_id: &str) -> Result<(String, Option<String>), String> {
        let deadline = Instant::now() + self.wait;
        loop {
            let answer = self
                .call(Method::GET, &format!("/commands/{command_id}"), None)
                .await?;
            expect(&answer, StatusCode::OK)?;
            let text = |field: &str| answer.body[field].as_str().map(str::to_owned);
            let status = text("status").unwrap_or_default();
            if status != "pending" || Instant::now() >= deadline {
                return Ok((status, text("reason")));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Polls `path` until `check` holds on its body or the wait is over; the last outcome.
    async fn eventually(
        &self,
        path: &str,
        check: impl Fn(&Value) -> Result<(), String>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + self.wait;
        loop {
            let answer = self.call(Method::GET, path, None).await?;
            let outcome = expect(&answer, StatusCode::OK).and_then(|()| check(&answer.body));
            if outcome.is_ok() || Instant::now() >= deadline {
                return outcome;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Queues an admin command with `method path body`, with an Idempotency-Key of its own (the
    /// route requires one), and waits for it to apply.
    async fn command(&self, method: Method, path: &str, body: Option<Value>) -> Result<(), String> {
        match self.outcome(method, path, body).await? {
            (_, status, _) if status == "applied" => Ok(()),
            (id, status, _) => Err(format!("command {id} is {status}")),
        }
    }

    /// Queues an admin command as [`Api::command`] does and waits for it to settle: its id, its
    /// status and its reason (when rejected or parked).
    async fn outcome(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(String, String, Option<String>), String> {
        let key = format!("smoke-{:016x}", fastrand::u64(..));
        let token = self.token.as_deref();
        let answer = self.call_as(method, path, body, token, Some(&key)).await?;
        expect(&answer, StatusCode::ACCEPTED)?;
        let id = answer.body["command_id"]
            .as_str()
            .ok_or_else(|| format!("no command_id in {}", answer.body))?
            .to_owned();
        let (status, reason) = self.settled(&id).await?;
        Ok((id, status, reason))
    }

    async fn reserve(&self, sku: &str, quantity: i64, key: Option<&str>) -> Result<Answer, String> {
        let body = json!({ "lines": [{ "sku": sku, "quantity": quantity }], "ttl_seconds": 300 });
        self.call_as(
            Method::POST,
            "/reservations",
            Some(body),
            self.token.as_deref(),
            key,
        )
        .await
    }
}

/// The id of a reservation answered 201, or what came instead.
fn reservation_id(answer: &Answer) -> Result<String, String> {
    expect(answer, StatusCode::CREATED)?;
    answer.body["reservation_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no reservation_id in {}", answer.body))
}

/// Runs `inventory smoke`.
pub async fn smoke(args: SmokeArgs) -> ExitCode {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
    {
        Ok(http) => http,
        Err(err) => {
            eprintln!("inventory: {err}");
            return ExitCode::from(UNREACHABLE);
        }
    };
    let api = Api {
        http,
        base: args.url.trim_end_matches('/').to_owned(),
        token: args.token.clone(),
        wait: Duration::from_secs(args.wait),
    };
    let mut report = Report::default();
    let started = Instant::now();
    let outcome = if args.production {
        production(&api, &args.canary, &mut report).await
    } else {
        full(&api, &mut report).await
    };
    if let Err(unreachable) = outcome {
        eprintln!("inventory: the service could not be reached: {unreachable}");
        return ExitCode::from(UNREACHABLE);
    }
    println!(
        "{} checks, {} failed, in {:.1} s",
        report.passed + report.failed,
        report.failed,
        started.elapsed().as_secs_f64()
    );
    if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(FAILED)
    }
}

/// Every check, on a fresh SKU. `Err` only when a request could not be sent at all.
async fn full(api: &Api, report: &mut Report) -> Result<(), String> {
    let sku = format!("smoke-{:016x}", fastrand::u64(..));
    let item = format!("/items/{sku}");
    report.check(
        &format!("receipt of 10 units of a fresh SKU {sku} applies"),
        api.command(
            Method::POST,
            &format!("{item}/receipts"),
            Some(json!({ "quantity": 10, "reference": "smoke" })),
        )
        .await,
    );
    let unkeyed = api
        .call(
            Method::POST,
            &format!("{item}/receipts"),
            Some(json!({ "quantity": 1 })),
        )
        .await?;
    report.check(
        "a receipt without an Idempotency-Key is refused (400 idempotency_key_required)",
        expect_error(
            &unkeyed,
            StatusCode::BAD_REQUEST,
            "idempotency_key_required",
        ),
    );
    let answer = api.call(Method::GET, &item, None).await?;
    report.check(
        "the item reads on_hand 10, available 10",
        expect(&answer, StatusCode::OK).and_then(|()| {
            figures(
                &answer.body,
                &[
                    ("on_hand", 10),
                    ("available", 10),
                    ("reserved", 0),
                    ("committed", 0),
                ],
            )
        }),
    );

    let key = format!("smoke-{:016x}", fastrand::u64(..));
    let first = api.reserve(&sku, 3, Some(&key)).await?;
    let checked_out = reservation_id(&first);
    report.check(
        "a reservation of 3 is granted (201)",
        checked_out.clone().map(drop),
    );
    let again = api.reserve(&sku, 3, Some(&key)).await?;
    report.check(
        "the same request with its idempotency key returns the same reservation",
        match (reservation_id(&again), &checked_out) {
            (Ok(a), Ok(b)) if a == *b => Ok(()),
            (again, first) => Err(format!("{again:?} after {first:?}")),
        },
    );
    let second = api.reserve(&sku, 2, None).await?;
    let released = reservation_id(&second);
    report.check(
        "a reservation of 2 is granted (201)",
        released.clone().map(drop),
    );
    let refused = api.reserve(&sku, 6, None).await?;
    report.check(
        "a reservation of 6 with 5 available is refused 409 insufficient_stock",
        expect(&refused, StatusCode::CONFLICT).and_then(|()| {
            match refused.body["error"].as_str() {
                Some("insufficient_stock") => Ok(()),
                other => Err(format!("error {other:?}")),
            }
        }),
    );
    let answer = api.call(Method::GET, &item, None).await?;
    report.check(
        "the item reads reserved 5, available 5",
        expect(&answer, StatusCode::OK)
            .and_then(|()| figures(&answer.body, &[("reserved", 5), ("available", 5)])),
    );

    if let Ok(id) = &checked_out {
        report.check(
            "the checkout of the first reservation applies",
            api.command(Method::POST, &format!("/reservations/{id}/checkout"), None)
                .await,
        );
    }
    if let Ok(id) = &released {
        report.check(
            "the release of the second reservation applies",
            api.command(Method::DELETE, &format!("/reservations/{id}"), None)
                .await,
        );
    }
    let answer = api.call(Method::GET, &item, None).await?;
    let reads_right = report.check(
        "the item reads on_hand 10, committed 3, reserved 0, available 7",
        expect(&answer, StatusCode::OK).and_then(|()| {
            figures(
                &answer.body,
                &[
                    ("on_hand", 10),
                    ("committed", 3),
                    ("reserved", 0),
                    ("available", 7),
                ],
            )
        }),
    );
    for (id, status) in [(&checked_out, "committed"), (&released, "released")] {
        if let Ok(id) = id {
            let answer = api
                .call(Method::GET, &format!("/reservations/{id}"), None)
                .await?;
            report.check(
                &format!("reservation {id} reads {status}"),
                expect(&answer, StatusCode::OK).and_then(|()| {
                    match answer.body["status"].as_str() {
                        Some(seen) if seen == status => Ok(()),
                        seen => Err(format!("status {seen:?}")),
                    }
                }),
            );
        }
    }
    let reads_right = reads_right && states_and_counts(api, report, &item).await?;
    let reads_right = match (&checked_out, reads_right) {
        (Ok(id), true) => after_the_sale(api, report, &item, &sku, id).await?,
        _ => false,
    };
    // The read view follows the item; when the item itself does not read these figures (a step
    // before failed), waiting the whole --wait for the view to show them would only delay the
    // verdict.
    let view_follows = if reads_right {
        api.eventually(&format!("/items?sku={sku}"), |body| {
            let item = &body["items"][0];
            figures(item, &[("on_hand", 8), ("committed", 0), ("available", 5)])
                .and_then(|()| figures(&item["unavailable"], &[("damaged", 3)]))
        })
        .await
    } else {
        Err("not awaited: the item itself does not read these figures".to_owned())
    };
    report.check(
        "the read view follows: on_hand 8, committed 0, damaged 3, available 5",
        view_follows,
    );
    locations(api, report).await?;
    if reads_right {
        transfers(api, report, &item, &sku).await?;
    }
    doors(api, report).await
}

/// The smoke test's own location: inactive and fulfilling no online order, so that no
/// reservation is ever allocated to it; put as it is each run, it is registered once.
const SMOKE_LOCATION: &str = "smoke-transit";

/// On the item at `item` (on hand 8 at the default location, 5 for sale): one unit shipped to
/// the smoke test's own location, in transit there, then received; a reservation line naming
/// that inactive location refused, one naming the default location held there and released.
async fn transfers(api: &Api, report: &mut Report, item: &str, sku: &str) -> Result<(), String> {
    let location = json!({
        "name": "Smoke test transfers (inactive: never allocated)",
        "kind": "warehouse",
        "fulfills_online": false,
        "active": false
    });
    let put = api
        .call(
            Method::PUT,
            &format!("/locations/{SMOKE_LOCATION}"),
            Some(location),
        )
        .await?;
    if !report.check(
        &format!("the inactive location {SMOKE_LOCATION} is registered (200)"),
        expect(&put, StatusCode::OK),
    ) {
        return Ok(());
    }
    let key = format!("smoke-{:016x}", fastrand::u64(..));
    let body = json!({ "sku": sku, "from": "default", "to": SMOKE_LOCATION, "quantity": 1, "reference": "smoke" });
    let shipped = api
        .call_as(
            Method::POST,
            "/transfers",
            Some(body),
            api.token.as_deref(),
            Some(&key),
        )
        .await?;
    let transfer = expect(&shipped, StatusCode::ACCEPTED).and_then(|()| {
        let text = |field: &str| {
            shipped.body[field]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("no {field} in {}", shipped.body))
        };
        Ok((text("command_id")?, text("transfer_id")?))
    });
    let shipped = match transfer {
        Ok((command, transfer)) => match api.settled(&command).await? {
            (status, _) if status == "applied" => Ok(transfer),
            (status, reason) => Err(format!("command {command} is {status} {reason:?}")),
        },
        Err(err) => Err(err),
    };
    let Ok(transfer) = shipped.clone() else {
        report.check("a transfer of 1 unit to it applies", shipped.map(drop));
        return Ok(());
    };
    report.check("a transfer of 1 unit to it applies", Ok(()));
    let at = |body: &Value, id: &str| -> Value {
        body["locations"]
            .as_array()
            .and_then(|all| all.iter().find(|l| l["location"] == id))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let answer = api.call(Method::GET, item, None).await?;
    report.check(
        "the unit is in transit: out of default (on hand 7, transit_out 1), on its way there",
        expect(&answer, StatusCode::OK).and_then(|()| {
            figures(
                &at(&answer.body, "default"),
                &[("on_hand", 7), ("transit_out", 1)],
            )?;
            figures(
                &at(&answer.body, SMOKE_LOCATION),
                &[("on_hand", 0), ("transit_in", 1)],
            )
        }),
    );
    report.check(
        "its receipt applies",
        api.command(
            Method::POST,
            &format!("/transfers/{transfer}/receive"),
            None,
        )
        .await,
    );
    let answer = api.call(Method::GET, item, None).await?;
    report.check(
        "the unit is on hand there, nothing in transit",
        expect(&answer, StatusCode::OK).and_then(|()| {
            figures(&at(&answer.body, SMOKE_LOCATION), &[("on_hand", 1)])?;
            figures(&answer.body, &[("on_hand", 8)])?;
            match answer.body.get("transit_in") {
                None => Ok(()),
                Some(units) => Err(format!("transit_in {units}")),
            }
        }),
    );
    let line = |location: &str| json!({ "lines": [{ "sku": sku, "quantity": 1, "location": location }], "ttl_seconds": 300 });
    let refused = api
        .call(Method::POST, "/reservations", Some(line(SMOKE_LOCATION)))
        .await?;
    report.check(
        "a line naming the inactive location is refused 409 location_unavailable",
        expect_error(&refused, StatusCode::CONFLICT, "location_unavailable"),
    );
    let held = api
        .call(Method::POST, "/reservations", Some(line("default")))
        .await?;
    let allocated = reservation_id(&held).and_then(|id| {
        let allocations = &held.body["lines"][0]["allocations"];
        if *allocations == json!([{ "location": "default", "quantity": 1 }]) {
            Ok(id)
        } else {
            Err(format!("allocations {allocations}"))
        }
    });
    report.check(
        "a line naming the default location is held there (201, its allocations)",
        allocated.clone().map(drop),
    );
    if let Ok(id) = allocated {
        report.check(
            "its release applies",
            api.command(Method::DELETE, &format!("/reservations/{id}"), None)
                .await,
        );
    }
    Ok(())
}

/// The registry of locations lists the default one, and putting it back as it is answers it
/// unchanged: the route works, and the shop's registry is left as it was (a smoke test that
/// registered a location of its own each run would fill the registry up).
async fn locations(api: &Api, report: &mut Report) -> Result<(), String> {
    let listed = api.call(Method::GET, "/locations", None).await?;
    let default = listed.body["locations"]
        .as_array()
        .and_then(|all| all.iter().find(|l| l["id"] == "default"))
        .cloned();
    report.check(
        "the locations list the default one",
        expect(&listed, StatusCode::OK).and_then(|()| {
            default
                .as_ref()
                .map(drop)
                .ok_or_else(|| format!("no default in {}", listed.body))
        }),
    );
    let Some(default) = default else {
        return Ok(());
    };
    let mut body = default.clone();
    if let Some(fields) = body.as_object_mut() {
        fields.remove("id");
    }
    let put = api
        .call(Method::PUT, "/locations/default", Some(body))
        .await?;
    report.check(
        "the default location put back as it is answers it unchanged",
        expect(&put, StatusCode::OK).and_then(|()| {
            if put.body == default {
                Ok(())
            } else {
                Err(format!("{} after {default}", put.body))
            }
        }),
    );
    Ok(())
}

/// On the item at `item` (on hand 10, 3 sold, 7 for sale): 2 units set aside as damaged, a
/// count against a stale figure refused, and a count against the right one applied. Whether it
/// ends reading on hand 9, committed 3, damaged 2, available 4.
async fn states_and_counts(api: &Api, report: &mut Report, item: &str) -> Result<bool, String> {
    report.check(
        "a move of 2 units from available to damaged applies",
        api.command(
            Method::POST,
            &format!("{item}/moves"),
            Some(json!({ "from": "available", "to": "damaged", "quantity": 2,
                         "reason": "damaged", "note": "smoke" })),
        )
        .await,
    );
    let (id, status, reason) = api
        .outcome(
            Method::PUT,
            &format!("{item}/on-hand"),
            Some(json!({ "quantity": 9, "expected": 11, "reason": "cycle_count" })),
        )
        .await?;
    report.check(
        "a count taken against a stale on-hand figure is rejected stale_count",
        match (status.as_str(), reason.as_deref()) {
            ("rejected", Some("stale_count")) => Ok(()),
            _ => Err(format!("command {id} is {status} ({reason:?})")),
        },
    );
    report.check(
        "a count of 9 against on-hand 10 applies",
        api.command(
            Method::PUT,
            &format!("{item}/on-hand"),
            Some(json!({ "quantity": 9, "expected": 10, "reason": "cycle_count" })),
        )
        .await,
    );
    let answer = api.call(Method::GET, item, None).await?;
    Ok(report.check(
        "the item reads on_hand 9, committed 3, damaged 2, available 4",
        expect(&answer, StatusCode::OK).and_then(|()| {
            figures(
                &answer.body,
                &[("on_hand", 9), ("committed", 3), ("available", 4)],
            )
            .and_then(|()| figures(&answer.body["unavailable"], &[("damaged", 2)]))
        }),
    ))
}

/// On the item at `item` (on hand 9, 3 sold in reservation `id`, 2 damaged, 4 for sale): 2
/// of the 3 ship, the third is cancelled, and one shipped unit comes back damaged. Whether it
/// ends reading on hand 8, committed 0, damaged 3, available 5.
async fn after_the_sale(
    api: &Api,
    report: &mut Report,
    item: &str,
    sku: &str,
    id: &str,
) -> Result<bool, String> {
    let reservation = format!("/reservations/{id}");
    report.check(
        "shipping 2 of the 3 units sold applies",
        api.command(
            Method::POST,
            &format!("{reservation}/fulfill"),
            Some(json!({ "lines": [{ "sku": sku, "quantity": 2 }], "reference": "smoke" })),
        )
        .await,
    );
    let cancelled = api
        .command(Method::POST, &format!("{reservation}/cancel"), None)
        .await;
    let answer = api.call(Method::GET, &reservation, None).await?;
    report.check(
        "cancelling the unit left applies, and the reservation reads fulfilled",
        cancelled.and_then(|()| {
            expect(&answer, StatusCode::OK)?;
            match answer.body["status"].as_str() {
                Some("fulfilled") => Ok(()),
                seen => Err(format!("status {seen:?}")),
            }
        }),
    );
    report.check(
        "a return of 1 shipped unit, set aside as damaged, applies",
        api.command(
            Method::POST,
            &format!("{reservation}/returns"),
            Some(json!({ "lines": [{ "sku": sku, "quantity": 1 }], "restock": false })),
        )
        .await,
    );
    let ledger = api
        .call(Method::GET, &format!("{item}/ledger?limit=500"), None)
        .await?;
    report.check(
        "its ledger tells every change in order, from the receipt to the return, and sums to its figures",
        expect(&ledger, StatusCode::OK).and_then(|()| ledger_sums(&ledger.body)),
    );
    let answer = api.call(Method::GET, item, None).await?;
    Ok(report.check(
        "the item reads on_hand 8, committed 0, damaged 3, available 5",
        expect(&answer, StatusCode::OK).and_then(|()| {
            figures(
                &answer.body,
                &[("on_hand", 8), ("committed", 0), ("available", 5)],
            )
            .and_then(|()| figures(&answer.body["unavailable"], &[("damaged", 3)]))
        }),
    ))
}

/// Whether a ledger page starts at the receipt, ends at the return, and the running sum of its
/// entries' changes is each entry's figures after it.
fn ledger_sums(page: &Value) -> Result<(), String> {
    let entries = page["entries"]
        .as_array()
        .ok_or_else(|| format!("no entries in {page}"))?;
    let kind = |entry: Option<&Value>| entry.and_then(|e| e["kind"].as_str()).map(str::to_owned);
    if kind(entries.first()).as_deref() != Some("received")
        || kind(entries.last()).as_deref() != Some("returned")
    {
        return Err(format!(
            "from {:?} to {:?}",
            kind(entries.first()),
            kind(entries.last())
        ));
    }
    let mut sums = std::collections::BTreeMap::<&str, i64>::new();
    for entry in entries {
        for (figure, change) in entry["changes"].as_object().into_iter().flatten() {
            *sums.entry(figure.as_str()).or_default() += change.as_i64().unwrap_or_default();
        }
        for figure in ["on_hand", "reserved", "committed", "available"] {
            let after = entry["after"][figure].as_i64().unwrap_or_default();
            if sums.get(figure).copied().unwrap_or_default() != after {
                return Err(format!("{figure} sums to {sums:?}, the entry says {entry}"));
            }
        }
    }
    Ok(())
}

/// Reads, and one reservation of the canary SKU that is released.
async fn production(api: &Api, canary: &str, report: &mut Report) -> Result<(), String> {
    let item = format!("/items/{canary}");
    let answer = api.call(Method::GET, &item, None).await?;
    if answer.status == StatusCode::NOT_FOUND {
        report.check(
            &format!("the canary SKU {canary}, unknown, is stocked with one unit"),
            api.command(
                Method::POST,
                &format!("{item}/receipts"),
                Some(json!({ "quantity": 1, "reference": "smoke canary" })),
            )
            .await,
        );
    }
    let answer = api.call(Method::GET, &item, None).await?;
    report.check(
        &format!("the canary SKU {canary} reads with a unit available"),
        expect(&answer, StatusCode::OK).and_then(|()| match answer.body["available"].as_i64() {
            Some(available) if available >= 1 => Ok(()),
            _ => Err(format!("{}", answer.body)),
        }),
    );
    report.check(
        "the read view lists the canary",
        api.eventually(&format!("/items?sku={canary}"), |body| {
            match body["items"][0]["sku"].as_str() {
                Some(sku) if sku == canary => Ok(()),
                _ => Err(format!("{body}")),
            }
        })
        .await,
    );
    let answer = api.reserve(canary, 1, None).await?;
    let id = reservation_id(&answer);
    report.check(
        "a reservation of one canary unit is granted",
        id.clone().map(drop),
    );
    if let Ok(id) = id {
        report.check(
            "its release applies",
            api.command(Method::DELETE, &format!("/reservations/{id}"), None)
                .await,
        );
        let answer = api
            .call(Method::GET, &format!("/reservations/{id}"), None)
            .await?;
        report.check(
            "it reads released",
            expect(&answer, StatusCode::OK).and_then(|()| match answer.body["status"].as_str() {
                Some("released") => Ok(()),
                seen => Err(format!("status {seen:?}")),
            }),
        );
    }
    doors(api, report).await
}

/// The OpenAPI document is served to anyone; with a token given, a request without one is
/// refused 401 (on a route that is never public).
async fn doors(api: &Api, report: &mut Report) -> Result<(), String> {
    let answer = api
        .call_as(Method::GET, "/openapi.json", None, None, None)
        .await?;
    report.check(
        "the OpenAPI document is served without a token",
        expect(&answer, StatusCode::OK).and_then(|()| {
            let paths = answer.body["paths"]
                .as_object()
                .map_or(0, |paths| paths.len());
            match answer.body["openapi"].as_str() {
                Some(version) if version.starts_with("3.1") && paths > 0 => Ok(()),
                _ => Err(format!(
                    "openapi {} with {paths} paths",
                    answer.body["openapi"]
                )),
            }
        }),
    );
    let path = "/commands/00000000-0000-4000-8000-000000000000";
    if api.token.is_none() {
        println!(
            "skip  a request without a token is refused 401 (no --token: the target may run open)"
        );
        return Ok(());
    }
    let answer = api.call_as(Method::GET, path, None, None, None).await?;
    report.check(
        "a request without a token is refused 401",
        expect(&answer, StatusCode::UNAUTHORIZED),
    );
    Ok(())
}
