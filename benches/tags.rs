//! Tag invalidation against the walk a pattern needs, over 100,000 values
//! that carry one tag, in one run on one throwaway `redis-server` (started
//! on a free loopback port, stopped by its pid):
//!
//! 1. `tags/in-process`: `Cache::invalidate_tag` on a cache holding the
//!    100,000 values in process, against `Cache::invalidate` of a pattern
//!    that is no prefix (`page:*:p7`), which walks every entry.
//! 2. `tags/redis`: `Cache::invalidate_tag` with the values in Redis too
//!    (one write, and the announcement), against a raw `SCAN MATCH` of the
//!    same 100,000 keys on the redis crate: the walk alone, without the
//!    `UNLINK`s that a pattern invalidation adds to it.
//!
//! After them, one pattern invalidation that removes the 100,000 keys
//! from Redis (`SCAN` + `UNLINK`) is timed once and printed.
//!
//! Run: `cargo bench --bench tags` (needs `redis-server` on the PATH, or
//! `REDIS_SERVER`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use cache_runtime::{context, Backend, Cache};
use criterion::Criterion;
use futures_util::future::join_all;
use support::{RedisServer, Target};

const VALUES: u64 = 100_000;
const TTL: Duration = Duration::from_secs(3600);

/// Stores the 100,000 values, each tagged `product:42`, 1,000 at a time.
fn fill(rt: &tokio::runtime::Runtime, cache: &Cache) {
    rt.block_on(async {
        for chunk in 0..VALUES / 1_000 {
            let loads = (chunk * 1_000..(chunk + 1) * 1_000).map(|i| async move {
                let key = format!("page:{i}:p{}", i % 10);
                let tagged = move || async move {
                    context::tag("product:42");
                    i
                };
                cache.get_or_insert_with(&key, TTL, tagged).await
            });
            join_all(loads).await;
        }
    });
}

fn in_process(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let cache = Cache::builder()
        .l1_max_bytes(1 << 30)
        .l1_max_entries(2 * VALUES)
        .build()
        .unwrap();
    fill(rt, &cache);
    assert_eq!(cache.stats().entries, VALUES);
    let mut group = c.benchmark_group("tags/in-process");
    group.bench_function("invalidate_tag", |b| {
        b.iter(|| rt.block_on(cache.invalidate_tag("product:42")).unwrap())
    });
    group.bench_function("invalidate page:*:p7 (walks every entry)", |b| {
        b.iter(|| rt.block_on(cache.invalidate("page:*:p7")).unwrap())
    });
    group.finish();
}

fn redis(c: &mut Criterion, rt: &tokio::runtime::Runtime, server: &RedisServer) {
    let cache = Cache::builder()
        .backend(Backend::Hybrid)
        .redis_url(server.url())
        .key_prefix("bench-tags")
        .l1_max_bytes(1 << 30)
        .l1_max_entries(2 * VALUES)
        .build()
        .expect("a cache");
    assert!(rt.block_on(cache.wait_in_sync(Duration::from_secs(10))));
    fill(rt, &cache);
    assert_eq!(cache.stats().l2_sets, VALUES);
    let pattern = rt.block_on(async { format!("{}*", server.key("bench-tags", "page:")) });
    let mut conn = server.client().get_connection().unwrap();
    let scanned = scan(&mut conn, &pattern);
    assert_eq!(scanned, VALUES);

    let mut group = c.benchmark_group("tags/redis");
    group.sample_size(20);
    group.bench_function("invalidate_tag", |b| {
        b.iter(|| rt.block_on(cache.invalidate_tag("product:42")).unwrap())
    });
    group.bench_function("SCAN MATCH of the same keys (raw redis)", |b| {
        b.iter(|| scan(&mut conn, &pattern))
    });
    group.finish();

    let started = Instant::now();
    let removed = rt.block_on(cache.invalidate("page:*")).unwrap();
    println!(
        "tags/redis: one pattern invalidation that removes them (SCAN + UNLINK): {removed} keys in {:?}",
        started.elapsed()
    );
}

/// Walks every key `pattern` matches (`SCAN MATCH .. COUNT 1000`); returns
/// how many it saw.
fn scan(conn: &mut redis::Connection, pattern: &str) -> u64 {
    let mut cursor = 0u64;
    let mut seen = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query(conn)
            .unwrap();
        seen += keys.len() as u64;
        if next == 0 {
            return seen;
        }
        cursor = next;
    }
}

fn main() {
    let server = RedisServer::start();
    println!("redis-server pid {:?} on {}", server.pid(), server.url());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    in_process(&mut c, &rt);
    redis(&mut c, &rt, &server);
    c.final_summary();
    drop(server);
}
