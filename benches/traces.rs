//! Hit ratios on real access traces: each of the four traces in
//! `../shared/traces/` replayed through the cache (both in-process
//! engines, through the `Cache` handle: get, and set on a miss) and through
//! raw quick_cache and moka, at 1%, 5%, 10% and 25% of the trace's distinct
//! keys, next to the optimum for that capacity (Belady's, with bypass:
//! computed offline from the whole trace, the best any policy can do).
//!
//! The traces were recorded by the cache2k project (headissue GmbH, Jens
//! Wilke) on a production e-commerce web application, and are published
//! under CC BY 4.0 (`../shared/traces/LICENSE.txt`): database object
//! accesses (`orm-*`) and product detail page requests (`web*`).
//!
//! A hit ratio, not a time: the table is printed once, no criterion run.
//! Run: `cargo bench --bench traces` (the traces are looked for in
//! `../shared/traces`, or in the folder `CACHE_TRACES` names).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use cache_runtime::{Cache, Engine};

const TRACES: [&str; 4] = [
    "orm-busy.trace.xz",
    "orm-night.trace.xz",
    "web07.trace.xz",
    "web12.trace.xz",
];
const SHARES: [f64; 4] = [0.01, 0.05, 0.10, 0.25];

/// A trace: each access as a dense id (`0..distinct`).
struct Trace {
    accesses: Vec<u32>,
    distinct: usize,
}

fn read(path: &PathBuf) -> Option<Trace> {
    let compressed = std::fs::read(path).ok()?;
    let mut plain = Vec::new();
    lzma_rs::xz_decompress(&mut compressed.as_slice(), &mut plain).ok()?;
    let mut ids = HashMap::new();
    let accesses = plain
        .chunks_exact(4)
        .map(|word| {
            let key = u32::from_be_bytes(word.try_into().expect("4 bytes"));
            let next = ids.len() as u32;
            *ids.entry(key).or_insert(next)
        })
        .collect();
    Some(Trace {
        accesses,
        distinct: ids.len(),
    })
}

/// Belady's optimum with bypass: on a miss with the cache full, the key
/// used furthest in the future (the one missed included) is the one not
/// kept.
fn optimum(trace: &Trace, capacity: usize) -> f64 {
    let n = trace.accesses.len();
    let mut next_use = vec![usize::MAX; n];
    let mut seen = vec![usize::MAX; trace.distinct];
    for (i, &id) in trace.accesses.iter().enumerate().rev() {
        next_use[i] = seen[id as usize];
        seen[id as usize] = i;
    }
    // The cached keys by their next use; `at[id]` is the next use a cached
    // key is filed under.
    let mut cached: BTreeSet<(usize, u32)> = BTreeSet::new();
    let mut at: Vec<Option<usize>> = vec![None; trace.distinct];
    let mut hits = 0u64;
    for (i, &id) in trace.accesses.iter().enumerate() {
        let next = next_use[i];
        if let Some(filed) = at[id as usize] {
            hits += 1;
            cached.remove(&(filed, id));
        } else if cached.len() >= capacity {
            let &(furthest, victim) = cached.last().expect("a full cache");
            if furthest <= next {
                continue; // bypass: the new key is needed last
            }
            cached.pop_last();
            at[victim as usize] = None;
        }
        cached.insert((next, id));
        at[id as usize] = Some(next);
    }
    hits as f64 / n as f64
}

/// The cache's own hit ratio: get, and set on a miss, through the handle.
fn through_cache(trace: &Trace, capacity: usize, engine: Engine, names: &[String]) -> f64 {
    let cache = Cache::builder()
        .engine(engine)
        .l1_max_bytes(1 << 30)
        .l1_max_entries(capacity as u64)
        .build()
        .expect("cache");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let ttl = Duration::from_secs(3600);
    rt.block_on(async {
        let mut hits = 0u64;
        for &id in &trace.accesses {
            let key = &names[id as usize];
            if cache.local().get::<u32>(key).await.is_some() {
                hits += 1;
            } else {
                cache.local().set(key, id, ttl).await;
            }
        }
        hits as f64 / trace.accesses.len() as f64
    })
}

/// The hit ratio of a raw cache: `hit(id)` looks `id` up, and stores it
/// on a miss.
fn replay(trace: &Trace, mut hit: impl FnMut(u32) -> bool) -> f64 {
    let hits = trace.accesses.iter().filter(|&&id| hit(id)).count();
    hits as f64 / trace.accesses.len() as f64
}

fn raw_quick_cache(trace: &Trace, capacity: usize) -> f64 {
    let mut cache = quick_cache::unsync::Cache::<u32, ()>::new(capacity);
    replay(trace, |id| {
        let hit = cache.get(&id).is_some();
        if !hit {
            cache.insert(id, ());
        }
        hit
    })
}

fn raw_moka(trace: &Trace, capacity: usize) -> f64 {
    let cache = moka::sync::Cache::<u32, ()>::new(capacity as u64);
    replay(trace, |id| {
        let hit = cache.get(&id).is_some();
        if !hit {
            cache.insert(id, ());
        }
        hit
    })
}

fn main() {
    let folder = std::env::var_os("CACHE_TRACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/traces"));
    println!("hit ratios on the cache2k e-commerce traces (headissue GmbH, Jens Wilke; CC BY 4.0)");
    println!("each: the ratio, and in brackets its share of the optimum's");
    for name in TRACES {
        let Some(trace) = read(&folder.join(name)) else {
            println!(
                "{name}: not found in {} (set CACHE_TRACES)",
                folder.display()
            );
            continue;
        };
        let names: Vec<String> = (0..trace.distinct).map(|id| format!("k:{id}")).collect();
        println!(
            "\n{name}: {} accesses, {} distinct keys",
            trace.accesses.len(),
            trace.distinct
        );
        println!(
            "{:>13} {:>7} | {:>15} {:>15} | {:>15} {:>15}",
            "capacity", "optimum", "ours quick", "ours moka", "raw quick_cache", "raw moka"
        );
        for share in SHARES {
            let capacity = ((trace.distinct as f64 * share) as usize).max(1);
            let best = optimum(&trace, capacity);
            let cell = |ratio: f64| format!("{ratio:.3} ({:.2}x)", ratio / best);
            println!(
                "{:>13} {:>7.3} | {:>15} {:>15} | {:>15} {:>15}",
                format!("{capacity} ({:.0}%)", share * 100.0),
                best,
                cell(through_cache(&trace, capacity, Engine::QuickCache, &names)),
                cell(through_cache(&trace, capacity, Engine::Moka, &names)),
                cell(raw_quick_cache(&trace, capacity)),
                cell(raw_moka(&trace, capacity)),
            );
        }
    }
}
