//! What a cache does while Redis is away, and how it comes back: the
//! circuit breaker's transitions, the queue of invalidations that could not
//! reach Redis, and the probe that replays them before the breaker closes.
//!
//! An invalidation that Redis did not take is queued and opens the breaker
//! at once: Redis may still hold what it invalidates, so no value is read
//! from Redis until the queue is replayed. The probe runs in a task of its
//! own, never in a caller: after each cool-down it pings Redis, replays the
//! queue in order (each replay also announces the invalidation to the
//! other instances), and closes the breaker when the queue is empty, under
//! the queue's lock, so that nothing queued is left behind. While it runs
//! (half-open), new invalidations go to Redis at once (a failure queues
//! them): queued, they would return at once, and a caller invalidating in
//! a loop would keep the queue from ever emptying. Reads still skip Redis.
//!
//! Between probes, while invalidations wait in the queue, Redis is pinged
//! every [`REPLAY_PING_EVERY`], and the queue is replayed the moment it
//! answers, without closing the breaker: the other instances may trust
//! Redis again as soon as it answers them, and must not read from it what
//! this one invalidated meanwhile.

use std::sync::Weak;
use std::time::Duration;

use super::write::send;
use super::{Report, SharedTier};
use crate::breaker::{BreakerState, Transition};
use crate::hooks::Event;
use crate::l2::coherent::Coherent;
use crate::l2::L2ErrorKind;
use crate::pending::Pending;

impl SharedTier {
    /// Queues `item` for the probe to replay, unless the breaker takes
    /// invalidations (closed or half-open) and the invalidation has not
    /// `failed` (then the caller sends it now
    /// and this returns `false`). A failed invalidation opens the breaker.
    pub(super) fn defer(&self, item: &Pending, failed: bool) -> bool {
        let mut pending = self.pending.lock();
        if !failed && self.breaker.takes_invalidations() {
            return false;
        }
        pending.push(item.clone());
        let opened = self.breaker.trip();
        drop(pending);
        if let Some(opened) = opened {
            self.breaker_changed(opened);
        }
        self.ensure_recovery();
        true
    }

    /// Tells the hooks; when the breaker opens from closed, stops trusting
    /// the in-process tier until the backplane has subscribed again (a Redis
    /// this instance cannot reach likely does not carry the other
    /// instances' invalidations to it either), and starts the probe.
    pub(super) fn breaker_changed(&self, change: Transition) {
        if let Some(root) = self.root() {
            root.emit(Event::Breaker {
                from: change.from,
                to: change.to,
            });
        }
        if change.to != BreakerState::Open {
            return;
        }
        // A probe that fails (half-open to open) says nothing new.
        if change.from != BreakerState::Closed {
            self.ensure_recovery();
            return;
        }
        if self.subscribe {
            self.in_sync.end();
            if let Some(task) = self.backplane.lock().as_ref() {
                task.abort();
            }
        }
        self.ensure_recovery();
    }

    /// Starts the probe task, once, in the current tokio runtime, while the
    /// breaker is not closed.
    pub(super) fn ensure_recovery(&self) {
        if self.breaker.allows() {
            return;
        }
        let mut task = self.recovery.lock();
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        // On the runtime the store's connection lives in: the probe uses
        // it, and that runtime drives the service (not, say, a runtime kept
        // for an occasional job).
        let Some(runtime) = self.runtime() else {
            return;
        };
        *task = Some(runtime.spawn(recover(self.this.clone())).abort_handle());
    }

    /// One probe: a ping, then the queue.
    async fn probe(&self, report: &dyn Report) -> Probe {
        let Some(store) = self.store_now() else {
            return Probe::Away;
        };
        match self.breaker.state() {
            BreakerState::Closed => return Probe::Closed,
            BreakerState::Open => {
                if let Some(change) = self.breaker.half_open() {
                    self.breaker_changed(change);
                }
            }
            BreakerState::HalfOpen => {}
        }
        let reopen = |probe| {
            if let Some(change) = self.breaker.reopen() {
                self.breaker_changed(change);
            }
            probe
        };
        if store.ping().await.is_err() {
            return reopen(Probe::Away);
        }
        // Redirects on every key: closing would only open again.
        if store.is_cluster_node().await.unwrap_or(false) {
            return reopen(Probe::Away);
        }
        if self.replay(store, report, usize::MAX).await.is_err() {
            return reopen(Probe::ReplayFailed);
        }
        Probe::Closed
    }

    /// Replays the queue in order, at most `most` invalidations; once it is
    /// empty, closes the breaker (under the queue's lock) unless `most`
    /// is bounded (a replay between probes). Fails with the kind of the
    /// first replay that failed.
    async fn replay(
        &self,
        store: &Coherent,
        report: &dyn Report,
        most: usize,
    ) -> Result<(), L2ErrorKind> {
        let close = most == usize::MAX;
        for _ in 0..most {
            let next = {
                let mut pending = self.pending.lock();
                match pending.replay_next() {
                    Some(next) => next,
                    None => {
                        let closed = if close { self.breaker.close() } else { None };
                        drop(pending);
                        if let Some(change) = closed {
                            self.breaker_changed(change);
                        }
                        return Ok(());
                    }
                }
            };
            let (ticket, item) = next;
            match send(store, &item).await {
                Ok(_) => self.pending.lock().done(ticket),
                Err(e) => {
                    self.pending.lock().failed();
                    self.failed(report, "REPLAY", &e);
                    return Err(e.kind());
                }
            }
        }
        Ok(())
    }

    /// Between probes: when invalidations wait and Redis answers a ping,
    /// replays those waiting now (not those queued meanwhile: a caller
    /// invalidating in a loop would keep this from ending), leaving the
    /// breaker as it is. Fails as [`replay`](Self::replay).
    async fn replay_early(&self, report: &dyn Report) -> Result<(), L2ErrorKind> {
        let Some(store) = self.store_now() else {
            return Ok(());
        };
        let waiting = self.pending.lock().len();
        if waiting == 0 || store.ping().await.is_err() {
            return Ok(());
        }
        self.replay(store, report, waiting).await
    }
}

/// What a probe found.
enum Probe {
    /// The queue is replayed and the breaker closed.
    Closed,
    /// Redis did not answer (or is a cluster node behind a single-server
    /// URL).
    Away,
    /// Redis answered, and the replay of an invalidation failed.
    ReplayFailed,
}

/// How many cool-downs a probe after failed replays waits, at most.
const MAX_BACKOFF: u32 = 16;

/// How often Redis is pinged between probes while invalidations wait in
/// the queue, so that they are replayed about this soon after it answers.
const REPLAY_PING_EVERY: Duration = Duration::from_millis(50);

/// The probe task: after each cool-down, one probe, until the breaker
/// closes or the cache is dropped. After a replay that failed while Redis
/// answered (an invalidation too costly for the timeout, say) the wait
/// doubles, up to [`MAX_BACKOFF`] cool-downs, so that a failing replay does
/// not weigh on Redis once a cool-down (and after a few failures the queue
/// is one clear, see `pending`).
async fn recover(weak: Weak<SharedTier>) {
    let mut backoff = 1;
    // The time between replays before the probe: doubles after one that
    // Redis answered with an error or too late (an invalidation too costly
    // for the timeout, say), up to the cool-down, so that a failing replay
    // does not weigh on Redis every 50 ms; a connection cut mid-replay is
    // tried again at once.
    let mut gap = REPLAY_PING_EVERY;
    loop {
        let Some(cooldown) = weak.upgrade().map(|tier| tier.breaker.cooldown) else {
            return;
        };
        let due = tokio::time::Instant::now() + cooldown.saturating_mul(backoff);
        // Until the probe: replay as soon as Redis answers.
        while tokio::time::Instant::now() < due {
            tokio::time::sleep_until(due.min(tokio::time::Instant::now() + gap)).await;
            let Some(tier) = weak.upgrade() else {
                return;
            };
            let Some(root) = tier.root() else {
                return;
            };
            gap = match tier.replay_early(&*root).await {
                Ok(()) | Err(L2ErrorKind::Connection) => REPLAY_PING_EVERY,
                Err(_) => (gap * 2).min(cooldown.max(REPLAY_PING_EVERY)),
            };
        }
        let Some(tier) = weak.upgrade() else {
            return;
        };
        let Some(root) = tier.root() else {
            return;
        };
        let probe = tier.probe(&*root).await;
        backoff = match probe {
            Probe::ReplayFailed => (backoff * 2).min(MAX_BACKOFF),
            _ => 1,
        };
        if let Probe::Closed = probe {
            // Ends only with the breaker closed, under the lock that
            // `ensure_recovery` takes: a failure that opens it again either
            // comes before (and this probes on) or finds no task (and starts
            // one).
            let mut task = tier.recovery.lock();
            if tier.breaker.allows() {
                *task = None;
                return;
            }
        }
    }
}
