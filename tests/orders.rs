//! The orders service (`examples/orders`) over HTTP on loopback, against
//! SQLite and PostgreSQL: reads are cached, each write invalidates what it
//! changed, tenants never see each other's data, and two instances on one
//! Redis see each other's writes.
//!
//! PostgreSQL: `ORDERS_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`, as machines of this kind run
//! it); each test's tables go in a schema of its own, dropped at the end.

#[allow(dead_code)]
#[path = "../examples/orders/service/mod.rs"]
mod service;
mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_runtime::Cache;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use service::db::Db;
use service::model::Tenant;
use service::Settings;
use sqlx::Executor;
use support::{hybrid, synced, RedisServer};

const TOKEN: &str = "test-admin-token";

fn postgres_url() -> String {
    std::env::var("ORDERS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A name no other test of this run, nor another run, uses.
fn unique(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{what}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn sqlite_settings() -> Settings {
    let file = std::env::temp_dir().join(format!("{}.db", unique("cache-orders-test")));
    settings(format!("sqlite://{}?mode=rwc", file.display()), None)
}

fn settings(database_url: String, schema: Option<String>) -> Settings {
    Settings {
        database_url,
        schema,
        tenants: vec![
            Tenant::parse("acme").unwrap(),
            Tenant::parse("globex").unwrap(),
        ],
        seed_scale: 1,
        admin_token: TOKEN.into(),
        warm_every: Duration::from_secs(300),
        listen: "127.0.0.1:0".into(),
    }
}

/// One instance of the service, on a port of its own.
struct Service {
    base: String,
    db: Arc<Db>,
    http: reqwest::Client,
}

impl Service {
    async fn start(settings: &Settings, cache: Cache) -> Service {
        let (app, db) = service::app(settings, cache).await.expect("the service");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Service {
            base,
            db,
            http: reqwest::Client::new(),
        }
    }

    fn request(&self, method: Method, tenant: &str, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        if tenant.is_empty() {
            request
        } else {
            request.header("x-tenant", tenant)
        }
    }

    async fn call(
        &self,
        method: Method,
        tenant: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.request(method, tenant, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.expect("an answer");
        let status = answer.status();
        let text = answer.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, tenant: &str, path: &str) -> Value {
        let (status, body) = self.call(Method::GET, tenant, path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path} as {tenant}: {body}");
        body
    }

    async fn status(
        &self,
        method: Method,
        tenant: &str,
        path: &str,
        body: Option<Value>,
    ) -> StatusCode {
        self.call(method, tenant, path, body).await.0
    }

    /// `GET path` answered without a statement to the database.
    async fn get_cached(&self, tenant: &str, path: &str) -> Value {
        let before = self.db.queries();
        let body = self.get(tenant, path).await;
        assert_eq!(self.db.queries(), before, "GET {path} went to the database");
        body
    }
}

async fn drop_schema(schema: &str) {
    let pool = sqlx::AnyPool::connect(&postgres_url()).await.unwrap();
    pool.execute(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str())
        .await
        .unwrap();
}

/// Reads cached, writes invalidating exactly what they change, conditional
/// GET, metrics, request ids and the admin router: the service as a client
/// meets it, on any database.
async fn reads_are_cached_and_writes_invalidate(settings: Settings) {
    let service = Service::start(&settings, Cache::builder().build().unwrap()).await;
    let acme = "acme";

    // Lookups were warmed at start.
    let countries = service.get_cached(acme, "/lookups/countries").await;
    assert_eq!(countries.as_array().unwrap().len(), 7);

    // An order, read twice: one query.
    let order = service.get(acme, "/orders/1").await;
    assert_eq!(service.get_cached(acme, "/orders/1").await, order);
    let history = service.get(acme, "/orders/1/history").await;
    let steps = history.as_array().unwrap().len();

    // A status change: the order and its history change at once.
    let moved = json!({ "state_id": 6 });
    let (status, _) = service
        .call(Method::POST, acme, "/orders/1/state", Some(moved))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(service.get(acme, "/orders/1").await["state_id"], 6);
    let history = service.get(acme, "/orders/1/history").await;
    assert_eq!(history.as_array().unwrap().len(), steps + 1);
    assert_eq!(history[steps]["state_id"], 6);

    // A new order heads the first page of the list, which was cached.
    let first = service.get(acme, "/orders?page=0").await;
    assert_eq!(service.get_cached(acme, "/orders?page=0").await, first);
    let customer = service.get(acme, "/customers?page=0").await[0]["id"].clone();
    let input = json!({ "customer_id": customer, "carrier_id": 2, "total_cents": 1234 });
    let (status, created) = service
        .call(Method::POST, acme, "/orders", Some(input))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let list = service.get(acme, "/orders?page=0").await;
    assert_eq!(list[0]["id"], created["id"]);

    // Renaming the customer reaches the orders list that shows the name.
    let rename = json!({ "name": "Renamed Ltd", "email": "r@acme.example", "country_id": 1 });
    let path = format!("/customers/{customer}");
    assert_eq!(
        service.status(Method::PUT, acme, &path, Some(rename)).await,
        StatusCode::OK
    );
    assert_eq!(service.get(acme, &path).await["name"], "Renamed Ltd");
    assert_eq!(
        service.get(acme, "/orders?page=0").await[0]["customer"],
        "Renamed Ltd"
    );

    // A product page loads its related products in one batch, each then
    // cached on its own; a price change reaches the page.
    let page = service.get(acme, "/products/3/page").await;
    let related = page["related"].as_array().unwrap();
    assert!(!related.is_empty(), "{page}");
    let other = related[0]["id"].clone();
    assert_eq!(
        service
            .get_cached(acme, &format!("/products/{other}"))
            .await,
        related[0]
    );
    let mut product = page["product"].clone();
    product["price_cents"] = json!(1);
    let (status, _) = service
        .call(Method::PUT, acme, "/products/3", Some(product))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        service.get(acme, "/products/3/page").await["product"]["price_cents"],
        1
    );

    // A deleted order is gone, from its key and from the list.
    let path = format!("/orders/{}", created["id"]);
    assert_eq!(
        service.status(Method::DELETE, acme, &path, None).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        service.status(Method::GET, acme, &path, None).await,
        StatusCode::NOT_FOUND
    );
    assert_ne!(
        service.get(acme, "/orders?page=0").await[0]["id"],
        created["id"]
    );

    // Conditional GET: the tag holds until a write changes the answer.
    let tagged = service
        .request(Method::GET, acme, "/orders/2")
        .send()
        .await
        .unwrap();
    let etag = tagged.headers()["etag"].clone();
    assert!(tagged.headers().contains_key("x-request-id"));
    let again = service
        .request(Method::GET, acme, "/orders/2")
        .header("if-none-match", &etag);
    assert_eq!(
        again.send().await.unwrap().status(),
        StatusCode::NOT_MODIFIED
    );
    let moved = json!({ "state_id": 5 });
    service
        .call(Method::POST, acme, "/orders/2/state", Some(moved))
        .await;
    let again = service
        .request(Method::GET, acme, "/orders/2")
        .header("if-none-match", &etag);
    assert_eq!(again.send().await.unwrap().status(), StatusCode::OK);

    // The admin router: guarded, and its invalidation reaches the reads.
    service.get(acme, "/orders/3").await;
    let invalidate = "/cache/invalidate?pattern=order:acme:*";
    assert_eq!(
        service.status(Method::POST, "", invalidate, None).await,
        StatusCode::UNAUTHORIZED
    );
    let answer = service
        .request(Method::POST, "", invalidate)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let before = service.db.queries();
    service.get(acme, "/orders/3").await;
    assert_eq!(service.db.queries(), before + 1);

    // Metrics: the cache's series and the service's statement count.
    let metrics = service.get("", "/metrics").await;
    let metrics = metrics.as_str().unwrap();
    let queries = format!("orders_db_queries_total {}", service.db.queries());
    assert!(metrics.contains(&queries), "{metrics}");
    let hits = r#"cache_hits_total{cache="default",template="order:<tenant>:<id>",tier="l1"} "#;
    let line = metrics.lines().find(|l| l.starts_with(hits)).expect(hits);
    assert!(line[hits.len()..].parse::<u64>().unwrap() > 0, "{line}");

    // Bad requests say what to send.
    let (status, body) = service.call(Method::GET, "", "/orders/1", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("x-tenant"),
        "{body}"
    );
    let (status, _) = service.call(Method::GET, "Acme:*", "/orders/1", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let bad = json!({ "state_id": 99 });
    let (status, _) = service
        .call(Method::POST, acme, "/orders/1/state", Some(bad))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_reads_are_cached_and_writes_invalidate() {
    reads_are_cached_and_writes_invalidate(sqlite_settings()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_reads_are_cached_and_writes_invalidate() {
    let schema = unique("orders_test");
    reads_are_cached_and_writes_invalidate(settings(postgres_url(), Some(schema.clone()))).await;
    drop_schema(&schema).await;
}

/// One tenant never reads nor changes another's data, whatever id it asks
/// for: keys carry the tenant and every query filters on it.
async fn tenants_never_see_each_other(settings: Settings) {
    let service = Service::start(&settings, Cache::builder().build().unwrap()).await;
    let acme_order = service.get("acme", "/orders?page=0").await[0].clone();
    let globex_order = service.get("globex", "/orders?page=0").await[0].clone();
    assert_ne!(acme_order["id"], globex_order["id"]);

    // acme's order, cached for acme, is not found for globex.
    let path = format!("/orders/{}", acme_order["id"]);
    service.get("acme", &path).await;
    assert_eq!(
        service.status(Method::GET, "globex", &path, None).await,
        StatusCode::NOT_FOUND
    );
    let moved = Some(json!({ "state_id": 6 }));
    let state = format!("{path}/state");
    assert_eq!(
        service.status(Method::POST, "globex", &state, moved).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        service.get("acme", &path).await["state_id"],
        acme_order["state_id"]
    );

    // Lists hold only the tenant's own rows.
    for tenant in ["acme", "globex"] {
        let customers = service.get(tenant, "/customers?page=0").await;
        for customer in customers.as_array().unwrap() {
            let name = customer["name"].as_str().unwrap();
            assert!(name.starts_with(tenant), "{tenant} sees {name}");
        }
    }
    // A write of globex leaves acme's cached list as it was.
    let acme_list = service.get("acme", "/products?page=0").await;
    let input = json!({ "name": "globex only", "category_id": 1, "brand_id": 1, "price_cents": 1, "stock": 1 });
    let (status, _) = service
        .call(Method::POST, "globex", "/products", Some(input))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        service.get_cached("acme", "/products?page=0").await,
        acme_list
    );
    assert_eq!(
        service.get("globex", "/products?page=0").await[0]["name"],
        "globex only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_tenants_never_see_each_other() {
    tenants_never_see_each_other(sqlite_settings()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_tenants_never_see_each_other() {
    let schema = unique("orders_test");
    tenants_never_see_each_other(settings(postgres_url(), Some(schema.clone()))).await;
    drop_schema(&schema).await;
}

/// Two instances on one database and one Redis: a write on one reaches
/// what the other serves from its own process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_redis_see_each_others_writes() {
    let redis = RedisServer::start();
    let settings = sqlite_settings();
    let prefix = unique("orders");
    let one = Service::start(&settings, synced(hybrid(&redis, &prefix)).await).await;
    let two = Service::start(&settings, synced(hybrid(&redis, &prefix)).await).await;

    // Instance one fills Redis; instance two reads it from there, then
    // serves it from its own process.
    let order = one.get("acme", "/orders/4").await;
    assert_eq!(two.get_cached("acme", "/orders/4").await, order);
    assert_eq!(two.get_cached("acme", "/orders/4").await, order);

    let moved = Some(json!({ "state_id": 6 }));
    assert_eq!(
        one.status(Method::POST, "acme", "/orders/4/state", moved)
            .await,
        StatusCode::OK
    );
    // The backplane's message is on its way; bounded wait, then assert.
    let mut seen = two.get("acme", "/orders/4").await;
    for _ in 0..200 {
        if seen["state_id"] == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        seen = two.get("acme", "/orders/4").await;
    }
    assert_eq!(seen["state_id"], 6, "instance two still serves {seen}");
    assert_eq!(
        two.get("acme", "/orders/4/history")
            .await
            .as_array()
            .unwrap()
            .last()
            .unwrap()["state_id"],
        6
    );
}

/// The load generator, for a second per phase: it runs, prints every
/// phase, and no request fails, not even while Redis is paused or killed.
/// (Its figures are not asserted: they are a machine's.)
#[test]
fn the_load_generator_runs_every_phase_without_an_error() {
    let examples = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the target directory")
        .join("examples");
    let (load, orders) = (examples.join("orders-load"), examples.join("orders"));
    assert!(
        load.exists() && orders.exists(),
        "build them first: cargo build --example orders --example orders-load (cargo test builds them)"
    );
    let output = std::process::Command::new(load)
        .args(["--seconds", "1", "--clients", "4", "--service"])
        .arg(orders)
        .env_remove("CARGO")
        .output()
        .expect("run orders-load");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let phases = [
        "cache on",
        "cache off",
        "2 instances, Redis up",
        "Redis paused",
        "Redis resumed",
        "Redis killed",
        "Redis started, empty",
    ];
    for phase in phases {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(phase))
            .unwrap_or_else(|| panic!("no {phase:?} row:\n{stdout}"));
        let columns: Vec<&str> = row[22..].split_whitespace().collect();
        assert!(
            columns[0].parse::<u64>().unwrap() > 0,
            "no request in {row:?}"
        );
        assert_eq!(columns[5], "0", "errors in {row:?}\n{stdout}");
    }
}

// ---- monitoring (examples/monitoring) ------------------------------------

fn monitoring(file: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/monitoring")
        .join(file)
}

/// The metric families `/metrics` declares (`# TYPE`), with a histogram's
/// series.
fn families(exposition: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            names.insert(name.to_string());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    names
}

/// The metric names a PromQL expression reads: identifiers of the cache's
/// and the service's own.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("cache_") || w.starts_with("orders_"))
        .map(str::to_string)
        .collect()
}

/// Every series the dashboard plots is one the runtime (or the service)
/// exports, under the hybrid backend that exports them all; and the
/// dashboard shows what an operator looks at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_names_only_exported_metrics() {
    let redis = RedisServer::start();
    let cache = synced(hybrid(&redis, &unique("dashboard"))).await;
    let service = Service::start(&sqlite_settings(), cache).await;
    service.get("acme", "/orders/1").await;
    let exported = families(service.get("", "/metrics").await.as_str().unwrap());

    let path = monitoring("grafana/dashboards/cache-runtime.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut plotted = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let targets = panel["targets"].as_array().unwrap();
        assert!(
            !targets.is_empty(),
            "panel {} plots nothing",
            panel["title"]
        );
        for target in targets {
            plotted.extend(metric_names(target["expr"].as_str().unwrap()));
        }
    }
    let unknown: Vec<_> = plotted.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard plots {unknown:?}, which /metrics does not export: {exported:?}"
    );
    for needed in [
        "cache_hits_total",
        "cache_misses_total",
        "cache_operation_duration_seconds_bucket",
        "cache_items",
        "cache_bytes",
        "cache_breaker_state",
        "cache_invalidations_pending",
        "cache_errors_total",
        "cache_warmed_total",
        "orders_db_queries_total",
    ] {
        assert!(
            plotted.contains(needed),
            "the dashboard has no panel for {needed}"
        );
    }
}

/// A command of Prometheus' (`prometheus`, `promtool`): on the PATH, from
/// Debian's `prometheus` package.
fn prometheus_command(name: &str) -> std::process::Command {
    let found = std::process::Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{name} is missing: apt-get install prometheus (Debian's package brings both)"
    );
    std::process::Command::new(name)
}

/// Kills its process when dropped.
struct Stop(std::process::Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Prometheus, started with the shipped scrape configuration (its target
/// moved to the test service's port), collects the cache's series; promtool
/// accepts the configurations and the exposition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_service_with_the_shipped_configuration() {
    for config in ["prometheus.yml", "prometheus.compose.yml"] {
        let check = prometheus_command("promtool")
            .args(["check", "config"])
            .arg(monitoring(config))
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{config}: {}",
            String::from_utf8_lossy(&check.stdout)
        );
    }

    let service = Service::start(&sqlite_settings(), Cache::builder().build().unwrap()).await;
    service.get("acme", "/orders/1").await;
    service.get("acme", "/orders/1").await;
    let exposition = service.get("", "/metrics").await;
    let mut lint = prometheus_command("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut lint.stdin.take().unwrap(),
        exposition.as_str().unwrap().as_bytes(),
    )
    .unwrap();
    let lint = lint.wait_with_output().unwrap();
    assert!(
        lint.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );

    let dir = std::env::temp_dir().join(unique("cache-prometheus"));
    std::fs::create_dir_all(&dir).unwrap();
    let shipped = std::fs::read_to_string(monitoring("prometheus.yml")).unwrap();
    assert!(
        shipped.contains("127.0.0.1:3000"),
        "the shipped target moved: update this test"
    );
    let target = service.base.trim_start_matches("http://");
    let config = shipped
        .replace("127.0.0.1:3000", target)
        .replace("scrape_interval: 5s", "scrape_interval: 1s");
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let _prometheus = Stop(
        prometheus_command("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let query = |q: &'static str| {
        let http = http.clone();
        async move {
            let url = format!("http://127.0.0.1:{port}/api/v1/query");
            let answer = http.get(url).query(&[("query", q)]).send().await.ok()?;
            let body: Value = answer.json().await.ok()?;
            let results = body["data"]["result"].as_array()?.clone();
            (!results.is_empty()).then_some(results)
        }
    };
    let hits = r#"cache_hits_total{template="order:<tenant>:<id>",tier="l1"}"#;
    let mut found = None;
    for _ in 0..300 {
        if let Some(results) = query(hits).await {
            found = Some(results);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    let found = found
        .unwrap_or_else(|| panic!("Prometheus collected no {hits} within 60 s; its log:\n{log}"));
    assert_eq!(found[0]["value"][1], "1", "{found:?}");
    let up = query(r#"up{job="orders"}"#).await.expect("the orders job");
    assert_eq!(up[0]["value"][1], "1", "{up:?}");
    assert!(query("orders_db_queries_total").await.is_some());
    let _ = std::fs::remove_dir_all(&dir);
}
