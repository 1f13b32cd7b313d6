//! No secret in any output: every public type that holds a Redis URL or an
//! admin token, and everything a cache reports about a Redis it cannot
//! reach, rendered with `Debug` and `Display`, shows neither the password
//! nor the token.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use cache_runtime::admin::{self, RequireBearer};
use cache_runtime::{Backend, Cache, Config, Event, Hooks, RedisL2};
use http_body_util::BodyExt;
use tower::ServiceExt;

const PASSWORD: &str = "s3cret-pw";
const TOKEN: &str = "s3cret-token";

/// Every event, as `Debug` shows it.
#[derive(Default)]
struct Heard(Mutex<Vec<String>>);

impl Hooks for Heard {
    fn on_event(&self, event: &Event<'_>) {
        self.0.lock().unwrap().push(format!("{event:?}"));
    }
}

/// A loopback port nothing listens on: bound, read, and let go.
fn closed_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local address").port();
    drop(listener);
    port
}

/// Fails naming every rendering that shows the password or the token.
fn assert_no_secret(shown: &[(&str, String)]) {
    let leaks: Vec<String> = shown
        .iter()
        .filter(|(_, text)| text.contains(PASSWORD) || text.contains(TOKEN))
        .map(|(what, text)| format!("{what}: {text}"))
        .collect();
    assert!(leaks.is_empty(), "secrets shown:\n{}", leaks.join("\n"));
}

#[tokio::test]
async fn no_rendering_shows_the_password_or_the_token() {
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{}/0", closed_port());
    let mut shown: Vec<(&str, String)> = Vec::new();

    let config = Config::from_lookup(|name| match name {
        "CACHE_BACKEND" => Some("hybrid".to_owned()),
        "REDIS_URL" => Some(url.clone()),
        _ => None,
    })
    .unwrap();
    shown.push(("Config", format!("{config:?}")));

    let store = RedisL2::builder(url.as_str(), "secrets").timeout(Duration::from_millis(200));
    shown.push(("RedisL2Builder", format!("{store:?}")));
    shown.push((
        "RedisL2",
        format!("{:?}", store.clone().connect_lazy().unwrap()),
    ));

    let heard = Arc::new(Heard::default());
    let builder = Cache::builder()
        .backend(Backend::Hybrid)
        .redis_url(url.as_str())
        .key_prefix("secrets")
        .redis_timeout(Duration::from_millis(200))
        .hooks(Arc::clone(&heard));
    shown.push(("CacheBuilder", format!("{builder:?}")));
    let with_store = Cache::builder().redis(store);
    shown.push(("CacheBuilder with a store", format!("{with_store:?}")));
    let cache = builder.build().unwrap();
    shown.push(("Cache", format!("{cache:?}")));
    shown.push(("Cache::config", format!("{:?}", cache.config())));

    // What the cache says about a Redis it cannot reach.
    let err = cache.ready(Duration::from_secs(10)).await.unwrap_err();
    shown.push(("ReadyError", err.to_string()));
    shown.push(("ReadyError", format!("{err:?}")));
    let health = cache.health().await;
    shown.push(("Health", health.to_string()));
    shown.push(("Health", format!("{health:?}")));
    let invalidation = cache.invalidate_report("order:1").await.unwrap();
    shown.push(("Invalidation", invalidation.to_string()));
    shown.push(("Invalidation", format!("{invalidation:?}")));
    for event in heard.0.lock().unwrap().iter() {
        shown.push(("Event", event.clone()));
    }

    // URLs refused when the cache or the store is built.
    for bad in [
        format!("http://:{PASSWORD}@127.0.0.1:6379"),
        format!("redis://:{PASSWORD}@127.0.0.1:6379/zero"),
        format!("redis+unix:///run/redis.sock?pass={PASSWORD}"),
        format!("redis+cluster://:{PASSWORD}@127.0.0.1:7000/3"),
    ] {
        let err = Cache::builder()
            .backend(Backend::Hybrid)
            .redis_url(bad.as_str())
            .build()
            .unwrap_err();
        shown.push(("ConfigError", err.to_string()));
        shown.push(("ConfigError", format!("{err:?}")));
        let err = RedisL2::builder(bad.as_str(), "secrets")
            .connect_lazy()
            .unwrap_err();
        shown.push(("L2Error", err.to_string()));
        shown.push(("L2Error", format!("{err:?}")));
    }

    // The admin side.
    shown.push(("RequireBearer", format!("{:?}", RequireBearer::new(TOKEN))));
    let router = admin::router(cache.clone(), TOKEN);
    shown.push(("admin::router", format!("{router:?}")));
    for path in ["/health", "/stats", "/metrics"] {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        shown.push((path, String::from_utf8_lossy(&body).into_owned()));
    }

    assert_no_secret(&shown);
    // What is not secret is still shown.
    assert!(format!("{config:?}").contains("redis://***@127.0.0.1"));
}
