//! The cost of a hit, side by side in one run:
//!
//! - a `#[cached]` hit with each in-process engine (quick_cache, moka),
//!   and of an `async fn`;
//! - raw moka, quick_cache and dashmap lookups of the same keys;
//! - the `cached` crate's `#[cached]` hit with a tuple key and with a
//!   `format!` key, and of an `async fn` (tuple key);
//!
//! single-threaded (`hit/1-thread`) and with two threads hitting at once
//! (`hit/2-threads`, time per lookup across both threads: lower is more
//! throughput). Before the timings it prints the hit ratio of each engine
//! on a skewed (Zipf) trace, the other half of the engine choice.
//!
//! Run: `cargo bench --bench hit`.

use std::hint::black_box;
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

use cache_runtime::{cached, Cache, Engine, NamespaceConfig};
use criterion::{criterion_group, Criterion};

/// Distinct keys cycled through, all cached before timing starts.
const KEYS: u64 = 1024;

#[cached(ttl = "1h", key = "bench:<tenant>:<id>")]
fn ours_quick(tenant: u64, id: u64) -> u64 {
    tenant * 31 + id
}

#[cached(ttl = "1h", key = "bench:<tenant>:<id>", cache = "moka")]
fn ours_moka(tenant: u64, id: u64) -> u64 {
    tenant * 31 + id
}

#[cached(ttl = "1h", key = "bench:<tenant>:<id>")]
async fn ours_async(tenant: u64, id: u64) -> u64 {
    tenant * 31 + id
}

#[cached::macros::cached(max_size = 100_000, ttl_secs = 3600)]
fn theirs_tuple(tenant: u64, id: u64) -> u64 {
    tenant * 31 + id
}

#[cached::macros::cached(max_size = 100_000, ttl_secs = 3600)]
async fn theirs_async(tenant: u64, id: u64) -> u64 {
    tenant * 31 + id
}

#[cached::macros::cached(
    max_size = 100_000,
    ttl_secs = 3600,
    key = "String",
    convert = r#"{ format!("bench:{tenant}:{id}") }"#
)]
fn theirs_format(tenant: u64, id: u64) -> u64 {
    tenant * 31 + id
}

fn key(i: u64) -> String {
    format!("bench:{}:{}", i % 7, i)
}

struct Raw {
    moka: moka::sync::Cache<String, u64>,
    quick: quick_cache::sync::Cache<String, u64>,
    dash: dashmap::DashMap<String, u64>,
    keys: Vec<String>,
}

fn raw() -> &'static Raw {
    static RAW: OnceLock<Raw> = OnceLock::new();
    RAW.get_or_init(|| {
        let raw = Raw {
            moka: moka::sync::Cache::new(100_000),
            quick: quick_cache::sync::Cache::new(100_000),
            dash: dashmap::DashMap::new(),
            keys: (0..KEYS).map(key).collect(),
        };
        for (i, k) in raw.keys.iter().enumerate() {
            raw.moka.insert(k.clone(), i as u64);
            raw.quick.insert(k.clone(), i as u64);
            raw.dash.insert(k.clone(), i as u64);
        }
        raw
    })
}

fn setup() {
    let cache = Cache::builder()
        .namespace("moka", NamespaceConfig::new().engine(Engine::Moka))
        .build()
        .expect("cache");
    let _ = cache.set_global();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for i in 0..KEYS {
        ours_quick(i % 7, i);
        ours_moka(i % 7, i);
        rt.block_on(ours_async(i % 7, i));
        rt.block_on(theirs_async(i % 7, i));
        theirs_tuple(i % 7, i);
        theirs_format(i % 7, i);
    }
    raw();
}

/// Polls a future that completes at once (a hit), without a runtime, so
/// that the figure is the hit's cost and not an executor's.
fn poll_once<F: std::future::Future>(future: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("a hit completes on its first poll"),
    }
}

/// One lookup of the `i`-th key by each contender.
type Lookup = (&'static str, fn(u64) -> u64);

fn contenders() -> Vec<Lookup> {
    vec![
        ("ours quick_cache", |i| ours_quick(i % 7, i)),
        ("ours moka", |i| ours_moka(i % 7, i)),
        ("raw quick_cache get", |i| {
            raw().quick.get(raw().keys[i as usize].as_str()).unwrap()
        }),
        ("raw moka get", |i| {
            raw().moka.get(raw().keys[i as usize].as_str()).unwrap()
        }),
        ("raw dashmap get+clone", |i| {
            *raw().dash.get(raw().keys[i as usize].as_str()).unwrap()
        }),
        ("cached crate tuple key", |i| theirs_tuple(i % 7, i)),
        ("cached crate format! key", |i| theirs_format(i % 7, i)),
    ]
}

fn single_thread(c: &mut Criterion) {
    setup();
    let mut group = c.benchmark_group("hit/1-thread");
    for (name, lookup) in contenders() {
        group.bench_function(name, |b| {
            let mut i = 0u64;
            b.iter(|| {
                i = (i + 1) % KEYS;
                black_box(lookup(black_box(i)))
            })
        });
    }
    group.bench_function("ours async fn, quick_cache", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(poll_once(ours_async(i % 7, black_box(i))))
        })
    });
    group.bench_function("cached crate async fn, tuple key", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(poll_once(theirs_async(i % 7, black_box(i))))
        })
    });
    group.finish();
}

fn two_threads(c: &mut Criterion) {
    setup();
    let mut group = c.benchmark_group("hit/2-threads");
    for (name, lookup) in contenders() {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let barrier = Barrier::new(2);
                let per_thread = iters.div_ceil(2);
                let elapsed = std::thread::scope(|s| {
                    let workers: Vec<_> = (0..2u64)
                        .map(|t| {
                            let barrier = &barrier;
                            s.spawn(move || {
                                barrier.wait();
                                let start = Instant::now();
                                let mut i = t * 512;
                                for _ in 0..per_thread {
                                    i = (i + 1) % KEYS;
                                    black_box(lookup(black_box(i)));
                                }
                                start.elapsed()
                            })
                        })
                        .collect();
                    workers
                        .into_iter()
                        .map(|w| w.join().unwrap())
                        .max()
                        .unwrap()
                });
                // Wall time of `iters` lookups spread over two threads.
                elapsed.mul_f64(iters as f64 / (per_thread * 2) as f64)
            })
        });
    }
    group.finish();
}

/// Hit ratio of each engine on a Zipf(1.0) trace over 100,000 keys with
/// room for about 10% of them.
fn hit_ratios() {
    const KEYSPACE: usize = 100_000;
    const REQUESTS: usize = 1_000_000;
    let weights: Vec<f64> = (1..=KEYSPACE).map(|rank| 1.0 / rank as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(KEYSPACE);
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cdf.push(acc);
    }
    let mut rng = fastrand::Rng::with_seed(7);
    let trace: Vec<usize> = (0..REQUESTS)
        .map(|_| {
            let x = rng.f64();
            // Scatter ranks over the key space so popularity is not sorted.
            cdf.partition_point(|&c| c < x).min(KEYSPACE - 1) * 7919 % KEYSPACE
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    println!(
        "hit ratio on a Zipf(1.0) trace, {REQUESTS} requests over {KEYSPACE} keys, room for ~10%:"
    );
    for engine in [Engine::QuickCache, Engine::Moka] {
        let cache = Cache::builder()
            .engine(engine)
            .l1_max_entries(KEYSPACE as u64 / 10)
            .build()
            .unwrap();
        let start = Instant::now();
        rt.block_on(async {
            for &k in &trace {
                let key = format!("z:{k}");
                if cache.get::<u64>(&key).await.is_none() {
                    cache.set(&key, k as u64, Duration::from_secs(3600)).await;
                }
            }
        });
        let stats = cache.stats();
        println!(
            "  {engine:?}: hit ratio {:.3}, {} entries held, {:?} for the trace",
            stats.hit_rate(),
            stats.entries,
            start.elapsed()
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = single_thread, two_threads
}

fn main() {
    hit_ratios();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
