//! Batch loading against one id at a time, in one run, on one throwaway
//! `redis-server` (started on a free loopback port, stopped by its pid):
//!
//! 1. `batch/in-process`: a page of 50 products, 40 of them in the
//!    in-process tier and 10 not (invalidated before each call), through
//!    `#[cached(batch = "ids")]` (one origin call with the 10), against
//!    50 calls of the single-id `#[cached]` function one after another and
//!    all at once (`join_all`, 10 origin calls). The origin sleeps 1 ms
//!    per call, as a query on a database would take.
//! 2. `batch/redis`: 50 products all in Redis and none in process
//!    (`tier = "l2"`), through the batch function (one `MGET`), the
//!    single-id function one after another and all at once, and a raw
//!    `MGET` of the same 50 keys on the redis crate.
//!
//! Criterion reports the time per page; the origin calls per page are
//! printed after it.
//!
//! Run: `cargo bench --bench batch` (needs `redis-server` on the PATH, or
//! `REDIS_SERVER`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::{cached, Backend, Cache};
use criterion::Criterion;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use support::RedisServer;

const PAGE: u64 = 50;
const CACHED: u64 = 40;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
    cents: u64,
}

static ORIGIN_CALLS: AtomicU64 = AtomicU64::new(0);

/// One query, for any number of ids.
async fn query(ids: &[u64]) -> HashMap<u64, Product> {
    ORIGIN_CALLS.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1)).await;
    ids.iter()
        .map(|&id| {
            let name = format!("product {id}");
            (
                id,
                Product {
                    id,
                    name,
                    cents: id * 100,
                },
            )
        })
        .collect()
}

#[cached(ttl = "1h", key = "product:<ids>", batch = "ids")]
async fn products(ids: &[u64]) -> HashMap<u64, Product> {
    query(ids).await
}

#[cached(ttl = "1h", key = "product:<id>")]
async fn product(id: u64) -> Option<Product> {
    query(&[id]).await.remove(&id)
}

#[cached(ttl = "1h", key = "remote:<ids>", batch = "ids", tier = "l2")]
async fn remote_products(ids: &[u64]) -> HashMap<u64, Product> {
    query(ids).await
}

#[cached(ttl = "1h", key = "remote:<id>", tier = "l2")]
async fn remote_product(id: u64) -> Option<Product> {
    query(&[id]).await.remove(&id)
}

fn page() -> Vec<u64> {
    (0..PAGE).collect()
}

/// Times `iters` pages, with `before` (untimed) ahead of each.
fn timed<B, P>(
    rt: &tokio::runtime::Runtime,
    cache: &Cache,
    iters: u64,
    before: impl Fn() -> B,
    page: impl Fn() -> P,
) -> Duration
where
    B: std::future::Future<Output = ()>,
    P: std::future::Future<Output = usize>,
{
    rt.block_on(cache.scope(async {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            before().await;
            let started = Instant::now();
            let found = page().await;
            total += started.elapsed();
            assert_eq!(found as u64, PAGE);
        }
        total
    }))
}

/// The ids past the first 40 leave both tiers.
async fn forget(cache: &Cache) {
    for id in CACHED..PAGE {
        cache.delete(&format!("product:{id}")).await;
    }
}

fn in_process(c: &mut Criterion, rt: &tokio::runtime::Runtime, cache: &Cache) {
    rt.block_on(cache.scope(products(&page())));
    // The 10 ids past the first 40 leave the in-process tier.
    let forget = || async { forget(cache).await };
    let mut group = c.benchmark_group("batch/in-process");
    group.bench_function("batch", |b| {
        b.iter_custom(|n| {
            timed(rt, cache, n, forget, || async {
                products(&page()).await.len()
            })
        })
    });
    group.bench_function("single/one-after-another", |b| {
        b.iter_custom(|n| {
            timed(rt, cache, n, forget, || async {
                let mut found = 0;
                for id in page() {
                    found += usize::from(product(id).await.is_some());
                }
                found
            })
        })
    });
    group.bench_function("single/join_all", |b| {
        b.iter_custom(|n| {
            timed(rt, cache, n, forget, || async {
                let all = join_all(page().into_iter().map(product)).await;
                all.into_iter().flatten().count()
            })
        })
    });
    group.finish();
}

fn redis(c: &mut Criterion, rt: &tokio::runtime::Runtime, cache: &Cache, server: &RedisServer) {
    rt.block_on(cache.scope(remote_products(&page())));
    rt.block_on(cache.scope(async {
        for id in page() {
            remote_product(id).await;
        }
    }));
    let client = server.client();
    let mut raw = rt
        .block_on(client.get_multiplexed_async_connection())
        .expect("a connection");
    // The names the cache stored them under (its own server: `KEYS` is
    // harmless here).
    let keys: Vec<String> = rt
        .block_on(redis::cmd("KEYS").arg("*remote:*").query_async(&mut raw))
        .expect("KEYS");
    assert_eq!(keys.len() as u64, PAGE);
    let nothing = || async {};
    let mut group = c.benchmark_group("batch/redis");
    group.bench_function("batch", |b| {
        b.iter_custom(|n| {
            timed(rt, cache, n, nothing, || async {
                remote_products(&page()).await.len()
            })
        })
    });
    group.bench_function("single/one-after-another", |b| {
        b.iter_custom(|n| {
            timed(rt, cache, n, nothing, || async {
                let mut found = 0;
                for id in page() {
                    found += usize::from(remote_product(id).await.is_some());
                }
                found
            })
        })
    });
    group.bench_function("single/join_all", |b| {
        b.iter_custom(|n| {
            timed(rt, cache, n, nothing, || async {
                let all = join_all(page().into_iter().map(remote_product)).await;
                all.into_iter().flatten().count()
            })
        })
    });
    group.bench_function("raw MGET", |b| {
        b.iter_custom(|n| {
            let mut total = Duration::ZERO;
            for _ in 0..n {
                let started = Instant::now();
                let values: Vec<Option<Vec<u8>>> = rt
                    .block_on(redis::cmd("MGET").arg(&keys).query_async(&mut raw))
                    .expect("MGET");
                total += started.elapsed();
                assert_eq!(values.len() as u64, PAGE);
            }
            total
        })
    });
    group.finish();
}

/// Origin calls per page of each way, counted over a few pages.
fn origin_calls(rt: &tokio::runtime::Runtime, cache: &Cache) {
    const PAGES: u64 = 20;
    let calls = || ORIGIN_CALLS.load(Ordering::Relaxed);
    let (batch, single) = rt.block_on(cache.scope(async {
        let before = calls();
        for _ in 0..PAGES {
            forget(cache).await;
            products(&page()).await;
        }
        let batch = calls() - before;
        let before = calls();
        for _ in 0..PAGES {
            forget(cache).await;
            join_all(page().into_iter().map(product)).await;
        }
        (batch, calls() - before)
    }));
    let per_page = |n: u64| n as f64 / PAGES as f64;
    println!();
    println!("origin calls per page of {PAGE} ids, {CACHED} of them cached:");
    println!("  batch   {:>5.1}", per_page(batch));
    println!("  single  {:>5.1}", per_page(single));
}

fn main() {
    let server = RedisServer::start();
    println!("redis-server pid {:?} on {}", server.pid(), server.url());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cache = Cache::builder()
        .backend(Backend::Hybrid)
        .redis_url(server.url())
        .key_prefix("batch")
        .build()
        .expect("a cache");
    assert!(rt.block_on(cache.wait_in_sync(Duration::from_secs(10))));

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    in_process(&mut c, &rt, &cache);
    redis(&mut c, &rt, &cache, &server);
    origin_calls(&rt, &cache);
    c.final_summary();
    drop(cache);
    drop(server);
}
