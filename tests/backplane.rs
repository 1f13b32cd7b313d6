//! The invalidation backplane between instances sharing a Redis: each
//! instance's in-process tier follows the others' invalidations, and an
//! instance that lost its subscription does not serve from its in-process
//! tier until it has subscribed again and emptied it. Real redis-server
//! processes, real faults (`CLIENT KILL TYPE pubsub`, a restart).

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_runtime::{cached, invalidates, Backend, BreakerState, Cache, Event, Hooks};
use support::{RedisServer, Target};

#[derive(Default)]
struct Db {
    version: AtomicU64,
    reads: AtomicU64,
}

impl Db {
    fn read(&self) -> u64 {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.version.load(Ordering::SeqCst)
    }

    fn write(&self) {
        self.version.fetch_add(1, Ordering::SeqCst);
    }
}

#[cached(ttl = "10m", key = "profile:<id>", skip(db))]
async fn profile(db: &Db, id: u64) -> u64 {
    let _ = id;
    db.read()
}

#[invalidates("profile:<id>")]
async fn update_profile(db: &Db, id: u64) {
    let _ = id;
    db.write();
}

#[cached(ttl = "10m", key = "avatar:<id>", skip(db))]
async fn avatar(db: &Db, id: u64) -> u64 {
    let _ = id;
    db.read()
}

#[invalidates("avatar:<id>")]
async fn update_avatar(db: &Db, id: u64) {
    let _ = id;
    db.write();
}

#[invalidates("profile:*")]
async fn update_all_profiles(db: &Db) {
    db.write();
}

async fn hybrid(server: &impl Target) -> Cache {
    hybrid_within(server, Duration::from_secs(2)).await
}

/// A hybrid instance whose Redis calls time out after `timeout`.
async fn hybrid_within(server: &impl Target, timeout: Duration) -> Cache {
    let cache = Cache::builder()
        .backend(Backend::Hybrid)
        .redis_url(server.url())
        .key_prefix("app")
        .redis_timeout(timeout)
        .build()
        .unwrap();
    assert!(cache.wait_in_sync(Duration::from_secs(10)).await);
    cache
}

/// Polls `check` every 10 ms, at most 500 times; whether it held.
async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..500 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

on_server_and_cluster! {
#[tokio::test]
async fn an_invalidation_on_one_instance_empties_the_others_in_process_tier(server: &Redis) {
    let (a, b) = (hybrid(server).await, hybrid(server).await);
    let db = Db::default();
    assert_eq!(a.scope(profile(&db, 1)).await, 0);
    assert_eq!(b.scope(profile(&db, 1)).await, 0); // from Redis, now in b's L1
    assert_eq!(b.scope(profile(&db, 1)).await, 0);
    assert_eq!(b.stats().hits, 1);
    assert!(b.local().get::<u64>("profile:1").await.is_some());

    a.scope(update_profile(&db, 1)).await;
    assert!(
        eventually(async || b.local().get::<u64>("profile:1").await.is_none()).await,
        "b still holds the key"
    );
    assert_eq!(b.scope(profile(&db, 1)).await, 1);

    // a's own announcement is not applied to a: a reloads the key at once,
    // then b invalidates another key; once a has that later message (the
    // channel keeps order), a's own earlier one has passed, and a still
    // holds its key.
    assert_eq!(a.scope(profile(&db, 1)).await, 1);
    assert!(a.local().get::<u64>("profile:1").await.is_some());
    assert_eq!(a.scope(profile(&db, 2)).await, 1);
    b.scope(update_profile(&db, 2)).await;
    assert!(eventually(async || a.local().get::<u64>("profile:2").await.is_none()).await);
    assert!(a.local().get::<u64>("profile:1").await.is_some(), "a applied its own message");
}
}

/// After its subscription is cut, an instance serves nothing from its
/// in-process tier until it has subscribed again, and then starts from an
/// empty one: an invalidation it missed meanwhile cannot leave it stale.
/// The first half: an instance that serves from process.
async fn before_the_cut(server: &impl Target) -> (Cache, Db) {
    let a = hybrid(server).await;
    let db = Db::default();
    assert_eq!(a.scope(profile(&db, 7)).await, 0);
    assert_eq!(a.scope(profile(&db, 7)).await, 0);
    assert_eq!(a.stats().hits, 1);
    (a, db)
}

/// The second half, once the subscription is cut.
async fn after_the_cut(server: &impl Target, a: Cache, db: Db) {
    assert!(
        eventually(async || !a.in_sync()).await,
        "a never noticed its subscription dropped"
    );
    // Out of step, a serves nothing from process.
    assert!(a.local().get::<u64>("profile:7").await.is_none());
    a.scope(profile(&db, 7)).await;
    assert_eq!(a.stats().hits, 1);

    // A change that a certainly misses: the data and Redis change, and
    // nothing is announced.
    db.version.fetch_add(1, Ordering::SeqCst);
    let _: u64 = redis::cmd("DEL")
        .arg(server.key("app", "profile:7"))
        .query(&mut *server.raw())
        .unwrap();
    assert!(
        a.wait_in_sync(Duration::from_secs(20)).await,
        "a never resubscribed"
    );
    assert_eq!(
        a.scope(profile(&db, 7)).await,
        1,
        "a emptied its tier on resubscribing"
    );
}

on_server_and_cluster! {
#[tokio::test]
async fn a_killed_subscription_resynchronises_before_serving_from_process(server: &Redis) {
    let (a, db) = before_the_cut(server).await;
    let mut killed = 0;
    for node in server.nodes() {
        killed += redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query::<u64>(&mut node.connection())
            .unwrap();
    }
    assert!(killed >= 1, "{killed}");
    after_the_cut(server, a, db).await;
}
}

#[tokio::test]
async fn a_restarted_redis_resynchronises_before_serving_from_process() {
    let mut server = RedisServer::start();
    let (a, db) = before_the_cut(&server).await;
    server.restart();
    after_the_cut(&server, a, db).await;
}

/// Counts the invalidations a cache applies, and makes each slow.
struct SlowInvalidations(Arc<AtomicU64>);

impl Hooks for SlowInvalidations {
    fn on_event(&self, event: &Event<'_>) {
        if let Event::Invalidate { .. } = event {
            self.0.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// A flood of invalidations that an instance applies slower than they
/// arrive: it drops them, subscribes again and empties its in-process tier
/// (counted in `backplane_resyncs`), instead of queueing them all; then it
/// is in step again and follows the next invalidation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_behind_a_flood_resynchronises_instead_of_queueing_it() {
    const FLOOD: u64 = 50_000;
    let server = RedisServer::start();
    let applied = Arc::new(AtomicU64::new(0));
    let b = Cache::builder()
        .backend(Backend::Hybrid)
        .redis_url(server.url())
        .key_prefix("app")
        .hooks(SlowInvalidations(Arc::clone(&applied)))
        .build()
        .unwrap();
    assert!(b.wait_in_sync(Duration::from_secs(10)).await);
    let a = hybrid(&server).await;
    let db = Db::default();
    assert_eq!(b.scope(profile(&db, 1)).await, 0);
    assert!(b.local().get::<u64>("profile:1").await.is_some());

    // Invalidations of keys nobody holds, from another instance, as fast
    // as Redis takes them.
    let mut flood = redis::pipe();
    for i in 0..FLOOD {
        flood
            .cmd("PUBLISH")
            .arg("app[bus]")
            .arg(format!("1:flood:{i}"))
            .ignore();
    }
    // Sent from a blocking thread: the runtime's workers stay free.
    let mut publisher = server.connection();
    tokio::task::spawn_blocking(move || flood.query::<()>(&mut publisher))
        .await
        .unwrap()
        .unwrap();

    assert!(
        eventually(async || b.stats().backplane_resyncs >= 1).await,
        "b never caught up: {} of {FLOOD} applied",
        applied.load(Ordering::Relaxed)
    );
    assert!(
        applied.load(Ordering::Relaxed) < FLOOD,
        "b applied the whole flood"
    );
    assert!(b.local().get::<u64>("profile:1").await.is_none());
    assert!(b.wait_in_sync(Duration::from_secs(10)).await);
    assert_eq!(b.scope(profile(&db, 1)).await, 0);
    a.scope(update_profile(&db, 1)).await;
    assert!(
        eventually(async || b.local().get::<u64>("profile:1").await.is_none()).await,
        "b missed the invalidation after the flood"
    );
    assert_eq!(b.scope(profile(&db, 1)).await, 1);
}

/// A Redis that answers but refuses writes: over `maxmemory` under
/// `noeviction` (2 MB held, the limit set to 1 MB). A prefix
/// invalidation's script cannot run there (it writes its tag); the
/// invalidating instance still removes the values (`SCAN` + `UNLINK`,
/// which a full Redis takes) and announces the pattern at once, so the
/// other instance stops serving the old values, from process and from
/// Redis, while the invalidation waits in the first instance's queue. The
/// next invalidation, queued at once (the failure opened the breaker), is
/// still removed and announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_still_lets_a_prefix_invalidation_reach_the_other_instance() {
    let server = RedisServer::start_with_args(&["--maxmemory-policy", "noeviction"]);
    let (a, b) = (hybrid(&server).await, hybrid(&server).await);
    let db = Db::default();
    for id in 0..5 {
        assert_eq!(b.scope(profile(&db, id)).await, 0);
        assert_eq!(a.get::<u64>(&format!("profile:{id}")).await, Some(0));
    }
    assert_eq!(b.scope(avatar(&db, 3)).await, 0);
    let mut raw = server.connection();
    let pad = vec![b'x'; 64 * 1024];
    for i in 0..32 {
        let () = redis::cmd("SET")
            .arg(format!("pad:{i}"))
            .arg(&pad)
            .query(&mut raw)
            .unwrap();
    }
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1mb")
        .query(&mut raw)
        .unwrap();
    let write = |raw: &mut redis::Connection| redis::cmd("SET").arg("w").arg(1).query::<()>(raw);
    let refused = write(&mut raw).expect_err("a write past maxmemory");
    assert!(refused.to_string().contains("OOM"), "{refused}");

    a.scope(update_all_profiles(&db)).await;
    assert_eq!(a.stats().invalidations_pending, 1, "{:?}", a.stats());
    assert!(
        eventually(async || {
            let mut gone = true;
            for id in 0..5 {
                gone &= b
                    .local()
                    .get::<u64>(&format!("profile:{id}"))
                    .await
                    .is_none();
            }
            gone || a.stats().invalidations_pending == 0
        })
        .await,
        "b still serves the old values from process"
    );
    // Still queued: what reached b came from the invalidation itself, not
    // from its replay (which cannot run while Redis is full).
    assert_eq!(a.stats().invalidations_pending, 1, "{:?}", a.stats());
    for id in 0..5 {
        assert_eq!(b.scope(profile(&db, id)).await, 1, "b read an old value");
    }
    // a's breaker is open now: the next invalidation is queued at once,
    // and still removed and announced.
    assert_ne!(a.stats().breaker, BreakerState::Closed);
    a.scope(update_avatar(&db, 3)).await;
    assert_eq!(a.stats().invalidations_pending, 2, "{:?}", a.stats());
    assert!(
        eventually(async || b.local().get::<u64>("avatar:3").await.is_none()).await,
        "b still serves avatar:3 from process"
    );
    assert_eq!(b.scope(avatar(&db, 3)).await, 2, "b read an old value");
    assert!(write(&mut raw).is_err(), "Redis took writes again");
}

/// Degraded mode: out of step with the others (Redis paused under it),
/// an instance with `degraded_l1_ttl` keeps answering from process: the
/// values it held, for that long after it fell out of step, and the values
/// it loads meanwhile, each for at most that long. Without the setting,
/// every read goes to the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degraded_mode_keeps_answering_from_process_while_out_of_step() {
    let server = RedisServer::start();
    let url = server.url();
    // Each its own key prefix: none reads what another loaded.
    let degraded = |prefix: &'static str, ttl: Duration| {
        let url = url.clone();
        async move {
            let cache = Cache::builder()
                .backend(Backend::Hybrid)
                .redis_url(url)
                .key_prefix(prefix)
                .redis_timeout(Duration::from_millis(50))
                .degraded_l1_ttl(ttl)
                .build()
                .unwrap();
            assert!(cache.wait_in_sync(Duration::from_secs(10)).await);
            cache
        }
    };
    let long = degraded("long", Duration::from_secs(60)).await;
    let short = degraded("short", Duration::from_millis(300)).await;
    let plain = hybrid_within(&server, Duration::from_millis(50)).await;
    let dbs = [Db::default(), Db::default(), Db::default()];
    let caches = [&long, &short, &plain];
    for (cache, db) in caches.iter().zip(&dbs) {
        assert_eq!(cache.scope(profile(db, 1)).await, 0);
    }
    let reads = |db: &Db| db.reads.load(Ordering::SeqCst);
    assert_eq!(dbs.iter().map(reads).sum::<u64>(), 3);

    server.pause();
    assert!(
        eventually(async || caches.iter().all(|c| !c.in_sync())).await,
        "an instance still in step with its Redis paused"
    );
    // `long` answers from process: what it held, and what it loads once.
    for _ in 0..10 {
        long.scope(profile(&dbs[0], 1)).await;
        long.scope(profile(&dbs[0], 2)).await;
        plain.scope(profile(&dbs[2], 1)).await;
    }
    assert_eq!(reads(&dbs[0]), 2, "profile:1 held, profile:2 loaded once");
    assert_eq!(reads(&dbs[2]), 11, "without the setting, every read");
    // Past its 300 ms, `short` no longer serves what it held before, and
    // keeps what it loads again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    short.scope(profile(&dbs[1], 1)).await;
    short.scope(profile(&dbs[1], 1)).await;
    assert_eq!(reads(&dbs[1]), 2, "one load after the 300 ms, then kept");
    server.resume();
    assert!(long.wait_in_sync(Duration::from_secs(20)).await);
}

/// Redis paused (SIGSTOP) under a subscribed instance: its subscription
/// stalls without a word. An invalidation made meanwhile on another
/// instance cannot reach it; the subscribed instance stops serving its
/// in-process copy at most its stale bound (`CACHE_STALE_BOUND`: 250 ms by
/// default, here also 80 ms) after that invalidation returned, because its
/// lease on the in-process tier lapses (no ping is answered). The bound is
/// asserted with a margin measured in the same run: the runtime's own
/// wake-up lateness (twice: the poll here, and the subscriber's), and the
/// coarse clock's tick (at most 10 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscription_stops_in_process_hits_within_the_stale_bound() {
    let server = RedisServer::start();
    let a = hybrid_within(&server, Duration::from_millis(50)).await;
    // A key per round: the first round's invalidation, replayed after the
    // resume, does not reach the second's.
    for (id, bound) in [
        (1, Duration::from_millis(250)),
        (2, Duration::from_millis(80)),
    ] {
        let b = Cache::builder()
            .backend(Backend::Hybrid)
            .redis_url(server.url())
            .key_prefix("app")
            .redis_timeout(Duration::from_secs(2))
            .stale_bound(bound)
            .build()
            .unwrap();
        assert!(b.wait_in_sync(Duration::from_secs(10)).await);
        let db = Db::default();
        assert_eq!(b.scope(profile(&db, id)).await, 0);
        let noise = support::wake_up_noise().await;
        // Several pings answered in a row: the subscription is live.
        for _ in 0..30 {
            assert!(b
                .local()
                .get::<u64>(&format!("profile:{id}"))
                .await
                .is_some());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        server.pause();
        a.scope(update_profile(&db, id)).await;
        let returned = std::time::Instant::now();
        let key = format!("profile:{id}");
        let window = support::stale_window(returned, async || {
            b.local().get::<u64>(&key).await.is_some()
        })
        .await;
        server.resume();
        support::assert_stale_window("a paused server", window, bound, noise);
        assert!(
            b.wait_in_sync(Duration::from_secs(20)).await,
            "b never came back in step"
        );
        assert!(a.wait_in_sync(Duration::from_secs(20)).await);
    }
}

/// The network between one instance and Redis fails while Redis and the
/// other instance work on (a proxy in between): slowed down (every byte
/// held 40 ms each way), then stalled (nothing forwarded, the connections
/// left open, so nothing tells the instance). Each time, an invalidation
/// made on the other instance returns done in Redis, and the instance
/// behind the proxy stops serving its in-process copy within its stale
/// bound (250 ms) of that return, with a margin measured in the run, as
/// for a paused server; once the link is back it reads the new value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_stalled_network_to_one_instance_stops_its_in_process_hits_within_the_stale_bound(
) {
    let server = RedisServer::start();
    let proxy = support::proxy::Proxy::start(server.port()).await;
    let a = hybrid(&server).await;
    let b = Cache::builder()
        .backend(Backend::Hybrid)
        .redis_url(proxy.url())
        .key_prefix("app")
        .redis_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert!(b.wait_in_sync(Duration::from_secs(10)).await);
    let bound = Duration::from_millis(250);
    let db = Db::default();
    for (id, fault) in [(1, "slowed down"), (2, "stalled")] {
        let key = format!("profile:{id}");
        let before = b.scope(profile(&db, id)).await;
        let noise = support::wake_up_noise().await;
        if fault == "stalled" {
            proxy.delay(Duration::ZERO);
        }
        assert!(b.wait_in_sync(Duration::from_secs(10)).await);
        assert_eq!(b.local().get::<u64>(&key).await, Some(before));
        match fault {
            "slowed down" => proxy.delay(Duration::from_millis(40)),
            _ => proxy.stall(),
        }
        a.scope(update_profile(&db, id)).await;
        assert_eq!(
            a.stats().invalidations_pending,
            0,
            "the invalidation reached Redis"
        );
        let returned = std::time::Instant::now();
        let window = support::stale_window(returned, async || {
            b.local().get::<u64>(&key).await == Some(before)
        })
        .await;
        support::assert_stale_window(&format!("a {fault} network"), window, bound, noise);
        proxy.resume();
        assert!(
            b.wait_in_sync(Duration::from_secs(20)).await,
            "{fault}: b never came back in step"
        );
        assert_eq!(
            b.scope(profile(&db, id)).await,
            before + 1,
            "{fault}: b read the old value back"
        );
    }
}

on_server_and_cluster! {
/// An idle subscription is pinged, and the pings' answers keep it: the
/// instance stays in step through several ping periods (it would otherwise
/// resubscribe, and empty its in-process tier, each time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_subscription_stays_in_step_across_its_pings(server: &Redis) {
    let cache = Cache::builder()
        .backend(Backend::Hybrid)
        .redis_url(server.url())
        .key_prefix("idle")
        .build()
        .unwrap();
    assert!(cache.wait_in_sync(Duration::from_secs(10)).await);
    let mut out_of_step = 0;
    for _ in 0..400 {
        if !cache.in_sync() {
            out_of_step += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(out_of_step, 0, "the subscription was dropped while idle");
    let clients: String = server
        .nodes()
        .into_iter()
        .map(|node| {
            redis::cmd("CLIENT")
                .arg("LIST")
                .arg("TYPE")
                .arg("pubsub")
                .query::<String>(&mut node.connection())
                .unwrap()
        })
        .collect();
    // On a cluster the ping is a `ROLE`, which also says the node is
    // still a primary.
    assert!(
        clients.contains("cmd=ping") || clients.contains("cmd=role"),
        "no ping was sent: {clients}"
    );
}
}
