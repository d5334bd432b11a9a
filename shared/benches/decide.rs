//! Deciding one reservation on a SKU with few and with very many active holds, and the size of
//! that SKU's folded state. Run: `cargo bench -p inventory-core --bench decide`.

#![allow(
    missing_docs,
    reason = "criterion_group! makes an undocumented function"
)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};

use inventory_core::domain::decide::place_hold;
use inventory_core::domain::Annotation;
use inventory_core::domain::{
    Change, ClientId, CommandId, Event, HoldTerms, Quantity, ReservationId, Sku, SkuState,
    StreamId, Timestamp, TtlSeconds,
};

const GRACE_SECS: i64 = 120;

/// A SKU with `holds` active single-unit holds placed 10 ms apart, as in a flash sale.
fn sku_with_active_holds(holds: u64) -> SkuState {
    let sku = Sku::parse("FLASH-1").expect("valid sku");
    let one = Quantity::new(1).expect("valid quantity");
    let mut state = SkuState::default();
    state.evolve(&Event {
        actor: None,
        figures: None,
        stream: StreamId::of(&sku.clone()),
        seq: 1,
        at: Timestamp::from_millis(0),
        change: Change::StockReceived {
            command_id: CommandId::random(),
            quantity: Quantity::new(1_000_000).expect("valid quantity"),
            why: Annotation::received(None),
        },
    });
    for i in 0..holds {
        let at = Timestamp::from_millis(i as i64 * 10);
        let terms = HoldTerms::new(at, TtlSeconds::DEFAULT, GRACE_SECS);
        state.evolve(&Event {
            actor: None,
            figures: None,
            stream: StreamId::of(&sku.clone()),
            seq: i + 2,
            at,
            change: Change::HoldPlaced {
                reservation_id: ReservationId::new(StreamId::of(&sku.clone()), i + 2, i),
                quantity: one,
                expires_at: terms.expires_at,
                release_at: terms.release_at,
                lines: Vec::new(),
                owner: None,
            },
        });
    }
    state
}

fn decide_one_reservation(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide_reservation");
    for holds in [10u64, 100_000] {
        let state = sku_with_active_holds(holds);
        let size = serde_json::to_vec(&state).expect("serializable").len();
        println!(
            "state with {holds} active holds: {} release buckets, {size} bytes as JSON",
            state.bucket_count()
        );
        let sku = Sku::parse("FLASH-1").expect("valid sku");
        let now = state.clock;
        let terms = HoldTerms::new(now, TtlSeconds::DEFAULT, GRACE_SECS);
        let id = ReservationId::new(StreamId::of(&sku), state.version + 1, 7);
        let one = Quantity::new(1).expect("valid quantity");
        let owner = ClientId::parse("storefront").expect("valid client id");
        group.bench_with_input(BenchmarkId::from_parameter(holds), &state, |b, state| {
            b.iter(|| {
                place_hold(
                    black_box(state),
                    black_box(&id),
                    one,
                    terms,
                    Vec::new(),
                    &owner,
                    black_box(now),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decide_one_reservation);
criterion_main!(benches);
