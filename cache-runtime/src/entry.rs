//! What the in-process tier stores for a key.

use std::any::Any;
use std::sync::Arc;

use crate::clock::Ticks;

/// A stored value, type-erased: what the tiers, the flights and the codecs
/// pass around.
pub(crate) type AnyValue = Arc<dyn Any + Send + Sync>;

/// How long a value stored now lives: fresh for `ttl` (jitter applied),
/// then usable as stale for `stale`, and kept for `keep` after `ttl` (at
/// least `stale`; longer with `fail_safe`) to answer when the origin fails.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Life {
    pub(crate) ttl: std::time::Duration,
    pub(crate) stale: std::time::Duration,
    pub(crate) keep: std::time::Duration,
}

/// A type-erased value with its deadlines. Cloning it is one reference
/// count increment.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) value: AnyValue,
    /// Fresh before this instant.
    pub(crate) fresh_until: Ticks,
    /// Servable as stale (while one caller refreshes) before this instant.
    pub(crate) stale_until: Ticks,
    /// Estimated bytes, for the byte bound of the tier.
    pub(crate) weight: u32,
    /// Whole seconds it is kept after `stale_until`, served only when the
    /// origin fails (`fail_safe`); see [`Entry::keep_until`]. (Seconds in
    /// 32 bits keep the entry as small as without it: a hit reads it.) The
    /// top bit is [`Entry::DEGRADED`].
    pub(crate) kept_secs: u32,
    /// Its tags, if any (see [`crate::tags`]).
    pub(crate) tags: Option<Arc<crate::tags::EntryTags>>,
}

/// One second in clock ticks.
const SECOND: Ticks = 1 << 32;

impl Entry {
    /// The bit of `kept_secs` that marks an entry stored while its cache
    /// was out of step with the other instances: its own deadlines bound
    /// it (see `Cache::storable`), and it is kept no longer.
    pub(crate) const DEGRADED: u32 = 1 << 31;

    /// Kept until this instant (at least `stale_until`).
    #[inline]
    pub(crate) fn keep_until(&self) -> Ticks {
        self.stale_until
            .saturating_add(Ticks::from(self.kept_secs & !Entry::DEGRADED) * SECOND)
    }

    /// Whether it was stored while out of step ([`Entry::DEGRADED`]).
    pub(crate) fn is_degraded(&self) -> bool {
        self.kept_secs & Entry::DEGRADED != 0
    }

    /// The `kept_secs` of an entry stale until `stale_until` and kept until
    /// `keep_until`: rounded up to whole seconds (at most 2^31 - 1: 68
    /// years).
    pub(crate) fn kept_secs(stale_until: Ticks, keep_until: Ticks) -> u32 {
        let secs = keep_until.saturating_sub(stale_until).div_ceil(SECOND);
        u32::try_from(secs)
            .unwrap_or(u32::MAX)
            .min(Entry::DEGRADED - 1)
    }

    /// This entry as stored out of step, at `now`: fresh for at most
    /// `ttl`, with no stale or fail-safe time.
    pub(crate) fn degraded(mut self, now: Ticks, ttl: Ticks) -> Entry {
        self.fresh_until = self.fresh_until.min(now.saturating_add(ttl));
        self.stale_until = self.fresh_until;
        self.kept_secs = Entry::DEGRADED;
        self
    }
}

/// Fixed cost of an entry beyond its key and value: the map slot, the
/// reference-counted box, the deadlines.
const ENTRY_OVERHEAD: usize = 96;

/// Measures a stored value's heap contents: the value's encoded length.
pub type Weigher = fn(&(dyn Any + Send + Sync)) -> usize;

impl Entry {
    /// The weight of `value` under `key`: the key, the larger of the value's
    /// inline size and its measured (encoded) size, and the fixed overhead.
    /// Without a weigher only the inline size counts.
    pub(crate) fn weight_of<V: Any + Send + Sync>(
        key: &str,
        value: &V,
        weigher: Option<Weigher>,
    ) -> u32 {
        let inline = std::mem::size_of::<V>();
        let measured = weigher.map_or(0, |weigh| weigh(value));
        let bytes = key.len() + inline.max(measured) + ENTRY_OVERHEAD;
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

impl Entry {
    /// The weight of a value that arrived encoded in `encoded` bytes.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn weight_of_encoded(key: &str, encoded: usize) -> u32 {
        u32::try_from(key.len() + encoded + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
    }
}

/// The encoded length of `value` in bincode's fixed-width layout (lengths
/// and integers at their in-memory width): close to what a value holds on
/// the heap. Counted into a sink: nothing is allocated.
pub(crate) fn encoded_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    bincode::serde::encode_into_std_write(value, &mut std::io::sink(), bincode::config::legacy())
        .unwrap_or(0)
}
