//! How cost grows with the number of entries, as one table, in one run:
//!
//! - in process, at 10k, 100k, 1M and 10M entries (`order:<tenant>:<id>`,
//!   ten ids per tenant, u64 values, the default quick_cache engine): a
//!   `#[cached]` hit on a key drawn at random among all entries, from one
//!   thread (ns each) and from two at once (hits per second), beside a raw
//!   `dashmap` get + clone of the same keys at the same size (the
//!   hash-map limit, which grows too as the table outgrows the CPU's
//!   caches), and the invalidation of one tenant's prefix
//!   (`order:<tenant>:*`, 10 entries): the first one, which builds the
//!   engine's index of keys (once per cache), and the next ones;
//! - in Redis, with 10k, 100k, 1M and 10M keys in the namespace (filled
//!   in pipelines): a hit through `#[cached(tier = "l2")]`, an exact
//!   invalidation, a prefix invalidation (one mark, whatever the keyspace)
//!   and a pattern of another shape (`order:*:3`), which walks the
//!   keyspace with `SCAN` + `UNLINK` and so grows with it.
//!
//! Run: `cargo bench --bench growth` (needs `redis-server` on the PATH, or
//! `REDIS_SERVER`; about 3 GB of memory at 10M entries).

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use cache_runtime::{cached, Backend, Cache};
use support::RedisServer;

/// The sizes, in process and in Redis.
const SIZES: [u64; 4] = [10_000, 100_000, 1_000_000, 10_000_000];
/// Ids per tenant: a prefix invalidation removes this many entries.
const PER_TENANT: u64 = 10;
/// Hits timed per size and thread.
const HITS: usize = 1_000_000;
/// Invalidations timed per size, in process and in Redis.
const INVALIDATIONS: u64 = 200;
/// Hits in Redis timed per size.
const L2_HITS: usize = 2_000;
/// Keys per pipeline when filling Redis.
const FILL_BATCH: u64 = 10_000;
const NAMESPACE: &str = "growth";

#[cached(ttl = "1h", key = "order:<tenant>:<id>")]
fn order(tenant: u64, id: u64) -> u64 {
    tenant * 31 + id
}

#[cached(ttl = "1h", key = "order:<tenant>:<id>", tier = "l2")]
async fn order_l2(tenant: u64, id: u64) -> u64 {
    tenant * 31 + id
}

/// `HITS` entry numbers drawn uniformly below `n` (a fixed sequence).
fn draws(n: u64, seed: u64) -> Vec<u64> {
    let mut x = seed;
    (0..HITS)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % n
        })
        .collect()
}

/// Nanoseconds per call of `hit` over `draws`.
fn time_hits(draws: &[u64], hit: impl Fn(u64) -> u64) -> f64 {
    let start = Instant::now();
    for &i in draws {
        black_box(hit(i));
    }
    start.elapsed().as_nanos() as f64 / draws.len() as f64
}

/// Hits per second of two threads calling `hit` at once on `cache`, each
/// over draws of its own.
fn two_threads(n: u64, cache: &Cache, hit: impl Fn(u64) -> u64 + Sync) -> f64 {
    let (a, b) = (draws(n, 7), draws(n, 11));
    let start = Instant::now();
    std::thread::scope(|s| {
        for draws in [&a, &b] {
            let hit = &hit;
            s.spawn(move || cache.scope_sync(|| time_hits(draws, hit)));
        }
    });
    (2 * HITS) as f64 / start.elapsed().as_secs_f64()
}

struct InProcess {
    ours_ns: f64,
    dashmap_ns: f64,
    ours_per_s: f64,
    first_prefix_ms: f64,
    prefix_us: f64,
}

fn in_process(n: u64, rt: &tokio::runtime::Runtime) -> InProcess {
    let cache = Cache::builder()
        .l1_max_entries(n * 2)
        .l1_max_bytes(64 << 30)
        .build()
        .expect("a cache");
    let hit = |i: u64| order(i / PER_TENANT, i % PER_TENANT);
    cache.scope_sync(|| {
        for i in 0..n {
            hit(i);
        }
    });
    let draws = draws(n, 3);
    cache.scope_sync(|| time_hits(&draws, hit));
    let ours_ns = cache.scope_sync(|| time_hits(&draws, hit));
    let ours_per_s = two_threads(n, &cache, hit);
    let misses_before = cache.stats().misses;
    let invalidate = |t: u64| {
        let tenant = t * (n / PER_TENANT / (INVALIDATIONS + 1));
        rt.block_on(cache.invalidate(&format!("order:{tenant}:*")))
            .expect("a prefix pattern");
    };
    let start = Instant::now();
    invalidate(0);
    let first_prefix_ms = start.elapsed().as_secs_f64() * 1e3;
    let start = Instant::now();
    for t in 1..=INVALIDATIONS {
        invalidate(t);
    }
    let prefix_us = start.elapsed().as_secs_f64() * 1e6 / INVALIDATIONS as f64;
    // The hits above were hits.
    assert_eq!(cache.stats().misses, misses_before);
    drop(cache);
    let map = dashmap::DashMap::with_capacity(n as usize);
    for i in 0..n {
        map.insert(format!("order:{}:{}", i / PER_TENANT, i % PER_TENANT), i);
    }
    let keys: Vec<String> = draws
        .iter()
        .map(|i| format!("order:{}:{}", i / PER_TENANT, i % PER_TENANT))
        .collect();
    let start = Instant::now();
    for key in &keys {
        black_box(*map.get(key.as_str()).expect("filled"));
    }
    let dashmap_ns = start.elapsed().as_nanos() as f64 / keys.len() as f64;
    InProcess {
        ours_ns,
        dashmap_ns,
        ours_per_s,
        first_prefix_ms,
        prefix_us,
    }
}

struct InRedis {
    hit_us: f64,
    exact_us: f64,
    prefix_us: f64,
    scan_ms: f64,
}

/// Fills the namespace up to `n` keys with plain values (keys the cache
/// never reads), in pipelines.
async fn fill_redis(conn: &mut redis::aio::MultiplexedConnection, from: u64, n: u64) {
    let mut next = from;
    while next < n {
        let end = (next + FILL_BATCH).min(n);
        let mut pipe = redis::pipe();
        for i in next..end {
            pipe.cmd("SET")
                .arg(format!("{NAMESPACE}:filler:{i}"))
                .arg(i)
                .arg("PX")
                .arg(3_600_000u64)
                .ignore();
        }
        let () = pipe.query_async(conn).await.expect("a fill pipeline");
        next = end;
    }
}

fn in_redis(cache: &Cache, rt: &tokio::runtime::Runtime) -> InRedis {
    rt.block_on(cache.scope(async {
        order_l2(1, 1).await;
        for _ in 0..100 {
            black_box(order_l2(1, 1).await);
        }
        let start = Instant::now();
        for _ in 0..L2_HITS {
            black_box(order_l2(1, 1).await);
        }
        let hit_us = start.elapsed().as_secs_f64() * 1e6 / L2_HITS as f64;
        let time = |pattern: fn(u64) -> String| async move {
            let start = Instant::now();
            for i in 0..INVALIDATIONS {
                cache.invalidate(&pattern(i)).await.expect("a pattern");
            }
            start.elapsed().as_secs_f64() * 1e6 / INVALIDATIONS as f64
        };
        let exact_us = time(|i| format!("order:{i}:3")).await;
        let prefix_us = time(|i| format!("order:{i}:*")).await;
        let start = Instant::now();
        cache.invalidate("order:*:3").await.expect("a pattern");
        let scan_ms = start.elapsed().as_secs_f64() * 1e3;
        InRedis {
            hit_us,
            exact_us,
            prefix_us,
            scan_ms,
        }
    }))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let server = RedisServer::start();
    let l2 = Cache::builder()
        .backend(Backend::Redis)
        .redis_url(server.url())
        .key_prefix(NAMESPACE)
        .redis_timeout(Duration::from_secs(30))
        .build()
        .expect("a cache on the test server");
    let mut conn = rt
        .block_on(server.client().get_multiplexed_async_connection())
        .expect("a connection to the test server");
    let mut filled = 0;
    println!(
        "cost against the number of entries (one run, one process; Redis on the same 2 cores):"
    );
    println!(
        "{:>12} | {:>14} {:>12} {:>7} {:>16} {:>14} {:>12} | {:>9} {:>10} {:>11} {:>13}",
        "entries",
        "#[cached] hit",
        "dashmap get",
        "ratio",
        "hits/s, 2 thr.",
        "first prefix",
        "next prefix",
        "L2 hit",
        "exact inv.",
        "prefix inv.",
        "order:*:3"
    );
    for n in SIZES {
        let local = in_process(n, &rt);
        rt.block_on(fill_redis(&mut conn, filled, n));
        filled = n;
        let shared = in_redis(&l2, &rt);
        println!(
            "{:>12} | {:>11.1} ns {:>9.1} ns {:>6.2}x {:>16.0} {:>11.1} ms {:>9.1} us | {:>6.1} us {:>7.1} us {:>8.1} us {:>10.1} ms",
            n,
            local.ours_ns,
            local.dashmap_ns,
            local.ours_ns / local.dashmap_ns,
            local.ours_per_s,
            local.first_prefix_ms,
            local.prefix_us,
            shared.hit_us,
            shared.exact_us,
            shared.prefix_us,
            shared.scan_ms
        );
    }
    drop(l2);
    drop(conn);
    drop(server);
}
