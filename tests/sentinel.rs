//! The shared tier behind Redis Sentinel: a `redis+sentinel://` URL finds
//! the master through the sentinels, and the cache follows it across
//! failovers (`SENTINEL FAILOVER`, and a master killed) under load, with no
//! caller error and no stale read. Real processes: two redis-servers, one
//! replicating the other, and three sentinels, on loopback ports.
//!
//! Which invalidations a read must respect: see `support/chaos.rs`.

mod support;

use std::time::Duration;

use cache_runtime::{cached, invalidates, Cache, L2ErrorKind, RedisL2};
use support::chaos::{until, Load};
use support::sentinel::{SentinelGroup, SERVICE};
use support::{hybrid, synced, Target};

async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(180), future)
        .await
        .expect("the test did not finish within 180 s")
}

#[cached(ttl = "1m", key = "greeting:<name>")]
async fn greeting(name: &str) -> String {
    format!("hello, {name} #{}", next())
}

#[invalidates("greeting:<name>")]
async fn rename(name: &str) {}

fn next() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_master_that_sentinel_names() {
    within(async {
        let group = SentinelGroup::start();
        let (a, b) = (
            synced(hybrid(&group, "app")).await,
            synced(hybrid(&group, "app")).await,
        );
        let first = a.scope(greeting("ada")).await;
        // B finds A's value in Redis: the master the sentinels name holds it.
        assert_eq!(b.scope(greeting("ada")).await, first);
        assert_eq!(group.keys("app:greeting:*").len(), 1);
        // An invalidation on A reaches B's in-process tier.
        a.scope(rename("ada")).await;
        let renamed = b.scope(greeting("ada")).await;
        assert_ne!(renamed, first);
        assert_eq!(a.scope(greeting("ada")).await, renamed);
        assert!(a.health().await.redis_error.is_none());
    })
    .await;
}

trait Follows {
    /// Waits until every instance of the load uses the master on `port`,
    /// and knows how many of its replicas are up.
    async fn follow(&self, port: u16, replicas: u64);
}

impl Follows for Load {
    async fn follow(&self, port: u16, replicas: u64) {
        let want = format!("127.0.0.1:{port}");
        for cache in self.remotes.iter().chain([&self.a, &self.b]) {
            let mut seen = (None, None);
            for _ in 0..300 {
                let health = cache.health().await;
                seen = (health.redis_master, health.redis_replicas);
                if seen == (Some(want.clone()), Some(replicas)) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(
                seen,
                (Some(want.clone()), Some(replicas)),
                "an instance did not follow"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failovers_under_load_cost_no_error_and_no_stale_read() {
    within(async {
        let mut group = SentinelGroup::start();
        let first = group.master_port();
        let load = Load::start(&group).await;
        let sets = |caches: &[&Cache]| caches.iter().map(|c| c.stats().l2_sets).sum::<u64>();
        let opens = |load: &Load| {
            load.remotes
                .iter()
                .chain([&load.a, &load.b])
                .map(|c| c.stats().breaker_opens)
                .sum::<u64>()
        };
        load.progresses(300, "before the failover").await;

        // A failover the old master lives through: it becomes a replica
        // and refuses writes.
        *load.tally.phase.lock().unwrap() = "SENTINEL FAILOVER";
        let second = group.failover();
        load.follow(second, 1).await;
        load.recovers().await;
        let remotes: Vec<&Cache> = load.remotes.iter().collect();
        let before = sets(&remotes);
        load.progresses(300, "after the failover").await;
        assert!(
            until(|| sets(&remotes) > before).await,
            "no value written to Redis after the failover"
        );

        // The old master, now a replica, dies: invalidations wait for it
        // once, find that it did not take over, and go without it; no
        // breaker opens.
        *load.tally.phase.lock().unwrap() = "the replica killed";
        let opened = opens(&load);
        group.server_mut(first).kill();
        load.follow(second, 0).await;
        assert_eq!(
            opens(&load),
            opened,
            "a breaker opened when the replica died"
        );
        let before = sets(&remotes);
        load.progresses(300, "with the replica dead").await;
        assert!(
            until(|| sets(&remotes) > before).await,
            "no value written to Redis with the replica dead"
        );

        // It comes back empty, the sentinels make it a replica again, and
        // the master dies: the sentinels promote it.
        *load.tally.phase.lock().unwrap() = "the master killed";
        group.server_mut(first).restart();
        group.wait_replicated(1);
        load.follow(second, 1).await;
        group.server_mut(second).kill();
        let third = group.wait_master_moved_from(second);
        assert_eq!(third, first);
        load.follow(third, 0).await;
        load.recovers().await;
        let before = sets(&remotes);
        load.progresses(300, "after the master died").await;
        assert!(
            until(|| sets(&remotes) > before).await,
            "no value written to Redis after the second failover"
        );
        let (tally, _) = load.stop().await;
        tally.assert_clean();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_service_or_dead_sentinels_say_what_is_wrong() {
    let group = SentinelGroup::start();
    let port = group.sentinels[0].port;
    let err = RedisL2::builder(format!("redis+sentinel://127.0.0.1:{port}/nosuch"), "app")
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), L2ErrorKind::NoMaster, "{err}");
    assert!(err.to_string().contains("SENTINEL MASTERS"), "{err}");
    // One dead sentinel among live ones is passed over.
    let dead = support::RedisServer::start();
    let dead_port = dead.port();
    drop(dead);
    let url = format!("redis+sentinel://127.0.0.1:{dead_port},127.0.0.1:{port}/{SERVICE}");
    let l2 = RedisL2::builder(url, "app").connect().await.unwrap();
    l2.set("k", b"v", 10_000).await.unwrap();
    assert_eq!(l2.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    // None alive: refused.
    let url = format!("redis+sentinel://127.0.0.1:{dead_port}/{SERVICE}");
    let err = RedisL2::builder(url, "app").connect().await.unwrap_err();
    assert_eq!(err.kind(), L2ErrorKind::Refused, "{err}");
}
