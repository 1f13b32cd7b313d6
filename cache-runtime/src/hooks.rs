//! Typed events for observers: metrics adapters, logs, tests.

use std::time::Duration;

/// Where a value was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Tier {
    /// The in-process tier.
    L1,
    /// The shared tier.
    L2,
}

/// Something that happened in a cache. `template` is the key template of
/// the `#[cached]` function (`"order:<tenant>:<id>"`), or `"-"` for calls
/// through the [`Cache`](crate::Cache) handle: never a resolved key, so
/// labels built from it stay few.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A fresh value was served.
    Hit {
        /// The key template.
        template: &'a str,
        /// The tier that answered.
        tier: Tier,
    },
    /// No fresh value: the origin is called (or a running call joined).
    Miss {
        /// The key template.
        template: &'a str,
    },
    /// A stale value was served while one caller refreshes it.
    StaleServed {
        /// The key template.
        template: &'a str,
    },
    /// The origin was called; `elapsed` is how long it took.
    OriginCall {
        /// The key template.
        template: &'a str,
        /// How long the call took.
        elapsed: Duration,
    },
    /// A value was stored.
    Set {
        /// The key template.
        template: &'a str,
    },
    /// An invalidation removed `removed` keys.
    Invalidate {
        /// The pattern or key, resolved.
        pattern: &'a str,
        /// How many keys it removed.
        removed: u64,
    },
    /// A call to the shared tier (Redis) failed; the cache went on without
    /// it (a miss, or a fill not written). The error never holds a value.
    L2Error {
        /// What was attempted: `GET`, `FILL`, `INVALIDATE`, `CLEAR`.
        op: &'a str,
        /// Why it failed.
        error: &'a (dyn std::error::Error + 'static),
    },
}

/// Receives every [`Event`] of a cache. Keep it cheap: it runs on the
/// caller's thread, hits included.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use cache_runtime::{Event, Hooks};
///
/// #[derive(Default)]
/// struct CountHits(AtomicU64);
///
/// impl Hooks for CountHits {
///     fn on_event(&self, event: &Event<'_>) {
///         if let Event::Hit { .. } = event {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
/// ```
pub trait Hooks: Send + Sync + 'static {
    /// Called for each event.
    fn on_event(&self, event: &Event<'_>);
}
