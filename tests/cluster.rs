//! Redis Cluster: a `redis+cluster://` URL runs the shared tier on a local
//! 3-primary cluster (the hybrid tests of `l2_cache`, `backplane` and
//! `lock` run against one as well); here what is the cluster's own: a
//! namespace spread over every primary, patterns walked on each, several
//! slots in one call, and a cluster node given as a plain `redis://` URL.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_runtime::{
    cached, Backend, BreakerState, Cache, HealthStatus, RedisL2, SharedInvalidation,
};
use serde::{Deserialize, Serialize};
use support::chaos::{BreakerChanges, Load};
use support::{RedisCluster, Target};

#[derive(Default)]
struct Db {
    reads: AtomicU64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
}

#[cached(ttl = "1m", key = "order:<id>", skip(db))]
async fn order(db: &Db, id: u64) -> Order {
    db.reads.fetch_add(1, Ordering::SeqCst);
    Order { id }
}

async fn start() -> RedisCluster {
    tokio::task::spawn_blocking(|| RedisCluster::start(3))
        .await
        .unwrap()
}

/// The cache keys `order:*` stored on each node.
fn orders_per_node(cluster: &RedisCluster, namespace: &str) -> Vec<usize> {
    cluster
        .nodes
        .iter()
        .map(|node| node.keys(&format!("{namespace}{{*}}:order:*")).len())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_spreads_over_every_primary_and_patterns_reach_each() {
    let cluster = start().await;
    let cache = Cache::builder()
        .backend(Backend::Hybrid)
        .redis_url(cluster.url())
        .key_prefix("spread")
        .redis_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert!(cache.wait_in_sync(Duration::from_secs(10)).await);
    let db = Db::default();
    for id in 0..300 {
        cache.scope(order(&db, id)).await;
    }
    let per_node = orders_per_node(&cluster, "spread");
    assert_eq!(per_node.iter().sum::<usize>(), 300, "{per_node:?}");
    assert!(per_node.iter().all(|&n| n >= 30), "{per_node:?}");

    let health = cache.health().await;
    assert_eq!(health.status, HealthStatus::Healthy, "{health}");

    // A pattern with a wildcard inside: SCAN on each primary.
    let report = cache.invalidate_report("order:*7").await.unwrap();
    assert_eq!(report.shared, SharedInvalidation::Scanned(30), "{report:?}");
    assert_eq!(
        orders_per_node(&cluster, "spread").iter().sum::<usize>(),
        270
    );
    // A prefix pattern: one mark per group, whatever the keys.
    let report = cache.invalidate_report("order:*").await.unwrap();
    assert_eq!(report.shared, SharedInvalidation::Prefix("order:".into()));
    let reads = db.reads.load(Ordering::SeqCst);
    for id in 0..300 {
        cache.scope(order(&db, id)).await;
    }
    assert_eq!(db.reads.load(Ordering::SeqCst), reads + 300);
    // clear: every primary, this namespace only.
    let other = Cache::builder()
        .backend(Backend::Redis)
        .redis_url(cluster.url())
        .key_prefix("other")
        .build()
        .unwrap();
    other.scope(order(&db, 1)).await;
    cache.clear().await;
    assert_eq!(orders_per_node(&cluster, "spread"), [0, 0, 0]);
    assert_eq!(orders_per_node(&cluster, "other").iter().sum::<usize>(), 1);
}

#[tokio::test]
async fn the_store_handles_keys_of_many_slots_in_one_call() {
    let cluster = start().await;
    let l2 = RedisL2::builder(cluster.url(), "raw")
        .connect()
        .await
        .unwrap();
    let keys: Vec<String> = (0..50).map(|n| format!("item:{n}")).collect();
    for key in &keys {
        l2.set(key, key.as_bytes(), 60_000).await.unwrap();
    }
    assert_eq!(
        l2.get("item:7").await.unwrap().as_deref(),
        Some(&b"item:7"[..])
    );
    let slots: HashSet<String> = keys
        .iter()
        .map(|key| l2.redis_key(key).split('}').next().unwrap().to_owned())
        .collect();
    assert!(slots.len() > 8, "{slots:?}");
    let some: Vec<&str> = keys[..10].iter().map(String::as_str).collect();
    assert_eq!(l2.delete(&some).await.unwrap(), 10);
    assert_eq!(l2.invalidate("item:4*").await.unwrap(), 10); // 40..49 (item:4 is deleted)
    assert_eq!(l2.clear().await.unwrap(), 30);
    assert!(l2.ping().await.is_ok());
    let err = RedisL2::builder(format!("{}/2", cluster.url()), "raw")
        .check()
        .unwrap_err();
    assert!(err.to_string().contains("only database 0"), "{err}");
}

/// A cluster node given as a plain `redis://` URL: the cache says what to
/// write instead (in `health()` and its errors), costs its callers nothing
/// but hit rate, and keeps its breaker open instead of trying every key
/// against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_as_a_plain_url_is_reported_and_costs_callers_nothing_but_hit_rate() {
    let cluster = start().await;
    let changes = Arc::new(BreakerChanges::default());
    let cache = Cache::builder()
        .backend(Backend::Hybrid)
        .redis_url(cluster.nodes[0].url())
        .key_prefix("clustered")
        .redis_timeout(Duration::from_millis(500))
        .breaker(3, Duration::from_millis(100))
        .hooks(Arc::clone(&changes))
        .build()
        .unwrap();
    let db = Db::default();
    for id in 0..20 {
        assert_eq!(cache.scope(order(&db, id)).await.id, id);
    }
    assert!(cache.stats().l2_errors > 0, "{:?}", cache.stats());
    // The probes find a cluster node and keep the breaker open.
    let mut reopened = 0;
    for _ in 0..3000 {
        reopened = changes
            .seen()
            .iter()
            .filter(|c| **c == (BreakerState::HalfOpen, BreakerState::Open))
            .count();
        if reopened >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(reopened >= 2, "{:?}", changes.seen());
    assert!(!changes
        .seen()
        .contains(&(BreakerState::HalfOpen, BreakerState::Closed)));
    // An invalidation is queued, not an error.
    cache.invalidate("order:1").await.unwrap();
    assert_eq!(cache.stats().invalidations_pending, 1);
    let health = cache.health().await;
    assert_eq!(health.status, HealthStatus::Degraded, "{health}");
    let why = health.redis_error.unwrap_or_default();
    assert!(why.contains("redis+cluster://"), "{why}");
}

/// The load of the resilience tests (two hybrid instances writing and
/// reading, eight reading through Redis only, every read checked against
/// the invalidations it must respect) on the cluster, while one of its
/// primaries is killed and restarted empty, then paused: the cluster goes
/// down for everyone once the others mark the node failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_then_paused_under_load_costs_no_error_and_no_stale_read() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let mut cluster = start().await;
        let load = Load::start(&cluster).await;
        load.progresses(300, "before the faults").await;

        cluster.nodes[1].kill();
        load.progresses(300, "while a primary is dead").await;
        cluster.nodes[1].restart();
        load.recovers().await;
        load.progresses(300, "after the restart").await;

        cluster.nodes[2].pause();
        load.every_task_progresses(20, "while a primary is paused")
            .await;
        // Past the node timeout (2 s): the cluster marks it failed.
        tokio::time::sleep(Duration::from_secs(3)).await;
        load.every_task_progresses(20, "while the cluster is down")
            .await;
        cluster.nodes[2].resume();
        load.recovers().await;
        load.progresses(300, "after the pause").await;

        let (tally, caches) = load.stop().await;
        tally.assert_clean();
        assert!(
            caches[0].stats().breaker_opens >= 1,
            "{:?}",
            caches[0].stats()
        );
    })
    .await
    .expect("the test did not finish within 240 s");
}

/// The load of the resilience tests on a cluster whose primaries each have
/// a replica, through the failovers of production: `CLUSTER FAILOVER` on a
/// replica (the primary hands over once its replica caught up), then the
/// new primary killed, so that the cluster promotes its replica (the old
/// primary) on its own, then the killed node restarted, as a replica.
/// Every instance follows each change, with no caller error and no stale
/// read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failovers_under_load_cost_no_error_and_no_stale_read() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let mut cluster = tokio::task::spawn_blocking(|| RedisCluster::start_with_replicas(3, 1))
            .await
            .unwrap();
        let load = Load::start(&cluster).await;
        load.redis_back();
        load.progresses(300, "before the failovers").await;

        let primary = (0..cluster.nodes.len())
            .find(|&n| cluster.is_primary(n))
            .expect("a primary");
        let replica = cluster.replica_of(primary).expect("a replica");
        *load.tally.phase.lock().unwrap() = "CLUSTER FAILOVER";
        let _: () = redis::cmd("CLUSTER")
            .arg("FAILOVER")
            .query(&mut cluster.nodes[replica].connection())
            .unwrap();
        assert!(
            support::chaos::until(|| cluster.is_primary(replica) && !cluster.is_primary(primary))
                .await,
            "the replica never took over"
        );
        cluster.wait_settled(|_| true);
        load.progresses(300, "after CLUSTER FAILOVER").await;

        // The new primary killed: the cluster promotes the old one.
        *load.tally.phase.lock().unwrap() = "primary killed";
        load.redis_away();
        cluster.nodes[replica].kill();
        load.progresses(300, "while a primary is dead").await;
        assert!(
            support::chaos::until(|| cluster.is_primary(primary)).await,
            "the old primary was never promoted back"
        );
        cluster.wait_settled(|n| n != replica);
        load.redis_back();
        load.recovers().await;
        load.progresses(300, "after the promotion").await;

        *load.tally.phase.lock().unwrap() = "killed node back";
        cluster.nodes[replica].restart();
        cluster.wait_settled(|_| true);
        assert_eq!(cluster.replica_of(primary), Some(replica));
        load.progresses(300, "after the killed node came back")
            .await;

        let (tally, _) = load.stop().await;
        tally.assert_clean();
    })
    .await
    .expect("the test did not finish within 240 s");
}

/// Redis replicates asynchronously: a primary acknowledges an
/// invalidation before its replica holds it. Here the replica is paused
/// and 32 MiB are written on the primary, more than the sockets between
/// them hold, so that the invalidation made next waits in the primary's
/// memory; the primary is killed, and the replica, resumed, is promoted
/// without it. The invalidation must not be lost: it
/// is taken as done only once a replica holds it, and otherwise queued and
/// replayed on the new primary, so that the other instance then reads the
/// new value, not the one the invalidation removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_survives_the_loss_of_the_primary_that_took_it() {
    let mut cluster = tokio::task::spawn_blocking(|| RedisCluster::start_with_replicas(3, 1))
        .await
        .unwrap();
    let url = cluster.url();
    let instance = || {
        Cache::builder()
            .backend(Backend::Redis)
            .redis_url(&url)
            .key_prefix("lost")
            .redis_timeout(Duration::from_secs(1))
            .breaker(3, Duration::from_millis(100))
            .build()
            .unwrap()
    };
    let (a, b) = (instance(), instance());
    let db = Db::default();
    assert_eq!(b.scope(order(&db, 1)).await.id, 1);
    // `a` connected too before the faults.
    assert_eq!(a.scope(order(&db, 1)).await.id, 1);
    assert_eq!(db.reads.load(Ordering::SeqCst), 1);
    let redis_key = cluster.key("lost", "order:1");
    let primary = (0..cluster.nodes.len())
        .find(|&n| cluster.is_primary(n) && !cluster.nodes[n].keys(&redis_key).is_empty())
        .expect("the primary of order:1");
    let replica = cluster.replica_of(primary).expect("a replica");
    assert!(
        support::chaos::until(|| !cluster.nodes[replica].keys(&redis_key).is_empty()).await,
        "the replica never held the value"
    );

    cluster.nodes[replica].pause();
    let tag = &redis_key[redis_key.find('{').unwrap()..=redis_key.find('}').unwrap()];
    let _: () = redis::cmd("SET")
        .arg(format!("{tag}ballast"))
        .arg(vec![b'x'; 32 << 20])
        .query(&mut cluster.nodes[primary].connection())
        .unwrap();
    a.invalidate("order:1").await.unwrap();
    cluster.nodes[primary].kill();
    cluster.nodes[replica].resume();
    assert!(
        support::chaos::until(|| cluster.is_primary(replica)).await,
        "the replica was never promoted"
    );
    // The invalidation reached the new primary (replayed, if it was
    // queued): an instance that reads it there gets the new value.
    assert!(
        support::chaos::until(|| a.stats().invalidations_pending == 0).await,
        "{:?}",
        a.stats()
    );
    let c = instance();
    c.scope(order(&db, 1)).await;
    assert_eq!(c.stats().l2_errors, 0, "{:?}", c.stats());
    assert_eq!(
        db.reads.load(Ordering::SeqCst),
        2,
        "the new primary served the value the invalidation removed: the failover lost it"
    );
}

/// The backplane on a cluster is sharded: every group's channel is
/// subscribed (`SSUBSCRIBE`) on the primary that serves its slot, and an
/// invalidation is announced (`SPUBLISH`) there, so no message crosses the
/// cluster bus. Each primary answers the subscription's pings, so when one
/// stalls (paused here), the in-process tiers stop serving within the
/// stale bound of an invalidation that could not reach them: with one
/// subscription on one node, a stall of another primary would go
/// unnoticed. The bound is asserted with a margin measured in the run
/// (the runtime's wake-up lateness, twice, and the coarse clock's tick).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backplane_subscribes_on_every_primary_and_a_stalled_one_stops_in_process_hits() {
    let cluster = start().await;
    let instance = |timeout| {
        Cache::builder()
            .backend(Backend::Hybrid)
            .redis_url(cluster.url())
            .key_prefix("sharded")
            .redis_timeout(timeout)
            .build()
            .unwrap()
    };
    let a = instance(Duration::from_millis(50));
    let b = instance(Duration::from_secs(2));
    assert!(a.wait_in_sync(Duration::from_secs(10)).await);
    assert!(b.wait_in_sync(Duration::from_secs(10)).await);

    // Every group's channel, each on the node that serves it; no classic
    // channel anywhere.
    let mut shard_channels = 0;
    for node in &cluster.nodes {
        let mut conn = node.connection();
        let sharded: Vec<String> = redis::cmd("PUBSUB")
            .arg("SHARDCHANNELS")
            .query(&mut conn)
            .unwrap();
        for channel in &sharded {
            // A node that does not serve the channel's slot answers MOVED.
            let served = redis::cmd("EXISTS").arg(channel).query::<u64>(&mut conn);
            assert!(
                served.is_ok(),
                "{channel} subscribed on a node that does not serve it"
            );
        }
        shard_channels += sharded.len();
        let classic: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .query(&mut conn)
            .unwrap();
        assert!(classic.is_empty(), "{classic:?}");
    }
    assert_eq!(shard_channels, cache_runtime::CLUSTER_GROUPS);

    let db = Db::default();
    assert_eq!(b.scope(order(&db, 1)).await.id, 1);
    let redis_key = cluster.key("sharded", "order:1");
    let primary = cluster
        .nodes
        .iter()
        .position(|node| !node.keys(&redis_key).is_empty())
        .expect("the primary of order:1");
    let noise = support::wake_up_noise().await;
    for _ in 0..30 {
        assert!(b.local().get::<Order>("order:1").await.is_some());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    cluster.nodes[primary].pause();
    // Times out on the paused primary: queued, and returned.
    a.invalidate("order:1").await.unwrap();
    let returned = std::time::Instant::now();
    let window = support::stale_window(returned, async || {
        b.local().get::<Order>("order:1").await.is_some()
    })
    .await;
    cluster.nodes[primary].resume();
    support::assert_stale_window(
        "a paused primary",
        window,
        Duration::from_millis(250),
        noise,
    );
    assert!(
        b.wait_in_sync(Duration::from_secs(20)).await,
        "b never came back in step"
    );
    assert!(
        support::chaos::until(|| a.stats().invalidations_pending == 0).await,
        "{:?}",
        a.stats()
    );
    assert_eq!(b.scope(order(&db, 1)).await.id, 1);
    assert_eq!(
        db.reads.load(Ordering::SeqCst),
        2,
        "b read the invalidated value back"
    );
}
