//! `#[cached(refresh_ahead = "80%")]`: a hit on a value past that share of
//! its TTL answers at once and starts one refresh in the background, so a
//! key read steadily never expires under its readers; with `lock`, one
//! instance refreshes and the others take its value from Redis.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::testing::ManualClock;
use cache_runtime::{cached, Backend, Cache};
use support::Target;

static RATE_CALLS: AtomicU64 = AtomicU64::new(0);

/// The n-th call returns n.
#[cached(ttl = "10s", key = "rate:<currency>", refresh_ahead = "80%")]
async fn rate(currency: &str) -> u64 {
    let _ = currency;
    RATE_CALLS.fetch_add(1, Ordering::SeqCst) + 1
}

/// Waits (bounded) until `cache` has counted `loads` origin calls.
async fn loads_reach(cache: &Cache, loads: u64) {
    for _ in 0..2_000 {
        if cache.stats().loads >= loads {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("{loads} origin calls never made: {:?}", cache.stats());
}

#[tokio::test]
async fn a_hit_past_the_share_answers_at_once_and_refreshes_once() {
    let clock = ManualClock::new();
    let cache = Cache::builder().clock(clock.clone()).build().unwrap();
    assert_eq!(cache.scope(rate("EUR")).await, 1);

    // Before 80% of the TTL: a plain hit.
    clock.advance(Duration::from_secs(7));
    assert_eq!(cache.scope(rate("EUR")).await, 1);
    assert_eq!(cache.stats().refreshes_ahead, 0);

    // Past it: the old value at once, and one refresh however many hits.
    clock.advance(Duration::from_millis(1_500));
    let first = cache.scope(rate("EUR"));
    let second = cache.scope(rate("EUR"));
    assert_eq!(tokio::join!(first, second), (1, 1));
    loads_reach(&cache, 2).await;
    assert_eq!(cache.scope(rate("EUR")).await, 2);
    let stats = cache.stats();
    assert_eq!(
        (stats.refreshes_ahead, stats.loads, stats.misses),
        (1, 2, 1)
    );
}

static FLAKY_CALLS: AtomicU64 = AtomicU64::new(0);

/// Answers the first call, fails every later one.
#[cached(ttl = "10s", key = "flaky:<id>", refresh_ahead = "50%")]
async fn flaky(id: u32) -> Result<u64, String> {
    let _ = id;
    match FLAKY_CALLS.fetch_add(1, Ordering::SeqCst) {
        0 => Ok(1),
        _ => Err("down".into()),
    }
}

#[tokio::test]
async fn a_failed_refresh_leaves_the_value_and_serves_nobody_an_error() {
    let clock = ManualClock::new();
    let cache = Cache::builder().clock(clock.clone()).build().unwrap();
    assert_eq!(cache.scope(flaky(1)).await, Ok(1));
    clock.advance(Duration::from_secs(6));
    assert_eq!(cache.scope(flaky(1)).await, Ok(1));
    loads_reach(&cache, 2).await;
    tokio::task::yield_now().await;
    assert_eq!(cache.scope(flaky(1)).await, Ok(1), "the value stays");
    let stats = cache.stats();
    assert_eq!((stats.fail_safe_served, stats.errors), (0, 0), "{stats:?}");
}

static STEADY_CALLS: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = "10s", key = "steady:<id>", refresh_ahead = "70%")]
async fn steady(id: u32) -> u64 {
    let _ = id;
    STEADY_CALLS.fetch_add(1, Ordering::SeqCst) + 1
}

#[tokio::test]
async fn a_key_read_every_second_never_expires_under_its_readers() {
    let clock = ManualClock::new();
    let cache = Cache::builder().clock(clock.clone()).build().unwrap();
    let mut last = 0;
    for second in 0..60 {
        let value = cache.scope(steady(1)).await;
        assert!(value >= last, "went back from {last} to {value}");
        last = value;
        // The refresh a hit started runs (the runtime's other tasks run
        // while a service awaits) and lands before the next read.
        tokio::task::yield_now().await;
        loads_reach(&cache, 1 + cache.stats().refreshes_ahead).await;
        clock.advance(Duration::from_secs(1));
        let _ = second;
    }
    let stats = cache.stats();
    // Only the first read missed; a refresh every 7 or 8 reads.
    assert_eq!(stats.misses, 1, "{stats:?}");
    assert!((7..=9).contains(&stats.refreshes_ahead), "{stats:?}");
    assert_eq!(stats.loads, 1 + stats.refreshes_ahead);
}

/// Origin calls of `shared`, by id (the server and cluster runs go in
/// parallel, each with an id of its own).
static SHARED_CALLS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

#[cached(ttl = "4s", key = "shared:<id>", refresh_ahead = "50%", lock = true)]
async fn shared(id: usize) -> u64 {
    tokio::time::sleep(Duration::from_millis(50)).await;
    SHARED_CALLS[id].fetch_add(1, Ordering::SeqCst) + 1
}

fn hybrid(server: &impl Target) -> Cache {
    Cache::builder()
        .backend(Backend::Hybrid)
        .redis_url(server.url())
        .key_prefix("ahead")
        .redis_timeout(Duration::from_secs(2))
        .build()
        .expect("a cache")
}

on_server_and_cluster! {
#[tokio::test]
async fn with_lock_one_instance_refreshes_and_the_others_take_its_value(server: &Redis) {
    let id = usize::from(server.as_server().is_none());
    let (a, b) = (hybrid(server), hybrid(server));
    assert!(a.wait_in_sync(Duration::from_secs(10)).await);
    assert!(b.wait_in_sync(Duration::from_secs(10)).await);
    assert_eq!(a.scope(shared(id)).await, 1);
    assert_eq!(b.scope(shared(id)).await, 1, "b read a's value from Redis");

    // Past half of the TTL on both: each hit answers at once and starts a
    // refresh; one origin call refreshes the key for both.
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    let (on_a, on_b) = tokio::join!(a.scope(shared(id)), b.scope(shared(id)));
    assert_eq!((on_a, on_b), (1, 1));
    for _ in 0..2_000 {
        if a.scope(shared(id)).await == 2 && b.scope(shared(id)).await == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!((a.scope(shared(id)).await, b.scope(shared(id)).await), (2, 2));
    assert_eq!((a.stats().refreshes_ahead, b.stats().refreshes_ahead), (1, 1));
    assert_eq!(SHARED_CALLS[id].load(Ordering::SeqCst), 2, "one load, one refresh");
}
}
