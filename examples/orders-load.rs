//! The orders service under load, over loopback HTTP: what the cache
//! changes for requests per second, latency and the database, and what a
//! Redis outage does to two instances.
//!
//! ```sh
//! cargo run --release --example orders-load -- --seconds 10 --clients 32 --writes 2
//! ```
//!
//! It builds and starts `examples/orders` itself (or the binary
//! `--service` names) on a fresh SQLite file (or `--database <url>`, whose
//! tables must be new: the ids it asks for are those of a fresh seed),
//! then runs one phase after another, each for
//! `--seconds`:
//! - `cache on`: one instance on the in-memory cache;
//! - `cache off`: the same with `CACHE_ENABLED=false`;
//! - with `redis-server` on the PATH (`--no-outage` to skip), two
//!   instances under `CACHE_BACKEND=hybrid` on a redis-server of its own,
//!   the clients split between them: Redis up, paused (SIGSTOP), resumed,
//!   killed, and started again (empty).
//!
//! Each request is a read (product pages, products, orders, their history,
//! customers, lists, lookups) or, for `--writes` percent of them, a write
//! (an order's status, a new order, a customer's details). Which product,
//! order or customer a request names follows the product-page requests of
//! a real shop (`web07.trace.xz` of `../shared/traces`, or the folder
//! `CACHE_TRACES` names: recorded by the cache2k project, headissue GmbH,
//! Jens Wilke, CC BY 4.0), or a Zipf law (`--keys zipf`, and when the
//! traces are not there). The tenant is one of three, at random.
//!
//! For each phase it prints requests per second, latency percentiles,
//! errors (answers of 500 and above, and requests that failed), statements
//! sent to the database per second (`orders_db_queries_total` of the
//! instances' `/metrics`), and the hit rate (`cache_hits_total` over hits
//! and misses). The service's own CACHE_* settings pass through (for
//! example `CACHE_DEGRADED_L1_TTL=2s` for the outage).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use support::RedisServer;
use tokio::process::{Child, Command};

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
/// Per tenant, as the service seeds them at `ORDERS_SEED_SCALE` 5.
const SCALE: i64 = 5;
const CUSTOMERS: i64 = 200 * SCALE;
const PRODUCTS: i64 = 500 * SCALE;
const ORDERS: i64 = 1_000 * SCALE;

struct Options {
    seconds: f64,
    clients: usize,
    writes_percent: u32,
    zipf: bool,
    outage: bool,
    database: Option<String>,
    service: Option<PathBuf>,
}

fn usage(problem: &str) -> ! {
    eprintln!("orders-load: {problem}");
    eprintln!(
        "usage: orders-load [--seconds 10] [--clients 32] [--writes 2] [--keys trace|zipf] [--no-outage] [--database <url>] [--service <orders binary>]"
    );
    std::process::exit(2)
}

fn options() -> Options {
    let mut o = Options {
        seconds: 10.0,
        clients: 32,
        writes_percent: 2,
        zipf: false,
        outage: true,
        database: None,
        service: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--seconds" => {
                o.seconds = value(&arg)
                    .parse()
                    .unwrap_or_else(|_| usage("--seconds: a number"))
            }
            "--clients" => {
                o.clients = value(&arg)
                    .parse()
                    .unwrap_or_else(|_| usage("--clients: a whole number"))
            }
            "--writes" => {
                o.writes_percent = value(&arg)
                    .parse()
                    .ok()
                    .filter(|w| *w <= 100)
                    .unwrap_or_else(|| usage("--writes: a percentage, 0 to 100"))
            }
            "--keys" => match value(&arg).as_str() {
                "trace" => o.zipf = false,
                "zipf" => o.zipf = true,
                other => usage(&format!("--keys {other:?}: trace or zipf")),
            },
            "--no-outage" => o.outage = false,
            "--database" => o.database = Some(value(&arg)),
            "--service" => o.service = Some(PathBuf::from(value(&arg))),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    if o.clients == 0 || o.seconds <= 0.0 {
        usage("--clients and --seconds must be above 0");
    }
    o
}

// ---- key popularity ----------------------------------------------------

/// Ranks (0 is the most asked for) in the order requests ask for them.
struct Popularity {
    ranks: Vec<u32>,
    source: String,
}

impl Popularity {
    /// The product-page requests of a real shop: each page's rank by how
    /// often the trace asks for it, in the trace's order.
    fn trace() -> Option<Popularity> {
        let folder = std::env::var("CACHE_TRACES").map_or_else(
            |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/traces"),
            PathBuf::from,
        );
        let compressed = std::fs::read(folder.join("web07.trace.xz")).ok()?;
        let mut plain = Vec::new();
        lzma_rs::xz_decompress(&mut compressed.as_slice(), &mut plain).ok()?;
        let keys: Vec<u32> = plain
            .chunks_exact(4)
            .map(|w| u32::from_be_bytes(w.try_into().expect("4 bytes")))
            .collect();
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for key in &keys {
            *counts.entry(*key).or_default() += 1;
        }
        let mut by_count: Vec<(u32, u32)> = counts.into_iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let rank: HashMap<u32, u32> = by_count
            .iter()
            .enumerate()
            .map(|(i, (key, _))| (*key, i as u32))
            .collect();
        Some(Popularity {
            ranks: keys.iter().map(|k| rank[k]).collect(),
            source: format!(
                "web07.trace.xz ({} product-page requests of a real shop; cache2k, headissue GmbH, Jens Wilke, CC BY 4.0)",
                keys.len()
            ),
        })
    }

    /// Zipf's law with exponent 1 over 10,000 ranks, 200,000 draws.
    fn zipf(note: &str) -> Popularity {
        let n = 10_000;
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += 1.0 / k as f64;
            cdf.push(sum);
        }
        let mut rng = fastrand::Rng::with_seed(7);
        let ranks = (0..200_000)
            .map(|_| cdf.partition_point(|&c| c < rng.f64() * sum) as u32)
            .collect();
        Popularity {
            ranks,
            source: format!("Zipf, exponent 1, 10,000 keys{note}"),
        }
    }
}

// ---- the service's processes ---------------------------------------------

/// The `orders` example's binary, built beside this one (under `cargo
/// run`, which says where cargo is, it is built first).
fn service_binary() -> PathBuf {
    let here = std::env::current_exe().expect("this program's path");
    let binary = here.with_file_name(format!("orders{}", std::env::consts::EXE_SUFFIX));
    if let Ok(cargo) = std::env::var("CARGO") {
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "--quiet", "--example", "orders"]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        if !status.success() {
            eprintln!("orders-load: could not build the orders example");
            std::process::exit(1);
        }
    }
    if !binary.exists() {
        eprintln!(
            "orders-load: {} is missing: run `cargo build --release --example orders`",
            binary.display()
        );
        std::process::exit(1);
    }
    binary
}

struct Instance {
    child: Child,
    base: String,
}

impl Instance {
    async fn start(binary: &Path, database: &str, env: &[(&str, String)], log: &Path) -> Instance {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log_file = std::fs::File::create(log).expect("the instance's log file");
        let mut command = Command::new(binary);
        command
            .env("PORT", port.to_string())
            .env("DATABASE_URL", database)
            .env("ORDERS_SEED_SCALE", SCALE.to_string())
            .env("ORDERS_TENANTS", TENANTS.join(","))
            .env("RUST_LOG", "warn")
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("start the orders service");
        let base = format!("http://127.0.0.1:{port}");
        let client = Client::new();
        for _ in 0..600 {
            if let Ok(answer) = client.get(format!("{base}/healthz")).send().await {
                if answer.status().is_success() {
                    return Instance { child, base };
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "orders-load: the service did not answer within 60 s; its log: {}",
            log.display()
        );
        std::process::exit(1);
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The counters a phase is judged by, summed over the instances.
#[derive(Clone, Copy, Default)]
struct Counters {
    queries: f64,
    hits: f64,
    misses: f64,
}

async fn scrape(client: &Client, instances: &[String]) -> Counters {
    let mut total = Counters::default();
    for base in instances {
        let Ok(answer) = client.get(format!("{base}/metrics")).send().await else {
            continue;
        };
        let text = answer.text().await.unwrap_or_default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let value: f64 = value.parse().unwrap_or(0.0);
            if series == "orders_db_queries_total" {
                total.queries += value;
            } else if series.starts_with("cache_hits_total{") {
                total.hits += value;
            } else if series.starts_with("cache_misses_total{") {
                total.misses += value;
            }
        }
    }
    total
}

// ---- the load --------------------------------------------------------------

/// What one window of a phase saw, from every client.
#[derive(Default)]
struct Window {
    latencies_us: Vec<u32>,
    errors: u64,
}

struct Load {
    popularity: Popularity,
    writes_percent: u32,
    /// The window requests count in now; `usize::MAX` stops the clients.
    window: AtomicUsize,
    /// Requests answered in this phase, for the progress line.
    done: AtomicUsize,
    windows: Mutex<Vec<Window>>,
}

enum Request {
    Get(String),
    Send(Method, String, Value),
}

impl Load {
    /// The request a client sends at step `step` of its walk through the
    /// popularity ranks.
    fn request(&self, rng: &mut fastrand::Rng, step: usize) -> (String, Request) {
        let tenant = rng.usize(..TENANTS.len());
        let rank = i64::from(self.popularity.ranks[step % self.popularity.ranks.len()]);
        // Ids of this tenant (seeded one tenant after another).
        let product = tenant as i64 * PRODUCTS + 1 + rank % PRODUCTS;
        let order = tenant as i64 * ORDERS + 1 + rank % ORDERS;
        let customer = tenant as i64 * CUSTOMERS + 1 + rank % CUSTOMERS;
        let page = (rank % 7).min(rng.i64(0..4));
        let tenant = TENANTS[tenant].to_string();
        if rng.u32(..100) < self.writes_percent {
            let write = match rng.u32(..100) {
                0..60 => Request::Send(
                    Method::POST,
                    format!("/orders/{order}/state"),
                    json!({ "state_id": rng.i64(1..=6) }),
                ),
                60..85 => Request::Send(
                    Method::POST,
                    "/orders".into(),
                    json!({ "customer_id": customer, "carrier_id": rng.i64(1..=4), "total_cents": rng.i64(1_000..100_000) }),
                ),
                _ => Request::Send(
                    Method::PUT,
                    format!("/customers/{customer}"),
                    json!({ "name": format!("{tenant} customer {customer}"), "email": format!("c{customer}@{tenant}.example"), "country_id": rng.i64(1..=7) }),
                ),
            };
            return (tenant, write);
        }
        let path = match rng.u32(..100) {
            0..35 => format!("/products/{product}/page"),
            35..50 => format!("/products/{product}"),
            50..65 => format!("/orders/{order}"),
            65..73 => format!("/orders/{order}/history"),
            73..81 => format!("/orders?page={page}"),
            81..86 => format!("/customers/{customer}"),
            86..90 => format!("/customers?page={page}"),
            90..95 => format!("/products?page={page}"),
            _ => format!(
                "/lookups/{}",
                [
                    "order_states",
                    "categories",
                    "brands",
                    "carriers",
                    "countries",
                    "langs"
                ][rng.usize(..6)]
            ),
        };
        (tenant, Request::Get(path))
    }

    async fn client(self: Arc<Self>, id: usize, base: String) {
        let http = Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client");
        let mut rng = fastrand::Rng::with_seed(id as u64);
        // Each client walks the trace from its own point.
        let mut step = rng.usize(..self.popularity.ranks.len());
        let mut seen: Vec<Window> = Vec::new();
        loop {
            let window = self.window.load(Ordering::Relaxed);
            if window == usize::MAX {
                break;
            }
            let (tenant, request) = self.request(&mut rng, step);
            step += 1;
            let request = match request {
                Request::Get(path) => http.get(format!("{base}{path}")),
                Request::Send(method, path, body) => {
                    http.request(method, format!("{base}{path}")).json(&body)
                }
            };
            let started = Instant::now();
            let outcome = request.header("x-tenant", tenant).send().await;
            let failed = match outcome {
                Ok(answer) => {
                    let status = answer.status();
                    let body = answer.bytes().await;
                    body.is_err() || status >= StatusCode::INTERNAL_SERVER_ERROR
                }
                Err(_) => true,
            };
            let elapsed = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
            if seen.len() <= window {
                seen.resize_with(window + 1, Window::default);
            }
            seen[window].latencies_us.push(elapsed);
            seen[window].errors += u64::from(failed);
            self.done.fetch_add(1, Ordering::Relaxed);
        }
        let mut windows = self.windows.lock().unwrap();
        if windows.len() < seen.len() {
            windows.resize_with(seen.len(), Window::default);
        }
        for (all, mine) in windows.iter_mut().zip(seen) {
            all.latencies_us.extend(mine.latencies_us);
            all.errors += mine.errors;
        }
    }
}

/// One line of the results.
struct Row {
    phase: String,
    seconds: f64,
    window: Window,
    counters: Counters,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

fn print_table(rows: &mut [Row]) {
    println!(
        "{:<22} {:>9} {:>9} {:>8} {:>8} {:>8} {:>7} {:>10} {:>9}",
        "phase", "requests", "req/s", "p50 ms", "p99 ms", "p999 ms", "errors", "db q/s", "hit rate"
    );
    for row in rows {
        let latencies = &mut row.window.latencies_us;
        latencies.sort_unstable();
        let c = row.counters;
        let hit_rate = if c.hits + c.misses > 0.0 {
            format!("{:.1}%", 100.0 * c.hits / (c.hits + c.misses))
        } else {
            "-".into()
        };
        println!(
            "{:<22} {:>9} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>10.0} {:>9}",
            row.phase,
            latencies.len(),
            latencies.len() as f64 / row.seconds,
            percentile(latencies, 0.50),
            percentile(latencies, 0.99),
            percentile(latencies, 0.999),
            row.window.errors,
            c.queries / row.seconds,
            hit_rate,
        );
    }
}

/// Runs the clients against `instances` through the windows of `steps`:
/// before each window its action runs (a fault, say), then the load goes
/// on for `seconds` and the window's counters are read.
async fn run_phase(
    load: &Arc<Load>,
    clients: usize,
    instances: &[String],
    seconds: f64,
    steps: Vec<(String, Box<dyn FnOnce() + Send>)>,
) -> Vec<Row> {
    let http = Client::new();
    load.windows.lock().unwrap().clear();
    load.window.store(0, Ordering::Relaxed);
    load.done.store(0, Ordering::Relaxed);
    let phase_started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|id| {
            let base = instances[id % instances.len()].clone();
            tokio::spawn(Arc::clone(load).client(id, base))
        })
        .collect();
    let mut rows = Vec::new();
    for (i, (name, action)) in steps.into_iter().enumerate() {
        // A fault may wait for its process (SIGSTOP landing, a restart
        // answering PING): off the runtime's own threads.
        tokio::task::block_in_place(action);
        load.window.store(i, Ordering::Relaxed);
        let before = scrape(&http, instances).await;
        let started = Instant::now();
        let length = Duration::from_secs_f64(seconds);
        while started.elapsed() < length {
            tokio::time::sleep(Duration::from_millis(250).min(length)).await;
            let done = load.done.load(Ordering::Relaxed);
            eprint!(
                "\r  {name:<22} {:>5.1}s of {seconds}s  {done:>9} requests  {:>7.0}/s",
                started.elapsed().as_secs_f64().min(seconds),
                done as f64 / phase_started.elapsed().as_secs_f64(),
            );
            let _ = std::io::stderr().flush();
        }
        let after = scrape(&http, instances).await;
        rows.push(Row {
            phase: name,
            seconds: started.elapsed().as_secs_f64(),
            window: Window::default(),
            counters: Counters {
                queries: after.queries - before.queries,
                hits: after.hits - before.hits,
                misses: after.misses - before.misses,
            },
        });
    }
    eprint!("\r{:80}\r", "");
    load.window.store(usize::MAX, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let mut windows = std::mem::take(&mut *load.windows.lock().unwrap());
    windows.resize_with(rows.len(), Window::default);
    for (row, window) in rows.iter_mut().zip(windows) {
        row.window = window;
    }
    rows
}

fn no_action() -> Box<dyn FnOnce() + Send> {
    Box::new(|| {})
}

#[tokio::main]
async fn main() {
    let o = options();
    let popularity = if o.zipf {
        Popularity::zipf("")
    } else {
        Popularity::trace().unwrap_or_else(|| {
            Popularity::zipf(" (the traces were not found: set CACHE_TRACES to their folder)")
        })
    };
    let binary = o.service.clone().unwrap_or_else(service_binary);
    let scratch = std::env::temp_dir().join(format!("orders-load-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("a scratch folder");
    let database = o
        .database
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", scratch.join("orders.db").display()));
    println!(
        "orders-load: {} clients, {}s per phase, {}% writes",
        o.clients, o.seconds, o.writes_percent
    );
    println!("keys: {}", popularity.source);
    println!(
        "database: {}; logs: {}",
        database.split('?').next().unwrap_or(""),
        scratch.display()
    );
    let load = Arc::new(Load {
        popularity,
        writes_percent: o.writes_percent,
        window: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        windows: Mutex::new(Vec::new()),
    });
    let mut rows = Vec::new();

    for (phase, enabled) in [("cache on", "true"), ("cache off", "false")] {
        let env = [
            ("CACHE_BACKEND", "memory".to_string()),
            ("CACHE_ENABLED", enabled.to_string()),
        ];
        let log = scratch.join(format!("{}.log", phase.replace(' ', "-")));
        let instance = Instance::start(&binary, &database, &env, &log).await;
        let steps = vec![(phase.to_string(), no_action())];
        let bases = [instance.base.clone()];
        rows.extend(run_phase(&load, o.clients, &bases, o.seconds, steps).await);
        instance.stop().await;
    }

    let have_redis = std::process::Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if o.outage && !have_redis {
        println!("(no redis-server on the PATH: the outage phase is skipped)");
    }
    if o.outage && have_redis {
        let redis = Arc::new(Mutex::new(RedisServer::start()));
        let url = redis.lock().unwrap().url();
        let env = [
            ("CACHE_BACKEND", "hybrid".to_string()),
            ("CACHE_ENABLED", "true".to_string()),
            ("REDIS_URL", url),
            ("CACHE_KEY_PREFIX", "orders-load".to_string()),
        ];
        let one = Instance::start(&binary, &database, &env, &scratch.join("hybrid-1.log")).await;
        let two = Instance::start(&binary, &database, &env, &scratch.join("hybrid-2.log")).await;
        let bases = [one.base.clone(), two.base.clone()];
        let server = |f: fn(&mut RedisServer)| -> Box<dyn FnOnce() + Send> {
            let redis = Arc::clone(&redis);
            Box::new(move || f(&mut redis.lock().unwrap()))
        };
        let steps = vec![
            ("2 instances, Redis up".to_string(), no_action()),
            ("Redis paused".to_string(), server(|r| r.pause())),
            ("Redis resumed".to_string(), server(|r| r.resume())),
            ("Redis killed".to_string(), server(|r| r.kill())),
            ("Redis started, empty".to_string(), server(|r| r.restart())),
        ];
        rows.extend(run_phase(&load, o.clients, &bases, o.seconds, steps).await);
        one.stop().await;
        two.stop().await;
    }
    print_table(&mut rows);
    let _ = std::fs::remove_file(scratch.join("orders.db"));
}
