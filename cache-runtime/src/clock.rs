//! Time for freshness checks: a coarse monotonic clock (a few nanoseconds a
//! read, a few milliseconds of resolution), or a manual clock in tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A point in time in clock ticks (1/2^32 s).
pub(crate) type Ticks = u64;

pub(crate) fn ticks(duration: Duration) -> Ticks {
    let coarse = coarsetime::Duration::new(duration.as_secs(), duration.subsec_nanos());
    coarse.as_ticks()
}

pub(crate) fn duration(ticks: Ticks) -> Duration {
    let coarse = coarsetime::Duration::from_ticks(ticks);
    Duration::new(coarse.as_secs(), coarse.subsec_nanos())
}

/// The clock a cache reads.
#[derive(Clone, Default)]
pub(crate) enum Clock {
    #[default]
    Coarse,
    Manual(ManualClock),
}

impl Clock {
    #[inline]
    pub(crate) fn now(&self) -> Ticks {
        match self {
            // The variant that does not update coarsetime's shared "recent"
            // instant: a hit writes no memory that other threads write.
            Clock::Coarse => coarsetime::Instant::now_without_cache_update().as_ticks(),
            Clock::Manual(manual) => manual.now.load(Ordering::Acquire),
        }
    }
}

/// A clock that moves only when told to, for tests of expiry and
/// stale-while-revalidate that must not depend on the machine's speed.
///
/// ```
/// use std::time::Duration;
/// use cache_runtime::{Cache, testing::ManualClock};
///
/// # tokio_test();
/// # fn tokio_test() { let rt = tokio::runtime::Builder::new_current_thread().build().unwrap(); rt.block_on(async {
/// let clock = ManualClock::new();
/// let cache = Cache::builder().clock(clock.clone()).build().unwrap();
/// cache.set("k", 1u32, Duration::from_secs(10)).await;
/// clock.advance(Duration::from_secs(11));
/// assert_eq!(cache.get::<u32>("k").await, None);
/// # }) }
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at an arbitrary start.
    pub fn new() -> Self {
        ManualClock {
            now: Arc::new(AtomicU64::new(ticks(Duration::from_secs(1_000)))),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(ticks(by), Ordering::AcqRel);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}
