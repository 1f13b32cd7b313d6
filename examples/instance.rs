//! One instance of a service that caches through Redis, for running
//! several as separate processes (tests/processes.rs starts it twice).
//!
//! ```sh
//! cargo run --example instance -- redis://127.0.0.1:6379/0 demo 200 1000 [hang]
//! ```
//!
//! Arguments: the Redis URL, a key prefix, how many concurrent callers,
//! the lock's lifetime in milliseconds, and `hang` to make this instance's
//! origin call never finish (a process to kill mid-call). It waits until
//! subscribed to the other instances' invalidations, then its callers all
//! ask for one cold key of a `#[cached(lock = true)]` function whose origin
//! counts its calls in Redis (`<prefix>-origin-calls`) and takes half a
//! second. It prints `ok <callers> callers, value from origin call <n>`
//! when every caller got the same value, and exits with 1 otherwise.

use std::time::Duration;

use cache_runtime::{cached, Backend, Cache};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Report {
    origin_call: u64,
}

/// The origin: counts its calls where every instance sees them.
struct Origin {
    redis: redis::Client,
    counter: String,
    hang: bool,
}

#[cached(ttl = "1m", key = "report:<id>", lock = true, skip(origin))]
async fn report(origin: &Origin, id: u64) -> Result<Report, String> {
    let _ = id;
    let mut conn = origin
        .redis
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let n: u64 = redis::cmd("INCR")
        .arg(&origin.counter)
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    if origin.hang {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(Report { origin_call: n })
}

fn usage() -> ! {
    eprintln!("usage: instance <redis-url> <prefix> <callers> <lock-ttl-ms> [hang]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, prefix, callers, lock_ms, rest @ ..] = args.as_slice() else {
        usage()
    };
    let callers: usize = callers.parse().unwrap_or_else(|_| usage());
    let lock_ms: u64 = lock_ms.parse().unwrap_or_else(|_| usage());
    let cache = Cache::builder()
        .backend(Backend::Hybrid)
        .redis_url(url.as_str())
        .key_prefix(prefix.as_str())
        .redis_timeout(Duration::from_secs(2))
        .lock_ttl(Duration::from_millis(lock_ms))
        .build()
        .unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2)
        });
    if !cache.wait_in_sync(Duration::from_secs(10)).await {
        eprintln!("not subscribed to the backplane within 10 s");
        std::process::exit(1);
    }
    let origin = std::sync::Arc::new(Origin {
        redis: redis::Client::open(url.as_str()).unwrap_or_else(|_| usage()),
        counter: format!("{prefix}-origin-calls"),
        hang: rest.first().map(String::as_str) == Some("hang"),
    });
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (cache, origin) = (cache.clone(), std::sync::Arc::clone(&origin));
            tokio::spawn(async move { cache.scope(report(&origin, 1)).await })
        })
        .collect();
    let mut values = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(value)) => values.push(value),
            Ok(Err(e)) => {
                eprintln!("a caller failed: {e}");
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("a caller panicked: {e}");
                std::process::exit(1);
            }
        }
    }
    if values.windows(2).any(|w| w[0] != w[1]) {
        eprintln!("callers got different values: {values:?}");
        std::process::exit(1);
    }
    println!(
        "ok {callers} callers, value from origin call {}",
        values.first().map_or(0, |v| v.origin_call)
    );
}
