//! Redis failing under load: killed and restarted empty, paused, its
//! connections cut; invalidations made while it is away; an origin that
//! fails. Real faults on a real redis-server, many tasks calling at once,
//! and two checks on every call: no caller sees an error the cache caused,
//! and no read sees a value older than an invalidation it must respect.
//!
//! Which invalidations a read must respect: see `support/chaos.rs`.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_runtime::testing::ManualClock;
use cache_runtime::{cached, Backend, BreakerState, Cache, Event, Hooks};
use support::chaos::{
    cache, item, recovered, until, update, BreakerChanges, Db, DbError, Item, Load, KEYS,
};
use support::RedisServer;

/// Fails a test that would otherwise hang: a call waiting for a paused
/// Redis to come back would hang it.
async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(120), future)
        .await
        .expect("the test did not finish within 120 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_load_then_restarted_empty() {
    within(async {
        let mut server = RedisServer::start();
        let load = Load::start(&server).await;
        load.progresses(300, "before the fault").await;
        server.kill();
        load.progresses(300, "while redis is dead").await;
        server.restart();
        load.redis_back();
        load.recovers().await;
        let sets = |caches: &[Cache]| caches.iter().map(|c| c.stats().l2_sets).sum::<u64>();
        let before = sets(&load.remotes);
        load.progresses(300, "after the restart").await;
        let (tally, caches) = load.stop().await;
        tally.assert_clean();
        // The writing instances' invalidations failed and opened their
        // breakers at once.
        for c in &caches[..2] {
            assert!(c.stats().breaker_opens >= 1, "{:?}", c.stats());
        }
        // Redis serves again after the restart.
        assert!(sets(&caches[2..]) > before);
    })
    .await;
}

/// An invalidation queued while Redis was paused is replayed as soon as
/// Redis answers again, not a breaker cool-down later: an instance that
/// trusts Redis again at once (here one whose breaker never opened) reads
/// the new value, while the invalidating instance's breaker is still open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_invalidation_is_replayed_as_soon_as_redis_answers() {
    within(async {
        let server = RedisServer::start();
        let writer = support::chaos::builder(&server, Backend::Hybrid)
            .breaker(1, Duration::from_secs(600))
            .build()
            .unwrap();
        let reader = cache(&server, Backend::Redis);
        let db = Db::new();
        let first = reader.scope(item(&db, 1)).await.unwrap();
        server.pause();
        let version = db.write(1);
        let done = writer.invalidate_report("item:1").await.unwrap();
        assert!(
            matches!(done.shared, cache_runtime::SharedInvalidation::Queued(_)),
            "{done:?}"
        );
        server.resume();
        assert!(
            until(|| writer.stats().invalidations_pending == 0).await,
            "the queued invalidation was not replayed: {:?}",
            writer.stats()
        );
        assert_eq!(writer.stats().breaker, BreakerState::Open);
        let read = reader.scope(item(&db, 1)).await.unwrap();
        assert_eq!((first.version, read.version), (0, version));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_complete_while_redis_is_paused() {
    within(async {
        let server = RedisServer::start();
        // The default cool-down: what was queued during the pause is
        // replayed within the replay's bound of the resume (50 ms of pings
        // and two 100 ms timeouts, plus the scheduling delay the harness
        // measures), not a cool-down later.
        let load = Load::start_with(&server, |b| b.breaker(3, Duration::from_secs(1))).await;
        load.progresses(300, "before the pause").await;
        server.pause();
        // The calls go on while the server is stopped: every task's (one
        // that waited for the server to come back would stop this test).
        load.every_task_progresses(20, "while redis is paused")
            .await;
        let opened = || load.a.stats().breaker != BreakerState::Closed;
        assert!(until(opened).await, "the breaker never opened");
        // Several seconds stopped: long enough for the backplane to notice
        // too (its pings go unanswered), with calls going on meanwhile.
        tokio::time::sleep(Duration::from_secs(3)).await;
        load.every_task_progresses(20, "while redis is paused, the breaker open")
            .await;
        server.resume();
        load.redis_back();
        load.recovers().await;
        load.progresses(300, "after the pause").await;
        let (tally, caches) = load.stop().await;
        tally.assert_clean();
        assert!(caches[0].stats().l2_skipped > 0, "{:?}", caches[0].stats());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_during_load() {
    within(async {
        let server = RedisServer::start();
        // The default cool-down, and Redis up throughout: an invalidation
        // queued when its connection was cut must be replayed within
        // the replay's bound (see `support/chaos.rs`), not a cool-down later.
        let load = Load::start_with(&server, |b| b.breaker(3, Duration::from_secs(1))).await;
        load.redis_back();
        let mut admin = server.connection();
        for _ in 0..10 {
            load.progresses(50, "between the cuts").await;
            for kind in ["normal", "pubsub"] {
                let _: redis::RedisResult<u64> = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg(kind)
                    .query(&mut admin);
            }
        }
        load.recovers().await;
        load.progresses(300, "after the cuts").await;
        let (tally, _) = load.stop().await;
        tally.assert_clean();
    })
    .await;
}

/// Counts the invalidations of one pattern an instance applied.
#[derive(Default)]
struct Applied {
    pattern: &'static str,
    seen: AtomicU64,
}

impl Hooks for Applied {
    fn on_event(&self, event: &Event<'_>) {
        if let Event::Invalidate { pattern, .. } = event {
            if *pattern == self.pattern {
                self.seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// An invalidation made while Redis is paused (so that Redis keeps the old
/// value) is queued on the instance that made it, and replayed once Redis
/// answers, before that instance reads Redis again; then neither instance,
/// nor one that reads Redis only, serves the old value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_made_while_redis_is_away_is_replayed_before_redis_is_trusted() {
    within(async {
        let server = RedisServer::start();
        let applied = Arc::new(Applied {
            pattern: "item:1",
            ..Applied::default()
        });
        let a = cache(&server, Backend::Hybrid);
        let b = Cache::builder()
            .backend(Backend::Hybrid)
            .redis_url(server.url())
            .key_prefix("chaos")
            .hooks(Arc::clone(&applied))
            .build()
            .unwrap();
        let remote = cache(&server, Backend::Redis);
        for c in [&a, &b, &remote] {
            assert!(c.wait_in_sync(Duration::from_secs(10)).await);
        }
        let db = Db::new();
        for c in [&a, &b, &remote] {
            assert_eq!(c.scope(item(&db, 1)).await.unwrap().version, 0);
        }
        assert_eq!(b.stats().l2_hits, 1, "B holds the value in process now");

        server.pause();
        let version = a.scope(update(&db, 1)).await.unwrap();
        let stats = a.stats();
        assert_eq!(
            (stats.breaker, stats.invalidations_pending),
            (BreakerState::Open, 1),
            "{stats:?}"
        );
        // A does not read Redis, which still holds version 0.
        assert_eq!(a.scope(item(&db, 1)).await.unwrap().version, version);
        server.resume();

        assert!(until(|| recovered(&[&a])).await, "{:?}", a.stats());
        // The replay reached the other instance through the backplane (or
        // B lost its subscription during the pause and emptied its
        // in-process tier).
        let b_caught_up = || applied.seen.load(Ordering::SeqCst) > 0 || !b.in_sync();
        assert!(until(b_caught_up).await, "B never heard of the replay");
        assert!(b.wait_in_sync(Duration::from_secs(10)).await);
        for (name, c) in [("A", &a), ("B", &b), ("redis-only", &remote)] {
            let got = c.scope(item(&db, 1)).await.unwrap().version;
            assert_eq!(got, version, "{name} serves the old value");
        }
        assert_eq!(a.stats().invalidations_queued, 1);
    })
    .await;
}

/// A caller that keeps invalidating as Redis comes back does not keep the
/// breaker open: while the probe replays what was queued, new invalidations
/// go to Redis at once, so the queue empties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_invalidating_in_a_loop_does_not_keep_the_breaker_open() {
    within(async {
        let server = RedisServer::start();
        let a = cache(&server, Backend::Hybrid);
        let db = Db::new();
        a.scope(item(&db, 1)).await.unwrap();
        server.pause();
        a.scope(update(&db, 1)).await.unwrap();
        assert_eq!(a.stats().breaker, BreakerState::Open);
        server.resume();
        // Over many keys: repeats of a queued one would fold into it.
        let give_up = std::time::Instant::now() + Duration::from_secs(30);
        let mut n = 0u64;
        while !recovered(&[&a]) && std::time::Instant::now() < give_up {
            a.invalidate(&format!("other:{}", n % 5_000)).await.unwrap();
            n += 1;
            tokio::task::yield_now().await;
        }
        assert!(recovered(&[&a]), "{:?}", a.stats());
        // What the loop invalidated last is what Redis serves.
        let version = a.scope(update(&db, 1)).await.unwrap();
        let remote = cache(&server, Backend::Redis);
        assert_eq!(remote.scope(item(&db, 1)).await.unwrap().version, version);
    })
    .await;
}

/// The queue is bounded: past it, the whole namespace is invalidated in
/// Redis on recovery instead, which covers every lost entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overflowing_queue_clears_the_namespace_on_recovery() {
    within(async {
        let server = RedisServer::start();
        let a = Cache::builder()
            .backend(Backend::Hybrid)
            .redis_url(server.url())
            .key_prefix("chaos")
            .redis_timeout(Duration::from_millis(100))
            .breaker(3, Duration::from_millis(200))
            .pending_invalidations(2)
            .build()
            .unwrap();
        let remote = cache(&server, Backend::Redis);
        let db = Db::new();
        for id in 0..KEYS {
            remote.scope(item(&db, id)).await.unwrap();
        }
        server.pause();
        let mut versions = Vec::new();
        for id in 0..KEYS {
            versions.push(a.scope(update(&db, id)).await.unwrap());
        }
        let stats = a.stats();
        assert_eq!(stats.invalidations_pending, 1, "one clear: {stats:?}");
        assert_eq!(stats.invalidation_queue_overflows, 1);
        server.resume();
        assert!(until(|| recovered(&[&a, &remote])).await);
        for id in 0..KEYS {
            let got = remote.scope(item(&db, id)).await.unwrap().version;
            assert_eq!(got, versions[id as usize]);
        }
    })
    .await;
}

/// The hooks hear of every change of the breaker, and `health()` reports
/// it; a cache that starts while Redis is down attaches once it is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_hooks_follow_the_breaker_and_a_late_redis_is_attached() {
    within(async {
        let mut server = RedisServer::start();
        server.kill(); // down before the cache starts
        let changes = Arc::new(BreakerChanges::default());
        let a = Cache::builder()
            .backend(Backend::Hybrid)
            .redis_url(server.url())
            .key_prefix("chaos")
            .redis_timeout(Duration::from_millis(100))
            .breaker(3, Duration::from_millis(200))
            .hooks(Arc::clone(&changes))
            .build()
            .expect("starts while Redis is down");
        let db = Db::new();
        for _ in 0..3 {
            assert_eq!(a.scope(item(&db, 1)).await.unwrap().version, 0);
        }
        let health = a.health().await;
        assert_eq!(health.status, cache_runtime::HealthStatus::Degraded);
        assert_ne!(health.breaker, Some(BreakerState::Closed), "{health}");
        assert_eq!(health.redis_rtt, None);

        server.restart();
        assert!(until(|| recovered(&[&a])).await, "{:?}", a.stats());
        assert!(a.wait_in_sync(Duration::from_secs(10)).await);
        let health = a.health().await;
        assert_eq!(
            health.status,
            cache_runtime::HealthStatus::Healthy,
            "{health}"
        );
        assert!(health.redis_rtt.is_some());
        // Attached: values reach Redis now.
        a.scope(item(&db, 2)).await.unwrap();
        assert_eq!(a.stats().l2_sets, 1, "{:?}", a.stats());
        let changes = changes.seen();
        use BreakerState::{Closed, HalfOpen, Open};
        assert_eq!(changes.first(), Some(&(Closed, Open)), "{changes:?}");
        assert_eq!(changes.last(), Some(&(HalfOpen, Closed)), "{changes:?}");
        assert!(changes.contains(&(Open, HalfOpen)));
    })
    .await;
}

#[cached(ttl = "1s", fail_safe = "1h", key = "kept:<id>", tier = "l2", skip(db))]
async fn kept_in_redis(db: &Db, id: u64) -> Result<Item, DbError> {
    db.read(id)
}

/// The same key without `fail_safe`: what another function kept for an
/// hour answers this one only within its own window (none).
#[cached(ttl = "1s", key = "kept:<id>", tier = "l2", skip(db))]
async fn not_kept_in_redis(db: &Db, id: u64) -> Result<Item, DbError> {
    db.read(id)
}

/// The origin fails under load: callers whose key has a kept value get it
/// (from Redis, on any instance, past the value's freshness), counted;
/// callers of a key without one get the origin's error unchanged; an
/// invalidation removes what was kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_origin_is_answered_with_the_kept_value_or_its_error() {
    within(async {
        let server = RedisServer::start();
        let (a, b) = (
            cache(&server, Backend::Hybrid),
            cache(&server, Backend::Hybrid),
        );
        for c in [&a, &b] {
            assert!(c.wait_in_sync(Duration::from_secs(10)).await);
        }
        let db = Arc::new(Db::new());
        assert_eq!(a.scope(kept_in_redis(&db, 1)).await.unwrap().version, 0);
        assert_eq!(a.stats().l2_sets, 1);
        // Past its freshness (1 s): kept for the fail-safe hour.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        db.failing.store(true, Ordering::SeqCst);
        let mut callers = Vec::new();
        for n in 0..64u64 {
            let cache = if n % 2 == 0 { a.clone() } else { b.clone() };
            let db = Arc::clone(&db);
            callers.push(tokio::spawn(async move {
                let id = if n % 4 == 3 { 2 } else { 1 };
                (id, cache.scope(kept_in_redis(&db, id)).await)
            }));
        }
        for caller in callers {
            match caller.await.unwrap() {
                (1, got) => assert_eq!(got.unwrap().version, 0),
                (_, got) => assert_eq!(got, Err(DbError("database down while reading 2".into()))),
            }
        }
        let served = a.stats().fail_safe_served + b.stats().fail_safe_served;
        assert!(served >= 2, "both instances answered from Redis: {served}");
        // A function without `fail_safe` does not take the value kept for
        // one that has it.
        let got = a.scope(not_kept_in_redis(&db, 1)).await;
        assert_eq!(got, Err(DbError("database down while reading 1".into())));
        // Invalidated: the kept value is gone, the error comes through.
        a.invalidate("kept:1").await.unwrap();
        let got = b.scope(kept_in_redis(&db, 1)).await;
        assert_eq!(got, Err(DbError("database down while reading 1".into())));
    })
    .await;
}

#[cached(ttl = "10s", fail_safe = "1h", key = "fail-safe:<id>", skip(db))]
async fn fail_safe_item(db: &Db, id: u64) -> Result<Item, DbError> {
    db.read(id)
}

#[cached(ttl = "10s", stale = "1m", key = "stale:<id>", skip(db))]
async fn stale_item(db: &Db, id: u64) -> Result<Item, DbError> {
    db.read(id)
}

/// In process: within `fail_safe` (or `stale`) a failing origin is
/// answered with the kept value; past it, or after an invalidation, or
/// without one, the caller gets the error.
#[tokio::test]
async fn fail_safe_in_process_follows_its_window_and_invalidations() {
    #[derive(Default)]
    struct FailSafes(AtomicU64);
    impl Hooks for FailSafes {
        fn on_event(&self, event: &Event<'_>) {
            if let Event::FailSafe {
                template: "fail-safe:<id>",
            } = event
            {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    let clock = ManualClock::new();
    let events = Arc::new(FailSafes::default());
    let cache = Cache::builder()
        .clock(clock.clone())
        .hooks(Arc::clone(&events))
        .build()
        .unwrap();
    let db = Db::new();
    let down = |id: u64| Err(DbError(format!("database down while reading {id}")));
    for id in [1, 2] {
        cache.scope(fail_safe_item(&db, id)).await.unwrap();
    }
    cache.scope(stale_item(&db, 1)).await.unwrap();
    db.write(1);
    clock.advance(Duration::from_secs(11)); // past the TTL
    db.failing.store(true, Ordering::SeqCst);
    assert_eq!(
        cache.scope(fail_safe_item(&db, 1)).await.unwrap().version,
        0
    );
    assert_eq!(cache.scope(stale_item(&db, 1)).await.unwrap().version, 0);
    assert_eq!(cache.stats().fail_safe_served, 2);
    assert_eq!(events.0.load(Ordering::SeqCst), 1);
    // Never stored: the error as it is.
    assert_eq!(cache.scope(fail_safe_item(&db, 3)).await, down(3));
    // Invalidated: nothing kept.
    cache.invalidate("fail-safe:1").await.unwrap();
    assert_eq!(cache.scope(fail_safe_item(&db, 1)).await, down(1));
    // Past the stale minute, within the fail-safe hour.
    clock.advance(Duration::from_secs(120));
    assert_eq!(cache.scope(stale_item(&db, 1)).await, down(1));
    assert_eq!(
        cache.scope(fail_safe_item(&db, 2)).await.unwrap().version,
        0
    );
    // Past the hour.
    clock.advance(Duration::from_secs(3600));
    assert_eq!(cache.scope(fail_safe_item(&db, 2)).await, down(2));
    // The origin back: its value, stored again.
    db.failing.store(false, Ordering::SeqCst);
    assert_eq!(
        cache.scope(fail_safe_item(&db, 1)).await.unwrap().version,
        1
    );
    assert_eq!(cache.stats().fail_safe_served, 3);
}

/// The probe task closes the breaker and is about to end when an
/// invalidation fails and opens it again: the task probes on (it must not
/// end and leave an open breaker with nothing to probe it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opened_again_as_the_probe_ends_still_recovers() {
    use std::sync::mpsc;
    /// Holds the probe task at its first close until told to go on.
    struct HoldFirstClose {
        held: std::sync::atomic::AtomicBool,
        closing: Mutex<mpsc::Sender<()>>,
        go: Mutex<mpsc::Receiver<()>>,
    }
    impl Hooks for HoldFirstClose {
        fn on_event(&self, event: &Event<'_>) {
            if let Event::Breaker {
                to: BreakerState::Closed,
                ..
            } = event
            {
                if !self.held.swap(true, Ordering::SeqCst) {
                    let _ = self.closing.lock().unwrap().send(());
                    let _ = self
                        .go
                        .lock()
                        .unwrap()
                        .recv_timeout(Duration::from_secs(20));
                }
            }
        }
    }
    within(async {
        let server = RedisServer::start();
        let (closing_tx, closing) = mpsc::channel();
        let (go, go_rx) = mpsc::channel();
        let cache = support::chaos::builder(&server, Backend::Hybrid)
            .backplane(false)
            .hooks(HoldFirstClose {
                held: Default::default(),
                closing: Mutex::new(closing_tx),
                go: Mutex::new(go_rx),
            })
            .build()
            .unwrap();
        let down = |server: &RedisServer| tokio::task::block_in_place(|| server.pause());
        down(&server);
        cache.invalidate("item:1").await.unwrap();
        server.resume();
        // The probe replays it, closes, and is held there.
        let closing =
            tokio::task::spawn_blocking(move || closing.recv_timeout(Duration::from_secs(20)));
        closing
            .await
            .unwrap()
            .expect("the probe never closed the breaker");
        down(&server);
        let report = cache.invalidate_report("item:2").await.unwrap();
        assert!(matches!(
            report.shared,
            cache_runtime::SharedInvalidation::Queued(_)
        ));
        assert_eq!(cache.stats().breaker, BreakerState::Open);
        go.send(()).unwrap();
        server.resume();
        // No call is made from here on: the task alone must recover.
        assert!(
            until(|| recovered(&[&cache])).await,
            "stuck: {:?}",
            cache.stats()
        );
    })
    .await;
}

/// An origin that waits at a gate while `slow` is set.
#[derive(Default)]
struct SlowDb {
    calls: AtomicU64,
    slow: std::sync::atomic::AtomicBool,
    gate: tokio::sync::Notify,
}

#[cached(
    ttl = "10s",
    stale = "1m",
    timeout = "50ms",
    key = "slow:<name>",
    skip(db)
)]
async fn slow_report(db: &Arc<SlowDb>, name: &str) -> Result<String, DbError> {
    let call = db.calls.fetch_add(1, Ordering::SeqCst) + 1;
    if db.slow.load(Ordering::SeqCst) {
        db.gate.notified().await;
    }
    Ok(format!("{name} #{call}"))
}

/// `timeout`: with a stale value at hand, a slow origin is answered with it
/// once the time-out passes, and the origin call goes on and fills the
/// cache; without one, the caller waits for the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_origin_is_answered_with_the_stale_value_and_still_fills() {
    within(async {
        let clock = ManualClock::new();
        let cache = Cache::builder().clock(clock.clone()).build().unwrap();
        let db = Arc::new(SlowDb::default());
        let call = |name: &'static str| {
            let (cache, db) = (cache.clone(), Arc::clone(&db));
            async move { cache.scope(slow_report(&db, name)).await.unwrap() }
        };
        assert_eq!(call("daily").await, "daily #1");
        clock.advance(Duration::from_secs(11)); // stale now
        db.slow.store(true, Ordering::SeqCst);
        // The origin is stuck at the gate: the stale value, after 50 ms.
        assert_eq!(call("daily").await, "daily #1");
        assert_eq!(cache.stats().origin_timeouts, 1);
        assert_eq!(db.calls.load(Ordering::SeqCst), 2);
        // The call goes on: once through the gate, it fills the cache.
        db.slow.store(false, Ordering::SeqCst);
        db.gate.notify_one();
        assert!(
            until(|| cache.stats().sets == 2).await,
            "{:?}",
            cache.stats()
        );
        assert_eq!(call("daily").await, "daily #2");
        assert_eq!(db.calls.load(Ordering::SeqCst), 2);

        // Nothing at hand: the caller waits for the origin, however long.
        db.slow.store(true, Ordering::SeqCst);
        let waiting = tokio::spawn(call("weekly"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "answered without a value at hand");
        db.gate.notify_one();
        assert_eq!(waiting.await.unwrap(), "weekly #3");
        assert_eq!(cache.stats().origin_timeouts, 1);
    })
    .await;
}
