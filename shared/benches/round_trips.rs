//! Store round trips per reservation on DynamoDB (moto), counted by an SDK interceptor.
//! Counts, not timings: moto is nearly single-threaded, so only the request counts and the
//! outcomes are figures worth keeping. Run: `./scripts/bench-round-trips`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use inventory_core::app::ReserveRequest;
use inventory_core::aws::{local_config, test_endpoint, DynamoStore, RequestCounter};
use inventory_core::domain::{
    Action, Command, CommandId, Line, Quantity, Sku, Timestamp, TtlSeconds,
};
use inventory_core::memory::MemoryQueue;
use inventory_core::ports::SystemClock;
use inventory_core::{AppError, Config, Inventory};
use tokio::sync::Semaphore;

struct Backend {
    sdk: aws_config::SdkConfig,
    table: String,
    counter: RequestCounter,
}

impl Backend {
    async fn new(name: &str) -> Self {
        let sdk = local_config(&test_endpoint()).await;
        let table = format!("bench-{name}-{}", uuid::Uuid::new_v4().simple());
        let counter = RequestCounter::default();
        DynamoStore::new(counter.client(&sdk), &table)
            .create_table_if_missing()
            .await
            .expect("table");
        Self {
            sdk,
            table,
            counter,
        }
    }

    /// One service process (its own cache and per-SKU turns) on the shared table.
    fn process(&self) -> Inventory {
        Inventory::new(
            Arc::new(DynamoStore::new(
                self.counter.client(&self.sdk),
                &self.table,
            )),
            Arc::new(MemoryQueue::new()),
            Arc::new(SystemClock),
            Config::default(),
        )
    }
}

fn sku() -> Sku {
    Sku::parse("HOT-1").expect("valid sku")
}

async fn receive(inventory: &Inventory, units: i64) {
    let command = Command {
        id: CommandId::random(),
        sku: sku(),
        accepted_at: Timestamp::from_millis(0),
        action: Action::ReceiveStock {
            quantity: Quantity::new(units).expect("valid quantity"),
            reference: None,
        },
    };
    inventory
        .apply_commands(&sku(), &[command])
        .await
        .expect("stock received");
}

fn one_unit() -> ReserveRequest {
    let line = Line {
        sku: sku(),
        quantity: Quantity::new(1).expect("valid quantity"),
    };
    ReserveRequest::new(vec![line], TtlSeconds::DEFAULT, None).expect("valid request")
}

#[derive(Default)]
struct Outcome {
    sold: u64,
    refused_sold_out: u64,
    refused_with_stock_left: u64,
    contention: u64,
    requests: u64,
    wall: Duration,
}

impl Outcome {
    fn print(&self, scenario: &str) {
        println!(
            "| {scenario} | {} | {} | {} | {} | {} | {:.2} | {:.1?} |",
            self.sold,
            self.refused_sold_out,
            self.refused_with_stock_left,
            self.contention,
            self.requests,
            self.requests as f64 / self.sold.max(1) as f64,
            self.wall
        );
    }
}

/// `buyers` single-unit reservations, at most `in_flight` at a time, spread round-robin over
/// `processes`; each answer is sorted into sold / refused (sold out or not) / contention.
async fn run(
    backend: &Backend,
    processes: &[Inventory],
    buyers: usize,
    in_flight: usize,
) -> Outcome {
    let before = backend.counter.count();
    let gate = Arc::new(Semaphore::new(in_flight));
    let started = Instant::now();
    let answers = join_all((0..buyers).map(|buyer| {
        let gate = Arc::clone(&gate);
        let inventory = &processes[buyer % processes.len()];
        async move {
            let _permit = gate.acquire().await.expect("gate open");
            inventory.reserve(one_unit()).await
        }
    }))
    .await;
    let mut outcome = Outcome {
        wall: started.elapsed(),
        requests: backend.counter.count() - before,
        ..Outcome::default()
    };
    for answer in answers {
        match answer {
            Ok(_) => outcome.sold += 1,
            Err(AppError::InsufficientStock { available: 0, .. }) => outcome.refused_sold_out += 1,
            Err(AppError::InsufficientStock { .. }) => outcome.refused_with_stock_left += 1,
            Err(AppError::Contention) => outcome.contention += 1,
            Err(other) => panic!("unexpected answer {other:?}"),
        }
    }
    outcome
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("| scenario | sold | refused, sold out | refused with stock left | 503 contention | DynamoDB requests | requests per sale | wall (moto) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");

    let backend = Backend::new("warm").await;
    let process = backend.process();
    receive(&process, 10_000).await;
    process.reserve(one_unit()).await.expect("warm-up");
    run(&backend, std::slice::from_ref(&process), 200, 1)
        .await
        .print("uncontended, warm process, 200 sequential");

    let backend = Backend::new("sixteen").await;
    let process = backend.process();
    receive(&process, 10_000).await;
    run(&backend, std::slice::from_ref(&process), 320, 16)
        .await
        .print("16 concurrent clients, one process");

    let backend = Backend::new("flash").await;
    let process = backend.process();
    receive(&process, 100).await;
    run(&backend, std::slice::from_ref(&process), 300, 32)
        .await
        .print("flash sale: 300 buyers, 100 units, 32 at a time, one process");

    let backend = Backend::new("flash4").await;
    let processes: Vec<Inventory> = (0..4).map(|_| backend.process()).collect();
    receive(&processes[0], 100).await;
    run(&backend, &processes, 300, 32)
        .await
        .print("flash sale, spread over 4 processes");

    let backend = Backend::new("flash32").await;
    let processes: Vec<Inventory> = (0..32).map(|_| backend.process()).collect();
    receive(&processes[0], 100).await;
    run(&backend, &processes, 300, 32)
        .await
        .print("flash sale, 32 processes (one Lambda per buyer in flight)");
}
