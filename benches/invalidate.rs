//! Pattern invalidation in the in-process tier: the cost of removing one
//! tenant's keys (1,000) from a tier of 100,000, with each engine, and the
//! cost of a hit right after (no predicate is left behind for reads).
//!
//! Then, as a one-shot table, what a costly pattern makes others wait: the
//! costliest pattern the limits allow (`*` + 255 `?` + `b`) matched
//! against 10,000 keys of 1 KiB, while another thread times each of its
//! hits and sets on other keys; the longest of each, against the longest
//! in a run of the same length with no invalidation (the machine's own
//! noise, measured in the same run).
//!
//! Run: `cargo bench --bench invalidate`.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, Engine, Pattern, MAX_KEY_BYTES};
use criterion::{BatchSize, Criterion};

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

/// Long keys for the costly pattern.
const LONG_KEYS: usize = 10_000;

/// Times hits and sets on keys the costly pattern does not match until
/// `stop`; the longest of each.
fn longest_waits(cache: &Cache, stop: &AtomicBool) -> (Duration, Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ttl = Duration::from_secs(3600);
    let (mut hit, mut set) = (Duration::ZERO, Duration::ZERO);
    let mut i = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        black_box(rt.block_on(cache.get::<u32>("hot")));
        hit = hit.max(started.elapsed());
        let started = Instant::now();
        rt.block_on(cache.set(&format!("w:{}", i % 1024), i, ttl));
        set = set.max(started.elapsed());
        i = i.wrapping_add(1);
    }
    (hit, set)
}

fn lock_hold() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let cache = Cache::builder().l1_max_bytes(1 << 30).build().unwrap();
    let ttl = Duration::from_secs(3600);
    rt.block_on(async {
        cache.set("hot", 1u32, ttl).await;
        for i in 0..LONG_KEYS {
            let mut key = format!("{i}:{}", "a".repeat(MAX_KEY_BYTES));
            key.truncate(MAX_KEY_BYTES);
            cache.set(&key, 1u32, ttl).await;
        }
    });
    let pattern = format!("*{}b", "?".repeat(Pattern::MAX_TAIL_LEN - 1));
    let stop = AtomicBool::new(false);
    let (took, during) = std::thread::scope(|s| {
        let waits = s.spawn(|| longest_waits(&cache, &stop));
        let started = Instant::now();
        let removed = rt.block_on(cache.invalidate(&pattern)).unwrap();
        let took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        assert_eq!(removed, 0);
        (took, waits.join().unwrap())
    });
    stop.store(false, Ordering::Relaxed);
    let quiet = std::thread::scope(|s| {
        let waits = s.spawn(|| longest_waits(&cache, &stop));
        std::thread::sleep(took);
        stop.store(true, Ordering::Relaxed);
        waits.join().unwrap()
    });
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "costliest pattern over {LONG_KEYS} keys of {MAX_KEY_BYTES} bytes (quick_cache): the invalidation took {:.0} ms",
        took.as_secs_f64() * 1e3
    );
    println!("                      longest hit    longest set");
    println!(
        "  during it           {:>8.0} us    {:>8.0} us",
        us(during.0),
        us(during.1)
    );
    println!(
        "  no invalidation     {:>8.0} us    {:>8.0} us",
        us(quiet.0),
        us(quiet.1)
    );
}

fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    invalidate(&mut c);
    c.final_summary();
    lock_hold();
}
