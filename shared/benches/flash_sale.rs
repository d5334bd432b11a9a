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
    for n in processes {
        let designs = [
            Design::Seed,
            Design::Ours(BucketCount::ONE),
            Design::Ours(BucketCount::recommended(n, UNITS)),
            Design::Ours(BucketCount::new(16).expect("16 buckets")),
        ];
        for design in designs {
            let sale = FlashSale {
                design,
                processes: n,
                units: UNITS,
                model,
                seed: SEED,
                time_limit: Duration::from_secs(600),
            };
            print_row(&simulate(sale));
        }
    }
}

fn simulate(sale: FlashSale) -> SaleReport {
    sale.simulate()
}

fn print_row(report: &SaleReport) {
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1_000.0);
    println!(
        "| {} | {} | {:.0} | {:.2} (+{:.3}) | {} | {} | {} | {} | {} | {} | {} | {} |",
        report.processes,
        report.design,
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
