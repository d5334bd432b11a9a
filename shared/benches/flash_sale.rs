//! The flash sale, simulated (see `inventory_core::simulation`): one item of 50,000 units, an
//! endless queue of buyers, N processes; the seed design, ours with one bucket, ours with the
//! layout our design picks for N, and ours with 16 buckets, in one run. Virtual time: the
//! figures are the same on every machine. Prints the table of docs/benchmarks.md.
//!
//! `cargo bench -p inventory-core --bench flash_sale` (all of it), or name the process counts:
//! `cargo bench -p inventory-core --bench flash_sale -- 32 256`.

use std::time::Duration;

use inventory_core::domain::BucketCount;
use inventory_core::simulation::{Design, FlashSale, SaleReport, StoreModel};

const UNITS: i64 = 50_000;
const SEED: u64 = 20_261_202;

fn main() {
    let processes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let processes = if processes.is_empty() {
        vec![32, 256, 1_024]
    } else {
        processes
    };
    let model = StoreModel::default();
    println!(
        "One item, {UNITS} units, one-unit buyers without end; store round trip {} ms, {} writes/s per partition key, throttled writes retried as the SDK does ({} attempts, back-off from {} s).\n",
        model.round_trip.as_millis(),
        model.writes_per_key_per_second,
        model.sdk_attempts,
        model.sdk_first_backoff.as_secs_f64(),
    );
    println!("| N | design | sales/s | requests/sale (+ reactions) | throttled | p50 | p99 | 503s | refused with stock | oversold | last 1% | sold out |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut reports = Vec::new();
    for n in processes {
        let mut designs = vec![
            Design::Seed,
            Design::Ours(BucketCount::ONE),
            Design::Ours(BucketCount::recommended(n, UNITS)),
            Design::Ours(BucketCount::new(16).expect("16 buckets")),
        ];
        designs.dedup();
        for design in designs {
            let sale = FlashSale {
                design,
                processes: n,
                units: UNITS,
                locations: 1,
                model,
                seed: SEED,
                time_limit: Duration::from_secs(600),
            };
            let report = simulate(sale);
            print_row(&report, 1);
            reports.push(report);
        }
        // The same units over two warehouses, each laid out as our design picks for N (the
        // buyers allocated: the first warehouse by priority, then the second).
        let sale = FlashSale {
            design: Design::Ours(BucketCount::recommended(n, UNITS / 2)),
            processes: n,
            units: UNITS,
            locations: 2,
            model,
            seed: SEED,
            time_limit: Duration::from_secs(600),
        };
        let report = simulate(sale);
        print_row(&report, 2);
        reports.push(report);
    }
    print_costs(&reports);
}

fn simulate(sale: FlashSale) -> SaleReport {
    sale.simulate()
}

/// AWS list prices in us-east-1, on-demand, as published on 2026-12-03 (DynamoDB's since its
/// price cut of 2024-11-01), in dollars.
mod prices {
    /// DynamoDB on demand: a million write request units.
    pub const DYNAMODB_MILLION_WRITE_UNITS: f64 = 0.625;
    /// DynamoDB on demand: a million read request units.
    pub const DYNAMODB_MILLION_READ_UNITS: f64 = 0.125;
    /// API Gateway HTTP API: a million requests (the first 300 million a month).
    pub const HTTP_API_MILLION_REQUESTS: f64 = 1.00;
    /// Lambda: a million requests.
    pub const LAMBDA_MILLION_REQUESTS: f64 = 0.20;
    /// Lambda on arm64: a GB-second (the first 6 billion a month).
    pub const LAMBDA_ARM64_GB_SECOND: f64 = 0.000_013_333_4;
    /// The API function's memory (template.yaml), in GB.
    pub const API_FUNCTION_GB: f64 = 0.25;
}

/// What a million units sold cost, by service, from what the run counted: every buyer answered
/// is an HTTP API request and a Lambda request, billed for its answer time; the store's read and
/// write units (the snapshotter's included).
struct Cost {
    answered_per_sale: f64,
    millis_per_sale: f64,
    read_units_per_sale: f64,
    write_units_per_sale: f64,
}

impl Cost {
    fn of(report: &SaleReport) -> Self {
        let sold = report.sold.max(1) as f64;
        Self {
            answered_per_sale: report.answered() as f64 / sold,
            millis_per_sale: report.billed_millis() as f64 / sold,
            read_units_per_sale: report.counts.read_units as f64 / sold,
            write_units_per_sale: report.counts.write_units as f64 / sold,
        }
    }

    fn api(&self) -> f64 {
        self.answered_per_sale * prices::HTTP_API_MILLION_REQUESTS
    }

    fn lambda(&self) -> f64 {
        self.answered_per_sale * prices::LAMBDA_MILLION_REQUESTS
            + self.millis_per_sale
                * prices::API_FUNCTION_GB
                * prices::LAMBDA_ARM64_GB_SECOND
                * 1_000.0
    }

    fn dynamodb(&self) -> f64 {
        self.read_units_per_sale * prices::DYNAMODB_MILLION_READ_UNITS
            + self.write_units_per_sale * prices::DYNAMODB_MILLION_WRITE_UNITS
    }
}

fn print_costs(reports: &[SaleReport]) {
    println!("\nWhat a million units sold cost (us-east-1 list prices of 2026-12-03: DynamoDB on demand ${}/M write units, ${}/M read units; HTTP API ${}/M requests; Lambda arm64 ${}/M requests, ${}/GB-s at {} GB):\n",
        prices::DYNAMODB_MILLION_WRITE_UNITS,
        prices::DYNAMODB_MILLION_READ_UNITS,
        prices::HTTP_API_MILLION_REQUESTS,
        prices::LAMBDA_MILLION_REQUESTS,
        prices::LAMBDA_ARM64_GB_SECOND,
        prices::API_FUNCTION_GB,
    );
    println!("| N | design | answers per sale | Lambda ms per sale | read units per sale | write units per sale | HTTP API | Lambda | DynamoDB | per million sold |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for report in reports {
        let cost = Cost::of(report);
        println!(
            "| {} | {} | {:.2} | {:.1} | {:.2} | {:.2} | ${:.2} | ${:.2} | ${:.2} | **${:.2}** |",
            report.processes,
            report.design,
            cost.answered_per_sale,
            cost.millis_per_sale,
            cost.read_units_per_sale,
            cost.write_units_per_sale,
            cost.api(),
            cost.lambda(),
            cost.dynamodb(),
            cost.api() + cost.lambda() + cost.dynamodb(),
        );
    }
}

/// A row of the table; `locations`: the warehouses the units were spread over.
fn print_row(report: &SaleReport, locations: usize) {
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1_000.0);
    let design = match locations {
        1 => report.design.to_string(),
        n => format!("{}, at each of {n} warehouses", report.design),
    };
    println!(
        "| {} | {} | {:.0} | {:.2} (+{:.3}) | {} | {} | {} | {} | {} | {} | {} | {} |",
        report.processes,
        design,
        report.sales_per_second(),
        report.requests_per_sale(),
        report.all_requests_per_sale() - report.requests_per_sale(),
        report.counts.throttled,
        ms(report.answer_percentile(50.0)),
        ms(report.answer_percentile(99.0)),
        report.unavailable,
        report.refused_with_stock,
        report.oversold(),
        ms(report.last_percent),
        if report.sold_out {
            format!("yes, {:.1} s", report.duration.as_secs_f64())
        } else {
            format!(
                "no: {} of {} in {:.0} s",
                report.sold,
                report.units,
                report.duration.as_secs_f64()
            )
        },
    );
}
