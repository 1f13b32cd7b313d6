//! A demo workload: an orders service in front of a slow database, run once
//! with the cache and once without. The cache reads its settings from the
//! environment as a service does (`Config::from_env`): by default in
//! memory, with no Redis and no set-up; `CACHE_BACKEND=hybrid` (or `redis`)
//! with `REDIS_URL` puts Redis behind it.
//!
//! Many concurrent callers read orders and order lists with a skewed
//! popularity (a few tenants and orders are hot), and now and then update
//! an order, which invalidates its key and its tenant's lists. The table
//! shows what the cache saves: origin calls, hit rate, latency. The demo
//! also checks every read against the database's version history: a read
//! that starts after an update returned must not see an older version.
//!
//! ```text
//! cargo run --release --example demo -- [--requests 40000] [--workers 64]
//! CACHE_BACKEND=hybrid REDIS_URL=redis://127.0.0.1:6380/0 cargo run --release --example demo
//! ```
//!
//! With Redis, the demo's keys are under `CACHE_KEY_PREFIX` (default here
//! `cache-demo`, which the demo empties before it runs; a prefix you give
//! is not emptied).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_runtime::{cached, invalidates, Backend, Cache, CacheBuilder, Config, KeyPart};

const TENANTS: u64 = 20;
const ORDERS_PER_TENANT: u64 = 500;
const PAGE_SIZE: u64 = 20;
const READ_LATENCY: Duration = Duration::from_millis(3);
const WRITE_LATENCY: Duration = Duration::from_millis(5);

#[derive(Clone, Debug, PartialEq, Eq, Hash, KeyPart)]
struct TenantId(String);

#[derive(Clone, Debug)]
struct Order {
    id: u64,
    version: u64,
}

#[derive(Debug)]
struct DbError;

/// The slow origin: every call sleeps like a database round trip.
#[derive(Default)]
struct Db {
    orders: Mutex<HashMap<(String, u64), u64>>,
    calls: AtomicU64,
}

impl Db {
    async fn read(&self, tenant: &TenantId, id: u64) -> Result<Order, DbError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let version = *self
            .orders
            .lock()
            .unwrap()
            .get(&(tenant.0.clone(), id))
            .unwrap_or(&0);
        tokio::time::sleep(READ_LATENCY).await;
        Ok(Order { id, version })
    }

    async fn list(&self, tenant: &TenantId, page: u64) -> Result<Vec<Order>, DbError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let orders = {
            let table = self.orders.lock().unwrap();
            (page * PAGE_SIZE..(page + 1) * PAGE_SIZE)
                .map(|id| Order {
                    id,
                    version: *table.get(&(tenant.0.clone(), id)).unwrap_or(&0),
                })
                .collect()
        };
        tokio::time::sleep(READ_LATENCY).await;
        Ok(orders)
    }

    async fn write(&self, tenant: &TenantId, id: u64) -> Result<Order, DbError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(WRITE_LATENCY).await;
        let mut table = self.orders.lock().unwrap();
        let version = table.entry((tenant.0.clone(), id)).or_insert(0);
        *version += 1;
        Ok(Order {
            id,
            version: *version,
        })
    }
}

#[cached(ttl = "2m", key = "order:<tenant>:<id>", skip(db))]
async fn get_order(db: &Db, tenant: &TenantId, id: u64) -> Result<Order, DbError> {
    db.read(tenant, id).await
}

#[cached(
    ttl = "30s",
    stale = "5m",
    key = "orders:list:<tenant>:p<page>",
    skip(db)
)]
async fn list_orders(db: &Db, tenant: &TenantId, page: u64) -> Result<Vec<Order>, DbError> {
    db.list(tenant, page).await
}

#[invalidates("order:<tenant>:<id>", "orders:list:<tenant>:*")]
async fn update_order(db: &Db, tenant: &TenantId, id: u64) -> Result<Order, DbError> {
    db.write(tenant, id).await
}

/// A Zipf(1.0) sampler over `0..n`: rank 0 is the most popular.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: u64) -> Self {
        let weights: Vec<f64> = (1..=n).map(|r| 1.0 / r as f64).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut fastrand::Rng) -> u64 {
        let x = rng.f64();
        self.cdf.partition_point(|&c| c < x).min(self.cdf.len() - 1) as u64
    }
}

struct Run {
    label: &'static str,
    requests: u64,
    origin_calls: u64,
    hit_rate: Option<f64>,
    p50: Duration,
    p99: Duration,
    wall: Duration,
    stale_reads: u64,
}

/// The newest version of every order whose update has returned.
type Committed = Arc<Mutex<HashMap<(u64, u64), u64>>>;

async fn run(label: &'static str, cache: Cache, requests: u64, workers: u64) -> Run {
    let db = Arc::new(Db::default());
    let committed: Committed = Arc::default();
    let stale_reads = Arc::new(AtomicU64::new(0));
    let tenants = Zipf::new(TENANTS);
    let orders = Arc::new((tenants, Zipf::new(ORDERS_PER_TENANT)));
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (db, committed, stale_reads, orders, cache) = (
                db.clone(),
                committed.clone(),
                stale_reads.clone(),
                orders.clone(),
                cache.clone(),
            );
            let per_worker = requests / workers;
            tokio::spawn(cache.scope(async move {
                let mut rng = fastrand::Rng::with_seed(w);
                let mut latencies = Vec::with_capacity(per_worker as usize);
                for _ in 0..per_worker {
                    let t = orders.0.sample(&mut rng);
                    let id = orders.1.sample(&mut rng);
                    let tenant = TenantId(format!("tenant-{t}"));
                    let begin = Instant::now();
                    match rng.u32(0..100) {
                        0..=79 => {
                            let floor = *committed.lock().unwrap().get(&(t, id)).unwrap_or(&0);
                            let order = get_order(&db, &tenant, id).await.expect("read");
                            if order.version < floor {
                                stale_reads.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        80..=97 => {
                            let page = id / PAGE_SIZE;
                            let floors: Vec<u64> = {
                                let c = committed.lock().unwrap();
                                (page * PAGE_SIZE..(page + 1) * PAGE_SIZE)
                                    .map(|i| *c.get(&(t, i)).unwrap_or(&0))
                                    .collect()
                            };
                            let list = list_orders(&db, &tenant, page).await.expect("list");
                            if list.iter().zip(&floors).any(|(o, &f)| o.version < f) {
                                stale_reads.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {
                            let order = update_order(&db, &tenant, id).await.expect("write");
                            let mut c = committed.lock().unwrap();
                            let v = c.entry((t, order.id)).or_insert(0);
                            *v = (*v).max(order.version);
                        }
                    }
                    latencies.push(begin.elapsed());
                }
                latencies
            }))
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("worker"));
    }
    let wall = started.elapsed();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let stats = cache.stats();
    Run {
        label,
        requests: latencies.len() as u64,
        origin_calls: db.calls.load(Ordering::Relaxed),
        hit_rate: cache.is_enabled().then(|| stats.hit_rate()),
        p50: pct(0.50),
        p99: pct(0.99),
        wall,
        stale_reads: stale_reads.load(Ordering::Relaxed),
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number, got {v}"))
        })
        .unwrap_or(default)
}

/// The namespace of the demo's keys in Redis when `CACHE_KEY_PREFIX` is not
/// set: its own, so that emptying it touches nothing else.
const DEMO_PREFIX: &str = "cache-demo";

/// The cache as a service builds it: from the environment. Says which
/// backend it runs on, and whether Redis is ready.
async fn cache_from_env() -> Cache {
    let mut config = Config::from_env().unwrap_or_else(|e| panic!("cache settings: {e}"));
    let own_prefix = std::env::var_os("CACHE_KEY_PREFIX").is_none();
    if own_prefix {
        config.key_prefix = DEMO_PREFIX.to_owned();
    }
    let cache = CacheBuilder::from_config(config)
        .build()
        .unwrap_or_else(|e| panic!("cache settings: {e}"));
    let config = cache.config();
    if config.backend == Backend::Memory {
        println!(
            "cache backend: memory (in process; CACHE_BACKEND=hybrid and REDIS_URL add Redis)"
        );
        return cache;
    }
    // Where, without the password.
    let url = config.redis_url.as_deref().unwrap_or_default();
    let at = url.rsplit('@').next().unwrap_or(url);
    let at = at.split_once("://").map_or(at, |(_, rest)| rest);
    println!(
        "cache backend: {}, Redis at {at}, key prefix {}",
        config.backend, config.key_prefix
    );
    match cache.ready(Duration::from_secs(5)).await {
        Ok(()) => {
            if own_prefix {
                cache.clear().await; // the demo's own keys from an earlier run
            }
        }
        Err(e) => println!("{e}\n(running degraded until Redis answers: the origin serves)"),
    }
    cache
}

#[tokio::main]
async fn main() {
    let requests = arg("--requests", 40_000);
    let workers = arg("--workers", 64).max(1);
    println!(
        "orders service: {TENANTS} tenants x {ORDERS_PER_TENANT} orders, Zipf popularity, \
         80% get_order / 18% list_orders / 2% update_order;\n\
         database reads take {READ_LATENCY:?}, writes {WRITE_LATENCY:?}; \
         {requests} requests from {workers} concurrent callers\n"
    );
    let cache = cache_from_env().await;
    println!();
    let without = run(
        "without cache",
        Cache::builder().enabled(false).build().expect("cache"),
        requests,
        workers,
    )
    .await;
    let with = run("with cache", cache, requests, workers).await;

    println!(
        "{:<14} {:>9} {:>13} {:>9} {:>10} {:>10} {:>9} {:>12}",
        "", "requests", "origin calls", "hit rate", "p50", "p99", "wall", "stale reads"
    );
    for r in [&without, &with] {
        println!(
            "{:<14} {:>9} {:>13} {:>9} {:>10} {:>10} {:>9} {:>12}",
            r.label,
            r.requests,
            r.origin_calls,
            r.hit_rate
                .map_or("-".to_string(), |h| format!("{:.1}%", h * 100.0)),
            format!("{:.2?}", r.p50),
            format!("{:.2?}", r.p99),
            format!("{:.2?}", r.wall),
            r.stale_reads,
        );
    }
    println!(
        "\nthe cache saved {:.1}% of origin calls; throughput x{:.1}",
        100.0 * (1.0 - with.origin_calls as f64 / without.origin_calls.max(1) as f64),
        without.wall.as_secs_f64() / with.wall.as_secs_f64()
    );
    assert_eq!(
        with.stale_reads, 0,
        "a read saw a value older than a finished update"
    );
}
