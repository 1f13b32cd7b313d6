//! A stampede: 1,000 concurrent callers ask for one cold key whose origin
//! takes 20 ms. How many origin calls does each cache make, and how long
//! until every caller has its value? All contenders in one run, 5 rounds
//! each on a fresh key:
//!
//! - `#[cached] async fn` of this library (single flight, on by default);
//! - the `cached` crate's `#[cached]` on an `async fn`, as written by
//!   default, and with `sync_writes = "by_key"` (its single flight);
//! - raw quick_cache's `get_or_insert_async` and moka's `get_with` (both
//!   single flight), run on the same tokio tasks.
//!
//! Counts, not times of a hit: printed once, no criterion run.
//! Run: `cargo bench --bench stampede`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_runtime::cached;
use futures_util::future::join_all;

const CALLERS: usize = 1_000;
const ROUNDS: u64 = 5;
const ORIGIN: Duration = Duration::from_millis(20);

static CALLS: AtomicU64 = AtomicU64::new(0);

async fn origin(id: u64) -> u64 {
    CALLS.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(ORIGIN).await;
    id * 2
}

#[cached(ttl = "1h", key = "stampede:<id>")]
async fn ours(id: u64) -> u64 {
    origin(id).await
}

#[cached::macros::cached(max_size = 10_000, ttl_secs = 3600)]
async fn theirs(id: u64) -> u64 {
    origin(id).await
}

#[cached::macros::cached(max_size = 10_000, ttl_secs = 3600, sync_writes = "by_key")]
async fn theirs_by_key(id: u64) -> u64 {
    origin(id).await
}

/// Origin calls and the time until the last caller had its value, for
/// one round of `CALLERS` concurrent calls of `call(id)`.
async fn round<F, Fut>(id: u64, call: F) -> (u64, Duration)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = u64> + Send + 'static,
{
    CALLS.store(0, Ordering::Relaxed);
    let started = Instant::now();
    let tasks: Vec<_> = (0..CALLERS).map(|_| tokio::spawn(call(id))).collect();
    for value in join_all(tasks).await {
        assert_eq!(value.expect("a caller"), id * 2);
    }
    (CALLS.load(Ordering::Relaxed), started.elapsed())
}

async fn contender<F, Fut>(name: &str, first_id: u64, call: F)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = u64> + Send + 'static,
{
    let mut calls = Vec::new();
    let mut times = Vec::new();
    for r in 0..ROUNDS {
        let (n, took) = round(first_id + r, &call).await;
        calls.push(n);
        times.push(took.as_secs_f64() * 1e3);
    }
    let (lo, hi) = (calls.iter().min().unwrap(), calls.iter().max().unwrap());
    let (tlo, thi) = times
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), t| (a.min(*t), b.max(*t)));
    println!("{name:<44} {lo:>6} - {hi:<6} {tlo:>8.1} - {thi:<8.1}");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        println!(
            "stampede: {CALLERS} concurrent callers of one cold key, origin {} ms, {ROUNDS} rounds",
            ORIGIN.as_millis()
        );
        println!(
            "{:<44} {:>15} {:>19}",
            "contender", "origin calls", "all answered (ms)"
        );
        contender("cache-runtime #[cached] async fn", 1_000, ours).await;
        contender("cached crate #[cached] async fn", 2_000, theirs).await;
        contender(
            "cached crate, sync_writes = \"by_key\"",
            3_000,
            theirs_by_key,
        )
        .await;
        let quick = Arc::new(quick_cache::sync::Cache::<u64, u64>::new(10_000));
        contender("quick_cache get_or_insert_async", 4_000, move |id| {
            let quick = Arc::clone(&quick);
            async move {
                quick
                    .get_or_insert_async(&id, async { Ok::<_, ()>(origin(id).await) })
                    .await
                    .expect("no error")
            }
        })
        .await;
        let moka = moka::sync::Cache::<u64, u64>::new(10_000);
        contender(
            "moka (sync) get_with, in spawn_blocking",
            5_000,
            move |id| {
                let moka = moka.clone();
                async move {
                    tokio::task::spawn_blocking(move || {
                        moka.get_with(id, || {
                            tokio::runtime::Handle::current().block_on(origin(id))
                        })
                    })
                    .await
                    .expect("a blocking task")
                }
            },
        )
        .await;
    });
}
