//! Pattern invalidation in the in-process tier: the cost of removing one
//! tenant's keys (10, `orders:list:<tenant>:*`) from a tier of 1,000,
//! 100,000 and 1,000,000 entries, with each engine, and the cost of a hit
//! right after (no predicate is left behind for reads); the first such
//! invalidation, which builds the quick_cache engine's index of keys, is
//! timed once.
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

/// Keys per tenant: the pages of one tenant's order lists.
const PER_TENANT: u32 = 10;
/// The sizes of the in-process tier the invalidation is measured at.
const SIZES: [u32; 3] = [1_000, 100_000, 1_000_000];

fn tenant_key(t: u32, i: u32) -> String {
    format!("orders:list:t{t}:p{i}")
}

fn filled(engine: Engine, entries: u32, rt: &tokio::runtime::Runtime) -> Cache {
    let cache = Cache::builder()
        .engine(engine)
        .l1_max_bytes(4 << 30)
        .l1_max_entries(u64::from(entries) * 2)
        .build()
        .unwrap();
    rt.block_on(async {
        for t in 0..entries / PER_TENANT {
            for i in 0..PER_TENANT {
                cache
                    .set(&tenant_key(t, i), i, Duration::from_secs(3600))
                    .await;
            }
        }
    });
    cache
}

/// Resident memory of this process, in bytes (Linux).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn invalidate(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("invalidate/prefix");
    group.sample_size(10);
    let mut first = Vec::new();
    for entries in SIZES {
        for engine in [Engine::QuickCache, Engine::Moka] {
            let cache = filled(engine, entries, &rt);
            // The first pattern with a literal prefix builds the quick_cache
            // engine's index of keys: timed once, with what it adds to the
            // resident memory.
            let (before, started) = (resident_bytes(), Instant::now());
            let removed = rt.block_on(cache.invalidate("orders:list:t3:*")).unwrap();
            assert_eq!(removed, u64::from(PER_TENANT));
            first.push((
                engine,
                entries,
                started.elapsed(),
                resident_bytes().saturating_sub(before),
            ));
            group.bench_function(format!("{engine:?} {entries} entries: 10 keys"), |b| {
                b.iter_batched(
                    || {
                        // Put back what the previous iteration removed.
                        rt.block_on(async {
                            for i in 0..PER_TENANT {
                                cache
                                    .set(&tenant_key(7, i), i, Duration::from_secs(3600))
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
            group.bench_function(format!("{engine:?} {entries} entries: hit after"), |b| {
                b.iter(|| black_box(rt.block_on(cache.get::<u32>(black_box("orders:list:t8:p5")))))
            });
        }
    }
    group.finish();
    println!("the first prefix invalidation (quick_cache builds its index of keys then):");
    for (engine, entries, took, grew) in first {
        println!(
            "  {engine:?} {entries:>9} entries: {:>9.1} us, resident memory +{:.1} MiB",
            took.as_secs_f64() * 1e6,
            grew as f64 / (1 << 20) as f64
        );
    }
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
