//! Tags in process: which values a tag invalidation removes, in one
//! write whatever their number.
//!
//! A value carries its tags and the tag clock's reading when its load
//! started ([`EntryTags::born`]). Invalidating a tag moves the clock on and
//! records the new reading as the tag's stamp; a value is invalidated when
//! a stamp of one of its tags is newer than its birth. A load that read
//! its data before a tag invalidation thus never serves it afterwards,
//! whenever it stores it (no stale fill), and a hit on an untagged value
//! pays nothing. The stamps are bounded: past [`MAX_STAMPS`] they are
//! replaced by a floor, under which every tagged value is invalidated.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use foldhash::fast::RandomState;
use parking_lot::RwLock;

/// The longest tag, in bytes: a key's bound ([`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES)).
pub const MAX_TAG_BYTES: usize = crate::MAX_KEY_BYTES;

/// The most tags one value carries; further ones are refused.
pub const MAX_TAGS: usize = 64;

/// Tag stamps kept in process before they are folded into a floor.
pub(crate) const MAX_STAMPS: usize = 100_000;

/// The process's tag clock: every tag invalidation moves it on.
static CLOCK: AtomicU64 = AtomicU64::new(1);

/// The tag clock now: what a load records before it reads its data.
#[inline]
pub(crate) fn now() -> u64 {
    CLOCK.load(Ordering::Acquire)
}

/// The tags of a value, shared by its copies.
pub(crate) type TagList = Arc<[Box<str>]>;

/// A value's tags and the tag clock when its load started.
#[derive(Debug)]
pub(crate) struct EntryTags {
    pub(crate) born: u64,
    pub(crate) names: TagList,
}

/// Why a tag was refused.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let cache = cache_runtime::Cache::builder().build().unwrap();
/// let refused = cache.invalidate_tag("").await.unwrap_err();
/// assert_eq!(refused, cache_runtime::TagError::Empty);
/// assert_eq!(refused.to_string(), "a tag cannot be empty");
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TagError {
    /// The tag is empty.
    Empty,
    /// The tag is longer than [`MAX_TAG_BYTES`]: its length.
    TooLong(usize),
}

impl fmt::Display for TagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagError::Empty => f.write_str("a tag cannot be empty"),
            TagError::TooLong(len) => write!(
                f,
                "a tag of {len} bytes is longer than the {MAX_TAG_BYTES} a tag may have (cache_runtime::MAX_TAG_BYTES); put a digest of the long part in it"
            ),
        }
    }
}

impl std::error::Error for TagError {}

/// Whether `tag` may name values.
pub(crate) fn check(tag: &str) -> Result<(), TagError> {
    match tag.len() {
        0 => Err(TagError::Empty),
        len if len > MAX_TAG_BYTES => Err(TagError::TooLong(len)),
        _ => Ok(()),
    }
}

/// The stamps of the tags invalidated in this process: one table for a
/// cache and its named caches.
#[derive(Default)]
pub(crate) struct Stamps {
    table: RwLock<HashMap<Box<str>, u64, RandomState>>,
    /// Every tagged value born before this is invalidated: the stamps
    /// folded away when the table was full.
    floor: AtomicU64,
    /// Whether any tag was ever invalidated: until then a tagged hit reads
    /// nothing.
    any: std::sync::atomic::AtomicBool,
}

impl Stamps {
    /// Invalidates `tag`: every value carrying it that was born before now.
    pub(crate) fn invalidate(&self, tag: &str) {
        let mut table = self.table.write();
        let stamp = CLOCK.fetch_add(1, Ordering::AcqRel) + 1;
        if table.len() >= MAX_STAMPS && !table.contains_key(tag) {
            // Values born before the newest stamp folded away may carry
            // any of them: all of those go.
            self.floor.store(stamp, Ordering::Release);
            table.clear();
        } else {
            table.insert(tag.into(), stamp);
        }
        self.any.store(true, Ordering::Release);
    }

    /// Whether a tag invalidation since `tags` was born covers it.
    #[inline]
    pub(crate) fn covers(&self, tags: &EntryTags) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        // The floor under the table's lock: a fold clears the table and
        // raises the floor at once.
        let table = self.table.read();
        if tags.born < self.floor.load(Ordering::Acquire) {
            return true;
        }
        tags.names
            .iter()
            .any(|tag| table.get(&**tag).is_some_and(|&stamp| stamp > tags.born))
    }

    /// How many stamps are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.read().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(born: u64, names: &[&str]) -> EntryTags {
        EntryTags {
            born,
            names: names.iter().map(|&n| Box::from(n)).collect(),
        }
    }

    #[test]
    fn a_stamp_covers_what_was_born_before_it() {
        let stamps = Stamps::default();
        let before = tagged(now(), &["product:42", "catalog"]);
        assert!(!stamps.covers(&before));
        stamps.invalidate("catalog");
        let after = tagged(now(), &["catalog"]);
        assert!(stamps.covers(&before));
        assert!(!stamps.covers(&after), "born after the stamp");
        assert!(!stamps.covers(&tagged(before.born, &["brand:7"])));
    }

    #[test]
    fn stamps_are_bounded_by_a_floor() {
        let stamps = Stamps::default();
        let old = tagged(now(), &["never-invalidated"]);
        for i in 0..MAX_STAMPS {
            stamps.invalidate(&format!("t:{i}"));
        }
        assert!(!stamps.covers(&old));
        stamps.invalidate("one-more");
        assert!(stamps.len() <= 1);
        assert!(stamps.covers(&old), "under the floor: invalidated");
        assert!(!stamps.covers(&tagged(now(), &["t:1"])));
    }

    #[test]
    fn tags_are_checked() {
        assert_eq!(check(""), Err(TagError::Empty));
        assert_eq!(
            check(&"x".repeat(MAX_TAG_BYTES + 1)),
            Err(TagError::TooLong(MAX_TAG_BYTES + 1))
        );
        assert_eq!(check("product:42"), Ok(()));
    }
}
