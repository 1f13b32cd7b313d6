//! A Redis Cluster node as `REDIS_URL`. The shared tier does not support
//! Redis Cluster yet: a cache pointed at a cluster node must say so (in
//! `health()` and in its errors), cost its callers nothing but hit rate,
//! and keep its breaker open instead of trying every key against it.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_runtime::{cached, Backend, BreakerState, Cache, HealthStatus};
use serde::{Deserialize, Serialize};
use support::chaos::BreakerChanges;
use support::RedisCluster;

#[derive(Default)]
struct Db {
    reads: AtomicU64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
}

#[cached(ttl = "1m", key = "order:<id>")]
async fn order(db: &Db, id: u64) -> Order {
    db.reads.fetch_add(1, Ordering::SeqCst);
    Order { id }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_is_reported_and_costs_callers_nothing_but_hit_rate() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3))
        .await
        .unwrap();
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
    assert!(why.contains("does not support Redis Cluster yet"), "{why}");
}
