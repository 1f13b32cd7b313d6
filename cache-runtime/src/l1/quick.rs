use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

use crossbeam_utils::CachePadded;
use parking_lot::RwLock;
use quick_cache::unsync::Cache;
use quick_cache::{DefaultHashBuilder, Equivalent, OptionsBuilder, Weighter};

use super::L1Engine;
use crate::entry::Entry;
use crate::pattern::Pattern;

/// A key with its hash, computed once per lookup: the hash picks the shard
/// and, passed through as it is, places the key in the shard's table.
#[derive(Clone)]
struct Key {
    hash: u64,
    text: Box<str>,
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.hash == other.hash && self.text == other.text
    }
}

impl Eq for Key {}

/// A borrowed [`Key`], to look one up without allocating.
struct Probe<'a> {
    hash: u64,
    text: &'a str,
}

impl Hash for Probe<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Equivalent<Key> for Probe<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.hash == key.hash && self.text == &*key.text
    }
}

/// Hands the precomputed hash through.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is ever called (see `Key` and `Probe`); fold
        // anything else rather than lose it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Table = Cache<Key, Entry, EntryWeight, BuildHasherDefault<PassThrough>>;

#[derive(Clone)]
pub(crate) struct EntryWeight;

impl Weighter<Key, Entry> for EntryWeight {
    fn weight(&self, _key: &Key, entry: &Entry) -> u64 {
        // A zero weight would pin the entry; every entry weighs something.
        u64::from(entry.weight.max(1))
    }
}

/// The quick_cache engine: S3-FIFO shards, each behind a read-write lock.
///
/// This is the layout of `quick_cache::sync::Cache`, built from its
/// single-threaded shards so that a hit can read the entry in place under
/// the read lock: the value is cloned, the entry is not (no reference count
/// to bump and drop on every hit).
type Shard = RwLock<Table>;

pub(crate) struct QuickL1 {
    /// The heaviest entry a shard keeps (quick_cache refuses heavier ones).
    max_weight: u64,
    /// Padded: a reader writes its shard's lock word, which must not share
    /// a cache line with the next shard's.
    shards: Box<[CachePadded<Shard>]>,
    hasher: DefaultHashBuilder,
}

/// The fewest items a shard is sized for (as quick_cache's own sharding).
const MIN_SHARD_ITEMS: u64 = 32;
/// The smallest byte share of a shard.
const MIN_SHARD_BYTES: u64 = 256 * 1024;
/// Enough for two threads per shard on 32 cores; more only shrinks shards.
const MAX_SHARDS: u64 = 64;

impl QuickL1 {
    pub(crate) fn new(max_bytes: u64, max_entries: u64) -> Self {
        let max_entries = max_entries.clamp(16, 1 << 28);
        // Every reader writes its shard's lock word: with many shards, two
        // threads rarely meet on one.
        let cores = std::thread::available_parallelism().map_or(4, usize::from) as u64;
        let mut count = (cores * 8).next_power_of_two().clamp(8, MAX_SHARDS);
        // A shard holds a `1/count` share of the bound, and quick_cache
        // refuses a value heavier than its shard: keep shards large enough
        // for real values, and a small cache in few shards.
        while count > 1
            && (max_entries / count < MIN_SHARD_ITEMS || max_bytes / count < MIN_SHARD_BYTES)
        {
            count /= 2;
        }
        let shard = || {
            let options = OptionsBuilder::new()
                // Tables start sized for entries of about 512 bytes (the
                // bound's worth, not `max_entries`' worth, which would
                // preallocate a million slots for every cache) and grow.
                .estimated_items_capacity(
                    (max_entries.min(max_bytes / 512) / count).max(16) as usize
                )
                .weight_capacity(max_bytes.div_ceil(count).max(1))
                .build()
                .expect("quick_cache options are valid");
            CachePadded::new(RwLock::new(Cache::with_options(
                options,
                EntryWeight,
                BuildHasherDefault::default(),
                Default::default(),
            )))
        };
        // quick_cache keeps an entry up to its shard's hot share (97% by
        // default); stay below it.
        let max_weight = max_bytes.div_ceil(count) * 9 / 10;
        QuickL1 {
            max_weight,
            shards: (0..count).map(|_| shard()).collect(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    /// The key's hash and its shard. Bits 40 and up pick the shard; the
    /// shard's table uses the low bits and the top seven.
    #[inline]
    fn locate<'k>(&self, key: &'k str) -> (Probe<'k>, &Shard) {
        let hash = self.hasher.hash_one(key);
        let shard = &self.shards[(hash >> 40) as usize & (self.shards.len() - 1)];
        (Probe { hash, text: key }, shard)
    }
}

impl L1Engine for QuickL1 {
    #[inline]
    fn read<R>(&self, key: &str, f: impl FnOnce(&Entry) -> R) -> Option<R> {
        // Recursive: `f` clones the user's value, and a `Clone` that reads
        // the cache again must not deadlock behind a queued writer.
        let (probe, shard) = self.locate(key);
        shard.read_recursive().get(&probe).map(f)
    }

    fn insert(&self, key: &str, entry: Entry) -> bool {
        let (probe, shard) = self.locate(key);
        let mut shard = shard.write();
        // quick_cache drops, silently, an entry heavier than its shard can
        // hold: say so, and leave no older value of the key behind.
        if u64::from(entry.weight) > self.max_weight {
            shard.remove(&probe);
            return false;
        }
        let key = Key {
            hash: probe.hash,
            text: key.into(),
        };
        shard.insert(key, entry);
        true
    }

    fn remove(&self, key: &str) -> bool {
        let (probe, shard) = self.locate(key);
        shard.write().remove(&probe).is_some()
    }

    fn remove_matching(&self, pattern: &Pattern) -> u64 {
        let mut removed = 0;
        if pattern.is_cheap() {
            // A match costs at most the pattern's length: matched in place.
            for shard in self.shards.iter() {
                let mut shard = shard.write();
                let before = shard.len();
                shard.retain(|key, _| !pattern.matches(&key.text));
                removed += (before - shard.len()) as u64;
            }
            return removed;
        }
        for shard in self.shards.iter() {
            // The keys are copied under the read lock and matched without
            // any: a match may cost a key's length times the pattern's (see
            // `Pattern`), and no hit or insert waits for it. A key first
            // stored since the copy is newer than the invalidation and
            // stays; one stored again since is removed (a miss more).
            let keys: Vec<Key> = shard.read().iter().map(|(key, _)| key.clone()).collect();
            let matching: Vec<Key> = keys
                .into_iter()
                .filter(|key| pattern.matches(&key.text))
                .collect();
            if matching.is_empty() {
                continue;
            }
            let mut shard = shard.write();
            for key in &matching {
                let probe = Probe {
                    hash: key.hash,
                    text: &key.text,
                };
                removed += u64::from(shard.remove(&probe).is_some());
            }
        }
        removed
    }

    fn clear(&self) {
        for shard in self.shards.iter() {
            shard.write().clear();
        }
    }

    fn entry_count(&self) -> u64 {
        self.shards.iter().map(|s| s.read().len() as u64).sum()
    }

    fn weighted_size(&self) -> u64 {
        self.shards.iter().map(|s| s.read().weight()).sum()
    }
}
