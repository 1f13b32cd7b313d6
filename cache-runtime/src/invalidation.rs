//! What an invalidation did, for callers that report it (an admin endpoint,
//! a log line).

use std::fmt;

/// What [`Cache::invalidate_report`](crate::Cache::invalidate_report) did.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use cache_runtime::{Cache, SharedInvalidation};
///
/// let cache = Cache::builder().build().unwrap();
/// cache.set("orders:list:acme:p1", 1u8, Duration::from_secs(60)).await;
/// let report = cache.invalidate_report("orders:list:acme:*").await.unwrap();
/// assert_eq!(report.local, 1);
/// assert_eq!(report.removed, 1);
/// assert_eq!(report.shared, SharedInvalidation::NotConfigured); // no Redis tier
/// assert_eq!(report.to_string(), "1 removed in process; no shared tier");
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Invalidation {
    /// Keys removed, in both tiers, each counted once: the larger of
    /// [`local`](Self::local) and the keys the shared tier counted
    /// ([`SharedInvalidation::removed`]). Exact when the keys removed in
    /// one tier include those of the other, as they do for values that
    /// take both tiers; a key held only in process here and other keys only
    /// in Redis are not added up. When the shared tier did not count
    /// (a prefix, a queued invalidation), what this process removed.
    pub removed: u64,
    /// Entries removed from this process's in-process tier (this cache and
    /// its named caches).
    pub local: u64,
    /// What the shared tier (Redis) did.
    pub shared: SharedInvalidation,
}

/// How an invalidation reached the shared tier.
///
/// ```
/// use cache_runtime::SharedInvalidation;
/// let tag = SharedInvalidation::Prefix("orders:list:acme:".into());
/// assert_eq!(tag.removed(), None); // every key under the prefix, uncounted
/// assert_eq!(SharedInvalidation::Scanned(7).removed(), Some(7));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SharedInvalidation {
    /// The cache has no shared tier (the `memory` backend), or this thread
    /// cannot reach it (no tokio runtime).
    NotConfigured,
    /// Exact keys removed: how many held a value.
    Keys(u64),
    /// Every key under this prefix, invalidated by one write (the prefix's
    /// tag): constant time, so not counted; the values expire unread.
    Prefix(String),
    /// A pattern that is not a prefix: `SCAN` + `UNLINK` removed this many.
    Scanned(u64),
    /// Every value carrying this tag, invalidated by one write (the tag's
    /// mark): constant time, so not counted; the values expire unread.
    Tag(String),
    /// Redis could not take it now (it failed, or the circuit breaker is
    /// open): the invalidation is queued, and replayed and announced to
    /// the other instances once Redis answers again, before this instance
    /// trusts Redis again. The reason, without any value.
    Queued(String),
}

impl Invalidation {
    pub(crate) fn new(local: u64, shared: SharedInvalidation) -> Invalidation {
        Invalidation {
            removed: shared.removed().map_or(local, |n| n.max(local)),
            local,
            shared,
        }
    }
}

impl SharedInvalidation {
    /// How many keys were removed, when that was counted.
    ///
    /// ```
    /// use cache_runtime::SharedInvalidation;
    /// assert_eq!(SharedInvalidation::Keys(1).removed(), Some(1));
    /// ```
    pub fn removed(&self) -> Option<u64> {
        match self {
            SharedInvalidation::Keys(n) | SharedInvalidation::Scanned(n) => Some(*n),
            _ => None,
        }
    }
}

impl fmt::Display for Invalidation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} removed in process; ", self.local)?;
        match &self.shared {
            SharedInvalidation::NotConfigured => f.write_str("no shared tier"),
            SharedInvalidation::Keys(n) => write!(f, "{n} removed in redis"),
            SharedInvalidation::Prefix(p) => {
                write!(
                    f,
                    "every key under `{}` invalidated in redis",
                    p.escape_debug()
                )
            }
            SharedInvalidation::Scanned(n) => write!(f, "{n} removed in redis by scan"),
            SharedInvalidation::Tag(tag) => {
                write!(
                    f,
                    "every value tagged `{}` invalidated in redis",
                    tag.escape_debug()
                )
            }
            SharedInvalidation::Queued(e) => write!(f, "queued for redis ({e})"),
        }
    }
}
