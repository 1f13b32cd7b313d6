//! The circuit breaker around the shared tier.
//!
//! Closed, calls go to Redis, and consecutive failures are counted; at the
//! threshold (or at once when an invalidation fails: Redis then holds
//! values this instance knows to be invalid) it opens. Open, no call goes
//! to Redis: lookups are misses, fills are skipped, invalidations are
//! queued. After the cool-down one probe runs (half-open): a `PING`, then
//! the queued invalidations in order; when every one went through, the
//! breaker closes. Callers never run the probe: they never wait for Redis
//! while it is not closed.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

/// The state of the circuit breaker around the shared tier (Redis).
///
/// ```
/// use cache_runtime::BreakerState;
/// assert_eq!(BreakerState::HalfOpen.to_string(), "half-open");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls go to Redis.
    #[default]
    Closed,
    /// Redis failed: no call goes to it; the cache runs on its in-process
    /// tier and the origin until a probe succeeds.
    Open,
    /// A probe runs: a `PING`, then the invalidations queued while Redis
    /// was away. Calls still skip Redis.
    HalfOpen,
}

impl BreakerState {
    fn from_u8(n: u8) -> BreakerState {
        match n {
            0 => BreakerState::Closed,
            1 => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        })
    }
}

/// A change of state, to be told to the hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transition {
    pub(crate) from: BreakerState,
    pub(crate) to: BreakerState,
}

/// The breaker's state, shared by every caller of one Redis connection.
pub(crate) struct Breaker {
    state: AtomicU8,
    failures: AtomicU32,
    threshold: u32,
    pub(crate) cooldown: Duration,
    opened: AtomicU64,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            state: AtomicU8::new(BreakerState::Closed as u8),
            failures: AtomicU32::new(0),
            threshold: threshold.max(1),
            cooldown,
            opened: AtomicU64::new(0),
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Whether a call may go to Redis now.
    #[inline]
    pub(crate) fn allows(&self) -> bool {
        self.state() == BreakerState::Closed
    }

    /// Whether an invalidation may go to Redis now: closed, or half-open.
    /// While the probe replays what was queued, new invalidations go at
    /// once: queued, they would return at once, and a caller invalidating
    /// in a loop could queue them faster than the probe replays them, so
    /// that the queue, and the breaker, never closed.
    #[inline]
    pub(crate) fn takes_invalidations(&self) -> bool {
        self.state() != BreakerState::Open
    }

    /// How many times the breaker opened from closed.
    pub(crate) fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// A call went through.
    pub(crate) fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// A call failed; opens at the threshold of consecutive failures.
    pub(crate) fn failure(&self) -> Option<Transition> {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.threshold {
            self.trip()
        } else {
            None
        }
    }

    /// Opens now, if closed.
    pub(crate) fn trip(&self) -> Option<Transition> {
        let opened = self.change(BreakerState::Closed, BreakerState::Open);
        if opened.is_some() {
            self.opened.fetch_add(1, Ordering::Relaxed);
        }
        opened
    }

    /// The probe starts.
    pub(crate) fn half_open(&self) -> Option<Transition> {
        self.change(BreakerState::Open, BreakerState::HalfOpen)
    }

    /// The probe failed.
    pub(crate) fn reopen(&self) -> Option<Transition> {
        self.change(BreakerState::HalfOpen, BreakerState::Open)
    }

    /// The probe succeeded and nothing is left to replay.
    pub(crate) fn close(&self) -> Option<Transition> {
        let closed = self.change(BreakerState::HalfOpen, BreakerState::Closed);
        if closed.is_some() {
            self.failures.store(0, Ordering::Relaxed);
        }
        closed
    }

    fn change(&self, from: BreakerState, to: BreakerState) -> Option<Transition> {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Transition { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_at_the_threshold_and_closes_only_through_a_probe() {
        let breaker = Breaker::new(3, Duration::from_secs(1));
        assert!(breaker.failure().is_none());
        breaker.success();
        assert!(breaker.failure().is_none());
        assert!(breaker.failure().is_none());
        let opened = breaker.failure().unwrap();
        assert_eq!(
            (opened.from, opened.to),
            (BreakerState::Closed, BreakerState::Open)
        );
        assert!(!breaker.allows());
        // Only one transition per change, however many callers fail.
        assert!(breaker.failure().is_none());
        assert!(!breaker.takes_invalidations());
        assert!(breaker.close().is_none(), "closes from half-open only");
        assert_eq!(breaker.half_open().unwrap().to, BreakerState::HalfOpen);
        assert!(!breaker.allows());
        assert!(breaker.takes_invalidations());
        assert_eq!(breaker.reopen().unwrap().to, BreakerState::Open);
        breaker.half_open();
        assert_eq!(breaker.close().unwrap().to, BreakerState::Closed);
        assert!(breaker.allows());
        assert_eq!(breaker.opened(), 1);
        // The count starts again after closing.
        assert!(breaker.failure().is_none());
    }

    #[test]
    fn a_trip_opens_at_once() {
        let breaker = Breaker::new(5, Duration::from_secs(1));
        assert_eq!(breaker.trip().unwrap().to, BreakerState::Open);
        assert!(breaker.trip().is_none());
        assert_eq!(breaker.state(), BreakerState::Open);
    }
}
