//! Prometheus text of a cache and its named caches: counters labelled by
//! cache and key template (never a resolved key, so the series stay as few
//! as the templates), gauges of the in-process tier, origin call times.

use std::fmt::Write;

use crate::site::{Site, BUCKETS};
use crate::stats::Counter;
use crate::{BreakerState, Cache};

/// The counters with a `template` label: name, help, the site counter and
/// an extra label.
const BY_TEMPLATE: [(&str, &str, Counter, &str); 9] = [
    (
        "cache_hits_total",
        "Calls answered from the cache, by tier (stale answers included).",
        Counter::Hit,
        "tier=\"l1\"",
    ),
    ("", "", Counter::L2Hit, "tier=\"l2\""),
    (
        "cache_misses_total",
        "Calls that found no fresh value in process (callers that waited for another's origin call included).",
        Counter::Miss,
        "",
    ),
    (
        "cache_sets_total",
        "Values stored in process.",
        Counter::Set,
        "",
    ),
    (
        "cache_origin_calls_total",
        "Origin calls made.",
        Counter::Load,
        "",
    ),
    (
        "cache_stale_served_total",
        "Stale values served while one caller refreshed them, or after an origin time-out.",
        Counter::StaleServed,
        "",
    ),
    (
        "cache_fail_safe_served_total",
        "Calls whose origin failed, answered with an older value.",
        Counter::FailSafe,
        "",
    ),
    (
        "cache_origin_timeouts_total",
        "Calls answered with the value at hand after the origin's time-out.",
        Counter::OriginTimeout,
        "",
    ),
    (
        "cache_l2_misses_total",
        "Lookups in Redis that found no usable value.",
        Counter::L2Miss,
        "",
    ),
];

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

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `name{cache="..",template=".."[,extra]} value`.
fn sample(
    out: &mut String,
    name: &str,
    cache: &str,
    template: Option<&str>,
    extra: &str,
    value: impl std::fmt::Display,
) {
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

/// Renders `root` and its named caches.
pub(crate) fn render(root: &Cache) -> String {
    let mut caches = vec![root.clone()];
    caches.extend(root.named_caches());
    let sites: Vec<(Cache, Vec<std::sync::Arc<Site>>)> =
        caches.iter().map(|c| (c.clone(), c.sites())).collect();
    let mut out = String::new();

    let mut name = "";
    for (metric, help, counter, extra) in BY_TEMPLATE {
        if !metric.is_empty() {
            name = metric;
            header(&mut out, name, "counter", help);
        }
        for (cache, sites) in &sites {
            for site in sites {
                let value = site.sum(counter);
                sample(
                    &mut out,
                    name,
                    cache.name(),
                    Some(site.template),
                    extra,
                    value,
                );
            }
        }
    }

    let stats: Vec<_> = caches.iter().map(|c| (c.name(), c.stats())).collect();
    header(
        &mut out,
        "cache_deletes_total",
        "counter",
        "Keys removed by delete and invalidation.",
    );
    for (cache, s) in &stats {
        sample(&mut out, "cache_deletes_total", cache, None, "", s.deletes);
    }
    header(
        &mut out,
        "cache_errors_total",
        "counter",
        "Errors of the cache itself, never the origin's: kind=\"l2\" a failed Redis call, \"l2_undecodable\" a Redis value that did not decode, \"internal\" a value whose measure panicked.",
    );
    for (cache, s) in &stats {
        sample(
            &mut out,
            "cache_errors_total",
            cache,
            None,
            "kind=\"l2\"",
            s.l2_errors,
        );
        sample(
            &mut out,
            "cache_errors_total",
            cache,
            None,
            "kind=\"l2_undecodable\"",
            s.l2_undecodable,
        );
        sample(
            &mut out,
            "cache_errors_total",
            cache,
            None,
            "kind=\"internal\"",
            s.errors,
        );
    }
    for (metric, help, value) in [
        (
            "cache_l2_sets_total",
            "Values written to Redis.",
            (|s: &crate::Stats| s.l2_sets) as fn(&crate::Stats) -> u64,
        ),
        (
            "cache_l2_fills_rejected_total",
            "Fills to Redis refused because a newer invalidation covers the key.",
            |s| s.l2_fills_rejected,
        ),
        (
            "cache_l2_skipped_total",
            "Redis calls not made because the circuit breaker was open.",
            |s| s.l2_skipped,
        ),
    ] {
        header(&mut out, metric, "counter", help);
        for (cache, s) in &stats {
            sample(&mut out, metric, cache, None, "", value(s));
        }
    }
    header(
        &mut out,
        "cache_items",
        "gauge",
        "Entries in the in-process tier.",
    );
    for (cache, s) in &stats {
        sample(&mut out, "cache_items", cache, None, "", s.entries);
    }
    header(
        &mut out,
        "cache_bytes",
        "gauge",
        "Estimated bytes in the in-process tier.",
    );
    for (cache, s) in &stats {
        sample(&mut out, "cache_bytes", cache, None, "", s.l1_bytes);
    }

    if root.has_shared_tier() {
        let s = root.stats();
        header(
            &mut out,
            "cache_breaker_state",
            "gauge",
            "The circuit breaker around Redis: 1 for its current state.",
        );
        for state in [
            BreakerState::Closed,
            BreakerState::HalfOpen,
            BreakerState::Open,
        ] {
            let extra = format!("state=\"{state}\"");
            sample(
                &mut out,
                "cache_breaker_state",
                root.name(),
                None,
                &extra,
                u8::from(s.breaker == state),
            );
        }
        header(
            &mut out,
            "cache_breaker_opens_total",
            "counter",
            "Times the circuit breaker opened.",
        );
        sample(
            &mut out,
            "cache_breaker_opens_total",
            root.name(),
            None,
            "",
            s.breaker_opens,
        );
        header(
            &mut out,
            "cache_invalidations_pending",
            "gauge",
            "Invalidations waiting for Redis to come back.",
        );
        sample(
            &mut out,
            "cache_invalidations_pending",
            root.name(),
            None,
            "",
            s.invalidations_pending,
        );
    }

    let name = "cache_operation_duration_seconds";
    header(
        &mut out,
        name,
        "histogram",
        "How long operations took: operation=\"origin\" the origin calls.",
    );
    for (cache, sites) in &sites {
        for site in sites {
            let (cumulative, sum) = site.origin.snapshot();
            let bucket = format!("{name}_bucket");
            for (le, count) in BUCKETS.iter().zip(cumulative) {
                let extra = format!("operation=\"origin\",le=\"{le}\"");
                sample(
                    &mut out,
                    &bucket,
                    cache.name(),
                    Some(site.template),
                    &extra,
                    count,
                );
            }
            let count = cumulative[BUCKETS.len()];
            sample(
                &mut out,
                &bucket,
                cache.name(),
                Some(site.template),
                "operation=\"origin\",le=\"+Inf\"",
                count,
            );
            sample(
                &mut out,
                &format!("{name}_sum"),
                cache.name(),
                Some(site.template),
                "operation=\"origin\"",
                sum,
            );
            sample(
                &mut out,
                &format!("{name}_count"),
                cache.name(),
                Some(site.template),
                "operation=\"origin\"",
                count,
            );
        }
    }
    out
}
