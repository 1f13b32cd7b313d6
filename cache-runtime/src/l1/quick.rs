use std::collections::BTreeSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::ops::Bound;

use crossbeam_utils::CachePadded;
use parking_lot::RwLock;
use quick_cache::unsync::Cache;
use quick_cache::{DefaultHashBuilder, Equivalent, Lifecycle, OptionsBuilder, Weighter};

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
    #[inline(always)]
    fn equivalent(&self, key: &Key) -> bool {
        self.hash == key.hash && same_text(self.text.as_bytes(), key.text.as_bytes())
    }
}

/// `a == b`, for the lengths most keys have (4 to 32 bytes) in two
/// overlapping loads of each, without a call to `memcmp`.
#[inline(always)]
fn same_text(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    fn ends<const N: usize>(s: &[u8]) -> ([u8; N], [u8; N]) {
        let head = s[..N].try_into().expect("N bytes");
        let tail = s[s.len() - N..].try_into().expect("N bytes");
        (head, tail)
    }
    match n {
        4..=8 => ends::<4>(a) == ends::<4>(b),
        9..=16 => ends::<8>(a) == ends::<8>(b),
        17..=32 => ends::<16>(a) == ends::<16>(b),
        _ => a == b,
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

type Table = Cache<Key, Entry, EntryWeight, BuildHasherDefault<PassThrough>, Evictions>;

/// Hands the keys quick_cache evicts during an insert back to the caller,
/// which takes them out of the shard's index.
#[derive(Clone, Default)]
struct Evictions;

impl Lifecycle<Key, Entry> for Evictions {
    type RequestState = Vec<Key>;

    fn on_evict(&self, evicted: &mut Vec<Key>, key: Key, _entry: Entry) {
        evicted.push(key);
    }
}

#[derive(Clone)]
pub(crate) struct EntryWeight;

impl Weighter<Key, Entry> for EntryWeight {
    fn weight(&self, _key: &Key, entry: &Entry) -> u64 {
        // A zero weight would pin the entry; every entry weighs something.
        u64::from(entry.weight.max(1))
    }
}

/// One shard: its table and, once a pattern with a literal prefix has
/// been applied to it, its keys in order.
///
/// The index makes a prefix invalidation (`orders:list:acme:*`) cost the
/// keys it removes, not the shard's size: a range of the ordered keys. It
/// is built by the first such invalidation (one walk, as every pattern
/// took before) and kept from then on by every insert, removal and
/// eviction, so that a cache never invalidated by a pattern pays nothing
/// for it, and a hit never reads it.
struct Keys {
    table: Table,
    index: Option<BTreeSet<Box<str>>>,
}

impl Keys {
    /// Builds the index, if it is not yet.
    fn build_index(&mut self) {
        if self.index.is_none() {
            self.index = Some(self.table.iter().map(|(key, _)| key.text.clone()).collect());
        }
    }

    /// The keys that start with `prefix`: a range of the index, or every
    /// key when `prefix` is empty or the index not yet built.
    fn starting_with(&self, prefix: &str) -> Vec<Box<str>> {
        match &self.index {
            Some(index) if !prefix.is_empty() => index
                .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|key| key.starts_with(prefix))
                .cloned()
                .collect(),
            _ => self
                .table
                .iter()
                .map(|(key, _)| key.text.clone())
                .filter(|key| key.starts_with(prefix))
                .collect(),
        }
    }

    /// Removes the keys for which `keep` is false, in place; how many.
    fn retain(&mut self, keep: impl Fn(&str) -> bool) -> u64 {
        let before = self.table.len();
        self.table.retain(|key, _| keep(&key.text));
        if let Some(index) = &mut self.index {
            index.retain(|key| keep(key));
        }
        (before - self.table.len()) as u64
    }

    /// Removes `key` from the table and the index.
    fn remove(&mut self, probe: &Probe<'_>) -> bool {
        if let Some(index) = &mut self.index {
            index.remove(probe.text);
        }
        self.table.remove(probe).is_some()
    }
}

/// The quick_cache engine: S3-FIFO shards, each behind a read-write lock.
///
/// This is the layout of `quick_cache::sync::Cache`, built from its
/// single-threaded shards so that a hit can read the entry in place under
/// the read lock: the value is cloned, the entry is not (no reference count
/// to bump and drop on every hit).
type Shard = RwLock<Keys>;

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
            CachePadded::new(RwLock::new(Keys {
                table: Cache::with_options(
                    options,
                    EntryWeight,
                    BuildHasherDefault::default(),
                    Evictions,
                ),
                index: None,
            }))
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

    /// The probe of a key read from a shard.
    fn probe<'k>(&self, key: &'k str) -> Probe<'k> {
        Probe {
            hash: self.hasher.hash_one(key),
            text: key,
        }
    }
}

impl L1Engine for QuickL1 {
    #[inline]
    fn read<R>(&self, key: &str, f: impl FnOnce(&Entry) -> R) -> Option<R> {
        // Recursive: `f` clones the user's value, and a `Clone` that reads
        // the cache again must not deadlock behind a queued writer.
        let (probe, shard) = self.locate(key);
        shard.read_recursive().table.get(&probe).map(f)
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
        let Keys { table, index } = &mut *shard;
        if let Some(index) = index {
            index.insert(key.text.clone());
        }
        let mut evicted = Vec::new();
        table.insert_with_lifecycle(key, entry, &mut evicted);
        if let Some(index) = index {
            // quick_cache hands over the value it replaced, too, and may
            // admit a key and evict it at once: what is gone is what the
            // table no longer holds.
            for key in evicted {
                let probe = Probe {
                    hash: key.hash,
                    text: &key.text,
                };
                if !table.contains_key(&probe) {
                    index.remove(&key.text);
                }
            }
        }
        true
    }

    fn remove(&self, key: &str) -> bool {
        let (probe, shard) = self.locate(key);
        shard.write().remove(&probe)
    }

    fn remove_matching(&self, pattern: &Pattern) -> u64 {
        let prefix = pattern.literal_prefix();
        let mut removed = 0;
        for shard in self.shards.iter() {
            if !prefix.is_empty() && shard.read().index.is_none() {
                shard.write().build_index();
            }
            if pattern.is_cheap() {
                // A match costs at most the pattern's length: matched and
                // removed under the shard's lock.
                let mut keys = shard.write();
                if prefix.is_empty() {
                    removed += keys.retain(|key| !pattern.matches(key));
                } else {
                    for key in keys.starting_with(prefix) {
                        if pattern.matches(&key) {
                            removed += u64::from(keys.remove(&self.probe(&key)));
                        }
                    }
                }
                continue;
            }
            // A match may cost a key's length times the pattern's (see
            // `Pattern`): the candidates are copied under the read lock and
            // matched without any, so that no hit or insert waits for it. A
            // key first stored since the copy is newer than the
            // invalidation and stays; one stored again since is removed (a
            // miss more).
            let candidates = shard.read().starting_with(prefix);
            let matching: Vec<Box<str>> = candidates
                .into_iter()
                .filter(|key| pattern.matches(key))
                .collect();
            if matching.is_empty() {
                continue;
            }
            let mut keys = shard.write();
            for key in &matching {
                removed += u64::from(keys.remove(&self.probe(key)));
            }
        }
        removed
    }

    fn clear(&self) {
        for shard in self.shards.iter() {
            let mut keys = shard.write();
            keys.table.clear();
            if let Some(index) = &mut keys.index {
                index.clear();
            }
        }
    }

    fn entry_count(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.read().table.len() as u64)
            .sum()
    }

    fn weighted_size(&self) -> u64 {
        self.shards.iter().map(|s| s.read().table.weight()).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn texts_compare_as_slices_do(a in proptest::collection::vec(0u8..3, 0..40), flip in 0usize..40) {
            let mut b = a.clone();
            prop_assert!(same_text(&a, &b));
            if let Some(byte) = b.get_mut(flip) {
                *byte ^= 1;
            }
            prop_assert_eq!(same_text(&a, &b), a == b);
            b.push(0);
            prop_assert!(!same_text(&a, &b));
        }
    }

    fn entry(weight: u32) -> Entry {
        Entry {
            value: Arc::new(()),
            fresh_until: u64::MAX,
            stale_until: u64::MAX,
            weight,
            kept_secs: 0,
            tags: None,
        }
    }

    fn resident(l1: &QuickL1) -> BTreeSet<Box<str>> {
        l1.shards
            .iter()
            .flat_map(|s| {
                s.read()
                    .table
                    .iter()
                    .map(|(k, _)| k.text.clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u8, u8),
        Remove(u8, u8),
        Invalidate(&'static str),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0..6u8, 0..40u8).prop_map(|(t, i)| Op::Insert(t, i)),
            2 => (0..6u8, 0..40u8).prop_map(|(t, i)| Op::Remove(t, i)),
            2 => prop_oneof![
                Just("t1:*"), Just("t2:1*"), Just("t3:?"), Just("t4:[0-2]*"),
                Just("*:3"), Just("t5:*3"), Just("t*"),
            ].prop_map(Op::Invalidate),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// Whatever the inserts, evictions, removals and clears in
        /// between, a pattern removes exactly the resident keys it
        /// matches, and the index holds exactly the resident keys.
        #[test]
        fn the_index_follows_the_table(ops in proptest::collection::vec(op(), 1..300)) {
            // Small enough that most inserts evict: 20 KiB holds about 12
            // of these entries.
            let l1 = QuickL1::new(20 * 1024, 64);
            for op in ops {
                match op {
                    Op::Insert(t, i) => {
                        l1.insert(&format!("t{t}:{i}"), entry(1000 + u32::from(i) * 37));
                    }
                    Op::Remove(t, i) => {
                        l1.remove(&format!("t{t}:{i}"));
                    }
                    Op::Invalidate(source) => {
                        let pattern = Pattern::parse(source).unwrap();
                        let before = resident(&l1);
                        let expected = before.iter().filter(|k| pattern.matches(k)).count() as u64;
                        prop_assert_eq!(l1.remove_matching(&pattern), expected);
                        let after = resident(&l1);
                        prop_assert!(after.iter().all(|k| !pattern.matches(k)));
                        prop_assert_eq!(after.len() as u64, before.len() as u64 - expected);
                    }
                    Op::Clear => l1.clear(),
                }
                for shard in l1.shards.iter() {
                    let keys = shard.read();
                    if let Some(index) = &keys.index {
                        let table: BTreeSet<Box<str>> =
                            keys.table.iter().map(|(k, _)| k.text.clone()).collect();
                        prop_assert_eq!(index, &table);
                    }
                }
            }
        }
    }
}
