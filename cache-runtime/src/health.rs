//! What [`Cache::health`](crate::Cache::health) reports.

use std::fmt;
use std::time::Duration;

use crate::{Backend, BreakerState};

/// Whether the cache runs as configured.
///
/// ```
/// use cache_runtime::HealthStatus;
/// assert_eq!(HealthStatus::Degraded.to_string(), "degraded");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HealthStatus {
    /// Every tier answers.
    Healthy,
    /// Redis does not answer, or the circuit breaker is not closed, or the
    /// in-process tier is out of step with the other instances: the cache
    /// runs on what is left (the in-process tier and the origin), at a lower
    /// hit rate, without errors. The service itself is fine.
    Degraded,
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
        })
    }
}

/// A health report of a cache, from [`Cache::health`](crate::Cache::health).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use cache_runtime::{Backend, Cache, HealthStatus};
/// let health = Cache::builder().build().unwrap().health().await;
/// assert_eq!((health.status, health.backend), (HealthStatus::Healthy, Backend::Memory));
/// assert_eq!(health.redis_rtt, None);
/// println!("{health}"); // "healthy: memory, 0 entries (0 bytes) in process"
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// The verdict.
    pub status: HealthStatus,
    /// The configured backend.
    pub backend: Backend,
    /// Entries in the in-process tier.
    pub l1_entries: u64,
    /// Estimated bytes in the in-process tier.
    pub l1_bytes: u64,
    /// The round trip of a `PING` to Redis made for this report; `None`
    /// without Redis, when it failed, or while the breaker is open (no call
    /// goes to Redis then).
    pub redis_rtt: Option<Duration>,
    /// Why Redis did not answer this report's `PING`, or what is wrong with
    /// it (a Redis Cluster node); while the breaker is open, the last
    /// failure of a call. Never a value.
    pub redis_error: Option<String>,
    /// Behind Redis Sentinel (a `redis+sentinel://` URL), the master in
    /// use, `host:port`; `None` otherwise, and before the first call finds
    /// it.
    pub redis_master: Option<String>,
    /// Behind Redis Sentinel, the master's replicas that the sentinels
    /// find up: when there is one, an invalidation is done only once a
    /// replica holds it too (`WAIT`), so that a failover cannot lose it.
    pub redis_replicas: Option<u64>,
    /// The circuit breaker; `None` without Redis.
    pub breaker: Option<BreakerState>,
    /// Whether the in-process tier is in step with the other instances.
    pub in_sync: bool,
    /// Invalidations waiting for Redis to come back.
    pub pending_invalidations: u64,
    /// The key templates of `#[cached]` functions whose values stay in this
    /// process although the cache has a shared tier, because their value
    /// type is not serde (derive `Serialize` and `Deserialize` to share
    /// them, or write `tier = "l1"` to say it is meant): what other
    /// instances never see. Empty for a `memory` cache.
    pub local_only: Vec<String>,
    /// Markers or values in Redis that made no sense since the start (a
    /// generation or a tag that is not a number or is out of range, a
    /// value written for another key): each was read as an invalidation,
    /// never served. The report is degraded for a minute after one.
    pub corrupt_seen: u64,
    /// The last of them, named: what to delete, or to invalidate.
    pub last_corrupt: Option<String>,
    /// The warmers registered on the cache
    /// ([`Cache::add_warmer`](crate::Cache::add_warmer)).
    pub warmers: Vec<crate::WarmerHealth>,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = self.backend.name();
        write!(
            f,
            "{}: {backend}, {} entries ({} bytes) in process",
            self.status, self.l1_entries, self.l1_bytes
        )?;
        if let Some(breaker) = self.breaker {
            write!(f, ", breaker {breaker}")?;
            match (&self.redis_rtt, &self.redis_error) {
                (Some(rtt), _) => write!(f, ", redis {} us", rtt.as_micros())?,
                (None, Some(error)) => write!(f, ", redis failed: {error}")?,
                (None, None) => {}
            }
            if let Some(master) = &self.redis_master {
                write!(f, ", master {master}")?;
                if let Some(replicas) = self.redis_replicas {
                    write!(f, " with {replicas} replicas up")?;
                }
            }
            if !self.in_sync {
                f.write_str(", out of step")?;
            }
            if self.pending_invalidations > 0 {
                write!(f, ", {} invalidations pending", self.pending_invalidations)?;
            }
            if !self.local_only.is_empty() {
                let templates = self.local_only.join(", ");
                write!(f, ", in process only (not serde): {templates}")?;
            }
            if let Some(what) = &self.last_corrupt {
                let seen = self.corrupt_seen;
                write!(f, ", {seen} corrupt in redis (last: {what})")?;
            }
        }
        Ok(())
    }
}

/// Why [`Cache::ready`](crate::Cache::ready) failed: what is wrong with
/// Redis, or that the backplane did not subscribe in time.
///
/// ```
/// use std::time::Duration;
/// use cache_runtime::{L2Error, L2ErrorKind, ReadyError};
///
/// let err = ReadyError::Redis(L2Error::Unavailable {
///     op: "PING",
///     kind: L2ErrorKind::Auth,
///     message: "authentication failed at 127.0.0.1:6380".into(),
/// });
/// assert_eq!(err.kind(), L2ErrorKind::Auth);
/// assert!(err.to_string().starts_with("Redis is not ready: redis PING: authentication failed"));
/// let err = ReadyError::NotInSync { after: Duration::from_secs(5) };
/// assert_eq!(err.kind(), L2ErrorKind::Timeout);
/// ```
#[cfg(feature = "redis")]
#[derive(Debug)]
#[non_exhaustive]
pub enum ReadyError {
    /// A check of Redis failed: it did not answer in time, refused the
    /// connection, the password or the database, is a Redis Cluster node
    /// behind a single-server URL, or TLS failed. The error names it
    /// ([`L2Error::kind`](crate::L2Error::kind)).
    Redis(crate::L2Error),
    /// Redis answers, but the backplane did not subscribe within the time
    /// given: until it does, a `hybrid` cache serves nothing from its
    /// in-process tier.
    NotInSync {
        /// The time given.
        after: Duration,
    },
}

#[cfg(feature = "redis")]
impl ReadyError {
    /// What went wrong, in a word: the Redis error's kind, or
    /// [`Timeout`](crate::L2ErrorKind::Timeout) for a backplane that did
    /// not subscribe in time.
    ///
    /// ```
    /// use cache_runtime::{L2Error, L2ErrorKind, ReadyError};
    /// let err = ReadyError::Redis(L2Error::Config("bad URL".into()));
    /// assert_eq!(err.kind(), L2ErrorKind::Config);
    /// ```
    pub fn kind(&self) -> crate::L2ErrorKind {
        match self {
            ReadyError::Redis(e) => e.kind(),
            ReadyError::NotInSync { .. } => crate::L2ErrorKind::Timeout,
        }
    }
}

#[cfg(feature = "redis")]
impl fmt::Display for ReadyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadyError::Redis(e) => write!(f, "Redis is not ready: {e}"),
            ReadyError::NotInSync { after } => write!(
                f,
                "Redis answers, but the invalidation backplane did not subscribe within {after:?}"
            ),
        }
    }
}

#[cfg(feature = "redis")]
impl std::error::Error for ReadyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadyError::Redis(e) => Some(e),
            ReadyError::NotInSync { .. } => None,
        }
    }
}

#[cfg(feature = "redis")]
impl From<crate::L2Error> for ReadyError {
    fn from(e: crate::L2Error) -> Self {
        ReadyError::Redis(e)
    }
}
