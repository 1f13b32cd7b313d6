//! The orders service: settings, the application and its layers. The
//! example's `main.rs` runs it; `tests/orders.rs` builds it the same way.

pub mod caching;
pub mod db;
pub mod http;
pub mod model;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, Request};
use axum::Router;
use cache_runtime::conditional::ConditionalGetLayer;
use cache_runtime::Cache;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use db::Db;
use http::AppState;
use model::{DbError, Tenant};

/// What the service reads from its environment (the cache reads its own
/// `CACHE_*` settings through `Config::from_env`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// `DATABASE_URL`: `sqlite://<file>?mode=rwc` (default: `cache-orders.db`
    /// in the temporary directory) or `postgres://..`.
    pub database_url: String,
    /// `DATABASE_SCHEMA`: PostgreSQL's tables in a schema of their own.
    pub schema: Option<String>,
    /// `ORDERS_TENANTS`: the tenants seeded (comma-separated).
    pub tenants: Vec<Tenant>,
    /// `ORDERS_SEED_SCALE`: 200 customers, 500 products and 1,000 orders per
    /// tenant, times this.
    pub seed_scale: u32,
    /// `CACHE_ADMIN_TOKEN`: the bearer token of `/cache/invalidate`,
    /// `/cache/clear` and `/cache/warm` (empty: they answer 403).
    pub admin_token: String,
    /// `ORDERS_WARM_EVERY`: how often the lookups are warmed again.
    pub warm_every: Duration,
    /// `PORT` (default 3000) on `BIND` (default 127.0.0.1).
    pub listen: String,
}

impl Settings {
    pub fn from_env() -> Result<Settings, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let database_url = var("DATABASE_URL").unwrap_or_else(|| {
            let file = std::env::temp_dir().join("cache-orders.db");
            format!("sqlite://{}?mode=rwc", file.display())
        });
        let tenants = var("ORDERS_TENANTS")
            .unwrap_or_else(|| "acme,globex,initech".into())
            .split(',')
            .map(|t| Tenant::parse(t.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("ORDERS_TENANTS: {e}"))?;
        let seed_scale = match var("ORDERS_SEED_SCALE") {
            None => 5,
            Some(v) => v
                .parse()
                .map_err(|_| format!("ORDERS_SEED_SCALE {v:?}: write a whole number"))?,
        };
        let warm_every = match var("ORDERS_WARM_EVERY") {
            None => Duration::from_secs(300),
            Some(v) => v
                .strip_suffix('s')
                .and_then(|n| n.parse().ok())
                .map(Duration::from_secs)
                .ok_or_else(|| format!("ORDERS_WARM_EVERY {v:?}: write seconds, as 300s"))?,
        };
        let port = var("PORT").unwrap_or_else(|| "3000".into());
        let bind = var("BIND").unwrap_or_else(|| "127.0.0.1".into());
        Ok(Settings {
            database_url,
            schema: var("DATABASE_SCHEMA"),
            tenants,
            seed_scale,
            admin_token: var("CACHE_ADMIN_TOKEN").unwrap_or_default(),
            warm_every,
            listen: format!("{bind}:{port}"),
        })
    }
}

/// Opens the database, warms the lookups, starts their warmer and builds
/// the application on `cache`.
pub async fn app(settings: &Settings, cache: Cache) -> Result<(Router, Arc<Db>), DbError> {
    let db = Arc::new(
        Db::open(
            &settings.database_url,
            settings.schema.as_deref(),
            &settings.tenants,
            settings.seed_scale,
        )
        .await?,
    );
    let report = caching::warm_lookups(&cache, Arc::clone(&db)).await;
    tracing::info!(
        stored = report.stored,
        failed = report.failed,
        "lookups warmed"
    );
    caching::add_lookup_warmer(&cache, Arc::clone(&db), settings.warm_every);
    let state = AppState {
        db: Arc::clone(&db),
        cache: cache.clone(),
    };
    let request_id = HeaderName::from_static("x-request-id");
    let app = http::routes(state)
        .nest(
            "/cache",
            cache_runtime::admin::router(cache, settings.admin_token.clone()),
        )
        .layer(ConditionalGetLayer::new().cache_control("private, no-cache"))
        // The last layer is the outermost: every request gets an id, its
        // span carries it (and so does every log line inside, the cache's
        // own included), and the answer sends it back.
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let id = request
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", method = %request.method(), uri = %request.uri(), request_id = %id)
            }),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid));
    Ok((app, db))
}
