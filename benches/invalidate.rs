//! Pattern invalidation in the in-process tier: the cost of removing one
//! tenant's keys (1,000) from a tier of 100,000, with each engine, and the
//! cost of a hit right after (no predicate is left behind for reads).
//!
//! Run: `cargo bench --bench invalidate`.

use std::hint::black_box;
use std::time::Duration;

use cache_runtime::{Cache, Engine};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

const TENANTS: u32 = 100;
const PER_TENANT: u32 = 1_000;

fn filled(engine: Engine, rt: &tokio::runtime::Runtime) -> Cache {
    let cache = Cache::builder()
        .engine(engine)
        .l1_max_bytes(1 << 30)
        .build()
        .unwrap();
    rt.block_on(async {
        for t in 0..TENANTS {
            for i in 0..PER_TENANT {
                cache
                    .set(
                        &format!("orders:list:t{t}:p{i}"),
                        i,
                        Duration::from_secs(3600),
                    )
                    .await;
            }
        }
    });
    cache
}

fn invalidate(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("invalidate/1k-of-100k");
    group.sample_size(10);
    for engine in [Engine::QuickCache, Engine::Moka] {
        let cache = filled(engine, &rt);
        group.bench_function(format!("{engine:?} pattern"), |b| {
            b.iter_batched(
                || {
                    // Put back what the previous iteration removed.
                    rt.block_on(async {
                        for i in 0..PER_TENANT {
                            cache
                                .set(
                                    &format!("orders:list:t7:p{i}"),
                                    i,
                                    Duration::from_secs(3600),
                                )
                                .await;
                        }
                    })
                },
                |()| {
                    let removed = rt.block_on(cache.invalidate("orders:list:t7:*")).unwrap();
                    assert_eq!(removed, u64::from(PER_TENANT));
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function(format!("{engine:?} hit after invalidation"), |b| {
            b.iter(|| black_box(rt.block_on(cache.get::<u32>(black_box("orders:list:t8:p5")))))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = invalidate
}
criterion_main!(benches);
