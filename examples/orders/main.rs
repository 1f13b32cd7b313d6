//! An orders service on a real database, cached with `#[cached]` and
//! `#[invalidates]`: the library used the way it is meant to be.
//!
//! ```sh
//! cargo run --release --example orders
//! ```
//!
//! It needs no set-up: SQLite in a file of the temporary directory,
//! created and seeded at start, and the in-memory cache. `DATABASE_URL`
//! picks PostgreSQL instead (`postgres://127.0.0.1/test`), and the
//! `CACHE_*` variables the cache (`CACHE_BACKEND=hybrid REDIS_URL=..` for
//! several instances sharing Redis, `CACHE_ENABLED=false` for none): see
//! `service::Settings` for the service's own. Logs are JSON lines on
//! standard output, each with its request's id (`RUST_LOG` filters them).
//!
//! ```sh
//! curl -H 'x-tenant: acme' localhost:3000/orders/1
//! curl -H 'x-tenant: acme' -X POST localhost:3000/orders/1/state -H 'content-type: application/json' -d '{"state_id": 4}'
//! curl localhost:3000/metrics
//! ```
//!
//! `cargo run --release --example orders-load` drives it over HTTP and
//! prints what the cache changes.

mod service;

use cache_runtime::{Cache, CacheBuilder, Config};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    if let Err(e) = run().await {
        tracing::error!(error = %e, "orders: cannot start");
        eprintln!("orders: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let settings = service::Settings::from_env()?;
    // Built here rather than on first use, so that a setting the cache
    // cannot use stops the service at start with the variable's name.
    let cache = CacheBuilder::from_config(Config::from_env()?).build()?;
    if cache.set_global().is_err() {
        return Err("the global cache was already in use".into());
    }
    let cache = Cache::global().clone();
    let (app, _db) = service::app(&settings, cache.clone()).await?;
    // Under CACHE_BACKEND=hybrid, serve from process only once subscribed
    // to the other instances' invalidations (it serves from the database
    // and Redis meanwhile, so this is a wait for hit rate, not for
    // correctness).
    if !cache.wait_in_sync(std::time::Duration::from_secs(5)).await {
        tracing::warn!("not in step with the other instances after 5 s: serving anyway");
    }
    let listener = tokio::net::TcpListener::bind(&settings.listen).await?;
    let health = cache.health().await;
    tracing::info!(
        addr = %listener.local_addr()?,
        backend = ?health.backend,
        database = settings.database_url.split('?').next().unwrap_or(""),
        "listening"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
