//! The shared tier over Redis, against the redis crate used directly, in one
//! run against one throwaway `redis-server` (started on a free loopback port
//! by the test harness, stopped by its pid at the end):
//!
//! 1. `l2/hit`: the latency of one hit, `RedisL2::get` plus
//!    `Envelope::decode_as::<Order>`, against a raw `GET` of the same key
//!    (same stored bytes) on a `ConnectionManager` of the redis crate plus a
//!    bincode decode of the payload;
//! 2. `l2/64-in-flight`: the same two with 64 tasks each doing sequential
//!    gets, time per get across all of them (lower is more throughput);
//! 3. pattern invalidation of 100,000 keys among 1,000,000: wall time, the
//!    commands it issued and the longest one on the server (SLOWLOG), as a
//!    one-shot table.
//!
//! Criterion reports 1 and 2; a short interleaved A/B run after it prints
//! ns/op, ops/s and the ratios as a table. Everything runs on a
//! multi-thread tokio runtime with 2 workers; every timed get runs on a
//! worker task, as a request handler would.
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

use cache_runtime::{Codec, Deadlines, Envelope, RedisL2, TypeFingerprint, ENVELOPE_HEADER_LEN};
use criterion::{Criterion, Throughput};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Value;
use serde::{Deserialize, Serialize};
use support::RedisServer;

const NAMESPACE: &str = "bench";
const HIT_KEY: &str = "order:acme:42";
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

fn sample_order() -> Order {
    Order {
        id: 42,
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

/// What every timed operation needs.
struct Ctx {
    rt: tokio::runtime::Runtime,
    l2: RedisL2,
    raw: ConnectionManager,
    env: Envelope,
    fingerprint: TypeFingerprint,
    /// `<namespace>:<HIT_KEY>`, what the raw GET asks for.
    redis_key: String,
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
            let raw = ConnectionManager::new_with_config(server.client(), config)
                .await
                .expect("connect raw ConnectionManager");
            (l2, raw)
        });
        let redis_key = l2.redis_key(HIT_KEY);
        Ctx {
            rt,
            l2,
            raw,
            env: Envelope::default(),
            fingerprint: TypeFingerprint::of::<Order>(),
            redis_key,
        }
    }
}

/// One hit through the runtime: GET and envelope decode.
async fn ours_get(l2: &RedisL2, env: Envelope, fingerprint: TypeFingerprint) -> Order {
    let bytes = l2.get(HIT_KEY).await.expect("GET").expect("a hit");
    env.decode_as::<Order>(&bytes, fingerprint)
        .expect("decode")
        .value
}

/// One hit with the redis crate: GET of the same key, bincode decode of the
/// payload behind the envelope header.
async fn raw_get(conn: &mut ConnectionManager, key: &str) -> Order {
    let bytes: Option<Vec<u8>> = redis::cmd("GET")
        .arg(key)
        .query_async(conn)
        .await
        .expect("GET");
    let bytes = bytes.expect("a hit");
    Codec::Bincode
        .decode::<Order>(&bytes[ENVELOPE_HEADER_LEN..])
        .expect("decode")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Ours,
    Raw,
}

impl Who {
    fn name(self) -> &'static str {
        match self {
            Who::Ours => "RedisL2::get + Envelope::decode_as",
            Who::Raw => "raw redis GET + bincode decode",
        }
    }
}

/// `n` sequential gets on one worker task; the time they took.
fn sequential(ctx: &Ctx, who: Who, n: u64) -> Duration {
    let l2 = ctx.l2.clone();
    let mut raw = ctx.raw.clone();
    let key = ctx.redis_key.clone();
    let (env, fingerprint) = (ctx.env, ctx.fingerprint);
    ctx.rt
        .block_on(ctx.rt.spawn(async move {
            let start = Instant::now();
            for _ in 0..n {
                match who {
                    Who::Ours => black_box(ours_get(&l2, env, fingerprint).await),
                    Who::Raw => black_box(raw_get(&mut raw, &key).await),
                };
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
        for _ in 0..IN_FLIGHT {
            let l2 = ctx.l2.clone();
            let mut raw = ctx.raw.clone();
            let key = ctx.redis_key.clone();
            let (env, fingerprint) = (ctx.env, ctx.fingerprint);
            tasks.spawn(async move {
                for _ in 0..per_task {
                    match who {
                        Who::Ours => black_box(ours_get(&l2, env, fingerprint).await),
                        Who::Raw => black_box(raw_get(&mut raw, &key).await),
                    };
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("a get task");
        }
        start.elapsed()
    })
}

/// Stores the order and checks that both paths read it back equal.
fn prepare_hit(ctx: &Ctx) -> usize {
    let order = sample_order();
    let far = 4_102_444_800_000; // 2100-01-01
    let bytes = ctx
        .env
        .encode(&order, Deadlines::new(far, far))
        .expect("encode");
    let payload = bytes.len() - ENVELOPE_HEADER_LEN;
    ctx.rt.block_on(async {
        ctx.l2
            .set(HIT_KEY, &bytes, 3_600_000)
            .await
            .expect("SET the order");
        assert_eq!(ours_get(&ctx.l2, ctx.env, ctx.fingerprint).await, order);
        assert_eq!(raw_get(&mut ctx.raw.clone(), &ctx.redis_key).await, order);
    });
    println!(
        "value: an Order of {payload} bytes in bincode, {} bytes with the envelope header, under `{}`",
        bytes.len(),
        ctx.redis_key
    );
    payload
}

fn hit_latency(c: &mut Criterion, ctx: &Ctx) {
    let mut group = c.benchmark_group("l2/hit");
    group.throughput(Throughput::Elements(1));
    for who in [Who::Ours, Who::Raw] {
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
    for who in [Who::Ours, Who::Raw] {
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

/// Interleaved rounds of both contenders (ours, raw, ours, raw, ...), so
/// drift hits both alike; the medians, with ratios.
fn ab_summary(ctx: &Ctx) {
    const ROUNDS: usize = 15;
    const SEQ_OPS: u64 = 5_000;
    const PER_TASK: u64 = 2_000;
    // Warm both paths.
    sequential(ctx, Who::Ours, 1_000);
    sequential(ctx, Who::Raw, 1_000);
    concurrent(ctx, Who::Ours, 50);
    concurrent(ctx, Who::Raw, 50);

    let (mut lat_ours, mut lat_raw) = (Vec::new(), Vec::new());
    let (mut thr_ours, mut thr_raw) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Alternate who goes first.
        let order = if round % 2 == 0 {
            [Who::Ours, Who::Raw]
        } else {
            [Who::Raw, Who::Ours]
        };
        for who in order {
            let ns = sequential(ctx, who, SEQ_OPS).as_nanos() as f64 / SEQ_OPS as f64;
            let ops = (PER_TASK * IN_FLIGHT) as f64 / concurrent(ctx, who, PER_TASK).as_secs_f64();
            match who {
                Who::Ours => {
                    lat_ours.push(ns);
                    thr_ours.push(ops);
                }
                Who::Raw => {
                    lat_raw.push(ns);
                    thr_raw.push(ops);
                }
            }
        }
    }
    let (lo, lr) = (spread(lat_ours), spread(lat_raw));
    let (to, tr) = (spread(thr_ours), spread(thr_raw));
    println!();
    println!(
        "interleaved A/B, {ROUNDS} rounds ({SEQ_OPS} sequential gets; {IN_FLIGHT} tasks x {PER_TASK} gets), median [min, max]:"
    );
    println!("{:<34} {:>26} {:>26} {:>9}", "", "ours", "raw", "ours/raw");
    let row = |what: &str, (om, olo, ohi): (f64, f64, f64), (rm, rlo, rhi): (f64, f64, f64)| {
        println!(
            "{what:<34} {:>26} {:>26} {:>9.3}",
            format!("{om:.0} [{olo:.0}, {ohi:.0}]"),
            format!("{rm:.0} [{rlo:.0}, {rhi:.0}]"),
            om / rm
        );
    };
    row("hit latency, ns/op (1 in flight)", lo, lr);
    row("throughput, ops/s (64 in flight)", to, tr);
    println!();
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
    let mut conn = ctx.raw.clone();
    let started = Instant::now();
    let matching_before = ctx.rt.block_on(async {
        fill(&mut conn).await;
        let dbsize: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
        // The filled keys and the hit benchmark's order.
        assert_eq!(dbsize, INV_TOTAL + 1);
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
        let () = redis::cmd("SLOWLOG")
            .arg("RESET")
            .query_async(&mut conn)
            .await
            .expect("SLOWLOG RESET");

        let start = Instant::now();
        let removed = ctx.l2.invalidate("inv:match:*").await.expect("invalidate");
        let elapsed = start.elapsed();

        let log: Value = redis::cmd("SLOWLOG")
            .arg("GET")
            .arg(1_000_000)
            .query_async(&mut conn)
            .await
            .expect("SLOWLOG GET");
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
            .query_async(&mut ctx.raw.clone())
            .await
            .unwrap()
    });

    println!(
        "pattern invalidation: RedisL2::invalidate(\"inv:match:*\") over {INV_TOTAL} keys (scan_count 1000):"
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
    invalidation(&ctx);
    c.final_summary();

    // Connections first, then the server (killed by its pid).
    drop(ctx);
    drop(server);
}
