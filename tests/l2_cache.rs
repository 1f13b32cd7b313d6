//! The two-tier cache through `#[cached]`, `#[invalidates]` and the
//! handle, against real throwaway redis-server processes: several `Cache`
//! instances on one server stand for several instances of a service.

mod support;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_runtime::{
    cached, invalidates, Backend, BreakerState, Cache, Codec, Config, RedisL2, SharedInvalidation,
};
use serde::{Deserialize, Serialize};
use support::{Redis, RedisServer, Target};
use tokio::sync::Notify;

/// The origin: a versioned record per id, and a count of reads.
#[derive(Default)]
struct Db {
    version: AtomicU64,
    reads: AtomicU64,
    /// When set, each read waits here after reading (a slow origin).
    gate: Option<Gate>,
    /// Reads pass the gate without waiting while this is set.
    open: std::sync::atomic::AtomicBool,
}

struct Gate {
    read: Notify,
    release: Notify,
}

impl Db {
    fn gated() -> Db {
        Db {
            gate: Some(Gate {
                read: Notify::new(),
                release: Notify::new(),
            }),
            ..Db::default()
        }
    }

    async fn read(&self, id: u64) -> Order {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let version = self.version.load(Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            if !self.open.load(Ordering::SeqCst) {
                gate.read.notify_one();
                gate.release.notified().await;
            }
        }
        Order { id, version }
    }

    fn write(&self) -> u64 {
        self.version.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    version: u64,
}

#[cached(ttl = "1m", key = "order:<id>", skip(db))]
async fn order(db: &Db, id: u64) -> Order {
    db.read(id).await
}

#[cached(ttl = "1m", key = "orders:list:<tenant>:<page>", skip(db))]
async fn order_page(db: &Db, tenant: &str, page: u32) -> Order {
    db.read(u64::from(page)).await
}

#[cached(ttl = "1m", key = "shared-only:<id>", tier = "l2", skip(db))]
async fn shared_only(db: &Db, id: u64) -> Order {
    db.read(id).await
}

#[cached(ttl = "1m", key = "local-only:<id>", tier = "l1", skip(db))]
async fn local_only(db: &Db, id: u64) -> Order {
    db.read(id).await
}

#[cached(ttl = "1m", key = "fallible:<id>", skip(db))]
async fn fallible(db: &Db, id: u64) -> Result<Order, String> {
    Ok(db.read(id).await)
}

/// Not serde: stays in process whatever the backend.
#[derive(Clone, Debug, PartialEq)]
struct Opaque(u64);

#[cached(ttl = "1m", key = "opaque:<id>", skip(db))]
async fn opaque(db: &Db, id: u64) -> Opaque {
    Opaque(db.read(id).await.version)
}

#[invalidates("order:<id>")]
async fn update_order(db: &Db, id: u64) -> Result<u64, String> {
    let _ = id;
    Ok(db.write())
}

#[invalidates("orders:list:<tenant>:*")]
async fn update_tenant(db: &Db, tenant: &str) {
    let _ = tenant;
    db.write();
}

#[invalidates("order:<id>")]
fn update_order_blocking(db: &Db, id: u64) {
    let _ = id;
    db.write();
}

/// A cache on `server` under `prefix`. A Redis timeout far above a round
/// trip: on a loaded machine the default could turn a read into a miss,
/// and counts these tests assert exactly would shift.
fn cache(server: &impl Target, prefix: &str, backend: Backend) -> Cache {
    builder(server, prefix, backend).build().expect("a cache")
}

fn builder(server: &impl Target, prefix: &str, backend: Backend) -> cache_runtime::CacheBuilder {
    Cache::builder()
        .backend(backend)
        .redis_url(server.url())
        .key_prefix(prefix)
        .redis_timeout(Duration::from_secs(2))
}

/// `cache` once subscribed to the backplane: until then a cache serves
/// nothing from its in-process tier, and the first subscription empties it
/// (and keeps the loads running then from storing), which tests of exact
/// counts must not race with.
async fn synced(cache: Cache) -> Cache {
    assert!(
        cache.wait_in_sync(Duration::from_secs(10)).await,
        "no backplane subscription within 10 s"
    );
    cache
}

/// A cache that does not subscribe to the backplane: what other instances
/// invalidate does not reach its running loads, so only the fill script
/// keeps an older value out of Redis.
fn without_backplane(server: &impl Target, prefix: &str, backend: Backend) -> Cache {
    builder(server, prefix, backend)
        .backplane(false)
        .build()
        .expect("a cache")
}

/// Fails a test that would otherwise hang.
async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .expect("the test did not finish within 60 s")
}

/// `shared_only` of each of `ids` through `cache`, a task each, all at
/// once; the answers in the order of `ids`.
async fn read_concurrently(cache: &Cache, db: &Arc<Db>, ids: std::ops::Range<u64>) -> Vec<Order> {
    let calls: Vec<_> = ids
        .map(|id| {
            let (cache, db) = (cache.clone(), Arc::clone(db));
            tokio::spawn(async move { cache.scope(shared_only(&db, id)).await })
        })
        .collect();
    let mut orders = Vec::with_capacity(calls.len());
    for call in calls {
        orders.push(within(call).await.unwrap());
    }
    orders
}

/// `GET` of `<namespace>:<key>` as the cache lays it out.
fn raw_get(server: &impl Target, namespaced: &str) -> Option<Vec<u8>> {
    let (namespace, key) = namespaced.split_once(':').expect("namespace:key");
    server.get(namespace, key)
}

on_server_and_cluster! {
#[tokio::test]
async fn an_instance_finds_what_another_stored(server: &Redis) {
    let (a, b) = (
        synced(cache(server, "shop", Backend::Hybrid)).await,
        synced(cache(server, "shop", Backend::Hybrid)).await,
    );
    let db = Db::default();

    assert_eq!(a.scope(order(&db, 7)).await, Order { id: 7, version: 0 });
    assert_eq!(b.scope(order(&db, 7)).await, Order { id: 7, version: 0 });
    assert_eq!(db.reads(), 1, "the second instance read the shared tier");
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sa.l2_misses, sa.l2_sets, sa.loads), (1, 1, 1));
    assert_eq!((sb.l2_hits, sb.loads), (1, 0));
    // The shared-tier hit filled the second instance's L1.
    assert_eq!(b.scope(order(&db, 7)).await.version, 0);
    assert_eq!(b.stats().hits, 1);
    assert_eq!(b.stats().l2_hits, 1);

    // The TTL reached Redis as PX.
    let ttl: i64 = redis::cmd("PTTL")
        .arg(server.key("shop", "order:7"))
        .query(&mut *server.raw())
        .unwrap();
    assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");
}
}

on_server_and_cluster! {
#[tokio::test]
async fn results_share_their_ok_values_and_opaque_values_stay_in_process(server: &Redis) {
    let (a, b) = (
        synced(cache(server, "shop", Backend::Hybrid)).await,
        synced(cache(server, "shop", Backend::Hybrid)).await,
    );
    let db = Db::default();
    assert_eq!(a.scope(fallible(&db, 1)).await.unwrap().version, 0);
    assert_eq!(b.scope(fallible(&db, 1)).await.unwrap().version, 0);
    assert_eq!(db.reads(), 1);

    assert_eq!(a.scope(opaque(&db, 2)).await, Opaque(0));
    assert_eq!(b.scope(opaque(&db, 2)).await, Opaque(0));
    assert_eq!(db.reads(), 3, "a value that is not serde is not shared");
    assert_eq!(raw_get(server, "shop:opaque:2"), None);
}
}

on_server_and_cluster! {
#[tokio::test]
async fn tiers_of_a_function_take_effect(server: &Redis) {
    let a = synced(cache(server, "shop", Backend::Hybrid)).await;
    let db = Db::default();

    a.scope(shared_only(&db, 1)).await;
    assert_eq!(
        a.stats().entries,
        0,
        "tier = \"l2\" keeps nothing in process"
    );
    a.scope(shared_only(&db, 1)).await;
    assert_eq!((db.reads(), a.stats().l2_hits), (1, 1));

    a.scope(local_only(&db, 1)).await;
    assert_eq!(raw_get(server, "shop:local-only:1"), None);
    assert_eq!(a.stats().entries, 1);

    // The `redis` backend keeps nothing in process either.
    let r = synced(cache(server, "shop", Backend::Redis)).await;
    r.scope(order(&db, 3)).await;
    r.scope(order(&db, 3)).await;
    assert_eq!(r.stats().entries, 0);
    assert_eq!((r.stats().l2_hits, r.stats().l2_sets), (1, 1));
}
}

on_server_and_cluster! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_on_one_instance_reaches_the_shared_tier_for_all(server: &Redis) {
    // Redis-only instances: what one instance's L1 would keep is the
    // backplane's business; here every read goes to the shared tier.
    let (a, b) = (
        synced(cache(server, "shop", Backend::Redis)).await,
        synced(cache(server, "shop", Backend::Redis)).await,
    );
    let db = Db::default();

    // An exact key.
    assert_eq!(a.scope(order(&db, 1)).await.version, 0);
    b.scope(update_order(&db, 1)).await.unwrap();
    assert_eq!(a.scope(order(&db, 1)).await.version, 1);

    // A prefix pattern: one write, whatever the number of keys.
    for page in 0..50 {
        assert_eq!(a.scope(order_page(&db, "acme", page)).await.version, 1);
    }
    a.scope(order_page(&db, "globex", 0)).await;
    let reads = db.reads();
    b.scope(update_tenant(&db, "acme")).await;
    for page in 0..50 {
        assert_eq!(a.scope(order_page(&db, "acme", page)).await.version, 2);
    }
    assert_eq!(db.reads(), reads + 50);
    // The mark is the generation of the key's group (the namespace on one
    // server), exact to the digit.
    let group = server.key("shop", "orders:list:acme:1");
    let group = group.strip_suffix(":orders:list:acme:1").unwrap();
    let (tag, generation): (String, String) = redis::cmd("MGET")
        .arg(format!("{group}[t]orders:list:acme:"))
        .arg(format!("{group}[g]"))
        .query(&mut *server.raw())
        .unwrap();
    assert!(
        generation.bytes().all(|b| b.is_ascii_digit()),
        "{generation}"
    );
    assert!(tag.parse::<u64>().unwrap() <= generation.parse::<u64>().unwrap());
    assert!(
        tag.parse::<u64>().unwrap() > 1_600_000_000_000_000,
        "seeded from the clock: {tag}"
    );
    // Another tenant's pages are untouched.
    a.scope(order_page(&db, "globex", 0)).await;
    assert_eq!(db.reads(), reads + 50);

    // A pattern with a wildcard inside: SCAN + UNLINK.
    assert_eq!(a.scope(order(&db, 9)).await.version, 2);
    db.write();
    b.invalidate("order:*9").await.unwrap();
    assert_eq!(a.scope(order(&db, 9)).await.version, 3);

    // A plain `fn` under `#[invalidates]`, on a thread that may block.
    let db = Arc::new(db);
    let (b2, db2) = (b.clone(), Arc::clone(&db));
    tokio::task::spawn_blocking(move || b2.scope_sync(|| update_order_blocking(&db2, 1)))
        .await
        .unwrap();
    assert_eq!(a.scope(order(&db, 1)).await.version, 4);
}
}

on_server_and_cluster! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_invalidation_on_a_runtime_thread_reaches_redis(server: &Redis) {
    let (a, b) = (
        synced(cache(server, "shop", Backend::Redis)).await,
        synced(cache(server, "shop", Backend::Redis)).await,
    );
    let db = Db::default();
    assert_eq!(a.scope(order(&db, 5)).await.version, 0);
    b.scope(async { update_order_blocking(&db, 5) }).await;
    assert_eq!(a.scope(order(&db, 5)).await.version, 1);
}
}

/// The race of guarantee 2 across instances: instance A reads the origin,
/// instance B then writes and invalidates, and only then does A's fill
/// arrive. The fill must not land: a read on either instance afterwards
/// sees the write.
async fn race(server: &impl Target, invalidate: impl AsyncFnOnce(&Cache, &Db)) {
    within(race_inner(server, invalidate)).await;
}

async fn race_inner(server: &impl Target, invalidate: impl AsyncFnOnce(&Cache, &Db)) {
    let a = without_backplane(server, "race", Backend::Redis);
    let b = synced(cache(server, "race", Backend::Redis)).await;
    let db = Arc::new(Db::gated());

    let slow = {
        let (a, db) = (a.clone(), Arc::clone(&db));
        tokio::spawn(async move { a.scope(order_page(&db, "acme", 1)).await })
    };
    db.gate.as_ref().unwrap().read.notified().await; // A has read version 0
    invalidate(&b, &db).await; // B writes version 1 and invalidates
    db.gate.as_ref().unwrap().release.notify_one();
    assert_eq!(
        slow.await.unwrap().version,
        0,
        "A's own caller gets its read"
    );
    assert_eq!(a.stats().l2_fills_rejected, 1, "A's fill must not land");

    // Reads that start now see version 1, on both instances.
    db.open.store(true, Ordering::SeqCst);
    assert_eq!(b.scope(order_page(&db, "acme", 1)).await.version, 1);
    assert_eq!(a.scope(order_page(&db, "acme", 1)).await.version, 1);
}

on_server_and_cluster! {
#[tokio::test]
async fn a_fill_older_than_an_exact_invalidation_on_another_instance_never_lands(server: &Redis) {
    race(server, async |b: &Cache, db: &Db| {
        db.write();
        b.delete("orders:list:acme:1").await;
    })
    .await;
}
}

on_server_and_cluster! {
/// A fill of a third instance that lands after the invalidation (and is
/// fresh) must not let the slow, older fill through afterwards.
#[tokio::test]
async fn a_fill_older_than_an_invalidation_stays_out_after_a_newer_fill(server: &Redis) {
    within(stays_out(server)).await;
}
}

async fn stays_out(server: &Redis) {
    // A runs no backplane: the script alone must keep its fill out. Nor
    // does C, whose load the message of B's invalidation would otherwise
    // reach late and keep from filling.
    let a = without_backplane(server, "race", Backend::Redis);
    let b = synced(cache(server, "race", Backend::Redis)).await;
    let c = without_backplane(server, "race", Backend::Redis);
    let d = synced(cache(server, "race", Backend::Redis)).await;
    let db = Arc::new(Db::gated());
    let slow = {
        let (a, db) = (a.clone(), Arc::clone(&db));
        tokio::spawn(async move { a.scope(order_page(&db, "acme", 1)).await })
    };
    db.gate.as_ref().unwrap().read.notified().await; // A has read version 0
    db.write();
    b.delete("orders:list:acme:1").await;
    db.open.store(true, Ordering::SeqCst);
    assert_eq!(c.scope(order_page(&db, "acme", 1)).await.version, 1);
    assert_eq!(c.stats().l2_sets, 1);
    db.open.store(false, Ordering::SeqCst);
    db.gate.as_ref().unwrap().release.notify_one();
    assert_eq!(slow.await.unwrap().version, 0);
    assert_eq!(a.stats().l2_fills_rejected, 1, "A's fill must not land");
    // A fresh instance reads C's value from Redis, not A's older one.
    db.open.store(true, Ordering::SeqCst);
    assert_eq!(d.scope(order_page(&db, "acme", 1)).await.version, 1);
    assert_eq!(d.stats().l2_hits, 1);
}

/// A Redis that lost its data between a leader's read and its fill (here:
/// restarted empty) cannot vouch for the fill: the counter the leader read
/// is gone, and so may be the marks of invalidations made meanwhile.
#[tokio::test]
async fn a_fill_across_a_redis_restart_does_not_land() {
    let mut server = RedisServer::start();
    let a = without_backplane(&server, "race", Backend::Redis);
    a.clear().await; // the generation counter exists
    let db = Arc::new(Db::gated());
    let slow = {
        let (a, db) = (a.clone(), Arc::clone(&db));
        tokio::spawn(async move { a.scope(order_page(&db, "acme", 1)).await })
    };
    db.gate.as_ref().unwrap().read.notified().await;
    server.restart();
    // A notices (its breaker opens on the failed delete), then comes back
    // (a probe replays the queued delete and closes the breaker).
    let mut back = false;
    for _ in 0..200 {
        a.delete("unrelated").await;
        let stats = a.stats();
        if stats.breaker_opens == 1 && stats.breaker == BreakerState::Closed {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "the connection never came back: {:?}", a.stats());
    db.gate.as_ref().unwrap().release.notify_one();
    assert_eq!(slow.await.unwrap().version, 0);
    assert_eq!(a.stats().l2_fills_rejected, 1, "{:?}", a.stats());
    assert_eq!(raw_get(&server, "race:orders:list:acme:1"), None);
}

on_server_and_cluster! {
#[tokio::test]
async fn concurrent_callers_make_one_origin_call_across_both_tiers(server: &Redis) {
    let a = synced(cache(server, "flight", Backend::Redis)).await;
    let db = Arc::new(Db::default());
    let mut calls = Vec::new();
    for _ in 0..100 {
        let (a, db) = (a.clone(), Arc::clone(&db));
        calls.push(tokio::spawn(
            async move { a.scope(shared_only(&db, 1)).await },
        ));
    }
    for call in calls {
        assert_eq!(call.await.unwrap().version, 0);
    }
    assert_eq!(db.reads(), 1);
    let stats = a.stats();
    assert_eq!((stats.loads, stats.l2_sets, stats.l2_misses), (1, 1, 1));
}
}

on_server_and_cluster! {
/// Reads of the shared tier that come while another is on its way go
/// together (fewer `MGET`s than reads), and each gets its own key's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_share_round_trips_and_each_gets_its_own_value(server: &Redis) {
    const KEYS: u64 = 256;
    const ROUNDS: u64 = 4;
    let writer = cache(server, "batch", Backend::Redis);
    let db = Arc::new(Db::default());
    for id in 0..KEYS {
        db.write();
        assert_eq!(writer.scope(shared_only(&db, id)).await.id, id);
    }
    let reader = cache(server, "batch", Backend::Redis);
    let before = server.calls("MGET");
    for _ in 0..ROUNDS {
        let orders = read_concurrently(&reader, &db, 0..KEYS).await;
        for (id, order) in (0..KEYS).zip(orders) {
            // Version `id + 1`: the one written before this key's fill.
            assert_eq!(order, Order { id, version: id + 1 });
        }
    }
    let mgets = server.calls("MGET") - before;
    assert_eq!(db.reads(), KEYS, "every read was a hit in Redis");
    assert_eq!(reader.stats().l2_hits, KEYS * ROUNDS);
    assert!(
        mgets < KEYS * ROUNDS,
        "{mgets} MGETs for {} concurrent reads",
        KEYS * ROUNDS
    );
}
}

/// Callers that give up while their reads wait for Redis (here paused)
/// leave nothing stuck: the reads after them go to Redis as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_given_up_while_redis_is_paused_leave_nothing_stuck() {
    const KEYS: u64 = 32;
    let server = RedisServer::start();
    let a = cache(&server, "given-up", Backend::Redis);
    let db = Arc::new(Db::default());
    for id in 0..KEYS {
        a.scope(shared_only(&db, id)).await;
    }
    server.pause();
    let calls: Vec<_> = (0..KEYS)
        .map(|id| {
            let (a, db) = (a.clone(), Arc::clone(&db));
            tokio::spawn(async move {
                let call = a.scope(shared_only(&db, id));
                tokio::time::timeout(Duration::from_millis(100), call).await
            })
        })
        .collect();
    for call in calls {
        assert!(
            call.await.unwrap().is_err(),
            "given up while Redis is paused"
        );
    }
    server.resume();
    let hits = a.stats().l2_hits;
    let orders = read_concurrently(&a, &db, 0..KEYS).await;
    for (id, order) in (0..KEYS).zip(orders) {
        assert_eq!(order.id, id);
    }
    assert_eq!(db.reads(), KEYS, "no read went to the origin");
    assert_eq!(a.stats().l2_hits - hits, KEYS);
}

/// A caller whose read went out but whose future is no longer polled (a
/// branch `select!` left behind) holds up the other reads of its group for
/// at most the Redis timeout: past it they go alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_no_longer_polled_holds_up_the_others_for_at_most_the_timeout() {
    const KEYS: u64 = 10;
    let server = RedisServer::start();
    let timeout = Duration::from_millis(300);
    let a = builder(&server, "unpolled", Backend::Redis)
        .redis_timeout(timeout)
        .build()
        .unwrap();
    let db = Arc::new(Db::default());
    for id in 0..KEYS {
        a.scope(shared_only(&db, id)).await;
    }
    // Redis paused: the read goes out and cannot come back during the poll.
    server.pause();
    let mut stuck = Box::pin(a.scope(shared_only(&db, 0)));
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    let polled = stuck.as_mut().poll(&mut context);
    assert!(polled.is_pending(), "its read is out: {:?}", a.stats());
    tokio::time::sleep(timeout * 2).await;
    server.resume();
    // The other keys (a read of key 0 would wait for the stuck caller's
    // flight, as any caller of a key waits for its leader).
    let hits = a.stats().l2_hits;
    let orders = read_concurrently(&a, &db, 1..KEYS).await;
    for (id, order) in (1..KEYS).zip(orders) {
        assert_eq!(order.id, id);
    }
    assert_eq!(db.reads(), KEYS, "no read went to the origin");
    assert_eq!(a.stats().l2_hits - hits, KEYS - 1);
    drop(stuck);
}

on_server_and_cluster! {
#[tokio::test]
async fn a_fill_older_than_a_prefix_invalidation_on_another_instance_never_lands(server: &Redis) {
    race(server, async |b: &Cache, db: &Db| {
        b.scope(update_tenant(db, "acme")).await;
    })
    .await;
}
}

on_server_and_cluster! {
#[tokio::test]
async fn a_fill_older_than_a_scanning_invalidation_on_another_instance_never_lands(server: &Redis) {
    race(server, async |b: &Cache, db: &Db| {
        db.write();
        b.invalidate("orders:*:acme:1").await.unwrap();
    })
    .await;
}
}

on_server_and_cluster! {
#[tokio::test]
async fn a_fill_older_than_a_clear_on_another_instance_never_lands(server: &Redis) {
    race(server, async |b: &Cache, db: &Db| {
        db.write();
        b.clear().await;
    })
    .await;
}
}

on_server_and_cluster! {
/// Eight reader instances and one writer instance on one Redis: no read
/// that starts after an invalidation returned sees a version older than the
/// write before it. Each reader is an instance of its own, reading through
/// the shared tier only: joining another caller's running load on one
/// instance, or an instance's L1, is kept coherent across instances by the
/// backplane, which is not part of this test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_read_after_an_invalidation_sees_an_older_version_on_any_instance(server: &Redis) {
    let writer = synced(cache(server, "soak", Backend::Hybrid)).await;
    let db = Arc::new(Db::default());
    // The version every read that starts from now on must see at least.
    let floor = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for r in 0..8 {
        let cache = synced(cache(server, "soak", Backend::Redis)).await;
        let (db, floor, stop) = (Arc::clone(&db), Arc::clone(&floor), Arc::clone(&stop));
        readers.push(tokio::spawn(async move {
            let mut reads = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let must = floor.load(Ordering::SeqCst);
                let got = cache.scope(order_page(&db, "acme", r % 2)).await.version;
                assert!(got >= must, "read {got} after the invalidation of {must}");
                reads += 1;
            }
            reads
        }));
    }
    for _ in 0..200 {
        // The writer's instance keeps its own L1 coherent as well.
        let version = writer.scope(async {
            let v = db.write();
            writer.invalidate("orders:list:acme:*").await.unwrap();
            v
        });
        floor.store(version.await, Ordering::SeqCst);
        let seen = writer.scope(order_page(&db, "acme", 0)).await.version;
        assert!(seen >= floor.load(Ordering::SeqCst));
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for r in readers {
        total += r.await.unwrap();
    }
    assert!(total > 0);
}
}

on_server_and_cluster! {
#[tokio::test]
async fn bytes_that_do_not_decode_are_misses_and_are_overwritten(server: &Redis) {
    let a = synced(cache(server, "shop", Backend::Hybrid)).await;
    let db = Db::default();
    let mut raw = server.raw();
    let garbage: [&[u8]; 4] = [
        b"",
        b"hello",
        &[0, 0, 0, 0, 0, 0, 0, 1, 0xFF, 0xCA, 1, 1, 9],
        &[0xFF; 64],
    ];
    for (id, bytes) in garbage.iter().enumerate() {
        let key = format!("shop:order:{id}");
        let _: () = redis::cmd("SET")
            .arg(server.key("shop", &key["shop:".len()..]))
            .arg(*bytes)
            .query(&mut *raw)
            .unwrap();
        assert_eq!(a.scope(order(&db, id as u64)).await.version, 0);
        let stored = raw_get(server, &key).unwrap();
        assert_ne!(stored, *bytes, "the fill overwrote the bad bytes");
    }
    assert_eq!(db.reads(), 4);
    let stats = a.stats();
    assert_eq!(stats.l2_undecodable, 4, "{stats:?}");
    assert_eq!(stats.l2_sets, 4);

    // A value of another type under the same key: a miss too.
    #[cached(ttl = "1m", key = "order:<id>", tier = "l2")]
    async fn order_as_text(id: u64) -> String {
        format!("order {id}")
    }
    assert_eq!(a.scope(order_as_text(0)).await, "order 0");
    assert_eq!(a.stats().l2_undecodable, 5);
}
}

on_server_and_cluster! {
#[tokio::test]
async fn clear_removes_its_namespace_only(server: &Redis) {
    let (a, other) = (
        synced(cache(server, "shop", Backend::Hybrid)).await,
        synced(cache(server, "billing", Backend::Hybrid)).await,
    );
    let db = Db::default();
    for id in 0..20 {
        a.scope(order(&db, id)).await;
        other.scope(order(&db, id)).await;
    }
    a.clear().await;
    let keys = server.keys("*:order:*");
    assert_eq!(keys.len(), 20);
    assert!(keys.iter().all(|k| k.starts_with("billing")), "{keys:?}");
    a.scope(order(&db, 0)).await;
    other.scope(order(&db, 0)).await;
    assert_eq!(db.reads(), 41);
}
}

on_server_and_cluster! {
#[tokio::test]
async fn json_values_are_readable_and_read_by_a_bincode_instance(server: &Redis) {
    let json = synced(
        Cache::builder()
            .backend(Backend::Redis)
            .redis_url(server.url())
            .key_prefix("shop")
            .codec(Codec::Json)
            .build()
            .unwrap(),
    )
    .await;
    let bincode = synced(cache(server, "shop", Backend::Redis)).await;
    let db = Db::default();
    json.scope(order(&db, 3)).await;
    let stored = raw_get(server, "shop:order:3").unwrap();
    let text = String::from_utf8_lossy(&stored);
    assert!(text.contains(r#"{"id":3,"version":0}"#), "{text}");
    assert_eq!(bincode.scope(order(&db, 3)).await.version, 0);
    assert_eq!(db.reads(), 1);
}
}

#[tokio::test]
async fn the_environment_selects_the_backend() {
    let server = RedisServer::start();
    let url = server.url();
    let vars = [
        ("CACHE_BACKEND", "hybrid"),
        ("REDIS_URL", url.as_str()),
        ("CACHE_KEY_PREFIX", "env-app"),
    ];
    let config = Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    let cache = synced(
        cache_runtime::CacheBuilder::from_config(config)
            .build()
            .unwrap(),
    )
    .await;
    let db = Db::default();
    cache.scope(order(&db, 1)).await;
    assert!(raw_get(&server, "env-app:order:1").is_some());

    for (vars, variable) in [
        (&[("CACHE_BACKEND", "hybrid")][..], "REDIS_URL"),
        (
            &[("CACHE_BACKEND", "hybrid"), ("REDIS_URL", "http://x")][..],
            "REDIS_URL",
        ),
        (&[("CACHE_KEY_PREFIX", "a:b")][..], "CACHE_KEY_PREFIX"),
        (&[("CACHE_CODEC", "msgpack")][..], "CACHE_CODEC"),
    ] {
        let built = Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .and_then(|config| cache_runtime::CacheBuilder::from_config(config).build());
        assert_eq!(built.unwrap_err().variable(), variable, "{vars:?}");
    }
}

#[tokio::test]
async fn a_cache_starts_and_serves_while_redis_is_down() {
    // Nothing listens on port 1.
    let cache = Cache::builder()
        .redis(RedisL2::builder("redis://127.0.0.1:1/0", "shop").timeout(Duration::from_millis(50)))
        .build()
        .unwrap();
    let db = Db::default();
    assert_eq!(cache.scope(order(&db, 1)).await.version, 0);
    assert_eq!(cache.scope(order(&db, 1)).await.version, 0);
    // Not subscribed to the other instances' invalidations, the instance
    // does not serve from its in-process tier: hit rate lost, no error, no
    // stale value.
    assert_eq!(db.reads(), 2);
    assert!(!cache.wait_in_sync(Duration::from_millis(100)).await);
    cache.invalidate("order:*").await.unwrap();
    let stats = cache.stats();
    assert!(stats.l2_errors >= 2, "{stats:?}");

    // Without the backplane, it serves from process as the memory backend.
    let alone = Cache::builder()
        .redis(RedisL2::builder("redis://127.0.0.1:1/0", "shop").timeout(Duration::from_millis(50)))
        .backplane(false)
        .build()
        .unwrap();
    alone.scope(order(&db, 1)).await;
    alone.scope(order(&db, 1)).await;
    assert_eq!(db.reads(), 3);
}

#[tokio::test]
async fn a_tls_url_reaches_redis_over_tls() {
    let server = RedisServer::start_tls();
    let (a, b) = (
        synced(
            Cache::builder()
                .backend(Backend::Hybrid)
                .redis_url(server.tls_url())
                .key_prefix("tls")
                .build()
                .unwrap(),
        )
        .await,
        synced(cache(&server, "tls", Backend::Hybrid)).await,
    );
    let db = Db::default();
    assert_eq!(a.scope(order(&db, 1)).await.version, 0);
    assert_eq!(a.stats().l2_errors, 0, "{:?}", a.stats());
    assert_eq!(a.stats().l2_sets, 1);
    // Written over TLS, read over the plain port by another instance.
    assert_eq!(b.scope(order(&db, 1)).await.version, 0);
    assert_eq!((b.stats().l2_hits, db.reads()), (1, 1));
}

#[tokio::test]
async fn large_values_are_compressed_in_redis() {
    #[cached(ttl = "1m", key = "report:<id>", tier = "l2")]
    async fn report(id: u64) -> String {
        format!("report {id}: ") + &"all rows fine; ".repeat(2_000)
    }
    let server = RedisServer::start();
    let writer = synced(
        Cache::builder()
            .backend(Backend::Redis)
            .redis_url(server.url())
            .key_prefix("zip")
            .l2_compress_above(1024)
            .build()
            .unwrap(),
    )
    .await;
    let reader = synced(cache(&server, "zip", Backend::Redis)).await;
    let text = writer.scope(report(1)).await;
    let stored = raw_get(&server, "zip:report:1").unwrap();
    assert!(stored.len() < text.len() / 10, "{} bytes", stored.len());
    // Another instance, without the setting, reads it.
    assert_eq!(reader.scope(report(1)).await, text);
    assert_eq!(reader.stats().l2_hits, 1);
}

#[tokio::test]
async fn an_invalidation_reports_what_each_tier_did() {
    let server = RedisServer::start();
    let a = synced(cache(&server, "report", Backend::Hybrid)).await;
    let db = Db::default();
    for page in 0..3 {
        a.scope(order_page(&db, "acme", page)).await;
    }
    a.scope(order(&db, 1)).await;

    let exact = a.invalidate_report("order:1").await.unwrap();
    assert_eq!(
        (exact.local, exact.shared),
        (1, SharedInvalidation::Keys(1))
    );
    let prefix = a.invalidate_report("orders:list:acme:*").await.unwrap();
    assert_eq!(prefix.local, 3);
    assert_eq!(
        prefix.shared,
        SharedInvalidation::Prefix("orders:list:acme:".into())
    );
    assert_eq!(
        prefix.to_string(),
        "3 removed in process; every key under `orders:list:acme:` invalidated in redis"
    );
    a.scope(order_page(&db, "acme", 7)).await;
    let scanned = a.invalidate_report("orders:*:acme:7").await.unwrap();
    assert_eq!(
        (scanned.local, scanned.shared),
        (1, SharedInvalidation::Scanned(1))
    );
    assert!(a.invalidate_report("orders:[acme").await.is_err());

    // Redis gone: the report says the invalidation waits for it; the
    // caller gets no error.
    drop(server);
    let queued = a.invalidate_report("order:2").await.unwrap();
    assert!(
        matches!(queued.shared, SharedInvalidation::Queued(_)),
        "{queued:?}"
    );
    assert_eq!(a.stats().invalidations_pending, 1);
}

/// A leader holds its flight while it writes Redis: a caller that arrives
/// then gets the value, even with Redis stopped, instead of calling the
/// origin again; a caller of another type under the same key calls its own
/// origin instead of waiting for the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_arriving_during_the_fill_get_the_value_without_waiting_for_redis() {
    within(during_the_fill()).await;
}

#[cached(ttl = "1m", key = "shared-only:<id>", tier = "l2")]
async fn shared_only_as_text(id: u64) -> String {
    format!("text {id}")
}

async fn during_the_fill() {
    let server = RedisServer::start();
    // A long timeout, so that the leader's fill waits on the stopped server.
    let a = synced(
        Cache::builder()
            .backend(Backend::Redis)
            .redis_url(server.url())
            .key_prefix("held")
            .redis_timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    )
    .await;
    let db = Arc::new(Db::gated());
    let leader = {
        let (a, db) = (a.clone(), Arc::clone(&db));
        tokio::spawn(async move { a.scope(shared_only(&db, 1)).await })
    };
    db.gate.as_ref().unwrap().read.notified().await; // the leader read Redis, then the origin
    server.pause();
    db.gate.as_ref().unwrap().release.notify_one();
    // The leader now writes Redis, which does not answer. Wait until its
    // origin call is counted as done (the value is published first).
    for _ in 0..500 {
        if a.stats().l2_misses == 1 && db.reads() == 1 && a.stats().loads == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    db.open.store(true, Ordering::SeqCst);
    assert_eq!(a.scope(shared_only(&db, 1)).await.version, 0);
    assert_eq!(db.reads(), 1, "the late caller got the leader's value");
    assert_eq!(a.scope(shared_only_as_text(1)).await, "text 1");
    assert!(
        !leader.is_finished(),
        "all this while the leader waits on Redis"
    );
    server.resume();
    assert_eq!(leader.await.unwrap().version, 0);
}

#[test]
fn a_blocking_invalidation_outside_any_runtime_reaches_redis() {
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (a, b) = (
        cache(&server, "shop", Backend::Redis),
        cache(&server, "shop", Backend::Redis),
    );
    let db = Db::default();
    assert_eq!(runtime.block_on(a.scope(order(&db, 5))).version, 0);
    // No runtime on this thread; `b` never connected.
    b.scope_sync(|| update_order_blocking(&db, 5));
    assert_eq!(b.stats().l2_errors, 0);
    assert_eq!(runtime.block_on(a.scope(order(&db, 5))).version, 1);
}

on_server_and_cluster! {
#[tokio::test]
async fn a_blocking_invalidation_on_a_current_thread_runtime_waits_for_redis(server: &Redis) {
    let (a, b) = (
        synced(cache(server, "shop", Backend::Redis)).await,
        synced(cache(server, "shop", Backend::Redis)).await,
    );
    let db = Db::default();
    assert_eq!(a.scope(order(&db, 6)).await.version, 0);
    b.scope(async { update_order_blocking(&db, 6) }).await;
    assert_eq!(a.scope(order(&db, 6)).await.version, 1);
}
}

/// A counter behind the generation a leader read (Redis restored from an
/// older snapshot, or failed over) cannot vouch for the fill.
#[tokio::test]
async fn a_fill_refuses_a_counter_that_went_back() {
    within(counter_went_back()).await;
}

async fn counter_went_back() {
    let server = RedisServer::start();
    let a = without_backplane(&server, "race", Backend::Redis);
    a.clear().await; // the counter exists
    let db = Arc::new(Db::gated());
    let slow = {
        let (a, db) = (a.clone(), Arc::clone(&db));
        tokio::spawn(async move { a.scope(order_page(&db, "acme", 1)).await })
    };
    db.gate.as_ref().unwrap().read.notified().await;
    let _: () = redis::cmd("SET")
        .arg("race[g]")
        .arg(5)
        .query(&mut server.connection())
        .unwrap();
    db.gate.as_ref().unwrap().release.notify_one();
    assert_eq!(slow.await.unwrap().version, 0);
    assert_eq!(a.stats().l2_fills_rejected, 1, "{:?}", a.stats());
    assert_eq!(raw_get(&server, "race:orders:list:acme:1"), None);
}

on_server_and_cluster! {
/// A load that runs while the instance subscribes to the backplane (which
/// empties its in-process tier and marks the loads then running) still
/// writes its value to Redis: the backplane's resync is no invalidation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_running_while_the_backplane_subscribes_still_fills_redis(server: &Redis) {
    within(async {
        let a = cache(server, "startup", Backend::Hybrid);
        let db = Arc::new(Db::gated());
        let load = {
            let (a, db) = (a.clone(), Arc::clone(&db));
            tokio::spawn(async move { a.scope(order(&db, 1)).await })
        };
        db.gate.as_ref().unwrap().read.notified().await;
        // The first miss started the subscription: it lands while the
        // origin call waits at the gate.
        assert!(a.wait_in_sync(Duration::from_secs(10)).await);
        db.gate.as_ref().unwrap().release.notify_one();
        assert_eq!(load.await.unwrap().version, 0);
        assert_eq!(a.stats().l2_sets, 1, "{:?}", a.stats());
        // Another instance finds it in Redis.
        let b = synced(cache(server, "startup", Backend::Hybrid)).await;
        assert_eq!(b.scope(order(&db, 1)).await.version, 0);
        assert_eq!((b.stats().l2_hits, db.reads()), (1, 1));
    })
    .await;
}
}
