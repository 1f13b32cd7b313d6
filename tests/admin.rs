//! The admin router (`axum` feature) driven as an HTTP client drives it:
//! requests through the router as a service, answers read as JSON or text.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cache_runtime::{admin, cached, Cache};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

mod support;

const TOKEN: &str = "s3cret-token";

#[cached(ttl = "1h", key = "orders:list:<tenant>:p<page>")]
async fn list(tenant: &str, page: u32) -> Vec<u32> {
    vec![page]
}

/// Sends `request`; the status and the body as text.
async fn send(app: &axum::Router, request: Request<Body>) -> (StatusCode, String) {
    let response = app
        .clone()
        .oneshot(request)
        .await
        .expect("the router answers");
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn post(uri: &str, token: Option<&str>) -> Request<Body> {
    let mut request = Request::post(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body(Body::empty()).unwrap()
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn reads_are_open_and_report_the_cache() {
    let cache = Cache::builder().build().unwrap();
    let app = admin::router(cache.clone(), TOKEN);
    cache
        .scope(async {
            list("acme", 1).await;
            list("acme", 1).await;
        })
        .await;

    let (status, body) = send(&app, get("/stats")).await;
    assert_eq!(status, StatusCode::OK);
    let stats = json(&body);
    assert_eq!(
        (stats["hits"].as_u64(), stats["misses"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(stats["entries"], 1);
    assert_eq!(stats["hit_rate"], 0.5);
    assert_eq!(stats["cache"], "default");

    let (status, body) = send(&app, get("/health")).await;
    assert_eq!(status, StatusCode::OK);
    let health = json(&body);
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["backend"], "memory");
    assert_eq!(health["l1_entries"], 1);

    let (status, body) = send(&app, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains(
            r#"cache_hits_total{cache="default",template="orders:list:<tenant>:p<page>",tier="l1"} 1"#
        ),
        "{body}"
    );
}

#[tokio::test]
async fn invalidate_and_clear_need_the_token() {
    let cache = Cache::builder().build().unwrap();
    let app = admin::router(cache.clone(), TOKEN);
    let ttl = Duration::from_secs(60);
    for page in 0..5 {
        cache
            .set(&format!("orders:list:acme:p{page}"), page, ttl)
            .await;
    }
    cache.set("orders:list:globex:p0", 0u32, ttl).await;

    for token in [None, Some("wrong"), Some("s3cret-toke")] {
        let (status, body) = send(&app, post("/invalidate?pattern=*", token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}: {body}");
        assert!(json(&body)["error"].as_str().unwrap().contains("Bearer"));
        let (status, _) = send(&app, post("/clear", token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(cache.stats().entries, 6, "a refused call changed nothing");

    let (status, body) = send(
        &app,
        post("/invalidate?pattern=orders:list:acme:*", Some(TOKEN)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = json(&body);
    assert_eq!(
        (answer["removed"].clone(), answer["local"].clone()),
        (5.into(), 5.into())
    );
    assert_eq!(answer["shared"]["kind"], "none", "{body}");
    assert!(cache.exists("orders:list:globex:p0").await);
    assert!(!cache.exists("orders:list:acme:p3").await);

    let (status, body) = send(&app, post("/invalidate?pattern=orders:[acme", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("never closed"),
        "{body}"
    );
    let (status, body) = send(&app, post("/invalidate", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("?pattern="), "{body}");

    // By tag.
    let tagged = || async {
        cache_runtime::context::tag("brand:7");
        7u32
    };
    cache.get_or_insert_with("brand-page:7", ttl, tagged).await;
    let (status, body) = send(&app, post("/invalidate?tag=brand:7", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(cache.exists("brand-page:7").await);
    let (status, body) = send(&app, post("/invalidate?tag=brand%3A7", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["tag"], "brand:7", "{body}");
    assert_eq!(json(&body)["shared"]["kind"], "none", "{body}");
    assert!(!cache.exists("brand-page:7").await);
    assert_eq!(cache.stats().tag_invalidations, 1);
    let (status, body) = send(&app, post("/invalidate?tag=", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("empty"), "{body}");
    let (status, body) = send(&app, post("/invalidate?tag=a&pattern=*", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("not both"), "{body}");
    assert!(
        cache.exists("orders:list:globex:p0").await,
        "nothing else was invalidated"
    );

    let (status, _) = send(&app, post("/clear", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cache.stats().entries, 0);
}

#[tokio::test]
async fn an_empty_token_never_opens_the_mutating_routes() {
    let cache = Cache::builder().build().unwrap();
    cache.set("k", 1u8, Duration::from_secs(60)).await;
    let app = admin::router(cache.clone(), "");
    for token in [None, Some("")] {
        let (status, body) = send(&app, post("/clear", token)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    assert!(cache.exists("k").await);
    assert_eq!(send(&app, get("/stats")).await.0, StatusCode::OK);
}

fn post_with(uri: &str, authorization: &str) -> Request<Body> {
    Request::post(uri)
        .header("authorization", authorization)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let cache = Cache::builder().build().unwrap();
    let app = admin::router(cache.clone(), TOKEN);
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        cache.set("k", 1u8, Duration::from_secs(60)).await;
        let (status, body) = send(&app, post_with("/clear", &format!("{scheme} {TOKEN}"))).await;
        assert_eq!(status, StatusCode::OK, "{scheme}: {body}");
        assert!(!cache.exists("k").await, "{scheme}");
    }
    // The token itself is compared exactly, and another scheme is no bearer.
    cache.set("k", 1u8, Duration::from_secs(60)).await;
    for authorization in [
        format!("bearer {}", TOKEN.to_uppercase()),
        format!("Basic {TOKEN}"),
        format!("bearer{TOKEN}"),
        TOKEN.to_owned(),
    ] {
        let (status, _) = send(&app, post_with("/clear", &authorization)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization}");
    }
    assert!(cache.exists("k").await);
}

#[tokio::test]
async fn require_bearer_guards_a_route_of_ones_own() {
    use axum::middleware::from_fn_with_state;
    use axum::routing::{get as get_route, post as post_route};
    use cache_runtime::admin::{require_bearer, RequireBearer};

    let guarded = |token: &str| -> axum::Router {
        axum::Router::new()
            .route("/reindex", post_route(|| async { "reindexing" }))
            .route_layer(from_fn_with_state(
                RequireBearer::new(token),
                require_bearer,
            ))
            .route("/open", get_route(|| async { "open" }))
    };
    let app = guarded(TOKEN);

    let response = app.clone().oneshot(post("/reindex", None)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let (status, _) = send(&app, post("/reindex", Some("wrong"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = send(&app, post("/reindex", Some(TOKEN))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "reindexing"));
    let (status, _) = send(&app, post_with("/reindex", &format!("bearer {TOKEN}"))).await;
    assert_eq!(status, StatusCode::OK);
    // Routes added after the layer are not guarded.
    let (status, body) = send(&app, get("/open")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "open"));
    // An empty token opens nothing.
    let (status, _) = send(&guarded(""), post("/reindex", Some(""))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// With Redis paused, the route says the shared part was only queued, not
/// that the keys are gone everywhere.
#[tokio::test]
async fn the_invalidate_route_says_when_redis_only_queued_it() {
    let server = support::RedisServer::start();
    let cache = Cache::builder()
        .backend(cache_runtime::Backend::Hybrid)
        .redis_url(server.url())
        .key_prefix("admin")
        .redis_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    assert!(cache.wait_in_sync(Duration::from_secs(10)).await);
    let app = admin::router(cache.clone(), TOKEN);
    for page in 0..3 {
        cache
            .set(
                &format!("orders:list:acme:p{page}"),
                page,
                Duration::from_secs(60),
            )
            .await;
    }
    let (status, body) = send(
        &app,
        post("/invalidate?pattern=orders:list:acme:p1", Some(TOKEN)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = json(&body);
    assert_eq!(answer["shared"]["kind"], "keys", "{body}");
    assert_eq!(answer["shared"]["removed"], 1, "{body}");
    assert_eq!(answer["removed"], 1, "{body}");

    server.pause();
    let (status, body) = send(
        &app,
        post("/invalidate?pattern=orders:list:acme:*", Some(TOKEN)),
    )
    .await;
    server.resume();
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = json(&body);
    assert_eq!(answer["shared"]["kind"], "queued", "{body}");
    assert!(
        answer["shared"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    assert!(
        answer["report"].as_str().unwrap().contains("queued"),
        "{body}"
    );
}

/// Sends an authorized `POST uri`; the status and the `"error"` of the answer.
async fn refused(app: &axum::Router, uri: &str) -> (StatusCode, String) {
    let (status, body) = send(app, post(uri, Some(TOKEN))).await;
    let error = json(&body)["error"].as_str().unwrap_or_default().to_owned();
    (status, error)
}

/// A cache with `orders:list:acme:p0..p2`, and its admin router.
async fn three_orders() -> (Cache, axum::Router) {
    let cache = Cache::builder().build().unwrap();
    for page in 0..3 {
        cache
            .set(
                &format!("orders:list:acme:p{page}"),
                page,
                Duration::from_secs(60),
            )
            .await;
    }
    let app = admin::router(cache.clone(), TOKEN);
    (cache, app)
}

#[tokio::test]
async fn a_repeated_pattern_is_refused_whatever_its_order() {
    let (cache, app) = three_orders().await;
    for uri in [
        "/invalidate?pattern=nothing&pattern=*",
        "/invalidate?pattern=*&pattern=nothing",
        "/invalidate?pattern=*&pattern=*",
    ] {
        let (status, error) = refused(&app, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {error}");
        assert!(
            error.contains("`pattern` is given more than once"),
            "{uri}: {error}"
        );
    }
    assert_eq!(cache.stats().entries, 3, "nothing was invalidated");
}

#[tokio::test]
async fn a_pattern_that_does_not_decode_is_refused() {
    let (cache, app) = three_orders().await;
    let (status, error) = refused(&app, "/invalidate?pattern=orders%FF*").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(error.contains("`pattern` is not UTF-8"), "{error}");
    let (status, error) = refused(&app, "/invalidate?pattern=orders%2*").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(error.contains("two hex digits"), "{error}");
    assert_eq!(cache.stats().entries, 3, "nothing was invalidated");

    // What does decode is taken as forms have it: `%3A` is `:`, `%2A` `*`.
    let (status, body) = send(
        &app,
        post(
            "/invalidate?pattern=orders%3Alist%3Aacme%3A%2A",
            Some(TOKEN),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["removed"], 3, "{body}");
}

#[tokio::test]
async fn a_pattern_above_4096_bytes_is_refused_and_not_echoed() {
    let (cache, app) = three_orders().await;
    let long = format!("orders:{}*", "a".repeat(5000));
    let (status, error) = refused(&app, &format!("/invalidate?pattern={long}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(
        error.contains("longer than 4096 bytes") && error.contains("(5008 bytes)"),
        "{error}"
    );
    assert!(
        !error.contains(&"a".repeat(65)),
        "echoes the pattern: {error}"
    );
    assert_eq!(cache.stats().entries, 3, "nothing was invalidated");

    // At the limit, it is a pattern like any other.
    let longest = format!("orders:list:acme:{}", "?".repeat(4096 - 17));
    let (status, body) = send(
        &app,
        post(&format!("/invalidate?pattern={longest}"), Some(TOKEN)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_malformed_pattern_is_quoted_by_its_start_and_length() {
    let (_cache, app) = three_orders().await;
    let unclosed = format!("orders:[{}", "a".repeat(1000));
    let (status, error) = refused(&app, &format!("/invalidate?pattern={unclosed}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(
        error.contains("never closed") && error.contains("(its first 64 of 1008 bytes)"),
        "{error}"
    );
    assert!(
        !error.contains(&"a".repeat(65)),
        "echoes the pattern: {error}"
    );
}

#[tokio::test]
async fn the_mutating_routes_refuse_parameters_they_do_not_take() {
    let (cache, app) = three_orders().await;
    let (status, error) = refused(&app, "/invalidate?pattern=orders:*&tenant=acme").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(
        error.contains("unknown query parameter `tenant`: this route takes `pattern`"),
        "{error}"
    );
    // A clear that looks scoped is not taken for a clear of everything.
    let (status, error) = refused(&app, "/clear?pattern=orders:list:acme:*").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(error.contains("takes no query parameter"), "{error}");
    let huge = "x".repeat(10_000);
    let (status, error) = refused(&app, &format!("/clear?{huge}=1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(!error.contains(&"x".repeat(65)), "echoes the name: {error}");
    assert_eq!(cache.stats().entries, 3, "nothing was invalidated");

    // Without the token, the answer is 401 whatever the query.
    let (status, _) = send(&app, post("/clear?pattern=*&pattern=x", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
