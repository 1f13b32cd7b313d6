//! Hostile input and a hostile Redis: a key longer than the limit is never
//! cached, a marker that makes no sense reads as an invalidation (counted,
//! named in `health()`), a value copied to another key is not served
//! there (undecodable, and replaced by the next fill), a prefix's tag lives as long as what it covers, and an
//! invalidation Redis keeps refusing is widened to a clear instead of
//! being replayed forever. Each against a real redis-server of its own.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::{cached, invalidates, Backend, Cache, MAX_KEY_BYTES};
use redis::Commands;
use support::RedisServer;

const MIN: Duration = Duration::from_secs(60);

async fn hybrid(server: &RedisServer, prefix: &str) -> Cache {
    let cache = Cache::builder()
        .backend(Backend::Hybrid)
        .redis_url(server.url())
        .key_prefix(prefix)
        .redis_timeout(Duration::from_secs(2))
        .build()
        .expect("a cache");
    assert!(
        cache.wait_in_sync(Duration::from_secs(10)).await,
        "no backplane subscription within 10 s"
    );
    cache
}

/// A cache that reads Redis on every call (no in-process tier): what
/// another instance finds there.
fn reader(server: &RedisServer, prefix: &str) -> Cache {
    Cache::builder()
        .backend(Backend::Redis)
        .redis_url(server.url())
        .key_prefix(prefix)
        .redis_timeout(Duration::from_secs(2))
        .build()
        .expect("a cache")
}

/// Every key of `server`'s database 0.
fn keys(server: &RedisServer) -> Vec<String> {
    let mut conn = server.connection();
    let mut keys: Vec<String> = conn.keys("*").expect("KEYS");
    keys.sort();
    keys
}

#[cached(ttl = "1m", key = "search:<query>", skip(calls))]
async fn search(calls: &AtomicU64, query: &str) -> u64 {
    calls.fetch_add(1, Ordering::SeqCst);
    query.len() as u64
}

#[tokio::test]
async fn a_key_longer_than_the_limit_is_never_cached_and_is_counted() {
    let server = RedisServer::start();
    let cache = hybrid(&server, "long").await;
    let calls = AtomicU64::new(0);
    let long = "q".repeat(100 * 1024);
    for _ in 0..3 {
        assert_eq!(cache.scope(search(&calls, &long)).await, long.len() as u64);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "every call reaches the origin"
    );
    // A key at the limit is cached as any other.
    let at_limit = "q".repeat(MAX_KEY_BYTES - "search:".len());
    for _ in 0..3 {
        cache.scope(search(&calls, &at_limit)).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(cache.stats().keys_too_long, 3);

    // The handle: nothing stored, nothing found, nothing to delete.
    let key = format!("blob:{long}");
    cache.set(&key, 1u8, MIN).await;
    assert_eq!(cache.get::<u8>(&key).await, None);
    assert!(!cache.exists(&key).await);
    assert!(!cache.delete(&key).await);
    let got = cache.get_or_insert_with(&key, MIN, || async { 7u8 }).await;
    assert_eq!(got, 7);
    assert_eq!(cache.warm([(key.clone(), 1u8)], MIN).await, 0);
    assert_eq!(cache.stats().keys_too_long, 3 + 6);

    // Redis holds no key longer than the limit plus the namespace.
    let longest = keys(&server).iter().map(String::len).max().unwrap_or(0);
    assert!(
        longest <= MAX_KEY_BYTES + 64,
        "a key of {longest} bytes in Redis"
    );
}

/// Sets `name` in `server` to `value` with a plain client: what a broken
/// or hostile client does.
fn write_raw(server: &RedisServer, name: &str, value: &[u8]) {
    let mut conn = server.connection();
    let _: () = conn.set(name, value).expect("SET");
}

#[tokio::test]
async fn a_generation_beyond_two_to_the_53_is_read_as_invalidated_and_named() {
    let server = RedisServer::start();
    let a = hybrid(&server, "gen").await;
    let b = reader(&server, "gen");
    a.set("user:1", "Ada".to_string(), MIN).await;
    assert_eq!(b.get::<String>("user:1").await.as_deref(), Some("Ada"));

    write_raw(&server, "gen[g]", b"9007199254740993");
    // No value is served from Redis while its generation makes no sense.
    assert_eq!(b.get::<String>("user:1").await, None);
    let stats = b.stats();
    assert!(stats.l2_corrupt >= 1, "{stats:?}");
    assert!(stats.l2_errors >= 1, "counted as an error: {stats:?}");
    let health = b.health().await;
    assert_eq!(health.status, cache_runtime::HealthStatus::Degraded);
    let named = health.last_corrupt.clone().unwrap_or_default();
    assert!(named.contains("gen[g]"), "{health}");
    assert!(health.to_string().contains("corrupt in redis"), "{health}");

    // A load does not fill under it; an invalidation makes the counter
    // anew, and from then on the protocol holds again: a value filled
    // after it is served, and a later invalidation removes it for every
    // instance.
    let loaded = b.get_or_insert_with("user:2", MIN, || async { 2u8 }).await;
    assert_eq!(loaded, 2);
    let filled: Option<Vec<u8>> = server.connection().get("gen:user:2").unwrap();
    assert_eq!(filled, None, "no fill under a counter that makes no sense");
    a.invalidate("user:*").await.unwrap();
    let generation: String = server.connection().get("gen[g]").unwrap();
    assert!(
        generation.parse::<u64>().unwrap() < 1 << 53,
        "made anew: {generation}"
    );
    a.set("user:3", 3u8, MIN).await;
    assert_eq!(b.get::<u8>("user:3").await, Some(3));
    a.invalidate("user:*").await.unwrap();
    assert_eq!(b.get::<u8>("user:3").await, None);
}

#[tokio::test]
async fn a_tag_that_is_not_a_number_or_of_another_type_fails_closed() {
    let server = RedisServer::start();
    let cache = hybrid(&server, "tag").await;
    let other = reader(&server, "tag");
    cache.set("orders:list:acme:p1", 1u8, MIN).await;
    assert_eq!(other.get::<u8>("orders:list:acme:p1").await, Some(1));

    // Not a number: read as "invalidated", never as "never invalidated".
    write_raw(&server, "tag[t]orders:list:", b"garbage");
    assert_eq!(other.get::<u8>("orders:list:acme:p1").await, None);
    assert!(other.stats().l2_corrupt >= 1);
    let named = other.health().await.last_corrupt.unwrap_or_default();
    assert!(named.contains("tag[t]orders:list:"), "{named}");

    // Another type: a read cannot see it (a multi-key GET answers nil for
    // it, as for a tag deleted), but no fill goes past it.
    let mut conn = server.connection();
    let _: () = conn.del("tag[t]orders:list:").unwrap();
    let _: () = conn.hset("tag[t]orders:list:", "x", "1").unwrap();
    let before = other.stats().l2_corrupt;
    let filled = other
        .get_or_insert_with("orders:list:acme:p2", MIN, || async { 2u8 })
        .await;
    assert_eq!(filled, 2);
    assert!(other.stats().l2_corrupt > before);
    let stored: Option<Vec<u8>> = conn.get("tag:orders:list:acme:p2").unwrap();
    assert_eq!(stored, None, "no fill under a marker of another type");

    // An invalidation of the prefix sets the tag anew: all is well again.
    cache.invalidate("orders:list:*").await.unwrap();
    let filled = other
        .get_or_insert_with("orders:list:acme:p3", MIN, || async { 3u8 })
        .await;
    assert_eq!(filled, 3);
    let stored: Option<Vec<u8>> = conn.get("tag:orders:list:acme:p3").unwrap();
    assert!(
        stored.is_some(),
        "filled once the tag is a generation again"
    );
}

#[tokio::test]
async fn a_value_copied_to_another_key_is_not_served_there() {
    let server = RedisServer::start();
    let a = hybrid(&server, "copy").await;
    let b = reader(&server, "copy");
    a.set("price:1", 100u64, MIN).await;
    a.set("price:2", 200u64, MIN).await;
    let mut conn = server.connection();
    let _: () = redis::cmd("COPY")
        .arg("copy:price:1")
        .arg("copy:price:2")
        .arg("REPLACE")
        .query(&mut conn)
        .unwrap();
    assert_eq!(b.get::<u64>("price:2").await, None);
    assert_eq!(b.get::<u64>("price:1").await, Some(100));
    let stats = b.stats();
    assert_eq!(stats.l2_undecodable, 1, "{stats:?}");
    // The next fill replaces the copy.
    let filled = b
        .get_or_insert_with("price:2", MIN, || async { 201u64 })
        .await;
    assert_eq!(filled, 201);
    assert_eq!(b.get::<u64>("price:2").await, Some(201));
}

#[tokio::test]
async fn a_prefix_tag_lives_as_long_as_the_longest_value_not_a_day() {
    let server = RedisServer::start();
    let cache = hybrid(&server, "life").await;
    // The longest a value may live in Redis is a day by default.
    cache.set("orders:list:acme:p1", 1u8, MIN).await;
    cache.invalidate("orders:list:acme:*").await.unwrap();
    let pttl: i64 = redis::cmd("PTTL")
        .arg("life[t]orders:list:acme:")
        .query(&mut server.connection())
        .unwrap();
    // The longest value (a minute) plus the fill window (a minute).
    assert!(pttl > 0 && pttl <= 2 * 60_000, "the tag lives {pttl} ms");

    // A prefix longer than any key the cache takes leaves no tag.
    let deep = format!("{}:*", "x".repeat(MAX_KEY_BYTES));
    cache.invalidate(&deep).await.unwrap();
    let tags: Vec<String> = keys(&server)
        .into_iter()
        .filter(|k| k.starts_with("life[t]"))
        .collect();
    assert_eq!(tags, ["life[t]orders:list:acme:"]);
}

#[tokio::test]
async fn an_invalidation_redis_keeps_refusing_is_widened_to_a_clear() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .backend(Backend::Hybrid)
        .redis_url(server.url())
        .key_prefix("widen")
        .redis_timeout(Duration::from_secs(2))
        .breaker(1, Duration::from_millis(50))
        .build()
        .unwrap();
    assert!(cache.wait_in_sync(Duration::from_secs(10)).await);
    cache.set("order:1:lines", 1u8, MIN).await;
    cache.set("other:1", 2u8, MIN).await;

    // Redis answers, but refuses SCAN: a pattern that is neither a key nor
    // a prefix cannot be replayed.
    let acl = |rule: &str| {
        let () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("default")
            .arg(rule)
            .query(&mut server.connection())
            .unwrap();
    };
    acl("-scan");
    cache.invalidate("order:*:lines").await.unwrap();
    let mut widened = false;
    for _ in 0..400 {
        if cache.stats().invalidation_queue_overflows >= 1 {
            widened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(widened, "never widened: {:?}", cache.stats());
    acl("+scan");
    let mut replayed = false;
    for _ in 0..400 {
        if cache.stats().invalidations_pending == 0 && cache.in_sync() {
            replayed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        replayed,
        "the clear never went through: {:?}",
        cache.stats()
    );
    // The clear covered the whole namespace in Redis.
    let fresh = reader(&server, "widen");
    assert_eq!(fresh.get::<u8>("other:1").await, None);
    assert_eq!(fresh.get::<u8>("order:1:lines").await, None);
}

#[invalidates("search:*:<query>")]
async fn forget_searches_ending(query: &str) {
    let _ = query;
}

#[tokio::test]
async fn an_invalidation_made_too_costly_by_its_argument_is_widened_not_lost() {
    let server = RedisServer::start();
    let cache = hybrid(&server, "wide").await;
    let other = reader(&server, "wide");
    cache.set("search:books:rust", 1u8, MIN).await;
    cache.set("orders:1", 2u8, MIN).await;
    // 300 bytes after the `*`: more than a pattern may have
    // (`Pattern::MAX_TAIL_LEN`); what it covers is invalidated through its
    // literal prefix, `search:*`.
    let long = "r".repeat(300);
    cache.scope(forget_searches_ending(&long)).await;
    assert_eq!(cache.get::<u8>("search:books:rust").await, None);
    assert_eq!(other.get::<u8>("search:books:rust").await, None);
    assert_eq!(other.get::<u8>("orders:1").await, Some(2));
}
