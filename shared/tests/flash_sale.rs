//! The flash sale, small and deterministic (the benchmark's simulation, `benches/flash_sale.rs`):
//! 32 processes sell an item of 2,000 units split into 4 buckets to buyers without end. Not a
//! timed test: it holds the promise, whatever the speed. Every unit is sold, none twice, no
//! buyer is refused while a unit is left, none is answered 503, and the store holds exactly the
//! holds that were acknowledged.

use std::time::Duration;

use inventory_core::domain::BucketCount;
use inventory_core::simulation::{Design, FlashSale, SaleReport, StoreModel};

fn simulate(design: Design, seed: u64) -> SaleReport {
    simulate_at(design, 1, seed)
}

fn simulate_at(design: Design, locations: usize, seed: u64) -> SaleReport {
    let sale = FlashSale {
        design,
        processes: 32,
        units: 2_000,
        locations,
        model: StoreModel::default(),
        seed,
        time_limit: Duration::from_secs(600),
    };
    sale.simulate()
}

#[test]
fn thirty_two_processes_sell_a_four_bucket_item_exactly_out_refusing_no_one_while_stock_is_left() {
    for seed in [1, 2, 3] {
        let report = simulate(Design::Ours(BucketCount::new(4).expect("4")), seed);
        assert!(report.sold_out, "seed {seed}: {report:?}");
        assert_eq!(report.sold, 2_000, "seed {seed}");
        assert_eq!(
            report.held_in_store, 2_000,
            "seed {seed}: acknowledged = held"
        );
        assert_eq!(report.oversold(), 0, "seed {seed}");
        assert_eq!(report.refused_with_stock, 0, "seed {seed}: {report:?}");
        assert_eq!(report.unavailable, 0, "seed {seed}: {report:?}");
    }
}

#[test]
fn an_item_at_two_warehouses_each_split_in_four_sells_exactly_out_of_both_refusing_no_one_while_stock_is_left(
) {
    for seed in [1, 2] {
        let report = simulate_at(Design::Ours(BucketCount::new(4).expect("4")), 2, seed);
        assert!(report.sold_out, "seed {seed}: {report:?}");
        assert_eq!(
            (report.sold, report.held_in_store),
            (2_000, 2_000),
            "seed {seed}: every unit of both, acknowledged = held"
        );
        assert_eq!(report.oversold(), 0, "seed {seed}");
        assert_eq!(report.refused_with_stock, 0, "seed {seed}: {report:?}");
        assert_eq!(report.unavailable, 0, "seed {seed}: {report:?}");
    }
}

#[test]
fn a_simulation_is_the_same_run_for_the_same_seed() {
    let design = Design::Ours(BucketCount::new(4).expect("4"));
    assert_eq!(simulate(design, 7), simulate(design, 7));
}
