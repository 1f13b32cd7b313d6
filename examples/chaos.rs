//! Soak test: a mixed workload (reads through `#[cached]` functions,
//! writes with exact and prefix invalidations) on three cache instances
//! sharing one redis-server, which this program kills and restarts empty,
//! pauses (SIGSTOP) and resumes, and whose connections it cuts, in turn,
//! for the given number of seconds. Every read is checked: an error the
//! cache caused, or a value older than an invalidation the read must
//! respect (see tests/support/chaos.rs), is counted. Prints one summary
//! line; exits with 1 when any call failed or read stale.
//!
//! ```sh
//! cargo run --release --example chaos -- 60
//! cargo run --release --example chaos -- 60 2s   # with degraded_l1_ttl = 2s
//! ```
//!
//! Also prints the origin calls per second of the two instances with an
//! in-process tier in each phase (healthy, Redis away, recovering), the
//! figure a degraded mode is for.
//!
//! Needs `redis-server` on the PATH (or `REDIS_SERVER`); it starts its own
//! on a free loopback port and stops it at the end.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::chaos::{BreakerChanges, Load};
use support::RedisServer;

/// Runs a blocking step (signals, waiting for a restarted server) without
/// holding up the runtime's other tasks.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u64 = match std::env::args().nth(1) {
        None => 60,
        Some(arg) => arg.parse().unwrap_or_else(|_| {
            eprintln!("usage: chaos [seconds]   (got `{arg}`)");
            std::process::exit(2)
        }),
    };
    // Read as `CACHE_DEGRADED_L1_TTL` is, by the configuration's parser.
    let degraded = match std::env::args().nth(2) {
        None => Duration::ZERO,
        Some(arg) => {
            cache_runtime::Config::from_lookup(|var| {
                (var == "CACHE_DEGRADED_L1_TTL").then(|| arg.clone())
            })
            .unwrap_or_else(|e| {
                eprintln!("usage: chaos [seconds] [degraded_l1_ttl]   ({e})");
                std::process::exit(2)
            })
            .degraded_l1_ttl
        }
    };
    let transitions = Arc::new(BreakerChanges::default());
    let mut server = RedisServer::start();
    let load = Load::start_with(&server, |b| {
        b.hooks(Arc::clone(&transitions)).degraded_l1_ttl(degraded)
    })
    .await;
    // The origin calls of the two instances with an in-process tier (the
    // others have none: every read they make while Redis is away is an
    // origin call, whatever the setting), and seconds, by phase.
    let hybrid_loads = || load.a.stats().loads + load.b.stats().loads;
    let mut phases: Vec<(&str, f64, u64)> = Vec::new();
    let mut mark = (Instant::now(), hybrid_loads());
    let mut close = |name: &'static str| {
        let reads = hybrid_loads();
        let entry = match phases.iter_mut().find(|(n, _, _)| *n == name) {
            Some(entry) => entry,
            None => {
                phases.push((name, 0.0, 0));
                phases.last_mut().unwrap()
            }
        };
        entry.1 += mark.0.elapsed().as_secs_f64();
        entry.2 += reads - mark.1;
        mark = (Instant::now(), reads);
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let (mut kills, mut pauses, mut cuts) = (0u32, 0u32, 0u32);
    let mut round = 0u32;
    let phase = |name| *load.tally.phase.lock().unwrap() = name;
    while Instant::now() < deadline {
        // A healthy stretch, then a fault.
        phase("healthy");
        tokio::time::sleep(Duration::from_secs(2)).await;
        close("healthy");
        match round % 3 {
            0 => {
                phase("killed");
                load.redis_away();
                blocking(|| server.kill());
                tokio::time::sleep(Duration::from_secs(2)).await;
                close("redis away");
                phase("restarting");
                blocking(|| server.restart());
                load.redis_back();
                phase("restarted");
                kills += 1;
            }
            1 => {
                phase("paused");
                load.redis_away();
                blocking(|| server.pause());
                tokio::time::sleep(Duration::from_secs(3)).await;
                close("redis away");
                server.resume();
                load.redis_back();
                phase("resumed");
                pauses += 1;
            }
            _ => {
                phase("cutting connections");
                let mut admin = blocking(|| server.connection());
                for _ in 0..5 {
                    for kind in ["normal", "pubsub"] {
                        let _: redis::RedisResult<u64> = blocking(|| {
                            redis::cmd("CLIENT")
                                .arg("KILL")
                                .arg("TYPE")
                                .arg(kind)
                                .query(&mut admin)
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                cuts += 1;
            }
        }
        round += 1;
        load.recovers().await;
        close("recovering");
    }
    let db = Arc::clone(&load.db);
    let (tally, caches) = load.stop().await;
    let (mut hits, mut misses, mut opens) = (0, 0, 0);
    for cache in &caches {
        let stats = cache.stats();
        hits += stats.hits;
        misses += stats.misses;
        opens += stats.breaker_opens;
    }
    let errors = tally.errors.load(Ordering::SeqCst);
    let stale = tally.stale.load(Ordering::SeqCst);
    println!(
        "chaos: {:.0} s, {} operations, {errors} caller errors, {stale} stale reads (the longest tolerated {:?} after its invalidation reached Redis, bound {:?}), {} origin calls, hit rate {:.1}%, {} breaker transitions ({opens} opens); faults: {kills} kills, {pauses} pauses, {cuts} connection cuts",
        started.elapsed().as_secs_f64(),
        tally.calls(),
        tally.longest_tolerated(),
        tally.tolerance,
        db.reads.load(Ordering::SeqCst),
        100.0 * hits as f64 / (hits + misses).max(1) as f64,
        transitions.seen().len(),
    );
    let rates: Vec<String> = phases
        .iter()
        .map(|(name, secs, reads)| format!("{name} {:.0}/s", *reads as f64 / secs.max(0.001)))
        .collect();
    println!(
        "origin calls of the instances with an in-process tier, by phase (degraded_l1_ttl {degraded:?}): {}",
        rates.join(", ")
    );
    if errors > 0 || stale > 0 {
        eprintln!("first problem: {:?}", tally.first_problem.lock().unwrap());
        // `exit` runs no destructors: stop the server first.
        drop(server);
        std::process::exit(1);
    }
}
