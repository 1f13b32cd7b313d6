//! The in-process tier through the `Cache` handle: bounds, TTLs, patterns,
//! named caches, pass-through, on both engines.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_runtime::testing::ManualClock;
use cache_runtime::{Cache, Engine, NamespaceConfig};

const MIN: Duration = Duration::from_secs(60);

fn builders() -> Vec<(Engine, cache_runtime::CacheBuilder)> {
    [Engine::QuickCache, Engine::Moka]
        .into_iter()
        .map(|e| (e, Cache::builder().engine(e)))
        .collect()
}

#[tokio::test]
async fn the_tier_is_bounded_in_bytes() {
    for (engine, builder) in builders() {
        let cache = builder.l1_max_bytes(256 * 1024).build().unwrap();
        for i in 0..20_000u32 {
            cache
                .local()
                .set(&format!("blob:{i}"), [0u8; 64], MIN)
                .await;
        }
        let stats = cache.stats();
        assert!(stats.l1_bytes <= 256 * 1024, "{engine:?}: {stats:?}");
        assert!(stats.entries < 20_000, "{engine:?}: {stats:?}");
        assert!(stats.entries > 100, "{engine:?}: {stats:?}");
    }
}

#[tokio::test]
async fn the_tier_is_bounded_in_entries() {
    let cache = Cache::builder()
        .l1_max_bytes(64 << 20)
        .l1_max_entries(1_000)
        .build()
        .unwrap();
    for i in 0..10_000u32 {
        cache.set(&format!("n:{i}"), i, MIN).await;
    }
    let entries = cache.stats().entries;
    assert!(entries <= 1_000, "{entries} entries");
}

#[tokio::test]
async fn values_expire_after_their_ttl() {
    for (engine, builder) in builders() {
        let clock = ManualClock::new();
        let cache = builder.clock(clock.clone()).build().unwrap();
        cache.set("short", 1u8, Duration::from_secs(5)).await;
        cache.set("long", 2u8, Duration::from_secs(50)).await;
        clock.advance(Duration::from_secs(6));
        assert_eq!(cache.get::<u8>("short").await, None, "{engine:?}");
        assert!(!cache.exists("short").await);
        assert_eq!(cache.get::<u8>("long").await, Some(2), "{engine:?}");
    }
}

#[tokio::test]
async fn a_value_of_another_type_is_a_miss() {
    let cache = Cache::builder().build().unwrap();
    cache.set("k", 1u32, MIN).await;
    assert_eq!(cache.get::<String>("k").await, None);
    let v = cache
        .get_or_insert_with("k", MIN, || async { "now a string".to_string() })
        .await;
    assert_eq!(v, "now a string");
    assert_eq!(
        cache.get::<String>("k").await.as_deref(),
        Some("now a string")
    );
}

#[tokio::test]
async fn patterns_remove_what_they_match_and_count_it() {
    for (engine, builder) in builders() {
        let cache = builder.build().unwrap();
        for tenant in ["acme", "globex"] {
            for page in 0..10 {
                cache
                    .set(&format!("orders:list:{tenant}:p{page}"), page, MIN)
                    .await;
            }
            cache.set(&format!("order:{tenant}:1"), 1, MIN).await;
        }
        assert_eq!(
            cache.invalidate("orders:list:acme:*").await.unwrap(),
            10,
            "{engine:?}"
        );
        assert_eq!(cache.get::<i32>("orders:list:acme:p3").await, None);
        assert_eq!(cache.get::<i32>("orders:list:globex:p3").await, Some(3));
        assert_eq!(cache.invalidate("order:acme:1").await.unwrap(), 1);
        assert_eq!(cache.invalidate("order:acme:1").await.unwrap(), 0);
        assert_eq!(cache.invalidate("order?:*:p[0-4]").await.unwrap(), 5);
        assert_eq!(cache.get::<i32>("orders:list:globex:p5").await, Some(5));
        let err = cache.invalidate("orders:[acme").await.unwrap_err();
        assert!(err.to_string().contains("never closed"), "{err}");
        cache.clear().await;
        assert_eq!(cache.stats().entries, 0);
        assert!(!cache.exists("order:globex:1").await);
    }
}

/// A prefix invalidation reads the keys under its prefix only (an index
/// the first one builds): keys stored, replaced, deleted and evicted after
/// it are seen by the next one exactly as a walk over the tier would.
#[tokio::test]
async fn prefix_invalidations_see_every_key_stored_since_the_first() {
    for (engine, builder) in builders() {
        // About 2,000 entries of ~120 bytes fit: the loop below evicts.
        let cache = builder.l1_max_bytes(256 * 1024).build().unwrap();
        assert_eq!(cache.invalidate("t0:*").await.unwrap(), 0, "{engine:?}");
        for round in 0..5u32 {
            for i in 0..3_000u32 {
                cache.set(&format!("t{}:{i}", i % 7), round, MIN).await;
            }
            cache.delete("t3:3").await;
            for t in 0..7u32 {
                let pattern = format!("t{t}:*");
                let mut held = 0;
                for i in (t..3_000).step_by(7) {
                    held += u64::from(cache.exists(&format!("t{t}:{i}")).await);
                }
                let removed = cache.invalidate(&pattern).await.unwrap();
                assert_eq!(removed, held, "{engine:?} round {round}: {pattern}");
                assert!(held > 0, "{engine:?}: nothing left of {pattern}");
            }
            assert_eq!(cache.stats().entries, 0, "{engine:?}");
        }
    }
}

#[tokio::test]
async fn pattern_invalidation_reaches_named_caches() {
    let cache = Cache::builder().build().unwrap();
    let lookups = cache.named("lookups");
    lookups.set("country:fr", "France".to_string(), MIN).await;
    cache.set("country:de", "Germany".to_string(), MIN).await;
    assert_eq!(cache.invalidate("country:*").await.unwrap(), 2);
    assert!(!lookups.exists("country:fr").await);
}

#[tokio::test]
async fn named_caches_are_apart_and_take_their_settings() {
    let clock = ManualClock::new();
    let cache = Cache::builder()
        .clock(clock.clone())
        .namespace(
            "lookups",
            NamespaceConfig::new().default_ttl(Duration::from_secs(3600)),
        )
        .namespace("off", NamespaceConfig::new().enabled(false))
        .build()
        .unwrap();
    let lookups = cache.named("lookups");
    assert!(lookups.same_as(&cache.named("lookups")));
    assert!(!lookups.same_as(&cache));
    cache.set("k", 1u8, MIN).await;
    assert_eq!(lookups.get::<u8>("k").await, None);
    assert_eq!(lookups.config().default_ttl, Duration::from_secs(3600));
    assert!(!cache.named("off").is_enabled());
    assert!(cache.is_enabled());
}

#[tokio::test]
async fn statistics_count_hits_misses_sets_and_deletes() {
    let cache = Cache::builder().build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..5 {
        let calls = calls.clone();
        cache
            .get_or_insert_with("s", MIN, || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                3u8
            })
            .await;
    }
    cache.delete("s").await;
    let stats = cache.stats();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        (stats.hits, stats.misses, stats.sets, stats.deletes),
        (4, 1, 1, 1)
    );
    assert!((stats.hit_rate() - 0.8).abs() < 1e-9);
}

#[test]
fn a_hybrid_backend_builds_without_connecting() {
    // Nothing listens on port 1, and there is no tokio runtime here: the
    // connection is made on first use.
    let config = cache_runtime::Config::from_lookup(|name| match name {
        "CACHE_BACKEND" => Some("hybrid".into()),
        "REDIS_URL" => Some("redis://127.0.0.1:1/0".into()),
        _ => None,
    })
    .unwrap();
    let cache = cache_runtime::CacheBuilder::from_config(config)
        .build()
        .unwrap();
    assert_eq!(cache.config().backend, cache_runtime::Backend::Hybrid);
    // A plain `fn` outside any runtime works. It is not served from the
    // in-process tier: that waits for the subscription to the other
    // instances' invalidations, which needs a tokio runtime.
    assert_eq!(cache.scope_sync(|| double(21)), 42);
    assert_eq!(cache.scope_sync(|| double(21)), 42);
    assert!(!cache.in_sync());
    assert_eq!(cache.stats().hits, 0);

    // With the backplane off (one instance), the in-process tier serves.
    let alone = cache_runtime::Cache::builder()
        .backend(cache_runtime::Backend::Hybrid)
        .redis_url("redis://127.0.0.1:1/0")
        .backplane(false)
        .build()
        .unwrap();
    assert_eq!(alone.scope_sync(|| double(21)), 42);
    assert_eq!(alone.scope_sync(|| double(21)), 42);
    assert_eq!(alone.stats().hits, 1);
}

#[cache_runtime::cached(ttl = "1m", key = "double:<n>")]
fn double(n: u64) -> u64 {
    n * 2
}
