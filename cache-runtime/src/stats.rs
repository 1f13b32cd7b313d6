//! Counters that a hit can bump without touching memory that other threads
//! write: one cache-line-padded stripe per thread (up to `STRIPES`), summed
//! only when somebody reads the statistics.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

const STRIPES: usize = 32;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Counter {
    Hit,
    Miss,
    Set,
    Delete,
    Error,
    StaleServed,
    Load,
}

const COUNTERS: usize = 7;

#[derive(Default)]
struct Stripe([AtomicU64; COUNTERS]);

pub(crate) struct Counters {
    stripes: Box<[CachePadded<Stripe>]>,
}

fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|index| {
        let mut i = index.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
            index.set(i);
        }
        i
    })
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            stripes: (0..STRIPES)
                .map(|_| CachePadded::new(Stripe::default()))
                .collect(),
        }
    }

    /// Adds `n` to this thread's stripe: uncontended unless more than
    /// `STRIPES` threads count at once, and never lost.
    #[inline]
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        self.stripes[stripe_index()].0[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sum(&self, counter: Counter) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0[counter as usize].load(Ordering::Relaxed))
            .sum()
    }
}

/// A snapshot of a cache's counters.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use cache_runtime::Cache;
/// let cache = Cache::builder().build().unwrap();
/// cache.set("k", 1u8, std::time::Duration::from_secs(60)).await;
/// cache.get::<u8>("k").await;
/// cache.get::<u8>("absent").await;
/// let stats = cache.stats();
/// assert_eq!((stats.hits, stats.misses, stats.sets), (1, 1, 1));
/// assert_eq!(stats.hit_rate(), 0.5);
/// # });
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Lookups answered with a fresh value.
    pub hits: u64,
    /// Lookups that found no fresh value, including callers that waited
    /// for another caller's origin call (see `loads`).
    pub misses: u64,
    /// Origin calls made. With single flight, many misses on one key make
    /// one load: `misses - loads` is what waiting on a running call saved.
    pub loads: u64,
    /// Values stored.
    pub sets: u64,
    /// Keys removed by `delete` and invalidation.
    pub deletes: u64,
    /// Errors of the cache itself (never the origin's errors).
    pub errors: u64,
    /// Stale values served while a refresh ran.
    pub stale_served: u64,
    /// Entries in the in-process tier.
    pub entries: u64,
    /// Estimated bytes in the in-process tier.
    pub l1_bytes: u64,
}

impl Stats {
    /// `hits / (hits + misses)`, or 0 before any lookup.
    pub fn hit_rate(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            0.0
        } else {
            self.hits as f64 / lookups as f64
        }
    }
}
