//! An axum router to look at a cache and act on it (the `axum` feature).
//!
//! | route | what | token |
//! |---|---|---|
//! | `GET /stats` | [`Stats`] as JSON, with the hit rates | no |
//! | `GET /health` | [`Health`](crate::Health) as JSON, `"status"` `healthy` or `degraded`; always `200`: a degraded cache still answers every call (from process and the origin), so it is no reason to take an instance out of service | no |
//! | `GET /metrics` | [`Cache::prometheus_text`] | no |
//! | `POST /invalidate?pattern=orders:list:acme:*` | [`Cache::invalidate_report`]: `{"removed": n, "local": n, "shared": {"kind": .., "removed": n}, "report": ".."}` (`removed`: keys removed in both tiers, each once; `shared.kind`: `keys`, `prefix` (uncounted), `scanned`, `queued` (Redis away: with its `reason`), or `none` without Redis), `400` for a malformed pattern | yes |
//! | `POST /invalidate?tag=product:42` | [`Cache::invalidate_tag`]: `{"tag": "..", "shared": {"kind": "tag"}}` (`queued` or `none` as above), `400` for an empty or too long tag, or for `tag` and `pattern` together | yes |
//! | `POST /clear` | [`Cache::clear`]; takes no query parameter | yes |
//! | `POST /warm`, `POST /warm?warmer=lookups` | runs every warmer now ([`Cache::run_warmer`]), or the one named: `{"warmed": {"lookups": {"stored": n, "skipped": n, "failed": n}}}`; `404` for a name no warmer has, `409` while it runs | yes |
//!
//! The mutating routes need `Authorization: Bearer <token>` (the scheme in
//! any case, as HTTP has it: `bearer <token>` too): without it, `401`. A
//! router made with an empty token refuses them (`403`), so that an unset
//! secret never opens them. Mount it where only operators reach it, under a
//! prefix of your choosing (`Router::nest`). The same check guards routes
//! of your own: [`RequireBearer`] with [`require_bearer`].
//!
//! Their query strings are read so that a proxy or an audit log in front
//! cannot read another request in them: a parameter given twice
//! (`pattern=nothing&pattern=*`), one the route does not take, a `%` not
//! followed by two hex digits, a value that is not UTF-8 once decoded
//! (`%FF`), or one longer than 4096 bytes is a `400` that says which. A
//! message quotes at most the first 64 bytes of what was sent, and its
//! length.
//!
//! ```
//! use cache_runtime::{admin, Cache};
//!
//! let cache = Cache::builder().build().unwrap();
//! let token = std::env::var("CACHE_ADMIN_TOKEN").unwrap_or_default();
//! let app: axum::Router = axum::Router::new().nest("/cache", admin::router(cache, token));
//! # drop(app);
//! ```

mod query;

use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::{Cache, SharedInvalidation, Stats};

#[derive(Clone)]
struct Admin {
    cache: Cache,
}

/// The bearer-token check of the admin router, for routes of your own:
/// with [`require_bearer`] as axum middleware
/// (`axum::middleware::from_fn_with_state`), a request passes only with
/// `Authorization: Bearer <token>` (the scheme in any case); otherwise
/// `401` with `WWW-Authenticate: Bearer`, or `403` when the token is empty
/// (an unset secret never opens a route). The token is compared in time
/// that does not depend on where it differs.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use axum::body::Body;
/// use axum::http::{Request, StatusCode};
/// use axum::middleware::from_fn_with_state;
/// use axum::routing::post;
/// use cache_runtime::admin::{require_bearer, RequireBearer};
/// use tower::ServiceExt;
///
/// let app: axum::Router = axum::Router::new()
///     .route("/reindex", post(|| async { "reindexing" }))
///     .route_layer(from_fn_with_state(RequireBearer::new("s3cret"), require_bearer));
/// let reindex = |auth: &str| Request::post("/reindex").header("authorization", auth).body(Body::empty()).unwrap();
/// assert_eq!(app.clone().oneshot(reindex("Bearer wrong")).await.unwrap().status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(app.oneshot(reindex("bearer s3cret")).await.unwrap().status(), StatusCode::OK);
/// # });
/// ```
#[derive(Clone)]
pub struct RequireBearer {
    token: std::sync::Arc<str>,
}

impl std::fmt::Debug for RequireBearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequireBearer")
            .field(
                "token",
                &if self.token.is_empty() {
                    "(empty)"
                } else {
                    "***"
                },
            )
            .finish()
    }
}

impl RequireBearer {
    /// A check that wants `token`; an empty one refuses every request.
    ///
    /// ```
    /// let guard = cache_runtime::admin::RequireBearer::new("s3cret");
    /// assert!(!format!("{guard:?}").contains("s3cret"));
    /// ```
    pub fn new(token: impl Into<String>) -> RequireBearer {
        RequireBearer {
            token: token.into().into(),
        }
    }

    /// `Ok` when `headers` carry the token, else the [`Refusal`] to answer
    /// with (`401`, or `403` for an empty token).
    ///
    /// ```
    /// use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
    /// use cache_runtime::admin::RequireBearer;
    ///
    /// let guard = RequireBearer::new("s3cret");
    /// let mut headers = HeaderMap::new();
    /// assert_eq!(guard.check(&headers).unwrap_err().status(), StatusCode::UNAUTHORIZED);
    /// headers.insert(header::AUTHORIZATION, HeaderValue::from_static("BEARER s3cret"));
    /// assert!(guard.check(&headers).is_ok());
    /// ```
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.token.is_empty() {
            return Err(Refusal::NoTokenConfigured);
        }
        match headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
        {
            Some(given) if same(given.as_bytes(), self.token.as_bytes()) => Ok(()),
            _ => Err(Refusal::Unauthorized),
        }
    }
}

/// Why [`RequireBearer::check`] refused a request; it answers as a JSON
/// error with its [`status`](Refusal::status).
///
/// ```
/// use axum::http::StatusCode;
/// use axum::response::IntoResponse;
/// use cache_runtime::admin::Refusal;
///
/// assert_eq!(Refusal::Unauthorized.status(), StatusCode::UNAUTHORIZED);
/// let response = Refusal::Unauthorized.into_response();
/// assert_eq!(response.headers()["www-authenticate"], "Bearer");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// No `Authorization: Bearer <token>`, or another token: `401`, with
    /// `WWW-Authenticate: Bearer`.
    Unauthorized,
    /// The check was made with an empty token, which opens nothing: `403`.
    NoTokenConfigured,
}

impl Refusal {
    /// The status of the answer.
    ///
    /// ```
    /// use cache_runtime::admin::Refusal;
    /// assert_eq!(Refusal::NoTokenConfigured.status(), 403);
    /// ```
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
            Refusal::NoTokenConfigured => StatusCode::FORBIDDEN,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Unauthorized => (
                self.status(),
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(json!({ "error": "this route needs `Authorization: Bearer <token>`" })),
            )
                .into_response(),
            Refusal::NoTokenConfigured => error(
                self.status(),
                "no admin token is configured: build the router with a non-empty token",
            ),
        }
    }
}

/// axum middleware: passes the request on when it carries the token of
/// `guard` (see [`RequireBearer`]), else answers with the refusal. Use it
/// with `axum::middleware::from_fn_with_state(RequireBearer::new(token),
/// require_bearer)`, as a `route_layer` of the routes to guard.
///
/// ```
/// use axum::middleware::from_fn_with_state;
/// use axum::routing::post;
/// use cache_runtime::admin::{require_bearer, RequireBearer};
///
/// let token = std::env::var("ADMIN_TOKEN").unwrap_or_default();
/// let app: axum::Router = axum::Router::new()
///     .route("/reindex", post(|| async { "reindexing" }))
///     .route_layer(from_fn_with_state(RequireBearer::new(token), require_bearer));
/// # drop(app);
/// ```
pub async fn require_bearer(
    State(guard): State<RequireBearer>,
    request: Request,
    next: Next,
) -> Response {
    match guard.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// The credentials of an `Authorization: Bearer <token>` value, the scheme
/// in any case (RFC 9110: auth schemes are case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_matches(' '))
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
    let guarded = Router::new()
        .route("/invalidate", post(invalidate))
        .route("/clear", post(clear))
        .route("/warm", post(warm))
        .route_layer(from_fn_with_state(
            RequireBearer::new(token),
            require_bearer,
        ));
    Router::new()
        .route("/stats", get(stats))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(guarded)
        .with_state(Admin { cache })
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
        "refreshes_ahead": stats.refreshes_ahead,
        "warmed": stats.warmed,
        "tag_invalidations": stats.tag_invalidations,
        "keys_too_long": stats.keys_too_long,
        "l2_corrupt": stats.l2_corrupt,
        "backplane_resyncs": stats.backplane_resyncs,
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
        "redis_master": health.redis_master,
        "redis_replicas": health.redis_replicas,
        "breaker": health.breaker.map(|b| b.to_string()),
        "in_sync": health.in_sync,
        "pending_invalidations": health.pending_invalidations,
        "warmers": health.warmers.iter().map(warmer_json).collect::<Vec<_>>(),
    });
    Json(body)
}

fn warmer_json(warmer: &crate::WarmerHealth) -> Value {
    json!({
        "name": warmer.name,
        "every_ms": warmer.every.as_millis() as u64,
        "running": warmer.running,
        "runs": warmer.runs,
        "last": warmer.last.map(report_json),
    })
}

fn report_json(report: crate::WarmReport) -> Value {
    json!({ "stored": report.stored, "skipped": report.skipped, "failed": report.failed })
}

/// `POST /warm`: runs every warmer now, or the one `?warmer=name` names.
async fn warm(State(admin): State<Admin>, RawQuery(query): RawQuery) -> Response {
    let names = match query::read(query.as_deref(), ["warmer"]) {
        Ok([Some(name)]) => vec![name],
        Ok([None]) => admin.cache.warmer_names(),
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let mut ran = serde_json::Map::new();
    for name in names {
        match admin.cache.run_warmer(&name).await {
            Ok(report) => {
                ran.insert(name, report_json(report));
            }
            Err(e @ crate::WarmerError::Unknown(_)) => {
                return error(StatusCode::NOT_FOUND, e.to_string())
            }
            Err(e) => return error(StatusCode::CONFLICT, e.to_string()),
        }
    }
    Json(json!({ "warmed": ran })).into_response()
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

/// Compares in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn invalidate(State(admin): State<Admin>, RawQuery(query): RawQuery) -> Response {
    let pattern = match query::read(query.as_deref(), ["pattern", "tag"]) {
        Ok([Some(pattern), None]) => pattern,
        Ok([None, Some(tag)]) => return invalidate_tag(&admin.cache, tag).await,
        Ok([None, None]) => {
            return error(
                StatusCode::BAD_REQUEST,
                "give the pattern or the tag as a query parameter: /invalidate?pattern=orders:list:acme:* or /invalidate?tag=product:42",
            )
        }
        Ok([Some(_), Some(_)]) => {
            return error(
                StatusCode::BAD_REQUEST,
                "give a pattern or a tag, not both: one invalidation per call",
            )
        }
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    match admin.cache.invalidate_report(&pattern).await {
        Ok(report) => Json(json!({
            "pattern": pattern,
            "removed": report.removed,
            "local": report.local,
            "shared": shared_json(&report.shared),
            "report": report.to_string(),
        }))
        .into_response(),
        // The error quotes the pattern's start only.
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn invalidate_tag(cache: &Cache, tag: String) -> Response {
    match cache.invalidate_tag(&tag).await {
        Ok(shared) => Json(json!({ "tag": tag, "shared": shared_json(&shared) })).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// How the shared tier took an invalidation, as the route reports it.
fn shared_json(shared: &SharedInvalidation) -> serde_json::Value {
    match shared {
        SharedInvalidation::Keys(n) => json!({ "kind": "keys", "removed": n }),
        SharedInvalidation::Prefix(prefix) => {
            json!({ "kind": "prefix", "removed": null, "prefix": prefix })
        }
        SharedInvalidation::Scanned(n) => json!({ "kind": "scanned", "removed": n }),
        SharedInvalidation::Tag(_) => json!({ "kind": "tag", "removed": null }),
        SharedInvalidation::Queued(reason) => {
            json!({ "kind": "queued", "removed": null, "reason": reason })
        }
        _ => json!({ "kind": "none", "removed": null }),
    }
}

async fn clear(State(admin): State<Admin>, RawQuery(query): RawQuery) -> Response {
    if let Err(why) = query::read(query.as_deref(), []) {
        return error(StatusCode::BAD_REQUEST, why);
    }
    admin.cache.clear().await;
    Json(json!({ "cleared": admin.cache.name() })).into_response()
}
