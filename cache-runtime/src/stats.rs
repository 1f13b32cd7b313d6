//! Counters that a hit can bump without touching memory that other threads
//! write, and without a read-modify-write: a thread owns one stripe of
//! every cache's counters (claimed from a global pool while the thread
//! lives), is the only writer of that stripe, and so can add with a plain
//! load and store. Threads beyond the pool share an overflow stripe, with
//! atomic adds. Stripes are summed only when somebody reads the statistics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

/// Stripes owned by one thread each; the one after them is shared.
const OWNED: usize = 64;
const OVERFLOW: usize = OWNED;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Counter {
    Hit,
    Miss,
    Set,
    Delete,
    Error,
    StaleServed,
    Load,
    L2Hit,
    L2Miss,
    L2Set,
    L2Error,
    L2Undecodable,
    L2FillRejected,
    L2Skipped,
    FailSafe,
    OriginTimeout,
    RefreshAhead,
    Warmed,
    TagInvalidation,
}

const COUNTERS: usize = 19;

#[derive(Default)]
struct Stripe([AtomicU64; COUNTERS]);

pub(crate) struct Counters {
    stripes: Box<[CachePadded<Stripe>]>,
}

/// Which owned stripes are taken by a living thread.
static TAKEN: [AtomicBool; OWNED] = [const { AtomicBool::new(false) }; OWNED];

/// This thread's stripe; gives it back when the thread ends.
struct Owned(usize);

impl Owned {
    fn claim() -> Owned {
        // Acquire: the previous owner's last adds (before its Release on
        // exit) are visible to this thread's loads.
        (0..OWNED)
            .find(|&i| {
                TAKEN[i]
                    .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            })
            .map_or(Owned(OVERFLOW), Owned)
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if self.0 != OVERFLOW {
            TAKEN[self.0].store(false, Ordering::Release);
        }
    }
}

thread_local! {
    static STRIPE: Owned = Owned::claim();
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            stripes: (0..=OWNED)
                .map(|_| CachePadded::new(Stripe::default()))
                .collect(),
        }
    }

    /// Adds `n`; never lost, however many threads count.
    #[inline]
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        // A thread whose stripe is gone (counting from another
        // thread-local's destructor) uses the shared one.
        let index = STRIPE.try_with(|s| s.0).unwrap_or(OVERFLOW);
        let cell = &self.stripes[index].0[counter as usize];
        if index == OVERFLOW {
            cell.fetch_add(n, Ordering::Relaxed);
        } else {
            // This thread is the stripe's only writer.
            cell.store(cell.load(Ordering::Relaxed) + n, Ordering::Relaxed);
        }
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
    /// Values found in the shared tier (Redis) after a miss in the
    /// in-process tier.
    pub l2_hits: u64,
    /// Lookups in the shared tier that found no usable value (absent,
    /// expired, invalidated or undecodable).
    pub l2_misses: u64,
    /// Values written to the shared tier.
    pub l2_sets: u64,
    /// Shared-tier calls that failed (timeout, connection, server error);
    /// the call went on without the shared tier.
    pub l2_errors: u64,
    /// Shared-tier values that did not decode as the expected type
    /// (another type or format, truncated, garbage, oversized): counted as
    /// misses too, and overwritten by the next fill.
    pub l2_undecodable: u64,
    /// Fills not written because an invalidation newer than their origin
    /// read covers the key (on any instance), or because they came later
    /// than the fill window.
    pub l2_fills_rejected: u64,
    /// Shared-tier calls not made because the circuit breaker was open:
    /// the call went on without the shared tier, without waiting.
    pub l2_skipped: u64,
    /// The circuit breaker's state now.
    pub breaker: crate::BreakerState,
    /// How many times the circuit breaker opened.
    pub breaker_opens: u64,
    /// Invalidations that could not reach Redis and were queued, to be
    /// replayed (and announced to the other instances) once it is back.
    pub invalidations_queued: u64,
    /// Invalidations waiting in that queue now.
    pub invalidations_pending: u64,
    /// Times the queue was replaced by one clear of the namespace in Redis
    /// (replayed on recovery instead of it): it was full, or the replay of
    /// an invalidation failed three times in a row.
    pub invalidation_queue_overflows: u64,
    /// Calls whose origin failed and that were answered with an older
    /// value instead of the error (`fail_safe`, or within `stale`).
    pub fail_safe_served: u64,
    /// Calls answered with the value at hand because the origin took longer
    /// than `timeout` (counted in `stale_served` too); the origin call went
    /// on and filled the cache.
    pub origin_timeouts: u64,
    /// Refreshes started ahead of expiry (`refresh_ahead`): a hit on a
    /// value past that share of its TTL answered at once and started one.
    pub refreshes_ahead: u64,
    /// Values stored by [`Cache::warm_ids`](crate::Cache::warm_ids) and
    /// [`Cache::warm_stream`](crate::Cache::warm_stream) (see
    /// [`WarmReport::stored`](crate::WarmReport::stored)); not those of
    /// [`Cache::warm`](crate::Cache::warm), which are sets.
    pub warmed: u64,
    /// Tags invalidated in process: by this instance
    /// ([`Cache::invalidate_tag`](crate::Cache::invalidate_tag),
    /// `#[invalidates(tags = ..)]`) and by the others, through the
    /// backplane. Each is one write, whatever the number of values tagged.
    pub tag_invalidations: u64,
    /// `#[cached]` functions (key templates) that keep their values in
    /// this process although the cache has a shared tier, their value type
    /// not being serde: see [`Health::local_only`](crate::Health::local_only).
    pub local_only_functions: u64,
    /// Calls not cached because their key was longer than
    /// [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES).
    pub keys_too_long: u64,
    /// Markers or values in Redis that made no sense, each read as an
    /// invalidation (see [`Health::last_corrupt`](crate::Health::last_corrupt)).
    pub l2_corrupt: u64,
    /// Times this instance fell behind the other instances' invalidations
    /// (a flood of them, or hooks slower than they arrive) and caught up
    /// by subscribing again and emptying its in-process tier, instead of
    /// queueing them without end.
    pub backplane_resyncs: u64,
}

impl Stats {
    /// `(hits + l2_hits) / (hits + misses)`: the share of calls answered
    /// without an origin call of their own, from process or from Redis; 0
    /// before any lookup.
    ///
    /// ```
    /// let stats = cache_runtime::Stats::default();
    /// assert_eq!(stats.hit_rate_with_redis(), 0.0);
    /// ```
    pub fn hit_rate_with_redis(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            0.0
        } else {
            (self.hits + self.l2_hits) as f64 / lookups as f64
        }
    }

    /// `hits / (hits + misses)`, or 0 before any lookup: the in-process
    /// tier's share.
    pub fn hit_rate(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            0.0
        } else {
            self.hits as f64 / lookups as f64
        }
    }
}
