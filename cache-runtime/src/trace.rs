//! `tracing` events for what a cache does (the `tracing` feature), under
//! the target `cache_runtime`. Fields are the cache's name, the key
//! template, the operation and counts; never a value. Hits are not traced
//! (they are counted): a hit stays as cheap with the feature as without.

use crate::hooks::{Event, Tier};
use crate::BreakerState;

/// Traces `event` of the cache named `cache`.
pub(crate) fn event(cache: &str, event: &Event<'_>) {
    match *event {
        Event::Hit { template, tier } => {
            let tier = match tier {
                Tier::L1 => "l1",
                _ => "l2",
            };
            tracing::trace!(target: "cache_runtime", cache, template, tier, "hit");
        }
        Event::Miss { template } => {
            tracing::trace!(target: "cache_runtime", cache, template, "miss")
        }
        Event::StaleServed { template } => {
            tracing::debug!(target: "cache_runtime", cache, template, "stale value served")
        }
        Event::OriginCall { template, elapsed } => tracing::debug!(
            target: "cache_runtime",
            cache,
            template,
            elapsed_us = elapsed.as_micros() as u64,
            "origin call"
        ),
        Event::Set { template } => tracing::trace!(target: "cache_runtime", cache, template, "set"),
        Event::Invalidate { pattern, removed } => {
            tracing::debug!(target: "cache_runtime", cache, pattern, removed, "invalidated")
        }
        Event::InvalidateTag { tag } => {
            tracing::debug!(target: "cache_runtime", cache, tag, "tag invalidated")
        }
        Event::L2Error { op, error } => tracing::warn!(
            target: "cache_runtime",
            cache,
            op,
            error = %error,
            "Redis call failed; going on without the shared tier"
        ),
        Event::Breaker { from, to } => match to {
            BreakerState::Closed => tracing::info!(
                target: "cache_runtime",
                cache,
                from = %from,
                to = %to,
                "circuit breaker closed: Redis is used again"
            ),
            _ => tracing::warn!(
                target: "cache_runtime",
                cache,
                from = %from,
                to = %to,
                "circuit breaker changed: Redis is not used"
            ),
        },
        Event::FailSafe { template } => tracing::warn!(
            target: "cache_runtime",
            cache,
            template,
            "origin failed; answered with an older value"
        ),
        Event::Warmed {
            stored,
            skipped,
            failed,
        } => tracing::debug!(
            target: "cache_runtime",
            cache,
            stored,
            skipped,
            failed,
            "warming batch done"
        ),
        Event::RefreshAhead { template } => tracing::debug!(
            target: "cache_runtime",
            cache,
            template,
            "refresh ahead of expiry started"
        ),
    }
}
