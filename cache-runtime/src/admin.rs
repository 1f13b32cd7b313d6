//! An axum router to look at a cache and act on it (the `axum` feature).
//!
//! | route | what | token |
//! |---|---|---|
//! | `GET /stats` | [`Stats`] as JSON, with the hit rates | no |
//! | `GET /health` | [`Health`](crate::Health) as JSON, `"status"` `healthy` or `degraded`; always `200`: a degraded cache still answers every call (from process and the origin), so it is no reason to take an instance out of service | no |
//! | `GET /metrics` | [`Cache::prometheus_text`] | no |
//! | `POST /invalidate?pattern=orders:list:acme:*` | [`Cache::invalidate`]: `{"removed": n}`, `400` for a malformed pattern | yes |
//! | `POST /clear` | [`Cache::clear`] | yes |
//!
//! The mutating routes need `Authorization: Bearer <token>`: without it,
//! `401`. A router made with an empty token refuses them (`403`), so that
//! an unset secret never opens them. Mount it where only operators reach
//! it, under a prefix of your choosing (`Router::nest`).
//!
//! ```
//! use cache_runtime::{admin, Cache};
//!
//! let cache = Cache::builder().build().unwrap();
//! let token = std::env::var("CACHE_ADMIN_TOKEN").unwrap_or_default();
//! let app: axum::Router = axum::Router::new().nest("/cache", admin::router(cache, token));
//! # drop(app);
//! ```

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::{Cache, Stats};

#[derive(Clone)]
struct Admin {
    cache: Cache,
    token: std::sync::Arc<str>,
}

/// The admin routes of `cache`; `token` guards those that change it (see
/// the [module](self) docs).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use axum::body::Body;
/// use axum::http::{Request, StatusCode};
/// use tower::ServiceExt;
///
/// let app = cache_runtime::admin::router(cache_runtime::Cache::builder().build().unwrap(), "s3cret");
/// let clear = |auth: &str| Request::post("/clear").header("authorization", auth).body(Body::empty()).unwrap();
/// assert_eq!(app.clone().oneshot(clear("Bearer wrong")).await.unwrap().status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(app.oneshot(clear("Bearer s3cret")).await.unwrap().status(), StatusCode::OK);
/// # });
/// ```
pub fn router(cache: Cache, token: impl Into<String>) -> Router {
    let state = Admin {
        cache,
        token: token.into().into(),
    };
    Router::new()
        .route("/stats", get(stats))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/invalidate", post(invalidate))
        .route("/clear", post(clear))
        .with_state(state)
}

fn stats_json(stats: &Stats) -> Value {
    json!({
        "hits": stats.hits,
        "misses": stats.misses,
        "hit_rate": stats.hit_rate(),
        "hit_rate_with_redis": stats.hit_rate_with_redis(),
        "loads": stats.loads,
        "sets": stats.sets,
        "deletes": stats.deletes,
        "errors": stats.errors,
        "stale_served": stats.stale_served,
        "entries": stats.entries,
        "l1_bytes": stats.l1_bytes,
        "l2_hits": stats.l2_hits,
        "l2_misses": stats.l2_misses,
        "l2_sets": stats.l2_sets,
        "l2_errors": stats.l2_errors,
        "l2_undecodable": stats.l2_undecodable,
        "l2_fills_rejected": stats.l2_fills_rejected,
        "l2_skipped": stats.l2_skipped,
        "breaker": stats.breaker.to_string(),
        "breaker_opens": stats.breaker_opens,
        "invalidations_queued": stats.invalidations_queued,
        "invalidations_pending": stats.invalidations_pending,
        "invalidation_queue_overflows": stats.invalidation_queue_overflows,
        "fail_safe_served": stats.fail_safe_served,
        "origin_timeouts": stats.origin_timeouts,
    })
}

async fn stats(State(admin): State<Admin>) -> Json<Value> {
    let mut caches = serde_json::Map::new();
    for named in admin.cache.named_caches() {
        caches.insert(named.name().to_owned(), stats_json(&named.stats()));
    }
    let mut body = stats_json(&admin.cache.stats());
    body["cache"] = json!(admin.cache.name());
    body["named"] = Value::Object(caches);
    Json(body)
}

async fn health(State(admin): State<Admin>) -> Json<Value> {
    let health = admin.cache.health().await;
    let body = json!({
        "status": health.status.to_string(),
        "backend": health.backend.name(),
        "l1_entries": health.l1_entries,
        "l1_bytes": health.l1_bytes,
        "redis_rtt_us": health.redis_rtt.map(|rtt| rtt.as_micros() as u64),
        "redis_error": health.redis_error,
        "breaker": health.breaker.map(|b| b.to_string()),
        "in_sync": health.in_sync,
        "pending_invalidations": health.pending_invalidations,
    });
    Json(body)
}

async fn metrics(State(admin): State<Admin>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        admin.cache.prometheus_text(),
    )
        .into_response()
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({ "error": message.into() }))).into_response()
}

/// `None` when the request may change the cache, else the refusal.
fn refused(admin: &Admin, headers: &HeaderMap) -> Option<Response> {
    if admin.token.is_empty() {
        return Some(error(
            StatusCode::FORBIDDEN,
            "no admin token is configured: build the router with a non-empty token",
        ));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if same(given.as_bytes(), admin.token.as_bytes()) => None,
        _ => Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(json!({ "error": "this route needs `Authorization: Bearer <token>`" })),
            )
                .into_response(),
        ),
    }
}

/// Compares in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn invalidate(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Query(mut query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(refusal) = refused(&admin, &headers) {
        return refusal;
    }
    let Some(pattern) = query.remove("pattern") else {
        return error(
            StatusCode::BAD_REQUEST,
            "give the pattern as a query parameter: /invalidate?pattern=orders:list:acme:*",
        );
    };
    match admin.cache.invalidate(&pattern).await {
        Ok(removed) => Json(json!({ "pattern": pattern, "removed": removed })).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn clear(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refused(&admin, &headers) {
        return refusal;
    }
    admin.cache.clear().await;
    Json(json!({ "cleared": admin.cache.name() })).into_response()
}
