//! Typed events for observers: metrics adapters, logs, tests.

use std::time::Duration;

use crate::BreakerState;

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
    /// Every value carrying `tag` was invalidated in process (by this
    /// instance, or by another through the backplane).
    InvalidateTag {
        /// The tag.
        tag: &'a str,
    },
    /// A call to the shared tier (Redis) failed; the cache went on without
    /// it (a miss, or a fill not written). The error never holds a value.
    L2Error {
        /// What was attempted: `GET`, `FILL`, `INVALIDATE`, `CLEAR`.
        op: &'a str,
        /// Why it failed.
        error: &'a (dyn std::error::Error + 'static),
    },
    /// The circuit breaker around the shared tier changed state.
    Breaker {
        /// The state before.
        from: BreakerState,
        /// The state now.
        to: BreakerState,
    },
    /// The origin failed and an older value was served instead of its
    /// error (`fail_safe`, or within `stale`).
    FailSafe {
        /// The key template.
        template: &'a str,
    },
    /// A hit on a value past `refresh_ahead` of its TTL started a refresh
    /// in the background.
    RefreshAhead {
        /// The key template.
        template: &'a str,
    },
    /// A batch of warming ended ([`Cache::warm_ids`](crate::Cache::warm_ids)):
    /// its progress.
    Warmed {
        /// Values stored.
        stored: u64,
        /// Ids already cached or being loaded.
        skipped: u64,
        /// Ids the loader failed or returned nothing for.
        failed: u64,
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

    /// Called for each event of the cache named `cache` (`default`, or the
    /// name given to [`Cache::named`](crate::Cache::named): named caches
    /// share their parent's hooks). By default, [`Hooks::on_event`].
    ///
    /// ```
    /// use cache_runtime::{Cache, Event, Hooks};
    ///
    /// struct Log;
    /// impl Hooks for Log {
    ///     fn on_event(&self, _: &Event<'_>) {}
    ///     fn on_cache_event(&self, cache: &str, event: &Event<'_>) {
    ///         if let Event::Miss { template, .. } = event {
    ///             println!("{cache}: miss on {template}");
    ///         }
    ///     }
    /// }
    /// let cache = Cache::builder().hooks(Log).build().unwrap();
    /// # drop(cache);
    /// ```
    fn on_cache_event(&self, cache: &str, event: &Event<'_>) {
        let _ = cache;
        self.on_event(event);
    }
}

/// Shared hooks: keep an `Arc` to read what they gathered, hand a clone to
/// the cache.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use cache_runtime::{Cache, Event, Hooks};
///
/// #[derive(Default)]
/// struct Sets(AtomicU64);
/// impl Hooks for Sets {
///     fn on_event(&self, event: &Event<'_>) {
///         if let Event::Set { .. } = event {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
///
/// let sets = Arc::new(Sets::default());
/// let cache = Cache::builder().hooks(Arc::clone(&sets)).build().unwrap();
/// # drop(cache);
/// ```
impl<H: Hooks + ?Sized> Hooks for std::sync::Arc<H> {
    fn on_event(&self, event: &Event<'_>) {
        (**self).on_event(event);
    }

    fn on_cache_event(&self, cache: &str, event: &Event<'_>) {
        (**self).on_cache_event(cache, event);
    }
}
