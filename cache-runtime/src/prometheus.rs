//! Prometheus text of a cache and its named caches: counters labelled by
//! cache and key template (never a resolved key, so the series stay as few
//! as the templates), gauges of the in-process tier, origin call times.

use std::fmt::{Display, Write};
use std::sync::Arc;

use crate::site::{Site, BUCKETS};
use crate::stats::Counter;
use crate::{BreakerState, Cache, Stats};

/// A family: its name, help, and each series' extra label with what it
/// counts.
type Family<S> = (&'static str, &'static str, &'static [(S, &'static str)]);

/// The families with a `template` label; a series is a site counter.
const BY_TEMPLATE: [Family<Counter>; 10] = [
    (
        "cache_hits_total",
        "Calls answered from the cache, by tier (stale answers included).",
        &[(Counter::Hit, "tier=\"l1\""), (Counter::L2Hit, "tier=\"l2\"")],
    ),
    (
        "cache_misses_total",
        "Calls that found no fresh value in process (callers that waited for another's origin call included).",
        &[(Counter::Miss, "")],
    ),
    ("cache_sets_total", "Values stored in process.", &[(Counter::Set, "")]),
    ("cache_origin_calls_total", "Origin calls made.", &[(Counter::Load, "")]),
    (
        "cache_stale_served_total",
        "Stale values served while one caller refreshed them, or after an origin time-out.",
        &[(Counter::StaleServed, "")],
    ),
    (
        "cache_fail_safe_served_total",
        "Calls whose origin failed, answered with an older value.",
        &[(Counter::FailSafe, "")],
    ),
    (
        "cache_origin_timeouts_total",
        "Calls answered with the value at hand after the origin's time-out.",
        &[(Counter::OriginTimeout, "")],
    ),
    (
        "cache_refreshes_ahead_total",
        "Refreshes started ahead of expiry by a hit (refresh_ahead).",
        &[(Counter::RefreshAhead, "")],
    ),
    (
        "cache_warmed_total",
        "Values stored by warming.",
        &[(Counter::Warmed, "")],
    ),
    (
        "cache_l2_misses_total",
        "Lookups in Redis that found no usable value.",
        &[(Counter::L2Miss, "")],
    ),
];

type Read = fn(&Stats) -> u64;

/// The families with a `cache` label only, with their kind; a series reads
/// the cache's statistics.
const BY_CACHE: [(&str, Family<Read>); 8] = [
    ("counter", ("cache_deletes_total", "Keys removed by delete and invalidation.",
        &[(|s| s.deletes, "")]),
    ),
    ("counter", ("cache_tag_invalidations_total", "Tags invalidated in process, by this instance or another.",
        &[(|s| s.tag_invalidations, "")]),
    ),
    ("counter", ("cache_errors_total", "Errors of the cache itself, never the origin's: kind=\"l2\" a failed Redis call, \"l2_undecodable\" a Redis value that did not decode, \"internal\" a value whose measure panicked.",
        &[
            (|s| s.l2_errors, "kind=\"l2\""),
            (|s| s.l2_undecodable, "kind=\"l2_undecodable\""),
            (|s| s.errors, "kind=\"internal\""),
        ]),
    ),
    ("counter", ("cache_l2_sets_total", "Values written to Redis.", &[(|s| s.l2_sets, "")])),
    ("counter", ("cache_l2_fills_rejected_total", "Fills to Redis refused because a newer invalidation covers the key.",
        &[(|s| s.l2_fills_rejected, "")]),
    ),
    ("counter", ("cache_l2_skipped_total", "Redis calls not made because the circuit breaker was open.",
        &[(|s| s.l2_skipped, "")]),
    ),
    ("gauge", ("cache_items", "Entries in the in-process tier.", &[(|s| s.entries, "")])),
    ("gauge", ("cache_bytes", "Estimated bytes in the in-process tier.",
        &[(|s| s.l1_bytes, "")]),
    ),
];

/// The text being written.
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// `name{cache="..",template=".."[,extra]} value`.
    fn sample(
        &mut self,
        name: &str,
        cache: &str,
        template: Option<&str>,
        extra: &str,
        value: impl Display,
    ) {
        let out = &mut self.0;
        out.push_str(name);
        out.push_str("{cache=\"");
        label(out, cache);
        out.push('"');
        if let Some(template) = template {
            out.push_str(",template=\"");
            label(out, template);
            out.push('"');
        }
        if !extra.is_empty() {
            out.push(',');
            out.push_str(extra);
        }
        let _ = writeln!(out, "}} {value}");
    }
}

/// Writes `value` as a Prometheus label value.
fn label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Renders `root` and its named caches.
pub(crate) fn render(root: &Cache) -> String {
    let mut caches = vec![root.clone()];
    caches.extend(root.named_caches());
    let sites: Vec<(&str, Vec<Arc<Site>>)> = caches.iter().map(|c| (c.name(), c.sites())).collect();
    let stats: Vec<(&str, Stats)> = caches.iter().map(|c| (c.name(), c.stats())).collect();
    let mut text = Text(String::new());

    for (name, help, series) in BY_TEMPLATE {
        text.family(name, "counter", help);
        for &(counter, extra) in series {
            for (cache, sites) in &sites {
                for site in sites {
                    text.sample(name, cache, Some(site.template), extra, site.sum(counter));
                }
            }
        }
    }

    for (kind, (name, help, series)) in BY_CACHE {
        text.family(name, kind, help);
        for (cache, s) in &stats {
            for &(read, extra) in series {
                text.sample(name, cache, None, extra, read(s));
            }
        }
    }

    if root.has_l2() {
        let s = &stats[0].1;
        let name = "cache_breaker_state";
        text.family(
            name,
            "gauge",
            "The circuit breaker around Redis: 1 for its current state.",
        );
        for state in [
            BreakerState::Closed,
            BreakerState::HalfOpen,
            BreakerState::Open,
        ] {
            let extra = format!("state=\"{state}\"");
            text.sample(
                name,
                root.name(),
                None,
                &extra,
                u8::from(s.breaker == state),
            );
        }
        for (name, kind, help, value) in [
            (
                "cache_breaker_opens_total",
                "counter",
                "Times the circuit breaker opened.",
                s.breaker_opens,
            ),
            (
                "cache_backplane_resyncs_total",
                "counter",
                "Times this instance fell behind the others' invalidations and emptied its in-process tier to catch up.",
                s.backplane_resyncs,
            ),
            (
                "cache_invalidations_pending",
                "gauge",
                "Invalidations waiting for Redis to come back.",
                s.invalidations_pending,
            ),
        ] {
            text.family(name, kind, help);
            text.sample(name, root.name(), None, "", value);
        }
    }

    let name = "cache_operation_duration_seconds";
    text.family(
        name,
        "histogram",
        "How long operations took: operation=\"origin\" the origin calls.",
    );
    let (bucket, sum, count) = (
        format!("{name}_bucket"),
        format!("{name}_sum"),
        format!("{name}_count"),
    );
    for (cache, sites) in &sites {
        for site in sites {
            let template = Some(site.template);
            let (cumulative, seconds) = site.origin.snapshot();
            let bounds = BUCKETS
                .iter()
                .map(|le| le.to_string())
                .chain(["+Inf".to_owned()]);
            for (le, calls) in bounds.zip(cumulative) {
                let extra = format!("operation=\"origin\",le=\"{le}\"");
                text.sample(&bucket, cache, template, &extra, calls);
            }
            let calls = cumulative[BUCKETS.len()];
            text.sample(&sum, cache, template, "operation=\"origin\"", seconds);
            text.sample(&count, cache, template, "operation=\"origin\"", calls);
        }
    }
    text.0
}
