//! Every entry point is two-tier: the `Cache` handle (`get`, `set`,
//! `get_or_insert_with`, `exists`, `delete`, `warm`), plain `fn`s under
//! `#[cached]`, and the counts `invalidate` returns. Several `Cache`
//! instances on one real redis-server (or a local cluster) stand for
//! several instances of a service.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_runtime::{cached, invalidates, Backend, Cache, SharedInvalidation};
use serde::{Deserialize, Serialize};
use support::{RedisServer, Target};

const MIN: Duration = Duration::from_secs(60);

fn builder(server: &impl Target, prefix: &str, backend: Backend) -> cache_runtime::CacheBuilder {
    // A timeout far above a round trip: on a loaded machine the default
    // could turn a read into a miss, and these tests count exactly.
    Cache::builder()
        .backend(backend)
        .redis_url(server.url())
        .key_prefix(prefix)
        .redis_timeout(Duration::from_secs(2))
}

fn hybrid(server: &impl Target, prefix: &str) -> Cache {
    builder(server, prefix, Backend::Hybrid)
        .build()
        .expect("a cache")
}

async fn synced(cache: Cache) -> Cache {
    assert!(
        cache.wait_in_sync(Duration::from_secs(10)).await,
        "no backplane subscription within 10 s"
    );
    cache
}

/// Waits until `check` holds, looking again every few milliseconds; fails
/// the test after 10 s (an announcement that never arrived).
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    for _ in 0..2_000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("never: {what}");
}

on_server_and_cluster! {
#[tokio::test]
async fn what_one_instance_sets_another_gets_and_a_new_set_replaces_its_copy(server: &Redis) {
    let (a, b) = (
        synced(hybrid(server, "handle")).await,
        synced(hybrid(server, "handle")).await,
    );
    assert_eq!(b.get::<String>("user:123").await, None);
    assert!(!b.exists("user:123").await);

    a.set("user:123", "Ada".to_string(), MIN).await;
    assert_eq!(b.get::<String>("user:123").await.as_deref(), Some("Ada"));
    assert!(b.exists("user:123").await);
    assert!(b.stats().l2_hits >= 1);
    // Kept in b's process once read there (a read that a's announcement
    // of the set overtakes is served, not kept).
    eventually("b keeps what it read from Redis", || async {
        b.get::<String>("user:123").await;
        b.stats().hits >= 1
    })
    .await;

    // A newer value on a: b drops its copy and reads the new one.
    a.set("user:123", "Grace".to_string(), MIN).await;
    eventually("b reads the value a set after it kept one", || async {
        b.get::<String>("user:123").await.as_deref() == Some("Grace")
    })
    .await;

    // Deleted on a: gone on b, in both tiers.
    assert!(a.delete("user:123").await);
    eventually("b no longer finds the key a deleted", || async {
        b.get::<String>("user:123").await.is_none()
    })
    .await;
    assert!(!b.exists("user:123").await);
    assert!(!a.delete("user:123").await, "nothing left to delete");
}
}

on_server_and_cluster! {
#[tokio::test]
async fn get_or_insert_with_reads_what_another_instance_computed(server: &Redis) {
    let (a, b) = (
        synced(hybrid(server, "goiw")).await,
        synced(hybrid(server, "goiw")).await,
    );
    let calls = AtomicU64::new(0);
    let init = |n: u32| {
        let calls = &calls;
        move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            n
        }
    };
    assert_eq!(a.get_or_insert_with("answer", MIN, init(42)).await, 42);
    assert_eq!(b.get_or_insert_with("answer", MIN, init(7)).await, 42);
    let fallible = b
        .try_get_or_insert_with("answer", MIN, || async { Err::<u32, &str>("not called") })
        .await;
    assert_eq!(fallible, Ok(42));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "b found a's value in Redis");
    assert_eq!(b.stats().l2_hits, 1);
}
}

on_server_and_cluster! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_or_insert_with_under_lock_calls_the_origin_once_across_instances(server: &Redis) {
    let instances: Vec<Cache> = vec![
        builder(server, "locked", Backend::Hybrid).lock(true).build().unwrap(),
        builder(server, "locked", Backend::Hybrid).lock(true).build().unwrap(),
    ];
    let calls = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for round in 0..8 {
        let cache = instances[round % 2].clone();
        let calls = Arc::clone(&calls);
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_insert_with("report:2026", MIN, || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    // A slow origin: the others arrive while it runs.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    vec![1u64, 2, 3]
                })
                .await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), vec![1, 2, 3]);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one origin call in the fleet");
}
}

#[tokio::test]
async fn the_redis_backend_keeps_handle_values_in_redis_only() {
    let server = RedisServer::start();
    let a = builder(&server, "only", Backend::Redis).build().unwrap();
    let b = builder(&server, "only", Backend::Redis).build().unwrap();
    a.set("rate:EUR", 1.08f64, MIN).await;
    assert_eq!(b.get::<f64>("rate:EUR").await, Some(1.08));
    assert_eq!(
        a.stats().entries + b.stats().entries,
        0,
        "nothing in process"
    );
    assert!(server.get("only", "rate:EUR").is_some());
}

#[tokio::test]
async fn what_is_warmed_before_the_backplane_subscribed_is_not_lost() {
    let server = RedisServer::start();
    // Warmed at once, before this instance has subscribed (which empties
    // its in-process tier).
    let a = hybrid(&server, "warm");
    let warmed = a
        .warm((1..=3u32).map(|id| (format!("lookup:{id}"), id * 10)), MIN)
        .await;
    assert_eq!(warmed, 3);
    let a = synced(a).await;
    let calls = AtomicU64::new(0);
    let value = a
        .get_or_insert_with("lookup:2", MIN, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            0u32
        })
        .await;
    assert_eq!((value, calls.load(Ordering::SeqCst)), (20, 0));
    // And another instance finds every warmed value.
    let b = synced(hybrid(&server, "warm")).await;
    for id in 1..=3u32 {
        assert_eq!(b.get::<u32>(&format!("lookup:{id}")).await, Some(id * 10));
    }
}

#[tokio::test]
async fn local_values_stay_in_one_process_and_invalidations_still_reach_them() {
    #[derive(Clone)]
    struct Connection(Arc<u64>); // not serde

    let server = RedisServer::start();
    let (a, b) = (
        synced(hybrid(&server, "local")).await,
        synced(hybrid(&server, "local")).await,
    );
    a.local().set("conn:eu", Connection(Arc::new(1)), MIN).await;
    assert_eq!(
        a.local().get::<Connection>("conn:eu").await.map(|c| *c.0),
        Some(1)
    );
    assert!(b.local().get::<Connection>("conn:eu").await.is_none());
    assert!(!b.exists("conn:eu").await, "nothing of it in Redis");
    // Another instance's invalidation reaches it.
    assert_eq!(b.invalidate("conn:*").await.unwrap(), 0);
    eventually("a's local value is invalidated by b", || async {
        a.local().get::<Connection>("conn:eu").await.is_none()
    })
    .await;
}

on_server_and_cluster! {
#[tokio::test]
async fn invalidate_counts_the_keys_of_both_tiers_once(server: &Redis) {
    let (a, b) = (
        synced(hybrid(server, "counts")).await,
        synced(hybrid(server, "counts")).await,
    );
    for user in 1..=3 {
        a.set(&format!("user:{user}:roles"), vec!["admin".to_string()], MIN).await;
    }
    a.set("user:1:name", "Ada".to_string(), MIN).await;
    // b holds none of them in process: all three are counted in Redis.
    assert_eq!(b.invalidate("*:roles").await.unwrap(), 3);
    for user in 1..=3 {
        let key = format!("user:{user}:roles");
        eventually("a drops what b invalidated", || async {
            a.get::<Vec<String>>(&key).await.is_none()
        })
        .await;
    }

    // Held in both tiers, a key counts once.
    for user in 1..=3 {
        a.set(&format!("user:{user}:roles"), vec!["viewer".to_string()], MIN).await;
    }
    let report = a.invalidate_report("*:roles").await.unwrap();
    assert_eq!((report.local, report.removed), (3, 3), "{report}");
    assert_eq!(report.shared, SharedInvalidation::Scanned(3));

    // A prefix is invalidated in Redis in one write, uncounted: the report
    // says so, and the count is what this process removed.
    let report = b.invalidate_report("user:*").await.unwrap();
    assert_eq!(report.shared, SharedInvalidation::Prefix("user:".into()));
    assert_eq!(report.removed, report.local);
    eventually("a no longer finds a key under the prefix b invalidated", || async {
        a.get::<String>("user:1:name").await.is_none()
    })
    .await;
}
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Price {
    id: u64,
    cents: u64,
}

#[cached(ttl = "1m", key = "price:<id>", skip(calls))]
fn price(calls: &AtomicU64, id: u64) -> Price {
    calls.fetch_add(1, Ordering::SeqCst);
    Price {
        id,
        cents: id * 100,
    }
}

#[invalidates("price:<id>")]
fn reprice(id: u64) {
    let _ = id;
}

/// `price(7)` on `a`, then on `b`: one origin call, b served from Redis;
/// then `reprice(7)` on b, and `price(7)` on a calls the origin again.
fn a_plain_fn_shares_through_redis(server: &RedisServer, prefix: &str) {
    let (a, b) = (hybrid(server, prefix), hybrid(server, prefix));
    let calls = AtomicU64::new(0);
    assert_eq!(a.scope_sync(|| price(&calls, 7)).cents, 700);
    assert_eq!(b.scope_sync(|| price(&calls, 7)).cents, 700);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "b read what a stored");
    assert_eq!((a.stats().l2_sets, b.stats().l2_hits), (1, 1));
    b.scope_sync(|| reprice(7));
    assert_eq!(a.scope_sync(|| price(&calls, 7)).cents, 700);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the invalidation reached Redis"
    );
}

#[test]
fn a_plain_fn_outside_any_runtime_reaches_redis() {
    let server = RedisServer::start();
    a_plain_fn_shares_through_redis(&server, "plain-none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_fn_on_a_multi_threaded_runtime_reaches_redis() {
    let server = RedisServer::start();
    a_plain_fn_shares_through_redis(&server, "plain-multi");
}

#[tokio::test]
async fn a_plain_fn_on_a_current_thread_runtime_reaches_redis() {
    let server = RedisServer::start();
    a_plain_fn_shares_through_redis(&server, "plain-current");
}

#[derive(Clone, Debug, PartialEq)]
struct Opaque(u64); // not serde

#[cached(ttl = "1m", key = "opaque:<id>")]
async fn opaque(id: u64) -> Opaque {
    Opaque(id)
}

#[cached(ttl = "1m", key = "meant:<id>", tier = "l1")]
async fn meant_local(id: u64) -> Opaque {
    Opaque(id)
}

#[tokio::test]
async fn a_function_whose_values_cannot_reach_redis_is_marked() {
    let server = RedisServer::start();
    let cache = synced(hybrid(&server, "marked")).await;
    assert_eq!(cache.scope(opaque(1)).await, Opaque(1));
    assert_eq!(cache.scope(opaque(2)).await, Opaque(2));
    assert_eq!(cache.scope(meant_local(1)).await, Opaque(1));
    let health = cache.health().await;
    assert_eq!(health.local_only, vec!["opaque:<id>".to_string()]);
    assert!(health.to_string().contains("opaque:<id>"), "{health}");
    assert_eq!(cache.stats().local_only_functions, 1);

    // A memory cache has no other instances to share with: nothing marked.
    let memory = Cache::builder().build().unwrap();
    assert_eq!(memory.scope(opaque(1)).await, Opaque(1));
    assert!(memory.health().await.local_only.is_empty());
}
