use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;

use super::L1Engine;
use crate::clock::{self, Clock};
use crate::entry::Entry;
use crate::pattern::Pattern;

/// Lets moka evict an entry once it is no longer kept (its stale and
/// fail-safe windows are over).
struct UntilStale {
    clock: Clock,
}

impl Expiry<Box<str>, Entry> for UntilStale {
    fn expire_after_create(
        &self,
        _key: &Box<str>,
        entry: &Entry,
        _at: Instant,
    ) -> Option<Duration> {
        Some(clock::duration(
            entry.keep_until().saturating_sub(self.clock.now()),
        ))
    }

    fn expire_after_update(
        &self,
        key: &Box<str>,
        entry: &Entry,
        at: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(key, entry, at)
    }
}

/// The moka engine: TinyLFU admission, per-entry expiry.
pub(crate) struct MokaL1 {
    map: Cache<Box<str>, Entry>,
}

impl MokaL1 {
    pub(crate) fn new(max_bytes: u64, clock: Clock) -> Self {
        MokaL1 {
            map: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_key, entry: &Entry| entry.weight.max(1))
                .expire_after(UntilStale { clock })
                .build(),
        }
    }
}

impl L1Engine for MokaL1 {
    #[inline]
    fn read<R>(&self, key: &str, f: impl FnOnce(&Entry) -> R) -> Option<R> {
        // moka hands out clones only.
        self.map.get(key).as_ref().map(f)
    }

    fn insert(&self, key: &str, entry: Entry) -> bool {
        self.map.insert(key.into(), entry);
        true
    }

    fn remove(&self, key: &str) -> bool {
        self.map.remove(key).is_some()
    }

    fn remove_matching(&self, pattern: &Pattern) -> u64 {
        // Collect, then remove: moka's `invalidate_entries_if` would leave a
        // predicate that every later read must evaluate.
        let keys: Vec<_> = self
            .map
            .iter()
            .filter(|(key, _)| pattern.matches(key))
            .map(|(key, _)| key)
            .collect();
        keys.iter()
            .filter(|key| self.map.remove(key.as_ref()).is_some())
            .count() as u64
    }

    fn clear(&self) {
        self.map.invalidate_all();
        self.map.run_pending_tasks();
    }

    fn entry_count(&self) -> u64 {
        self.map.run_pending_tasks();
        self.map.entry_count()
    }

    fn weighted_size(&self) -> u64 {
        self.map.run_pending_tasks();
        self.map.weighted_size()
    }
}
