//! Adaptive entries: the body of a `#[cached]` function chooses the life
//! of the value it computes from the value itself (`context::ttl`,
//! `context::stale`, `context::fail_safe`), in process and in Redis.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::testing::ManualClock;
use cache_runtime::{cached, context, Backend, Cache};
use serde::{Deserialize, Serialize};
use support::Target;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    delivered: bool,
}

static LOADS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// Even orders are delivered: an hour; odd ones pending: one second.
#[cached(ttl = "1m", key = "order:<id>")]
async fn order(id: u64) -> Order {
    LOADS[id as usize].fetch_add(1, Ordering::SeqCst);
    let order = Order {
        id,
        delivered: id & 1 == 0,
    };
    let ttl = if order.delivered { 3_600 } else { 1 };
    assert!(context::ttl(Duration::from_secs(ttl)));
    order
}

fn loads(id: u64) -> u64 {
    LOADS[id as usize].load(Ordering::SeqCst)
}

#[tokio::test]
async fn each_value_lives_as_long_as_its_body_chose() {
    let clock = ManualClock::new();
    let cache = Cache::builder().clock(clock.clone()).build().unwrap();
    let read = |id| cache.scope(order(id));
    read(0).await;
    read(1).await;
    assert_eq!((loads(0), loads(1)), (1, 1));

    // Past the pending order's second, within the function's minute.
    clock.advance(Duration::from_secs(2));
    read(0).await;
    read(1).await;
    assert_eq!((loads(0), loads(1)), (1, 2));

    // Past the function's minute, within the delivered order's hour.
    clock.advance(Duration::from_secs(30 * 60));
    read(0).await;
    assert_eq!(loads(0), 1);
    clock.advance(Duration::from_secs(31 * 60));
    read(0).await;
    assert_eq!(loads(0), 2);
}

#[test]
fn outside_an_origin_call_the_context_changes_nothing() {
    assert!(!context::ttl(Duration::from_secs(1)));
    assert!(!context::stale(Duration::from_secs(1)));
    assert!(!context::fail_safe(Duration::from_secs(1)));
}

on_server_and_cluster! {
#[tokio::test]
async fn redis_keeps_each_value_for_the_life_its_body_chose(server: &Redis) {
    let cache = Cache::builder()
        .backend(Backend::Hybrid)
        .redis_url(server.url())
        .key_prefix(if server.as_server().is_some() { "adaptive-s" } else { "adaptive-c" })
        .redis_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert!(cache.wait_in_sync(Duration::from_secs(10)).await);
    cache.scope(order(2)).await;
    cache.scope(order(3)).await;
    let mut raw = server.raw();
    let pttl = |raw: &mut Box<dyn redis::ConnectionLike>, id: u64| -> i64 {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("adaptive-*order:{id}"))
            .query(raw.as_mut())
            .unwrap();
        assert_eq!(keys.len(), 1, "{keys:?}");
        redis::cmd("PTTL").arg(&keys[0]).query(raw.as_mut()).unwrap()
    };
    let (delivered, pending) = (pttl(&mut raw, 2), pttl(&mut raw, 3));
    assert!(delivered > 60_000, "an hour, not the function's minute: {delivered} ms");
    assert!((0..=1_000).contains(&pending), "a second: {pending} ms");
}
}
