//! What a cache says when its Redis cannot be used: each cause named as
//! what it is (refused, authentication, no such database, a cluster node
//! behind a single-server URL, TLS), in `Cache::ready`, in `health()` and
//! through the hooks, never as a timeout it is not; and never with the
//! password. Each against a real, throwaway redis-server.

mod support;

use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_runtime::{
    cached, Backend, Cache, Event, HealthStatus, Hooks, L2Error, L2ErrorKind, ReadyError,
};
use serde::{Deserialize, Serialize};
use support::{RedisCluster, RedisServer};

/// Long enough for any check to finish: a failing one fails well before.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// The server's password in the authentication tests.
const PASSWORD: &str = "pw-s3cret-7f2c";
/// A wrong one.
const WRONG: &str = "pw-guess-91ad";

/// Each `L2Error` event: the op, the error's kind, its Display and Debug.
#[derive(Default)]
struct Errors(Mutex<Vec<(String, L2ErrorKind, String, String)>>);

impl Hooks for Errors {
    fn on_event(&self, event: &Event<'_>) {
        if let Event::L2Error { op, error } = event {
            let kind = error
                .downcast_ref::<L2Error>()
                .map_or(L2ErrorKind::Command, L2Error::kind);
            self.0.lock().unwrap().push((
                op.to_string(),
                kind,
                error.to_string(),
                format!("{error:?}"),
            ));
        }
    }
}

impl Errors {
    fn all(&self) -> Vec<(String, L2ErrorKind, String, String)> {
        self.0.lock().unwrap().clone()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Item {
    id: u64,
}

#[cached(ttl = "1m", key = "item:<id>")]
async fn item(id: u64) -> Item {
    Item { id }
}

fn hybrid(url: &str) -> (Cache, Arc<Errors>) {
    let errors = Arc::new(Errors::default());
    let cache = Cache::builder()
        .backend(Backend::Hybrid)
        .redis_url(url)
        .key_prefix("errs")
        .hooks(Arc::clone(&errors))
        .build()
        .expect("building a cache never connects");
    (cache, errors)
}

/// A loopback port nothing listens on: bound, read, and let go.
fn closed_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local address").port();
    drop(listener);
    port
}

/// Checks `cache` against a Redis that cannot be used for `kind`: `ready()`
/// fails with that kind, `health()` names it with `says`, and what the
/// hooks heard is of that kind too. Returns every message seen.
async fn fails_as(cache: &Cache, errors: &Errors, kind: L2ErrorKind, says: &str) -> Vec<String> {
    let err = cache.ready(READY_WITHIN).await.unwrap_err();
    assert_eq!(err.kind(), kind, "{err}");
    assert!(matches!(err, ReadyError::Redis(_)), "{err:?}");
    assert!(err.to_string().contains(says), "{err}");
    let health = cache.health().await;
    assert_eq!(health.status, HealthStatus::Degraded);
    let redis_error = health.redis_error.clone().expect("a reason");
    assert!(redis_error.contains(says), "{redis_error}");
    assert!(!redis_error.contains("timed out"), "{redis_error}");
    let heard = errors.all();
    assert!(!heard.is_empty());
    for (op, heard_kind, display, _) in &heard {
        assert_eq!(*heard_kind, kind, "{op}: {display}");
    }
    let mut messages = vec![err.to_string(), format!("{err:?}"), redis_error];
    messages.push(health.to_string());
    messages.push(format!("{health:?}"));
    for (_, _, display, debug) in heard {
        messages.push(display);
        messages.push(debug);
    }
    messages
}

#[tokio::test]
async fn a_healthy_server_is_ready() {
    let server = RedisServer::start();
    let (cache, errors) = hybrid(&server.url());
    cache.ready(READY_WITHIN).await.expect("ready");
    // Subscribed to the backplane, too.
    assert!(cache.in_sync());
    let health = cache.health().await;
    assert_eq!(health.status, HealthStatus::Healthy, "{health}");
    assert_eq!(health.redis_error, None);
    assert!(errors.all().is_empty());
}

#[tokio::test]
async fn a_refused_connection_says_so_at_once() {
    let url = format!("redis://127.0.0.1:{}/0", closed_port());
    let (cache, errors) = hybrid(&url);
    // Calls still answer, from the origin, and their failures name the
    // cause instead of waiting out the timeout.
    for id in 0..3 {
        assert_eq!(cache.scope(item(id)).await, Item { id });
    }
    let heard = errors.all();
    assert!(!heard.is_empty(), "no L2Error event");
    for (op, kind, display, _) in &heard {
        assert_eq!(*kind, L2ErrorKind::Refused, "{op}: {display}");
        assert!(display.contains("connection refused"), "{display}");
        assert!(!display.contains("timed out"), "{display}");
    }
    let messages = fails_as(&cache, &errors, L2ErrorKind::Refused, "connection refused").await;
    assert!(
        messages.iter().all(|m| !m.contains("Timeout")),
        "{messages:?}"
    );
}

#[tokio::test]
async fn a_missing_password_is_an_authentication_error() {
    let server = RedisServer::start_with_args(&["--requirepass", PASSWORD]);
    let (cache, errors) = hybrid(&format!("redis://127.0.0.1:{}/0", server.port()));
    let messages = fails_as(&cache, &errors, L2ErrorKind::Auth, "authentication").await;
    for message in messages {
        assert!(!message.contains(PASSWORD), "{message}");
    }
}

#[tokio::test]
async fn a_wrong_password_is_an_authentication_error_without_the_password() {
    let server = RedisServer::start_with_args(&["--requirepass", PASSWORD]);
    let url = format!("redis://:{WRONG}@127.0.0.1:{}/0", server.port());
    let (cache, errors) = hybrid(&url);
    cache.scope(item(1)).await;
    let mut messages = fails_as(&cache, &errors, L2ErrorKind::Auth, "authentication failed").await;
    messages.push(format!("{cache:?}"));
    for message in messages {
        assert!(!message.contains(WRONG), "{message}");
        assert!(!message.contains(PASSWORD), "{message}");
    }
    // The right one works.
    let (cache, _) = hybrid(&server.url());
    cache
        .ready(READY_WITHIN)
        .await
        .expect("ready with the password");
}

#[tokio::test]
async fn a_database_out_of_range_is_no_such_database() {
    let server = RedisServer::start();
    let (cache, errors) = hybrid(&format!("redis://127.0.0.1:{}/99", server.port()));
    let messages = fails_as(
        &cache,
        &errors,
        L2ErrorKind::NoSuchDatabase,
        "no such database",
    )
    .await;
    assert!(messages[0].contains("database 99"), "{}", messages[0]);
}

#[tokio::test]
async fn tls_to_a_plain_port_is_a_tls_error() {
    let server = RedisServer::start();
    let url = format!("rediss://127.0.0.1:{}/0#insecure", server.port());
    let (cache, errors) = hybrid(&url);
    let messages = fails_as(&cache, &errors, L2ErrorKind::Tls, "plain text").await;
    assert!(messages[0].contains("use redis://"), "{}", messages[0]);
}

#[tokio::test]
async fn plain_text_to_a_tls_port_is_a_tls_error() {
    let server = RedisServer::start_tls();
    let url = format!("redis://127.0.0.1:{}/0", server.tls_port());
    let (cache, errors) = hybrid(&url);
    let messages = fails_as(&cache, &errors, L2ErrorKind::Tls, "TLS").await;
    assert!(messages[0].contains("rediss://"), "{}", messages[0]);
    // The same server over TLS is ready.
    let (cache, _) = hybrid(&server.tls_url());
    cache.ready(READY_WITHIN).await.expect("ready over TLS");
}

#[tokio::test]
async fn a_cluster_node_given_as_a_single_server_says_so() {
    let cluster = RedisCluster::start(3);
    let (cache, errors) = hybrid(&cluster.nodes[0].url());
    let err = cache.ready(READY_WITHIN).await.unwrap_err();
    assert_eq!(err.kind(), L2ErrorKind::ClusterNotDeclared, "{err}");
    assert!(err.to_string().contains("redis+cluster://"), "{err}");
    let health = cache.health().await;
    let redis_error = health.redis_error.expect("a reason");
    assert!(redis_error.contains("redis+cluster://"), "{redis_error}");
    // Calls on keys of other nodes' slots are redirected: reported as the
    // same cause, not as a command error.
    for id in 0..8 {
        assert_eq!(cache.scope(item(id)).await, Item { id });
    }
    let heard = errors.all();
    assert!(
        heard
            .iter()
            .any(|(op, kind, _, _)| op != "READY" && *kind == L2ErrorKind::ClusterNotDeclared),
        "{heard:?}"
    );
    for (op, kind, display, _) in heard {
        assert_eq!(kind, L2ErrorKind::ClusterNotDeclared, "{op}: {display}");
    }
    // Through the cluster client it is ready.
    let (cache, _) = hybrid(&cluster.url());
    cache.ready(READY_WITHIN).await.expect("ready as a cluster");
}

#[tokio::test]
async fn an_eager_connect_checks_the_password_too() {
    use cache_runtime::RedisL2;
    let server = RedisServer::start_with_args(&["--requirepass", PASSWORD]);
    // The server accepts a connection without a password, and refuses its
    // commands: connect says so instead of handing out a store that fails.
    let url = format!("redis://127.0.0.1:{}/0", server.port());
    let err = RedisL2::builder(url, "errs").connect().await.unwrap_err();
    assert_eq!(err.kind(), L2ErrorKind::Auth, "{err}");
    let l2 = RedisL2::builder(server.url(), "errs").connect().await;
    assert!(l2.is_ok(), "{:?}", l2.err());
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_error() {
    let server = RedisServer::start_tls();
    // Without `#insecure`, the test server's self-signed certificate is
    // checked against the system's roots, and fails.
    let url = format!("rediss://127.0.0.1:{}/0", server.tls_port());
    let (cache, errors) = hybrid(&url);
    let messages = fails_as(&cache, &errors, L2ErrorKind::Tls, "certificate").await;
    assert!(
        messages[0].contains("TLS with 127.0.0.1"),
        "{}",
        messages[0]
    );
}
