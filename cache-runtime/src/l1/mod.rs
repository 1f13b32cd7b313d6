//! The in-process tier: one small trait, two engines (quick_cache, moka).
//!
//! Both engines bound the tier by estimated bytes (the entry weight) and keep
//! the deadlines inside the entry, so that the freshness check is the same
//! whatever the engine. Pattern removal removes the matching keys before it
//! returns: nothing is left for later reads to check. The quick_cache
//! engine reads only the keys under a pattern's literal prefix, from an
//! ordered index of its keys; moka's engine, and a pattern with no literal
//! prefix (`*:roles`), walk every key.

mod moka_engine;
mod quick;

use crate::entry::Entry;
use crate::pattern::Pattern;

pub(crate) use moka_engine::MokaL1;
pub(crate) use quick::QuickL1;

/// What the cache needs from an in-process engine.
pub(crate) trait L1Engine: Send + Sync {
    /// Runs `f` on the entry of `key`, if any. `f` runs under the engine's
    /// read lock where it has one: keep it short, and never call back into
    /// the cache from it.
    fn read<R>(&self, key: &str, f: impl FnOnce(&Entry) -> R) -> Option<R>;
    /// Stores `entry`; `false` when the engine refused it (heavier than it
    /// can hold), in which case any older entry of `key` is gone too.
    fn insert(&self, key: &str, entry: Entry) -> bool;
    fn remove(&self, key: &str) -> bool;
    /// Removes every key `pattern` matches; returns how many (exactly).
    fn remove_matching(&self, pattern: &Pattern) -> u64;
    fn clear(&self);
    fn entry_count(&self) -> u64;
    fn weighted_size(&self) -> u64;
}

/// The engine of one cache, dispatched by `match` so the hit path inlines.
pub(crate) enum L1 {
    Quick(QuickL1),
    Moka(MokaL1),
}

macro_rules! dispatch {
    ($self:ident.$method:ident($($arg:ident),*)) => {
        match $self {
            L1::Quick(engine) => engine.$method($($arg),*),
            L1::Moka(engine) => engine.$method($($arg),*),
        }
    };
}

impl L1Engine for L1 {
    #[inline]
    fn read<R>(&self, key: &str, f: impl FnOnce(&Entry) -> R) -> Option<R> {
        dispatch!(self.read(key, f))
    }
    fn insert(&self, key: &str, entry: Entry) -> bool {
        dispatch!(self.insert(key, entry))
    }
    fn remove(&self, key: &str) -> bool {
        dispatch!(self.remove(key))
    }
    fn remove_matching(&self, pattern: &Pattern) -> u64 {
        dispatch!(self.remove_matching(pattern))
    }
    fn clear(&self) {
        dispatch!(self.clear())
    }
    fn entry_count(&self) -> u64 {
        dispatch!(self.entry_count())
    }
    fn weighted_size(&self) -> u64 {
        dispatch!(self.weighted_size())
    }
}
