use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::sync::Cache;
use quick_cache::Weighter;

use super::L1Engine;
use crate::entry::Entry;
use crate::pattern::Pattern;

#[derive(Clone)]
pub(crate) struct EntryWeight;

impl Weighter<Box<str>, Entry> for EntryWeight {
    fn weight(&self, _key: &Box<str>, entry: &Entry) -> u64 {
        // A zero weight would pin the entry; every entry weighs something.
        u64::from(entry.weight.max(1))
    }
}

/// The quick_cache engine: sharded, lock-protected S3-FIFO.
pub(crate) struct QuickL1 {
    map: Cache<Box<str>, Entry, EntryWeight>,
}

impl QuickL1 {
    pub(crate) fn new(max_bytes: u64, max_entries: u64) -> Self {
        let estimated_items = usize::try_from(max_entries.clamp(16, 1 << 24)).unwrap_or(1 << 24);
        QuickL1 {
            map: Cache::with_weighter(estimated_items, max_bytes.max(1), EntryWeight),
        }
    }
}

impl L1Engine for QuickL1 {
    #[inline]
    fn get(&self, key: &str) -> Option<Entry> {
        self.map.get(key)
    }

    fn insert(&self, key: &str, entry: Entry) {
        self.map.insert(key.into(), entry);
    }

    fn remove(&self, key: &str) -> bool {
        self.map.remove(key).is_some()
    }

    fn remove_matching(&self, pattern: &Pattern) -> u64 {
        let removed = AtomicU64::new(0);
        self.map.retain(|key, _| {
            let hit = pattern.matches(key);
            if hit {
                removed.fetch_add(1, Ordering::Relaxed);
            }
            !hit
        });
        removed.into_inner()
    }

    fn clear(&self) {
        self.map.clear();
    }

    fn entry_count(&self) -> u64 {
        self.map.len() as u64
    }

    fn weighted_size(&self) -> u64 {
        self.map.weight()
    }
}
