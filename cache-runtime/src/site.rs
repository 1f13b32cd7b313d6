//! What each key template of a cache did: the counters and the origin call
//! times behind the labelled metrics (see `prometheus.rs`). A `#[cached]`
//! function finds its site once (kept in its `static`), so a hit counts on
//! it as on the cache's own counters: a store to this thread's stripe, no
//! look-up by name, nothing that other threads write.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use crate::stats::{Counter, Counters};

/// The template of calls through the [`Cache`](crate::Cache) handle.
pub(crate) const HANDLE_TEMPLATE: &str = "-";

/// Upper bounds of the origin call time buckets, in seconds.
pub(crate) const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One key template of one cache.
pub(crate) struct Site {
    pub(crate) template: &'static str,
    pub(crate) counters: Counters,
    pub(crate) origin: Histogram,
    /// A `#[cached]` function of this template has a shared tier at hand
    /// and keeps its values in process, its value type not being serde.
    pub(crate) local_only: std::sync::atomic::AtomicBool,
    /// Calls not cached, their key being longer than
    /// [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES).
    pub(crate) keys_too_long: AtomicU64,
}

impl Site {
    fn new(template: &'static str) -> Site {
        Site {
            template,
            counters: Counters::new(),
            origin: Histogram::default(),
            local_only: std::sync::atomic::AtomicBool::new(false),
            keys_too_long: AtomicU64::new(0),
        }
    }

    pub(crate) fn sum(&self, counter: Counter) -> u64 {
        self.counters.sum(counter)
    }
}

/// Durations in [`BUCKETS`]: counted on the miss path only (an origin call
/// costs far more than an atomic add).
#[derive(Default)]
pub(crate) struct Histogram {
    /// Calls at most each bound (not cumulative); the last is above all.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub(crate) fn record(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let at = BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(BUCKETS.len());
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Cumulative counts per bound (the last: all calls), and the sum in
    /// seconds.
    pub(crate) fn snapshot(&self) -> ([u64; BUCKETS.len() + 1], f64) {
        let mut cumulative = [0; BUCKETS.len() + 1];
        let mut total = 0;
        for (slot, bucket) in cumulative.iter_mut().zip(&self.buckets) {
            total += bucket.load(Ordering::Relaxed);
            *slot = total;
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (cumulative, sum)
    }
}

/// The sites of one cache, by template.
pub(crate) struct Sites {
    by_template: RwLock<HashMap<&'static str, Arc<Site>>>,
    /// Calls through the handle, found without a look-up.
    handle: Arc<Site>,
}

impl Sites {
    pub(crate) fn new() -> Sites {
        let handle = Arc::new(Site::new(HANDLE_TEMPLATE));
        let by_template = HashMap::from([(HANDLE_TEMPLATE, Arc::clone(&handle))]);
        Sites {
            by_template: RwLock::new(by_template),
            handle,
        }
    }

    pub(crate) fn handle(&self) -> &Site {
        &self.handle
    }

    /// The site of `template`, made on first use. Templates come from the
    /// macros' literals, so they are few.
    pub(crate) fn get(&self, template: &'static str) -> Arc<Site> {
        if let Some(site) = self.by_template.read().get(template) {
            return Arc::clone(site);
        }
        Arc::clone(
            self.by_template
                .write()
                .entry(template)
                .or_insert_with(|| Arc::new(Site::new(template))),
        )
    }

    /// Every site, sorted by template.
    pub(crate) fn all(&self) -> Vec<Arc<Site>> {
        let mut sites: Vec<_> = self.by_template.read().values().cloned().collect();
        sites.sort_by_key(|site| site.template);
        sites
    }
}
