//! Hooks that record every event through the `metrics` crate (the
//! `metrics` feature), for services whose metrics go through its recorder
//! (Prometheus, StatsD, OpenTelemetry exporters).

use std::collections::HashMap;

use metrics::{Counter, Gauge, Histogram};
use parking_lot::RwLock;

use crate::hooks::{Event, Hooks, Tier};
use crate::BreakerState;

/// [`Hooks`] that record to the `metrics` crate's recorder, under the
/// names and labels of [`Cache::prometheus_text`](crate::Cache::prometheus_text):
/// `cache_hits_total{cache, template, tier}`, `cache_misses_total`,
/// `cache_stale_served_total`, `cache_fail_safe_served_total`,
/// `cache_refreshes_ahead_total`,
/// `cache_sets_total`, `cache_origin_calls_total` and the histogram
/// `cache_operation_duration_seconds{operation="origin"}` by cache and
/// template; `cache_deletes_total{cache}`, `cache_errors_total{cache,
/// kind="l2", op}`, `cache_warmed_total{cache}`, `cache_tag_invalidations_total{cache}` and the gauge `cache_breaker_open{cache}` (1 while the
/// breaker is not closed) by cache. Labels are templates, never keys.
///
/// The handles of a cache and template are registered with the recorder
/// on their first event and kept: an event costs a map look-up by name
/// and the recorder's own increment. Install the recorder before the
/// first event.
///
/// ```
/// use cache_runtime::{Cache, MetricsHooks};
/// let cache = Cache::builder().hooks(MetricsHooks::new()).build().unwrap();
/// # drop(cache);
/// ```
#[derive(Default)]
pub struct MetricsHooks {
    /// By cache, then by template.
    sites: RwLock<HashMap<String, HashMap<String, SiteHandles>>>,
    caches: RwLock<HashMap<String, CacheHandles>>,
}

struct SiteHandles {
    hits_l1: Counter,
    hits_l2: Counter,
    misses: Counter,
    stale: Counter,
    fail_safe: Counter,
    refreshes_ahead: Counter,
    sets: Counter,
    origin_calls: Counter,
    origin_time: Histogram,
}

struct CacheHandles {
    deletes: Counter,
    warmed: Counter,
    tag_invalidations: Counter,
    breaker_open: Gauge,
}

impl SiteHandles {
    fn new(cache: &str, template: &str) -> SiteHandles {
        let labels = || {
            [
                ("cache", cache.to_owned()),
                ("template", template.to_owned()),
            ]
        };
        let tier = |tier: &'static str| {
            let [c, t] = labels();
            metrics::counter!("cache_hits_total", &[c, t, ("tier", tier.to_owned())])
        };
        SiteHandles {
            hits_l1: tier("l1"),
            hits_l2: tier("l2"),
            misses: metrics::counter!("cache_misses_total", &labels()),
            stale: metrics::counter!("cache_stale_served_total", &labels()),
            fail_safe: metrics::counter!("cache_fail_safe_served_total", &labels()),
            refreshes_ahead: metrics::counter!("cache_refreshes_ahead_total", &labels()),
            sets: metrics::counter!("cache_sets_total", &labels()),
            origin_calls: metrics::counter!("cache_origin_calls_total", &labels()),
            origin_time: {
                let [c, t] = labels();
                metrics::histogram!(
                    "cache_operation_duration_seconds",
                    &[c, t, ("operation", "origin".to_owned())]
                )
            },
        }
    }
}

impl MetricsHooks {
    /// Hooks with nothing registered yet.
    ///
    /// ```
    /// let hooks = cache_runtime::MetricsHooks::new();
    /// # drop(hooks);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    fn with_site(&self, cache: &str, template: &str, f: impl FnOnce(&SiteHandles)) {
        if let Some(site) = self.sites.read().get(cache).and_then(|t| t.get(template)) {
            return f(site);
        }
        let mut sites = self.sites.write();
        let site = sites
            .entry(cache.to_owned())
            .or_default()
            .entry(template.to_owned())
            .or_insert_with(|| SiteHandles::new(cache, template));
        f(site);
    }

    fn with_cache(&self, cache: &str, f: impl FnOnce(&CacheHandles)) {
        if let Some(handles) = self.caches.read().get(cache) {
            return f(handles);
        }
        let mut caches = self.caches.write();
        let handles = caches.entry(cache.to_owned()).or_insert_with(|| {
            let label = [("cache", cache.to_owned())];
            CacheHandles {
                deletes: metrics::counter!("cache_deletes_total", &label),
                warmed: metrics::counter!("cache_warmed_total", &label),
                tag_invalidations: metrics::counter!("cache_tag_invalidations_total", &label),
                breaker_open: metrics::gauge!("cache_breaker_open", &label),
            }
        });
        f(handles);
    }
}

impl Hooks for MetricsHooks {
    fn on_event(&self, event: &Event<'_>) {
        self.on_cache_event(crate::cache::DEFAULT_NAME, event);
    }

    fn on_cache_event(&self, cache: &str, event: &Event<'_>) {
        match *event {
            Event::Hit { template, tier } => self.with_site(cache, template, |s| match tier {
                Tier::L2 => s.hits_l2.increment(1),
                _ => s.hits_l1.increment(1),
            }),
            Event::Miss { template } => self.with_site(cache, template, |s| s.misses.increment(1)),
            Event::StaleServed { template } => {
                self.with_site(cache, template, |s| s.stale.increment(1))
            }
            Event::FailSafe { template } => {
                self.with_site(cache, template, |s| s.fail_safe.increment(1))
            }
            Event::RefreshAhead { template } => {
                self.with_site(cache, template, |s| s.refreshes_ahead.increment(1))
            }
            Event::Set { template } => self.with_site(cache, template, |s| s.sets.increment(1)),
            Event::OriginCall { template, elapsed } => self.with_site(cache, template, |s| {
                s.origin_calls.increment(1);
                s.origin_time.record(elapsed.as_secs_f64());
            }),
            Event::Warmed { stored, .. } => self.with_cache(cache, |c| c.warmed.increment(stored)),
            Event::InvalidateTag { .. } => {
                self.with_cache(cache, |c| c.tag_invalidations.increment(1))
            }
            Event::Invalidate { removed, .. } => {
                self.with_cache(cache, |c| c.deletes.increment(removed))
            }
            Event::L2Error { op, .. } => {
                let labels = [
                    ("cache", cache.to_owned()),
                    ("kind", "l2".to_owned()),
                    ("op", op.to_owned()),
                ];
                metrics::counter!("cache_errors_total", &labels).increment(1);
            }
            Event::Breaker { to, .. } => self.with_cache(cache, |c| {
                c.breaker_open
                    .set(f64::from(u8::from(to != BreakerState::Closed)));
            }),
        }
    }
}
