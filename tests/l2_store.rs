//! The Redis L2 store against real, throwaway redis-server processes.

mod support;

use std::time::Duration;

use cache_runtime::{Codec, Deadlines, Envelope, EnvelopeError, L2Error, RedisL2, TypeFingerprint};
use redis::Commands;
use support::RedisServer;

async fn store(server: &RedisServer, namespace: &str) -> RedisL2 {
    RedisL2::builder(server.url(), namespace)
        .connect()
        .await
        .expect("connect to the test redis-server")
}

/// Polls `check` every 20 ms, at most `tries` times; true once it held.
async fn eventually<F, Fut>(tries: usize, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..tries {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn set_get_and_px_expiry() {
    let server = RedisServer::start();
    let l2 = store(&server, "app").await;

    assert_eq!(l2.get("missing").await.unwrap(), None);
    l2.set("long", b"kept", 60_000).await.unwrap();
    l2.set("short", b"gone soon", 50).await.unwrap();
    assert_eq!(l2.get("long").await.unwrap().as_deref(), Some(&b"kept"[..]));

    // The value is stored under the namespace, with a PX TTL.
    let mut raw = server.connection();
    let ttl: i64 = redis::cmd("PTTL").arg("app:long").query(&mut raw).unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");

    assert!(
        eventually(250, || async { l2.get("short").await.unwrap().is_none() }).await,
        "a 50ms value never expired"
    );
    assert!(l2.get("long").await.unwrap().is_some());

    assert!(matches!(l2.set("k", b"v", 0).await, Err(L2Error::ZeroTtl)));
    assert!(l2.ping().await.is_ok());
}

#[tokio::test]
async fn delete_and_exact_invalidation_count_what_existed() {
    let server = RedisServer::start();
    let l2 = store(&server, "app").await;
    for key in ["a", "b", "c", "odd*key"] {
        l2.set(key, b"v", 60_000).await.unwrap();
    }
    assert_eq!(l2.delete(&["a", "b", "nope"]).await.unwrap(), 2);
    assert_eq!(l2.delete(&[]).await.unwrap(), 0);
    // An escaped wildcard names one key, which is UNLINKed, not scanned.
    assert_eq!(l2.invalidate("odd\\*key").await.unwrap(), 1);
    assert_eq!(l2.invalidate("c").await.unwrap(), 1);
    assert_eq!(l2.invalidate("c").await.unwrap(), 0);
    assert!(matches!(
        l2.invalidate("[oops").await,
        Err(L2Error::Pattern(_))
    ));
}

#[tokio::test]
async fn pattern_invalidation_counts_ten_thousand_keys_in_scan_batches() {
    let server = RedisServer::start();
    let l2 = RedisL2::builder(server.url(), "app")
        .scan_count(250)
        .connect()
        .await
        .unwrap();
    let mut raw = server.connection();
    let mut pipe = redis::pipe();
    for i in 0..10_000 {
        pipe.cmd("SET")
            .arg(format!("app:orders:list:acme:p{i}"))
            .arg("v")
            .ignore();
    }
    for i in 0..100 {
        pipe.cmd("SET")
            .arg(format!("app:orders:list:globex:p{i}"))
            .arg("v")
            .ignore();
        // Same key text in another namespace: out of reach.
        pipe.cmd("SET")
            .arg(format!("other:orders:list:acme:p{i}"))
            .arg("v")
            .ignore();
    }
    pipe.query::<()>(&mut raw).unwrap();

    assert_eq!(l2.invalidate("orders:list:acme:*").await.unwrap(), 10_000);
    assert_eq!(l2.invalidate("orders:list:acme:*").await.unwrap(), 0);
    let left: u64 = redis::cmd("DBSIZE").query(&mut raw).unwrap();
    assert_eq!(left, 200);
    assert_eq!(l2.invalidate("orders:list:*:p?").await.unwrap(), 10);
    assert_eq!(l2.invalidate("*").await.unwrap(), 90);
    let other: u64 = raw.exists("other:orders:list:acme:p0").unwrap();
    assert_eq!(other, 1);
}

#[tokio::test]
async fn clear_removes_only_its_own_namespace() {
    let server = RedisServer::start();
    let a = store(&server, "a").await;
    let b = store(&server, "b").await;
    for i in 0..1_500 {
        a.set(&format!("k{i}"), b"v", 60_000).await.unwrap();
    }
    b.set("k1", b"v", 60_000).await.unwrap();
    let mut raw = server.connection();
    // Keys that share a's first letter but not its namespace.
    let _: () = raw.set("ab:k1", "v").unwrap();
    let _: () = raw.set("a-k1", "v").unwrap();
    let _: () = raw.set("a", "v").unwrap();

    assert_eq!(a.clear().await.unwrap(), 1_500);
    assert_eq!(a.clear().await.unwrap(), 0);
    assert!(b.get("k1").await.unwrap().is_some());
    let left: u64 = redis::cmd("DBSIZE").query(&mut raw).unwrap();
    assert_eq!(left, 4);
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Order {
    id: u64,
    tenant: String,
    total_cents: u64,
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Invoice {
    id: u64,
    tenant: String,
    total_cents: u64,
}

#[tokio::test]
async fn bytes_written_by_others_decode_as_typed_errors() {
    let server = RedisServer::start();
    let l2 = store(&server, "app").await;
    let env = Envelope::new(Codec::Bincode).max_bytes(4096);
    let order = Order {
        id: 1,
        tenant: "acme".into(),
        total_cents: 4200,
    };
    let good = env.encode(&order, Deadlines::new(1, 2)).unwrap();
    let mut raw = server.connection();
    let mut put = |key: &str, bytes: &[u8]| {
        let _: () = raw.set(l2.redis_key(key), bytes).unwrap();
    };

    put("good", &good);
    put("garbage", b"\x00\x01not an envelope at all");
    put("empty", b"");
    put("truncated", &good[..good.len() - 3]);
    let mut other_version = good.clone();
    other_version[2] = 99;
    put("other-version", &other_version);
    let invoice = Invoice {
        id: 1,
        tenant: "acme".into(),
        total_cents: 4200,
    };
    // Same fields, same size, another type name: refused by the fingerprint.
    put(
        "other-type",
        &env.encode(&invoice, Deadlines::new(1, 2)).unwrap(),
    );
    put(
        "too-large",
        &Envelope::new(Codec::Json)
            .encode(&"x".repeat(5000), Deadlines::new(1, 2))
            .unwrap(),
    );
    let mut corrupt_payload = good.clone();
    let last = corrupt_payload.len() - 1;
    corrupt_payload[32..last].fill(0xFD);
    put("corrupt-payload", &corrupt_payload);

    let read = |key: &'static str| {
        let l2 = l2.clone();
        async move {
            let bytes = l2.get(key).await.unwrap().expect("written above");
            env.decode::<Order>(&bytes)
        }
    };
    assert_eq!(read("good").await.unwrap().value, order);
    assert_eq!(
        read("garbage").await.unwrap_err(),
        EnvelopeError::NotAnEnvelope
    );
    assert!(matches!(
        read("empty").await,
        Err(EnvelopeError::Truncated { len: 0, .. })
    ));
    assert!(matches!(
        read("truncated").await,
        Err(EnvelopeError::Truncated { .. })
    ));
    assert!(matches!(
        read("other-version").await,
        Err(EnvelopeError::UnsupportedVersion { found: 99, .. })
    ));
    assert_eq!(
        read("other-type").await.unwrap_err(),
        EnvelopeError::TypeMismatch {
            expected: TypeFingerprint::of::<Order>(),
            found: TypeFingerprint::of::<Invoice>(),
        }
    );
    assert!(matches!(
        read("too-large").await,
        Err(EnvelopeError::TooLarge { max: 4096, .. })
    ));
    assert!(matches!(
        read("corrupt-payload").await,
        Err(EnvelopeError::Codec(_))
    ));
}

#[tokio::test]
async fn a_killed_server_is_an_error_and_a_restarted_one_is_used_again() {
    let mut server = RedisServer::start();
    let l2 = store(&server, "app").await;
    l2.set("k", b"v", 60_000).await.unwrap();
    let pid = server.pid().unwrap();

    server.kill();
    let err = l2.get("k").await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");

    server.restart();
    assert_ne!(server.pid(), Some(pid));
    // The connection comes back by itself; the new server is empty.
    assert!(
        eventually(250, || async { matches!(l2.get("k").await, Ok(None)) }).await,
        "never reconnected"
    );
    l2.set("k", b"again", 60_000).await.unwrap();
    assert_eq!(l2.get("k").await.unwrap().as_deref(), Some(&b"again"[..]));
}

#[tokio::test]
async fn a_paused_server_times_out_and_recovers() {
    let server = RedisServer::start();
    let l2 = RedisL2::builder(server.url(), "app")
        .timeout(Duration::from_millis(100))
        .connect()
        .await
        .unwrap();
    l2.set("k", b"v", 60_000).await.unwrap();

    server.pause();
    let err = l2.get("k").await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(l2.ping().await.unwrap_err().is_timeout());

    server.resume();
    assert!(
        eventually(250, || async { l2.ping().await.is_ok() }).await,
        "never answered after SIGCONT"
    );
    assert_eq!(l2.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}

#[tokio::test]
async fn a_lazy_store_starts_while_redis_is_down() {
    let mut server = RedisServer::start();
    server.kill();
    let l2 = RedisL2::builder(server.url(), "app")
        .connect_lazy()
        .unwrap();
    assert!(l2.get("k").await.unwrap_err().is_unavailable());
    // An eager connect fails at once, with a typed error.
    let err = RedisL2::builder(server.url(), "app")
        .connect()
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");

    server.restart();
    assert!(
        eventually(250, || async { l2.set("k", b"v", 60_000).await.is_ok() }).await,
        "never connected"
    );
    assert!(l2.get("k").await.unwrap().is_some());
}
