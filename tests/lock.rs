//! Single flight across instances: `#[cached(lock = true)]` takes a lock in
//! Redis for a cold key, so that one origin call serves every instance; a
//! holder that dies frees it (at once when its future is dropped, at the
//! lock's expiry when its process is gone).

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_runtime::{cached, Backend, Cache};
use serde::{Deserialize, Serialize};
use support::Target;

/// A slow origin that counts its calls; the first call hangs while `hang`
/// is set (a leader that never finishes).
#[derive(Default)]
struct Db {
    calls: AtomicU64,
    hang: std::sync::atomic::AtomicBool,
    entered: tokio::sync::Notify,
}

impl Db {
    async fn read(&self, id: u64) -> Item {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.entered.notify_one();
        if n == 1 && self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        Item { id, call: n }
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Item {
    id: u64,
    call: u64,
}

#[cached(ttl = "1m", key = "cold:<id>", lock = true, skip(db))]
async fn locked(db: &Db, id: u64) -> Item {
    db.read(id).await
}

#[cached(ttl = "1m", key = "unlocked:<id>", skip(db))]
async fn unlocked(db: &Db, id: u64) -> Item {
    db.read(id).await
}

async fn instances(server: &impl Target, n: usize, lock_ttl: Duration) -> Vec<Cache> {
    let mut caches = Vec::new();
    for _ in 0..n {
        let cache = Cache::builder()
            .backend(Backend::Hybrid)
            .redis_url(server.url())
            .key_prefix("lock")
            .redis_timeout(Duration::from_secs(2))
            .lock_ttl(lock_ttl)
            .build()
            .unwrap();
        assert!(cache.wait_in_sync(Duration::from_secs(10)).await);
        caches.push(cache);
    }
    caches
}

/// Starts `per_instance` concurrent calls of `call` on every instance.
fn callers<T, F, Fut>(
    caches: &[Cache],
    per_instance: usize,
    call: F,
) -> Vec<tokio::task::JoinHandle<T>>
where
    T: Send + 'static,
    F: Fn(Cache) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let mut tasks = Vec::new();
    for _ in 0..per_instance {
        for cache in caches {
            tasks.push(tokio::spawn(call(cache.clone())));
        }
    }
    tasks
}

async fn all_equal(tasks: Vec<tokio::task::JoinHandle<Item>>) -> Item {
    let mut first = None;
    for task in tasks {
        let item = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("a caller did not finish within 60 s")
            .expect("a caller panicked");
        assert_eq!(first.get_or_insert_with(|| item.clone()), &item);
    }
    first.expect("callers")
}

on_server_and_cluster! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_key_costs_one_origin_call_across_four_instances(server: &Redis) {
    let caches = instances(server, 4, Duration::from_secs(10)).await;
    let db = Arc::new(Db::default());
    let tasks = callers(&caches, 200, |cache| {
        let db = Arc::clone(&db);
        async move { cache.scope(locked(&db, 1)).await }
    });
    assert_eq!(all_equal(tasks).await.call, 1);
    assert_eq!(db.calls(), 1, "800 callers on 4 instances, one origin call");
    let hits: u64 = caches.iter().map(|c| c.stats().l2_hits).sum();
    assert!(
        hits >= 3,
        "the other instances read the value from Redis: {hits}"
    );

    // The same without the lock: each instance calls the origin.
    let db = Arc::new(Db::default());
    let tasks = callers(&caches, 200, |cache| {
        let db = Arc::clone(&db);
        async move { cache.scope(unlocked(&db, 1)).await }
    });
    for task in tasks {
        task.await.unwrap();
    }
    assert!(db.calls() > 1, "{} calls without the lock", db.calls());
}
}

on_server_and_cluster! {
/// The lock holder's call is dropped mid-call (its task aborted): the lock
/// is released, and another instance takes over; every caller finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_finish_when_the_holder_is_cancelled(server: &Redis) {
    let caches = instances(server, 4, Duration::from_secs(30)).await;
    let db = Arc::new(Db::default());
    db.hang.store(true, Ordering::SeqCst);
    let holder = {
        let (cache, db) = (caches[0].clone(), Arc::clone(&db));
        tokio::spawn(async move { cache.scope(locked(&db, 2)).await })
    };
    db.entered.notified().await;
    let tasks = callers(&caches[1..], 200, |cache| {
        let db = Arc::clone(&db);
        async move { cache.scope(locked(&db, 2)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(db.calls(), 1, "the others wait for the holder");
    holder.abort();
    // Well before the lock's 30 s expiry.
    assert_eq!(all_equal(tasks).await.call, 2);
    assert_eq!(db.calls(), 2);
}
}

on_server_and_cluster! {
/// A holder that died with its process left its lock behind: callers wait
/// for the lock to expire, then one instance calls the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_left_by_a_dead_holder_expires_and_one_instance_takes_over(server: &Redis) {
    let caches = instances(server, 4, Duration::from_secs(10)).await;
    // What a holder killed mid-call leaves: its lock, with its expiry.
    let _: () = redis::cmd("SET")
        .arg(format!("{}[k]cold:3", server.group("lock", "cold:3")))
        .arg("dead-holder")
        .arg("PX")
        .arg(3000)
        .query(&mut *server.raw())
        .unwrap();
    let db = Arc::new(Db::default());
    let tasks = callers(&caches, 50, |cache| {
        let db = Arc::clone(&db);
        async move { cache.scope(locked(&db, 3)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(db.calls(), 0, "nobody calls while the lock is held");
    assert_eq!(all_equal(tasks).await.call, 1);
    assert_eq!(db.calls(), 1);
}
}

/// Calls the origin for `held` at a time: counts how many run at once.
#[derive(Default)]
struct Concurrency {
    calls: AtomicU64,
    running: AtomicU64,
    most: AtomicU64,
}

impl Concurrency {
    async fn call(&self, took: Duration) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(took).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cached(ttl = "1m", key = "slow:<id>", lock = true, skip(origin))]
async fn slow(origin: &Concurrency, id: u64) -> Item {
    origin.call(Duration::from_millis(1200)).await;
    Item { id, call: 1 }
}

#[derive(Clone, Debug, PartialEq)]
struct Down;

#[cached(ttl = "1m", key = "down:<id>", lock = true, skip(origin))]
async fn failing(origin: &Concurrency, id: u64) -> Result<Item, Down> {
    let _ = id;
    origin.call(Duration::from_millis(200)).await;
    Err(Down)
}

on_server_and_cluster! {
/// An origin call longer than the lock's lifetime keeps the lock: the
/// holder renews it, the others wait; one call in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_renews_its_lock_through_a_slow_origin_call(server: &Redis) {
    let caches = instances(server, 4, Duration::from_millis(300)).await;
    let origin = Arc::new(Concurrency::default());
    let tasks = callers(&caches, 50, |cache| {
        let origin = Arc::clone(&origin);
        async move { cache.scope(slow(&origin, 1)).await }
    });
    all_equal(tasks).await;
    assert_eq!(origin.calls.load(Ordering::SeqCst), 1);
}
}

on_server_and_cluster! {
/// A holder whose origin failed stored nothing: the other instances call
/// their own origin at once (together), instead of taking the lock in
/// turn; each caller gets the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_holder_stores_nothing_the_others_call_at_once(server: &Redis) {
    let caches = instances(server, 4, Duration::from_secs(10)).await;
    let origin = Arc::new(Concurrency::default());
    let tasks = callers(&caches, 50, |cache| {
        let origin = Arc::clone(&origin);
        async move { cache.scope(failing(&origin, 1)).await }
    });
    for task in tasks {
        assert_eq!(task.await.unwrap(), Err(Down));
    }
    // One call per instance (waiters in a process share their leader's
    // error), the three after the first at once.
    assert_eq!(origin.calls.load(Ordering::SeqCst), 4);
    assert!(
        origin.most.load(Ordering::SeqCst) >= 2,
        "the instances called one after another"
    );
}
}
