//! The worst cases of matching one key in process that the limits on
//! patterns allow: the longest tail after a `*` (`Pattern::MAX_TAIL_LEN`
//! bytes) against a 1024-byte key of `a`s, which the matcher tries at
//! every byte of the key and fails at the last byte of the tail. The time
//! is per key: a pattern invalidation pays it for every key of the
//! in-process tier.
//!
//! - `*` + 255 × `a` + `b`: the tail is one literal, compared as a slice;
//! - `*` + 255 × `?` + `b`: the tail is 256 one-byte steps, the densest
//!   a tail can be (a set takes 3 bytes for one step).
//!
//! Then the same worst case in Redis, as a one-shot table: 2,000 keys of
//! the longest a key may be (`MAX_KEY_BYTES`) in a throwaway
//! `redis-server`, and `RedisL2::invalidate` of `*` + 255 × `?` + `b`,
//! whose `SCAN COUNT` is cut for the pattern's cost; the longest `SCAN`
//! on the server (SLOWLOG), against the same walk with `COUNT 1000` as
//! it was before the cut.
//!
//! Run: `cargo bench --bench glob` (the Redis part needs `redis-server` on
//! the PATH, or `REDIS_SERVER`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::Duration;

use cache_runtime::{Pattern, RedisL2, MAX_KEY_BYTES};
use criterion::{Criterion, Throughput};
use redis::Value;

const KEY_LEN: usize = 1024;

fn glob(c: &mut Criterion) {
    let key = "a".repeat(KEY_LEN);
    let mut group = c.benchmark_group("glob");
    group.throughput(Throughput::Elements(1));
    for (name, step) in [("literal", "a"), ("`?`", "?")] {
        let tail = format!("{}b", step.repeat(Pattern::MAX_TAIL_LEN - 1));
        let pattern = Pattern::parse(&format!("*{tail}")).expect("the longest tail is allowed");
        assert!(
            Pattern::parse(&format!("*a{tail}")).is_err(),
            "one more byte is refused"
        );
        assert!(!pattern.matches(&key));
        group.bench_function(format!("longest {name} tail, 1 KiB key (per key)"), |b| {
            b.iter(|| black_box(&pattern).matches(black_box(&key)))
        });
    }
    group.finish();
}

/// Keys in Redis for the worst `SCAN`.
const SCAN_KEYS: usize = 2_000;

/// The longest `SCAN` of the worst pattern the limits allow, in
/// microseconds on the server, with its `COUNT`: through
/// `RedisL2::invalidate`, and raw with `COUNT 1000`.
fn worst_scan() -> ((u64, String), (u64, String)) {
    let server = support::RedisServer::start();
    let mut conn = server.connection();
    let key = "a".repeat(MAX_KEY_BYTES);
    let mut pipe = redis::pipe();
    for i in 0..SCAN_KEYS {
        let mut name = format!("g:{i}:{key}");
        name.truncate("g:".len() + MAX_KEY_BYTES);
        pipe.cmd("SET").arg(name).arg(1).ignore();
    }
    let () = pipe.query(&mut conn).expect("fill");
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(0)
        .query(&mut conn)
        .expect("CONFIG SET");
    let pattern = format!("*{}b", "?".repeat(Pattern::MAX_TAIL_LEN - 1));
    // The longest SCAN in the slow log, and its COUNT; then the log is reset.
    let longest_scan = |conn: &mut redis::Connection| -> (u64, String) {
        let log: Value = redis::cmd("SLOWLOG")
            .arg("GET")
            .arg(100_000)
            .query(conn)
            .expect("SLOWLOG GET");
        let Value::Array(entries) = log else {
            panic!("SLOWLOG GET: {log:?}")
        };
        let () = redis::cmd("SLOWLOG").arg("RESET").query(conn).unwrap();
        entries
            .iter()
            .filter_map(|entry| {
                let Value::Array(fields) = entry else {
                    return None;
                };
                let (Value::Int(us), Value::Array(args)) = (&fields[2], &fields[3]) else {
                    return None;
                };
                let text = |arg: Option<&Value>| match arg {
                    Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    _ => String::new(),
                };
                let scan = text(args.first()).eq_ignore_ascii_case("SCAN");
                scan.then(|| (*us as u64, text(args.last())))
            })
            .max()
            .expect("a SCAN in the slow log")
    };
    let () = redis::cmd("SLOWLOG").arg("RESET").query(&mut conn).unwrap();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let removed = runtime.block_on(async {
        let l2 = RedisL2::builder(server.url(), "g")
            .timeout(Duration::from_secs(30))
            .connect()
            .await
            .expect("a store");
        l2.invalidate(&pattern).await.expect("invalidate")
    });
    assert_eq!(removed, 0);
    let budgeted = longest_scan(&mut conn);
    let mut cursor = 0u64;
    loop {
        let (next, _): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("g:{pattern}"))
            .arg("COUNT")
            .arg(1000)
            .query(&mut conn)
            .expect("SCAN");
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let unbudgeted = longest_scan(&mut conn);
    (budgeted, unbudgeted)
}

fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    glob(&mut c);
    c.final_summary();

    let ((budgeted, count), (unbudgeted, _)) = worst_scan();
    println!(
        "longest SCAN of `*` + {} x `?` + `b` over {SCAN_KEYS} keys of {MAX_KEY_BYTES} bytes:",
        Pattern::MAX_TAIL_LEN - 1
    );
    let ms = |us: u64| us as f64 / 1e3;
    println!(
        "  RedisL2::invalidate (COUNT {count}, cut for the pattern's cost): {:.1} ms",
        ms(budgeted)
    );
    println!("  raw SCAN, COUNT 1000: {:.1} ms", ms(unbudgeted));
}
