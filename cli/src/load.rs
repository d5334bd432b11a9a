//! `inventory load`: a flash sale against any deployment, through its public HTTP API. Fresh
//! SKUs are stocked, then `--buyers` shoppers, `--concurrency` at a time, each reserve one unit
//! of a random SKU and check it out. At the end: requests per second, latency percentiles per
//! route, answers by status, units sold against stock, and the verdict, read back from the items
//! once every checkout is applied: nothing oversold.
//!
//! Bounded in count (`--buyers`) and time (`--max-seconds`), and it refuses a target that is not
//! on this machine unless `--i-own-this-target` says the caller may load it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Exit code when something was oversold or the run could not complete its checks.
const FAILED: u8 = 1;
/// Exit code when the run was refused or could not start.
const REFUSED: u8 = 2;

/// Options of `inventory load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// The API's base URL. Only this machine (loopback) unless --i-own-this-target.
    #[arg(long, value_name = "URL")]
    pub url: String,

    /// Fresh SKUs the sale is spread over (fewer: hotter items).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub sku_count: u32,

    /// Shoppers in all, each reserving one unit and checking it out.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub buyers: u32,

    /// Shoppers at a time.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub concurrency: u32,

    /// Units received per SKU (default: half the buyers' demand, so the sale sells out).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub stock: Option<u32>,

    /// A bearer token with the inventory/admin scope (none for an open `inventory dev`).
    #[arg(long, env = "INVENTORY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Stop starting shoppers after this long.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub max_seconds: u64,

    /// Load a target that is not on this machine (only one you own and may load).
    #[arg(long)]
    pub i_own_this_target: bool,
}

/// What one route's requests came to.
#[derive(Debug, Default)]
struct RouteFigures {
    latencies: Vec<Duration>,
    statuses: BTreeMap<u16, u64>,
}

/// Everything measured, per route.
#[derive(Debug, Default)]
struct Figures {
    routes: BTreeMap<&'static str, RouteFigures>,
    transport_errors: u64,
}

impl Figures {
    fn record(&mut self, route: &'static str, elapsed: Duration, status: Option<StatusCode>) {
        let figures = self.routes.entry(route).or_default();
        figures.latencies.push(elapsed);
        match status {
            Some(status) => *figures.statuses.entry(status.as_u16()).or_default() += 1,
            None => self.transport_errors += 1,
        }
    }
}

/// The API, measured.
struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    figures: Mutex<Figures>,
}

impl Api {
    /// One request; its status and JSON body, or `None` if no answer came.
    async fn call(
        &self,
        route: &'static str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Option<(StatusCode, Value)> {
        self.call_keyed(route, method, path, body, None).await
    }

    /// [`Api::call`] with an `Idempotency-Key` (the admin command routes require one).
    async fn call_keyed(
        &self,
        route: &'static str,
        method: Method,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> Option<(StatusCode, Value)> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let started = Instant::now();
        let answer = match request.send().await {
            Ok(response) => {
                let status = response.status();
                let body = response.json::<Value>().await.unwrap_or(Value::Null);
                Some((status, body))
            }
            Err(_) => None,
        };
        self.figures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .record(route, started.elapsed(), answer.as_ref().map(|(s, _)| *s));
        answer
    }

    /// Waits until the command is no longer pending (at most `wait`); whether it applied.
    async fn applied(&self, command_id: &str, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            let path = format!("/commands/{command_id}");
            let status = self
                .call("GET /commands/{id}", Method::GET, &path, None)
                .await
                .and_then(|(_, body)| body["status"].as_str().map(str::to_owned));
            match status.as_deref() {
                Some("applied") => return true,
                Some("pending") | None if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ => return false,
            }
        }
    }
}

/// Whether `url` points at this machine.
fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// Runs `inventory load`.
pub async fn load(args: LoadArgs) -> ExitCode {
    let url = match reqwest::Url::parse(&args.url) {
        Ok(url) => url,
        Err(err) => {
            eprintln!("inventory: --url {:?} is not a URL: {err}", args.url);
            return ExitCode::from(REFUSED);
        }
    };
    if !is_loopback(&url) && !args.i_own_this_target {
        eprintln!(
            "inventory: refusing to load {url}: it is not on this machine. Pass \
             --i-own-this-target if you own it and may load it."
        );
        return ExitCode::from(REFUSED);
    }
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(args.concurrency as usize)
        .build()
    {
        Ok(http) => http,
        Err(err) => {
            eprintln!("inventory: {err}");
            return ExitCode::from(REFUSED);
        }
    };
    let api = Arc::new(Api {
        http,
        base: args.url.trim_end_matches('/').to_owned(),
        token: args.token.clone(),
        figures: Mutex::new(Figures::default()),
    });
    let stock = args
        .stock
        .unwrap_or_else(|| (args.buyers / (2 * args.sku_count)).max(1));
    let run = format!("{:08x}", fastrand::u32(..));
    let skus: Vec<String> = (0..args.sku_count)
        .map(|i| format!("load-{run}-{i}"))
        .collect();

    eprintln!(
        "stocking {} SKUs with {stock} units each at {}",
        skus.len(),
        api.base
    );
    for sku in &skus {
        let receipt = json!({ "quantity": stock, "reference": "load" });
        let path = format!("/items/{sku}/receipts");
        let key = format!("{sku}-stock");
        let id = match api
            .call_keyed(
                "POST /items/{sku}/receipts",
                Method::POST,
                &path,
                Some(receipt),
                Some(&key),
            )
            .await
        {
            Some((StatusCode::ACCEPTED, body)) => body["command_id"].as_str().map(str::to_owned),
            other => {
                eprintln!("inventory: stocking {sku} failed: {other:?}");
                return ExitCode::from(REFUSED);
            }
        };
        if !api
            .applied(&id.unwrap_or_default(), Duration::from_secs(60))
            .await
        {
            eprintln!("inventory: the receipt of {sku} did not apply within a minute");
            return ExitCode::from(REFUSED);
        }
    }
    *api.figures
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Figures::default();

    let progress = ProgressBar::new(u64::from(args.buyers));
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} shoppers, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let started = Instant::now();
    let checkouts: Vec<Option<String>> = futures::stream::iter(0..args.buyers)
        .take_while(|_| futures::future::ready(Instant::now() < deadline))
        .map(|_| {
            let api = Arc::clone(&api);
            let sku = skus[fastrand::usize(..skus.len())].clone();
            let progress = progress.clone();
            async move {
                let checkout = shop(&api, &sku).await;
                progress.inc(1);
                checkout
            }
        })
        .buffer_unordered(args.concurrency as usize)
        .collect()
        .await;
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    let shoppers = checkouts.len();
    let checkouts: Vec<String> = checkouts.into_iter().flatten().collect();
    // The sale's figures, before the checks below add their own requests.
    let figures = std::mem::take(
        &mut *api
            .figures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );

    // Every acknowledged checkout applied, then the items read back.
    let mut unapplied = 0;
    for id in &checkouts {
        if !api.applied(id, Duration::from_secs(120)).await {
            unapplied += 1;
        }
    }
    let mut sold = 0;
    let mut oversold = Vec::new();
    for sku in &skus {
        let path = format!("/items/{sku}");
        match api.call("GET /items/{sku}", Method::GET, &path, None).await {
            Some((StatusCode::OK, item)) => {
                let committed = item["committed"].as_i64().unwrap_or(0);
                let reserved = item["reserved"].as_i64().unwrap_or(0);
                let on_hand = item["on_hand"].as_i64().unwrap_or(0);
                sold += committed;
                if committed + reserved > on_hand || on_hand != i64::from(stock) {
                    oversold.push(format!("{sku}: {item}"));
                }
            }
            other => oversold.push(format!("{sku}: could not be read: {other:?}")),
        }
    }

    print_report(&figures, elapsed, shoppers, checkouts.len());
    let total_stock = i64::from(stock) * skus.len() as i64;
    println!(
        "sold {sold} of {total_stock} units to {shoppers} shoppers ({} checkouts acknowledged)",
        checkouts.len()
    );
    let acknowledged = checkouts.len() as i64;
    if oversold.is_empty() && unapplied == 0 && sold == acknowledged {
        println!("verdict: never oversold (every item: committed + reserved <= on_hand; every acknowledged checkout applied once)");
        ExitCode::SUCCESS
    } else {
        println!(
            "verdict: FAILED: {unapplied} acknowledged checkouts not applied, {sold} sold for {acknowledged} acknowledged; {}",
            oversold.join("; ")
        );
        ExitCode::from(FAILED)
    }
}

/// One shopper: reserves a unit of `sku` and checks it out; the checkout's command id if it was
/// acknowledged.
async fn shop(api: &Api, sku: &str) -> Option<String> {
    let body = json!({ "lines": [{ "sku": sku, "quantity": 1 }], "ttl_seconds": 300 });
    let (status, reservation) = api
        .call(
            "POST /reservations",
            Method::POST,
            "/reservations",
            Some(body),
        )
        .await?;
    if status != StatusCode::CREATED {
        return None;
    }
    let id = reservation["reservation_id"].as_str()?;
    let path = format!("/reservations/{id}/checkout");
    match api
        .call(
            "POST /reservations/{id}/checkout",
            Method::POST,
            &path,
            None,
        )
        .await?
    {
        (StatusCode::ACCEPTED, body) => body["command_id"].as_str().map(str::to_owned),
        _ => None,
    }
}

/// The `p`th percentile (0..=100) of sorted `values`.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * p).div_ceil(100).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn millis(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1_000.0)
}

/// The table of the sale: per route, requests, rate, latency percentiles and answers.
fn print_report(figures: &Figures, elapsed: Duration, shoppers: usize, checkouts: usize) {
    let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
    let requests: usize = figures.routes.values().map(|r| r.latencies.len()).sum();
    println!(
        "{shoppers} shoppers in {seconds:.2} s: {requests} requests, {:.0} requests/s, {checkouts} checkouts acknowledged",
        requests as f64 / seconds
    );
    println!(
        "{:<36} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8}  answers",
        "route", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for (route, route_figures) in &figures.routes {
        let mut sorted = route_figures.latencies.clone();
        sorted.sort();
        let answers: Vec<String> = route_figures
            .statuses
            .iter()
            .map(|(status, count)| format!("{status}: {count}"))
            .collect();
        println!(
            "{:<36} {:>8} {:>9.1} {:>8} {:>8} {:>8} {:>8}  {}",
            route,
            sorted.len(),
            sorted.len() as f64 / seconds,
            millis(percentile(&sorted, 50)),
            millis(percentile(&sorted, 90)),
            millis(percentile(&sorted, 99)),
            millis(sorted.last().copied().unwrap_or_default()),
            answers.join(", ")
        );
    }
    if figures.transport_errors > 0 {
        println!("{} requests got no answer", figures.transport_errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_machine_is_loopback() {
        for url in [
            "http://127.0.0.1:3000",
            "http://localhost:8080/x",
            "http://[::1]:1",
        ] {
            assert!(is_loopback(&reqwest::Url::parse(url).unwrap()), "{url}");
        }
        for url in [
            "https://abc.execute-api.eu-west-1.amazonaws.com",
            "http://10.0.0.1",
            "http://0.0.0.0",
        ] {
            assert!(!is_loopback(&reqwest::Url::parse(url).unwrap()), "{url}");
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 50), Duration::from_millis(50));
        assert_eq!(percentile(&values, 99), Duration::from_millis(99));
        assert_eq!(percentile(&values, 100), Duration::from_millis(100));
        assert_eq!(percentile(&[], 50), Duration::ZERO);
    }
}
