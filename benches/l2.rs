//! The shared tier over Redis, against the redis crate used directly, in one
//! run against one throwaway `redis-server` (started on a free loopback port
//! by the test harness, stopped by its pid at the end):
//!
//! 1. `l2/hit`: the latency of one hit in the shared tier through a
//!    `#[cached(tier = "l2")]` function (so the in-process tier never holds
//!    the value: every call is an L1 miss, a flight, a checked read of the
//!    key with its invalidation marks in one `MGET`, a decode), and through
//!    the store alone (`RedisL2::get` plus `Envelope::decode_as::<Order>`),
//!    against a raw `GET` of the same key (same stored bytes) on a
//!    `ConnectionManager` of the redis crate plus a bincode decode of the
//!    payload, and against a raw `MGET` of the same keys the cache's read
//!    asks for (one read of the cache's protocol on this client);
//! 2. `l2/64-in-flight`: the same four with 64 tasks each doing sequential
//!    gets of a key of its own, time per get across all of them (lower is
//!    more throughput); the cache's reads that come while another is on its
//!    way go together, one `MGET` for many keys and their marks;
//! 3. pattern invalidation of 100,000 keys among 1,000,000: wall time, the
//!    commands issued and the longest one on the server (SLOWLOG), for the
//!    `SCAN` + `UNLINK` walk (`RedisL2::invalidate`) and for the prefix tag
//!    that `Cache::invalidate` bumps, as a one-shot table.
//!
//! Criterion reports 1 and 2, each contender in a run of its own. A
//! side-by-side run after it prints them as a table with the ratios to the
//! raw client: the latency paired, get by get (one task takes a get of
//! each contender in turn and times each: drift hits all alike, and no
//! contender has the CPU's caches to itself, as in a service), the
//! throughput in interleaved rounds. Everything runs on a multi-thread
//! tokio runtime with 2 workers; every timed get runs on a worker task, as
//! a request handler would.
//!
//! The raw decode is `Codec::Bincode.decode`, which is
//! `bincode::serde::decode_from_slice` with the standard configuration (plus
//! an allocation limit and a check that the whole slice was read): bincode
//! is not a dependency of this package, so it cannot be called directly.
//!
//! Run: `cargo bench --bench l2` (needs `redis-server` on the PATH, or
//! `REDIS_SERVER`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use cache_runtime::{
    cached, Backend, Cache, Codec, Envelope, RedisL2, TypeFingerprint, ENVELOPE_HEADER_LEN,
};
use criterion::{Criterion, Throughput};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Value;
use serde::{Deserialize, Serialize};
use support::sentinel::SentinelGroup;
use support::{RedisCluster, RedisServer, Target};

const NAMESPACE: &str = "bench";
/// The id the sequential gets read; task `t` of the concurrent ones reads
/// id `t`.
const HIT_ID: u64 = 42;
/// Bytes in front of the envelope in the shared tier: the generation the
/// value was filled under, and the digest of the key it was written for.
const FRAME_LEN: usize = 16;
/// Requests in flight in the throughput benchmark.
const IN_FLIGHT: u64 = 64;

/// Invalidation: keys in the store, and how many of them match.
const INV_TOTAL: u64 = 1_000_000;
const INV_MATCHING: u64 = 100_000;
/// SETs per pipeline while filling.
const FILL_BATCH: u64 = 10_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Line {
    sku: String,
    quantity: u32,
    unit_cents: u64,
}

/// A small order, about 100 bytes in bincode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    tenant: String,
    customer: String,
    currency: String,
    total_cents: u64,
    created_ms: u64,
    paid: bool,
    lines: Vec<Line>,
}

fn sample_order(id: u64) -> Order {
    Order {
        id,
        tenant: "acme".into(),
        customer: "jane.doe@example.com".into(),
        currency: "EUR".into(),
        total_cents: 12_990,
        created_ms: 1_717_171_717_171,
        paid: true,
        lines: vec![
            Line {
                sku: "SKU-0001-BLUE-M".into(),
                quantity: 2,
                unit_cents: 4_995,
            },
            Line {
                sku: "SKU-0107-RED-XL".into(),
                quantity: 1,
                unit_cents: 3_000,
            },
        ],
    }
}

/// The function under test: its values live in Redis only.
#[cached(ttl = "1h", key = "order:acme:<id>", tier = "l2")]
async fn cached_order(id: u64) -> Order {
    sample_order(id)
}

fn key(id: u64) -> String {
    format!("order:acme:{id}")
}

/// What every timed operation needs.
struct Ctx {
    rt: tokio::runtime::Runtime,
    l2: RedisL2,
    /// The raw client's connections: one for its `GET`s, one for its
    /// `MGET`s, so that each contender has a connection of its own, as the
    /// store and the cache have.
    raw: [ConnectionManager; 2],
    env: Envelope,
    fingerprint: TypeFingerprint,
    cache: Cache,
}

impl Ctx {
    fn new(server: &RedisServer) -> Ctx {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let url = server.url();
        assert!(url.starts_with("redis://127.0.0.1:"), "{url}");
        let (l2, raw) = rt.block_on(async {
            let l2 = RedisL2::builder(url.as_str(), NAMESPACE)
                .connect()
                .await
                .expect("connect RedisL2");
            // A longer response timeout than the default 500 ms: the fill
            // sends pipelines of 10,000 SETs on this connection.
            let config =
                ConnectionManagerConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
            let connect = || async {
                ConnectionManager::new_with_config(server.client(), config.clone())
                    .await
                    .expect("connect raw ConnectionManager")
            };
            (l2, [connect().await, connect().await])
        });
        let cache = Cache::builder()
            .backend(Backend::Redis)
            .redis_url(url.as_str())
            .key_prefix(NAMESPACE)
            .build()
            .expect("a Redis-backed cache");
        assert!(
            cache.clone().set_global().is_ok(),
            "the benchmark's cache is the global one"
        );
        assert!(
            rt.block_on(cache.wait_in_sync(Duration::from_secs(10))),
            "subscribed to the backplane"
        );
        Ctx {
            rt,
            l2,
            raw,
            env: Envelope::default(),
            fingerprint: TypeFingerprint::of::<Order>(),
            cache,
        }
    }
}

/// One hit through the store: GET and envelope decode.
async fn store_get(l2: &RedisL2, key: &str, env: Envelope, fingerprint: TypeFingerprint) -> Order {
    let bytes = l2.get(key).await.expect("GET").expect("a hit");
    env.decode_as::<Order>(&bytes[FRAME_LEN..], fingerprint)
        .expect("decode")
        .value
}

/// One hit with the redis crate: GET of the same key, bincode decode of the
/// payload behind the generation, the key's digest and the envelope header.
async fn raw_get(conn: &mut ConnectionManager, redis_key: &str) -> Order {
    let bytes: Option<Vec<u8>> = redis::cmd("GET")
        .arg(redis_key)
        .query_async(conn)
        .await
        .expect("GET");
    let bytes = bytes.expect("a hit");
    Codec::Bincode
        .decode::<Order>(&bytes[FRAME_LEN + ENVELOPE_HEADER_LEN..])
        .expect("decode")
}

/// The same read as the cache's, with the redis crate: one `MGET` of the
/// key and its marks, then the decode (the marks are not compared).
async fn raw_mget(conn: &mut ConnectionManager, keys: &[String]) -> Order {
    let found: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
        .arg(keys)
        .query_async(conn)
        .await
        .expect("MGET");
    let bytes = found.into_iter().next().flatten().expect("a hit");
    Codec::Bincode
        .decode::<Order>(&bytes[FRAME_LEN + ENVELOPE_HEADER_LEN..])
        .expect("decode")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Cached,
    Store,
    Raw,
    RawChecked,
}

impl Who {
    const ALL: [Who; 4] = [Who::Cached, Who::Store, Who::Raw, Who::RawChecked];
    /// Where `Who::Raw` is in `ALL`: the reference of the ratios.
    const RAW: usize = 2;

    fn name(self) -> &'static str {
        match self {
            Who::Cached => "#[cached(tier = \"l2\")] fn",
            Who::Store => "RedisL2::get + Envelope::decode_as",
            Who::Raw => "raw redis GET + bincode decode",
            Who::RawChecked => "raw redis MGET of key + marks + decode",
        }
    }
}

/// One get of `id` by `who`.
struct Getter {
    who: Who,
    l2: RedisL2,
    raw: ConnectionManager,
    env: Envelope,
    fingerprint: TypeFingerprint,
    key: String,
    redis_key: String,
    /// What the cache's checked read asks for: the key, the generation
    /// counter and the tags of the key's prefixes.
    checked_keys: Vec<String>,
    id: u64,
}

impl Getter {
    fn new(ctx: &Ctx, who: Who, id: u64) -> Getter {
        Getter {
            who,
            l2: ctx.l2.clone(),
            raw: ctx.raw[usize::from(who == Who::RawChecked)].clone(),
            env: ctx.env,
            fingerprint: ctx.fingerprint,
            key: key(id),
            redis_key: ctx.l2.redis_key(&key(id)),
            checked_keys: vec![
                ctx.l2.redis_key(&key(id)),
                format!("{NAMESPACE}[g]"),
                format!("{NAMESPACE}[t]"),
                format!("{NAMESPACE}[t]order:"),
                format!("{NAMESPACE}[t]order:acme:"),
            ],
            id,
        }
    }

    async fn get(&mut self) -> Order {
        match self.who {
            // The global cache, as in a service.
            Who::Cached => cached_order(self.id).await,
            Who::Store => store_get(&self.l2, &self.key, self.env, self.fingerprint).await,
            Who::Raw => raw_get(&mut self.raw, &self.redis_key).await,
            Who::RawChecked => raw_mget(&mut self.raw, &self.checked_keys).await,
        }
    }
}

/// `n` sequential gets on one worker task; the time they took.
fn sequential(ctx: &Ctx, who: Who, n: u64) -> Duration {
    let mut getter = Getter::new(ctx, who, HIT_ID);
    ctx.rt
        .block_on(ctx.rt.spawn(async move {
            let start = Instant::now();
            for _ in 0..n {
                black_box(getter.get().await);
            }
            start.elapsed()
        }))
        .expect("the timing task")
}

/// `IN_FLIGHT` tasks each doing `per_task` sequential gets; the wall time
/// from the first spawn to the last completion.
fn concurrent(ctx: &Ctx, who: Who, per_task: u64) -> Duration {
    ctx.rt.block_on(async {
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..IN_FLIGHT {
            // A key per task: single flight would otherwise fold the gets
            // of the cached function into fewer Redis reads.
            let mut getter = Getter::new(ctx, who, task);
            tasks.spawn(async move {
                for _ in 0..per_task {
                    black_box(getter.get().await);
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("a get task");
        }
        start.elapsed()
    })
}

/// Fills the orders through the cached function (one origin call each),
/// and checks that every path reads them back equal, from Redis.
fn prepare_hit(ctx: &Ctx) -> usize {
    let ids = (0..IN_FLIGHT).chain([HIT_ID]);
    let len = ctx.rt.block_on(async {
        for id in ids.clone() {
            cached_order(id).await;
        }
        let stats = ctx.cache.stats();
        assert_eq!((stats.loads, stats.l2_sets), (IN_FLIGHT, IN_FLIGHT));
        for id in ids {
            for who in Who::ALL {
                assert_eq!(Getter::new(ctx, who, id).get().await, sample_order(id));
            }
        }
        let stats = ctx.cache.stats();
        assert_eq!(
            stats.loads, IN_FLIGHT,
            "every cached get was a hit in Redis"
        );
        assert_eq!(stats.entries, 0, "tier = \"l2\" keeps nothing in process");
        let bytes = ctx.l2.get(&key(HIT_ID)).await.unwrap().unwrap();
        bytes.len()
    });
    println!(
        "value: an Order of {} bytes in bincode, {len} bytes with the generation, the key's digest and the envelope header, under `{}`",
        len - FRAME_LEN - ENVELOPE_HEADER_LEN,
        ctx.l2.redis_key(&key(HIT_ID)),
    );
    len
}

fn hit_latency(c: &mut Criterion, ctx: &Ctx) {
    let mut group = c.benchmark_group("l2/hit");
    group.throughput(Throughput::Elements(1));
    for who in Who::ALL {
        group.bench_function(who.name(), |b| {
            b.iter_custom(|iters| sequential(ctx, who, iters))
        });
    }
    group.finish();
}

fn in_flight(c: &mut Criterion, ctx: &Ctx) {
    let mut group = c.benchmark_group("l2/64-in-flight");
    // Per element: one get; criterion's elem/s is the throughput.
    group.throughput(Throughput::Elements(1));
    for who in Who::ALL {
        group.bench_function(who.name(), |b| {
            b.iter_custom(|iters| {
                let per_task = iters.div_ceil(IN_FLIGHT);
                let elapsed = concurrent(ctx, who, per_task);
                // Wall time of `iters` gets, from `per_task * 64` done.
                elapsed.mul_f64(iters as f64 / (per_task * IN_FLIGHT) as f64)
            })
        });
    }
    group.finish();
}

/// Median, minimum and maximum.
fn spread(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    let mid = xs.len() / 2;
    let median = if xs.len() % 2 == 1 {
        xs[mid]
    } else {
        (xs[mid - 1] + xs[mid]) / 2.0
    };
    (median, xs[0], xs[xs.len() - 1])
}

/// Hit latency, paired: one worker task goes through the contenders in
/// turn, one get each (rotating who goes first), and times every get.
/// Side by side, get by get, the drift of the machine (clock speed, what
/// the other core runs) hits all alike; and each contender's get comes
/// after the others', as a hit in a service comes after other work, its
/// code and data no longer in the CPU's caches. Median, 10th and 90th
/// percentile of each contender's `gets` times, in ns.
fn paired_latency(ctx: &Ctx, gets: usize) -> [(f64, f64, f64); 4] {
    let mut getters = Who::ALL.map(|who| Getter::new(ctx, who, HIT_ID));
    let times = ctx
        .rt
        .block_on(ctx.rt.spawn(async move {
            let mut times = Who::ALL.map(|_| Vec::with_capacity(gets));
            for round in 0..gets {
                for i in 0..getters.len() {
                    let at = (round + i) % getters.len();
                    let start = Instant::now();
                    black_box(getters[at].get().await);
                    times[at].push(start.elapsed().as_nanos() as f64);
                }
            }
            times
        }))
        .expect("the timing task");
    times.map(|mut xs| {
        xs.sort_by(f64::total_cmp);
        let at = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
        (at(0.5), at(0.1), at(0.9))
    })
}

/// The side-by-side table: hit latency paired (see [`paired_latency`]),
/// throughput in interleaved rounds (rotating who goes first, so drift
/// hits all alike); ratios to the raw client.
fn ab_summary(ctx: &Ctx) {
    const GETS: usize = 20_000;
    const ROUNDS: usize = 15;
    const PER_TASK: u64 = 2_000;
    for who in Who::ALL {
        sequential(ctx, who, 1_000);
        concurrent(ctx, who, 50);
    }
    let lat = paired_latency(ctx, GETS);
    let n = Who::ALL.len();
    let mut thr = Who::ALL.map(|_| Vec::new());
    for round in 0..ROUNDS {
        for i in 0..n {
            let at = (round + i) % n;
            let who = Who::ALL[at];
            thr[at]
                .push((PER_TASK * IN_FLIGHT) as f64 / concurrent(ctx, who, PER_TASK).as_secs_f64());
        }
    }
    let thr = thr.map(spread);
    println!();
    for (what, rows) in [
        (
            format!("hit latency, ns per get (1 in flight), paired, {GETS} gets each: median [p10, p90], ratio to raw"),
            lat,
        ),
        (
            format!("throughput, gets/s ({IN_FLIGHT} in flight), {ROUNDS} interleaved rounds of {IN_FLIGHT} tasks x {PER_TASK} gets: median [min, max], ratio to raw"),
            thr,
        ),
    ] {
        println!("{what}");
        let raw = rows[Who::RAW].0;
        for (who, (median, lo, hi)) in Who::ALL.iter().zip(rows) {
            println!(
                "  {:<36} {:>28} {:>7.3}x",
                who.name(),
                format!("{median:.0} [{lo:.0}, {hi:.0}]"),
                median / raw
            );
        }
    }
    println!();
}

/// The same `#[cached(tier = "l2")]` function through a cache on the single
/// server, through one on a local 3-primary Redis Cluster, and through one
/// behind Redis Sentinel (a master, its replica and three sentinels), all
/// on this machine's 2 cores, so the other processes compete with the
/// client for them: hit latency, 64 in flight, and the invalidations whose
/// work the cluster's 16 groups multiply and which Sentinel has a replica
/// confirm (`WAIT`).
fn topology_summary(ctx: &Ctx) {
    const ROUNDS: usize = 7;
    const SEQ_OPS: u64 = 3_000;
    const PER_TASK: u64 = 1_000;
    const INVALIDATIONS: u32 = 300;
    let cluster = RedisCluster::start(3);
    let clustered = Cache::builder()
        .backend(Backend::Redis)
        .redis_url(cluster.url())
        .key_prefix(NAMESPACE)
        .build()
        .expect("a cache on the cluster");
    let sentinels = SentinelGroup::start();
    let behind_sentinel = Cache::builder()
        .backend(Backend::Redis)
        .redis_url(sentinels.url())
        .key_prefix(NAMESPACE)
        .build()
        .expect("a cache behind Sentinel");
    let caches = [
        ("single server", ctx.cache.clone()),
        ("3-primary cluster", clustered),
        ("Sentinel, master + 1 replica", behind_sentinel),
    ];
    let sequential = |cache: &Cache| {
        let cache = cache.clone();
        ctx.rt
            .block_on(ctx.rt.spawn(async move {
                let start = Instant::now();
                for _ in 0..SEQ_OPS {
                    black_box(cache.scope(cached_order(HIT_ID)).await);
                }
                start.elapsed().as_nanos() as f64 / SEQ_OPS as f64
            }))
            .expect("the timing task")
    };
    let concurrent = |cache: &Cache| {
        ctx.rt.block_on(async {
            let start = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for id in 0..IN_FLIGHT {
                let cache = cache.clone();
                tasks.spawn(async move {
                    for _ in 0..PER_TASK {
                        black_box(cache.scope(cached_order(id)).await);
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.expect("a get task");
            }
            (PER_TASK * IN_FLIGHT) as f64 / start.elapsed().as_secs_f64()
        })
    };
    let invalidations = |cache: &Cache, pattern: &str| {
        ctx.rt.block_on(async {
            let start = Instant::now();
            for _ in 0..INVALIDATIONS {
                cache.invalidate(pattern).await.expect("an invalidation");
            }
            start.elapsed().as_nanos() as f64 / f64::from(INVALIDATIONS) / 1000.0
        })
    };
    for (_, cache) in &caches {
        ctx.rt.block_on(cache.scope(async {
            for id in (0..IN_FLIGHT).chain([HIT_ID]) {
                cached_order(id).await;
            }
        }));
        sequential(cache);
        concurrent(cache);
    }
    let mut rows: Vec<[Vec<f64>; 4]> = caches.iter().map(|_| Default::default()).collect();
    for round in 0..ROUNDS {
        for i in 0..caches.len() {
            let at = (round + i) % caches.len();
            let cache = &caches[at].1;
            rows[at][0].push(sequential(cache));
            rows[at][1].push(concurrent(cache));
            rows[at][2].push(invalidations(cache, "order:acme:9999"));
            rows[at][3].push(invalidations(cache, "order:acme:9999:*"));
        }
    }
    println!();
    println!(
        "single server vs Redis Cluster vs Sentinel, {ROUNDS} rounds interleaved, median [min, max], ratio to the single server:"
    );
    let names = [
        "hit latency, ns/op (1 in flight)",
        "throughput, ops/s (64 in flight)",
        "exact invalidation, us each",
        "prefix invalidation, us each",
    ];
    let rows: Vec<Vec<(f64, f64, f64)>> = rows
        .into_iter()
        .map(|row| row.into_iter().map(spread).collect())
        .collect();
    for (m, name) in names.iter().enumerate() {
        println!("{name}");
        let base = rows[0][m].0;
        for ((label, _), row) in caches.iter().zip(&rows) {
            let (median, lo, hi) = row[m];
            println!(
                "  {label:<36} {:>28} {:>7.3}x",
                format!("{median:.0} [{lo:.0}, {hi:.0}]"),
                median / base
            );
        }
    }
    println!();
    drop(caches);
    drop(cluster);
    drop(sentinels);
}

/// `SET` of `INV_TOTAL` keys in the namespace, `INV_MATCHING` of them under
/// `inv:match:`, in pipelines.
async fn fill(conn: &mut ConnectionManager) {
    let value = [0x5au8; 16];
    let mut next = 0u64;
    while next < INV_TOTAL {
        let end = (next + FILL_BATCH).min(INV_TOTAL);
        let mut pipe = redis::pipe();
        for i in next..end {
            // Spread the matching keys over the range (every tenth).
            let kind = if i % 10 == 0 { "match" } else { "other" };
            pipe.cmd("SET")
                .arg(format!("{NAMESPACE}:inv:{kind}:{i}"))
                .arg(&value[..])
                .arg("PX")
                .arg(3_600_000u64)
                .ignore();
        }
        let () = pipe.query_async(conn).await.expect("fill pipeline");
        next = end;
    }
}

async fn slowlog_reset(conn: &mut ConnectionManager) {
    let () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async(conn)
        .await
        .expect("SLOWLOG RESET");
}

/// Every entry of the slow log (it logs every command: see `invalidation`).
async fn slowlog(conn: &mut ConnectionManager) -> Value {
    redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(1_000_000)
        .query_async(conn)
        .await
        .expect("SLOWLOG GET")
}

/// The first argument of a SLOWLOG entry's argument list, upper-cased.
fn slowlog_entry(entry: &Value) -> (u64, String) {
    let Value::Array(fields) = entry else {
        panic!("a SLOWLOG entry is an array: {entry:?}");
    };
    let micros = match &fields[2] {
        Value::Int(us) => *us as u64,
        other => panic!("SLOWLOG duration: {other:?}"),
    };
    let name = match &fields[3] {
        Value::Array(args) => match args.first() {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).to_uppercase(),
            Some(Value::SimpleString(s)) => s.to_uppercase(),
            other => panic!("SLOWLOG arguments: {other:?}"),
        },
        other => panic!("SLOWLOG arguments: {other:?}"),
    };
    (micros, name)
}

fn invalidation(ctx: &Ctx) {
    let mut conn = ctx.raw[0].clone();
    let started = Instant::now();
    let matching_before = ctx.rt.block_on(async {
        fill(&mut conn).await;
        let dbsize: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
        // The filled keys, the hit benchmark's orders and the generation.
        assert!(dbsize > INV_TOTAL, "{dbsize}");
        INV_MATCHING
    });
    println!(
        "filled {INV_TOTAL} keys ({matching_before} under {NAMESPACE}:inv:match:*) in {:.2?}",
        started.elapsed()
    );

    let (removed, elapsed, log, calls) = ctx.rt.block_on(async {
        for (name, value) in [
            ("slowlog-log-slower-than", "0"),
            ("slowlog-max-len", "1000000"),
        ] {
            let () = redis::cmd("CONFIG")
                .arg("SET")
                .arg(name)
                .arg(value)
                .query_async(&mut conn)
                .await
                .expect("CONFIG SET");
        }
        let () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut conn)
            .await
            .expect("CONFIG RESETSTAT");
        slowlog_reset(&mut conn).await;
        let start = Instant::now();
        let removed = ctx.l2.invalidate("inv:match:*").await.expect("invalidate");
        let elapsed = start.elapsed();
        let log = slowlog(&mut conn).await;
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .expect("INFO commandstats");
        let calls = |cmd: &str| -> u64 {
            let prefix = format!("cmdstat_{cmd}:calls=");
            stats
                .lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .and_then(|rest| rest.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        (removed, elapsed, log, (calls("scan"), calls("unlink")))
    });
    assert_eq!(removed, INV_MATCHING, "invalidate removed {removed}");

    let Value::Array(entries) = log else {
        panic!("SLOWLOG GET returned {log:?}");
    };
    // The entries of the store's commands (SCAN, UNLINK); anything else in
    // the log (the admin connection's SLOWLOG RESET) is left out.
    let parsed: Vec<(u64, String)> = entries
        .iter()
        .map(slowlog_entry)
        .filter(|(_, name)| name == "SCAN" || name == "UNLINK")
        .collect();
    let scans = parsed.iter().filter(|(_, n)| n == "SCAN").count();
    let unlinks = parsed.len() - scans;
    let server_us: u64 = parsed.iter().map(|(us, _)| us).sum();
    let (longest_us, longest_name) = parsed
        .iter()
        .max_by_key(|(us, _)| *us)
        .cloned()
        .unwrap_or_default();
    let longest_of = |name: &str| {
        parsed
            .iter()
            .filter(|(_, n)| n == name)
            .map(|(us, _)| *us)
            .max()
            .unwrap_or(0)
    };
    let dbsize: u64 = ctx.rt.block_on(async {
        redis::cmd("DBSIZE")
            .query_async(&mut ctx.raw[0].clone())
            .await
            .unwrap()
    });

    println!(
        "pattern invalidation, SCAN + UNLINK: RedisL2::invalidate(\"inv:match:*\") over {INV_TOTAL} keys (scan_count 1000):"
    );
    let rows: [(&str, String); 10] = [
        ("keys removed", removed.to_string()),
        (
            "wall time",
            format!("{:.1} ms", elapsed.as_secs_f64() * 1e3),
        ),
        (
            "commands issued (SLOWLOG)",
            format!("{} ({scans} SCAN + {unlinks} UNLINK)", parsed.len()),
        ),
        (
            "commands issued (INFO commandstats)",
            format!("{} SCAN + {} UNLINK", calls.0, calls.1),
        ),
        (
            "longest single command",
            format!("{longest_us} us ({longest_name})"),
        ),
        ("longest SCAN", format!("{} us", longest_of("SCAN"))),
        ("longest UNLINK", format!("{} us", longest_of("UNLINK"))),
        (
            "server time, all commands",
            format!("{:.1} ms", server_us as f64 / 1e3),
        ),
        (
            "mean per command",
            format!("{:.1} us", server_us as f64 / parsed.len().max(1) as f64),
        ),
        ("keys left in the db", dbsize.to_string()),
    ];
    for (what, value) in rows {
        println!("  {what:<38} {value}");
    }
    println!();
    tag_invalidation(ctx);
}

/// The prefix tag: `Cache::invalidate` of a `prefix:*` pattern is one
/// script call whatever the number of keys under the prefix; the values
/// stay in Redis until their TTL, unreadable. Refills the keys under the
/// prefix first, so that the keyspace is the one the SCAN walk faced.
fn tag_invalidation(ctx: &Ctx) {
    let mut conn = ctx.raw[0].clone();
    let (elapsed, log, dbsize) = ctx.rt.block_on(async {
        fill(&mut conn).await;
        slowlog_reset(&mut conn).await;
        let start = Instant::now();
        ctx.cache
            .invalidate("inv:match:*")
            .await
            .expect("invalidate");
        let elapsed = start.elapsed();
        let log = slowlog(&mut conn).await;
        let dbsize: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
        (elapsed, log, dbsize)
    });
    assert_eq!(ctx.cache.stats().l2_errors, 0);
    let Value::Array(entries) = log else {
        panic!("SLOWLOG GET returned {log:?}");
    };
    let parsed: Vec<(u64, String)> = entries
        .iter()
        .map(slowlog_entry)
        .filter(|(_, name)| name.starts_with("EVAL"))
        .collect();
    let longest = parsed.iter().map(|(us, _)| *us).max().unwrap_or(0);
    println!(
        "pattern invalidation, prefix tag: Cache::invalidate(\"inv:match:*\") over {dbsize} keys:"
    );
    println!(
        "  {:<38} {:.3} ms",
        "wall time",
        elapsed.as_secs_f64() * 1e3
    );
    println!(
        "  {:<38} {} ({})",
        "commands issued (SLOWLOG)",
        parsed.len(),
        parsed
            .iter()
            .map(|(_, n)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  {:<38} {longest} us", "longest single command");
    println!(
        "  {:<38} {dbsize} (the invalidated values expire with their TTL)",
        "keys left in the db"
    );
    println!();
}

/// The backplane: two instances (two hybrid caches, each with its own
/// connections) hold a key in process; one invalidates it, and the other's
/// in-process tier drops it when the message arrives. The delay from the
/// start of the invalidating call (which writes Redis, then publishes) to
/// the drop, seen by polling the other instance; 200 rounds.
fn backplane_delay(ctx: &Ctx, server: &RedisServer) {
    const ROUNDS: usize = 200;
    let delays = ctx.rt.block_on(async {
        let instance = || {
            Cache::builder()
                .backend(Backend::Hybrid)
                .redis_url(server.url())
                .key_prefix("bus")
                .build()
                .expect("a hybrid cache")
        };
        let (writer, reader) = (instance(), instance());
        for cache in [&writer, &reader] {
            assert!(cache.wait_in_sync(Duration::from_secs(10)).await);
        }
        let mut delays = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS {
            let key = format!("k:{round}");
            reader.set(&key, round, Duration::from_secs(60)).await;
            assert!(reader.exists(&key).await);
            let start = Instant::now();
            writer.delete(&key).await;
            let mut polls = 0u32;
            while reader.exists(&key).await {
                polls += 1;
                assert!(polls < 10_000_000, "the message never arrived");
                tokio::task::yield_now().await;
            }
            delays.push(start.elapsed().as_secs_f64() * 1e6);
        }
        delays
    });
    let mut sorted = delays;
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    println!(
        "backplane: invalidation on one instance to the key gone from another's in-process tier, {ROUNDS} rounds: p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    println!();
}

fn main() {
    let server = RedisServer::start();
    println!("redis-server pid {:?} on {}", server.pid(), server.url());
    let ctx = Ctx::new(&server);
    prepare_hit(&ctx);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    hit_latency(&mut c, &ctx);
    in_flight(&mut c, &ctx);
    ab_summary(&ctx);
    topology_summary(&ctx);
    backplane_delay(&ctx, &server);
    invalidation(&ctx);
    c.final_summary();

    // Connections first, then the server (killed by its pid).
    drop(ctx);
    drop(server);
}
