//! The shared tier's part of a health report, and of the statistics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Report, SharedTier};
use crate::breaker::BreakerState;
use crate::health::{Health, HealthStatus, ReadyError};
use crate::l2::redis::CLUSTER_NOT_DECLARED;
use crate::l2::{L2Error, L2ErrorKind};
use crate::stats::{Counter, Stats};

/// Markers or values in Redis that made no sense (see
/// [`Read::Corrupt`](crate::l2::Read::Corrupt)): how many, and the last.
#[derive(Default)]
pub(crate) struct Corruption {
    seen: AtomicU64,
    last: parking_lot::Mutex<Option<(Instant, String)>>,
}

/// How long health reports a cache degraded after something in Redis
/// made no sense.
const CORRUPTION_DEGRADES: Duration = Duration::from_secs(60);

impl SharedTier {
    /// Counts something in Redis that made no sense (as an error of the
    /// shared tier, not one that tells the breaker: Redis answers), keeps
    /// it for `health()`, and says it at most once a minute.
    pub(crate) fn corrupt(&self, report: &dyn Report, what: String) {
        report.count(Counter::L2Error, 1);
        self.corruption.seen.fetch_add(1, Ordering::Relaxed);
        let mut last = self.corruption.last.lock();
        let quiet = last
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < CORRUPTION_DEGRADES);
        if !quiet {
            let message = format!(
                "cache_runtime: something in Redis makes no sense, read as invalidated: {what}; a client other than this library wrote it (delete it, or invalidate what it covers)"
            );
            #[cfg(feature = "tracing")]
            tracing::warn!(target: "cache_runtime", "{message}");
            #[cfg(not(feature = "tracing"))]
            eprintln!("{message}");
        }
        *last = Some((Instant::now(), what));
    }
}

impl SharedTier {
    /// Pings Redis (unless the breaker is open: no call goes to Redis
    /// then) and reports it, the breaker, the queue and whether the
    /// in-process tier is in step with the other instances.
    pub(crate) async fn health(&self, report: &dyn Report, health: &mut Health) {
        health.pending_invalidations = self.pending.lock().len() as u64;
        if let Some(store) = self.guarded_store(report) {
            match store.ping().await {
                Ok(rtt) => {
                    self.breaker.success();
                    health.redis_rtt = Some(rtt);
                    if store.is_cluster_node().await.unwrap_or(false) {
                        health.redis_error =
                            Some(crate::l2::redis::CLUSTER_NOT_DECLARED.to_owned());
                    }
                }
                Err(e) => {
                    self.failed(report, "PING", &e);
                    health.redis_error = Some(e.to_string());
                }
            }
        }
        if let Some(conn) = self.store().and_then(|store| store.sentinel()) {
            health.redis_master = conn.master_addr().map(|addr| addr.to_string());
            health.redis_replicas = Some(conn.replicas() as u64);
        }
        let breaker = self.breaker.state();
        health.breaker = Some(breaker);
        if breaker != BreakerState::Closed && health.redis_error.is_none() {
            health.redis_error = self.last_error.lock().clone();
        }
        health.in_sync = self.in_sync();
        health.corrupt_seen = self.corruption.seen.load(Ordering::Relaxed);
        let recent = match &*self.corruption.last.lock() {
            Some((at, what)) => {
                health.last_corrupt = Some(what.clone());
                at.elapsed() < CORRUPTION_DEGRADES
            }
            None => false,
        };
        if recent
            || breaker != BreakerState::Closed
            || health.redis_rtt.is_none()
            || health.redis_error.is_some()
            || !health.in_sync
        {
            health.status = HealthStatus::Degraded;
        }
    }

    /// The breaker and the queue of invalidations, common to a cache and
    /// its named caches.
    pub(crate) fn stats(&self) -> Stats {
        let pending = self.pending.lock();
        Stats {
            breaker: self.breaker.state(),
            breaker_opens: self.breaker.opened(),
            invalidations_queued: pending.queued,
            invalidations_pending: pending.len() as u64,
            invalidation_queue_overflows: pending.overflows,
            l2_corrupt: self.corruption.seen.load(Ordering::Relaxed),
            backplane_resyncs: self.resyncs.load(Ordering::Relaxed),
            ..Stats::default()
        }
    }

    /// [`Cache::ready`](crate::Cache::ready): connects, pings, checks that
    /// the server is not a cluster node behind a single-server URL, and
    /// waits for the backplane, within `timeout`.
    pub(crate) async fn ready(
        &self,
        report: &dyn Report,
        timeout: Duration,
    ) -> Result<(), ReadyError> {
        let Some(store) = self.store() else {
            return Err(ReadyError::Redis(L2Error::Config(
                "Cache::ready needs a tokio runtime: the Redis connection lives in one".into(),
            )));
        };
        let started = tokio::time::Instant::now();
        let checked = tokio::time::timeout(timeout, async {
            store.ping().await?;
            if store.is_cluster_node().await? {
                return Err(L2Error::Unavailable {
                    op: "INFO",
                    kind: L2ErrorKind::ClusterNotDeclared,
                    message: CLUSTER_NOT_DECLARED.to_owned(),
                });
            }
            Ok(())
        })
        .await
        .unwrap_or(Err(L2Error::Timeout {
            op: "READY",
            after: timeout,
        }));
        if let Err(e) = checked {
            self.failed(report, "READY", &e);
            return Err(ReadyError::Redis(e));
        }
        self.breaker.success();
        if !self
            .wait_in_sync(timeout.saturating_sub(started.elapsed()))
            .await
        {
            return Err(ReadyError::NotInSync { after: timeout });
        }
        Ok(())
    }
}
